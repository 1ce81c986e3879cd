/* groupapi: the group endpoints of PROTOCOL.md section 10 (/v1/groups...), on top of the
 * model in groups.h: request bodies, the rules of who may do what, and the answers, written
 * once the change and its events are durable. Threads: the worker's loop. */
#ifndef TERN_CORE_GROUPAPI_H
#define TERN_CORE_GROUPAPI_H

#include "core/app.h"
#include "net/httpreq.h"
#include "proto/wire.h"

/* A group request's body, checked by its shape alone (the directory decides the rest: who the
 * users are, the caps that count members). Parsed by tern_group_req_parse (pure, fuzzed by
 * fuzz_group_request). */
typedef enum tern_group_req_kind {
  TERN_GROUP_REQ_CREATE, /* POST /v1/groups: name (required), description, members */
  TERN_GROUP_REQ_PATCH,  /* PATCH /v1/groups/{id}: name and/or description */
  TERN_GROUP_REQ_ADD,    /* POST /v1/groups/{id}/members: users (required) */
} tern_group_req_kind;

typedef struct tern_group_req {
  tern_wire_doc doc;       /* owns every string below */
  const char *name;        /* 1..TERN_GROUP_NAME_MAX bytes, or NULL when absent */
  const char *description; /* 0..TERN_GROUP_DESC_MAX bytes, or NULL when absent */
  const char **users;      /* CREATE's members or ADD's users, as given (not normalized) */
  size_t nusers;
} tern_group_req;

/* Parses body as a request of kind into out. Returns 0, or the status of the refusal with its
 * sentence in msg: 400 (not an object, a field of the wrong type or size, a required field
 * missing) or 413 (a user list so far past max_users + 1 that it is refused unread). out needs
 * tern_group_req_free either way. Pure: any thread. */
int tern_group_req_parse(const char *body, size_t len, tern_group_req_kind kind, size_t max_users, tern_group_req *out,
                         char *msg, size_t msglen);
void tern_group_req_free(tern_group_req *r);

/* Answers every path under /v1/groups (404 for unknown ones). */
void tern_groupapi_route(tern_app *a, tern_http_req *req);

#endif
