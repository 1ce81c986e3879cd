/* ternd: the tern server, and its composition root: it reads the settings (one table in
 * src/base/config.c), makes each part, hands the parts to the core (src/core/app.h), runs the
 * loop until a signal stops it, and unwinds everything it made, in reverse, on one path.
 *
 * Start-up failures are logged (one logfmt line, level=error) and exit with status 2. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/config.h"
#include "base/log.h"
#include "core/app.h"
#include "core/limits.h"
#include "core/mediaglue.h"
#include "media/media.h"
#include "net/server.h"
#include "net/tls.h"
#include "net/webroot.h"
#include "proto/frame.h"
#include "proto/wire.h"
#include "push/push.h"
#include "store/store.h"

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

/* One worker: a thread with its own loop, app, listener and TLS context. Worker 0 runs on the
 * main thread and owns the media store. */
typedef struct worker {
  struct parts *p;       /* the process */
  unsigned index;        /* worker index (in msg ids and logs) */
  uv_loop_t loop;        /* its loop */
  bool loop_on;          /* uv_loop_init succeeded */
  tern_app *app;
  tern_net *net;
  tern_tls *tls;         /* its listener's TLS context, when tls.cert is set */
  uv_signal_t sighup;    /* reloads tls.cert and tls.key */
  bool sighup_on;
  uv_thread_t thread;    /* workers 1..n-1 */
  bool thread_on;
} worker;

/* Everything the root makes, so one unwind path can free what exists. */
typedef struct parts {
  tern_store *store;
  tern_web *web;          /* read-only once loaded: every worker serves from it */
  tern_limits *limits;    /* process-wide abuse limits (core/limits.h) */
  tern_net_shared *net_shared; /* process-wide per-address connection limits (net/server.h) */
  tern_app_group group;   /* the workers' apps, for /metrics */
  worker *w;              /* workers[0..n) */
  unsigned n;
  const tern_config *cfg;
} parts;

/* SIGHUP: a new certificate and key for new connections; open ones keep theirs. A pair that
 * does not load is logged, and the old one stays (PROTOCOL.md 13). libuv raises a signal on
 * every loop that watches it, so each worker reloads its own context on its own thread. */
static void on_sighup(uv_signal_t *h, int signum) {
  (void)signum;
  worker *w = h->data;
  const tern_config *cfg = w->p->cfg;
  char err[512];
  if (tern_tls_reload(w->tls, cfg->tls_cert, cfg->tls_key, err, sizeof err) < 0)
    TERN_ERROR("tls reload failed, keeping the old certificate", "worker=%u err=%s", w->index, tern_log_quote(err));
  else
    TERN_INFO("tls certificate reloaded", "worker=%u cert=%s", w->index, tern_log_quote(cfg->tls_cert));
}

/* A worker's own part of the unwind, once no thread runs its loop any more. */
static void worker_unwind(worker *w) {
  if (!w->loop_on) return;
  if (w->sighup_on) uv_close((uv_handle_t *)&w->sighup, NULL);
  w->sighup_on = false;
  if (w->net) tern_net_free(w->net);
  w->net = NULL;
  if (w->app) {
    w->app->net = NULL;
    tern_app_close(w->app); /* the port, the timers, push and media */
  }
  uv_run(&w->loop, UV_RUN_NOWAIT); /* lets their handles close */
}

/* A worker's loop runs until its app stops it. Its unwind waits until every worker has stopped
 * (unwind, on the main thread), so that no worker ever reads a part of another that is gone:
 * /metrics adds up the others' counters, and their store ports take events until then. */
static void worker_main(void *arg) {
  worker *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
  /* the ops this thread pooled would be lost with it; the main thread's own pool is freed
   * once unwind has finished its last ops */
  if (w->index != 0) tern_store_op_pools_free();
}

static void unwind(parts *p) {
  for (unsigned i = 0; i < p->n; i++) worker_unwind(&p->w[i]);
  if (p->store) tern_store_close(p->store);
  for (unsigned i = 0; i < p->n; i++) {
    worker *w = &p->w[i];
    tern_app_free(w->app);
    if (w->loop_on) {
      uv_run(&w->loop, UV_RUN_NOWAIT);
      uv_loop_close(&w->loop);
    }
    tern_tls_free(w->tls); /* after the connections that used it */
  }
  tern_web_free(p->web);
  tern_limits_free(p->limits);
  tern_net_shared_free(p->net_shared);
  tern_free(p->group.apps);
  tern_free(p->w);
}

