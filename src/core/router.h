/* router: what happens to a message between the sender's request and the recipients'
 * sessions: the msg_id, the fan-out list, the neutral envelope records, the durable append,
 * the `sent` answer, and the receipts that acks and reads make. Delivery itself is the
 * handler of the store's "envelope committed" events (tern_router_on_envelope), never a side
 * effect of an append's completion, so envelopes committed by other nodes arrive the same way.
 *
 * Threads: the worker's loop. */
#ifndef TERN_CORE_ROUTER_H
#define TERN_CORE_ROUTER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/app.h"
#include "core/session.h"
#include "proto/frame.h"
#include "store/store.h"

/* Adds to op the inboxes an envelope from (from_user, from_dev) addressed to `to` goes to:
 * every device of `to` (or its user-level inbox "@to" when it has none) with value
 * v_recipient, then every other device of from_user with value v_copy. When to == from_user
 * only the copies are made. Recipient targets get cap; copies are never capped. Each device
 * target carries the device as its cookie, referenced until the op is freed
 * (tern_router_release_targets). This is the one place 1:1 fan-out is decided. */
void tern_router_fanout(tern_op_append *op, tern_user *from_user, tern_device *from_dev, tern_user *to,
                        size_t v_recipient, size_t v_copy, tern_cap_mode cap);
/* Drops the device references fanout took (call from the op's done). */
void tern_router_release_targets(tern_op_append *op);

/* Handles a decoded send from session s (answers it exactly once): 1:1 here, group sends in
 * groupsend.c. */
void tern_router_send(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns);
void tern_groupsend(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns);

/* A decrypt_error frame (PROTOCOL.md 11): one envelope to the named device of the sender of
 * the message that did not decrypt. Answers only refusals (no_such_user, not_found,
 * rate_limited). */
void tern_router_decrypt_error(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns);

/* ---- shared by both kinds of send ---- */
struct tern_media_rec;
/* The media a send names, if its sender may forward it; NULL after answering no_such_media,
 * or when f waits for the directory to catch up (tern_session_catch_up took it). */
const struct tern_media_rec *tern_router_media(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns);
/* A reaction, edit or delete (PROTOCOL.md 15): no push, no delivered receipt. */
bool tern_router_is_action(const tern_frame *f);
/* Puts a send's reaction, edit and delete fields into an envelope record. */
void tern_router_put_actions(tern_buf *rec, const tern_frame *f);
/* Delete for everyone (PROTOCOL.md 15) on an APPEND whose targets are set: a delete
 * (f->delete_of) replaces its original's waiting envelopes (replace_of, each target's device
 * marked live when connected here or on another node); an edit is refused if its message was
 * deleted (check_of); any other message but a reaction is indexed for a later delete, with
 * its media (media_id, or NULL) and group (group_id, NULL for 1:1). sender: the sender's
 * name, to tell a group admin's delete of another member's message (which the locator must
 * prove to be of this group). */
void tern_router_prepare_delete(tern_app *a, tern_op_append *op, const tern_frame *f, const char *media_id,
                                const char *group_id, const char *sender);
/* After a delete's APPEND: the deleted message's media lose the grants of users (the
 * conversation's other side, or the group's members). The grants were already revoked before
 * the delete was stored (revoke_first) when its probe could read the store; this covers a
 * probe that could not while the delete then could. A revoke that changes nothing writes
 * nothing. */
void tern_router_deleted_media(tern_app *a, const tern_op_append *op, const char *const *users, size_t nusers);
/* Answers send id: the store cannot be written right now (nothing was stored). */
void tern_router_unavailable(tern_session *s, const char *id);
/* Checks what every send must pass (the per-user send rate; content this server handles);
 * false after answering. False too when f waits for a step of its own (a delete's media
 * revoke): the session holds f, which runs again with f->prepared set. */
bool tern_router_admit(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns);
/* The ciphertext fields of one device's record of an encrypted send (type, body, media_ref). */
void tern_router_put_e2e(tern_buf *rec, const tern_frame_e2e *e, const char *media_ref);
/* The media fields of a message record. */
void tern_router_put_media(tern_buf *rec, const struct tern_media_rec *m);
/* The store's delivery event for a watched inbox (watcher = the session). */
void tern_router_on_envelope(void *watcher, const tern_store_env *e);

#endif
