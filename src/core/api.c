/* api: the HTTP route table and the helpers the HTTP endpoint modules share (api.h). */
#include "core/api.h"

#include "proto/wire.h"

#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/accounts.h"
#include "core/mediaglue.h"
#include "core/metrics.h"
#include "core/groupapi.h"
#include "core/limits.h"
#include "core/privacy.h"
#include "core/profile.h"
#include "core/keyapi.h"
#include "core/pushglue.h"
#include "core/router.h"
#include "net/server.h"
#include "net/webroot.h"

/* JSON endpoints take http.max_body; an image upload streams to the media sink instead. */
int64_t tern_api_body_limit(tern_app *a, tern_http_req *req) {
  if (strcmp(req->method, "POST") == 0 && strcmp(req->path, "/v1/media") == 0) return tern_mediaglue_body_limit(a, req);
  return a->cfg->http_max_body;
}

/* ---- catch-up: a miss may be a change another writer made a moment ago ---- */

typedef struct rerun_ctx {
  tern_app *app;
  tern_http_req *req;
  tern_conn *conn; /* referenced meanwhile */
} rerun_ctx;

static void on_caught_up(tern_store_op *op) {
  rerun_ctx *c = op->arg;
  if (op->status == TERN_STORE_OK && tern_conn_is_open(c->conn) && !c->app->stopping)
    tern_api_route(c->app, c->req);
  else /* answered (or, on a closed connection, just freed) without running it again */
    tern_http_error(c->req, 503, "unavailable", "the server cannot look that up right now; try again");
  tern_conn_unref(c->conn);
  tern_free(c);
}

static bool rerun(tern_app *a, tern_http_req *req, unsigned max) {
  if (req->reruns >= max || !req->conn || !tern_store_port_shared(a->port)) return false;
  req->reruns++;
  rerun_ctx *c = TERN_NEW(rerun_ctx);
  c->app = a;
  c->req = req;
  c->conn = req->conn;
  tern_conn_ref(c->conn);
  tern_app_submit(a, &tern_op_inbox_new(TERN_OP_CATCH_UP, on_caught_up, c)->op);
  return true;
}

bool tern_api_catch_up(tern_app *a, tern_http_req *req) { return rerun(a, req, 1); }
bool tern_api_retry(tern_app *a, tern_http_req *req) { return rerun(a, req, 4); }

tern_device *tern_api_authenticate(tern_app *a, tern_http_req *req) {
  tern_device *d = tern_dir_by_bearer(a->dir, req->authorization);
  if (!d && req->authorization && tern_api_catch_up(a, req)) return NULL;
  if (!d) tern_http_error(req, 401, "unauthorized", "a valid Authorization: Bearer token is required");
  return d;
}

cJSON *tern_api_json_parse(const char *body, size_t len, tern_wire_doc *doc, const char **why) {
  memset(doc, 0, sizeof *doc);
  char msg[96];
  /* The protocol's own parse: one object, no raw NUL, malformed escapes refused (cJSON alone
   * reads "\u12G4" as U+0000). A string holding U+0000 is refused whole: cut at its NUL it
   * could be taken for another ("abc\u0000def" registering as "abc"). */
  if (!len || !tern_utf8_valid(body, len) || tern_wire_parse(body, len, (size_t)-1, doc, msg, sizeof msg) < 0) {
    memset(doc, 0, sizeof *doc);
    *why = "the body must be a JSON object";
    return NULL;
  }
  if (doc->nul_escapes) {
    tern_wire_doc_free(doc);
    memset(doc, 0, sizeof *doc);
    *why = "strings may not contain U+0000";
    return NULL;
  }
  return doc->root;
}

cJSON *tern_api_json_body(tern_http_req *req, tern_wire_doc *doc) {
  const char *why;
  cJSON *j = tern_api_json_parse(req->body.data, req->body.len, doc, &why);
  if (!j) tern_http_error(req, 400, "bad_request", why);
  return j;
}

/* A request waiting for a store op. */
typedef struct wait_ctx {
  tern_http_req *req;     /* answered when the op completes */
  tern_conn *conn;        /* referenced meanwhile */
  int status;             /* the answer when it is durable */
  tern_buf body;          /* its JSON body (empty: none) */
  const char *fail;       /* the 500's sentence (static) */
} wait_ctx;

bool tern_api_cas_stored(tern_app *a, tern_http_req *req, tern_conn *conn, const tern_store_op *op, const char *what) {
  if (op->status == TERN_STORE_OK) return true;
  if (op->status == TERN_STORE_CONFLICT) {
    /* another writer changed it first: its record is on its way here, and the request runs
     * again on it (the catch-up waits for it) */
    TERN_INFO("a change lost a race, running it again", "what=%s", tern_log_quote(what));
    if (!tern_conn_is_open(conn) || !tern_api_retry(a, req)) {
      char msg[96];
      snprintf(msg, sizeof msg, "%s changed meanwhile; try again", what);
      tern_http_error(req, 409, "conflict", msg);
    }
    return false;
  }
  char msg[96];
  snprintf(msg, sizeof msg, "%s could not be stored", what);
  tern_api_store_error(req, op, msg);
  return false;
}

