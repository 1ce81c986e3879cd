/* app: start-up, the store glue, timers and the shutdown sequence. */
#include "core/app.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/core.h"
#include "net/ws.h"

#define SHUTDOWN_GRACE_MS 5000 /* longest wait for clients to take their close frames */

void tern_app_submit(tern_app *a, tern_store_op *op) {
  a->ops_pending++;
  tern_store_submit(a->store, op);
}

void tern_app_op_done(tern_app *a) { a->ops_pending--; }

static void on_counted(tern_store_op *op) { tern_app_op_done(op->arg); }

void tern_app_persist_last_seen(tern_app *a, tern_user *u, tern_device *d) {
  if (u->last_seen == u->persisted_last_seen && !d) return;
  tern_store_op *op = tern_store_op_new(TERN_OP_SET_LAST_SEEN, on_counted, a);
  tern_store_op_set_str((char **)&op->user.user, u->name);
  op->user.last_seen = u->last_seen;
  if (d) {
    tern_store_op_set_str((char **)&op->device.device_id, d->id);
    op->device.last_seen = d->last_seen;
  }
  u->persisted_last_seen = u->last_seen;
  tern_app_submit(a, op);
}

/* ---- net handlers ---- */

static int64_t h_body_limit(tern_http_req *req, void *arg) { return tern_http_body_limit(arg, req); }
static void h_request(tern_http_req *req, void *arg) { tern_http_route(arg, req); }
static void h_ws_open(tern_conn *c, void *arg) { tern_session_open(arg, c); }
static void h_ws_text(tern_conn *c, const char *d, size_t n, void *arg) { tern_session_text(arg, c, d, n); }
static void h_ws_gone(tern_conn *c, void *arg) { tern_session_gone(arg, c); }
/* PROTOCOL.md 3: the one WebSocket endpoint. */
static bool h_ws_accept(tern_http_req *req, void *arg) {
  if (strcmp(req->method, "GET") == 0 && strcmp(req->path, "/v1/ws") == 0) return true;
  req->refuse_status = 404;
  req->refuse_code = "not_found";
  req->refuse_message = "no WebSocket endpoint here; use GET /v1/ws";
  return false;
}
/* PROTOCOL.md 1's error object, for net's own refusals too (code NULL: net knows the status). */
static const char *h_error_body(tern_buf *b, int status, const char *code, const char *message, void *arg) {
  if (!code) code = status == 413 || status == 431 ? "too_large" : status == 415 ? "unsupported_media_type"
                  : status == 429 ? "rate_limited" : status == 500 ? "internal" : "bad_request";
  tern_buf_puts(b, "{\"error\":{\"code\":");
  tern_buf_put_json_str(b, code, strlen(code));
  tern_buf_puts(b, ",\"message\":");
  tern_buf_put_json_str(b, message, strlen(message));
  tern_buf_puts(b, "}}");
  return "application/json";
}

/* ---- timers ---- */

static void on_pace(uv_timer_t *t) {
  tern_app *a = t->data;
  tern_session_pace(a);
}

void tern_app_pace_soon(tern_app *a) {
  if (!uv_is_active((uv_handle_t *)&a->pace_timer)) uv_timer_start(&a->pace_timer, on_pace, 5, 0);
}

static bool persist_one(const char *k, size_t kl, void *v, void *arg) {
  tern_app *a = arg;
  tern_user *u = v;
  if (u->online > 0) {
    u->last_seen = tern_user_last_seen(a, u);
    for (tern_device *d = u->devices; d; d = d->next_in_user)
      if (d->session && d->session->conn) d->last_seen = tern_conn_last_rx(d->session->conn);
    tern_app_persist_last_seen(a, u, NULL);
  }
  return true;
}

/* Last seen of connected users goes to the store at least every presence.persist_interval,
 * so that after a crash it is at most that stale. */
static void on_persist(uv_timer_t *t) {
  tern_app *a = t->data;
  tern_map_each(&a->users, persist_one, a);
}

typedef struct expiry_scan {
  int64_t now, limit;     /* ms */
  tern_device **found;    /* devices to delete */
  size_t n, cap;
} expiry_scan;

static bool find_expired(const char *k, size_t kl, void *v, void *arg) {
  expiry_scan *e = arg;
  tern_device *d = v;
  int64_t last = d->last_seen > d->created ? d->last_seen : d->created;
  if (!d->session && e->now - last > e->limit) {
    if (e->n == e->cap) {
      e->cap = e->cap ? e->cap * 2 : 16;
      e->found = tern_realloc(e->found, e->cap * sizeof *e->found);
    }
    e->found[e->n++] = d;
  }
  return true;
}

