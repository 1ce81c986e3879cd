/* pushglue: push registration endpoints, the trigger for offline devices and the handling of
 * dead tokens, on top of the provider library in src/push. A device's registration is stored
 * in its device record, so it goes away with the device. */
#include "core/pushglue.h"

#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/log.h"
#include "core/accounts.h"
#include "core/api.h"
#include "net/server.h"

/* Writes d's record (with its registration) to the store; answers req with 204 once it is
 * durable (or just writes it when req is NULL). */
static void store_device(tern_app *a, tern_device *d, tern_http_req *req) {
  tern_store_op *op = tern_accounts_device_op(d, NULL, NULL);
  if (req) tern_api_submit_then_204(a, req, op, "the registration could not be stored");
  else tern_app_submit(a, op);
}

static void set_reg(tern_device *d, tern_push_reg *reg) {
  if (d->push) {
    tern_push_reg_free(d->push);
    tern_free(d->push);
  }
  d->push = reg;
}

void tern_pushglue_load(tern_app *a, tern_device *d, const char *stored) {
  if (!stored || !*stored) { /* none (a record written elsewhere may also have dropped it) */
    set_reg(d, NULL);
    return;
  }
  tern_push_reg *reg = TERN_NEW(tern_push_reg);
  if (tern_push_reg_deserialize(stored, strlen(stored), reg) < 0) {
    TERN_WARN("stored push registration ignored", "device=%s", d->id);
    tern_free(reg);
    return;
  }
  set_reg(d, reg);
}

bool tern_pushglue_route(tern_app *a, tern_http_req *req) {
  if (!strcmp(req->path, "/v1/push/vapid")) {
    if (strcmp(req->method, "GET") != 0) {
      tern_http_error(req, 405, "method_not_allowed", "that method is not allowed on this path");
      return true;
    }
    const char *key = a->push ? tern_push_vapid_public_key(a->push) : NULL;
    if (!key) {
      tern_http_error(req, 404, "not_found", "Web Push is not configured on this server");
      return true;
    }
    tern_buf b = {0};
    tern_buf_puts(&b, "{\"public_key\":");
    tern_buf_put_json_str(&b, key, strlen(key));
    tern_buf_puts(&b, "}");
    tern_http_json(req, 200, &b);
    tern_buf_free(&b);
    return true;
  }
  if (strcmp(req->path, "/v1/push") != 0) return false;
  bool put = !strcmp(req->method, "PUT"), del = !strcmp(req->method, "DELETE");
  if (!put && !del) {
    tern_http_error(req, 405, "method_not_allowed", "that method is not allowed on this path");
    return true;
  }
  tern_device *d = tern_api_authenticate(a, req);
  if (!d) return true;
  if (del) {
    tern_pushglue_online(a, d); /* no window may fire for a registration that is gone */
    set_reg(d, NULL);
    store_device(a, d, req);
    return true;
  }
  tern_push_reg *reg = TERN_NEW(tern_push_reg);
  char err[256];
  if (!a->push || tern_push_reg_parse(a->push, req->body.data ? req->body.data : "", req->body.len, reg, err,
                                      sizeof err) < 0) {
    tern_free(reg);
    tern_http_error(req, 400, "bad_request", a->push ? err : "push is not configured on this server");
    return true;
  }
  set_reg(d, reg);
  TERN_INFO("push registered", "user=%s device=%s provider=%s", d->user->name, d->id,
            tern_push_provider_name(reg->provider));
  store_device(a, d, req);
  return true;
}

void tern_pushglue_offline(tern_app *a, tern_device *d, const char *sender, const char *group_id, const char *group,
                           const char *body, size_t body_len) {
  if (!a->push || !d->push) return;
  /* the preview is copied (and cut) by the library, and sent only with push.previews on */
  char preview[TERN_PUSH_PREVIEW_MAX * 4 + 1];
  const char *pv = NULL;
  if (a->cfg->push_previews && body) {
    size_t n = body_len < sizeof preview - 1 ? body_len : sizeof preview - 1;
    memcpy(preview, body, n);
    preview[n] = '\0';
    pv = preview;
  }
  tern_push_offline_message(a->push, d->id, d->push, sender, group_id, group, pv);
}

void tern_pushglue_online(tern_app *a, tern_device *d) {
  if (a->push) tern_push_device_online(a->push, d->id);
}

void tern_pushglue_result(void *arg, const char *device_id, const tern_push_reg *reg, tern_push_result result) {
  tern_app *a = arg;
  if (result != TERN_PUSH_INVALID_TOKEN) return;
  tern_device *d = tern_dir_device(a->dir, device_id);
  /* only if the device still has the registration that failed: it may have registered anew */
  if (!d || !d->push || !tern_push_reg_equal(d->push, reg)) return;
  TERN_INFO("push registration removed: the provider says the token is no longer valid", "device=%s provider=%s",
            d->id, tern_push_provider_name(reg->provider));
  set_reg(d, NULL);
  store_device(a, d, NULL);
}
