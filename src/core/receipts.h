/* receipts: what acks and reads make (PROTOCOL.md sections 5 and 10): one delivered receipt
 * per sender per ack, read receipts to the sender's devices and the reader's other devices,
 * and for groups, receipts whose `by` lists members, merged within receipts.merge_window.
 *
 * Ordering. A read that arrives while acks of the same session are in the store waits for
 * them, so that a sender sees delivered before read. Merged group receipts leave in the
 * order their first part arrived.
 *
 * Threads: the worker's loop. */
#ifndef TERN_CORE_RECEIPTS_H
#define TERN_CORE_RECEIPTS_H

#include <stdint.h>

#include "core/app.h"
#include "core/session.h"
#include "proto/frame.h"

void tern_receipts_ack(tern_app *a, tern_session *s, uint64_t seq);
void tern_receipts_read(tern_app *a, tern_session *s, tern_frame *f);
/* Reads the delivered parts a crash left in this worker's queue back into the merge (once,
 * at start). */
void tern_receipts_start(tern_app *a);
/* Sends the delivered parts left in the queue of writer ("<node>/<worker>") that no worker
 * reads any more (a node gone for good, a worker a restart no longer has), and acks them. */
void tern_receipts_adopt(tern_app *a, const char *writer);
/* Sends every merged receipt still waiting (its window timer, and shutdown). */
void tern_receipts_flush(tern_app *a);
void tern_receipts_free(tern_app *a);

#endif
