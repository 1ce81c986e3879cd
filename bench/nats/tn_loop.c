/* tn_loop: how libnats 3.4.1 behaves on a libuv loop thread, as ternd would use it. Prints
 * which thread each callback runs on, how many threads the process has after each step, and
 * what happens to a blocking call made on the loop thread.
 *
 *   tn_loop --urls=nats://127.0.0.1:14299 [--subs=1000]
 *
 * Steps, each started from a uv timer on the loop thread:
 *  1. connect with natsOptions_SetEventLoop(natsLibuv_*) + global message delivery
 *     (natsConnection_Connect blocks the caller for the TCP connect and INFO/CONNECT/PONG);
 *  2. `subs` async subscriptions on one connection with the global delivery pool, and 100 on
 *     a second connection without it: thread counts;
 *  3. a core message to ourselves: its callback thread, handed to the loop with uv_async;
 *  4. js_AddStream in the libuv threadpool (uv_queue_work), then 10 js_PublishAsync from the
 *     loop thread: which thread runs the ack handler;
 *  5. a blocking natsConnection_Request on the loop thread (times out: the loop that would
 *     read the reply is the one blocked);
 *  6. js_PublishAsync past MaxPending on the loop thread (stalls StallWait, then fails);
 *  7. the same request from the threadpool (works).
 */
#define _GNU_SOURCE
#include "tn_common.h"

#include <nats/adapters/libuv.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static uv_loop_t *g_loop;
static long g_loop_tid;
static natsConnection *g_nc, *g_nc2;
static jsCtx *g_js, *g_js_small;
static uv_timer_t g_timer;
static uv_async_t g_wake;
static int g_step;
static int g_subs = 1000;
static const char *g_urls;
static atomic_long g_cb_tid, g_ack_tid, g_acks;

static long tid(void) { return (long)syscall(SYS_gettid); }

static int threads(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "Threads:", 8) == 0) n = atoi(line + 8);
  if (f) fclose(f);
  return n;
}

static const char *who(long t) { return t == g_loop_tid ? "the loop thread" : "another thread"; }

static natsOptions *loop_opts(bool global) {
  natsOptions *o = NULL;
  TN_CHECK(natsOptions_Create(&o), "opts");
  TN_CHECK(natsOptions_SetURL(o, g_urls), "url");
  TN_CHECK(natsOptions_SetEventLoop(o, g_loop, natsLibuv_Attach, natsLibuv_Read, natsLibuv_Write,
                                    natsLibuv_Detach),
           "event loop");
  TN_CHECK(natsOptions_UseGlobalMessageDelivery(o, global), "global");
  return o;
}

/* Message callbacks run on a delivery thread (the global pool's, or the subscription's own),
 * never on the loop: hand the work over with uv_async_send, which is thread-safe. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  atomic_store(&g_cb_tid, tid());
  natsMsg_Destroy(msg);
  uv_async_send(&g_wake);
}

static void on_wake(uv_async_t *h) {
  printf("  uv_async callback (the hand-off) runs on %s\n", who(tid()));
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  atomic_store(&g_ack_tid, tid());
  atomic_fetch_add(&g_acks, 1);
  natsMsg_Destroy(msg);
}

static void noop_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  natsMsg_Destroy(msg);
}

/* ---- threadpool work ---------------------------------------------------------------- */
typedef struct {
  uv_work_t req;
  int what;       /* 0: add stream, 1: request */
  natsStatus s;   /* result */
  double ms;      /* how long it took */
} pool_job;

static void pool_run(uv_work_t *w) {
  pool_job *j = w->data;
  int64_t t0 = tn_now_ns();
  if (j->what == 0) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = "PROBE";
    cfg.Subjects = (const char *[]){"probe.js.>"};
    cfg.SubjectsLen = 1;
    cfg.Storage = js_MemoryStorage;
    jsStreamInfo *si = NULL;
    j->s = js_AddStream(&si, g_js, &cfg, NULL, NULL);
    jsStreamInfo_Destroy(si);
  } else {
    natsMsg *r = NULL;
    j->s = natsConnection_Request(&r, g_nc, "$JS.API.INFO", NULL, 0, 1000);
    natsMsg_Destroy(r);
  }
  j->ms = (double)(tn_now_ns() - t0) / 1e6;
}

static void pool_done(uv_work_t *w, int status) {
  pool_job *j = w->data;
  printf("  threadpool job %s: %s in %.1f ms (completion on %s)\n",
         j->what == 0 ? "js_AddStream" : "natsConnection_Request", natsStatus_GetText(j->s), j->ms,
         who(tid()));
  free(j);
}

static void pool(int what) {
  pool_job *j = tn_xcalloc(1, sizeof *j);
  j->what = what;
  j->req.data = j;
  uv_queue_work(g_loop, &j->req, pool_run, pool_done);
}

