/* tn_load: fills the inbox streams with many device subjects and measures, on the way,
 * the JetStream async publish rate, the publish→ack latency, the server CPU per stored
 * message, and the servers' RSS and Go heap at each subject-count checkpoint.
 *
 *   tn_load --urls=nats://127.0.0.1:14222 --pids=PID[,PID..] --pprof=19222[,..]
 *           --streams=1 --replicas=1 --checkpoints=10000,100000,1000000 --per=2
 *           --size=200 --window=4096 --settle=7000 [--keep=1] [--distinct=N]
 *
 * Subjects are in.<shard>.<encoded user>.d1 with user "user.NNNNNNN" (a name with a '.', so
 * the encoding is exercised). Between checkpoint c[k-1] and c[k] the new subjects get `per`
 * messages each, round-robin (subject 1, 2, ... n, then again), so one subject's messages sit
 * apart in the stream as real inbox traffic does. --distinct=N maps every message onto only
 * N subjects (a control run: same messages, few subjects), to isolate per-subject memory.
 * --keep=1 keeps existing streams (append to them); --from=N then starts at subject N. --chain=0 leaves out the Tern-Seq and
 * Tern-Prev headers (see g_last_seq).
 */
#include "tn_common.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  pthread_mutex_t mu;
  uint64_t ok, err, dup;   /* acks */
  int last_code;           /* last JetStream error code */
  char last_text[160];     /* and its text */
  tn_lat lat;              /* publish→ack, sampled 1 in 16 */
  uint64_t n;              /* acks seen, for sampling */
} load_stats;

static load_stats g_st = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Stream sequence of each subject's newest message, from its ack: the next message of that
 * inbox carries it as Tern-Prev, so a reader can walk an inbox backwards from its last entry
 * (an O(1) per-subject lookup) with gets by sequence, instead of next_by_subj scans. */
static uint64_t *g_last_seq;
static long g_nsubj;

/* The subject index is the number after "user=2E" in the encoded user token. */
static long subject_index(const char *subj) {
  const char *p = strstr(subj, "user=2E");
  return p ? strtol(p + 7, NULL, 10) : -1;
}

