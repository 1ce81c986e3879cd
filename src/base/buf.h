/* buf: a growable byte buffer. The buffer owns its bytes; tern_buf_free releases them.
 * A zeroed struct is a valid empty buffer, so buffers cost nothing until first used. */
#ifndef TERN_BASE_BUF_H
#define TERN_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tern_buf {
  char *data; /* NULL until the first append */
  size_t len; /* bytes in use */
  size_t cap; /* bytes allocated */
} tern_buf;

void tern_buf_reserve(tern_buf *b, size_t extra); /* ensure room for extra more bytes */
void tern_buf_append(tern_buf *b, const void *p, size_t n);
void tern_buf_puts(tern_buf *b, const char *s);
void tern_buf_putc(tern_buf *b, char c);
void tern_buf_printf(tern_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tern_buf_vprintf(tern_buf *b, const char *fmt, va_list ap);
void tern_buf_put_u64(tern_buf *b, uint64_t v); /* decimal */
void tern_buf_put_i64(tern_buf *b, int64_t v);  /* decimal */
/* Appends s as a JSON string literal (with quotes), escaping as RFC 8259 requires.
 * s must be valid UTF-8; bytes >= 0x80 are copied through unchanged. */
void tern_buf_put_json_str(tern_buf *b, const char *s, size_t n);
void tern_buf_consume(tern_buf *b, size_t n); /* drop n bytes from the front */
void tern_buf_reset(tern_buf *b);             /* len = 0, keeps memory */
void tern_buf_free(tern_buf *b);              /* releases memory, back to empty */
/* Big-endian integers, as every stored record of tern writes them. */
void tern_buf_put_be(tern_buf *b, uint64_t v, int bytes); /* the low `bytes` bytes of v (1-8) */
static inline void tern_buf_put_be16(tern_buf *b, uint64_t v) { tern_buf_put_be(b, v, 2); }
static inline void tern_buf_put_be32(tern_buf *b, uint64_t v) { tern_buf_put_be(b, v, 4); }
static inline void tern_buf_put_be64(tern_buf *b, uint64_t v) { tern_buf_put_be(b, v, 8); }
static inline uint64_t tern_get_be(const void *p, int bytes) {
  const uint8_t *x = (const uint8_t *)p;
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v = (v << 8) | x[i];
  return v;
}
static inline uint64_t tern_get_be64(const void *p) { return tern_get_be(p, 8); }
static inline uint32_t tern_get_be32(const void *p) { return (uint32_t)tern_get_be(p, 4); }
static inline size_t tern_get_be16(const void *p) { return (size_t)tern_get_be(p, 2); }

/* NUL-terminates (without counting the NUL in len) and returns data. */
char *tern_buf_cstr(tern_buf *b);
/* Hands the bytes to the caller (who frees them with tern_free); b becomes empty. */
char *tern_buf_steal(tern_buf *b, size_t *len);

#endif
