/* Unit tests for the pure parts of src/media: sniffing and header dimensions, mime, limits,
 * Range, ETag / If-None-Match, id and path checks, and the record codec. No loop, no disk. */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/config.h"
#include "base/util.h"
#include "media/media.h"
#include "t.h"

/* ---- handcrafted headers ---------------------------------------------------------------------- */

static uint32_t crc32_png(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return c ^ 0xffffffffu;
}

static void be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* PNG signature + IHDR (with a correct CRC): 33 bytes. */
static size_t png_header(uint8_t *out, uint32_t w, uint32_t h, uint8_t depth, uint8_t colour) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  memcpy(out, sig, 8);
  be32(out + 8, 13);
  memcpy(out + 12, "IHDR", 4);
  be32(out + 16, w);
  be32(out + 20, h);
  out[24] = depth;
  out[25] = colour;
  out[26] = out[27] = out[28] = 0;
  be32(out + 29, crc32_png(out + 12, 17));
  return 33;
}

/* SOI, APP0 JFIF, optional APP1 of app1_len payload bytes, SOFn. */
static size_t jpeg_header(uint8_t *out, uint8_t sof, uint16_t w, uint16_t h, size_t app1_len) {
  size_t n = 0;
  static const uint8_t app0[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0};
  memcpy(out, app0, sizeof app0);
  n = sizeof app0;
  if (app1_len) {
    out[n++] = 0xff;
    out[n++] = 0xe1;
    out[n++] = (uint8_t)((app1_len + 2) >> 8);
    out[n++] = (uint8_t)(app1_len + 2);
    memset(out + n, 0xab, app1_len); /* payload bytes that look like markers must be skipped */
    for (size_t i = 0; i < app1_len; i += 7) out[n + i] = 0xff;
    n += app1_len;
  }
  const uint8_t sofseg[] = {0xff, sof, 0x00, 0x11, 0x08, (uint8_t)(h >> 8), (uint8_t)h, (uint8_t)(w >> 8), (uint8_t)w,
                            3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1};
  memcpy(out + n, sofseg, sizeof sofseg);
  return n + sizeof sofseg;
}

static size_t gif_header(uint8_t *out, const char *ver, uint16_t w, uint16_t h) {
  memcpy(out, ver, 6);
  out[6] = (uint8_t)w;
  out[7] = (uint8_t)(w >> 8);
  out[8] = (uint8_t)h;
  out[9] = (uint8_t)(h >> 8);
  out[10] = 0xf7;
  out[11] = 0;
  out[12] = 0;
  return 13;
}

static size_t webp_header(uint8_t *out, const char *chunk, uint32_t w, uint32_t h) {
  memcpy(out, "RIFF", 4);
  out[4] = 100; /* RIFF size: any plausible value */
  out[5] = out[6] = out[7] = 0;
  memcpy(out + 8, "WEBP", 4);
  memcpy(out + 12, chunk, 4);
  out[16] = 50;
  out[17] = out[18] = out[19] = 0;
  uint8_t *b = out + 20;
  if (!strcmp(chunk, "VP8 ")) {
    b[0] = 0x10; /* key frame (bit 0 clear), version 0, show frame */
    b[1] = 0x02;
    b[2] = 0x00;
    b[3] = 0x9d;
    b[4] = 0x01;
    b[5] = 0x2a;
    b[6] = (uint8_t)w;
    b[7] = (uint8_t)(w >> 8);
    b[8] = (uint8_t)h;
    b[9] = (uint8_t)(h >> 8);
    return 30;
  }
  if (!strcmp(chunk, "VP8L")) {
    uint32_t v = (w - 1) | (h - 1) << 14;
    b[0] = 0x2f;
    b[1] = (uint8_t)v;
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)(v >> 16);
    b[4] = (uint8_t)(v >> 24);
    return 25;
  }
  /* VP8X */
  memset(b, 0, 10);
  b[4] = (uint8_t)(w - 1);
  b[5] = (uint8_t)((w - 1) >> 8);
  b[6] = (uint8_t)((w - 1) >> 16);
  b[7] = (uint8_t)(h - 1);
  b[8] = (uint8_t)((h - 1) >> 8);
  b[9] = (uint8_t)((h - 1) >> 16);
  return 30;
}

