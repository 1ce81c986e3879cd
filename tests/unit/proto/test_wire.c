/* Unit tests for src/proto/wire.c: the strict parse (what it refuses, the NUL-escape and
 * malformed-escape handling), the value rules, the writers, tern_proto_init (idempotent,
 * thread-safe, cJSON allocating through base/alloc.h), decoding on two threads at once
 * with answers that do not depend on cJSON's global error pointer, and the flat parse
 * (tern_wire_parse_flat) giving cJSON's answer and tree. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "proto/event.h"
#include "proto/frame.h"
#include "proto/wire.h"
#include "t.h"

static int parse(const char *s, tern_wire_doc *d, char *msg) {
  return tern_wire_parse(s, strlen(s), 1000, d, msg, 160);
}

TEST(parse_rules) {
  tern_wire_doc d;
  char msg[160];
  CHECK_EQ_INT(parse(" \t\r\n{\"a\":1} \n", &d, msg), 0);
  CHECK(cJSON_IsObject(d.root) && !d.nul_escapes && d.copy == NULL);
  tern_wire_doc_free(&d);
  const char *bad[] = {"", "  ", "[]", "1", "\"x\"", "{", "{\"a\":1}x", "{\"a\":1}{}", "\xEF\xBB\xBF{}", "\x01{}",
                       "{\"a\":\"\\u12G4\"}", "{\"a\":\"\\u00\"}", "{\"a\":\"\\uD800\"}", "{\"a\":\"\\x\"}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = parse(bad[i], &d, msg);
    if (rc != -EINVAL || !msg[0] || d.root) {
      fprintf(stderr, "  FAIL: %s → %d\n", bad[i], rc);
      t_failed_checks++;
    }
  }
  /* A raw NUL, and more than max. */
  CHECK_EQ_INT(tern_wire_parse("{}\0", 3, 1000, &d, msg, sizeof msg), -EINVAL);
  CHECK_EQ_INT(tern_wire_parse("{ }", 3, 2, &d, msg, sizeof msg), -E2BIG);
  CHECK(strstr(msg, "larger") != NULL);
  /* "\u0000" becomes 0xFF; "\\u0000" (an escaped backslash) is text. */
  CHECK_EQ_INT(parse("{\"a\":\"x\\u0000y\",\"b\":\"\\\\u0000\"}", &d, msg), 0);
  CHECK(d.nul_escapes && d.copy != NULL);
  CHECK_EQ_STR(cJSON_GetObjectItem(d.root, "a")->valuestring, "x\xFFy");
  CHECK_EQ_STR(cJSON_GetObjectItem(d.root, "b")->valuestring, "\\u0000");
  tern_wire_doc_free(&d);
  CHECK_EQ_INT(parse("{\"b\":\"\\\\u0000\",\"c\":\"\\u00e9\\u00E9\"}", &d, msg), 0);
  CHECK(!d.nul_escapes);
  CHECK_EQ_STR(cJSON_GetObjectItem(d.root, "c")->valuestring, "\xC3\xA9\xC3\xA9");
  tern_wire_doc_free(&d);
  /* A zeroed doc frees as empty. */
  tern_wire_doc z = {0};
  tern_wire_doc_free(&z);
}

/* The flat parse answers as cJSON's does, with the same tree printed, for the inputs it takes
 * (flat) and for those it leaves to cJSON; tests/fuzz/fuzz_frame.c checks it on any input. */
