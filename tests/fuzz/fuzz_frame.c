/* libFuzzer target for the client-frame decoder, v1 and v1.1. Any input must decode or fail
 * cleanly; a failure must carry a known code and a printable message; a success must hold
 * fields that keep the decoder's promises (lengths, printable ids, valid usernames and
 * UTF-8), the server frames built from them must be JSON that cJSON reads back to the same
 * values, and the client encoder must write a frame that decodes to the same frame. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/util.h"
#include "proto/frame.h"
#include "proto/wire.h"
#include "fuzz.h"

/* The v1 envelope writers are deprecated; the server still uses them, so they are still fuzzed. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static bool printable(const char *s, size_t min, size_t max) {
  size_t n = strlen(s);
  if (n < min || n > max) return false;
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7E) return false;
  }
  return true;
}

static bool valid_username(const char *s) {
  char norm[TERN_USERNAME_MAX + 1];
  return s && tern_username_normalize(s, strlen(s), norm) && strcmp(norm, s) == 0;
}

/* Parses out as exactly one JSON object and returns it (caller deletes). */
static cJSON *reparse(tern_buf *out) {
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(out->data, out->len, &end, 0);
  REQUIRE(j && cJSON_IsObject(j));
  REQUIRE(end == out->data + out->len);
  return j;
}

static void require_str(const cJSON *obj, const char *key, const char *want) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  REQUIRE(cJSON_IsString(v));
  REQUIRE(strcmp(v->valuestring, want) == 0);
}

/* The to/peer promise: a valid lower-case name, or to_invalid with a UTF-8 to_raw. */
static void check_name(const tern_frame *f, const char *name) {
  REQUIRE(f->to_raw && tern_utf8_valid(f->to_raw, strlen(f->to_raw)));
  if (f->to_invalid) {
    REQUIRE(name == NULL);
  } else {
    REQUIRE(valid_username(name));
    REQUIRE(strcmp(name, f->to_raw) == 0);
  }
}

static void check_send(const tern_frame *f, tern_buf *out) {
  REQUIRE(printable(f->id, 1, TERN_CLIENT_ID_MAX));
  check_name(f, f->to);
  REQUIRE(f->body || f->media_id);
  if (f->body) {
    REQUIRE(f->body_len > 0 && f->body_len <= TERN_BODY_MAX && strlen(f->body) == f->body_len);
    REQUIRE(tern_utf8_valid(f->body, f->body_len));
  }
  if (f->media_id) REQUIRE(printable(f->media_id, 1, TERN_MSG_ID_MAX));

  /* The frames the server answers a send with. */
  tern_buf_reset(out);
  tern_enc_sent(out, f->id, "m-1", 1);
  cJSON *j = reparse(out);
  require_str(j, "id", f->id);
  cJSON_Delete(j);

  tern_buf_reset(out);
  tern_buf media = {0};
  if (f->media_id) {
    tern_buf_puts(&media, "{\"media_id\":");
    tern_buf_put_json_str(&media, f->media_id, strlen(f->media_id));
    tern_buf_putc(&media, '}');
  }
  tern_enc_envelope_head(out, false, 1);
  tern_enc_msg_tail(out, "m-1", "alice", "d-1", f->to ? f->to : f->to_raw, 2, f->body, f->body_len,
                    f->media_id ? tern_buf_cstr(&media) : NULL);
  j = reparse(out);
  require_str(j, "to", f->to ? f->to : f->to_raw);
  if (f->body) require_str(j, "body", f->body);
  if (f->media_id) require_str(cJSON_GetObjectItemCaseSensitive(j, "media"), "media_id", f->media_id);
  cJSON_Delete(j);
  tern_buf_free(&media);

  if (f->to_invalid) {
    tern_buf_reset(out);
    tern_enc_error(out, f->id, "no_such_user", "no such user", f->to_raw);
    j = reparse(out);
    require_str(j, "user", f->to_raw);
    cJSON_Delete(j);
  }
}

