/* media: the store side of the media module: records, content objects and their reference
 * counts, grants and fetch counting, the expiry heap and sweeper, quotas, serving opens, and
 * recovery at start-up. upload.c holds the sink. See media.h for the contract. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "media/media_int.h"

/* ---- errors ------------------------------------------------------------------------------------ */

const char *tern_media_strerror(int err) {
  switch (err) {
    case TERN_MEDIA_OK: return "ok";
    case TERN_MEDIA_ERR_UNSUPPORTED: return "the body is not a decodable image of the declared Content-Type";
    case TERN_MEDIA_ERR_TOO_LARGE: return "the upload is larger than media.max_bytes";
    case TERN_MEDIA_ERR_DIMENSIONS: return "the image dimensions exceed media.max_dimension or media.max_pixels";
    case TERN_MEDIA_ERR_QUOTA: return "upload quota exceeded; retry later";
    case TERN_MEDIA_ERR_TIMEOUT: return "the upload stopped sending";
    case TERN_MEDIA_ERR_IO: return "the media store could not write the file";
    case TERN_MEDIA_ERR_NOT_FOUND: return "no such media";
    case TERN_MEDIA_ERR_BUSY: return "the media store is not accepting this now";
    case TERN_MEDIA_ERR_INVALID: return "invalid request";
    default: return "unknown media error";
  }
}

void tern_media_err_http(int err, int *status, const char **code) {
  int s;
  const char *c;
  switch (err) {
    case TERN_MEDIA_OK: s = 200; c = "ok"; break;
    case TERN_MEDIA_ERR_UNSUPPORTED: s = 415; c = "unsupported_media_type"; break;
    case TERN_MEDIA_ERR_TOO_LARGE:
    case TERN_MEDIA_ERR_DIMENSIONS: s = 413; c = "too_large"; break;
    case TERN_MEDIA_ERR_QUOTA: s = 429; c = "rate_limited"; break;
    case TERN_MEDIA_ERR_TIMEOUT: s = 408; c = "request_timeout"; break;
    case TERN_MEDIA_ERR_NOT_FOUND: s = 404; c = "not_found"; break;
    case TERN_MEDIA_ERR_BUSY: s = 503; c = "unavailable"; break;
    case TERN_MEDIA_ERR_INVALID: s = 400; c = "bad_request"; break;
    default: s = 500; c = "internal"; break;
  }
  if (status) *status = s;
  if (code) *code = c;
}

/* ---- options, paths, lifetime of the store ----------------------------------------------------- */

void tern_media_options_from_config(tern_media_options *o, const tern_config *cfg) {
  memset(o, 0, sizeof *o);
  o->data_dir = cfg->data_dir;
  o->max_bytes = cfg->media_max_bytes;
  o->ttl_ms = cfg->media_ttl_ms;
  o->unsent_ttl_ms = cfg->media_unsent_ttl_ms;
  o->max_dimension = cfg->media_max_dimension;
  o->max_pixels = cfg->media_max_pixels;
  o->thumb_size = cfg->media_thumb_size;
  o->upload_timeout_ms = cfg->media_upload_timeout_ms;
  o->min_upload_rate = cfg->media_min_upload_rate;
  o->quota_bytes_per_hour = cfg->media_quota_bytes_per_hour;
  o->sweep_batch = cfg->media_sweep_batch;
  o->sweep_interval_ms = cfg->media_sweep_interval_ms;
  o->decode_jobs = cfg->media_decode_jobs;
  o->avatar_grace_ms = cfg->media_avatar_grace_ms;
}

int64_t media_now(const tern_media *m) { return m->opt.now_ms ? m->opt.now_ms() : tern_now_ms(); }

void media_obj_dir(const tern_media *m, const char *hex, char *out) {
  snprintf(out, MEDIA_PATH_MAX, "%s/%.2s", m->dir_obj, hex);
}

void media_obj_path(const tern_media *m, const char *hex, bool thumb, char *out) {
  snprintf(out, MEDIA_PATH_MAX, "%s/%.2s/%.64s%s", m->dir_obj, hex, hex, thumb ? ".thumb.jpg" : "");
}

static int mkdir_one(const char *path, char *err, size_t errlen) {
  if (mkdir(path, 0700) == 0 || errno == EEXIST) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    snprintf(err, errlen, "media: %s exists and is not a directory", path);
    return TERN_MEDIA_ERR_IO;
  }
  snprintf(err, errlen, "media: cannot create %s: %s", path, strerror(errno));
  return TERN_MEDIA_ERR_IO;
}

static char *join(const char *a, const char *b) {
  tern_buf s = {0};
  tern_buf_printf(&s, "%s/%s", a, b);
  return tern_buf_steal(&s, NULL);
}

static void free_all(tern_media *m);

void media_ref(tern_media *m) { m->inflight++; }

void media_unref(tern_media *m) {
  m->inflight--;
  if (m->closing && m->inflight == 0) free_all(m);
}

static void on_timer_closed(uv_handle_t *h) { media_unref(h->data); }

