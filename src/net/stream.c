/* stream.c: the byte stream (see stream.h): the per-loop context, reading with a shared buffer,
 * the flush pass, the three ways of closing, and the plain TCP transport. */
#include "net/stream.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"

#define READ_BUF_SIZE (64 * 1024) /* the shared read buffer of a context */

/* A lingering stream's deadline. Allocated only while it lingers, so that an idle stream
 * carries one pointer for it, not a list node. */
typedef struct linger_rec {
  tern_stream *s;                /* the stream */
  uint64_t until;                /* loop time (uv_now) at which it is closed */
  struct linger_rec *prev, *next;/* in the context's list, sorted by until */
} linger_rec;

struct tern_stream_loop {
  uv_loop_t *loop;          /* not owned */
  uv_prepare_t prepare;     /* the flush pass; started while some stream is dirty */
  uv_timer_t timer;         /* the earliest linger deadline; started while some stream lingers */
  char *rbuf;               /* the shared read buffer */
  tern_stream *dirty;       /* streams with a turn due in the next pass (doubly linked) */
  linger_rec *lg_head;      /* lingering streams, earliest deadline first */
  linger_rec *lg_tail;
  tern_stream_stats stats;  /* counters (tern_stream_loop_stats) */
  size_t nstreams;          /* streams not yet freed */
  int handles;              /* own handles not yet closed (while freeing) */
  bool prepare_on;          /* prepare is started */
  bool rbuf_busy;           /* the read buffer is lent to a read that has not returned */
  bool freeing;             /* tern_stream_loop_free was called */
};

struct tern_stream {
  uv_tcp_t tcp;                   /* the socket; tcp.data points back here */
  tern_stream_loop *L;            /* the context */
  const tern_stream_transport *tp;/* the transport */
  void *tp_data;                  /* the transport's state */
  const tern_stream_cbs *cbs;     /* the owner's callbacks */
  void *owner;                    /* their argument */
  tern_buf in;                    /* the unconsumed tail of the input; empty (no memory) mostly */
  tern_buf out;                   /* appended, not yet handed to the transport */
  size_t inflight;                /* bytes of the transport write in flight */
  tern_stream *dprev, *dnext;     /* in L->dirty while dirty */
  linger_rec *lg;                 /* the deadline while lingering, else NULL */
  bool started;                   /* tern_stream_start was called: reads and flushes allowed */
  bool reading;                   /* the transport is reading */
  bool dirty;                     /* in L->dirty */
  bool redeliver;                 /* hand the kept tail to on_data in the next turn */
  bool delivering;                /* inside on_data: the tail must stay where it is */
  bool input_dead;                /* lingering: input is read and discarded */
  bool read_ended;                /* EOF or a read error was seen */
  bool write_dead;                /* a write failed: output is dropped */
  bool writing;                   /* a transport write is in flight */
  bool want_shut;                 /* shut the write side down once everything is written */
  bool shut;                      /* the shutdown was issued */
  bool closing;                   /* the transport's close was called */
  bool silent;                    /* a failed open: no on_close */
};

/* ------------------------------------------------------------------------------------------ */
/* the context */

static void on_prepare(uv_prepare_t *h);
static void on_linger_timer(uv_timer_t *t);

tern_stream_loop *tern_stream_loop_new(uv_loop_t *loop) {
  tern_stream_loop *L = TERN_NEW(tern_stream_loop);
  L->loop = loop;
  L->rbuf = tern_malloc(READ_BUF_SIZE);
  uv_prepare_init(loop, &L->prepare);
  L->prepare.data = L;
  uv_timer_init(loop, &L->timer);
  L->timer.data = L;
  return L;
}

uv_loop_t *tern_stream_loop_uv(const tern_stream_loop *L) { return L->loop; }
void tern_stream_loop_stats(const tern_stream_loop *L, tern_stream_stats *out) { *out = L->stats; }

static void loop_maybe_done(tern_stream_loop *L) {
  if (!L->freeing || L->handles > 0 || L->nstreams > 0) return;
  tern_free(L->rbuf);
  tern_free(L);
}

static void loop_handle_closed(uv_handle_t *h) {
  tern_stream_loop *L = h->data;
  L->handles--;
  loop_maybe_done(L);
}

