/* Unit tests for src/proto/envelope.c: the envelope writer's exact bytes for every envelope
 * and field (v1.1 included), v1 envelopes byte for byte the same as the deprecated head/tail
 * writers (and as tern v1), and round trips through the client's reader (server encoder →
 * client decoder). Ends with a benchmark that prints ns/op and asserts nothing about time. */
#include <errno.h>

#include "base/buf.h"
#include "base/util.h"
#include "proto/event.h"
#include "proto_t.h"

/* The deprecated writers are compared with the new one here. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"


/* Writes e, checks the bytes, reads them back as a client and compares with e. */
static void round_trip(const tern_envelope *e, const char *want, int line) {
  tern_buf b = {0};
  tern_envelope_encode(&b, e);
  expect_bytes(&b, want, line);
  tern_event ev;
  tern_event_doc doc;
  char msg[160];
  int rc = tern_event_decode(b.data, b.len, &ev, &doc, msg, sizeof msg);
  if (rc != 0) {
    fprintf(stderr, "  FAIL line %d: reader refused %.*s: %s\n", line, (int)b.len, b.data, msg);
    t_failed_checks++;
  } else {
    if (ev.type != e->type) {
      fprintf(stderr, "  FAIL line %d: read type %d, wrote %d\n", line, ev.type, e->type);
      t_failed_checks++;
    }
    tern_event wrote = {.type = e->type, .env = *e};
    if (!tern_event_same(&ev, &wrote)) {
      fprintf(stderr, "  FAIL line %d: read back differs from what was written\n", line);
      t_failed_checks++;
    }
  }
  tern_event_doc_free(&doc);
  tern_buf_free(&b);
}
#define ROUND(e, want) round_trip((e), (want), __LINE__)

/* A media object as the server's v1 records hold it. */
static const char MEDIA_JSON[] =
    "{\"media_id\":\"x\",\"mime\":\"image/png\",\"size\":10,\"sha256\":\"ab\",\"width\":1,\"height\":2}";
#define NO_MEDIA .media = {.size = -1, .width = -1, .height = -1}

/* ---- v1 envelopes: the same bytes as the deprecated writers and as v1 ---- */

static void v1_msg_same(const char *to, const char *body, size_t body_len, const char *media_json, const char *want,
                        int line) {
  tern_buf old = {0}, now = {0};
  tern_enc_envelope_head(&old, false, 7);
  tern_enc_msg_tail(&old, "m-1", "alice", "d-a", to, 1700000000000, body, body_len, media_json);
  tern_envelope e = {.type = TERN_EV_MSG,
                     .seq = 7,
                     .msg_id = S("m-1"),
                     .from = S("alice"),
                     .from_device = S("d-a"),
                     .to = tern_str_c(to),
                     .ts = 1700000000000,
                     .body = {body, body_len},
                     NO_MEDIA,
                     .media_json = tern_str_c(media_json)};
  tern_envelope_encode(&now, &e);
  expect_bytes(&old, want, line);
  expect_bytes(&now, want, line);
  tern_buf_free(&old);
  tern_buf_free(&now);
}

