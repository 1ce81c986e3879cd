/* test_stream: the byte stream (src/net/stream.c) on a real loop, against raw client sockets
 * on loopback: the kept tail, coalesced writes, back-pressure, pause/resume with redelivery,
 * shutdown, the lingering close (the peer reads the answer, not a reset) and its deadline,
 * closes from inside the stream's own callbacks, and the transport seam (a counting transport
 * that wraps plain TCP, and one whose init fails). Nothing here asserts a time: waits are
 * bounded only so that a broken build fails instead of hanging. */
#include <errno.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "net/stream.h"
#include "sock.h"
#include "t.h"

/* ---- the counting transport: plain TCP underneath, counting the write operations ---- */

static int n_try_writes, n_writes;

static int cnt_init(tern_stream *s, const void *config, char *err, size_t errlen) {
  return tern_stream_transport_tcp.init(s, config, err, errlen);
}
static int cnt_read_start(tern_stream *s) { return tern_stream_transport_tcp.read_start(s); }
static void cnt_read_stop(tern_stream *s) { tern_stream_transport_tcp.read_stop(s); }
static int cnt_try_write(tern_stream *s, const char *p, size_t n) {
  n_try_writes++;
  return tern_stream_transport_tcp.try_write(s, p, n);
}
static int cnt_write(tern_stream *s, tern_buf *b) {
  n_writes++;
  return tern_stream_transport_tcp.write(s, b);
}
static int cnt_shutdown(tern_stream *s) { return tern_stream_transport_tcp.shutdown(s); }
static void cnt_close(tern_stream *s) { tern_stream_transport_tcp.close(s); }

static const tern_stream_transport counting = {
    .name = "counting",
    .init = cnt_init,
    .read_start = cnt_read_start,
    .read_stop = cnt_read_stop,
    .try_write = cnt_try_write,
    .write = cnt_write,
    .shutdown = cnt_shutdown,
    .close = cnt_close,
};

static int bad_init(tern_stream *s, const void *config, char *err, size_t errlen) {
  snprintf(err, errlen, "no such certificate");
  return -ENOENT;
}


/* ---- the owner of an accepted stream ---- */

typedef struct owner {
  tern_stream *s;     /* NULL once closed */
  tern_buf got;       /* what on_data consumed */
  int data_calls;     /* on_data calls */
  bool lines;         /* consume whole lines only */
  bool hold;          /* consume nothing and pause (a consumer that is behind) */
  int ends;           /* on_end calls */
  int end_err;        /* the last one's error */
  bool end_write;     /* and direction */
  int flushes;        /* on_flush calls */
  int closes;         /* on_close calls */
  int in_cb;          /* depth of the owner's callbacks running */
  bool close_in_cb;   /* on_close ran inside another callback: must never happen */
  bool close_on_data; /* actions taken from inside the callbacks */
  bool close_on_end;
  bool close_on_flush;
  const char *linger_answer; /* on the first data: write this and linger */
  int64_t linger_ms;
} owner;

static size_t o_data(tern_stream *s, char *data, size_t len, void *arg) {
  owner *o = arg;
  o->in_cb++;
  o->data_calls++;
  size_t used = len;
  if (o->linger_answer) {
    tern_stream_write(s, o->linger_answer, strlen(o->linger_answer));
    o->linger_answer = NULL;
    tern_stream_linger(s, o->linger_ms);
  } else if (o->hold) {
    used = 0;
    tern_stream_pause(s);
  } else if (o->lines) {
    used = 0;
    for (size_t i = 0; i < len; i++)
      if (data[i] == '\n') used = i + 1;
  }
  tern_buf_append(&o->got, data, used);
  if (o->close_on_data) tern_stream_close(s);
  o->in_cb--;
  return used;
}

static void o_end(tern_stream *s, int err, bool write, void *arg) {
  owner *o = arg;
  o->in_cb++;
  o->ends++;
  o->end_err = err;
  o->end_write = write;
  if (o->close_on_end) tern_stream_close(s);
  o->in_cb--;
}

static void o_flush(tern_stream *s, void *arg) {
  owner *o = arg;
  o->in_cb++;
  o->flushes++;
  if (o->close_on_flush) tern_stream_close(s);
  o->in_cb--;
}

static void o_close(tern_stream *s, void *arg) {
  owner *o = arg;
  if (o->in_cb) o->close_in_cb = true;
  o->closes++;
  o->s = NULL;
}

static const tern_stream_cbs owner_cbs = {.on_data = o_data, .on_end = o_end, .on_flush = o_flush, .on_close = o_close};

/* ---- the environment: a loop, a listener whose connections become streams, raw peers ---- */

