/* tn_common: what every bench/nats program shares.
 *
 * These programs measure nats-server 2.9.10 through libnats 3.4.1 (Debian 12) for the cluster
 * layout in docs/cluster-layout.md. They are benchmarks, not tern code: they print numbers and
 * never fail on a time. Everything here is single-purpose and small on purpose.
 *
 * Ownership: every function that returns a pointer returns memory the caller frees with the
 * matching _free or _destroy; strings passed in are only borrowed for the call.
 */
#ifndef TN_COMMON_H
#define TN_COMMON_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors -------------------------------------------------------------------------- */

/* Aborts with the library's last error when `s` is not NATS_OK: a bench has no recovery. */
#define TN_CHECK(s, what) tn_check((s), (what), __FILE__, __LINE__)
void tn_check(natsStatus s, const char *what, const char *file, int line);

void *tn_xmalloc(size_t n);   /* aborts on out-of-memory */
void *tn_xcalloc(size_t n, size_t sz);

/* ---- time and process stats ------------------------------------------------------------- */

int64_t tn_now_ns(void);                 /* CLOCK_MONOTONIC */
void tn_sleep_ms(int ms);

/* CPU (user+system) and RSS of a set of server processes, read from /proc/PID/stat and
 * /proc/PID/status. `pids` is a comma-separated list as printed by `bench/nats/servers pids`. */
typedef struct {
  int n;                /* number of pids */
  int pid[8];           /* the processes */
} tn_procs;

void tn_procs_parse(tn_procs *p, const char *list);
double tn_procs_cpu_s(const tn_procs *p);      /* summed utime+stime, seconds */
long tn_procs_rss_kb(const tn_procs *p, int i); /* VmRSS of pid[i], KiB; -1 if gone */
long tn_procs_rss_sum_kb(const tn_procs *p);

/* ---- latency samples ---------------------------------------------------------------- */

typedef struct {
  int64_t *v;           /* nanoseconds */
  size_t n, cap;
} tn_lat;

void tn_lat_add(tn_lat *l, int64_t ns);
/* Prints "name: n=N p50=.. p90=.. p99=.. max=.. (ms)" and leaves the samples sorted. */
void tn_lat_print(tn_lat *l, const char *name);
double tn_lat_pct_ms(tn_lat *l, double pct);  /* after sorting */
void tn_lat_free(tn_lat *l);

/* ---- naming ------------------------------------------------------------------------- */

/* Encodes a user name (or any id) as ONE subject token that is also a valid KV key:
 * [A-Za-z0-9_-] stay, every other byte (the '.' that separates tokens, '*', '>', spaces,
 * '=', UTF-8 bytes) becomes "=XX" (upper-case hex). Injective, so decoding is possible, and
 * '=' is legal in both subjects and nats.c's KV key check (kv.c validKey). Returns the
 * length written, or -1 if `out` (size `cap`) is too small. */
int tn_encode_token(char *out, size_t cap, const char *in);

/* The stream shard of a user: FNV-1a 64 of the raw user name, mod nshards. All devices of a
 * user land in one shard, so "every device of this user" is one wildcard in one stream. */
unsigned tn_shard_of(const char *user, unsigned nshards);

/* Inbox subject of device `dev` of `user`: "in.<shard>.<enc user>.<dev>". */
int tn_inbox_subject(char *out, size_t cap, const char *user, const char *dev, unsigned nshards);

/* ---- connections and streams ------------------------------------------------------ */

/* Connects with the library's own threads (benchmarks do not need the loop adapter) and
 * the global delivery pool, so a program with many async subscriptions has few threads. */
natsConnection *tn_connect(const char *urls);

/* Creates (or replaces, when `fresh`) the inbox streams IN_0..IN_{n-1}, stream i holding
 * "in.<i>.>": file storage, `replicas`, direct get allowed, rollups allowed, a 2 min
 * duplicate window. With n == 1 the one stream is IN_0 for "in.>". */
void tn_streams_create(jsCtx *js, int nstreams, int replicas, bool fresh);

/* ---- pipelined request/reply -------------------------------------------------------- */

/* tn_mux sends core NATS requests without blocking the caller per request: one wildcard
 * subscription on a private inbox, replies matched by the last token. This is what tern
 * would use for JetStream API calls (purge, direct get) so that they pipeline instead of
 * taking one blocking natsConnection_Request each. At most `window` are in flight;
 * tn_mux_send blocks (condition wait) only when the window is full. */
typedef struct tn_mux tn_mux;
/* Called on the subscription's delivery thread with the reply (NULL on timeout). The
 * callback owns `reply`. */
typedef void (*tn_mux_cb)(void *arg, natsMsg *reply, int64_t latency_ns);

tn_mux *tn_mux_new(natsConnection *nc, int window, int64_t timeout_ms);
/* Reserves a request slot and writes its reply subject into `reply`; the caller then
 * publishes its own message (with headers, say) with that reply subject. */
#define TN_MUX_REPLY_MAX 96
void tn_mux_begin(tn_mux *x, tn_mux_cb cb, void *arg, char reply[TN_MUX_REPLY_MAX]);
void tn_mux_send(tn_mux *x, const char *subj, const void *data, int len, tn_mux_cb cb,
                 void *arg);
void tn_mux_drain(tn_mux *x);      /* waits until nothing is in flight */
int tn_mux_timeouts(tn_mux *x);
void tn_mux_free(tn_mux *x);

/* ---- small helpers -------------------------------------------------------------------- */

/* Parses "--name=value" style flags: returns the value of `name` in argv or `def`. */
const char *tn_arg(int argc, char **argv, const char *name, const char *def);
long tn_arg_long(int argc, char **argv, const char *name, long def);

/* A JetStream API reply: true if it has no "error" member. Copies the error code into
 * *code when given. */
bool tn_api_ok(natsMsg *reply, int *code);

/* Fetches http://127.0.0.1:PORT/debug/pprof/heap?debug=1 from a server's pprof port and
 * returns HeapInuse in bytes (Go heap actually in use, which excludes garbage not yet
 * returned and the RSS slack that RSS includes), or -1. */
long long tn_heap_inuse(int pprof_port);

#endif
