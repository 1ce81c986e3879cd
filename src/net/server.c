#include "net/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "net/ws.h"

#define READ_BUF_SIZE (64 * 1024) /* one shared read buffer per loop */
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
  bool aborted;           /* the producer gave up */
  bool head_only;         /* HEAD: no body */
};

typedef enum {
  ST_HTTP = 0, /* parsing HTTP requests */
  ST_WS,       /* WebSocket frames */
  ST_LINGER,   /* answer written or being written; reading and discarding until EOF */
  ST_CLOSED,   /* uv_close called */
} conn_state;

struct tern_conn {
  uv_tcp_t tcp;           /* the socket; tcp.data points back here */
  tern_net *net;          /* owner */
  uint64_t id;            /* for logs */
  void *data;             /* the core layer's session */
  tern_http_parser *http; /* HTTP parser; NULL once upgraded */
  tern_http_req *req;     /* the request a handler is answering, or NULL */
  tern_http_stream *stream; /* a response body being streamed, or NULL */
  tern_ws_reader ws;      /* frame reader in ST_WS */
  tern_buf in;            /* unparsed tail of what was read */
  tern_buf out;           /* queued, not yet handed to uv_write */
  tern_buf inflight;      /* handed to uv_write, not yet completed */
  uv_write_t wreq;        /* the write in flight */
  tern_conn *prev, *next; /* every connection, for the timer sweep */
  tern_conn *dirty_next;  /* connections with output or a resume to handle this iteration */
  int64_t last_rx;        /* ms: last frame/pong (WS) or request bytes (HTTP) */
  int64_t opened;         /* ms: accept or upgrade time */
  int64_t last_ping;      /* ms: last ping we sent */
  int64_t linger_until;   /* ms: ST_LINGER deadline */
  uint32_t refs;          /* references held by the core layer */
  uint8_t state;          /* conn_state */
  bool writing;           /* a uv_write is in flight */
  bool dirty;             /* on the dirty list */
  bool resume;            /* HTTP parsing should continue from `in` */
  bool close_after_flush; /* enter linger once output is written */
  bool shut;              /* uv_shutdown issued */
  bool authed;            /* WS: core accepted the auth frame */
  bool reading;           /* uv_read_start active */
  bool overflow;          /* over ws.max_outbound: writes dropped, closed in the check phase */
  bool handle_closed;     /* uv_close callback ran */
  char peer[56];          /* "ip:port" (IPv6 + port fits) */
};

struct tern_net {
  uv_loop_t *loop;          /* the loop everything runs on */
  uv_tcp_t listener;        /* accepting socket */
  uv_timer_t sweep;         /* timeouts and pings */
  uv_check_t flush;         /* writes queued output once per loop iteration */
  uv_idle_t kick;           /* active while connections are dirty: the poll must not block */
  bool kick_on;             /* kick is started */
  tern_net_options opts;    /* copy of the options */
  tern_net_handlers h;      /* the core layer's callbacks */
  tern_conn *conns;         /* list of every connection */
  tern_conn *dirty;         /* list of connections to flush */
  size_t nconns, nws;       /* counts */
  uint64_t next_id;         /* connection ids */
  char addr[64];            /* bound address */
  char *rbuf;               /* the shared read buffer */
  bool rbuf_busy;           /* handed to a read that has not completed */
  bool listening;
};

