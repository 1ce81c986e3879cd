/* store: the durable part of tern, as the core sees it: typed operations on inboxes,
 * envelopes, delivery tokens, client-id de-duplication and the directory records, completed
 * asynchronously, plus the "envelope committed" events a watching session receives.
 *
 * Layers inside src/store (see docs/architecture.md):
 *   store.h/.c     this interface: ops, ports, watches, the commit histogram
 *   committer.c    the group-commit thread and the hand-off to and from the loops
 *   semantics.c    what each op means, written once over the backend primitives
 *   prekeys.c      the E2E key directory's ops (bundles, one-time prekeys claimed once)
 *   backend.h      the primitives (inbox append/read/purge, KV, commit point)
 *   rocksdb.c      the embedded backend (key layout, meta journal, envelope cache)
 *   envelope.h     the neutral binary record of an envelope
 *
 * Threads. A loop submits ops through its port (tern_store_port_new, one per loop); the
 * commit thread applies them in submission order, many per group, commits each group once
 * (one fsync with RocksDB), and hands every op back to the port that submitted it, where
 * op->done runs on that loop, in submission order. Nothing on a loop thread blocks on the
 * store, except open, load and close, which run before the loops start and after they stop.
 *
 * Ordering. Each op sees the effect of every op submitted before it (also in the same group)
 * and none submitted after it. An op's done runs only after everything it wrote and read is
 * durable. So when a DRAIN result arrives, the APPENDs whose envelopes it holds have
 * completed before it, and the APPENDs it does not hold complete after it. If a group fails,
 * every op of the group completes with TERN_STORE_ERROR and had no effect.
 *
 * Delivery events. A session watches its device's inbox (tern_store_watch); every envelope
 * committed to a watched inbox raises the watcher's callback on the watcher's loop, after the
 * commit and before the done of the op that appended it, in seq order per inbox. The router
 * delivers from these events, never from an append's own completion, so envelopes made on
 * another node (cluster mode) reach a session the same way.
 *
 * Shared state. Several writers may share one store: the ports of this process (one per loop)
 * and, with a shared backend (NATS), other nodes. Each port's loop keeps its own copy of the
 * directory, so records written through one writer reach the others as changes
 * (tern_store_follow), in commit order per writer; TERN_OP_CATCH_UP completes once every
 * change committed anywhere before it was submitted has reached its port's follower, so a
 * loop that finds no user, device or group by a name can catch up and look once more. The
 * bus (tern_store_bus_publish) carries what writers tell each other and nobody stores:
 * presence, typing, node liveness.
 *
 * Ownership. An op is made by its tern_op_*_new and belongs to the store from submit on; the
 * store frees it right after done returns (done must not keep pointers into it). Strings and
 * values given to op helpers are copied.
 */
#ifndef TERN_STORE_STORE_H
#define TERN_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"
#include "store/envelope.h"

typedef struct tern_store tern_store;
typedef struct tern_store_port tern_store_port;

