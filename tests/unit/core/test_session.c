/* test_session: sessions, the router and presence driven through a fake endpoint: no socket,
 * no JSON. A real store in a temp dir and a real app; the fake endpoint records every call as
 * a line of text ("msg 1 alice>bob hi", "sent c1", "close replaced", ...). */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/accounts.h"
#include "core/app.h"
#include "core/groups.h"
#include "core/router.h"
#include "core/session.h"
#include "t.h"

static uv_loop_t loop;
static tern_config cfg;
static tern_store *store;
static tern_app *app;
static char dir[64];

#include "fakeep.h"

/* Runs the loop until the store has nothing of ours in flight (completions may submit more:
 * receipts after acks). */
static void settle(void) {
  for (int i = 0; i < 2000 && tern_store_port_pending(app->port); i++) uv_run(&loop, UV_RUN_ONCE);
  uv_run(&loop, UV_RUN_NOWAIT);
}

static fake *connect_ep(void) { return fake_connect(app); }

static void request(fake *f, tern_frame *fr) {
  tern_session_request(f->s, fr, tern_mono_ns());
  tern_frame_free(fr);
  settle();
}

static void auth(fake *f, const char *token) {
  tern_frame fr = {.type = TERN_FRAME_AUTH, .token = tern_strdup(token)};
  request(f, &fr);
}

static void send_to(fake *f, const char *to, const char *id, const char *body) {
  tern_frame fr = {.type = TERN_FRAME_SEND, .id = tern_strdup(id), .to = tern_strdup(to), .to_raw = tern_strdup(to),
                   .body = tern_strdup(body), .body_len = strlen(body)};
  request(f, &fr);
}

static void ack(fake *f, uint64_t seq) {
  tern_frame fr = {.type = TERN_FRAME_ACK, .seq = seq};
  request(f, &fr);
}

static void disconnect(fake *f) {
  if (!f->closed) {
    f->closed = true;
    tern_session_gone(f->s);
  }
  settle();
  tern_free(f);
}

/* ---- accounts made straight in the directory ---- */
typedef struct account {
  char user[33];
  char token[48];
  tern_device *dev;
} account;

static account new_device(const char *user) {
  account ac;
  memset(&ac, 0, sizeof ac);
  snprintf(ac.user, sizeof ac.user, "%s", user);
  tern_user *u = tern_dir_user(app->dir, user);
  if (!u) {
    u = tern_dir_add_user(app->dir, user);
    u->pwhash = tern_strdup("x");
  }
  ac.dev = tern_dir_add_device(app->dir, u, "test", ac.token);
  return ac;
}

/* ---- tests ---- */

TEST(auth_refusals) {
  fake *f = connect_ep();
  auth(f, "not-a-token");
  CHECK_EQ_STR(f->log[0], "error unauthorized");
  CHECK_EQ_STR(f->log[1], "close unauthorized");
  free(f);
  f = connect_ep();
  send_to(f, "bob", "c1", "too early");
  CHECK_EQ_STR(f->log[0], "error unauthorized");
  CHECK_EQ_STR(f->log[1], "close unauthorized");
  free(f);
  f = connect_ep();
  tern_session_bad_request(f->s, "c1", "bad_request", "nope");
  CHECK_EQ_STR(f->log[1], "close unauthorized");
  free(f);
}

