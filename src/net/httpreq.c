#include "net/httpreq.h"

#include <llhttp.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "base/alloc.h"
#include "base/util.h"

struct tern_http_parser {
  llhttp_t parser;       /* llhttp state machine; parser.data points back here */
  tern_conn *conn;       /* stored in each request */
  tern_http_limit_cb limit; /* body limit per request, or NULL */
  void *limit_arg;
  int64_t max_header;    /* request line + headers */
  int64_t max_body;      /* body limit when limit is NULL */
  tern_http_req *req;    /* request being parsed, or complete and not yet taken */
  tern_buf field;        /* header name being read */
  tern_buf value;        /* header value being read */
  tern_buf url;          /* request target being read */
  char *ws_key;          /* Sec-WebSocket-Key */
  int64_t head_bytes;    /* bytes of request line + headers so far */
  int64_t body_limit;    /* largest body accepted for the current request */
  int64_t body_seen;     /* body bytes of the current request so far */
  int refuse_status;     /* 413/431 decided inside a callback, 0 otherwise */
  bool in_value;         /* last header callback was a value */
  bool ready;            /* a complete request is waiting */
  bool ws_upgrade;       /* Upgrade: websocket */
  bool ws_version_ok;    /* Sec-WebSocket-Version: 13 */
  bool http11;           /* HTTP/1.1 or later: an upgrade needs it (RFC 6455 4.1) */
  bool pause;            /* a sink asked to stop reading */
  bool expect_continue;  /* Expect: 100-continue on the current request */
  bool send_continue;    /* the head was accepted: the client waits for "100 Continue" */
};

/* The callbacks every parser shares: written once (pthread_once), read-only after, so that
 * parsers on several loops need no lock. */
static llhttp_settings_t g_settings;
static pthread_once_t g_settings_once = PTHREAD_ONCE_INIT;

static void settings_init(void);

void tern_http_req_free(tern_http_req *r) {
  if (!r) return;
  tern_free(r->path);
  tern_free(r->query);
  tern_free(r->authorization);
  tern_free(r->content_type);
  tern_free(r->if_none_match);
  tern_free(r->range);
  tern_free(r->accept_encoding);
  tern_free(r->forwarded_for);
  tern_buf_free(&r->body);
  tern_free(r);
}

static tern_http_parser *parser_of(llhttp_t *p) { return p->data; }

static int head_grow(tern_http_parser *h, size_t n) {
  h->head_bytes += (int64_t)n;
  if (h->head_bytes > h->max_header) {
    h->refuse_status = 431;
    return HPE_USER;
  }
  return 0;
}

/* Frees a request the parser still owns, telling its sink it will never complete. */
static void drop_req(tern_http_parser *h) {
  if (h->req && h->req->sink && !h->ready) h->req->sink->abort(h->req);
  tern_http_req_free(h->req);
  h->req = NULL;
}

static int on_message_begin(llhttp_t *p) {
  tern_http_parser *h = parser_of(p);
  drop_req(h); /* only a request nobody took */
  h->req = TERN_NEW(tern_http_req);
  h->req->conn = h->conn;
  h->req->content_length = -1;
  h->req->started_ms = tern_now_ms();
  h->head_bytes = 0;
  h->body_seen = 0;
  h->in_value = false;
  h->ws_upgrade = h->ws_version_ok = false;
  h->expect_continue = h->send_continue = false;
  tern_free(h->ws_key);
  h->ws_key = NULL;
  tern_buf_reset(&h->url);
  tern_buf_reset(&h->field);
  tern_buf_reset(&h->value);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  tern_http_parser *h = parser_of(p);
  if (head_grow(h, len)) return HPE_USER;
  tern_buf_append(&h->url, at, len);
  return 0;
}

static bool hdr_is(const tern_buf *b, const char *name) {
  return b->len == strlen(name) && strncasecmp(b->data, name, b->len) == 0;
}

