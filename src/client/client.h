/* libtern-client: an asynchronous tern client on libuv, for the `tern` CLI and for tern-bench.
 *
 * Shape. A tern_client is a per-loop context: it owns a stream context (net/stream.h) with one
 * read buffer shared by all of its connections (only the unparsed tail of a frame is kept per
 * connection) and the hook that flushes every connection's outbound frames once per loop
 * iteration. On it run
 *   - one-shot HTTP/1.1 requests for the JSON API (register, login, logout, me, users/{name},
 *     media, groups),
 *   - WebSocket connections (tern_client_conn) speaking PROTOCOL.md sections 3-6 and the
 *     v1.1 frames (groups: section 10).
 * Nothing blocks and nothing runs on another thread, except host name resolution when a URL
 * names a host rather than an IP address (uv_getaddrinfo in libuv's threadpool).
 *
 * Threads: every function must be called on the loop's thread.
 *
 * Errors: functions return 0 or a negative errno-style code (libuv's UV_E* codes are the
 * same numbers on Unix). A callback is never called when the function that took it returned
 * an error. Every request that was accepted gets exactly one callback; every connection that
 * was accepted gets exactly one TERN_CLIENT_EV_CLOSED event, its last (unless the whole
 * context is freed first, which drops callbacks silently).
 *
 * Memory: connections are freed by the library right after their CLOSED event returns;
 * never inside any other callback of theirs. Strings given to the library are copied;
 * strings and JSON handed to callbacks belong to the library and are valid during the
 * callback only (copy what you keep).
 *
 * Writing: the send helpers append one frame to the connection's outbound buffer and return;
 * all frames appended during one loop iteration go out together, in one uv_try_write (and a
 * uv_write only for what the socket did not take). The buffering is net/stream.h's.
 */
#ifndef TERN_CLIENT_CLIENT_H
#define TERN_CLIENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "proto/event.h"
#include "proto/frame.h"

struct cJSON;

#define TERN_CLIENT_DEFAULT_SERVER "http://127.0.0.1:8080"
#define TERN_CLIENT_HOST_MAX 255       /* longest host name accepted in a URL */
#define TERN_CLIENT_USER_MAX 32        /* usernames are 3-32 chars (PROTOCOL.md 2) */
#define TERN_CLIENT_DEVICE_ID_MAX 128  /* longest device id we keep (the server's are shorter) */
#define TERN_CLIENT_TOKEN_MAX 512      /* longest token we keep */
#define TERN_CLIENT_ID_SIZE 40         /* buffer size for tern_client_new_id */

/* ---- URLs ---------------------------------------------------------------------------- */

typedef struct tern_client_url {
  char host[TERN_CLIENT_HOST_MAX + 1];  /* host name or IP literal, IPv6 without brackets */
  uint16_t port;                        /* 80 when the URL has none */
  char hostport[TERN_CLIENT_HOST_MAX + 9]; /* "host:port" as the Host header wants it */
  bool tls;                             /* https:// or wss://: TLS, the certificate checked */
} tern_client_url;

/* Parses "http://HOST[:PORT][/]" or "https://..." (ws:// and wss:// name the same servers; the
 * scheme may be omitted: "HOST:PORT", plain). IPv6 literals are written in brackets. The port
 * defaults to 80, or 443 for TLS. Returns 0, -EINVAL for a malformed URL, or -EPROTONOSUPPORT
 * for another scheme. */
int tern_client_url_parse(const char *s, tern_client_url *out);

/* ---- the context --------------------------------------------------------------------- */

typedef struct tern_client tern_client;

typedef struct tern_client_options {
  int64_t http_timeout_ms;     /* a whole HTTP request may take this long (0: 30 s) */
  int64_t connect_timeout_ms;  /* WebSocket: TCP connect + upgrade (0: 30 s) */
  int64_t close_timeout_ms;    /* wait for the server's close frame after ours (0: 2 s) */
  uint64_t max_message;        /* largest WebSocket message accepted (0: 16 MiB) */
  const char *ca_file;         /* TLS: the CAs to trust (PEM); NULL or "": the system's */
} tern_client_options;

