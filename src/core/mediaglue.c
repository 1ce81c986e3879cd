/* mediaglue: PROTOCOL.md section 7 on top of src/media: the persistence hooks (media records
 * as store KV records), POST /v1/media as a streamed body sink, GET /v1/media/{id}[/thumb]
 * streamed from the file in chunks, and the bookkeeping that ties uploads to connections.
 *
 * Uploads. The limit callback (tern_mediaglue_body_limit) authenticates and starts the upload
 * from the request head alone, so a bad token, a wrong type, an oversize Content-Length or a
 * user over quota is refused before any body byte is read. The body then goes to the media
 * module's sink as it arrives, with its back-pressure. An upload context lives until both
 * sides are finished with it: the media module (its done callback, an error returned by a
 * write, or our abort) and the net layer (the sink's abort, or our answer).
 *
 * Downloads. The file is opened in the threadpool, then read with uv_fs_read in CHUNK-sized
 * pieces, one read at a time, each asked for by the net layer (TERN_STREAM_WANT) when its
 * backlog is low, so a download holds at most a couple of chunks in memory.
 *
 * Workers. The media store lives on the media worker (worker 0, app.h): it owns upload state,
 * the records and their files, and its libuv work runs on that loop. Another worker keeps the
 * HTTP side of a media request (the connection is its), and every call into the media store
 * travels to the media worker's loop through that worker's store port, which is its mailbox
 * (tern_store_port_call); answers come back through the asking worker's port. Both queues are
 * FIFO, so a grant posted before a message goes out is applied before any GET that the message
 * causes reaches the media worker. Records travel the other way through the change feed: each
 * other worker keeps a read-only replica of them (media_replica) for the router's checks. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/mediaglue.h"
#include "core/profile.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/api.h"
#include "media/blobs.h"
#include "media/media.h"
#include "net/server.h"
#include "store/natsmedia.h"

/* One read at a time, asked for when less than 64 KiB waits to be written. Measured with curl
 * on a 5 MiB file: 32 KiB chunks ~940 MiB/s, 64 KiB ~980 MiB/s, 128 KiB ~1350 MiB/s; 64 KiB
 * keeps a download at about 128 KiB of memory (the chunk and its copy in the outbound buffer). */
#define CHUNK (64 * 1024)
#define KV_PREFIX "media/"

/* Headers of every media body (200, 206) and of 304: the bytes are only ever an image. */
#define MEDIA_HEADERS                                                                              \
  "Cache-Control: private, max-age=31536000, immutable\r\nAccept-Ranges: bytes\r\n"                \
  "X-Content-Type-Options: nosniff\r\nContent-Security-Policy: sandbox\r\n"

/* ---- persistence: records are KV records "media/<id>" ------------------------------------- */

static void on_kv_done(tern_store_op *op) {
  if (op->status != TERN_STORE_OK)
    TERN_ERROR("media record not stored", "key=%s err=%s", tern_op_as_kv(op)->key, tern_log_quote(op->err));
}

static void kv_op(tern_app *a, tern_store_op_type type, const char *key, size_t klen, const tern_buf *value) {
  tern_op_kv *op = tern_op_kv_new(type, on_kv_done, NULL);
  op->key = tern_strndup(key, klen);
  if (value) tern_buf_append(&op->value, value->data, value->len);
  tern_app_submit(a, &op->op);
}

static void kv_op_id(tern_app *a, tern_store_op_type type, const char *id, const tern_buf *value) {
  char key[sizeof KV_PREFIX + TERN_MEDIA_ID_LEN];
  int n = snprintf(key, sizeof key, KV_PREFIX "%s", id);
  kv_op(a, type, key, (size_t)n, value);
}

static void persist_put(const tern_media_rec *rec, void *arg) {
  tern_buf b = {0};
  tern_media_rec_encode(rec, &b);
  kv_op_id(arg, TERN_OP_KV_PUT, rec->id, &b);
  tern_buf_free(&b);
}

static void persist_del(const char *id, void *arg) {
  tern_app *a = arg;
  kv_op_id(a, TERN_OP_KV_DEL, id, NULL);
  /* cluster mode: the chunks go with the record (a failed purge is logged; the chunks of a
   * record nobody has any more are never read again) */
  if (a->media_blobs) tern_blobs_purge(a->media_blobs, id, NULL, NULL);
}

/* ---- cluster mode: the bytes in JetStream ---------------------------------------------------- */

static int nm_put(void *self, const char *id, char part, const char *path, char *err, size_t errlen) {
  return tern_natsmedia_put_file(self, id, part, path, err, errlen);
}
static int nm_get(void *self, const char *id, char part, int64_t size, const char *path, char *err, size_t errlen) {
  return tern_natsmedia_get_file(self, id, part, size, path, err, errlen);
}
static int nm_purge(void *self, const char *id, char *err, size_t errlen) {
  return tern_natsmedia_purge(self, id, err, errlen);
}
static void nm_close(void *self) { tern_natsmedia_close(self); }

