#include "base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static tern_log_level g_level = TERN_LOG_INFO;
static const char *const g_names[] = {"debug", "info", "warn", "error"};

void tern_log_set_level(tern_log_level level) { g_level = level; }

int tern_log_parse_level(const char *s, tern_log_level *out) {
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, g_names[i]) == 0) {
      *out = (tern_log_level)i;
      return 0;
    }
  }
  return -EINVAL;
}

int tern_log_enabled(tern_log_level level) { return level >= g_level; }

void tern_log(tern_log_level level, const char *msg, const char *fmt, ...) {
  if (level < g_level) return;
  char line[2048];
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s msg=\"%s\"",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(tv.tv_usec / 1000), g_names[level], msg);
  if (n < 0) return;
  if (fmt && *fmt && (size_t)n < sizeof line - 2) {
    line[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m > 0) n += m;
  }
  if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  ssize_t w = write(2, line, (size_t)n);
  (void)w; /* nothing sensible to do if stderr is gone */
}

const char *tern_log_quote(const char *s) {
  static __thread char ring[4][212];
  static __thread int next;
  char *out = ring[next];
  next = (next + 1) & 3;
  size_t o = 0;
  out[o++] = '"';
  for (; s && *s && o < 204; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      out[o++] = ' ';
    } else {
      out[o++] = (char)c;
    }
  }
  out[o++] = '"';
  out[o] = '\0';
  return out;
}
