/* prekeys.c: the E2E key directory's ops (store.h: KEYS_PUT, KEYS_GET, KEYS_CLAIM) and the
 * device-delete cascade's part of it, over the backend primitives, on the commit thread.
 *
 * Layout, on every backend:
 *   RECORDS "e2e/<device id>"   the bundle: [1 ver][2 registration id][33 identity key]
 *                               [4 signed prekey id][33 its public key][64 its signature]
 *                               [1 n][n: user]. A directory record, so the change feed tells
 *                               every writer which devices are E2E-capable; it changes only when
 *                               a device first publishes or rotates its signed prekey.
 *   PREKEYS "<device id>"       the index of its one-time prekeys: [1 ver][4 key id]..., in the
 *                               order they were added (claims take the oldest first)
 *   PREKEYS "<device id>/<id>"  one one-time prekey's public key, 33 bytes
 * The index keeps the count without a scan (the backends have no "first key under a prefix"),
 * and lives outside RECORDS so that a claim does not send a record to every writer.
 *
 * Once only. A claim reads the index and the key, then deletes the key and rewrites the index
 * inside the group; ops of one group see each other's writes, so two claims in one group take
 * two keys, and on a shared backend the writes are conditional on those reads (a concurrent
 * claim elsewhere makes the commit -EAGAIN and the group runs again on the new index). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "store/store_int.h"

enum {
  BUNDLE_VERSION = 1,
  INDEX_VERSION = 1,
  BUNDLE_FIXED = 1 + 2 + TERN_KEY_PUB_LEN + 4 + TERN_KEY_PUB_LEN + TERN_KEY_SIG_LEN + 1,
  CLAIM_SKIP_MAX = 16, /* index entries without their key skipped per claim */
};

#define BE(sem) (tern_sem_backend(sem)->vt)
#define SELF(sem) (tern_sem_backend(sem)->self)

int tern_keys_record_decode(const uint8_t *v, size_t n, tern_key_bundle *out) {
  if (n < BUNDLE_FIXED || v[0] != BUNDLE_VERSION) return -EINVAL;
  size_t ul = v[BUNDLE_FIXED - 1];
  if (n != BUNDLE_FIXED + ul || ul == 0) return -EINVAL;
  const uint8_t *p = v + 1;
  out->registration_id = (uint32_t)tern_get_be16(p);
  p += 2;
  memcpy(out->identity, p, TERN_KEY_PUB_LEN);
  p += TERN_KEY_PUB_LEN;
  out->spk_id = tern_get_be32(p);
  p += 4;
  memcpy(out->spk_pub, p, TERN_KEY_PUB_LEN);
  p += TERN_KEY_PUB_LEN;
  memcpy(out->spk_sig, p, TERN_KEY_SIG_LEN);
  return 0;
}

static void bundle_encode(tern_buf *b, const tern_key_bundle *k, const char *user) {
  size_t ul = strlen(user);
  tern_buf_reset(b);
  tern_buf_putc(b, BUNDLE_VERSION);
  tern_buf_put_be16(b, k->registration_id);
  tern_buf_append(b, k->identity, TERN_KEY_PUB_LEN);
  tern_buf_put_be32(b, k->spk_id);
  tern_buf_append(b, k->spk_pub, TERN_KEY_PUB_LEN);
  tern_buf_append(b, k->spk_sig, TERN_KEY_SIG_LEN);
  tern_buf_putc(b, (char)ul);
  tern_buf_append(b, user, ul);
}

/* The user of a decoded record (the bytes after the fixed part). */
static char *bundle_user(const tern_buf *v) {
  return tern_strndup(v->data + BUNDLE_FIXED, v->len - BUNDLE_FIXED);
}

void tern_sem_keys_reset(tern_op_keys *op) {
  op->refusal = TERN_KEYS_OK;
  op->found = false;
  tern_keys_bundle_clear(&op->bundle);
  for (size_t i = 0; i < op->nbundles; i++) tern_keys_bundle_clear(&op->bundles[i]);
  op->nbundles = 0;
  tern_buf_reset(&op->record);
}

/* ---- reads ---- */

typedef struct key_scratch {
  tern_buf key, val, index;
} key_scratch;

