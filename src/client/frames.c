/* frames.c: client → server frames (written directly as JSON text, no tree) and server →
 * client frames parsed with cJSON into tern_client_event. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "client/client_int.h"

static void put_str(tern_buf *out, const char *s) { tern_buf_put_json_str(out, s, strlen(s)); }

void tern_client_frame_auth(tern_buf *out, const char *token) {
  tern_buf_puts(out, "{\"type\":\"auth\",\"token\":");
  put_str(out, token);
  tern_buf_putc(out, '}');
}

void tern_client_frame_send(tern_buf *out, const char *id, const char *to, const char *body, size_t body_len,
                            const char *media_id) {
  tern_buf_puts(out, "{\"type\":\"send\",\"id\":");
  put_str(out, id);
  tern_buf_puts(out, ",\"to\":");
  put_str(out, to);
  if (body) {
    tern_buf_puts(out, ",\"body\":");
    tern_buf_put_json_str(out, body, body_len);
  }
  if (media_id) {
    tern_buf_puts(out, ",\"media\":{\"media_id\":");
    put_str(out, media_id);
    tern_buf_putc(out, '}');
  }
  tern_buf_putc(out, '}');
}

void tern_client_frame_ack(tern_buf *out, uint64_t seq) {
  tern_buf_puts(out, "{\"type\":\"ack\",\"seq\":");
  tern_buf_put_u64(out, seq);
  tern_buf_putc(out, '}');
}

static void put_str_array(tern_buf *out, const char *const *v, size_t n) {
  tern_buf_putc(out, '[');
  for (size_t i = 0; i < n; i++) {
    if (i) tern_buf_putc(out, ',');
    put_str(out, v[i]);
  }
  tern_buf_putc(out, ']');
}

void tern_client_frame_read(tern_buf *out, const char *peer, const char *const *ids, size_t n) {
  tern_buf_puts(out, "{\"type\":\"read\",\"peer\":");
  put_str(out, peer);
  tern_buf_puts(out, ",\"msg_ids\":");
  put_str_array(out, ids, n);
  tern_buf_putc(out, '}');
}

void tern_client_frame_users(tern_buf *out, const char *type, const char *const *users, size_t n) {
  tern_buf_puts(out, "{\"type\":");
  put_str(out, type);
  tern_buf_puts(out, ",\"users\":");
  put_str_array(out, users, n);
  tern_buf_putc(out, '}');
}

void tern_client_frame_typing(tern_buf *out, const char *to, bool composing) {
  tern_buf_puts(out, "{\"type\":\"typing\",\"to\":");
  put_str(out, to);
  tern_buf_puts(out, composing ? ",\"state\":\"composing\"}" : ",\"state\":\"paused\"}");
}

void tern_client_frame_ping(tern_buf *out) { tern_buf_puts(out, "{\"type\":\"ping\"}"); }

/* ---- parsing ---- */

static void *hook_malloc(size_t n) { return tern_malloc(n); }
static void hook_free(void *p) { tern_free(p); }

void tern_client_json_hooks(void) {
  static bool done;
  if (done) return;
  cJSON_Hooks h = {hook_malloc, hook_free};
  cJSON_InitHooks(&h);
  done = true;
}

