/* drv_xmpp.c: the XMPP driver: the session logic of xmpp.c on libuv TCP connections, so that
 * the same scenario (same engine, same verification, same report) runs against ejabberd and
 * Prosody.
 *
 * Mapping onto the engine's stages:
 *   - sent:      the server's XEP-0198 <a h=/> covering the message stanza (the server has
 *                taken responsibility for it: routed it, or stored it offline);
 *   - msg:       the <message/> at the recipient; the stanza id "g<gidx>" is the id a client
 *                de-duplicates by;
 *   - delivered: the XEP-0184 <received/> the recipient's client sends back on reading it,
 *                routed by the server to the sender.
 * Provisioning is XEP-0077 in-band registration, one short connection per user (a user that
 * exists already answers "conflict", which is fine: the password is the run's).
 *
 * I/O: every connection is a byte stream (net/stream.h, as in libtern-client): what a session
 * queues moves into the stream and is written once per loop iteration per connection; reads
 * land in the stream loop's shared buffer, and the tokenizer keeps its own partial state, so
 * the stream keeps no input tail. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "bench/bench_int.h"
#include "bench/xmpp.h"
#include "net/stream.h"

#define MAX_ATTEMPTS 5
#define RETRY_BASE_MS 100
#define CONNECT_TIMEOUT_MS 60000
#define JOINS_IN_FLIGHT 256 /* room joins pending at once: a join costs the room O(occupants) */

typedef struct xmpp_drv xmpp_drv;
typedef struct reg_task reg_task;

typedef struct xconn {
  xmpp_drv *t;
  tern_stream *st;        /* the socket, until its close callback */
  uv_connect_t creq;
  tern_bench_xmpp sess;
  tern_bench_dev *d;      /* the device, or NULL for a registration connection */
  reg_task *task;         /* the registration it serves */
  bool connected;
  bool closing;           /* the stream is closing */
  bool close_after_write; /* close once everything queued is written */
  char why[64];           /* why it closed, for the engine */
} xconn;

struct reg_task {
  xmpp_drv *t;
  uv_timer_t timer;       /* retry backoff */
  uint32_t user;
  uint32_t attempts;
  bool busy;
};

struct xmpp_drv {
  tern_bench *b;
  struct sockaddr_storage addr; /* the server */
  tern_stream_loop *sl;   /* the shared read buffer and the once-per-iteration flush */
  reg_task *tasks;
  uint32_t n_tasks;
  uint32_t next_user, users_total, users_done;
  uv_timer_t progress;
  uv_timer_t acks;        /* asks for the acks of devices idle 50 ms with stanzas unasked */
  bool failed;
  char why[256];
  /* group mode: every room's first member joins (and so creates it), then everyone else */
  uint8_t *joined;        /* a bit per membership g·K + position */
  uint64_t joins_total, joins_done, joins_sent;
  uint32_t join_inflight;
  uint32_t jq_g, jq_j;    /* the next membership to join */
  bool creating;          /* still in the first pass (position 0 of every group) */
  bool groups_reported;
};

static xmpp_drv *X(tern_bench *b) { return b->drv_ctx; }

/* ---- connections ---- */

static void task_done(reg_task *k, bool ok, const char *why);

static void conn_close(xconn *c, const char *why) {
  if (c->closing) return;
  c->closing = true;
  if (!c->why[0]) snprintf(c->why, sizeof c->why, "%s", why);
  tern_stream_close(c->st);
}

/* Moves what the session queued into the stream (without a copy while nothing else waits). */
static void push_out(xconn *c) {
  if (!c->closing && c->sess.out.len) tern_stream_write_buf(c->st, &c->sess.out);
}

/* Closes once everything queued has been written (see on_flush). */
static void close_after_write(xconn *c) {
  c->close_after_write = true;
  push_out(c);
  if (c->connected && !c->closing) tern_stream_kick(c->st);
}

