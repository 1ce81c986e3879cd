/* request.c: the HTTP/1.1 side of the client: a response parser on llhttp (also used for the
 * WebSocket upgrade), one-shot requests on a fresh TCP connection each, the JSON API calls
 * and a synchronous wrapper for command-line tools. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/util.h"
#include "client/client_int.h"

#define HP_MAX_HEAD (64 * 1024)      /* a response head larger than this is not a tern server */
#define HP_MAX_FIELD 64              /* we only look at short header names */
#define HP_MAX_VALUE 1024            /* and at short values */
#define HTTP_MAX_BODY (16u << 20)    /* largest response body accepted */

/* ---- the response parser ---- */

static tern_client_http_parser *hp_of(llhttp_t *p) { return p->data; }

static int hp_count(tern_client_http_parser *hp, size_t n) {
  hp->head_bytes += n;
  return hp->head_bytes > hp->max_head ? -1 : 0;
}

static int hp_on_field(llhttp_t *p, const char *at, size_t len) {
  tern_client_http_parser *hp = hp_of(p);
  if (hp_count(hp, len) < 0) return -1;
  if (hp->field.len + len <= HP_MAX_FIELD) tern_buf_append(&hp->field, at, len);
  return 0;
}

static int hp_on_value(llhttp_t *p, const char *at, size_t len) {
  tern_client_http_parser *hp = hp_of(p);
  if (hp_count(hp, len) < 0) return -1;
  if (hp->value.len + len <= HP_MAX_VALUE) tern_buf_append(&hp->value, at, len);
  return 0;
}

static void copy_value(char *dst, size_t cap, const tern_buf *v) {
  size_t n = TERN_MIN(v->len, cap - 1);
  if (n) memcpy(dst, v->data, n);
  dst[n] = '\0';
}

/* True when the comma-separated list v holds token (case-insensitive). */
static bool list_has(const char *v, const char *token) {
  size_t tl = strlen(token);
  while (*v) {
    while (*v == ' ' || *v == '\t' || *v == ',') v++;
    const char *e = v;
    while (*e && *e != ',') e++;
    const char *t = e;
    while (t > v && (t[-1] == ' ' || t[-1] == '\t')) t--;
    if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0) return true;
    v = e;
  }
  return false;
}

static int hp_on_value_complete(llhttp_t *p) {
  tern_client_http_parser *hp = hp_of(p);
  const char *f = tern_buf_cstr(&hp->field);
  char v[HP_MAX_VALUE + 1];
  copy_value(v, sizeof v, &hp->value);
  if (strcasecmp(f, "sec-websocket-accept") == 0) {
    copy_value(hp->accept, sizeof hp->accept, &hp->value);
  } else if (strcasecmp(f, "retry-after") == 0) {
    copy_value(hp->retry_after, sizeof hp->retry_after, &hp->value);
  } else if (strcasecmp(f, "etag") == 0) {
    copy_value(hp->etag, sizeof hp->etag, &hp->value);
  } else if (strcasecmp(f, "connection") == 0) {
    if (list_has(v, "upgrade")) hp->conn_upgrade = true;
  } else if (strcasecmp(f, "upgrade") == 0) {
    if (list_has(v, "websocket")) hp->upgrade_ws = true;
  }
  tern_buf_reset(&hp->field);
  tern_buf_reset(&hp->value);
  return 0;
}

static int hp_on_headers_complete(llhttp_t *p) {
  tern_client_http_parser *hp = hp_of(p);
  hp->status = p->status_code;
  hp->head_done = true;
  hp->sinking = hp->sink && hp->status >= 200 && hp->status < 300;
  /* Refuse a body that cannot fit before reading any of it. */
  if (!hp->sinking && (p->flags & F_CONTENT_LENGTH) && p->content_length > hp->max_body) return -1;
  return 0;
}

static int hp_on_body(llhttp_t *p, const char *at, size_t len) {
  tern_client_http_parser *hp = hp_of(p);
  if (hp->sinking) {
    int rc = hp->sink(at, len, hp->sink_arg);
    if (rc < 0) {
      hp->sink_err = rc;
      return -1;
    }
    return 0;
  }
  if (hp->body.len + len > hp->max_body) return -1;
  tern_buf_append(&hp->body, at, len);
  return 0;
}