TEST(v1_msg_bytes) {
  v1_msg_same(
      "bob", "hello", 5, NULL,
      "{\"type\":\"msg\",\"seq\":7,\"msg_id\":\"m-1\",\"from\":\"alice\",\"from_device\":\"d-a\",\"to\":\"bob\","
      "\"ts\":1700000000000,\"body\":\"hello\"}",
      __LINE__);
  v1_msg_same(
      "bob", NULL, 0, MEDIA_JSON,
      "{\"type\":\"msg\",\"seq\":7,\"msg_id\":\"m-1\",\"from\":\"alice\",\"from_device\":\"d-a\",\"to\":\"bob\","
      "\"ts\":1700000000000,\"media\":{\"media_id\":\"x\",\"mime\":\"image/png\",\"size\":10,\"sha256\":\"ab\","
      "\"width\":1,\"height\":2}}",
      __LINE__);
  const char body[] = "q\"\\\n\x01 caf\xC3\xA9 \0t";
  v1_msg_same(
      "bob", body, sizeof body - 1, MEDIA_JSON,
      "{\"type\":\"msg\",\"seq\":7,\"msg_id\":\"m-1\",\"from\":\"alice\",\"from_device\":\"d-a\",\"to\":\"bob\","
      "\"ts\":1700000000000,\"body\":\"q\\\"\\\\\\n\\u0001 caf\xC3\xA9 \\u0000t\",\"media\":{\"media_id\":\"x\","
      "\"mime\":\"image/png\",\"size\":10,\"sha256\":\"ab\",\"width\":1,\"height\":2}}",
      __LINE__);
  /* The structured media object writes what the v1 record holds, in its order. */
  tern_buf b = {0};
  tern_envelope e = {.type = TERN_EV_MSG, .seq = 7, .msg_id = S("m-1"), .from = S("alice"), .from_device = S("d-a"),
                     .to = S("bob"), .ts = 1700000000000,
                     .media = {.media_id = S("x"), .mime = S("image/png"), .size = 10, .sha256 = S("ab"), .width = 1,
                               .height = 2}};
  tern_envelope_encode(&b, &e);
  BYTES(&b, "{\"type\":\"msg\",\"seq\":7,\"msg_id\":\"m-1\",\"from\":\"alice\",\"from_device\":\"d-a\",\"to\":\"bob\","
            "\"ts\":1700000000000,\"media\":{\"media_id\":\"x\",\"mime\":\"image/png\",\"size\":10,\"sha256\":\"ab\","
            "\"width\":1,\"height\":2}}");
  /* ...and wins over media_json when both are given. */
  tern_buf_reset(&b);
  e.media_json = S("{\"other\":1}");
  tern_envelope_encode(&b, &e);
  CHECK(strstr(tern_buf_cstr(&b), "other") == NULL);
  tern_buf_free(&b);
}

static void v1_receipt_same(bool read, const char *const *ids, size_t n, const char *want, int line) {
  tern_buf old = {0}, now = {0};
  tern_enc_envelope_head(&old, true, 12);
  tern_enc_receipt_tail(&old, read, "alice", "bob", ids, n, 5);
  tern_envelope e = {.type = TERN_EV_RECEIPT,
                     .seq = 12,
                     .status = read ? TERN_RECEIPT_READ : TERN_RECEIPT_DELIVERED,
                     .from = S("alice"),
                     .by = S("bob"),
                     .msg_ids = {.c = ids, .n = n},
                     .ts = 5};
  tern_envelope_encode(&now, &e);
  expect_bytes(&old, want, line);
  expect_bytes(&now, want, line);
  tern_buf_free(&old);
  tern_buf_free(&now);
}

TEST(v1_receipt_bytes) {
  const char *ids[] = {"m-1", "m-2", "m\"3"};
  v1_receipt_same(false, ids, 3,
                  "{\"type\":\"receipt\",\"seq\":12,\"status\":\"delivered\",\"from\":\"alice\",\"by\":\"bob\","
                  "\"msg_ids\":[\"m-1\",\"m-2\",\"m\\\"3\"],\"ts\":5}",
                  __LINE__);
  v1_receipt_same(
      true, ids, 1,
      "{\"type\":\"receipt\",\"seq\":12,\"status\":\"read\",\"from\":\"alice\",\"by\":\"bob\",\"msg_ids\":[\"m-1\"],"
      "\"ts\":5}",
      __LINE__);
  v1_receipt_same(
      true, NULL, 0,
      "{\"type\":\"receipt\",\"seq\":12,\"status\":\"read\",\"from\":\"alice\",\"by\":\"bob\",\"msg_ids\":[],\"ts\":5}",
      __LINE__);
  /* Views instead of C strings: the same bytes. */
  tern_str v[] = {S("m-1"), S("m-2")};
  tern_envelope e = {.type = TERN_EV_RECEIPT, .seq = 1, .status = TERN_RECEIPT_DELIVERED, .from = S("a"), .by = S("b"),
                     .msg_ids = {.v = v, .n = 2}, .ts = 2};
  tern_buf b = {0};
  tern_envelope_encode(&b, &e);
  BYTES(&b,
        "{\"type\":\"receipt\",\"seq\":1,\"status\":\"delivered\",\"from\":\"a\",\"by\":\"b\",\"msg_ids\":[\"m-1\",\"m-"
        "2\"],\"ts\":2}");
  tern_buf_free(&b);
}

