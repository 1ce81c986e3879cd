/* session: one authenticated WebSocket: the auth handshake, the drain of the stored inbox,
 * live delivery in seq order, and dispatch of client frames. */
#include <errno.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/core.h"
#include "net/ws.h"

void tern_session_ref(tern_session *s) { s->refs++; }

void tern_session_unref(tern_session *s) {
  if (--s->refs == 0) {
    for (size_t i = 0; i < s->nreads; i++) tern_frame_free(&s->reads[i]);
    tern_free(s->reads);
    tern_free(s->watching);
    tern_free(s);
  }
}

void tern_session_open(tern_app *a, tern_conn *c) {
  tern_session *s = TERN_NEW(tern_session);
  s->app = a;
  s->conn = c;
  s->refs = 1; /* the connection's */
  s->state = SESS_AUTH;
  tern_conn_set_data(c, s);
}

static void send_frame(tern_session *s, const tern_buf *b) {
  if (s->conn) tern_conn_ws_text(s->conn, b->data, b->len);
}

static void send_error(tern_session *s, const char *id, const char *code, const char *message) {
  tern_buf b = {0};
  tern_enc_error(&b, id, code, message, NULL);
  send_frame(s, &b);
  tern_buf_free(&b);
}

/* Writes one envelope: head with the seq, then the stored JSON tail. */
static void write_envelope(tern_session *s, uint64_t seq, const tern_env_view *v) {
  /* The head is a few dozen bytes; one buffer per loop thread avoids an allocation per
   * envelope (the connection copies it). */
  static tern_buf head;
  tern_buf_reset(&head);
  tern_enc_envelope_head(&head, v->kind == TERN_ENV_RECEIPT, seq);
  tern_part parts[2] = {{head.data, head.len}, {v->tail, v->tail_len}};
  tern_conn_ws_text_parts(s->conn, parts, 2);
  s->sent_seq = seq;
  s->app->metrics.envelopes_delivered++;
}

static void drain_step(tern_session *s);

static void on_drain_done(tern_store_op *op) {
  tern_session *s = op->arg;
  tern_app *a = s->app;
  s->drain_inflight = false;
  if (s->state == SESS_DRAIN && s->conn) {
    if (op->status != TERN_STORE_OK) {
      TERN_ERROR("drain failed", "device=%s err=%s", s->dev ? s->dev->id : "-", tern_log_quote(op->err));
      tern_conn_ws_close(s->conn, TERN_WS_CLOSE_INTERNAL, "store error");
    } else {
      for (size_t i = 0; i < op->nitems && s->conn; i++) {
        tern_env_view v;
        if (op->items[i].seq <= s->sent_seq) continue;
        if (tern_env_unpack(op->items[i].value, op->items[i].len, &v) < 0) {
          TERN_ERROR("corrupt envelope skipped", "device=%s seq=%llu", s->dev->id,
                     (unsigned long long)op->items[i].seq);
          s->sent_seq = op->items[i].seq;
          continue;
        }
        write_envelope(s, op->items[i].seq, &v);
      }
      if (s->conn) {
        if (op->more || op->nitems) {
          /* read again until a read returns nothing new: envelopes committed while we
           * drained are then included, and later ones come live */
          drain_step(s);
        } else {
          tern_buf b = {0};
          tern_enc_synced(&b, s->sent_seq);
          send_frame(s, &b);
          tern_buf_free(&b);
          s->state = SESS_LIVE;
        }
      }
    }
  }
  tern_session_unref(s);
  tern_app_op_done(a);
}

static void drain_step(tern_session *s) {
  tern_app *a = s->app;
  if (s->drain_inflight || !s->conn || !s->dev) return;
  /* pace: don't read more from the store than the client is taking; a step reads at most
   * what fits in half of ws.max_outbound, so a reading client is never closed for it */
  size_t half = (size_t)a->cfg->ws_max_outbound / 2, queued = tern_conn_outbound(s->conn);
  if (queued > half / 2) {
    if (!s->drain_waiting) {
      s->drain_waiting = true;
      tern_session_ref(s);
      s->wait_next = a->waiting;
      a->waiting = s;
      tern_app_pace_soon(a);
    }
    return;
  }
  s->drain_inflight = true;
  tern_store_op *op = tern_store_op_new(TERN_OP_DRAIN, on_drain_done, s);
  tern_store_op_set_str(&op->inbox, s->dev->id);
  op->seq = s->sent_seq;
  op->max_bytes = TERN_MIN((size_t)a->cfg->inbox_drain_batch, half - queued);
  tern_session_ref(s);
  tern_app_submit(a, op);
}

void tern_session_pace(tern_app *a) {
  tern_session *list = a->waiting;
  a->waiting = NULL;
  while (list) {
    tern_session *s = list;
    list = s->wait_next;
    s->wait_next = NULL;
    s->drain_waiting = false;
    if (s->state == SESS_DRAIN && s->conn) drain_step(s);
    tern_session_unref(s);
  }
}