int tern_media_open(uv_loop_t *loop, const tern_media_options *o, tern_media **out, char *err, size_t errlen) {
  if (!o->data_dir || !*o->data_dir || strlen(o->data_dir) > 3000) {
    snprintf(err, errlen, "media: data dir missing or too long");
    return TERN_MEDIA_ERR_INVALID;
  }
  if (o->max_bytes <= 0 || o->thumb_size <= 0 || o->max_dimension <= 0 || o->max_pixels <= 0 ||
      o->quota_bytes_per_hour <= 0 || o->upload_timeout_ms <= 0) {
    snprintf(err, errlen, "media: limits must be positive");
    return TERN_MEDIA_ERR_INVALID;
  }
  tern_media *m = TERN_NEW(tern_media);
  m->loop = loop;
  m->opt = *o;
  m->dir_data = tern_strdup(o->data_dir);
  m->opt.data_dir = m->dir_data;
  if (m->opt.decode_jobs <= 0) m->opt.decode_jobs = 1;
  if (m->opt.sweep_batch <= 0) m->opt.sweep_batch = 200;
  if (m->opt.sweep_interval_ms <= 0) m->opt.sweep_interval_ms = 60000;
  char *media_dir = join(m->dir_data, "media");
  m->dir_tmp = join(media_dir, "tmp");
  m->dir_obj = join(media_dir, "objects");
  int rc = mkdir_one(m->dir_data, err, errlen);
  if (!rc) rc = mkdir_one(media_dir, err, errlen);
  if (!rc) rc = mkdir_one(m->dir_tmp, err, errlen);
  if (!rc) rc = mkdir_one(m->dir_obj, err, errlen);
  tern_free(media_dir);
  if (rc) {
    tern_free(m->dir_data);
    tern_free(m->dir_tmp);
    tern_free(m->dir_obj);
    tern_free(m);
    return rc;
  }
  media_vips_init();
  uv_timer_init(loop, &m->sweep_timer);
  m->sweep_timer.data = m;
  /* The sweeper alone must not keep a loop alive (tests and shutdown run the loop dry). */
  uv_unref((uv_handle_t *)&m->sweep_timer);
  uv_timer_init(loop, &m->idle_timer);
  m->idle_timer.data = m;
  media_ref(m); /* one per timer handle, dropped by its close callback */
  media_ref(m);
  *out = m;
  return 0;
}

static bool free_rec_cb(const char *k, size_t kl, void *v, void *arg) {
  (void)k, (void)kl, (void)arg;
  tern_media_rec_free(v);
  return true;
}
static bool free_value_cb(const char *k, size_t kl, void *v, void *arg) {
  (void)k, (void)kl, (void)arg;
  tern_free(v);
  return true;
}

static void free_all(tern_media *m) {
  tern_map_each(&m->recs, free_rec_cb, NULL);
  tern_map_each(&m->contents, free_value_cb, NULL);
  tern_map_each(&m->quota, free_value_cb, NULL);
  tern_map_free(&m->recs);
  tern_map_free(&m->contents);
  tern_map_free(&m->quota);
  tern_free(m->heap);
  tern_free(m->dir_data);
  tern_free(m->dir_tmp);
  tern_free(m->dir_obj);
  tern_free(m);
}

void tern_media_close(tern_media *m) {
  if (!m || m->closing) return;
  m->closing = true;
  media_upload_abort_all(m);
  uv_timer_stop(&m->sweep_timer);
  uv_timer_stop(&m->idle_timer);
  uv_close((uv_handle_t *)&m->sweep_timer, on_timer_closed);
  uv_close((uv_handle_t *)&m->idle_timer, on_timer_closed);
}

/* ---- expiry heap (min-heap on each record's deadline) --------------------------------------- */

int64_t tern_media_rec_deadline(const tern_media_rec *r, int64_t ttl_ms, int64_t unsent_ttl_ms,
                                int64_t avatar_grace_ms) {
  if (r->avatar) return r->avatar_off ? r->avatar_off + avatar_grace_ms : INT64_MAX;
  int64_t ttl = ttl_ms;
  if (r->sent_at == 0 && unsent_ttl_ms < ttl) ttl = unsent_ttl_ms;
  return r->created + ttl;
}

static int64_t deadline(const tern_media *m, const tern_media_rec *r) {
  return tern_media_rec_deadline(r, m->opt.ttl_ms, m->opt.unsent_ttl_ms, m->opt.avatar_grace_ms);
}

static void heap_set(tern_media *m, size_t i, tern_media_rec *r) {
  m->heap[i] = r;
  r->heap_index = i;
}

static void heap_up(tern_media *m, size_t i) {
  tern_media_rec *r = m->heap[i];
  int64_t d = deadline(m, r);
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (deadline(m, m->heap[p]) <= d) break;
    heap_set(m, i, m->heap[p]);
    i = p;
  }
  heap_set(m, i, r);
}

