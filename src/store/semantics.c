/* semantics.c: what each store op means, written once over the backend primitives
 * (backend.h), so that every backend gets the same behaviour and one test suite covers them
 * all. Runs on the commit thread, inside a group.
 *
 *   seqs        the backend's inbox counters: an inbox's envelopes are exactly the seqs
 *               [first_seq, next_seq); appends add at the end, acks and expiry purge the head
 *   de-dup      DEDUP bucket, "<device>/<client id>" → msg_id with the first answer's ts; a
 *               repeat (even in the same group) answers DUPLICATE with the first msg_id
 *   tokens      TOKENS bucket: "<msg_id>" (1:1) or "<msg_id>/<member>" (group) → sender; the
 *               first ack of any copy consumes it and reports the message delivered, once.
 *               A copy flagged SOLE (its message's only recipient copy) needs no token: it is
 *               purged by exactly one ack
 *   caps        REFUSE targets at inbox.max_envelopes make the whole APPEND FULL; SKIP targets
 *               are left out alone (group members with a full inbox)
 *   bodies      BODIES bucket: a group message's body stored once, [4 refs][bytes]; each
 *               envelope referencing it (TERN_EF_BODY_REF) holds one ref, released when it is
 *               acked, expired, or its device is deleted
 *   moves       the user-level inbox "@user" moves into the first device that logs in
 *   cascade     deleting a device deletes its record, inbox, counters, client ids and E2E keys,
 *               and takes it out of its user's device index
 *   devices     RECORDS "devices/<user>": the ids of the user's devices, read and written back
 *               by every new device's PUT, so devices.max_per_user holds across nodes
 *   deletes     MSGS bucket: msg_id → where its envelopes wait (store/locator.h), so that a
 *               delete for everyone overwrites them in place, under their seqs
 *   sweep       budgeted expiry: envelopes by their ts from each inbox's head, then the TTL
 *               buckets, resuming where the last sweep stopped
 * The directory records (users, devices) keep the byte layout v1 wrote.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "store/locator.h"
#include "store/store_int.h"

#include <sodium.h>

enum {
  REC_VERSION = 1,
  SWEEP_BUDGET = 10000,          /* records a SWEEP examines at most */
  MOVE_CHUNK = 1024,             /* envelopes read per step of a move */
  DRAIN_DEFAULT_BYTES = 1 << 20, /* max_bytes == 0 */
  SWEEP_PHASES = 5,              /* envelopes, client ids, tokens, bodies, message locators */
};

struct tern_sem {
  tern_store *s;       /* owner */
  tern_backend *be;    /* its backend */
  int64_t cap;         /* inbox.max_envelopes (<= 0: none) */
  int64_t inbox_ttl;   /* ms (<= 0: never) */
  int64_t dedup_ttl;   /* ms (<= 0: never) */
  int64_t msg_ttl;     /* ms: the MSGS bucket's (limits.delete_window) */
  int sweep_phase;     /* which part of the sweep runs next */
  tern_buf key, val;   /* scratch */
  tern_buf name;       /* scratch: an inbox name */
  tern_buf loc;        /* scratch: a message locator */
  tern_buf idx;        /* scratch: a user's device index */
  /* the group's directory writes, for the other writers' followers (store_int.h) */
  tern_store_change *changes;
  size_t nchanges, changes_cap;
  bool caught_up;      /* this group already waited for the backend's feed */
  tern_prefetch_key *pf; /* what to prefetch (pointers into the ops, or into pfkeys) */
  size_t npf, pf_cap;
  tern_buf pfkeys;     /* keys built for a prefetch, back to back */
  size_t *pfoff;       /* where each of them starts, by pf[] index (SIZE_MAX: not built) */
  struct drain_ref *drefs; /* do_drain: the items' shared-body references */
  size_t drefs_cap;
};

/* A drained item's shared body: its index in the op's items and the reference in its value. */
typedef struct drain_ref {
  size_t item;
  tern_str ref;
} drain_ref;

tern_sem *tern_sem_new(tern_store *s) {
  tern_sem *sem = TERN_NEW(tern_sem);
  sem->s = s;
  sem->be = &s->be;
  sem->cap = s->opts.inbox_max_envelopes;
  sem->inbox_ttl = s->opts.inbox_ttl_ms;
  sem->dedup_ttl = s->opts.dedup_ttl_ms;
  sem->msg_ttl = s->opts.msg_ttl_ms > 0 ? s->opts.msg_ttl_ms : 48 * 3600000LL;
  return sem;
}

void tern_sem_free(tern_sem *sem) {
  if (!sem) return;
  for (size_t i = 0; i < sem->changes_cap; i++) {
    tern_buf_free(&sem->changes[i].key);
    tern_buf_free(&sem->changes[i].value);
  }
  tern_free(sem->changes);
  tern_free(sem->pf);
  tern_free(sem->pfoff);
  tern_free(sem->drefs);
  tern_buf_free(&sem->pfkeys);
  tern_buf_free(&sem->key);
  tern_buf_free(&sem->val);
  tern_buf_free(&sem->name);
  tern_buf_free(&sem->loc);
  tern_buf_free(&sem->idx);
  tern_free(sem);
}

/* Shorthands for the backend's functions. */
#define BE(sem) ((sem)->be->vt)
#define SELF(sem) ((sem)->be->self)

/* A primitive failed: the op carries the reason and the group fails. */
static int failed(tern_sem *sem, tern_store_op *op, const char *what, int r) {
  const char *why = BE(sem)->why ? BE(sem)->why(SELF(sem)) : NULL;
  snprintf(op->err, sizeof op->err, "%s: %s", what, why && *why ? why : strerror(r < 0 ? -r : EIO));
  op->status = TERN_STORE_ERROR;
  return r < 0 ? r : -EIO;
}

static int64_t now_or_clock(int64_t now) { return now ? now : tern_now_ms(); }

/* ---- prefetch lists (backend.h prefetch; tern_sem_prefetch below) ---------------------------- */

static void pf_add_n(tern_sem *sem, int bucket, const char *key, size_t n, size_t off) {
  if (sem->npf == sem->pf_cap) {
    sem->pf_cap = sem->pf_cap ? 2 * sem->pf_cap : 64;
    sem->pf = tern_realloc(sem->pf, sem->pf_cap * sizeof *sem->pf);
    sem->pfoff = tern_realloc(sem->pfoff, sem->pf_cap * sizeof *sem->pfoff);
  }
  sem->pfoff[sem->npf] = off;
  sem->pf[sem->npf++] = (tern_prefetch_key){bucket, key, n};
}

static void pf_add(tern_sem *sem, int bucket, const char *key) {
  if (key) pf_add_n(sem, bucket, key, strlen(key), SIZE_MAX);
}

/* A key made of a, and sep then b when b is given, copied into pfkeys (which may move until
 * pf_run points at it). */
static void pf_add_built(tern_sem *sem, int bucket, const char *a, const char *sep, const char *b) {
  size_t off = sem->pfkeys.len;
  tern_buf_puts(&sem->pfkeys, a);
  if (b) {
    tern_buf_puts(&sem->pfkeys, sep);
    tern_buf_puts(&sem->pfkeys, b);
  }
  pf_add_n(sem, bucket, NULL, sem->pfkeys.len - off, off);
}

static void pf_run(tern_sem *sem) {
  for (size_t i = 0; i < sem->npf; i++)
    if (sem->pfoff[i] != SIZE_MAX) sem->pf[i].key = sem->pfkeys.data + sem->pfoff[i];
  if (sem->npf) BE(sem)->prefetch(SELF(sem), sem->pf, sem->npf);
  sem->npf = 0;
  tern_buf_reset(&sem->pfkeys);
}


/* ---- directory writes, noted for the change feed ------------------------------------------------ */

void tern_sem_begin(tern_sem *sem) {
  sem->nchanges = 0;
  sem->caught_up = false;
}

const tern_store_change *tern_sem_changes(tern_sem *sem, size_t *n) {
  *n = sem->nchanges;
  return sem->changes;
}

static void note_change(tern_sem *sem, tern_store_op *op, tern_bucket b, const char *key, size_t klen, const void *v,
                        size_t vlen, bool deleted) {
  /* Nobody else follows a store with a single port (a shared backend's other nodes have their
   * own feed, from the backend). */
  if (atomic_load(&sem->s->nports_open) < 2) return;
  if (sem->nchanges == sem->changes_cap) {
    size_t ncap = sem->changes_cap ? sem->changes_cap * 2 : 8;
    sem->changes = tern_realloc(sem->changes, ncap * sizeof *sem->changes);
    memset(sem->changes + sem->changes_cap, 0, (ncap - sem->changes_cap) * sizeof *sem->changes);
    sem->changes_cap = ncap;
  }
  tern_store_change *c = &sem->changes[sem->nchanges++];
  c->origin = op->port;
  c->bucket = (uint8_t)b;
  c->deleted = deleted;
  tern_buf_reset(&c->key);
  tern_buf_append(&c->key, key, klen);
  tern_buf_reset(&c->value);
  if (!deleted) tern_buf_append(&c->value, v, vlen);
}

/* kv_put / kv_del of a directory bucket (USERS, DEVICES, RECORDS). */
static int dir_put(tern_sem *sem, tern_store_op *op, tern_bucket b, const char *key, size_t klen, const void *v,
                   size_t vlen) {
  int r = BE(sem)->kv_put(SELF(sem), b, key, klen, v, vlen, 0);
  if (r >= 0) note_change(sem, op, b, key, klen, v, vlen, false);
  return r;
}

static int dir_del(tern_sem *sem, tern_store_op *op, tern_bucket b, const char *key, size_t klen) {
  int r = BE(sem)->kv_del(SELF(sem), b, key, klen);
  if (r >= 0) note_change(sem, op, b, key, klen, NULL, 0, true);
  return r;
}

