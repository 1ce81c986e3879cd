/* store: the durable part of tern, behind a small interface so that the embedded RocksDB
 * backend and the planned NATS backend are interchangeable.
 *
 * Threads. The loop thread submits operations with tern_store_submit; the backend runs them on
 * its own thread(s) and calls op->done on the loop thread once the operation is durable
 * (writes) or answered (reads). Writes are group-committed: many operations share one synced
 * write, and never a sync per operation. Completions are delivered in submission order.
 * The loop thread never blocks on the store, except in tern_store_open/load/close, which run
 * before the loop starts and after it stops.
 *
 * Ordering. Each op sees the effect of every op submitted before it (also when they share a
 * group) and none submitted after it. An op's done runs only after everything it wrote, and
 * everything it read (DRAIN items), is durable. So when a DRAIN result arrives, the APPENDs
 * whose envelopes it holds have completed before it, and the APPENDs it does not hold
 * complete after it. If a group commit fails, every op of that group completes with ERROR.
 *
 * Ownership. An operation is allocated by tern_store_op_new and belongs to the store from
 * tern_store_submit on; the store frees it (and everything attached with the op's helpers)
 * right after op->done returns. Strings passed to op helpers are copied.
 *
 * Data. The store knows inboxes, envelopes, delivery tokens, client-id de-duplication and the
 * account directory records; it knows nothing of sessions or sockets.
 *  - An inbox is named by a string: a device id, or "@" + username for the user-level inbox of a
 *    user with no device. Each inbox has a seq counter: seqs start at 1, rise by one per
 *    envelope and are never reused, across restarts too.
 *  - An envelope value is opaque bytes for the store except its packed header (tern_env_*
 *    below), which the store reads to process acks and expiry.
 *  - A delivery token ("rc") exists for every message sent to another user until the first ack
 *    of any copy on a recipient device consumes it; that ack reports the message as newly
 *    delivered. So "delivered" is reported at most once per message.
 */