static void on_sweep(uv_timer_t *t) {
  tern_app *a = t->data;
  tern_store_op *op = tern_store_op_new(TERN_OP_SWEEP, on_counted, a);
  op->now = tern_now_ms();
  tern_app_submit(a, op);
  /* devices with no connection for devices.idle_expiry are deleted, as a logout would */
  expiry_scan e = {.now = tern_now_ms(), .limit = a->cfg->devices_idle_expiry_ms};
  tern_map_each(&a->devices, find_expired, &e);
  for (size_t i = 0; i < e.n; i++) {
    TERN_INFO("device expired", "device=%s user=%s", e.found[i]->id, e.found[i]->user->name);
    tern_app_delete_device(a, e.found[i], on_counted, a);
  }
  tern_free(e.found);
}

/* ---- shutdown ---- */

static uv_timer_t g_stop_timer;
static int64_t g_stop_deadline;

static void close_handles(tern_app *a) {
  uv_timer_stop(&a->persist_timer);
  uv_timer_stop(&a->sweep_timer);
  uv_timer_stop(&a->pace_timer);
  uv_close((uv_handle_t *)&a->persist_timer, NULL);
  uv_close((uv_handle_t *)&a->sweep_timer, NULL);
  uv_close((uv_handle_t *)&a->pace_timer, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
  uv_close((uv_handle_t *)&a->sigint, NULL);
  uv_close((uv_handle_t *)&g_stop_timer, NULL);
  tern_push_close(a->push);
  tern_mediaglue_close(a);
}

static void on_stop_tick(uv_timer_t *t) {
  tern_app *a = t->data;
  bool done = tern_net_idle(a->net) && a->ops_pending == 0;
  if (!done && tern_now_ms() < g_stop_deadline) return;
  if (!done) TERN_WARN("shutdown grace period over", "connections=%zu pending_ops=%lld", tern_net_connections(a->net), (long long)a->ops_pending);
  uv_timer_stop(t);
  close_handles(a);
  uv_stop(a->loop);
}

static void on_synced_for_stop(tern_store_op *op) {
  tern_app *a = op->arg;
  tern_app_op_done(a);
  /* Every send that arrived before the signal has been answered now (completions run in
   * order): close the connections, then wait for the store to take the last seen writes. */
  tern_net_close_all(a->net, TERN_WS_CLOSE_GOING_AWAY, "server shutting down");
  g_stop_deadline = tern_now_ms() + SHUTDOWN_GRACE_MS;
  uv_timer_start(&g_stop_timer, on_stop_tick, 10, 10);
}

static void on_signal(uv_signal_t *s, int signum) {
  tern_app *a = s->data;
  if (a->stopping) {
    TERN_WARN("second signal, exiting now", "signal=%d", signum);
    uv_stop(a->loop);
    a->exit_code = 1;
    return;
  }
  TERN_INFO("shutting down", "signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  a->stopping = true;
  tern_net_stop_listening(a->net);
  tern_store_op *op = tern_store_op_new(TERN_OP_SYNC, on_synced_for_stop, a);
  tern_app_submit(a, op);
}

/* ---- start-up ---- */

static void load_user(const tern_user_rec *r, void *arg) {
  tern_app *a = arg;
  tern_user *u = tern_dir_add_user(a, r->user);
  u->pwhash = tern_strdup(r->pwhash);
  u->created = r->created;
  u->last_seen = u->persisted_last_seen = r->last_seen;
}

static void load_device(const tern_device_rec *r, void *arg) {
  tern_app *a = arg;
  tern_user *u = tern_dir_user(a, r->user);
  if (!u) {
    TERN_WARN("device without user ignored", "device=%s user=%s", r->device_id, r->user);
    return;
  }
  tern_device *d = tern_dir_load_device(a, u, r->device_id, r->label, r->token_hash, r->created, r->last_seen);
  tern_pushglue_load(a, d, r->push);
}



/* KV keys of records the media store refused at load: deleted once the store takes ops. */
static tern_buf g_kv_doomed; /* NUL-separated keys */

/* KV records belong to the modules that wrote them; so far only media keeps its records there. */
static void load_kv(const char *key, size_t klen, const uint8_t *v, size_t vlen, void *arg) {
  tern_app *a = arg;
  if (tern_mediaglue_is_kv(key, klen)) {
    if (tern_media_load_record(a->media, v, vlen) == 0) return;
    TERN_WARN("media record refused, deleting it", "key=%.*s bytes=%zu", (int)klen, key, vlen);
    tern_buf_append(&g_kv_doomed, key, klen);
    tern_buf_putc(&g_kv_doomed, '\0');
    return;
  }
  TERN_DEBUG("kv record", "key=%.*s bytes=%zu", (int)klen, key, vlen);
}

static void on_media_recovered(tern_media *m, const tern_media_recover_stats *st, void *arg) {
  tern_app *a = arg;
  if (a->media) tern_media_start_sweeper(a->media);
}

static int set_hash_cost(tern_app *a, const tern_config *cfg) {
  const char *c = cfg->auth_hash_cost;
  if (!strcmp(c, "interactive")) {
    a->pwhash_ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    a->pwhash_mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
  } else if (!strcmp(c, "moderate")) {
    a->pwhash_ops = crypto_pwhash_OPSLIMIT_MODERATE;
    a->pwhash_mem = crypto_pwhash_MEMLIMIT_MODERATE;
  } else if (!strcmp(c, "sensitive")) {
    a->pwhash_ops = crypto_pwhash_OPSLIMIT_SENSITIVE;
    a->pwhash_mem = crypto_pwhash_MEMLIMIT_SENSITIVE;
  } else if (!strcmp(c, "test")) {
    if (!cfg->allow_insecure_test) {
      fprintf(stderr, "ternd: auth.hash_cost = test is only for test suites and benchmarks; "
                      "it needs --allow-insecure-test-settings\n");
      return -EINVAL;
    }
    a->pwhash_ops = crypto_pwhash_OPSLIMIT_MIN;
    a->pwhash_mem = crypto_pwhash_MEMLIMIT_MIN;
  } else {
    fprintf(stderr, "ternd: auth.hash_cost must be interactive, moderate, sensitive or test, not \"%s\"\n", c);
    return -EINVAL;
  }
  return 0;
}

static int mkdir_p(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      if (mkdir(tmp, 0700) < 0 && errno != EEXIST) return -errno;
      *p = '/';
    }
  }
  if (mkdir(tmp, 0700) < 0 && errno != EEXIST) return -errno;
  return 0;
}

