/* server: the TCP listener and every client connection: HTTP/1.1 (llhttp), the upgrade to
 * WebSocket on the same port, WebSocket framing (src/net/ws.h), heartbeats and timeouts, on the
 * byte stream of src/net/stream.h. It knows nothing of tern's protocol: complete HTTP requests
 * and WebSocket text messages go up to the handlers given by the core layer, which also decide
 * which requests may upgrade, the close codes of the two timeouts and the body of every error
 * answer, the net layer's own refusals (400, 408, 413, 431, ...) included.
 *
 * Threads: everything here runs on the loop thread. A process may run one tern_net per worker
 * loop, each with its own connections; they share only a tern_net_shared.
 *
 * Lifetimes. A tern_conn lives from accept until it is closed and nobody holds a reference.
 * Handlers that answer later (after a store commit or a password hash) take a reference with
 * tern_conn_ref and drop it with tern_conn_unref; writing to a connection that has closed in
 * the meantime is a harmless no-op. A connection is never freed inside one of its callbacks.
 *
 * Writing. Frames and responses are appended to the connection's stream and written once per
 * connection per loop iteration. A WebSocket client that lets more than ws.max_outbound bytes
 * pile up is closed with 1008.
 */
#ifndef TERN_NET_SERVER_H
#define TERN_NET_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"
#include "base/cidr.h"
#include "net/httpreq.h"
#include "net/stream.h"

typedef struct tern_net tern_net;

/* What the listeners of one process share, so that the per-address limits and
 * http.max_connections hold for the process whichever worker's listener accepts: the table of
 * client addresses (open connections, the bucket of new ones), the connection count and the
 * limit counters, under a mutex. Made by the composition root, given to every tern_net_start,
 * freed after every net that uses it. Any thread. */
typedef struct tern_net_shared tern_net_shared;
tern_net_shared *tern_net_shared_new(void);
void tern_net_shared_free(tern_net_shared *sh);

typedef struct tern_net_handlers {
  /* A request's head is complete: return the largest body accepted for it (bytes). A body
   * announced or grown beyond it is refused with 413 before it is read. May be NULL. */
  int64_t (*body_limit)(tern_http_req *req, void *arg);
  /* A complete request. The handler answers exactly once with tern_http_respond, now or
   * later; the request stays valid until then. Parsing of further pipelined requests on the
   * connection waits for that answer. */
  void (*on_request)(tern_http_req *req, void *arg);
  /* A request asks to upgrade to WebSocket (its head is complete): return true to let it (its
   * handshake headers are checked next, 400 when they are wrong), false to refuse it, with
   * req->refuse_status, refuse_code and refuse_message when set, else 404. NULL: no request
   * may upgrade. The request is freed after the call. */
  bool (*ws_accept)(tern_http_req *req, void *arg);
  /* A WebSocket handshake completed. */
  void (*on_ws_open)(tern_conn *c, void *arg);
  /* A complete text message (valid UTF-8). data is valid during the call only. */
  void (*on_ws_text)(tern_conn *c, const char *data, size_t len, void *arg);
  /* The WebSocket is closing: nothing more will be read; writes are dropped. Called once. */
  void (*on_ws_gone)(tern_conn *c, void *arg);
  /* Renders the body of an error answer: the net layer's own refusals, tern_http_error and
   * tern_conn_http_refuse. Appends the body to out and returns its content type (static).
   * code is the one given by the caller or by a refuse_code, or NULL when the net layer
   * refuses on its own and knows only the status and a sentence (message). NULL: a plain-text
   * body, the message and a newline. */
  const char *(*error_body)(tern_buf *out, int status, const char *code, const char *message, void *arg);
  void *arg;
} tern_net_handlers;

typedef struct tern_net_options {
  const char *listen;        /* HOST:PORT; port 0 picks a free port */
  int64_t max_header;        /* request line + headers */
  int64_t max_body;          /* default body limit when body_limit is NULL */
  int64_t request_timeout_ms;/* an HTTP request (or idle keep-alive) may take this long */
  int64_t ws_max_message;
  int64_t ws_max_auth_frame; /* the same until tern_conn_set_authed (0: ws_max_message) */
  int64_t ws_max_outbound;
  int64_t ws_ping_interval_ms;
  int64_t ws_idle_timeout_ms;
  int64_t ws_auth_timeout_ms;/* close when tern_conn_set_authed has not been called by then */
  int64_t max_connections;
  uint16_t ws_auth_close_code; /* the close code for the auth timeout (0: 1008) */
  uint16_t ws_idle_close_code; /* the close code for the idle timeout (0: 1008) */
  struct tern_tls *tls;      /* not NULL: every connection speaks TLS (net/tls.h); not owned */
  /* Per client address, at accept (0: no limit). Peers in trusted_proxies are not counted. */
  int64_t conn_per_ip;       /* open connections */
  double conn_rate;          /* new connections per second, sustained */
  double conn_rate_burst;    /* and in a burst */
  const tern_cidr_list *trusted_proxies; /* not owned; NULL: none */
  /* Several listeners (one per worker loop) on one port: SO_REUSEPORT on each, set before the
   * bind. The first binds listen (port 0 picks one); the others bind the address it got. */
  bool reuseport;
  tern_net_shared *shared;   /* not owned; NULL: this net keeps its own */
} tern_net_options;

/* The limits the net layer enforces itself, for tern_limited_total. */
typedef enum { TERN_NET_LIMIT_CONN_PER_IP = 0, TERN_NET_LIMIT_CONN_RATE, TERN_NET_LIMIT__COUNT } tern_net_limit;

