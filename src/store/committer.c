/* committer.c: the store's commit thread and the ports through which loops hand it ops.
 *
 * A loop submits through its port: ops wait in the port's staged queue until the end of the
 * loop iteration (a prepare handle, before the loop polls), then move to the committer's
 * pending queue with one lock and one wake-up, so that everything one iteration produced
 * reaches the thread together (waking it per op made it commit groups of one op while the
 * loop still had work, and cost a thread switch each on a shared core).
 *
 * The commit thread takes up to group_max pending ops, applies them in order inside ONE group
 * of the backend (semantics.c over backend.h), commits the group once (one fsync with
 * RocksDB), and hands each op to its port's done queue, waking that loop with uv_async_send.
 * So there is one durable commit per group, never one per op, and one group in flight.
 *
 * On the loop, the async callback runs completions in submission order: first the delivery
 * events of what the op appended (store.c), then op->done, then the op is freed. At most
 * DONE_PER_WAKEUP completions run per wake-up; the rest run on the next loop turn, so one
 * large burst cannot starve the loop's other work.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "store/store_int.h"

enum {
  DEFAULT_GROUP_MAX = 1024,
  DONE_PER_WAKEUP = 4096, /* completions run per loop wake-up, then yield */
  EVENTS_PER_WAKEUP = 512, /* delivery events raised per wake-up (a 1024-member group's fan-out
                              takes a few turns, each a couple of milliseconds of writes) */
};

/* ---- a FIFO of ops, linked through op->next ---------------------------------------------- */

typedef struct opq {
  tern_store_op *head, *tail;
  size_t len;
} opq;

static void opq_push(opq *q, tern_store_op *op) {
  op->next = NULL;
  if (q->tail) q->tail->next = op;
  else q->head = op;
  q->tail = op;
  q->len++;
}

static tern_store_op *opq_pop(opq *q) {
  tern_store_op *op = q->head;
  if (!op) return NULL;
  q->head = op->next;
  if (!q->head) q->tail = NULL;
  q->len--;
  op->next = NULL;
  return op;
}

/* Moves everything of src to the end of dst. */
static void opq_splice(opq *dst, opq *src) {
  if (!src->head) return;
  if (dst->tail) dst->tail->next = src->head;
  else dst->head = src->head;
  dst->tail = src->tail;
  dst->len += src->len;
  *src = (opq){0};
}

/* ---- state --------------------------------------------------------------------------------- */

struct tern_committer {
  tern_store *s;           /* owner */
  size_t group_max;        /* ops per group at most */
  pthread_t thread;
  bool started;
  pthread_mutex_t mu;      /* guards pending and stopping */
  pthread_cond_t cv;       /* signalled on hand-over and on stop */
  opq pending;             /* handed over, not yet taken */
  bool stopping;           /* stop asked: finish pending, then exit */
  tern_store_op **group;   /* commit thread: the current group */
  size_t group_cap;
};

struct tern_store_port {
  tern_store *s;           /* the store */
  tern_committer *cm;      /* its commit thread */
  uv_loop_t *loop;         /* where completions run */
  uv_async_t async;        /* wakes the loop; data = this */
  uv_prepare_t hand;       /* hands the iteration's submissions over; data = this */
  int open_handles;        /* of async and hand: freed when both have closed */
  bool closing;            /* tern_store_port_close was called */
  int64_t pending;         /* loop: submitted, done not yet run */
  opq staged;              /* loop: submitted during this iteration */
  opq ready;               /* loop: taken from done, still to run */
  pthread_mutex_t mu;      /* guards done, events and inflight */
  pthread_cond_t cv;       /* signalled when inflight drops (close waits on it) */
  opq done;                /* completed ops (commit thread → loop) */
  tern_store_event_copy *ev_head, *ev_tail; /* events copied here from other threads */
  int64_t inflight;        /* handed over and not yet in done */
  bool calls_closed;       /* closed: calls posted now are dropped (tern_store_port_call) */
  tern_port_follow follows; /* loop: the follower and the bus callback */
  tern_store_port *next_closed; /* the store's closed_ports */
};