static void heap_down(tern_media *m, size_t i) {
  tern_media_rec *r = m->heap[i];
  int64_t d = deadline(m, r);
  for (;;) {
    size_t l = 2 * i + 1, s = i;
    int64_t sd = d;
    if (l < m->nheap && deadline(m, m->heap[l]) < sd) {
      s = l;
      sd = deadline(m, m->heap[l]);
    }
    if (l + 1 < m->nheap && deadline(m, m->heap[l + 1]) < sd) s = l + 1;
    if (s == i) break;
    heap_set(m, i, m->heap[s]);
    i = s;
  }
  heap_set(m, i, r);
}

static void heap_push(tern_media *m, tern_media_rec *r) {
  if (m->nheap == m->heap_cap) {
    m->heap_cap = m->heap_cap ? m->heap_cap * 2 : 64;
    m->heap = tern_realloc(m->heap, m->heap_cap * sizeof *m->heap);
  }
  heap_set(m, m->nheap++, r);
  heap_up(m, m->nheap - 1);
}

static void heap_remove(tern_media *m, tern_media_rec *r) {
  size_t i = r->heap_index;
  m->nheap--;
  if (i == m->nheap) return;
  heap_set(m, i, m->heap[m->nheap]);
  heap_up(m, i);
  heap_down(m, m->heap[i]->heap_index);
}

/* ---- contents -------------------------------------------------------------------------------- */

tern_media_content *media_content_get(tern_media *m, const char *hex, bool create) {
  tern_media_content *c = tern_map_get(&m->contents, hex, 64);
  if (c || !create) return c;
  c = TERN_NEW(tern_media_content);
  memcpy(c->hex, hex, 64);
  c->hex[64] = '\0';
  tern_map_put(&m->contents, c->hex, 64, c);
  return c;
}

void media_bytes_count(tern_media *m, tern_media_content *c) {
  if (c->counted) return;
  c->counted = true;
  m->bytes += c->size + c->thumb_size;
}

typedef struct unlink_job {
  uv_work_t work;            /* threadpool request */
  tern_media *m;
  tern_media_content *c;     /* stays in the map (unlinking) until the job is over */
  char orig[MEDIA_PATH_MAX]; /* files to remove */
  char thumb[MEDIA_PATH_MAX];
} unlink_job;

static void unlink_work(uv_work_t *w) {
  unlink_job *j = w->data;
  if (unlink(j->thumb) < 0 && errno != ENOENT) TERN_WARN("media unlink failed", "path=%s err=%s", tern_log_quote(j->thumb), strerror(errno));
  if (unlink(j->orig) < 0 && errno != ENOENT) TERN_WARN("media unlink failed", "path=%s err=%s", tern_log_quote(j->orig), strerror(errno));
}

static void unlink_after(uv_work_t *w, int status) {
  (void)status; /* a queued unlink is never cancelled */
  unlink_job *j = w->data;
  tern_media *m = j->m;
  tern_media_content *c = j->c;
  c->unlinking = false;
  c->present = c->seen_orig = c->seen_thumb = false;
  if (c->counted) {
    m->bytes -= c->size + c->thumb_size;
    c->counted = false;
  }
  if (c->waiters) {
    /* Uploads of these very bytes arrived while the old copy was going: now they may store it. */
    tern_media_upload *up = c->waiters;
    c->waiters = NULL;
    while (up) {
      tern_media_upload *nx = media_upload_next_waiter(up, NULL);
      media_upload_dispatch(up);
      up = nx;
    }
  } else if (c->refs == 0 && c->pins == 0) {
    tern_map_del(&m->contents, c->hex, 64);
    tern_free(c);
  }
  tern_free(j);
  media_unref(m);
}

void media_content_release(tern_media *m, tern_media_content *c) {
  if (c->refs || c->pins || c->unlinking) return;
  if (!c->present && !c->seen_orig && !c->seen_thumb && !c->counted) {
    /* Never made it to disk (a failed upload): nothing to unlink. */
    tern_map_del(&m->contents, c->hex, 64);
    tern_free(c);
    return;
  }
  unlink_job *j = TERN_NEW(unlink_job);
  j->m = m;
  j->c = c;
  j->work.data = j;
  media_obj_path(m, c->hex, false, j->orig);
  media_obj_path(m, c->hex, true, j->thumb);
  c->unlinking = true;
  media_ref(m);
  if (uv_queue_work(m->loop, &j->work, unlink_work, unlink_after) != 0) {
    /* Only when the loop is being torn down: leave the files to the next start's recovery. */
    c->unlinking = false;
    tern_free(j);
    media_unref(m);
  }
}

/* ---- records ----------------------------------------------------------------------------------- */

static void persist_put(tern_media *m, const tern_media_rec *r) {
  if (m->opt.persist.put) m->opt.persist.put(r, m->opt.persist.arg);
}
static void persist_del(tern_media *m, const char *id) {
  if (m->opt.persist.del) m->opt.persist.del(id, m->opt.persist.arg);
}

/* 26 base32 characters from 130 random bits (17 random bytes, the last 6 bits unused). */
static void random_id(char out[TERN_MEDIA_ID_LEN + 1]) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  uint8_t r[17];
  tern_random(r, sizeof r);
  for (int i = 0; i < TERN_MEDIA_ID_LEN; i++) {
    int bit = i * 5, byte = bit / 8, shift = bit % 8;
    unsigned v = (unsigned)r[byte] << 8 | r[byte + 1];
    out[i] = alphabet[(v >> (11 - shift)) & 31];
  }
  out[TERN_MEDIA_ID_LEN] = '\0';
}

