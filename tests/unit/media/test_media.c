/* Unit tests for src/media with a real libuv loop and a temp data dir: every type accepted,
 * thumbnails, type mismatch, truncated and corrupt files, decompression bombs, size limit,
 * timeouts, back-pressure, content dedup, grants and fetch counting, TTL sweeps, quotas,
 * serving opens and restart consistency. Test images are made with libvips at run time.
 * The last test prints thumbnail time and sink throughput (never asserted; TERN_MEDIA_BENCH=N
 * repeats it N times).
 *
 * ---- helpers: test images, an upload driver honouring back-pressure, an in-memory stand-in
 * for the core's persistence, file checks. */

#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <vips/vips.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/map.h"
#include "base/util.h"
#include "media/media.h"
#include "t.h"

static uv_loop_t *g_loop;
static int64_t g_fake_now = 1700000000000;
static int64_t fake_clock(void) { return g_fake_now; }

/* ---- the core's store, as far as media care: id -> encoded record ---------------------------- */
typedef struct fake_store {
  tern_map recs; /* id -> tern_buf* */
  int puts;      /* persist.put calls */
  int dels;      /* persist.del calls */
} fake_store;

static void fs_put(const tern_media_rec *r, void *arg) {
  fake_store *s = arg;
  tern_buf *b = tern_map_get(&s->recs, r->id, strlen(r->id));
  if (!b) {
    b = TERN_NEW(tern_buf);
    tern_map_put(&s->recs, r->id, strlen(r->id), b);
  }
  tern_buf_reset(b);
  tern_media_rec_encode(r, b);
  s->puts++;
}

static void fs_del(const char *id, void *arg) {
  fake_store *s = arg;
  tern_buf *b = tern_map_del(&s->recs, id, strlen(id));
  if (b) {
    tern_buf_free(b);
    tern_free(b);
  }
  s->dels++;
}

static bool fs_free_cb(const char *k, size_t kl, void *v, void *arg) {
  (void)k, (void)kl, (void)arg;
  tern_buf_free(v);
  tern_free(v);
  return true;
}

static void fs_free(fake_store *s) {
  tern_map_each(&s->recs, fs_free_cb, NULL);
  tern_map_free(&s->recs);
  memset(s, 0, sizeof *s);
}

typedef struct load_ctx {
  tern_media *m; /* store being loaded */
  int loaded;    /* records accepted */
} load_ctx;

static bool fs_load_cb(const char *k, size_t kl, void *v, void *arg) {
  (void)k, (void)kl;
  load_ctx *l = arg;
  tern_buf *b = v;
  if (tern_media_load_record(l->m, (const uint8_t *)b->data, b->len) == 0) l->loaded++;
  return true;
}

/* ---- data dirs -------------------------------------------------------------------------------- */
static char *make_data_dir(void) {
  char t[] = "/tmp/tern-media-test-XXXXXX";
  if (!mkdtemp(t)) {
    perror("mkdtemp");
    exit(2);
  }
  return tern_strdup(t);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(p);
}

static void remove_data_dir(char *dir) {
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  tern_free(dir);
}

static tern_media_options default_options(const char *dir, fake_store *store) {
  tern_media_options o;
  memset(&o, 0, sizeof o);
  o.data_dir = dir;
  o.max_bytes = 16ll << 20;
  o.ttl_ms = 30ll * 86400000;
  o.unsent_ttl_ms = 86400000;
  o.max_dimension = 16384;
  o.max_pixels = 50000000;
  o.thumb_size = 320;
  o.upload_timeout_ms = 60000;
  o.quota_bytes_per_hour = 256ll << 20;
  o.sweep_batch = 200;
  o.sweep_interval_ms = 60000;
  o.decode_jobs = 2;
  if (store) {
    o.persist.put = fs_put;
    o.persist.del = fs_del;
    o.persist.arg = store;
  }
  return o;
}

static tern_media *open_media(const tern_media_options *o) {
  tern_media *m = NULL;
  char err[256];
  if (tern_media_open(g_loop, o, &m, err, sizeof err) != 0) {
    fprintf(stderr, "tern_media_open: %s\n", err);
    exit(2);
  }
  return m;
}

static void close_media(tern_media *m) {
  tern_media_close(m);
  uv_run(g_loop, UV_RUN_DEFAULT);
}

/* Lets every queued threadpool job (unlinks, cleanups) finish. */
static void settle(void) { uv_run(g_loop, UV_RUN_DEFAULT); }

/* ---- files -------------------------------------------------------------------------------------- */
static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) n += count_files(p);
    else n++;
  }
  closedir(d);
  return n;
}

static int tmp_files(const char *dir) {
  char p[4096];
  snprintf(p, sizeof p, "%s/media/tmp", dir);
  return count_files(p);
}

static int object_files(const char *dir) {
  char p[4096];
  snprintf(p, sizeof p, "%s/media/objects", dir);
  return count_files(p);
}

static void object_path(const char *dir, const char *hex, bool thumb, char *out, size_t n) {
  snprintf(out, n, "%s/media/objects/%.2s/%s%s", dir, hex, hex, thumb ? ".thumb.jpg" : "");
}

static bool exists(const char *p) { return access(p, F_OK) == 0; }

static void *read_file(const char *p, size_t *len) {
  FILE *f = fopen(p, "rb");
  if (!f) return NULL;
  tern_buf b = {0};
  char chunk[65536];
  size_t k;
  while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) tern_buf_append(&b, chunk, k);
  fclose(f);
  return tern_buf_steal(&b, len);
}

static void sha256_hex(const void *d, size_t n, char out[65]) {
  uint8_t md[32];
  unsigned ml = 0;
  EVP_Digest(d, n, md, &ml, EVP_sha256(), NULL);
  tern_hex(out, md, 32);
}

/* ---- images ------------------------------------------------------------------------------------- */
/* A w x h image with `bands` bands (1 grey, 3 sRGB, 4 sRGB + alpha). smooth: blurred noise that
 * compresses like a photo; otherwise raw noise (incompressible). Saved as type; the bytes are
 * the caller's (tern_free). depth16: a 16-bit PNG. orientation: EXIF orientation tag (JPEG). */
typedef struct img_spec {
  tern_media_type type;
  int w, h, bands;
  bool smooth, depth16;
  int orientation;
  int quality; /* JPEG/WebP Q; 0 = default */
  int grain;   /* smooth: noise cell size in px (0 = 16); smaller is busier, larger files */
} img_spec;

static void *make_image(img_spec s, size_t *len) {
  VipsImage *base = NULL;
  int g = s.grain ? s.grain : 16;
  int bw = s.smooth ? (s.w + g - 1) / g : s.w, bh = s.smooth ? (s.h + g - 1) / g : s.h;
  VipsImage *noise[4] = {0};
  for (int b = 0; b < s.bands; b++) {
    VipsImage *n = NULL;
    if (vips_gaussnoise(&n, bw, bh, "mean", 128.0, "sigma", b == 3 ? 60.0 : 40.0, NULL)) goto fail;
    noise[b] = n;
  }
  VipsImage *joined = NULL;
  if (vips_bandjoin(noise, &joined, s.bands, NULL)) goto fail;
  for (int b = 0; b < s.bands; b++) g_object_unref(noise[b]);
  VipsImage *scaled = joined;
  if (s.smooth) {
    if (vips_resize(joined, &scaled, (double)s.w / bw, "vscale", (double)s.h / bh, NULL)) goto fail;
    g_object_unref(joined);
  }
  VipsImage *cast = NULL;
  if (vips_cast(scaled, &cast, s.depth16 ? VIPS_FORMAT_USHORT : VIPS_FORMAT_UCHAR, NULL)) goto fail;
  g_object_unref(scaled);
  if (s.depth16) {
    VipsImage *shifted = NULL;
    if (vips_linear1(cast, &shifted, 256.0, 0.0, "uchar", FALSE, NULL)) goto fail;
    g_object_unref(cast);
    if (vips_cast(shifted, &cast, VIPS_FORMAT_USHORT, NULL)) goto fail;
    g_object_unref(shifted);
  }
  VipsInterpretation interp = s.bands >= 3 ? (s.depth16 ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB)
                                           : (s.depth16 ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_B_W);
  if (vips_copy(cast, &base, "interpretation", interp, "xres", 2.835, "yres", 2.835, NULL)) goto fail;
  g_object_unref(cast);
  if (s.orientation) vips_image_set_int(base, VIPS_META_ORIENTATION, s.orientation);
  void *buf = NULL;
  size_t n = 0;
  int rc = -1, q = s.quality ? s.quality : 85;
  switch (s.type) {
    case TERN_MEDIA_JPEG: rc = vips_jpegsave_buffer(base, &buf, &n, "Q", q, NULL); break;
    case TERN_MEDIA_PNG: rc = vips_pngsave_buffer(base, &buf, &n, "compression", 1, NULL); break;
    case TERN_MEDIA_WEBP: rc = vips_webpsave_buffer(base, &buf, &n, "Q", q, NULL); break;
    case TERN_MEDIA_GIF: rc = vips_gifsave_buffer(base, &buf, &n, NULL); break;
    default: break;
  }
  g_object_unref(base);
  if (rc) goto fail;
  void *out = tern_memdup(buf, n);
  g_free(buf);
  *len = n;
  return out;
fail:
  fprintf(stderr, "make_image: %s\n", vips_error_buffer());
  exit(2);
}

