/* session: one client connection: auth, the drain of the stored inbox, live delivery in seq
 * order, and dispatch of the client's requests (session.h). No wire protocol here: everything
 * the client sees goes through the endpoint ops. */
#include "core/session.h"

#include <errno.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/cluster.h"
#include "core/presence.h"
#include "core/pushglue.h"
#include "core/receipts.h"
#include "core/router.h"

enum { HELD_MAX = 1024 }; /* frames held behind a catch-up at most */

void tern_session_ref(tern_session *s) { s->refs++; }

void tern_session_unref(tern_session *s) {
  if (--s->refs == 0) {
    for (size_t i = 0; i < s->nheld; i++) tern_frame_free(&s->held[i].f);
    tern_free(s->held);
    for (size_t i = 0; i < s->nreads; i++) tern_frame_free(&s->reads[i]);
    tern_free(s->reads);
    tern_free(s->watching);
    tern_free(s);
  }
}

tern_session *tern_session_new(tern_app *a, const tern_endpoint_ops *ops, void *ep) {
  tern_session *s = TERN_NEW(tern_session);
  s->app = a;
  s->ep_ops = ops;
  s->ep = ep;
  s->refs = 1; /* the endpoint's */
  s->state = SESS_AUTH;
  return s;
}

void tern_session_error(tern_session *s, const char *id, const char *code, const char *message, const char *user) {
  if (!s->ep) return;
  tern_error_info e = {.id = id, .code = code, .message = message, .user = user};
  s->ep_ops->error(s->ep, &e);
}

void tern_session_close(tern_session *s, tern_close_reason why) {
  if (s->ep) s->ep_ops->close(s->ep, why);
}

int64_t tern_session_last_rx(const tern_session *s) { return s->ep ? s->ep_ops->last_rx(s->ep) : 0; }

/* Remembers who sent a 1:1 envelope that asks for a delivered receipt (tern_session.senders),
 * and whether a group one asked for one. */
static void note_sender(tern_session *s, const tern_env_view *v) {
  if (!(v->flags & TERN_ENV_F_RECEIPT) || !tern_env_has(v, TERN_EF_MSG_ID)) return;
  if (tern_env_has(v, TERN_EF_GROUP_ID)) {
    s->group_receipts = true;
    return;
  }
  tern_str from = v->f[TERN_EF_FROM];
  for (uint8_t i = 0; i < s->nsenders; i++)
    if (strlen(s->senders[i]->name) == from.n && !memcmp(s->senders[i]->name, from.p, from.n)) return;
  if (s->nsenders == TERN_ARRAY_LEN(s->senders) || !from.n || from.n > TERN_USERNAME_MAX) return;
  char name[TERN_USERNAME_MAX + 1];
  memcpy(name, from.p, from.n);
  name[from.n] = '\0';
  tern_user *u = tern_dir_user(s->app->dir, name);
  if (u && (!s->dev || u != s->dev->user)) s->senders[s->nsenders++] = u;
}

/* Writes one envelope and advances the connection's seq. */
static void write_envelope(tern_session *s, uint64_t seq, const tern_env_view *v, const uint8_t *body, size_t blen) {
  tern_out_env e = {.seq = seq, .v = v, .body = body, .body_len = blen};
  note_sender(s, v);
  s->ep_ops->envelope(s->ep, &e);
  s->sent_seq = seq;
  s->app->metrics.envelopes_delivered++;
}

static void drain_step(tern_session *s);

/* A read the store could not answer now (a NATS cluster moving a stream's leader takes a few
 * seconds; a reconnect to it rechecks every live session at once, session_recheck_all): the
 * client keeps its connection, and the read goes again after 100 ms, doubling to 2 s, for
 * about a minute in all; then the connection is closed as on any other store error. */
enum { DRAIN_RETRIES = 32, DRAIN_RETRY_FIRST_MS = 100, DRAIN_RETRY_MAX_MS = 2000 };

