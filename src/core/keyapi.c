/* keyapi: /v1/keys and the directory's E2E bits (keyapi.h). */
#include "core/keyapi.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/api.h"
#include "core/limits.h"
#include "proto/wire.h"

/* ---- the directory's view ---- */

bool tern_keyapi_is_kv(const char *key, size_t klen) {
  size_t pl = sizeof TERN_KEYS_RECORD_PREFIX - 1;
  return klen > pl && memcmp(key, TERN_KEYS_RECORD_PREFIX, pl) == 0;
}

bool tern_keyapi_apply_record(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t vlen) {
  size_t pl = sizeof TERN_KEYS_RECORD_PREFIX - 1;
  char id[TERN_DEVICE_ID_LEN + 1];
  if (klen - pl > TERN_DEVICE_ID_LEN) return true; /* no device of ours has such an id */
  memcpy(id, key + pl, klen - pl);
  id[klen - pl] = '\0';
  tern_key_bundle b = {0};
  bool valid = v && tern_keys_record_decode(v, vlen, &b) == 0;
  tern_device *d = tern_dir_device(a->dir, id);
  if (!d) return !valid; /* deleted meanwhile (its keys go with it), or not known yet */
  d->e2e = valid;
  return true;
}

/* ---- parsing ---- */

static int fail(char *msg, size_t cap, const char *s) {
  snprintf(msg, cap, "%s", s);
  return -EINVAL;
}

/* Standard base64 (with padding, nothing ignored) of exactly n bytes. */
static bool b64_exact(const cJSON *v, uint8_t *out, size_t n) {
  if (!cJSON_IsString(v)) return false;
  const char *s = v->valuestring;
  size_t sl = strlen(s), got = 0;
  const char *end = NULL;
  if (sl != sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL) - 1) return false;
  if (sodium_base642bin(out, n, s, sl, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) != 0) return false;
  return got == n && end == s + sl;
}

static bool pub_key(const cJSON *v, uint8_t out[TERN_KEY_PUB_LEN]) {
  return b64_exact(v, out, TERN_KEY_PUB_LEN) && out[0] == 0x05; /* DJB_TYPE */
}

/* An integer in [min, max]. */
static bool int_in(const cJSON *v, double min, double max, uint32_t *out) {
  if (!cJSON_IsNumber(v)) return false;
  double d = v->valuedouble;
  if (!isfinite(d) || d != floor(d) || d < min || d > max) return false;
  *out = (uint32_t)d;
  return true;
}

int tern_keys_parse_put(const char *body, size_t len, size_t max_per_put, tern_op_keys *op, char *msg, size_t msglen) {
  tern_wire_doc doc;
  char why[96];
  if (!body || !len || !tern_utf8_valid(body, len) || tern_wire_parse(body, len, (size_t)-1, &doc, why, sizeof why) < 0)
    return fail(msg, msglen, "the body must be a JSON object");
  int rc = 0;
  if (doc.nul_escapes) { /* a key cut at an escaped NUL could pass for a shorter string */
    rc = fail(msg, msglen, "strings may not contain U+0000");
    goto out;
  }
  const cJSON *root = doc.root;
  const cJSON *ik = tern_wire_get(root, "identity_key"), *reg = tern_wire_get(root, "registration_id");
  const cJSON *spk = tern_wire_get(root, "signed_prekey"), *otks = tern_wire_get(root, "one_time_prekeys");
  if (tern_wire_present(ik) != tern_wire_present(reg)) {
    rc = fail(msg, msglen, "identity_key and registration_id go together");
    goto out;
  }
  if (tern_wire_present(ik)) {
    if (!pub_key(ik, op->in.identity)) {
      rc = fail(msg, msglen, "identity_key must be 33 bytes of standard base64: type byte 0x05 and 32 bytes");
      goto out;
    }
    if (!int_in(reg, 1, TERN_KEY_REG_ID_MAX, &op->in.registration_id)) {
      rc = fail(msg, msglen, "registration_id must be an integer from 1 to 16380");
      goto out;
    }
    op->has_identity = true;
  }
  if (tern_wire_present(spk)) {
    if (!cJSON_IsObject(spk)) {
      rc = fail(msg, msglen, "signed_prekey must be an object {key_id, public_key, signature}");
      goto out;
    }
    if (!int_in(tern_wire_get(spk, "key_id"), 1, TERN_KEY_ID_MAX, &op->in.spk_id)) {
      rc = fail(msg, msglen, "signed_prekey.key_id must be an integer from 1 to 16777215");
      goto out;
    }
    if (!pub_key(tern_wire_get(spk, "public_key"), op->in.spk_pub)) {
      rc = fail(msg, msglen, "signed_prekey.public_key must be 33 bytes of standard base64 (0x05 and 32 bytes)");
      goto out;
    }
    if (!b64_exact(tern_wire_get(spk, "signature"), op->in.spk_sig, TERN_KEY_SIG_LEN)) {
      rc = fail(msg, msglen, "signed_prekey.signature must be 64 bytes of standard base64");
      goto out;
    }
    op->has_spk = true;
  }
  if (tern_wire_present(otks)) {
    if (!cJSON_IsArray(otks)) {
      rc = fail(msg, msglen, "one_time_prekeys must be a list of {key_id, public_key}");
      goto out;
    }
    if ((size_t)cJSON_GetArraySize(otks) > max_per_put) {
      snprintf(msg, msglen, "at most %zu one-time prekeys per request", max_per_put);
      rc = -E2BIG;
      goto out;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, otks) {
      uint32_t id = 0;
      uint8_t pub[TERN_KEY_PUB_LEN];
      if (!cJSON_IsObject(it) || !int_in(tern_wire_get(it, "key_id"), 1, TERN_KEY_ID_MAX, &id)) {
        rc = fail(msg, msglen, "each one-time prekey needs a key_id from 1 to 16777215");
        goto out;
      }
      if (!pub_key(tern_wire_get(it, "public_key"), pub)) {
        rc = fail(msg, msglen, "a one-time prekey's public_key must be 33 bytes of standard base64 (0x05 and 32 bytes)");
        goto out;
      }
      /* the same id twice in one request: the later one replaces the earlier, as across requests */
      bool seen = false;
      for (size_t i = 0; i < op->nprekeys && !seen; i++) {
        if (op->prekeys[i].id == id) {
          memcpy(op->prekeys[i].pub, pub, TERN_KEY_PUB_LEN);
          seen = true;
        }
      }
      if (!seen) tern_op_keys_add_prekey(op, id, pub);
    }
  }
  if (!op->has_identity && !op->has_spk && !tern_wire_present(otks))
    rc = fail(msg, msglen, "nothing to publish: give identity_key, signed_prekey or one_time_prekeys");
out:
  tern_wire_doc_free(&doc);
  return rc;
}

