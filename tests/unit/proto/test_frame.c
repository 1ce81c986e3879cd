/* Unit tests for src/proto/frame.c: every client frame valid and invalid, every error code,
 * username rules, size limits at their edges, escapes, and the exact bytes of every encoder
 * (re-parsed with cJSON to prove they are JSON with the intended values). Ends with a small
 * benchmark that prints ns/op and asserts nothing about time. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/util.h"
#include "proto/frame.h"
#include "t.h"

/* The v1 envelope writers are deprecated; these tests keep their bytes until the server moves off them. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

/* ---- helpers ---- */

static int dec(const char *json, tern_frame *f, tern_frame_error *e) { return tern_frame_decode(json, strlen(json), f, e); }

/* Decodes json expecting failure with code; returns the error for further checks. */
static tern_frame_error expect_err(const char *json, const char *code, int line) {
  tern_frame f;
  tern_frame_error e;
  int rc = dec(json, &f, &e);
  if (rc != -EINVAL || !e.code || strcmp(e.code, code) != 0) {
    fprintf(stderr, "  FAIL line %d: %s → rc %d code %s (want %s) msg \"%s\"\n", line, json, rc,
            e.code ? e.code : "(null)", code, e.message);
    t_failed_checks++;
    if (rc == 0) tern_frame_free(&f);
  } else {
    /* out must be empty after a failure. */
    tern_frame zero;
    memset(&zero, 0, sizeof zero);
    if (memcmp(&f, &zero, sizeof f) != 0) {
      fprintf(stderr, "  FAIL line %d: frame not empty after error\n", line);
      t_failed_checks++;
    }
    if (!e.message[0]) {
      fprintf(stderr, "  FAIL line %d: empty error message\n", line);
      t_failed_checks++;
    }
  }
  return e;
}
#define BAD(json) expect_err((json), "bad_request", __LINE__)
#define TOO_LARGE(json) expect_err((json), "too_large", __LINE__)
#define UNKNOWN(json) expect_err((json), "unknown_type", __LINE__)

/* Decodes json expecting success. */
static int expect_ok(const char *json, size_t len, tern_frame *f, int line) {
  tern_frame_error e;
  int rc = tern_frame_decode(json, len, f, &e);
  if (rc != 0) {
    fprintf(stderr, "  FAIL line %d: %.200s → %s: %s\n", line, json, e.code, e.message);
    t_failed_checks++;
    return -1;
  }
  if (e.code != NULL) {
    fprintf(stderr, "  FAIL line %d: code set after success\n", line);
    t_failed_checks++;
  }
  return 0;
}
#define OK(json, f) (expect_ok((json), strlen(json), (f), __LINE__) == 0)
/* Ends the test when a decode that must succeed failed (already counted), so that the checks
 * after it do not dereference an empty frame. */
#define MUST_OK(cond) \
  do {                \
    if (!(cond)) return; \
  } while (0)

/* Builds {"type":"send","id":"x","to":"bob","body":"<n times c>"} in a fresh buffer. */
static char *send_with_body(size_t n, char c) {
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"");
  tern_buf_reserve(&b, n);
  memset(b.data + b.len, c, n);
  b.len += n;
  tern_buf_puts(&b, "\"}");
  return tern_buf_steal(&b, NULL);
}

/* Builds a read frame with n ids "m0", "m1", ... (or entries given by fmt for entry k). */
static char *read_with_ids(size_t n) {
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[");
  for (size_t i = 0; i < n; i++) tern_buf_printf(&b, "%s\"m%zu\"", i ? "," : "", i);
  tern_buf_puts(&b, "]}");
  return tern_buf_steal(&b, NULL);
}

static char *watch_with_users(size_t n) {
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"type\":\"watch\",\"users\":[");
  for (size_t i = 0; i < n; i++) tern_buf_printf(&b, "%s\"user%zu\"", i ? "," : "", i);
  tern_buf_puts(&b, "]}");
  return tern_buf_steal(&b, NULL);
}

/* Checks that the buffer holds exactly want, then that it parses as one JSON object. Returns
 * the parsed tree (caller deletes) or NULL. */
static cJSON *expect_json(tern_buf *b, const char *want, int line) {
  if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0) {
    fprintf(stderr, "  FAIL line %d:\n    got  %.*s\n    want %s\n", line, (int)b->len, b->data, want);
    t_failed_checks++;
  }
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(b->data, b->len, &end, 0);
  if (!j || !cJSON_IsObject(j) || end != b->data + b->len) {
    fprintf(stderr, "  FAIL line %d: output does not parse as one object\n", line);
    t_failed_checks++;
    cJSON_Delete(j);
    return NULL;
  }
  return j;
}
#define EXPECT_JSON(b, want) expect_json((b), (want), __LINE__)

static const char *jstr(const cJSON *j, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *j, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsNumber(v) ? v->valuedouble : -12345.0;
}

/* ---- decoding: framing and type ---- */

TEST(not_json_or_not_object) {
  BAD("");
  BAD("   ");
  BAD("{");
  BAD("{\"type\":\"ping\"");
  BAD("{\"type\":\"ping\",}");
  BAD("[]");
  BAD("[{\"type\":\"ping\"}]");
  BAD("\"ping\"");
  BAD("42");
  BAD("null");
  BAD("true");
  BAD("type=ping");
  BAD("{'type':'ping'}");
  BAD("\xEF\xBB\xBF{\"type\":\"ping\"}"); /* BOM: cJSON would skip it, we do not */
  BAD("\x01{\"type\":\"ping\"}");         /* control char cJSON treats as whitespace */
}

