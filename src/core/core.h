/* core.h: the types the core layer's modules share (internal to src/core).
 *
 * Everything here lives on the loop thread. The directory (users, devices, tokens) is held in
 * memory, loaded from the store at start-up and written through to it; inboxes live only in
 * the store. Ownership: the app owns users and devices; a device is owned by its user's list;
 * a session is owned by its connection (conn data) and referenced by its device while live. */
#ifndef TERN_CORE_CORE_H
#define TERN_CORE_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"
#include "base/config.h"
#include "base/map.h"
#include "net/server.h"
#include "proto/frame.h"
#include "store/store.h"
#include "net/webroot.h"
#include "push/push.h"
#include "media/media.h"

#define TERN_DEVICE_ID_LEN 24 /* hex chars of 96 random bits */

typedef struct tern_app tern_app;
typedef struct tern_user tern_user;
typedef struct tern_device tern_device;
typedef struct tern_session tern_session;
typedef struct tern_mediaglue_upload tern_mediaglue_upload;

struct tern_user {
  char name[TERN_USERNAME_MAX + 1]; /* lower-case username */
  char *pwhash;                     /* Argon2id string; NULL while registration hashes */
  int64_t created;                  /* ms */
  int64_t last_seen;                /* ms; 0 = never connected */
  int64_t persisted_last_seen;      /* what the store holds */
  tern_device *devices;             /* list via next_in_user */
  int ndevices;                     /* length of devices */
  int online;                       /* authenticated sessions right now */
  double tokens;                    /* send rate limit bucket */
  int64_t tokens_at;                /* ms of the last refill */
  tern_session **watchers;          /* sessions watching this user */
  size_t nwatchers, watchers_cap;
  bool pending;                     /* registration still hashing/committing */
};

struct tern_device {
  char id[TERN_DEVICE_ID_LEN + 1]; /* hex */
  tern_user *user;                 /* owner */
  char *label;                     /* from register/login, may be "" */
  uint8_t token_hash[32];          /* BLAKE2b-256 of the bearer token */
  int64_t created;                 /* ms */
  int64_t last_seen;               /* ms of the last activity (connection), 0 = never */
  tern_session *session;           /* the live WebSocket session, or NULL */
  tern_push_reg *push;             /* push registration (owned), or NULL */
  tern_device *next_in_user;       /* user's device list */
};

typedef enum {
  SESS_AUTH = 0, /* waiting for the auth frame */
  SESS_DRAIN,    /* sending the stored inbox */
  SESS_LIVE,     /* synced: live envelopes are written as they commit */
  SESS_GONE,     /* connection closed; kept while store ops reference it */
} tern_session_state;

struct tern_session {
  tern_app *app;           /* owner */
  tern_conn *conn;         /* NULL once gone */
  tern_device *dev;        /* after auth; NULL when gone or the device was deleted */
  uint64_t sent_seq;       /* highest seq written to this connection */
  uint64_t acked_seq;      /* highest seq acked on this connection */
  uint32_t refs;           /* store ops in flight that point here, plus one for the conn */
  uint8_t state;           /* tern_session_state */
  bool drain_inflight;     /* a DRAIN op is out */
  bool drain_waiting;      /* paused until the client reads what was sent */
  tern_user **watching;    /* users this session watches */
  size_t nwatching, watching_cap;
  tern_session *wait_next; /* app's list of sessions waiting for outbound space */
  uint32_t acks_inflight;  /* ACK ops out for this session */
  tern_frame *reads;       /* read frames held until the acks before them made their receipts */
  size_t nreads, reads_cap;
};

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
  tern_hist send_to_sent;        /* send frame received → sent written */
} tern_metrics;

