/* libFuzzer target for the profile record (core/profile.h): bytes from the store's RECORDS
 * bucket, at load and from the change feed (another node's write, or a corrupted one).
 * Properties: a record that decodes has a name of at most 64 bytes of UTF-8 and an avatar that
 * is empty or a media id, both inside the input, and encodes back to exactly the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "core/profile.h"
#include "media/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tern_str name, avatar;
  if (tern_profile_decode(data, size, &name, &avatar) != 0) return 0;
  const char *end = (const char *)data + size;
  if (name.n > TERN_PROFILE_NAME_MAX || name.p + name.n > end || avatar.p + avatar.n > end) abort();
  if (!tern_utf8_valid(name.p, name.n) || (avatar.n && !tern_media_id_valid(avatar.p, avatar.n))) abort();
  char n[TERN_PROFILE_NAME_MAX + 1], a[TERN_MEDIA_ID_LEN + 1];
  memcpy(n, name.p, name.n);
  n[name.n] = '\0';
  memcpy(a, avatar.p, avatar.n);
  a[avatar.n] = '\0';
  tern_buf b = {0};
  tern_profile_encode(name.n ? n : NULL, avatar.n ? a : NULL, &b);
  if (b.len != size || memcmp(b.data, data, size) != 0) abort();
  tern_buf_free(&b);
  return 0;
}