int tern_mediaglue_open_blobs(tern_app *a, char *err, size_t errlen) {
  const tern_config *cfg = a->cfg;
  tern_natsmedia *nm;
  int rc = tern_natsmedia_open(cfg->nats_urls, cfg->nats_namespace, (int)cfg->nats_replicas, &nm, err, errlen);
  if (rc < 0) return rc;
  tern_blob_backend be = {.put = nm_put, .get = nm_get, .purge = nm_purge, .close = nm_close, .self = nm};
  char dir[TERN_MEDIA_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/media/fetch", cfg->data_dir);
  if ((rc = tern_blobs_open(a->loop, &be, dir, &a->media_blobs, err, errlen)) < 0) tern_natsmedia_close(nm);
  return rc;
}

/* An upload's durability: in cluster mode its bytes go to JetStream first, then the SYNC
 * after its record's KV_PUT; done gets the SYNC (or, when the bytes could not be stored, an
 * op that failed: the record is deleted again). */
typedef struct put_ctx {
  tern_app *a;
  char id[TERN_MEDIA_ID_LEN + 1];
  tern_store_done_cb done;
  void *arg;
} put_ctx;

static void on_blob_put(int err, const char *why, void *arg) {
  put_ctx *p = arg;
  tern_op_inbox *op = tern_op_inbox_new(TERN_OP_SYNC, p->done, p->arg);
  if (err == 0) {
    tern_app_submit(p->a, &op->op);
  } else {
    TERN_ERROR("media bytes not stored in the cluster", "media_id=%s err=%s", p->id, tern_log_quote(why));
    if (p->a->media) tern_media_delete(p->a->media, p->id);
    op->op.status = err == -ENOTCONN || err == -ECANCELED ? TERN_STORE_UNAVAILABLE : TERN_STORE_ERROR;
    snprintf(op->op.err, sizeof op->op.err, "%s", why);
    p->done(&op->op);
    tern_store_op_free(&op->op);
  }
  tern_free(p);
}

static void make_durable(tern_app *a, const tern_media_rec *r, tern_store_done_cb done, void *arg) {
  if (!a->media_blobs) {
    tern_app_submit(a, &tern_op_inbox_new(TERN_OP_SYNC, done, arg)->op);
    return;
  }
  put_ctx *p = TERN_NEW(put_ctx);
  p->a = a;
  memcpy(p->id, r->id, sizeof p->id);
  p->done = done;
  p->arg = arg;
  char orig[TERN_MEDIA_PATH_MAX], thumb[TERN_MEDIA_PATH_MAX];
  tern_media_file_paths(a->media, r, orig, thumb);
  tern_blobs_put(a->media_blobs, r->id, orig, thumb[0] ? thumb : NULL, on_blob_put, p);
}

/* A read: open the file; in cluster mode a media whose files are not on this node is fetched
 * from JetStream into its objects directory first (a cache that goes with the record). */
typedef struct fetch_ctx {
  tern_app *a;
  char id[TERN_MEDIA_ID_LEN + 1];
  char hex[65];
  bool thumb;
  tern_media_open_cb cb;
  void *arg;
  struct fetch_ctx *waiters; /* the fetch running: reads of the same content waiting on it */
  struct fetch_ctx *next;    /* in a waiters list */
} fetch_ctx;

/* After the fetch (or without one): open the file of fc's record again, or answer its error. */
static void open_fetched(fetch_ctx *fc, int err) {
  tern_app *a = fc->a;
  const tern_media_rec *r = a->media ? tern_media_get(a->media, fc->id) : NULL;
  int rc = err;
  if (!rc && !r) rc = TERN_MEDIA_ERR_NOT_FOUND; /* deleted while its bytes came */
  if (!rc && (rc = tern_media_open_file(a->media, r, fc->thumb, fc->cb, fc->arg)) == 0) {
    tern_free(fc);
    return;
  }
  fc->cb(rc, NULL, fc->arg);
  tern_free(fc);
}

static void on_blob_fetched(int err, const char *why, void *arg) {
  fetch_ctx *fc = arg;
  tern_app *a = fc->a;
  tern_map_del(&a->media_fetching, fc->hex, 64);
  if (a->media) tern_media_cache_end(a->media, fc->hex, err == 0);
  int rc = 0;
  if (err < 0) {
    TERN_WARN("media bytes not fetched", "media_id=%s err=%s", fc->id, tern_log_quote(why));
    rc = err == -ENOENT ? TERN_MEDIA_ERR_NOT_FOUND : TERN_MEDIA_ERR_BUSY;
  }
  for (fetch_ctx *w = fc->waiters, *nx; w; w = nx) {
    nx = w->next;
    open_fetched(w, rc);
  }
  open_fetched(fc, rc);
}

static void on_first_open(int err, const tern_media_file *f, void *arg) {
  fetch_ctx *fc = arg;
  tern_app *a = fc->a;
  const tern_media_rec *r = err == TERN_MEDIA_ERR_NOT_FOUND && a->media && a->media_blobs ? tern_media_get(a->media, fc->id) : NULL;
  char orig[TERN_MEDIA_PATH_MAX], thumb[TERN_MEDIA_PATH_MAX];
  if (!r) {
    fc->cb(err, f, fc->arg);
    tern_free(fc);
    return;
  }
  fetch_ctx *running = tern_map_get(&a->media_fetching, r->sha256_hex, 64);
  if (running) { /* the same bytes are on their way already: read them when they are here */
    fc->next = running->waiters;
    running->waiters = fc;
    return;
  }
  if (tern_media_cache_begin(a->media, r, orig, thumb) != 0) {
    fc->cb(TERN_MEDIA_ERR_BUSY, NULL, fc->arg);
    tern_free(fc);
    return;
  }
  memcpy(fc->hex, r->sha256_hex, sizeof fc->hex);
  tern_map_put(&a->media_fetching, fc->hex, 64, fc);
  tern_blobs_get(a->media_blobs, r->id, r->size, orig, r->thumb_size, thumb[0] ? thumb : NULL, on_blob_fetched, fc);
}

static int open_media(tern_app *a, const tern_media_rec *r, bool thumb, tern_media_open_cb cb, void *arg) {
  if (!a->media_blobs) return tern_media_open_file(a->media, r, thumb, cb, arg);
  fetch_ctx *fc = TERN_NEW(fetch_ctx);
  fc->a = a;
  memcpy(fc->id, r->id, sizeof fc->id);
  fc->thumb = thumb;
  fc->cb = cb;
  fc->arg = arg;
  int rc = tern_media_open_file(a->media, r, thumb, on_first_open, fc);
  if (rc != 0) tern_free(fc);
  return rc;
}

tern_media_persist tern_mediaglue_persist(tern_app *a) {
  return (tern_media_persist){.put = persist_put, .del = persist_del, .arg = a};
}

bool tern_mediaglue_is_kv(const char *key, size_t klen) {
  return klen > sizeof KV_PREFIX - 1 && memcmp(key, KV_PREFIX, sizeof KV_PREFIX - 1) == 0;
}

void tern_mediaglue_drop_kv(tern_app *a, const char *key, size_t klen) { kv_op(a, TERN_OP_KV_DEL, key, klen, NULL); }

struct tern_mediaglue_upload {
  tern_app *app;             /* owner */
  tern_conn *conn;           /* the upload's connection (referenced) */
  tern_http_req *req;        /* once the body is complete: the request to answer */
  tern_media_upload *up;     /* NULL once the media module is done with the upload */
  tern_buf json;             /* the 201 body while its durability SYNC is out */
  struct hop_up *hop;        /* another worker's upload: its link to the media worker */
  char user[TERN_USERNAME_MAX + 1]; /* uploader, for logs */
  bool avatar;               /* ?purpose=avatar (PROTOCOL.md 15) */
  tern_mediaglue_upload *prev, *next; /* app->media_uploads */
};

static void upload_free(tern_mediaglue_upload *u);

/* ---- workers: the media worker and the others --------------------------------------------- */

/* True on a worker that is not the media worker: its media calls go to worker 0. */
static bool is_remote(const tern_app *a) { return a->group && !tern_app_media_worker(a); }
static tern_app *home_of(tern_app *a) { return a->group->apps[0]; }

/* fn(arg, true) on to's loop; fn(arg, false) if it has closed. Another worker's port pointer
 * changes only in the unwind, when no worker runs any more. */
static void post(tern_app *to, tern_store_call_fn fn, void *arg) {
  if (to->port) tern_store_port_call(to->port, fn, arg);
  else fn(arg, false);
}

void tern_mediaglue_apply_record(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t vlen) {
  const char *id = key + sizeof KV_PREFIX - 1;
  size_t idl = klen - (sizeof KV_PREFIX - 1);
  if (!tern_media_id_valid(id, idl)) return;
  if (!is_remote(a)) {
    /* The media worker writes its records itself; what the feed brings it is another node's
     * (cluster mode): merged into the store, or deleted there too. */
    if (!a->media || !a->media_blobs) return;
    if (!v) {
      char idz[TERN_MEDIA_ID_LEN + 1];
      memcpy(idz, id, TERN_MEDIA_ID_LEN);
      idz[TERN_MEDIA_ID_LEN] = '\0';
      (void)tern_media_forget(a->media, idz);
    } else if (tern_media_apply_remote(a->media, v, vlen) != 0) {
      TERN_WARN("media record from another node refused", "key=%.*s bytes=%zu", (int)klen, key, vlen);
    }
    return;
  }
  tern_media_rec *r = NULL;
  if (v && tern_media_rec_decode(v, vlen, &r) != 0) {
    TERN_WARN("media record refused", "key=%.*s bytes=%zu", (int)klen, key, vlen);
    r = NULL;
  }
  tern_media_rec *old = r ? tern_map_put(&a->media_replica, id, idl, r) : tern_map_del(&a->media_replica, id, idl);
  if (old) tern_media_rec_free(old);
}

static bool free_rec(const char *k, size_t kl, void *v, void *arg) {
  tern_media_rec_free(v);
  return true;
}

void tern_mediaglue_free(tern_app *a) {
  tern_map_each(&a->media_replica, free_rec, NULL);
  tern_map_free(&a->media_replica);
  tern_map_free(&a->media_fetching); /* empty: closing the blobs answered every fetch */
}

const tern_media_rec *tern_mediaglue_get(tern_app *a, const char *id) {
  if (!id) return NULL;
  if (!is_remote(a)) return a->media ? tern_media_get(a->media, id) : NULL;
  const tern_media_rec *r = tern_map_get(&a->media_replica, id, strlen(id));
  const tern_config *c = a->cfg; /* past its deadline it is gone here too (tern_media_get) */
  if (r && tern_media_rec_deadline(r, c->media_ttl_ms, c->media_unsent_ttl_ms, c->media_avatar_grace_ms) <= tern_now_ms())
    return NULL;
  return r;
}

/* A call the media worker makes on its store, with nothing to answer. */
typedef enum { CALL_GRANT, CALL_FETCHED, CALL_UNSENT, CALL_REVOKE, CALL_AVATAR } call_kind;
/* A revoke's caller, told once the change is durable (tern_mediaglue_revoke_durable). */
typedef struct revoke_wait {
  tern_app *from;                     /* the asking worker */
  bool remote;                        /* from is not the media worker: post back to it */
  tern_store_call_fn done;
  void *arg;
} revoke_wait;

typedef struct hop_call {
  tern_app *home;                     /* the media worker */
  revoke_wait *wait;                  /* REVOKE: its caller waits, or NULL */
  call_kind kind;
  uint32_t n;                         /* GRANT: recipient devices; AVATAR: on */
  char **users;                       /* REVOKE: the conversation's users (owned) */
  size_t nusers;
  char id[TERN_MEDIA_ID_LEN + 1];     /* GRANT, FETCHED */
  char user[TERN_USERNAME_MAX + 1];   /* GRANT: to; FETCHED: by; UNSENT: the owner */
  char device[TERN_DEVICE_ID_LEN + 1];/* FETCHED */
} hop_call;

static void on_revoke_synced(tern_store_op *op) {
  revoke_wait *w = op->arg;
  /* a SYNC that failed (the store unavailable) leaves the delete to fail the same way */
  if (w->remote) post(w->from, w->done, w->arg);
  else w->done(w->arg, true);
  tern_free(w);
}

static void revoke_synced_then(tern_app *home, revoke_wait *w) {
  tern_app_submit(home, &tern_op_inbox_new(TERN_OP_SYNC, on_revoke_synced, w)->op);
}

static void on_call(void *arg, bool run) {
  hop_call *c = arg;
  tern_media *m = c->home->media;
  if (run && m) {
    switch (c->kind) {
      case CALL_GRANT: tern_media_grant(m, c->id, c->user, c->n); break;
      case CALL_FETCHED:
        if (tern_media_fetched(m, c->id, c->user, c->device) == 1)
          TERN_INFO("media fetched by every recipient device, deleted", "media_id=%s", c->id);
        break;
      case CALL_UNSENT: tern_media_delete_unsent(m, c->user); break;
      case CALL_REVOKE: (void)tern_media_revoke(m, c->id, (const char *const *)c->users, c->nusers); break;
      case CALL_AVATAR: (void)tern_media_set_avatar(m, c->id, c->n != 0); break;
    }
  }
  if (c->wait && run) {
    revoke_synced_then(c->home, c->wait);
  } else if (c->wait) {
    post(c->wait->from, c->wait->done, c->wait->arg); /* the media worker closed: go on */
    tern_free(c->wait);
  }
  for (size_t i = 0; i < c->nusers; i++) tern_free(c->users[i]);
  tern_free(c->users);
  tern_free(c);
}

static void call_home(tern_app *a, call_kind kind, const char *id, const char *user, const char *device, uint32_t n) {
  hop_call *c = TERN_NEW(hop_call);
  c->home = home_of(a);
  c->kind = kind;
  c->n = n;
  snprintf(c->id, sizeof c->id, "%s", id ? id : "");
  snprintf(c->user, sizeof c->user, "%s", user);
  snprintf(c->device, sizeof c->device, "%s", device ? device : "");
  post(c->home, on_call, c);
}

void tern_mediaglue_grant(tern_app *a, const char *id, const char *to_user, uint32_t recipient_devices) {
  if (!is_remote(a)) {
    if (a->media) tern_media_grant(a->media, id, to_user, recipient_devices);
    return;
  }
  call_home(a, CALL_GRANT, id, to_user, NULL, recipient_devices);
}

static void revoke_on_home(tern_app *a, const char *id, const char *const *users, size_t nusers, revoke_wait *w) {
  if (!is_remote(a)) {
    if (a->media) (void)tern_media_revoke(a->media, id, users, nusers);
    if (w) revoke_synced_then(a, w);
    return;
  }
  hop_call *c = TERN_NEW(hop_call);
  c->wait = w;
  c->home = home_of(a);
  c->kind = CALL_REVOKE;
  snprintf(c->id, sizeof c->id, "%s", id);
  c->users = tern_calloc(nusers + 1, sizeof *c->users);
  for (size_t i = 0; i < nusers; i++) c->users[i] = tern_strdup(users[i]);
  c->nusers = nusers;
  post(c->home, on_call, c);
}

void tern_mediaglue_revoke(tern_app *a, const char *id, const char *const *users, size_t nusers) {
  revoke_on_home(a, id, users, nusers, NULL);
}

void tern_mediaglue_revoke_durable(tern_app *a, const char *id, const char *const *users, size_t nusers,
                                   tern_store_call_fn done, void *arg) {
  revoke_wait *w = TERN_NEW(revoke_wait);
  w->from = a;
  w->remote = is_remote(a);
  w->done = done;
  w->arg = arg;
  revoke_on_home(a, id, users, nusers, w);
}

void tern_mediaglue_set_avatar(tern_app *a, const char *id, bool on) {
  if (!is_remote(a)) {
    if (a->media) (void)tern_media_set_avatar(a->media, id, on);
    return;
  }
  call_home(a, CALL_AVATAR, id, "", NULL, on ? 1 : 0);
}

void tern_mediaglue_delete_unsent(tern_app *a, const char *owner) {
  if (!is_remote(a)) {
    if (a->media) tern_media_delete_unsent(a->media, owner);
    return;
  }
  call_home(a, CALL_UNSENT, NULL, owner, NULL, 0);
}

static void media_fetched(tern_app *a, const char *id, const char *user, const char *device) {
  if (is_remote(a)) {
    call_home(a, CALL_FETCHED, id, user, device, 0);
  } else if (a->media && tern_media_fetched(a->media, id, user, device) == 1) {
    TERN_INFO("media fetched by every recipient device, deleted", "media_id=%s", id);
  }
}

/* Another worker's upload. Its HTTP side (the connection, the request, back-pressure) stays on
 * that worker; the media worker runs the upload. The two sides talk only by messages, in
 * order: START, then DATA for each body chunk (the asking side stops reading until the media
 * worker has taken every chunk it posted: ACK), then FINISH or ABORT one way; ACK, FAIL or DONE
 * the other. The link is freed when both sides and every message in flight are done with it. */
typedef struct hop_up {
  atomic_int refs;          /* the asking side, the media worker's side, each message */
  tern_app *origin, *home;
  /* the asking worker's side (its loop only) */
  tern_mediaglue_upload *u; /* NULL once it is finished with the upload */
  unsigned outstanding;     /* DATA posted and not yet acknowledged */
  /* the media worker's side (its loop only) */
  tern_media_upload *up;    /* NULL when no upload runs */
  bool home_done;           /* the media worker is done with it */
  unsigned owed;            /* chunks taken while the sink paused: acknowledged on resume */
  char user[TERN_USERNAME_MAX + 1];
  char ctype[128];
  int64_t content_length;
  bool avatar;              /* ?purpose=avatar: marked at home, as on_upload_done does */
} hop_up;

typedef enum { HOP_START, HOP_DATA, HOP_FINISH, HOP_ABORT, HOP_ACK, HOP_FAIL, HOP_DONE } hop_kind;
typedef struct hop_msg {
  hop_up *h;                /* referenced by the message */
  hop_kind kind;
  tern_buf data;            /* DATA: the chunk; DONE: the 201 body */
  unsigned n;               /* ACK: chunks */
  int status;               /* FAIL */
  const char *code, *message; /* FAIL: static strings */
  int64_t retry;            /* FAIL: Retry-After seconds, 0 if none */
} hop_msg;

static void hop_unref(hop_up *h) {
  if (atomic_fetch_sub(&h->refs, 1) == 1) tern_free(h);
}

static void hop_free_msg(hop_msg *m) {
  hop_unref(m->h);
  tern_buf_free(&m->data);
  tern_free(m);
}

static hop_msg *hop_msg_new(hop_up *h, hop_kind kind) {
  hop_msg *m = TERN_NEW(hop_msg);
  atomic_fetch_add(&h->refs, 1);
  m->h = h;
  m->kind = kind;
  return m;
}

static void on_at_origin(void *arg, bool run);
static void on_at_home(void *arg, bool run);

static void to_origin(hop_msg *m) { post(m->h->origin, on_at_origin, m); }
static void to_home(hop_msg *m) { post(m->h->home, on_at_home, m); }

/* The media worker is done with h: it answers nothing more. */
static void home_done(hop_up *h) {
  if (h->home_done) return;
  h->home_done = true;
  h->up = NULL;
  hop_unref(h);
}

static void home_fail(hop_up *h, int err, int64_t retry) {
  hop_msg *m = hop_msg_new(h, HOP_FAIL);
  tern_media_err_http(err, &m->status, &m->code);
  m->message = tern_media_strerror(err);
  m->retry = retry;
  home_done(h);
  to_origin(m);
}

static void home_ack(hop_up *h, unsigned n) {
  hop_msg *m = hop_msg_new(h, HOP_ACK);
  m->n = n;
  to_origin(m);
}

static void home_resume(tern_media_upload *up, void *arg) {
  hop_up *h = arg;
  unsigned n = h->owed;
  h->owed = 0;
  if (n) home_ack(h, n);
}

static void home_synced(tern_store_op *op) {
  hop_msg *m = op->arg; /* the DONE to send, holding h */
  if (op->status != TERN_STORE_OK) {
    TERN_ERROR("media upload not durable", "user=%s err=%s", m->h->user, tern_log_quote(op->err));
    m->kind = HOP_FAIL;
    bool unavail = op->status == TERN_STORE_UNAVAILABLE;
    m->status = unavail ? 503 : 500;
    m->code = unavail ? "unavailable" : "internal";
    m->message = unavail ? "the media could not be stored now" : "the media record could not be stored";
  }
  to_origin(m);
}

static void home_upload_done(tern_media_upload *up, const tern_media_result *res, void *arg) {
  hop_up *h = arg;
  h->up = NULL;
  if (res->err) {
    home_fail(h, res->err, 0);
    return;
  }
  const tern_media_rec *r = res->rec;
  if (h->avatar) tern_media_mark_avatar(h->home->media, r->id); /* before the SYNC, as on_upload_done */
  TERN_INFO("media uploaded", "user=%s media_id=%s mime=%s bytes=%lld width=%u height=%u dup=%d worker=%u", h->user,
            r->id, tern_media_type_mime(r->type), (long long)r->size, r->width, r->height, res->duplicate,
            h->origin->worker);
  hop_msg *m = hop_msg_new(h, HOP_DONE);
  tern_media_rec_json(r, &m->data);
  home_done(h);
  /* the record's KV_PUT went through this worker's port: its SYNC makes it durable (and the
   * change feed has posted it to the other workers' replicas before the SYNC completes) */
  make_durable(h->home, r, home_synced, m);
}

static void on_at_home(void *arg, bool run) {
  hop_msg *m = arg;
  hop_up *h = m->h;
  tern_app *home = h->home;
  if (h->home_done) {
    hop_free_msg(m); /* refused or ended already: the asking side has its answer */
    return;
  }
  if (!run || !home->media || home->stopping) {
    /* the media worker is going away: the upload ends here (an ABORT needs no answer) */
    if (h->up) tern_media_upload_abort(h->up);
    h->up = NULL;
    if (m->kind == HOP_ABORT) home_done(h);
    else home_fail(h, TERN_MEDIA_ERR_BUSY, 0);
    hop_free_msg(m);
    return;
  }
  switch (m->kind) {
    case HOP_START: {
      tern_media_upload_cbs cbs = {.resume = home_resume, .done = home_upload_done, .arg = h};
      int64_t retry = 0;
      int rc = tern_media_upload_start(home->media, h->user, h->ctype, strlen(h->ctype), h->content_length, &cbs,
                                       &h->up, &retry);
      if (rc != 0) {
        if (rc == TERN_MEDIA_ERR_QUOTA) TERN_INFO("media upload over quota", "user=%s retry_after=%lld", h->user, (long long)retry);
        h->up = NULL;
        home_fail(h, rc, retry);
      }
      break;
    }
    case HOP_DATA: {
      if (!h->up) break;
      int rc = tern_media_upload_write(h->up, m->data.data, m->data.len);
      if (rc == TERN_MEDIA_CONTINUE && !h->owed) home_ack(h, 1);
      else if (rc == TERN_MEDIA_CONTINUE || rc == TERN_MEDIA_PAUSE) h->owed++;
      else {
        h->up = NULL; /* refused as the body arrives: the upload is over, its temp file goes */
        TERN_INFO("media upload refused", "user=%s reason=%s", h->user, tern_log_quote(tern_media_strerror(rc)));
        home_fail(h, rc, 0);
      }
      break;
    }
    case HOP_FINISH: {
      int rc = h->up ? tern_media_upload_finish(h->up) : TERN_MEDIA_ERR_BUSY;
      if (rc != 0) {
        h->up = NULL;
        home_fail(h, rc, 0);
      }
      break;
    }
    case HOP_ABORT:
      if (h->up) tern_media_upload_abort(h->up);
      home_done(h);
      break;
    default:
      break;
  }
  hop_free_msg(m);
}

static void on_at_origin(void *arg, bool run) {
  hop_msg *m = arg;
  hop_up *h = m->h;
  tern_mediaglue_upload *u = h->u;
  if (!run || !u) { /* the asking side is gone, or has its answer */
    hop_free_msg(m);
    return;
  }
  switch (m->kind) {
    case HOP_ACK:
      h->outstanding -= m->n < h->outstanding ? m->n : h->outstanding;
      if (!h->outstanding && !u->req) tern_conn_resume_read(u->conn);
      break;
    case HOP_FAIL: {
      char hdr[64] = "";
      if (m->retry > 0) snprintf(hdr, sizeof hdr, "Retry-After: %lld\r\n", (long long)m->retry);
      if (u->req) {
        tern_buf b = {0};
        const char *ct = tern_api_error_body(&b, m->status, m->code, m->message);
        tern_http_respond(u->req, m->status, hdr[0] ? hdr : NULL, ct, b.data, b.len);
        tern_buf_free(&b);
        u->req = NULL;
        upload_free(u);
      } else {
        /* refused while the body still arrives: the net layer answers and closes, and the
         * sink's abort frees u */
        TERN_INFO("media upload refused", "user=%s status=%d reason=%s", u->user, m->status, tern_log_quote(m->message));
        tern_conn_http_refuse_headers(u->conn, m->status, hdr[0] ? hdr : NULL, m->code, m->message);
      }
      break;
    }
    case HOP_DONE:
      if (u->req) {
        tern_http_json(u->req, 201, &m->data);
        u->req = NULL;
        upload_free(u);
      }
      break;
    default:
      break;
  }
  hop_free_msg(m);
}

/* The asking side of another worker's upload is done with h (its answer went, or the client). */
static void origin_done(tern_mediaglue_upload *u) {
  hop_up *h = u->hop;
  u->hop = NULL;
  h->u = NULL;
  to_home(hop_msg_new(h, HOP_ABORT)); /* harmless once the upload ended there */
  hop_unref(h);
}

/* ---- uploads ------------------------------------------------------------------------------- */


static void upload_free(tern_mediaglue_upload *u) {
  tern_app *a = u->app;
  if (u->hop) origin_done(u);
  if (u->prev) u->prev->next = u->next;
  else a->media_uploads = u->next;
  if (u->next) u->next->prev = u->prev;
  tern_buf_free(&u->json);
  tern_conn_unref(u->conn);
  tern_free(u);
}

static int sink_data(tern_http_req *req, const char *p, size_t n) {
  tern_mediaglue_upload *u = req->sink_ctx;
  if (u->hop) {
    /* to the media worker; reading waits until it has taken every chunk posted */
    hop_msg *m = hop_msg_new(u->hop, HOP_DATA);
    tern_buf_append(&m->data, p, n);
    u->hop->outstanding++;
    to_home(m);
    return 1;
  }
  if (!u->up) return -500; /* the media module ended it already (its answer is on the way) */
  int rc = tern_media_upload_write(u->up, p, n);
  if (rc == TERN_MEDIA_PAUSE) return 1;
  if (rc == TERN_MEDIA_CONTINUE) return 0;
  /* Refused while the body arrives (wrong type, a bomb, past max_bytes): the upload is over
   * and its temp file goes; the net layer answers with these fields and closes. */
  u->up = NULL;
  int status;
  const char *code;
  tern_media_err_http(rc, &status, &code);
  req->refuse_status = status;
  req->refuse_code = code;
  req->refuse_message = tern_media_strerror(rc);
  TERN_INFO("media upload refused", "user=%s status=%d reason=%s", u->user, status,
            tern_log_quote(req->refuse_message));
  return -status;
}

/* The request will never complete (the client went, or it was refused). */
static void sink_abort(tern_http_req *req) {
  tern_mediaglue_upload *u = req->sink_ctx;
  if (!u) return;
  if (u->up) tern_media_upload_abort(u->up);
  u->up = NULL;
  req->sink_ctx = NULL;
  upload_free(u);
}

static const tern_http_sink media_sink = {sink_data, sink_abort};

static void on_resume(tern_media_upload *up, void *arg) {
  tern_mediaglue_upload *u = arg;
  if (!u->req) tern_conn_resume_read(u->conn);
}

static void on_synced(tern_store_op *op) {
  tern_mediaglue_upload *u = op->arg;
  if (op->status == TERN_STORE_OK) {
    tern_http_json(u->req, 201, &u->json);
  } else if (op->status == TERN_STORE_UNAVAILABLE) {
    TERN_ERROR("media upload not durable", "user=%s err=%s", u->user, tern_log_quote(op->err));
    tern_http_error(u->req, 503, "unavailable", "the media could not be stored now");
  } else {
    TERN_ERROR("media upload not durable", "user=%s err=%s", u->user, tern_log_quote(op->err));
    tern_http_error(u->req, 500, "internal", "the media record could not be stored");
  }
  u->req = NULL;
  upload_free(u);
}

static void on_upload_done(tern_media_upload *up, const tern_media_result *res, void *arg) {
  tern_mediaglue_upload *u = arg;
  tern_app *a = u->app;
  u->up = NULL;
  int status;
  const char *code;
  tern_media_err_http(res->err, &status, &code);
  if (!u->req) {
    /* Ended before the body was complete: the client stopped sending (408) or the disk
     * failed. Refuse the request in progress; the sink's abort frees u when it closes. */
    TERN_INFO("media upload failed", "user=%s status=%d reason=%s", u->user, status,
              tern_log_quote(tern_media_strerror(res->err)));
    tern_conn_http_refuse(u->conn, status, code, tern_media_strerror(res->err));
    return;
  }
  if (res->err) {
    tern_http_error(u->req, status, code, tern_media_strerror(res->err));
    u->req = NULL;
    upload_free(u);
    return;
  }
  const tern_media_rec *r = res->rec;
  if (u->avatar) tern_media_mark_avatar(a->media, r->id); /* its record's second put, before the SYNC */
  TERN_INFO("media uploaded", "user=%s media_id=%s mime=%s bytes=%lld width=%u height=%u dup=%d worker=%u", u->user,
            r->id, tern_media_type_mime(r->type), (long long)r->size, r->width, r->height, res->duplicate, a->worker);
  tern_media_rec_json(r, &u->json);
  /* The record's KV_PUT was submitted when the record was made (persist.put); store ops
   * complete in order, so once this SYNC completes the record is durable: only then 201. */
  make_durable(a, r, on_synced, u);
}

static int64_t refuse_head(tern_http_req *req, int status, const char *code, const char *message) {
  req->refuse_status = status;
  req->refuse_code = code;
  req->refuse_message = message;
  return 0;
}

/* The upload's purpose from the query: 1 avatar, 0 a message's media (none given), -1 another. */
static int upload_purpose(const char *q) {
  int purpose = 0;
  for (const char *p = q; p && *p;) {
    const char *end = strchr(p, '&');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n >= 8 && !memcmp(p, "purpose=", 8)) purpose = n == 14 && !memcmp(p + 8, "avatar", 6) ? 1 : -1;
    p = end ? end + 1 : NULL;
  }
  return purpose;
}

