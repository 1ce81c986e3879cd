/* nats.c: the NATS JetStream store backend (cluster mode, `--store-backend nats`), through
 * nats.c 3.4.1. It implements the primitives of backend.h over JetStream streams and KV
 * buckets shared by every node of one namespace, and the shared-backend duties (conditional
 * writes, on_change, catch_up, the bus). docs/cluster-layout.md has the measurements behind
 * the layout, and says where this first version simplifies the plan.
 *
 * Ownership. The backend state (struct nbe) belongs to the commit thread, which may block:
 * every JetStream and KV call here is a synchronous nats.c call made on that thread, or an
 * async publish awaited on it. No call here runs on a uv loop thread, and this backend does
 * not use nats.c's libuv adapter: the NATS socket has nats.c's own threads. The watcher
 * threads (one per directory bucket, for on_change) own only their watcher and the progress
 * they publish under wmu. total() and bus_publish() may be called from any thread (nats.c
 * connections are thread-safe).
 *
 * Layout (ns = nats.namespace, NS its stream-name form; <enc x> = x with every byte outside
 * [A-Za-z0-9_-] written =XX, so a name is one subject token):
 *   stream NS_IN      "<ns>.in.<enc inbox>"     the envelopes; headers Tern-Seq (the inbox seq),
 *                                               Tern-Epoch, Tern-Gid (the group that wrote it),
 *                                               on a void Tern-Void and Tern-Was (claims_undo);
 *                                               Nats-Msg-Id "<ns>:<enc inbox>#<seq>@<epoch>"
 *   stream NS_MK      "<ns>.mk.<enc inbox>"     one marker per subject (max_msgs_per_subject 1):
 *                                               [8 last seq][8 epoch], written when an inbox
 *                                               becomes empty (so seqs are never reused) and, with
 *                                               last seq 0, when it is forgotten (the epoch is then
 *                                               the marker's own stream seq)
 *   stream NS_COMMIT  "<ns>.commit.<enc node>"  this node's commit records (below)
 *   KV NS_<bucket>    one bucket per tern_bucket (a TTL is per bucket), keys: the key's
 *                     '/'-separated parts encoded and joined with '.'; values wrapped as
 *                     [1 ver][1 flags][8 ts][8 gid][1 n][node][value]; a delete is a put
 *                     with flags=1 (a tombstone: it carries the origin node, which a KV delete
 *                     marker could not, and is read as absent)
 *   subject "<ns>.bus"                          the bus; header Tern-Node
 * One inbox stream, not the 16 shards of the layout: this version is sized for correctness and
 * the tests; sharding only changes the stream a subject maps to.
 *
 * A group. Reads go to the servers (direct gets; KV reads are remembered with their revision),
 * writes are staged in memory and read back within the group. commit():
 *   1. writes one commit record (the whole group) to NS_COMMIT: the durable intent;
 *   2. publishes the claims pipelined: every append (Nats-Msg-Id claim of its seq, and the
 *      first of each inbox with Nats-Expected-Last-Subject-Sequence), and every write of a key
 *      the group read (expected last subject seq = the revision read, or none);
 *   3. if a claim lost (another node wrote first), deletes what it claimed, restores the keys it
 *      overwrote, deletes the record and answers -EAGAIN (the committer applies the group again);
 *   4. else marks the record "claimed" and publishes the rest (plain puts, markers, purges);
 *   5. deletes the record.
 * A node that dies in between leaves the record; at open (and before its next group) it replays
 * it: with the "claimed" mark it rolls forward (step 4 is idempotent), without it rolls back the
 * claims that are its own (entries and keys carrying its gid). Nobody was told "stored" before
 * step 5, so both directions keep a group all or nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <sodium.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/map.h"
#include "base/util.h"
#include "store/backend.h"
#include "store/natsconn.h"

enum {
  VAL_VERSION = 1,
  REC_VERSION = 1,
  WAIT_MS = 2000,        /* every JetStream request and async publish: a lost ack is a timeout */
  OPEN_RETRY_MS = 30000, /* how long the open waits for JetStream to be ready (open_retry) */
  WINDOW = 1024,         /* our own window of async publishes in flight (layout §8) */
  MAX_PENDING = 4 * WINDOW, /* nats.c's, above ours, so js_PublishMsgAsync never stalls */
  DUP_WINDOW_S = 120,    /* JetStream duplicate window of NS_IN and NS_COMMIT */
  KEY_MAX = 1024,
  SERIAL_CLAIMS_MAX = 8, /* claims_run: a contended group up to this size claims one at a time */
  CLAIM_RETRIES = 8,     /* claims_retry: rounds for claims a leaderless stream did not store */
};

/* Directory buckets are watched for on_change. */
static bool bucket_is_dir(int b) {
  return b == TERN_BUCKET_USERS || b == TERN_BUCKET_DEVICES || b == TERN_BUCKET_RECORDS;
}

/* Bucket name suffixes; a bucket added to tern_bucket later gets "b<n>" until named here. */
static const char *const bucket_names[TERN_BUCKET__COUNT] = {
    [TERN_BUCKET_USERS] = "users",   [TERN_BUCKET_DEVICES] = "devices", [TERN_BUCKET_DEDUP] = "dedup",
    [TERN_BUCKET_TOKENS] = "tokens", [TERN_BUCKET_RECORDS] = "records", [TERN_BUCKET_BODIES] = "bodies",
};

/* ---- state --------------------------------------------------------------------------------- */

/* An inbox as this group sees it. */
typedef struct ginbox {
  bool loaded;        /* read from the servers in this group */
  bool asked;         /* named to n_prefetch in this group (loaded by it, or left to inbox_of) */
  bool exists;        /* appended to and not forgotten */
  uint64_t first, next; /* the group's view, its own writes included */
  uint64_t base_next; /* next seq on the servers when loaded */
  uint64_t last_sseq; /* stream seq of the subject's last entry when loaded (0: empty) */
  uint64_t first_sseq;/* stream seq of its first entry (0: unknown) */
  bool last_lost;     /* the server's last-by-subject answers "none" though entries remain
                         (inbox_load): its expected-last-subject check then compares with 0 */
  uint64_t epoch;     /* msg-id epoch (changes when the inbox is forgotten) */
  tern_buf apps;      /* staged appends: [4 len][bytes]..., seqs base_next.. */
  size_t napps;
  uint64_t purge_upto;/* highest seq the group purged (0: none) */
  uint64_t purge_sseq;/* stream seq bound of that purge among stored entries (0: unknown) */
  bool forgot;        /* the group forgot it */
  uint64_t *erased;   /* seqs erase() removed in this group (reads skip them) */
  uint64_t *erased_sseq; /* their stream seqs, deleted at the commit */
  size_t nerased;
  uint64_t *ss_seq, *ss_sseq; /* seq → stream seq learned by reads */
  size_t nss, ss_cap;
  size_t nlen;
  char name[];
} ginbox;

/* A KV key the group read or wrote. */
typedef struct gkv {
  int b;
  bool read;          /* read from the servers: a write of it is conditional */
  uint64_t rev;       /* its revision then (0: no entry) */
  tern_buf old;       /* the stored bytes then (wrapped; for a rollback) */
  bool old_live;      /* old held a live value */
  int w;              /* 0 none, 1 put, 2 delete */
  int pf;             /* n_prefetch loaded old and rev, not yet read: 1 an entry, 2 none */
  uint64_t rec;       /* the commit record the entry read names (Tern-Rec), 0: none or done */
  int64_t rec_at;
  int64_t ts;
  tern_buf val;       /* the value written */
  size_t klen;
  char key[];
} gkv;

typedef struct prefix_del {
  int b;
  char *p;
  size_t n;
} prefix_del;

/* One async publish's outcome. */
typedef struct slot {
  int state;          /* 0 pending, 1 acked, 2 failed */
  uint64_t seq;
  bool dup;
  natsStatus err;
  jsErrCode code;
} slot;

typedef struct watcher {
  struct nbe *be;
  int b;
  pthread_t th;
  kvWatcher *w;
} watcher;

typedef struct nbe {
  tern_backend_options opts;
  char *ns;          /* subject prefix */
  char *NS;          /* stream-name prefix */
  char *node;        /* this node */
  char *node_enc;
  int replicas;
  natsConnection *nc;
  tern_natsconn_link link; /* its reconnects: events of that time may be lost (on_relinked) */
  jsCtx *js;
  kvStore *kv[TERN_BUCKET__COUNT];
  char *kvname[TERN_BUCKET__COUNT]; /* bucket (stream KV_<name>) */
  char s_in[96], s_mk[96], s_commit[96]; /* stream names */
  natsSubscription *bus_sub;
  natsSubscription *ev_sub;   /* "<ns>.ev.>": other nodes' envelopes */
  /* async publishes */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  slot *slots;
  size_t nslots, slots_cap, pending;
  /* watchers (on_change, catch_up) */
  watcher watch[TERN_BUCKET__COUNT];
  pthread_mutex_t wmu;
  pthread_cond_t wcv;
  uint64_t wseen[TERN_BUCKET__COUNT]; /* highest revision each watcher raised or skipped */
  bool winit[TERN_BUCKET__COUNT];     /* its initial values are done */
  atomic_bool stop;
  /* the commit thread's */
  uint64_t gid_base, gid_next, gid;  /* this group's id */
  tern_map inboxes;  /* name → ginbox* (this group) */
  tern_map kvs;      /* [b][key] → gkv* (this group) */
  prefix_del *pdels;
  size_t npdels, pdel_cap;
  tern_map burned;   /* msg id → bump (claims freed by a rollback; see claim_id) */
  bool failed;
  char why[256];
  bool replay_due;   /* a commit left its record: replay before the next */
  int64_t idle_warned_ms; /* n_idle: when a failed replay was last logged */
  unsigned contended; /* lost races in a row (claims_run goes serial; n_commit backs off) */
  uint64_t consumers_off_until; /* mono ns: long reads walk by direct gets until then */
  /* the reader rule (entry_settled) */
  uint64_t rec_cur;  /* the commit record of the group being claimed (0: none): its appends name it */
  bool settle;       /* a read_settled is walking */
  bool unsettled;    /* it stopped before an entry whose commit record is still there */
  uint64_t gone[64]; /* commit records seen deleted, newest at gone_pos - 1 */
  unsigned gone_pos;
  uint64_t done_recs[16]; /* records of groups that finished but could not be deleted: a replay */
  size_t ndone;           /* only deletes them (unmarked, it would roll them back) */
  int64_t unsettled_warned; /* ms: the last "entry older than unsettled_ms" warning */
  int64_t unsettled_ms;      /* a record older than this is another node's to roll (foreign_run) */
  uint64_t foreign[8];       /* records entry_settled found abandoned, replayed by foreign_run */
  size_t nforeign;
  tern_buf sbuf, sbuf2, rec;
  /* n_prefetch: the replies' subscription, "<pf_prefix>.>" (a sync one: no delivery thread) */
  natsSubscription *pf_sub;
  char pf_prefix[64];
  uint64_t pf_round;
  tern_buf pf_req;
  /* inbox_next */
  char **walk;
  size_t nwalk, walk_pos;
  bool walk_loaded;
  int crash_at;      /* test hook: SIGKILL at a commit step (1 after claims, 2 after the mark) */
  int mark_pause_ms; /* test hook: the next mark waits this long after its claims (once) */
  int lose_ack;      /* test hook: the next group's claim of this number (from 1) reads as timed out */
  /* health (/healthz): the poller thread's last finding, and the commits' */
  pthread_t health_th;
  bool health_started;
  pthread_mutex_t hmu;
  pthread_cond_t hcv;
  int health;        /* 0 ok, 1 degraded, 2 unavailable */
  char health_why[200];
  atomic_bool commit_unavail; /* the last commit found no quorum */
} nbe;

/* ---- names --------------------------------------------------------------------------------- */

static const char hexd[] = "0123456789ABCDEF";

static bool tok_keep(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* A name as one subject token: bytes outside [A-Za-z0-9_-] as =XX (injective). */
static void enc_token(tern_buf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (tok_keep(c)) {
      tern_buf_putc(b, (char)c);
    } else {
      tern_buf_putc(b, '=');
      tern_buf_putc(b, hexd[c >> 4]);
      tern_buf_putc(b, hexd[c & 15]);
    }
  }
}

/* A KV key: its '/'-separated parts as tokens joined by '.', so that a prefix ending in '/' is a
 * subject wildcard. '_' is escaped too, and an empty part is "_". */
static void enc_key(tern_buf *b, const char *s, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != '/') continue;
    if (start) tern_buf_putc(b, '.');
    if (i == start) tern_buf_putc(b, '_');
    for (size_t j = start; j < i; j++) {
      unsigned char c = (unsigned char)s[j];
      if (tok_keep(c) && c != '_') {
        tern_buf_putc(b, (char)c);
      } else {
        tern_buf_putc(b, '=');
        tern_buf_putc(b, hexd[c >> 4]);
        tern_buf_putc(b, hexd[c & 15]);
      }
    }
    start = i + 1;
  }
}

static int hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void dec_key(tern_buf *b, const char *s, size_t n) {
  tern_buf_reset(b);
  size_t i = 0;
  while (i < n) {
    if (s[i] == '.') {
      tern_buf_putc(b, '/');
      i++;
    } else if (s[i] == '_' && (i + 1 == n || s[i + 1] == '.')) {
      i++;
    } else if (s[i] == '=' && i + 2 < n && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
      tern_buf_putc(b, (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2])));
      i += 3;
    } else {
      tern_buf_putc(b, s[i++]);
    }
  }
}

static void dec_token(tern_buf *b, const char *s, size_t n) {
  tern_buf_reset(b);
  for (size_t i = 0; i < n;) {
    if (s[i] == '=' && i + 2 < n && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
      tern_buf_putc(b, (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2])));
      i += 3;
    } else {
      tern_buf_putc(b, s[i++]);
    }
  }
}

static const char *subj_in(nbe *be, tern_buf *b, const char *name, size_t n) {
  tern_buf_reset(b);
  tern_buf_printf(b, "%s.in.", be->ns);
  enc_token(b, name, n);
  return tern_buf_cstr(b);
}

static const char *subj_mk(nbe *be, tern_buf *b, const char *name, size_t n) {
  tern_buf_reset(b);
  tern_buf_printf(b, "%s.mk.", be->ns);
  enc_token(b, name, n);
  return tern_buf_cstr(b);
}

static const char *subj_kv(nbe *be, tern_buf *b, int bk, const char *key, size_t n) {
  tern_buf_reset(b);
  tern_buf_printf(b, "$KV.%s.", be->kvname[bk]);
  enc_key(b, key, n);
  return tern_buf_cstr(b);
}

/* ---- errors -------------------------------------------------------------------------------- */

/* A nats.c status as a negative errno: the ones that mean "cannot reach a quorum" are
 * -ENOTCONN (the committer answers TERN_STORE_UNAVAILABLE). */
static int st_errno(natsStatus s, jsErrCode code) {
  switch (s) {
  case NATS_OK: return 0;
  case NATS_NOT_FOUND: return -ENOENT;
  case NATS_TIMEOUT:
  case NATS_NO_RESPONDERS:
  case NATS_CONNECTION_CLOSED:
  case NATS_CONNECTION_DISCONNECTED:
  case NATS_NO_SERVER:
  case NATS_STALE_CONNECTION:
  case NATS_NOT_YET_CONNECTED: return -ENOTCONN;
  default:
    /* nats.c reports no responders of a leaderless stream as "JetStream not enabled" (layout
     * pitfall 8). */
    if (code == JSNotEnabledErr || code == JSClusterNotAvailErr || code == JSStreamOfflineErr) return -ENOTCONN;
    return -EIO;
  }
}

static void fail(nbe *be, const char *what, natsStatus s, jsErrCode code) {
  if (be->failed) return;
  be->failed = true;
  const char *last = nats_GetLastError(NULL);
  snprintf(be->why, sizeof be->why, "%s: %s%s%s (js %d)", what, natsStatus_GetText(s), last ? ": " : "", last ? last : "",
           (int)code);
}

static void failf(nbe *be, const char *what) {
  if (be->failed) return;
  be->failed = true;
  snprintf(be->why, sizeof be->why, "%s", what);
}

/* ---- async publishes, awaited on the commit thread ----------------------------------------- */

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  nbe *be = closure;
  const char *sl = NULL;
  if (natsMsgHeader_Get(msg, "Tern-Slot", &sl) == NATS_OK && sl) {
    size_t i = (size_t)strtoull(sl, NULL, 10);
    pthread_mutex_lock(&be->mu);
    if (i < be->nslots && be->slots[i].state == 0) {
      slot *s = &be->slots[i];
      if (pa) {
        s->state = 1;
        s->seq = pa->Sequence;
        s->dup = pa->Duplicate;
      } else {
        s->state = 2;
        s->err = pae ? pae->Err : NATS_ERR;
        s->code = pae ? pae->ErrCode : 0;
      }
      be->pending--;
      pthread_cond_broadcast(&be->cv);
    }
    pthread_mutex_unlock(&be->mu);
  }
  natsMsg_Destroy(msg);
}

static void slots_reset(nbe *be) {
  pthread_mutex_lock(&be->mu);
  be->nslots = 0;
  be->pending = 0;
  pthread_mutex_unlock(&be->mu);
}

/* Waits until at most `left` publishes are in flight. */
static void slots_wait(nbe *be, size_t left) {
  pthread_mutex_lock(&be->mu);
  while (be->pending > left) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 1;
    pthread_cond_timedwait(&be->cv, &be->mu, &t);
  }
  pthread_mutex_unlock(&be->mu);
}

/* Publishes msg (consumed) asynchronously; returns its slot, or -1 when the publish could not
 * even be queued (that slot is marked failed with the status). */
static long pub_async(nbe *be, natsMsg *msg, const jsPubOptions *po) {
  slots_wait(be, WINDOW - 1);
  pthread_mutex_lock(&be->mu);
  if (be->nslots == be->slots_cap) {
    be->slots_cap = be->slots_cap ? be->slots_cap * 2 : 64;
    be->slots = tern_realloc(be->slots, be->slots_cap * sizeof *be->slots);
  }
  size_t i = be->nslots++;
  memset(&be->slots[i], 0, sizeof be->slots[i]);
  be->pending++;
  pthread_mutex_unlock(&be->mu);
  char sl[24];
  snprintf(sl, sizeof sl, "%zu", i);
  natsMsgHeader_Set(msg, "Tern-Slot", sl);
  jsPubOptions o;
  if (po) o = *po;
  else jsPubOptions_Init(&o);
  o.MaxWait = WAIT_MS;
  natsStatus s = js_PublishMsgAsync(be->js, &msg, &o);
  if (s != NATS_OK) {
    natsMsg_Destroy(msg);
    pthread_mutex_lock(&be->mu);
    be->slots[i].state = 2;
    be->slots[i].err = s;
    be->pending--;
    pthread_mutex_unlock(&be->mu);
  }
  return (long)i;
}

static slot slot_get(nbe *be, long i) {
  pthread_mutex_lock(&be->mu);
  slot s = be->slots[i];
  pthread_mutex_unlock(&be->mu);
  return s;
}