void tern_stream_loop_free(tern_stream_loop *L) {
  if (!L || L->freeing) return;
  L->freeing = true;
  L->handles = 2;
  uv_close((uv_handle_t *)&L->prepare, loop_handle_closed);
  uv_close((uv_handle_t *)&L->timer, loop_handle_closed);
}

/* ------------------------------------------------------------------------------------------ */
/* the dirty list and the linger list */

static void mark_dirty(tern_stream *s) {
  tern_stream_loop *L = s->L;
  if (s->dirty || s->closing || L->freeing) return;
  s->dirty = true;
  s->dprev = NULL;
  s->dnext = L->dirty;
  if (L->dirty) L->dirty->dprev = s;
  L->dirty = s;
  if (!L->prepare_on) {
    L->prepare_on = true;
    uv_prepare_start(&L->prepare, on_prepare);
  }
}

static void dirty_unlink(tern_stream *s) {
  if (!s->dirty) return;
  if (s->dprev) s->dprev->dnext = s->dnext;
  else s->L->dirty = s->dnext;
  if (s->dnext) s->dnext->dprev = s->dprev;
  s->dprev = s->dnext = NULL;
  s->dirty = false;
}

static void arm_linger_timer(tern_stream_loop *L) {
  if (L->freeing) return;
  if (!L->lg_head) {
    uv_timer_stop(&L->timer);
    return;
  }
  uint64_t now = uv_now(L->loop);
  uint64_t until = L->lg_head->until;
  uv_timer_start(&L->timer, on_linger_timer, until > now ? until - now : 0, 0);
}

/* Deadlines mostly arrive in order (now + the same few durations), so the sorted insert walks
 * back from the tail a step or two. */
static void linger_add(tern_stream *s, uint64_t until) {
  tern_stream_loop *L = s->L;
  linger_rec *r = TERN_NEW(linger_rec);
  r->s = s;
  r->until = until;
  linger_rec *after = L->lg_tail;
  while (after && after->until > until) after = after->prev;
  r->prev = after;
  r->next = after ? after->next : L->lg_head;
  if (r->next) r->next->prev = r;
  else L->lg_tail = r;
  if (after) after->next = r;
  else L->lg_head = r;
  s->lg = r;
  if (L->lg_head == r) arm_linger_timer(L);
}

static void linger_remove(tern_stream *s) {
  linger_rec *r = s->lg;
  if (!r) return;
  tern_stream_loop *L = s->L;
  if (r->prev) r->prev->next = r->next;
  else L->lg_head = r->next;
  if (r->next) r->next->prev = r->prev;
  else L->lg_tail = r->prev;
  s->lg = NULL;
  tern_free(r);
  /* an empty list must not keep the loop alive until a stale deadline */
  if (!L->lg_head && !L->freeing) uv_timer_stop(&L->timer);
}

static void on_linger_timer(uv_timer_t *t) {
  tern_stream_loop *L = t->data;
  uint64_t now = uv_now(L->loop);
  while (L->lg_head && L->lg_head->until <= now) tern_stream_close(L->lg_head->s); /* unlinks it */
  arm_linger_timer(L);
}

/* ------------------------------------------------------------------------------------------ */
/* streams */