static int hp_on_message_complete(llhttp_t *p) {
  tern_client_http_parser *hp = hp_of(p);
  hp->done = true;
  if (hp->status == 101) hp->upgrade = true;
  /* Whatever follows is not ours to parse (an upgraded stream, or nothing). */
  return HPE_PAUSED;
}

static const llhttp_settings_t *hp_settings(void) {
  static llhttp_settings_t s;
  static bool init;
  if (!init) {
    llhttp_settings_init(&s);
    s.on_header_field = hp_on_field;
    s.on_header_value = hp_on_value;
    s.on_header_value_complete = hp_on_value_complete;
    s.on_headers_complete = hp_on_headers_complete;
    s.on_body = hp_on_body;
    s.on_message_complete = hp_on_message_complete;
    init = true;
  }
  return &s;
}

void tern_client_hp_init(tern_client_http_parser *hp, size_t max_body) {
  memset(hp, 0, sizeof *hp);
  llhttp_init(&hp->p, HTTP_RESPONSE, hp_settings());
  hp->p.data = hp;
  hp->max_head = HP_MAX_HEAD;
  hp->max_body = max_body;
}

void tern_client_hp_free(tern_client_http_parser *hp) {
  tern_buf_free(&hp->field);
  tern_buf_free(&hp->value);
  tern_buf_free(&hp->body);
}

ssize_t tern_client_hp_feed(tern_client_http_parser *hp, const char *data, size_t len) {
  if (hp->done) return 0;
  llhttp_errno_t e = llhttp_execute(&hp->p, data, len);
  if (e == HPE_OK) return (ssize_t)len;
  if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && hp->done) {
    const char *pos = llhttp_get_error_pos(&hp->p);
    if (!pos || pos < data || pos > data + len) return (ssize_t)len;
    return pos - data;
  }
  return -EBADMSG;
}

int tern_client_hp_eof(tern_client_http_parser *hp) {
  if (hp->done) return 0;
  if (!hp->head_done) return -EBADMSG;
  llhttp_errno_t e = llhttp_finish(&hp->p);
  if ((e == HPE_OK || e == HPE_PAUSED) && hp->done) return 0;
  return -EBADMSG;
}

/* ---- responses ---- */

static void set_str(char *dst, size_t cap, const char *s) { snprintf(dst, cap, "%s", s); }

void tern_client_response_from_parser(tern_client_response *r, tern_client_http_parser *hp) {
  memset(r, 0, sizeof *r);
  r->status = hp->status;
  r->ok = hp->status >= 200 && hp->status < 300;
  set_str(r->retry_after, sizeof r->retry_after, hp->retry_after);
  set_str(r->etag, sizeof r->etag, hp->etag);
  tern_client_json_hooks();
  tern_buf_cstr(&hp->body);
  r->body = tern_buf_steal(&hp->body, &r->body_len);
  if (r->body_len) r->json = cJSON_ParseWithLength(r->body, r->body_len);
  if (r->ok) return;
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
  const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
  const cJSON *user = cJSON_GetObjectItemCaseSensitive(e, "user");
  if (cJSON_IsString(code) && cJSON_IsString(msg)) {
    set_str(r->code, sizeof r->code, code->valuestring);
    set_str(r->message, sizeof r->message, msg->valuestring);
    if (cJSON_IsString(user)) set_str(r->user, sizeof r->user, user->valuestring);
  } else {
    set_str(r->code, sizeof r->code, "bad_response");
    snprintf(r->message, sizeof r->message, "HTTP status %d without a tern error body", r->status);
  }
}

void tern_client_response_fail(tern_client_response *r, int err, const char *what) {
  memset(r, 0, sizeof *r);
  r->err = err;
  r->body = tern_strdup("");
  if (err == -EBADMSG) {
    set_str(r->code, sizeof r->code, "bad_response");
    snprintf(r->message, sizeof r->message, "%s: the server's answer is not valid HTTP", what);
  } else {
    set_str(r->code, sizeof r->code, "network");
    /* uv_strerror_r: err may be ours (TERN_TLS_ERR_UNTRUSTED), and uv_strerror allocates, and
     * never frees, the text of a code libuv does not know */
    char why[128];
    snprintf(r->message, sizeof r->message, "%s: %s", what, uv_strerror_r(err, why, sizeof why));
  }
}

