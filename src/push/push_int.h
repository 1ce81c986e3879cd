/* push_int: what the push layer's files share (internal to src/push).
 *
 * push.c owns the notifications ("jobs"): queues, the in-flight cap, retries, coalescing and
 * metrics. A provider (fcm.c, apns.c, webpush.c, webhook.c) only turns a job into an HTTP
 * request (prepare) and an HTTP answer into an outcome (classify), behind the small table of
 * function pointers below. push.c builds the curl handle from what prepare filled in. */
#ifndef TERN_PUSH_PUSH_INT_H
#define TERN_PUSH_PUSH_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <uv.h>

#include "base/buf.h"
#include "base/config.h"
#include "base/map.h"
#include "push/curl_uv.h"
#include "push/push.h"

typedef struct tern_push_pv tern_push_pv;
typedef struct tern_push_job tern_push_job;

#define TERN_PUSH_RESP_MAX (16 * 1024) /* response bytes kept for classify; the rest is dropped */

/* What prepare decided. */
typedef enum {
  TERN_PUSH_PREP_START, /* url, headers and body are set: send it */
  TERN_PUSH_PREP_WAIT,  /* not yet (FCM: waiting for an access token); the job keeps its
                           in-flight slot and the provider later calls tern_push_job_resume or
                           tern_push_job_outcome */
  TERN_PUSH_PREP_FAIL,  /* cannot be sent at all (counted "failed") */
} tern_push_prep;

/* What one attempt came to. */
typedef enum {
  TERN_PUSH_OUT_OK,      /* delivered to the provider */
  TERN_PUSH_OUT_INVALID, /* the token is dead */
  TERN_PUSH_OUT_RETRY,   /* try again later (429, 5xx, network) */
  TERN_PUSH_OUT_FAIL,    /* permanent failure */
} tern_push_outcome;

typedef struct tern_push_provider_ops {
  /* Fills job->url, job->headers and job->body for the next attempt. */
  tern_push_prep (*prepare)(tern_push_pv *pv, tern_push_job *job);
  /* Classifies a complete HTTP answer (status, job->resp holds the body). */
  tern_push_outcome (*classify)(tern_push_pv *pv, tern_push_job *job, long status);
  /* Frees the provider's state; cancels its own transfers (FCM's token request). */
  void (*close)(tern_push_pv *pv);
} tern_push_provider_ops;

struct tern_push_pv {
  const tern_push_provider_ops *ops; /* NULL while the provider is off */
  tern_push *push;                   /* owner */
  tern_push_provider id;
  void *impl;                        /* the provider's own state */
  tern_push_job *qhead, *qtail;      /* waiting for an in-flight slot, FIFO */
  size_t inflight;                   /* jobs holding a slot (request running or WAIT) */
  size_t max_seen;                   /* the most ever in flight */
  uint64_t results[TERN_PUSH_NRESULTS];
  uint64_t retries;
};

struct tern_push_job {
  tern_push *push;
  tern_push_job *next;               /* provider queue or provider wait list */
  tern_push_job *all_prev, *all_next; /* push->jobs, for teardown */
  tern_push_reg reg;                 /* owned copy */
  char *device_id;                   /* owned */
  char *sender;                      /* owned */
  char *group;                       /* owned: the group's name, or NULL for a 1:1 message */
  char *group_id;                    /* owned: its id, or NULL */
  char *preview;                     /* owned; NULL unless previews are on and one was given */
  uint32_t count;                    /* messages */
  tern_push_cb cb;                   /* final result goes here */
  void *arg;
  int attempts;                      /* attempts started */
  uint64_t due;                      /* retry: loop time (ms) to start again */
  size_t heap_idx;                   /* position in the retry heap */
  /* the current attempt, filled by prepare */
  char *url;                         /* tern_malloc'd */
  struct curl_slist *headers;
  tern_buf body;
  bool h2_prior;                     /* HTTP/2 over cleartext without upgrade (APNs on http://) */
  bool guard_private;                /* refuse to connect to a private address ... */
  bool host_listed;                  /* ... unless the host is listed exactly */
  bool refused;                      /* the connect guard refused the address */
  /* running */
  CURL *easy;                        /* non-NULL while a request is running */
  tern_buf resp;                     /* response body, up to TERN_PUSH_RESP_MAX */
};

