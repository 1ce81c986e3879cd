/* dir: the directory's shared helpers and its in-memory implementation. */
#include "core/dir.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/map.h"
#include "base/util.h"
#include "push/push.h"
#include "core/privacy.h"

/* ---- devices' memory ------------------------------------------------------------------------ */

static void free_device(tern_device *d) {
  if (d->push) {
    tern_push_reg_free(d->push);
    tern_free(d->push);
  }
  tern_free(d->label);
  tern_free(d);
}

void tern_dir_device_ref(tern_device *dev) { dev->refs++; }

void tern_dir_device_unref(tern_device *dev) {
  if (--dev->refs == 0 && dev->removed) free_device(dev);
}

/* Called by implementations once a device is unlinked. */
static void release_removed(tern_device *dev) {
  dev->removed = true;
  dev->user = NULL;
  dev->session = NULL;
  if (dev->refs == 0) free_device(dev);
}

/* ---- the in-memory implementation ------------------------------------------------------------ */

typedef struct memdir {
  tern_map users;   /* name → tern_user */
  tern_user **retired; /* deleted accounts, kept until the directory goes */
  size_t nretired;
  tern_map devices; /* device id → tern_device */
  tern_map tokens;  /* 32-byte token hash → tern_device */
} memdir;

static tern_user *m_user(void *d, const char *name) { return tern_map_gets(&((memdir *)d)->users, name); }
static tern_device *m_device(void *d, const char *id) { return tern_map_gets(&((memdir *)d)->devices, id); }
static tern_device *m_by_token_hash(void *d, const uint8_t h[32]) {
  return tern_map_get(&((memdir *)d)->tokens, (const char *)h, 32);
}

static tern_user *m_add_user(void *d, const char *name) {
  memdir *m = d;
  tern_user *u = TERN_NEW(tern_user);
  snprintf(u->name, sizeof u->name, "%s", name);
  tern_map_puts(&m->users, u->name, u);
  return u;
}

static void m_remove_user(void *d, tern_user *u) {
  memdir *m = d;
  tern_map_dels(&m->users, u->name);
  tern_free(u->pwhash);
  tern_free(u->watchers);
  tern_free(u->groups);
  tern_free(u->display_name);
  tern_free(u->avatar);
  tern_privacy_free(u->privacy);
  tern_free(u);
}

static void m_retire_user(void *d, tern_user *u) {
  memdir *m = d;
  if (tern_map_gets(&m->users, u->name) != u) return;
  tern_map_dels(&m->users, u->name);
  m->retired = tern_realloc(m->retired, (m->nretired + 1) * sizeof *m->retired);
  m->retired[m->nretired++] = u;
}

static void m_add_device(void *d, tern_user *u, tern_device *dev) {
  memdir *m = d;
  dev->user = u;
  dev->next_in_user = u->devices;
  u->devices = dev;
  u->ndevices++;
  tern_map_puts(&m->devices, dev->id, dev);
  tern_map_put(&m->tokens, (const char *)dev->token_hash, 32, dev);
}

static void m_remove_device(void *d, tern_device *dev) {
  memdir *m = d;
  tern_user *u = dev->user;
  for (tern_device **pp = &u->devices; *pp; pp = &(*pp)->next_in_user) {
    if (*pp == dev) {
      *pp = dev->next_in_user;
      u->ndevices--;
      break;
    }
  }
  tern_map_dels(&m->devices, dev->id);
  tern_map_del(&m->tokens, (const char *)dev->token_hash, 32);
  release_removed(dev);
}

typedef struct each_ctx {
  tern_dir_user_fn ufn;
  tern_dir_device_fn dfn;
  void *arg;
} each_ctx;

static bool each_user_cb(const char *k, size_t kl, void *v, void *arg) {
  each_ctx *c = arg;
  return c->ufn(v, c->arg);
}

static bool each_device_cb(const char *k, size_t kl, void *v, void *arg) {
  each_ctx *c = arg;
  return c->dfn(v, c->arg);
}

static void m_each_user(void *d, tern_dir_user_fn fn, void *arg) {
  each_ctx c = {.ufn = fn, .arg = arg};
  tern_map_each(&((memdir *)d)->users, each_user_cb, &c);
}

static void m_each_device(void *d, tern_dir_device_fn fn, void *arg) {
  each_ctx c = {.dfn = fn, .arg = arg};
  tern_map_each(&((memdir *)d)->devices, each_device_cb, &c);
}

static size_t m_nusers(void *d) { return ((memdir *)d)->users.count; }
static size_t m_ndevices(void *d) { return ((memdir *)d)->devices.count; }

static bool free_user_cb(const char *k, size_t kl, void *v, void *arg) {
  tern_user *u = v;
  for (tern_device *d = u->devices, *next; d; d = next) {
    next = d->next_in_user;
    release_removed(d);
  }
  tern_free(u->pwhash);
  tern_free(u->watchers);
  tern_free(u->groups);
  tern_free(u->display_name);
  tern_free(u->avatar);
  tern_privacy_free(u->privacy);
  tern_free(u);
  return true;
}

