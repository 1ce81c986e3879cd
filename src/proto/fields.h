/* fields: the table-driven codec behind proto/event.h. A server frame is described once, as a
 * table of its fields (key, JSON shape, where the value lives in tern_event or tern_envelope);
 * tern_fields_encode writes a struct by walking the table, tern_fields_decode reads JSON into
 * the struct by walking the same table. Internal to src/proto (event.c, envwrite.c).
 *
 * Ownership: encoding allocates nothing but the output buffer's growth. Decoding points the
 * struct into the cJSON tree and records every list it allocates in the tern_event_doc.
 */
#ifndef TERN_PROTO_FIELDS_H
#define TERN_PROTO_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "proto/event.h"

struct cJSON;

typedef enum tern_field_kind {
  TERN_F_STR = 1,   /* tern_str at off */
  TERN_F_U64,       /* uint64_t at off, always written */
  TERN_F_I64,       /* int64_t at off, always written */
  TERN_F_I64_OPT,   /* int64_t at off, written when >= 0; read as -1 when absent */
  TERN_F_U64_HAS,   /* uint64_t at off, written when the bool at off2 is true (which reading sets) */
  TERN_F_BOOL,      /* bool at off, always written */
  TERN_F_ENUM,      /* an enum (int-sized) at off, written as names[value] when value != 0 */
  TERN_F_STRS,      /* tern_strs at off */
  TERN_F_DEVREFS,   /* const tern_device_ref * at off, size_t count at off2 */
  TERN_F_OBJ,       /* a nested object with fields sub (present when sub's first field is);
                       off2, when not 0, is a tern_str written verbatim instead when the
                       object is absent (a pre-encoded object) */
  TERN_F_STR_OR_STRS, /* a string (tern_str at off) or, when the tern_strs at off2 is there, a
                         list */
  TERN_F_LAST_SEEN, /* int64_t at off, written only when the bool at off2 is false: null when
                       < 0; read as -1 when absent or null */
} tern_field_kind;

#define TERN_F_REQ 1 /* written (as null, or [] for lists) even when absent */
/* The first three members of a tern_field for key (a string literal); the reader matches keys
 * by lit_n - 4, the key's length. */
#define TERN_F_KEY(key) key, ",\"" key "\":", sizeof(",\"" key "\":") - 1

typedef struct tern_field {
  const char *key;                /* the JSON key; NULL ends a table */
  const char *lit;                /* `,"key":`, rendered once at compile time (TERN_F_KEY) */
  uint8_t lit_n;                  /* its length */
  uint8_t kind;                   /* tern_field_kind */
  uint8_t flags;                  /* TERN_F_REQ */
  uint16_t off;                   /* where the value lives */
  uint16_t off2;                  /* a second place, by kind (see above) */
  const char *const *names;       /* TERN_F_ENUM: wire names by value (names[0] unused) */
  uint8_t nnames;                 /* entries in names */
  const struct tern_field *sub;   /* TERN_F_OBJ: the nested object's fields */
} tern_field;

/* Appends the fields of table (from the first) that are present, or required, each as
 * `,"key":value` (no comma before the first when first is true). */
void tern_fields_encode(tern_buf *out, const tern_field *table, const void *base, bool first);
/* The same for the one field f. Returns whether it wrote anything. */
bool tern_fields_encode_one(tern_buf *out, const tern_field *f, const void *base, bool first);

/* Everything a decode needs beside the table. */
typedef struct tern_fields_reader {
  tern_event_doc *doc; /* lists are allocated here */
  bool nul_escapes;    /* the input had "\u0000" escapes (now 0xFF bytes) */
  char *msg;           /* the sentence on failure */
  size_t cap;
} tern_fields_reader;

/* Sets the "absent" values that are not 0 (-1 for TERN_F_I64_OPT and TERN_F_LAST_SEEN). */
void tern_fields_defaults(const tern_field *table, void *base);
/* Reads obj's fields of table into base: 0, or -EBADMSG with r->msg filled. */
int tern_fields_decode(tern_fields_reader *r, const struct cJSON *obj, const tern_field *table, void *base);

/* True when a and b hold the same values in the fields of table (nested objects' fields
 * included), where the values the writer writes alike count as the same: every negative
 * optional number is absent, and so is an empty required list (written [] either way). */
bool tern_fields_same(const tern_field *table, const void *a, const void *b);

/* The table of an envelope type (envwrite.c), or NULL for another type. */
const tern_field *tern_envelope_fields(tern_event_type t);

#endif
