/* Unit tests for src/proto/event.c: the live server frames (ready, synced, pong, sent, error,
 * presence, typing, profile) written byte for byte as v1 wrote them and with v1.1's fields,
 * read back by the client's reader (server encoder → client decoder), and the reader's
 * refusals: not an object, no type, wrong JSON types, "\u0000", invalid UTF-8 and broken
 * escapes in every string field of every server frame, envelopes included. */
#include <errno.h>

#include "base/buf.h"
#include "proto/event.h"
#include "proto_t.h"

static bool eq(tern_str s, const char *want) {
  return want ? (s.p && s.n == strlen(want) && memcmp(s.p, want, s.n) == 0) : !s.p;
}
#define CHECK_STRV(s, want) CHECK(eq((s), (want)))

/* Writes ev, checks the bytes, and reads them into *back (with *doc to free). */
static bool write_read(const tern_event *ev, const char *want, tern_event *back, tern_event_doc *doc, int line) {
  tern_buf b = {0};
  tern_event_encode(&b, ev);
  expect_bytes(&b, want, line);
  char msg[160];
  int rc = tern_event_decode(b.data, b.len, back, doc, msg, sizeof msg);
  if (rc != 0 || back->type != ev->type) {
    fprintf(stderr, "  FAIL line %d: read back rc %d (%s), type %d\n", line, rc, msg, back->type);
    t_failed_checks++;
  }
  /* The reader's strings point into doc, so the buffer may go. */
  tern_buf_free(&b);
  return rc == 0;
}
#define WRITE_READ(ev, want, back, doc) write_read((ev), (want), (back), (doc), __LINE__)

/* ---- v1 frames: bytes and round trips ---- */

TEST(v1_bytes) {
  tern_buf b = {0};
  tern_enc_ready(&b, "alice", "d-1", 1700000000123);
  BYTES(&b, "{\"type\":\"ready\",\"user\":\"alice\",\"device_id\":\"d-1\",\"server_time\":1700000000123}");
  tern_buf_reset(&b);
  tern_enc_synced(&b, 18446744073709551615ull);
  BYTES(&b, "{\"type\":\"synced\",\"seq\":18446744073709551615}");
  tern_buf_reset(&b);
  tern_enc_pong(&b, -5);
  BYTES(&b, "{\"type\":\"pong\",\"server_time\":-5}");
  tern_buf_reset(&b);
  tern_enc_sent(&b, "a\"b", "m", 1);
  BYTES(&b, "{\"type\":\"sent\",\"id\":\"a\\\"b\",\"msg_id\":\"m\",\"ts\":1}");
  tern_buf_reset(&b);
  tern_enc_error(&b, NULL, "no_such_user", NULL, "zed");
  BYTES(&b, "{\"type\":\"error\",\"code\":\"no_such_user\",\"user\":\"zed\"}");
  tern_buf_reset(&b);
  tern_enc_error(&b, "c-1", "bad_request", "nope", NULL);
  BYTES(&b, "{\"type\":\"error\",\"id\":\"c-1\",\"code\":\"bad_request\",\"message\":\"nope\"}");
  tern_buf_reset(&b);
  tern_enc_presence(&b, "bob", true, 5);
  BYTES(&b, "{\"type\":\"presence\",\"user\":\"bob\",\"online\":true}");
  tern_buf_reset(&b);
  tern_enc_presence(&b, "bob", false, -1);
  BYTES(&b, "{\"type\":\"presence\",\"user\":\"bob\",\"online\":false,\"last_seen\":null}");
  tern_buf_reset(&b);
  tern_enc_presence(&b, "bob", false, 0);
  BYTES(&b, "{\"type\":\"presence\",\"user\":\"bob\",\"online\":false,\"last_seen\":0}");
  tern_buf_reset(&b);
  tern_enc_typing(&b, "alice", false);
  BYTES(&b, "{\"type\":\"typing\",\"from\":\"alice\",\"state\":\"paused\"}");
  tern_buf_reset(&b);
  /* Not a server frame type: nothing. */
  tern_event none = {.type = TERN_EV_UNKNOWN};
  tern_event_encode(&b, &none);
  CHECK_EQ_INT(b.len, 0);
  tern_buf_free(&b);
}

