/* floor.c: tern-floor, the minimal relay that is the floor for tern-bench's traffic (issue 15 §2).
 *
 * What it is for. ternd's CPU per message is compared with this program's, under the very same
 * tern-bench scenarios (closed loop, open loop at a rate, receipts on). The floor does what the
 * kernel and the framing cannot avoid and nothing else, so ternd ÷ floor says how much of
 * ternd's time is its own (JSON, routing, store, bookkeeping) rather than the traffic's.
 *
 * What it does, per message, in a 1:1 scenario with receipts: it reads the `send`, writes a
 * `sent` to the sender and a `msg` to the recipient, and when the recipient's cumulative `ack`
 * covers the message, one `receipt` per ack listing every msg_id it newly covers. Those are the
 * three frames ternd writes per message in that scenario, so both servers put the same number
 * of frames (and about the same bytes) on the wire. It reads and writes through the same code
 * ternd does: net/stream.c (one shared 64 KiB read buffer per loop, one write per connection
 * per loop iteration, try_write first) and net/ws.c (the RFC 6455 codec, unmasking in place).
 *
 * What it skips, on purpose (docs/benchmarks.md, "The floor"):
 *   - JSON: no tree and no unescaping. A frame is scanned once as a flat object for the few
 *     keys the scenario needs (type, id, to, body, seq, token, username), and string values
 *     are copied as their raw escaped bytes. Outgoing frames are byte templates.
 *   - The store: nothing is durable; `sent` goes at once. A recipient that is not connected
 *     loses the message (tern-bench then reports the loss and exits 1).
 *   - Accounts: register and login answer a token that is the user's index; no password is
 *     checked or hashed. One device per user (tern-bench's --devices 1).
 *   - Everything else of the protocol: `read`, groups, presence, typing, media, push, limits,
 *     metrics, idle timers and pings from the server. Unknown frame types get an
 *     `unknown_type` error.
 * What it keeps, because the receipt needs it: per device, the unacked (seq, message, sender)
 * triples in memory (24 bytes each), popped by the ack.
 *
 * Ownership. One floor_srv per process, on the default loop, owns the users table and every
 * connection. A floor_conn is owned by its stream: it is freed from the stream's on_close,
 * never inside its own callbacks. A user outlives its connections (its seq and its unacked
 * list carry over a reconnect).
 *
 * Errors: setup failures print one line and exit 2. Nothing on the loop thread blocks.
 *
 * Usage: tern-floor [--listen HOST:PORT] (default 127.0.0.1:8090; port 0 picks one). It prints
 * "tern-floor: listening on HOST:PORT" on stderr once it accepts, and its counters at SIGTERM. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/util.h"
#include "net/stream.h"
#include "net/ws.h"

#define FLOOR_MAX_HEAD 16384          /* request head; past it the connection is closed */
#define FLOOR_MAX_BODY 4096           /* register/login bodies are small */
#define FLOOR_MAX_MESSAGE (1u << 20)  /* ws.max_message, as ternd's default */
#define FLOOR_NAME_MAX 32             /* PROTOCOL.md 2: usernames are 3-32 chars */
#define FLOOR_ID_MAX 64               /* PROTOCOL.md 4: client ids are 1-64 chars */
#define FLOOR_MSGID_LEN 44            /* as ternd's: 28 hex digits of id and 16 of tag */
#define FLOOR_DEVID_LEN 24            /* as ternd's: 24 hex digits */
#define FLOOR_NONE UINT32_MAX

typedef struct floor_pending {
  uint64_t seq;   /* the msg envelope's seq on the recipient */
  uint64_t msgno; /* the message, from which its msg_id is written again */
  uint32_t from;  /* the sender, who gets the receipt */
} floor_pending;

struct floor_conn;

typedef struct floor_user {
  char name[FLOOR_NAME_MAX + 1];  /* lower-cased */
  uint8_t name_len;               /* bytes of name */
  char dev[FLOOR_DEVID_LEN + 1];  /* its one device id */
  struct floor_conn *conn;        /* the authenticated connection, or NULL */
  uint64_t seq;                   /* the last envelope seq given to the device */
  floor_pending *pend;            /* ring of unacked msg envelopes, oldest at head */
  uint32_t pend_head;             /* index of the oldest */
  uint32_t pend_len;              /* entries in use */
  uint32_t pend_cap;              /* entries allocated (a power of two, or 0) */
} floor_user;

