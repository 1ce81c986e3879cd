/* Unit tests for the v1.1 side of src/proto/frame.c: every v1.1 client frame and field
 * decoded (with v1_1 set) and refused, the frame-combination rules, the e2e limits as
 * parameters, "\u0000" and broken escapes in every string field, the v1 decoder's treatment of
 * v1.1 input, and the encoder: exact bytes, the same refusals as the decoder, and round trips
 * (client encoder → server decoder) for every frame type. */
#include <errno.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "proto/frame.h"
#include "t.h"

static const tern_frame_limits V11 = {.v1_1 = true};

/* ---- helpers ---- */

static int dec_lim(const char *json, const tern_frame_limits *lim, tern_frame *f, tern_frame_error *e) {
  return tern_frame_decode_ex(json, strlen(json), lim, f, e);
}

static tern_frame_error expect_err(const char *json, const tern_frame_limits *lim, const char *code, int line) {
  tern_frame f;
  tern_frame_error e;
  int rc = dec_lim(json, lim, &f, &e);
  if (rc != -EINVAL || !e.code || strcmp(e.code, code) != 0) {
    fprintf(stderr, "  FAIL line %d: %.300s → rc %d code %s (want %s) msg \"%s\"\n", line, json, rc,
            e.code ? e.code : "(null)", code, e.message);
    t_failed_checks++;
    if (rc == 0) tern_frame_free(&f);
  } else if (!e.message[0]) {
    fprintf(stderr, "  FAIL line %d: empty error message\n", line);
    t_failed_checks++;
  }
  return e;
}
#define BAD(json) expect_err((json), &V11, "bad_request", __LINE__)
#define TOO_LARGE(json) expect_err((json), &V11, "too_large", __LINE__)

static bool expect_ok(const char *json, const tern_frame_limits *lim, tern_frame *f, int line) {
  tern_frame_error e;
  if (dec_lim(json, lim, f, &e) != 0) {
    fprintf(stderr, "  FAIL line %d: %.300s → %s: %s\n", line, json, e.code, e.message);
    t_failed_checks++;
    return false;
  }
  return true;
}
#define OK(json, f) expect_ok((json), &V11, (f), __LINE__)
#define MUST(cond) \
  do {             \
    if (!(cond)) return; \
  } while (0)

/* Encodes f, checks the bytes when want is given, decodes them with v1.1 and compares with
 * expect (f itself when NULL). */
static void round_trip(const tern_frame *f, const tern_frame *expect, const char *bytes, int line) {
  tern_buf b = {0};
  tern_frame_error e;
  if (tern_frame_encode(&b, f, &V11, &e) != 0) {
    fprintf(stderr, "  FAIL line %d: encode refused: %s: %s\n", line, e.code, e.message);
    t_failed_checks++;
    return;
  }
  if (bytes && (b.len != strlen(bytes) || memcmp(b.data, bytes, b.len) != 0)) {
    fprintf(stderr, "  FAIL line %d:\n    got  %.*s\n    want %s\n", line, (int)b.len, b.data, bytes);
    t_failed_checks++;
  }
  /* The decoder keeps the name as given (lower-cased) in to_raw; the tests' names are. */
  tern_frame want = expect ? *expect : *f;
  if (!expect && !want.to_raw) want.to_raw = want.to ? want.to : want.peer;
  tern_frame d;
  if (tern_frame_decode_ex(b.data, b.len, &V11, &d, &e) != 0) {
    fprintf(stderr, "  FAIL line %d: decode of %.*s refused: %s: %s\n", line, (int)b.len, b.data, e.code, e.message);
    t_failed_checks++;
  } else {
    if (!tern_frame_same(&d, &want)) {
      fprintf(stderr, "  FAIL line %d: %.*s decodes to another frame\n", line, (int)b.len, b.data);
      t_failed_checks++;
    }
    tern_frame_free(&d);
  }
  tern_buf_free(&b);
}
#define ROUND(f, expect, want) round_trip((f), (expect), (want), __LINE__)

/* The encoder refuses f with code (and the client id when the frame has a valid one). */
static void enc_refuses(const tern_frame *f, const tern_frame_limits *lim, const char *code, int line) {
  tern_buf b = {0};
  tern_frame_error e;
  int rc = tern_frame_encode(&b, f, lim, &e);
  if (rc != -EINVAL || !e.code || strcmp(e.code, code) != 0 || b.len != 0 || !e.message[0]) {
    fprintf(stderr, "  FAIL line %d: encode → rc %d code %s (want %s), %zu bytes\n", line, rc,
            e.code ? e.code : "(null)", code, b.len);
    t_failed_checks++;
  }
  tern_buf_free(&b);
}
#define ENC_BAD(f) enc_refuses((f), &V11, "bad_request", __LINE__)
#define ENC_TOO_LARGE(f, lim) enc_refuses((f), (lim), "too_large", __LINE__)

/* ---- groups ---- */