TEST(views_are_not_nul_terminated) {
  /* Pointer + length: the bytes after n are never read. */
  const char backing[] = "alicebob-m1-dev9XXXX";
  tern_envelope e = {.type = TERN_EV_MSG, .seq = 3, .msg_id = {backing + 8, 5}, .from = {backing, 5},
                     .from_device = {backing + 12, 4}, .to = {backing + 5, 3}, .ts = 9, .body = {backing, 8}, NO_MEDIA};
  tern_buf b = {0};
  tern_envelope_encode(&b, &e);
  BYTES(&b,
        "{\"type\":\"msg\",\"seq\":3,\"msg_id\":\"-m1-d\",\"from\":\"alice\",\"from_device\":\"dev9\",\"to\":\"bob\","
        "\"ts\":9,"
        "\"body\":\"alicebob\"}");
  /* Appending leaves what is there; a required field left out is null, not a crash. */
  tern_buf_reset(&b);
  tern_buf_puts(&b, "[");
  tern_envelope bare = {.type = TERN_EV_MSG, .seq = 1, NO_MEDIA};
  tern_envelope_encode(&b, &bare);
  BYTES(&b, "[{\"type\":\"msg\",\"seq\":1,\"msg_id\":null,\"from\":null,\"from_device\":null,\"ts\":0}");
  /* Not an envelope type: nothing. */
  tern_buf_reset(&b);
  tern_envelope none = {.type = TERN_EV_SENT};
  tern_envelope_encode(&b, &none);
  CHECK_EQ_INT(b.len, 0);
  tern_buf_free(&b);
}

/* ---- v1.1 envelopes ---- */

TEST(group_msg) {
  tern_str mentions[] = {S("bob"), S("carol")};
  tern_envelope e = {.type = TERN_EV_MSG,
                     .seq = 4,
                     .msg_id = S("m-9"),
                     .from = S("alice"),
                     .from_device = S("d-a"),
                     .group_id = S("trip"),
                     .ts = 11,
                     .body = S("hi @bob"),
                     .media = {.media_id = S("img"), .mime = S("image/jpeg"), .size = 99, .sha256 = S("ff"), .width = 3,
                               .height = 4},
                     .reply_to = S("m-1"),
                     .mentions = {.v = mentions, .n = 2}};
  ROUND(
      &e,
      "{\"type\":\"msg\",\"seq\":4,\"msg_id\":\"m-9\",\"from\":\"alice\",\"from_device\":\"d-a\",\"group_id\":\"trip\","
      "\"ts\":11,\"body\":\"hi @bob\",\"media\":{\"media_id\":\"img\",\"mime\":\"image/jpeg\",\"size\":99,"
      "\"sha256\":\"ff\",\"width\":3,\"height\":4},\"reply_to\":\"m-1\",\"mentions\":[\"bob\",\"carol\"]}");
}

TEST(e2e_msg) {
  tern_envelope e = {.type = TERN_EV_MSG, .seq = 5, .msg_id = S("m"), .from = S("alice"), .from_device = S("d"),
                     .to = S("bob"), .ts = 1, .e2e_type = TERN_CIPHER_PREKEY, .e2e_body = S("QUJD"),
                     .media_ref = S("blob"), NO_MEDIA};
  ROUND(&e,
        "{\"type\":\"msg\",\"seq\":5,\"msg_id\":\"m\",\"from\":\"alice\",\"from_device\":\"d\",\"to\":\"bob\",\"ts\":1,"
        "\"e2e\":{\"type\":\"prekey\",\"body\":\"QUJD\"},\"media_ref\":\"blob\"}");
  e.e2e_type = TERN_CIPHER_MESSAGE;
  e.media_ref = (tern_str){0};
  ROUND(&e,
        "{\"type\":\"msg\",\"seq\":5,\"msg_id\":\"m\",\"from\":\"alice\",\"from_device\":\"d\",\"to\":\"bob\",\"ts\":1,"
        "\"e2e\":{\"type\":\"message\",\"body\":\"QUJD\"}}");
  /* Encrypted media: no width or height. */
  tern_envelope m = {.type = TERN_EV_MSG,
                     .seq = 6,
                     .msg_id = S("m"),
                     .from = S("a"),
                     .from_device = S("d"),
                     .to = S("b"),
                     .ts = 1,
                     .media = {.media_id = S("o"),
                               .mime = S("application/octet-stream"),
                               .size = 5,
                               .sha256 = S("aa"),
                               .width = -1,
                               .height = -1}};
  ROUND(&m, "{\"type\":\"msg\",\"seq\":6,\"msg_id\":\"m\",\"from\":\"a\",\"from_device\":\"d\",\"to\":\"b\",\"ts\":1,"
            "\"media\":{\"media_id\":\"o\",\"mime\":\"application/octet-stream\",\"size\":5,\"sha256\":\"aa\"}}");
}

