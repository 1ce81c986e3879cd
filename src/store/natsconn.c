/* natsconn: see natsconn.h. */
#include "store/natsconn.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/log.h"

enum { MAX_URLS = 32 };

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static natsStatus lib_status = NATS_OK;
static void lib_open(void) { lib_status = nats_Open(-1); }

static void on_disconnected(natsConnection *nc, void *closure) {
  tern_natsconn_link *l = closure;
  if (natsConnection_IsClosed(nc)) return; /* nats.c says disconnected at a close too */
  TERN_WARN("nats: connection lost, reconnecting", "conn=%s", l->what);
}

/* After a reconnect nats.c has sent this connection's subscriptions again; what was published
 * to them meanwhile is gone (core NATS keeps nothing), which the owner hears through back. */
static void on_reconnected(natsConnection *nc, void *closure) {
  tern_natsconn_link *l = closure;
  char url[256] = "";
  natsConnection_GetConnectedUrl(nc, url, sizeof url);
  TERN_INFO("nats: reconnected", "conn=%s server=%s", l->what, tern_log_quote(url));
  if (l->back) l->back(l->arg);
}

static void on_closed(natsConnection *nc, void *closure) {
  tern_natsconn_link *l = closure;
  (void)nc;
  pthread_mutex_lock(&l->mu);
  l->closed = true;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

void tern_natsconn_close(natsConnection **nc, tern_natsconn_link *link) {
  if (*nc) {
    natsConnection_Close(*nc);
    pthread_mutex_lock(&link->mu);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 2;
    while (!link->closed && pthread_cond_timedwait(&link->cv, &link->mu, &t) == 0) {
    }
    pthread_mutex_unlock(&link->mu);
    natsConnection_Destroy(*nc);
    *nc = NULL;
  }
  if (link->inited) {
    pthread_mutex_destroy(&link->mu);
    pthread_cond_destroy(&link->cv);
    link->inited = false;
  }
}

int tern_natsconn_open(const char *urls, int timeout_ms, tern_natsconn_link *link, natsConnection **out,
                       int *nservers, char *err, size_t errlen) {
  *out = NULL;
  pthread_mutex_init(&link->mu, NULL);
  pthread_cond_init(&link->cv, NULL);
  link->closed = false;
  link->inited = true;
  pthread_once(&lib_once, lib_open);
  if (lib_status != NATS_OK) {
    snprintf(err, errlen, "nats: cannot initialise nats.c: %s", natsStatus_GetText(lib_status));
    return -EIO;
  }
  if (!urls || !*urls) urls = "nats://127.0.0.1:4222";
  /* nats.c 3.4.1's SetURL takes one URL, so the list is split for SetServers */
  char *copy = tern_strdup(urls), *save = NULL;
  const char *list[MAX_URLS];
  int n = 0;
  for (char *t = strtok_r(copy, ",", &save); t && n < MAX_URLS; t = strtok_r(NULL, ",", &save))
    if (*t) list[n++] = t;
  if (nservers) *nservers = n;
  natsOptions *no = NULL;
  natsStatus s = natsOptions_Create(&no);
  if (s == NATS_OK) s = natsOptions_SetServers(no, list, n);
  if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(no, true); /* no thread per subscription */
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(no, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(no, 200);
  if (s == NATS_OK) s = natsOptions_SetTimeout(no, timeout_ms);
  /* a subscriber that falls behind (a node's feed after a pause) is not cut off at 64k */
  if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(no, 1000000);
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(no, false, NULL, NULL);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(no, on_disconnected, link);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(no, on_reconnected, link);
  if (s == NATS_OK) s = natsOptions_SetClosedCB(no, on_closed, link);
  if (s == NATS_OK) s = natsConnection_Connect(out, no);
  natsOptions_Destroy(no);
  tern_free(copy);
  if (s != NATS_OK) {
    snprintf(err, errlen, "nats: cannot connect to %s: %s", urls, natsStatus_GetText(s));
    *out = NULL;
    return -ENOTCONN;
  }
  return 0;
}

int tern_natsconn_replicas(int asked, int nservers) { return asked > 0 ? asked : nservers >= 3 ? 3 : 1; }

static bool keep(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

char *tern_natsconn_stream_prefix(const char *ns) {
  char *p = tern_strdup(ns);
  for (char *q = p; *q; q++)
    if (!keep((unsigned char)*q)) *q = '_';
  return p;
}