tern_store *tern_store_port_store(const tern_store_port *p) { return p->s; }
tern_port_follow *tern_store_port_follows(tern_store_port *p) { return &p->follows; }

/* ---- the commit thread --------------------------------------------------------------------- */

enum { COMMIT_RETRIES = 8 }; /* a backend's -EAGAIN (another writer won a race) re-runs the group */

static void run_group(tern_committer *cm, tern_store_op **ops, size_t n) {
  tern_store *s = cm->s;
  tern_backend *be = &s->be;
  int failed = 0, fail_rc = 0;
  char why[128] = "";
  uint64_t ns = 0;
  for (int attempt = 0;; attempt++) {
    be->vt->begin(be->self);
    tern_sem_begin(s->sem);
    tern_sem_prefetch(s->sem, ops, n);
    failed = 0;
    for (size_t i = 0; i < n && !failed; i++) {
      ops[i]->status = TERN_STORE_OK;
      int r = tern_sem_apply(s->sem, ops[i]);
      if (r < 0) {
        failed = 1;
        fail_rc = r;
        snprintf(why, sizeof why, "%s", ops[i]->err);
      }
    }
    if (failed) break;
    uint64_t t0 = tern_mono_ns();
    int r = be->vt->commit(be->self, why, sizeof why);
    ns = tern_mono_ns() - t0;
    if (n > 1 && ((r == -EAGAIN && attempt >= 1) || r == -EMSGSIZE)) {
      /* Lost twice: a big group shares claims with every busy writer and keeps losing as a
       * whole. Halves, in order, each retried on its own, share fewer and make progress;
       * the order of completions stays the order of submission. Too big for the backend to
       * write at once (-EMSGSIZE): halves too. */
      be->vt->rollback(be->self);
      for (size_t i = 0; i < n; i++) tern_sem_fail(ops[i], "retry");
      run_group(cm, ops, n / 2);
      run_group(cm, ops + n / 2, n - n / 2);
      return;
    }
    if (r == -EAGAIN && attempt + 1 < COMMIT_RETRIES) {
      /* A shared backend (NATS) found that another node appended to one of the group's
       * inboxes first: nothing of the group was kept; apply it again on the new state. */
      be->vt->rollback(be->self);
      for (size_t i = 0; i < n; i++) tern_sem_fail(ops[i], "retry");
      continue;
    }
    if (r < 0) {
      failed = 1;
      fail_rc = r;
    } else if (r > 0) {
      tern_store_commit_record(s, ns); /* 1: something was written */
    }
    else ns = 0;                                    /* a group of reads and syncs only */
    break;
  }
  if (failed) {
    TERN_ERROR("store group failed", "ops=%zu err=%s", n, tern_log_quote(why));
    be->vt->rollback(be->self);
    for (size_t i = 0; i < n; i++) {
      tern_sem_fail(ops[i], why);
      if (fail_rc == -ENOTCONN) ops[i]->status = TERN_STORE_UNAVAILABLE;
    }
  } else {
    /* The other loops' directories learn what this group wrote before any op of a later group
     * completes anywhere: a CATCH_UP behind it then finds the changes already queued. */
    size_t nch;
    const tern_store_change *ch = tern_sem_changes(s->sem, &nch);
    if (nch) tern_store_post_changes(s, ch, nch);
    if (be->vt->after_commit) be->vt->after_commit(be->self);
  }
  /* Hand each op to its port, one lock and one wake-up per run of ops of the same port. */
  for (size_t i = 0; i < n;) {
    tern_store_port *p = ops[i]->port;
    size_t j = i;
    pthread_mutex_lock(&p->mu);
    for (; j < n && ops[j]->port == p; j++) {
      ops[j]->commit_ns = ns;
      opq_push(&p->done, ops[j]);
      p->inflight--;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    uv_async_send(&p->async);
    i = j;
  }
}

static void *commit_thread(void *arg) {
  tern_committer *cm = arg;
  tern_backend *be = &cm->s->be;
  if (be->vt->thread_start) be->vt->thread_start(be->self);
  /* ms to wait for ops before the backend's idle hook (0: until ops come): 50 ms after each
   * group, then what the hook asks for */
  uint64_t idle_ms = 0;
  for (;;) {
    pthread_mutex_lock(&cm->mu);
    while (!cm->pending.len && !cm->stopping) {
      if (!idle_ms) {
        pthread_cond_wait(&cm->cv, &cm->mu);
        continue;
      }
      struct timespec at;
      clock_gettime(CLOCK_REALTIME, &at);
      at.tv_sec += (time_t)(idle_ms / 1000);
      at.tv_nsec += (long)(idle_ms % 1000) * 1000000L;
      if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
      }
      if (pthread_cond_timedwait(&cm->cv, &cm->mu, &at) == ETIMEDOUT && !cm->pending.len && !cm->stopping) {
        pthread_mutex_unlock(&cm->mu);
        idle_ms = be->vt->idle(be->self);
        pthread_mutex_lock(&cm->mu);
      }
    }
    if (!cm->pending.len) { /* stopping, and everything handed over is done */
      pthread_mutex_unlock(&cm->mu);
      break;
    }
    size_t n = TERN_MIN(cm->pending.len, cm->group_max);
    if (n > cm->group_cap) {
      cm->group_cap = n;
      cm->group = tern_realloc(cm->group, cm->group_cap * sizeof *cm->group);
    }
    for (size_t i = 0; i < n; i++) cm->group[i] = opq_pop(&cm->pending);
    pthread_mutex_unlock(&cm->mu);
    run_group(cm, cm->group, n);
    idle_ms = be->vt->idle ? 50 : 0;
  }
  return NULL;
}