/* Feeds the bytes one at a time and in uneven pieces; the answer must not depend on the split. */
static void check_splits(const uint8_t *d, size_t n, int want_status, tern_media_type want_type, uint32_t w,
                         uint32_t h) {
  tern_media_probe whole, bytewise, pieces;
  int st = tern_media_sniff(d, n, &whole);
  CHECK_EQ_INT(st, want_status);
  tern_media_probe_init(&bytewise);
  for (size_t i = 0; i < n; i++) tern_media_probe_feed(&bytewise, d + i, 1);
  tern_media_probe_init(&pieces);
  for (size_t i = 0, k = 1; i < n; i += k, k = k * 3 % 17 + 1) tern_media_probe_feed(&pieces, d + i, TERN_MIN(k, n - i));
  CHECK_EQ_INT(bytewise.status, want_status);
  CHECK_EQ_INT(pieces.status, want_status);
  if (want_status == TERN_PROBE_DONE) {
    CHECK_EQ_INT(whole.type, want_type);
    CHECK_EQ_INT(whole.width, w);
    CHECK_EQ_INT(whole.height, h);
    CHECK_EQ_INT(bytewise.width, w);
    CHECK_EQ_INT(bytewise.height, h);
    CHECK_EQ_INT(pieces.width, w);
    CHECK_EQ_INT(pieces.height, h);
  }
}

TEST(test_sniff_types) {
  uint8_t b[70000];
  size_t n = png_header(b, 640, 480, 8, 6);
  check_splits(b, n, TERN_PROBE_DONE, TERN_MEDIA_PNG, 640, 480);
  n = jpeg_header(b, 0xc0, 1024, 768, 0);
  check_splits(b, n, TERN_PROBE_DONE, TERN_MEDIA_JPEG, 1024, 768);
  n = jpeg_header(b, 0xc2, 4000, 3000, 0); /* progressive */
  check_splits(b, n, TERN_PROBE_DONE, TERN_MEDIA_JPEG, 4000, 3000);
  n = jpeg_header(b, 0xc0, 33, 44, 60000); /* a big EXIF segment before the frame header */
  check_splits(b, n, TERN_PROBE_DONE, TERN_MEDIA_JPEG, 33, 44);
  n = gif_header(b, "GIF89a", 320, 200);
  check_splits(b, n, TERN_PROBE_DONE, TERN_MEDIA_GIF, 320, 200);
  n = gif_header(b, "GIF87a", 1, 65535);
  check_splits(b, n, TERN_PROBE_DONE, TERN_MEDIA_GIF, 1, 65535);
  n = webp_header(b, "VP8 ", 550, 368);
  check_splits(b, n, TERN_PROBE_DONE, TERN_MEDIA_WEBP, 550, 368);
  n = webp_header(b, "VP8L", 16384, 1);
  check_splits(b, n, TERN_PROBE_DONE, TERN_MEDIA_WEBP, 16384, 1);
  n = webp_header(b, "VP8X", 16777216, 3);
  check_splits(b, n, TERN_PROBE_DONE, TERN_MEDIA_WEBP, 16777216, 3);
}

