/* accounts: PROTOCOL.md section 2 and the user lookup of section 6: register, login, logout,
 * /v1/me and /v1/users/{name}. Password hashing runs in the libuv threadpool, never on the
 * loop. Threads: the worker's loop. */
#ifndef TERN_CORE_ACCOUNTS_H
#define TERN_CORE_ACCOUNTS_H

#include "core/app.h"
#include "net/httpreq.h"

void tern_accounts_register(tern_app *a, tern_http_req *req);
void tern_accounts_login(tern_app *a, tern_http_req *req);
void tern_accounts_logout(tern_app *a, tern_http_req *req);
void tern_accounts_me(tern_app *a, tern_http_req *req);
/* /v1/me's body for device me (PATCH /v1/me answers it too). */
void tern_accounts_me_body(tern_app *a, tern_device *me, tern_buf *out);
void tern_accounts_user(tern_app *a, tern_http_req *req, const char *raw_name);
/* Deletes a device (logout or expiry): closes its session (4002) and drops it from the
 * directory at once; returns the DEL_DEVICE op that drops it from the store, for the caller
 * to submit (with its own done, if any). */
tern_store_op *tern_accounts_delete_device(tern_app *a, tern_device *d);
/* The in-memory half of that, for a device another node deleted: closes its session (4002),
 * cancels its notification window and drops it from the directory. */
void tern_accounts_forget_device(tern_app *a, tern_device *d);
/* The op for the inbox of a device of u that left this directory without this node emptying
 * it (another node deleted it, or the store refused it as one too many), id its id: what
 * this node's sends put there meanwhile moves to the user-level inbox when u has no device
 * left here, for the next device, as a send from here would go now (a move skips what another
 * node moved already); otherwise u's other devices got their own copies, and it is deleted
 * with its references. An account deleted meanwhile keeps nothing. For the caller to submit. */
tern_store_op *tern_accounts_leftovers_op(tern_app *a, tern_user *u, const char *id);
/* A PUT_DEVICE op carrying d's record as the directory holds it (label, push registration):
 * a re-put of a stored device, which devices.max_per_user does not count again (a new
 * device's PUT is made in accounts.c, with the limit). */
tern_store_op *tern_accounts_device_op(tern_device *d, tern_store_done_cb done, void *arg);

/* POST /v1/me/password {"old","new"} (PROTOCOL.md 14): 204; other devices stay logged in. */
void tern_accounts_password(tern_app *a, tern_http_req *req);
/* DELETE /v1/devices/{id}: one of the caller's own devices, as its logout would. */
void tern_accounts_delete_device_route(tern_app *a, tern_http_req *req, const char *id);

/* DELETE /v1/me {"password"} (PROTOCOL.md 14): the account and everything of it; the name is
 * held for accounts.name_hold. */
void tern_accounts_delete_me(tern_app *a, tern_http_req *req);
/* Held names of deleted accounts (registering one answers 409 until the hold ends). */
bool tern_accounts_held(tern_app *a, const char *name);
void tern_accounts_hold(tern_app *a, const char *name, int64_t deleted_at);
void tern_accounts_unhold(tern_app *a, const char *name);
/* Releases the names whose hold ended (their tombstones are deleted). */
void tern_accounts_sweep_held(tern_app *a);
/* An account deleted (here, or elsewhere and learned from the feed): everything of it leaves
 * this directory; the name is held. */
void tern_accounts_forget_user(tern_app *a, tern_user *u, int64_t deleted_at);

#endif
