#include "base/util.h"

#include <sodium.h>
#include <string.h>
#include <time.h>

int64_t tern_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t tern_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void tern_random(void *buf, size_t n) { randombytes_buf(buf, n); }

void tern_hex(char *out, const void *in, size_t n) {
  static const char digits[] = "0123456789abcdef";
  const unsigned char *p = in;
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
}

bool tern_utf8_valid(const void *s, size_t n) {
  if (n == 0) return true; /* also keeps NULL + 0 away from pointer arithmetic */
  const unsigned char *p = s, *end = p + n;
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) {
      p++;
      continue;
    }
    size_t need;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if ((size_t)(end - p) <= need) return false;
    for (size_t i = 1; i <= need; i++) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return false;
    if (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) return false;
    p += need + 1;
  }
  return true;
}

uint64_t tern_hash_bytes(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 1099511628211ull;
  }
  return h;
}

void tern_idgen_init(tern_idgen *g, unsigned worker) {
  memset(g, 0, sizeof *g);
  tern_random(&g->noise, sizeof g->noise);
  g->worker = worker & 0xff;
}

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void tern_idgen_next(tern_idgen *g, int64_t ts, char out[TERN_MSG_ID_LEN + 1]) {
  if (ts > g->last_ms) {
    g->last_ms = ts;
    g->counter = 0;
  } else if (++g->counter > 0xffff) {
    g->last_ms++; /* over 65,536 in one ms: borrow the next ms */
    g->counter = 0;
  }
  static const char hex[] = "0123456789abcdef";
  uint64_t parts[4] = {(uint64_t)g->last_ms & 0xffffffffffffull, g->counter, g->worker,
                       splitmix64(&g->noise) & 0xffffffffffull};
  static const int digits[4] = {12, 4, 2, 10};
  char *p = out;
  for (int i = 0; i < 4; i++)
    for (int d = digits[i] - 1; d >= 0; d--) *p++ = hex[(parts[i] >> (4 * d)) & 0xf];
  *p = '\0';
}

bool tern_bucket_take(tern_rate_bucket *b, double rate, double burst, double n) {
  int64_t now = tern_now_ms();
  if (b->at == 0) b->tokens = burst; /* a new bucket starts full */
  else b->tokens += (double)(now - b->at) * rate / 1000.0;
  if (b->tokens > burst) b->tokens = burst;
  b->at = now;
  if (b->tokens < n) return false;
  b->tokens -= n;
  return true;
}