TEST(test_sniff_partial_and_bad) {
  uint8_t b[200];
  tern_media_probe p;
  size_t n = png_header(b, 10, 10, 8, 2);
  CHECK_EQ_INT(tern_media_sniff(b, 20, &p), TERN_PROBE_MORE);
  CHECK_EQ_INT(p.type, TERN_MEDIA_PNG); /* the type is known before the dimensions */
  CHECK_EQ_INT(tern_media_sniff(b, 3, &p), TERN_PROBE_MORE);
  CHECK_EQ_INT(p.type, TERN_MEDIA_NONE);
  CHECK_EQ_INT(tern_media_sniff(b, 0, &p), TERN_PROBE_MORE);
  /* IHDR with a wrong length, bad depth for the colour type */
  b[11] = 14;
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
  png_header(b, 10, 10, 16, 3);
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
  png_header(b, 0, 10, 8, 2);
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
  png_header(b, 0x80000000u, 10, 8, 2);
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);

  static const struct {
    const char *s; /* bytes */
    size_t n;      /* length (they hold NULs) */
  } junk[] = {{"hello world!", 12}, {"BM6\x0c\x00\x00\x00\x00\x00\x00\x36\x00", 12},
              {"RIFF\x24\x00\x00\x00WAVEfmt ", 16}, {"GIF88a\x01\x00\x01\x00", 10}, {"<svg xmlns=", 11},
              {"\x89PNX\r\n\x1a\n", 8}, {"\xff\xd8\xfe", 3}, {"\0\0\0\x0cjP  ", 8}};
  for (size_t i = 0; i < TERN_ARRAY_LEN(junk); i++) {
    CHECK_EQ_INT(tern_media_sniff(junk[i].s, junk[i].n, &p), TERN_PROBE_BAD);
  }
  /* Refused at the first byte that cannot start a known magic number. */
  CHECK_EQ_INT(tern_media_sniff("x", 1, &p), TERN_PROBE_BAD);

  /* JPEG: scan before frame header, end of image, DNL height 0, bad segment length */
  static const uint8_t sos_first[] = {0xff, 0xd8, 0xff, 0xda, 0x00, 0x08};
  CHECK_EQ_INT(tern_media_sniff(sos_first, sizeof sos_first, &p), TERN_PROBE_BAD);
  static const uint8_t eoi[] = {0xff, 0xd8, 0xff, 0xd9};
  CHECK_EQ_INT(tern_media_sniff(eoi, sizeof eoi, &p), TERN_PROBE_BAD);
  n = jpeg_header(b, 0xc0, 100, 0, 0);
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
  static const uint8_t short_len[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x01};
  CHECK_EQ_INT(tern_media_sniff(short_len, sizeof short_len, &p), TERN_PROBE_BAD);
  static const uint8_t no_ff[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x02, 0x12};
  CHECK_EQ_INT(tern_media_sniff(no_ff, sizeof no_ff, &p), TERN_PROBE_BAD);
  /* fill bytes and a restart marker before the frame header are fine */
  static const uint8_t fill[] = {0xff, 0xd8, 0xff, 0xff, 0xff, 0xd0, 0xff, 0xc0, 0, 17, 8, 0, 5, 0, 7};
  check_splits(fill, sizeof fill, TERN_PROBE_DONE, TERN_MEDIA_JPEG, 7, 5);
  /* A JPEG header cut inside a segment asks for more. */
  n = jpeg_header(b, 0xc0, 100, 100, 100);
  CHECK_EQ_INT(tern_media_sniff(b, 60, &p), TERN_PROBE_MORE);
  CHECK_EQ_INT(p.type, TERN_MEDIA_JPEG);

  /* WebP: unknown first chunk, VP8 without a key frame, VP8 bad start code, VP8L bad signature */
  n = webp_header(b, "VP8 ", 10, 10);
  memcpy(b + 12, "ALPH", 4);
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
  n = webp_header(b, "VP8 ", 10, 10);
  b[20] |= 1;
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
  n = webp_header(b, "VP8 ", 10, 10);
  b[23] = 0;
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
  n = webp_header(b, "VP8L", 10, 10);
  b[20] = 0x2e;
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
  n = webp_header(b, "VP8 ", 0, 10);
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
  n = webp_header(b, "VP8 ", 10, 10);
  b[4] = 4; /* RIFF size too small to hold anything */
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
  n = gif_header(b, "GIF89a", 0, 10);
  CHECK_EQ_INT(tern_media_sniff(b, n, &p), TERN_PROBE_BAD);
}

TEST(test_sniff_sticky) {
  uint8_t b[64];
  size_t n = gif_header(b, "GIF89a", 7, 9);
  tern_media_probe p;
  tern_media_probe_init(&p);
  CHECK_EQ_INT(tern_media_probe_feed(&p, b, n), TERN_PROBE_DONE);
  CHECK_EQ_INT(tern_media_probe_feed(&p, "garbage", 7), TERN_PROBE_DONE); /* later bytes are ignored */
  CHECK_EQ_INT(p.width, 7);
  tern_media_probe_init(&p);
  CHECK_EQ_INT(tern_media_probe_feed(&p, "zz", 2), TERN_PROBE_BAD);
  CHECK_EQ_INT(tern_media_probe_feed(&p, b, n), TERN_PROBE_BAD);
}