TEST(send_to_group) {
  tern_frame f;
  MUST(
      OK("{\"type\":\"send\",\"id\":\"g1\",\"group_id\":\"Trip_2-x\",\"body\":\"hi\",\"mentions\":[\"Bob\",\"bob\","
         "\"carol\"]}",
         &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_SEND);
  CHECK_EQ_STR(f.group_id, "Trip_2-x");
  CHECK(f.to == NULL && f.to_raw == NULL && !f.to_invalid);
  CHECK_EQ_STR(f.body, "hi");
  CHECK_EQ_INT(f.nmentions, 2);
  CHECK_EQ_STR(f.mentions[0], "bob");
  CHECK_EQ_STR(f.mentions[1], "carol");
  tern_frame_free(&f);
  /* "to":null beside a group_id counts as absent. */
  MUST(OK("{\"type\":\"send\",\"id\":\"g1\",\"group_id\":\"g\",\"to\":null,\"body\":\"hi\"}", &f));
  tern_frame_free(&f);
  /* An empty mentions list mentions nobody. */
  MUST(OK("{\"type\":\"send\",\"id\":\"g1\",\"group_id\":\"g\",\"body\":\"hi\",\"mentions\":[]}", &f));
  CHECK(f.mentions == NULL && f.nmentions == 0);
  tern_frame_free(&f);

  /* Group ids: 1-64 chars of [A-Za-z0-9_-]. */
  char json[300];
  const char *g64 = "0123456789012345678901234567890123456789012345678901234567890123";
  snprintf(json, sizeof json, "{\"type\":\"send\",\"id\":\"g\",\"group_id\":\"%s\",\"body\":\"x\"}", g64);
  MUST(OK(json, &f));
  tern_frame_free(&f);
  snprintf(json, sizeof json, "{\"type\":\"send\",\"id\":\"g\",\"group_id\":\"%sX\",\"body\":\"x\"}", g64);
  tern_frame_error e = BAD(json);
  CHECK_EQ_STR(e.id, "g");
  BAD("{\"type\":\"send\",\"id\":\"g\",\"group_id\":\"\",\"body\":\"x\"}");
  BAD("{\"type\":\"send\",\"id\":\"g\",\"group_id\":\"a b\",\"body\":\"x\"}");
  BAD("{\"type\":\"send\",\"id\":\"g\",\"group_id\":\"a.b\",\"body\":\"x\"}");
  BAD("{\"type\":\"send\",\"id\":\"g\",\"group_id\":\"caf\xC3\xA9\",\"body\":\"x\"}");
  BAD("{\"type\":\"send\",\"id\":\"g\",\"group_id\":7,\"body\":\"x\"}");
  BAD("{\"type\":\"send\",\"id\":\"g\",\"group_id\":[\"g\"],\"body\":\"x\"}");
  /* Exactly one of to and group_id. */
  e = BAD("{\"type\":\"send\",\"id\":\"c-1\",\"to\":\"bob\",\"group_id\":\"g\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "c-1");
  CHECK(strstr(e.message, "exactly one") != NULL);
  BAD("{\"type\":\"send\",\"id\":\"c-1\",\"body\":\"x\"}");
  /* mentions: groups only, usernames only, at most 1024. */
  BAD("{\"type\":\"send\",\"id\":\"c-1\",\"to\":\"bob\",\"body\":\"x\",\"mentions\":[\"carol\"]}");
  BAD("{\"type\":\"send\",\"id\":\"c-1\",\"group_id\":\"g\",\"body\":\"x\",\"mentions\":[\"a b\"]}");
  BAD("{\"type\":\"send\",\"id\":\"c-1\",\"group_id\":\"g\",\"body\":\"x\",\"mentions\":[\"bo\"]}");
  BAD("{\"type\":\"send\",\"id\":\"c-1\",\"group_id\":\"g\",\"body\":\"x\",\"mentions\":[1]}");
  BAD("{\"type\":\"send\",\"id\":\"c-1\",\"group_id\":\"g\",\"body\":\"x\",\"mentions\":\"bob\"}");
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"type\":\"send\",\"id\":\"c-1\",\"group_id\":\"g\",\"body\":\"x\",\"mentions\":[");
  for (int i = 0; i < TERN_MENTIONS_MAX; i++) tern_buf_printf(&b, "%s\"user%d\"", i ? "," : "", i);
  tern_buf_puts(&b, "]}");
  MUST(OK(tern_buf_cstr(&b), &f));
  CHECK_EQ_INT(f.nmentions, TERN_MENTIONS_MAX);
  tern_frame_free(&f);
  b.len -= 2;
  tern_buf_puts(&b, ",\"one_more\"]}");
  TOO_LARGE(tern_buf_cstr(&b));
  tern_buf_free(&b);
}

TEST(read_and_typing_in_groups) {
  tern_frame f;
  MUST(OK("{\"type\":\"read\",\"group_id\":\"g-1\",\"peer\":\"Alice\",\"msg_ids\":[\"m1\"]}", &f));
  CHECK_EQ_STR(f.group_id, "g-1");
  CHECK_EQ_STR(f.peer, "alice");
  tern_frame_free(&f);
  BAD("{\"type\":\"read\",\"group_id\":\"g 1\",\"peer\":\"alice\",\"msg_ids\":[\"m1\"]}");
  BAD("{\"type\":\"read\",\"group_id\":1,\"peer\":\"alice\",\"msg_ids\":[\"m1\"]}");
  BAD("{\"type\":\"read\",\"group_id\":\"g\",\"msg_ids\":[\"m1\"]}"); /* peer stays required */

  MUST(OK("{\"type\":\"typing\",\"group_id\":\"g\",\"state\":\"composing\"}", &f));
  CHECK_EQ_STR(f.group_id, "g");
  CHECK(f.to == NULL && f.to_raw == NULL && f.composing);
  tern_frame_free(&f);
  BAD("{\"type\":\"typing\",\"group_id\":\"g\",\"to\":\"bob\",\"state\":\"paused\"}");
  BAD("{\"type\":\"typing\",\"group_id\":\"\",\"state\":\"paused\"}");
  BAD("{\"type\":\"typing\",\"group_id\":\"g\",\"state\":\"typing\"}");
  BAD("{\"type\":\"typing\",\"state\":\"paused\"}");
}

/* ---- end-to-end encryption ---- */

TEST(send_e2e) {
  tern_frame f;
  MUST(OK("{\"type\":\"send\",\"id\":\"e1\",\"to\":\"bob\",\"silent\":true,\"media_ref\":\"blob1\",\"e2e\":["
          "{\"device_id\":\"d1\",\"type\":\"prekey\",\"body\":\"QUJD\"},"
          "{\"device_id\":\"d2\",\"type\":\"message\",\"body\":\"QUI=\",\"extra\":1}]}",
          &f));
  CHECK_EQ_INT(f.ne2e, 2);
  CHECK_EQ_STR(f.e2e[0].device_id, "d1");
  CHECK_EQ_INT(f.e2e[0].type, TERN_E2E_PREKEY);
  CHECK_EQ_STR(f.e2e[0].body, "QUJD");
  CHECK_EQ_INT(f.e2e[0].body_len, 4);
  CHECK_EQ_INT(f.e2e[1].type, TERN_E2E_MESSAGE);
  CHECK_EQ_STR(f.media_ref, "blob1");
  CHECK(f.silent);
  CHECK(f.body == NULL && f.media_id == NULL);
  tern_frame_free(&f);
  /* To a group, with mentions outside the ciphertext. */
  MUST(OK("{\"type\":\"send\",\"id\":\"e2\",\"group_id\":\"g\",\"mentions\":[\"bob\"],\"e2e\":["
          "{\"device_id\":\"d1\",\"type\":\"message\",\"body\":\"QQ==\"}]}",
          &f));
  tern_frame_free(&f);
  /* "body":"" is absent, so it may stand beside e2e. */
  MUST(
      OK("{\"type\":\"send\",\"id\":\"e3\",\"to\":\"bob\",\"body\":\"\",\"e2e\":[{\"device_id\":\"d\",\"type\":"
         "\"message\",\"body\":\"QQ==\"}]}",
         &f));
  tern_frame_free(&f);

  const char *E = "[{\"device_id\":\"d1\",\"type\":\"message\",\"body\":\"QUJD\"}]";
  char json[600];
#define WITH(extra)                                                                                 \
  (snprintf(json, sizeof json, "{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":%s%s}", E, extra), json)
  tern_frame_error e = BAD(WITH(",\"body\":\"hi\""));
  CHECK_EQ_STR(e.id, "e");
  BAD(WITH(",\"media\":{\"media_id\":\"m\"}"));
  BAD(WITH(",\"reply_to\":\"m\""));
  BAD(WITH(",\"edit\":{\"of\":\"m\"}"));
  BAD(WITH(",\"reaction\":{\"to\":\"m\",\"emoji\":\"x\"}"));
  BAD(WITH(",\"delete\":{\"of\":\"m\"}"));
  BAD(WITH(",\"media_ref\":\"\""));
  BAD(WITH(",\"media_ref\":5"));
  BAD(WITH(",\"silent\":\"yes\""));
  BAD(WITH(",\"silent\":1"));
#undef WITH
  BAD("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[]}");
  BAD("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":{}}");
  BAD("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[\"QUJD\"]}");
  BAD("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"type\":\"message\",\"body\":\"QUJD\"}]}");
  BAD("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"\",\"type\":\"message\",\"body\":"
      "\"QUJD\"}]}");
  BAD("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":"
      "\"0123456789012345678901234567890123456789012345678901234567890123X\",\"type\":\"message\",\"body\":\"QUJD\"}]"
      "}");
  BAD("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"Message\",\"body\":"
      "\"QUJD\"}]}");
  BAD("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"body\":\"QUJD\"}]}");
  BAD("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"message\"}]}");
  /* The same device twice. */
  BAD("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"message\",\"body\":"
      "\"QUJD\"},"
      "{\"device_id\":\"d\",\"type\":\"prekey\",\"body\":\"QUJD\"}]}");
  /* Standard base64 only: padded, no URL alphabet, no whitespace, padding at the end. */
  const char *bad64[] = {"", "QUJ", "QUJD=", "QU=D", "=QUJ", "Q===", "====", "QU-_", "QUJD\\n", "QU JD", "QUJ\\u00e9"};
  for (size_t i = 0; i < sizeof bad64 / sizeof *bad64; i++) {
    snprintf(json, sizeof json,
             "{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"message\","
             "\"body\":\"%s\"}]}",
             bad64[i]);
    BAD(json);
  }
  MUST(
      OK("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"message\",\"body\":"
         "\"+/09azAZ\"}]}",
         &f));
  tern_frame_free(&f);
}

TEST(e2e_limits_are_parameters) {
  /* The default: 96 KiB of base64 per ciphertext. */
  size_t max = TERN_E2E_MAX_CIPHERTEXT_DEFAULT;
  tern_buf b = {0};
  tern_buf_puts(
      &b,
      "{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"message\",\"body\":\"");
  size_t at = b.len;
  for (size_t i = 0; i < max; i++) tern_buf_putc(&b, 'A');
  tern_buf_puts(&b, "\"}]}");
  tern_frame f;
  MUST(OK(tern_buf_cstr(&b), &f));
  CHECK_EQ_INT(f.e2e[0].body_len, max);
  tern_frame_free(&f);
  b.len = at;
  for (size_t i = 0; i < max + 4; i++) tern_buf_putc(&b, 'A');
  tern_buf_puts(&b, "\"}]}");
  tern_frame_error e = TOO_LARGE(tern_buf_cstr(&b));
  CHECK_EQ_STR(e.id, "e");
  tern_buf_free(&b);
  /* A smaller setting. */
  tern_frame_limits lim = {.v1_1 = true, .e2e_max_ciphertext = 8};
  const char *eight =
      "{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"message\",\"body\":"
      "\"QUJDQUJD\"}]}";
  MUST(expect_ok(eight, &lim, &f, __LINE__));
  tern_frame_free(&f);
  expect_err(
      "{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"message\",\"body\":"
      "\"QUJDQUJDQUJD\"}]}",
      &lim, "too_large", __LINE__);
  /* Devices in one list. */
  lim = (tern_frame_limits){.v1_1 = true, .e2e_max_devices = 2};
  const char *three =
      "{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"a\",\"type\":\"message\",\"body\":\"QQ="
      "=\"},"
      "{\"device_id\":\"b\",\"type\":\"message\",\"body\":\"QQ==\"},{\"device_id\":\"c\",\"type\":\"message\",\"body\":"
      "\"QQ==\"}]}";
  expect_err(three, &lim, "too_large", __LINE__);
  lim.e2e_max_devices = 3;
  MUST(expect_ok(three, &lim, &f, __LINE__));
  tern_frame_free(&f);
  /* The encoder takes the same setting. */
  tern_frame_e2e one = {.device_id = "d", .type = TERN_E2E_MESSAGE, .body = "QUJDQUJDQUJD", .body_len = 12};
  tern_frame s = {.type = TERN_FRAME_SEND, .id = "e", .to = "bob", .e2e = &one, .ne2e = 1};
  tern_frame_limits small = {.e2e_max_ciphertext = 8};
  ENC_TOO_LARGE(&s, &small);
  ROUND(&s, NULL, NULL);
}

/* ---- replies, reactions, edits, deletes ---- */

TEST(message_actions) {
  tern_frame f;
  MUST(OK("{\"type\":\"send\",\"id\":\"r\",\"to\":\"bob\",\"body\":\"yes\",\"reply_to\":\"m-1\"}", &f));
  CHECK_EQ_STR(f.reply_to, "m-1");
  tern_frame_free(&f);
  MUST(OK("{\"type\":\"send\",\"id\":\"r\",\"to\":\"bob\",\"media\":{\"media_id\":\"x\"},\"reply_to\":\"m-1\"}", &f));
  tern_frame_free(&f);
  MUST(
      OK("{\"type\":\"send\",\"id\":\"r\",\"to\":\"bob\",\"reaction\":{\"to\":\"m-1\",\"emoji\":\"\xF0\x9F\x91\x8D\"},"
         "\"silent\":true}",
         &f));
  CHECK_EQ_STR(f.reaction_to, "m-1");
  CHECK_EQ_STR(f.emoji, "\xF0\x9F\x91\x8D");
  CHECK(f.body == NULL);
  tern_frame_free(&f);
  /* An empty emoji removes the reaction; 32 bytes is the most. */
  MUST(OK("{\"type\":\"send\",\"id\":\"r\",\"to\":\"bob\",\"reaction\":{\"to\":\"m-1\",\"emoji\":\"\"}}", &f));
  CHECK_EQ_STR(f.emoji, "");
  tern_frame_free(&f);
  MUST(
      OK("{\"type\":\"send\",\"id\":\"r\",\"group_id\":\"g\",\"reaction\":{\"to\":\"m\",\"emoji\":"
         "\"01234567890123456789012345678901\"}}",
         &f));
  tern_frame_free(&f);
  BAD("{\"type\":\"send\",\"id\":\"r\",\"group_id\":\"g\",\"reaction\":{\"to\":\"m\",\"emoji\":"
      "\"012345678901234567890123456789012\"}}");
  MUST(OK("{\"type\":\"send\",\"id\":\"e\",\"to\":\"bob\",\"body\":\"fixed\",\"edit\":{\"of\":\"m-1\"}}", &f));
  CHECK_EQ_STR(f.edit_of, "m-1");
  tern_frame_free(&f);
  MUST(OK("{\"type\":\"send\",\"id\":\"d\",\"to\":\"bob\",\"delete\":{\"of\":\"m-1\"}}", &f));
  CHECK_EQ_STR(f.delete_of, "m-1");
  CHECK(f.body == NULL);
  tern_frame_free(&f);
  MUST(OK(
      "{\"type\":\"send\",\"id\":\"d\",\"group_id\":\"g\",\"delete\":{\"of\":\"m-1\"},\"silent\":false,\"body\":null}",
      &f));
  tern_frame_free(&f);

  /* What does not go together. */
  tern_frame_error e = BAD(
      "{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"hi\",\"reaction\":{\"to\":\"m\",\"emoji\":\"y\"}}");
  CHECK_EQ_STR(e.id, "x");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"media\":{\"media_id\":\"i\"},\"reaction\":{\"to\":\"m\","
      "\"emoji\":\"y\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"reply_to\":\"m\",\"reaction\":{\"to\":\"m\",\"emoji\":\"y\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"group_id\":\"g\",\"mentions\":[\"bob\"],\"reaction\":{\"to\":\"m\",\"emoji\":"
      "\"y\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"reaction\":{\"to\":\"m\",\"emoji\":\"y\"},\"delete\":{\"of\":"
      "\"m\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"reaction\":{\"to\":\"m\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"reaction\":{\"emoji\":\"y\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"reaction\":{\"to\":\"\",\"emoji\":\"y\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"reaction\":{\"to\":\"m\",\"emoji\":5}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"reaction\":\"y\"}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"edit\":{\"of\":\"m\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"\",\"edit\":{\"of\":\"m\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"b\",\"media\":{\"media_id\":\"i\"},\"edit\":{\"of\":"
      "\"m\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"b\",\"edit\":{}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"b\",\"edit\":{\"of\":1}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"b\",\"edit\":\"m\"}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"b\",\"delete\":{\"of\":\"m\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"media\":{\"media_id\":\"i\"},\"delete\":{\"of\":\"m\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"reply_to\":\"m\",\"delete\":{\"of\":\"m\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"media_ref\":\"i\",\"delete\":{\"of\":\"m\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"group_id\":\"g\",\"mentions\":[\"bob\"],\"delete\":{\"of\":\"m\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"delete\":{\"of\":\"\"}}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"b\",\"media_ref\":\"i\"}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"b\",\"reply_to\":\"\"}");
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"b\",\"reply_to\":[]}");
  /* Only a reply_to is no message. */
  BAD("{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"reply_to\":\"m\"}");
}

