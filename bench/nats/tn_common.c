/* tn_common: shared helpers of the bench/nats programs (see tn_common.h). */
#define _GNU_SOURCE
#include "tn_common.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void tn_check(natsStatus s, const char *what, const char *file, int line) {
  if (s == NATS_OK) return;
  fprintf(stderr, "%s:%d: %s: %s (%s)\n", file, line, what, natsStatus_GetText(s),
          nats_GetLastError(NULL));
  exit(1);
}

void *tn_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "out of memory (%zu bytes)\n", n);
    abort();
  }
  return p;
}

void *tn_xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p) {
    fprintf(stderr, "out of memory (%zu x %zu bytes)\n", n, sz);
    abort();
  }
  return p;
}

int64_t tn_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void tn_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- /proc ------------------------------------------------------------------------ */

void tn_procs_parse(tn_procs *p, const char *list) {
  memset(p, 0, sizeof *p);
  if (!list) return;
  const char *s = list;
  while (*s && p->n < (int)(sizeof p->pid / sizeof p->pid[0])) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s) break;
    p->pid[p->n++] = (int)v;
    s = (*end == ',') ? end + 1 : end;
  }
}

/* utime+stime of one pid in clock ticks, from /proc/PID/stat fields 14 and 15. The command
 * name (field 2) is in parentheses and may hold spaces, so parse after the last ')'. */
static long long proc_ticks(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  unsigned long long ut = 0, st = 0;
  /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return 0;
  return (long long)(ut + st);
}

double tn_procs_cpu_s(const tn_procs *p) {
  long long t = 0;
  for (int i = 0; i < p->n; i++) t += proc_ticks(p->pid[i]);
  return (double)t / (double)sysconf(_SC_CLK_TCK);
}

long tn_procs_rss_kb(const tn_procs *p, int i) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", p->pid[i]);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kb;
}

long tn_procs_rss_sum_kb(const tn_procs *p) {
  long t = 0;
  for (int i = 0; i < p->n; i++) {
    long v = tn_procs_rss_kb(p, i);
    if (v > 0) t += v;
  }
  return t;
}

/* ---- latency ---------------------------------------------------------------------- */

void tn_lat_add(tn_lat *l, int64_t ns) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 1024;
    int64_t *nv = realloc(l->v, l->cap * sizeof *nv);
    if (!nv) abort();
    l->v = nv;
  }
  l->v[l->n++] = ns;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

double tn_lat_pct_ms(tn_lat *l, double pct) {
  if (l->n == 0) return 0;
  size_t i = (size_t)(pct / 100.0 * (double)(l->n - 1) + 0.5);
  return (double)l->v[i] / 1e6;
}

void tn_lat_print(tn_lat *l, const char *name) {
  qsort(l->v, l->n, sizeof *l->v, cmp_i64);
  double sum = 0;
  for (size_t i = 0; i < l->n; i++) sum += (double)l->v[i];
  printf("%s: n=%zu mean=%.3f p50=%.3f p90=%.3f p99=%.3f max=%.3f ms\n", name, l->n,
         l->n ? sum / (double)l->n / 1e6 : 0.0, tn_lat_pct_ms(l, 50), tn_lat_pct_ms(l, 90),
         tn_lat_pct_ms(l, 99), tn_lat_pct_ms(l, 100));
}

