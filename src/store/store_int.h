/* store_int: what the files of src/store share with each other; not part of the interface
 * the core sees (store.h).
 *
 *   store.c      ops, the handle, watches and the event dispatch, metrics
 *   committer.c  the commit thread, group assembly, ports (loop-side hand-off)
 *   semantics.c  tern_sem_apply: what each op means, over the backend primitives
 *   prekeys.c    the E2E key ops (KEYS_PUT, KEYS_GET, KEYS_CLAIM) and their part of the cascade
 */
#ifndef TERN_STORE_STORE_INT_H
#define TERN_STORE_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/map.h"
#include "store/backend.h"
#include "store/store.h"

typedef struct tern_committer tern_committer;
typedef struct tern_sem tern_sem;

struct tern_store {
  tern_store_options opts;     /* copy; strings point at the copies below */
  char *dir;                   /* opts.dir */
  tern_backend be;             /* the backend */
  tern_sem *sem;               /* the semantics' own state (commit thread) */
  tern_committer *cm;          /* the commit thread */
  pthread_mutex_t hist_mu;     /* guards hist */
  tern_store_commit_hist hist; /* commit durations */
  pthread_mutex_t watch_mu;    /* guards watches: ports on several loops watch and dispatch */
  tern_map watches;            /* inbox name → struct store_watch* */
  atomic_int_fast64_t bodies;  /* shared bodies stored right now */
  char *node;                  /* opts.node, or "local" */
  /* Every open port, for the change feed and the bus. A port leaves the list when it starts
   * closing, under the lock, so nothing is posted to it afterwards. */
  pthread_mutex_t ports_mu;
  tern_store_port **ports;
  size_t nports, ports_cap;
  /* Closed ports, freed with the store: another worker may still hold a pointer to one and
   * post a call to it (tern_store_port_call drops it then), so its memory outlives its loop. */
  tern_store_port *closed_ports;
  atomic_int nports_open;      /* nports, readable without the lock */
};

/* A directory record written through one writer, for the others' followers. */
typedef struct tern_store_change {
  tern_store_port *origin;     /* the port whose op wrote it (NULL: another node) */
  uint8_t bucket;              /* TERN_BUCKET_USERS, _DEVICES or _RECORDS */
  bool deleted;
  tern_buf key, value;
} tern_store_change;

/* ---- semantics.c (commit thread) ---- */
tern_sem *tern_sem_new(tern_store *s);
void tern_sem_free(tern_sem *sem);
/* Applies op inside the current group. Returns 0, or a negative errno when the group must
 * fail (a backend read or write failed); op->err then holds the reason. Domain outcomes
 * (DUPLICATE, FULL) are statuses, not failures. */
int tern_sem_apply(tern_sem *sem, tern_store_op *op);
/* Before each attempt at a group: forgets the changes and the catch-up of an earlier attempt. */
void tern_sem_begin(tern_sem *sem);
/* Inside a group, before its ops: names what they will read to the backend (backend.h
 * prefetch), which may load it all at once. */
void tern_sem_prefetch(tern_sem *sem, tern_store_op *const *ops, size_t n);
/* After a successful commit: the directory changes the group made (owned by sem, valid until
 * the next tern_sem_begin). Collected only while the store has more than one port. */
const tern_store_change *tern_sem_changes(tern_sem *sem, size_t *n);
/* Raises one stored record at cbs as a user, device or KV record (or its deletion). */
void tern_sem_raise_change(const tern_store_load_cbs *cbs, tern_bucket b, const char *key, size_t klen,
                           const uint8_t *v, size_t vlen, bool deleted);
/* Start-up: loads directory and KV records through the backend. */
int tern_sem_load(tern_store *s, const tern_store_load_cbs *cbs, char *err, size_t errlen);
/* Open: counts the shared bodies stored (tern_store_shared_bodies). */
int tern_sem_count_bodies(tern_store *s, char *err, size_t errlen);
/* An op of a failed group: status ERROR, outputs emptied. */
void tern_sem_fail(tern_store_op *op, const char *why);

/* Helpers for the op files besides semantics.c (prekeys.c): the backend, directory writes
 * noted for the change feed, and a failed primitive (as semantics.c's own). */
