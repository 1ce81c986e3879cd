/* push: notifications for devices without a live connection (PROTOCOL.md section 8), sent to
 * FCM (HTTP v1), APNs (HTTP/2, token auth), Web Push (RFC 8030 + RFC 8291 + RFC 8292 VAPID) or
 * an operator's webhook, through libcurl's multi-socket API on the caller's libuv loop.
 *
 * What the core does with it:
 *   start-up      tern_push_open (reads key files; a provider whose settings are empty is off)
 *                 tern_push_set_result_cb (hears the outcome of coalesced notifications)
 *   PUT /v1/push  tern_push_reg_parse → 400 bad_request with the message on error;
 *                 persist tern_push_reg_serialize; reload with tern_push_reg_deserialize
 *   GET /v1/push/vapid  tern_push_vapid_public_key (NULL → 404)
 *   msg envelope from another user to a device with no live connection
 *                 tern_push_offline_message (opens or counts into the device's window)
 *   device connects, logs out or deletes its registration
 *                 tern_push_device_online (cancels the window)
 *   result TERN_PUSH_INVALID_TOKEN
 *                 delete the device's registration if it still equals the reg reported
 *   /metrics      print the HELP/TYPE lines, then tern_push_metrics_render
 *   shutdown      tern_push_close, then let the loop run until its handles are closed
 *
 * Threading: everything is called on the loop thread. Callbacks run from the loop, never from
 * inside the call that queued the work. tern_push_close must not be called from a callback. */
#ifndef TERN_PUSH_PUSH_H
#define TERN_PUSH_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"
#include "base/config.h"

typedef struct tern_push tern_push;

typedef enum {
  TERN_PUSH_FCM = 0,
  TERN_PUSH_APNS,
  TERN_PUSH_WEBPUSH,
  TERN_PUSH_WEBHOOK,
  TERN_PUSH_NPROVIDERS
} tern_push_provider;

/* The final result of one notification; the labels of tern_push_total's result. */
typedef enum {
  TERN_PUSH_OK = 0,        /* "ok": the provider accepted it */
  TERN_PUSH_INVALID_TOKEN, /* "invalid_token": the registration is dead; delete it */
  TERN_PUSH_FAILED,        /* "failed": a permanent error, or every attempt failed */
  TERN_PUSH_DROPPED,       /* "dropped": never sent, the queue was full (coalesced sends only) */
  TERN_PUSH_NRESULTS
} tern_push_result;

#define TERN_PUSH_SENDER_MAX 64     /* bytes of sender name carried */
#define TERN_PUSH_GROUP_MAX 128     /* bytes of group name carried (names are at most 100) */
#define TERN_PUSH_PREVIEW_MAX 100   /* bytes of preview text carried (cut at a UTF-8 boundary) */
#define TERN_PUSH_ENDPOINT_MAX 2048 /* longest Web Push endpoint URL accepted */

/* One device's registration, as PUT /v1/push gave it. Owns token. */
typedef struct tern_push_reg {
  tern_push_provider provider;
  char *token;        /* fcm, webhook: the token as given; apns: lower-case hex; webpush: endpoint URL */
  uint8_t p256dh[65]; /* webpush: the subscription's P-256 public key (uncompressed point) */
  uint8_t auth[16];   /* webpush: the subscription's auth secret */
} tern_push_reg;

/* What a notification says. Strings are copied by the calls that take a note. */
typedef struct tern_push_note {
  const char *sender;  /* username of the sender (the latest one, for a coalesced window) */
  const char *group;   /* the group's name for a group message, or NULL (the latest one) */
  const char *group_id;/* and its id (with group) */
  uint32_t count;      /* messages it stands for, >= 1 */
  const char *preview; /* message text, or NULL; carried only when push.previews = true */
} tern_push_note;

/* The final result of a notification. device_id and reg are valid only during the call (reg is
 * the registration the notification was sent with: compare it with the stored one before
 * deleting on TERN_PUSH_INVALID_TOKEN, since the device may have registered again meanwhile). */
typedef void (*tern_push_cb)(void *arg, const char *device_id, const tern_push_reg *reg, tern_push_result result);

/* Opens the push layer on loop with cfg's push.* settings (cfg is read, not kept). Reads every
 * configured key file now: a missing, unreadable or malformed key, or an incomplete provider
 * configuration, is an error whose one-line reason (naming the setting and the file) goes to
 * err; then returns -EINVAL and *out is NULL. Providers with empty settings are off. */
int tern_push_open(uv_loop_t *loop, const tern_config *cfg, tern_push **out, char *err, size_t errlen);
/* Drops every pending notification without calling its callback, cancels every window and
 * closes the handles; the memory is freed once the loop has run the close callbacks. */
void tern_push_close(tern_push *p);