static void rec_insert(tern_media *m, tern_media_rec *r, tern_media_content *c) {
  r->content = c;
  c->refs++;
  tern_map_put(&m->recs, r->id, TERN_MEDIA_ID_LEN, r);
  heap_push(m, r);
}

tern_media_rec *media_rec_create(tern_media *m, const char *owner, tern_media_content *c) {
  tern_media_rec *r = TERN_NEW(tern_media_rec);
  do random_id(r->id);
  while (tern_map_get(&m->recs, r->id, TERN_MEDIA_ID_LEN)); /* 2^-130: the loop never turns */
  r->owner = tern_strdup(owner);
  r->type = c->type;
  r->size = c->size;
  r->thumb_size = c->thumb_size;
  for (int i = 0; i < 32; i++) {
    unsigned hi, lo;
    sscanf(c->hex + 2 * i, "%1x%1x", &hi, &lo);
    r->sha256[i] = (uint8_t)(hi << 4 | lo);
  }
  memcpy(r->sha256_hex, c->hex, 65);
  r->width = c->width;
  r->height = c->height;
  r->created = media_now(m);
  rec_insert(m, r, c);
  persist_put(m, r);
  return r;
}

static void rec_delete(tern_media *m, tern_media_rec *r, bool persist) {
  tern_media_content *c = r->content;
  tern_map_del(&m->recs, r->id, TERN_MEDIA_ID_LEN);
  heap_remove(m, r);
  if (persist) persist_del(m, r->id);
  c->refs--;
  tern_media_rec_free(r);
  media_content_release(m, c);
}

int tern_media_load_record(tern_media *m, const uint8_t *bytes, size_t len) {
  if (m->recovering || m->recovered || m->closing) return TERN_MEDIA_ERR_BUSY;
  tern_media_rec *r;
  if (tern_media_rec_decode(bytes, len, &r) != 0) return TERN_MEDIA_ERR_INVALID;
  if (tern_map_get(&m->recs, r->id, TERN_MEDIA_ID_LEN) || strlen(r->owner) > 255) {
    tern_media_rec_free(r);
    return TERN_MEDIA_ERR_INVALID;
  }
  tern_media_content *c = media_content_get(m, r->sha256_hex, true);
  if (c->refs == 0) {
    c->type = r->type;
    c->width = r->width;
    c->height = r->height;
    c->size = r->size;
    c->thumb_size = r->thumb_size;
    media_bytes_count(m, c); /* recovery takes it back out if the files are missing */
  }
  rec_insert(m, r, c);
  return 0;
}

/* Expired or not (the sweep, grants and revocations, the feed's merge). */
static tern_media_rec *get_mut(tern_media *m, const char *id) {
  if (!id || !tern_media_id_valid(id, strlen(id))) return NULL;
  return tern_map_get(&m->recs, id, TERN_MEDIA_ID_LEN);
}

const tern_media_rec *tern_media_get(tern_media *m, const char *id) {
  const tern_media_rec *r = get_mut(m, id);
  /* the sweep runs every media.sweep_interval, and in a cluster each node sweeps its own
   * copy: a reader must not see the record live on one node and gone on another */
  return r && deadline(m, r) > media_now(m) ? r : NULL;
}

static bool in_list(char **v, uint32_t n, const char *s) {
  for (uint32_t i = 0; i < n; i++)
    if (strcmp(v[i], s) == 0) return true;
  return false;
}

bool tern_media_can_read(const tern_media_rec *r, const char *user) {
  if (!r || !user) return false;
  return strcmp(r->owner, user) == 0 || in_list(r->grants, r->ngrants, user);
}

static void list_add(char ***v, uint32_t *n, const char *s) {
  *v = tern_realloc(*v, (*n + 1) * sizeof **v);
  (*v)[(*n)++] = tern_strdup(s);
}

int tern_media_grant(tern_media *m, const char *id, const char *to_user, uint32_t recipient_devices) {
  tern_media_rec *r = get_mut(m, id);
  if (!r) return TERN_MEDIA_ERR_NOT_FOUND;
  size_t ul = to_user ? strlen(to_user) : 0;
  if (ul == 0 || ul > 255) return TERN_MEDIA_ERR_INVALID;
  if (strcmp(to_user, r->owner) != 0 && !in_list(r->grants, r->ngrants, to_user)) {
    list_add(&r->grants, &r->ngrants, to_user);
    /* Saturate rather than wrap: a wrapped count could delete the media too early. */
    r->pending_devices = (r->pending_devices > UINT32_MAX - recipient_devices) ? UINT32_MAX
                                                                                : r->pending_devices + recipient_devices;
  }
  if (r->sent_at == 0) {
    r->sent_at = media_now(m);
    heap_down(m, r->heap_index); /* its deadline moved from unsent_ttl to ttl: later */
  }
  persist_put(m, r);
  return 0;
}

