/* store.c: the store handle, typed ops and their ownership, watches and the dispatch of
 * delivery events, and the metrics the store keeps. */
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "store/envelope.h"
#include "store/store_int.h"

#include <sodium.h>

/* ---- ops ------------------------------------------------------------------------------------ */

/* Freed ops are kept for reuse, per thread and per struct: a message makes several ops, and
 * calloc/free of each was a visible share of the loop thread's time. Per thread, because the
 * loop that makes an op also frees it (completions return to the submitting loop). The input
 * arrays keep their capacity. */
enum { POOL_MAX = 1024, POOL_APPEND = 0, POOL_INBOX, POOL_RECORD, POOL_KV, POOL__COUNT };
typedef struct op_pool {
  tern_store_op *free; /* linked through ->next */
  size_t len;
} op_pool;
static __thread op_pool pools[POOL__COUNT];

static int pool_of(tern_store_op_type t) {
  switch (t) {
    case TERN_OP_APPEND: return POOL_APPEND;
    case TERN_OP_PUT_USER:
    case TERN_OP_PUT_DEVICE:
    case TERN_OP_SET_LAST_SEEN:
    case TERN_OP_DEL_USER: return POOL_RECORD;
    case TERN_OP_KV_PUT:
    case TERN_OP_KV_DEL: return POOL_KV;
    default: return POOL_INBOX;
  }
}

static void *op_take(int pool, size_t size) {
  op_pool *p = &pools[pool];
  tern_store_op *op = p->free;
  if (!op) return tern_calloc(1, size);
  p->free = op->next;
  p->len--;
  op->next = NULL;
  return op;
}

static void op_init(tern_store_op *op, tern_store_op_type type, tern_store_done_cb done, void *arg) {
  op->type = type;
  op->done = done;
  op->arg = arg;
}

tern_op_append *tern_op_append_new(tern_store_done_cb done, void *arg) {
  tern_op_append *op = op_take(POOL_APPEND, sizeof *op);
  op_init(&op->op, TERN_OP_APPEND, done, arg);
  return op;
}

tern_op_inbox *tern_op_inbox_new(tern_store_op_type type, tern_store_done_cb done, void *arg) {
  tern_op_inbox *op = op_take(POOL_INBOX, sizeof *op);
  op_init(&op->op, type, done, arg);
  return op;
}

tern_op_record *tern_op_record_new(tern_store_op_type type, tern_store_done_cb done, void *arg) {
  tern_op_record *op = op_take(POOL_RECORD, sizeof *op);
  op_init(&op->op, type, done, arg);
  return op;
}

tern_op_kv *tern_op_kv_new(tern_store_op_type type, tern_store_done_cb done, void *arg) {
  tern_op_kv *op = op_take(POOL_KV, sizeof *op);
  op_init(&op->op, type, done, arg);
  return op;
}

size_t tern_op_append_value(tern_op_append *op, const void *value, size_t len) {
  if (op->nvalues == op->values_cap) {
    size_t ncap = op->values_cap ? op->values_cap * 2 : 2;
    op->values = tern_realloc(op->values, ncap * sizeof *op->values);
    memset(op->values + op->values_cap, 0, (ncap - op->values_cap) * sizeof *op->values);
    op->values_cap = ncap;
  }
  tern_buf *b = &op->values[op->nvalues];
  tern_buf_reset(b);
  tern_buf_append(b, value, len);
  return op->nvalues++;
}

tern_store_target *tern_op_append_target(tern_op_append *op, const char *inbox, size_t value, tern_cap_mode cap,
                                         void *cookie) {
  if (op->ntargets == op->targets_cap) {
    op->targets_cap = op->targets_cap ? op->targets_cap * 2 : 4;
    op->targets = tern_realloc(op->targets, op->targets_cap * sizeof *op->targets);
  }
  tern_store_target *t = &op->targets[op->ntargets++];
  memset(t, 0, sizeof *t);
  t->inbox = tern_strdup(inbox);
  t->value = value;
  t->cap = (uint8_t)cap;
  t->cookie = cookie;
  return t;
}

