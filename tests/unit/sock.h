/* sock.h: loopback helpers for the unit tests that run a real loop against raw client
 * sockets (tests/unit/net): bounded waits on the loop, a listener on a free port, and a raw
 * non-blocking client. Header-only (static inline), like t.h. Waits are bounded only so that a
 * broken build fails instead of hanging: nothing here measures or asserts a time. */
#ifndef TERN_TESTS_SOCK_H
#define TERN_TESTS_SOCK_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "base/buf.h"
#include "t.h"

#define SOCK_WAIT_NS (30ull * 1000 * 1000 * 1000) /* give up (and fail) after this, never sooner */

/* Runs loop until cond holds, or fails the test when the bound passes. The caller keeps a
 * repeating timer on the loop (sock_tick_start) so that every UV_RUN_ONCE returns soon. */
#define RUN_UNTIL(loop, cond)                                                          \
  do {                                                                                 \
    uint64_t t_start = uv_hrtime();                                                    \
    while (!(cond) && uv_hrtime() - t_start < SOCK_WAIT_NS) uv_run((loop), UV_RUN_ONCE); \
    CHECK(cond);                                                                       \
  } while (0)

static inline void sock_on_tick(uv_timer_t *t) { (void)t; }

static inline void sock_tick_start(uv_loop_t *loop, uv_timer_t *tick) {
  uv_timer_init(loop, tick);
  uv_timer_start(tick, sock_on_tick, 5, 5);
}

/* Listens on 127.0.0.1 on a free port; returns the port. */
static inline int sock_listen(uv_loop_t *loop, uv_tcp_t *l, void *data, uv_connection_cb cb) {
  uv_tcp_init(loop, l);
  l->data = data;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  CHECK_EQ_INT(uv_tcp_bind(l, (const struct sockaddr *)&a, 0), 0);
  CHECK_EQ_INT(uv_listen((uv_stream_t *)l, 16, cb), 0);
  struct sockaddr_in got;
  int len = sizeof got;
  uv_tcp_getsockname(l, (struct sockaddr *)&got, &len);
  return ntohs(got.sin_port);
}

/* A raw client connected to 127.0.0.1:port (the connect completes in the kernel's backlog, so
 * a blocking connect does not need the loop), then made non-blocking. */
static inline int sock_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK_EQ_INT(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

static inline void sock_send(int fd, const void *p, size_t n) {
  CHECK_EQ_INT(send(fd, p, n, MSG_NOSIGNAL), (long long)n);
}

static inline void sock_puts(int fd, const char *s) { sock_send(fd, s, strlen(s)); }

/* Reads what is there: 1 (bytes, or nothing yet), 0 at EOF, or -errno (a reset). */
static inline int sock_recv(int fd, tern_buf *into) {
  char b[65536];
  ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
  if (n > 0) {
    tern_buf_append(into, b, (size_t)n);
    return 1;
  }
  if (n == 0) return 0;
  return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
}

/* An uploading peer: sends up to `total` bytes while the loop runs and reads what comes back,
 * until the other side ends the connection. Returns sock_recv's last answer: 0 for a clean
 * EOF, -ECONNRESET when the other side reset instead. */
static inline int sock_push_until_end(uv_loop_t *loop, int fd, size_t total, tern_buf *got) {
  char chunk[16384];
  memset(chunk, 'b', sizeof chunk);
  size_t sent = 0;
  int r = 1;
  uint64_t t0 = uv_hrtime();
  while (uv_hrtime() - t0 < SOCK_WAIT_NS) {
    if (sent < total) {
      ssize_t n = send(fd, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) sent += (size_t)n;
    }
    uv_run(loop, UV_RUN_NOWAIT);
    if ((r = sock_recv(fd, got)) <= 0) break;
  }
  return r;
}

static inline bool buf_has(const tern_buf *b, const char *needle) {
  size_t nl = strlen(needle);
  for (size_t i = 0; i + nl <= b->len; i++)
    if (memcmp(b->data + i, needle, nl) == 0) return true;
  return false;
}

#endif