/* Another worker's upload: what the head alone refuses is refused here, before any body byte
 * (the same checks as tern_media_upload_start's); the quota and the rest are the media
 * worker's, whose refusal arrives as the body starts. */
static int64_t remote_start(tern_app *a, tern_http_req *req, const tern_device *d, const char *ct, bool avatar) {
  int rc = 0;
  if (tern_media_type_from_mime(ct, strlen(ct)) == TERN_MEDIA_NONE) rc = TERN_MEDIA_ERR_UNSUPPORTED;
  else if (req->content_length > a->cfg->media_max_bytes) rc = TERN_MEDIA_ERR_TOO_LARGE;
  if (rc) {
    int status;
    const char *code;
    tern_media_err_http(rc, &status, &code);
    return refuse_head(req, status, code, tern_media_strerror(rc));
  }
  tern_mediaglue_upload *u = TERN_NEW(tern_mediaglue_upload);
  hop_up *h = TERN_NEW(hop_up);
  atomic_init(&h->refs, 2); /* this side's and the media worker's */
  h->origin = a;
  h->home = home_of(a);
  h->u = u;
  snprintf(h->user, sizeof h->user, "%s", d->user->name);
  snprintf(h->ctype, sizeof h->ctype, "%s", ct);
  h->content_length = req->content_length;
  h->avatar = avatar;
  u->hop = h;
  u->app = a;
  u->conn = req->conn;
  tern_conn_ref(u->conn);
  snprintf(u->user, sizeof u->user, "%s", d->user->name);
  u->next = a->media_uploads;
  if (u->next) u->next->prev = u;
  a->media_uploads = u;
  req->sink = &media_sink;
  req->sink_ctx = u;
  to_home(hop_msg_new(h, HOP_START));
  return a->cfg->media_max_bytes;
}

