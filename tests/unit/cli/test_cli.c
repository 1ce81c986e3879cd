/* test_cli: the `tern` CLI's own pieces: credentials files and the time and duration helpers. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/util.h"
#include "cli/cli.h"
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

int main(void) {
  RUN(creds_paths);
  RUN(creds_save_load);
  RUN(durations_and_times);
  DONE();
}
