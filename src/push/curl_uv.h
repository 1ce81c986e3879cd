/* curl_uv: libcurl's multi-socket API driven by a libuv loop. curl tells us which sockets to
 * watch and when to wake it; we watch them with uv_poll and one uv_timer and hand readiness
 * back with curl_multi_socket_action, so no transfer ever blocks the loop thread.
 * Internal to src/push. Everything runs on the loop thread. */
#ifndef TERN_PUSH_CURL_UV_H
#define TERN_PUSH_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

typedef struct tern_push_cu tern_push_cu;

/* Called once per finished transfer, after the easy handle has been removed from the multi
 * handle (so the callee may reuse or clean it up, and may start new transfers). */
typedef void (*tern_push_cu_done_fn)(void *arg, CURL *easy, CURLcode result);

/* Creates the multi handle with HTTP/2 multiplexing on. max_streams bounds the streams curl
 * opens on one connection; max_conns sizes the connection cache (kept connections). */
tern_push_cu *tern_push_cu_new(uv_loop_t *loop, long max_streams, long max_conns);
/* Starts easy; done(arg, easy, result) is called exactly once later from the loop, unless
 * tern_push_cu_remove cancels it first. Returns 0 or -EIO (then done is never called). */
int tern_push_cu_add(tern_push_cu *cu, CURL *easy, tern_push_cu_done_fn done, void *arg);
/* Cancels a transfer that was added and has not finished; done is not called. */
void tern_push_cu_remove(tern_push_cu *cu, CURL *easy);
/* Transfers added and not yet finished. */
long tern_push_cu_running(const tern_push_cu *cu);
/* Tears down: every transfer must have been removed. Closes the uv handles; closed(arg) runs
 * once they are gone (the loop must keep running until then). */
void tern_push_cu_close(tern_push_cu *cu, void (*closed)(void *arg), void *arg);

#endif
