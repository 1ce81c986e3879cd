/* privacy: blocks and privacy settings (see privacy.h). */
#include "core/privacy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "core/api.h"
#include "core/groups.h"
#include "core/presence.h"
#include "core/session.h"
#include "net/server.h"
#include "proto/frame.h"

#define KV_PREFIX "privacy/"
enum { REC_VERSION = 2, F_LAST_SEEN_NOBODY = 1, F_READ_RECEIPTS_OFF = 2 };

/* ---- the model ---- */

static int cmp_name(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

bool tern_privacy_blocks(const tern_user *u, const tern_user *other) {
  const tern_privacy *p = u->privacy;
  if (!p || !p->nblocked || u == other) return false;
  const char *key = other->name;
  return bsearch(&key, p->blocked, p->nblocked, sizeof *p->blocked, cmp_name) != NULL;
}

void tern_privacy_view(tern_app *a, const tern_user *viewer, tern_user *u, bool *online, int64_t *last_seen) {
  if (viewer && viewer != u && tern_privacy_blocks(u, viewer)) {
    *online = false; /* blocked: as if never seen (PROTOCOL.md 14) */
    *last_seen = 0;
    return;
  }
  *online = tern_presence_online(a, u) > 0;
  *last_seen = *online ? 0 : tern_user_last_seen(a, u);
  bool hide = (u->privacy && u->privacy->last_seen_nobody) ||
              (viewer && viewer != u && viewer->privacy && viewer->privacy->last_seen_nobody);
  if (hide) *last_seen = 0;
}

bool tern_privacy_read_receipts(const tern_user *reader, const tern_user *sender) {
  return !(reader->privacy && reader->privacy->read_receipts_off) &&
         !(sender->privacy && sender->privacy->read_receipts_off);
}

bool tern_privacy_muted(const tern_user *u, char kind, const char *name) {
  const tern_privacy *p = u->privacy;
  if (!p || !p->nmutes) return false;
  int64_t now = tern_now_ms();
  for (size_t i = 0; i < p->nmutes; i++) {
    const tern_mute *m = &p->mutes[i];
    if (m->kind == kind && !strcmp(m->name, name)) return m->until == 0 || m->until > now;
  }
  return false;
}

void tern_privacy_free(tern_privacy *p) {
  if (!p) return;
  for (size_t i = 0; i < p->nblocked; i++) tern_free(p->blocked[i]);
  tern_free(p->blocked);
  for (size_t i = 0; i < p->nmutes; i++) tern_free(p->mutes[i].name);
  tern_free(p->mutes);
  tern_free(p);
}

/* ---- the record: [1][flags][u32 n][n x (u8 len, name)] ---- */

void tern_privacy_encode(const tern_privacy *p, tern_buf *out) {
  tern_buf_putc(out, REC_VERSION);
  tern_buf_putc(out, (char)((p->last_seen_nobody ? F_LAST_SEEN_NOBODY : 0) | (p->read_receipts_off ? F_READ_RECEIPTS_OFF : 0)));
  tern_buf_put_be32(out, p->nblocked);
  for (size_t i = 0; i < p->nblocked; i++) {
    size_t n = strlen(p->blocked[i]);
    tern_buf_putc(out, (char)n);
    tern_buf_append(out, p->blocked[i], n);
  }
  tern_buf_put_be32(out, p->nmutes);
  for (size_t i = 0; i < p->nmutes; i++) {
    size_t n = strlen(p->mutes[i].name);
    tern_buf_putc(out, p->mutes[i].kind);
    tern_buf_putc(out, (char)n);
    tern_buf_append(out, p->mutes[i].name, n);
    tern_buf_put_be64(out, (uint64_t)p->mutes[i].until);
  }
}

tern_privacy *tern_privacy_decode(const uint8_t *v, size_t len) {
  if (len < 6 || v[0] < 1 || v[0] > REC_VERSION) return NULL;
  uint32_t n = tern_get_be32(v + 2);
  if (n > TERN_PRIVACY_MAX_BLOCKS) return NULL;
  tern_privacy *p = TERN_NEW(tern_privacy);
  p->last_seen_nobody = v[1] & F_LAST_SEEN_NOBODY;
  p->read_receipts_off = v[1] & F_READ_RECEIPTS_OFF;
  p->blocked = tern_calloc(n ? n : 1, sizeof *p->blocked);
  size_t off = 6;
  for (uint32_t i = 0; i < n; i++) {
    if (off >= len || v[off] == 0 || v[off] > TERN_USERNAME_MAX || off + 1 + v[off] > len ||
        memchr(v + off + 1, 0, v[off])) { /* a name holds no NUL */
      tern_privacy_free(p);
      return NULL;
    }
    p->blocked[p->nblocked++] = tern_strndup((const char *)v + off + 1, v[off]);
    off += 1 + (size_t)v[off];
  }
  if (v[0] >= 2) { /* the mutes */
    uint32_t m = off + 4 <= len ? tern_get_be32(v + off) : UINT32_MAX;
    if (m > TERN_PRIVACY_MAX_MUTES) {
      tern_privacy_free(p);
      return NULL;
    }
    off += 4;
    p->mutes = tern_calloc(m ? m : 1, sizeof *p->mutes);
    for (uint32_t i = 0; i < m; i++) {
      size_t nl = off + 2 <= len ? v[off + 1] : 0;
      if (off + 2 > len || (v[off] != 'u' && v[off] != 'g') || nl == 0 || nl > 64 || off + 2 + nl + 8 > len ||
          memchr(v + off + 2, 0, nl)) {
        tern_privacy_free(p);
        return NULL;
      }
      tern_mute *mu = &p->mutes[p->nmutes++];
      mu->kind = (char)v[off];
      mu->name = tern_strndup((const char *)v + off + 2, nl);
      mu->until = (int64_t)tern_get_be64(v + off + 2 + nl);
      off += 2 + nl + 8;
    }
  }
  if (off != len) {
    tern_privacy_free(p);
    return NULL;
  }
  qsort(p->blocked, p->nblocked, sizeof *p->blocked, cmp_name);
  crypto_generichash(p->stored_hash, sizeof p->stored_hash, v, len, NULL, 0);
  return p;
}

bool tern_privacy_is_kv(const char *key, size_t klen) {
  return klen > sizeof KV_PREFIX - 1 && !memcmp(key, KV_PREFIX, sizeof KV_PREFIX - 1);
}

/* What others see of u changed, or what u sees of others: their presence goes out again. */
static void refresh(tern_app *a, tern_user *u) {
  tern_presence_changed(a, u);
  for (tern_device *d = u->devices; d; d = d->next_in_user) {
    tern_session *s = d->session;
    if (!s) continue;
    for (size_t i = 0; i < s->nwatching; i++) tern_presence_send(a, s, s->watching[i]);
  }
}

int tern_privacy_apply_record(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t vlen) {
  char name[TERN_USERNAME_MAX + 1];
  size_t nl = klen - (sizeof KV_PREFIX - 1);
  if (nl > TERN_USERNAME_MAX) return -EINVAL;
  memcpy(name, key + sizeof KV_PREFIX - 1, nl);
  name[nl] = '\0';
  tern_privacy *p = NULL;
  if (v && !(p = tern_privacy_decode(v, vlen))) return -EINVAL;
  tern_user *u = tern_dir_user(a->dir, name);
  if (!u) { /* a user this directory does not know (deleted meanwhile) */
    tern_privacy_free(p);
    return 0;
  }
  tern_privacy_free(u->privacy);
  u->privacy = p;
  refresh(a, u);
  return 0;
}

/* ---- the API ---- */

typedef struct change_ctx {
  tern_app *app;
  tern_http_req *req;
  tern_conn *conn;
  char user[TERN_USERNAME_MAX + 1];
  char key[sizeof KV_PREFIX + TERN_USERNAME_MAX];
  tern_buf rec; /* what was stored, applied once it is */
} change_ctx;

static void on_stored(tern_store_op *op) {
  change_ctx *c = op->arg;
  tern_app *a = c->app;
  if (tern_api_cas_stored(a, c->req, c->conn, op, "the privacy settings")) {
    tern_privacy_apply_record(a, c->key, strlen(c->key), (const uint8_t *)c->rec.data, c->rec.len);
    tern_http_respond(c->req, 204, NULL, NULL, NULL, 0);
  }
  tern_conn_unref(c->conn);
  tern_buf_free(&c->rec);
  tern_free(c);
}

/* Stores next as u's record, if the stored one is still the one u->privacy was read from. */
static void store(tern_app *a, tern_http_req *req, tern_user *u, const tern_privacy *next) {
  change_ctx *c = TERN_NEW(change_ctx);
  c->app = a;
  c->req = req;
  c->conn = req->conn;
  tern_conn_ref(c->conn);
  snprintf(c->user, sizeof c->user, "%s", u->name);
  snprintf(c->key, sizeof c->key, KV_PREFIX "%s", u->name);
  tern_privacy_encode(next, &c->rec);
  tern_op_append *op = tern_op_append_new(on_stored, c);
  tern_store_set_str(&op->record_key, c->key);
  tern_buf_append(&op->record, c->rec.data, c->rec.len);
  op->record_check = true;
  op->record_absent = !u->privacy;
  if (u->privacy) memcpy(op->record_hash, u->privacy->stored_hash, sizeof op->record_hash);
  tern_app_submit(a, &op->op);
}

/* A shallow copy of u's settings (the defaults when none), for building the next record. */
static tern_privacy current(const tern_user *u) {
  tern_privacy p = {0};
  if (u->privacy) p = *u->privacy;
  return p;
}

static void blocks_list(tern_http_req *req, const tern_user *me) {
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"users\":[");
  const tern_privacy *p = me->privacy;
  for (size_t i = 0; p && i < p->nblocked; i++) {
    if (i) tern_buf_putc(&b, ',');
    tern_buf_put_json_str(&b, p->blocked[i], strlen(p->blocked[i]));
  }
  tern_buf_puts(&b, "]}");
  tern_http_json(req, 200, &b);
  tern_buf_free(&b);
}