TEST(trailing_garbage) {
  tern_frame f;
  MUST_OK(OK("  \r\n\t{\"type\":\"ping\"} \n\t\r ", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_PING);
  tern_frame_free(&f);
  BAD("{\"type\":\"ping\"}x");
  BAD("{\"type\":\"ping\"}{}");
  BAD("{\"type\":\"ping\"} {\"type\":\"ping\"}");
  BAD("{\"type\":\"ping\"},");
  BAD("{\"type\":\"ping\"}\x01");
  /* A NUL after the object (a C caller passing strlen + 1) is not whitespace either. */
  tern_frame_error e;
  const char ping_nul[] = "{\"type\":\"ping\"}";
  CHECK_EQ_INT(tern_frame_decode(ping_nul, sizeof ping_nul, &f, &e), -EINVAL);
  CHECK_EQ_STR(e.code, "bad_request");
  /* A raw NUL anywhere is refused, even inside a string. */
  const char body_nul[] = "{\"type\":\"send\",\"id\":\"a\",\"to\":\"bob\",\"body\":\"a\0b\"}";
  CHECK_EQ_INT(tern_frame_decode(body_nul, sizeof body_nul - 1, &f, &e), -EINVAL);
  CHECK_EQ_STR(e.code, "bad_request");
}

TEST(not_nul_terminated_input) {
  /* The decoder must respect len: the bytes after it are not part of the frame. */
  const char buf[] = "{\"type\":\"ping\"}GARBAGE";
  tern_frame f;
  MUST_OK(expect_ok(buf, 15, &f, __LINE__) == 0);
  CHECK_EQ_INT(f.type, TERN_FRAME_PING);
  tern_frame_free(&f);
  tern_frame_error e;
  CHECK_EQ_INT(tern_frame_decode(buf, 14, &f, &e), -EINVAL); /* cut before the brace */
  CHECK_EQ_STR(e.code, "bad_request");
  /* An unterminated heap copy, so ASan would catch a read past len. */
  const char *ack12 = "{\"type\":\"ack\",\"seq\":12}";
  char *p = tern_memdup(ack12, strlen(ack12));
  MUST_OK(expect_ok(p, strlen(ack12), &f, __LINE__) == 0);
  CHECK_EQ_INT(f.seq, 12);
  tern_frame_free(&f);
  tern_free(p);
  p = tern_memdup(ack12, strlen(ack12) - 1); /* "...12" without the brace */
  CHECK_EQ_INT(tern_frame_decode(p, strlen(ack12) - 1, &f, &e), -EINVAL);
  tern_free(p);
  p = tern_memdup("{\"type\":\"send\",\"id\":\"a\\", 23);
  CHECK_EQ_INT(tern_frame_decode(p, 23, &f, &e), -EINVAL);
  tern_free(p);
}

TEST(type_field) {
  tern_frame_error e = BAD("{}");
  CHECK(strstr(e.message, "type") != NULL);
  BAD("{\"type\":1}");
  BAD("{\"type\":null}");
  BAD("{\"type\":[\"ping\"]}");
  BAD("{\"Type\":\"ping\"}"); /* keys are case-sensitive */
  e = UNKNOWN("{\"type\":\"pingg\"}");
  CHECK_EQ_STR(e.message, "unknown frame type \"pingg\"");
  UNKNOWN("{\"type\":\"PING\"}");
  UNKNOWN("{\"type\":\"\"}");
  UNKNOWN("{\"type\":\"msg\"}");
  /* Long and non-ASCII names are shortened and sanitised in the message. */
  e = UNKNOWN("{\"type\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}");
  CHECK_EQ_STR(e.message, "unknown frame type \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
  e = UNKNOWN("{\"type\":\"h\xC3\xA9\\\"\\n\"}");
  CHECK_EQ_STR(e.message, "unknown frame type \"h????\"");
  /* The first of duplicate keys counts. */
  tern_frame f;
  MUST_OK(OK("{\"type\":\"ping\",\"type\":\"nope\"}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_PING);
  tern_frame_free(&f);
  /* type need not come first; unknown fields are ignored, whatever they hold. */
  MUST_OK(OK("{\"x\":[1,{\"y\":null}],\"type\":\"ping\",\"z\":\"\\u0000\"}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_PING);
  tern_frame_free(&f);
}

TEST(oversized_and_hostile_input) {
  /* More than 2 MiB is refused before parsing. */
  size_t big = ((size_t)2 << 20) + 1;
  char *p = tern_malloc(big);
  memset(p, ' ', big);
  p[0] = '{';
  p[big - 1] = '}';
  tern_frame f;
  tern_frame_error e;
  CHECK_EQ_INT(tern_frame_decode(p, big, &f, &e), -EINVAL);
  CHECK_EQ_STR(e.code, "too_large");
  tern_free(p);
  /* Deep nesting: cJSON stops at its limit; either way no crash and an error. */
  size_t depth = 100000;
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"type\":\"ping\",\"x\":");
  for (size_t i = 0; i < depth; i++) tern_buf_putc(&b, '[');
  for (size_t i = 0; i < depth; i++) tern_buf_putc(&b, ']');
  tern_buf_putc(&b, '}');
  CHECK_EQ_INT(tern_frame_decode(b.data, b.len, &f, &e), -EINVAL);
  CHECK_EQ_STR(e.code, "bad_request");
  tern_buf_free(&b);
  /* Moderate nesting in an ignored field is fine. */
  tern_buf_puts(&b, "{\"type\":\"ping\",\"x\":");
  for (size_t i = 0; i < 100; i++) tern_buf_puts(&b, "{\"a\":");
  tern_buf_puts(&b, "1");
  for (size_t i = 0; i < 100; i++) tern_buf_putc(&b, '}');
  tern_buf_putc(&b, '}');
  MUST_OK(expect_ok(b.data, b.len, &f, __LINE__) == 0);
  tern_frame_free(&f);
  tern_buf_free(&b);
  /* Strange numbers in ignored fields. */
  MUST_OK(OK("{\"type\":\"ping\",\"n\":1e400,\"m\":-1e-400,\"k\":123456789012345678901234567890}", &f));
  tern_frame_free(&f);
  BAD("{\"type\":\"ping\",\"n\":NaN}");
  BAD("{\"type\":\"ping\",\"n\":Infinity}");
  BAD("{\"type\":\"ping\",\"n\":-}");
}

/* ---- auth ---- */

TEST(auth) {
  tern_frame f;
  MUST_OK(OK("{\"type\":\"auth\",\"token\":\"abc.DEF-123\"}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_AUTH);
  CHECK_EQ_STR(f.token, "abc.DEF-123");
  tern_frame_free(&f);
  BAD("{\"type\":\"auth\"}");
  BAD("{\"type\":\"auth\",\"token\":\"\"}");
  BAD("{\"type\":\"auth\",\"token\":null}");
  BAD("{\"type\":\"auth\",\"token\":123}");
  BAD("{\"type\":\"auth\",\"token\":\"ab\\u0000cd\"}");
  /* 512 bytes is the limit. */
  char tok[600];
  memset(tok, 'k', sizeof tok);
  char json[700];
  snprintf(json, sizeof json, "{\"type\":\"auth\",\"token\":\"%.*s\"}", TERN_TOKEN_MAX, tok);
  MUST_OK(OK(json, &f));
  CHECK_EQ_INT(strlen(f.token), TERN_TOKEN_MAX);
  tern_frame_free(&f);
  snprintf(json, sizeof json, "{\"type\":\"auth\",\"token\":\"%.*s\"}", TERN_TOKEN_MAX + 1, tok);
  BAD(json);
}

/* ---- send ---- */

TEST(send_valid) {
  tern_frame f;
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"c-123\",\"to\":\"Bob\",\"body\":\"hello\"}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_SEND);
  CHECK_EQ_STR(f.id, "c-123");
  CHECK_EQ_STR(f.to, "bob");
  CHECK_EQ_STR(f.to_raw, "bob");
  CHECK(!f.to_invalid);
  CHECK_EQ_STR(f.body, "hello");
  CHECK_EQ_INT(f.body_len, 5);
  CHECK(f.media_id == NULL);
  tern_frame_free(&f);

  /* media only, media with body, null body, empty body with media, extra fields. */
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"media\":{\"media_id\":\"m-1\",\"x\":1}}", &f));
  CHECK(f.body == NULL);
  CHECK_EQ_INT(f.body_len, 0);
  CHECK_EQ_STR(f.media_id, "m-1");
  tern_frame_free(&f);
  MUST_OK(OK("{\"media\":{\"media_id\":\"M\"},\"body\":\"caption\",\"to\":\"bob\",\"id\":\"2\",\"type\":\"send\"}", &f));
  CHECK_EQ_STR(f.body, "caption");
  CHECK_EQ_STR(f.media_id, "M");
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"3\",\"to\":\"bob\",\"body\":null,\"media\":{\"media_id\":\"M\"}}", &f));
  CHECK(f.body == NULL);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"4\",\"to\":\"bob\",\"body\":\"\",\"media\":{\"media_id\":\"M\"}}", &f));
  CHECK(f.body == NULL);
  CHECK_EQ_INT(f.body_len, 0);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"5\",\"to\":\"bob\",\"body\":\"x\",\"media\":null,\"extra\":[1,2]}", &f));
  CHECK(f.media_id == NULL);
  tern_frame_free(&f);

  /* id: 64 printable ASCII chars, including space and punctuation. */
  MUST_OK(OK("{\"type\":\"send\",\"id\":\" ~!\\\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^\","
           "\"to\":\"bob\",\"body\":\"x\"}",
           &f));
  CHECK_EQ_INT(strlen(f.id), 64);
  CHECK_EQ_STR(f.id, " ~!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^");
  tern_frame_free(&f);
}