typedef struct env {
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_timer_t tick;                /* keeps UV_RUN_ONCE returning */
  tern_stream_loop *L;
  const tern_stream_transport *tp;/* for accepted streams */
  owner *next;                    /* the owner the next accepted stream gets */
  int port;
} env;

static void on_conn(uv_stream_t *l, int status) {
  env *e = l->data;
  owner *o = e->next;
  char err[128];
  CHECK_EQ_INT(tern_stream_open(e->L, e->tp, NULL, &owner_cbs, o, &o->s, err, sizeof err), 0);
  CHECK_EQ_INT(uv_accept(l, (uv_stream_t *)tern_stream_handle(o->s)), 0);
  CHECK(tern_stream_owner(o->s) == o);
  CHECK_EQ_INT(tern_stream_start(o->s, err, sizeof err), 0);
  e->next = NULL;
}

static void env_start(env *e, const tern_stream_transport *tp) {
  memset(e, 0, sizeof *e);
  uv_loop_init(&e->loop);
  e->tp = tp;
  e->L = tern_stream_loop_new(&e->loop);
  CHECK(tern_stream_loop_uv(e->L) == &e->loop);
  sock_tick_start(&e->loop, &e->tick);
  e->port = sock_listen(&e->loop, &e->listener, e, on_conn);
}

static void env_stop(env *e) {
  uv_close((uv_handle_t *)&e->listener, NULL);
  uv_close((uv_handle_t *)&e->tick, NULL);
  tern_stream_loop_free(e->L);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&e->loop), 0); /* every handle of the context is closed */
}

/* A raw client socket connected to the listener; its stream is accepted into o. */
static int peer_connect(env *e, owner *o) {
  memset(o, 0, sizeof *o);
  e->next = o;
  int fd = sock_connect(e->port);
  RUN_UNTIL(&e->loop, o->s != NULL);
  return fd;
}

/* A fresh environment with one peer. */
static int start_with_peer(env *e, owner *o, const tern_stream_transport *tp) {
  env_start(e, tp);
  return peer_connect(e, o);
}

/* Closes o's stream (when still open) and the peer, and waits for on_close. */
static void drop(env *e, owner *o, int fd) {
  if (o->s && !o->close_on_data && !o->close_on_end && !o->close_on_flush && !o->linger_ms) tern_stream_close(o->s);
  RUN_UNTIL(&e->loop, o->closes == 1);
  CHECK(!o->close_in_cb); /* freed after its callbacks, never inside */
  if (fd >= 0) close(fd);
  tern_buf_free(&o->got);
}

static bool buf_is(tern_buf *b, const char *s) { return b->len == strlen(s) && memcmp(b->data, s, b->len) == 0; }

/* ---- tests ---- */

TEST(tail_kept_between_reads) {
  env e;
  owner o;
  int fd = start_with_peer(&e, &o, &tern_stream_transport_tcp);
  o.lines = true;
  sock_puts(fd, "hello\nwor");
  RUN_UNTIL(&e.loop, o.got.len == 6);
  CHECK(buf_is(&o.got, "hello\n"));
  CHECK_EQ_INT(tern_stream_buffered(o.s), 3); /* only the unparsed tail is kept */
  sock_puts(fd, "ld\n");
  RUN_UNTIL(&e.loop, o.got.len == 12);
  CHECK(buf_is(&o.got, "hello\nworld\n"));
  CHECK_EQ_INT(tern_stream_buffered(o.s), 0);
  CHECK_EQ_INT(tern_stream_held(o.s), 0); /* no input buffer between messages */
  close(fd);
  RUN_UNTIL(&e.loop, o.ends == 1);
  CHECK_EQ_INT(o.end_err, UV_EOF);
  CHECK(!o.end_write);
  drop(&e, &o, -1);
  env_stop(&e);
}

