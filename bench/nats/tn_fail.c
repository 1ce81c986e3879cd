/* tn_fail: what a tern node sees from an R3 stream while servers of the 3-server cluster die.
 *
 *   tn_fail --urls=URL1,URL2,URL3 --servers=bench/nats/servers [--rate=2000] [--maxwait=2000]
 *
 * Publishes asynchronously at a steady rate (each publish with jsPubOptions.MaxWait, so a lost
 * ack surfaces as a timeout in the ack handler) and prints one line per 250 ms: acks, errors
 * by kind, the worst publish→ack latency. Timeline (seconds from start):
 *   3  SIGKILL the stream leader              -> one of three down: degraded, should go on
 *   10 SIGKILL a second server                -> no quorum: writes must fail, and fast
 *      a sync js_Publish and a kvStore_Put are timed in this state, with the status and
 *      error text nats.c gives
 *   18 restart both                           -> writes come back
 *   28 stop
 * and prints the stream's replica view (what /healthz "degraded" can be built on) at each step.
 */
#include "tn_common.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_ulong g_ok, g_timeout, g_noresp, g_jserr, g_other;
static atomic_long g_max_lat_us;
static char g_last_err[200];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  int64_t t0 = 0;
  memcpy(&t0, natsMsg_GetData(msg), 8);
  long us = (long)((tn_now_ns() - t0) / 1000);
  long cur = atomic_load(&g_max_lat_us);
  while (us > cur && !atomic_compare_exchange_weak(&g_max_lat_us, &cur, us)) {
  }
  if (pa) {
    atomic_fetch_add(&g_ok, 1);
  } else {
    if (pae->Err == NATS_TIMEOUT)
      atomic_fetch_add(&g_timeout, 1);
    else if (pae->Err == NATS_NO_RESPONDERS)
      atomic_fetch_add(&g_noresp, 1);
    else if (pae->ErrCode)
      atomic_fetch_add(&g_jserr, 1);
    else
      atomic_fetch_add(&g_other, 1);
    pthread_mutex_lock(&g_mu);
    snprintf(g_last_err, sizeof g_last_err, "status=%s code=%d text=%s",
             natsStatus_GetText(pae->Err), pae->ErrCode, pae->ErrText ? pae->ErrText : "");
    pthread_mutex_unlock(&g_mu);
  }
  natsMsg_Destroy(msg);
}

static void print_replicas(jsCtx *js, const char *when) {
  jsStreamInfo *si = NULL;
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = 1500;
  int64_t t0 = tn_now_ns();
  natsStatus s = js_GetStreamInfo(&si, js, "FAIL", &o, NULL);
  if (s != NATS_OK) {
    printf("  [%s] stream info: %s (%s) after %.0f ms\n", when, natsStatus_GetText(s),
           nats_GetLastError(NULL), (double)(tn_now_ns() - t0) / 1e6);
    return;
  }
  printf("  [%s] leader=%s", when, si->Cluster && si->Cluster->Leader ? si->Cluster->Leader : "none");
  if (si->Cluster)
    for (int i = 0; i < si->Cluster->ReplicasLen; i++) {
      jsPeerInfo *p = si->Cluster->Replicas[i];
      printf(" peer=%s(current=%d offline=%d active_ms=%.0f lag=%" PRIu64 ")", p->Name, p->Current,
             p->Offline, (double)p->Active / 1e6, p->Lag);
    }
  printf("\n");
  jsStreamInfo_Destroy(si);
}

static int leader_index(jsCtx *js) {
  jsStreamInfo *si = NULL;
  int ix = 1;
  if (js_GetStreamInfo(&si, js, "FAIL", NULL, NULL) == NATS_OK) {
    if (si->Cluster && si->Cluster->Leader && si->Cluster->Leader[0] == 'n')
      ix = atoi(si->Cluster->Leader + 1);
    jsStreamInfo_Destroy(si);
  }
  return ix;
}

static void run(const char *cmd) {
  printf("  $ %s\n", cmd);
  fflush(stdout);
  if (system(cmd) != 0) printf("  (command failed)\n");
}

