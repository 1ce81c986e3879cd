/* lat.c: exact latency recording. A histogram with one bucket per microsecond up to 2^21 µs
 * holds every sample without sampling or bucket error; the rare larger values are kept
 * verbatim. A second, coarse level (1024 µs blocks) lets a percentile be found by walking
 * 2,048 blocks and then at most 1,024 buckets, so the live progress line can ask for p99 every
 * second at no real cost. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "bench/bench_int.h"

#define FINE_N (1u << TERN_BENCH_LAT_FINE_BITS)
#define BLOCK_N (FINE_N >> TERN_BENCH_LAT_BLOCK_BITS)

void tern_bench_lat_add(tern_bench_lat *l, uint32_t us) {
  if (us < FINE_N) {
    if (!l->fine) {
      l->fine = tern_calloc(FINE_N, sizeof *l->fine);
      l->block = tern_calloc(BLOCK_N, sizeof *l->block);
    }
    l->fine[us]++;
    l->block[us >> TERN_BENCH_LAT_BLOCK_BITS]++;
  } else {
    if (l->n_over == l->cap_over) {
      l->cap_over = l->cap_over ? l->cap_over * 2 : 256;
      l->over = tern_realloc(l->over, l->cap_over * sizeof *l->over);
    }
    l->over[l->n_over++] = us;
    l->over_sorted = false;
  }
  l->n++;
  l->sum += us;
  if (us > l->max) l->max = us;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

uint32_t tern_bench_lat_pct(tern_bench_lat *l, double p) {
  if (l->n == 0) return 0;
  if (p <= 0) p = 0.0001;
  if (p > 100) p = 100;
  /* Nearest rank: the smallest value with at least ceil(p% of n) samples at or below it.
   * p is taken in millionths and the rank computed in integers, so that 99.999 % of 100,000
   * samples is rank 99,999 and not 100,000 by a floating-point hair. */
  uint64_t ppm = (uint64_t)llround(p * 10000.0);
  unsigned __int128 prod = (unsigned __int128)ppm * l->n;
  uint64_t rank = (uint64_t)(prod / 1000000u) + (prod % 1000000u ? 1 : 0);
  if (rank == 0) rank = 1;
  if (rank > l->n) rank = l->n;
  uint64_t below = l->n - l->n_over; /* samples in the fine histogram */
  if (rank <= below) {
    uint64_t seen = 0;
    uint32_t blk = 0;
    while (blk < BLOCK_N && seen + l->block[blk] < rank) seen += l->block[blk++];
    uint32_t us = blk << TERN_BENCH_LAT_BLOCK_BITS;
    while (seen + l->fine[us] < rank) seen += l->fine[us++];
    return us;
  }
  if (!l->over_sorted) {
    qsort(l->over, l->n_over, sizeof *l->over, cmp_u32);
    l->over_sorted = true;
  }
  return l->over[rank - below - 1];
}

double tern_bench_lat_mean(const tern_bench_lat *l) { return l->n ? (double)l->sum / (double)l->n : 0.0; }

void tern_bench_lat_free(tern_bench_lat *l) {
  tern_free(l->fine);
  tern_free(l->block);
  tern_free(l->over);
  memset(l, 0, sizeof *l);
}
