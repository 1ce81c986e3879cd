/* test_natsmedia: media bytes as chunks in JetStream (store/natsmedia.h) on a real nats-server:
 * round trips across the chunk boundaries (empty, one byte, exactly a chunk, a chunk and one,
 * several), a get with a size the chunks do not have, a missing media, purge of one media
 * leaving another, a chunk stored again replacing itself, and ids that are no media ids. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "natsrv.h"
#include "store/natsmedia.h"
#include "t.h"

static char base_dir[64];
static tern_natsmedia *nm;

static void write_file(const char *path, const uint8_t *p, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0);
  CHECK(write(fd, p, n) == (ssize_t)n);
  close(fd);
}

static uint8_t *read_file(const char *path, size_t *n) {
  struct stat st;
  if (stat(path, &st) < 0) return NULL;
  uint8_t *p = tern_malloc((size_t)st.st_size + 1);
  int fd = open(path, O_RDONLY);
  *n = (size_t)read(fd, p, (size_t)st.st_size + 1);
  close(fd);
  return p;
}

static uint8_t *random_bytes(size_t n) {
  uint8_t *p = tern_malloc(n + 1);
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(rand() >> 7);
  return p;
}

/* put as the original and the thumbnail, get both back, compare */
static void round_trip(const char *id, size_t n) {
  char src[256], dst[256], err[256] = "";
  uint8_t *p = random_bytes(n);
  snprintf(src, sizeof src, "%s/src-%s", base_dir, id);
  write_file(src, p, n);
  CHECK_EQ_INT(tern_natsmedia_put_file(nm, id, 'o', src, err, sizeof err), 0);
  CHECK_EQ_INT(tern_natsmedia_put_file(nm, id, 't', src, err, sizeof err), 0);
  for (int k = 0; k < 2; k++) {
    snprintf(dst, sizeof dst, "%s/dst-%s-%d", base_dir, id, k);
    int rc = tern_natsmedia_get_file(nm, id, k ? 't' : 'o', (int64_t)n, dst, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    size_t got = 0;
    uint8_t *q = read_file(dst, &got);
    CHECK(q != NULL);
    CHECK_EQ_INT(got, n);
    if (q && got == n) CHECK_MEM(p, q, n);
    tern_free(q);
    unlink(dst);
  }
  unlink(src);
  tern_free(p);
}

TEST(natsmedia_round_trips) {
  const size_t C = TERN_NATSMEDIA_CHUNK;
  round_trip("empty", 0);
  round_trip("one", 1);
  round_trip("chunk", C);
  round_trip("chunkandone", C + 1);
  round_trip("several", 4 * C + 12345);
}

TEST(natsmedia_errors_and_purge) {
  char src[256], dst[256], err[256] = "";
  const size_t n = TERN_NATSMEDIA_CHUNK + 100;
  uint8_t *p = random_bytes(n);
  snprintf(src, sizeof src, "%s/src-e", base_dir);
  write_file(src, p, n);
  CHECK_EQ_INT(tern_natsmedia_put_file(nm, "keep", 'o', src, err, sizeof err), 0);
  CHECK_EQ_INT(tern_natsmedia_put_file(nm, "gone", 'o', src, err, sizeof err), 0);
  snprintf(dst, sizeof dst, "%s/dst-e", base_dir);
  /* the record says more bytes than the chunks hold: refused, and nothing is left behind */
  CHECK_EQ_INT(tern_natsmedia_get_file(nm, "keep", 'o', (int64_t)n + 1, dst, err, sizeof err) < 0, 1);
  CHECK(access(dst, F_OK) != 0);
  /* fewer: refused too */
  CHECK_EQ_INT(tern_natsmedia_get_file(nm, "keep", 'o', (int64_t)n - 1, dst, err, sizeof err) < 0, 1);
  CHECK(access(dst, F_OK) != 0);
  /* no such media, no such part */
  CHECK_EQ_INT(tern_natsmedia_get_file(nm, "never", 'o', 10, dst, err, sizeof err), -ENOENT);
  CHECK_EQ_INT(tern_natsmedia_get_file(nm, "keep", 't', (int64_t)n, dst, err, sizeof err), -ENOENT);
  /* purge one: the other stays; purging twice (or nothing) is fine */
  CHECK_EQ_INT(tern_natsmedia_purge(nm, "gone", err, sizeof err), 0);
  CHECK_EQ_INT(tern_natsmedia_purge(nm, "gone", err, sizeof err), 0);
  CHECK_EQ_INT(tern_natsmedia_get_file(nm, "gone", 'o', (int64_t)n, dst, err, sizeof err), -ENOENT);
  CHECK_EQ_INT(tern_natsmedia_get_file(nm, "keep", 'o', (int64_t)n, dst, err, sizeof err), 0);
  unlink(dst);
  /* stored again with other bytes of the same size: the chunks are replaced */
  uint8_t *p2 = random_bytes(n);
  write_file(src, p2, n);
  CHECK_EQ_INT(tern_natsmedia_put_file(nm, "keep", 'o', src, err, sizeof err), 0);
  CHECK_EQ_INT(tern_natsmedia_get_file(nm, "keep", 'o', (int64_t)n, dst, err, sizeof err), 0);
  size_t got = 0;
  uint8_t *q = read_file(dst, &got);
  CHECK(q && got == n && memcmp(q, p2, n) == 0);
  tern_free(q);
  unlink(dst);
  /* ids that are no media ids never become subjects */
  CHECK_EQ_INT(tern_natsmedia_put_file(nm, "a.b", 'o', src, err, sizeof err), -EINVAL);
  CHECK_EQ_INT(tern_natsmedia_get_file(nm, ">", 'o', 1, dst, err, sizeof err), -EINVAL);
  CHECK_EQ_INT(tern_natsmedia_purge(nm, "*", err, sizeof err), -EINVAL);
  CHECK_EQ_INT(tern_natsmedia_purge(nm, "", err, sizeof err), -EINVAL);
  CHECK_EQ_INT(tern_natsmedia_purge(nm, "keep", err, sizeof err), 0);
  unlink(src);
  tern_free(p);
  tern_free(p2);
}

int main(void) {
  tern_log_set_level(TERN_LOG_WARN);
  snprintf(base_dir, sizeof base_dir, "/tmp/tern-test-natsmedia-XXXXXX");
  if (!mkdtemp(base_dir)) {
    perror("mkdtemp");
    return 1;
  }
  natsrv ns;
  int r = natsrv_start(&ns, 1, base_dir);
  CHECK_EQ_INT(r, 0);
  char err[256] = "";
  if (r == 0) {
    for (int i = 0; i < 100 && (r = tern_natsmedia_open(ns.urls, "tnm", 1, &nm, err, sizeof err)) == -ENOTCONN; i++)
      natsrv_sleep_ms(200); /* the server is still starting */
    if (r < 0) fprintf(stderr, "open: %s\n", err);
    CHECK_EQ_INT(r, 0);
  }
  if (r == 0) {
    RUN(natsmedia_round_trips);
    RUN(natsmedia_errors_and_purge);
    tern_natsmedia_close(nm);
  }
  natsrv_stop(&ns);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", base_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", base_dir);
  DONE();
}