TEST(test_dims_and_mime) {
  CHECK(tern_media_dims_ok(16384, 1, 16384, 50000000));
  CHECK(!tern_media_dims_ok(16385, 1, 16384, 50000000));
  CHECK(!tern_media_dims_ok(1, 16385, 16384, 50000000));
  CHECK(tern_media_dims_ok(10000, 5000, 16384, 50000000));
  CHECK(!tern_media_dims_ok(10000, 5001, 16384, 50000000));
  CHECK(!tern_media_dims_ok(0, 5, 16384, 50000000));
  CHECK(!tern_media_dims_ok(100000, 100000, 16384, 50000000));
  CHECK(!tern_media_dims_ok(100000, 100000, 1 << 30, 1ll << 33)); /* 10^10 px */
  CHECK(tern_media_dims_ok(100000, 100000, 1 << 30, 1ll << 40));
  CHECK(!tern_media_dims_ok(0xffffffffull, 0xffffffffull, 1ll << 40, 1ll << 62));

  CHECK_EQ_INT(tern_media_type_from_mime("image/jpeg", 10), TERN_MEDIA_JPEG);
  CHECK_EQ_INT(tern_media_type_from_mime("IMAGE/PNG; charset=x", 20), TERN_MEDIA_PNG);
  CHECK_EQ_INT(tern_media_type_from_mime(" image/webp ", 12), TERN_MEDIA_WEBP);
  CHECK_EQ_INT(tern_media_type_from_mime("image/gif;", 10), TERN_MEDIA_GIF);
  CHECK_EQ_INT(tern_media_type_from_mime("image/jpg", 9), TERN_MEDIA_NONE);
  CHECK_EQ_INT(tern_media_type_from_mime("image/jpegx", 11), TERN_MEDIA_NONE);
  CHECK_EQ_INT(tern_media_type_from_mime("image/svg+xml", 13), TERN_MEDIA_NONE);
  CHECK_EQ_INT(tern_media_type_from_mime("", 0), TERN_MEDIA_NONE);
  CHECK_EQ_INT(tern_media_type_from_mime(NULL, 0), TERN_MEDIA_NONE);
  CHECK_EQ_STR(tern_media_type_mime(TERN_MEDIA_GIF), "image/gif");
  CHECK(tern_media_type_mime(TERN_MEDIA_NONE) == NULL);
  CHECK(tern_media_type_mime((tern_media_type)9) == NULL);

  int status;
  const char *code;
  tern_media_err_http(TERN_MEDIA_ERR_UNSUPPORTED, &status, &code);
  CHECK_EQ_INT(status, 415);
  CHECK_EQ_STR(code, "unsupported_media_type");
  tern_media_err_http(TERN_MEDIA_ERR_DIMENSIONS, &status, &code);
  CHECK_EQ_INT(status, 413);
  tern_media_err_http(TERN_MEDIA_ERR_QUOTA, &status, &code);
  CHECK_EQ_INT(status, 429);
  CHECK_EQ_STR(code, "rate_limited");
  tern_media_err_http(TERN_MEDIA_ERR_NOT_FOUND, &status, &code);
  CHECK_EQ_INT(status, 404);
}

static int range(const char *h, uint64_t size, uint64_t *start, uint64_t *len) {
  *start = *len = 12345;
  return tern_media_parse_range(h, h ? strlen(h) : 0, size, start, len);
}

TEST(test_range) {
  uint64_t s, l;
  CHECK_EQ_INT(range("bytes=0-499", 1000, &s, &l), TERN_RANGE_OK);
  CHECK_EQ_INT(s, 0);
  CHECK_EQ_INT(l, 500);
  CHECK_EQ_INT(range("bytes=500-", 1000, &s, &l), TERN_RANGE_OK);
  CHECK_EQ_INT(s, 500);
  CHECK_EQ_INT(l, 500);
  CHECK_EQ_INT(range("bytes=-200", 1000, &s, &l), TERN_RANGE_OK);
  CHECK_EQ_INT(s, 800);
  CHECK_EQ_INT(l, 200);
  CHECK_EQ_INT(range("bytes=-2000", 1000, &s, &l), TERN_RANGE_OK);
  CHECK_EQ_INT(s, 0);
  CHECK_EQ_INT(l, 1000);
  CHECK_EQ_INT(range("bytes=900-2000", 1000, &s, &l), TERN_RANGE_OK);
  CHECK_EQ_INT(s, 900);
  CHECK_EQ_INT(l, 100);
  CHECK_EQ_INT(range("bytes=999-999", 1000, &s, &l), TERN_RANGE_OK);
  CHECK_EQ_INT(s, 999);
  CHECK_EQ_INT(l, 1);
  CHECK_EQ_INT(range(" BYTES=0-0 ", 1000, &s, &l), TERN_RANGE_OK);
  CHECK_EQ_INT(l, 1);
  /* unsatisfiable or malformed bytes ranges: 416 */
  CHECK_EQ_INT(range("bytes=1000-", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=1000-1001", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=5-4", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=abc", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=-", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=-0", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=0-0x", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=1-2-3", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=+1-2", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=99999999999999999999999-", 1000, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=0-", 0, &s, &l), TERN_RANGE_UNSATISFIABLE);
  CHECK_EQ_INT(range("bytes=-5", 0, &s, &l), TERN_RANGE_UNSATISFIABLE);
  /* several ranges, another unit, no header: whole body */
  CHECK_EQ_INT(range("bytes=0-1,5-6", 1000, &s, &l), TERN_RANGE_NONE);
  CHECK_EQ_INT(range("bytes=0-1, 5-", 1000, &s, &l), TERN_RANGE_NONE);
  CHECK_EQ_INT(range("items=0-5", 1000, &s, &l), TERN_RANGE_NONE);
  CHECK_EQ_INT(range("", 1000, &s, &l), TERN_RANGE_NONE);
  CHECK_EQ_INT(range(NULL, 1000, &s, &l), TERN_RANGE_NONE);
  /* the header length is honoured: no reading past n */
  CHECK_EQ_INT(tern_media_parse_range("bytes=0-4trailing", 9, 1000, &s, &l), TERN_RANGE_OK);
  CHECK_EQ_INT(l, 5);
}

