/* keyapi: the E2E key directory over HTTP (PROTOCOL.md 11: PUT/GET /v1/keys,
 * GET /v1/keys/{user}[/{device_id}]) and the directory's view of who is E2E-capable.
 *
 * The server only stores public keys and hands them out; it never sees a private key or a
 * plaintext. Bundles live in the store (store.h, KEYS_*): the store decides whether a PUT is a
 * device's first, whether its identity changed, and which one-time prekey a fetch takes, so
 * every node answers alike. Each loop's directory keeps one bit per device (tern_device.e2e),
 * learned from the bundle records at load, from the change feed, and from this loop's own
 * PUTs; sends check their `e2e` lists against it (router.c, groupsend.c).
 *
 * Bodies are parsed by tern_keys_parse_put (pure, fuzzed by fuzz_keys): every refusal is a
 * 400 with nothing stored. Threads: the worker's loop. */
#ifndef TERN_CORE_KEYAPI_H
#define TERN_CORE_KEYAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/app.h"
#include "net/server.h"
#include "store/store.h"

/* Answers a request whose path starts with /v1/keys. */
void tern_keyapi_route(tern_app *a, tern_http_req *req);

/* True for a RECORDS key that is a bundle ("e2e/<device id>"). */
bool tern_keyapi_is_kv(const char *key, size_t klen);
/* A bundle record loaded, changed (v != NULL) or deleted (v NULL): sets its device's e2e bit.
 * False when the record names a device this directory does not know (yet: with several
 * writers, one's bundle may arrive before another's device record; sync.c keeps it). */
bool tern_keyapi_apply_record(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t vlen);

/* The body of PUT /v1/keys, parsed and checked into op (a KEYS_PUT: has_identity, has_spk, in,
 * prekeys; max_per_put one-time prekeys at most). Returns 0, or -EINVAL with a sentence in msg
 * (400), or -E2BIG (413: more than max_per_put one-time prekeys). Pure: any thread. */
int tern_keys_parse_put(const char *body, size_t len, size_t max_per_put, tern_op_keys *op, char *msg, size_t msglen);

#define TERN_KEYS_MAX_PER_PUT 100 /* one-time prekeys per PUT (PROTOCOL.md 11) */

#endif
