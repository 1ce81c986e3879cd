/* rocksdb.c: the embedded store backend, RocksDB through its C API. It implements the
 * primitives of backend.h (inbox append/read/purge, KV buckets, the commit point) and nothing
 * of their meaning, which semantics.c gives them. What is its own: the key layout, the inbox
 * counters and their journal, the cache of recent envelopes, and the group's overlay.
 *
 * A group is ONE plain RocksDB write batch, committed with one synced write (the commit point).
 * The group's writes are staged in its own list first and go into the batch at the commit
 * sorted by key (see "the group's writes" below): sorted, each memtable insert starts where
 * the previous one ended instead of searching the skip list from its top.
 *
 * Read-your-writes inside a group, without reading the batch. RocksDB sees a group's writes
 * only at its commit, so reads must find what the group wrote elsewhere:
 *  - envelopes: every appended envelope is also put in its inbox's envcache (envcache.h), and
 *    every read takes the cached suffix of the inbox from there and only the older, committed
 *    part from RocksDB;
 *  - KV records go through the group's overlay, a small map of the keys this group wrote or
 *    deleted, consulted before RocksDB.
 * (An earlier version used a write batch with index for this; its skiplist and the read-backs
 * of acked envelopes cost more CPU than the writes themselves.)
 *
 * Key layout (one keyspace; the first byte is the record type). It is the layout v1 wrote, so
 * data dirs of v1 open unchanged:
 *   "u/<user>"                 → USERS bucket, raw
 *   "d/<device_id>"            → DEVICES bucket, raw
 *   "i/<device_id>/<client id>"→ DEDUP bucket    [1 ver][8 ts][value]
 *   "r/<token key>"            → TOKENS bucket   [1 ver][8 ts][value]
 *   "b/<body id>"              → BODIES bucket   [1 ver][8 ts][value]
 *   "k/<key>"                  → RECORDS bucket, raw
 *   "m/<msg_id>"               → MSGS bucket     [1 ver][8 ts][value]
 *   "q/<inbox>"                → inbox meta      [1 ver][8 next_seq][8 first_seq] (checkpointed)
 *   "j/<be64 n>"               → meta journal    [1 ver]([2 n][inbox][8 next_seq][8 first_seq])*
 *   "e/<inbox>\0<seq>"         → envelope record (envelope.h); seq is a big-endian u64, so a
 *                                prefix iterator walks an inbox in seq order ('\0' separates:
 *                                inbox names never hold NUL, and "a" sorts before "ab")
 * Integers are big-endian; ver is 1. TTL buckets carry their write time so that kv_expire can
 * find old records by scanning.
 *
 * Inboxes in memory. The commit thread keeps {next_seq, first_seq} of every inbox in a map. The
 * envelopes of an inbox are exactly the seqs [first_seq, next_seq): appends add at the end,
 * purges remove from the head, forgets drop it. So counts need no scans, and reads know which
 * keys to read. The meta changes when an inbox is created and whenever its head moves; a plain
 * append does not change it, because the envelope's own key records its seq. A group's changed
 * metas go into one journal record, written just before the commit in the same batch, and a
 * checkpoint now and then turns the journal into "q/" keys (see "inbox metas" below). At open,
 * next_seq = max(meta's next_seq, the highest stored seq + 1): the purge that removed the
 * newest envelopes journaled the next_seq of its time, and any later append left a key. So
 * seqs are never reused, across crashes too.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/map.h"
#include "base/util.h"
#include "store/backend.h"
#include "store/envcache.h"
#include "store/envelope.h"

enum {
  REC_VERSION = 1,
  DEFAULT_MAX_OPEN_FILES = 256,  /* fds are the scarcest resource here (DESIGN.md) */
  BLOCK_CACHE_BYTES = 32 << 20,  /* modest: acked envelopes die in the memtable */
  POINT_READ_MAX = 8,            /* ranges up to this many seqs use point reads, not an iterator */
  CACHE_STALE_MS = 1000,         /* at eviction, caches whose head waited this long go first */
};

/* The key tag of each bucket, and whether its records carry a write time. */
static const char bucket_tag[TERN_BUCKET__COUNT] = {'u', 'd', 'i', 'r', 'k', 'b', 'p', 'm'};
static const bool bucket_timed[TERN_BUCKET__COUNT] = {false, false, true, true, false, true, false, true};

/* ---- state --------------------------------------------------------------------------------- */

typedef struct inbox {
  uint64_t next_seq;  /* seq the next envelope gets (starts at 1) */
  uint64_t first_seq; /* lowest stored seq; == next_seq when empty */
  tern_envcache cache;/* the newest envelopes, a suffix of [first_seq, next_seq) */
  bool dirty;         /* in the group's dirty list: journaled before the commit */
  bool dead;          /* dropped from the map during this group; freed at the commit */
  bool cp_dirty;      /* named in cp_names: its meta goes out at the next checkpoint */
  size_t nlen;        /* name length */
  char name[];        /* inbox name, NUL-terminated */
} inbox;

/* One write of the group, staged until the commit (see "the group's writes"). */
typedef enum { WOP_PUT, WOP_DEL, WOP_DEL_RANGE } wop_kind;

typedef struct wop {
  size_t off;         /* key at stage.data + off; the value (put) or the end key (range) follows */
  const char *key;    /* stage.data + off, set at the commit once the stage stops growing */
  uint32_t klen;      /* key length */
  uint32_t vlen;      /* value length (put), end key length (range delete), 0 (delete) */
  uint32_t seg;       /* segment: a range delete has one of its own, which nothing crosses */
  uint32_t idx;       /* position in the group: ops on the same key keep their order */
  wop_kind kind;
} wop;

/* A key the current group wrote or deleted (outside envelopes), for reads later in the group. */
typedef struct ov_entry {
  bool deleted;      /* the group deleted the key */
  size_t len;        /* value length */
  char value[];      /* the value the group wrote */
} ov_entry;