int tern_media_fetched(tern_media *m, const char *id, const char *user, const char *device_id) {
  tern_media_rec *r = get_mut(m, id);
  if (!r) return TERN_MEDIA_ERR_NOT_FOUND;
  size_t dl = device_id ? strlen(device_id) : 0;
  if (!user || dl == 0 || dl > 255) return TERN_MEDIA_ERR_INVALID;
  if (strcmp(user, r->owner) == 0 || !in_list(r->grants, r->ngrants, user)) return 0;
  if (in_list(r->fetched, r->nfetched, device_id)) return 0;
  list_add(&r->fetched, &r->nfetched, device_id);
  if (r->pending_devices > 0 && r->nfetched >= r->pending_devices) {
    TERN_DEBUG("media fetched by every recipient", "media_id=%s", r->id);
    rec_delete(m, r, true);
    return 1;
  }
  persist_put(m, r);
  return 0;
}

/* The deadline may move either way: the record goes up or down the heap. */
static void avatar_update(tern_media *m, tern_media_rec *r, int64_t off) {
  r->avatar = true;
  r->avatar_off = off;
  heap_up(m, r->heap_index);
  heap_down(m, r->heap_index);
  persist_put(m, r);
}

int tern_media_mark_avatar(tern_media *m, const char *id) {
  tern_media_rec *r = get_mut(m, id);
  if (!r) return TERN_MEDIA_ERR_NOT_FOUND;
  avatar_update(m, r, r->created > 0 ? r->created : 1);
  return 0;
}

int tern_media_set_avatar(tern_media *m, const char *id, bool on) {
  tern_media_rec *r = get_mut(m, id);
  if (!r || !r->avatar) return TERN_MEDIA_ERR_NOT_FOUND;
  int64_t now = media_now(m);
  avatar_update(m, r, on ? 0 : now > 0 ? now : 1);
  return 0;
}

int tern_media_revoke(tern_media *m, const char *id, const char *const *users, size_t nusers) {
  tern_media_rec *r = get_mut(m, id);
  if (!r) return TERN_MEDIA_ERR_NOT_FOUND;
  bool changed = false;
  for (size_t k = 0; k < nusers; k++) {
    for (uint32_t i = 0; i < r->ngrants; i++) {
      if (strcmp(r->grants[i], users[k]) != 0) continue;
      tern_free(r->grants[i]);
      r->grants[i] = r->grants[--r->ngrants];
      changed = true;
      break;
    }
  }
  /* Nobody but the owner may read it now: the message that carried it is gone for everyone,
   * and so is the media. */
  if (r->ngrants == 0 && r->sent_at) {
    rec_delete(m, r, true);
    return 1;
  }
  if (changed) persist_put(m, r); /* else revoked before: a delete revokes first, then once stored */
  return 0;
}

int tern_media_apply_remote(tern_media *m, const uint8_t *bytes, size_t len) {
  if (m->closing) return TERN_MEDIA_ERR_BUSY;
  tern_media_rec *in;
  if (tern_media_rec_decode(bytes, len, &in) != 0) return TERN_MEDIA_ERR_INVALID;
  if (strlen(in->owner) > 255) {
    tern_media_rec_free(in);
    return TERN_MEDIA_ERR_INVALID;
  }
  tern_media_rec *r = get_mut(m, in->id);
  if (!r) {
    /* new here: its content is known by hash; its files come on the first read */
    tern_media_content *c = media_content_get(m, in->sha256_hex, true);
    if (c->refs == 0 && c->pins == 0 && !c->present) {
      c->type = in->type;
      c->width = in->width;
      c->height = in->height;
      c->size = in->size;
      c->thumb_size = in->thumb_size;
    }
    rec_insert(m, in, c);
    return 0;
  }
  bool ahead = tern_media_rec_merge(r, in);
  tern_media_rec_free(in);
  heap_up(m, r->heap_index); /* sent_at and the avatar state may have moved its deadline */
  heap_down(m, r->heap_index);
  if (r->pending_devices > 0 && r->nfetched >= r->pending_devices) {
    rec_delete(m, r, true); /* fetches counted on two nodes at once completed the count */
    return 0;
  }
  if (ahead) persist_put(m, r);
  return 0;
}

int tern_media_forget(tern_media *m, const char *id) {
  tern_media_rec *r = get_mut(m, id);
  if (!r) return TERN_MEDIA_ERR_NOT_FOUND;
  rec_delete(m, r, false);
  return 0;
}

void tern_media_file_paths(const tern_media *m, const tern_media_rec *rec, char *orig, char *thumb) {
  media_obj_path(m, rec->sha256_hex, false, orig);
  if (rec->type == TERN_MEDIA_OCTET) thumb[0] = '\0';
  else media_obj_path(m, rec->sha256_hex, true, thumb);
}

int tern_media_cache_begin(tern_media *m, const tern_media_rec *rec, char *orig, char *thumb) {
  tern_media_content *c = rec ? rec->content : NULL;
  if (!c || m->closing || c->unlinking) return TERN_MEDIA_ERR_BUSY;
  c->pins++;
  tern_media_file_paths(m, rec, orig, thumb);
  return 0;
}