struct tern_app {
  const tern_config *cfg;  /* settings */
  uv_loop_t *loop;         /* the one event loop */
  tern_store *store;       /* durable state */
  tern_net *net;           /* listener and connections */
  tern_map users;          /* name → tern_user */
  tern_map devices;        /* device id → tern_device */
  tern_map tokens;         /* 32-byte token hash → tern_device */
  tern_metrics metrics;    /* counters */
  tern_web *web;           /* the static web client (may serve nothing) */
  tern_push *push;         /* push providers (those configured) */
  tern_media *media;       /* the media store (image sharing); NULL once closed */
  tern_mediaglue_upload *media_uploads; /* uploads in progress (mediaglue.c's list) */
  uv_timer_t persist_timer;/* last seen persistence */
  uv_timer_t sweep_timer;  /* store sweep and device expiry */
  uv_timer_t pace_timer;   /* resumes drains waiting for outbound space */
  uv_signal_t sigterm, sigint;
  tern_session *waiting;   /* sessions whose drain waits for outbound space */
  uint64_t pwhash_ops;     /* Argon2id opslimit */
  size_t pwhash_mem;       /* Argon2id memlimit */
  char dummy_hash[128];    /* hash of a random password: unknown users cost a real verify */
  int64_t ops_pending;     /* store ops in flight (shutdown waits for these) */
  bool stopping;           /* a signal arrived */
  int exit_code;
};

/* ---- dir.c: the in-memory directory ---- */
tern_user *tern_dir_user(tern_app *a, const char *name);
tern_user *tern_dir_add_user(tern_app *a, const char *name);
tern_device *tern_dir_device(tern_app *a, const char *id);
tern_device *tern_dir_by_token(tern_app *a, const char *token, size_t len);
/* The device of an "Authorization: Bearer TOKEN" header value (NULL header → NULL). */
tern_device *tern_dir_by_bearer(tern_app *a, const char *authorization);
/* Creates a device with a fresh id and token for u; token_out gets the bearer token (44 bytes). */
tern_device *tern_dir_add_device(tern_app *a, tern_user *u, const char *label, char token_out[48]);
/* Adds a device loaded from the store. */
tern_device *tern_dir_load_device(tern_app *a, tern_user *u, const char *id, const char *label,
                                  const uint8_t token_hash[32], int64_t created, int64_t last_seen);
/* Unlinks and frees d (its session, if any, must already be detached). */
void tern_dir_remove_device(tern_app *a, tern_device *d);
void tern_dir_remove_user(tern_app *a, tern_user *u); /* only for a failed registration */
void tern_token_hash(const char *token, size_t len, uint8_t out[32]);
void tern_dir_free(tern_app *a);

/* ---- store glue (app.c) ---- */
/* Submits op, counting it as pending for shutdown. */
void tern_app_submit(tern_app *a, tern_store_op *op);
/* Called from every op's done callback (decrements the pending count). */
void tern_app_op_done(tern_app *a);
/* Runs tern_session_pace soon (drains waiting for the client to read). */
void tern_app_pace_soon(tern_app *a);
/* Persists a user's (and optionally a device's) last seen. */
void tern_app_persist_last_seen(tern_app *a, tern_user *u, tern_device *d);

/* ---- http.c: the JSON API ---- */
void tern_http_route(tern_app *a, tern_http_req *req);
/* The device of the request's bearer token, or NULL after answering 401 unauthorized. */
tern_device *tern_http_authenticate(tern_app *a, tern_http_req *req);
int64_t tern_http_body_limit(tern_app *a, tern_http_req *req);
/* Deletes a device (logout or expiry): closes its socket with 4002, drops it from the store. */
void tern_app_delete_device(tern_app *a, tern_device *d, tern_store_done_cb done, void *arg);

/* ---- session.c: WebSocket sessions ---- */
void tern_session_open(tern_app *a, tern_conn *c);
void tern_session_text(tern_app *a, tern_conn *c, const char *data, size_t len);
void tern_session_gone(tern_app *a, tern_conn *c);
void tern_session_ref(tern_session *s);
void tern_session_unref(tern_session *s);
/* Writes an envelope (packed store value with its seq) to a session, keeping seq order. */
void tern_session_deliver(tern_session *s, uint64_t seq, const uint8_t *value, size_t len);
/* Continues drains that waited for outbound space. */
void tern_session_pace(tern_app *a);
/* Current last seen of u: the stored value, or now-ish from its live connections. */
int64_t tern_user_last_seen(tern_app *a, tern_user *u);