/* For the other op files of the store (prekeys.c): the same helpers. */
tern_backend *tern_sem_backend(tern_sem *sem) { return sem->be; }
int tern_sem_dir_put(tern_sem *sem, tern_store_op *op, tern_bucket b, const char *key, size_t klen, const void *v,
                     size_t vlen) {
  return dir_put(sem, op, b, key, klen, v, vlen);
}
int tern_sem_dir_del(tern_sem *sem, tern_store_op *op, tern_bucket b, const char *key, size_t klen) {
  return dir_del(sem, op, b, key, klen);
}
int tern_sem_failed(tern_sem *sem, tern_store_op *op, const char *what, int r) { return failed(sem, op, what, r); }

/* CATCH_UP: once per group, whatever number of ops ask; a store whose only other writers are
 * this process's ports has nothing to wait for (their changes were queued at their commit). */
static int do_catch_up(tern_sem *sem, tern_store_op *op) {
  if (sem->caught_up || !BE(sem)->catch_up) return 0;
  sem->caught_up = true;
  char why[96] = "";
  int r = BE(sem)->catch_up(SELF(sem), why, sizeof why);
  if (r < 0) {
    snprintf(op->err, sizeof op->err, "catch_up: %s", *why ? why : strerror(-r));
    op->status = TERN_STORE_ERROR; /* this op alone: the group's writes are unaffected */
  }
  return 0;
}


/* ---- shared bodies ---------------------------------------------------------------------------- */

/* Drops one reference to a shared body; the last one deletes it. */
static int body_release(tern_sem *sem, tern_store_op *op, tern_str id) {
  if (!id.p || !id.n) return 0;
  int64_t ts = 0;
  int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_BODIES, id.p, id.n, &sem->val, &ts);
  if (r < 0) return failed(sem, op, "body", r);
  if (r == 0 || sem->val.len < 4) return 0; /* already gone (expired) */
  uint32_t refs = tern_get_be32(sem->val.data);
  if (refs <= 1) {
    r = BE(sem)->kv_del(SELF(sem), TERN_BUCKET_BODIES, id.p, id.n);
    if (r < 0) return failed(sem, op, "body", r);
    atomic_fetch_sub(&sem->s->bodies, 1);
    return 0;
  }
  refs--;
  uint8_t x[4] = {(uint8_t)(refs >> 24), (uint8_t)(refs >> 16), (uint8_t)(refs >> 8), (uint8_t)refs};
  memcpy(sem->val.data, x, 4);
  /* The body keeps its first write time, so its TTL counts from the message. */
  r = BE(sem)->kv_put(SELF(sem), TERN_BUCKET_BODIES, id.p, id.n, sem->val.data, sem->val.len, ts);
  return r < 0 ? failed(sem, op, "body", r) : 0;
}

/* Copies the body an envelope refers to into out (empty when it is gone). */
static int body_get(tern_sem *sem, tern_store_op *op, tern_str id, tern_buf *out) {
  int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_BODIES, id.p, id.n, &sem->val, NULL);
  if (r < 0) return failed(sem, op, "body", r);
  tern_buf_reset(out);
  if (r == 1 && sem->val.len >= 4) tern_buf_append(out, sem->val.data + 4, sem->val.len - 4);
  return 0;
}

/* ---- envelopes of an inbox head, collected ---------------------------------------------------- */

/* What the store needs from each envelope it removes: a visitor may not call the backend, so
 * the facts are collected first and acted on after the read. */
typedef struct head_env {
  uint64_t seq;
  uint8_t flags;
  int64_t ts;
  char *msg_id, *from, *group_id, *body_ref; /* owned; NULL when absent */
} head_env;

typedef struct head_list {
  head_env *v;
  size_t n, cap;
  int64_t stop_before; /* expiry: stop at the first envelope not older than this (0: no stop) */
  bool stopped;        /* expiry: an envelope young enough was found */
} head_list;

static char *slice_dup(tern_str s) { return s.p ? tern_strndup(s.p, s.n) : NULL; }

static bool collect_visit(uint64_t seq, const uint8_t *v, size_t len, void *arg) {
  head_list *l = arg;
  tern_env_view ev;
  bool ok = tern_env_unpack(v, len, &ev) == 0;
  if (ok && l->stop_before && ev.ts >= l->stop_before) {
    l->stopped = true; /* envelopes are in time order: the rest are younger */
    return false;
  }
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 16;
    l->v = tern_realloc(l->v, l->cap * sizeof *l->v);
  }
  head_env *h = &l->v[l->n++];
  memset(h, 0, sizeof *h);
  h->seq = seq;
  if (!ok) return true; /* a corrupt record is removed like any other */
  h->flags = ev.flags;
  h->ts = ev.ts;
  h->msg_id = slice_dup(ev.f[TERN_EF_MSG_ID]);
  h->from = slice_dup(ev.f[TERN_EF_FROM]);
  h->group_id = slice_dup(ev.f[TERN_EF_GROUP_ID]);
  h->body_ref = slice_dup(ev.f[TERN_EF_BODY_REF]);
  return true;
}

static void head_list_free(head_list *l) {
  for (size_t i = 0; i < l->n; i++) {
    tern_free(l->v[i].msg_id);
    tern_free(l->v[i].from);
    tern_free(l->v[i].group_id);
    tern_free(l->v[i].body_ref);
  }
  tern_free(l->v);
  memset(l, 0, sizeof *l);
}

/* Releases the shared bodies of collected envelopes. */
static int release_bodies(tern_sem *sem, tern_store_op *op, const head_list *l) {
  for (size_t i = 0; i < l->n; i++) {
    const char *b = l->v[i].body_ref;
    if (!b) continue;
    int r = body_release(sem, op, (tern_str){b, strlen(b)});
    if (r < 0) return r;
  }
  return 0;
}

/* ---- delete for everyone: envelopes replaced in place ------------------------------------------- */

/* Whether an inbox has a watcher in this process: a connected device, which may have had the
 * original already (the router adds devices connected on other nodes as target->live). */
static bool inbox_watched(tern_sem *sem, const char *inbox) {
  tern_store *s = sem->s;
  pthread_mutex_lock(&s->watch_mu);
  bool w = s->watches.count && tern_map_gets(&s->watches, inbox) != NULL;
  pthread_mutex_unlock(&s->watch_mu);
  return w;
}

/* Overwrites the envelope at (inbox, seq) with v when it is still stored and is msg_id's.
 * Returns 1 when replaced, 0 when it is gone (acked, expired, moved), or a failure. */
static int replace_one(tern_sem *sem, tern_op_append *op, const char *inbox, size_t il, uint64_t seq,
                       const tern_buf *v) {
  head_list l = {0};
  int r = BE(sem)->read(SELF(sem), inbox, il, seq, seq, collect_visit, &l);
  if (r < 0) {
    head_list_free(&l);
    return failed(sem, &op->op, "delete read", r);
  }
  /* The seq must still hold that message: an inbox forgotten and made again (a user-level
   * inbox after its move) counts its seqs from 1 again. */
  bool ours = l.n == 1 && l.v[0].seq == seq && l.v[0].msg_id && !strcmp(l.v[0].msg_id, op->replace_of);
  if (ours) {
    r = BE(sem)->replace ? BE(sem)->replace(SELF(sem), inbox, il, seq, (const uint8_t *)v->data, v->len)
                         : BE(sem)->erase(SELF(sem), inbox, il, seq);
    if (r == -ENOENT) ours = false;
    else if (r < 0) r = failed(sem, &op->op, "delete replace", r);
    else r = release_bodies(sem, &op->op, &l); /* the original's reference to its group body */
  }
  head_list_free(&l);
  return r < 0 ? r : ours;
}

/* replace_of (store.h): reads the message's locator, overwrites what still waits, and decides
 * per target whether an append follows (t->replaced_seq set and not live: none). Leaves the
 * status NOT_FOUND for a message deleted before. */
static int delete_in_place(tern_sem *sem, tern_op_append *op, int64_t now) {
  const char *id = op->replace_of;
  size_t idl = strlen(id);
  int64_t ts = now;
  int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_MSGS, id, idl, &sem->loc, &ts);
  if (r < 0) return failed(sem, &op->op, "locator", r);
  tern_locator loc;
  bool have = r == 1 && tern_locator_decode((const uint8_t *)sem->loc.data, sem->loc.len, &loc) == 0;
  if (have && (loc.flags & TERN_LOCATOR_DELETED)) {
    op->op.status = TERN_STORE_NOT_FOUND;
    return 0;
  }
  if (op->replace_group &&
      (!have || loc.group_len != strlen(op->replace_group) || memcmp(loc.group, op->replace_group, loc.group_len))) {
    op->op.status = TERN_STORE_NOT_FOUND; /* not a message of this group (or past the window) */
    return 0;
  }
  if (!have) ts = now;
  if (have && loc.media_len) op->replaced_media = tern_strndup(loc.media, loc.media_len);
  /* A backend that can only erase (NATS) leaves a hole at the original's seq, and the delete
   * is appended: only where a target appends, so that no inbox's last seq moves back. */
  bool in_place = BE(sem)->replace != NULL;
  if (have && (in_place || BE(sem)->erase) && op->nvalues) {
    size_t off = 0, il;
    const char *inbox;
    uint64_t seq;
    while (tern_locator_next(&loc, &off, &inbox, &il, &seq)) {
      tern_store_target *t = NULL;
      for (size_t i = 0; i < op->ntargets && !t; i++)
        if (strlen(op->targets[i].inbox) == il && !memcmp(op->targets[i].inbox, inbox, il)) t = &op->targets[i];
      if (!t && !in_place) continue;
      const tern_buf *v = &op->values[t ? t->value : 0];
      /* loc points into sem->loc, which the reads below do not touch (they use sem->val) */
      char name[256];
      memcpy(name, inbox, il);
      name[il] = '\0';
      r = replace_one(sem, op, name, il, seq, v);
      if (r < 0) return r;
      if (r == 1) {
        op->nreplaced++;
        if (t) t->replaced_seq = seq;
      }
    }
  }
  for (size_t i = 0; i < op->ntargets; i++) {
    tern_store_target *t = &op->targets[i];
    if (t->replaced_seq && !t->live && (!in_place || inbox_watched(sem, t->inbox))) t->live = true;
  }
  /* Remembered as deleted until the window ends (the record's first write time stays). */
  tern_locator_begin(&sem->val, TERN_LOCATOR_DELETED, NULL, NULL);
  r = BE(sem)->kv_put(SELF(sem), TERN_BUCKET_MSGS, id, idl, sem->val.data, sem->val.len, ts);
  return r < 0 ? failed(sem, &op->op, "locator", r) : 0;
}

