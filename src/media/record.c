/* record: the byte form of a media record (what the core keeps in its store) and its JSON.
 *
 * Version 1, all integers big-endian:
 *   [1 version=1] [1 n][n id] [1 n][n owner] [1 type]
 *   [8 size] [8 thumb_size] [32 sha256] [4 width] [4 height] [8 created] [8 sent_at]
 *   [4 pending_devices] [4 ngrants]  ngrants  x [1 n][n user]
 *                       [4 nfetched] nfetched x [1 n][n device]
 * Version 2 (an avatar, PROTOCOL.md 15) is version 1 followed by [1 avatar=1][8 avatar_off];
 * a record that is no avatar is always written as version 1, so each record has one form.
 * Decoding checks every length against what is left before allocating, so a hostile or
 * corrupted record can never make it allocate more than its own size. */
#include <errno.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "media/media.h"

enum { REC_VERSION = 1, REC_VERSION_AVATAR = 2 };

static void put_u8(tern_buf *b, uint8_t v) { tern_buf_append(b, &v, 1); }
static void put_u32(tern_buf *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  tern_buf_append(b, x, 4);
}
static void put_u64(tern_buf *b, uint64_t v) {
  put_u32(b, (uint32_t)(v >> 32));
  put_u32(b, (uint32_t)v);
}
static void put_str(tern_buf *b, const char *s) {
  size_t n = strlen(s);
  if (n > 255) n = 255; /* callers validate; never let a length byte wrap */
  put_u8(b, (uint8_t)n);
  tern_buf_append(b, s, n);
}

void tern_media_rec_encode(const tern_media_rec *r, tern_buf *out) {
  put_u8(out, r->avatar ? REC_VERSION_AVATAR : REC_VERSION);
  put_str(out, r->id);
  put_str(out, r->owner);
  put_u8(out, (uint8_t)r->type);
  put_u64(out, (uint64_t)r->size);
  put_u64(out, (uint64_t)r->thumb_size);
  tern_buf_append(out, r->sha256, 32);
  put_u32(out, r->width);
  put_u32(out, r->height);
  put_u64(out, (uint64_t)r->created);
  put_u64(out, (uint64_t)r->sent_at);
  put_u32(out, r->pending_devices);
  put_u32(out, r->ngrants);
  for (uint32_t i = 0; i < r->ngrants; i++) put_str(out, r->grants[i]);
  put_u32(out, r->nfetched);
  for (uint32_t i = 0; i < r->nfetched; i++) put_str(out, r->fetched[i]);
  if (r->avatar) {
    put_u8(out, 1);
    put_u64(out, (uint64_t)r->avatar_off);
  }
}

typedef struct rd {
  const uint8_t *p; /* next byte */
  size_t n;         /* bytes left */
  bool bad;         /* ran past the end or met a malformed field */
} rd;

static const uint8_t *take(rd *r, size_t k) {
  if (r->bad || r->n < k) {
    r->bad = true;
    return NULL;
  }
  const uint8_t *p = r->p;
  r->p += k;
  r->n -= k;
  return p;
}
static uint8_t get_u8(rd *r) {
  const uint8_t *p = take(r, 1);
  return p ? p[0] : 0;
}
static uint32_t get_u32(rd *r) {
  const uint8_t *p = take(r, 4);
  return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : 0;
}
static uint64_t get_u64(rd *r) {
  uint64_t hi = get_u32(r);
  return hi << 32 | get_u32(r);
}
/* A non-empty string without NUL bytes, copied. */
static char *get_str(rd *r) {
  uint8_t n = get_u8(r);
  const uint8_t *p = take(r, n);
  if (!p || n == 0 || memchr(p, '\0', n)) {
    r->bad = true;
    return NULL;
  }
  return tern_strndup((const char *)p, n);
}
static char **get_list(rd *r, uint32_t *count) {
  uint32_t k = get_u32(r);
  /* Each entry takes at least two bytes: refuse counts the remaining bytes cannot hold. */
  if (r->bad || k > r->n / 2) {
    r->bad = true;
    *count = 0;
    return NULL;
  }
  char **v = k ? tern_calloc(k, sizeof *v) : NULL;
  *count = k;
  for (uint32_t i = 0; i < k; i++) {
    v[i] = get_str(r);
    if (r->bad) {
      *count = i;
      break;
    }
  }
  return v;
}