/* ---- small helpers ------------------------------------------------------------------------- */

static uint64_t hdr_u64(natsMsg *m, const char *h, bool *ok) {
  const char *v = NULL;
  if (natsMsgHeader_Get(m, h, &v) != NATS_OK || !v) {
    if (ok) *ok = false;
    return 0;
  }
  if (ok) *ok = true;
  return strtoull(v, NULL, 10);
}

/* A void entry holds the seq of an append that was undone (claims_undo): never read. */
static bool is_void(natsMsg *m) {
  const char *v = NULL;
  return natsMsgHeader_Get(m, "Tern-Void", &v) == NATS_OK && v;
}

static void hdr_set_u64(natsMsg *m, const char *h, uint64_t v) {
  char b[24];
  snprintf(b, sizeof b, "%" PRIu64, v);
  natsMsgHeader_Set(m, h, b);
}

/* A direct get: 1 with *out, 0 when there is no such message, or a negative errno. */
static int dget(nbe *be, const char *stream, uint64_t seq, const char *next_subj, const char *last_subj, natsMsg **out) {
  jsDirectGetMsgOptions o;
  jsDirectGetMsgOptions_Init(&o);
  o.Sequence = seq;
  o.NextBySubject = next_subj;
  o.LastBySubject = last_subj;
  *out = NULL;
  natsStatus s = js_DirectGetMsg(out, be->js, stream, NULL, &o);
  if (s == NATS_OK) return 1;
  if (s == NATS_NOT_FOUND) return 0;
  fail(be, "direct get", s, 0);
  return st_errno(s, 0);
}

/* The last message of a subject from the stream's leader: a direct get may be answered by a
 * follower that has not applied the latest writes yet (layout pitfall 10), and what a write is
 * conditioned on must be current. 1 with *out, 0 when the subject is empty. */
static int lget(nbe *be, const char *stream, const char *subj, natsMsg **out) {
  jsErrCode code = 0;
  *out = NULL;
  natsStatus s = js_GetLastMsg(out, be->js, stream, subj, NULL, &code);
  if (s == NATS_OK) return 1;
  if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) return 0;
  fail(be, "get last", s, code);
  return st_errno(s, code);
}

/* A $JS.API.STREAM.MSG.GET reply: 1 with *out (a message with the stored data and headers,
 * named subj) and *sseq its stream seq, 0 for "no message", -ENOTCONN when the stream has no
 * leader (503), or -EIO for a reply it cannot read. Fails nothing: the caller decides. */
static int msg_get_reply(natsMsg *resp, const char *subj, natsMsg **out, uint64_t *sseq) {
  *out = NULL;
  *sseq = 0;
  cJSON *j = cJSON_ParseWithLength(natsMsg_GetData(resp), (size_t)natsMsg_GetDataLength(resp));
  int rc = -EIO;
  cJSON *e = j ? cJSON_GetObjectItem(j, "error") : NULL;
  cJSON *m = j ? cJSON_GetObjectItem(j, "message") : NULL;
  if (e) {
    cJSON *code = cJSON_GetObjectItem(e, "code");
    if (cJSON_IsNumber(code) && code->valueint == 404) rc = 0;
    else if (cJSON_IsNumber(code) && code->valueint == 503) rc = -ENOTCONN;
  } else if (m) {
    cJSON *sq = cJSON_GetObjectItem(m, "seq"), *hd = cJSON_GetObjectItem(m, "hdrs"), *dt = cJSON_GetObjectItem(m, "data");
    const char *d64 = cJSON_IsString(dt) ? dt->valuestring : "";
    size_t dl = strlen(d64), hl = cJSON_IsString(hd) ? strlen(hd->valuestring) : 0;
    uint8_t *data = tern_malloc(dl + 1), *hdr = tern_malloc(hl + 1);
    size_t dn = 0, hn = 0;
    if (sodium_base642bin(data, dl + 1, d64, dl, NULL, &dn, NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
        (!hl || sodium_base642bin(hdr, hl + 1, hd->valuestring, hl, NULL, &hn, NULL, sodium_base64_VARIANT_ORIGINAL) == 0) &&
        natsMsg_Create(out, subj, NULL, (const char *)data, (int)dn) == NATS_OK) {
      *sseq = cJSON_IsNumber(sq) ? (uint64_t)sq->valuedouble : 0;
      /* "NATS/1.0\r\nKey: value\r\n...\r\n" */
      hdr[hn] = 0;
      char *save = NULL;
      char *line = strtok_r((char *)hdr, "\r\n", &save);
      for (line = line ? strtok_r(NULL, "\r\n", &save) : NULL; line; line = strtok_r(NULL, "\r\n", &save)) {
        char *c = strchr(line, ':');
        if (!c) continue;
        *c++ = 0;
        while (*c == ' ') c++;
        natsMsgHeader_Set(*out, line, c);
      }
      rc = 1;
    }
    tern_free(data);
    tern_free(hdr);
  }
  cJSON_Delete(j);
  return rc;
}

/* A $JS.API.STREAM.MSG.GET request: the last message of subj (seq 0), or the first of subj at
 * or after stream seq `seq` (next_by_subj, which nats.c 3.4.1's js_GetMsg cannot send: layout
 * pitfall 14). Answered by the stream's leader. */
static void msg_get_request(tern_buf *req, uint64_t seq, const char *subj) {
  tern_buf_reset(req);
  if (seq) tern_buf_printf(req, "{\"seq\":%" PRIu64 ",\"next_by_subj\":", seq);
  else tern_buf_puts(req, "{\"last_by_subj\":");
  tern_buf_put_json_str(req, subj, strlen(subj));
  tern_buf_putc(req, '}');
}

/* The first message of subj at or after stream seq `seq`, from the stream's leader. *out is a
 * message with the stored data and headers, *sseq its stream seq. 1, 0 when there is none, or
 * a negative errno. */
static int lnext(nbe *be, const char *stream, uint64_t seq, const char *subj, natsMsg **out, uint64_t *sseq) {
  *out = NULL;
  *sseq = 0;
  char api[200];
  snprintf(api, sizeof api, "$JS.API.STREAM.MSG.GET.%s", stream);
  tern_buf req = {0};
  msg_get_request(&req, seq, subj);
  natsMsg *resp = NULL;
  natsStatus s = natsConnection_Request(&resp, be->nc, api, req.data, (int)req.len, WAIT_MS);
  tern_buf_free(&req);
  if (s != NATS_OK) {
    fail(be, "get next", s, 0);
    return st_errno(s, 0);
  }
  int rc = msg_get_reply(resp, subj, out, sseq);
  natsMsg_Destroy(resp);
  if (rc == -ENOTCONN) failf(be, "get next: error from the server");
  else if (rc < 0) failf(be, "get next: a bad reply");
  return rc;
}

/* Is the message at stream seq `seq` there, asked of the stream's leader? 1, 0, or a negative
 * errno. */
static int lhas(nbe *be, const char *stream, uint64_t seq) {
  natsMsg *m = NULL;
  jsErrCode code = 0;
  natsStatus s = js_GetMsg(&m, be->js, stream, seq, NULL, &code);
  if (m) natsMsg_Destroy(m);
  if (s == NATS_OK) return 1;
  if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) return 0;
  fail(be, "get", s, code);
  return st_errno(s, code);
}

/* The reader rule. A group's appends are readable from their claims on, but the group may
 * still lose a race and be undone (claims_undo), or its node may die before it is done; a
 * drain on another node that delivered such an entry delivered it twice when the group ran
 * again (tern-bench --peers random on 2 nodes: up to ~70 messages and ~40 receipts twice).
 * So an entry whose group has a commit record names it (Tern-Rec "<record seq>:<ms>"), and a
 * delivery read stops before an entry whose record is still there: the group is not done.
 * The record is deleted last, after an undo has deleted the entry, so an entry still there
 * after its record is gone stays. A record seen gone is remembered (entries read later are
 * settled without asking).
 * An entry whose record is older than unsettled_ms (10 s: past a group's longest honest wait,
 * the claims' retry while a stream elects a leader, about 5 s) belongs to a group whose node
 * died mid-commit or cannot finish it: this node rolls that record back or forward itself
 * (foreign_run, before its next group), and the read after that finds the entry gone or
 * settled. Before, such an entry was delivered as it was, and the client's resend of an
 * unmarked group through another node was delivered too: twice, under two msg_ids. Only if
 * that replay keeps failing is the entry delivered as it is, at 6 × unsettled_ms (late beats
 * never, and a warning says so). A claimed de-dup key names its record too (n_kv_get). */
static void foreign_queue(nbe *be, uint64_t rec) {
  for (size_t i = 0; i < be->nforeign; i++)
    if (be->foreign[i] == rec) return;
  if (be->nforeign < TERN_ARRAY_LEN(be->foreign)) be->foreign[be->nforeign++] = rec;
}

/* The record a message names (Tern-Rec "<record seq>:<ms>"): its seq, or 0; *at its time. */
static uint64_t rec_named(natsMsg *m, int64_t *at) {
  const char *v = NULL;
  *at = 0;
  if (natsMsgHeader_Get(m, "Tern-Rec", &v) != NATS_OK || !v) return 0;
  char *end = NULL;
  uint64_t rec = strtoull(v, &end, 10);
  *at = end && *end == ':' ? strtoll(end + 1, NULL, 10) : 0;
  return rec;
}

/* Is the group of record rec (written at ms `at`) done? 1 yes (known before), 3 yes (its record
 * found gone now), 2 not yet, or a negative errno. */
static int rec_done(nbe *be, uint64_t rec, int64_t at) {
  if (!rec) return 1;
  for (size_t i = 0; i < TERN_ARRAY_LEN(be->gone); i++)
    if (be->gone[i] == rec) return 1;
  int64_t age = at ? tern_now_ms() - at : 0;
  if (age > 6 * be->unsettled_ms) {
    if (tern_now_ms() - be->unsettled_warned > 10000) {
      be->unsettled_warned = tern_now_ms();
      TERN_WARN("nats: a commit record an entry or de-dup key names could not be rolled back or forward; taking it as done",
                "record=%" PRIu64 " age_ms=%" PRId64 " replay_due=%d", rec, age, be->replay_due);
    }
    return 1;
  }
  int r = lhas(be, be->s_commit, rec);
  if (r < 0) return r;
  if (r == 1) {
    if (age > be->unsettled_ms) foreign_queue(be, rec);
    return 2;
  }
  be->gone[be->gone_pos++ % TERN_ARRAY_LEN(be->gone)] = rec;
  return 3;
}

/* An inbox entry under the reader rule: 1 deliver, 0 skip (undone meanwhile), 2 stop, or a
 * negative errno. */
static int entry_settled(nbe *be, natsMsg *m, uint64_t sseq) {
  int64_t at;
  uint64_t rec = rec_named(m, &at);
  int r = rec_done(be, rec, at);
  if (r != 3) return r;
  return lhas(be, be->s_in, sseq); /* undone between the read and the record's delete: 0 */
}

static int del_msg(nbe *be, const char *stream, uint64_t seq) {
  jsErrCode code = 0;
  natsStatus s = js_DeleteMsg(be->js, stream, seq, NULL, &code);
  if (s == NATS_OK || code == JSSequenceNotFoundErr) return 0;
  if (s == NATS_NOT_FOUND) return 0;
  fail(be, "delete message", s, code);
  return st_errno(s, code);
}

static int purge_subject(nbe *be, const char *stream, const char *subj, uint64_t below) {
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Purge.Subject = subj;
  o.Stream.Purge.Sequence = below;
  jsErrCode code = 0;
  natsStatus s = js_PurgeStream(be->js, stream, &o, &code);
  if (s == NATS_OK) return 0;
  fail(be, "purge", s, code);
  return st_errno(s, code);
}

/* The wrapped KV value: [1 ver][1 flags][8 ts][8 gid][1 n][node][value]. */
static void wrap(nbe *be, tern_buf *out, bool deleted, int64_t ts, const void *v, size_t n) {
  tern_buf_reset(out);
  tern_buf_putc(out, VAL_VERSION);
  tern_buf_putc(out, deleted ? 1 : 0);
  tern_buf_put_be64(out, (uint64_t)ts);
  tern_buf_put_be64(out, be->gid);
  size_t nl = strlen(be->node);
  tern_buf_putc(out, (char)nl);
  tern_buf_append(out, be->node, nl);
  if (n) tern_buf_append(out, v, n);
}

typedef struct unwrapped {
  bool live;
  int64_t ts;
  uint64_t gid;
  const char *node;
  size_t nodelen;
  const uint8_t *v;
  size_t n;
} unwrapped;

static bool unwrap(const uint8_t *p, size_t n, unwrapped *u) {
  memset(u, 0, sizeof *u);
  if (n < 19 || p[0] != VAL_VERSION) return false;
  u->live = p[1] == 0;
  u->ts = (int64_t)tern_get_be64(p + 2);
  u->gid = tern_get_be64(p + 10);
  size_t nl = p[18];
  if (19 + nl > n) return false;
  u->node = (const char *)p + 19;
  u->nodelen = nl;
  u->v = p + 19 + nl;
  u->n = n - 19 - nl;
  return true;
}

static bool own_node(nbe *be, const unwrapped *u) {
  return u->nodelen == strlen(be->node) && memcmp(u->node, be->node, u->nodelen) == 0;
}

/* ---- the group's inboxes ------------------------------------------------------------------- */

static void ss_note(ginbox *ib, uint64_t seq, uint64_t sseq) {
  for (size_t i = 0; i < ib->nss; i++)
    if (ib->ss_seq[i] == seq) return;
  if (ib->nss == ib->ss_cap) {
    ib->ss_cap = ib->ss_cap ? ib->ss_cap * 2 : 8;
    ib->ss_seq = tern_realloc(ib->ss_seq, ib->ss_cap * sizeof *ib->ss_seq);
    ib->ss_sseq = tern_realloc(ib->ss_sseq, ib->ss_cap * sizeof *ib->ss_sseq);
  }
  ib->ss_seq[ib->nss] = seq;
  ib->ss_sseq[ib->nss++] = sseq;
}

static uint64_t ss_find(const ginbox *ib, uint64_t seq) {
  for (size_t i = 0; i < ib->nss; i++)
    if (ib->ss_seq[i] == seq) return ib->ss_sseq[i];
  return 0;
}

/* The stream seq of the closest known entry at or below seq, or 0. */
static uint64_t ss_below(const ginbox *ib, uint64_t seq) {
  uint64_t best = 0, bs = 0;
  for (size_t i = 0; i < ib->nss; i++)
    if (ib->ss_seq[i] <= seq && ib->ss_seq[i] >= best) best = ib->ss_seq[i], bs = ib->ss_sseq[i];
  return bs;
}

/* An inbox's state from its subject's last entry m (stream seq lss) and the highest seq among
 * its entries (high), then its first entry (fr 1: fm at stream seq fss; 0: none, purged
 * meanwhile). The messages stay the caller's. */
static void load_last(ginbox *ib, natsMsg *m, uint64_t lss, uint64_t high) {
  uint64_t last = hdr_u64(m, "Tern-Seq", NULL);
  ib->loaded = true;
  ib->epoch = hdr_u64(m, "Tern-Epoch", NULL);
  ib->last_sseq = lss;
  if (!is_void(m)) ss_note(ib, last, lss);
  ib->exists = true;
  ib->next = ib->base_next = TERN_MAX(last, high) + 1;
}

static void load_first(ginbox *ib, int fr, natsMsg *fm, uint64_t fss) {
  if (fr == 1) {
    ib->first = hdr_u64(fm, "Tern-Seq", NULL);
    ib->first_sseq = fss;
    if (!is_void(fm)) ss_note(ib, ib->first, fss);
  } else {
    ib->first = ib->next; /* purged meanwhile */
  }
}

/* An empty subject: its marker (mr 1: mm at stream seq mss; 0: none) says where the seqs
 * stand. */
static void load_marker(ginbox *ib, int mr, natsMsg *mm, uint64_t mss) {
  ib->loaded = true;
  ib->last_sseq = 0;
  if (mr != 1) {
    ib->exists = false;
    ib->epoch = 0;
    ib->first = ib->next = ib->base_next = 1;
    return;
  }
  const void *d = natsMsg_GetData(mm);
  uint64_t last = 0, epoch = 0;
  if (natsMsg_GetDataLength(mm) >= 16) {
    last = tern_get_be64(d);
    epoch = tern_get_be64((const uint8_t *)d + 8);
  }
  if (last == 0) epoch = mss; /* forgotten: a new epoch */
  ib->epoch = epoch;
  ib->exists = last != 0;
  ib->first = ib->next = ib->base_next = last + 1;
}

/* Loads an inbox's state from the servers into the group. */
static int inbox_load(nbe *be, ginbox *ib) {
  natsMsg *m = NULL;
  const char *sin = subj_in(be, &be->sbuf, ib->name, ib->nlen);
  int r = lget(be, be->s_in, sin, &m);
  uint64_t walked_sseq = 0; /* the last entry's stream seq, when found by walking */
  uint64_t walked_high = 0; /* and the highest seq the walk saw (see the void below) */
  if (r < 0) return r;
  if (r == 0) {
    /* nats-server 2.9.10 answers "no message" to a last-by-subject get once the subject's last
     * message was deleted (as claims_undo does), though earlier ones remain: read "empty" as a
     * hint only, and walk to the true last entry when one exists. Rare: only after an undo. */
    uint64_t ss = 0, from = 1;
    natsMsg *n = NULL;
    while ((r = lnext(be, be->s_in, from, sin, &n, &ss)) == 1) {
      uint64_t q = hdr_u64(n, "Tern-Seq", NULL);
      if (q > walked_high) walked_high = q;
      if (m) natsMsg_Destroy(m);
      m = n;
      n = NULL;
      walked_sseq = ss;
      from = ss + 1;
    }
    if (r < 0) {
      if (m) natsMsg_Destroy(m);
      return r;
    }
    r = m ? 1 : 0;
    ib->last_lost = r == 1;
  }
  if (r == 1) {
    uint64_t lss = walked_sseq ? walked_sseq : natsMsg_GetSequence(m);
    /* The highest seq is not always the last entry's: a void (claims_undo) is stored after
     * the entries other writers claimed while its group ran, with the lower seq of the entry
     * it replaces. Taken for the highest, it made this node claim a seq already stored, lose,
     * reload the same and lose again until its retries ran out (test_store
     * nats_two_writers_append: one writer failed all its appends), and its reads stop short
     * of those entries. The entries after the one the void replaced (Tern-Was, its stream
     * seq: a few, those of that race) are walked for the highest seq. */
    uint64_t high = walked_high;
    if (is_void(m) && !walked_sseq) {
      uint64_t from = hdr_u64(m, "Tern-Was", NULL), ss = 0;
      if (!from) from = 1; /* a void from before Tern-Was: the whole subject */
      natsMsg *n = NULL;
      while (from < lss && (r = lnext(be, be->s_in, from, sin, &n, &ss)) == 1) {
        uint64_t q = hdr_u64(n, "Tern-Seq", NULL);
        if (q > high) high = q;
        natsMsg_Destroy(n);
        from = ss + 1;
      }
      if (r < 0) {
        natsMsg_Destroy(m);
        return r;
      }
    }
    load_last(ib, m, lss, high);
    natsMsg_Destroy(m);
    /* The first entry: the next one on the subject from stream seq 1. */
    uint64_t fss = 0;
    r = lnext(be, be->s_in, 1, sin, &m, &fss);
    if (r < 0) return r;
    load_first(ib, r, m, fss);
    if (m) natsMsg_Destroy(m);
    return 0;
  }
  const char *smk = subj_mk(be, &be->sbuf, ib->name, ib->nlen);
  r = lget(be, be->s_mk, smk, &m);
  if (r < 0) return r;
  load_marker(ib, r, m, m ? natsMsg_GetSequence(m) : 0);
  if (m) natsMsg_Destroy(m);
  return 0;
}