/* check_of: NOT_FOUND when that message's locator says it was deleted; with of_probe, its
 * media in replaced_media. */
static int check_deleted(tern_sem *sem, tern_op_append *op) {
  int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_MSGS, op->check_of, strlen(op->check_of), &sem->loc, NULL);
  if (r < 0) return failed(sem, &op->op, "locator", r);
  tern_locator loc;
  if (r != 1 || tern_locator_decode((const uint8_t *)sem->loc.data, sem->loc.len, &loc) != 0) return 0;
  if (loc.flags & TERN_LOCATOR_DELETED) op->op.status = TERN_STORE_NOT_FOUND;
  else if (op->of_probe && loc.media_len && !op->replaced_media)
    op->replaced_media = tern_strndup(loc.media, loc.media_len); /* what a delete of it would revoke */
  return 0;
}

/* index_msg: where each appended envelope of the message waits. */
static int locator_put(tern_sem *sem, tern_op_append *op, int64_t now) {
  tern_locator_begin(&sem->loc, 0, op->index_media, op->index_group);
  for (size_t i = 0; i < op->ntargets; i++) {
    const tern_store_target *t = &op->targets[i];
    if (t->seq && !tern_locator_add(&sem->loc, t->inbox, strlen(t->inbox), t->seq)) break;
  }
  int r = BE(sem)->kv_put(SELF(sem), TERN_BUCKET_MSGS, op->msg_id, strlen(op->msg_id), sem->loc.data, sem->loc.len,
                          now);
  return r < 0 ? failed(sem, &op->op, "locator", r) : 0;
}

/* ---- APPEND ------------------------------------------------------------------------------------ */

static int do_append(tern_sem *sem, tern_op_append *op) {
  int64_t now = now_or_clock(op->now);
  for (size_t i = 0; i < op->ntargets; i++) {
    if (!op->targets[i].inbox || op->targets[i].value >= op->nvalues) {
      snprintf(op->op.err, sizeof op->op.err, "append: target without value");
      op->op.status = TERN_STORE_ERROR;
      return 0; /* the op's own mistake: it fails alone */
    }
  }
  if (op->dedup_key) {
    int64_t ts = 0;
    int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_DEDUP, op->dedup_key, strlen(op->dedup_key), &sem->val, &ts);
    if (r == -EINPROGRESS) { /* the first send's group is not done: this one alone, not now */
      snprintf(op->op.err, sizeof op->op.err, "dedup: the first send of this id is still being stored");
      op->op.status = TERN_STORE_UNAVAILABLE;
      return 0;
    }
    if (r < 0) return failed(sem, &op->op, "dedup", r);
    if (r == 1) {
      op->op.status = TERN_STORE_DUPLICATE;
      op->dup_ts = ts;
      op->dup_msg_id = tern_strndup(sem->val.data ? sem->val.data : "", sem->val.len);
      return 0;
    }
  }
  if (op->dedup_probe) return 0; /* a look only: nothing is written */
  if (op->check_of) {
    int r = check_deleted(sem, op);
    if (r < 0 || op->op.status != TERN_STORE_OK || op->of_probe) return r;
  }
  for (size_t i = 0; i < op->ntargets; i++) op->targets[i].replaced_seq = 0;
  op->nreplaced = 0;
  tern_free(op->replaced_media);
  op->replaced_media = NULL;
  /* Caps first, so that a refused append changes nothing. */
  for (size_t i = 0; i < op->ntargets; i++) {
    tern_store_target *t = &op->targets[i];
    t->skipped = false;
    t->seq = 0;
    if (t->cap == TERN_CAP_NONE || sem->cap <= 0) continue;
    tern_inbox_info in;
    int r = BE(sem)->inbox_get(SELF(sem), t->inbox, strlen(t->inbox), &in);
    if (r < 0 && r != -ENOENT) return failed(sem, &op->op, "cap", r);
    if (r == 0 && (int64_t)(in.next_seq - in.first_seq) >= sem->cap) {
      if (t->cap == TERN_CAP_REFUSE) {
        op->op.status = TERN_STORE_FULL;
        return 0;
      }
      t->skipped = true;
    }
  }
  if (op->record_key && op->record_check) {
    /* compare-and-set: a shared backend also makes the write below conditional on this read */
    int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_RECORDS, op->record_key, strlen(op->record_key), &sem->val, NULL);
    if (r < 0) return failed(sem, &op->op, "record", r);
    bool same = !r ? op->record_absent : !op->record_absent;
    if (same && r) {
      uint8_t h[32];
      crypto_generichash(h, sizeof h, (const uint8_t *)sem->val.data, sem->val.len, NULL, 0);
      same = sodium_memcmp(h, op->record_hash, sizeof h) == 0;
    }
    if (!same) {
      op->op.status = TERN_STORE_CONFLICT;
      return 0;
    }
  }
  if (op->replace_of) {
    int r = delete_in_place(sem, op, now);
    if (r < 0 || op->op.status != TERN_STORE_OK) return r;
  }
  uint32_t refs = 0;
  op->nskipped = 0;
  for (size_t i = 0; i < op->ntargets; i++) {
    tern_store_target *t = &op->targets[i];
    if (t->skipped) {
      op->nskipped++;
      continue;
    }
    if (t->replaced_seq && !t->live) continue; /* the delete took the original's place */
    const tern_buf *v = &op->values[t->value];
    int r = BE(sem)->append(SELF(sem), t->inbox, strlen(t->inbox), (const uint8_t *)v->data, v->len, &t->seq);
    if (r < 0) return failed(sem, &op->op, "append", r);
    refs++;
  }
  if (op->body_id && refs) {
    tern_buf_reset(&sem->val);
    tern_buf_put_be32(&sem->val, refs);
    tern_buf_append(&sem->val, op->body.data, op->body.len);
    int r = BE(sem)->kv_put(SELF(sem), TERN_BUCKET_BODIES, op->body_id, strlen(op->body_id), sem->val.data,
                            sem->val.len, now);
    if (r < 0) return failed(sem, &op->op, "body", r);
    atomic_fetch_add(&sem->s->bodies, 1);
  }
  if (op->dedup_key && op->msg_id) {
    int r = BE(sem)->kv_put(SELF(sem), TERN_BUCKET_DEDUP, op->dedup_key, strlen(op->dedup_key), op->msg_id,
                            strlen(op->msg_id), now);
    if (r < 0) return failed(sem, &op->op, "dedup", r);
  }
  if (op->record_key) {
    size_t kl = strlen(op->record_key);
    int r = op->record_delete ? dir_del(sem, &op->op, TERN_BUCKET_RECORDS, op->record_key, kl)
                              : dir_put(sem, &op->op, TERN_BUCKET_RECORDS, op->record_key, kl, op->record.data,
                                        op->record.len);
    if (r < 0) return failed(sem, &op->op, "record", r);
  }
  if (op->index_msg && op->msg_id) {
    int r = locator_put(sem, op, now);
    if (r < 0) return r;
  }
  if (op->token_from) {
    for (size_t i = 0; i < op->ntokens; i++) {
      int r = BE(sem)->kv_put(SELF(sem), TERN_BUCKET_TOKENS, op->tokens[i], strlen(op->tokens[i]), op->token_from,
                              strlen(op->token_from), now);
      if (r < 0) return failed(sem, &op->op, "token", r);
    }
  }
  op->op.status = TERN_STORE_OK;
  return 0;
}

/* ---- ACK --------------------------------------------------------------------------------------- */

static void add_delivered(tern_op_inbox *op, const head_env *h, const char *from, size_t from_len) {
  if (op->ndelivered == op->delivered_cap) {
    op->delivered_cap = op->delivered_cap ? op->delivered_cap * 2 : 4;
    op->delivered = tern_realloc(op->delivered, op->delivered_cap * sizeof *op->delivered);
  }
  tern_store_delivered *d = &op->delivered[op->ndelivered++];
  d->msg_id = tern_strdup(h->msg_id);
  d->from = tern_strndup(from, from_len);
  d->group_id = h->group_id ? tern_strdup(h->group_id) : NULL;
}

/* The delivered receipts an ACK makes itself (store.h, receipts): one per named sender of
 * the 1:1 messages it delivered, their ids in seq order, appended in the ack's own step; what
 * it made a receipt of leaves delivered[]. */