static int64_t wait_for_token(tern_app *a, tern_http_req *req);
static void upload_complete(tern_app *a, tern_http_req *req);

/* Starts the upload of an authenticated head; a refusal is in req's refuse fields (0). */
static int64_t start_upload(tern_app *a, tern_http_req *req, const tern_device *d) {
  const char *ct = req->content_type ? req->content_type : "";
  int purpose = upload_purpose(req->query);
  if (purpose < 0) return refuse_head(req, 400, "bad_request", "purpose must be avatar, or left out");
  if (purpose == 1 && tern_media_type_from_mime(ct, strlen(ct)) == TERN_MEDIA_OCTET)
    return refuse_head(req, 415, "unsupported_media_type", "an avatar is an image: image/jpeg, png, webp or gif");
  /* PROTOCOL.md 11: avatars are plaintext images even where messages must be encrypted */
  if (a->cfg->e2e_required && purpose != 1 && tern_media_type_from_mime(ct, strlen(ct)) != TERN_MEDIA_OCTET &&
      tern_media_type_from_mime(ct, strlen(ct)) != TERN_MEDIA_NONE) /* an unknown type stays 415 */
    return refuse_head(req, 403, "e2e_required", "this server takes only encrypted attachments (application/octet-stream)");
  if (is_remote(a)) return remote_start(a, req, d, ct, purpose == 1);
  tern_media_upload_cbs cbs = {.resume = on_resume, .done = on_upload_done};
  tern_mediaglue_upload *u = TERN_NEW(tern_mediaglue_upload);
  cbs.arg = u;
  int64_t retry = 0;
  int rc = tern_media_upload_start(a->media, d->user->name, ct, strlen(ct), req->content_length, &cbs, &u->up, &retry);
  if (rc != 0) {
    tern_free(u);
    int status;
    const char *code;
    tern_media_err_http(rc, &status, &code);
    if (rc == TERN_MEDIA_ERR_QUOTA) {
      snprintf(req->refuse_headers, sizeof req->refuse_headers, "Retry-After: %lld\r\n", (long long)retry);
      TERN_INFO("media upload over quota", "user=%s retry_after=%lld", d->user->name, (long long)retry);
    }
    return refuse_head(req, status, code, tern_media_strerror(rc));
  }
  u->app = a;
  u->conn = req->conn;
  tern_conn_ref(u->conn);
  snprintf(u->user, sizeof u->user, "%s", d->user->name);
  u->avatar = purpose == 1;
  u->next = a->media_uploads;
  if (u->next) u->next->prev = u;
  a->media_uploads = u;
  req->sink = &media_sink;
  req->sink_ctx = u;
  return a->cfg->media_max_bytes;
}

