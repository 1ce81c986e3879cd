/* test_groups: libtern-client's readers of the group API's answers (PROTOCOL.md 10), from
 * canned HTTP bytes: the group object, list pages, a leave's 204, the refusals with the user
 * they name, and what the readers refuse. The requests themselves and the list that follows
 * "next" run against the scripted server in test_client.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client/client_int.h"
#include "t.h"

/* The response a client would hand its callback for these bytes (fed in two pieces, as a
 * socket might deliver them). */
static void canned(const char *status_line, const char *body, tern_client_response *r) {
  char resp[4096];
  int n = snprintf(resp, sizeof resp, "%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                   status_line, strlen(body), body);
  tern_client_http_parser hp;
  tern_client_hp_init(&hp, 1 << 20);
  size_t half = (size_t)n / 2;
  CHECK_EQ_INT(tern_client_hp_feed(&hp, resp, half), half);
  CHECK_EQ_INT(tern_client_hp_feed(&hp, resp + half, (size_t)n - half), (size_t)n - half);
  CHECK(hp.done);
  tern_client_response_from_parser(r, &hp);
  tern_client_hp_free(&hp);
}

static const char GROUP[] =
    "{\"group_id\":\"Zx3_k-9AbCdEfGhIjKlMnO\",\"name\":\"Trip \\u2708\",\"description\":\"to the sea\","
    "\"created_by\":\"alice\",\"created_at\":1795468495000,\"members\":["
    "{\"user\":\"alice\",\"role\":\"admin\",\"since\":1795468495000},"
    "{\"user\":\"carol\",\"role\":\"member\",\"since\":1795468495000},"
    "{\"user\":\"bob\",\"role\":\"member\",\"since\":1795468500123}]}";

TEST(group_object) {
  tern_client_response r;
  canned("HTTP/1.1 201 Created", GROUP, &r);
  CHECK(r.ok);
  tern_client_group g;
  CHECK_EQ_INT(tern_client_parse_group(&r, &g), 0);
  CHECK_EQ_STR(g.group_id, "Zx3_k-9AbCdEfGhIjKlMnO");
  CHECK_EQ_STR(g.name, "Trip ✈");
  CHECK_EQ_STR(g.description, "to the sea");
  CHECK_EQ_STR(g.created_by, "alice");
  CHECK_EQ_INT(g.created_at, 1795468495000);
  CHECK_EQ_INT(g.nmembers, 3);
  if (g.nmembers == 3) {
    CHECK_EQ_STR(g.members[0].user, "alice");
    CHECK(g.members[0].admin);
    CHECK_EQ_STR(g.members[1].user, "carol");
    CHECK(!g.members[1].admin);
    CHECK_EQ_STR(g.members[2].user, "bob");
    CHECK_EQ_INT(g.members[2].since, 1795468500123);
  }
  CHECK(tern_client_group_find(&g, "bob") == &g.members[2]);
  CHECK(tern_client_group_find(&g, "dave") == NULL);
  tern_client_group_free(&g);
  CHECK(g.name == NULL && g.members == NULL);
  tern_client_response_free(&r);

  /* The fields a later server might leave out read as empty; an unknown role as a member. */
  canned("HTTP/1.1 200 OK",
         "{\"group_id\":\"g1\",\"name\":\"x\",\"members\":[{\"user\":\"bob\",\"role\":\"owner\"}],\"extra\":[1]}", &r);
  CHECK_EQ_INT(tern_client_parse_group(&r, &g), 0);
  CHECK_EQ_STR(g.description, "");
  CHECK_EQ_STR(g.created_by, "");
  CHECK_EQ_INT(g.created_at, 0);
  CHECK_EQ_INT(g.nmembers, 1);
  CHECK(!g.members[0].admin);
  CHECK_EQ_INT(g.members[0].since, 0);
  tern_client_group_free(&g);
  tern_client_response_free(&r);
}

TEST(group_object_refused) {
  /* What is there must be right: each of these is no group object. */
  static const char *bad[] = {
      "[]",
      "{\"name\":\"x\",\"members\":[]}",                                    /* no group_id */
      "{\"group_id\":\"has space\",\"name\":\"x\",\"members\":[]}",         /* not a group id */
      "{\"group_id\":\"" /* 65 chars */
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"name\":\"x\",\"members\":[]}",
      "{\"group_id\":\"g\",\"members\":[]}",                                /* no name */
      "{\"group_id\":\"g\",\"name\":5,\"members\":[]}",
      "{\"group_id\":\"g\",\"name\":\"x\"}",                                /* no members */
      "{\"group_id\":\"g\",\"name\":\"x\",\"members\":{}}",
      "{\"group_id\":\"g\",\"name\":\"x\",\"members\":[\"bob\"]}",
      "{\"group_id\":\"g\",\"name\":\"x\",\"members\":[{\"role\":\"admin\"}]}",
      "{\"group_id\":\"g\",\"name\":\"x\",\"members\":[{\"user\":\"bob\",\"role\":1}]}",
      "{\"group_id\":\"g\",\"name\":\"x\",\"members\":[{\"user\":\"bob\",\"since\":1.5}]}",
      "{\"group_id\":\"g\",\"name\":\"x\",\"members\":[{\"user\":\"bob\",\"since\":-1}]}",
      "{\"group_id\":\"g\",\"name\":\"x\",\"members\":[{\"user\":\"a_name_far_longer_than_thirty_two_chars\"}]}",
      "{\"group_id\":\"g\",\"name\":\"x\",\"created_at\":\"now\",\"members\":[]}",
      "{\"group_id\":\"g\",\"name\":\"x\",\"description\":false,\"members\":[]}",
      "not json",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    tern_client_response r;
    canned("HTTP/1.1 200 OK", bad[i], &r);
    tern_client_group g;
    int rc = tern_client_parse_group(&r, &g);
    if (rc != -EBADMSG) fprintf(stderr, "  accepted: %s\n", bad[i]);
    CHECK_EQ_INT(rc, -EBADMSG);
    CHECK(g.name == NULL && g.members == NULL && g.nmembers == 0);
    tern_client_group_free(&g);
    tern_client_response_free(&r);
  }
  /* A leave answers 204 without a body: no group, and it says so. */
  tern_client_http_parser hp;
  tern_client_hp_init(&hp, 4096);
  const char nc[] = "HTTP/1.1 204 No Content\r\n\r\n";
  CHECK_EQ_INT(tern_client_hp_feed(&hp, nc, strlen(nc)), strlen(nc));
  tern_client_response r;
  tern_client_response_from_parser(&r, &hp);
  tern_client_hp_free(&hp);
  CHECK(r.ok);
  tern_client_group g;
  CHECK_EQ_INT(tern_client_parse_group(&r, &g), -ENODATA);
  tern_client_response_free(&r);
}

TEST(group_list_pages) {
  tern_client_response r;
  canned("HTTP/1.1 200 OK",
         "{\"groups\":[{\"group_id\":\"A1\",\"name\":\"Trip\",\"role\":\"admin\",\"members\":3},"
         "{\"group_id\":\"B2\",\"name\":\"Book club\",\"role\":\"member\",\"members\":12}],\"next\":\"B2\"}",
         &r);
  tern_client_group_list l;
  CHECK_EQ_INT(tern_client_parse_group_list(&r, &l), 0);
  CHECK_EQ_INT(l.n, 2);
  CHECK_EQ_STR(l.next, "B2");
  if (l.n == 2) {
    CHECK_EQ_STR(l.groups[0].group_id, "A1");
    CHECK_EQ_STR(l.groups[0].name, "Trip");
    CHECK(l.groups[0].admin);
    CHECK_EQ_INT(l.groups[0].members, 3);
    CHECK_EQ_STR(l.groups[1].name, "Book club");
    CHECK(!l.groups[1].admin);
    CHECK_EQ_INT(l.groups[1].members, 12);
  }
  tern_client_group_list_free(&l);
  tern_client_response_free(&r);

  /* The last page: next null (or absent); an empty list is a list. */
  canned("HTTP/1.1 200 OK", "{\"groups\":[],\"next\":null}", &r);
  CHECK_EQ_INT(tern_client_parse_group_list(&r, &l), 0);
  CHECK_EQ_INT(l.n, 0);
  CHECK_EQ_STR(l.next, "");
  tern_client_group_list_free(&l);
  tern_client_response_free(&r);

  static const char *bad[] = {
      "{}",
      "{\"groups\":{}}",
      "{\"groups\":[],\"next\":5}",
      "{\"groups\":[],\"next\":\"not an id\"}",
      "{\"groups\":[],\"next\":\"\"}",
      "{\"groups\":[{\"name\":\"x\"}]}",
      "{\"groups\":[{\"group_id\":\"g\"}]}",
      "{\"groups\":[{\"group_id\":\"g\",\"name\":\"x\",\"members\":\"3\"}]}",
      "{\"groups\":[{\"group_id\":\"g\",\"name\":\"ok\"},{\"group_id\":\"h\",\"name\":\"x\",\"role\":[]}]}",
      "{\"groups\":[7]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    canned("HTTP/1.1 200 OK", bad[i], &r);
    int rc = tern_client_parse_group_list(&r, &l);
    if (rc != -EBADMSG) fprintf(stderr, "  accepted: %s\n", bad[i]);
    CHECK_EQ_INT(rc, -EBADMSG);
    CHECK(l.groups == NULL && l.n == 0);
    tern_client_response_free(&r);
  }
}

TEST(group_refusals) {
  /* The error object's "user" comes back beside the code and the message. */
  tern_client_response r;
  canned("HTTP/1.1 404 Not Found",
         "{\"error\":{\"code\":\"no_such_user\",\"message\":\"there is no user by that name\",\"user\":\"zed\"}}", &r);
  CHECK(!r.ok);
  CHECK_EQ_INT(r.status, 404);
  CHECK_EQ_STR(r.code, "no_such_user");
  CHECK_EQ_STR(r.message, "there is no user by that name");
  CHECK_EQ_STR(r.user, "zed");
  tern_client_group g;
  CHECK_EQ_INT(tern_client_parse_group(&r, &g), -EBADMSG);
  tern_client_group_list l;
  CHECK_EQ_INT(tern_client_parse_group_list(&r, &l), -EBADMSG);
  tern_client_response_free(&r);

  canned("HTTP/1.1 403 Forbidden",
         "{\"error\":{\"code\":\"forbidden\",\"message\":\"that user is in groups.max_per_user groups already\","
         "\"user\":\"bob\"}}",
         &r);
  CHECK_EQ_STR(r.code, "forbidden");
  CHECK_EQ_STR(r.user, "bob");
  tern_client_response_free(&r);

  canned("HTTP/1.1 403 Forbidden", "{\"error\":{\"code\":\"forbidden\",\"message\":\"only an admin may add members\"}}",
         &r);
  CHECK_EQ_STR(r.code, "forbidden");
  CHECK_EQ_STR(r.message, "only an admin may add members");
  CHECK_EQ_STR(r.user, "");
  tern_client_response_free(&r);

  /* A "user" that is not a string is no user. */
  canned("HTTP/1.1 404 Not Found", "{\"error\":{\"code\":\"not_found\",\"message\":\"no such group\",\"user\":7}}", &r);
  CHECK_EQ_STR(r.code, "not_found");
  CHECK_EQ_STR(r.user, "");
  tern_client_response_free(&r);
}

TEST(group_ids) {
  CHECK(tern_client_group_id_valid("Zx3_k-9AbCdEfGhIjKlMnO"));
  CHECK(tern_client_group_id_valid("a"));
  char max[65];
  memset(max, 'a', 64);
  max[64] = '\0';
  CHECK(tern_client_group_id_valid(max));
  char over[66];
  memset(over, 'a', 65);
  over[65] = '\0';
  CHECK(!tern_client_group_id_valid(over));
  CHECK(!tern_client_group_id_valid(""));
  CHECK(!tern_client_group_id_valid(NULL));
  CHECK(!tern_client_group_id_valid("a/b"));
  CHECK(!tern_client_group_id_valid("Trip 2"));
  CHECK(!tern_client_group_id_valid("..%2f"));
}

int main(void) {
  tern_client_json_hooks();
  RUN(group_object);
  RUN(group_object_refused);
  RUN(group_list_pages);
  RUN(group_refusals);
  RUN(group_ids);
  DONE();
}
