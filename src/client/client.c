/* client.c: the per-loop context and WebSocket connections.
 *
 * A connection goes CONNECTING (dial) → UPGRADING (HTTP 101 handshake) → OPEN (frames) →
 * CLOSING (close frame sent or received) → CLOSED (handles closing; the CLOSED event is
 * emitted from the last close callback, then the connection is freed). The socket is a byte
 * stream (net/stream.h) of the context's stream loop: reads land in its shared buffer and only
 * an incomplete frame's bytes are kept per connection; frames are appended to the stream and
 * written once per loop iteration per connection.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "client/client_int.h"
#include "net/ws.h"

#define SCRATCH_KEEP (16 * 1024)       /* a larger scratch buffer is freed after use */
#define UPGRADE_MAX_BODY 4096          /* body of a refused upgrade we read for its error */

typedef enum {
  ST_CONNECTING = 0,
  ST_UPGRADING,
  ST_OPEN,
  ST_CLOSING,
  ST_CLOSED,
} conn_state;

typedef struct upgrade_state {
  tern_client_http_parser hp; /* the 101 answer */
  char key[25];               /* our Sec-WebSocket-Key */
} upgrade_state;

struct tern_client_conn {
  tern_client *c;                  /* the context */
  tern_client_conn *prev, *next;   /* in c->conns */
  tern_stream *st;                 /* the socket, until its close callback */
  uv_timer_t timer;                /* connect/upgrade deadline, then the close deadline */
  tern_client_dial *dial;          /* while CONNECTING */
  upgrade_state *up;               /* while UPGRADING */
  char *token;                     /* until the auth frame is queued */
  char *host;                      /* Host header, until the upgrade request is written */
  tern_ws_reader reader;           /* frame parser */
  tern_client_event_cb cb;         /* event callback */
  void *arg;                       /* its argument */
  char *message;                   /* for CLOSED: the close reason or the error */
  int err;                         /* for CLOSED */
  int http_status;                 /* for CLOSED: a refused upgrade's status */
  int open_handles;                /* stream and timer until their close callbacks ran */
  uint16_t close_code;             /* for CLOSED */
  uint16_t sent_code;              /* the code of the close frame we sent */
  conn_state state;                /* see the top of the file */
  bool close_after_write;          /* finish once everything queued is written */
  bool silent;                     /* no more callbacks (context freeing) */
};

/* ---- the context ---- */

tern_client *tern_client_new(uv_loop_t *loop, const tern_client_options *opts) {
  tern_client *c = TERN_NEW(tern_client);
  c->loop = loop;
  if (opts) c->opts = *opts;
  if (c->opts.http_timeout_ms <= 0) c->opts.http_timeout_ms = 30000;
  if (c->opts.connect_timeout_ms <= 0) c->opts.connect_timeout_ms = 30000;
  if (c->opts.close_timeout_ms <= 0) c->opts.close_timeout_ms = 2000;
  if (c->opts.max_message == 0) c->opts.max_message = 16u << 20;
  c->sl = tern_stream_loop_new(loop);
  c->masks_used = sizeof c->masks;
  tern_client_json_hooks();
  return c;
}

uv_loop_t *tern_client_loop(const tern_client *c) { return c->loop; }

int tern_client_transport(tern_client *c, const tern_client_url *url, const tern_stream_transport **tp,
                          tern_tls_config *cfg, char *why, size_t whylen) {
  *tp = &tern_stream_transport_tcp;
  if (!url->tls) return 0;
  if (!c->tls) {
    int rc = tern_tls_client_new(c->opts.ca_file, &c->tls, why, whylen);
    if (rc < 0) return rc;
  }
  cfg->tls = c->tls;
  cfg->host = url->host; /* SNI and the certificate's name (or IP address) */
  *tp = &tern_stream_transport_tls;
  return 0;
}

void tern_client_maybe_done(tern_client *c) {
  if (!c->freeing || c->conns || c->reqs) return;
  tern_tls_free(c->tls);
  tern_buf_free(&c->scratch);
  tern_free(c);
}

static void conn_finish(tern_client_conn *k);

void tern_client_free(tern_client *c) {
  if (!c || c->freeing) return;
  c->freeing = true;
  for (tern_client_conn *k = c->conns; k; k = k->next) {
    k->silent = true;
    conn_finish(k);
  }
  tern_client_http_abort_all(c);
  /* every stream is closing now; the stream loop goes once they and its handles are closed */
  tern_stream_loop_free(c->sl);
  tern_client_maybe_done(c);
}

