#include "base/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

/* T_LIMIT: "N/DURATION" read as at most N per DURATION (a token bucket N deep refilled at
 * N/DURATION), into a tern_limit. T_RATE: the same spelling, only the rate, per second. */
typedef enum { T_STR, T_BOOL, T_INT, T_DUR, T_SIZE, T_RATE, T_LIMIT } setting_type;

typedef struct setting {
  const char *name;  /* file key; flag and env are derived from it */
  setting_type type; /* how to parse */
  size_t off;        /* offset in tern_config */
  const char *def;   /* default, in the same spelling a user would write */
  double min, max;   /* bounds for numbers (after unit conversion) */
  const char *help;  /* one line for --help */
} setting;

#define OFF(f) offsetof(tern_config, f)
#define BIG 9.0e15

static const setting g_settings[] = {
    {"listen", T_STR, OFF(listen), "127.0.0.1:8080", 0, 0, "HOST:PORT to serve HTTP and WebSocket on"},
    {"workers", T_INT, OFF(workers), "0", 0, TERN_WORKERS_MAX,
     "event loops, one thread each, sharing the listen port (SO_REUSEPORT); 0: one per core"},
    {"data_dir", T_STR, OFF(data_dir), "./data", 0, 0, "directory for the store (created if missing)"},
    {"log_level", T_STR, OFF(log_level), "info", 0, 0, "debug|info|warn|error"},
    {"web_dir", T_STR, OFF(web_dir), "", 0, 0, "directory of the static web client (empty: built-in path)"},
    {"tls.cert", T_STR, OFF(tls_cert), "", 0, 0, "PEM certificate chain: the listener speaks TLS only (with tls.key); SIGHUP reloads"},
    {"tls.key", T_STR, OFF(tls_key), "", 0, 0, "PEM private key of tls.cert"},
    {"allow_insecure_test_settings", T_BOOL, OFF(allow_insecure_test), "false", 0, 0,
     "permit settings meant only for test suites and benchmarks"},
    {"ws.ping_interval", T_DUR, OFF(ws_ping_interval_ms), "30s", 10, BIG, "server WebSocket ping period"},
    {"ws.idle_timeout", T_DUR, OFF(ws_idle_timeout_ms), "90s", 10, BIG, "close a silent connection (4000)"},
    {"ws.auth_timeout", T_DUR, OFF(ws_auth_timeout_ms), "10s", 10, BIG, "close if no auth frame by then (4001)"},
    {"ws.max_message", T_SIZE, OFF(ws_max_message), "1MiB", 1024, 1 << 30, "largest WebSocket message (1009)"},
    {"ws.max_auth_frame", T_SIZE, OFF(ws_max_auth_frame), "8KiB", 256, 1 << 30,
     "largest WebSocket message before the connection is authenticated (1009)"},
    {"ws.max_outbound", T_SIZE, OFF(ws_max_outbound), "8MiB", 4096, 1ll << 34,
     "bytes queued to a client that does not read before closing it (1008)"},
    {"http.max_body", T_SIZE, OFF(http_max_body), "64KiB", 1024, 1 << 30, "largest JSON request body (413)"},
    {"http.max_header", T_SIZE, OFF(http_max_header), "16KiB", 1024, 1 << 20, "largest request head (431)"},
    {"http.request_timeout", T_DUR, OFF(http_request_timeout_ms), "30s", 10, BIG,
     "time allowed to send one HTTP request"},
    {"http.max_connections", T_INT, OFF(http_max_connections), "19000", 1, 1000000,
     "connections accepted at once; above it new ones are closed"},
    {"limits.send_rate", T_RATE, OFF(limits_send_rate), "20/s", 0.001, 1e9, "sustained sends per user per second"},
    {"limits.send_burst", T_INT, OFF(limits_send_burst), "1000", 1, 1e9, "sends a user may make in a burst"},
    {"limits.watch_max", T_INT, OFF(limits_watch_max), "5000", 1, 1e7, "users one connection may watch"},
    {"limits.conn_per_ip", T_INT, OFF(limits_conn_per_ip), "100", 1, 1e7,
     "open connections from one client address; past it new ones are closed"},
    {"limits.conn_rate_per_ip", T_LIMIT, OFF(limits_conn_rate_per_ip), "20/1s", 1, 1e9,
     "new connections from one client address"},
    {"limits.auth_rate_per_ip", T_LIMIT, OFF(limits_auth_rate_per_ip), "30/1m", 1, 1e9,
     "register and login attempts from one client address (429)"},
    {"limits.login_fail", T_LIMIT, OFF(limits_login_fail), "5/15m", 1, 1e9,
     "failed logins per username and client address (429)"},
    {"limits.typing_rate", T_LIMIT, OFF(limits_typing_rate), "5/1s", 1, 1e9,
     "typing frames per user; past it they are dropped"},
    {"http.trusted_proxies", T_STR, OFF(http_trusted_proxies), "", 0, 0,
     "CIDR list of proxies whose X-Forwarded-For names the client"},
    {"metrics.allow", T_STR, OFF(metrics_allow), "127.0.0.0/8,::1/128", 0, 0,
     "CIDR list of peers that may read /metrics (never through a trusted proxy)"},
    {"limits.edit_window", T_DUR, OFF(limits_edit_window_ms), "15m", 0, BIG,
     "a message may be edited by its sender this long after it was sent"},
    {"limits.delete_window", T_DUR, OFF(limits_delete_window_ms), "48h", 0, BIG,
     "a message may be deleted for everyone this long after it was sent"},
    {"limits.fanout_rate", T_RATE, OFF(limits_fanout_rate), "20000/s", 0.001, 1e12,
     "recipient devices per second a user's group messages may reach, sustained"},
    {"limits.fanout_burst", T_INT, OFF(limits_fanout_burst), "100000", 1, 1e12,
     "recipient devices a user's group messages may reach in a burst"},
    {"limits.key_fetch_rate", T_LIMIT, OFF(limits_key_fetch_rate), "60/1m", 1, 1e9,
     "key bundle fetches (GET /v1/keys/{user}) per calling user"},
    {"limits.key_fetch_burst", T_INT, OFF(limits_key_fetch_burst), "0", 0, 1e9,
     "key bundle fetches a user may make at once (0: the N of limits.key_fetch_rate)"},
    {"e2e.required", T_BOOL, OFF(e2e_required), "false", 0, 0,
     "refuse plaintext sends and image uploads (e2e_required): only encrypted content"},
    {"e2e.max_prekeys", T_INT, OFF(e2e_max_prekeys), "1000", 1, 1e6, "one-time prekeys stored per device at most"},
    {"e2e.max_ciphertext", T_SIZE, OFF(e2e_max_ciphertext), "96KiB", 64, 1 << 30,
     "longest ciphertext for one device in an encrypted send, in base64 bytes"},
    {"groups.max_members", T_INT, OFF(groups_max_members), "1024", 1, 1e6, "members one group may have"},
    {"groups.max_per_user", T_INT, OFF(groups_max_per_user), "10000", 1, 1e9, "groups one user may be in"},
    {"groups.page_max", T_INT, OFF(groups_page_max), "500", 1, 1e6, "groups per page of GET /v1/groups at most"},
    {"receipts.merge_window", T_DUR, OFF(receipts_merge_window_ms), "1s", 0, BIG,
     "group receipts that arrive within this window share one envelope"},
    {"inbox.max_envelopes", T_INT, OFF(inbox_max_envelopes), "100000", 1, 1e12, "envelopes one device may hold"},
    {"inbox.ttl", T_DUR, OFF(inbox_ttl_ms), "30d", 10, BIG, "unacked envelopes expire after this"},
    {"inbox.drain_batch", T_SIZE, OFF(inbox_drain_batch), "256KiB", 1024, 1 << 30,
     "bytes read from the store per drain step"},
    {"dedup.ttl", T_DUR, OFF(dedup_ttl_ms), "48h", 10, BIG, "client message ids are remembered this long"},
    {"devices.max_per_user", T_INT, OFF(devices_max_per_user), "16", 1, 100000, "devices one user may log in"},
    {"devices.idle_expiry", T_DUR, OFF(devices_idle_expiry_ms), "30d", 10, BIG,
     "a device with no connection for this long is deleted"},
    {"accounts.name_hold", T_DUR, OFF(accounts_name_hold_ms), "30d", 0, BIG,
     "a deleted account's name may be registered again after this"},
    {"auth.max_concurrent_hashes", T_INT, OFF(auth_max_concurrent_hashes), "0", 0, 1024,
     "password hashes computed at once (0: the threadpool's size, UV_THREADPOOL_SIZE or 4)"},
    {"auth.hash_queue", T_INT, OFF(auth_hash_queue), "64", 0, 1e6,
     "password hashes that may wait for a turn; past it register and login answer 503"},
    {"auth.hash_cost", T_STR, OFF(auth_hash_cost), "interactive", 0, 0,
     "Argon2id cost: interactive|moderate|sensitive (test needs --allow-insecure-test-settings)"},
    {"presence.persist_interval", T_DUR, OFF(presence_persist_interval_ms), "60s", 10, BIG,
     "how often last seen of connected users is written"},
    {"cluster.node_timeout", T_DUR, OFF(cluster_node_timeout_ms), "15s", 100, BIG,
     "a node (or worker) not heard from for this long is taken for dead: its users go offline"},
    {"store.backend", T_STR, OFF(store_backend), "rocksdb", 0, 0,
     "where messages are stored: rocksdb (embedded, in data_dir/store) or nats (cluster mode)"},
    {"nats.urls", T_STR, OFF(nats_urls), "nats://127.0.0.1:4222", 0, 0,
     "NATS servers of the JetStream cluster (comma list), with --store-backend nats"},
    {"nats.replicas", T_INT, OFF(nats_replicas), "0", 0, 5,
     "replicas of every stream and bucket (0: 3 with 3 or more URLs, else 1)"},
    {"nats.namespace", T_STR, OFF(nats_namespace), "tern", 0, 0,
     "prefix of every stream, bucket and subject, so several clusters share one NATS"},
    {"nats.node", T_STR, OFF(nats_node), "", 0, 0,
     "this node's id, unique among the nodes of one namespace (empty: the host name)"},
    {"nats.test_feed_delay", T_DUR, OFF(nats_test_feed_delay_ms), "0s", 0, 4000,
     "tests only (needs allow_insecure_test_settings): other nodes' directory changes apply this late here"},
    {"store.max_open_files", T_INT, OFF(store_max_open_files), "512", 16, 100000, "RocksDB file descriptor cap"},
    {"store.group_max", T_INT, OFF(store_group_max), "4096", 1, 1e7, "operations per group commit"},
    {"store.cache", T_SIZE, OFF(store_cache_bytes), "64MiB", 0, 1ll << 40,
     "recent envelopes kept in memory, so acks and drains need not read them back"},
    {"store.sweep_interval", T_DUR, OFF(store_sweep_interval_ms), "60s", 10, BIG,
     "how often expired envelopes, ids and devices are swept"},
    {"push.coalesce", T_DUR, OFF(push_coalesce_ms), "10s", 10, BIG,
     "an offline device gets one notification per window, with the message count"},
    {"push.previews", T_BOOL, OFF(push_previews), "false", 0, 0, "put message text in push notifications"},
    {"push.max_inflight", T_INT, OFF(push_max_inflight), "100", 1, 10000, "concurrent requests per push provider"},
    {"push.max_attempts", T_INT, OFF(push_max_attempts), "5", 1, 100, "tries per notification before giving up"},
    {"push.queue_max", T_INT, OFF(push_queue_max), "100000", 1, 1e8,
     "notifications queued or in flight; past it new ones are dropped"},
    {"push.queue_per_device", T_INT, OFF(push_queue_per_device), "10", 1, 100000,
     "notifications queued or in flight for one device"},
    {"push.retry_base", T_DUR, OFF(push_retry_base_ms), "1s", 1, BIG, "first retry backoff (doubles, with jitter)"},
    {"push.retry_max", T_DUR, OFF(push_retry_max_ms), "5m", 1, BIG,
     "longest retry backoff; a longer Retry-After gives up"},
    {"push.request_timeout", T_DUR, OFF(push_request_timeout_ms), "30s", 10, BIG, "one request to a push provider"},
    {"push.ttl", T_DUR, OFF(push_ttl_ms), "24h", 0, 2419200000.0, "how long a provider may hold an undelivered push"},
    {"push.ca_file", T_STR, OFF(push_ca_file), "", 0, 0, "CA bundle for push providers (empty: system CAs)"},
    {"push.fcm.service_account", T_STR, OFF(push_fcm_service_account), "", 0, 0,
     "FCM service-account JSON file (empty: FCM off)"},
    {"push.fcm.url", T_STR, OFF(push_fcm_url), "https://fcm.googleapis.com", 0, 0, "FCM HTTP v1 base URL"},
    {"push.fcm.token_url", T_STR, OFF(push_fcm_token_url), "", 0, 0,
     "OAuth2 token URL (empty: the service account's token_uri)"},
    {"push.apns.key_file", T_STR, OFF(push_apns_key_file), "", 0, 0, "APNs .p8 signing key (empty: APNs off)"},
    {"push.apns.key_id", T_STR, OFF(push_apns_key_id), "", 0, 0, "APNs key ID (10 characters)"},
    {"push.apns.team_id", T_STR, OFF(push_apns_team_id), "", 0, 0, "Apple developer team ID"},
    {"push.apns.topic", T_STR, OFF(push_apns_topic), "", 0, 0, "APNs topic: the app's bundle ID"},
    {"push.apns.url", T_STR, OFF(push_apns_url), "https://api.push.apple.com", 0, 0, "APNs base URL"},
    {"push.webpush.vapid_key_file", T_STR, OFF(push_webpush_vapid_key_file), "", 0, 0,
     "VAPID P-256 private key, PEM (empty: Web Push off)"},
    {"push.webpush.subject", T_STR, OFF(push_webpush_subject), "", 0, 0,
     "VAPID contact, mailto: or https: (required with Web Push)"},
    {"push.webpush.allowed_hosts", T_STR, OFF(push_webpush_allowed_hosts),
     "fcm.googleapis.com,updates.push.services.mozilla.com,*.notify.windows.com,web.push.apple.com", 0, 0,
     "Web Push endpoint hosts clients may register (comma list, *.domain for subdomains)"},
    {"push.webhook.url", T_STR, OFF(push_webhook_url), "", 0, 0, "operator push gateway URL (empty: webhook off)"},
    {"push.webhook.secret", T_STR, OFF(push_webhook_secret), "", 0, 0, "HMAC-SHA256 key for X-Tern-Signature"},
    {"media.avatar_grace", T_DUR, OFF(media_avatar_grace_ms), "24h", 10, BIG,
     "an avatar that is no longer set is deleted this long after (PROTOCOL.md 15)"},
    {"media.max_bytes", T_SIZE, OFF(media_max_bytes), "16MiB", 1, 1ll << 34, "largest media upload (413)"},
    {"media.ttl", T_DUR, OFF(media_ttl_ms), "30d", 10, BIG, "media are deleted this long after upload"},
    {"media.unsent_ttl", T_DUR, OFF(media_unsent_ttl_ms), "24h", 10, BIG,
     "media never sent in a message are deleted after this"},
    {"media.max_dimension", T_INT, OFF(media_max_dimension), "16384", 1, 1 << 24,
     "largest image side in pixels (checked on the header, before decoding)"},
    {"media.max_pixels", T_INT, OFF(media_max_pixels), "50000000", 1, 1e12, "largest image area in pixels"},
    {"media.thumb_size", T_INT, OFF(media_thumb_size), "320", 16, 4096, "thumbnail size on the longer side (px)"},
    {"media.upload_timeout", T_DUR, OFF(media_upload_timeout_ms), "60s", 10, BIG,
     "an upload that sends no bytes for this long fails and its temp file is removed"},
    {"media.min_upload_rate", T_SIZE, OFF(media_min_upload_rate), "1KiB", 0, 1ll << 40,
     "bytes a second an upload must average, counted once it is media.upload_timeout old (time the server "
     "held it paused left out); slower fails with 408 (0: no minimum)"},
    {"media.quota_bytes_per_hour", T_SIZE, OFF(media_quota_bytes_per_hour), "256MiB", 1, 1ll << 50,
     "upload bytes per user per hour (429 with Retry-After past it)"},
    {"media.sweep_batch", T_INT, OFF(media_sweep_batch), "200", 1, 1e6, "expired media removed per sweep step"},
    {"media.sweep_interval", T_DUR, OFF(media_sweep_interval_ms), "60s", 10, BIG, "how often expired media are swept"},
    {"media.decode_jobs", T_INT, OFF(media_decode_jobs), "2", 1, 64,
     "images validated and thumbnailed at once (threadpool threads they may occupy)"},
};

