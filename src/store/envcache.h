/* envcache: the store thread's memory of recent envelopes, per inbox.
 *
 * Why. Most envelopes are acked within milliseconds of being stored. Reading each one back from
 * RocksDB at its ack (to learn whether it carries a delivery receipt) and at the drain that
 * sends it cost more than writing it. So the store keeps a copy of the newest envelopes of each
 * inbox in memory, and reads RocksDB only for the older ones.
 *
 * Shape. A cache holds a contiguous run of seqs [first, first + len) and the store keeps it a
 * suffix of the inbox: every append goes in at the end, acks and expiry take from the head,
 * and eviction drops a whole prefix. Everything below `first` is committed in RocksDB, since
 * eviction runs only after a group commit. Values are copied in and owned by the cache.
 *
 * Accounting. Every cache adds its bytes to one shared tern_envcache_acct, which
 * the store compares with its memory budget. Store thread only; nothing here locks.
 */
#ifndef TERN_STORE_ENVCACHE_H
#define TERN_STORE_ENVCACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct tern_envcache_acct {
  size_t bytes; /* value bytes cached, all inboxes */
} tern_envcache_acct;

typedef struct tern_envcache {
  uint8_t **ring;  /* cached values, each [4 len][bytes]; NULL while empty (idle inboxes cost nothing) */
  uint32_t head;   /* ring index of seq `first` */
  uint32_t len;    /* envelopes cached */
  uint32_t cap;    /* ring slots (a power of two), 0 while ring is NULL */
  uint64_t first;  /* seq of the oldest cached envelope; the next seq to append when len == 0 */
} tern_envcache;

/* Empties c (freeing its values) and makes `next` the next seq it accepts. */
void tern_envcache_reset(tern_envcache *c, tern_envcache_acct *a, uint64_t next);
/* Caches a copy of value as seq. seq must be first + len (the next one); otherwise the cache is
 * reset to start at seq, which keeps it a suffix. */
void tern_envcache_push(tern_envcache *c, tern_envcache_acct *a, uint64_t seq, const uint8_t *value, size_t len);
/* The cached value of seq (pointer into the cache, valid until the cache changes), or NULL when
 * seq is not cached. */
const uint8_t *tern_envcache_get(const tern_envcache *c, uint64_t seq, size_t *len);
/* Replaces the cached value of seq with a copy of value (a delete taking its original's place,
 * PROTOCOL.md 15); nothing when seq is not cached. */
void tern_envcache_set(tern_envcache *c, tern_envcache_acct *a, uint64_t seq, const uint8_t *value, size_t len);
/* Drops every cached envelope with a seq below `seq` (acked or expired); first becomes at
 * least seq. */
void tern_envcache_drop_below(tern_envcache *c, tern_envcache_acct *a, uint64_t seq);
/* The seq after the newest cached envelope (first + len). */
static inline uint64_t tern_envcache_end(const tern_envcache *c) { return c->first + c->len; }

#endif
