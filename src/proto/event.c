/* event: the tables of the live server frames (ready, synced, pong, sent, error, presence,
 * typing, profile), the writer and reader of any server frame, and the v1 shorthands. The
 * envelopes' tables are in envwrite.c; the walking is fields.c's. */
#include "proto/event.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "proto/fields.h"
#include "proto/wire.h"

#define V(field) offsetof(tern_event, field)
#define STR(key, field) {TERN_F_KEY(key), TERN_F_STR, 0, V(field), 0, NULL, 0, NULL}
#define STR_REQ(key, field) {TERN_F_KEY(key), TERN_F_STR, TERN_F_REQ, V(field), 0, NULL, 0, NULL}
#define I64(key, field) {TERN_F_KEY(key), TERN_F_I64, 0, V(field), 0, NULL, 0, NULL}
#define END {NULL, NULL, 0, 0, 0, 0, 0, NULL, 0, NULL}

static const char *const typing_names[] = {NULL, "composing", "paused"};

static const tern_field ready_fields[] = {
    STR_REQ("user", user), STR_REQ("device_id", device_id), I64("server_time", server_time), END};
static const tern_field synced_fields[] = {{TERN_F_KEY("seq"), TERN_F_U64, 0, V(seq), 0, NULL, 0, NULL}, END};
static const tern_field pong_fields[] = {I64("server_time", server_time), END};
static const tern_field sent_fields[] = {
    STR_REQ("id", id),
    STR_REQ("msg_id", msg_id),
    I64("ts", ts),
    {TERN_F_KEY("recipients"), TERN_F_U64_HAS, 0, V(recipients), V(has_recipients), NULL, 0, NULL},
    {TERN_F_KEY("skipped"), TERN_F_STRS, 0, V(skipped), 0, NULL, 0, NULL},
    END,
};
static const tern_field error_fields[] = {
    STR("id", id),
    STR_REQ("code", code),
    STR("message", message),
    STR("user", user),
    {TERN_F_KEY("missing"), TERN_F_DEVREFS, 0, V(missing), V(n_missing), NULL, 0, NULL},
    {TERN_F_KEY("extra"), TERN_F_DEVREFS, 0, V(extra), V(n_extra), NULL, 0, NULL},
    END,
};
static const tern_field presence_fields[] = {
    STR_REQ("user", user),
    {TERN_F_KEY("online"), TERN_F_BOOL, 0, V(online), 0, NULL, 0, NULL},
    {TERN_F_KEY("last_seen"), TERN_F_LAST_SEEN, 0, V(last_seen), V(online), NULL, 0, NULL},
    END,
};
static const tern_field typing_fields[] = {
    STR_REQ("from", from),
    STR("group_id", group_id),
    {TERN_F_KEY("state"), TERN_F_ENUM, TERN_F_REQ, V(state), 0, typing_names, 3, NULL},
    END,
};
static const tern_field profile_fields[] = {
    STR_REQ("user", user), STR_REQ("display_name", display_name), STR_REQ("avatar", avatar), END};

static const struct {
  tern_event_type type;     /* which frame */
  const char *name;         /* its "type" */
  const tern_field *fields; /* live frames: its table in tern_event; envelopes: NULL (the table
                               is envwrite.c's, in tern_envelope) */
} types[] = {
    /* Most frequent first: the reader's lookup is a linear scan. */
    {TERN_EV_MSG, "msg", NULL},
    {TERN_EV_RECEIPT, "receipt", NULL},
    {TERN_EV_SENT, "sent", sent_fields},
    {TERN_EV_TYPING, "typing", typing_fields},
    {TERN_EV_PRESENCE, "presence", presence_fields},
    {TERN_EV_ERROR, "error", error_fields},
    {TERN_EV_PONG, "pong", pong_fields},
    {TERN_EV_SYNCED, "synced", synced_fields},
    {TERN_EV_READY, "ready", ready_fields},
    {TERN_EV_GROUP, "group", NULL},
    {TERN_EV_DECRYPT_ERROR, "decrypt_error", NULL},
    {TERN_EV_PROFILE, "profile", profile_fields},
};

const char *tern_event_type_name(tern_event_type t) {
  for (size_t i = 0; i < TERN_ARRAY_LEN(types); i++) {
    if (types[i].type == t) return types[i].name;
  }
  return NULL;
}

static const tern_field *live_fields(tern_event_type t) {
  for (size_t i = 0; i < TERN_ARRAY_LEN(types); i++) {
    if (types[i].type == t) return types[i].fields;
  }
  return NULL;
}

void tern_event_encode(tern_buf *out, const tern_event *ev) {
  if (tern_envelope_fields(ev->type)) {
    tern_envelope e = ev->env;
    e.type = ev->type;
    tern_envelope_encode(out, &e);
    return;
  }
  const tern_field *table = live_fields(ev->type);
  if (!table) return;
  TERN_WIRE_LIT(out, "{\"type\":");
  tern_wire_put_cstr(out, tern_event_type_name(ev->type));
  tern_fields_encode(out, table, ev, false);
  tern_buf_putc(out, '}');
}