TEST(writes_coalesce_into_one_flush) {
  env e;
  owner o;
  int fd = start_with_peer(&e, &o, &counting);
  tern_stream_stats before, after;
  tern_stream_loop_stats(e.L, &before);
  int tries = n_try_writes, writes = n_writes;
  tern_buf want = {0};
  /* many small appends in one iteration, in all three ways */
  for (int i = 0; i < 100; i++) {
    char f[32];
    snprintf(f, sizeof f, "frame-%03d;", i);
    tern_stream_write(o.s, f, strlen(f));
    tern_buf_puts(&want, f);
  }
  tern_buf_printf(tern_stream_out(o.s), "tail;");
  tern_buf_puts(&want, "tail;");
  tern_buf mine = {0};
  tern_buf_puts(&mine, "moved;");
  tern_buf_puts(&want, "moved;");
  tern_stream_write_buf(o.s, &mine);
  CHECK(mine.data == NULL && mine.len == 0); /* appended, and the producer holds nothing */
  CHECK_EQ_INT(tern_stream_outbound(o.s), want.len);
  CHECK_EQ_INT(n_try_writes, tries); /* appends cost no system call */
  tern_buf seen = {0};
  RUN_UNTIL(&e.loop, (sock_recv(fd, &seen), seen.len >= want.len));
  CHECK_EQ_INT(seen.len, want.len);
  CHECK_MEM(seen.data, want.data, want.len);
  CHECK_EQ_INT(n_try_writes - tries, 1); /* one try_write took everything */
  CHECK_EQ_INT(n_writes - writes, 0);    /* and no write request was needed */
  tern_stream_loop_stats(e.L, &after);
  CHECK_EQ_INT(after.flushes - before.flushes, 1);
  CHECK_EQ_INT(after.bytes_out - before.bytes_out, want.len);
  CHECK_EQ_INT(tern_stream_outbound(o.s), 0);
  CHECK_EQ_INT(tern_stream_held(o.s), 0); /* no write buffer while idle */
  CHECK(o.flushes >= 1);                  /* the owner had its turn after the flush */
  drop(&e, &o, fd);
  tern_buf_free(&want);
  tern_buf_free(&seen);
  env_stop(&e);
}

TEST(backpressure_outbound_and_write_request) {
  env e;
  owner o;
  int fd = start_with_peer(&e, &o, &counting);
  int writes = n_writes;
  /* more than loopback's socket buffers hold, while the peer reads nothing */
  const size_t total = 32u << 20;
  char *big = tern_malloc(total);
  for (size_t i = 0; i < total; i++) big[i] = (char)('a' + i % 26);
  tern_stream_write(o.s, big, total);
  RUN_UNTIL(&e.loop, n_writes > writes);
  CHECK_EQ_INT(n_writes - writes, 1);
  CHECK(tern_stream_outbound(o.s) > 0);  /* the kernel has not taken it all */
  CHECK(tern_stream_outbound(o.s) < total);
  size_t seen = 0;
  bool same = true;
  char b[65536];
  uint64_t t0 = uv_hrtime();
  while (seen < total && uv_hrtime() - t0 < SOCK_WAIT_NS) {
    ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
    for (ssize_t i = 0; i < n; i++)
      if (b[i] != (char)('a' + (seen + (size_t)i) % 26)) same = false;
    if (n > 0) seen += (size_t)n;
    uv_run(&e.loop, UV_RUN_NOWAIT);
  }
  CHECK_EQ_INT(seen, total);
  CHECK(same);
  RUN_UNTIL(&e.loop, tern_stream_outbound(o.s) == 0);
  CHECK_EQ_INT(tern_stream_held(o.s), 0);
  drop(&e, &o, fd);
  tern_free(big);
  env_stop(&e);
}

TEST(pause_resume_redelivers_tail) {
  env e;
  owner o;
  int fd = start_with_peer(&e, &o, &tern_stream_transport_tcp);
  o.hold = true; /* like a server whose handler is still answering the previous request */
  sock_puts(fd, "abc");
  RUN_UNTIL(&e.loop, o.data_calls == 1);
  CHECK_EQ_INT(tern_stream_buffered(o.s), 3);
  CHECK_EQ_INT(o.got.len, 0);
  sock_puts(fd, "def");
  for (int i = 0; i < 20; i++) uv_run(&e.loop, UV_RUN_NOWAIT);
  CHECK_EQ_INT(o.data_calls, 1); /* paused: nothing read */
  o.hold = false;
  CHECK_EQ_INT(tern_stream_resume(o.s), 0);
  CHECK_EQ_INT(o.data_calls, 1); /* the tail comes from the flush pass, not from inside resume */
  RUN_UNTIL(&e.loop, o.got.len == 6);
  CHECK(buf_is(&o.got, "abcdef"));
  CHECK_EQ_INT(tern_stream_buffered(o.s), 0);
  drop(&e, &o, fd);
  env_stop(&e);
}

