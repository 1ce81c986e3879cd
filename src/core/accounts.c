/* accounts: register, login, logout, /v1/me and /v1/users/{name} (accounts.h). */
#include "core/accounts.h"
#include "core/cluster.h"
#include "core/mediaglue.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/api.h"
#include "core/limits.h"
#include "media/media.h"
#include "core/router.h"
#include "core/groups.h"
#include "core/privacy.h"
#include "core/presence.h"
#include "core/profile.h"
#include "core/pushglue.h"
#include "core/session.h"
#include "net/server.h"
#include "push/push.h"

#define PASSWORD_MIN 8
#define PASSWORD_MAX 1024

/* A request waiting for the threadpool or the store. */
typedef struct pending {
  uv_work_t work;         /* threadpool job */
  tern_app *app;          /* owner */
  tern_http_req *req;     /* answered when done */
  tern_conn *conn;        /* referenced while pending */
  char user[TERN_USERNAME_MAX + 1];
  char *password;         /* wiped and freed after hashing */
  char *label;
  char *hash;             /* register: the new hash; login: a copy of the stored one */
  char token[48];         /* the new device's bearer token */
  char device_id[TERN_DEVICE_ID_LEN + 1];
  char tried[TERN_USERNAME_MAX + 1]; /* login: the name tried (limits.login_fail counts it) */
  tern_ip ip;             /* the client's address */
  bool have_ip;
  bool ok;                /* threadpool result */
  uv_work_cb work_cb;     /* the hash job and its completion, while it waits for a turn */
  uv_after_work_cb after_cb;
  struct pending *next_waiting;
} pending;

/* ---- the hash queue ----
 * Argon2id is memory-hard by design: unbounded, 40 logins at once took RSS from 48 to 308 MiB.
 * At most auth.max_concurrent_hashes run on the threadpool; up to auth.hash_queue more wait
 * their turn in order; past that the answer is 503 with Retry-After (PROTOCOL.md 14). */

static unsigned max_hashes(const tern_app *a) {
  if (a->cfg->auth_max_concurrent_hashes > 0) return (unsigned)a->cfg->auth_max_concurrent_hashes;
  const char *e = getenv("UV_THREADPOOL_SIZE"); /* libuv's own knob, read once by libuv too */
  int n = e ? atoi(e) : 0;
  return n > 0 ? (unsigned)n : 4; /* libuv's default */
}

/* Whether one more hash may be started or queued now; counts the refusal. */
static bool hash_admit(tern_app *a, tern_http_req *req) {
  if (a->hashes_running < max_hashes(a) || a->hashes_waiting < (size_t)a->cfg->auth_hash_queue) return true;
  tern_limits_count(a->limits, TERN_LIMIT_HASH_QUEUE);
  tern_api_retry_later(req, 503, "unavailable", "too many password checks are waiting; try again in a moment", 1);
  return false;
}

static void hash_after(uv_work_t *w, int status);

static void hash_start(tern_app *a, pending *p) {
  a->hashes_running++;
  uv_queue_work(a->loop, &p->work, p->work_cb, hash_after);
}

static void hash_after(uv_work_t *w, int status) {
  pending *p = w->data;
  tern_app *a = p->app;
  a->hashes_running--;
  p->after_cb(w, status); /* may free p */
  while (a->hashes_running < max_hashes(a) && a->hash_waiting) {
    pending *n = a->hash_waiting;
    a->hash_waiting = n->next_waiting;
    if (!a->hash_waiting) a->hash_waiting_tail = NULL;
    a->hashes_waiting--;
    hash_start(a, n);
  }
}

/* Runs work then after on the threadpool, now or when a turn comes (hash_admit said yes). */
static void hash_submit(tern_app *a, pending *p, uv_work_cb work, uv_after_work_cb after) {
  p->work_cb = work;
  p->after_cb = after;
  if (a->hashes_running < max_hashes(a)) {
    hash_start(a, p);
    return;
  }
  p->next_waiting = NULL;
  if (a->hash_waiting_tail) ((pending *)a->hash_waiting_tail)->next_waiting = p;
  else a->hash_waiting = p;
  a->hash_waiting_tail = p;
  a->hashes_waiting++;
}

/* The client address and limits.auth_rate_per_ip, for a register or login. */
static bool auth_admit(tern_app *a, tern_http_req *req, tern_ip *ip, bool *have_ip) {
  bool via;
  int retry = 1;
  *have_ip = tern_limits_client(a->limits, req, ip, &via);
  if (!*have_ip || tern_limits_auth_attempt(a->limits, ip, &retry)) return true;
  tern_api_retry_later(req, 429, "rate_limited", "too many register or login attempts from your address; try again later",
                       retry);
  return false;
}