/* The group's entry for an inbox, made (not loaded) when it has none. */
static ginbox *ginbox_get(nbe *be, const char *name, size_t n) {
  ginbox *ib = tern_map_get(&be->inboxes, name, n);
  if (!ib) {
    ib = tern_calloc(1, sizeof *ib + n + 1);
    memcpy(ib->name, name, n);
    ib->nlen = n;
    tern_map_put(&be->inboxes, name, n, ib);
  }
  return ib;
}

static int inbox_of(nbe *be, const char *name, size_t n, ginbox **out) {
  ginbox *ib = ginbox_get(be, name, n);
  *out = ib;
  if (!ib->loaded) return inbox_load(be, ib);
  return 0;
}

static void ginbox_free(ginbox *ib) {
  tern_free(ib->erased);
  tern_free(ib->erased_sseq);
  tern_buf_free(&ib->apps);
  tern_free(ib->ss_seq);
  tern_free(ib->ss_sseq);
  tern_free(ib);
}

static bool free_inbox_cb(const char *k, size_t kl, void *v, void *arg) {
  ginbox_free(v);
  return true;
}

static void gkv_free(gkv *g) {
  tern_buf_free(&g->old);
  tern_buf_free(&g->val);
  tern_free(g);
}

static bool free_kv_cb(const char *k, size_t kl, void *v, void *arg) {
  gkv_free(v);
  return true;
}

static void group_clear(nbe *be) {
  tern_map_each(&be->inboxes, free_inbox_cb, NULL);
  tern_map_free(&be->inboxes);
  memset(&be->inboxes, 0, sizeof be->inboxes);
  tern_map_each(&be->kvs, free_kv_cb, NULL);
  tern_map_free(&be->kvs);
  memset(&be->kvs, 0, sizeof be->kvs);
  for (size_t i = 0; i < be->npdels; i++) tern_free(be->pdels[i].p);
  be->npdels = 0;
  be->failed = false;
  be->why[0] = 0;
}

/* ---- backend: inboxes ---------------------------------------------------------------------- */

static void foreign_run(nbe *be);

static void n_begin(void *self) {
  nbe *be = self;
  if (be->nforeign) foreign_run(be);
  group_clear(be);
  be->gid = be->gid_base + ++be->gid_next;
}

static int n_inbox_get(void *self, const char *name, size_t n, tern_inbox_info *out) {
  nbe *be = self;
  ginbox *ib;
  int r = inbox_of(be, name, n, &ib);
  if (r < 0) return r;
  if (!ib->exists) return -ENOENT;
  out->first_seq = ib->first;
  out->next_seq = ib->next;
  return 0;
}

static int n_append(void *self, const char *name, size_t n, const uint8_t *v, size_t len, uint64_t *seq) {
  nbe *be = self;
  ginbox *ib;
  int r = inbox_of(be, name, n, &ib);
  if (r < 0) return r;
  tern_buf_put_be32(&ib->apps, len);
  tern_buf_append(&ib->apps, v, len);
  ib->napps++;
  if (!ib->exists) {
    ib->exists = true;
    ib->first = ib->next;
  }
  *seq = ib->next++;
  return 0;
}

/* Visits the staged appends of the group (seqs base_next..). */
typedef bool (*app_visit)(uint64_t seq, const uint8_t *v, size_t len, void *arg);
static void apps_each(const ginbox *ib, app_visit fn, void *arg) {
  size_t off = 0;
  for (size_t i = 0; i < ib->napps; i++) {
    size_t len = tern_get_be32(ib->apps.data + off);
    const uint8_t *v = (const uint8_t *)ib->apps.data + off + 4;
    off += 4 + len;
    if (!fn(ib->base_next + i, v, len, arg)) return;
  }
}

typedef struct rd_arg {
  uint64_t from, to, floor;
  tern_env_visit fn;
  void *arg;
  bool stop;
} rd_arg;

static bool rd_app(uint64_t seq, const uint8_t *v, size_t len, void *a) {
  rd_arg *r = a;
  if (seq > r->to) return false;
  if (seq < r->from || seq <= r->floor) return true;
  if (!r->fn(seq, v, len, r->arg)) {
    r->stop = true;
    return false;
  }
  return true;
}

enum {
  CONSUMER_MIN = 16,          /* entries in a range read through an ordered consumer */
  CONSUMER_BACKOFF_MS = 10000 /* after a consumer could not start: direct gets for this long */
};

/* A walk's range and visitor. */
typedef struct walk_to {
  uint64_t from, to, floor;
  tern_env_visit fn;
  void *arg;
} walk_to;

/* Hands one stored entry (stream seq ss) to fn, under the reader rule when a read_settled
 * walks: 0 go on, 1 stop (fn said so, or the entry is not settled), or a negative errno. */
static int visit_entry(nbe *be, natsMsg *m, uint64_t seq, uint64_t ss, const walk_to *w) {
  if (be->settle) {
    int st = entry_settled(be, m, ss);
    if (st < 0) return st;
    if (st == 0) return 0;
    if (st == 2) {
      be->unsettled = true;
      return 1;
    }
  }
  return w->fn(seq, (const uint8_t *)natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), w->arg) ? 0 : 1;
}

/* One entry read by a walk (stream seq ss), destroyed here; *seq its Tern-Seq. 0 go on, 1 the
 * walk is past its range, 2 stopped (*stopped), or a negative errno. */
static int walk_entry(nbe *be, ginbox *ib, natsMsg *m, uint64_t ss, const walk_to *w, uint64_t *seq, bool *stopped) {
  *seq = hdr_u64(m, "Tern-Seq", NULL);
  if (ss && !is_void(m)) ss_note(ib, *seq, ss); /* a void's place is no purge bound (n_purge) */
  int v = 0;
  if (ss > ib->last_sseq || *seq > w->to) {
    v = 1;
  } else if (*seq >= w->from && *seq > w->floor && w->fn && !is_void(m)) {
    v = visit_entry(be, m, *seq, ss, w);
    if (v == 1) {
      *stopped = true;
      v = 2;
    }
  }
  natsMsg_Destroy(m);
  return v;
}

static int consumer_walk(nbe *be, ginbox *ib, const char *subj, uint64_t start, const walk_to *w, bool *stopped) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = be->s_in;
  so.Ordered = true;
  so.Config.DeliverPolicy = js_DeliverByStartSequence;
  so.Config.OptStartSeq = start;
  natsSubscription *sub = NULL;
  jsErrCode code = 0;
  natsStatus s = js_SubscribeSync(&sub, be->js, subj, NULL, &so, &code);
  if (s != NATS_OK) {
    /* A consumer is made through JetStream's meta leader, which is away for seconds after a
     * server of the cluster returns, while the stream's own leader still answers direct gets:
     * the caller walks by those (nothing was visited), and so do the next reads for a while,
     * instead of each holding the commit thread for a timeout. */
    TERN_WARN("nats: an ordered consumer did not start; direct gets for a while", "err=%s (js %d)",
              natsStatus_GetText(s), (int)code);
    be->consumers_off_until = tern_mono_ns() + (uint64_t)CONSUMER_BACKOFF_MS * 1000000u;
    return 1;
  }
  int rc = 0;
  bool got = false;
  for (;;) {
    natsMsg *m = NULL;
    s = natsSubscription_NextMsg(&m, sub, WAIT_MS);
    if (s == NATS_TIMEOUT && !got) {
      /* Nothing at all from start on: the entries were purged meanwhile, if the consumer says
       * none are pending; else the consumer is not serving yet (as above): direct gets. */
      jsConsumerInfo *ci = NULL;
      bool answered = natsSubscription_GetConsumerInfo(&ci, sub, NULL, NULL) == NATS_OK && ci;
      bool empty = answered && ci->NumPending == 0 && ci->Delivered.Stream == 0;
      if (ci) jsConsumerInfo_Destroy(ci);
      if (empty) break;
      TERN_WARN("nats: an ordered consumer delivered nothing; direct gets for a while", "answered=%d", answered);
      be->consumers_off_until = tern_mono_ns() + (uint64_t)CONSUMER_BACKOFF_MS * 1000000u;
      rc = 1;
      break;
    }
    if (s != NATS_OK) {
      fail(be, "ordered consumer next", s, 0);
      rc = st_errno(s, 0);
      break;
    }
    got = true;
    jsMsgMetaData *md = NULL;
    uint64_t ss = 0, pending = 1;
    if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
      ss = md->Sequence.Stream;
      pending = md->NumPending;
      jsMsgMetaData_Destroy(md);
    }
    uint64_t seq;
    int v = walk_entry(be, ib, m, ss, w, &seq, stopped);
    if (v != 0) {
      if (v < 0) rc = v;
      break;
    }
    /* The subject has no entry after this one: the group's last_sseq may name one deleted
     * since (an undone claim, layout pitfall 17), and waiting for it would only time out. */
    if (ss >= ib->last_sseq || seq == w->to || pending == 0) break;
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return rc;
}

/* Walks the stored entries of an inbox from stream seq `from_sseq`, calling fn for those with
 * seq in [from, to]. */
static int stored_walk(nbe *be, ginbox *ib, uint64_t from, uint64_t to, uint64_t floor, tern_env_visit fn, void *arg,
                       bool *stopped) {
  *stopped = false;
  if (!ib->last_sseq) return 0;
  uint64_t s = 1;
  if (ib->first_sseq && from <= ib->first) s = ib->first_sseq;
  else {
    uint64_t bs = ss_below(ib, from); /* the closest known entry at or below from */
    if (bs) s = bs;
  }
  char *subj = tern_strdup(subj_in(be, &be->sbuf2, ib->name, ib->nlen));
  int rc = 0;
  walk_to w = {from, to, floor, fn, arg};
  /* A long range: one ordered consumer (a round trip to create it, then the entries stream)
   * rather than a direct get per entry; 1 from it: it did not start, walk by direct gets. */
  if (to - from >= CONSUMER_MIN && to != from && tern_mono_ns() >= be->consumers_off_until) {
    rc = consumer_walk(be, ib, subj, s, &w, stopped);
    if (rc != 1) {
      tern_free(subj);
      return rc;
    }
    rc = 0;
  }
  while (s <= ib->last_sseq) {
    natsMsg *m = NULL;
    uint64_t ss = 0;
    int r = lnext(be, be->s_in, s, subj, &m, &ss);
    if (r < 0) {
      rc = r;
      break;
    }
    if (r == 0) break;
    uint64_t seq;
    int v = walk_entry(be, ib, m, ss, &w, &seq, stopped);
    if (v != 0) {
      if (v < 0) rc = v;
      break;
    }
    s = ss + 1;
  }
  tern_free(subj);
  return rc;
}

/* Reads skip what this group erased. */
typedef struct erased_filter {
  const ginbox *ib;
  tern_env_visit fn;
  void *arg;
} erased_filter;

static bool erased_visit(uint64_t seq, const uint8_t *v, size_t len, void *a) {
  erased_filter *e = a;
  for (size_t i = 0; i < e->ib->nerased; i++)
    if (e->ib->erased[i] == seq) return true;
  return e->fn(seq, v, len, e->arg);
}

static int n_read(void *self, const char *name, size_t n, uint64_t from, uint64_t to, tern_env_visit fn, void *arg) {
  nbe *be = self;
  ginbox *ib;
  int r = inbox_of(be, name, n, &ib);
  if (r < 0) return r;
  if (!ib->exists) return 0;
  erased_filter ef = {ib, fn, arg};
  if (ib->nerased && fn) {
    fn = erased_visit;
    arg = &ef;
  }
  if (from < ib->first) from = ib->first;
  uint64_t floor = ib->purge_upto;
  bool stopped = false;
  if (from < ib->base_next) {
    r = stored_walk(be, ib, from, TERN_MIN(to, ib->base_next - 1), floor, fn, arg, &stopped);
    if (r < 0 || stopped) return r;
  }
  rd_arg ra = {from, to, floor, fn, arg, false};
  apps_each(ib, rd_app, &ra);
  return 0;
}

/* A delivery's read (backend.h read_settled): 1 when it stopped before an entry whose group
 * is not done (entry_settled). The group's own staged appends are its own: settled. */
static int n_read_settled(void *self, const char *name, size_t n, uint64_t from, uint64_t to, tern_env_visit fn,
                          void *arg) {
  nbe *be = self;
  be->settle = true;
  be->unsettled = false;
  int r = n_read(self, name, n, from, to, fn, arg);
  be->settle = false;
  if (r == 0 && be->unsettled) r = 1;
  be->unsettled = false;
  return r;
}

/* A delete for everyone's original (backend.h): its stream entry is deleted at the commit,
 * after the claims (the group appends to this inbox too, so a new last entry exists first).
 * Not in the commit record: a crash in between leaves the original beside its delete, which
 * clients show as deleted all the same. */
static int n_erase(void *self, const char *name, size_t n, uint64_t seq) {
  nbe *be = self;
  ginbox *ib;
  int r = inbox_of(be, name, n, &ib);
  if (r < 0) return r;
  if (!ib->exists || seq < ib->first || seq >= ib->base_next || seq <= ib->purge_upto) return -ENOENT;
  uint64_t ss = ss_find(ib, seq);
  if (!ss) {
    bool stopped;
    r = stored_walk(be, ib, seq, seq, 0, NULL, NULL, &stopped);
    if (r < 0) return r;
    ss = ss_find(ib, seq);
  }
  if (!ss) return -ENOENT;
  ib->erased = tern_realloc(ib->erased, (ib->nerased + 1) * sizeof *ib->erased);
  ib->erased_sseq = tern_realloc(ib->erased_sseq, (ib->nerased + 1) * sizeof *ib->erased_sseq);
  ib->erased[ib->nerased] = seq;
  ib->erased_sseq[ib->nerased++] = ss;
  return 0;
}

static bool erase_run_cb(const char *k, size_t kl, void *v, void *arg) {
  nbe *be = arg;
  ginbox *ib = v;
  for (size_t i = 0; i < ib->nerased && !be->failed; i++)
    if (del_msg(be, be->s_in, ib->erased_sseq[i]) < 0) be->failed = true;
  return !be->failed;
}

static int n_purge(void *self, const char *name, size_t n, uint64_t upto) {
  nbe *be = self;
  ginbox *ib;
  int r = inbox_of(be, name, n, &ib);
  if (r < 0) return r;
  if (upto < ib->first) return 0;
  if (upto >= ib->next) upto = ib->next - 1;
  /* The stream seq bound among stored entries, learned now (the reads of the group usually
   * know it already). */
  if (upto + 1 == ib->base_next && ib->last_sseq) {
    /* every stored entry: up to the subject's last message, which may be a void with a lower
     * seq stored after them (inbox_load), so that nothing of the inbox is left behind */
    ib->purge_sseq = ib->last_sseq;
  } else if (upto < ib->base_next && ib->last_sseq) {
    uint64_t target = upto;
    uint64_t ss = ss_find(ib, target);
    if (!ss) {
      bool stopped;
      r = stored_walk(be, ib, target, target, 0, NULL, NULL, &stopped);
      if (r < 0) return r;
      ss = ss_find(ib, target);
    }
    /* no entry has that seq (a void's, or a gap's): the bound is the highest entry below it,
     * since entries stand in seq order (voids aside) */
    if (!ss) ss = ss_below(ib, target);
    if (ss > ib->purge_sseq) ib->purge_sseq = ss;
  } else if (upto >= ib->base_next && ib->last_sseq) {
    ib->purge_sseq = ib->last_sseq;
  }
  if (upto > ib->purge_upto) ib->purge_upto = upto;
  ib->first = upto + 1;
  return 0;
}

static int n_forget(void *self, const char *name, size_t n) {
  nbe *be = self;
  ginbox *ib;
  int r = inbox_of(be, name, n, &ib);
  if (r < 0) return r;
  /* The inbox starts again at seq 1, under a new msg-id epoch (this group's id: appends that
   * follow in the same group claim seqs that the old entries' ids may still hold in the
   * duplicate window). The old entries go at the commit, below the stream seq seen now. */
  ib->forgot = true;
  ib->exists = false;
  tern_buf_reset(&ib->apps);
  ib->napps = 0;
  ib->purge_upto = 0;
  ib->first = ib->next = ib->base_next = 1;
  ib->epoch = be->gid;
  ib->nss = 0;
  ib->first_sseq = 0;
  return 0;
}

static bool walk_load(nbe *be) {
  for (size_t i = 0; i < be->nwalk; i++) tern_free(be->walk[i]);
  tern_free(be->walk);
  be->walk = NULL;
  be->nwalk = be->walk_pos = 0;
  jsOptions o;
  jsOptions_Init(&o);
  char filt[128];
  snprintf(filt, sizeof filt, "%s.in.>", be->ns);
  o.Stream.Info.SubjectsFilter = filt;
  jsStreamInfo *si = NULL;
  jsErrCode code = 0;
  natsStatus s = js_GetStreamInfo(&si, be->js, be->s_in, &o, &code);
  if (s != NATS_OK) return false;
  size_t pre = strlen(be->ns) + 4;
  if (si->State.Subjects) {
    be->walk = tern_calloc((size_t)si->State.Subjects->Count + 1, sizeof *be->walk);
    for (int i = 0; i < si->State.Subjects->Count; i++) {
      const char *sj = si->State.Subjects->List[i].Subject;
      if (strlen(sj) <= pre) continue;
      dec_token(&be->sbuf2, sj + pre, strlen(sj) - pre);
      be->walk[be->nwalk++] = tern_strndup(be->sbuf2.data, be->sbuf2.len);
    }
  }
  jsStreamInfo_Destroy(si);
  return true;
}

static int n_inbox_next(void *self, tern_buf *out) {
  nbe *be = self;
  if (!be->walk_loaded) {
    if (!walk_load(be)) return 0;
    be->walk_loaded = true;
  }
  if (be->walk_pos >= be->nwalk) {
    be->walk_loaded = false;
    return 0;
  }
  tern_buf_reset(out);
  tern_buf_puts(out, be->walk[be->walk_pos++]);
  return 1;
}

/* ---- backend: KV --------------------------------------------------------------------------- */

