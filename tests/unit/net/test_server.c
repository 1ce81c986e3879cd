/* test_server: the net layer's server (src/net/server.c) on a real loop, listening on a free
 * loopback port, driven by raw client sockets: keep-alive and pipelining (also behind a request
 * answered later), an early 413 the client reads thanks to the lingering close, error bodies
 * rendered by the handlers' error_body or as plain text, an upgrade accepted and ones refused,
 * text frames both ways, outbound coalescing, the outbound-backlog close (1008), the auth and
 * idle timeout codes taken from the options, and a connection closed from inside its own
 * callback. The handlers here are the test's, not tern's: the net layer knows no protocol.
 * Nothing asserts a time; waits are bounded only so that a broken build fails, not hangs. */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "net/server.h"
#include "net/ws.h"
#include "sock.h"
#include "t.h"

/* ---- the server under test, with the test's handlers ---- */

typedef struct srv {
  uv_loop_t loop;
  uv_timer_t tick;       /* keeps UV_RUN_ONCE returning */
  tern_net *net;
  int port;
  bool render;           /* install error_body */
  bool auth_on_open;     /* mark WebSockets authenticated at once */
  int requests;          /* on_request calls */
  tern_http_req *held;   /* "/later": answered by the test */
  int opens, gones;      /* WebSocket opens and gones */
  tern_buf texts;        /* every text message received, ';'-separated */
  bool close_ok;         /* "close": the connection was closed from inside on_ws_text safely */
} srv;

static void h_request(tern_http_req *req, void *arg) {
  srv *sv = arg;
  sv->requests++;
  if (strcmp(req->path, "/later") == 0) {
    sv->held = req; /* pipelined requests wait for this answer */
    return;
  }
  if (strcmp(req->path, "/err") == 0) {
    tern_http_error(req, 409, "taken", "that name is taken");
    return;
  }
  tern_http_respond(req, 200, "X-Test: 1\r\n", "text/plain", req->path, strlen(req->path));
}

static bool h_ws_accept(tern_http_req *req, void *arg) {
  if (strcmp(req->path, "/ws") == 0) return true;
  if (strcmp(req->path, "/nope") == 0) {
    req->refuse_status = 403;
    req->refuse_code = "forbidden";
    req->refuse_message = "not here";
  }
  return false;
}

static void h_ws_open(tern_conn *c, void *arg) {
  srv *sv = arg;
  sv->opens++;
  if (sv->auth_on_open) tern_conn_set_authed(c);
}

static void h_ws_text(tern_conn *c, const char *d, size_t n, void *arg) {
  srv *sv = arg;
  tern_buf_append(&sv->texts, d, n);
  tern_buf_putc(&sv->texts, ';');
  if (n > 5 && memcmp(d, "echo:", 5) == 0) {
    tern_conn_ws_text(c, d + 5, n - 5);
  } else if (n == 5 && memcmp(d, "burst", 5) == 0) {
    for (int i = 0; i < 100; i++) {
      char f[16];
      snprintf(f, sizeof f, "f%03d", i);
      tern_part parts[2] = {{"burst-", 6}, {f, strlen(f)}};
      tern_conn_ws_text_parts(c, parts, 2);
    }
  } else if (n == 5 && memcmp(d, "flood", 5) == 0) {
    static char chunk[4096];
    memset(chunk, 'z', sizeof chunk);
    for (int i = 0; i < 256; i++) tern_conn_ws_text(c, chunk, sizeof chunk); /* 1 MiB at once */
  } else if (n == 5 && memcmp(d, "close", 5) == 0) {
    tern_conn_ws_close(c, TERN_WS_CLOSE_NORMAL, "bye");
    tern_conn_ws_text(c, "late", 4); /* dropped: the connection is closing */
    sv->close_ok = !tern_conn_is_open(c) && tern_conn_id(c) > 0;
  }
}

