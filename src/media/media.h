/* media: the image store behind POST/GET /v1/media (PROTOCOL.md section 7): streaming upload
 * sink, type sniffing and the decompression-bomb check, validation and thumbnails with libvips,
 * a content-addressed object layout, read grants, lifetime (fetch counting, TTL sweep) and
 * restart consistency. The HTTP endpoints themselves live in core/; this module knows nothing
 * of sockets, tokens or JSON parsing.
 *
 * Threads. A tern_media belongs to one libuv loop thread: every function below that takes a
 * tern_media (or an upload) must be called on that thread, and every callback it makes runs
 * there. Blocking work never runs on the loop thread: file writes, SHA-256 hashing, fsync,
 * libvips decoding and thumbnailing, renames, unlinks, opens and directory scans all run in the
 * libuv threadpool (uv_queue_work / uv_fs_*). Decoding is limited to `decode_jobs` images at
 * once so that uploads can never occupy the whole threadpool. The pure functions (sniffing,
 * Range / If-None-Match / path parsing, the record codec, mime helpers) touch no shared state
 * and may run on any thread.
 *
 * Ownership. tern_media owns its records (tern_media_rec); a `const tern_media_rec *` handed out
 * stays valid until the next call into this module that may delete records (sweep, fetched,
 * delete, close, or a return to the loop), so look records up by id again after any await.
 * Strings passed in are copied. Errors are tern_media_status outcomes (below); a function that
 * returns an error never calls the callback it was given.
 *
 * On disk, under <data_dir>/media/:
 *   tmp/<random>.part                   uploads in progress (and .thumb.part next to them)
 *   objects/<sha256[0:2]>/<sha256>      originals, stored once per content
 *   objects/<sha256[0:2]>/<sha256>.thumb.jpg
 * Several media ids may share one content (the same bytes uploaded twice); the files go when the
 * last record referring to them goes. The media id is random, never the hash: a hash would let
 * anyone holding the same file probe for it.
 */
#ifndef TERN_MEDIA_MEDIA_H
#define TERN_MEDIA_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"

struct tern_config;

/* ---- outcomes -------------------------------------------------------------------------------
 * The media functions answer with these domain outcomes (each maps to an HTTP status), not with
 * errno values: they start at 100 so that no one mistakes TERN_MEDIA_ERR_NOT_FOUND for -EPERM.
 * System errors behind an outcome (a failed write) are logged where they happen and reported
 * as TERN_MEDIA_ERR_IO. */
typedef enum {
  TERN_MEDIA_OK = 0,
  TERN_MEDIA_ERR_UNSUPPORTED = 101, /* 415 unsupported_media_type: not a decodable image of the declared type */
  TERN_MEDIA_ERR_TOO_LARGE,         /* 413 too_large: more than max_bytes */
  TERN_MEDIA_ERR_DIMENSIONS,        /* 413 too_large: width/height over max_dimension or max_pixels */
  TERN_MEDIA_ERR_QUOTA,             /* 429 rate_limited (with Retry-After) */
  TERN_MEDIA_ERR_TIMEOUT,           /* 408 request_timeout: the client stopped sending */
  TERN_MEDIA_ERR_IO,                /* 500 internal: disk trouble */
  TERN_MEDIA_ERR_NOT_FOUND,         /* 404 not_found: unknown id, no grant, malformed id */
  TERN_MEDIA_ERR_BUSY,              /* 503: shutting down, or called in the wrong phase */
  TERN_MEDIA_ERR_INVALID,           /* 400 bad_request: malformed argument */
} tern_media_status;

/* True for every outcome that is an error. */
static inline bool tern_media_failed(int st) { return st >= TERN_MEDIA_ERR_UNSUPPORTED; }

/* A sentence for the error body ("image/png declared, but the bytes are not..."); static. */
const char *tern_media_strerror(int err);
/* The HTTP status and protocol error code for err (e.g. 415, "unsupported_media_type"). */
void tern_media_err_http(int err, int *status, const char **code);

/* ---- types and mime ------------------------------------------------------------------------ */
typedef enum {
  TERN_MEDIA_NONE = 0,
  TERN_MEDIA_JPEG = 1,
  TERN_MEDIA_PNG = 2,
  TERN_MEDIA_WEBP = 3,
  TERN_MEDIA_GIF = 4,
  /* An opaque blob (PROTOCOL.md 11: an encrypted attachment): stored as given, never decoded,
   * no dimensions and no thumbnail. */
  TERN_MEDIA_OCTET = 5,
} tern_media_type;