static void on_closed(tern_stream *st, void *owner) {
  xconn *c = owner;
  xmpp_drv *t = c->t;
  if (c->d) {
    tern_bench_dev *d = c->d;
    d->conn = NULL;
    if (t->b) tern_bench_on_closed(t->b, d, c->why);
  } else if (c->task && c->sess.state != TERN_BENCH_XS_DONE) {
    task_done(c->task, false, c->why[0] ? c->why : "closed");
  }
  tern_bench_xmpp_free(&c->sess);
  tern_free(c);
}

static size_t on_data(tern_stream *st, char *data, size_t len, void *owner) {
  xconn *c = owner;
  if (c->closing) return len;
  tern_bench_xmpp_feed(&c->sess, data, len);
  if (c->closing) return len;
  push_out(c);
  if (c->sess.state == TERN_BENCH_XS_DONE && !c->close_after_write) close_after_write(c);
  return len;
}

static void on_end(tern_stream *st, int err, bool write, void *owner) {
  conn_close(owner, err == UV_EOF ? "eof" : uv_err_name(err));
}

static void on_flush(tern_stream *st, void *owner) {
  xconn *c = owner;
  if (c->close_after_write && !tern_stream_outbound(st)) conn_close(c, "closed");
}

static const tern_stream_cbs xconn_cbs = {
    .on_data = on_data,
    .on_end = on_end,
    .on_flush = on_flush,
    .on_close = on_closed,
};

static void on_connect(uv_connect_t *req, int status) {
  xconn *c = req->data;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c, uv_err_name(status));
    return;
  }
  c->connected = true;
  uv_tcp_nodelay(tern_stream_handle(c->st), 1);
  push_out(c);
  char err[128];
  int rc = tern_stream_start(c->st, err, sizeof err);
  if (rc < 0) {
    conn_close(c, uv_err_name(rc));
    return;
  }
  if (c->close_after_write) tern_stream_kick(c->st);
}

static void joins_pump(xmpp_drv *t);

/* Session events for device connections. */
static void on_sess(void *arg, const tern_bench_xmpp_event *ev) {
  xconn *c = arg;
  tern_bench *b = c->t->b;
  tern_bench_dev *d = c->d;
  if (!d || !b) return;
  switch (ev->type) {
    case TERN_BENCH_XMPP_EV_READY:
      tern_bench_on_ready(b, d);
      tern_bench_on_synced(b, d);
      break;
    case TERN_BENCH_XMPP_EV_SENT:
      tern_bench_on_sent(b, d, ev->gidx, ev->gidx + 1);
      break;
    case TERN_BENCH_XMPP_EV_JOINED: {
      xmpp_drv *t = c->t;
      uint32_t g = tern_bench_group_of_id(b, ev->group, ev->group_len);
      uint32_t pos = g == UINT32_MAX ? UINT32_MAX : tern_bench_group_pos(b, g, d->user);
      if (pos == UINT32_MAX || !t->joined) {
        tern_bench_count_error(b, "muc:joined_unknown_room");
        break;
      }
      uint64_t m = (uint64_t)g * b->group_size + pos;
      if (t->joined[m >> 3] & (1u << (m & 7))) break; /* a repeated self-presence */
      t->joined[m >> 3] |= (uint8_t)(1u << (m & 7));
      t->joins_done++;
      if (t->join_inflight) t->join_inflight--;
      joins_pump(t);
      break;
    }
    case TERN_BENCH_XMPP_EV_MSG: {
      if (ev->group) {
        if (ev->from_len == strlen(b->users[d->user].name) &&
            memcmp(ev->from, b->users[d->user].name, ev->from_len) == 0) {
          /* The room reflects every message to its sender too (XEP-0045 7.4): a client
           * takes it as the server's confirmation, not as a message. */
          tern_bench_note_reflected(b, d);
          break;
        }
        uint64_t g = ev->id ? tern_bench_client_id_parse(ev->id, strlen(ev->id)) : UINT64_MAX;
        tern_bench_on_group_msg(b, d, ev->group, ev->group_len, ev->from, ev->from_len, g == UINT64_MAX ? 0 : g + 1,
                                ev->body, ev->body_len);
        break;
      }
      uint64_t g = ev->id ? tern_bench_client_id_parse(ev->id, strlen(ev->id)) : UINT64_MAX;
      tern_bench_on_msg(b, d, ev->from, ev->from_len, g == UINT64_MAX ? 0 : g + 1, ev->body, ev->body_len);
      break;
    }
    case TERN_BENCH_XMPP_EV_RECEIPT: {
      uint64_t g = ev->id ? tern_bench_client_id_parse(ev->id, strlen(ev->id)) : UINT64_MAX;
      if (g == UINT64_MAX) tern_bench_count_error(b, "receipt_for_unknown_id");
      else tern_bench_on_receipt(b, d, g, false);
      break;
    }
    case TERN_BENCH_XMPP_EV_ERROR: {
      xmpp_drv *t = c->t;
      if (ev->group && b->n_groups && t->joins_done < t->joins_total && !t->failed) {
        /* A room refused a join or its configuration: the setup cannot complete. */
        snprintf(t->why, sizeof t->why, "room %.*s refused %s: %s", (int)TERN_MIN(ev->group_len, 80), ev->group,
                 b->users[d->user].name, ev->cond ? ev->cond : "?");
        t->failed = true;
        uv_timer_stop(&t->progress);
        tern_bench_groups_done(b, -EPROTO, t->why);
        break;
      }
      uint64_t g = ev->id ? tern_bench_client_id_parse(ev->id, strlen(ev->id)) : UINT64_MAX;
      tern_bench_on_error(b, d, g, ev->cond);
      break;
    }
    case TERN_BENCH_XMPP_EV_FAILED:
      snprintf(c->why, sizeof c->why, "%s", ev->cond ? ev->cond : "failed");
      break;
    case TERN_BENCH_XMPP_EV_CLOSED:
      snprintf(c->why, sizeof c->why, "stream-closed");
      break;
    default:
      break;
  }
}