TEST(v1_round_trips) {
  tern_event back;
  tern_event_doc doc;
  tern_event ready = {.type = TERN_EV_READY, .user = S("alice"), .device_id = S("d-1"), .server_time = 1700000000123};
  if (WRITE_READ(&ready, "{\"type\":\"ready\",\"user\":\"alice\",\"device_id\":\"d-1\",\"server_time\":1700000000123}",
                 &back, &doc)) {
    CHECK_STRV(back.user, "alice");
    CHECK_STRV(back.device_id, "d-1");
    CHECK(back.server_time == 1700000000123);
    CHECK_STRV(back.type_name, "ready");
  }
  tern_event_doc_free(&doc);
  tern_event synced = {.type = TERN_EV_SYNCED, .seq = 9007199254740992ull};
  if (WRITE_READ(&synced, "{\"type\":\"synced\",\"seq\":9007199254740992}", &back, &doc))
    CHECK(back.seq == 9007199254740992ull);
  tern_event_doc_free(&doc);
  tern_event off = {.type = TERN_EV_PRESENCE, .user = S("bob"), .online = false, .last_seen = 77};
  if (WRITE_READ(&off, "{\"type\":\"presence\",\"user\":\"bob\",\"online\":false,\"last_seen\":77}", &back, &doc)) {
    CHECK(!back.online);
    CHECK_EQ_INT(back.last_seen, 77);
  }
  tern_event_doc_free(&doc);
  tern_event never = {.type = TERN_EV_PRESENCE, .user = S("bob"), .last_seen = -1};
  if (WRITE_READ(&never, "{\"type\":\"presence\",\"user\":\"bob\",\"online\":false,\"last_seen\":null}", &back, &doc))
    CHECK_EQ_INT(back.last_seen, -1);
  tern_event_doc_free(&doc);
  tern_event on = {.type = TERN_EV_PRESENCE, .user = S("bob"), .online = true, .last_seen = 3};
  if (WRITE_READ(&on, "{\"type\":\"presence\",\"user\":\"bob\",\"online\":true}", &back, &doc)) {
    CHECK(back.online);
    CHECK_EQ_INT(back.last_seen, -1);
  }
  tern_event_doc_free(&doc);
  tern_event pong = {.type = TERN_EV_PONG, .server_time = 12};
  if (WRITE_READ(&pong, "{\"type\":\"pong\",\"server_time\":12}", &back, &doc)) CHECK_EQ_INT(back.server_time, 12);
  tern_event_doc_free(&doc);
}

/* ---- v1.1 fields ---- */

TEST(sent_with_recipients) {
  tern_event back;
  tern_event_doc doc;
  tern_str skipped[] = {S("dave"), S("erin")};
  tern_event ev = {.type = TERN_EV_SENT, .id = S("c-1"), .msg_id = S("m-1"), .ts = 5, .has_recipients = true,
                   .recipients = 3, .skipped = {.v = skipped, .n = 2}};
  if (WRITE_READ(&ev,
                 "{\"type\":\"sent\",\"id\":\"c-1\",\"msg_id\":\"m-1\",\"ts\":5,\"recipients\":3,\"skipped\":[\"dave\","
                 "\"erin\"]}",
                 &back, &doc)) {
    CHECK(back.has_recipients);
    CHECK_EQ_INT(back.recipients, 3);
    CHECK_EQ_INT(back.skipped.n, 2);
    CHECK_STRV(tern_strs_at(&back.skipped, 1), "erin");
  }
  tern_event_doc_free(&doc);
  /* recipients 0 is written (nobody else reached); a 1:1 sent has none. */
  ev = (tern_event){.type = TERN_EV_SENT, .id = S("c-1"), .msg_id = S("m-1"), .ts = 5, .has_recipients = true};
  if (WRITE_READ(&ev, "{\"type\":\"sent\",\"id\":\"c-1\",\"msg_id\":\"m-1\",\"ts\":5,\"recipients\":0}", &back, &doc)) {
    CHECK(back.has_recipients && back.recipients == 0 && !back.skipped.v);
  }
  tern_event_doc_free(&doc);
  ev.has_recipients = false;
  if (WRITE_READ(&ev, "{\"type\":\"sent\",\"id\":\"c-1\",\"msg_id\":\"m-1\",\"ts\":5}", &back, &doc))
    CHECK(!back.has_recipients);
  tern_event_doc_free(&doc);
}

