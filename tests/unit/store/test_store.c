/* test_store: the store layer against a real RocksDB in a temp dir, driven by a real uv loop. */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "store/store.h"
#include "t.h"

/* ---- harness ------------------------------------------------------------------------------- */

static uv_loop_t loop;
static char base_dir[64]; /* mkdtemp root, removed at the end */
static char dir[128];     /* the current test's data dir */
static int ndone;         /* completions seen */
static int nsubmitted;    /* ops submitted (their index in submission order) */
static int order_errors;  /* completions that arrived out of submission order */
/* The envelope cache of every store this program opens: the suite runs once with a cache
 * (acks and drains read memory) and once without (every envelope read goes to RocksDB). The
 * child processes get it through TERN_TEST_STORE_CACHE. */
static size_t cache_bytes = 64 << 20;
/* Likewise the inbox-meta journal: checkpointed only after 1024 records (so never in these
 * short tests), or after every group. */
static int checkpoint_every = 0;

typedef struct res {
  int idx;   /* submission index */
  bool done; /* completion arrived */
  tern_store_status status;
  char err[128];
  uint64_t seqs[8]; /* APPEND: seq per target */
  size_t nseq;
  char dup[64]; /* APPEND DUPLICATE */
  int64_t dup_ts;
  size_t nitems; /* DRAIN */
  uint64_t item_seq[64];
  char item_tail[64][32];
  size_t item_len[64];
  bool more;
  size_t ndeliv; /* ACK */
  char deliv[8][64];
  char deliv_from[8][64];
  uint64_t expired; /* SWEEP */
  uint64_t commit_ns;
} res;

static void on_done(tern_store_op *op) {
  res *r = op->arg;
  if (r->idx != ndone) order_errors++;
  ndone++;
  r->done = true;
  r->status = op->status;
  snprintf(r->err, sizeof r->err, "%s", op->err);
  r->nseq = TERN_MIN(op->ntargets, 8);
  for (size_t i = 0; i < r->nseq; i++) r->seqs[i] = op->targets[i].seq;
  if (op->dup_msg_id) snprintf(r->dup, sizeof r->dup, "%s", op->dup_msg_id);
  r->dup_ts = op->dup_ts;
  r->nitems = op->nitems;
  for (size_t i = 0; i < op->nitems && i < 64; i++) {
    r->item_seq[i] = op->items[i].seq;
    r->item_len[i] = op->items[i].len;
    tern_env_view ev;
    if (tern_env_unpack(op->items[i].value, op->items[i].len, &ev) == 0) {
      snprintf(r->item_tail[i], sizeof r->item_tail[i], "%.*s", (int)TERN_MIN(ev.tail_len, 31), ev.tail);
    }
  }
  r->more = op->more;
  r->ndeliv = op->ndelivered;
  for (size_t i = 0; i < op->ndelivered && i < 8; i++) {
    snprintf(r->deliv[i], sizeof r->deliv[i], "%s", op->delivered[i].msg_id);
    snprintf(r->deliv_from[i], sizeof r->deliv_from[i], "%s", op->delivered[i].from);
  }
  r->expired = op->expired;
  r->commit_ns = op->commit_ns;
}

static tern_store_op *new_op(tern_store_op_type type, res *r) {
  memset(r, 0, sizeof *r);
  r->idx = nsubmitted++;
  return tern_store_op_new(type, on_done, r);
}

/* Runs the loop until every submitted op completed. */
static void wait_all(void) {
  while (ndone < nsubmitted) uv_run(&loop, UV_RUN_ONCE);
}

static tern_store_options default_opts(void) {
  tern_store_options o = {
      .dir = dir,
      .max_open_files = 64,
      .group_max = 256,
      .inbox_max_envelopes = 1000,
      .inbox_ttl_ms = 30LL * 24 * 3600 * 1000,
      .dedup_ttl_ms = 24LL * 3600 * 1000,
      .cache_bytes = cache_bytes,
      .checkpoint_every = checkpoint_every,
  };
  return o;
}

static tern_store *open_with(const tern_store_options *o) {
  char err[256] = "";
  tern_store *s = NULL;
  int r = tern_store_open_rocksdb(&loop, o, &s, err, sizeof err);
  if (r != 0) fprintf(stderr, "  open failed: %d %s\n", r, err);
  CHECK_EQ_INT(r, 0);
  return s;
}

static tern_store *open_store(void) {
  tern_store_options o = default_opts();
  return open_with(&o);
}

/* A fresh data dir per test. */
static void use_dir(const char *name) { snprintf(dir, sizeof dir, "%s/%s-%zu", base_dir, name, cache_bytes); }

static void close_store(tern_store *s) {
  wait_all();
  tern_store_close(s);
  uv_run(&loop, UV_RUN_DEFAULT); /* lets the async handle close */
}

static uint64_t commits(tern_store *s) {
  tern_store_commit_hist h;
  tern_store_commit_hist_read(s, &h);
  return h.count;
}

/* Appends one message (tail = body) to n inboxes. */
typedef struct append_args {
  const char *inboxes[4];
  uint8_t flags; /* for every target */
  const char *msg_id;
  const char *dedup;
  const char *token_from; /* sender, creates the delivery token */
  bool check_cap;
  int64_t ts;  /* envelope ts (0 = now) */
  int64_t now; /* op->now */
} append_args;

static void submit_append(tern_store *s, res *r, const append_args *a, const char *body) {
  tern_store_op *op = new_op(TERN_OP_APPEND, r);
  size_t len;
  uint8_t *v = tern_env_pack(TERN_ENV_MSG, a->flags, a->ts ? a->ts : tern_now_ms(), a->msg_id ? a->msg_id : "m",
                             a->token_from ? a->token_from : "alice", body, strlen(body), &len);
  size_t vi = tern_store_op_add_value(op, v, len);
  tern_free(v);
  for (int i = 0; i < 4 && a->inboxes[i]; i++) tern_store_op_add_target(op, a->inboxes[i], vi, a->check_cap);
  if (a->msg_id) tern_store_op_set_str(&op->msg_id, a->msg_id);
  if (a->dedup) tern_store_op_set_str(&op->dedup_key, a->dedup);
  if (a->token_from) tern_store_op_set_str(&op->token_from, a->token_from);
  op->now = a->now;
  tern_store_submit(s, op);
}

static void append1(tern_store *s, res *r, const char *inbox, const char *body) {
  append_args a = {.inboxes = {inbox}};
  submit_append(s, r, &a, body);
}

static void submit_ack(tern_store *s, res *r, const char *inbox, uint64_t seq) {
  tern_store_op *op = new_op(TERN_OP_ACK, r);
  tern_store_op_set_str(&op->inbox, inbox);
  op->seq = seq;
  tern_store_submit(s, op);
}

static void submit_drain(tern_store *s, res *r, const char *inbox, uint64_t seq, size_t max_bytes) {
  tern_store_op *op = new_op(TERN_OP_DRAIN, r);
  tern_store_op_set_str(&op->inbox, inbox);
  op->seq = seq;
  op->max_bytes = max_bytes;
  tern_store_submit(s, op);
}

static void submit_simple(tern_store *s, res *r, tern_store_op_type type) { tern_store_submit(s, new_op(type, r)); }

static res R[64]; /* results of the current test */

/* A synced write that keeps the store thread busy (fsync) while the ops submitted right after
 * it queue up: those then share the next group. */
static void submit_filler(tern_store *s) {
  static res filler;
  tern_store_op *op = new_op(TERN_OP_PUT_USER, &filler);
  tern_user_rec u = {.user = "filler", .pwhash = "x"};
  tern_store_op_set_user(op, &u);
  tern_store_submit(s, op);
}

/* ---- tests --------------------------------------------------------------------------------- */