/* Parses a Content-Type header value: "image/jpeg", case-insensitive, parameters
 * (";charset=...") and surrounding spaces ignored. TERN_MEDIA_NONE for anything else. */
tern_media_type tern_media_type_from_mime(const char *s, size_t n);
/* "image/jpeg" etc.; NULL for TERN_MEDIA_NONE. */
const char *tern_media_type_mime(tern_media_type t);

/* ---- sniffing and header dimensions (pure, any thread) -------------------------------------
 * An incremental parser of the first bytes of an upload: it recognises the type by its magic
 * number (JPEG FF D8 FF, PNG signature, GIF87a/GIF89a, RIFF....WEBP with a VP8/VP8L/VP8X first
 * chunk) and reads the dimensions the header declares (JPEG SOFn, PNG IHDR, GIF logical screen,
 * WebP frame header or VP8X canvas). It can be fed any split of the bytes and gives the same
 * answer; it keeps no more than a few dozen bytes and skips JPEG segments without copying. This
 * is what refuses a decompression bomb before any decoder sees the file. */
typedef enum {
  TERN_PROBE_MORE = 0,  /* needs more bytes */
  TERN_PROBE_DONE = 1,  /* type, width and height are known; further bytes are ignored */
  TERN_PROBE_BAD = -1,  /* not one of our types, or a malformed header */
} tern_probe_status;

typedef struct tern_media_probe {
  int status;           /* tern_probe_status */
  tern_media_type type; /* known as soon as the magic is seen (before DONE) */
  uint32_t width;       /* declared by the header, when DONE */
  uint32_t height;
  /* private */
  uint64_t seen;        /* bytes fed so far */
  uint64_t skip;        /* bytes still to skip (inside a JPEG segment) */
  uint8_t state;        /* parser state */
  uint8_t need;         /* bytes the current unit needs in buf */
  uint8_t blen;         /* bytes in buf */
  uint8_t buf[24];      /* the unit being collected */
} tern_media_probe;

void tern_media_probe_init(tern_media_probe *p);
/* Feeds the next n bytes; returns the status (sticky once DONE or BAD). */
int tern_media_probe_feed(tern_media_probe *p, const void *data, size_t n);
/* One-shot: init + feed. */
int tern_media_sniff(const void *data, size_t n, tern_media_probe *out);
/* True when w x h is within max_dimension a side and max_pixels in total (and not 0). */
bool tern_media_dims_ok(uint64_t w, uint64_t h, int64_t max_dimension, int64_t max_pixels);

/* ---- serving helpers (pure, any thread) ---------------------------------------------------- */
#define TERN_MEDIA_ID_LEN 26 /* base32 [a-z2-7] of 130 random bits */

/* True when s[0..n) is exactly TERN_MEDIA_ID_LEN characters of [a-z2-7]. Anything else ("../",
 * "%2e%2e", NUL, upper case, a hash) is not an id, so it can never name a file. */
bool tern_media_id_valid(const char *s, size_t n);
/* Parses a request path "/v1/media/{id}" or "/v1/media/{id}/thumb" (a "?query" is ignored).
 * Returns 0 with id (NUL-terminated) and *thumb set, or TERN_MEDIA_ERR_NOT_FOUND. The path is
 * taken raw, not percent-decoded: an encoded id is not an id. */
int tern_media_parse_path(const char *path, size_t n, char id[TERN_MEDIA_ID_LEN + 1], bool *thumb);

typedef enum {
  TERN_RANGE_NONE = 0,          /* no usable Range: send 200 with the whole body */
  TERN_RANGE_OK = 1,            /* send 206 with bytes [start, start+len) of size */
  TERN_RANGE_UNSATISFIABLE = 2, /* send 416 with Content-Range: bytes *\/size */
} tern_range_result;
/* Parses a Range header value against a body of `size` bytes. One range "bytes=a-b", "bytes=a-"
 * or "bytes=-n" is served (b past the end is clamped). A malformed or unsatisfiable bytes range
 * is 416. Several ranges, or a unit other than bytes, are ignored (200). NULL h means no header. */
