/* test_push_coalesce: the coalescing windows of src/push/push.c with a shrunk push.coalesce,
 * delivered through the webhook provider to a tiny HTTP sink on the same loop:
 *   - 5 messages within a window make one notification with count 5, sent when it ends;
 *   - a device that connects during its window gets nothing;
 *   - a message after a window ended opens a new one;
 *   - the latest sender is the one named;
 *   - closing with windows open and notifications in flight calls no callback and leaks nothing
 *     (run it under ASan). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/config.h"
#include "base/log.h"
#include "push/push.h"
#include "t.h"

#define WINDOW_MS 300

/* ---- a minimal HTTP/1.1 sink: records bodies, answers 204, keeps the connection ---- */

typedef struct sink_conn {
  uv_tcp_t tcp;
  tern_buf in;
} sink_conn;

static uv_tcp_t g_listener;
static int g_port;
static char *g_bodies[64];
static int g_nbodies;

static void sink_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  buf->base = tern_malloc(65536);
  buf->len = 65536;
}

static void sink_closed(uv_handle_t *h) {
  sink_conn *c = h->data;
  tern_buf_free(&c->in);
  tern_free(c);
}

static void sink_written(uv_write_t *w, int status) { tern_free(w); }

static void sink_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  sink_conn *c = s->data;
  if (n < 0) {
    tern_free(buf->base);
    uv_close((uv_handle_t *)s, sink_closed);
    return;
  }
  tern_buf_append(&c->in, buf->base, (size_t)n);
  tern_free(buf->base);
  for (;;) {
    char *d = tern_buf_cstr(&c->in);
    char *end = strstr(d, "\r\n\r\n");
    if (!end) return;
    size_t head = (size_t)(end - d) + 4, clen = 0;
    for (char *p = d; p < end; p++) {
      if (!strncasecmp(p, "\ncontent-length:", 16)) clen = strtoul(p + 16, NULL, 10);
    }
    if (c->in.len < head + clen) return;
    if (g_nbodies < 64) g_bodies[g_nbodies++] = tern_strndup(d + head, clen);
    tern_buf_consume(&c->in, head + clen);
    static char resp[] = "HTTP/1.1 204 No Content\r\n\r\n";
    uv_write_t *w = TERN_NEW(uv_write_t);
    uv_buf_t b = uv_buf_init(resp, sizeof resp - 1);
    uv_write(w, s, &b, 1, sink_written);
  }
}

static void sink_accept(uv_stream_t *l, int status) {
  sink_conn *c = TERN_NEW(sink_conn);
  uv_tcp_init(l->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) == 0) uv_read_start((uv_stream_t *)&c->tcp, sink_alloc, sink_read);
  else uv_close((uv_handle_t *)&c->tcp, sink_closed);
}