TEST(error_with_devices) {
  tern_event back;
  tern_event_doc doc;
  tern_device_ref missing[] = {{S("bob"), S("d-2")}}, extra[] = {{S("bob"), S("d-0")}, {S("alice"), S("d-9")}};
  tern_event ev = {.type = TERN_EV_ERROR, .id = S("c-1"), .code = S("devices_changed"), .message = S("keys changed"),
                   .missing = missing, .n_missing = 1, .extra = extra, .n_extra = 2};
  if (WRITE_READ(
          &ev,
          "{\"type\":\"error\",\"id\":\"c-1\",\"code\":\"devices_changed\",\"message\":\"keys changed\","
          "\"missing\":[{\"user\":\"bob\",\"device_id\":\"d-2\"}],\"extra\":[{\"user\":\"bob\",\"device_id\":\"d-0\"},"
          "{\"user\":\"alice\",\"device_id\":\"d-9\"}]}",
          &back, &doc)) {
    CHECK_EQ_INT(back.n_missing, 1);
    CHECK_EQ_INT(back.n_extra, 2);
    CHECK_STRV(back.missing[0].device_id, "d-2");
    CHECK_STRV(back.extra[1].user, "alice");
    CHECK_STRV(back.code, "devices_changed");
  }
  tern_event_doc_free(&doc);
  /* An empty list that is there stays there. */
  ev = (tern_event){.type = TERN_EV_ERROR, .code = S("devices_changed"), .missing = missing, .n_missing = 0};
  if (WRITE_READ(&ev, "{\"type\":\"error\",\"code\":\"devices_changed\",\"missing\":[]}", &back, &doc))
    CHECK(back.missing != NULL && back.n_missing == 0 && back.extra == NULL);
  tern_event_doc_free(&doc);
  ev = (tern_event){.type = TERN_EV_ERROR, .code = S("no_such_group"), .user = S("zed")};
  if (WRITE_READ(&ev, "{\"type\":\"error\",\"code\":\"no_such_group\",\"user\":\"zed\"}", &back, &doc))
    CHECK_STRV(back.user, "zed");
  tern_event_doc_free(&doc);
}

TEST(typing_and_profile) {
  tern_event back;
  tern_event_doc doc;
  tern_event ty = {.type = TERN_EV_TYPING, .from = S("alice"), .group_id = S("g"), .state = TERN_TYPING_COMPOSING};
  if (WRITE_READ(&ty, "{\"type\":\"typing\",\"from\":\"alice\",\"group_id\":\"g\",\"state\":\"composing\"}", &back,
                 &doc)) {
    CHECK_STRV(back.group_id, "g");
    CHECK_EQ_INT(back.state, TERN_TYPING_COMPOSING);
  }
  tern_event_doc_free(&doc);
  tern_event pr = {.type = TERN_EV_PROFILE, .user = S("alice"), .display_name = S("Alice A."), .avatar = S("av1")};
  if (WRITE_READ(&pr, "{\"type\":\"profile\",\"user\":\"alice\",\"display_name\":\"Alice A.\",\"avatar\":\"av1\"}",
                 &back, &doc)) {
    CHECK_STRV(back.display_name, "Alice A.");
    CHECK_STRV(back.avatar, "av1");
  }
  tern_event_doc_free(&doc);
  /* No avatar (and no display name) are null on the wire, absent when read. */
  pr = (tern_event){.type = TERN_EV_PROFILE, .user = S("alice"), .display_name = S("")};
  if (WRITE_READ(&pr, "{\"type\":\"profile\",\"user\":\"alice\",\"display_name\":\"\",\"avatar\":null}", &back, &doc)) {
    CHECK_STRV(back.display_name, "");
    CHECK(back.avatar.p == NULL);
  }
  tern_event_doc_free(&doc);
  pr.display_name = (tern_str){0};
  if (WRITE_READ(&pr, "{\"type\":\"profile\",\"user\":\"alice\",\"display_name\":null,\"avatar\":null}", &back, &doc))
    CHECK(back.display_name.p == NULL);
  tern_event_doc_free(&doc);
}

