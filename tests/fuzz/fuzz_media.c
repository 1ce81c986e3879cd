/* libFuzzer target for the upload path's type sniffing and header parsing (src/media/sniff.c).
 * Properties checked, beyond "no crash, no overread" (ASan):
 *  - the answer does not depend on how the bytes are split into chunks (whole, byte by byte,
 *    and in pieces whose sizes come from the input itself);
 *  - DONE always comes with a type and two non-zero sides; BAD and DONE are sticky;
 *  - a type, once reported, never changes as more bytes arrive;
 *  - the mime parser and the limit check accept any input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media/media.h"

static void same(const tern_media_probe *a, const tern_media_probe *b) {
  if (a->status != b->status) abort();
  if (a->status == TERN_PROBE_DONE &&
      (a->type != b->type || a->width != b->width || a->height != b->height))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tern_media_probe whole, bytewise, pieces;
  int st = tern_media_sniff(data, size, &whole);
  if (st == TERN_PROBE_DONE && (whole.type == TERN_MEDIA_NONE || whole.width == 0 || whole.height == 0)) abort();
  if (whole.seen > size) abort();

  tern_media_probe_init(&bytewise);
  tern_media_type first_type = TERN_MEDIA_NONE;
  for (size_t i = 0; i < size; i++) {
    tern_media_probe_feed(&bytewise, data + i, 1);
    if (first_type == TERN_MEDIA_NONE) first_type = bytewise.type;
    else if (bytewise.type != first_type) abort();
  }
  same(&whole, &bytewise);

  tern_media_probe_init(&pieces);
  for (size_t i = 0, k; i < size; i += k) {
    k = (size_t)(data[i] % 61) + 1;
    if (k > size - i) k = size - i;
    tern_media_probe_feed(&pieces, data + i, k);
  }
  same(&whole, &pieces);

  /* Sticky: more bytes never change a final answer. */
  if (st != TERN_PROBE_MORE) {
    tern_media_probe again = whole;
    tern_media_probe_feed(&again, data, size);
    same(&whole, &again);
  }
  if (st == TERN_PROBE_DONE) (void)tern_media_dims_ok(whole.width, whole.height, 16384, 50000000);

  tern_media_type t = tern_media_type_from_mime((const char *)data, size);
  if (t != TERN_MEDIA_NONE && !tern_media_type_mime(t)) abort();
  return 0;
}