static void scratch_free(key_scratch *k) {
  tern_buf_free(&k->key);
  tern_buf_free(&k->val);
  tern_buf_free(&k->index);
}

static void record_key(tern_buf *b, const char *dev, size_t dl) {
  tern_buf_reset(b);
  tern_buf_puts(b, TERN_KEYS_RECORD_PREFIX);
  tern_buf_append(b, dev, dl);
}

static void prekey_key(tern_buf *b, const char *dev, size_t dl, uint32_t id) {
  tern_buf_reset(b);
  tern_buf_append(b, dev, dl);
  char x[16];
  int n = snprintf(x, sizeof x, "/%u", id);
  tern_buf_append(b, x, (size_t)n);
}

/* 1 with the bundle decoded into out (and the record in k->val), 0 when the device has none. */
static int read_bundle(tern_sem *sem, tern_store_op *op, key_scratch *k, const char *dev, size_t dl,
                       tern_key_bundle *out) {
  record_key(&k->key, dev, dl);
  int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_RECORDS, k->key.data, k->key.len, &k->val, NULL);
  if (r < 0) return tern_sem_failed(sem, op, "keys: bundle", r);
  if (r == 0) return 0;
  if (tern_keys_record_decode((const uint8_t *)k->val.data, k->val.len, out) < 0) return 0; /* unreadable: as none */
  return 1;
}

/* The index into k->index ([ver][ids]); an absent or malformed one reads as empty. */
static int read_index(tern_sem *sem, tern_store_op *op, key_scratch *k, const char *dev, size_t dl) {
  int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_PREKEYS, dev, dl, &k->index, NULL);
  if (r < 0) return tern_sem_failed(sem, op, "keys: index", r);
  if (r == 0 || k->index.len < 1 || k->index.data[0] != INDEX_VERSION || (k->index.len - 1) % 4) {
    tern_buf_reset(&k->index);
    tern_buf_putc(&k->index, INDEX_VERSION);
  }
  return 0;
}

static size_t index_count(const key_scratch *k) { return (k->index.len - 1) / 4; }
static uint32_t index_at(const key_scratch *k, size_t i) { return tern_get_be32(k->index.data + 1 + 4 * i); }
static bool index_has(const key_scratch *k, uint32_t id) {
  for (size_t i = 0, n = index_count(k); i < n; i++)
    if (index_at(k, i) == id) return true;
  return false;
}

static int write_index(tern_sem *sem, tern_store_op *op, key_scratch *k, const char *dev, size_t dl) {
  int r = index_count(k) ? BE(sem)->kv_put(SELF(sem), TERN_BUCKET_PREKEYS, dev, dl, k->index.data, k->index.len, 0)
                         : BE(sem)->kv_del(SELF(sem), TERN_BUCKET_PREKEYS, dev, dl);
  return r < 0 ? tern_sem_failed(sem, op, "keys: index write", r) : 0;
}

/* ---- PUT ---- */

static int refuse(tern_op_keys *op, tern_keys_refusal why) {
  op->op.status = TERN_STORE_CONFLICT;
  op->refusal = why;
  return 0;
}