void tern_op_append_token(tern_op_append *op, const char *key) {
  if (op->ntokens == op->tokens_cap) {
    op->tokens_cap = op->tokens_cap ? op->tokens_cap * 2 : 2;
    op->tokens = tern_realloc(op->tokens, op->tokens_cap * sizeof *op->tokens);
  }
  op->tokens[op->ntokens++] = tern_strdup(key);
}

void tern_op_append_body(tern_op_append *op, const char *body_id, const void *body, size_t len) {
  tern_store_set_str(&op->body_id, body_id);
  tern_buf_reset(&op->body);
  tern_buf_append(&op->body, body, len);
}

void tern_store_set_str(char **field, const char *s) {
  tern_free(*field);
  *field = s ? tern_strdup(s) : NULL;
}

static void free_user_rec(tern_user_rec *r) {
  tern_free((char *)r->user);
  tern_free((char *)r->pwhash);
}

static void free_device_rec(tern_device_rec *r) {
  tern_free((char *)r->device_id);
  tern_free((char *)r->user);
  tern_free((char *)r->label);
  tern_free((char *)r->push);
}

void tern_op_record_set_user(tern_op_record *op, const tern_user_rec *rec) {
  free_user_rec(&op->user);
  op->user = *rec;
  op->user.user = rec->user ? tern_strdup(rec->user) : NULL;
  op->user.pwhash = rec->pwhash ? tern_strdup(rec->pwhash) : NULL;
}

void tern_op_record_set_device(tern_op_record *op, const tern_device_rec *rec) {
  free_device_rec(&op->device);
  op->device = *rec;
  op->device.device_id = rec->device_id ? tern_strdup(rec->device_id) : NULL;
  op->device.user = rec->user ? tern_strdup(rec->user) : NULL;
  op->device.label = rec->label ? tern_strdup(rec->label) : NULL;
  op->device.push = rec->push ? tern_strdup(rec->push) : NULL;
}

void tern_op_record_add_known(tern_op_record *op, const char *device_id) {
  if (op->nknown == op->known_cap) {
    op->known_cap = op->known_cap ? op->known_cap * 2 : 4;
    op->known = tern_realloc(op->known, op->known_cap * sizeof *op->known);
  }
  op->known[op->nknown++] = tern_strdup(device_id);
}

/* ---- key ops: rare (a device publishes or fetches keys now and then), so never pooled ---- */

tern_op_keys *tern_op_keys_new(tern_store_op_type type, tern_store_done_cb done, void *arg) {
  tern_op_keys *op = TERN_NEW(tern_op_keys);
  op_init(&op->op, type, done, arg);
  return op;
}

void tern_op_keys_add_prekey(tern_op_keys *op, uint32_t id, const uint8_t pub[TERN_KEY_PUB_LEN]) {
  if (op->nprekeys == op->prekeys_cap) {
    op->prekeys_cap = op->prekeys_cap ? op->prekeys_cap * 2 : 8;
    op->prekeys = tern_realloc(op->prekeys, op->prekeys_cap * sizeof *op->prekeys);
  }
  tern_prekey *k = &op->prekeys[op->nprekeys++];
  k->id = id;
  memcpy(k->pub, pub, TERN_KEY_PUB_LEN);
}

void tern_op_keys_add_device(tern_op_keys *op, const char *device_id) {
  if (op->ndevices == op->devices_cap) {
    op->devices_cap = op->devices_cap ? op->devices_cap * 2 : 4;
    op->devices = tern_realloc(op->devices, op->devices_cap * sizeof *op->devices);
  }
  op->devices[op->ndevices++] = tern_strdup(device_id);
}

static bool is_keys_op(tern_store_op_type t) {
  return t == TERN_OP_KEYS_PUT || t == TERN_OP_KEYS_GET || t == TERN_OP_KEYS_CLAIM;
}

void tern_keys_bundle_clear(tern_key_bundle *b) {
  tern_free(b->device_id);
  tern_free(b->user);
  memset(b, 0, sizeof *b);
}