#ifndef TERN_STORE_STORE_H
#define TERN_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* ---- packed envelope values ---------------------------------------------------------------
 * [1 kind]['m' msg | 'r' receipt]
 * [1 flags]  bit0: TERN_ENV_F_RECEIPT: a copy on a recipient device of a message from another
 *            user: its first ack consumes the delivery token of msg_id
 *            bit1: TERN_ENV_F_SOLE (with F_RECEIPT): the message's only recipient copy; its
 *            first ack delivers it without a token (the APPEND then sets no token_from)
 * [8 ts]     big-endian ms since epoch (for expiry)
 * [1 n][n msg_id]        (msg: the message id; receipt: empty)
 * [1 n][n from]          (msg: the sender's username; receipt: empty)
 * [rest]     the JSON tail the loop turns into a frame ({"type":..,"seq":N, + tail)
 */
enum { TERN_ENV_MSG = 'm', TERN_ENV_RECEIPT = 'r' };
enum { TERN_ENV_F_RECEIPT = 1, TERN_ENV_F_SOLE = 2 };

typedef struct tern_env_view {
  uint8_t kind;        /* TERN_ENV_MSG or TERN_ENV_RECEIPT */
  uint8_t flags;       /* TERN_ENV_F_* */
  int64_t ts;          /* ms since epoch */
  const char *msg_id;  /* not NUL-terminated */
  size_t msg_id_len;
  const char *from;    /* not NUL-terminated */
  size_t from_len;
  const char *tail;    /* JSON tail */
  size_t tail_len;
} tern_env_view;

/* Packs an envelope value; the caller frees it with tern_free. msg_id and from (NULL = empty)
 * are at most 255 bytes each: longer ones make it return NULL (and *out_len = 0). */
uint8_t *tern_env_pack(uint8_t kind, uint8_t flags, int64_t ts, const char *msg_id, const char *from,
                       const char *tail, size_t tail_len, size_t *out_len);
/* Parses a packed value (pointers into v); returns 0 or -EINVAL when malformed. */
int tern_env_unpack(const uint8_t *v, size_t len, tern_env_view *out);

/* ---- directory records, loaded once at start-up ------------------------------------------- */
typedef struct tern_user_rec {
  const char *user;        /* username */
  const char *pwhash;      /* Argon2id encoded hash (libsodium's string form) */
  int64_t created;         /* ms */
  int64_t last_seen;       /* ms, or 0 when never connected */
} tern_user_rec;

typedef struct tern_device_rec {
  const char *device_id;
  const char *user;
  const char *label;
  const char *push;        /* the device's push registration (serialized by src/push), or NULL */
  uint8_t token_hash[32];  /* BLAKE2b-256 of the bearer token */
  int64_t created;         /* ms */
  int64_t last_seen;       /* ms of the last connection activity, 0 if never */
} tern_device_rec;

typedef struct tern_store_load_cbs {
  void (*user)(const tern_user_rec *rec, void *arg);     /* called for every stored user */
  void (*device)(const tern_device_rec *rec, void *arg); /* called for every stored device */
  /* called for every KV_PUT record (key as given to KV_PUT, value bytes); may be NULL */
  void (*kv)(const char *key, size_t klen, const uint8_t *value, size_t vlen, void *arg);
  void *arg;
} tern_store_load_cbs;

/* ---- operations -------------------------------------------------------------------------- */
typedef enum {
  TERN_OP_PUT_USER,     /* in: user (all fields) */
  TERN_OP_PUT_DEVICE,   /* in: device (all fields) */
  TERN_OP_SET_LAST_SEEN,/* in: user.user, user.last_seen; devices: device.device_id + device.last_seen
                           when device.device_id is set (both optional, at least one) */
  TERN_OP_DEL_DEVICE,   /* in: device.device_id; deletes the device record, its inbox, counters
                           and remembered client ids (dedup keys "<device_id>/..."); its seqs
                           restart at 1 if the id were ever used again (ids are never reused) */
  TERN_OP_MOVE_INBOX,   /* in: inbox (the "@user" inbox), inbox2 (a device id): moves every
                           envelope of inbox into inbox2 with new seqs, in order, then forgets
                           inbox (its own seqs restart at 1: they never reach a client) */
  TERN_OP_APPEND,       /* in: targets[], optional dedup, optional delivery token; out: status,
                           targets[i].seq, or the remembered msg_id/ts on duplicate */
  TERN_OP_ACK,          /* in: inbox, seq (cumulative, clamped to the highest stored; acking
                           again is harmless); out: delivered[] newly delivered msgs, in seq
                           order: the copies with TERN_ENV_F_RECEIPT whose token this ack consumed */
  TERN_OP_DRAIN,        /* in: inbox, seq (read envelopes with seq > this), max_bytes (0 = 1 MiB);
                           out: items[] in seq order, at least one if any, until their values
                           would pass max_bytes (durable by the time done runs), more */
  TERN_OP_SWEEP,        /* in: now (0 = the clock); expires envelopes (inbox_ttl, by their ts,
                           from the head of each inbox, consuming no token), client ids
                           (dedup_ttl) and delivery tokens (inbox_ttl). Examines at most about
                           10,000 keys per op and resumes there next time: submit it
                           periodically. out: expired = envelopes removed */
  TERN_OP_SYNC,         /* no-op write: done is called once everything before it is durable */
  TERN_OP_KV_PUT,       /* in: kv_key, values[0]: a small record other modules keep (media
                           metadata), read back by load's kv callback */
  TERN_OP_KV_DEL,       /* in: kv_key */
} tern_store_op_type;

typedef enum {
  TERN_STORE_OK = 0,
  TERN_STORE_DUPLICATE, /* APPEND: dedup key seen before: dup_msg_id/dup_ts are the first answer */
  TERN_STORE_FULL,      /* APPEND: a target with check_cap would pass inbox.max_envelopes */
  TERN_STORE_ERROR,     /* an I/O error; err holds the reason (the op had no effect) */
} tern_store_status;

typedef struct tern_store_target {
  char *inbox;          /* inbox name (owned by the op) */
  const uint8_t *value; /* packed envelope (points into op->values[value_index]) */
  size_t value_len;
  bool check_cap;       /* refuse the whole APPEND (FULL) if this inbox is at its cap */
  uint64_t seq;         /* out: the seq assigned */
} tern_store_target;

typedef struct tern_store_item {
  uint64_t seq;         /* envelope seq */
  uint8_t *value;       /* packed envelope (owned by the op) */
  size_t len;
} tern_store_item;

typedef struct tern_store_delivered {
  char *msg_id;         /* newly delivered message (owned by the op) */
  char *from;           /* its sender */
} tern_store_delivered;

typedef struct tern_store_op tern_store_op;
typedef void (*tern_store_done_cb)(tern_store_op *op);

struct tern_store_op {
  tern_store_op_type type; /* what to do */
  tern_store_done_cb done; /* called on the loop thread when finished; may be NULL */
  void *arg;               /* caller's context */
  tern_store_status status;/* out */
  char err[128];           /* out: ERROR reason */
  /* inputs */
  tern_user_rec user;      /* PUT_USER, SET_LAST_SEEN (strings owned by the op) */
  tern_device_rec device;  /* PUT_DEVICE, DEL_DEVICE, SET_LAST_SEEN (strings owned by the op) */
  char *inbox;             /* ACK, DRAIN, MOVE_INBOX */
  char *inbox2;            /* MOVE_INBOX */
  uint64_t seq;            /* ACK, DRAIN */
  size_t max_bytes;        /* DRAIN */
  int64_t now;             /* SWEEP, APPEND (the dedup record's and token's time); 0 = the clock */
  char *dedup_key;         /* APPEND: "<device_id>/<client id>", or NULL */
  char *msg_id;            /* APPEND: the new message id (remembered under dedup_key) */
  char *token_from;        /* APPEND: when set, create the delivery token for msg_id, sent by this user */
  char *kv_key;            /* KV_PUT, KV_DEL: "<namespace>/<id>" */
  tern_store_target *targets; size_t ntargets, targets_cap;
  uint8_t **values; size_t nvalues, values_cap; /* filled only by tern_store_op_add_value */
  /* outputs */
  char *dup_msg_id;        /* APPEND DUPLICATE */
  int64_t dup_ts;
  tern_store_item *items; size_t nitems, items_cap; /* DRAIN */
  bool more;               /* DRAIN: envelopes remain past the last item */
  tern_store_delivered *delivered; size_t ndelivered, delivered_cap; /* ACK */
  uint64_t expired;        /* SWEEP: envelopes removed */
  uint64_t commit_ns;      /* writes: how long the group commit that carried it took */
};

tern_store_op *tern_store_op_new(tern_store_op_type type, tern_store_done_cb done, void *arg);
/* Adds an envelope value (copied) shared by the targets added after it; returns its index. */
size_t tern_store_op_add_value(tern_store_op *op, const uint8_t *value, size_t len);
/* Adds a target inbox receiving values[value_index]. An op should not name the same inbox twice
 * (it would get two envelopes). */
void tern_store_op_add_target(tern_store_op *op, const char *inbox, size_t value_index, bool check_cap);
/* The length of op->values[i] (values are only added with tern_store_op_add_value). */
size_t tern_store_value_len(const uint8_t *value);
void tern_store_op_set_str(char **field, const char *s); /* copies s into an op string field */
/* Copies rec (and its strings) into op->user / op->device, replacing what was there: the way to
 * fill the const char * fields of those records without casts. */
void tern_store_op_set_user(tern_store_op *op, const tern_user_rec *rec);
void tern_store_op_set_device(tern_store_op *op, const tern_device_rec *rec);
void tern_store_op_free(tern_store_op *op); /* the store calls this; callers only on ops never submitted */

/* ---- the store and its backends ------------------------------------------------------------ */
typedef struct tern_store_options {
  const char *dir;            /* data directory of this backend */
  int max_open_files;         /* RocksDB max_open_files */
  int group_max;              /* operations per group commit at most */
  size_t cache_bytes;         /* envelope bytes kept in memory for acks and drains (0 = none) */
  int checkpoint_every;       /* inbox-meta journal records between checkpoints (<= 0: 1024) */
  int64_t inbox_max_envelopes;/* cap for targets with check_cap */
  int64_t inbox_ttl_ms;       /* envelope and delivery token expiry */
  int64_t dedup_ttl_ms;       /* client id memory */
} tern_store_options;

typedef struct tern_store_vtable {
  const char *name;
  /* Reads every user and device record (start-up, before the loop runs). */
  int (*load)(void *self, const tern_store_load_cbs *cbs);
  void (*submit)(void *self, tern_store_op *op);
  /* Envelopes stored right now, all inboxes (for tern_inbox_envelopes); any thread. */
  int64_t (*inbox_total)(void *self);
  /* Finishes every submitted op (their done callbacks run on the next loop turns, or not at
   * all if the loop has stopped), flushes, and frees the backend. Loop thread only. Callbacks
   * that run after close must not submit. Run the loop once more after close (uv_run) so the
   * backend's uv handle closes; until then the ops not yet completed stay allocated. */
  void (*close)(void *self);
} tern_store_vtable;

typedef struct tern_store {
  const tern_store_vtable *vt; /* backend functions */
  void *self;                  /* backend state */
} tern_store;

/* Opens the embedded RocksDB backend in opts->dir (created if missing; its parent must exist).
 * Completions are delivered on loop. group_max <= 0 and max_open_files <= 0 take defaults (1024,
 * 256); cache_bytes 0 keeps no envelope in memory past its group; inbox_max_envelopes <= 0 means no cap; a ttl <= 0 disables that expiry. On failure
 * returns a negative errno-style code and a reason in err. */
int tern_store_open_rocksdb(uv_loop_t *loop, const tern_store_options *opts, tern_store **out, char *err,
                            size_t errlen);

static inline int tern_store_load(tern_store *s, const tern_store_load_cbs *cbs) { return s->vt->load(s->self, cbs); }
static inline void tern_store_submit(tern_store *s, tern_store_op *op) { s->vt->submit(s->self, op); }
static inline int64_t tern_store_inbox_total(tern_store *s) { return s->vt->inbox_total(s->self); }
void tern_store_close(tern_store *s); /* calls vt->close and frees s */

/* ---- metrics the store keeps (any thread) ---------------------------------------------------- */
/* Histogram of group commit durations: bucket upper bounds in seconds are
 * tern_store_commit_buckets[]; counts are cumulative-free (per bucket), plus sum and count.
 * One sample per synced write; groups with nothing to write (only reads or SYNCs) add none. */
#define TERN_STORE_COMMIT_NBUCKETS 12
extern const double tern_store_commit_buckets[TERN_STORE_COMMIT_NBUCKETS];
typedef struct tern_store_commit_hist {
  uint64_t buckets[TERN_STORE_COMMIT_NBUCKETS + 1]; /* last = +Inf */
  uint64_t count;
  double sum;
} tern_store_commit_hist;
void tern_store_commit_hist_read(tern_store *s, tern_store_commit_hist *out);

#endif