static void conn_close(tern_conn *c);
static void conn_linger(tern_conn *c);
static void stream_gone(tern_conn *c);
static const char *status_text(int status);
static void http_process(tern_conn *c);
static void mark_dirty(tern_conn *c);
static void close_overflowed(tern_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ------------------------------------------------------------------------------------------ */
/* lifetime */

static void maybe_free(tern_conn *c) {
  if (!c->handle_closed || c->refs) return;
  tern_buf_free(&c->in);
  tern_buf_free(&c->out);
  tern_buf_free(&c->inflight);
  tern_ws_reader_free(&c->ws);
  tern_free(c);
}

void tern_conn_ref(tern_conn *c) { c->refs++; }

void tern_conn_unref(tern_conn *c) {
  c->refs--;
  maybe_free(c);
}

bool tern_conn_is_open(const tern_conn *c) { return c->state == ST_HTTP || c->state == ST_WS; }
void *tern_conn_data(const tern_conn *c) { return c->data; }
void tern_conn_set_data(tern_conn *c, void *data) { c->data = data; }
const char *tern_conn_peer(const tern_conn *c) { return c->peer; }
uint64_t tern_conn_id(const tern_conn *c) { return c->id; }
void tern_conn_set_authed(tern_conn *c) { c->authed = true; }

void tern_conn_resume_read(tern_conn *c) {
  if (c->state != ST_HTTP || c->reading) return;
  c->last_rx = tern_now_ms();
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
}
size_t tern_conn_outbound(const tern_conn *c) { return c->out.len + c->inflight.len; }
int64_t tern_conn_last_rx(const tern_conn *c) { return c->last_rx; }

/* Drops the HTTP state; a request still held by a handler is freed by tern_http_respond. */
static void free_http(tern_conn *c) {
  tern_http_parser_free(c->http);
  c->http = NULL;
  if (c->req) c->req->conn = NULL;
  c->req = NULL;
}

static void on_handle_closed(uv_handle_t *h) {
  tern_conn *c = h->data;
  c->handle_closed = true;
  maybe_free(c);
}

static void notify_gone(tern_conn *c) {
  if (c->state != ST_WS) return;
  c->net->nws--;
  if (c->net->h.on_ws_gone) c->net->h.on_ws_gone(c, c->net->h.arg);
}

static void unlink_conn(tern_conn *c) {
  tern_net *n = c->net;
  if (c->prev) c->prev->next = c->next;
  else n->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  n->nconns--;
}

/* Closes at once: no more reads or writes. */
static void conn_close(tern_conn *c) {
  if (c->state == ST_CLOSED) return;
  stream_gone(c);
  notify_gone(c);
  c->state = ST_CLOSED;
  unlink_conn(c);
  free_http(c);
  /* the handle stays valid until its close callback, so a write in flight completes safely */
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* Stop taking input; once queued output is written, shut the write side down and drain
 * what the peer still sends for a moment, so the peer reads our answer instead of a reset. */
static void conn_linger(tern_conn *c) {
  if (c->state == ST_CLOSED || c->state == ST_LINGER) return;
  stream_gone(c);
  notify_gone(c);
  c->state = ST_LINGER;
  c->linger_until = tern_now_ms() + LINGER_MS;
  c->close_after_flush = true;
  tern_buf_free(&c->in);
  if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
  mark_dirty(c);
}

/* ------------------------------------------------------------------------------------------ */
/* writing */

static void on_kick(uv_idle_t *h) { (void)h; /* its being active is all it is for */ }

static void mark_dirty(tern_conn *c) {
  if (c->dirty || c->state == ST_CLOSED) return;
  c->dirty = true;
  c->dirty_next = c->net->dirty;
  c->net->dirty = c;
  /* A connection marked outside the poll phase (a write completion runs in the pending
   * phase) would otherwise wait for the poll's timeout, up to a sweep tick, before the check
   * phase flushes it: a streamed body stalled a second per chunk. An active idle handle
   * makes that poll return at once. */
  if (!c->net->kick_on) {
    c->net->kick_on = true;
    uv_idle_start(&c->net->kick, on_kick);
  }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  tern_free(req); /* the linger deadline or EOF closes the handle */
}

static void start_write(tern_conn *c);

/* A write failed: what was being written never arrived, so a streamed body is GONE. */
static void write_failed(tern_conn *c, int status) {
  TERN_DEBUG("write failed", "conn=%llu err=%s", (unsigned long long)c->id, uv_strerror(status));
  if (c->stream) c->stream->aborted = true;
  conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
  tern_conn *c = req->data;
  c->writing = false;
  tern_buf_free(&c->inflight);
  if (c->state == ST_CLOSED) {
    tern_conn_unref(c);
    return;
  }
  if (status < 0) {
    write_failed(c, status);
  } else if (c->out.len) {
    start_write(c);
  } else if (c->close_after_flush) {
    mark_dirty(c);
  }
  if (c->stream) mark_dirty(c); /* room for more of a streamed body, or its end */
  tern_conn_unref(c);
}

static void start_write(tern_conn *c) {
  tern_buf tmp = c->inflight;
  c->inflight = c->out;
  c->out = tmp;
  c->out.len = 0;
  uv_buf_t b = uv_buf_init(c->inflight.data, (unsigned)c->inflight.len);
  c->wreq.data = c;
  tern_conn_ref(c); /* the write callback may run after the connection closed */
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (rc < 0) {
    tern_conn_unref(c);
    tern_buf_free(&c->inflight);
    conn_close(c);
    return;
  }
  c->writing = true;
}

/* Writes what the socket takes at once without a write request. A completed uv_write costs a
 * callback and, in libuv 1.44, an epoll_ctl (its drain re-arms the watcher even when nothing
 * changed); most flushes fit the socket buffer whole and need neither. Returns false when the
 * connection was closed. */
static bool write_now(tern_conn *c) {
  uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == UV_EAGAIN || n == UV_ENOSYS) return true;
  if (n < 0) {
    write_failed(c, n);
    return false;
  }
  if ((size_t)n == c->out.len) {
    tern_buf_free(&c->out); /* an idle connection holds no write buffer */
  } else {
    memmove(c->out.data, c->out.data + n, c->out.len - (size_t)n);
    c->out.len -= (size_t)n;
  }
  return true;
}

static void flush_conn(tern_conn *c) {
  if (c->state == ST_CLOSED) return;
  if (c->overflow) close_overflowed(c);
  if (!c->writing && c->out.len && !write_now(c)) return;
  if (!c->writing && c->out.len) start_write(c);
  if (c->close_after_flush && !c->writing && !c->out.len && !c->shut) {
    c->shut = true;
    uv_shutdown_t *sr = tern_malloc(sizeof *sr);
    if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
      tern_free(sr);
      conn_close(c);
    }
  }
}