static void wait_in_list(tern_session *s) {
  s->drain_waiting = true;
  tern_session_ref(s);
  s->wait_next = s->app->waiting;
  s->app->waiting = s;
}

static void drain_retry_later(tern_session *s, const char *why) {
  uint64_t ms = DRAIN_RETRY_FIRST_MS;
  for (unsigned i = 0; i < s->drain_fails && ms < DRAIN_RETRY_MAX_MS; i++) ms *= 2;
  if (ms > DRAIN_RETRY_MAX_MS) ms = DRAIN_RETRY_MAX_MS;
  if (s->drain_fails++ == 0)
    TERN_WARN("drain: the store is unavailable, reading again", "device=%s err=%s", s->dev ? s->dev->id : "-",
              tern_log_quote(why));
  s->drain_retry_at = uv_now(s->app->loop) + ms;
  if (!s->drain_waiting) wait_in_list(s);
  tern_app_pace_after(s->app, ms);
}

/* A read that stopped before an envelope another node is still committing (its group may yet
 * lose a race and be undone; store/backend.h read_settled): that group is done in
 * milliseconds, so the read goes again after 5 ms, doubling to 500 ms. Not a failure: the
 * store ends the wait itself for a group whose node died (UNSETTLED_MAX_MS in nats.c). */
enum { UNSETTLED_FIRST_MS = 5, UNSETTLED_MAX_MS = 500 };

static void drain_unsettled_later(tern_session *s) {
  uint64_t ms = UNSETTLED_FIRST_MS;
  for (unsigned i = 0; i < s->drain_unsettled && ms < UNSETTLED_MAX_MS; i++) ms *= 2;
  if (ms > UNSETTLED_MAX_MS) ms = UNSETTLED_MAX_MS;
  if (s->drain_unsettled < UINT8_MAX) s->drain_unsettled++;
  s->drain_retry_at = uv_now(s->app->loop) + ms;
  if (!s->drain_waiting) wait_in_list(s);
  tern_app_pace_after(s->app, ms);
}

static void on_drain_done(tern_store_op *op) {
  tern_session *s = op->arg;
  tern_op_inbox *d = tern_op_as_inbox(op);
  s->drain_inflight = false;
  if (s->state == SESS_DRAIN && s->ep) {
    if (op->status == TERN_STORE_UNAVAILABLE && s->drain_fails < DRAIN_RETRIES) {
      drain_retry_later(s, op->err);
    } else if (op->status != TERN_STORE_OK) {
      TERN_ERROR("drain failed", "device=%s err=%s", s->dev ? s->dev->id : "-", tern_log_quote(op->err));
      tern_session_close(s, TERN_CLOSE_INTERNAL);
    } else {
      s->drain_fails = 0;
      for (size_t i = 0; i < d->nitems && s->ep; i++) {
        tern_store_item *it = &d->items[i];
        tern_env_view v;
        if (it->seq <= s->sent_seq) continue;
        if (tern_env_unpack((const uint8_t *)it->value.data, it->value.len, &v) < 0) {
          TERN_ERROR("corrupt envelope skipped", "device=%s seq=%llu", s->dev ? s->dev->id : "-",
                     (unsigned long long)it->seq);
          s->sent_seq = it->seq;
          continue;
        }
        write_envelope(s, it->seq, &v, it->body.len ? (const uint8_t *)it->body.data : NULL, it->body.len);
      }
      if (!d->unsettled) s->drain_unsettled = 0;
      if (s->ep) {
        if (d->unsettled && !d->nitems && !s->event_in_drain) {
          drain_unsettled_later(s);
        } else if (d->more || d->nitems || s->event_in_drain) {
          /* read again until a read returns nothing new: envelopes committed while we
           * drained are then included, and later ones come live. An event that came while
           * the read was out may name an envelope the read did not see yet (another node's:
           * its entry and its event reach this node by different paths), so one more read. */
          drain_step(s);
        } else {
          s->ep_ops->synced(s->ep, s->sent_seq);
          s->state = SESS_LIVE;
        }
      }
    }
  }
  tern_session_unref(s);
}