static void block_change(tern_app *a, tern_http_req *req, tern_user *me, const char *raw, bool add) {
  char name[TERN_USERNAME_MAX + 1];
  if (!tern_username_normalize(raw, strlen(raw), name)) {
    tern_http_error(req, 404, "not_found", "there is no user by that name");
    return;
  }
  tern_user *other = tern_dir_user(a->dir, name);
  bool listed = false;
  tern_privacy cur = current(me);
  size_t at = 0;
  for (; at < cur.nblocked; at++) {
    int c = strcmp(cur.blocked[at], name);
    if (c >= 0) {
      listed = c == 0;
      break;
    }
  }
  if (add) {
    if (!other || other->pending) {
      if (!tern_api_catch_up(a, req)) tern_http_error(req, 404, "not_found", "there is no user by that name");
      return;
    }
    if (other == me) {
      tern_http_error(req, 400, "bad_request", "you cannot block yourself");
      return;
    }
    if (listed) {
      tern_http_respond(req, 204, NULL, NULL, NULL, 0); /* already blocked */
      return;
    }
    if (cur.nblocked >= TERN_PRIVACY_MAX_BLOCKS) {
      tern_http_error(req, 413, "too_large", "you have blocked 10000 users already");
      return;
    }
  } else if (!listed) {
    tern_http_respond(req, 204, NULL, NULL, NULL, 0); /* not blocked: nothing to undo */
    return;
  }
  /* the next list: one name in or out, still sorted */
  tern_privacy next = cur;
  char **list = tern_malloc((cur.nblocked + 1) * sizeof *list);
  size_t n = 0;
  for (size_t i = 0; i < at; i++) list[n++] = cur.blocked[i];
  if (add) list[n++] = name;
  for (size_t i = add ? at : at + 1; i < cur.nblocked; i++) list[n++] = cur.blocked[i];
  next.blocked = list;
  next.nblocked = n;
  store(a, req, me, &next);
  tern_free(list);
}