/* Returns 0, or a negative code with c already freed and no callback to come. */
static int conn_start(xmpp_drv *t, xconn *c, const char *bind_ip) {
  char err[128];
  int rc = tern_stream_open(t->sl, &tern_stream_transport_tcp, NULL, &xconn_cbs, c, &c->st, err, sizeof err);
  if (rc < 0) {
    tern_bench_xmpp_free(&c->sess);
    tern_free(c);
    return rc;
  }
  uv_tcp_t *tcp = tern_stream_handle(c->st);
  c->creq.data = c;
  if (bind_ip) {
    struct sockaddr_in local;
    rc = uv_ip4_addr(bind_ip, 0, &local);
    if (rc == 0) rc = uv_tcp_bind(tcp, (const struct sockaddr *)&local, 0);
  }
  if (rc == 0) rc = uv_tcp_connect(&c->creq, tcp, (const struct sockaddr *)&t->addr, on_connect);
  if (rc < 0) {
    /* No callback for a refused start: close quietly. */
    c->d = NULL;
    c->task = NULL;
    c->sess.state = TERN_BENCH_XS_DONE;
    conn_close(c, "refused");
    return rc;
  }
  return 0;
}

/* ---- provisioning ---- */

static void task_next(reg_task *k);
static void on_reg_sess(void *arg, const tern_bench_xmpp_event *ev);

static void check_all_done(xmpp_drv *t) {
  for (uint32_t i = 0; i < t->n_tasks; i++)
    if (t->tasks[i].busy) return;
  uv_timer_stop(&t->progress);
  tern_bench_provision_done(t->b, t->failed ? -EIO : 0, t->failed ? t->why : NULL);
}

static void task_start(reg_task *k) {
  xmpp_drv *t = k->t;
  tern_bench *b = t->b;
  xconn *c = TERN_NEW(xconn);
  c->t = t;
  c->task = k;
  tern_bench_xmpp_init(&c->sess, TERN_BENCH_XMPP_REGISTER, b->users[k->user].name, b->cfg.password, b->cfg.domain,
                       false, on_reg_sess, c);
  int rc = conn_start(t, c, NULL);
  if (rc < 0) task_done(k, false, uv_err_name(rc));
}

