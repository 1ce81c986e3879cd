/* natsmedia: media bytes as chunks in a JetStream stream (natsmedia.h). */
#include "store/natsmedia.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "store/natsconn.h"

enum {
  WAIT_MS = 5000,
  OPEN_RETRY_MS = 30000,
  WINDOW = 8, /* chunks published before the first ack is awaited: 2 MiB in flight */
};

struct tern_natsmedia {
  natsConnection *nc; /* our own connection: the store's commit thread keeps its own busy */
  tern_natsconn_link link;
  jsCtx *js;
  char *ns;           /* subject prefix (namespace, bytes outside [A-Za-z0-9_-] as '_') */
  char stream[160];   /* <NS>_MEDIA */
  int replicas;
  uint8_t *buf;       /* one chunk */
  pthread_mutex_t mu; /* guards the two below: nats.c's ack thread sets them */
  natsStatus pub_err; /* first failed publish of the put in progress */
  jsErrCode pub_code;
};

/* nats.c's thread: an async publish failed (no ack, a stream error). */
static void on_pub_err(jsCtx *js, jsPubAckErr *pae, void *closure) {
  (void)js;
  tern_natsmedia *nm = closure;
  pthread_mutex_lock(&nm->mu);
  if (nm->pub_err == NATS_OK) {
    nm->pub_err = pae->Err != NATS_OK ? pae->Err : NATS_ERR;
    nm->pub_code = pae->ErrCode;
  }
  pthread_mutex_unlock(&nm->mu);
}

static int st_errno(natsStatus s, jsErrCode code) {
  if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) return -ENOENT;
  if (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_CLOSED || s == NATS_CONNECTION_DISCONNECTED ||
      s == NATS_NO_SERVER || code == JSClusterNotAvailErr || code == JSClusterNoPeersErr ||
      code == JSStreamOfflineErr)
    return -ENOTCONN;
  return -EIO;
}

static int fail(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode code) {
  const char *last = nats_GetLastError(NULL);
  snprintf(err, errlen, "nats media: %s: %s (%d)%s%s", what, natsStatus_GetText(s), (int)code, last ? ": " : "",
           last ? last : "");
  return st_errno(s, code);
}

void tern_natsmedia_close(tern_natsmedia *nm) {
  if (!nm) return;
  if (nm->js) jsCtx_Destroy(nm->js);
  tern_natsconn_close(&nm->nc, &nm->link);
  pthread_mutex_destroy(&nm->mu);
  tern_free(nm->ns);
  tern_free(nm->buf);
  tern_free(nm);
}

int tern_natsmedia_open(const char *urls, const char *ns, int replicas, tern_natsmedia **out, char *err,
                        size_t errlen) {
  if (!ns || !*ns) ns = "tern";
  tern_natsmedia *nm = TERN_NEW(tern_natsmedia);
  pthread_mutex_init(&nm->mu, NULL);
  nm->ns = tern_natsconn_stream_prefix(ns);
  snprintf(nm->stream, sizeof nm->stream, "%s_MEDIA", nm->ns);
  nm->buf = tern_malloc(TERN_NATSMEDIA_CHUNK);
  int n = 0;
  nm->link.what = "media"; /* a chunk's publish or read fails and is tried again: nothing to redo */
  int r = tern_natsconn_open(urls, WAIT_MS, &nm->link, &nm->nc, &n, err, errlen);
  if (r < 0) {
    tern_natsmedia_close(nm);
    return r;
  }
  nm->replicas = tern_natsconn_replicas(replicas, n);
  natsStatus s;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = WAIT_MS;
  jo.PublishAsync.MaxPending = WINDOW;
  jo.PublishAsync.StallWait = WAIT_MS; /* a full window waits for acks, as long as a sync publish would */
  jo.PublishAsync.ErrHandler = on_pub_err;
  jo.PublishAsync.ErrHandlerClosure = nm;
  if ((s = natsConnection_JetStream(&nm->js, nm->nc, &jo)) != NATS_OK) {
    snprintf(err, errlen, "nats media: JetStream: %s", natsStatus_GetText(s));
    tern_natsmedia_close(nm);
    return -EIO;
  }
  char subj[200];
  snprintf(subj, sizeof subj, "%s.media.>", nm->ns);
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = nm->stream;
  cfg.Subjects = (const char *[]){subj};
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = nm->replicas;
  cfg.MaxMsgsPerSubject = 1; /* a chunk stored again replaces the old copy */
  jsErrCode code = 0;
  int64_t deadline = tern_now_ms() + OPEN_RETRY_MS;
  for (;;) {
    jsStreamInfo *si = NULL;
    code = 0;
    s = js_AddStream(&si, nm->js, &cfg, NULL, &code);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK && code == JSStreamNameExistErr) s = NATS_OK;
    if (s == NATS_OK || st_errno(s, code) != -ENOTCONN || tern_now_ms() >= deadline) break;
    nats_Sleep(250); /* a cluster that just started has no meta leader for a few seconds */
  }
  if (s != NATS_OK) {
    r = fail(err, errlen, "cannot create the media stream", s, code);
    tern_natsmedia_close(nm);
    return r;
  }
  *out = nm;
  return 0;
}