int64_t tern_mediaglue_body_limit(tern_app *a, tern_http_req *req) {
  if (a->stopping || (!a->media && !is_remote(a)))
    return refuse_head(req, 503, "unavailable", "the server is shutting down");
  const tern_device *d = tern_dir_by_bearer(a->dir, req->authorization);
  if (!d && req->authorization && req->conn && tern_store_port_shared(a->port)) return wait_for_token(a, req);
  if (!d) return refuse_head(req, 401, "unauthorized", "a valid Authorization: Bearer token is required");
  return start_upload(a, req, d);
}

/* ---- an upload whose token this node has not learned yet ------------------------------------ */
/* A device registered on another node a moment ago: every other request catches up with the
 * feed and runs again (api.c), so an upload does too. Its head is taken, reading pauses after
 * the first piece of body (kept here), and once the feed is caught up the upload starts as if
 * its head had just come, or is refused 401. */

typedef struct token_wait {
  tern_app *app;
  tern_http_req *req;  /* the request: the net layer's until the body is complete, then ours */
  tern_conn *conn;     /* referenced */
  tern_buf early;      /* body bytes that came meanwhile */
  bool complete;       /* the whole body came: the request is ours to answer */
  bool gone;           /* the net layer dropped the request while the catch-up was out */
} token_wait;