static int ack_receipts(tern_sem *sem, tern_op_inbox *op) {
  tern_op_append *rc = op->receipts;
  int64_t ts = tern_now_ms();
  for (size_t k = 0; k < op->nreceipt_from && k < rc->nvalues; k++) {
    const char *from = op->receipt_from[k];
    tern_buf *v = &rc->values[k];
    /* that sender's 1:1 ids go into the receipt (made, or nobody to tell: a sender without
     * devices) and out of delivered[]; the rest stay, in order */
    size_t n = 0, w = 0;
    for (size_t i = 0; i < op->ndelivered; i++) {
      tern_store_delivered *d = &op->delivered[i];
      if (d->group_id || strcmp(d->from, from) != 0) {
        op->delivered[w++] = *d;
        continue;
      }
      if (!n++) {
        tern_env_receipt_begin(v, false, from, NULL, ts);
        tern_env_put_str(v, TERN_EF_BY, op->user);
      }
      tern_env_put_str(v, TERN_EF_MSG_IDS, d->msg_id);
      tern_free(d->msg_id);
      tern_free(d->from);
    }
    op->ndelivered = w;
    if (!n) continue;
    bool appended = false;
    for (size_t t = 0; t < rc->ntargets; t++) {
      tern_store_target *tg = &rc->targets[t];
      if (tg->value != k || !tg->inbox) continue;
      int r = BE(sem)->append(SELF(sem), tg->inbox, strlen(tg->inbox), (const uint8_t *)v->data, v->len, &tg->seq);
      if (r < 0) return failed(sem, &op->op, "ack receipt", r);
      appended = true;
    }
    if (appended) op->nreceipts++;
  }
  return 0;
}

/* The group messages' delivered receipt part (store.h, parts_inbox): one per ack, whatever
 * the groups and senders of what it delivered, so that it costs one write. delivered[] is
 * left as it is: the submitter merges from it. */
static int ack_parts(tern_sem *sem, tern_op_inbox *op) {
  tern_buf v = {0}, e = {0};
  size_t n = 0;
  for (size_t i = 0; i < op->ndelivered; i++) {
    const tern_store_delivered *d = &op->delivered[i];
    if (!d->group_id) continue;
    if (!n++) {
      tern_env_receipt_begin(&v, false, op->user, NULL, tern_now_ms());
      tern_env_put_str(&v, TERN_EF_BY, op->user);
    }
    tern_buf_reset(&e);
    tern_buf_printf(&e, "%s\n%s\n%s", d->group_id, d->from, d->msg_id);
    tern_env_put_str(&v, TERN_EF_MSG_IDS, tern_buf_cstr(&e));
  }
  int r = 0;
  if (n) {
    r = BE(sem)->append(SELF(sem), op->parts_inbox, strlen(op->parts_inbox), (const uint8_t *)v.data, v.len, &op->parts_last);
    if (r < 0) r = failed(sem, &op->op, "ack receipt part", r);
    else op->parts_first = op->parts_last;
  }
  tern_buf_free(&v);
  tern_buf_free(&e);
  return r;
}

/* Does acking h consume a delivery token? A sole copy (SOLE) is delivered by its one ack. */
static bool has_token(const head_env *h) {
  return (h->flags & TERN_ENV_F_RECEIPT) && h->msg_id && !(h->flags & TERN_ENV_F_SOLE);
}

/* Appends to k the key of h's delivery token when user acks it: a group copy's token is the
 * member's, so each member is delivered once, by its first acking device. */
static void token_key(tern_buf *k, const head_env *h, const char *user) {
  tern_buf_puts(k, h->msg_id);
  if (h->group_id && user) {
    tern_buf_putc(k, '/');
    tern_buf_puts(k, user);
  }
}

static int do_ack(tern_sem *sem, tern_op_inbox *op) {
  if (!op->inbox) return 0;
  size_t nl = strlen(op->inbox);
  tern_inbox_info in;
  int r = BE(sem)->inbox_get(SELF(sem), op->inbox, nl, &in);
  if (r == -ENOENT) return 0;
  if (r < 0) return failed(sem, &op->op, "ack", r);
  if (in.first_seq == in.next_seq) return 0;
  uint64_t to = TERN_MIN(op->seq, in.next_seq - 1);
  if (to < in.first_seq) return 0; /* already acked: harmless */
  head_list l = {0};
  r = BE(sem)->read(SELF(sem), op->inbox, nl, in.first_seq, to, collect_visit, &l);
  if (r < 0) {
    head_list_free(&l);
    return failed(sem, &op->op, "ack read", r);
  }
  if (BE(sem)->prefetch) {
    /* the tokens and shared bodies read below, at once (backend.h prefetch) */
    for (size_t i = 0; i < l.n; i++) {
      const head_env *h = &l.v[i];
      if (has_token(h)) {
        size_t off = sem->pfkeys.len;
        token_key(&sem->pfkeys, h, op->user);
        pf_add_n(sem, TERN_BUCKET_TOKENS, NULL, sem->pfkeys.len - off, off);
      }
      pf_add(sem, TERN_BUCKET_BODIES, h->body_ref);
    }
    pf_run(sem);
  }
  for (size_t i = 0; i < l.n && r >= 0; i++) {
    const head_env *h = &l.v[i];
    if (!(h->flags & TERN_ENV_F_RECEIPT) || !h->msg_id) continue;
    if (h->flags & TERN_ENV_F_SOLE) {
      add_delivered(op, h, h->from ? h->from : "", h->from ? strlen(h->from) : 0);
      continue;
    }
    tern_buf_reset(&sem->key);
    token_key(&sem->key, h, op->user);
    r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_TOKENS, sem->key.data, sem->key.len, &sem->val, NULL);
    if (r < 0) {
      r = failed(sem, &op->op, "token", r);
      break;
    }
    if (r == 0) continue; /* another device of the recipient acked it first */
    add_delivered(op, h, sem->val.data ? sem->val.data : "", sem->val.len);
    r = BE(sem)->kv_del(SELF(sem), TERN_BUCKET_TOKENS, sem->key.data, sem->key.len);
    if (r < 0) r = failed(sem, &op->op, "token", r);
  }
  if (r >= 0) r = release_bodies(sem, &op->op, &l);
  head_list_free(&l);
  if (r >= 0 && op->receipts && op->user && op->ndelivered) r = ack_receipts(sem, op);
  if (r >= 0 && op->parts_inbox && op->user && op->ndelivered) r = ack_parts(sem, op);
  if (r < 0) return r;
  r = BE(sem)->purge(SELF(sem), op->inbox, nl, to);
  return r < 0 ? failed(sem, &op->op, "ack purge", r) : 0;
}

/* ---- DRAIN ------------------------------------------------------------------------------------- */

typedef struct drain_ctx {
  tern_op_inbox *op; /* receives items */
  size_t bytes;      /* value bytes so far */
  size_t max;        /* budget */
  uint64_t last;     /* seq of the last item taken */
} drain_ctx;

static bool drain_visit(uint64_t seq, const uint8_t *v, size_t len, void *arg) {
  drain_ctx *c = arg;
  tern_op_inbox *op = c->op;
  if (op->nitems && c->bytes + len > c->max) return false; /* always at least one item */
  if (op->nitems == op->items_cap) {
    op->items_cap = op->items_cap ? op->items_cap * 2 : 16;
    op->items = tern_realloc(op->items, op->items_cap * sizeof *op->items);
  }
  tern_store_item *it = &op->items[op->nitems++];
  memset(it, 0, sizeof *it);
  it->seq = seq;
  tern_buf_append(&it->value, v, len);
  c->bytes += len;
  c->last = seq;
  return true;
}

static int do_drain(tern_sem *sem, tern_op_inbox *op) {
  op->more = false;
  op->unsettled = false;
  if (!op->inbox) return 0;
  size_t nl = strlen(op->inbox);
  tern_inbox_info in;
  int r = BE(sem)->inbox_get(SELF(sem), op->inbox, nl, &in);
  if (r == -ENOENT) return 0;
  if (r < 0) return failed(sem, &op->op, "drain", r);
  uint64_t from = TERN_MAX(op->seq, in.first_seq - 1) + 1, to = in.next_seq - 1;
  if (from > to || in.first_seq == in.next_seq) return 0;
  drain_ctx c = {.op = op, .max = op->max_bytes ? op->max_bytes : DRAIN_DEFAULT_BYTES, .last = from - 1};
  r = BE(sem)->read_settled ? BE(sem)->read_settled(SELF(sem), op->inbox, nl, from, to, drain_visit, &c)
                            : BE(sem)->read(SELF(sem), op->inbox, nl, from, to, drain_visit, &c);
  if (r < 0) return failed(sem, &op->op, "drain read", r);
  op->unsettled = r == 1;
  op->more = c.last < to;
  /* Shared bodies travel beside their records: each item's reference, found in one pass (it
   * points into the item's value), then all of them read at once where reads are round trips
   * (backend.h prefetch), then fetched. */
  size_t nrefs = 0;
  for (size_t i = 0; i < op->nitems; i++) {
    tern_env_view ev;
    tern_store_item *it = &op->items[i];
    if (tern_env_unpack((const uint8_t *)it->value.data, it->value.len, &ev) != 0 || !ev.f[TERN_EF_BODY_REF].p) continue;
    if (nrefs == sem->drefs_cap) {
      sem->drefs_cap = sem->drefs_cap ? 2 * sem->drefs_cap : 16;
      sem->drefs = tern_realloc(sem->drefs, sem->drefs_cap * sizeof *sem->drefs);
    }
    sem->drefs[nrefs++] = (drain_ref){i, ev.f[TERN_EF_BODY_REF]};
    if (BE(sem)->prefetch) pf_add_n(sem, TERN_BUCKET_BODIES, ev.f[TERN_EF_BODY_REF].p, ev.f[TERN_EF_BODY_REF].n, SIZE_MAX);
  }
  if (BE(sem)->prefetch) pf_run(sem);
  for (size_t k = 0; k < nrefs; k++) {
    r = body_get(sem, &op->op, sem->drefs[k].ref, &op->items[sem->drefs[k].item].body);
    if (r < 0) return r;
  }
  return 0;
}

