/* apns: Apple Push Notification service over HTTP/2 with token-based authentication.
 *
 *   POST {push.apns.url}/3/device/<hex token>
 *   authorization: bearer <ES256 JWT, header {"alg":"ES256","kid":key_id}, claims {"iss":team_id,"iat":now}>
 *   apns-topic: <bundle id>   apns-push-type: alert   apns-priority: 10
 *   apns-collapse-id: tern.<sender>   apns-expiration: <now + push.ttl, seconds>
 *   {"aps":{"alert":{"title":"alice","body":"3 new messages"},"sound":"default","thread-id":"alice"},
 *    "from":"alice","count":3}
 * Apple wants the provider token reused (it throttles fresh ones: at most one per 20 minutes)
 * and refuses one older than an hour, so it is signed once and renewed after 50 minutes, or at
 * once when APNs answers 403 ExpiredProviderToken.
 * Answers: 200 delivered; 410 (Unregistered), or 400 BadDeviceToken / DeviceTokenNotForTopic:
 * the token is dead; 429 and 5xx retried; anything else fails. */
#include <errno.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/log.h"
#include "push/jwt.h"
#include "push/push_int.h"

#define APNS_JWT_REFRESH_S (50 * 60)

typedef struct apns {
  EVP_PKEY *key;   /* the .p8 signing key (P-256) */
  char *key_id;    /* kid */
  char *team_id;   /* iss */
  char *topic;     /* apns-topic */
  char *base;      /* push.apns.url without a trailing '/' */
  bool cleartext;  /* base is http://: HTTP/2 with prior knowledge (stand-ins only) */
  tern_buf jwt;    /* current provider token */
  int64_t jwt_iat; /* when it was made (s) */
} apns;

static int apns_jwt(apns *a) {
  int64_t now = tern_push_now_s();
  if (a->jwt.len && now - a->jwt_iat < APNS_JWT_REFRESH_S && now >= a->jwt_iat) return 0;
  tern_buf h = {0}, c = {0};
  tern_buf_puts(&h, "{\"alg\":\"ES256\",\"kid\":");
  tern_buf_put_json_str(&h, a->key_id, strlen(a->key_id));
  tern_buf_putc(&h, '}');
  tern_buf_puts(&c, "{\"iss\":");
  tern_buf_put_json_str(&c, a->team_id, strlen(a->team_id));
  tern_buf_printf(&c, ",\"iat\":%lld}", (long long)now);
  tern_buf_reset(&a->jwt);
  int rc = tern_push_jwt_sign(a->key, TERN_PUSH_ES256, tern_buf_cstr(&h), tern_buf_cstr(&c), &a->jwt);
  tern_buf_free(&h);
  tern_buf_free(&c);
  if (rc < 0) {
    TERN_ERROR("push: cannot sign the APNs provider token", "%s", "");
    tern_buf_reset(&a->jwt);
    return rc;
  }
  tern_buf_cstr(&a->jwt);
  a->jwt_iat = now;
  return 0;
}

/* Header values must not be able to carry CR/LF; usernames are [a-z0-9_.-] already. */
static void header_safe(char *out, size_t cap, const char *s) {
  size_t i = 0;
  for (; s[i] && i + 1 < cap; i++) {
    char ch = s[i];
    out[i] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                     ch == '-' || ch == '_'
                 ? ch
                 : '_';
  }
  out[i] = '\0';
}

static tern_push_prep apns_prepare(tern_push_pv *pv, tern_push_job *job) {
  apns *a = pv->impl;
  tern_push *p = pv->push;
  if (apns_jwt(a) < 0) return TERN_PUSH_PREP_FAIL;
  tern_buf url = {0};
  tern_buf_printf(&url, "%s/3/device/%s", a->base, job->reg.token);
  job->url = tern_buf_steal(&url, NULL);
  job->h2_prior = a->cleartext;
  char collapse[64 - 5]; /* apns-collapse-id is at most 64 bytes */
  header_safe(collapse, sizeof collapse, job->sender);
  tern_push_job_header(job, "authorization: bearer %s", a->jwt.data);
  tern_push_job_header(job, "apns-topic: %s", a->topic);
  tern_push_job_header(job, "apns-push-type: alert");
  tern_push_job_header(job, "apns-priority: 10");
  tern_push_job_header(job, "apns-collapse-id: tern.%s", collapse);
  tern_push_job_header(job, "apns-expiration: %lld",
                       p->ttl_ms ? (long long)(tern_push_now_s() + p->ttl_ms / 1000) : 0LL);
  tern_push_job_header(job, "content-type: application/json");
  tern_buf *b = &job->body;
  tern_buf_puts(b, "{\"aps\":{\"alert\":{\"title\":");
  tern_buf title = {0};
  tern_push_alert_title(job, &title);
  tern_buf_put_json_str(b, title.data ? title.data : "", title.len);
  tern_buf_puts(b, ",\"body\":");
  tern_buf alert = {0};
  tern_push_alert_body(job, &alert);
  tern_buf_put_json_str(b, alert.data ? alert.data : "", alert.len);
  tern_buf_free(&alert);
  tern_buf_puts(b, "},\"sound\":\"default\",\"thread-id\":"); /* one thread per chat */
  tern_buf_put_json_str(b, title.data ? title.data : "", title.len);
  tern_buf_free(&title);
  tern_buf_puts(b, "},\"from\":");
  tern_buf_put_json_str(b, job->sender, strlen(job->sender));
  if (job->group) {
    tern_buf_puts(b, ",\"group\":");
    tern_buf_put_json_str(b, job->group, strlen(job->group));
    tern_buf_puts(b, ",\"group_id\":");
    tern_buf_put_json_str(b, job->group_id ? job->group_id : "", job->group_id ? strlen(job->group_id) : 0);
  }
  tern_buf_printf(b, ",\"count\":%u}", job->count);
  return TERN_PUSH_PREP_START;
}