static void pending_free(pending *p) {
  if (p->password) {
    sodium_memzero(p->password, strlen(p->password));
    tern_free(p->password);
  }
  tern_free(p->label);
  tern_free(p->hash);
  sodium_memzero(p->token, sizeof p->token);
  tern_conn_unref(p->conn);
  tern_free(p);
}

static pending *pending_new(tern_app *a, tern_http_req *req) {
  pending *p = TERN_NEW(pending);
  p->app = a;
  p->req = req;
  p->conn = req->conn;
  tern_conn_ref(p->conn);
  p->work.data = p;
  return p;
}

static void credentials_body(tern_buf *b, const char *user, const char *device_id, const char *token) {
  tern_buf_puts(b, "{\"user\":");
  tern_buf_put_json_str(b, user, strlen(user));
  tern_buf_puts(b, ",\"device_id\":");
  tern_buf_put_json_str(b, device_id, strlen(device_id));
  tern_buf_puts(b, ",\"token\":");
  tern_buf_put_json_str(b, token, strlen(token));
  tern_buf_puts(b, "}");
}

/* Reads username/password/device from a register or login body. Returns false after
 * answering when they are malformed (register: 400; login: 401, same as wrong credentials). */
static bool read_credentials(tern_http_req *req, cJSON *j, bool login, char user[TERN_USERNAME_MAX + 1],
                             const char **password, const char **label) {
  const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "username");
  const cJSON *pw = cJSON_GetObjectItemCaseSensitive(j, "password");
  const cJSON *dv = cJSON_GetObjectItemCaseSensitive(j, "device");
  if (!cJSON_IsString(u) || !cJSON_IsString(pw) || (dv && !cJSON_IsString(dv) && !cJSON_IsNull(dv))) {
    tern_http_error(req, 400, "bad_request", "username and password must be strings, device an optional string");
    return false;
  }
  *label = cJSON_IsString(dv) ? dv->valuestring : "";
  if (strlen(*label) > TERN_DEVICE_LABEL_MAX) {
    tern_http_error(req, 400, "bad_request", "the device label is longer than 64 characters");
    return false;
  }
  size_t pl = strlen(pw->valuestring);
  bool name_ok = tern_username_normalize(u->valuestring, strlen(u->valuestring), user);
  if (login) {
    if (!name_ok || pl < 1 || pl > PASSWORD_MAX) {
      tern_http_error(req, 401, "bad_credentials", "wrong username or password");
      return false;
    }
  } else {
    if (!name_ok) {
      tern_http_error(req, 400, "bad_request", "a username is 3 to 32 characters of a-z, 0-9, _ . -");
      return false;
    }
    if (pl < PASSWORD_MIN || pl > PASSWORD_MAX) {
      tern_http_error(req, 400, "bad_request", "a password is 8 to 1024 bytes");
      return false;
    }
  }
  *password = pw->valuestring;
  return true;
}

/* ---- register ---- */

static void hash_work(uv_work_t *w) {
  pending *p = w->data;
  char out[crypto_pwhash_STRBYTES];
  p->ok = crypto_pwhash_str(out, p->password, strlen(p->password), p->app->pwhash_ops, p->app->pwhash_mem) == 0;
  if (p->ok) p->hash = tern_strdup(out);
}

tern_store_op *tern_accounts_device_op(tern_device *d, tern_store_done_cb done, void *arg) {
  tern_op_record *op = tern_op_record_new(TERN_OP_PUT_DEVICE, done, arg);
  char *ser = d->push ? tern_push_reg_serialize(d->push, NULL) : NULL;
  tern_device_rec rec = {.device_id = d->id,
                         .user = d->user->name,
                         .label = d->label,
                         .push = ser,
                         .created = d->created,
                         .last_seen = d->last_seen};
  memcpy(rec.token_hash, d->token_hash, 32);
  tern_op_record_set_device(op, &rec);
  tern_free(ser);
  return &op->op;
}

/* The PUT_DEVICE of d, a new device (a registration's first, a login's). devices.max_per_user
 * is checked in the store, in the op's group, against the user's device index (store.h): a
 * directory learns another node's logins only through the feed, so two logins racing for the
 * last slot on two nodes both saw room in theirs (issue 12); the index's conditional write
 * lets one of them through. known[] seeds the index of a user who has none yet. A first device
 * (first) takes the user-level inbox along in the same op, so that a refused one leaves those
 * messages for the next device, and an accepted one gets them before any send can target it. */
