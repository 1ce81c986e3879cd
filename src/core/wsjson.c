/* wsjson: JSON over WebSocket as a session endpoint (wsjson.h). */
#include "core/wsjson.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "core/session.h"
#include "net/ws.h"
#include "proto/frame.h"

/* The endpoint is the connection itself: ep is the tern_conn, and the session is its data. */

static void send_buf(tern_conn *c, const tern_buf *b) { tern_conn_ws_text(c, b->data, b->len); }

/* Each answer is encoded into the app's scratch buffer, which the connection copies. */
static tern_buf *scratch_of(tern_conn *c) {
  tern_session *s = tern_conn_data(c);
  tern_buf *b = &s->app->scratch;
  tern_buf_reset(b);
  return b;
}

static void ep_ready(void *ep, const char *user, const char *device_id, int64_t server_time) {
  tern_buf *b = scratch_of(ep);
  tern_enc_ready(b, user, device_id, server_time);
  send_buf(ep, b);
}

static void ep_synced(void *ep, uint64_t seq) {
  tern_buf *b = scratch_of(ep);
  tern_enc_synced(b, seq);
  send_buf(ep, b);
}

static void ep_sent(void *ep, const tern_sent_info *si) {
  tern_buf *b = scratch_of(ep);
  tern_enc_sent(b, si->id, si->msg_id, si->ts);
  send_buf(ep, b);
}

static void ep_error(void *ep, const tern_error_info *e) {
  tern_buf *b = scratch_of(ep);
  tern_enc_error(b, e->id, e->code, e->message, e->user);
  send_buf(ep, b);
}

static void ep_presence(void *ep, const char *user, bool online, int64_t last_seen) {
  tern_buf *b = scratch_of(ep);
  tern_enc_presence(b, user, online, last_seen);
  send_buf(ep, b);
}

static void ep_typing(void *ep, const char *from, const char *group_id, bool composing) {
  tern_buf *b = scratch_of(ep);
  tern_enc_typing(b, from, composing);
  send_buf(ep, b);
}

static void ep_pong(void *ep, int64_t server_time) {
  tern_buf *b = scratch_of(ep);
  tern_enc_pong(b, server_time);
  send_buf(ep, b);
}

/* ---- envelopes ---------------------------------------------------------------------------- */

/* A record's field as a NUL-terminated string in dst (cut to fit; fields the server wrote
 * always fit). */
static const char *cstr(tern_slice s, char *dst, size_t cap) {
  if (!s.p) return NULL;
  size_t n = TERN_MIN(s.n, cap - 1);
  memcpy(dst, s.p, n);
  dst[n] = '\0';
  return dst;
}

typedef struct ids_ctx {
  tern_buf *store;   /* the ids, NUL-terminated, back to back */
  size_t n;
} ids_ctx;

static bool collect_id(tern_slice s, void *arg) {
  ids_ctx *c = arg;
  tern_buf_append(c->store, s.p, s.n);
  tern_buf_putc(c->store, '\0');
  c->n++;
  return true;
}

