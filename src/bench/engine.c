/* engine.c: the protocol-independent run of tern-bench.
 *
 * Phases: PROVISION (the driver registers users) → CONNECT (the live devices, a bounded number
 * of connects in flight) → WARMUP (sending, not measured) → MEASURE (the window) → SETTLE (no
 * more sending; wait for every outstanding answer, delivery and receipt) → DRAIN (the offline
 * users connect; their stored messages are delivered and timed) → DONE (verify, report).
 * In --idle mode: PROVISION → CONNECT → HOLD → DONE.
 *
 * Records. Every message is a record indexed by its global number (gidx), carried in the
 * client id ("g<gidx>") and at the front of the body ("<gidx>:<pair_seq>:xxx..."), so that
 * each event finds its record in O(1) and can be checked against it: right sender, right
 * recipient, right pair sequence. A bit per receiving device (slot) records each delivery,
 * which makes loss and duplicates exact; a per-(sender device, receiving device, recipient)
 * high-water mark of the pair sequence detects reordering.
 *
 * Sending. Open loop (--rate, --total-rate): a 1 ms timer issues what the schedule says is
 * due, and gives up on (counts as "behind") whatever is more than one second late, so that a
 * server that cannot keep up does not make the bench queue without bound. Closed loop (no
 * rate): each sending device keeps --window messages in flight; a message leaves the window
 * when it is complete (answered, and delivered, and its receipt back when receipts are on).
 * In both, a connection with more than --max-outbound bytes queued is skipped: the bench never
 * lets a client's outbound buffer grow without bound.
 *
 * Latency. t_send is taken right before the frame is handed to the client library (which
 * writes it in the same loop iteration); each arrival takes its own clock. Samples are kept
 * for messages sent inside the measured window, whenever their events arrive.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "bench/bench_int.h"

#define NONE UINT32_MAX
#define REC_CHUNK_BITS 16
#define REC_CHUNK (1u << REC_CHUNK_BITS)
#define RETRY_CONNECT_MS 200
#define MAX_CONNECT_ATTEMPTS 3
#define IDLE_SETTLE_MS 2000     /* after the last connection, before sampling the server's RSS */
#define CLOSE_WAIT_MS 5000      /* longest wait for connections to close at the end */
#define MAX_ERROR_CODES 64
#define GROUPS_SETUP_EXTRA_MS 60000 /* the group set-up may take --settle plus this */

enum {
  F_SENT = 1 << 0,      /* "sent" answer (or XEP-0198 ack) */
  F_ERR = 1 << 1,       /* error answer */
  F_DELIVERED = 1 << 2, /* at a device of the recipient at least once */
  F_RECEIPT = 1 << 3,   /* delivered receipt at the sending device */
  F_READ = 1 << 4,      /* read receipt at the sending device */
  F_COMPLETE = 1 << 5,  /* left the window */
  F_MEASURED = 1 << 6,  /* sent inside the measured window: its latencies count */
  F_LATE = 1 << 7,      /* its recipient was offline when it was sent */
};

typedef struct rec {
  uint64_t t_send;   /* uv_hrtime() at the send call */
  uint64_t msgid;    /* hash of the server's id, 0 until known */
  uint32_t sender;   /* device index */
  uint32_t to;       /* user index */
  uint32_t pair_seq; /* 1, 2, ... per (sender device, recipient) */
  uint32_t got;      /* a bit per receiving slot: recipient devices, then the sender's others;
                        group mode: how many member devices have it (the bits are in gbits) */
  uint16_t flags;
} rec;

typedef enum {
  P_PROVISION = 0,
  P_CONNECT,
  P_HOLD,
  P_GROUPS,
  P_WARMUP,
  P_MEASURE,
  P_SETTLE,
  P_DRAIN,
  P_CLOSING,
  P_DONE,
} phase_t;

static const char *const phase_names[] = {"register", "connect", "hold", "groups", "warmup", "measure",
                                          "settle", "drain", "closing", "done"};

typedef struct tern_bench_engine {
  phase_t phase;
  bool setup_failed;            /* provisioning or connecting failed: exit 2 */
  char setup_why[256];
  uint64_t t_start;             /* run start, ns */
  uv_timer_t tick;              /* 1 ms: the open-loop schedule, blocked devices */
  uv_timer_t progress;          /* 1 s: the progress line, settle checks */
  uv_timer_t phase_timer;       /* end of warmup, of the window, of settle, ... */
  uv_timer_t retry_timer;       /* reconnects */
  uv_check_t check;             /* once per loop iteration: refill windows, flush devices */
  uv_signal_t sigint;
  int open_handles;
  bool stop_requested;          /* SIGINT: finish early and report */

  /* records */
  rec **chunks;
  uint64_t **gbits;             /* group mode: per chunk, gwords words per record, a bit per
                                   member device (position·D + device number) */
  uint32_t gwords;
  size_t n_chunks;
  uint64_t n_recs;
  tern_bench_u64map by_msgid;   /* msgid hash → gidx */
  tern_bench_u64map pair_ctr;   /* (sender device, recipient) → last pair_seq issued */
  tern_bench_u64map order;      /* (sender device, receiving device, recipient) → highest seen */

  /* sending */
  uint32_t *send_users;         /* users that send */
  uint32_t n_send_users;
  uint32_t rr_user;             /* round robin over send_users */
  uint8_t *rr_dev;              /* per user: round robin over its live devices */
  uint32_t *recipients;         /* random peers: users with a connected device */
  uint32_t n_recipients;
  uint64_t rng;
  double rate;                  /* open loop, messages/s in total (0: closed loop) */
  uint64_t sched_t0;            /* open loop: when the schedule started */
  uint64_t sched_issued;        /* open loop: slots consumed (issued or skipped) */
  bool sending;
  bool cap_reached;             /* --messages reached */
  char *body;                   /* scratch for one body */
  uint32_t dirty_head;          /* devices with work for the driver's flush */
  uint32_t refill_head;         /* closed loop: devices that may have room */
  uint32_t blocked;             /* closed loop: devices that stopped on back-pressure */

  /* connecting */
  uint32_t *to_connect;         /* queue of device indices */
  uint32_t n_to_connect, to_connect_pos, to_connect_cap;
  uint32_t connecting;          /* connects in flight */
  uint32_t live_target;         /* devices this phase must bring up */
  uint32_t up;                  /* devices synced in this phase */
  uint32_t failed;              /* devices given up */
  uint32_t *retry;              /* devices waiting to reconnect */
  uint32_t n_retry, cap_retry;
  uint32_t conn_seq;            /* connections started (for the source address) */
  uint32_t n_ips;               /* source addresses to spread over (0: no bind) */
  uint64_t connect_t0, connect_t1;
  uint32_t open_conns;          /* devices with a driver connection */

  /* counters */
  uint64_t issued, answered, errored, deliveries, receipts, reads, behind, throttled, reconnects;
  uint64_t redelivered, duplicates, reordered, misrouted, corrupt, msgid_mismatch, receipt_dups;
  uint64_t exp_live, got_live, exp_late, got_late;          /* deliveries */
  uint64_t exp_rcpt_live, got_rcpt_live, exp_rcpt_late, got_rcpt_late; /* delivered receipts */
  uint64_t exp_reads, got_reads;
  uint64_t complete;            /* records complete or errored */
  uint64_t stored;              /* sent to offline users */
  uint64_t w_sent, w_msgs, w_envelopes, w_receipts, w_reads;
  uint64_t last_p_sent, last_p_deliv, last_p_rcpt;           /* for the progress line's rates */
  tern_bench_lat lat_sent, lat_msg, lat_receipt, lat_read, lat_drain;
  tern_bench_error_count errors[MAX_ERROR_CODES];
  size_t n_errors;

  /* group mode */
  bool grp;                     /* --groups */
  uint32_t *grp_live;           /* per group: member devices connected (the sender's included) */
  uint32_t *rr_grp;             /* per user: round robin over its groups */
  tern_bench_lat lat_last;      /* send → the last member device has it */
  uint64_t w_group_complete;
  uint64_t groups_t0;

  /* windows */
  uint64_t w_t0, w_t1;          /* the measured window, ns */
  uint64_t drain_t0, drain_t1;  /* first late connect, last late delivery */
  uint64_t settle_t0;
  double bench_cpu0, bench_cpu1;
  tern_bench_results res;
} engine;

