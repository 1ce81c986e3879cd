/* frame: the client → server WebSocket frames of PROTOCOL.md (v1 sections 3-6, v1.1 sections
 * 10-15), both ways: the server decodes them from JSON into typed, validated structs
 * (tern_frame_decode), and libtern-client writes them from the same struct
 * (tern_frame_encode), after the same checks. One struct and one set of rules per frame, so a
 * frame that the encoder writes is one that the decoder accepts, and the other way round.
 *
 * Decoding never trusts its input: every field is type-checked and length-checked, usernames
 * are lower-cased and validated, and the decoder reports the protocol's error code
 * (bad_request, unknown_type, too_large) with a human sentence and, for send, the client id
 * when one could be read.
 *
 * Ownership: a decoded frame owns its strings (copies); free it with tern_frame_free. Each
 * string and each array is its own tern_malloc allocation, so a caller may take one over
 * (copy the pointer, set the field to NULL) and later tern_free it. The encoder only reads the
 * struct it is given (the caller's strings, which it never keeps or frees). This module
 * depends on nothing but cJSON and src/base.
 *
 * Threads: decode and encode may run on several threads at once (see proto/wire.h), once
 * tern_proto_init has run.
 *
 * Decoding rules beyond PROTOCOL.md (docs/protocol.md repeats them):
 * - The frame must be exactly one JSON object, optionally surrounded by JSON whitespace;
 *   anything after it, a BOM, a NUL byte or more than 2 MiB is refused. Extra fields are
 *   ignored; with duplicate keys the first one counts; keys are case-sensitive. (cJSON still
 *   tolerates control characters between tokens and unescaped inside strings; harmless here:
 *   ids refuse them and the encoders escape them.)
 * - An optional field given as JSON null counts as absent. An empty body counts as absent too
 *   (body NULL), so "body":"" alone is bad_request and with media is media-only.
 * - "\u0000" in any string field we read is refused with bad_request (in an id it makes the id
 *   invalid): strings here are NUL-terminated. In fields we ignore it does no harm.
 * - Lone or mismatched UTF-16 surrogate escapes make the frame "not valid JSON" (cJSON refuses
 *   them), so err->id is empty even for a send.
 * - A number is an integer when its value is integral: 5, 5.0 and 5e0 are all seq 5. Above
 *   2^53 doubles lose precision, so seq is refused above 2^53.
 * - Which fields of send go together (v1.1) is in the comment of tern_frame below, and in
 *   docs/protocol.md.
 */
#ifndef TERN_PROTO_FRAME_H
#define TERN_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
/* The server → client writers moved to proto/event.h; callers that include this header for
 * them (src/core) keep working. */
#include "proto/event.h"
#include "proto/wire.h" /* TERN_GROUP_ID_MAX */

#define TERN_USERNAME_MIN 3
#define TERN_USERNAME_MAX 32
#define TERN_CLIENT_ID_MAX 64
#define TERN_BODY_MAX 65536
#define TERN_READ_IDS_MAX 1000
#define TERN_MSG_ID_MAX 64     /* msg_ids, media ids (media_id, media_ref, reply_to, of, to) */
#define TERN_DEVICE_ID_MAX 64  /* device ids in e2e and decrypt_error (the server's are 24) */
#define TERN_WATCH_MAX 10000   /* users in one watch/unwatch frame; more is too_large */
#define TERN_TOKEN_MAX 512
#define TERN_EMOJI_MAX 32      /* bytes of UTF-8 in a reaction */
#define TERN_MENTIONS_MAX 1024 /* usernames in mentions (groups.max_members); more is too_large */
/* Defaults of the decoder's settings (tern_frame_limits). */
#define TERN_E2E_MAX_CIPHERTEXT_DEFAULT (96 * 1024) /* e2e.max_ciphertext: base64 bytes */
#define TERN_E2E_MAX_DEVICES_DEFAULT 16384          /* groups.max_members x devices.max_per_user */