TEST(actions) {
  tern_envelope r = {.type = TERN_EV_MSG,
                     .seq = 1,
                     .msg_id = S("m2"),
                     .from = S("a"),
                     .from_device = S("d"),
                     .to = S("b"),
                     .ts = 2,
                     .reaction_to = S("m1"),
                     .reaction_emoji = S("\xF0\x9F\x91\x8D"),
                     NO_MEDIA};
  ROUND(&r, "{\"type\":\"msg\",\"seq\":1,\"msg_id\":\"m2\",\"from\":\"a\",\"from_device\":\"d\",\"to\":\"b\",\"ts\":2,"
            "\"reaction\":{\"to\":\"m1\",\"emoji\":\"\xF0\x9F\x91\x8D\"}}");
  r.reaction_emoji = S("");
  ROUND(&r, "{\"type\":\"msg\",\"seq\":1,\"msg_id\":\"m2\",\"from\":\"a\",\"from_device\":\"d\",\"to\":\"b\",\"ts\":2,"
            "\"reaction\":{\"to\":\"m1\",\"emoji\":\"\"}}");
  tern_envelope ed = {.type = TERN_EV_MSG,
                      .seq = 1,
                      .msg_id = S("m3"),
                      .from = S("a"),
                      .from_device = S("d"),
                      .to = S("b"),
                      .ts = 2,
                      .body = S("new"),
                      .edit_of = S("m1"),
                      NO_MEDIA};
  ROUND(&ed, "{\"type\":\"msg\",\"seq\":1,\"msg_id\":\"m3\",\"from\":\"a\",\"from_device\":\"d\",\"to\":\"b\",\"ts\":2,"
             "\"body\":\"new\",\"edit\":{\"of\":\"m1\"}}");
  tern_envelope del = {.type = TERN_EV_MSG, .seq = 1, .msg_id = S("m4"), .from = S("a"), .from_device = S("d"),
                       .group_id = S("g"), .ts = 2, .delete_of = S("m1"), NO_MEDIA};
  ROUND(
      &del,
      "{\"type\":\"msg\",\"seq\":1,\"msg_id\":\"m4\",\"from\":\"a\",\"from_device\":\"d\",\"group_id\":\"g\",\"ts\":2,"
      "\"delete\":{\"of\":\"m1\"}}");
}

TEST(group_receipt) {
  tern_str by[] = {S("bob"), S("carol")}, ids[] = {S("m1"), S("m2")};
  tern_envelope e = {.type = TERN_EV_RECEIPT,
                     .seq = 9,
                     .status = TERN_RECEIPT_DELIVERED,
                     .group_id = S("g"),
                     .from = S("alice"),
                     .by_list = {.v = by, .n = 2},
                     .msg_ids = {.v = ids, .n = 2},
                     .ts = 3,
                     NO_MEDIA};
  ROUND(&e, "{\"type\":\"receipt\",\"seq\":9,\"status\":\"delivered\",\"group_id\":\"g\",\"from\":\"alice\","
            "\"by\":[\"bob\",\"carol\"],\"msg_ids\":[\"m1\",\"m2\"],\"ts\":3}");
  e.status = TERN_RECEIPT_READ;
  e.by_list.n = 1;
  ROUND(&e,
        "{\"type\":\"receipt\",\"seq\":9,\"status\":\"read\",\"group_id\":\"g\",\"from\":\"alice\",\"by\":[\"bob\"],"
        "\"msg_ids\":[\"m1\",\"m2\"],\"ts\":3}");
}

