#include "net/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/map.h"
#include "base/util.h"
#include "net/tls.h"
#include "net/ws.h"

#define LINGER_MS 2000            /* how long a closing connection is drained before close */
#define OVERFLOW_LINGER_MS 10000  /* how long a client over ws.max_outbound has to read again */
#define STREAM_LOW_WATER (64 * 1024) /* a streamed body is asked for more below this backlog */

struct tern_http_stream {
  tern_conn *conn;        /* where it goes; NULL once gone */
  tern_http_req *req;     /* the request it answers (owned) */
  tern_http_stream_cb cb; /* the producer */
  void *arg;
  bool asked;             /* WANT was called and nothing was written since */
  bool ended;             /* the producer wrote everything */
  bool aborted;           /* the producer gave up, or a write failed */
  bool head_only;         /* HEAD: no body */
};

typedef enum {
  ST_HTTP = 0, /* parsing HTTP requests */
  ST_WS,       /* WebSocket frames */
  ST_LINGER,   /* answer written or being written; the stream drains and closes */
  ST_CLOSED,   /* the stream is closed or closing */
} conn_state;

struct tern_conn {
  tern_stream *st;        /* the byte stream; NULL once it has closed */
  tern_net *net;          /* owner */
  uint64_t id;            /* for logs */
  void *data;             /* the core layer's session */
  tern_http_parser *http; /* HTTP parser; NULL once upgraded */
  tern_http_req *req;     /* the request a handler is answering, or NULL */
  tern_http_stream *stream; /* a response body being streamed, or NULL */
  tern_ws_reader ws;      /* frame reader in ST_WS */
  tern_conn *prev, *next; /* every connection, for the timer sweep */
  int64_t last_rx;        /* ms: last frame/pong (WS) or request bytes (HTTP) */
  int64_t opened;         /* ms: accept or upgrade time */
  int64_t last_ping;      /* ms: last ping we sent */
  uint32_t refs;          /* references held by the core layer */
  uint8_t state;          /* conn_state */
  bool authed;            /* WS: core accepted the auth frame */
  bool overflow;          /* over ws.max_outbound: writes dropped, closed in the flush pass */
  char peer[56];          /* "ip:port" or "[ip6]:port" */
  tern_ip ip;             /* the peer's address */
  bool ip_counted;        /* counted in its ip_ent's open connections */
  bool client_counted;    /* the core counted it against client (through a trusted proxy) */
  tern_ip client;
};

/* What the per-address limits remember of one client address: its open connections and its
 * bucket of new ones. Kept while connections are open, and after, until the bucket is full
 * again (else closing and reconnecting would reset the rate). */
typedef struct ip_ent {
  uint32_t open;
  tern_rate_bucket b;
} ip_ent;

/* What the listeners of one process share (server.h): the per-address table, the process's
 * connection count and the limit counters. One mutex: it is taken once per accept and once
 * per close, never across a callback. */
struct tern_net_shared {
  pthread_mutex_t mu;       /* guards ips, ips_it and limited */
  tern_map ips;             /* tern_ip bytes -> ip_ent */
  tern_map_iter ips_it;     /* the sweeps' place in ips */
  uint64_t limited[TERN_NET_LIMIT__COUNT]; /* connections closed by each limit */
  atomic_int_fast64_t nconns; /* open TCP connections, every listener */
  bool bound;               /* the first listener is bound (the loops start after it) */
};

struct tern_net {
  uv_loop_t *loop;          /* the loop everything runs on */
  tern_stream_loop *sl;     /* the streams' shared read buffer and flush pass */
  uv_tcp_t listener;        /* accepting socket */
  uv_timer_t sweep;         /* timeouts and pings */
  tern_net_options opts;    /* copy of the options */
  tern_net_handlers h;      /* the core layer's callbacks */
  tern_conn *conns;         /* list of every connection */
  size_t nconns, nws;       /* counts */
  uint64_t next_id;         /* connection ids */
  char addr[64];            /* bound address */
  tern_net_shared *sh;      /* the per-address limits, shared with the process's other listeners */
  bool own_sh;              /* made by tern_net_start (no shared one was given) */
  bool listening;
};

static void conn_close(tern_conn *c);
static void conn_linger(tern_conn *c, int64_t ms);
static void stream_gone(tern_conn *c);
static const char *status_text(int status);
static void close_overflowed(tern_conn *c);

/* ------------------------------------------------------------------------------------------ */
/* lifetime */

static void maybe_free(tern_conn *c) {
  if (c->st || c->refs) return;
  tern_ws_reader_free(&c->ws);
  tern_free(c);
}

void tern_conn_ref(tern_conn *c) { c->refs++; }

void tern_conn_unref(tern_conn *c) {
  c->refs--;
  maybe_free(c);
}

void tern_conn_set_counted_client(tern_conn *c, const tern_ip *ip) {
  c->client = *ip;
  c->client_counted = true;
}

bool tern_conn_counted_client(const tern_conn *c, tern_ip *out) {
  if (!c->client_counted) return false;
  *out = c->client;
  return true;
}