int tern_media_rec_decode(const uint8_t *p, size_t n, tern_media_rec **out) {
  rd r = {p, n, false};
  uint8_t version = get_u8(&r);
  if (version != REC_VERSION && version != REC_VERSION_AVATAR) return TERN_MEDIA_ERR_INVALID;
  tern_media_rec *m = TERN_NEW(tern_media_rec);
  uint8_t idl = get_u8(&r);
  const uint8_t *id = take(&r, idl);
  if (id && tern_media_id_valid((const char *)id, idl)) {
    memcpy(m->id, id, idl);
    m->id[idl] = '\0';
  } else {
    r.bad = true;
  }
  m->owner = get_str(&r);
  m->type = (tern_media_type)get_u8(&r);
  if (!tern_media_type_mime(m->type)) r.bad = true;
  m->size = (int64_t)get_u64(&r);
  m->thumb_size = (int64_t)get_u64(&r);
  const uint8_t *h = take(&r, 32);
  if (h) {
    memcpy(m->sha256, h, 32);
    tern_hex(m->sha256_hex, h, 32);
  }
  m->width = get_u32(&r);
  m->height = get_u32(&r);
  m->created = (int64_t)get_u64(&r);
  m->sent_at = (int64_t)get_u64(&r);
  m->pending_devices = get_u32(&r);
  m->grants = get_list(&r, &m->ngrants);
  m->fetched = get_list(&r, &m->nfetched);
  if (version == REC_VERSION_AVATAR) {
    if (get_u8(&r) != 1) r.bad = true; /* version 2 is only ever written for an avatar */
    m->avatar = true;
    m->avatar_off = (int64_t)get_u64(&r);
    if (m->avatar_off < 0) r.bad = true;
  }
  /* Sizes and times above 2^62 can only come from corruption; so can zero-sized images. */
  if (m->size <= 0 || m->size > (1ll << 62) || m->thumb_size < 0 || m->thumb_size > (1ll << 62) ||
      ((m->width == 0 || m->height == 0) && m->type != TERN_MEDIA_OCTET) || m->created < 0 || m->sent_at < 0 || r.n != 0)
    r.bad = true;
  if (r.bad) {
    tern_media_rec_free(m);
    return TERN_MEDIA_ERR_INVALID;
  }
  *out = m;
  return 0;
}

void tern_media_rec_free(tern_media_rec *r) {
  if (!r) return;
  tern_free(r->owner);
  for (uint32_t i = 0; i < r->ngrants; i++) tern_free(r->grants[i]);
  tern_free(r->grants);
  for (uint32_t i = 0; i < r->nfetched; i++) tern_free(r->fetched[i]);
  tern_free(r->fetched);
  tern_free(r);
}

void tern_media_rec_json(const tern_media_rec *r, tern_buf *out) {
  if (r->type == TERN_MEDIA_OCTET) { /* PROTOCOL.md 11: an opaque blob has no dimensions */
    tern_buf_printf(out, "{\"media_id\":\"%s\",\"mime\":\"%s\",\"size\":%lld,\"sha256\":\"%s\"}", r->id,
                    tern_media_type_mime(r->type), (long long)r->size, r->sha256_hex);
    return;
  }
  tern_buf_printf(out, "{\"media_id\":\"%s\",\"mime\":\"%s\",\"size\":%lld,\"sha256\":\"%s\",\"width\":%u,\"height\":%u}",
                  r->id, tern_media_type_mime(r->type), (long long)r->size, r->sha256_hex, r->width, r->height);
}

static bool has(char *const *v, uint32_t n, const char *s) {
  for (uint32_t i = 0; i < n; i++)
    if (strcmp(v[i], s) == 0) return true;
  return false;
}

static void free_list(char **v, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) tern_free(v[i]);
  tern_free(v);
}

bool tern_media_rec_merge(tern_media_rec *local, const tern_media_rec *remote) {
  /* fetched: remote's, then the ones only this node counted */
  char **f = tern_calloc((size_t)remote->nfetched + local->nfetched + 1, sizeof *f);
  uint32_t nf = 0;
  bool ahead = false;
  for (uint32_t i = 0; i < remote->nfetched; i++) f[nf++] = tern_strdup(remote->fetched[i]);
  for (uint32_t i = 0; i < local->nfetched; i++) {
    if (has(remote->fetched, remote->nfetched, local->fetched[i])) continue;
    f[nf++] = tern_strdup(local->fetched[i]);
    ahead = true;
  }
  free_list(local->fetched, local->nfetched);
  local->fetched = f;
  local->nfetched = nf;
  /* grants: the later write's, revocations included */
  free_list(local->grants, local->ngrants);
  local->grants = tern_calloc((size_t)remote->ngrants + 1, sizeof *local->grants);
  for (uint32_t i = 0; i < remote->ngrants; i++) local->grants[i] = tern_strdup(remote->grants[i]);
  local->ngrants = remote->ngrants;
  local->pending_devices = remote->pending_devices;
  if (remote->sent_at) local->sent_at = remote->sent_at;
  local->avatar = remote->avatar;
  local->avatar_off = remote->avatar_off;
  return ahead;
}