typedef enum {
  FC_HTTP,    /* reading HTTP requests */
  FC_WS,      /* upgraded, waiting for auth */
  FC_AUTHED,  /* authenticated: sends and acks */
  FC_CLOSING, /* close frame written, lingering */
} floor_state;

typedef struct floor_srv floor_srv;

typedef struct floor_conn {
  floor_srv *srv;    /* the server */
  tern_stream *st;   /* the socket; owns this struct's lifetime (on_close frees it) */
  tern_ws_reader rd; /* the codec's reader state, once upgraded */
  uint32_t user;     /* index of the authenticated user, FLOOR_NONE before */
  floor_state state; /* where in the session it is */
} floor_conn;

struct floor_srv {
  uv_loop_t *loop;        /* the default loop */
  tern_stream_loop *sl;   /* the streams' shared read buffer and flush pass */
  uv_tcp_t listener;      /* the listening socket */
  uv_signal_t sigs[2];    /* SIGINT, SIGTERM: print counters, stop */
  floor_user *users;      /* every registered user, by index */
  uint32_t nusers;        /* users in use */
  uint32_t ucap;          /* users allocated */
  uint32_t *slots;        /* open-addressing table: name → index, FLOOR_NONE empty */
  uint32_t nslots;        /* a power of two, kept above twice nusers */
  tern_buf scratch;       /* one outgoing payload being templated */
  uint64_t msgno;         /* messages relayed so far (also the source of msg_ids) */
  uint64_t frames_out;    /* text frames written */
  uint64_t receipts;      /* receipt frames written */
  uint64_t dropped;       /* messages to a recipient not connected */
};

/* ---- a flat JSON object, scanned once ---- */

typedef struct floor_span {
  const char *p; /* the raw bytes (a string's without its quotes, still escaped), or NULL */
  size_t n;      /* their length */
} floor_span;

/* The keys any frame or body of the scenario carries; the others are skipped. */
typedef struct floor_fields {
  floor_span type, id, to, body, seq, token, username;
} floor_fields;

static size_t skip_ws(const char *j, size_t i, size_t n) {
  while (i < n && (j[i] == ' ' || j[i] == '\t' || j[i] == '\n' || j[i] == '\r')) i++;
  return i;
}

/* j[i] is the opening quote: returns the index after the closing one, or 0 when unterminated. */
static size_t skip_string(const char *j, size_t i, size_t n) {
  for (i++; i < n; i++) {
    if (j[i] == '\\') i++;
    else if (j[i] == '"') return i + 1;
  }
  return 0;
}

/* A nested object or array, or a bare number or literal: the index after it, 0 if malformed. */
static size_t skip_value(const char *j, size_t i, size_t n) {
  if (j[i] != '{' && j[i] != '[') {
    while (i < n && j[i] != ',' && j[i] != '}' && j[i] != ']' && j[i] != ' ' && j[i] != '\n') i++;
    return i;
  }
  int depth = 0;
  while (i < n) {
    char ch = j[i];
    if (ch == '"') {
      i = skip_string(j, i, n);
      if (!i) return 0;
      continue;
    }
    if (ch == '{' || ch == '[') depth++;
    else if ((ch == '}' || ch == ']') && --depth == 0) return i + 1;
    i++;
  }
  return 0;
}