tern_backend *tern_sem_backend(tern_sem *sem);
int tern_sem_dir_put(tern_sem *sem, tern_store_op *op, tern_bucket b, const char *key, size_t klen, const void *v,
                     size_t vlen);
int tern_sem_dir_del(tern_sem *sem, tern_store_op *op, tern_bucket b, const char *key, size_t klen);
int tern_sem_failed(tern_sem *sem, tern_store_op *op, const char *what, int r);

/* ---- prekeys.c (commit thread): the E2E key ops ---- */
int tern_sem_keys(tern_sem *sem, tern_op_keys *op);
/* Empties a key op's outputs (before an attempt, and for a failed group). */
void tern_sem_keys_reset(tern_op_keys *op);
/* DEL_DEVICE's part: deletes the device's bundle, one-time prekeys and their index. */
int tern_sem_keys_forget(tern_sem *sem, tern_store_op *op, const char *device_id, size_t idl);

/* ---- store.c ---- */
void tern_keys_bundle_clear(tern_key_bundle *b);

/* ---- committer.c ---- */
int tern_committer_start(tern_store *s, int group_max, tern_committer **out, char *err, size_t errlen);
/* Finishes every op handed over so far, stops the thread and frees the committer. */
void tern_committer_stop(tern_committer *cm);

/* ---- store.c ---- */
void tern_store_commit_record(tern_store *s, uint64_t ns);
/* Runs on the completing port's loop, before op->done: raises the delivery events of what op
 * appended, at most *budget of them (decremented). Returns true when every event of op has
 * been raised; false when the budget ran out first (call again, later, for the rest: a large
 * group's fan-out is spread over loop turns so that other clients are served in between). */
bool tern_store_dispatch(tern_store *s, tern_store_port *p, tern_store_op *op, size_t *budget);
/* Something for a port's loop that another thread made: a delivery event for a watcher on
 * another loop (the op that made it is freed on its own loop, so the bytes travel with it), a
 * directory change for the port's follower, a bus message, or word of a reconnect. */
typedef enum { TERN_EVC_ENVELOPE = 0, TERN_EVC_CHANGE, TERN_EVC_BUS, TERN_EVC_CALL, TERN_EVC_RELINK } tern_store_event_kind;
typedef struct tern_store_event_copy tern_store_event_copy;
struct tern_store_event_copy {
  tern_store_event_copy *next; /* the port's queue */
  uint8_t kind;                /* tern_store_event_kind */
  uint8_t bucket;              /* CHANGE */
  bool deleted;                /* CHANGE */
  char *inbox;                 /* owned copies: ENVELOPE's inbox, CHANGE's key */
  size_t klen;                 /* CHANGE: key length */
  uint64_t seq;
  tern_buf value, body;        /* value: ENVELOPE's record, CHANGE's record, BUS's message */
  bool has_body;
  tern_store_call_fn call;     /* CALL: runs on the port's loop */
  void *call_arg;
};
/* What a port's loop follows (tern_store_follow, tern_store_bus_follow, tern_store_relink_follow). */
typedef struct tern_port_follow {
  tern_store_load_cbs feed;
  bool following;
  tern_store_bus_cb bus;
  void *bus_arg;
  void (*relink)(void *arg);
  void *relink_arg;
} tern_port_follow;
tern_port_follow *tern_store_port_follows(tern_store_port *p);
/* Posts a copy of each change to every port but its origin (commit thread, after commit). */
void tern_store_post_changes(tern_store *s, const tern_store_change *c, size_t n);
/* Runs one copied event on p's loop: the watch is looked up again there, since the watcher
 * may have gone meanwhile. Frees ev. */
void tern_store_run_event_copy(tern_store *s, tern_store_port *p, tern_store_event_copy *ev);
/* committer.c: queues a copied event for p (any thread) and wakes p's loop. */
void tern_store_port_post_event(tern_store_port *p, tern_store_event_copy *ev);
/* store.c: removes every watch made through p (its close). */
void tern_store_drop_watches(tern_store *s, tern_store_port *p);
/* committer.c: frees the closed ports (tern_store_close, after every port closed). */
void tern_store_free_closed_ports(tern_store *s);
/* committer.c: the store a port belongs to. */
tern_store *tern_store_port_store(const tern_store_port *p);
/* Frees a submitted op after its completion (pools per thread). */
void tern_store_op_release(tern_store_op *op);

#endif