/* ---- MOVE_INBOX -------------------------------------------------------------------------------- */

/* Collects values as [8 len][bytes]. */
static bool move_visit(uint64_t seq, const uint8_t *v, size_t len, void *arg) {
  tern_buf_put_be64(arg, len);
  tern_buf_append(arg, v, len);
  return true;
}

/* An envelope's key in a move's map of what its target holds: 16 bytes of BLAKE2b. */
#define ENV_DIGEST_LEN 16
static void env_digest(uint8_t h[ENV_DIGEST_LEN], const uint8_t *v, size_t len) {
  crypto_generichash(h, ENV_DIGEST_LEN, v, len, NULL, 0);
}

/* Remembers an envelope already in the move's target, by its digest. */
static bool move_seen_visit(uint64_t seq, const uint8_t *v, size_t len, void *arg) {
  (void)seq;
  uint8_t h[ENV_DIGEST_LEN];
  env_digest(h, v, len);
  tern_map_put(arg, (const char *)h, sizeof h, (void *)1);
  return true;
}

static bool move_seen(const tern_map *seen, const uint8_t *v, size_t len) {
  if (!seen->count) return false;
  uint8_t h[ENV_DIGEST_LEN];
  env_digest(h, v, len);
  return tern_map_get(seen, (const char *)h, sizeof h) != NULL;
}

/* On a shared store two nodes move the same user inbox: the one that logged the device in,
 * and every other one when its feed shows the user's first device (sync.c), to catch what its
 * own senders put there meanwhile. The second mover can read the source before the first
 * one's purge lands and the target after its appends, and would append those envelopes again
 * (CI delivered one twice). So an envelope already in the target is not appended again: the
 * target is read before the source, so whatever the source still holds that another mover
 * moved is in that read, or that mover's appends collide with ours and the group runs again. */
static int move_inbox(tern_sem *sem, tern_store_op *op, const char *from, const char *into) {
  if (strcmp(from, into) == 0) return 0;
  size_t sl = strlen(from), dl = strlen(into);
  tern_inbox_info in;
  int r = BE(sem)->inbox_get(SELF(sem), from, sl, &in);
  if (r == -ENOENT) return 0;
  if (r < 0) return failed(sem, op, "move", r);
  if (in.first_seq >= in.next_seq) return 0;
  tern_map seen = {0};
  tern_inbox_info tin;
  r = BE(sem)->inbox_get(SELF(sem), into, dl, &tin);
  if (r == -ENOENT) r = 0;
  else if (r >= 0 && tin.first_seq < tin.next_seq)
    r = BE(sem)->read(SELF(sem), into, dl, tin.first_seq, tin.next_seq - 1, move_seen_visit, &seen);
  if (r < 0) {
    tern_map_free(&seen);
    return failed(sem, op, "move target read", r);
  }
  tern_buf vals = {0};
  /* In chunks, so a large user inbox never sits in memory twice at once. */
  while (in.first_seq < in.next_seq && r >= 0) {
    uint64_t to = TERN_MIN(in.first_seq + MOVE_CHUNK - 1, in.next_seq - 1);
    tern_buf_reset(&vals);
    r = BE(sem)->read(SELF(sem), from, sl, in.first_seq, to, move_visit, &vals);
    if (r < 0) {
      r = failed(sem, op, "move read", r);
      break;
    }
    for (size_t off = 0; off + 8 <= vals.len && r >= 0;) {
      size_t n = (size_t)tern_get_be64(vals.data + off);
      off += 8;
      const uint8_t *v = (const uint8_t *)vals.data + off;
      off += n;
      if (move_seen(&seen, v, n)) continue;
      uint64_t seq;
      r = BE(sem)->append(SELF(sem), into, dl, v, n, &seq);
      if (r < 0) r = failed(sem, op, "move append", r);
    }
    if (r >= 0) {
      r = BE(sem)->purge(SELF(sem), from, sl, to);
      if (r < 0) r = failed(sem, op, "move purge", r);
    }
    in.first_seq = to + 1;
  }
  tern_buf_free(&vals);
  tern_map_free(&seen);
  if (r < 0) return r;
  /* The user-level inbox is empty now; its seqs never reach a client, so forgetting its
   * counter is fine. */
  r = BE(sem)->forget(SELF(sem), from, sl);
  return r < 0 ? failed(sem, op, "move forget", r) : 0;
}

/* MOVE_INBOX: inbox into inbox2 (a PUT_DEVICE of a first device moves in its own op). */
static int do_move(tern_sem *sem, tern_op_inbox *op) {
  if (!op->inbox || !op->inbox2) {
    snprintf(op->op.err, sizeof op->op.err, "move: inbox and inbox2 required");
    op->op.status = TERN_STORE_ERROR;
    return 0;
  }
  return move_inbox(sem, &op->op, op->inbox, op->inbox2);
}

/* ---- directory records ------------------------------------------------------------------------- */
/* "u/<user>" → [1 ver][8 created][8 last_seen][2 n][pwhash][8 deleted, only in a tombstone]
 * "d/<id>"   → [1 ver][8 created][8 last_seen][32 token hash][2 n][user][2 n][label][2 n][push]
 * (the push registration came later: records without it end after the label) */

/* ---- the device index ---------------------------------------------------------------------------
 * "devices/<user>" (RECORDS) → [1 ver] then, per device, [1 n][id][8 ms it was added]: the
 * ids of the user's stored devices. A directory's count of a user's devices is not enough
 * for devices.max_per_user on a shared store: another node's login reaches it only through
 * the feed, so two logins racing for the last slot on two nodes both saw room (issue 12).
 * The index is read with kv_get and written back in the new device's group, so on a shared
 * backend the write is conditional on it: the loser's group runs again on the winner's index
 * and is refused there. One record per user rather than a count: a DEL_DEVICE takes exactly
 * its own id out, and an id already listed (a PUT of the same new device again) takes no
 * second slot.
 *
 * A user with no index (devices stored before it existed) gets one seeded from the op's
 * known[], the submitter's directory (a login catches up with the feed first): as exact as
 * the directory was before, and exact from then on.
 *
 * An id whose device record is gone (left by a node that did not keep the index yet, in a
 * rolling upgrade) would hold a slot for good, so one is dropped when the limit is reached,
 * but only INDEX_STALE_MS after it was added: on NATS another node's group is readable from
 * its claims on, and its index claim comes before its device records, which are plain puts
 * published after every claim won; a young id without a record may be one of those (dropping
 * it let a fourth login of three through in the cluster test). */
enum { INDEX_VERSION = 1, INDEX_ENTRY_TS = 8 };
#define INDEX_STALE_MS (10 * 60 * 1000LL)

static void index_key(tern_sem *sem, const char *user) {
  tern_buf_reset(&sem->key);
  tern_buf_puts(&sem->key, TERN_DEVICES_RECORD_PREFIX);
  tern_buf_puts(&sem->key, user);
}

/* The bytes of the entry at `at`. */
static size_t index_entry_len(const tern_buf *b, size_t at) { return 1 + (uint8_t)b->data[at] + INDEX_ENTRY_TS; }

/* Whether b is a well-formed index. */
static bool index_valid(const tern_buf *b) {
  if (b->len < 1 || (uint8_t)b->data[0] != INDEX_VERSION) return false;
  for (size_t at = 1; at < b->len; at += index_entry_len(b, at))
    if (b->data[at] == 0 || at + index_entry_len(b, at) > b->len) return false;
  return true;
}

/* The offset of id's entry in a valid index, or 0 when it is not listed. */
static size_t index_find(const tern_buf *b, const char *id, size_t idl) {
  for (size_t at = 1; at < b->len; at += index_entry_len(b, at))
    if ((uint8_t)b->data[at] == idl && memcmp(b->data + at + 1, id, idl) == 0) return at;
  return 0;
}

static size_t index_count(const tern_buf *b) {
  size_t n = 0;
  for (size_t at = 1; at < b->len; at += index_entry_len(b, at)) n++;
  return n;
}

static void index_add(tern_buf *b, const char *id, size_t idl, int64_t now) {
  if (idl == 0 || idl > 255 || index_find(b, id, idl)) return;
  tern_buf_putc(b, (char)idl);
  tern_buf_append(b, id, idl);
  tern_buf_put_be64(b, (uint64_t)now);
}

/* Takes the entry at (from index_find) out. */
static void index_cut(tern_buf *b, size_t at) {
  size_t n = index_entry_len(b, at);
  memmove(b->data + at, b->data + at + n, b->len - at - n);
  b->len -= n;
}

/* Reads user's index into sem->idx: 1 when stored (and valid), 0 when there is none. */
static int index_read(tern_sem *sem, tern_store_op *op, const char *user) {
  index_key(sem, user);
  int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_RECORDS, sem->key.data, sem->key.len, &sem->idx, NULL);
  if (r < 0) return failed(sem, op, "device index", r);
  if (r == 1 && !index_valid(&sem->idx)) {
    TERN_WARN("store: bad device index, seeding it again", "user=%s bytes=%zu", user, sem->idx.len);
    r = 0;
  }
  return r;
}

static int index_write(tern_sem *sem, tern_store_op *op, const char *user) {
  index_key(sem, user);
  int r = dir_put(sem, op, TERN_BUCKET_RECORDS, sem->key.data, sem->key.len, sem->idx.data, sem->idx.len);
  return r < 0 ? failed(sem, op, "device index", r) : 0;
}

