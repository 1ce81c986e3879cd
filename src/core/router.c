/* router: what happens to a message between the sender's frame and the recipients' sockets:
 * the msg_id, the fan-out list, the durable append, the `sent` answer, live delivery, and the
 * receipts that acks and reads make. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/core.h"

/* Context of a send while its APPEND is in the store. */
typedef struct send_ctx {
  tern_app *app;          /* owner */
  tern_session *s;        /* the sender's session (referenced) */
  char id[TERN_CLIENT_ID_MAX + 1]; /* the client's id */
  char msg_id[40];        /* the id we made */
  char from[TERN_USERNAME_MAX + 1]; /* sender */
  char to[TERN_USERNAME_MAX + 1];   /* recipient */
  char *body;             /* a copy for push previews, or NULL */
  size_t body_len;
  int64_t ts;             /* message time */
  uint64_t received_ns;   /* when the frame arrived, for tern_send_to_sent_seconds */
} send_ctx;

void tern_router_fanout(tern_store_op *op, tern_user *from_user, tern_device *from_dev, tern_user *to,
                        size_t v_recipient, size_t v_copy, bool cap) {
  if (to != from_user) {
    if (to->devices) {
      for (tern_device *d = to->devices; d; d = d->next_in_user) tern_store_op_add_target(op, d->id, v_recipient, cap);
    } else {
      char inbox[TERN_USERNAME_MAX + 2];
      snprintf(inbox, sizeof inbox, "@%s", to->name);
      tern_store_op_add_target(op, inbox, v_recipient, cap);
    }
  }
  for (tern_device *d = from_user->devices; d; d = d->next_in_user) {
    if (d != from_dev) tern_store_op_add_target(op, d->id, v_copy, false);
  }
}

/* 48 bits that look random, from a generator seeded once per process (splitmix64). They keep
 * msg_ids of different processes apart; nothing relies on their being unguessable, and a
 * getrandom system call per message was the loop thread's single largest system call. */
static uint64_t id_noise(void) {
  static uint64_t state;
  static bool seeded;
  if (!seeded) {
    tern_random(&state, sizeof state);
    seeded = true;
  }
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (z ^ (z >> 31)) & 0xffffffffffffull;
}

/* msg ids sort in the order this process made them: 12 hex digits of ms, 4 of a counter within
 * the ms (so two messages of one ms keep their order), then 12 hex digits of noise. A clock
 * that steps back keeps using the last ms, so the order holds across that too. */
static void make_msg_id(char out[40], int64_t ts) {
  static int64_t last_ms;
  static unsigned counter;
  if (ts > last_ms) {
    last_ms = ts;
    counter = 0;
  } else if (++counter > 0xffff) {
    last_ms++; /* over 65,536 in one ms: borrow the next ms */
    counter = 0;
  }
  static const char hex[] = "0123456789abcdef";
  uint64_t parts[3] = {(uint64_t)last_ms & 0xffffffffffffull, counter, id_noise()};
  static const int digits[3] = {12, 4, 12};
  char *p = out;
  for (int i = 0; i < 3; i++)
    for (int d = digits[i] - 1; d >= 0; d--) *p++ = hex[(parts[i] >> (4 * d)) & 0xf];
  *p = '\0';
}

static void send_error(tern_session *s, const char *id, const char *code, const char *message) {
  if (!s->conn) return;
  tern_buf b = {0};
  tern_enc_error(&b, id, code, message, NULL);
  tern_conn_ws_text(s->conn, b.data, b.len);
  tern_buf_free(&b);
}

void tern_router_deliver_appended(tern_app *a, tern_store_op *op) {
  for (size_t i = 0; i < op->ntargets; i++) {
    tern_store_target *t = &op->targets[i];
    tern_device *d = tern_dir_device(a, t->inbox);
    if (d && d->session) tern_session_deliver(d->session, t->seq, t->value, t->value_len);
  }
}

