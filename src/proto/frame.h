/* frame: the client → server WebSocket frames of PROTOCOL.md, decoded from JSON into typed,
 * validated structs, and the writers for every server → client frame.
 *
 * Decoding never trusts its input: every field is type-checked and length-checked, usernames
 * are lower-cased and validated, and the decoder reports the protocol's error code
 * (bad_request, unknown_type, too_large) with a human sentence and, for send, the client id
 * when one could be read. A decoded frame owns its strings (copies); free it with
 * tern_frame_free. This module depends on nothing but cJSON and src/base.
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
  bool to_invalid;      /* SEND, TYPING: `to` was a string but not a valid username */
  char *to_raw;         /* SEND, TYPING: the name as given, lower-cased (for error messages) */
  char *body;           /* SEND: UTF-8 text, or NULL when absent */
  size_t body_len;      /* SEND: bytes in body */
  char *media_id;       /* SEND: media.media_id, or NULL when absent */
  uint64_t seq;         /* ACK */
  char *peer;           /* READ: lower-cased username (NULL + to_invalid semantics as `to`) */
  char **ids;           /* READ: message ids */
  size_t nids;
  char **users;         /* WATCH, UNWATCH: valid lower-cased usernames, duplicates removed */
  size_t nusers;
  char **bad_users;     /* WATCH, UNWATCH: strings that are not valid usernames (lower-cased) */
  size_t nbad_users;
  bool composing;       /* TYPING: true for "composing", false for "paused" */
} tern_frame;

typedef struct tern_frame_error {
  const char *code;     /* "bad_request", "unknown_type" or "too_large" (static) */
  char message[160];    /* human sentence */
  char id[TERN_CLIENT_ID_MAX + 1]; /* SEND: the client id when one could be read, else "" */
} tern_frame_error;

/* Decodes one text message. Returns 0 and fills *out, or -EINVAL and fills *err (out is then
 * empty and needs no free). json need not be NUL-terminated; it is valid UTF-8 (checked by the
 * WebSocket layer), but escapes inside it are checked again after decoding. */
int tern_frame_decode(const char *json, size_t len, tern_frame *out, tern_frame_error *err);
void tern_frame_free(tern_frame *f);

/* Lower-cases name into out (out needs TERN_USERNAME_MAX + 1 bytes) and checks 3–32 chars of
 * [a-z0-9_.-]. Returns true when valid. */
bool tern_username_normalize(const char *name, size_t len, char *out);

/* ---- server → client frames: each appends one complete JSON object to out ---- */
void tern_enc_ready(tern_buf *out, const char *user, const char *device_id, int64_t server_time);
void tern_enc_synced(tern_buf *out, uint64_t seq);
void tern_enc_pong(tern_buf *out, int64_t server_time);
void tern_enc_sent(tern_buf *out, const char *id, const char *msg_id, int64_t ts);
/* id and user may be NULL (omitted). */
void tern_enc_error(tern_buf *out, const char *id, const char *code, const char *message, const char *user);
/* last_seen < 0 means null (never connected); it is only written when online is false. */
void tern_enc_presence(tern_buf *out, const char *user, bool online, int64_t last_seen);
void tern_enc_typing(tern_buf *out, const char *from, bool composing);

/* Envelope tails: what follows `{"type":"msg","seq":N,` in a msg or receipt envelope, ending
 * with the closing brace. media_json is a complete JSON object (or NULL when none). */
void tern_enc_msg_tail(tern_buf *out, const char *msg_id, const char *from, const char *from_device,
                       const char *to, int64_t ts, const char *body, size_t body_len, const char *media_json);
/* read: false → "delivered", true → "read". */
void tern_enc_receipt_tail(tern_buf *out, bool read, const char *from, const char *by, const char *const *msg_ids,
                           size_t n, int64_t ts);
/* The head of an envelope: `{"type":"msg","seq":N,` (or "receipt"). Append the tail after it. */
void tern_enc_envelope_head(tern_buf *out, bool receipt, uint64_t seq);

#endif