TEST(decrypt_error_frame) {
  tern_frame f;
  MUST(OK("{\"type\":\"decrypt_error\",\"peer\":\"Alice\",\"device_id\":\"d-1\",\"msg_id\":\"m-1\"}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_DECRYPT_ERROR);
  CHECK_EQ_STR(f.peer, "alice");
  CHECK_EQ_STR(f.to_raw, "alice");
  CHECK_EQ_STR(f.device_id, "d-1");
  CHECK_EQ_STR(f.msg_id, "m-1");
  tern_frame_free(&f);
  MUST(OK("{\"type\":\"decrypt_error\",\"peer\":\"A!\",\"device_id\":\"d-1\",\"msg_id\":\"m-1\"}", &f));
  CHECK(f.to_invalid && f.peer == NULL);
  tern_frame_free(&f);
  BAD("{\"type\":\"decrypt_error\",\"device_id\":\"d-1\",\"msg_id\":\"m-1\"}");
  BAD("{\"type\":\"decrypt_error\",\"peer\":\"alice\",\"msg_id\":\"m-1\"}");
  BAD("{\"type\":\"decrypt_error\",\"peer\":\"alice\",\"device_id\":\"d-1\"}");
  BAD("{\"type\":\"decrypt_error\",\"peer\":\"alice\",\"device_id\":\"\",\"msg_id\":\"m-1\"}");
  BAD("{\"type\":\"decrypt_error\",\"peer\":\"alice\",\"device_id\":\"d\",\"msg_id\":3}");
}

/* ---- the v1 decoder ---- */

TEST(v1_decoder_keeps_v1_language) {
  tern_frame f;
  tern_frame_error e;
  /* v1.1 fields are unknown fields to v1: ignored. */
  const char *reply =
      "{\"type\":\"send\",\"id\":\"r\",\"to\":\"bob\",\"body\":\"yes\",\"reply_to\":\"m-1\",\"mentions\":[1]}";
  MUST(expect_ok(reply, NULL, &f, __LINE__));
  CHECK(f.reply_to == NULL && f.mentions == NULL);
  tern_frame_free(&f);
  MUST(expect_ok("{\"type\":\"typing\",\"to\":\"bob\",\"group_id\":\"g\",\"state\":\"paused\"}", NULL, &f, __LINE__));
  CHECK(f.group_id == NULL);
  CHECK_EQ_STR(f.to, "bob");
  tern_frame_free(&f);
  /* So a group send has no `to`, and a reaction no body. */
  expect_err("{\"type\":\"send\",\"id\":\"g\",\"group_id\":\"g\",\"body\":\"x\"}", NULL, "bad_request", __LINE__);
  expect_err("{\"type\":\"send\",\"id\":\"g\",\"to\":\"bob\",\"reaction\":{\"to\":\"m\",\"emoji\":\"y\"}}", NULL,
             "bad_request", __LINE__);
  e = expect_err("{\"type\":\"decrypt_error\",\"peer\":\"alice\",\"device_id\":\"d\",\"msg_id\":\"m\"}", NULL,
                 "unknown_type", __LINE__);
  CHECK_EQ_STR(e.message, "unknown frame type \"decrypt_error\"");
  /* tern_frame_decode is the v1 decoder. */
  CHECK_EQ_INT(tern_frame_decode(reply, strlen(reply), &f, &e), 0);
  CHECK(f.reply_to == NULL);
  tern_frame_free(&f);
}

/* ---- "\u0000" and broken escapes in every string field ---- */

/* Frames with one string field written as %s. Each is valid with "v" (or the value noted),
 * and must be refused when the field holds a NUL escape or a lone surrogate. */
static const struct {
  const char *fmt;  /* the frame */
  const char *good; /* a value that makes it valid */
} fields[] = {
    {"{\"type\":\"auth\",\"token\":\"%s\"}", "tok"},
    {"{\"type\":\"send\",\"id\":\"%s\",\"to\":\"bob\",\"body\":\"x\"}", "c-1"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"%s\",\"body\":\"x\"}", "bob"},
    {"{\"type\":\"send\",\"id\":\"c\",\"group_id\":\"%s\",\"body\":\"x\"}", "g"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"body\":\"%s\"}", "hello"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"media\":{\"media_id\":\"%s\"}}", "m"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"%s\",\"type\":\"message\",\"body\":\"QQ="
     "=\"}]}",
     "d"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"%s\",\"body\":\"QQ==\"}]"
     "}",
     "message"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"message\",\"body\":\"%"
     "s\"}]}",
     "QQ=="},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"e2e\":[{\"device_id\":\"d\",\"type\":\"message\",\"body\":\"QQ=="
     "\"}],"
     "\"media_ref\":\"%s\"}",
     "m"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"body\":\"x\",\"reply_to\":\"%s\"}", "m"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"reaction\":{\"to\":\"%s\",\"emoji\":\"y\"}}", "m"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"reaction\":{\"to\":\"m\",\"emoji\":\"%s\"}}", "y"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"body\":\"x\",\"edit\":{\"of\":\"%s\"}}", "m"},
    {"{\"type\":\"send\",\"id\":\"c\",\"to\":\"bob\",\"delete\":{\"of\":\"%s\"}}", "m"},
    {"{\"type\":\"send\",\"id\":\"c\",\"group_id\":\"g\",\"body\":\"x\",\"mentions\":[\"bob\",\"%s\"]}", "carol"},
    {"{\"type\":\"read\",\"peer\":\"%s\",\"msg_ids\":[\"m\"]}", "alice"},
    {"{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[\"m\",\"%s\"]}", "n"},
    {"{\"type\":\"read\",\"group_id\":\"%s\",\"peer\":\"alice\",\"msg_ids\":[\"m\"]}", "g"},
    {"{\"type\":\"watch\",\"users\":[\"bob\",\"%s\"]}", "carol"},
    {"{\"type\":\"unwatch\",\"users\":[\"%s\"]}", "carol"},
    {"{\"type\":\"typing\",\"to\":\"%s\",\"state\":\"paused\"}", "bob"},
    {"{\"type\":\"typing\",\"group_id\":\"%s\",\"state\":\"paused\"}", "g"},
    {"{\"type\":\"typing\",\"to\":\"bob\",\"state\":\"%s\"}", "paused"},
    {"{\"type\":\"decrypt_error\",\"peer\":\"%s\",\"device_id\":\"d\",\"msg_id\":\"m\"}", "alice"},
    {"{\"type\":\"decrypt_error\",\"peer\":\"alice\",\"device_id\":\"%s\",\"msg_id\":\"m\"}", "d"},
    {"{\"type\":\"decrypt_error\",\"peer\":\"alice\",\"device_id\":\"d\",\"msg_id\":\"%s\"}", "m"},
};

TEST(nul_in_every_string_field) {
  char json[512], value[64];
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    tern_frame f;
    snprintf(json, sizeof json, fields[i].fmt, fields[i].good);
    if (expect_ok(json, &V11, &f, __LINE__)) tern_frame_free(&f);
    /* The good value with "\u0000" after it, inside it and alone: never cut short. */
    const char *forms[] = {"%s\\u0000", "\\u0000%s", "%.1s\\u0000%s", "\\u0000"};
    for (size_t k = 0; k < sizeof forms / sizeof *forms; k++) {
      snprintf(value, sizeof value, forms[k], fields[i].good, fields[i].good + 1);
      snprintf(json, sizeof json, fields[i].fmt, value);
      tern_frame_error e = expect_err(json, &V11, "bad_request", __LINE__);
      (void)e;
    }
    /* The same in the v1 decoder, for the fields v1 reads. */
    if (!strstr(fields[i].fmt, "group_id") && !strstr(fields[i].fmt, "e2e") && !strstr(fields[i].fmt, "reply_to") &&
        !strstr(fields[i].fmt, "reaction") && !strstr(fields[i].fmt, "edit") && !strstr(fields[i].fmt, "delete") &&
        !strstr(fields[i].fmt, "mentions") && !strstr(fields[i].fmt, "decrypt_error")) {
      snprintf(value, sizeof value, "%s\\u0000", fields[i].good);
      snprintf(json, sizeof json, fields[i].fmt, value);
      expect_err(json, NULL, "bad_request", __LINE__);
    }
  }
  /* In the type itself: not a known type. */
  expect_err("{\"type\":\"ping\\u0000\"}", &V11, "unknown_type", __LINE__);
}

