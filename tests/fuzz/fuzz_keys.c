/* libFuzzer target for the key directory's request bodies (PUT /v1/keys, core/keyapi.c's
 * tern_keys_parse_put). Any input must parse or fail cleanly with a sentence; a success must
 * keep the parser's promises (key type bytes, id and registration ranges, at most 100 distinct
 * one-time prekey ids, something to publish), and the same fields written back as JSON must
 * parse to the very same op. */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "core/keyapi.h"
#include "store/store.h"
#include "fuzz.h"

static void put_b64(tern_buf *b, const uint8_t *p, size_t n) {
  char tmp[sodium_base64_ENCODED_LEN(TERN_KEY_SIG_LEN, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(tmp, sizeof tmp, p, n, sodium_base64_VARIANT_ORIGINAL);
  tern_buf_putc(b, '"');
  tern_buf_puts(b, tmp);
  tern_buf_putc(b, '"');
}

/* The JSON body that says what op holds. */
static void write_body(tern_buf *b, const tern_op_keys *op) {
  tern_buf_puts(b, "{\"one_time_prekeys\":[");
  for (size_t i = 0; i < op->nprekeys; i++) {
    if (i) tern_buf_putc(b, ',');
    tern_buf_puts(b, "{\"key_id\":");
    tern_buf_put_u64(b, op->prekeys[i].id);
    tern_buf_puts(b, ",\"public_key\":");
    put_b64(b, op->prekeys[i].pub, TERN_KEY_PUB_LEN);
    tern_buf_putc(b, '}');
  }
  tern_buf_putc(b, ']');
  if (op->has_identity) {
    tern_buf_puts(b, ",\"identity_key\":");
    put_b64(b, op->in.identity, TERN_KEY_PUB_LEN);
    tern_buf_puts(b, ",\"registration_id\":");
    tern_buf_put_u64(b, op->in.registration_id);
  }
  if (op->has_spk) {
    tern_buf_puts(b, ",\"signed_prekey\":{\"key_id\":");
    tern_buf_put_u64(b, op->in.spk_id);
    tern_buf_puts(b, ",\"public_key\":");
    put_b64(b, op->in.spk_pub, TERN_KEY_PUB_LEN);
    tern_buf_puts(b, ",\"signature\":");
    put_b64(b, op->in.spk_sig, TERN_KEY_SIG_LEN);
    tern_buf_putc(b, '}');
  }
  tern_buf_putc(b, '}');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tern_op_keys *op = tern_op_keys_new(TERN_OP_KEYS_PUT, NULL, NULL);
  char msg[160];
  msg[0] = '\0';
  int rc = tern_keys_parse_put((const char *)data, size, TERN_KEYS_MAX_PER_PUT, op, msg, sizeof msg);
  if (rc < 0) {
    REQUIRE(msg[0] != '\0');
    tern_store_op_free(&op->op);
    return 0;
  }
  REQUIRE(rc == 0);
  REQUIRE(op->has_identity || op->has_spk || op->nprekeys || strstr((const char *)data, "one_time_prekeys"));
  REQUIRE(op->nprekeys <= TERN_KEYS_MAX_PER_PUT);
  if (op->has_identity) {
    REQUIRE(op->in.identity[0] == 5);
    REQUIRE(op->in.registration_id >= 1 && op->in.registration_id <= TERN_KEY_REG_ID_MAX);
  }
  if (op->has_spk) {
    REQUIRE(op->in.spk_pub[0] == 5);
    REQUIRE(op->in.spk_id >= 1 && op->in.spk_id <= TERN_KEY_ID_MAX);
  }
  for (size_t i = 0; i < op->nprekeys; i++) {
    REQUIRE(op->prekeys[i].pub[0] == 5);
    REQUIRE(op->prekeys[i].id >= 1 && op->prekeys[i].id <= TERN_KEY_ID_MAX);
    for (size_t j = 0; j < i; j++) REQUIRE(op->prekeys[i].id != op->prekeys[j].id);
  }
  /* round trip */
  tern_buf b = {0};
  write_body(&b, op);
  tern_op_keys *again = tern_op_keys_new(TERN_OP_KEYS_PUT, NULL, NULL);
  REQUIRE(tern_keys_parse_put(b.data, b.len, TERN_KEYS_MAX_PER_PUT, again, msg, sizeof msg) == 0);
  REQUIRE(again->has_identity == op->has_identity && again->has_spk == op->has_spk);
  REQUIRE(again->nprekeys == op->nprekeys);
  REQUIRE(memcmp(&again->in, &op->in, sizeof op->in) == 0);
  REQUIRE(op->nprekeys == 0 || memcmp(again->prekeys, op->prekeys, op->nprekeys * sizeof *op->prekeys) == 0);
  tern_buf_free(&b);
  tern_store_op_free(&again->op);
  tern_store_op_free(&op->op);
  return 0;
}