void tern_api_retry_later(tern_http_req *req, int status, const char *code, const char *message, int retry_s) {
  tern_buf b = {0};
  const char *ctype = tern_api_error_body(&b, status, code, message);
  char hdr[48];
  snprintf(hdr, sizeof hdr, "Retry-After: %d\r\n", retry_s > 0 ? retry_s : 1);
  tern_http_respond(req, status, hdr, ctype, b.data, b.len);
  tern_buf_free(&b);
}

void tern_api_store_error(tern_http_req *req, const tern_store_op *op, const char *fail_message) {
  if (op->status == TERN_STORE_UNAVAILABLE) /* PROTOCOL.md 12: nothing stored; the same request later may work */
    tern_http_error(req, 503, "unavailable", "the server cannot store anything right now; try again");
  else
    tern_http_error(req, 500, "internal", fail_message);
}

static void on_stored(tern_store_op *op) {
  wait_ctx *c = op->arg;
  if (op->type == TERN_OP_APPEND) tern_router_release_targets(tern_op_as_append(op));
  if (op->status != TERN_STORE_OK) tern_api_store_error(c->req, op, c->fail);
  else if (c->body.len) tern_http_json(c->req, c->status, &c->body);
  else tern_http_respond(c->req, c->status, NULL, NULL, NULL, 0);
  tern_conn_unref(c->conn);
  tern_buf_free(&c->body);
  tern_free(c);
}

void tern_api_submit_then(tern_app *a, tern_http_req *req, tern_store_op *op, int status, tern_buf *body,
                          const char *fail_message) {
  wait_ctx *c = TERN_NEW(wait_ctx);
  c->req = req;
  c->conn = req->conn;
  c->status = status;
  c->fail = fail_message;
  if (body) {
    c->body = *body;
    *body = (tern_buf){0};
  }
  tern_conn_ref(c->conn);
  op->done = on_stored;
  op->arg = c;
  tern_app_submit(a, op);
}

void tern_api_submit_then_204(tern_app *a, tern_http_req *req, tern_store_op *op, const char *fail_message) {
  tern_api_submit_then(a, req, op, 204, NULL, fail_message);
}

void tern_api_error_user(tern_http_req *req, int status, const char *code, const char *message, const char *user) {
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"error\":{\"code\":");
  tern_buf_put_json_str(&b, code, strlen(code));
  tern_buf_puts(&b, ",\"message\":");
  tern_buf_put_json_str(&b, message, strlen(message));
  tern_buf_puts(&b, ",\"user\":");
  tern_buf_put_json_str(&b, user, strlen(user));
  tern_buf_puts(&b, "}}");
  tern_http_json(req, status, &b);
  tern_buf_free(&b);
}

bool tern_api_ws_accept(tern_app *a, tern_http_req *req) {
  /* PROTOCOL.md 3: the one WebSocket endpoint. */
  if (strcmp(req->method, "GET") == 0 && strcmp(req->path, "/v1/ws") == 0) {
    /* through a trusted proxy, the connection counts against the client's address now */
    tern_ip ip;
    bool via = false;
    if (!tern_limits_client(a->limits, req, &ip, &via) || !via) return true;
    if (!tern_limits_ws_open(a->limits, &ip)) {
      req->refuse_status = 429;
      req->refuse_code = "rate_limited";
      req->refuse_message = "too many connections from your address; try again later";
      snprintf(req->refuse_headers, sizeof req->refuse_headers, "Retry-After: 1\r\n");
      return false;
    }
    tern_conn_set_counted_client(req->conn, &ip);
    return true;
  }
  req->refuse_status = 404;
  req->refuse_code = "not_found";
  req->refuse_message = "no WebSocket endpoint here; use GET /v1/ws";
  return false;
}

const char *tern_api_error_body(tern_buf *b, int status, const char *code, const char *message) {
  /* PROTOCOL.md 1's error object, for the net layer's own refusals too (code NULL: it knows
   * only the status). */
  if (!code)
    code = status == 413 || status == 431 ? "too_large"
           : status == 415                ? "unsupported_media_type"
           : status == 429                ? "rate_limited"
           : status == 408                ? "request_timeout"
           : status == 500                ? "internal"
                                          : "bad_request";
  tern_buf_puts(b, "{\"error\":{\"code\":");
  tern_buf_put_json_str(b, code, strlen(code));
  tern_buf_puts(b, ",\"message\":");
  tern_buf_put_json_str(b, message, strlen(message));
  tern_buf_puts(b, "}}");
  return "application/json";
}

