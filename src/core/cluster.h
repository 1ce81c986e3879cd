/* cluster: what this loop knows about the other writers of its store (the other loops of this
 * process, and in cluster mode the other ternd nodes), learnt from the store's bus
 * (tern_store_bus_publish): which devices are connected where, who is typing, and which
 * writers are alive. Nothing here is stored; a writer that restarts tells the others again.
 *
 * Presence. Each writer announces its devices' connections and disconnections, and answers a
 * newcomer's hello with a snapshot of its connected devices. A user is online while any of
 * their devices is connected on any writer. A writer not heard from for cluster.node_timeout
 * (heartbeats go out every third of it) is taken for dead: its devices go offline, with the
 * last heartbeat as their last seen. A clean shutdown says goodbye, so nobody waits.
 *
 * A device connects in one place: a connection announced elsewhere, newer than the one here,
 * replaces it (close 4003), as a second connection on one node does.
 *
 * Ownership: the app's (app->cluster). Threads: the app's loop.
 */
#ifndef TERN_CORE_CLUSTER_H
#define TERN_CORE_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/app.h"

typedef struct tern_cluster tern_cluster;

/* Made by tern_app_new; follows the bus and starts the heartbeat in tern_cluster_start. */
tern_cluster *tern_cluster_new(tern_app *a);
void tern_cluster_start(tern_cluster *c);
/* Shutdown: says goodbye and stops the timers (their handles close with the loop's). */
void tern_cluster_stop(tern_cluster *c);
void tern_cluster_free(tern_cluster *c);

/* This loop's device d authenticated at since (ms) / went away with last_seen (ms). */
void tern_cluster_connected(tern_app *a, tern_device *d, int64_t since);
void tern_cluster_disconnected(tern_app *a, tern_device *d, int64_t last_seen);
/* True while d is connected on another writer. */
bool tern_cluster_device_elsewhere(tern_app *a, const tern_device *d);
/* u's devices connected on other writers. */
int tern_cluster_user_elsewhere(tern_app *a, const tern_user *u);
/* A typing notice for the other writers' sessions: to a user (group_id NULL) or a group. */
void tern_cluster_typing(tern_app *a, const tern_user *from, const char *to, const char *group_id, bool composing);

/* ---- the bus message codec (exposed for its fuzz target) ---- */
typedef enum {
  TERN_BUS_HEARTBEAT = 'H', /* flags: TERN_BUS_HELLO, TERN_BUS_RELINKED */
  TERN_BUS_BYE = 'B',
  TERN_BUS_ONLINE = 'O',    /* user, device, ms: since */
  TERN_BUS_OFFLINE = 'F',   /* user, device, ms: last seen */
  TERN_BUS_SNAPSHOT = 'S',  /* entries: (user, device, since) */
  TERN_BUS_TYPING = 'T',    /* user: from; to: user or group; flags: 1 = composing, 2 = to a group */
} tern_bus_type;

/* A heartbeat's flags: HELLO asks the others for a snapshot of who is connected to them;
 * RELINKED says the sender's link to the store's servers was cut, so events it published
 * then may be lost: the others' live sessions read their inboxes again. */
enum { TERN_BUS_HELLO = 1, TERN_BUS_RELINKED = 2 };

/* Wire form: [1 type][str writer][8 boot][1 flags] then per type [str user][str device or to]
 * [8 ms], or for a snapshot [2 count]([str user][str device][8 ms])*. A str is [1 len][len
 * bytes][0]: the terminator lets decoded strings point into the message itself. */
typedef struct tern_bus_entry {
  const char *user, *device; /* point into the decoded bytes */
  int64_t ms;
} tern_bus_entry;

typedef struct tern_bus_msg {
  uint8_t type;             /* tern_bus_type */
  const char *writer;       /* "<node>/<worker>" */
  uint64_t boot;            /* random per start of the writer */
  uint8_t flags;
  const char *user, *device, *to;
  int64_t ms;
  tern_bus_entry *entries;  /* SNAPSHOT (owned) */
  size_t nentries;
} tern_bus_msg;

/* Decodes one message; its strings point into p, which must outlive m. 0, or -EINVAL for
 * anything malformed. Free with tern_bus_msg_free either way. */
int tern_bus_decode(const uint8_t *p, size_t n, tern_bus_msg *m);
/* Writes m's wire form to out (reset first); strings longer than 255 bytes are cut. */
void tern_bus_encode(const tern_bus_msg *m, tern_buf *out);
void tern_bus_msg_free(tern_bus_msg *m);

#endif
