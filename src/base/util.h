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

#define TERN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TERN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TERN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TERN_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