int tern_parse_duration_ms(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || v < 0 || !isfinite(v)) return -EINVAL;
  while (*end == ' ') end++;
  double mul;
  if (strcmp(end, "ms") == 0) mul = 1;
  else if (strcmp(end, "s") == 0) mul = 1000;
  else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0) mul = 60000;
  else if (strcmp(end, "h") == 0) mul = 3600000;
  else if (strcmp(end, "d") == 0) mul = 86400000;
  else return -EINVAL; /* a duration must carry its unit */
  double ms = v * mul;
  if (ms > BIG) return -EINVAL;
  *out = (int64_t)llround(ms);
  return 0;
}

int tern_parse_size(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || v < 0 || !isfinite(v)) return -EINVAL;
  while (*end == ' ') end++;
  double mul;
  if (*end == '\0' || strcmp(end, "B") == 0) mul = 1;
  else if (strcmp(end, "KiB") == 0) mul = 1024.0;
  else if (strcmp(end, "MiB") == 0) mul = 1024.0 * 1024;
  else if (strcmp(end, "GiB") == 0) mul = 1024.0 * 1024 * 1024;
  else if (strcmp(end, "KB") == 0 || strcmp(end, "kB") == 0) mul = 1e3;
  else if (strcmp(end, "MB") == 0) mul = 1e6;
  else if (strcmp(end, "GB") == 0) mul = 1e9;
  else return -EINVAL;
  double b = v * mul;
  if (b > BIG) return -EINVAL;
  *out = (int64_t)llround(b);
  return 0;
}