TEST(send_invalid_id) {
  tern_frame_error e;
  e = BAD("{\"type\":\"send\",\"to\":\"bob\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "");
  e = BAD("{\"type\":\"send\",\"id\":\"\",\"to\":\"bob\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "");
  e = BAD("{\"type\":\"send\",\"id\":7,\"to\":\"bob\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "");
  e = BAD("{\"type\":\"send\",\"id\":\"0123456789012345678901234567890123456789012345678901234567890123X\","
          "\"to\":\"bob\",\"body\":\"x\"}"); /* 65 chars */
  CHECK_EQ_STR(e.id, "");
  e = BAD("{\"type\":\"send\",\"id\":\"a\\tb\",\"to\":\"bob\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "");
  e = BAD("{\"type\":\"send\",\"id\":\"caf\xC3\xA9\",\"to\":\"bob\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "");
  e = BAD("{\"type\":\"send\",\"id\":\"a\x7F\",\"to\":\"bob\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "");
  e = BAD("{\"type\":\"send\",\"id\":\"a\\u001f\",\"to\":\"bob\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "");
  e = BAD("{\"type\":\"send\",\"id\":\"\x1f\",\"to\":\"bob\",\"body\":\"x\"}"); /* raw, which cJSON lets through */
  CHECK_EQ_STR(e.id, "");
  /* "c-1\u0000" must not pass as "c-1". */
  e = BAD("{\"type\":\"send\",\"id\":\"c-1\\u0000\",\"to\":\"bob\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "");
  /* Malformed JSON: no id even though one is there. */
  e = BAD("{\"type\":\"send\",\"id\":\"c-1\",\"to\":\"bob\",\"body\":\"x\"");
  CHECK_EQ_STR(e.id, "");
}

TEST(send_errors_carry_id) {
  tern_frame_error e;
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":5,\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":null,\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\"}");
  CHECK_EQ_STR(e.id, "c-9");
  CHECK(strstr(e.message, "body") != NULL);
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"body\":\"\"}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"body\":null}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"body\":42}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"body\":[\"x\"]}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"media\":\"m-1\"}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"media\":{}}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"media\":{\"media_id\":\"\"}}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"media\":{\"media_id\":3}}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"media\":{\"media_id\":"
          "\"0123456789012345678901234567890123456789012345678901234567890123X\"}}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"body\":\"x\",\"media\":{\"media_id\":\"m\\u0000\"}}");
  CHECK_EQ_STR(e.id, "c-9");
  e = BAD("{\"type\":\"send\",\"id\":\"c-9\",\"to\":\"bob\",\"body\":\"x\",\"media\":[]}");
  CHECK_EQ_STR(e.id, "c-9");
  /* Escaped id characters are decoded before they are echoed. */
  e = BAD("{\"type\":\"send\",\"id\":\"\\u0063-\\\"1\\\"\",\"to\":\"bob\"}");
  CHECK_EQ_STR(e.id, "c-\"1\"");
}

TEST(send_to_invalid) {
  tern_frame f;
  /* An invalid name is not a decode error: the server answers no_such_user. */
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"1\",\"to\":\"Bo\",\"body\":\"x\"}", &f));
  CHECK(f.to_invalid);
  CHECK(f.to == NULL);
  CHECK_EQ_STR(f.to_raw, "bo");
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"1\",\"to\":\"B\xC3\x96\\u00e9 X\",\"body\":\"x\"}", &f));
  CHECK(f.to_invalid);
  CHECK_EQ_STR(f.to_raw, "b\xC3\x96\xC3\xA9 x"); /* ASCII lower-cased, the rest as given */
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"1\",\"to\":\"\",\"body\":\"x\"}", &f));
  CHECK(f.to_invalid);
  CHECK_EQ_STR(f.to_raw, "");
  tern_frame_free(&f);
  /* NUL in to must not turn "bob\u0000x" into "bob". */
  tern_frame_error e = BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\\u0000x\",\"body\":\"x\"}");
  CHECK_EQ_STR(e.id, "1");
}

