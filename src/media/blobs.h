/* blobs: media bytes kept beside the local files in a shared blob store (cluster mode: the
 * chunks of store/natsmedia.h in JetStream), so that any node can serve a media id and no
 * node's disk is the only copy. The local files under <data_dir>/media/objects stay the working
 * copy: the uploading node stores them there as on one node and then puts them here; another
 * node fetches them into its objects directory on its first read (a cache, removed with the
 * record like any media file).
 *
 * Threads. The blob store's calls block on the network, so they run on one worker thread of
 * this module, one job at a time in submission order; every callback runs on the loop thread
 * given to tern_blobs_open. Nothing here blocks the loop.
 *
 * Ownership. Strings passed in are copied. The backend (tern_blob_backend) belongs to the
 * tern_blobs from open on and is closed on the worker thread when it ends. */
#ifndef TERN_MEDIA_BLOBS_H
#define TERN_MEDIA_BLOBS_H

#include <stdint.h>

#include <uv.h>

/* The blob store's synchronous primitives (natsmedia.h's): negative errno with a reason. */
typedef struct tern_blob_backend {
  int (*put)(void *self, const char *id, char part, const char *path, char *err, size_t errlen);
  int (*get)(void *self, const char *id, char part, int64_t size, const char *path, char *err, size_t errlen);
  int (*purge)(void *self, const char *id, char *err, size_t errlen);
  void (*close)(void *self);
  void *self;
} tern_blob_backend;

typedef struct tern_blobs tern_blobs;

/* err: 0 or a negative errno (-ECANCELED when tern_blobs_close came first); why: a reason. */
typedef void (*tern_blobs_cb)(int err, const char *why, void *arg);

/* Starts the worker thread. fetch_dir is where fetches write before they rename into place;
 * files left there by an earlier run are removed by the worker before its first job. */
int tern_blobs_open(uv_loop_t *loop, const tern_blob_backend *be, const char *fetch_dir, tern_blobs **out,
                    char *err, size_t errlen);
/* Callbacks of jobs not yet done run now with -ECANCELED, the running job's too (its work may
 * still finish afterwards: a fetch may leave its files, which the next start's recovery
 * removes); the worker ends after the job it is in, and frees everything. Loop thread. */
void tern_blobs_close(tern_blobs *b);

/* Stores the original (orig) and, when thumb is not NULL, the thumbnail of media id. */
void tern_blobs_put(tern_blobs *b, const char *id, const char *orig, const char *thumb, tern_blobs_cb cb, void *arg);
/* Fetches media id into orig (size bytes) and, when thumb is not NULL, thumb (thumb_size
 * bytes), each through a temporary file renamed into place (its directory made if missing). */
void tern_blobs_get(tern_blobs *b, const char *id, int64_t size, const char *orig, int64_t thumb_size,
                    const char *thumb, tern_blobs_cb cb, void *arg);
/* Removes media id's bytes; cb may be NULL (a failure is logged). */
void tern_blobs_purge(tern_blobs *b, const char *id, tern_blobs_cb cb, void *arg);

#endif