static gkv *gkv_of(nbe *be, int b, const char *key, size_t klen, bool create) {
  char mk[KEY_MAX + 1];
  if (klen > KEY_MAX) return NULL;
  mk[0] = (char)b;
  memcpy(mk + 1, key, klen);
  gkv *g = tern_map_get(&be->kvs, mk, klen + 1);
  if (!g && create) {
    g = tern_calloc(1, sizeof *g + klen + 1);
    g->b = b;
    memcpy(g->key, key, klen);
    g->klen = klen;
    tern_map_put(&be->kvs, mk, klen + 1, g);
  }
  return g;
}

static bool prefix_deleted(nbe *be, int b, const char *key, size_t klen) {
  for (size_t i = 0; i < be->npdels; i++)
    if (be->pdels[i].b == b && klen >= be->pdels[i].n && memcmp(key, be->pdels[i].p, be->pdels[i].n) == 0) return true;
  return false;
}

/* A KV stream message as the key's stored bytes: none for a DEL/PURGE marker (KV-Operation;
 * max_age leaves none). */
static void kv_bytes(natsMsg *m, tern_buf *out) {
  const char *op = NULL;
  tern_buf_reset(out);
  if (natsMsgHeader_Get(m, "KV-Operation", &op) != NATS_OK)
    tern_buf_append(out, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
}

/* Reads a key's last entry: 1 with its stored bytes in out and *rev, 0 when it has none. */
static int kv_fetch(nbe *be, int b, const char *key, size_t klen, tern_buf *out, uint64_t *rev, gkv *g) {
  natsMsg *m = NULL;
  char stream[160];
  snprintf(stream, sizeof stream, "KV_%s", be->kvname[b]);
  int r = lget(be, stream, subj_kv(be, &be->sbuf, b, key, klen), &m);
  *rev = 0;
  if (r <= 0) return r;
  *rev = natsMsg_GetSequence(m);
  kv_bytes(m, out);
  if (g) g->rec = rec_named(m, &g->rec_at);
  natsMsg_Destroy(m);
  return 1;
}

/* g->old and g->rev hold what the servers have for the key (r 1: an entry; 0: none): the
 * group has read it, and a write of it is conditional on rev (plan_build). */
static void gkv_read(gkv *g, int r) {
  unwrapped u;
  g->read = true;
  g->old_live = r == 1 && unwrap((const uint8_t *)g->old.data, g->old.len, &u) && u.live;
  if (!g->old_live) tern_buf_reset(&g->old);
}

static int n_kv_get(void *self, tern_bucket b, const char *key, size_t klen, tern_buf *out, int64_t *ts) {
  nbe *be = self;
  gkv *g = gkv_of(be, b, key, klen, true);
  if (!g) return -ENAMETOOLONG;
  if (g->w == 1) {
    tern_buf_reset(out);
    tern_buf_append(out, g->val.data, g->val.len);
    if (ts) *ts = g->ts;
    return 1;
  }
  if (g->w == 2 || (!g->read && prefix_deleted(be, b, key, klen))) return 0;
  if (!g->read && g->pf > 0) {
    gkv_read(g, g->pf); /* loaded by n_prefetch: 1 an entry, 2 none */
  } else if (!g->read) {
    int r = kv_fetch(be, b, key, klen, &g->old, &g->rev, g);
    if (r < 0) return r;
    gkv_read(g, r);
  }
  if (!g->old_live) return 0;
  if (g->rec && b == TERN_BUCKET_DEDUP) {
    /* A de-dup key claimed by a group that is not done (its node died mid-commit, or its
     * claims may be stored unanswered): that group may yet be rolled back, and a resend
     * answered as its duplicate would be sent and never delivered. The caller answers this
     * send "not now" (backend.h kv_get); the record goes soon (its replay, or foreign_one). */
    int r = rec_done(be, g->rec, g->rec_at);
    if (r < 0) return r;
    if (r == 2) {
      snprintf(be->why, sizeof be->why, "the first send of this id is still being stored");
      return -EINPROGRESS;
    }
    g->rec = 0;
  }
  unwrapped u;
  unwrap((const uint8_t *)g->old.data, g->old.len, &u);
  tern_buf_reset(out);
  tern_buf_append(out, u.v, u.n);
  if (ts) *ts = u.ts;
  return 1;
}

/* ---- backend: pipelined loads (backend.h prefetch) ----------------------------------------
 * Loading an inbox takes two or three leader reads (last entry, first entry, and the marker
 * when the subject is empty), a KV key one; on the commit thread, one after another, they held
 * a group of N connects (one drain each) or a group message to N members for 2-3 N round
 * trips. Named before the ops run, they go out at once, PF_CHUNK requests in flight, and their
 * replies fill the group's state as inbox_load and n_kv_get would. Anything unusual (an error,
 * a missing reply, a void as the last entry, "no last message" while a first one exists) is
 * left unloaded, and the op's own read loads it the slow way. */

enum { PF_CHUNK = 256 }; /* requests in flight at once */

typedef struct pfreq {
  ginbox *ib;    /* an inbox: what 0 its last entry, 1 its first, 2 its marker */
  gkv *g;        /* or a KV key's last entry */
  int what;
  natsMsg *resp; /* the reply, once it came */
} pfreq;

/* The stream and subject a request reads (the subject in be->sbuf), and the seq to read from
 * (0: the subject's last message). */
static const char *pf_target(nbe *be, const pfreq *q, char *stream, size_t cap, uint64_t *seq) {
  *seq = 0;
  if (q->g) {
    snprintf(stream, cap, "KV_%s", be->kvname[q->g->b]);
    return subj_kv(be, &be->sbuf, q->g->b, q->g->key, q->g->klen);
  }
  if (q->what == 2) {
    snprintf(stream, cap, "%s", be->s_mk);
    return subj_mk(be, &be->sbuf, q->ib->name, q->ib->nlen);
  }
  snprintf(stream, cap, "%s", be->s_in);
  *seq = q->what == 1;
  return subj_in(be, &be->sbuf, q->ib->name, q->ib->nlen);
}

/* Sends q[0..n) at once and waits (up to WAIT_MS) for their replies; a reply names its round
 * and index, so that one that comes after its round gave up is dropped. */
static void pf_send(nbe *be, pfreq *q, size_t n) {
  if (!be->pf_sub) {
    natsInbox *in = NULL;
    if (natsInbox_Create(&in) != NATS_OK) return;
    snprintf(be->pf_prefix, sizeof be->pf_prefix, "%s", (const char *)in);
    natsInbox_Destroy(in);
    char all[sizeof be->pf_prefix + 3];
    snprintf(all, sizeof all, "%s.>", be->pf_prefix);
    if (natsConnection_SubscribeSync(&be->pf_sub, be->nc, all) != NATS_OK) {
      be->pf_sub = NULL;
      return;
    }
  }
  uint64_t round = ++be->pf_round;
  size_t sent = 0;
  for (; sent < n; sent++) {
    char stream[160], api[200], reply[sizeof be->pf_prefix + 48];
    uint64_t seq;
    const char *subj = pf_target(be, &q[sent], stream, sizeof stream, &seq);
    msg_get_request(&be->pf_req, seq, subj);
    snprintf(api, sizeof api, "$JS.API.STREAM.MSG.GET.%s", stream);
    snprintf(reply, sizeof reply, "%s.%" PRIu64 ".%zu", be->pf_prefix, round, sent);
    if (natsConnection_PublishRequest(be->nc, api, reply, be->pf_req.data, (int)be->pf_req.len) != NATS_OK) break;
  }
  size_t pl = strlen(be->pf_prefix), got = 0;
  int64_t deadline = tern_now_ms() + WAIT_MS;
  while (got < sent) {
    int64_t left = deadline - tern_now_ms();
    natsMsg *m = NULL;
    if (left <= 0 || natsSubscription_NextMsg(&m, be->pf_sub, left) != NATS_OK) break;
    const char *rs = natsMsg_GetSubject(m);
    char *end = NULL;
    bool ok = strncmp(rs, be->pf_prefix, pl) == 0 && rs[pl] == '.' && strtoull(rs + pl + 1, &end, 10) == round &&
              *end == '.';
    unsigned long long i = ok ? strtoull(end + 1, &end, 10) : 0;
    if (!ok || *end || i >= sent || q[i].resp) {
      natsMsg_Destroy(m);
      continue;
    }
    q[i].resp = m;
    got++;
  }
}

/* A reply as msg_get_reply reads it (a negative errno also when none came). */
static int pf_reply(nbe *be, pfreq *q, natsMsg **m, uint64_t *sseq) {
  *m = NULL;
  *sseq = 0;
  if (!q->resp) return -ETIMEDOUT;
  char stream[160];
  uint64_t seq;
  return msg_get_reply(q->resp, pf_target(be, q, stream, sizeof stream, &seq), m, sseq);
}

/* One round: q holds KV reads and inbox pairs (last, first); the markers of inboxes found
 * empty go out as a second round. */
static void pf_round(nbe *be, pfreq *q, size_t n) {
  pf_send(be, q, n);
  pfreq *mk = tern_calloc(n + 1, sizeof *mk);
  size_t nmk = 0;
  for (size_t i = 0; i < n; i++) {
    natsMsg *m = NULL, *f = NULL;
    uint64_t ss = 0, fss = 0;
    int r = pf_reply(be, &q[i], &m, &ss);
    if (q[i].g) {
      gkv *g = q[i].g;
      g->pf = 0;
      if (r >= 0) {
        tern_buf_reset(&g->old);
        if (r == 1) kv_bytes(m, &g->old);
        g->rec = r == 1 ? rec_named(m, &g->rec_at) : 0;
        g->rev = ss;
        g->pf = r == 1 ? 1 : 2;
      }
    } else {
      ginbox *ib = q[i].ib;
      int fr = pf_reply(be, &q[++i], &f, &fss);
      if (r == 1 && fr >= 0 && !is_void(m)) {
        load_last(ib, m, ss, 0);
        load_first(ib, fr, f, fss);
      } else if (r == 0 && fr == 0) {
        mk[nmk++] = (pfreq){.ib = ib, .what = 2};
      }
    }
    if (m) natsMsg_Destroy(m);
    if (f) natsMsg_Destroy(f);
  }
  if (nmk) pf_send(be, mk, nmk);
  for (size_t i = 0; i < nmk; i++) {
    natsMsg *m = NULL;
    uint64_t ss = 0;
    int r = pf_reply(be, &mk[i], &m, &ss);
    if (r >= 0) load_marker(mk[i].ib, r, m, ss);
    if (m) natsMsg_Destroy(m);
  }
  for (size_t i = 0; i < n; i++)
    if (q[i].resp) natsMsg_Destroy(q[i].resp);
  for (size_t i = 0; i < nmk; i++)
    if (mk[i].resp) natsMsg_Destroy(mk[i].resp);
  tern_free(mk);
}

static void n_prefetch(void *self, const tern_prefetch_key *keys, size_t n) {
  nbe *be = self;
  pfreq *q = tern_calloc(PF_CHUNK + 2, sizeof *q);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const tern_prefetch_key *x = &keys[i];
    if (x->bucket < 0) {
      ginbox *ib = ginbox_get(be, x->key, x->klen);
      if (ib->loaded || ib->asked) continue;
      ib->asked = true;
      q[k++] = (pfreq){.ib = ib, .what = 0};
      q[k++] = (pfreq){.ib = ib, .what = 1};
    } else if (x->bucket < TERN_BUCKET__COUNT) {
      gkv *g = gkv_of(be, x->bucket, x->key, x->klen, true);
      if (!g || g->read || g->w || g->pf || prefix_deleted(be, g->b, g->key, g->klen)) continue;
      g->pf = -1; /* asked: pf_round sets what came */
      q[k++] = (pfreq){.g = g};
    }
    if (k >= PF_CHUNK) {
      pf_round(be, q, k);
      memset(q, 0, k * sizeof *q);
      k = 0;
    }
  }
  if (k) pf_round(be, q, k);
  tern_free(q);
}

static int n_kv_put(void *self, tern_bucket b, const char *key, size_t klen, const void *v, size_t vlen, int64_t ts) {
  nbe *be = self;
  gkv *g = gkv_of(be, b, key, klen, true);
  if (!g) return -ENAMETOOLONG;
  g->w = 1;
  g->ts = ts > 0 ? ts : tern_now_ms();
  tern_buf_reset(&g->val);
  tern_buf_append(&g->val, v, vlen);
  return 0;
}

static int n_kv_del(void *self, tern_bucket b, const char *key, size_t klen) {
  nbe *be = self;
  gkv *g = gkv_of(be, b, key, klen, true);
  if (!g) return -ENAMETOOLONG;
  g->w = 2;
  tern_buf_reset(&g->val);
  return 0;
}

static int n_kv_del_prefix(void *self, tern_bucket b, const char *prefix, size_t plen) {
  nbe *be = self;
  if (be->npdels == be->pdel_cap) {
    be->pdel_cap = be->pdel_cap ? be->pdel_cap * 2 : 4;
    be->pdels = tern_realloc(be->pdels, be->pdel_cap * sizeof *be->pdels);
  }
  be->pdels[be->npdels++] = (prefix_del){b, tern_memdup(prefix, plen), plen};
  /* Keys the group itself wrote under the prefix go too. */
  tern_map_iter it = {0};
  const char *k;
  size_t kl;
  void *v;
  while (tern_map_next(&be->kvs, &it, &k, &kl, &v)) {
    gkv *g = v;
    if (g->b == (int)b && g->klen >= plen && memcmp(g->key, prefix, plen) == 0 && g->w == 1) g->w = 2;
  }
  return 0;
}

/* JetStream max_age expires the records of TTL buckets by itself, counted from when the server
 * stored them. A record may carry an older ts than that (a resend's original time), so a small
 * bucket is also scanned by ts, the deletions staged in the group like any kv_del; a big one
 * is left to max_age (a scan is a read of the whole bucket). */
enum { EXPIRE_SCAN_MAX = 20000 };
typedef bool (*kvscan_fn)(nbe *be, const char *key, size_t klen, const unwrapped *u, void *arg);
static int kv_scan(nbe *be, int b, const char *filter, kvscan_fn fn, void *arg, bool *found_any);
typedef struct exp_arg {
  int64_t cutoff;
  tern_buf keys; /* [2 n][key]... */
  size_t n;
} exp_arg;

static bool exp_cb(nbe *be, const char *key, size_t klen, const unwrapped *u, void *arg) {
  exp_arg *a = arg;
  if (u->ts < a->cutoff) {
    tern_buf_put_be16(&a->keys, klen);
    tern_buf_append(&a->keys, key, klen);
    a->n++;
  }
  return true;
}

static int n_kv_expire(void *self, tern_bucket b, int64_t cutoff, long *budget, uint64_t *expired) {
  nbe *be = self;
  kvStatus *st = NULL;
  if (kvStore_Status(&st, be->kv[b]) != NATS_OK) return 1;
  uint64_t vals = kvStatus_Values(st);
  kvStatus_Destroy(st);
  if (vals == 0 || vals > EXPIRE_SCAN_MAX) return 1;
  exp_arg a = {cutoff, {0}, 0};
  int r = kv_scan(be, b, "", exp_cb, &a, NULL);
  if (r < 0) {
    tern_buf_free(&a.keys);
    return r;
  }
  *budget -= (long)vals;
  size_t off = 0;
  for (size_t i = 0; i < a.n; i++) {
    size_t kl = tern_get_be16(a.keys.data + off);
    const char *k = a.keys.data + off + 2;
    off += 2 + kl;
    gkv *g = gkv_of(be, b, k, kl, true);
    if (g && g->w == 0) { /* not one the group already wrote or deleted */
      g->w = 2;
      (*expired)++;
    }
  }
  tern_buf_free(&a.keys);
  return 1;
}

/* Visits every live record of a bucket whose encoded key matches filter ("" = all). */
static int kv_scan(nbe *be, int b, const char *filter, kvscan_fn fn, void *arg, bool *found_any) {
  kvWatcher *w = NULL;
  kvWatchOptions wo;
  kvWatchOptions_Init(&wo);
  wo.IgnoreDeletes = true;
  wo.Timeout = WAIT_MS;
  natsStatus s = filter && *filter ? kvStore_Watch(&w, be->kv[b], filter, &wo) : kvStore_WatchAll(&w, be->kv[b], &wo);
  if (s != NATS_OK) {
    fail(be, "watch", s, 0);
    return st_errno(s, 0);
  }
  int rc = 0;
  tern_buf kb = {0};
  for (;;) {
    kvEntry *e = NULL;
    s = kvWatcher_Next(&e, w, WAIT_MS);
    if (s != NATS_OK) {
      fail(be, "watch next", s, 0);
      rc = st_errno(s, 0);
      break;
    }
    if (!e) break; /* the initial values are done */
    const char *k = kvEntry_Key(e);
    dec_key(&kb, k, strlen(k));
    unwrapped u;
    if (kvEntry_Operation(e) == kvOp_Put &&
        unwrap((const uint8_t *)kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &u) && u.live) {
      if (found_any) *found_any = true;
      if (!fn(be, kb.data ? kb.data : "", kb.len, &u, arg)) {
        kvEntry_Destroy(e);
        break;
      }
    }
    kvEntry_Destroy(e);
  }
  tern_buf_free(&kb);
  kvWatcher_Destroy(w);
  return rc;
}

/* ---- the commit record ---------------------------------------------------------------------- */

/* Record: [1 ver][8 gid] then entries:
 *   'A' [2 n][inbox][8 first seq][8 count][8 last_sseq][8 epoch]        appends (claims)
 *   'K' [1 b][2 n][key][8 rev][1 old_live][4 n][old]                   a claim of a read key
 *   'W' [1 b][2 n][key][1 w][4 n][wrapped value]                       a write (claim or not)
 *   'P' [2 n][inbox][8 upto][8 purge_sseq][8 last_sseq][1 all][8 epoch][1 forget]  purge/forget
 *   'X' [1 b][2 n][prefix]                                              delete by prefix
 * Replay needs the ids and the writes; the envelopes themselves are not in it (a rollback
 * deletes the entries, a roll forward only runs the unconditional part). */
static void rec_str(tern_buf *b, const char *s, size_t n) {
  tern_buf_put_be16(b, n);
  tern_buf_append(b, s, n);
}

typedef struct rd {
  const uint8_t *p, *end;
  bool bad;
} rd;

static uint64_t rd_be(rd *r, int n) {
  if (r->end - r->p < n) {
    r->bad = true;
    return 0;
  }
  uint64_t v = tern_get_be(r->p, n);
  r->p += n;
  return v;
}

static const char *rd_bytes(rd *r, size_t n) {
  if ((size_t)(r->end - r->p) < n) {
    r->bad = true;
    return NULL;
  }
  const char *s = (const char *)r->p;
  r->p += n;
  return s;
}

/* ---- commit -------------------------------------------------------------------------------- */

/* The msg id that claims (inbox, seq) under epoch. A rollback that deletes a claimed entry
 * leaves its id in JetStream's duplicate window (2 min) with no entry behind it; the next
 * claim of the same (inbox, seq) then bumps a suffix, and every node that meets the dead id
 * (a duplicate ack naming a missing entry) bumps it the same way, so they still collide. */
