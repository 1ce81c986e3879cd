/* u64map.c: a uint64 → uint64 hash map with open addressing and linear probing. The engine
 * does a few lookups per message (server id → message, per-pair counters and order), so this
 * stays flat: two arrays, no per-entry allocation, no deletion (a run only adds). */
#include <string.h>

#include "base/alloc.h"
#include "bench/bench_int.h"

/* Keys are often small integers packed together, or FNV hashes: mix them before masking. */
static inline uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

bool tern_bench_u64map_get(const tern_bench_u64map *m, uint64_t key, uint64_t *val) {
  if (key == 0) {
    if (m->has_zero && val) *val = m->zero_val;
    return m->has_zero;
  }
  if (!m->cap) return false;
  size_t mask = m->cap - 1;
  for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    if (m->keys[i] == key) {
      if (val) *val = m->vals[i];
      return true;
    }
    if (m->keys[i] == 0) return false;
  }
}

static void grow(tern_bench_u64map *m) {
  size_t ncap = m->cap ? m->cap * 2 : 1024;
  uint64_t *nk = tern_calloc(ncap, sizeof *nk);
  uint64_t *nv = tern_calloc(ncap, sizeof *nv);
  size_t mask = ncap - 1;
  for (size_t j = 0; j < m->cap; j++) {
    uint64_t k = m->keys[j];
    if (!k) continue;
    size_t i = mix(k) & mask;
    while (nk[i]) i = (i + 1) & mask;
    nk[i] = k;
    nv[i] = m->vals[j];
  }
  tern_free(m->keys);
  tern_free(m->vals);
  m->keys = nk;
  m->vals = nv;
  m->cap = ncap;
}

uint64_t *tern_bench_u64map_slot(tern_bench_u64map *m, uint64_t key, bool *created) {
  if (created) *created = false;
  if (key == 0) {
    if (!m->has_zero) {
      m->has_zero = true;
      m->zero_val = 0;
      m->n++;
      if (created) *created = true;
    }
    return &m->zero_val;
  }
  /* Keep the load at most one half, so probes stay short. */
  if ((m->n + 1) * 2 > m->cap) grow(m);
  size_t mask = m->cap - 1;
  size_t i = mix(key) & mask;
  while (m->keys[i] && m->keys[i] != key) i = (i + 1) & mask;
  if (!m->keys[i]) {
    m->keys[i] = key;
    m->vals[i] = 0;
    m->n++;
    if (created) *created = true;
  }
  return &m->vals[i];
}

void tern_bench_u64map_free(tern_bench_u64map *m) {
  tern_free(m->keys);
  tern_free(m->vals);
  memset(m, 0, sizeof *m);
}