static void keys_op_free(tern_op_keys *k) {
  tern_free(k->device_id);
  tern_free(k->user);
  tern_free(k->prekeys);
  for (size_t i = 0; i < k->ndevices; i++) tern_free(k->devices[i]);
  tern_free(k->devices);
  tern_keys_bundle_clear(&k->bundle);
  for (size_t i = 0; i < k->nbundles; i++) tern_keys_bundle_clear(&k->bundles[i]);
  tern_free(k->bundles);
  tern_buf_free(&k->record);
  /* the key material is public, but a freed op should not leave it lying around either */
  sodium_memzero(k, sizeof *k);
  tern_free(k);
}

/* Frees what an op owns and returns it to its pool (or frees it when the pool is full). */
static void op_destroy(tern_store_op *op) {
  if (is_keys_op(op->type)) {
    keys_op_free(tern_op_as_keys(op));
    return;
  }
  int pool = pool_of(op->type);
  bool keep = pools[pool].len < POOL_MAX;
  switch (pool) {
    case POOL_APPEND: {
      tern_op_append *a = tern_op_as_append(op);
      for (size_t i = 0; i < a->ntargets; i++) tern_free(a->targets[i].inbox);
      for (size_t i = 0; i < a->ntokens; i++) tern_free(a->tokens[i]);
      tern_free(a->dedup_key);
      tern_free(a->msg_id);
      tern_free(a->token_from);
      tern_free(a->body_id);
      tern_buf_free(&a->body);
      tern_free(a->record_key);
      tern_buf_free(&a->record);
      tern_free(a->dup_msg_id);
      tern_free(a->index_media);
      tern_free(a->replace_of);
      tern_free(a->check_of);
      tern_free(a->index_group);
      tern_free(a->replace_group);
      tern_free(a->replaced_media);
      /* Values keep their buffers in the pool: an envelope record is about the same size
       * every time. */
      tern_store_target *targets = a->targets;
      tern_buf *values = a->values;
      char **tokens = a->tokens;
      size_t tcap = a->targets_cap, vcap = a->values_cap, kcap = a->tokens_cap;
      if (!keep) {
        for (size_t i = 0; i < vcap; i++) tern_buf_free(&values[i]);
        tern_free(values);
        tern_free(targets);
        tern_free(tokens);
        tern_free(a);
        return;
      }
      memset(a, 0, sizeof *a);
      a->targets = targets;
      a->targets_cap = tcap;
      a->values = values;
      a->values_cap = vcap;
      a->tokens = tokens;
      a->tokens_cap = kcap;
      break;
    }
    case POOL_INBOX: {
      tern_op_inbox *b = tern_op_as_inbox(op);
      tern_free(b->inbox);
      tern_free(b->inbox2);
      tern_free(b->user);
      tern_free(b->parts_inbox);
      for (size_t i = 0; i < b->nitems; i++) {
        tern_buf_free(&b->items[i].value);
        tern_buf_free(&b->items[i].body);
      }
      tern_free(b->items);
      for (size_t i = 0; i < b->ndelivered; i++) {
        tern_free(b->delivered[i].msg_id);
        tern_free(b->delivered[i].from);
        tern_free(b->delivered[i].group_id);
      }
      tern_free(b->delivered);
      if (b->receipts) op_destroy(&b->receipts->op);
      for (size_t i = 0; i < b->nreceipt_from; i++) tern_free(b->receipt_from[i]);
      tern_free(b->receipt_from);
      if (!keep) {
        tern_free(b);
        return;
      }
      memset(b, 0, sizeof *b);
      break;
    }
    case POOL_RECORD: {
      tern_op_record *r = tern_op_as_record(op);
      free_user_rec(&r->user);
      free_device_rec(&r->device);
      for (size_t i = 0; i < r->nknown; i++) tern_free(r->known[i]);
      tern_free(r->known);
      tern_free(r->move_from);
      if (!keep) {
        tern_free(r);
        return;
      }
      memset(r, 0, sizeof *r);
      break;
    }
    default: {
      tern_op_kv *k = tern_op_as_kv(op);
      tern_free(k->key);
      tern_buf_free(&k->value);
      if (!keep) {
        tern_free(k);
        return;
      }
      memset(k, 0, sizeof *k);
      break;
    }
  }
  op->next = pools[pool].free;
  pools[pool].free = op;
  pools[pool].len++;
}