static void claim_id(nbe *be, tern_buf *out, const ginbox *ib, uint64_t seq) {
  tern_buf_reset(out);
  tern_buf_printf(out, "%s:", be->ns);
  enc_token(out, ib->name, ib->nlen);
  tern_buf_printf(out, "#%" PRIu64 "@%" PRIu64, seq, ib->epoch);
  uintptr_t bump = (uintptr_t)tern_map_get(&be->burned, out->data, out->len);
  if (bump) tern_buf_printf(out, "~%" PRIuPTR, bump);
}

static void burn(nbe *be, const ginbox *ib, uint64_t seq) {
  tern_buf id = {0};
  tern_buf_reset(&id);
  tern_buf_printf(&id, "%s:", be->ns);
  enc_token(&id, ib->name, ib->nlen);
  tern_buf_printf(&id, "#%" PRIu64 "@%" PRIu64, seq, ib->epoch);
  uintptr_t bump = (uintptr_t)tern_map_get(&be->burned, id.data, id.len);
  tern_map_put(&be->burned, id.data, id.len, (void *)(bump + 1));
  tern_buf_free(&id);
}

/* A claim in flight or done. */
typedef struct claim {
  int kind;      /* 'A' append, 'K' key */
  ginbox *ib;
  uint64_t seq;
  gkv *g;
  long slot;
} claim;

static natsMsg *msg_new(const char *subj, const void *d, size_t n) {
  natsMsg *m = NULL;
  if (natsMsg_Create(&m, subj, NULL, d, (int)n) != NATS_OK) return NULL;
  return m;
}

/* Names the group's commit record on a claim (Tern-Rec, the reader rule). */
static void rec_header(nbe *be, natsMsg *m) {
  char rb[48];
  snprintf(rb, sizeof rb, "%" PRIu64 ":%" PRId64, be->rec_cur, tern_now_ms());
  natsMsgHeader_Set(m, "Tern-Rec", rb);
}

/* Publishes one staged append as a claim. */

static long pub_append(nbe *be, ginbox *ib, uint64_t seq, const uint8_t *v, size_t len, bool first) {
  natsMsg *m = msg_new(subj_in(be, &be->sbuf, ib->name, ib->nlen), v, len);
  if (!m) return -1;
  hdr_set_u64(m, "Tern-Seq", seq);
  hdr_set_u64(m, "Tern-Epoch", ib->epoch);
  hdr_set_u64(m, "Tern-Gid", be->gid);
  if (be->rec_cur) rec_header(be, m); /* readers on other nodes wait while it stands (entry_settled) */
  jsPubOptions o;
  jsPubOptions_Init(&o);
  claim_id(be, &be->sbuf2, ib, seq);
  o.MsgId = tern_buf_cstr(&be->sbuf2);
  if (first) {
    /* The check is against the server's own view of the subject's last entry, which after a
     * deleted last entry is "none" (see inbox_load); the msg-id claim still decides the race. */
    if (ib->last_sseq && !ib->last_lost) o.ExpectLastSubjectSeq = ib->last_sseq;
    else o.ExpectNoMessage = true;
  }
  return pub_async(be, m, &o);
}

static long pub_kv(nbe *be, gkv *g, bool conditional) {
  tern_buf w = {0};
  wrap(be, &w, g->w == 2, g->w == 2 ? tern_now_ms() : g->ts, g->val.data, g->val.len);
  natsMsg *m = msg_new(subj_kv(be, &be->sbuf, g->b, g->key, g->klen), w.data, w.len);
  tern_buf_free(&w);
  if (!m) return -1;
  if (conditional && be->rec_cur && g->b == TERN_BUCKET_DEDUP) rec_header(be, m);
  jsPubOptions o;
  jsPubOptions_Init(&o);
  if (conditional) {
    if (g->rev) {
      /* Expected-last-subject-seq > 0 is only pre-checked on a clustered stream in 2.9.10
       * (layout pitfall 11); a msg-id naming the revision written over makes two writers
       * based on the same revision collide at apply time, as the appends' claims do. */
      o.ExpectLastSubjectSeq = g->rev;
      tern_buf_reset(&be->sbuf2);
      tern_buf_printf(&be->sbuf2, "%s@%" PRIu64, natsMsg_GetSubject(m), g->rev);
      o.MsgId = tern_buf_cstr(&be->sbuf2);
    } else {
      o.ExpectNoMessage = true;
    }
  }
  return pub_async(be, m, &o);
}

static long pub_raw_kv(nbe *be, int b, const char *key, size_t klen, const tern_buf *bytes, bool tombstone) {
  tern_buf w = {0};
  if (tombstone) wrap(be, &w, true, tern_now_ms(), NULL, 0);
  else tern_buf_append(&w, bytes->data, bytes->len);
  natsMsg *m = msg_new(subj_kv(be, &be->sbuf, b, key, klen), w.data, w.len);
  tern_buf_free(&w);
  if (!m) return -1;
  return pub_async(be, m, NULL);
}

static int slot_rc(nbe *be, long i, const char *what) {
  if (i < 0) {
    failf(be, "cannot create a message");
    return -ENOMEM;
  }
  slot s = slot_get(be, i);
  if (s.state == 1) return 0;
  fail(be, what, s.err, s.code);
  return st_errno(s.err, s.code);
}

/* Marks the stored records of a bucket under a prefix deleted (tombstones). */
typedef struct pdel_arg {
  int b;
  const char *p;
  size_t n;
  int rc;
} pdel_arg;

static bool pdel_cb(nbe *be, const char *key, size_t klen, const unwrapped *u, void *arg) {
  pdel_arg *a = arg;
  if (klen < a->n || memcmp(key, a->p, a->n) != 0) return true;
  pub_raw_kv(be, a->b, key, klen, NULL, true);
  return true;
}

static int prefix_delete(nbe *be, int b, const char *p, size_t n) {
  tern_buf f = {0};
  const char *filter = "";
  if (n && p[n - 1] == '/') {
    enc_key(&f, p, n - 1);
    tern_buf_puts(&f, ".>");
    filter = tern_buf_cstr(&f);
  }
  pdel_arg a = {b, p, n, 0};
  int r = kv_scan(be, b, filter, pdel_cb, &a, NULL);
  tern_buf_free(&f);
  return r;
}

/* Writes the unconditional part of a group: plain KV writes, markers, purges, forgets,
 * deletes by prefix. Idempotent (a replay may run it twice). */
typedef struct upart_inbox {
  char *name;
  size_t n;
  uint64_t upto, purge_sseq, last_sseq, epoch;
  bool all, forget;
} upart_inbox;

static int marker_put(nbe *be, const char *name, size_t n, uint64_t last, uint64_t epoch) {
  uint8_t d[16];
  for (int i = 0; i < 8; i++) d[i] = (uint8_t)(last >> (56 - 8 * i)), d[8 + i] = (uint8_t)(epoch >> (56 - 8 * i));
  natsMsg *m = msg_new(subj_mk(be, &be->sbuf, name, n), d, sizeof d);
  if (!m) return -ENOMEM;
  jsPubAck *pa = NULL;
  jsErrCode code = 0;
  jsPubOptions o;
  jsPubOptions_Init(&o);
  o.MaxWait = WAIT_MS;
  natsStatus s = js_PublishMsg(&pa, be->js, m, &o, &code);
  natsMsg_Destroy(m);
  jsPubAck_Destroy(pa);
  if (s != NATS_OK) {
    fail(be, "marker", s, code);
    return st_errno(s, code);
  }
  return 0;
}

static int inbox_upart(nbe *be, const upart_inbox *u) {
  int r = 0;
  if (u->forget) {
    if ((r = marker_put(be, u->name, u->n, 0, 0)) < 0) return r;
  } else if (u->all && u->upto) {
    if ((r = marker_put(be, u->name, u->n, u->upto, u->epoch)) < 0) return r;
  }
  /* Purges below a stream seq, never the whole subject: an entry appended after what this
   * group saw (another node's, or this group's own after a forget) stays. */
  uint64_t below = (u->forget || u->all) ? u->last_sseq + 1 : u->purge_sseq + 1;
  if (below > 1) {
    char *s = tern_strdup(subj_in(be, &be->sbuf, u->name, u->n));
    r = purge_subject(be, be->s_in, s, below);
    tern_free(s);
  }
  return r;
}

/* Bytes of a commit record's message besides the record: its subject and headers. */
enum { REC_HEADROOM = 4096 };

/* Publishes a message on a node's commit subject: a record (hdr NULL), or a mark naming the
 * record at `of` (hdr "Tern-Claimed" or "Tern-Abort"), which must follow it directly on that
 * subject (expected last subject seq). *seq its stream seq; -EAGAIN when something else came
 * after the record first. */
static int commit_pub(nbe *be, const char *subj, const tern_buf *rec, const char *hdr, uint64_t of, uint64_t *seq) {
  natsMsg *m = msg_new(subj, hdr ? "" : rec->data, hdr ? 0 : rec->len);
  if (!m) return -ENOMEM;
  jsPubOptions o;
  jsPubOptions_Init(&o);
  o.MaxWait = WAIT_MS;
  if (hdr) {
    hdr_set_u64(m, hdr, of);
    o.ExpectLastSubjectSeq = of;
  }
  jsPubAck *pa = NULL;
  jsErrCode code = 0;
  natsStatus s = js_PublishMsg(&pa, be->js, m, &o, &code);
  natsMsg_Destroy(m);
  if (s != NATS_OK) {
    if (hdr && (code == JSStreamWrongLastSequenceErr || code == 10071)) {
      snprintf(be->why, sizeof be->why, "%s of commit record %" PRIu64 ": it is not the last on %s", hdr, of, subj);
      return -EAGAIN;
    }
    fail(be, "commit record", s, code);
    return st_errno(s, code);
  }
  *seq = pa->Sequence;
  jsPubAck_Destroy(pa);
  return 0;
}

/* Publishes this node's commit record, or its "claimed" mark (claimed_mark: every claim of
 * the record at rec_seq won); *seq its stream seq. Another node that finds the record old
 * and unmarked rolls it back, fencing it first with a Tern-Abort under the same condition as
 * the mark (foreign_one), so only one of the two is ever stored: -ECANCELED, the abort was
 * first and the group must be undone and run again. */
static int record_put(nbe *be, const tern_buf *rec, bool claimed_mark, uint64_t rec_seq, uint64_t *seq) {
  tern_buf subj = {0};
  tern_buf_printf(&subj, "%s.commit.%s", be->ns, be->node_enc);
  int rc = commit_pub(be, tern_buf_cstr(&subj), rec, claimed_mark ? "Tern-Claimed" : NULL, rec_seq, seq);
  tern_buf_free(&subj);
  return rc == -EAGAIN ? -ECANCELED : rc;
}

/* Builds the record and the unconditional inbox part of the group. */
typedef struct gplan {
  claim *claims;
  size_t nclaims, cap;
  bool unknown;   /* a claim failed without an answer (a timeout): it may be stored (claims_run) */
  upart_inbox *ups;
  size_t nups;
  gkv **plain; /* unconditional KV writes */
  size_t nplain;
  size_t nwrites; /* everything the group writes */
} gplan;

static void plan_claim(gplan *p, claim c) {
  if (p->nclaims == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 16;
    p->claims = tern_realloc(p->claims, p->cap * sizeof *p->claims);
  }
  p->claims[p->nclaims++] = c;
}

static void plan_free(gplan *p) {
  tern_free(p->claims);
  for (size_t i = 0; i < p->nups; i++) tern_free(p->ups[i].name);
  tern_free(p->ups);
  tern_free(p->plain);
}

static void rec_upart(tern_buf *rec, const upart_inbox *u) {
  tern_buf_putc(rec, 'P');
  rec_str(rec, u->name, u->n);
  tern_buf_put_be64(rec, u->upto);
  tern_buf_put_be64(rec, u->purge_sseq);
  tern_buf_put_be64(rec, u->last_sseq);
  tern_buf_putc(rec, u->all);
  tern_buf_put_be64(rec, u->epoch);
  tern_buf_putc(rec, u->forget);
}

static void rec_write(nbe *be, tern_buf *rec, const gkv *g) {
  tern_buf w = {0};
  wrap(be, &w, g->w == 2, g->w == 2 ? tern_now_ms() : g->ts, g->val.data, g->val.len);
  tern_buf_putc(rec, 'W');
  tern_buf_putc(rec, (char)g->b);
  rec_str(rec, g->key, g->klen);
  tern_buf_putc(rec, (char)g->w);
  tern_buf_put_be32(rec, w.len);
  tern_buf_append(rec, w.data, w.len);
  tern_buf_free(&w);
}

static void plan_build(nbe *be, gplan *p, tern_buf *rec) {
  memset(p, 0, sizeof *p);
  tern_buf_reset(rec);
  tern_buf_putc(rec, REC_VERSION);
  tern_buf_put_be64(rec, be->gid);
  tern_map_iter it = {0};
  const char *k;
  size_t kl;
  void *v;
  p->ups = tern_calloc(be->inboxes.count + 1, sizeof *p->ups);
  while (tern_map_next(&be->inboxes, &it, &k, &kl, &v)) {
    ginbox *ib = v;
    /* Staged appends that the group itself purged are never published. */
    size_t skip = 0;
    if (ib->purge_upto >= ib->base_next) skip = (size_t)TERN_MIN((uint64_t)ib->napps, ib->purge_upto - ib->base_next + 1);
    if (ib->napps > skip) {
      tern_buf_putc(rec, 'A');
      rec_str(rec, ib->name, ib->nlen);
      tern_buf_put_be64(rec, ib->base_next + skip);
      tern_buf_put_be64(rec, ib->napps - skip);
      tern_buf_put_be64(rec, ib->last_sseq);
      tern_buf_put_be64(rec, ib->epoch);
      for (size_t i = skip; i < ib->napps; i++) plan_claim(p, (claim){'A', ib, ib->base_next + i, NULL, -1});
      p->nwrites += ib->napps - skip;
    }
    bool stored_purge = ib->purge_upto && ib->purge_upto >= 1 && ib->last_sseq && ib->purge_sseq;
    bool all_stored = ib->purge_upto + 1 >= ib->base_next;
    bool becomes_empty = all_stored && ib->napps <= skip;
    if (ib->forgot || stored_purge || (becomes_empty && ib->purge_upto && ib->purge_upto >= ib->base_next - 1 && ib->base_next > 1 && ib->last_sseq)) {
      upart_inbox *u = &p->ups[p->nups++];
      u->name = tern_strndup(ib->name, ib->nlen);
      u->n = ib->nlen;
      u->upto = TERN_MIN(ib->purge_upto, ib->next - 1);
      u->purge_sseq = ib->purge_sseq;
      u->last_sseq = ib->last_sseq;
      u->epoch = ib->epoch;
      u->all = becomes_empty;
      u->forget = ib->forgot;
      rec_upart(rec, u);
      p->nwrites++;
    } else if (becomes_empty && ib->purge_upto >= ib->base_next && !ib->last_sseq) {
      /* appended and purged within the group only: the marker keeps the seqs */
      upart_inbox *u = &p->ups[p->nups++];
      u->name = tern_strndup(ib->name, ib->nlen);
      u->n = ib->nlen;
      u->upto = ib->purge_upto;
      u->epoch = ib->epoch;
      u->all = true;
      rec_upart(rec, u);
      p->nwrites++;
    }
  }
  it = (tern_map_iter){0};
  p->plain = tern_calloc(be->kvs.count + 1, sizeof *p->plain);
  while (tern_map_next(&be->kvs, &it, &k, &kl, &v)) {
    gkv *g = v;
    if (!g->w) continue;
    if (g->w == 2 && g->read && !g->old_live && g->rev == 0) continue; /* deleting what is not there */
    p->nwrites++;
    if (g->read) {
      tern_buf_putc(rec, 'K');
      tern_buf_putc(rec, (char)g->b);
      rec_str(rec, g->key, g->klen);
      tern_buf_put_be64(rec, g->rev);
      tern_buf_putc(rec, g->old_live);
      tern_buf_put_be32(rec, g->old.len);
      tern_buf_append(rec, g->old.data, g->old.len);
      plan_claim(p, (claim){'K', NULL, 0, g, -1});
    } else {
      rec_write(be, rec, g);
      p->plain[p->nplain++] = g;
    }
  }
  for (size_t i = 0; i < be->npdels; i++) {
    tern_buf_putc(rec, 'X');
    tern_buf_putc(rec, (char)be->pdels[i].b);
    rec_str(rec, be->pdels[i].p, be->pdels[i].n);
    p->nwrites++;
  }
}

/* The claims' one order on every node: keys (by bucket and key) before appends (by inbox and
 * seq). Appends of one inbox stay adjacent and ascending, as pub_append's `first` needs. */
