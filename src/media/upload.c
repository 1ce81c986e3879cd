/* upload: the sink behind POST /v1/media. Body chunks are copied into a small buffer and handed
 * to the threadpool, which writes them to a temp file and feeds SHA-256 in the same trip (so the
 * loop spends no CPU on hashing); at most one request per upload is in flight, which keeps the
 * file offset, the hash and the state machine simple. The header is sniffed on the loop as the
 * bytes pass (a few dozen bytes of work), so a wrong type or a decompression bomb is refused
 * before the rest of the body is read. At the end, in the threadpool and limited to decode_jobs
 * at once, libvips validates the file and makes the thumbnail, and both are renamed into place.
 *
 *   OPENING -> OPEN (writes) -> FINISHING -> [WAITING for an unlink of the same content]
 *           -> [QUEUED for a decode slot] -> DECODING -> done
 *   any state -> CLEANUP (close + unlink the temp file) -> freed
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vips/vips.h>
#include <vips/vector.h> /* vips_vector_set_enabled: not in vips.h */

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "media/media_int.h"

/* Above this many buffered bytes the caller is told to pause. Two buffers (one being written,
 * one filling) bound an upload's memory to about 2 x this plus one socket read, never the body. */
#define HIGH_WATER (256 * 1024)

typedef enum { U_OPENING, U_OPEN, U_FINISHING, U_WAITING, U_QUEUED, U_DECODING, U_CLEANUP } ustate;

struct tern_media_upload {
  tern_media *m;
  tern_media_upload_cbs cbs;       /* caller's callbacks */
  char *user;                      /* uploader */
  tern_media_type type;            /* declared type */
  char name[33];                   /* random temp name (hex), the prefix of both temp files */
  char path[MEDIA_PATH_MAX];       /* tmp/<name>.part */
  char thumb_path[MEDIA_PATH_MAX]; /* tmp/<name>.thumb.part */
  uv_file fd;                      /* temp file, -1 when not open */
  ustate state;
  bool op;                         /* a threadpool request is in flight */
  bool detached;                   /* the caller is gone or has its answer: no more callbacks */
  bool finishing;                  /* finish was called */
  bool paused;                     /* we returned PAUSE and owe a resume */
  bool slot;                       /* holds one of the decode_jobs slots */
  bool dup;                        /* the content is already stored: skip decoding */
  tern_buf pending;                /* received, not yet handed to the threadpool */
  tern_buf writing;                /* owned by the write job in flight */
  int64_t total;                   /* bytes received */
  uint64_t last_activity;          /* uv_now of the last byte, for upload_timeout */
  uint64_t started;                /* uv_now at the start, for min_upload_rate */
  uint64_t paused_at;              /* uv_now when the server paused the reader (while paused) */
  uint64_t paused_ms;              /* time the server held the reader paused, finished pauses */
  EVP_MD_CTX *sha;                 /* incremental SHA-256 (only touched by the job in flight) */
  tern_media_probe probe;          /* header sniffing */
  tern_media_content *content;     /* pinned content, from FINISHING on */
  uv_fs_t fs;                      /* the open request */
  uv_work_t work;                  /* write / decode / cleanup */
  int werr;                        /* worker: errno of a failed write */
  int derr;                        /* worker: decode result (tern_media_status) */
  uint32_t width, height;          /* worker: decoded dimensions, as displayed */
  int64_t thumb_size;              /* worker: thumbnail bytes */
  char vmsg[160];                  /* worker: libvips's reason, for the log */
  struct tern_media_upload *prev, *next; /* m->uploads */
  struct tern_media_upload *qnext;       /* decode queue or content waiters */
};

static void step(tern_media_upload *up);

/* uv_queue_work fails only for a NULL work function, so there is no error path to take. */
static void queue(tern_media_upload *up, uv_work_cb work, uv_after_work_cb after) {
  int rc = uv_queue_work(up->m->loop, &up->work, work, after);
  if (rc != 0) {
    TERN_ERROR("uv_queue_work failed", "err=%s", uv_strerror(rc));
    abort();
  }
}

/* ---- libvips set-up --------------------------------------------------------------------------- */

