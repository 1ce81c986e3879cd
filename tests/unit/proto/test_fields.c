/* Unit tests for src/proto/fields.c, the table-driven codec, on a table of its own with every
 * field kind: what is written when present, absent or required, what the reader makes of each
 * JSON shape, the one-pass member matching (duplicates, null, unknown keys), and what
 * tern_fields_same counts as the same. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stddef.h>

#include "base/buf.h"
#include "proto/fields.h"
#include "proto/wire.h"
#include "t.h"

typedef struct rec {
  tern_str name;      /* STR */
  tern_str must;      /* STR, required */
  uint64_t count;     /* U64 */
  int64_t delta;      /* I64 */
  int64_t size;       /* I64_OPT */
  bool has_n;         /* U64_HAS's flag */
  uint64_t n;         /* U64_HAS */
  bool on;            /* BOOL */
  int color;          /* ENUM */
  tern_strs tags;     /* STRS */
  tern_strs req_tags; /* STRS, required */
  const tern_device_ref *devs; /* DEVREFS */
  size_t ndevs;
  tern_str inner_id;  /* OBJ: first field */
  tern_str inner_x;   /* OBJ: second field */
  tern_str raw;       /* OBJ's pre-encoded stand-in */
  tern_str who;       /* STR_OR_STRS: string */
  tern_strs whos;     /* STR_OR_STRS: list */
  int64_t seen;       /* LAST_SEEN (written when !on) */
} rec;

#define R(field) offsetof(rec, field)
static const char *const colors[] = {NULL, "red", "green"};
static const tern_field inner[] = {
    {TERN_F_KEY("id"), TERN_F_STR, 0, R(inner_id), 0, NULL, 0, NULL},
    {TERN_F_KEY("x"), TERN_F_STR, 0, R(inner_x), 0, NULL, 0, NULL},
    {NULL, NULL, 0, 0, 0, 0, 0, NULL, 0, NULL},
};
static const tern_field table[] = {
    {TERN_F_KEY("name"), TERN_F_STR, 0, R(name), 0, NULL, 0, NULL},
    {TERN_F_KEY("must"), TERN_F_STR, TERN_F_REQ, R(must), 0, NULL, 0, NULL},
    {TERN_F_KEY("count"), TERN_F_U64, 0, R(count), 0, NULL, 0, NULL},
    {TERN_F_KEY("delta"), TERN_F_I64, 0, R(delta), 0, NULL, 0, NULL},
    {TERN_F_KEY("size"), TERN_F_I64_OPT, 0, R(size), 0, NULL, 0, NULL},
    {TERN_F_KEY("n"), TERN_F_U64_HAS, 0, R(n), R(has_n), NULL, 0, NULL},
    {TERN_F_KEY("on"), TERN_F_BOOL, 0, R(on), 0, NULL, 0, NULL},
    {TERN_F_KEY("color"), TERN_F_ENUM, 0, R(color), 0, colors, 3, NULL},
    {TERN_F_KEY("tags"), TERN_F_STRS, 0, R(tags), 0, NULL, 0, NULL},
    {TERN_F_KEY("req_tags"), TERN_F_STRS, TERN_F_REQ, R(req_tags), 0, NULL, 0, NULL},
    {TERN_F_KEY("devs"), TERN_F_DEVREFS, 0, R(devs), R(ndevs), NULL, 0, NULL},
    {TERN_F_KEY("inner"), TERN_F_OBJ, 0, 0, R(raw), NULL, 0, inner},
    {TERN_F_KEY("who"), TERN_F_STR_OR_STRS, TERN_F_REQ, R(who), R(whos), NULL, 0, NULL},
    {TERN_F_KEY("seen"), TERN_F_LAST_SEEN, 0, R(seen), R(on), NULL, 0, NULL},
    {NULL, NULL, 0, 0, 0, 0, 0, NULL, 0, NULL},
};

#define S(lit) ((tern_str){(lit), sizeof(lit) - 1})

static void written(const rec *r, const char *want, int line) {
  tern_buf b = {0};
  tern_buf_putc(&b, '{');
  tern_fields_encode(&b, table, r, true);
  tern_buf_putc(&b, '}');
  if (strcmp(tern_buf_cstr(&b), want) != 0) {
    fprintf(stderr, "  FAIL line %d:\n    got  %s\n    want %s\n", line, b.data, want);
    t_failed_checks++;
  }
  tern_buf_free(&b);
}
#define WRITTEN(r, want) written((r), (want), __LINE__)

/* Reads json into *r (defaults first); returns the reader's answer. */
static int read_rec(const char *json, rec *r, tern_event_doc *doc, cJSON **root) {
  memset(r, 0, sizeof *r);
  memset(doc, 0, sizeof *doc);
  tern_fields_defaults(table, r);
  *root = cJSON_Parse(json);
  char msg[160];
  tern_fields_reader rd = {.doc = doc, .msg = msg, .cap = sizeof msg};
  return tern_fields_decode(&rd, *root, table, r);
}