void tern_media_cache_end(tern_media *m, const char *sha256_hex, bool ok) {
  tern_media_content *c = media_content_get(m, sha256_hex, false);
  if (!c) return;
  if (c->pins) c->pins--;
  if (ok) {
    c->present = c->seen_orig = c->seen_thumb = true;
    media_bytes_count(m, c);
  }
  media_content_release(m, c); /* the record went while the files came: they go too */
}

int tern_media_delete(tern_media *m, const char *id) {
  tern_media_rec *r = get_mut(m, id);
  if (!r) return TERN_MEDIA_ERR_NOT_FOUND;
  rec_delete(m, r, true);
  return 0;
}

typedef struct unsent_walk {
  const char *owner;
  tern_media_rec **v;
  size_t n, cap;
} unsent_walk;

static bool collect_unsent(const char *k, size_t kl, void *val, void *arg) {
  unsent_walk *w = arg;
  tern_media_rec *r = val;
  if (r->sent_at == 0 && r->owner && !strcmp(r->owner, w->owner)) {
    if (w->n == w->cap) {
      w->cap = w->cap ? w->cap * 2 : 8;
      w->v = tern_realloc(w->v, w->cap * sizeof *w->v);
    }
    w->v[w->n++] = r;
  }
  return true;
}

size_t tern_media_delete_unsent(tern_media *m, const char *owner) {
  unsent_walk w = {.owner = owner};
  tern_map_each(&m->recs, collect_unsent, &w); /* collect, then delete: no change while walking */
  for (size_t i = 0; i < w.n; i++) rec_delete(m, w.v[i], true);
  tern_free(w.v);
  return w.n;
}

int tern_media_sweep(tern_media *m, int64_t now, int batch, bool *more) {
  int n = 0;
  while (m->nheap > 0 && n < batch && deadline(m, m->heap[0]) <= now) {
    rec_delete(m, m->heap[0], true);
    n++;
  }
  if (more) *more = m->nheap > 0 && deadline(m, m->heap[0]) <= now;
  return n;
}

/* Any thread (/metrics on another worker): a relaxed load of a one-writer counter. */
int64_t tern_media_bytes(const tern_media *m) { return __atomic_load_n(&m->bytes, __ATOMIC_RELAXED); }
size_t tern_media_count(const tern_media *m) { return m->recs.count; }

/* ---- quota: a leaky bucket per user, draining quota_bytes_per_hour ------------------------- */

static double drain_rate(const tern_media *m) { return (double)m->opt.quota_bytes_per_hour / 3600000.0; }

static void drain(const tern_media *m, quota_bucket *b, int64_t now) {
  if (now > b->at) {
    b->level -= (double)(now - b->at) * drain_rate(m);
    if (b->level < 0) b->level = 0;
    b->at = now;
  }
}

int64_t tern_media_quota_retry_after(tern_media *m, const char *user, int64_t bytes, int64_t now) {
  quota_bucket *b = tern_map_gets(&m->quota, user);
  double level = 0, cap = (double)m->opt.quota_bytes_per_hour;
  if (b) {
    drain(m, b, now);
    level = b->level;
  }
  /* One upload larger than the whole quota waits for an empty bucket, never forever. */
  double want = bytes > 0 ? (double)bytes : 1.0;
  if (want > cap) want = cap;
  double over = level + want - cap;
  if (over <= 0) return 0;
  double secs = ceil(over / drain_rate(m) / 1000.0);
  return secs < 1 ? 1 : (int64_t)secs;
}

void media_quota_charge(tern_media *m, const char *user, int64_t bytes, int64_t now) {
  quota_bucket *b = tern_map_gets(&m->quota, user);
  if (!b) {
    b = TERN_NEW(quota_bucket);
    b->at = now;
    tern_map_puts(&m->quota, user, b);
  }
  drain(m, b, now);
  b->level += (double)bytes;
}

typedef struct prune_ctx {
  tern_media *m;
  int64_t now;
  tern_buf drained; /* NUL-separated users whose bucket is empty */
} prune_ctx;

static bool prune_cb(const char *k, size_t kl, void *v, void *arg) {
  prune_ctx *p = arg;
  quota_bucket *b = v;
  drain(p->m, b, p->now);
  if (b->level <= 0) {
    tern_buf_append(&p->drained, k, kl);
    tern_buf_putc(&p->drained, '\0');
  }
  return true;
}

static void quota_prune(tern_media *m, int64_t now) {
  prune_ctx p = {m, now, {0}};
  tern_map_each(&m->quota, prune_cb, &p);
  for (size_t i = 0; i < p.drained.len;) {
    const char *u = p.drained.data + i;
    tern_free(tern_map_dels(&m->quota, u));
    i += strlen(u) + 1;
  }
  tern_buf_free(&p.drained);
}

/* ---- sweeper ------------------------------------------------------------------------------------ */