/* Width and height of an image file as libvips reads it (for thumbnails). */
static bool image_dims(const char *path, int *w, int *h) {
  VipsImage *im = vips_image_new_from_file(path, NULL);
  if (!im) {
    vips_error_clear();
    return false;
  }
  *w = im->Xsize;
  *h = im->Ysize;
  g_object_unref(im);
  return true;
}

/* ---- the upload driver ------------------------------------------------------------------------ */
typedef struct upres {
  bool done;      /* cbs.done ran */
  bool paused;    /* waiting for resume */
  int pauses;     /* PAUSE answers seen */
  int err;        /* the upload's outcome */
  bool dup;       /* stored bytes were reused */
  char id[TERN_MEDIA_ID_LEN + 1];
  char sha[65];
  uint32_t w, h;
  int64_t size;
} upres;

static void up_resume(tern_media_upload *up, void *arg) {
  (void)up;
  ((upres *)arg)->paused = false;
}

static void up_done(tern_media_upload *up, const tern_media_result *res, void *arg) {
  (void)up;
  upres *r = arg;
  r->done = true;
  r->err = res->err;
  if (res->err == 0) {
    memcpy(r->id, res->rec->id, sizeof r->id);
    memcpy(r->sha, res->rec->sha256_hex, sizeof r->sha);
    r->w = res->rec->width;
    r->h = res->rec->height;
    r->size = res->rec->size;
    r->dup = res->duplicate;
  }
}

/* Starts an upload and writes data in chunks, honouring PAUSE (the loop runs until resume).
 * Returns the sink's synchronous error, or 0 with *upo set after the last write. */
static int upload_begin(tern_media *m, const char *user, const char *mime, const void *data, size_t len, size_t chunk,
                        int64_t clen, upres *r, tern_media_upload **upo) {
  memset(r, 0, sizeof *r);
  tern_media_upload_cbs cbs = {up_resume, up_done, r};
  tern_media_upload *up = NULL;
  int64_t retry = 0;
  int rc = tern_media_upload_start(m, user, mime, strlen(mime), clen, &cbs, &up, &retry);
  if (rc) return rc;
  for (size_t off = 0; off < len;) {
    size_t n = len - off < chunk ? len - off : chunk;
    rc = tern_media_upload_write(up, (const char *)data + off, n);
    off += n;
    if (tern_media_failed(rc)) return rc;
    if (rc == TERN_MEDIA_PAUSE) {
      r->pauses++;
      r->paused = true;
      while (r->paused && !r->done) uv_run(g_loop, UV_RUN_ONCE);
      if (r->done) return r->err;
    }
  }
  *upo = up;
  return 0;
}

/* The whole upload: write, finish, wait for the result. */
static int upload(tern_media *m, const char *user, const char *mime, const void *data, size_t len, upres *r) {
  tern_media_upload *up = NULL;
  int rc = upload_begin(m, user, mime, data, len, 64 * 1024, (int64_t)len, r, &up);
  if (rc) return rc;
  rc = tern_media_upload_finish(up);
  if (rc) return rc;
  while (!r->done) uv_run(g_loop, UV_RUN_ONCE);
  return r->err;
}

static void test_init(void) {
  tern_log_set_level(TERN_LOG_WARN);
  if (VIPS_INIT("test_media")) exit(2);
  g_loop = uv_default_loop();
}


/* ---- tests ---------------------------------------------------------------------------------------- */

typedef struct type_case {
  const char *mime;   /* declared */
  img_spec spec;      /* what to make */
  int thumb_w, thumb_h; /* expected thumbnail */
} type_case;

TEST(test_each_type) {
  char *dir = make_data_dir();
  fake_store st = {0};
  tern_media_options o = default_options(dir, &st);
  tern_media *m = open_media(&o);
  const type_case cases[] = {
      {"image/jpeg", {TERN_MEDIA_JPEG, 640, 480, 3, true, false, 0, 0, 0}, 320, 240},
      {"image/png", {TERN_MEDIA_PNG, 300, 200, 4, true, false, 0, 0, 0}, 300, 200}, /* alpha, never upscaled */
      {"image/webp", {TERN_MEDIA_WEBP, 500, 400, 3, true, false, 0, 0, 0}, 320, 256},
      {"image/gif", {TERN_MEDIA_GIF, 120, 90, 3, false, false, 0, 0, 0}, 120, 90},
      {"image/png", {TERN_MEDIA_PNG, 1000, 50, 3, true, true, 0, 0, 0}, 320, 16},   /* 16-bit */
      {"image/jpeg", {TERN_MEDIA_JPEG, 50, 700, 1, true, false, 0, 0, 0}, 23, 320}, /* grey, tall */
      {"IMAGE/JPEG; foo=bar", {TERN_MEDIA_JPEG, 200, 100, 3, true, false, 6, 0, 0}, 100, 200}, /* EXIF: rotated */
  };
  int64_t bytes = 0;
  for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
    const type_case *c = &cases[i];
    size_t len;
    void *img = make_image(c->spec, &len);
    upres r;
    int rc = upload(m, "alice", c->mime, img, len, &r);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
      fprintf(stderr, "  case %zu (%s) failed: %s\n", i, c->mime, tern_media_strerror(rc));
      tern_free(img);
      continue;
    }
    bool swapped = c->spec.orientation >= 5;
    CHECK_EQ_INT(r.w, swapped ? c->spec.h : c->spec.w);
    CHECK_EQ_INT(r.h, swapped ? c->spec.w : c->spec.h);
    CHECK_EQ_INT(r.size, len);
    CHECK(!r.dup);
    char want[65];
    sha256_hex(img, len, want);
    CHECK_EQ_STR(r.sha, want);
    CHECK(tern_media_id_valid(r.id, strlen(r.id)));
    CHECK(strncmp(r.id, r.sha, 8) != 0);
    const tern_media_rec *rec = tern_media_get(m, r.id);
    CHECK(rec != NULL);
    if (rec) {
      CHECK_EQ_INT(rec->type, c->spec.type);
      CHECK_EQ_STR(rec->owner, "alice");
      CHECK_EQ_INT(rec->sent_at, 0);
      bytes += rec->size + rec->thumb_size;
    }
    /* The original is stored byte for byte under its hash, the thumbnail beside it. */
    char p[4096];
    object_path(dir, r.sha, false, p, sizeof p);
    size_t sl = 0;
    void *stored = read_file(p, &sl);
    CHECK(stored && sl == len && memcmp(stored, img, len) == 0);
    tern_free(stored);
    object_path(dir, r.sha, true, p, sizeof p);
    int tw = 0, th = 0;
    CHECK(image_dims(p, &tw, &th));
    CHECK(tw <= 320 && th <= 320);
    if (tw != c->thumb_w || th != c->thumb_h)
      fprintf(stderr, "  case %zu: thumb %dx%d, want %dx%d\n", i, tw, th, c->thumb_w, c->thumb_h);
    CHECK_EQ_INT(tw, c->thumb_w);
    CHECK_EQ_INT(th, c->thumb_h);
    size_t tl = 0;
    uint8_t *tb = read_file(p, &tl);
    CHECK(tb && tl > 3 && tb[0] == 0xff && tb[1] == 0xd8 && tb[2] == 0xff);
    if (rec) CHECK_EQ_INT(rec->thumb_size, tl);
    tern_free(tb);
    tern_free(img);
  }
  CHECK_EQ_INT(tern_media_count(m), TERN_ARRAY_LEN(cases));
  CHECK_EQ_INT(st.puts, TERN_ARRAY_LEN(cases));
  CHECK_EQ_INT(tern_media_bytes(m), bytes);
  CHECK_EQ_INT(tmp_files(dir), 0);
  CHECK_EQ_INT(object_files(dir), 2 * (int)TERN_ARRAY_LEN(cases));
  close_media(m);
  fs_free(&st);
  remove_data_dir(dir);
}