static void on_send_done(tern_store_op *op) {
  send_ctx *c = op->arg;
  tern_app *a = c->app;
  tern_session *s = c->s;
  tern_buf b = {0};
  switch (op->status) {
    case TERN_STORE_OK:
      a->metrics.messages_sent++;
      tern_enc_sent(&b, c->id, c->msg_id, c->ts);
      break;
    case TERN_STORE_DUPLICATE:
      tern_enc_sent(&b, c->id, op->dup_msg_id, op->dup_ts);
      break;
    case TERN_STORE_FULL:
      tern_enc_error(&b, c->id, "rate_limited", "the recipient's inbox is full; try again later", NULL);
      break;
    default:
      tern_enc_error(&b, c->id, "internal", "the message could not be stored", NULL);
      break;
  }
  if (s->conn) tern_conn_ws_text(s->conn, b.data, b.len);
  tern_buf_free(&b);
  if (op->status == TERN_STORE_OK) {
    tern_hist_observe(&a->metrics.send_to_sent, (double)(tern_mono_ns() - c->received_ns) / 1e9);
    tern_router_deliver_appended(a, op);
    if (strcmp(c->from, c->to) != 0) {
      /* only a message from another user wakes a device that has no connection */
      for (size_t i = 0; i < op->ntargets; i++) {
        tern_device *d = tern_dir_device(a, op->targets[i].inbox);
        if (d && !d->session && !strcmp(d->user->name, c->to)) tern_pushglue_offline(a, d, c->from, c->body, c->body_len);
      }
    }
  }
  tern_session_unref(s);
  tern_free(c->body);
  tern_free(c);
  tern_app_op_done(a);
}

/* Token bucket per user: limits.send_burst deep, refilled at limits.send_rate per second. */
static bool rate_ok(tern_app *a, tern_user *u) {
  int64_t now = tern_now_ms();
  double burst = (double)a->cfg->limits_send_burst;
  u->tokens += (double)(now - u->tokens_at) * a->cfg->limits_send_rate / 1000.0;
  if (u->tokens > burst) u->tokens = burst;
  u->tokens_at = now;
  if (u->tokens < 1.0) return false;
  u->tokens -= 1.0;
  return true;
}

