/* app: the core of one ternd event loop: the context every core module works in (settings, the
 * store port, the directory, the providers), its timers and its shutdown sequence. The
 * composition root (src/cmd/ternd.c) makes the parts, hands them to the app, and unwinds them.
 *
 * Per-loop state. Everything that changes lives here and not in a global: the msg-id
 * generator (with this loop's worker index in every id), scratch buffers, metrics, timers,
 * the uploads in progress. With the `workers` setting, each worker thread runs one loop with
 * its own app, its own store port, its own copy of the directory (kept in step by sync.c) and
 * its own sessions; what they share is in a tern_app_group (tern_app_join): the abuse limits,
 * and the list of apps /metrics adds up. Worker 0 is also the media worker: the media store
 * lives on its loop (docs/architecture.md, "Workers").
 *
 * Ownership: the app owns its directory, its store port, its timers and its sessions'
 * bookkeeping, and it takes over the media and push objects handed to it (their handles live
 * on its loop, so its shutdown closes them). The store, net and web objects belong to the
 * composition root, which frees them after tern_app_close.
 */
#ifndef TERN_CORE_APP_H
#define TERN_CORE_APP_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"
#include "base/config.h"
#include "base/map.h"
#include "base/util.h"
#include "core/msgid.h"
#include "core/dir.h"
#include "store/store.h"

struct tern_net;
struct tern_net_handlers;
struct tern_push;
struct tern_media;
struct tern_web;
typedef struct tern_mediaglue_upload tern_mediaglue_upload;

/* Histogram with fixed buckets (seconds). */
#define TERN_HIST_NBUCKETS 12
typedef struct tern_hist {
  uint64_t buckets[TERN_HIST_NBUCKETS + 1]; /* per bucket; last = +Inf */
  uint64_t count;                           /* observations */
  double sum;                               /* seconds */
} tern_hist;
extern const double tern_hist_bounds[TERN_HIST_NBUCKETS];
void tern_hist_observe(tern_hist *h, double seconds);

typedef struct tern_metrics {
  uint64_t messages_sent;        /* sends made durable (duplicates not counted) */
  uint64_t envelopes_delivered;  /* envelopes written to a device's connection */
  uint64_t receipts_delivered;   /* delivered receipts made */
  uint64_t receipts_read;        /* read receipts made */
  uint64_t group_messages;       /* group sends made durable */
  uint64_t fanout_direct;        /* envelopes appended for 1:1 messages */
  uint64_t fanout_group;         /* envelopes appended for group messages */
  tern_hist send_to_sent;        /* send frame received → sent written */
} tern_metrics;

typedef struct tern_app tern_app;
/* The workers of one process and what they share. Made by the composition root, it outlives
 * every app in it; apps[] is filled before any loop runs and never changes after. */
typedef struct tern_app_group {
  struct tern_limits *limits;   /* the process's abuse limits (limits.h: any thread) */
  tern_app **apps;              /* every worker's app, by worker index */
  unsigned napps;
} tern_app_group;

