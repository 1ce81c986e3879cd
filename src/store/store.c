/* store.c: the backend-independent half of the store: packed envelopes, operations and their
 * ownership, the public handle and the commit histogram. */
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "base/alloc.h"
#include "store/store_int.h"

/* ---- packed envelope values ---------------------------------------------------------------- */

enum { ENV_FIXED = 1 + 1 + 8 }; /* kind, flags, ts */

uint8_t *tern_env_pack(uint8_t kind, uint8_t flags, int64_t ts, const char *msg_id, const char *from, const char *tail,
                       size_t tail_len, size_t *out_len) {
  size_t idlen = msg_id ? strlen(msg_id) : 0;
  size_t fromlen = from ? strlen(from) : 0;
  if (idlen > 255 || fromlen > 255) {
    /* A one-byte length cannot hold them; refusing beats storing a truncated id. */
    if (out_len) *out_len = 0;
    return NULL;
  }
  size_t len = ENV_FIXED + 1 + idlen + 1 + fromlen + tail_len;
  uint8_t *v = tern_malloc(len), *p = v;
  *p++ = kind;
  *p++ = flags;
  uint64_t uts = (uint64_t)ts;
  for (int i = 7; i >= 0; i--) *p++ = (uint8_t)(uts >> (i * 8));
  *p++ = (uint8_t)idlen;
  if (idlen) memcpy(p, msg_id, idlen);
  p += idlen;
  *p++ = (uint8_t)fromlen;
  if (fromlen) memcpy(p, from, fromlen);
  p += fromlen;
  if (tail_len) memcpy(p, tail, tail_len);
  *out_len = len;
  return v;
}

int tern_env_unpack(const uint8_t *v, size_t len, tern_env_view *out) {
  if (!v || len < ENV_FIXED + 2) return -EINVAL;
  const uint8_t *p = v, *end = v + len;
  out->kind = *p++;
  if (out->kind != TERN_ENV_MSG && out->kind != TERN_ENV_RECEIPT) return -EINVAL;
  out->flags = *p++;
  uint64_t uts = 0;
  for (int i = 0; i < 8; i++) uts = (uts << 8) | *p++;
  out->ts = (int64_t)uts;
  size_t n = *p++;
  if ((size_t)(end - p) < n + 1) return -EINVAL; /* + the from length byte */
  out->msg_id = (const char *)p;
  out->msg_id_len = n;
  p += n;
  n = *p++;
  if ((size_t)(end - p) < n) return -EINVAL;
  out->from = (const char *)p;
  out->from_len = n;
  p += n;
  out->tail = (const char *)p;
  out->tail_len = (size_t)(end - p);
  return 0;
}

/* ---- operations ---------------------------------------------------------------------------- */

/* Freed ops are kept for reuse, per thread, with their arrays' capacity: an op is a large
 * struct and a message makes several, so calloc/free of each was a visible share of the loop
 * thread's time. Per thread, because ops are made and freed on the loop thread in ternd but
 * any thread may use the API. */
enum { OP_POOL_MAX = 1024 };
static __thread tern_store_op *op_pool; /* linked through ->arg */
static __thread size_t op_pool_len;

tern_store_op *tern_store_op_new(tern_store_op_type type, tern_store_done_cb done, void *arg) {
  tern_store_op *op = op_pool;
  if (op) {
    op_pool = op->arg;
    op_pool_len--;
  } else {
    op = TERN_NEW(tern_store_op);
  }
  op->type = type;
  op->done = done;
  op->arg = arg;
  return op;
}

size_t tern_store_op_add_value(tern_store_op *op, const uint8_t *value, size_t len) {
  if (op->nvalues == op->values_cap) {
    op->values_cap = op->values_cap ? op->values_cap * 2 : 2;
    /* values[] holds pointers, so targets pointing at the bytes survive this realloc. */
    op->values = tern_realloc(op->values, op->values_cap * sizeof *op->values);
  }
  /* The op has no array of value lengths, so each value's length lives in a size_t just
   * before its bytes (values[i] points past it); add_target reads it from there. */
  size_t *block = tern_malloc(sizeof(size_t) + (len ? len : 1));
  block[0] = len;
  if (len) memcpy(block + 1, value, len);
  op->values[op->nvalues] = (uint8_t *)(block + 1);
  return op->nvalues++;
}

size_t tern_store_value_len(const uint8_t *value) { return ((const size_t *)(const void *)value)[-1]; }

void tern_store_op_add_target(tern_store_op *op, const char *inbox, size_t value_index, bool check_cap) {
  if (op->ntargets == op->targets_cap) {
    op->targets_cap = op->targets_cap ? op->targets_cap * 2 : 4;
    op->targets = tern_realloc(op->targets, op->targets_cap * sizeof *op->targets);
  }
  tern_store_target *t = &op->targets[op->ntargets++];
  memset(t, 0, sizeof *t);
  t->inbox = tern_strdup(inbox);
  if (value_index < op->nvalues) {
    t->value = op->values[value_index];
    t->value_len = tern_store_value_len(t->value);
  }
  t->check_cap = check_cap;
}

