/* test_cluster: two writers of one store, as two nodes of a cluster (or two workers of one
 * node) see each other: two apps on two loops share one RocksDB store through two ports, so
 * every record one app stores reaches the other through the change feed, and presence, typing
 * and liveness travel over the store's bus. Driven from one thread, turning both loops. */
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
#include "core/cluster.h"
#include "core/groups.h"
#include "core/router.h"
#include "core/session.h"
#include "fakeep.h"
#include "t.h"

static tern_config cfg;
static tern_store *store;
static char dir[64];

typedef struct node {
  uv_loop_t loop;
  tern_app *app;
} node;
static node A, B;

/* Turns both loops until neither port has anything in flight, and a few more times so that
 * what the feed and the bus carry arrives. */
static void settle(void) {
  for (int i = 0; i < 5000; i++) {
    uv_run(&A.loop, UV_RUN_NOWAIT);
    uv_run(&B.loop, UV_RUN_NOWAIT);
    if (!tern_store_port_pending(A.app->port) && !tern_store_port_pending(B.app->port) && i > 20) break;
    usleep(200);
  }
}

/* Turns one loop only until its port has nothing in flight. */
static void settle_one(node *n) {
  for (int i = 0; i < 5000 && tern_store_port_pending(n->app->port); i++) {
    uv_run(&n->loop, UV_RUN_NOWAIT);
    usleep(100);
  }
}

