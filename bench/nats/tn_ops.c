/* tn_ops: the per-inbox operations on streams that tn_load filled, at the subject count they
 * hold: purge one subject up to a seq (alone, and pipelined while publishing), drain one
 * subject from a seq (three ways), and get the last message of a subject.
 *
 *   tn_ops --mode=purge      --subjects=N --streams=S [--n=200]
 *   tn_ops --mode=purge-pub  --subjects=N --streams=S [--secs=10] [--window=64] [--pubwindow=1024]
 *          [--op=delete: delete each inbox's newest entry by stream seq instead of purging]
 *          [--seed=N: which random subjects; give each run on one layout its own]
 *   tn_ops --mode=drain      --subjects=N --streams=S [--n=200] [--per=2]
 *   tn_ops --mode=drain-big  --streams=S [--big=1000]
 *   tn_ops --mode=delete     --subjects=N --streams=S [--n=2000] [--window=64]
 *   tn_ops --mode=last       --subjects=N --streams=S [--n=20000] [--window=256]
 *   (and --urls=..., --pids=... for server CPU)
 *
 * N and S must match the tn_load run (subjects are user.0000000 .. user.N-1). Subjects are
 * picked at random, each at most once per run, so purges do not hit emptied subjects.
 */
#include "tn_common.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_streams = 1;

static void subject_of(char *out, size_t cap, long i) {
  char user[32];
  snprintf(user, sizeof user, "user.%07ld", i);
  if (tn_inbox_subject(out, cap, user, "d1", (unsigned)g_streams) < 0) abort();
}

/* The stream that holds a subject: its second token is the shard. */
static void stream_of(char *out, size_t cap, const char *subj) {
  snprintf(out, cap, "IN_%ld", g_streams == 1 ? 0L : strtol(subj + 3, NULL, 10));
}

/* A random permutation prefix: n distinct subject indexes below `count`. */
static long *pick(long count, long n, unsigned seed) {
  if (n > count) n = count;
  long *v = tn_xmalloc((size_t)n * sizeof *v);
  srand(seed);
  /* Floyd's algorithm would be tidier; a rejection set is enough for n << count. */
  char *used = tn_xcalloc((size_t)count, 1);
  for (long i = 0; i < n; i++) {
    long x;
    do x = (long)(((unsigned long)rand() << 16 ^ (unsigned long)rand()) % (unsigned long)count);
    while (used[x]);
    used[x] = 1;
    v[i] = x;
  }
  free(used);
  return v;
}

/* ---- purge ------------------------------------------------------------------------ */

/* The request body of $JS.API.STREAM.PURGE.<stream> with a subject filter and an upper bound:
 * "seq" purges every message of the subject below it, which is what an ack up to a stream
 * sequence does. js_PurgeStream builds the same body from jsOptions.Stream.Purge. */
static int purge_body(char *out, size_t cap, const char *subj, uint64_t below) {
  return snprintf(out, cap, "{\"filter\":\"%s\",\"seq\":%" PRIu64 "}", subj, below);
}

static void mode_purge(natsConnection *nc, jsCtx *js, long subjects, long n) {
  long *ix = pick(subjects, n, 1);
  tn_lat lat = {0};
  uint64_t purged_total = 0;
  for (long k = 0; k < n; k++) {
    char subj[128], stream[32];
    subject_of(subj, sizeof subj, ix[k]);
    stream_of(stream, sizeof stream, subj);
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Subject = subj;
    o.Stream.Purge.Sequence = UINT64_MAX / 2; /* "up to a seq" above everything stored */
    o.Wait = 60000;
    int64_t t0 = tn_now_ns();
    jsErrCode jerr = 0;
    TN_CHECK(js_PurgeStream(js, stream, &o, &jerr), "purge");
    tn_lat_add(&lat, tn_now_ns() - t0);
    purged_total++;
  }
  tn_lat_print(&lat, "purge one subject (js_PurgeStream, sequential)");
  tn_lat_free(&lat);
  free(ix);
  (void)nc;
  (void)purged_total;
}

/* purge-pub: pipelined purges while another thread publishes as fast as its window allows. */
typedef struct {
  jsCtx *js;
  atomic_int stop;
  atomic_ulong acked;
  long subjects;
} pub_thread;