static tern_store_op *new_device_op(tern_app *a, tern_device *d, bool first, tern_store_done_cb done, void *arg) {
  tern_op_record *op = tern_op_as_record(tern_accounts_device_op(d, done, arg));
  op->create = true;
  op->max_devices = (uint32_t)a->cfg->devices_max_per_user;
  for (tern_device *o = d->user->devices; o; o = o->next_in_user)
    if (o != d) tern_op_record_add_known(op, o->id);
  if (first) {
    char inbox[TERN_USER_INBOX_LEN];
    tern_store_set_str(&op->move_from, tern_user_inbox(inbox, d->user->name));
  }
  return &op->op;
}

static void answer_too_many_devices(tern_http_req *req) {
  tern_http_error(req, 403, "too_many_devices", "this user has reached devices.max_per_user; log out a device first");
}

static void on_register_stored(tern_store_op *op) {
  pending *p = op->arg;
  if (op->status != TERN_STORE_OK) {
    tern_api_store_error(p->req, op, "the account could not be stored");
  } else {
    tern_buf b = {0};
    credentials_body(&b, p->user, p->device_id, p->token);
    tern_http_json(p->req, 201, &b);
    tern_buf_free(&b);
    TERN_INFO("registered", "user=%s device=%s", p->user, p->device_id);
  }
  pending_free(p);
}

static void answer_taken(tern_http_req *req) { tern_http_error(req, 409, "username_taken", "that username is taken"); }

/* The user record is stored, if no other loop or node stored one by that name first (a create:
 * of two registrations racing on two nodes, exactly one wins); then its first device. */
static void on_user_created(tern_store_op *op) {
  pending *p = op->arg;
  tern_app *a = p->app;
  tern_user *u = tern_dir_user(a->dir, p->user);
  if (op->status == TERN_STORE_OK && u && u->pending) {
    u->pwhash = p->hash;
    p->hash = NULL;
    u->created = tern_op_as_record(op)->user.created;
    u->pending = false;
    tern_device *d = tern_dir_add_device(a->dir, u, p->label, p->token);
    snprintf(p->device_id, sizeof p->device_id, "%s", d->id);
    tern_app_submit(a, new_device_op(a, d, false, on_register_stored, p));
    return;
  }
  /* Taken elsewhere: the winner's record reached this loop already (sync.c then made the
   * reserved entry theirs) or will; a reservation still ours goes. */
  if (u && u->pending) tern_dir_remove_user(a->dir, u);
  if (op->status == TERN_STORE_DUPLICATE) answer_taken(p->req);
  else tern_api_store_error(p->req, op, "the account could not be stored");
  pending_free(p);
}

static void after_hash(uv_work_t *w, int status) {
  pending *p = w->data;
  tern_app *a = p->app;
  tern_user *u = tern_dir_user(a->dir, p->user);
  if (u && !u->pending) { /* another node's registration of the name arrived meanwhile */
    answer_taken(p->req);
    pending_free(p);
    return;
  }
  if (!p->ok || status < 0 || !u) {
    if (u) tern_dir_remove_user(a->dir, u);
    tern_http_error(p->req, 500, "internal", "the password could not be hashed");
    pending_free(p);
    return;
  }
  tern_op_record *op = tern_op_record_new(TERN_OP_PUT_USER, on_user_created, p);
  tern_user_rec rec = {.user = u->name, .pwhash = p->hash, .created = tern_now_ms()};
  tern_op_record_set_user(op, &rec);
  op->create = true;
  tern_app_submit(a, &op->op);
}

void tern_accounts_register(tern_app *a, tern_http_req *req) {
  tern_ip ip;
  bool have_ip;
  if (!auth_admit(a, req, &ip, &have_ip)) return;
  tern_wire_doc doc;
  cJSON *j = tern_api_json_body(req, &doc);
  if (!j) return;
  char user[TERN_USERNAME_MAX + 1];
  const char *password, *label;
  if (!read_credentials(req, j, false, user, &password, &label)) {
    tern_wire_doc_free(&doc);
    return;
  }
  if (tern_dir_user(a->dir, user) || tern_accounts_held(a, user)) {
    tern_wire_doc_free(&doc);
    answer_taken(req);
    return;
  }
  if (!hash_admit(a, req)) {
    tern_wire_doc_free(&doc);
    return;
  }
  tern_user *u = tern_dir_add_user(a->dir, user);
  u->pending = true; /* reserves the name while the hash is computed */
  pending *p = pending_new(a, req);
  snprintf(p->user, sizeof p->user, "%s", user);
  p->password = tern_strdup(password);
  p->label = tern_strdup(label);
  tern_wire_doc_free(&doc);
  hash_submit(a, p, hash_work, after_hash);
}