static void chunk_subject(const tern_natsmedia *nm, const char *id, char part, long n, char *out, size_t cap) {
  snprintf(out, cap, "%s.media.%s.%c.%ld", nm->ns, id, part, n);
}

static ssize_t read_full(int fd, uint8_t *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

/* The ids are media ids ([a-z2-7]); anything else must never become part of a subject. */
static bool id_ok(const char *id) {
  if (!id || !*id || strlen(id) > 64) return false;
  for (const char *p = id; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) return false;
  return true;
}

/* Chunks are published asynchronously, WINDOW at most in flight (nats.c stalls the next
 * publish until an ack frees a slot), and the put returns once every ack arrived. */
int tern_natsmedia_put_file(tern_natsmedia *nm, const char *id, char part, const char *path, char *err,
                            size_t errlen) {
  if (!id_ok(id)) {
    snprintf(err, errlen, "nats media: bad media id");
    return -EINVAL;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "nats media: cannot open %s: %s", path, strerror(errno));
    return -EIO;
  }
  pthread_mutex_lock(&nm->mu);
  nm->pub_err = NATS_OK;
  nm->pub_code = 0;
  pthread_mutex_unlock(&nm->mu);
  int rc = 0;
  char subj[240];
  natsStatus s = NATS_OK;
  for (long n = 0;; n++) {
    ssize_t got = read_full(fd, nm->buf, TERN_NATSMEDIA_CHUNK);
    if (got < 0) {
      snprintf(err, errlen, "nats media: cannot read %s: %s", path, strerror(errno));
      rc = -EIO;
      break;
    }
    if (got == 0 && n > 0) break; /* an empty file still gets its one (empty) chunk */
    chunk_subject(nm, id, part, n, subj, sizeof subj);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.ExpectStream = nm->stream;
    if ((s = js_PublishAsync(nm->js, subj, nm->buf, (int)got, &po)) != NATS_OK) { /* copies the bytes */
      rc = fail(err, errlen, "publish", s, 0);
      break;
    }
    if (got < TERN_NATSMEDIA_CHUNK) break;
  }
  close(fd);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = WAIT_MS;
  s = js_PublishAsyncComplete(nm->js, &po);
  if (s != NATS_OK) {
    /* acks that never came: forget those messages, so that the next put starts clean */
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, nm->js) == NATS_OK) natsMsgList_Destroy(&pending);
    if (rc == 0) rc = fail(err, errlen, "publish (acks)", s, 0);
  }
  pthread_mutex_lock(&nm->mu);
  natsStatus pe = nm->pub_err;
  jsErrCode pc = nm->pub_code;
  pthread_mutex_unlock(&nm->mu);
  if (rc == 0 && pe != NATS_OK) rc = fail(err, errlen, "publish", pe, pc);
  return rc;
}

int tern_natsmedia_get_file(tern_natsmedia *nm, const char *id, char part, int64_t size, const char *path,
                            char *err, size_t errlen) {
  if (!id_ok(id)) {
    snprintf(err, errlen, "nats media: bad media id");
    return -EINVAL;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, errlen, "nats media: cannot create %s: %s", path, strerror(errno));
    return -EIO;
  }
  int rc = 0;
  int64_t done = 0;
  char subj[240];
  for (long n = 0; rc == 0 && (done < size || (n == 0 && size == 0)); n++) {
    chunk_subject(nm, id, part, n, subj, sizeof subj);
    natsMsg *m = NULL;
    jsErrCode code = 0;
    /* from the stream's leader: a follower may not have applied the latest chunks yet */
    natsStatus s = js_GetLastMsg(&m, nm->js, nm->stream, subj, NULL, &code);
    if (s != NATS_OK) {
      rc = fail(err, errlen, subj, s, code);
      break;
    }
    const char *d = natsMsg_GetData(m);
    int64_t len = natsMsg_GetDataLength(m);
    if (len > size - done || (len < TERN_NATSMEDIA_CHUNK && done + len < size)) {
      snprintf(err, errlen, "nats media: chunk %s has %lld bytes, not what the record's %lld need", subj,
               (long long)len, (long long)size);
      rc = -EIO;
    }
    for (int64_t off = 0; rc == 0 && off < len;) {
      ssize_t w = write(fd, d + off, (size_t)(len - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        snprintf(err, errlen, "nats media: cannot write %s: %s", path, strerror(errno));
        rc = -EIO;
        break;
      }
      off += w;
    }
    done += len;
    natsMsg_Destroy(m);
    if (size == 0) break;
  }
  if (close(fd) < 0 && rc == 0) {
    snprintf(err, errlen, "nats media: cannot write %s: %s", path, strerror(errno));
    rc = -EIO;
  }
  if (rc < 0) unlink(path);
  return rc;
}

int tern_natsmedia_purge(tern_natsmedia *nm, const char *id, char *err, size_t errlen) {
  if (!id_ok(id)) {
    snprintf(err, errlen, "nats media: bad media id");
    return -EINVAL;
  }
  char subj[240];
  snprintf(subj, sizeof subj, "%s.media.%s.>", nm->ns, id);
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Purge.Subject = subj;
  jsErrCode code = 0;
  natsStatus s = js_PurgeStream(nm->js, nm->stream, &o, &code);
  if (s == NATS_OK) return 0;
  return fail(err, errlen, "purge", s, code);
}