TEST(env_pack_roundtrip) {
  size_t len;
  uint8_t *v = tern_env_pack(TERN_ENV_MSG, TERN_ENV_F_RECEIPT, 1700000000123LL, "m-1", "alice", "{\"b\":1}", 7, &len);
  CHECK(v != NULL);
  tern_env_view ev;
  CHECK_EQ_INT(tern_env_unpack(v, len, &ev), 0);
  CHECK_EQ_INT(ev.kind, TERN_ENV_MSG);
  CHECK_EQ_INT(ev.flags, TERN_ENV_F_RECEIPT);
  CHECK_EQ_INT(ev.ts, 1700000000123LL);
  CHECK(ev.msg_id_len == 3 && memcmp(ev.msg_id, "m-1", 3) == 0);
  CHECK(ev.from_len == 5 && memcmp(ev.from, "alice", 5) == 0);
  CHECK(ev.tail_len == 7 && memcmp(ev.tail, "{\"b\":1}", 7) == 0);
  /* every truncation is malformed, except at the tail */
  for (size_t n = 0; n < len - 7; n++) CHECK_EQ_INT(tern_env_unpack(v, n, &ev), -EINVAL);
  CHECK_EQ_INT(tern_env_unpack(v, len - 7, &ev), 0);
  v[0] = 'x';
  CHECK_EQ_INT(tern_env_unpack(v, len, &ev), -EINVAL);
  tern_free(v);
  /* receipt: empty id and from */
  v = tern_env_pack(TERN_ENV_RECEIPT, 0, 5, NULL, NULL, "", 0, &len);
  CHECK_EQ_INT(tern_env_unpack(v, len, &ev), 0);
  CHECK_EQ_INT(ev.kind, TERN_ENV_RECEIPT);
  CHECK_EQ_INT(ev.msg_id_len + ev.from_len + ev.tail_len, 0);
  tern_free(v);
  char longid[300];
  memset(longid, 'a', sizeof longid - 1);
  longid[299] = 0;
  CHECK(tern_env_pack(TERN_ENV_MSG, 0, 0, longid, "a", "", 0, &len) == NULL);
  CHECK_EQ_INT(len, 0);
}

TEST(op_free_owns_everything) {
  /* Run under ASan/LSan this proves op_free releases every attached thing. */
  tern_store_op *op = tern_store_op_new(TERN_OP_APPEND, NULL, NULL);
  tern_user_rec u = {.user = "alice", .pwhash = "$argon2id$x", .created = 1};
  tern_device_rec d = {.device_id = "d1", .user = "alice", .label = "laptop"};
  tern_store_op_set_user(op, &u);
  tern_store_op_set_user(op, &u); /* replacing frees the old copies */
  tern_store_op_set_device(op, &d);
  CHECK(op->user.user != u.user);
  CHECK_EQ_STR(op->device.label, "laptop");
  tern_store_op_set_str(&op->inbox, "a");
  tern_store_op_set_str(&op->inbox2, "b");
  tern_store_op_set_str(&op->dedup_key, "d1/c");
  tern_store_op_set_str(&op->msg_id, "m");
  tern_store_op_set_str(&op->msg_id, "m2");
  tern_store_op_set_str(&op->token_from, "alice");
  for (int i = 0; i < 5; i++) {
    size_t vi = tern_store_op_add_value(op, (const uint8_t *)"hello", 5 - (size_t)i);
    CHECK_EQ_INT(vi, i);
    tern_store_op_add_target(op, "t1", vi, true);
    tern_store_op_add_target(op, "t2", vi, false);
  }
  CHECK_EQ_INT(op->ntargets, 10);
  CHECK_EQ_INT(op->targets[9].value_len, 1);
  CHECK_EQ_INT(op->targets[0].value_len, 5);
  CHECK(memcmp(op->targets[0].value, "hello", 5) == 0);
  CHECK(op->targets[1].check_cap == false);
  op->dup_msg_id = tern_strdup("x");
  op->items = tern_calloc(2, sizeof *op->items);
  op->items_cap = op->nitems = 2;
  op->items[0].value = tern_memdup("ab", 2);
  op->items[1].value = tern_memdup("cd", 2);
  op->delivered = tern_calloc(1, sizeof *op->delivered);
  op->delivered_cap = op->ndelivered = 1;
  op->delivered[0].msg_id = tern_strdup("m");
  op->delivered[0].from = tern_strdup("alice");
  tern_store_op_free(op);
  tern_store_op_free(NULL);
}

TEST(append_assigns_seqs) {
  use_dir("seqs");
  tern_store *s = open_store();
  append1(s, &R[0], "A", "a1");
  append1(s, &R[1], "A", "a2");
  append1(s, &R[2], "B", "b1");
  append1(s, &R[3], "A", "a3");
  append_args a = {.inboxes = {"A", "B", "C"}};
  submit_append(s, &R[4], &a, "multi");
  submit_simple(s, &R[5], TERN_OP_SYNC);
  wait_all();
  for (int i = 0; i < 6; i++) CHECK_EQ_INT(R[i].status, TERN_STORE_OK);
  uint64_t c = commits(s);
  submit_simple(s, &R[6], TERN_OP_SYNC); /* alone in its group: no write at all */
  wait_all();
  CHECK_EQ_INT(R[6].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[6].commit_ns, 0);
  CHECK_EQ_INT(commits(s), c);
  CHECK_EQ_INT(R[0].seqs[0], 1);
  CHECK_EQ_INT(R[1].seqs[0], 2);
  CHECK_EQ_INT(R[2].seqs[0], 1);
  CHECK_EQ_INT(R[3].seqs[0], 3);
  CHECK_EQ_INT(R[4].nseq, 3);
  CHECK_EQ_INT(R[4].seqs[0], 4);
  CHECK_EQ_INT(R[4].seqs[1], 2);
  CHECK_EQ_INT(R[4].seqs[2], 1);
  CHECK_EQ_INT(tern_store_inbox_total(s), 7);
  CHECK(commits(s) >= 1);
  close_store(s);
}

TEST(drain_order_paging) {
  use_dir("drain");
  tern_store *s = open_store();
  /* 20 envelopes: the big drains take the iterator path, the small pages the point reads */
  char body[32];
  for (int i = 0; i < 20; i++) {
    snprintf(body, sizeof body, "b%02d", i + 1);
    append1(s, &R[i], "D", body);
  }
  wait_all();
  submit_drain(s, &R[20], "D", 0, 0);
  wait_all();
  CHECK_EQ_INT(R[20].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[20].nitems, 20);
  CHECK(!R[20].more);
  for (int i = 0; i < 20; i++) {
    CHECK_EQ_INT(R[20].item_seq[i], i + 1);
    snprintf(body, sizeof body, "b%02d", i + 1);
    CHECK_EQ_STR(R[20].item_tail[i], body);
  }
  size_t one = R[20].item_len[0];
  /* pages of two */
  submit_drain(s, &R[21], "D", 0, 2 * one);
  submit_drain(s, &R[22], "D", 2, 2 * one + 1);
  submit_drain(s, &R[23], "D", 17, 10 * one);
  submit_drain(s, &R[24], "D", 5, 1); /* smaller than one item: still one */
  submit_drain(s, &R[25], "D", 20, 0);
  submit_drain(s, &R[26], "nope", 0, 0);
  wait_all();
  CHECK_EQ_INT(R[21].nitems, 2);
  CHECK_EQ_INT(R[21].item_seq[1], 2);
  CHECK(R[21].more);
  CHECK_EQ_INT(R[22].nitems, 2);
  CHECK_EQ_INT(R[22].item_seq[0], 3);
  CHECK_EQ_INT(R[22].item_seq[1], 4);
  CHECK(R[22].more);
  CHECK_EQ_INT(R[23].nitems, 3);
  CHECK_EQ_INT(R[23].item_seq[0], 18);
  CHECK(!R[23].more);
  CHECK_EQ_INT(R[24].nitems, 1);
  CHECK_EQ_INT(R[24].item_seq[0], 6);
  CHECK(R[24].more);
  CHECK_EQ_INT(R[25].nitems, 0);
  CHECK(!R[25].more);
  CHECK_EQ_INT(R[26].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[26].nitems, 0);
  /* after an ack, a drain from 0 starts past it */
  submit_ack(s, &R[27], "D", 12);
  submit_drain(s, &R[28], "D", 0, 0);
  wait_all();
  CHECK_EQ_INT(R[28].nitems, 8);
  CHECK_EQ_INT(R[28].item_seq[0], 13);
  close_store(s);
}

