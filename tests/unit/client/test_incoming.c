/* Unit tests for src/client/incoming.c: server frames as libtern-client hands them over. proto
 * decodes them (tests/unit/proto covers that); here, that the flat fields of tern_client_event
 * are laid out from the decoded frame for the v1.1 frames too, that a malformed frame of a
 * known type comes as UNKNOWN with the reason and its seq, and that the JSON hooks are
 * proto's. */
#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "client/client_int.h"
#include "t.h"

static void parse(const char *s, tern_client_event *ev) { tern_client_event_parse(s, strlen(s), ev); }

TEST(group_message) {
  tern_client_event ev;
  parse("{\"type\":\"msg\",\"seq\":3,\"msg_id\":\"m\",\"group_id\":\"trip\",\"from\":\"bob\",\"from_device\":\"d\",\"ts\":9,"
        "\"body\":\"hi\",\"mentions\":[\"alice\"],\"reply_to\":\"m0\"}",
        &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_MSG);
  CHECK_EQ_STR(ev.group_id, "trip");
  CHECK(ev.to == NULL);
  CHECK_EQ_STR(ev.body, "hi");
  CHECK_EQ_INT(ev.seq, 3);
  CHECK_EQ_INT(ev.frame.env.mentions.n, 1);
  CHECK_EQ_STR(ev.frame.env.reply_to.p, "m0");
  CHECK(ev.malformed == NULL);
  tern_client_event_clear(&ev);
  parse("{\"type\":\"msg\",\"seq\":4,\"msg_id\":\"m\",\"from\":\"bob\",\"to\":\"alice\",\"ts\":9,"
        "\"e2e\":{\"type\":\"message\",\"body\":\"QQ==\"},\"media_ref\":\"blob\"}",
        &ev);
  CHECK(ev.body == NULL && ev.media_id == NULL);
  CHECK_EQ_INT(ev.frame.env.e2e_type, TERN_CIPHER_MESSAGE);
  CHECK_EQ_STR(ev.frame.env.e2e_body.p, "QQ==");
  tern_client_event_clear(&ev);
}

TEST(group_receipt_event_and_others) {
  tern_client_event ev;
  parse("{\"type\":\"receipt\",\"seq\":5,\"status\":\"read\",\"group_id\":\"g\",\"from\":\"alice\",\"by\":[\"bob\",\"carol\"],"
        "\"msg_ids\":[\"m1\",\"m2\"],\"ts\":1}",
        &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_RECEIPT);
  CHECK(ev.read);
  CHECK(ev.by == NULL); /* a list: in frame.env.by_list */
  CHECK_EQ_INT(ev.frame.env.by_list.n, 2);
  CHECK_EQ_INT(ev.n_msg_ids, 2);
  CHECK_EQ_STR(ev.msg_ids[1], "m2");
  CHECK_EQ_STR(ev.group_id, "g");
  tern_client_event_clear(&ev);
  parse("{\"type\":\"group\",\"seq\":6,\"group_id\":\"g\",\"event\":\"added\",\"by\":\"alice\",\"ts\":2,\"users\":[\"dave\"]}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_GROUP);
  CHECK_EQ_INT(ev.seq, 6);
  CHECK_EQ_STR(ev.by, "alice");
  CHECK_EQ_INT(ev.ts, 2);
  CHECK_EQ_INT(ev.frame.env.event, TERN_GROUP_ADDED);
  tern_client_event_clear(&ev);
  parse("{\"type\":\"decrypt_error\",\"seq\":7,\"from\":\"bob\",\"from_device\":\"d\",\"msg_id\":\"m\",\"ts\":3}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_DECRYPT_ERROR);
  CHECK_EQ_STR(ev.from_device, "d");
  CHECK_EQ_STR(ev.msg_id, "m");
  tern_client_event_clear(&ev);
  parse("{\"type\":\"profile\",\"user\":\"bob\",\"display_name\":\"Bob\",\"avatar\":null}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_PROFILE);
  CHECK_EQ_STR(ev.user, "bob");
  CHECK_EQ_STR(ev.frame.display_name.p, "Bob");
  tern_client_event_clear(&ev);
  parse("{\"type\":\"typing\",\"from\":\"bob\",\"group_id\":\"g\",\"state\":\"composing\"}", &ev);
  CHECK_EQ_STR(ev.group_id, "g");
  CHECK(ev.composing);
  tern_client_event_clear(&ev);
  parse("{\"type\":\"sent\",\"id\":\"c\",\"msg_id\":\"m\",\"ts\":1,\"recipients\":3,\"skipped\":[\"dave\"]}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_SENT);
  CHECK(ev.frame.has_recipients && ev.frame.recipients == 3);
  tern_client_event_clear(&ev);
}

TEST(malformed) {
  tern_client_event ev;
  /* "bob\u0000x" must never reach the application as "bob". */
  parse("{\"type\":\"msg\",\"seq\":8,\"msg_id\":\"m\",\"from\":\"bob\\u0000x\",\"to\":\"alice\",\"ts\":1,\"body\":\"x\"}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_UNKNOWN);
  CHECK(ev.malformed != NULL && strstr(ev.malformed, "from") != NULL);
  CHECK(ev.from == NULL);
  CHECK_EQ_INT(ev.seq, 8);
  CHECK(ev.json != NULL);
  tern_client_event_clear(&ev);
  /* A malformed escape, which the JSON library would read as U+0000: not JSON at all. */
  parse("{\"type\":\"msg\",\"seq\":8,\"from\":\"bob\\u00G0x\"}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_UNKNOWN);
  CHECK(ev.json == NULL && ev.malformed == NULL);
  tern_client_event_clear(&ev);
  /* An unknown type is not malformed. */
  parse("{\"type\":\"future\"}", &ev);
  CHECK_EQ_INT(ev.type, TERN_CLIENT_EV_UNKNOWN);
  CHECK(ev.malformed == NULL && ev.json != NULL);
  tern_client_event_clear(&ev);
}

TEST(json_hooks_are_protos) {
  /* tern_client_json_hooks is tern_proto_init: cJSON allocates with tern_malloc. */
  tern_client_json_hooks();
  tern_client_json_hooks();
  cJSON *o = cJSON_CreateString("x");
  char *s = cJSON_PrintUnformatted(o);
  CHECK_EQ_STR(s, "\"x\"");
  tern_free(s);
  cJSON_Delete(o);
}

int main(void) {
  RUN(group_message);
  RUN(group_receipt_event_and_others);
  RUN(malformed);
  RUN(json_hooks_are_protos);
  DONE();
}