void tern_client_next_mask(tern_client *c, uint8_t mask[4]) {
  if (c->masks_used + 4 > sizeof c->masks) {
    tern_random(c->masks, sizeof c->masks);
    c->masks_used = 0;
  }
  memcpy(mask, c->masks + c->masks_used, 4);
  c->masks_used += 4;
}

/* ---- writing ---- */

/* Frames one payload (masked, as a client must) into the stream. */
static void queue_frame(tern_client_conn *k, uint8_t opcode, const void *payload, size_t len) {
  uint8_t mask[4];
  tern_client_next_mask(k->c, mask);
  tern_ws_append_frame(tern_stream_out(k->st), opcode, true, payload, len, mask);
}

/* Frames whatever is in the context's scratch buffer as one text frame. */
static void queue_scratch(tern_client_conn *k) {
  tern_buf *s = &k->c->scratch;
  queue_frame(k, TERN_WS_OP_TEXT, s->data, s->len);
  tern_buf_reset(s);
  if (s->cap > SCRATCH_KEEP) tern_buf_free(s);
}

static void queue_close(tern_client_conn *k, uint16_t code, const char *reason) {
  uint8_t mask[4];
  tern_client_next_mask(k->c, mask);
  tern_buf *o = tern_stream_out(k->st);
  if (code == TERN_WS_CLOSE_NO_STATUS) tern_ws_append_frame(o, TERN_WS_OP_CLOSE, true, NULL, 0, mask);
  else tern_ws_append_close(o, code, reason ? reason : "", mask);
  k->sent_code = code;
}

/* ---- events ---- */

static void emit(tern_client_conn *k, const tern_client_event *ev) {
  if (k->silent || k->c->freeing) return;
  k->cb(k, ev, k->arg);
}

static void set_message(tern_client_conn *k, const char *s, size_t n) {
  tern_free(k->message);
  k->message = tern_strndup(s, n);
}

/* ---- closing ---- */

/* One of the two handles (stream, timer) closed; after the last, CLOSED and the free. */
static void conn_closed(tern_client_conn *k) {
  if (--k->open_handles > 0) return;
  tern_client *c = k->c;
  tern_client_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = TERN_CLIENT_EV_CLOSED;
  ev.close_code = k->close_code;
  ev.err = k->err;
  ev.http_status = k->http_status;
  ev.message = k->message ? k->message : "";
  ev.last_seen = -1;
  emit(k, &ev);
  if (k->prev) k->prev->next = k->next;
  else c->conns = k->next;
  if (k->next) k->next->prev = k->prev;
  if (k->up) {
    tern_client_hp_free(&k->up->hp);
    tern_free(k->up);
  }
  if (k->token) {
    memset(k->token, 0, strlen(k->token));
    tern_free(k->token);
  }
  tern_free(k->host);
  tern_free(k->message);
  tern_ws_reader_free(&k->reader);
  tern_free(k);
  tern_client_maybe_done(c);
}

static void timer_closed(uv_handle_t *h) { conn_closed(h->data); }

static void stream_closed(tern_stream *st, void *owner) {
  tern_client_conn *k = owner;
  k->st = NULL;
  conn_closed(k);
}

/* Closes the stream and the timer; CLOSED is emitted when both are closed. Idempotent. */
static void conn_finish(tern_client_conn *k) {
  if (k->state == ST_CLOSED) return;
  k->state = ST_CLOSED;
  if (k->dial) {
    tern_client_dial_cancel(k->dial);
    k->dial = NULL;
  }
  tern_stream_close(k->st);
  uv_close((uv_handle_t *)&k->timer, timer_closed);
}

/* Ends the connection because of an error (records it for CLOSED). */
static void conn_fail(tern_client_conn *k, int err, uint16_t code, const char *why) {
  if (k->state == ST_CLOSED) return;
  k->err = err;
  k->close_code = code;
  if (!k->message) set_message(k, why, strlen(why));
  conn_finish(k);
}

/* Finish once the close frame (and everything before it) has reached the kernel. */
static void finish_after_write(tern_client_conn *k) {
  k->close_after_write = true;
  if (!tern_stream_outbound(k->st)) conn_finish(k);
}

