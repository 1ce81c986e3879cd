/* rocksdb.c: the embedded store backend, RocksDB through its C API.
 *
 * Threads. One store thread owns every write. tern_store_submit (loop thread) stages the op;
 * at the end of the loop iteration (a prepare handle) the staged ops move to a mutex-protected
 * queue with one condvar signal; the store thread takes up to group_max ops,
 * applies them in order into ONE plain write batch, commits that batch with one synced write,
 * then hands the ops to a completion queue and wakes the loop with uv_async_send. The async
 * callback (loop thread) runs op->done in submission order and frees each op. So there is one
 * fsync per group, never one per op, and at most one durable batch in flight.
 *
 * Read-your-writes inside a group, without reading the batch. RocksDB only sees a group's
 * writes at its commit, so an op must find what the ops before it in the same group did
 * elsewhere:
 *  - envelopes: every appended envelope is also put in its inbox's envcache (envcache.h), and
 *    every envelope read (ack, drain, move, expiry) takes the cached suffix of the inbox from
 *    there and only the older, committed part from RocksDB;
 *  - the other records a group reads back (client ids, delivery tokens, user and device
 *    records) go through the group's overlay, a small map of the keys this group wrote or
 *    deleted, consulted before RocksDB.
 * So a resend with the same dedup key in the same group is DUPLICATE of the first, and a
 * delivery token consumed by one ack is gone for the next. (An earlier version used a write
 * batch with index for this; its skiplist and the read-backs of acked envelopes cost more CPU
 * than the writes themselves.)
 *
 * DRAIN. A drain sees every op before it in its group, and nothing after. Its completion, like
 * all others, is posted only after its group committed, and in op order. So when the loop
 * receives a drain result every item in it is durable, every APPEND whose envelope the drain
 * included completed before it, and every APPEND it did not include completes after it. If the
 * commit fails, the drain fails with the group (ERROR), so the loop never sees an envelope that
 * was not committed.
 *
 * Key layout (one keyspace; the first byte is the record type):
 *   "u/<user>"                 → user record    [1 ver][8 created][8 last_seen][2 n][pwhash]
 *   "d/<device_id>"            → device record  [1 ver][8 created][8 last_seen][32 token hash]
 *                                               [2 n][user][2 n][label][2 n][push]
 *   "q/<inbox>"                → inbox meta     [1 ver][8 next_seq][8 first_seq] (checkpointed)
 *   "j/<be64 n>"               → meta journal   [1 ver]([2 n][inbox][8 next_seq][8 first_seq])*
 *   "e/<inbox>\0<seq>"         → packed envelope (store.h); seq is a big-endian u64, so a
 *                                prefix iterator walks an inbox in seq order ('\0' separates:
 *                                inbox names never hold NUL, and "a" sorts before "ab")
 *   "i/<device_id>/<client id>"→ dedup record   [1 ver][8 ts][msg_id]
 *   "r/<msg_id>"               → delivery token [1 ver][8 ts][from]
 *   "k/<key>"                  → KV_PUT records of other modules
 * Integers are big-endian; ver is 1.
 *
 * Inboxes in memory. The store thread keeps {next_seq, first_seq} of every inbox in a map. The
 * envelopes of an inbox are exactly the seqs [first_seq, next_seq): appends add at the end,
 * acks and expiry remove from the head, moves and deletes empty it. So counts need no scans,
 * and acks and drains know which keys to read. The meta changes when an inbox is created and
 * whenever its head moves; a plain append does not change it, because the envelope's own key
 * records its seq. A group's changed metas go into one journal record, written just before the
 * commit in the same batch, and a checkpoint now and then turns the journal into "q/" keys (see
 * "inbox metas" below). At open, next_seq = max(meta's next_seq, the highest stored seq + 1):
 * the ack that removed the newest envelopes journaled the next_seq of its time, and any later
 * append left a key. So seqs are never reused, across crashes too.
 *
 * Delivery tokens. A message whose recipient has exactly one copy (TERN_ENV_F_SOLE) needs no
 * token: its envelope is deleted by the first ack, once, so that ack reports it delivered.
 * Only messages to several recipient devices write an "r/" token for the first ack to consume.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <rocksdb/c.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/map.h"
#include "base/util.h"
#include "store/store.h"
#include "store/envcache.h"
#include "store/store_int.h"

enum {
  REC_VERSION = 1,
  DEFAULT_GROUP_MAX = 1024,
  DEFAULT_MAX_OPEN_FILES = 256,  /* fds are the scarcest resource here (DESIGN.md) */
  BLOCK_CACHE_BYTES = 32 << 20,  /* modest: acked envelopes die in the memtable */
  POINT_READ_MAX = 8,            /* ranges up to this many seqs use point reads, not an iterator */
  MOVE_CHUNK = 1024,             /* envelopes read per step of a MOVE_INBOX */
  SWEEP_BUDGET = 10000,          /* keys a SWEEP examines at most */
  DONE_PER_CALLBACK = 4096,      /* completions run per loop wake-up, then yield */
  DRAIN_DEFAULT_BYTES = 1 << 20, /* max_bytes == 0 */
  CACHE_STALE_MS = 1000,         /* at eviction, caches whose head waited this long go first */
};

/* ---- a FIFO of ops (ring buffer) ----------------------------------------------------------- */

typedef struct opq {
  tern_store_op **v; /* ring storage */
  size_t head;       /* index of the oldest op */
  size_t len;        /* ops queued */
  size_t cap;        /* slots in v (a power of two, or 0) */
} opq;

static void opq_push(opq *q, tern_store_op *op) {
  if (q->len == q->cap) {
    size_t ncap = q->cap ? q->cap * 2 : 64;
    tern_store_op **nv = tern_malloc(ncap * sizeof *nv);
    for (size_t i = 0; i < q->len; i++) nv[i] = q->v[(q->head + i) & (q->cap - 1)];
    tern_free(q->v);
    q->v = nv;
    q->cap = ncap;
    q->head = 0;
  }
  q->v[(q->head + q->len) & (q->cap - 1)] = op;
  q->len++;
}

static tern_store_op *opq_pop(opq *q) {
  if (!q->len) return NULL;
  tern_store_op *op = q->v[q->head];
  q->head = (q->head + 1) & (q->cap - 1);
  q->len--;
  return op;
}