static floor_span *field_slot(floor_fields *f, const char *k, size_t n) {
#define FLOOR_KEY(name) \
  if (n == sizeof #name - 1 && memcmp(k, #name, n) == 0) return &f->name;
  FLOOR_KEY(type) FLOOR_KEY(id) FLOOR_KEY(to) FLOOR_KEY(body) FLOOR_KEY(seq) FLOOR_KEY(token) FLOOR_KEY(username)
#undef FLOOR_KEY
  return NULL;
}

/* One pass over a flat object. Returns 0, or -EBADMSG when it is not an object. Keys written
 * with escapes are not recognised (no client of ours writes them). */
static int fields_scan(const char *j, size_t n, floor_fields *f) {
  memset(f, 0, sizeof *f);
  size_t i = skip_ws(j, 0, n);
  if (i >= n || j[i] != '{') return -EBADMSG;
  i = skip_ws(j, i + 1, n);
  if (i < n && j[i] == '}') return 0;
  while (i < n) {
    if (j[i] != '"') return -EBADMSG;
    size_t kend = skip_string(j, i, n);
    if (!kend) return -EBADMSG;
    floor_span *slot = field_slot(f, j + i + 1, kend - i - 2);
    i = skip_ws(j, kend, n);
    if (i >= n || j[i] != ':') return -EBADMSG;
    i = skip_ws(j, i + 1, n);
    if (i >= n) return -EBADMSG;
    size_t vstart = i, vend;
    if (j[i] == '"') {
      vend = skip_string(j, i, n);
      if (!vend) return -EBADMSG;
      if (slot) *slot = (floor_span){j + vstart + 1, vend - vstart - 2};
    } else {
      vend = skip_value(j, i, n);
      if (!vend || vend == vstart) return -EBADMSG;
      if (slot) *slot = (floor_span){j + vstart, vend - vstart};
    }
    i = skip_ws(j, vend, n);
    if (i < n && j[i] == '}') return 0;
    if (i >= n || j[i] != ',') return -EBADMSG;
    i = skip_ws(j, i + 1, n);
  }
  return -EBADMSG;
}

static bool span_is(floor_span s, const char *lit) { return s.p && s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0; }

/* A decimal without sign, at most 19 digits: 0 and *out, or -EINVAL. */
static int span_u64(floor_span s, uint64_t *out) {
  if (!s.p || !s.n || s.n > 19) return -EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i < s.n; i++) {
    if (s.p[i] < '0' || s.p[i] > '9') return -EINVAL;
    v = v * 10 + (uint64_t)(s.p[i] - '0');
  }
  *out = v;
  return 0;
}

/* ---- byte templates ---- */

static void put(tern_buf *b, const char *lit) { tern_buf_append(b, lit, strlen(lit)); }
static void put_span(tern_buf *b, floor_span s) { tern_buf_append(b, s.p, s.n); }

/* A msg_id of ternd's length from the message number: hex of the number, then a 16-digit
 * tag mixed from it (ternd's is a keyed hash; here it only has to be unique and as long). */
static void put_msgid(tern_buf *b, uint64_t msgno) {
  static const char hex[] = "0123456789abcdef";
  char id[FLOOR_MSGID_LEN];
  uint64_t tag = msgno * 0x9e3779b97f4a7c15ull;
  memset(id, '0', 28 - 16);
  for (int i = 0; i < 16; i++) id[27 - i] = hex[(msgno >> (4 * i)) & 15];
  for (int i = 0; i < 16; i++) id[43 - i] = hex[(tag >> (4 * i)) & 15];
  tern_buf_append(b, id, sizeof id);
}

/* Frames the scratch payload into c's output: one text frame, flushed in this iteration's pass. */
static void emit(floor_conn *c) {
  floor_srv *srv = c->srv;
  uint8_t hdr[14];
  size_t h = tern_ws_frame_header(hdr, TERN_WS_OP_TEXT, true, srv->scratch.len, NULL);
  tern_buf *out = tern_stream_out(c->st);
  tern_buf_reserve(out, h + srv->scratch.len);
  tern_buf_append(out, hdr, h);
  tern_buf_append(out, srv->scratch.data, srv->scratch.len);
  srv->frames_out++;
}

static void send_error(floor_conn *c, floor_span id, const char *code) {
  tern_buf *b = &c->srv->scratch;
  tern_buf_reset(b);
  put(b, "{\"type\":\"error\",");
  if (id.p && id.n <= FLOOR_ID_MAX) {
    put(b, "\"id\":\"");
    put_span(b, id);
    put(b, "\",");
  }
  put(b, "\"code\":\"");
  put(b, code);
  put(b, "\",\"message\":\"");
  put(b, code);
  put(b, "\"}");
  emit(c);
}

/* Writes a close frame and lingers, so that the peer reads it before the FIN. */
static void close_with(floor_conn *c, uint16_t code) {
  if (c->state == FC_CLOSING) return;
  c->state = FC_CLOSING;
  tern_ws_append_close(tern_stream_out(c->st), code, NULL, NULL);
  tern_stream_linger(c->st, 2000);
}

/* ---- users ---- */