static void on_timer(uv_timer_t *t) {
  tern_client_conn *k = t->data;
  if (k->state == ST_CLOSING) {
    /* The server did not answer our close frame in time: we are done anyway. */
    if (!k->close_code) k->close_code = k->sent_code;
    conn_finish(k);
  } else {
    conn_fail(k, UV_ETIMEDOUT, 0, "timed out connecting");
  }
}

void tern_client_close(tern_client_conn *k, uint16_t code) {
  if (!k) return;
  if (code == 0) code = TERN_WS_CLOSE_NORMAL;
  switch (k->state) {
    case ST_CONNECTING:
    case ST_UPGRADING:
      conn_fail(k, UV_ECANCELED, 0, "closed before the WebSocket opened");
      break;
    case ST_OPEN:
      queue_close(k, code, "");
      k->state = ST_CLOSING;
      uv_timer_start(&k->timer, on_timer, (uint64_t)k->c->opts.close_timeout_ms, 0);
      break;
    default:
      break;
  }
}

void tern_client_abort(tern_client_conn *k) {
  if (!k || k->state == ST_CLOSED) return;
  if (k->state < ST_OPEN) {
    conn_fail(k, UV_ECANCELED, 0, "closed before the WebSocket opened");
    return;
  }
  if (!k->close_code) k->close_code = 1006;
  conn_finish(k);
}

/* ---- reading ---- */

/* Handles one WebSocket event from the reader. */
static void on_ws_event(tern_client_conn *k, const tern_ws_event *we) {
  switch (we->type) {
    case TERN_WS_EV_MESSAGE: {
      if (k->state != ST_OPEN) return; /* after a close frame, nothing more is delivered */
      tern_client_event ev;
      if (we->opcode == TERN_WS_OP_TEXT) {
        tern_client_event_parse((const char *)we->data, we->len, &ev);
      } else {
        memset(&ev, 0, sizeof ev);
        ev.type = TERN_CLIENT_EV_UNKNOWN;
        ev.raw = (const char *)we->data;
        ev.raw_len = we->len;
        ev.last_seen = -1;
      }
      emit(k, &ev);
      tern_client_event_clear(&ev);
      break;
    }
    case TERN_WS_EV_PING:
      if (k->state == ST_OPEN) queue_frame(k, TERN_WS_OP_PONG, we->data, we->len);
      break;
    case TERN_WS_EV_PONG:
    case TERN_WS_EV_NONE:
      break;
    case TERN_WS_EV_CLOSE:
      k->close_code = we->close_code;
      set_message(k, (const char *)we->data, we->len);
      if (k->state == ST_OPEN) {
        /* The server started the close: echo it, then hang up once it is written. */
        queue_close(k, we->close_code, NULL);
        k->state = ST_CLOSING;
        uv_timer_start(&k->timer, on_timer, (uint64_t)k->c->opts.close_timeout_ms, 0);
        finish_after_write(k);
      } else {
        conn_finish(k); /* the answer to our close */
      }
      break;
    case TERN_WS_EV_ERROR:
      if (k->state == ST_OPEN) queue_close(k, we->close_code, we->reason);
      k->err = -EPROTO;
      k->close_code = we->close_code;
      set_message(k, we->reason ? we->reason : "protocol error", strlen(we->reason ? we->reason : "protocol error"));
      k->state = ST_CLOSING;
      uv_timer_start(&k->timer, on_timer, (uint64_t)k->c->opts.close_timeout_ms, 0);
      finish_after_write(k);
      break;
  }
}

/* Parses WebSocket frames from data; returns the bytes consumed. */
static size_t ws_process(tern_client_conn *k, uint8_t *data, size_t len) {
  size_t off = 0;
  while (off < len && (k->state == ST_OPEN || k->state == ST_CLOSING) && !k->reader.failed) {
    tern_ws_event we;
    size_t used = tern_ws_read(&k->reader, data + off, len - off, &we);
    off += used;
    if (we.type == TERN_WS_EV_NONE) {
      if (used == 0) break;
      continue;
    }
    on_ws_event(k, &we);
  }
  return off;
}