TEST(group_events) {
  tern_str users[] = {S("alice"), S("bob")};
  tern_envelope c = {.type = TERN_EV_GROUP, .seq = 1, .group_id = S("g"), .event = TERN_GROUP_CREATED, .by = S("alice"),
                     .ts = 7, .name = S("Trip"), .description = S(""), .users = {.v = users, .n = 2}, NO_MEDIA};
  ROUND(&c, "{\"type\":\"group\",\"seq\":1,\"group_id\":\"g\",\"event\":\"created\",\"by\":\"alice\",\"ts\":7,"
            "\"name\":\"Trip\",\"description\":\"\",\"users\":[\"alice\",\"bob\"]}");
  static const struct {
    tern_group_event event;
    const char *name;
  } with_users[] = {{TERN_GROUP_ADDED, "added"},
                    {TERN_GROUP_REMOVED, "removed"},
                    {TERN_GROUP_LEFT, "left"},
                    {TERN_GROUP_PROMOTED, "promoted"},
                    {TERN_GROUP_DEMOTED, "demoted"}};
  for (size_t i = 0; i < sizeof with_users / sizeof *with_users; i++) {
    tern_envelope e = {.type = TERN_EV_GROUP, .seq = 2, .group_id = S("g"), .event = with_users[i].event,
                       .by = S("alice"), .ts = 8, .users = {.v = users + 1, .n = 1}, NO_MEDIA};
    char want[256];
    snprintf(want, sizeof want,
             "{\"type\":\"group\",\"seq\":2,\"group_id\":\"g\",\"event\":\"%s\",\"by\":\"alice\",\"ts\":8,\"users\":["
             "\"bob\"]}",
             with_users[i].name);
    ROUND(&e, want);
    CHECK_EQ_STR(tern_group_event_name(with_users[i].event), with_users[i].name);
  }
  tern_envelope r = {.type = TERN_EV_GROUP, .seq = 3, .group_id = S("g"), .event = TERN_GROUP_RENAMED, .by = S("bob"),
                     .ts = 9, .name = S("Trip \xE2\x9C\x88"), .description = S("to \"Rome\""), NO_MEDIA};
  ROUND(&r, "{\"type\":\"group\",\"seq\":3,\"group_id\":\"g\",\"event\":\"renamed\",\"by\":\"bob\",\"ts\":9,"
            "\"name\":\"Trip \xE2\x9C\x88\",\"description\":\"to \\\"Rome\\\"\"}");
  CHECK(tern_group_event_name(TERN_GROUP_UNKNOWN) == NULL);
  CHECK(tern_group_event_name((tern_group_event)42) == NULL);
}

TEST(decrypt_error_envelope) {
  tern_envelope e = {.type = TERN_EV_DECRYPT_ERROR, .seq = 5, .from = S("bob"), .from_device = S("d-b"),
                     .msg_id = S("m-1"), .ts = 6, NO_MEDIA};
  ROUND(&e,
        "{\"type\":\"decrypt_error\",\"seq\":5,\"from\":\"bob\",\"from_device\":\"d-b\",\"msg_id\":\"m-1\",\"ts\":6}");
  /* Through tern_event_encode too. */
  tern_event ev = {.type = TERN_EV_DECRYPT_ERROR, .env = e};
  ev.env.type = TERN_EV_UNKNOWN; /* the event's type is the one that counts */
  tern_buf b = {0};
  tern_event_encode(&b, &ev);
  BYTES(&b,
        "{\"type\":\"decrypt_error\",\"seq\":5,\"from\":\"bob\",\"from_device\":\"d-b\",\"msg_id\":\"m-1\",\"ts\":6}");
  tern_buf_free(&b);
}

/* ---- the reader, on envelopes ---- */

static int read_frame(const char *json, tern_event *ev, tern_event_doc *doc) {
  char msg[160];
  return tern_event_decode(json, strlen(json), ev, doc, msg, sizeof msg);
}

