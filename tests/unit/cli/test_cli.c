/* test_cli: the `tern` CLI's own pieces: credentials files, the time and duration helpers, and
 * the group helpers (which group a GROUP argument names, event lines, per-member receipt
 * tallies, text made safe for a terminal). */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/util.h"
#include "cli/cli_int.h"
#include "t.h"

/* ---- credentials ---- */

static char tmpdir[256];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/test_cli.XXXXXX");
  CHECK(mkdtemp(tmpdir) != NULL);
}

TEST(creds_paths) {
  make_tmpdir();
  tern_client_url u;
  tern_client_url_parse("http://127.0.0.1:8080", &u);
  char path[512], want[512];
  char xdg[300];
  snprintf(xdg, sizeof xdg, "%s/cfg", tmpdir);
  setenv("XDG_CONFIG_HOME", xdg, 1);
  CHECK_EQ_INT(tern_cli_creds_path(&u, path, sizeof path), 0);
  snprintf(want, sizeof want, "%s/cfg/tern/127.0.0.1-8080.json", tmpdir);
  CHECK_EQ_STR(path, want);
  /* A relative XDG_CONFIG_HOME is ignored (XDG spec): fall back to HOME. */
  setenv("XDG_CONFIG_HOME", "relative", 1);
  setenv("HOME", tmpdir, 1);
  CHECK_EQ_INT(tern_cli_creds_path(&u, path, sizeof path), 0);
  snprintf(want, sizeof want, "%s/.config/tern/127.0.0.1-8080.json", tmpdir);
  CHECK_EQ_STR(path, want);
  tern_client_url_parse("http://[::1]:9", &u);
  CHECK_EQ_INT(tern_cli_creds_path(&u, path, sizeof path), 0);
  snprintf(want, sizeof want, "%s/.config/tern/__1-9.json", tmpdir);
  CHECK_EQ_STR(path, want);
  unsetenv("XDG_CONFIG_HOME");
  unsetenv("HOME");
  CHECK_EQ_INT(tern_cli_creds_path(&u, path, sizeof path), -ENOENT);
}

TEST(creds_save_load) {
  make_tmpdir();
  char xdg[300], path[512];
  snprintf(xdg, sizeof xdg, "%s/deep/cfg", tmpdir);
  setenv("XDG_CONFIG_HOME", xdg, 1);
  tern_client_url u;
  tern_client_url_parse("http://127.0.0.1:8080", &u);
  CHECK_EQ_INT(tern_cli_creds_path(&u, path, sizeof path), 0);
  tern_cli_creds in, out;
  CHECK_EQ_INT(tern_cli_creds_load(path, &out), -ENOENT);
  memset(&in, 0, sizeof in);
  strcpy(in.server, "http://127.0.0.1:8080");
  strcpy(in.user, "alice");
  strcpy(in.device_id, "dev-1");
  strcpy(in.token, "tok\"en\\with\nodd chars");
  umask(022);
  CHECK_EQ_INT(tern_cli_creds_save(path, &in), 0);
  struct stat st;
  CHECK_EQ_INT(stat(path, &st), 0);
  CHECK_EQ_INT(st.st_mode & 0777, 0600);
  char dir[400];
  snprintf(dir, sizeof dir, "%s/tern", xdg);
  CHECK_EQ_INT(stat(dir, &st), 0);
  CHECK_EQ_INT(st.st_mode & 0777, 0700);
  CHECK_EQ_INT(tern_cli_creds_load(path, &out), 0);
  CHECK_EQ_STR(out.server, in.server);
  CHECK_EQ_STR(out.user, "alice");
  CHECK_EQ_STR(out.device_id, "dev-1");
  CHECK_EQ_STR(out.token, in.token);
  /* Overwrite (a new login) keeps the mode; a loosened directory is tightened again. */
  chmod(dir, 0755);
  strcpy(in.user, "bob");
  CHECK_EQ_INT(tern_cli_creds_save(path, &in), 0);
  CHECK_EQ_INT(stat(path, &st), 0);
  CHECK_EQ_INT(st.st_mode & 0777, 0600);
  CHECK_EQ_INT(stat(dir, &st), 0);
  CHECK_EQ_INT(st.st_mode & 0777, 0700);
  CHECK_EQ_INT(tern_cli_creds_load(path, &out), 0);
  CHECK_EQ_STR(out.user, "bob");
  /* A damaged file is reported, not half-read. */
  FILE *f = fopen(path, "w");
  fputs("{\"user\":\"x\"", f);
  fclose(f);
  CHECK_EQ_INT(tern_cli_creds_load(path, &out), -EBADMSG);
  CHECK_EQ_STR(out.user, "");
  CHECK_EQ_INT(tern_cli_creds_remove(path), 0);
  CHECK_EQ_INT(tern_cli_creds_remove(path), -ENOENT);
  unsetenv("XDG_CONFIG_HOME");
}