static void on_retry(uv_timer_t *h) { task_start(h->data); }

static void task_done(reg_task *k, bool ok, const char *why) {
  xmpp_drv *t = k->t;
  if (ok) {
    for (uint32_t i = 0; i < t->b->cfg.devices; i++) t->b->devs[t->b->users[k->user].first_dev + i].state = TERN_BENCH_DEV_IDLE;
    t->users_done++;
    task_next(k);
    if (!k->busy) check_all_done(t);
    return;
  }
  char code[80];
  snprintf(code, sizeof code, "register:%.60s", why);
  tern_bench_count_error(t->b, code);
  bool refused = strcmp(why, "ECONNREFUSED") == 0 && t->users_done == 0;
  if (!refused && ++k->attempts < MAX_ATTEMPTS) {
    uv_timer_start(&k->timer, on_retry, (uint64_t)RETRY_BASE_MS << k->attempts, 0);
    return;
  }
  snprintf(t->why, sizeof t->why, "register %s: %s", t->b->users[k->user].name, why);
  t->failed = true;
  k->busy = false;
  check_all_done(t);
}

static void on_reg_sess(void *arg, const tern_bench_xmpp_event *ev) {
  xconn *c = arg;
  reg_task *k = c->task;
  if (!k) return;
  if (ev->type == TERN_BENCH_XMPP_EV_REGISTERED) {
    c->task = NULL;
    tern_bench_xmpp_close(&c->sess);
    close_after_write(c);
    task_done(k, true, NULL);
  } else if (ev->type == TERN_BENCH_XMPP_EV_FAILED || ev->type == TERN_BENCH_XMPP_EV_CLOSED) {
    c->task = NULL;
    conn_close(c, ev->cond ? ev->cond : "closed");
    task_done(k, false, ev->cond ? ev->cond : "stream closed");
  }
}

static void task_next(reg_task *k) {
  xmpp_drv *t = k->t;
  tern_bench *b = t->b;
  while (t->next_user < b->n_users && !b->devs[b->users[t->next_user].first_dev].mine) t->next_user++;
  if (t->next_user >= b->n_users || t->failed) {
    k->busy = false;
    return;
  }
  k->user = t->next_user++;
  k->attempts = 0;
  k->busy = true;
  task_start(k);
}

static void on_progress(uv_timer_t *h) {
  xmpp_drv *t = h->data;
  tern_bench_provision_progress(t->b, t->users_done, t->users_total);
}

static int parse_hostport(const char *s, struct sockaddr_storage *out) {
  char host[256];
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s || (size_t)(colon - s) >= sizeof host) return -EINVAL;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port <= 0 || port > 65535) return -EINVAL;
  if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
  memset(out, 0, sizeof *out);
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0) return 0;
  return -EINVAL;
}

enum { ACK_IDLE_NS = 50 * 1000 * 1000 };

/* A device that sent and then went quiet still learns that its stanzas arrived: as a real
 * client asks for an ack when it goes idle. */
static void on_acks(uv_timer_t *h) {
  xmpp_drv *t = h->data;
  tern_bench *b = t->b;
  if (!b) return;
  uint64_t now = tern_mono_ns();
  for (uint32_t i = 0; i < b->n_devs; i++) {
    xconn *c = b->devs[i].conn;
    if (!c || c->closing || !c->sess.since_r) continue;
    tern_bench_xmpp_flush_idle(&c->sess, now, ACK_IDLE_NS);
    push_out(c);
  }
}

