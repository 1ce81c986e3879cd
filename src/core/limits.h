/* limits: the abuse limits of PROTOCOL.md 14 that the core enforces, and the client address
 * they count against. (Open and new connections per address are counted at accept by the net
 * layer for direct peers; connections through a trusted proxy are counted here, by the
 * address X-Forwarded-For gives, when they upgrade to WebSocket.)
 *
 *   - the client address: the peer, or for a peer in http.trusted_proxies, the right-most
 *     X-Forwarded-For entry that is not itself a trusted proxy;
 *   - limits.auth_rate_per_ip: register and login attempts per client address;
 *   - limits.login_fail: failed logins per username and client address (an unknown username
 *     counts the same, so the answer says nothing of which names exist);
 *   - limits.typing_rate: typing frames per user (the bucket lives on the user);
 *   - metrics.allow: who may read /metrics (never a request through a trusted proxy);
 *   - tern_limited_total{limit}: everything refused, by limit, including the net layer's.
 *
 * Memory: an address or (user, address) pair is remembered while it has something open or a
 * bucket not yet refilled; tern_limits_sweep forgets the rest, a bounded number per call.
 *
 * Threads: any. One tern_limits serves every worker of the process (the composition root makes
 * it and hands it to each app), so a limit holds for an address or a user whichever worker its
 * connections landed on; a mutex guards the tables and counters. */
#ifndef TERN_CORE_LIMITS_H
#define TERN_CORE_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/cidr.h"
#include "base/config.h"
#include "net/server.h"

typedef enum {
  TERN_LIMIT_CONN_PER_IP = 0,
  TERN_LIMIT_CONN_RATE_PER_IP,
  TERN_LIMIT_AUTH_RATE_PER_IP,
  TERN_LIMIT_LOGIN_FAIL,
  TERN_LIMIT_TYPING_RATE,
  TERN_LIMIT_HASH_QUEUE,
  TERN_LIMIT_SEND_RATE,
  TERN_LIMIT_FANOUT_RATE,
  TERN_LIMIT_KEY_FETCH_RATE,
  TERN_LIMIT__COUNT
} tern_limit_kind;

typedef struct tern_limits tern_limits;

/* Parses the address lists; -EINVAL with the reason for a bad one. */
int tern_limits_new(const tern_config *cfg, tern_limits **out, char *err, size_t errlen);
void tern_limits_free(tern_limits *l);
const tern_cidr_list *tern_limits_trusted(const tern_limits *l);

/* The client address of a request (false when the peer's is unknown); *via_proxy tells
 * whether it came from X-Forwarded-For. */
bool tern_limits_client(const tern_limits *l, const tern_http_req *req, tern_ip *out, bool *via_proxy);
/* May this client address try a register or login now? Takes a token; false: answer 429 with
 * Retry-After *retry_s. */
bool tern_limits_auth_attempt(tern_limits *l, const tern_ip *ip, int *retry_s);
/* Is a login for user from ip allowed (fewer than limits.login_fail failures)? Takes nothing. */
bool tern_limits_login_allowed(tern_limits *l, const char *user, const tern_ip *ip, int *retry_s);
void tern_limits_login_failed(tern_limits *l, const char *user, const tern_ip *ip);
/* A WebSocket through a trusted proxy, for its client address: false when that address is
 * over limits.conn_per_ip or limits.conn_rate_per_ip (the upgrade is refused 429). */
bool tern_limits_ws_open(tern_limits *l, const tern_ip *ip);
void tern_limits_ws_closed(tern_limits *l, const tern_ip *ip);
/* May peer read /metrics? */
bool tern_limits_metrics_ok(const tern_limits *l, const tern_http_req *req);
/* A per-user bucket (limits.send_rate, fanout, typing, key fetches), one for the process
 * whichever worker the user's connections and requests landed on: takes n tokens when there
 * are that many (true). *tokens (optional) gets what is left, for a Retry-After. */
typedef enum { TERN_UL_SEND = 0, TERN_UL_FANOUT, TERN_UL_TYPING, TERN_UL_KEY_FETCH } tern_user_limit;
bool tern_limits_user_take(tern_limits *l, tern_user_limit k, const char *user, double rate, double burst, double n,
                           double *tokens);
/* Counts a refusal made elsewhere (typing, the hash queue, send rates). */
void tern_limits_count(tern_limits *l, tern_limit_kind k);
/* Forgets what has refilled; a few entries per call. */
void tern_limits_sweep(tern_limits *l, int64_t now);
/* tern_limited_total{limit="..."}, with the net layer's counts (net may be NULL). */
void tern_limits_render(tern_limits *l, const tern_net *net, tern_buf *out);

#endif