static void sink_start(uv_loop_t *loop) {
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(loop, &g_listener);
  uv_tcp_bind(&g_listener, (struct sockaddr *)&a, 0);
  uv_listen((uv_stream_t *)&g_listener, 64, sink_accept);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(&g_listener, (struct sockaddr *)&ss, &len);
  g_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Closes what is left on the loop: the sink's connections (which own memory), the listener and
 * the scenario timer. */
static void close_any(uv_handle_t *h, void *arg) {
  if (uv_is_closing(h)) return;
  bool conn = h->type == UV_TCP && h != (uv_handle_t *)&g_listener;
  uv_close(h, conn ? sink_closed : NULL);
}

/* ---- the scenario ---- */

static uv_loop_t g_loop;
static tern_push *g_push;
static tern_push_reg g_reg[4];
static int g_results[TERN_PUSH_NRESULTS], g_step;
static char g_result_dev[8][8];
static uv_timer_t g_timer;

static void on_result(void *arg, const char *device_id, const tern_push_reg *reg, tern_push_result res) {
  if (g_results[0] + g_results[1] + g_results[2] + g_results[3] < 8)
    snprintf(g_result_dev[g_results[0] + g_results[1] + g_results[2] + g_results[3]], 8, "%s", device_id);
  g_results[res]++;
}

/* Replaces a string setting (defaults are allocated too). */
static void set_str(char **field, const char *v) {
  tern_free(*field);
  *field = tern_strdup(v);
}

static void make_reg(tern_push_reg *r, const char *token) {
  char body[128], err[256];
  snprintf(body, sizeof body, "{\"provider\":\"webhook\",\"token\":\"%s\"}", token);
  if (tern_push_reg_parse(g_push, body, strlen(body), r, err, sizeof err) < 0) {
    fprintf(stderr, "parse: %s\n", err);
    abort();
  }
}

/* Every 50 ms: A gets a message at 0..200 ms (5 of them, from bob then carol), B gets two and
 * comes online at 100 ms, C gets one at 0 and one at 400 (after its first window). */
static void step(uv_timer_t *t) {
  int ms = g_step++ * 50;
  if (ms <= 200 && ms % 50 == 0 && ms / 50 < 5) tern_push_offline_message(g_push, "A", &g_reg[0], ms < 200 ? "bob" : "carol", NULL, NULL, NULL);
  if (ms == 0 || ms == 50) tern_push_offline_message(g_push, "B", &g_reg[1], "bob", NULL, NULL, NULL);
  if (ms == 100) tern_push_device_online(g_push, "B");
  if (ms == 0 || ms == 400) tern_push_offline_message(g_push, "C", &g_reg[2], "dan", NULL, NULL, NULL);
  if (ms >= 1000) uv_timer_stop(t);
}

static int count_of(const char *body) {
  const char *p = strstr(body, "\"count\":");
  return p ? atoi(p + 8) : -1;
}

TEST(windows) {
  CHECK_EQ_INT(g_nbodies, 3); /* A once, C twice, B never */
  int a = 0, c = 0;
  for (int i = 0; i < g_nbodies; i++) {
    if (strstr(g_bodies[i], "\"token\":\"tok-A\"")) {
      a++;
      CHECK_EQ_INT(count_of(g_bodies[i]), 5);
      CHECK(strstr(g_bodies[i], "\"from\":\"carol\"") != NULL); /* the latest sender */
    } else if (strstr(g_bodies[i], "\"token\":\"tok-C\"")) {
      c++;
      CHECK_EQ_INT(count_of(g_bodies[i]), 1);
    } else {
      fprintf(stderr, "  unexpected push: %s\n", g_bodies[i]);
      CHECK(0);
    }
  }
  CHECK_EQ_INT(a, 1);
  CHECK_EQ_INT(c, 2);
  CHECK_EQ_INT(g_results[TERN_PUSH_OK], 3);
  CHECK_EQ_INT(g_results[TERN_PUSH_FAILED] + g_results[TERN_PUSH_INVALID_TOKEN] + g_results[TERN_PUSH_DROPPED], 0);
}

static int g_after_close_cb;
static void no_cb(void *arg, const char *device_id, const tern_push_reg *reg, tern_push_result res) { g_after_close_cb++; }

TEST(close_with_work_pending) {
  /* a window open and notifications queued and (after one loop turn) in flight, then close */
  tern_push_offline_message(g_push, "D", &g_reg[3], "erin", NULL, NULL, NULL);
  tern_push_note note = {.sender = "erin", .count = 1};
  for (int i = 0; i < 5; i++) CHECK_EQ_INT(tern_push_notify(g_push, "E", &g_reg[3], &note, no_cb, NULL), 0);
  uv_run(&g_loop, UV_RUN_NOWAIT);
  tern_push_stats st;
  tern_push_get_stats(g_push, &st);
  CHECK_EQ_INT(st.windows, 1);
  CHECK(st.pending == 5);
  tern_push_close(g_push);
  g_push = NULL;
  uv_walk(&g_loop, close_any, NULL);
  uv_run(&g_loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(g_after_close_cb, 0);
  CHECK_EQ_INT(uv_loop_close(&g_loop), 0);
}

int main(void) {
  tern_log_set_level(TERN_LOG_WARN);
  uv_loop_init(&g_loop);
  sink_start(&g_loop);
  tern_config cfg;
  tern_config_defaults(&cfg);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", g_port);
  set_str(&cfg.push_webhook_url, url);
  set_str(&cfg.push_webhook_secret, "0123456789abcdef0123");
  cfg.push_coalesce_ms = WINDOW_MS;
  char err[256];
  if (tern_push_open(&g_loop, &cfg, &g_push, err, sizeof err) < 0) {
    fprintf(stderr, "open: %s\n", err);
    return 1;
  }
  tern_config_free(&cfg);
  tern_push_set_result_cb(g_push, on_result, NULL);
  make_reg(&g_reg[0], "tok-A");
  make_reg(&g_reg[1], "tok-B");
  make_reg(&g_reg[2], "tok-C");
  make_reg(&g_reg[3], "tok-D");
  uv_timer_init(&g_loop, &g_timer);
  uv_timer_start(&g_timer, step, 0, 50);
  /* run until the scenario and every notification are done (about 1 s) */
  uint64_t start = uv_now(&g_loop);
  for (;;) {
    uv_run(&g_loop, UV_RUN_ONCE);
    tern_push_stats st;
    tern_push_get_stats(g_push, &st);
    if (g_step > 20 && st.pending == 0 && st.windows == 0) break;
    if (uv_now(&g_loop) - start > 10000) break;
  }
  RUN(windows);
  RUN(close_with_work_pending);
  for (int i = 0; i < 4; i++) tern_push_reg_free(&g_reg[i]);
  for (int i = 0; i < g_nbodies; i++) tern_free(g_bodies[i]);
  DONE();
}
