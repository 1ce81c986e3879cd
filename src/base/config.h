/* config: every setting of ternd, described once in a table (name, type, bounds, default,
 * help) that drives the config file, the flags, the environment and --help.
 * Precedence: flag > environment > file > default.
 *   file key  inbox.max_envelopes
 *   flag      --inbox-max-envelopes VALUE  (or --inbox-max-envelopes=VALUE)
 *   env       TERN_INBOX_MAX_ENVELOPES
 * Durations take a unit (ms, s, m, h, d), sizes one too (B, KiB, MiB, GiB; KB/MB too). */
#ifndef TERN_BASE_CONFIG_H
#define TERN_BASE_CONFIG_H

enum { TERN_WORKERS_MAX = 256 }; /* the workers setting's bound (receipts.c reads queues up to it) */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* "at most burst per period": a token bucket burst deep, refilled at rate per second. */
typedef struct tern_limit {
  double burst;
  double rate;
} tern_limit;

typedef struct tern_config {
  /* process */
  char *listen;              /* HOST:PORT */
  char *data_dir;            /* store and media live here */
  char *log_level;           /* debug|info|warn|error */
  char *web_dir;             /* static web client; "" disables */
  char *tls_cert;                  /* "" = plain TCP (PROTOCOL.md 13) */
  char *tls_key;
  bool allow_insecure_test;  /* --allow-insecure-test-settings */
  int64_t workers;           /* event loops, one thread each (0: one per core), at most
                                TERN_WORKERS_MAX */
  /* websocket */
  int64_t ws_ping_interval_ms;
  int64_t ws_idle_timeout_ms;
  int64_t ws_auth_timeout_ms;
  int64_t ws_max_message;    /* bytes, reassembled */
  int64_t ws_max_auth_frame; /* bytes: the same, before ready (what a stranger may make us hold) */
  int64_t ws_max_outbound;   /* bytes queued to one client before 1008 */
  /* http */
  int64_t http_max_body;     /* JSON endpoints */
  int64_t http_max_header;   /* request line + headers */
  int64_t http_request_timeout_ms;
  int64_t http_max_connections;
  /* limits */
  double limits_send_rate;   /* sends per second per user, sustained */
  int64_t limits_conn_per_ip;
  int64_t limits_edit_window_ms;   /* PROTOCOL.md 15 */
  int64_t limits_delete_window_ms;
  tern_limit limits_conn_rate_per_ip;
  tern_limit limits_auth_rate_per_ip;
  tern_limit limits_login_fail;
  tern_limit limits_typing_rate;
  char *http_trusted_proxies;  /* CIDR list (base/cidr.h) */
  char *metrics_allow;         /* CIDR list */
  int64_t limits_send_burst; /* bucket size */
  int64_t limits_watch_max;  /* users one connection may watch */
  double limits_fanout_rate; /* recipient devices per second per user, sustained */
  int64_t limits_fanout_burst; /* bucket size */
  /* groups */
  tern_limit limits_key_fetch_rate; /* key bundle fetches per calling user */
  int64_t limits_key_fetch_burst;   /* its bucket's depth when > 0 (else the rate's N) */
  bool e2e_required;          /* plaintext sends and image uploads are refused */
  int64_t e2e_max_prekeys;    /* one-time prekeys per device */
  int64_t e2e_max_ciphertext; /* base64 bytes of one device's ciphertext */
  int64_t groups_max_members;
  int64_t groups_max_per_user;
  int64_t groups_page_max;   /* groups per page of GET /v1/groups at most */
  int64_t receipts_merge_window_ms; /* group receipts arriving within it share an envelope */
  int64_t cluster_node_timeout_ms; /* a writer not heard from for this long is dead */
  /* inbox */
  int64_t inbox_max_envelopes;
  int64_t inbox_ttl_ms;
  int64_t inbox_drain_batch; /* bytes read from the store per drain step */
  int64_t dedup_ttl_ms;      /* how long client ids are remembered */
  /* devices / auth */
  int64_t devices_max_per_user;
  int64_t devices_idle_expiry_ms;
  char *auth_hash_cost;      /* interactive|moderate|sensitive|test */
  int64_t auth_max_concurrent_hashes; /* 0: the threadpool's size */
  int64_t accounts_name_hold_ms;
  int64_t auth_hash_queue;
  /* presence */
  int64_t presence_persist_interval_ms;
  /* store */
  char *store_backend;       /* rocksdb (nats: cluster mode, when built) */
  int64_t store_max_open_files;
  int64_t store_group_max;   /* operations per group commit */
  int64_t store_cache_bytes; /* envelope bytes the store keeps in memory */
  int64_t store_sweep_interval_ms;
  char *nats_urls;           /* comma list (cluster mode) */
  int64_t nats_replicas;     /* 0: 3 with >= 3 URLs, else 1 */
  char *nats_namespace;      /* prefix of streams, buckets, subjects */
  char *nats_node;           /* this node's id (empty: host name) */
  int64_t nats_test_feed_delay_ms; /* tests only, with allow_insecure_test */
  /* push (src/push, PROTOCOL.md section 8) */
  int64_t push_coalesce_ms;        /* one notification per device per window */
  bool push_previews;              /* message text in notifications */
  int64_t push_max_inflight;       /* concurrent requests per provider */
  int64_t push_max_attempts;       /* tries per notification, the first included */
  int64_t push_queue_max;          /* notifications waiting or in flight, all providers */
  int64_t push_queue_per_device;   /* of those, for one device */
  int64_t push_retry_base_ms;      /* first backoff; doubles per attempt, with jitter */
  int64_t push_retry_max_ms;       /* backoff cap; a longer Retry-After gives up */
  int64_t push_request_timeout_ms; /* one HTTP request to a provider */
  int64_t push_ttl_ms;             /* how long a provider may hold a notification */
  char *push_ca_file;              /* "" = system CAs */
  char *push_fcm_service_account;  /* service-account JSON; "" = FCM off */
  char *push_fcm_url;
  char *push_fcm_token_url;        /* "" = the service account's token_uri */
  char *push_apns_key_file;        /* .p8; "" = APNs off */
  char *push_apns_key_id;
  char *push_apns_team_id;
  char *push_apns_topic;
  char *push_apns_url;
  char *push_webpush_vapid_key_file; /* PEM P-256 private key; "" = Web Push off */
  char *push_webpush_subject;      /* VAPID sub: mailto: or https: */
  char *push_webpush_allowed_hosts; /* comma list; "*.x" matches subdomains of x */
  char *push_webhook_url;          /* "" = webhook off */
  char *push_webhook_secret;       /* HMAC-SHA256 key */
  /* media (src/media, PROTOCOL.md section 7) */
  int64_t media_max_bytes;          /* largest upload (413) */
  int64_t media_ttl_ms;             /* deleted this long after upload */
  int64_t media_unsent_ttl_ms;      /* never-sent uploads deleted after this */
  int64_t media_avatar_grace_ms;    /* an avatar no longer set is deleted after this */
  int64_t media_max_dimension;      /* px a side, checked on the header before decoding */
  int64_t media_max_pixels;         /* width x height, likewise */
  int64_t media_thumb_size;         /* thumbnail px on the longer side */
  int64_t media_upload_timeout_ms;  /* an upload that sends nothing this long fails */
  int64_t media_min_upload_rate;    /* bytes/s an upload must average past its first upload_timeout (0: off) */
  int64_t media_quota_bytes_per_hour; /* upload bytes per user per hour (429 past it) */
  int64_t media_sweep_batch;        /* records removed per sweep step */
  int64_t media_sweep_interval_ms;  /* how often expired media are swept */
  int64_t media_decode_jobs;        /* images decoded at once in the threadpool */
} tern_config;

/* Fills cfg with defaults. */
void tern_config_defaults(tern_config *cfg);
/* Applies the file named by --config (if any), then env, then flags. On error writes a
 * one-line reason into err and returns -EINVAL. Sets *want_help when --help was given. */
int tern_config_load(tern_config *cfg, int argc, char **argv, bool *want_help, char *err, size_t errlen);
/* Prints usage and every setting with its default. */
void tern_config_help(FILE *out, const char *prog);
void tern_config_free(tern_config *cfg);

/* Parsers shared with tests and other programs. Return 0 or -EINVAL. */
int tern_parse_duration_ms(const char *s, int64_t *out);
int tern_parse_size(const char *s, int64_t *out);

#endif