static atomic_ulong g_pub_ok, g_pub_err;
static tn_lat g_pub_lat;
static pthread_mutex_t g_pub_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  int64_t t0 = 0;
  memcpy(&t0, natsMsg_GetData(msg), 8);
  if (pa)
    atomic_fetch_add(&g_pub_ok, 1);
  else
    atomic_fetch_add(&g_pub_err, 1);
  unsigned long n = atomic_load(&g_pub_ok);
  if ((n & 15) == 0) {
    pthread_mutex_lock(&g_pub_mu);
    tn_lat_add(&g_pub_lat, tn_now_ns() - t0);
    pthread_mutex_unlock(&g_pub_mu);
  }
  natsMsg_Destroy(msg);
}

static void *publisher(void *arg) {
  pub_thread *p = arg;
  char payload[200];
  memset(payload, 'y', sizeof payload);
  unsigned r = 7;
  while (!atomic_load(&p->stop)) {
    char subj[128];
    r = r * 1103515245u + 12345u;
    subject_of(subj, sizeof subj, (long)(r % (unsigned)p->subjects));
    int64_t now = tn_now_ns();
    memcpy(payload, &now, 8);
    TN_CHECK(js_PublishAsync(p->js, subj, payload, sizeof payload, NULL), "publish");
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  js_PublishAsyncComplete(p->js, &po);
  return NULL;
}

typedef struct {
  atomic_ulong ok, err;
  tn_lat lat;
  pthread_mutex_t mu;
} purge_stats;

static void on_purge(void *arg, natsMsg *reply, int64_t ns) {
  purge_stats *ps = arg;
  int code = 0;
  if (tn_api_ok(reply, &code))
    atomic_fetch_add(&ps->ok, 1);
  else
    atomic_fetch_add(&ps->err, 1);
  pthread_mutex_lock(&ps->mu);
  tn_lat_add(&ps->lat, ns);
  pthread_mutex_unlock(&ps->mu);
  natsMsg_Destroy(reply);
}

static bool g_delete;      /* purge-pub --op=delete */
static uint64_t *g_del;    /* stream index << 56 | seq of each inbox's newest entry */
static long g_ndel;
static pthread_mutex_t g_del_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_gather(void *arg, natsMsg *reply, int64_t ns) {
  uint64_t shard = (uint64_t)(uintptr_t)arg;
  if (tn_api_ok(reply, NULL)) {
    const char *v = NULL;
    if (natsMsgHeader_Get(reply, "Nats-Sequence", &v) == NATS_OK && v) {
      pthread_mutex_lock(&g_del_mu);
      g_del[g_ndel++] = strtoull(v, NULL, 10) | (shard << 56);
      pthread_mutex_unlock(&g_del_mu);
    }
  }
  natsMsg_Destroy(reply);
}

static unsigned g_seed = 2; /* --seed: which random subjects purge-pub works on */

static void gather_newest(natsConnection *nc, long subjects, long n) {
  long *ix = pick(subjects, n, g_seed + 7);
  g_del = tn_xcalloc((size_t)n, sizeof *g_del);
  tn_mux *mux = tn_mux_new(nc, 256, 30000);
  for (long k = 0; k < n; k++) {
    char subj[128], stream[32], api[200];
    subject_of(subj, sizeof subj, ix[k]);
    stream_of(stream, sizeof stream, subj);
    snprintf(api, sizeof api, "$JS.API.DIRECT.GET.%s.%s", stream, subj);
    uintptr_t shard = (uintptr_t)(g_streams == 1 ? 0 : strtol(subj + 3, NULL, 10));
    tn_mux_send(mux, api, NULL, 0, on_gather, (void *)shard);
  }
  tn_mux_drain(mux);
  tn_mux_free(mux);
  free(ix);
}

static void mode_purge_pub(const char *urls, natsConnection *nc, const tn_procs *pr,
                           long subjects, int secs, int window, int pubwindow) {
  /* The publisher gets its own connection, as another tern node would. */
  natsConnection *pnc = tn_connect(urls);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = pubwindow;
  jo.PublishAsync.AckHandler = on_pub_ack;
  jo.PublishAsync.StallWait = 60000;
  jsCtx *pjs = NULL;
  TN_CHECK(natsConnection_JetStream(&pjs, pnc, &jo), "jetstream");
  pub_thread pt = {.js = pjs, .subjects = subjects};
  purge_stats ps = {.mu = PTHREAD_MUTEX_INITIALIZER};
  if (g_delete) gather_newest(nc, subjects, subjects < 100000 ? subjects : 100000);
  tn_mux *mux = tn_mux_new(nc, window, 60000);

  double cpu0 = tn_procs_cpu_s(pr);
  int64_t t0 = tn_now_ns(), end = t0 + (int64_t)secs * 1000000000LL;
  pthread_t th;
  if (pubwindow > 0) pthread_create(&th, NULL, publisher, &pt);
  long *ix = pick(subjects, subjects < 2000000 ? subjects : 2000000, g_seed);
  long k = 0, npicked = subjects < 2000000 ? subjects : 2000000;
  while (!g_delete && tn_now_ns() < end && k < npicked) {
    char subj[128], stream[32], api[64], body[200];
    subject_of(subj, sizeof subj, ix[k++]);
    stream_of(stream, sizeof stream, subj);
    snprintf(api, sizeof api, "$JS.API.STREAM.PURGE.%s", stream);
    int len = purge_body(body, sizeof body, subj, UINT64_MAX / 2);
    tn_mux_send(mux, api, body, len, on_purge, &ps);
  }
  /* --op=delete: ack by deleting the newest entry of each inbox by its stream seq (found
   * beforehand with pipelined last-by-subject gets, not timed) instead of purging. */
  for (long j = 0; g_delete && tn_now_ns() < end && j < g_ndel; j++) {
    char api[64], body[64];
    snprintf(api, sizeof api, "$JS.API.STREAM.MSG.DELETE.IN_%d", (int)(g_del[j] >> 56));
    int len = snprintf(body, sizeof body, "{\"seq\":%" PRIu64 ",\"no_erase\":true}",
                       (uint64_t)(g_del[j] & ((UINT64_C(1) << 56) - 1)));
    tn_mux_send(mux, api, body, len, on_purge, &ps);
  }
  int64_t t_sent = tn_now_ns();
  tn_mux_drain(mux);
  atomic_store(&pt.stop, 1);
  if (pubwindow > 0) pthread_join(th, NULL);
  int64_t t1 = tn_now_ns();
  double cpu1 = tn_procs_cpu_s(pr);
  double s = (double)(t1 - t0) / 1e9;
  printf("%s-pub: window=%d pubwindow=%d secs=%.2f (sent for %.2f s)\n", g_delete ? "delete" : "purge", window,
         pubwindow, s, (double)(t_sent - t0) / 1e9);
  printf("  (op=%s)\n", g_delete ? "delete newest entry by seq" : "purge subject below a seq");
  printf("  purges ok=%lu err=%lu rate=%.0f/s timeouts=%d\n", atomic_load(&ps.ok),
         atomic_load(&ps.err), (double)atomic_load(&ps.ok) / s, tn_mux_timeouts(mux));
  tn_lat_print(&ps.lat, "  purge latency (pipelined)");
  printf("  publishes ok=%lu err=%lu rate=%.0f msg/s\n", atomic_load(&g_pub_ok),
         atomic_load(&g_pub_err), (double)atomic_load(&g_pub_ok) / s);
  if (pubwindow > 0) tn_lat_print(&g_pub_lat, "  publish->ack latency during purges (sampled)");
  printf("  server cpu=%.2fs per (purge+publish)=%.2f us\n", cpu1 - cpu0,
         (cpu1 - cpu0) / (double)(atomic_load(&ps.ok) + atomic_load(&g_pub_ok)) * 1e6);
  tn_mux_free(mux);
  free(ix);
  jsCtx_Destroy(pjs);
  natsConnection_Destroy(pnc);
}

/* ---- drain ------------------------------------------------------------------------ */

/* Reads the stream sequence that a direct get reply carries in Nats-Sequence. */
static uint64_t direct_seq(natsMsg *m) {
  const char *v = NULL;
  if (natsMsgHeader_Get(m, "Nats-Sequence", &v) != NATS_OK || !v) return 0;
  return strtoull(v, NULL, 10);
}

/* Drains `subj` from stream sequence `from` with direct gets: {"seq":S,"next_by_subj":subj}
 * on $JS.API.DIRECT.GET.<stream>, each answered by any replica (allow_direct), one request
 * per message since nats-server 2.9 has no batch direct get. Returns messages read; sets
 * *first_ns to the latency of the first and *first_seq to its stream sequence. */
static int drain_direct(natsConnection *nc, const char *stream, const char *subj, uint64_t from,
                        int64_t *first_ns, uint64_t *first_seq) {
  char api[64], body[200];
  snprintf(api, sizeof api, "$JS.API.DIRECT.GET.%s", stream);
  int n = 0;
  int64_t t0 = tn_now_ns();
  for (uint64_t seq = from;;) {
    int len = snprintf(body, sizeof body, "{\"seq\":%" PRIu64 ",\"next_by_subj\":\"%s\"}", seq, subj);
    natsMsg *r = NULL;
    TN_CHECK(natsConnection_Request(&r, nc, api, body, len, 30000), "direct get");
    if (!tn_api_ok(r, NULL)) {
      natsMsg_Destroy(r);
      break;
    }
    uint64_t s = direct_seq(r);
    if (n == 0) {
      *first_ns = tn_now_ns() - t0;
      *first_seq = s;
    }
    n++;
    natsMsg_Destroy(r);
    seq = s + 1;
  }
  return n;
}

static uint64_t header_u64(natsMsg *m, const char *key) {
  const char *v = NULL;
  if (natsMsgHeader_Get(m, key, &v) != NATS_OK || !v) return 0;
  return strtoull(v, NULL, 10);
}

/* Drains `subj` backwards: direct get last_by_subj (the server's per-subject index, no block
 * scan), then direct get by sequence for each Tern-Prev until it is 0, below `stop`, or gone.
 * Every lookup is a binary search over blocks. The node reverses the (bounded) list. */
static int drain_chain(natsConnection *nc, const char *stream, const char *subj, uint64_t stop,
                       int64_t *first_ns, uint64_t *oldest) {
  char api[200], body[64];
  snprintf(api, sizeof api, "$JS.API.DIRECT.GET.%s.%s", stream, subj);
  int64_t t0 = tn_now_ns();
  natsMsg *r = NULL;
  TN_CHECK(natsConnection_Request(&r, nc, api, NULL, 0, 30000), "last by subj");
  int n = 0;
  snprintf(api, sizeof api, "$JS.API.DIRECT.GET.%s", stream);
  while (tn_api_ok(r, NULL)) {
    n++;
    if (n == 1) *first_ns = tn_now_ns() - t0;
    if (oldest) *oldest = direct_seq(r);
    uint64_t prev = header_u64(r, "Tern-Prev");
    natsMsg_Destroy(r);
    r = NULL;
    if (prev == 0 || prev < stop) break;
    int len = snprintf(body, sizeof body, "{\"seq\":%" PRIu64 "}", prev);
    TN_CHECK(natsConnection_Request(&r, nc, api, body, len, 30000), "get by seq");
  }
  natsMsg_Destroy(r);
  return n;
}

/* The same through the leader-only $JS.API.STREAM.MSG.GET.<stream> (JSON reply, base64
 * body): what js_GetMsg uses, though js_GetMsg in 3.4.1 cannot send next_by_subj. */
static int drain_msgget(natsConnection *nc, const char *stream, const char *subj, uint64_t from,
                        int64_t *first_ns) {
  char api[64], body[200];
  snprintf(api, sizeof api, "$JS.API.STREAM.MSG.GET.%s", stream);
  int n = 0;
  int64_t t0 = tn_now_ns();
  for (uint64_t seq = from;;) {
    int len = snprintf(body, sizeof body, "{\"seq\":%" PRIu64 ",\"next_by_subj\":\"%s\"}", seq, subj);
    natsMsg *r = NULL;
    TN_CHECK(natsConnection_Request(&r, nc, api, body, len, 30000), "msg get");
    if (!tn_api_ok(r, NULL)) {
      natsMsg_Destroy(r);
      break;
    }
    const char *d = natsMsg_GetData(r);
    const char *p = strstr(d, "\"seq\":");
    uint64_t s = p ? strtoull(p + 6, NULL, 10) : 0;
    if (n == 0) *first_ns = tn_now_ns() - t0;
    n++;
    natsMsg_Destroy(r);
    if (!s) break;
    seq = s + 1;
  }
  return n;
}

/* An ordered consumer (ephemeral, flow-controlled push, R1 memory) filtered on the subject and
 * starting at `from`: js_SubscribeSync, then NextMsg until the consumer says nothing is
 * pending. Unsubscribe deletes the consumer (one more request). */
static int drain_ordered(jsCtx *js, const char *stream, const char *subj, uint64_t from,
                         int64_t *first_ns, int64_t *total_ns) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream;
  so.Ordered = true;
  so.Config.DeliverPolicy = js_DeliverByStartSequence;
  so.Config.OptStartSeq = from;
  natsSubscription *sub = NULL;
  int64_t t0 = tn_now_ns();
  TN_CHECK(js_SubscribeSync(&sub, js, subj, NULL, &so, NULL), "ordered subscribe");
  int n = 0;
  for (;;) {
    natsMsg *m = NULL;
    natsStatus s = natsSubscription_NextMsg(&m, sub, n == 0 ? 5000 : 200);
    if (s != NATS_OK) break;
    if (n == 0) *first_ns = tn_now_ns() - t0;
    n++;
    /* Stop at the last pending message: the reply subject's metadata has "pending". */
    jsMsgMetaData *meta = NULL;
    bool last = false;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
      last = meta->NumPending == 0;
      jsMsgMetaData_Destroy(meta);
    }
    natsMsg_Destroy(m);
    if (last) break;
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  *total_ns = tn_now_ns() - t0;
  return n;
}

