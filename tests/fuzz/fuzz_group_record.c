/* libFuzzer target for the group record (core/groups.h): bytes of a "group/<id>" record from
 * the store's RECORDS bucket, at load and from the change feed (another node's write, or one
 * corrupted on disk), under a key that may be off too. Input: a first byte, then, when its top
 * bit is set, an id of (byte & 0x7f) bytes; the rest is the record. Properties: a record either
 * is refused whole or loads a group whose id, name and description the API would have taken,
 * whose members are known users, each once and each pointing back at the group; encoded again
 * it loads to the same group; applying it from the feed again changes nothing; deleting it
 * leaves no user pointing at a group. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "core/dir.h"
#include "core/groups.h"
#include "fuzz.h"

static const char *const names[] = {"alice", "bob", "carol", "dave.x"};
enum { NUSERS = sizeof names / sizeof names[0] };

/* Two apps on one directory: a loads the input, b loads what a's group encodes to. */
static tern_app A, B;
static tern_user *users[NUSERS];

static void setup(void) {
  if (A.dir) return;
  tern_log_set_level(TERN_LOG_ERROR);
  A.dir = tern_dir_new_memory();
  A.groups = tern_groups_new();
  B.dir = A.dir;
  B.groups = tern_groups_new();
  for (int i = 0; i < NUSERS; i++) users[i] = tern_dir_add_user(A.dir, names[i]);
}

static void check_group(const tern_group *g, const char *id) {
  REQUIRE(!strcmp(g->id, id));
  for (const char *c = g->id; *c; c++)
    REQUIRE((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' ||
            *c == '-');
  size_t nl = strlen(g->name), dl = strlen(g->description);
  REQUIRE(nl >= 1 && nl <= TERN_GROUP_NAME_MAX && tern_utf8_valid(g->name, nl));
  REQUIRE(dl <= TERN_GROUP_DESC_MAX && tern_utf8_valid(g->description, dl));
  REQUIRE(g->nmembers <= NUSERS);
  for (size_t i = 0; i < g->nmembers; i++) {
    const tern_user *u = g->members[i].user;
    bool known = false, back = false;
    for (int k = 0; k < NUSERS; k++) known |= users[k] == u;
    REQUIRE(known);
    for (size_t j = 0; j < i; j++) REQUIRE(g->members[j].user != u);
    for (size_t j = 0; j < u->ngroups; j++) back |= u->groups[j] == g;
    REQUIRE(back);
  }
}

static void no_memberships(void) {
  for (int k = 0; k < NUSERS; k++) REQUIRE(users[k]->ngroups == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup();
  if (size < 1) return 0;
  char key[256] = "group/";
  size_t klen = 6, off = 1;
  if (data[0] & 0x80) {
    size_t n = data[0] & 0x7f;
    if (n > size - 1) n = size - 1;
    memcpy(key + klen, data + 1, n);
    klen += n;
    off += n;
  } else {
    memcpy(key + klen, "gAbC-_9zgAbC-_9zgAbC-w", 22);
    klen += 22;
  }
  const uint8_t *v = data + off;
  size_t vlen = size - off;
  char id[TERN_GROUP_ID_MAX + 1];
  bool id_fits = klen - 6 <= TERN_GROUP_ID_MAX && !memchr(key + 6, 0, klen - 6);
  if (id_fits) {
    memcpy(id, key + 6, klen - 6);
    id[klen - 6] = '\0';
  }

  int rc = tern_groups_load_record(&A, v, vlen, key, klen);
  if (rc != 0) {
    REQUIRE(tern_groups_count(A.groups) == 0);
    no_memberships();
    /* the feed's way in takes nothing the load refused */
    tern_groups_apply_record(&A, key, klen, v, vlen);
    REQUIRE(tern_groups_count(A.groups) == 0);
    return 0;
  }
  REQUIRE(id_fits);
  tern_group *g = tern_groups_get(A.groups, id);
  REQUIRE(g && tern_groups_count(A.groups) == 1);
  check_group(g, id);

  /* encoded again, it loads to the same group */
  tern_buf b = {0};
  tern_group_encode(g, &b);
  REQUIRE(tern_groups_load_record(&B, (const uint8_t *)b.data, b.len, key, klen) == 0);
  tern_group *h = tern_groups_get(B.groups, id);
  REQUIRE(h);
  REQUIRE(h->rev == g->rev && h->created_at == g->created_at && !strcmp(h->created_by, g->created_by));
  REQUIRE(!strcmp(h->name, g->name) && !strcmp(h->description, g->description) && h->nmembers == g->nmembers);
  for (size_t i = 0; i < g->nmembers; i++)
    REQUIRE(h->members[i].user == g->members[i].user && h->members[i].admin == g->members[i].admin &&
            h->members[i].since == g->members[i].since);
  tern_buf_free(&b);

  /* the same record from the feed: not newer, so nothing changes */
  tern_groups_apply_record(&A, key, klen, v, vlen);
  REQUIRE(tern_groups_get(A.groups, id) == g);

  /* deleted on another writer: gone, and nobody points at it */
  tern_groups_apply_record(&A, key, klen, NULL, 0);
  tern_groups_apply_record(&B, key, klen, NULL, 0);
  REQUIRE(tern_groups_count(A.groups) == 0 && tern_groups_count(B.groups) == 0);
  no_memberships();
  return 0;
}