static void drv_provision(tern_bench *b) {
  xmpp_drv *t = TERN_NEW(xmpp_drv);
  b->drv_ctx = t;
  t->b = b;
  t->sl = tern_stream_loop_new(b->loop);
  uv_timer_init(b->loop, &t->progress);
  t->progress.data = t;
  uv_timer_init(b->loop, &t->acks);
  t->acks.data = t;
  uv_timer_start(&t->acks, on_acks, 50, 50);
  t->n_tasks = b->cfg.register_concurrency;
  t->tasks = tern_calloc(t->n_tasks, sizeof *t->tasks);
  for (uint32_t i = 0; i < t->n_tasks; i++) {
    t->tasks[i].t = t;
    uv_timer_init(b->loop, &t->tasks[i].timer);
    t->tasks[i].timer.data = &t->tasks[i];
  }
  if (parse_hostport(b->cfg.server, &t->addr) < 0) {
    tern_bench_provision_done(b, -EINVAL, "--server must be HOST:PORT (an IP address) for --protocol xmpp");
    return;
  }
  for (uint32_t u = 0; u < b->n_users; u++)
    if (b->devs[b->users[u].first_dev].mine) t->users_total++;
  uv_timer_start(&t->progress, on_progress, 1000, 1000);
  for (uint32_t i = 0; i < t->n_tasks; i++) task_next(&t->tasks[i]);
  check_all_done(t);
}

/* ---- the driver interface ---- */

static int drv_connect(tern_bench *b, tern_bench_dev *d, const char *bind_ip) {
  xmpp_drv *t = X(b);
  xconn *c = TERN_NEW(xconn);
  c->t = t;
  c->d = d;
  tern_bench_xmpp_init(&c->sess, TERN_BENCH_XMPP_LOGIN, b->users[d->user].name, b->cfg.password, b->cfg.domain,
                       b->cfg.receipts != TERN_BENCH_RECEIPTS_OFF, on_sess, c);
  /* asking once the window is full is for the old regime only, where the ack gates the window */
  tern_bench_xmpp_set_acks(&c->sess, b->cfg.xmpp_ack_every, b->cfg.xmpp_ack_every <= 1 ? b->cfg.window : 0);
  int rc = conn_start(t, c, bind_ip);
  if (rc < 0) return rc;
  d->conn = c;
  return 0;
}

static int drv_send(tern_bench *b, tern_bench_dev *d, uint64_t gidx, const tern_bench_user *to, const char *body,
                    size_t len) {
  xconn *c = d->conn;
  if (!c || c->closing) return -ENOTCONN;
  int rc = tern_bench_xmpp_send_msg(&c->sess, to->name, gidx, body, len);
  if (rc < 0) return rc;
  push_out(c);
  tern_bench_mark_dirty(b, d); /* the flush asks for an ack (<r/>) after this batch */
  return 0;
}

static int drv_send_group(tern_bench *b, tern_bench_dev *d, uint64_t gidx, uint32_t g, const char *body, size_t len) {
  xconn *c = d->conn;
  if (!c || c->closing) return -ENOTCONN;
  int rc = tern_bench_xmpp_send_groupchat(&c->sess, b->group_ids[g], gidx, body, len);
  if (rc < 0) return rc;
  push_out(c);
  tern_bench_mark_dirty(b, d);
  return 0;
}

/* ---- group mode: MUC rooms ----
 * Room g is "<prefix>g<g>" at the MUC service. Its first member joins first, which creates it
 * (and configures it as an instant room); once every room exists, the other members join, at
 * most JOINS_IN_FLIGHT at a time. Every member stays an occupant for the whole run. */