tern_range_result tern_media_parse_range(const char *h, size_t n, uint64_t size, uint64_t *start, uint64_t *len);
/* The strong ETag of the original ("\"<sha256>\"") or the thumbnail ("\"<sha256>-t\"").
 * out needs 72 bytes. */
void tern_media_etag(const char sha256_hex[65], bool thumb, char out[72]);
/* True when an If-None-Match header value (a list of entity tags, W/ weak ones included, or
 * "*") matches etag, i.e. the answer is 304. */
bool tern_media_etag_match(const char *h, size_t n, const char *etag);

/* ---- records -------------------------------------------------------------------------------- */
typedef struct tern_media_content tern_media_content; /* private: one stored content object */

typedef struct tern_media_rec {
  char id[TERN_MEDIA_ID_LEN + 1]; /* the media_id */
  char *owner;                    /* uploader's username */
  tern_media_type type;           /* declared and verified type */
  int64_t size;                   /* bytes of the original */
  int64_t thumb_size;             /* bytes of the thumbnail */
  uint8_t sha256[32];             /* of the original */
  char sha256_hex[65];            /* the same, lower-case hex */
  uint32_t width;                 /* as displayed (EXIF orientation applied) */
  uint32_t height;
  int64_t created;                /* ms, upload time */
  int64_t sent_at;                /* ms of the first grant; 0 = never sent */
  uint32_t pending_devices;       /* recipient devices granted so far */
  char **grants;                  /* users besides the owner who may read it */
  uint32_t ngrants;
  char **fetched;                 /* recipient devices that completed a 200 of the original */
  uint32_t nfetched;
  bool avatar;                    /* uploaded with purpose=avatar (PROTOCOL.md 15): no media.ttl
                                     or unsent_ttl; readable by others only while it is set */
  int64_t avatar_off;             /* avatar: ms since it is not its owner's avatar (upload time
                                     until first set), 0 while it is; deleted avatar_grace after */
  /* private to the media module */
  tern_media_content *content;    /* the stored object */
  size_t heap_index;              /* position in the expiry heap */
} tern_media_rec;

/* Serializes a record (everything above the private fields) to a compact versioned binary
 * form, appended to out. The core stores these bytes under the media id. */
void tern_media_rec_encode(const tern_media_rec *r, tern_buf *out);
/* Parses bytes made by tern_media_rec_encode into a new record (free with tern_media_rec_free);
 * returns 0 or TERN_MEDIA_ERR_INVALID for anything malformed, with *out untouched. */
int tern_media_rec_decode(const uint8_t *p, size_t n, tern_media_rec **out);
void tern_media_rec_free(tern_media_rec *r);
/* Cluster mode: merges into local (this node's copy) the record another node stored (remote,
 * decoded from the change feed). The other node's write is the later one for everything it
 * decides (grants and their revocation, pending_devices, sent_at, the avatar state), so those
 * are taken from remote; fetched devices only ever grow, so they are the union (a fetch counted
 * here that the other node had not seen yet is kept). Both must have the same id; local's
 * private fields are untouched. Returns true when local now holds something remote lacks (the
 * caller stores local again so that the store converges). Pure: any thread. */
bool tern_media_rec_merge(tern_media_rec *local, const tern_media_rec *remote);
/* Appends {"media_id","mime","size","sha256","width","height"} as JSON: the 201 body and the
 * `media` object of a msg envelope. */
void tern_media_rec_json(const tern_media_rec *r, tern_buf *out);

/* ---- the store -------------------------------------------------------------------------------- */
typedef struct tern_media tern_media;

/* The persistence hook the core implements with its store. Both run on the loop thread, must
 * not call back into this module, and copy what they keep. put: store
 * tern_media_rec_encode(rec) under rec->id (called on create, grant and counted fetch). del:
 * remove the record. For the durability of a 201 or of a send carrying the media, the core
 * answers only after the write it queued here is durable (e.g. a store SYNC op after it). */
typedef struct tern_media_persist {
  void (*put)(const tern_media_rec *rec, void *arg);
  void (*del)(const char *id, void *arg);
  void *arg;
} tern_media_persist;