TEST(broken_escapes_in_every_string_field) {
  /* Lone and mismatched surrogates, bad hex, truncated escapes: never valid JSON. */
  const char *broken[] = {"\\ud800", "a\\udc00", "\\ud800\\u0041", "\\ud83d\\ud83d", "\\u12G4", "\\u12", "\\x41"};
  char json[512];
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    for (size_t k = 0; k < sizeof broken / sizeof *broken; k++) {
      snprintf(json, sizeof json, fields[i].fmt, broken[k]);
      tern_frame_error e = expect_err(json, &V11, "bad_request", __LINE__);
      CHECK(strstr(e.message, "not valid JSON") != NULL);
    }
    /* Raw invalid UTF-8 (the WebSocket layer refuses it first; the decoder again). */
    snprintf(json, sizeof json, fields[i].fmt, "\xC3\x28");
    expect_err(json, &V11, "bad_request", __LINE__);
  }
}

/* ---- the encoder ---- */

TEST(encode_bytes) {
  tern_frame_e2e e2e[] = {{.device_id = "d1", .type = TERN_E2E_PREKEY, .body = "QUJD", .body_len = 4},
                          {.device_id = "d2", .type = TERN_E2E_MESSAGE, .body = "QQ==", .body_len = 4}};
  char *mentions[] = {"bob"};
  tern_frame f = {.type = TERN_FRAME_SEND, .id = "c-1", .group_id = "g", .e2e = e2e, .ne2e = 2, .media_ref = "blob",
                  .silent = true, .mentions = mentions, .nmentions = 1};
  ROUND(&f, NULL,
        "{\"type\":\"send\",\"id\":\"c-1\",\"group_id\":\"g\",\"e2e\":[{\"device_id\":\"d1\",\"type\":\"prekey\","
        "\"body\":\"QUJD\"},"
        "{\"device_id\":\"d2\",\"type\":\"message\",\"body\":\"QQ==\"}],\"media_ref\":\"blob\",\"silent\":true,"
        "\"mentions\":[\"bob\"]}");
  tern_frame r = {.type = TERN_FRAME_SEND, .id = "c-2", .to = "bob", .body = "yes \"really\"", .body_len = 12,
                  .media_id = "img", .reply_to = "m-1"};
  ROUND(&r, NULL,
        "{\"type\":\"send\",\"id\":\"c-2\",\"to\":\"bob\",\"body\":\"yes "
        "\\\"really\\\"\",\"media\":{\"media_id\":\"img\"},"
        "\"reply_to\":\"m-1\"}");
  tern_frame x = {.type = TERN_FRAME_SEND, .id = "c-3", .to = "bob", .reaction_to = "m-1", .emoji = "", .silent = true};
  ROUND(
      &x, NULL,
      "{\"type\":\"send\",\"id\":\"c-3\",\"to\":\"bob\",\"silent\":true,\"reaction\":{\"to\":\"m-1\",\"emoji\":\"\"}}");
  tern_frame ed = {
      .type = TERN_FRAME_SEND, .id = "c-4", .group_id = "g", .body = "new", .body_len = 3, .edit_of = "m-1"};
  ROUND(&ed, NULL, "{\"type\":\"send\",\"id\":\"c-4\",\"group_id\":\"g\",\"body\":\"new\",\"edit\":{\"of\":\"m-1\"}}");
  tern_frame del = {.type = TERN_FRAME_SEND, .id = "c-5", .to = "bob", .delete_of = "m-1"};
  ROUND(&del, NULL, "{\"type\":\"send\",\"id\":\"c-5\",\"to\":\"bob\",\"delete\":{\"of\":\"m-1\"}}");
  char *ids[] = {"m1", "m2"};
  tern_frame rd = {.type = TERN_FRAME_READ, .group_id = "g", .peer = "alice", .ids = ids, .nids = 2};
  ROUND(&rd, NULL, "{\"type\":\"read\",\"group_id\":\"g\",\"peer\":\"alice\",\"msg_ids\":[\"m1\",\"m2\"]}");
  tern_frame ty = {.type = TERN_FRAME_TYPING, .group_id = "g", .composing = true};
  ROUND(&ty, NULL, "{\"type\":\"typing\",\"group_id\":\"g\",\"state\":\"composing\"}");
  tern_frame de = {.type = TERN_FRAME_DECRYPT_ERROR, .peer = "alice", .device_id = "d-1", .msg_id = "m-1"};
  tern_frame de_want = de;
  de_want.to_raw = "alice";
  ROUND(&de, &de_want, "{\"type\":\"decrypt_error\",\"peer\":\"alice\",\"device_id\":\"d-1\",\"msg_id\":\"m-1\"}");
}