static void encode_envelope(tern_buf *b, const tern_out_env *e) {
  const tern_env_view *v = e->v;
  bool receipt = v->kind == TERN_ENV_RECEIPT;
  tern_enc_envelope_head(b, receipt, e->seq);
  if (v->version == 1) { /* a record v1 wrote: its JSON tail as stored */
    tern_buf_append(b, v->legacy_tail.p, v->legacy_tail.n);
    return;
  }
  char msg_id[TERN_MSG_ID_MAX + 1], from[TERN_USERNAME_MAX + 1], by[TERN_USERNAME_MAX + 1], to[TERN_USERNAME_MAX + 1];
  char dev[128];
  if (receipt) {
    tern_buf ids = {0};
    ids_ctx c = {.store = &ids};
    tern_env_each(v, TERN_EF_MSG_IDS, collect_id, &c);
    const char **list = tern_malloc((c.n ? c.n : 1) * sizeof *list);
    for (size_t i = 0, off = 0; i < c.n; i++) {
      list[i] = ids.data + off;
      off += strlen(list[i]) + 1;
    }
    bool read = v->f[TERN_EF_STATUS].n == 4 && memcmp(v->f[TERN_EF_STATUS].p, "read", 4) == 0;
    tern_enc_receipt_tail(b, read, cstr(v->f[TERN_EF_FROM], from, sizeof from), cstr(v->f[TERN_EF_BY], by, sizeof by),
                          list, c.n, v->ts);
    tern_free(list);
    tern_buf_free(&ids);
    return;
  }
  tern_buf media = {0};
  if (tern_env_has(v, TERN_EF_MEDIA_ID)) {
    char id[64], mime[64], sha[80];
    tern_buf_printf(&media, "{\"media_id\":\"%s\",\"mime\":\"%s\",\"size\":%llu,\"sha256\":\"%s\",\"width\":%llu,\"height\":%llu}",
                    cstr(v->f[TERN_EF_MEDIA_ID], id, sizeof id), cstr(v->f[TERN_EF_MEDIA_MIME], mime, sizeof mime),
                    (unsigned long long)tern_env_uint(v, TERN_EF_MEDIA_SIZE),
                    cstr(v->f[TERN_EF_MEDIA_SHA256], sha, sizeof sha),
                    (unsigned long long)tern_env_uint(v, TERN_EF_MEDIA_WIDTH),
                    (unsigned long long)tern_env_uint(v, TERN_EF_MEDIA_HEIGHT));
  }
  tern_slice body = v->f[TERN_EF_BODY];
  if (e->body) body = (tern_slice){(const char *)e->body, e->body_len};
  tern_enc_msg_tail(b, cstr(v->f[TERN_EF_MSG_ID], msg_id, sizeof msg_id), cstr(v->f[TERN_EF_FROM], from, sizeof from),
                    cstr(v->f[TERN_EF_FROM_DEVICE], dev, sizeof dev), cstr(v->f[TERN_EF_TO], to, sizeof to), v->ts,
                    body.p, body.n, media.len ? tern_buf_cstr(&media) : NULL);
  tern_buf_free(&media);
}

static void ep_envelope(void *ep, const tern_out_env *e) {
  tern_buf *b = scratch_of(ep);
  encode_envelope(b, e);
  send_buf(ep, b);
}

/* ---- the connection ------------------------------------------------------------------------- */

static void ep_close(void *ep, tern_close_reason why) {
  uint16_t code = TERN_WS_CLOSE_INTERNAL;
  const char *reason = "internal error";
  switch (why) {
    case TERN_CLOSE_UNAUTHORIZED: code = 4001, reason = "not authenticated"; break;
    case TERN_CLOSE_LOGGED_OUT: code = 4002, reason = "device logged out"; break;
    case TERN_CLOSE_REPLACED: code = 4003, reason = "replaced by a newer connection"; break;
    case TERN_CLOSE_SHUTDOWN: code = TERN_WS_CLOSE_GOING_AWAY, reason = "server shutting down"; break;
    case TERN_CLOSE_INTERNAL: code = TERN_WS_CLOSE_INTERNAL, reason = "store error"; break;
  }
  tern_conn_ws_close(ep, code, reason);
}

static void ep_authed(void *ep) { tern_conn_set_authed(ep); }
static size_t ep_backlog(void *ep) { return tern_conn_outbound(ep); }
static int64_t ep_last_rx(void *ep) { return tern_conn_last_rx(ep); }

static const tern_endpoint_ops wsjson_ops = {
    .ready = ep_ready,
    .synced = ep_synced,
    .sent = ep_sent,
    .error = ep_error,
    .envelope = ep_envelope,
    .presence = ep_presence,
    .typing = ep_typing,
    .pong = ep_pong,
    .close = ep_close,
    .authed = ep_authed,
    .backlog = ep_backlog,
    .last_rx = ep_last_rx,
};

void tern_wsjson_open(tern_conn *c, void *arg) {
  tern_session *s = tern_session_new(arg, &wsjson_ops, c);
  tern_conn_set_data(c, s);
}

void tern_wsjson_text(tern_conn *c, const char *data, size_t len, void *arg) {
  tern_session *s = tern_conn_data(c);
  if (!s) return;
  uint64_t received = tern_mono_ns();
  tern_frame f;
  tern_frame_error err;
  if (tern_frame_decode(data, len, &f, &err) < 0) {
    tern_session_bad_request(s, err.id[0] ? err.id : NULL, err.code, err.message);
    return;
  }
  tern_session_request(s, &f, received);
  tern_frame_free(&f);
}

void tern_wsjson_gone(tern_conn *c, void *arg) {
  tern_session *s = tern_conn_data(c);
  if (!s) return;
  tern_conn_set_data(c, NULL);
  tern_session_gone(s);
}
