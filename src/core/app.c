/* app: the per-loop core context: start-up load, the store glue, timers and the shutdown
 * sequence (app.h). The parts it works with are made and freed by the composition root. */
#include "core/app.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/accounts.h"
#include "core/api.h"
#include "core/cluster.h"
#include "core/profile.h"
#include "core/groups.h"
#include "core/limits.h"
#include "core/privacy.h"
#include "core/keyapi.h"
#include "core/mediaglue.h"
#include "core/pushglue.h"
#include "core/receipts.h"
#include "core/session.h"
#include "core/sync.h"
#include "core/wsjson.h"
#include "media/media.h"
#include "net/server.h"
#include "net/ws.h"
#include "push/push.h"

#define SHUTDOWN_GRACE_MS 5000 /* longest wait for clients to take their close frames */

void tern_app_submit(tern_app *a, tern_store_op *op) { tern_store_submit(a->port, op); }

void tern_app_persist_last_seen(tern_app *a, tern_user *u, tern_device *d) {
  if (u->last_seen == u->persisted_last_seen && !d) return;
  tern_op_record *op = tern_op_record_new(TERN_OP_SET_LAST_SEEN, NULL, NULL);
  tern_store_set_str((char **)&op->user.user, u->name);
  op->user.last_seen = u->last_seen;
  if (d) {
    tern_store_set_str((char **)&op->device.device_id, d->id);
    op->device.last_seen = d->last_seen;
  }
  u->persisted_last_seen = u->last_seen;
  tern_app_submit(a, &op->op);
}

/* ---- net handlers ---- */

static int64_t h_body_limit(tern_http_req *req, void *arg) { return tern_api_body_limit(arg, req); }
static void h_request(tern_http_req *req, void *arg) { tern_api_route(arg, req); }
static bool h_ws_accept(tern_http_req *req, void *arg) { return tern_api_ws_accept(arg, req); }
static const char *h_error_body(tern_buf *b, int status, const char *code, const char *message, void *arg) {
  return tern_api_error_body(b, status, code, message);
}

void tern_app_net_handlers(tern_app *a, tern_net_handlers *h) {
  *h = (tern_net_handlers){
      .body_limit = h_body_limit,
      .on_request = h_request,
      .ws_accept = h_ws_accept,
      .error_body = h_error_body,
      .on_ws_open = tern_wsjson_open,
      .on_ws_text = tern_wsjson_text,
      .on_ws_gone = tern_wsjson_gone,
      .arg = a,
  };
}

/* ---- timers ---- */

static void on_pace(uv_timer_t *t) { tern_session_pace(t->data); }

void tern_app_pace_soon(tern_app *a) { tern_app_pace_after(a, 5); }

void tern_app_pace_after(tern_app *a, uint64_t ms) {
  uv_timer_t *t = &a->pace_timer;
  /* one timer for every waiting session: it fires at the earliest time any of them asked for */
  if (uv_is_active((uv_handle_t *)t) && uv_timer_get_due_in(t) <= ms) return;
  uv_timer_start(t, on_pace, ms, 0);
}

static bool persist_one(tern_user *u, void *arg) {
  tern_app *a = arg;
  if (u->online > 0) {
    u->last_seen = tern_user_last_seen(a, u);
    for (tern_device *d = u->devices; d; d = d->next_in_user)
      if (d->session && d->session->ep) d->last_seen = tern_session_last_rx(d->session);
    tern_app_persist_last_seen(a, u, NULL);
  }
  return true;
}

/* Last seen of connected users goes to the store at least every presence.persist_interval,
 * so that after a crash it is at most that stale. */
static void on_persist(uv_timer_t *t) {
  tern_app *a = t->data;
  tern_dir_each_user(a->dir, persist_one, a);
}

typedef struct expiry_scan {
  tern_app *a;            /* the scanning worker */
  int64_t now, limit;     /* ms */
  tern_device **found;    /* devices to delete */
  size_t n, cap;
} expiry_scan;

