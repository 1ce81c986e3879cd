/* tn_race: is "expected last subject sequence" a safe compare-and-set when two tern nodes
 * append to the same inbox at the same moment? And does a Nats-Msg-Id claim fix it?
 *
 *   tn_race --urls=URL_A --urls2=URL_B --replicas=R [--rounds=2000] [--msgid=0|1]
 *
 * Two threads, each with its own connection (to two different servers of a cluster), meet at
 * a barrier and then both publish to the same subject with the same
 * Nats-Expected-Last-Subject-Sequence (the stream seq of the subject's last message, as both
 * nodes believe it). Exactly one should be stored. With --msgid=1 each publish also carries
 * Nats-Msg-Id "<subject>#<device seq>", the claim of that device seq: the server checks
 * duplicates when it applies the message, in order, on the stream leader.
 *
 * nats-server 2.9.10 checks the expected per-subject sequence (seq > 0) in a cluster only
 * before proposing (jetstream_cluster.go processClusteredInboundMsg) and skips it when applying
 * (stream.go processJetStreamMsg: `!isClustered || seq == 0`), so two in-flight proposals can
 * both pass. This program counts how often.
 */
#include "tn_common.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  jsCtx *js;             /* this thread's context */
  pthread_barrier_t *go; /* both start together */
  int id;                /* 0 or 1 */
  const char *subj;      /* shared per round */
  uint64_t expect;       /* shared per round */
  uint64_t devseq;       /* device seq both try to claim */
  bool msgid;            /* also claim by Nats-Msg-Id */
  int ok, dup, wrong, other; /* this round's outcome */
} racer;

static void race_once(racer *r) {
  natsMsg *m = NULL;
  TN_CHECK(natsMsg_Create(&m, r->subj, NULL, "x", 1), "msg");
  jsPubOptions po;
  jsPubOptions_Init(&po);
  if (r->expect == 0)
    po.ExpectNoMessage = true;
  else
    po.ExpectLastSubjectSeq = r->expect;
  char id[160];
  if (r->msgid) {
    snprintf(id, sizeof id, "%s#%" PRIu64, r->subj, r->devseq);
    po.MsgId = id;
  }
  po.MaxWait = 10000;
  jsPubAck *pa = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_PublishMsg(&pa, r->js, m, &po, &jerr);
  r->ok = r->dup = r->wrong = r->other = 0;
  if (s == NATS_OK && pa && pa->Duplicate)
    r->dup = 1;
  else if (s == NATS_OK)
    r->ok = 1;
  else if (jerr == JSStreamWrongLastSequenceErr)
    r->wrong = 1;
  else
    r->other = 1;
  jsPubAck_Destroy(pa);
  natsMsg_Destroy(m);
}

static racer g_r[2];
static pthread_barrier_t g_start, g_done;
static int g_rounds;