void tn_lat_free(tn_lat *l) {
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* ---- naming ------------------------------------------------------------------------ */

int tn_encode_token(char *out, size_t cap, const char *in) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
    unsigned char c = *p;
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-';
    if (keep) {
      if (o + 1 >= cap) return -1;
      out[o++] = (char)c;
    } else {
      if (o + 3 >= cap) return -1;
      out[o++] = '=';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  if (o >= cap) return -1;
  out[o] = 0;
  return (int)o;
}

unsigned tn_shard_of(const char *user, unsigned nshards) {
  uint64_t h = 1469598103934665603ULL;
  for (const unsigned char *p = (const unsigned char *)user; *p; p++) {
    h ^= *p;
    h *= 1099511628211ULL;
  }
  return nshards ? (unsigned)(h % nshards) : 0;
}

int tn_inbox_subject(char *out, size_t cap, const char *user, const char *dev, unsigned nshards) {
  char enc[256];
  if (tn_encode_token(enc, sizeof enc, user) < 0) return -1;
  int n = snprintf(out, cap, "in.%u.%s.%s", tn_shard_of(user, nshards), enc, dev);
  return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

/* ---- connections and streams ----------------------------------------------------- */

natsConnection *tn_connect(const char *urls) {
  natsOptions *o = NULL;
  natsConnection *nc = NULL;
  TN_CHECK(natsOptions_Create(&o), "options");
  /* natsOptions_SetURL in 3.4.1 takes ONE URL (no comma list, unlike the Go client): split
   * the list and hand it to natsOptions_SetServers. */
  char *copy = strdup(urls), *save = NULL;
  const char *list[16];
  int n = 0;
  for (char *t = strtok_r(copy, ",", &save); t && n < 16; t = strtok_r(NULL, ",", &save))
    list[n++] = t;
  TN_CHECK(natsOptions_SetServers(o, list, n), "servers");
  free(copy);
  /* Keep the given order: the benches choose which server each connection lands on. */
  TN_CHECK(natsOptions_SetNoRandomize(o, true), "no randomize");
  TN_CHECK(natsOptions_UseGlobalMessageDelivery(o, true), "global delivery");
  TN_CHECK(natsOptions_SetMaxPendingMsgs(o, 1000000), "max pending");
  TN_CHECK(natsOptions_SetIOBufSize(o, 256 * 1024), "io buf");
  TN_CHECK(natsOptions_SetMaxReconnect(o, -1), "reconnect");
  TN_CHECK(natsOptions_SetReconnectWait(o, 100), "reconnect wait");
  TN_CHECK(natsOptions_SetTimeout(o, 5000), "timeout");
  TN_CHECK(natsConnection_Connect(&nc, o), "connect");
  natsOptions_Destroy(o);
  return nc;
}

void tn_streams_create(jsCtx *js, int nstreams, int replicas, bool fresh) {
  for (int i = 0; i < nstreams; i++) {
    char name[32], subj[32];
    snprintf(name, sizeof name, "IN_%d", i);
    if (nstreams == 1)
      snprintf(subj, sizeof subj, "in.>");
    else
      snprintf(subj, sizeof subj, "in.%d.>", i);
    if (fresh) {
      (void)js_DeleteStream(js, name, NULL, NULL); /* absent is fine */
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = (const char *[]){subj};
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = replicas;
    cfg.AllowDirect = true;
    cfg.AllowRollup = true;
    cfg.Duplicates = 120LL * 1000000000LL; /* ns */
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, js, &cfg, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
      s = NATS_OK;
    }
    TN_CHECK(s, "add stream");
    jsStreamInfo_Destroy(si);
  }
}

/* ---- tn_mux ---------------------------------------------------------------------- */

typedef struct {
  uint64_t id;          /* request number in this slot, 0 when free */
  int64_t t0;           /* send time */
  tn_mux_cb cb;         /* completion */
  void *arg;            /* its argument */
} mux_slot;

struct tn_mux {
  natsConnection *nc;   /* borrowed */
  natsSubscription *sub; /* "<inbox>.*" */
  char prefix[64];      /* "<inbox>." */
  int window;           /* slots */
  int64_t timeout_ns;   /* a reply later than this counts as a timeout */
  mux_slot *slots;      /* window entries, indexed by id % window */
  uint64_t next_id;     /* next request number (starts at 1) */
  int inflight;         /* sent, not answered */
  int timeouts;         /* counted by tn_mux_drain's sweep */
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

static void mux_on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  tn_mux *x = closure;
  const char *subj = natsMsg_GetSubject(msg);
  uint64_t id = strtoull(subj + strlen(x->prefix), NULL, 10);
  int64_t now = tn_now_ns();
  pthread_mutex_lock(&x->mu);
  mux_slot *s = &x->slots[id % (uint64_t)x->window];
  if (s->id != id) { /* late reply to a request already timed out */
    pthread_mutex_unlock(&x->mu);
    natsMsg_Destroy(msg);
    return;
  }
  mux_slot done = *s;
  s->id = 0;
  pthread_mutex_unlock(&x->mu);
  done.cb(done.arg, msg, now - done.t0);
  pthread_mutex_lock(&x->mu);
  x->inflight--;
  pthread_cond_broadcast(&x->cv);
  pthread_mutex_unlock(&x->mu);
}

tn_mux *tn_mux_new(natsConnection *nc, int window, int64_t timeout_ms) {
  tn_mux *x = tn_xcalloc(1, sizeof *x);
  x->nc = nc;
  x->window = window;
  x->timeout_ns = timeout_ms * 1000000LL;
  x->slots = tn_xcalloc((size_t)window, sizeof *x->slots);
  x->next_id = 1;
  pthread_mutex_init(&x->mu, NULL);
  pthread_cond_init(&x->cv, NULL);
  natsInbox *inbox = NULL;
  TN_CHECK(natsInbox_Create(&inbox), "inbox");
  snprintf(x->prefix, sizeof x->prefix, "%s.", inbox);
  char wc[80];
  snprintf(wc, sizeof wc, "%s*", x->prefix);
  natsInbox_Destroy(inbox);
  TN_CHECK(natsConnection_Subscribe(&x->sub, nc, wc, mux_on_reply, x), "mux subscribe");
  TN_CHECK(natsSubscription_SetPendingLimits(x->sub, -1, -1), "mux limits");
  TN_CHECK(natsConnection_Flush(nc), "mux flush");
  return x;
}

/* Frees slots whose request is older than the timeout; their callback gets NULL. Called with
 * the lock held; drops it around callbacks. */
static void mux_sweep(tn_mux *x) {
  int64_t now = tn_now_ns();
  for (int i = 0; i < x->window; i++) {
    mux_slot *s = &x->slots[i];
    if (s->id && now - s->t0 > x->timeout_ns) {
      mux_slot done = *s;
      s->id = 0;
      x->inflight--;
      x->timeouts++;
      pthread_mutex_unlock(&x->mu);
      done.cb(done.arg, NULL, now - done.t0);
      pthread_mutex_lock(&x->mu);
    }
  }
}

static void mux_wait(tn_mux *x) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += 50 * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  if (pthread_cond_timedwait(&x->cv, &x->mu, &ts) == ETIMEDOUT) mux_sweep(x);
}

void tn_mux_begin(tn_mux *x, tn_mux_cb cb, void *arg, char reply[TN_MUX_REPLY_MAX]) {
  pthread_mutex_lock(&x->mu);
  /* The slot of the next id must be free (a slow reply can hold it even below the window). */
  while (x->inflight >= x->window || x->slots[x->next_id % (uint64_t)x->window].id != 0)
    mux_wait(x);
  uint64_t id = x->next_id++;
  mux_slot *s = &x->slots[id % (uint64_t)x->window];
  s->id = id;
  s->t0 = tn_now_ns();
  s->cb = cb;
  s->arg = arg;
  x->inflight++;
  pthread_mutex_unlock(&x->mu);
  snprintf(reply, TN_MUX_REPLY_MAX, "%s%" PRIu64, x->prefix, id);
}

void tn_mux_send(tn_mux *x, const char *subj, const void *data, int len, tn_mux_cb cb,
                 void *arg) {
  char reply[TN_MUX_REPLY_MAX];
  tn_mux_begin(x, cb, arg, reply);
  TN_CHECK(natsConnection_PublishRequest(x->nc, subj, reply, data, len), "mux publish");
}

void tn_mux_drain(tn_mux *x) {
  natsConnection_Flush(x->nc);
  pthread_mutex_lock(&x->mu);
  while (x->inflight > 0) mux_wait(x);
  pthread_mutex_unlock(&x->mu);
}

int tn_mux_timeouts(tn_mux *x) { return x->timeouts; }

void tn_mux_free(tn_mux *x) {
  if (!x) return;
  natsSubscription_Unsubscribe(x->sub);
  natsSubscription_Destroy(x->sub);
  pthread_mutex_destroy(&x->mu);
  pthread_cond_destroy(&x->cv);
  free(x->slots);
  free(x);
}

/* ---- helpers ----------------------------------------------------------------------- */

const char *tn_arg(int argc, char **argv, const char *name, const char *def) {
  size_t n = strlen(name);
  for (int i = 1; i < argc; i++)
    if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, n) == 0 &&
        argv[i][2 + n] == '=')
      return argv[i] + 3 + n;
  return def;
}