typedef struct rdb {
  tern_backend_options opts;     /* copy; opts.dir points at dir */
  char *dir;                     /* data directory */
  rocksdb_t *db;
  rocksdb_options_t *dbopts;
  rocksdb_block_based_table_options_t *bbto;
  rocksdb_cache_t *cache;
  rocksdb_env_t *env;            /* the default env, its background threads niced */
  rocksdb_writeoptions_t *wsync; /* sync=true: the one fsync per group */
  rocksdb_readoptions_t *ropts;  /* plain reads */
  atomic_int_fast64_t total;     /* envelopes stored, all inboxes (any thread reads) */
  /* The last memory sample (r_memory; any thread reads, the commit thread writes). */
  atomic_int_fast64_t mem_memtables, mem_block_cache, mem_table_readers, mem_envelope_cache;
  int64_t mem_sampled_ms;        /* commit thread: when the sample was taken */
  /* Everything below belongs to the commit thread (and to open/close, before/after it runs). */
  rocksdb_writebatch_t *wb;    /* the group's batch, filled from the stage at the commit */
  tern_buf stage;              /* the group's keys and values, in write order */
  wop *wops;                   /* the group's writes, in write order until the commit sorts them */
  size_t nwops, wops_cap;
  uint32_t wseg;               /* segment of the next write (see wop.seg) */
  tern_map overlay;            /* key → ov_entry*: what this group wrote, except envelopes */
  tern_map inboxes;            /* name → inbox* */
  tern_envcache_acct cacct;    /* envelopes cached by all inboxes */
  size_t cache_budget;         /* bytes the caches may hold before eviction */
  inbox **dirty;               /* inboxes whose meta the group changed (journaled at its end) */
  size_t ndirty, dirty_cap;
  uint64_t journal_first;      /* oldest journal record not yet checkpointed */
  uint64_t journal_next;       /* number of the next journal record */
  int checkpoint_every;        /* journal records between checkpoints */
  tern_buf cp_names;           /* [2 n][name] of inboxes journaled since the last checkpoint */
  size_t cp_count;             /* entries in cp_names */
  int64_t cp_last_ms;          /* when the last checkpoint (or the load) was */
  bool group_failed;           /* a read failed: the group must not commit */
  char group_err[128];         /* why (what why() reports) */
  tern_buf key, key2;          /* scratch keys */
  tern_buf val;                /* scratch value */
  tern_map_iter walk;          /* inbox_next's position */
  tern_buf expire_cursor[TERN_BUCKET__COUNT]; /* kv_expire's position per bucket; empty = start */
} rdb;

/* ---- small encoders ------------------------------------------------------------------------ */





/* "<tag>/<s>" */
static void key_tag(tern_buf *b, char tag, const char *s, size_t n) {
  tern_buf_reset(b);
  tern_buf_putc(b, tag);
  tern_buf_putc(b, '/');
  tern_buf_append(b, s, n);
}

/* "e/<inbox>\0<seq>" */
static void key_env(tern_buf *b, const char *name, size_t n, uint64_t seq) {
  key_tag(b, 'e', name, n);
  tern_buf_putc(b, '\0');
  tern_buf_put_be64(b, seq);
}

/* ---- errors -------------------------------------------------------------------------------- */

/* dst = "a: b", cut to fit (snprintf would do, but GCC's truncation warning objects). */
static void join_trunc(char *dst, size_t cap, const char *a, const char *b) {
  size_t n = 0;
  for (const char *parts[3] = {a, ": ", b}, **p = parts; p < parts + 3; p++) {
    size_t l = TERN_MIN(strlen(*p), cap - 1 - n);
    memcpy(dst + n, *p, l);
    n += l;
  }
  dst[n] = '\0';
}

/* A failed read: the group must not commit (semantics.c fails it with this reason). */
static void fail_group(rdb *st, const char *what, const char *err) {
  if (!st->group_failed) {
    st->group_failed = true;
    join_trunc(st->group_err, sizeof st->group_err, what, err ? err : "?");
  }
}

/* ---- the group's writes ---------------------------------------------------------------------
 * Every write of a group is staged (key and value copied into one buffer, an entry in wops),
 * and the commit puts them into the batch sorted by key. RocksDB applies a batch to the
 * memtable in batch order, and its skip list keeps the position of the previous insert: an
 * insert just after it costs a few comparisons, one elsewhere a search from the top (a few dozen
 * key comparisons here, the largest part of the CPU per message). A group's writes come in
 * op order, which interleaves inboxes, dedup records, tokens and the journal.
 *
 * What must not change is what the batch means. Inside one batch a later write of a key wins
 * (each write gets the next sequence number), so the sort keeps the group's order among writes
 * of the same key (the tiebreak on idx): a put then a delete of one key stays a delete. A
 * range delete covers the writes before it in the batch and none after it, so it gets a
 * segment of its own, and the sort moves nothing across it. The batch has one keyspace (the
 * default column family), ordered bytewise, which is the order of the sort. */

static void wop_add(rdb *st, wop_kind kind, const char *k, size_t klen, const char *v, size_t vlen) {
  if (st->nwops == st->wops_cap) {
    st->wops_cap = st->wops_cap ? 2 * st->wops_cap : 256;
    st->wops = tern_realloc(st->wops, st->wops_cap * sizeof *st->wops);
  }
  wop *w = &st->wops[st->nwops];
  *w = (wop){.off = st->stage.len, .klen = (uint32_t)klen, .vlen = (uint32_t)vlen, .seg = st->wseg,
             .idx = (uint32_t)st->nwops, .kind = kind};
  st->nwops++;
  tern_buf_append(&st->stage, k, klen);
  if (vlen) tern_buf_append(&st->stage, v, vlen);
}

static void wb_put(rdb *st, const char *k, size_t klen, const char *v, size_t vlen) { wop_add(st, WOP_PUT, k, klen, v, vlen); }

static void wb_del(rdb *st, const char *k, size_t klen) { wop_add(st, WOP_DEL, k, klen, NULL, 0); }

/* Deletes the keys in [from, to). */
static void wb_del_range(rdb *st, const char *from, size_t flen, const char *to, size_t tlen) {
  st->wseg++;
  wop_add(st, WOP_DEL_RANGE, from, flen, to, tlen);
  st->wseg++;
}

