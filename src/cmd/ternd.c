/* ternd: the tern server, and its composition root: it reads the settings (one table in
 * src/base/config.c), makes each part, hands the parts to the core (src/core/app.h), runs the
 * loop until a signal stops it, and unwinds everything it made, in reverse, on one path.
 *
 * Start-up failures are logged (one logfmt line, level=error) and exit with status 2. */
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Everything the root makes, so one unwind path can free what exists. */
typedef struct parts {
  uv_loop_t *loop;
  tern_store *store;
  tern_app *app;
  tern_web *web;
  tern_net *net;
  tern_tls *tls;         /* the listener's TLS context, when tls.cert is set */
  uv_signal_t sighup;    /* reloads tls.cert and tls.key */
  bool sighup_on;
  const tern_config *cfg;
} parts;

/* SIGHUP: a new certificate and key for new connections; open ones keep theirs. A pair that
 * does not load is logged, and the old one stays (PROTOCOL.md 13). */
static void on_sighup(uv_signal_t *h, int signum) {
  (void)signum;
  parts *p = h->data;
  char err[512];
  if (tern_tls_reload(p->tls, p->cfg->tls_cert, p->cfg->tls_key, err, sizeof err) < 0)
    TERN_ERROR("tls reload failed, keeping the old certificate", "err=%s", tern_log_quote(err));
  else
    TERN_INFO("tls certificate reloaded", "cert=%s", tern_log_quote(p->cfg->tls_cert));
}

static void unwind(parts *p) {
  if (p->sighup_on) uv_close((uv_handle_t *)&p->sighup, NULL);
  if (p->net) tern_net_free(p->net);
  if (p->app) tern_app_close(p->app); /* the port, the timers, push and media */
  uv_run(p->loop, UV_RUN_NOWAIT);     /* lets their handles close */
  if (p->store) tern_store_close(p->store);
  tern_app_free(p->app);
  tern_web_free(p->web);
  uv_run(p->loop, UV_RUN_NOWAIT);
  uv_loop_close(p->loop);
  tern_tls_free(p->tls); /* after the connections that used it */
}

static int run(const tern_config *cfg) {
  char err[512];
  parts p = {.loop = uv_default_loop(), .cfg = cfg};
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
  };
  const char *failed = NULL;
  if ((rc = tern_store_open(&so, &p.store, err, sizeof err)) < 0) {
    failed = "cannot open the store";
    goto out;
  }
  if ((rc = tern_app_new(cfg, p.loop, 0, p.store, &p.app, err, sizeof err)) < 0) {
    failed = "bad settings";
    goto out;
  }
  /* The media store opens before the load: the load hands it the media records. */
  tern_media_options mo;
  tern_media_options_from_config(&mo, cfg);
  mo.persist = tern_mediaglue_persist(p.app);
  if ((rc = tern_media_open(p.loop, &mo, &p.app->media, err, sizeof err)) < 0) {
    failed = "cannot open the media store";
    goto out;
  }
  if ((rc = tern_app_load(p.app, err, sizeof err)) < 0) {
    failed = "cannot read the store";
    goto out;
  }
  TERN_INFO("store opened", "backend=%s dir=%s users=%zu devices=%zu envelopes=%lld", tern_store_backend_name(p.store),
            tern_log_quote(store_dir), tern_dir_nusers(p.app->dir), tern_dir_ndevices(p.app->dir),
            (long long)tern_store_inbox_total(p.store));
  const char *web_dir = cfg->web_dir && *cfg->web_dir ? cfg->web_dir : TERN_WEB_DIR;
  if ((rc = tern_web_load(web_dir, &p.web, err, sizeof err)) < 0) {
    failed = "cannot load the web client";
    goto out;
  }
  p.app->web = p.web;
  if ((rc = tern_push_open(p.loop, cfg, &p.app->push, err, sizeof err)) < 0) {
    failed = "cannot start push";
    goto out;
  }
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++) {
    if (tern_push_configured(p.app->push, (tern_push_provider)i))
      TERN_INFO("push provider on", "provider=%s", tern_push_provider_name((tern_push_provider)i));
  }
  tern_net_options no = {
      .listen = cfg->listen,
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
      .trusted_proxies = tern_limits_trusted(p.app->limits),
  };
  if (*cfg->tls_cert || *cfg->tls_key) {
    if ((rc = tern_tls_server_new(cfg->tls_cert, cfg->tls_key, &p.tls, err, sizeof err)) < 0) {
      failed = "cannot set up TLS";
      goto out;
    }
    no.tls = p.tls;
    uv_signal_init(p.loop, &p.sighup);
    p.sighup.data = &p;
    uv_signal_start(&p.sighup, on_sighup, SIGHUP);
    p.sighup_on = true;
  }
  tern_net_handlers nh;
  tern_app_net_handlers(p.app, &nh);
  if ((rc = tern_net_start(p.loop, &no, &nh, &p.net, err, sizeof err)) < 0) {
    failed = "cannot listen";
    goto out;
  }
  p.app->net = p.net;
  tern_app_start(p.app);
  TERN_INFO("listening", "addr=%s tls=%s data_dir=%s", tern_net_addr(p.net), p.tls ? "on" : "off",
            tern_log_quote(cfg->data_dir));
  uv_run(p.loop, UV_RUN_DEFAULT);
  rc = p.app->exit_code;
out:
  if (failed) {
    TERN_ERROR(failed, "err=%s", tern_log_quote(err));
    rc = 2;
  }
  unwind(&p);
  if (!failed) TERN_INFO("stopped", "%s", "");
  return rc;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
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