TEST(send_body_size) {
  tern_frame f;
  char *j = send_with_body(TERN_BODY_MAX, 'a');
  MUST_OK(OK(j, &f));
  CHECK_EQ_INT(f.body_len, TERN_BODY_MAX);
  CHECK_EQ_INT(strlen(f.body), TERN_BODY_MAX);
  tern_frame_free(&f);
  tern_free(j);
  j = send_with_body(TERN_BODY_MAX + 1, 'a');
  tern_frame_error e = TOO_LARGE(j);
  CHECK_EQ_STR(e.id, "x");
  CHECK_EQ_STR(e.message, "body is longer than 65536 bytes");
  tern_free(j);
  /* The limit is on the unescaped bytes: 65536 "\n" escapes (131072 bytes of JSON) fit... */
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"");
  for (int i = 0; i < TERN_BODY_MAX; i++) tern_buf_puts(&b, "\\n");
  tern_buf_puts(&b, "\"}");
  MUST_OK(expect_ok(b.data, b.len, &f, __LINE__) == 0);
  CHECK_EQ_INT(f.body_len, TERN_BODY_MAX);
  CHECK(f.body && f.body[0] == '\n' && f.body[TERN_BODY_MAX - 1] == '\n');
  tern_frame_free(&f);
  tern_buf_free(&b);
  /* ...and multi-byte characters count in bytes: 21845 × "€" (3 bytes) = 65535, + "ab" = 65537. */
  tern_buf_puts(&b, "{\"type\":\"send\",\"id\":\"x\",\"to\":\"bob\",\"body\":\"");
  for (int i = 0; i < 21845; i++) tern_buf_puts(&b, "\\u20ac");
  tern_buf_puts(&b, "a\"}");
  MUST_OK(expect_ok(b.data, b.len, &f, __LINE__) == 0);
  CHECK_EQ_INT(f.body_len, 65536);
  tern_frame_free(&f);
  b.len -= 2;
  tern_buf_puts(&b, "b\"}");
  char *s = tern_buf_cstr(&b);
  TOO_LARGE(s);
  tern_buf_free(&b);
}

TEST(send_body_escapes) {
  tern_frame f;
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"q\\\"b\\\\s\\/n\\nt\\tr\\rb\\bf\\f\"}", &f));
  CHECK_EQ_STR(f.body, "q\"b\\s/n\nt\tr\rb\bf\f");
  CHECK_EQ_INT(f.body_len, 16);
  tern_frame_free(&f);
  /* \u escapes: BMP, a surrogate pair (U+1F600), raw UTF-8 next to it. */
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\u00e9\\u20AC\\ud83d\\ude00\xF0\x9F\x98\x80\\u0001\"}", &f));
  CHECK_EQ_STR(f.body, "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF0\x9F\x98\x80\x01");
  CHECK_EQ_INT(f.body_len, 14);
  tern_frame_free(&f);
  /* "\\u0000" is an escaped backslash followed by text, not a NUL. */
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\\\u0000\"}", &f));
  CHECK_EQ_STR(f.body, "\\u0000");
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\\\\\\\u0000\"}", &f));
  CHECK_EQ_STR(f.body, "\\\\u0000");
  tern_frame_free(&f);
  /* NUL escapes in the body are refused, with the id. */
  tern_frame_error e = BAD("{\"type\":\"send\",\"id\":\"c-2\",\"to\":\"bob\",\"body\":\"a\\u0000b\"}");
  CHECK_EQ_STR(e.id, "c-2");
  CHECK(strstr(e.message, "u0000") != NULL);
  e = BAD("{\"type\":\"send\",\"id\":\"c-2\",\"to\":\"bob\",\"body\":\"\\\\\\u0000\"}");
  CHECK_EQ_STR(e.id, "c-2");
  /* Bad escapes are malformed JSON. */
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\x41\"}");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\u12\"}");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\u12G4\"}");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\\"}");
}

TEST(send_body_surrogates_and_utf8) {
  /* Lone and mismatched surrogates never reach the body. */
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\ud800\"}");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\udc00\"}");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"a\\ud800b\"}");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\ud800\\u0041\"}");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\ud800\\ud800\"}");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\udc00\\ud800\"}");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\\ud800\\u0000\"}");
  /* Raw invalid UTF-8 (the WebSocket layer should have refused it; we check again). */
  tern_frame_error e = BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\xC3\x28\"}");
  CHECK_EQ_STR(e.id, "1");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\xED\xA0\x80\"}"); /* raw surrogate */
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\xC0\xAF\"}");     /* overlong */
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\xFF\"}");
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"\xE2\x82\"}"); /* truncated */
  BAD("{\"type\":\"send\",\"id\":\"1\",\"to\":\"\xC3\",\"body\":\"x\"}");
}

/* ---- ack ---- */

TEST(ack) {
  tern_frame f;
  MUST_OK(OK("{\"type\":\"ack\",\"seq\":0}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_ACK);
  CHECK_EQ_INT(f.seq, 0);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"ack\",\"seq\":42}", &f));
  CHECK_EQ_INT(f.seq, 42);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"ack\",\"seq\":9007199254740992}", &f));
  CHECK(f.seq == 9007199254740992ull);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"ack\",\"seq\":7.0}", &f));
  CHECK_EQ_INT(f.seq, 7);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"ack\",\"seq\":1e3}", &f));
  CHECK_EQ_INT(f.seq, 1000);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"ack\",\"seq\":-0}", &f));
  CHECK_EQ_INT(f.seq, 0);
  tern_frame_free(&f);
  BAD("{\"type\":\"ack\"}");
  BAD("{\"type\":\"ack\",\"seq\":-1}");
  BAD("{\"type\":\"ack\",\"seq\":1.5}");
  BAD("{\"type\":\"ack\",\"seq\":\"5\"}");
  BAD("{\"type\":\"ack\",\"seq\":null}");
  BAD("{\"type\":\"ack\",\"seq\":true}");
  BAD("{\"type\":\"ack\",\"seq\":[1]}");
  BAD("{\"type\":\"ack\",\"seq\":9007199254740994}");
  BAD("{\"type\":\"ack\",\"seq\":18446744073709551616}");
  BAD("{\"type\":\"ack\",\"seq\":1e400}");
  BAD("{\"type\":\"ack\",\"seq\":-1e400}");
  BAD("{\"type\":\"ack\",\"seq\":1e-400}" "x");
  BAD("{\"type\":\"ack\",\"seq\":0x10}");
  BAD("{\"type\":\"ack\",\"seq\":NaN}");
  /* A tiny positive number underflows to 0.0 in strtod... which is an integral 0. */
  MUST_OK(OK("{\"type\":\"ack\",\"seq\":1e-400}", &f));
  CHECK_EQ_INT(f.seq, 0);
  tern_frame_free(&f);
}

/* ---- read ---- */