/* ---- the reader's refusals ---- */

static int read_str(const char *json, tern_event *ev, tern_event_doc *doc, char *msg) {
  return tern_event_decode(json, strlen(json), ev, doc, msg, 160);
}

TEST(reader_framing) {
  tern_event ev;
  tern_event_doc doc;
  char msg[160];
  const char *not_frames[] = {"", "not json", "[1,2]", "\"msg\"", "{\"type\":\"msg\"", "{\"type\":\"pong\"}x",
                              "\xEF\xBB\xBF{\"type\":\"pong\"}", "{}", "{\"type\":5}", "{\"type\":null}"};
  for (size_t i = 0; i < sizeof not_frames / sizeof *not_frames; i++) {
    CHECK_EQ_INT(read_str(not_frames[i], &ev, &doc, msg), -EBADMSG);
    CHECK(msg[0] != '\0');
    CHECK_EQ_INT(ev.type, TERN_EV_UNKNOWN);
    tern_event_doc_free(&doc);
  }
  /* A JSON object keeps its tree even when refused, so a client can still look at it. */
  CHECK_EQ_INT(read_str("{\"type\":\"pong\",\"server_time\":\"x\"}", &ev, &doc, msg), -EBADMSG);
  CHECK(doc.root != NULL);
  CHECK_EQ_INT(ev.type, TERN_EV_PONG);
  tern_event_doc_free(&doc);
  /* A raw NUL byte, and input that is not NUL-terminated. */
  const char nul[] = "{\"type\":\"pong\",\"server_time\":1}\0";
  CHECK_EQ_INT(tern_event_decode(nul, sizeof nul - 1, &ev, &doc, msg, sizeof msg), -EBADMSG);
  tern_event_doc_free(&doc);
  CHECK_EQ_INT(tern_event_decode(nul, sizeof nul - 2, &ev, &doc, msg, sizeof msg), 0);
  CHECK_EQ_INT(ev.server_time, 1);
  tern_event_doc_free(&doc);
  /* An unknown type is no error: UNKNOWN, with its name. */
  CHECK_EQ_INT(read_str("{\"type\":\"future\",\"x\":1}", &ev, &doc, msg), 0);
  CHECK_EQ_INT(ev.type, TERN_EV_UNKNOWN);
  CHECK_STRV(ev.type_name, "future");
  tern_event_doc_free(&doc);
  /* Duplicate keys: the first counts. */
  CHECK_EQ_INT(read_str("{\"type\":\"pong\",\"server_time\":1,\"server_time\":\"x\"}", &ev, &doc, msg), 0);
  CHECK_EQ_INT(ev.server_time, 1);
  tern_event_doc_free(&doc);
  /* A zeroed doc frees as empty. */
  tern_event_doc zero = {0};
  tern_event_doc_free(&zero);
}