/* Drops the ids of sem->idx that were added before cutoff and whose device record is gone. */
static int index_prune(tern_sem *sem, tern_store_op *op, int64_t cutoff) {
  for (size_t at = 1; at < sem->idx.len;) {
    size_t n = (uint8_t)sem->idx.data[at];
    int64_t added = (int64_t)tern_get_be64((const uint8_t *)sem->idx.data + at + 1 + n);
    int r = 1;
    if (added < cutoff) {
      r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_DEVICES, sem->idx.data + at + 1, n, &sem->val, NULL);
      if (r < 0) return failed(sem, op, "device index", r);
    }
    if (r == 0) index_cut(&sem->idx, at);
    else at += index_entry_len(&sem->idx, at);
  }
  return 0;
}

/* PUT_DEVICE with create: admits the device into its user's index, or answers FULL. */
static int index_admit(tern_sem *sem, tern_op_record *op) {
  const tern_device_rec *d = &op->device;
  size_t idl = strlen(d->device_id);
  int64_t now = tern_now_ms();
  int r = index_read(sem, &op->op, d->user);
  if (r < 0) return r;
  bool stored = r == 1;
  if (!stored) {
    tern_buf_reset(&sem->idx);
    tern_buf_putc(&sem->idx, INDEX_VERSION);
    for (size_t i = 0; i < op->nknown; i++)
      if (op->known[i] && strcmp(op->known[i], d->device_id) != 0)
        index_add(&sem->idx, op->known[i], strlen(op->known[i]), now);
  } else if (index_find(&sem->idx, d->device_id, idl)) {
    return 0; /* listed already: the same new device again takes no second slot */
  }
  if (op->max_devices && index_count(&sem->idx) >= op->max_devices) {
    r = index_prune(sem, &op->op, now - INDEX_STALE_MS);
    if (r < 0) return r;
    if (index_count(&sem->idx) >= op->max_devices) {
      snprintf(op->op.err, sizeof op->op.err, "put_device: the user has %u devices (devices.max_per_user)",
               op->max_devices);
      op->op.status = TERN_STORE_FULL;
      /* The index is written back as read (or as seeded: its ids are young, never pruned):
       * on a shared backend what this group read may be another node's claim that its race
       * undoes, and only a write makes the refusal conditional on the index (the group then
       * runs again on what stayed). The device is not stored, and no stale id is dropped for
       * a refusal. */
      if (stored && (r = index_read(sem, &op->op, d->user)) < 0) return r;
      return index_write(sem, &op->op, d->user);
    }
  }
  index_add(&sem->idx, d->device_id, idl, now);
  return index_write(sem, &op->op, d->user);
}

/* DEL_DEVICE: takes the device (whose record is in rec, read before anything else here) out
 * of its user's index. */
static int index_forget(tern_sem *sem, tern_store_op *op, const char *id, size_t idl, const tern_buf *rec) {
  /* the user: [1 ver][8 created][8 last_seen][32 token hash][2 n][user] (below) */
  if (rec->len < 51 || (uint8_t)rec->data[0] != REC_VERSION) return 0;
  size_t ul = tern_get_be16((const uint8_t *)rec->data + 49);
  if (ul == 0 || 51 + ul > rec->len) return 0;
  char *user = tern_strndup(rec->data + 51, ul);
  int r = index_read(sem, op, user);
  size_t at = r == 1 ? index_find(&sem->idx, id, idl) : 0;
  /* An index left empty stays: it says the user has no device, where none would be seeded
   * from a directory again. DEL_USER removes it with the user. */
  if (at) {
    index_cut(&sem->idx, at);
    r = index_write(sem, op, user);
  }
  tern_free(user);
  return r < 0 ? r : 0;
}

static int do_put_user(tern_sem *sem, tern_op_record *op) {
  const tern_user_rec *u = &op->user;
  size_t hl = u->pwhash ? strlen(u->pwhash) : 0;
  if (!u->user || hl > 0xffff) {
    snprintf(op->op.err, sizeof op->op.err, "put_user: user required, pwhash at most 65535 bytes");
    op->op.status = TERN_STORE_ERROR;
    return 0;
  }
  size_t ul = strlen(u->user);
  if (op->create) {
    /* get-then-put in one group; a shared backend makes the put conditional on the absence */
    int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_USERS, u->user, ul, &sem->val, NULL);
    if (r < 0) return failed(sem, &op->op, "put_user", r);
    if (r == 1) {
      op->op.status = TERN_STORE_DUPLICATE;
      return 0;
    }
  }
  tern_buf_reset(&sem->val);
  tern_buf_putc(&sem->val, REC_VERSION);
  tern_buf_put_be64(&sem->val, (uint64_t)u->created);
  tern_buf_put_be64(&sem->val, (uint64_t)u->last_seen);
  tern_buf_put_be16(&sem->val, hl);
  tern_buf_append(&sem->val, u->pwhash, hl);
  if (u->deleted > 0) tern_buf_put_be64(&sem->val, (uint64_t)u->deleted);
  int r = dir_put(sem, &op->op, TERN_BUCKET_USERS, u->user, ul, sem->val.data, sem->val.len);
  return r < 0 ? failed(sem, &op->op, "put_user", r) : 0;
}

static int do_del_user(tern_sem *sem, tern_op_record *op) {
  if (!op->user.user) {
    snprintf(op->op.err, sizeof op->op.err, "del_user: user required");
    op->op.status = TERN_STORE_ERROR;
    return 0;
  }
  int r = dir_del(sem, &op->op, TERN_BUCKET_USERS, op->user.user, strlen(op->user.user));
  if (r < 0) return failed(sem, &op->op, "del_user", r);
  /* The user's device index goes too, when it is empty (its devices were deleted with the
   * account). Read first, so that on a shared store a device a new owner of the name logged
   * in meanwhile makes this group run again and find the index in use. */
  r = index_read(sem, &op->op, op->user.user);
  if (r == 1 && index_count(&sem->idx) == 0) {
    index_key(sem, op->user.user);
    r = dir_del(sem, &op->op, TERN_BUCKET_RECORDS, sem->key.data, sem->key.len);
    if (r < 0) return failed(sem, &op->op, "del_user", r);
  }
  return r < 0 ? r : 0;
}

static int do_put_device(tern_sem *sem, tern_op_record *op) {
  const tern_device_rec *d = &op->device;
  size_t ul = d->user ? strlen(d->user) : 0, ll = d->label ? strlen(d->label) : 0, pl = d->push ? strlen(d->push) : 0;
  if (!d->device_id || !d->user || ul > 0xffff || ll > 0xffff || pl > 0xffff) {
    snprintf(op->op.err, sizeof op->op.err, "put_device: device_id and user required, fields at most 65535 bytes");
    op->op.status = TERN_STORE_ERROR;
    return 0;
  }
  if (op->create) {
    int r = index_admit(sem, op);
    if (r < 0 || op->op.status != TERN_STORE_OK) return r;
  }
  tern_buf_reset(&sem->val);
  tern_buf_putc(&sem->val, REC_VERSION);
  tern_buf_put_be64(&sem->val, (uint64_t)d->created);
  tern_buf_put_be64(&sem->val, (uint64_t)d->last_seen);
  tern_buf_append(&sem->val, d->token_hash, sizeof d->token_hash);
  tern_buf_put_be16(&sem->val, ul);
  tern_buf_append(&sem->val, d->user, ul);
  tern_buf_put_be16(&sem->val, ll);
  tern_buf_append(&sem->val, d->label, ll);
  tern_buf_put_be16(&sem->val, pl);
  tern_buf_append(&sem->val, d->push, pl);
  int r = dir_put(sem, &op->op, TERN_BUCKET_DEVICES, d->device_id, strlen(d->device_id), sem->val.data, sem->val.len);
  if (r < 0) return failed(sem, &op->op, "put_device", r);
  /* A first device takes the user-level inbox in its own op: accepted, it gets those messages
   * before any send can target it; refused, they wait for the next device. */
  return op->create && op->move_from ? move_inbox(sem, &op->op, op->move_from, d->device_id) : 0;
}

/* Both records keep last_seen at bytes 9..16, so it is patched in place. */
static int patch_last_seen(tern_sem *sem, tern_store_op *op, tern_bucket b, const char *name, int64_t last_seen) {
  int r = BE(sem)->kv_get(SELF(sem), b, name, strlen(name), &sem->val, NULL);
  if (r < 0) return failed(sem, op, "last_seen", r);
  if (r == 0 || sem->val.len < 17 || sem->val.data[0] != REC_VERSION) return 0; /* unknown: nothing to do */
  uint64_t x = (uint64_t)last_seen;
  for (int i = 0; i < 8; i++) sem->val.data[9 + i] = (char)(x >> (56 - 8 * i));
  r = dir_put(sem, op, b, name, strlen(name), sem->val.data, sem->val.len);
  return r < 0 ? failed(sem, op, "last_seen", r) : 0;
}

static int do_set_last_seen(tern_sem *sem, tern_op_record *op) {
  int r = 0;
  if (op->user.user) r = patch_last_seen(sem, &op->op, TERN_BUCKET_USERS, op->user.user, op->user.last_seen);
  if (r >= 0 && op->device.device_id)
    r = patch_last_seen(sem, &op->op, TERN_BUCKET_DEVICES, op->device.device_id, op->device.last_seen);
  return r;
}

/* ---- DEL_DEVICE: the cascade --------------------------------------------------------------------- */