TEST(drain_orders_with_appends) {
  use_dir("drain_order");
  tern_store *s = open_store();
  append1(s, &R[0], "X", "x1");
  wait_all();
  /* an append before the drain: it is in the drain and completes first */
  append1(s, &R[1], "X", "x2");
  submit_drain(s, &R[2], "X", 0, 0);
  /* a drain before an append: the append is not in it and completes after it */
  submit_drain(s, &R[3], "X", 0, 0);
  append1(s, &R[4], "X", "x3");
  wait_all();
  CHECK_EQ_INT(order_errors, 0);
  CHECK_EQ_INT(R[2].nitems, 2);
  CHECK_EQ_INT(R[2].item_seq[1], 2);
  CHECK_EQ_INT(R[3].nitems, 2);
  CHECK_EQ_INT(R[4].seqs[0], 3);
  close_store(s);
}

TEST(ack_deletes) {
  use_dir("ack");
  tern_store *s = open_store();
  for (int i = 0; i < 5; i++) append1(s, &R[i], "A", "x");
  append1(s, &R[5], "B", "y");
  wait_all();
  CHECK_EQ_INT(tern_store_inbox_total(s), 6);
  submit_ack(s, &R[6], "A", 2);
  wait_all();
  CHECK_EQ_INT(R[6].status, TERN_STORE_OK);
  CHECK_EQ_INT(tern_store_inbox_total(s), 4);
  submit_ack(s, &R[7], "A", 1);   /* already acked: harmless */
  submit_ack(s, &R[8], "A", 100); /* clamped to 5 */
  submit_ack(s, &R[9], "B", 1);
  submit_ack(s, &R[10], "zzz", 3); /* unknown inbox */
  submit_drain(s, &R[11], "A", 0, 0);
  wait_all();
  for (int i = 7; i <= 11; i++) CHECK_EQ_INT(R[i].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[11].nitems, 0);
  CHECK_EQ_INT(tern_store_inbox_total(s), 0);
  append1(s, &R[12], "A", "z");
  wait_all();
  CHECK_EQ_INT(R[12].seqs[0], 6);
  close_store(s);
}

TEST(seq_survives_reopen) {
  use_dir("reopen");
  tern_store *s = open_store();
  for (int i = 0; i < 3; i++) append1(s, &R[i], "A", "x");
  for (int i = 3; i < 5; i++) append1(s, &R[i], "B", "y");
  submit_ack(s, &R[5], "A", 3);
  wait_all();
  close_store(s);
  s = open_store();
  CHECK_EQ_INT(tern_store_inbox_total(s), 2);
  append1(s, &R[6], "A", "x");
  append1(s, &R[7], "B", "y");
  submit_drain(s, &R[8], "B", 0, 0);
  wait_all();
  CHECK_EQ_INT(R[6].seqs[0], 4);
  CHECK_EQ_INT(R[7].seqs[0], 3);
  CHECK_EQ_INT(R[8].nitems, 3);
  CHECK_EQ_INT(tern_store_inbox_total(s), 4);
  close_store(s);
}

TEST(dedup_separate_groups) {
  use_dir("dedup1");
  tern_store *s = open_store();
  append_args a = {.inboxes = {"bob1", "alice2"}, .msg_id = "m-1", .dedup = "alice1/c-1", .now = 1111};
  submit_append(s, &R[0], &a, "first");
  wait_all();
  a.msg_id = "m-2";
  submit_append(s, &R[1], &a, "second");
  wait_all();
  CHECK_EQ_INT(R[0].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[1].status, TERN_STORE_DUPLICATE);
  CHECK_EQ_STR(R[1].dup, "m-1");
  CHECK_EQ_INT(R[1].dup_ts, 1111);
  CHECK_EQ_INT(tern_store_inbox_total(s), 2);
  /* another device's same client id is not a duplicate */
  a.dedup = "alice3/c-1";
  submit_append(s, &R[2], &a, "third");
  wait_all();
  CHECK_EQ_INT(R[2].status, TERN_STORE_OK);
  close_store(s);
  /* remembered across restarts */
  s = open_store();
  a.dedup = "alice1/c-1";
  submit_append(s, &R[3], &a, "fourth");
  submit_drain(s, &R[4], "bob1", 0, 0);
  wait_all();
  CHECK_EQ_INT(R[3].status, TERN_STORE_DUPLICATE);
  CHECK_EQ_STR(R[3].dup, "m-1");
  CHECK_EQ_INT(R[4].nitems, 2);
  close_store(s);
}

TEST(dedup_same_group) {
  use_dir("dedup2");
  tern_store *s = open_store();
  /* Ops submitted back to back behind a filler share a group; prove it through commit_ns (one
   * value per group commit) and retry with fresh keys until it happened. */
  int same = 0;
  for (int attempt = 0; attempt < 20 && !same; attempt++) {
    char key[32], m1[16], m2[16];
    snprintf(key, sizeof key, "dev/c-%d", attempt);
    snprintf(m1, sizeof m1, "m-%d-a", attempt);
    snprintf(m2, sizeof m2, "m-%d-b", attempt);
    int64_t before = tern_store_inbox_total(s);
    append_args a = {.inboxes = {"bob"}, .msg_id = m1, .dedup = key};
    res r1, r2;
    submit_filler(s);
    submit_append(s, &r1, &a, "one");
    a.msg_id = m2;
    submit_append(s, &r2, &a, "two");
    wait_all();
    CHECK_EQ_INT(r1.status, TERN_STORE_OK);
    CHECK_EQ_INT(r2.status, TERN_STORE_DUPLICATE);
    CHECK_EQ_STR(r2.dup, m1);
    CHECK_EQ_INT(tern_store_inbox_total(s), before + 1);
    same = r1.commit_ns == r2.commit_ns && r1.commit_ns != 0;
  }
  CHECK(same);
  close_store(s);
}

TEST(full_at_cap) {
  use_dir("full");
  tern_store_options o = default_opts();
  o.inbox_max_envelopes = 3;
  tern_store *s = open_with(&o);
  append_args capped = {.inboxes = {"bob"}, .check_cap = true};
  for (int i = 0; i < 3; i++) submit_append(s, &R[i], &capped, "x");
  submit_append(s, &R[3], &capped, "x");
  append_args two = {.inboxes = {"carol", "bob"}, .check_cap = true};
  submit_append(s, &R[4], &two, "x");
  append_args own = {.inboxes = {"bob"}, .check_cap = false}; /* sender's own copies are not capped */
  submit_append(s, &R[5], &own, "own");
  submit_drain(s, &R[6], "bob", 0, 0);
  submit_drain(s, &R[7], "carol", 0, 0);
  wait_all();
  for (int i = 0; i < 3; i++) CHECK_EQ_INT(R[i].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[3].status, TERN_STORE_FULL);
  CHECK_EQ_INT(R[4].status, TERN_STORE_FULL);
  CHECK_EQ_INT(R[5].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[6].nitems, 4);
  CHECK_EQ_INT(R[7].nitems, 0);
  CHECK_EQ_INT(tern_store_inbox_total(s), 4);
  /* room again after an ack */
  submit_ack(s, &R[8], "bob", 2);
  submit_append(s, &R[9], &capped, "x");
  wait_all();
  CHECK_EQ_INT(R[9].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[9].seqs[0], 5);
  close_store(s);
}