/* Segment, then key (bytewise, a prefix first), then write order. */
static int wop_cmp(const void *pa, const void *pb) {
  const wop *a = pa, *b = pb;
  if (a->seg != b->seg) return a->seg < b->seg ? -1 : 1;
  int c = memcmp(a->key, b->key, TERN_MIN(a->klen, b->klen));
  if (c) return c;
  if (a->klen != b->klen) return a->klen < b->klen ? -1 : 1;
  return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Fills the batch with the staged writes, sorted. */
static void wb_fill(rdb *st) {
  for (size_t i = 0; i < st->nwops; i++) st->wops[i].key = st->stage.data + st->wops[i].off;
  qsort(st->wops, st->nwops, sizeof *st->wops, wop_cmp);
  for (size_t i = 0; i < st->nwops; i++) {
    const wop *w = &st->wops[i];
    switch (w->kind) {
    case WOP_PUT: rocksdb_writebatch_put(st->wb, w->key, w->klen, w->key + w->klen, w->vlen); break;
    case WOP_DEL: rocksdb_writebatch_delete(st->wb, w->key, w->klen); break;
    case WOP_DEL_RANGE: rocksdb_writebatch_delete_range(st->wb, w->key, w->klen, w->key + w->klen, w->vlen); break;
    }
  }
}

enum { STAGE_KEEP_BYTES = 4 << 20 }; /* a larger stage (a big cascade) is freed after its group */

/* Forgets the staged writes and the batch (after every group, committed or not). */
static void wb_clear(rdb *st) {
  rocksdb_writebatch_clear(st->wb);
  st->nwops = 0;
  st->wseg = 0;
  if (st->stage.cap > STAGE_KEEP_BYTES) {
    tern_buf_free(&st->stage);
    tern_free(st->wops);
    st->wops = NULL;
    st->wops_cap = 0;
  }
  tern_buf_reset(&st->stage);
}

/* ---- writes, and reads that see the group's own writes ------------------------------------- */

static void ov_set(rdb *st, const char *k, size_t klen, const void *v, size_t vlen, bool deleted) {
  ov_entry *o = tern_malloc(sizeof *o + vlen);
  o->deleted = deleted;
  o->len = vlen;
  if (vlen) memcpy(o->value, v, vlen);
  tern_free(tern_map_put(&st->overlay, k, klen, o));
}

static bool ov_free_cb(const char *key, size_t klen, void *value, void *arg) {
  tern_free(value);
  return true;
}

/* Forgets the group's overlay (at the end of every group, committed or not). */
static void ov_clear(rdb *st) {
  if (!st->overlay.count) return;
  tern_map_each(&st->overlay, ov_free_cb, NULL);
  tern_map_free(&st->overlay);
  memset(&st->overlay, 0, sizeof st->overlay);
}

/* Writes a record that a later op of the same group may read back with kv_get. */
static void kv_put(rdb *st, const char *k, size_t klen, const void *v, size_t vlen) {
  wb_put(st, k, klen, v, vlen);
  ov_set(st, k, klen, v, vlen, false);
}

static void kv_del(rdb *st, const char *k, size_t klen) {
  wb_del(st, k, klen);
  ov_set(st, k, klen, NULL, 0, true);
}

/* Reads a committed key. Returns 1 (*v set; free it with rocksdb_free), 0 when absent, -EIO
 * after failing the group. */
static int db_get(rdb *st, const char *k, size_t klen, char **v, size_t *vlen) {
  char *e = NULL;
  *vlen = 0;
  *v = rocksdb_get(st->db, st->ropts, k, klen, vlen, &e);
  if (e) {
    fail_group(st, "read", e);
    rocksdb_free(e);
    rocksdb_free(*v);
    *v = NULL;
    return -EIO;
  }
  return *v ? 1 : 0;
}

/* Reads a record (never an envelope): what this group wrote, else what is committed. Returns 1
 * with the value in out, 0 when absent, -EIO after failing the group. */
static int kv_get(rdb *st, const char *k, size_t klen, tern_buf *out) {
  ov_entry *o = tern_map_get(&st->overlay, k, klen);
  if (o) {
    if (o->deleted) return 0;
    tern_buf_reset(out);
    tern_buf_append(out, o->value, o->len);
    return 1;
  }
  char *v;
  size_t vlen;
  int r = db_get(st, k, klen, &v, &vlen);
  if (r != 1) return r;
  tern_buf_reset(out);
  tern_buf_append(out, v, vlen);
  rocksdb_free(v);
  return 1;
}

/* ---- a plain DB iterator over one record type (committed data only) ------------------------ */

typedef struct prefix_iter {
  rocksdb_readoptions_t *ro; /* carries the upper bound */
  rocksdb_iterator_t *it;
  char upper[2]; /* "<tag>0": '0' follows '/' */
} prefix_iter;

/* pi must not move while open: the read options point at pi->upper. */
static void pit_open(rdb *st, prefix_iter *pi, char tag, bool fill_cache) {
  pi->upper[0] = tag;
  pi->upper[1] = '0';
  pi->ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_iterate_upper_bound(pi->ro, pi->upper, 2);
  rocksdb_readoptions_set_fill_cache(pi->ro, fill_cache);
  pi->it = rocksdb_create_iterator(st->db, pi->ro);
}

/* Returns 0, or -EIO with the iterator's error in err. */
static int pit_close(prefix_iter *pi, char *err, size_t errlen) {
  char *e = NULL;
  rocksdb_iter_get_error(pi->it, &e);
  rocksdb_iter_destroy(pi->it);
  rocksdb_readoptions_destroy(pi->ro);
  if (e) {
    snprintf(err, errlen, "%s", e);
    rocksdb_free(e);
    return -EIO;
  }
  return 0;
}

/* ---- inboxes ------------------------------------------------------------------------------- */

static inbox *inbox_new(rdb *st, const char *name, size_t n, uint64_t next, uint64_t first) {
  inbox *ib = tern_malloc(sizeof *ib + n + 1);
  ib->next_seq = next;
  ib->first_seq = first;
  memset(&ib->cache, 0, sizeof ib->cache);
  ib->cache.first = next; /* nothing cached: the suffix starts at the next append */
  ib->dirty = ib->dead = ib->cp_dirty = false;
  ib->nlen = n;
  memcpy(ib->name, name, n);
  ib->name[n] = '\0';
  tern_map_put(&st->inboxes, name, n, ib);
  return ib;
}

static void inbox_touch(rdb *st, inbox *ib) {
  if (ib->dirty) return;
  ib->dirty = true;
  if (st->ndirty == st->dirty_cap) {
    st->dirty_cap = st->dirty_cap ? st->dirty_cap * 2 : 64;
    st->dirty = tern_realloc(st->dirty, st->dirty_cap * sizeof *st->dirty);
  }
  st->dirty[st->ndirty++] = ib;
}

/* A new inbox writes its meta in the group that creates it; later appends do not (header). */
static inbox *inbox_obtain(rdb *st, const char *name, size_t n) {
  inbox *ib = tern_map_get(&st->inboxes, name, n);
  if (ib) return ib;
  ib = inbox_new(st, name, n, 1, 1);
  inbox_touch(st, ib);
  return ib;
}

/* Forgets an inbox (its envelopes must be gone). It stays in the group's dirty list, marked
 * dead, so that the group's journal record says it is gone, in order: an inbox of the same
 * name re-created later in the group comes after it. */
static void inbox_drop(rdb *st, inbox *ib) {
  tern_map_del(&st->inboxes, ib->name, ib->nlen);
  tern_envcache_reset(&ib->cache, &st->cacct, ib->next_seq);
  inbox_touch(st, ib);
  ib->dead = true; /* freed by dirty_end */
}

/* ---- inbox metas: a journal, checkpointed ---------------------------------------------------
 * A group that moved some inboxes' heads (acks, expiry, moves, deletes) or created inboxes
 * writes ONE journal record "j/<be64 n>" listing them, instead of one "q/" key per inbox: with
 * many inboxes acked per group, those puts were a quarter of the memtable inserts per message.
 * Every `checkpoint_every` records (or 60 s, or 8,192 names), a checkpoint writes the "q/" meta
 * of every inbox named since the last one (deleting the metas of those that are gone) and
 * deletes the records with one range delete, in the same batch as the group. At open, the
 * "q/" metas are read, then the records replayed in order. */

enum {
  CHECKPOINT_NAMES = 8192,    /* names since the last checkpoint that force one */
  CHECKPOINT_MS = 60000,      /* a journal older than this is checkpointed at the next group */
  DEFAULT_CHECKPOINT_EVERY = 1024,
};

static void jkey(tern_buf *b, uint64_t n) {
  tern_buf_reset(b);
  tern_buf_putc(b, 'j');
  tern_buf_putc(b, '/');
  tern_buf_put_be64(b, n);
}

/* Appends [2 n][name]: the form of names in cp_names and in journal entries. */
static void put_name(tern_buf *b, const char *name, size_t n) {
  tern_buf_put_be16(b, n);
  tern_buf_append(b, name, n);
}

/* Remembers that an inbox changed since the last checkpoint. */
static void cp_add(rdb *st, const char *name, size_t n) {
  put_name(&st->cp_names, name, n);
  st->cp_count++;
}

static void cp_note(rdb *st, inbox *ib) {
  if (ib->cp_dirty) return;
  ib->cp_dirty = !ib->dead; /* a dead inbox's struct is freed: a re-created one notes again */
  cp_add(st, ib->name, ib->nlen);
}

static void meta_put(rdb *st, const inbox *ib) {
  key_tag(&st->key, 'q', ib->name, ib->nlen);
  tern_buf_reset(&st->val);
  tern_buf_putc(&st->val, REC_VERSION);
  tern_buf_put_be64(&st->val, ib->next_seq);
  tern_buf_put_be64(&st->val, ib->first_seq);
  wb_put(st, st->key.data, st->key.len, st->val.data, st->val.len);
}

/* Writes the checkpoint into the group's batch (see above). */
static void checkpoint(rdb *st) {
  for (size_t off = 0; off + 2 <= st->cp_names.len;) {
    size_t n = tern_get_be16(st->cp_names.data + off);
    const char *name = st->cp_names.data + off + 2;
    off += 2 + n;
    inbox *ib = tern_map_get(&st->inboxes, name, n);
    if (ib) {
      ib->cp_dirty = false;
      meta_put(st, ib);
    } else {
      key_tag(&st->key, 'q', name, n);
      wb_del(st, st->key.data, st->key.len);
    }
  }
  if (st->journal_next > st->journal_first) {
    jkey(&st->key, st->journal_first);
    jkey(&st->key2, st->journal_next);
    wb_del_range(st, st->key.data, st->key.len, st->key2.data, st->key2.len);
  }
  st->journal_first = st->journal_next;
  tern_buf_reset(&st->cp_names);
  st->cp_count = 0;
  st->cp_last_ms = tern_now_ms();
}

/* Ends the group's dirty list: journals the inboxes it changed (write), or only forgets the
 * list (after a failure, which reloads everything from the DB). */
static void dirty_end(rdb *st, bool write) {
  bool record = write && st->ndirty;
  if (record) {
    tern_buf_reset(&st->val);
    tern_buf_putc(&st->val, REC_VERSION);
  }
  for (size_t i = 0; i < st->ndirty; i++) {
    inbox *ib = st->dirty[i];
    if (record) {
      /* [2 n][name][8 next][8 first]; next 0 = gone */
      put_name(&st->val, ib->name, ib->nlen);
      tern_buf_put_be64(&st->val, ib->dead ? 0 : ib->next_seq);
      tern_buf_put_be64(&st->val, ib->dead ? 0 : ib->first_seq);
      cp_note(st, ib);
    }
    if (ib->dead) {
      tern_free(ib);
      continue;
    }
    ib->dirty = false;
  }
  st->ndirty = 0;
  if (!write) return;
  if (record) {
    jkey(&st->key, st->journal_next++);
    wb_put(st, st->key.data, st->key.len, st->val.data, st->val.len);
  }
  /* By time too, so that an idle server's journal does not wait for traffic (the periodic
   * SWEEP makes a group; it reads checkpointed metas to find inboxes). */
  if (st->journal_next - st->journal_first >= (uint64_t)st->checkpoint_every || st->cp_count >= CHECKPOINT_NAMES ||
      (st->cp_count && tern_now_ms() - st->cp_last_ms >= CHECKPOINT_MS))
    checkpoint(st);
}

static bool free_inbox_cb(const char *key, size_t klen, void *value, void *arg) {
  inbox *ib = value;
  tern_envcache_reset(&ib->cache, arg, ib->next_seq);
  tern_free(ib);
  return true;
}

static void inboxes_clear(rdb *st) {
  tern_map_each(&st->inboxes, free_inbox_cb, &st->cacct);
  tern_map_free(&st->inboxes);
  memset(&st->inboxes, 0, sizeof st->inboxes);
}

/* The highest envelope seq stored for inbox `name`, or 0 when it has none. */
static uint64_t highest_stored(rdb *st, rocksdb_iterator_t *it, const char *name, size_t n) {
  key_env(&st->key2, name, n, UINT64_MAX);
  rocksdb_iter_seek_for_prev(it, st->key2.data, st->key2.len);
  if (!rocksdb_iter_valid(it)) return 0;
  size_t kl;
  const char *k = rocksdb_iter_key(it, &kl);
  size_t plen = st->key2.len - 8;
  if (kl != st->key2.len || memcmp(k, st->key2.data, plen) != 0) return 0;
  return tern_get_be64(k + plen);
}

/* Sets an inbox's counters as loaded (a checkpointed meta or a journal entry). */
static void load_meta(rdb *st, const char *name, size_t n, uint64_t next, uint64_t first) {
  inbox *ib = tern_map_get(&st->inboxes, name, n);
  if (next == 0) { /* gone */
    if (ib) {
      tern_map_del(&st->inboxes, name, n);
      tern_free(ib);
    }
    return;
  }
  if (first > next) return;
  if (!ib) ib = inbox_new(st, name, n, next, first);
  ib->next_seq = next;
  ib->first_seq = first;
}

typedef struct load_ctx {
  rdb *st;
  rocksdb_iterator_t *envs; /* over envelope keys */
  int64_t total;            /* envelopes counted */
} load_ctx;

static bool finish_load_cb(const char *key, size_t klen, void *value, void *arg) {
  load_ctx *c = arg;
  inbox *ib = value;
  uint64_t high = highest_stored(c->st, c->envs, ib->name, ib->nlen);
  if (high >= ib->next_seq) ib->next_seq = high + 1; /* appended after its meta was written */
  ib->cache.first = ib->next_seq;
  c->total += (int64_t)(ib->next_seq - ib->first_seq);
  return true;
}

/* (Re)loads every inbox from the DB (checkpointed metas, then the journal), with empty caches,
 * and recounts the total. Returns 0 or -EIO. */
static int inboxes_load(rdb *st, char *err, size_t errlen) {
  inboxes_clear(st);
  tern_buf_reset(&st->cp_names);
  st->cp_count = 0;
  st->cp_last_ms = tern_now_ms();
  prefix_iter pi;
  pit_open(st, &pi, 'q', false);
  for (rocksdb_iter_seek(pi.it, "q/", 2); rocksdb_iter_valid(pi.it); rocksdb_iter_next(pi.it)) {
    size_t kl, vl;
    const char *k = rocksdb_iter_key(pi.it, &kl);
    const char *v = rocksdb_iter_value(pi.it, &vl);
    if (vl < 17 || v[0] != REC_VERSION) {
      TERN_WARN("store: bad inbox meta", "key=%s", tern_log_quote(k + 2));
      continue;
    }
    load_meta(st, k + 2, kl - 2, tern_get_be64(v + 1), tern_get_be64(v + 9));
  }
  int r = pit_close(&pi, err, errlen);
  if (r < 0) return r;
  /* The journal, in record order; every name in it still needs its checkpoint. */
  bool any = false;
  pit_open(st, &pi, 'j', false);
  for (rocksdb_iter_seek(pi.it, "j/", 2); rocksdb_iter_valid(pi.it); rocksdb_iter_next(pi.it)) {
    size_t kl, vl;
    const char *k = rocksdb_iter_key(pi.it, &kl);
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(pi.it, &vl);
    if (kl != 10) continue;
    uint64_t n = tern_get_be64(k + 2);
    if (!any) st->journal_first = n;
    any = true;
    st->journal_next = n + 1;
    if (vl < 1 || v[0] != REC_VERSION) continue;
    for (size_t off = 1; off + 2 <= vl;) {
      size_t nl = tern_get_be16(v + off);
      if (off + 2 + nl + 16 > vl) break;
      const char *name = (const char *)v + off + 2;
      load_meta(st, name, nl, tern_get_be64(name + nl), tern_get_be64(name + nl + 8));
      cp_add(st, name, nl);
      off += 2 + nl + 16;
    }
  }
  if (!any) st->journal_first = st->journal_next;
  r = pit_close(&pi, err, errlen);
  if (r < 0) return r;
  load_ctx c = {.st = st, .envs = rocksdb_create_iterator(st->db, st->ropts)};
  tern_map_each(&st->inboxes, finish_load_cb, &c);
  char *e = NULL;
  rocksdb_iter_get_error(c.envs, &e);
  rocksdb_iter_destroy(c.envs);
  if (e) {
    snprintf(err, errlen, "%s", e);
    rocksdb_free(e);
    r = -EIO;
  }
  atomic_store(&st->total, c.total);
  return r;
}

/* ---- envelopes ----------------------------------------------------------------------------- */

/* Stores an envelope as the next seq of ib, in the batch and in ib's cache. */
static uint64_t env_append(rdb *st, inbox *ib, const uint8_t *v, size_t len) {
  uint64_t seq = ib->next_seq++;
  key_env(&st->key, ib->name, ib->nlen, seq);
  wb_put(st, st->key.data, st->key.len, (const char *)v, len);
  tern_envcache_push(&ib->cache, &st->cacct, seq, v, len);
  return seq;
}

/* Deletes ib's envelopes [first_seq, to] (they must exist: to < next_seq) and moves its head. */
static void env_remove_head(rdb *st, inbox *ib, uint64_t to) {
  for (uint64_t s = ib->first_seq; s <= to; s++) {
    key_env(&st->key, ib->name, ib->nlen, s);
    wb_del(st, st->key.data, st->key.len);
  }
  atomic_fetch_sub(&st->total, (int64_t)(to - ib->first_seq + 1));
  ib->first_seq = to + 1;
  tern_envcache_drop_below(&ib->cache, &st->cacct, to + 1);
  inbox_touch(st, ib);
}

/* Visits stored envelopes of ib with seq in [from, to], in order; stops when fn returns false.
 * fn must not change ib nor use st->key2. Returns 0, or -EIO after failing the group. */
typedef bool (*env_visit)(uint64_t seq, const uint8_t *v, size_t len, void *arg);

/* The part of a range below the cache: committed (envcache.h), so read from RocksDB alone.
 * Returns 0 when done, 1 when fn stopped it, -EIO after failing the group. */
static int env_range_db(rdb *st, const inbox *ib, uint64_t from, uint64_t to, env_visit fn, void *arg) {
  if (to - from < POINT_READ_MAX) {
    /* Short ranges (an ack of a few envelopes): point reads beat an iterator. */
    for (uint64_t s = from; s <= to; s++) {
      key_env(&st->key2, ib->name, ib->nlen, s);
      char *v;
      size_t n;
      int r = db_get(st, st->key2.data, st->key2.len, &v, &n);
      if (r < 0) return r;
      if (r == 0) continue;
      bool go = fn(s, (const uint8_t *)v, n, arg);
      rocksdb_free(v);
      if (!go) return 1;
    }
    return 0;
  }
  key_env(&st->key2, ib->name, ib->nlen, from);
  size_t plen = st->key2.len - 8;
  int ret = 0;
  rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ropts);
  for (rocksdb_iter_seek(it, st->key2.data, st->key2.len); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t kl, vl;
    const char *k = rocksdb_iter_key(it, &kl);
    if (kl != plen + 8 || memcmp(k, st->key2.data, plen) != 0) break;
    uint64_t s = tern_get_be64(k + plen);
    if (s > to) break;
    if (s < from) continue;
    const char *v = rocksdb_iter_value(it, &vl);
    if (!fn(s, (const uint8_t *)v, vl, arg)) {
      ret = 1;
      break;
    }
    if (s == to) break; /* stop without stepping past `to`: beyond it lie only tombstones */
  }
  char *e = NULL;
  rocksdb_iter_get_error(it, &e);
  rocksdb_iter_destroy(it);
  if (e) {
    fail_group(st, "scan", e);
    rocksdb_free(e);
    return -EIO;
  }
  return ret;
}