void tern_session_deliver(tern_session *s, uint64_t seq, const uint8_t *value, size_t len) {
  if (s->state != SESS_LIVE || !s->conn) return; /* a drain in progress will read it */
  if (seq <= s->sent_seq) return;
  if (seq != s->sent_seq + 1) {
    /* a gap: something in between was not written live; read it from the store in order */
    s->state = SESS_DRAIN;
    drain_step(s);
    return;
  }
  tern_env_view v;
  if (tern_env_unpack(value, len, &v) < 0) return;
  write_envelope(s, seq, &v);
}

int64_t tern_user_last_seen(tern_app *a, tern_user *u) {
  int64_t ls = u->last_seen;
  for (tern_device *d = u->devices; d; d = d->next_in_user) {
    if (d->session && d->session->conn) {
      int64_t rx = tern_conn_last_rx(d->session->conn);
      if (rx > ls) ls = rx;
    }
  }
  return ls;
}

static void do_auth(tern_app *a, tern_session *s, tern_frame *f) {
  tern_device *d = tern_dir_by_token(a, f->token, strlen(f->token));
  if (!d) {
    send_error(s, NULL, "unauthorized", "the token is not valid");
    tern_conn_ws_close(s->conn, 4001, "not authenticated");
    return;
  }
  if (d->session) {
    tern_session *old = d->session;
    TERN_INFO("connection replaced", "device=%s", d->id);
    tern_conn_ws_close(old->conn, 4003, "replaced by a newer connection");
    /* on_ws_gone detached it */
  }
  s->dev = d;
  d->session = s;
  tern_pushglue_online(a, d);
  tern_conn_set_authed(s->conn);
  tern_user *u = d->user;
  u->online++;
  d->last_seen = tern_now_ms();
  if (u->online == 1) tern_presence_changed(a, u);
  tern_buf b = {0};
  tern_enc_ready(&b, u->name, d->id, tern_now_ms());
  send_frame(s, &b);
  tern_buf_free(&b);
  s->state = SESS_DRAIN;
  TERN_DEBUG("authenticated", "user=%s device=%s conn=%llu", u->name, d->id, (unsigned long long)tern_conn_id(s->conn));
  drain_step(s);
}

void tern_session_text(tern_app *a, tern_conn *c, const char *data, size_t len) {
  tern_session *s = tern_conn_data(c);
  if (!s || a->stopping) return; /* after a shutdown signal, new frames are not taken */
  uint64_t received = tern_mono_ns();
  tern_frame f;
  tern_frame_error err;
  if (tern_frame_decode(data, len, &f, &err) < 0) {
    if (s->state == SESS_AUTH) {
      send_error(s, NULL, "unauthorized", "the first frame must be {\"type\":\"auth\",\"token\":...}");
      tern_conn_ws_close(c, 4001, "not authenticated");
      return;
    }
    send_error(s, err.id[0] ? err.id : NULL, err.code, err.message);
    return;
  }
  if (s->state == SESS_AUTH) {
    if (f.type == TERN_FRAME_AUTH) {
      do_auth(a, s, &f);
    } else {
      send_error(s, NULL, "unauthorized", "the first frame must be {\"type\":\"auth\",\"token\":...}");
      tern_conn_ws_close(c, 4001, "not authenticated");
    }
    tern_frame_free(&f);
    return;
  }
  if (!s->dev) {
    tern_frame_free(&f);
    return;
  }
  switch (f.type) {
    case TERN_FRAME_AUTH:
      send_error(s, NULL, "bad_request", "already authenticated");
      break;
    case TERN_FRAME_SEND:
      tern_router_send(a, s, &f, received);
      break;
    case TERN_FRAME_ACK:
      tern_router_ack(a, s, f.seq);
      break;
    case TERN_FRAME_READ:
      tern_router_read(a, s, &f);
      break;
    case TERN_FRAME_WATCH:
      tern_presence_watch(a, s, &f);
      break;
    case TERN_FRAME_UNWATCH:
      tern_presence_unwatch(a, s, &f);
      break;
    case TERN_FRAME_TYPING:
      tern_presence_typing(a, s, &f);
      break;
    case TERN_FRAME_PING: {
      tern_buf b = {0};
      tern_enc_pong(&b, tern_now_ms());
      send_frame(s, &b);
      tern_buf_free(&b);
      break;
    }
  }
  tern_frame_free(&f);
}

void tern_session_gone(tern_app *a, tern_conn *c) {
  tern_session *s = tern_conn_data(c);
  if (!s) return;
  tern_conn_set_data(c, NULL);
  tern_presence_drop_session(a, s);
  tern_device *d = s->dev;
  if (d && d->session == s) {
    d->session = NULL;
    tern_user *u = d->user;
    int64_t rx = tern_conn_last_rx(c);
    if (rx > u->last_seen) u->last_seen = rx;
    if (rx > d->last_seen) d->last_seen = rx;
    u->online--;
    tern_app_persist_last_seen(a, u, d);
    if (u->online == 0) tern_presence_changed(a, u);
  }
  s->dev = NULL;
  s->conn = NULL;
  s->state = SESS_GONE;
  tern_session_unref(s);
}