TEST(writing) {
  rec r = {.size = -1, .on = true, .seen = -1};
  /* Nothing given: the always-written numbers and bool, the required ones as null / []. */
  WRITTEN(&r, "{\"must\":null,\"count\":0,\"delta\":0,\"on\":true,\"req_tags\":[],\"who\":null}");
  tern_str tags[] = {S("a"), S("b\"")};
  const char *ctags[] = {"c"};
  tern_device_ref devs[] = {{S("bob"), S("d1")}, {{NULL, 0}, S("d2")}};
  r = (rec){.name = S("n"), .must = S("m"), .count = 18446744073709551615ull, .delta = -3, .size = 0, .has_n = true,
            .n = 0, .on = false, .color = 2, .tags = {.v = tags, .n = 2}, .req_tags = {.c = ctags, .n = 1},
            .devs = devs, .ndevs = 2, .inner_id = S("i"), .inner_x = S("x"), .raw = S("{\"ignored\":1}"),
            .who = S("w"), .whos = {.v = tags, .n = 1}, .seen = 5};
  WRITTEN(&r,
          "{\"name\":\"n\",\"must\":\"m\",\"count\":18446744073709551615,\"delta\":-3,\"size\":0,\"n\":0,\"on\":false,"
          "\"color\":\"green\",\"tags\":[\"a\",\"b\\\"\"],\"req_tags\":[\"c\"],\"devs\":[{\"user\":\"bob\",\"device_"
          "id\":\"d1\"},"
          "{\"user\":null,\"device_id\":\"d2\"}],\"inner\":{\"id\":\"i\",\"x\":\"x\"},\"who\":[\"a\"],\"seen\":5}");
  /* The object's stand-in when its first field is absent; null last_seen; enum out of range. */
  r = (rec){.size = -1, .inner_x = S("lost"), .raw = S("{\"pre\":true}"), .seen = -1, .color = 9, .who = S("w")};
  WRITTEN(&r,
          "{\"must\":null,\"count\":0,\"delta\":0,\"on\":false,\"color\":null,\"req_tags\":[],\"inner\":{\"pre\":true},"
          "\"who\":\"w\",\"seen\":null}");
}

TEST(reading) {
  rec r;
  tern_event_doc doc;
  cJSON *root;
  CHECK_EQ_INT(read_rec("{\"name\":\"n\",\"name\":5,\"count\":5e0,\"delta\":-7,\"size\":null,\"n\":3,\"on\":true,"
                        "\"color\":\"blue\",\"tags\":[],\"devs\":[{\"device_id\":\"d\"}],\"inner\":{\"x\":\"only\"},"
                        "\"who\":[\"a\",\"b\"],\"seen\":9,\"unknown\":[1,2]}",
                        &r, &doc, &root),
               0);
  CHECK(r.name.p && strcmp(r.name.p, "n") == 0); /* the first of duplicate keys */
  CHECK_EQ_INT(r.count, 5);
  CHECK_EQ_INT(r.delta, -7);
  CHECK_EQ_INT(r.size, -1); /* null: the default */
  CHECK(r.has_n && r.n == 3);
  CHECK_EQ_INT(r.color, 0);                  /* unknown value */
  CHECK(r.tags.v != NULL && r.tags.n == 0);  /* an empty list that is there */
  CHECK(r.req_tags.v == NULL);
  CHECK(r.ndevs == 1 && r.devs[0].user.p == NULL && r.devs[0].device_id.n == 1);
  CHECK(r.inner_id.p == NULL && r.inner_x.p == NULL); /* no first field: the object is dropped */
  CHECK(r.who.p == NULL && r.whos.n == 2);
  CHECK_EQ_INT(r.seen, -1); /* online: no last_seen */
  tern_event_doc_free(&doc);
  cJSON_Delete(root);
  const char *bad[] = {"{\"name\":1}", "{\"count\":-1}", "{\"count\":1.5}", "{\"delta\":1e300}", "{\"size\":-2}",
                       "{\"n\":\"3\"}", "{\"on\":1}", "{\"color\":2}", "{\"tags\":\"a\"}", "{\"tags\":[1]}",
                       "{\"devs\":[1]}", "{\"devs\":{}}", "{\"inner\":[]}", "{\"who\":3}", "{\"seen\":-5}",
                       "{\"name\":\"\xC3\x28\"}", "{\"inner\":{\"id\":false}}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = read_rec(bad[i], &r, &doc, &root);
    if (rc != -EBADMSG) {
      fprintf(stderr, "  FAIL: %s → %d\n", bad[i], rc);
      t_failed_checks++;
    }
    tern_event_doc_free(&doc);
    cJSON_Delete(root);
  }
}

TEST(sameness) {
  rec a = {.size = -1, .seen = -1}, b = a;
  CHECK(tern_fields_same(table, &a, &b));
  b.size = -9; /* every negative is absent */
  CHECK(tern_fields_same(table, &a, &b));
  tern_str one[] = {S("x")};
  b.req_tags = (tern_strs){.v = one, .n = 0}; /* a required list: absent and empty are written alike */
  CHECK(tern_fields_same(table, &a, &b));
  b.tags = (tern_strs){.v = one, .n = 0}; /* an optional one: not */
  CHECK(!tern_fields_same(table, &a, &b));
  b = a;
  b.n = 4; /* not written without its flag */
  CHECK(tern_fields_same(table, &a, &b));
  b.has_n = true;
  CHECK(!tern_fields_same(table, &a, &b));
  b = a;
  b.name = S("");
  CHECK(!tern_fields_same(table, &a, &b)); /* "" is not absent */
  b = a;
  b.inner_x = S("x");
  CHECK(!tern_fields_same(table, &a, &b));
}

int main(void) {
  tern_proto_init();
  RUN(writing);
  RUN(reading);
  RUN(sameness);
  DONE();
}