static int env_range(rdb *st, const inbox *ib, uint64_t from, uint64_t to, env_visit fn, void *arg) {
  if (from > to) return 0;
  if (from < ib->cache.first) {
    uint64_t db_to = TERN_MIN(to, ib->cache.first - 1);
    int r = env_range_db(st, ib, from, db_to, fn, arg);
    if (r != 0) return r < 0 ? r : 0;
    from = db_to + 1;
  }
  for (uint64_t s = from; s <= to; s++) {
    size_t n;
    const uint8_t *v = tern_envcache_get(&ib->cache, s, &n);
    if (v && !fn(s, v, n, arg)) break;
  }
  return 0;
}

typedef struct evict_ctx {
  rdb *st;
  int64_t cutoff; /* caches whose oldest envelope is older than this go (ms); INT64_MAX = all */
} evict_ctx;

static bool evict_cb(const char *key, size_t klen, void *value, void *arg) {
  evict_ctx *c = arg;
  inbox *ib = value;
  size_t n;
  const uint8_t *v = tern_envcache_get(&ib->cache, ib->cache.first, &n);
  tern_env_view ev;
  if (v && (c->cutoff == INT64_MAX || tern_env_unpack(v, n, &ev) != 0 || ev.ts < c->cutoff))
    tern_envcache_reset(&ib->cache, &c->st->cacct, ib->next_seq);
  return true;
}

