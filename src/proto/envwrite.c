/* envwrite: the tables of the four envelopes (msg, receipt, group, decrypt_error), the
 * envelope writer, and the deprecated v1 head/tail writers, which are now views onto the same
 * tables (so their bytes and the new writer's cannot drift apart).
 *
 * Key order is the wire order. For v1's fields it is v1's order (tern v1 wrote msg_id, from,
 * from_device, to, ts, body, media; and a media object as media_id, mime, size, sha256, width,
 * height), so the integration tests' frames stay byte for byte the same; v1.1's fields come
 * after the v1 field they sit beside.
 */
#include <stddef.h>
#include <string.h>

#include "proto/event.h"
#include "proto/fields.h"
#include "proto/wire.h"

#define E(field) offsetof(tern_envelope, field)
#define STR(key, field) {TERN_F_KEY(key), TERN_F_STR, 0, E(field), 0, NULL, 0, NULL}
#define STR_REQ(key, field) {TERN_F_KEY(key), TERN_F_STR, TERN_F_REQ, E(field), 0, NULL, 0, NULL}
#define STRS(key, field) {TERN_F_KEY(key), TERN_F_STRS, 0, E(field), 0, NULL, 0, NULL}
#define SEQ {TERN_F_KEY("seq"), TERN_F_U64, 0, E(seq), 0, NULL, 0, NULL}
#define TS {TERN_F_KEY("ts"), TERN_F_I64, 0, E(ts), 0, NULL, 0, NULL}
#define OBJ(key, sub, raw) {TERN_F_KEY(key), TERN_F_OBJ, 0, 0, raw, NULL, 0, sub}
#define END {NULL, NULL, 0, 0, 0, 0, 0, NULL, 0, NULL}

static const char *const cipher_names[] = {NULL, "prekey", "message"};
static const char *const status_names[] = {NULL, "delivered", "read"};
static const char *const group_event_names[] = {NULL,      "created",  "added",   "removed",
                                                "left",    "renamed",  "promoted", "demoted"};

static const tern_field media_fields[] = {
    STR("media_id", media.media_id),
    STR("mime", media.mime),
    {TERN_F_KEY("size"), TERN_F_I64_OPT, 0, E(media.size), 0, NULL, 0, NULL},
    STR("sha256", media.sha256),
    {TERN_F_KEY("width"), TERN_F_I64_OPT, 0, E(media.width), 0, NULL, 0, NULL},
    {TERN_F_KEY("height"), TERN_F_I64_OPT, 0, E(media.height), 0, NULL, 0, NULL},
    END,
};

static const tern_field e2e_fields[] = {
    {TERN_F_KEY("type"), TERN_F_ENUM, 0, E(e2e_type), 0, cipher_names, 3, NULL},
    STR_REQ("body", e2e_body),
    END,
};

static const tern_field reaction_fields[] = {STR("to", reaction_to), STR_REQ("emoji", reaction_emoji), END};
static const tern_field edit_fields[] = {STR("of", edit_of), END};
static const tern_field delete_fields[] = {STR("of", delete_of), END};

/* Each table starts with seq: the deprecated tails are the table from its second field on. */
static const tern_field msg_fields[] = {
    SEQ,
    STR_REQ("msg_id", msg_id),
    STR_REQ("from", from),
    STR_REQ("from_device", from_device),
    STR("to", to),
    STR("group_id", group_id),
    TS,
    STR("body", body),
    OBJ("media", media_fields, E(media_json)),
    OBJ("e2e", e2e_fields, 0),
    STR("media_ref", media_ref),
    STR("reply_to", reply_to),
    OBJ("reaction", reaction_fields, 0),
    OBJ("edit", edit_fields, 0),
    OBJ("delete", delete_fields, 0),
    STRS("mentions", mentions),
    END,
};

static const tern_field receipt_fields[] = {
    SEQ,
    {TERN_F_KEY("status"), TERN_F_ENUM, TERN_F_REQ, E(status), 0, status_names, 3, NULL},
    STR("group_id", group_id),
    STR_REQ("from", from),
    {TERN_F_KEY("by"), TERN_F_STR_OR_STRS, TERN_F_REQ, E(by), E(by_list), NULL, 0, NULL},
    {TERN_F_KEY("msg_ids"), TERN_F_STRS, TERN_F_REQ, E(msg_ids), 0, NULL, 0, NULL},
    TS,
    END,
};

static const tern_field group_fields[] = {
    SEQ,
    STR_REQ("group_id", group_id),
    {TERN_F_KEY("event"), TERN_F_ENUM, TERN_F_REQ, E(event), 0, group_event_names, 8, NULL},
    STR_REQ("by", by),
    TS,
    STR("name", name),
    STR("description", description),
    STRS("users", users),
    END,
};