/* ---- login ---- */

static void verify_work(uv_work_t *w) {
  pending *p = w->data;
  p->ok = p->hash && crypto_pwhash_str_verify(p->hash, p->password, strlen(p->password)) == 0;
}

static void on_login_stored(tern_store_op *op) {
  pending *p = op->arg;
  if (op->status == TERN_STORE_FULL) {
    /* Another node's login took the last slot first: the device was never stored. It leaves
     * this directory, and what sends from here put in its inbox meanwhile goes where they
     * would go now (the winners' devices may not have reached this directory yet). */
    tern_device *d = tern_dir_device(p->app->dir, p->device_id);
    if (d && !d->removed) {
      tern_user *u = d->user;
      tern_accounts_forget_device(p->app, d);
      tern_app_submit(p->app, tern_accounts_leftovers_op(p->app, u, p->device_id));
    }
    answer_too_many_devices(p->req);
    TERN_INFO("login refused: too many devices", "user=%s", p->user);
  } else if (op->status != TERN_STORE_OK) {
    tern_api_store_error(p->req, op, "the device could not be stored");
  } else {
    tern_buf b = {0};
    credentials_body(&b, p->user, p->device_id, p->token);
    tern_http_json(p->req, 200, &b);
    tern_buf_free(&b);
    TERN_INFO("logged in", "user=%s device=%s", p->user, p->device_id);
  }
  pending_free(p);
}

static void after_verify(uv_work_t *w, int status) {
  pending *p = w->data;
  tern_app *a = p->app;
  tern_user *u = tern_dir_user(a->dir, p->user);
  if (!p->ok || status < 0 || !u || u->pending) {
    if (status >= 0 && p->have_ip) tern_limits_login_failed(a->limits, p->tried, &p->ip);
    tern_http_error(p->req, 401, "bad_credentials", "wrong username or password");
    pending_free(p);
    return;
  }
  /* The directory's count refuses at once what it already knows is too many; the store's
   * index (new_device_op) has the last word, for what this directory has not learned yet. */
  if (u->ndevices >= a->cfg->devices_max_per_user) {
    answer_too_many_devices(p->req);
    pending_free(p);
    return;
  }
  /* Messages that waited in the user-level inbox go to a first device, in its PUT_DEVICE: that
   * op is queued before any send can target the device, so their seqs come first. */
  bool first = u->ndevices == 0;
  tern_device *d = tern_dir_add_device(a->dir, u, p->label, p->token);
  snprintf(p->device_id, sizeof p->device_id, "%s", d->id);
  tern_app_submit(a, new_device_op(a, d, first, on_login_stored, p));
}

void tern_accounts_login(tern_app *a, tern_http_req *req) {
  /* On a shared store a login first catches up with the feed, then runs again: the password,
   * the devices and the account itself may have changed on another node a moment ago, and an
   * old password must not log in there, nor a device past devices.max_per_user (PROTOCOL.md
   * 12: as on one node). Nothing is counted or parsed before. */
  if (req->reruns == 0 && tern_api_catch_up(a, req)) return;
  tern_ip ip;
  bool have_ip;
  if (!auth_admit(a, req, &ip, &have_ip)) return;
  tern_wire_doc doc;
  cJSON *j = tern_api_json_body(req, &doc);
  if (!j) return;
  char user[TERN_USERNAME_MAX + 1];
  const char *password, *label;
  if (!read_credentials(req, j, true, user, &password, &label)) {
    tern_wire_doc_free(&doc);
    return;
  }
  int retry = 1;
  if (have_ip && !tern_limits_login_allowed(a->limits, user, &ip, &retry)) {
    /* the same answer whether or not the name exists */
    tern_wire_doc_free(&doc);
    tern_api_retry_later(req, 429, "rate_limited", "too many failed logins for this username; try again later", retry);
    return;
  }
  if (!hash_admit(a, req)) {
    tern_wire_doc_free(&doc);
    return;
  }
  tern_user *u = tern_dir_user(a->dir, user);
  pending *p = pending_new(a, req);
  snprintf(p->user, sizeof p->user, "%s", user);
  snprintf(p->tried, sizeof p->tried, "%s", user);
  p->ip = ip;
  p->have_ip = have_ip;
  p->password = tern_strdup(password);
  p->label = tern_strdup(label);
  if (u && u->pwhash && !u->pending) {
    p->hash = tern_strdup(u->pwhash);
  } else {
    p->hash = tern_strdup(a->dummy_hash);
    p->user[0] = '\0'; /* no such user: verification result is ignored */
  }
  tern_wire_doc_free(&doc);
  hash_submit(a, p, verify_work, after_verify);
}