bool tern_conn_is_open(const tern_conn *c) { return c->state == ST_HTTP || c->state == ST_WS; }
void *tern_conn_data(const tern_conn *c) { return c->data; }
void tern_conn_set_data(tern_conn *c, void *data) { c->data = data; }
const char *tern_conn_peer(const tern_conn *c) { return c->peer; }
uint64_t tern_conn_id(const tern_conn *c) { return c->id; }
void tern_conn_set_authed(tern_conn *c) {
  c->authed = true;
  c->ws.max_message = (uint64_t)c->net->opts.ws_max_message;
}

void tern_conn_resume_read(tern_conn *c) {
  if (c->state != ST_HTTP) return;
  c->last_rx = tern_now_ms();
  tern_stream_resume(c->st);
}
size_t tern_conn_outbound(const tern_conn *c) { return c->st ? tern_stream_outbound(c->st) : 0; }
int64_t tern_conn_last_rx(const tern_conn *c) { return c->last_rx; }

/* Drops the HTTP state; a request still held by a handler is freed by tern_http_respond. */
static void free_http(tern_conn *c) {
  tern_http_parser_free(c->http);
  c->http = NULL;
  if (c->req) c->req->conn = NULL;
  c->req = NULL;
}

static void notify_gone(tern_conn *c) {
  if (c->state != ST_WS) return;
  c->net->nws--;
  if (c->net->h.on_ws_gone) c->net->h.on_ws_gone(c, c->net->h.arg);
}

static void uncount_ip(tern_conn *c) {
  if (!c->ip_counted) return;
  c->ip_counted = false;
  tern_net_shared *sh = c->net->sh;
  pthread_mutex_lock(&sh->mu);
  ip_ent *e = tern_map_get(&sh->ips, (const char *)c->ip.b, sizeof c->ip.b);
  if (e && e->open) e->open--;
  pthread_mutex_unlock(&sh->mu);
}

static void unlink_conn(tern_conn *c) {
  tern_net *n = c->net;
  uncount_ip(c);
  if (c->prev) c->prev->next = c->next;
  else n->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  n->nconns--;
  atomic_fetch_sub(&n->sh->nconns, 1);
}

/* The connection is over: no more reads or writes. */
static void conn_finish(tern_conn *c) {
  stream_gone(c);
  notify_gone(c);
  c->state = ST_CLOSED;
  unlink_conn(c);
  free_http(c);
}

/* Closes at once. The stream stays allocated until its close callback, so a write in flight
 * completes safely; the connection is freed after that (on_close), once nobody holds it. */
static void conn_close(tern_conn *c) {
  if (c->state == ST_CLOSED) return;
  conn_finish(c);
  tern_stream_close(c->st);
}

/* Stop taking input; once queued output is written, the stream shuts the write side down and
 * drains what the peer still sends for up to ms, so the peer reads our answer instead of a
 * reset. The connection stays listed (and counted) until the stream has closed. */
static void conn_linger(tern_conn *c, int64_t ms) {
  if (c->state == ST_CLOSED || c->state == ST_LINGER) return;
  stream_gone(c);
  notify_gone(c);
  c->state = ST_LINGER;
  tern_stream_linger(c->st, ms);
}

/* ------------------------------------------------------------------------------------------ */
/* writing */

/* The connection's turn in the flush pass, after its output went to the socket: finishes an
 * overflow, asks a streamed body's producer for more, or finishes the body once everything is
 * written. Deferred work lands here so that it never runs inside a caller's callback. */
static void stream_pump(tern_conn *c) {
  tern_http_stream *s = c->stream;
  if (!s || c->state != ST_HTTP) return;
  if (s->aborted) {
    conn_close(c); /* reports GONE and frees the stream */
    return;
  }
  if (s->ended || s->head_only) {
    if (tern_stream_outbound(c->st)) return; /* DONE once the kernel has it all */
    c->stream = NULL;
    tern_http_req *req = s->req;
    s->cb(s, TERN_STREAM_DONE, s->arg);
    tern_free(s);
    /* as tern_http_respond does once an answer is complete */
    c->req = NULL;
    if (!req->keep_alive) {
      conn_linger(c, LINGER_MS);
    } else {
      c->last_rx = tern_now_ms();
      tern_http_parser_resume(c->http);
      tern_stream_resume(c->st);
    }
    tern_http_req_free(req);
    return;
  }
  if (!s->asked && tern_stream_outbound(c->st) < STREAM_LOW_WATER) {
    s->asked = true;
    s->cb(s, TERN_STREAM_WANT, s->arg);
  }
}

static void conn_on_flush(tern_stream *st, void *owner) {
  tern_conn *c = owner;
  if (c->overflow) close_overflowed(c);
  stream_pump(c);
}

/* The connection is going away while a body streams: tell the producer, free the stream. */
static void stream_gone(tern_conn *c) {
  tern_http_stream *s = c->stream;
  if (!s) return;
  c->stream = NULL;
  if (c->req == s->req) c->req = NULL;
  s->conn = NULL;
  /* A client that has read the whole body may close before the flush pass reports DONE (its
   * EOF and our write completion arrive in the same loop turn): the body was complete, so
   * that is DONE, not GONE. A failed write marks the stream aborted first. */
  bool complete = (s->ended || s->head_only) && !s->aborted && tern_stream_outbound(c->st) == 0;
  s->cb(s, complete ? TERN_STREAM_DONE : TERN_STREAM_GONE, s->arg);
  tern_http_req_free(s->req);
  tern_free(s);
}