static void on_sweep(uv_timer_t *t) {
  tern_media *m = t->data;
  int64_t now = media_now(m);
  bool more = false;
  int n = tern_media_sweep(m, now, (int)m->opt.sweep_batch, &more);
  quota_prune(m, now);
  if (n > 0) TERN_INFO("media swept", "removed=%d more=%d bytes=%lld", n, more, (long long)m->bytes);
  /* Bounded steps: when more are due, continue on the next loop turn, not in this one. */
  uv_timer_start(&m->sweep_timer, on_sweep, more ? 0 : (uint64_t)m->opt.sweep_interval_ms, 0);
}

void tern_media_start_sweeper(tern_media *m) {
  if (m->closing || m->sweeper_on) return;
  m->sweeper_on = true;
  uv_timer_start(&m->sweep_timer, on_sweep, (uint64_t)m->opt.sweep_interval_ms, 0);
}

/* ---- serving ------------------------------------------------------------------------------------ */

typedef struct open_job {
  uv_work_t work;            /* threadpool request */
  tern_media *m;
  char path[MEDIA_PATH_MAX]; /* file to open */
  tern_media_open_cb cb;
  void *arg;
  tern_media_file f;         /* result */
  int err;                   /* result */
} open_job;

static void open_work(uv_work_t *w) {
  open_job *j = w->data;
  int fd = open(j->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    j->err = errno == ENOENT ? TERN_MEDIA_ERR_NOT_FOUND : TERN_MEDIA_ERR_IO;
    return;
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    close(fd);
    j->err = TERN_MEDIA_ERR_IO;
    return;
  }
  j->f.fd = fd;
  j->f.size = (int64_t)st.st_size;
}

static void open_after(uv_work_t *w, int status) {
  open_job *j = w->data;
  tern_media *m = j->m;
  if (status == UV_ECANCELED && !j->err) j->err = TERN_MEDIA_ERR_BUSY;
  j->cb(j->err, j->err ? NULL : &j->f, j->arg);
  tern_free(j);
  media_unref(m);
}

int tern_media_open_file(tern_media *m, const tern_media_rec *rec, bool thumb, tern_media_open_cb cb, void *arg) {
  if (!rec || !cb) return TERN_MEDIA_ERR_INVALID;
  if (m->closing) return TERN_MEDIA_ERR_BUSY;
  open_job *j = TERN_NEW(open_job);
  j->m = m;
  j->cb = cb;
  j->arg = arg;
  j->work.data = j;
  j->f.fd = -1;
  j->f.mime = thumb ? "image/jpeg" : tern_media_type_mime(rec->type);
  tern_media_etag(rec->sha256_hex, thumb, j->f.etag);
  media_obj_path(m, rec->sha256_hex, thumb, j->path);
  media_ref(m);
  if (uv_queue_work(m->loop, &j->work, open_work, open_after) != 0) {
    tern_free(j);
    media_unref(m);
    return TERN_MEDIA_ERR_BUSY;
  }
  return 0;
}

/* ---- recovery ----------------------------------------------------------------------------------- */

typedef struct recover_job {
  uv_work_t work;            /* threadpool request */
  tern_media *m;
  tern_media_recover_cb cb;
  void *arg;
  tern_media_recover_stats st;
  int step;                  /* -1: tmp/, 0..255: objects/xx, 256: done */
  char dir[MEDIA_PATH_MAX];  /* directory the job lists */
  tern_buf names;            /* out: NUL-separated names of regular files in dir */
  tern_buf doomed;           /* in: NUL-separated paths to unlink before listing */
} recover_job;

static void recover_work(uv_work_t *w) {
  recover_job *j = w->data;
  for (size_t i = 0; i < j->doomed.len;) {
    const char *p = j->doomed.data + i;
    if (unlink(p) < 0 && errno != ENOENT) TERN_WARN("media unlink failed", "path=%s err=%s", tern_log_quote(p), strerror(errno));
    i += strlen(p) + 1;
  }
  tern_buf_reset(&j->names);
  if (j->step > 255) return;
  DIR *d = opendir(j->dir);
  if (!d) return; /* a subdirectory that was never needed */
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0'))) continue;
    bool reg = e->d_type == DT_REG;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      reg = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    }
    if (!reg) continue; /* we only ever create regular files here; leave anything else alone */
    tern_buf_puts(&j->names, e->d_name);
    tern_buf_putc(&j->names, '\0');
  }
  closedir(d);
}