static void privacy_get(tern_http_req *req, const tern_user *me) {
  tern_privacy p = current(me);
  char body[96];
  snprintf(body, sizeof body, "{\"last_seen\":\"%s\",\"read_receipts\":%s}", p.last_seen_nobody ? "nobody" : "everyone",
           p.read_receipts_off ? "false" : "true");
  tern_http_respond(req, 200, NULL, "application/json", body, strlen(body));
}

static void privacy_patch(tern_app *a, tern_http_req *req, tern_user *me) {
  tern_wire_doc doc;
  cJSON *j = tern_api_json_body(req, &doc);
  if (!j) return;
  tern_privacy next = current(me);
  const cJSON *ls = cJSON_GetObjectItemCaseSensitive(j, "last_seen");
  const cJSON *rr = cJSON_GetObjectItemCaseSensitive(j, "read_receipts");
  bool bad = false;
  if (ls) {
    if (cJSON_IsString(ls) && !strcmp(ls->valuestring, "everyone")) next.last_seen_nobody = false;
    else if (cJSON_IsString(ls) && !strcmp(ls->valuestring, "nobody")) next.last_seen_nobody = true;
    else bad = true;
  }
  if (rr) {
    if (cJSON_IsBool(rr)) next.read_receipts_off = !cJSON_IsTrue(rr);
    else bad = true;
  }
  tern_wire_doc_free(&doc);
  if (bad) {
    tern_http_error(req, 400, "bad_request", "last_seen is \"everyone\" or \"nobody\"; read_receipts is true or false");
    return;
  }
  tern_privacy cur = current(me);
  if (me->privacy && next.last_seen_nobody == cur.last_seen_nobody && next.read_receipts_off == cur.read_receipts_off) {
    tern_http_respond(req, 204, NULL, NULL, NULL, 0); /* nothing changes */
    return;
  }
  store(a, req, me, &next);
}