static void request(fake *f, tern_frame *fr) {
  tern_session_request(f->s, fr, tern_mono_ns());
  tern_frame_free(fr);
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

static void typing_to(fake *f, const char *to) {
  tern_frame fr = {.type = TERN_FRAME_TYPING, .to = tern_strdup(to), .to_raw = tern_strdup(to), .composing = true};
  request(f, &fr);
}

static void watch(fake *f, const char *user) {
  tern_frame fr = {.type = TERN_FRAME_WATCH, .nusers = 1};
  fr.users = tern_calloc(1, sizeof *fr.users);
  fr.users[0] = tern_strdup(user);
  request(f, &fr);
}

static void disconnect(fake *f) {
  if (!f->closed) {
    f->closed = true;
    tern_session_gone(f->s);
  }
  tern_free(f);
}

/* A user and a device stored through n's port, as a registration would (no HTTP). */
typedef struct account {
  char user[33];
  char token[48];
  char device[TERN_DEVICE_ID_LEN + 1];
} account;

static account new_account(node *n, const char *user) {
  account ac;
  memset(&ac, 0, sizeof ac);
  snprintf(ac.user, sizeof ac.user, "%s", user);
  tern_app *a = n->app;
  tern_user *u = tern_dir_user(a->dir, user);
  if (!u) {
    u = tern_dir_add_user(a->dir, user);
    u->pwhash = tern_strdup("$argon2id$x");
    u->created = 1;
    tern_op_record *op = tern_op_record_new(TERN_OP_PUT_USER, NULL, NULL);
    tern_user_rec rec = {.user = user, .pwhash = u->pwhash, .created = 1};
    tern_op_record_set_user(op, &rec);
    op->create = true;
    tern_app_submit(a, &op->op);
  }
  tern_device *d = tern_dir_add_device(a->dir, u, "test", ac.token);
  snprintf(ac.device, sizeof ac.device, "%s", d->id);
  tern_app_submit(a, tern_accounts_device_op(d, NULL, NULL));
  return ac;
}

/* ---- tests ---- */

TEST(records_reach_the_other_writer) {
  account al = new_account(&A, "alice");
  settle();
  tern_user *u = tern_dir_user(B.app->dir, "alice");
  CHECK(u != NULL);
  CHECK(u && !u->pending && u->pwhash && !strcmp(u->pwhash, "$argon2id$x"));
  CHECK(tern_dir_device(B.app->dir, al.device) != NULL);
  /* the token works on B */
  fake *f = fake_connect(B.app);
  auth(f, al.token);
  settle();
  CHECK_LOG(f, "ready alice");
  CHECK_LOG(f, "synced");
  disconnect(f);
  settle();
}

/* A name or token B has not heard of yet: the frame waits for a catch-up, then runs. */
TEST(miss_catches_up) {
  account al = new_account(&A, "alice"); /* alice exists on both from the test before */
  settle();
  fake *fa = fake_connect(B.app);
  auth(fa, al.token);
  settle();
  account bo = new_account(&A, "bob");
  settle_one(&A); /* stored; B has not run since */
  CHECK(tern_dir_user(B.app->dir, "bob") == NULL);
  send_to(fa, "bob", "c1", "hello bob");
  send_to(fa, "bob", "c2", "second"); /* held behind the first, in order */
  settle();
  CHECK_LOG(fa, "sent c1");
  CHECK_LOG(fa, "sent c2");
  CHECK(find(fa, "sent c1", 0) < find(fa, "sent c2", 0));
  CHECK(find(fa, "error", 0) < 0);
  /* bob's first device has both, in order */
  fake *fb = fake_connect(B.app);
  auth(fb, bo.token);
  settle();
  CHECK_LOG(fb, "msg 1 alice>bob hello bob");
  CHECK_LOG(fb, "msg 2 alice>bob second");
  /* a new device's token on B before B heard of it */
  account b2 = new_account(&A, "bob");
  settle_one(&A);
  fake *fb2 = fake_connect(B.app);
  auth(fb2, b2.token);
  settle();
  CHECK_LOG(fb2, "ready bob");
  disconnect(fb2);
  /* a name nobody has: one catch-up, then the error */
  send_to(fa, "nobody", "c3", "x");
  settle();
  CHECK_LOG(fa, "error c3 no_such_user");
  disconnect(fa);
  disconnect(fb);
  settle();
}

TEST(presence_and_typing_across) {
  account ca = new_account(&A, "carol");
  account da = new_account(&B, "dave");
  settle();
  fake *watcher = fake_connect(B.app);
  auth(watcher, da.token);
  settle();
  watch(watcher, "carol");
  settle();
  CHECK_LOG(watcher, "presence carol never");
  fake *fc = fake_connect(A.app);
  auth(fc, ca.token);
  settle();
  CHECK_LOG(watcher, "presence carol online");
  CHECK_EQ_INT(tern_cluster_user_elsewhere(B.app, tern_dir_user(B.app->dir, "carol")), 1);
  typing_to(fc, "dave");
  settle();
  CHECK_LOG(watcher, "typing carol composing");
  disconnect(fc);
  settle();
  CHECK_LOG(watcher, "presence carol offline");
  CHECK_EQ_INT(tern_cluster_user_elsewhere(B.app, tern_dir_user(B.app->dir, "carol")), 0);
  disconnect(watcher);
  settle();
}

TEST(replaced_and_logged_out_across) {
  account ea = new_account(&A, "erin");
  settle();
  fake *on_a = fake_connect(A.app);
  auth(on_a, ea.token);
  settle();
  usleep(2000); /* a later connection: a later ms */
  fake *on_b = fake_connect(B.app);
  auth(on_b, ea.token);
  settle();
  CHECK_LOG(on_a, "close replaced");
  CHECK(find(on_b, "close", 0) < 0);
  /* logout on A: the session on B closes */
  tern_device *d = tern_dir_device(A.app->dir, ea.device);
  CHECK(d != NULL);
  if (d) tern_app_submit(A.app, tern_accounts_delete_device(A.app, d));
  settle();
  CHECK_LOG(on_b, "close logged_out");
  CHECK(tern_dir_device(B.app->dir, ea.device) == NULL);
  /* the token no longer works on B */
  fake *again = fake_connect(B.app);
  auth(again, ea.token);
  settle();
  CHECK_LOG(again, "error unauthorized");
  disconnect(on_a);
  disconnect(on_b);
  disconnect(again);
  settle();
}

static int race_status[2] = {-1, -1};
static void on_race(tern_store_op *op) { race_status[(intptr_t)op->arg] = op->status; }

TEST(register_race) {
  node *n[2] = {&A, &B};
  for (intptr_t i = 0; i < 2; i++) {
    tern_op_record *op = tern_op_record_new(TERN_OP_PUT_USER, on_race, (void *)i);
    tern_user_rec rec = {.user = "frank", .pwhash = i ? "h2" : "h1", .created = 1};
    tern_op_record_set_user(op, &rec);
    op->create = true;
    tern_app_submit(n[i]->app, &op->op);
  }
  settle();
  CHECK((race_status[0] == TERN_STORE_OK) != (race_status[1] == TERN_STORE_OK));
  CHECK(race_status[0] == TERN_STORE_DUPLICATE || race_status[1] == TERN_STORE_DUPLICATE);
  /* the loser's directory learns the winner's record (the winner's own registration code
   * would have added it to its own) */
  bool a_won = race_status[0] == TERN_STORE_OK;
  tern_user *u = tern_dir_user((a_won ? B.app : A.app)->dir, "frank");
  CHECK(u && u->pwhash && !strcmp(u->pwhash, a_won ? "h1" : "h2"));
}

static int change_status[2] = {-1, -1};
/* as groupapi.c's own callbacks do: the op's device targets hold references */
static void on_change(tern_store_op *op) {
  change_status[(intptr_t)op->arg] = op->status;
  tern_router_release_targets(tern_op_as_append(op));
}
static void on_created(tern_store_op *op) { tern_router_release_targets(tern_op_as_append(op)); }

/* Two changes of one group made at once on two writers: one is stored, the other answers
 * CONFLICT, and both end with the stored one. */
TEST(group_changes_compare_and_set) {
  account g1 = new_account(&A, "gina");
  account h1 = new_account(&A, "hank");
  account i1 = new_account(&A, "ivy");
  settle();
  tern_user *gina = tern_dir_user(A.app->dir, "gina");
  tern_store_op *op;
  tern_group *grp = tern_group_create(A.app, gina, "crew", "", NULL, 0, &op);
  char id[TERN_GROUP_ID_MAX + 1];
  snprintf(id, sizeof id, "%s", grp->id);
  op->done = on_created;
  tern_app_submit(A.app, op);
  settle();
  tern_group *gb = tern_groups_get(B.app->groups, id);
  CHECK(gb != NULL);
  if (!gb) return;
  CHECK_EQ_INT(gb->nmembers, 1);
  /* A adds hank, B adds ivy, before either hears of the other */
  tern_user *hank = tern_dir_user(A.app->dir, "hank"), *ivy = tern_dir_user(B.app->dir, "ivy");
  tern_store_op *oa = tern_group_add(A.app, grp, gina, &hank, 1);
  tern_store_op *ob = tern_group_add(B.app, gb, tern_dir_user(B.app->dir, "gina"), &ivy, 1);
  oa->done = ob->done = on_change;
  oa->arg = (void *)(intptr_t)0;
  ob->arg = (void *)(intptr_t)1;
  tern_app_submit(A.app, oa);
  tern_app_submit(B.app, ob);
  settle();
  CHECK((change_status[0] == TERN_STORE_OK) != (change_status[1] == TERN_STORE_OK));
  CHECK(change_status[0] == TERN_STORE_CONFLICT || change_status[1] == TERN_STORE_CONFLICT);
  grp = tern_groups_get(A.app->groups, id);
  gb = tern_groups_get(B.app->groups, id);
  CHECK(grp && gb);
  if (!grp || !gb) return;
  const char *added = change_status[0] == TERN_STORE_OK ? "hank" : "ivy";
  CHECK_EQ_INT(grp->nmembers, 2);
  CHECK_EQ_INT(gb->nmembers, 2);
  CHECK(grp->nmembers == 2 && !strcmp(grp->members[1].user->name, added));
  CHECK(gb->nmembers == 2 && !strcmp(gb->members[1].user->name, added));
  CHECK_EQ_INT(grp->rev, gb->rev);
  (void)g1;
  (void)h1;
  (void)i1;
}

/* A writer that stops saying anything is taken for dead after cluster.node_timeout. */

/* E2E keys published through one writer make the device E2E-capable on the other (the bundle
 * record travels on the change feed), so the other's sends check their lists against it; a
 * device deleted through one writer loses its keys on both. */
static void send_e2e_to(fake *f, const char *to, const char *id, const char *device) {
  tern_frame fr = {.type = TERN_FRAME_SEND, .id = tern_strdup(id), .to = tern_strdup(to), .to_raw = tern_strdup(to)};
  fr.e2e = tern_calloc(1, sizeof *fr.e2e);
  fr.ne2e = 1;
  fr.e2e[0].device_id = tern_strdup(device);
  fr.e2e[0].type = TERN_E2E_PREKEY;
  fr.e2e[0].body = tern_strdup("QUJD");
  fr.e2e[0].body_len = 4;
  request(f, &fr);
}

TEST(e2e_keys_across) {
  account er = new_account(&A, "erin");
  account fr = new_account(&B, "frank");
  settle();
  tern_op_keys *op = tern_op_keys_new(TERN_OP_KEYS_PUT, NULL, NULL);
  tern_store_set_str(&op->device_id, er.device);
  tern_store_set_str(&op->user, "erin");
  op->has_identity = op->has_spk = true;
  op->in.registration_id = 9;
  memset(op->in.identity, 5, sizeof op->in.identity);
  memset(op->in.spk_pub, 5, sizeof op->in.spk_pub);
  op->in.spk_id = 1;
  tern_app_submit(A.app, &op->op);
  settle();
  tern_device *on_b = tern_dir_device(B.app->dir, er.device);
  CHECK(on_b && on_b->e2e);
  fake *ff = fake_connect(B.app);
  auth(ff, fr.token);
  settle();
  send_e2e_to(ff, "erin", "e1", er.device);
  settle();
  CHECK_LOG(ff, "sent e1");
  fake *fe = fake_connect(A.app);
  auth(fe, er.token);
  settle();
  CHECK_LOG(fe, "msg 1 frank>erin");
  disconnect(fe);
  settle();
  /* erin's device deleted through A: gone on B, and a send to it is no_keys */
  tern_app_submit(A.app, tern_accounts_delete_device(A.app, tern_dir_device(A.app->dir, er.device)));
  settle();
  CHECK(tern_dir_device(B.app->dir, er.device) == NULL);
  send_e2e_to(ff, "erin", "e2", er.device);
  settle();
  CHECK_LOG(ff, "error e2 no_keys");
  disconnect(ff);
  settle();
}


TEST(silent_peer_times_out) {
  account ja = new_account(&A, "judy");
  account kb = new_account(&B, "kim");
  settle();
  fake *fk = fake_connect(B.app);
  auth(fk, kb.token);
  settle();
  watch(fk, "judy");
  fake *fj = fake_connect(A.app);
  auth(fj, ja.token);
  settle();
  CHECK_LOG(fk, "presence judy online");
  /* A goes silent: its loop stops turning (a node that froze or lost its network) */
  int64_t until = tern_now_ms() + cfg.cluster_node_timeout_ms + 1500;
  while (tern_now_ms() < until) {
    uv_run(&B.loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  CHECK_LOG(fk, "presence judy offline");
  /* A speaks again (a heartbeat): it is a peer again, and judy is back once A says so */
  settle();
  disconnect(fj);
  disconnect(fk);
  settle();
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }

static void node_open(node *n, unsigned worker) {
  char err[256];
  uv_loop_init(&n->loop);
  if (tern_app_new(&cfg, &n->loop, worker, store, &n->app, err, sizeof err) < 0 ||
      tern_app_load(n->app, err, sizeof err) < 0) {
    fprintf(stderr, "setup: %s\n", err);
    exit(1);
  }
}

static void node_close(node *n) {
  tern_cluster_stop(n->app->cluster);
  tern_app_close(n->app);
  uv_run(&n->loop, UV_RUN_NOWAIT);
}

int main(void) {
  tern_log_set_level(TERN_LOG_ERROR);
  snprintf(dir, sizeof dir, "/tmp/tern-test-cluster-XXXXXX");
  if (!mkdtemp(dir)) return 1;
  tern_config_defaults(&cfg);
  tern_free(cfg.auth_hash_cost); /* the config owns its strings (tern_config_free) */
  cfg.auth_hash_cost = tern_strdup("test");
  cfg.allow_insecure_test = true;
  cfg.cluster_node_timeout_ms = 1500;
  char err[256], sdir[128];
  snprintf(sdir, sizeof sdir, "%s/store", dir);
  tern_store_options so = {.dir = sdir, .inbox_max_envelopes = 1000, .inbox_ttl_ms = 86400000, .dedup_ttl_ms = 86400000};
  if (tern_store_open(&so, &store, err, sizeof err) < 0) {
    fprintf(stderr, "setup: %s\n", err);
    return 1;
  }
  node_open(&A, 0);
  node_open(&B, 1);
  tern_cluster_start(A.app->cluster);
  tern_cluster_start(B.app->cluster);
  settle();
  RUN(records_reach_the_other_writer);
  RUN(miss_catches_up);
  RUN(presence_and_typing_across);
  RUN(replaced_and_logged_out_across);
  RUN(register_race);
  RUN(group_changes_compare_and_set);
  RUN(e2e_keys_across);
  RUN(silent_peer_times_out);
  node_close(&A);
  node_close(&B);
  tern_store_close(store);
  tern_app_free(A.app);
  tern_app_free(B.app);
  uv_run(&A.loop, UV_RUN_NOWAIT);
  uv_run(&B.loop, UV_RUN_NOWAIT);
  nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  tern_config_free(&cfg);
  DONE();
}