static void flag_name(const setting *s, char *out, size_t n) {
  size_t i = 0;
  for (const char *p = s->name; *p && i + 1 < n; p++) out[i++] = (*p == '.' || *p == '_') ? '-' : *p;
  out[i] = '\0';
}

static void env_name(const setting *s, char *out, size_t n) {
  size_t i = 0;
  const char *pre = "TERN_";
  for (; *pre && i + 1 < n; pre++) out[i++] = *pre;
  for (const char *p = s->name; *p && i + 1 < n; p++)
    out[i++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
  out[i] = '\0';
}

static int apply(tern_config *cfg, const setting *s, const char *val, const char *origin, char *err,
                 size_t errlen) {
  void *field = (char *)cfg + s->off;
  double num = 0;
  int64_t i64 = 0;
  switch (s->type) {
    case T_STR:
      tern_free(*(char **)field);
      *(char **)field = tern_strdup(val);
      return 0;
    case T_BOOL:
      if (!strcmp(val, "true") || !strcmp(val, "1") || !strcmp(val, "yes") || !strcmp(val, "on")) {
        *(bool *)field = true;
      } else if (!strcmp(val, "false") || !strcmp(val, "0") || !strcmp(val, "no") || !strcmp(val, "off")) {
        *(bool *)field = false;
      } else {
        snprintf(err, errlen, "%s: %s must be true or false, not \"%s\"", origin, s->name, val);
        return -EINVAL;
      }
      return 0;
    case T_INT: {
      char *end;
      errno = 0;
      long long v = strtoll(val, &end, 10);
      if (end == val || *end || errno) {
        snprintf(err, errlen, "%s: %s must be an integer, not \"%s\"", origin, s->name, val);
        return -EINVAL;
      }
      i64 = v;
      num = (double)v;
      break;
    }
    case T_DUR:
      if (tern_parse_duration_ms(val, &i64) < 0) {
        snprintf(err, errlen, "%s: %s must be a duration with a unit (500ms, 90s, 30d), not \"%s\"", origin,
                 s->name, val);
        return -EINVAL;
      }
      num = (double)i64;
      break;
    case T_SIZE:
      if (tern_parse_size(val, &i64) < 0) {
        snprintf(err, errlen, "%s: %s must be a size (64KiB, 16MiB), not \"%s\"", origin, s->name, val);
        return -EINVAL;
      }
      num = (double)i64;
      break;
    case T_RATE:
    case T_LIMIT: {
      /* N/DURATION: 20/s, 60/1m, 5/15m (a bare unit means one of it); stored per second. */
      char *end;
      errno = 0;
      num = strtod(val, &end);
      int64_t per_ms = 1000;
      bool ok = end != val && !errno && isfinite(num) && num >= 0;
      if (ok && *end) {
        ok = *end == '/' && end[1];
        if (ok) {
          char dur[64];
          snprintf(dur, sizeof dur, "%s%s", end[1] >= '0' && end[1] <= '9' ? "" : "1", end + 1);
          ok = tern_parse_duration_ms(dur, &per_ms) == 0 && per_ms > 0;
        }
      }
      if (!ok) {
        snprintf(err, errlen, "%s: %s must be a rate such as 20/s or 60/1m, not \"%s\"", origin, s->name, val);
        return -EINVAL;
      }
      if (s->type == T_LIMIT) {
        if (num < s->min || num > s->max) {
          snprintf(err, errlen, "%s: %s = %s is out of range", origin, s->name, val);
          return -EINVAL;
        }
        ((tern_limit *)field)->burst = num;
        ((tern_limit *)field)->rate = num * 1000.0 / (double)per_ms;
        return 0;
      }
      num = num * 1000.0 / (double)per_ms;
      break;
    }
  }
  if (num < s->min || num > s->max) {
    snprintf(err, errlen, "%s: %s = %s is out of range", origin, s->name, val);
    return -EINVAL;
  }
  if (s->type == T_RATE) *(double *)field = num;
  else *(int64_t *)field = i64;
  return 0;
}

void tern_config_defaults(tern_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  char err[256];
  for (size_t i = 0; i < sizeof g_settings / sizeof g_settings[0]; i++) {
    if (apply(cfg, &g_settings[i], g_settings[i].def, "default", err, sizeof err) < 0) abort();
  }
}

static const setting *by_key(const char *key) {
  for (size_t i = 0; i < sizeof g_settings / sizeof g_settings[0]; i++) {
    if (!strcmp(g_settings[i].name, key)) return &g_settings[i];
  }
  return NULL;
}

static const setting *by_flag(const char *flag) {
  char f[96];
  for (size_t i = 0; i < sizeof g_settings / sizeof g_settings[0]; i++) {
    flag_name(&g_settings[i], f, sizeof f);
    if (!strcmp(f, flag)) return &g_settings[i];
  }
  return NULL;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

static int load_file(tern_config *cfg, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
    return -EINVAL;
  }
  /* getline, not fgets into a fixed buffer: a long line (a path) was cut in two and its
   * rest read as a line of its own, and a NUL byte silently ended a line */
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int lineno = 0, rc = 0;
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    if (memchr(line, '\0', (size_t)len)) {
      snprintf(err, errlen, "%s:%d: a NUL byte in the line", path, lineno);
      rc = -EINVAL;
      break;
    }
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    char *s = trim(line);
    if (!*s) continue;
    char *eq = strchr(s, '=');
    char origin[300];
    snprintf(origin, sizeof origin, "%s:%d", path, lineno);
    if (!eq) {
      snprintf(err, errlen, "%s: expected key = value", origin);
      rc = -EINVAL;
      break;
    }
    *eq = '\0';
    char *key = trim(s), *val = trim(eq + 1);
    size_t vl = strlen(val);
    if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
      val[vl - 1] = '\0';
      val++;
    }
    const setting *st = by_key(key);
    if (!st) {
      snprintf(err, errlen, "%s: unknown setting \"%s\"", origin, key);
      rc = -EINVAL;
      break;
    }
    if ((rc = apply(cfg, st, val, origin, err, errlen)) < 0) break;
  }
  free(line); /* getline's own allocation */
  fclose(f);
  return rc;
}