/* One string field of a server frame written as %s; valid with good. */
static const struct {
  const char *fmt;
  const char *good;
} fields[] = {
    {"{\"type\":\"ready\",\"user\":\"%s\",\"device_id\":\"d\",\"server_time\":1}", "alice"},
    {"{\"type\":\"ready\",\"user\":\"a\",\"device_id\":\"%s\",\"server_time\":1}", "d"},
    {"{\"type\":\"sent\",\"id\":\"%s\",\"msg_id\":\"m\",\"ts\":1}", "c"},
    {"{\"type\":\"sent\",\"id\":\"c\",\"msg_id\":\"%s\",\"ts\":1}", "m"},
    {"{\"type\":\"sent\",\"id\":\"c\",\"msg_id\":\"m\",\"ts\":1,\"recipients\":1,\"skipped\":[\"%s\"]}", "dave"},
    {"{\"type\":\"error\",\"id\":\"%s\",\"code\":\"x\"}", "c"},
    {"{\"type\":\"error\",\"code\":\"%s\"}", "bad_request"},
    {"{\"type\":\"error\",\"code\":\"x\",\"message\":\"%s\"}", "why"},
    {"{\"type\":\"error\",\"code\":\"x\",\"user\":\"%s\"}", "zed"},
    {"{\"type\":\"error\",\"code\":\"x\",\"missing\":[{\"user\":\"%s\",\"device_id\":\"d\"}]}", "bob"},
    {"{\"type\":\"error\",\"code\":\"x\",\"extra\":[{\"user\":\"bob\",\"device_id\":\"%s\"}]}", "d"},
    {"{\"type\":\"presence\",\"user\":\"%s\",\"online\":true}", "bob"},
    {"{\"type\":\"typing\",\"from\":\"%s\",\"state\":\"paused\"}", "alice"},
    {"{\"type\":\"typing\",\"from\":\"a\",\"group_id\":\"%s\",\"state\":\"paused\"}", "g"},
    {"{\"type\":\"typing\",\"from\":\"a\",\"state\":\"%s\"}", "paused"},
    {"{\"type\":\"profile\",\"user\":\"%s\",\"display_name\":\"A\",\"avatar\":null}", "alice"},
    {"{\"type\":\"profile\",\"user\":\"a\",\"display_name\":\"%s\",\"avatar\":null}", "Alice"},
    {"{\"type\":\"profile\",\"user\":\"a\",\"display_name\":\"A\",\"avatar\":\"%s\"}", "av"},
    {"{\"type\":\"msg\",\"seq\":1,\"msg_id\":\"%s\"}", "m"},
    {"{\"type\":\"msg\",\"seq\":1,\"from\":\"%s\"}", "alice"},
    {"{\"type\":\"msg\",\"seq\":1,\"from_device\":\"%s\"}", "d"},
    {"{\"type\":\"msg\",\"seq\":1,\"to\":\"%s\"}", "bob"},
    {"{\"type\":\"msg\",\"seq\":1,\"group_id\":\"%s\"}", "g"},
    {"{\"type\":\"msg\",\"seq\":1,\"body\":\"%s\"}", "hello"},
    {"{\"type\":\"msg\",\"seq\":1,\"media\":{\"media_id\":\"%s\"}}", "m"},
    {"{\"type\":\"msg\",\"seq\":1,\"media\":{\"media_id\":\"m\",\"mime\":\"%s\"}}", "image/png"},
    {"{\"type\":\"msg\",\"seq\":1,\"media\":{\"media_id\":\"m\",\"sha256\":\"%s\"}}", "ab"},
    {"{\"type\":\"msg\",\"seq\":1,\"e2e\":{\"type\":\"%s\",\"body\":\"QQ==\"}}", "message"},
    {"{\"type\":\"msg\",\"seq\":1,\"e2e\":{\"type\":\"message\",\"body\":\"%s\"}}", "QQ=="},
    {"{\"type\":\"msg\",\"seq\":1,\"media_ref\":\"%s\"}", "m"},
    {"{\"type\":\"msg\",\"seq\":1,\"reply_to\":\"%s\"}", "m"},
    {"{\"type\":\"msg\",\"seq\":1,\"reaction\":{\"to\":\"%s\",\"emoji\":\"y\"}}", "m"},
    {"{\"type\":\"msg\",\"seq\":1,\"reaction\":{\"to\":\"m\",\"emoji\":\"%s\"}}", "y"},
    {"{\"type\":\"msg\",\"seq\":1,\"edit\":{\"of\":\"%s\"}}", "m"},
    {"{\"type\":\"msg\",\"seq\":1,\"delete\":{\"of\":\"%s\"}}", "m"},
    {"{\"type\":\"msg\",\"seq\":1,\"mentions\":[\"%s\"]}", "bob"},
    {"{\"type\":\"receipt\",\"seq\":1,\"status\":\"%s\"}", "read"},
    {"{\"type\":\"receipt\",\"seq\":1,\"from\":\"%s\"}", "alice"},
    {"{\"type\":\"receipt\",\"seq\":1,\"by\":\"%s\"}", "bob"},
    {"{\"type\":\"receipt\",\"seq\":1,\"by\":[\"%s\"]}", "bob"},
    {"{\"type\":\"receipt\",\"seq\":1,\"group_id\":\"%s\"}", "g"},
    {"{\"type\":\"receipt\",\"seq\":1,\"msg_ids\":[\"m\",\"%s\"]}", "n"},
    {"{\"type\":\"group\",\"seq\":1,\"group_id\":\"%s\"}", "g"},
    {"{\"type\":\"group\",\"seq\":1,\"event\":\"%s\"}", "created"},
    {"{\"type\":\"group\",\"seq\":1,\"by\":\"%s\"}", "alice"},
    {"{\"type\":\"group\",\"seq\":1,\"name\":\"%s\"}", "Trip"},
    {"{\"type\":\"group\",\"seq\":1,\"description\":\"%s\"}", "d"},
    {"{\"type\":\"group\",\"seq\":1,\"users\":[\"%s\"]}", "bob"},
    {"{\"type\":\"decrypt_error\",\"seq\":1,\"from\":\"%s\"}", "bob"},
    {"{\"type\":\"decrypt_error\",\"seq\":1,\"from_device\":\"%s\"}", "d"},
    {"{\"type\":\"decrypt_error\",\"seq\":1,\"msg_id\":\"%s\"}", "m"},
};