static void joins_pump(xmpp_drv *t) {
  tern_bench *b = t->b;
  if (!b || t->failed || t->groups_reported) return;
  uint32_t N = b->n_groups, K = b->group_size;
  while (t->join_inflight < JOINS_IN_FLIGHT) {
    if (t->creating && t->jq_g == N) {
      if (t->joins_done < N) return; /* wait for every room to exist */
      t->creating = false;
      t->jq_g = 0;
      t->jq_j = 1;
    }
    if (!t->creating && t->jq_g == N) break;
    uint32_t g = t->jq_g, j = t->jq_j;
    if (t->creating) t->jq_g++;
    else if (++t->jq_j == K) {
      t->jq_j = 1;
      t->jq_g++;
    }
    tern_bench_dev *d = &b->devs[b->users[tern_bench_group_member(b, g, j)].first_dev];
    xconn *c = d->conn;
    if (!c || c->closing || tern_bench_xmpp_join(&c->sess, b->group_ids[g], b->cfg.muc_domain) < 0) {
      snprintf(t->why, sizeof t->why, "%s is not connected to join room %s", b->users[d->user].name, b->group_ids[g]);
      t->failed = true;
      uv_timer_stop(&t->progress);
      tern_bench_groups_done(b, -ENOTCONN, t->why);
      return;
    }
    push_out(c);
    t->joins_sent++;
    t->join_inflight++;
  }
  if (t->joins_done == t->joins_total) {
    t->groups_reported = true;
    uv_timer_stop(&t->progress);
    tern_bench_groups_done(b, 0, NULL);
  }
}

static void on_jprogress(uv_timer_t *h) {
  xmpp_drv *t = h->data;
  tern_bench_groups_progress(t->b, t->creating ? "rooms created" : "memberships joined",
                             (uint32_t)(t->creating ? t->joins_done : t->joins_done), (uint32_t)t->joins_total);
}

static void drv_setup_groups(tern_bench *b) {
  xmpp_drv *t = X(b);
  for (uint32_t g = 0; g < b->n_groups; g++) {
    char id[72];
    int n = snprintf(id, sizeof id, "%sg%u", b->cfg.prefix, g);
    tern_bench_group_set_id(b, g, id, (size_t)n);
  }
  t->joins_total = (uint64_t)b->n_groups * b->group_size;
  t->joined = tern_calloc((size_t)(t->joins_total + 7) / 8, 1);
  t->creating = true;
  uv_timer_stop(&t->progress);
  uv_timer_start(&t->progress, on_jprogress, 1000, 1000);
  joins_pump(t);
}

static void drv_flush(tern_bench *b, tern_bench_dev *d) {
  xconn *c = d->conn;
  if (!c || c->closing) return;
  tern_bench_xmpp_flush(&c->sess);
  push_out(c);
}

static size_t drv_outbound(const tern_bench_dev *d) {
  const xconn *c = d->conn;
  return c ? c->sess.out.len + tern_stream_outbound(c->st) : 0;
}

static void drv_disconnect(tern_bench *b, tern_bench_dev *d) {
  xconn *c = d->conn;
  if (!c || c->closing) return;
  if (!c->connected) {
    conn_close(c, "closed");
    return;
  }
  tern_bench_xmpp_close(&c->sess);
  close_after_write(c);
}

static void drv_free(tern_bench *b) {
  xmpp_drv *t = X(b);
  if (!t) return;
  /* Whatever is still open closes without telling the engine. */
  for (uint32_t i = 0; i < b->n_devs; i++) {
    xconn *c = b->devs[i].conn;
    if (!c) continue;
    c->d = NULL;
    b->devs[i].conn = NULL;
    conn_close(c, "shutdown");
  }
  t->b = NULL;
  tern_stream_loop_free(t->sl); /* goes once the streams closed above have closed */
  uv_close((uv_handle_t *)&t->progress, NULL);
  uv_close((uv_handle_t *)&t->acks, NULL);
  for (uint32_t i = 0; i < t->n_tasks; i++) uv_close((uv_handle_t *)&t->tasks[i].timer, NULL);
}

static void drv_release(tern_bench *b) {
  xmpp_drv *t = X(b);
  if (!t) return;
  tern_free(t->tasks);
  tern_free(t->joined);
  tern_free(t);
  b->drv_ctx = NULL;
}

const tern_bench_driver tern_bench_driver_xmpp = {
    .name = "xmpp",
    .provision = drv_provision,
    .connect = drv_connect,
    .send = drv_send,
    .send_group = drv_send_group,
    .setup_groups = drv_setup_groups,
    .flush = drv_flush,
    .outbound = drv_outbound,
    .disconnect = drv_disconnect,
    .free = drv_free,
    .release = drv_release,
};
