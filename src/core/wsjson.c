/* wsjson: JSON over WebSocket as a session endpoint (wsjson.h). */
#include "core/wsjson.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "core/limits.h"
#include "core/session.h"
#include "net/ws.h"
#include "proto/event.h"
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
  tern_event ev = {.type = TERN_EV_SENT, .id = tern_str_c(si->id), .msg_id = tern_str_c(si->msg_id), .ts = si->ts};
  if (si->recipients >= 0) {
    ev.has_recipients = true;
    ev.recipients = (uint64_t)si->recipients;
    if (si->nskipped) ev.skipped = (tern_strs){.c = si->skipped, .n = si->nskipped};
  }
  tern_event_encode(b, &ev);
  send_buf(ep, b);
}

static void ep_error(void *ep, const tern_error_info *e) {
  tern_buf *b = scratch_of(ep);
  tern_event ev = {.type = TERN_EV_ERROR, .id = tern_str_c(e->id), .code = tern_str_c(e->code),
                   .message = tern_str_c(e->message), .user = tern_str_c(e->user),
                   .missing = e->missing, .n_missing = e->nmissing, .extra = e->extra, .n_extra = e->nextra};
  tern_event_encode(b, &ev);
  send_buf(ep, b);
}

static void ep_presence(void *ep, const char *user, bool online, int64_t last_seen) {
  tern_buf *b = scratch_of(ep);
  tern_enc_presence(b, user, online, last_seen);
  send_buf(ep, b);
}

static void ep_typing(void *ep, const char *from, const char *group_id, bool composing) {
  tern_buf *b = scratch_of(ep);
  tern_event ev = {.type = TERN_EV_TYPING, .from = tern_str_c(from), .group_id = tern_str_c(group_id),
                   .state = composing ? TERN_TYPING_COMPOSING : TERN_TYPING_PAUSED};
  tern_event_encode(b, &ev);
  send_buf(ep, b);
}

static void ep_profile(void *ep, const char *user, const char *display_name, const char *avatar) {
  tern_buf *b = scratch_of(ep);
  tern_event ev = {.type = TERN_EV_PROFILE, .user = tern_str_c(user), .display_name = tern_str_c(display_name),
                   .avatar = tern_str_c(avatar)};
  tern_event_encode(b, &ev);
  send_buf(ep, b);
}

static void ep_pong(void *ep, int64_t server_time) {
  tern_buf *b = scratch_of(ep);
  tern_enc_pong(b, server_time);
  send_buf(ep, b);
}

/* ---- envelopes ---------------------------------------------------------------------------- */

/* The occurrences of a repeated field as a list of views, kept in scratch (which must not
 * move while the list is used: every list of one envelope is collected before any is used,
 * into separate buffers). */
typedef struct list_ctx {
  tern_buf *buf; /* tern_str entries, back to back */
} list_ctx;

static bool collect(tern_str s, void *arg) {
  list_ctx *c = arg;
  tern_buf_append(c->buf, &s, sizeof s);
  return true;
}

static tern_strs list_of(const tern_env_view *v, tern_env_field tag, tern_buf *buf) {
  tern_buf_reset(buf);
  list_ctx c = {.buf = buf};
  tern_env_each(v, tag, collect, &c);
  static const tern_str none[1];
  return (tern_strs){.v = buf->len ? (const tern_str *)(const void *)buf->data : none, .n = buf->len / sizeof(tern_str)};
}

static bool is_str(tern_str s, const char *lit) { return s.p && s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0; }

static tern_group_event group_event(tern_str s) {
  static const char *names[] = {NULL, "created", "added", "removed", "left", "renamed", "promoted", "demoted"};
  for (int i = 1; i < (int)TERN_ARRAY_LEN(names); i++)
    if (is_str(s, names[i])) return (tern_group_event)i;
  return TERN_GROUP_UNKNOWN;
}

/* Lists of one envelope: each in its own buffer, so that no list moves another (the app's
 * scratch: they keep their memory from envelope to envelope). */
typedef struct env_lists {
  tern_buf *mentions, *by, *msg_ids, *users;
} env_lists;

