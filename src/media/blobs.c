/* blobs: the blob store's jobs on a worker thread (blobs.h). */
#include "media/blobs.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"

typedef enum { JOB_PUT, JOB_GET, JOB_PURGE } job_kind;

typedef struct job {
  job_kind kind;
  char *id;
  char *orig, *thumb;        /* files (thumb may be NULL) */
  int64_t size, thumb_size;  /* GET */
  tern_blobs_cb cb;          /* NULL once answered (close) or for a fire-and-forget purge */
  void *arg;
  int err;                   /* result */
  char why[256];
  struct job *next;
} job;

struct tern_blobs {
  uv_loop_t *loop;
  uv_async_t *async;         /* the worker's "results ready" (freed by its close callback: it
                                may outlive b) */
  pthread_t thread;
  pthread_mutex_t mu;        /* guards everything below */
  pthread_cond_t cv;
  job *todo, *todo_tail;     /* queued for the worker */
  job *running;              /* the worker's current job */
  job *done, *done_tail;     /* finished, for the loop */
  bool stop;                 /* close was called: the worker ends, the loop side is gone */
  tern_blob_backend be;
  char *fetch_dir;
  unsigned long seq;         /* temporary file names (worker only) */
};

static void job_free(job *j) {
  tern_free(j->id);
  tern_free(j->orig);
  tern_free(j->thumb);
  tern_free(j);
}

static void clean_fetch_dir(tern_blobs *b) {
  DIR *d = opendir(b->fetch_dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') unlinkat(dirfd(d), e->d_name, 0);
  closedir(d);
}

static void mkdir_parent(const char *path) {
  char *c = tern_strdup(path);
  (void)mkdir(dirname(c), 0755);
  tern_free(c);
}

static int fetch_one(tern_blobs *b, job *j, char part, int64_t size, const char *dest) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s/%s.%c.%lu", b->fetch_dir, j->id, part, b->seq++);
  int rc = b->be.get(b->be.self, j->id, part, size, tmp, j->why, sizeof j->why);
  if (rc < 0) return rc;
  mkdir_parent(dest);
  if (rename(tmp, dest) < 0) {
    snprintf(j->why, sizeof j->why, "cannot rename %s: %s", dest, strerror(errno));
    unlink(tmp);
    return -EIO;
  }
  return 0;
}

static void run(tern_blobs *b, job *j) {
  int64_t t0 = tern_now_ms();
  switch (j->kind) {
    case JOB_PUT:
      j->err = b->be.put(b->be.self, j->id, 'o', j->orig, j->why, sizeof j->why);
      if (j->err == 0 && j->thumb) j->err = b->be.put(b->be.self, j->id, 't', j->thumb, j->why, sizeof j->why);
      break;
    case JOB_GET:
      j->err = fetch_one(b, j, 'o', j->size, j->orig);
      if (j->err == 0 && j->thumb) j->err = fetch_one(b, j, 't', j->thumb_size, j->thumb);
      break;
    case JOB_PURGE: j->err = b->be.purge(b->be.self, j->id, j->why, sizeof j->why); break;
  }
  TERN_DEBUG("media blob job", "kind=%d media_id=%s err=%d ms=%lld", (int)j->kind, j->id, j->err,
             (long long)(tern_now_ms() - t0));
}

static void *worker(void *arg) {
  tern_blobs *b = arg;
  clean_fetch_dir(b);
  pthread_mutex_lock(&b->mu);
  for (;;) {
    while (!b->todo && !b->stop) pthread_cond_wait(&b->cv, &b->mu);
    if (b->stop) break;
    job *j = b->todo;
    b->todo = j->next;
    if (!b->todo) b->todo_tail = NULL;
    j->next = NULL;
    b->running = j;
    pthread_mutex_unlock(&b->mu);
    run(b, j);
    pthread_mutex_lock(&b->mu);
    b->running = NULL;
    if (b->stop) { /* answered by close already */
      job_free(j);
      break;
    }
    if (b->done_tail) b->done_tail->next = j;
    else b->done = j;
    b->done_tail = j;
    uv_async_send(b->async);
  }
  pthread_mutex_unlock(&b->mu);
  /* The loop side is gone (close): everything left is ours. */
  for (job *j = b->done, *nx; j; j = nx) {
    nx = j->next;
    job_free(j);
  }
  if (b->be.close) b->be.close(b->be.self);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  tern_free(b->fetch_dir);
  tern_free(b);
  return NULL;
}

static void on_async_closed(uv_handle_t *h) { tern_free(h); }

