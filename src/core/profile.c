/* profile: display names and avatars (profile.h). */
#include "core/profile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/accounts.h"
#include "core/api.h"
#include "core/mediaglue.h"
#include "core/privacy.h"
#include "core/session.h"
#include "media/media.h"
#include "net/server.h"
#include "proto/wire.h"

#define KV_PREFIX "profile/"
enum { REC_VERSION = 1 };

/* ---- the record ---- */

void tern_profile_encode(const char *display_name, const char *avatar, tern_buf *out) {
  size_t nl = display_name ? strnlen(display_name, TERN_PROFILE_NAME_MAX) : 0;
  size_t al = avatar ? strnlen(avatar, TERN_MEDIA_ID_LEN) : 0;
  tern_buf_putc(out, REC_VERSION);
  tern_buf_putc(out, (char)nl);
  tern_buf_append(out, display_name, nl);
  tern_buf_putc(out, (char)al);
  tern_buf_append(out, avatar, al);
}

int tern_profile_decode(const uint8_t *v, size_t len, tern_str *display_name, tern_str *avatar) {
  if (len < 3 || v[0] != REC_VERSION) return -EINVAL;
  size_t nl = v[1];
  if (nl > TERN_PROFILE_NAME_MAX || 2 + nl + 1 > len || !tern_utf8_valid(v + 2, nl) || memchr(v + 2, 0, nl))
    return -EINVAL;
  size_t al = v[2 + nl];
  if (3 + nl + al != len || (al && !tern_media_id_valid((const char *)v + 3 + nl, al))) return -EINVAL;
  *display_name = (tern_str){(const char *)v + 2, nl};
  *avatar = (tern_str){(const char *)v + 3 + nl, al};
  return 0;
}

bool tern_profile_is_kv(const char *key, size_t klen) {
  return klen > sizeof KV_PREFIX - 1 && memcmp(key, KV_PREFIX, sizeof KV_PREFIX - 1) == 0;
}

/* ---- what others see ---- */

static void put_str_or_null(tern_buf *b, const char *s) {
  if (s && *s) tern_buf_put_json_str(b, s, strlen(s));
  else tern_buf_puts(b, "null");
}

void tern_profile_put_json(tern_buf *b, const tern_user *viewer, const tern_user *u) {
  bool hidden = viewer && viewer != u && tern_privacy_blocks(u, viewer);
  tern_buf_puts(b, ",\"display_name\":");
  put_str_or_null(b, hidden ? NULL : u->display_name);
  tern_buf_puts(b, ",\"avatar\":");
  put_str_or_null(b, hidden ? NULL : u->avatar);
}

bool tern_profile_avatar_readable(tern_app *a, const tern_media_rec *r, const tern_user *reader) {
  if (!r || !r->avatar || r->avatar_off || !reader) return false;
  tern_user *owner = tern_dir_user(a->dir, r->owner);
  return owner && owner->avatar && !strcmp(owner->avatar, r->id) && !tern_privacy_blocks(owner, reader);
}

/* The live frame to every watcher of u on this loop (presence watchers, PROTOCOL.md 15). A
 * watcher u has blocked sees no profile at all, so it hears of no change either. */
static void tell_watchers(tern_user *u) {
  for (size_t i = 0; i < u->nwatchers; i++) {
    tern_session *s = u->watchers[i];
    if (!s->ep || !s->ep_ops->profile || !s->dev || tern_privacy_blocks(u, s->dev->user)) continue;
    s->ep_ops->profile(s->ep, u->name, u->display_name, u->avatar);
  }
}