/* Keeps the caches within their budget, after a commit (what they drop is then in RocksDB).
 * Envelopes that waited long belong to devices that are away: their inboxes' caches go first,
 * and everything goes only if that was not enough. A pass walks every inbox, so it runs only
 * past the budget and frees at least half of it. */
static void cache_evict(rdb *st) {
  if (st->cacct.bytes <= st->cache_budget) return;
  size_t before = st->cacct.bytes;
  evict_ctx c = {.st = st, .cutoff = tern_now_ms() - CACHE_STALE_MS};
  tern_map_each(&st->inboxes, evict_cb, &c);
  if (st->cacct.bytes > st->cache_budget / 2) {
    c.cutoff = INT64_MAX;
    tern_map_each(&st->inboxes, evict_cb, &c);
  }
  TERN_DEBUG("store cache evicted", "bytes_before=%zu bytes_after=%zu", before, st->cacct.bytes);
}

/* ---- the primitives (commit thread) ---------------------------------------------------------- */

/* RocksDB's per-operation perf counters are thread-local and cost a TLS lookup per get and
 * put (8 % of the instructions of a message when they were on); nothing reads them. */
static void r_thread_start(void *be) { rocksdb_set_perf_level(rocksdb_disable); }

static void r_begin(void *be) {
  rdb *st = be;
  st->group_failed = false;
  st->group_err[0] = '\0';
}

