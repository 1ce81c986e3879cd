/* wire: what both directions of tern's JSON protocol share. The server (decoding client
 * frames, encoding server frames) and libtern-client (the other way round) go through the
 * same parse, the same value rules and the same writers, so that a frame's shape and its
 * rules exist once (frame.c: client → server frames; event.c and envwrite.c: server → client
 * frames).
 *
 * Ownership: nothing here keeps a pointer to what it is given. A tern_wire_doc owns its
 * cJSON tree and its private copy of the input; strings read out of it stay valid until
 * tern_wire_doc_free. Writers append to the caller's tern_buf and allocate nothing else.
 *
 * Threads: every function may run on several threads at once, once tern_proto_init has run
 * (it installs cJSON's allocation hooks, which are process-wide). cJSON stores its last
 * error position in a global variable on every parse; nothing here reads it, so two threads
 * decoding at once get correct answers (the write itself is harmless: a pointer store).
 *
 * Depends on cJSON and src/base only.
 */
#ifndef TERN_PROTO_WIRE_H
#define TERN_PROTO_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

struct cJSON;

/* Makes cJSON allocate through src/base/alloc.h (out of memory then aborts with a message,
 * like every other allocation in tern). Idempotent and thread-safe (pthread_once); ternd's
 * main and libtern-client call it before their first parse. */
void tern_proto_init(void);

/* Far above ws.max_message (1 MiB): the server's decoder refuses more, as a guard should the
 * WebSocket layer's limit be raised. (The client's WebSocket layer bounds what it decodes.) */
#define TERN_WIRE_FRAME_MAX ((size_t)2 << 20)
/* Largest integer a double (and a JavaScript client) represents exactly: 2^53. */
#define TERN_WIRE_INT_MAX 9007199254740992.0

/* A parsed frame. root is the JSON object; nul_escapes says that the input had "\u0000"
 * escapes, which the parse turned into raw 0xFF bytes (see wire.c) so that every string check
 * refuses them instead of reading a string cut short at the NUL. */
typedef struct tern_wire_doc {
  struct cJSON *root; /* the object, owned */
  char *copy;         /* the input with NUL escapes replaced, or NULL when it had none */
  bool nul_escapes;   /* see above */
  bool flat;          /* root was made by tern_wire_parse_flat's own parse (one allocation) */
} tern_wire_doc;

/* Parses exactly one JSON object, optionally surrounded by JSON whitespace, from json[0..len)
 * (not NUL-terminated). Refuses more than max bytes (-E2BIG), a raw NUL byte, a BOM, anything
 * but an object, and anything after it (-EINVAL); msg gets a sentence ("frame is not valid
 * JSON"). On success the caller frees doc with tern_wire_doc_free. */
int tern_wire_parse(const char *json, size_t len, size_t max, tern_wire_doc *doc, char *msg, size_t cap);
/* The same parse, the same answers and the same tree, made without cJSON's allocation per
 * node and string when the object is flat (string, number, true, false and null members; see
 * wire.c). The tree is read-only: nothing may be added to, detached from or changed in it. */
int tern_wire_parse_flat(const char *json, size_t len, size_t max, tern_wire_doc *doc, char *msg, size_t cap);
void tern_wire_doc_free(tern_wire_doc *doc);

/* The member key of obj (case-sensitive; with duplicate keys the first counts), or NULL. */
const struct cJSON *tern_wire_get(const struct cJSON *obj, const char *key);
/* True when item is there and is not JSON null: null means "absent" for optional fields. */
bool tern_wire_present(const struct cJSON *item);
/* When item is a JSON number holding an integer in [min, max] (min >= -2^53, max <= 2^53),
 * stores it and returns true. 5, 5.0 and 5e0 are all 5. */
bool tern_wire_int(const struct cJSON *item, double min, double max, int64_t *out);

/* ---- value rules (on bytes, so that encoders check what decoders check) ---- */

/* 1..max bytes of printable ASCII (0x20-0x7E): client ids, msg_ids, media ids, device ids. */
bool tern_wire_ascii_id(const char *s, size_t n, size_t max);
#define TERN_GROUP_ID_MAX 64 /* group ids: 1-64 chars of [A-Za-z0-9_-] (PROTOCOL.md 10) */
/* A group id: the server's frames and records and the client library all check it here. */
bool tern_wire_group_id(const char *s, size_t n);
/* Standard base64 (RFC 4648 section 4: A-Z a-z 0-9 + /), padded with '=' to a multiple of
 * 4 bytes, at least 4; padding only at the end. */
bool tern_wire_base64(const char *s, size_t n);
/* Valid UTF-8 (which also refuses the 0xFF bytes that stand for "\u0000" escapes). */
bool tern_wire_text(const char *s, size_t n);

/* ---- writers ---- */

/* Appends a string literal (no escapes needed: keys and fixed values). */
#define TERN_WIRE_LIT(b, s) tern_buf_append((b), (s), sizeof(s) - 1)
/* Appends s[0..n) as a JSON string, or null when s is NULL. */
void tern_wire_put_str(tern_buf *b, const char *s, size_t n);
/* The same for a NUL-terminated string (NULL: null). */
void tern_wire_put_cstr(tern_buf *b, const char *s);
/* Appends `,"key":` (or `"key":` when first). key is plain ASCII. */
void tern_wire_put_key(tern_buf *b, const char *key, bool first);

#endif