static bool find_expired(tern_device *d, void *arg) {
  expiry_scan *e = arg;
  int64_t last = d->last_seen > d->created ? d->last_seen : d->created;
  if (!d->session && e->now - last > e->limit && !tern_cluster_device_elsewhere(e->a, d)) {
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
  tern_accounts_sweep_held(a);
  /* The process's limits, its store and its devices are swept once, by worker 0: the other
   * workers' copies of a device do not know that it is connected on another loop. */
  if (a->worker != 0) return;
  tern_limits_sweep(a->limits, tern_now_ms());
  tern_op_inbox *op = tern_op_inbox_new(TERN_OP_SWEEP, NULL, NULL);
  op->now = tern_now_ms();
  tern_app_submit(a, &op->op);
  /* devices with no connection for devices.idle_expiry are deleted, as a logout would */
  expiry_scan e = {.a = a, .now = tern_now_ms(), .limit = a->cfg->devices_idle_expiry_ms};
  tern_dir_each_device(a->dir, find_expired, &e);
  for (size_t i = 0; i < e.n; i++) {
    TERN_INFO("device expired", "device=%s user=%s", e.found[i]->id, e.found[i]->user->name);
    tern_app_submit(a, tern_accounts_delete_device(a, e.found[i]));
  }
  tern_free(e.found);
}

/* ---- shutdown ---- */

static void close_handles(tern_app *a) {
  uv_timer_stop(&a->persist_timer);
  uv_timer_stop(&a->sweep_timer);
  uv_timer_stop(&a->pace_timer);
  uv_timer_stop(&a->stop_timer);
  uv_close((uv_handle_t *)&a->persist_timer, NULL);
  uv_close((uv_handle_t *)&a->sweep_timer, NULL);
  uv_close((uv_handle_t *)&a->pace_timer, NULL);
  uv_close((uv_handle_t *)&a->stop_timer, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
  uv_close((uv_handle_t *)&a->sigint, NULL);
  tern_cluster_stop(a->cluster);
  a->timers_started = false;
}

static void on_stop_tick(uv_timer_t *t) {
  tern_app *a = t->data;
  int64_t pending = tern_store_port_pending(a->port);
  bool done = tern_net_idle(a->net) && pending == 0;
  if (!done && tern_now_ms() < a->stop_deadline) return;
  if (!done)
    TERN_WARN("shutdown grace period over", "connections=%zu pending_ops=%lld", tern_net_connections(a->net),
              (long long)pending);
  uv_timer_stop(t);
  if (a->push) tern_push_close(a->push);
  a->push = NULL;
  tern_mediaglue_close(a);
  close_handles(a);
  uv_stop(a->loop);
}

static void on_synced_for_stop(tern_store_op *op) {
  tern_app *a = op->arg;
  /* Every send that arrived before the signal has been answered now (completions run in
   * order): merged receipts go out, the connections close, then the store takes the last
   * seen writes. */
  tern_receipts_flush(a);
  tern_net_close_all(a->net, TERN_WS_CLOSE_GOING_AWAY, "server shutting down");
  a->stop_deadline = tern_now_ms() + SHUTDOWN_GRACE_MS;
  uv_timer_start(&a->stop_timer, on_stop_tick, 10, 10);
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
  tern_app_submit(a, &tern_op_inbox_new(TERN_OP_SYNC, on_synced_for_stop, a)->op);
}

/* ---- start-up ---- */

static int set_hash_cost(tern_app *a, const tern_config *cfg, char *err, size_t errlen) {
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
      snprintf(err, errlen, "auth.hash_cost = test is only for test suites and benchmarks; "
                            "it needs --allow-insecure-test-settings");
      return -EINVAL;
    }
    a->pwhash_ops = crypto_pwhash_OPSLIMIT_MIN;
    a->pwhash_mem = crypto_pwhash_MEMLIMIT_MIN;
  } else {
    snprintf(err, errlen, "auth.hash_cost must be interactive, moderate, sensitive or test, not \"%s\"", c);
    return -EINVAL;
  }
  return 0;
}

int tern_app_new(const tern_config *cfg, uv_loop_t *loop, unsigned worker, tern_store *store, tern_app **out,
                 char *err, size_t errlen) {
  *out = NULL;
  tern_app *a = TERN_NEW(tern_app);
  a->cfg = cfg;
  a->loop = loop;
  a->worker = worker;
  a->store = store;
  int r = set_hash_cost(a, cfg, err, errlen);
  if (r < 0) {
    tern_free(a);
    return r;
  }
  if ((r = tern_limits_new(cfg, &a->limits, err, errlen)) < 0) {
    tern_free(a);
    return r;
  }
  a->own_limits = true;
  /* computed before the loop runs: hashing never happens on the loop thread */
  char pw[32];
  tern_random(pw, sizeof pw);
  if (crypto_pwhash_str(a->dummy_hash, pw, sizeof pw, a->pwhash_ops, a->pwhash_mem) != 0) {
    snprintf(err, errlen, "cannot compute an Argon2id hash (out of memory?)");
    tern_limits_free(a->limits);
    tern_free(a);
    return -ENOMEM;
  }
  r = tern_store_port_new(store, loop, &a->port, err, errlen);
  if (r < 0) {
    tern_limits_free(a->limits);
    tern_free(a);
    return r;
  }
  a->dir = tern_dir_new_memory();
  a->groups = tern_groups_new();
  a->cluster = tern_cluster_new(a);
  tern_idgen_init(&a->ids, worker);
  uv_timer_init(loop, &a->persist_timer);
  uv_timer_init(loop, &a->sweep_timer);
  uv_timer_init(loop, &a->pace_timer);
  uv_timer_init(loop, &a->stop_timer);
  a->persist_timer.data = a->sweep_timer.data = a->pace_timer.data = a->stop_timer.data = a;
  uv_signal_init(loop, &a->sigterm);
  uv_signal_init(loop, &a->sigint);
  a->sigterm.data = a->sigint.data = a;
  a->timers_started = true; /* the handles exist: close_handles closes them */
  *out = a;
  return 0;
}