int tern_committer_start(tern_store *s, int group_max, tern_committer **out, char *err, size_t errlen) {
  tern_committer *cm = TERN_NEW(tern_committer);
  cm->s = s;
  cm->group_max = group_max > 0 ? (size_t)group_max : DEFAULT_GROUP_MAX;
  pthread_mutex_init(&cm->mu, NULL);
  pthread_cond_init(&cm->cv, NULL);
  int r = pthread_create(&cm->thread, NULL, commit_thread, cm);
  if (r != 0) {
    snprintf(err, errlen, "pthread_create: %s", strerror(r));
    pthread_mutex_destroy(&cm->mu);
    pthread_cond_destroy(&cm->cv);
    tern_free(cm);
    return -r;
  }
  cm->started = true;
  *out = cm;
  return 0;
}

void tern_committer_stop(tern_committer *cm) {
  if (!cm) return;
  pthread_mutex_lock(&cm->mu);
  cm->stopping = true;
  pthread_cond_signal(&cm->cv);
  pthread_mutex_unlock(&cm->mu);
  if (cm->started) pthread_join(cm->thread, NULL);
  tern_free(cm->group);
  pthread_mutex_destroy(&cm->mu);
  pthread_cond_destroy(&cm->cv);
  tern_free(cm);
}

/* ---- ports ---------------------------------------------------------------------------------- */

/* Moves the staged submissions to the commit thread, with one lock and one wake-up. */
static void hand_over(tern_store_port *p) {
  if (!p->staged.len) return;
  pthread_mutex_lock(&p->mu);
  p->inflight += (int64_t)p->staged.len;
  pthread_mutex_unlock(&p->mu);
  tern_committer *cm = p->cm;
  pthread_mutex_lock(&cm->mu);
  opq_splice(&cm->pending, &p->staged);
  pthread_cond_signal(&cm->cv);
  pthread_mutex_unlock(&cm->mu);
}

static void on_hand(uv_prepare_t *h) { hand_over(h->data); }

/* Raises the events of the first ready op within the budget, then completes it; false (the
 * op stays first in ready) when the budget ran out before its events did. */