/* ---- answers ---- */

static void put_b64(tern_buf *b, const uint8_t *p, size_t n) {
  char tmp[sodium_base64_ENCODED_LEN(TERN_KEY_SIG_LEN, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(tmp, sizeof tmp, p, n, sodium_base64_VARIANT_ORIGINAL);
  tern_buf_put_json_str(b, tmp, strlen(tmp));
}

static void put_bundle(tern_buf *b, const tern_key_bundle *k) {
  tern_buf_puts(b, "{\"device_id\":");
  tern_buf_put_json_str(b, k->device_id, strlen(k->device_id));
  tern_buf_puts(b, ",\"registration_id\":");
  tern_buf_put_u64(b, k->registration_id);
  tern_buf_puts(b, ",\"identity_key\":");
  put_b64(b, k->identity, TERN_KEY_PUB_LEN);
  tern_buf_puts(b, ",\"signed_prekey\":{\"key_id\":");
  tern_buf_put_u64(b, k->spk_id);
  tern_buf_puts(b, ",\"public_key\":");
  put_b64(b, k->spk_pub, TERN_KEY_PUB_LEN);
  tern_buf_puts(b, ",\"signature\":");
  put_b64(b, k->spk_sig, TERN_KEY_SIG_LEN);
  tern_buf_puts(b, "},\"one_time_prekey\":");
  if (k->has_prekey) {
    tern_buf_puts(b, "{\"key_id\":");
    tern_buf_put_u64(b, k->prekey.id);
    tern_buf_puts(b, ",\"public_key\":");
    put_b64(b, k->prekey.pub, TERN_KEY_PUB_LEN);
    tern_buf_puts(b, "}");
  } else {
    tern_buf_puts(b, "null");
  }
  tern_buf_puts(b, "}");
}

/* A request waiting for its key op. */
typedef struct key_req {
  tern_app *app;
  tern_http_req *req;
  tern_conn *conn;        /* referenced meanwhile */
  char user[TERN_USERNAME_MAX + 1]; /* GET /v1/keys/{user} */
  bool one;               /* GET /v1/keys/{user}/{device_id} */
} key_req;

static key_req *key_req_new(tern_app *a, tern_http_req *req) {
  key_req *c = TERN_NEW(key_req);
  c->app = a;
  c->req = req;
  c->conn = req->conn;
  tern_conn_ref(c->conn);
  return c;
}

static void key_req_free(key_req *c) {
  tern_conn_unref(c->conn);
  tern_free(c);
}

/* The local directory learns what this loop wrote (the change feed skips the writer). */
static void apply_written(tern_app *a, const tern_op_keys *k) {
  if (!k->record.len || !k->device_id) return;
  char key[sizeof TERN_KEYS_RECORD_PREFIX + TERN_DEVICE_ID_MAX];
  int n = snprintf(key, sizeof key, "%s%s", TERN_KEYS_RECORD_PREFIX, k->device_id);
  tern_keyapi_apply_record(a, key, (size_t)n, (const uint8_t *)k->record.data, k->record.len);
}

static void on_put(tern_store_op *op) {
  key_req *c = op->arg;
  tern_op_keys *k = tern_op_as_keys(op);
  if (op->status == TERN_STORE_OK) {
    apply_written(c->app, k);
    TERN_INFO("keys published", "device=%s signed_prekey=%u one_time_prekeys=%u", k->device_id, k->bundle.spk_id,
              k->bundle.nprekeys);
    tern_http_respond(c->req, 204, NULL, NULL, NULL, 0);
  } else if (op->status == TERN_STORE_CONFLICT) {
    switch (k->refusal) {
      case TERN_KEYS_NEED_IDENTITY:
        tern_http_error(c->req, 400, "bad_request",
                        "a device's first PUT must carry identity_key, registration_id and signed_prekey");
        break;
      case TERN_KEYS_IDENTITY:
        tern_http_error(c->req, 409, "identity_exists",
                        "this device already has another identity key; a device that lost its keys logs in anew");
        break;
      case TERN_KEYS_TOO_MANY:
        tern_http_error(c->req, 413, "too_large", "the device would hold more than e2e.max_prekeys one-time prekeys");
        break;
      default:
        tern_http_error(c->req, 401, "unauthorized", "this device was logged out");
        break;
    }
  } else {
    tern_api_store_error(c->req, op, "the keys could not be stored");
  }
  key_req_free(c);
}

static void keys_put(tern_app *a, tern_http_req *req, tern_device *d) {
  tern_op_keys *op = tern_op_keys_new(TERN_OP_KEYS_PUT, on_put, NULL);
  char msg[160];
  int rc = tern_keys_parse_put(req->body.data, req->body.len, TERN_KEYS_MAX_PER_PUT, op, msg, sizeof msg);
  if (rc < 0) {
    tern_store_op_free(&op->op);
    tern_http_error(req, rc == -E2BIG ? 413 : 400, rc == -E2BIG ? "too_large" : "bad_request", msg);
    return;
  }
  tern_store_set_str(&op->device_id, d->id);
  tern_store_set_str(&op->user, d->user->name);
  op->max_prekeys = (uint32_t)a->cfg->e2e_max_prekeys;
  op->op.arg = key_req_new(a, req);
  tern_app_submit(a, &op->op);
}

static void on_get_own(tern_store_op *op) {
  key_req *c = op->arg;
  tern_op_keys *k = tern_op_as_keys(op);
  if (op->status != TERN_STORE_OK) {
    tern_api_store_error(c->req, op, "the keys could not be read");
  } else if (!k->found) {
    tern_http_error(c->req, 404, "not_found", "this device has published no keys");
  } else {
    tern_buf b = {0};
    tern_buf_puts(&b, "{\"identity_key\":");
    put_b64(&b, k->bundle.identity, TERN_KEY_PUB_LEN);
    tern_buf_puts(&b, ",\"signed_prekey_id\":");
    tern_buf_put_u64(&b, k->bundle.spk_id);
    tern_buf_puts(&b, ",\"one_time_prekeys\":");
    tern_buf_put_u64(&b, k->bundle.nprekeys);
    tern_buf_puts(&b, "}");
    tern_http_json(c->req, 200, &b);
    tern_buf_free(&b);
  }
  key_req_free(c);
}

static void on_claimed(tern_store_op *op) {
  key_req *c = op->arg;
  tern_op_keys *k = tern_op_as_keys(op);
  if (op->status != TERN_STORE_OK) {
    tern_api_store_error(c->req, op, "the keys could not be read");
  } else if (c->one && !k->nbundles) {
    tern_http_error(c->req, 404, "not_found", "that device has published no keys");
  } else {
    tern_buf b = {0};
    tern_buf_puts(&b, "{\"user\":");
    tern_buf_put_json_str(&b, c->user, strlen(c->user));
    tern_buf_puts(&b, ",\"devices\":[");
    for (size_t i = 0; i < k->nbundles; i++) {
      if (i) tern_buf_putc(&b, ',');
      put_bundle(&b, &k->bundles[i]);
    }
    tern_buf_puts(&b, "]}");
    /* ids only: key material stays out of the log */
    TERN_DEBUG("keys handed out", "user=%s devices=%zu", c->user, k->nbundles);
    tern_http_json(c->req, 200, &b);
    tern_buf_free(&b);
  }
  key_req_free(c);
}

/* limits.key_fetch_rate per calling user; false after answering 429. A request run again after
 * a catch-up was counted the first time. */
static bool fetch_rate_ok(tern_app *a, tern_http_req *req, tern_user *caller) {
  if (req->reruns) return true;
  double rate = a->cfg->limits_key_fetch_rate.rate, burst = a->cfg->limits_key_fetch_rate.burst;
  if (a->cfg->limits_key_fetch_burst > 0) burst = (double)a->cfg->limits_key_fetch_burst;
  double left = 0;
  if (tern_limits_user_take(a->limits, TERN_UL_KEY_FETCH, caller->name, rate, burst, 1, &left)) return true;
  tern_limits_count(a->limits, TERN_LIMIT_KEY_FETCH_RATE);
  double missing = 1.0 - left;
  long long retry = (long long)ceil((missing > 0 ? missing : 1) / rate);
  if (retry < 1) retry = 1;
  char hdr[48];
  snprintf(hdr, sizeof hdr, "Retry-After: %lld\r\n", retry);
  tern_buf b = {0};
  tern_api_error_body(&b, 429, "rate_limited", "too many key fetches; slow down");
  tern_http_respond(req, 429, hdr, "application/json", b.data, b.len);
  tern_buf_free(&b);
  return false;
}

static void keys_fetch(tern_app *a, tern_http_req *req, tern_device *caller, const char *rest) {
  if (!fetch_rate_ok(a, req, caller->user)) return;
  const char *slash = strchr(rest, '/');
  size_t ul = slash ? (size_t)(slash - rest) : strlen(rest);
  char raw[TERN_USERNAME_MAX * 4 + 1], name[TERN_USERNAME_MAX + 1];
  tern_user *u = NULL;
  bool valid = ul > 0 && ul < sizeof raw;
  if (valid) {
    memcpy(raw, rest, ul);
    raw[ul] = '\0';
    valid = tern_username_normalize(raw, ul, name);
  }
  if (valid) u = tern_dir_user(a->dir, name);
  if (!u || u->pending) {
    if (valid && tern_api_catch_up(a, req)) return;
    tern_http_error(req, 404, "not_found", "there is no user by that name");
    return;
  }
  tern_op_keys *op = tern_op_keys_new(TERN_OP_KEYS_CLAIM, on_claimed, NULL);
  if (slash) {
    const char *dev_id = slash + 1;
    tern_device *d = *dev_id && !strchr(dev_id, '/') ? tern_dir_device(a->dir, dev_id) : NULL;
    if (!d || d->user != u || !d->e2e) {
      tern_store_op_free(&op->op);
      if (tern_api_catch_up(a, req)) return; /* logged in or published elsewhere a moment ago? */
      tern_http_error(req, 404, "not_found", "that user has no such device with keys");
      return;
    }
    tern_op_keys_add_device(op, d->id);
  } else {
    for (tern_device *d = u->devices; d; d = d->next_in_user)
      if (d->e2e) tern_op_keys_add_device(op, d->id);
    if (!op->ndevices && tern_api_catch_up(a, req)) { /* published elsewhere a moment ago? */
      tern_store_op_free(&op->op);
      return;
    }
  }
  key_req *c = key_req_new(a, req);
  snprintf(c->user, sizeof c->user, "%s", u->name);
  c->one = slash != NULL;
  op->op.arg = c;
  tern_app_submit(a, &op->op);
}

static bool is(const tern_http_req *req, const char *m) { return strcmp(req->method, m) == 0; }

void tern_keyapi_route(tern_app *a, tern_http_req *req) {
  const char *p = req->path; /* "/v1/keys..." */
  if (p[8] != '\0' && p[8] != '/') {
    tern_http_error(req, 404, "not_found", "no such endpoint");
    return;
  }
  bool own = p[8] == '\0';
  if (own ? !is(req, "GET") && !is(req, "PUT") : !is(req, "GET")) {
    tern_http_error(req, 405, "method_not_allowed", "that method is not allowed on this path");
    return;
  }
  tern_device *d = tern_api_authenticate(a, req);
  if (!d) return;
  if (own && is(req, "PUT")) {
    keys_put(a, req, d);
  } else if (own) {
    tern_op_keys *op = tern_op_keys_new(TERN_OP_KEYS_GET, on_get_own, NULL);
    tern_store_set_str(&op->device_id, d->id);
    op->op.arg = key_req_new(a, req);
    tern_app_submit(a, &op->op);
  } else if (!p[9]) {
    tern_http_error(req, 404, "not_found", "there is no user by that name");
  } else {
    keys_fetch(a, req, d, p + 9);
  }
}
