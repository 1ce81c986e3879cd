/* session: one client connection of one device, whatever its wire protocol: the auth
 * handshake, the drain of the stored inbox, live delivery in seq order, and dispatch of the
 * client's requests. It talks to its client only through an endpoint (endpoint.h).
 *
 * States: AUTH → DRAIN → LIVE → GONE. After auth the session watches its device's inbox in
 * the store (tern_store_watch); every envelope committed there afterwards arrives as an event
 * (tern_session_deliver). While it drains it reads the inbox in chunks in seq order until a
 * read returns nothing new, then answers synced and goes live; events during the drain are
 * ignored (the next read includes them, since reads see committed data and completions run in
 * order). A gap in live seqs sends it back to draining. The drain is paced: it waits while
 * more than a quarter of ws.max_outbound is queued to the client. A read the store answers
 * `unavailable` (a shared backend moving its leaders, or without a quorum) is tried again
 * with a growing pause, for about a minute, before the connection is closed (1011).
 *
 * Ownership. A session is owned by its endpoint until tern_session_gone, and by the store ops
 * that point at it (refs) until they complete. Threads: its worker's loop only.
 */
#ifndef TERN_CORE_SESSION_H
#define TERN_CORE_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "core/app.h"
#include "core/endpoint.h"
#include "proto/frame.h"

typedef enum {
  SESS_AUTH = 0, /* waiting for the auth request */
  SESS_DRAIN,    /* sending the stored inbox */
  SESS_LIVE,     /* synced: envelopes are written as they commit */
  SESS_GONE,     /* the endpoint went; kept while store ops reference it */
} tern_session_state;

/* A frame waiting for the directory to catch up (tern_session_catch_up). */
typedef struct tern_held_frame {
  tern_frame f;
  uint64_t received_ns;
} tern_held_frame;

struct tern_session {
  tern_app *app;                   /* owner's context */
  const tern_endpoint_ops *ep_ops; /* the client's protocol */
  void *ep;                        /* the endpoint; NULL once gone */
  tern_device *dev;                /* after auth; NULL when gone or the device was deleted */
  uint64_t sent_seq;               /* highest seq written to this connection */
  uint64_t acked_seq;              /* highest seq acked on this connection */
  int64_t authed_at;               /* ms: when it authenticated (which of two connections is newer) */
  uint32_t refs;                   /* store ops in flight that point here, plus one for the endpoint */
  uint8_t state;                   /* tern_session_state */
  bool drain_inflight;             /* a DRAIN op is out */
  bool drain_waiting;              /* paused until the client reads what was sent */
  bool event_in_drain;             /* an envelope event came while a drain read was out */
  uint8_t drain_fails;             /* drain reads in a row the store answered unavailable */
  uint8_t drain_unsettled;         /* drain reads in a row that stopped before another node's
                                      group was done (cluster mode) */
  uint64_t drain_retry_at;         /* loop ms: a drain waiting after unavailable reads again then */
  bool watching_inbox;             /* the device's inbox is watched */
  tern_user **watching;            /* users this session watches */
  size_t nwatching, watching_cap;
  tern_session *wait_next;         /* app's list of sessions waiting for outbound space */
  uint32_t acks_inflight;          /* ACK ops out for this session */
  /* Senders of the 1:1 envelopes with receipts written since an ack last covered everything
   * sent (the first 8; the ack reports the others, whose receipts are made after it): the ack makes
   * their delivered receipts in its own store step (receipts.c). Users are never freed. */
  tern_user *senders[8];
  uint8_t nsenders;
  bool group_receipts;             /* and a group envelope with receipts was among them: the ack
                                      queues its delivered parts (store.h parts_inbox) */
  tern_frame *reads;               /* read frames held until the acks before them made their receipts */
  size_t nreads, reads_cap;
  tern_held_frame *held;           /* frames held while the directory catches up, in order */
  size_t nheld, held_cap;
  bool catching_up;                /* a CATCH_UP is out for this session */
  bool paused;                     /* a frame waits for a step of its own (tern_session_hold) */
  bool replaying;                  /* running the held frames: a miss now is final */
};

/* ---- for endpoints ---- */
/* A new connection, not yet authenticated. */
tern_session *tern_session_new(tern_app *a, const tern_endpoint_ops *ops, void *ep);
/* A decoded request (the session may take over its strings; the caller frees f after). */
void tern_session_request(tern_session *s, tern_frame *f, uint64_t received_ns);
/* A request that did not decode: answered with the error (or, before auth, unauthorized and
 * a close). */
void tern_session_bad_request(tern_session *s, const char *id, const char *code, const char *message);
/* The connection is gone: nothing more is sent to the endpoint. */
void tern_session_gone(tern_session *s);

/* ---- for the core ---- */
void tern_session_ref(tern_session *s);
void tern_session_unref(tern_session *s);
/* A committed envelope of the session's inbox (the store's delivery event), written now when
 * it is the next seq of a live session. */
void tern_session_deliver(tern_session *s, uint64_t seq, const uint8_t *rec, size_t len, const uint8_t *body,
                          size_t body_len);
/* Continues drains that waited for outbound space. */
void tern_session_pace(tern_app *a);
/* Shutdown: the waiting list lets go of its sessions (their drains will not run again: the
 * pace timer is closed, and a retry after an unavailable store may be seconds away). */
void tern_session_unwait_all(tern_app *a);
/* Every live session of this app reads its inbox again from its last seq, as on a gap, and a
 * draining one reads once more before it is synced: a node that died may have committed
 * envelopes whose events it never published, and a reconnect to the store's servers loses
 * the events of its moment (cluster.c). */
void tern_session_recheck_all(tern_app *a);
/* Answers through the endpoint (no-ops once gone). */
void tern_session_error(tern_session *s, const char *id, const char *code, const char *message, const char *user);
void tern_session_close(tern_session *s, tern_close_reason why);
/* A request found no user, device, token or group by the name it gave. When the store has
 * other writers (other loops, other nodes), whose changes reach this loop's directory a
 * moment after they commit, the frame is held (its strings taken over), the directory catches
 * up with everything committed so far, and the frame runs again, with the frames that came
 * after it, in order: returns true, and the caller stops. Returns false when the miss is
 * final (a single writer, or the frame already ran after a catch-up): answer it. */
bool tern_session_catch_up(tern_session *s, tern_frame *f, uint64_t received_ns);
/* f must wait for a step the caller runs (a delete's media revoke): it is held (its strings
 * taken over), the frames that come after it wait behind it, and tern_session_release runs
 * them all, in order, f first (set a mark in f, before holding it, to know it again). One
 * such step at a time: call it only from a frame being dispatched. */
void tern_session_hold(tern_session *s, tern_frame *f, uint64_t received_ns);
void tern_session_release(tern_session *s);
/* Detaches the session from its device (logout, expiry): it stops watching the inbox. */
void tern_session_detach(tern_session *s);
/* The session's client was last heard from at (ms). */
int64_t tern_session_last_rx(const tern_session *s);
/* Current last seen of u: the stored value, or now-ish from its live connections. */
int64_t tern_user_last_seen(tern_app *a, tern_user *u);

#endif
