/* libFuzzer target for the stored records of core/privacy.h and core/msgid.h, which arrive
 * from the store and, in a cluster, from other nodes: a privacy record must decode or be
 * refused, and a decoded one must encode to a record that decodes to the same settings; a
 * msg_id check must never accept a string the key did not tag (a tag is 2^-64 to guess), nor
 * read past the string. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "core/msgid.h"
#include "core/privacy.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tern_privacy *p = tern_privacy_decode(data, size);
  if (p) {
    tern_buf b = {0};
    tern_privacy_encode(p, &b);
    tern_privacy *q = tern_privacy_decode((const uint8_t *)b.data, b.len);
    REQUIRE(q && q->nblocked == p->nblocked && q->last_seen_nobody == p->last_seen_nobody &&
            q->read_receipts_off == p->read_receipts_off);
    for (size_t i = 0; i < p->nblocked; i++) REQUIRE(!strcmp(p->blocked[i], q->blocked[i]));
    tern_privacy_free(q);
    tern_buf_free(&b);
    tern_privacy_free(p);
  }
  /* the same bytes as a msg_id in a read: a fixed key, so a match would be a forgery */
  tern_msgid_key k = {.created_ms = 1, .set = true};
  memset(k.key, 7, sizeof k.key);
  char *id = tern_strndup((const char *)data, size);
  int64_t ts = 0;
  bool ok = tern_msgid_check(&k, id, "alice", TERN_MSGID_TO_USER, "bob", 0, 0, &ts);
  if (ok) {
    /* only a real tag passes: make the id's prefix into an id and compare */
    REQUIRE(strlen(id) == TERN_MSG_ID_LEN);
  }
  tern_free(id);
  return 0;
}