/* Block caches (and per-block subject maps) expire after 5 s without access (filestore.go
 * defaultCacheBufferExpiration); waiting longer makes the next method start cold, as a drain
 * of an inbox written minutes ago is. */
static void let_caches_expire(void) { tn_sleep_ms(5600); }

/* Each method reads its own n subjects, starting cold (see let_caches_expire); the hint
 * methods get the inbox's first stream seq from an untimed chain walk done before the wait,
 * as a node that kept the stream seq of the last ack would know it. */
static void mode_drain(natsConnection *nc, jsCtx *js, long subjects, long n) {
  enum { CHAIN, FROM1, HINT, MSGGET, ORDERED, NM };
  static const char *name[NM] = {
      "last_by_subj + Tern-Prev chain (direct gets)", "direct get next_by_subj from seq 1",
      "direct get next_by_subj from the first seq", "STREAM.MSG.GET next_by_subj from the first seq",
      "ordered consumer from the first seq"};
  long *ix = pick(subjects, n * NM, 3);
  uint64_t *hint = tn_xcalloc((size_t)(n * NM), sizeof *hint);
  for (long k = 0; k < n * NM; k++) {
    if (k / n < HINT) continue;
    char subj[128], stream[32];
    subject_of(subj, sizeof subj, ix[k]);
    stream_of(stream, sizeof stream, subj);
    int64_t f;
    drain_chain(nc, stream, subj, 1, &f, &hint[k]);
  }
  printf("drain: %ld inboxes per method, each method starting with cold block caches\n", n);
  for (int m = 0; m < NM; m++) {
    let_caches_expire();
    tn_lat first = {0}, total = {0};
    long msgs = 0, empty = 0;
    for (long j = 0; j < n; j++) {
      long k = (long)m * n + j;
      char subj[128], stream[32];
      subject_of(subj, sizeof subj, ix[k]);
      stream_of(stream, sizeof stream, subj);
      int64_t f = 0, tot = 0, t0 = tn_now_ns();
      uint64_t fs = 0;
      int got = 0;
      if (m >= HINT && hint[k] == 0) { empty++; continue; }
      switch (m) {
      case CHAIN: got = drain_chain(nc, stream, subj, 1, &f, NULL); break;
      case FROM1: got = drain_direct(nc, stream, subj, 1, &f, &fs); break;
      case HINT: got = drain_direct(nc, stream, subj, hint[k], &f, &fs); break;
      case MSGGET: got = drain_msgget(nc, stream, subj, hint[k], &f); break;
      case ORDERED: got = drain_ordered(js, stream, subj, hint[k], &f, &tot); break;
      }
      if (m != ORDERED) tot = tn_now_ns() - t0;
      if (got == 0) { empty++; continue; }
      msgs += got;
      tn_lat_add(&first, f);
      tn_lat_add(&total, tot);
    }
    printf("  %s: %ld msgs, %ld empty inboxes skipped\n", name[m], msgs, empty);
    tn_lat_print(&first, m == CHAIN ? "    newest entry" : "    first entry");
    tn_lat_print(&total, m == ORDERED ? "    whole inbox incl. consumer create/delete" : "    whole inbox");
    tn_lat_free(&first);
    tn_lat_free(&total);
  }
  free(hint);
  free(ix);
}

