/* http: pure helpers for serving media: id and path checks, Range, ETag, If-None-Match.
 * Strict on purpose: anything that is not exactly what we generate is "not found". */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "media/media.h"

bool tern_media_id_valid(const char *s, size_t n) {
  if (!s || n != TERN_MEDIA_ID_LEN) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'))) return false;
  }
  return true;
}

int tern_media_parse_path(const char *path, size_t n, char id[TERN_MEDIA_ID_LEN + 1], bool *thumb) {
  static const char prefix[] = "/v1/media/";
  const size_t pl = sizeof prefix - 1;
  if (!path) return TERN_MEDIA_ERR_NOT_FOUND;
  /* The query is not part of the resource; cut it off before looking at the path. */
  const char *q = memchr(path, '?', n);
  if (q) n = (size_t)(q - path);
  if (n < pl + TERN_MEDIA_ID_LEN || memcmp(path, prefix, pl) != 0) return TERN_MEDIA_ERR_NOT_FOUND;
  const char *s = path + pl;
  if (!tern_media_id_valid(s, TERN_MEDIA_ID_LEN)) return TERN_MEDIA_ERR_NOT_FOUND;
  const char *rest = s + TERN_MEDIA_ID_LEN;
  size_t rl = n - pl - TERN_MEDIA_ID_LEN;
  bool t;
  if (rl == 0) t = false;
  else if (rl == 6 && memcmp(rest, "/thumb", 6) == 0) t = true;
  else return TERN_MEDIA_ERR_NOT_FOUND;
  memcpy(id, s, TERN_MEDIA_ID_LEN);
  id[TERN_MEDIA_ID_LEN] = '\0';
  *thumb = t;
  return 0;
}

/* Reads decimal digits at *i; false when there are none or the value passes 2^62 (no body is
 * that large, and it keeps the arithmetic below far from overflow). */
static bool digits(const char *s, size_t n, size_t *i, uint64_t *out) {
  uint64_t v = 0;
  size_t start = *i;
  while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
    v = v * 10 + (uint64_t)(s[*i] - '0');
    if (v > (1ull << 62)) return false;
    (*i)++;
  }
  *out = v;
  return *i > start;
}

static bool ows(char c) { return c == ' ' || c == '\t'; }

tern_range_result tern_media_parse_range(const char *h, size_t n, uint64_t size, uint64_t *start, uint64_t *len) {
  if (!h) return TERN_RANGE_NONE;
  size_t a = 0, e = n;
  while (a < e && ows(h[a])) a++;
  while (e > a && ows(h[e - 1])) e--;
  /* Another unit is not ours to understand: RFC 9110 says ignore it. */
  if (e - a < 6 || strncasecmp(h + a, "bytes=", 6) != 0) return TERN_RANGE_NONE;
  a += 6;
  /* Several ranges would need multipart/byteranges; serving the whole body is allowed. */
  if (memchr(h + a, ',', e - a)) return TERN_RANGE_NONE;
  while (a < e && ows(h[a])) a++;
  const char *s = h + a;
  size_t sn = e - a, i = 0;
  uint64_t first = 0, last = 0;
  if (sn > 0 && s[0] == '-') {
    i = 1;
    if (!digits(s, sn, &i, &last) || i != sn) return TERN_RANGE_UNSATISFIABLE;
    if (last == 0 || size == 0) return TERN_RANGE_UNSATISFIABLE;
    *len = last < size ? last : size;
    *start = size - *len;
    return TERN_RANGE_OK;
  }
  if (!digits(s, sn, &i, &first)) return TERN_RANGE_UNSATISFIABLE;
  if (i >= sn || s[i] != '-') return TERN_RANGE_UNSATISFIABLE;
  i++;
  bool have_last = false;
  if (i < sn) {
    if (!digits(s, sn, &i, &last) || i != sn) return TERN_RANGE_UNSATISFIABLE;
    have_last = true;
  }
  if (have_last && last < first) return TERN_RANGE_UNSATISFIABLE;
  if (first >= size) return TERN_RANGE_UNSATISFIABLE;
  uint64_t end = (have_last && last < size - 1) ? last : size - 1;
  *start = first;
  *len = end - first + 1;
  return TERN_RANGE_OK;
}

void tern_media_etag(const char sha256_hex[65], bool thumb, char out[72]) {
  snprintf(out, 72, "\"%.64s%s\"", sha256_hex, thumb ? "-t" : "");
}

bool tern_media_etag_match(const char *h, size_t n, const char *etag) {
  if (!h || !etag) return false;
  size_t el = strlen(etag), i = 0;
  while (i < n) {
    while (i < n && (ows(h[i]) || h[i] == ',')) i++;
    if (i >= n) break;
    if (h[i] == '*') return true;
    /* If-None-Match uses the weak comparison: W/"x" matches "x". */
    if (n - i >= 2 && h[i] == 'W' && h[i + 1] == '/') i += 2;
    if (i >= n || h[i] != '"') return false; /* malformed: no match */
    size_t j = i + 1;
    while (j < n && h[j] != '"') j++;
    if (j >= n) return false;
    size_t tl = j - i + 1; /* the tag with its quotes */
    if (tl == el && memcmp(h + i, etag, el) == 0) return true;
    i = j + 1;
  }
  return false;
}
