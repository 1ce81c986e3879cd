/* Unit tests for tern-bench's pure pieces: exact percentiles, the u64 map, the body and id
 * formats, and flag parsing. */
#include <stdlib.h>
#include <string.h>

#include "bench/bench_int.h"
#include "t.h"

TEST(lat_exact_percentiles) {
  tern_bench_lat l = {0};
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 50), 0);
  /* 1..100000 µs once each: nearest-rank percentiles are exact values. */
  for (uint32_t i = 100000; i >= 1; i--) tern_bench_lat_add(&l, i);
  CHECK_EQ_INT(l.n, 100000);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 50), 50000);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 90), 90000);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 99), 99000);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 99.9), 99900);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 99.999), 99999);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 100), 100000);
  CHECK_EQ_INT(l.max, 100000);
  CHECK(tern_bench_lat_mean(&l) > 50000.4 && tern_bench_lat_mean(&l) < 50000.6);
  tern_bench_lat_free(&l);
}

TEST(lat_overflow_values) {
  tern_bench_lat l = {0};
  /* 90 small values, 10 beyond the fine histogram (> 2.1 s), out of order. */
  for (int i = 0; i < 90; i++) tern_bench_lat_add(&l, 7);
  uint32_t big[10] = {5000000, 3000000, 9000000, 2500000, 4000000, 2200000, 8000000, 6000000, 7000000, 3500000};
  for (int i = 0; i < 10; i++) tern_bench_lat_add(&l, big[i]);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 50), 7);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 90), 7);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 91), 2200000);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 99), 8000000);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 100), 9000000);
  tern_bench_lat_add(&l, 1); /* adding after a query keeps the list right */
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 100), 9000000);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 0.5), 1); /* rank 1 of 101 */
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 1), 7);   /* rank 2 */
  tern_bench_lat_free(&l);
}

TEST(lat_single_sample) {
  tern_bench_lat l = {0};
  tern_bench_lat_add(&l, 0);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 99.999), 0);
  tern_bench_lat_add(&l, 2097151); /* the last fine bucket */
  tern_bench_lat_add(&l, 2097152); /* the first overflow value */
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 66.6), 2097151);
  CHECK_EQ_INT(tern_bench_lat_pct(&l, 100), 2097152);
  tern_bench_lat_free(&l);
}

TEST(u64map_basic) {
  tern_bench_u64map m = {0};
  uint64_t v;
  CHECK(!tern_bench_u64map_get(&m, 5, &v));
  bool created;
  *tern_bench_u64map_slot(&m, 0, &created) = 11;
  CHECK(created);
  for (uint64_t k = 1; k <= 100000; k++) *tern_bench_u64map_slot(&m, k * 0x10000, NULL) = k;
  CHECK_EQ_INT(m.n, 100001);
  CHECK(tern_bench_u64map_get(&m, 0, &v) && v == 11);
  int bad = 0;
  for (uint64_t k = 1; k <= 100000; k++)
    if (!tern_bench_u64map_get(&m, k * 0x10000, &v) || v != k) bad++;
  CHECK_EQ_INT(bad, 0);
  uint64_t *p = tern_bench_u64map_slot(&m, 0x10000 * 7, &created);
  CHECK(!created && *p == 7);
  CHECK(!tern_bench_u64map_get(&m, 3, NULL));
  tern_bench_u64map_free(&m);
}

