/* tn_live: the cost of live delivery on core subjects, the way §6.5 of docs/cluster-layout.md
 * proposes it: one subscription per connected user (a wildcard over the user's devices) on one
 * connection with the global delivery pool, fed by the inbox stream's own RePublish.
 *
 *   tn_live --urls=... --pids=... [--users=19000] [--msgs=100000] [--window=4096]
 *
 * Prints: threads, client RSS and server RSS before and after `users` subscriptions and the
 * time to make them; then publishes `msgs` inbox entries (async, R1 stream LIVE with
 * RePublish "live.in.>" -> "ev.live.in.>"; then without it; then without it but with the
 * appender publishing the event on the core subject from its ack handler) to random subscribed
 * users, and reports publish rate, server CPU per message, and how many events arrived (and
 * their publish→event latency).
 */
#include "tn_common.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_ulong g_events;
static tn_lat g_lat;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static long self_status(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, key, n) == 0) v = strtol(line + n, NULL, 10);
  if (f) fclose(f);
  return v;
}

/* Runs on the global delivery pool's one thread (never on the caller's). */
static void on_event(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  int64_t t0 = 0;
  if (natsMsg_GetDataLength(msg) >= 8) memcpy(&t0, natsMsg_GetData(msg), 8);
  unsigned long n = atomic_fetch_add(&g_events, 1);
  if ((n & 15) == 0 && t0) {
    pthread_mutex_lock(&g_mu);
    tn_lat_add(&g_lat, tn_now_ns() - t0);
    pthread_mutex_unlock(&g_mu);
  }
  natsMsg_Destroy(msg);
}

/* With --notify (the third pass), the appender itself announces each stored entry on the core
 * subject once its ack arrives: the alternative to RePublish. Runs on the ack thread. */
static natsConnection *g_notify_nc;
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  if (pa && g_notify_nc) {
    char subj[160];
    snprintf(subj, sizeof subj, "ev.%s", natsMsg_GetSubject(msg));
    natsConnection_Publish(g_notify_nc, subj, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
  }
  natsMsg_Destroy(msg);
}

static void make_stream(jsCtx *js, bool republish) {
  (void)js_DeleteStream(js, "LIVE", NULL, NULL);
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = "LIVE";
  cfg.Subjects = (const char *[]){"live.in.>"};
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.AllowDirect = true;
  jsRePublish rp;
  if (republish) {
    jsRePublish_Init(&rp);
    rp.Source = "live.in.>";
    rp.Destination = "ev.live.in.>";
    cfg.RePublish = &rp;
  }
  jsStreamInfo *si = NULL;
  TN_CHECK(js_AddStream(&si, js, &cfg, NULL, NULL), "add stream");
  jsStreamInfo_Destroy(si);
}

static void user_token(char *out, size_t cap, long i) {
  char user[32];
  snprintf(user, sizeof user, "user.%07ld", i);
  if (tn_encode_token(out, cap, user) < 0) abort();
}

int main(int argc, char **argv) {
  const char *urls = tn_arg(argc, argv, "urls", "nats://127.0.0.1:14222");
  long users = tn_arg_long(argc, argv, "users", 19000);
  long msgs = tn_arg_long(argc, argv, "msgs", 100000);
  int window = (int)tn_arg_long(argc, argv, "window", 4096);
  tn_procs pr;
  tn_procs_parse(&pr, tn_arg(argc, argv, "pids", ""));

  natsConnection *nc = tn_connect(urls); /* global delivery pool, see tn_common.c */
  long thr0 = self_status("Threads:"), rss0 = self_status("VmRSS:");
  long srss0 = pr.n ? tn_procs_rss_kb(&pr, 0) : -1;
  int64_t t0 = tn_now_ns();
  for (long i = 0; i < users; i++) {
    char tok[64], subj[128];
    user_token(tok, sizeof tok, i);
    snprintf(subj, sizeof subj, "ev.live.in.%s.*", tok);
    natsSubscription *s = NULL;
    TN_CHECK(natsConnection_Subscribe(&s, nc, subj, on_event, NULL), "subscribe");
    /* The subscription lives until the connection closes; the handle is not needed. */
  }
  TN_CHECK(natsConnection_Flush(nc), "flush");
  double sub_ms = (double)(tn_now_ns() - t0) / 1e6;
  tn_sleep_ms(500);
  long thr1 = self_status("Threads:"), rss1 = self_status("VmRSS:");
  long srss1 = pr.n ? tn_procs_rss_kb(&pr, 0) : -1;
  printf("subscriptions: %ld per-user wildcards in %.0f ms; client threads %ld -> %ld, client RSS "
         "+%ld KiB (%.0f B each), server RSS +%ld KiB (%.0f B each)\n",
         users, sub_ms, thr0, thr1, rss1 - rss0, (double)(rss1 - rss0) * 1024.0 / (double)users,
         srss1 - srss0, (double)(srss1 - srss0) * 1024.0 / (double)users);

  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = window;
  jo.PublishAsync.AckHandler = on_ack;
  jo.PublishAsync.StallWait = 30000;
  jsCtx *js = NULL;
  TN_CHECK(natsConnection_JetStream(&js, nc, &jo), "js");
  /* The publisher is another connection, as the appending node usually is. */
  natsConnection *pnc = tn_connect(urls);
  jsCtx *pjs = NULL;
  TN_CHECK(natsConnection_JetStream(&pjs, pnc, &jo), "js pub");
  char payload[200];
  memset(payload, 'e', sizeof payload);
  /* rep 1: RePublish; rep 0: nothing (the append alone); rep -1: the appender notifies. */
  for (int rep = 1; rep >= -1; rep--) {
    make_stream(js, rep == 1);
    g_notify_nc = rep == -1 ? pnc : NULL;
    atomic_store(&g_events, 0);
    double c0 = tn_procs_cpu_s(&pr);
    int64_t a = tn_now_ns();
    unsigned r = 12345;
    for (long i = 0; i < msgs; i++) {
      char tok[64], subj[128];
      r = r * 1103515245u + 12345u;
      user_token(tok, sizeof tok, (long)(r % (unsigned)users));
      snprintf(subj, sizeof subj, "live.in.%s.d1", tok);
      int64_t now = tn_now_ns();
      memcpy(payload, &now, 8);
      TN_CHECK(js_PublishAsync(pjs, subj, payload, sizeof payload, NULL), "publish");
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    TN_CHECK(js_PublishAsyncComplete(pjs, &po), "complete");
    double secs = (double)(tn_now_ns() - a) / 1e9;
    if (rep == -1) natsConnection_Flush(pnc);
    for (int w = 0; w < 50 && rep && atomic_load(&g_events) < (unsigned long)msgs; w++) tn_sleep_ms(20);
    double cpu = tn_procs_cpu_s(&pr) - c0;
    printf("%s: %ld msgs in %.2f s (%.0f msg/s), server CPU %.2f us/msg, events received %lu\n",
           rep == 1 ? "with RePublish" : rep == 0 ? "append only" : "append + core notify from the ack", msgs, secs, (double)msgs / secs,
           cpu / (double)msgs * 1e6, atomic_load(&g_events));
    if (rep) {
      pthread_mutex_lock(&g_mu);
      tn_lat_print(&g_lat, "  publish -> event (sampled)");
      tn_lat_free(&g_lat);
      pthread_mutex_unlock(&g_mu);
    }
  }
  (void)js_DeleteStream(js, "LIVE", NULL, NULL);
  jsCtx_Destroy(pjs);
  jsCtx_Destroy(js);
  natsConnection_Destroy(pnc);
  natsConnection_Destroy(nc);
  nats_Close();
  return 0;
}