typedef struct tern_media_options {
  const char *data_dir;          /* media live in <data_dir>/media (copied) */
  int64_t max_bytes;             /* media.max_bytes */
  int64_t ttl_ms;                /* media.ttl: deleted this long after upload */
  int64_t unsent_ttl_ms;         /* media.unsent_ttl: never-sent uploads */
  int64_t max_dimension;         /* media.max_dimension: px a side */
  int64_t max_pixels;            /* media.max_pixels: width x height */
  int64_t thumb_size;            /* media.thumb_size: px on the longer side */
  int64_t upload_timeout_ms;     /* media.upload_timeout: an upload silent this long fails */
  int64_t min_upload_rate;       /* media.min_upload_rate: bytes/s to average past upload_timeout (0: off) */
  int64_t quota_bytes_per_hour;  /* media.quota_bytes_per_hour, per user */
  int64_t sweep_batch;           /* media.sweep_batch: records removed per sweep step */
  int64_t sweep_interval_ms;     /* media.sweep_interval: the sweeper's period */
  int64_t decode_jobs;           /* media.decode_jobs: images decoded at once */
  int64_t avatar_grace_ms;       /* media.avatar_grace: an avatar no longer set lives this long */
  tern_media_persist persist;    /* may be all NULL (tests) */
  bool remote_bytes;             /* cluster mode: the bytes also live in a shared blob store
                                    (media/blobs.h), so recovery keeps a record whose files are
                                    missing here (they are fetched on its first read,
                                    tern_media_cache_begin) instead of dropping it */
  int64_t (*now_ms)(void);       /* clock; NULL = tern_now_ms (tests inject a fake one) */
} tern_media_options;

/* Fills o from the media.* settings of cfg (data_dir points into cfg). */
void tern_media_options_from_config(tern_media_options *o, const struct tern_config *cfg);

/* Creates the directories and the store. Synchronous (mkdir), so call it before the loop runs.
 * Returns 0, or TERN_MEDIA_ERR_IO with a one-line reason in err. Initializes libvips once per
 * process. */
int tern_media_open(uv_loop_t *loop, const tern_media_options *o, tern_media **out, char *err, size_t errlen);
/* Stops the sweeper, aborts every upload and frees the store once its threadpool work has
 * finished: keep running the loop until it has no more work (uv_run drains it). No callback of
 * this module runs after close except tern_media_open_file's, which always runs. */
void tern_media_close(tern_media *m);

/* Start-up, step 1: the core feeds back every stored record. Returns 0, or
 * TERN_MEDIA_ERR_INVALID (bad bytes: the core deletes that record) or TERN_MEDIA_ERR_BUSY
 * (recovery has already started). */
int tern_media_load_record(tern_media *m, const uint8_t *bytes, size_t len);

/* Start-up, step 2: makes disk and records agree, in bounded threadpool steps: removes temp
 * files of earlier runs, object files no record refers to (orphans), and records whose files
 * are missing (dangling; reported through persist.del). Uploads may run meanwhile. done runs
 * once, on the loop thread. */
typedef struct tern_media_recover_stats {
  uint64_t tmp_removed;     /* temp files of interrupted uploads */
  uint64_t orphans_removed; /* object files without a record */
  uint64_t records_dropped; /* records without their files */
  uint64_t records_kept;
} tern_media_recover_stats;
typedef void (*tern_media_recover_cb)(tern_media *m, const tern_media_recover_stats *st, void *arg);
int tern_media_recover(tern_media *m, tern_media_recover_cb done, void *arg);

/* Starts a repeating timer (sweep_interval) that runs tern_media_sweep in bounded steps, and
 * prunes idle quota entries. Optional: tests call tern_media_sweep directly. */
void tern_media_start_sweeper(tern_media *m);

/* ---- upload sink ------------------------------------------------------------------------------
 * Flow for POST /v1/media:
 *   1. tern_media_upload_start with the declared Content-Type and Content-Length (-1 if chunked):
 *      refuses an unknown type (415), an oversize length (413, before any body is read) and a
 *      user over quota (429, *retry_after_s set).
 *   2. tern_media_upload_write for each body chunk as it arrives; the bytes are copied.
 *      TERN_MEDIA_CONTINUE: keep reading. TERN_MEDIA_PAUSE: stop reading the socket
 *      (uv_read_stop) until cbs.resume runs; what was already read may still be passed in.
 *      An error (415 type mismatch or bomb as soon as the header shows it, 413 past max_bytes)
 *      ends the upload there: answer it, and never touch up again; the temp file is removed.
 *   3. tern_media_upload_finish at the end of the body; cbs.done then runs once with the result.
 *   At any time before done: tern_media_upload_abort (client gone); no callback runs after.
 * cbs.done also runs (with an error) if the upload fails between calls: a disk error, or
 * upload_timeout without a byte while the sink was not the one pausing. Exactly one of: an
 * error returned by write/finish, cbs.done, or the caller's abort ends an upload. */
