/* frame: the client → server WebSocket frames of PROTOCOL.md, decoded from JSON into typed,
 * validated structs, and the writers for every server → client frame.
 *
 * Decoding never trusts its input: every field is type-checked and length-checked, usernames
 * are lower-cased and validated, and the decoder reports the protocol's error code
 * (bad_request, unknown_type, too_large) with a human sentence and, for send, the client id
 * when one could be read. A decoded frame owns its strings (copies); free it with
 * tern_frame_free. Each string and each array is its own tern_malloc allocation, so a caller
 * may take one over (copy the pointer, set the field to NULL) and later tern_free it. This
 * module depends on nothing but cJSON and src/base.
 *
 * Decoding rules beyond PROTOCOL.md (docs/protocol.md should repeat them):
 * - The frame must be exactly one JSON object, optionally surrounded by JSON whitespace;
 *   anything after it, a BOM, a NUL byte or more than 2 MiB is refused. Extra fields are
 *   ignored; with duplicate keys the first one counts; keys are case-sensitive. (cJSON still
 *   tolerates control characters between tokens and unescaped inside strings; harmless here:
 *   ids refuse them and the encoders escape them.)
 * - An optional field (body, media) given as JSON null counts as absent. An empty body counts
 *   as absent too (body NULL), so "body":"" alone is bad_request and with media is media-only.
 * - "\u0000" in a field we read is refused (bad_request; in an id it makes the id invalid):
 *   strings here are NUL-terminated. In fields we ignore it does no harm.
 * - Lone or mismatched UTF-16 surrogate escapes make the frame "not valid JSON" (cJSON refuses
 *   them), so err->id is empty even for a send.
 * - A number is an integer when its value is integral: 5, 5.0 and 5e0 are all seq 5. Above
 *   2^53 doubles lose precision, so seq is refused above 2^53.
 * - cJSON keeps its last error position in a global variable: decode from one thread at a time
 *   (the server decodes on the loop thread only).
 */
#ifndef TERN_PROTO_FRAME_H
#define TERN_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define TERN_USERNAME_MIN 3
#define TERN_USERNAME_MAX 32
#define TERN_CLIENT_ID_MAX 64
#define TERN_BODY_MAX 65536
#define TERN_READ_IDS_MAX 1000
#define TERN_MSG_ID_MAX 64
#define TERN_WATCH_MAX 10000   /* users in one watch/unwatch frame; more is too_large */
#define TERN_TOKEN_MAX 512

typedef enum {
  TERN_FRAME_AUTH = 1, /* token */
  TERN_FRAME_SEND,     /* id, to, body (optional), media_id (optional) */
  TERN_FRAME_ACK,      /* seq */
  TERN_FRAME_READ,     /* peer, ids[] */
  TERN_FRAME_WATCH,    /* users[] (only valid usernames; invalid ones in bad_users[]) */
  TERN_FRAME_UNWATCH,  /* users[] */
  TERN_FRAME_TYPING,   /* to, state */
  TERN_FRAME_PING,
} tern_frame_type;

typedef struct tern_frame {
  tern_frame_type type; /* which frame */
  char *token;          /* AUTH */
  char *id;             /* SEND: client id (1-64 printable ASCII) */
  char *to;             /* SEND, TYPING: lower-cased username; NULL with to_invalid set when the
                           name is a string but not a valid username (→ no_such_user) */
  bool to_invalid;      /* SEND, TYPING: `to` (READ: `peer`) was a UTF-8 string but not a valid
                           username */
  char *to_raw;         /* SEND, TYPING (to), READ (peer): the name as given with ASCII letters
                           lower-cased, valid or not (for error messages); never NULL there */
  char *body;           /* SEND: 1-65536 bytes of UTF-8 without NUL, or NULL when absent/empty */
  size_t body_len;      /* SEND: bytes in body (strlen(body)), 0 when body is NULL */
  char *media_id;       /* SEND: media.media_id, or NULL when absent */
  uint64_t seq;         /* ACK */
  char *peer;           /* READ: lower-cased username (NULL + to_invalid semantics as `to`) */
  char **ids;           /* READ: message ids */
  size_t nids;
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

/* Decodes one text message. Returns 0 and fills *out, or -EINVAL and fills *err (out is then
 * empty and needs no free). json need not be NUL-terminated; it is valid UTF-8 (checked by the
 * WebSocket layer), but escapes inside it are checked again after decoding. */
int tern_frame_decode(const char *json, size_t len, tern_frame *out, tern_frame_error *err);
void tern_frame_free(tern_frame *f);

/* Lower-cases name into out (out needs TERN_USERNAME_MAX + 1 bytes) and checks 3–32 chars of
 * [a-z0-9_.-]. Returns true when valid. Lower-casing is ASCII only. When len > 32, out is "";
 * otherwise out holds the lower-cased name (NUL-terminated) even when it is invalid. */
bool tern_username_normalize(const char *name, size_t len, char *out);

/* ---- server → client frames: each appends one complete JSON object to out ----
 * Strings are escaped as JSON requires and must be valid UTF-8. A NULL string where the frame
 * needs one is written as null (a caller's bug then shows on the wire rather than crashing). */
void tern_enc_ready(tern_buf *out, const char *user, const char *device_id, int64_t server_time);
void tern_enc_synced(tern_buf *out, uint64_t seq);
void tern_enc_pong(tern_buf *out, int64_t server_time);
void tern_enc_sent(tern_buf *out, const char *id, const char *msg_id, int64_t ts);
/* id, message and user may be NULL (then omitted). */
void tern_enc_error(tern_buf *out, const char *id, const char *code, const char *message, const char *user);
/* last_seen < 0 means null (never connected); it is only written when online is false. */
void tern_enc_presence(tern_buf *out, const char *user, bool online, int64_t last_seen);
void tern_enc_typing(tern_buf *out, const char *from, bool composing);

/* Envelope tails: what follows `{"type":"msg","seq":N,` in a msg or receipt envelope, ending
 * with the closing brace. body NULL omits "body" (body_len bytes are written otherwise, so a
 * body may hold NUL, written as \u0000). media_json is a complete JSON object inserted verbatim
 * (or NULL when none). */
void tern_enc_msg_tail(tern_buf *out, const char *msg_id, const char *from, const char *from_device,
                       const char *to, int64_t ts, const char *body, size_t body_len, const char *media_json);
/* read: false → "delivered", true → "read". */
void tern_enc_receipt_tail(tern_buf *out, bool read, const char *from, const char *by, const char *const *msg_ids,
                           size_t n, int64_t ts);
/* The head of an envelope: `{"type":"msg","seq":N,` (or "receipt"). Append the tail after it. */
void tern_enc_envelope_head(tern_buf *out, bool receipt, uint64_t seq);

#endif
