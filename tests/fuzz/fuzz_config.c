/* libFuzzer target for the config file reader (base/config.c's load_file and every setting's
 * value parser behind it): the input is the file named by --config. It must load or fail
 * with a one-line reason, never crash, leak or run past a buffer. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* an anonymous file, so runs in parallel never share one */
  int fd = memfd_create("fuzz_config", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  size_t off = 0;
  while (off < size) {
    ssize_t w = write(fd, data + off, size - off);
    REQUIRE(w > 0);
    off += (size_t)w;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  char *argv[] = {"ternd", "--config", path, NULL};
  tern_config cfg;
  tern_config_defaults(&cfg);
  bool help = false;
  char err[512] = "";
  int rc = tern_config_load(&cfg, 3, argv, &help, err, sizeof err);
  REQUIRE(rc == 0 || rc == -EINVAL);
  REQUIRE(rc == 0 || (err[0] && memchr(err, '\0', sizeof err) && !strchr(err, '\n')));
  tern_config_free(&cfg);
  close(fd);
  return 0;
}