void tern_store_op_pools_free(void) {
  for (int pool = 0; pool < POOL__COUNT; pool++) {
    while (pools[pool].free) {
      tern_store_op *op = pools[pool].free;
      pools[pool].free = op->next;
      if (pool == POOL_APPEND) { /* the arrays op_destroy kept for the next user */
        tern_op_append *a = tern_op_as_append(op);
        for (size_t i = 0; i < a->values_cap; i++) tern_buf_free(&a->values[i]);
        tern_free(a->values);
        tern_free(a->targets);
        tern_free(a->tokens);
      }
      tern_free(op);
    }
    pools[pool].len = 0;
  }
}

void tern_store_op_free(tern_store_op *op) {
  if (op) op_destroy(op);
}

void tern_store_op_release(tern_store_op *op) { op_destroy(op); }

/* ---- the handle ------------------------------------------------------------------------------ */

static void remote_change(void *arg, tern_bucket b, const char *key, size_t klen, const uint8_t *v, size_t vlen);
static void remote_bus(void *arg, const uint8_t *msg, size_t len);
static void remote_relink(void *arg);
static void remote_envelope(void *arg, const char *inbox, size_t n, uint64_t seq, const uint8_t *v, size_t len);

static void store_free(tern_store *s) {
  pthread_mutex_destroy(&s->hist_mu);
  pthread_mutex_destroy(&s->watch_mu);
  pthread_mutex_destroy(&s->ports_mu);
  tern_free(s->ports);
  tern_free(s->node);
  tern_free(s->dir);
  tern_free(s);
}

int tern_store_open(const tern_store_options *opts, tern_store **out, char *err, size_t errlen) {
  *out = NULL;
  const char *name = opts->backend && *opts->backend ? opts->backend : "rocksdb";
  bool nats = strcmp(name, "nats") == 0;
  if (!nats && strcmp(name, "rocksdb") != 0) {
    snprintf(err, errlen, "unknown store backend \"%s\" (this build has: rocksdb, nats)", name);
    return -EINVAL;
  }
  if (!nats && (!opts->dir || !*opts->dir)) {
    snprintf(err, errlen, "no data directory");
    return -EINVAL;
  }
  tern_store *s = TERN_NEW(tern_store);
  s->opts = *opts;
  s->dir = tern_strdup(opts->dir ? opts->dir : "");
  s->opts.dir = s->dir;
  s->opts.backend = nats ? "nats" : "rocksdb";
  pthread_mutex_init(&s->hist_mu, NULL);
  pthread_mutex_init(&s->watch_mu, NULL);
  pthread_mutex_init(&s->ports_mu, NULL);
  s->node = tern_strdup(opts->node && *opts->node ? opts->node : "local");
  s->opts.node = s->node;
  tern_backend_options bo = {
      .dir = s->dir,
      .max_open_files = opts->max_open_files,
      .cache_bytes = opts->cache_bytes,
      .checkpoint_every = opts->checkpoint_every,
      .on_change = remote_change,
      .on_bus = remote_bus,
      .on_envelope = remote_envelope,
      .on_relink = remote_relink,
      .shared_arg = s,
      .node = s->node,
      .nats_urls = opts->nats_urls,
      .nats_replicas = opts->nats_replicas,
      .nats_namespace = opts->nats_namespace,
      .nats_test_feed_delay_ms = opts->nats_test_feed_delay_ms,
  };
  bo.ttl_ms[TERN_BUCKET_DEDUP] = opts->dedup_ttl_ms;
  bo.ttl_ms[TERN_BUCKET_TOKENS] = opts->inbox_ttl_ms;
  bo.ttl_ms[TERN_BUCKET_MSGS] = opts->msg_ttl_ms > 0 ? opts->msg_ttl_ms : 48 * 3600000LL;
  /* A shared body outlives its envelopes by a day: they release it one by one, and the TTL
   * only catches what a crash between two sweeps could leave behind. */
  bo.ttl_ms[TERN_BUCKET_BODIES] = opts->inbox_ttl_ms > 0 ? opts->inbox_ttl_ms + 86400000 : 0;
  int r = nats ? tern_backend_open_nats(&bo, &s->be, err, errlen)
               : tern_backend_open_rocksdb(&bo, &s->be, err, errlen);
  if (r < 0) {
    store_free(s);
    return r;
  }
  s->sem = tern_sem_new(s);
  r = tern_sem_count_bodies(s, err, errlen);
  if (r == 0) r = tern_committer_start(s, opts->group_max, &s->cm, err, errlen);
  if (r < 0) {
    tern_sem_free(s->sem);
    s->be.vt->close(s->be.self);
    store_free(s);
    return r;
  }
  *out = s;
  return 0;
}