/* Runs on js->rsub's own delivery thread (nats.c js.c _handleAsyncReply), never on the
 * publishing thread. The library hands us the published message to destroy. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  int64_t now = tn_now_ns(), t0 = 0;
  if (natsMsg_GetDataLength(msg) >= 8) memcpy(&t0, natsMsg_GetData(msg), 8);
  pthread_mutex_lock(&g_st.mu);
  if (pa) {
    long ix = subject_index(natsMsg_GetSubject(msg));
    if (g_last_seq && ix >= 0 && ix < g_nsubj) g_last_seq[ix] = pa->Sequence;
    g_st.ok++;
    if (pa->Duplicate) g_st.dup++;
  } else {
    g_st.err++;
    g_st.last_code = pae->ErrCode;
    snprintf(g_st.last_text, sizeof g_st.last_text, "%s (%s)", pae->ErrText,
             natsStatus_GetText(pae->Err));
  }
  if ((g_st.n++ & 15) == 0 && t0) tn_lat_add(&g_st.lat, now - t0);
  pthread_mutex_unlock(&g_st.mu);
  natsMsg_Destroy(msg);
}

static void subject_of(char *out, size_t cap, long i, int nstreams) {
  char user[32];
  snprintf(user, sizeof user, "user.%07ld", i);
  if (tn_inbox_subject(out, cap, user, "d1", (unsigned)nstreams) < 0) abort();
}

static void report_mem(const char *label, const tn_procs *pr, const char *pprof) {
  printf("%s: rss_kb=", label);
  for (int i = 0; i < pr->n; i++) printf("%s%ld", i ? "," : "", tn_procs_rss_kb(pr, i));
  printf(" heap_inuse_mb=");
  const char *p = pprof;
  for (int i = 0; p && *p; i++) {
    int port = atoi(p);
    printf("%s%.1f", i ? "," : "", (double)tn_heap_inuse(port) / 1048576.0);
    p = strchr(p, ',');
    if (p) p++;
  }
  printf("\n");
  fflush(stdout);
}

int main(int argc, char **argv) {
  const char *urls = tn_arg(argc, argv, "urls", "nats://127.0.0.1:14222");
  const char *pids = tn_arg(argc, argv, "pids", "");
  const char *pprof = tn_arg(argc, argv, "pprof", "");
  int nstreams = (int)tn_arg_long(argc, argv, "streams", 1);
  int replicas = (int)tn_arg_long(argc, argv, "replicas", 1);
  const char *cps = tn_arg(argc, argv, "checkpoints", "10000,100000,1000000");
  int per = (int)tn_arg_long(argc, argv, "per", 2);
  int size = (int)tn_arg_long(argc, argv, "size", 200);
  int window = (int)tn_arg_long(argc, argv, "window", 4096);
  int settle = (int)tn_arg_long(argc, argv, "settle", 7000);
  bool keep = tn_arg_long(argc, argv, "keep", 0) != 0;
  long distinct = tn_arg_long(argc, argv, "distinct", 0);
  if (size < 8) size = 8;

  tn_procs pr;
  tn_procs_parse(&pr, pids);
  natsConnection *nc = tn_connect(urls);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = window;
  jo.PublishAsync.AckHandler = on_ack;
  jo.PublishAsync.StallWait = 30000; /* the library waits this long when the window is full */
  jo.Wait = 30000;
  jsCtx *js = NULL;
  TN_CHECK(natsConnection_JetStream(&js, nc, &jo), "jetstream");
  tn_streams_create(js, nstreams, replicas, !keep);

  printf("config: streams=%d replicas=%d per=%d size=%d window=%d distinct=%ld urls=%s\n",
         nstreams, replicas, per, size, window, distinct, urls);
  report_mem("mem.empty", &pr, pprof);

  bool chain = tn_arg_long(argc, argv, "chain", 1) != 0;
  {
    const char *last = strrchr(cps, ',');
    g_nsubj = strtol(last ? last + 1 : cps, NULL, 10);
    if (distinct > 0 && distinct < g_nsubj) g_nsubj = distinct;
    if (chain) g_last_seq = tn_xcalloc((size_t)g_nsubj, sizeof *g_last_seq);
  }
  char *payload = tn_xcalloc(1, (size_t)size);
  memset(payload + 8, 'x', (size_t)size - 8);
  long prev = tn_arg_long(argc, argv, "from", 0); /* subjects below this exist already */
  uint64_t total = 0;
  double run_cpu = 0, run_secs = 0;
  for (const char *c = cps; c && *c;) {
    long cp = strtol(c, NULL, 10);
    c = strchr(c, ',');
    if (c) c++;
    if (cp <= prev) continue;

    double cpu0 = tn_procs_cpu_s(&pr);
    int64_t t0 = tn_now_ns();
    uint64_t before_ok = g_st.ok, before_err = g_st.err;
    char subj[128];
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 120000;
    for (int r = 0; r < per; r++) {
      for (long i = prev; i < cp; i++) {
        long ix = distinct > 0 ? i % distinct : i;
        subject_of(subj, sizeof subj, ix, nstreams);
        int64_t now = tn_now_ns();
        memcpy(payload, &now, 8);
        natsMsg *m = NULL;
        TN_CHECK(natsMsg_Create(&m, subj, NULL, payload, size), "msg");
        if (chain) {
          /* What a tern inbox entry carries: the device seq, and the stream seq of the
           * inbox's previous entry (0: none). */
          char v[24];
          snprintf(v, sizeof v, "%d", r + 1);
          natsMsgHeader_Set(m, "Tern-Seq", v);
          snprintf(v, sizeof v, "%" PRIu64, g_last_seq[ix]);
          natsMsgHeader_Set(m, "Tern-Prev", v);
        }
        TN_CHECK(js_PublishMsgAsync(js, &m, NULL), "publish async");
      }
      /* Round r+1 needs round r's stream sequences for its Tern-Prev. */
      if (chain) TN_CHECK(js_PublishAsyncComplete(js, &po), "publish complete");
    }
    TN_CHECK(js_PublishAsyncComplete(js, &po), "publish complete");
    int64_t t1 = tn_now_ns();
    double cpu1 = tn_procs_cpu_s(&pr);
    uint64_t n = (uint64_t)(cp - prev) * (uint64_t)per;
    total += n;
    double secs = (double)(t1 - t0) / 1e9;
    run_cpu += cpu1 - cpu0;
    run_secs += secs;
    printf("fill %ld..%ld: msgs=%" PRIu64 " ok=%" PRIu64 " err=%" PRIu64
           " secs=%.2f rate=%.0f msg/s server_cpu=%.2fs cpu_per_msg=%.2f us (all servers)\n",
           prev, cp, n, g_st.ok - before_ok, g_st.err - before_err, secs, (double)n / secs,
           cpu1 - cpu0, (cpu1 - cpu0) / (double)n * 1e6);
    if (g_st.err) printf("  last error: code=%d %s\n", g_st.last_code, g_st.last_text);
    pthread_mutex_lock(&g_st.mu);
    tn_lat_print(&g_st.lat, "  publish->ack latency (sampled)");
    tn_lat_free(&g_st.lat);
    pthread_mutex_unlock(&g_st.mu);
    char label[64];
    snprintf(label, sizeof label, "mem.subjects=%ld.now", distinct > 0 && distinct < cp ? distinct : cp);
    report_mem(label, &pr, pprof);
    tn_sleep_ms(settle); /* block caches expire after 5 s of no access (filestore.go) */
    snprintf(label, sizeof label, "mem.subjects=%ld.settled", distinct > 0 && distinct < cp ? distinct : cp);
    report_mem(label, &pr, pprof);
    prev = cp;
  }
  printf("total: msgs=%" PRIu64 " secs=%.2f rate=%.0f msg/s cpu_per_msg=%.2f us\n", total,
         run_secs, (double)total / run_secs, run_cpu / (double)total * 1e6);

  for (int i = 0; i < nstreams; i++) {
    char name[32];
    snprintf(name, sizeof name, "IN_%d", i);
    jsStreamInfo *si = NULL;
    if (js_GetStreamInfo(&si, js, name, NULL, NULL) == NATS_OK) {
      printf("stream %s: msgs=%" PRIu64 " bytes=%" PRIu64 " subjects=%" PRId64
             " first=%" PRIu64 " last=%" PRIu64 "\n",
             name, si->State.Msgs, si->State.Bytes, si->State.NumSubjects, si->State.FirstSeq,
             si->State.LastSeq);
      jsStreamInfo_Destroy(si);
    }
  }
  free(payload);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  return 0;
}