static void on_async(uv_async_t *h) {
  tern_blobs *b = h->data;
  pthread_mutex_lock(&b->mu);
  job *list = b->done;
  b->done = b->done_tail = NULL;
  pthread_mutex_unlock(&b->mu);
  for (job *j = list, *nx; j; j = nx) {
    nx = j->next;
    if (j->cb) j->cb(j->err, j->why, j->arg);
    else if (j->err < 0) TERN_WARN("media blob job failed", "media_id=%s err=%s", j->id, tern_log_quote(j->why));
    job_free(j);
  }
}

int tern_blobs_open(uv_loop_t *loop, const tern_blob_backend *be, const char *fetch_dir, tern_blobs **out,
                    char *err, size_t errlen) {
  if (mkdir(fetch_dir, 0755) < 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create %s: %s", fetch_dir, strerror(errno));
    return -errno;
  }
  tern_blobs *b = TERN_NEW(tern_blobs);
  b->loop = loop;
  b->be = *be;
  b->fetch_dir = tern_strdup(fetch_dir);
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, NULL);
  b->async = TERN_NEW(uv_async_t);
  uv_async_init(loop, b->async, on_async);
  b->async->data = b;
  uv_unref((uv_handle_t *)b->async); /* the work waiting on a job keeps the loop alive, not this */
  int rc = pthread_create(&b->thread, NULL, worker, b);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the media blob thread: %s", strerror(rc));
    uv_close((uv_handle_t *)b->async, on_async_closed); /* b leaks with the failed start-up */
    return -rc;
  }
  pthread_detach(b->thread);
  *out = b;
  return 0;
}

void tern_blobs_close(tern_blobs *b) {
  if (!b) return;
  pthread_mutex_lock(&b->mu);
  job *todo = b->todo, *done = b->done;
  b->todo = b->todo_tail = b->done = b->done_tail = NULL;
  /* The running job is answered now too (its callback's memory is the caller's, which frees
   * it then): the worker touches only the job's own copies, and frees it when it is done. */
  job *running = b->running;
  tern_blobs_cb rcb = running ? running->cb : NULL;
  void *rarg = running ? running->arg : NULL;
  if (running) running->cb = NULL;
  pthread_mutex_unlock(&b->mu);
  if (rcb) rcb(-ECANCELED, "the server is shutting down", rarg);
  /* Answer on the loop, outside the lock: a callback may submit more (which close refuses). */
  for (job *l = done; l; l = l->next)
    if (l->cb) l->cb(l->err, l->why, l->arg);
  for (job *l = todo; l; l = l->next)
    if (l->cb) l->cb(-ECANCELED, "the server is shutting down", l->arg);
  for (job *l = done, *nx; l; l = nx) {
    nx = l->next;
    job_free(l);
  }
  for (job *l = todo, *nx; l; l = nx) {
    nx = l->next;
    job_free(l);
  }
  /* The async handle is the loop's; once it is closing the worker must not send on it. The
   * worker reads stop under the lock before each uv_async_send. */
  pthread_mutex_lock(&b->mu);
  b->stop = true;
  pthread_cond_signal(&b->cv);
  uv_close((uv_handle_t *)b->async, on_async_closed);
  pthread_mutex_unlock(&b->mu);
}

static void submit(tern_blobs *b, job *j) {
  pthread_mutex_lock(&b->mu);
  if (b->stop) {
    pthread_mutex_unlock(&b->mu);
    if (j->cb) j->cb(-ECANCELED, "the server is shutting down", j->arg);
    job_free(j);
    return;
  }
  if (b->todo_tail) b->todo_tail->next = j;
  else b->todo = j;
  b->todo_tail = j;
  pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

static job *job_new(job_kind kind, const char *id, tern_blobs_cb cb, void *arg) {
  job *j = TERN_NEW(job);
  j->kind = kind;
  j->id = tern_strdup(id);
  j->cb = cb;
  j->arg = arg;
  return j;
}

void tern_blobs_put(tern_blobs *b, const char *id, const char *orig, const char *thumb, tern_blobs_cb cb, void *arg) {
  job *j = job_new(JOB_PUT, id, cb, arg);
  j->orig = tern_strdup(orig);
  j->thumb = thumb ? tern_strdup(thumb) : NULL;
  submit(b, j);
}

void tern_blobs_get(tern_blobs *b, const char *id, int64_t size, const char *orig, int64_t thumb_size,
                    const char *thumb, tern_blobs_cb cb, void *arg) {
  job *j = job_new(JOB_GET, id, cb, arg);
  j->orig = tern_strdup(orig);
  j->thumb = thumb ? tern_strdup(thumb) : NULL;
  j->size = size;
  j->thumb_size = thumb_size;
  submit(b, j);
}

void tern_blobs_purge(tern_blobs *b, const char *id, tern_blobs_cb cb, void *arg) { submit(b, job_new(JOB_PURGE, id, cb, arg)); }