/* ---- v1 shorthands ---- */

void tern_enc_ready(tern_buf *out, const char *user, const char *device_id, int64_t server_time) {
  tern_event ev = {.type = TERN_EV_READY,
                   .user = tern_str_c(user),
                   .device_id = tern_str_c(device_id),
                   .server_time = server_time};
  tern_event_encode(out, &ev);
}

void tern_enc_synced(tern_buf *out, uint64_t seq) {
  tern_event ev = {.type = TERN_EV_SYNCED, .seq = seq};
  tern_event_encode(out, &ev);
}

void tern_enc_pong(tern_buf *out, int64_t server_time) {
  tern_event ev = {.type = TERN_EV_PONG, .server_time = server_time};
  tern_event_encode(out, &ev);
}

void tern_enc_sent(tern_buf *out, const char *id, const char *msg_id, int64_t ts) {
  tern_event ev = {.type = TERN_EV_SENT, .id = tern_str_c(id), .msg_id = tern_str_c(msg_id), .ts = ts};
  tern_event_encode(out, &ev);
}

void tern_enc_error(tern_buf *out, const char *id, const char *code, const char *message, const char *user) {
  tern_event ev = {.type = TERN_EV_ERROR,
                   .id = tern_str_c(id),
                   .code = tern_str_c(code),
                   .message = tern_str_c(message),
                   .user = tern_str_c(user)};
  tern_event_encode(out, &ev);
}

void tern_enc_presence(tern_buf *out, const char *user, bool online, int64_t last_seen) {
  tern_event ev = {.type = TERN_EV_PRESENCE, .user = tern_str_c(user), .online = online, .last_seen = last_seen};
  tern_event_encode(out, &ev);
}

void tern_enc_typing(tern_buf *out, const char *from, bool composing) {
  tern_event ev = {.type = TERN_EV_TYPING,
                   .from = tern_str_c(from),
                   .state = composing ? TERN_TYPING_COMPOSING : TERN_TYPING_PAUSED};
  tern_event_encode(out, &ev);
}

/* ---- reading ---- */

int tern_event_decode(const char *json, size_t len, tern_event *ev, tern_event_doc *doc, char *msg, size_t cap) {
  memset(ev, 0, sizeof *ev);
  memset(doc, 0, sizeof *doc);
  msg[0] = '\0';
  tern_wire_doc wd;
  /* The WebSocket layer bounds the size; the parse need not. */
  if (tern_wire_parse(json, len, SIZE_MAX, &wd, msg, cap)) return -EBADMSG;
  doc->root = wd.root;
  doc->copy = wd.copy;
  const cJSON *t = tern_wire_get(wd.root, "type");
  if (!cJSON_IsString(t)) {
    snprintf(msg, cap, "frame has no \"type\" string");
    return -EBADMSG;
  }
  ev->type_name = tern_str_c(t->valuestring);
  for (size_t i = 0; i < TERN_ARRAY_LEN(types) && !ev->type; i++) {
    if (strcmp(t->valuestring, types[i].name) == 0) ev->type = types[i].type;
  }
  if (ev->type == TERN_EV_UNKNOWN) return 0;

  tern_fields_reader r = {.doc = doc, .nul_escapes = wd.nul_escapes, .msg = msg, .cap = cap};
  const tern_field *env_table = tern_envelope_fields(ev->type);
  int rc;
  if (env_table) {
    ev->env.type = ev->type;
    /* Every envelope reads with "no media" (-1 sizes), whatever its type. */
    ev->env.media.size = ev->env.media.width = ev->env.media.height = -1;
    tern_fields_defaults(env_table, &ev->env);
    rc = tern_fields_decode(&r, wd.root, env_table, &ev->env);
  } else {
    const tern_field *table = live_fields(ev->type);
    tern_fields_defaults(table, ev);
    rc = tern_fields_decode(&r, wd.root, table, ev);
  }
  if (rc) {
    /* Keep what lets a client deal with the frame anyway: its type, and an envelope's seq
     * (seq comes first in every envelope table, so it was read if it could be). */
    tern_event_type type = ev->type;
    tern_str name = ev->type_name;
    uint64_t seq = ev->env.seq;
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->type_name = name;
    ev->env.type = env_table ? type : TERN_EV_UNKNOWN;
    ev->env.seq = seq;
  }
  return rc;
}

bool tern_event_same(const tern_event *a, const tern_event *b) {
  if (a->type != b->type) return false;
  const tern_field *env = tern_envelope_fields(a->type);
  if (env) return tern_fields_same(env, &a->env, &b->env);
  const tern_field *live = live_fields(a->type);
  return !live || tern_fields_same(live, a, b);
}

void tern_event_doc_free(tern_event_doc *doc) {
  cJSON_Delete(doc->root);
  tern_free(doc->copy);
  for (size_t i = 0; i < doc->nallocs; i++) tern_free(doc->allocs[i]);
  tern_free(doc->allocs);
  memset(doc, 0, sizeof *doc);
}