int tern_store_load(tern_store *s, const tern_store_load_cbs *cbs, char *err, size_t errlen) {
  return tern_sem_load(s, cbs, err, errlen);
}

const char *tern_store_backend_name(const tern_store *s) { return s->be.vt->name; }

tern_store_health_state tern_store_health(tern_store *s, char *reason, size_t n) {
  if (n) reason[0] = 0;
  if (!s->be.vt->health) return TERN_HEALTH_OK;
  int h = s->be.vt->health(s->be.self, reason, n);
  return h == 2 ? TERN_HEALTH_UNAVAILABLE : h == 1 ? TERN_HEALTH_DEGRADED : TERN_HEALTH_OK;
}
int64_t tern_store_inbox_total(tern_store *s) { return s->be.vt->total(s->be.self); }
bool tern_store_memory_read(tern_store *s, tern_store_memory *out) {
  *out = (tern_store_memory){0};
  if (!s->be.vt->memory) return false;
  s->be.vt->memory(s->be.self, out);
  return true;
}
int64_t tern_store_shared_bodies(tern_store *s) { return (int64_t)atomic_load(&s->bodies); }

static bool free_watch_cb(const char *k, size_t kl, void *v, void *arg) {
  tern_free(v);
  return true;
}

void tern_store_close(tern_store *s) {
  if (!s) return;
  tern_committer_stop(s->cm);
  tern_store_free_closed_ports(s);
  tern_sem_free(s->sem);
  s->be.vt->close(s->be.self);
  tern_map_each(&s->watches, free_watch_cb, NULL);
  tern_map_free(&s->watches);
  store_free(s);
}

/* ---- watches and events ---------------------------------------------------------------------- */

typedef struct store_watch {
  tern_store_port *port;   /* where the watcher lives */
  tern_store_event_cb cb;  /* its callback */
  void *watcher;           /* its pointer */
} store_watch;

void tern_store_watch(tern_store_port *p, const char *inbox, tern_store_event_cb cb, void *watcher) {
  tern_store *s = tern_store_port_store(p);
  store_watch *w = TERN_NEW(store_watch);
  w->port = p;
  w->cb = cb;
  w->watcher = watcher;
  pthread_mutex_lock(&s->watch_mu);
  store_watch *old = tern_map_puts(&s->watches, inbox, w);
  pthread_mutex_unlock(&s->watch_mu);
  tern_free(old);
}

void tern_store_unwatch(tern_store_port *p, const char *inbox, void *watcher) {
  tern_store *s = tern_store_port_store(p);
  pthread_mutex_lock(&s->watch_mu);
  store_watch *w = tern_map_gets(&s->watches, inbox);
  if (w && w->watcher == watcher && w->port == p) tern_map_dels(&s->watches, inbox);
  else w = NULL;
  pthread_mutex_unlock(&s->watch_mu);
  tern_free(w);
}

typedef struct port_watches {
  tern_store_port *port; /* whose watches */
  char **keys;           /* their inboxes */
  size_t n, cap;
} port_watches;

