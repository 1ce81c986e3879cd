/* libFuzzer target for the other parsers of src/media that see outside bytes: the stored
 * record codec (bytes from the store, after a crash or a bad disk), the Range and If-None-Match
 * header parsers, and the request path / id check.
 * Properties: decode(x) ok => encode(decode(x)) == x exactly (one canonical form) and decodes
 * again; a Range answer always lies inside the body; a parsed path yields a valid id. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "media/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tern_media_rec *r = NULL;
  if (tern_media_rec_decode(data, size, &r) == 0) {
    tern_buf b = {0};
    tern_media_rec_encode(r, &b);
    if (b.len != size || memcmp(b.data, data, size) != 0) abort();
    tern_media_rec *r2 = NULL;
    if (tern_media_rec_decode((const uint8_t *)b.data, b.len, &r2) != 0) abort();
    tern_buf j = {0};
    tern_media_rec_json(r2, &j);
    tern_buf_free(&j);
    tern_media_rec_free(r2);
    tern_buf_free(&b);
    tern_media_rec_free(r);
  }

  /* The first 4 bytes (if any) pick the body size for Range; the rest is the header. */
  uint64_t body = 0;
  size_t off = size >= 4 ? 4 : size;
  for (size_t i = 0; i < off; i++) body = body << 8 | data[i];
  const char *h = (const char *)data + off;
  size_t hn = size - off;
  uint64_t start = 0, len = 0;
  tern_range_result rr = tern_media_parse_range(h, hn, body, &start, &len);
  if (rr == TERN_RANGE_OK && (len == 0 || start >= body || len > body - start)) abort();

  char etag[72];
  char hex[65];
  memset(hex, 'a', 64);
  hex[64] = '\0';
  tern_media_etag(hex, size & 1, etag);
  (void)tern_media_etag_match(h, hn, etag);

  char id[TERN_MEDIA_ID_LEN + 1];
  bool thumb;
  if (tern_media_parse_path((const char *)data, size, id, &thumb) == 0 && !tern_media_id_valid(id, strlen(id)))
    abort();
  return 0;
}