struct tern_app {
  const tern_config *cfg;       /* settings */
  uv_loop_t *loop;              /* this worker's loop */
  unsigned worker;              /* its index (in msg ids) */
  tern_store *store;            /* durable state (shared by workers) */
  tern_store_port *port;        /* this loop's connection to it */
  tern_dir *dir;                /* users, devices, tokens */
  struct tern_groups *groups;   /* groups (groups.h) */
  struct tern_cluster *cluster; /* the other writers: presence, typing, liveness (cluster.h) */
  struct tern_sync *sync;       /* follows directory changes made elsewhere (sync.h) */
  struct receipt_merge *receipt_merge; /* group receipts waiting to merge (receipts.c) */
  struct tern_net *net;         /* listener and connections */
  struct tern_limits *limits;   /* abuse limits and client addresses (limits.h) */
  bool own_limits;              /* made by tern_app_new (no group gave shared ones) */
  tern_app_group *group;        /* the process's workers, or NULL for a lone app (tests) */
  tern_map held_names;          /* deleted accounts' names → int64_t* hold end, ms (accounts.c) */
  unsigned hashes_running;      /* password hashes on the threadpool (accounts.c) */
  size_t hashes_waiting;        /* and waiting for a turn, in order: */
  void *hash_waiting, *hash_waiting_tail;
  struct tern_web *web;         /* the static web client (may serve nothing) */
  struct tern_push *push;       /* push providers (those configured) */
  struct tern_media *media;     /* the media store; NULL once closed */
  struct tern_blobs *media_blobs; /* cluster mode, media worker: the bytes in JetStream (media/blobs.h) */
  tern_map media_fetching;      /* cluster mode, media worker: sha256 hex → the fetch of that content
                                   running (mediaglue.c's fetch_ctx), with the reads waiting on it */
  tern_mediaglue_upload *media_uploads; /* uploads in progress (mediaglue.c's list) */
  tern_map media_replica;       /* not the media worker: media id → its record, from the feed */
  tern_idgen ids;               /* msg ids */
  tern_msgid_key msgid_key;     /* their tags' key (core/msgid.h), set by tern_app_load */
  tern_metrics metrics;         /* counters */
  tern_buf scratch;             /* the endpoint's encoding of one frame (wsjson.c) */
  tern_buf record;              /* the router's envelope record being built */
  tern_buf lists[4];            /* the endpoint's lists of one envelope (wsjson.c) */
  uv_timer_t persist_timer;     /* last seen persistence */
  uv_timer_t sweep_timer;       /* store sweep and device expiry */
  uv_timer_t pace_timer;        /* resumes drains waiting for outbound space */
  uv_timer_t stop_timer;        /* shutdown: waits for connections and the store */
  uv_signal_t sigterm, sigint;
  int64_t stop_deadline;        /* ms: the shutdown grace period ends */
  tern_session *waiting;        /* sessions whose drain waits for outbound space */
  uint64_t pwhash_ops;          /* Argon2id opslimit */
  size_t pwhash_mem;            /* Argon2id memlimit */
  char dummy_hash[128];         /* hash of a random password: unknown users cost a real verify */
  tern_buf kv_doomed;           /* start-up: KV keys the media store refused (NUL-separated) */
  bool timers_started;          /* tern_app_start ran */
  bool stopping;                /* a signal arrived */
  int exit_code;
};

/* ---- lifecycle, for the composition root ---- */
/* Makes the app for loop: checks the settings the core owns (auth.hash_cost), computes the
 * dummy hash (before the loop runs: hashing never happens on it), opens a store port and an
 * empty directory. Returns 0, or a negative errno with a reason in err. */
int tern_app_new(const tern_config *cfg, uv_loop_t *loop, unsigned worker, tern_store *store, tern_app **out,
                 char *err, size_t errlen);
/* Makes a one of the group's workers, before tern_app_load: it drops its own limits for the
 * group's, and /metrics on it reports the whole group. */
void tern_app_join(tern_app *a, tern_app_group *g);
/* True on the worker whose loop owns the media store (worker 0). */
static inline bool tern_app_media_worker(const tern_app *a) { return a->worker == 0; }
/* Loads users, devices and KV records (media records go to a->media, which must be set on the
 * media worker; the other workers leave them to it). */
/* A message id key another node stored (the feed); kept only when this node has none yet. */
void tern_app_adopt_msgid_key(tern_app *a, const uint8_t *v, size_t vlen);
int tern_app_load(tern_app *a, char *err, size_t errlen);
/* The net layer's handlers for this app (HTTP API, WebSocket JSON endpoint). */
void tern_app_net_handlers(tern_app *a, struct tern_net_handlers *h);
/* Starts the timers and signal handlers; the loop may then run. */
void tern_app_start(tern_app *a);
/* After the loop stopped: closes the port (running what completes), the directory and the
 * handles; run the loop once more, then tern_app_free. */
void tern_app_close(tern_app *a);
void tern_app_free(tern_app *a);

/* ---- store glue ---- */
/* Submits op through the app's port (shutdown waits for the pending count to drop). */
void tern_app_submit(tern_app *a, tern_store_op *op);
/* Runs tern_session_pace soon (drains waiting for the client to read). */
void tern_app_pace_soon(tern_app *a);
/* The same, in ms at the latest (a drain retrying after the store was unavailable). */
void tern_app_pace_after(tern_app *a, uint64_t ms);
/* Persists a user's (and optionally a device's) last seen. */
void tern_app_persist_last_seen(tern_app *a, tern_user *u, tern_device *d);

#endif