TEST(read_frame) {
  tern_frame f;
  MUST_OK(OK("{\"type\":\"read\",\"peer\":\"ALICE\",\"msg_ids\":[\"m1\",\"m2\"]}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_READ);
  CHECK_EQ_STR(f.peer, "alice");
  CHECK(!f.to_invalid);
  CHECK_EQ_INT(f.nids, 2);
  CHECK_EQ_STR(f.ids[0], "m1");
  CHECK_EQ_STR(f.ids[1], "m2");
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"read\",\"peer\":\"a!\",\"msg_ids\":[\"m1\"]}", &f));
  CHECK(f.to_invalid);
  CHECK(f.peer == NULL);
  CHECK_EQ_STR(f.to_raw, "a!");
  tern_frame_free(&f);
  BAD("{\"type\":\"read\",\"msg_ids\":[\"m1\"]}");
  BAD("{\"type\":\"read\",\"peer\":1,\"msg_ids\":[\"m1\"]}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\"}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":\"m1\"}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[]}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[\"m1\",2]}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[\"m1\",null]}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[\"\"]}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[\"a\\nb\"]}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[\"m1\",\"\\u001f\"]}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[\"m1\",\"\\u007f\"]}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[\"m\\u0000\"]}");
  BAD("{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":"
      "[\"0123456789012345678901234567890123456789012345678901234567890123X\"]}");
}

TEST(read_limits) {
  tern_frame f;
  char *j = read_with_ids(TERN_READ_IDS_MAX);
  MUST_OK(OK(j, &f));
  CHECK_EQ_INT(f.nids, TERN_READ_IDS_MAX);
  CHECK_EQ_STR(f.ids[999], "m999");
  tern_frame_free(&f);
  tern_free(j);
  j = read_with_ids(TERN_READ_IDS_MAX + 1);
  tern_frame_error e = TOO_LARGE(j);
  CHECK(strstr(e.message, "1000") != NULL);
  tern_free(j);
  /* Size is checked before entries: 1001 non-strings are too_large, not bad_request. */
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"type\":\"read\",\"peer\":\"alice\",\"msg_ids\":[");
  for (int i = 0; i <= TERN_READ_IDS_MAX; i++) tern_buf_puts(&b, i ? ",1" : "1");
  tern_buf_puts(&b, "]}");
  TOO_LARGE(tern_buf_cstr(&b));
  tern_buf_free(&b);
}

/* ---- watch / unwatch ---- */

TEST(watch) {
  tern_frame f;
  MUST_OK(OK("{\"type\":\"watch\",\"users\":[\"Bob\",\"carol\",\"BOB\",\"x\",\"Dan!\",\"X\",\"bob\",\"dan!\"]}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_WATCH);
  CHECK_EQ_INT(f.nusers, 2);
  CHECK_EQ_STR(f.users[0], "bob");
  CHECK_EQ_STR(f.users[1], "carol");
  CHECK_EQ_INT(f.nbad_users, 2);
  CHECK_EQ_STR(f.bad_users[0], "x");
  CHECK_EQ_STR(f.bad_users[1], "dan!");
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"unwatch\",\"users\":[\"bob\"]}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_UNWATCH);
  CHECK_EQ_INT(f.nusers, 1);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"watch\",\"users\":[]}", &f));
  CHECK_EQ_INT(f.nusers, 0);
  CHECK_EQ_INT(f.nbad_users, 0);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"watch\",\"users\":[\"\",\"\xC3\xA9t\xC3\xA9\"]}", &f));
  CHECK_EQ_INT(f.nusers, 0);
  CHECK_EQ_INT(f.nbad_users, 2);
  CHECK_EQ_STR(f.bad_users[0], "");
  CHECK_EQ_STR(f.bad_users[1], "\xC3\xA9t\xC3\xA9");
  tern_frame_free(&f);
  BAD("{\"type\":\"watch\"}");
  BAD("{\"type\":\"watch\",\"users\":\"bob\"}");
  BAD("{\"type\":\"watch\",\"users\":{\"bob\":1}}");
  BAD("{\"type\":\"watch\",\"users\":[\"bob\",1]}");
  BAD("{\"type\":\"unwatch\",\"users\":[null]}");
  BAD("{\"type\":\"watch\",\"users\":[\"bob\\u0000\"]}");
  BAD("{\"type\":\"watch\",\"users\":[\"bob\",\"\xFE\"]}");
}

TEST(watch_limits) {
  tern_frame f;
  char *j = watch_with_users(TERN_WATCH_MAX);
  MUST_OK(OK(j, &f));
  CHECK_EQ_INT(f.nusers, TERN_WATCH_MAX);
  CHECK_EQ_STR(f.users[TERN_WATCH_MAX - 1], "user9999");
  tern_frame_free(&f);
  tern_free(j);
  j = watch_with_users(TERN_WATCH_MAX + 1);
  TOO_LARGE(j);
  tern_free(j);
  /* 10000 copies of one name de-duplicate to one (and fast: not quadratic). */
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"type\":\"watch\",\"users\":[");
  for (int i = 0; i < TERN_WATCH_MAX; i++) tern_buf_puts(&b, i % 2 ? ",\"SAME\"" : (i ? ",\"same\"" : "\"same\""));
  tern_buf_puts(&b, "]}");
  MUST_OK(expect_ok(b.data, b.len, &f, __LINE__) == 0);
  CHECK_EQ_INT(f.nusers, 1);
  CHECK_EQ_STR(f.users[0], "same");
  tern_frame_free(&f);
  tern_buf_free(&b);
}

/* ---- typing, ping ---- */

TEST(typing) {
  tern_frame f;
  MUST_OK(OK("{\"type\":\"typing\",\"to\":\"Bob\",\"state\":\"composing\"}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_TYPING);
  CHECK_EQ_STR(f.to, "bob");
  CHECK(f.composing);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"typing\",\"to\":\"bob\",\"state\":\"paused\"}", &f));
  CHECK(!f.composing);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"typing\",\"to\":\"b\",\"state\":\"paused\"}", &f));
  CHECK(f.to_invalid);
  CHECK(f.to == NULL);
  CHECK_EQ_STR(f.to_raw, "b");
  tern_frame_free(&f);
  BAD("{\"type\":\"typing\",\"to\":\"bob\"}");
  BAD("{\"type\":\"typing\",\"to\":\"bob\",\"state\":\"Composing\"}");
  BAD("{\"type\":\"typing\",\"to\":\"bob\",\"state\":\"\"}");
  BAD("{\"type\":\"typing\",\"to\":\"bob\",\"state\":true}");
  BAD("{\"type\":\"typing\",\"to\":\"bob\",\"state\":\"paused\\u0000\"}");
  BAD("{\"type\":\"typing\",\"state\":\"paused\"}");
  BAD("{\"type\":\"typing\",\"to\":[],\"state\":\"paused\"}");
}