static void do_metrics(tern_app *a, tern_http_req *req) {
  if (!tern_limits_metrics_ok(a->limits, req)) {
    tern_http_error(req, 403, "forbidden", "metrics are served only to the addresses in metrics.allow");
    return;
  }
  tern_buf b = {0};
  tern_metrics_render(a, &b);
  tern_http_respond(req, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
  tern_buf_free(&b);
}

static bool is(const tern_http_req *req, const char *method) { return strcmp(req->method, method) == 0; }

static void method_not_allowed(tern_http_req *req) {
  tern_http_error(req, 405, "method_not_allowed", "that method is not allowed on this path");
}

/* The caller's devices, privacy settings, blocks, mutes and groups. */
static bool reads_own_state(const char *p) {
  return !strcmp(p, "/v1/me") || !strcmp(p, "/v1/privacy") || !strcmp(p, "/v1/blocks") || !strcmp(p, "/v1/mutes") ||
         (!strncmp(p, "/v1/groups", 10) && (p[10] == '\0' || p[10] == '/'));
}

void tern_api_route(tern_app *a, tern_http_req *req) {
  const char *p = req->path;
  if (req->sink) { /* a streamed upload: its body went to the media sink, which answers */
    tern_mediaglue_route(a, req);
    return;
  }
  if (a->stopping) {
    tern_http_error(req, 503, "unavailable", "the server is shutting down");
    return;
  }
  /* A read of the caller's own account state on a shared store first catches up with the
   * feed, so that a change made through another node (or worker) a moment before shows: read
   * your writes, as on one node (PROTOCOL.md 12). `tern privacy last-seen nobody` set it on one
   * node and read the old value back from the other (CI). */
  if (is(req, "GET") && req->reruns == 0 && reads_own_state(p) && tern_api_catch_up(a, req)) return;
  if (!strcmp(p, "/healthz")) {
    if (!is(req, "GET") && !is(req, "HEAD")) return method_not_allowed(req);
    /* PROTOCOL.md 12: ok and degraded are 200 (the node serves), unavailable is 503. The
     * store answers from its last poll: this never blocks the loop. */
    char why[256];
    tern_store_health_state h = tern_store_health(a->store, why, sizeof why);
    tern_buf b = {0};
    tern_buf_puts(&b, h == TERN_HEALTH_OK ? "{\"status\":\"ok\"" : h == TERN_HEALTH_DEGRADED ? "{\"status\":\"degraded\"" : "{\"status\":\"unavailable\"");
    if (h != TERN_HEALTH_OK) {
      tern_buf_puts(&b, ",\"reason\":");
      tern_buf_put_json_str(&b, why, strlen(why));
    }
    tern_buf_putc(&b, '}');
    tern_http_respond(req, h == TERN_HEALTH_UNAVAILABLE ? 503 : 200, NULL, "application/json", b.data, b.len);
    tern_buf_free(&b);
  } else if (!strcmp(p, "/metrics")) {
    if (!is(req, "GET")) return method_not_allowed(req);
    do_metrics(a, req);
  } else if (!strcmp(p, "/v1/register")) {
    if (!is(req, "POST")) return method_not_allowed(req);
    tern_accounts_register(a, req);
  } else if (!strcmp(p, "/v1/login")) {
    if (!is(req, "POST")) return method_not_allowed(req);
    tern_accounts_login(a, req);
  } else if (!strcmp(p, "/v1/logout")) {
    if (!is(req, "POST")) return method_not_allowed(req);
    tern_accounts_logout(a, req);
  } else if (!strcmp(p, "/v1/me/password")) {
    if (!is(req, "POST")) return method_not_allowed(req);
    tern_accounts_password(a, req);
  } else if (!strncmp(p, "/v1/devices/", 12) && p[12] && !strchr(p + 12, '/')) {
    if (!is(req, "DELETE")) return method_not_allowed(req);
    tern_accounts_delete_device_route(a, req, p + 12);
  } else if (!strcmp(p, "/v1/me")) {
    if (is(req, "DELETE")) return tern_accounts_delete_me(a, req);
    if (is(req, "PATCH")) return tern_profile_patch(a, req);
    if (!is(req, "GET")) return method_not_allowed(req);
    tern_accounts_me(a, req);
  } else if (!strncmp(p, "/v1/users/", 10) && p[10] && !strchr(p + 10, '/')) {
    if (!is(req, "GET")) return method_not_allowed(req);
    tern_accounts_user(a, req, p + 10);
  } else if (!strcmp(p, "/v1/privacy") || !strncmp(p, "/v1/blocks", 10) || !strncmp(p, "/v1/mutes", 9)) {
    tern_privacy_route(a, req);
  } else if (!strncmp(p, "/v1/groups", 10) && (p[10] == '\0' || p[10] == '/')) {
    tern_groupapi_route(a, req);
  } else if (!strncmp(p, "/v1/keys", 8) && (p[8] == '\0' || p[8] == '/')) {
    tern_keyapi_route(a, req);
  } else if (!strncmp(p, "/v1/push", 8) && tern_pushglue_route(a, req)) {
    /* push registration answered */
  } else if (!strncmp(p, "/v1/media", 9) && tern_mediaglue_route(a, req)) {
    /* media answered (or will) */
  } else if (!strcmp(p, "/v1/ws")) {
    tern_http_error(req, 400, "bad_request", "this endpoint needs a WebSocket upgrade");
  } else if (strncmp(p, "/v1/", 4) != 0 && tern_web_handle(a->web, req)) {
    /* the static web client answered */
  } else {
    tern_http_error(req, 404, "not_found", "no such endpoint");
  }
}
