/* tn_kv: KV bucket rates and create-if-absent contention, the way tern would use a bucket for
 * de-dup ids (create-if-absent, 25 h TTL) and the directory (put/get, no TTL).
 *
 *   tn_kv --urls=... --urls2=... --replicas=R --pids=... [--n=20000] [--window=256] [--threads=4]
 *
 * Measured: sync kvStore_Put / kvStore_Get / kvStore_Create (one round trip each, on the
 * caller's thread), the same as pipelined requests (async publish to $KV.<bucket>.<key> with
 * Nats-Expected-Last-Subject-Sequence: 0 for create; direct get for get), and contention:
 * `threads` connections (alternating between the two URLs) race kvStore_Create on the same
 * keys, and kvStore_Update on the same key and revision; exactly one may win each.
 */
#include "tn_common.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *BUCKET = "tnbench";

static void key_of(char *out, size_t cap, const char *kind, long i) {
  /* A de-dup key: encoded sender, '.', client id. The '.' makes "dedup.<sender>.>" a
   * per-sender wildcard, as subject tokens. */
  snprintf(out, cap, "%s.user=2E%07ld.c%ld", kind, i % 100000, i);
}

static void report(const char *what, long n, int64_t ns, double cpu, tn_lat *lat) {
  printf("%s: n=%ld rate=%.0f/s server_cpu_per_op=%.2f us\n", what, n, (double)n / ((double)ns / 1e9),
         cpu / (double)n * 1e6);
  if (lat) tn_lat_print(lat, "  latency");
}

/* ---- async put / create via js_PublishMsgAsync ----------------------------------------- */
static atomic_ulong g_ok, g_err, g_wrong;
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  if (pa)
    atomic_fetch_add(&g_ok, 1);
  else if (pae->ErrCode == JSStreamWrongLastSequenceErr)
    atomic_fetch_add(&g_wrong, 1);
  else
    atomic_fetch_add(&g_err, 1);
  natsMsg_Destroy(msg);
}

static atomic_ulong g_get_ok, g_get_nf;
static void on_get(void *arg, natsMsg *reply, int64_t ns) {
  if (tn_api_ok(reply, NULL))
    atomic_fetch_add(&g_get_ok, 1);
  else
    atomic_fetch_add(&g_get_nf, 1);
  natsMsg_Destroy(reply);
}

/* ---- contention --------------------------------------------------------------------- */
typedef struct {
  kvStore *kv;           /* this thread's handle (own connection) */
  long keys;             /* how many keys to race on */
  long round_base;       /* key namespace of this run */
  long *wins;            /* shared: winners per key */
  pthread_barrier_t *bar;
  atomic_long *upd_wins; /* shared: update winners per round */
  int rounds;            /* update rounds */
  pthread_mutex_t *mu;
} contender;