TEST(ping) {
  tern_frame f;
  MUST_OK(OK("{\"type\":\"ping\"}", &f));
  CHECK_EQ_INT(f.type, TERN_FRAME_PING);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"ping\",\"id\":5,\"body\":{}}", &f));
  tern_frame_free(&f);
  tern_frame_free(NULL);
}

/* ---- usernames ---- */

TEST(usernames) {
  char out[TERN_USERNAME_MAX + 1];
  CHECK(!tern_username_normalize("ab", 2, out));
  CHECK_EQ_STR(out, "ab");
  CHECK(tern_username_normalize("abc", 3, out));
  CHECK_EQ_STR(out, "abc");
  CHECK(tern_username_normalize("Al_i.c-E9", 9, out));
  CHECK_EQ_STR(out, "al_i.c-e9");
  CHECK(tern_username_normalize("...", 3, out));
  CHECK(tern_username_normalize("0123456789ABCDEFGHIJKLMNOPQRSTUV", 32, out));
  CHECK_EQ_STR(out, "0123456789abcdefghijklmnopqrstuv");
  CHECK(!tern_username_normalize("0123456789abcdefghijklmnopqrstuvw", 33, out));
  CHECK_EQ_STR(out, "");
  CHECK(!tern_username_normalize("", 0, out));
  CHECK(!tern_username_normalize("al ice", 6, out));
  CHECK(!tern_username_normalize("al@ice", 6, out));
  CHECK(!tern_username_normalize("al+ice", 6, out));
  CHECK(!tern_username_normalize("al/ice", 6, out));
  CHECK(!tern_username_normalize("\xC3\xA9t\xC3\xA9", 6, out)); /* "été" */
  CHECK(!tern_username_normalize("\xC3\x89TE", 4, out));        /* "ÉTE": no Unicode folding */
  CHECK(!tern_username_normalize("ab\0c", 4, out));             /* embedded NUL */
  CHECK(tern_username_normalize("abcdef", 3, out));             /* len counts, not NUL */
  CHECK_EQ_STR(out, "abc");
  /* The same rules apply to `to` inside frames, at 2, 3, 32 and 33 chars. */
  tern_frame f;
  MUST_OK(OK("{\"type\":\"typing\",\"to\":\"AB\",\"state\":\"paused\"}", &f));
  CHECK(f.to_invalid);
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"typing\",\"to\":\"ABC\",\"state\":\"paused\"}", &f));
  CHECK_EQ_STR(f.to, "abc");
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"typing\",\"to\":\"0123456789ABCDEFGHIJKLMNOPQRSTUV\",\"state\":\"paused\"}", &f));
  CHECK_EQ_STR(f.to, "0123456789abcdefghijklmnopqrstuv");
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"typing\",\"to\":\"0123456789ABCDEFGHIJKLMNOPQRSTUVW\",\"state\":\"paused\"}", &f));
  CHECK(f.to_invalid);
  CHECK_EQ_STR(f.to_raw, "0123456789abcdefghijklmnopqrstuvw");
  tern_frame_free(&f);
  MUST_OK(OK("{\"type\":\"typing\",\"to\":\"\\u0042OB\",\"state\":\"paused\"}", &f)); /* escaped letters */
  CHECK_EQ_STR(f.to, "bob");
  tern_frame_free(&f);
}

/* ---- encoders ---- */

TEST(enc_simple_frames) {
  tern_buf b = {0};
  cJSON *j;
  tern_enc_ready(&b, "alice", "d-1", 1700000000123);
  j = EXPECT_JSON(&b, "{\"type\":\"ready\",\"user\":\"alice\",\"device_id\":\"d-1\",\"server_time\":1700000000123}");
  CHECK_EQ_STR(jstr(j, "type"), "ready");
  CHECK(jnum(j, "server_time") == 1700000000123.0);
  cJSON_Delete(j);
  tern_buf_reset(&b);

  tern_enc_synced(&b, 0);
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"synced\",\"seq\":0}"));
  tern_buf_reset(&b);
  tern_enc_synced(&b, UINT64_MAX);
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"synced\",\"seq\":18446744073709551615}"));
  tern_buf_reset(&b);

  tern_enc_pong(&b, 5);
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"pong\",\"server_time\":5}"));
  tern_buf_reset(&b);

  tern_enc_sent(&b, "c-123", "01HXYZ", 1700000000000);
  j = EXPECT_JSON(&b, "{\"type\":\"sent\",\"id\":\"c-123\",\"msg_id\":\"01HXYZ\",\"ts\":1700000000000}");
  CHECK_EQ_STR(jstr(j, "id"), "c-123");
  cJSON_Delete(j);
  tern_buf_reset(&b);

  /* A client id with every awkward printable character comes back intact. */
  tern_enc_sent(&b, "a\"b\\c/d", "m", -1);
  j = EXPECT_JSON(&b, "{\"type\":\"sent\",\"id\":\"a\\\"b\\\\c/d\",\"msg_id\":\"m\",\"ts\":-1}");
  CHECK_EQ_STR(jstr(j, "id"), "a\"b\\c/d");
  cJSON_Delete(j);
  tern_buf_reset(&b);

  tern_enc_typing(&b, "alice", true);
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"typing\",\"from\":\"alice\",\"state\":\"composing\"}"));
  tern_buf_reset(&b);
  tern_enc_typing(&b, "alice", false);
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"typing\",\"from\":\"alice\",\"state\":\"paused\"}"));
  tern_buf_reset(&b);

  /* NULL where a string belongs is written as null, not a crash. */
  tern_enc_ready(&b, NULL, "d", 1);
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"ready\",\"user\":null,\"device_id\":\"d\",\"server_time\":1}"));
  tern_buf_free(&b);
}