/* The upgrade answer is complete: check it and open. */
static void upgrade_done(tern_client_conn *k) {
  upgrade_state *up = k->up;
  const char *why = NULL;
  if (tern_client_upgrade_check(&up->hp, up->key, &why) < 0) {
    k->http_status = up->hp.status;
    tern_client_response r;
    tern_client_response_from_parser(&r, &up->hp);
    char msg[400];
    if (r.status != 101 && r.code[0] && strcmp(r.code, "bad_response") != 0)
      snprintf(msg, sizeof msg, "upgrade refused (HTTP %d): %s: %s", r.status, r.code, r.message);
    else snprintf(msg, sizeof msg, "upgrade refused (HTTP %d): %s", r.status, why);
    tern_client_response_free(&r);
    conn_fail(k, -EPROTO, 0, msg);
    return;
  }
  tern_client_hp_free(&up->hp);
  tern_free(up);
  k->up = NULL;
  uv_timer_stop(&k->timer);
  k->state = ST_OPEN;
  if (k->token) {
    tern_frame f = {.type = TERN_FRAME_AUTH, .token = k->token};
    /* A token proto refuses (too long, not UTF-8) goes out empty: the server's answer is the
     * same (unauthorized, then close 4001), and that answer is what the caller expects. */
    tern_buf_reset(&k->c->scratch);
    tern_frame_error err;
    if (tern_frame_encode(&k->c->scratch, &f, NULL, &err) == 0) {
      queue_scratch(k);
    } else {
      static const char empty[] = "{\"type\":\"auth\",\"token\":\"\"}";
      queue_frame(k, TERN_WS_OP_TEXT, empty, sizeof empty - 1);
    }
    memset(k->token, 0, strlen(k->token));
    tern_free(k->token);
    k->token = NULL;
  }
  tern_client_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = TERN_CLIENT_EV_OPEN;
  ev.last_seen = -1;
  emit(k, &ev);
}

/* Consumes bytes in any state; returns how many were used. */
static size_t conn_process(tern_client_conn *k, uint8_t *data, size_t len) {
  size_t off = 0;
  if (k->state == ST_UPGRADING) {
    ssize_t used = tern_client_hp_feed(&k->up->hp, (const char *)data, len);
    if (used < 0) {
      conn_fail(k, -EBADMSG, 0, "the server's upgrade answer is not valid HTTP");
      return len;
    }
    off = (size_t)used;
    if (!k->up->hp.done) return len;
    upgrade_done(k);
  }
  if (k->state == ST_OPEN || k->state == ST_CLOSING) off += ws_process(k, data + off, len - off);
  else off = len; /* closed: drop the rest */
  return off;
}

static size_t on_data(tern_stream *st, char *data, size_t len, void *owner) {
  return conn_process(owner, (uint8_t *)data, len);
}

static void on_end(tern_stream *st, int err, bool write, void *owner) {
  tern_client_conn *k = owner;
  if (write) {
    conn_fail(k, err, 1006, "write failed");
    return;
  }
  if (k->state == ST_UPGRADING) {
    if (err == UV_EOF && tern_client_hp_eof(&k->up->hp) == 0) upgrade_done(k);
    if (k->state == ST_UPGRADING)
      conn_fail(k, err == UV_EOF ? UV_ECONNRESET : err, 0, "connection closed during the upgrade");
    if (k->state == ST_OPEN) conn_fail(k, 0, 1006, "connection lost");
    return;
  }
  if (k->state == ST_CLOSING && (k->close_code || err == UV_EOF)) {
    if (!k->close_code) k->close_code = k->sent_code;
    conn_finish(k);
  } else {
    conn_fail(k, err == UV_EOF ? 0 : err, 1006, "connection lost");
  }
}

static void on_flush(tern_stream *st, void *owner) {
  tern_client_conn *k = owner;
  if (k->close_after_write && !tern_stream_outbound(st)) conn_finish(k);
}

static const tern_stream_cbs conn_cbs = {
    .on_data = on_data,
    .on_end = on_end,
    .on_flush = on_flush,
    .on_close = stream_closed,
};

static void on_connected(void *owner, int status) {
  tern_client_conn *k = owner;
  k->dial = NULL;
  if (status < 0) {
    conn_fail(k, status, 0, "could not connect");
    return;
  }
  uv_tcp_nodelay(tern_stream_handle(k->st), 1);
  k->state = ST_UPGRADING;
  k->up = TERN_NEW(upgrade_state);
  tern_client_hp_init(&k->up->hp, UPGRADE_MAX_BODY);
  tern_client_upgrade_request(tern_stream_out(k->st), k->host, k->up->key);
  tern_free(k->host);
  k->host = NULL;
  char err[128];
  int rc = tern_stream_start(k->st, err, sizeof err);
  if (rc < 0) conn_fail(k, rc, 0, "could not read");
}

