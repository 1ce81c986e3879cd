/* msgid: message ids that prove who may name them (issue 14: forged read receipts).
 *
 * A msg_id is the sortable, unique id of base/util.h (28 hex digits: ms, counter, worker,
 * noise) followed by a tag of 16 hex digits: SipHash-2-4 (libsodium's crypto_shorthash, a
 * keyed PRF) with the deployment's key over the id, the sender and the conversation (the
 * recipient for 1:1, the group for a group message). A `read` names messages by id and sender (`peer`); the server
 * recomputes the tag with the reader (or the group) and keeps only the ids whose tag matches,
 * so nobody can mark read a message that was not sent to them, without any index in the store
 * and however old the message is. A forger has one chance in 2^64 per id.
 *
 * The key: 32 random bytes and its creation time, in the store's RECORDS bucket under
 * "config/msgid_key", made once by the first start of a deployment (a create, so that two
 * nodes starting at once agree) and read at every start and by every node.
 *
 * Ids made before the key existed (28 digits, no tag) cannot be checked. They are accepted
 * when their time is before the key's creation, for inbox.ttl after it (tern_msgid_check's
 * legacy_until): old chats opened after an upgrade still send their reads, and the window
 * closes by itself.
 *
 * Threads: any; the key is written once before the loops serve and never changes. */
#ifndef TERN_CORE_MSGID_H
#define TERN_CORE_MSGID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/util.h"

#define TERN_MSGID_KV_KEY "config/msgid_key"

typedef struct tern_msgid_key {
  uint8_t key[32];
  int64_t created_ms; /* ids older than this have no tag */
  bool set;
} tern_msgid_key;

/* What a message id is bound to besides its sender. */
typedef enum { TERN_MSGID_TO_USER = 'u', TERN_MSGID_TO_GROUP = 'g' } tern_msgid_scope;

/* A new key (random) created now; its record for the store appended to rec (40 bytes). */
void tern_msgid_key_new(tern_msgid_key *k, int64_t now_ms, tern_buf *rec);
/* Reads a key record; false when it is not one. */
bool tern_msgid_key_load(tern_msgid_key *k, const uint8_t *v, size_t len);
/* The next id for a message from `from` in scope (the recipient's name or the group id). */
void tern_msgid_make(const tern_msgid_key *k, tern_idgen *g, int64_t ts, const char *from, tern_msgid_scope kind,
                     const char *scope, char out[TERN_MSG_ID_LEN + 1]);
/* Whether id names a message from `from` in scope; *ts gets its time. Untagged ids pass only
 * while now < legacy_until and their time is before the key's creation. */
bool tern_msgid_check(const tern_msgid_key *k, const char *id, const char *from, tern_msgid_scope kind,
                      const char *scope, int64_t now, int64_t legacy_until, int64_t *ts);

#endif