/* Creates a context on loop. opts may be NULL (defaults). Never fails (aborts on OOM). */
tern_client *tern_client_new(uv_loop_t *loop, const tern_client_options *opts);
/* Closes every connection and request still running without calling their callbacks, and
 * frees the context once libuv has closed its handles: run the loop until it returns (or
 * until uv_loop_alive is false) afterwards. */
void tern_client_free(tern_client *c);
uv_loop_t *tern_client_loop(const tern_client *c);

/* Writes a fresh client message id, "c-<ms>-<16 hex>", unique per device in practice. */
void tern_client_new_id(char out[TERN_CLIENT_ID_SIZE]);

/* ---- HTTP: the JSON API -------------------------------------------------------------- */

typedef struct tern_client_response {
  int status;             /* HTTP status; 0 when no response arrived (err says why) */
  int err;                /* 0, or a negative code: UV_ECONNREFUSED, UV_ETIMEDOUT, -EBADMSG
                             (unparseable response), ... */
  bool ok;                /* status is 2xx */
  char code[64];          /* when !ok: the protocol's error code ("username_taken"), or
                             "network" (err set) or "bad_response"; "" when ok */
  char message[256];      /* when !ok: a human sentence; "" when ok */
  char user[64];          /* when !ok: the user the error names ("user" in the error object:
                             no_such_user, forbidden on group create/add), else "" */
  char retry_after[32];   /* the Retry-After header, "" when absent */
  char etag[80];          /* the ETag header, "" when absent */
  char *body;             /* the body, NUL-terminated (never NULL) */
  size_t body_len;        /* bytes in body, without the NUL */
  struct cJSON *json;     /* the body parsed as JSON, or NULL */
} tern_client_response;

/* Called once per request. r and what it points to belong to the library and are freed after
 * the call, unless the callback moves them out with tern_client_response_move. */
typedef void (*tern_client_http_cb)(tern_client_response *r, void *arg);

typedef struct tern_client_request {
  const char *method;       /* "GET", "POST", ... */
  const char *path;         /* "/v1/login" (already escaped) */
  const char *token;        /* sent as "Authorization: Bearer TOKEN", or NULL */
  const char *content_type; /* NULL: application/json when there is a body */
  const void *body;         /* request body, or NULL */
  size_t body_len;
  /* Optional: the body of a 2xx response goes here as it arrives instead of into
   * response.body (a media download is not held in memory), with no size limit. A negative
   * return fails the request with that code. Error answers are still buffered. */
  int (*on_body)(const char *p, size_t n, void *arg);
  void *body_arg;           /* passed to on_body */
} tern_client_request;

/* Sends one request on a fresh TCP connection. Everything in url and req is copied. */
int tern_client_http(tern_client *c, const tern_client_url *url, const tern_client_request *req,
                     tern_client_http_cb cb, void *arg);

/* Moves src's body and JSON into dst (which the caller then frees with
 * tern_client_response_free); src is left empty. */
void tern_client_response_move(tern_client_response *dst, tern_client_response *src);
void tern_client_response_free(tern_client_response *r); /* frees body and json, not r */
/* Fills r for a request that got no (usable) answer: err and a "network" code with a sentence
 * naming what failed. */
void tern_client_response_fail(tern_client_response *r, int err, const char *what);
/* Makes cJSON allocate through base/alloc.h (the library does this itself; a program that
 * parses JSON before making a context calls it first). Idempotent and thread-safe: it is
 * proto's tern_proto_init. */
void tern_client_json_hooks(void);

/* The API calls of PROTOCOL.md section 2 and 6. device may be NULL. */
int tern_client_register(tern_client *c, const tern_client_url *url, const char *user, const char *password,
                         const char *device, tern_client_http_cb cb, void *arg);
int tern_client_login(tern_client *c, const tern_client_url *url, const char *user, const char *password,
                      const char *device, tern_client_http_cb cb, void *arg);
int tern_client_logout(tern_client *c, const tern_client_url *url, const char *token, tern_client_http_cb cb,
                       void *arg);
