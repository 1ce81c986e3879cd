/* fakeep: a fake endpoint for core tests: no socket, no JSON. It records every call the core
 * makes as a line of text ("msg 1 alice>bob hi", "sent c1", "close replaced", ...), and
 * reports itself gone at once when the core closes it, as a WebSocket close would. */
#ifndef TERN_TEST_FAKEEP_H
#define TERN_TEST_FAKEEP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "core/endpoint.h"
#include "core/session.h"
#include "t.h"

typedef struct fake {
  tern_session *s;   /* its session */
  char log[64][160]; /* calls, in order */
  int n;
  bool closed;
  size_t backlog;    /* what backlog() answers */
  char msg_id[64];   /* the msg_id of the last message envelope */
} fake;

static void note(fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(fake *f, const char *fmt, ...) {
  if (f->n >= 64) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->log[f->n++], sizeof f->log[0], fmt, ap);
  va_end(ap);
}

static void f_ready(void *ep, const char *user, const char *device_id, int64_t t) { note(ep, "ready %s", user); }
static void f_synced(void *ep, uint64_t seq) { note(ep, "synced %llu", (unsigned long long)seq); }
static void f_sent(void *ep, const tern_sent_info *s) { note(ep, "sent %s", s->id); }
static void f_error(void *ep, const tern_error_info *e) {
  note(ep, "error %s%s%s%s%s", e->id ? e->id : "", e->id ? " " : "", e->code, e->user ? " " : "", e->user ? e->user : "");
}

typedef struct ids_buf {
  char s[120];
} ids_buf;

static bool add_id(tern_str x, void *arg) {
  ids_buf *b = arg;
  size_t l = strlen(b->s);
  snprintf(b->s + l, sizeof b->s - l, "%s%.*s", l ? "," : "", (int)x.n, x.p);
  return true;
}

static void f_envelope(void *ep, const tern_out_env *e) {
  const tern_env_view *v = e->v;
  if (v->kind == TERN_ENV_MSG) {
    tern_str b = e->body ? (tern_str){(const char *)e->body, e->body_len} : v->f[TERN_EF_BODY];
    snprintf(((fake *)ep)->msg_id, sizeof ((fake *)ep)->msg_id, "%.*s", (int)v->f[TERN_EF_MSG_ID].n, v->f[TERN_EF_MSG_ID].p);
    note(ep, "msg %llu %.*s>%.*s %.*s", (unsigned long long)e->seq, (int)v->f[TERN_EF_FROM].n, v->f[TERN_EF_FROM].p,
         (int)v->f[TERN_EF_TO].n, v->f[TERN_EF_TO].p, (int)b.n, b.p);
  } else if (v->kind == TERN_ENV_RECEIPT) {
    ids_buf ids;
    ids.s[0] = 0;
    tern_env_each(v, TERN_EF_MSG_IDS, add_id, &ids);
    note(ep, "receipt %llu %.*s by=%.*s n=%u", (unsigned long long)e->seq, (int)v->f[TERN_EF_STATUS].n,
         v->f[TERN_EF_STATUS].p, (int)v->f[TERN_EF_BY].n, v->f[TERN_EF_BY].p, (unsigned)v->count[TERN_EF_MSG_IDS]);
  } else {
    note(ep, "envelope %llu kind=%c", (unsigned long long)e->seq, v->kind);
  }
}

static void f_presence(void *ep, const char *user, bool online, int64_t ls) {
  note(ep, "presence %s %s", user, online ? "online" : ls > 0 ? "offline" : "never");
}
static void f_typing(void *ep, const char *from, const char *g, bool composing) {
  note(ep, "typing %s %s", from, composing ? "composing" : "paused");
}
static void f_pong(void *ep, int64_t t) { note(ep, "pong"); }
static void f_close(void *ep, tern_close_reason why) {
  static const char *names[] = {"", "unauthorized", "logged_out", "replaced", "shutdown", "internal"};
  fake *f = ep;
  note(f, "close %s", names[why]);
  if (!f->closed) {
    f->closed = true;
    tern_session_gone(f->s); /* like a WebSocket close: the endpoint reports it at once */
  }
}
static void f_authed(void *ep) { note(ep, "authed"); }
static size_t f_backlog(void *ep) { return ((fake *)ep)->backlog; }
static int64_t f_last_rx(void *ep) { return tern_now_ms(); }

static const tern_endpoint_ops fake_ops = {f_ready, f_synced, f_sent,  f_error,  f_envelope, f_presence,
                                           f_typing, f_pong,  f_close, f_authed, f_backlog,  f_last_rx, NULL};

static fake *fake_connect(tern_app *a) {
  fake *f = TERN_NEW(fake);
  f->s = tern_session_new(a, &fake_ops, f);
  return f;
}

/* The index of the first log line starting with prefix at or after `from`, or -1. */
static int find(const fake *f, const char *prefix, int from) {
  for (int i = from; i < f->n; i++)
    if (strncmp(f->log[i], prefix, strlen(prefix)) == 0) return i;
  return -1;
}

static void dump(const fake *f, const char *name) {
  fprintf(stderr, "    %s:", name);
  for (int i = 0; i < f->n; i++) fprintf(stderr, " [%s]", f->log[i]);
  fprintf(stderr, "\n");
}

#define CHECK_LOG(f, prefix)                                  \
  do {                                                        \
    if (find((f), (prefix), 0) < 0) {                         \
      fprintf(stderr, "  missing \"%s\"\n", (prefix));        \
      dump((f), #f);                                          \
    }                                                         \
    CHECK(find((f), (prefix), 0) >= 0);                       \
  } while (0)

#endif
