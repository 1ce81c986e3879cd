/* locator: see locator.h. */
#include "store/locator.h"

#include <errno.h>
#include <string.h>


enum { VERSION = 1 };

void tern_locator_begin(tern_buf *out, uint8_t flags, const char *media, const char *group) {
  size_t ml = media ? strnlen(media, 255) : 0, gl = group ? strnlen(group, 255) : 0;
  tern_buf_reset(out);
  tern_buf_putc(out, VERSION);
  tern_buf_putc(out, (char)flags);
  tern_buf_putc(out, (char)ml);
  tern_buf_append(out, media, ml);
  tern_buf_putc(out, (char)gl);
  tern_buf_append(out, group, gl);
}

bool tern_locator_add(tern_buf *out, const char *inbox, size_t n, uint64_t seq) {
  if (!n || n > 255 || out->len + 1 + n + 8 > TERN_LOCATOR_MAX) return false;
  tern_buf_putc(out, (char)n);
  tern_buf_append(out, inbox, n);
  tern_buf_put_be64(out, seq);
  return true;
}

int tern_locator_decode(const uint8_t *p, size_t n, tern_locator *out) {
  if (n < 4 || p[0] != VERSION || 4 + (size_t)p[2] > n) return -EINVAL;
  tern_locator l = {.flags = p[1], .media = (const char *)p + 3, .media_len = p[2]};
  size_t at = 3 + l.media_len;
  l.group_len = p[at];
  l.group = (const char *)p + at + 1;
  if (at + 1 + l.group_len > n) return -EINVAL;
  l.at = p + at + 1 + l.group_len;
  l.at_len = n - (at + 1 + l.group_len);
  /* every entry checked now, so that next() can trust the lengths */
  for (size_t off = 0; off < l.at_len;) {
    size_t il = l.at[off];
    if (!il || off + 1 + il + 8 > l.at_len) return -EINVAL;
    off += 1 + il + 8;
  }
  *out = l;
  return 0;
}

bool tern_locator_next(const tern_locator *l, size_t *off, const char **inbox, size_t *n, uint64_t *seq) {
  if (*off >= l->at_len) return false;
  size_t il = l->at[*off];
  *inbox = (const char *)l->at + *off + 1;
  *n = il;
  *seq = tern_get_be64(l->at + *off + 1 + il);
  *off += 1 + il + 8;
  return true;
}
