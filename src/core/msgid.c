/* msgid: tagged message ids (see msgid.h). */
#include "core/msgid.h"

#include <string.h>

#include <sodium.h>

#include "base/buf.h"

enum { TAG_BYTES = crypto_shorthash_BYTES }; /* 64 bits */
_Static_assert(crypto_shorthash_KEYBYTES <= 32, "the stored key is 32 bytes; SipHash uses the first 16");

static void tag_of(const tern_msgid_key *k, const char *prefix, const char *from, tern_msgid_scope kind,
                   const char *scope, char hex[2 * TAG_BYTES + 1]) {
  /* SipHash-2-4 (libsodium's crypto_shorthash): a PRF made for short inputs, so a tag costs
   * tens of ns, not the two BLAKE2b blocks a keyed generichash needs. Each part is
   * NUL-terminated, so no two different triples give the same bytes. */
  uint8_t in[TERN_MSG_ID_PREFIX_LEN + 2 * 256 + 3];
  size_t fl = strnlen(from, 255), sl = strnlen(scope, 255), n = 0;
  memcpy(in, prefix, TERN_MSG_ID_PREFIX_LEN);
  n = TERN_MSG_ID_PREFIX_LEN;
  memcpy(in + n, from, fl);
  n += fl;
  in[n++] = 0;
  in[n++] = (uint8_t)kind;
  memcpy(in + n, scope, sl);
  n += sl;
  in[n++] = 0;
  uint8_t t[crypto_shorthash_BYTES];
  crypto_shorthash(t, in, n, k->key);
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < TAG_BYTES; i++) {
    hex[2 * i] = digits[t[i] >> 4];
    hex[2 * i + 1] = digits[t[i] & 15];
  }
  hex[2 * TAG_BYTES] = '\0';
}

void tern_msgid_key_new(tern_msgid_key *k, int64_t now_ms, tern_buf *rec) {
  randombytes_buf(k->key, sizeof k->key);
  k->created_ms = now_ms;
  k->set = true;
  tern_buf_put_be64(rec, (uint64_t)now_ms);
  tern_buf_append(rec, k->key, sizeof k->key);
}

bool tern_msgid_key_load(tern_msgid_key *k, const uint8_t *v, size_t len) {
  if (len != 40) return false;
  k->created_ms = (int64_t)tern_get_be64(v);
  memcpy(k->key, v + 8, sizeof k->key);
  k->set = true;
  return true;
}

void tern_msgid_make(const tern_msgid_key *k, tern_idgen *g, int64_t ts, const char *from, tern_msgid_scope kind,
                     const char *scope, char out[TERN_MSG_ID_LEN + 1]) {
  tern_idgen_next(g, ts, out);
  tag_of(k, out, from, kind, scope, out + TERN_MSG_ID_PREFIX_LEN);
}

static bool hex_digits(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

bool tern_msgid_check(const tern_msgid_key *k, const char *id, const char *from, tern_msgid_scope kind,
                      const char *scope, int64_t now, int64_t legacy_until, int64_t *ts) {
  if (!id || !k->set) return false;
  size_t n = strnlen(id, TERN_MSG_ID_LEN + 1);
  if ((n != TERN_MSG_ID_LEN && n != TERN_MSG_ID_PREFIX_LEN) || !hex_digits(id, n)) return false;
  int64_t ms = 0;
  for (int i = 0; i < 12; i++) ms = ms * 16 + (id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
  *ts = ms;
  if (n == TERN_MSG_ID_PREFIX_LEN) return now < legacy_until && ms < k->created_ms;
  char want[2 * TAG_BYTES + 1];
  tag_of(k, id, from, kind, scope, want);
  return sodium_memcmp(want, id + TERN_MSG_ID_PREFIX_LEN, 2 * TAG_BYTES) == 0;
}
