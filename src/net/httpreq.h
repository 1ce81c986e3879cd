/* http: the HTTP/1.1 request parser of the server, on llhttp, independent of sockets so that it
 * can be fuzzed and tested with plain bytes.
 *
 * It captures what tern needs from a request (method, path, query, a few headers, the body up
 * to a limit) and refuses early: a head over max_header is 431, a body announced or grown over
 * the limit is 413 (before the body is read), anything llhttp rejects is 400. It parses one
 * request at a time: after a complete request it pauses until tern_http_parser_resume, so a
 * handler may answer asynchronously while pipelined bytes wait.
 *
 * Ownership: the parser owns the request being parsed; tern_http_parser_take hands a complete
 * request to the caller, who frees it with tern_http_req_free (tern_http_respond does).
 */
#ifndef TERN_NET_HTTPREQ_H
#define TERN_NET_HTTPREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct tern_conn tern_conn;

typedef struct tern_http_req {
  tern_conn *conn;        /* the connection it arrived on */
  const char *method;     /* "GET", "POST", ... (static) */
  char *path;             /* the raw path, without the query (owned by the request) */
  char *query;            /* after '?', or NULL */
  char *authorization;    /* header values, or NULL when absent (owned by the request) */
  char *content_type;
  char *if_none_match;
  char *range;
  char *accept_encoding;
  char *forwarded_for;    /* X-Forwarded-For, every such header joined with "," */
  int64_t content_length; /* -1 when absent */
  tern_buf body;          /* the whole body (at most the limit), unless a sink takes it */
  const struct tern_http_sink *sink; /* set by the limit callback to stream the body instead */
  void *sink_ctx;         /* the sink's state for this request */
  int refuse_status;      /* set by the limit callback to refuse at once (before the body) */
  const char *refuse_code;/* its error code (static), e.g. "unauthorized" */
  const char *refuse_message; /* its sentence (static) */
  char refuse_headers[64];/* extra header lines for it, e.g. "Retry-After: 30\r\n" */
  bool keep_alive;        /* the client keeps the connection after this request */
  int64_t started_ms;     /* when its first byte arrived (http.request_timeout is a deadline from it) */
  void *data;             /* the handler's */
  uint8_t reruns;         /* the handler's: times it ran the request again (after a directory catch-up) */
} tern_http_req;

/* A body sink streams a large body (a media upload) instead of buffering it in req->body.
 * The limit callback installs it on the request (req->sink, req->sink_ctx) when the head is
 * complete. The limit still applies: a body passing it is refused with 413. */
typedef struct tern_http_sink {
  /* Body bytes as they arrive. Returns 0 to go on, 1 to ask the connection to stop reading
   * until the sink calls tern_conn_resume_read (its write is behind), or a negative HTTP
   * status (-413, -415, -500...) to refuse the request (the connection then closes). */
  int (*data)(tern_http_req *req, const char *p, size_t n);
  /* The request will never complete (the connection closed or the request was refused):
   * release everything (remove temp files). Not called for a request that completed. */
  void (*abort)(tern_http_req *req);
} tern_http_sink;

/* Returns the largest body accepted for a request whose head is complete. */
typedef int64_t (*tern_http_limit_cb)(tern_http_req *req, void *arg);

typedef struct tern_http_parser tern_http_parser;

typedef enum {
  TERN_HTTP_MORE = 0, /* everything consumed; no complete request yet */
  TERN_HTTP_REQUEST,  /* a complete request: take it; parsing is paused until resume */
  TERN_HTTP_UPGRADE,  /* a complete upgrade request: bytes after *used belong to the new protocol */
  TERN_HTTP_BAD,      /* refused: *status is 400, 413, 431 or a sink's status; the connection must close */
} tern_http_status;

/* conn is stored in every request (req->conn). limit may be NULL (max_body applies). */
tern_http_parser *tern_http_parser_new(int64_t max_header, int64_t max_body, tern_http_limit_cb limit, void *arg,
                                       tern_conn *conn);
/* Frees the parser and a request it still owns (not one already taken). */
void tern_http_parser_free(tern_http_parser *p);
/* Parses data[0..len). *used gets the bytes consumed (the rest must be passed again after a
 * resume, or belongs to the upgraded protocol). */
tern_http_status tern_http_parser_execute(tern_http_parser *p, const char *data, size_t len, size_t *used,
                                          int *status);
/* Hands the complete request to the caller (after REQUEST or UPGRADE). */
tern_http_req *tern_http_parser_take(tern_http_parser *p);
/* Continues after a REQUEST, for the next pipelined request. */
void tern_http_parser_resume(tern_http_parser *p);
/* For an UPGRADE: Sec-WebSocket-Key (or NULL), and whether Upgrade: websocket and
 * Sec-WebSocket-Version: 13 were present. Valid until the parser is freed. */
const char *tern_http_parser_ws_key(const tern_http_parser *p);
bool tern_http_parser_ws_ok(const tern_http_parser *p);
/* True once after the head of a request with "Expect: 100-continue" was accepted: the caller
 * writes "HTTP/1.1 100 Continue" so the client sends its body. Clears the flag. */
bool tern_http_parser_take_continue(tern_http_parser *p);
/* True once (and until resume_read is handled) a sink asked to stop reading. Clears the flag. */
bool tern_http_parser_take_pause(tern_http_parser *p);
/* The request being parsed (after BAD: the one refused, with its refuse_* fields), or NULL. */
tern_http_req *tern_http_parser_current(const tern_http_parser *p);
/* The largest body accepted for the current request. */
int64_t tern_http_parser_body_limit(const tern_http_parser *p);

void tern_http_req_free(tern_http_req *r);

#endif
