/* wsjson: the JSON-over-WebSocket endpoint (PROTOCOL.md sections 3-6). It is the glue between
 * a net connection and a protocol-neutral session: text messages are decoded by proto into
 * typed requests for the session, and the session's answers and envelopes are encoded by
 * proto and written as text frames. Close reasons map to the protocol's close codes.
 * Threads: the worker's loop. */
#ifndef TERN_CORE_WSJSON_H
#define TERN_CORE_WSJSON_H

#include <stddef.h>

#include "core/app.h"
#include "net/server.h"

/* The net layer's WebSocket callbacks (arg = the app). */
void tern_wsjson_open(tern_conn *c, void *arg);
void tern_wsjson_text(tern_conn *c, const char *data, size_t len, void *arg);
void tern_wsjson_gone(tern_conn *c, void *arg);

#endif