TEST(enc_error_frame) {
  tern_buf b = {0};
  cJSON *j;
  tern_enc_error(&b, "c-1", "bad_request", "body is longer than 65536 bytes", NULL);
  j = EXPECT_JSON(&b, "{\"type\":\"error\",\"id\":\"c-1\",\"code\":\"bad_request\",\"message\":\"body is longer than 65536 bytes\"}");
  CHECK_EQ_STR(jstr(j, "message"), "body is longer than 65536 bytes");
  cJSON_Delete(j);
  tern_buf_reset(&b);
  tern_enc_error(&b, NULL, "bad_request", "frame is not valid JSON", NULL);
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"error\",\"code\":\"bad_request\",\"message\":\"frame is not valid JSON\"}"));
  tern_buf_reset(&b);
  tern_enc_error(&b, NULL, "no_such_user", "no such user", "zed");
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"error\",\"code\":\"no_such_user\",\"message\":\"no such user\",\"user\":\"zed\"}"));
  tern_buf_reset(&b);
  tern_enc_error(&b, "c-1", "no_such_user", "no such user", "zed");
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"error\",\"id\":\"c-1\",\"code\":\"no_such_user\",\"message\":\"no such user\",\"user\":\"zed\"}"));
  tern_buf_reset(&b);
  tern_enc_error(&b, NULL, "no_such_user", NULL, "zed");
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"error\",\"code\":\"no_such_user\",\"user\":\"zed\"}"));
  tern_buf_reset(&b);
  /* A bad_users entry echoed back: quotes, control chars and non-ASCII survive the trip. */
  const char *weird = "\"q\"\\\x01\x1f\n\xC3\xA9\xF0\x9F\x98\x80";
  tern_enc_error(&b, NULL, "no_such_user", "no such user", weird);
  j = EXPECT_JSON(&b, "{\"type\":\"error\",\"code\":\"no_such_user\",\"message\":\"no such user\",\"user\":"
                      "\"\\\"q\\\"\\\\\\u0001\\u001f\\n\xC3\xA9\xF0\x9F\x98\x80\"}");
  CHECK_EQ_STR(jstr(j, "user"), weird);
  cJSON_Delete(j);
  /* Every decode error message can be sent as is. */
  tern_buf_reset(&b);
  tern_frame f;
  tern_frame_error e;
  CHECK_EQ_INT(dec("{\"type\":\"\\\"\\u00e9\\u0001\"}", &f, &e), -EINVAL);
  tern_enc_error(&b, e.id[0] ? e.id : NULL, e.code, e.message, NULL);
  j = EXPECT_JSON(&b, "{\"type\":\"error\",\"code\":\"unknown_type\",\"message\":\"unknown frame type \\\"????\\\"\"}");
  cJSON_Delete(j);
  tern_buf_free(&b);
}

TEST(enc_presence) {
  tern_buf b = {0};
  cJSON *j;
  tern_enc_presence(&b, "bob", true, 123);
  j = EXPECT_JSON(&b, "{\"type\":\"presence\",\"user\":\"bob\",\"online\":true}");
  CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "online")));
  CHECK(cJSON_GetObjectItemCaseSensitive(j, "last_seen") == NULL);
  cJSON_Delete(j);
  tern_buf_reset(&b);
  tern_enc_presence(&b, "bob", false, 1700000000999);
  j = EXPECT_JSON(&b, "{\"type\":\"presence\",\"user\":\"bob\",\"online\":false,\"last_seen\":1700000000999}");
  CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "online")));
  CHECK(jnum(j, "last_seen") == 1700000000999.0);
  cJSON_Delete(j);
  tern_buf_reset(&b);
  tern_enc_presence(&b, "bob", false, -1);
  j = EXPECT_JSON(&b, "{\"type\":\"presence\",\"user\":\"bob\",\"online\":false,\"last_seen\":null}");
  CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "last_seen")));
  cJSON_Delete(j);
  tern_buf_reset(&b);
  tern_enc_presence(&b, "bob", false, 0);
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"presence\",\"user\":\"bob\",\"online\":false,\"last_seen\":0}"));
  tern_buf_free(&b);
}

TEST(enc_msg_envelope) {
  tern_buf b = {0};
  cJSON *j;
  tern_enc_envelope_head(&b, false, 7);
  tern_enc_msg_tail(&b, "m-1", "alice", "d-a", "bob", 1700000000000, "hello", 5, NULL);
  j = EXPECT_JSON(&b, "{\"type\":\"msg\",\"seq\":7,\"msg_id\":\"m-1\",\"from\":\"alice\",\"from_device\":\"d-a\","
                      "\"to\":\"bob\",\"ts\":1700000000000,\"body\":\"hello\"}");
  CHECK_EQ_STR(jstr(j, "type"), "msg");
  CHECK(jnum(j, "seq") == 7.0);
  CHECK_EQ_STR(jstr(j, "body"), "hello");
  cJSON_Delete(j);
  tern_buf_reset(&b);

  /* Media only (body NULL), media_json inserted verbatim. */
  tern_enc_envelope_head(&b, false, 8);
  tern_enc_msg_tail(&b, "m-2", "alice", "d-a", "bob", 1, NULL, 0,
                    "{\"media_id\":\"x\",\"mime\":\"image/png\",\"size\":10,\"width\":1,\"height\":1,\"sha256\":\"ab\"}");
  j = EXPECT_JSON(&b, "{\"type\":\"msg\",\"seq\":8,\"msg_id\":\"m-2\",\"from\":\"alice\",\"from_device\":\"d-a\",\"to\":\"bob\","
                      "\"ts\":1,\"media\":{\"media_id\":\"x\",\"mime\":\"image/png\",\"size\":10,\"width\":1,\"height\":1,"
                      "\"sha256\":\"ab\"}}");
  CHECK(cJSON_GetObjectItemCaseSensitive(j, "body") == NULL);
  CHECK_EQ_STR(jstr(cJSON_GetObjectItemCaseSensitive(j, "media"), "mime"), "image/png");
  cJSON_Delete(j);
  tern_buf_reset(&b);

  /* Body and media; the body needs every kind of escaping, and body_len (not NUL) bounds it. */
  const char body[] = "say \"hi\" \\ back\n\t\r\b\f\x01\x1f\x7f caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \0tail";
  size_t blen = sizeof body - 1;
  tern_enc_envelope_head(&b, false, 9);
  tern_enc_msg_tail(&b, "m-3", "alice", "d-a", "bob", 2, body, blen, "{\"media_id\":\"y\"}");
  j = EXPECT_JSON(&b, "{\"type\":\"msg\",\"seq\":9,\"msg_id\":\"m-3\",\"from\":\"alice\",\"from_device\":\"d-a\",\"to\":\"bob\","
                      "\"ts\":2,\"body\":\"say \\\"hi\\\" \\\\ back\\n\\t\\r\\b\\f\\u0001\\u001f\x7f caf\xC3\xA9 \xE2\x82\xAC "
                      "\xF0\x9F\x98\x80 \\u0000tail\",\"media\":{\"media_id\":\"y\"}}");
  /* cJSON stops its string at the NUL, so compare up to it. */
  CHECK_EQ_STR(jstr(j, "body"), body);
  cJSON_Delete(j);
  tern_buf_reset(&b);

  /* A decoded body round-trips byte for byte. */
  tern_frame f;
  MUST_OK(OK("{\"type\":\"send\",\"id\":\"1\",\"to\":\"bob\",\"body\":\"a\\\"b\\\\c\\u0001\\u00e9\\ud83d\\ude00\\/\"}", &f));
  tern_enc_envelope_head(&b, false, 1);
  tern_enc_msg_tail(&b, "m", "alice", "d", f.to, 3, f.body, f.body_len, NULL);
  j = EXPECT_JSON(&b, "{\"type\":\"msg\",\"seq\":1,\"msg_id\":\"m\",\"from\":\"alice\",\"from_device\":\"d\",\"to\":\"bob\","
                      "\"ts\":3,\"body\":\"a\\\"b\\\\c\\u0001\xC3\xA9\xF0\x9F\x98\x80/\"}");
  CHECK_EQ_STR(jstr(j, "body"), f.body);
  cJSON_Delete(j);
  tern_frame_free(&f);
  tern_buf_reset(&b);

  /* Appending after existing content leaves it alone. */
  tern_buf_puts(&b, "prefix");
  tern_enc_pong(&b, 1);
  CHECK(b.len == 6 + strlen("{\"type\":\"pong\",\"server_time\":1}"));
  CHECK_MEM(b.data, "prefix{\"type\":\"pong\"", 19);
  tern_buf_free(&b);
}