tern_http_stream *tern_http_stream_start(tern_http_req *req, int status, const char *headers, const char *content_type,
                                         int64_t length, tern_http_stream_cb cb, void *arg) {
  tern_conn *c = req->conn;
  tern_http_stream *s = TERN_NEW(tern_http_stream);
  s->req = req;
  s->cb = cb;
  s->arg = arg;
  s->head_only = strcmp(req->method, "HEAD") == 0;
  if (!c || c->state != ST_HTTP || c->req != req || c->stream) {
    /* the connection went away while the handler worked: nothing to stream to */
    if (c && c->req == req) c->req = NULL;
    tern_http_req_free(req);
    tern_free(s);
    return NULL;
  }
  s->conn = c;
  tern_buf *o = tern_stream_out(c->st);
  tern_buf_printf(o, "HTTP/1.1 %d %s\r\n", status, status_text(status));
  if (content_type) tern_buf_printf(o, "Content-Type: %s\r\n", content_type);
  tern_buf_printf(o, "Content-Length: %lld\r\n", (long long)length);
  if (headers) tern_buf_puts(o, headers);
  if (!req->keep_alive) tern_buf_puts(o, "Connection: close\r\n");
  tern_buf_puts(o, "\r\n");
  c->stream = s;
  return s;
}

void tern_http_stream_write(tern_http_stream *s, const void *p, size_t n) {
  if (!s || !s->conn || s->ended || s->head_only) return;
  tern_stream_write(s->conn->st, p, n);
  s->asked = false;
}

void tern_http_stream_end(tern_http_stream *s) {
  if (!s || !s->conn) return;
  s->ended = true;
  tern_stream_kick(s->conn->st);
}

void tern_http_stream_abort(tern_http_stream *s) {
  if (!s || !s->conn) return;
  s->aborted = true;
  tern_stream_kick(s->conn->st);
}

/* Checks ws.max_outbound before more bytes are queued. Returns false when the connection is
 * over it: it is then marked and closed in the flush pass (never inside the caller's
 * callback, which may be iterating over sessions), and every later write is dropped. */
static bool out_room(tern_conn *c, size_t more) {
  if (c->state != ST_WS || c->overflow) return !c->overflow;
  size_t queued = tern_stream_outbound(c->st);
  if (queued + more <= (size_t)c->net->opts.ws_max_outbound) return true;
  TERN_WARN("closing slow client", "conn=%llu peer=%s queued=%zu", (unsigned long long)c->id, c->peer, queued);
  c->overflow = true;
  tern_stream_drop_queued(c->st);
  tern_stream_kick(c->st);
  return false;
}

/* The client does not read. What is already handed to the socket ends on a frame boundary,
 * so the close frame goes right behind it, and the connection lingers: a client that reads
 * again within the linger time gets everything written so far and then the 1008; one that
 * never reads is dropped when the linger time is over. Its inbox keeps everything. */
static void close_overflowed(tern_conn *c) {
  c->overflow = false;
  tern_ws_append_close(tern_stream_out(c->st), TERN_WS_CLOSE_POLICY, "outbound backlog overflow", NULL);
  conn_linger(c, OVERFLOW_LINGER_MS);
}

void tern_conn_ws_text_parts(tern_conn *c, const tern_part *parts, size_t nparts) {
  if (c->state != ST_WS) return;
  size_t len = 0;
  for (size_t i = 0; i < nparts; i++) len += parts[i].n;
  if (!out_room(c, len + 10)) return;
  uint8_t hdr[14];
  size_t hl = tern_ws_frame_header(hdr, TERN_WS_OP_TEXT, true, len, NULL);
  tern_buf *o = tern_stream_out(c->st);
  tern_buf_reserve(o, hl + len);
  tern_buf_append(o, hdr, hl);
  for (size_t i = 0; i < nparts; i++) tern_buf_append(o, parts[i].p, parts[i].n);
}

void tern_conn_ws_text(tern_conn *c, const void *data, size_t len) {
  tern_part p = {data, len};
  tern_conn_ws_text_parts(c, &p, 1);
}

static void ws_control(tern_conn *c, uint8_t op, const void *data, size_t len) {
  if (!out_room(c, len + 2)) return;
  tern_ws_append_frame(tern_stream_out(c->st), op, true, data, len, NULL);
}

void tern_conn_ws_close(tern_conn *c, uint16_t code, const char *reason) {
  if (c->state != ST_WS || c->overflow) return;
  TERN_DEBUG("ws close", "conn=%llu code=%u reason=%s", (unsigned long long)c->id, code, tern_log_quote(reason));
  tern_ws_append_close(tern_stream_out(c->st), code, reason, NULL);
  conn_linger(c, LINGER_MS);
}

static void refuse_with(tern_conn *c, int status, const char *headers, const char *code, const char *message);
static void refuse(tern_conn *c, int status, const char *message) { refuse_with(c, status, NULL, NULL, message); }