/* drain-big: one inbox with `big` messages (a device offline for long), read all three ways. */
static void mode_drain_big(natsConnection *nc, jsCtx *js, int big) {
  char subj[128], stream[32];
  char user[64];
  snprintf(user, sizeof user, "big.user.%d", (int)(tn_now_ns() % 1000000));
  if (tn_inbox_subject(subj, sizeof subj, user, "d1", (unsigned)g_streams) < 0) abort();
  stream_of(stream, sizeof stream, subj);
  char payload[200];
  memset(payload, 'z', sizeof payload);
  /* Sync publishes, so each entry can carry the previous one's stream seq (Tern-Prev). */
  uint64_t prev = 0;
  for (int i = 0; i < big; i++) {
    natsMsg *m = NULL;
    TN_CHECK(natsMsg_Create(&m, subj, NULL, payload, sizeof payload), "msg");
    char v[24];
    snprintf(v, sizeof v, "%" PRIu64, prev);
    natsMsgHeader_Set(m, "Tern-Prev", v);
    jsPubAck *pa = NULL;
    TN_CHECK(js_PublishMsg(&pa, js, m, NULL, NULL), "publish");
    prev = pa->Sequence;
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
  }
  int64_t f = 0, t0;
  uint64_t fs = 0;
  let_caches_expire();
  t0 = tn_now_ns();
  int64_t fc = 0;
  int n0 = drain_chain(nc, stream, subj, 1, &fc, NULL);
  double s0 = (double)(tn_now_ns() - t0) / 1e9;
  printf("drain-big %s: last_by_subj + Tern-Prev chain: msgs=%d newest=%.3f ms rate=%.0f msg/s\n",
         subj, n0, (double)fc / 1e6, n0 / s0);
  let_caches_expire();
  t0 = tn_now_ns();
  int n1 = drain_direct(nc, stream, subj, 1, &f, &fs);
  double s1 = (double)(tn_now_ns() - t0) / 1e9;
  printf("drain-big %s: direct get chain from 1: msgs=%d first=%.3f ms rate=%.0f msg/s\n", subj,
         n1, (double)f / 1e6, n1 / s1);
  let_caches_expire();
  t0 = tn_now_ns();
  int n2 = drain_direct(nc, stream, subj, fs, &f, &fs);
  double s2 = (double)(tn_now_ns() - t0) / 1e9;
  printf("drain-big: direct get chain from first seq: msgs=%d first=%.3f ms rate=%.0f msg/s\n",
         n2, (double)f / 1e6, n2 / s2);
  let_caches_expire();
  t0 = tn_now_ns();
  int n3 = drain_msgget(nc, stream, subj, fs, &f);
  double s3 = (double)(tn_now_ns() - t0) / 1e9;
  printf("drain-big: STREAM.MSG.GET chain: msgs=%d first=%.3f ms rate=%.0f msg/s\n", n3,
         (double)f / 1e6, n3 / s3);
  int64_t tot = 0;
  let_caches_expire();
  int n4 = drain_ordered(js, stream, subj, fs, &f, &tot);
  printf("drain-big: ordered consumer: msgs=%d first=%.3f ms rate=%.0f msg/s (incl. create/delete)\n",
         n4, (double)f / 1e6, n4 / ((double)tot / 1e9));
}