int tern_stream_open(tern_stream_loop *L, const tern_stream_transport *tp, const void *config,
                     const tern_stream_cbs *cbs, void *owner, tern_stream **out, char *err, size_t errlen) {
  *out = NULL;
  if (L->freeing) {
    snprintf(err, errlen, "the stream context is being freed");
    return -ECANCELED;
  }
  tern_stream *s = TERN_NEW(tern_stream);
  s->L = L;
  s->tp = tp;
  s->cbs = cbs;
  s->owner = owner;
  int rc = uv_tcp_init(L->loop, &s->tcp);
  if (rc < 0) {
    snprintf(err, errlen, "cannot make a TCP handle: %s", uv_strerror(rc));
    tern_free(s);
    return rc;
  }
  s->tcp.data = s;
  L->nstreams++;
  rc = tp->init ? tp->init(s, config, err, errlen) : 0;
  if (rc < 0) {
    /* the handle is registered with the loop: it must be closed before the memory goes */
    s->silent = true;
    tern_stream_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

uv_tcp_t *tern_stream_handle(tern_stream *s) { return &s->tcp; }
void *tern_stream_owner(const tern_stream *s) { return s->owner; }
void *tern_stream_transport_data(const tern_stream *s) { return s->tp_data; }
void tern_stream_set_transport_data(tern_stream *s, void *data) { s->tp_data = data; }
bool tern_stream_is_closing(const tern_stream *s) { return s->closing; }
size_t tern_stream_buffered(const tern_stream *s) { return s->in.len; }
size_t tern_stream_held(const tern_stream *s) { return s->in.cap + s->out.cap; }
size_t tern_stream_outbound(const tern_stream *s) { return s->out.len + s->inflight; }

char *tern_stream_read_buffer(tern_stream *s, size_t *len) {
  *len = READ_BUF_SIZE;
  return s->L->rbuf;
}

int tern_stream_start(tern_stream *s, char *err, size_t errlen) {
  if (s->closing) {
    snprintf(err, errlen, "the stream is closed");
    return -ECANCELED;
  }
  if (s->started) return 0;
  int rc = s->tp->read_start(s);
  if (rc < 0) {
    snprintf(err, errlen, "cannot read: %s", uv_strerror(rc));
    return rc;
  }
  s->started = true;
  s->reading = true;
  if (s->out.len) mark_dirty(s);
  return 0;
}

void tern_stream_close(tern_stream *s) {
  if (s->closing) return;
  s->closing = true;
  dirty_unlink(s);
  linger_remove(s);
  s->reading = false;
  s->tp->close(s); /* buffers stay until tern_stream_closed: a caller may be reading them */
}

void tern_stream_closed(tern_stream *s) {
  tern_stream_loop *L = s->L;
  if (!s->silent && s->cbs->on_close) s->cbs->on_close(s, s->owner);
  tern_buf_free(&s->in);
  tern_buf_free(&s->out);
  tern_free(s);
  L->nstreams--;
  loop_maybe_done(L);
}

/* ------------------------------------------------------------------------------------------ */
/* reading */

/* Hands data (appended to the kept tail, if any) to the owner and keeps what it left. */
static void deliver(tern_stream *s, char *data, size_t n) {
  bool from_tail = false;
  if (s->in.len) {
    if (n) tern_buf_append(&s->in, data, n);
    data = s->in.data;
    n = s->in.len;
    from_tail = true;
  }
  if (!n) return;
  s->delivering = true;
  size_t used = s->cbs->on_data(s, data, n, s->owner);
  s->delivering = false;
  if (used > n) used = n;
  if (s->closing || s->input_dead) {
    tern_buf_free(&s->in);
    return;
  }
  if (from_tail) {
    tern_buf_consume(&s->in, used);
    if (!s->in.len) tern_buf_free(&s->in); /* no input buffer between messages */
  } else if (used < n) {
    tern_buf_append(&s->in, data + used, n - used);
  }
}

void tern_stream_input(tern_stream *s, char *data, size_t n) {
  if (s->closing || s->input_dead || !n) return; /* lingering: the peer's bytes are discarded */
  s->L->stats.bytes_in += n;
  deliver(s, data, n);
}

void tern_stream_input_keep(tern_stream *s, const char *data, size_t n) {
  if (s->closing || s->input_dead || !n) return;
  s->L->stats.bytes_in += n;
  tern_buf_append(&s->in, data, n);
  if (s->reading) { /* not paused after all: hand it over in this iteration's pass */
    s->redeliver = true;
    mark_dirty(s);
  }
}

void tern_stream_input_end(tern_stream *s, int err) {
  if (s->closing || s->read_ended) return;
  s->read_ended = true;
  if (s->reading) s->tp->read_stop(s); /* libuv stops by itself on EOF and errors, not on ENOBUFS */
  s->reading = false;
  if (s->lg) {
    tern_stream_close(s); /* the peer is done too: the lingering close is complete */
    return;
  }
  s->cbs->on_end(s, err, false, s->owner);
}

void tern_stream_pause(tern_stream *s) {
  if (!s->reading || s->closing) return;
  s->tp->read_stop(s);
  s->reading = false;
}

int tern_stream_resume(tern_stream *s) {
  if (s->closing || s->input_dead) return 0;
  int rc = 0;
  if (s->started && !s->reading && !s->read_ended) {
    rc = s->tp->read_start(s);
    if (rc == 0) s->reading = true;
  }
  /* inside on_data the tail is not stored yet: what on_data leaves is kept when it returns */
  if (s->in.len || s->delivering) {
    s->redeliver = true;
    mark_dirty(s);
  }
  return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* writing */

tern_buf *tern_stream_out(tern_stream *s) {
  mark_dirty(s);
  return &s->out;
}

void tern_stream_write(tern_stream *s, const void *p, size_t n) {
  if (!n) return;
  tern_buf_append(&s->out, p, n);
  mark_dirty(s);
}

void tern_stream_write_buf(tern_stream *s, tern_buf *b) {
  if (!b->len) return;
  if (!s->out.len) {
    tern_buf_free(&s->out);
    s->out = *b;
    *b = (tern_buf){0};
  } else {
    tern_buf_append(&s->out, b->data, b->len);
    tern_buf_free(b); /* the producer keeps no buffer while idle either */
  }
  mark_dirty(s);
}

void tern_stream_drop_queued(tern_stream *s) { tern_buf_free(&s->out); }

void tern_stream_kick(tern_stream *s) { mark_dirty(s); }

void tern_stream_shutdown(tern_stream *s) {
  if (s->closing || s->want_shut) return;
  s->want_shut = true;
  mark_dirty(s);
}

void tern_stream_linger(tern_stream *s, int64_t ms) {
  if (s->closing || s->lg) return;
  if (!s->started) {
    tern_stream_close(s);
    return;
  }
  s->input_dead = true;
  s->redeliver = false;
  if (!s->delivering) tern_buf_free(&s->in); /* else deliver() drops it when on_data returns */
  s->want_shut = true;
  /* drain: a peer whose bytes we left unread would get a reset when we close */
  if (!s->reading && !s->read_ended && s->tp->read_start(s) == 0) s->reading = true;
  linger_add(s, uv_now(s->L->loop) + (uint64_t)(ms > 0 ? ms : 0));
  mark_dirty(s);
}

/* The transport refused bytes: they never arrive, and nothing more is sent. */
static void write_failed(tern_stream *s, int err) {
  tern_buf_free(&s->out);
  if (s->write_dead) return;
  s->write_dead = true;
  if (s->lg) {
    tern_stream_close(s);
    return;
  }
  s->cbs->on_end(s, err, true, s->owner);
}

void tern_stream_write_done(tern_stream *s, int status) {
  s->writing = false;
  s->inflight = 0;
  if (s->closing) return; /* cancelled by the close */
  if (status < 0) {
    write_failed(s, status);
    return;
  }
  mark_dirty(s); /* what was appended meanwhile goes now, and the owner sees outbound drop */
}

/* Hands everything queued to the transport: what the socket takes at once, and one write for
 * the rest. A completed uv_write costs a callback and, in libuv 1.44, an epoll_ctl (its drain
 * re-arms the watcher even when nothing changed); most flushes fit the socket buffer whole and
 * need neither. */
static void flush_out(tern_stream *s) {
  if (s->writing || !s->out.len) return;
  tern_stream_stats *st = &s->L->stats;
  st->flushes++;
  int n = s->tp->try_write(s, s->out.data, s->out.len);
  if (n == UV_EAGAIN || n == UV_ENOSYS) {
    n = 0;
  } else if (n < 0) {
    write_failed(s, n);
    return;
  }
  st->bytes_out += (uint64_t)n;
  if ((size_t)n == s->out.len) {
    tern_buf_free(&s->out); /* an idle stream holds no write buffer */
    return;
  }
  tern_buf_consume(&s->out, (size_t)n);
  size_t len = s->out.len;
  int rc = s->tp->write(s, &s->out);
  if (rc < 0) {
    write_failed(s, rc);
    return;
  }
  st->writes++;
  st->bytes_out += len;
  s->inflight = len;
  s->writing = true;
}

/* One stream's turn in the flush pass. */
static void turn(tern_stream *s) {
  if (s->closing || !s->started) return;
  if (s->redeliver) {
    s->redeliver = false;
    if (s->in.len && !s->input_dead) deliver(s, NULL, 0);
    if (s->closing) return;
  }
  if (s->write_dead || s->shut) tern_buf_free(&s->out);
  flush_out(s);
  if (s->closing) return;
  if (s->want_shut && !s->shut && !s->writing && !s->out.len && !s->write_dead) {
    s->shut = true;
    int rc = s->tp->shutdown(s);
    if (rc < 0) {
      write_failed(s, rc);
      if (s->closing) return;
    }
  }
  if (s->lg) {
    /* the peer's EOF came before the linger, or writing failed: nothing left to wait for */
    if ((s->read_ended || s->write_dead) && !s->writing) tern_stream_close(s);
    return;
  }
  if (s->cbs->on_flush) s->cbs->on_flush(s, s->owner);
}

static void on_prepare(uv_prepare_t *h) {
  tern_stream_loop *L = h->data;
  /* A turn may make more streams dirty (a redelivered request answered at once, a deferred
   * close frame): they are taken in the same pass, so nothing waits for the poll. */
  while (L->dirty) {
    tern_stream *s = L->dirty;
    dirty_unlink(s);
    turn(s);
  }
  if (L->prepare_on && !L->dirty) {
    L->prepare_on = false;
    uv_prepare_stop(&L->prepare);
  }
}

/* ------------------------------------------------------------------------------------------ */
/* the plain TCP transport */

typedef struct tcp_write_req {
  uv_write_t req; /* req.data is the stream */
  tern_buf buf;   /* the bytes being written, owned until the callback */
} tcp_write_req;

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tern_stream *s = h->data;
  tern_stream_loop *L = s->L;
  if (L->rbuf_busy) { /* cannot happen with libuv's read loop, but never lend it twice */
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  L->rbuf_busy = true;
  buf->base = L->rbuf;
  buf->len = READ_BUF_SIZE;
}

static void tcp_on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  tern_stream *s = h->data;
  if (buf->base == s->L->rbuf) s->L->rbuf_busy = false;
  if (nread > 0) tern_stream_input(s, buf->base, (size_t)nread);
  else if (nread < 0) tern_stream_input_end(s, (int)nread);
}

static int tcp_init(tern_stream *s, const void *config, char *err, size_t errlen) { return 0; }

static int tcp_read_start(tern_stream *s) { return uv_read_start((uv_stream_t *)&s->tcp, tcp_alloc, tcp_on_read); }

static void tcp_read_stop(tern_stream *s) { uv_read_stop((uv_stream_t *)&s->tcp); }

static int tcp_try_write(tern_stream *s, const char *p, size_t n) {
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  return uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
}

static void tcp_on_write(uv_write_t *req, int status) {
  tcp_write_req *w = (tcp_write_req *)req;
  tern_stream *s = req->data;
  tern_buf_free(&w->buf);
  tern_free(w);
  tern_stream_write_done(s, status);
}

/* The write request lives only while a write is in flight, so idle streams carry none. */
static int tcp_write(tern_stream *s, tern_buf *b) {
  tcp_write_req *w = TERN_NEW(tcp_write_req);
  w->req.data = s;
  w->buf = *b;
  uv_buf_t ub = uv_buf_init(w->buf.data, (unsigned)w->buf.len);
  int rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &ub, 1, tcp_on_write);
  if (rc < 0) {
    tern_free(w);
    return rc;
  }
  *b = (tern_buf){0};
  return 0;
}

static void tcp_on_shutdown(uv_shutdown_t *req, int status) {
  tern_free(req); /* the lingering close waits for the peer's EOF or its deadline, not for this */
}

static int tcp_shutdown(tern_stream *s) {
  uv_shutdown_t *req = tern_malloc(sizeof *req);
  int rc = uv_shutdown(req, (uv_stream_t *)&s->tcp, tcp_on_shutdown);
  if (rc < 0) tern_free(req);
  return rc;
}

static void tcp_on_close(uv_handle_t *h) { tern_stream_closed(h->data); }

static void tcp_close(tern_stream *s) { uv_close((uv_handle_t *)&s->tcp, tcp_on_close); }

const tern_stream_transport tern_stream_transport_tcp = {
    .name = "tcp",
    .init = tcp_init,
    .read_start = tcp_read_start,
    .read_stop = tcp_read_stop,
    .try_write = tcp_try_write,
    .write = tcp_write,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};