/* Called on every dirty connection in the check phase: asks the producer for more, or
 * finishes the stream once everything is written. */
static void stream_pump(tern_conn *c) {
  tern_http_stream *s = c->stream;
  if (!s || c->state != ST_HTTP) return;
  if (s->aborted) {
    conn_close(c); /* reports GONE and frees the stream */
    return;
  }
  if (s->ended || s->head_only) {
    if (c->writing || c->out.len) return; /* DONE once the kernel has it all */
    c->stream = NULL;
    tern_http_req *req = s->req;
    s->cb(s, TERN_STREAM_DONE, s->arg);
    tern_free(s);
    /* as tern_http_respond does once an answer is complete */
    c->req = NULL;
    if (!req->keep_alive) {
      conn_linger(c);
    } else {
      c->last_rx = tern_now_ms();
      tern_http_parser_resume(c->http);
      c->resume = true;
      if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
      mark_dirty(c);
    }
    tern_http_req_free(req);
    return;
  }
  if (!s->asked && c->out.len + c->inflight.len < STREAM_LOW_WATER) {
    s->asked = true;
    s->cb(s, TERN_STREAM_WANT, s->arg);
  }
}

/* The connection is going away while a body streams: tell the producer, free the stream. */
static void stream_gone(tern_conn *c) {
  tern_http_stream *s = c->stream;
  if (!s) return;
  c->stream = NULL;
  if (c->req == s->req) c->req = NULL;
  s->conn = NULL;
  /* A client that has read the whole body may close before the check phase reports DONE
   * (its EOF and our write completion arrive in the same loop turn): the body was complete,
   * so that is DONE, not GONE. A failed write marks the stream aborted first. */
  bool complete = (s->ended || s->head_only) && !s->aborted && !c->writing && c->out.len == 0;
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
  tern_buf *o = &c->out;
  tern_buf_printf(o, "HTTP/1.1 %d %s\r\n", status, status_text(status));
  if (content_type) tern_buf_printf(o, "Content-Type: %s\r\n", content_type);
  tern_buf_printf(o, "Content-Length: %lld\r\n", (long long)length);
  if (headers) tern_buf_puts(o, headers);
  if (!req->keep_alive) tern_buf_puts(o, "Connection: close\r\n");
  tern_buf_puts(o, "\r\n");
  c->stream = s;
  mark_dirty(c);
  return s;
}