/* ---- logout, me, users ---- */

void tern_accounts_forget_device(tern_app *a, tern_device *d) {
  tern_pushglue_online(a, d); /* cancel a pending notification window */
  if (d->session) {
    tern_session *s = d->session;
    /* held across the close: an endpoint may report the connection gone from inside it
     * (net's lingering close does), which drops the endpoint's reference */
    tern_session_ref(s);
    tern_session_close(s, TERN_CLOSE_LOGGED_OUT);
    tern_session_detach(s); /* closing detached it already, unless the endpoint goes later */
    tern_session_unref(s);
  }
  tern_dir_remove_device(a->dir, d);
}

tern_store_op *tern_accounts_leftovers_op(tern_app *a, tern_user *u, const char *id) {
  bool live = tern_dir_user(a->dir, u->name) == u && !u->pending;
  tern_op_inbox *op = tern_op_inbox_new(live && !u->ndevices ? TERN_OP_MOVE_INBOX : TERN_OP_DEL_DEVICE, NULL, NULL);
  tern_store_set_str(&op->inbox, id);
  if (op->op.type == TERN_OP_MOVE_INBOX) {
    char inbox[TERN_USER_INBOX_LEN];
    tern_store_set_str(&op->inbox2, tern_user_inbox(inbox, u->name));
  }
  return &op->op;
}

tern_store_op *tern_accounts_delete_device(tern_app *a, tern_device *d) {
  tern_op_inbox *op = tern_op_inbox_new(TERN_OP_DEL_DEVICE, NULL, NULL);
  tern_store_set_str(&op->inbox, d->id);
  TERN_INFO("device deleted", "user=%s device=%s", d->user->name, d->id);
  tern_accounts_forget_device(a, d);
  return &op->op;
}

void tern_accounts_logout(tern_app *a, tern_http_req *req) {
  tern_device *d = tern_api_authenticate(a, req);
  if (!d) return;
  tern_api_submit_then_204(a, req, tern_accounts_delete_device(a, d), "the device could not be deleted");
}

/* DELETE /v1/devices/{id}: one of the caller's own devices goes, as its logout would (4002).
 * Another user's device, or none by that id, is the same 404: ids are not revealed. */
void tern_accounts_delete_device_route(tern_app *a, tern_http_req *req, const char *id) {
  tern_device *me = tern_api_authenticate(a, req);
  if (!me) return;
  tern_device *d = tern_dir_device(a->dir, id);
  if (!d || d->user != me->user || d->removed) {
    tern_http_error(req, 404, "not_found", "you have no device by that id");
    return;
  }
  tern_api_submit_then_204(a, req, tern_accounts_delete_device(a, d), "the device could not be deleted");
}

/* ---- password change: verify the old (a login's check), hash the new, store ---- */

typedef struct pwchange {
  pending p;            /* head: the hash queue's job */
  char *next;           /* the new password, wiped after hashing */
  char *next_hash;
} pwchange;

static void pw_hash_new(uv_work_t *w) {
  pwchange *c = w->data;
  char out[crypto_pwhash_STRBYTES];
  c->p.ok = crypto_pwhash_str(out, c->next, strlen(c->next), c->p.app->pwhash_ops, c->p.app->pwhash_mem) == 0;
  if (c->p.ok) c->next_hash = tern_strdup(out);
}

static void pwchange_free(pwchange *c) {
  if (c->next) {
    sodium_memzero(c->next, strlen(c->next));
    tern_free(c->next);
  }
  tern_free(c->next_hash);
  pending_free(&c->p); /* the head: frees c too */
}

static void on_pw_stored(tern_store_op *op) {
  pwchange *c = op->arg;
  tern_app *a = c->p.app;
  if (op->status != TERN_STORE_OK) {
    tern_api_store_error(c->p.req, op, "the new password could not be stored");
  } else {
    tern_user *u = tern_dir_user(a->dir, c->p.user);
    if (u) {
      tern_free(u->pwhash);
      u->pwhash = c->next_hash;
      c->next_hash = NULL;
    }
    tern_http_respond(c->p.req, 204, NULL, NULL, NULL, 0);
    TERN_INFO("password changed", "user=%s", c->p.user);
  }
  pwchange_free(c);
}