static bool find_port_watch(const char *k, size_t kl, void *v, void *arg) {
  port_watches *pw = arg;
  if (((store_watch *)v)->port != pw->port) return true;
  if (pw->n == pw->cap) {
    pw->cap = pw->cap ? pw->cap * 2 : 16;
    pw->keys = tern_realloc(pw->keys, pw->cap * sizeof *pw->keys);
  }
  pw->keys[pw->n++] = tern_strndup(k, kl);
  return true;
}

/* A closing port's watches go with it, so that another loop's commit never posts an event to a
 * port that is gone (the sessions usually unwatched already; a worker that stops while others
 * run must not leave one behind). */
void tern_store_drop_watches(tern_store *s, tern_store_port *p) {
  port_watches pw = {.port = p};
  pthread_mutex_lock(&s->watch_mu);
  tern_map_each(&s->watches, find_port_watch, &pw);
  for (size_t i = 0; i < pw.n; i++) {
    tern_free(tern_map_dels(&s->watches, pw.keys[i]));
    tern_free(pw.keys[i]);
  }
  pthread_mutex_unlock(&s->watch_mu);
  tern_free(pw.keys);
}

bool tern_store_dispatch(tern_store *s, tern_store_port *p, tern_store_op *op, size_t *budget) {
  if (op->status != TERN_STORE_OK) return true;
  /* what the op appended: an APPEND's targets, or the receipts an ACK made */
  tern_op_append *ap = op->type == TERN_OP_APPEND ? tern_op_as_append(op)
                       : op->type == TERN_OP_ACK  ? tern_op_as_inbox(op)->receipts
                                                  : NULL;
  if (!ap || !s->watches.count) return true;
  for (size_t i = op->dispatched; i < ap->ntargets; i++) {
    if (*budget == 0) {
      op->dispatched = i;
      return false;
    }
    tern_store_target *t = &ap->targets[i];
    if (!t->seq || t->value >= ap->nvalues) continue;
    pthread_mutex_lock(&s->watch_mu);
    store_watch *w = tern_map_gets(&s->watches, t->inbox);
    store_watch copy = w ? *w : (store_watch){0};
    if (!w) {
      pthread_mutex_unlock(&s->watch_mu);
      continue;
    }
    (*budget)--;
    const tern_buf *v = &ap->values[t->value];
    tern_store_env e = {.inbox = t->inbox, .seq = t->seq, .value = (const uint8_t *)v->data, .len = v->len};
    if (ap->body_id) {
      e.body = (const uint8_t *)ap->body.data;
      e.body_len = ap->body.len;
    }
    if (copy.port == p) {
      /* The watcher may unwatch (or watch another inbox) from inside its callback; the copy
       * taken under the lock keeps this call safe, and the next target looks up afresh. */
      pthread_mutex_unlock(&s->watch_mu);
      copy.cb(copy.watcher, &e);
      continue;
    }
    /* Another loop's watcher (another worker): its port's queue, posted under the lock, so
     * that a port closing meanwhile (tern_store_drop_watches) is never posted to. */
    tern_store_event_copy *ev = TERN_NEW(tern_store_event_copy);
    ev->inbox = tern_strdup(t->inbox);
    ev->seq = t->seq;
    tern_buf_append(&ev->value, v->data, v->len);
    if (e.body) {
      ev->has_body = true;
      tern_buf_append(&ev->body, e.body, e.body_len);
    }
    tern_store_port_post_event(copy.port, ev);
    pthread_mutex_unlock(&s->watch_mu);
  }
  op->dispatched = ap->ntargets;
  return true;
}

/* Another node's envelope (a shared backend's thread): to the inbox's watcher, like a local
 * commit's event from another port. One that refers to a shared body goes without its record
 * (len 0): the body is not in the event, so the watcher reads the envelope from the store. */