static const char *ID = "abcdefghijklmnopqrstuvwx27";

static int path(const char *p, char *id, bool *thumb) { return tern_media_parse_path(p, strlen(p), id, thumb); }

TEST(test_ids_and_paths) {
  char id[TERN_MEDIA_ID_LEN + 1];
  bool thumb = true;
  char p[200];
  CHECK(tern_media_id_valid(ID, strlen(ID)));
  CHECK(!tern_media_id_valid("abcdefghijklmnopqrstuvwx28", 26)); /* 8 is not base32 */
  CHECK(!tern_media_id_valid("Abcdefghijklmnopqrstuvwx27", 26));
  CHECK(!tern_media_id_valid("abcdefghijklmnopqrstuvwx2", 25));
  CHECK(!tern_media_id_valid("abcdefghijklmnopqrstuvwx277", 27));
  CHECK(!tern_media_id_valid(NULL, 0));

  snprintf(p, sizeof p, "/v1/media/%s", ID);
  CHECK_EQ_INT(path(p, id, &thumb), 0);
  CHECK_EQ_STR(id, ID);
  CHECK(!thumb);
  snprintf(p, sizeof p, "/v1/media/%s/thumb", ID);
  CHECK_EQ_INT(path(p, id, &thumb), 0);
  CHECK(thumb);
  snprintf(p, sizeof p, "/v1/media/%s?download=1", ID);
  CHECK_EQ_INT(path(p, id, &thumb), 0);
  CHECK(!thumb);
  snprintf(p, sizeof p, "/v1/media/%s/thumb?x", ID);
  CHECK_EQ_INT(path(p, id, &thumb), 0);
  CHECK(thumb);

  const char *bad[] = {
      "/v1/media/../../etc/passwd",
      "/v1/media/..%2f..%2fetc%2fpasswd",
      "/v1/media/%2e%2e%2f%2e%2e%2fetc%2fpasswdxx",
      "/v1/media/abcdefghijklmnopqrstuvwx27/",
      "/v1/media/abcdefghijklmnopqrstuvwx27/thumbs",
      "/v1/media/abcdefghijklmnopqrstuvwx27/../abcdefghijklmnopqrstuvwx27",
      "/v1/media/abcdefghijklmnopqrstuvwx27/thumb/",
      "/v1/media/ABCDEFGHIJKLMNOPQRSTUVWX27",
      "/v1/media/abcdefghijklmnopqrstuvwx2",
      "/v1/media/abcdefghijklmnopqrstuvwx277",
      "/v1/media/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      "/v1/media//abcdefghijklmnopqrstuvwx27",
      "/v1/mediax/abcdefghijklmnopqrstuvwx27",
      "/v1/media/",
      "/v1/media",
      "",
  };
  for (size_t i = 0; i < TERN_ARRAY_LEN(bad); i++) {
    if (path(bad[i], id, &thumb) != TERN_MEDIA_ERR_NOT_FOUND) fprintf(stderr, "  accepted: %s\n", bad[i]);
    CHECK_EQ_INT(path(bad[i], id, &thumb), TERN_MEDIA_ERR_NOT_FOUND);
  }
  /* A NUL inside the id, with the length covering it. */
  char nul[64];
  int n = snprintf(nul, sizeof nul, "/v1/media/%s", ID);
  nul[15] = '\0';
  CHECK_EQ_INT(tern_media_parse_path(nul, (size_t)n, id, &thumb), TERN_MEDIA_ERR_NOT_FOUND);
  n = snprintf(nul, sizeof nul, "/v1/media/%s/thumb", ID);
  nul[n - 1] = '\0';
  CHECK_EQ_INT(tern_media_parse_path(nul, (size_t)n, id, &thumb), TERN_MEDIA_ERR_NOT_FOUND);
  CHECK_EQ_INT(tern_media_parse_path(NULL, 0, id, &thumb), TERN_MEDIA_ERR_NOT_FOUND);
}