static void after_pw_new(uv_work_t *w, int status) {
  pwchange *c = w->data;
  tern_app *a = c->p.app;
  tern_user *u = tern_dir_user(a->dir, c->p.user);
  if (!c->p.ok || status < 0 || !u) {
    tern_http_error(c->p.req, 500, "internal", "the password could not be hashed");
    pwchange_free(c);
    return;
  }
  tern_op_record *op = tern_op_record_new(TERN_OP_PUT_USER, on_pw_stored, c);
  tern_user_rec rec = {.user = u->name, .pwhash = c->next_hash, .created = u->created, .last_seen = u->persisted_last_seen};
  tern_op_record_set_user(op, &rec);
  tern_app_submit(a, &op->op);
}

static void after_pw_verify(uv_work_t *w, int status) {
  pwchange *c = w->data;
  tern_app *a = c->p.app;
  if (!c->p.ok || status < 0) {
    if (status >= 0 && c->p.have_ip) tern_limits_login_failed(a->limits, c->p.user, &c->p.ip);
    tern_http_error(c->p.req, 401, "bad_credentials", "the old password is wrong");
    pwchange_free(c);
    return;
  }
  if (!hash_admit(a, c->p.req)) {
    pwchange_free(c);
    return;
  }
  hash_submit(a, &c->p, pw_hash_new, after_pw_new);
}

/* Starts checking the signed-in user's password (a password change, an account deletion): the
 * failed-login limit, the hash queue, then verify_work and after on the threadpool. ctx is a
 * zeroed struct of size bytes whose head is a pending; it is filled and submitted, or freed
 * after answering. Returns whether it was submitted. */
static bool check_own_password(tern_app *a, tern_http_req *req, tern_user *u, const char *password, void *ctx,
                               uv_after_work_cb after) {
  pending *p = ctx;
  tern_ip ip;
  bool via, have_ip = tern_limits_client(a->limits, req, &ip, &via);
  int retry = 1;
  if (have_ip && !tern_limits_login_allowed(a->limits, u->name, &ip, &retry)) {
    tern_api_retry_later(req, 429, "rate_limited", "too many failed password checks; try again later", retry);
    tern_free(ctx);
    return false;
  }
  if (!u->pwhash || !*u->pwhash) {
    tern_http_error(req, 401, "bad_credentials", "wrong password");
    tern_free(ctx);
    return false;
  }
  if (!hash_admit(a, req)) {
    tern_free(ctx);
    return false;
  }
  p->app = a;
  p->req = req;
  p->conn = req->conn;
  tern_conn_ref(p->conn);
  p->work.data = ctx;
  snprintf(p->user, sizeof p->user, "%s", u->name);
  p->password = tern_strdup(password);
  p->hash = tern_strdup(u->pwhash);
  p->ip = ip;
  p->have_ip = have_ip;
  hash_submit(a, p, verify_work, after);
  return true;
}

void tern_accounts_password(tern_app *a, tern_http_req *req) {
  tern_device *me = tern_api_authenticate(a, req);
  if (!me) return;
  tern_wire_doc doc;
  cJSON *j = tern_api_json_body(req, &doc);
  if (!j) return;
  const cJSON *old = cJSON_GetObjectItemCaseSensitive(j, "old");
  const cJSON *nw = cJSON_GetObjectItemCaseSensitive(j, "new");
  size_t nl = cJSON_IsString(nw) ? strlen(nw->valuestring) : 0;
  if (!cJSON_IsString(old) || !cJSON_IsString(nw)) {
    tern_wire_doc_free(&doc);
    tern_http_error(req, 400, "bad_request", "old and new must be strings");
    return;
  }
  if (nl < PASSWORD_MIN || nl > PASSWORD_MAX) {
    tern_wire_doc_free(&doc);
    tern_http_error(req, 400, "bad_request", "a password is 8 to 1024 bytes");
    return;
  }
  pwchange *c = TERN_NEW(pwchange);
  c->next = tern_strdup(nw->valuestring);
  char *next = c->next;
  if (!check_own_password(a, req, me->user, old->valuestring, c, after_pw_verify)) {
    sodium_memzero(next, strlen(next));
    tern_free(next);
  }
  tern_wire_doc_free(&doc);
}

/* ---- held names: a deleted account's name, for accounts.name_hold ---- */

bool tern_accounts_held(tern_app *a, const char *name) {
  int64_t *until = tern_map_gets(&a->held_names, name);
  return until && *until > tern_now_ms();
}

void tern_accounts_hold(tern_app *a, const char *name, int64_t deleted_at) {
  int64_t *until = tern_map_gets(&a->held_names, name);
  if (!until) {
    until = tern_malloc(sizeof *until);
    tern_map_puts(&a->held_names, name, until);
  }
  *until = deleted_at + a->cfg->accounts_name_hold_ms;
}

void tern_accounts_unhold(tern_app *a, const char *name) { tern_free(tern_map_dels(&a->held_names, name)); }

