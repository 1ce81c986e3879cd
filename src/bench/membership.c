/* membership.c: who is in which group in tern-bench's group mode (--groups N --group-size K).
 *
 * Membership is arithmetic, not a table: group g holds users (g·K + j) mod U for j < K. Laid
 * end to end, the N groups cover the users N·K/U times over, so each user is in ⌊N·K/U⌋ or
 * ⌈N·K/U⌉ groups, the members of one group are distinct as long as K ≤ U, and a member's
 * position (its slot in the per-message delivery bitmap) is one subtraction away. Only the
 * reverse direction, a user's groups for sending round robin, is a table (CSR, N·K entries). */
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "bench/bench_int.h"

uint32_t tern_bench_group_member(const tern_bench *b, uint32_t g, uint32_t j) {
  return (uint32_t)(((uint64_t)g * b->group_size + j) % b->n_users);
}

uint32_t tern_bench_group_pos(const tern_bench *b, uint32_t g, uint32_t u) {
  uint64_t U = b->n_users;
  uint64_t start = ((uint64_t)g * b->group_size) % U;
  uint64_t j = ((uint64_t)u + U - start) % U;
  return j < b->group_size ? (uint32_t)j : UINT32_MAX;
}

void tern_bench_groups_build(tern_bench *b) {
  uint32_t U = b->n_users, N = b->n_groups, K = b->group_size;
  b->user_groups_off = tern_calloc((size_t)U + 1, sizeof *b->user_groups_off);
  b->user_groups = tern_calloc((size_t)N * K, sizeof *b->user_groups);
  b->group_ids = tern_calloc(N, sizeof *b->group_ids);
  for (uint32_t g = 0; g < N; g++)
    for (uint32_t j = 0; j < K; j++) b->user_groups_off[tern_bench_group_member(b, g, j) + 1]++;
  for (uint32_t u = 0; u < U; u++) b->user_groups_off[u + 1] += b->user_groups_off[u];
  uint32_t *fill = tern_calloc(U, sizeof *fill);
  for (uint32_t g = 0; g < N; g++)
    for (uint32_t j = 0; j < K; j++) {
      uint32_t u = tern_bench_group_member(b, g, j);
      b->user_groups[b->user_groups_off[u] + fill[u]++] = g;
    }
  tern_free(fill);
}

static uint64_t id_hash(const char *id, size_t len) {
  uint64_t h = tern_hash_bytes(id, len);
  return h ? h : 1;
}

void tern_bench_group_set_id(tern_bench *b, uint32_t g, const char *id, size_t len) {
  if (g >= b->n_groups) return;
  if (len >= sizeof b->group_ids[g]) len = sizeof b->group_ids[g] - 1;
  memcpy(b->group_ids[g], id, len);
  b->group_ids[g][len] = '\0';
  *tern_bench_u64map_slot(&b->group_by_id, id_hash(id, len), NULL) = g;
}

uint32_t tern_bench_group_of_id(const tern_bench *b, const char *id, size_t len) {
  uint64_t g;
  if (!id || !tern_bench_u64map_get(&b->group_by_id, id_hash(id, len), &g)) return UINT32_MAX;
  /* A hash match must still be the same id: group ids come from the server. */
  if (strlen(b->group_ids[g]) != len || memcmp(b->group_ids[g], id, len) != 0) return UINT32_MAX;
  return (uint32_t)g;
}

void tern_bench_groups_free(tern_bench *b) {
  tern_free(b->user_groups_off);
  tern_free(b->user_groups);
  tern_free(b->group_ids);
  tern_bench_u64map_free(&b->group_by_id);
  b->user_groups_off = b->user_groups = NULL;
  b->group_ids = NULL;
}