/* Keeps the first value of each header tern reads; ignores the others. */
static void header_done(tern_http_parser *h) {
  tern_http_req *r = h->req;
  char *v = tern_strndup(h->value.data ? h->value.data : "", h->value.len);
  char **slot = NULL;
  if (hdr_is(&h->field, "authorization")) slot = &r->authorization;
  else if (hdr_is(&h->field, "content-type")) slot = &r->content_type;
  else if (hdr_is(&h->field, "if-none-match")) slot = &r->if_none_match;
  else if (hdr_is(&h->field, "range")) slot = &r->range;
  else if (hdr_is(&h->field, "accept-encoding")) slot = &r->accept_encoding;
  else if (hdr_is(&h->field, "sec-websocket-key")) slot = &h->ws_key;
  else if (hdr_is(&h->field, "x-forwarded-for")) {
    /* several headers are one list (RFC 7230 3.2.2): the last proxy's entries come last */
    if (r->forwarded_for) {
      size_t ol = strlen(r->forwarded_for), vl = strlen(v);
      r->forwarded_for = tern_realloc(r->forwarded_for, ol + vl + 2);
      r->forwarded_for[ol] = ',';
      memcpy(r->forwarded_for + ol + 1, v, vl + 1);
      tern_free(v);
      v = NULL;
    } else {
      slot = &r->forwarded_for;
    }
  }
  else if (hdr_is(&h->field, "upgrade")) h->ws_upgrade = strcasecmp(v, "websocket") == 0;
  else if (hdr_is(&h->field, "sec-websocket-version")) h->ws_version_ok = strcmp(v, "13") == 0;
  else if (hdr_is(&h->field, "expect")) h->expect_continue = strcasecmp(v, "100-continue") == 0;
  if (slot && !*slot) {
    *slot = v;
  } else {
    tern_free(v); /* NULL when appended above */
  }
  tern_buf_reset(&h->field);
  tern_buf_reset(&h->value);
  h->in_value = false;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  tern_http_parser *h = parser_of(p);
  if (head_grow(h, len + 4)) return HPE_USER; /* + ": " and CRLF */
  if (h->in_value) header_done(h);
  tern_buf_append(&h->field, at, len);
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  tern_http_parser *h = parser_of(p);
  if (head_grow(h, len)) return HPE_USER;
  h->in_value = true;
  tern_buf_append(&h->value, at, len);
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  tern_http_parser *h = parser_of(p);
  tern_http_req *r = h->req;
  if (h->in_value || h->field.len) header_done(h);
  r->method = llhttp_method_name((llhttp_method_t)p->method);
  char *url = tern_buf_cstr(&h->url);
  char *q = strchr(url, '?');
  if (q) {
    r->query = tern_strdup(q + 1);
    r->path = tern_strndup(url, (size_t)(q - url));
  } else {
    r->path = tern_strdup(url);
  }
  r->keep_alive = llhttp_should_keep_alive(p);
  h->http11 = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
  /* llhttp's length is unsigned: 2^63 and above must not turn negative and pass the limit */
  if (p->flags & F_CONTENT_LENGTH)
    r->content_length = p->content_length > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)p->content_length;
  h->body_limit = h->limit ? h->limit(r, h->limit_arg) : h->max_body;
  if (r->refuse_status) {
    h->refuse_status = r->refuse_status; /* refused by the handler from the head alone */
    return HPE_USER;
  }
  if (r->content_length > h->body_limit) {
    h->refuse_status = 413; /* refused before a byte of the body is read */
    return HPE_USER;
  }
  /* A client that asked may send the body only after "100 Continue" (curl waits a second for
   * it before large uploads); refusals above answer it with the final status instead. */
  if (h->expect_continue && r->content_length != 0) h->send_continue = true;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  tern_http_parser *h = parser_of(p);
  tern_http_req *r = h->req;
  h->body_seen += (int64_t)len;
  if (h->body_seen > h->body_limit) {
    h->refuse_status = 413; /* chunked bodies are refused as soon as they pass the limit */
    return HPE_USER;
  }
  if (r->sink) {
    int rc = r->sink->data(r, at, len);
    if (rc < 0) {
      h->refuse_status = -rc;
      return HPE_USER;
    }
    if (rc == 1) h->pause = true;
    return 0;
  }
  tern_buf_append(&r->body, at, len);
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  tern_http_parser *h = parser_of(p);
  h->ready = true;
  if (llhttp_get_upgrade(p)) return 0; /* execute returns HPE_PAUSED_UPGRADE next */
  return HPE_PAUSED;                   /* one request at a time: the next waits for resume */
}