static void *contend(void *arg) {
  contender *c = arg;
  char key[96];
  for (long i = 0; i < c->keys; i++) {
    key_of(key, sizeof key, "race", c->round_base + i);
    pthread_barrier_wait(c->bar);
    uint64_t rev = 0;
    if (kvStore_Create(&rev, c->kv, key, "v", 1) == NATS_OK) {
      pthread_mutex_lock(c->mu);
      c->wins[i]++;
      pthread_mutex_unlock(c->mu);
    }
  }
  /* Update race: every thread reads the revision, then all update with it at once. */
  snprintf(key, sizeof key, "ctr.%ld", c->round_base);
  for (int r = 0; r < c->rounds; r++) {
    pthread_barrier_wait(c->bar);
    kvEntry *e = NULL;
    uint64_t last = 0;
    /* Read from the leader path? kvStore_Get uses direct get (any replica), so it may be
     * stale; a stale read just loses the CAS, which is safe. */
    if (kvStore_Get(&e, c->kv, key) == NATS_OK) {
      last = kvEntry_Revision(e);
      kvEntry_Destroy(e);
    }
    pthread_barrier_wait(c->bar);
    uint64_t rev = 0;
    natsStatus s = last ? kvStore_Update(&rev, c->kv, key, "n", 1, last)
                        : kvStore_Create(&rev, c->kv, key, "n", 1);
    if (s == NATS_OK) atomic_fetch_add(&c->upd_wins[r], 1);
    pthread_barrier_wait(c->bar);
    /* Let the write reach every replica before the next read. */
    if (r >= 0) tn_sleep_ms(3);
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *urls = tn_arg(argc, argv, "urls", "nats://127.0.0.1:14222");
  const char *urls2 = tn_arg(argc, argv, "urls2", urls);
  int replicas = (int)tn_arg_long(argc, argv, "replicas", 1);
  long n = tn_arg_long(argc, argv, "n", 20000);
  int window = (int)tn_arg_long(argc, argv, "window", 256);
  int threads = (int)tn_arg_long(argc, argv, "threads", 4);
  long ckeys = tn_arg_long(argc, argv, "ckeys", 500);
  int urounds = (int)tn_arg_long(argc, argv, "urounds", 300);
  tn_procs pr;
  tn_procs_parse(&pr, tn_arg(argc, argv, "pids", ""));

  natsConnection *nc = tn_connect(urls);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = window;
  jo.PublishAsync.AckHandler = on_ack;
  jo.PublishAsync.StallWait = 30000;
  jsCtx *js = NULL;
  TN_CHECK(natsConnection_JetStream(&js, nc, &jo), "jetstream");
  (void)js_DeleteKeyValue(js, BUCKET);
  kvConfig kc;
  kvConfig_Init(&kc);
  kc.Bucket = BUCKET;
  kc.History = 1;
  kc.TTL = 25LL * 3600 * 1000000000LL; /* nanoseconds: kvConfig.TTL becomes max_age */
  kc.Replicas = replicas;
  kc.StorageType = js_FileStorage;
  kvStore *kv = NULL;
  int64_t tb = tn_now_ns();
  TN_CHECK(js_CreateKeyValue(&kv, js, &kc), "create bucket");
  printf("kv replicas=%d: bucket create (js_CreateKeyValue, 25 h TTL) took %.1f ms\n", replicas,
         (double)(tn_now_ns() - tb) / 1e6);

  char key[96];
  long nsync = n / 10 < 2000 ? n / 10 : 2000;
  tn_lat lat = {0};
  double c0 = tn_procs_cpu_s(&pr);
  int64_t t0 = tn_now_ns();
  for (long i = 0; i < nsync; i++) {
    key_of(key, sizeof key, "dir", i);
    int64_t a = tn_now_ns();
    TN_CHECK(kvStore_Put(NULL, kv, key, "0123456789abcdef0123456789abcdef", 32), "put");
    tn_lat_add(&lat, tn_now_ns() - a);
  }
  report("kvStore_Put (sync, 32 B)", nsync, tn_now_ns() - t0, tn_procs_cpu_s(&pr) - c0, &lat);
  tn_lat_free(&lat);

  c0 = tn_procs_cpu_s(&pr);
  t0 = tn_now_ns();
  for (long i = 0; i < nsync; i++) {
    key_of(key, sizeof key, "dir", i);
    kvEntry *e = NULL;
    int64_t a = tn_now_ns();
    TN_CHECK(kvStore_Get(&e, kv, key), "get");
    tn_lat_add(&lat, tn_now_ns() - a);
    kvEntry_Destroy(e);
  }
  report("kvStore_Get (sync, direct get)", nsync, tn_now_ns() - t0, tn_procs_cpu_s(&pr) - c0, &lat);
  tn_lat_free(&lat);

  c0 = tn_procs_cpu_s(&pr);
  t0 = tn_now_ns();
  long exist = 0;
  for (long i = 0; i < nsync; i++) {
    key_of(key, sizeof key, "dedup", i);
    int64_t a = tn_now_ns();
    if (kvStore_Create(NULL, kv, key, "m", 1) != NATS_OK) exist++;
    tn_lat_add(&lat, tn_now_ns() - a);
  }
  report("kvStore_Create (sync, new keys)", nsync, tn_now_ns() - t0, tn_procs_cpu_s(&pr) - c0, &lat);
  tn_lat_free(&lat);
  t0 = tn_now_ns();
  for (long i = 0; i < nsync; i++) {
    key_of(key, sizeof key, "dedup", i);
    int64_t a = tn_now_ns();
    if (kvStore_Create(NULL, kv, key, "m", 1) != NATS_OK) exist++;
    tn_lat_add(&lat, tn_now_ns() - a);
  }
  report("kvStore_Create (sync, existing keys: fails, then a get)", nsync, tn_now_ns() - t0, 0, &lat);
  printf("  refused creates=%ld (expect %ld); error text of the last: %s\n", exist, nsync,
         nats_GetLastError(NULL));
  tn_lat_free(&lat);

  /* Pipelined: async publishes; the ack handler runs on the jsCtx's reply thread. */
  c0 = tn_procs_cpu_s(&pr);
  t0 = tn_now_ns();
  for (long i = 0; i < n; i++) {
    char subj[128];
    key_of(key, sizeof key, "dir", nsync + i);
    snprintf(subj, sizeof subj, "$KV.%s.%s", BUCKET, key);
    TN_CHECK(js_PublishAsync(js, subj, "0123456789abcdef0123456789abcdef", 32, NULL), "put async");
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  TN_CHECK(js_PublishAsyncComplete(js, &po), "complete");
  report("put pipelined (js_PublishAsync to $KV.b.k)", n, tn_now_ns() - t0, tn_procs_cpu_s(&pr) - c0, NULL);
  printf("  ok=%lu err=%lu\n", atomic_load(&g_ok), atomic_load(&g_err));

  atomic_store(&g_ok, 0);
  c0 = tn_procs_cpu_s(&pr);
  t0 = tn_now_ns();
  for (long i = 0; i < 2 * n; i++) {
    /* Half new keys, half already there: the de-dup check of a resent message. */
    char subj[128];
    key_of(key, sizeof key, "dedup", nsync + (i % n));
    snprintf(subj, sizeof subj, "$KV.%s.%s", BUCKET, key);
    jsPubOptions cpo;
    jsPubOptions_Init(&cpo);
    cpo.ExpectNoMessage = true;
    TN_CHECK(js_PublishAsync(js, subj, "m", 1, &cpo), "create async");
  }
  TN_CHECK(js_PublishAsyncComplete(js, &po), "complete");
  report("create-if-absent pipelined (expected-last-subject-seq 0)", 2 * n, tn_now_ns() - t0,
         tn_procs_cpu_s(&pr) - c0, NULL);
  printf("  created=%lu refused=%lu other-errors=%lu\n", atomic_load(&g_ok), atomic_load(&g_wrong),
         atomic_load(&g_err));

  tn_mux *mux = tn_mux_new(nc, window, 30000);
  c0 = tn_procs_cpu_s(&pr);
  t0 = tn_now_ns();
  for (long i = 0; i < n; i++) {
    char api[160];
    key_of(key, sizeof key, "dir", nsync + i);
    snprintf(api, sizeof api, "$JS.API.DIRECT.GET.KV_%s.$KV.%s.%s", BUCKET, BUCKET, key);
    tn_mux_send(mux, api, NULL, 0, on_get, NULL);
  }
  tn_mux_drain(mux);
  report("get pipelined (direct get last_by_subj)", n, tn_now_ns() - t0, tn_procs_cpu_s(&pr) - c0, NULL);
  printf("  found=%lu missing=%lu\n", atomic_load(&g_get_ok), atomic_load(&g_get_nf));
  tn_mux_free(mux);

  /* Contention. */
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, (unsigned)threads);
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  long *wins = tn_xcalloc((size_t)ckeys, sizeof *wins);
  atomic_long *uw = tn_xcalloc((size_t)urounds, sizeof *uw);
  contender *cs = tn_xcalloc((size_t)threads, sizeof *cs);
  natsConnection **ncs = tn_xcalloc((size_t)threads, sizeof *ncs);
  jsCtx **jss = tn_xcalloc((size_t)threads, sizeof *jss);
  pthread_t *th = tn_xcalloc((size_t)threads, sizeof *th);
  for (int i = 0; i < threads; i++) {
    ncs[i] = tn_connect(i % 2 ? urls2 : urls);
    TN_CHECK(natsConnection_JetStream(&jss[i], ncs[i], NULL), "js");
    TN_CHECK(js_KeyValue(&cs[i].kv, jss[i], BUCKET), "kv");
    cs[i].keys = ckeys;
    cs[i].round_base = 1000000 + (long)(tn_now_ns() % 1000) * 1000;
    cs[i].wins = wins;
    cs[i].bar = &bar;
    cs[i].upd_wins = uw;
    cs[i].rounds = urounds;
    cs[i].mu = &mu;
  }
  for (int i = 1; i < threads; i++) cs[i].round_base = cs[0].round_base;
  t0 = tn_now_ns();
  for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, contend, &cs[i]);
  for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
  double secs = (double)(tn_now_ns() - t0) / 1e9;
  long zero = 0, one = 0, many = 0;
  for (long i = 0; i < ckeys; i++) {
    if (wins[i] == 0) zero++;
    else if (wins[i] == 1) one++;
    else many++;
  }
  long uzero = 0, uone = 0, umany = 0;
  for (int r = 0; r < urounds; r++) {
    long w = atomic_load(&uw[r]);
    if (w == 0) uzero++;
    else if (w == 1) uone++;
    else umany++;
  }
  printf("contention: %d threads, %ld keys raced with kvStore_Create: one winner=%ld none=%ld "
         "more than one=%ld (%.1f s incl. update race)\n",
         threads, ckeys, one, zero, many, secs);
  printf("contention: %d rounds of kvStore_Update on one key with the same revision: one winner=%ld "
         "none=%ld more than one=%ld\n",
         urounds, uone, uzero, umany);
  for (int i = 0; i < threads; i++) {
    kvStore_Destroy(cs[i].kv);
    jsCtx_Destroy(jss[i]);
    natsConnection_Destroy(ncs[i]);
  }
  kvStore_Destroy(kv);
  (void)js_DeleteKeyValue(js, BUCKET);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  return 0;
}
