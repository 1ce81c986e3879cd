/* libFuzzer target for the directory records: the store's reader of user and device records
 * (src/store/semantics.c, what the load and the change feed raise: another node's write, or
 * one corrupted on disk) and the core's check of what it raises (tern_dir_*_rec_ok).
 * Input: a first byte (even: a USERS record, odd: DEVICES), a key length byte, the key, then
 * the value. Properties: a raised record's strings are exactly as long as the bytes they
 * came from (no NUL cuts one short) and lie inside the input; a record the core takes has a
 * valid lower-cased username, a printable password hash, a 24-hex device id and a label of at
 * most 64 bytes of UTF-8. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "core/dir.h"
#include "store/store_int.h"
#include "fuzz.h"

typedef struct seen {
  size_t klen, vlen; /* the input's key and value */
  int raised;
} seen;

static void check_name(const char *name) {
  char norm[TERN_USERNAME_MAX + 1];
  REQUIRE(tern_username_normalize(name, strlen(name), norm) && !strcmp(norm, name));
}

static void on_user(const tern_user_rec *r, void *arg) {
  seen *s = arg;
  s->raised++;
  REQUIRE(r->user && strlen(r->user) == s->klen);
  REQUIRE(r->pwhash && strlen(r->pwhash) < s->vlen);
  if (!tern_dir_user_rec_ok(r)) return;
  check_name(r->user);
  for (const char *c = r->pwhash; *c; c++) REQUIRE(*c > 0x20 && *c < 0x7f);
}

static void on_device(const tern_device_rec *r, void *arg) {
  seen *s = arg;
  s->raised++;
  REQUIRE(r->device_id && strlen(r->device_id) == s->klen);
  REQUIRE(r->user && r->label && strlen(r->user) + strlen(r->label) + (r->push ? strlen(r->push) : 0) < s->vlen);
  REQUIRE(!r->push || *r->push);
  if (!tern_dir_device_rec_ok(r)) return;
  check_name(r->user);
  REQUIRE(strlen(r->device_id) == TERN_DEVICE_ID_LEN);
  for (const char *c = r->device_id; *c; c++) REQUIRE((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'));
  REQUIRE(strlen(r->label) <= TERN_DEVICE_LABEL_MAX && tern_utf8_valid(r->label, strlen(r->label)));
}

static void on_kv(const char *key, size_t klen, const uint8_t *v, size_t vlen, void *arg) {
  REQUIRE(0); /* the directory buckets never raise a KV record */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool quiet;
  if (!quiet) tern_log_set_level(TERN_LOG_ERROR), quiet = true; /* a refused record is logged */
  if (size < 2) return 0;
  tern_bucket b = data[0] & 1 ? TERN_BUCKET_DEVICES : TERN_BUCKET_USERS;
  size_t klen = data[1];
  if (klen > size - 2) klen = size - 2;
  seen s = {.klen = klen, .vlen = size - 2 - klen};
  tern_store_load_cbs cbs = {.user = on_user, .device = on_device, .kv = on_kv, .arg = &s};
  tern_sem_raise_change(&cbs, b, (const char *)data + 2, klen, data + 2 + klen, size - 2 - klen, false);
  REQUIRE(s.raised <= 1);
  return 0;
}
