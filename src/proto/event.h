/* event: the server → client WebSocket frames of PROTOCOL.md (v1 sections 3-6, v1.1 sections
 * 10-15), both ways. The server writes them (tern_event_encode, the envelope writer
 * tern_envelope_encode, and the tern_enc_* shorthands); libtern-client reads them back into the
 * same struct (tern_event_decode). Every frame is described once, by a table of its fields
 * (event.c for the live frames, envwrite.c for the envelopes), which both the writer and the
 * reader walk: a key, its order on the wire and its JSON type exist in one place.
 *
 * Views. A tern_event holds no memory of its own: every string is a tern_str (pointer +
 * length, not NUL-terminated, p == NULL meaning absent) and every list a pointer + count. The
 * server fills one from its own records (stored envelopes are binary records) and encodes it
 * in one pass into a tern_buf, allocating nothing but the buffer's growth. Decoding fills
 * the same struct with pointers into a tern_event_doc (a parsed frame plus the lists the
 * reader allocated), valid until tern_event_doc_free; there every string is also
 * NUL-terminated (p[n] == 0), so a client may use p as a C string.
 *
 * Writing: a field is written when present, in the order of the frame's table; the fields a
 * frame cannot do without (a msg's msg_id, from, from_device and ts, say) are written as null
 * when a caller leaves them out, so that a bug shows on the wire instead of as a crash.
 * Strings must be valid UTF-8 (they are escaped as JSON requires; a NUL byte is written as
 * \u0000). The bytes of every v1 frame are those of tern v1 for the same fields.
 *
 * Reading (the client side) is strict about what is there and lenient about what is not: a
 * field of the wrong JSON type, a string holding "\u0000" or invalid UTF-8, a number that is
 * not an integer within 2^53, or an enumerated value of the wrong type make the frame
 * malformed (-EBADMSG, with a sentence); a missing field is left absent (strings NULL,
 * numbers 0, or -1 where the comment says so); an unknown enumerated value reads as 0; unknown
 * fields are ignored; an unknown "type" reads as TERN_EV_UNKNOWN. docs/protocol.md repeats
 * this.
 *
 * Threads: any number at once, after tern_proto_init. Depends on cJSON and src/base only.
 */
#ifndef TERN_PROTO_EVENT_H
#define TERN_PROTO_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "base/str.h"

/* A list of strings: either views (v) or C strings (c), whichever is non-NULL, n of them.
 * Both NULL: the list is absent. An empty list that is there has a non-NULL pointer and n 0. */
typedef struct tern_strs {
  const tern_str *v;     /* views, or NULL */
  const char *const *c;  /* NUL-terminated strings, or NULL */
  size_t n;
} tern_strs;

/* {"user","device_id"}: an entry of an error's missing and extra lists (PROTOCOL.md 11). */
typedef struct tern_device_ref {
  tern_str user;
  tern_str device_id;
} tern_device_ref;

typedef enum tern_event_type {
  TERN_EV_UNKNOWN = 0,  /* a frame of a type this reader does not know */
  TERN_EV_READY,        /* user, device_id, server_time */
  TERN_EV_SYNCED,       /* seq */
  TERN_EV_PONG,         /* server_time */
  TERN_EV_SENT,         /* id, msg_id, ts, recipients (has_recipients), skipped */
  TERN_EV_ERROR,        /* id, code, message, user, missing, extra */
  TERN_EV_PRESENCE,     /* user, online, last_seen */
  TERN_EV_TYPING,       /* from, group_id, state */
  TERN_EV_PROFILE,      /* user, display_name, avatar */
  /* Envelopes (stored, seq'd, acked): the fields of tern_envelope. */
  TERN_EV_MSG,          /* 1:1 (to) or group (group_id) message */
  TERN_EV_RECEIPT,      /* delivered / read */
  TERN_EV_GROUP,        /* a group change */
  TERN_EV_DECRYPT_ERROR,/* a recipient could not decrypt msg_id */
} tern_event_type;

typedef enum tern_receipt_status {
  TERN_RECEIPT_UNKNOWN = 0,
  TERN_RECEIPT_DELIVERED, /* "delivered" */
  TERN_RECEIPT_READ,      /* "read" */
} tern_receipt_status;

typedef enum tern_typing_state {
  TERN_TYPING_UNKNOWN = 0,
  TERN_TYPING_COMPOSING, /* "composing" */
  TERN_TYPING_PAUSED,    /* "paused" */
} tern_typing_state;

