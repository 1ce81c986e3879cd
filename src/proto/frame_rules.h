/* frame_rules: the checks every client frame goes through, in both directions: the server's
 * decoder runs them on what it read (frame.c), the client's encoder on what it is about to
 * write (frame.c too), so that the two cannot disagree. Also the keys of client frames, which
 * the decoder reads and the encoder writes. Internal to src/proto.
 *
 * Ownership: the checks only read the frame; an error goes into the caller's
 * tern_frame_error, whose code then points at a string literal.
 */
#ifndef TERN_PROTO_FRAME_RULES_H
#define TERN_PROTO_FRAME_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/frame.h"

#define TERN_BAD_REQUEST "bad_request"
#define TERN_UNKNOWN_TYPE "unknown_type"
#define TERN_TOO_LARGE "too_large"

/* The keys of client frames. */
#define K_TYPE "type"
#define K_TOKEN "token"
#define K_ID "id"
#define K_TO "to"
#define K_GROUP_ID "group_id"
#define K_BODY "body"
#define K_MEDIA "media"
#define K_MEDIA_ID "media_id"
#define K_E2E "e2e"
#define K_DEVICE_ID "device_id"
#define K_MEDIA_REF "media_ref"
#define K_SILENT "silent"
#define K_REPLY_TO "reply_to"
#define K_REACTION "reaction"
#define K_EMOJI "emoji"
#define K_EDIT "edit"
#define K_DELETE "delete"
#define K_OF "of"
#define K_MENTIONS "mentions"
#define K_SEQ "seq"
#define K_PEER "peer"
#define K_MSG_IDS "msg_ids"
#define K_MSG_ID "msg_id"
#define K_USERS "users"
#define K_STATE "state"

/* The wire names of tern_e2e_type, by value. */
extern const char *const tern_frame_e2e_names[3];

/* Fills err (code, and message from fmt) and returns -EINVAL. */
int tern_frame_fail(tern_frame_error *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* What the checks need besides the frame. */
typedef struct tern_frame_checker {
  tern_frame_error *err; /* filled on failure */
  bool nul_escapes;      /* decoding input that had "\u0000" escapes (now 0xFF bytes) */
  size_t max_ciphertext; /* e2e.max_ciphertext */
  size_t max_devices;    /* entries in one e2e list */
  bool v11;              /* decoding v1.1's language (the encoder always writes it) */
  bool utf8_known;       /* decoding input known to be valid UTF-8: strings need no check */
} tern_frame_checker;

void tern_frame_checker_init(tern_frame_checker *c, tern_frame_error *err, const tern_frame_limits *lim,
                             bool nul_escapes);

/* The name a frame is sent to or about, as it goes on the wire: the valid lower-cased name, or
 * (decoded frames) the name as given. */
static inline const char *tern_frame_wire_to(const tern_frame *f) { return f->to ? f->to : f->to_raw; }
static inline const char *tern_frame_wire_peer(const tern_frame *f) { return f->peer ? f->peer : f->to_raw; }
/* An empty body counts as none. */
static inline bool tern_frame_has_body(const tern_frame *f) { return f->body && f->body_len > 0; }

/* Each returns 0, or -EINVAL with c->err filled as the server answers. */
int tern_frame_check_text(tern_frame_checker *c, const char *what, const char *s, size_t n); /* UTF-8, no NUL */
int tern_frame_check_id(tern_frame_checker *c, const char *what, const char *s, size_t max); /* 1..max printable */
int tern_frame_check_count(tern_frame_checker *c, const char *what, size_t n, size_t max);   /* too_large past max */
int tern_frame_check_auth(tern_frame_checker *c, const tern_frame *f);
int tern_frame_check_send(tern_frame_checker *c, const tern_frame *f);
int tern_frame_check_read(tern_frame_checker *c, const tern_frame *f);
int tern_frame_check_watch(tern_frame_checker *c, const tern_frame *f);
int tern_frame_check_typing(tern_frame_checker *c, const tern_frame *f);
int tern_frame_check_decrypt_error(tern_frame_checker *c, const tern_frame *f);

/* A set of strings for de-duplicating lists: open addressing over pointers to strings owned
 * elsewhere. Linear in the list's length, where pairwise comparison would be quadratic (a
 * watch frame may list TERN_WATCH_MAX names, an e2e list thousands of devices). */
typedef struct tern_nameset {
  const char **slots; /* NULL = empty */
  size_t mask;        /* slots - 1, slots a power of two at least twice the names */
} tern_nameset;

void tern_nameset_init(tern_nameset *s, size_t n); /* room for n names; free s->slots with tern_free */
/* Adds name (kept by pointer) and returns true, or returns false when it is already there. */
bool tern_nameset_add(tern_nameset *s, const char *name, size_t n);

#endif
