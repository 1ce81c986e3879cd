/* api: the HTTP side of the core: the route table of the JSON API (PROTOCOL.md sections 1, 2,
 * 6, 7, 8), /healthz and /metrics, the body limit per route, bearer authentication, and the
 * helpers the endpoint modules share. The static web client answers what the API does not.
 * Threads: the worker's loop. */
#ifndef TERN_CORE_API_H
#define TERN_CORE_API_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/app.h"
#include "net/httpreq.h"
#include "proto/wire.h"

void tern_api_route(tern_app *a, tern_http_req *req);
int64_t tern_api_body_limit(tern_app *a, tern_http_req *req);
/* A request found no user, device, token or group by the name it gave. When the store has
 * other writers, whose changes reach this loop's directory a moment after they commit, the
 * request runs again from the route table once the directory has caught up: returns true,
 * and the handler stops. False when the miss is final (one writer, or this is the rerun). */
bool tern_api_catch_up(tern_app *a, tern_http_req *req);
/* The same after a change lost a race (CONFLICT), a few times at most. */
bool tern_api_retry(tern_app *a, tern_http_req *req);
/* The device of the request's bearer token, or NULL after answering 401 unauthorized (or
 * after deferring the request to a catch-up: either way the caller stops). */
tern_device *tern_api_authenticate(tern_app *a, tern_http_req *req);
/* The body as a JSON object (owned by doc: free it with tern_wire_doc_free), or NULL after
 * answering 400 (doc then needs no free). */
cJSON *tern_api_json_body(tern_http_req *req, tern_wire_doc *doc);
/* Its check alone: the object (as above), or NULL with the 400's sentence (static) in *why.
 * Pure: any thread (the parsers that fuzz targets drive use it). */
cJSON *tern_api_json_parse(const char *body, size_t len, tern_wire_doc *doc, const char **why);
/* Submits op and answers req once it completes: 204 when it is durable, 500 internal with
 * fail_message otherwise. (The op's done and arg are taken over.) */
void tern_api_submit_then_204(tern_app *a, tern_http_req *req, tern_store_op *op, const char *fail_message);
/* The same with any status and a JSON body (taken over; NULL: no body). An APPEND op's device
 * references (target cookies) are released when it completes. */
void tern_api_submit_then(tern_app *a, tern_http_req *req, tern_store_op *op, int status, tern_buf *body,
                          const char *fail_message);
/* The completion of a compare-and-set write (a record other writers may change: groups,
 * privacy): true when it was stored (the caller answers); else it answers itself: a lost race
 * runs the request again after a catch-up (tern_api_retry), or 409 "what changed meanwhile";
 * a failure as tern_api_store_error. */
bool tern_api_cas_stored(tern_app *a, tern_http_req *req, tern_conn *conn, const tern_store_op *op, const char *what);
/* Answers status with an error body and Retry-After: retry_s (429 and 503 refusals). */
void tern_api_retry_later(tern_http_req *req, int status, const char *code, const char *message, int retry_s);
/* Answers a store op that failed: 503 unavailable when the store cannot be written right now
 * (cluster mode without quorum), else 500 internal with fail_message. */
void tern_api_store_error(tern_http_req *req, const tern_store_op *op, const char *fail_message);
/* The net layer's upgrade gate: only GET /v1/ws becomes a WebSocket (others are refused 404). */
bool tern_api_ws_accept(tern_app *a, tern_http_req *req);
/* Renders an error body {"error":{"code","message"}} (code NULL: the one that fits status);
 * returns its content type. */
const char *tern_api_error_body(tern_buf *b, int status, const char *code, const char *message);
/* An error body naming a user: {"error":{"code","message","user"}}. */
void tern_api_error_user(tern_http_req *req, int status, const char *code, const char *message, const char *user);

#endif