TEST(test_etag) {
  char hex[65], etag[72], tetag[72];
  memset(hex, 'a', 64);
  hex[64] = '\0';
  hex[0] = '0';
  tern_media_etag(hex, false, etag);
  tern_media_etag(hex, true, tetag);
  char want[80];
  snprintf(want, sizeof want, "\"%s\"", hex);
  CHECK_EQ_STR(etag, want);
  snprintf(want, sizeof want, "\"%s-t\"", hex);
  CHECK_EQ_STR(tetag, want);
  char h[300];
  CHECK(tern_media_etag_match(etag, strlen(etag), etag));
  CHECK(!tern_media_etag_match(etag, strlen(etag), tetag));
  CHECK(!tern_media_etag_match(tetag, strlen(tetag), etag));
  snprintf(h, sizeof h, "\"x\", W/%s", etag);
  CHECK(tern_media_etag_match(h, strlen(h), etag));
  snprintf(h, sizeof h, "\"x\",%s", tetag);
  CHECK(tern_media_etag_match(h, strlen(h), tetag));
  CHECK(tern_media_etag_match("*", 1, etag));
  CHECK(!tern_media_etag_match("\"x\"", 3, etag));
  CHECK(!tern_media_etag_match("", 0, etag));
  CHECK(!tern_media_etag_match(hex, 64, etag)); /* unquoted: malformed */
  CHECK(!tern_media_etag_match("\"unterminated", 13, etag));
  CHECK(!tern_media_etag_match(NULL, 0, etag));
}

static tern_media_rec *sample_rec(void) {
  tern_media_rec *r = TERN_NEW(tern_media_rec);
  memcpy(r->id, ID, TERN_MEDIA_ID_LEN + 1);
  r->owner = tern_strdup("alice");
  r->type = TERN_MEDIA_WEBP;
  r->size = 5 * 1024 * 1024 + 17;
  r->thumb_size = 12345;
  for (int i = 0; i < 32; i++) r->sha256[i] = (uint8_t)(i * 7 + 1);
  tern_hex(r->sha256_hex, r->sha256, 32);
  r->width = 4000;
  r->height = 3000;
  r->created = 1700000000123;
  r->sent_at = 1700000005000;
  r->pending_devices = 3;
  r->ngrants = 2;
  r->grants = tern_calloc(2, sizeof(char *));
  r->grants[0] = tern_strdup("bob");
  r->grants[1] = tern_strdup("carol.x");
  r->nfetched = 1;
  r->fetched = tern_calloc(1, sizeof(char *));
  r->fetched[0] = tern_strdup("dev-0123456789");
  return r;
}

/* An opaque blob (PROTOCOL.md 11) has no dimensions and no thumbnail; an image must have both
 * dimensions. Its JSON has no width or height. */
TEST(test_record_octet) {
  tern_media_rec *r = sample_rec();
  r->type = TERN_MEDIA_OCTET;
  r->width = r->height = 0;
  r->thumb_size = 0;
  tern_buf b = {0};
  tern_media_rec_encode(r, &b);
  tern_media_rec *d = NULL;
  CHECK_EQ_INT(tern_media_rec_decode((const uint8_t *)b.data, b.len, &d), 0);
  CHECK(d && d->type == TERN_MEDIA_OCTET && d->width == 0 && d->thumb_size == 0);
  tern_buf j = {0};
  if (d) tern_media_rec_json(d, &j);
  CHECK(j.len && !strstr(tern_buf_cstr(&j), "width") && strstr(tern_buf_cstr(&j), "\"application/octet-stream\""));
  tern_media_rec_free(d);
  tern_buf_free(&j);
  tern_buf_free(&b);
  r->type = TERN_MEDIA_PNG; /* an image without dimensions is corrupt */
  tern_media_rec_encode(r, &b);
  d = NULL;
  CHECK_EQ_INT(tern_media_rec_decode((const uint8_t *)b.data, b.len, &d), TERN_MEDIA_ERR_INVALID);
  tern_buf_free(&b);
  CHECK_EQ_INT(tern_media_type_from_mime("Application/Octet-Stream; x=1", 29), TERN_MEDIA_OCTET);
  CHECK_EQ_STR(tern_media_type_mime(TERN_MEDIA_OCTET), "application/octet-stream");
  tern_media_rec_free(r);
}