int tern_client_me(tern_client *c, const tern_client_url *url, const char *token, tern_client_http_cb cb, void *arg);
/* GET /v1/users/{user}; the name is percent-escaped as needed. */
int tern_client_whois(tern_client *c, const tern_client_url *url, const char *token, const char *user,
                      tern_client_http_cb cb, void *arg);

/* What register and login answer. */
typedef struct tern_client_account {
  char user[TERN_CLIENT_USER_MAX + 1];
  char device_id[TERN_CLIENT_DEVICE_ID_MAX + 1];
  char token[TERN_CLIENT_TOKEN_MAX + 1];
} tern_client_account;
/* Reads an account from a successful register/login response: 0 or -EBADMSG. */
int tern_client_parse_account(const tern_client_response *r, tern_client_account *out);

/* POST /v1/media: uploads an image (mime "image/jpeg", "image/png", "image/webp" or
 * "image/gif"); the bytes are copied. The answer is 201 with the media's metadata. */
int tern_client_upload_media(tern_client *c, const tern_client_url *url, const char *token, const char *mime,
                             const void *bytes, size_t len, tern_client_http_cb cb, void *arg);

/* What POST /v1/media answers (and a msg's "media" object). */
typedef struct tern_client_media {
  char media_id[64];
  char mime[32];
  char sha256[65];
  int64_t size;
  int64_t width, height;
} tern_client_media;
/* Reads the media object of a successful upload response: 0 or -EBADMSG. */
int tern_client_parse_media(const tern_client_response *r, tern_client_media *out);

/* The image type of a file from its first bytes (JPEG, PNG, GIF, WebP magic numbers):
 * "image/jpeg" etc., or NULL when it is none of the four. */
const char *tern_client_sniff_image(const void *p, size_t n);
/* Its width and height in pixels from the header (PNG IHDR, GIF screen, JPEG start of frame,
 * WebP VP8/VP8L/VP8X), without decoding: 0, or -EINVAL (not an image) / -EBADMSG (no size
 * found) with both -1. An encrypted image carries them inside (PROTOCOL.md 11), since the
 * server cannot read them. */
int tern_client_image_size(const void *p, size_t n, int64_t *w, int64_t *h);

/* What GET /v1/users/{name} answers. */
#define TERN_CLIENT_DISPLAY_NAME_MAX 64 /* bytes of UTF-8 (PROTOCOL.md 15) */
typedef struct tern_client_user_status {
  char user[TERN_CLIENT_USER_MAX + 1];
  bool online;
  int64_t last_seen; /* ms, or -1 when the user never connected (null) */
  char display_name[TERN_CLIENT_DISPLAY_NAME_MAX + 1]; /* "" when unset (or hidden) */
  char avatar[64];   /* the avatar's media_id, "" when none */
} tern_client_user_status;
int tern_client_parse_user_status(const tern_client_response *r, tern_client_user_status *out);

/* ---- groups (PROTOCOL.md 10): the /v1/groups API ---------------------------------- */

#define TERN_CLIENT_GROUP_ID_MAX TERN_GROUP_ID_MAX /* group ids are 1-64 chars of [A-Za-z0-9_-] */

/* True when s is a syntactically valid group id. */
bool tern_client_group_id_valid(const char *s);

/* The calls. Each sends one request and answers through cb like the calls above; parse the
 * answer with tern_client_parse_group (every call but the list answers with the group object
 * when it succeeds, except a member removing themselves: 204, no body). Strings are copied.
 * They return -EINVAL, with no callback, for a NULL token, a group_id that is no group id, a
 * missing name, a NULL user or list entry. Names of users go into the URL percent-escaped;
 * the server lower-cases and checks them (an unknown one is 404 no_such_user in a body, 404
 * not_found in a URL). */
/* POST /v1/groups: description may be NULL (the server's default, ""); members may be empty. */
int tern_client_group_create(tern_client *c, const tern_client_url *url, const char *token, const char *name,
                             const char *description, const char *const *members, size_t n, tern_client_http_cb cb,
                             void *arg);
/* GET /v1/groups?after=AFTER&limit=LIMIT: one page (after NULL: from the start; limit 0: the
 * server's default). Parse it with tern_client_parse_group_list. */