static void mutes_list(tern_http_req *req, const tern_user *me) {
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"mutes\":[");
  const tern_privacy *p = me->privacy;
  int64_t now = tern_now_ms();
  bool first = true;
  for (size_t i = 0; p && i < p->nmutes; i++) {
    const tern_mute *m = &p->mutes[i];
    if (m->until && m->until <= now) continue; /* over */
    if (!first) tern_buf_putc(&b, ',');
    first = false;
    tern_buf_puts(&b, m->kind == 'u' ? "{\"user\":" : "{\"group_id\":");
    tern_buf_put_json_str(&b, m->name, strlen(m->name));
    tern_buf_puts(&b, ",\"until\":");
    if (m->until) tern_buf_put_i64(&b, m->until);
    else tern_buf_puts(&b, "null");
    tern_buf_putc(&b, '}');
  }
  tern_buf_puts(&b, "]}");
  tern_http_json(req, 200, &b);
  tern_buf_free(&b);
}

/* PUT (with {"until":MS|null}) or DELETE a mute of a user's 1:1 messages or of a group. */
static void mute_change(tern_app *a, tern_http_req *req, tern_user *me, char kind, const char *raw, bool put) {
  char name[TERN_GROUP_ID_MAX + TERN_USERNAME_MAX + 1];
  if (kind == 'u') {
    if (!tern_username_normalize(raw, strlen(raw), name)) {
      tern_http_error(req, 404, "not_found", "there is no user by that name");
      return;
    }
    tern_user *u = tern_dir_user(a->dir, name);
    if (put && (!u || u->pending)) {
      if (!tern_api_catch_up(a, req)) tern_http_error(req, 404, "not_found", "there is no user by that name");
      return;
    }
  } else {
    snprintf(name, sizeof name, "%s", raw);
    tern_group *g = tern_groups_get(a->groups, name);
    if (put && (!g || !tern_group_member(g, me))) {
      if (!tern_api_catch_up(a, req)) tern_http_error(req, 404, "not_found", "no such group");
      return;
    }
  }
  int64_t until = 0;
  if (put) {
    tern_wire_doc doc;
    cJSON *j = tern_api_json_body(req, &doc);
    if (!j) return;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "until");
    bool ok = !u || cJSON_IsNull(u) || (cJSON_IsNumber(u) && u->valuedouble >= 1 && u->valuedouble <= 9.0e15);
    if (ok && cJSON_IsNumber(u)) until = (int64_t)u->valuedouble;
    tern_wire_doc_free(&doc);
    if (!ok) {
      tern_http_error(req, 400, "bad_request", "until is a time in ms, or null for forever");
      return;
    }
  }
  tern_privacy next = current(me);
  tern_mute *list = tern_malloc((next.nmutes + 1) * sizeof *list);
  size_t n = 0;
  bool found = false;
  for (size_t i = 0; i < next.nmutes; i++) {
    tern_mute m = next.mutes[i];
    if (m.kind == kind && !strcmp(m.name, name)) {
      found = true;
      if (!put) continue;
      m.until = until;
    }
    list[n++] = m;
  }
  if (put && !found) {
    if (n >= TERN_PRIVACY_MAX_MUTES) {
      tern_free(list);
      tern_http_error(req, 413, "too_large", "you have muted 10000 conversations already");
      return;
    }
    list[n++] = (tern_mute){.kind = kind, .name = name, .until = until};
  }
  if (!put && !found) {
    tern_free(list);
    tern_http_respond(req, 204, NULL, NULL, NULL, 0); /* not muted: nothing to undo */
    return;
  }
  next.mutes = list;
  next.nmutes = n;
  store(a, req, me, &next);
  tern_free(list);
}