static void opq_swap(opq *a, opq *b) {
  opq t = *a;
  *a = *b;
  *b = t;
}

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

/* A key the current group wrote or deleted (outside envelopes), for reads later in the group. */
typedef struct ov_entry {
  bool deleted;      /* the group deleted the key */
  size_t len;        /* value length */
  char value[];      /* the value the group wrote */
} ov_entry;

/* The loop side lives apart from the backend, because at close it must outlive it: the async
 * handle closes asynchronously and the completions left in it run in its close callback. */
typedef struct loopside {
  uv_async_t async;   /* wakes the loop; data = this */
  uv_prepare_t hand;  /* hands the iteration's submissions to the store thread; data = this */
  int open_handles;   /* of async and hand: the struct is freed when both have closed */
  struct rdb *st;     /* the backend, while open (hand's callback needs it) */
  opq staged;         /* submitted during this loop iteration (loop thread only) */
  pthread_mutex_t mu; /* guards done */
  opq done;           /* completed ops, in submission order (store thread → loop) */
  opq ready;          /* completions taken from done, still to run (loop thread only) */
} loopside;

typedef struct rdb {
  tern_store *pub;         /* the public handle (for the commit histogram) */
  tern_store_options opts; /* copy; opts.dir points at dir */
  char *dir;               /* data directory */
  rocksdb_t *db;
  rocksdb_options_t *dbopts;
  rocksdb_block_based_table_options_t *bbto;
  rocksdb_cache_t *cache;
  rocksdb_env_t *env;            /* the default env, its background threads niced */
  rocksdb_writeoptions_t *wsync; /* sync=true: the one fsync per group */
  rocksdb_readoptions_t *ropts;  /* plain reads */
  loopside *ls;                  /* completion side */
  pthread_t thread;              /* the store thread */
  bool thread_started;
  pthread_mutex_t mu;        /* guards pending and stopping */
  pthread_cond_t cv;         /* signalled on submit and on close */
  opq pending;               /* submitted, not yet taken by the store thread */
  bool stopping;             /* close asked: finish pending, then exit */
  atomic_int_fast64_t total; /* envelopes stored, all inboxes (any thread reads) */
  /* Everything below belongs to the store thread (and to open/close, before/after it runs). */
  rocksdb_writebatch_t *wb;    /* the group's batch */
  tern_map overlay;            /* key → ov_entry*: what this group wrote, except envelopes */
  tern_map inboxes;            /* name → inbox* */
  tern_envcache_acct cacct;    /* envelopes cached by all inboxes */
  size_t cache_budget;         /* bytes the caches may hold before eviction */
  inbox **dirty;               /* inboxes whose meta the group changed (journaled at its end) */
  uint64_t journal_first;      /* oldest journal record not yet checkpointed */
  uint64_t journal_next;       /* number of the next journal record */
  int checkpoint_every;        /* journal records between checkpoints */
  tern_buf cp_names;           /* [2 n][name] of inboxes journaled since the last checkpoint */
  size_t cp_count;             /* entries in cp_names */
  int64_t cp_last_ms;          /* when the last checkpoint (or the load) was */
  size_t ndirty, dirty_cap;
  tern_store_op **group; /* ops of the current group */
  size_t group_cap;
  bool group_failed;     /* a read or the commit failed: the whole group is ERROR */
  char group_err[128];   /* why */
  tern_buf key, key2;    /* scratch keys */
  tern_buf val;          /* scratch value */
  int sweep_phase;       /* 0 envelopes ("q/"), 1 client ids ("i/"), 2 tokens ("r/") */
  tern_buf sweep_cursor; /* key to resume the phase at; empty = its start */
  bool sweep_in_journal; /* the envelope phase is past "q/", at the journaled names */
  size_t sweep_journal_off; /* where in cp_names it resumes */
} rdb;

/* ---- small encoders ------------------------------------------------------------------------ */

static void put_be64(tern_buf *b, uint64_t v) {
  uint8_t x[8];
  for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (56 - 8 * i));
  tern_buf_append(b, x, 8);
}

static void put_be16(tern_buf *b, size_t v) {
  uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  tern_buf_append(b, x, 2);
}

static uint64_t get_be64(const void *p) {
  const uint8_t *x = p;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | x[i];
  return v;
}

static size_t get_be16(const void *p) {
  const uint8_t *x = p;
  return (size_t)x[0] << 8 | x[1];
}

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
  put_be64(b, seq);
}

/* ---- errors -------------------------------------------------------------------------------- */

static void op_error(tern_store_op *op, const char *why) {
  op->status = TERN_STORE_ERROR;
  snprintf(op->err, sizeof op->err, "%s", why);
}

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

/* A failed read leaves the group half-applied, so the whole group is abandoned. */
static void fail_group(rdb *st, const char *what, const char *err) {
  if (!st->group_failed) {
    st->group_failed = true;
    join_trunc(st->group_err, sizeof st->group_err, what, err ? err : "?"); /* run_group logs it */
  }
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
  rocksdb_writebatch_put(st->wb, k, klen, v, vlen);
  ov_set(st, k, klen, v, vlen, false);
}

