#include "base/buf.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"

void tern_buf_reserve(tern_buf *b, size_t extra) {
  if (b->cap - b->len >= extra + 1) return; /* +1 keeps room for cstr's NUL */
  size_t cap = b->cap ? b->cap : 64;
  while (cap - b->len < extra + 1) cap *= 2;
  b->data = tern_realloc(b->data, cap);
  b->cap = cap;
}

void tern_buf_append(tern_buf *b, const void *p, size_t n) {
  if (!n) return;
  tern_buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void tern_buf_puts(tern_buf *b, const char *s) { tern_buf_append(b, s, strlen(s)); }

void tern_buf_putc(tern_buf *b, char c) {
  tern_buf_reserve(b, 1);
  b->data[b->len++] = c;
}

void tern_buf_vprintf(tern_buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap);
  if (n < 0) {
    va_end(ap2);
    return;
  }
  if ((size_t)n < sizeof small) {
    tern_buf_append(b, small, (size_t)n);
  } else {
    tern_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    b->len += (size_t)n;
  }
  va_end(ap2);
}

void tern_buf_printf(tern_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  tern_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void tern_buf_put_u64(tern_buf *b, uint64_t v) {
  char tmp[24];
  int i = (int)sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  tern_buf_append(b, tmp + i, sizeof tmp - (size_t)i);
}

void tern_buf_put_i64(tern_buf *b, int64_t v) {
  if (v < 0) {
    tern_buf_putc(b, '-');
    tern_buf_put_u64(b, (uint64_t)0 - (uint64_t)v);
  } else {
    tern_buf_put_u64(b, (uint64_t)v);
  }
}

/* The first byte at or after i that JSON needs escaped (a control byte, '"' or '\\'), or n.
 * Eight bytes at a time: outgoing frames are mostly bodies and ids with nothing to escape, and
 * a byte at a time was the writer's whole cost (about 4 instructions a byte). The word tests
 * are the usual ones: (x - 0x20..) & ~x & 0x80.. is nonzero exactly when some byte is below
 * 0x20, and a byte equal to c is a zero byte of x ^ c.. . */
static size_t json_plain_until(const char *s, size_t i, size_t n) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    memcpy(&x, s + i, 8);
    uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
    uint64_t hit = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs);
    if (hit & highs) break; /* in these eight: find it below */
  }
  for (; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == '"' || c == '\\') return i;
  }
  return n;
}

void tern_buf_put_json_str(tern_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  tern_buf_reserve(b, n + 2);
  tern_buf_putc(b, '"');
  size_t run = 0; /* start of the current run of bytes that need no escaping */
  for (size_t i = json_plain_until(s, 0, n); i < n; i = json_plain_until(s, i + 1, n)) {
    unsigned char c = (unsigned char)s[i];
    tern_buf_append(b, s + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': tern_buf_append(b, "\\\"", 2); break;
      case '\\': tern_buf_append(b, "\\\\", 2); break;
      case '\n': tern_buf_append(b, "\\n", 2); break;
      case '\r': tern_buf_append(b, "\\r", 2); break;
      case '\t': tern_buf_append(b, "\\t", 2); break;
      case '\b': tern_buf_append(b, "\\b", 2); break;
      case '\f': tern_buf_append(b, "\\f", 2); break;
      default: {
        char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        tern_buf_append(b, e, 6);
      }
    }
  }
  tern_buf_append(b, s + run, n - run);
  tern_buf_putc(b, '"');
}

void tern_buf_consume(tern_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void tern_buf_reset(tern_buf *b) { b->len = 0; }

void tern_buf_free(tern_buf *b) {
  tern_free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *tern_buf_cstr(tern_buf *b) {
  tern_buf_reserve(b, 0);
  b->data[b->len] = '\0';
  return b->data;
}

char *tern_buf_steal(tern_buf *b, size_t *len) {
  char *d = tern_buf_cstr(b);
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return d;
}

void tern_buf_put_be(tern_buf *b, uint64_t v, int bytes) {
  uint8_t x[8];
  for (int i = 0; i < bytes; i++) x[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
  tern_buf_append(b, x, (size_t)bytes);
}