TEST(shutdown_keeps_reading) {
  env e;
  owner o;
  int fd = start_with_peer(&e, &o, &tern_stream_transport_tcp);
  tern_stream_write(o.s, "bye", 3);
  tern_stream_shutdown(o.s);
  tern_buf seen = {0};
  int r = 1;
  RUN_UNTIL(&e.loop, (r = sock_recv(fd, &seen)) <= 0);
  CHECK_EQ_INT(r, 0); /* the answer, then our EOF */
  CHECK(buf_is(&seen, "bye"));
  tern_stream_write(o.s, "late", 4); /* after the shutdown: dropped */
  sock_puts(fd, "after");
  RUN_UNTIL(&e.loop, o.got.len == 5);
  CHECK(buf_is(&o.got, "after"));
  shutdown(fd, SHUT_WR);
  RUN_UNTIL(&e.loop, o.ends == 1);
  CHECK_EQ_INT(o.end_err, UV_EOF);
  drop(&e, &o, fd);
  tern_buf_free(&seen);
  env_stop(&e);
}

TEST(linger_peer_reads_answer_not_reset) {
  env e;
  owner o;
  int fd = start_with_peer(&e, &o, &tern_stream_transport_tcp);
  /* An early refusal: the peer is sending a large body; the owner answers on its first bytes
   * and lingers, from inside on_data. */
  o.linger_answer = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  o.linger_ms = 60000;
  tern_buf seen = {0};
  /* keep sending as a client uploading would, while reading what comes back */
  CHECK_EQ_INT(sock_push_until_end(&e.loop, fd, 8u << 20, &seen), 0); /* a clean EOF, not a reset */
  CHECK(seen.len > 12 && memcmp(seen.data, "HTTP/1.1 413", 12) == 0);
  CHECK_EQ_INT(o.data_calls, 1); /* lingering: what followed was discarded, never delivered */
  CHECK_EQ_INT(o.closes, 0);     /* still draining, until the peer is done */
  shutdown(fd, SHUT_WR);
  drop(&e, &o, fd); /* the stream closed by itself on our EOF */
  CHECK_EQ_INT(o.ends, 0); /* a lingering stream calls nothing but on_close */
  tern_buf_free(&seen);
  env_stop(&e);
}

TEST(linger_deadline_closes) {
  env e;
  owner o;
  int fd = start_with_peer(&e, &o, &tern_stream_transport_tcp);
  tern_stream_write(o.s, "answer", 6);
  tern_stream_linger(o.s, 20);
  tern_stream_linger(o.s, 60000); /* idempotent: the first deadline holds */
  RUN_UNTIL(&e.loop, o.closes == 1);   /* the peer never closes: the deadline does */
  tern_buf seen = {0};
  int r = 1;
  RUN_UNTIL(&e.loop, (r = sock_recv(fd, &seen)) <= 0);
  CHECK(buf_is(&seen, "answer"));
  drop(&e, &o, fd);
  tern_buf_free(&seen);
  env_stop(&e);
}

TEST(close_inside_own_callbacks) {
  env e;
  env_start(&e, &tern_stream_transport_tcp);
  owner a, b, c;
  int fa = peer_connect(&e, &a);
  int fb = peer_connect(&e, &b);
  int fc = peer_connect(&e, &c);
  a.close_on_data = true;
  b.close_on_end = true;
  c.close_on_flush = true;
  sock_puts(fa, "x");
  close(fb);
  tern_stream_write(c.s, "y", 1);
  drop(&e, &a, fa);
  drop(&e, &b, -1);
  drop(&e, &c, fc);
  CHECK_EQ_INT(a.data_calls, 1);
  CHECK_EQ_INT(b.ends, 1);
  CHECK_EQ_INT(c.flushes, 1);
  env_stop(&e);
}

TEST(transport_init_failure) {
  env e;
  env_start(&e, &tern_stream_transport_tcp);
  owner o;
  memset(&o, 0, sizeof o);
  tern_stream *s = (tern_stream *)&o; /* overwritten */
  char err[128] = "";
  static tern_stream_transport failing; /* counting, but with an init that fails */
  failing = counting;
  failing.init = bad_init;
  CHECK_EQ_INT(tern_stream_open(e.L, &failing, NULL, &owner_cbs, &o, &s, err, sizeof err), -ENOENT);
  CHECK(s == NULL);
  CHECK_EQ_STR(err, "no such certificate");
  for (int i = 0; i < 5; i++) uv_run(&e.loop, UV_RUN_NOWAIT);
  CHECK_EQ_INT(o.closes, 0); /* no callback for a call that failed */
  env_stop(&e);
}

int main(void) {
  RUN(tail_kept_between_reads);
  RUN(writes_coalesce_into_one_flush);
  RUN(backpressure_outbound_and_write_request);
  RUN(pause_resume_redelivers_tail);
  RUN(shutdown_keeps_reading);
  RUN(linger_peer_reads_answer_not_reset);
  RUN(linger_deadline_closes);
  RUN(close_inside_own_callbacks);
  RUN(transport_init_failure);
  DONE();
}
