/* sync: the directory follows records written elsewhere (sync.h). */
#include "core/sync.h"

#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/map.h"
#include "base/util.h"
#include "core/accounts.h"
#include "core/groups.h"
#include "core/keyapi.h"
#include "core/mediaglue.h"
#include "core/pushglue.h"
#include "core/privacy.h"
#include "core/profile.h"

enum {
  TOMBSTONE_MS = 10 * 60 * 1000, /* far longer than any feed lag */
};

struct tern_sync {
  tern_app *a;
  tern_map gone;      /* device id → (intptr_t) ms it was deleted elsewhere */
  /* device id → (intptr_t) ms: E2E bundles that arrived before their device's record (two
   * writers' feeds are ordered each, not with each other); the device takes it on arrival */
  tern_map early_keys;
  /* user → parked_device list: device records that arrived before their user's record. With
   * NATS each directory bucket has its own watcher, so a user and its first device, stored in
   * one group, may reach this loop in either order; the device waits for its user. */
  tern_map early_devices;
  size_t nparked;
  int64_t next_prune; /* ms */
};

typedef struct parked_device {
  struct parked_device *next;
  int64_t at; /* ms it arrived */
  tern_device_rec r; /* strings owned */
} parked_device;

enum { PARKED_MAX = 10000 }; /* far more than a feed lag can hold back */

static void parked_free(parked_device *p) {
  while (p) {
    parked_device *n = p->next;
    tern_free((char *)p->r.device_id);
    tern_free((char *)p->r.user);
    tern_free((char *)p->r.label);
    tern_free((char *)p->r.push);
    tern_free(p);
    p = n;
  }
}

static void park_device(tern_sync *s, const tern_device_rec *r) {
  if (s->nparked >= PARKED_MAX) {
    TERN_WARN("sync: device of an unknown user dropped (too many waiting)", "device=%s user=%s", r->device_id, r->user);
    return;
  }
  parked_device *p = TERN_NEW(parked_device);
  p->at = tern_now_ms();
  p->r = *r;
  p->r.device_id = tern_strdup(r->device_id);
  p->r.user = tern_strdup(r->user);
  p->r.label = tern_strdup(r->label ? r->label : "");
  p->r.push = r->push ? tern_strdup(r->push) : NULL;
  p->next = tern_map_gets(&s->early_devices, r->user);
  tern_map_puts(&s->early_devices, r->user, p);
  s->nparked++;
}

/* Forgets what waits for user (it never came, or it was deleted). */
static void drop_parked(tern_sync *s, const char *user) {
  parked_device *p = tern_map_gets(&s->early_devices, user);
  if (!p) return;
  for (parked_device *q = p; q; q = q->next) s->nparked--;
  tern_map_dels(&s->early_devices, user);
  parked_free(p);
}

static void prune_map(tern_sync *s, tern_map *m, int64_t now);

static void prune(tern_sync *s, int64_t now) {
  if (now < s->next_prune) return;
  s->next_prune = now + TOMBSTONE_MS;
  prune_map(s, &s->gone, now);
  prune_map(s, &s->early_keys, now);
  prune_map(s, &s->early_devices, now); /* parked records of users that never came */
}

/* Entries older than the tombstone time: values are the ms they came (intptr_t), or, in
 * early_devices, parked lists (newest first). */
static void prune_map(tern_sync *s, tern_map *m, int64_t now) {
  bool parked = m == &s->early_devices;
  const char *k;
  size_t kl;
  void *v;
  tern_map_iter it = {0};
  char **old = NULL;
  size_t n = 0, cap = 0;
  while (tern_map_next(m, &it, &k, &kl, &v)) {
    int64_t at = parked ? ((const parked_device *)v)->at : (int64_t)(intptr_t)v;
    if (now - at < TOMBSTONE_MS) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      old = tern_realloc(old, cap * sizeof *old);
    }
    old[n++] = tern_strndup(k, kl);
  }
  for (size_t i = 0; i < n; i++) {
    if (parked) drop_parked(s, old[i]);
    else tern_map_dels(m, old[i]);
    tern_free(old[i]);
  }
  tern_free(old);
}

static void on_device(const tern_device_rec *r, void *arg);