TEST(send_deliver_receipts) {
  account a1 = new_device("alice"), a2 = new_device("alice"), b1 = new_device("bob");
  fake *fa1 = connect_ep(), *fa2 = connect_ep(), *fb = connect_ep();
  auth(fa1, a1.token);
  auth(fa2, a2.token);
  auth(fb, b1.token);
  CHECK_EQ_STR(fa1->log[0], "authed");
  CHECK_EQ_STR(fa1->log[1], "ready alice");
  CHECK_EQ_STR(fa1->log[2], "synced 0");
  /* bad requests after auth are answered, the session stays */
  tern_session_bad_request(fb->s, "c9", "bad_request", "nope");
  CHECK_LOG(fb, "error c9 bad_request");
  CHECK(!fb->closed);
  send_to(fa1, "bob", "c1", "hello");
  CHECK_LOG(fa1, "sent c1");
  CHECK_LOG(fb, "msg 1 alice>bob hello");
  CHECK_LOG(fa2, "msg 1 alice>bob hello"); /* the sender's other device */
  CHECK(find(fa1, "msg", 0) < 0);           /* never the sending device */
  /* a resend with the same id: sent again, delivered once */
  send_to(fa1, "bob", "c1", "hello again");
  CHECK(find(fa1, "sent c1", find(fa1, "sent c1", 0) + 1) >= 0);
  CHECK(find(fb, "msg 2", 0) < 0);
  ack(fb, 1);
  CHECK_LOG(fa1, "receipt 1 delivered by=bob n=1");
  CHECK_LOG(fa2, "receipt 2 delivered by=bob n=1");
  /* a read naming ids bob never received from alice (made up, or a real id of alice's with
   * another peer) is refused; the real one goes through, with the made-up ones dropped */
  tern_frame forged = {.type = TERN_FRAME_READ, .peer = tern_strdup("alice"), .to_raw = tern_strdup("alice")};
  forged.ids = tern_calloc(1, sizeof *forged.ids);
  forged.ids[0] = tern_strdup("m-any");
  forged.nids = 1;
  request(fb, &forged);
  CHECK_LOG(fb, "error bad_request");
  tern_frame rd = {.type = TERN_FRAME_READ, .peer = tern_strdup("alice"), .to_raw = tern_strdup("alice")};
  rd.ids = tern_calloc(2, sizeof *rd.ids);
  rd.ids[0] = tern_strdup(fb->msg_id);
  rd.ids[1] = tern_strdup("01a2371507fd000000dc01bb46d9e9d2ab413e33de77");
  rd.nids = 2;
  request(fb, &rd);
  CHECK_LOG(fa1, "receipt 2 read by=bob n=1");
  /* unknown recipient */
  send_to(fa1, "nobody", "c2", "x");
  CHECK_LOG(fa1, "error c2 no_such_user");
  disconnect(fa1);
  disconnect(fa2);
  disconnect(fb);
}

TEST(offline_drain_then_live) {
  account c1 = new_device("carol"), d1 = new_device("dave");
  fake *fd = connect_ep();
  auth(fd, d1.token);
  for (int i = 0; i < 3; i++) {
    char id[8], body[8];
    snprintf(id, sizeof id, "d%d", i);
    snprintf(body, sizeof body, "b%d", i);
    send_to(fd, "carol", id, body);
  }
  fake *fc = connect_ep();
  auth(fc, c1.token);
  int r = find(fc, "ready carol", 0);
  CHECK(r >= 0);
  CHECK(find(fc, "msg 1 dave>carol b0", r) > r);
  CHECK(find(fc, "msg 3 dave>carol b2", r) > find(fc, "msg 2 dave>carol b1", r));
  CHECK(find(fc, "synced 3", r) > find(fc, "msg 3", r));
  send_to(fd, "carol", "d3", "live");
  CHECK_LOG(fc, "msg 4 dave>carol live");
  /* a seq that skips one (an envelope not written live) sends the session back to the store */
  int before = fc->n;
  tern_buf rec = {0};
  tern_env_begin(&rec, TERN_ENV_MSG, 0, tern_now_ms());
  tern_env_put_str(&rec, TERN_EF_BODY, "out of order");
  tern_session_deliver(fc->s, 9, (const uint8_t *)rec.data, rec.len, NULL, 0);
  tern_buf_free(&rec);
  settle();
  CHECK(find(fc, "msg 9", before) < 0);
  CHECK(find(fc, "synced 4", before) >= 0); /* drained again: nothing new */
  disconnect(fc);
  disconnect(fd);
}

TEST(replaced_and_logged_out) {
  account e1 = new_device("erin");
  fake *f1 = connect_ep(), *f2 = connect_ep();
  auth(f1, e1.token);
  auth(f2, e1.token);
  CHECK_LOG(f1, "close replaced");
  CHECK(e1.dev->session == f2->s);
  tern_app_submit(app, tern_accounts_delete_device(app, e1.dev));
  settle();
  CHECK_LOG(f2, "close logged_out");
  free(f1);
  free(f2);
}