TEST(delivery_token_once) {
  use_dir("token");
  tern_store *s = open_store();
  /* alice → bob: copies to bob's two devices carry F_RECEIPT; alice's other device's copy not */
  append_args rc = {.inboxes = {"bob1", "bob2"}, .flags = TERN_ENV_F_RECEIPT, .msg_id = "m1", .token_from = "alice"};
  submit_append(s, &R[0], &rc, "hi");
  append_args own = {.inboxes = {"alice2"}, .msg_id = "m1"};
  submit_append(s, &R[1], &own, "hi");
  wait_all();
  submit_ack(s, &R[2], "bob1", 1);
  wait_all();
  submit_ack(s, &R[3], "bob2", 1);
  submit_ack(s, &R[4], "alice2", 1);
  wait_all();
  CHECK_EQ_INT(R[2].ndeliv, 1);
  CHECK_EQ_STR(R[2].deliv[0], "m1");
  CHECK_EQ_STR(R[2].deliv_from[0], "alice");
  CHECK_EQ_INT(R[3].ndeliv, 0);
  CHECK_EQ_INT(R[4].ndeliv, 0);

  /* both acks in one group: still exactly one report */
  int same = 0, total = 0;
  for (int attempt = 0; attempt < 20 && !same; attempt++) {
    char id[16];
    snprintf(id, sizeof id, "g%d", attempt);
    rc.msg_id = id;
    res a, b1, b2;
    submit_append(s, &a, &rc, "again");
    wait_all();
    submit_filler(s);
    submit_ack(s, &b1, "bob1", 1000);
    submit_ack(s, &b2, "bob2", 1000);
    wait_all();
    CHECK_EQ_INT(b1.ndeliv + b2.ndeliv, 1);
    total += (int)(b1.ndeliv + b2.ndeliv);
    same = b1.commit_ns == b2.commit_ns && b1.commit_ns != 0;
  }
  CHECK(same);

  /* one ack over many envelopes (iterator path) reports each message once, in order */
  for (int i = 0; i < 12; i++) {
    char id[16];
    snprintf(id, sizeof id, "n%02d", i);
    append_args x = {.inboxes = {"bob1", "bob2"}, .flags = TERN_ENV_F_RECEIPT, .msg_id = id, .token_from = "carol"};
    submit_append(s, &R[10 + i], &x, "many");
  }
  wait_all();
  res big1, big2;
  submit_ack(s, &big1, "bob2", 1000);
  submit_ack(s, &big2, "bob1", 1000);
  wait_all();
  CHECK_EQ_INT(big1.ndeliv, 12); /* res keeps the first 8 ids */
  CHECK_EQ_STR(big1.deliv[0], "n00");
  CHECK_EQ_STR(big1.deliv[7], "n07");
  CHECK_EQ_STR(big1.deliv_from[3], "carol");
  CHECK_EQ_INT(big2.ndeliv, 0);
  CHECK_EQ_INT(tern_store_inbox_total(s), 0);
  close_store(s);
}

TEST(no_receipt_without_flag) {
  use_dir("noflag");
  tern_store *s = open_store();
  /* a token exists, but the copy does not carry F_RECEIPT (e.g. a note to self) */
  append_args a = {.inboxes = {"bob1"}, .msg_id = "m9", .token_from = "alice"};
  submit_append(s, &R[0], &a, "x");
  /* a receipt envelope never reports either */
  tern_store_op *op = new_op(TERN_OP_APPEND, &R[1]);
  size_t len;
  uint8_t *v = tern_env_pack(TERN_ENV_RECEIPT, 0, tern_now_ms(), NULL, NULL, "{}", 2, &len);
  tern_store_op_add_target(op, "bob1", tern_store_op_add_value(op, v, len), false);
  tern_free(v);
  tern_store_submit(s, op);
  submit_ack(s, &R[2], "bob1", 2);
  wait_all();
  CHECK_EQ_INT(R[1].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[2].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[2].ndeliv, 0);
  close_store(s);
}

TEST(move_inbox) {
  use_dir("move");
  tern_store *s = open_store();
  append1(s, &R[0], "dev-c", "d1");
  append1(s, &R[1], "dev-c", "d2");
  char body[16];
  for (int i = 0; i < 11; i++) {
    snprintf(body, sizeof body, "u%02d", i);
    append1(s, &R[2 + i], "@carol", body);
  }
  wait_all();
  CHECK_EQ_INT(R[12].seqs[0], 11);
  tern_store_op *op = new_op(TERN_OP_MOVE_INBOX, &R[13]);
  tern_store_op_set_str(&op->inbox, "@carol");
  tern_store_op_set_str(&op->inbox2, "dev-c");
  tern_store_submit(s, op);
  append1(s, &R[14], "dev-c", "after");
  submit_drain(s, &R[15], "dev-c", 0, 0);
  submit_drain(s, &R[16], "@carol", 0, 0);
  wait_all();
  CHECK_EQ_INT(R[13].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[14].seqs[0], 14);
  CHECK_EQ_INT(R[15].nitems, 14);
  for (size_t i = 0; i < R[15].nitems; i++) CHECK_EQ_INT(R[15].item_seq[i], i + 1);
  CHECK_EQ_STR(R[15].item_tail[1], "d2");
  CHECK_EQ_STR(R[15].item_tail[2], "u00");
  CHECK_EQ_STR(R[15].item_tail[12], "u10");
  CHECK_EQ_STR(R[15].item_tail[13], "after");
  CHECK_EQ_INT(R[16].nitems, 0);
  CHECK_EQ_INT(tern_store_inbox_total(s), 14);
  close_store(s);
  s = open_store(); /* the move was durable and the counts agree */
  CHECK_EQ_INT(tern_store_inbox_total(s), 14);
  append1(s, &R[17], "dev-c", "later");
  wait_all();
  CHECK_EQ_INT(R[17].seqs[0], 15);
  close_store(s);
}

typedef struct loaded {
  int nusers, ndevices;
  char users[8][32];
  int64_t user_last_seen[8];
  char pw[8][32];
  char devices[8][32];
  char dev_user[8][32];
  char dev_label[8][32];
  char dev_push[8][32];
  int64_t dev_last_seen[8];
  uint8_t hash0[8];
} loaded;

static void load_user(const tern_user_rec *u, void *arg) {
  loaded *l = arg;
  if (l->nusers >= 8) return;
  snprintf(l->users[l->nusers], 32, "%s", u->user);
  snprintf(l->pw[l->nusers], 32, "%s", u->pwhash);
  l->user_last_seen[l->nusers++] = u->last_seen;
}

static void load_device(const tern_device_rec *d, void *arg) {
  loaded *l = arg;
  if (l->ndevices >= 8) return;
  snprintf(l->devices[l->ndevices], 32, "%s", d->device_id);
  snprintf(l->dev_user[l->ndevices], 32, "%s", d->user);
  snprintf(l->dev_label[l->ndevices], 32, "%s", d->label);
  snprintf(l->dev_push[l->ndevices], 32, "%s", d->push ? d->push : "(none)");
  l->hash0[l->ndevices] = d->token_hash[0];
  l->dev_last_seen[l->ndevices++] = d->last_seen;
}