typedef enum {
  TERN_FRAME_AUTH = 1,     /* token */
  TERN_FRAME_SEND,         /* id, to | group_id, and content (see below) */
  TERN_FRAME_ACK,          /* seq */
  TERN_FRAME_READ,         /* peer, ids[], group_id (optional) */
  TERN_FRAME_WATCH,        /* users[] (only valid usernames; invalid ones in bad_users[]) */
  TERN_FRAME_UNWATCH,      /* users[] */
  TERN_FRAME_TYPING,       /* to | group_id, state */
  TERN_FRAME_PING,
  TERN_FRAME_DECRYPT_ERROR, /* peer, device_id, msg_id (v1.1) */
} tern_frame_type;

typedef enum {
  TERN_E2E_NONE = 0,
  TERN_E2E_PREKEY,  /* "prekey": a PreKeySignalMessage */
  TERN_E2E_MESSAGE, /* "message": a SignalMessage */
} tern_e2e_type;

/* One ciphertext of an encrypted send. */
typedef struct tern_frame_e2e {
  char *device_id; /* 1-64 printable ASCII */
  tern_e2e_type type;
  char *body;      /* standard base64, 4..max_ciphertext bytes */
  size_t body_len; /* strlen(body) */
} tern_frame_e2e;

/* A send carries one kind of content (anything else is bad_request):
 * - plaintext: body and/or media, optionally reply_to, edit (then body is required and media
 *   is not allowed), mentions (groups only);
 * - encrypted: e2e (one or more, no device twice), optionally media_ref and mentions (groups
 *   only); body, media, reply_to, reaction and edit are refused beside it, since they belong
 *   inside the ciphertext (PROTOCOL.md 11, 15);
 * - a reaction: reaction alone (no body, media, e2e, reply_to, edit, mentions);
 * - a delete: delete alone (no body, media, e2e, media_ref, reply_to, reaction, edit,
 *   mentions).
 * media_ref goes only with e2e. silent goes with anything. Exactly one of to and group_id. */
typedef struct tern_frame {
  tern_frame_type type; /* which frame */
  char *token;          /* AUTH */
  char *id;             /* SEND: client id (1-64 printable ASCII) */
  char *to;             /* SEND, TYPING: lower-cased username; NULL with to_invalid set when the
                           name is a string but not a valid username (→ no_such_user); NULL
                           without to_invalid when the frame names a group instead */
  bool to_invalid;      /* SEND, TYPING: `to` (READ, DECRYPT_ERROR: `peer`) was a UTF-8 string
                           but not a valid username */
  char *to_raw;         /* SEND, TYPING (to), READ, DECRYPT_ERROR (peer): the name as given with
                           ASCII letters lower-cased, valid or not (for error messages); never
                           NULL there, except for a SEND or TYPING to a group */
  char *group_id;       /* SEND, TYPING, READ: the group (v1.1), or NULL */
  char *body;           /* SEND: 1-65536 bytes of UTF-8 without NUL, or NULL when absent/empty */
  size_t body_len;      /* SEND: bytes in body (strlen(body)), 0 when body is NULL */
  char *media_id;       /* SEND: media.media_id, or NULL when absent */
  tern_frame_e2e *e2e;  /* SEND: the ciphertexts, or NULL (v1.1) */
  size_t ne2e;
  char *media_ref;      /* SEND with e2e: the encrypted attachment's media id, or NULL */
  bool silent;          /* SEND: "silent":true, no push */
  char *reply_to;       /* SEND: the msg_id quoted, or NULL */
  char *reaction_to;    /* SEND: reaction.to (a msg_id), or NULL when the send is no reaction */
  char *emoji;          /* SEND: reaction.emoji, 0-32 bytes of UTF-8 ("" removes); set exactly
                           when reaction_to is */
  char *edit_of;        /* SEND: edit.of, or NULL */
  char *delete_of;      /* SEND: delete.of, or NULL */
  bool prepared;        /* not parsed: the core ran a step this frame waited for (a delete's
                           media revoke, core/router.c) and the frame runs now */
  char **mentions;      /* SEND to a group: valid lower-cased usernames, duplicates removed, or
                           NULL when absent or empty */
  size_t nmentions;
  uint64_t seq;         /* ACK */
  char *peer;           /* READ, DECRYPT_ERROR: lower-cased username (NULL + to_invalid
                           semantics as `to`) */
  char **ids;           /* READ: message ids */
  size_t nids;
  char *device_id;      /* DECRYPT_ERROR: the sender's device (1-64 printable ASCII) */
  char *msg_id;         /* DECRYPT_ERROR: the message that did not decrypt */
  char **users;         /* WATCH, UNWATCH: valid lower-cased usernames, duplicates removed,
                           first-seen order; NULL when the array was empty */
  size_t nusers;
  char **bad_users;     /* WATCH, UNWATCH: strings that are not valid usernames (lower-cased,
                           duplicates removed; UTF-8, each gets its own no_such_user) */
  size_t nbad_users;
  bool composing;       /* TYPING: true for "composing", false for "paused" */
} tern_frame;