static void drain_step(tern_session *s) {
  tern_app *a = s->app;
  if (s->drain_inflight || !s->ep || !s->dev) return;
  /* pace: don't read more from the store than the client is taking; a step reads at most
   * what fits in half of ws.max_outbound, so a reading client is never closed for it */
  size_t half = (size_t)a->cfg->ws_max_outbound / 2, queued = s->ep_ops->backlog(s->ep);
  if (queued > half / 2) {
    if (!s->drain_waiting) {
      wait_in_list(s);
      tern_app_pace_soon(a);
    }
    return;
  }
  s->drain_inflight = true;
  s->event_in_drain = false; /* what was announced before this read is in it */
  tern_op_inbox *op = tern_op_inbox_new(TERN_OP_DRAIN, on_drain_done, s);
  tern_store_set_str(&op->inbox, s->dev->id);
  op->seq = s->sent_seq;
  op->max_bytes = TERN_MIN((size_t)a->cfg->inbox_drain_batch, half - queued);
  tern_session_ref(s);
  tern_app_submit(a, &op->op);
}

/* The next session off a list taken from app->waiting; the list's reference to it passes to
 * the caller. NULL at the end. */
static tern_session *unlist(tern_session **list) {
  tern_session *s = *list;
  if (!s) return NULL;
  *list = s->wait_next;
  s->wait_next = NULL;
  s->drain_waiting = false;
  return s;
}

void tern_session_pace(tern_app *a) {
  tern_session *list = a->waiting, *s;
  a->waiting = NULL;
  while ((s = unlist(&list))) {
    uint64_t now = uv_now(a->loop);
    if (s->state == SESS_DRAIN && s->ep && s->drain_retry_at > now) { /* not yet: stays listed */
      s->wait_next = a->waiting;
      a->waiting = s;
      s->drain_waiting = true;
      tern_app_pace_after(a, s->drain_retry_at - now);
      continue;
    }
    s->drain_retry_at = 0;
    if (s->state == SESS_DRAIN && s->ep) drain_step(s);
    tern_session_unref(s);
  }
}

void tern_session_unwait_all(tern_app *a) {
  tern_session *list = a->waiting, *s;
  a->waiting = NULL;
  while ((s = unlist(&list))) tern_session_unref(s);
}

static bool recheck_device(tern_device *d, void *arg) {
  (void)arg;
  tern_session *s = d->session;
  if (!s || !s->ep) return true;
  if (s->state == SESS_LIVE) {
    s->state = SESS_DRAIN;
    drain_step(s);
  } else if (s->state == SESS_DRAIN) {
    s->event_in_drain = true; /* the read out now may be older than what is missed: once more */
  }
  return true;
}

void tern_session_recheck_all(tern_app *a) { tern_dir_each_device(a->dir, recheck_device, NULL); }

void tern_session_deliver(tern_session *s, uint64_t seq, const uint8_t *rec, size_t len, const uint8_t *body,
                          size_t body_len) {
  if (!s->ep || seq <= s->sent_seq) return;
  if (s->state != SESS_LIVE) { /* a drain in progress reads it, or the one after it does */
    s->event_in_drain = true;
    return;
  }
  if (seq != s->sent_seq + 1 || !rec) {
    /* (no record: another node's envelope announced without it, see store.c remote_envelope) */
    /* a gap: something in between was not written live; read it from the store in order */
    s->state = SESS_DRAIN;
    drain_step(s);
    return;
  }
  tern_env_view v;
  if (tern_env_unpack(rec, len, &v) < 0) return;
  write_envelope(s, seq, &v, body, body_len);
}

int64_t tern_user_last_seen(tern_app *a, tern_user *u) {
  int64_t ls = u->last_seen;
  for (tern_device *d = u->devices; d; d = d->next_in_user) {
    if (d->session && d->session->ep) {
      int64_t rx = tern_session_last_rx(d->session);
      if (rx > ls) ls = rx;
    }
  }
  return ls;
}

