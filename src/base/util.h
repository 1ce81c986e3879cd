/* util: small helpers shared by every layer: clocks, random ids, hex, UTF-8 checks. */
#ifndef TERN_BASE_UTIL_H
#define TERN_BASE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wall-clock milliseconds since the Unix epoch (the protocol's MS). */
int64_t tern_now_ms(void);
/* Monotonic nanoseconds, for latency measurements. */
uint64_t tern_mono_ns(void);

/* Fills buf with n cryptographically random bytes (libsodium). */
void tern_random(void *buf, size_t n);
/* Writes 2*n lower-case hex digits and a NUL to out (out needs 2*n+1 bytes). */
void tern_hex(char *out, const void *in, size_t n);

/* True when s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool tern_utf8_valid(const void *s, size_t n);

/* FNV-1a; good enough for in-process hash tables keyed by ids we generate or validate. */
uint64_t tern_hash_bytes(const void *p, size_t n);

/* Message ids that sort in the order one generator made them, unique across processes and
 * workers: 12 hex digits of ms, 4 of a counter within the ms (two ids of one ms keep their
 * order; past 65,536 in one ms the next ms is borrowed), 2 of the worker index, then 10 of
 * noise from a splitmix64 generator seeded once per generator (so no system call per id; the
 * noise keeps processes apart and is not a secret). A clock that steps back keeps using the
 * last ms, so the order holds across that too. One generator per loop: not thread-safe. */
#define TERN_MSG_ID_PREFIX_LEN 28
/* What tern_idgen_next writes is the prefix of a msg_id; core/msgid.h appends its tag. */
#define TERN_MSG_ID_LEN 44
typedef struct tern_idgen {
  uint64_t noise;   /* splitmix64 state */
  int64_t last_ms;  /* ms of the last id */
  unsigned counter; /* ids made in last_ms */
  unsigned worker;  /* 0..255 */
} tern_idgen;
void tern_idgen_init(tern_idgen *g, unsigned worker);
/* Writes the next id for time ts (ms), TERN_MSG_ID_PREFIX_LEN digits, and a NUL into out. */
void tern_idgen_next(tern_idgen *g, int64_t ts, char out[TERN_MSG_ID_LEN + 1]);

/* A token bucket: `burst` deep, refilled at `rate` per second; a zeroed one starts full. */
typedef struct tern_rate_bucket {
  double tokens; /* what is left */
  int64_t at;    /* ms of the last refill; 0 = never used */
} tern_rate_bucket;
/* Takes n tokens when there are that many (true); false leaves the bucket as it was. */
bool tern_bucket_take(tern_rate_bucket *b, double rate, double burst, double n);

#define TERN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TERN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TERN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TERN_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