/* ---- ack by deleting messages by sequence --------------------------------------- */

/* The stream seqs of every entry of `n` inboxes, found with chains (not timed). */
static uint64_t *gather_seqs(natsConnection *nc, const long *ix, long n, long *count) {
  uint64_t *seqs = tn_xmalloc((size_t)n * 4 * sizeof *seqs);
  long c = 0;
  for (long k = 0; k < n; k++) {
    char subj[128], stream[32], api[200], body[64];
    subject_of(subj, sizeof subj, ix[k]);
    stream_of(stream, sizeof stream, subj);
    snprintf(api, sizeof api, "$JS.API.DIRECT.GET.%s.%s", stream, subj);
    natsMsg *r = NULL;
    TN_CHECK(natsConnection_Request(&r, nc, api, NULL, 0, 30000), "last");
    for (int depth = 0; tn_api_ok(r, NULL) && depth < 4; depth++) {
      seqs[c++] = direct_seq(r) | ((uint64_t)(g_streams == 1 ? 0 : strtol(subj + 3, NULL, 10)) << 56);
      uint64_t prev = header_u64(r, "Tern-Prev");
      natsMsg_Destroy(r);
      r = NULL;
      if (!prev) break;
      snprintf(api, sizeof api, "$JS.API.DIRECT.GET.%s", stream);
      int len = snprintf(body, sizeof body, "{\"seq\":%" PRIu64 "}", prev);
      TN_CHECK(natsConnection_Request(&r, nc, api, body, len, 30000), "get");
    }
    natsMsg_Destroy(r);
  }
  *count = c;
  return seqs;
}