static int claim_cmp(const void *x, const void *y) {
  const claim *a = x, *b = y;
  if (a->kind != b->kind) return a->kind == 'K' ? -1 : 1;
  const char *an, *bn;
  size_t al, bl;
  if (a->kind == 'K') {
    if (a->g->b != b->g->b) return a->g->b < b->g->b ? -1 : 1;
    an = a->g->key, al = a->g->klen, bn = b->g->key, bl = b->g->klen;
  } else {
    an = a->ib->name, al = a->ib->nlen, bn = b->ib->name, bl = b->ib->nlen;
  }
  int r = memcmp(an, bn, TERN_MIN(al, bl));
  if (r) return r;
  if (al != bl) return al < bl ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Publishes the claims; 0, -EAGAIN (lost one), or another negative errno.
 *
 * Pipelined, a group's claims land on their streams independently, so two writers whose groups
 * share two claims (an inbox seq and a compare-and-set key, say) can each win one and both
 * lose, and, retrying in step, lose together again until the retries run out (seen on a
 * 3-server cluster). So after a lost race (be->contended) the claims go one at a time in the
 * order every node shares (claim_cmp), stopping at the first lost one: of two writers, the
 * one that wins their first shared claim goes on and the other stops there, as locks taken in
 * one order cannot deadlock. The uncontended path stays pipelined, and so do big groups (a
 * round trip per claim would cost more than the random pause of a pipelined retry). */
/* Publishes claim i of the plan into a new slot. */
static void claim_publish(nbe *be, gplan *p, size_t i) {
  claim *c = &p->claims[i];
  if (c->kind == 'A') {
    ginbox *ib = c->ib;
    size_t idx = (size_t)(c->seq - ib->base_next);
    size_t off = 0;
    for (size_t j = 0; j < idx; j++) off += 4 + tern_get_be32(ib->apps.data + off);
    size_t len = tern_get_be32(ib->apps.data + off);
    bool first = i == 0 || p->claims[i - 1].kind != 'A' || p->claims[i - 1].ib != ib;
    c->slot = pub_append(be, ib, c->seq, (const uint8_t *)ib->apps.data + off + 4, len, first);
  } else {
    c->slot = pub_kv(be, c->g, true);
  }
}

/* The server said the claim was not stored because its stream had no leader (a NATS server
 * lost, an election under way): no responders, or JetStream's "not available" answers. A
 * timeout is not among them: that claim may be stored. */
static bool claim_unstored(nbe *be, const claim *c) {
  if (c->slot < 0) return false;
  slot s = slot_get(be, c->slot);
  return s.state == 2 && (s.err == NATS_NO_RESPONDERS || s.code == JSClusterNotAvailErr ||
                          s.code == JSStreamOfflineErr || s.code == JSNotEnabledErr);
}

/* Publishes again the claims a leaderless stream did not store, after 100 ms doubling to 1 s,
 * for about 5 s. Undoing the group instead is not harmless: its other claims are stored and
 * readable (another node's drain may deliver them before the undo), and the client's resend
 * of the same id, whose de-dup key went with the undo, is stored again under a new msg_id.
 * That delivered ~157 messages of 1,500 twice when integration/cluster killed a NATS server
 * under load in CI (KV claims answered "no responders" while the inbox appends landed). The
 * commit thread waits meanwhile; the groups behind would find no leader either. */
static bool claim_retryable(nbe *be, gplan *p, size_t i) {
  claim *c = &p->claims[i];
  if (!claim_unstored(be, c)) return false;
  if (c->kind != 'A') return true;
  /* An append is stored again only while no later seq of its inbox is: stored after a later
   * one, it would stand behind it in the stream, and readers take an inbox in stream order.
   * Then the group fails as before (rare: a leader lost and another elected inside one
   * pipelined burst). */
  for (size_t j = i + 1; j < p->nclaims; j++) {
    const claim *d = &p->claims[j];
    if (d->kind == 'A' && d->ib == c->ib && d->slot >= 0 && slot_get(be, d->slot).state == 1) return false;
  }
  return true;
}

static void claims_retry(nbe *be, gplan *p) {
  for (unsigned round = 0; round < CLAIM_RETRIES; round++) {
    size_t n = 0;
    for (size_t i = 0; i < p->nclaims; i++) n += claim_retryable(be, p, i);
    if (!n) return;
    if (round == 0) TERN_WARN("nats: claims found no stream leader, publishing them again", "claims=%zu", n);
    nats_Sleep(TERN_MIN(100 << round, 1000));
    for (size_t i = 0; i < p->nclaims; i++)
      if (claim_retryable(be, p, i)) claim_publish(be, p, i);
    slots_wait(be, 0);
  }
}

static int claims_run(nbe *be, gplan *p) {
  slots_reset(be);
  bool serial = be->contended > 0 && p->nclaims <= SERIAL_CLAIMS_MAX;
  if (serial && p->nclaims > 1) qsort(p->claims, p->nclaims, sizeof *p->claims, claim_cmp);
  for (size_t i = 0; i < p->nclaims; i++) p->claims[i].slot = -4; /* not published */
  for (size_t i = 0; i < p->nclaims; i++) {
    claim *c = &p->claims[i];
    claim_publish(be, p, i);
    if (serial) {
      slots_wait(be, 0);
      claims_retry(be, p);
      if (c->slot < 0) break;
      slot s = slot_get(be, c->slot);
      if (s.state != 1 || s.dup) break;
    }
  }
  slots_wait(be, 0);
  if (!serial) claims_retry(be, p);
  if (be->lose_ack > 0 && (size_t)be->lose_ack <= p->nclaims) { /* test hook: an ack lost */
    long i = p->claims[be->lose_ack - 1].slot;
    be->lose_ack = 0;
    if (i >= 0) {
      pthread_mutex_lock(&be->mu);
      be->slots[i].state = 2;
      be->slots[i].err = NATS_TIMEOUT;
      be->slots[i].code = 0;
      pthread_mutex_unlock(&be->mu);
    }
  }
  int rc = 0;
  for (size_t i = 0; i < p->nclaims; i++) {
    claim *c = &p->claims[i];
    if (c->slot == -4) continue;
    if (c->slot < 0) {
      rc = rc ? rc : -ENOMEM;
      continue;
    }
    slot s = slot_get(be, c->slot);
    if (s.state == 1 && !s.dup) continue;
    if (s.state == 1 && s.dup) {
      /* Another writer's claim of the same seq, or a dead one (see claim_id). */
      natsMsg *m = NULL;
      int r = c->kind == 'A' ? dget(be, be->s_in, s.seq, NULL, NULL, &m) : 1;
      if (r == 1 && m) natsMsg_Destroy(m);
      else if (r == 0) burn(be, c->ib, c->seq);
      be->failed = false;
      s.state = 3; /* lost */
      c->slot = -2;
    } else if (s.code == JSStreamWrongLastSequenceErr || s.code == 10071) {
      c->slot = -2;
    } else {
      fail(be, c->kind == 'A' ? "append" : "kv write", s.err, s.code);
      /* No answer (a timeout, the connection lost) is not a refusal: the servers may have
       * stored it, or store it yet (a new stream leader commits what its predecessor had
       * replicated). A JetStream error code, or no responders, is a refusal. */
      if (s.code == 0 && s.err != NATS_NO_RESPONDERS) p->unknown = true;
      int r = st_errno(s.err, s.code);
      if (!rc || rc == -EAGAIN) rc = r;
      c->slot = -3;
      continue;
    }
    if (!rc) rc = -EAGAIN;
  }
  if (rc == -EAGAIN) snprintf(be->why, sizeof be->why, "another writer was first");
  return rc;
}

/* Undoes the claims that were stored (after a lost race).
 *
 * An append won is not given back: a void entry (headers only, Tern-Void) keeps its seq, and
 * the entry itself is deleted once the void is stored. Freeing the seq instead made the two
 * writers of a busy inbox chase it: each won the freed seq of one inbox and lost another's,
 * undid, and met again at the same claim ids, until a group's retries ran out (2 nodes, 150
 * msg/s). Seqs may so have gaps, as they may anyway (docs/cluster-layout.md §10); readers skip
 * voids, and acks purge them with the rest. A void lands after the entries other writers
 * stored meanwhile, so it names the stream seq of the entry it replaces (Tern-Was), from
 * where inbox_load looks for the inbox's highest seq. */
static int claims_undo(nbe *be, gplan *p) {
  int rc = 0;
  /* what was won, read before the slots are reused: the entry's stream seq, or 0 for a key */
  size_t nwon = 0;
  claim **won = tern_calloc(p->nclaims + 1, sizeof *won);
  uint64_t *won_sseq = tern_calloc(p->nclaims + 1, sizeof *won_sseq);
  for (size_t i = 0; i < p->nclaims; i++) {
    claim *c = &p->claims[i];
    if (c->slot < 0) continue;
    slot s = slot_get(be, c->slot);
    if (s.state != 1 || s.dup) continue;
    won[nwon] = c;
    won_sseq[nwon++] = c->kind == 'A' ? s.seq : 0;
  }
  slots_reset(be);
  for (size_t i = 0; i < nwon; i++) {
    claim *c = won[i];
    if (c->kind != 'A') continue;
    ginbox *ib = c->ib;
    natsMsg *m = msg_new(subj_in(be, &be->sbuf, ib->name, ib->nlen), NULL, 0);
    if (!m) {
      rc = -ENOMEM;
      continue;
    }
    hdr_set_u64(m, "Tern-Seq", c->seq);
    hdr_set_u64(m, "Tern-Epoch", ib->epoch);
    hdr_set_u64(m, "Tern-Gid", be->gid);
    natsMsgHeader_Set(m, "Tern-Void", "1");
    hdr_set_u64(m, "Tern-Was", won_sseq[i]); /* where the higher seqs stored before it start (inbox_load) */
    jsPubOptions o;
    jsPubOptions_Init(&o);
    claim_id(be, &be->sbuf2, ib, c->seq);
    tern_buf_puts(&be->sbuf2, "!void"); /* a replayed undo stores one void */
    o.MsgId = tern_buf_cstr(&be->sbuf2);
    if (pub_async(be, m, &o) < 0) rc = -ENOMEM;
  }
  slots_wait(be, 0);
  for (size_t i = 0; i < be->nslots && !rc; i++) rc = slot_rc(be, (long)i, "void entry");
  /* without its void a deleted entry would free the seq: keep the entries then (the replay
   * of the commit record rolls them back) */
  for (size_t i = 0; i < nwon && !rc; i++) {
    if (won[i]->kind != 'A') continue;
    int r = del_msg(be, be->s_in, won_sseq[i]);
    if (r < 0) rc = r;
  }
  slots_reset(be);
  for (size_t i = 0; i < nwon; i++) {
    gkv *g = won[i]->g;
    if (won[i]->kind == 'A') continue;
    if (g->old_live) pub_raw_kv(be, g->b, g->key, g->klen, &g->old, false);
    else pub_raw_kv(be, g->b, g->key, g->klen, NULL, true);
  }
  slots_wait(be, 0);
  tern_free(won);
  tern_free(won_sseq);
  return rc;
}

/* The group's new shared bodies, before its claims. Another node may drain an inbox between
 * this group's claims (the envelopes are visible from then on) and its KV writes, and an
 * envelope it reads there must find its body: otherwise a group message reached the other
 * node's devices without its text (tern-bench groups on 2 nodes: "corrupt", body absent). A
 * body is keyed by its message id, unique, so writing it early conflicts with nobody; a group
 * that fails after this leaves it to the bucket's TTL (inbox.ttl), and the commit record
 * still names it, so a replay writes it again, harmlessly. */
static int bodies_first(nbe *be, gplan *p) {
  slots_reset(be);
  size_t kept = 0, early = 0;
  for (size_t i = 0; i < p->nplain; i++) {
    gkv *g = p->plain[i];
    if (g->b == TERN_BUCKET_BODIES && g->w == 1) {
      pub_kv(be, g, false);
      early++;
    } else {
      p->plain[kept++] = g;
    }
  }
  p->nplain = kept;
  if (!early) return 0;
  slots_wait(be, 0);
  int rc = 0;
  for (size_t i = 0; i < be->nslots && !rc; i++) rc = slot_rc(be, (long)i, "body write");
  return rc;
}

static int uparts_run(nbe *be, gplan *p) {
  slots_reset(be);
  int rc = 0;
  for (size_t i = 0; i < p->nplain; i++) pub_kv(be, p->plain[i], false);
  for (size_t i = 0; i < p->nups && !rc; i++) rc = inbox_upart(be, &p->ups[i]);
  for (size_t i = 0; i < be->npdels && !rc; i++) rc = prefix_delete(be, be->pdels[i].b, be->pdels[i].p, be->pdels[i].n);
  slots_wait(be, 0);
  for (size_t i = 0; i < be->nslots && !rc; i++) rc = slot_rc(be, (long)i, "kv write");
  return rc;
}

/* "Envelope committed" to the other nodes: one core message per stored entry on
 * "<ns>.ev.<enc inbox>" (headers Tern-Seq, Tern-Node), fire and forget. A node that misses one
 * sees a gap at the next and drains. (The layout's per-user subjects come with the per-user
 * subscriptions; here every node subscribes "<ns>.ev.>".) */
static void events_publish(nbe *be, gplan *p) {
  for (size_t i = 0; i < p->nclaims; i++) {
    claim *c = &p->claims[i];
    if (c->kind != 'A' || c->slot < 0) continue;
    ginbox *ib = c->ib;
    size_t idx = (size_t)(c->seq - ib->base_next), off = 0;
    for (size_t j = 0; j < idx; j++) off += 4 + tern_get_be32(ib->apps.data + off);
    size_t len = tern_get_be32(ib->apps.data + off);
    tern_buf_reset(&be->sbuf);
    tern_buf_printf(&be->sbuf, "%s.ev.", be->ns);
    enc_token(&be->sbuf, ib->name, ib->nlen);
    natsMsg *m = msg_new(tern_buf_cstr(&be->sbuf), ib->apps.data + off + 4, len);
    if (!m) continue;
    hdr_set_u64(m, "Tern-Seq", c->seq);
    natsMsgHeader_Set(m, "Tern-Node", be->node);
    natsConnection_PublishMsg(be->nc, m);
    natsMsg_Destroy(m);
  }
}

static void on_event_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  nbe *be = closure;
  const char *from = NULL;
  size_t pre = strlen(be->ns) + 4;
  const char *subj = natsMsg_GetSubject(msg);
  if (natsMsgHeader_Get(msg, "Tern-Node", &from) == NATS_OK && from && strcmp(from, be->node) != 0 &&
      be->opts.on_envelope && strlen(subj) > pre) {
    tern_buf name = {0};
    dec_token(&name, subj + pre, strlen(subj) - pre);
    be->opts.on_envelope(be->opts.shared_arg, name.data, name.len, hdr_u64(msg, "Tern-Seq", NULL),
                         (const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    tern_buf_free(&name);
  }
  natsMsg_Destroy(msg);
}

/* Envelope events and bus messages are core NATS: what other nodes published while this
 * connection was away, and what this node had published into a server that then died, is
 * lost. The owner reads its inboxes again (options.on_relink). */
static void on_relinked(void *arg) {
  nbe *be = arg;
  if (!atomic_load(&be->stop) && be->opts.on_relink) be->opts.on_relink(be->opts.shared_arg);
}

static int record_del(nbe *be, uint64_t seq) { return seq ? del_msg(be, be->s_commit, seq) : 0; }

static int replay(nbe *be);

/* The replay of a group whose claims may be stored unanswered, before the client hears of
 * the failure: its answer makes it send again, maybe through another node, whose group reads
 * the de-dup key the claims may have stored. Found there, the key answers the resend as a
 * duplicate of a message the replay then takes back: sent, never delivered (integration/
 * cluster, a NATS server killed under load: 25 messages of 1,500). Retried while the stream
 * elects a leader, as claims are (for 5 s); after that the record stays for n_idle's
 * replay, and a resend meanwhile may still meet the key. The group's own error is kept. */
static void replay_before_answer(nbe *be) {
  char why[sizeof be->why];
  memcpy(why, be->why, sizeof why);
  /* bounded in time, not rounds: under no quorum each round's reads wait out their 2 s */
  int64_t end = tern_now_ms() + 5000;
  for (unsigned round = 0; !atomic_load(&be->stop); round++) {
    be->failed = false;
    if (replay(be) == 0 || tern_now_ms() >= end) break;
    nats_Sleep(TERN_MIN(100 << TERN_MIN(round, 4u), 1000));
  }
  be->failed = true;
  memcpy(be->why, why, sizeof why);
}

static int n_commit(void *self, char *err, size_t errlen) {
  nbe *be = self;
  int rc = 0;
  if (be->replay_due && (rc = replay(be)) < 0) goto out;
  if (be->failed) {
    rc = -EIO;
    goto out;
  }
  gplan p;
  plan_build(be, &p, &be->rec);
  if (p.nwrites == 0) {
    plan_free(&p);
    be->contended = 0; /* the race is over: a re-run that writes nothing found it lost */
    return 0;
  }
  /* One write alone needs no record: it is atomic by itself. */
  bool need_rec = p.nwrites > 1;
  uint64_t rec_seq = 0, mark_seq = 0;
  /* The record is one JetStream message, so at most the server's max_payload (1 MiB by
   * default; the headroom is its subject and headers). Nothing is written yet: the committer
   * splits a group that is too big (backend.h, -EMSGSIZE). */
  int64_t max = natsConnection_GetMaxPayload(be->nc);
  if (need_rec && max > 0 && (int64_t)be->rec.len + REC_HEADROOM > max) {
    snprintf(be->why, sizeof be->why, "commit record of %zu bytes over max_payload %" PRId64, be->rec.len, max);
    rc = -EMSGSIZE;
    goto done;
  }
  if (need_rec && (rc = record_put(be, &be->rec, false, 0, &rec_seq)) < 0) {
    be->replay_due = true; /* a timed-out put may be stored all the same: nothing claimed, undone */
    goto done;
  }
  if ((rc = bodies_first(be, &p)) < 0) {
    if (record_del(be, rec_seq) < 0) be->replay_due = true;
    goto done;
  }
  be->rec_cur = rec_seq;
  rc = claims_run(be, &p);
  be->rec_cur = 0;
  if (rc < 0) {
    int r = claims_undo(be, &p);
    /* A claim that may be stored unanswered is not among those undone: deleting the record
     * now would make it a settled entry, delivered, while the client is told to send again,
     * and its resend is stored under a new msg_id (integration/cluster, a NATS server killed
     * under load: one message delivered twice). The record stays for the replay, which
     * finds what carries this group's gid and rolls it back; readers wait for it meanwhile. */
    if (r == 0 && !p.unknown) r = record_del(be, rec_seq);
    if (r < 0 || p.unknown) be->replay_due = true;
    if (p.unknown) replay_before_answer(be);
    if (rc == -EAGAIN) {
      /* Two writers that lost to each other would otherwise re-read and retry in step: a
       * random pause, growing with the losses in a row, lets one go first. */
      unsigned cap = 1u << TERN_MIN(be->contended, 3u);
      be->contended++;
      struct timespec ts = {0, (long)(1 + randombytes_uniform(cap * 2)) * 1000000L};
      nanosleep(&ts, NULL);
    }
    goto done;
  }
  be->contended = 0;
  if (be->crash_at == 1 && need_rec) raise(SIGKILL);
  /* Every group with a record and claims is marked before anybody is told it is stored, a
   * group of claims only too: an unmarked record is one another node may roll back once it
   * is old (foreign_one), and the mark is what fences that off. */
  if (need_rec && p.nclaims) {
    if (be->mark_pause_ms) {
      nats_Sleep(be->mark_pause_ms);
      be->mark_pause_ms = 0;
    }
    rc = record_put(be, &be->rec, true, rec_seq, &mark_seq);
    if (rc == -ECANCELED) {
      /* Another node took this group for abandoned and is rolling it back: undo the claims
       * too (both undos are idempotent) and run the group again under a new record. */
      TERN_WARN("nats: another node rolled back this commit group; running it again", "record=%" PRIu64, rec_seq);
      be->failed = false;
      int r = claims_undo(be, &p);
      if (r == 0) r = record_del(be, rec_seq);
      if (r < 0) be->replay_due = true;
      rc = -EAGAIN;
      goto done;
    }
    if (rc < 0) {
      be->replay_due = true;
      goto done;
    }
  }
  if (be->crash_at == 2 && need_rec) raise(SIGKILL);
  if (p.nplain || p.nups || be->npdels) {
    rc = uparts_run(be, &p);
    /* The group is claimed: its replay would roll it forward, so failing it now only makes
     * the client send again what is stored, and its de-dup key, one of these writes, is
     * not there yet to answer the resend: stored twice (integration/cluster, a NATS server
     * killed under load: KV writes answered "no responders" for a moment). The writes are
     * idempotent, so they go again while their streams elect a leader, as claims do. */
    for (unsigned round = 0; rc == -ENOTCONN && round < CLAIM_RETRIES; round++) {
      if (round == 0) TERN_WARN("nats: a claimed group's writes found no stream leader, writing them again", "why=%s",
                                tern_log_quote(be->why));
      nats_Sleep(TERN_MIN(100 << round, 1000));
      be->failed = false;
      be->why[0] = 0;
      rc = uparts_run(be, &p);
    }
    if (rc < 0) {
      be->replay_due = true;
      goto done;
    }
  }
  tern_map_each(&be->inboxes, erase_run_cb, be);
  if (be->failed) {
    be->failed = false; /* the group is stored; only an original stays beside its delete */
    TERN_WARN("nats: a deleted message's original could not be removed", "why=%s", tern_log_quote(be->why));
  }
  /* The record before its mark: a record left without its mark (a kill between the two
   * deletes) would be rolled back, by this node's replay or another's (foreign_one), though
   * its group is done; a mark left without its record is only deleted. */
  if ((rc = record_del(be, rec_seq)) < 0 || (rc = record_del(be, mark_seq)) < 0) {
    /* Done, but the record stays, and readers wait while it does (entry_settled): a replay
     * deletes it (n_idle's, or the next commit's). Replayed as a record it would be rolled back if it has no
     * mark (a group of claims only), taking away what the client was told is stored. */
    be->replay_due = true;
    if (be->ndone < TERN_ARRAY_LEN(be->done_recs)) be->done_recs[be->ndone++] = rec_seq;
  }
  /* After the record's delete: an event that makes another node drain (a shared body is
   * announced without the envelope) would otherwise find the group not done, and wait. */
  events_publish(be, &p);
  rc = 1;
done:
  plan_free(&p);
out:
  if (rc < 0) snprintf(err, errlen, "%s", be->why[0] ? be->why : strerror(-rc));
  if (rc == -ENOTCONN) atomic_store(&be->commit_unavail, true);
  else if (rc >= 0) atomic_store(&be->commit_unavail, false);
  return rc;
}

static void n_rollback(void *self) {
  nbe *be = self;
  group_clear(be);
}

/* The commit thread with nothing queued: a record a commit left (replay_due) is replayed now
 * rather than at the next commit, which on an idle node may be far off, while other nodes'
 * drains wait for that record to go (entry_settled). Again in 200 ms while it stays due. */
static uint64_t n_idle(void *self) {
  nbe *be = self;
  if (be->nforeign) foreign_run(be);
  if (!be->replay_due) return 0;
  if (replay(be) < 0) {
    /* retried every 200 ms: said at the first failure and then every 30 s, so that a record
     * left standing (other nodes' drains wait for it, then roll it themselves) shows in the log */
    int64_t now = tern_now_ms();
    if (now - be->idle_warned_ms >= 30000) {
      be->idle_warned_ms = now;
      TERN_WARN("nats: a left commit record could not be replayed, trying again", "why=%s", tern_log_quote(be->why));
    }
    be->failed = false;
    be->why[0] = 0;
  }
  return be->replay_due ? 200 : 0;
}

/* ---- replay ---------------------------------------------------------------------------------- */

/* Rolls back a group's appends to one inbox: the entries after last_sseq that claim seqs
 * [first, first + count) with the group's gid, found in one walk of the subject (seqs ascend
 * in stream order; the first entry per seq is the claim, a later one its void). A read that
 * fails is an error, not "none": a roll back that took it for none left a stored entry
 * without its record, settled and delivered while the client sent it again
 * (integration/cluster, a NATS server killed under load: the replay's reads timed out while
 * the stream elected a leader). One walk per seq instead made a 400-message group's replay
 * some 80,000 reads. 0 or a negative errno. */
static int undo_own_entries(nbe *be, const char *name, size_t n, uint64_t last_sseq, uint64_t first, uint64_t count,
                            uint64_t gid) {
  if (!count) return 0;
  char *subj = tern_strdup(subj_in(be, &be->sbuf2, name, n));
  bool *done = tern_calloc((size_t)count, sizeof *done);
  uint64_t s = last_sseq + 1;
  int rc = 0;
  for (;;) {
    natsMsg *m = NULL;
    uint64_t ss = 0;
    int r = lnext(be, be->s_in, s, subj, &m, &ss);
    if (r != 1) {
      rc = r < 0 ? r : 0;
      break;
    }
    uint64_t t = hdr_u64(m, "Tern-Seq", NULL), g = hdr_u64(m, "Tern-Gid", NULL);
    natsMsg_Destroy(m);
    if (t >= first + count) break;
    if (g == gid && t >= first && !done[t - first]) {
      done[t - first] = true;
      if ((rc = del_msg(be, be->s_in, ss)) < 0) break;
    }
    s = ss + 1;
  }
  tern_free(done);
  tern_free(subj);
  return rc;
}

/* Rolls one record of `node` forward (claimed) or back. */
static int replay_one(nbe *be, const uint8_t *d, size_t n, bool claimed, const char *node) {
  size_t nodelen = strlen(node);
  rd r = {d, d + n, false};
  if (rd_be(&r, 1) != REC_VERSION) return 0; /* not ours to read: drop it */
  uint64_t gid = rd_be(&r, 8);
  uint64_t save_gid = be->gid;
  be->gid = gid;
  int rc = 0;
  slots_reset(be);
  while (r.p < r.end && !r.bad && rc == 0) {
    int tag = (int)rd_be(&r, 1);
    if (tag == 'A') {
      size_t nl = rd_be(&r, 2);
      const char *name = rd_bytes(&r, nl);
      uint64_t first = rd_be(&r, 8), count = rd_be(&r, 8), last_sseq = rd_be(&r, 8);
      (void)rd_be(&r, 8);
      if (r.bad || claimed) continue;
      rc = undo_own_entries(be, name, nl, last_sseq, first, count, gid);
    } else if (tag == 'K') {
      int b = (int)rd_be(&r, 1);
      size_t kl = rd_be(&r, 2);
      const char *key = rd_bytes(&r, kl);
      (void)rd_be(&r, 8);
      bool old_live = rd_be(&r, 1);
      size_t ol = rd_be(&r, 4);
      const char *old = rd_bytes(&r, ol);
      if (r.bad || claimed || b >= TERN_BUCKET__COUNT) continue;
      /* Restore only what still carries our gid. */
      tern_buf cur = {0};
      uint64_t rev;
      int g = kv_fetch(be, b, key, kl, &cur, &rev, NULL);
      unwrapped u;
      if (g == 1 && unwrap((const uint8_t *)cur.data, cur.len, &u) && u.gid == gid && u.nodelen == nodelen &&
          memcmp(u.node, node, nodelen) == 0) {
        tern_buf ob = {0};
        tern_buf_append(&ob, old, ol);
        pub_raw_kv(be, b, key, kl, &ob, !old_live);
        tern_buf_free(&ob);
      } else if (g < 0) {
        rc = g;
      }
      tern_buf_free(&cur);
    } else if (tag == 'W') {
      int b = (int)rd_be(&r, 1);
      size_t kl = rd_be(&r, 2);
      const char *key = rd_bytes(&r, kl);
      (void)rd_be(&r, 1);
      size_t wl = rd_be(&r, 4);
      const char *w = rd_bytes(&r, wl);
      if (r.bad || !claimed || b >= TERN_BUCKET__COUNT) continue;
      tern_buf wb = {0};
      tern_buf_append(&wb, w, wl);
      pub_raw_kv(be, b, key, kl, &wb, false);
      tern_buf_free(&wb);
    } else if (tag == 'P') {
      upart_inbox u = {0};
      u.n = rd_be(&r, 2);
      const char *name = rd_bytes(&r, u.n);
      u.upto = rd_be(&r, 8);
      u.purge_sseq = rd_be(&r, 8);
      u.last_sseq = rd_be(&r, 8);
      u.all = rd_be(&r, 1);
      u.epoch = rd_be(&r, 8);
      u.forget = rd_be(&r, 1);
      if (r.bad || !claimed) continue;
      u.name = tern_strndup(name, u.n);
      rc = inbox_upart(be, &u);
      tern_free(u.name);
    } else if (tag == 'X') {
      int b = (int)rd_be(&r, 1);
      size_t pl = rd_be(&r, 2);
      const char *pfx = rd_bytes(&r, pl);
      if (r.bad || !claimed || b >= TERN_BUCKET__COUNT) continue;
      rc = prefix_delete(be, b, pfx, pl);
    } else {
      break;
    }
  }
  slots_wait(be, 0);
  for (size_t i = 0; i < be->nslots && !rc; i++) {
    slot s = slot_get(be, (long)i);
    if (s.state == 2) rc = st_errno(s.err, s.code);
  }
  be->gid = save_gid;
  return rc;
}

/* Replays this node's records left in NS_COMMIT (a crash, or a commit cut short). */
static int replay(nbe *be) {
  tern_buf subj = {0};
  tern_buf_printf(&subj, "%s.commit.%s", be->ns, be->node_enc);
  const char *sj = tern_buf_cstr(&subj);
  uint64_t s = 1;
  int rc = 0;
  /* records first (with whether each was marked claimed), then act */
  typedef struct pend {
    uint64_t seq, mark, abort; /* abort: another node's Tern-Abort (foreign_one), rolled back */
    natsMsg *m;
  } pend;
  pend *ps = NULL;
  size_t np = 0, cap = 0;
  for (;;) {
    natsMsg *m = NULL;
    /* From the leader: a direct get may be answered by a follower that has not applied the
     * record yet (it was written a moment ago), and a replay that finds nothing ends the
     * replay's debt; the record then held other nodes' readers for 30 s (entry_settled). */
    uint64_t ss = 0;
    int r = lnext(be, be->s_commit, s, sj, &m, &ss);
    if (r < 0) {
      rc = r;
      break;
    }
    if (r == 0) break;
    bool ok, aborted = false;
    uint64_t claimed = hdr_u64(m, "Tern-Claimed", &ok);
    if (!ok) claimed = hdr_u64(m, "Tern-Abort", &aborted);
    if (ok || aborted) {
      for (size_t i = 0; i < np; i++)
        if (ps[i].seq == claimed) *(aborted ? &ps[i].abort : &ps[i].mark) = ss;
      natsMsg_Destroy(m);
      /* a mark whose record is gone: just delete it */
      bool found = false;
      for (size_t i = 0; i < np; i++) found |= ps[i].seq == claimed;
      if (!found) del_msg(be, be->s_commit, ss);
    } else {
      if (np == cap) {
        cap = cap ? cap * 2 : 8;
        ps = tern_realloc(ps, cap * sizeof *ps);
      }
      ps[np++] = (pend){ss, 0, 0, m};
    }
    s = ss + 1;
  }
  for (size_t i = 0; i < np; i++) {
    bool done = false; /* its group finished: only the record is left to delete */
    for (size_t j = 0; j < be->ndone; j++) done |= be->done_recs[j] == ps[i].seq;
    if (rc == 0) {
      if (!done) {
        TERN_INFO("nats: replaying a commit record", "seq=%" PRIu64 " claimed=%d", ps[i].seq, ps[i].mark != 0);
        rc = replay_one(be, (const uint8_t *)natsMsg_GetData(ps[i].m), (size_t)natsMsg_GetDataLength(ps[i].m), ps[i].mark != 0,
                        be->node);
      }
      if (rc == 0) rc = del_msg(be, be->s_commit, ps[i].seq); /* the record first (n_commit) */
      if (rc == 0 && ps[i].mark) rc = del_msg(be, be->s_commit, ps[i].mark);
      if (rc == 0 && ps[i].abort) rc = del_msg(be, be->s_commit, ps[i].abort);
    }
    natsMsg_Destroy(ps[i].m);
  }
  tern_free(ps);
  tern_buf_free(&subj);
  if (rc == 0) {
    be->replay_due = false;
    be->ndone = 0;
  } else {
    be->replay_due = true;
  }
  return rc;
}

/* The record a mark on a commit subject names (*claimed: Tern-Claimed, else Tern-Abort), or 0
 * with *any false for a record. */
static uint64_t mark_of(natsMsg *m, bool *claimed, bool *any) {
  uint64_t of = hdr_u64(m, "Tern-Claimed", claimed);
  if (*claimed) {
    *any = true;
    return of;
  }
  of = hdr_u64(m, "Tern-Abort", any);
  return *any ? of : 0;
}

/* Another node's record that entry_settled found older than unsettled_ms: its node died
 * mid-commit, or cannot finish (cut off from the servers). What follows the record on its
 * node's subject decides the direction: its "claimed" mark, forward; its Tern-Abort (an
 * earlier roll back cut short), back; a later record, back (that node moved on, and a mark
 * must follow its record directly, so this one can no longer be marked); nothing, and this
 * node publishes a Tern-Abort under the mark's own condition. If the owner is alive and
 * marks first, the abort is refused and the mark read; if the abort is first, the owner's
 * mark is refused and it undoes and re-runs its group (n_commit). Either way one direction.
 * Then the record (and its mark) is deleted. 0 when done or already gone, or a negative
 * errno (tried again at the next read that meets the entry). */
static int foreign_one(nbe *be, uint64_t rec) {
  natsMsg *m = NULL;
  jsErrCode code = 0;
  natsStatus s = js_GetMsg(&m, be->js, be->s_commit, rec, NULL, &code);
  if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) return 0;
  if (s != NATS_OK) {
    fail(be, "get a commit record", s, code);
    return st_errno(s, code);
  }
  tern_buf pre = {0}, node = {0};
  tern_buf_printf(&pre, "%s.commit.", be->ns);
  const char *subj = natsMsg_GetSubject(m);
  int rc = 0;
  bool claimed, ismark;
  mark_of(m, &claimed, &ismark);
  if (strncmp(subj, pre.data, pre.len) != 0 || ismark) {
    rc = -EINVAL; /* Tern-Rec named something that is not a record */
    failf(be, "an inbox entry names a commit record that is not one");
    goto out;
  }
  dec_token(&node, subj + pre.len, strlen(subj) - pre.len);
  const char *nd = tern_buf_cstr(&node);
  if (!strcmp(nd, be->node)) { /* ours: the own replay knows which of our groups finished */
    be->replay_due = true;
    goto out;
  }
  bool forward = false, fenced = false;
  uint64_t mark = 0;
  for (int tries = 0;; tries++) {
    natsMsg *nx = NULL;
    uint64_t ss = 0;
    int r = lnext(be, be->s_commit, rec + 1, subj, &nx, &ss);
    if (r < 0) {
      rc = r;
      goto out;
    }
    if (r == 1) {
      if (mark_of(nx, &claimed, &ismark) == rec && ismark) {
        forward = claimed;
        mark = ss;
      }
      natsMsg_Destroy(nx);
      break;
    }
    tern_buf none = {0};
    r = commit_pub(be, subj, &none, "Tern-Abort", rec, &mark);
    if (r == 0) {
      fenced = true;
      break;
    }
    if (r != -EAGAIN) {
      rc = r;
      goto out;
    }
    be->failed = false;
    if (tries >= 1) {
      /* Refused again with nothing after the record: the subject's last message was
       * deleted (nats-server 2.9 keeps a deleted last seq as the subject's last), so the
       * owner's mark, conditional on the record being last, is refused as well: nobody can
       * mark it any more. (Its own mark, deleted, would mean a finished group; the record
       * is deleted before its mark, so that is not this case.) */
      mark = 0;
      break;
    }
    /* something came after the record meanwhile: read it */
  }
  if (!fenced) {
    /* Is the record still there, now that what follows it is known? Its owner deletes a
     * finished group's record before its mark and before its next record, so a record gone
     * now may have been a finished group (its mark, or the next record, seen after it):
     * rolling that back would take a stored message away. One still there was not finished
     * when that was published, and can no longer be marked. */
    int h = lhas(be, be->s_commit, rec);
    if (h <= 0) {
      rc = h;
      goto out;
    }
  }
  TERN_WARN(forward ? "nats: rolling forward a commit record another node left" : "nats: rolling back a commit record another node left",
            "node=%s record=%" PRIu64, tern_log_quote(nd), rec);
  rc = replay_one(be, (const uint8_t *)natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), forward, nd);
  if (rc == 0) rc = del_msg(be, be->s_commit, rec); /* the record first (n_commit) */
  if (rc == 0 && mark) rc = del_msg(be, be->s_commit, mark);
out:
  natsMsg_Destroy(m);
  tern_buf_free(&pre);
  tern_buf_free(&node);
  return rc;
}

