/* backend: the durable primitives a store backend offers, and nothing more. The messaging
 * semantics (seqs handed to clients, de-dup by client id, delivery tokens, inbox caps, the
 * user-level inbox move, the device-delete cascade, expiry sweeps, shared bodies) are written
 * once above this interface, in semantics.c, and run unchanged on every backend: RocksDB (the
 * embedded default, rocksdb.c) and NATS JetStream (cluster mode).
 *
 * The primitives mirror what JetStream offers, so that the second backend is a mapping rather
 * than a rewrite:
 *   inbox    a per-inbox subject of envelopes: append with the next seq, range read by seq,
 *            purge up to a seq (JetStream: a subject, messages carrying the seq in a header,
 *            direct gets, purge with a subject filter);
 *   kv       buckets of small records with get, put, create-if-absent semantics (get then
 *            put inside one group), delete and delete-by-prefix; a bucket may have a TTL
 *            (JetStream KV: max_age per bucket, which is why the TTL belongs to the bucket);
 *   commit   the durable commit point: everything written since the previous commit becomes
 *            durable together, or none of it does (RocksDB: one synced write batch; JetStream,
 *            which has no atomic multi-subject write: one durable commit record from which the
 *            entries are derived idempotently, replayed after a crash).
 *
 * Threads. Every call except open, load_*, total and close runs on the store's commit thread
 * (committer.c), one group at a time: begin, the ops' primitives, then commit (or rollback).
 * Reads see every write made earlier in the same group ("read your writes"); that is the
 * backend's business (RocksDB: a cache of recent envelopes and an overlay of the group's
 * records). After a failed commit the committer calls rollback: the backend drops what the
 * group staged and reloads its counters from what is durable.
 *
 * Errors: negative errno; a failed read or write may leave a reason for the group with
 * fail(), and the committer then fails the whole group.
 *
 * Shared backends (several nodes write one store) add three duties:
 *   - every write of a key that the group read with kv_get is conditional on that key being
 *     unchanged (absent, or the revision read) at commit: a write by another node meanwhile
 *     makes commit answer -EAGAIN, and the group is applied again on the new state. That is
 *     what makes "get, then put if absent" a create, and a group record a compare-and-set;
 *   - records of the directory buckets (USERS, DEVICES, RECORDS) written by other nodes are
 *     raised through options.on_change, in each node's commit order, and catch_up waits until
 *     everything committed before the call has been raised;
 *   - bus_publish carries small messages to the other nodes (options.on_bus).
 */
#ifndef TERN_STORE_BACKEND_H
#define TERN_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/store.h"

/* The KV buckets the semantics use. A backend maps each to its own namespace. */
typedef enum {
  TERN_BUCKET_USERS = 0, /* user records (username → record), no TTL */
  TERN_BUCKET_DEVICES,   /* device records (device id → record), no TTL */
  TERN_BUCKET_DEDUP,     /* "<device id>/<client id>" → msg_id; TTL dedup.ttl */
  TERN_BUCKET_TOKENS,    /* msg_id → sender: delivery tokens; TTL inbox.ttl */
  TERN_BUCKET_RECORDS,   /* other modules' records ("media/<id>", ...), no TTL */
  TERN_BUCKET_BODIES,    /* shared bodies of group messages: body id → [4 refs][bytes], TTL inbox.ttl */
  TERN_BUCKET_PREKEYS,   /* E2E one-time prekeys: "<device id>/<key id>" → public key, and
                            "<device id>" → the index of its key ids (prekeys.c); no TTL */
  TERN_BUCKET_MSGS,      /* msg_id → where its envelopes wait, its media, whether it was deleted
                            (store/locator.h, PROTOCOL.md 15); TTL limits.delete_window */
  TERN_BUCKET__COUNT
} tern_bucket;

typedef struct tern_inbox_info {
  uint64_t first_seq; /* lowest stored seq; == next_seq when empty */
  uint64_t next_seq;  /* seq the next append gets; seqs start at 1 and are never reused */
} tern_inbox_info;

/* Visitors return false to stop. Pointers are valid during the call only. A visitor must not
 * call the backend itself (collect, then act). */
typedef bool (*tern_env_visit)(uint64_t seq, const uint8_t *v, size_t len, void *arg);
typedef bool (*tern_kv_visit)(const char *key, size_t klen, const uint8_t *v, size_t vlen, int64_t ts, void *arg);

/* A record a group's ops will read, named before they run (prefetch): an inbox (bucket < 0)
 * or a KV key. Pointers are the ops'. */
typedef struct tern_prefetch_key {
  int bucket;      /* a tern_bucket, or -1 for an inbox */
  const char *key; /* the inbox name or the key */
  size_t klen;
} tern_prefetch_key;

