/* webpush: Web Push to a browser's push service.
 *
 *   POST <the subscription's endpoint>                             (RFC 8030)
 *   TTL: <push.ttl in seconds>   Urgency: high
 *   Content-Encoding: aes128gcm  Content-Type: application/octet-stream
 *   Authorization: vapid t=<ES256 JWT {"aud":<origin of endpoint>,"exp":now+12h,"sub":<subject>}>,
 *                        k=<our public key, base64url>             (RFC 8292)
 *   body: RFC 8291 encryption of {"type":"msg","from":"alice","count":3}
 * The payload is always encrypted (the push service must not read it), padded to a multiple of
 * 64 bytes so that its size says little about the sender's name. The VAPID JWT for an origin is
 * reused for an hour (push services accept up to 24 h), which saves a signature per message.
 * The endpoint passed the allow-list when it was registered; it is checked again against the
 * current list before every send, and the address it resolves to is checked at connect time.
 * Answers: 2xx delivered; 404 and 410 mean the subscription is gone; 429 and 5xx retried;
 * anything else (400/403: our VAPID or payload is wrong, 413) fails. */
#include <errno.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/map.h"
#include "push/ece.h"
#include "push/jwt.h"
#include "push/push_int.h"

#define VAPID_EXP_S (12 * 3600)  /* JWT lifetime; RFC 8292 allows at most 24 h */
#define VAPID_REUSE_S 3600       /* sign again for an origin after this */
#define VAPID_CACHE_MAX 1024     /* origins remembered; past it the cache starts over */
#define PAD_TO 64

typedef struct vapid_entry {
  char *jwt;       /* compact JWT */
  int64_t made;    /* s */
} vapid_entry;

typedef struct webpush {
  EVP_PKEY *key;   /* VAPID key pair (P-256) */
  char *pub_b64;   /* its public point, base64url: the k= parameter */
  char *subject;   /* sub claim */
  tern_map cache;  /* origin → vapid_entry */
} webpush;

static bool free_entry(const char *k, size_t kl, void *v, void *arg) {
  vapid_entry *e = v;
  tern_free(e->jwt);
  tern_free(e);
  return true;
}

static const char *vapid_jwt(webpush *w, const char *origin) {
  int64_t now = tern_push_now_s();
  vapid_entry *e = tern_map_gets(&w->cache, origin);
  if (e && now - e->made < VAPID_REUSE_S && now >= e->made) return e->jwt;
  tern_buf c = {0}, jwt = {0};
  tern_buf_puts(&c, "{\"aud\":");
  tern_buf_put_json_str(&c, origin, strlen(origin));
  tern_buf_printf(&c, ",\"exp\":%lld,\"sub\":", (long long)(now + VAPID_EXP_S));
  tern_buf_put_json_str(&c, w->subject, strlen(w->subject));
  tern_buf_putc(&c, '}');
  int rc = tern_push_jwt_sign(w->key, TERN_PUSH_ES256, "{\"typ\":\"JWT\",\"alg\":\"ES256\"}", tern_buf_cstr(&c), &jwt);
  tern_buf_free(&c);
  if (rc < 0) {
    tern_buf_free(&jwt);
    TERN_ERROR("push: cannot sign a VAPID token", "%s", "");
    return NULL;
  }
  if (!e) {
    if (w->cache.count >= VAPID_CACHE_MAX) {
      tern_map_each(&w->cache, free_entry, NULL);
      tern_map_free(&w->cache);
      memset(&w->cache, 0, sizeof w->cache);
    }
    e = TERN_NEW(vapid_entry);
    tern_map_puts(&w->cache, origin, e);
  }
  tern_free(e->jwt);
  e->jwt = tern_buf_steal(&jwt, NULL);
  e->made = now;
  return e->jwt;
}