static int do_put(tern_sem *sem, tern_op_keys *op, key_scratch *k) {
  const char *dev = op->device_id;
  size_t dl = strlen(dev);
  /* A device deleted meanwhile (logout on another connection) must not get keys back. */
  int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_DEVICES, dev, dl, &k->val, NULL);
  if (r < 0) return tern_sem_failed(sem, &op->op, "keys: device", r);
  if (r == 0) return refuse(op, TERN_KEYS_NO_DEVICE);
  tern_key_bundle cur = {0};
  r = read_bundle(sem, &op->op, k, dev, dl, &cur);
  if (r < 0) return r;
  bool have = r == 1;
  if (!have && (!op->has_identity || !op->has_spk)) return refuse(op, TERN_KEYS_NEED_IDENTITY);
  if (have && op->has_identity &&
      (memcmp(cur.identity, op->in.identity, TERN_KEY_PUB_LEN) != 0 || cur.registration_id != op->in.registration_id))
    return refuse(op, TERN_KEYS_IDENTITY);

  if ((r = read_index(sem, &op->op, k, dev, dl)) < 0) return r;
  size_t count = index_count(k), added = 0;
  for (size_t i = 0; i < op->nprekeys; i++) {
    uint32_t id = op->prekeys[i].id;
    bool again = index_has(k, id);
    for (size_t j = 0; j < i && !again; j++) again = op->prekeys[j].id == id;
    if (!again) added++;
  }
  if (op->max_prekeys && count + added > op->max_prekeys) return refuse(op, TERN_KEYS_TOO_MANY);

  /* Everything is checked: write. */
  tern_key_bundle next = have ? cur : (tern_key_bundle){0};
  if (!have) {
    next.registration_id = op->in.registration_id;
    memcpy(next.identity, op->in.identity, TERN_KEY_PUB_LEN);
  }
  if (op->has_spk) {
    next.spk_id = op->in.spk_id;
    memcpy(next.spk_pub, op->in.spk_pub, TERN_KEY_PUB_LEN);
    memcpy(next.spk_sig, op->in.spk_sig, TERN_KEY_SIG_LEN);
  }
  if (!have || op->has_spk) {
    bundle_encode(&op->record, &next, op->user);
    record_key(&k->key, dev, dl);
    r = tern_sem_dir_put(sem, &op->op, TERN_BUCKET_RECORDS, k->key.data, k->key.len, op->record.data, op->record.len);
    if (r < 0) return tern_sem_failed(sem, &op->op, "keys: bundle write", r);
  }
  if (op->nprekeys) {
    for (size_t i = 0; i < op->nprekeys; i++) {
      const tern_prekey *p = &op->prekeys[i];
      prekey_key(&k->key, dev, dl, p->id);
      r = BE(sem)->kv_put(SELF(sem), TERN_BUCKET_PREKEYS, k->key.data, k->key.len, p->pub, TERN_KEY_PUB_LEN, 0);
      if (r < 0) return tern_sem_failed(sem, &op->op, "keys: prekey write", r);
      if (!index_has(k, p->id)) tern_buf_put_be32(&k->index, p->id);
    }
    if ((r = write_index(sem, &op->op, k, dev, dl)) < 0) return r;
  }
  op->found = true;
  op->bundle = next;
  op->bundle.device_id = tern_strdup(dev);
  op->bundle.user = tern_strdup(op->user);
  op->bundle.nprekeys = (uint32_t)index_count(k);
  return 0;
}

/* ---- GET ---- */

static int do_get(tern_sem *sem, tern_op_keys *op, key_scratch *k) {
  const char *dev = op->device_id;
  size_t dl = strlen(dev);
  int r = read_bundle(sem, &op->op, k, dev, dl, &op->bundle);
  if (r <= 0) return r;
  op->found = true;
  op->bundle.device_id = tern_strdup(dev);
  op->bundle.user = bundle_user(&k->val);
  if ((r = read_index(sem, &op->op, k, dev, dl)) < 0) return r;
  op->bundle.nprekeys = (uint32_t)index_count(k);
  return 0;
}

/* ---- CLAIM ---- */

static int claim_one(tern_sem *sem, tern_op_keys *op, key_scratch *k, const char *dev, tern_key_bundle *out) {
  size_t dl = strlen(dev);
  int r = read_bundle(sem, &op->op, k, dev, dl, out);
  if (r <= 0) return r; /* 0: no keys, not listed */
  out->user = bundle_user(&k->val);
  out->device_id = tern_strdup(dev);
  if ((r = read_index(sem, &op->op, k, dev, dl)) < 0) return r;
  bool changed = false;
  /* The oldest entry whose key is there. One listed without its key is skipped and kept: on
   * a shared store it is another node's claim in flight, which may still lose a race and be
   * undone (the key then comes back). Dropping it, as this did, used up keys nobody got:
   * twelve claims at once on two nodes handed out 1 of 6 and left none (1 run in 10). */
  for (size_t i = 0, tries = 0; tries < CLAIM_SKIP_MAX && i < index_count(k) && !out->has_prekey; tries++) {
    uint32_t id = index_at(k, i);
    prekey_key(&k->key, dev, dl, id);
    r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_PREKEYS, k->key.data, k->key.len, &k->val, NULL);
    if (r < 0) return tern_sem_failed(sem, &op->op, "keys: prekey", r);
    if (r == 0 || k->val.len != TERN_KEY_PUB_LEN) {
      i++;
      continue;
    }
    uint8_t *at = (uint8_t *)k->index.data + 1 + 4 * i;
    memmove(at, at + 4, k->index.len - (size_t)(at + 4 - (uint8_t *)k->index.data));
    k->index.len -= 4;
    changed = true;
    out->has_prekey = true;
    out->prekey.id = id;
    memcpy(out->prekey.pub, k->val.data, TERN_KEY_PUB_LEN);
    r = BE(sem)->kv_del(SELF(sem), TERN_BUCKET_PREKEYS, k->key.data, k->key.len);
    if (r < 0) return tern_sem_failed(sem, &op->op, "keys: prekey delete", r);
  }
  if (changed && (r = write_index(sem, &op->op, k, dev, dl)) < 0) return r;
  out->nprekeys = (uint32_t)index_count(k);
  return 1;
}