static uint32_t slot_of(const floor_srv *srv, const char *name, size_t n) {
  return (uint32_t)tern_hash_bytes(name, n) & (srv->nslots - 1);
}

static uint32_t user_find(const floor_srv *srv, const char *name, size_t n) {
  if (!srv->nslots) return FLOOR_NONE;
  for (uint32_t s = slot_of(srv, name, n);; s = (s + 1) & (srv->nslots - 1)) {
    uint32_t u = srv->slots[s];
    if (u == FLOOR_NONE) return FLOOR_NONE;
    if (srv->users[u].name_len == n && memcmp(srv->users[u].name, name, n) == 0) return u;
  }
}

static void slots_insert(floor_srv *srv, uint32_t u) {
  const floor_user *x = &srv->users[u];
  uint32_t s = slot_of(srv, x->name, x->name_len);
  while (srv->slots[s] != FLOOR_NONE) s = (s + 1) & (srv->nslots - 1);
  srv->slots[s] = u;
}

/* name is lower-cased already and 1..FLOOR_NAME_MAX bytes. */
static uint32_t user_add(floor_srv *srv, const char *name, size_t n) {
  if (srv->nusers == srv->ucap) {
    srv->ucap = srv->ucap ? srv->ucap * 2 : 1024;
    srv->users = tern_realloc(srv->users, srv->ucap * sizeof *srv->users);
  }
  if (2 * (srv->nusers + 1) > srv->nslots) {
    tern_free(srv->slots);
    srv->nslots = srv->nslots ? srv->nslots * 2 : 4096;
    srv->slots = tern_malloc(srv->nslots * sizeof *srv->slots);
    memset(srv->slots, 0xff, srv->nslots * sizeof *srv->slots);
    for (uint32_t i = 0; i < srv->nusers; i++) slots_insert(srv, i);
  }
  uint32_t u = srv->nusers++;
  floor_user *x = &srv->users[u];
  memset(x, 0, sizeof *x);
  memcpy(x->name, name, n);
  x->name_len = (uint8_t)n;
  snprintf(x->dev, sizeof x->dev, "%024x", u + 1);
  slots_insert(srv, u);
  return u;
}

static void pend_push(floor_user *x, uint64_t seq, uint64_t msgno, uint32_t from) {
  if (x->pend_len == x->pend_cap) {
    uint32_t cap = x->pend_cap ? x->pend_cap * 2 : 16;
    floor_pending *p = tern_malloc(cap * sizeof *p);
    for (uint32_t i = 0; i < x->pend_len; i++) p[i] = x->pend[(x->pend_head + i) & (x->pend_cap - 1)];
    tern_free(x->pend);
    x->pend = p;
    x->pend_cap = cap;
    x->pend_head = 0;
  }
  x->pend[(x->pend_head + x->pend_len) & (x->pend_cap - 1)] = (floor_pending){seq, msgno, from};
  x->pend_len++;
}

/* ---- frames from an authenticated device ---- */

static void on_send(floor_conn *c, const floor_fields *f) {
  floor_srv *srv = c->srv;
  if (!f->id.p || !f->id.n || f->id.n > FLOOR_ID_MAX || !f->to.p || !f->body.p) {
    send_error(c, f->id, "bad_request");
    return;
  }
  /* tern-bench's names are lower case already; the floor does not fold them. */
  uint32_t to = user_find(srv, f->to.p, f->to.n);
  if (to == FLOOR_NONE) {
    send_error(c, f->id, "no_such_user");
    return;
  }
  uint64_t msgno = ++srv->msgno;
  int64_t ts = tern_now_ms();
  const floor_user *from = &srv->users[c->user];
  tern_buf *b = &srv->scratch;

  tern_buf_reset(b);
  put(b, "{\"type\":\"sent\",\"id\":\"");
  put_span(b, f->id);
  put(b, "\",\"msg_id\":\"");
  put_msgid(b, msgno);
  put(b, "\",\"ts\":");
  tern_buf_put_i64(b, ts);
  put(b, "}");
  emit(c);

  if (to == c->user) return; /* notes to self: no other device to copy to, no receipt */
  floor_user *rx = &srv->users[to];
  if (!rx->conn || rx->conn->state != FC_AUTHED) {
    srv->dropped++; /* no store: an absent recipient loses it, and tern-bench says so */
    return;
  }
  uint64_t seq = ++rx->seq;
  pend_push(rx, seq, msgno, c->user);
  tern_buf_reset(b);
  put(b, "{\"type\":\"msg\",\"seq\":");
  tern_buf_put_u64(b, seq);
  put(b, ",\"msg_id\":\"");
  put_msgid(b, msgno);
  put(b, "\",\"from\":\"");
  tern_buf_append(b, from->name, from->name_len);
  put(b, "\",\"from_device\":\"");
  tern_buf_append(b, from->dev, FLOOR_DEVID_LEN);
  put(b, "\",\"to\":\"");
  tern_buf_append(b, rx->name, rx->name_len);
  put(b, "\",\"ts\":");
  tern_buf_put_i64(b, ts);
  put(b, ",\"body\":\"");
  put_span(b, f->body); /* still escaped as the sender wrote it: valid inside quotes again */
  put(b, "\"}");
  emit(rx->conn);
}