static int do_del_device(tern_sem *sem, tern_op_inbox *op) {
  const char *id = op->inbox;
  if (!id) {
    snprintf(op->op.err, sizeof op->op.err, "del_device: device id required");
    op->op.status = TERN_STORE_ERROR;
    return 0;
  }
  size_t idl = strlen(id);
  /* The record names the device's user, whose index loses it (none for a user-level inbox, or
   * a device deleted already: another node's delete, which its own group took out). */
  int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_DEVICES, id, idl, &sem->val, NULL);
  if (r < 0) return failed(sem, &op->op, "del_device", r);
  if (r == 1 && (r = index_forget(sem, &op->op, id, idl, &sem->val)) < 0) return r;
  r = dir_del(sem, &op->op, TERN_BUCKET_DEVICES, id, idl);
  if (r < 0) return failed(sem, &op->op, "del_device", r);
  tern_inbox_info in;
  r = BE(sem)->inbox_get(SELF(sem), id, idl, &in);
  if (r < 0 && r != -ENOENT) return failed(sem, &op->op, "del_device", r);
  if (r == 0) {
    if (in.first_seq < in.next_seq) {
      /* Shared bodies lose the deleted device's references (read in chunks). */
      for (uint64_t from = in.first_seq; from < in.next_seq && r >= 0;) {
        uint64_t to = TERN_MIN(from + MOVE_CHUNK - 1, in.next_seq - 1);
        head_list l = {0};
        r = BE(sem)->read(SELF(sem), id, idl, from, to, collect_visit, &l);
        if (r < 0) r = failed(sem, &op->op, "del_device read", r);
        else r = release_bodies(sem, &op->op, &l);
        head_list_free(&l);
        from = to + 1;
      }
      if (r < 0) return r;
      r = BE(sem)->purge(SELF(sem), id, idl, in.next_seq - 1);
      if (r < 0) return failed(sem, &op->op, "del_device purge", r);
    }
    r = BE(sem)->forget(SELF(sem), id, idl);
    if (r < 0) return failed(sem, &op->op, "del_device forget", r);
  }
  /* Its E2E keys: the bundle (followed by every writer: the device stops being E2E-capable
   * everywhere) and its one-time prekeys with their index (prekeys.c). */
  r = tern_sem_keys_forget(sem, &op->op, id, idl);
  if (r < 0) return r;
  /* Remembered client ids "<id>/..." */
  tern_buf_reset(&sem->key);
  tern_buf_append(&sem->key, id, idl);
  tern_buf_putc(&sem->key, '/');
  r = BE(sem)->kv_del_prefix(SELF(sem), TERN_BUCKET_DEDUP, sem->key.data, sem->key.len);
  return r < 0 ? failed(sem, &op->op, "del_device ids", r) : 0;
}

/* ---- SWEEP --------------------------------------------------------------------------------------- */

/* Expires envelopes from the head of an inbox while older than cutoff. Returns 1 when the
 * inbox is done, 0 when the budget ran out first, or a failure. */
static int sweep_inbox(tern_sem *sem, tern_op_inbox *op, const char *name, size_t nl, int64_t cutoff, long *budget) {
  for (;;) {
    tern_inbox_info in;
    int r = BE(sem)->inbox_get(SELF(sem), name, nl, &in);
    if (r == -ENOENT) return 1;
    if (r < 0) return failed(sem, &op->op, "sweep", r);
    if (in.first_seq >= in.next_seq) return 1;
    if (*budget <= 0) return 0;
    uint64_t to = TERN_MIN(in.next_seq - 1, in.first_seq + (uint64_t)TERN_MIN(*budget, 256) - 1);
    head_list l = {.stop_before = cutoff};
    r = BE(sem)->read(SELF(sem), name, nl, in.first_seq, to, collect_visit, &l);
    if (r < 0) {
      head_list_free(&l);
      return failed(sem, &op->op, "sweep read", r);
    }
    *budget -= (long)l.n + 1;
    bool young = l.stopped;
    /* Expiry consumes no delivery token: an expired message was never delivered. Seqs missing
     * from the range (none expected) are stepped over with the rest. */
    uint64_t upto = young ? (l.n ? l.v[l.n - 1].seq : in.first_seq - 1) : to;
    r = release_bodies(sem, &op->op, &l);
    op->expired += l.n;
    head_list_free(&l);
    if (r < 0) return r;
    if (upto >= in.first_seq) {
      r = BE(sem)->purge(SELF(sem), name, nl, upto);
      if (r < 0) return failed(sem, &op->op, "sweep purge", r);
    }
    if (young) return 1;
  }
}

static int do_sweep(tern_sem *sem, tern_op_inbox *op) {
  int64_t now = now_or_clock(op->now);
  long budget = SWEEP_BUDGET;
  /* At most the four phases per call; the next call resumes where this one stopped. */
  for (int step = 0; step < SWEEP_PHASES && budget > 0; step++) {
    int done = 1;
    switch (sem->sweep_phase) {
      case 0: /* envelopes */
        if (sem->inbox_ttl <= 0) break;
        for (;;) {
          if (budget <= 0) {
            done = 0;
            break;
          }
          int r = BE(sem)->inbox_next(SELF(sem), &sem->name);
          if (r < 0) return failed(sem, &op->op, "sweep walk", r);
          if (r == 0) break; /* end of a round */
          budget--;
          r = sweep_inbox(sem, op, sem->name.data, sem->name.len, now - sem->inbox_ttl, &budget);
          if (r < 0) return r;
          /* An inbox cut short by the budget is seen again next round. */
        }
        break;
      case 1:
      case 2:
      case 3:
      case 4: {
        static const tern_bucket buckets[] = {TERN_BUCKET_DEDUP, TERN_BUCKET_TOKENS, TERN_BUCKET_BODIES,
                                              TERN_BUCKET_MSGS};
        tern_bucket b = buckets[sem->sweep_phase - 1];
        int64_t ttl = b == TERN_BUCKET_DEDUP ? sem->dedup_ttl : b == TERN_BUCKET_MSGS ? sem->msg_ttl : sem->inbox_ttl;
        if (ttl <= 0) break;
        if (b == TERN_BUCKET_BODIES) ttl += 86400000; /* as store.c sets the bucket's TTL */
        uint64_t gone = 0;
        int r = BE(sem)->kv_expire(SELF(sem), b, now - ttl, &budget, &gone);
        if (r < 0) return failed(sem, &op->op, "sweep expire", r);
        if (b == TERN_BUCKET_BODIES && gone) atomic_fetch_sub(&sem->s->bodies, (int64_t)gone);
        done = r;
        break;
      }
    }
    if (!done) break;
    sem->sweep_phase = (sem->sweep_phase + 1) % SWEEP_PHASES;
  }
  return 0;
}

/* ---- KV records of other modules ------------------------------------------------------------------ */

static int do_kv(tern_sem *sem, tern_op_kv *op, bool put) {
  if (!op->key) {
    snprintf(op->op.err, sizeof op->op.err, "kv: key required");
    op->op.status = TERN_STORE_ERROR;
    return 0;
  }
  int r = put ? dir_put(sem, &op->op, TERN_BUCKET_RECORDS, op->key, strlen(op->key), op->value.data, op->value.len)
              : dir_del(sem, &op->op, TERN_BUCKET_RECORDS, op->key, strlen(op->key));
  return r < 0 ? failed(sem, &op->op, "kv", r) : 0;
}

/* ---- dispatch ----------------------------------------------------------------------------------- */

int tern_sem_apply(tern_sem *sem, tern_store_op *op) {
  op->status = TERN_STORE_OK;
  switch (op->type) {
    case TERN_OP_PUT_USER: return do_put_user(sem, tern_op_as_record(op));
    case TERN_OP_PUT_DEVICE: return do_put_device(sem, tern_op_as_record(op));
    case TERN_OP_SET_LAST_SEEN: return do_set_last_seen(sem, tern_op_as_record(op));
    case TERN_OP_DEL_USER: return do_del_user(sem, tern_op_as_record(op));
    case TERN_OP_DEL_DEVICE: return do_del_device(sem, tern_op_as_inbox(op));
    case TERN_OP_MOVE_INBOX: return do_move(sem, tern_op_as_inbox(op));
    case TERN_OP_APPEND: return do_append(sem, tern_op_as_append(op));
    case TERN_OP_ACK: return do_ack(sem, tern_op_as_inbox(op));
    case TERN_OP_DRAIN: return do_drain(sem, tern_op_as_inbox(op));
    case TERN_OP_SWEEP: return do_sweep(sem, tern_op_as_inbox(op));
    case TERN_OP_SYNC: return 0;
    case TERN_OP_CATCH_UP: return do_catch_up(sem, op);
    case TERN_OP_KV_PUT: return do_kv(sem, tern_op_as_kv(op), true);
    case TERN_OP_KV_DEL: return do_kv(sem, tern_op_as_kv(op), false);
    case TERN_OP_KEYS_PUT:
    case TERN_OP_KEYS_GET:
    case TERN_OP_KEYS_CLAIM: return tern_sem_keys(sem, tern_op_as_keys(op));
    case TERN_OP__COUNT: break;
  }
  snprintf(op->err, sizeof op->err, "unknown op type %d", (int)op->type);
  op->status = TERN_STORE_ERROR;
  return 0;
}

/* ---- prefetch: what a group's ops will read --------------------------------------------------- */

static void pf_append(tern_sem *sem, const tern_op_append *op) {
  pf_add(sem, TERN_BUCKET_DEDUP, op->dedup_key);
  if (op->dedup_probe) return;
  pf_add(sem, TERN_BUCKET_MSGS, op->check_of);
  if (op->record_check) pf_add(sem, TERN_BUCKET_RECORDS, op->record_key);
  for (size_t i = 0; i < op->ntargets; i++) pf_add(sem, -1, op->targets[i].inbox);
}

/* Names the inboxes and keys the ops will read first (backend.h prefetch): the appends'
 * targets and look-ups, the inboxes acked, drained and moved, a new user's name and a new
 * device's index. A key read only after
 * another read (a token of an envelope the ack finds) is left to the op. */