static const char *get_str(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t get_i64(const cJSON *o, const char *key, int64_t dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

static bool get_bool(const cJSON *o, const char *key) {
  return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

void tern_client_event_parse(const char *json, size_t len, tern_client_event *ev) {
  memset(ev, 0, sizeof *ev);
  ev->type = TERN_CLIENT_EV_UNKNOWN;
  ev->raw = json;
  ev->raw_len = len;
  ev->last_seen = -1;
  tern_client_json_hooks();
  cJSON *o = cJSON_ParseWithLength(json, len);
  ev->json = o;
  if (!cJSON_IsObject(o)) return;
  const char *type = get_str(o, "type");
  if (!type) return;
  if (strcmp(type, "msg") == 0) {
    ev->type = TERN_CLIENT_EV_MSG;
    ev->seq = (uint64_t)get_i64(o, "seq", 0);
    ev->msg_id = get_str(o, "msg_id");
    ev->from = get_str(o, "from");
    ev->from_device = get_str(o, "from_device");
    ev->to = get_str(o, "to");
    ev->ts = get_i64(o, "ts", 0);
    ev->body = get_str(o, "body");
    ev->body_len = ev->body ? strlen(ev->body) : 0;
    const cJSON *media = cJSON_GetObjectItemCaseSensitive(o, "media");
    ev->media_size = ev->media_width = ev->media_height = -1;
    if (cJSON_IsObject(media)) {
      ev->media_id = get_str(media, "media_id");
      ev->media_mime = get_str(media, "mime");
      ev->media_size = get_i64(media, "size", -1);
      ev->media_width = get_i64(media, "width", -1);
      ev->media_height = get_i64(media, "height", -1);
    }
  } else if (strcmp(type, "receipt") == 0) {
    ev->type = TERN_CLIENT_EV_RECEIPT;
    ev->seq = (uint64_t)get_i64(o, "seq", 0);
    const char *status = get_str(o, "status");
    ev->read = status && strcmp(status, "read") == 0;
    ev->from = get_str(o, "from");
    ev->by = get_str(o, "by");
    ev->ts = get_i64(o, "ts", 0);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "msg_ids");
    int n = cJSON_IsArray(ids) ? cJSON_GetArraySize(ids) : 0;
    if (n > 0) {
      const char **v = tern_calloc((size_t)n, sizeof *v);
      size_t k = 0;
      const cJSON *it;
      cJSON_ArrayForEach(it, ids) {
        if (cJSON_IsString(it)) v[k++] = it->valuestring;
      }
      ev->msg_ids = v;
      ev->n_msg_ids = k;
    }
  } else if (strcmp(type, "sent") == 0) {
    ev->type = TERN_CLIENT_EV_SENT;
    ev->id = get_str(o, "id");
    ev->msg_id = get_str(o, "msg_id");
    ev->ts = get_i64(o, "ts", 0);
  } else if (strcmp(type, "ready") == 0) {
    ev->type = TERN_CLIENT_EV_READY;
    ev->user = get_str(o, "user");
    ev->device_id = get_str(o, "device_id");
    ev->server_time = get_i64(o, "server_time", 0);
  } else if (strcmp(type, "synced") == 0) {
    ev->type = TERN_CLIENT_EV_SYNCED;
    ev->seq = (uint64_t)get_i64(o, "seq", 0);
  } else if (strcmp(type, "error") == 0) {
    ev->type = TERN_CLIENT_EV_ERROR;
    ev->id = get_str(o, "id");
    ev->code = get_str(o, "code");
    ev->message = get_str(o, "message");
    ev->user = get_str(o, "user");
    if (!ev->code) ev->code = "unknown";
    if (!ev->message) ev->message = "";
  } else if (strcmp(type, "presence") == 0) {
    ev->type = TERN_CLIENT_EV_PRESENCE;
    ev->user = get_str(o, "user");
    ev->online = get_bool(o, "online");
    ev->last_seen = ev->online ? -1 : get_i64(o, "last_seen", -1);
  } else if (strcmp(type, "typing") == 0) {
    ev->type = TERN_CLIENT_EV_TYPING;
    ev->from = get_str(o, "from");
    const char *state = get_str(o, "state");
    ev->composing = state && strcmp(state, "composing") == 0;
  } else if (strcmp(type, "pong") == 0) {
    ev->type = TERN_CLIENT_EV_PONG;
    ev->server_time = get_i64(o, "server_time", 0);
  }
}

void tern_client_event_clear(tern_client_event *ev) {
  cJSON_Delete(ev->json);
  tern_free((void *)ev->msg_ids);
  memset(ev, 0, sizeof *ev);
}

void tern_client_format_media(const tern_client_event *ev, char *out, size_t cap) {
  char dims[48] = "", size[32] = "";
  if (ev->media_width > 0 && ev->media_height > 0)
    snprintf(dims, sizeof dims, " %lld×%lld", (long long)ev->media_width, (long long)ev->media_height);
  int64_t n = ev->media_size;
  if (n >= 1 << 20) snprintf(size, sizeof size, "%s%.1f MiB", dims[0] ? ", " : " ", (double)n / (1 << 20));
  else if (n >= 1024) snprintf(size, sizeof size, "%s%lld KiB", dims[0] ? ", " : " ", (long long)((n + 512) / 1024));
  else if (n >= 0) snprintf(size, sizeof size, "%s%lld B", dims[0] ? ", " : " ", (long long)n);
  snprintf(out, cap, "[image%s%s] %s", dims, size, ev->media_id ? ev->media_id : "?");
}