/* ---- helpers ---- */

TEST(durations_and_times) {
  int64_t ms;
  CHECK_EQ_INT(tern_cli_parse_duration("500ms", &ms), 0);
  CHECK_EQ_INT(ms, 500);
  CHECK_EQ_INT(tern_cli_parse_duration("90s", &ms), 0);
  CHECK_EQ_INT(ms, 90000);
  CHECK_EQ_INT(tern_cli_parse_duration("2", &ms), 0);
  CHECK_EQ_INT(ms, 2000);
  CHECK_EQ_INT(tern_cli_parse_duration("1.5m", &ms), 0);
  CHECK_EQ_INT(ms, 90000);
  CHECK_EQ_INT(tern_cli_parse_duration("2h", &ms), 0);
  CHECK_EQ_INT(ms, 7200000);
  CHECK_EQ_INT(tern_cli_parse_duration("1d", &ms), 0);
  CHECK_EQ_INT(ms, 86400000);
  CHECK_EQ_INT(tern_cli_parse_duration("", &ms), -EINVAL);
  CHECK_EQ_INT(tern_cli_parse_duration("5x", &ms), -EINVAL);
  CHECK_EQ_INT(tern_cli_parse_duration("-1s", &ms), -EINVAL);
  char b[64];
  int64_t now = 1800000000000;
  tern_cli_humanize_ago(now, now - 1000, b, sizeof b);
  CHECK_EQ_STR(b, "just now");
  tern_cli_humanize_ago(now, now + 3000, b, sizeof b);
  CHECK_EQ_STR(b, "just now");
  tern_cli_humanize_ago(now, now - 30000, b, sizeof b);
  CHECK_EQ_STR(b, "30 seconds ago");
  tern_cli_humanize_ago(now, now - 60000, b, sizeof b);
  CHECK_EQ_STR(b, "1 minute ago");
  tern_cli_humanize_ago(now, now - 3 * 3600000 - 5, b, sizeof b);
  CHECK_EQ_STR(b, "3 hours ago");
  tern_cli_humanize_ago(now, now - 2 * 86400000LL, b, sizeof b);
  CHECK_EQ_STR(b, "2 days ago");
  setenv("TZ", "UTC", 1);
  tern_cli_format_time(1795468495000, true, b, sizeof b);
  CHECK_EQ_STR(b, "2026-11-23 21:14:55");
  tern_cli_format_time(1795468495000, false, b, sizeof b);
  CHECK_EQ_STR(b, "21:14:55");
  CHECK_EQ_INT(tern_cli_text_width("héllo ✓✓"), 8);
}

/* ---- groups ---- */

static tern_client_group_summary summary(const char *id, const char *name) {
  tern_client_group_summary g = {.members = 2};
  snprintf(g.group_id, sizeof g.group_id, "%s", id);
  g.name = (char *)name;
  return g;
}