static void h_ws_gone(tern_conn *c, void *arg) {
  srv *sv = arg;
  sv->gones++;
}

static const char *h_error_body(tern_buf *out, int status, const char *code, const char *message, void *arg) {
  tern_buf_printf(out, "E %d %s %s", status, code ? code : "-", message);
  return "text/x-test";
}

static tern_net_options default_opts(void) {
  tern_net_options o = {
      .listen = "127.0.0.1:0",
      .max_header = 8192,
      .max_body = 1 << 20,
      .request_timeout_ms = 600000,
      .ws_max_message = 1 << 20,
      .ws_max_outbound = 8 << 20,
      .ws_ping_interval_ms = 600000,
      .ws_idle_timeout_ms = 600000,
      .ws_auth_timeout_ms = 600000,
      .max_connections = 100,
  };
  return o;
}

/* o NULL: default_opts(). */
static void srv_start(srv *sv, const tern_net_options *o, bool render) {
  tern_net_options d = default_opts();
  if (!o) o = &d;
  memset(sv, 0, sizeof *sv);
  sv->render = render;
  uv_loop_init(&sv->loop);
  sock_tick_start(&sv->loop, &sv->tick);
  tern_net_handlers h = {.on_request = h_request, .ws_accept = h_ws_accept, .on_ws_open = h_ws_open,
                         .on_ws_text = h_ws_text, .on_ws_gone = h_ws_gone,
                         .error_body = render ? h_error_body : NULL, .arg = sv};
  char err[256];
  CHECK_EQ_INT(tern_net_start(&sv->loop, o, &h, &sv->net, err, sizeof err), 0);
  const char *addr = tern_net_addr(sv->net);
  sv->port = atoi(strrchr(addr, ':') + 1);
  CHECK(sv->port > 0);
}

/* Waits until every connection has closed (a lingering one once the client closed too), then
 * frees the server and checks that nothing of it is left on the loop. */
static void srv_stop(srv *sv) {
  RUN_UNTIL(&sv->loop, tern_net_idle(sv->net));
  tern_net_stop_listening(sv->net);
  tern_net_free(sv->net);
  uv_close((uv_handle_t *)&sv->tick, NULL);
  uv_run(&sv->loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&sv->loop), 0); /* every handle of the net layer is closed */
  tern_buf_free(&sv->texts);
}

/* ---- raw clients ---- */

static int client_connect(srv *sv) {
  int fd = sock_connect(sv->port);
  RUN_UNTIL(&sv->loop, tern_net_connections(sv->net) > 0);
  return fd;
}

/* Reads until EOF or an error; returns 0 for EOF. */
static int client_read_to_end(srv *sv, int fd, tern_buf *into) {
  int r = 1;
  RUN_UNTIL(&sv->loop, (r = sock_recv(fd, into)) <= 0);
  return r;
}

static size_t count(const tern_buf *b, const char *needle) {
  size_t n = 0, nl = strlen(needle);
  for (size_t i = 0; i + nl <= b->len; i++)
    if (memcmp(b->data + i, needle, nl) == 0) n++;
  return n;
}

static const char *UPGRADE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="; /* RFC 6455's sample key */

static void upgrade_request(tern_buf *out, const char *path, bool with_key) {
  tern_buf_printf(out, "GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", path);
  if (with_key) tern_buf_printf(out, "Sec-WebSocket-Key: %s\r\n", UPGRADE_KEY);
  tern_buf_puts(out, "Sec-WebSocket-Version: 13\r\n\r\n");
}

/* A masked client text frame. */
static void client_frame(tern_buf *out, const char *text) {
  static const uint8_t mask[4] = {0x11, 0x22, 0x33, 0x44};
  tern_ws_append_frame(out, TERN_WS_OP_TEXT, true, text, strlen(text), mask);
}