static void vips_log_handler(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data) {
  (void)level, (void)data;
  /* libvips warns through GLib (e.g. "premature end of JPEG file"); keep stderr logfmt. */
  TERN_DEBUG("vips", "domain=%s detail=%s", domain ? domain : "-", tern_log_quote(msg));
}

static void vips_once(void) {
  if (vips_init("ternd") != 0) {
    TERN_ERROR("libvips failed to initialise", "detail=%s", tern_log_quote(vips_error_buffer()));
    abort();
  }
  /* Each file is opened once: the operation cache would only hold memory and descriptors. */
  vips_cache_set_max(0);
  vips_cache_set_max_mem(0);
  vips_cache_set_max_files(0);
  /* No run-time compiled vector code (liborc): its code memory is shared by the decode
   * threads, and freeing a program on one while another compiled crashed ternd (SEGV in
   * orc_code_free under vips_vector_free, a sanitized CI run with 100 uploads in flight).
   * libvips then runs the same operations in plain C. */
  vips_vector_set_enabled(FALSE);
  g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG,
                    vips_log_handler, NULL);
}

void media_vips_init(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, vips_once);
}

/* ---- list helpers ----------------------------------------------------------------------------- */

static void list_remove(tern_media *m, tern_media_upload *up) {
  if (up->prev) up->prev->next = up->next;
  else m->uploads = up->next;
  if (up->next) up->next->prev = up->prev;
  up->prev = up->next = NULL;
}

bool media_upload_owns_tmp(const tern_media *m, const char *name) {
  for (const tern_media_upload *up = m->uploads; up; up = up->next)
    if (strncmp(name, up->name, 32) == 0) return true;
  return false;
}

tern_media_upload *media_upload_next_waiter(tern_media_upload *up, tern_media_upload *set) {
  tern_media_upload *nx = up->qnext;
  up->qnext = set;
  return nx;
}

static void unlink_from(tern_media_upload **head, tern_media_upload **tail, tern_media_upload *up) {
  tern_media_upload *prev = NULL;
  for (tern_media_upload *p = *head; p; prev = p, p = p->qnext) {
    if (p != up) continue;
    if (prev) prev->qnext = p->qnext;
    else *head = p->qnext;
    if (tail && *tail == p) *tail = prev;
    p->qnext = NULL;
    return;
  }
}

/* ---- idle timeout ----------------------------------------------------------------------------- */

static void fail_async(tern_media_upload *up, int err);

static void on_idle_tick(uv_timer_t *t) {
  tern_media *m = t->data;
  uint64_t now = uv_now(m->loop);
  for (tern_media_upload *up = m->uploads, *nx; up; up = nx) {
    nx = up->next; /* fail_async never frees synchronously, but stay safe if it ever did */
    bool waiting_for_client = !up->detached && !up->finishing && !up->paused &&
                              (up->state == U_OPENING || up->state == U_OPEN);
    if (!waiting_for_client) continue;
    if (now - up->last_activity >= (uint64_t)m->opt.upload_timeout_ms) {
      TERN_INFO("media upload timed out", "user=%s bytes=%lld", tern_log_quote(up->user), (long long)up->total);
      fail_async(up, TERN_MEDIA_ERR_TIMEOUT);
      continue;
    }
    /* A trickle (a byte now and then) never trips the idle timer; its average rate does. The
     * client's time only: pauses the server imposed (threadpool backpressure) do not count. */
    uint64_t age = now - up->started - up->paused_ms;
    if (m->opt.min_upload_rate > 0 && age >= (uint64_t)m->opt.upload_timeout_ms &&
        (double)up->total * 1000.0 < (double)m->opt.min_upload_rate * (double)age) {
      TERN_INFO("media upload too slow", "user=%s bytes=%lld ms=%llu min_rate=%lld", tern_log_quote(up->user),
                (long long)up->total, (unsigned long long)age, (long long)m->opt.min_upload_rate);
      fail_async(up, TERN_MEDIA_ERR_TIMEOUT);
    }
  }
}