static bool collect_expired(const char *k, size_t kl, void *v, void *arg) {
  tern_buf *names = arg;
  if (*(int64_t *)v <= tern_now_ms()) {
    tern_buf_append(names, k, kl);
    tern_buf_putc(names, '\0');
  }
  return true;
}

void tern_accounts_sweep_held(tern_app *a) {
  tern_buf names = {0};
  tern_map_each(&a->held_names, collect_expired, &names);
  for (size_t i = 0; i < names.len;) {
    const char *n = names.data + i;
    /* the tombstone goes (any node may do it: deleting twice is harmless); the name is free */
    tern_op_record *op = tern_op_record_new(TERN_OP_DEL_USER, NULL, NULL);
    tern_user_rec rec = {.user = n};
    tern_op_record_set_user(op, &rec);
    tern_app_submit(a, &op->op);
    TERN_INFO("held name released", "user=%s", n);
    tern_accounts_unhold(a, n);
    i += strlen(n) + 1;
  }
  tern_buf_free(&names);
}

/* Everything of u this directory holds goes: devices (their sessions close with 4002), group
 * memberships in memory, privacy; the name is held. The user's struct is retired, not freed. */
void tern_accounts_forget_user(tern_app *a, tern_user *u, int64_t deleted_at) {
  while (u->devices) tern_accounts_forget_device(a, u->devices);
  while (u->ngroups) {
    bool gone;
    tern_store_op *op = tern_group_remove(a, u->groups[0], u, u, &gone); /* memory only here */
    tern_router_release_targets(tern_op_as_append(op));
    tern_store_op_free(op);
  }
  tern_privacy_free(u->privacy);
  u->privacy = NULL;
  tern_dir_retire_user(a->dir, u);
  tern_accounts_hold(a, u->name, deleted_at);
}

/* ---- DELETE /v1/me ---- */

typedef struct delete_ctx {
  pending p;           /* head: the password check */
  int64_t at;          /* when */
} delete_ctx;

static void on_leave_done(tern_store_op *op) {
  tern_app *a = op->arg;
  tern_router_release_targets(tern_op_as_append(op));
  const char *key = tern_op_as_append(op)->record_key;
  if (op->status == TERN_STORE_OK && key) tern_group_confirm(a, key + strlen("group/"), tern_group_op_rev(op));
  else if (op->status != TERN_STORE_OK)
    TERN_WARN("a deleted account's group leave was not stored", "record=%s status=%d", key ? key : "-", (int)op->status);
}

static void on_tombstone_stored(tern_store_op *op) {
  delete_ctx *c = op->arg;
  if (op->status != TERN_STORE_OK) tern_api_store_error(c->p.req, op, "the account could not be deleted");
  else tern_http_respond(c->p.req, 204, NULL, NULL, NULL, 0);
  pending_free(&c->p); /* the head: frees c too */
}

static void delete_account(tern_app *a, delete_ctx *c, tern_user *u) {
  TERN_INFO("account deleted", "user=%s devices=%d groups=%zu", u->name, u->ndevices, u->ngroups);
  /* Each step is its own store op; ops complete in order, so the 204 (after the tombstone)
   * means every earlier step is durable. The groups first: their events go out to the other
   * members while the user is still known. */
  while (u->ngroups) {
    bool gone;
    tern_store_op *op = tern_group_remove(a, u->groups[0], u, u, &gone);
    op->done = on_leave_done;
    op->arg = a;
    tern_app_submit(a, op);
  }
  tern_profile_forget(a, u); /* before the uploads: an avatar is never sent */
  tern_mediaglue_delete_unsent(a, u->name);
  char key[64];
  snprintf(key, sizeof key, "privacy/%s", u->name);
  tern_op_kv *pk = tern_op_kv_new(TERN_OP_KV_DEL, NULL, NULL);
  tern_store_set_str(&pk->key, key);
  tern_app_submit(a, &pk->op);
  while (u->devices) tern_app_submit(a, tern_accounts_delete_device(a, u->devices)); /* inbox, keys: the cascade */
  char inbox[TERN_USER_INBOX_LEN];
  tern_user_inbox(inbox, u->name);
  tern_op_inbox *ui = tern_op_inbox_new(TERN_OP_DEL_DEVICE, NULL, NULL);
  tern_store_set_str(&ui->inbox, inbox);
  tern_app_submit(a, &ui->op);
  /* The tombstone: the record stays, without a password, holding the name (a registration
   * racing on another node finds it and answers 409) until accounts.name_hold ends. */
  tern_op_record *op = tern_op_record_new(TERN_OP_PUT_USER, on_tombstone_stored, c);
  tern_user_rec rec = {.user = u->name, .pwhash = "", .created = u->created, .last_seen = 0, .deleted = c->at};
  tern_op_record_set_user(op, &rec);
  tern_app_submit(a, &op->op);
  tern_accounts_forget_user(a, u, c->at);
}

