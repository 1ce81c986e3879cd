/* sync: keeps this loop's directory (users, devices, tokens, push registrations, groups) in
 * step with the records other writers store: the other loops of this process, and in cluster
 * mode the other nodes. It follows the store's change feed (tern_store_follow) and applies
 * each record as start-up would have loaded it:
 *   user      added, or its last seen moved forward; a name this loop had reserved for a
 *             registration of its own becomes the other writer's (ours then answers 409);
 *   device    added (the user's first device also takes over the user-level inbox, in case a
 *             sender here appended to it before it knew the device), or its label, push
 *             registration and last seen updated; a device whose user has not arrived yet
 *             waits for it (each NATS bucket has its own feed, unordered with the others);
 *   device gone  a logout or expiry elsewhere: its session here closes (4002);
 *   group     created, replaced or deleted (groups.c decides which record is the newer).
 * A device deleted elsewhere is remembered for a while (a tombstone), so that a record of it
 * written just before the deletion, arriving late from a third writer, cannot bring it back.
 *
 * Ownership: the app's (app->sync). Threads: the app's loop.
 */
#ifndef TERN_CORE_SYNC_H
#define TERN_CORE_SYNC_H

#include "core/app.h"

typedef struct tern_sync tern_sync;

/* Follows the feed of a's port from now on (call before the loop runs, after the load). */
tern_sync *tern_sync_new(tern_app *a);
void tern_sync_free(tern_sync *s);

#endif