/* The records entry_settled queued, replayed outside any group (n_begin, n_idle). The first
 * failure ends the run and drops the rest: the servers are likely not answering (no quorum),
 * every call of each record would wait out its timeout on the one commit thread, which every
 * group and a shutdown wait behind, and the next read that meets an entry queues it again. */
static void foreign_run(nbe *be) {
  size_t n = be->nforeign;
  uint64_t recs[TERN_ARRAY_LEN(be->foreign)];
  memcpy(recs, be->foreign, n * sizeof *recs);
  be->nforeign = 0;
  for (size_t i = 0; i < n; i++) {
    if (foreign_one(be, recs[i]) < 0) {
      TERN_WARN("nats: another node's commit record could not be replayed", "record=%" PRIu64 " left=%zu why=%s",
                recs[i], n - i - 1, tern_log_quote(be->why));
      be->failed = false;
      be->why[0] = 0;
      break;
    }
  }
}

/* ---- outside groups -------------------------------------------------------------------------- */

typedef struct load_arg {
  tern_kv_visit fn;
  void *arg;
} load_arg;

static bool load_cb(nbe *be, const char *key, size_t klen, const unwrapped *u, void *arg) {
  load_arg *a = arg;
  return a->fn(key, klen, u->v, u->n, u->ts, a->arg);
}

static int n_load(void *self, tern_bucket b, tern_kv_visit fn, void *arg, char *err, size_t errlen) {
  nbe *be = self;
  load_arg a = {fn, arg};
  be->failed = false;
  int r = kv_scan(be, b, "", load_cb, &a, NULL);
  if (r < 0) snprintf(err, errlen, "%s", be->why);
  be->failed = false;
  return r;
}

static const char *n_why(void *self) {
  nbe *be = self;
  return be->why[0] ? be->why : NULL;
}

static int64_t n_total(void *self) {
  nbe *be = self;
  jsStreamInfo *si = NULL;
  jsErrCode code = 0;
  if (js_GetStreamInfo(&si, be->js, be->s_in, NULL, &code) != NATS_OK) return -1;
  int64_t t = (int64_t)si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return t;
}

/* ---- shared duties: on_change, catch_up, the bus --------------------------------------------- */

/* One thread per directory bucket: nats.c 3.4.1 has no watch callback (layout pitfall 5). */
static void *watch_main(void *arg) {
  watcher *w = arg;
  nbe *be = w->be;
  tern_buf kb = {0};
  while (!atomic_load(&be->stop)) {
    kvEntry *e = NULL;
    natsStatus s = kvWatcher_Next(&e, w->w, 250);
    if (s == NATS_TIMEOUT) continue;
    if (s != NATS_OK) {
      if (atomic_load(&be->stop)) break;
      usleep(100000);
      continue;
    }
    if (!e) {
      pthread_mutex_lock(&be->wmu);
      be->winit[w->b] = true;
      pthread_cond_broadcast(&be->wcv);
      pthread_mutex_unlock(&be->wmu);
      continue;
    }
    uint64_t rev = kvEntry_Revision(e);
    unwrapped u;
    const char *k = kvEntry_Key(e);
    dec_key(&kb, k, strlen(k));
    bool ok = kvEntry_Operation(e) == kvOp_Put && unwrap((const uint8_t *)kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &u);
    pthread_mutex_lock(&be->wmu);
    bool initial = !be->winit[w->b];
    pthread_mutex_unlock(&be->wmu);
    /* The initial values are what load() read; only later changes by other nodes are raised. */
    bool remote = ok && !initial && !own_node(be, &u);
    /* Tests of what a node does before it learns a change (nats.test_feed_delay): the change
     * applies that long after it was made, so the lag does not grow with a burst. */
    if (remote && be->opts.nats_test_feed_delay_ms > 0) {
      int64_t due_ms = kvEntry_Created(e) / 1000000 + be->opts.nats_test_feed_delay_ms;
      struct timespec now;
      clock_gettime(CLOCK_REALTIME, &now);
      int64_t wait_ms = due_ms - ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
      if (wait_ms > 0) usleep((useconds_t)TERN_MIN(wait_ms, 10000) * 1000);
    }
    if (remote && be->opts.on_change)
      be->opts.on_change(be->opts.shared_arg, (tern_bucket)w->b, kb.data ? kb.data : "", kb.len, u.live ? u.v : NULL,
                         u.live ? u.n : 0);
    kvEntry_Destroy(e);
    pthread_mutex_lock(&be->wmu);
    if (rev > be->wseen[w->b]) be->wseen[w->b] = rev;
    pthread_cond_broadcast(&be->wcv);
    pthread_mutex_unlock(&be->wmu);
  }
  tern_buf_free(&kb);
  return NULL;
}

