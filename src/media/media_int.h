/* media_int: what media.c (the store) and upload.c (the sink) share. Not for other layers. */
#ifndef TERN_MEDIA_MEDIA_INT_H
#define TERN_MEDIA_MEDIA_INT_H

#include <limits.h>
#include <openssl/evp.h>

#include "base/map.h"
#include "media/media.h"

#define MEDIA_PATH_MAX 4096

/* One stored content object (original + thumbnail), shared by every record with its hash.
 * Its files may be unlinked only when no record refers to it (refs) and no upload is about to
 * link it (pins); that decision is made on the loop thread, so it never races a rename. */
struct tern_media_content {
  char hex[65];               /* sha256, the map key and file name */
  uint32_t refs;              /* records using it */
  uint32_t pins;              /* uploads between "hash known" and their result */
  bool unlinking;             /* an unlink job for its files is in flight */
  bool present;               /* both files are known to be on disk */
  bool seen_orig, seen_thumb; /* recovery: found by the directory scan */
  bool counted;               /* its bytes are in the tern_media_bytes gauge */
  tern_media_type type;       /* from the first successful decode (or record) */
  uint32_t width, height;
  int64_t size, thumb_size;
  struct tern_media_upload *waiters; /* uploads waiting for the unlink to finish */
};

typedef struct quota_bucket {
  double level;   /* bytes charged and not yet drained */
  int64_t at;     /* ms of the last update */
} quota_bucket;

struct tern_recover_state;

struct tern_media {
  uv_loop_t *loop;
  tern_media_options opt;        /* copy; opt.data_dir points at dir_data */
  char *dir_data;                /* <data_dir> */
  char *dir_tmp;                 /* <data_dir>/media/tmp */
  char *dir_obj;                 /* <data_dir>/media/objects */
  tern_map recs;                 /* id -> tern_media_rec* */
  tern_map contents;             /* sha256 hex -> tern_media_content* */
  tern_map quota;                /* user -> quota_bucket* */
  tern_media_rec **heap;         /* min-heap on expiry deadline */
  size_t nheap, heap_cap;
  int64_t bytes;                 /* gauge: bytes of counted contents */
  size_t inflight;               /* threadpool requests and handles that point at us */
  bool closing;                  /* tern_media_close was called */
  bool recovering, recovered;    /* recovery phase */
  struct tern_media_upload *uploads;  /* every live upload (doubly linked) */
  struct tern_media_upload *dq_head, *dq_tail; /* waiting for a decode slot */
  int decoding;                  /* decode jobs running */
  uv_timer_t sweep_timer;        /* the sweeper */
  bool sweeper_on;
  uv_timer_t idle_timer;         /* upload_timeout checks, runs while uploads exist */
  bool idle_timer_on;
};

int64_t media_now(const tern_media *m);
void media_ref(tern_media *m);    /* one more request in flight */
void media_unref(tern_media *m);  /* one fewer; frees m when closing and none remain */

/* Path of the original or thumbnail of content hex; out has MEDIA_PATH_MAX bytes. */
void media_obj_path(const tern_media *m, const char *hex, bool thumb, char *out);
void media_obj_dir(const tern_media *m, const char *hex, char *out);

tern_media_content *media_content_get(tern_media *m, const char *hex, bool create);
/* Drops the content if nothing uses it: unlinks its files (if any) or just forgets it. */
void media_content_release(tern_media *m, tern_media_content *c);
/* Creates a record for a finished upload and persists it. */
tern_media_rec *media_rec_create(tern_media *m, const char *owner, tern_media_content *c);
void media_bytes_count(tern_media *m, tern_media_content *c);

void media_quota_charge(tern_media *m, const char *user, int64_t bytes, int64_t now);

/* upload.c, for the store: */
void media_upload_abort_all(tern_media *m);
void media_upload_dispatch(struct tern_media_upload *up); /* after a content unlink finished */
bool media_upload_owns_tmp(const tern_media *m, const char *name);
struct tern_media_upload *media_upload_next_waiter(struct tern_media_upload *up, struct tern_media_upload *set);
void media_vips_init(void);

#endif
