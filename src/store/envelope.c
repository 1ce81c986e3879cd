/* envelope.c: the neutral envelope record (envelope.h). */
#include "store/envelope.h"

#include <errno.h>
#include <string.h>

enum { V2 = 2, HEAD2 = 1 + 1 + 1 + 8, HEAD1 = 1 + 1 + 8 };

static void put_be64(uint8_t *p, int64_t ts) {
  uint64_t v = (uint64_t)ts;
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

/* Reads a varint (LEB128, at most 10 bytes) at *p; returns false when truncated or too long. */
static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    if (shift == 63 && b > 1) return false;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return true;
    }
  }
  return false;
}

/* Writes v as a varint into x (10 bytes); returns its length. */
static size_t varint(uint8_t x[10], uint64_t v) {
  size_t n = 0;
  do {
    x[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) x[n] |= 0x80;
    n++;
  } while (v);
  return n;
}

static void put_varint(tern_buf *b, uint64_t v) {
  uint8_t x[10];
  tern_buf_append(b, x, varint(x, v));
}

static int unpack_legacy(const uint8_t *v, size_t len, tern_env_view *out) {
  if (len < HEAD1 + 2) return -EINVAL;
  const uint8_t *p = v, *end = v + len;
  out->version = 1;
  out->kind = *p++;
  out->flags = *p++;
  out->ts = (int64_t)tern_get_be64(p);
  p += 8;
  size_t n = *p++;
  if ((size_t)(end - p) < n + 1) return -EINVAL; /* + the from length byte */
  out->f[TERN_EF_MSG_ID] = (tern_str){(const char *)p, n};
  out->count[TERN_EF_MSG_ID] = n > 0;
  if (!n) out->f[TERN_EF_MSG_ID].p = NULL;
  p += n;
  n = *p++;
  if ((size_t)(end - p) < n) return -EINVAL;
  if (n) {
    out->f[TERN_EF_FROM] = (tern_str){(const char *)p, n};
    out->count[TERN_EF_FROM] = 1;
  }
  p += n;
  out->legacy_tail = (tern_str){(const char *)p, (size_t)(end - p)};
  return 0;
}

int tern_env_unpack(const uint8_t *v, size_t len, tern_env_view *out) {
  memset(out, 0, sizeof *out);
  if (!v || len < 1) return -EINVAL;
  if (v[0] == TERN_ENV_MSG || v[0] == TERN_ENV_RECEIPT) return unpack_legacy(v, len, out);
  if (v[0] != V2 || len < HEAD2) return -EINVAL;
  out->version = V2;
  out->kind = v[1];
  if (out->kind != TERN_ENV_MSG && out->kind != TERN_ENV_RECEIPT && out->kind != TERN_ENV_GROUP &&
      out->kind != TERN_ENV_DECRYPT_ERROR)
    return -EINVAL;
  out->flags = v[2];
  out->ts = (int64_t)tern_get_be64(v + 3);
  const uint8_t *p = v + HEAD2, *end = v + len;
  out->fields = p;
  out->fields_len = (size_t)(end - p);
  while (p < end) {
    uint8_t tag = *p++;
    uint64_t n;
    if (!get_varint(&p, end, &n) || n > (uint64_t)(end - p)) return -EINVAL;
    if (tag > 0 && tag < TERN_EF__COUNT) {
      if (!out->f[tag].p) out->f[tag] = (tern_str){(const char *)p, (size_t)n};
      if (out->count[tag] < UINT16_MAX) out->count[tag]++;
    }
    p += n;
  }
  return 0;
}

void tern_env_each(const tern_env_view *v, tern_env_field tag, bool (*fn)(tern_str s, void *arg), void *arg) {
  if (v->version < V2) {
    if (v->f[tag].p) fn(v->f[tag], arg);
    return;
  }
  const uint8_t *p = v->fields, *end = v->fields + v->fields_len;
  while (p < end) {
    uint8_t t = *p++;
    uint64_t n;
    if (!get_varint(&p, end, &n) || n > (uint64_t)(end - p)) return; /* checked by unpack */
    if (t == tag && !fn((tern_str){(const char *)p, (size_t)n}, arg)) return;
    p += n;
  }
}

uint64_t tern_env_uint(const tern_env_view *v, tern_env_field tag) {
  tern_str s = v->f[tag];
  if (!s.p) return 0;
  const uint8_t *p = (const uint8_t *)s.p;
  uint64_t x = 0;
  if (!get_varint(&p, p + s.n, &x)) return 0;
  return x;
}

void tern_env_begin(tern_buf *out, uint8_t kind, uint8_t flags, int64_t ts) {
  uint8_t h[HEAD2] = {V2, kind, flags};
  put_be64(h + 3, ts);
  tern_buf_reset(out);
  tern_buf_append(out, h, sizeof h);
}

void tern_env_receipt_begin(tern_buf *out, bool read, const char *from, const char *group_id, int64_t ts) {
  tern_env_begin(out, TERN_ENV_RECEIPT, 0, ts);
  tern_env_put_str(out, TERN_EF_STATUS, read ? "read" : "delivered");
  tern_env_put_str(out, TERN_EF_FROM, from);
  tern_env_put_str(out, TERN_EF_GROUP_ID, group_id);
  if (group_id) tern_env_put(out, TERN_EF_BY_LIST, NULL, 0);
}

void tern_env_put(tern_buf *out, tern_env_field tag, const void *p, size_t n) {
  tern_buf_putc(out, (char)tag);
  put_varint(out, n);
  if (n) tern_buf_append(out, p, n);
}

void tern_env_put_str(tern_buf *out, tern_env_field tag, const char *s) {
  if (s) tern_env_put(out, tag, s, strlen(s));
}

void tern_env_put_uint(tern_buf *out, tern_env_field tag, uint64_t v) {
  uint8_t x[10];
  tern_env_put(out, tag, x, varint(x, v));
}

void tern_env_set_flags(tern_buf *out, uint8_t flags) {
  if (out->len >= HEAD2 && (uint8_t)out->data[0] == V2) out->data[2] = (char)flags;
}

void tern_env_pack_legacy(tern_buf *out, uint8_t kind, uint8_t flags, int64_t ts, const char *msg_id, const char *from,
                          const char *tail, size_t tail_len) {
  size_t il = msg_id ? strlen(msg_id) : 0, fl = from ? strlen(from) : 0;
  uint8_t h[HEAD1];
  h[0] = kind;
  h[1] = flags;
  put_be64(h + 2, ts);
  tern_buf_reset(out);
  tern_buf_append(out, h, sizeof h);
  tern_buf_putc(out, (char)(il > 255 ? 255 : il));
  tern_buf_append(out, msg_id, il > 255 ? 255 : il);
  tern_buf_putc(out, (char)(fl > 255 ? 255 : fl));
  tern_buf_append(out, from, fl > 255 ? 255 : fl);
  tern_buf_append(out, tail, tail_len);
}