TEST(encode_round_trips_v1) {
  /* Every v1 frame, client encoder → server decoder. Names come back lower-cased, with to_raw;
   * watch lists come back split into valid and invalid names. */
  tern_frame a = {.type = TERN_FRAME_AUTH, .token = "abc.DEF-123"};
  ROUND(&a, NULL, "{\"type\":\"auth\",\"token\":\"abc.DEF-123\"}");
  tern_frame s = {.type = TERN_FRAME_SEND, .id = "c-1", .to = "Bob", .body = "h\xC3\xA9", .body_len = 3};
  tern_frame s_want = s;
  s_want.to = "bob";
  s_want.to_raw = "bob";
  ROUND(&s, &s_want, "{\"type\":\"send\",\"id\":\"c-1\",\"to\":\"Bob\",\"body\":\"h\xC3\xA9\"}");
  /* An invalid name is sent; the server answers no_such_user. */
  tern_frame bad = {.type = TERN_FRAME_SEND, .id = "c-1", .to = "B!", .media_id = "m"};
  tern_frame bad_want = bad;
  bad_want.to = NULL;
  bad_want.to_raw = "b!";
  bad_want.to_invalid = true;
  ROUND(&bad, &bad_want, NULL);
  tern_frame ack = {.type = TERN_FRAME_ACK, .seq = 9007199254740992ull};
  ROUND(&ack, NULL, "{\"type\":\"ack\",\"seq\":9007199254740992}");
  char *ids[] = {"m1"};
  tern_frame rd = {.type = TERN_FRAME_READ, .peer = "alice", .ids = ids, .nids = 1};
  tern_frame rd_want = rd;
  rd_want.to_raw = "alice";
  ROUND(&rd, &rd_want, "{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[\"m1\"]}");
  char *users[] = {"Bob", "carol"}, *bad_users[] = {"x!"};
  tern_frame w = {.type = TERN_FRAME_WATCH, .users = users, .nusers = 2, .bad_users = bad_users, .nbad_users = 1};
  char *users_want[] = {"bob", "carol"};
  tern_frame w_want = {
      .type = TERN_FRAME_WATCH, .users = users_want, .nusers = 2, .bad_users = bad_users, .nbad_users = 1};
  ROUND(&w, &w_want, "{\"type\":\"watch\",\"users\":[\"Bob\",\"carol\",\"x!\"]}");
  tern_frame uw = {.type = TERN_FRAME_UNWATCH};
  ROUND(&uw, NULL, "{\"type\":\"unwatch\",\"users\":[]}");
  tern_frame ty = {.type = TERN_FRAME_TYPING, .to = "bob"};
  tern_frame ty_want = ty;
  ty_want.to_raw = "bob";
  ROUND(&ty, &ty_want, "{\"type\":\"typing\",\"to\":\"bob\",\"state\":\"paused\"}");
  tern_frame p = {.type = TERN_FRAME_PING};
  ROUND(&p, NULL, "{\"type\":\"ping\"}");
}