TEST(test_type_mismatch_and_unknown) {
  char *dir = make_data_dir();
  tern_media_options o = default_options(dir, NULL);
  tern_media *m = open_media(&o);
  size_t pl, jl;
  void *png = make_image((img_spec){TERN_MEDIA_PNG, 64, 64, 3, true, false, 0, 0, 0}, &pl);
  void *jpg = make_image((img_spec){TERN_MEDIA_JPEG, 64, 64, 3, true, false, 0, 0, 0}, &jl);
  upres r;
  /* Refused on the first chunk, from the magic number, before the body is read. */
  CHECK_EQ_INT(upload(m, "alice", "image/jpeg", png, pl, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  CHECK_EQ_INT(upload(m, "alice", "image/webp", jpg, jl, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  CHECK_EQ_INT(upload(m, "alice", "image/gif", png, pl, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  CHECK_EQ_INT(upload(m, "alice", "image/bmp", png, pl, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  CHECK_EQ_INT(upload(m, "alice", "text/plain", png, pl, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  CHECK_EQ_INT(upload(m, "alice", "image/png", "GIF89a", 6, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  CHECK_EQ_INT(upload(m, "alice", "image/png", "", 0, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  CHECK(!r.done);
  settle();
  CHECK_EQ_INT(tmp_files(dir), 0);
  CHECK_EQ_INT(object_files(dir), 0);
  CHECK_EQ_INT(tern_media_count(m), 0);
  tern_free(png);
  tern_free(jpg);
  close_media(m);
  remove_data_dir(dir);
}

/* Finds a JPEG marker; returns its offset or 0. */
static size_t find_marker(const uint8_t *d, size_t n, uint8_t code) {
  for (size_t i = 2; i + 1 < n; i++)
    if (d[i] == 0xff && d[i + 1] == code) return i;
  return 0;
}

TEST(test_truncated_and_corrupt) {
  char *dir = make_data_dir();
  tern_media_options o = default_options(dir, NULL);
  tern_media *m = open_media(&o);
  const struct {
    const char *mime;
    img_spec spec;
  } cases[] = {
      {"image/jpeg", {TERN_MEDIA_JPEG, 400, 300, 3, false, false, 0, 0, 0}},
      {"image/png", {TERN_MEDIA_PNG, 400, 300, 3, false, false, 0, 0, 0}},
      {"image/webp", {TERN_MEDIA_WEBP, 400, 300, 3, false, false, 0, 0, 0}},
      {"image/gif", {TERN_MEDIA_GIF, 400, 300, 3, false, false, 0, 0, 0}},
  };
  upres r;
  for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
    size_t len;
    uint8_t *img = make_image(cases[i].spec, &len);
    /* cut in the middle of the pixel data: the header passes, the decoder must refuse */
    int rc = upload(m, "alice", cases[i].mime, img, len * 6 / 10, &r);
    if (rc != TERN_MEDIA_ERR_UNSUPPORTED) fprintf(stderr, "  truncated %s: %d\n", cases[i].mime, rc);
    CHECK_EQ_INT(rc, TERN_MEDIA_ERR_UNSUPPORTED);
    CHECK(r.done); /* refused by libvips, in the threadpool */
    /* cut inside the header: refused at finish, before any decoding */
    CHECK_EQ_INT(upload(m, "alice", cases[i].mime, img, 7, &r), TERN_MEDIA_ERR_UNSUPPORTED);
    CHECK(!r.done);
    tern_free(img);
  }
  /* PNG with damaged pixel data (CRC mismatch in IDAT) */
  size_t len;
  uint8_t *png = make_image((img_spec){TERN_MEDIA_PNG, 200, 200, 3, false, false, 0, 0, 0}, &len);
  for (size_t i = len / 2; i < len / 2 + 64; i++) png[i] ^= 0x5a;
  CHECK_EQ_INT(upload(m, "alice", "image/png", png, len, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  tern_free(png);
  /* JPEG with a bogus Huffman table */
  uint8_t *jpg = make_image((img_spec){TERN_MEDIA_JPEG, 200, 200, 3, false, false, 0, 0, 0}, &len);
  size_t dht = find_marker(jpg, len, 0xc4);
  CHECK(dht > 0);
  for (size_t i = dht + 5; i < dht + 21; i++) jpg[i] = 0xff;
  CHECK_EQ_INT(upload(m, "alice", "image/jpeg", jpg, len, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  /* a valid JPEG header followed by noise */
  size_t sos = find_marker(jpg, len, 0xc0);
  for (size_t i = sos + 19; i < len; i++) jpg[i] = (uint8_t)(i * 131 + 7);
  CHECK_EQ_INT(upload(m, "alice", "image/jpeg", jpg, len, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  tern_free(jpg);
  /* WebP: valid RIFF/VP8 header, then garbage */
  uint8_t *webp = make_image((img_spec){TERN_MEDIA_WEBP, 200, 200, 3, false, false, 0, 0, 0}, &len);
  for (size_t i = 30; i < len; i++) webp[i] = (uint8_t)(i * 17);
  CHECK_EQ_INT(upload(m, "alice", "image/webp", webp, len, &r), TERN_MEDIA_ERR_UNSUPPORTED);
  tern_free(webp);
  settle();
  CHECK_EQ_INT(tmp_files(dir), 0);
  CHECK_EQ_INT(object_files(dir), 0);
  CHECK_EQ_INT(tern_media_count(m), 0);
  CHECK_EQ_INT(tern_media_bytes(m), 0);
  close_media(m);
  remove_data_dir(dir);
}

static uint32_t crc32_png(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

TEST(test_bomb) {
  char *dir = make_data_dir();
  tern_media_options o = default_options(dir, NULL);
  tern_media *m = open_media(&o);
  /* A tiny, valid PNG start declaring 100000 x 100000 (10 Gpx): refused on the header. */
  uint8_t bomb[4096];
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  memcpy(bomb, sig, 8);
  put_be32(bomb + 8, 13);
  memcpy(bomb + 12, "IHDR", 4);
  put_be32(bomb + 16, 100000);
  put_be32(bomb + 20, 100000);
  bomb[24] = 8;
  bomb[25] = 2;
  bomb[26] = bomb[27] = bomb[28] = 0;
  put_be32(bomb + 29, crc32_png(bomb + 12, 17));
  memset(bomb + 33, 0, sizeof bomb - 33); /* stands in for a highly compressed IDAT */
  upres r;
  CHECK_EQ_INT(upload(m, "alice", "image/png", bomb, sizeof bomb, &r), TERN_MEDIA_ERR_DIMENSIONS);
  CHECK(!r.done);
  int status;
  tern_media_err_http(TERN_MEDIA_ERR_DIMENSIONS, &status, NULL);
  CHECK_EQ_INT(status, 413);
  /* Same for a real GIF whose screen is wider than max_dimension, and for area. */
  uint8_t gif[13] = {'G', 'I', 'F', '8', '9', 'a', 0x01, 0x48, 0x01, 0x00, 0, 0, 0}; /* 18433 x 1 */
  CHECK_EQ_INT(upload(m, "alice", "image/gif", gif, sizeof gif, &r), TERN_MEDIA_ERR_DIMENSIONS);
  close_media(m);
  /* With the limits shrunk (as a test config would), real images over them are refused. */
  o.max_dimension = 150;
  o.max_pixels = 10000;
  m = open_media(&o);
  size_t len;
  void *wide = make_image((img_spec){TERN_MEDIA_JPEG, 200, 20, 3, true, false, 0, 0, 0}, &len);
  CHECK_EQ_INT(upload(m, "alice", "image/jpeg", wide, len, &r), TERN_MEDIA_ERR_DIMENSIONS);
  tern_free(wide);
  void *area = make_image((img_spec){TERN_MEDIA_WEBP, 120, 120, 3, true, false, 0, 0, 0}, &len);
  CHECK_EQ_INT(upload(m, "alice", "image/webp", area, len, &r), TERN_MEDIA_ERR_DIMENSIONS);
  tern_free(area);
  void *ok = make_image((img_spec){TERN_MEDIA_PNG, 100, 100, 3, true, false, 0, 0, 0}, &len);
  CHECK_EQ_INT(upload(m, "alice", "image/png", ok, len, &r), 0);
  tern_free(ok);
  settle();
  CHECK_EQ_INT(tmp_files(dir), 0);
  CHECK_EQ_INT(object_files(dir), 2);
  close_media(m);
  remove_data_dir(dir);
}

TEST(test_too_large) {
  char *dir = make_data_dir();
  tern_media_options o = default_options(dir, NULL);
  tern_media *m = open_media(&o);
  size_t hl;
  uint8_t *head = make_image((img_spec){TERN_MEDIA_JPEG, 64, 64, 3, true, false, 0, 0, 0}, &hl);
  size_t big = (16u << 20) + 1;
  uint8_t *body = tern_calloc(1, big);
  memcpy(body, head, hl);
  tern_free(head);
  upres r;
  tern_media_upload *up = NULL;
  /* Declared too large: refused before any byte of the body. */
  CHECK_EQ_INT(upload_begin(m, "alice", "image/jpeg", body, 0, 65536, (int64_t)big, &r, &up),
               TERN_MEDIA_ERR_TOO_LARGE);
  /* Chunked (no length): refused at the chunk that passes the limit. */
  int rc = upload_begin(m, "alice", "image/jpeg", body, big, 65536, -1, &r, &up);
  CHECK_EQ_INT(rc, TERN_MEDIA_ERR_TOO_LARGE);
  CHECK(r.pauses > 0); /* the sink pushed back while the disk caught up */
  settle();
  CHECK_EQ_INT(tmp_files(dir), 0);
  /* Exactly the limit is accepted (decoders ignore what follows a JPEG's end of image). */
  rc = upload_begin(m, "alice", "image/jpeg", body, big - 1, 1 << 20, -1, &r, &up);
  CHECK_EQ_INT(rc, 0);
  if (rc == 0) {
    CHECK_EQ_INT(tern_media_upload_finish(up), 0);
    while (!r.done) uv_run(g_loop, UV_RUN_ONCE);
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(r.size, 16 << 20);
  }
  settle();
  CHECK_EQ_INT(tmp_files(dir), 0);
  CHECK_EQ_INT(object_files(dir), 2);
  tern_free(body);
  close_media(m);
  remove_data_dir(dir);
}

TEST(test_timeout_and_abort) {
  char *dir = make_data_dir();
  tern_media_options o = default_options(dir, NULL);
  o.upload_timeout_ms = 100;
  tern_media *m = open_media(&o);
  size_t len;
  void *img = make_image((img_spec){TERN_MEDIA_PNG, 300, 300, 3, false, false, 0, 0, 0}, &len);
  upres r;
  tern_media_upload *up = NULL;
  /* A client that sends a little and then nothing: the sink gives up and removes the file. */
  CHECK_EQ_INT(upload_begin(m, "alice", "image/png", img, 1000, 1000, (int64_t)len, &r, &up), 0);
  uint64_t t0 = uv_now(g_loop);
  while (!r.done) uv_run(g_loop, UV_RUN_ONCE);
  CHECK_EQ_INT(r.err, TERN_MEDIA_ERR_TIMEOUT);
  CHECK(uv_now(g_loop) - t0 >= 90);
  settle();
  CHECK_EQ_INT(tmp_files(dir), 0);
  /* The client goes away mid-body: abort, no callback, no file. */
  CHECK_EQ_INT(upload_begin(m, "alice", "image/png", img, len / 2, 4096, (int64_t)len, &r, &up), 0);
  tern_media_upload_abort(up);
  settle();
  CHECK(!r.done);
  CHECK_EQ_INT(tmp_files(dir), 0);
  /* Aborted while libvips works on it: the result is dropped along with its files. */
  CHECK_EQ_INT(upload_begin(m, "alice", "image/png", img, len, 65536, (int64_t)len, &r, &up), 0);
  CHECK_EQ_INT(tern_media_upload_finish(up), 0);
  tern_media_upload_abort(up);
  settle();
  CHECK(!r.done);
  CHECK_EQ_INT(tmp_files(dir), 0);
  CHECK_EQ_INT(object_files(dir), 0);
  CHECK_EQ_INT(tern_media_count(m), 0);
  CHECK_EQ_INT(tern_media_bytes(m), 0);
  /* Close with an upload in progress: aborted, cleaned up, store freed. */
  CHECK_EQ_INT(upload_begin(m, "alice", "image/png", img, len / 2, 4096, (int64_t)len, &r, &up), 0);
  close_media(m);
  CHECK(!r.done);
  CHECK_EQ_INT(tmp_files(dir), 0);
  tern_free(img);
  remove_data_dir(dir);
}

TEST(test_dedup) {
  char *dir = make_data_dir();
  fake_store st = {0};
  tern_media_options o = default_options(dir, &st);
  tern_media *m = open_media(&o);
  size_t len;
  void *img = make_image((img_spec){TERN_MEDIA_PNG, 200, 150, 3, true, false, 0, 0, 0}, &len);
  upres a, b;
  CHECK_EQ_INT(upload(m, "alice", "image/png", img, len, &a), 0);
  int64_t bytes = tern_media_bytes(m);
  CHECK(bytes > (int64_t)len);
  CHECK_EQ_INT(upload(m, "bob", "image/png", img, len, &b), 0);
  CHECK(b.dup);
  CHECK(strcmp(a.id, b.id) != 0); /* two media ids ... */
  CHECK_EQ_STR(a.sha, b.sha);     /* ... one content */
  CHECK_EQ_INT(b.w, 200);
  CHECK_EQ_INT(b.h, 150);
  CHECK_EQ_INT(object_files(dir), 2);
  CHECK_EQ_INT(tern_media_bytes(m), bytes);
  CHECK(!tern_media_can_read(tern_media_get(m, a.id), "bob"));
  CHECK(tern_media_can_read(tern_media_get(m, b.id), "bob"));
  /* Two uploads of new identical bytes in flight at once: both succeed, stored once. */
  size_t len2;
  void *img2 = make_image((img_spec){TERN_MEDIA_JPEG, 300, 100, 3, true, false, 0, 0, 0}, &len2);
  upres c, d;
  tern_media_upload *uc = NULL, *ud = NULL;
  CHECK_EQ_INT(upload_begin(m, "carol", "image/jpeg", img2, len2, 4096, -1, &c, &uc), 0);
  CHECK_EQ_INT(upload_begin(m, "dave", "image/jpeg", img2, len2, 4096, -1, &d, &ud), 0);
  CHECK_EQ_INT(tern_media_upload_finish(uc), 0);
  CHECK_EQ_INT(tern_media_upload_finish(ud), 0);
  while (!c.done || !d.done) uv_run(g_loop, UV_RUN_ONCE);
  CHECK_EQ_INT(c.err, 0);
  CHECK_EQ_INT(d.err, 0);
  CHECK_EQ_STR(c.sha, d.sha);
  CHECK_EQ_INT(object_files(dir), 4);
  char p[4096], p2[4096];
  object_path(dir, a.sha, false, p, sizeof p);
  /* The object stays while any record refers to it. */
  CHECK_EQ_INT(tern_media_delete(m, a.id), 0);
  settle();
  CHECK(exists(p));
  CHECK_EQ_INT(tern_media_delete(m, b.id), 0);
  settle();
  CHECK(!exists(p));
  CHECK_EQ_INT(object_files(dir), 2);
  /* Deleted and uploaded again at once: the new upload waits for the unlink, then stores. */
  CHECK_EQ_INT(tern_media_delete(m, c.id), 0);
  CHECK_EQ_INT(tern_media_delete(m, d.id), 0);
  upres e;
  CHECK_EQ_INT(upload(m, "erin", "image/jpeg", img2, len2, &e), 0);
  settle();
  object_path(dir, e.sha, false, p, sizeof p);
  object_path(dir, e.sha, true, p2, sizeof p2);
  CHECK(exists(p) && exists(p2));
  CHECK_EQ_INT(tern_media_count(m), 1);
  const tern_media_rec *er = tern_media_get(m, e.id);
  CHECK(er && tern_media_bytes(m) == er->size + er->thumb_size);
  CHECK_EQ_INT(st.dels, 4);
  CHECK_EQ_INT(st.recs.count, 1);
  tern_free(img);
  tern_free(img2);
  close_media(m);
  fs_free(&st);
  remove_data_dir(dir);
}

TEST(test_concurrent_uploads) {
  char *dir = make_data_dir();
  tern_media_options o = default_options(dir, NULL);
  o.decode_jobs = 1; /* the rest wait in the queue, in order */
  tern_media *m = open_media(&o);
  enum { N = 6 };
  void *img[N];
  size_t len[N];
  upres r[N];
  tern_media_upload *up[N];
  for (int i = 0; i < N; i++) {
    img[i] = make_image((img_spec){i % 2 ? TERN_MEDIA_WEBP : TERN_MEDIA_JPEG, 200 + i, 100, 3, true, false, 0, 0, 0},
                        &len[i]);
    CHECK_EQ_INT(upload_begin(m, "alice", i % 2 ? "image/webp" : "image/jpeg", img[i], len[i], 8192, -1, &r[i], &up[i]),
                 0);
  }
  for (int i = 0; i < N; i++) CHECK_EQ_INT(tern_media_upload_finish(up[i]), 0);
  /* Let the writes drain so that the uploads reach the decode queue, then drop one there. */
  for (int k = 0; k < 50 && !r[0].done; k++) uv_run(g_loop, UV_RUN_NOWAIT);
  tern_media_upload_abort(up[N - 1]);
  for (;;) {
    bool all = true;
    for (int i = 0; i < N - 1; i++) all = all && r[i].done;
    if (all) break;
    uv_run(g_loop, UV_RUN_ONCE);
  }
  settle();
  for (int i = 0; i < N - 1; i++) {
    CHECK_EQ_INT(r[i].err, 0);
    CHECK_EQ_INT(r[i].w, 200 + i);
  }
  CHECK(!r[N - 1].done);
  CHECK_EQ_INT(tern_media_count(m), N - 1);
  CHECK_EQ_INT(object_files(dir), 2 * (N - 1));
  CHECK_EQ_INT(tmp_files(dir), 0);
  for (int i = 0; i < N; i++) tern_free(img[i]);
  close_media(m);
  remove_data_dir(dir);
}

static void run_until_state(tern_media_upload *up, const char *state) {
  for (int i = 0; i < 100000 && strcmp(tern_media_upload_state(up), state) != 0; i++) uv_run(g_loop, UV_RUN_ONCE);
  CHECK_EQ_STR(tern_media_upload_state(up), state);
}

/* Drives uploads into each waiting state on purpose and aborts them there. */
TEST(test_upload_states) {
  char *dir = make_data_dir();
  tern_media_options o = default_options(dir, NULL);
  o.decode_jobs = 1;
  tern_media *m = open_media(&o);
  size_t bl, sl;
  void *big = make_image((img_spec){TERN_MEDIA_JPEG, 4000, 3000, 3, true, false, 0, 90, 0}, &bl);
  void *small = make_image((img_spec){TERN_MEDIA_PNG, 100, 100, 3, true, false, 0, 0, 0}, &sl);
  upres a, b, c, d;
  tern_media_upload *ua = NULL, *ub = NULL, *uc = NULL, *ud = NULL;
  /* a decodes (slowly), b waits for the only slot: abort b in the queue, then a while decoding */
  CHECK_EQ_INT(upload_begin(m, "alice", "image/jpeg", big, bl, 1 << 20, -1, &a, &ua), 0);
  CHECK_EQ_INT(upload_begin(m, "alice", "image/png", small, sl, 1 << 20, -1, &b, &ub), 0);
  run_until_state(ua, "open");
  run_until_state(ub, "open");
  CHECK_EQ_INT(tern_media_upload_finish(ua), 0);
  CHECK_EQ_STR(tern_media_upload_state(ua), "decoding");
  CHECK_EQ_INT(tern_media_upload_finish(ub), 0);
  CHECK_EQ_STR(tern_media_upload_state(ub), "queued");
  tern_media_upload_abort(ub);
  tern_media_upload_abort(ua);
  settle();
  CHECK(!a.done && !b.done);
  CHECK_EQ_INT(tmp_files(dir), 0);
  CHECK_EQ_INT(object_files(dir), 0);
  CHECK_EQ_INT(tern_media_count(m), 0);
  /* Bytes whose stored copy is being unlinked: c waits for the unlink, then stores; d waits and
   * is aborted. */
  upres x;
  CHECK_EQ_INT(upload(m, "alice", "image/png", small, sl, &x), 0);
  CHECK_EQ_INT(upload_begin(m, "bob", "image/png", small, sl, 1 << 20, -1, &c, &uc), 0);
  CHECK_EQ_INT(upload_begin(m, "carol", "image/png", small, sl, 1 << 20, -1, &d, &ud), 0);
  run_until_state(uc, "open");
  run_until_state(ud, "open");
  CHECK_EQ_INT(tern_media_delete(m, x.id), 0); /* the unlink is queued, not done */
  CHECK_EQ_INT(tern_media_upload_finish(uc), 0);
  CHECK_EQ_STR(tern_media_upload_state(uc), "waiting");
  CHECK_EQ_INT(tern_media_upload_finish(ud), 0);
  CHECK_EQ_STR(tern_media_upload_state(ud), "waiting");
  tern_media_upload_abort(ud);
  while (!c.done) uv_run(g_loop, UV_RUN_ONCE);
  settle();
  CHECK_EQ_INT(c.err, 0);
  CHECK(!c.dup);
  CHECK(!d.done);
  char p[4096];
  object_path(dir, c.sha, false, p, sizeof p);
  CHECK(exists(p));
  CHECK_EQ_INT(object_files(dir), 2);
  CHECK_EQ_INT(tmp_files(dir), 0);
  CHECK_EQ_INT(tern_media_count(m), 1);
  /* The temp directory is gone (disk trouble): the open fails, the caller hears of it. */
  char tdir[1024];
  snprintf(tdir, sizeof tdir, "%s/media/tmp", dir);
  CHECK_EQ_INT(rmdir(tdir), 0);
  upres e;
  tern_media_upload *ue = NULL;
  CHECK_EQ_INT(upload_begin(m, "alice", "image/png", small, 100, 100, -1, &e, &ue), 0);
  while (!e.done) uv_run(g_loop, UV_RUN_ONCE);
  CHECK_EQ_INT(e.err, TERN_MEDIA_ERR_IO);
  settle();
  mkdir(tdir, 0700);
  tern_free(big);
  tern_free(small);
  close_media(m);
  remove_data_dir(dir);
}

TEST(test_grants_and_fetches) {
  char *dir = make_data_dir();
  fake_store st = {0};
  tern_media_options o = default_options(dir, &st);
  tern_media *m = open_media(&o);
  size_t len;
  void *img = make_image((img_spec){TERN_MEDIA_WEBP, 100, 100, 3, true, false, 0, 0, 0}, &len);
  upres r;
  CHECK_EQ_INT(upload(m, "alice", "image/webp", img, len, &r), 0);
  const tern_media_rec *rec = tern_media_get(m, r.id);
  CHECK(tern_media_can_read(rec, "alice"));
  CHECK(!tern_media_can_read(rec, "bob"));
  CHECK(!tern_media_can_read(rec, NULL));
  CHECK(tern_media_get(m, "aaaaaaaaaaaaaaaaaaaaaaaaaa") == NULL);
  CHECK(tern_media_get(m, "../../etc/passwd") == NULL);
  CHECK_EQ_INT(tern_media_grant(m, "aaaaaaaaaaaaaaaaaaaaaaaaaa", "bob", 1), TERN_MEDIA_ERR_NOT_FOUND);
  CHECK_EQ_INT(tern_media_fetched(m, "aaaaaaaaaaaaaaaaaaaaaaaaaa", "bob", "b1"), TERN_MEDIA_ERR_NOT_FOUND);
  g_fake_now = 1700000000000;
  CHECK_EQ_INT(tern_media_grant(m, r.id, "bob", 2), 0);
  CHECK_EQ_INT(tern_media_grant(m, r.id, "bob", 2), 0);   /* a second message to bob: same devices */
  CHECK_EQ_INT(tern_media_grant(m, r.id, "alice", 3), 0); /* notes to self grant nothing */
  rec = tern_media_get(m, r.id);
  CHECK(tern_media_can_read(rec, "bob"));
  CHECK(!tern_media_can_read(rec, "carol"));
  CHECK_EQ_INT(rec->pending_devices, 2);
  CHECK(rec->sent_at > 0);
  /* Not counted: the uploader's devices, users without a grant, the same device twice. */
  CHECK_EQ_INT(tern_media_fetched(m, r.id, "alice", "a1"), 0);
  CHECK_EQ_INT(tern_media_fetched(m, r.id, "carol", "c1"), 0);
  CHECK_EQ_INT(tern_media_fetched(m, r.id, "bob", "b1"), 0);
  CHECK_EQ_INT(tern_media_fetched(m, r.id, "bob", "b1"), 0);
  rec = tern_media_get(m, r.id);
  CHECK_EQ_INT(rec->nfetched, 1);
  /* The persisted form keeps grants and fetches. */
  tern_buf *saved = tern_map_get(&st.recs, r.id, strlen(r.id));
  tern_media_rec *back = NULL;
  CHECK(saved && tern_media_rec_decode((const uint8_t *)saved->data, saved->len, &back) == 0);
  if (back) {
    CHECK_EQ_INT(back->ngrants, 1);
    CHECK_EQ_INT(back->nfetched, 1);
    CHECK_EQ_INT(back->pending_devices, 2);
    tern_media_rec_free(back);
  }
  char p[4096];
  object_path(dir, r.sha, false, p, sizeof p);
  CHECK(exists(p));
  /* The last recipient device: gone, from memory, the store and the disk. */
  CHECK_EQ_INT(tern_media_fetched(m, r.id, "bob", "b2"), 1);
  CHECK(tern_media_get(m, r.id) == NULL);
  CHECK_EQ_INT(st.recs.count, 0);
  settle();
  CHECK(!exists(p));
  CHECK_EQ_INT(object_files(dir), 0);
  CHECK_EQ_INT(tern_media_bytes(m), 0);
  CHECK_EQ_INT(tern_media_fetched(m, r.id, "bob", "b3"), TERN_MEDIA_ERR_NOT_FOUND);
  tern_free(img);
  close_media(m);
  fs_free(&st);
  remove_data_dir(dir);
}

TEST(test_sweep) {
  char *dir = make_data_dir();
  fake_store st = {0};
  tern_media_options o = default_options(dir, &st);
  o.ttl_ms = 10000;
  o.unsent_ttl_ms = 1000;
  o.now_ms = fake_clock;
  tern_media *m = open_media(&o);
  int64_t t0 = g_fake_now = 1700000000000;
  upres r[5];
  for (int i = 0; i < 5; i++) {
    size_t len;
    void *img = make_image((img_spec){TERN_MEDIA_GIF, 20 + i, 20, 3, false, false, 0, 0, 0}, &len);
    CHECK_EQ_INT(upload(m, "alice", "image/gif", img, len, &r[i]), 0);
    tern_free(img);
  }
  CHECK_EQ_INT(tern_media_grant(m, r[0].id, "bob", 1), 0); /* sent: the long ttl applies */
  bool more = true;
  CHECK_EQ_INT(tern_media_sweep(m, t0 + 999, 100, &more), 0);
  CHECK(!more);
  /* Four never sent: removed in bounded steps. */
  CHECK_EQ_INT(tern_media_sweep(m, t0 + 1000, 3, &more), 3);
  CHECK(more);
  CHECK_EQ_INT(tern_media_sweep(m, t0 + 1000, 3, &more), 1);
  CHECK(!more);
  CHECK_EQ_INT(tern_media_count(m), 1);
  CHECK(tern_media_get(m, r[0].id) != NULL);
  CHECK_EQ_INT(tern_media_sweep(m, t0 + 9999, 100, NULL), 0);
  CHECK_EQ_INT(tern_media_sweep(m, t0 + 10000, 100, NULL), 1);
  CHECK_EQ_INT(tern_media_count(m), 0);
  CHECK_EQ_INT(st.dels, 5);
  settle();
  CHECK_EQ_INT(object_files(dir), 0);
  CHECK_EQ_INT(tern_media_bytes(m), 0);
  close_media(m);
  fs_free(&st);
  remove_data_dir(dir);
}

static void noop_timer(uv_timer_t *t) { (void)t; }

/* The sweeper on its own timer: expired media go in bounded steps without a caller. */
TEST(test_sweeper_timer) {
  char *dir = make_data_dir();
  fake_store st = {0};
  tern_media_options o = default_options(dir, &st);
  o.unsent_ttl_ms = 1000;
  o.sweep_interval_ms = 10;
  o.sweep_batch = 2;
  o.now_ms = fake_clock;
  tern_media *m = open_media(&o);
  g_fake_now = 1700000000000;
  for (int i = 0; i < 5; i++) {
    size_t len;
    void *img = make_image((img_spec){TERN_MEDIA_PNG, 10 + i, 10, 3, false, false, 0, 0, 0}, &len);
    upres r;
    CHECK_EQ_INT(upload(m, "alice", "image/png", img, len, &r), 0);
    tern_free(img);
  }
  CHECK(tern_media_bytes(m) > 0);
  tern_media_start_sweeper(m);
  g_fake_now += 1000;
  /* The sweeper's timer does not keep a loop alive by itself (the server's handles do). */
  uv_timer_t keepalive;
  uv_timer_init(g_loop, &keepalive);
  uv_timer_start(&keepalive, noop_timer, 5, 5);
  for (int i = 0; i < 400 && (tern_media_count(m) > 0 || tern_media_bytes(m) > 0); i++) uv_run(g_loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&keepalive, NULL);
  CHECK_EQ_INT(tern_media_count(m), 0);
  CHECK_EQ_INT(object_files(dir), 0);
  CHECK_EQ_INT(tern_media_bytes(m), 0);
  CHECK_EQ_INT(st.dels, 5);
  close_media(m);
  fs_free(&st);
  remove_data_dir(dir);
}

TEST(test_quota) {
  char *dir = make_data_dir();
  tern_media_options o = default_options(dir, NULL);
  o.now_ms = fake_clock;
  size_t len;
  void *img = make_image((img_spec){TERN_MEDIA_JPEG, 300, 300, 3, false, false, 0, 95, 0}, &len);
  o.quota_bytes_per_hour = (int64_t)len * 3 / 2;
  tern_media *m = open_media(&o);
  g_fake_now = 1700000000000;
  upres r;
  CHECK_EQ_INT(upload(m, "alice", "image/jpeg", img, len, &r), 0);
  tern_media_upload_cbs cbs = {up_resume, up_done, &r};
  tern_media_upload *up = NULL;
  int64_t retry = 0;
  CHECK_EQ_INT(tern_media_upload_start(m, "alice", "image/jpeg", 10, (int64_t)len, &cbs, &up, &retry),
               TERN_MEDIA_ERR_QUOTA);
  /* Half an upload over a quota of 1.5 uploads per hour: about 20 minutes. */
  CHECK(retry >= 1150 && retry <= 1250);
  int status;
  tern_media_err_http(TERN_MEDIA_ERR_QUOTA, &status, NULL);
  CHECK_EQ_INT(status, 429);
  /* Others are not affected; alice may upload again once the bucket has drained enough. */
  CHECK_EQ_INT(tern_media_quota_retry_after(m, "bob", (int64_t)len, g_fake_now), 0);
  g_fake_now += retry * 1000;
  CHECK_EQ_INT(tern_media_quota_retry_after(m, "alice", (int64_t)len, g_fake_now), 0);
  CHECK_EQ_INT(upload(m, "alice", "image/jpeg", img, len, &r), 0);
  CHECK(r.dup);
  tern_free(img);
  close_media(m);
  remove_data_dir(dir);
}

typedef struct open_res {
  bool done;           /* callback ran */
  int err;             /* its error */
  tern_media_file f;   /* its file */
} open_res;

static void on_opened(int err, const tern_media_file *f, void *arg) {
  open_res *o = arg;
  o->done = true;
  o->err = err;
  if (f) o->f = *f;
}

static open_res open_and_wait(tern_media *m, const tern_media_rec *rec, bool thumb) {
  open_res o = {0};
  CHECK_EQ_INT(tern_media_open_file(m, rec, thumb, on_opened, &o), 0);
  while (!o.done) uv_run(g_loop, UV_RUN_ONCE);
  return o;
}

TEST(test_open_file) {
  char *dir = make_data_dir();
  tern_media_options o = default_options(dir, NULL);
  tern_media *m = open_media(&o);
  size_t len;
  uint8_t *img = make_image((img_spec){TERN_MEDIA_PNG, 400, 300, 3, true, false, 0, 0, 0}, &len);
  upres r;
  CHECK_EQ_INT(upload(m, "alice", "image/png", img, len, &r), 0);
  const tern_media_rec *rec = tern_media_get(m, r.id);
  open_res a = open_and_wait(m, rec, false);
  CHECK_EQ_INT(a.err, 0);
  CHECK_EQ_INT(a.f.size, len);
  CHECK_EQ_STR(a.f.mime, "image/png");
  char etag[80];
  snprintf(etag, sizeof etag, "\"%s\"", r.sha);
  CHECK_EQ_STR(a.f.etag, etag);
  uint8_t *back = tern_malloc(len);
  CHECK(a.err == 0 && pread(a.f.fd, back, len, 0) == (ssize_t)len && memcmp(back, img, len) == 0);
  /* A range read, as a 206 would do. */
  uint64_t s, l;
  CHECK_EQ_INT(tern_media_parse_range("bytes=100-199", 13, (uint64_t)a.f.size, &s, &l), TERN_RANGE_OK);
  CHECK(pread(a.f.fd, back, l, (off_t)s) == 100 && memcmp(back, img + 100, 100) == 0);
  tern_free(back);
  open_res t = open_and_wait(m, rec, true);
  CHECK_EQ_INT(t.err, 0);
  CHECK_EQ_STR(t.f.mime, "image/jpeg");
  snprintf(etag, sizeof etag, "\"%s-t\"", r.sha);
  CHECK_EQ_STR(t.f.etag, etag);
  CHECK_EQ_INT(t.f.size, rec->thumb_size);
  uint8_t magic[3] = {0};
  CHECK(pread(t.f.fd, magic, 3, 0) == 3 && magic[0] == 0xff && magic[1] == 0xd8);
  /* Deleted while being served: the open fd keeps working; a new open is not found. */
  tern_media_rec copy = *rec;
  CHECK_EQ_INT(tern_media_delete(m, r.id), 0);
  settle();
  uint8_t first[8];
  CHECK(pread(a.f.fd, first, 8, 0) == 8 && memcmp(first, img, 8) == 0);
  close(a.f.fd);
  close(t.f.fd);
  copy.owner = NULL; /* only sha256_hex and type are used */
  open_res gone = open_and_wait(m, &copy, false);
  CHECK_EQ_INT(gone.err, TERN_MEDIA_ERR_NOT_FOUND);
  tern_free(img);
  close_media(m);
  remove_data_dir(dir);
}

static bool recovered_flag;
static tern_media_recover_stats recovered_stats;
static void on_recovered(tern_media *m, const tern_media_recover_stats *st, void *arg) {
  (void)m, (void)arg;
  recovered_flag = true;
  recovered_stats = *st;
}

static void touch(const char *path, const char *content) {
  FILE *f = fopen(path, "wb");
  if (f) {
    fputs(content, f);
    fclose(f);
  }
}

TEST(test_restart_consistency) {
  char *dir = make_data_dir();
  fake_store st = {0};
  tern_media_options o = default_options(dir, &st);
  tern_media *m = open_media(&o);
  upres r[3];
  for (int i = 0; i < 3; i++) {
    size_t len;
    void *img = make_image((img_spec){TERN_MEDIA_JPEG, 100 + i, 80, 3, true, false, 0, 0, 0}, &len);
    CHECK_EQ_INT(upload(m, "alice", "image/jpeg", img, len, &r[i]), 0);
    tern_free(img);
  }
  CHECK_EQ_INT(tern_media_grant(m, r[2].id, "bob", 1), 0);
  int64_t bytes_all = tern_media_bytes(m);
  const tern_media_rec *r1 = tern_media_get(m, r[1].id);
  int64_t bytes_r1 = r1->size + r1->thumb_size;
  /* An upload in flight when the process dies leaves its temp file behind. */
  size_t len;
  void *img = make_image((img_spec){TERN_MEDIA_PNG, 50, 50, 3, true, false, 0, 0, 0}, &len);
  upres pr;
  tern_media_upload *inflight = NULL;
  CHECK_EQ_INT(upload_begin(m, "alice", "image/png", img, len / 2, 1024, -1, &pr, &inflight), 0);
  while (tmp_files(dir) == 0) uv_run(g_loop, UV_RUN_ONCE);
  /* "Crash": a clean close would remove the temp file, so hard-link it aside first and put it
   * back afterwards, as a killed process would have left it. */
  char tmpdir[1024], keep[1024], tmpname[2048];
  snprintf(tmpdir, sizeof tmpdir, "%s/media/tmp", dir);
  snprintf(keep, sizeof keep, "%s/keep.part", dir);
  DIR *td = opendir(tmpdir);
  struct dirent *te;
  tmpname[0] = '\0';
  while (td && (te = readdir(td)))
    if (te->d_name[0] != '.') snprintf(tmpname, sizeof tmpname, "%s/%s", tmpdir, te->d_name);
  if (td) closedir(td);
  CHECK(tmpname[0] && link(tmpname, keep) == 0);
  close_media(m);
  CHECK(!exists(tmpname));
  CHECK(rename(keep, tmpname) == 0);
  char p[4096];
  snprintf(p, sizeof p, "%s/0123456789abcdef0123456789abcdef.part", tmpdir);
  touch(p, "half an upload");
  snprintf(p, sizeof p, "%s/0123456789abcdef0123456789abcdef.thumb.part", tmpdir);
  touch(p, "half a thumbnail");
  /* Orphans: objects no record names (a crash between rename and persist), and junk. */
  char orphan_hex[65];
  sha256_hex("orphan", 6, orphan_hex);
  char odir[4096];
  snprintf(odir, sizeof odir, "%s/media/objects/%.2s", dir, orphan_hex);
  mkdir(odir, 0700);
  object_path(dir, orphan_hex, false, p, sizeof p);
  touch(p, "orphan");
  object_path(dir, orphan_hex, true, p, sizeof p);
  touch(p, "orphan thumb");
  snprintf(p, sizeof p, "%s/media/objects/%.2s/notes.txt", dir, r[0].sha);
  touch(p, "junk");
  /* A file under the wrong prefix directory is not where a record would look for it. */
  char pdir[1024], misplaced[2048];
  snprintf(pdir, sizeof pdir, "%s/media/objects/%.2s", dir, r[0].sha);
  snprintf(misplaced, sizeof misplaced, "%s/%s", pdir, orphan_hex);
  if (strncmp(orphan_hex, r[0].sha, 2) != 0) touch(misplaced, "misplaced");
  else misplaced[0] = '\0';
  /* Dangling: a record whose original is gone (its thumbnail alone must go too). */
  object_path(dir, r[1].sha, false, p, sizeof p);
  CHECK_EQ_INT(unlink(p), 0);
  char thumb1[4096];
  object_path(dir, r[1].sha, true, thumb1, sizeof thumb1);
  CHECK(exists(thumb1));

  /* Restart: load every stored record, then recover. */
  int dels_before = st.dels;
  m = open_media(&o);
  load_ctx lc = {m, 0};
  tern_map_each(&st.recs, fs_load_cb, &lc);
  CHECK_EQ_INT(lc.loaded, 3);
  CHECK_EQ_INT(tern_media_load_record(m, (const uint8_t *)"junk", 4), TERN_MEDIA_ERR_INVALID);
  CHECK_EQ_INT(tern_media_bytes(m), bytes_all);
  /* An upload that starts before recovery runs keeps its temp file. */
  upres live;
  tern_media_upload *lu = NULL;
  CHECK_EQ_INT(upload_begin(m, "alice", "image/png", img, len, 1 << 20, -1, &live, &lu), 0);
  run_until_state(lu, "open");
  recovered_flag = false;
  CHECK_EQ_INT(tern_media_recover(m, on_recovered, NULL), 0);
  CHECK_EQ_INT(tern_media_recover(m, on_recovered, NULL), TERN_MEDIA_ERR_BUSY);
  while (!recovered_flag) uv_run(g_loop, UV_RUN_ONCE);
  CHECK_EQ_INT(tmp_files(dir), 1);
  CHECK_EQ_INT(tern_media_upload_finish(lu), 0);
  while (!live.done) uv_run(g_loop, UV_RUN_ONCE);
  CHECK_EQ_INT(live.err, 0);
  CHECK_EQ_INT(tern_media_delete(m, live.id), 0);
  settle();
  CHECK_EQ_INT(recovered_stats.tmp_removed, 3); /* two planted + the interrupted upload's */
  CHECK_EQ_INT(recovered_stats.orphans_removed, misplaced[0] ? 4 : 3);
  CHECK_EQ_INT(recovered_stats.records_dropped, 1);
  CHECK_EQ_INT(recovered_stats.records_kept, 2);
  CHECK_EQ_INT(tern_media_load_record(m, (const uint8_t *)"x", 1), TERN_MEDIA_ERR_BUSY);
  CHECK_EQ_INT(st.dels, dels_before + 2); /* the dangling record, and the live upload deleted above */
  CHECK(tern_map_get(&st.recs, r[1].id, strlen(r[1].id)) == NULL);
  CHECK(tern_media_get(m, r[1].id) == NULL);
  CHECK(!exists(thumb1));
  CHECK_EQ_INT(tmp_files(dir), 0);
  CHECK_EQ_INT(object_files(dir), 4); /* r0 and r2, original + thumbnail each */
  CHECK_EQ_INT(tern_media_bytes(m), bytes_all - bytes_r1);
  const tern_media_rec *r2 = tern_media_get(m, r[2].id);
  CHECK(r2 && tern_media_can_read(r2, "bob"));
  /* After recovery the same bytes dedupe against the stored copy. */
  size_t l0;
  void *img0 = make_image((img_spec){TERN_MEDIA_JPEG, 100, 80, 3, true, false, 0, 0, 0}, &l0);
  upres again;
  CHECK_EQ_INT(upload(m, "carol", "image/jpeg", img0, l0, &again), 0);
  tern_free(img0);
  tern_free(img);
  close_media(m);
  fs_free(&st);
  remove_data_dir(dir);
}

/* ---- measurements (printed, never asserted) ------------------------------------------------- */
static double secs(uint64_t ns) { return (double)ns / 1e9; }
/* CPU time of this thread, which is the loop thread: what an upload costs the loop. */
static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
static void bench_5mib(tern_media *m, const char *what, const char *mime, img_spec spec, int reps);

TEST(test_bench) {
  const char *env = getenv("TERN_MEDIA_BENCH");
  int reps = env ? atoi(env) : 1;
  if (reps < 1) reps = 1;
  char *dir = make_data_dir();
  tern_media_options o = default_options(dir, NULL);
  tern_media *m = open_media(&o);
  /* A 4000 x 3000 photo-like JPEG: thumbnail time, directly and through the whole sink. */
  size_t jl;
  void *jpg = make_image((img_spec){TERN_MEDIA_JPEG, 4000, 3000, 3, true, false, 0, 90, 0}, &jl);
  char path[4096];
  snprintf(path, sizeof path, "%s/bench.jpg", dir);
  FILE *f = fopen(path, "wb");
  fwrite(jpg, 1, jl, f);
  fclose(f);
  uint64_t best_thumb = UINT64_MAX, total_thumb = 0;
  for (int i = 0; i < reps; i++) {
    uint64_t t0 = tern_mono_ns();
    VipsImage *t = NULL;
    if (vips_thumbnail(path, &t, 320, "height", 320, "size", VIPS_SIZE_DOWN, "fail_on", VIPS_FAIL_ON_ERROR, NULL) == 0) {
      void *buf;
      size_t bl;
      vips_jpegsave_buffer(t, &buf, &bl, "Q", 80, "strip", TRUE, NULL);
      g_free(buf);
      g_object_unref(t);
    }
    uint64_t dt = tern_mono_ns() - t0;
    total_thumb += dt;
    if (dt < best_thumb) best_thumb = dt;
  }
  uint64_t best_up = UINT64_MAX;
  for (int i = 0; i < reps; i++) {
    upres r;
    uint64_t t0 = tern_mono_ns();
    CHECK_EQ_INT(upload(m, "alice", "image/jpeg", jpg, jl, &r), 0);
    uint64_t dt = tern_mono_ns() - t0;
    if (dt < best_up) best_up = dt;
    tern_media_delete(m, r.id);
    settle();
  }
  printf("bench: thumbnail of a 4000x3000 JPEG (%.2f MiB): best %.1f ms, mean %.1f ms over %d (vips_thumbnail + jpegsave)\n",
         jl / 1048576.0, secs(best_thumb) * 1e3, secs(total_thumb) * 1e3 / reps, reps);
  printf("bench: full upload of that JPEG (64 KiB chunks, hash, fsync, validate, thumbnail, rename): best %.1f ms\n",
         secs(best_up) * 1e3);
  tern_free(jpg);
  /* About 5 MiB: a noise PNG (barely compressible), 1376 x 1366 x 3, and a busy 4000 x 3000
   * JPEG (the usual case: shrink-on-load makes its thumbnail cheap). */
  bench_5mib(m, "PNG 1376x1366", "image/png",
             (img_spec){TERN_MEDIA_PNG, 1376, 1366, 3, false, false, 0, 0, 0}, reps);
  bench_5mib(m, "JPEG 4000x3000", "image/jpeg",
             (img_spec){TERN_MEDIA_JPEG, 4000, 3000, 3, true, false, 0, 89, 3}, reps);
  close_media(m);
  remove_data_dir(dir);
}

/* Upload (full, then the same bytes again: sink only) and read back, best of reps. */
static void bench_5mib(tern_media *m, const char *what, const char *mime, img_spec spec, int reps) {
  size_t pl;
  void *png = make_image(spec, &pl);
  uint64_t best_full = UINT64_MAX, best_dup = UINT64_MAX, best_read = UINT64_MAX, best_cpu = UINT64_MAX;
  int pauses = 0;
  for (int i = 0; i < reps; i++) {
    upres r, d;
    uint64_t c0 = thread_cpu_ns();
    uint64_t t0 = tern_mono_ns();
    CHECK_EQ_INT(upload(m, "alice", mime, png, pl, &r), 0);
    uint64_t t1 = tern_mono_ns();
    uint64_t cpu = thread_cpu_ns() - c0;
    if (cpu < best_cpu) best_cpu = cpu;
    /* The same bytes again: the stored copy is reused, so this is the sink alone. */
    CHECK_EQ_INT(upload(m, "bob", mime, png, pl, &d), 0);
    uint64_t t2 = tern_mono_ns();
    pauses = r.pauses;
    if (t1 - t0 < best_full) best_full = t1 - t0;
    if (t2 - t1 < best_dup) best_dup = t2 - t1;
    /* Serving side: open in the threadpool, read in 64 KiB chunks. */
    open_res op = open_and_wait(m, tern_media_get(m, r.id), false);
    uint64_t t3 = tern_mono_ns();
    char chunk[65536];
    size_t got = 0;
    ssize_t k;
    while ((k = pread(op.f.fd, chunk, sizeof chunk, (off_t)got)) > 0) got += (size_t)k;
    close(op.f.fd);
    uint64_t t4 = tern_mono_ns();
    if (t4 - t3 < best_read) best_read = t4 - t3;
    tern_media_delete(m, r.id);
    tern_media_delete(m, d.id);
    settle();
  }
  double mib = pl / 1048576.0;
  printf("bench: upload of a %.2f MiB %s (%d pauses): full %.1f ms = %.0f MiB/s; sink only (dedup, no decode) %.1f ms = %.0f MiB/s\n",
         mib, what, pauses, secs(best_full) * 1e3, mib / secs(best_full), secs(best_dup) * 1e3, mib / secs(best_dup));
  printf("bench: loop-thread CPU for that upload (copying chunks, sniffing, bookkeeping): %.2f ms\n", secs(best_cpu) * 1e3);
  printf("bench: read back %.2f MiB (open in the threadpool + pread 64 KiB, page cache): %.1f ms = %.0f MiB/s\n", mib, secs(best_read) * 1e3,
         mib / secs(best_read));
  tern_free(png);
}

int main(void) {
  test_init();
  RUN(test_each_type);
  RUN(test_type_mismatch_and_unknown);
  RUN(test_truncated_and_corrupt);
  RUN(test_bomb);
  RUN(test_too_large);
  RUN(test_timeout_and_abort);
  RUN(test_dedup);
  RUN(test_concurrent_uploads);
  RUN(test_upload_states);
  RUN(test_grants_and_fetches);
  RUN(test_sweep);
  RUN(test_sweeper_timer);
  RUN(test_quota);
  RUN(test_open_file);
  RUN(test_restart_consistency);
  RUN(test_bench);
  vips_shutdown();
  DONE();
}
