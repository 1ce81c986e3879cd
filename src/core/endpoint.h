/* endpoint: how the core talks to one client connection, whatever its wire protocol.
 *
 * A session (session.h) is protocol-neutral: it receives typed requests (tern_frame, already
 * decoded and validated) and answers through the ops below, with typed arguments. JSON over
 * WebSocket (wsjson.c) is one implementation; an XMPP front end can be another; the unit
 * tests drive a session through a fake one with no socket and no JSON.
 *
 * Envelopes arrive as the store's neutral records (store/envelope.h) with their seq, and the
 * endpoint encodes them as its protocol wants.
 *
 * Every op is called on the endpoint's loop thread; `ep` is the endpoint's own pointer. An
 * endpoint whose connection has gone calls tern_session_gone and is never called again.
 */
#ifndef TERN_CORE_ENDPOINT_H
#define TERN_CORE_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/event.h"
#include "store/envelope.h"

/* Why a session ends its connection (each endpoint maps these to its protocol: WebSocket
 * close codes 4001, 4002, 4003, 1001, 1011). */
typedef enum {
  TERN_CLOSE_UNAUTHORIZED = 1, /* no valid auth (4001) */
  TERN_CLOSE_LOGGED_OUT,       /* the device was logged out or deleted (4002) */
  TERN_CLOSE_REPLACED,         /* a newer connection of the same device (4003) */
  TERN_CLOSE_SHUTDOWN,         /* the server stops (1001) */
  TERN_CLOSE_INTERNAL,         /* the store failed (1011) */
} tern_close_reason;

/* A `sent` answer. */
typedef struct tern_sent_info {
  const char *id;          /* the client's id */
  const char *msg_id;      /* the message id */
  int64_t ts;              /* message time */
  int64_t recipients;      /* group sends: other members it reached; < 0 for 1:1 */
  const char *const *skipped; size_t nskipped; /* group sends: members all of whose devices missed it */
} tern_sent_info;

/* An error answer; the connection stays open. */
typedef struct tern_error_info {
  const char *id;          /* the client id it answers, or NULL */
  const char *code;        /* the protocol's code, "no_such_user" */
  const char *message;     /* a human sentence */
  const char *user;        /* the user it is about (watch), or NULL */
  const tern_device_ref *missing; size_t nmissing; /* devices_changed (proto/event.h's type) */
  const tern_device_ref *extra; size_t nextra;
} tern_error_info;

/* An envelope to write: its seq, the neutral record, and its shared body when it has one. */
typedef struct tern_out_env {
  uint64_t seq;
  const tern_env_view *v;
  const uint8_t *body;     /* TERN_EF_BODY_REF's body, or NULL */
  size_t body_len;
} tern_out_env;

typedef struct tern_endpoint_ops {
  void (*ready)(void *ep, const char *user, const char *device_id, int64_t server_time);
  void (*synced)(void *ep, uint64_t seq);
  void (*sent)(void *ep, const tern_sent_info *s);
  void (*error)(void *ep, const tern_error_info *e);
  void (*envelope)(void *ep, const tern_out_env *e);
  void (*presence)(void *ep, const char *user, bool online, int64_t last_seen); /* last_seen < 0: null */
  void (*typing)(void *ep, const char *from, const char *group_id, bool composing);
  void (*pong)(void *ep, int64_t server_time);
  /* Ends the connection; tern_session_gone follows (now or later). */
  void (*close)(void *ep, tern_close_reason why);
  /* The session authenticated: the endpoint stops its auth deadline. */
  void (*authed)(void *ep);
  /* Bytes waiting to be written to the client (drains pace on it). */
  size_t (*backlog)(void *ep);
  /* When the client was last heard from (ms): its last seen. */
  int64_t (*last_rx)(void *ep);
  /* A watched user's profile changed (PROTOCOL.md 15); NULL strings are null. May be NULL. */
  void (*profile)(void *ep, const char *user, const char *display_name, const char *avatar);
} tern_endpoint_ops;

#endif