static void remote_envelope(void *arg, const char *inbox, size_t n, uint64_t seq, const uint8_t *v, size_t len) {
  tern_store *s = arg;
  char *name = tern_strndup(inbox, n);
  pthread_mutex_lock(&s->watch_mu);
  store_watch *w = tern_map_gets(&s->watches, name);
  tern_store_port *port = w ? w->port : NULL;
  if (!port) {
    pthread_mutex_unlock(&s->watch_mu);
    tern_free(name);
    return;
  }
  tern_env_view ev;
  bool shared = tern_env_unpack(v, len, &ev) < 0 || ev.f[TERN_EF_BODY_REF].p != NULL;
  tern_store_event_copy *c = TERN_NEW(tern_store_event_copy);
  c->kind = TERN_EVC_ENVELOPE;
  c->inbox = name;
  c->seq = seq;
  if (!shared) tern_buf_append(&c->value, v, len);
  tern_store_port_post_event(port, c); /* under the lock: see tern_store_dispatch */
  pthread_mutex_unlock(&s->watch_mu);
}

static void event_copy_free(tern_store_event_copy *ev) {
  tern_free(ev->inbox);
  tern_buf_free(&ev->value);
  tern_buf_free(&ev->body);
  tern_free(ev);
}

static void run_envelope_copy(tern_store *s, tern_store_port *p, tern_store_event_copy *ev) {
  pthread_mutex_lock(&s->watch_mu);
  /* (no inbox: a bus message or a relink that a closing port drops through here) */
  store_watch *w = ev->inbox ? tern_map_gets(&s->watches, ev->inbox) : NULL;
  store_watch copy = w ? *w : (store_watch){0};
  pthread_mutex_unlock(&s->watch_mu);
  if (w && copy.port == p) {
    tern_store_env e = {.inbox = ev->inbox, .seq = ev->seq, .value = (const uint8_t *)ev->value.data,
                        .len = ev->value.len};
    if (!ev->value.len) e.value = NULL; /* announced only (remote_envelope) */
    if (ev->has_body) {
      e.body = (const uint8_t *)ev->body.data;
      e.body_len = ev->body.len;
    }
    copy.cb(copy.watcher, &e);
  }
}

void tern_store_run_event_copy(tern_store *s, tern_store_port *p, tern_store_event_copy *ev) {
  tern_port_follow *f = tern_store_port_follows(p);
  switch (ev->kind) {
    case TERN_EVC_ENVELOPE: run_envelope_copy(s, p, ev); break;
    case TERN_EVC_CHANGE:
      if (f->following)
        tern_sem_raise_change(&f->feed, (tern_bucket)ev->bucket, ev->inbox, ev->klen, (const uint8_t *)ev->value.data,
                              ev->value.len, ev->deleted);
      break;
    case TERN_EVC_BUS:
      if (f->bus) f->bus(f->bus_arg, (const uint8_t *)ev->value.data, ev->value.len);
      break;
    case TERN_EVC_CALL:
      ev->call(ev->call_arg, true);
      break;
    case TERN_EVC_RELINK:
      if (f->relink) f->relink(f->relink_arg);
      break;
  }
  event_copy_free(ev);
}

/* ---- shared state: the change feed and the bus ------------------------------------------------ */

bool tern_store_port_shared(const tern_store_port *p) {
  tern_store *s = tern_store_port_store(p);
  return atomic_load(&s->nports_open) > 1 || s->be.vt->catch_up != NULL;
}

const char *tern_store_node_id(const tern_store *s) { return s->node; }

void tern_store_follow(tern_store_port *p, const tern_store_load_cbs *cbs) {
  tern_port_follow *f = tern_store_port_follows(p);
  f->feed = *cbs;
  f->following = true;
}

void tern_store_bus_follow(tern_store_port *p, tern_store_bus_cb cb, void *arg) {
  tern_port_follow *f = tern_store_port_follows(p);
  f->bus = cb;
  f->bus_arg = arg;
}

void tern_store_relink_follow(tern_store_port *p, void (*cb)(void *arg), void *arg) {
  tern_port_follow *f = tern_store_port_follows(p);
  f->relink = cb;
  f->relink_arg = arg;
}

