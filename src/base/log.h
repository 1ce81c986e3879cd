/* log: one logfmt line per event on stderr:
 *   ts=2026-11-23T21:14:55.123Z level=info msg="listening" addr=127.0.0.1:8080
 * The fields after msg are given as a printf format that the caller writes in logfmt
 * (key=value pairs; use tern_log_quote for values that may hold spaces or quotes).
 * Thread-safe: each line is written with one write(2). */
#ifndef TERN_BASE_LOG_H
#define TERN_BASE_LOG_H

typedef enum { TERN_LOG_DEBUG = 0, TERN_LOG_INFO, TERN_LOG_WARN, TERN_LOG_ERROR } tern_log_level;

void tern_log_set_level(tern_log_level level);
/* Parses "debug|info|warn|error"; returns 0 or -EINVAL. */
int tern_log_parse_level(const char *s, tern_log_level *out);
int tern_log_enabled(tern_log_level level);
void tern_log(tern_log_level level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns s quoted for logfmt in a thread-local ring of small buffers (valid until four
 * more calls on the same thread), truncated to 200 bytes. */
const char *tern_log_quote(const char *s);

#define TERN_DEBUG(msg, ...) \
  do { if (tern_log_enabled(TERN_LOG_DEBUG)) tern_log(TERN_LOG_DEBUG, msg, __VA_ARGS__); } while (0)
#define TERN_INFO(msg, ...) tern_log(TERN_LOG_INFO, msg, __VA_ARGS__)
#define TERN_WARN(msg, ...) tern_log(TERN_LOG_WARN, msg, __VA_ARGS__)
#define TERN_ERROR(msg, ...) tern_log(TERN_LOG_ERROR, msg, __VA_ARGS__)

#endif