void tern_conn_http_refuse(tern_conn *c, int status, const char *code, const char *message) {
  tern_conn_http_refuse_headers(c, status, NULL, code, message);
}

void tern_conn_http_refuse_headers(tern_conn *c, int status, const char *headers, const char *code,
                                   const char *message) {
  if (c->state == ST_HTTP && !c->req) refuse_with(c, status, headers, code, message);
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP responses */

static const char *status_text(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

static void write_response(tern_conn *c, int status, const char *headers, const char *ctype, const void *body,
                           size_t len, bool keep_alive, bool head_only) {
  tern_buf *o = tern_stream_out(c->st);
  tern_buf_printf(o, "HTTP/1.1 %d %s\r\n", status, status_text(status));
  if (ctype) tern_buf_printf(o, "Content-Type: %s\r\n", ctype);
  if (status != 204 && status != 304) tern_buf_printf(o, "Content-Length: %zu\r\n", len);
  if (headers) tern_buf_puts(o, headers);
  if (!keep_alive) tern_buf_puts(o, "Connection: close\r\n");
  tern_buf_puts(o, "\r\n");
  if (status != 204 && status != 304 && !head_only) tern_buf_append(o, body, len);
}

/* The body of an error answer, as the handlers render it (their protocol's error object), or
 * the plain sentence when they render none. */
static const char *error_body(const tern_net *n, tern_buf *b, int status, const char *code, const char *message) {
  if (n->h.error_body) return n->h.error_body(b, status, code, message, n->h.arg);
  tern_buf_puts(b, message);
  tern_buf_putc(b, '\n');
  return "text/plain; charset=utf-8";
}

/* An answer decided by the net layer itself (malformed request, too large, timeout) or by a
 * handler before the request completed (refuse fields, tern_conn_http_refuse): the connection
 * is closed after it, with a lingering close. code is NULL when the net layer decided. */
static void refuse_with(tern_conn *c, int status, const char *headers, const char *code, const char *message) {
  if (c->state != ST_HTTP) return;
  tern_buf b = {0};
  const char *ctype = error_body(c->net, &b, status, code, message);
  write_response(c, status, headers, ctype, b.data, b.len, false, false);
  tern_buf_free(&b);
  conn_linger(c, LINGER_MS);
}

void tern_http_respond(tern_http_req *req, int status, const char *headers, const char *content_type,
                       const void *body, size_t len) {
  tern_conn *c = req->conn;
  if (c && c->req == req) {
    c->req = NULL;
    if (c->state == ST_HTTP) {
      bool ka = req->keep_alive;
      write_response(c, status, headers, content_type, body, len, ka, strcmp(req->method, "HEAD") == 0);
      if (!ka) {
        conn_linger(c, LINGER_MS);
      } else {
        c->last_rx = tern_now_ms();
        tern_http_parser_resume(c->http);
        /* pipelined requests are parsed in the flush pass, not re-entrantly */
        tern_stream_resume(c->st);
      }
    }
  }
  tern_http_req_free(req);
}

void tern_http_error(tern_http_req *req, int status, const char *code, const char *message) {
  tern_conn *c = req->conn;
  if (!c || c->req != req || c->state != ST_HTTP) {
    tern_http_respond(req, status, NULL, NULL, NULL, 0); /* gone: only frees the request */
    return;
  }
  tern_buf b = {0};
  const char *ctype = error_body(c->net, &b, status, code, message);
  tern_http_respond(req, status, NULL, ctype, b.data, b.len);
  tern_buf_free(&b);
}

void tern_http_json(tern_http_req *req, int status, const tern_buf *json) {
  tern_http_respond(req, status, NULL, "application/json", json->data, json->len);
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP requests */

/* A complete upgrade request: the handlers decide whether it may upgrade, then the handshake is
 * checked. Returns true when the connection speaks WebSocket now. */
static bool upgrade_ws(tern_conn *c, tern_http_req *r) {
  tern_net *n = c->net;
  if (!n->h.ws_accept || !n->h.ws_accept(r, n->h.arg)) {
    if (r->refuse_status)
      refuse_with(c, r->refuse_status, r->refuse_headers[0] ? r->refuse_headers : NULL, r->refuse_code,
                  r->refuse_message ? r->refuse_message : "the upgrade was refused");
    else refuse(c, 404, "no WebSocket endpoint here");
    return false;
  }
  const char *key = tern_http_parser_ws_key(c->http);
  if (!tern_http_parser_ws_ok(c->http)) {
    refuse(c, 400, "a WebSocket upgrade needs HTTP/1.1, Upgrade: websocket, a Sec-WebSocket-Key of 16 bytes "
                   "in base64 and version 13");
    return false;
  }
  char accept[29];
  tern_ws_accept_key(key, strlen(key), accept);
  tern_buf_printf(tern_stream_out(c->st),
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\n\r\n",
                  accept);
  free_http(c);
  c->state = ST_WS;
  n->nws++;
  c->opened = c->last_rx = c->last_ping = tern_now_ms();
  /* Until the connection is authenticated, a stranger may make us hold at most
   * ws.max_auth_frame of a message (PROTOCOL.md 14); tern_conn_set_authed lifts it. */
  int64_t first = n->opts.ws_max_auth_frame > 0 && n->opts.ws_max_auth_frame < n->opts.ws_max_message
                      ? n->opts.ws_max_auth_frame
                      : n->opts.ws_max_message;
  tern_ws_reader_init(&c->ws, true, (uint64_t)first);
  if (n->h.on_ws_open) n->h.on_ws_open(c, n->h.arg);
  return true;
}

static size_t ws_process(tern_conn *c, uint8_t *data, size_t len);

/* Parses data as HTTP until a request is ready (dispatched; parsing waits for its answer),
 * more bytes are needed, or the connection upgrades or fails. Returns the bytes consumed; the
 * stream keeps the rest (pipelined requests) for a resume. */
static size_t http_process(tern_conn *c, char *data, size_t len) {
  if (!c->http || c->req || !len) return 0;
  size_t used;
  int status;
  tern_http_status st = tern_http_parser_execute(c->http, data, len, &used, &status);
  switch (st) {
    case TERN_HTTP_BAD: {
      tern_http_req *cur = tern_http_parser_current(c->http);
      if (cur && cur->refuse_status && cur->refuse_status == status) {
        refuse_with(c, status, cur->refuse_headers[0] ? cur->refuse_headers : NULL, cur->refuse_code,
                    cur->refuse_message ? cur->refuse_message : "the request was refused");
        return len;
      }
      if (status == 413) refuse(c, 413, "the request body is larger than this endpoint accepts");
      else if (status == 431) refuse(c, 431, "the request head is too large");
      else if (status == 415) refuse(c, 415, "the body is not of an accepted type");
      else if (status == 429) refuse(c, 429, "too many requests; try again later");
      else if (status == 500) refuse(c, 500, "the request could not be processed");
      else refuse(c, 400, "malformed HTTP request");
      return len;
    }
    case TERN_HTTP_UPGRADE: {
      tern_http_req *r = tern_http_parser_take(c->http);
      bool ok = upgrade_ws(c, r);
      tern_http_req_free(r);
      /* frames that came in the same packet as the handshake */
      if (ok && c->state == ST_WS) return used + ws_process(c, (uint8_t *)data + used, len - used);
      return len;
    }
    case TERN_HTTP_REQUEST:
    case TERN_HTTP_MORE:
      break;
  }
  if (tern_http_parser_take_continue(c->http)) tern_stream_write(c->st, "HTTP/1.1 100 Continue\r\n\r\n", 25);
  /* a body sink is behind (its disk write): read no more until it calls resume */
  if (tern_http_parser_take_pause(c->http)) tern_stream_pause(c->st);
  if (st == TERN_HTTP_REQUEST) {
    c->req = tern_http_parser_take(c->http);
    c->net->h.on_request(c->req, c->net->h.arg);
  }
  return used;
}

/* ------------------------------------------------------------------------------------------ */
/* WebSocket frames */

/* Reads frames from data in place; returns the bytes consumed (the stream keeps the tail of
 * an incomplete frame). */
static size_t ws_process(tern_conn *c, uint8_t *data, size_t len) {
  size_t off = 0;
  while (c->state == ST_WS && off < len) {
    tern_ws_event ev;
    size_t used = tern_ws_read(&c->ws, data + off, len - off, &ev);
    off += used;
    if (ev.type == TERN_WS_EV_NONE) break;
    c->last_rx = tern_now_ms();
    switch (ev.type) {
      case TERN_WS_EV_MESSAGE:
        if (ev.opcode != TERN_WS_OP_TEXT) {
          tern_conn_ws_close(c, TERN_WS_CLOSE_UNSUPPORTED, "binary frames are not supported");
        } else if (c->net->h.on_ws_text) {
          c->net->h.on_ws_text(c, (const char *)ev.data, ev.len, c->net->h.arg);
        }
        break;
      case TERN_WS_EV_PING:
        ws_control(c, TERN_WS_OP_PONG, ev.data, ev.len);
        break;
      case TERN_WS_EV_PONG:
        break;
      case TERN_WS_EV_CLOSE: {
        uint16_t code = ev.close_code == TERN_WS_CLOSE_NO_STATUS ? TERN_WS_CLOSE_NORMAL : ev.close_code;
        tern_conn_ws_close(c, code, "");
        break;
      }
      case TERN_WS_EV_ERROR:
        TERN_DEBUG("ws protocol error", "conn=%llu code=%u reason=%s", (unsigned long long)c->id, ev.close_code,
                   tern_log_quote(ev.reason));
        tern_conn_ws_close(c, ev.close_code, ev.reason ? ev.reason : "protocol error");
        break;
      default:
        break;
    }
  }
  return off;
}

/* ------------------------------------------------------------------------------------------ */
/* the stream's callbacks */

static size_t conn_on_data(tern_stream *st, char *data, size_t len, void *owner) {
  tern_conn *c = owner;
  if (c->state == ST_WS) return ws_process(c, (uint8_t *)data, len);
  if (c->state != ST_HTTP) return len;
  c->last_rx = tern_now_ms();
  if (c->req) {
    /* a handler is working on the previous request: keep the bytes, but stop reading if the
     * client keeps pushing, so one client cannot make us buffer without bound */
    if (len > (size_t)c->net->opts.max_header + (size_t)c->net->opts.max_body) tern_stream_pause(st);
    return 0;
  }
  return http_process(c, data, len);
}

static void conn_on_end(tern_stream *st, int err, bool write, void *owner) {
  tern_conn *c = owner;
  if (write) {
    /* what was being written never arrived, so a streamed body is GONE */
    TERN_DEBUG("write failed", "conn=%llu err=%s", (unsigned long long)c->id, uv_strerror(err));
    if (c->stream) c->stream->aborted = true;
  } else if (err != UV_EOF) {
    TERN_DEBUG("read error", "conn=%llu err=%s", (unsigned long long)c->id, uv_strerror(err));
  }
  conn_close(c);
}

static void conn_on_close(tern_stream *st, void *owner) {
  tern_conn *c = owner;
  if (c->state != ST_CLOSED) conn_finish(c); /* a lingering close ended */
  c->st = NULL;
  maybe_free(c);
}

static const tern_stream_cbs conn_cbs = {
    .on_data = conn_on_data,
    .on_end = conn_on_end,
    .on_flush = conn_on_flush,
    .on_close = conn_on_close,
};

/* ------------------------------------------------------------------------------------------ */
/* accepting and timers */

/* The per-address limits at accept. Connections from a trusted proxy carry many clients:
 * they are not counted here (the core counts what they carry by X-Forwarded-For). */
static bool admit_ip(tern_net *n, tern_conn *c) {
  const tern_net_options *o = &n->opts;
  if (o->trusted_proxies && tern_cidr_match(o->trusted_proxies, &c->ip)) return true;
  tern_net_shared *sh = n->sh;
  pthread_mutex_lock(&sh->mu);
  ip_ent *e = tern_map_get(&sh->ips, (const char *)c->ip.b, sizeof c->ip.b);
  if (!e) {
    e = TERN_NEW(ip_ent);
    tern_map_put(&sh->ips, (const char *)c->ip.b, sizeof c->ip.b, e);
  }
  bool ok = false;
  uint32_t open = e->open;
  if (o->conn_rate_burst > 0 && !tern_bucket_take(&e->b, o->conn_rate, o->conn_rate_burst, 1)) {
    sh->limited[TERN_NET_LIMIT_CONN_RATE]++;
  } else if (o->conn_per_ip > 0 && e->open >= (uint64_t)o->conn_per_ip) {
    sh->limited[TERN_NET_LIMIT_CONN_PER_IP]++;
  } else {
    e->open++;
    c->ip_counted = ok = true;
  }
  pthread_mutex_unlock(&sh->mu);
  if (!ok)
    TERN_DEBUG("connection refused: an address is over its limit", "peer=%s open=%u", c->peer, open);
  return ok;
}

/* Forgets addresses with nothing open whose bucket has refilled, a few per tick. */
static void sweep_ips(tern_net *n, int64_t now) {
  const tern_net_options *o = &n->opts;
  tern_net_shared *sh = n->sh;
  const char *k;
  size_t kl;
  void *v;
  pthread_mutex_lock(&sh->mu);
  for (int i = 0; i < 256 && tern_map_next(&sh->ips, &sh->ips_it, &k, &kl, &v); i++) {
    ip_ent *e = v;
    double refill = o->conn_rate > 0 ? (double)(now - e->b.at) * o->conn_rate / 1000.0 : 1e300;
    if (e->open == 0 && e->b.tokens + refill >= o->conn_rate_burst) {
      tern_map_del(&sh->ips, k, kl);
      tern_free(e);
    }
  }
  pthread_mutex_unlock(&sh->mu);
}

static bool free_ip(const char *k, size_t kl, void *v, void *arg) {
  tern_free(v);
  return true;
}

void tern_net_limited(const tern_net *n, uint64_t out[TERN_NET_LIMIT__COUNT]) {
  pthread_mutex_lock(&n->sh->mu);
  memcpy(out, n->sh->limited, sizeof n->sh->limited);
  pthread_mutex_unlock(&n->sh->mu);
}

tern_net_shared *tern_net_shared_new(void) {
  tern_net_shared *sh = TERN_NEW(tern_net_shared);
  pthread_mutex_init(&sh->mu, NULL);
  return sh;
}

void tern_net_shared_free(tern_net_shared *sh) {
  if (!sh) return;
  tern_map_each(&sh->ips, free_ip, NULL);
  tern_map_free(&sh->ips);
  pthread_mutex_destroy(&sh->mu);
  tern_free(sh);
}

static void on_connection(uv_stream_t *server, int status) {
  tern_net *n = server->data;
  if (status < 0) {
    TERN_WARN("accept failed", "err=%s", uv_strerror(status));
    return;
  }
  tern_conn *c = TERN_NEW(tern_conn);
  c->net = n;
  c->id = ++n->next_id;
  char err[128];
  tern_tls_config tc = {.tls = n->opts.tls};
  const tern_stream_transport *tp = tc.tls ? &tern_stream_transport_tls : &tern_stream_transport_tcp;
  if (tern_stream_open(n->sl, tp, tc.tls ? &tc : NULL, &conn_cbs, c, &c->st, err, sizeof err) < 0) {
    TERN_WARN("accept failed", "err=%s", tern_log_quote(err));
    tern_free(c);
    return;
  }
  uv_tcp_t *tcp = tern_stream_handle(c->st);
  if (uv_accept(server, (uv_stream_t *)tcp) < 0) {
    c->state = ST_CLOSED; /* never listed: on_close only frees it */
    tern_stream_close(c->st);
    return;
  }
  c->next = n->conns;
  if (n->conns) n->conns->prev = c;
  n->conns = c;
  n->nconns++;
  if (atomic_fetch_add(&n->sh->nconns, 1) + 1 > n->opts.max_connections) {
    TERN_WARN("connection limit reached", "limit=%lld", (long long)n->opts.max_connections);
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(tcp, 1);
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  bool have_ip = false;
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &sl) == 0) {
    char ip[46] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
      uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(c->peer, sizeof c->peer, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
    have_ip = tern_ip_parse(ip, strlen(ip), &c->ip);
  }
  if (have_ip && !admit_ip(n, c)) {
    conn_close(c); /* TCP: closed at once (PROTOCOL.md 14) */
    return;
  }
  c->http = tern_http_parser_new(n->opts.max_header, n->opts.max_body, n->h.body_limit, n->h.arg, c);
  c->opened = c->last_rx = tern_now_ms();
  c->state = ST_HTTP;
  if (tern_stream_start(c->st, err, sizeof err) < 0) {
    TERN_DEBUG("cannot read", "conn=%llu err=%s", (unsigned long long)c->id, tern_log_quote(err));
    conn_close(c);
  }
}

static void on_sweep(uv_timer_t *t) {
  tern_net *n = t->data;
  int64_t now = tern_now_ms();
  sweep_ips(n, now);
  const tern_net_options *o = &n->opts;
  tern_conn *c = n->conns;
  while (c) {
    tern_conn *next = c->next; /* c may close below */
    switch (c->state) {
      case ST_HTTP:
        if (c->http && !c->req) {
          /* A request begun must be complete (head and body) within http.request_timeout
           * of its first byte, however slowly it trickles in: 408 (PROTOCOL.md 1). A body
           * streaming to a sink is timed by the sink instead (media.upload_timeout, which
           * answers 408 itself and does not count while the sink has paused reading). An
           * idle keep-alive connection is closed after as long without a byte. */
          tern_http_req *cur = tern_http_parser_current(c->http);
          if (cur && cur->sink) break;
          if (cur && now - cur->started_ms > o->request_timeout_ms) refuse(c, 408, "request timed out");
          else if (!cur && now - c->last_rx > o->request_timeout_ms) {
            if (tern_stream_buffered(c->st)) refuse(c, 408, "request timed out");
            else conn_close(c);
          }
        }
        break;
      case ST_WS:
        if (!c->authed && now - c->opened > o->ws_auth_timeout_ms) {
          tern_conn_ws_close(c, o->ws_auth_close_code ? o->ws_auth_close_code : TERN_WS_CLOSE_POLICY,
                             "not authenticated");
        } else if (now - c->last_rx > o->ws_idle_timeout_ms) {
          tern_conn_ws_close(c, o->ws_idle_close_code ? o->ws_idle_close_code : TERN_WS_CLOSE_POLICY, "idle timeout");
        } else if (now - c->last_ping >= o->ws_ping_interval_ms) {
          c->last_ping = now;
          ws_control(c, TERN_WS_OP_PING, NULL, 0);
        }
        break;
      default:
        break; /* lingering connections are timed by their stream */
    }
    c = next;
  }
}

int tern_net_start(uv_loop_t *loop, const tern_net_options *opts, const tern_net_handlers *h, tern_net **out,
                   char *err, size_t errlen) {
  char host[64];
  const char *colon = strrchr(opts->listen, ':');
  if (!colon || colon == opts->listen || (size_t)(colon - opts->listen) >= sizeof host) {
    snprintf(err, errlen, "--listen must be HOST:PORT, not \"%s\"", opts->listen);
    return -EINVAL;
  }
  memcpy(host, opts->listen, (size_t)(colon - opts->listen));
  host[colon - opts->listen] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535) {
    snprintf(err, errlen, "--listen has a bad port: \"%s\"", opts->listen);
    return -EINVAL;
  }
  /* strip [] around IPv6 literals */
  char *hp = host;
  if (hp[0] == '[') {
    hp++;
    char *rb = strchr(hp, ']');
    if (rb) *rb = '\0';
  }
  struct sockaddr_storage ss;
  if (uv_ip4_addr(hp, (int)port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(hp, (int)port, (struct sockaddr_in6 *)&ss) != 0) {
    if (strcmp(hp, "localhost") == 0) {
      uv_ip4_addr("127.0.0.1", (int)port, (struct sockaddr_in *)&ss);
    } else {
      snprintf(err, errlen, "--listen needs an IP address, not \"%s\"", hp);
      return -EINVAL;
    }
  }
  tern_net *n = TERN_NEW(tern_net);
  n->loop = loop;
  n->opts = *opts;
  n->h = *h;
  n->sh = opts->shared;
  if (!n->sh) {
    n->sh = tern_net_shared_new();
    n->own_sh = true;
  }
  /* With reuseport, the socket exists before the bind (uv_tcp_init_ex) so that SO_REUSEPORT
   * can be set on it: libuv 1.44 has no flag for it. The kernel then spreads new connections
   * over every listener bound to the port. */
  int rc = 0;
  if (opts->reuseport && !n->sh->bound) {
    /* SO_REUSEPORT would let the first listener join another process's listeners on a port
     * already taken (the same user's): a plain bind first says whether the port is free, and
     * picks it for port 0. It never listens, so it leaves nothing behind. */
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t sl = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (fd < 0) rc = -errno;
    else if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) rc = -errno;
    if (fd >= 0) close(fd);
    if (rc < 0) {
      snprintf(err, errlen, "cannot listen on %s: %s", opts->listen, uv_strerror(rc));
      if (n->own_sh) tern_net_shared_free(n->sh);
      tern_free(n);
      return rc;
    }
  }
  if (rc == 0) rc = uv_tcp_init_ex(loop, &n->listener, ss.ss_family);
  n->listener.data = n;
  if (rc == 0 && opts->reuseport) {
    uv_os_fd_t fd;
    int one = 1;
    rc = uv_fileno((uv_handle_t *)&n->listener, &fd);
    if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) rc = -errno;
  }
  if (rc == 0) rc = uv_tcp_bind(&n->listener, (struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&n->listener, 4096, on_connection);
  if (rc < 0) {
    snprintf(err, errlen, "cannot listen on %s: %s", opts->listen, uv_strerror(rc));
    uv_close((uv_handle_t *)&n->listener, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    if (n->own_sh) tern_net_shared_free(n->sh);
    tern_free(n);
    return rc;
  }
  n->listening = true;
  n->sh->bound = true;
  struct sockaddr_storage bound;
  int bl = sizeof bound;
  uv_tcp_getsockname(&n->listener, (struct sockaddr *)&bound, &bl);
  char ip[46];
  if (bound.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&bound, ip, sizeof ip);
    snprintf(n->addr, sizeof n->addr, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&bound)->sin6_port));
  } else {
    uv_ip4_name((struct sockaddr_in *)&bound, ip, sizeof ip);
    snprintf(n->addr, sizeof n->addr, "%s:%d", ip, ntohs(((struct sockaddr_in *)&bound)->sin_port));
  }
  int64_t tick = opts->ws_ping_interval_ms;
  if (opts->ws_idle_timeout_ms < tick) tick = opts->ws_idle_timeout_ms;
  if (opts->ws_auth_timeout_ms < tick) tick = opts->ws_auth_timeout_ms;
  tick /= 4;
  if (tick < 10) tick = 10;
  if (tick > 1000) tick = 1000;
  uv_timer_init(loop, &n->sweep);
  n->sweep.data = n;
  uv_timer_start(&n->sweep, on_sweep, (uint64_t)tick, (uint64_t)tick);
  n->sl = tern_stream_loop_new(loop);
  *out = n;
  return 0;
}