static void m_free(void *d) {
  memdir *m = d;
  tern_map_each(&m->users, free_user_cb, NULL);
  for (size_t i = 0; i < m->nretired; i++) free_user_cb(NULL, 0, m->retired[i], NULL);
  tern_free(m->retired);
  tern_map_free(&m->users);
  tern_map_free(&m->devices);
  tern_map_free(&m->tokens);
  tern_free(m);
}

static const tern_dir_ops memdir_ops = {
    .user = m_user,
    .device = m_device,
    .by_token_hash = m_by_token_hash,
    .add_user = m_add_user,
    .remove_user = m_remove_user,
    .retire_user = m_retire_user,
    .add_device = m_add_device,
    .remove_device = m_remove_device,
    .each_user = m_each_user,
    .each_device = m_each_device,
    .nusers = m_nusers,
    .ndevices = m_ndevices,
    .free = m_free,
};

tern_dir *tern_dir_new_memory(void) {
  tern_dir *d = TERN_NEW(tern_dir);
  d->ops = &memdir_ops;
  d->self = TERN_NEW(memdir);
  return d;
}

void tern_dir_free(tern_dir *d) {
  if (!d) return;
  d->ops->free(d->self);
  tern_free(d);
}

/* ---- helpers over any implementation ---------------------------------------------------------- */

tern_user *tern_dir_add_user(tern_dir *d, const char *name) { return d->ops->add_user(d->self, name); }

void tern_dir_remove_user(tern_dir *d, tern_user *u) { d->ops->remove_user(d->self, u); }
void tern_dir_retire_user(tern_dir *d, tern_user *u) { d->ops->retire_user(d->self, u); }

void tern_token_hash(const char *token, size_t len, uint8_t out[32]) {
  crypto_generichash(out, 32, (const unsigned char *)token, len, NULL, 0);
}

tern_device *tern_dir_by_token(tern_dir *d, const char *token, size_t len) {
  if (len == 0 || len > TERN_TOKEN_MAX) return NULL;
  uint8_t h[32];
  tern_token_hash(token, len, h);
  tern_device *dev = d->ops->by_token_hash(d->self, h);
  /* The map finds by hash equality already; compare again in constant time so that the
   * decision itself never depends on how many bytes matched. */
  if (dev && sodium_memcmp(dev->token_hash, h, sizeof h) != 0) return NULL;
  return dev;
}

tern_device *tern_dir_by_bearer(tern_dir *d, const char *authorization) {
  const char *h = authorization;
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
  const char *t = h + 7;
  while (*t == ' ') t++;
  return tern_dir_by_token(d, t, strlen(t));
}

tern_device *tern_dir_add_device(tern_dir *d, tern_user *u, const char *label, char token_out[48]) {
  tern_device *dev = TERN_NEW(tern_device);
  do {
    uint8_t raw[TERN_DEVICE_ID_LEN / 2];
    tern_random(raw, sizeof raw);
    tern_hex(dev->id, raw, sizeof raw);
  } while (tern_dir_device(d, dev->id));
  uint8_t tok[32]; /* 256 random bits */
  tern_random(tok, sizeof tok);
  sodium_bin2base64(token_out, 48, tok, sizeof tok, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  tern_token_hash(token_out, strlen(token_out), dev->token_hash);
  sodium_memzero(tok, sizeof tok);
  dev->created = tern_now_ms();
  dev->label = tern_strdup(label ? label : "");
  d->ops->add_device(d->self, u, dev);
  return dev;
}

tern_device *tern_dir_load_device(tern_dir *d, tern_user *u, const char *id, const char *label,
                                  const uint8_t token_hash[32], int64_t created, int64_t last_seen) {
  tern_device *dev = TERN_NEW(tern_device);
  snprintf(dev->id, sizeof dev->id, "%s", id);
  memcpy(dev->token_hash, token_hash, 32);
  dev->created = created;
  dev->last_seen = last_seen;
  dev->label = tern_strdup(label ? label : "");
  d->ops->add_device(d->self, u, dev);
  return dev;
}

void tern_dir_remove_device(tern_dir *d, tern_device *dev) { d->ops->remove_device(d->self, dev); }

static bool username_ok(const char *name) {
  char norm[TERN_USERNAME_MAX + 1];
  return name && tern_username_normalize(name, strlen(name), norm) && !strcmp(norm, name);
}

bool tern_dir_user_rec_ok(const tern_user_rec *r) {
  if (!username_ok(r->user)) return false;
  for (const char *c = r->pwhash ? r->pwhash : ""; *c; c++)
    if (*c < 0x21 || *c > 0x7e) return false;
  return true;
}

bool tern_dir_device_rec_ok(const tern_device_rec *r) {
  if (!r->device_id || strlen(r->device_id) != TERN_DEVICE_ID_LEN || !username_ok(r->user) || !r->label) return false;
  for (const char *c = r->device_id; *c; c++)
    if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return false;
  size_t ll = strlen(r->label);
  return ll <= TERN_DEVICE_LABEL_MAX && tern_utf8_valid(r->label, ll);
}
