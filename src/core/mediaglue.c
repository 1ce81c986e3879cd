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
 * backlog is low, so a download holds at most a couple of chunks in memory. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/mediaglue.h"
#include "core/profile.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/api.h"
#include "media/media.h"
#include "net/server.h"

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

static void persist_del(const char *id, void *arg) { kv_op_id(arg, TERN_OP_KV_DEL, id, NULL); }

tern_media_persist tern_mediaglue_persist(tern_app *a) {
  return (tern_media_persist){.put = persist_put, .del = persist_del, .arg = a};
}

bool tern_mediaglue_is_kv(const char *key, size_t klen) {
  return klen > sizeof KV_PREFIX - 1 && memcmp(key, KV_PREFIX, sizeof KV_PREFIX - 1) == 0;
}

void tern_mediaglue_drop_kv(tern_app *a, const char *key, size_t klen) { kv_op(a, TERN_OP_KV_DEL, key, klen, NULL); }

/* ---- uploads ------------------------------------------------------------------------------- */

struct tern_mediaglue_upload {
  tern_app *app;             /* owner */
  tern_conn *conn;           /* the upload's connection (referenced) */
  tern_http_req *req;        /* once the body is complete: the request to answer */
  tern_media_upload *up;     /* NULL once the media module is done with the upload */
  tern_buf json;             /* the 201 body while its durability SYNC is out */
  char user[TERN_USERNAME_MAX + 1]; /* uploader, for logs */
  bool avatar;               /* ?purpose=avatar (PROTOCOL.md 15) */
  tern_mediaglue_upload *prev, *next; /* app->media_uploads */
};

static void upload_free(tern_mediaglue_upload *u) {
  tern_app *a = u->app;
  if (u->prev) u->prev->next = u->next;
  else a->media_uploads = u->next;
  if (u->next) u->next->prev = u->prev;
  tern_buf_free(&u->json);
  tern_conn_unref(u->conn);
  tern_free(u);
}

static int sink_data(tern_http_req *req, const char *p, size_t n) {
  tern_mediaglue_upload *u = req->sink_ctx;
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
  TERN_INFO("media uploaded", "user=%s media_id=%s mime=%s bytes=%lld width=%u height=%u dup=%d", u->user, r->id,
            tern_media_type_mime(r->type), (long long)r->size, r->width, r->height, res->duplicate);
  tern_media_rec_json(r, &u->json);
  /* The record's KV_PUT was submitted when the record was made (persist.put); store ops
   * complete in order, so once this SYNC completes the record is durable: only then 201. */
  tern_app_submit(a, &tern_op_inbox_new(TERN_OP_SYNC, on_synced, u)->op);
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

int64_t tern_mediaglue_body_limit(tern_app *a, tern_http_req *req) {
  if (a->stopping || !a->media) return refuse_head(req, 503, "unavailable", "the server is shutting down");
  const tern_device *d = tern_dir_by_bearer(a->dir, req->authorization);
  if (!d) return refuse_head(req, 401, "unauthorized", "a valid Authorization: Bearer token is required");
  const char *ct = req->content_type ? req->content_type : "";
  int purpose = upload_purpose(req->query);
  if (purpose < 0) return refuse_head(req, 400, "bad_request", "purpose must be avatar, or left out");
  if (purpose == 1 && tern_media_type_from_mime(ct, strlen(ct)) == TERN_MEDIA_OCTET)
    return refuse_head(req, 415, "unsupported_media_type", "an avatar is an image: image/jpeg, png, webp or gif");
  /* PROTOCOL.md 11: avatars are plaintext images even where messages must be encrypted */
  if (a->cfg->e2e_required && purpose != 1 && tern_media_type_from_mime(ct, strlen(ct)) != TERN_MEDIA_OCTET &&
      tern_media_type_from_mime(ct, strlen(ct)) != TERN_MEDIA_NONE) /* an unknown type stays 415 */
    return refuse_head(req, 403, "e2e_required", "this server takes only encrypted attachments (application/octet-stream)");
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

/* The whole body went to the sink: finish the upload and answer once it is stored. */
static void upload_complete(tern_app *a, tern_http_req *req) {
  tern_mediaglue_upload *u = req->sink_ctx;
  req->sink_ctx = NULL;
  u->req = req;
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
      if (s->counts && s->app->media && tern_media_fetched(s->app->media, s->id, s->user, s->device) == 1)
        TERN_INFO("media fetched by every recipient device, deleted", "media_id=%s", s->id);
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

static void serve(tern_app *a, tern_http_req *req) {
  char id[TERN_MEDIA_ID_LEN + 1];
  bool thumb;
  if (tern_media_parse_path(req->path, strlen(req->path), id, &thumb) != 0) return not_found(req);
  if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
    tern_http_error(req, 405, "method_not_allowed", "that method is not allowed on this path");
    return;
  }
  const tern_device *d = tern_dir_by_bearer(a->dir, req->authorization);
  const tern_media_rec *r = d && a->media ? tern_media_get(a->media, id) : NULL;
  if (!r || !(tern_media_can_read(r, d->user->name) || tern_profile_avatar_readable(a, r, d->user)))
    return not_found(req);
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
  serve_ctx *s = TERN_NEW(serve_ctx);
  s->app = a;
  s->req = req;
  s->fd = -1;
  s->thumb = thumb;
  memcpy(s->id, id, sizeof s->id);
  snprintf(s->user, sizeof s->user, "%s", d->user->name);
  snprintf(s->device, sizeof s->device, "%s", d->id);
  if (tern_media_open_file(a->media, r, thumb, on_open, s) != 0) {
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
  tern_media_close(a->media);
  a->media = NULL;
}
