/* Unit tests for the server's HTTP request parser (src/net/http.c). */
#include <string.h>

#include "base/alloc.h"
#include "net/httpreq.h"
#include "t.h"

static int64_t limit_100(tern_http_req *req, void *arg) { return 100; }

/* Feeds s (in chunks of `chunk` bytes, 0 = all at once) until a result other than MORE. */
static tern_http_status feed(tern_http_parser *p, const char *s, size_t chunk, size_t *consumed, int *status) {
  size_t len = strlen(s), off = 0;
  tern_buf pending = {0};
  tern_http_status st = TERN_HTTP_MORE;
  *consumed = 0;
  while (off < len || pending.len) {
    size_t n = chunk ? (chunk < len - off ? chunk : len - off) : len - off;
    tern_buf_append(&pending, s + off, n);
    off += n;
    size_t used;
    st = tern_http_parser_execute(p, pending.data, pending.len, &used, status);
    *consumed += used;
    tern_buf_consume(&pending, used);
    if (st != TERN_HTTP_MORE || off >= len) break;
  }
  tern_buf_free(&pending);
  return st;
}

TEST(simple_get) {
  tern_http_parser *p = tern_http_parser_new(4096, 1024, NULL, NULL, NULL);
  size_t used;
  int status;
  const char *req = "GET /v1/users/bob?x=1&y=2 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer T1\r\n"
                    "Authorization: Bearer T2\r\nAccept-Encoding: gzip\r\n\r\n";
  CHECK_EQ_INT(feed(p, req, 0, &used, &status), TERN_HTTP_REQUEST);
  CHECK_EQ_INT(used, strlen(req));
  tern_http_req *r = tern_http_parser_take(p);
  CHECK(r != NULL);
  CHECK_EQ_STR(r->method, "GET");
  CHECK_EQ_STR(r->path, "/v1/users/bob");
  CHECK_EQ_STR(r->query, "x=1&y=2");
  CHECK_EQ_STR(r->authorization, "Bearer T1"); /* the first of repeated headers counts */
  CHECK_EQ_STR(r->accept_encoding, "gzip");
  CHECK(r->keep_alive);
  CHECK_EQ_INT(r->content_length, -1);
  CHECK(tern_http_parser_take(p) == NULL); /* taken once */
  tern_http_req_free(r);
  tern_http_parser_free(p);
}

TEST(byte_at_a_time_and_pipelining) {
  const char *two = "POST /v1/login HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /healthz HTTP/1.1\r\n\r\n";
  for (size_t chunk = 0; chunk <= 7; chunk++) {
    tern_http_parser *p = tern_http_parser_new(4096, 1024, NULL, NULL, NULL);
    size_t used;
    int status;
    CHECK_EQ_INT(feed(p, two, chunk, &used, &status), TERN_HTTP_REQUEST);
    tern_http_req *r = tern_http_parser_take(p);
    CHECK_EQ_STR(r->path, "/v1/login");
    CHECK_EQ_INT(r->body.len, 5);
    CHECK(memcmp(r->body.data, "hello", 5) == 0);
    CHECK_EQ_INT(r->content_length, 5);
    tern_http_req_free(r);
    /* paused: nothing more is parsed until resume */
    size_t u2;
    CHECK_EQ_INT(tern_http_parser_execute(p, two + used, strlen(two) - used, &u2, &status), TERN_HTTP_REQUEST);
    CHECK_EQ_INT(u2, 0);
    tern_http_parser_resume(p);
    CHECK_EQ_INT(tern_http_parser_execute(p, two + used, strlen(two) - used, &u2, &status), TERN_HTTP_REQUEST);
    CHECK_EQ_INT(used + u2, strlen(two));
    r = tern_http_parser_take(p);
    CHECK_EQ_STR(r->path, "/healthz");
    tern_http_req_free(r);
    tern_http_parser_free(p);
  }
}

