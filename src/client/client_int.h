/* client_int.h: the pieces of libtern-client shared between its .c files and its unit tests.
 * Not part of the public API (see client.h). */
#ifndef TERN_CLIENT_CLIENT_INT_H
#define TERN_CLIENT_CLIENT_INT_H

#include <llhttp.h>
#include <sys/types.h>

#include "base/buf.h"
#include "client/client.h"
#include "net/stream.h"
#include "net/tls.h"

struct tern_client_http_req;

struct tern_client {
  uv_loop_t *loop;                 /* not owned */
  tern_client_options opts;        /* with defaults filled in */
  tern_stream_loop *sl;            /* the shared read buffer and the once-per-iteration flush of
                                      every connection and request (net/stream.h) */
  tern_client_conn *conns;         /* every live connection (doubly linked) */
  struct tern_client_http_req *reqs; /* every running HTTP request (doubly linked) */
  tern_buf scratch;                /* frame JSON is built here, then framed into a connection */
  uint8_t masks[64];               /* random bytes for frame masks, used 4 at a time */
  size_t masks_used;               /* bytes of masks already used */
  bool freeing;                    /* tern_client_free was called: no callbacks any more */
  tern_tls *tls;                   /* the TLS client context, made at the first TLS URL */
};

/* The transport and its config for a connection to url: TCP, or TLS (the context made on first
 * use, with opts.ca_file). Returns 0, or a negative errno with the reason in why. */
int tern_client_transport(tern_client *c, const tern_client_url *url, const tern_stream_transport **tp,
                          tern_tls_config *cfg, char *why, size_t whylen);

/* Frees the context once freeing is set and nothing of it is left. */
void tern_client_maybe_done(tern_client *c);
/* Four fresh random bytes for a frame mask (from a pool refilled by tern_random, so that a
 * busy load generator does not make a getrandom call per frame). */
void tern_client_next_mask(tern_client *c, uint8_t mask[4]);

/* ---- TCP connect ---- */

/* Connects tcp (initialized by the caller on the context's loop) to host:port, after resolving
 * host in the threadpool when it is not an IP literal, binding to bind_ip first when given.
 * cb(owner, status) is called once, later (never from inside this call), unless the dial is
 * cancelled first; the dial frees itself after calling cb or once cancelled. Returns NULL
 * and sets *err when it cannot start (no callback then). */
typedef struct tern_client_dial tern_client_dial;
typedef void (*tern_client_dial_cb)(void *owner, int status);
tern_client_dial *tern_client_dial_start(uv_tcp_t *tcp, const char *host, uint16_t port, const char *bind_ip,
                                         tern_client_dial_cb cb, void *owner, int *err);
/* No callback will be called; call it before closing tcp. */
void tern_client_dial_cancel(tern_client_dial *d);

/* ---- HTTP response parser (llhttp in HTTP_RESPONSE mode), for requests and upgrades ---- */

typedef struct tern_client_http_parser {
  llhttp_t p;               /* llhttp state; p.data points back here */
  int status;               /* status code, once the head is parsed */
  bool head_done;           /* headers complete */
  bool done;                /* the whole message is complete */
  bool upgrade;             /* a 101 answer: the rest of the bytes are another protocol */
  size_t head_bytes;        /* header bytes seen, against max_head */
  size_t max_head;          /* larger heads are refused */
  size_t max_body;          /* larger bodies are refused */
  tern_buf field;           /* header name being read */
  tern_buf value;           /* header value being read */
  tern_buf body;            /* the body */
  char accept[64];          /* Sec-WebSocket-Accept */
  char retry_after[32];     /* Retry-After */
  char etag[80];            /* ETag */
  bool conn_upgrade;        /* Connection: upgrade */
  bool upgrade_ws;          /* Upgrade: websocket */
  int (*sink)(const char *p, size_t n, void *arg); /* optional: a 2xx body goes here, unbuffered */
  void *sink_arg;
  bool sinking;             /* the head was 2xx and sink is set: the body goes to sink */
  int sink_err;             /* the sink's negative answer, which ended the parse */
} tern_client_http_parser;

void tern_client_hp_init(tern_client_http_parser *hp, size_t max_body);
void tern_client_hp_free(tern_client_http_parser *hp);
/* Parses data. Returns the bytes consumed (all of them, except after an upgrade, where the
 * rest belongs to the new protocol), or -EBADMSG. Stop feeding once hp->done. */
ssize_t tern_client_hp_feed(tern_client_http_parser *hp, const char *data, size_t len);
/* The peer closed: completes a body delimited by EOF. Returns 0 or -EBADMSG. */
int tern_client_hp_eof(tern_client_http_parser *hp);

/* Fills r (status, ok, code, message, retry_after, etag, body, json) from a finished parser; takes
 * hp's body. */
void tern_client_response_from_parser(tern_client_response *r, tern_client_http_parser *hp);

/* Closes every running request without callbacks (context freeing); a request started with
 * tern_client_http_ex gets its drop call instead, so that a chain of requests (the group list's
 * pages) frees its state. */
void tern_client_http_abort_all(tern_client *c);
/* tern_client_http with a drop hook (NULL: none). */
int tern_client_http_ex(tern_client *c, const tern_client_url *url, const tern_client_request *req,
                        tern_client_http_cb cb, void (*drop)(void *arg), void *arg);
/* Appends s to a URL path, percent-escaping every byte but [A-Za-z0-9._~-]. */
void tern_client_path_escape(tern_buf *out, const char *s);

/* ---- server frames ---- */

/* Decodes one server frame with proto's tern_event_decode and fills the event's flat fields
 * from it (type UNKNOWN when it is not one we know, or malformed). Always fills ev; release
 * it with tern_client_event_clear. */
void tern_client_event_parse(const char *json, size_t len, tern_client_event *ev);
void tern_client_event_clear(tern_client_event *ev);


/* ---- WebSocket handshake ---- */

/* Appends the upgrade request for hostport with a fresh Sec-WebSocket-Key; key_out gets the
 * key (24 chars + NUL). */
void tern_client_upgrade_request(tern_buf *out, const char *hostport, char key_out[25]);
/* Checks a finished upgrade answer: 0, or -EPROTO with a reason. */
int tern_client_upgrade_check(const tern_client_http_parser *hp, const char *key, const char **why);

#endif