static void wait_free(token_wait *w) {
  tern_conn_unref(w->conn);
  tern_buf_free(&w->early);
  tern_free(w);
}

static int wait_data(tern_http_req *req, const char *p, size_t n) {
  token_wait *w = req->sink_ctx;
  tern_buf_append(&w->early, p, n);
  return 1; /* reading pauses until the catch-up is done */
}

static void wait_abort(tern_http_req *req) {
  token_wait *w = req->sink_ctx;
  req->sink_ctx = NULL;
  if (w) w->gone = true; /* the catch-up frees it */
}

static const tern_http_sink wait_sink = {wait_data, wait_abort};

/* Refuses w's request: answered when it is ours, else the net layer answers and closes. */
static void wait_refuse(token_wait *w, int status, const char *headers, const char *code, const char *message) {
  if (w->complete) {
    tern_buf b = {0};
    const char *ct = tern_api_error_body(&b, status, code, message);
    tern_http_respond(w->req, status, headers, ct, b.data, b.len);
    tern_buf_free(&b);
  } else {
    tern_conn_http_refuse_headers(w->conn, status, headers, code, message);
  }
}

static void on_token_caught_up(tern_store_op *op) {
  token_wait *w = op->arg;
  tern_app *a = w->app;
  tern_http_req *req = w->req;
  if (w->gone) { /* the net layer freed the request */
    wait_free(w);
    return;
  }
  if (!tern_conn_is_open(w->conn)) {
    if (w->complete) tern_http_respond(req, 503, NULL, NULL, NULL, 0); /* only frees it */
    else req->sink_ctx = NULL; /* the net layer drops it later */
    wait_free(w);
    return;
  }
  req->sink = NULL;
  req->sink_ctx = NULL;
  const tern_device *d = op->status == TERN_STORE_OK ? tern_dir_by_bearer(a->dir, req->authorization) : NULL;
  if (a->stopping || !d) {
    if (a->stopping) wait_refuse(w, 503, NULL, "unavailable", "the server is shutting down");
    else if (op->status != TERN_STORE_OK) wait_refuse(w, 503, NULL, "unavailable", "the server cannot look that up right now; try again");
    else wait_refuse(w, 401, NULL, "unauthorized", "a valid Authorization: Bearer token is required");
    wait_free(w);
    return;
  }
  req->refuse_status = 0;
  req->refuse_headers[0] = '\0';
  if (!start_upload(a, req, d)) {
    wait_refuse(w, req->refuse_status, req->refuse_headers[0] ? req->refuse_headers : NULL, req->refuse_code,
                req->refuse_message);
    wait_free(w);
    return;
  }
  /* the body so far goes to the upload as if it came now */
  int rc = w->early.len ? media_sink.data(req, w->early.data, w->early.len) : 0;
  if (rc < 0) {
    int status = req->refuse_status;
    const char *code = req->refuse_code, *message = req->refuse_message;
    if (w->complete) media_sink.abort(req); /* the upload goes (else the net layer's drop does it) */
    wait_refuse(w, status, NULL, code, message);
  } else if (w->complete) {
    upload_complete(a, req);
  } else if (rc == 0) {
    tern_conn_resume_read(w->conn); /* else the upload's back-pressure resumes it */
  }
  wait_free(w);
}