TEST(enc_receipt_envelope) {
  tern_buf b = {0};
  cJSON *j;
  const char *ids[] = {"m-1", "m-2", "m\"3"};
  tern_enc_envelope_head(&b, true, 12);
  tern_enc_receipt_tail(&b, false, "alice", "bob", ids, 3, 1700000000000);
  j = EXPECT_JSON(&b, "{\"type\":\"receipt\",\"seq\":12,\"status\":\"delivered\",\"from\":\"alice\",\"by\":\"bob\","
                      "\"msg_ids\":[\"m-1\",\"m-2\",\"m\\\"3\"],\"ts\":1700000000000}");
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "msg_ids");
  CHECK_EQ_INT(cJSON_GetArraySize(arr), 3);
  const cJSON *third = cJSON_GetArrayItem(arr, 2);
  CHECK(cJSON_IsString(third) && strcmp(third->valuestring, "m\"3") == 0);
  CHECK_EQ_STR(jstr(j, "status"), "delivered");
  cJSON_Delete(j);
  tern_buf_reset(&b);
  tern_enc_envelope_head(&b, true, 13);
  tern_enc_receipt_tail(&b, true, "alice", "bob", ids, 1, 5);
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"receipt\",\"seq\":13,\"status\":\"read\",\"from\":\"alice\",\"by\":\"bob\","
                               "\"msg_ids\":[\"m-1\"],\"ts\":5}"));
  tern_buf_reset(&b);
  tern_enc_envelope_head(&b, true, 14);
  tern_enc_receipt_tail(&b, true, "alice", "bob", NULL, 0, 5);
  cJSON_Delete(EXPECT_JSON(&b, "{\"type\":\"receipt\",\"seq\":14,\"status\":\"read\",\"from\":\"alice\",\"by\":\"bob\","
                               "\"msg_ids\":[],\"ts\":5}"));
  tern_buf_free(&b);
}

/* ---- benchmark (prints, never fails on time) ---- */

TEST(bench) {
  /* A typical ~200-byte send frame. */
  const char *frame =
      "{\"type\":\"send\",\"id\":\"c-1712345678901-42\",\"to\":\"Bob_the.builder\",\"body\":\"Hey, are we still on for "
      "lunch tomorrow at noon? I can bring the slides \\u2014 let me know!\",\"client\":\"web/1.2.3\"}";
  size_t len = strlen(frame);
  int iters = 200000;
  tern_frame f;
  tern_frame_error e;
  int failures = 0;
  uint64_t t0 = tern_mono_ns();
  for (int i = 0; i < iters; i++) {
    if (tern_frame_decode(frame, len, &f, &e) != 0) failures++;
    tern_frame_free(&f);
  }
  uint64_t t1 = tern_mono_ns();
  CHECK_EQ_INT(failures, 0);
  fprintf(stderr, "bench decode send (%zu bytes): %.0f ns/op\n", len, (double)(t1 - t0) / iters);

  const char *ack = "{\"type\":\"ack\",\"seq\":123456}";
  size_t alen = strlen(ack);
  t0 = tern_mono_ns();
  for (int i = 0; i < iters; i++) {
    if (tern_frame_decode(ack, alen, &f, &e) != 0) failures++;
    tern_frame_free(&f);
  }
  t1 = tern_mono_ns();
  fprintf(stderr, "bench decode ack: %.0f ns/op\n", (double)(t1 - t0) / iters);

  tern_buf b = {0};
  const char *body = "Hey, are we still on for lunch tomorrow at noon? I can bring the slides \xE2\x80\x94 let me know!";
  size_t blen = strlen(body);
  t0 = tern_mono_ns();
  for (int i = 0; i < iters; i++) {
    tern_buf_reset(&b);
    tern_enc_envelope_head(&b, false, (uint64_t)i);
    tern_enc_msg_tail(&b, "01HZX3K9Q7V8W2M4N6P0R5T1Y3", "alice", "d-7f3a9c", "bob_the.builder", 1712345678901, body,
                      blen, NULL);
  }
  t1 = tern_mono_ns();
  fprintf(stderr, "bench encode msg envelope (%zu bytes): %.0f ns/op\n", b.len, (double)(t1 - t0) / iters);
  tern_buf_free(&b);
}

int main(void) {
  RUN(not_json_or_not_object);
  RUN(trailing_garbage);
  RUN(not_nul_terminated_input);
  RUN(type_field);
  RUN(oversized_and_hostile_input);
  RUN(auth);
  RUN(send_valid);
  RUN(send_invalid_id);
  RUN(send_errors_carry_id);
  RUN(send_to_invalid);
  RUN(send_body_size);
  RUN(send_body_escapes);
  RUN(send_body_surrogates_and_utf8);
  RUN(ack);
  RUN(read_frame);
  RUN(read_limits);
  RUN(watch);
  RUN(watch_limits);
  RUN(typing);
  RUN(ping);
  RUN(usernames);
  RUN(enc_simple_frames);
  RUN(enc_error_frame);
  RUN(enc_presence);
  RUN(enc_msg_envelope);
  RUN(enc_receipt_envelope);
  RUN(bench);
  DONE();
}