int tern_client_group_list_page(tern_client *c, const tern_client_url *url, const char *token, const char *after,
                                int limit, tern_client_http_cb cb, void *arg);
/* GET /v1/groups/{id} */
int tern_client_group_get(tern_client *c, const tern_client_url *url, const char *token, const char *group_id,
                          tern_client_http_cb cb, void *arg);
/* PATCH /v1/groups/{id}: rename and/or describe; NULL leaves a field as it is, and at least
 * one of name and description must be given. */
int tern_client_group_update(tern_client *c, const tern_client_url *url, const char *token, const char *group_id,
                             const char *name, const char *description, tern_client_http_cb cb, void *arg);
/* POST /v1/groups/{id}/members {"users":[...]} (n >= 1). */
int tern_client_group_add(tern_client *c, const tern_client_url *url, const char *token, const char *group_id,
                          const char *const *users, size_t n, tern_client_http_cb cb, void *arg);
/* DELETE /v1/groups/{id}/members/{user}: an admin removes user (200, the group), or the
 * caller leaves (user is the caller: 204, no body). */
int tern_client_group_remove(tern_client *c, const tern_client_url *url, const char *token, const char *group_id,
                             const char *user, tern_client_http_cb cb, void *arg);
/* PUT (admin true) or DELETE (false) /v1/groups/{id}/admins/{user}. */
int tern_client_group_set_admin(tern_client *c, const tern_client_url *url, const char *token,
                                const char *group_id, const char *user, bool admin, tern_client_http_cb cb,
                                void *arg);

/* A member of a group object. */
typedef struct tern_client_group_member {
  char user[TERN_CLIENT_USER_MAX + 1];
  bool admin;    /* role "admin"; any other role reads as a member */
  int64_t since; /* ms: when they joined */
} tern_client_group_member;

/* The group object. Owns its strings and members: tern_client_group_free. */
typedef struct tern_client_group {
  char group_id[TERN_CLIENT_GROUP_ID_MAX + 1];
  char *name;                         /* 1-100 bytes of UTF-8 */
  char *description;                  /* "" when none */
  char created_by[TERN_CLIENT_USER_MAX + 1]; /* "" when absent */
  int64_t created_at;                 /* ms */
  tern_client_group_member *members;  /* in the order they joined, the creator first */
  size_t nmembers;
} tern_client_group;
/* Reads the group object of a successful answer: 0, or -EBADMSG (then *out is empty; freeing
 * it is harmless), -ENODATA for a 2xx answer without a body (a leave's 204). */
int tern_client_parse_group(const tern_client_response *r, tern_client_group *out);
void tern_client_group_free(tern_client_group *g);
/* The member entry of user in g, or NULL. */
const tern_client_group_member *tern_client_group_find(const tern_client_group *g, const char *user);

/* One entry of the list: {"group_id","name","role","members":N}. */
typedef struct tern_client_group_summary {
  char group_id[TERN_CLIENT_GROUP_ID_MAX + 1];
  char *name;       /* owned by the list */
  bool admin;       /* the caller's role */
  int64_t members;  /* how many members */
} tern_client_group_summary;

/* A page, or every page (tern_client_group_list_all). Owns its entries:
 * tern_client_group_list_free. */
typedef struct tern_client_group_list {
  tern_client_group_summary *groups;
  size_t n;
  char next[TERN_CLIENT_GROUP_ID_MAX + 1]; /* a page's "next", "" when it is the last */
} tern_client_group_list;
/* Reads one page: 0 or -EBADMSG (then *out is empty). */
int tern_client_parse_group_list(const tern_client_response *r, tern_client_group_list *out);
void tern_client_group_list_free(tern_client_group_list *l);

/* Every group of the caller, page after page (following "next" until it is null). cb gets the
 * last response: on success r->ok and all holds every group in the server's order (by id; the
 * callback may take it over by copying the struct and zeroing *all); on failure r says why
 * (the refusal of a page, a network error, or "bad_response" when a page cannot be read or
 * its "next" does not move forward) and all is NULL. Freeing the context while the list runs
 * frees it without a callback. */