void tern_sem_prefetch(tern_sem *sem, tern_store_op *const *ops, size_t n) {
  if (!BE(sem)->prefetch) return;
  for (size_t i = 0; i < n; i++) {
    tern_store_op *op = ops[i];
    switch (op->type) {
      case TERN_OP_APPEND: pf_append(sem, tern_op_as_append(op)); break;
      case TERN_OP_ACK: {
        tern_op_inbox *ib = tern_op_as_inbox(op);
        pf_add(sem, -1, ib->inbox);
        if (ib->receipts) pf_append(sem, ib->receipts);
        if (ib->parts_inbox) pf_add(sem, -1, ib->parts_inbox);
        break;
      }
      case TERN_OP_DRAIN: pf_add(sem, -1, tern_op_as_inbox(op)->inbox); break;
      case TERN_OP_PUT_USER: {
        const tern_op_record *rec = tern_op_as_record(op);
        if (rec->create) pf_add(sem, TERN_BUCKET_USERS, rec->user.user);
        break;
      }
      case TERN_OP_PUT_DEVICE: {
        /* a new device: its user's device index, and the inboxes a first device's move reads */
        const tern_op_record *rec = tern_op_as_record(op);
        if (!rec->create || !rec->device.user) break;
        pf_add_built(sem, TERN_BUCKET_RECORDS, TERN_DEVICES_RECORD_PREFIX, "", rec->device.user);
        if (rec->move_from) {
          pf_add(sem, -1, rec->move_from);
          pf_add(sem, -1, rec->device.device_id);
        }
        break;
      }
      case TERN_OP_MOVE_INBOX:
        pf_add(sem, -1, tern_op_as_inbox(op)->inbox);
        pf_add(sem, -1, tern_op_as_inbox(op)->inbox2);
        break;
      default: break;
    }
  }
  pf_run(sem);
}

void tern_sem_fail(tern_store_op *op, const char *why) {
  op->status = TERN_STORE_ERROR;
  snprintf(op->err, sizeof op->err, "%s", why);
  switch (op->type) {
    case TERN_OP_APPEND: {
      tern_op_append *a = tern_op_as_append(op);
      for (size_t i = 0; i < a->ntargets; i++) {
        a->targets[i].seq = 0;
        a->targets[i].replaced_seq = 0;
        a->targets[i].skipped = false;
      }
      tern_free(a->dup_msg_id);
      a->dup_msg_id = NULL;
      tern_free(a->replaced_media);
      a->replaced_media = NULL;
      a->nreplaced = 0;
      a->dup_ts = 0;
      a->nskipped = 0;
      break;
    }
    case TERN_OP_ACK:
    case TERN_OP_DRAIN:
    case TERN_OP_SWEEP:
    case TERN_OP_DEL_DEVICE:
    case TERN_OP_MOVE_INBOX:
    case TERN_OP_CATCH_UP:
    case TERN_OP_SYNC: {
      tern_op_inbox *b = tern_op_as_inbox(op);
      for (size_t i = 0; i < b->nitems; i++) {
        tern_buf_free(&b->items[i].value);
        tern_buf_free(&b->items[i].body);
      }
      b->nitems = 0;
      b->more = false;
      for (size_t i = 0; i < b->ndelivered; i++) {
        tern_free(b->delivered[i].msg_id);
        tern_free(b->delivered[i].from);
        tern_free(b->delivered[i].group_id);
      }
      b->ndelivered = 0;
      b->expired = 0;
      b->nreceipts = 0;
      b->parts_first = b->parts_last = 0;
      if (b->receipts) {
        for (size_t i = 0; i < b->receipts->ntargets; i++) b->receipts->targets[i].seq = 0;
        for (size_t i = 0; i < b->receipts->nvalues; i++) tern_buf_reset(&b->receipts->values[i]);
      }
      break;
    }
    case TERN_OP_KEYS_PUT:
    case TERN_OP_KEYS_GET:
    case TERN_OP_KEYS_CLAIM:
      tern_sem_keys_reset(tern_op_as_keys(op));
      break;
    default: break;
  }
}

/* ---- load -------------------------------------------------------------------------------------- */

typedef struct load_ctx {
  const tern_store_load_cbs *cbs;
} load_ctx;

/* A string field of a directory record holds no NUL byte: cut at one, it would read as
 * another string (its C copy is all the consumers see). */
static bool nul_free(const void *p, size_t n) { return !memchr(p, 0, n); }

static bool load_user(const char *k, size_t kl, const uint8_t *v, size_t vl, int64_t ts, void *arg) {
  load_ctx *c = arg;
  if (vl < 19 || v[0] != REC_VERSION || 19 + tern_get_be16(v + 17) > vl || !nul_free(k, kl) ||
      !nul_free(v + 19, tern_get_be16(v + 17))) {
    TERN_WARN("store: bad user record", "key=%.*s", (int)TERN_MIN(kl, 64), k);
    return true;
  }
  size_t hl = tern_get_be16(v + 17);
  char *user = tern_strndup(k, kl), *pw = tern_strndup((const char *)v + 19, hl);
  tern_user_rec rec = {.user = user, .pwhash = pw, .created = (int64_t)tern_get_be64(v + 1),
                       .last_seen = (int64_t)tern_get_be64(v + 9),
                       .deleted = vl >= 19 + hl + 8 ? (int64_t)tern_get_be64(v + 19 + hl) : 0};
  if (c->cbs->user) c->cbs->user(&rec, c->cbs->arg);
  tern_free(user);
  tern_free(pw);
  return true;
}

static bool load_device(const char *k, size_t kl, const uint8_t *v, size_t vl, int64_t ts, void *arg) {
  load_ctx *c = arg;
  size_t ul = 0, ll = 0;
  bool ok = vl >= 17 + 32 + 2 && v[0] == REC_VERSION;
  if (ok) {
    ul = tern_get_be16(v + 49);
    ok = 51 + ul + 2 <= vl;
  }
  if (ok) {
    ll = tern_get_be16(v + 51 + ul);
    ok = 53 + ul + ll <= vl;
  }
  ok = ok && nul_free(k, kl) && nul_free(v + 51, ul) && nul_free(v + 53 + ul, ll);
  if (!ok) {
    TERN_WARN("store: bad device record", "key=%.*s", (int)TERN_MIN(kl, 64), k);
    return true;
  }
  char *id = tern_strndup(k, kl), *user = tern_strndup((const char *)v + 51, ul);
  char *label = tern_strndup((const char *)v + 53 + ul, ll), *push = NULL;
  size_t at = 53 + ul + ll;
  if (at + 2 <= vl && tern_get_be16(v + at) > 0 && at + 2 + tern_get_be16(v + at) <= vl &&
      nul_free(v + at + 2, tern_get_be16(v + at)))
    push = tern_strndup((const char *)v + at + 2, tern_get_be16(v + at));
  tern_device_rec rec = {.device_id = id, .user = user, .label = label, .push = push,
                         .created = (int64_t)tern_get_be64(v + 1), .last_seen = (int64_t)tern_get_be64(v + 9)};
  memcpy(rec.token_hash, v + 17, 32);
  if (c->cbs->device) c->cbs->device(&rec, c->cbs->arg);
  tern_free(id);
  tern_free(user);
  tern_free(label);
  tern_free(push);
  return true;
}

static bool load_kv(const char *k, size_t kl, const uint8_t *v, size_t vl, int64_t ts, void *arg) {
  load_ctx *c = arg;
  if (c->cbs->kv) c->cbs->kv(k, kl, v, vl, c->cbs->arg);
  return true;
}

void tern_sem_raise_change(const tern_store_load_cbs *cbs, tern_bucket b, const char *key, size_t klen,
                           const uint8_t *v, size_t vlen, bool deleted) {
  load_ctx c = {.cbs = cbs};
  switch (b) {
    case TERN_BUCKET_USERS:
      if (!deleted) load_user(key, klen, v, vlen, 0, &c);
      else if (cbs->user_gone) { /* a held name whose hold ended (or a failed registration) */
        char *name = tern_strndup(key, klen);
        cbs->user_gone(name, cbs->arg);
        tern_free(name);
      }
      break;
    case TERN_BUCKET_DEVICES:
      if (!deleted) {
        load_device(key, klen, v, vlen, 0, &c);
      } else if (cbs->device_gone) {
        char *id = tern_strndup(key, klen);
        cbs->device_gone(id, cbs->arg);
        tern_free(id);
      }
      break;
    case TERN_BUCKET_RECORDS:
      if (!deleted) load_kv(key, klen, v, vlen, 0, &c);
      else if (cbs->kv_gone) cbs->kv_gone(key, klen, cbs->arg);
      break;
    default: break;
  }
}

static bool count_body(const char *k, size_t kl, const uint8_t *v, size_t vl, int64_t ts, void *arg) {
  (*(int64_t *)arg)++;
  return true;
}

int tern_sem_load(tern_store *s, const tern_store_load_cbs *cbs, char *err, size_t errlen) {
  load_ctx c = {.cbs = cbs};
  const tern_backend_vt *vt = s->be.vt;
  int r = vt->load(s->be.self, TERN_BUCKET_USERS, load_user, &c, err, errlen);
  if (r == 0) r = vt->load(s->be.self, TERN_BUCKET_DEVICES, load_device, &c, err, errlen);
  if (r == 0 && cbs->kv) r = vt->load(s->be.self, TERN_BUCKET_RECORDS, load_kv, &c, err, errlen);
  return r;
}

int tern_sem_count_bodies(tern_store *s, char *err, size_t errlen) {
  int64_t bodies = 0;
  int r = s->be.vt->load(s->be.self, TERN_BUCKET_BODIES, count_body, &bodies, err, errlen);
  atomic_store(&s->bodies, bodies);
  return r;
}