int tern_app_run(const tern_config *cfg) {
  signal(SIGPIPE, SIG_IGN);
  if (sodium_init() < 0) {
    fprintf(stderr, "ternd: libsodium could not be initialised\n");
    return 2;
  }
  tern_log_level lvl;
  if (tern_log_parse_level(cfg->log_level, &lvl) < 0) {
    fprintf(stderr, "ternd: --log-level must be debug, info, warn or error, not \"%s\"\n", cfg->log_level);
    return 2;
  }
  tern_log_set_level(lvl);
  static tern_app app;
  tern_app *a = &app;
  memset(a, 0, sizeof *a);
  a->cfg = cfg;
  if (set_hash_cost(a, cfg) < 0) return 2;
  /* computed before the loop runs: hashing never happens on the loop thread */
  char pw[32];
  tern_random(pw, sizeof pw);
  if (crypto_pwhash_str(a->dummy_hash, pw, sizeof pw, a->pwhash_ops, a->pwhash_mem) != 0) {
    fprintf(stderr, "ternd: cannot compute an Argon2id hash (out of memory?)\n");
    return 2;
  }

  int rc = mkdir_p(cfg->data_dir);
  if (rc < 0) {
    fprintf(stderr, "ternd: cannot create data dir %s: %s\n", cfg->data_dir, strerror(-rc));
    return 2;
  }
  if (access(cfg->data_dir, W_OK | X_OK) != 0) {
    fprintf(stderr, "ternd: data dir %s is not writable: %s\n", cfg->data_dir, strerror(errno));
    return 2;
  }
  char store_dir[4096];
  snprintf(store_dir, sizeof store_dir, "%s/store", cfg->data_dir);

  uv_loop_t *loop = uv_default_loop();
  a->loop = loop;
  tern_store_options so = {
      .dir = store_dir,
      .max_open_files = (int)cfg->store_max_open_files,
      .group_max = (int)cfg->store_group_max,
      .cache_bytes = (size_t)cfg->store_cache_bytes,
      .inbox_max_envelopes = cfg->inbox_max_envelopes,
      .inbox_ttl_ms = cfg->inbox_ttl_ms,
      .dedup_ttl_ms = cfg->dedup_ttl_ms,
  };
  char err[512];
  rc = tern_store_open_rocksdb(loop, &so, &a->store, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "ternd: cannot open the store in %s: %s\n", store_dir, err);
    return 2;
  }
  /* The media store opens first: the store's load hands it the media records. */
  tern_media_options mo;
  tern_media_options_from_config(&mo, cfg);
  mo.persist = tern_mediaglue_persist(a);
  rc = tern_media_open(loop, &mo, &a->media, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "ternd: %s\n", err);
    tern_store_close(a->store);
    return 2;
  }
  tern_store_load_cbs cbs = {.user = load_user, .device = load_device, .kv = load_kv, .arg = a};
  if (tern_store_load(a->store, &cbs) < 0) {
    fprintf(stderr, "ternd: cannot read the store in %s\n", store_dir);
    tern_mediaglue_close(a);
    tern_store_close(a->store);
    return 2;
  }
  TERN_INFO("store opened", "dir=%s users=%zu devices=%zu envelopes=%lld", tern_log_quote(store_dir), a->users.count,
            a->devices.count, (long long)tern_store_inbox_total(a->store));

  const char *web_dir = cfg->web_dir && *cfg->web_dir ? cfg->web_dir : TERN_WEB_DIR;
  if (tern_web_load(web_dir, &a->web, err, sizeof err) < 0) {
    fprintf(stderr, "ternd: cannot load the web client from %s: %s\n", web_dir, err);
    tern_mediaglue_close(a);
    tern_store_close(a->store);
    tern_dir_free(a);
    return 2;
  }

  rc = tern_push_open(loop, cfg, &a->push, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "ternd: %s\n", err);
    tern_mediaglue_close(a);
    tern_store_close(a->store);
    tern_web_free(a->web);
    tern_dir_free(a);
    return 2;
  }
  tern_push_set_result_cb(a->push, tern_pushglue_result, a);
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) {
    if (tern_push_configured(a->push, (tern_push_provider)i))
      TERN_INFO("push provider on", "provider=%s", tern_push_provider_name((tern_push_provider)i));
  }

  tern_net_options no = {
      .listen = cfg->listen,
      .max_header = cfg->http_max_header,
      .max_body = cfg->http_max_body,
      .request_timeout_ms = cfg->http_request_timeout_ms,
      .ws_max_message = cfg->ws_max_message,
      .ws_max_outbound = cfg->ws_max_outbound,
      .ws_ping_interval_ms = cfg->ws_ping_interval_ms,
      .ws_idle_timeout_ms = cfg->ws_idle_timeout_ms,
      .ws_auth_timeout_ms = cfg->ws_auth_timeout_ms,
      .max_connections = cfg->http_max_connections,
      .ws_auth_close_code = 4001,
      .ws_idle_close_code = 4000,
  };
  tern_net_handlers nh = {.body_limit = h_body_limit, .on_request = h_request, .ws_accept = h_ws_accept,
                          .on_ws_open = h_ws_open, .on_ws_text = h_ws_text, .on_ws_gone = h_ws_gone,
                          .error_body = h_error_body, .arg = a};
  rc = tern_net_start(loop, &no, &nh, &a->net, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "ternd: %s\n", err);
    tern_push_close(a->push);
    tern_mediaglue_close(a);
    uv_run(loop, UV_RUN_NOWAIT);
    tern_store_close(a->store);
    tern_web_free(a->web);
    tern_dir_free(a);
    return 2;
  }

  uv_timer_init(loop, &a->persist_timer);
  a->persist_timer.data = a;
  uv_timer_start(&a->persist_timer, on_persist, (uint64_t)cfg->presence_persist_interval_ms,
                 (uint64_t)cfg->presence_persist_interval_ms);
  uv_timer_init(loop, &a->sweep_timer);
  a->sweep_timer.data = a;
  uv_timer_start(&a->sweep_timer, on_sweep, (uint64_t)cfg->store_sweep_interval_ms,
                 (uint64_t)cfg->store_sweep_interval_ms);
  uv_timer_init(loop, &a->pace_timer);
  a->pace_timer.data = a;
  uv_timer_init(loop, &g_stop_timer);
  g_stop_timer.data = a;
  uv_signal_init(loop, &a->sigterm);
  uv_signal_init(loop, &a->sigint);
  a->sigterm.data = a->sigint.data = a;
  uv_signal_start(&a->sigterm, on_signal, SIGTERM);
  uv_signal_start(&a->sigint, on_signal, SIGINT);

  /* Records the media store refused at load go; then disk and records are made to agree
   * (uploads may already run meanwhile), and the sweeper starts once they do. */
  for (size_t i = 0; i < g_kv_doomed.len;) {
    const char *k = g_kv_doomed.data + i;
    size_t kl = strlen(k);
    tern_mediaglue_drop_kv(a, k, kl);
    i += kl + 1;
  }
  tern_buf_free(&g_kv_doomed);
  if (tern_media_recover(a->media, on_media_recovered, a) != 0) tern_media_start_sweeper(a->media);

  TERN_INFO("listening", "addr=%s data_dir=%s", tern_net_addr(a->net), tern_log_quote(cfg->data_dir));
  uv_run(loop, UV_RUN_DEFAULT);

  tern_net_free(a->net);
  tern_store_close(a->store);
  uv_run(loop, UV_RUN_NOWAIT);
  tern_dir_free(a);
  tern_web_free(a->web);
  uv_loop_close(loop);
  TERN_INFO("stopped", "%s", "");
  return a->exit_code;
}