int tern_config_load(tern_config *cfg, int argc, char **argv, bool *want_help, char *err, size_t errlen) {
  *want_help = false;
  const char *file = getenv("TERN_CONFIG");
  /* First pass: find --config and --help, and check every flag is known. */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      *want_help = true;
      return 0;
    }
    if (strncmp(a, "--", 2) != 0) {
      snprintf(err, errlen, "unexpected argument \"%s\" (see --help)", a);
      return -EINVAL;
    }
    char name[96];
    const char *eq = strchr(a + 2, '=');
    size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    if (nl >= sizeof name) nl = sizeof name - 1;
    memcpy(name, a + 2, nl);
    name[nl] = '\0';
    bool is_config = !strcmp(name, "config");
    const setting *st = is_config ? NULL : by_flag(name);
    if (!is_config && !st) {
      snprintf(err, errlen, "unknown flag --%s (see --help)", name);
      return -EINVAL;
    }
    bool takes_value = is_config || st->type != T_BOOL;
    if (takes_value && !eq) {
      if (i + 1 >= argc) {
        snprintf(err, errlen, "flag --%s needs a value", name);
        return -EINVAL;
      }
      if (is_config) file = argv[i + 1];
      i++;
    } else if (is_config) {
      file = eq + 1;
    }
  }
  if (file && *file) {
    if (load_file(cfg, file, err, errlen) < 0) return -EINVAL;
  }
  for (size_t i = 0; i < sizeof g_settings / sizeof g_settings[0]; i++) {
    char env[128];
    env_name(&g_settings[i], env, sizeof env);
    const char *v = getenv(env);
    if (v && apply(cfg, &g_settings[i], v, env, err, errlen) < 0) return -EINVAL;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i] + 2;
    const char *eq = strchr(a, '=');
    char name[96];
    size_t nl = eq ? (size_t)(eq - a) : strlen(a);
    if (nl >= sizeof name) nl = sizeof name - 1;
    memcpy(name, a, nl);
    name[nl] = '\0';
    if (!strcmp(name, "config")) {
      if (!eq) i++;
      continue;
    }
    const setting *st = by_flag(name);
    char origin[110];
    snprintf(origin, sizeof origin, "--%s", name);
    const char *val;
    if (eq) val = eq + 1;
    else if (st->type == T_BOOL) val = "true";
    else val = argv[++i];
    if (apply(cfg, st, val, origin, err, errlen) < 0) return -EINVAL;
  }
  return 0;
}