TEST(reader_nul_utf8_escapes_every_field) {
  char json[512], value[64], msg[160];
  const char *forms[] = {"%s\\u0000", "\\u0000%s", "%.1s\\u0000%s", "%s\\ud800", "%s\\u12G4", "%s\\u00", "%s\xC3\x28",
                         "%s\xED\xA0\x80"};
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    tern_event ev;
    tern_event_doc doc;
    snprintf(json, sizeof json, fields[i].fmt, fields[i].good);
    if (read_str(json, &ev, &doc, msg) != 0 || ev.type == TERN_EV_UNKNOWN) {
      fprintf(stderr, "  FAIL: %s refused: %s\n", json, msg);
      t_failed_checks++;
    }
    tern_event_doc_free(&doc);
    for (size_t k = 0; k < sizeof forms / sizeof *forms; k++) {
      snprintf(value, sizeof value, forms[k], fields[i].good, fields[i].good + 1);
      snprintf(json, sizeof json, fields[i].fmt, value);
      int rc = read_str(json, &ev, &doc, msg);
      if (rc != -EBADMSG) {
        fprintf(stderr, "  FAIL: %s → rc %d\n", json, rc);
        t_failed_checks++;
      }
      /* An envelope that parsed keeps its seq, for the ack. */
      if (strstr(fields[i].fmt, "\"seq\":1") && doc.root) CHECK_EQ_INT(ev.env.seq, 1);
      tern_event_doc_free(&doc);
    }
  }
}

int main(void) {
  RUN(v1_bytes);
  RUN(v1_round_trips);
  RUN(sent_with_recipients);
  RUN(error_with_devices);
  RUN(typing_and_profile);
  RUN(reader_framing);
  RUN(reader_nul_utf8_escapes_every_field);
  DONE();
}