/* The group events of PROTOCOL.md 10, with the fields each one carries. */
typedef enum tern_group_event {
  TERN_GROUP_UNKNOWN = 0,
  TERN_GROUP_CREATED,  /* name, description, users (every member) */
  TERN_GROUP_ADDED,    /* users */
  TERN_GROUP_REMOVED,  /* users */
  TERN_GROUP_LEFT,     /* users (the leaver) */
  TERN_GROUP_RENAMED,  /* name, description */
  TERN_GROUP_PROMOTED, /* users */
  TERN_GROUP_DEMOTED,  /* users */
} tern_group_event;

/* The ciphertext kinds of PROTOCOL.md 11 (the same values as frame.h's tern_e2e_type). */
typedef enum tern_cipher_type {
  TERN_CIPHER_NONE = 0,
  TERN_CIPHER_PREKEY,  /* "prekey" */
  TERN_CIPHER_MESSAGE, /* "message" */
} tern_cipher_type;

/* A msg's media object, as the server relays it. Written when media_id is there. */
typedef struct tern_media_view {
  tern_str media_id;
  tern_str mime;
  int64_t size;   /* bytes; < 0: absent */
  int64_t width;  /* px; < 0: absent (encrypted blobs have none) */
  int64_t height; /* px; < 0: absent */
  tern_str sha256;
} tern_media_view;

/* An envelope (PROTOCOL.md 5, 10, 11, 15): what tern_envelope_encode writes and what a
 * client reads back. Which fields belong to which type is in the comments; fields of other
 * types are ignored by the writer. */
typedef struct tern_envelope {
  tern_event_type type;   /* TERN_EV_MSG, _RECEIPT, _GROUP or _DECRYPT_ERROR */
  uint64_t seq;           /* every envelope */
  tern_str msg_id;        /* MSG, DECRYPT_ERROR */
  tern_str from;          /* MSG, RECEIPT (the sender of msg_ids), DECRYPT_ERROR */
  tern_str from_device;   /* MSG, DECRYPT_ERROR */
  tern_str to;            /* MSG 1:1 (absent in a group message) */
  tern_str group_id;      /* MSG, RECEIPT in a group; GROUP */
  int64_t ts;             /* every envelope */
  /* MSG content. */
  tern_str body;          /* absent for media-only, e2e, reactions and deletes */
  tern_media_view media;  /* media.media_id absent: no media */
  tern_str media_json;    /* instead of media: a complete JSON object written verbatim (what a
                             v1 record stores); ignored when media.media_id is there */
  tern_cipher_type e2e_type; /* NONE: no e2e object */
  tern_str e2e_body;      /* the ciphertext for this device, base64 */
  tern_str media_ref;     /* the encrypted attachment's media id */
  tern_str reply_to;      /* msg_id quoted */
  tern_str reaction_to;   /* reaction.to; absent: no reaction */
  tern_str reaction_emoji;/* reaction.emoji ("" removes a reaction) */
  tern_str edit_of;       /* edit.of */
  tern_str delete_of;     /* delete.of */
  tern_strs mentions;     /* usernames (groups) */
  /* RECEIPT. */
  tern_receipt_status status;
  tern_str by;            /* RECEIPT 1:1: who delivered or read; GROUP: who made the change */
  tern_strs by_list;      /* RECEIPT in a group: written instead of by when there */
  tern_strs msg_ids;      /* RECEIPT */
  /* GROUP. */
  tern_group_event event;
  tern_str name;          /* created, renamed */
  tern_str description;   /* created, renamed */
  tern_strs users;        /* created, added, removed, left, promoted, demoted */
} tern_envelope;

/* Any server frame. env holds the envelope fields (for TERN_EV_MSG .. _DECRYPT_ERROR; type is
 * kept in both places by the reader). */
typedef struct tern_event {
  tern_event_type type;
  tern_str type_name;      /* reader: the "type" string as sent (useful for UNKNOWN) */
  tern_envelope env;       /* envelopes */
  uint64_t seq;            /* SYNCED */
  tern_str id;             /* SENT, ERROR: the client id */
  tern_str msg_id;         /* SENT */
  int64_t ts;              /* SENT */
  bool has_recipients;     /* SENT: recipients is there (group sends) */
  uint64_t recipients;     /* SENT: other members reached */
  tern_strs skipped;       /* SENT: members all of whose devices missed the message */
  tern_str code;           /* ERROR */
  tern_str message;        /* ERROR */
  tern_str user;           /* READY, ERROR, PRESENCE, PROFILE */
  const tern_device_ref *missing; /* ERROR devices_changed: NULL when absent */
  size_t n_missing;
  const tern_device_ref *extra;   /* ERROR devices_changed: NULL when absent */
  size_t n_extra;
  tern_str device_id;      /* READY */
  int64_t server_time;     /* READY, PONG */
  bool online;             /* PRESENCE */
  int64_t last_seen;       /* PRESENCE: < 0 means null (never seen); written only when
                              offline. The reader gives -1 when absent or null. */
  tern_str from;           /* TYPING */
  tern_str group_id;       /* TYPING in a group */
  tern_typing_state state; /* TYPING */
  tern_str display_name;   /* PROFILE: absent is written as null */
  tern_str avatar;         /* PROFILE: a media id; absent is written as null */
} tern_event;