typedef void (*tern_client_group_list_cb)(tern_client_response *r, tern_client_group_list *all, void *arg);
int tern_client_group_list_all(tern_client *c, const tern_client_url *url, const char *token,
                               tern_client_group_list_cb cb, void *arg);

/* Runs a private loop until the request is answered or timeout_ms passes (0: 30 s). *out is
 * always filled (ok false on failure); free it with tern_client_response_free. Returns 0 when
 * a 2xx answer arrived, else -1. For command-line tools; never call it on a loop thread. */
int tern_client_http_sync(const tern_client_url *url, const tern_client_request *req, int64_t timeout_ms,
                          tern_client_response *out);

/* ---- WebSocket connections ----------------------------------------------------------- */

typedef struct tern_client_conn tern_client_conn;

typedef enum tern_client_event_type {
  TERN_CLIENT_EV_OPEN = 1, /* the upgrade succeeded; the auth frame (if any) is queued */
  TERN_CLIENT_EV_READY,    /* user, device_id, server_time */
  TERN_CLIENT_EV_SYNCED,   /* seq: every stored envelope has been sent */
  TERN_CLIENT_EV_MSG,      /* seq, msg_id, from, from_device, to, ts, body/body_len, media */
  TERN_CLIENT_EV_RECEIPT,  /* seq, read, from, by, msg_ids/n_msg_ids, ts */
  TERN_CLIENT_EV_SENT,     /* id, msg_id, ts */
  TERN_CLIENT_EV_ERROR,    /* id (may be NULL), code, message, user (may be NULL) */
  TERN_CLIENT_EV_PRESENCE, /* user, online, last_seen */
  TERN_CLIENT_EV_TYPING,   /* from, composing */
  TERN_CLIENT_EV_PONG,     /* server_time */
  TERN_CLIENT_EV_UNKNOWN,  /* a frame of another type, or not a JSON object, or a frame of a
                              known type that breaks proto's rules (malformed says why; seq
                              is set when it is an envelope whose seq could be read): see
                              raw/json */
  TERN_CLIENT_EV_CLOSED,   /* the last event: close_code, err, http_status, message */
  /* v1.1 (their fields, and the v1.1 fields of the others, are in frame). */
  TERN_CLIENT_EV_GROUP,    /* seq, group_id, by, ts; frame.env: event, name, description, users */
  TERN_CLIENT_EV_DECRYPT_ERROR, /* seq, from, from_device, msg_id, ts */
  TERN_CLIENT_EV_PROFILE,  /* user; frame: display_name, avatar */
} tern_client_event_type;

/* One server frame, parsed. Pointers are valid during the callback only. Fields that do not
 * belong to the event's type are zero/NULL; so are missing optional fields. */