static int64_t wait_for_token(tern_app *a, tern_http_req *req) {
  token_wait *w = TERN_NEW(token_wait);
  w->app = a;
  w->req = req;
  w->conn = req->conn;
  tern_conn_ref(w->conn);
  req->sink = &wait_sink;
  req->sink_ctx = w;
  tern_app_submit(a, &tern_op_inbox_new(TERN_OP_CATCH_UP, on_token_caught_up, w)->op);
  return a->cfg->media_max_bytes;
}

/* The whole body went to the sink: finish the upload and answer once it is stored. */
static void upload_complete(tern_app *a, tern_http_req *req) {
  tern_mediaglue_upload *u = req->sink_ctx;
  req->sink_ctx = NULL;
  u->req = req;
  if (u->hop) {
    if (a->stopping) {
      tern_http_error(req, 503, "unavailable", "the server is shutting down");
      u->req = NULL;
      upload_free(u);
    } else {
      to_home(hop_msg_new(u->hop, HOP_FINISH));
    }
    return;
  }
  if (a->stopping) {
    if (u->up) tern_media_upload_abort(u->up);
    u->up = NULL;
  }
  int rc = u->up ? tern_media_upload_finish(u->up) : TERN_MEDIA_ERR_BUSY;
  if (rc != 0) {
    u->up = NULL;
    int status;
    const char *code;
    tern_media_err_http(rc, &status, &code);
    tern_http_error(req, status, code,
                    rc == TERN_MEDIA_ERR_BUSY ? "the server is shutting down" : tern_media_strerror(rc));
    u->req = NULL;
    upload_free(u);
  }
}

/* ---- downloads ----------------------------------------------------------------------------- */

typedef struct serve_ctx {
  tern_app *app;           /* owner */
  tern_http_req *req;      /* until the stream (or an answer) takes it */
  tern_http_stream *stream;/* from start until DONE or GONE */
  uv_fs_t fs;              /* the read (or the final close) in flight */
  uv_file fd;              /* the open file, -1 when none */
  int64_t off, left;       /* next byte to read, bytes still to read */
  char *buf;               /* CHUNK bytes, while streaming */
  bool reading;            /* a uv_fs_read is in flight */
  bool counts;             /* a complete GET 200 of the original: report the fetch on DONE */
  bool thumb;              /* serving the thumbnail */
  char id[TERN_MEDIA_ID_LEN + 1];
  char user[TERN_USERNAME_MAX + 1];
  char device[TERN_DEVICE_ID_LEN + 1];
} serve_ctx;

static void serve_closed(uv_fs_t *fs) {
  serve_ctx *s = fs->data;
  uv_fs_req_cleanup(fs);
  tern_free(s->buf);
  tern_free(s);
}

/* Closes the file (in the threadpool) and frees s. Only once no read is in flight. */
static void serve_finish(serve_ctx *s) {
  s->fs.data = s;
  if (s->fd >= 0 && uv_fs_close(s->app->loop, &s->fs, s->fd, serve_closed) == 0) return;
  tern_free(s->buf);
  tern_free(s);
}

static void on_read(uv_fs_t *fs) {
  serve_ctx *s = fs->data;
  ssize_t r = fs->result;
  uv_fs_req_cleanup(fs);
  s->reading = false;
  if (!s->stream) { /* the client went while we read */
    serve_finish(s);
    return;
  }
  if (r <= 0) {
    /* Headers with the length are out: all we can do is cut the connection. */
    TERN_ERROR("media read failed", "media_id=%s err=%s", s->id, r < 0 ? uv_strerror((int)r) : "end of file");
    tern_http_stream_abort(s->stream);
    return;
  }
  if (r > s->left) r = (ssize_t)s->left; /* the file grew? never send past Content-Length */
  tern_http_stream_write(s->stream, s->buf, (size_t)r);
  s->off += r;
  s->left -= r;
  if (s->left == 0) tern_http_stream_end(s->stream);
}

static void on_stream(tern_http_stream *st, tern_stream_event ev, void *arg) {
  serve_ctx *s = arg;
  switch (ev) {
    case TERN_STREAM_WANT: {
      if (s->reading) return;
      if (s->left == 0) {
        tern_http_stream_end(st);
        return;
      }
      size_t n = s->left < CHUNK ? (size_t)s->left : CHUNK;
      uv_buf_t b = uv_buf_init(s->buf, (unsigned)n);
      s->fs.data = s;
      int rc = uv_fs_read(s->app->loop, &s->fs, s->fd, &b, 1, s->off, on_read);
      if (rc < 0) {
        TERN_ERROR("media read failed", "media_id=%s err=%s", s->id, uv_strerror(rc));
        tern_http_stream_abort(st);
        return;
      }
      s->reading = true;
      return;
    }
    case TERN_STREAM_DONE:
      s->stream = NULL;
      /* Every byte of the original reached the kernel: for a recipient device that is a
       * fetch, and the last one deletes the media. */
      if (s->counts) media_fetched(s->app, s->id, s->user, s->device);
      break;
    case TERN_STREAM_GONE:
      s->stream = NULL;
      break;
  }
  if (!s->reading) serve_finish(s);
}

static void media_headers(tern_buf *h, const char *etag) {
  tern_buf_printf(h, "ETag: %s\r\n" MEDIA_HEADERS, etag);
}

static void on_open(int err, const tern_media_file *f, void *arg) {
  serve_ctx *s = arg;
  tern_http_req *req = s->req;
  s->req = NULL;
  if (err) {
    if (err == TERN_MEDIA_ERR_NOT_FOUND) tern_http_error(req, 404, "not_found", "no such media");
    else if (err == TERN_MEDIA_ERR_BUSY) tern_http_error(req, 503, "unavailable", "the media store is not available");
    else tern_http_error(req, 500, "internal", "the media file could not be opened");
    tern_free(s);
    return;
  }
  s->fd = f->fd;
  uint64_t start = 0, len = (uint64_t)f->size;
  tern_range_result rr =
      tern_media_parse_range(req->range, req->range ? strlen(req->range) : 0, (uint64_t)f->size, &start, &len);
  tern_buf h = {0};
  media_headers(&h, f->etag);
  int status = 200;
  if (rr == TERN_RANGE_UNSATISFIABLE) {
    tern_buf_printf(&h, "Content-Range: bytes */%lld\r\n", (long long)f->size);
    static const char body[] =
        "{\"error\":{\"code\":\"range_not_satisfiable\",\"message\":\"the range is outside the media\"}}";
    tern_http_respond(req, 416, tern_buf_cstr(&h), "application/json", body, sizeof body - 1);
    tern_buf_free(&h);
    serve_finish(s);
    return;
  }
  if (rr == TERN_RANGE_OK) {
    status = 206;
    tern_buf_printf(&h, "Content-Range: bytes %llu-%llu/%lld\r\n", (unsigned long long)start,
                    (unsigned long long)(start + len - 1), (long long)f->size);
  }
  s->off = (int64_t)start;
  s->left = (int64_t)len;
  s->counts = status == 200 && !s->thumb && strcmp(req->method, "GET") == 0;
  s->buf = tern_malloc(CHUNK);
  s->stream = tern_http_stream_start(req, status, tern_buf_cstr(&h), f->mime, s->left, on_stream, s);
  tern_buf_free(&h);
  if (!s->stream) serve_finish(s); /* the connection went while the file opened */
}

static void not_found(tern_http_req *req) {
  /* The same answer for an unknown id, a malformed one, no grant and no token: existence
   * is never revealed. */
  tern_http_error(req, 404, "not_found", "no such media");
}

/* Another worker's download: the media worker looks the record up, checks the grant and the
 * ETag and opens the file; the asking worker streams it (the descriptor is the process's). */