void tern_store_op_set_str(char **field, const char *s) {
  tern_free(*field);
  *field = s ? tern_strdup(s) : NULL;
}

void tern_store_op_set_user(tern_store_op *op, const tern_user_rec *rec) {
  tern_free((char *)op->user.user);
  tern_free((char *)op->user.pwhash);
  op->user = *rec;
  op->user.user = rec->user ? tern_strdup(rec->user) : NULL;
  op->user.pwhash = rec->pwhash ? tern_strdup(rec->pwhash) : NULL;
}

void tern_store_op_set_device(tern_store_op *op, const tern_device_rec *rec) {
  tern_free((char *)op->device.device_id);
  tern_free((char *)op->device.user);
  tern_free((char *)op->device.label);
  tern_free((char *)op->device.push);
  op->device = *rec;
  op->device.device_id = rec->device_id ? tern_strdup(rec->device_id) : NULL;
  op->device.user = rec->user ? tern_strdup(rec->user) : NULL;
  op->device.label = rec->label ? tern_strdup(rec->label) : NULL;
  op->device.push = rec->push ? tern_strdup(rec->push) : NULL;
}

void tern_store_op_free(tern_store_op *op) {
  if (!op) return;
  tern_free((char *)op->user.user);
  tern_free((char *)op->user.pwhash);
  tern_free((char *)op->device.device_id);
  tern_free((char *)op->device.user);
  tern_free((char *)op->device.label);
  tern_free((char *)op->device.push);
  tern_free(op->kv_key);
  tern_free(op->inbox);
  tern_free(op->inbox2);
  tern_free(op->dedup_key);
  tern_free(op->msg_id);
  tern_free(op->token_from);
  for (size_t i = 0; i < op->ntargets; i++) tern_free(op->targets[i].inbox);
  for (size_t i = 0; i < op->nvalues; i++) tern_free((size_t *)(void *)op->values[i] - 1);
  tern_free(op->dup_msg_id);
  for (size_t i = 0; i < op->nitems; i++) tern_free(op->items[i].value);
  for (size_t i = 0; i < op->ndelivered; i++) {
    tern_free(op->delivered[i].msg_id);
    tern_free(op->delivered[i].from);
  }
  /* The outputs' arrays are filled on the store thread and sized by what it found: not kept. */
  tern_free(op->items);
  tern_free(op->delivered);
  if (op_pool_len >= OP_POOL_MAX) {
    tern_free(op->targets);
    tern_free(op->values);
    tern_free(op);
    return;
  }
  /* Keep the input arrays (with their capacity), zero everything else. */
  tern_store_op keep = {.targets = op->targets, .targets_cap = op->targets_cap, .values = op->values,
                        .values_cap = op->values_cap};
  *op = keep;
  op->arg = op_pool;
  op_pool = op;
  op_pool_len++;
}

/* ---- the public handle and its histogram --------------------------------------------------- */

const double tern_store_commit_buckets[TERN_STORE_COMMIT_NBUCKETS] = {
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
};

typedef struct store_full {
  tern_store pub;              /* what callers hold; first, so the two pointers convert */
  pthread_mutex_t mu;          /* guards hist: one lock per group commit is nothing */
  tern_store_commit_hist hist; /* commit durations */
} store_full;

tern_store *tern_store_wrap(const tern_store_vtable *vt, void *self) {
  store_full *f = TERN_NEW(store_full);
  f->pub.vt = vt;
  f->pub.self = self;
  pthread_mutex_init(&f->mu, NULL);
  return &f->pub;
}

void tern_store_commit_record(tern_store *s, uint64_t ns) {
  store_full *f = (store_full *)s;
  double secs = (double)ns / 1e9;
  size_t b = 0;
  while (b < TERN_STORE_COMMIT_NBUCKETS && secs > tern_store_commit_buckets[b]) b++;
  pthread_mutex_lock(&f->mu);
  f->hist.buckets[b]++;
  f->hist.count++;
  f->hist.sum += secs;
  pthread_mutex_unlock(&f->mu);
}

void tern_store_commit_hist_read(tern_store *s, tern_store_commit_hist *out) {
  store_full *f = (store_full *)s;
  pthread_mutex_lock(&f->mu);
  *out = f->hist;
  pthread_mutex_unlock(&f->mu);
}

void tern_store_close(tern_store *s) {
  if (!s) return;
  store_full *f = (store_full *)s;
  s->vt->close(s->self);
  pthread_mutex_destroy(&f->mu);
  tern_free(f);
}