TEST(encode_refuses_what_the_server_refuses) {
  tern_frame both = {.type = TERN_FRAME_SEND, .id = "c-1", .to = "bob", .group_id = "g", .body = "x", .body_len = 1};
  ENC_BAD(&both);
  tern_frame_error e;
  tern_buf b = {0};
  CHECK_EQ_INT(tern_frame_encode(&b, &both, NULL, &e), -EINVAL);
  CHECK_EQ_STR(e.id, "c-1"); /* the error names the id, as the server's would */
  tern_frame none = {.type = TERN_FRAME_SEND, .id = "c-1", .body = "x", .body_len = 1};
  ENC_BAD(&none);
  tern_frame noid = {.type = TERN_FRAME_SEND, .id = "", .to = "bob", .body = "x", .body_len = 1};
  CHECK_EQ_INT(tern_frame_encode(&b, &noid, NULL, &e), -EINVAL);
  CHECK_EQ_STR(e.id, "");
  tern_frame empty = {.type = TERN_FRAME_SEND, .id = "c", .to = "bob", .body = "", .body_len = 0};
  ENC_BAD(&empty);
  tern_frame nul = {.type = TERN_FRAME_SEND, .id = "c", .to = "bob", .body = "a\0b", .body_len = 3};
  ENC_BAD(&nul);
  tern_frame bad_utf8 = {.type = TERN_FRAME_SEND, .id = "c", .to = "bob", .body = "\xC3\x28", .body_len = 2};
  ENC_BAD(&bad_utf8);
  char *big = tern_malloc(TERN_BODY_MAX + 1);
  memset(big, 'a', TERN_BODY_MAX + 1);
  tern_frame large = {.type = TERN_FRAME_SEND, .id = "c", .to = "bob", .body = big, .body_len = TERN_BODY_MAX + 1};
  ENC_TOO_LARGE(&large, NULL);
  large.body_len = TERN_BODY_MAX;
  CHECK_EQ_INT(tern_frame_encode(&b, &large, NULL, &e), 0);
  tern_free(big);
  tern_buf_reset(&b);
  tern_frame group = {.type = TERN_FRAME_SEND, .id = "c", .group_id = "a b", .body = "x", .body_len = 1};
  ENC_BAD(&group);
  tern_frame react = {
      .type = TERN_FRAME_SEND, .id = "c", .to = "bob", .body = "x", .body_len = 1, .reaction_to = "m", .emoji = "y"};
  ENC_BAD(&react);
  tern_frame emoji_only = {.type = TERN_FRAME_SEND, .id = "c", .to = "bob", .emoji = "y"};
  ENC_BAD(&emoji_only);
  tern_frame_e2e dup[] = {{.device_id = "d", .type = TERN_E2E_MESSAGE, .body = "QQ==", .body_len = 4},
                          {.device_id = "d", .type = TERN_E2E_PREKEY, .body = "QQ==", .body_len = 4}};
  tern_frame twice = {.type = TERN_FRAME_SEND, .id = "c", .to = "bob", .e2e = dup, .ne2e = 2};
  ENC_BAD(&twice);
  tern_frame_e2e notype = {.device_id = "d", .body = "QQ==", .body_len = 4};
  tern_frame nt = {.type = TERN_FRAME_SEND, .id = "c", .to = "bob", .e2e = &notype, .ne2e = 1};
  ENC_BAD(&nt);
  char *mentions[] = {"not a name"};
  tern_frame mn = {.type = TERN_FRAME_SEND,
                   .id = "c",
                   .group_id = "g",
                   .body = "x",
                   .body_len = 1,
                   .mentions = mentions,
                   .nmentions = 1};
  ENC_BAD(&mn);
  tern_frame rd = {.type = TERN_FRAME_READ, .peer = "alice"};
  ENC_BAD(&rd);
  tern_frame tok = {.type = TERN_FRAME_AUTH, .token = ""};
  ENC_BAD(&tok);
  tern_frame de = {.type = TERN_FRAME_DECRYPT_ERROR, .peer = "alice", .msg_id = "m"};
  ENC_BAD(&de);
  tern_frame ty = {.type = TERN_FRAME_TYPING};
  ENC_BAD(&ty);
  tern_frame unknown = {.type = (tern_frame_type)99};
  enc_refuses(&unknown, NULL, "unknown_type", __LINE__);
  tern_buf_free(&b);
}