/* A WebSocket client: the 101 head, then frames read with the codec's client-side reader. */
typedef struct wsc {
  int fd;
  tern_buf in;       /* bytes not parsed yet */
  bool upgraded;     /* the 101 head was read */
  tern_ws_reader r;
  tern_buf texts;    /* text messages, ';'-separated */
  int ntexts;
  uint16_t close_code;/* 0 until a close frame arrives */
  char close_reason[128];
  bool eof;
} wsc;

/* Reads and parses what is there. */
static void wsc_pump(wsc *w) {
  if (!w->eof && sock_recv(w->fd, &w->in) <= 0) w->eof = true;
  if (!w->upgraded) {
    const char *end = w->in.len ? memmem(w->in.data, w->in.len, "\r\n\r\n", 4) : NULL;
    if (!end) return;
    CHECK(memcmp(w->in.data, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
    CHECK(memmem(w->in.data, w->in.len, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", 52) != NULL);
    tern_buf_consume(&w->in, (size_t)(end + 4 - w->in.data));
    w->upgraded = true;
  }
  for (;;) {
    tern_ws_event ev;
    size_t used = tern_ws_read(&w->r, (uint8_t *)w->in.data, w->in.len, &ev);
    if (ev.type == TERN_WS_EV_MESSAGE) {
      tern_buf_append(&w->texts, ev.data, ev.len);
      tern_buf_putc(&w->texts, ';');
      w->ntexts++;
    } else if (ev.type == TERN_WS_EV_CLOSE) {
      w->close_code = ev.close_code;
      snprintf(w->close_reason, sizeof w->close_reason, "%.*s", (int)ev.len, (const char *)ev.data);
    }
    tern_buf_consume(&w->in, used); /* after the event: its data points into in */
    if (ev.type == TERN_WS_EV_NONE || ev.type == TERN_WS_EV_ERROR) break;
  }
}

/* Connects and upgrades; extra bytes (frames) may ride in the same packet as the request. */
static void wsc_open(srv *sv, wsc *w, const char *first_frame) {
  memset(w, 0, sizeof *w);
  tern_ws_reader_init(&w->r, false, UINT64_MAX);
  int opens = sv->opens;
  w->fd = client_connect(sv);
  tern_buf req = {0};
  upgrade_request(&req, "/ws", true);
  if (first_frame) client_frame(&req, first_frame);
  sock_send(w->fd, req.data, req.len);
  tern_buf_free(&req);
  RUN_UNTIL(&sv->loop, (wsc_pump(w), w->upgraded));
  CHECK_EQ_INT(sv->opens, opens + 1);
}

static void wsc_send(wsc *w, const char *text) {
  tern_buf f = {0};
  client_frame(&f, text);
  sock_send(w->fd, f.data, f.len);
  tern_buf_free(&f);
}

static void wsc_free(wsc *w) {
  close(w->fd);
  tern_buf_free(&w->in);
  tern_buf_free(&w->texts);
  tern_ws_reader_free(&w->r);
}

/* ---- tests ---- */

TEST(keep_alive_and_pipelining) {
  srv sv;
  srv_start(&sv, NULL, true);
  int fd = client_connect(&sv);
  tern_buf got = {0};
  /* two requests in one packet: two answers, in order, on the one connection */
  sock_puts(fd, "GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
  RUN_UNTIL(&sv.loop, (sock_recv(fd, &got), count(&got, "HTTP/1.1 200 OK") == 2));
  CHECK(buf_has(&got, "Content-Length: 2\r\nX-Test: 1\r\n\r\n/a"));
  const char *a = memmem(got.data, got.len, "\r\n\r\n/a", 6), *b = memmem(got.data, got.len, "\r\n\r\n/b", 6);
  CHECK(a && b && a < b);
  CHECK(!buf_has(&got, "Connection: close"));
  /* a request answered later holds the pipelined one behind it */
  tern_buf_reset(&got);
  sock_puts(fd, "GET /later HTTP/1.1\r\nHost: t\r\n\r\nGET /c HTTP/1.1\r\nHost: t\r\n\r\n");
  RUN_UNTIL(&sv.loop, sv.held != NULL);
  for (int i = 0; i < 20; i++) uv_run(&sv.loop, UV_RUN_NOWAIT);
  CHECK_EQ_INT(sv.requests, 3); /* /c waits for /later's answer */
  CHECK_EQ_INT(got.len, 0);
  tern_http_respond(sv.held, 200, NULL, "text/plain", "late", 4);
  sv.held = NULL;
  RUN_UNTIL(&sv.loop, (sock_recv(fd, &got), count(&got, "HTTP/1.1 200 OK") == 2));
  a = memmem(got.data, got.len, "\r\n\r\nlate", 8);
  b = memmem(got.data, got.len, "\r\n\r\n/c", 6);
  CHECK(a && b && a < b);
  CHECK_EQ_INT(sv.requests, 4);
  CHECK_EQ_INT(tern_net_connections(sv.net), 1); /* kept alive throughout */
  /* Connection: close: the answer says so, and the connection ends after it */
  tern_buf_reset(&got);
  sock_puts(fd, "GET /d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  CHECK_EQ_INT(client_read_to_end(&sv, fd, &got), 0);
  CHECK(buf_has(&got, "Connection: close\r\n"));
  CHECK(buf_has(&got, "\r\n\r\n/d"));
  close(fd);
  tern_buf_free(&got);
  srv_stop(&sv);
}

TEST(early_413_read_thanks_to_linger) {
  srv sv;
  tern_net_options o = default_opts();
  o.max_body = 1024;
  srv_start(&sv, &o, true);
  int fd = client_connect(&sv);
  /* A large upload: the head announces it, and the client goes on sending the body as an
   * uploading client does, while the server has refused it already. */
  sock_puts(fd, "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n");
  tern_buf got = {0};
  CHECK_EQ_INT(sock_push_until_end(&sv.loop, fd, 8u << 20, &got), 0); /* the answer, then a clean EOF: not a reset */
  CHECK(got.len > 12 && memcmp(got.data, "HTTP/1.1 413 Payload Too Large\r\n", 32) == 0);
  CHECK(buf_has(&got, "Content-Type: text/x-test\r\n"));
  CHECK(buf_has(&got, "Connection: close\r\n"));
  CHECK(buf_has(&got, "\r\n\r\nE 413 - the request body is larger than this endpoint accepts"));
  CHECK_EQ_INT(sv.requests, 0);
  close(fd);
  tern_buf_free(&got);
  srv_stop(&sv);
}

TEST(error_bodies_rendered_or_plain) {
  /* with error_body: the handlers' rendering, for the net layer's refusals and tern_http_error */
  srv sv;
  srv_start(&sv, NULL, true);
  int fd = client_connect(&sv);
  tern_buf got = {0};
  sock_puts(fd, "GET /err HTTP/1.1\r\nHost: t\r\n\r\n");
  RUN_UNTIL(&sv.loop, (sock_recv(fd, &got), buf_has(&got, "that name is taken")));
  CHECK(memcmp(got.data, "HTTP/1.1 409 Conflict\r\nContent-Type: text/x-test\r\n", 50) == 0);
  CHECK(buf_has(&got, "\r\n\r\nE 409 taken that name is taken"));
  tern_buf_reset(&got);
  sock_puts(fd, "BOGUS\r\n\r\n");
  CHECK_EQ_INT(client_read_to_end(&sv, fd, &got), 0);
  CHECK(memcmp(got.data, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
  CHECK(buf_has(&got, "\r\n\r\nE 400 - malformed HTTP request"));
  close(fd);
  srv_stop(&sv);

  /* without: plain text, the sentence and a newline */
  srv_start(&sv, NULL, false);
  fd = client_connect(&sv);
  tern_buf_reset(&got);
  sock_puts(fd, "GET /err HTTP/1.1\r\nHost: t\r\n\r\n");
  RUN_UNTIL(&sv.loop, (sock_recv(fd, &got), buf_has(&got, "that name is taken\n")));
  CHECK(buf_has(&got, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 19\r\n"));
  tern_buf_reset(&got);
  sock_puts(fd, "BOGUS\r\n\r\n");
  CHECK_EQ_INT(client_read_to_end(&sv, fd, &got), 0);
  CHECK(buf_has(&got, "\r\n\r\nmalformed HTTP request\n"));
  close(fd);
  tern_buf_free(&got);
  srv_stop(&sv);
}

TEST(upgrade_accepted_text_both_ways) {
  srv sv;
  srv_start(&sv, NULL, true);
  wsc w;
  wsc_open(&sv, &w, "echo:first"); /* a frame in the same packet as the handshake */
  RUN_UNTIL(&sv.loop, (wsc_pump(&w), w.ntexts == 1));
  wsc_send(&w, "echo:hello ✓");
  RUN_UNTIL(&sv.loop, (wsc_pump(&w), w.ntexts == 2));
  CHECK(w.texts.len && memcmp(w.texts.data, "first;hello ✓;", w.texts.len) == 0);
  CHECK_EQ_STR(tern_buf_cstr(&sv.texts), "echo:first;echo:hello ✓;");
  CHECK_EQ_INT(tern_net_ws_connections(sv.net), 1);
  wsc_free(&w);
  RUN_UNTIL(&sv.loop, sv.gones == 1 && tern_net_idle(sv.net));
  CHECK_EQ_INT(tern_net_ws_connections(sv.net), 0);
  srv_stop(&sv);
}

TEST(upgrade_refused_by_handler) {
  srv sv;
  srv_start(&sv, NULL, true);
  struct {
    const char *path;
    bool key;
    const char *want;
  } cases[] = {
      {"/nope", true, "HTTP/1.1 403 Forbidden\r\n"},  /* refused, with the handler's fields */
      {"/other", true, "HTTP/1.1 404 Not Found\r\n"}, /* refused, without */
      {"/ws", false, "HTTP/1.1 400 Bad Request\r\n"}, /* accepted, but no Sec-WebSocket-Key */
  };
  const char *bodies[] = {"E 403 forbidden not here", "E 404 - no WebSocket endpoint here",
                          "E 400 - a WebSocket upgrade needs HTTP/1.1, Upgrade: websocket"};
  for (int i = 0; i < 3; i++) {
    int fd = client_connect(&sv);
    tern_buf req = {0}, got = {0};
    upgrade_request(&req, cases[i].path, cases[i].key);
    sock_send(fd, req.data, req.len);
    CHECK_EQ_INT(client_read_to_end(&sv, fd, &got), 0);
    CHECK(got.len > strlen(cases[i].want) && memcmp(got.data, cases[i].want, strlen(cases[i].want)) == 0);
    CHECK(buf_has(&got, bodies[i]));
    close(fd);
    tern_buf_free(&req);
    tern_buf_free(&got);
  }
  RUN_UNTIL(&sv.loop, tern_net_idle(sv.net));
  CHECK_EQ_INT(sv.opens, 0);
  srv_stop(&sv);
}

TEST(frames_queued_in_one_iteration_leave_in_one_write) {
  srv sv;
  srv_start(&sv, NULL, true);
  wsc w;
  wsc_open(&sv, &w, NULL);
  tern_stream_stats before, after;
  tern_net_stream_stats(sv.net, &before);
  wsc_send(&w, "burst"); /* the handler queues 100 frames in one callback */
  RUN_UNTIL(&sv.loop, (wsc_pump(&w), w.ntexts == 100));
  tern_net_stream_stats(sv.net, &after);
  CHECK_EQ_INT(after.flushes - before.flushes, 1);
  CHECK_EQ_INT(after.writes - before.writes, 0); /* the socket took them at once */
  CHECK(buf_has(&w.texts, "burst-f000;burst-f001;"));
  CHECK(buf_has(&w.texts, "burst-f099;"));
  CHECK_EQ_INT(tern_net_connections(sv.net), 1);
  wsc_free(&w);
  srv_stop(&sv);
}

TEST(outbound_backlog_closes_1008) {
  srv sv;
  tern_net_options o = default_opts();
  o.ws_max_outbound = 64 * 1024;
  srv_start(&sv, &o, true);
  wsc w;
  wsc_open(&sv, &w, NULL);
  wsc_send(&w, "flood"); /* 1 MiB queued in one callback, past ws_max_outbound */
  RUN_UNTIL(&sv.loop, (wsc_pump(&w), w.close_code != 0));
  CHECK_EQ_INT(w.close_code, TERN_WS_CLOSE_POLICY);
  CHECK_EQ_STR(w.close_reason, "outbound backlog overflow");
  CHECK_EQ_INT(w.ntexts, 0); /* what was queued past the socket was dropped, whole frames only */
  CHECK_EQ_INT(sv.gones, 1);
  RUN_UNTIL(&sv.loop, (wsc_pump(&w), w.eof));
  wsc_free(&w);
  srv_stop(&sv);
}

/* A WebSocket left unauthenticated (idle false), or authenticated and then silent (idle true),
 * is closed with the code the options name. */
static void timeout_closes_with(bool idle, uint16_t code, const char *reason) {
  srv sv;
  tern_net_options o = default_opts();
  if (idle) {
    o.ws_idle_timeout_ms = 30;
    o.ws_idle_close_code = code;
  } else {
    o.ws_auth_timeout_ms = 30;
    o.ws_auth_close_code = code;
  }
  srv_start(&sv, &o, true);
  sv.auth_on_open = idle;
  wsc w;
  wsc_open(&sv, &w, NULL);
  RUN_UNTIL(&sv.loop, (wsc_pump(&w), w.close_code != 0));
  CHECK_EQ_INT(w.close_code, code);
  CHECK_EQ_STR(w.close_reason, reason);
  CHECK_EQ_INT(sv.gones, 1);
  wsc_free(&w);
  srv_stop(&sv);
}

TEST(auth_and_idle_timeout_codes_from_options) {
  timeout_closes_with(false, 4321, "not authenticated");
  timeout_closes_with(true, 4322, "idle timeout");
}

TEST(close_from_inside_its_own_callback) {
  srv sv;
  srv_start(&sv, NULL, true);
  wsc w;
  wsc_open(&sv, &w, NULL);
  wsc_send(&w, "echo:one");
  wsc_send(&w, "close");    /* the handler closes the connection inside on_ws_text */
  wsc_send(&w, "echo:two"); /* after it: never delivered */
  RUN_UNTIL(&sv.loop, (wsc_pump(&w), w.eof));
  CHECK(sv.close_ok);
  CHECK_EQ_INT(w.close_code, TERN_WS_CLOSE_NORMAL);
  CHECK_EQ_STR(w.close_reason, "bye");
  CHECK_EQ_STR(tern_buf_cstr(&w.texts), "one;");
  CHECK_EQ_STR(tern_buf_cstr(&sv.texts), "echo:one;close;");
  CHECK_EQ_INT(sv.gones, 1);
  wsc_free(&w);
  srv_stop(&sv);
}

int main(void) {
  RUN(keep_alive_and_pipelining);
  RUN(early_413_read_thanks_to_linger);
  RUN(error_bodies_rendered_or_plain);
  RUN(upgrade_accepted_text_both_ways);
  RUN(upgrade_refused_by_handler);
  RUN(frames_queued_in_one_iteration_leave_in_one_write);
  RUN(outbound_backlog_closes_1008);
  RUN(auth_and_idle_timeout_codes_from_options);
  RUN(close_from_inside_its_own_callback);
  DONE();
}