int tern_client_connect(tern_client *c, const tern_client_conn_options *o, tern_client_conn **out) {
  if (!c || !o || !o->url || !o->on_event || !out) return -EINVAL;
  if (c->freeing) return -ECANCELED;
  if (o->token && (strpbrk(o->token, "\r\n") || strlen(o->token) > TERN_CLIENT_TOKEN_MAX)) return -EINVAL;
  char why[256];
  const tern_stream_transport *tp;
  tern_tls_config tc = {0};
  int err = tern_client_transport(c, o->url, &tp, &tc, why, sizeof why);
  if (err < 0) return err;
  tern_client_conn *k = TERN_NEW(tern_client_conn);
  err = tern_stream_open(c->sl, tp, tc.tls ? &tc : NULL, &conn_cbs, k, &k->st, why, sizeof why);
  if (err < 0) {
    tern_free(k);
    return err;
  }
  k->c = c;
  k->cb = o->on_event;
  k->arg = o->arg;
  k->token = o->token ? tern_strdup(o->token) : NULL;
  k->host = tern_strdup(o->url->hostport);
  tern_ws_reader_init(&k->reader, false, c->opts.max_message);
  uv_timer_init(c->loop, &k->timer);
  k->timer.data = k;
  k->open_handles = 2;
  k->next = c->conns;
  if (c->conns) c->conns->prev = k;
  c->conns = k;
  k->dial = tern_client_dial_start(tern_stream_handle(k->st), o->url->host, o->url->port, o->bind_ip, on_connected, k,
                                   &err);
  if (!k->dial) {
    k->silent = true;
    conn_finish(k);
    return err;
  }
  uv_timer_start(&k->timer, on_timer, (uint64_t)c->opts.connect_timeout_ms, 0);
  *out = k;
  return 0;
}

/* ---- handshake ---- */

void tern_client_upgrade_request(tern_buf *out, const char *hostport, char key_out[25]) {
  uint8_t raw[16];
  tern_random(raw, sizeof raw);
  EVP_EncodeBlock((unsigned char *)key_out, raw, sizeof raw);
  tern_buf_printf(out,
                  "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: tern-client\r\n\r\n",
                  hostport, key_out);
}

int tern_client_upgrade_check(const tern_client_http_parser *hp, const char *key, const char **why) {
  char want[29];
  if (hp->status != 101) {
    *why = "not 101 Switching Protocols";
    return -EPROTO;
  }
  if (!hp->upgrade_ws || !hp->conn_upgrade) {
    *why = "missing Upgrade: websocket / Connection: Upgrade";
    return -EPROTO;
  }
  tern_ws_accept_key(key, strlen(key), want);
  if (strcmp(want, hp->accept) != 0) {
    *why = "wrong Sec-WebSocket-Accept";
    return -EPROTO;
  }
  return 0;
}

/* ---- accessors and senders ---- */

bool tern_client_is_open(const tern_client_conn *k) { return k && k->state == ST_OPEN; }

size_t tern_client_outbound(const tern_client_conn *k) { return k->st ? tern_stream_outbound(k->st) : 0; }

void *tern_client_conn_arg(const tern_client_conn *k) { return k->arg; }

void tern_client_conn_set_arg(tern_client_conn *k, void *arg) { k->arg = arg; }

/* Every sender comes here: proto writes the frame (after the server's own checks) into the
 * context's scratch buffer, which is then framed into the connection. */
int tern_client_send_frame(tern_client_conn *k, const tern_frame *f, tern_frame_error *err) {
  tern_frame_error spare;
  if (!k || !f) return -EINVAL;
  if (k->state != ST_OPEN) return -ENOTCONN;
  tern_buf_reset(&k->c->scratch);
  int rc = tern_frame_encode(&k->c->scratch, f, NULL, err ? err : &spare);
  if (rc) return rc;
  queue_scratch(k);
  return 0;
}