static const char *r_why(void *be) { return ((rdb *)be)->group_err; }

static int r_inbox_get(void *be, const char *name, size_t n, tern_inbox_info *out) {
  rdb *st = be;
  inbox *ib = tern_map_get(&st->inboxes, name, n);
  if (!ib) return -ENOENT;
  out->first_seq = ib->first_seq;
  out->next_seq = ib->next_seq;
  return 0;
}

static int r_append(void *be, const char *name, size_t n, const uint8_t *v, size_t len, uint64_t *seq) {
  rdb *st = be;
  if (st->group_failed) return -EIO;
  *seq = env_append(st, inbox_obtain(st, name, n), v, len);
  atomic_fetch_add(&st->total, 1);
  return 0;
}

typedef struct read_ctx {
  tern_env_visit fn; /* the caller's visitor */
  void *arg;
} read_ctx;

static int r_read(void *be, const char *name, size_t n, uint64_t from, uint64_t to, tern_env_visit fn, void *arg) {
  rdb *st = be;
  if (st->group_failed) return -EIO;
  inbox *ib = tern_map_get(&st->inboxes, name, n);
  if (!ib) return 0;
  if (from < ib->first_seq) from = ib->first_seq;
  if (to >= ib->next_seq) to = ib->next_seq - 1;
  if (from > to) return 0;
  return env_range(st, ib, from, to, fn, arg) < 0 ? -EIO : 0;
}

/* A put over the envelope's key: the batch makes the old bytes go at the commit, and a cached
 * copy (this group's or a recent one) is replaced too, so reads in the group see the new one. */
static int r_replace(void *be, const char *name, size_t n, uint64_t seq, const uint8_t *v, size_t len) {
  rdb *st = be;
  if (st->group_failed) return -EIO;
  inbox *ib = tern_map_get(&st->inboxes, name, n);
  if (!ib || seq < ib->first_seq || seq >= ib->next_seq) return -ENOENT;
  key_env(&st->key, ib->name, ib->nlen, seq);
  wb_put(st, st->key.data, st->key.len, (const char *)v, len);
  tern_envcache_set(&ib->cache, &st->cacct, seq, v, len);
  return 0;
}

static int r_purge(void *be, const char *name, size_t n, uint64_t upto) {
  rdb *st = be;
  if (st->group_failed) return -EIO;
  inbox *ib = tern_map_get(&st->inboxes, name, n);
  if (!ib || upto < ib->first_seq) return 0;
  if (upto >= ib->next_seq) upto = ib->next_seq - 1;
  env_remove_head(st, ib, upto);
  return 0;
}

static int r_forget(void *be, const char *name, size_t n) {
  rdb *st = be;
  inbox *ib = tern_map_get(&st->inboxes, name, n);
  if (!ib) return 0;
  if (ib->first_seq < ib->next_seq) env_remove_head(st, ib, ib->next_seq - 1);
  inbox_drop(st, ib);
  return 0;
}

/* Walks the in-memory map (every inbox with counters), returning those with envelopes. */
static int r_inbox_next(void *be, tern_buf *out) {
  rdb *st = be;
  const char *k;
  size_t kl;
  void *v;
  while (tern_map_next(&st->inboxes, &st->walk, &k, &kl, &v)) {
    inbox *ib = v;
    if (ib->first_seq == ib->next_seq) continue;
    tern_buf_reset(out);
    tern_buf_append(out, k, kl);
    return 1;
  }
  return 0;
}

static void bucket_key(tern_buf *b, tern_bucket bk, const char *key, size_t klen) { key_tag(b, bucket_tag[bk], key, klen); }

static int r_kv_get(void *be, tern_bucket bk, const char *key, size_t klen, tern_buf *out, int64_t *ts) {
  rdb *st = be;
  if (st->group_failed) return -EIO;
  bucket_key(&st->key, bk, key, klen);
  int r = kv_get(st, st->key.data, st->key.len, out);
  if (r != 1) return r;
  if (!bucket_timed[bk]) {
    if (ts) *ts = 0;
    return 1;
  }
  if (out->len < 9 || out->data[0] != REC_VERSION) {
    /* unreadable: treated as absent, as v1 did for a token it could not parse */
    tern_buf_reset(out);
    return 0;
  }
  if (ts) *ts = (int64_t)tern_get_be64(out->data + 1);
  tern_buf_consume(out, 9);
  return 1;
}

static int r_kv_put(void *be, tern_bucket bk, const char *key, size_t klen, const void *v, size_t vlen, int64_t ts) {
  rdb *st = be;
  if (st->group_failed) return -EIO;
  bucket_key(&st->key, bk, key, klen);
  if (bucket_timed[bk]) {
    tern_buf_reset(&st->val);
    tern_buf_putc(&st->val, REC_VERSION);
    tern_buf_put_be64(&st->val, (uint64_t)(ts ? ts : tern_now_ms()));
    tern_buf_append(&st->val, v, vlen);
    kv_put(st, st->key.data, st->key.len, st->val.data, st->val.len);
  } else {
    kv_put(st, st->key.data, st->key.len, v, vlen);
  }
  return 0;
}

static int r_kv_del(void *be, tern_bucket bk, const char *key, size_t klen) {
  rdb *st = be;
  if (st->group_failed) return -EIO;
  bucket_key(&st->key, bk, key, klen);
  kv_del(st, st->key.data, st->key.len);
  return 0;
}