TEST(presence_and_typing) {
  account g1 = new_device("gina"), h1 = new_device("hank");
  fake *fg = connect_ep(), *fh = connect_ep();
  auth(fg, g1.token);
  tern_frame w = {.type = TERN_FRAME_WATCH};
  w.users = tern_calloc(2, sizeof *w.users);
  w.users[0] = tern_strdup("hank");
  w.users[1] = tern_strdup("ghost");
  w.nusers = 2;
  request(fg, &w);
  CHECK_LOG(fg, "presence hank never");
  CHECK_LOG(fg, "error no_such_user ghost");
  auth(fh, h1.token);
  CHECK_LOG(fg, "presence hank online");
  tern_frame t = {.type = TERN_FRAME_TYPING, .to = tern_strdup("hank"), .to_raw = tern_strdup("hank"), .composing = true};
  request(fg, &t);
  CHECK_LOG(fh, "typing gina composing");
  tern_frame p = {.type = TERN_FRAME_PING};
  request(fh, &p);
  CHECK_LOG(fh, "pong");
  disconnect(fh);
  CHECK_LOG(fg, "presence hank offline");
  disconnect(fg);
}

/* A drain waits while the client's backlog is large, and goes on when it drops. */
TEST(drain_is_paced) {
  account i1 = new_device("ivan"), j1 = new_device("judy");
  fake *fj = connect_ep();
  auth(fj, j1.token);
  send_to(fj, "ivan", "p1", "paced");
  fake *fi = connect_ep();
  fi->backlog = (size_t)cfg.ws_max_outbound; /* "the client is not reading" */
  auth(fi, i1.token);
  CHECK(find(fi, "msg", 0) < 0);
  fi->backlog = 0;
  for (int i = 0; i < 50 && find(fi, "synced", 0) < 0; i++) {
    uv_run(&loop, UV_RUN_ONCE); /* the pace timer */
    settle();
  }
  CHECK_LOG(fi, "msg 1 judy>ivan paced");
  CHECK_LOG(fi, "synced 1");
  disconnect(fi);
  disconnect(fj);
}

/* Who gets what: every device of the recipient, the sender's other devices, the user-level
 * inbox of a recipient with none; delivered once per message however many devices ack. */
TEST(fanout_and_delivered_once) {
  account k1 = new_device("kate"), k2 = new_device("kate"), l1 = new_device("leo"), l2 = new_device("leo");
  tern_user *kate = tern_dir_user(app->dir, "kate"), *leo = tern_dir_user(app->dir, "leo");
  tern_user *mia = tern_dir_add_user(app->dir, "mia");
  mia->pwhash = tern_strdup("x");
  tern_op_append *op = tern_op_append_new(NULL, NULL);
  size_t v = tern_op_append_value(op, "x", 1);
  tern_router_fanout(op, kate, k1.dev, leo, v, v, TERN_CAP_REFUSE);
  CHECK_EQ_INT(op->ntargets, 3);
  for (size_t i = 0; i < op->ntargets; i++) {
    tern_device *d = op->targets[i].cookie;
    CHECK(d != NULL && d != k1.dev);
    CHECK(op->targets[i].cap == (d->user == leo ? TERN_CAP_REFUSE : TERN_CAP_NONE));
    CHECK_EQ_STR(op->targets[i].inbox, d->id);
  }
  tern_router_release_targets(op);
  tern_store_op_free(&op->op);
  op = tern_op_append_new(NULL, NULL);
  v = tern_op_append_value(op, "x", 1);
  tern_router_fanout(op, kate, k1.dev, mia, v, v, TERN_CAP_REFUSE);
  CHECK_EQ_INT(op->ntargets, 2);
  CHECK_EQ_STR(op->targets[0].inbox, "@mia");
  CHECK(op->targets[0].cookie == NULL);
  tern_router_release_targets(op);
  tern_store_op_free(&op->op);
  op = tern_op_append_new(NULL, NULL); /* notes to self: only the other devices */
  v = tern_op_append_value(op, "x", 1);
  tern_router_fanout(op, kate, k1.dev, kate, v, v, TERN_CAP_REFUSE);
  CHECK_EQ_INT(op->ntargets, 1);
  CHECK(op->targets[0].cookie == k2.dev);
  tern_router_release_targets(op);
  tern_store_op_free(&op->op);

  fake *fk = connect_ep(), *fl1 = connect_ep(), *fl2 = connect_ep();
  auth(fk, k1.token);
  auth(fl1, l1.token);
  auth(fl2, l2.token);
  send_to(fk, "leo", "k1", "one");
  send_to(fk, "leo", "k2", "two");
  ack(fl1, 2);
  ack(fl2, 2);
  int first = find(fk, "receipt", 0);
  CHECK(first >= 0 && strstr(fk->log[first], "delivered by=leo n=2"));
  CHECK(find(fk, "receipt", first + 1) < 0);
  disconnect(fk);
  disconnect(fl1);
  disconnect(fl2);
}

