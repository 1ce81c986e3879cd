/* sniff: recognise an upload's type by its magic number and read the dimensions its header
 * declares, incrementally, before any decoder runs. See media.h for the contract. */
#include <string.h>
#include <strings.h>

#include "media/media.h"

enum {
  S_MAGIC = 0, /* collecting the first bytes until one magic number matches */
  J_FF,        /* JPEG: expecting the 0xFF that starts a marker */
  J_CODE,      /* JPEG: the marker code (0xFF fill bytes allowed) */
  J_LEN,       /* JPEG: a segment length, then skip the segment */
  J_SOF,       /* JPEG: start of frame: length, precision, height, width */
  P_IHDR,      /* PNG: the IHDR chunk up to bit depth and colour type */
  G_LSD,       /* GIF: the logical screen size */
  W_CHUNK,     /* WebP: the first chunk header (fourcc + size) */
  W_VP8,       /* WebP lossy: frame tag, start code, sizes */
  W_VP8L,      /* WebP lossless: signature and packed sizes */
  W_VP8X,      /* WebP extended: flags and canvas size */
};

static const uint8_t k_png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le24(const uint8_t *p) { return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le32(const uint8_t *p) { return le24(p) | (uint32_t)p[3] << 24; }

void tern_media_probe_init(tern_media_probe *p) {
  memset(p, 0, sizeof *p);
  p->status = TERN_PROBE_MORE;
  p->state = S_MAGIC;
}

static void next(tern_media_probe *p, uint8_t state, uint8_t need) {
  p->state = state;
  p->need = need;
  p->blen = 0;
}

static void bad(tern_media_probe *p) { p->status = TERN_PROBE_BAD; }

static void done(tern_media_probe *p, uint32_t w, uint32_t h) {
  /* A zero side is never a decodable image (JPEG height 0 means "DNL", which libjpeg refuses). */
  if (w == 0 || h == 0) {
    bad(p);
    return;
  }
  p->width = w;
  p->height = h;
  p->status = TERN_PROBE_DONE;
}

/* Called after each of the first bytes: the magic numbers start with different bytes, so at
 * most one can match; decide as soon as one is complete, refuse as soon as none can match. */
static void magic_step(tern_media_probe *p) {
  const uint8_t *b = p->buf;
  size_t n = p->blen;
  if (b[0] == 0xff) {
    static const uint8_t soi[3] = {0xff, 0xd8, 0xff};
    if (memcmp(b, soi, n) != 0) return bad(p);
    if (n == 3) {
      /* SOI consumed, and the 0xFF of the first marker: its code comes next. */
      p->type = TERN_MEDIA_JPEG;
      next(p, J_CODE, 1);
    }
  } else if (b[0] == 0x89) {
    if (memcmp(b, k_png_sig, n) != 0) return bad(p);
    if (n == 8) {
      p->type = TERN_MEDIA_PNG;
      next(p, P_IHDR, 18);
    }
  } else if (b[0] == 'G') {
    static const char gif[] = "GIF8";
    for (size_t i = 0; i < n && i < 4; i++)
      if (b[i] != (uint8_t)gif[i]) return bad(p);
    if (n >= 5 && b[4] != '7' && b[4] != '9') return bad(p);
    if (n == 6) {
      if (b[5] != 'a') return bad(p);
      p->type = TERN_MEDIA_GIF;
      next(p, G_LSD, 4);
    }
  } else if (b[0] == 'R') {
    static const char riff[] = "RIFF", webp[] = "WEBP";
    for (size_t i = 0; i < n && i < 4; i++)
      if (b[i] != (uint8_t)riff[i]) return bad(p);
    for (size_t i = 8; i < n; i++)
      if (b[i] != (uint8_t)webp[i - 8]) return bad(p);
    if (n == 12) {
      /* The RIFF size must at least cover "WEBP" and one chunk header. */
      if (le32(b + 4) < 12) return bad(p);
      p->type = TERN_MEDIA_WEBP;
      next(p, W_CHUNK, 8);
    }
  } else {
    bad(p);
  }
}

static bool is_sof(uint8_t c) {
  /* C0..CF are frame headers except C4 (DHT), C8 (reserved, JPG) and CC (DAC). */
  return c >= 0xc0 && c <= 0xcf && c != 0xc4 && c != 0xc8 && c != 0xcc;
}

static bool png_depth_ok(uint8_t depth, uint8_t colour) {
  switch (colour) {
    case 0: return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
    case 3: return depth == 1 || depth == 2 || depth == 4 || depth == 8;
    case 2: case 4: case 6: return depth == 8 || depth == 16;
    default: return false;
  }
}

/* A unit of `need` bytes is complete in buf. */
static void unit(tern_media_probe *p) {
  const uint8_t *b = p->buf;
  switch (p->state) {
    case J_FF:
      if (b[0] != 0xff) return bad(p);
      return next(p, J_CODE, 1);
    case J_CODE: {
      uint8_t c = b[0];
      if (c == 0xff) return next(p, J_CODE, 1); /* fill byte */
      /* A second SOI, the end, or scan data before any frame header: not a usable JPEG. */
      if (c == 0x00 || c == 0xd8 || c == 0xd9 || c == 0xda) return bad(p);
      if ((c >= 0xd0 && c <= 0xd7) || c == 0x01) return next(p, J_FF, 1); /* no length */
      if (is_sof(c)) return next(p, J_SOF, 7);
      return next(p, J_LEN, 2);
    }
    case J_LEN: {
      uint32_t len = be16(b);
      if (len < 2) return bad(p);
      next(p, J_FF, 1);
      p->skip = len - 2; /* skipped without copying: APPn segments can be 64 KiB each */
      return;
    }
    case J_SOF:
      if (be16(b) < 8) return bad(p);
      return done(p, be16(b + 5), be16(b + 3));
    case P_IHDR: {
      if (be32(b) != 13 || memcmp(b + 4, "IHDR", 4) != 0) return bad(p);
      uint32_t w = be32(b + 8), h = be32(b + 12);
      if (w > 0x7fffffffu || h > 0x7fffffffu || !png_depth_ok(b[16], b[17])) return bad(p);
      return done(p, w, h);
    }
    case G_LSD:
      return done(p, le16(b), le16(b + 2));
    case W_CHUNK:
      if (memcmp(b, "VP8 ", 4) == 0) return next(p, W_VP8, 10);
      if (memcmp(b, "VP8L", 4) == 0) return next(p, W_VP8L, 5);
      if (memcmp(b, "VP8X", 4) == 0) return next(p, W_VP8X, 10);
      return bad(p);
    case W_VP8: {
      uint32_t tag = le24(b);
      if ((tag & 1) != 0) return bad(p); /* the first frame must be a key frame */
      if (b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a) return bad(p);
      return done(p, le16(b + 6) & 0x3fff, le16(b + 8) & 0x3fff);
    }
    case W_VP8L: {
      if (b[0] != 0x2f) return bad(p);
      uint32_t v = le32(b + 1);
      if ((v >> 29) != 0) return bad(p); /* version must be 0 */
      return done(p, (v & 0x3fff) + 1, ((v >> 14) & 0x3fff) + 1);
    }
    case W_VP8X:
      return done(p, le24(b + 4) + 1, le24(b + 7) + 1);
    default:
      return bad(p);
  }
}

int tern_media_probe_feed(tern_media_probe *p, const void *data, size_t n) {
  const uint8_t *d = data;
  size_t i = 0;
  while (i < n && p->status == TERN_PROBE_MORE) {
    if (p->skip > 0) {
      uint64_t avail = n - i, k = p->skip < avail ? p->skip : avail;
      i += (size_t)k;
      p->skip -= k;
      p->seen += k;
      continue;
    }
    p->buf[p->blen++] = d[i++];
    p->seen++;
    if (p->state == S_MAGIC) magic_step(p);
    else if (p->blen == p->need) unit(p);
  }
  return p->status;
}

int tern_media_sniff(const void *data, size_t n, tern_media_probe *out) {
  tern_media_probe_init(out);
  return tern_media_probe_feed(out, data, n);
}

bool tern_media_dims_ok(uint64_t w, uint64_t h, int64_t max_dimension, int64_t max_pixels) {
  if (w == 0 || h == 0 || max_dimension <= 0 || max_pixels <= 0) return false;
  if (w > (uint64_t)max_dimension || h > (uint64_t)max_dimension) return false;
  /* Both sides are below 2^32 here, so the product cannot overflow 64 bits. */
  if (w > UINT32_MAX || h > UINT32_MAX) return false;
  return w * h <= (uint64_t)max_pixels;
}

static const char *const k_mimes[] = {NULL, "image/jpeg", "image/png", "image/webp", "image/gif",
                                      "application/octet-stream"};

const char *tern_media_type_mime(tern_media_type t) {
  if ((int)t <= 0 || (size_t)t >= sizeof k_mimes / sizeof k_mimes[0]) return NULL;
  return k_mimes[t];
}

tern_media_type tern_media_type_from_mime(const char *s, size_t n) {
  if (!s) return TERN_MEDIA_NONE;
  size_t a = 0, e = n;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == ';') {
      e = i;
      break;
    }
  }
  while (a < e && (s[a] == ' ' || s[a] == '\t')) a++;
  while (e > a && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
  for (int t = TERN_MEDIA_JPEG; t <= TERN_MEDIA_OCTET; t++) {
    size_t l = strlen(k_mimes[t]);
    if (e - a == l && strncasecmp(s + a, k_mimes[t], l) == 0) return (tern_media_type)t;
  }
  return TERN_MEDIA_NONE;
}