void tern_http_stream_write(tern_http_stream *s, const void *p, size_t n) {
  if (!s || !s->conn || s->ended || s->head_only) return;
  tern_buf_append(&s->conn->out, p, n);
  s->asked = false;
  mark_dirty(s->conn);
}

void tern_http_stream_end(tern_http_stream *s) {
  if (!s || !s->conn) return;
  s->ended = true;
  mark_dirty(s->conn);
}

void tern_http_stream_abort(tern_http_stream *s) {
  if (!s || !s->conn) return;
  s->aborted = true;
  mark_dirty(s->conn);
}

static void on_check(uv_check_t *h) {
  tern_net *n = h->data;
  /* resumes may queue more output and more dirty connections: loop until the list is empty */
  while (n->dirty) {
    tern_conn *list = n->dirty;
    n->dirty = NULL;
    while (list) {
      tern_conn *c = list;
      list = c->dirty_next;
      c->dirty = false;
      c->dirty_next = NULL;
      if (c->resume && c->state == ST_HTTP) {
        c->resume = false;
        http_process(c);
      }
      flush_conn(c);
      stream_pump(c);
    }
  }
  if (n->kick_on) {
    n->kick_on = false;
    uv_idle_stop(&n->kick);
  }
}

/* Checks ws.max_outbound before more bytes are queued. Returns false when the connection is
 * over it: it is then marked and closed in the check phase (never inside the caller's
 * callback, which may be iterating over sessions), and every later write is dropped. */
static bool out_room(tern_conn *c, size_t more) {
  if (c->state != ST_WS || c->overflow) return !c->overflow;
  if (c->out.len + c->inflight.len + more <= (size_t)c->net->opts.ws_max_outbound) return true;
  TERN_WARN("closing slow client", "conn=%llu peer=%s queued=%zu", (unsigned long long)c->id, c->peer,
            c->out.len + c->inflight.len);
  c->overflow = true;
  tern_buf_free(&c->out);
  mark_dirty(c);
  return false;
}

/* The client does not read. What is already handed to the socket ends on a frame boundary,
 * so the close frame goes right behind it, and the connection lingers: a client that reads
 * again within the linger time gets everything written so far and then the 1008; one that
 * never reads is dropped when the linger time is over. Its inbox keeps everything. */
static void close_overflowed(tern_conn *c) {
  c->overflow = false;
  tern_ws_append_close(&c->out, TERN_WS_CLOSE_POLICY, "outbound backlog overflow", NULL);
  conn_linger(c);
  c->linger_until = tern_now_ms() + OVERFLOW_LINGER_MS;
}

void tern_conn_ws_text_parts(tern_conn *c, const tern_part *parts, size_t nparts) {
  if (c->state != ST_WS) return;
  size_t len = 0;
  for (size_t i = 0; i < nparts; i++) len += parts[i].n;
  if (!out_room(c, len + 10)) return;
  uint8_t hdr[14];
  size_t hl = tern_ws_frame_header(hdr, TERN_WS_OP_TEXT, true, len, NULL);
  tern_buf_reserve(&c->out, hl + len);
  tern_buf_append(&c->out, hdr, hl);
  for (size_t i = 0; i < nparts; i++) tern_buf_append(&c->out, parts[i].p, parts[i].n);
  mark_dirty(c);
}

void tern_conn_ws_text(tern_conn *c, const void *data, size_t len) {
  tern_part p = {data, len};
  tern_conn_ws_text_parts(c, &p, 1);
}

static void ws_control(tern_conn *c, uint8_t op, const void *data, size_t len) {
  if (!out_room(c, len + 2)) return;
  tern_ws_append_frame(&c->out, op, true, data, len, NULL);
  mark_dirty(c);
}

void tern_conn_ws_close(tern_conn *c, uint16_t code, const char *reason) {
  if (c->state != ST_WS || c->overflow) return;
  TERN_DEBUG("ws close", "conn=%llu code=%u reason=%s", (unsigned long long)c->id, code, tern_log_quote(reason));
  tern_ws_append_close(&c->out, code, reason, NULL);
  conn_linger(c);
}

