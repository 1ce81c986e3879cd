/* fcm: Firebase Cloud Messaging, HTTP v1 API.
 *
 * Auth is OAuth2 with a service account (RFC 7523 JWT bearer grant): an RS256 JWT
 *   header {"alg":"RS256","typ":"JWT","kid":private_key_id}
 *   claims {"iss":client_email,"scope":"https://www.googleapis.com/auth/firebase.messaging",
 *           "aud":token_uri,"iat":now,"exp":now+3600}
 * is POSTed as grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT> to the
 * token URL (the service account's token_uri, or push.fcm.token_url), which answers
 * {"access_token":...,"expires_in":3599}. The token is cached until a minute before it expires;
 * one token request at a time, and notifications that need it wait for it holding their slot.
 * Then:
 *   POST {push.fcm.url}/v1/projects/{project_id}/messages:send
 *   Authorization: Bearer <access token>
 *   {"message":{"token":...,"notification":{"title":"alice","body":"3 new messages"},
 *               "data":{"type":"msg","from":"alice","count":"3"},
 *               "android":{"priority":"HIGH","ttl":"86400s"}}}
 * Answers: 200 delivered; 404 or an UNREGISTERED error (and SENDER_ID_MISMATCH: the token
 * belongs to another project, so it never works for us) mean the token is dead; 401 drops the
 * cached access token and retries; 429 and 5xx retried; anything else fails. */
#include <errno.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "push/jwt.h"
#include "push/push_int.h"

#define FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define FCM_DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"

typedef struct fcm {
  EVP_PKEY *key;             /* the service account's RSA key */
  char *client_email;        /* iss */
  char *private_key_id;      /* kid, may be NULL */
  char *project_id;
  char *aud;                 /* the service account's token_uri */
  char *token_url;           /* where the assertion is POSTed */
  char *send_url;            /* {fcm.url}/v1/projects/{project}/messages:send */
  char *access_token;        /* NULL until fetched */
  int64_t expires_at;        /* s; the token is used only before this */
  /* the token request in flight */
  CURL *tok_easy;            /* non-NULL while running */
  struct curl_slist *tok_headers;
  tern_buf tok_body, tok_resp;
  tern_push_job *waiters;    /* jobs waiting for the token, via job->next */
  tern_push_pv *pv;
} fcm;

static size_t tok_write(char *data, size_t size, size_t n, void *userp) {
  fcm *f = userp;
  size_t len = size * n;
  if (f->tok_resp.len < TERN_PUSH_RESP_MAX) tern_buf_append(&f->tok_resp, data, TERN_MIN(len, TERN_PUSH_RESP_MAX - f->tok_resp.len));
  return len;
}

static void tok_done(void *arg, CURL *easy, CURLcode res);