static void step(uv_timer_t *t) {
  g_step++;
  switch (g_step) {
  case 1: {
    printf("step 2: subscriptions\n");
    int before = threads();
    natsSubscription *s;
    char subj[64];
    for (int i = 0; i < g_subs; i++) {
      snprintf(subj, sizeof subj, "probe.dev.%d", i);
      TN_CHECK(natsConnection_Subscribe(&s, g_nc, subj, noop_cb, NULL), "sub");
    }
    int mid = threads();
    natsOptions *o = loop_opts(false);
    TN_CHECK(natsConnection_Connect(&g_nc2, o), "connect 2");
    natsOptions_Destroy(o);
    int mid2 = threads();
    for (int i = 0; i < 100; i++) {
      snprintf(subj, sizeof subj, "probe.own.%d", i);
      TN_CHECK(natsConnection_Subscribe(&s, g_nc2, subj, noop_cb, NULL), "sub 2");
    }
    printf("  %d async subs with global delivery: threads %d -> %d\n", g_subs, before, mid);
    printf("  second connection: threads %d -> %d; 100 async subs without global delivery: -> %d\n",
           mid, mid2, threads());
    break;
  }
  case 2: {
    printf("step 3: a core message to ourselves\n");
    natsSubscription *s;
    TN_CHECK(natsConnection_Subscribe(&s, g_nc, "probe.live", on_msg, NULL), "sub live");
    TN_CHECK(natsConnection_PublishString(g_nc, "probe.live", "hi"), "pub");
    break;
  }
  case 3:
    printf("  message callback ran on %s\n", who(atomic_load(&g_cb_tid)));
    printf("step 4: js_AddStream in the threadpool, then js_PublishAsync from the loop\n");
    pool(0);
    break;
  case 4:
    for (int i = 0; i < 10; i++)
      TN_CHECK(js_PublishAsync(g_js, "probe.js.a", "x", 1, NULL), "publish async");
    break;
  case 5: {
    printf("  acks=%ld; ack handler ran on %s; threads now %d\n", atomic_load(&g_acks),
           who(atomic_load(&g_ack_tid)), threads());
    printf("step 5: blocking natsConnection_Request on the loop thread (timeout 1000 ms)\n");
    int64_t t0 = tn_now_ns();
    natsMsg *r = NULL;
    natsStatus s = natsConnection_Request(&r, g_nc, "$JS.API.INFO", NULL, 0, 1000);
    printf("  -> %s after %.0f ms\n", natsStatus_GetText(s), (double)(tn_now_ns() - t0) / 1e6);
    natsMsg_Destroy(r);
    break;
  }
  case 6: {
    printf("step 6: 8 js_PublishAsync on the loop thread with MaxPending=4 (StallWait 200 ms)\n");
    int64_t t0 = tn_now_ns();
    int fails = 0;
    for (int i = 0; i < 8; i++)
      if (js_PublishAsync(g_js_small, "probe.js.b", "x", 1, NULL) != NATS_OK) fails++;
    printf("  -> %d of 8 failed (\"%s\"), the loop was blocked %.0f ms\n", fails,
           fails ? nats_GetLastError(NULL) : "", (double)(tn_now_ns() - t0) / 1e6);
    break;
  }
  case 7:
    printf("step 7: the same request from the threadpool\n");
    pool(1);
    break;
  case 9:
    uv_timer_stop(t);
    uv_close((uv_handle_t *)&g_wake, NULL);
    uv_close((uv_handle_t *)t, NULL);
    natsConnection_Close(g_nc);
    natsConnection_Close(g_nc2);
    break;
  default:
    break;
  }
  fflush(stdout);
}

int main(int argc, char **argv) {
  g_urls = tn_arg(argc, argv, "urls", "nats://127.0.0.1:14299");
  g_subs = (int)tn_arg_long(argc, argv, "subs", 1000);
  alarm(60); /* a probe that deadlocks should not hang the caller */
  g_loop = uv_default_loop();
  g_loop_tid = tid();
  natsLibuv_Init();
  natsLibuv_SetThreadLocalLoop(g_loop); /* lets the adapter tell loop-thread calls from others */
  printf("step 1: connect on the loop thread (threads before: %d)\n", threads());
  natsOptions *o = loop_opts(true);
  int64_t t0 = tn_now_ns();
  TN_CHECK(natsConnection_Connect(&g_nc, o), "connect");
  natsOptions_Destroy(o);
  printf("  natsConnection_Connect blocked the caller %.2f ms; threads after: %d\n",
         (double)(tn_now_ns() - t0) / 1e6, threads());
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.AckHandler = on_ack;
  TN_CHECK(natsConnection_JetStream(&g_js, g_nc, &jo), "js");
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = 4;
  jo.PublishAsync.AckHandler = on_ack;
  TN_CHECK(natsConnection_JetStream(&g_js_small, g_nc, &jo), "js small");
  uv_async_init(g_loop, &g_wake, on_wake);
  uv_timer_init(g_loop, &g_timer);
  uv_timer_start(&g_timer, step, 300, 300);
  uv_run(g_loop, UV_RUN_DEFAULT);
  printf("done; threads at exit: %d\n", threads());
  jsCtx_Destroy(g_js);
  jsCtx_Destroy(g_js_small);
  natsConnection_Destroy(g_nc);
  natsConnection_Destroy(g_nc2);
  return 0;
}