static void on_user(const tern_user_rec *r, void *arg) {
  tern_sync *s = arg;
  tern_app *a = s->a;
  if (!tern_dir_user_rec_ok(r)) {
    TERN_WARN("user record from another writer refused", "user=%s", tern_log_quote(r->user));
    return;
  }
  tern_user *u = tern_dir_user(a->dir, r->user);
  if (r->deleted) { /* deleted elsewhere: everything of it leaves this directory too */
    TERN_INFO("account deleted elsewhere", "user=%s", r->user);
    if (u && !u->pending) {
      tern_accounts_forget_user(a, u, r->deleted);
      /* after any move of this node's leftovers into it (on_device_gone): the name can be
       * taken again once its hold ends, and the next owner's first device must not get them */
      char inbox[TERN_USER_INBOX_LEN];
      tern_user_inbox(inbox, r->user);
      tern_op_inbox *op = tern_op_inbox_new(TERN_OP_DEL_DEVICE, NULL, NULL);
      tern_store_set_str(&op->inbox, inbox);
      tern_app_submit(a, &op->op);
    } else {
      tern_accounts_hold(a, r->user, r->deleted);
    }
    drop_parked(s, r->user);
    return;
  }
  if (u && u->pending) {
    /* our registration of the name is still hashing or storing; theirs is stored: the name
     * is theirs, and ours will answer 409 */
    tern_free(u->pwhash);
    u->pending = false;
    u->pwhash = NULL;
  }
  if (!u) u = tern_dir_add_user(a->dir, r->user);
  if (!u->pwhash || strcmp(u->pwhash, r->pwhash) != 0) {
    tern_free(u->pwhash);
    u->pwhash = tern_strdup(r->pwhash);
  }
  u->created = r->created;
  if (r->last_seen > u->last_seen) u->last_seen = r->last_seen;
  if (r->last_seen > u->persisted_last_seen) u->persisted_last_seen = r->last_seen;
  parked_device *p = tern_map_gets(&s->early_devices, r->user);
  if (p) {
    tern_map_dels(&s->early_devices, r->user);
    /* oldest first, as they arrived */
    parked_device *rev = NULL;
    while (p) {
      parked_device *n = p->next;
      p->next = rev;
      rev = p;
      p = n;
    }
    for (parked_device *q = rev; q; q = q->next) {
      s->nparked--;
      on_device(&q->r, s);
    }
    parked_free(rev);
  }
}

static void on_device(const tern_device_rec *r, void *arg) {
  tern_sync *s = arg;
  tern_app *a = s->a;
  if (!tern_dir_device_rec_ok(r)) {
    TERN_WARN("device record from another writer refused", "device=%s", tern_log_quote(r->device_id));
    return;
  }
  if (tern_map_gets(&s->gone, r->device_id)) return; /* a late record of a deleted device */
  tern_device *d = tern_dir_device(a->dir, r->device_id);
  if (d) {
    if (strcmp(d->label, r->label) != 0) {
      tern_free(d->label);
      d->label = tern_strdup(r->label);
    }
    if (r->last_seen > d->last_seen) d->last_seen = r->last_seen;
    tern_pushglue_load(a, d, r->push);
    return;
  }
  tern_user *u = tern_dir_user(a->dir, r->user);
  if (!u || u->pending) {
    prune(s, tern_now_ms());
    park_device(s, r);
    return;
  }
  bool first = u->ndevices == 0;
  d = tern_dir_load_device(a->dir, u, r->device_id, r->label, r->token_hash, r->created, r->last_seen);
  tern_pushglue_load(a, d, r->push);
  if (tern_map_dels(&s->early_keys, d->id)) d->e2e = true;
  if (first) {
    /* A sender on this loop that did not know the device yet put messages in the user-level
     * inbox; the node that logged the device in moved only what was there then. Moving again
     * is harmless (an empty inbox moves nothing) and comes after those appends here. */
    tern_op_inbox *op = tern_op_inbox_new(TERN_OP_MOVE_INBOX, NULL, NULL);
    char inbox[TERN_USER_INBOX_LEN];
    tern_user_inbox(inbox, u->name);
    tern_store_set_str(&op->inbox, inbox);
    tern_store_set_str(&op->inbox2, d->id);
    tern_app_submit(a, &op->op);
  }
}