static void encode_envelope(tern_buf *b, const tern_out_env *o, const env_lists *l) {
  const tern_env_view *v = o->v;
  if (v->version == 1) { /* a record v1 wrote: its JSON tail as stored */
    tern_envelope_encode_v1(b, v->kind == TERN_ENV_RECEIPT, o->seq, v->legacy_tail.p, v->legacy_tail.n);
    return;
  }
  const tern_str *f = v->f;
  tern_envelope e = {.seq = o->seq, .ts = v->ts, .msg_id = f[TERN_EF_MSG_ID], .from = f[TERN_EF_FROM],
                     .from_device = f[TERN_EF_FROM_DEVICE], .to = f[TERN_EF_TO], .group_id = f[TERN_EF_GROUP_ID]};
  switch (v->kind) {
    case TERN_ENV_MSG:
      e.type = TERN_EV_MSG;
      e.body = o->body ? (tern_str){(const char *)o->body, o->body_len} : f[TERN_EF_BODY];
      if (f[TERN_EF_MEDIA_ID].p) {
        e.media = (tern_media_view){
            .media_id = f[TERN_EF_MEDIA_ID],
            .mime = f[TERN_EF_MEDIA_MIME],
            .size = tern_env_has(v, TERN_EF_MEDIA_SIZE) ? (int64_t)tern_env_uint(v, TERN_EF_MEDIA_SIZE) : -1,
            .width = tern_env_has(v, TERN_EF_MEDIA_WIDTH) ? (int64_t)tern_env_uint(v, TERN_EF_MEDIA_WIDTH) : -1,
            .height = tern_env_has(v, TERN_EF_MEDIA_HEIGHT) ? (int64_t)tern_env_uint(v, TERN_EF_MEDIA_HEIGHT) : -1,
            .sha256 = f[TERN_EF_MEDIA_SHA256],
        };
      }
      if (f[TERN_EF_E2E_TYPE].p) {
        e.e2e_type = is_str(f[TERN_EF_E2E_TYPE], "prekey") ? TERN_CIPHER_PREKEY : TERN_CIPHER_MESSAGE;
        e.e2e_body = f[TERN_EF_E2E_BODY];
      }
      e.media_ref = f[TERN_EF_MEDIA_REF];
      e.reply_to = f[TERN_EF_REPLY_TO];
      e.reaction_to = f[TERN_EF_REACTION_TO];
      e.reaction_emoji = f[TERN_EF_REACTION_EMOJI];
      e.edit_of = f[TERN_EF_EDIT_OF];
      e.delete_of = f[TERN_EF_DELETE_OF];
      if (v->count[TERN_EF_MENTION]) e.mentions = list_of(v, TERN_EF_MENTION, l->mentions);
      break;
    case TERN_ENV_RECEIPT:
      e.type = TERN_EV_RECEIPT;
      e.status = is_str(f[TERN_EF_STATUS], "read") ? TERN_RECEIPT_READ : TERN_RECEIPT_DELIVERED;
      if (tern_env_has(v, TERN_EF_BY_LIST)) e.by_list = list_of(v, TERN_EF_BY, l->by);
      else e.by = f[TERN_EF_BY];
      e.msg_ids = list_of(v, TERN_EF_MSG_IDS, l->msg_ids);
      break;
    case TERN_ENV_GROUP:
      e.type = TERN_EV_GROUP;
      e.event = group_event(f[TERN_EF_EVENT]);
      e.by = f[TERN_EF_BY];
      e.name = f[TERN_EF_NAME];
      e.description = f[TERN_EF_DESCRIPTION];
      if (v->count[TERN_EF_USER]) e.users = list_of(v, TERN_EF_USER, l->users);
      break;
    case TERN_ENV_DECRYPT_ERROR:
      e.type = TERN_EV_DECRYPT_ERROR;
      break;
    default:
      return;
  }
  tern_envelope_encode(b, &e);
}

static void ep_envelope(void *ep, const tern_out_env *e) {
  tern_buf *b = scratch_of(ep);
  tern_app *a = ((tern_session *)tern_conn_data(ep))->app;
  env_lists l = {&a->lists[0], &a->lists[1], &a->lists[2], &a->lists[3]};
  encode_envelope(b, e, &l);
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
    .profile = ep_profile,
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
  /* v1.1's frames: groups, e2e and decrypt_error are handled; what the core does not handle
   * yet (reactions, edits, deletes) is refused by the session with a clear error. */
  const tern_frame_limits lim = {.v1_1 = true, .input_is_utf8 = true, /* net/ws.c checked it */
                                 .e2e_max_ciphertext = (size_t)s->app->cfg->e2e_max_ciphertext};
  if (tern_frame_decode_ex(data, len, &lim, &f, &err) < 0) {
    tern_session_bad_request(s, err.id[0] ? err.id : NULL, err.code, err.message);
    return;
  }
  tern_session_request(s, &f, received);
  tern_frame_free(&f);
}

void tern_wsjson_gone(tern_conn *c, void *arg) {
  tern_app *a = arg;
  tern_ip ip;
  if (tern_conn_counted_client(c, &ip)) tern_limits_ws_closed(a->limits, &ip);
  tern_session *s = tern_conn_data(c);
  if (!s) return;
  tern_conn_set_data(c, NULL);
  tern_session_gone(s);
}