/* One receipt to the sender of pend[first..first+n) (ring positions), as ternd's one per
 * sender per ack. A sender not connected loses it (no store). */
static void write_receipt(floor_srv *srv, floor_user *by, uint32_t first, uint32_t n, uint32_t from, int64_t ts) {
  floor_user *tx = &srv->users[from];
  if (!tx->conn || tx->conn->state != FC_AUTHED) return;
  tern_buf *b = &srv->scratch;
  tern_buf_reset(b);
  put(b, "{\"type\":\"receipt\",\"seq\":");
  tern_buf_put_u64(b, ++tx->seq);
  put(b, ",\"status\":\"delivered\",\"from\":\"");
  tern_buf_append(b, tx->name, tx->name_len);
  put(b, "\",\"by\":\"");
  tern_buf_append(b, by->name, by->name_len);
  put(b, "\",\"msg_ids\":[");
  for (uint32_t i = 0; i < n; i++) {
    put(b, i ? ",\"" : "\"");
    put_msgid(b, by->pend[(first + i) & (by->pend_cap - 1)].msgno);
    put(b, "\"");
  }
  put(b, "],\"ts\":");
  tern_buf_put_i64(b, ts);
  put(b, "}");
  emit(tx->conn);
  srv->receipts++;
}

/* A cumulative ack: every msg envelope up to seq is delivered. Consecutive entries of one
 * sender make one receipt; in tern-bench's pairs every device has one sender, so this is
 * exactly ternd's one receipt per sender per ack. (With --peers random, interleaved senders
 * would get more receipts than ternd writes: the floor is meant for pairs.) */
static void on_ack(floor_conn *c, const floor_fields *f) {
  uint64_t seq;
  if (span_u64(f->seq, &seq) < 0) {
    send_error(c, (floor_span){0}, "bad_request");
    return;
  }
  floor_srv *srv = c->srv;
  floor_user *x = &srv->users[c->user];
  if (seq > x->seq) seq = x->seq; /* clamped, as PROTOCOL.md 5 says */
  int64_t ts = 0;
  while (x->pend_len && x->pend[x->pend_head].seq <= seq) {
    uint32_t first = x->pend_head, n = 0, from = x->pend[first].from;
    while (n < x->pend_len) {
      const floor_pending *p = &x->pend[(first + n) & (x->pend_cap - 1)];
      if (p->seq > seq || p->from != from) break;
      n++;
    }
    if (!ts) ts = tern_now_ms();
    write_receipt(srv, x, first, n, from, ts);
    x->pend_head = (x->pend_head + n) & (x->pend_cap - 1);
    x->pend_len -= n;
  }
  if (!x->pend_len && x->pend_cap > 1024) { /* a burst is over: give its memory back */
    tern_free(x->pend);
    x->pend = NULL;
    x->pend_cap = x->pend_head = 0;
  }
}