typedef struct prefix_keys {
  const tern_buf *prefix; /* keys starting with this */
  tern_buf *out;          /* collected as [8 len][key] */
} prefix_keys;

static bool ov_prefix_cb(const char *key, size_t klen, void *value, void *arg) {
  prefix_keys *c = arg;
  ov_entry *o = value;
  if (!o->deleted && klen >= c->prefix->len && memcmp(key, c->prefix->data, c->prefix->len) == 0) {
    tern_buf_put_be64(c->out, klen);
    tern_buf_append(c->out, key, klen);
  }
  return true;
}

/* The committed keys with the prefix and this group's, collected first, then deleted
 * (deleting one twice is harmless). */
static int r_kv_del_prefix(void *be, tern_bucket bk, const char *prefix, size_t plen) {
  rdb *st = be;
  if (st->group_failed) return -EIO;
  bucket_key(&st->key2, bk, prefix, plen);
  tern_buf keys = {0};
  rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ropts);
  for (rocksdb_iter_seek(it, st->key2.data, st->key2.len); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t kl;
    const char *k = rocksdb_iter_key(it, &kl);
    if (kl < st->key2.len || memcmp(k, st->key2.data, st->key2.len) != 0) break;
    tern_buf_put_be64(&keys, kl);
    tern_buf_append(&keys, k, kl);
  }
  char *e = NULL;
  rocksdb_iter_get_error(it, &e);
  rocksdb_iter_destroy(it);
  if (e) {
    fail_group(st, "scan", e);
    rocksdb_free(e);
    tern_buf_free(&keys);
    return -EIO;
  }
  prefix_keys pk = {.prefix = &st->key2, .out = &keys};
  tern_map_each(&st->overlay, ov_prefix_cb, &pk);
  for (size_t off = 0; off + 8 <= keys.len;) {
    size_t n = (size_t)tern_get_be64(keys.data + off);
    off += 8;
    kv_del(st, keys.data + off, n);
    off += n;
  }
  tern_buf_free(&keys);
  return 0;
}

/* Scans committed keys of a timed bucket from the bucket's cursor; deletes those written
 * before cutoff. Per-key decisions see the group through the overlay, or are harmless when
 * repeated (deleting a key this group already deleted). */
static int r_kv_expire(void *be, tern_bucket bk, int64_t cutoff, long *budget, uint64_t *expired) {
  rdb *st = be;
  if (st->group_failed) return -EIO;
  if (!bucket_timed[bk]) return 1;
  char tag = bucket_tag[bk];
  tern_buf *cursor = &st->expire_cursor[bk];
  prefix_iter pi;
  pit_open(st, &pi, tag, false);
  char start[2] = {tag, '/'};
  if (cursor->len) rocksdb_iter_seek(pi.it, cursor->data, cursor->len);
  else rocksdb_iter_seek(pi.it, start, 2);
  bool finished = true;
  for (; rocksdb_iter_valid(pi.it); rocksdb_iter_next(pi.it)) {
    if (*budget <= 0) {
      finished = false;
      break;
    }
    (*budget)--;
    size_t kl, vl;
    const char *k = rocksdb_iter_key(pi.it, &kl);
    const char *v = rocksdb_iter_value(pi.it, &vl);
    bool old = vl < 9 || v[0] != REC_VERSION || (int64_t)tern_get_be64(v + 1) < cutoff;
    if (old) {
      /* The group's own writes win: a record it deleted is gone already, and one it rewrote
       * carries the time of the rewrite. */
      ov_entry *o = tern_map_get(&st->overlay, k, kl);
      if (o && (o->deleted || (o->len >= 9 && (int64_t)tern_get_be64(o->value + 1) >= cutoff))) old = false;
    }
    if (old) {
      kv_del(st, k, kl);
      if (expired) (*expired)++;
    }
    tern_buf_reset(cursor);
    tern_buf_append(cursor, k, kl);
    tern_buf_putc(cursor, '\0'); /* the smallest key after this one */
  }
  char err[128];
  if (pit_close(&pi, err, sizeof err) < 0) {
    fail_group(st, "expire scan", err);
    return -EIO;
  }
  if (finished) tern_buf_reset(cursor);
  return finished ? 1 : 0;
}

static int r_commit(void *be, char *err, size_t errlen) {
  rdb *st = be;
  if (st->group_failed) {
    snprintf(err, errlen, "%s", st->group_err);
    return -EIO;
  }
  dirty_end(st, true);
  int r = 0;
  if (st->nwops > 0) {
    wb_fill(st);
    char *e = NULL;
    rocksdb_write(st->db, st->wsync, st->wb, &e);
    if (e) {
      snprintf(err, errlen, "commit: %s", e);
      fail_group(st, "commit", e);
      rocksdb_free(e);
      r = -EIO;
    } else {
      r = 1;
    }
  }
  wb_clear(st);
  ov_clear(st);
  return r;
}

static void r_rollback(void *be) {
  rdb *st = be;
  dirty_end(st, false);
  wb_clear(st);
  ov_clear(st);
  /* The in-memory counters ran ahead of the DB: reload them from what is committed. */
  char err[128];
  if (inboxes_load(st, err, sizeof err) < 0) TERN_ERROR("store reload failed", "err=%s", tern_log_quote(err));
  memset(&st->walk, 0, sizeof st->walk);
}

/* RocksDB's figures take its locks (the DB mutex, the cache's shards), so they are read here,
 * on the commit thread, at most once a second, and /metrics reads the atomics. */
static void mem_sample(rdb *st) {
  uint64_t v = 0;
  if (rocksdb_property_int(st->db, "rocksdb.cur-size-all-mem-tables", &v) == 0)
    atomic_store(&st->mem_memtables, (int64_t)v);
  v = 0;
  if (rocksdb_property_int(st->db, "rocksdb.estimate-table-readers-mem", &v) == 0)
    atomic_store(&st->mem_table_readers, (int64_t)v);
  atomic_store(&st->mem_block_cache, (int64_t)rocksdb_cache_get_usage(st->cache));
  atomic_store(&st->mem_envelope_cache, (int64_t)st->cacct.bytes);
  st->mem_sampled_ms = tern_now_ms();
}

static void r_after_commit(void *be) {
  rdb *st = be;
  cache_evict(st);
  if (tern_now_ms() - st->mem_sampled_ms >= 1000) mem_sample(st);
}

static void r_memory(void *be, tern_store_memory *out) {
  rdb *st = be;
  out->memtables = atomic_load(&st->mem_memtables);
  out->block_cache = atomic_load(&st->mem_block_cache);
  out->table_readers = atomic_load(&st->mem_table_readers);
  out->envelope_cache = atomic_load(&st->mem_envelope_cache);
}

/* ---- outside groups ------------------------------------------------------------------------ */