static void put_device(tern_store *s, res *r, const char *id, const char *user, const char *label) {
  tern_store_op *op = new_op(TERN_OP_PUT_DEVICE, r);
  tern_device_rec d = {.device_id = id, .user = user, .label = label, .created = 5,
                       .push = strcmp(id, "d1") == 0 ? "fcm:TOKEN-1" : NULL};
  d.token_hash[0] = (uint8_t)id[strlen(id) - 1];
  tern_store_op_set_device(op, &d);
  tern_store_submit(s, op);
}

TEST(load_records) {
  use_dir("load");
  tern_store *s = open_store();
  const char *names[2] = {"alice", "bob"};
  for (int i = 0; i < 2; i++) {
    tern_store_op *op = new_op(TERN_OP_PUT_USER, &R[i]);
    tern_user_rec u = {.user = names[i], .pwhash = "$argon2id$v=19$h", .created = 100 + i};
    tern_store_op_set_user(op, &u);
    tern_store_submit(s, op);
  }
  put_device(s, &R[2], "d1", "alice", "laptop");
  put_device(s, &R[3], "d2", "bob", "");
  tern_store_op *op = new_op(TERN_OP_SET_LAST_SEEN, &R[4]);
  tern_user_rec u = {.user = "alice", .last_seen = 123456};
  tern_device_rec d = {.device_id = "d1", .last_seen = 777};
  tern_store_op_set_user(op, &u);
  tern_store_op_set_device(op, &d);
  tern_store_submit(s, op);
  op = new_op(TERN_OP_SET_LAST_SEEN, &R[5]);
  tern_user_rec ghost = {.user = "ghost", .last_seen = 1}; /* unknown: no record appears */
  tern_store_op_set_user(op, &ghost);
  tern_store_submit(s, op);
  wait_all();
  for (int i = 0; i < 6; i++) CHECK_EQ_INT(R[i].status, TERN_STORE_OK);
  close_store(s);

  s = open_store();
  loaded l = {0};
  tern_store_load_cbs cbs = {.user = load_user, .device = load_device, .arg = &l};
  CHECK_EQ_INT(tern_store_load(s, &cbs), 0);
  CHECK_EQ_INT(l.nusers, 2);
  CHECK_EQ_STR(l.users[0], "alice");
  CHECK_EQ_STR(l.pw[0], "$argon2id$v=19$h");
  CHECK_EQ_INT(l.user_last_seen[0], 123456);
  CHECK_EQ_STR(l.users[1], "bob");
  CHECK_EQ_INT(l.user_last_seen[1], 0);
  CHECK_EQ_INT(l.ndevices, 2);
  CHECK_EQ_STR(l.devices[0], "d1");
  CHECK_EQ_STR(l.dev_user[0], "alice");
  CHECK_EQ_STR(l.dev_label[0], "laptop");
  CHECK_EQ_INT(l.dev_last_seen[0], 777);
  CHECK_EQ_INT(l.hash0[0], '1');
  CHECK_EQ_STR(l.dev_label[1], "");
  CHECK_EQ_STR(l.dev_push[0], "fcm:TOKEN-1"); /* and SET_LAST_SEEN's patch kept it */
  CHECK_EQ_STR(l.dev_push[1], "(none)");
  CHECK_EQ_INT(l.hash0[1], '2');
  close_store(s);
}

TEST(del_device) {
  use_dir("deldev");
  tern_store *s = open_store();
  put_device(s, &R[0], "dx", "alice", "phone");
  put_device(s, &R[1], "dy", "alice", "tablet");
  append_args a = {.inboxes = {"dx", "dy"}, .msg_id = "m1", .dedup = "dx/c-1"};
  submit_append(s, &R[2], &a, "x");
  append1(s, &R[3], "dx", "y");
  wait_all();
  tern_store_op *op = new_op(TERN_OP_DEL_DEVICE, &R[4]);
  tern_store_op_set_str((char **)&op->device.device_id, "dx");
  tern_store_submit(s, op);
  submit_drain(s, &R[5], "dx", 0, 0);
  a.msg_id = "m2"; /* the forgotten client id is new again */
  submit_append(s, &R[6], &a, "z");
  wait_all();
  CHECK_EQ_INT(R[4].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[5].nitems, 0);
  CHECK_EQ_INT(R[6].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[6].seqs[0], 1); /* a fresh inbox (device ids are never reused) */
  CHECK_EQ_INT(tern_store_inbox_total(s), 3);
  a.msg_id = "m3";
  a.dedup = "dx/c-2";
  submit_append(s, &R[9], &a, "w");
  op = new_op(TERN_OP_DEL_DEVICE, &R[7]);
  tern_store_op_set_str((char **)&op->device.device_id, "dx");
  tern_store_submit(s, op);
  wait_all();
  close_store(s);
  s = open_store();
  CHECK_EQ_INT(tern_store_inbox_total(s), 3); /* dy: x, z, w */
  loaded l = {0};
  tern_store_load_cbs cbs = {.user = load_user, .device = load_device, .arg = &l};
  CHECK_EQ_INT(tern_store_load(s, &cbs), 0);
  CHECK_EQ_INT(l.ndevices, 1);
  CHECK_EQ_STR(l.devices[0], "dy");
  submit_drain(s, &R[8], "dy", 0, 0);
  submit_drain(s, &R[10], "dx", 0, 0);
  a.msg_id = "m4";
  submit_append(s, &R[11], &a, "v"); /* dx/c-2 was forgotten with the device */
  wait_all();
  CHECK_EQ_INT(R[8].nitems, 3);
  CHECK_EQ_INT(R[10].nitems, 0);
  CHECK_EQ_INT(R[11].status, TERN_STORE_OK);
  close_store(s);
}

TEST(del_device_same_group) {
  use_dir("deldev2");
  tern_store *s = open_store();
  int same = 0;
  for (int attempt = 0; attempt < 20 && !same; attempt++) {
    char dev[16], key[32];
    snprintf(dev, sizeof dev, "dz%d", attempt);
    snprintf(key, sizeof key, "%s/c-1", dev);
    append_args a = {.inboxes = {dev}, .msg_id = "m1", .dedup = key};
    res r1, r2, r3, r4;
    submit_filler(s);
    submit_append(s, &r1, &a, "x");
    tern_store_op *op = new_op(TERN_OP_DEL_DEVICE, &r2);
    tern_store_op_set_str((char **)&op->device.device_id, dev);
    tern_store_submit(s, op);
    wait_all();
    /* the delete saw the envelope and the client id written just before it */
    submit_drain(s, &r3, dev, 0, 0);
    a.msg_id = "m2";
    submit_append(s, &r4, &a, "y");
    wait_all();
    CHECK_EQ_INT(r3.nitems, 0);
    CHECK_EQ_INT(r4.status, TERN_STORE_OK);
    CHECK_EQ_INT(r4.seqs[0], 1);
    same = r1.commit_ns == r2.commit_ns && r1.commit_ns != 0;
  }
  CHECK(same);
  close_store(s);
}