/* ---- router.c: fan-out, envelopes, receipts ---- */
/* Adds to op the inboxes an envelope from (from_user, from_dev) addressed to `to` goes to:
 * every device of `to` (or its user-level inbox "@to" when it has none) with value
 * v_recipient, then every other device of from_user with value v_copy. When to == from_user
 * only the copies are made. cap: recipient inboxes are checked against inbox.max_envelopes.
 * This is the one place fan-out is decided: group chat will pass a longer recipient list. */
void tern_router_fanout(tern_store_op *op, tern_user *from_user, tern_device *from_dev, tern_user *to,
                        size_t v_recipient, size_t v_copy, bool cap);
/* Handles a decoded send frame from session s (answers it exactly once). */
void tern_router_send(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns);
/* Handles ack / read frames. */
void tern_router_ack(tern_app *a, tern_session *s, uint64_t seq);
void tern_router_read(tern_app *a, tern_session *s, tern_frame *f);
/* Writes committed envelopes of an APPEND op to the live sessions of their devices. */
void tern_router_deliver_appended(tern_app *a, tern_store_op *op);

/* ---- presence.c ---- */
void tern_presence_watch(tern_app *a, tern_session *s, tern_frame *f);
void tern_presence_unwatch(tern_app *a, tern_session *s, tern_frame *f);
void tern_presence_drop_session(tern_app *a, tern_session *s); /* unwatch everything */
/* Tells u's watchers about a change of u's online state. */
void tern_presence_changed(tern_app *a, tern_user *u);
void tern_presence_typing(tern_app *a, tern_session *s, tern_frame *f);

/* ---- pushglue.c: PROTOCOL.md section 8 on top of src/push ---- */
/* Handles /v1/push and /v1/push/vapid; returns false for other paths. */
bool tern_pushglue_route(tern_app *a, tern_http_req *req);
/* A msg envelope from another user reached d while it has no live connection. */
void tern_pushglue_offline(tern_app *a, tern_device *d, const char *sender, const char *body, size_t body_len);
/* d connected or is going away: no notification for what it will see anyway. */
void tern_pushglue_online(tern_app *a, tern_device *d);
/* Result of a coalesced notification (installed with tern_push_set_result_cb). */
void tern_pushglue_result(void *arg, const char *device_id, const tern_push_reg *reg, tern_push_result result);
/* Sets d's registration from its stored form (start-up). */
void tern_pushglue_load(tern_app *a, tern_device *d, const char *stored);

/* ---- mediaglue.c: PROTOCOL.md section 7 on top of src/media ---- */
/* The persistence hooks for tern_media_options: records as KV records "media/<id>". */
tern_media_persist tern_mediaglue_persist(tern_app *a);
/* True for a KV key that holds a media record (start-up feeds those to tern_media_load_record). */
bool tern_mediaglue_is_kv(const char *key, size_t klen);
/* Deletes a stored KV record (one tern_media_load_record refused). */
void tern_mediaglue_drop_kv(tern_app *a, const char *key, size_t klen);
/* The limit callback for POST /v1/media: authenticates, starts the upload from the head (or
 * sets the request's refuse_* fields) and installs the body sink; returns media.max_bytes. */
int64_t tern_mediaglue_body_limit(tern_app *a, tern_http_req *req);
/* Answers /v1/media (a completed upload) and /v1/media/{id}[/thumb]; false for other paths. */
bool tern_mediaglue_route(tern_app *a, tern_http_req *req);
/* Shutdown: answers uploads still waiting (503), forgets the others and closes the store. */
void tern_mediaglue_close(tern_app *a);

/* ---- metrics.c ---- */
void tern_metrics_render(tern_app *a, tern_buf *out);

#endif