TEST(body_and_ids) {
  char body[256];
  size_t n = tern_bench_body_format(body, sizeof body, 123456789, 42, 100);
  CHECK_EQ_INT(n, 100);
  CHECK_EQ_INT(strlen(body), 100);
  CHECK(strncmp(body, "123456789:42:xxx", 16) == 0);
  uint64_t g;
  uint32_t p;
  CHECK_EQ_INT(tern_bench_body_parse(body, n, &g, &p), 0);
  CHECK_EQ_INT(g, 123456789);
  CHECK_EQ_INT(p, 42);
  /* A body shorter than its header still carries the header. */
  n = tern_bench_body_format(body, sizeof body, 7, 1, 2);
  CHECK_EQ_STR(body, "7:1:");
  CHECK_EQ_INT(tern_bench_body_parse("x:1:", 4, &g, &p), -1);
  CHECK_EQ_INT(tern_bench_body_parse("12:", 3, &g, &p), -1);
  CHECK_EQ_INT(tern_bench_body_parse("12:5", 4, &g, &p), -1);
  char id[24];
  tern_bench_client_id(id, 98765);
  CHECK_EQ_STR(id, "g98765");
  CHECK_EQ_INT(tern_bench_client_id_parse(id, strlen(id)), 98765);
  CHECK(tern_bench_client_id_parse("c-1", 3) == UINT64_MAX);
  CHECK(tern_bench_client_id_parse("g", 1) == UINT64_MAX);
  CHECK(tern_bench_client_id_parse(NULL, 0) == UINT64_MAX);
}

TEST(parse_units) {
  uint64_t ms, sz;
  double r;
  CHECK(tern_bench_parse_duration("10s", &ms) == 0 && ms == 10000);
  CHECK(tern_bench_parse_duration("500ms", &ms) == 0 && ms == 500);
  CHECK(tern_bench_parse_duration("2m", &ms) == 0 && ms == 120000);
  CHECK(tern_bench_parse_duration("1.5", &ms) == 0 && ms == 1500);
  CHECK(tern_bench_parse_duration("5x", &ms) == -1);
  CHECK(tern_bench_parse_duration("-1s", &ms) == -1);
  CHECK(tern_bench_parse_rate("1000", &r) == 0 && r == 1000);
  CHECK(tern_bench_parse_rate("2.5k", &r) == 0 && r == 2500);
  CHECK(tern_bench_parse_rate("300/s", &r) == 0 && r == 300);
  CHECK(tern_bench_parse_rate("fast", &r) == -1);
  CHECK(tern_bench_parse_size("4KiB", &sz) == 0 && sz == 4096);
  CHECK(tern_bench_parse_size("100", &sz) == 0 && sz == 100);
  CHECK(tern_bench_parse_size("1MiB", &sz) == 0 && sz == 1048576);
  CHECK(tern_bench_parse_size("1GiB", &sz) == -1);
}

TEST(parse_args) {
  tern_bench_config c;
  char err[256];
  char *a1[] = {"tern-bench", "--users", "1000", "--peers", "random", "--rate", "5", "--body", "200",
                "--receipts", "off", "--prefix", "run1_", "--duration", "3s", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(15, a1, &c, err, sizeof err), 0);
  CHECK_EQ_INT(c.users, 1000);
  CHECK_EQ_INT(c.connections, 1000);
  CHECK(c.peers == TERN_BENCH_PEERS_RANDOM);
  CHECK(c.rate == 5);
  CHECK_EQ_INT(c.body, 200);
  CHECK(c.receipts == TERN_BENCH_RECEIPTS_OFF);
  CHECK_EQ_STR(c.prefix, "run1_");
  CHECK_EQ_INT(c.duration_ms, 3000);
  CHECK_EQ_STR(c.server, "http://127.0.0.1:8080");

  char *a2[] = {"tern-bench", "--users", "10", "--connections", "11", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(5, a2, &c, err, sizeof err), -1);
  char *a3[] = {"tern-bench", "--rate", "5", "--total-rate", "10", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(5, a3, &c, err, sizeof err), -1);
  char *a4[] = {"tern-bench", "--prefix", "Bad!", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(3, a4, &c, err, sizeof err), -1);
  char *a5[] = {"tern-bench", "--protocol", "xmpp", "--devices", "2", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(5, a5, &c, err, sizeof err), -1);
  char *a6[] = {"tern-bench", "--messages", "100000", "--users", "2", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(5, a6, &c, err, sizeof err), 0);
  CHECK_EQ_INT(c.max_messages, 100000);
  CHECK_EQ_INT(c.duration_ms, 0);
  CHECK_EQ_INT(c.warmup_ms, 0);
  CHECK_EQ_INT(strlen(c.prefix), 7); /* a random prefix "bXXXXX_" */
  char *a7[] = {"tern-bench", "--help", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(2, a7, &c, err, sizeof err), 1);
  char *a8[] = {"tern-bench", "--nope", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(2, a8, &c, err, sizeof err), -1);
}