static void *racer_main(void *arg) {
  racer *r = arg;
  for (int i = 0; i < g_rounds; i++) {
    pthread_barrier_wait(&g_start);
    race_once(r);
    pthread_barrier_wait(&g_done);
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *url_a = tn_arg(argc, argv, "urls", "nats://127.0.0.1:14231");
  const char *url_b = tn_arg(argc, argv, "urls2", url_a);
  int replicas = (int)tn_arg_long(argc, argv, "replicas", 3);
  g_rounds = (int)tn_arg_long(argc, argv, "rounds", 2000);
  bool msgid = tn_arg_long(argc, argv, "msgid", 0) != 0;

  natsConnection *nca = tn_connect(url_a), *ncb = tn_connect(url_b);
  jsCtx *jsa = NULL, *jsb = NULL;
  TN_CHECK(natsConnection_JetStream(&jsa, nca, NULL), "js a");
  TN_CHECK(natsConnection_JetStream(&jsb, ncb, NULL), "js b");
  const char *stream = "RACE";
  (void)js_DeleteStream(jsa, stream, NULL, NULL);
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = stream;
  cfg.Subjects = (const char *[]){"race.>"};
  cfg.SubjectsLen = 1;
  cfg.Replicas = replicas;
  cfg.AllowDirect = true;
  cfg.Duplicates = 120LL * 1000000000LL;
  jsStreamInfo *si = NULL;
  TN_CHECK(js_AddStream(&si, jsa, &cfg, NULL, NULL), "add stream");
  jsStreamInfo_Destroy(si);
  tn_sleep_ms(500);

  pthread_barrier_init(&g_start, NULL, 3);
  pthread_barrier_init(&g_done, NULL, 3);
  g_r[0] = (racer){.js = jsa, .id = 0, .msgid = msgid};
  g_r[1] = (racer){.js = jsb, .id = 1, .msgid = msgid};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, racer_main, &g_r[i]);

  /* Each subject's last stream seq and device seq, as a node that won the last round knows
   * them. 64 subjects, used in turn. */
  enum { NSUBJ = 64 };
  uint64_t last[NSUBJ] = {0}, dev[NSUBJ] = {0};
  char subj[NSUBJ][32];
  for (int i = 0; i < NSUBJ; i++) snprintf(subj[i], sizeof subj[i], "race.%d", i);
  int both = 0, one = 0, none = 0, dupd = 0, other = 0;
  int64_t t0 = tn_now_ns();
  for (int i = 0; i < g_rounds; i++) {
    int k = i % NSUBJ;
    for (int j = 0; j < 2; j++) {
      g_r[j].subj = subj[k];
      g_r[j].expect = last[k];
      g_r[j].devseq = dev[k] + 1;
    }
    pthread_barrier_wait(&g_start);
    pthread_barrier_wait(&g_done);
    int oks = g_r[0].ok + g_r[1].ok;
    if (oks == 2)
      both++;
    else if (oks == 1)
      one++;
    else
      none++;
    dupd += g_r[0].dup + g_r[1].dup;
    other += g_r[0].other + g_r[1].other;
    /* Learn the truth for the next round: the subject's real last sequence. */
    natsMsg *lm = NULL;
    char api[96];
    snprintf(api, sizeof api, "$JS.API.DIRECT.GET.%s.%s", stream, subj[k]);
    for (int tries = 0; tries < 50; tries++) {
      TN_CHECK(natsConnection_Request(&lm, nca, api, NULL, 0, 5000), "last");
      const char *v = NULL;
      uint64_t seq = 0;
      if (natsMsgHeader_Get(lm, "Nats-Sequence", &v) == NATS_OK && v) seq = strtoull(v, NULL, 10);
      natsMsg_Destroy(lm);
      lm = NULL;
      /* A direct get may be answered by a follower that has not applied the write yet: wait
       * until it shows at least what we know was acked. */
      if (seq >= last[k] + (oks > 0)) {
        last[k] = seq;
        break;
      }
      tn_sleep_ms(2);
    }
    dev[k] += 1;
  }
  double secs = (double)(tn_now_ns() - t0) / 1e9;
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);

  /* Count stored messages: with a working CAS it is the number of rounds that stored one. */
  TN_CHECK(js_GetStreamInfo(&si, jsa, stream, NULL, NULL), "info");
  printf("race replicas=%d msgid=%d rounds=%d secs=%.1f: both stored=%d one stored=%d none=%d "
         "duplicate-acks=%d other-errors=%d stream msgs=%" PRIu64 "\n",
         replicas, msgid, g_rounds, secs, both, one, none, dupd, other, si->State.Msgs);
  jsStreamInfo_Destroy(si);
  (void)js_DeleteStream(jsa, stream, NULL, NULL);
  jsCtx_Destroy(jsa);
  jsCtx_Destroy(jsb);
  natsConnection_Destroy(nca);
  natsConnection_Destroy(ncb);
  nats_Close();
  return 0;
}
