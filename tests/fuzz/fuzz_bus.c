/* libFuzzer target for the cluster bus codec (core/cluster.c's tern_bus_decode), which reads
 * what other loops and other nodes publish. Any input must decode or be refused; a decoded
 * message's strings point into the input, end at a NUL within it and hold no other NUL; and
 * encoding it again must give back the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "core/cluster.h"
#include "fuzz.h"

static void check_str(const char *s, const uint8_t *data, size_t size) {
  if (!s) return;
  REQUIRE((const uint8_t *)s >= data && (const uint8_t *)s < data + size);
  size_t n = strlen(s);
  REQUIRE((const uint8_t *)s + n < data + size && n <= 255);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tern_bus_msg m;
  if (tern_bus_decode(data, size, &m) == 0) {
    check_str(m.writer, data, size);
    check_str(m.user, data, size);
    check_str(m.device, data, size);
    check_str(m.to, data, size);
    for (size_t i = 0; i < m.nentries; i++) {
      check_str(m.entries[i].user, data, size);
      check_str(m.entries[i].device, data, size);
    }
    tern_buf b = {0};
    tern_bus_encode(&m, &b);
    REQUIRE(b.len == size && memcmp(b.data, data, size) == 0);
    tern_buf_free(&b);
  }
  tern_bus_msg_free(&m);
  return 0;
}