typedef struct tern_backend_vt {
  const char *name;
  /* Called once on the commit thread before its first group (thread-local set-up). May be NULL. */
  void (*thread_start)(void *be);
  /* Starts a group. */
  void (*begin)(void *be);

  /* ---- inboxes ---- */
  /* 0 and *out, or -ENOENT for an inbox that has never been appended to (or was forgotten). */
  int (*inbox_get)(void *be, const char *name, size_t n, tern_inbox_info *out);
  /* Appends one envelope as the inbox's next seq (creating the inbox). */
  int (*append)(void *be, const char *name, size_t n, const uint8_t *v, size_t len, uint64_t *seq);
  /* Visits the stored envelopes with seq in [from, to], in seq order (missing seqs skipped). */
  int (*read)(void *be, const char *name, size_t n, uint64_t from, uint64_t to, tern_env_visit fn, void *arg);
  /* As read, for a delivery (a drain): stops before an envelope whose group another writer is
   * still committing, and returns 1 then. A shared backend's group is not atomic to readers
   * (an entry is readable from its claim on, and a lost race undoes it), and what a drain
   * delivers must be what stays. NULL: read is always settled (one writer). */
  int (*read_settled)(void *be, const char *name, size_t n, uint64_t from, uint64_t to, tern_env_visit fn, void *arg);
  /* Overwrites the stored envelope at seq (first_seq <= seq < next_seq, stored) with v, in
   * place: same seq, the old bytes gone at the commit (a delete for everyone, PROTOCOL.md 15).
   * -ENOENT when no envelope is stored there. NULL: the backend cannot, and the semantics
   * append instead. */
  int (*replace)(void *be, const char *name, size_t n, uint64_t seq, const uint8_t *v, size_t len);
  /* For a backend that cannot overwrite (JetStream messages are immutable): removes the stored
   * envelope at seq, leaving a hole that reads skip; the semantics call it only for an inbox
   * the same group appends to afterwards, so the inbox's last seq never moves back. -ENOENT
   * when nothing is stored there. NULL when replace is offered. */
  int (*erase)(void *be, const char *name, size_t n, uint64_t seq);
  /* Removes the envelopes [first_seq, upto]; upto < next_seq. */
  int (*purge)(void *be, const char *name, size_t n, uint64_t upto);
  /* Forgets an empty inbox's counters (a deleted device; a user-level inbox after its move):
   * an inbox of the same name would start again at seq 1. */
  int (*forget)(void *be, const char *name, size_t n);
  /* The next inbox name of a round-robin walk over every inbox with envelopes, for expiry
   * sweeps: 1 with the name in out, 0 at the end of a round (the next call starts another).
   * The walk's position is the backend's; inboxes made or dropped meanwhile may be missed or
   * seen twice in a round, which a sweep tolerates. */
  int (*inbox_next)(void *be, tern_buf *out);

  /* ---- KV ---- */
  /* 1 with the value in out (and its write time in *ts when ts is not NULL), 0 when absent.
   * A shared backend may answer -EINPROGRESS for a de-dup key (TERN_BUCKET_DEDUP) written by
   * another group that is not done and may yet be undone: the op that asked fails alone as
   * unavailable (the client sends again), rather than being answered as that group's
   * duplicate. */
  int (*kv_get)(void *be, tern_bucket b, const char *key, size_t klen, tern_buf *out, int64_t *ts);
  /* Writes a record; ts is its write time (what a TTL counts from). */
  int (*kv_put)(void *be, tern_bucket b, const char *key, size_t klen, const void *v, size_t vlen, int64_t ts);
  int (*kv_del)(void *be, tern_bucket b, const char *key, size_t klen);
  /* Deletes every record whose key starts with prefix (a device's remembered client ids). */
  int (*kv_del_prefix)(void *be, tern_bucket b, const char *prefix, size_t plen);
  /* Expires the records of a TTL bucket written before cutoff, examining at most *budget
   * records (decremented) from where the last call stopped. Returns 1 when the walk reached
   * the bucket's end (the next call starts over), 0 when the budget ran out. A backend whose
   * buckets expire by themselves (JetStream max_age) returns 1 at once. */
  int (*kv_expire)(void *be, tern_bucket b, int64_t cutoff, long *budget, uint64_t *expired);

  /* ---- the commit point ---- */
  /* Makes the group durable. 1 when it wrote something, 0 when the group had nothing to
   * write, or a negative errno with a reason in err (the group then had no effect, and
   * rollback follows). -EAGAIN (a shared backend found another writer ahead of it on one of
   * the group's inboxes) makes the committer roll back and apply the group again, a few
   * times, before it fails it. -EMSGSIZE (the group is more than the backend can make
   * durable at once, e.g. a NATS commit record over max_payload; nothing was written) makes
   * the committer run the group as two halves, in order; a group of one op fails. -ENOTCONN (from commit or any primitive: the backend cannot
   * reach enough of its servers to store anything) completes the group's ops with
   * TERN_STORE_UNAVAILABLE instead of ERROR. */
  int (*commit)(void *be, char *err, size_t errlen);
  /* After a failed group (a read or the commit): forget what the group staged. */
  void (*rollback)(void *be);
  /* Called after a successful commit with nothing in flight: housekeeping that must not run
   * inside a group (cache eviction). May be NULL. */
  void (*after_commit)(void *be);
  /* Called on the commit thread when no op is queued, outside any group: work a failed step
   * left (NATS: a commit record to replay). Returns the ms after which to call it again if
   * still idle, 0 for not until the next group. May be NULL. */
  uint64_t (*idle)(void *be);

  /* ---- outside groups ---- */
  /* Start-up, before the committer runs: visits every record of a bucket. */
  int (*load)(void *be, tern_bucket b, tern_kv_visit fn, void *arg, char *err, size_t errlen);
  /* The reason for the last primitive that failed (for the op's err). */
  const char *(*why)(void *be);
  /* Envelopes stored right now, all inboxes; any thread. */
  int64_t (*total)(void *be);
  /* Any thread, never blocking: the memory the backend holds, by part, as last sampled (an
   * embedded backend samples at most once a second on the commit thread, so a reader never
   * waits for its locks). NULL: not measured (a shared backend's memory is its servers'). */
  void (*memory)(void *be, tern_store_memory *out);
  /* After the committer stopped: flush and free. */
  void (*close)(void *be);

  /* ---- shared backends (NULL for an embedded one) ---- */
  /* Commit thread, inside a group (may block): returns once every directory change other
   * nodes committed before the call has been raised through options.on_change. */
  int (*catch_up)(void *be, char *err, size_t errlen);
  /* Any thread, never blocking: msg to every other node's options.on_bus, at most once. */
  void (*bus_publish)(void *be, const void *msg, size_t len);
  /* Any thread, never blocking: 0 ok, 1 degraded, 2 unavailable, with a reason (PROTOCOL.md
   * 12, /healthz). NULL: always ok. */
  int (*health)(void *be, char *reason, size_t n);
  /* Commit thread, inside a group, after begin and before its ops run: the inboxes and keys
   * they will read (semantics.c tern_sem_prefetch), so that a backend whose reads are round
   * trips can load them all at once rather than one by one as the ops ask. Only a hint: it
   * fails nothing, and what it did not load the ops read as usual. NULL: reads are local. */
  void (*prefetch)(void *be, const tern_prefetch_key *keys, size_t n);
} tern_backend_vt;