static void check_frame(const tern_frame *f, tern_buf *out) {
  cJSON *j;
  switch (f->type) {
    case TERN_FRAME_AUTH:
      REQUIRE(f->token && strlen(f->token) >= 1 && strlen(f->token) <= TERN_TOKEN_MAX);
      break;
    case TERN_FRAME_SEND:
      check_send(f, out);
      break;
    case TERN_FRAME_ACK:
      REQUIRE(f->seq <= (1ull << 53));
      tern_buf_reset(out);
      tern_enc_synced(out, f->seq);
      cJSON_Delete(reparse(out));
      break;
    case TERN_FRAME_READ:
      check_name(f, f->peer);
      REQUIRE(f->nids >= 1 && f->nids <= TERN_READ_IDS_MAX);
      for (size_t i = 0; i < f->nids; i++) REQUIRE(printable(f->ids[i], 1, TERN_MSG_ID_MAX));
      tern_buf_reset(out);
      tern_enc_envelope_head(out, true, 3);
      tern_enc_receipt_tail(out, true, f->peer ? f->peer : f->to_raw, "bob", (const char *const *)f->ids, f->nids, 4);
      j = reparse(out);
      REQUIRE((size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "msg_ids")) == f->nids);
      cJSON_Delete(j);
      break;
    case TERN_FRAME_WATCH:
    case TERN_FRAME_UNWATCH:
      REQUIRE(f->nusers + f->nbad_users <= TERN_WATCH_MAX);
      for (size_t i = 0; i < f->nusers; i++) {
        REQUIRE(valid_username(f->users[i]));
        for (size_t k = 0; k < i && f->nusers < 64; k++) REQUIRE(strcmp(f->users[i], f->users[k]) != 0);
        tern_buf_reset(out);
        tern_enc_presence(out, f->users[i], false, -1);
        cJSON_Delete(reparse(out));
      }
      for (size_t i = 0; i < f->nbad_users; i++) {
        REQUIRE(!valid_username(f->bad_users[i]));
        tern_buf_reset(out);
        tern_enc_error(out, NULL, "no_such_user", "no such user", f->bad_users[i]);
        j = reparse(out);
        require_str(j, "user", f->bad_users[i]);
        cJSON_Delete(j);
      }
      break;
    case TERN_FRAME_TYPING:
      check_name(f, f->to);
      tern_buf_reset(out);
      tern_enc_typing(out, f->to ? f->to : f->to_raw, f->composing);
      cJSON_Delete(reparse(out));
      break;
    case TERN_FRAME_PING:
      break;
    default:
      REQUIRE(!"unknown frame type decoded");
  }
}

/* A frame v1 could have sent: check_frame's promises hold for it. */
static bool v1_shaped(const tern_frame *f) {
  return f->type != TERN_FRAME_DECRYPT_ERROR && !f->group_id && !f->e2e && !f->reaction_to && !f->delete_of;
}

/* The v1.1 promises beyond v1's: every field within its rules (the decoder ran the same checks
 * as the encoder, so the encoder must take the frame), and the frame the client encoder
 * writes from it decodes to the same frame. */
static void check_v11(const tern_frame *f, const tern_frame_limits *lim) {
  if (f->group_id) {
    REQUIRE(strlen(f->group_id) >= 1 && strlen(f->group_id) <= TERN_GROUP_ID_MAX);
    if (f->type != TERN_FRAME_READ) REQUIRE(f->to == NULL && f->to_raw == NULL);
  }
  for (size_t i = 0; i < f->ne2e; i++) {
    REQUIRE(printable(f->e2e[i].device_id, 1, TERN_DEVICE_ID_MAX));
    REQUIRE(f->e2e[i].body_len <= lim->e2e_max_ciphertext && f->e2e[i].body_len % 4 == 0);
  }
  if (f->e2e) REQUIRE(!f->body && !f->media_id && f->ne2e >= 1);
  if (f->reaction_to) REQUIRE(f->emoji && strlen(f->emoji) <= TERN_EMOJI_MAX && !f->body && !f->media_id);
  if (f->delete_of) REQUIRE(!f->body && !f->media_id && !f->e2e);
  for (size_t i = 0; i < f->nmentions; i++) REQUIRE(valid_username(f->mentions[i]));
  if (f->type == TERN_FRAME_DECRYPT_ERROR) {
    check_name(f, f->peer);
    REQUIRE(printable(f->device_id, 1, TERN_DEVICE_ID_MAX) && printable(f->msg_id, 1, TERN_MSG_ID_MAX));
  }

  tern_buf enc = {0};
  tern_frame_error err;
  REQUIRE(tern_frame_encode(&enc, f, lim, &err) == 0);
  tern_frame again;
  REQUIRE(tern_frame_decode_ex(enc.data, enc.len, lim, &again, &err) == 0);
  /* A seq above 2^53 cannot come out of the decoder, so ack round-trips too. */
  REQUIRE(tern_frame_same(f, &again));
  tern_frame_free(&again);
  tern_buf_free(&enc);
}