static void idle_timer_update(tern_media *m) {
  if (m->uploads && !m->idle_timer_on && !m->closing) {
    uint64_t period = (uint64_t)m->opt.upload_timeout_ms / 4;
    if (period < 10) period = 10;
    if (period > 1000) period = 1000;
    uv_timer_start(&m->idle_timer, on_idle_tick, period, period);
    m->idle_timer_on = true;
  } else if (!m->uploads && m->idle_timer_on) {
    uv_timer_stop(&m->idle_timer);
    m->idle_timer_on = false;
  }
}

/* ---- start / free ------------------------------------------------------------------------------- */

static void free_up(tern_media_upload *up) {
  tern_media *m = up->m;
  list_remove(m, up);
  EVP_MD_CTX_free(up->sha);
  tern_buf_free(&up->pending);
  tern_buf_free(&up->writing);
  tern_free(up->user);
  tern_free(up);
  idle_timer_update(m);
  media_unref(m); /* every upload holds the store for its whole life */
}

static void on_open(uv_fs_t *req) {
  tern_media_upload *up = req->data;
  up->op = false;
  ssize_t r = req->result;
  uv_fs_req_cleanup(req);
  if (r < 0) {
    TERN_ERROR("media temp file open failed", "path=%s err=%s", tern_log_quote(up->path), uv_strerror((int)r));
    fail_async(up, TERN_MEDIA_ERR_IO);
  } else {
    up->fd = (uv_file)r;
    if (up->state == U_OPENING) up->state = U_OPEN;
  }
  step(up);
}

int tern_media_upload_start(tern_media *m, const char *user, const char *content_type, size_t ct_len,
                            int64_t content_length, const tern_media_upload_cbs *cbs,
                            tern_media_upload **out, int64_t *retry_after_s) {
  if (retry_after_s) *retry_after_s = 0;
  if (m->closing) return TERN_MEDIA_ERR_BUSY;
  size_t ul = user ? strlen(user) : 0;
  if (ul == 0 || ul > 255 || !cbs || !cbs->done) return TERN_MEDIA_ERR_INVALID;
  tern_media_type type = tern_media_type_from_mime(content_type, ct_len);
  if (type == TERN_MEDIA_NONE) return TERN_MEDIA_ERR_UNSUPPORTED;
  /* A declared length over the limit is refused before a single body byte is read. */
  if (content_length > m->opt.max_bytes) return TERN_MEDIA_ERR_TOO_LARGE;
  int64_t wait = tern_media_quota_retry_after(m, user, content_length, media_now(m));
  if (wait > 0) {
    if (retry_after_s) *retry_after_s = wait;
    return TERN_MEDIA_ERR_QUOTA;
  }
  tern_media_upload *up = TERN_NEW(tern_media_upload);
  up->m = m;
  up->cbs = *cbs;
  up->user = tern_strdup(user);
  up->type = type;
  up->fd = -1;
  up->state = U_OPENING;
  uint8_t rnd[16];
  tern_random(rnd, sizeof rnd);
  tern_hex(up->name, rnd, sizeof rnd);
  snprintf(up->path, sizeof up->path, "%s/%s.part", m->dir_tmp, up->name);
  snprintf(up->thumb_path, sizeof up->thumb_path, "%s/%s.thumb.part", m->dir_tmp, up->name);
  up->sha = EVP_MD_CTX_new();
  if (!up->sha || EVP_DigestInit_ex(up->sha, EVP_sha256(), NULL) != 1) {
    TERN_ERROR("out of memory", "what=%s", "EVP_MD_CTX");
    abort();
  }
  tern_media_probe_init(&up->probe);
  up->last_activity = up->started = uv_now(m->loop);
  up->fs.data = up;
  up->work.data = up;
  int rc = uv_fs_open(m->loop, &up->fs, up->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600, on_open);
  if (rc < 0) {
    EVP_MD_CTX_free(up->sha);
    tern_free(up->user);
    tern_free(up);
    return TERN_MEDIA_ERR_IO;
  }
  up->op = true;
  up->next = m->uploads;
  if (m->uploads) m->uploads->prev = up;
  m->uploads = up;
  media_ref(m);
  idle_timer_update(m);
  *out = up;
  return 0;
}

/* ---- failure and cleanup --------------------------------------------------------------------- */