static int tok_start(fcm *f) {
  tern_push *p = f->pv->push;
  int64_t now = tern_push_now_s();
  tern_buf h = {0}, c = {0}, jwt = {0};
  tern_buf_puts(&h, "{\"alg\":\"RS256\",\"typ\":\"JWT\"");
  if (f->private_key_id) {
    tern_buf_puts(&h, ",\"kid\":");
    tern_buf_put_json_str(&h, f->private_key_id, strlen(f->private_key_id));
  }
  tern_buf_putc(&h, '}');
  tern_buf_puts(&c, "{\"iss\":");
  tern_buf_put_json_str(&c, f->client_email, strlen(f->client_email));
  tern_buf_puts(&c, ",\"scope\":\"" FCM_SCOPE "\",\"aud\":");
  tern_buf_put_json_str(&c, f->aud, strlen(f->aud));
  tern_buf_printf(&c, ",\"iat\":%lld,\"exp\":%lld}", (long long)now, (long long)(now + 3600));
  int rc = tern_push_jwt_sign(f->key, TERN_PUSH_RS256, tern_buf_cstr(&h), tern_buf_cstr(&c), &jwt);
  tern_buf_free(&h);
  tern_buf_free(&c);
  if (rc < 0) {
    tern_buf_free(&jwt);
    TERN_ERROR("push: cannot sign the FCM OAuth2 assertion", "%s", "");
    return rc;
  }
  tern_buf_reset(&f->tok_body);
  tern_buf_reset(&f->tok_resp);
  /* a JWT is base64url and dots only, so it needs no form-encoding */
  tern_buf_puts(&f->tok_body, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=");
  tern_buf_append(&f->tok_body, jwt.data, jwt.len);
  tern_buf_free(&jwt);
  f->tok_headers = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
  CURL *e = tern_push_easy_get(p);
  curl_easy_setopt(e, CURLOPT_URL, f->token_url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->tok_headers);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)f->tok_body.len);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, f->tok_body.data);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, tok_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
  f->tok_easy = e;
  if (tern_push_cu_add(p->cu, e, tok_done, f) < 0) {
    tern_push_easy_release(p, e);
    f->tok_easy = NULL;
    curl_slist_free_all(f->tok_headers);
    f->tok_headers = NULL;
    return -EIO;
  }
  return 0;
}

static void tok_done(void *arg, CURL *easy, CURLcode res) {
  fcm *f = arg;
  tern_push *p = f->pv->push;
  long status = 0;
  curl_off_t ra = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &ra);
  tern_push_easy_release(p, easy);
  f->tok_easy = NULL;
  curl_slist_free_all(f->tok_headers);
  f->tok_headers = NULL;

  tern_push_outcome fail = TERN_PUSH_OUT_RETRY;
  if (res == CURLE_OK && status == 200) {
    cJSON *j = cJSON_ParseWithLength(f->tok_resp.data ? f->tok_resp.data : "", f->tok_resp.len);
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "access_token");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    if (cJSON_IsString(at) && *at->valuestring && cJSON_IsNumber(ex) && ex->valuedouble >= 2) {
      tern_free(f->access_token);
      f->access_token = tern_strdup(at->valuestring);
      int64_t life = (int64_t)ex->valuedouble;
      /* stop using it a minute early (or half its life, if shorter), so it never expires on
       * the way to FCM */
      f->expires_at = tern_push_now_s() + life - TERN_MIN(60, life / 2);
      fail = TERN_PUSH_OUT_OK;
    } else {
      TERN_WARN("push: FCM token answer without access_token", "status=200");
    }
    cJSON_Delete(j);
  } else if (res != CURLE_OK) {
    TERN_WARN("push: FCM token request failed", "error=%s", tern_log_quote(curl_easy_strerror(res)));
  } else {
    tern_buf_cstr(&f->tok_resp);
    TERN_WARN("push: FCM token request refused", "status=%ld body=%s", status, tern_log_quote(f->tok_resp.data));
    /* 4xx (invalid_grant, a revoked key...) will not heal by retrying soon */
    if (status != 429 && status < 500) fail = TERN_PUSH_OUT_FAIL;
  }
  tern_push_job *w = f->waiters;
  f->waiters = NULL;
  while (w) {
    tern_push_job *next = w->next;
    w->next = NULL;
    if (fail == TERN_PUSH_OUT_OK) tern_push_job_resume(w); /* may wait again: fine, w is detached */
    else tern_push_job_outcome(w, fail, ra > 0 ? (int64_t)ra * 1000 : 0);
    w = next;
  }
}

