/* store_int: what the files of src/store share with each other; not part of the interface
 * the core sees (store.h).
 *
 *   store.c      ops, the handle, watches and the event dispatch, metrics
 *   committer.c  the commit thread, group assembly, ports (loop-side hand-off)
 *   semantics.c  tern_sem_apply: what each op means, over the backend primitives
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
};

/* ---- semantics.c (commit thread) ---- */
tern_sem *tern_sem_new(tern_store *s);
void tern_sem_free(tern_sem *sem);
/* Applies op inside the current group. Returns 0, or a negative errno when the group must
 * fail (a backend read or write failed); op->err then holds the reason. Domain outcomes
 * (DUPLICATE, FULL) are statuses, not failures. */
int tern_sem_apply(tern_sem *sem, tern_store_op *op);
/* Start-up: loads directory and KV records through the backend. */
int tern_sem_load(tern_store *s, const tern_store_load_cbs *cbs, char *err, size_t errlen);
/* Open: counts the shared bodies stored (tern_store_shared_bodies). */
int tern_sem_count_bodies(tern_store *s, char *err, size_t errlen);
/* An op of a failed group: status ERROR, outputs emptied. */
void tern_sem_fail(tern_store_op *op, const char *why);

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
/* An event for a watcher on another loop: the op that made it is freed on its own loop, so
 * the bytes travel with the event. */
typedef struct tern_store_event_copy tern_store_event_copy;
struct tern_store_event_copy {
  tern_store_event_copy *next; /* the port's queue */
  char *inbox;                 /* owned copies */
  uint64_t seq;
  tern_buf value, body;
  bool has_body;
};
/* Runs one copied event on p's loop: the watch is looked up again there, since the watcher
 * may have gone meanwhile. Frees ev. */
void tern_store_run_event_copy(tern_store *s, tern_store_port *p, tern_store_event_copy *ev);
/* committer.c: queues a copied event for p (any thread) and wakes p's loop. */
void tern_store_port_post_event(tern_store_port *p, tern_store_event_copy *ev);
/* committer.c: the store a port belongs to. */
tern_store *tern_store_port_store(const tern_store_port *p);
/* Frees a submitted op after its completion (pools per thread). */
void tern_store_op_release(tern_store_op *op);

#endif