static void refuse_with(tern_conn *c, int status, const char *headers, const char *code, const char *message);
static void refuse(tern_conn *c, int status, const char *code, const char *message) {
  refuse_with(c, status, NULL, code, message);
}

void tern_conn_http_refuse(tern_conn *c, int status, const char *code, const char *message) {
  if (c->state == ST_HTTP && !c->req) refuse(c, status, code, message);
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
  tern_buf *o = &c->out;
  tern_buf_printf(o, "HTTP/1.1 %d %s\r\n", status, status_text(status));
  if (ctype) tern_buf_printf(o, "Content-Type: %s\r\n", ctype);
  if (status != 204 && status != 304) tern_buf_printf(o, "Content-Length: %zu\r\n", len);
  if (headers) tern_buf_puts(o, headers);
  if (!keep_alive) tern_buf_puts(o, "Connection: close\r\n");
  tern_buf_puts(o, "\r\n");
  if (status != 204 && status != 304 && !head_only) tern_buf_append(o, body, len);
  mark_dirty(c);
}

static void error_body(tern_buf *b, const char *code, const char *message) {
  tern_buf_puts(b, "{\"error\":{\"code\":");
  tern_buf_put_json_str(b, code, strlen(code));
  tern_buf_puts(b, ",\"message\":");
  tern_buf_put_json_str(b, message, strlen(message));
  tern_buf_puts(b, "}}");
}

/* An answer decided by the net layer itself (malformed request, too large, timeout): the
 * connection is closed after it, with a lingering close. */
static void refuse_with(tern_conn *c, int status, const char *headers, const char *code, const char *message) {
  if (c->state != ST_HTTP) return;
  tern_buf b = {0};
  error_body(&b, code, message);
  write_response(c, status, headers, "application/json", b.data, b.len, false, false);
  tern_buf_free(&b);
  conn_linger(c);
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
        conn_linger(c);
      } else {
        c->last_rx = tern_now_ms();
        tern_http_parser_resume(c->http);
        c->resume = true; /* pipelined requests are parsed in the check phase, not re-entrantly */
        if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
        mark_dirty(c);
      }
    }
  }
  tern_http_req_free(req);
}

void tern_http_error(tern_http_req *req, int status, const char *code, const char *message) {
  tern_buf b = {0};
  error_body(&b, code, message);
  tern_http_respond(req, status, NULL, "application/json", b.data, b.len);
  tern_buf_free(&b);
}