TEST(sweep_expires) {
  use_dir("sweep");
  tern_store_options o = default_opts();
  o.inbox_ttl_ms = 1000;
  o.dedup_ttl_ms = 1000;
  tern_store *s = open_with(&o);
  int64_t now = tern_now_ms(), old = now - 5000;
  append_args a = {.inboxes = {"bob1"},
                   .flags = TERN_ENV_F_RECEIPT,
                   .msg_id = "old1",
                   .dedup = "al/c1",
                   .token_from = "alice",
                   .ts = old,
                   .now = old};
  submit_append(s, &R[0], &a, "o1");
  a.msg_id = "old2";
  a.dedup = "al/c2";
  submit_append(s, &R[1], &a, "o2");
  a.msg_id = "young";
  a.dedup = "al/c3";
  a.ts = a.now = now;
  submit_append(s, &R[2], &a, "y");
  /* an old token whose copy was already acked away: only the sweep removes it */
  append_args b = {.inboxes = {"bob2"}, .msg_id = "old3", .token_from = "alice", .ts = old, .now = old};
  submit_append(s, &R[3], &b, "o3");
  submit_ack(s, &R[4], "bob2", 1);
  wait_all();
  CHECK_EQ_INT(tern_store_inbox_total(s), 3);
  tern_store_op *op = new_op(TERN_OP_SWEEP, &R[5]);
  op->now = now;
  tern_store_submit(s, op);
  submit_drain(s, &R[6], "bob1", 0, 0);
  a.msg_id = "again";
  a.dedup = "al/c1"; /* expired client id: a new message */
  submit_append(s, &R[7], &a, "again");
  a.msg_id = "again3";
  a.dedup = "al/c3"; /* young client id: still a duplicate */
  submit_append(s, &R[8], &a, "again3");
  wait_all();
  CHECK_EQ_INT(R[5].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[5].expired, 2);
  CHECK_EQ_INT(R[6].nitems, 1);
  CHECK_EQ_INT(R[6].item_seq[0], 3);
  CHECK_EQ_INT(R[7].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[8].status, TERN_STORE_DUPLICATE);
  CHECK_EQ_STR(R[8].dup, "young");
  CHECK_EQ_INT(tern_store_inbox_total(s), 2);
  /* the young message's token survived, and its ack reports it */
  submit_ack(s, &R[9], "bob1", 3);
  wait_all();
  CHECK_EQ_INT(R[9].ndeliv, 1);
  CHECK_EQ_STR(R[9].deliv[0], "young");
  close_store(s);
}

TEST(sweep_is_bounded) {
  use_dir("sweep_bounded");
  tern_store_options o = default_opts();
  o.inbox_ttl_ms = 1000;
  o.group_max = 1024;
  o.inbox_max_envelopes = 0;
  tern_store *s = open_with(&o);
  int64_t old = tern_now_ms() - 5000;
  enum { N = 12000 };
  res *rs = tern_calloc(N, sizeof *rs);
  append_args a = {.inboxes = {"q1"}, .ts = old};
  for (int i = 0; i < N; i++) submit_append(s, &rs[i], &a, "x");
  wait_all();
  CHECK_EQ_INT(tern_store_inbox_total(s), N);
  uint64_t expired = 0;
  int calls = 0;
  while (tern_store_inbox_total(s) > 0 && calls < 10) {
    tern_store_op *op = new_op(TERN_OP_SWEEP, &R[0]);
    tern_store_submit(s, op);
    wait_all();
    CHECK(R[0].expired <= 10000);
    expired += R[0].expired;
    calls++;
  }
  CHECK_EQ_INT(expired, N);
  CHECK(calls >= 2);
  append1(s, &R[1], "q1", "new");
  wait_all();
  CHECK_EQ_INT(R[1].seqs[0], N + 1);
  tern_free(rs);
  close_store(s);
}

/* The child half of durable_after_kill, in a fresh process (re-exec'd, so it starts with no
 * threads and no inherited loop): appends, waits for the completions, and dies by SIGKILL with
 * the store open. */
static int kill_child(const char *data_dir) {
  snprintf(dir, sizeof dir, "%s", data_dir);
  uv_loop_init(&loop);
  tern_store *s = open_store();
  if (!s) return 3;
  for (int i = 0; i < 100; i++) {
    tern_store_op *op = tern_store_op_new(TERN_OP_APPEND, NULL, NULL);
    size_t len;
    uint8_t *v = tern_env_pack(TERN_ENV_MSG, 0, tern_now_ms(), "m", "a", "k", 1, &len);
    tern_store_op_add_target(op, i % 2 ? "K1" : "K2", tern_store_op_add_value(op, v, len), false);
    tern_free(v);
    tern_store_submit(s, op);
  }
  /* completions come in order: once the last one is done, all 101 are durable */
  append1(s, &R[0], "K1", "last");
  wait_all();
  raise(SIGKILL);
  return 4;
}

static const char *self_exe;