static void method_not_allowed(tern_http_req *req) {
  tern_http_error(req, 405, "method_not_allowed", "that method is not allowed on this path");
}

static bool is(const tern_http_req *req, const char *m) { return strcmp(req->method, m) == 0; }

void tern_privacy_route(tern_app *a, tern_http_req *req) {
  tern_device *dev = tern_api_authenticate(a, req);
  if (!dev) return;
  tern_user *me = dev->user;
  const char *p = req->path;
  if (!strcmp(p, "/v1/privacy")) {
    if (is(req, "GET")) privacy_get(req, me);
    else if (is(req, "PATCH")) privacy_patch(a, req, me);
    else method_not_allowed(req);
  } else if (!strcmp(p, "/v1/mutes")) {
    if (is(req, "GET")) mutes_list(req, me);
    else method_not_allowed(req);
  } else if (!strncmp(p, "/v1/mutes/", 10) && p[10]) {
    const char *rest = p + 10;
    char kind = 'u';
    if (!strncmp(rest, "group/", 6)) {
      kind = 'g';
      rest += 6;
    }
    if (!*rest || strchr(rest, '/')) {
      tern_http_error(req, 404, "not_found", "no such endpoint");
    } else if (is(req, "PUT")) {
      mute_change(a, req, me, kind, rest, true);
    } else if (is(req, "DELETE")) {
      mute_change(a, req, me, kind, rest, false);
    } else {
      method_not_allowed(req);
    }
  } else if (!strcmp(p, "/v1/blocks")) {
    if (is(req, "GET")) blocks_list(req, me);
    else method_not_allowed(req);
  } else if (!strncmp(p, "/v1/blocks/", 11) && p[11] && !strchr(p + 11, '/')) {
    if (is(req, "PUT")) block_change(a, req, me, p + 11, true);
    else if (is(req, "DELETE")) block_change(a, req, me, p + 11, false);
    else method_not_allowed(req);
  } else {
    tern_http_error(req, 404, "not_found", "no such endpoint");
  }
}
