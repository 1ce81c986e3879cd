/* test_router: the router's fan-out and receipt logic (src/core/router.c) against a real store
 * in a temp dir: who gets which envelope, delivered exactly once per message, one receipt per
 * sender per ack, read receipts to the sender's devices and the reader's other devices. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/core.h"
#include "t.h"

static tern_app app;
static tern_config cfg;
static char dir[64];

/* ---- reading an inbox back ---- */
typedef struct drained {
  size_t n;           /* envelopes */
  char kind[16];      /* 'm' / 'r' per envelope */
  char tail[16][512]; /* JSON tails */
  uint8_t flags[16];
} drained;

static void on_drain(tern_store_op *op) {
  drained *d = op->arg;
  d->n = op->nitems;
  for (size_t i = 0; i < op->nitems && i < 16; i++) {
    tern_env_view v;
    if (tern_env_unpack(op->items[i].value, op->items[i].len, &v) == 0) {
      d->kind[i] = (char)v.kind;
      d->flags[i] = v.flags;
      snprintf(d->tail[i], sizeof d->tail[i], "%.*s", (int)v.tail_len, v.tail);
    }
  }
  tern_app_op_done(&app);
}

static void settle(void) {
  /* completions may submit more ops (receipts after acks): run until nothing is pending */
  for (int i = 0; i < 1000 && app.ops_pending; i++) uv_run(app.loop, UV_RUN_ONCE);
}

static drained drain(const char *inbox) {
  drained d;
  memset(&d, 0, sizeof d);
  tern_store_op *op = tern_store_op_new(TERN_OP_DRAIN, on_drain, &d);
  tern_store_op_set_str(&op->inbox, inbox);
  tern_app_submit(&app, op);
  settle();
  return d;
}

/* ---- fixtures ---- */
static tern_session *fake_session(tern_device *d) {
  tern_session *s = TERN_NEW(tern_session);
  s->app = &app;
  s->dev = d;
  s->refs = 1;
  s->state = SESS_LIVE; /* no connection: writes are skipped, the store is what we check */
  return s;
}

static void send_msg(tern_session *s, const char *to, const char *id, const char *body) {
  tern_frame f;
  memset(&f, 0, sizeof f);
  f.type = TERN_FRAME_SEND;
  f.id = tern_strdup(id);
  f.to = tern_strdup(to);
  f.body = tern_strdup(body);
  f.body_len = strlen(body);
  tern_router_send(&app, s, &f, 0);
  tern_frame_free(&f);
  settle();
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }

TEST(fanout_lists) {
  tern_user *alice = tern_dir_user(&app, "alice"), *bob = tern_dir_user(&app, "bob");
  tern_user *carol = tern_dir_user(&app, "carol");
  tern_device *a1 = alice->devices->next_in_user; /* devices are listed newest first */
  tern_store_op *op = tern_store_op_new(TERN_OP_APPEND, NULL, NULL);
  size_t v = tern_store_op_add_value(op, (const uint8_t *)"x", 1);
  tern_router_fanout(op, alice, a1, bob, v, v, true);
  /* both of bob's devices (capped), then alice's other device (not capped) */
  CHECK_EQ_INT(op->ntargets, 3);
  int bobs = 0, alices = 0;
  for (size_t i = 0; i < op->ntargets; i++) {
    tern_device *d = tern_dir_device(&app, op->targets[i].inbox);
    CHECK(d != NULL);
    if (d && d->user == bob) {
      bobs++;
      CHECK(op->targets[i].check_cap);
    }
    if (d && d->user == alice) {
      alices++;
      CHECK(d != a1);
      CHECK(!op->targets[i].check_cap);
    }
  }
  CHECK_EQ_INT(bobs, 2);
  CHECK_EQ_INT(alices, 1);
  tern_store_op_free(op);

  /* a recipient with no device: the user-level inbox */
  op = tern_store_op_new(TERN_OP_APPEND, NULL, NULL);
  v = tern_store_op_add_value(op, (const uint8_t *)"x", 1);
  tern_router_fanout(op, alice, a1, carol, v, v, true);
  CHECK_EQ_STR(op->targets[0].inbox, "@carol");
  CHECK_EQ_INT(op->ntargets, 2);
  tern_store_op_free(op);

  /* notes to self: only the other devices */
  op = tern_store_op_new(TERN_OP_APPEND, NULL, NULL);
  v = tern_store_op_add_value(op, (const uint8_t *)"x", 1);
  tern_router_fanout(op, alice, a1, alice, v, v, true);
  CHECK_EQ_INT(op->ntargets, 1);
  CHECK(strcmp(op->targets[0].inbox, a1->id) != 0);
  tern_store_op_free(op);
}

