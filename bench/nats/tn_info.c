/* tn_info: waits until every inbox stream answers its info request, then prints its state and
 * the servers' RSS. Used to time recovery after a restart:
 *
 *   tn_info --urls=... --streams=S --pids=... [--expect=MSGS]
 *
 * With --expect it keeps asking until the streams together report that many messages (a
 * restarted cluster can answer before every replica has caught up).
 */
#include "tn_common.h"

#include <inttypes.h>
#include <stdio.h>

int main(int argc, char **argv) {
  const char *urls = tn_arg(argc, argv, "urls", "nats://127.0.0.1:14222");
  int nstreams = (int)tn_arg_long(argc, argv, "streams", 1);
  long expect = tn_arg_long(argc, argv, "expect", 0);
  int pprof = (int)tn_arg_long(argc, argv, "pprof", 0); /* a server's pprof port, for its heap */
  tn_procs pr;
  tn_procs_parse(&pr, tn_arg(argc, argv, "pids", ""));
  int64_t t0 = tn_now_ns();
  natsConnection *nc = tn_connect(urls);
  jsCtx *js = NULL;
  TN_CHECK(natsConnection_JetStream(&js, nc, NULL), "jetstream");
  for (int tries = 0;; tries++) {
    uint64_t msgs = 0;
    int ok = 0;
    for (int i = 0; i < nstreams; i++) {
      char name[32];
      snprintf(name, sizeof name, "IN_%d", i);
      jsStreamInfo *si = NULL;
      jsOptions o;
      jsOptions_Init(&o);
      o.Wait = 2000;
      if (js_GetStreamInfo(&si, js, name, &o, NULL) == NATS_OK) {
        ok++;
        msgs += si->State.Msgs;
        if (tries == 0 || (ok == nstreams && (expect == 0 || msgs >= (uint64_t)expect)))
          printf("stream %s: msgs=%" PRIu64 " subjects=%" PRId64 " leader=%s\n", name,
                 si->State.Msgs, si->State.NumSubjects,
                 si->Cluster && si->Cluster->Leader ? si->Cluster->Leader : "-");
        jsStreamInfo_Destroy(si);
      }
    }
    if (ok == nstreams && (expect == 0 || msgs >= (uint64_t)expect)) {
      long long heap = pprof > 0 ? tn_heap_inuse(pprof) : -1;
      printf("ready after %.2f s (from this program's start): streams=%d msgs=%" PRIu64
             " rss_kb_total=%ld heap_inuse_mb=%.1f\n",
             (double)(tn_now_ns() - t0) / 1e9, nstreams, msgs, tn_procs_rss_sum_kb(&pr),
             heap >= 0 ? (double)heap / 1048576.0 : -1.0);
      break;
    }
    if (tries > 600) {
      printf("not ready after %.1f s\n", (double)(tn_now_ns() - t0) / 1e9);
      return 1;
    }
    tn_sleep_ms(100);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  return 0;
}