/* Binds and listens. On failure returns a negative errno-style code and a reason. */
int tern_net_start(uv_loop_t *loop, const tern_net_options *opts, const tern_net_handlers *h, tern_net **out,
                   char *err, size_t errlen);
/* The address actually bound ("127.0.0.1:41234"). */
const char *tern_net_addr(const tern_net *n);
/* Stops accepting new connections (existing ones go on). */
/* The client address the core counted a connection against (a WebSocket through a trusted
 * proxy, core/limits.h), kept for when it goes. */
void tern_conn_set_counted_client(tern_conn *c, const tern_ip *ip);
bool tern_conn_counted_client(const tern_conn *c, tern_ip *out);
void tern_net_stop_listening(tern_net *n);
/* Connections closed at accept by each per-address limit, since start. */
void tern_net_limited(const tern_net *n, uint64_t out[TERN_NET_LIMIT__COUNT]);
/* Closes every WebSocket with code/reason and every HTTP connection; calls on_ws_gone. */
void tern_net_close_all(tern_net *n, uint16_t code, const char *reason);
/* True once every connection is fully closed. */
bool tern_net_idle(const tern_net *n);
/* Frees the listener; call after the loop has closed every handle. */
void tern_net_free(tern_net *n);

/* The counts may be read from another worker's thread (/metrics). */
size_t tern_net_connections(const tern_net *n);   /* open TCP connections */
size_t tern_net_ws_connections(const tern_net *n);/* open WebSocket connections */
/* The connections' stream counters (reads, flushes, writes; see net/stream.h). */
void tern_net_stream_stats(const tern_net *n, tern_stream_stats *out);

/* ---- HTTP responses ---- */
/* Answers req with status, extra header lines ("Name: value\r\n"..., or NULL), a content
 * type and a body. Frees req. A no-op write (but still frees) if the connection is gone. */
void tern_http_respond(tern_http_req *req, int status, const char *headers, const char *content_type,
                       const void *body, size_t len);
/* An error answer with status, its body rendered by the handlers' error_body. */
void tern_http_error(tern_http_req *req, int status, const char *code, const char *message);
/* A JSON body (already encoded). */
void tern_http_json(tern_http_req *req, int status, const tern_buf *json);

/* A response whose body is produced piece by piece (a media file read in chunks), so that a
 * large body is never held in memory. The net layer asks for more (WANT) whenever less than
 * 64 KiB waits to be written; the producer answers with tern_http_stream_write, later, as its
 * reads complete, and finally tern_http_stream_end. DONE comes once every byte has been handed
 * to the kernel; GONE if the connection went away first (stop producing; nothing is written
 * after it). After DONE or GONE the stream and its request are freed. */
typedef struct tern_http_stream tern_http_stream;
typedef enum { TERN_STREAM_WANT = 0, TERN_STREAM_DONE, TERN_STREAM_GONE } tern_stream_event;
typedef void (*tern_http_stream_cb)(tern_http_stream *s, tern_stream_event ev, void *arg);
/* Writes the status line and headers (Content-Length = length) and takes over req. For HEAD
 * requests no body is written: DONE follows without WANT. Returns NULL (req freed, no callback
 * ever) when the connection has gone away already. */
tern_http_stream *tern_http_stream_start(tern_http_req *req, int status, const char *headers, const char *content_type,
                                         int64_t length, tern_http_stream_cb cb, void *arg);
void tern_http_stream_write(tern_http_stream *s, const void *p, size_t n);
/* Every body byte has been written with tern_http_stream_write. */
void tern_http_stream_end(tern_http_stream *s);
/* The body cannot be completed (a read failed): the connection is closed; GONE follows. */
void tern_http_stream_abort(tern_http_stream *s);

/* Refuses the request being received on c (e.g. an upload that timed out in its sink) with an
 * error answer (as tern_http_error), and closes the connection after it. A no-op once a handler holds the request. */
void tern_conn_http_refuse(tern_conn *c, int status, const char *code, const char *message);
/* The same with extra header lines ("Retry-After: 5\r\n", or NULL). */
void tern_conn_http_refuse_headers(tern_conn *c, int status, const char *headers, const char *code,
                                   const char *message);

/* ---- connections ---- */
void tern_conn_ref(tern_conn *c);
void tern_conn_unref(tern_conn *c);
bool tern_conn_is_open(const tern_conn *c);    /* not closing or closed */
void *tern_conn_data(const tern_conn *c);
void tern_conn_set_data(tern_conn *c, void *data);
const char *tern_conn_peer(const tern_conn *c); /* "ip:port" for logs */
uint64_t tern_conn_id(const tern_conn *c);       /* unique per process, for logs */

/* WebSocket: queues one text frame. */
void tern_conn_ws_text(tern_conn *c, const void *data, size_t len);
/* Queues one text frame made of several parts (written back to back, no copy in between). */
typedef struct tern_part {
  const void *p; /* bytes */
  size_t n;      /* length */
} tern_part;
void tern_conn_ws_text_parts(tern_conn *c, const tern_part *parts, size_t nparts);
/* Sends a close frame with code and reason, then closes. on_ws_gone is called. */
void tern_conn_ws_close(tern_conn *c, uint16_t code, const char *reason);
/* Starts reading again after a body sink asked to stop (see tern_http_sink). */
void tern_conn_resume_read(tern_conn *c);
/* Marks the WebSocket as authenticated (stops the auth deadline). */
void tern_conn_set_authed(tern_conn *c);
/* Bytes queued for this connection and not yet written. */
size_t tern_conn_outbound(const tern_conn *c);
/* Milliseconds (tern_now_ms) when a frame or pong was last received. */
int64_t tern_conn_last_rx(const tern_conn *c);

#endif