typedef struct tern_frame_error {
  const char *code;     /* "bad_request", "unknown_type" or "too_large" (static); NULL after a
                           successful decode */
  char message[160];    /* human sentence, printable ASCII (safe to echo in an error frame) */
  char id[TERN_CLIENT_ID_MAX + 1]; /* SEND: the client id when one could be read, else "" */
} tern_frame_error;

/* The decoder's settings (PROTOCOL.md: every limit is a setting). */
typedef struct tern_frame_limits {
  bool v1_1;                 /* accept v1.1's frames and fields (groups, e2e, actions,
                                decrypt_error); false: exactly v1's language, in which v1.1's
                                fields are unknown fields (ignored) and decrypt_error an unknown
                                type, as they are to a v1 server */
  size_t e2e_max_ciphertext; /* e2e.max_ciphertext: longest e2e body, in base64 bytes
                                (0: TERN_E2E_MAX_CIPHERTEXT_DEFAULT); longer is too_large */
  size_t e2e_max_devices;    /* most entries in one e2e list (0: TERN_E2E_MAX_DEVICES_DEFAULT);
                                more is too_large */
  bool input_is_utf8;        /* the caller checked the whole input is valid UTF-8 (the server's
                                WebSocket layer does): strings decoded from it then are too
                                (cJSON refuses broken escapes), and are not checked again */
} tern_frame_limits;

/* Decodes one text message. Returns 0 and fills *out, or -EINVAL and fills *err (out is then
 * empty and needs no free). json need not be NUL-terminated; it is valid UTF-8 (checked by the
 * WebSocket layer), but escapes inside it are checked again after decoding. lim may be NULL
 * (the defaults, v1 only). tern_frame_decode decodes v1 with the default limits: the server
 * uses it until src/core handles v1.1's fields, so that no frame reaches core with a field
 * it does not know of (a group send without `to`, say); it then moves to tern_frame_decode_ex
 * with v1_1 set. */
int tern_frame_decode_ex(const char *json, size_t len, const tern_frame_limits *lim, tern_frame *out,
                         tern_frame_error *err);
int tern_frame_decode(const char *json, size_t len, tern_frame *out, tern_frame_error *err);
void tern_frame_free(tern_frame *f);

/* Appends f as one JSON frame to out (the client side). Before writing, f goes through the
 * checks the decoder makes (with lim, NULL for the defaults), except that `to` and `peer` may
 * be any UTF-8 string (the server answers an invalid one with no_such_user). Returns 0, or
 * -EINVAL with err filled as the server would answer (nothing is appended then). Reads `to`
 * (or, when NULL, to_raw) and peer (or to_raw); ignores to_invalid, bad_users and every field
 * that does not belong to f->type. WATCH and UNWATCH write users then bad_users. */
int tern_frame_encode(tern_buf *out, const tern_frame *f, const tern_frame_limits *lim, tern_frame_error *err);

/* True when a and b hold the same frame: the same type and the same values in every field
 * (strings compared by content, absent only equal to absent). For tests and fuzzers: a frame
 * decoded, encoded and decoded again must be the same. */
bool tern_frame_same(const tern_frame *a, const tern_frame *b);

/* Lower-cases name into out (out needs TERN_USERNAME_MAX + 1 bytes) and checks 3–32 chars of
 * [a-z0-9_.-]. Returns true when valid. Lower-casing is ASCII only. When len > 32, out is "";
 * otherwise out holds the lower-cased name (NUL-terminated) even when it is invalid. */
bool tern_username_normalize(const char *name, size_t len, char *out);

#endif
