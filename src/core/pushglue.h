/* pushglue: PROTOCOL.md section 8 on top of src/push: the registration endpoints, the trigger
 * for devices with no connection, and the removal of registrations a provider calls dead. A
 * device's registration is stored in its device record, so it goes away with the device.
 * Threads: the worker's loop. */
#ifndef TERN_CORE_PUSHGLUE_H
#define TERN_CORE_PUSHGLUE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/app.h"
#include "net/httpreq.h"
#include "push/push.h"

/* Handles /v1/push and /v1/push/vapid; returns false for other paths. */
bool tern_pushglue_route(tern_app *a, tern_http_req *req);
/* A msg envelope from another user reached d while it has no live connection (group_id and
 * group: the group's id and name for a group message, else NULL). */
void tern_pushglue_offline(tern_app *a, tern_device *d, const char *sender, const char *group_id, const char *group,
                           const char *body, size_t body_len);
/* d connected or is going away: no notification for what it will see anyway. */
void tern_pushglue_online(tern_app *a, tern_device *d);
/* Result of a coalesced notification (installed with tern_push_set_result_cb). */
void tern_pushglue_result(void *arg, const char *device_id, const tern_push_reg *reg, tern_push_result result);
/* Sets d's registration from its stored form (start-up, or a record written elsewhere; NULL
 * or "" clears it). */
void tern_pushglue_load(tern_app *a, tern_device *d, const char *stored);

#endif