typedef struct tern_media_upload tern_media_upload;

enum { TERN_MEDIA_CONTINUE = 0, TERN_MEDIA_PAUSE = 1 };

typedef struct tern_media_result {
  int err;                   /* TERN_MEDIA_OK or an error */
  const tern_media_rec *rec; /* on success: the new record (owned by the store) */
  bool duplicate;            /* the same bytes were already stored (no second copy) */
} tern_media_result;

typedef struct tern_media_upload_cbs {
  /* Back-pressure released: read from the socket again. May call write, finish or abort. */
  void (*resume)(tern_media_upload *up, void *arg);
  /* The outcome; up is freed right after this returns. */
  void (*done)(tern_media_upload *up, const tern_media_result *res, void *arg);
  void *arg;
} tern_media_upload_cbs;

int tern_media_upload_start(tern_media *m, const char *user, const char *content_type, size_t ct_len,
                            int64_t content_length, const tern_media_upload_cbs *cbs,
                            tern_media_upload **out, int64_t *retry_after_s);
/* Returns TERN_MEDIA_CONTINUE, TERN_MEDIA_PAUSE or an error (the upload is over). */
int tern_media_upload_write(tern_media_upload *up, const void *data, size_t n);
/* Returns 0 (done follows) or an error (the upload is over; done is not called). */
int tern_media_upload_finish(tern_media_upload *up);
void tern_media_upload_abort(tern_media_upload *up);
/* Where the upload is, for logs and tests: "opening", "writing" (a write in flight), "open"
 * (idle, waiting for the client), "waiting" (for an unlink of the same bytes), "queued" (for a
 * decode slot), "decoding", "cleanup". Static string. */
const char *tern_media_upload_state(const tern_media_upload *up);

/* ---- lookups, access and lifetime ----------------------------------------------------------- */
/* The record for id, or NULL (unknown or malformed id, or past its deadline: expired media is
 * gone for readers at once, on every worker and node, whether or not a sweep removed it yet). */
const tern_media_rec *tern_media_get(tern_media *m, const char *id);
/* When r expires (ms): media.ttl after its upload, media.unsent_ttl while it was never sent,
 * an avatar's grace after it stopped being one (INT64_MAX while it is one). */
int64_t tern_media_rec_deadline(const tern_media_rec *r, int64_t ttl_ms, int64_t unsent_ttl_ms,
                                int64_t avatar_grace_ms);
/* The uploader or a granted user may read. */
bool tern_media_can_read(const tern_media_rec *r, const char *user);
/* A message carrying the media was sent to to_user, whose devices number recipient_devices (for
 * a user with no device, 1: the next device to log in gets it). Adds the grant (once per user;
 * granting the owner is a no-op), marks the media sent (so media.ttl applies instead of
 * media.unsent_ttl) and persists. Returns 0 or TERN_MEDIA_ERR_NOT_FOUND. */
int tern_media_grant(tern_media *m, const char *id, const char *to_user, uint32_t recipient_devices);
/* A complete 200 of the original was sent to device of user. Counts once per device of a
 * granted user (the owner's devices, thumbnails, 206 and 304 don't count: don't call it then).
 * When every granted recipient device has fetched, the media is deleted.
 * Returns 1 if it deleted the media, 0 if counted or ignored, TERN_MEDIA_ERR_NOT_FOUND. */
int tern_media_fetched(tern_media *m, const char *id, const char *user, const char *device_id);
/* A message carrying the media was deleted for everyone (PROTOCOL.md 15): users lose their
 * grants. Once no grant is left, the media is deleted (1); else persisted (0). Returns
 * TERN_MEDIA_ERR_NOT_FOUND for an unknown id. */