/* The workers setting: 0 is one per core. */
static unsigned worker_count(const tern_config *cfg) {
  if (cfg->workers > 0) return (unsigned)cfg->workers;
  int n = (int)uv_available_parallelism();
  return n <= 0 ? 1 : n > TERN_WORKERS_MAX ? TERN_WORKERS_MAX : (unsigned)n;
}

/* Makes worker i up to its listener; worker 0 also the media store. */
static int worker_new(parts *p, worker *w, const char **failed, char *err, size_t errlen) {
  const tern_config *cfg = p->cfg;
  int rc = uv_loop_init(&w->loop);
  if (rc < 0) {
    snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
    *failed = "cannot start a worker";
    return rc;
  }
  w->loop_on = true;
  if ((rc = tern_app_new(cfg, &w->loop, w->index, p->store, &w->app, err, errlen)) < 0) {
    *failed = "bad settings";
    return rc;
  }
  p->group.apps[w->index] = w->app;
  tern_app_join(w->app, &p->group);
  if (w->index == 0) {
    /* The media store opens before the load: the load hands it the media records. */
    tern_media_options mo;
    tern_media_options_from_config(&mo, cfg);
    mo.persist = tern_mediaglue_persist(w->app);
    bool cluster = strcmp(cfg->store_backend, "nats") == 0;
    mo.remote_bytes = cluster; /* the bytes live in JetStream too (issue 12) */
    if ((rc = tern_media_open(&w->loop, &mo, &w->app->media, err, errlen)) < 0) {
      *failed = "cannot open the media store";
      return rc;
    }
    if (cluster && (rc = tern_mediaglue_open_blobs(w->app, err, errlen)) < 0) {
      *failed = "cannot open the media store";
      return rc;
    }
  }
  if ((rc = tern_app_load(w->app, err, errlen)) < 0) {
    *failed = "cannot read the store";
    return rc;
  }
  w->app->web = p->web;
  if ((rc = tern_push_open(&w->loop, cfg, &w->app->push, err, errlen)) < 0) {
    *failed = "cannot start push";
    return rc;
  }
  return 0;
}

static int worker_listen(parts *p, worker *w, const char **failed, char *err, size_t errlen) {
  const tern_config *cfg = p->cfg;
  int rc;
  tern_net_options no = {
      /* the first binds the setting (port 0 picks one); the others bind the port it got */
      .listen = w->index == 0 ? cfg->listen : tern_net_addr(p->w[0].net),
      .reuseport = p->n > 1,
      .shared = p->net_shared,
      .max_header = cfg->http_max_header,
      .max_body = cfg->http_max_body,
      .request_timeout_ms = cfg->http_request_timeout_ms,
      .ws_max_message = cfg->ws_max_message,
      .ws_max_auth_frame = cfg->ws_max_auth_frame,
      .ws_max_outbound = cfg->ws_max_outbound,
      .ws_ping_interval_ms = cfg->ws_ping_interval_ms,
      .ws_idle_timeout_ms = cfg->ws_idle_timeout_ms,
      .ws_auth_timeout_ms = cfg->ws_auth_timeout_ms,
      .max_connections = cfg->http_max_connections,
      .ws_auth_close_code = 4001, /* PROTOCOL.md 3.6 */
      .ws_idle_close_code = 4000,
      .conn_per_ip = cfg->limits_conn_per_ip,
      .conn_rate = cfg->limits_conn_rate_per_ip.rate,
      .conn_rate_burst = cfg->limits_conn_rate_per_ip.burst,
      .trusted_proxies = tern_limits_trusted(p->limits),
  };
  if (*cfg->tls_cert || *cfg->tls_key) {
    if ((rc = tern_tls_server_new(cfg->tls_cert, cfg->tls_key, &w->tls, err, errlen)) < 0) {
      *failed = "cannot set up TLS";
      return rc;
    }
    no.tls = w->tls;
    uv_signal_init(&w->loop, &w->sighup);
    w->sighup.data = w;
    uv_signal_start(&w->sighup, on_sighup, SIGHUP);
    w->sighup_on = true;
  }
  tern_net_handlers nh;
  tern_app_net_handlers(w->app, &nh);
  if ((rc = tern_net_start(&w->loop, &no, &nh, &w->net, err, errlen)) < 0) {
    *failed = "cannot listen";
    return rc;
  }
  w->app->net = w->net;
  return 0;
}

