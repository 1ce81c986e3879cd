/* locator: the record that says where a message's envelopes wait, for "delete for everyone"
 * (PROTOCOL.md 15). semantics.c writes one per message in the MSGS bucket under its msg_id
 * (TTL limits.delete_window) and reads it back when the delete comes; nothing else reads it.
 *
 * Layout (integers big-endian):
 *   [1 version = 1][1 flags][1 n][media id: n bytes][1 n][group id: n bytes]   then, to the end,
 *   ([1 n][inbox name: n bytes][8 seq])*                one per envelope appended
 * flags: TERN_LOCATOR_DELETED once the message was deleted (its entries are dropped then).
 * A message reaching more inboxes than fit in one record is cut short at TERN_LOCATOR_MAX
 * bytes: the inboxes left out get the delete appended, as devices that had the message do.
 *
 * Pure functions, any thread; decode never reads past n and keeps pointers into the input. */
#ifndef TERN_STORE_LOCATOR_H
#define TERN_STORE_LOCATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

enum {
  TERN_LOCATOR_DELETED = 1,
  TERN_LOCATOR_MAX = 256 * 1024, /* bytes of one record; a NATS KV value stays far below 1 MiB */
};

typedef struct tern_locator {
  uint8_t flags;       /* TERN_LOCATOR_* */
  const char *media;   /* the media id (not NUL-terminated), media_len 0 when none */
  size_t media_len;
  const char *group;   /* the group of a group message (not NUL-terminated), group_len 0 for
                          1:1, whose conversation the msg_id's tag proves (core/msgid.h) */
  size_t group_len;
  const uint8_t *at;   /* the entries */
  size_t at_len;
} tern_locator;

/* Starts a record in out (reset first). media and group may be NULL. */
void tern_locator_begin(tern_buf *out, uint8_t flags, const char *media, const char *group);
/* Adds an entry; false (nothing added) when the inbox name is over 255 bytes or the record
 * would pass TERN_LOCATOR_MAX. */
bool tern_locator_add(tern_buf *out, const char *inbox, size_t n, uint64_t seq);
/* Parses and checks a whole record: 0, or -EINVAL when malformed (unknown version, a length
 * past the end, an empty inbox name). */
int tern_locator_decode(const uint8_t *p, size_t n, tern_locator *out);
/* The entry at *off (start with 0) of a decoded record; false at the end. */
bool tern_locator_next(const tern_locator *l, size_t *off, const char **inbox, size_t *n, uint64_t *seq);

#endif