/* The flat parse (wire.c) gives the answer cJSON's parse gives, and the same tree: every
 * member's key, type, value and valueint, in order, and the same text when printed. */
static void check_flat(const char *json, size_t size) {
  tern_wire_doc a, b;
  char ma[160], mb[160];
  int ra = tern_wire_parse(json, size, TERN_WIRE_FRAME_MAX, &a, ma, sizeof ma);
  int rb = tern_wire_parse_flat(json, size, TERN_WIRE_FRAME_MAX, &b, mb, sizeof mb);
  REQUIRE(ra == rb);
  if (ra) {
    REQUIRE(strcmp(ma, mb) == 0);
    return;
  }
  REQUIRE(a.nul_escapes == b.nul_escapes);
  const cJSON *x = a.root->child, *y = b.root->child;
  for (; x && y; x = x->next, y = y->next) {
    REQUIRE(strcmp(x->string, y->string) == 0);
    REQUIRE(x->type == y->type && x->valueint == y->valueint);
    if (cJSON_IsString(x)) REQUIRE(strcmp(x->valuestring, y->valuestring) == 0);
    if (cJSON_IsNumber(x)) REQUIRE(memcmp(&x->valuedouble, &y->valuedouble, sizeof x->valuedouble) == 0);
  }
  REQUIRE(!x && !y);
  if (b.root->child) REQUIRE(b.root->child->prev && !b.root->child->prev->next); /* the last member, as cJSON keeps it */
  char *pa = cJSON_PrintUnformatted(a.root), *pb = cJSON_PrintUnformatted(b.root);
  REQUIRE(pa && pb && strcmp(pa, pb) == 0);
  cJSON_free(pa);
  cJSON_free(pb);
  tern_wire_doc_free(&a);
  tern_wire_doc_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A private copy with no NUL after it, so ASan sees any read past size. */
  char *json = tern_memdup(data, size);
  check_flat(json, size);
  tern_frame f;
  tern_frame_error err;
  tern_buf out = {0};
  /* The v1.1 decoder, with a small e2e limit so that the fuzzer reaches it. */
  tern_frame_limits lim = {.v1_1 = true, .e2e_max_ciphertext = 64, .e2e_max_devices = 8};
  if (tern_frame_decode_ex(json, size, &lim, &f, &err) == 0) {
    REQUIRE(err.code == NULL);
    if (v1_shaped(&f)) check_frame(&f, &out);
    check_v11(&f, &lim);
    tern_frame_free(&f);
  } else {
    REQUIRE(err.code != NULL);
  }
  int rc = tern_frame_decode(json, size, &f, &err);
  if (rc == 0) {
    REQUIRE(err.code == NULL);
    REQUIRE(v1_shaped(&f) && !f.reply_to && !f.edit_of && !f.mentions && !f.media_ref && !f.silent);
    check_frame(&f, &out);
    tern_frame_free(&f);
  } else {
    REQUIRE(rc == -EINVAL);
    REQUIRE(err.code && (strcmp(err.code, "bad_request") == 0 || strcmp(err.code, "unknown_type") == 0 ||
                         strcmp(err.code, "too_large") == 0));
    REQUIRE(printable(err.message, 1, sizeof err.message - 1));
    REQUIRE(err.id[0] == '\0' || printable(err.id, 1, TERN_CLIENT_ID_MAX));
    /* The error frame the server would send must be JSON too. */
    tern_enc_error(&out, err.id[0] ? err.id : NULL, err.code, err.message, NULL);
    cJSON *j = reparse(&out);
    require_str(j, "message", err.message);
    cJSON_Delete(j);
  }
  tern_buf_free(&out);
  tern_free(json);
  return 0;
}