TEST(send_ack_read_receipts) {
  tern_user *alice = tern_dir_user(&app, "alice"), *bob = tern_dir_user(&app, "bob");
  tern_device *a1 = alice->devices->next_in_user, *a2 = alice->devices;
  tern_device *b1 = bob->devices->next_in_user, *b2 = bob->devices;
  tern_session *sa = fake_session(a1), *sb1 = fake_session(b1), *sb2 = fake_session(b2);

  send_msg(sa, "bob", "c-1", "one");
  send_msg(sa, "bob", "c-2", "two");
  send_msg(sa, "bob", "c-1", "one again"); /* a resend: not stored twice */
  drained d = drain(b1->id);
  CHECK_EQ_INT(d.n, 2);
  CHECK(strstr(d.tail[0], "\"body\":\"one\"") != NULL);
  CHECK(strstr(d.tail[1], "\"body\":\"two\"") != NULL);
  CHECK_EQ_INT(d.flags[0], TERN_ENV_F_RECEIPT); /* recipient copies make receipts */
  CHECK_EQ_INT(drain(b2->id).n, 2);
  d = drain(a2->id); /* the sender's other device has copies that make no receipt */
  CHECK_EQ_INT(d.n, 2);
  CHECK_EQ_INT(d.flags[0], 0);
  CHECK_EQ_INT(drain(a1->id).n, 0); /* never the sending device */

  /* bob's first device acks both: one delivered receipt listing both, to each alice device */
  sb1->sent_seq = 2;
  tern_router_ack(&app, sb1, 2);
  settle();
  d = drain(a1->id);
  CHECK_EQ_INT(d.n, 1);
  CHECK_EQ_INT(d.kind[0], 'r');
  CHECK(strstr(d.tail[0], "\"status\":\"delivered\"") != NULL);
  CHECK(strstr(d.tail[0], "\"by\":\"bob\"") != NULL);
  const char *ids = strstr(d.tail[0], "\"msg_ids\":[");
  CHECK(ids != NULL && strchr(ids, ',') != NULL && strchr(ids, ',') < strchr(ids, ']')); /* two ids */
  CHECK_EQ_INT(drain(a2->id).n, 3); /* two copies + the receipt */

  /* bob's second device acks the same messages: no second delivered receipt */
  sb2->sent_seq = 2;
  tern_router_ack(&app, sb2, 2);
  settle();
  CHECK_EQ_INT(drain(a1->id).n, 1);
  CHECK_EQ_INT(app.metrics.receipts_delivered, 1);

  /* an ack clamps to what the connection was sent, and a repeat is ignored */
  tern_router_ack(&app, sb2, 99);
  CHECK_EQ_INT(sb2->acked_seq, 2);

  /* bob reads: a read receipt to alice's devices and to bob's other device */
  tern_frame f;
  memset(&f, 0, sizeof f);
  f.type = TERN_FRAME_READ;
  f.peer = tern_strdup("alice");
  f.nids = 1;
  f.ids = tern_malloc(sizeof *f.ids);
  f.ids[0] = tern_strdup("m-1");
  tern_router_read(&app, sb1, &f);
  tern_frame_free(&f);
  settle();
  d = drain(a1->id);
  CHECK_EQ_INT(d.n, 2);
  CHECK(strstr(d.tail[1], "\"status\":\"read\"") != NULL);
  CHECK_EQ_INT(drain(b2->id).n, 1); /* b2 acked its messages; the read receipt is new */
  CHECK_EQ_INT(drain(b1->id).n, 0); /* not to the reading device */
  CHECK_EQ_INT(app.metrics.receipts_read, 1);

  tern_session_unref(sa);
  tern_session_unref(sb1);
  tern_session_unref(sb2);
}

TEST(rate_limit_and_unknown_users) {
  tern_user *alice = tern_dir_user(&app, "alice");
  tern_session *sa = fake_session(alice->devices);
  uint64_t before = app.metrics.messages_sent;
  send_msg(sa, "nobody", "c-x", "hi"); /* no_such_user: nothing stored */
  CHECK_EQ_INT(app.metrics.messages_sent, before);
  alice->tokens = 0; /* bucket empty: rate_limited, nothing stored */
  alice->tokens_at = tern_now_ms();
  send_msg(sa, "bob", "c-y", "hi");
  CHECK_EQ_INT(app.metrics.messages_sent, before);
  alice->tokens = 5;
  send_msg(sa, "bob", "c-z", "hi");
  CHECK_EQ_INT(app.metrics.messages_sent, before + 1);
  tern_session_unref(sa);
}

int main(void) {
  tern_log_set_level(TERN_LOG_WARN);
  snprintf(dir, sizeof dir, "/tmp/tern-router-XXXXXX");
  if (!mkdtemp(dir)) return 1;
  tern_config_defaults(&cfg);
  app.cfg = &cfg;
  app.loop = uv_default_loop();
  char store_dir[128], err[256];
  snprintf(store_dir, sizeof store_dir, "%s/store", dir);
  tern_store_options so = {.dir = store_dir, .max_open_files = 64, .group_max = 64, .inbox_max_envelopes = 1000};
  if (tern_store_open_rocksdb(app.loop, &so, &app.store, err, sizeof err) < 0) {
    fprintf(stderr, "store: %s\n", err);
    return 1;
  }
  char tok[48];
  tern_user *alice = tern_dir_add_user(&app, "alice"), *bob = tern_dir_add_user(&app, "bob");
  tern_dir_add_user(&app, "carol");
  tern_dir_add_device(&app, alice, "a1", tok);
  tern_dir_add_device(&app, alice, "a2", tok);
  tern_dir_add_device(&app, bob, "b1", tok);
  tern_dir_add_device(&app, bob, "b2", tok);

  RUN(fanout_lists);
  RUN(send_ack_read_receipts);
  RUN(rate_limit_and_unknown_users);

  tern_store_close(app.store);
  uv_run(app.loop, UV_RUN_NOWAIT);
  tern_dir_free(&app);
  nftw(dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
  DONE();
}