void tern_client_response_move(tern_client_response *dst, tern_client_response *src) {
  *dst = *src;
  src->body = NULL;
  src->body_len = 0;
  src->json = NULL;
}

void tern_client_response_free(tern_client_response *r) {
  tern_free(r->body);
  cJSON_Delete(r->json);
  r->body = NULL;
  r->body_len = 0;
  r->json = NULL;
}

/* ---- requests ---- */

typedef struct tern_client_http_req {
  tern_client *c;                      /* the context */
  struct tern_client_http_req *prev;   /* in c->reqs */
  struct tern_client_http_req *next;
  tern_stream *st;                     /* the connection, until its close callback */
  uv_timer_t timer;                    /* the request's deadline */
  tern_client_dial *dial;              /* while connecting */
  tern_buf out;                        /* the request's bytes, until connected */
  tern_client_http_parser hp;          /* the response */
  tern_client_http_cb cb;              /* called once */
  void (*drop)(void *arg);             /* called instead when the context is freed first */
  void *arg;
  char what[64];                       /* "POST /v1/login", for error messages */
  int open_handles;                    /* stream and timer until their close callbacks ran */
  bool finished;                       /* the callback was called (or dropped) */
} tern_client_http_req;

static void req_closed(tern_client_http_req *q) {
  if (--q->open_handles > 0) return;
  tern_client *c = q->c;
  if (q->prev) q->prev->next = q->next;
  else c->reqs = q->next;
  if (q->next) q->next->prev = q->prev;
  tern_buf_free(&q->out);
  tern_client_hp_free(&q->hp);
  tern_free(q);
  tern_client_maybe_done(c);
}

static void req_timer_closed(uv_handle_t *h) { req_closed(h->data); }

static void req_stream_closed(tern_stream *st, void *owner) {
  tern_client_http_req *q = owner;
  q->st = NULL;
  req_closed(q);
}

/* Ends the request: calls back (unless silent), then closes its stream and timer. */
static void req_finish(tern_client_http_req *q, int err, bool silent) {
  if (q->finished) return;
  q->finished = true;
  if (q->dial) {
    tern_client_dial_cancel(q->dial);
    q->dial = NULL;
  }
  if (!silent && !q->c->freeing) {
    tern_client_response r;
    if (err) tern_client_response_fail(&r, err, q->what);
    else tern_client_response_from_parser(&r, &q->hp);
    q->cb(&r, q->arg);
    tern_client_response_free(&r);
  }
  tern_stream_close(q->st);
  uv_close((uv_handle_t *)&q->timer, req_timer_closed);
}

static void req_on_timeout(uv_timer_t *t) { req_finish(t->data, UV_ETIMEDOUT, false); }

static size_t req_on_data(tern_stream *st, char *data, size_t len, void *owner) {
  tern_client_http_req *q = owner;
  if (q->finished) return len;
  ssize_t used = tern_client_hp_feed(&q->hp, data, len);
  if (used < 0) req_finish(q, q->hp.sink_err ? q->hp.sink_err : -EBADMSG, false);
  else if (q->hp.done) req_finish(q, 0, false);
  return len; /* one response per connection: nothing after it is ours */
}

static void req_on_end(tern_stream *st, int err, bool write, void *owner) {
  tern_client_http_req *q = owner;
  if (q->finished) return;
  if (write) req_finish(q, err, false);
  else if (err == UV_EOF)
    req_finish(q, tern_client_hp_eof(&q->hp) == 0 ? 0 : (q->hp.head_done ? -EBADMSG : UV_ECONNRESET), false);
  else req_finish(q, err, false);
}

static const tern_stream_cbs req_cbs = {
    .on_data = req_on_data,
    .on_end = req_on_end,
    .on_close = req_stream_closed,
};

static void req_on_connect(void *owner, int status) {
  tern_client_http_req *q = owner;
  q->dial = NULL;
  if (status < 0) {
    req_finish(q, status, false);
    return;
  }
  tern_stream_write_buf(q->st, &q->out);
  char why[128];
  int rc = tern_stream_start(q->st, why, sizeof why);
  if (rc < 0) req_finish(q, rc, false);
}

int tern_client_http(tern_client *c, const tern_client_url *url, const tern_client_request *req,
                     tern_client_http_cb cb, void *arg) {
  return tern_client_http_ex(c, url, req, cb, NULL, arg);
}