TEST(group_match) {
  tern_client_group_summary gs[] = {summary("A1", "Trip"), summary("B2", "trip"), summary("C3", "Book club"),
                                    summary("D4", "Book Club"), summary("E5", "BOOK CLUB"), summary("F6", "A1x")};
  tern_client_group_list l = {.groups = gs, .n = TERN_ARRAY_LEN(gs)};
  size_t n;
  CHECK_EQ_INT(tern_cli_group_match(&l, "C3", &n), 2); /* an id */
  CHECK_EQ_INT(n, 1);
  CHECK_EQ_INT(tern_cli_group_match(&l, "Trip", &n), 0); /* the exact name wins over case */
  CHECK_EQ_INT(tern_cli_group_match(&l, "trip", &n), 1);
  CHECK_EQ_INT(tern_cli_group_match(&l, "TRIP", &n), -2); /* two ignoring case */
  CHECK_EQ_INT(n, 2);
  CHECK_EQ_INT(tern_cli_group_match(&l, "book club", &n), -2);
  CHECK_EQ_INT(n, 3);
  CHECK_EQ_INT(tern_cli_group_match(&l, "Book Club", &n), 3);
  CHECK_EQ_INT(tern_cli_group_match(&l, "Zoo", &n), -1);
  CHECK_EQ_INT(n, 0);
  CHECK_EQ_INT(tern_cli_group_match(&l, "a1", &n), -1); /* ids are case-sensitive */
  tern_client_group_list none = {0};
  CHECK_EQ_INT(tern_cli_group_match(&none, "Trip", &n), -1);
}

TEST(group_events) {
  static const char *all[] = {"alice", "bob", "carol"}, *dave[] = {"dave"}, *two[] = {"bob", "carol"};
  static const struct {
    tern_group_event event;
    const char *by, *name, *description;
    const char *const *users;
    size_t nusers;
    const char *want;
  } cases[] = {
      {TERN_GROUP_CREATED, "alice", "Trip \033[2J", NULL, all, 3,
       "alice created the group \"Trip ?[2J\" with alice, bob, carol"},
      {TERN_GROUP_CREATED, "alice", NULL, NULL, all, 3, "alice created the group \"Trip\" with alice, bob, carol"},
      {TERN_GROUP_ADDED, "alice", NULL, NULL, dave, 1, "alice added dave"},
      {TERN_GROUP_REMOVED, "alice", NULL, NULL, two, 2, "alice removed bob, carol"},
      {TERN_GROUP_LEFT, "dave", NULL, NULL, dave, 1, "dave left"},
      {TERN_GROUP_RENAMED, "alice", "Trip 2", "", NULL, 0, "alice renamed the group \"Trip 2\""},
      {TERN_GROUP_RENAMED, "alice", "Trip 2", "to the sea", NULL, 0, "alice renamed the group \"Trip 2\" (to the sea)"},
      {TERN_GROUP_PROMOTED, "alice", NULL, NULL, dave, 1, "alice made dave an admin"},
      {TERN_GROUP_PROMOTED, "alice", NULL, NULL, two, 2, "alice made bob, carol admins"},
      {TERN_GROUP_DEMOTED, "alice", NULL, NULL, dave, 1, "alice removed dave as an admin"},
      {TERN_GROUP_UNKNOWN, "alice", NULL, NULL, NULL, 0, "alice changed the group"},
      {TERN_GROUP_ADDED, NULL, NULL, NULL, dave, 1, "someone added dave"},
  };
  tern_buf b = {0};
  for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
    tern_envelope e = {.type = TERN_EV_GROUP,
                       .event = cases[i].event,
                       .by = tern_str_c(cases[i].by),
                       .name = tern_str_c(cases[i].name),
                       .description = tern_str_c(cases[i].description),
                       .users = {.c = cases[i].users, .n = cases[i].nusers}};
    tern_buf_reset(&b);
    tern_cli_group_event_text(&e, "Trip", &b);
    CHECK_EQ_STR(tern_buf_cstr(&b), cases[i].want);
  }
  tern_buf_free(&b);
}

