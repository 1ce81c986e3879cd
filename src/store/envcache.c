/* envcache.c: see envcache.h. A power-of-two ring of pointers per inbox; each value carries its
 * length in front, so an entry is one allocation. */
#include "store/envcache.h"

#include <string.h>

#include "base/alloc.h"

static uint8_t **slot(const tern_envcache *c, uint32_t i) { return &c->ring[(c->head + i) & (c->cap - 1)]; }

static size_t value_len(const uint8_t *e) {
  uint32_t n;
  memcpy(&n, e, 4);
  return n;
}

static void pop_head(tern_envcache *c, tern_envcache_acct *a) {
  uint8_t **s = slot(c, 0);
  a->bytes -= value_len(*s);
  tern_free(*s);
  *s = NULL;
  c->head = (c->head + 1) & (c->cap - 1);
  c->len--;
  c->first++;
}

/* An empty cache gives its ring back, so that the many idle inboxes hold no ring at all. */
static void release_if_empty(tern_envcache *c) {
  if (c->len || !c->ring) return;
  tern_free(c->ring);
  c->ring = NULL;
  c->cap = c->head = 0;
}

void tern_envcache_reset(tern_envcache *c, tern_envcache_acct *a, uint64_t next) {
  while (c->len) pop_head(c, a);
  release_if_empty(c);
  c->first = next;
}

void tern_envcache_push(tern_envcache *c, tern_envcache_acct *a, uint64_t seq, const uint8_t *value, size_t len) {
  if (seq != tern_envcache_end(c)) tern_envcache_reset(c, a, seq);
  if (len > UINT32_MAX) { /* never cached: the suffix now starts after it */
    tern_envcache_reset(c, a, seq + 1);
    return;
  }
  if (c->len == c->cap) {
    uint32_t ncap = c->cap ? c->cap * 2 : 4;
    uint8_t **nr = tern_malloc(ncap * sizeof *nr);
    for (uint32_t i = 0; i < c->len; i++) nr[i] = *slot(c, i);
    tern_free(c->ring);
    c->ring = nr;
    c->cap = ncap;
    c->head = 0;
  }
  uint8_t *e = tern_malloc(4 + len);
  uint32_t n = (uint32_t)len;
  memcpy(e, &n, 4);
  memcpy(e + 4, value, len);
  *slot(c, c->len) = e;
  c->len++;
  a->bytes += len;
}

const uint8_t *tern_envcache_get(const tern_envcache *c, uint64_t seq, size_t *len) {
  if (seq < c->first || seq - c->first >= c->len) return NULL;
  const uint8_t *e = *slot(c, (uint32_t)(seq - c->first));
  *len = value_len(e);
  return e + 4;
}

void tern_envcache_set(tern_envcache *c, tern_envcache_acct *a, uint64_t seq, const uint8_t *value, size_t len) {
  if (seq < c->first || seq - c->first >= c->len || len > UINT32_MAX) return;
  uint8_t **s = slot(c, (uint32_t)(seq - c->first));
  a->bytes -= value_len(*s);
  tern_free(*s);
  uint8_t *e = tern_malloc(4 + len);
  uint32_t n = (uint32_t)len;
  memcpy(e, &n, 4);
  memcpy(e + 4, value, len);
  *s = e;
  a->bytes += len;
}

void tern_envcache_drop_below(tern_envcache *c, tern_envcache_acct *a, uint64_t seq) {
  while (c->len && c->first < seq) pop_head(c, a);
  if (c->first < seq) c->first = seq;
  release_if_empty(c);
}