int tern_client_http_ex(tern_client *c, const tern_client_url *url, const tern_client_request *req,
                        tern_client_http_cb cb, void (*drop)(void *arg), void *arg) {
  if (!c || !url || !req || !req->method || !req->path || !cb || req->path[0] != '/') return -EINVAL;
  if (c->freeing) return -ECANCELED;
  if (strpbrk(req->path, " \r\n") || strpbrk(req->method, " \r\n") ||
      (req->token && strpbrk(req->token, "\r\n")) || (req->content_type && strpbrk(req->content_type, "\r\n")))
    return -EINVAL;
  char why[256];
  const tern_stream_transport *tp;
  tern_tls_config tc = {0};
  int err = tern_client_transport(c, url, &tp, &tc, why, sizeof why);
  if (err < 0) return err;
  tern_client_http_req *q = TERN_NEW(tern_client_http_req);
  err = tern_stream_open(c->sl, tp, tc.tls ? &tc : NULL, &req_cbs, q, &q->st, why, sizeof why);
  if (err < 0) {
    tern_free(q);
    return err;
  }
  q->c = c;
  q->cb = cb;
  q->drop = drop;
  q->arg = arg;
  snprintf(q->what, sizeof q->what, "%s %s", req->method, req->path);
  tern_client_hp_init(&q->hp, HTTP_MAX_BODY);
  q->hp.sink = req->on_body;
  q->hp.sink_arg = req->body_arg;
  tern_buf *o = &q->out;
  tern_buf_printf(o, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tern-client\r\nAccept: application/json\r\n",
                  req->method, req->path, url->hostport);
  if (req->token) tern_buf_printf(o, "Authorization: Bearer %s\r\n", req->token);
  if (req->body || strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
    if (req->body)
      tern_buf_printf(o, "Content-Type: %s\r\n", req->content_type ? req->content_type : "application/json");
    tern_buf_printf(o, "Content-Length: %zu\r\n", req->body ? req->body_len : 0);
  }
  /* One request per connection: the server closes after answering, so nothing lingers. */
  tern_buf_puts(o, "Connection: close\r\n\r\n");
  if (req->body) tern_buf_append(o, req->body, req->body_len);

  uv_timer_init(c->loop, &q->timer);
  q->timer.data = q;
  q->open_handles = 2;
  q->next = c->reqs;
  if (c->reqs) c->reqs->prev = q;
  c->reqs = q;
  q->dial = tern_client_dial_start(tern_stream_handle(q->st), url->host, url->port, NULL, req_on_connect, q, &err);
  if (!q->dial) {
    req_finish(q, err, true);
    return err;
  }
  uv_timer_start(&q->timer, req_on_timeout, (uint64_t)c->opts.http_timeout_ms, 0);
  return 0;
}

void tern_client_http_abort_all(tern_client *c) {
  for (tern_client_http_req *q = c->reqs; q; q = q->next) {
    if (!q->finished && q->drop) q->drop(q->arg);
    req_finish(q, 0, true);
  }
}

/* ---- the API calls ---- */

static int post_credentials(tern_client *c, const tern_client_url *url, const char *path, const char *user,
                            const char *password, const char *device, tern_client_http_cb cb, void *arg) {
  if (!user || !password) return -EINVAL;
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"username\":");
  tern_buf_put_json_str(&b, user, strlen(user));
  tern_buf_puts(&b, ",\"password\":");
  tern_buf_put_json_str(&b, password, strlen(password));
  if (device) {
    tern_buf_puts(&b, ",\"device\":");
    tern_buf_put_json_str(&b, device, strlen(device));
  }
  tern_buf_putc(&b, '}');
  tern_client_request req = {.method = "POST", .path = path, .body = b.data, .body_len = b.len};
  int rc = tern_client_http(c, url, &req, cb, arg);
  /* The password was copied into the request; do not leave it in freed memory. */
  memset(b.data, 0, b.len);
  tern_buf_free(&b);
  return rc;
}

int tern_client_register(tern_client *c, const tern_client_url *url, const char *user, const char *password,
                         const char *device, tern_client_http_cb cb, void *arg) {
  return post_credentials(c, url, "/v1/register", user, password, device, cb, arg);
}

int tern_client_login(tern_client *c, const tern_client_url *url, const char *user, const char *password,
                      const char *device, tern_client_http_cb cb, void *arg) {
  return post_credentials(c, url, "/v1/login", user, password, device, cb, arg);
}