/* Deletes (no_erase) the messages of n inboxes one by one: first sequentially (latency), then
 * pipelined (throughput). The stream index rides in the top byte of each gathered seq. */
static void mode_delete(natsConnection *nc, const tn_procs *pr, long subjects, long n, int window) {
  long *ix = pick(subjects, n, 5);
  long count = 0;
  uint64_t *seqs = gather_seqs(nc, ix, n, &count);
  long nseq = count < 400 ? count / 2 : 200;
  tn_lat lat = {0};
  for (long k = 0; k < nseq; k++) {
    char api[64], body[64];
    snprintf(api, sizeof api, "$JS.API.STREAM.MSG.DELETE.IN_%d", (int)(seqs[k] >> 56));
    int len = snprintf(body, sizeof body, "{\"seq\":%" PRIu64 ",\"no_erase\":true}",
                       (uint64_t)(seqs[k] & ((UINT64_C(1) << 56) - 1)));
    int64_t t0 = tn_now_ns();
    natsMsg *r = NULL;
    TN_CHECK(natsConnection_Request(&r, nc, api, body, len, 30000), "delete");
    int code = 0;
    if (!tn_api_ok(r, &code)) printf("  delete error %d: %.*s\n", code, natsMsg_GetDataLength(r), natsMsg_GetData(r));
    tn_lat_add(&lat, tn_now_ns() - t0);
    natsMsg_Destroy(r);
  }
  tn_lat_print(&lat, "delete one message by seq (STREAM.MSG.DELETE, sequential)");
  purge_stats ps = {.mu = PTHREAD_MUTEX_INITIALIZER};
  tn_mux *mux = tn_mux_new(nc, window, 30000);
  double cpu0 = tn_procs_cpu_s(pr);
  int64_t t0 = tn_now_ns();
  for (long k = nseq; k < count; k++) {
    char api[64], body[64];
    snprintf(api, sizeof api, "$JS.API.STREAM.MSG.DELETE.IN_%d", (int)(seqs[k] >> 56));
    int len = snprintf(body, sizeof body, "{\"seq\":%" PRIu64 ",\"no_erase\":true}",
                       (uint64_t)(seqs[k] & ((UINT64_C(1) << 56) - 1)));
    tn_mux_send(mux, api, body, len, on_purge, &ps);
  }
  tn_mux_drain(mux);
  double s = (double)(tn_now_ns() - t0) / 1e9;
  double cpu = tn_procs_cpu_s(pr) - cpu0;
  printf("delete by seq pipelined (window %d): n=%ld ok=%lu err=%lu rate=%.0f/s server_cpu_per_delete=%.2f us\n",
         window, count - nseq, atomic_load(&ps.ok), atomic_load(&ps.err),
         (double)(count - nseq) / s, cpu / (double)(count - nseq) * 1e6);
  tn_lat_print(&ps.lat, "  latency (pipelined)");
  tn_mux_free(mux);
  free(seqs);
  free(ix);
}

