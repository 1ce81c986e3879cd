/* account: the account and privacy calls of PROTOCOL.md 14 (see client.h). */
#include <errno.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "client/client.h"
#include "client/client_int.h"

/* One authenticated call on path (prefix + escaped name when name is given), body JSON or none. */
static int call(tern_client *c, const tern_client_url *url, const char *token, const char *method, const char *prefix,
                const char *name, cJSON *body, tern_client_http_cb cb, void *arg) {
  if (!token || (name && (!*name || strlen(name) > 256))) {
    cJSON_Delete(body);
    return -EINVAL;
  }
  tern_buf path = {0};
  tern_buf_puts(&path, prefix);
  if (name) tern_client_path_escape(&path, name);
  char *json = body ? cJSON_PrintUnformatted(body) : NULL;
  cJSON_Delete(body);
  tern_client_request req = {.method = method, .path = tern_buf_cstr(&path), .token = token, .body = json,
                             .body_len = json ? strlen(json) : 0};
  int rc = tern_client_http(c, url, &req, cb, arg);
  if (json) {
    memset(json, 0, strlen(json)); /* it may hold a password */
    cJSON_free(json);
  }
  tern_buf_free(&path);
  return rc;
}

int tern_client_block(tern_client *c, const tern_client_url *url, const char *token, const char *user, bool block,
                      tern_client_http_cb cb, void *arg) {
  if (!user) return -EINVAL;
  return call(c, url, token, block ? "PUT" : "DELETE", "/v1/blocks/", user, NULL, cb, arg);
}

int tern_client_blocks(tern_client *c, const tern_client_url *url, const char *token, tern_client_http_cb cb,
                       void *arg) {
  return call(c, url, token, "GET", "/v1/blocks", NULL, NULL, cb, arg);
}

int tern_client_privacy_get(tern_client *c, const tern_client_url *url, const char *token, tern_client_http_cb cb,
                            void *arg) {
  return call(c, url, token, "GET", "/v1/privacy", NULL, NULL, cb, arg);
}

int tern_client_privacy_set(tern_client *c, const tern_client_url *url, const char *token, const char *last_seen,
                            int read_receipts, tern_client_http_cb cb, void *arg) {
  cJSON *b = cJSON_CreateObject();
  if (last_seen) cJSON_AddStringToObject(b, "last_seen", last_seen);
  if (read_receipts >= 0) cJSON_AddBoolToObject(b, "read_receipts", read_receipts != 0);
  return call(c, url, token, "PATCH", "/v1/privacy", NULL, b, cb, arg);
}

int tern_client_password(tern_client *c, const tern_client_url *url, const char *token, const char *old_password,
                         const char *new_password, tern_client_http_cb cb, void *arg) {
  if (!old_password || !new_password) return -EINVAL;
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "old", old_password);
  cJSON_AddStringToObject(b, "new", new_password);
  return call(c, url, token, "POST", "/v1/me/password", NULL, b, cb, arg);
}

int tern_client_delete_device(tern_client *c, const tern_client_url *url, const char *token, const char *device_id,
                              tern_client_http_cb cb, void *arg) {
  if (!device_id) return -EINVAL;
  return call(c, url, token, "DELETE", "/v1/devices/", device_id, NULL, cb, arg);
}

int tern_client_profile_set(tern_client *c, const tern_client_url *url, const char *token, const char *display_name,
                            const char *avatar, bool clear_avatar, tern_client_http_cb cb, void *arg) {
  if (!display_name && !avatar && !clear_avatar) return -EINVAL;
  cJSON *b = cJSON_CreateObject();
  if (display_name) cJSON_AddStringToObject(b, "display_name", display_name);
  if (avatar) cJSON_AddStringToObject(b, "avatar", avatar);
  else if (clear_avatar) cJSON_AddNullToObject(b, "avatar");
  return call(c, url, token, "PATCH", "/v1/me", NULL, b, cb, arg);
}

int tern_client_upload_avatar(tern_client *c, const tern_client_url *url, const char *token, const char *mime,
                              const void *bytes, size_t len, tern_client_http_cb cb, void *arg) {
  if (!token || !mime || !bytes || !len) return -EINVAL;
  tern_client_request req = {.method = "POST", .path = "/v1/media?purpose=avatar", .token = token,
                             .content_type = mime, .body = bytes, .body_len = len};
  return tern_client_http(c, url, &req, cb, arg);
}

int tern_client_delete_account(tern_client *c, const tern_client_url *url, const char *token, const char *password,
                               tern_client_http_cb cb, void *arg) {
  if (!password) return -EINVAL;
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "password", password);
  return call(c, url, token, "DELETE", "/v1/me", NULL, b, cb, arg);
}
