/* libFuzzer target for the message locator record (store/locator.h): bytes read back from the
 * MSGS bucket, after a crash, a bad disk or another version's write.
 * Properties: decode never reads past the input; every entry it accepts lies inside it; a record
 * that decodes and holds no NUL in its strings encodes back to exactly the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "store/locator.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tern_locator l;
  if (tern_locator_decode(data, size, &l) != 0) return 0;
  const uint8_t *end = data + size;
  if ((const uint8_t *)l.media + l.media_len > end || (const uint8_t *)l.group + l.group_len > end ||
      l.at + l.at_len != end)
    abort();
  bool plain = !memchr(l.media, 0, l.media_len) && !memchr(l.group, 0, l.group_len);
  char media[256], group[256];
  memcpy(media, l.media, l.media_len);
  media[l.media_len] = '\0';
  memcpy(group, l.group, l.group_len);
  group[l.group_len] = '\0';
  tern_buf b = {0};
  tern_locator_begin(&b, l.flags, l.media_len ? media : NULL, l.group_len ? group : NULL);
  size_t off = 0, n;
  const char *inbox;
  uint64_t seq;
  while (tern_locator_next(&l, &off, &inbox, &n, &seq)) {
    if (!n || (const uint8_t *)inbox + n > end) abort();
    if (!tern_locator_add(&b, inbox, n, seq)) plain = false; /* over TERN_LOCATOR_MAX */
  }
  if (plain && (b.len != size || memcmp(b.data, data, size) != 0)) abort();
  tern_buf_free(&b);
  return 0;
}