static int run(const tern_config *cfg) {
  char err[512];
  parts p = {.cfg = cfg};
  if (cfg->nats_test_feed_delay_ms > 0 && !cfg->allow_insecure_test) {
    TERN_ERROR("bad settings", "err=%s", tern_log_quote("nats.test_feed_delay is only for test suites; it needs "
                                                        "--allow-insecure-test-settings"));
    return 2;
  }
  int rc = mkdir_p(cfg->data_dir);
  if (rc < 0) {
    TERN_ERROR("cannot create the data dir", "dir=%s err=%s", tern_log_quote(cfg->data_dir), tern_log_quote(strerror(-rc)));
    return 2;
  }
  struct stat dst;
  if (stat(cfg->data_dir, &dst) == 0 && S_ISDIR(dst.st_mode) && (dst.st_mode & 077))
    TERN_WARN("the data dir can be read by other users; chmod 700 it", "dir=%s mode=%03o",
              tern_log_quote(cfg->data_dir), (unsigned)(dst.st_mode & 0777));
  if (access(cfg->data_dir, W_OK | X_OK) != 0) {
    TERN_ERROR("the data dir is not writable", "dir=%s err=%s", tern_log_quote(cfg->data_dir),
               tern_log_quote(strerror(errno)));
    return 2;
  }
  char store_dir[4096];
  snprintf(store_dir, sizeof store_dir, "%s/store", cfg->data_dir);
  /* One node id for the store and the cluster: nats.node, else (cluster mode) the host name. */
  char host[256] = "local";
  const char *node_id = cfg->nats_node;
  if (!node_id || !*node_id) {
    node_id = "local";
    if (strcmp(cfg->store_backend, "nats") == 0 && gethostname(host, sizeof host - 1) == 0) node_id = host;
  }
  tern_store_options so = {
      .backend = cfg->store_backend,
      .dir = store_dir,
      .max_open_files = (int)cfg->store_max_open_files,
      .group_max = (int)cfg->store_group_max,
      .cache_bytes = (size_t)cfg->store_cache_bytes,
      .inbox_max_envelopes = cfg->inbox_max_envelopes,
      .inbox_ttl_ms = cfg->inbox_ttl_ms,
      .dedup_ttl_ms = cfg->dedup_ttl_ms,
      .msg_ttl_ms = cfg->limits_delete_window_ms,
      .node = node_id,
      .nats_urls = cfg->nats_urls,
      .nats_replicas = (int)cfg->nats_replicas,
      .nats_namespace = cfg->nats_namespace,
      .nats_test_feed_delay_ms = cfg->nats_test_feed_delay_ms,
  };
  const char *failed = NULL;
  p.n = worker_count(cfg);
  p.w = tern_calloc(p.n, sizeof *p.w);
  p.group.apps = tern_calloc(p.n, sizeof *p.group.apps);
  p.group.napps = p.n;
  for (unsigned i = 0; i < p.n; i++) {
    p.w[i].p = &p;
    p.w[i].index = i;
  }
  if ((rc = tern_store_open(&so, &p.store, err, sizeof err)) < 0) {
    failed = "cannot open the store";
    goto out;
  }
  if ((rc = tern_limits_new(cfg, &p.limits, err, sizeof err)) < 0) {
    failed = "bad settings";
    goto out;
  }
  p.group.limits = p.limits;
  p.net_shared = tern_net_shared_new();
  const char *web_dir = cfg->web_dir && *cfg->web_dir ? cfg->web_dir : TERN_WEB_DIR;
  if ((rc = tern_web_load(web_dir, &p.web, err, sizeof err)) < 0) {
    failed = "cannot load the web client";
    goto out;
  }
  /* Every worker loads the directory before any loop runs (each has its own copy); from then
   * on the store's change feed keeps the copies in step. */
  for (unsigned i = 0; i < p.n; i++)
    if ((rc = worker_new(&p, &p.w[i], &failed, err, sizeof err)) < 0) goto out;
  tern_app *a0 = p.w[0].app;
  TERN_INFO("store opened", "backend=%s dir=%s users=%zu devices=%zu envelopes=%lld", tern_store_backend_name(p.store),
            tern_log_quote(store_dir), tern_dir_nusers(a0->dir), tern_dir_ndevices(a0->dir),
            (long long)tern_store_inbox_total(p.store));
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) {
    if (tern_push_configured(a0->push, (tern_push_provider)i))
      TERN_INFO("push provider on", "provider=%s", tern_push_provider_name((tern_push_provider)i));
  }
  for (unsigned i = 0; i < p.n; i++)
    if ((rc = worker_listen(&p, &p.w[i], &failed, err, sizeof err)) < 0) goto out;
  for (unsigned i = 0; i < p.n; i++) tern_app_start(p.w[i].app);
  TERN_INFO("listening", "addr=%s tls=%s workers=%u data_dir=%s", tern_net_addr(p.w[0].net),
            p.w[0].tls ? "on" : "off", p.n, tern_log_quote(cfg->data_dir));
  /* Each worker stops on its own: SIGTERM and SIGINT reach every loop that watches them. */
  for (unsigned i = 1; i < p.n; i++) {
    if ((rc = uv_thread_create(&p.w[i].thread, worker_main, &p.w[i])) < 0) {
      /* The workers already running stop the way a signal stops them, and so does this one. */
      TERN_ERROR("cannot start a worker thread", "worker=%u err=%s", i, uv_strerror(rc));
      kill(getpid(), SIGTERM);
      break;
    }
    p.w[i].thread_on = true;
  }
  worker_main(&p.w[0]);
  if (rc < 0) rc = 2;
  for (unsigned i = 1; i < p.n; i++)
    if (p.w[i].thread_on) uv_thread_join(&p.w[i].thread);
  for (unsigned i = 0; i < p.n; i++)
    if (p.w[i].app && p.w[i].app->exit_code > rc) rc = p.w[i].app->exit_code;