typedef struct tern_client_event {
  tern_client_event_type type;
  const char *raw;           /* the frame's JSON text (not NUL-terminated), NULL for CLOSED */
  size_t raw_len;
  struct cJSON *json;        /* the parsed frame, NULL for CLOSED (and unparseable frames) */
  uint64_t seq;              /* MSG, RECEIPT, SYNCED */
  const char *id;            /* SENT, ERROR: the client id */
  const char *msg_id;        /* MSG, SENT, DECRYPT_ERROR */
  const char *from;          /* MSG, RECEIPT, TYPING, DECRYPT_ERROR */
  const char *from_device;   /* MSG, DECRYPT_ERROR */
  const char *to;            /* MSG (1:1; NULL in a group) */
  const char *group_id;      /* MSG, RECEIPT, TYPING in a group; GROUP; else NULL */
  const char *by;            /* RECEIPT (1:1; a group receipt's list is frame.env.by_list),
                                GROUP */
  const char *user;          /* READY, PRESENCE, ERROR (no_such_user on watch), PROFILE */
  const char *device_id;     /* READY */
  const char *body;          /* MSG, or NULL when it carries media only */
  size_t body_len;
  const char *media_id;      /* MSG: media.media_id, or NULL */
  const char *media_mime;    /* MSG: media.mime, or NULL */
  int64_t media_size;        /* MSG: media.size in bytes, -1 when absent */
  int64_t media_width;       /* MSG: media.width in px, -1 when absent */
  int64_t media_height;      /* MSG: media.height in px, -1 when absent */
  const char *const *msg_ids;/* RECEIPT */
  size_t n_msg_ids;
  bool read;                 /* RECEIPT: "read" (true) or "delivered" (false) */
  bool online;               /* PRESENCE */
  bool composing;            /* TYPING: "composing" (true) or "paused" (false) */
  int64_t ts;                /* MSG, RECEIPT, SENT, GROUP, DECRYPT_ERROR: ms */
  int64_t server_time;       /* READY, PONG: ms */
  int64_t last_seen;         /* PRESENCE: ms, -1 when null or online */
  const char *code;          /* ERROR: protocol error code */
  const char *message;       /* ERROR, CLOSED: human text ("" when none) */
  uint16_t close_code;       /* CLOSED: the server's close code; 1005 when its close frame had
                                none, 1006 when the connection ended without a close frame,
                                0 when the WebSocket never opened */
  int err;                   /* CLOSED: 0, or why the connection failed (UV_ECONNREFUSED,
                                UV_ETIMEDOUT, -EPROTO for a refused upgrade, ...) */
  int http_status;           /* CLOSED: the status when the upgrade was refused, else 0 */
  const char *malformed;     /* UNKNOWN: why a frame of a known type was refused, else NULL */
  /* The whole frame as proto decoded it (proto/event.h), with every v1.1 field; its strings
   * are NUL-terminated. Zero for OPEN, CLOSED and binary frames. */
  tern_event frame;
  tern_event_doc doc;        /* private: what frame and the strings above point into */
  char why[160];             /* private: malformed's text */
} tern_client_event;

typedef void (*tern_client_event_cb)(tern_client_conn *conn, const tern_client_event *ev, void *arg);

typedef struct tern_client_conn_options {
  const tern_client_url *url; /* the server */
  const char *token;          /* sent as the first frame ({"type":"auth"}); NULL: send nothing
                                 (the caller authenticates with tern_client_send_raw) */
  const char *bind_ip;        /* local source address ("127.0.0.7"), or NULL for any; lets a
                                 load generator get past one address pair's 64 K ports */
  tern_client_event_cb on_event; /* required */
  void *arg;                  /* passed to on_event */
} tern_client_conn_options;

/* Starts connecting. Events arrive on o->on_event, starting with OPEN (or CLOSED). */
int tern_client_connect(tern_client *c, const tern_client_conn_options *o, tern_client_conn **out);

/* Sends a close frame with code (0: 1000) and closes once the server answers (or after
 * close_timeout_ms). Safe inside a callback; idempotent. CLOSED follows, later. */
void tern_client_close(tern_client_conn *conn, uint16_t code);
/* Closes the TCP connection now, without a close handshake. CLOSED follows, later. */
void tern_client_abort(tern_client_conn *conn);

/* True between OPEN and the start of closing: the send helpers work. */
bool tern_client_is_open(const tern_client_conn *conn);
/* Bytes queued or being written (backpressure for load generators). */
size_t tern_client_outbound(const tern_client_conn *conn);
void *tern_client_conn_arg(const tern_client_conn *conn);
void tern_client_conn_set_arg(tern_client_conn *conn, void *arg);

/* Frame helpers (v1 shorthands for tern_client_send_frame). Each appends one frame and
 * returns 0, or -ENOTCONN when the connection is not open, or -EINVAL for a NULL argument or
 * for a frame the server would refuse as bad_request or too_large (proto checks it before
 * writing, as the server does after reading; a name that is no username is still sent, the
 * server answers no_such_user). Send only after READY: the server refuses frames before
 * auth. */
int tern_client_send(tern_client_conn *conn, const char *id, const char *to, const char *body, size_t body_len,
                     const char *media_id); /* body may be NULL when media_id is set */
