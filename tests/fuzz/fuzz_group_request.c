/* libFuzzer target for the group endpoints' request bodies (core/groupapi.c's
 * tern_group_req_parse: POST /v1/groups, PATCH /v1/groups/{id}, POST .../members). The first
 * byte picks the request kind, the rest is the body. Any input must parse or be refused with a
 * status (400 or 413) and a sentence; a success must keep the parser's promises (sizes, valid
 * UTF-8 without NUL, the required fields), and the same fields written back as JSON must parse
 * to the very same request. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "core/groupapi.h"
#include "core/groups.h"
#include "fuzz.h"

enum { MAX_USERS = 8 };

static void put_str_field(tern_buf *b, const char *key, const char *v, bool *first) {
  if (!v) return;
  if (!*first) tern_buf_putc(b, ',');
  *first = false;
  tern_buf_put_json_str(b, key, strlen(key));
  tern_buf_putc(b, ':');
  tern_buf_put_json_str(b, v, strlen(v));
}

/* The JSON body that says what r holds. */
static void write_body(tern_buf *b, tern_group_req_kind kind, const tern_group_req *r) {
  bool first = true;
  tern_buf_putc(b, '{');
  put_str_field(b, "name", r->name, &first);
  put_str_field(b, "description", r->description, &first);
  if (kind != TERN_GROUP_REQ_PATCH && (r->nusers || kind == TERN_GROUP_REQ_ADD)) {
    if (!first) tern_buf_putc(b, ',');
    tern_buf_puts(b, kind == TERN_GROUP_REQ_ADD ? "\"users\":[" : "\"members\":[");
    for (size_t i = 0; i < r->nusers; i++) {
      if (i) tern_buf_putc(b, ',');
      tern_buf_put_json_str(b, r->users[i], strlen(r->users[i]));
    }
    tern_buf_putc(b, ']');
  }
  tern_buf_putc(b, '}');
}

static bool text_ok(const char *s, size_t min, size_t max) {
  size_t n = strlen(s);
  return n >= min && n <= max && tern_utf8_valid(s, n);
}

static bool same(const char *x, const char *y) { return (!x && !y) || (x && y && !strcmp(x, y)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  tern_group_req_kind kind = (tern_group_req_kind)(data[0] % 3);
  tern_group_req r;
  char msg[128];
  msg[0] = '\0';
  int st = tern_group_req_parse((const char *)data + 1, size - 1, kind, MAX_USERS, &r, msg, sizeof msg);
  if (st) {
    REQUIRE(st == 400 || st == 413);
    REQUIRE(msg[0] != '\0');
    tern_group_req_free(&r);
    return 0;
  }
  REQUIRE(!r.name || text_ok(r.name, 1, TERN_GROUP_NAME_MAX));
  REQUIRE(!r.description || text_ok(r.description, 0, TERN_GROUP_DESC_MAX));
  if (kind == TERN_GROUP_REQ_CREATE) REQUIRE(r.name);
  if (kind == TERN_GROUP_REQ_PATCH) REQUIRE((r.name || r.description) && r.nusers == 0);
  if (kind == TERN_GROUP_REQ_ADD) REQUIRE(!r.name && !r.description);
  REQUIRE(r.nusers <= MAX_USERS + 1 + 1000);
  for (size_t i = 0; i < r.nusers; i++) REQUIRE(r.users[i] && tern_utf8_valid(r.users[i], strlen(r.users[i])));
  /* written back, the same request */
  tern_buf b = {0};
  write_body(&b, kind, &r);
  tern_group_req q;
  int st2 = tern_group_req_parse(b.data, b.len, kind, MAX_USERS, &q, msg, sizeof msg);
  REQUIRE(st2 == 0);
  REQUIRE(same(q.name, r.name) && same(q.description, r.description) && q.nusers == r.nusers);
  for (size_t i = 0; i < r.nusers; i++) REQUIRE(!strcmp(q.users[i], r.users[i]));
  tern_group_req_free(&q);
  tern_buf_free(&b);
  tern_group_req_free(&r);
  return 0;
}