static bool is_hex64(const char *s, size_t n) {
  if (n < 64) return false;
  for (size_t i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

static void doom(recover_job *j, const char *name) {
  tern_buf_printf(&j->doomed, "%s/%s", j->dir, name);
  tern_buf_putc(&j->doomed, '\0');
}

/* Decides, on the loop thread, which listed files belong to something: only the loop knows
 * the records and the uploads in flight, so only it may call a file an orphan. */
static void classify(recover_job *j) {
  tern_media *m = j->m;
  for (size_t i = 0; i < j->names.len;) {
    const char *name = j->names.data + i;
    size_t nl = strlen(name);
    i += nl + 1;
    if (j->step < 0) {
      if (!media_upload_owns_tmp(m, name)) {
        doom(j, name);
        j->st.tmp_removed++;
      }
      continue;
    }
    static const char hexd[] = "0123456789abcdef";
    const char sub[2] = {hexd[(j->step >> 4) & 15], hexd[j->step & 15]};
    bool orig = nl == 64 && is_hex64(name, nl);
    bool thumb = nl == 74 && is_hex64(name, nl) && strcmp(name + 64, ".thumb.jpg") == 0;
    tern_media_content *c = (orig || thumb) && memcmp(name, sub, 2) == 0 ? media_content_get(m, name, false) : NULL;
    if (c && (c->refs || c->pins) && !c->unlinking) {
      if (orig) c->seen_orig = true;
      else c->seen_thumb = true;
    } else {
      doom(j, name);
      j->st.orphans_removed++;
    }
  }
}

typedef struct dangling_ctx {
  tern_buf ids; /* NUL-separated */
} dangling_ctx;

static bool dangling_cb(const char *k, size_t kl, void *v, void *arg) {
  tern_media_rec *r = v;
  tern_media_content *c = r->content;
  /* an opaque blob (OCTET) has no thumbnail to see */
  if (!(c->present || (c->seen_orig && (c->seen_thumb || r->type == TERN_MEDIA_OCTET)))) {
    tern_buf_append(&((dangling_ctx *)arg)->ids, k, kl);
    tern_buf_putc(&((dangling_ctx *)arg)->ids, '\0');
  }
  return true;
}

static void recover_after(uv_work_t *w, int status);

static void recover_next(recover_job *j) {
  tern_media *m = j->m;
  if (j->step < 0) snprintf(j->dir, sizeof j->dir, "%s", m->dir_tmp);
  else if (j->step <= 255) snprintf(j->dir, sizeof j->dir, "%s/%02x", m->dir_obj, j->step);
  if (uv_queue_work(m->loop, &j->work, recover_work, recover_after) != 0) {
    tern_buf_free(&j->names);
    tern_buf_free(&j->doomed);
    m->recovering = false;
    tern_free(j);
    media_unref(m);
  }
}

static void recover_after(uv_work_t *w, int status) {
  (void)status;
  recover_job *j = w->data;
  tern_media *m = j->m;
  tern_buf_reset(&j->doomed);
  if (m->closing) {
    tern_buf_free(&j->names);
    tern_buf_free(&j->doomed);
    tern_free(j);
    media_unref(m);
    return;
  }
  if (j->step <= 255) {
    classify(j);
    j->step++;
    recover_next(j); /* the next job first unlinks what this one found orphaned */
    return;
  }
  /* Every directory seen: records whose files are missing are dangling. */
  dangling_ctx d = {{0}};
  tern_map_each(&m->recs, dangling_cb, &d);
  for (size_t i = 0; i < d.ids.len;) {
    const char *id = d.ids.data + i;
    i += strlen(id) + 1;
    tern_media_rec *r = get_mut(m, id);
    if (!r) continue;
    if (m->opt.remote_bytes) {
      /* cluster mode: the bytes are in the blob store; this node fetches them when read */
      tern_media_content *c = r->content;
      c->seen_orig = c->seen_thumb = false;
      c->present = false;
      if (c->counted) {
        m->bytes -= c->size + c->thumb_size;
        c->counted = false;
      }
      continue;
    }
    TERN_WARN("media record without its files dropped", "media_id=%s sha256=%s", r->id, r->sha256_hex);
    rec_delete(m, r, true);
    j->st.records_dropped++;
  }
  j->st.records_kept = m->recs.count;
  /* The survivors' files are on disk: later uploads of the same bytes may skip decoding. */
  for (size_t i = 0; i < m->nheap; i++) {
    tern_media_content *c = m->heap[i]->content;
    if (c->present || c->seen_orig) c->present = true; /* else (cluster mode) not on this node */
  }
  tern_buf_free(&d.ids);
  m->recovering = false;
  m->recovered = true;
  TERN_INFO("media recovered", "records=%llu dropped=%llu orphans=%llu tmp=%llu bytes=%lld",
            (unsigned long long)j->st.records_kept, (unsigned long long)j->st.records_dropped,
            (unsigned long long)j->st.orphans_removed, (unsigned long long)j->st.tmp_removed, (long long)m->bytes);
  tern_media_recover_stats st = j->st;
  tern_media_recover_cb cb = j->cb;
  void *arg = j->arg;
  tern_buf_free(&j->names);
  tern_buf_free(&j->doomed);
  tern_free(j);
  if (cb) cb(m, &st, arg);
  media_unref(m);
}

int tern_media_recover(tern_media *m, tern_media_recover_cb done, void *arg) {
  if (m->closing || m->recovering || m->recovered) return TERN_MEDIA_ERR_BUSY;
  recover_job *j = TERN_NEW(recover_job);
  j->m = m;
  j->cb = done;
  j->arg = arg;
  j->step = -1;
  j->work.data = j;
  m->recovering = true;
  media_ref(m);
  recover_next(j);
  return 0;
}