static void on_device_gone(const char *id, void *arg) {
  tern_sync *s = arg;
  int64_t now = tern_now_ms();
  prune(s, now);
  tern_map_puts(&s->gone, id, (void *)(intptr_t)now);
  tern_app *a = s->a;
  tern_device *d = tern_dir_device(a->dir, id);
  if (!d) return;
  tern_user *u = d->user;
  TERN_INFO("device deleted elsewhere", "user=%s device=%s", u->name, d->id);
  tern_accounts_forget_device(a, d);
  /* Until now this node's sends still went to the device: what they committed after the
   * deleting node emptied its inbox waits there for nobody (every earlier group of this
   * node commits before this op). */
  tern_app_submit(a, tern_accounts_leftovers_op(a, u, id));
}

static void on_user_gone(const char *user, void *arg) {
  tern_sync *s = arg;
  tern_accounts_unhold(s->a, user); /* the hold ended: the name is free everywhere */
}

static void on_kv(const char *key, size_t klen, const uint8_t *v, size_t vlen, void *arg) {
  tern_sync *s = arg;
  if (tern_groups_is_kv(key, klen)) tern_groups_apply_record(s->a, key, klen, v, vlen);
  else if (tern_privacy_is_kv(key, klen)) tern_privacy_apply_record(s->a, key, klen, v, vlen);
  else if (tern_profile_is_kv(key, klen)) tern_profile_apply_record(s->a, key, klen, v, vlen);
  else if (klen == sizeof TERN_MSGID_KV_KEY - 1 && !memcmp(key, TERN_MSGID_KV_KEY, klen))
    tern_app_adopt_msgid_key(s->a, v, vlen);
  else if (tern_keyapi_is_kv(key, klen) && !tern_keyapi_apply_record(s->a, key, klen, v, vlen)) {
    size_t pl = sizeof TERN_KEYS_RECORD_PREFIX - 1;
    prune(s, tern_now_ms());
    tern_map_put(&s->early_keys, key + pl, klen - pl, (void *)(intptr_t)tern_now_ms());
  }
  /* media records: the bytes live on the node that took the upload (docs/cluster-layout.md);
   * another worker of this node keeps a replica of the media worker's records */
  else if (tern_mediaglue_is_kv(key, klen)) tern_mediaglue_apply_record(s->a, key, klen, v, vlen);
}

static void on_kv_gone(const char *key, size_t klen, void *arg) {
  tern_sync *s = arg;
  if (tern_groups_is_kv(key, klen)) tern_groups_apply_record(s->a, key, klen, NULL, 0);
  else if (tern_privacy_is_kv(key, klen)) tern_privacy_apply_record(s->a, key, klen, NULL, 0);
  else if (tern_profile_is_kv(key, klen)) tern_profile_apply_record(s->a, key, klen, NULL, 0);
  else if (tern_keyapi_is_kv(key, klen)) {
    size_t pl = sizeof TERN_KEYS_RECORD_PREFIX - 1;
    tern_map_del(&s->early_keys, key + pl, klen - pl);
    tern_keyapi_apply_record(s->a, key, klen, NULL, 0);
  } else if (tern_mediaglue_is_kv(key, klen)) {
    tern_mediaglue_apply_record(s->a, key, klen, NULL, 0);
  }
}

tern_sync *tern_sync_new(tern_app *a) {
  tern_sync *s = TERN_NEW(tern_sync);
  s->a = a;
  tern_store_load_cbs cbs = {.user = on_user,
                             .device = on_device,
                             .kv = on_kv,
                             .device_gone = on_device_gone,
                             .kv_gone = on_kv_gone,
                             .user_gone = on_user_gone,
                             .arg = s};
  tern_store_follow(a->port, &cbs);
  return s;
}

void tern_sync_free(tern_sync *s) {
  if (!s) return;
  tern_map_free(&s->gone);
  tern_map_free(&s->early_keys);
  tern_map_iter it = {0};
  const char *k;
  size_t kl;
  void *v;
  while (tern_map_next(&s->early_devices, &it, &k, &kl, &v)) parked_free(v);
  tern_map_free(&s->early_devices);
  tern_free(s);
}