TEST(flat_parse_matches_cjson) {
  static const struct {
    const char *in;
    bool flat; /* made by the flat parse itself */
  } cases[] = {
      {"{\"type\":\"send\",\"id\":\"c1\",\"to\":\"bob\",\"body\":\"hi\"}", true},
      {" {\"type\":\"ack\",\"seq\":5} \n", true},
      {"{}", true},
      {"{ }", true},
      {"{\"a\":\"q\\\"b\\\\s\\/n\\n\\t\\r\\b\\f\"}", true},
      {"{\"a\":-0,\"b\":1.5e3,\"c\":2E-2,\"d\":1e400,\"e\":3000000000,\"f\":-3000000000}", true},
      {"{\"a\":true,\"b\":false,\"c\":null,\"a\":1}", true},
      {"{\"\":\"\",\"k\":\"\xC3\xA9\x01\"}", true}, /* raw bytes in strings: cJSON takes them too */
      {"{\"a\":{\"b\":1}}", false},                     /* nested: cJSON's */
      {"{\"a\":[1,2]}", false},
      {"{\"a\":\"\\u00e9\"}", false},                   /* \u: cJSON's */
      {"{\"a\":01}", false},                              /* not JSON; cJSON's answer stands */
      {"{\"a\":+1}", false},
      {"{\"a\":1.}", false},
      {"{\"a\":.5}", false},
      {"{\"a\":1}x", false},
      {"{\"a\":1,}", false},
      {"{\"a\" \x01: 1}", false},                          /* a control byte cJSON skips */
      {"{\"a\":\"x}", false},
      {"{\"a\":tru}", false},
      {"{\"a\":nullx}", false},
      {"{\"1\":1,\"2\":2,\"3\":3,\"4\":4,\"5\":5,\"6\":6,\"7\":7,\"8\":8,\"9\":9,\"10\":10,\"11\":11,"
       "\"12\":12,\"13\":13,\"14\":14,\"15\":15,\"16\":16,\"17\":17}", false}, /* more than 16 members */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *in = cases[i].in;
    tern_wire_doc a, b;
    char ma[160], mb[160];
    int ra = tern_wire_parse(in, strlen(in), 1000, &a, ma, sizeof ma);
    int rb = tern_wire_parse_flat(in, strlen(in), 1000, &b, mb, sizeof mb);
    bool ok = ra == rb && (ra ? strcmp(ma, mb) == 0 : b.flat == cases[i].flat);
    if (ok && ra == 0) {
      char *pa = cJSON_PrintUnformatted(a.root), *pb = cJSON_PrintUnformatted(b.root);
      ok = pa && pb && strcmp(pa, pb) == 0;
      cJSON_free(pa);
      cJSON_free(pb);
      for (const cJSON *x = a.root->child, *y = b.root->child; ok && (x || y); x = x->next, y = y->next)
        ok = x && y && x->type == y->type && x->valueint == y->valueint && strcmp(x->string, y->string) == 0;
    }
    if (!ok) {
      fprintf(stderr, "  FAIL: %s: %d/%d flat=%d\n", in, ra, rb, ra == 0 && rb == 0 ? b.flat : -1);
      t_failed_checks++;
    }
    if (ra == 0) tern_wire_doc_free(&a);
    if (rb == 0) tern_wire_doc_free(&b);
  }
}

TEST(values) {
  CHECK(tern_wire_ascii_id("a", 1, 64));
  CHECK(tern_wire_ascii_id(" ~", 2, 64));
  CHECK(!tern_wire_ascii_id("", 0, 64));
  CHECK(!tern_wire_ascii_id(NULL, 0, 64));
  CHECK(!tern_wire_ascii_id("abc", 3, 2));
  CHECK(!tern_wire_ascii_id("a\x7f", 2, 64));
  CHECK(!tern_wire_ascii_id("a\xff", 2, 64));
  CHECK(!tern_wire_ascii_id("a\0b", 3, 64));
  CHECK(tern_wire_group_id("Trip_2-x", 8));
  CHECK(!tern_wire_group_id("a.b", 3));
  CHECK(!tern_wire_group_id("", 0));
  char g[66];
  memset(g, 'g', sizeof g);
  CHECK(tern_wire_group_id(g, 64));
  CHECK(!tern_wire_group_id(g, 65));
  CHECK(tern_wire_base64("QUJD", 4));
  CHECK(tern_wire_base64("QUI=", 4));
  CHECK(tern_wire_base64("QQ==", 4));
  CHECK(tern_wire_base64("+/+/", 4));
  CHECK(!tern_wire_base64("QQ=", 3));
  CHECK(!tern_wire_base64("Q===", 4));
  CHECK(!tern_wire_base64("QU=D", 4));
  CHECK(!tern_wire_base64("-_-_", 4));
  CHECK(!tern_wire_base64("", 0));
  CHECK(tern_wire_text("h\xC3\xA9", 3));
  CHECK(!tern_wire_text("\xFF", 1));
  int64_t v;
  cJSON *n = cJSON_Parse("[5, 5.0, 5e0, 5.5, 9007199254740994, -1, 1e400]");
  const cJSON *e = n->child;
  CHECK(tern_wire_int(e, 0, TERN_WIRE_INT_MAX, &v) && v == 5);
  CHECK(tern_wire_int(e->next, 0, TERN_WIRE_INT_MAX, &v) && v == 5);
  CHECK(tern_wire_int(e->next->next, 0, TERN_WIRE_INT_MAX, &v) && v == 5);
  CHECK(!tern_wire_int(e->next->next->next, 0, TERN_WIRE_INT_MAX, &v));
  CHECK(!tern_wire_int(e->next->next->next->next, 0, TERN_WIRE_INT_MAX, &v));
  CHECK(!tern_wire_int(e->next->next->next->next->next, 0, TERN_WIRE_INT_MAX, &v));
  CHECK(tern_wire_int(e->next->next->next->next->next, -1, 0, &v) && v == -1);
  CHECK(!tern_wire_int(e->next->next->next->next->next->next, -TERN_WIRE_INT_MAX, TERN_WIRE_INT_MAX, &v));
  cJSON_Delete(n);
}