void tern_http_json(tern_http_req *req, int status, const tern_buf *json) {
  tern_http_respond(req, status, NULL, "application/json", json->data, json->len);
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP requests */

static void upgrade_ws(tern_conn *c, tern_http_req *r, const uint8_t *rest, size_t rest_len) {
  if (strcmp(r->method, "GET") != 0 || strcmp(r->path, "/v1/ws") != 0) {
    refuse(c, 404, "not_found", "no WebSocket endpoint here; use GET /v1/ws");
    return;
  }
  const char *key = tern_http_parser_ws_key(c->http);
  if (!tern_http_parser_ws_ok(c->http)) {
    refuse(c, 400, "bad_request", "a WebSocket upgrade needs Upgrade: websocket, Sec-WebSocket-Key and version 13");
    return;
  }
  char accept[29];
  tern_ws_accept_key(key, strlen(key), accept);
  tern_buf_printf(&c->out,
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\n\r\n",
                  accept);
  free_http(c);
  c->state = ST_WS;
  c->net->nws++;
  c->opened = c->last_rx = c->last_ping = tern_now_ms();
  tern_ws_reader_init(&c->ws, true, (uint64_t)c->net->opts.ws_max_message);
  mark_dirty(c);
  /* frames that came in the same packet as the handshake */
  tern_buf tail = {0};
  tern_buf_append(&tail, rest, rest_len);
  tern_buf_free(&c->in);
  c->in = tail;
  if (c->net->h.on_ws_open) c->net->h.on_ws_open(c, c->net->h.arg);
}

static void ws_process(tern_conn *c);

/* Parses c->in as HTTP until a request is ready (dispatched; parsing waits for its answer),
 * more bytes are needed, or the connection upgrades or fails. */
static void http_process(tern_conn *c) {
  if (!c->http || c->req || !c->in.len) return;
  size_t used;
  int status;
  tern_http_status st = tern_http_parser_execute(c->http, c->in.data, c->in.len, &used, &status);
  switch (st) {
    case TERN_HTTP_BAD: {
      tern_http_req *cur = tern_http_parser_current(c->http);
      if (cur && cur->refuse_status && cur->refuse_status == status) {
        refuse_with(c, status, cur->refuse_headers[0] ? cur->refuse_headers : NULL,
                    cur->refuse_code ? cur->refuse_code : "bad_request",
                    cur->refuse_message ? cur->refuse_message : "the request was refused");
        return;
      }
      if (status == 413) refuse(c, 413, "too_large", "the request body is larger than this endpoint accepts");
      else if (status == 431) refuse(c, 431, "too_large", "the request head is too large");
      else if (status == 415) refuse(c, 415, "unsupported_media_type", "the body is not of an accepted type");
      else if (status == 429) refuse(c, 429, "rate_limited", "too many requests; try again later");
      else if (status == 500) refuse(c, 500, "internal", "the request could not be processed");
      else refuse(c, 400, "bad_request", "malformed HTTP request");
      return;
    }
    case TERN_HTTP_UPGRADE: {
      tern_http_req *r = tern_http_parser_take(c->http);
      tern_buf rest = c->in;
      c->in = (tern_buf){0};
      upgrade_ws(c, r, (const uint8_t *)rest.data + used, rest.len - used);
      tern_http_req_free(r);
      tern_buf_free(&rest);
      if (c->state == ST_WS) ws_process(c);
      return;
    }
    case TERN_HTTP_REQUEST:
    case TERN_HTTP_MORE:
      break;
  }
  tern_buf_consume(&c->in, used);
  if (!c->in.len) tern_buf_free(&c->in);
  if (tern_http_parser_take_continue(c->http)) {
    tern_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    mark_dirty(c);
  }
  if (tern_http_parser_take_pause(c->http) && c->reading) {
    /* a body sink is behind (its disk write): read no more until it calls resume */
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  }
  if (st == TERN_HTTP_REQUEST) {
    c->req = tern_http_parser_take(c->http);
    c->net->h.on_request(c->req, c->net->h.arg);
  }
}

/* ------------------------------------------------------------------------------------------ */
/* WebSocket frames */

static void ws_process(tern_conn *c) {
  size_t off = 0;
  uint8_t *data = (uint8_t *)c->in.data;
  size_t len = c->in.len;
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
  if (c->state != ST_WS) return;
  /* keep only the unparsed tail (callbacks never touch c->in while the connection is open) */
  tern_buf_consume(&c->in, off);
  if (!c->in.len) tern_buf_free(&c->in);
}

/* ------------------------------------------------------------------------------------------ */
/* reading */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tern_conn *c = h->data;
  tern_net *n = c->net;
  if (n->rbuf_busy) { /* cannot happen with libuv's read loop, but never hand it out twice */
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  n->rbuf_busy = true;
  buf->base = n->rbuf;
  buf->len = READ_BUF_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tern_conn *c = s->data;
  tern_net *n = c->net;
  if (buf->base == n->rbuf) n->rbuf_busy = false;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread != UV_EOF) TERN_DEBUG("read error", "conn=%llu err=%s", (unsigned long long)c->id, uv_strerror((int)nread));
    conn_close(c);
    return;
  }
  if (c->state == ST_LINGER) return; /* draining: discard */
  if (c->state == ST_CLOSED) return;
  /* Append to the tail (usually empty). Copying only what is left unparsed would save a copy
   * for whole frames; with frames this small the copy costs less than the bookkeeping. */
  tern_buf_append(&c->in, buf->base, (size_t)nread);
  if (c->state == ST_HTTP) {
    c->last_rx = tern_now_ms();
    if (c->req) {
      /* a handler is working on the previous request: hold the bytes, but stop reading if
       * the client keeps pushing, so one client cannot make us buffer without bound */
      if (c->in.len > (size_t)n->opts.max_header + (size_t)n->opts.max_body) {
        uv_read_stop(s);
        c->reading = false;
      }
      return;
    }
    http_process(c);
  } else if (c->state == ST_WS) {
    ws_process(c);
  }
}