void tern_session_detach(tern_session *s) {
  tern_device *d = s->dev;
  if (!d) return;
  if (s->watching_inbox) {
    tern_store_unwatch(s->app->port, d->id, s);
    s->watching_inbox = false;
  }
  if (d->session == s) d->session = NULL;
  s->dev = NULL;
}

/* The session stops being its device's connection: the user may go offline, and last seen is
 * kept. */
static void leave_device(tern_session *s) {
  tern_app *a = s->app;
  tern_device *d = s->dev;
  if (!d || d->session != s) {
    tern_session_detach(s);
    return;
  }
  tern_user *u = d->user;
  int64_t rx = tern_session_last_rx(s);
  tern_session_detach(s);
  if (rx > u->last_seen) u->last_seen = rx;
  if (rx > d->last_seen) d->last_seen = rx;
  u->online--;
  tern_app_persist_last_seen(a, u, d);
  tern_cluster_disconnected(a, d, rx);
  if (tern_presence_online(a, u) == 0) tern_presence_changed(a, u);
}

static void do_auth(tern_session *s, tern_frame *f, uint64_t received_ns) {
  tern_app *a = s->app;
  tern_device *d = tern_dir_by_token(a->dir, f->token, strlen(f->token));
  if (!d && tern_session_catch_up(s, f, received_ns)) return; /* made on another node a moment ago? */
  if (!d) {
    tern_session_error(s, NULL, "unauthorized", "the token is not valid", NULL);
    tern_session_close(s, TERN_CLOSE_UNAUTHORIZED);
    return;
  }
  if (d->session) {
    tern_session *old = d->session;
    TERN_INFO("connection replaced", "device=%s", d->id);
    tern_session_close(old, TERN_CLOSE_REPLACED);
    if (d->session == old) leave_device(old); /* an endpoint that reports gone later */
  }
  s->dev = d;
  d->session = s;
  /* Watch before the first drain: whatever commits from now on raises an event, and
   * whatever committed before is in the drain. */
  tern_store_watch(a->port, d->id, tern_router_on_envelope, s);
  s->watching_inbox = true;
  tern_pushglue_online(a, d);
  s->ep_ops->authed(s->ep);
  tern_user *u = d->user;
  u->online++;
  d->last_seen = s->authed_at = tern_now_ms();
  tern_cluster_connected(a, d, s->authed_at);
  if (tern_presence_online(a, u) == 1) tern_presence_changed(a, u);
  s->ep_ops->ready(s->ep, u->name, d->id, tern_now_ms());
  s->state = SESS_DRAIN;
  TERN_DEBUG("authenticated", "user=%s device=%s", u->name, d->id);
  drain_step(s);
}

static const char first_frame_msg[] = "the first frame must be {\"type\":\"auth\",\"token\":...}";

void tern_session_bad_request(tern_session *s, const char *id, const char *code, const char *message) {
  if (s->app->stopping) return;
  if (s->state == SESS_AUTH) {
    tern_session_error(s, NULL, "unauthorized", first_frame_msg, NULL);
    tern_session_close(s, TERN_CLOSE_UNAUTHORIZED);
    return;
  }
  tern_session_error(s, id, code, message, NULL);
}