static void cleanup_work(uv_work_t *w) {
  tern_media_upload *up = w->data;
  if (up->fd >= 0) close(up->fd);
  up->fd = -1;
  unlink(up->path);
  unlink(up->thumb_path);
}

static void cleanup_after(uv_work_t *w, int status) {
  (void)status;
  free_up(w->data);
}

/* Ends the upload from the loop's side: the temp file goes in the background. */
static void to_cleanup(tern_media_upload *up) {
  up->detached = true;
  up->state = U_CLEANUP;
  step(up);
}

static void fail_async(tern_media_upload *up, int err) {
  if (up->detached) {
    up->state = U_CLEANUP;
    return;
  }
  up->detached = true;
  tern_media_result res = {.err = err};
  up->cbs.done(up, &res, up->cbs.arg);
  to_cleanup(up);
}

static int fail_sync(tern_media_upload *up, int err) {
  to_cleanup(up);
  return err;
}

void tern_media_upload_abort(tern_media_upload *up) {
  if (!up || up->detached) return;
  up->detached = true;
  tern_media *m = up->m;
  switch (up->state) {
    case U_QUEUED:
      unlink_from(&m->dq_head, &m->dq_tail, up);
      up->content->pins--;
      media_content_release(m, up->content);
      break;
    case U_WAITING:
      unlink_from(&up->content->waiters, NULL, up);
      up->content->pins--;
      media_content_release(m, up->content);
      break;
    case U_DECODING:
      return; /* its completion sees detached and discards the result */
    default:
      break;
  }
  to_cleanup(up);
}

const char *tern_media_upload_state(const tern_media_upload *up) {
  switch (up->state) {
    case U_OPENING: return "opening";
    case U_OPEN: return up->op ? "writing" : "open";
    case U_FINISHING: return "finishing";
    case U_WAITING: return "waiting";
    case U_QUEUED: return "queued";
    case U_DECODING: return "decoding";
    case U_CLEANUP: return "cleanup";
  }
  return "?";
}

void media_upload_abort_all(tern_media *m) {
  for (tern_media_upload *up = m->uploads; up; up = up->next) tern_media_upload_abort(up);
}

/* ---- writing --------------------------------------------------------------------------------- */

static void write_work(uv_work_t *w) {
  tern_media_upload *up = w->data;
  const char *p = up->writing.data;
  size_t n = up->writing.len, off = 0;
  up->werr = 0;
  while (off < n) {
    ssize_t k = write(up->fd, p + off, n - off);
    if (k < 0) {
      if (errno == EINTR) continue;
      up->werr = errno;
      return;
    }
    off += (size_t)k;
  }
  EVP_DigestUpdate(up->sha, p, n);
}

static void write_after(uv_work_t *w, int status) {
  (void)status; /* never cancelled: we never call uv_cancel */
  tern_media_upload *up = w->data;
  up->op = false;
  tern_buf_reset(&up->writing);
  if (up->werr && up->state != U_CLEANUP) {
    TERN_ERROR("media temp file write failed", "path=%s err=%s", tern_log_quote(up->path), strerror(up->werr));
    fail_async(up, TERN_MEDIA_ERR_IO);
  }
  step(up);
  if (up->paused && !up->detached && up->pending.len < HIGH_WATER) {
    up->paused = false;
    up->last_activity = uv_now(up->m->loop);
    up->paused_ms += up->last_activity - up->paused_at;
    /* Last thing we do: the caller may write, finish or abort from here. */
    if (up->cbs.resume) up->cbs.resume(up, up->cbs.arg);
  }
}