static void on_auth(floor_conn *c, const floor_fields *f) {
  floor_srv *srv = c->srv;
  uint64_t u;
  /* The token is "floor-<index>": register and login hand it out, nothing is checked. */
  if (!span_is(f->type, "auth") || !f->token.p || f->token.n < 7 || memcmp(f->token.p, "floor-", 6) != 0 ||
      span_u64((floor_span){f->token.p + 6, f->token.n - 6}, &u) < 0 || u >= srv->nusers) {
    send_error(c, (floor_span){0}, "unauthorized");
    close_with(c, 4001);
    return;
  }
  floor_user *x = &srv->users[u];
  if (x->conn && x->conn != c) close_with(x->conn, 4003); /* replaced by a newer connection */
  x->conn = c;
  c->user = (uint32_t)u;
  c->state = FC_AUTHED;
  tern_buf *b = &srv->scratch;
  tern_buf_reset(b);
  put(b, "{\"type\":\"ready\",\"user\":\"");
  tern_buf_append(b, x->name, x->name_len);
  put(b, "\",\"device_id\":\"");
  tern_buf_append(b, x->dev, FLOOR_DEVID_LEN);
  put(b, "\",\"server_time\":");
  tern_buf_put_i64(b, tern_now_ms());
  put(b, "}");
  emit(c);
  /* No inbox to replay: synced at the device's current seq. */
  tern_buf_reset(b);
  put(b, "{\"type\":\"synced\",\"seq\":");
  tern_buf_put_u64(b, x->seq);
  put(b, "}");
  emit(c);
}

static void on_text(floor_conn *c, const char *j, size_t n) {
  floor_fields f;
  if (fields_scan(j, n, &f) < 0 || !f.type.p) {
    if (c->state == FC_WS) {
      send_error(c, (floor_span){0}, "unauthorized");
      close_with(c, 4001);
      return;
    }
    send_error(c, (floor_span){0}, "bad_request");
    return;
  }
  if (c->state == FC_WS) {
    on_auth(c, &f);
    return;
  }
  /* The hot types first: a send, then the acks (one per device per loop iteration). */
  if (span_is(f.type, "send")) on_send(c, &f);
  else if (span_is(f.type, "ack")) on_ack(c, &f);
  else if (span_is(f.type, "ping")) {
    tern_buf *b = &c->srv->scratch;
    tern_buf_reset(b);
    put(b, "{\"type\":\"pong\",\"server_time\":");
    tern_buf_put_i64(b, tern_now_ms());
    put(b, "}");
    emit(c);
  } else send_error(c, f.id, "unknown_type");
}

static size_t ws_input(floor_conn *c, char *data, size_t len) {
  size_t used = 0;
  while (used < len) {
    if (c->state == FC_CLOSING) return len;
    tern_ws_event ev;
    used += tern_ws_read(&c->rd, (uint8_t *)data + used, len - used, &ev);
    switch (ev.type) {
      case TERN_WS_EV_NONE: return used;
      case TERN_WS_EV_MESSAGE:
        if (ev.opcode != TERN_WS_OP_TEXT) close_with(c, TERN_WS_CLOSE_UNSUPPORTED);
        else on_text(c, (const char *)ev.data, ev.len);
        break;
      case TERN_WS_EV_PING:
        tern_ws_append_frame(tern_stream_out(c->st), TERN_WS_OP_PONG, true, ev.data, ev.len, NULL);
        break;
      case TERN_WS_EV_PONG: break;
      case TERN_WS_EV_CLOSE:
        close_with(c, ev.close_code == TERN_WS_CLOSE_NO_STATUS ? TERN_WS_CLOSE_NORMAL : ev.close_code);
        return len;
      case TERN_WS_EV_ERROR:
        close_with(c, ev.close_code);
        return len;
    }
  }
  return used;
}

/* ---- HTTP: register, login, the upgrade ---- */

static void http_answer(floor_conn *c, int status, const char *reason, const tern_buf *body) {
  tern_buf *out = tern_stream_out(c->st);
  tern_buf_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", status, reason,
                  body->len);
  tern_buf_append(out, body->data, body->len);
}

static void http_error(floor_conn *c, int status, const char *reason, const char *code) {
  tern_buf *b = &c->srv->scratch;
  tern_buf_reset(b);
  tern_buf_printf(b, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, code);
  http_answer(c, status, reason, b);
}