long tn_arg_long(int argc, char **argv, const char *name, long def) {
  const char *v = tn_arg(argc, argv, name, NULL);
  return v ? strtol(v, NULL, 10) : def;
}

bool tn_api_ok(natsMsg *reply, int *code) {
  if (code) *code = 0;
  if (!reply) return false;
  const char *d = natsMsg_GetData(reply);
  int len = natsMsg_GetDataLength(reply);
  /* Direct get answers carry the status in a header, not JSON. */
  const char *st = NULL;
  if (natsMsgHeader_Get(reply, "Status", &st) == NATS_OK && st) {
    if (code) *code = atoi(st);
    return false;
  }
  if (len <= 0) return true;
  const char *e = memmem(d, (size_t)len, "\"error\"", 7);
  if (!e) return true;
  if (code) {
    const char *c = memmem(e, (size_t)(d + len - e), "\"err_code\":", 11);
    *code = c ? atoi(c + 11) : -1;
  }
  return false;
}

long long tn_heap_inuse(int pprof_port) {
  char cmd[160];
  snprintf(cmd, sizeof cmd,
           "curl -fsS 'http://127.0.0.1:%d/debug/pprof/heap?debug=1&gc=1' 2>/dev/null", pprof_port);
  FILE *f = popen(cmd, "r");
  if (!f) return -1;
  char line[512];
  long long v = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "# HeapInuse = ", 14) == 0) v = atoll(line + 14);
  pclose(f);
  return v;
}