static tern_push_prep webpush_prepare(tern_push_pv *pv, tern_push_job *job) {
  webpush *w = pv->impl;
  tern_push *p = pv->push;
  char why[200];
  bool listed;
  if (tern_push_endpoint_check(p, job->reg.token, &listed, why, sizeof why) < 0) {
    TERN_WARN("push: stored Web Push endpoint no longer allowed", "device=%s reason=%s", job->device_id,
              tern_log_quote(why));
    return TERN_PUSH_PREP_FAIL;
  }
  tern_push_url u;
  tern_push_url_parse(job->reg.token, &u, why, sizeof why);
  tern_buf origin = {0};
  tern_push_url_origin(&u, &origin);
  const char *jwt = vapid_jwt(w, tern_buf_cstr(&origin));
  tern_buf_free(&origin);
  if (!jwt) return TERN_PUSH_PREP_FAIL;

  tern_buf pt = {0};
  tern_push_payload_json(job, &pt, NULL);
  size_t pad = (PAD_TO - (pt.len + 1) % PAD_TO) % PAD_TO;
  int rc = tern_push_ece_encrypt(job->reg.p256dh, job->reg.auth, pt.data, pt.len, pad, NULL, NULL, &job->body);
  tern_buf_free(&pt);
  if (rc < 0) {
    TERN_WARN("push: cannot encrypt for a Web Push subscription", "device=%s error=%d", job->device_id, rc);
    return TERN_PUSH_PREP_FAIL;
  }
  job->url = tern_strdup(job->reg.token);
  job->guard_private = true;
  job->host_listed = listed;
  tern_push_job_header(job, "TTL: %lld", (long long)(p->ttl_ms / 1000));
  tern_push_job_header(job, "Urgency: high");
  tern_push_job_header(job, "Content-Type: application/octet-stream");
  tern_push_job_header(job, "Content-Encoding: aes128gcm");
  tern_push_job_header(job, "Authorization: vapid t=%s, k=%s", jwt, w->pub_b64);
  return TERN_PUSH_PREP_START;
}

static tern_push_outcome webpush_classify(tern_push_pv *pv, tern_push_job *job, long status) {
  if (status == 404 || status == 410) return TERN_PUSH_OUT_INVALID;
  if (status == 400 || status == 401 || status == 403) {
    tern_buf_cstr(&job->resp);
    TERN_WARN("push: Web Push service refused the request", "status=%ld body=%s", status,
              tern_log_quote(job->resp.data));
  }
  return tern_push_classify_common(status);
}

static void webpush_close(tern_push_pv *pv) {
  webpush *w = pv->impl;
  tern_map_each(&w->cache, free_entry, NULL);
  tern_map_free(&w->cache);
  EVP_PKEY_free(w->key);
  tern_free(w->pub_b64);
  tern_free(w->subject);
  tern_free(w);
  pv->impl = NULL;
}

static const tern_push_provider_ops webpush_ops = {webpush_prepare, webpush_classify, webpush_close};

int tern_push_webpush_open(tern_push_pv *pv, const tern_config *cfg, char *err, size_t errlen) {
  const char *path = cfg->push_webpush_vapid_key_file;
  if (!path || !*path) return 0;
  const char *sub = cfg->push_webpush_subject ? cfg->push_webpush_subject : "";
  if (strncmp(sub, "mailto:", 7) != 0 && strncmp(sub, "https://", 8) != 0) {
    snprintf(err, errlen, "push.webpush.subject must be a mailto: or https: contact when Web Push is on");
    return -EINVAL;
  }
  EVP_PKEY *key = tern_push_key_load_file("push.webpush.vapid_key_file", path, err, errlen);
  if (!key) return -EINVAL;
  uint8_t pub[65];
  if (!tern_push_key_is_p256(key) || tern_push_p256_public(key, pub) < 0) {
    snprintf(err, errlen, "push.webpush.vapid_key_file: %s is not a P-256 key", path);
    EVP_PKEY_free(key);
    return -EINVAL;
  }
  webpush *w = TERN_NEW(webpush);
  w->key = key;
  w->subject = tern_strdup(sub);
  tern_buf b = {0};
  tern_push_b64url_encode(&b, pub, sizeof pub);
  w->pub_b64 = tern_buf_steal(&b, NULL);
  pv->push->vapid_public_b64 = tern_strdup(w->pub_b64);
  pv->impl = w;
  pv->ops = &webpush_ops;
  return 0;
}