static void http_account(floor_conn *c, bool login, const char *body, size_t n) {
  floor_srv *srv = c->srv;
  floor_fields f;
  if (fields_scan(body, n, &f) < 0 || !f.username.p || f.username.n < 1 || f.username.n > FLOOR_NAME_MAX) {
    http_error(c, 400, "Bad Request", "bad_request");
    return;
  }
  char name[FLOOR_NAME_MAX];
  for (size_t i = 0; i < f.username.n; i++) {
    char ch = f.username.p[i];
    name[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
  }
  uint32_t u = user_find(srv, name, f.username.n);
  if (u != FLOOR_NONE && !login) {
    http_error(c, 409, "Conflict", "username_taken");
    return;
  }
  if (u == FLOOR_NONE) {
    if (login) {
      http_error(c, 401, "Unauthorized", "bad_credentials");
      return;
    }
    u = user_add(srv, name, f.username.n);
  }
  const floor_user *x = &srv->users[u];
  tern_buf *b = &srv->scratch;
  tern_buf_reset(b);
  tern_buf_printf(b, "{\"user\":\"%.*s\",\"device_id\":\"%s\",\"token\":\"floor-%u\"}", (int)x->name_len, x->name,
                  x->dev, u);
  http_answer(c, login ? 200 : 201, login ? "OK" : "Created", b);
}

/* The value of header `name` (lower case, with its colon) in head[0..n), or NULL. */
static const char *header(const char *head, size_t n, const char *name, size_t *vlen) {
  size_t nl = strlen(name);
  const char *p = memchr(head, '\n', n), *end = head + n;
  while (p && p + 1 < end) {
    p++;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) return NULL;
    if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0) {
      const char *v = p + nl;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      const char *ve = eol;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
      *vlen = (size_t)(ve - v);
      return v;
    }
    p = eol;
  }
  return NULL;
}

static size_t http_input(floor_conn *c, char *data, size_t len) {
  size_t used = 0;
  while (used < len && c->state == FC_HTTP) {
    char *req = data + used;
    size_t avail = len - used;
    char *eoh = memmem(req, avail, "\r\n\r\n", 4);
    if (!eoh) {
      if (avail > FLOOR_MAX_HEAD) tern_stream_close(c->st);
      return used;
    }
    size_t head = (size_t)(eoh - req) + 4, vlen = 0, clen = 0;
    const char *v = header(req, head, "content-length:", &vlen);
    if (v) {
      floor_span s = {v, vlen};
      uint64_t cl;
      if (span_u64(s, &cl) < 0 || cl > FLOOR_MAX_BODY) {
        http_error(c, 413, "Payload Too Large", "too_large");
        c->state = FC_CLOSING;
        tern_stream_linger(c->st, 1000);
        return len;
      }
      clen = (size_t)cl;
    }
    if (avail < head + clen) return used;
    used += head + clen;
    const char *body = req + head;
    if (strncmp(req, "GET /v1/ws ", 11) == 0) {
      const char *key = header(req, head, "sec-websocket-key:", &vlen);
      if (!key) {
        http_error(c, 400, "Bad Request", "bad_request");
        continue;
      }
      char accept[29];
      tern_ws_accept_key(key, vlen, accept);
      tern_buf_printf(tern_stream_out(c->st),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n\r\n",
                      accept);
      tern_ws_reader_init(&c->rd, true, FLOOR_MAX_MESSAGE);
      c->state = FC_WS;
      return used + ws_input(c, data + used, len - used);
    }
    if (strncmp(req, "POST /v1/register ", 18) == 0) http_account(c, false, body, clen);
    else if (strncmp(req, "POST /v1/login ", 15) == 0) http_account(c, true, body, clen);
    else if (strncmp(req, "GET /healthz ", 13) == 0) {
      tern_buf *b = &c->srv->scratch;
      tern_buf_reset(b);
      put(b, "{\"status\":\"ok\"}");
      http_answer(c, 200, "OK", b);
    } else http_error(c, 404, "Not Found", "not_found");
  }
  return used;
}

/* ---- the stream's callbacks ---- */

static size_t conn_on_data(tern_stream *s, char *data, size_t len, void *owner) {
  floor_conn *c = owner;
  switch (c->state) {
    case FC_HTTP: return http_input(c, data, len);
    case FC_WS:
    case FC_AUTHED: return ws_input(c, data, len);
    case FC_CLOSING: return len;
  }
  return len;
}

static void conn_on_end(tern_stream *s, int err, bool write, void *owner) { tern_stream_close(s); }