/* The v1 shorthands fill a tern_frame with the caller's strings. tern_frame's fields are not
 * const because a decoded frame owns them; the encoder only reads them, so the casts below
 * never lead to a write. */

/* A plaintext send to a user (to) or a group (group_id): exactly one of them is set. */
static int send_plain(tern_client_conn *k, const char *id, const char *to, const char *group_id, const char *body,
                      size_t body_len, const char *media_id) {
  if (!k || !id || (!to && !group_id) || (!body && !media_id)) return -EINVAL;
  tern_frame f = {.type = TERN_FRAME_SEND,
                  .id = (char *)id,
                  .to = (char *)to,
                  .group_id = (char *)group_id,
                  .body = (char *)body,
                  .body_len = body ? body_len : 0,
                  .media_id = (char *)media_id};
  return tern_client_send_frame(k, &f, NULL);
}

int tern_client_send(tern_client_conn *k, const char *id, const char *to, const char *body, size_t body_len,
                     const char *media_id) {
  return to ? send_plain(k, id, to, NULL, body, body_len, media_id) : -EINVAL;
}

int tern_client_send_group(tern_client_conn *k, const char *id, const char *group_id, const char *body,
                           size_t body_len, const char *media_id) {
  return group_id ? send_plain(k, id, NULL, group_id, body, body_len, media_id) : -EINVAL;
}

int tern_client_ack(tern_client_conn *k, uint64_t seq) {
  tern_frame f = {.type = TERN_FRAME_ACK, .seq = seq};
  return tern_client_send_frame(k, &f, NULL);
}

/* group_id NULL: a 1:1 read. */
static int send_read(tern_client_conn *k, const char *group_id, const char *peer, const char *const *msg_ids,
                     size_t n) {
  if (!k || !peer || (n && !msg_ids)) return -EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!msg_ids[i]) return -EINVAL;
  tern_frame f = {.type = TERN_FRAME_READ,
                  .peer = (char *)peer,
                  .group_id = (char *)group_id,
                  .ids = (char **)msg_ids,
                  .nids = n};
  return tern_client_send_frame(k, &f, NULL);
}

int tern_client_read(tern_client_conn *k, const char *peer, const char *const *msg_ids, size_t n) {
  return send_read(k, NULL, peer, msg_ids, n);
}

int tern_client_read_group(tern_client_conn *k, const char *group_id, const char *peer, const char *const *msg_ids,
                           size_t n) {
  if (!group_id) return -EINVAL;
  return send_read(k, group_id, peer, msg_ids, n);
}

static int send_users(tern_client_conn *k, tern_frame_type type, const char *const *users, size_t n) {
  if (!k || (n && !users)) return -EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!users[i]) return -EINVAL;
  tern_frame f = {.type = type, .users = (char **)users, .nusers = n};
  return tern_client_send_frame(k, &f, NULL);
}

int tern_client_watch(tern_client_conn *k, const char *const *users, size_t n) {
  return send_users(k, TERN_FRAME_WATCH, users, n);
}

int tern_client_unwatch(tern_client_conn *k, const char *const *users, size_t n) {
  return send_users(k, TERN_FRAME_UNWATCH, users, n);
}

/* Typing to a user (to) or a group (group_id). */
static int send_typing(tern_client_conn *k, const char *to, const char *group_id, bool composing) {
  if (!k || (!to && !group_id)) return -EINVAL;
  tern_frame f = {.type = TERN_FRAME_TYPING, .to = (char *)to, .group_id = (char *)group_id, .composing = composing};
  return tern_client_send_frame(k, &f, NULL);
}

int tern_client_typing(tern_client_conn *k, const char *to, bool composing) {
  return to ? send_typing(k, to, NULL, composing) : -EINVAL;
}

int tern_client_typing_group(tern_client_conn *k, const char *group_id, bool composing) {
  return group_id ? send_typing(k, NULL, group_id, composing) : -EINVAL;
}

int tern_client_ping(tern_client_conn *k) {
  tern_frame f = {.type = TERN_FRAME_PING};
  return tern_client_send_frame(k, &f, NULL);
}

int tern_client_send_raw(tern_client_conn *k, const void *data, size_t len) {
  if (!k || (len && !data)) return -EINVAL;
  if (k->state != ST_OPEN) return -ENOTCONN;
  queue_frame(k, TERN_WS_OP_TEXT, data, len);
  return 0;
}