int tern_media_revoke(tern_media *m, const char *id, const char *const *users, size_t nusers);
/* An upload made with purpose=avatar (right after its upload's done): exempt from media.ttl
 * and media.unsent_ttl, and deleted avatar_grace after its upload unless it becomes an avatar.
 * tern_media_set_avatar: it became its owner's avatar (on) or stopped being it (off: deleted
 * avatar_grace from now). Both persist; TERN_MEDIA_ERR_NOT_FOUND for an unknown id. */
int tern_media_mark_avatar(tern_media *m, const char *id);
int tern_media_set_avatar(tern_media *m, const char *id, bool on);
/* Cluster mode: a record another node stored (from the change feed): inserted, or merged into
 * the one held (tern_media_rec_merge; merged state that differs from remote is persisted
 * again, and a fetch count that the merge completes deletes the media). The files of a new
 * record are not here until tern_media_cache_begin/end fetched them. Returns 0 or
 * TERN_MEDIA_ERR_INVALID / TERN_MEDIA_ERR_BUSY (closing). */
int tern_media_apply_remote(tern_media *m, const uint8_t *bytes, size_t len);
/* Cluster mode: another node deleted the record: it goes here too, without persisting (its
 * files here, a cache, go with the last record of their content). 0 or NOT_FOUND. */
int tern_media_forget(tern_media *m, const char *id);
/* Cluster mode: rec's files are not on this node (tern_media_open_file answered NOT_FOUND).
 * Pins its content so that no unlink runs while the caller fetches the files into orig and
 * thumb (paths filled, TERN_MEDIA_PATH_MAX bytes each; thumb is "" for a type without a
 * thumbnail). 0, or TERN_MEDIA_ERR_BUSY while an unlink of that content is in flight. Each 0
 * is followed by exactly one tern_media_cache_end with rec's sha256_hex: ok tells whether both
 * files are now in place. */
#define TERN_MEDIA_PATH_MAX 4096
int tern_media_cache_begin(tern_media *m, const tern_media_rec *rec, char *orig, char *thumb);
void tern_media_cache_end(tern_media *m, const char *sha256_hex, bool ok);
/* The paths of rec's original and thumbnail on this node (the files an upload made), for
 * storing them in the blob store; thumb is "" for a type without a thumbnail. */
void tern_media_file_paths(const tern_media *m, const tern_media_rec *rec, char *orig, char *thumb);
/* Deletes a record now (its files go with the last record of their content). */
int tern_media_delete(tern_media *m, const char *id);
/* Deletes every upload of owner that was never sent (an account deletion); returns how many.
 * Media already sent stay readable by their recipients until their lifetime ends. */
size_t tern_media_delete_unsent(tern_media *m, const char *owner);
/* Removes at most batch records that are past media.ttl, or past media.unsent_ttl without a
 * grant; file unlinks run in the threadpool. Returns the number removed; *more (optional) tells
 * whether expired records remain. */
int tern_media_sweep(tern_media *m, int64_t now, int batch, bool *more);
/* Bytes stored on disk (originals and thumbnails, each content once): tern_media_bytes. */
int64_t tern_media_bytes(const tern_media *m);
/* Records held. */
size_t tern_media_count(const tern_media *m);

/* Per-user upload quota (media.quota_bytes_per_hour, a leaky bucket). Returns 0 when user may
 * upload `bytes` more now, else the seconds to wait (for Retry-After). Does not charge: the
 * sink charges the bytes it receives. */
int64_t tern_media_quota_retry_after(tern_media *m, const char *user, int64_t bytes, int64_t now);

/* ---- serving --------------------------------------------------------------------------------- */
typedef struct tern_media_file {
  uv_file fd;        /* open for reading; the caller closes it (uv_fs_close) */
  int64_t size;      /* bytes */
  const char *mime;  /* Content-Type (static string) */
  char etag[72];     /* ETag header value */
} tern_media_file;
/* cb runs on the loop thread with err 0 and the file, or TERN_MEDIA_ERR_NOT_FOUND (the record
 * or file went meanwhile) / TERN_MEDIA_ERR_IO. The caller checks tern_media_can_read first. */
typedef void (*tern_media_open_cb)(int err, const tern_media_file *f, void *arg);
/* Opens the original or the thumbnail of rec in the threadpool. Returns 0 (cb follows) or an
 * error. The fd stays valid even if the media is deleted while it is being served. */
int tern_media_open_file(tern_media *m, const tern_media_rec *rec, bool thumb, tern_media_open_cb cb, void *arg);

#endif
