/* natsconn: how this process opens a connection to NATS. The store backend (nats.c) and the
 * media chunks (natsmedia.c) each have a connection of their own, opened the same way, so a
 * change to reconnects or timeouts applies to both.
 *
 * nats.c's library state (its timer, GC and callback threads, the global delivery pool) is
 * process-wide by the library's design: the first open starts it, once, and it stays for the
 * process (nats_Close would tear it down under the other connections).
 *
 * Errors: negative errno (-EIO: the library did not start; -ENOTCONN: no server answered)
 * with a one-line reason in err. */
#ifndef TERN_STORE_NATSCONN_H
#define TERN_STORE_NATSCONN_H

#include <stddef.h>

#include <nats/nats.h>

/* Connects to the comma-separated urls (NULL or "": nats://127.0.0.1:4222): reconnects
 * forever every 200 ms, timeout_ms per connect and flush, subscriptions on the library's
 * delivery pool (no thread each). *nservers (if not NULL) is the number of URLs, which picks
 * the default replica count. The caller owns *out (natsConnection_Destroy). */
int tern_natsconn_open(const char *urls, int timeout_ms, natsConnection **out, int *nservers, char *err,
                       size_t errlen);

/* The replica count of a stream: asked when > 0, else 3 on a list of 3 or more servers, else 1. */
int tern_natsconn_replicas(int asked, int nservers);

/* A namespace as a stream-name prefix: bytes outside [A-Za-z0-9_-] become '_'. The caller
 * frees it (tern_free). */
char *tern_natsconn_stream_prefix(const char *ns);

#endif
