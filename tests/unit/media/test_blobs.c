/* test_blobs: the blob store's worker thread (media/blobs.h) with a fake backend: jobs run in
 * submission order off the loop thread and answer on it; a get renames its temporary file into
 * place (making the directory); a failure reaches the callback with its reason; close answers
 * the running and the queued jobs with -ECANCELED, and nothing runs after it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "media/blobs.h"
#include "t.h"

static char base_dir[64];
static pthread_t loop_thread;
static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fake_cv = PTHREAD_COND_INITIALIZER;
static char log_[1024];     /* what the fake saw, in order */
static bool off_loop = true;/* every fake call ran on another thread */
static bool hold;           /* the fake waits while set (to queue jobs behind one) */
static int closed;

static void note(const char *what, const char *id, char part) {
  pthread_mutex_lock(&fake_mu);
  if (pthread_equal(pthread_self(), loop_thread)) off_loop = false;
  size_t l = strlen(log_);
  snprintf(log_ + l, sizeof log_ - l, "%s:%s%s%c ", what, id, part ? "/" : "", part ? part : ' ');
  while (hold) pthread_cond_wait(&fake_cv, &fake_mu);
  pthread_mutex_unlock(&fake_mu);
}

static int f_put(void *self, const char *id, char part, const char *path, char *err, size_t n) {
  (void)self;
  note("put", id, part);
  if (strcmp(id, "bad") == 0) {
    snprintf(err, n, "fake refuses %s", path);
    return -EIO;
  }
  return 0;
}
static int f_get(void *self, const char *id, char part, int64_t size, const char *path, char *err, size_t n) {
  (void)self;
  note("get", id, part);
  if (strcmp(id, "missing") == 0) {
    snprintf(err, n, "no chunks");
    return -ENOENT;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return -EIO;
  for (int64_t i = 0; i < size; i++) (void)!write(fd, &part, 1);
  close(fd);
  return 0;
}
static int f_purge(void *self, const char *id, char *err, size_t n) {
  (void)self, (void)err, (void)n;
  note("purge", id, 0);
  return 0;
}
static void f_close(void *self) {
  (void)self;
  pthread_mutex_lock(&fake_mu);
  closed++;
  pthread_mutex_unlock(&fake_mu);
}

typedef struct res {
  int calls, err;
  char why[256];
  int order; /* when it was answered */
} res;
static int answered;

static void on_done(int err, const char *why, void *arg) {
  res *r = arg;
  if (!pthread_equal(pthread_self(), loop_thread)) r->err = 12345; /* not on the loop: fails the checks */
  else r->err = err;
  r->calls++;
  r->order = ++answered;
  snprintf(r->why, sizeof r->why, "%s", why ? why : "");
}

static void on_tick(uv_timer_t *t) { (void)t; }

/* The blobs' async handle does not keep a loop alive (the work waiting on a job does): a
 * timer stands in for that work here. */
static void run_until(uv_loop_t *loop, const int *calls, int want) {
  uv_timer_t t;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, on_tick, 1, 1);
  for (int i = 0; i < 5000 && *calls < want; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

static off_t file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? st.st_size : -1;
}

TEST(blobs_jobs) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  loop_thread = pthread_self();
  char fetch[256], err[256];
  snprintf(fetch, sizeof fetch, "%s/fetch", base_dir);
  mkdir(fetch, 0755);
  /* a file an earlier run left there goes before the first job */
  char stale[300];
  snprintf(stale, sizeof stale, "%s/old.o.1", fetch);
  close(open(stale, O_WRONLY | O_CREAT, 0644));
  tern_blob_backend be = {.put = f_put, .get = f_get, .purge = f_purge, .close = f_close};
  tern_blobs *b = NULL;
  CHECK_EQ_INT(tern_blobs_open(&loop, &be, fetch, &b, err, sizeof err), 0);
  res put = {0}, bad = {0}, get = {0}, miss = {0}, purge = {0};
  char orig[300], thumb[300];
  snprintf(orig, sizeof orig, "%s/objects/ab/abc", base_dir); /* objects/ab does not exist yet */
  snprintf(thumb, sizeof thumb, "%s/objects/ab/abc.thumb.jpg", base_dir);
  mkdir(strcat(strcpy((char[300]){0}, base_dir), "/objects"), 0755);
  tern_blobs_put(b, "m1", "/some/orig", "/some/thumb", on_done, &put);
  tern_blobs_put(b, "bad", "/x", NULL, on_done, &bad);
  tern_blobs_get(b, "m1", 5, orig, 3, thumb, on_done, &get);
  tern_blobs_get(b, "missing", 5, orig, 0, NULL, on_done, &miss);
  tern_blobs_purge(b, "m1", on_done, &purge);
  tern_blobs_purge(b, "m2", NULL, NULL); /* fire and forget */
  run_until(&loop, &purge.calls, 1);
  for (int i = 0; i < 1000 && !strstr(log_, "purge:m2"); i++) usleep(1000);
  CHECK_EQ_STR(log_, "put:m1/o put:m1/t put:bad/o get:m1/o get:m1/t get:missing/o purge:m1  purge:m2  ");
  CHECK(off_loop);
  CHECK(put.calls == 1 && put.err == 0 && put.order == 1);
  CHECK(bad.calls == 1 && bad.err == -EIO && strstr(bad.why, "fake refuses") && bad.order == 2);
  CHECK(get.calls == 1 && get.err == 0 && get.order == 3);
  CHECK_EQ_INT(file_size(orig), 5);
  CHECK_EQ_INT(file_size(thumb), 3);
  CHECK(miss.calls == 1 && miss.err == -ENOENT && miss.order == 4);
  CHECK(purge.calls == 1 && purge.err == 0 && purge.order == 5);
  CHECK(access(stale, F_OK) != 0);
  /* the fetch dir holds nothing once the gets are done (renamed, or removed on failure) */
  CHECK_EQ_INT(rmdir(fetch), 0);
  mkdir(fetch, 0755);

  /* close: one job running (held), two queued: all three are answered -ECANCELED at once,
   * and never again; then the worker ends and closes the backend */
  pthread_mutex_lock(&fake_mu);
  hold = true;
  log_[0] = '\0';
  pthread_mutex_unlock(&fake_mu);
  res r1 = {0}, r2 = {0}, r3 = {0};
  tern_blobs_put(b, "h1", "/a", NULL, on_done, &r1);
  for (int i = 0; i < 2000; i++) { /* until the worker is inside h1 */
    pthread_mutex_lock(&fake_mu);
    bool in = strstr(log_, "put:h1") != NULL;
    pthread_mutex_unlock(&fake_mu);
    if (in) break;
    usleep(1000);
  }
  tern_blobs_put(b, "h2", "/b", NULL, on_done, &r2);
  tern_blobs_purge(b, "h3", on_done, &r3);
  tern_blobs_close(b);
  CHECK(r2.calls == 1 && r2.err == -ECANCELED);
  CHECK(r3.calls == 1 && r3.err == -ECANCELED);
  CHECK(r1.calls == 1 && r1.err == -ECANCELED);
  pthread_mutex_lock(&fake_mu);
  hold = false;
  pthread_cond_broadcast(&fake_cv);
  pthread_mutex_unlock(&fake_mu);
  for (int i = 0; i < 2000; i++) {
    pthread_mutex_lock(&fake_mu);
    int c = closed;
    pthread_mutex_unlock(&fake_mu);
    if (c) break;
    usleep(1000);
  }
  CHECK_EQ_INT(closed, 1);
  uv_run(&loop, UV_RUN_NOWAIT); /* the async handle's close */
  CHECK_EQ_INT(r1.calls, 1);
  CHECK_EQ_STR(log_, "put:h1/o ");
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  tern_log_set_level(TERN_LOG_WARN);
  snprintf(base_dir, sizeof base_dir, "/tmp/tern-test-blobs-XXXXXX");
  if (!mkdtemp(base_dir)) {
    perror("mkdtemp");
    return 1;
  }
  RUN(blobs_jobs);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", base_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", base_dir);
  DONE();
}