TEST(writers) {
  tern_buf b = {0};
  tern_wire_put_key(&b, "a", true);
  tern_wire_put_cstr(&b, "x\"y");
  tern_wire_put_key(&b, "b", false);
  tern_wire_put_cstr(&b, NULL);
  tern_wire_put_key(&b, "c", false);
  tern_wire_put_str(&b, "a\0b", 3);
  CHECK_EQ_STR(tern_buf_cstr(&b), "\"a\":\"x\\\"y\",\"b\":null,\"c\":\"a\\u0000b\"");
  tern_buf_free(&b);
}

static void *init_many(void *arg) {
  for (int i = 0; i < 1000; i++) tern_proto_init();
  return arg;
}

TEST(init_is_idempotent_and_hooks_cjson) {
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, init_many, NULL);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  /* cJSON now allocates with tern_malloc: what it hands out tern_free takes back. */
  char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(NULL, "x"));
  CHECK(s == NULL);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "k", "v");
  s = cJSON_PrintUnformatted(o);
  CHECK_EQ_STR(s, "{\"k\":\"v\"}");
  tern_free(s);
  cJSON_Delete(o);
}

/* Two threads decode at once, good and bad frames interleaved (every bad one makes cJSON write
 * its global error pointer); every answer must still be right. */
static void *decode_many(void *arg) {
  long bad = 0;
  const char *good = "{\"type\":\"send\",\"id\":\"c-1\",\"to\":\"bob\",\"body\":\"hello\"}";
  const char *broken = "{\"type\":\"send\",\"id\":\"c-1\",\"to\":\"bob\",\"body\":\"hel";
  const char *env = "{\"type\":\"msg\",\"seq\":7,\"msg_id\":\"m\",\"from\":\"alice\",\"body\":\"x\\u0000\"}";
  for (int i = 0; i < 20000; i++) {
    tern_frame f;
    tern_frame_error e;
    if (tern_frame_decode(good, strlen(good), &f, &e) != 0 || strcmp(f.body, "hello") != 0) bad++;
    tern_frame_free(&f);
    if (tern_frame_decode(broken, strlen(broken), &f, &e) != -EINVAL || strcmp(e.code, "bad_request") != 0) bad++;
    tern_event ev;
    tern_event_doc doc;
    char msg[160];
    if (tern_event_decode(env, strlen(env), &ev, &doc, msg, sizeof msg) != -EBADMSG || ev.env.seq != 7) bad++;
    tern_event_doc_free(&doc);
  }
  *(long *)arg = bad;
  return NULL;
}

TEST(two_threads_decode) {
  pthread_t t[2];
  long bad[2] = {0, 0};
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, decode_many, &bad[i]);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  CHECK_EQ_INT(bad[0] + bad[1], 0);
}

int main(void) {
  tern_proto_init();
  RUN(parse_rules);
  RUN(flat_parse_matches_cjson);
  RUN(values);
  RUN(writers);
  RUN(init_is_idempotent_and_hooks_cjson);
  RUN(two_threads_decode);
  DONE();
}