static void dispatch(tern_session *s, tern_frame *f, uint64_t received_ns) {
  tern_app *a = s->app;
  if (a->stopping || !s->ep) return; /* after a shutdown signal, new frames are not taken */
  if (s->state == SESS_AUTH) {
    if (f->type == TERN_FRAME_AUTH) {
      do_auth(s, f, received_ns);
    } else {
      tern_session_error(s, NULL, "unauthorized", first_frame_msg, NULL);
      tern_session_close(s, TERN_CLOSE_UNAUTHORIZED);
    }
    return;
  }
  if (!s->dev) return;
  switch (f->type) {
    case TERN_FRAME_AUTH:
      tern_session_error(s, NULL, "bad_request", "already authenticated", NULL);
      break;
    case TERN_FRAME_SEND:
      tern_router_send(a, s, f, received_ns);
      break;
    case TERN_FRAME_ACK:
      tern_receipts_ack(a, s, f->seq);
      break;
    case TERN_FRAME_READ:
      tern_receipts_read(a, s, f);
      break;
    case TERN_FRAME_WATCH:
      tern_presence_watch(a, s, f);
      break;
    case TERN_FRAME_UNWATCH:
      tern_presence_unwatch(a, s, f);
      break;
    case TERN_FRAME_TYPING:
      tern_presence_typing(a, s, f);
      break;
    case TERN_FRAME_PING:
      s->ep_ops->pong(s->ep, tern_now_ms());
      break;
    case TERN_FRAME_DECRYPT_ERROR:
      tern_router_decrypt_error(a, s, f, received_ns);
      break;
  }
}

/* Holds f (taking over its strings) at the end of the held queue. */
static void hold(tern_session *s, tern_frame *f, uint64_t received_ns) {
  if (s->nheld == s->held_cap) {
    s->held_cap = s->held_cap ? s->held_cap * 2 : 4;
    s->held = tern_realloc(s->held, s->held_cap * sizeof *s->held);
  }
  s->held[s->nheld].f = *f;
  s->held[s->nheld++].received_ns = received_ns;
  memset(f, 0, sizeof *f);
}

static bool holding(const tern_session *s) { return s->catching_up || s->paused; }

/* Runs every held frame, in the order it came, until one of them holds the rest again.
 * final: a directory miss among them is final (the directory has caught up). */
static void run_held(tern_session *s, bool final) {
  s->replaying = final;
  size_t n = s->nheld;
  tern_held_frame *h = s->held;
  s->held = NULL;
  s->nheld = s->held_cap = 0;
  for (size_t i = 0; i < n; i++) {
    if (s->ep && !holding(s)) dispatch(s, &h[i].f, h[i].received_ns);
    else if (s->ep) hold(s, &h[i].f, h[i].received_ns); /* a frame among them holds the rest again */
    tern_frame_free(&h[i].f);
  }
  tern_free(h);
  s->replaying = false;
}

static void on_caught_up(tern_store_op *op) {
  tern_session *s = op->arg;
  s->catching_up = false;
  /* a miss among the held frames is final: the directory has seen everything committed
   * before the first of them missed */
  run_held(s, true);
  tern_session_unref(s);
}

void tern_session_hold(tern_session *s, tern_frame *f, uint64_t received_ns) {
  hold(s, f, received_ns);
  s->paused = true;
}

void tern_session_release(tern_session *s) {
  s->paused = false;
  if (!s->catching_up) run_held(s, false);
}

bool tern_session_catch_up(tern_session *s, tern_frame *f, uint64_t received_ns) {
  tern_app *a = s->app;
  if (s->replaying || !tern_store_port_shared(a->port)) return false;
  hold(s, f, received_ns);
  if (!s->catching_up) {
    s->catching_up = true;
    tern_session_ref(s);
    tern_app_submit(a, &tern_op_inbox_new(TERN_OP_CATCH_UP, on_caught_up, s)->op);
  }
  return true;
}

void tern_session_request(tern_session *s, tern_frame *f, uint64_t received_ns) {
  if (holding(s)) {
    /* frames keep their order behind one that waits (for the directory, or its own step) */
    if (s->nheld >= HELD_MAX) {
      tern_session_error(s, f->id, "rate_limited", "too many requests while the server looks up a name; send again",
                         NULL);
      return;
    }
    hold(s, f, received_ns);
    return;
  }
  dispatch(s, f, received_ns);
}

void tern_session_gone(tern_session *s) {
  if (s->state == SESS_GONE) return;
  tern_presence_drop_session(s->app, s);
  leave_device(s);
  s->ep = NULL;
  s->state = SESS_GONE;
  tern_session_unref(s);
}