out:
  if (failed) {
    TERN_ERROR(failed, "err=%s", tern_log_quote(err));
    rc = 2;
  }
  unwind(&p);
  tern_store_op_pools_free();
  if (!failed) TERN_INFO("stopped", "%s", "");
  return rc;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  /* Blocks of 1 MiB and more (RocksDB's memtable arena blocks, 8 MiB each) are mapped and
   * unmapped, never taken from the heap. glibc's default raises its mmap threshold after the
   * first such free, and from then on flushed memtables stayed in the heap: a 4-minute soak
   * without kills grew RSS 159 → 234 MiB while its memtables held 6–57 MiB. With the
   * threshold fixed, RSS follows the memtables back down (docs/benchmarks.md, "Memory
   * under load"). */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  /* Everything ternd creates (RocksDB's files, media, temporary uploads) is its own: files
   * 0600, directories 0700, whatever the libraries ask for. */
  umask(077);
  /* cJSON allocates through base/alloc.h from the first parse on, in every thread. */
  tern_proto_init();
  tern_config cfg;
  tern_config_defaults(&cfg);
  bool help = false;
  char err[512];
  if (tern_config_load(&cfg, argc, argv, &help, err, sizeof err) < 0) {
    fprintf(stderr, "ternd: %s\n", err); /* before the log level is known: plain text */
    tern_config_free(&cfg);
    return 2;
  }
  if (help) {
    tern_config_help(stdout, "ternd");
    tern_config_free(&cfg);
    return 0;
  }
  tern_log_level lvl;
  if (tern_log_parse_level(cfg.log_level, &lvl) < 0) {
    fprintf(stderr, "ternd: --log-level must be debug, info, warn or error, not \"%s\"\n", cfg.log_level);
    tern_config_free(&cfg);
    return 2;
  }
  tern_log_set_level(lvl);
  if (sodium_init() < 0) {
    TERN_ERROR("libsodium could not be initialised", "%s", "");
    tern_config_free(&cfg);
    return 2;
  }
  int rc = run(&cfg);
  tern_config_free(&cfg);
  return rc;
}