static void after_delete_verify(uv_work_t *w, int status) {
  delete_ctx *c = w->data;
  tern_app *a = c->p.app;
  tern_user *u = tern_dir_user(a->dir, c->p.user);
  if (!c->p.ok || status < 0 || !u) {
    if (status >= 0 && c->p.have_ip) tern_limits_login_failed(a->limits, c->p.user, &c->p.ip);
    tern_http_error(c->p.req, 401, "bad_credentials", "wrong password");
    pending_free(&c->p); /* the head: frees c too */
    return;
  }
  c->at = tern_now_ms();
  delete_account(a, c, u);
}

void tern_accounts_delete_me(tern_app *a, tern_http_req *req) {
  tern_device *me = tern_api_authenticate(a, req);
  if (!me) return;
  tern_wire_doc doc;
  cJSON *j = tern_api_json_body(req, &doc);
  if (!j) return;
  const cJSON *pw = cJSON_GetObjectItemCaseSensitive(j, "password");
  if (!cJSON_IsString(pw)) {
    tern_wire_doc_free(&doc);
    tern_http_error(req, 400, "bad_request", "password must be a string");
    return;
  }
  check_own_password(a, req, me->user, pw->valuestring, TERN_NEW(delete_ctx), after_delete_verify);
  tern_wire_doc_free(&doc);
}

static void put_ms_or_null(tern_buf *b, int64_t ms) {
  if (ms > 0) tern_buf_put_i64(b, ms);
  else tern_buf_puts(b, "null");
}

void tern_accounts_me_body(tern_app *a, tern_device *me, tern_buf *out) {
  tern_buf *b = out;
  tern_buf_puts(b, "{\"user\":");
  tern_buf_put_json_str(b, me->user->name, strlen(me->user->name));
  tern_buf_puts(b, ",\"device_id\":");
  tern_buf_put_json_str(b, me->id, strlen(me->id));
  tern_buf_puts(b, ",\"devices\":[");
  for (tern_device *d = me->user->devices; d; d = d->next_in_user) {
    if (d != me->user->devices) tern_buf_putc(b, ',');
    tern_buf_puts(b, "{\"device_id\":");
    tern_buf_put_json_str(b, d->id, strlen(d->id));
    tern_buf_puts(b, ",\"label\":");
    tern_buf_put_json_str(b, d->label, strlen(d->label));
    tern_buf_puts(b, ",\"last_seen\":");
    int64_t ls = d->last_seen;
    if (d->session && d->session->ep) ls = tern_session_last_rx(d->session);
    else if (tern_cluster_device_elsewhere(a, d)) ls = tern_now_ms(); /* connected on another worker or node */
    put_ms_or_null(b, ls);
    tern_buf_puts(b, "}");
  }
  tern_buf_puts(b, "]");
  tern_profile_put_json(b, me->user, me->user);
  tern_buf_puts(b, "}");
}

void tern_accounts_me(tern_app *a, tern_http_req *req) {
  tern_device *me = tern_api_authenticate(a, req);
  if (!me) return;
  tern_buf b = {0};
  tern_accounts_me_body(a, me, &b);
  tern_http_json(req, 200, &b);
  tern_buf_free(&b);
}

void tern_accounts_user(tern_app *a, tern_http_req *req, const char *raw) {
  tern_device *me = tern_api_authenticate(a, req);
  if (!me) return;
  char name[TERN_USERNAME_MAX + 1];
  tern_user *u = NULL;
  bool valid = tern_username_normalize(raw, strlen(raw), name);
  if (valid) u = tern_dir_user(a->dir, name);
  if (!u || u->pending) {
    if (valid && tern_api_catch_up(a, req)) return;
    tern_http_error(req, 404, "not_found", "there is no user by that name");
    return;
  }
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"user\":");
  tern_buf_put_json_str(&b, u->name, strlen(u->name));
  bool online;
  int64_t ls;
  tern_privacy_view(a, me->user, u, &online, &ls);
  tern_buf_puts(&b, online ? ",\"online\":true,\"last_seen\":" : ",\"online\":false,\"last_seen\":");
  put_ms_or_null(&b, online ? 0 : ls);
  tern_profile_put_json(&b, me->user, u);
  tern_buf_puts(&b, "}");
  tern_http_json(req, 200, &b);
  tern_buf_free(&b);
}