/* ---- last by subject -------------------------------------------------------------- */

static atomic_ulong g_last_ok, g_last_nf;
static tn_lat g_last_lat;
static pthread_mutex_t g_last_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_last(void *arg, natsMsg *reply, int64_t ns) {
  if (tn_api_ok(reply, NULL))
    atomic_fetch_add(&g_last_ok, 1);
  else
    atomic_fetch_add(&g_last_nf, 1);
  pthread_mutex_lock(&g_last_mu);
  tn_lat_add(&g_last_lat, ns);
  pthread_mutex_unlock(&g_last_mu);
  natsMsg_Destroy(reply);
}

static void mode_last(natsConnection *nc, const tn_procs *pr, long subjects, long n, int window) {
  tn_lat seq = {0};
  long *ix = pick(subjects, n, 4);
  /* Sequential: the latency of one "what is the last entry of this inbox". */
  for (long k = 0; k < n && k < 2000; k++) {
    char subj[128], stream[32], api[200];
    subject_of(subj, sizeof subj, ix[k]);
    stream_of(stream, sizeof stream, subj);
    snprintf(api, sizeof api, "$JS.API.DIRECT.GET.%s.%s", stream, subj);
    int64_t t0 = tn_now_ns();
    natsMsg *r = NULL;
    TN_CHECK(natsConnection_Request(&r, nc, api, NULL, 0, 30000), "last");
    tn_lat_add(&seq, tn_now_ns() - t0);
    natsMsg_Destroy(r);
  }
  tn_lat_print(&seq, "direct get last_by_subj (sequential)");
  /* Pipelined: how many per second one connection gets. */
  tn_mux *mux = tn_mux_new(nc, window, 30000);
  double cpu0 = tn_procs_cpu_s(pr);
  int64_t t0 = tn_now_ns();
  for (long k = 0; k < n; k++) {
    char subj[128], stream[32], api[200];
    subject_of(subj, sizeof subj, ix[k]);
    stream_of(stream, sizeof stream, subj);
    snprintf(api, sizeof api, "$JS.API.DIRECT.GET.%s.%s", stream, subj);
    tn_mux_send(mux, api, NULL, 0, on_last, NULL);
  }
  tn_mux_drain(mux);
  double s = (double)(tn_now_ns() - t0) / 1e9;
  double cpu = tn_procs_cpu_s(pr) - cpu0;
  printf("direct get last_by_subj pipelined (window %d): n=%ld ok=%lu notfound=%lu rate=%.0f/s server_cpu_per_get=%.2f us\n",
         window, n, atomic_load(&g_last_ok), atomic_load(&g_last_nf), (double)n / s,
         cpu / (double)n * 1e6);
  tn_lat_print(&g_last_lat, "  latency (pipelined)");
  tn_mux_free(mux);
  free(ix);
}

