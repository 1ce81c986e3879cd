/* groupapi: the group endpoints of PROTOCOL.md section 10 (/v1/groups...), on top of the
 * model in groups.h: request bodies, the rules of who may do what, and the answers, written
 * once the change and its events are durable. Threads: the worker's loop. */
#ifndef TERN_CORE_GROUPAPI_H
#define TERN_CORE_GROUPAPI_H

#include "core/app.h"
#include "net/httpreq.h"

/* Answers every path under /v1/groups (404 for unknown ones). */
void tern_groupapi_route(tern_app *a, tern_http_req *req);

#endif