const char *tern_net_addr(const tern_net *n) { return n->addr; }
/* Relaxed atomic loads: the counts have one writer, the net's loop, and /metrics on another
 * worker reads them (a recent value is all it needs). */
size_t tern_net_connections(const tern_net *n) { return __atomic_load_n(&n->nconns, __ATOMIC_RELAXED); }
size_t tern_net_ws_connections(const tern_net *n) { return __atomic_load_n(&n->nws, __ATOMIC_RELAXED); }
void tern_net_stream_stats(const tern_net *n, tern_stream_stats *out) { tern_stream_loop_stats(n->sl, out); }

void tern_net_stop_listening(tern_net *n) {
  if (!n->listening) return;
  n->listening = false;
  uv_close((uv_handle_t *)&n->listener, NULL);
}

void tern_net_close_all(tern_net *n, uint16_t code, const char *reason) {
  tern_conn *c = n->conns;
  while (c) {
    tern_conn *next = c->next;
    if (c->state == ST_WS) tern_conn_ws_close(c, code, reason);
    else if (c->state == ST_HTTP && !c->req) conn_close(c);
    c = next;
  }
}

bool tern_net_idle(const tern_net *n) { return n->conns == NULL; }

void tern_net_free(tern_net *n) {
  if (!n) return;
  tern_conn *c = n->conns;
  while (c) {
    tern_conn *next = c->next;
    conn_close(c);
    c = next;
  }
  tern_net_stop_listening(n);
  if (!uv_is_closing((uv_handle_t *)&n->sweep)) uv_close((uv_handle_t *)&n->sweep, NULL);
  tern_stream_loop_free(n->sl); /* goes once its handles and streams have closed, below */
  uv_run(n->loop, UV_RUN_NOWAIT);
  if (n->own_sh) tern_net_shared_free(n->sh);
  tern_free(n);
}