TEST(test_record_codec) {
  tern_media_rec *r = sample_rec();
  tern_buf b = {0};
  tern_media_rec_encode(r, &b);
  tern_media_rec *d = NULL;
  CHECK_EQ_INT(tern_media_rec_decode((const uint8_t *)b.data, b.len, &d), 0);
  if (d) {
    CHECK_EQ_STR(d->id, r->id);
    CHECK_EQ_STR(d->owner, "alice");
    CHECK_EQ_INT(d->type, TERN_MEDIA_WEBP);
    CHECK_EQ_INT(d->size, r->size);
    CHECK_EQ_INT(d->thumb_size, 12345);
    CHECK_MEM(d->sha256, r->sha256, 32);
    CHECK_EQ_STR(d->sha256_hex, r->sha256_hex);
    CHECK_EQ_INT(d->width, 4000);
    CHECK_EQ_INT(d->height, 3000);
    CHECK_EQ_INT(d->created, r->created);
    CHECK_EQ_INT(d->sent_at, r->sent_at);
    CHECK_EQ_INT(d->pending_devices, 3);
    CHECK_EQ_INT(d->ngrants, 2);
    CHECK_EQ_STR(d->grants[1], "carol.x");
    CHECK_EQ_INT(d->nfetched, 1);
    CHECK_EQ_STR(d->fetched[0], "dev-0123456789");
    tern_buf b2 = {0};
    tern_media_rec_encode(d, &b2);
    CHECK_EQ_INT(b2.len, b.len);
    CHECK(b2.len == b.len && memcmp(b2.data, b.data, b.len) == 0);
    tern_buf_free(&b2);
    tern_media_rec_free(d);
  }
  /* every truncation, a trailing byte, another version: all refused, nothing leaked */
  for (size_t i = 0; i < b.len; i++) {
    d = NULL;
    CHECK_EQ_INT(tern_media_rec_decode((const uint8_t *)b.data, i, &d), TERN_MEDIA_ERR_INVALID);
    CHECK(d == NULL);
  }
  tern_buf_putc(&b, 0);
  CHECK_EQ_INT(tern_media_rec_decode((const uint8_t *)b.data, b.len, &d), TERN_MEDIA_ERR_INVALID);
  b.len--;
  b.data[0] = 2;
  CHECK_EQ_INT(tern_media_rec_decode((const uint8_t *)b.data, b.len, &d), TERN_MEDIA_ERR_INVALID);
  b.data[0] = 1;
  /* a huge grant count must be refused before anything is allocated for it */
  size_t off = 1 + 1 + 26 + 1 + 5 + 1 + 8 + 8 + 32 + 4 + 4 + 8 + 8 + 4;
  b.data[off] = (char)0xff;
  CHECK_EQ_INT(tern_media_rec_decode((const uint8_t *)b.data, b.len, &d), TERN_MEDIA_ERR_INVALID);
  b.data[off] = 0;
  /* a bad id, a bad type */
  b.data[2] = '.';
  CHECK_EQ_INT(tern_media_rec_decode((const uint8_t *)b.data, b.len, &d), TERN_MEDIA_ERR_INVALID);
  b.data[2] = ID[0];
  b.data[1 + 1 + 26 + 1 + 5] = 9;
  CHECK_EQ_INT(tern_media_rec_decode((const uint8_t *)b.data, b.len, &d), TERN_MEDIA_ERR_INVALID);
  tern_buf_free(&b);

  tern_buf j = {0};
  tern_media_rec_json(r, &j);
  char want[400];
  snprintf(want, sizeof want,
           "{\"media_id\":\"%s\",\"mime\":\"image/webp\",\"size\":5242897,\"sha256\":\"%s\",\"width\":4000,\"height\":3000}",
           ID, r->sha256_hex);
  CHECK_EQ_STR(tern_buf_cstr(&j), want);
  tern_buf_free(&j);
  tern_media_rec_free(r);
}