static void conn_on_close(tern_stream *s, void *owner) {
  floor_conn *c = owner;
  if (c->user != FLOOR_NONE && c->srv->users[c->user].conn == c) c->srv->users[c->user].conn = NULL;
  if (c->state != FC_HTTP) tern_ws_reader_free(&c->rd);
  tern_free(c);
}

static const tern_stream_cbs conn_cbs = {
    .on_data = conn_on_data,
    .on_end = conn_on_end,
    .on_close = conn_on_close,
};

static void on_connection(uv_stream_t *server, int status) {
  floor_srv *srv = server->data;
  if (status < 0) return;
  floor_conn *c = TERN_NEW(floor_conn);
  c->srv = srv;
  c->user = FLOOR_NONE;
  c->state = FC_HTTP;
  char err[128];
  if (tern_stream_open(srv->sl, &tern_stream_transport_tcp, NULL, &conn_cbs, c, &c->st, err, sizeof err) < 0) {
    tern_free(c);
    return;
  }
  uv_tcp_t *tcp = tern_stream_handle(c->st);
  if (uv_accept(server, (uv_stream_t *)tcp) < 0) {
    tern_stream_close(c->st);
    return;
  }
  uv_tcp_nodelay(tcp, 1); /* as ternd's accepted sockets */
  if (tern_stream_start(c->st, err, sizeof err) < 0) tern_stream_close(c->st);
}

static void on_signal(uv_signal_t *h, int signum) {
  floor_srv *srv = h->data;
  fprintf(stderr, "tern-floor: users=%u messages=%llu frames_out=%llu receipts=%llu dropped=%llu\n", srv->nusers,
          (unsigned long long)srv->msgno, (unsigned long long)srv->frames_out, (unsigned long long)srv->receipts,
          (unsigned long long)srv->dropped);
  uv_stop(srv->loop);
}

/* HOST:PORT into addr: 0, or -EINVAL with a reason. */
static int parse_listen(const char *s, struct sockaddr_storage *addr, char *err, size_t errlen) {
  const char *colon = strrchr(s, ':');
  char host[64];
  if (!colon || (size_t)(colon - s) >= sizeof host || !colon[1]) {
    snprintf(err, errlen, "--listen wants HOST:PORT, not '%s'", s);
    return -EINVAL;
  }
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535) {
    snprintf(err, errlen, "--listen: bad port '%s'", colon + 1);
    return -EINVAL;
  }
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr) != 0 &&
      uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr) != 0) {
    snprintf(err, errlen, "--listen: bad address '%s'", host);
    return -EINVAL;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *where = "127.0.0.1:8090";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) where = argv[++i];
    else {
      fprintf(stderr, "usage: tern-floor [--listen HOST:PORT]\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  static floor_srv srv;
  srv.loop = uv_default_loop();
  srv.sl = tern_stream_loop_new(srv.loop);
  char err[160];
  struct sockaddr_storage addr;
  if (parse_listen(where, &addr, err, sizeof err) < 0) {
    fprintf(stderr, "tern-floor: %s\n", err);
    return 2;
  }
  uv_tcp_init(srv.loop, &srv.listener);
  srv.listener.data = &srv;
  int rc = uv_tcp_bind(&srv.listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&srv.listener, 4096, on_connection); /* ternd's backlog */
  if (rc < 0) {
    fprintf(stderr, "tern-floor: cannot listen on %s: %s\n", where, uv_strerror(rc));
    return 2;
  }
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  char ip[64] = "?";
  int port = 0;
  uv_tcp_getsockname(&srv.listener, (struct sockaddr *)&bound, &blen);
  if (bound.ss_family == AF_INET) {
    uv_ip4_name((struct sockaddr_in *)&bound, ip, sizeof ip);
    port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  } else {
    uv_ip6_name((struct sockaddr_in6 *)&bound, ip, sizeof ip);
    port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
  }
  int sigs[2] = {SIGINT, SIGTERM};
  for (int i = 0; i < 2; i++) {
    uv_signal_init(srv.loop, &srv.sigs[i]);
    srv.sigs[i].data = &srv;
    uv_signal_start(&srv.sigs[i], on_signal, sigs[i]);
  }
  fprintf(stderr, "tern-floor: listening on %s:%d\n", ip, port);
  uv_run(srv.loop, UV_RUN_DEFAULT);
  /* A benchmark program: the process ends here and the kernel takes the sockets back. */
  return 0;
}