TEST(parse_group_args) {
  tern_bench_config c;
  char err[256];
  char *a1[] = {"tern-bench", "--users", "64", "--groups", "16", "--group-size", "8", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(7, a1, &c, err, sizeof err), 0);
  CHECK_EQ_INT(c.groups, 16);
  CHECK_EQ_INT(c.group_size, 8);
  char *a2[] = {"tern-bench", "--users", "64", "--groups", "4", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(5, a2, &c, err, sizeof err), 0);
  CHECK_EQ_INT(c.group_size, 8); /* the default */
  char *a3[] = {"tern-bench", "--users", "4", "--groups", "4", "--group-size", "5", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(7, a3, &c, err, sizeof err), -1); /* K > users */
  char *a4[] = {"tern-bench", "--users", "8", "--group-size", "4", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(5, a4, &c, err, sizeof err), -1); /* no --groups */
  char *a5[] = {"tern-bench", "--users", "8", "--groups", "2", "--offline", "0.5", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(7, a5, &c, err, sizeof err), -1);
  char *a6[] = {"tern-bench", "--users", "8", "--groups", "2", "--peers", "random", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(7, a6, &c, err, sizeof err), -1);
  char *a7[] = {"tern-bench", "--protocol", "xmpp", "--domain", "d.example", "--users", "8", "--groups", "2", NULL};
  CHECK_EQ_INT(tern_bench_parse_args(9, a7, &c, err, sizeof err), 0);
  CHECK_EQ_STR(c.muc_domain, "conference.d.example");
}

TEST(group_membership) {
  /* 10 users, 7 groups of 4: 28 memberships, each user in 2 or 3 groups, members distinct,
   * positions consistent both ways. */
  tern_bench b;
  memset(&b, 0, sizeof b);
  b.n_users = 10;
  b.n_groups = 7;
  b.group_size = 4;
  tern_bench_groups_build(&b);
  uint32_t per_user[10] = {0};
  for (uint32_t g = 0; g < 7; g++) {
    uint32_t seen = 0;
    for (uint32_t j = 0; j < 4; j++) {
      uint32_t u = tern_bench_group_member(&b, g, j);
      CHECK(u < 10);
      CHECK(!(seen & (1u << u)));
      seen |= 1u << u;
      CHECK_EQ_INT(tern_bench_group_pos(&b, g, u), j);
      per_user[u]++;
    }
    for (uint32_t u = 0; u < 10; u++)
      if (!(seen & (1u << u))) CHECK(tern_bench_group_pos(&b, g, u) == UINT32_MAX);
  }
  for (uint32_t u = 0; u < 10; u++) {
    CHECK(per_user[u] == 2 || per_user[u] == 3);
    CHECK_EQ_INT(b.user_groups_off[u + 1] - b.user_groups_off[u], per_user[u]);
    for (uint32_t i = b.user_groups_off[u]; i < b.user_groups_off[u + 1]; i++)
      CHECK(tern_bench_group_pos(&b, b.user_groups[i], u) != UINT32_MAX);
  }
  tern_bench_group_set_id(&b, 3, "grp-three", 9);
  CHECK_EQ_INT(tern_bench_group_of_id(&b, "grp-three", 9), 3);
  CHECK(tern_bench_group_of_id(&b, "grp-thre", 8) == UINT32_MAX);
  CHECK(tern_bench_group_of_id(&b, NULL, 0) == UINT32_MAX);
  tern_bench_groups_free(&b);
}

int main(void) {
  RUN(lat_exact_percentiles);
  RUN(lat_overflow_values);
  RUN(lat_single_sample);
  RUN(u64map_basic);
  RUN(body_and_ids);
  RUN(parse_units);
  RUN(parse_args);
  RUN(parse_group_args);
  RUN(group_membership);
  DONE();
}