static tern_push_prep fcm_prepare(tern_push_pv *pv, tern_push_job *job) {
  fcm *f = pv->impl;
  if (!f->access_token || tern_push_now_s() >= f->expires_at) {
    if (!f->tok_easy && tok_start(f) < 0) return TERN_PUSH_PREP_FAIL;
    job->next = f->waiters;
    f->waiters = job;
    return TERN_PUSH_PREP_WAIT;
  }
  job->url = tern_strdup(f->send_url);
  tern_push_job_header(job, "Authorization: Bearer %s", f->access_token);
  tern_push_job_header(job, "Content-Type: application/json");
  tern_buf *b = &job->body;
  tern_buf alert = {0};
  tern_push_alert_body(job, &alert);
  tern_buf_puts(b, "{\"message\":{\"token\":");
  tern_buf_put_json_str(b, job->reg.token, strlen(job->reg.token));
  tern_buf_puts(b, ",\"notification\":{\"title\":");
  tern_buf title = {0};
  tern_push_alert_title(job, &title);
  tern_buf_put_json_str(b, title.data ? title.data : "", title.len);
  tern_buf_free(&title);
  tern_buf_puts(b, ",\"body\":");
  tern_buf_put_json_str(b, alert.data ? alert.data : "", alert.len);
  tern_buf_free(&alert);
  tern_buf_puts(b, "},\"data\":{\"type\":\"msg\",\"from\":"); /* FCM data values are strings */
  tern_buf_put_json_str(b, job->sender, strlen(job->sender));
  if (job->group) {
    tern_buf_puts(b, ",\"group\":");
    tern_buf_put_json_str(b, job->group, strlen(job->group));
    tern_buf_puts(b, ",\"group_id\":");
    tern_buf_put_json_str(b, job->group_id ? job->group_id : "", job->group_id ? strlen(job->group_id) : 0);
  }
  tern_buf_printf(b, ",\"count\":\"%u\"", job->count);
  if (job->preview) {
    tern_buf_puts(b, ",\"preview\":");
    tern_buf_put_json_str(b, job->preview, strlen(job->preview));
  }
  tern_buf_printf(b, "},\"android\":{\"priority\":\"HIGH\",\"ttl\":\"%llds\"}}}",
                  (long long)(pv->push->ttl_ms / 1000));
  return TERN_PUSH_PREP_START;
}

/* True when FCM's error body names errorCode/status code. */
static bool fcm_error_is(const cJSON *err, const char *code) {
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(err, "status");
  if (cJSON_IsString(st) && !strcmp(st->valuestring, code)) return true;
  const cJSON *d;
  cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(err, "details")) {
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(d, "errorCode");
    if (cJSON_IsString(ec) && !strcmp(ec->valuestring, code)) return true;
  }
  return false;
}

static tern_push_outcome fcm_classify(tern_push_pv *pv, tern_push_job *job, long status) {
  fcm *f = pv->impl;
  if (status == 200) return TERN_PUSH_OUT_OK;
  if (status == 404) return TERN_PUSH_OUT_INVALID;
  if (status == 401) { /* the access token was revoked or expired early: fetch a new one */
    tern_free(f->access_token);
    f->access_token = NULL;
    return TERN_PUSH_OUT_RETRY;
  }
  cJSON *j = cJSON_ParseWithLength(job->resp.data ? job->resp.data : "", job->resp.len);
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
  bool dead = fcm_error_is(e, "UNREGISTERED") || fcm_error_is(e, "SENDER_ID_MISMATCH");
  cJSON_Delete(j);
  if (dead) return TERN_PUSH_OUT_INVALID;
  return tern_push_classify_common(status);
}

static void fcm_close(tern_push_pv *pv) {
  fcm *f = pv->impl;
  if (f->tok_easy) {
    tern_push_cu_remove(pv->push->cu, f->tok_easy);
    curl_easy_cleanup(f->tok_easy);
  }
  curl_slist_free_all(f->tok_headers);
  tern_buf_free(&f->tok_body);
  tern_buf_free(&f->tok_resp);
  EVP_PKEY_free(f->key);
  tern_free(f->client_email);
  tern_free(f->private_key_id);
  tern_free(f->project_id);
  tern_free(f->aud);
  tern_free(f->token_url);
  tern_free(f->send_url);
  tern_free(f->access_token);
  tern_free(f); /* waiters are jobs: push.c frees those */
  pv->impl = NULL;
}