TEST(test_options_from_config) {
  tern_config cfg;
  tern_config_defaults(&cfg);
  tern_media_options o;
  tern_media_options_from_config(&o, &cfg);
  CHECK_EQ_STR(o.data_dir, "./data");
  CHECK_EQ_INT(o.max_bytes, 16 << 20);
  CHECK_EQ_INT(o.ttl_ms, 30ll * 86400000);
  CHECK_EQ_INT(o.unsent_ttl_ms, 86400000);
  CHECK_EQ_INT(o.max_dimension, 16384);
  CHECK_EQ_INT(o.max_pixels, 50000000);
  CHECK_EQ_INT(o.thumb_size, 320);
  CHECK_EQ_INT(o.upload_timeout_ms, 60000);
  CHECK_EQ_INT(o.quota_bytes_per_hour, 256 << 20);
  CHECK_EQ_INT(o.sweep_batch, 200);
  CHECK_EQ_INT(o.sweep_interval_ms, 60000);
  CHECK_EQ_INT(o.decode_jobs, 2);
  CHECK(o.persist.put == NULL && o.now_ms == NULL);
  tern_config_free(&cfg);
  for (int e = 0; e >= -10; e--) CHECK(tern_media_strerror(e) && *tern_media_strerror(e));
  int status;
  const char *code;
  tern_media_err_http(TERN_MEDIA_ERR_IO, &status, &code);
  CHECK_EQ_INT(status, 500);
  CHECK_EQ_STR(code, "internal");
  tern_media_err_http(TERN_MEDIA_ERR_TIMEOUT, &status, &code);
  CHECK_EQ_INT(status, 408);
}

/* Cluster mode (tern_media_rec_merge): another node's record wins for grants (a revocation
 * there removes one here), pending_devices, sent_at and the avatar state; fetched devices are
 * the union, and a fetch only this node counted makes the merge report that it is ahead. */
TEST(test_record_merge) {
  tern_media_rec *local = sample_rec(); /* grants bob, carol.x; fetched dev-0123456789; pending 3 */
  tern_media_rec *remote = sample_rec();
  /* remote: carol.x revoked, dave granted (2 more devices), another device fetched */
  tern_free(remote->grants[1]);
  remote->grants[1] = tern_strdup("dave");
  remote->pending_devices = 5;
  tern_free(remote->fetched[0]);
  remote->fetched[0] = tern_strdup("dev-remote");
  remote->sent_at = 1700000009000;
  CHECK(tern_media_rec_merge(local, remote)); /* dev-0123456789 was only counted here */
  CHECK_EQ_INT(local->ngrants, 2);
  CHECK(local->ngrants == 2 && !strcmp(local->grants[0], "bob") && !strcmp(local->grants[1], "dave"));
  CHECK(!tern_media_can_read(local, "carol.x"));
  CHECK(tern_media_can_read(local, "dave") && tern_media_can_read(local, "alice"));
  CHECK_EQ_INT(local->pending_devices, 5);
  CHECK_EQ_INT(local->sent_at, 1700000009000);
  CHECK_EQ_INT(local->nfetched, 2);
  CHECK(local->nfetched == 2 && !strcmp(local->fetched[0], "dev-remote") && !strcmp(local->fetched[1], "dev-0123456789"));
  /* merging the same record again: nothing new here, so not ahead, and nothing doubles */
  tern_free(remote->fetched[0]);
  remote->nfetched = 0;
  remote->fetched[0] = NULL;
  tern_media_rec *again = sample_rec();
  tern_buf b = {0};
  tern_media_rec_encode(local, &b);
  tern_media_rec_free(again);
  CHECK_EQ_INT(tern_media_rec_decode((const uint8_t *)b.data, b.len, &again), 0);
  CHECK(!tern_media_rec_merge(local, again));
  CHECK_EQ_INT(local->nfetched, 2);
  /* a record revoked down to nobody and sent_at 0 from the other side keeps sent_at here
   * (a media once sent stays under media.ttl), and the grants go */
  for (uint32_t i = 0; i < remote->ngrants; i++) tern_free(remote->grants[i]);
  remote->ngrants = 0;
  remote->sent_at = 0;
  remote->avatar = true;
  remote->avatar_off = 42;
  tern_media_rec_merge(local, remote);
  CHECK_EQ_INT(local->ngrants, 0);
  CHECK(!tern_media_can_read(local, "bob"));
  CHECK_EQ_INT(local->sent_at, 1700000009000);
  CHECK(local->avatar && local->avatar_off == 42);
  tern_buf_free(&b);
  tern_media_rec_free(again);
  tern_media_rec_free(local);
  tern_media_rec_free(remote);
}

int main(void) {
  RUN(test_sniff_types);
  RUN(test_sniff_partial_and_bad);
  RUN(test_sniff_sticky);
  RUN(test_dims_and_mime);
  RUN(test_range);
  RUN(test_ids_and_paths);
  RUN(test_etag);
  RUN(test_record_codec);
  RUN(test_record_octet);
  RUN(test_record_merge);
  RUN(test_options_from_config);
  DONE();
}