/* ------------------------------------------------------------------------------------------ */
/* accepting and timers */

static void on_connection(uv_stream_t *server, int status) {
  tern_net *n = server->data;
  if (status < 0) {
    TERN_WARN("accept failed", "err=%s", uv_strerror(status));
    return;
  }
  tern_conn *c = TERN_NEW(tern_conn);
  c->net = n;
  c->id = ++n->next_id;
  uv_tcp_init(n->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
    c->state = ST_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    return;
  }
  c->next = n->conns;
  if (n->conns) n->conns->prev = c;
  n->conns = c;
  n->nconns++;
  if ((int64_t)n->nconns > n->opts.max_connections) {
    TERN_WARN("connection limit reached", "limit=%lld", (long long)n->opts.max_connections);
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    char ip[46] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
      uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
  }
  c->http = tern_http_parser_new(n->opts.max_header, n->opts.max_body, n->h.body_limit, n->h.arg, c);
  c->opened = c->last_rx = tern_now_ms();
  c->state = ST_HTTP;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
}

static void on_sweep(uv_timer_t *t) {
  tern_net *n = t->data;
  int64_t now = tern_now_ms();
  const tern_net_options *o = &n->opts;
  tern_conn *c = n->conns;
  while (c) {
    tern_conn *next = c->next; /* c may close below */
    switch (c->state) {
      case ST_HTTP:
        if (c->http && !c->req && now - c->last_rx > o->request_timeout_ms) {
          /* A body streaming to a sink is timed by the sink (media.upload_timeout, which
           * answers 408 itself and does not count while the sink has paused reading):
           * closing it here would cut a slow upload silently at http.request_timeout. */
          tern_http_req *cur = tern_http_parser_current(c->http);
          if (cur && cur->sink) break;
          if (c->in.len) refuse(c, 408, "bad_request", "request timed out");
          else conn_close(c);
        }
        break;
      case ST_WS:
        if (!c->authed && now - c->opened > o->ws_auth_timeout_ms) {
          tern_conn_ws_close(c, 4001, "not authenticated");
        } else if (now - c->last_rx > o->ws_idle_timeout_ms) {
          tern_conn_ws_close(c, 4000, "idle timeout");
        } else if (now - c->last_ping >= o->ws_ping_interval_ms) {
          c->last_ping = now;
          ws_control(c, TERN_WS_OP_PING, NULL, 0);
        }
        break;
      case ST_LINGER:
        if (now > c->linger_until) conn_close(c);
        break;
      default:
        break;
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
  n->rbuf = tern_malloc(READ_BUF_SIZE);
  uv_tcp_init(loop, &n->listener);
  n->listener.data = n;
  int rc = uv_tcp_bind(&n->listener, (struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&n->listener, 4096, on_connection);
  if (rc < 0) {
    snprintf(err, errlen, "cannot listen on %s: %s", opts->listen, uv_strerror(rc));
    uv_close((uv_handle_t *)&n->listener, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    tern_free(n->rbuf);
    tern_free(n);
    return rc;
  }
  n->listening = true;
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
  uv_idle_init(loop, &n->kick);
  n->kick.data = n;
  uv_check_init(loop, &n->flush);
  n->flush.data = n;
  uv_check_start(&n->flush, on_check);
  *out = n;
  return 0;
}

const char *tern_net_addr(const tern_net *n) { return n->addr; }
size_t tern_net_connections(const tern_net *n) { return n->nconns; }
size_t tern_net_ws_connections(const tern_net *n) { return n->nws; }

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
  if (!uv_is_closing((uv_handle_t *)&n->flush)) uv_close((uv_handle_t *)&n->flush, NULL);
  if (!uv_is_closing((uv_handle_t *)&n->kick)) uv_close((uv_handle_t *)&n->kick, NULL);
  uv_run(n->loop, UV_RUN_NOWAIT);
  tern_free(n->rbuf);
  tern_free(n);
}