static bool run_first(tern_store_port *p, size_t *budget) {
  if (!tern_store_dispatch(p->s, p, p->ready.head, budget)) return false;
  tern_store_op *op = opq_pop(&p->ready);
  p->pending--;
  if (op->done) op->done(op);
  tern_store_op_release(op);
  return true;
}

/* Runs the events queued for this loop. */
static void run_events(tern_store_port *p, tern_store_event_copy *ev) {
  while (ev) {
    tern_store_event_copy *next = ev->next;
    tern_store_run_event_copy(p->s, p, ev);
    ev = next;
  }
}

/* Takes the completed ops and the queued events together, under one lock, and runs the events
 * first: whatever was posted to this port before an op completed (another loop's directory
 * change, committed before a CATCH_UP) is seen before that op's done. */
static void take_done(tern_store_port *p) {
  pthread_mutex_lock(&p->mu);
  tern_store_event_copy *ev = p->ev_head;
  p->ev_head = p->ev_tail = NULL;
  opq_splice(&p->ready, &p->done);
  pthread_mutex_unlock(&p->mu);
  run_events(p, ev);
}

/* Runs copied events, then up to max completions (and events_max delivery events) in order;
 * returns true when some remain. */
static bool run_completions(tern_store_port *p, size_t max, size_t events_max) {
  if (!p->ready.len) {
    take_done(p);
  } else {
    pthread_mutex_lock(&p->mu);
    tern_store_event_copy *ev = p->ev_head;
    p->ev_head = p->ev_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    run_events(p, ev);
  }
  for (size_t i = 0; i < max; i++) {
    if (!p->ready.len) {
      take_done(p);
      if (!p->ready.len) return false;
    }
    if (!run_first(p, &events_max)) return true; /* the rest on the next turn */
  }
  if (p->ready.len) return true;
  pthread_mutex_lock(&p->mu);
  bool more = p->done.len > 0 || p->ev_head;
  pthread_mutex_unlock(&p->mu);
  return more;
}

static void on_async(uv_async_t *h) {
  tern_store_port *p = h->data;
  /* Bounded work per wake-up; the rest runs on the next loop turn. */
  if (run_completions(p, DONE_PER_WAKEUP, EVENTS_PER_WAKEUP)) uv_async_send(h);
}

/* Drops what is still queued for a closed port: calls learn they will not run. */
static void drop_events(tern_store_port *p) {
  pthread_mutex_lock(&p->mu);
  tern_store_event_copy *ev = p->ev_head;
  p->ev_head = p->ev_tail = NULL;
  pthread_mutex_unlock(&p->mu);
  while (ev) {
    tern_store_event_copy *next = ev->next;
    if (ev->kind == TERN_EVC_CALL) {
      ev->call(ev->call_arg, false);
      tern_free(ev);
    } else {
      ev->kind = TERN_EVC_ENVELOPE; /* no watch of a closed port remains: only frees it */
      tern_store_run_event_copy(p->s, p, ev);
    }
    ev = next;
  }
}

static void port_free(tern_store_port *p) {
  drop_events(p);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  tern_free(p);
}

static void on_port_closed(uv_handle_t *h) {
  tern_store_port *p = h->data;
  if (--p->open_handles > 0) return;
  tern_store *s = p->s;
  pthread_mutex_lock(&s->ports_mu);
  p->next_closed = s->closed_ports;
  s->closed_ports = p;
  pthread_mutex_unlock(&s->ports_mu);
}

void tern_store_free_closed_ports(tern_store *s) {
  while (s->closed_ports) {
    tern_store_port *p = s->closed_ports;
    s->closed_ports = p->next_closed;
    port_free(p);
  }
}