void tern_app_join(tern_app *a, tern_app_group *g) {
  if (a->own_limits) tern_limits_free(a->limits);
  a->own_limits = false;
  a->limits = g->limits;
  a->group = g;
}

static void load_user(const tern_user_rec *r, void *arg) {
  tern_app *a = arg;
  if (!tern_dir_user_rec_ok(r)) {
    TERN_WARN("user record refused", "user=%s", tern_log_quote(r->user));
    return;
  }
  if (r->deleted) { /* a deleted account's tombstone: only its name is held */
    tern_accounts_hold(a, r->user, r->deleted);
    return;
  }
  tern_user *u = tern_dir_add_user(a->dir, r->user);
  u->pwhash = tern_strdup(r->pwhash);
  u->created = r->created;
  u->last_seen = u->persisted_last_seen = r->last_seen;
}

static void load_device(const tern_device_rec *r, void *arg) {
  tern_app *a = arg;
  if (!tern_dir_device_rec_ok(r)) {
    TERN_WARN("device record refused", "device=%s", tern_log_quote(r->device_id));
    return;
  }
  tern_user *u = tern_dir_user(a->dir, r->user);
  if (!u) {
    TERN_WARN("device without user ignored", "device=%s user=%s", r->device_id, r->user);
    return;
  }
  tern_device *d = tern_dir_load_device(a->dir, u, r->device_id, r->label, r->token_hash, r->created, r->last_seen);
  tern_pushglue_load(a, d, r->push);
}

/* KV records belong to the modules that wrote them: media and groups. (Users and devices are
 * loaded first, so group records find their members.) */
static void load_kv(const char *key, size_t klen, const uint8_t *v, size_t vlen, void *arg) {
  tern_app *a = arg;
  if (klen == sizeof TERN_MSGID_KV_KEY - 1 && !memcmp(key, TERN_MSGID_KV_KEY, klen)) {
    if (!tern_msgid_key_load(&a->msgid_key, v, vlen)) TERN_WARN("message id key refused", "bytes=%zu", vlen);
    return;
  }
  if (tern_privacy_is_kv(key, klen)) {
    if (tern_privacy_apply_record(a, key, klen, v, vlen) < 0) TERN_WARN("privacy record refused", "key=%.*s", (int)klen, key);
    return;
  }
  if (tern_profile_is_kv(key, klen)) {
    if (tern_profile_apply_record(a, key, klen, v, vlen) < 0) TERN_WARN("profile record refused", "key=%.*s", (int)klen, key);
    return;
  }
  if (tern_groups_is_kv(key, klen)) {
    if (tern_groups_load_record(a, v, vlen, key, klen) < 0)
      TERN_WARN("group record refused", "key=%.*s bytes=%zu", (int)klen, key, vlen);
    return;
  }
  if (tern_keyapi_is_kv(key, klen)) {
    tern_keyapi_apply_record(a, key, klen, v, vlen);
    return;
  }
  if (tern_mediaglue_is_kv(key, klen)) {
    if (!tern_app_media_worker(a)) { /* the media worker loads them; the others keep a replica */
      tern_mediaglue_apply_record(a, key, klen, v, vlen);
      return;
    }
    if (a->media && tern_media_load_record(a->media, v, vlen) == 0) return;
    TERN_WARN("media record refused, deleting it", "key=%.*s bytes=%zu", (int)klen, key, vlen);
    tern_buf_append(&a->kv_doomed, key, klen);
    tern_buf_putc(&a->kv_doomed, '\0');
    return;
  }
  TERN_DEBUG("kv record", "key=%.*s bytes=%zu", (int)klen, key, vlen);
}

/* Start-up only, before the loop serves: runs it until op completes. */
static void on_startup_op(tern_store_op *op) { *(tern_store_status *)op->arg = op->status; }

static tern_store_status run_startup_op(tern_app *a, tern_store_op *op, tern_store_status *st) {
  *st = (tern_store_status)-1;
  op->done = on_startup_op;
  op->arg = st;
  tern_app_submit(a, op);
  while (*st == (tern_store_status)-1) uv_run(a->loop, UV_RUN_ONCE);
  return *st;
}

/* The first start of a deployment makes the message id key (core/msgid.h); a node that loses
 * the race to another starting at the same time takes the winner's from the feed. */