/* An event that comes while a drain read is out (another node's envelope: its event and its
 * entry reach this node by different paths, so the read may have missed the entry) sends
 * the session to the store once more before it is synced: the envelope is not left to the
 * next drain. */
TEST(event_during_drain_reads_again) {
  account o1 = new_device("olga"), p1 = new_device("paul");
  fake *fp = connect_ep(), *fo = connect_ep();
  auth(fp, p1.token);
  tern_frame fr = {.type = TERN_FRAME_AUTH, .token = tern_strdup(o1.token)};
  tern_session_request(fo->s, &fr, tern_mono_ns()); /* its first drain read is now out */
  tern_frame_free(&fr);
  tern_session_deliver(fo->s, 1, NULL, 0, NULL, 0); /* announced ahead of the entry */
  tern_frame m = {.type = TERN_FRAME_SEND, .id = tern_strdup("e1"), .to = tern_strdup("olga"),
                  .to_raw = tern_strdup("olga"), .body = tern_strdup("early"), .body_len = 5};
  tern_session_request(fp->s, &m, tern_mono_ns()); /* committed after that read */
  tern_frame_free(&m);
  settle();
  int r = find(fo, "ready olga", 0), g = find(fo, "msg 1 paul>olga early", r);
  CHECK(r >= 0);
  CHECK(g > r);
  CHECK(find(fo, "synced 0", r) < 0);
  CHECK(find(fo, "synced 1", r) > g); /* read by the drain, before the session was synced */
  disconnect(fo);
  disconnect(fp);
}

/* A send and an add in one millisecond: the message time is before the join (the new member
 * did not get it and may not mark it read), and the next message's is not. Many rounds, so
 * most fall within one ms. */
/* A delete waits for a store probe first (its media's grants end before it is stored,
 * core/router.c): the frames sent right behind it wait behind it and run after it, in order. */
TEST(delete_keeps_frame_order) {
  account e1 = new_device("erin"), f1 = new_device("frank");
  fake *fe = connect_ep(), *ff = connect_ep();
  auth(fe, e1.token);
  auth(ff, f1.token);
  send_to(fe, "frank", "m1", "first");
  CHECK_LOG(ff, "msg 1 erin>frank first");
  tern_frame del = {.type = TERN_FRAME_SEND, .id = tern_strdup("d1"), .to = tern_strdup("frank"),
                    .to_raw = tern_strdup("frank"), .delete_of = tern_strdup(ff->msg_id)};
  tern_session_request(fe->s, &del, tern_mono_ns());
  tern_frame_free(&del);
  CHECK(find(fe, "sent d1", 0) < 0); /* held while its probe runs */
  tern_frame m2 = {.type = TERN_FRAME_SEND, .id = tern_strdup("m2"), .to = tern_strdup("frank"),
                   .to_raw = tern_strdup("frank"), .body = tern_strdup("second"), .body_len = 6};
  tern_session_request(fe->s, &m2, tern_mono_ns());
  tern_frame_free(&m2);
  settle();
  int d = find(fe, "sent d1", 0), s2 = find(fe, "sent m2", 0);
  CHECK(d >= 0);
  CHECK(s2 > d);
  int fd = find(ff, "msg 2 erin>frank ", 0), f2 = find(ff, "msg 3 erin>frank second", 0);
  CHECK(fd >= 0); /* the delete, as a new envelope for the live device */
  CHECK(f2 > fd);
  /* a second delete of it: not_found, and the session goes on */
  send_to(fe, "frank", "m3", "third");
  char m3[64];
  snprintf(m3, sizeof m3, "%s", ff->msg_id);
  tern_frame again = {.type = TERN_FRAME_SEND, .id = tern_strdup("d2"), .to = tern_strdup("frank"),
                      .to_raw = tern_strdup("frank"), .delete_of = tern_strdup(m3)};
  request(fe, &again);
  CHECK_LOG(fe, "sent d2");
  tern_frame twice = {.type = TERN_FRAME_SEND, .id = tern_strdup("d3"), .to = tern_strdup("frank"),
                      .to_raw = tern_strdup("frank"), .delete_of = tern_strdup(m3)};
  request(fe, &twice);
  CHECK_LOG(fe, "error d3 not_found");
  disconnect(fe);
  disconnect(ff);
}