typedef struct hop_open {
  tern_app *home;          /* the media worker */
  serve_ctx *s;            /* the asking worker's (read there only after the answer) */
  char *inm;               /* If-None-Match, or NULL */
  int err;                 /* out: 0 or a TERN_MEDIA_ERR_* */
  bool not_modified;       /* out: 304 */
  bool caught_up;          /* cluster mode: looked again after a catch-up */
  tern_media_file f;       /* out, when err is 0 and not 304 */
} hop_open;

static void on_open_answer(void *arg, bool run) {
  hop_open *o = arg;
  serve_ctx *s = o->s;
  bool have_fd = !o->err && !o->not_modified;
  if (!run) { /* the asking worker has closed: nobody answers the request any more */
    if (have_fd) close(o->f.fd);
    tern_free(s);
  } else if (o->not_modified) {
    tern_buf h = {0};
    media_headers(&h, o->f.etag);
    tern_http_respond(s->req, 304, tern_buf_cstr(&h), NULL, NULL, 0);
    tern_buf_free(&h);
    tern_free(s);
  } else if (o->err == TERN_MEDIA_ERR_BUSY) {
    tern_http_error(s->req, 503, "unavailable", "the media store is not available");
    tern_free(s);
  } else {
    on_open(o->err, have_fd ? &o->f : NULL, s);
  }
  tern_free(o->inm);
  tern_free(o);
}

static void home_opened(int err, const tern_media_file *f, void *arg) {
  hop_open *o = arg;
  o->err = err;
  if (!err) o->f = *f;
  post(o->s->app, on_open_answer, o);
}

static void on_open_call(void *arg, bool run);
static void on_open_caught_up(tern_store_op *op) { on_open_call(op->arg, true); }

static void on_open_call(void *arg, bool run) {
  hop_open *o = arg;
  serve_ctx *s = o->s;
  tern_media *m = o->home->media;
  o->err = TERN_MEDIA_ERR_BUSY;
  if (run && m) {
    const tern_media_rec *r = tern_media_get(m, s->id);
    /* the media worker's directory answers for the reader (avatars: PROTOCOL.md 15) */
    const tern_user *reader = tern_dir_user(o->home->dir, s->user);
    bool readable = r && (tern_media_can_read(r, s->user) || tern_profile_avatar_readable(o->home, r, reader));
    if (!readable && o->home->media_blobs && !o->caught_up) {
      o->caught_up = true; /* cluster mode: as serve_ */
      tern_app_submit(o->home, &tern_op_inbox_new(TERN_OP_CATCH_UP, on_open_caught_up, o)->op);
      return;
    }
    if (!readable || (s->thumb && r->type == TERN_MEDIA_OCTET)) {
      o->err = TERN_MEDIA_ERR_NOT_FOUND;
    } else {
      tern_media_etag(r->sha256_hex, s->thumb, o->f.etag);
      if (o->inm && tern_media_etag_match(o->inm, strlen(o->inm), o->f.etag)) {
        o->err = 0;
        o->not_modified = true;
      } else if (open_media(o->home, r, s->thumb, home_opened, o) == 0) {
        return; /* home_opened answers */
      }
    }
  }
  post(s->app, on_open_answer, o);
}

/* A download's context: who asks for which file, on this worker. */
static serve_ctx *serve_new(tern_app *a, tern_http_req *req, const tern_device *d, const char *id, bool thumb) {
  serve_ctx *s = TERN_NEW(serve_ctx);
  s->app = a;
  s->req = req;
  s->fd = -1;
  s->thumb = thumb;
  memcpy(s->id, id, sizeof s->id);
  snprintf(s->user, sizeof s->user, "%s", d->user->name);
  snprintf(s->device, sizeof s->device, "%s", d->id);
  return s;
}

static void serve(tern_app *a, tern_http_req *req) {
  char id[TERN_MEDIA_ID_LEN + 1];
  bool thumb;
  if (tern_media_parse_path(req->path, strlen(req->path), id, &thumb) != 0) return not_found(req);
  if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
    tern_http_error(req, 405, "method_not_allowed", "that method is not allowed on this path");
    return;
  }
  const tern_device *d = tern_dir_by_bearer(a->dir, req->authorization);
  if (d && is_remote(a)) {
    serve_ctx *s = serve_new(a, req, d, id, thumb);
    hop_open *o = TERN_NEW(hop_open);
    o->home = home_of(a);
    o->s = s;
    o->inm = req->if_none_match ? tern_strdup(req->if_none_match) : NULL;
    post(o->home, on_open_call, o);
    return;
  }
  const tern_media_rec *r = d && a->media ? tern_media_get(a->media, id) : NULL;
  if (!r || !(tern_media_can_read(r, d->user->name) || tern_profile_avatar_readable(a, r, d->user))) {
    /* cluster mode: the record, its grant or the token may come from another node a moment
     * ago: catch up with the feed and look once more */
    if (req->authorization && tern_api_catch_up(a, req)) return;
    return not_found(req);
  }
  if (thumb && r->type == TERN_MEDIA_OCTET) return not_found(req); /* an opaque blob has no thumbnail */
  char etag[72];
  tern_media_etag(r->sha256_hex, thumb, etag);
  if (req->if_none_match && tern_media_etag_match(req->if_none_match, strlen(req->if_none_match), etag)) {
    tern_buf h = {0};
    media_headers(&h, etag);
    tern_http_respond(req, 304, tern_buf_cstr(&h), NULL, NULL, 0);
    tern_buf_free(&h);
    return;
  }
  serve_ctx *s = serve_new(a, req, d, id, thumb);
  if (open_media(a, r, thumb, on_open, s) != 0) {
    tern_free(s);
    tern_http_error(req, 503, "unavailable", "the media store is not available");
  }
}

/* ---- routing and shutdown ------------------------------------------------------------------ */

bool tern_mediaglue_route(tern_app *a, tern_http_req *req) {
  if (req->sink == &media_sink) {
    upload_complete(a, req);
    return true;
  }
  if (req->sink == &wait_sink) { /* complete before its token was looked up again: it waits */
    token_wait *w = req->sink_ctx;
    w->complete = true;
    return true;
  }
  const char *p = req->path;
  if (strncmp(p, "/v1/media", 9) != 0 || (p[9] != '\0' && p[9] != '/')) return false;
  if (p[9] == '\0') {
    /* POST with a body went to the sink above; anything else lands here. */
    tern_http_error(req, 405, "method_not_allowed", "POST an image to /v1/media");
    return true;
  }
  serve(a, req);
  return true;
}

void tern_mediaglue_close(tern_app *a) {
  if (is_remote(a)) {
    /* uploads whose body is complete are answered now; the others end with their connection */
    for (tern_mediaglue_upload *u = a->media_uploads, *nx; u; u = nx) {
      nx = u->next;
      if (u->req) {
        tern_http_error(u->req, 503, "unavailable", "the server is shutting down");
        u->req = NULL;
        upload_free(u);
      }
    }
    return;
  }
  if (!a->media) return;
  /* tern_media_close aborts every upload without callbacks: forget them first, and answer
   * those whose body was complete (their connections are still waiting). */
  for (tern_mediaglue_upload *u = a->media_uploads, *nx; u; u = nx) {
    nx = u->next;
    u->up = NULL;
    if (u->req && !u->json.len) {
      tern_http_error(u->req, 503, "unavailable", "the server is shutting down");
      u->req = NULL;
      upload_free(u);
    }
  }
  /* uploads waiting for their chunks are answered 503 now, fetches too */
  tern_blobs_close(a->media_blobs);
  a->media_blobs = NULL;
  tern_media_close(a->media);
  a->media = NULL;
}
