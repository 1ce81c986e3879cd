/* dir: the in-memory directory of users, devices and token hashes. */
#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/util.h"
#include "core/core.h"

static void free_device(tern_device *d) {
  if (d->push) {
    tern_push_reg_free(d->push);
    tern_free(d->push);
  }
  tern_free(d->label);
  tern_free(d);
}

tern_user *tern_dir_user(tern_app *a, const char *name) { return tern_map_gets(&a->users, name); }

tern_user *tern_dir_add_user(tern_app *a, const char *name) {
  tern_user *u = TERN_NEW(tern_user);
  snprintf(u->name, sizeof u->name, "%s", name);
  u->tokens = (double)a->cfg->limits_send_burst;
  u->tokens_at = tern_now_ms();
  tern_map_puts(&a->users, u->name, u);
  return u;
}

void tern_dir_remove_user(tern_app *a, tern_user *u) {
  tern_map_dels(&a->users, u->name);
  tern_free(u->pwhash);
  tern_free(u->watchers);
  tern_free(u);
}

tern_device *tern_dir_device(tern_app *a, const char *id) { return tern_map_gets(&a->devices, id); }

void tern_token_hash(const char *token, size_t len, uint8_t out[32]) {
  crypto_generichash(out, 32, (const unsigned char *)token, len, NULL, 0);
}

tern_device *tern_dir_by_token(tern_app *a, const char *token, size_t len) {
  if (len == 0 || len > 512) return NULL;
  uint8_t h[32];
  tern_token_hash(token, len, h);
  tern_device *d = tern_map_get(&a->tokens, (const char *)h, sizeof h);
  /* The map finds by hash equality already; compare again in constant time so that the
   * decision itself never depends on how many bytes matched. */
  if (d && sodium_memcmp(d->token_hash, h, sizeof h) != 0) return NULL;
  return d;
}

/* Links d (id, token hash and times already set) into u's list and the lookup maps. */
static tern_device *link_device(tern_app *a, tern_user *u, tern_device *d, const char *label) {
  d->user = u;
  d->label = tern_strdup(label ? label : "");
  d->next_in_user = u->devices;
  u->devices = d;
  u->ndevices++;
  tern_map_puts(&a->devices, d->id, d);
  tern_map_put(&a->tokens, (const char *)d->token_hash, 32, d);
  return d;
}

tern_device *tern_dir_by_bearer(tern_app *a, const char *authorization) {
  const char *h = authorization;
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
  const char *t = h + 7;
  while (*t == ' ') t++;
  return tern_dir_by_token(a, t, strlen(t));
}

tern_device *tern_dir_add_device(tern_app *a, tern_user *u, const char *label, char token_out[48]) {
  tern_device *d = TERN_NEW(tern_device);
  do {
    uint8_t raw[TERN_DEVICE_ID_LEN / 2];
    tern_random(raw, sizeof raw);
    tern_hex(d->id, raw, sizeof raw);
  } while (tern_dir_device(a, d->id));
  uint8_t tok[32]; /* 256 random bits */
  tern_random(tok, sizeof tok);
  sodium_bin2base64(token_out, 48, tok, sizeof tok, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  tern_token_hash(token_out, strlen(token_out), d->token_hash);
  sodium_memzero(tok, sizeof tok);
  d->created = tern_now_ms();
  return link_device(a, u, d, label);
}

void tern_dir_remove_device(tern_app *a, tern_device *d) {
  tern_user *u = d->user;
  for (tern_device **pp = &u->devices; *pp; pp = &(*pp)->next_in_user) {
    if (*pp == d) {
      *pp = d->next_in_user;
      u->ndevices--;
      break;
    }
  }
  tern_map_dels(&a->devices, d->id);
  tern_map_del(&a->tokens, (const char *)d->token_hash, 32);
  free_device(d);
}

static bool free_user(const char *k, size_t kl, void *v, void *arg) {
  tern_user *u = v;
  tern_device *d = u->devices;
  while (d) {
    tern_device *next = d->next_in_user;
    free_device(d);
    d = next;
  }
  tern_free(u->pwhash);
  tern_free(u->watchers);
  tern_free(u);
  return true;
}

void tern_dir_free(tern_app *a) {
  tern_map_each(&a->users, free_user, NULL);
  tern_map_free(&a->users);
  tern_map_free(&a->devices);
  tern_map_free(&a->tokens);
}

tern_device *tern_dir_load_device(tern_app *a, tern_user *u, const char *id, const char *label,
                                  const uint8_t token_hash[32], int64_t created, int64_t last_seen) {
  tern_device *d = TERN_NEW(tern_device);
  snprintf(d->id, sizeof d->id, "%s", id);
  memcpy(d->token_hash, token_hash, 32);
  d->created = created;
  d->last_seen = last_seen;
  return link_device(a, u, d, label);
}