static tern_store_event_copy *change_copy(uint8_t bucket, const char *key, size_t klen, const void *v, size_t vlen,
                                          bool deleted) {
  tern_store_event_copy *ev = TERN_NEW(tern_store_event_copy);
  ev->kind = TERN_EVC_CHANGE;
  ev->bucket = bucket;
  ev->deleted = deleted;
  ev->inbox = tern_strndup(key, klen);
  ev->klen = klen;
  if (!deleted) tern_buf_append(&ev->value, v, vlen);
  return ev;
}

void tern_store_post_changes(tern_store *s, const tern_store_change *c, size_t n) {
  pthread_mutex_lock(&s->ports_mu);
  for (size_t i = 0; i < s->nports; i++) {
    tern_store_port *p = s->ports[i];
    for (size_t j = 0; j < n; j++) {
      if (c[j].origin == p) continue;
      tern_store_port_post_event(p, change_copy(c[j].bucket, c[j].key.data, c[j].key.len, c[j].value.data,
                                                c[j].value.len, c[j].deleted));
    }
  }
  pthread_mutex_unlock(&s->ports_mu);
}

/* A record another node wrote (a shared backend's thread): every port of this node follows it. */
static void remote_change(void *arg, tern_bucket b, const char *key, size_t klen, const uint8_t *v, size_t vlen) {
  tern_store *s = arg;
  pthread_mutex_lock(&s->ports_mu);
  for (size_t i = 0; i < s->nports; i++)
    tern_store_port_post_event(s->ports[i], change_copy((uint8_t)b, key, klen, v, vlen, v == NULL));
  pthread_mutex_unlock(&s->ports_mu);
}

static tern_store_event_copy *bus_copy(const void *msg, size_t len) {
  tern_store_event_copy *ev = TERN_NEW(tern_store_event_copy);
  ev->kind = TERN_EVC_BUS;
  tern_buf_append(&ev->value, msg, len);
  return ev;
}

static void remote_bus(void *arg, const uint8_t *msg, size_t len) {
  tern_store *s = arg;
  pthread_mutex_lock(&s->ports_mu);
  for (size_t i = 0; i < s->nports; i++) tern_store_port_post_event(s->ports[i], bus_copy(msg, len));
  pthread_mutex_unlock(&s->ports_mu);
}

/* The backend's link to its servers is back after a cut (a shared backend's thread). */
static void remote_relink(void *arg) {
  tern_store *s = arg;
  pthread_mutex_lock(&s->ports_mu);
  for (size_t i = 0; i < s->nports; i++) {
    tern_store_event_copy *ev = TERN_NEW(tern_store_event_copy);
    ev->kind = TERN_EVC_RELINK;
    tern_store_port_post_event(s->ports[i], ev);
  }
  pthread_mutex_unlock(&s->ports_mu);
}

void tern_store_bus_publish(tern_store_port *from, const void *msg, size_t len) {
  tern_store *s = tern_store_port_store(from);
  if (atomic_load(&s->nports_open) > 1) {
    pthread_mutex_lock(&s->ports_mu);
    for (size_t i = 0; i < s->nports; i++)
      if (s->ports[i] != from) tern_store_port_post_event(s->ports[i], bus_copy(msg, len));
    pthread_mutex_unlock(&s->ports_mu);
  }
  if (s->be.vt->bus_publish) s->be.vt->bus_publish(s->be.self, msg, len);
}

/* ---- metrics ---------------------------------------------------------------------------------- */

const double tern_store_commit_buckets[TERN_STORE_COMMIT_NBUCKETS] = {
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
};

void tern_store_commit_record(tern_store *s, uint64_t ns) {
  double secs = (double)ns / 1e9;
  size_t b = 0;
  while (b < TERN_STORE_COMMIT_NBUCKETS && secs > tern_store_commit_buckets[b]) b++;
  pthread_mutex_lock(&s->hist_mu);
  s->hist.buckets[b]++;
  s->hist.count++;
  s->hist.sum += secs;
  pthread_mutex_unlock(&s->hist_mu);
}

void tern_store_commit_hist_read(tern_store *s, tern_store_commit_hist *out) {
  pthread_mutex_lock(&s->hist_mu);
  *out = s->hist;
  pthread_mutex_unlock(&s->hist_mu);
}