/* What every caller of a group change does when its op is done: the op holds a reference
 * to each target device (without this, LeakSanitizer found nora's device at exit whenever a
 * later test had overwritten the stack slot that still pointed to it). */
static void on_group_change_done(tern_store_op *op) { tern_router_release_targets(tern_op_as_append(op)); }

TEST(group_join_and_message_times_never_tie) {
  new_device("nora");
  tern_user *nora = tern_dir_user(app->dir, "nora");
  tern_store_op *op;
  tern_group *grp = tern_group_create(app, nora, "ticks", "", NULL, 0, &op);
  op->done = on_group_change_done;
  tern_app_submit(app, op);
  settle();
  char name[16];
  for (int i = 0; i < 50; i++) {
    snprintf(name, sizeof name, "tick%d", i);
    tern_user *u = tern_dir_add_user(app->dir, name);
    u->pwhash = tern_strdup("x");
    int64_t before = tern_group_stamp(grp);
    op = tern_group_add(app, grp, nora, &u, 1);
    const tern_member *m = tern_group_member(grp, u);
    CHECK(m != NULL);
    if (!m) break;
    CHECK(!(before > m->since)); /* accepted before the add: not received by u */
    CHECK(tern_group_stamp(grp) > m->since); /* after it: received */
    op->done = on_group_change_done;
    tern_app_submit(app, op);
    settle();
  }
}

/* Left for the app's close (run last): a session whose drain waits in the worker's list when
 * its connection goes, before the pace timer fires again (a retry after an unavailable store
 * waits up to 2 s). The close must let go of it: without that the sanitized run sees the
 * session leaked. */
TEST(waiting_drain_at_close) {
  account k1 = new_device("kate"), l1 = new_device("liam");
  fake *fl = connect_ep();
  auth(fl, l1.token);
  send_to(fl, "kate", "w1", "waits");
  disconnect(fl);
  fake *fk = connect_ep();
  fk->backlog = (size_t)cfg.ws_max_outbound;
  auth(fk, k1.token);
  CHECK(app->waiting == fk->s);
  fk->closed = true;
  tern_session_gone(fk->s); /* the loop does not run again: the timer never fires */
  tern_free(fk);
  CHECK(app->waiting != NULL);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }

int main(void) {
  tern_log_set_level(TERN_LOG_WARN);
  snprintf(dir, sizeof dir, "/tmp/tern-test-session-XXXXXX");
  if (!mkdtemp(dir)) return 1;
  uv_loop_init(&loop);
  tern_config_defaults(&cfg);
  tern_free(cfg.auth_hash_cost); /* the config owns its strings (tern_config_free) */
  cfg.auth_hash_cost = tern_strdup("test");
  cfg.allow_insecure_test = true;
  char err[256], sdir[128];
  snprintf(sdir, sizeof sdir, "%s/store", dir);
  tern_store_options so = {.dir = sdir, .inbox_max_envelopes = 1000, .inbox_ttl_ms = 86400000, .dedup_ttl_ms = 86400000};
  if (tern_store_open(&so, &store, err, sizeof err) < 0 || tern_app_new(&cfg, &loop, 0, store, &app, err, sizeof err) < 0 ||
      tern_app_load(app, err, sizeof err) < 0) {
    fprintf(stderr, "setup: %s\n", err);
    return 1;
  }
  RUN(auth_refusals);
  RUN(send_deliver_receipts);
  RUN(offline_drain_then_live);
  RUN(replaced_and_logged_out);
  RUN(presence_and_typing);
  RUN(drain_is_paced);
  RUN(fanout_and_delivered_once);
  RUN(delete_keeps_frame_order);
  RUN(event_during_drain_reads_again);
  RUN(group_join_and_message_times_never_tie);
  RUN(waiting_drain_at_close);
  tern_app_close(app);
  CHECK(app->waiting == NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  tern_store_close(store);
  tern_app_free(app);
  uv_run(&loop, UV_RUN_NOWAIT);
  nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  tern_config_free(&cfg);
  DONE();
}