void tern_config_help(FILE *out, const char *prog) {
  fprintf(out,
          "Usage: %s [--listen HOST:PORT] [--data-dir DIR] [--config FILE] [--log-level LEVEL] [--SETTING VALUE...]\n"
          "\n"
          "tern messaging server. Every setting below can be given as a flag (--inbox-max-envelopes 10),\n"
          "an environment variable (TERN_INBOX_MAX_ENVELOPES=10) or a config file line\n"
          "(inbox.max_envelopes = 10), in that order of precedence. Durations take a unit (500ms, 90s,\n"
          "30d); sizes too (64KiB, 16MiB).\n"
          "\n"
          "  --config FILE   read settings from FILE (key = value lines, # comments); env TERN_CONFIG\n"
          "  --help          show this help\n\n",
          prog);
  for (size_t i = 0; i < sizeof g_settings / sizeof g_settings[0]; i++) {
    const setting *s = &g_settings[i];
    char flag[96];
    flag_name(s, flag, sizeof flag);
    char left[160];
    snprintf(left, sizeof left, "--%s%s", flag, s->type == T_BOOL ? "" : " V");
    fprintf(out, "  %-34s %s (default: %s)\n", left, s->help, *s->def ? s->def : "\"\"");
  }
}

void tern_config_free(tern_config *cfg) {
  for (size_t i = 0; i < sizeof g_settings / sizeof g_settings[0]; i++) {
    if (g_settings[i].type == T_STR) {
      char **f = (char **)((char *)cfg + g_settings[i].off);
      tern_free(*f);
      *f = NULL;
    }
  }
}