/* ---- writing (the server side) ---- */

/* Appends e as one complete JSON object, {"type":"msg","seq":N,...}. Only the output buffer
 * grows; nothing else is allocated. An e->type that is not an envelope type writes nothing. */
void tern_envelope_encode(tern_buf *out, const tern_envelope *e);
/* Appends any server frame (envelopes through tern_envelope_encode on ev->env). */
void tern_event_encode(tern_buf *out, const tern_event *ev);
/* An envelope stored by v1 ternd (before stored records were neutral): the head with seq,
 * then the JSON tail it stored, written verbatim (it ends with the closing brace). */
void tern_envelope_encode_v1(tern_buf *out, bool receipt, uint64_t seq, const char *tail, size_t n);

/* Shorthands for the v1 frames, each one tern_event_encode call. NULL strings are absent. */
void tern_enc_ready(tern_buf *out, const char *user, const char *device_id, int64_t server_time);
void tern_enc_synced(tern_buf *out, uint64_t seq);
void tern_enc_pong(tern_buf *out, int64_t server_time);
void tern_enc_sent(tern_buf *out, const char *id, const char *msg_id, int64_t ts);
/* id, message and user may be NULL (then omitted). */
void tern_enc_error(tern_buf *out, const char *id, const char *code, const char *message, const char *user);
/* last_seen < 0 means null (never connected); it is only written when online is false. */
void tern_enc_presence(tern_buf *out, const char *user, bool online, int64_t last_seen);
void tern_enc_typing(tern_buf *out, const char *from, bool composing);

/* Deprecated: the v1 envelope writers in two halves, kept (with their bytes) until the server
 * moves to tern_envelope_encode. The head is `{"type":"msg","seq":N,` (or "receipt"); the
 * tail is the rest, ending with the closing brace. body NULL omits "body" (body_len bytes are
 * written otherwise, so a body may hold NUL, written as \u0000). media_json is a complete
 * JSON object inserted verbatim (or NULL when none). read: false → "delivered", true → "read". */
void tern_enc_envelope_head(tern_buf *out, bool receipt, uint64_t seq) __attribute__((deprecated));
void tern_enc_msg_tail(tern_buf *out, const char *msg_id, const char *from, const char *from_device,
                       const char *to, int64_t ts, const char *body, size_t body_len, const char *media_json)
    __attribute__((deprecated));
void tern_enc_receipt_tail(tern_buf *out, bool read, const char *from, const char *by, const char *const *msg_ids,
                           size_t n, int64_t ts) __attribute__((deprecated));

/* ---- reading (the client side) ---- */

/* What a decoded frame points into. Free with tern_event_doc_free (a zeroed one is empty). */
typedef struct tern_event_doc {
  struct cJSON *root; /* the parsed frame (NULL when it was not a JSON object) */
  char *copy;         /* the input with "\u0000" escapes replaced (see proto/wire.h) */
  void **allocs;      /* the lists the reader made */
  size_t nallocs, cap;
} tern_event_doc;

/* Reads one server frame from json[0..len) (not NUL-terminated) into *ev, which then points
 * into *doc. Returns 0 (ev->type is TERN_EV_UNKNOWN for a type this reader does not know), or
 * -EBADMSG when the text is not one JSON object or a known frame breaks the rules above; msg
 * (cap bytes) gets a sentence then, ev is zeroed except type_name and, when they could be
 * read, type and env.seq (so that a client may still ack a malformed envelope), and doc->root
 * is kept when the text was a JSON object. Free doc in every case. */
int tern_event_decode(const char *json, size_t len, tern_event *ev, tern_event_doc *doc, char *msg, size_t cap);
void tern_event_doc_free(tern_event_doc *doc);

/* True when a and b would be written alike (same type, same fields that the type has; see
 * tern_fields_same in fields.h for what counts as the same). For tests and fuzzers: a
 * frame read, written and read again must be the same. */
bool tern_event_same(const tern_event *a, const tern_event *b);

/* The i-th string of a list (views or C strings alike). */
tern_str tern_strs_at(const tern_strs *l, size_t i);

/* The wire names of the enumerations ("delivered", "created", ...), or NULL for 0 and for
 * values out of range. */
const char *tern_event_type_name(tern_event_type t);
const char *tern_group_event_name(tern_group_event e);

#endif