static int r_load(void *be, tern_bucket bk, tern_kv_visit fn, void *arg, char *err, size_t errlen) {
  rdb *st = be;
  char tag = bucket_tag[bk];
  char start[2] = {tag, '/'};
  prefix_iter pi;
  pit_open(st, &pi, tag, false);
  for (rocksdb_iter_seek(pi.it, start, 2); rocksdb_iter_valid(pi.it); rocksdb_iter_next(pi.it)) {
    size_t kl, vl;
    const char *k = rocksdb_iter_key(pi.it, &kl);
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(pi.it, &vl);
    int64_t ts = 0;
    if (bucket_timed[bk]) {
      if (vl < 9 || v[0] != REC_VERSION) continue;
      ts = (int64_t)tern_get_be64(v + 1);
      v += 9;
      vl -= 9;
    }
    if (!fn(k + 2, kl - 2, v, vl, ts, arg)) break;
  }
  if (pit_close(&pi, err, errlen) < 0) return -EIO;
  return 0;
}

static int64_t r_total(void *be) { return (int64_t)atomic_load(&((rdb *)be)->total); }

/* Frees what open created; safe on a partly opened st. */
static void rdb_destroy(rdb *st) {
  if (st->db) rocksdb_close(st->db);
  if (st->wb) rocksdb_writebatch_destroy(st->wb);
  tern_buf_free(&st->stage);
  tern_free(st->wops);
  ov_clear(st);
  if (st->wsync) rocksdb_writeoptions_destroy(st->wsync);
  if (st->ropts) rocksdb_readoptions_destroy(st->ropts);
  if (st->dbopts) rocksdb_options_destroy(st->dbopts);
  if (st->bbto) rocksdb_block_based_options_destroy(st->bbto);
  if (st->cache) rocksdb_cache_destroy(st->cache);
  if (st->env) rocksdb_env_destroy(st->env);
  inboxes_clear(st);
  tern_free(st->dirty);
  tern_buf_free(&st->key);
  tern_buf_free(&st->key2);
  tern_buf_free(&st->val);
  tern_buf_free(&st->cp_names);
  for (int i = 0; i < TERN_BUCKET__COUNT; i++) tern_buf_free(&st->expire_cursor[i]);
  tern_free(st->dir);
  tern_free(st);
}

static void r_close(void *be) {
  rdb *st = be;
  /* Everything is in the WAL already; the flush only makes the next open replay nothing. */
  rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
  rocksdb_flushoptions_set_wait(fo, 1);
  char *e = NULL;
  rocksdb_flush(st->db, fo, &e);
  rocksdb_flushoptions_destroy(fo);
  if (e) {
    TERN_ERROR("store flush failed", "err=%s", tern_log_quote(e));
    rocksdb_free(e);
  }
  TERN_INFO("store closed", "backend=rocksdb dir=%s envelopes=%lld", tern_log_quote(st->dir),
            (long long)atomic_load(&st->total));
  rdb_destroy(st);
}

static const tern_backend_vt rdb_vt = {
    .name = "rocksdb",
    .thread_start = r_thread_start,
    .begin = r_begin,
    .inbox_get = r_inbox_get,
    .append = r_append,
    .read = r_read,
    .replace = r_replace,
    .purge = r_purge,
    .forget = r_forget,
    .inbox_next = r_inbox_next,
    .kv_get = r_kv_get,
    .kv_put = r_kv_put,
    .kv_del = r_kv_del,
    .kv_del_prefix = r_kv_del_prefix,
    .kv_expire = r_kv_expire,
    .commit = r_commit,
    .rollback = r_rollback,
    .after_commit = r_after_commit,
    .load = r_load,
    .why = r_why,
    .total = r_total,
    .memory = r_memory,
    .close = r_close,
};

int tern_backend_open_rocksdb(const tern_backend_options *opts, tern_backend *out, char *err, size_t errlen) {
  if (!opts || !opts->dir || !*opts->dir) {
    snprintf(err, errlen, "no data directory");
    return -EINVAL;
  }
  rdb *st = TERN_NEW(rdb);
  st->opts = *opts;
  st->dir = tern_strdup(opts->dir);
  st->opts.dir = st->dir;
  if (st->opts.max_open_files <= 0) st->opts.max_open_files = DEFAULT_MAX_OPEN_FILES;

  st->cache = rocksdb_cache_create_lru(BLOCK_CACHE_BYTES);
  st->bbto = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(st->bbto, st->cache);
  /* Every send looks up its client id, and nearly every lookup misses: bloom filters (in the
   * tables and in the memtable) answer most misses without searching. */
  rocksdb_block_based_options_set_filter_policy(st->bbto, rocksdb_filterpolicy_create_bloom_full(10));
  st->dbopts = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(st->dbopts, 1);
  rocksdb_options_set_max_open_files(st->dbopts, st->opts.max_open_files);
  rocksdb_options_set_block_based_table_factory(st->dbopts, st->bbto);
  rocksdb_options_set_keep_log_file_num(st->dbopts, 4); /* RocksDB's own LOG files */
  /* Flushes and compactions may wait: at full CPU priority a 64 MiB memtable flush took the
   * shared core from the loop and commit threads for tens of milliseconds, which was the p99
   * of a server at half load. Niced, they run in the time those threads leave idle; if they
   * fall behind, RocksDB's write stall gives them the core. */
  st->env = rocksdb_create_default_env();
  rocksdb_env_lower_thread_pool_cpu_priority(st->env);
  rocksdb_env_lower_high_priority_thread_pool_cpu_priority(st->env);
  rocksdb_options_set_env(st->dbopts, st->env);
  rocksdb_options_set_memtable_prefix_bloom_size_ratio(st->dbopts, 0.05);
  rocksdb_options_set_memtable_whole_key_filtering(st->dbopts, 1);
  st->wsync = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(st->wsync, 1);
  st->ropts = rocksdb_readoptions_create();
  st->wb = rocksdb_writebatch_create();
  st->cache_budget = st->opts.cache_bytes;
  st->checkpoint_every = st->opts.checkpoint_every > 0 ? st->opts.checkpoint_every : DEFAULT_CHECKPOINT_EVERY;

  char *e = NULL;
  st->db = rocksdb_open(st->dbopts, st->dir, &e);
  if (e) {
    snprintf(err, errlen, "rocksdb open %s: %s", st->dir, e);
    rocksdb_free(e);
    st->db = NULL;
    rdb_destroy(st);
    return -EIO;
  }
  if (inboxes_load(st, err, errlen) < 0) {
    rdb_destroy(st);
    return -EIO;
  }
  mem_sample(st);
  out->vt = &rdb_vt;
  out->self = st;
  TERN_DEBUG("rocksdb opened", "dir=%s inboxes=%zu envelopes=%lld max_open_files=%d", tern_log_quote(st->dir),
             st->inboxes.count, (long long)atomic_load(&st->total), st->opts.max_open_files);
  return 0;
}