bool tern_push_configured(const tern_push *p, tern_push_provider provider);
const char *tern_push_provider_name(tern_push_provider provider); /* "fcm", "apns", "webpush", "webhook" */
const char *tern_push_result_name(tern_push_result result);       /* "ok", "invalid_token", ... */

/* Parses and validates a PUT /v1/push body (JSON, len bytes). On success fills *out (free with
 * tern_push_reg_free) and returns 0. Otherwise returns -EINVAL with a human sentence in err,
 * for a 400 bad_request: malformed body, unknown or unconfigured provider, bad token or keys,
 * and for Web Push an endpoint that is not https, not on push.webpush.allowed_hosts, or a
 * loopback/private/link-local/unspecified address that is not listed there exactly. */
int tern_push_reg_parse(const tern_push *p, const char *body, size_t len, tern_push_reg *out, char *err,
                        size_t errlen);
/* A compact printable string holding the whole registration, for the store ("fcm:TOKEN",
 * "apns:HEX", "webhook:TOKEN", "webpush:P256DH:AUTH:ENDPOINT", keys in base64url). Caller frees
 * it with tern_free; *len (if not NULL) gets its length. */
char *tern_push_reg_serialize(const tern_push_reg *r, size_t *len);
/* The reverse; returns 0 or -EINVAL for a string serialize did not make. It does not re-check
 * the allow-list: that happens again before every Web Push send, against the current setting. */
int tern_push_reg_deserialize(const char *s, size_t len, tern_push_reg *out);
void tern_push_reg_copy(tern_push_reg *dst, const tern_push_reg *src);
bool tern_push_reg_equal(const tern_push_reg *a, const tern_push_reg *b);
void tern_push_reg_free(tern_push_reg *r); /* frees token; the struct itself is the caller's */

/* Queues one notification for device_id. Returns 0 and later calls cb(arg, ...) exactly once
 * with the final result; or returns -ENOTSUP (provider not configured) or -ENOBUFS (push.queue_max
 * or push.queue_per_device reached; counted as "dropped") and never calls cb. At most
 * push.max_inflight requests per provider are in flight; the rest wait in FIFO order. 429, 5xx
 * and network errors are retried with exponential backoff and jitter (Retry-After honoured) up
 * to push.max_attempts tries. arg must stay valid until cb runs (or until tern_push_close). */
int tern_push_notify(tern_push *p, const char *device_id, const tern_push_reg *reg, const tern_push_note *note,
                     tern_push_cb cb, void *arg);

/* Coalescing (push.coalesce). The callback that hears the results of the notifications the
 * windows send (including TERN_PUSH_DROPPED when the queue refused one). */
void tern_push_set_result_cb(tern_push *p, tern_push_cb cb, void *arg);
/* A msg envelope from sender reached device_id while it had no live connection. The first one
 * opens the device's window; later ones only count (the latest sender and preview are kept, and
 * reg replaces the stored registration if it changed). When the window ends one notification
 * goes out with the count. A provider that is not configured is ignored. */
void tern_push_offline_message(tern_push *p, const char *device_id, const tern_push_reg *reg, const char *sender,
                               const char *group_id, const char *group, const char *preview);
/* The device connected (or logged out, or deleted its registration): cancel its window. */
void tern_push_device_online(tern_push *p, const char *device_id);

/* The VAPID public key (base64url of the uncompressed P-256 point) for GET /v1/push/vapid, or
 * NULL when Web Push is not configured. Owned by p. */
const char *tern_push_vapid_public_key(const tern_push *p);

/* Appends `tern_push_total{provider="fcm",result="ok"} N` lines for every configured provider
 * and every result ("ok", "invalid_token", "failed", "dropped", and "retry": attempts that were
 * scheduled for another try). No HELP/TYPE lines: the caller prints them. */
void tern_push_metrics_render(const tern_push *p, tern_buf *b);
/* The same for several instances (one per worker), their counters added up; NULLs are
 * skipped. Any thread: the counters are read with relaxed atomic loads. */
void tern_push_metrics_render_sum(const tern_push *const *ps, size_t n, tern_buf *b);

/* Point-in-time figures, for tests, benchmarks and gauges. */
typedef struct tern_push_stats {
  uint64_t pending;                           /* notifications accepted and not finished */
  uint64_t windows;                           /* open coalescing windows */
  uint64_t inflight[TERN_PUSH_NPROVIDERS];     /* requests in flight now */
  uint64_t max_inflight[TERN_PUSH_NPROVIDERS]; /* the most ever in flight at once */
  uint64_t results[TERN_PUSH_NPROVIDERS][TERN_PUSH_NRESULTS];
  uint64_t retries[TERN_PUSH_NPROVIDERS];
} tern_push_stats;
void tern_push_get_stats(const tern_push *p, tern_push_stats *out);

#endif