int tern_client_ack(tern_client_conn *conn, uint64_t seq);
int tern_client_read(tern_client_conn *conn, const char *peer, const char *const *msg_ids, size_t n);
int tern_client_watch(tern_client_conn *conn, const char *const *users, size_t n);
int tern_client_unwatch(tern_client_conn *conn, const char *const *users, size_t n);
int tern_client_typing(tern_client_conn *conn, const char *to, bool composing);
int tern_client_ping(tern_client_conn *conn); /* the app-level {"type":"ping"} */
/* Group shorthands (PROTOCOL.md 10): a message to every member (body and/or media), read
 * receipts for messages of peer in the group, and typing in the group. The same returns as
 * above; a group_id that is no group id is -EINVAL. */
int tern_client_send_group(tern_client_conn *conn, const char *id, const char *group_id, const char *body,
                           size_t body_len, const char *media_id);
int tern_client_read_group(tern_client_conn *conn, const char *group_id, const char *peer,
                           const char *const *msg_ids, size_t n);
int tern_client_typing_group(tern_client_conn *conn, const char *group_id, bool composing);
/* Any client frame, v1.1 included (groups, e2e, reactions, edits, deletes, decrypt_error):
 * proto's tern_frame_encode checks f as the server would and writes it. Returns 0,
 * -ENOTCONN, or -EINVAL with *err filled as the server would answer (err may be NULL). */
int tern_client_send_frame(tern_client_conn *conn, const tern_frame *f, tern_frame_error *err);
/* Any text frame (tests, benchmarks, new frame types). */
int tern_client_send_raw(tern_client_conn *conn, const void *data, size_t len);

/* Formats "[image 1280×720, 210 KiB] MEDIA_ID" for a msg carrying media (the CLI's line). */
void tern_client_format_media(const tern_client_event *ev, char *out, size_t cap);

/* Short name of a close code for messages: "device logged out" for 4002, ... ("" if none). */
const char *tern_client_close_code_name(uint16_t code);

/* ---- account and privacy (PROTOCOL.md 14); answers as tern_client_http's ---- */
/* PUT (block) or DELETE (unblock) /v1/blocks/{user}: 204. */
int tern_client_block(tern_client *c, const tern_client_url *url, const char *token, const char *user, bool block,
                      tern_client_http_cb cb, void *arg);
/* GET /v1/blocks: {"users":[...]}. */
int tern_client_blocks(tern_client *c, const tern_client_url *url, const char *token, tern_client_http_cb cb,
                       void *arg);
/* GET /v1/privacy: {"last_seen","read_receipts"}. */
int tern_client_privacy_get(tern_client *c, const tern_client_url *url, const char *token, tern_client_http_cb cb,
                            void *arg);
/* PATCH /v1/privacy: last_seen "everyone"|"nobody" or NULL (unchanged); read_receipts 1, 0 or
 * -1 (unchanged). */
int tern_client_privacy_set(tern_client *c, const tern_client_url *url, const char *token, const char *last_seen,
                            int read_receipts, tern_client_http_cb cb, void *arg);
/* POST /v1/me/password: 204. */
int tern_client_password(tern_client *c, const tern_client_url *url, const char *token, const char *old_password,
                         const char *new_password, tern_client_http_cb cb, void *arg);
/* DELETE /v1/devices/{id}: one of the caller's own devices; 204. */
int tern_client_delete_device(tern_client *c, const tern_client_url *url, const char *token, const char *device_id,
                              tern_client_http_cb cb, void *arg);
/* DELETE /v1/me: the whole account; 204. */
int tern_client_delete_account(tern_client *c, const tern_client_url *url, const char *token, const char *password,
                               tern_client_http_cb cb, void *arg);

/* ---- profiles (PROTOCOL.md 15) ---- */
/* PATCH /v1/me: display_name (NULL: unchanged, "": cleared) and avatar (a media_id from
 * tern_client_upload_avatar; NULL: unchanged unless clear_avatar); 200 with /v1/me's body. */
int tern_client_profile_set(tern_client *c, const tern_client_url *url, const char *token, const char *display_name,
                            const char *avatar, bool clear_avatar, tern_client_http_cb cb, void *arg);
/* POST /v1/media?purpose=avatar: an image to set as avatar; 201 with a media object. */
int tern_client_upload_avatar(tern_client *c, const tern_client_url *url, const char *token, const char *mime,
                              const void *bytes, size_t len, tern_client_http_cb cb, void *arg);

#endif