struct tern_push {
  uv_loop_t *loop;
  tern_push_cu *cu;
  tern_push_pv pv[TERN_PUSH_NPROVIDERS];
  /* settings */
  bool previews;
  int64_t coalesce_ms, max_inflight, max_attempts, queue_max, queue_per_device;
  int64_t retry_base_ms, retry_max_ms, timeout_ms, ttl_ms;
  char *ca_file;                     /* NULL = system CAs */
  char **allowed_hosts;              /* lower-case; "*.x" and "*" are patterns */
  size_t nallowed;
  char *vapid_public_b64;            /* NULL unless Web Push is on */
  /* jobs */
  tern_push_job *jobs;               /* every pending job */
  uint64_t pending;
  tern_map per_device;               /* device id → pending count (as uintptr_t) */
  tern_push_job **heap;              /* retry min-heap on due */
  size_t heap_len, heap_cap;
  uv_timer_t retry_timer;
  uv_timer_t kick_timer;             /* runs dispatch on the next loop iteration */
  bool kick_pending;
  CURL **easy_pool;                  /* reset handles ready for reuse */
  size_t easy_pool_len, easy_pool_cap;
  /* coalescing */
  tern_map windows;                  /* device id → window */
  struct tern_push_window *win_head, *win_tail; /* by deadline: windows have one length */
  uv_timer_t win_timer;
  tern_push_cb result_cb;
  void *result_arg;
  uint64_t rng;                      /* xorshift state for jitter */
  int open_handles;                  /* handles (and cu) not yet closed, during close */
  bool closing;
};

/* Providers: each fills pv->ops and pv->impl from cfg, or leaves ops NULL when not configured.
 * Returns 0, or -EINVAL with a reason naming the setting (and file) in err. */
int tern_push_fcm_open(tern_push_pv *pv, const tern_config *cfg, char *err, size_t errlen);
int tern_push_apns_open(tern_push_pv *pv, const tern_config *cfg, char *err, size_t errlen);
int tern_push_webpush_open(tern_push_pv *pv, const tern_config *cfg, char *err, size_t errlen);
int tern_push_webhook_open(tern_push_pv *pv, const tern_config *cfg, char *err, size_t errlen);

/* For providers. */
/* Appends "Name: value" to the job's request headers. */
void tern_push_job_header(tern_push_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends the JSON object that Web Push and the webhook carry as their payload:
 *   {"type":"msg","from":"alice","count":3[,"preview":"..."]}
 * extra (may be NULL) is inserted verbatim before the closing brace, e.g. ",\"token\":\"x\"". */
void tern_push_payload_json(const tern_push_job *job, tern_buf *b, const char *extra);
/* The human line shown under the sender's name: the preview when carried, else "N new messages". */
void tern_push_alert_body(const tern_push_job *job, tern_buf *b);
/* The title: the sender's name, or the group's for a group message. */
void tern_push_alert_title(const tern_push_job *job, tern_buf *b);
/* A WAIT job may go now: prepare runs again. */
void tern_push_job_resume(tern_push_job *job);
/* A WAIT job's attempt ended without a request (e.g. no access token): apply outcome. */
void tern_push_job_outcome(tern_push_job *job, tern_push_outcome out, int64_t retry_after_ms);
/* A curl handle with the layer's common options (timeouts, CA file, protocols, HTTP/2), for a
 * provider's own requests; start it with tern_push_cu_add(push->cu, ...) and give it back with
 * tern_push_easy_release. */
CURL *tern_push_easy_get(tern_push *p);
void tern_push_easy_release(tern_push *p, CURL *easy);
/* Wall-clock seconds, for JWT claims. */
int64_t tern_push_now_s(void);
/* The common HTTP mapping: 2xx ok, 429 and 5xx retry, everything else fail. */
tern_push_outcome tern_push_classify_common(long status);

/* URLs (reg.c). */
typedef struct tern_push_url {
  bool https;     /* else http */
  char host[256]; /* lower-case; an IPv6 literal without brackets */
  int port;       /* explicit port or 0 */
  bool ip;        /* host is an IP literal */
  bool private_ip; /* loopback, private, link-local, unspecified, ... (or localhost) */
} tern_push_url;
/* Parses an absolute http(s) URL, refusing userinfo, spaces and control characters. */
int tern_push_url_parse(const char *url, tern_push_url *out, char *err, size_t errlen);
/* The origin "https://host[:port]" (the VAPID aud). */
void tern_push_url_origin(const tern_push_url *u, tern_buf *b);
/* Checks a Web Push endpoint against push.webpush.allowed_hosts (see tern_push_reg_parse).
 * *listed is set when the host is listed exactly. Returns 0 or -EINVAL with a reason. */
int tern_push_endpoint_check(const tern_push *p, const char *endpoint, bool *listed, char *err, size_t errlen);
/* True for socket addresses a Web Push request must not reach unless listed exactly. */
bool tern_push_sockaddr_private(const struct sockaddr *sa);

#endif