TEST(upgrade_leaves_frames) {
  tern_http_parser *p = tern_http_parser_new(4096, 1024, NULL, NULL, NULL);
  const char *req = "GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nFRAMES";
  size_t used;
  int status;
  CHECK_EQ_INT(tern_http_parser_execute(p, req, strlen(req), &used, &status), TERN_HTTP_UPGRADE);
  CHECK_EQ_STR(req + used, "FRAMES");
  CHECK(tern_http_parser_ws_ok(p));
  CHECK_EQ_STR(tern_http_parser_ws_key(p), "dGhlIHNhbXBsZSBub25jZQ==");
  tern_http_req *r = tern_http_parser_take(p);
  CHECK_EQ_STR(r->path, "/v1/ws");
  tern_http_req_free(r);
  tern_http_parser_free(p);

  p = tern_http_parser_new(4096, 1024, NULL, NULL, NULL);
  const char *v12 = "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: x\r\nSec-WebSocket-Version: 12\r\n\r\n";
  CHECK_EQ_INT(tern_http_parser_execute(p, v12, strlen(v12), &used, &status), TERN_HTTP_UPGRADE);
  CHECK(!tern_http_parser_ws_ok(p)); /* only version 13 */
  tern_http_parser_free(p);
}

TEST(limits) {
  size_t used;
  int status;
  /* announced body over the limit: refused before the body */
  tern_http_parser *p = tern_http_parser_new(4096, 1024, limit_100, NULL, NULL);
  CHECK_EQ_INT(feed(p, "POST /x HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 0, &used, &status), TERN_HTTP_BAD);
  CHECK_EQ_INT(status, 413);
  tern_http_parser_free(p);
  /* exactly at the limit is fine */
  p = tern_http_parser_new(4096, 1024, limit_100, NULL, NULL);
  char buf[512];
  snprintf(buf, sizeof buf, "POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\n%0100d", 0);
  CHECK_EQ_INT(feed(p, buf, 0, &used, &status), TERN_HTTP_REQUEST);
  CHECK_EQ_INT(tern_http_parser_body_limit(p), 100);
  tern_http_parser_free(p);
  /* a chunked body is refused as soon as it passes the limit */
  p = tern_http_parser_new(4096, 1024, limit_100, NULL, NULL);
  snprintf(buf, sizeof buf, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n%0101d\r\n0\r\n\r\n", 0);
  CHECK_EQ_INT(feed(p, buf, 0, &used, &status), TERN_HTTP_BAD);
  CHECK_EQ_INT(status, 413);
  tern_http_parser_free(p);
  /* a head over max_header */
  p = tern_http_parser_new(64, 1024, NULL, NULL, NULL);
  CHECK_EQ_INT(feed(p, "GET / HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n", 3, &used,
                    &status),
               TERN_HTTP_BAD);
  CHECK_EQ_INT(status, 431);
  tern_http_parser_free(p);
  /* garbage */
  p = tern_http_parser_new(4096, 1024, NULL, NULL, NULL);
  CHECK_EQ_INT(feed(p, "GARBAGE\r\n\r\n", 0, &used, &status), TERN_HTTP_BAD);
  CHECK_EQ_INT(status, 400);
  tern_http_parser_free(p);
}

TEST(expect_continue) {
  size_t used;
  int status;
  tern_http_parser *p = tern_http_parser_new(4096, 1024, NULL, NULL, NULL);
  CHECK_EQ_INT(feed(p, "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", 0, &used, &status),
               TERN_HTTP_MORE);
  CHECK(tern_http_parser_take_continue(p));
  CHECK(!tern_http_parser_take_continue(p)); /* once */
  CHECK_EQ_INT(tern_http_parser_execute(p, "abc", 3, &used, &status), TERN_HTTP_REQUEST);
  tern_http_parser_free(p);
  /* refused from the head: no 100, the final answer instead */
  p = tern_http_parser_new(4096, 1024, limit_100, NULL, NULL);
  CHECK_EQ_INT(feed(p, "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 500\r\n\r\n", 0, &used, &status),
               TERN_HTTP_BAD);
  CHECK(!tern_http_parser_take_continue(p));
  tern_http_parser_free(p);
  /* no Expect header: no 100 */
  p = tern_http_parser_new(4096, 1024, NULL, NULL, NULL);
  CHECK_EQ_INT(feed(p, "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 0, &used, &status), TERN_HTTP_MORE);
  CHECK(!tern_http_parser_take_continue(p));
  tern_http_parser_free(p);
}

TEST(keep_alive) {
  size_t used;
  int status;
  tern_http_parser *p = tern_http_parser_new(4096, 1024, NULL, NULL, NULL);
  CHECK_EQ_INT(feed(p, "GET / HTTP/1.0\r\n\r\n", 0, &used, &status), TERN_HTTP_REQUEST);
  tern_http_req *r = tern_http_parser_take(p);
  CHECK(!r->keep_alive);
  tern_http_req_free(r);
  tern_http_parser_free(p);
  p = tern_http_parser_new(4096, 1024, NULL, NULL, NULL);
  CHECK_EQ_INT(feed(p, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0, &used, &status), TERN_HTTP_REQUEST);
  r = tern_http_parser_take(p);
  CHECK(!r->keep_alive);
  tern_http_req_free(r);
  tern_http_parser_free(p);
}

/* ---- body sinks ---- */
typedef struct sink_state {
  tern_buf got;   /* bytes received */
  int aborted;    /* abort calls */
  int answer;     /* what data returns */
} sink_state;
static sink_state g_sink;

static int sink_data(tern_http_req *req, const char *p, size_t n) {
  tern_buf_append(&g_sink.got, p, n);
  return g_sink.answer;
}
static void sink_abort(tern_http_req *req) { g_sink.aborted++; }
static const tern_http_sink test_sink = {sink_data, sink_abort};

static int64_t limit_with_sink(tern_http_req *req, void *arg) {
  req->sink = &test_sink;
  return 1000;
}

TEST(sink_streams_body) {
  size_t used;
  int status;
  memset(&g_sink, 0, sizeof g_sink);
  tern_http_parser *p = tern_http_parser_new(4096, 10, limit_with_sink, NULL, NULL);
  char buf[1200];
  snprintf(buf, sizeof buf, "POST /v1/media HTTP/1.1\r\nContent-Length: 500\r\n\r\n%0500d", 7);
  CHECK_EQ_INT(feed(p, buf, 13, &used, &status), TERN_HTTP_REQUEST);
  CHECK_EQ_INT(g_sink.got.len, 500); /* streamed, over the default limit of 10, under the sink's 1000 */
  tern_http_req *r = tern_http_parser_take(p);
  CHECK_EQ_INT(r->body.len, 0);
  tern_http_req_free(r);
  tern_http_parser_free(p);
  CHECK_EQ_INT(g_sink.aborted, 0); /* completed requests are not aborted */
  tern_buf_free(&g_sink.got);

  /* asking to pause is reported once */
  memset(&g_sink, 0, sizeof g_sink);
  g_sink.answer = 1;
  p = tern_http_parser_new(4096, 10, limit_with_sink, NULL, NULL);
  CHECK_EQ_INT(feed(p, "POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 0, &used, &status), TERN_HTTP_MORE);
  CHECK(tern_http_parser_take_pause(p));
  CHECK(!tern_http_parser_take_pause(p));
  tern_http_parser_free(p); /* mid-body: the sink hears it will never complete */
  CHECK_EQ_INT(g_sink.aborted, 1);
  tern_buf_free(&g_sink.got);

  /* a sink's refusal becomes the status; over the limit is 413 and aborts */
  memset(&g_sink, 0, sizeof g_sink);
  g_sink.answer = -415;
  p = tern_http_parser_new(4096, 10, limit_with_sink, NULL, NULL);
  CHECK_EQ_INT(feed(p, "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 0, &used, &status), TERN_HTTP_BAD);
  CHECK_EQ_INT(status, 415);
  tern_http_parser_free(p);
  CHECK_EQ_INT(g_sink.aborted, 1);
  tern_buf_free(&g_sink.got);
  memset(&g_sink, 0, sizeof g_sink);
  p = tern_http_parser_new(4096, 10, limit_with_sink, NULL, NULL);
  CHECK_EQ_INT(feed(p, "POST /x HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 0, &used, &status), TERN_HTTP_BAD);
  CHECK_EQ_INT(status, 413);
  tern_http_parser_free(p);
  CHECK_EQ_INT(g_sink.aborted, 1);
  tern_buf_free(&g_sink.got);
}

int main(void) {
  RUN(simple_get);
  RUN(byte_at_a_time_and_pipelining);
  RUN(upgrade_leaves_frames);
  RUN(limits);
  RUN(keep_alive);
  RUN(expect_continue);
  RUN(sink_streams_body);
  DONE();
}