void tern_router_send(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns) {
  tern_device *dev = s->dev;
  tern_user *from = dev->user;
  if (f->to_invalid) {
    send_error(s, f->id, "no_such_user", "there is no user by that name");
    return;
  }
  tern_user *to = tern_dir_user(a, f->to);
  if (!to || to->pending) {
    send_error(s, f->id, "no_such_user", "there is no user by that name");
    return;
  }
  /* The sender must own the media or have been sent it (forwarding); anything else is the
   * same answer as an unknown id, so existence is never revealed. */
  const tern_media_rec *mrec = NULL;
  if (f->media_id) {
    mrec = a->media ? tern_media_get(a->media, f->media_id) : NULL;
    if (!mrec || !tern_media_can_read(mrec, from->name)) {
      send_error(s, f->id, "no_such_media", "no media with that id is available to you");
      return;
    }
  }
  if (!rate_ok(a, from)) {
    send_error(s, f->id, "rate_limited", "you are sending too fast; slow down");
    return;
  }
  tern_buf media_json = {0};
  if (mrec) {
    /* The envelope carries the metadata; the recipient may read the media from now on. The
     * grant's KV_PUT is submitted before the APPEND below, and store ops complete in order,
     * so `sent` (written when the APPEND completes) implies both are durable. Copy the JSON
     * first: the grant may touch the record. */
    tern_media_rec_json(mrec, &media_json);
    tern_media_grant(a->media, f->media_id, to->name, to->ndevices > 0 ? (uint32_t)to->ndevices : 1);
  }
  send_ctx *c = TERN_NEW(send_ctx);
  c->app = a;
  c->s = s;
  snprintf(c->id, sizeof c->id, "%s", f->id);
  c->ts = tern_now_ms();
  c->received_ns = received_ns;
  make_msg_id(c->msg_id, c->ts);
  snprintf(c->from, sizeof c->from, "%s", from->name);
  snprintf(c->to, sizeof c->to, "%s", to->name);
  if (a->cfg->push_previews && f->body) {
    c->body = tern_memdup(f->body, f->body_len);
    c->body_len = f->body_len;
  }

  tern_buf tail = {0};
  tern_enc_msg_tail(&tail, c->msg_id, from->name, dev->id, to->name, c->ts, f->body, f->body_len,
                    mrec ? tern_buf_cstr(&media_json) : NULL);
  tern_buf_free(&media_json);
  tern_store_op *op = tern_store_op_new(TERN_OP_APPEND, on_send_done, c);
  size_t vlen;
  /* A recipient with one inbox (one device, or none yet) gets the only copy: its first ack
   * delivers the message, so no delivery token is stored (store.h, TERN_ENV_F_SOLE). */
  bool sole = to != from && to->ndevices <= 1;
  uint8_t flags = to == from ? 0 : sole ? TERN_ENV_F_RECEIPT | TERN_ENV_F_SOLE : TERN_ENV_F_RECEIPT;
  uint8_t *v = tern_env_pack(TERN_ENV_MSG, flags, c->ts, c->msg_id, from->name, tail.data, tail.len, &vlen);
  size_t v_recipient = tern_store_op_add_value(op, v, vlen);
  tern_free(v);
  v = tern_env_pack(TERN_ENV_MSG, 0, c->ts, c->msg_id, from->name, tail.data, tail.len, &vlen);
  size_t v_copy = tern_store_op_add_value(op, v, vlen);
  tern_free(v);
  tern_buf_free(&tail);
  tern_router_fanout(op, from, dev, to, v_recipient, v_copy, true);

  char key[TERN_DEVICE_ID_LEN + TERN_CLIENT_ID_MAX + 2];
  snprintf(key, sizeof key, "%s/%s", dev->id, f->id);
  tern_store_op_set_str(&op->dedup_key, key);
  tern_store_op_set_str(&op->msg_id, c->msg_id);
  if (to != from && !sole) tern_store_op_set_str(&op->token_from, from->name);
  op->now = c->ts;
  tern_session_ref(s);
  tern_app_submit(a, op);
}

/* ---- receipts ---- */

static void on_receipt_done(tern_store_op *op) {
  tern_app *a = op->arg;
  if (op->status == TERN_STORE_OK) tern_router_deliver_appended(a, op);
  else TERN_ERROR("receipt not stored", "err=%s", tern_log_quote(op->err));
  tern_app_op_done(a);
}

/* Appends one receipt envelope (from = the messages' sender, by = who got/read them) to the
 * sender's devices and, for reads, to the reader's other devices. */
static void make_receipt(tern_app *a, bool read, tern_user *sender, tern_user *by, tern_device *by_dev,
                         const char *const *ids, size_t n) {
  int64_t ts = tern_now_ms();
  tern_buf tail = {0};
  tern_enc_receipt_tail(&tail, read, sender->name, by->name, ids, n, ts);
  tern_store_op *op = tern_store_op_new(TERN_OP_APPEND, on_receipt_done, a);
  size_t vlen;
  uint8_t *v = tern_env_pack(TERN_ENV_RECEIPT, 0, ts, "", "", tail.data, tail.len, &vlen);
  size_t vi = tern_store_op_add_value(op, v, vlen);
  tern_free(v);
  tern_buf_free(&tail);
  if (read) {
    /* to the sender's devices, and the reader's other devices (to clear unread counters) */
    tern_router_fanout(op, by, by_dev, sender, vi, vi, false);
  } else {
    /* to every device of the sender only (a sender with no device left has nobody to tell) */
    tern_router_fanout(op, sender, NULL, sender, vi, vi, false);
  }
  op->now = ts;
  if (read) a->metrics.receipts_read++;
  else a->metrics.receipts_delivered++;
  tern_app_submit(a, op);
}