static int do_claim(tern_sem *sem, tern_op_keys *op, key_scratch *k) {
  if (op->ndevices) op->bundles = tern_realloc(op->bundles, op->ndevices * sizeof *op->bundles);
  for (size_t i = 0; i < op->ndevices; i++) {
    tern_key_bundle *b = &op->bundles[op->nbundles];
    memset(b, 0, sizeof *b);
    int r = claim_one(sem, op, k, op->devices[i], b);
    if (r < 0) {
      tern_keys_bundle_clear(b);
      return r;
    }
    if (r == 1) op->nbundles++;
    else tern_keys_bundle_clear(b);
  }
  return 0;
}

int tern_sem_keys(tern_sem *sem, tern_op_keys *op) {
  tern_sem_keys_reset(op);
  if (op->op.type != TERN_OP_KEYS_CLAIM && (!op->device_id || !*op->device_id)) {
    snprintf(op->op.err, sizeof op->op.err, "keys: device id required");
    op->op.status = TERN_STORE_ERROR;
    return 0;
  }
  if (op->op.type == TERN_OP_KEYS_PUT && (!op->user || !*op->user || strlen(op->user) > 255)) {
    snprintf(op->op.err, sizeof op->op.err, "keys: user required");
    op->op.status = TERN_STORE_ERROR;
    return 0;
  }
  key_scratch k = {0};
  int r = 0;
  switch (op->op.type) {
    case TERN_OP_KEYS_PUT: r = do_put(sem, op, &k); break;
    case TERN_OP_KEYS_GET: r = do_get(sem, op, &k); break;
    case TERN_OP_KEYS_CLAIM: r = do_claim(sem, op, &k); break;
    default: break;
  }
  scratch_free(&k);
  return r < 0 ? r : 0;
}

/* ---- the cascade ---- */

int tern_sem_keys_forget(tern_sem *sem, tern_store_op *op, const char *device_id, size_t idl) {
  tern_buf key = {0}, val = {0};
  record_key(&key, device_id, idl);
  int r = BE(sem)->kv_get(SELF(sem), TERN_BUCKET_RECORDS, key.data, key.len, &val, NULL);
  if (r < 0) r = tern_sem_failed(sem, op, "keys: bundle", r);
  else if (r == 1 && (r = tern_sem_dir_del(sem, op, TERN_BUCKET_RECORDS, key.data, key.len)) < 0)
    r = tern_sem_failed(sem, op, "keys: bundle delete", r);
  /* The index "<id>", then the keys "<id>/<key id>". */
  if (r >= 0 && (r = BE(sem)->kv_del(SELF(sem), TERN_BUCKET_PREKEYS, device_id, idl)) < 0)
    r = tern_sem_failed(sem, op, "keys: index delete", r);
  if (r >= 0) {
    tern_buf_reset(&key);
    tern_buf_append(&key, device_id, idl);
    tern_buf_putc(&key, '/');
    if ((r = BE(sem)->kv_del_prefix(SELF(sem), TERN_BUCKET_PREKEYS, key.data, key.len)) < 0)
      r = tern_sem_failed(sem, op, "keys: prekeys delete", r);
  }
  tern_buf_free(&key);
  tern_buf_free(&val);
  return r < 0 ? r : 0;
}
