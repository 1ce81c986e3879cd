/* webhook: an HMAC-signed JSON POST to the operator's own push gateway (push.webhook.url), for
 * delivery paths tern does not speak itself. The URL is the operator's, never a client's: the
 * client only registers an opaque token that the gateway understands.
 *
 *   POST push.webhook.url
 *   Content-Type: application/json
 *   X-Tern-Timestamp: <ms since the epoch, also the body's "ts">
 *   X-Tern-Signature: sha256=<hex HMAC-SHA256(push.webhook.secret, body)>
 *   {"type":"msg","from":"alice","count":3,"token":"<the device's token>","ts":<ms>}
 * The timestamp lives inside the signed body, so a receiver that checks it (say, within five
 * minutes) also refuses replays. A 2xx answer is delivery, 410 means the token is dead, 429 and
 * 5xx are retried. */
#include <errno.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "push/jwt.h"
#include "push/push_int.h"

#define WEBHOOK_SECRET_MIN 16

typedef struct webhook {
  char *url;    /* the gateway */
  char *secret; /* HMAC key */
} webhook;

static tern_push_prep webhook_prepare(tern_push_pv *pv, tern_push_job *job) {
  webhook *w = pv->impl;
  int64_t ts = tern_now_ms();
  tern_buf extra = {0};
  tern_buf_puts(&extra, ",\"token\":");
  tern_buf_put_json_str(&extra, job->reg.token, strlen(job->reg.token));
  tern_buf_printf(&extra, ",\"ts\":%lld", (long long)ts);
  tern_push_payload_json(job, &job->body, tern_buf_cstr(&extra));
  tern_buf_free(&extra);
  uint8_t mac[32];
  char hex[65];
  tern_push_hmac_sha256(w->secret, strlen(w->secret), job->body.data, job->body.len, mac);
  tern_hex(hex, mac, sizeof mac);
  job->url = tern_strdup(w->url);
  tern_push_job_header(job, "Content-Type: application/json");
  tern_push_job_header(job, "X-Tern-Timestamp: %lld", (long long)ts);
  tern_push_job_header(job, "X-Tern-Signature: sha256=%s", hex);
  return TERN_PUSH_PREP_START;
}

static tern_push_outcome webhook_classify(tern_push_pv *pv, tern_push_job *job, long status) {
  if (status == 410) return TERN_PUSH_OUT_INVALID;
  return tern_push_classify_common(status);
}

static void webhook_close(tern_push_pv *pv) {
  webhook *w = pv->impl;
  tern_free(w->url);
  if (w->secret) {
    memset(w->secret, 0, strlen(w->secret));
    tern_free(w->secret);
  }
  tern_free(w);
  pv->impl = NULL;
}

static const tern_push_provider_ops webhook_ops = {webhook_prepare, webhook_classify, webhook_close};

int tern_push_webhook_open(tern_push_pv *pv, const tern_config *cfg, char *err, size_t errlen) {
  if (!cfg->push_webhook_url || !*cfg->push_webhook_url) return 0;
  tern_push_url u;
  char why[128];
  if (tern_push_url_parse(cfg->push_webhook_url, &u, why, sizeof why) < 0) {
    snprintf(err, errlen, "push.webhook.url: %s is not an http(s) URL", cfg->push_webhook_url);
    return -EINVAL;
  }
  if (!cfg->push_webhook_secret || strlen(cfg->push_webhook_secret) < WEBHOOK_SECRET_MIN) {
    snprintf(err, errlen, "push.webhook.secret must be at least %d characters when push.webhook.url is set",
             WEBHOOK_SECRET_MIN);
    return -EINVAL;
  }
  webhook *w = TERN_NEW(webhook);
  w->url = tern_strdup(cfg->push_webhook_url);
  w->secret = tern_strdup(cfg->push_webhook_secret);
  pv->impl = w;
  pv->ops = &webhook_ops;
  return 0;
}