/* Runs this binary as a child in mode `mode` on the current dir; returns its wait status. */
static int run_child(const char *mode) {
  pid_t pid = fork();
  if (pid == 0) {
    execl(self_exe, self_exe, mode, dir, (char *)NULL);
    _exit(5);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return st;
}

/* The child half of commit_error: writes fail once the files reach RLIMIT_FSIZE (EFBIG, with
 * SIGXFSZ ignored). The failing group must come back ERROR, with no seqs, and the counters must
 * match what is committed. Exits 0 when all held. */
static int error_child(const char *data_dir) {
  snprintf(dir, sizeof dir, "%s", data_dir);
  uv_loop_init(&loop);
  tern_store *s = open_store();
  if (!s) return 3;
  for (int i = 0; i < 5; i++) append1(s, &R[i], "E", "small");
  wait_all();
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl = {.rlim_cur = 1 << 20, .rlim_max = RLIM_INFINITY};
  setrlimit(RLIMIT_FSIZE, &rl);
  enum { BIG = 100000 };
  char *big = tern_malloc(BIG + 1);
  memset(big, 'z', BIG);
  big[BIG] = 0;
  int ok = 5, failed = 0;
  for (int i = 0; i < 40 && !failed; i++) {
    append1(s, &R[10], "E", big);
    wait_all();
    if (R[10].status == TERN_STORE_OK) {
      ok++;
    } else {
      failed = 1;
      if (R[10].status != TERN_STORE_ERROR || !R[10].err[0] || R[10].seqs[0] != 0) return 10;
      fprintf(stderr, "  (child) commit failed as planned after %d appends: %s\n", ok, R[10].err);
    }
  }
  tern_free(big);
  if (!failed) return 11;
  if (tern_store_inbox_total(s) != ok) return 12;
  submit_drain(s, &R[11], "E", 0, 1); /* reads still work */
  wait_all();
  if (R[11].status != TERN_STORE_OK || R[11].nitems != 1 || R[11].item_seq[0] != 1) return 13;
  close_store(s);
  return 0;
}

TEST(durable_after_kill) {
  use_dir("kill");
  int st = run_child("kill-child");
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  tern_store *s = open_store();
  CHECK_EQ_INT(tern_store_inbox_total(s), 101);
  submit_drain(s, &R[0], "K1", 0, 0);
  submit_drain(s, &R[1], "K2", 0, 0);
  wait_all();
  CHECK_EQ_INT(R[0].nitems, 51);
  CHECK_EQ_INT(R[1].nitems, 50);
  CHECK_EQ_STR(R[0].item_tail[50], "last");
  close_store(s);
}

/* CPU time of the whole process (loop + store thread + RocksDB's threads), ns. */
static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int many_done, many_bad_order;
static void on_many(tern_store_op *op) {
  if ((intptr_t)op->arg != many_done) many_bad_order++;
  if (op->status != TERN_STORE_OK || op->targets[0].seq == 0) many_bad_order++;
  many_done++;
}

TEST(many_appends_group_commit) {
  use_dir("many");
  tern_store_options o = default_opts();
  o.group_max = 1024;
  o.inbox_max_envelopes = 0;
  tern_store *s = open_with(&o);
  enum { N = 20000, INBOXES = 100 };
  char body[200];
  memset(body, 'b', sizeof body - 1);
  body[sizeof body - 1] = 0;
  uint64_t c0 = commits(s);
  many_done = many_bad_order = 0;
  uint64_t t0 = tern_mono_ns(), cpu0 = cpu_ns();
  for (int i = 0; i < N; i++) {
    tern_store_op *op = tern_store_op_new(TERN_OP_APPEND, on_many, (void *)(intptr_t)i);
    char inbox[16], id[24];
    snprintf(inbox, sizeof inbox, "dev%03d", i % INBOXES);
    snprintf(id, sizeof id, "msg-%d", i);
    size_t len;
    uint8_t *v =
        tern_env_pack(TERN_ENV_MSG, TERN_ENV_F_RECEIPT, tern_now_ms(), id, "alice", body, sizeof body - 1, &len);
    tern_store_op_add_target(op, inbox, tern_store_op_add_value(op, v, len), true);
    tern_free(v);
    tern_store_op_set_str(&op->msg_id, id);
    tern_store_op_set_str(&op->token_from, "alice");
    tern_store_submit(s, op);
  }
  while (many_done < N) uv_run(&loop, UV_RUN_ONCE);
  uint64_t ns = tern_mono_ns() - t0, cpu = cpu_ns() - cpu0;
  uint64_t nc = commits(s) - c0;
  CHECK_EQ_INT(many_bad_order, 0);
  CHECK(nc < N / 10);
  CHECK_EQ_INT(tern_store_inbox_total(s), N);
  tern_store_commit_hist h;
  tern_store_commit_hist_read(s, &h);
  uint64_t sum = 0;
  for (int i = 0; i <= TERN_STORE_COMMIT_NBUCKETS; i++) sum += h.buckets[i];
  CHECK_EQ_INT(sum, h.count);
  fprintf(stderr,
          "  %d synced appends (1 target, 200 B body, token) in %.1f ms: %.0f appends/s, %.2f us CPU each, "
          "%llu commits, mean commit %.0f us\n",
          N, ns / 1e6, N / (ns / 1e9), cpu / 1e3 / N, (unsigned long long)nc,
          h.count ? h.sum / (double)h.count * 1e6 : 0.0);
  /* acks of everything, also grouped */
  many_done = 0;
  tern_store_commit_hist_read(s, &h);
  double commit_before = h.sum;
  t0 = tern_mono_ns();
  cpu0 = cpu_ns();
  res *acks = tern_calloc(INBOXES, sizeof *acks);
  for (int i = 0; i < INBOXES; i++) {
    char inbox[16];
    snprintf(inbox, sizeof inbox, "dev%03d", i);
    submit_ack(s, &acks[i], inbox, 1000000);
  }
  wait_all();
  ns = tern_mono_ns() - t0;
  cpu = cpu_ns() - cpu0;
  tern_store_commit_hist_read(s, &h);
  fprintf(stderr,
          "  acked %d envelopes (each consuming a delivery token) in %d acks: %.1f ms (commits %.1f ms), "
          "%.2f us CPU per envelope\n",
          N, INBOXES, ns / 1e6, (h.sum - commit_before) * 1e3, cpu / 1e3 / N);
  size_t delivered = 0;
  for (int i = 0; i < INBOXES; i++) delivered += acks[i].ndeliv;
  CHECK_EQ_INT(delivered, N);
  tern_free(acks);
  CHECK_EQ_INT(tern_store_inbox_total(s), 0);
  close_store(s);
}

TEST(commit_error) {
  use_dir("error");
  int st = run_child("error-child");
  CHECK(WIFEXITED(st));
  CHECK_EQ_INT(WEXITSTATUS(st), 0);
}

TEST(open_errors) {
  tern_store_options o = default_opts();
  o.dir = NULL;
  tern_store *s = (tern_store *)1;
  char err[128] = "";
  CHECK_EQ_INT(tern_store_open_rocksdb(&loop, &o, &s, err, sizeof err), -EINVAL);
  CHECK(s == NULL);
  /* a second open of the same dir is refused by RocksDB's lock */
  use_dir("twice");
  tern_store *a = open_store();
  o = default_opts();
  err[0] = 0;
  CHECK(tern_store_open_rocksdb(&loop, &o, &s, err, sizeof err) < 0);
  CHECK(err[0] != 0);
  close_store(a);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

/* ---- KV records (media metadata) ---- */
typedef struct kv_seen {
  int n;           /* records loaded */
  char keys[4][32];
  char vals[4][32];
} kv_seen;

static void load_kv(const char *k, size_t kl, const uint8_t *v, size_t vl, void *arg) {
  kv_seen *ks = arg;
  if (ks->n >= 4) return;
  snprintf(ks->keys[ks->n], 32, "%.*s", (int)kl, k);
  snprintf(ks->vals[ks->n++], 32, "%.*s", (int)vl, (const char *)v);
}

TEST(kv_records) {
  use_dir("kv");
  tern_store *s = open_store();
  const char *keys[3] = {"media/aaa", "media/bbb", "media/ccc"};
  for (int i = 0; i < 3; i++) {
    tern_store_op *op = new_op(TERN_OP_KV_PUT, &R[i]);
    tern_store_op_set_str(&op->kv_key, keys[i]);
    char v[16];
    snprintf(v, sizeof v, "value-%d", i);
    tern_store_op_add_value(op, (const uint8_t *)v, strlen(v));
    tern_store_submit(s, op);
  }
  tern_store_op *op = new_op(TERN_OP_KV_DEL, &R[3]);
  tern_store_op_set_str(&op->kv_key, "media/bbb");
  tern_store_submit(s, op);
  op = new_op(TERN_OP_KV_PUT, &R[4]); /* no value: refused, nothing written */
  tern_store_op_set_str(&op->kv_key, "media/ddd");
  tern_store_submit(s, op);
  wait_all();
  for (int i = 0; i < 4; i++) CHECK_EQ_INT(R[i].status, TERN_STORE_OK);
  CHECK_EQ_INT(R[4].status, TERN_STORE_ERROR);
  close_store(s);
  s = open_store();
  kv_seen ks = {0};
  tern_store_load_cbs cbs = {.kv = load_kv, .arg = &ks};
  CHECK_EQ_INT(tern_store_load(s, &cbs), 0);
  CHECK_EQ_INT(ks.n, 2);
  CHECK_EQ_STR(ks.keys[0], "media/aaa");
  CHECK_EQ_STR(ks.vals[0], "value-0");
  CHECK_EQ_STR(ks.keys[1], "media/ccc");
  CHECK_EQ_STR(ks.vals[1], "value-2");
  close_store(s);
}

/* A message's only recipient copy (F_SOLE) needs no token: its first ack delivers it, and a
 * second ack of the same seq (a redelivery) reports nothing. */
TEST(sole_copy_delivers) {
  use_dir("sole");
  tern_store *s = open_store();
  append_args a = {.inboxes = {"bob1"}, .flags = TERN_ENV_F_RECEIPT | TERN_ENV_F_SOLE, .msg_id = "m1", .token_from = NULL};
  submit_append(s, &R[0], &a, "hi");
  a.msg_id = "m2";
  submit_append(s, &R[1], &a, "there");
  wait_all();
  submit_ack(s, &R[2], "bob1", 1);
  submit_ack(s, &R[3], "bob1", 1);
  submit_ack(s, &R[4], "bob1", 2);
  wait_all();
  CHECK_EQ_INT(R[2].ndeliv, 1);
  CHECK_EQ_STR(R[2].deliv[0], "m1");
  CHECK_EQ_STR(R[2].deliv_from[0], "alice");
  CHECK_EQ_INT(R[3].ndeliv, 0);
  CHECK_EQ_INT(R[4].ndeliv, 1);
  CHECK_EQ_STR(R[4].deliv[0], "m2");
  CHECK_EQ_INT(tern_store_inbox_total(s), 0);
  close_store(s);
}

/* Appends after an inbox's meta was written leave only their envelope keys; a reopen must still
 * continue after the highest seq, also once the head has been acked and after a kill. */
TEST(seq_after_appends_without_meta) {
  use_dir("meta");
  tern_store *s = open_store();
  for (int i = 0; i < 4; i++) {
    append1(s, &R[i], "A", "x");
    wait_all(); /* separate groups: only the first writes A's meta */
  }
  close_store(s);
  s = open_store();
  CHECK_EQ_INT(tern_store_inbox_total(s), 4);
  append1(s, &R[4], "A", "x");
  submit_ack(s, &R[5], "A", 5);
  wait_all();
  CHECK_EQ_INT(R[4].seqs[0], 5);
  close_store(s);
  s = open_store();
  CHECK_EQ_INT(tern_store_inbox_total(s), 0);
  append1(s, &R[6], "A", "x");
  wait_all();
  append1(s, &R[7], "A", "x");
  submit_ack(s, &R[8], "A", 6);
  wait_all();
  CHECK_EQ_INT(R[6].seqs[0], 6);
  CHECK_EQ_INT(R[7].seqs[0], 7);
  close_store(s);
  s = open_store();
  CHECK_EQ_INT(tern_store_inbox_total(s), 1);
  append1(s, &R[9], "A", "x");
  submit_drain(s, &R[10], "A", 0, 0);
  wait_all();
  CHECK_EQ_INT(R[9].seqs[0], 8);
  CHECK_EQ_INT(R[10].nitems, 2);
  CHECK_EQ_INT(R[10].item_seq[0], 7);
  CHECK_EQ_INT(R[10].item_seq[1], 8);
  close_store(s);
}

/* An inbox whose older envelopes left the cache and whose newer ones are in it: drains and acks
 * read both parts, in order. Old envelopes (a device away) are evicted first. */
TEST(cache_part_evicted) {
  use_dir("evict");
  tern_store_options o = default_opts();
  o.cache_bytes = 600;
  tern_store *s = open_with(&o);
  char big[201];
  memset(big, 'o', 200);
  big[200] = 0;
  for (int i = 0; i < 5; i++) {
    big[0] = (char)('1' + i);
    append_args a = {.inboxes = {"A"}, .ts = tern_now_ms() - 60000};
    submit_append(s, &R[i], &a, big); /* 5 x 200 bytes: over the budget, and stale */
  }
  wait_all();
  append_args fresh = {.inboxes = {"B"}};
  submit_append(s, &R[5], &fresh, "b");
  for (int i = 0; i < 5; i++) {
    char body[8];
    snprintf(body, sizeof body, "n%d", 6 + i);
    append1(s, &R[6 + i], "A", body);
  }
  wait_all();
  submit_drain(s, &R[11], "A", 0, 0);
  submit_ack(s, &R[12], "A", 7);
  submit_drain(s, &R[13], "A", 0, 0);
  wait_all();
  CHECK_EQ_INT(R[11].nitems, 10);
  for (size_t i = 0; i < R[11].nitems && i < 10; i++) CHECK_EQ_INT(R[11].item_seq[i], i + 1);
  CHECK(R[11].item_tail[0][0] == '1');
  CHECK(R[11].item_tail[4][0] == '5');
  CHECK_EQ_STR(R[11].item_tail[5], "n6");
  CHECK_EQ_STR(R[11].item_tail[9], "n10");
  CHECK_EQ_INT(R[13].nitems, 3);
  CHECK_EQ_INT(R[13].item_seq[0], 8);
  CHECK_EQ_STR(R[13].item_tail[0], "n8");
  CHECK_EQ_INT(tern_store_inbox_total(s), 4);
  close_store(s);
}

/* Inbox metas go to a journal and a checkpoint now and then: reopening before, across and after
 * checkpoints finds every inbox's counters, and a deleted device stays deleted. */
TEST(meta_journal_reopen) {
  use_dir("journal");
  tern_store_options o = default_opts();
  o.checkpoint_every = 3;
  tern_store *s = open_with(&o);
  uint64_t acked = 0;
  for (int round = 0; round < 8; round++) {
    append1(s, &R[0], "A", "a");
    append1(s, &R[1], "A", "a");
    if (round < 4) append1(s, &R[2], "B", "b");
    wait_all();
    CHECK_EQ_INT(R[1].seqs[0], 2 * round + 2);
    submit_ack(s, &R[3], "A", ++acked);
    if (round == 4) {
      tern_store_op *op = new_op(TERN_OP_DEL_DEVICE, &R[4]);
      tern_device_rec d = {.device_id = "B"};
      tern_store_op_set_device(op, &d);
      tern_store_submit(s, op);
    }
    wait_all();
    if (round == 2 || round == 5 || round == 7) {
      close_store(s);
      s = open_with(&o);
    }
    CHECK_EQ_INT(tern_store_inbox_total(s), 2 * (round + 1) - (int)acked + (round < 4 ? round + 1 : 0));
  }
  append1(s, &R[5], "B", "b"); /* the deleted device's counter is gone: seqs restart */
  append1(s, &R[6], "A", "a");
  submit_drain(s, &R[7], "A", 0, 0);
  wait_all();
  CHECK_EQ_INT(R[5].seqs[0], 1);
  CHECK_EQ_INT(R[6].seqs[0], 17);
  CHECK_EQ_INT(R[7].nitems, 9);
  CHECK_EQ_INT(R[7].item_seq[0], 9);
  close_store(s);
}

static void run_suite(void) {
  RUN(env_pack_roundtrip);
  RUN(op_free_owns_everything);
  RUN(append_assigns_seqs);
  RUN(drain_order_paging);
  RUN(drain_orders_with_appends);
  RUN(ack_deletes);
  RUN(seq_survives_reopen);
  RUN(seq_after_appends_without_meta);
  RUN(meta_journal_reopen);
  RUN(dedup_separate_groups);
  RUN(dedup_same_group);
  RUN(full_at_cap);
  RUN(delivery_token_once);
  RUN(sole_copy_delivers);
  RUN(no_receipt_without_flag);
  RUN(move_inbox);
  RUN(cache_part_evicted);
  RUN(load_records);
  RUN(del_device);
  RUN(del_device_same_group);
  RUN(sweep_expires);
  RUN(sweep_is_bounded);
  RUN(durable_after_kill);
  RUN(many_appends_group_commit);
  RUN(commit_error);
  RUN(open_errors);
  RUN(kv_records);
}

int main(int argc, char **argv) {
  tern_log_set_level(TERN_LOG_WARN);
  const char *cb = getenv("TERN_TEST_STORE_CACHE");
  if (cb) cache_bytes = (size_t)strtoull(cb, NULL, 10);
  const char *ce = getenv("TERN_TEST_STORE_CHECKPOINT");
  if (ce) checkpoint_every = atoi(ce);
  if (argc == 3 && strcmp(argv[1], "kill-child") == 0) return kill_child(argv[2]);
  if (argc == 3 && strcmp(argv[1], "error-child") == 0) return error_child(argv[2]);
  static char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  self_exe = exe;
  snprintf(base_dir, sizeof base_dir, "/tmp/tern-test-store-XXXXXX");
  if (!mkdtemp(base_dir)) {
    perror("mkdtemp");
    return 1;
  }
  uv_loop_init(&loop);
  static const size_t caches[2] = {64 << 20, 0};
  static const int checkpoints[2] = {0, 1};
  for (int pass = 0; pass < 2; pass++) {
    cache_bytes = caches[pass];
    checkpoint_every = checkpoints[pass];
    char v[32];
    snprintf(v, sizeof v, "%zu", cache_bytes);
    setenv("TERN_TEST_STORE_CACHE", v, 1); /* for the kill and error children */
    snprintf(v, sizeof v, "%d", checkpoint_every);
    setenv("TERN_TEST_STORE_CHECKPOINT", v, 1);
    fprintf(stderr, "-- envelope cache %zu bytes, meta checkpoint every %d journal records\n", cache_bytes,
            checkpoint_every ? checkpoint_every : 1024);
    run_suite();
  }
  CHECK_EQ_INT(order_errors, 0);
  uv_loop_close(&loop);
  nftw(base_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  DONE();
}