int tern_client_logout(tern_client *c, const tern_client_url *url, const char *token, tern_client_http_cb cb,
                       void *arg) {
  if (!token) return -EINVAL;
  tern_client_request req = {.method = "POST", .path = "/v1/logout", .token = token};
  return tern_client_http(c, url, &req, cb, arg);
}

int tern_client_me(tern_client *c, const tern_client_url *url, const char *token, tern_client_http_cb cb, void *arg) {
  if (!token) return -EINVAL;
  tern_client_request req = {.method = "GET", .path = "/v1/me", .token = token};
  return tern_client_http(c, url, &req, cb, arg);
}

void tern_client_path_escape(tern_buf *out, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                 *p == '.' || *p == '_' || *p == '~';
    if (plain) {
      tern_buf_putc(out, (char)*p);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      tern_buf_append(out, e, 3);
    }
  }
}

int tern_client_whois(tern_client *c, const tern_client_url *url, const char *token, const char *user,
                      tern_client_http_cb cb, void *arg) {
  if (!token || !user || !*user || strlen(user) > 256) return -EINVAL;
  tern_buf path = {0};
  tern_buf_puts(&path, "/v1/users/");
  tern_client_path_escape(&path, user);
  tern_client_request req = {.method = "GET", .path = tern_buf_cstr(&path), .token = token};
  int rc = tern_client_http(c, url, &req, cb, arg);
  tern_buf_free(&path);
  return rc;
}

int tern_client_upload_media(tern_client *c, const tern_client_url *url, const char *token, const char *mime,
                             const void *bytes, size_t len, tern_client_http_cb cb, void *arg) {
  if (!token || !mime || !bytes || !len) return -EINVAL;
  tern_client_request req = {.method = "POST", .path = "/v1/media", .token = token, .content_type = mime,
                             .body = bytes, .body_len = len};
  return tern_client_http(c, url, &req, cb, arg);
}

const char *tern_client_sniff_image(const void *p, size_t n) {
  const unsigned char *b = p;
  if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return "image/jpeg";
  if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return "image/png";
  if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return "image/gif";
  if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return "image/webp";
  return NULL;
}

static uint32_t be16(const unsigned char *b) { return (uint32_t)b[0] << 8 | b[1]; }
static uint32_t le16(const unsigned char *b) { return (uint32_t)b[1] << 8 | b[0]; }

int tern_client_image_size(const void *p, size_t n, int64_t *w, int64_t *h) {
  const unsigned char *b = p;
  const char *mime = tern_client_sniff_image(p, n);
  *w = *h = -1;
  if (!mime) return -EINVAL;
  if (strcmp(mime, "image/png") == 0 && n >= 24 && memcmp(b + 12, "IHDR", 4) == 0) {
    *w = (int64_t)(be16(b + 16) << 16 | be16(b + 18));
    *h = (int64_t)(be16(b + 20) << 16 | be16(b + 22));
  } else if (strcmp(mime, "image/gif") == 0 && n >= 10) {
    *w = le16(b + 6);
    *h = le16(b + 8);
  } else if (strcmp(mime, "image/jpeg") == 0) {
    /* Walk the markers to the first start-of-frame (SOF0..SOF15 but DHT, JPG, DAC). */
    size_t i = 2;
    while (i + 9 < n) {
      if (b[i] != 0xff) return -EBADMSG;
      unsigned m = b[i + 1];
      if (m == 0xff) {
        i++;
        continue;
      }
      size_t len = be16(b + i + 2);
      if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
        *h = be16(b + i + 5);
        *w = be16(b + i + 7);
        break;
      }
      if (len < 2) return -EBADMSG;
      i += 2 + len;
    }
  } else if (strcmp(mime, "image/webp") == 0 && n >= 30) {
    if (memcmp(b + 12, "VP8 ", 4) == 0) {
      *w = le16(b + 26) & 0x3fff;
      *h = le16(b + 28) & 0x3fff;
    } else if (memcmp(b + 12, "VP8L", 4) == 0 && n >= 25) {
      uint32_t v = (uint32_t)b[21] | (uint32_t)b[22] << 8 | (uint32_t)b[23] << 16 | (uint32_t)b[24] << 24;
      *w = (int64_t)(v & 0x3fff) + 1;
      *h = (int64_t)((v >> 14) & 0x3fff) + 1;
    } else if (memcmp(b + 12, "VP8X", 4) == 0) {
      *w = (int64_t)((uint32_t)b[24] | (uint32_t)b[25] << 8 | (uint32_t)b[26] << 16) + 1;
      *h = (int64_t)((uint32_t)b[27] | (uint32_t)b[28] << 8 | (uint32_t)b[29] << 16) + 1;
    }
  }
  return *w > 0 && *h > 0 ? 0 : -EBADMSG;
}