int tern_store_port_new(tern_store *s, uv_loop_t *loop, tern_store_port **out, char *err, size_t errlen) {
  tern_store_port *p = TERN_NEW(tern_store_port);
  p->s = s;
  p->cm = s->cm;
  p->loop = loop;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  int r = uv_async_init(loop, &p->async, on_async);
  if (r < 0) {
    snprintf(err, errlen, "uv_async_init: %s", uv_strerror(r));
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    tern_free(p);
    return r;
  }
  p->async.data = p;
  p->open_handles = 1;
  uv_prepare_init(loop, &p->hand);
  p->hand.data = p;
  p->open_handles++;
  uv_prepare_start(&p->hand, on_hand);
  uv_unref((uv_handle_t *)&p->hand); /* it must not keep the loop running */
  pthread_mutex_lock(&s->ports_mu);
  if (s->nports == s->ports_cap) {
    s->ports_cap = s->ports_cap ? s->ports_cap * 2 : 4;
    s->ports = tern_realloc(s->ports, s->ports_cap * sizeof *s->ports);
  }
  s->ports[s->nports++] = p;
  atomic_store(&s->nports_open, (int)s->nports);
  pthread_mutex_unlock(&s->ports_mu);
  *out = p;
  return 0;
}

void tern_store_port_hand_over_first(tern_store_port *p) {
  uv_prepare_stop(&p->hand);
  uv_prepare_start(&p->hand, on_hand);
}

void tern_store_submit(tern_store_port *p, tern_store_op *op) {
  if (p->closing) {
    /* After close nothing may submit (store.h); an op that still arrives is dropped rather
     * than left in a queue nobody reads. */
    TERN_WARN("store op submitted after its port closed, dropped", "type=%d", (int)op->type);
    tern_store_op_release(op);
    return;
  }
  op->port = p;
  op->status = TERN_STORE_OK;
  p->pending++;
  opq_push(&p->staged, op);
}

int64_t tern_store_port_pending(const tern_store_port *p) { return p->pending; }

void tern_store_port_call(tern_store_port *p, tern_store_call_fn fn, void *arg) {
  tern_store_event_copy *ev = TERN_NEW(tern_store_event_copy);
  ev->kind = TERN_EVC_CALL;
  ev->call = fn;
  ev->call_arg = arg;
  pthread_mutex_lock(&p->mu);
  bool closed = p->calls_closed;
  pthread_mutex_unlock(&p->mu);
  if (closed) {
    tern_free(ev);
    fn(arg, false);
    return;
  }
  tern_store_port_post_event(p, ev);
}

void tern_store_port_post_event(tern_store_port *p, tern_store_event_copy *ev) {
  ev->next = NULL;
  pthread_mutex_lock(&p->mu);
  if (p->ev_tail) p->ev_tail->next = ev;
  else p->ev_head = ev;
  p->ev_tail = ev;
  pthread_mutex_unlock(&p->mu);
  uv_async_send(&p->async);
}

void tern_store_port_close(tern_store_port *p) {
  if (!p || p->closing) return;
  hand_over(p); /* what was submitted in this iteration is finished too */
  p->closing = true;
  tern_store *s = p->s;
  pthread_mutex_lock(&s->ports_mu); /* nothing is posted to it from now on */
  for (size_t i = 0; i < s->nports; i++) {
    if (s->ports[i] == p) {
      s->ports[i] = s->ports[--s->nports];
      break;
    }
  }
  pthread_mutex_unlock(&s->ports_mu);
  tern_store_drop_watches(s, p);
  /* Shutdown only: wait for the commit thread to finish this port's ops, so their completions
   * run now and nothing of this port is left in the store when it closes. */
  pthread_mutex_lock(&p->mu);
  while (p->inflight > 0) pthread_cond_wait(&p->cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
  pthread_mutex_lock(&p->mu);
  p->calls_closed = true; /* what callbacks below post to it is dropped */
  pthread_mutex_unlock(&p->mu);
  while (run_completions(p, SIZE_MAX, SIZE_MAX)) {
  }
  uv_prepare_stop(&p->hand);
  uv_close((uv_handle_t *)&p->hand, on_port_closed);
  uv_close((uv_handle_t *)&p->async, on_port_closed);
}