TEST(group_tally) {
  static const char *bob[] = {"bob"}, *both[] = {"carol", "bob"};
  /* Receipts in turn, and what the tally says after each: whether it changed, the three
   * views, and whether everyone delivered / read. */
  static const struct {
    int64_t of;                 /* a new tally of this size starts here (else 0: go on) */
    const char *const *by;      /* the receipt's users */
    size_t nby;
    bool read;
    bool changed;
    const char *delivered, *read_text, *ticks;
    bool all_delivered, all_read;
  } steps[] = {
      {2, NULL, 0, false, false, "delivered to 0 of 2", "read by 0 of 2", "✓", false, false},
      {0, bob, 1, false, true, "delivered to 1 of 2", "read by 0 of 2", "✓ delivered to 1 of 2", false, false},
      {0, bob, 1, false, false, "delivered to 1 of 2", "read by 0 of 2", "✓ delivered to 1 of 2", false, false},
      {0, both, 2, false, true, "✓✓ delivered to 2 of 2", "read by 0 of 2", "✓✓ delivered to 2 of 2", true, false},
      {0, bob, 1, true, true, "✓✓ delivered to 2 of 2", "read by 1 of 2", "✓✓ delivered to 2 of 2, read by 1", true,
       false},
      /* A read that comes first counts as delivered too; an unknown size counts alone. */
      {-1, both, 2, true, true, "delivered to 2", "read by 2", "✓ delivered to 2, read by 2", false, false},
  };
  tern_cli_tally t = {0};
  tern_buf b = {0};
  for (size_t i = 0; i < TERN_ARRAY_LEN(steps); i++) {
    if (steps[i].of) {
      tern_cli_tally_free(&t);
      t.of = steps[i].of;
    }
    tern_strs l = {.c = steps[i].by, .n = steps[i].nby};
    CHECK_EQ_INT(tern_cli_tally_add(&t, &l, steps[i].read), steps[i].changed);
    const char *want[] = {steps[i].delivered, steps[i].read_text, steps[i].ticks};
    tern_cli_tally_view views[] = {TERN_CLI_TALLY_DELIVERED, TERN_CLI_TALLY_READ, TERN_CLI_TALLY_TICKS};
    for (int v = 0; v < 3; v++) {
      tern_buf_reset(&b);
      tern_cli_tally_text(&t, views[v], &b);
      CHECK_EQ_STR(tern_buf_cstr(&b), want[v]);
    }
    CHECK_EQ_INT(tern_cli_tally_all(&t, false), steps[i].all_delivered);
    CHECK_EQ_INT(tern_cli_tally_all(&t, true), steps[i].all_read);
  }
  tern_cli_tally_free(&t);
  tern_buf_free(&b);
  t = (tern_cli_tally){.of = 0}; /* nobody else in the group: everyone (nobody) has it */
  CHECK(tern_cli_tally_all(&t, true));
}

TEST(printable) {
  char out[32];
  tern_cli_printable("Trip ✈ ok", out, sizeof out);
  CHECK_EQ_STR(out, "Trip ✈ ok");
  tern_cli_printable("a\033[31mb\tc\x7f", out, sizeof out);
  CHECK_EQ_STR(out, "a?[31mb?c?");
  tern_cli_printable("\xc2\x9b" "2J \xff\xfe \xe2\x9c", out, sizeof out); /* C1 CSI, invalid, cut */
  CHECK_EQ_STR(out, "??2J ?? ??");
  tern_cli_printable("✈✈✈", out, 7); /* never half a character */
  CHECK_EQ_STR(out, "✈✈");
  tern_cli_printable(NULL, out, sizeof out);
  CHECK_EQ_STR(out, "");
}

int main(void) {
  RUN(creds_paths);
  RUN(creds_save_load);
  RUN(durations_and_times);
  RUN(group_match);
  RUN(group_events);
  RUN(group_tally);
  RUN(printable);
  DONE();
}