static void settings_init(void) {
  llhttp_settings_init(&g_settings);
  g_settings.on_message_begin = on_message_begin;
  g_settings.on_url = on_url;
  g_settings.on_header_field = on_header_field;
  g_settings.on_header_value = on_header_value;
  g_settings.on_headers_complete = on_headers_complete;
  g_settings.on_body = on_body;
  g_settings.on_message_complete = on_message_complete;
}

tern_http_parser *tern_http_parser_new(int64_t max_header, int64_t max_body, tern_http_limit_cb limit, void *arg,
                                       tern_conn *conn) {
  pthread_once(&g_settings_once, settings_init);
  tern_http_parser *h = TERN_NEW(tern_http_parser);
  llhttp_init(&h->parser, HTTP_REQUEST, &g_settings);
  h->parser.data = h;
  h->conn = conn;
  h->limit = limit;
  h->limit_arg = arg;
  h->max_header = max_header;
  h->max_body = max_body;
  return h;
}

void tern_http_parser_free(tern_http_parser *h) {
  if (!h) return;
  drop_req(h);
  tern_buf_free(&h->field);
  tern_buf_free(&h->value);
  tern_buf_free(&h->url);
  tern_free(h->ws_key);
  tern_free(h);
}

tern_http_status tern_http_parser_execute(tern_http_parser *h, const char *data, size_t len, size_t *used,
                                          int *status) {
  *used = 0;
  *status = 0;
  if (h->ready) return TERN_HTTP_REQUEST; /* not resumed yet */
  llhttp_errno_t err = llhttp_execute(&h->parser, data, len);
  if (err == HPE_OK) {
    *used = len;
    return TERN_HTTP_MORE;
  }
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    const char *pos = llhttp_get_error_pos(&h->parser);
    *used = pos ? (size_t)(pos - data) : len;
    return err == HPE_PAUSED ? TERN_HTTP_REQUEST : TERN_HTTP_UPGRADE;
  }
  *status = h->refuse_status ? h->refuse_status : 400;
  return TERN_HTTP_BAD;
}

tern_http_req *tern_http_parser_take(tern_http_parser *h) {
  tern_http_req *r = h->ready ? h->req : NULL;
  if (r) h->req = NULL;
  return r;
}

void tern_http_parser_resume(tern_http_parser *h) {
  if (!h->ready) return;
  h->ready = false;
  llhttp_resume(&h->parser);
}

const char *tern_http_parser_ws_key(const tern_http_parser *h) { return h->ws_key; }
/* RFC 6455 4.1: the key is 16 random bytes in base64 (24 characters with its padding). */
static bool ws_key_ok(const char *k) {
  if (!k || strlen(k) != 24) return false;
  unsigned char raw[18];
  size_t n = 0;
  return sodium_base642bin(raw, sizeof raw, k, 24, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 && n == 16;
}

bool tern_http_parser_ws_ok(const tern_http_parser *h) {
  return h->http11 && h->ws_upgrade && h->ws_version_ok && ws_key_ok(h->ws_key);
}
int64_t tern_http_parser_body_limit(const tern_http_parser *h) { return h->body_limit; }

tern_http_req *tern_http_parser_current(const tern_http_parser *h) { return h->req; }

bool tern_http_parser_take_continue(tern_http_parser *h) {
  bool c = h->send_continue;
  h->send_continue = false;
  return c;
}

bool tern_http_parser_take_pause(tern_http_parser *h) {
  bool p = h->pause;
  h->pause = false;
  return p;
}