TEST(reader_is_lenient_about_absence) {
  tern_event ev;
  tern_event_doc doc;
  CHECK_EQ_INT(read_frame("{\"type\":\"msg\",\"seq\":2,\"body\":\"hi\",\"future\":{\"x\":[1]}}", &ev, &doc), 0);
  CHECK_EQ_INT(ev.type, TERN_EV_MSG);
  CHECK_EQ_INT(ev.env.type, TERN_EV_MSG);
  CHECK_EQ_INT(ev.env.seq, 2);
  CHECK(ev.env.msg_id.p == NULL && ev.env.from.p == NULL);
  CHECK_EQ_INT(ev.env.media.size, -1);
  CHECK_EQ_INT(ev.env.media.width, -1);
  CHECK_EQ_STR(ev.env.body.p, "hi"); /* decoded strings are NUL-terminated */
  tern_event_doc_free(&doc);
  /* An enumerated value this reader does not know reads as 0 (a later version may add one). */
  CHECK_EQ_INT(read_frame("{\"type\":\"group\",\"seq\":1,\"event\":\"archived\",\"group_id\":\"g\"}", &ev, &doc), 0);
  CHECK_EQ_INT(ev.env.event, TERN_GROUP_UNKNOWN);
  tern_event_doc_free(&doc);
  CHECK_EQ_INT(
      read_frame("{\"type\":\"receipt\",\"seq\":1,\"status\":\"seen\",\"by\":\"b\",\"msg_ids\":[]}", &ev, &doc), 0);
  CHECK_EQ_INT(ev.env.status, TERN_RECEIPT_UNKNOWN);
  CHECK(ev.env.msg_ids.v != NULL && ev.env.msg_ids.n == 0); /* an empty list that is there */
  tern_event_doc_free(&doc);
  /* null is absent. */
  CHECK_EQ_INT(read_frame("{\"type\":\"msg\",\"seq\":2,\"body\":null,\"media\":null,\"e2e\":null}", &ev, &doc), 0);
  CHECK(ev.env.body.p == NULL && ev.env.media.media_id.p == NULL && ev.env.e2e_type == TERN_CIPHER_NONE);
  tern_event_doc_free(&doc);
}

TEST(reader_refuses_wrong_types) {
  const char *bad[] = {
      "{\"type\":\"msg\",\"seq\":\"1\"}",
      "{\"type\":\"msg\",\"seq\":-1}",
      "{\"type\":\"msg\",\"seq\":1.5}",
      "{\"type\":\"msg\",\"seq\":9007199254740994}",
      "{\"type\":\"msg\",\"seq\":1,\"ts\":1e300}",
      "{\"type\":\"msg\",\"seq\":1,\"from\":5}",
      "{\"type\":\"msg\",\"seq\":1,\"body\":[\"x\"]}",
      "{\"type\":\"msg\",\"seq\":1,\"media\":\"m\"}",
      "{\"type\":\"msg\",\"seq\":1,\"media\":{\"size\":\"big\"}}",
      "{\"type\":\"msg\",\"seq\":1,\"e2e\":{\"type\":1}}",
      "{\"type\":\"msg\",\"seq\":1,\"reaction\":[]}",
      "{\"type\":\"msg\",\"seq\":1,\"mentions\":\"bob\"}",
      "{\"type\":\"msg\",\"seq\":1,\"mentions\":[\"bob\",2]}",
      "{\"type\":\"receipt\",\"seq\":1,\"by\":5}",
      "{\"type\":\"receipt\",\"seq\":1,\"by\":[\"b\",null]}",
      "{\"type\":\"receipt\",\"seq\":1,\"msg_ids\":{}}",
      "{\"type\":\"group\",\"seq\":1,\"users\":[true]}",
      "{\"type\":\"decrypt_error\",\"seq\":1,\"msg_id\":{}}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    tern_event ev;
    tern_event_doc doc;
    char msg[160];
    int rc = tern_event_decode(bad[i], strlen(bad[i]), &ev, &doc, msg, sizeof msg);
    if (rc != -EBADMSG || !msg[0]) {
      fprintf(stderr, "  FAIL: %s → rc %d\n", bad[i], rc);
      t_failed_checks++;
    }
    /* The type stays known, and so does a seq that could be read (seq comes first). */
    CHECK(ev.type != TERN_EV_UNKNOWN);
    if (strstr(bad[i], "\"seq\":1,")) CHECK_EQ_INT(ev.env.seq, 1);
    CHECK(ev.env.from.p == NULL && ev.env.body.p == NULL);
    tern_event_doc_free(&doc);
  }
}