static int copy_field(char *dst, size_t cap, const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap || !v->valuestring[0]) return -EBADMSG;
  memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
  return 0;
}

int tern_client_parse_account(const tern_client_response *r, tern_client_account *out) {
  memset(out, 0, sizeof *out);
  if (!r->ok || !cJSON_IsObject(r->json)) return -EBADMSG;
  if (copy_field(out->user, sizeof out->user, r->json, "user") < 0 ||
      copy_field(out->device_id, sizeof out->device_id, r->json, "device_id") < 0 ||
      copy_field(out->token, sizeof out->token, r->json, "token") < 0)
    return -EBADMSG;
  return 0;
}

int tern_client_parse_media(const tern_client_response *r, tern_client_media *out) {
  memset(out, 0, sizeof *out);
  if (!r->ok || !cJSON_IsObject(r->json)) return -EBADMSG;
  if (copy_field(out->media_id, sizeof out->media_id, r->json, "media_id") < 0 ||
      copy_field(out->mime, sizeof out->mime, r->json, "mime") < 0)
    return -EBADMSG;
  const cJSON *sha = cJSON_GetObjectItemCaseSensitive(r->json, "sha256");
  if (cJSON_IsString(sha) && strlen(sha->valuestring) < sizeof out->sha256) strcpy(out->sha256, sha->valuestring);
  const char *keys[] = {"size", "width", "height"};
  int64_t *vals[] = {&out->size, &out->width, &out->height};
  for (int i = 0; i < 3; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->json, keys[i]);
    if (!cJSON_IsNumber(v)) return -EBADMSG;
    *vals[i] = (int64_t)v->valuedouble;
  }
  return 0;
}

int tern_client_parse_user_status(const tern_client_response *r, tern_client_user_status *out) {
  memset(out, 0, sizeof *out);
  out->last_seen = -1;
  if (!r->ok || !cJSON_IsObject(r->json)) return -EBADMSG;
  if (copy_field(out->user, sizeof out->user, r->json, "user") < 0) return -EBADMSG;
  out->online = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "online"));
  const cJSON *ls = cJSON_GetObjectItemCaseSensitive(r->json, "last_seen");
  if (cJSON_IsNumber(ls)) out->last_seen = (int64_t)ls->valuedouble;
  /* v1.1 (PROTOCOL.md 15); an older server has neither */
  (void)copy_field(out->display_name, sizeof out->display_name, r->json, "display_name");
  (void)copy_field(out->avatar, sizeof out->avatar, r->json, "avatar");
  return 0;
}

/* ---- synchronous wrapper ---- */

typedef struct sync_state {
  tern_client_response *out; /* where the answer goes */
  bool done;                 /* the callback ran */
} sync_state;

static void sync_cb(tern_client_response *r, void *arg) {
  sync_state *st = arg;
  tern_client_response_move(st->out, r);
  st->done = true;
}

int tern_client_http_sync(const tern_client_url *url, const tern_client_request *req, int64_t timeout_ms,
                          tern_client_response *out) {
  memset(out, 0, sizeof *out);
  uv_loop_t loop;
  int rc = uv_loop_init(&loop);
  if (rc < 0) {
    tern_client_response_fail(out, rc, "event loop");
    return -1;
  }
  tern_client_options o = {.http_timeout_ms = timeout_ms};
  tern_client *c = tern_client_new(&loop, &o);
  sync_state st = {.out = out};
  rc = tern_client_http(c, url, req, sync_cb, &st);
  if (rc < 0) tern_client_response_fail(out, rc, req->path ? req->path : "request");
  else uv_run(&loop, UV_RUN_DEFAULT);
  tern_client_free(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (rc == 0 && !st.done) tern_client_response_fail(out, UV_ECANCELED, "request");
  return out->ok ? 0 : -1;
}