static const tern_field decrypt_error_fields[] = {
    SEQ, STR_REQ("from", from), STR_REQ("from_device", from_device), STR_REQ("msg_id", msg_id), TS, END,
};

const tern_field *tern_envelope_fields(tern_event_type t) {
  switch (t) {
    case TERN_EV_MSG: return msg_fields;
    case TERN_EV_RECEIPT: return receipt_fields;
    case TERN_EV_GROUP: return group_fields;
    case TERN_EV_DECRYPT_ERROR: return decrypt_error_fields;
    default: return NULL;
  }
}

const char *tern_group_event_name(tern_group_event e) {
  return e > 0 && (size_t)e < sizeof group_event_names / sizeof *group_event_names ? group_event_names[e] : NULL;
}

/* `{"type":"<name>"`, up to where the table's fields begin (rendered once: this runs per
 * delivered envelope). */
#define HEAD(name) {"{\"type\":\"" name "\"", sizeof("{\"type\":\"" name "\"") - 1}
static const struct {
  const char *lit;
  size_t n;
} heads[] = {
    [TERN_EV_MSG - TERN_EV_MSG] = HEAD("msg"),
    [TERN_EV_RECEIPT - TERN_EV_MSG] = HEAD("receipt"),
    [TERN_EV_GROUP - TERN_EV_MSG] = HEAD("group"),
    [TERN_EV_DECRYPT_ERROR - TERN_EV_MSG] = HEAD("decrypt_error"),
};

static void put_head(tern_buf *out, tern_event_type t) {
  tern_buf_append(out, heads[t - TERN_EV_MSG].lit, heads[t - TERN_EV_MSG].n);
}

void tern_envelope_encode(tern_buf *out, const tern_envelope *e) {
  const tern_field *table = tern_envelope_fields(e->type);
  if (!table) return;
  /* One reservation for the fixed part and the long fields, so the common case grows the
   * buffer once. */
  tern_buf_reserve(out, 160 + e->body.n + e->media_json.n + e->e2e_body.n);
  put_head(out, e->type);
  tern_fields_encode(out, table, e, false);
  tern_buf_putc(out, '}');
}

void tern_envelope_encode_v1(tern_buf *out, bool receipt, uint64_t seq, const char *tail, size_t n) {
  tern_envelope e = {.type = receipt ? TERN_EV_RECEIPT : TERN_EV_MSG, .seq = seq};
  tern_buf_reserve(out, 40 + n);
  put_head(out, e.type);
  tern_fields_encode_one(out, &msg_fields[0], &e, false); /* seq, first in every table */
  tern_buf_putc(out, ',');
  tern_buf_append(out, tail, n);
}

/* ---- deprecated v1 writers ---- */

void tern_enc_envelope_head(tern_buf *out, bool receipt, uint64_t seq) {
  tern_envelope e = {.type = receipt ? TERN_EV_RECEIPT : TERN_EV_MSG, .seq = seq};
  put_head(out, e.type);
  tern_fields_encode_one(out, &msg_fields[0], &e, false); /* seq, first in every table */
  tern_buf_putc(out, ',');
}

void tern_enc_msg_tail(tern_buf *out, const char *msg_id, const char *from, const char *from_device, const char *to,
                       int64_t ts, const char *body, size_t body_len, const char *media_json) {
  tern_envelope e = {
      .type = TERN_EV_MSG,
      .msg_id = tern_str_c(msg_id),
      .from = tern_str_c(from),
      .from_device = tern_str_c(from_device),
      .to = tern_str_c(to),
      .ts = ts,
      .body = {body, body ? body_len : 0},
      .media = {.size = -1, .width = -1, .height = -1},
      .media_json = tern_str_c(media_json),
  };
  tern_buf_reserve(out, 128 + body_len + e.media_json.n);
  tern_fields_encode(out, msg_fields + 1, &e, true);
  tern_buf_putc(out, '}');
}

void tern_enc_receipt_tail(tern_buf *out, bool read, const char *from, const char *by, const char *const *msg_ids,
                           size_t n, int64_t ts) {
  static const char *const none[1];
  tern_envelope e = {
      .type = TERN_EV_RECEIPT,
      .status = read ? TERN_RECEIPT_READ : TERN_RECEIPT_DELIVERED,
      .from = tern_str_c(from),
      .by = tern_str_c(by),
      .msg_ids = {.c = msg_ids ? msg_ids : none, .n = msg_ids ? n : 0},
      .ts = ts,
  };
  tern_fields_encode(out, receipt_fields + 1, &e, true);
  tern_buf_putc(out, '}');
}