static tern_push_outcome apns_classify(tern_push_pv *pv, tern_push_job *job, long status) {
  apns *a = pv->impl;
  if (status == 200) return TERN_PUSH_OUT_OK;
  if (status == 410) return TERN_PUSH_OUT_INVALID;
  char reason[64] = "";
  cJSON *j = cJSON_ParseWithLength(job->resp.data ? job->resp.data : "", job->resp.len);
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "reason");
  if (cJSON_IsString(r)) snprintf(reason, sizeof reason, "%s", r->valuestring);
  cJSON_Delete(j);
  if (status == 400 && (!strcmp(reason, "BadDeviceToken") || !strcmp(reason, "DeviceTokenNotForTopic")))
    return TERN_PUSH_OUT_INVALID;
  if (status == 403 && !strcmp(reason, "ExpiredProviderToken")) {
    /* Sign a new one for the retry, unless one was made a moment ago: a burst of requests sent
     * with the old token all come back with this, and Apple refuses tokens that change too
     * often (TooManyProviderTokenUpdates). */
    if (tern_push_now_s() - a->jwt_iat > 60) tern_buf_reset(&a->jwt);
    return TERN_PUSH_OUT_RETRY;
  }
  if (status == 403) /* the key, key id, team or topic is wrong: every send will fail */
    TERN_WARN("push: APNs refused our credentials", "status=403 reason=%s", tern_log_quote(reason));
  return tern_push_classify_common(status);
}

static void apns_close(tern_push_pv *pv) {
  apns *a = pv->impl;
  EVP_PKEY_free(a->key);
  tern_free(a->key_id);
  tern_free(a->team_id);
  tern_free(a->topic);
  tern_free(a->base);
  tern_buf_free(&a->jwt);
  tern_free(a);
  pv->impl = NULL;
}

static const tern_push_provider_ops apns_ops = {apns_prepare, apns_classify, apns_close};

int tern_push_apns_open(tern_push_pv *pv, const tern_config *cfg, char *err, size_t errlen) {
  if (!cfg->push_apns_key_file || !*cfg->push_apns_key_file) return 0;
  const struct {
    const char *name, *val;
  } need[] = {{"push.apns.key_id", cfg->push_apns_key_id},
              {"push.apns.team_id", cfg->push_apns_team_id},
              {"push.apns.topic", cfg->push_apns_topic},
              {"push.apns.url", cfg->push_apns_url}};
  for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
    if (!need[i].val || !*need[i].val) {
      snprintf(err, errlen, "%s must be set when push.apns.key_file is", need[i].name);
      return -EINVAL;
    }
  }
  tern_push_url u;
  char why[128];
  if (tern_push_url_parse(cfg->push_apns_url, &u, why, sizeof why) < 0) {
    snprintf(err, errlen, "push.apns.url: %s is not an http(s) URL", cfg->push_apns_url);
    return -EINVAL;
  }
  EVP_PKEY *key = tern_push_key_load_file("push.apns.key_file", cfg->push_apns_key_file, err, errlen);
  if (!key) return -EINVAL;
  if (!tern_push_key_is_p256(key)) {
    snprintf(err, errlen, "push.apns.key_file: %s is not a P-256 (ES256) key", cfg->push_apns_key_file);
    EVP_PKEY_free(key);
    return -EINVAL;
  }
  apns *a = TERN_NEW(apns);
  a->key = key;
  a->key_id = tern_strdup(cfg->push_apns_key_id);
  a->team_id = tern_strdup(cfg->push_apns_team_id);
  a->topic = tern_strdup(cfg->push_apns_topic);
  a->base = tern_strdup(cfg->push_apns_url);
  size_t bl = strlen(a->base);
  while (bl > 0 && a->base[bl - 1] == '/') a->base[--bl] = '\0';
  a->cleartext = !u.https;
  pv->impl = a;
  pv->ops = &apns_ops;
  if (apns_jwt(a) < 0) { /* a key that cannot sign is a start-up error, not a runtime one */
    snprintf(err, errlen, "push.apns.key_file: %s cannot sign ES256", cfg->push_apns_key_file);
    apns_close(pv);
    pv->ops = NULL;
    return -EINVAL;
  }
  return 0;
}