static int ensure_msgid_key(tern_app *a, char *err, size_t errlen) {
  if (a->msgid_key.set) return 0;
  tern_msgid_key k;
  tern_op_append *op = tern_op_append_new(NULL, NULL);
  tern_store_set_str(&op->record_key, TERN_MSGID_KV_KEY);
  tern_msgid_key_new(&k, tern_now_ms(), &op->record);
  op->record_check = true;
  op->record_absent = true;
  tern_store_status st;
  if (run_startup_op(a, &op->op, &st) == TERN_STORE_OK) {
    a->msgid_key = k;
    TERN_INFO("message id key created", "%s", "");
    return 0;
  }
  if (st == TERN_STORE_CONFLICT) {
    run_startup_op(a, &tern_op_inbox_new(TERN_OP_CATCH_UP, NULL, NULL)->op, &st);
    if (a->msgid_key.set) return 0;
  }
  snprintf(err, errlen, "cannot store the message id key (store status %d)", (int)st);
  return -EIO;
}

void tern_app_adopt_msgid_key(tern_app *a, const uint8_t *v, size_t vlen) {
  if (a->msgid_key.set) return; /* the key never changes once a node has one */
  if (!tern_msgid_key_load(&a->msgid_key, v, vlen)) TERN_WARN("message id key refused", "bytes=%zu", vlen);
}

int tern_app_load(tern_app *a, char *err, size_t errlen) {
  tern_store_load_cbs cbs = {.user = load_user, .device = load_device, .kv = load_kv, .arg = a};
  int r = tern_store_load(a->store, &cbs, err, errlen);
  /* What other writers store from now on reaches this directory too. (Changes committed
   * between the load and this call are not lost: no other writer runs before the loops do,
   * except other nodes, whose changes a catch-up on a miss brings.) */
  if (r == 0 && !a->sync) a->sync = tern_sync_new(a);
  if (r == 0) r = ensure_msgid_key(a, err, errlen);
  return r;
}

static void on_media_recovered(tern_media *m, const tern_media_recover_stats *st, void *arg) {
  tern_app *a = arg;
  if (a->media) tern_media_start_sweeper(a->media);
}

void tern_app_start(tern_app *a) {
  const tern_config *cfg = a->cfg;
  tern_store_port_hand_over_first(a->port); /* ahead of the net layer's flush pass */
  uv_timer_start(&a->persist_timer, on_persist, (uint64_t)cfg->presence_persist_interval_ms,
                 (uint64_t)cfg->presence_persist_interval_ms);
  uv_timer_start(&a->sweep_timer, on_sweep, (uint64_t)cfg->store_sweep_interval_ms,
                 (uint64_t)cfg->store_sweep_interval_ms);
  uv_signal_start(&a->sigterm, on_signal, SIGTERM);
  uv_signal_start(&a->sigint, on_signal, SIGINT);
  tern_cluster_start(a->cluster);
  tern_receipts_start(a);
  if (a->push) tern_push_set_result_cb(a->push, tern_pushglue_result, a);
  /* Records the media store refused at load go; then disk and records are made to agree
   * (uploads may already run meanwhile), and the sweeper starts once they do. */
  for (size_t i = 0; i < a->kv_doomed.len;) {
    const char *k = a->kv_doomed.data + i;
    size_t kl = strlen(k);
    tern_mediaglue_drop_kv(a, k, kl);
    i += kl + 1;
  }
  tern_buf_free(&a->kv_doomed);
  if (a->media && tern_media_recover(a->media, on_media_recovered, a) != 0) tern_media_start_sweeper(a->media);
}

void tern_app_close(tern_app *a) {
  if (!a) return;
  /* A start-up that failed never ran the loop: the handles are still open. */
  if (a->push) tern_push_close(a->push);
  a->push = NULL;
  tern_mediaglue_close(a);
  if (a->timers_started) close_handles(a);
  tern_receipts_free(a);
  tern_store_port_close(a->port);
  a->port = NULL;
  tern_session_unwait_all(a); /* after the port's last completions, which may still list some */
}

static bool free_held(const char *k, size_t kl, void *v, void *arg) {
  tern_free(v);
  return true;
}

void tern_app_free(tern_app *a) {
  if (!a) return;
  tern_map_each(&a->held_names, free_held, NULL);
  tern_map_free(&a->held_names);
  if (a->own_limits) tern_limits_free(a->limits);
  tern_mediaglue_free(a);
  tern_sync_free(a->sync);
  tern_cluster_free(a->cluster);
  tern_groups_free(a->groups);
  tern_dir_free(a->dir);
  tern_buf_free(&a->scratch);
  tern_buf_free(&a->record);
  for (size_t i = 0; i < TERN_ARRAY_LEN(a->lists); i++) tern_buf_free(&a->lists[i]);
  tern_buf_free(&a->kv_doomed);
  tern_free(a);
}