int tern_media_upload_write(tern_media_upload *up, const void *data, size_t n) {
  if (!up || up->detached || up->finishing) return TERN_MEDIA_ERR_INVALID;
  tern_media *m = up->m;
  if (n == 0) return up->paused ? TERN_MEDIA_PAUSE : TERN_MEDIA_CONTINUE;
  if ((uint64_t)up->total + n > (uint64_t)m->opt.max_bytes) return fail_sync(up, TERN_MEDIA_ERR_TOO_LARGE);
  if (up->type != TERN_MEDIA_OCTET && up->probe.status == TERN_PROBE_MORE) {
    int st = tern_media_probe_feed(&up->probe, data, n);
    if (st == TERN_PROBE_BAD || (up->probe.type != TERN_MEDIA_NONE && up->probe.type != up->type))
      return fail_sync(up, TERN_MEDIA_ERR_UNSUPPORTED);
    /* The decompression-bomb check: on the declared size, before anything decodes. */
    if (st == TERN_PROBE_DONE &&
        !tern_media_dims_ok(up->probe.width, up->probe.height, m->opt.max_dimension, m->opt.max_pixels)) {
      TERN_INFO("media upload refused: dimensions", "user=%s width=%u height=%u", tern_log_quote(up->user),
                up->probe.width, up->probe.height);
      return fail_sync(up, TERN_MEDIA_ERR_DIMENSIONS);
    }
  }
  media_quota_charge(m, up->user, (int64_t)n, media_now(m));
  up->total += (int64_t)n;
  up->last_activity = uv_now(m->loop);
  tern_buf_append(&up->pending, data, n);
  step(up);
  if (up->pending.len >= HIGH_WATER && !up->paused) {
    up->paused = true;
    up->paused_at = uv_now(m->loop);
  }
  return up->paused ? TERN_MEDIA_PAUSE : TERN_MEDIA_CONTINUE;
}

int tern_media_upload_finish(tern_media_upload *up) {
  if (!up || up->detached || up->finishing) return TERN_MEDIA_ERR_INVALID;
  /* A body that ended before its header did cannot be an image. */
  if (up->total == 0 || (up->type != TERN_MEDIA_OCTET && up->probe.status != TERN_PROBE_DONE))
    return fail_sync(up, TERN_MEDIA_ERR_UNSUPPORTED);
  up->finishing = true;
  step(up);
  return 0;
}

/* ---- decoding -------------------------------------------------------------------------------- */

static void vips_reason(tern_media_upload *up) {
  snprintf(up->vmsg, sizeof up->vmsg, "%s", vips_error_buffer());
  char *nl = strchr(up->vmsg, '\n');
  if (nl) *nl = '\0';
  vips_error_clear();
}

/* libvips's loader class names contain the format ("VipsForeignLoadJpegFile",
 * "VipsForeignLoadNsgifFile", ...); matched without regard to case. */
static bool contains_nocase(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++)
    if (strncasecmp(hay, needle, n) == 0) return true;
  return false;
}

static const char *loader_word(tern_media_type t) {
  switch (t) {
    case TERN_MEDIA_JPEG: return "Jpeg";
    case TERN_MEDIA_PNG: return "Png";
    case TERN_MEDIA_WEBP: return "Webp";
    case TERN_MEDIA_GIF: return "Gif";
    default: return "?";
  }
}