typedef struct tern_backend {
  const tern_backend_vt *vt; /* the backend's functions */
  void *self;                /* its state */
} tern_backend;

/* Options every backend takes. */
typedef struct tern_backend_options {
  const char *dir;            /* data directory of this backend (RocksDB) */
  int max_open_files;         /* RocksDB max_open_files (<= 0: 256) */
  size_t cache_bytes;         /* envelope bytes kept in memory for acks and drains (0 = none) */
  int checkpoint_every;       /* RocksDB inbox-meta journal records between checkpoints (<= 0: 1024) */
  int64_t ttl_ms[TERN_BUCKET__COUNT]; /* per bucket; <= 0: none */
  /* Shared backends: a directory record another node wrote (v NULL: deleted), and a bus
   * message another node published. Called on a library thread; must not block. */
  void (*on_change)(void *arg, tern_bucket b, const char *key, size_t klen, const uint8_t *v, size_t vlen);
  void (*on_bus)(void *arg, const uint8_t *msg, size_t len);
  /* Shared backends: an envelope another node appended (after its commit), for the inbox's
   * watcher; at most once, may be lost (a watcher that sees a gap drains). */
  void (*on_envelope)(void *arg, const char *inbox, size_t n, uint64_t seq, const uint8_t *v, size_t len);
  /* Shared backends: the link to the servers was cut and is back (a reconnect), so envelope
   * events and bus messages of that time may be lost, here and at the other nodes. Called on a
   * library thread; must not block. */
  void (*on_relink)(void *arg);
  void *shared_arg;
  /* Shared backends: this writer's node id, and the NATS settings (nats.c). */
  const char *node;
  const char *nats_urls;
  int nats_replicas;
  const char *nats_namespace;
  int64_t nats_test_feed_delay_ms; /* tests only: other nodes' directory changes apply this late */
} tern_backend_options;

/* Opens the embedded RocksDB backend in opts->dir (created if missing; its parent must exist).
 * Returns 0, or a negative errno with a reason in err. */
int tern_backend_open_rocksdb(const tern_backend_options *opts, tern_backend *out, char *err, size_t errlen);

/* Opens the NATS JetStream backend (nats.c): creates or opens the namespace's streams and
 * buckets and replays this node's unfinished commit records. Returns 0, or a negative errno
 * (-ENOTCONN: no server reachable) with a reason in err. */
int tern_backend_open_nats(const tern_backend_options *opts, tern_backend *out, char *err, size_t errlen);

#endif