typedef struct ack_ctx {
  tern_app *app;    /* owner */
  tern_session *s;  /* the acking session (referenced) */
  char user[TERN_USERNAME_MAX + 1]; /* who acked */
} ack_ctx;

static void do_read(tern_app *a, tern_session *s, tern_user *reader, tern_frame *f);

static void on_ack_done(tern_store_op *op) {
  ack_ctx *c = op->arg;
  tern_app *a = c->app;
  tern_session *s = c->s;
  tern_user *by = tern_dir_user(a, c->user);
  if (op->status != TERN_STORE_OK) {
    TERN_ERROR("ack failed", "err=%s", tern_log_quote(op->err));
  } else if (by && op->ndelivered) {
    /* one delivered receipt per sender, listing every message this ack newly delivered */
    bool *done = tern_calloc(op->ndelivered, sizeof *done);
    const char **ids = tern_malloc(op->ndelivered * sizeof *ids);
    for (size_t i = 0; i < op->ndelivered; i++) {
      if (done[i]) continue;
      size_t n = 0;
      for (size_t j = i; j < op->ndelivered; j++) {
        if (!done[j] && strcmp(op->delivered[j].from, op->delivered[i].from) == 0) {
          done[j] = true;
          ids[n++] = op->delivered[j].msg_id;
        }
      }
      tern_user *sender = tern_dir_user(a, op->delivered[i].from);
      if (sender && sender != by) make_receipt(a, false, sender, by, NULL, ids, n);
    }
    tern_free(ids);
    tern_free(done);
  }
  /* reads that arrived behind this ack go out now, so a sender sees delivered before read */
  if (--s->acks_inflight == 0 && s->nreads) {
    size_t n = s->nreads;
    s->nreads = 0;
    for (size_t i = 0; i < n; i++) {
      if (by) do_read(a, s, by, &s->reads[i]);
      tern_frame_free(&s->reads[i]);
    }
  }
  tern_session_unref(s);
  tern_free(c);
  tern_app_op_done(a);
}

void tern_router_ack(tern_app *a, tern_session *s, uint64_t seq) {
  if (seq > s->sent_seq) seq = s->sent_seq; /* clamp to what this connection was sent */
  if (seq <= s->acked_seq) return;
  s->acked_seq = seq;
  ack_ctx *c = TERN_NEW(ack_ctx);
  c->app = a;
  c->s = s;
  tern_session_ref(s);
  s->acks_inflight++;
  snprintf(c->user, sizeof c->user, "%s", s->dev->user->name);
  tern_store_op *op = tern_store_op_new(TERN_OP_ACK, on_ack_done, c);
  tern_store_op_set_str(&op->inbox, s->dev->id);
  op->seq = seq;
  tern_app_submit(a, op);
}

static void do_read(tern_app *a, tern_session *s, tern_user *reader, tern_frame *f) {
  if (f->to_invalid || !f->peer) {
    send_error(s, NULL, "no_such_user", "there is no user by that name");
    return;
  }
  tern_user *peer = tern_dir_user(a, f->peer);
  if (!peer || peer->pending) {
    if (s->conn) {
      tern_buf b = {0};
      tern_enc_error(&b, NULL, "no_such_user", "there is no user by that name", f->peer);
      tern_conn_ws_text(s->conn, b.data, b.len);
      tern_buf_free(&b);
    }
    return;
  }
  make_receipt(a, true, peer, reader, s->dev, (const char *const *)f->ids, f->nids);
}

void tern_router_read(tern_app *a, tern_session *s, tern_frame *f) {
  if (s->acks_inflight) {
    /* keep the frame (moving its strings) until the acks before it have made their receipts */
    if (s->nreads == s->reads_cap) {
      s->reads_cap = s->reads_cap ? s->reads_cap * 2 : 4;
      s->reads = tern_realloc(s->reads, s->reads_cap * sizeof *s->reads);
    }
    s->reads[s->nreads++] = *f;
    memset(f, 0, sizeof *f);
    return;
  }
  do_read(a, s, s->dev->user, f);
}