static int n_catch_up(void *self, char *err, size_t errlen) {
  nbe *be = self;
  for (int b = 0; b < TERN_BUCKET__COUNT; b++) {
    if (!bucket_is_dir(b) || !be->watch[b].w) continue;
    char stream[160];
    snprintf(stream, sizeof stream, "KV_%s", be->kvname[b]);
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    natsStatus s = js_GetStreamInfo(&si, be->js, stream, NULL, &code);
    if (s != NATS_OK) {
      snprintf(err, errlen, "catch up: %s", natsStatus_GetText(s));
      return st_errno(s, code);
    }
    uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    int64_t deadline = tern_now_ms() + 5000;
    pthread_mutex_lock(&be->wmu);
    while (!(be->winit[b] && be->wseen[b] >= last) && tern_now_ms() < deadline) {
      struct timespec t;
      clock_gettime(CLOCK_REALTIME, &t);
      t.tv_nsec += 50000000;
      if (t.tv_nsec >= 1000000000) t.tv_sec++, t.tv_nsec -= 1000000000;
      pthread_cond_timedwait(&be->wcv, &be->wmu, &t);
    }
    bool ok = be->winit[b] && be->wseen[b] >= last;
    pthread_mutex_unlock(&be->wmu);
    if (!ok) {
      /* The last entries may be the bucket's own deletions of expired or rolled-up records
       * that a watcher never sees; after the initial values, that is caught up. */
      pthread_mutex_lock(&be->wmu);
      ok = be->winit[b];
      pthread_mutex_unlock(&be->wmu);
      if (!ok) {
        snprintf(err, errlen, "catch up: the directory watch is behind");
        return -ENOTCONN;
      }
    }
  }
  return 0;
}

static void on_bus_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  nbe *be = closure;
  const char *from = NULL;
  if (natsMsgHeader_Get(msg, "Tern-Node", &from) == NATS_OK && from && strcmp(from, be->node) != 0 && be->opts.on_bus)
    be->opts.on_bus(be->opts.shared_arg, (const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
  natsMsg_Destroy(msg);
}

static void n_bus_publish(void *self, const void *msg, size_t len) {
  nbe *be = self;
  char subj[160];
  snprintf(subj, sizeof subj, "%s.bus", be->ns);
  natsMsg *m = msg_new(subj, msg, len);
  if (!m) return;
  natsMsgHeader_Set(m, "Tern-Node", be->node);
  natsConnection_PublishMsg(be->nc, m); /* buffered: never blocks on the network */
  natsMsg_Destroy(m);
}

/* ---- health ------------------------------------------------------------------------------------ */

enum { HEALTH_POLL_MS = 2000 };

/* Polls the inbox stream's info every HEALTH_POLL_MS, off every loop: unavailable when it
 * cannot be read (no meta leader, no quorum) or the stream has no leader; degraded when a
 * replica is offline or behind. */
static void *health_main(void *arg) {
  nbe *be = arg;
  pthread_mutex_lock(&be->hmu);
  while (!atomic_load(&be->stop)) {
    pthread_mutex_unlock(&be->hmu);
    int h = 0;
    char why[200] = "";
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = 1000;
    if (natsConnection_Status(be->nc) != NATS_CONN_STATUS_CONNECTED) {
      h = 2;
      snprintf(why, sizeof why, "not connected to NATS");
    } else if (js_GetStreamInfo(&si, be->js, be->s_in, &o, &code) != NATS_OK) {
      h = 2;
      snprintf(why, sizeof why, "JetStream does not answer (no quorum?)");
    } else {
      jsClusterInfo *ci = si->Cluster;
      if (ci && be->replicas > 1) {
        if (!ci->Leader || !*ci->Leader) {
          h = 2;
          snprintf(why, sizeof why, "stream %s has no leader", be->s_in);
        }
        for (int i = 0; i < ci->ReplicasLen && h == 0; i++) {
          jsPeerInfo *pi = ci->Replicas[i];
          if (pi->Offline || !pi->Current) {
            h = 1;
            snprintf(why, sizeof why, "NATS server %s is %s", pi->Name ? pi->Name : "?", pi->Offline ? "offline" : "behind");
          }
        }
        if (h == 0 && ci->ReplicasLen + 1 < be->replicas) {
          h = 1;
          snprintf(why, sizeof why, "stream %s has %d of %d replicas", be->s_in, ci->ReplicasLen + 1, be->replicas);
        }
      }
    }
    jsStreamInfo_Destroy(si);
    if (h < 2 && atomic_load(&be->commit_unavail)) {
      h = 2;
      snprintf(why, sizeof why, "the last write found no quorum");
    }
    pthread_mutex_lock(&be->hmu);
    be->health = h;
    snprintf(be->health_why, sizeof be->health_why, "%s", why);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += HEALTH_POLL_MS / 1000;
    if (!atomic_load(&be->stop)) pthread_cond_timedwait(&be->hcv, &be->hmu, &t);
  }
  pthread_mutex_unlock(&be->hmu);
  return NULL;
}

static int n_health(void *self, char *reason, size_t n) {
  nbe *be = self;
  pthread_mutex_lock(&be->hmu);
  int h = be->health;
  if (n) snprintf(reason, n, "%s", be->health_why);
  pthread_mutex_unlock(&be->hmu);
  if (h < 2 && atomic_load(&be->commit_unavail)) {
    h = 2;
    if (n) snprintf(reason, n, "the last write found no quorum");
  }
  return h;
}

/* ---- open / close ---------------------------------------------------------------------------- */

static void n_close(void *self) {
  nbe *be = self;
  atomic_store(&be->stop, true);
  if (be->health_started) {
    pthread_mutex_lock(&be->hmu);
    pthread_cond_broadcast(&be->hcv);
    pthread_mutex_unlock(&be->hmu);
    pthread_join(be->health_th, NULL);
  }
  for (int b = 0; b < TERN_BUCKET__COUNT; b++)
    if (be->watch[b].w) {
      kvWatcher_Stop(be->watch[b].w);
      pthread_join(be->watch[b].th, NULL);
      kvWatcher_Destroy(be->watch[b].w);
    }
  if (be->bus_sub) {
    natsSubscription_Unsubscribe(be->bus_sub);
    natsSubscription_Destroy(be->bus_sub);
  }
  if (be->pf_sub) {
    natsSubscription_Unsubscribe(be->pf_sub);
    natsSubscription_Destroy(be->pf_sub);
  }
  if (be->ev_sub) {
    natsSubscription_Unsubscribe(be->ev_sub);
    natsSubscription_Destroy(be->ev_sub);
  }
  if (be->js) js_PublishAsyncComplete(be->js, NULL);
  for (int b = 0; b < TERN_BUCKET__COUNT; b++) {
    if (be->kv[b]) kvStore_Destroy(be->kv[b]);
    tern_free(be->kvname[b]);
  }
  if (be->js) jsCtx_Destroy(be->js);
  if (be->nc) natsConnection_FlushTimeout(be->nc, 1000);
  tern_natsconn_close(&be->nc, &be->link);
  group_clear(be);
  tern_map_free(&be->burned);
  tern_free(be->pdels);
  tern_free(be->slots);
  for (size_t i = 0; i < be->nwalk; i++) tern_free(be->walk[i]);
  tern_free(be->walk);
  tern_buf_free(&be->sbuf);
  tern_buf_free(&be->sbuf2);
  tern_buf_free(&be->pf_req);
  tern_buf_free(&be->rec);
  pthread_mutex_destroy(&be->mu);
  pthread_cond_destroy(&be->cv);
  pthread_mutex_destroy(&be->wmu);
  pthread_cond_destroy(&be->wcv);
  pthread_mutex_destroy(&be->hmu);
  pthread_cond_destroy(&be->hcv);
  tern_free(be->ns);
  tern_free(be->NS);
  tern_free(be->node);
  tern_free(be->node_enc);
  tern_free(be);
}

static const tern_backend_vt nats_vt = {
    .name = "nats",
    .begin = n_begin,
    .inbox_get = n_inbox_get,
    .append = n_append,
    .read = n_read,
    .read_settled = n_read_settled,
    .idle = n_idle,
    .erase = n_erase,
    .purge = n_purge,
    .forget = n_forget,
    .inbox_next = n_inbox_next,
    .kv_get = n_kv_get,
    .kv_put = n_kv_put,
    .kv_del = n_kv_del,
    .kv_del_prefix = n_kv_del_prefix,
    .kv_expire = n_kv_expire,
    .commit = n_commit,
    .rollback = n_rollback,
    .load = n_load,
    .why = n_why,
    .total = n_total,
    .close = n_close,
    .catch_up = n_catch_up,
    .prefetch = n_prefetch,
    .bus_publish = n_bus_publish,
    .health = n_health,
};

/* At open, a cluster that has just started (or lost a server) may have no JetStream meta
 * leader for a few seconds: stream and bucket creation then time out or answer "temporarily
 * unavailable". Such errors are waited out for OPEN_RETRY_MS (a CI run timed out at 2 s on a
 * loaded machine); any other error fails the open at once. The caller is the start-up. */
static bool open_retry(natsStatus s, jsErrCode code, int64_t deadline, const char *what) {
  bool transient = s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || code == JSClusterNotAvailErr ||
                   code == JSClusterNoPeersErr;
  if (!transient || tern_now_ms() >= deadline) return false;
  /* The server's own words (its JetStream error code and text) say which of the waits this
   * is: no meta leader, no stream leader, or a peer it counts as offline. */
  const char *last = nats_GetLastError(NULL);
  TERN_WARN("nats not ready, retrying", "what=%s err=%s code=%d detail=%s", what, natsStatus_GetText(s), (int)code,
            tern_log_quote(last ? last : ""));
  nats_Sleep(250);
  return true;
}

static int add_stream(nbe *be, const char *name, const char *subj, int64_t max_per_subj, char *err, size_t errlen) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name;
  cfg.Subjects = (const char *[]){subj};
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = be->replicas;
  cfg.AllowDirect = true;
  cfg.Duplicates = (int64_t)DUP_WINDOW_S * 1000000000LL;
  if (max_per_subj > 0) cfg.MaxMsgsPerSubject = max_per_subj;
  jsErrCode code = 0;
  natsStatus s;
  int64_t deadline = tern_now_ms() + OPEN_RETRY_MS;
  do {
    jsStreamInfo *si = NULL;
    code = 0;
    s = js_AddStream(&si, be->js, &cfg, NULL, &code);
    if (s != NATS_OK && code == JSStreamNameExistErr) s = NATS_OK;
    jsStreamInfo_Destroy(si);
  } while (s != NATS_OK && open_retry(s, code, deadline, name));
  if (s != NATS_OK) {
    const char *last = nats_GetLastError(NULL);
    snprintf(err, errlen, "nats: cannot create stream %s: %s%s%s", name, natsStatus_GetText(s), last ? ": " : "", last ? last : "");
    return st_errno(s, code) == -ENOTCONN ? -ENOTCONN : -EIO;
  }
  return 0;
}

int tern_backend_open_nats(const tern_backend_options *opts, tern_backend *out, char *err, size_t errlen) {
  nbe *be = TERN_NEW(nbe);
  be->opts = *opts;
  /* Test hook of tests/unit/store (a crash between the steps of a commit); read once. */
  const char *crash = getenv("TERN_TEST_NATS_CRASH");
  be->crash_at = crash ? atoi(crash) : 0;
  const char *pause = getenv("TERN_TEST_NATS_MARK_PAUSE_MS");
  be->mark_pause_ms = pause ? atoi(pause) : 0;
  const char *lose = getenv("TERN_TEST_NATS_LOSE_ACK");
  be->lose_ack = lose ? atoi(lose) : 0;
  const char *unsettled = getenv("TERN_TEST_NATS_UNSETTLED_MS");
  be->unsettled_ms = unsettled && atoi(unsettled) > 0 ? atoi(unsettled) : 10000;
  pthread_mutex_init(&be->mu, NULL);
  pthread_cond_init(&be->cv, NULL);
  pthread_mutex_init(&be->wmu, NULL);
  pthread_cond_init(&be->wcv, NULL);
  pthread_mutex_init(&be->hmu, NULL);
  pthread_cond_init(&be->hcv, NULL);
  const char *ns = opts->nats_namespace && *opts->nats_namespace ? opts->nats_namespace : "tern";
  tern_buf b = {0};
  enc_token(&b, ns, strlen(ns));
  be->ns = tern_strndup(b.data, b.len);
  tern_buf_reset(&b);
  be->NS = tern_natsconn_stream_prefix(ns);
  const char *node = opts->node && *opts->node ? opts->node : "local";
  be->node = tern_strndup(node, TERN_MIN(strlen(node), 200));
  tern_buf_reset(&b);
  enc_token(&b, be->node, strlen(be->node));
  be->node_enc = tern_strndup(b.data, b.len);
  tern_buf_free(&b);
  /* A group id unique across restarts and nodes: start time and pid in the high bits. */
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  be->gid_base = (((uint64_t)now.tv_sec * 1000003u) ^ ((uint64_t)now.tv_nsec << 7) ^ ((uint64_t)getpid() << 40)) << 20;
  snprintf(be->s_in, sizeof be->s_in, "%s_IN", be->NS);
  snprintf(be->s_mk, sizeof be->s_mk, "%s_MK", be->NS);
  snprintf(be->s_commit, sizeof be->s_commit, "%s_COMMIT", be->NS);

  int n = 0;
  be->link.what = "store";
  be->link.back = on_relinked;
  be->link.arg = be;
  int r = tern_natsconn_open(opts->nats_urls, WAIT_MS, &be->link, &be->nc, &n, err, errlen);
  if (r < 0) {
    n_close(be);
    return r;
  }
  be->replicas = tern_natsconn_replicas(opts->nats_replicas, n);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = WAIT_MS;
  jo.PublishAsync.MaxPending = MAX_PENDING;
  jo.PublishAsync.AckHandler = on_ack;
  jo.PublishAsync.AckHandlerClosure = be;
  natsStatus s = natsConnection_JetStream(&be->js, be->nc, &jo);
  if (s != NATS_OK) {
    snprintf(err, errlen, "nats: JetStream: %s", natsStatus_GetText(s));
    n_close(be);
    return -EIO;
  }
  char subj[160];
  snprintf(subj, sizeof subj, "%s.in.>", be->ns);
  if ((r = add_stream(be, be->s_in, subj, 0, err, errlen)) < 0) goto fail_r;
  snprintf(subj, sizeof subj, "%s.mk.>", be->ns);
  if ((r = add_stream(be, be->s_mk, subj, 1, err, errlen)) < 0) goto fail_r;
  snprintf(subj, sizeof subj, "%s.commit.>", be->ns);
  if ((r = add_stream(be, be->s_commit, subj, 0, err, errlen)) < 0) goto fail_r;
  for (int bk = 0; bk < TERN_BUCKET__COUNT; bk++) {
    char nm[160];
    if (bucket_names[bk]) snprintf(nm, sizeof nm, "%s_%s", be->NS, bucket_names[bk]);
    else snprintf(nm, sizeof nm, "%s_b%d", be->NS, bk);
    be->kvname[bk] = tern_strdup(nm);
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = nm;
    kc.History = 1;
    kc.Replicas = be->replicas;
    kc.StorageType = js_FileStorage;
    if (opts->ttl_ms[bk] > 0) kc.TTL = opts->ttl_ms[bk] * 1000000LL; /* nanoseconds (layout pitfall 6) */
    int64_t deadline = tern_now_ms() + OPEN_RETRY_MS;
    do {
      s = js_CreateKeyValue(&be->kv[bk], be->js, &kc);
      if (s != NATS_OK) s = js_KeyValue(&be->kv[bk], be->js, nm); /* exists (perhaps with another TTL) */
    } while (s != NATS_OK && open_retry(s, 0, deadline, nm));
    if (s != NATS_OK) {
      snprintf(err, errlen, "nats: cannot create bucket %s: %s", nm, natsStatus_GetText(s));
      r = st_errno(s, 0) == -ENOTCONN ? -ENOTCONN : -EIO;
      goto fail_r;
    }
  }
  /* A group left half-done by a crash of this node is finished or undone before anything else. */
  if ((r = replay(be)) < 0) {
    snprintf(err, errlen, "nats: replay: %s", be->why);
    goto fail_r;
  }
  /* on_change: a watcher per directory bucket, from its current state on. */
  for (int bk = 0; bk < TERN_BUCKET__COUNT; bk++) {
    if (!bucket_is_dir(bk)) continue;
    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    s = kvStore_WatchAll(&be->watch[bk].w, be->kv[bk], &wo);
    if (s != NATS_OK) {
      snprintf(err, errlen, "nats: cannot watch %s: %s", be->kvname[bk], natsStatus_GetText(s));
      r = -EIO;
      goto fail_r;
    }
    be->watch[bk].be = be;
    be->watch[bk].b = bk;
    pthread_create(&be->watch[bk].th, NULL, watch_main, &be->watch[bk]);
  }
  snprintf(subj, sizeof subj, "%s.bus", be->ns);
  s = natsConnection_Subscribe(&be->bus_sub, be->nc, subj, on_bus_msg, be);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(be->bus_sub, -1, -1);
  snprintf(subj, sizeof subj, "%s.ev.>", be->ns);
  if (s == NATS_OK) s = natsConnection_Subscribe(&be->ev_sub, be->nc, subj, on_event_msg, be);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(be->ev_sub, -1, -1);
  if (s != NATS_OK) {
    snprintf(err, errlen, "nats: cannot subscribe to the bus: %s", natsStatus_GetText(s));
    r = -EIO;
    goto fail_r;
  }
  be->health_started = pthread_create(&be->health_th, NULL, health_main, be) == 0;
  TERN_INFO("nats store open", "servers=%d replicas=%d namespace=%s node=%s", n, be->replicas, be->ns, be->node);
  out->vt = &nats_vt;
  out->self = be;
  return 0;
fail_r:
  n_close(be);
  return r;
}