int main(int argc, char **argv) {
  const char *urls = tn_arg(argc, argv, "urls", "nats://127.0.0.1:14222");
  const char *mode = tn_arg(argc, argv, "mode", "purge");
  tn_procs pr;
  tn_procs_parse(&pr, tn_arg(argc, argv, "pids", ""));
  g_streams = (int)tn_arg_long(argc, argv, "streams", 1);
  long subjects = tn_arg_long(argc, argv, "subjects", 1000000);
  long n = tn_arg_long(argc, argv, "n", 200);
  int window = (int)tn_arg_long(argc, argv, "window", 64);

  natsConnection *nc = tn_connect(urls);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 30000;
  jo.PublishAsync.MaxPending = 1024;
  jo.PublishAsync.StallWait = 30000;
  jsCtx *js = NULL;
  TN_CHECK(natsConnection_JetStream(&js, nc, &jo), "jetstream");
  printf("mode=%s subjects=%ld streams=%d urls=%s\n", mode, subjects, g_streams, urls);
  g_delete = strcmp(tn_arg(argc, argv, "op", "purge"), "delete") == 0;
  /* Runs that follow one another on the same layout need different seeds, or the second
   * purges subjects the first already emptied. */
  g_seed = (unsigned)tn_arg_long(argc, argv, "seed", 2);

  if (strcmp(mode, "purge") == 0)
    mode_purge(nc, js, subjects, n);
  else if (strcmp(mode, "purge-pub") == 0)
    mode_purge_pub(urls, nc, &pr, subjects, (int)tn_arg_long(argc, argv, "secs", 10), window,
                   (int)tn_arg_long(argc, argv, "pubwindow", 1024));
  else if (strcmp(mode, "drain") == 0)
    mode_drain(nc, js, subjects, n);
  else if (strcmp(mode, "drain-big") == 0)
    mode_drain_big(nc, js, (int)tn_arg_long(argc, argv, "big", 1000));
  else if (strcmp(mode, "delete") == 0)
    mode_delete(nc, &pr, subjects, n, window);
  else if (strcmp(mode, "last") == 0)
    mode_last(nc, &pr, subjects, n, window);
  else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  fflush(stdout);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  return 0;
}