static engine *E(tern_bench *b) { return b->e; }
static uint64_t now_ns(void) { return uv_hrtime(); }
static double secs(uint64_t ns) { return (double)ns / 1e9; }

static void enter_phase(tern_bench *b, phase_t p);
static void maybe_advance(tern_bench *b);
static void start_connects(tern_bench *b);

/* ---- small helpers ---- */

static void say(tern_bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(tern_bench *b, const char *fmt, ...) {
  if (b->cfg.quiet) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[%5.1fs] ", secs(now_ns() - E(b)->t_start));
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

void tern_bench_count_error(tern_bench *b, const char *code) {
  engine *e = E(b);
  for (size_t i = 0; i < e->n_errors; i++)
    if (strcmp(e->errors[i].code, code) == 0) {
      e->errors[i].n++;
      return;
    }
  size_t i = e->n_errors < MAX_ERROR_CODES ? e->n_errors++ : MAX_ERROR_CODES - 1;
  if (i == MAX_ERROR_CODES - 1 && e->n_errors == MAX_ERROR_CODES && strcmp(e->errors[i].code, "other") != 0) {
    snprintf(e->errors[i].code, sizeof e->errors[i].code, "other");
  } else if (!e->errors[i].code[0]) {
    snprintf(e->errors[i].code, sizeof e->errors[i].code, "%s", code);
  }
  e->errors[i].n++;
}

static uint64_t rng_next(engine *e) {
  /* xorshift64*: cheap and good enough to spread random peers. */
  uint64_t x = e->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  e->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static inline rec *rec_at(engine *e, uint64_t g) { return &e->chunks[g >> REC_CHUNK_BITS][g & (REC_CHUNK - 1)]; }

static rec *rec_new(engine *e, uint64_t *gidx) {
  uint64_t g = e->n_recs;
  size_t chunk = (size_t)(g >> REC_CHUNK_BITS);
  if (chunk >= e->n_chunks) {
    e->chunks = tern_realloc(e->chunks, (e->n_chunks + 1) * sizeof *e->chunks);
    e->chunks[e->n_chunks++] = tern_calloc(REC_CHUNK, sizeof(rec));
    if (e->grp) {
      e->gbits = tern_realloc(e->gbits, e->n_chunks * sizeof *e->gbits);
      e->gbits[e->n_chunks - 1] = tern_calloc((size_t)REC_CHUNK * e->gwords, sizeof(uint64_t));
    }
  }
  e->n_recs++;
  *gidx = g;
  rec *r = rec_at(e, g);
  memset(r, 0, sizeof *r);
  return r;
}

static uint64_t order_key(uint32_t s, uint32_t r, uint32_t v) {
  return (uint64_t)s | ((uint64_t)r << 21) | ((uint64_t)v << 42);
}

static uint32_t popcount32(uint32_t x) { return (uint32_t)__builtin_popcount(x); }

/* The slots a message from device s to user v should reach, split by whether the devices are
 * connected while sending (live) or only for the drain (late). */
static void expected_slots(const tern_bench *b, const tern_bench_dev *s, uint32_t v, uint32_t *live,
                           uint32_t *late) {
  const tern_bench_user *to = &b->users[v], *from = &b->users[s->user];
  uint32_t D = b->cfg.devices;
  uint32_t own = (from->live_mask | from->late_mask) & ~(1u << s->devno);
  uint32_t own_live = from->live_mask & ~(1u << s->devno);
  *live = to->live_mask | (own_live << D);
  *late = to->late_mask | ((own & ~own_live) << D);
}

/* ---- public helpers ---- */

size_t tern_bench_body_format(char *out, size_t cap, uint64_t gidx, uint32_t pair_seq, uint32_t body) {
  int n = snprintf(out, cap, "%" PRIu64 ":%u:", gidx, pair_seq);
  if (n < 0 || (size_t)n >= cap) return 0;
  size_t len = TERN_MAX((size_t)n, (size_t)body);
  if (len >= cap) len = cap - 1;
  memset(out + n, 'x', len - (size_t)n);
  out[len] = '\0';
  return len;
}

int tern_bench_body_parse(const char *body, size_t len, uint64_t *gidx, uint32_t *pair_seq) {
  uint64_t g = 0, p = 0;
  size_t i = 0;
  if (i >= len || body[i] < '0' || body[i] > '9') return -1;
  while (i < len && body[i] >= '0' && body[i] <= '9' && g < (1ull << 60)) g = g * 10 + (uint64_t)(body[i++] - '0');
  if (i >= len || body[i++] != ':') return -1;
  if (i >= len || body[i] < '0' || body[i] > '9') return -1;
  while (i < len && body[i] >= '0' && body[i] <= '9' && p < (1ull << 40)) p = p * 10 + (uint64_t)(body[i++] - '0');
  if (i >= len || body[i] != ':' || p > UINT32_MAX) return -1;
  *gidx = g;
  *pair_seq = (uint32_t)p;
  return 0;
}

void tern_bench_client_id(char out[24], uint64_t gidx) { snprintf(out, 24, "g%" PRIu64, gidx); }

uint64_t tern_bench_client_id_parse(const char *s, size_t len) {
  if (!s || len < 2 || s[0] != 'g') return UINT64_MAX;
  uint64_t g = 0;
  for (size_t i = 1; i < len; i++) {
    if (s[i] < '0' || s[i] > '9' || g > (1ull << 58)) return UINT64_MAX;
    g = g * 10 + (uint64_t)(s[i] - '0');
  }
  return g;
}

uint32_t tern_bench_user_of_name(const tern_bench *b, const char *name, size_t len) {
  size_t pl = strlen(b->cfg.prefix);
  if (len <= pl || memcmp(name, b->cfg.prefix, pl) != 0) return NONE;
  uint64_t u = 0;
  for (size_t i = pl; i < len; i++) {
    if (name[i] < '0' || name[i] > '9' || u > TERN_BENCH_MAX_USERS) return NONE;
    u = u * 10 + (uint64_t)(name[i] - '0');
  }
  if (len > pl + 1 && name[pl] == '0') return NONE; /* "p01" is not one of ours */
  return u < b->n_users ? (uint32_t)u : NONE;
}

uint64_t tern_bench_gidx_of_msgid(tern_bench *b, uint64_t msgid) {
  uint64_t g;
  return tern_bench_u64map_get(&E(b)->by_msgid, msgid, &g) ? g : UINT64_MAX;
}

/* ---- lists ---- */

void tern_bench_mark_dirty(tern_bench *b, tern_bench_dev *d) {
  if (d->ack_dirty) return;
  d->ack_dirty = true;
  d->next_dirty = E(b)->dirty_head;
  E(b)->dirty_head = d->idx;
}

static void refill_push(tern_bench *b, tern_bench_dev *d) {
  if (d->refill_queued) return;
  d->refill_queued = true;
  d->next_refill = E(b)->refill_head;
  E(b)->refill_head = d->idx;
}

/* ---- completion ---- */

static void maybe_complete(tern_bench *b, rec *r) {
  engine *e = E(b);
  if (r->flags & F_COMPLETE) return;
  bool done;
  /* XMPP with sparse ack requests (--xmpp-ack-every > 1): the server's XEP-0198 ack comes when
   * the client asks, so it cannot gate the window; a message leaves it at its receipt (or
   * delivery), as for a plain client that never asks. Its "sent" latency still counts. */
  bool acks_gate = b->cfg.proto != TERN_BENCH_PROTO_XMPP || b->cfg.xmpp_ack_every <= 1;
  if (r->flags & F_ERR) done = true;
  else if (!(r->flags & F_SENT) && (acks_gate || e->grp || b->cfg.receipts == TERN_BENCH_RECEIPTS_OFF)) done = false;
  else if (e->grp) done = r->got + 1 >= e->grp_live[r->to]; /* every member device but the sender's */
  else if (r->flags & F_LATE || !b->users[r->to].live_mask) done = true; /* stored for later */
  else if (b->cfg.receipts != TERN_BENCH_RECEIPTS_OFF) done = (r->flags & F_RECEIPT) != 0;
  else done = (r->flags & F_DELIVERED) != 0;
  if (!done) return;
  r->flags |= F_COMPLETE;
  e->complete++;
  tern_bench_dev *s = &b->devs[r->sender];
  if (s->inflight) s->inflight--;
  if (e->sending && !e->rate) refill_push(b, s);
  /* --messages: the window ends the moment the last message is complete. */
  if (e->cap_reached && e->phase == P_MEASURE && e->complete >= e->issued) enter_phase(b, P_SETTLE);
}

/* ---- sending ---- */

/* Issues one message from device s. Returns false when s cannot take it now. */
static bool issue(tern_bench *b, tern_bench_dev *s, bool resend, uint64_t resend_gidx) {
  engine *e = E(b);
  if (s->state != TERN_BENCH_DEV_SYNCED || !s->conn) return false;
  if (b->drv->outbound(s) > b->cfg.max_outbound) {
    e->throttled++;
    return false;
  }
  uint64_t g;
  rec *r;
  if (resend) {
    g = resend_gidx;
    r = rec_at(e, g);
  } else {
    if (b->cfg.max_messages && e->issued >= b->cfg.max_messages) {
      e->cap_reached = true;
      return false;
    }
    const tern_bench_user *u = &b->users[s->user];
    uint32_t v;
    if (e->grp) {
      uint32_t off = b->user_groups_off[s->user], n = b->user_groups_off[s->user + 1] - off;
      if (!n) return false;
      v = b->user_groups[off + e->rr_grp[s->user]++ % n];
    } else if (b->cfg.peers == TERN_BENCH_PEERS_PAIRS) {
      v = u->peer;
    } else {
      do v = e->recipients[rng_next(e) % e->n_recipients];
      while (v == s->user && e->n_recipients > 1);
    }
    if (!e->grp && (v == NONE || v == s->user)) return false;
    r = rec_new(e, &g);
    r->sender = s->idx;
    r->to = v;
    bool created;
    uint64_t *ctr = tern_bench_u64map_slot(&e->pair_ctr, ((uint64_t)s->idx << 32) | v, &created);
    r->pair_seq = (uint32_t)++*ctr;
    if (e->phase == P_MEASURE) r->flags |= F_MEASURED;
    if (!e->grp && !b->users[v].live_mask) {
      r->flags |= F_LATE;
      e->stored++;
    }
    e->issued++;
    s->inflight++;
    if (b->cfg.max_messages && e->issued >= b->cfg.max_messages) e->cap_reached = true;
  }
  size_t len = tern_bench_body_format(e->body, b->cfg.body + 64, g, r->pair_seq, b->cfg.body);
  if (!resend) r->t_send = now_ns();
  int rc = e->grp ? b->drv->send_group(b, s, g, r->to, e->body, len)
                  : b->drv->send(b, s, g, &b->users[r->to], e->body, len);
  if (rc < 0) {
    /* Could not even queue it (the connection just closed): it is resent on reconnect. */
    tern_bench_count_error(b, "send_failed");
  }
  return true;
}

/* Closed loop with --inflight M: at most M messages in flight in all, and each free slot goes
 * to the next sending user in turn, so that every user keeps sending (a completed message's
 * sender does not simply take its slot back). */
static void refill_capped(tern_bench *b) {
  engine *e = E(b);
  uint32_t misses = 0, D = b->cfg.devices;
  while (e->sending && !e->cap_reached && e->issued - e->complete < b->cfg.inflight && misses < e->n_send_users) {
    uint32_t u = e->send_users[e->rr_user];
    e->rr_user = (e->rr_user + 1) % e->n_send_users;
    const tern_bench_user *usr = &b->users[u];
    bool sent = false;
    for (uint32_t k = 0; k < D && !sent; k++) {
      uint32_t dn = (uint32_t)(e->rr_dev[u]++ % D);
      tern_bench_dev *d = &b->devs[usr->first_dev + dn];
      if ((usr->live_mask & (1u << dn)) && d->inflight < b->cfg.window) sent = issue(b, d, false, 0);
    }
    misses = sent ? 0 : misses + 1;
  }
}

static void refill(tern_bench *b) {
  engine *e = E(b);
  if (b->cfg.inflight && !e->rate) {
    while (e->refill_head != NONE) {
      tern_bench_dev *d = &b->devs[e->refill_head];
      e->refill_head = d->next_refill;
      d->refill_queued = false;
    }
    refill_capped(b);
    return;
  }
  while (e->refill_head != NONE) {
    tern_bench_dev *d = &b->devs[e->refill_head];
    e->refill_head = d->next_refill;
    d->refill_queued = false;
    if (!e->sending || e->rate) continue;
    while (d->inflight < b->cfg.window) {
      if (!issue(b, d, false, 0)) {
        if (!e->cap_reached && d->state == TERN_BENCH_DEV_SYNCED) e->blocked++;
        break;
      }
    }
  }
}

/* Open loop: issue every slot that is due; slots more than a second late are skipped. */
static void schedule(tern_bench *b) {
  engine *e = E(b);
  if (!e->sending || !e->rate || !e->n_send_users) return;
  uint64_t now = now_ns();
  double due_f = e->rate * secs(now - e->sched_t0);
  uint64_t due = (uint64_t)due_f;
  uint64_t slack = (uint64_t)ceil(e->rate); /* one second of schedule */
  if (due > e->sched_issued + slack) {
    uint64_t skip = due - slack - e->sched_issued;
    e->behind += skip;
    e->sched_issued += skip;
  }
  while (e->sched_issued < due && !e->cap_reached) {
    bool sent = false;
    for (uint32_t tries = 0; tries < e->n_send_users && !sent; tries++) {
      uint32_t u = e->send_users[e->rr_user];
      e->rr_user = (e->rr_user + 1) % e->n_send_users;
      const tern_bench_user *usr = &b->users[u];
      uint32_t D = b->cfg.devices;
      for (uint32_t k = 0; k < D && !sent; k++) {
        uint32_t dn = (uint32_t)(e->rr_dev[u]++ % D);
        if (!(usr->live_mask & (1u << dn))) continue;
        sent = issue(b, &b->devs[usr->first_dev + dn], false, 0);
      }
    }
    if (!sent) break; /* every connection is backed up: try again at the next tick */
    e->sched_issued++;
  }
}

static void on_tick(uv_timer_t *t) {
  tern_bench *b = t->data;
  engine *e = E(b);
  schedule(b);
  if (e->blocked && e->sending && !e->rate) {
    /* Closed-loop devices that stopped on back-pressure: look again now. */
    e->blocked = 0;
    for (uint32_t i = 0; i < e->n_send_users; i++) {
      const tern_bench_user *u = &b->users[e->send_users[i]];
      for (uint32_t k = 0; k < b->cfg.devices; k++)
        if (u->live_mask & (1u << k)) refill_push(b, &b->devs[u->first_dev + k]);
    }
  }
}

static void on_check(uv_check_t *h) {
  tern_bench *b = h->data;
  engine *e = E(b);
  refill(b);
  while (e->dirty_head != NONE) {
    tern_bench_dev *d = &b->devs[e->dirty_head];
    e->dirty_head = d->next_dirty;
    d->ack_dirty = false;
    if (d->conn) b->drv->flush(b, d);
  }
}

/* A message's first arrival at a device (1:1 or group): its msg_id is the one it arrived with
 * everywhere else, and per (sender device, receiving device, conversation) the sender's seqs
 * only grow. */
static void first_arrival_checks(engine *e, rec *r, uint64_t g, uint64_t msgid, uint64_t okey, uint64_t pseq) {
  if (msgid) {
    if (!r->msgid) {
      r->msgid = msgid;
      *tern_bench_u64map_slot(&e->by_msgid, msgid, NULL) = g;
    } else if (msgid != r->msgid) {
      e->msgid_mismatch++;
    }
  }
  uint64_t *hw = tern_bench_u64map_slot(&e->order, okey, NULL);
  if (pseq < *hw) e->reordered++;
  else *hw = pseq;
}

/* After a reconnect: everything this device sent that was never answered goes again, with the
 * same client id, in the original order (the protocol answers a repeat with the same msg_id
 * and delivers it once). */
static void resend_unanswered(tern_bench *b, tern_bench_dev *d) {
  engine *e = E(b);
  for (uint64_t g = 0; g < e->n_recs; g++) {
    rec *r = rec_at(e, g);
    if (r->sender == d->idx && !(r->flags & (F_SENT | F_ERR))) issue(b, d, true, g);
  }
}

/* ---- events from drivers ---- */

void tern_bench_on_ready(tern_bench *b, tern_bench_dev *d) {
  if (d->state == TERN_BENCH_DEV_CONNECTING) d->state = TERN_BENCH_DEV_READY;
}

void tern_bench_on_synced(tern_bench *b, tern_bench_dev *d) {
  engine *e = E(b);
  if (d->state != TERN_BENCH_DEV_READY && d->state != TERN_BENCH_DEV_CONNECTING) return;
  bool reconnect = d->attempts == 0xff;
  d->state = TERN_BENCH_DEV_SYNCED;
  d->attempts = 0;
  if (e->connecting) e->connecting--;
  if (reconnect) {
    resend_unanswered(b, d);
    if (e->sending && !e->rate) refill_push(b, d);
  } else {
    e->up++;
    e->connect_t1 = now_ns();
  }
  start_connects(b);
  maybe_advance(b);
}

void tern_bench_on_sent(tern_bench *b, tern_bench_dev *d, uint64_t gidx, uint64_t msgid) {
  engine *e = E(b);
  if (gidx >= e->n_recs) {
    e->corrupt++;
    return;
  }
  rec *r = rec_at(e, gidx);
  if (r->sender != d->idx) {
    e->misrouted++;
    return;
  }
  if (r->flags & (F_SENT | F_ERR)) {
    /* A repeat answer (we resent after a reconnect): it must name the same message. */
    if (msgid && r->msgid && msgid != r->msgid) e->msgid_mismatch++;
    return;
  }
  r->flags |= F_SENT;
  if (msgid) {
    if (!r->msgid) {
      r->msgid = msgid;
      *tern_bench_u64map_slot(&e->by_msgid, msgid, NULL) = gidx;
    } else if (r->msgid != msgid) {
      e->msgid_mismatch++;
    }
  }
  uint64_t t = now_ns();
  if (r->flags & F_MEASURED) tern_bench_lat_add(&e->lat_sent, (uint32_t)((t - r->t_send) / 1000));
  e->answered++;
  if (e->phase == P_MEASURE) e->w_sent++;
  if (e->grp) {
    e->exp_live += e->grp_live[r->to] - 1;
    maybe_complete(b, r);
    if (e->phase >= P_SETTLE) maybe_advance(b);
    return;
  }
  uint32_t live, late;
  expected_slots(b, d, r->to, &live, &late);
  e->exp_live += popcount32(live);
  e->exp_late += popcount32(late);
  if (b->cfg.receipts != TERN_BENCH_RECEIPTS_OFF) {
    const tern_bench_user *to = &b->users[r->to];
    if (to->live_mask) e->exp_rcpt_live++;
    else if (to->late_mask) e->exp_rcpt_late++;
    if (b->cfg.receipts == TERN_BENCH_RECEIPTS_READ && (to->live_mask | to->late_mask)) e->exp_reads++;
  }
  maybe_complete(b, r);
  if (e->phase >= P_SETTLE) maybe_advance(b);
}

void tern_bench_on_error(tern_bench *b, tern_bench_dev *d, uint64_t gidx, const char *code) {
  engine *e = E(b);
  char key[48];
  snprintf(key, sizeof key, "%s", code && *code ? code : "unknown");
  tern_bench_count_error(b, key);
  if (gidx == UINT64_MAX || gidx >= e->n_recs) return;
  rec *r = rec_at(e, gidx);
  if (r->sender != d->idx || (r->flags & (F_SENT | F_ERR))) return;
  r->flags |= F_ERR;
  e->errored++;
  maybe_complete(b, r);
  if (e->phase >= P_SETTLE) maybe_advance(b);
}

void tern_bench_note_redelivered(tern_bench *b, tern_bench_dev *d) { E(b)->redelivered++; }

void tern_bench_note_reflected(tern_bench *b, tern_bench_dev *d) { E(b)->res.reflected++; }

void tern_bench_on_msg(tern_bench *b, tern_bench_dev *d, const char *from, size_t from_len, uint64_t msgid,
                       const char *body, size_t len) {
  engine *e = E(b);
  uint64_t g;
  uint32_t pseq;
  if (!body || tern_bench_body_parse(body, len, &g, &pseq) < 0 || g >= e->n_recs) {
    e->corrupt++;
    return;
  }
  rec *r = rec_at(e, g);
  if (r->pair_seq != pseq || len < b->cfg.body) {
    e->corrupt++;
    return;
  }
  tern_bench_dev *s = &b->devs[r->sender];
  const tern_bench_user *su = &b->users[s->user];
  if (!from || from_len != strlen(su->name) || memcmp(from, su->name, from_len) != 0 || e->grp) {
    e->misrouted++; /* group mode: a group message that came without its group */
    return;
  }
  uint32_t D = b->cfg.devices, slot;
  if (d->user == r->to) slot = d->devno;
  else if (d->user == s->user && d != s) slot = D + d->devno;
  else {
    e->misrouted++;
    return;
  }
  uint32_t bit = 1u << slot;
  if (r->got & bit) {
    /* The same message again at this device: a client drops it when the id is the same
     * (at-least-once delivery); under another id it is a real duplicate. */
    if (!msgid || !r->msgid || msgid == r->msgid) e->redelivered++;
    else e->duplicates++;
    return;
  }
  r->got |= bit;
  first_arrival_checks(e, r, g, msgid, order_key(s->idx, d->idx, r->to), pseq);

  uint64_t t = now_ns();
  e->deliveries++;
  if (e->phase == P_MEASURE) e->w_envelopes++;
  uint32_t us = (uint32_t)((t - r->t_send) / 1000);
  if (d->late) {
    e->got_late++;
    e->drain_t1 = t;
    if (slot < D && !(r->flags & F_DELIVERED)) tern_bench_lat_add(&e->lat_drain, us);
  } else {
    e->got_live++;
    if (slot < D && (r->flags & F_MEASURED)) tern_bench_lat_add(&e->lat_msg, us);
  }
  if (slot < D && !(r->flags & F_DELIVERED)) {
    r->flags |= F_DELIVERED;
    if (e->phase == P_MEASURE) e->w_msgs++;
    maybe_complete(b, r);
  }
  if (e->phase >= P_SETTLE) maybe_advance(b);
}

void tern_bench_on_group_msg(tern_bench *b, tern_bench_dev *d, const char *group, size_t group_len, const char *from,
                             size_t from_len, uint64_t msgid, const char *body, size_t len) {
  engine *e = E(b);
  uint64_t g;
  uint32_t pseq;
  if (!body || tern_bench_body_parse(body, len, &g, &pseq) < 0 || g >= e->n_recs) {
    e->corrupt++;
    return;
  }
  rec *r = rec_at(e, g);
  if (!e->grp || r->pair_seq != pseq || len < b->cfg.body) {
    e->corrupt++;
    return;
  }
  tern_bench_dev *s = &b->devs[r->sender];
  const tern_bench_user *su = &b->users[s->user];
  uint32_t pos = tern_bench_group_pos(b, r->to, d->user);
  if (!from || from_len != strlen(su->name) || memcmp(from, su->name, from_len) != 0 ||
      tern_bench_group_of_id(b, group, group_len) != r->to || pos == NONE || d == s) {
    e->misrouted++; /* wrong sender, wrong group, not a member, or back at the sending device */
    return;
  }
  uint32_t slot = pos * b->cfg.devices + d->devno;
  uint64_t *bits = &e->gbits[g >> REC_CHUNK_BITS][(g & (REC_CHUNK - 1)) * e->gwords];
  uint64_t bit = 1ull << (slot & 63);
  if (bits[slot >> 6] & bit) {
    if (!msgid || !r->msgid || msgid == r->msgid) e->redelivered++;
    else e->duplicates++;
    return;
  }
  bits[slot >> 6] |= bit;
  r->got++;
  first_arrival_checks(e, r, g, msgid, order_key(s->idx, d->idx, r->to), pseq);

  uint64_t t = now_ns();
  uint32_t us = (uint32_t)((t - r->t_send) / 1000);
  e->deliveries++;
  e->got_live++;
  if (e->phase == P_MEASURE) e->w_envelopes++;
  if (r->flags & F_MEASURED) tern_bench_lat_add(&e->lat_msg, us);
  if (!(r->flags & F_DELIVERED)) {
    r->flags |= F_DELIVERED;
    if (e->phase == P_MEASURE) e->w_msgs++;
  }
  if (r->got + 1 == e->grp_live[r->to] && (r->flags & F_MEASURED)) {
    /* The last member device: the figure a group chat's ✓✓ waits for. */
    tern_bench_lat_add(&e->lat_last, us);
    e->w_group_complete++;
  }
  maybe_complete(b, r);
  if (e->phase >= P_SETTLE) maybe_advance(b);
}

void tern_bench_on_receipt(tern_bench *b, tern_bench_dev *d, uint64_t gidx, bool read) {
  engine *e = E(b);
  if (gidx >= e->n_recs) {
    e->corrupt++;
    return;
  }
  rec *r = rec_at(e, gidx);
  tern_bench_dev *s = &b->devs[r->sender];
  if (d->user != s->user) {
    e->misrouted++;
    return;
  }
  if (d != s) return; /* the copy for the sender's other devices: counted once, at s */
  uint16_t flag = read ? F_READ : F_RECEIPT;
  if (r->flags & flag) {
    e->receipt_dups++;
    return;
  }
  r->flags |= flag;
  uint64_t t = now_ns();
  uint32_t us = (uint32_t)((t - r->t_send) / 1000);
  bool late = (r->flags & F_LATE) != 0;
  if (read) {
    e->reads++;
    e->got_reads++;
    if (e->phase == P_MEASURE) e->w_reads++;
    if ((r->flags & F_MEASURED) && !late) tern_bench_lat_add(&e->lat_read, us);
  } else {
    e->receipts++;
    if (late) e->got_rcpt_late++;
    else e->got_rcpt_live++;
    if (e->phase == P_MEASURE) e->w_receipts++;
    if ((r->flags & F_MEASURED) && !late) tern_bench_lat_add(&e->lat_receipt, us);
  }
  maybe_complete(b, r);
  if (e->phase >= P_SETTLE) maybe_advance(b);
}

/* ---- connecting ---- */

static void connect_queue(tern_bench *b, uint32_t dev) {
  engine *e = E(b);
  if (e->n_to_connect == e->to_connect_cap) {
    e->to_connect_cap = e->to_connect_cap ? e->to_connect_cap * 2 : 1024;
    e->to_connect = tern_realloc(e->to_connect, e->to_connect_cap * sizeof *e->to_connect);
  }
  e->to_connect[e->n_to_connect++] = dev;
}

static void bind_ip_for(tern_bench *b, char out[32]) {
  engine *e = E(b);
  if (!e->n_ips) {
    out[0] = '\0';
    return;
  }
  snprintf(out, 32, "127.0.0.%u", 1 + e->conn_seq % e->n_ips);
}

static void start_connects(tern_bench *b) {
  engine *e = E(b);
  if (e->phase >= P_CLOSING) return;
  while (e->connecting < b->cfg.connect_concurrency && e->to_connect_pos < e->n_to_connect) {
    tern_bench_dev *d = &b->devs[e->to_connect[e->to_connect_pos++]];
    char ip[32];
    bind_ip_for(b, ip);
    e->conn_seq++;
    if (!e->connect_t0) e->connect_t0 = now_ns();
    d->state = TERN_BENCH_DEV_CONNECTING;
    d->connect_ns = now_ns();
    int rc = b->drv->connect(b, d, ip[0] ? ip : NULL);
    if (rc < 0) {
      char code[48];
      snprintf(code, sizeof code, "connect:%s", uv_err_name(rc));
      tern_bench_count_error(b, code);
      d->state = TERN_BENCH_DEV_FAILED;
      e->failed++;
      continue;
    }
    e->open_conns++;
    e->connecting++;
  }
  if (e->to_connect_pos == e->n_to_connect) {
    e->to_connect_pos = e->n_to_connect = 0;
  }
}

static void on_retry(uv_timer_t *t) {
  tern_bench *b = t->data;
  engine *e = E(b);
  for (uint32_t i = 0; i < e->n_retry; i++) connect_queue(b, e->retry[i]);
  e->n_retry = 0;
  start_connects(b);
}

void tern_bench_on_closed(tern_bench *b, tern_bench_dev *d, const char *why) {
  engine *e = E(b);
  d->conn = NULL;
  if (e->open_conns) e->open_conns--;
  uint8_t st = d->state;
  d->state = TERN_BENCH_DEV_IDLE;
  if (d->closing || e->phase >= P_CLOSING) {
    if (st == TERN_BENCH_DEV_CONNECTING || st == TERN_BENCH_DEV_READY) {
      if (e->connecting) e->connecting--;
    }
    maybe_advance(b);
    return;
  }
  char code[48];
  bool was_up = st == TERN_BENCH_DEV_SYNCED;
  snprintf(code, sizeof code, "%s:%s", was_up ? "closed" : "connect", why ? why : "?");
  tern_bench_count_error(b, code);
  if (!was_up && e->connecting) e->connecting--;
  if (was_up) {
    /* A live device lost its connection: reconnect like a client would; its inbox keeps
     * everything, and unanswered sends go again once it is back. */
    e->reconnects++;
    d->attempts = 0xff;
  } else if (d->attempts != 0xff && ++d->attempts >= MAX_CONNECT_ATTEMPTS) {
    d->state = TERN_BENCH_DEV_FAILED;
    e->failed++;
    start_connects(b);
    maybe_advance(b);
    return;
  }
  if (e->n_retry == e->cap_retry) {
    e->cap_retry = e->cap_retry ? e->cap_retry * 2 : 64;
    e->retry = tern_realloc(e->retry, e->cap_retry * sizeof *e->retry);
  }
  e->retry[e->n_retry++] = d->idx;
  if (!uv_is_active((uv_handle_t *)&e->retry_timer)) uv_timer_start(&e->retry_timer, on_retry, RETRY_CONNECT_MS, 0);
  start_connects(b);
}

/* ---- provisioning ---- */

void tern_bench_provision_progress(tern_bench *b, uint32_t done, uint32_t total) {
  say(b, "register %u/%u", done, total);
}

void tern_bench_provision_done(tern_bench *b, int err, const char *why) {
  engine *e = E(b);
  e->res.register_s = secs(now_ns() - e->t_start);
  if (err < 0) {
    e->setup_failed = true;
    snprintf(e->setup_why, sizeof e->setup_why, "registration failed: %s", why ? why : "?");
    enter_phase(b, P_CLOSING);
    return;
  }
  say(b, "registered %u users (%u devices) in %.1f s", b->n_users, b->n_devs, e->res.register_s);
  enter_phase(b, P_CONNECT);
}

void tern_bench_groups_progress(tern_bench *b, const char *what, uint32_t done, uint32_t total) {
  say(b, "groups: %s %u/%u", what, done, total);
}

void tern_bench_groups_done(tern_bench *b, int err, const char *why) {
  engine *e = E(b);
  if (e->phase != P_GROUPS) return;
  e->res.groups_setup_s = secs(now_ns() - e->groups_t0);
  if (err < 0) {
    e->setup_failed = true;
    snprintf(e->setup_why, sizeof e->setup_why, "group setup failed: %s", why ? why : "?");
    enter_phase(b, P_CLOSING);
    return;
  }
  say(b, "%u groups ready in %.1f s", b->n_groups, e->res.groups_setup_s);
  enter_phase(b, b->cfg.warmup_ms ? P_WARMUP : P_MEASURE);
}

/* ---- phases ---- */

static void sample_server(tern_bench *b, tern_bench_proc *out) {
  if (b->cfg.server_pid) tern_bench_proc_sample(b->cfg.server_pid, out);
}

static void start_sending(tern_bench *b) {
  engine *e = E(b);
  e->sending = true;
  if (e->rate) {
    e->sched_t0 = now_ns();
    e->sched_issued = 0;
  } else {
    for (uint32_t i = 0; i < e->n_send_users; i++) {
      const tern_bench_user *u = &b->users[e->send_users[i]];
      for (uint32_t k = 0; k < b->cfg.devices; k++)
        if (u->live_mask & (1u << k)) refill_push(b, &b->devs[u->first_dev + k]);
    }
  }
}

static void on_phase_timer(uv_timer_t *t) {
  tern_bench *b = t->data;
  engine *e = E(b);
  switch (e->phase) {
    case P_WARMUP: enter_phase(b, P_MEASURE); break;
    case P_MEASURE: enter_phase(b, P_SETTLE); break;
    case P_HOLD: enter_phase(b, P_CLOSING); break;
    case P_GROUPS: tern_bench_groups_done(b, -ETIMEDOUT, "the server did not confirm every group in time"); break;
    case P_SETTLE:
      say(b, "settle: gave up waiting after %.1f s", (double)b->cfg.settle_ms / 1000);
      e->res.settle_timed_out = true;
      enter_phase(b, P_DRAIN);
      break;
    case P_DRAIN:
      say(b, "drain: gave up waiting after %.1f s", (double)b->cfg.settle_ms / 1000);
      e->res.settle_timed_out = true;
      enter_phase(b, P_CLOSING);
      break;
    case P_CONNECT:
      /* Idle mode: the settle pause after the last connection. */
      if (b->cfg.idle) {
        sample_server(b, &e->res.srv_idle_after);
        enter_phase(b, P_HOLD);
      }
      break;
    case P_CLOSING:
      /* Connections that did not close in time: the driver's free drops them. */
      enter_phase(b, P_DONE);
      break;
    default: break;
  }
}

static bool settle_done(engine *e) {
  return e->answered + e->errored >= e->issued && e->got_live >= e->exp_live && e->got_rcpt_live >= e->exp_rcpt_live &&
         (e->exp_reads == 0 || e->exp_late > 0 || e->got_reads >= e->exp_reads);
}

static bool drain_done(tern_bench *b) {
  engine *e = E(b);
  return e->up + e->failed >= e->live_target && e->got_late >= e->exp_late &&
         e->got_rcpt_late >= e->exp_rcpt_late && e->got_reads >= e->exp_reads;
}

static void maybe_advance(tern_bench *b) {
  engine *e = E(b);
  switch (e->phase) {
    case P_CONNECT:
      if (e->up + e->failed < e->live_target || uv_is_active((uv_handle_t *)&e->phase_timer)) return;
      e->res.connect_s = secs(e->connect_t1 - e->connect_t0);
      e->res.connect_rate = e->res.connect_s > 0 ? e->up / e->res.connect_s : 0;
      say(b, "connected %u (failed %u) in %.2f s: %.0f connections/s", e->up, e->failed, e->res.connect_s,
          e->res.connect_rate);
      if (b->cfg.idle) {
        e->res.idle_connected = e->up;
        e->res.idle_failed = e->failed;
        uv_timer_start(&e->phase_timer, on_phase_timer, IDLE_SETTLE_MS, 0);
        return;
      }
      if (e->failed) {
        e->setup_failed = true;
        snprintf(e->setup_why, sizeof e->setup_why, "%u of %u connections failed", e->failed, e->live_target);
        enter_phase(b, P_CLOSING);
        return;
      }
      enter_phase(b, e->grp ? P_GROUPS : b->cfg.warmup_ms ? P_WARMUP : P_MEASURE);
      break;
    case P_MEASURE:
      /* --messages: the window ends once the last message is complete. */
      if (e->cap_reached && e->complete >= e->issued) enter_phase(b, P_SETTLE);
      break;
    case P_SETTLE:
      if (settle_done(e)) enter_phase(b, P_DRAIN);
      break;
    case P_DRAIN:
      if (drain_done(b)) enter_phase(b, P_CLOSING);
      break;
    case P_CLOSING:
      if (e->open_conns == 0) enter_phase(b, P_DONE);
      break;
    default: break;
  }
}

static void progress_line(tern_bench *b) {
  engine *e = E(b);
  uint64_t ds = e->answered - e->last_p_sent, dd = e->deliveries - e->last_p_deliv, dr = e->receipts - e->last_p_rcpt;
  e->last_p_sent = e->answered;
  e->last_p_deliv = e->deliveries;
  e->last_p_rcpt = e->receipts;
  if (e->phase == P_PROVISION) return; /* the driver reports its own progress */
  if (e->phase == P_GROUPS) return; /* the driver reports the setup's progress */
  if (e->phase == P_CONNECT || e->phase == P_HOLD) {
    say(b, "%s: %u/%u up, %u connecting, %u failed", phase_names[e->phase], e->up, e->live_target, e->connecting,
        e->failed);
    return;
  }
  tern_bench_lat *l = e->grp ? &e->lat_last : b->cfg.receipts != TERN_BENCH_RECEIPTS_OFF ? &e->lat_receipt : &e->lat_msg;
  uint64_t errs = 0;
  for (size_t i = 0; i < e->n_errors; i++) errs += e->errors[i].n;
  char p99[32] = "-";
  if (l->n) snprintf(p99, sizeof p99, "%u", tern_bench_lat_pct(l, 99));
  say(b, "%-7s sent/s %7" PRIu64 "  delivered/s %7" PRIu64 "  receipts/s %7" PRIu64 "  p99 %s %6s µs  inflight %6" PRIu64
      "  errors %" PRIu64 "%s",
      phase_names[e->phase], ds, dd, dr,
      e->grp ? "send→last" : b->cfg.receipts != TERN_BENCH_RECEIPTS_OFF ? "send→receipt" : "send→msg", p99,
      e->issued - e->complete, errs, e->behind ? "  (schedule behind)" : "");
}

static void on_progress(uv_timer_t *t) {
  tern_bench *b = t->data;
  progress_line(b);
  maybe_advance(b);
}

static void on_sigint(uv_signal_t *s, int signum) {
  tern_bench *b = s->data;
  engine *e = E(b);
  if (e->stop_requested) {
    fprintf(stderr, "tern-bench: interrupted twice, exiting\n");
    exit(2);
  }
  e->stop_requested = true;
  say(b, "interrupted: finishing the run and reporting (again to quit at once)");
  if (e->phase == P_WARMUP || e->phase == P_MEASURE) enter_phase(b, P_SETTLE);
  else if (e->phase == P_HOLD || e->phase < P_WARMUP) enter_phase(b, P_CLOSING);
}

static void close_all(tern_bench *b) {
  engine *e = E(b);
  bool any = false;
  for (uint32_t i = 0; i < b->n_devs; i++) {
    tern_bench_dev *d = &b->devs[i];
    if (d->conn) {
      d->closing = true;
      b->drv->disconnect(b, d);
      any = true;
    }
  }
  e->n_to_connect = e->to_connect_pos = 0;
  e->n_retry = 0;
  if (!any) e->open_conns = 0;
}

static void enter_phase(tern_bench *b, phase_t p) {
  engine *e = E(b);
  phase_t old = e->phase;
  e->phase = p;
  uv_timer_stop(&e->phase_timer);
  switch (p) {
    case P_CONNECT: {
      if (b->cfg.idle) sample_server(b, &e->res.srv_idle_before);
      e->live_target = 0;
      for (uint32_t i = 0; i < b->n_devs; i++) {
        tern_bench_dev *d = &b->devs[i];
        if (d->mine && !d->late) {
          connect_queue(b, i);
          e->live_target++;
        }
      }
      say(b, "connecting %u devices", e->live_target);
      start_connects(b);
      maybe_advance(b);
      break;
    }
    case P_HOLD: {
      const tern_bench_proc *a = &e->res.srv_idle_before, *z = &e->res.srv_idle_after;
      if (a->ok && z->ok && e->up) {
        e->res.idle_kib_per_conn = ((double)z->rss_kib - (double)a->rss_kib) / e->up;
        say(b, "server RSS %" PRIu64 " KiB → %" PRIu64 " KiB: %.2f KiB per connection", a->rss_kib, z->rss_kib,
            e->res.idle_kib_per_conn);
      }
      if (b->cfg.duration_ms) {
        say(b, "holding %u connections for %.1f s", e->up, (double)b->cfg.duration_ms / 1000);
        uv_timer_start(&e->phase_timer, on_phase_timer, b->cfg.duration_ms, 0);
      } else {
        enter_phase(b, P_CLOSING);
      }
      break;
    }
    case P_GROUPS:
      e->groups_t0 = now_ns();
      say(b, "setting up %u groups of %u members (%" PRIu64 " memberships)", b->n_groups, b->group_size,
          (uint64_t)b->n_groups * b->group_size);
      /* A server that never confirms a creation or a join must not hang the run. */
      uv_timer_start(&e->phase_timer, on_phase_timer, b->cfg.settle_ms + GROUPS_SETUP_EXTRA_MS, 0);
      b->drv->setup_groups(b);
      break;
    case P_WARMUP:
      say(b, "warming up for %.1f s", (double)b->cfg.warmup_ms / 1000);
      start_sending(b);
      uv_timer_start(&e->phase_timer, on_phase_timer, b->cfg.warmup_ms, 0);
      break;
    case P_MEASURE:
      if (!e->sending) start_sending(b);
      e->w_t0 = now_ns();
      e->bench_cpu0 = tern_bench_self_cpu();
      sample_server(b, &e->res.srv_start);
      if (b->cfg.max_messages) say(b, "measuring until %" PRIu64 " messages are complete", b->cfg.max_messages);
      else say(b, "measuring for %.1f s", (double)b->cfg.duration_ms / 1000);
      if (b->cfg.duration_ms) uv_timer_start(&e->phase_timer, on_phase_timer, b->cfg.duration_ms, 0);
      break;
    case P_SETTLE:
      e->sending = false;
      if (old == P_MEASURE || old == P_WARMUP) {
        e->w_t1 = now_ns();
        if (!e->w_t0) e->w_t0 = e->w_t1;
        e->bench_cpu1 = tern_bench_self_cpu();
        sample_server(b, &e->res.srv_end);
      }
      e->settle_t0 = now_ns();
      uv_timer_start(&e->phase_timer, on_phase_timer, b->cfg.settle_ms, 0);
      say(b, "sending stopped; waiting for %" PRIu64 " outstanding messages", e->issued - e->complete);
      maybe_advance(b);
      break;
    case P_DRAIN: {
      e->live_target = e->up = e->failed = 0;
      for (uint32_t i = 0; i < b->n_devs; i++) {
        tern_bench_dev *d = &b->devs[i];
        if (d->mine && d->late) {
          connect_queue(b, i);
          e->live_target++;
        }
      }
      if (e->live_target) {
        say(b, "draining: connecting %u offline devices (%" PRIu64 " envelopes stored)", e->live_target,
            e->exp_late);
        e->drain_t0 = now_ns();
        uv_timer_start(&e->phase_timer, on_phase_timer, b->cfg.settle_ms, 0);
        start_connects(b);
      }
      maybe_advance(b);
      break;
    }
    case P_CLOSING:
      e->sending = false;
      if (e->w_t0 && !e->w_t1) {
        e->w_t1 = now_ns();
        e->bench_cpu1 = tern_bench_self_cpu();
        sample_server(b, &e->res.srv_end);
      }
      close_all(b);
      uv_timer_start(&e->phase_timer, on_phase_timer, CLOSE_WAIT_MS, 0);
      maybe_advance(b);
      break;
    case P_DONE:
      uv_stop(b->loop);
      break;
    default: break;
  }
}

/* ---- setup ---- */

static void build_population(tern_bench *b) {
  engine *e = E(b);
  const tern_bench_config *c = &b->cfg;
  b->n_users = c->users;
  b->n_devs = c->users * c->devices;
  b->users = tern_calloc(b->n_users, sizeof *b->users);
  b->devs = tern_calloc(b->n_devs, sizeof *b->devs);
  /* Offline users: in pairs mode the second user of the first pairs (so every offline user has
   * a live sender); in random mode the last users. They never send. */
  uint32_t n_off = (uint32_t)llround(c->offline * c->users);
  if (c->peers == TERN_BENCH_PEERS_PAIRS && n_off > c->users / 2) n_off = c->users / 2;
  for (uint32_t u = 0; u < b->n_users; u++) {
    tern_bench_user *usr = &b->users[u];
    snprintf(usr->name, sizeof usr->name, "%s%u", c->prefix, u);
    usr->first_dev = u * c->devices;
    usr->peer = NONE;
    if (c->peers == TERN_BENCH_PEERS_PAIRS && (u ^ 1u) < b->n_users) usr->peer = u ^ 1u;
    if (c->peers == TERN_BENCH_PEERS_PAIRS) usr->offline = (u & 1u) && u / 2 < n_off;
    else usr->offline = u >= b->n_users - n_off;
    for (uint32_t k = 0; k < c->devices; k++) {
      uint32_t i = usr->first_dev + k;
      tern_bench_dev *d = &b->devs[i];
      d->b = b;
      d->idx = i;
      d->user = u;
      d->devno = (uint8_t)k;
      d->state = TERN_BENCH_DEV_NEW;
      d->mine = i < c->connections;
      d->late = usr->offline;
      d->next_dirty = d->next_refill = NONE;
      d->read_peer = NONE;
      if (d->mine) {
        if (d->late) usr->late_mask |= 1u << k;
        else usr->live_mask |= 1u << k;
      }
    }
  }
  if (e->grp) {
    b->n_groups = c->groups;
    b->group_size = c->group_size;
    tern_bench_groups_build(b);
    e->grp_live = tern_calloc(b->n_groups, sizeof *e->grp_live);
    e->rr_grp = tern_calloc(b->n_users, sizeof *e->rr_grp);
    for (uint32_t g = 0; g < b->n_groups; g++)
      for (uint32_t j = 0; j < b->group_size; j++)
        e->grp_live[g] += popcount32(b->users[tern_bench_group_member(b, g, j)].live_mask);
    /* A bit per member device: position·D + device number. */
    e->gwords = (uint32_t)(((uint64_t)b->group_size * c->devices + 63) / 64);
    e->res.memberships_per_user = (double)b->n_groups * b->group_size / b->n_users;
  }
  /* Who sends: live users with a peer that has a connected device (group mode: every live
   * user in at least one group). */
  e->send_users = tern_calloc(b->n_users, sizeof *e->send_users);
  e->recipients = tern_calloc(b->n_users, sizeof *e->recipients);
  e->rr_dev = tern_calloc(b->n_users, 1);
  for (uint32_t u = 0; u < b->n_users; u++) {
    tern_bench_user *usr = &b->users[u];
    if (usr->live_mask | usr->late_mask) e->recipients[e->n_recipients++] = u;
  }
  for (uint32_t u = 0; u < b->n_users && !c->idle; u++) {
    tern_bench_user *usr = &b->users[u];
    if (usr->offline || !usr->live_mask) continue;
    if (e->grp) {
      if (b->user_groups_off[u + 1] == b->user_groups_off[u]) continue;
    } else if (c->peers == TERN_BENCH_PEERS_PAIRS) {
      if (usr->peer == NONE || (c->one_way && (u & 1u))) continue;
      const tern_bench_user *p = &b->users[usr->peer];
      if (!(p->live_mask | p->late_mask)) continue;
    } else if (e->n_recipients < 2) {
      continue;
    }
    usr->sender = true;
    e->send_users[e->n_send_users++] = u;
  }
  if (c->total_rate > 0) e->rate = c->total_rate;
  else if (c->rate > 0) e->rate = c->rate * e->n_send_users;
  e->res.target_rate = e->rate;
}

static void handle_closed(uv_handle_t *h) { (void)h; }

static void fill_lat(tern_bench_lat *l, tern_bench_lat_summary *s) {
  s->n = l->n;
  s->p50 = tern_bench_lat_pct(l, 50);
  s->p90 = tern_bench_lat_pct(l, 90);
  s->p99 = tern_bench_lat_pct(l, 99);
  s->p999 = tern_bench_lat_pct(l, 99.9);
  s->p99999 = tern_bench_lat_pct(l, 99.999);
  s->max = l->max;
  s->mean = tern_bench_lat_mean(l);
}

/* The final pass over every record: exact loss and receipt accounting. */
static void verify(tern_bench *b) {
  engine *e = E(b);
  tern_bench_results *r = &e->res;
  for (uint64_t g = 0; g < e->n_recs; g++) {
    rec *x = rec_at(e, g);
    if (!(x->flags & (F_SENT | F_ERR))) {
      r->unanswered++;
      continue;
    }
    if (!(x->flags & F_SENT)) continue;
    if (e->grp) {
      uint32_t exp = e->grp_live[x->to] - 1;
      r->expected_deliveries += exp;
      r->lost += exp > x->got ? exp - x->got : 0;
      continue;
    }
    uint32_t live, late;
    expected_slots(b, &b->devs[x->sender], x->to, &live, &late);
    uint32_t exp = live | late;
    r->expected_deliveries += popcount32(exp);
    r->lost += popcount32(exp & ~x->got);
    const tern_bench_user *to = &b->users[x->to];
    if (b->cfg.receipts != TERN_BENCH_RECEIPTS_OFF && (to->live_mask | to->late_mask)) {
      if (!(x->flags & F_RECEIPT)) r->receipts_missing++;
      if (b->cfg.receipts == TERN_BENCH_RECEIPTS_READ && !(x->flags & F_READ)) r->reads_missing++;
    }
  }
  r->duplicates = e->duplicates;
  r->redelivered = e->redelivered;
  r->reordered = e->reordered;
  r->receipt_duplicates = e->receipt_dups;
  r->misrouted = e->misrouted;
  r->corrupt = e->corrupt;
  r->msgid_mismatch = e->msgid_mismatch;
  r->verified_ok = !r->lost && !r->duplicates && !r->reordered && !r->unanswered && !r->receipts_missing &&
                   !r->receipt_duplicates && !r->reads_missing && !r->misrouted && !r->corrupt && !r->msgid_mismatch;
}

static void finish_results(tern_bench *b) {
  engine *e = E(b);
  tern_bench_results *r = &e->res;
  r->window_s = e->w_t1 > e->w_t0 ? secs(e->w_t1 - e->w_t0) : 0;
  r->w_sent = e->w_sent;
  r->w_msgs = e->w_msgs;
  r->w_envelopes = e->w_envelopes;
  r->w_receipts = e->w_receipts;
  r->w_reads = e->w_reads;
  if (r->window_s > 0) {
    r->sent_per_s = e->w_sent / r->window_s;
    r->delivered_per_s = e->w_msgs / r->window_s;
    r->envelopes_per_s = e->w_envelopes / r->window_s;
    r->receipts_per_s = e->w_receipts / r->window_s;
    r->reads_per_s = e->w_reads / r->window_s;
  }
  r->messages = e->issued;
  r->outstanding_at_end = e->issued - e->complete;
  r->answered = e->answered;
  r->errored = e->errored;
  r->deliveries = e->deliveries;
  r->receipts = e->receipts;
  r->reads = e->reads;
  r->behind = e->behind;
  r->throttled = e->throttled;
  r->reconnects = e->reconnects;
  fill_lat(&e->lat_sent, &r->lat_sent);
  fill_lat(&e->lat_msg, &r->lat_msg);
  fill_lat(&e->lat_receipt, &r->lat_receipt);
  fill_lat(&e->lat_read, &r->lat_read);
  fill_lat(&e->lat_drain, &r->lat_drain);
  fill_lat(&e->lat_last, &r->lat_last);
  if (e->grp && r->window_s > 0) {
    r->w_group_complete = e->w_group_complete;
    r->group_msgs_per_s = r->sent_per_s;
    r->member_deliveries_per_s = r->envelopes_per_s;
  }
  r->errors = e->errors;
  r->n_errors = e->n_errors;
  r->stored = e->stored;
  r->drained = e->got_late;
  if (e->drain_t0 && e->drain_t1 > e->drain_t0) {
    r->drain_s = secs(e->drain_t1 - e->drain_t0);
    r->drain_per_s = r->drained / r->drain_s;
  }
  if (r->srv_start.ok && r->srv_end.ok) {
    r->srv_cpu_s = r->srv_end.cpu_s - r->srv_start.cpu_s;
    /* Group mode: per member delivery, the unit of fan-out work. */
    uint64_t msgs = e->grp ? e->w_envelopes : e->w_msgs ? e->w_msgs : e->w_sent;
    if (msgs) r->srv_cpu_us_per_msg = r->srv_cpu_s * 1e6 / (double)msgs;
  }
  r->bench_cpu_s = e->bench_cpu1 - e->bench_cpu0;
  if (!b->cfg.idle) verify(b);
  else r->verified_ok = true;
}

int tern_bench_run(const tern_bench_config *cfg) {
  tern_bench bb, *b = &bb;
  memset(b, 0, sizeof *b);
  b->cfg = *cfg;
  engine *e = TERN_NEW(engine);
  b->e = e;
  e->t_start = now_ns();
  e->rng = cfg->seed * 0x9E3779B97F4A7C15ULL + 1;
  e->dirty_head = e->refill_head = NONE;
  e->body = tern_malloc(cfg->body + 64);
  e->grp = cfg->groups > 0;
  b->drv = cfg->proto == TERN_BENCH_PROTO_XMPP ? &tern_bench_driver_xmpp : &tern_bench_driver_tern;

  /* Source addresses: only for a loopback server (127.0.0.x all reach it). */
  const char *host = cfg->server;
  if (strncmp(host, "http://", 7) == 0) host += 7;
  if (strncmp(host, "127.", 4) == 0) {
    e->n_ips = cfg->source_ips ? cfg->source_ips : 1 + (cfg->connections - 1) / 8000;
    if (e->n_ips > 255) e->n_ips = 255;
    if (e->n_ips == 1 && !cfg->source_ips) e->n_ips = 0; /* one address: let the kernel pick */
  }

  uv_loop_t loop;
  uv_loop_init(&loop);
  b->loop = &loop;
  build_population(b);

  uv_timer_init(&loop, &e->tick);
  uv_timer_init(&loop, &e->progress);
  uv_timer_init(&loop, &e->phase_timer);
  uv_timer_init(&loop, &e->retry_timer);
  uv_check_init(&loop, &e->check);
  uv_signal_init(&loop, &e->sigint);
  e->tick.data = e->progress.data = e->phase_timer.data = e->retry_timer.data = b;
  e->check.data = e->sigint.data = b;
  uv_timer_start(&e->tick, on_tick, 1, 1);
  uv_timer_start(&e->progress, on_progress, 1000, 1000);
  uv_check_start(&e->check, on_check);
  uv_signal_start(&e->sigint, on_sigint, SIGINT);
  signal(SIGPIPE, SIG_IGN);

  say(b, "tern-bench: %s at %s, %u users × %u devices, %u connections, prefix %s", b->drv->name, cfg->server,
      cfg->users, cfg->devices, cfg->connections, cfg->prefix);
  e->phase = P_PROVISION;
  b->drv->provision(b);
  uv_run(&loop, UV_RUN_DEFAULT);

  finish_results(b);
  int status = 0;
  if (e->setup_failed) {
    fprintf(stderr, "tern-bench: %s\n", e->setup_why);
    status = 2;
  }
  if (!e->setup_failed || e->up) {
    tern_bench_report_table(b, &e->res, stdout);
    if (cfg->json_path[0] && tern_bench_report_json(b, &e->res, cfg->json_path) < 0) {
      fprintf(stderr, "tern-bench: cannot write %s\n", cfg->json_path);
      if (!status) status = 2;
    }
  }
  if (!status && !e->res.verified_ok) status = 1;

  /* Tear down: the driver drops what is left, then every handle closes. */
  b->drv->free(b);
  uv_close((uv_handle_t *)&e->tick, handle_closed);
  uv_close((uv_handle_t *)&e->progress, handle_closed);
  uv_close((uv_handle_t *)&e->phase_timer, handle_closed);
  uv_close((uv_handle_t *)&e->retry_timer, handle_closed);
  uv_close((uv_handle_t *)&e->check, handle_closed);
  uv_close((uv_handle_t *)&e->sigint, handle_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  b->drv->release(b);
  uv_loop_close(&loop);

  for (size_t i = 0; i < e->n_chunks; i++) {
    tern_free(e->chunks[i]);
    if (e->gbits) tern_free(e->gbits[i]);
  }
  tern_free(e->chunks);
  tern_free(e->gbits);
  tern_free(e->grp_live);
  tern_free(e->rr_grp);
  tern_bench_lat_free(&e->lat_last);
  tern_bench_groups_free(b);
  tern_bench_u64map_free(&e->by_msgid);
  tern_bench_u64map_free(&e->pair_ctr);
  tern_bench_u64map_free(&e->order);
  tern_bench_lat_free(&e->lat_sent);
  tern_bench_lat_free(&e->lat_msg);
  tern_bench_lat_free(&e->lat_receipt);
  tern_bench_lat_free(&e->lat_read);
  tern_bench_lat_free(&e->lat_drain);
  for (uint32_t i = 0; i < b->n_devs; i++) {
    tern_free(b->devs[i].token);
    tern_free(b->devs[i].device_id);
    tern_buf_free(&b->devs[i].reads);
  }
  tern_free(b->devs);
  tern_free(b->users);
  tern_free(e->send_users);
  tern_free(e->recipients);
  tern_free(e->rr_dev);
  tern_free(e->to_connect);
  tern_free(e->retry);
  tern_free(e->body);
  tern_free(e);
  return status;
}

int tern_bench_main(int argc, char **argv) {
  tern_bench_config cfg;
  char err[256];
  int rc = tern_bench_parse_args(argc, argv, &cfg, err, sizeof err);
  if (rc == 1) {
    fputs(tern_bench_usage(), stdout);
    return 0;
  }
  if (rc < 0) {
    fprintf(stderr, "tern-bench: %s (see tern-bench --help)\n", err);
    return 2;
  }
  return tern_bench_run(&cfg);
}