TEST(same_tells_envelopes_apart) {
  tern_str by[] = {S("bob")};
  tern_envelope a = {.type = TERN_EV_RECEIPT, .seq = 1, .status = TERN_RECEIPT_READ, .from = S("alice"), .by = S("bob"),
                     .ts = 2, NO_MEDIA};
  tern_event x = {.type = TERN_EV_RECEIPT, .env = a}, y = x;
  CHECK(tern_event_same(&x, &y));
  /* An absent required list and an empty one are written alike. */
  y.env.msg_ids = (tern_strs){.v = by, .n = 0};
  CHECK(tern_event_same(&x, &y));
  y.env.msg_ids.n = 1;
  CHECK(!tern_event_same(&x, &y));
  y = x;
  y.env.by = S("bo");
  CHECK(!tern_event_same(&x, &y));
  y = x;
  y.env.by_list = (tern_strs){.v = by, .n = 1};
  CHECK(!tern_event_same(&x, &y));
  y = x;
  y.env.status = TERN_RECEIPT_DELIVERED;
  CHECK(!tern_event_same(&x, &y));
  y = x;
  y.env.body = S("ignored: not a receipt field");
  CHECK(tern_event_same(&x, &y));
  y.type = TERN_EV_MSG;
  CHECK(!tern_event_same(&x, &y));
  /* Every negative size is absent. */
  tern_event m = {.type = TERN_EV_MSG, .env = {.media = {.media_id = S("m"), .size = -1, .width = -7, .height = 3}}},
             n = m;
  n.env.media.size = -2;
  n.env.media.width = -1;
  CHECK(tern_event_same(&m, &n));
  n.env.media.height = 4;
  CHECK(!tern_event_same(&m, &n));
}

/* ---- benchmark (prints, never fails on time) ---- */

TEST(bench) {
  const char *body =
      "Hey, are we still on for lunch tomorrow at noon? I can bring the slides \xE2\x80\x94 let me know!";
  tern_envelope e = {.type = TERN_EV_MSG, .msg_id = S("01HZX3K9Q7V8W2M4N6P0R5T1Y3"), .from = S("alice"),
                     .from_device = S("d-7f3a9c"), .to = S("bob_the.builder"), .ts = 1712345678901,
                     .body = tern_str_c(body), NO_MEDIA};
  tern_buf b = {0};
  int iters = 200000;
  uint64_t t0 = tern_mono_ns();
  for (int i = 0; i < iters; i++) {
    tern_buf_reset(&b);
    e.seq = (uint64_t)i;
    tern_envelope_encode(&b, &e);
  }
  uint64_t t1 = tern_mono_ns();
  fprintf(stderr, "bench tern_envelope_encode msg (%zu bytes): %.0f ns/op\n", b.len, (double)(t1 - t0) / iters);
  tern_event ev;
  tern_event_doc doc;
  char msg[160];
  t0 = tern_mono_ns();
  for (int i = 0; i < iters / 4; i++) {
    if (tern_event_decode(b.data, b.len, &ev, &doc, msg, sizeof msg) != 0) t_failed_checks++;
    tern_event_doc_free(&doc);
  }
  t1 = tern_mono_ns();
  fprintf(stderr, "bench tern_event_decode msg: %.0f ns/op\n", (double)(t1 - t0) / (iters / 4));
  tern_buf_free(&b);
}

int main(void) {
  RUN(v1_msg_bytes);
  RUN(v1_receipt_bytes);
  RUN(views_are_not_nul_terminated);
  RUN(group_msg);
  RUN(e2e_msg);
  RUN(actions);
  RUN(group_receipt);
  RUN(group_events);
  RUN(decrypt_error_envelope);
  RUN(reader_is_lenient_about_absence);
  RUN(reader_refuses_wrong_types);
  RUN(same_tells_envelopes_apart);
  RUN(bench);
  DONE();
}
