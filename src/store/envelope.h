/* envelope: the neutral binary record of one stored envelope, the only form in which envelopes
 * live in the store. It holds facts, each once (msg_id, from, from_device, to or group_id, ts,
 * body, the media reference, the receipt fields, ...), and no wire syntax: each endpoint (JSON
 * over WebSocket today, XMPP later) encodes the record as its protocol wants when it writes it.
 *
 * Layout (version 2):
 *   [1 0x02][1 kind][1 flags][8 ts, big-endian ms] then fields, each [1 tag][varint len][bytes].
 *   Repeated tags (mentions, by, msg_ids, users) appear once per element, in order. Unknown
 *   tags are skipped, so fields can be added without a new version. Integers inside fields
 *   (media size and dimensions) are varints.
 * Records written by v1 ternd (before the store split) start with the kind byte ('m' or 'r'):
 *   ['m'|'r'][1 flags][8 ts][1 n][msg_id][1 n][from][JSON tail]. They are still read (an
 *   upgraded data dir delivers them), with the tail handed to the endpoint as `legacy_tail`;
 *   nothing writes them any more.
 *
 * The store itself reads only kind, flags, ts, msg_id, from and body_ref (acks, expiry, shared
 * bodies); everything else is opaque to it.
 *
 * Ownership: a view points into the record it was unpacked from and is valid as long as that
 * record is. Builders append to a caller's tern_buf. Pure functions; any thread.
 */
#ifndef TERN_STORE_ENVELOPE_H
#define TERN_STORE_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/str.h"

enum {
  TERN_ENV_MSG = 'm',           /* a message (1:1 or group) */
  TERN_ENV_RECEIPT = 'r',       /* delivered/read receipt */
  TERN_ENV_GROUP = 'g',         /* a group event (created, added, ...) */
  TERN_ENV_DECRYPT_ERROR = 'd', /* a recipient could not decrypt a message */
};

/* flags */
enum {
  /* A copy on a recipient device of a message from another user: its first ack makes the
   * message delivered (consuming the delivery token of msg_id, unless SOLE). */
  TERN_ENV_F_RECEIPT = 1,
  /* With F_RECEIPT: the message's only recipient copy; its first ack delivers it without a
   * token (the APPEND then stores none). */
  TERN_ENV_F_SOLE = 2,
};

/* field tags (append only; never reuse a number) */
typedef enum {
  TERN_EF_MSG_ID = 1,
  TERN_EF_FROM = 2,
  TERN_EF_FROM_DEVICE = 3,
  TERN_EF_TO = 4,
  TERN_EF_GROUP_ID = 5,
  TERN_EF_BODY = 6,
  TERN_EF_MEDIA_ID = 7,
  TERN_EF_MEDIA_MIME = 8,
  TERN_EF_MEDIA_SIZE = 9,   /* varint */
  TERN_EF_MEDIA_WIDTH = 10, /* varint */
  TERN_EF_MEDIA_HEIGHT = 11,/* varint */
  TERN_EF_MEDIA_SHA256 = 12,/* lower-case hex */
  TERN_EF_E2E_TYPE = 13,
  TERN_EF_E2E_BODY = 14,
  TERN_EF_MEDIA_REF = 15,
  TERN_EF_REPLY_TO = 16,
  TERN_EF_REACTION_TO = 17,
  TERN_EF_REACTION_EMOJI = 18, /* may be empty (a removed reaction) */
  TERN_EF_EDIT_OF = 19,
  TERN_EF_DELETE_OF = 20,
  TERN_EF_MENTION = 21,     /* repeated */
  TERN_EF_STATUS = 22,      /* receipt: "delivered" or "read" */
  TERN_EF_BY = 23,          /* repeated: receipt (who), group event (who acted: once) */
  TERN_EF_MSG_IDS = 24,     /* repeated: receipt's msg_ids */
  TERN_EF_EVENT = 25,       /* group event name */
  TERN_EF_NAME = 26,
  TERN_EF_DESCRIPTION = 27,
  TERN_EF_USER = 28,        /* repeated: group event's users */
  TERN_EF_BODY_REF = 29,    /* a shared body stored once for many envelopes (group messages) */
  TERN_EF_BY_LIST = 30,     /* receipt: present (empty) when `by` is a list on the wire */
  TERN_EF_SILENT = 31,      /* empty: the send asked for no push */
  TERN_EF__COUNT
} tern_env_field;


typedef struct tern_env_view {
  uint8_t kind;            /* TERN_ENV_* */
  uint8_t flags;           /* TERN_ENV_F_* */
  uint8_t version;         /* 1 (legacy) or 2 */
  int64_t ts;              /* ms since epoch */
  tern_str f[TERN_EF__COUNT]; /* first occurrence of each tag (index = tag) */
  uint16_t count[TERN_EF__COUNT]; /* occurrences of each tag */
  const uint8_t *fields;   /* the field region (for tern_env_each) */
  size_t fields_len;
  tern_str legacy_tail;  /* version 1: the stored JSON tail ("..., }" after the seq) */
} tern_env_view;

/* Parses a record (pointers into v). Returns 0, or -EINVAL when it is malformed. */
int tern_env_unpack(const uint8_t *v, size_t len, tern_env_view *out);
/* Calls fn for each occurrence of tag, in order; stops when fn returns false. */
void tern_env_each(const tern_env_view *v, tern_env_field tag, bool (*fn)(tern_str s, void *arg), void *arg);
/* A varint field's value (0 when absent or malformed). */
uint64_t tern_env_uint(const tern_env_view *v, tern_env_field tag);
static inline bool tern_env_has(const tern_env_view *v, tern_env_field tag) { return v->f[tag].p != NULL; }

/* ---- building ---- */
/* Starts a record in out (which it resets). */
void tern_env_begin(tern_buf *out, uint8_t kind, uint8_t flags, int64_t ts);
/* Appends a field; p may be NULL only when n is 0 (an empty present field). */
void tern_env_put(tern_buf *out, tern_env_field tag, const void *p, size_t n);
void tern_env_put_str(tern_buf *out, tern_env_field tag, const char *s); /* NULL: nothing */
void tern_env_put_uint(tern_buf *out, tern_env_field tag, uint64_t v);
/* Starts a receipt record: its status, the messages' sender and, for a group, the group and
 * an empty TERN_EF_BY_LIST (so that a group receipt with one reader still reads as a list).
 * The caller adds TERN_EF_BY and TERN_EF_MSG_IDS. The one place receipts are written from:
 * core/receipts.c, and the receipts an ACK makes in store/semantics.c. */
void tern_env_receipt_begin(tern_buf *out, bool read, const char *from, const char *group_id, int64_t ts);
/* Sets the flags byte of a record being built (or built). */
void tern_env_set_flags(tern_buf *out, uint8_t flags);

/* A v1 record, for tests of the upgrade path only (nothing in ternd writes them). */
void tern_env_pack_legacy(tern_buf *out, uint8_t kind, uint8_t flags, int64_t ts, const char *msg_id, const char *from,
                          const char *tail, size_t tail_len);

#endif