TEST(same_tells_frames_apart) {
  char *ids[] = {"m1", "m2"}, *ids2[] = {"m1", "m3"};
  tern_frame a = {.type = TERN_FRAME_READ, .peer = "alice", .ids = ids, .nids = 2};
  tern_frame b = a;
  CHECK(tern_frame_same(&a, &b));
  b.ids = ids2;
  CHECK(!tern_frame_same(&a, &b));
  b = a;
  b.nids = 1;
  CHECK(!tern_frame_same(&a, &b));
  b = a;
  b.group_id = "g";
  CHECK(!tern_frame_same(&a, &b));
  b = a;
  b.type = TERN_FRAME_SEND;
  CHECK(!tern_frame_same(&a, &b));
  tern_frame_e2e x = {.device_id = "d", .type = TERN_E2E_MESSAGE, .body = "QQ==", .body_len = 4}, y = x;
  tern_frame e = {.type = TERN_FRAME_SEND, .e2e = &x, .ne2e = 1}, f = e;
  f.e2e = &y;
  CHECK(tern_frame_same(&e, &f));
  y.type = TERN_E2E_PREKEY;
  CHECK(!tern_frame_same(&e, &f));
}

int main(void) {
  RUN(send_to_group);
  RUN(read_and_typing_in_groups);
  RUN(send_e2e);
  RUN(e2e_limits_are_parameters);
  RUN(message_actions);
  RUN(decrypt_error_frame);
  RUN(v1_decoder_keeps_v1_language);
  RUN(nul_in_every_string_field);
  RUN(broken_escapes_in_every_string_field);
  RUN(encode_bytes);
  RUN(encode_round_trips_v1);
  RUN(encode_refuses_what_the_server_refuses);
  RUN(same_tells_frames_apart);
  DONE();
}