static bool same(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

/* Sets u's fields (copies; "" is unset) and tells the watchers when they changed. */
static void set_fields(tern_user *u, tern_str name, tern_str avatar) {
  char *n = name.n ? tern_strndup(name.p, name.n) : NULL, *av = avatar.n ? tern_strndup(avatar.p, avatar.n) : NULL;
  bool changed = !same(n, u->display_name) || !same(av, u->avatar);
  tern_free(u->display_name);
  tern_free(u->avatar);
  u->display_name = n;
  u->avatar = av;
  if (changed) tell_watchers(u);
}

int tern_profile_apply_record(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t vlen) {
  char name[TERN_USERNAME_MAX + 1];
  size_t nl = klen - (sizeof KV_PREFIX - 1);
  if (nl > TERN_USERNAME_MAX) return -EINVAL;
  memcpy(name, key + sizeof KV_PREFIX - 1, nl);
  name[nl] = '\0';
  tern_str dn = {0}, av = {0};
  if (v && tern_profile_decode(v, vlen, &dn, &av) < 0) return -EINVAL;
  tern_user *u = tern_dir_user(a->dir, name);
  if (!u) return 0; /* a user this directory does not know (deleted meanwhile) */
  set_fields(u, dn, av);
  return 0;
}

/* ---- PATCH /v1/me ---- */

typedef struct patch_ctx {
  tern_app *app;
  tern_http_req *req;
  tern_conn *conn;                   /* referenced */
  char user[TERN_USERNAME_MAX + 1];
  char device_id[TERN_DEVICE_ID_LEN + 1];
  char *display_name;                /* what was stored (NULL: unset) */
  char *avatar;
} patch_ctx;

static void on_patch_stored(tern_store_op *op) {
  patch_ctx *c = op->arg;
  tern_app *a = c->app;
  tern_user *u = tern_dir_user(a->dir, c->user);
  tern_device *d = tern_dir_device(a->dir, c->device_id);
  if (op->status != TERN_STORE_OK) {
    tern_api_store_error(c->req, op, "the profile could not be stored");
  } else if (!u || !d || d->user != u) {
    tern_http_error(c->req, 401, "unauthorized", "this device was logged out meanwhile");
  } else {
    /* The old avatar stops being one (deleted media.avatar_grace from now), the new one starts. */
    if (u->avatar && !same(u->avatar, c->avatar)) tern_mediaglue_set_avatar(a, u->avatar, false);
    if (c->avatar) tern_mediaglue_set_avatar(a, c->avatar, true);
    set_fields(u, tern_str_c(c->display_name ? c->display_name : ""), tern_str_c(c->avatar ? c->avatar : ""));
    tern_buf b = {0};
    tern_accounts_me_body(a, d, &b);
    tern_http_json(c->req, 200, &b);
    tern_buf_free(&b);
  }
  tern_conn_unref(c->conn);
  tern_free(c->display_name);
  tern_free(c->avatar);
  tern_free(c);
}

void tern_profile_patch(tern_app *a, tern_http_req *req) {
  tern_device *me = tern_api_authenticate(a, req);
  if (!me) return;
  tern_user *u = me->user;
  tern_wire_doc doc;
  cJSON *j = tern_api_json_body(req, &doc);
  if (!j) return;
  const cJSON *dn = cJSON_GetObjectItemCaseSensitive(j, "display_name");
  const cJSON *av = cJSON_GetObjectItemCaseSensitive(j, "avatar");
  const char *bad = NULL;
  if (dn && !cJSON_IsString(dn)) bad = "display_name must be a string of 0 to 64 bytes";
  else if (dn && (strlen(dn->valuestring) > TERN_PROFILE_NAME_MAX ||
                  !tern_utf8_valid(dn->valuestring, strlen(dn->valuestring))))
    bad = "display_name must be a string of 0 to 64 bytes of UTF-8";
  else if (av && !cJSON_IsNull(av) && !cJSON_IsString(av)) bad = "avatar must be a media_id or null";
  else if (!dn && !av) bad = "give display_name, avatar or both";
  const tern_media_rec *rec = NULL;
  if (!bad && av && cJSON_IsString(av)) {
    rec = tern_mediaglue_get(a, av->valuestring);
    /* The same answer for an unknown id and another user's upload: existence is not revealed. */
    if (!rec || strcmp(rec->owner, u->name) != 0 || !rec->avatar) {
      /* cluster mode: uploaded (and marked an avatar) on another node a moment ago? */
      if (tern_api_catch_up(a, req)) {
        tern_wire_doc_free(&doc);
        return;
      }
      bad = "avatar must be the media_id of an image you uploaded with POST /v1/media?purpose=avatar";
    }
  }
  if (bad) {
    tern_wire_doc_free(&doc);
    tern_http_error(req, 400, "bad_request", bad);
    return;
  }
  patch_ctx *c = TERN_NEW(patch_ctx);
  c->app = a;
  c->req = req;
  c->conn = req->conn;
  tern_conn_ref(c->conn);
  snprintf(c->user, sizeof c->user, "%s", u->name);
  snprintf(c->device_id, sizeof c->device_id, "%s", me->id);
  /* fields left out keep their value */
  const char *name = dn ? dn->valuestring : u->display_name;
  c->display_name = name && *name ? tern_strdup(name) : NULL;
  c->avatar = av ? (rec ? tern_strdup(rec->id) : NULL) : (u->avatar ? tern_strdup(u->avatar) : NULL);
  tern_wire_doc_free(&doc);
  tern_op_kv *op = tern_op_kv_new(TERN_OP_KV_PUT, on_patch_stored, c);
  char key[sizeof KV_PREFIX + TERN_USERNAME_MAX];
  snprintf(key, sizeof key, KV_PREFIX "%s", u->name);
  tern_store_set_str(&op->key, key);
  tern_profile_encode(c->display_name, c->avatar, &op->value);
  tern_app_submit(a, &op->op);
}

void tern_profile_forget(tern_app *a, tern_user *u) {
  if (u->avatar) tern_mediaglue_set_avatar(a, u->avatar, false);
  char key[sizeof KV_PREFIX + TERN_USERNAME_MAX];
  snprintf(key, sizeof key, KV_PREFIX "%s", u->name);
  tern_op_kv *op = tern_op_kv_new(TERN_OP_KV_DEL, NULL, NULL);
  tern_store_set_str(&op->key, key);
  tern_app_submit(a, &op->op);
  tern_free(u->display_name);
  tern_free(u->avatar);
  u->display_name = u->avatar = NULL;
}