int main(int argc, char **argv) {
  const char *urls = tn_arg(argc, argv, "urls",
                            "nats://127.0.0.1:14231,nats://127.0.0.1:14232,nats://127.0.0.1:14233");
  const char *servers = tn_arg(argc, argv, "servers", "bench/nats/servers");
  int rate = (int)tn_arg_long(argc, argv, "rate", 2000);
  int maxwait = (int)tn_arg_long(argc, argv, "maxwait", 2000);

  natsConnection *nc = tn_connect(urls);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = 100000;
  jo.PublishAsync.AckHandler = on_ack;
  jo.Wait = 2000;
  jsCtx *js = NULL;
  TN_CHECK(natsConnection_JetStream(&js, nc, &jo), "jetstream");
  (void)js_DeleteStream(js, "FAIL", NULL, NULL);
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = "FAIL";
  cfg.Subjects = (const char *[]){"fail.>"};
  cfg.SubjectsLen = 1;
  cfg.Replicas = 3;
  cfg.AllowDirect = true;
  jsStreamInfo *si = NULL;
  TN_CHECK(js_AddStream(&si, js, &cfg, NULL, NULL), "add stream");
  jsStreamInfo_Destroy(si);
  kvConfig kc;
  kvConfig_Init(&kc);
  kc.Bucket = "tnfail";
  kc.Replicas = 3;
  kvStore *kv = NULL;
  TN_CHECK(js_CreateKeyValue(&kv, js, &kc), "kv");
  tn_sleep_ms(1000);
  print_replicas(js, "start");

  int first = 0, second = 0;
  bool k1 = false, k2 = false, back = false, probed = false;
  char payload[200];
  memset(payload, 'f', sizeof payload);
  int64_t start = tn_now_ns(), next_line = start + 250000000LL;
  int64_t gap_ns = 1000000000LL / rate, next_pub = start;
  unsigned long last_ok = 0, last_to = 0, last_nr = 0, last_js = 0, last_ot = 0;
  long sent = 0, pub_errs = 0;
  char pub_err[200] = "";
  while (1) {
    int64_t now = tn_now_ns();
    double t = (double)(now - start) / 1e9;
    if (!k1 && t >= 3) {
      first = leader_index(js);
      char cmd[300];
      snprintf(cmd, sizeof cmd, "%s kill %d", servers, first);
      printf("t=%.2f kill the stream leader n%d\n", t, first);
      run(cmd);
      k1 = true;
    }
    if (k1 && !k2 && t >= 10) {
      print_replicas(js, "one down");
      second = first % 3 + 1;
      char cmd[300];
      snprintf(cmd, sizeof cmd, "%s kill %d", servers, second);
      printf("t=%.2f kill n%d: no quorum\n", t, second);
      run(cmd);
      k2 = true;
    }
    if (k2 && !probed && t >= 12) {
      /* Sync calls in the no-quorum state: how long they take to fail, and with what. */
      natsMsg *m = NULL;
      natsMsg_Create(&m, "fail.sync", NULL, "x", 1);
      jsPubAck *pa = NULL;
      jsErrCode jerr = 0;
      int64_t a = tn_now_ns();
      natsStatus s = js_PublishMsg(&pa, js, m, NULL, &jerr);
      printf("t=%.2f no quorum: sync js_PublishMsg -> %s jerr=%d \"%s\" after %.0f ms (jsOptions.Wait=%d)\n",
             t, natsStatus_GetText(s), jerr, s == NATS_OK ? "" : nats_GetLastError(NULL),
             (double)(tn_now_ns() - a) / 1e6, 2000);
      jsPubAck_Destroy(pa);
      natsMsg_Destroy(m);
      a = tn_now_ns();
      s = kvStore_Put(NULL, kv, "k", "v", 1);
      printf("t=%.2f no quorum: kvStore_Put -> %s \"%s\" after %.0f ms\n", t, natsStatus_GetText(s),
             s == NATS_OK ? "" : nats_GetLastError(NULL), (double)(tn_now_ns() - a) / 1e6);
      a = tn_now_ns();
      kvEntry *e = NULL;
      s = kvStore_Get(&e, kv, "k");
      printf("t=%.2f no quorum: kvStore_Get -> %s after %.0f ms\n", t, natsStatus_GetText(s),
             (double)(tn_now_ns() - a) / 1e6);
      kvEntry_Destroy(e);
      print_replicas(js, "no quorum");
      probed = true;
    }
    if (k2 && !back && t >= 18) {
      char cmd[300];
      snprintf(cmd, sizeof cmd, "%s restart %d; %s restart %d", servers, first, servers, second);
      printf("t=%.2f restart n%d and n%d\n", t, first, second);
      run(cmd);
      back = true;
    }
    if (t >= 28) break;
    if (now >= next_pub) {
      int64_t ts = tn_now_ns();
      memcpy(payload, &ts, 8);
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = maxwait;
      char subj[32];
      snprintf(subj, sizeof subj, "fail.%ld", sent % 1000);
      natsStatus s = js_PublishAsync(js, subj, payload, sizeof payload, &po);
      if (s != NATS_OK) {
        pub_errs++;
        snprintf(pub_err, sizeof pub_err, "%s (%s)", natsStatus_GetText(s), nats_GetLastError(NULL));
      }
      sent++;
      next_pub += gap_ns;
      if (next_pub < now - 100000000LL) next_pub = now; /* do not burst after a stall */
    }
    if (now >= next_line) {
      unsigned long ok = atomic_load(&g_ok), to = atomic_load(&g_timeout),
                    nr = atomic_load(&g_noresp), je = atomic_load(&g_jserr), ot = atomic_load(&g_other);
      long mx = atomic_exchange(&g_max_lat_us, 0);
      pthread_mutex_lock(&g_mu);
      printf("t=%5.2f ok=%5lu timeout=%4lu noresp=%4lu jserr=%4lu other=%3lu max_ack_ms=%7.1f "
             "publish_call_errors=%ld %s%s%s\n",
             t, ok - last_ok, to - last_to, nr - last_nr, je - last_js, ot - last_ot,
             (double)mx / 1000.0, pub_errs, (to + nr + je + ot > last_to + last_nr + last_js + last_ot) ? "last=" : "",
             (to + nr + je + ot > last_to + last_nr + last_js + last_ot) ? g_last_err : "",
             pub_errs ? pub_err : "");
      pthread_mutex_unlock(&g_mu);
      fflush(stdout);
      last_ok = ok, last_to = to, last_nr = nr, last_js = je, last_ot = ot;
      pub_errs = 0;
      next_line += 250000000LL;
    }
    tn_sleep_ms(0 < gap_ns / 1000000 ? (int)(gap_ns / 1000000) : 0);
    if (gap_ns < 1000000) {
      struct timespec ts = {0, gap_ns};
      nanosleep(&ts, NULL);
    }
  }
  print_replicas(js, "end");
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 5000;
  js_PublishAsyncComplete(js, &po);
  kvStore_Destroy(kv);
  (void)js_DeleteKeyValue(js, "tnfail");
  (void)js_DeleteStream(js, "FAIL", NULL, NULL);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  return 0;
}
