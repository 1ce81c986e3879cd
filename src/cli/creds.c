/* creds.c: where the CLI keeps its token, and the small text helpers of the CLI. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "cli/cli.h"
#include "client/client.h"

#define CREDS_MAX_FILE 65536 /* a credentials file is a few hundred bytes */

int tern_cli_creds_dir(char *out, size_t cap) {
  const char *xdg = getenv("XDG_CONFIG_HOME");
  const char *home = getenv("HOME");
  int n;
  /* The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored. */
  if (xdg && xdg[0] == '/') n = snprintf(out, cap, "%s/tern", xdg);
  else if (home && home[0]) n = snprintf(out, cap, "%s/.config/tern", home);
  else return -ENOENT;
  if (n < 0 || (size_t)n >= cap) return -ENAMETOOLONG;
  return 0;
}

int tern_cli_creds_path(const tern_client_url *url, char *out, size_t cap) {
  int rc = tern_cli_creds_dir(out, cap);
  if (rc < 0) return rc;
  size_t len = strlen(out);
  char name[TERN_CLIENT_HOST_MAX + 16];
  snprintf(name, sizeof name, "%s-%u", url->host, (unsigned)url->port);
  for (char *p = name; *p; p++) {
    bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '-';
    if (!ok) *p = '_';
  }
  int n = snprintf(out + len, cap - len, "/%s.json", name);
  if (n < 0 || (size_t)n >= cap - len) return -ENAMETOOLONG;
  return 0;
}

/* mkdir -p for the directory part of path; the last directory (tern's own) is made 0700
 * even when it exists, since it holds secrets. */
static int make_dirs(const char *path) {
  char dir[4096];
  size_t n = strlen(path);
  if (n >= sizeof dir) return -ENAMETOOLONG;
  memcpy(dir, path, n + 1);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = '\0';
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) return -errno;
    *p = '/';
  }
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) return -errno;
  if (chmod(dir, 0700) < 0) return -errno;
  return 0;
}

int tern_cli_creds_save(const char *path, const tern_cli_creds *cr) {
  int rc = make_dirs(path);
  if (rc < 0) return rc;
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"server\":");
  tern_buf_put_json_str(&b, cr->server, strlen(cr->server));
  tern_buf_puts(&b, ",\"user\":");
  tern_buf_put_json_str(&b, cr->user, strlen(cr->user));
  tern_buf_puts(&b, ",\"device_id\":");
  tern_buf_put_json_str(&b, cr->device_id, strlen(cr->device_id));
  tern_buf_puts(&b, ",\"token\":");
  tern_buf_put_json_str(&b, cr->token, strlen(cr->token));
  tern_buf_puts(&b, "}\n");

  char tmp[4200];
  int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= sizeof tmp) {
    tern_buf_free(&b);
    return -ENAMETOOLONG;
  }
  unlink(tmp); /* a leftover from a crashed run */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = -errno;
    tern_buf_free(&b);
    return rc;
  }
  size_t off = 0;
  while (off < b.len) {
    ssize_t w = write(fd, b.data + off, b.len - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      rc = -errno;
      break;
    }
    off += (size_t)w;
  }
  if (rc == 0 && fsync(fd) < 0) rc = -errno;
  if (close(fd) < 0 && rc == 0) rc = -errno;
  memset(b.data, 0, b.len); /* it held the token */
  tern_buf_free(&b);
  if (rc == 0 && rename(tmp, path) < 0) rc = -errno;
  if (rc < 0) unlink(tmp);
  return rc;
}

static int copy_str(char *dst, size_t cap, const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) return -EBADMSG;
  memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
  return 0;
}

int tern_cli_creds_load(const char *path, tern_cli_creds *cr) {
  memset(cr, 0, sizeof *cr);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  tern_buf b = {0};
  int rc = 0;
  for (;;) {
    tern_buf_reserve(&b, 4096);
    ssize_t r = read(fd, b.data + b.len, 4096);
    if (r < 0) {
      if (errno == EINTR) continue;
      rc = -errno;
      break;
    }
    if (r == 0) break;
    b.len += (size_t)r;
    if (b.len > CREDS_MAX_FILE) {
      rc = -EBADMSG;
      break;
    }
  }
  close(fd);
  if (rc == 0) {
    tern_client_json_hooks();
    cJSON *o = cJSON_ParseWithLength(b.data ? b.data : "", b.len);
    if (!cJSON_IsObject(o) || copy_str(cr->server, sizeof cr->server, o, "server") < 0 ||
        copy_str(cr->user, sizeof cr->user, o, "user") < 0 ||
        copy_str(cr->device_id, sizeof cr->device_id, o, "device_id") < 0 ||
        copy_str(cr->token, sizeof cr->token, o, "token") < 0 || !cr->token[0])
      rc = -EBADMSG;
    cJSON_Delete(o);
  }
  if (b.data) memset(b.data, 0, b.len);
  tern_buf_free(&b);
  if (rc < 0) memset(cr, 0, sizeof *cr);
  return rc;
}

int tern_cli_creds_remove(const char *path) { return unlink(path) < 0 ? -errno : 0; }

/* ---- text helpers ---- */

int tern_cli_parse_duration(const char *s, int64_t *ms) {
  if (!s || !*s) return -EINVAL;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || v < 0 || v > 1e12) return -EINVAL;
  double mult;
  if (!*end || strcmp(end, "s") == 0) mult = 1000;
  else if (strcmp(end, "ms") == 0) mult = 1;
  else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0) mult = 60000;
  else if (strcmp(end, "h") == 0) mult = 3600000;
  else if (strcmp(end, "d") == 0) mult = 86400000;
  else return -EINVAL;
  *ms = (int64_t)(v * mult + 0.5);
  return 0;
}

void tern_cli_humanize_ago(int64_t now_ms, int64_t then_ms, char *out, size_t cap) {
  int64_t s = (now_ms - then_ms) / 1000;
  if (s < 0) s = 0; /* clocks of client and server disagree a little */
  static const struct {
    int64_t secs;
    const char *unit;
  } units[] = {{86400 * 365, "year"}, {86400 * 30, "month"}, {86400 * 7, "week"}, {86400, "day"},
               {3600, "hour"},        {60, "minute"},         {1, "second"}};
  if (s < 5) {
    snprintf(out, cap, "just now");
    return;
  }
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (s >= units[i].secs) {
      int64_t n = s / units[i].secs;
      snprintf(out, cap, "%lld %s%s ago", (long long)n, units[i].unit, n == 1 ? "" : "s");
      return;
    }
  }
}

void tern_cli_format_time(int64_t ms, bool with_date, char *out, size_t cap) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(out, cap, with_date ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm);
}

size_t tern_cli_text_width(const char *s) {
  size_t w = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if ((*p & 0xC0) != 0x80) w++;
  return w;
}