static const tern_push_provider_ops fcm_ops = {fcm_prepare, fcm_classify, fcm_close};

static const char *sa_str(const cJSON *j, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsString(v) && *v->valuestring ? v->valuestring : NULL;
}

int tern_push_fcm_open(tern_push_pv *pv, const tern_config *cfg, char *err, size_t errlen) {
  const char *path = cfg->push_fcm_service_account;
  if (!path || !*path) return 0;
  const char *what = "push.fcm.service_account";
  size_t n;
  char *text = tern_push_read_file(what, path, 256 * 1024, &n, err, errlen);
  if (!text) return -EINVAL;
  cJSON *j = cJSON_ParseWithLength(text, n);
  OPENSSL_cleanse(text, n); /* it holds the private key */
  tern_free(text);
  int rc = -EINVAL;
  EVP_PKEY *key = NULL;
  if (!cJSON_IsObject(j)) {
    snprintf(err, errlen, "%s: %s is not a JSON service account", what, path);
    goto done;
  }
  const char *email = sa_str(j, "client_email"), *pem = sa_str(j, "private_key"),
             *project = sa_str(j, "project_id"), *kid = sa_str(j, "private_key_id"),
             *token_uri = sa_str(j, "token_uri");
  const char *missing = !email ? "client_email" : !pem ? "private_key" : !project ? "project_id" : NULL;
  if (missing) {
    snprintf(err, errlen, "%s: %s has no %s", what, path, missing);
    goto done;
  }
  for (const char *c = project; *c; c++) { /* it goes into the URL path */
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) {
      snprintf(err, errlen, "%s: project_id in %s is not a Firebase project id", what, path);
      goto done;
    }
  }
  key = tern_push_key_from_pem(pem, strlen(pem));
  if (!key || !tern_push_key_is_rsa(key)) {
    snprintf(err, errlen, "%s: the private_key in %s is not an RSA PEM key", what, path);
    goto done;
  }
  tern_push_url u;
  char why[128];
  if (!cfg->push_fcm_url || tern_push_url_parse(cfg->push_fcm_url, &u, why, sizeof why) < 0) {
    snprintf(err, errlen, "push.fcm.url: %s is not an http(s) URL", cfg->push_fcm_url ? cfg->push_fcm_url : "");
    goto done;
  }
  const char *turl = cfg->push_fcm_token_url && *cfg->push_fcm_token_url ? cfg->push_fcm_token_url
                     : token_uri                                         ? token_uri
                                                                         : FCM_DEFAULT_TOKEN_URI;
  if (tern_push_url_parse(turl, &u, why, sizeof why) < 0) {
    snprintf(err, errlen, "push.fcm.token_url: %s is not an http(s) URL", turl);
    goto done;
  }
  fcm *f = TERN_NEW(fcm);
  f->pv = pv;
  f->key = key;
  key = NULL;
  f->client_email = tern_strdup(email);
  f->private_key_id = kid ? tern_strdup(kid) : NULL;
  f->project_id = tern_strdup(project);
  /* aud stays Google's token_uri even when the POST goes elsewhere (a proxy, a stand-in) */
  f->aud = tern_strdup(token_uri ? token_uri : FCM_DEFAULT_TOKEN_URI);
  f->token_url = tern_strdup(turl);
  tern_buf s = {0};
  tern_buf_puts(&s, cfg->push_fcm_url);
  while (s.len && s.data[s.len - 1] == '/') s.len--;
  tern_buf_puts(&s, "/v1/projects/");
  tern_buf_puts(&s, project);
  tern_buf_puts(&s, "/messages:send");
  f->send_url = tern_buf_steal(&s, NULL);
  pv->impl = f;
  pv->ops = &fcm_ops;
  rc = 0;
done:
  EVP_PKEY_free(key);
  cJSON_Delete(j);
  return rc;
}