static int fsync_path(const char *path, bool dir) {
  int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/* In the threadpool: validate with libvips and make the thumbnail. */
static int decode_image(tern_media_upload *up) {
  tern_media *m = up->m;
  if (up->type == TERN_MEDIA_OCTET) { /* opaque: nothing reads its bytes, and it has no thumbnail */
    up->width = up->height = 0;
    up->thumb_size = 0;
    return 0;
  }
  /* Which loader libvips would pick must be the one for the declared type; then that loader
   * alone opens the file, so no other format's parser ever sees user bytes. */
  const char *loader = vips_foreign_find_load(up->path);
  if (!loader || !contains_nocase(loader, loader_word(up->type))) {
    vips_reason(up);
    return TERN_MEDIA_ERR_UNSUPPORTED;
  }
  VipsImage *im = NULL;
  int rc;
  switch (up->type) {
    case TERN_MEDIA_JPEG:
      rc = vips_jpegload(up->path, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
      break;
    case TERN_MEDIA_PNG:
      rc = vips_pngload(up->path, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
      break;
    case TERN_MEDIA_WEBP:
      rc = vips_webpload(up->path, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
      break;
    case TERN_MEDIA_GIF:
      rc = vips_gifload(up->path, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
      break;
    default:
      rc = -1;
  }
  if (rc != 0) {
    vips_reason(up);
    return TERN_MEDIA_ERR_UNSUPPORTED;
  }
  /* Only the header is read so far: check the limits again on what the loader found. */
  uint32_t w = (uint32_t)im->Xsize, h = (uint32_t)im->Ysize;
  bool swap = vips_image_get_orientation_swap(im);
  g_object_unref(im);
  if (!tern_media_dims_ok(w, h, m->opt.max_dimension, m->opt.max_pixels)) return TERN_MEDIA_ERR_DIMENSIONS;
  up->width = swap ? h : w;
  up->height = swap ? w : h;

  /* The thumbnail decodes every pixel (with shrink-on-load where the format allows), so with
   * fail_on=error it is also the check that the whole image decodes. */
  int size = (int)m->opt.thumb_size;
  VipsImage *t = NULL;
  if (vips_thumbnail(up->path, &t, size, "height", size, "size", VIPS_SIZE_DOWN, "fail_on", VIPS_FAIL_ON_ERROR,
                     NULL) != 0) {
    vips_reason(up);
    return TERN_MEDIA_ERR_UNSUPPORTED;
  }
  if (vips_image_hasalpha(t)) {
    /* JPEG has no alpha: put transparent images on white, as chat clients show them. */
    VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
    VipsImage *flat = NULL;
    rc = vips_flatten(t, &flat, "background", white, NULL);
    vips_area_unref(VIPS_AREA(white));
    g_object_unref(t);
    if (rc != 0) {
      vips_reason(up);
      return TERN_MEDIA_ERR_UNSUPPORTED;
    }
    t = flat;
  }
  rc = vips_jpegsave(t, up->thumb_path, "Q", 80, "strip", TRUE, NULL);
  g_object_unref(t);
  if (rc != 0) {
    vips_reason(up);
    return TERN_MEDIA_ERR_UNSUPPORTED;
  }
  struct stat st;
  if (stat(up->thumb_path, &st) != 0 || fsync_path(up->thumb_path, false) != 0) return TERN_MEDIA_ERR_IO;
  up->thumb_size = (int64_t)st.st_size;
  return 0;
}

/* In the threadpool: move thumbnail then original into the content-addressed layout. The
 * original goes last, so a crash in between leaves at most an orphan thumbnail (removed by
 * recovery), and a record is only ever made after both are durable. An original already there
 * has the very same bytes (same hash), so ours is dropped; the thumbnail is replaced (atomically),
 * so the file always matches the thumb_size recorded now, even over a stale orphan. */
static int install(tern_media_upload *up) {
  tern_media *m = up->m;
  char dir[MEDIA_PATH_MAX], orig[MEDIA_PATH_MAX], thumb[MEDIA_PATH_MAX];
  const char *hex = up->content->hex; /* immutable while pinned */
  media_obj_dir(m, hex, dir);
  media_obj_path(m, hex, false, orig);
  media_obj_path(m, hex, true, thumb);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) return TERN_MEDIA_ERR_IO;
  if (up->type != TERN_MEDIA_OCTET && rename(up->thumb_path, thumb) != 0) return TERN_MEDIA_ERR_IO;
  if (access(orig, F_OK) == 0) unlink(up->path);
  else if (rename(up->path, orig) != 0) return TERN_MEDIA_ERR_IO;
  if (fsync_path(dir, true) != 0) return TERN_MEDIA_ERR_IO;
  return 0;
}

static void decode_work(uv_work_t *w) {
  tern_media_upload *up = w->data;
  up->derr = 0;
  up->vmsg[0] = '\0';
  if (up->fd >= 0) {
    /* The bytes must be on disk before a name and a record point at them. */
    if (!up->dup && fdatasync(up->fd) != 0) up->derr = TERN_MEDIA_ERR_IO;
    close(up->fd);
    up->fd = -1;
  }
  if (up->dup) {
    unlink(up->path);
    return;
  }
  if (!up->derr) up->derr = decode_image(up);
  if (!up->derr) up->derr = install(up);
  if (up->derr) {
    unlink(up->path);
    unlink(up->thumb_path);
  }
}

static void start_decode(tern_media_upload *up);

static void pump(tern_media *m) {
  while (m->dq_head && m->decoding < m->opt.decode_jobs) {
    tern_media_upload *up = m->dq_head;
    m->dq_head = up->qnext;
    if (!m->dq_head) m->dq_tail = NULL;
    up->qnext = NULL;
    start_decode(up);
  }
}

static void decode_after(uv_work_t *w, int status) {
  (void)status;
  tern_media_upload *up = w->data;
  tern_media *m = up->m;
  tern_media_content *c = up->content;
  up->op = false;
  if (up->slot) {
    up->slot = false;
    m->decoding--;
    pump(m);
  }
  c->pins--;
  if (up->derr == 0 && !up->dup) {
    c->type = up->type;
    c->width = up->width;
    c->height = up->height;
    c->size = up->total;
    c->thumb_size = up->thumb_size;
    c->present = true;
    media_bytes_count(m, c);
  }
  if (up->derr != 0) {
    TERN_INFO("media upload refused", "user=%s mime=%s bytes=%lld err=%d detail=%s", tern_log_quote(up->user),
              tern_media_type_mime(up->type), (long long)up->total, up->derr, tern_log_quote(up->vmsg));
  }
  if (up->detached) {
    media_content_release(m, c); /* aborted meanwhile: the object goes unless someone else holds it */
    free_up(up);
    return;
  }
  up->detached = true;
  tern_media_result res = {.err = up->derr};
  if (up->derr == 0) {
    res.rec = media_rec_create(m, up->user, c);
    res.duplicate = up->dup;
    TERN_DEBUG("media stored", "media_id=%s user=%s mime=%s bytes=%lld width=%u height=%u dup=%d", res.rec->id,
               tern_log_quote(up->user), tern_media_type_mime(up->type), (long long)up->total, res.rec->width,
               res.rec->height, up->dup);
  }
  up->cbs.done(up, &res, up->cbs.arg);
  if (up->derr != 0) media_content_release(m, c);
  free_up(up);
}

static void start_decode(tern_media_upload *up) {
  tern_media *m = up->m;
  tern_media_content *c = up->content;
  up->dup = c->refs > 0 && c->present;
  if (!up->dup) {
    up->slot = true;
    m->decoding++;
  }
  up->state = U_DECODING;
  up->op = true;
  queue(up, decode_work, decode_after);
}

/* Decides where an upload whose hash is known goes next. Also called by the store when an
 * unlink of the same content that this upload waited for has finished. */
void media_upload_dispatch(tern_media_upload *up) {
  tern_media *m = up->m;
  tern_media_content *c = up->content;
  if (c->unlinking) {
    /* The old copy of these bytes is being removed: storing now could lose the new one. */
    up->state = U_WAITING;
    up->qnext = c->waiters;
    c->waiters = up;
    return;
  }
  if ((c->refs > 0 && c->present) || m->decoding < m->opt.decode_jobs) {
    start_decode(up);
    return;
  }
  up->state = U_QUEUED;
  up->qnext = NULL;
  if (m->dq_tail) m->dq_tail->qnext = up;
  else m->dq_head = up;
  m->dq_tail = up;
}

/* Every byte is on disk: take the hash, pin the content, move on to decoding. */
static void finalize(tern_media_upload *up) {
  uint8_t md[32];
  unsigned int mdlen = 0;
  char hex[65];
  EVP_DigestFinal_ex(up->sha, md, &mdlen);
  tern_hex(hex, md, sizeof md);
  tern_media_content *c = media_content_get(up->m, hex, true);
  c->pins++;
  up->content = c;
  up->state = U_FINISHING;
  media_upload_dispatch(up);
}

/* Starts whatever the upload needs next, if nothing is in flight. Never frees up. */
static void step(tern_media_upload *up) {
  if (up->op) return;
  if (up->state == U_CLEANUP) {
    up->op = true;
    queue(up, cleanup_work, cleanup_after);
    return;
  }
  if (up->state != U_OPEN) return;
  if (up->pending.len > 0) {
    tern_buf t = up->writing;
    up->writing = up->pending;
    up->pending = t;
    up->op = true;
    queue(up, write_work, write_after);
    return;
  }
  if (up->finishing) finalize(up);
}
