/* curl_uv: libcurl multi-socket on libuv (see curl_uv.h).
 *
 * curl owns the sockets; we only watch them. Per socket curl reports through the socket
 * callback which events it wants (IN, OUT, INOUT) or that it is done with it (REMOVE), and it
 * remembers our per-socket context through curl_multi_assign. One uv_timer carries curl's single
 * "call me back in N ms" deadline. Poll handles are closed (not just stopped) on REMOVE, because
 * curl may close the fd right after and a new socket may reuse the number. */
#include "push/curl_uv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "base/log.h"

typedef struct sock_ctx sock_ctx;
struct sock_ctx {
  uv_poll_t poll;       /* watches fd; data = this */
  curl_socket_t fd;     /* curl's socket */
  tern_push_cu *cu;     /* owner */
  sock_ctx *prev, *next; /* cu->socks, for teardown */
};

typedef struct xfer {
  tern_push_cu_done_fn done; /* completion callback */
  void *arg;                 /* its argument */
} xfer;

struct tern_push_cu {
  uv_loop_t *loop;
  CURLM *multi;              /* NULL once torn down */
  uv_timer_t timer;          /* curl's timeout */
  sock_ctx *socks;           /* live poll contexts */
  long running;              /* added, not finished or removed */
  int closing_handles;       /* uv_close calls whose close_cb has not run yet */
  bool closing;              /* tern_push_cu_close was called */
  void (*closed)(void *arg); /* runs when closing and every handle is closed */
  void *closed_arg;
};

static void maybe_closed(tern_push_cu *cu) {
  if (!cu->closing || cu->closing_handles > 0) return;
  void (*cb)(void *) = cu->closed;
  void *arg = cu->closed_arg;
  tern_free(cu);
  if (cb) cb(arg);
}

static void sock_closed(uv_handle_t *h) {
  sock_ctx *s = h->data;
  tern_push_cu *cu = s->cu;
  tern_free(s);
  cu->closing_handles--;
  maybe_closed(cu);
}

static void sock_release(sock_ctx *s) {
  tern_push_cu *cu = s->cu;
  if (s->prev) s->prev->next = s->next;
  else cu->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  cu->closing_handles++;
  uv_close((uv_handle_t *)&s->poll, sock_closed);
}

/* Hands every finished transfer to its owner. */
static void check_done(tern_push_cu *cu) {
  CURLMsg *msg;
  int left;
  while (cu->multi && (msg = curl_multi_info_read(cu->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *easy = msg->easy_handle;
    CURLcode res = msg->data.result;
    xfer *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    curl_multi_remove_handle(cu->multi, easy);
    cu->running--;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    tern_push_cu_done_fn done = x->done;
    void *arg = x->arg;
    tern_free(x);
    done(arg, easy, res);
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_ctx *s = h->data;
  tern_push_cu *cu = s->cu;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  if (cu->multi) curl_multi_socket_action(cu->multi, s->fd, flags, &running);
  check_done(cu);
}

static void on_timer(uv_timer_t *t) {
  tern_push_cu *cu = t->data;
  int running;
  if (cu->multi) curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(cu);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  tern_push_cu *cu = userp;
  sock_ctx *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      curl_multi_assign(cu->multi, fd, NULL);
      sock_release(s);
    }
    return 0;
  }
  if (!s) {
    s = TERN_NEW(sock_ctx);
    s->fd = fd;
    s->cu = cu;
    if (uv_poll_init_socket(cu->loop, &s->poll, fd) < 0) {
      TERN_WARN("push: cannot watch socket", "fd=%d", (int)fd);
      tern_free(s);
      return -1; /* curl fails the transfer */
    }
    s->poll.data = s;
    s->next = cu->socks;
    if (cu->socks) cu->socks->prev = s;
    cu->socks = s;
    curl_multi_assign(cu->multi, fd, s);
  }
  int ev = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= UV_WRITABLE;
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  tern_push_cu *cu = userp;
  if (timeout_ms < 0) uv_timer_stop(&cu->timer);
  else uv_timer_start(&cu->timer, on_timer, (uint64_t)timeout_ms, 0); /* 0: next loop iteration */
  return 0;
}

tern_push_cu *tern_push_cu_new(uv_loop_t *loop, long max_streams, long max_conns) {
  tern_push_cu *cu = TERN_NEW(tern_push_cu);
  cu->loop = loop;
  cu->multi = curl_multi_init();
  if (!cu->multi) {
    TERN_ERROR("push: curl_multi_init failed", "%s", "");
    abort();
  }
  uv_timer_init(loop, &cu->timer);
  cu->timer.data = cu;
  curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
  curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
  /* Many requests share one HTTP/2 connection per provider host instead of one each. */
  curl_multi_setopt(cu->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  curl_multi_setopt(cu->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, max_streams);
  curl_multi_setopt(cu->multi, CURLMOPT_MAXCONNECTS, max_conns);
  return cu;
}

int tern_push_cu_add(tern_push_cu *cu, CURL *easy, tern_push_cu_done_fn done, void *arg) {
  if (cu->closing) return -EIO;
  xfer *x = TERN_NEW(xfer);
  x->done = done;
  x->arg = arg;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
  if (curl_multi_add_handle(cu->multi, easy) != CURLM_OK) {
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    tern_free(x);
    return -EIO;
  }
  cu->running++;
  return 0;
}

void tern_push_cu_remove(tern_push_cu *cu, CURL *easy) {
  xfer *x = NULL;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
  if (!x) return; /* not ours, or already finished */
  curl_multi_remove_handle(cu->multi, easy);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
  tern_free(x);
  cu->running--;
}

long tern_push_cu_running(const tern_push_cu *cu) { return cu->running; }

static void timer_closed(uv_handle_t *h) {
  tern_push_cu *cu = h->data;
  cu->closing_handles--;
  maybe_closed(cu);
}

void tern_push_cu_close(tern_push_cu *cu, void (*closed)(void *arg), void *arg) {
  cu->closing = true;
  cu->closed = closed;
  cu->closed_arg = arg;
  /* Cleanup closes the cached connections; curl reports their sockets through socket_cb
   * (REMOVE) while the multi handle is still valid, which closes their polls. */
  curl_multi_cleanup(cu->multi);
  cu->multi = NULL;
  while (cu->socks) sock_release(cu->socks); /* any socket curl did not report */
  cu->closing_handles++;
  uv_close((uv_handle_t *)&cu->timer, timer_closed);
}