/* ---- directory records ------------------------------------------------------------------- */
typedef struct tern_user_rec {
  const char *user;        /* username */
  const char *pwhash;      /* Argon2id encoded hash (libsodium's string form) */
  int64_t created;         /* ms */
  int64_t last_seen;       /* ms, or 0 when never connected */
  int64_t deleted;         /* ms: the account was deleted then and the record is a tombstone
                              holding the name (accounts.name_hold); 0 for a live account */
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

/* Directory records as they are read at start-up (tern_store_load) and as they change through
 * other writers afterwards (tern_store_follow). Every callback may be NULL. */
typedef struct tern_store_load_cbs {
  void (*user)(const tern_user_rec *rec, void *arg);     /* a stored user (new or changed) */
  void (*device)(const tern_device_rec *rec, void *arg); /* a stored device (new or changed) */
  /* a KV_PUT record, or one an APPEND wrote (key as given, value bytes) */
  void (*kv)(const char *key, size_t klen, const uint8_t *value, size_t vlen, void *arg);
  /* follow only: a device record deleted (logout, expiry), a KV record deleted */
  void (*device_gone)(const char *device_id, void *arg);
  void (*user_gone)(const char *user, void *arg); /* a user record deleted (DEL_USER) */
  void (*kv_gone)(const char *key, size_t klen, void *arg);
  void *arg;
} tern_store_load_cbs;

/* ---- operations -------------------------------------------------------------------------- */
typedef enum {
  TERN_OP_PUT_USER,      /* tern_op_record; with create set, a user of that name already
                            stored answers DUPLICATE and nothing is written (a registration
                            race between two loops or nodes has one winner) */
  TERN_OP_PUT_DEVICE,    /* tern_op_record; with create set, a new device (a login or a
                            registration), counted against max_devices in the user's device
                            index (below): past it, FULL and the device is not stored */
  TERN_OP_SET_LAST_SEEN, /* tern_op_record: user.user + user.last_seen and/or device.device_id +
                            device.last_seen (each optional, at least one) */
  TERN_OP_DEL_DEVICE,    /* tern_op_inbox: inbox = the device id; deletes the device record,
                            its inbox and counters and its remembered client ids */
  TERN_OP_MOVE_INBOX,    /* tern_op_inbox: moves every envelope of inbox (the "@user" inbox)
                            into inbox2 (a device id) with new seqs, in order, then forgets
                            inbox (its seqs never reached a client) */
  TERN_OP_APPEND,        /* tern_op_append */
  TERN_OP_ACK,           /* tern_op_inbox: inbox, seq (cumulative, clamped to the highest
                            stored; acking again is harmless), user; out: delivered[]: the
                            copies with TERN_ENV_F_RECEIPT that this ack delivered: SOLE ones,
                            and those whose token it consumed ("<msg_id>", or for a group
                            message "<msg_id>/<user>"), so each is reported once.
                            With receipts (below), the delivered receipts of 1:1 messages are
                            made in the ack's own durable step, and left out of delivered[] */
  TERN_OP_DRAIN,         /* tern_op_inbox: inbox, seq (read envelopes after it), max_bytes
                            (0 = 1 MiB); out: items[] in seq order (at least one if any, until
                            their values would pass max_bytes), more */
  TERN_OP_SWEEP,         /* tern_op_inbox: now (0 = the clock); expires envelopes (inbox.ttl by
                            their ts, from each inbox's head, consuming no token), client ids
                            and delivery tokens, within a budget of about 10,000 records per
                            op, resuming there next time; out: expired (envelopes) */
  TERN_OP_SYNC,          /* tern_op_inbox, no fields: done once everything before is durable */
  TERN_OP_CATCH_UP,      /* tern_op_inbox, no fields: done once every change committed by
                            any writer before it was submitted has reached this port's
                            follower (tern_store_follow); a store with no other writer
                            completes it at once */
  TERN_OP_KV_PUT,        /* tern_op_kv: key, value: another module's small record (media),
                            read back at start-up by the load's kv callback */
  TERN_OP_KV_DEL,        /* tern_op_kv: key */
  TERN_OP_DEL_USER,      /* tern_op_record: user.user; deletes the user record (a held name
                            whose hold is over: the name is free again) */
  /* The E2E key directory (PROTOCOL.md 11, prekeys.c). A device's bundle is the record
   * "e2e/<device id>" in RECORDS (so every writer's directory learns who is E2E-capable through
   * the change feed); its one-time prekeys live in the PREKEYS bucket. DEL_DEVICE deletes both. */
  TERN_OP_KEYS_PUT,      /* tern_op_keys: device_id, user, the bundle fields given (has_*),
                            prekeys[]; out: refusal (status CONFLICT), bundle + nprekeys after */
  TERN_OP_KEYS_GET,      /* tern_op_keys: device_id; out: found, bundle, nprekeys */
  TERN_OP_KEYS_CLAIM,    /* tern_op_keys: devices[] (ids); out: bundles[] of those with keys,
                            each with one one-time prekey taken out of the store (has_prekey),
                            so that no two claims ever get the same key */
  TERN_OP__COUNT
} tern_store_op_type;

typedef enum {
  TERN_STORE_OK = 0,
  TERN_STORE_DUPLICATE, /* APPEND: the dedup key was seen before: dup_msg_id/dup_ts answer it;
                           PUT_USER with create: the user exists */
  TERN_STORE_FULL,      /* APPEND: a target with TERN_CAP_REFUSE is at inbox.max_envelopes;
                           PUT_DEVICE with create: the user has max_devices devices */
  TERN_STORE_ERROR,     /* I/O error; err holds the reason; the op had no effect */
  TERN_STORE_CONFLICT,  /* APPEND with record_check: the stored record is not the one the op
                           was based on (another writer changed it); the op had no effect */
  TERN_STORE_UNAVAILABLE, /* the store cannot be written now (a shared backend lost its
                           servers or its quorum); the op had no effect, and the same op
                           later may succeed: answer `unavailable` / 503 */
  TERN_STORE_NOT_FOUND, /* APPEND with replace_of or check_of: that message was deleted
                           already; nothing was written */
} tern_store_status;

typedef struct tern_store_op tern_store_op;
typedef void (*tern_store_done_cb)(tern_store_op *op);

/* The head of every op. The typed structs below start with it; tern_op_as_* converts back. */
struct tern_store_op {
  tern_store_op_type type;  /* which struct this is */
  tern_store_done_cb done;  /* called on the submitting loop when finished; may be NULL */
  void *arg;                /* caller's context */
  tern_store_status status; /* out */
  char err[128];            /* out: ERROR reason */
  uint64_t commit_ns;       /* out: how long the group commit that carried it took */
  tern_store_op *next;      /* store-private: queue link */
  size_t dispatched;        /* store-private: targets whose delivery events were raised */
  tern_store_port *port;    /* store-private: where it completes */
};

/* What a full inbox does to a target of an APPEND. */
typedef enum {
  TERN_CAP_NONE = 0, /* never refused (receipts, copies to the sender's devices, group events) */
  TERN_CAP_REFUSE,   /* the whole APPEND is refused (FULL): a 1:1 message */
  TERN_CAP_SKIP,     /* only this target is left out (skipped set): a group message */
} tern_cap_mode;

typedef struct tern_store_target {
  char *inbox;          /* inbox name (owned by the op) */
  size_t value;         /* index into the op's values */
  uint8_t cap;          /* tern_cap_mode */
  bool skipped;         /* out: TERN_CAP_SKIP and the inbox was full: nothing appended */
  void *cookie;         /* the caller's (a device pointer), returned untouched */
  bool live;            /* replace_of: the device is connected (here or on another node), so
                           it may have had the original: it also gets the value appended */
  uint64_t seq;         /* out: the seq assigned (0 when skipped, or when replace_of put the
                           value in the original's place and nothing was appended) */
  uint64_t replaced_seq;/* out, replace_of: the original's seq the value took (a backend that
                           can only erase, NATS: the seq whose original went; the value is
                           appended then), or 0 */
} tern_store_target;

typedef struct tern_op_append {
  tern_store_op op;     /* head */
  /* in */
  tern_store_target *targets; size_t ntargets, targets_cap;
  tern_buf *values; size_t nvalues, values_cap; /* packed envelope records (envelope.h) */
  char *dedup_key;      /* "<device_id>/<client id>", or NULL */
  /* Only look dedup_key up: DUPLICATE (with dup_msg_id) when it is stored, else OK with
   * nothing written (a send refused before it is stored must still answer a repeat of an id
   * that was stored with its first answer). */
  bool dedup_probe;
  char *msg_id;         /* the new message id (remembered under dedup_key) */
  /* Delivery tokens to create, each valued token_from (the sender): "<msg_id>" for a 1:1
   * message to a recipient with several devices, "<msg_id>/<member>" for each member of a
   * group with several devices. The first ack of a copy consumes its token (store.h, ACK). */
  char **tokens; size_t ntokens, tokens_cap;
  char *token_from;
  int64_t now;          /* the dedup record's and token's time (0 = the clock) */
  /* A body stored once for every target (group messages): when set, each value should carry
   * a TERN_EF_BODY_REF field naming body_id, and the body lives until the last envelope
   * referencing it is acked or expires. Events and drains hand it back beside the record. */
  char *body_id;
  tern_buf body;
  /* A record of another module written (or deleted) in the same durable step as the
   * envelopes, only when the append succeeds: a group change and its events. */
  char *record_key;     /* RECORDS bucket key ("group/<id>"), or NULL */
  tern_buf record;      /* its value */
  bool record_delete;   /* delete it instead */
  /* Compare-and-set: with record_check, the whole APPEND happens only while the stored record
   * is still the one this writer based its change on: absent (record_absent) or the value
   * whose BLAKE2b-256 is record_hash. Otherwise the op answers CONFLICT. */
  bool record_check;
  bool record_absent;
  uint8_t record_hash[32];
  /* Delete for everyone (PROTOCOL.md 15). index_msg: remember, in the MSGS bucket under
   * msg_id for limits.delete_window, where each appended envelope waits (inbox and seq) and
   * the message's media (index_media, or NULL). replace_of: this APPEND is the delete of that
   * message: every envelope of it still waiting is overwritten in place by the delete (a
   * target's own value, or the first value for an inbox no target names), a target whose
   * original was replaced gets nothing appended unless it is live, a target the message never
   * reached gets the value appended as usual, shared bodies lose the replaced envelopes'
   * references, and the message is remembered as deleted: a second delete answers NOT_FOUND.
   * A message with no index (older than the window or than this feature) is deleted by
   * appending alone. */
  bool index_msg;
  char *index_media;
  char *index_group;    /* index_msg: the group of a group message, or NULL */
  char *replace_of;
  /* replace_of by a group admin for another member's message: the msg_id's tag cannot prove
   * its group then, so the locator must exist and name this group, else NOT_FOUND. */
  char *replace_group;
  /* check_of: refuse with NOT_FOUND when that message was deleted (an edit of it; PROTOCOL.md
   * 15 checks "already deleted" before "another user's message"). With of_probe, only that
   * check: OK with nothing written (the caller then refuses the send for its own reason, or
   * revokes the media a delete will take away: replaced_media names the message's). */
  char *check_of;
  bool of_probe;
  /* out */
  char *dup_msg_id;     /* DUPLICATE */
  int64_t dup_ts;
  size_t nskipped;      /* targets skipped (TERN_CAP_SKIP) */
  size_t nreplaced;     /* replace_of: envelopes overwritten in place */
  char *replaced_media; /* replace_of: the deleted message's media id, or NULL (of_probe: the
                           checked message's) */
} tern_op_append;

typedef struct tern_store_item {
  uint64_t seq;         /* envelope seq */
  tern_buf value;       /* packed record (owned by the op) */
  tern_buf body;        /* its shared body, when the record has a TERN_EF_BODY_REF */
} tern_store_item;

typedef struct tern_store_delivered {
  char *msg_id;         /* newly delivered message (owned by the op) */
  char *from;           /* its sender */
  char *group_id;       /* the group, for a group message (NULL otherwise) */
} tern_store_delivered;

/* ACK, DRAIN, SWEEP, SYNC, DEL_DEVICE, MOVE_INBOX */
typedef struct tern_op_inbox {
  tern_store_op op;     /* head */
  /* in */
  char *inbox;          /* ACK, DRAIN, MOVE_INBOX (from), DEL_DEVICE (the device id) */
  char *inbox2;         /* MOVE_INBOX (to) */
  char *user;           /* ACK: the acking device's user (group copies' tokens are per member) */
  uint64_t seq;         /* ACK, DRAIN */
  size_t max_bytes;     /* DRAIN */
  int64_t now;          /* SWEEP (0 = the clock) */
  /* out */
  tern_store_item *items; size_t nitems, items_cap; /* DRAIN */
  bool more;            /* DRAIN: envelopes remain past the last item */
  bool unsettled;       /* DRAIN: it stopped before an envelope another node is still committing
                           (cluster mode): read again shortly */
  tern_store_delivered *delivered; size_t ndelivered, delivered_cap; /* ACK, in seq order */
  /* ACK, in and out: the delivered receipts this ack makes itself, so that a receipt is
   * durable exactly when the ack is (a receipt made after the ack completed was lost to a
   * crash between the two) and one store operation does both. receipt_from[k] is a sender
   * (the caller's guess of who sent what it acks: more is harmless), and the targets of
   * receipts whose value is k are that sender's devices. The store fills values[k] with the
   * receipt of the 1:1 messages from receipt_from[k] this ack delivered and appends it to
   * those targets (seq 0 when there was none: nothing appended), and leaves them out of
   * delivered[]; group messages and senders not named stay in delivered[]. Owned by the op. */
  tern_op_append *receipts;
  char **receipt_from; size_t nreceipt_from;
  size_t nreceipts;     /* out: receipts made (values appended) */
  /* ACK, in and out: the group messages' delivered receipts wait for receipts.merge_window
   * before they go out merged (core/receipts.c). So that a kill -9 in that window loses none,
   * the ack appends them as one part to the inbox parts_inbox (the submitter's queue) in its
   * own step: a receipt envelope whose `by` is the acking user and each of whose msg_ids is
   * "<group>\n<sender>\n<msg_id>" (none of the three can hold a newline). parts_first and
   * parts_last are the first and last seqs it appended (0: none; one part, so equal). The
   * submitter acks the queue once the merged receipts are stored, and reads it again at
   * start. NULL: no parts. Owned by the op. */
  char *parts_inbox;
  uint64_t parts_first, parts_last;
  uint64_t expired;     /* SWEEP */
} tern_op_inbox;

/* PUT_USER, PUT_DEVICE, SET_LAST_SEEN */
typedef struct tern_op_record {
  tern_store_op op;     /* head */
  bool create;          /* PUT_USER: only if no user of that name is stored; PUT_DEVICE: a new
                           device, checked against max_devices and added to the user's index */
  tern_user_rec user;   /* strings owned by the op */
  tern_device_rec device;
  /* PUT_DEVICE with create. The limit holds in the store, not in a directory: the user's
   * device index (TERN_DEVICES_RECORD_PREFIX) is read and written back in the op's group, so
   * of two logins racing on two nodes for the last slot one commits and the other is applied
   * again on the new index and answers FULL. */
  uint32_t max_devices; /* devices.max_per_user (0: no limit, the device is only indexed) */
  /* The user's other devices as the submitter's directory knows them: they seed the index of
   * a user who has none yet (devices logged in before the index existed). Owned by the op. */
  char **known; size_t nknown, known_cap;
  /* The user-level inbox ("@user") to move into the device in the same op once it is accepted
   * (a first device: a refused one must not take the user's waiting messages), or NULL. */
  char *move_from;
} tern_op_record;

/* Adds a device id (copied) to a PUT_DEVICE's known[]. */
void tern_op_record_add_known(tern_op_record *op, const char *device_id);

/* The RECORDS key prefix of a user's device index, "devices/<user>" → the ids of the user's
 * stored devices, kept by PUT_DEVICE with create, DEL_DEVICE and DEL_USER (semantics.c). Every
 * writer's feed carries it; the directory does not use it (it counts its own devices). */
#define TERN_DEVICES_RECORD_PREFIX "devices/"

/* ---- E2E keys ---- */
#define TERN_KEY_PUB_LEN 33        /* a Curve25519 public key: type byte 0x05 + 32 bytes */
#define TERN_KEY_SIG_LEN 64        /* an XEdDSA signature */
#define TERN_KEY_ID_MAX 16777215   /* key ids are 1..2^24-1 */
#define TERN_KEY_REG_ID_MAX 16380  /* registration ids are 1..16380 */

typedef struct tern_prekey {
  uint32_t id;                     /* 1..TERN_KEY_ID_MAX */
  uint8_t pub[TERN_KEY_PUB_LEN];
} tern_prekey;

typedef struct tern_key_bundle {
  char *device_id;                 /* owned by the op */
  char *user;                      /* the device's user (owned) */
  uint32_t registration_id;
  uint8_t identity[TERN_KEY_PUB_LEN];
  uint32_t spk_id;                 /* the signed prekey */
  uint8_t spk_pub[TERN_KEY_PUB_LEN];
  uint8_t spk_sig[TERN_KEY_SIG_LEN];
  bool has_prekey;                 /* CLAIM: a one-time prekey was left and is now this one's */
  tern_prekey prekey;
  uint32_t nprekeys;               /* one-time prekeys stored (after the op) */
} tern_key_bundle;

typedef enum {
  TERN_KEYS_OK = 0,
  TERN_KEYS_NEED_IDENTITY, /* PUT: the device has no keys yet and the PUT lacks the identity
                              key, registration id or signed prekey */
  TERN_KEYS_IDENTITY,      /* PUT: another identity key (or registration id) is already set */
  TERN_KEYS_TOO_MANY,      /* PUT: the one-time prekeys would pass max_prekeys */
  TERN_KEYS_NO_DEVICE,     /* PUT: no such device is stored (deleted meanwhile) */
} tern_keys_refusal;

/* KEYS_PUT, KEYS_GET, KEYS_CLAIM */
typedef struct tern_op_keys {
  tern_store_op op;        /* head */
  /* in */
  char *device_id;         /* PUT, GET */
  char *user;              /* PUT: the device's user */
  bool has_identity;       /* PUT: identity + registration_id given */
  bool has_spk;            /* PUT: a signed prekey given (replaces the stored one) */
  tern_key_bundle in;      /* PUT: registration_id, identity, spk_* (device_id/user unused) */
  tern_prekey *prekeys; size_t nprekeys, prekeys_cap; /* PUT: one-time prekeys to add */
  uint32_t max_prekeys;    /* PUT: e2e.max_prekeys (0: none) */
  char **devices; size_t ndevices, devices_cap; /* CLAIM: device ids */
  /* out */
  tern_keys_refusal refusal; /* PUT with status CONFLICT */
  bool found;              /* GET; PUT: the bundle after the op */
  tern_key_bundle bundle;  /* GET, PUT (strings owned) */
  tern_key_bundle *bundles; size_t nbundles; /* CLAIM, in the order of devices[] */
  /* The record the op wrote ("e2e/<device id>" value; empty when none), so that the submitting
   * loop can apply it to its own directory: the change feed skips the writer's own port. */
  tern_buf record;
} tern_op_keys;

tern_op_keys *tern_op_keys_new(tern_store_op_type type, tern_store_done_cb done, void *arg);
static inline tern_op_keys *tern_op_as_keys(tern_store_op *op) { return (tern_op_keys *)(void *)op; }
/* Adds a one-time prekey to a PUT / a device id to a CLAIM (copied). */
void tern_op_keys_add_prekey(tern_op_keys *op, uint32_t id, const uint8_t pub[TERN_KEY_PUB_LEN]);
void tern_op_keys_add_device(tern_op_keys *op, const char *device_id);

/* The RECORDS key prefix of key bundles, and a bundle record's parse (the directory's view of
 * who is E2E-capable, at load and from the change feed). 0, or -EINVAL for a malformed record;
 * out's strings are not set (the device is the key's, after the prefix). */
#define TERN_KEYS_RECORD_PREFIX "e2e/"
int tern_keys_record_decode(const uint8_t *v, size_t n, tern_key_bundle *out);

/* KV_PUT, KV_DEL */
typedef struct tern_op_kv {
  tern_store_op op;     /* head */
  char *key;            /* "<namespace>/<id>" */
  tern_buf value;       /* KV_PUT */
} tern_op_kv;

tern_op_append *tern_op_append_new(tern_store_done_cb done, void *arg);
tern_op_inbox *tern_op_inbox_new(tern_store_op_type type, tern_store_done_cb done, void *arg);
tern_op_record *tern_op_record_new(tern_store_op_type type, tern_store_done_cb done, void *arg);
tern_op_kv *tern_op_kv_new(tern_store_op_type type, tern_store_done_cb done, void *arg);

static inline tern_op_append *tern_op_as_append(tern_store_op *op) { return (tern_op_append *)(void *)op; }
static inline tern_op_inbox *tern_op_as_inbox(tern_store_op *op) { return (tern_op_inbox *)(void *)op; }
static inline tern_op_record *tern_op_as_record(tern_store_op *op) { return (tern_op_record *)(void *)op; }
static inline tern_op_kv *tern_op_as_kv(tern_store_op *op) { return (tern_op_kv *)(void *)op; }

/* Adds an envelope record (copied) for targets to name; returns its index. */
size_t tern_op_append_value(tern_op_append *op, const void *value, size_t len);
/* Adds a target inbox receiving values[value]. An op should not name the same inbox twice. */
tern_store_target *tern_op_append_target(tern_op_append *op, const char *inbox, size_t value, tern_cap_mode cap,
                                         void *cookie);
/* Adds a delivery token key (copied). */
void tern_op_append_token(tern_op_append *op, const char *key);
/* Sets the shared body (copied) and its id. */
void tern_op_append_body(tern_op_append *op, const char *body_id, const void *body, size_t len);
void tern_store_set_str(char **field, const char *s); /* copies s into an op string field */
/* Copies rec (and its strings) into the op's user / device record. */
void tern_op_record_set_user(tern_op_record *op, const tern_user_rec *rec);
void tern_op_record_set_device(tern_op_record *op, const tern_device_rec *rec);
/* Frees an op never submitted (the store frees submitted ones). */
void tern_store_op_free(tern_store_op *op);
/* Frees the calling thread's pool of finished ops (ops are pooled per thread): a thread that
 * made ops calls it before it ends, or the pool is lost with the thread. */
void tern_store_op_pools_free(void);

/* ---- the store ----------------------------------------------------------------------------- */
typedef struct tern_store_options {
  const char *backend;        /* "rocksdb" (NULL: rocksdb) */
  const char *dir;            /* data directory of the backend */
  int max_open_files;         /* RocksDB max_open_files (<= 0: 256) */
  int group_max;              /* operations per group commit at most (<= 0: 1024) */
  size_t cache_bytes;         /* envelope bytes kept in memory for acks and drains (0 = none) */
  int checkpoint_every;       /* RocksDB meta journal records between checkpoints (<= 0: 1024) */
  int64_t inbox_max_envelopes;/* cap for targets with a cap mode (<= 0: none) */
  int64_t inbox_ttl_ms;       /* envelope, token and shared body expiry (<= 0: never) */
  int64_t dedup_ttl_ms;       /* client id memory (<= 0: forever) */
  int64_t msg_ttl_ms;         /* where messages' envelopes wait, for deletes (limits.delete_window;
                                 <= 0: 48h) */
  const char *node;           /* this node's id among the nodes of a shared store (NULL: "local") */
  /* backend "nats" (cluster mode, nats.c): */
  const char *nats_urls;      /* comma list of NATS server URLs */
  int nats_replicas;          /* replicas of streams and buckets (<= 0: 3 with >= 3 URLs, else 1) */
  const char *nats_namespace; /* prefix of every stream, bucket and subject (NULL: "tern") */
  int64_t nats_test_feed_delay_ms; /* tests only (nats.test_feed_delay): other nodes' directory
                                      changes reach this node this many ms after they were made */
} tern_store_options;

/* Opens the store with the backend named in opts and starts its commit thread. Returns 0, or
 * a negative errno with a reason in err (-EINVAL for an unknown backend). */
int tern_store_open(const tern_store_options *opts, tern_store **out, char *err, size_t errlen);
/* Reads every user, device and KV record (start-up, before any port submits). */
int tern_store_load(tern_store *s, const tern_store_load_cbs *cbs, char *err, size_t errlen);
/* The backend's name ("rocksdb" or "nats"). */
const char *tern_store_backend_name(const tern_store *s);
/* Envelopes stored right now, all inboxes (tern_inbox_envelopes); any thread. */
int64_t tern_store_inbox_total(tern_store *s);
/* Bytes of memory the store's backend holds, by part (tern_store_memory_bytes; 0: none). */
typedef struct tern_store_memory {
  int64_t memtables;      /* writes not flushed to tables yet (RocksDB: every memtable) */
  int64_t block_cache;    /* table blocks cached for reads */
  int64_t table_readers;  /* open tables' indexes and filters */
  int64_t envelope_cache; /* envelopes kept for acks and drains (store.cache_bytes) */
} tern_store_memory;
/* Any thread, never blocking: the last sample (about once a second while the store commits).
 * false when the backend does not measure it (NATS: the memory is the servers'). */
bool tern_store_memory_read(tern_store *s, tern_store_memory *out);
/* Stops the commit thread after it finished every op submitted so far, and frees the store.
 * Every port must have been closed first. */
void tern_store_close(tern_store *s);

/* A loop's connection to the store. Ops submitted through it during one loop iteration reach
 * the commit thread together at the end of the iteration (one wake-up, not one per op);
 * their completions and the delivery events of inboxes watched through it run on this loop. */
int tern_store_port_new(tern_store *s, uv_loop_t *loop, tern_store_port **out, char *err, size_t errlen);
/* Puts the port's end-of-iteration hand-over ahead of every other prepare handle of its loop
 * started so far (libuv runs them last started first). Call it once the loop's other parts
 * exist: then the ops of an iteration reach the commit thread before that iteration's writes
 * (the net layer's flush pass) reach the clients, so a client that saw the answer to a later
 * frame knows its earlier frames' ops are queued ahead of anything another worker submits
 * after that. */
void tern_store_port_hand_over_first(tern_store_port *p);
/* Submits op (the port's loop thread only). */
void tern_store_submit(tern_store_port *p, tern_store_op *op);
/* Ops submitted through the port and not yet completed. */
int64_t tern_store_port_pending(const tern_store_port *p);
/* Closes the port: ops still in the store complete on later loop turns (their done runs), or
 * are freed without done if the loop does not run again. Run the loop once more afterwards so
 * the port's handles close. Callbacks running after close must not submit. */
void tern_store_port_close(tern_store_port *p);

/* ---- delivery events ------------------------------------------------------------------------ */
typedef struct tern_store_env {
  const char *inbox;    /* the inbox it was committed to */
  uint64_t seq;         /* its seq */
  const uint8_t *value; /* the packed record */
  size_t len;
  const uint8_t *body;  /* the shared body (TERN_EF_BODY_REF), or NULL */
  size_t body_len;
} tern_store_env;
typedef void (*tern_store_event_cb)(void *watcher, const tern_store_env *e);

/* From now on, every envelope committed to inbox raises cb(watcher, ...) on p's loop. One
 * watcher per inbox: a new watch replaces the old one. */
void tern_store_watch(tern_store_port *p, const char *inbox, tern_store_event_cb cb, void *watcher);
/* Stops it, if watcher is still the inbox's watcher. */
void tern_store_unwatch(tern_store_port *p, const char *inbox, void *watcher);

/* ---- shared state: the change feed and the bus ---------------------------------------------- */
/* True when the store has writers besides this port: other ports (loops) of this process or,
 * with a shared backend, other nodes. Only then can the directory lag, and a miss is worth a
 * CATCH_UP. */
bool tern_store_port_shared(const tern_store_port *p);
/* From now on, directory records written by other writers (other ports, other nodes) arrive
 * at cbs on p's loop, in commit order per writer; what this port writes does not come back.
 * cbs is copied. Set before the loop runs. */
void tern_store_follow(tern_store_port *p, const tern_store_load_cbs *cbs);
/* Messages published on the bus by other writers arrive at cb on p's loop. */
typedef void (*tern_store_bus_cb)(void *arg, const uint8_t *msg, size_t len);
void tern_store_bus_follow(tern_store_port *p, tern_store_bus_cb cb, void *arg);
/* Delivery events and bus messages are at most once with a shared backend, and a cut in its
 * link to the servers (a NATS reconnect) loses those of that moment, here and at the other
 * nodes: cb(arg) runs on p's loop once the link is back, for the loop to read its watched
 * inboxes again and tell the other writers to. Set before the loop runs. */
void tern_store_relink_follow(tern_store_port *p, void (*cb)(void *arg), void *arg);
/* Publishes msg (copied) to every other port of this process and, with a shared backend, to
 * every other node: at most once, unordered between writers, lost when a node is down.
 * p's loop thread; never blocks. */
void tern_store_bus_publish(tern_store_port *p, const void *msg, size_t len);
/* The port as its loop's mailbox, for the workers of one process: fn(arg, true) runs on p's loop,
 * in order with everything else posted to p (delivery events, changes, bus messages: one queue,
 * drained whole per wake-up, since uv_async_send coalesces). Posted to a port that is closing,
 * or still queued when it has closed, fn(arg, false) runs instead, on the poster's thread or at
 * the close, so that arg can be freed. Any thread. */
typedef void (*tern_store_call_fn)(void *arg, bool run);
void tern_store_port_call(tern_store_port *p, tern_store_call_fn fn, void *arg);

/* The store's health for /healthz (PROTOCOL.md 12): whether it can store and with what
 * redundancy. Any thread, never blocking (a shared backend reports what its poller saw last);
 * the embedded backend is always OK. reason gets why, "" when OK. */
typedef enum { TERN_HEALTH_OK = 0, TERN_HEALTH_DEGRADED, TERN_HEALTH_UNAVAILABLE } tern_store_health_state;
tern_store_health_state tern_store_health(tern_store *s, char *reason, size_t n);

/* This writer's node id: unique among the nodes sharing the store (with one node, "local"). */
const char *tern_store_node_id(const tern_store *s);

/* ---- metrics (any thread) ---------------------------------------------------------------- */
/* Histogram of group commit durations: bucket upper bounds in seconds are
 * tern_store_commit_buckets[]; counts per bucket (not cumulative), plus sum and count. One
 * sample per group that wrote something. */
#define TERN_STORE_COMMIT_NBUCKETS 12
extern const double tern_store_commit_buckets[TERN_STORE_COMMIT_NBUCKETS];
typedef struct tern_store_commit_hist {
  uint64_t buckets[TERN_STORE_COMMIT_NBUCKETS + 1]; /* last = +Inf */
  uint64_t count;
  double sum;
} tern_store_commit_hist;
void tern_store_commit_hist_read(tern_store *s, tern_store_commit_hist *out);
/* Shared bodies stored right now (tern_shared_bodies). */
int64_t tern_store_shared_bodies(tern_store *s);

#endif