static void kv_del(rdb *st, const char *k, size_t klen) {
  rocksdb_writebatch_delete(st->wb, k, klen);
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

static inbox *inbox_find(rdb *st, const char *name) { return tern_map_gets(&st->inboxes, name); }

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
static inbox *inbox_get(rdb *st, const char *name) {
  inbox *ib = inbox_find(st, name);
  if (ib) return ib;
  ib = inbox_new(st, name, strlen(name), 1, 1);
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
  put_be64(b, n);
}

/* Appends [2 n][name]: the form of names in cp_names and in journal entries. */
static void put_name(tern_buf *b, const char *name, size_t n) {
  put_be16(b, n);
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
  put_be64(&st->val, ib->next_seq);
  put_be64(&st->val, ib->first_seq);
  rocksdb_writebatch_put(st->wb, st->key.data, st->key.len, st->val.data, st->val.len);
}

/* Writes the checkpoint into the group's batch (see above). */
static void checkpoint(rdb *st) {
  for (size_t off = 0; off + 2 <= st->cp_names.len;) {
    size_t n = get_be16(st->cp_names.data + off);
    const char *name = st->cp_names.data + off + 2;
    off += 2 + n;
    inbox *ib = tern_map_get(&st->inboxes, name, n);
    if (ib) {
      ib->cp_dirty = false;
      meta_put(st, ib);
    } else {
      key_tag(&st->key, 'q', name, n);
      rocksdb_writebatch_delete(st->wb, st->key.data, st->key.len);
    }
  }
  if (st->journal_next > st->journal_first) {
    jkey(&st->key, st->journal_first);
    jkey(&st->key2, st->journal_next);
    rocksdb_writebatch_delete_range(st->wb, st->key.data, st->key.len, st->key2.data, st->key2.len);
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
      put_be64(&st->val, ib->dead ? 0 : ib->next_seq);
      put_be64(&st->val, ib->dead ? 0 : ib->first_seq);
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
    rocksdb_writebatch_put(st->wb, st->key.data, st->key.len, st->val.data, st->val.len);
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
  return get_be64(k + plen);
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
    load_meta(st, k + 2, kl - 2, get_be64(v + 1), get_be64(v + 9));
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
    uint64_t n = get_be64(k + 2);
    if (!any) st->journal_first = n;
    any = true;
    st->journal_next = n + 1;
    if (vl < 1 || v[0] != REC_VERSION) continue;
    for (size_t off = 1; off + 2 <= vl;) {
      size_t nl = get_be16(v + off);
      if (off + 2 + nl + 16 > vl) break;
      const char *name = (const char *)v + off + 2;
      load_meta(st, name, nl, get_be64(name + nl), get_be64(name + nl + 8));
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
  rocksdb_writebatch_put(st->wb, st->key.data, st->key.len, (const char *)v, len);
  tern_envcache_push(&ib->cache, &st->cacct, seq, v, len);
  return seq;
}

/* Deletes ib's envelopes [first_seq, to] (they must exist: to < next_seq) and moves its head. */
static void env_remove_head(rdb *st, inbox *ib, uint64_t to) {
  for (uint64_t s = ib->first_seq; s <= to; s++) {
    key_env(&st->key, ib->name, ib->nlen, s);
    rocksdb_writebatch_delete(st->wb, st->key.data, st->key.len);
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
    uint64_t s = get_be64(k + plen);
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

/* ---- operations ---------------------------------------------------------------------------- */

static int64_t op_now(const tern_store_op *op) { return op->now ? op->now : tern_now_ms(); }

/* [ver][8 ts][s] */
static void ts_rec(tern_buf *b, int64_t ts, const char *s) {
  tern_buf_reset(b);
  tern_buf_putc(b, REC_VERSION);
  put_be64(b, (uint64_t)ts);
  if (s) tern_buf_puts(b, s);
}

static bool rec_ok(const char *v, size_t n, size_t min) { return n >= min && v[0] == REC_VERSION; }

static void do_append(rdb *st, tern_store_op *op) {
  int64_t now = op_now(op);
  for (size_t i = 0; i < op->ntargets; i++) {
    if (!op->targets[i].inbox || !op->targets[i].value) {
      op_error(op, "append: target without value");
      return;
    }
  }
  if (op->dedup_key) {
    key_tag(&st->key, 'i', op->dedup_key, strlen(op->dedup_key));
    int r = kv_get(st, st->key.data, st->key.len, &st->val);
    if (r < 0) return;
    if (r == 1) {
      op->status = TERN_STORE_DUPLICATE;
      if (rec_ok(st->val.data, st->val.len, 9)) {
        op->dup_ts = (int64_t)get_be64(st->val.data + 1);
        op->dup_msg_id = tern_strndup(st->val.data + 9, st->val.len - 9);
      } else {
        op->dup_msg_id = tern_strdup("");
      }
      return;
    }
  }
  if (st->opts.inbox_max_envelopes > 0) {
    for (size_t i = 0; i < op->ntargets; i++) {
      if (!op->targets[i].check_cap) continue;
      inbox *ib = inbox_find(st, op->targets[i].inbox);
      if (ib && (int64_t)(ib->next_seq - ib->first_seq) >= st->opts.inbox_max_envelopes) {
        op->status = TERN_STORE_FULL;
        return;
      }
    }
  }
  for (size_t i = 0; i < op->ntargets; i++) {
    tern_store_target *t = &op->targets[i];
    t->seq = env_append(st, inbox_get(st, t->inbox), t->value, t->value_len);
  }
  atomic_fetch_add(&st->total, (int64_t)op->ntargets);
  if (op->dedup_key) {
    key_tag(&st->key, 'i', op->dedup_key, strlen(op->dedup_key));
    ts_rec(&st->val, now, op->msg_id);
    kv_put(st, st->key.data, st->key.len, st->val.data, st->val.len);
  }
  if (op->token_from && op->msg_id) {
    key_tag(&st->key, 'r', op->msg_id, strlen(op->msg_id));
    ts_rec(&st->val, now, op->token_from);
    kv_put(st, st->key.data, st->key.len, st->val.data, st->val.len);
  }
  op->status = TERN_STORE_OK;
}

static void add_delivered(tern_store_op *op, const char *id, size_t idlen, const char *from, size_t fromlen) {
  if (op->ndelivered == op->delivered_cap) {
    op->delivered_cap = op->delivered_cap ? op->delivered_cap * 2 : 4;
    op->delivered = tern_realloc(op->delivered, op->delivered_cap * sizeof *op->delivered);
  }
  tern_store_delivered *d = &op->delivered[op->ndelivered++];
  d->msg_id = tern_strndup(id, idlen);
  d->from = tern_strndup(from, fromlen);
}

typedef struct ack_ctx {
  rdb *st;
  tern_store_op *op; /* receives delivered[] */
  tern_buf tok;      /* a token record read back */
} ack_ctx;

/* ACK's visitor: a receipt-bearing copy is delivered now if it was its message's only recipient
 * copy, or if this ack consumes the message's token. The first ack of any copy consumes the
 * token; a later one (in this group too, through the overlay) finds it gone. That makes
 * "delivered" at most once. */
static bool ack_visit(uint64_t seq, const uint8_t *v, size_t len, void *arg) {
  ack_ctx *c = arg;
  tern_env_view ev;
  if (tern_env_unpack(v, len, &ev) != 0 || !(ev.flags & TERN_ENV_F_RECEIPT) || !ev.msg_id_len) return true;
  if (ev.flags & TERN_ENV_F_SOLE) {
    add_delivered(c->op, ev.msg_id, ev.msg_id_len, ev.from, ev.from_len);
    return true;
  }
  rdb *st = c->st;
  key_tag(&st->key, 'r', ev.msg_id, ev.msg_id_len);
  int r = kv_get(st, st->key.data, st->key.len, &c->tok);
  if (r < 0) return false;
  if (r == 0) return true;
  if (rec_ok(c->tok.data, c->tok.len, 9)) add_delivered(c->op, ev.msg_id, ev.msg_id_len, c->tok.data + 9, c->tok.len - 9);
  kv_del(st, st->key.data, st->key.len);
  return true;
}

static void do_ack(rdb *st, tern_store_op *op) {
  op->status = TERN_STORE_OK;
  inbox *ib = op->inbox ? inbox_find(st, op->inbox) : NULL;
  if (!ib || ib->first_seq == ib->next_seq) return;
  uint64_t to = TERN_MIN(op->seq, ib->next_seq - 1);
  if (to < ib->first_seq) return; /* already acked: harmless */
  ack_ctx c = {.st = st, .op = op};
  int r = env_range(st, ib, ib->first_seq, to, ack_visit, &c);
  tern_buf_free(&c.tok);
  if (r < 0 || st->group_failed) return;
  env_remove_head(st, ib, to);
}

typedef struct drain_ctx {
  tern_store_op *op; /* receives items */
  size_t bytes;      /* value bytes so far */
  size_t max;        /* budget */
  uint64_t last;     /* seq of the last item taken */
} drain_ctx;

static bool drain_visit(uint64_t seq, const uint8_t *v, size_t len, void *arg) {
  drain_ctx *c = arg;
  tern_store_op *op = c->op;
  if (op->nitems && c->bytes + len > c->max) return false; /* always at least one item */
  if (op->nitems == op->items_cap) {
    op->items_cap = op->items_cap ? op->items_cap * 2 : 16;
    op->items = tern_realloc(op->items, op->items_cap * sizeof *op->items);
  }
  tern_store_item *it = &op->items[op->nitems++];
  it->seq = seq;
  it->value = tern_memdup(v, len);
  it->len = len;
  c->bytes += len;
  c->last = seq;
  return true;
}

static void do_drain(rdb *st, tern_store_op *op) {
  op->status = TERN_STORE_OK;
  op->more = false;
  inbox *ib = op->inbox ? inbox_find(st, op->inbox) : NULL;
  if (!ib) return;
  uint64_t from = TERN_MAX(op->seq, ib->first_seq - 1) + 1, to = ib->next_seq - 1;
  if (from > to) return;
  drain_ctx c = {.op = op, .max = op->max_bytes ? op->max_bytes : DRAIN_DEFAULT_BYTES, .last = from - 1};
  if (env_range(st, ib, from, to, drain_visit, &c) < 0) return;
  op->more = c.last < to;
}

/* MOVE's visitor: collects values as [8 len][bytes]. */
static bool move_visit(uint64_t seq, const uint8_t *v, size_t len, void *arg) {
  put_be64(arg, len);
  tern_buf_append(arg, v, len);
  return true;
}

static void do_move(rdb *st, tern_store_op *op) {
  op->status = TERN_STORE_OK;
  if (!op->inbox || !op->inbox2) {
    op_error(op, "move: inbox and inbox2 required");
    return;
  }
  if (strcmp(op->inbox, op->inbox2) == 0) return;
  inbox *src = inbox_find(st, op->inbox);
  if (!src) return;
  if (src->first_seq < src->next_seq) {
    inbox *dst = inbox_get(st, op->inbox2);
    uint64_t moved = 0;
    tern_buf vals = {0};
    /* In chunks, so a large user inbox never sits in memory twice at once. */
    while (src->first_seq < src->next_seq) {
      uint64_t to = TERN_MIN(src->first_seq + MOVE_CHUNK - 1, src->next_seq - 1);
      tern_buf_reset(&vals);
      if (env_range(st, src, src->first_seq, to, move_visit, &vals) < 0) break;
      for (size_t off = 0; off + 8 <= vals.len;) {
        size_t n = (size_t)get_be64(vals.data + off);
        off += 8;
        env_append(st, dst, (const uint8_t *)vals.data + off, n);
        off += n;
        moved++;
      }
      env_remove_head(st, src, to);
    }
    tern_buf_free(&vals);
    if (st->group_failed) return;
    /* Removing them from src uncounted them; they count again in dst (keys missing from the
     * range, none expected, stay uncounted). */
    atomic_fetch_add(&st->total, (int64_t)moved);
  }
  /* The user-level inbox is empty now; its seqs never reach a client, so forgetting its counter
   * is fine, and it keeps "q/" holding live inboxes only. */
  inbox_drop(st, src);
}

static void do_put_user(rdb *st, tern_store_op *op) {
  const tern_user_rec *u = &op->user;
  if (!u->user) {
    op_error(op, "put_user: user required");
    return;
  }
  size_t hl = u->pwhash ? strlen(u->pwhash) : 0;
  if (hl > 0xffff) {
    op_error(op, "put_user: pwhash too long");
    return;
  }
  key_tag(&st->key, 'u', u->user, strlen(u->user));
  tern_buf_reset(&st->val);
  tern_buf_putc(&st->val, REC_VERSION);
  put_be64(&st->val, (uint64_t)u->created);
  put_be64(&st->val, (uint64_t)u->last_seen);
  put_be16(&st->val, hl);
  tern_buf_append(&st->val, u->pwhash, hl);
  kv_put(st, st->key.data, st->key.len, st->val.data, st->val.len);
  op->status = TERN_STORE_OK;
}

static void do_put_device(rdb *st, tern_store_op *op) {
  const tern_device_rec *d = &op->device;
  if (!d->device_id || !d->user) {
    op_error(op, "put_device: device_id and user required");
    return;
  }
  size_t ul = strlen(d->user), ll = d->label ? strlen(d->label) : 0, pl = d->push ? strlen(d->push) : 0;
  if (ul > 0xffff || ll > 0xffff || pl > 0xffff) {
    op_error(op, "put_device: field too long");
    return;
  }
  key_tag(&st->key, 'd', d->device_id, strlen(d->device_id));
  tern_buf_reset(&st->val);
  tern_buf_putc(&st->val, REC_VERSION);
  put_be64(&st->val, (uint64_t)d->created);
  put_be64(&st->val, (uint64_t)d->last_seen);
  tern_buf_append(&st->val, d->token_hash, sizeof d->token_hash);
  put_be16(&st->val, ul);
  tern_buf_append(&st->val, d->user, ul);
  put_be16(&st->val, ll);
  tern_buf_append(&st->val, d->label, ll);
  /* the push registration came later: records without it end after the label */
  put_be16(&st->val, pl);
  tern_buf_append(&st->val, d->push, pl);
  kv_put(st, st->key.data, st->key.len, st->val.data, st->val.len);
  op->status = TERN_STORE_OK;
}

/* Both records keep last_seen at bytes 9..16, so it is patched in place. */
static void patch_last_seen(rdb *st, char tag, const char *name, int64_t last_seen) {
  key_tag(&st->key, tag, name, strlen(name));
  if (kv_get(st, st->key.data, st->key.len, &st->val) != 1) return; /* unknown: nothing to do */
  if (!rec_ok(st->val.data, st->val.len, 17)) return;
  uint64_t x = (uint64_t)last_seen;
  for (int i = 0; i < 8; i++) st->val.data[9 + i] = (char)(x >> (56 - 8 * i));
  kv_put(st, st->key.data, st->key.len, st->val.data, st->val.len);
}

static void do_set_last_seen(rdb *st, tern_store_op *op) {
  op->status = TERN_STORE_OK;
  if (op->user.user) patch_last_seen(st, 'u', op->user.user, op->user.last_seen);
  if (op->device.device_id) patch_last_seen(st, 'd', op->device.device_id, op->device.last_seen);
}

typedef struct prefix_keys {
  const tern_buf *prefix; /* keys starting with this */
  tern_buf *out;          /* collected as [8 len][key] */
} prefix_keys;

static bool ov_prefix_cb(const char *key, size_t klen, void *value, void *arg) {
  prefix_keys *c = arg;
  ov_entry *o = value;
  if (!o->deleted && klen >= c->prefix->len && memcmp(key, c->prefix->data, c->prefix->len) == 0) {
    put_be64(c->out, klen);
    tern_buf_append(c->out, key, klen);
  }
  return true;
}

static void do_del_device(rdb *st, tern_store_op *op) {
  const char *id = op->device.device_id;
  if (!id) {
    op_error(op, "del_device: device_id required");
    return;
  }
  op->status = TERN_STORE_OK;
  size_t idlen = strlen(id);
  key_tag(&st->key, 'd', id, idlen);
  kv_del(st, st->key.data, st->key.len);
  inbox *ib = inbox_find(st, id);
  if (ib) {
    if (ib->first_seq < ib->next_seq) env_remove_head(st, ib, ib->next_seq - 1);
    inbox_drop(st, ib);
  }
  /* Remembered client ids "i/<id>/...": the committed ones and this group's. The keys are
   * collected first, then deleted (deleting one twice is harmless). */
  key_tag(&st->key2, 'i', id, idlen);
  tern_buf_putc(&st->key2, '/');
  tern_buf keys = {0};
  rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ropts);
  for (rocksdb_iter_seek(it, st->key2.data, st->key2.len); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t kl;
    const char *k = rocksdb_iter_key(it, &kl);
    if (kl < st->key2.len || memcmp(k, st->key2.data, st->key2.len) != 0) break;
    put_be64(&keys, kl);
    tern_buf_append(&keys, k, kl);
  }
  char *e = NULL;
  rocksdb_iter_get_error(it, &e);
  rocksdb_iter_destroy(it);
  if (e) {
    fail_group(st, "scan", e);
    rocksdb_free(e);
  } else {
    prefix_keys pk = {.prefix = &st->key2, .out = &keys};
    tern_map_each(&st->overlay, ov_prefix_cb, &pk);
    for (size_t off = 0; off + 8 <= keys.len;) {
      size_t n = (size_t)get_be64(keys.data + off);
      off += 8;
      kv_del(st, keys.data + off, n);
      off += n;
    }
  }
  tern_buf_free(&keys);
}

/* ---- sweep --------------------------------------------------------------------------------- */

typedef struct expire_ctx {
  int64_t cutoff; /* envelopes older than this expire (ms) */
  bool found;     /* out: the envelope exists */
  bool expired;   /* out: it expired */
} expire_ctx;

static bool expire_visit(uint64_t seq, const uint8_t *v, size_t len, void *arg) {
  expire_ctx *c = arg;
  tern_env_view ev;
  c->found = true;
  c->expired = tern_env_unpack(v, len, &ev) != 0 || ev.ts < c->cutoff;
  return true;
}

/* Expires envelopes from the head of ib while older than cutoff. Returns false when the budget
 * ran out before the first live envelope was found. */
static bool sweep_inbox(rdb *st, tern_store_op *op, inbox *ib, int64_t cutoff, long *budget) {
  while (ib->first_seq < ib->next_seq) {
    if (*budget <= 0) return false;
    (*budget)--;
    expire_ctx c = {.cutoff = cutoff};
    if (env_range(st, ib, ib->first_seq, ib->first_seq, expire_visit, &c) < 0) return true;
    if (c.found && !c.expired) return true; /* envelopes are in time order: the rest are younger */
    /* Expiry consumes no delivery token: an expired message was never delivered. A missing key
     * (none expected) is stepped over. */
    env_remove_head(st, ib, ib->first_seq);
    if (c.found) op->expired++;
  }
  return true;
}

/* The second half of the envelope phase: inboxes journaled since the last checkpoint, whose
 * metas are not among the "q/" keys yet (a checkpoint between two calls just ends it early: its
 * names are in "q/" for the next round). Returns true when done. */
static bool sweep_journaled(rdb *st, tern_store_op *op, int64_t cutoff, long *budget) {
  while (st->sweep_journal_off + 2 <= st->cp_names.len) {
    if (*budget <= 0 || st->group_failed) return false;
    (*budget)--;
    size_t n = get_be16(st->cp_names.data + st->sweep_journal_off);
    inbox *ib = tern_map_get(&st->inboxes, st->cp_names.data + st->sweep_journal_off + 2, n);
    if (ib && !sweep_inbox(st, op, ib, cutoff, budget)) return false; /* resume at this inbox */
    st->sweep_journal_off += 2 + n;
  }
  st->sweep_in_journal = false;
  return true;
}

/* Runs the current phase from the cursor. Returns true when the phase reached its end. */
static bool sweep_phase_run(rdb *st, tern_store_op *op, int64_t now, long *budget) {
  static const char tags[3] = {'q', 'i', 'r'};
  char tag = tags[st->sweep_phase];
  int64_t ttl = st->sweep_phase == 1 ? st->opts.dedup_ttl_ms : st->opts.inbox_ttl_ms;
  if (ttl <= 0) return true; /* this kind never expires */
  int64_t cutoff = now - ttl;
  if (tag == 'q' && st->sweep_in_journal) return sweep_journaled(st, op, cutoff, budget);
  prefix_iter pi;
  /* The scan reads committed keys only; per-key decisions see the group (inbox state in memory)
   * or are harmless when repeated (deleting a key this group already deleted). */
  pit_open(st, &pi, tag, false);
  char start[2] = {tag, '/'};
  if (st->sweep_cursor.len) {
    rocksdb_iter_seek(pi.it, st->sweep_cursor.data, st->sweep_cursor.len);
  } else {
    rocksdb_iter_seek(pi.it, start, 2);
  }
  bool finished = true;
  for (; rocksdb_iter_valid(pi.it); rocksdb_iter_next(pi.it)) {
    if (*budget <= 0 || st->group_failed) {
      finished = false;
      break;
    }
    (*budget)--;
    size_t kl, vl;
    const char *k = rocksdb_iter_key(pi.it, &kl);
    tern_buf_reset(&st->sweep_cursor);
    tern_buf_append(&st->sweep_cursor, k, kl);
    if (tag == 'q') {
      inbox *ib = tern_map_get(&st->inboxes, k + 2, kl - 2);
      if (ib && !sweep_inbox(st, op, ib, cutoff, budget)) {
        finished = false; /* resume at this same inbox */
        break;
      }
    } else {
      const char *v = rocksdb_iter_value(pi.it, &vl);
      if (!rec_ok(v, vl, 9) || (int64_t)get_be64(v + 1) < cutoff) kv_del(st, k, kl);
    }
    tern_buf_putc(&st->sweep_cursor, '\0'); /* the smallest key after this one */
  }
  char err[128];
  if (pit_close(&pi, err, sizeof err) < 0) fail_group(st, "sweep scan", err);
  if (finished) tern_buf_reset(&st->sweep_cursor);
  if (finished && tag == 'q') {
    st->sweep_in_journal = true;
    st->sweep_journal_off = 0;
    return sweep_journaled(st, op, cutoff, budget);
  }
  return finished;
}

static void do_sweep(rdb *st, tern_store_op *op) {
  op->status = TERN_STORE_OK;
  int64_t now = op_now(op);
  long budget = SWEEP_BUDGET;
  /* At most the three phases per call; the next call resumes where this one stopped. */
  for (int step = 0; step < 3 && !st->group_failed; step++) {
    if (!sweep_phase_run(st, op, now, &budget)) break;
    st->sweep_phase = (st->sweep_phase + 1) % 3;
    if (budget <= 0) break;
  }
}

/* KV records ("k/<key>"): small records of other modules (media metadata), loaded at start-up. */
static void do_kv(rdb *st, tern_store_op *op, bool put) {
  if (!op->kv_key || (put && op->nvalues != 1)) {
    op_error(op, "kv: kv_key and one value required");
    return;
  }
  key_tag(&st->key, 'k', op->kv_key, strlen(op->kv_key));
  if (put) kv_put(st, st->key.data, st->key.len, op->values[0], tern_store_value_len(op->values[0]));
  else kv_del(st, st->key.data, st->key.len);
  op->status = TERN_STORE_OK;
}

/* ---- the store thread ---------------------------------------------------------------------- */

static void apply(rdb *st, tern_store_op *op) {
  switch (op->type) {
    case TERN_OP_PUT_USER: do_put_user(st, op); return;
    case TERN_OP_PUT_DEVICE: do_put_device(st, op); return;
    case TERN_OP_SET_LAST_SEEN: do_set_last_seen(st, op); return;
    case TERN_OP_DEL_DEVICE: do_del_device(st, op); return;
    case TERN_OP_MOVE_INBOX: do_move(st, op); return;
    case TERN_OP_APPEND: do_append(st, op); return;
    case TERN_OP_ACK: do_ack(st, op); return;
    case TERN_OP_DRAIN: do_drain(st, op); return;
    case TERN_OP_SWEEP: do_sweep(st, op); return;
    case TERN_OP_SYNC: op->status = TERN_STORE_OK; return;
    case TERN_OP_KV_PUT: do_kv(st, op, true); return;
    case TERN_OP_KV_DEL: do_kv(st, op, false); return;
  }
  op_error(op, "unknown op type");
}

/* Turns an op of a failed group into an ERROR with no outputs. */
static void op_fail(tern_store_op *op, const char *why) {
  op_error(op, why);
  for (size_t i = 0; i < op->ntargets; i++) op->targets[i].seq = 0;
  tern_free(op->dup_msg_id);
  op->dup_msg_id = NULL;
  op->dup_ts = 0;
  for (size_t i = 0; i < op->nitems; i++) tern_free(op->items[i].value);
  op->nitems = 0;
  op->more = false;
  for (size_t i = 0; i < op->ndelivered; i++) {
    tern_free(op->delivered[i].msg_id);
    tern_free(op->delivered[i].from);
  }
  op->ndelivered = 0;
  op->expired = 0;
}

static void run_group(rdb *st, tern_store_op **ops, size_t n) {
  st->group_failed = false;
  for (size_t i = 0; i < n && !st->group_failed; i++) apply(st, ops[i]);
  dirty_end(st, !st->group_failed);
  uint64_t ns = 0;
  if (!st->group_failed && rocksdb_writebatch_count(st->wb) > 0) {
    char *e = NULL;
    uint64_t t0 = tern_mono_ns();
    rocksdb_write(st->db, st->wsync, st->wb, &e);
    ns = tern_mono_ns() - t0;
    if (e) {
      fail_group(st, "commit", e);
      rocksdb_free(e);
    } else {
      tern_store_commit_record(st->pub, ns);
    }
  }
  rocksdb_writebatch_clear(st->wb);
  ov_clear(st);
  if (st->group_failed) {
    TERN_ERROR("store group failed", "ops=%zu err=%s", n, tern_log_quote(st->group_err));
    for (size_t i = 0; i < n; i++) op_fail(ops[i], st->group_err);
    /* The in-memory counters ran ahead of the DB: reload them from what is committed. */
    char err[128];
    if (inboxes_load(st, err, sizeof err) < 0) TERN_ERROR("store reload failed", "err=%s", tern_log_quote(err));
  } else {
    cache_evict(st);
  }
  for (size_t i = 0; i < n; i++) ops[i]->commit_ns = ns;
  loopside *ls = st->ls;
  pthread_mutex_lock(&ls->mu);
  for (size_t i = 0; i < n; i++) opq_push(&ls->done, ops[i]);
  pthread_mutex_unlock(&ls->mu);
  uv_async_send(&ls->async);
}

static void *store_thread(void *arg) {
  rdb *st = arg;
  size_t gmax = (size_t)st->opts.group_max;
  /* RocksDB's per-operation perf counters are thread-local and cost a TLS lookup per get and
   * put; nothing reads them. */
  rocksdb_set_perf_level(rocksdb_disable);
  for (;;) {
    pthread_mutex_lock(&st->mu);
    while (!st->pending.len && !st->stopping) pthread_cond_wait(&st->cv, &st->mu);
    if (!st->pending.len) { /* stopping, and everything submitted is done */
      pthread_mutex_unlock(&st->mu);
      break;
    }
    size_t n = TERN_MIN(st->pending.len, gmax);
    if (n > st->group_cap) {
      st->group_cap = n;
      st->group = tern_realloc(st->group, st->group_cap * sizeof *st->group);
    }
    for (size_t i = 0; i < n; i++) st->group[i] = opq_pop(&st->pending);
    pthread_mutex_unlock(&st->mu);
    run_group(st, st->group, n);
  }
  return NULL;
}

/* ---- the loop side ------------------------------------------------------------------------- */

/* Runs up to max completions in order; returns true when some remain. */
static bool run_completions(loopside *ls, size_t max) {
  for (size_t i = 0; i < max; i++) {
    if (!ls->ready.len) {
      pthread_mutex_lock(&ls->mu);
      opq_swap(&ls->ready, &ls->done);
      pthread_mutex_unlock(&ls->mu);
      if (!ls->ready.len) return false;
    }
    tern_store_op *op = opq_pop(&ls->ready);
    if (op->done) op->done(op);
    tern_store_op_free(op);
  }
  if (ls->ready.len) return true;
  pthread_mutex_lock(&ls->mu);
  bool more = ls->done.len > 0;
  pthread_mutex_unlock(&ls->mu);
  return more;
}

static void on_async(uv_async_t *h) {
  /* Bounded work per wake-up; the rest runs on the next loop turn. */
  if (run_completions(h->data, DONE_PER_CALLBACK)) uv_async_send(h);
}

static void on_loopside_closed(uv_handle_t *h) {
  loopside *ls = h->data;
  if (--ls->open_handles > 0) return;
  while (run_completions(ls, SIZE_MAX)) {
  }
  tern_free(ls->staged.v);
  tern_free(ls->done.v);
  tern_free(ls->ready.v);
  pthread_mutex_destroy(&ls->mu);
  tern_free(ls);
}

/* ---- vtable -------------------------------------------------------------------------------- */

/* Moves the staged submissions to the store thread, with one lock and one wake-up. */
static void hand_over(rdb *st) {
  loopside *ls = st->ls;
  if (!ls->staged.len) return;
  pthread_mutex_lock(&st->mu);
  for (tern_store_op *op; (op = opq_pop(&ls->staged));) opq_push(&st->pending, op);
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

static void on_hand(uv_prepare_t *h) {
  loopside *ls = h->data;
  if (ls->st) hand_over(ls->st);
}

/* Submissions wait for the end of the loop iteration (the next prepare phase, before the loop
 * polls), so that everything one iteration produced reaches the store thread with one wake-up:
 * waking it per op made it commit groups of one op while the loop still had work, and cost a
 * thread switch each on the shared core. */
static void rdb_submit(void *self, tern_store_op *op) {
  rdb *st = self;
  opq_push(&st->ls->staged, op);
}

static int64_t rdb_inbox_total(void *self) {
  rdb *st = self;
  return (int64_t)atomic_load(&st->total);
}

static char *dup_field(const char *p, size_t n) { return tern_strndup(p, n); }

static int rdb_load(void *self, const tern_store_load_cbs *cbs) {
  rdb *st = self;
  char err[128];
  prefix_iter pi;
  pit_open(st, &pi, 'u', false);
  for (rocksdb_iter_seek(pi.it, "u/", 2); rocksdb_iter_valid(pi.it); rocksdb_iter_next(pi.it)) {
    size_t kl, vl;
    const char *k = rocksdb_iter_key(pi.it, &kl);
    const char *v = rocksdb_iter_value(pi.it, &vl);
    if (!rec_ok(v, vl, 19) || 19 + get_be16(v + 17) > vl) {
      TERN_WARN("store: bad user record", "key=%s", tern_log_quote(k + 2));
      continue;
    }
    char *user = dup_field(k + 2, kl - 2), *pw = dup_field(v + 19, get_be16(v + 17));
    tern_user_rec rec = {
        .user = user, .pwhash = pw, .created = (int64_t)get_be64(v + 1), .last_seen = (int64_t)get_be64(v + 9)};
    if (cbs->user) cbs->user(&rec, cbs->arg);
    tern_free(user);
    tern_free(pw);
  }
  if (pit_close(&pi, err, sizeof err) < 0) {
    TERN_ERROR("store load failed", "err=%s", tern_log_quote(err));
    return -EIO;
  }
  pit_open(st, &pi, 'd', false);
  for (rocksdb_iter_seek(pi.it, "d/", 2); rocksdb_iter_valid(pi.it); rocksdb_iter_next(pi.it)) {
    size_t kl, vl;
    const char *k = rocksdb_iter_key(pi.it, &kl);
    const char *v = rocksdb_iter_value(pi.it, &vl);
    size_t ul = 0, ll = 0;
    bool ok = rec_ok(v, vl, 17 + 32 + 2);
    if (ok) {
      ul = get_be16(v + 49);
      ok = 51 + ul + 2 <= vl;
    }
    if (ok) {
      ll = get_be16(v + 51 + ul);
      ok = 53 + ul + ll <= vl;
    }
    if (!ok) {
      TERN_WARN("store: bad device record", "key=%s", tern_log_quote(k + 2));
      continue;
    }
    char *id = dup_field(k + 2, kl - 2), *user = dup_field(v + 51, ul), *label = dup_field(v + 53 + ul, ll);
    char *push = NULL;
    size_t at = 53 + ul + ll;
    if (at + 2 <= vl && get_be16(v + at) > 0 && at + 2 + get_be16(v + at) <= vl)
      push = dup_field(v + at + 2, get_be16(v + at));
    tern_device_rec rec = {.device_id = id,
                           .user = user,
                           .label = label,
                           .push = push,
                           .created = (int64_t)get_be64(v + 1),
                           .last_seen = (int64_t)get_be64(v + 9)};
    memcpy(rec.token_hash, v + 17, 32);
    if (cbs->device) cbs->device(&rec, cbs->arg);
    tern_free(id);
    tern_free(user);
    tern_free(label);
    tern_free(push);
  }
  if (pit_close(&pi, err, sizeof err) < 0) {
    TERN_ERROR("store load failed", "err=%s", tern_log_quote(err));
    return -EIO;
  }
  if (cbs->kv) {
    pit_open(st, &pi, 'k', false);
    for (rocksdb_iter_seek(pi.it, "k/", 2); rocksdb_iter_valid(pi.it); rocksdb_iter_next(pi.it)) {
      size_t kl, vl;
      const char *k = rocksdb_iter_key(pi.it, &kl);
      const char *v = rocksdb_iter_value(pi.it, &vl);
      cbs->kv(k + 2, kl - 2, (const uint8_t *)v, vl, cbs->arg);
    }
    if (pit_close(&pi, err, sizeof err) < 0) {
      TERN_ERROR("store load failed", "err=%s", tern_log_quote(err));
      return -EIO;
    }
  }
  return 0;
}

/* Frees what open created; safe on a partly opened st. */
static void rdb_destroy(rdb *st) {
  if (st->db) rocksdb_close(st->db);
  if (st->wb) rocksdb_writebatch_destroy(st->wb);
  ov_clear(st);
  if (st->wsync) rocksdb_writeoptions_destroy(st->wsync);
  if (st->ropts) rocksdb_readoptions_destroy(st->ropts);
  if (st->dbopts) rocksdb_options_destroy(st->dbopts);
  if (st->bbto) rocksdb_block_based_options_destroy(st->bbto);
  if (st->cache) rocksdb_cache_destroy(st->cache);
  if (st->env) rocksdb_env_destroy(st->env);
  inboxes_clear(st);
  tern_free(st->dirty);
  tern_free(st->group);
  tern_free(st->pending.v);
  tern_buf_free(&st->key);
  tern_buf_free(&st->key2);
  tern_buf_free(&st->val);
  tern_buf_free(&st->sweep_cursor);
  tern_buf_free(&st->cp_names);
  pthread_mutex_destroy(&st->mu);
  pthread_cond_destroy(&st->cv);
  tern_free(st->dir);
  tern_free(st);
}

static void rdb_close(void *self) {
  rdb *st = self;
  hand_over(st); /* what was submitted in this iteration is finished too */
  st->ls->st = NULL;
  uv_prepare_stop(&st->ls->hand);
  uv_close((uv_handle_t *)&st->ls->hand, on_loopside_closed);
  pthread_mutex_lock(&st->mu);
  st->stopping = true;
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
  if (st->thread_started) pthread_join(st->thread, NULL);
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
  /* Completions not yet run stay with the async handle; they run in its close callback, on the
   * loop's next turn (or never, if the loop is not run again). */
  uv_close((uv_handle_t *)&st->ls->async, on_loopside_closed);
  st->ls = NULL;
  rdb_destroy(st);
}

static const tern_store_vtable rdb_vtable = {
    .name = "rocksdb",
    .load = rdb_load,
    .submit = rdb_submit,
    .inbox_total = rdb_inbox_total,
    .close = rdb_close,
};

int tern_store_open_rocksdb(uv_loop_t *loop, const tern_store_options *opts, tern_store **out, char *err,
                            size_t errlen) {
  *out = NULL;
  if (!opts || !opts->dir || !*opts->dir) {
    snprintf(err, errlen, "no data directory");
    return -EINVAL;
  }
  rdb *st = TERN_NEW(rdb);
  pthread_mutex_init(&st->mu, NULL);
  pthread_cond_init(&st->cv, NULL);
  st->opts = *opts;
  st->dir = tern_strdup(opts->dir);
  st->opts.dir = st->dir;
  if (st->opts.group_max <= 0) st->opts.group_max = DEFAULT_GROUP_MAX;
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
   * shared core from the loop and store threads for tens of milliseconds, which was the p99
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

  loopside *ls = TERN_NEW(loopside);
  pthread_mutex_init(&ls->mu, NULL);
  int r = uv_async_init(loop, &ls->async, on_async);
  if (r < 0) {
    snprintf(err, errlen, "uv_async_init: %s", uv_strerror(r));
    pthread_mutex_destroy(&ls->mu);
    tern_free(ls);
    rdb_destroy(st);
    return r;
  }
  ls->async.data = ls;
  ls->open_handles = 1;
  uv_prepare_init(loop, &ls->hand);
  ls->hand.data = ls;
  ls->open_handles++;
  uv_prepare_start(&ls->hand, on_hand);
  uv_unref((uv_handle_t *)&ls->hand); /* it must not keep the loop running */
  ls->st = st;
  st->ls = ls;
  *out = tern_store_wrap(&rdb_vtable, st);
  st->pub = *out;
  r = pthread_create(&st->thread, NULL, store_thread, st);
  if (r != 0) {
    snprintf(err, errlen, "pthread_create: %s", strerror(r));
    tern_store_close(*out); /* closes the async handle and frees st */
    *out = NULL;
    return -r;
  }
  st->thread_started = true;
  TERN_DEBUG("rocksdb opened", "dir=%s inboxes=%zu envelopes=%lld group_max=%d max_open_files=%d",
             tern_log_quote(st->dir), st->inboxes.count, (long long)atomic_load(&st->total), st->opts.group_max,
             st->opts.max_open_files);
  return 0;
}
