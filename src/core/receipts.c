/* receipts: acks and reads, and the receipts they make (receipts.h). */
#include "core/receipts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/map.h"
#include "base/util.h"
#include "core/msgid.h"
#include "core/privacy.h"
#include "core/groups.h"
#include "core/router.h"

/* ---- making receipt envelopes ---- */

static void on_receipt_done(tern_store_op *op) {
  if (op->status != TERN_STORE_OK) TERN_ERROR("receipt not stored", "err=%s", tern_log_quote(op->err));
  tern_router_release_targets(tern_op_as_append(op));
}

/* Every device of u (none when it has none: a receipt for a user with no device has nobody to
 * tell), except `skip`. */
static void devices_of(tern_op_append *op, tern_user *u, const tern_device *skip, size_t vi) {
  for (tern_device *d = u->devices; d; d = d->next_in_user) {
    if (d == skip) continue;
    tern_dir_device_ref(d);
    tern_op_append_target(op, d->id, vi, TERN_CAP_NONE, d);
  }
}

/* A receipt: from = the messages' sender, by = who got or read them (a list for groups). It
 * goes to the sender's devices and, when reader_dev is given (a read), to the reader's other
 * devices. */
static void make_receipt(tern_app *a, bool read, tern_user *sender, const char *group_id, tern_user *const *by,
                         size_t nby, tern_user *reader, const tern_device *reader_dev, const char *const *ids,
                         size_t n, bool to_sender) {
  int64_t ts = tern_now_ms();
  tern_buf *rec = &a->record;
  tern_env_receipt_begin(rec, read, sender->name, group_id, ts);
  for (size_t i = 0; i < nby; i++) tern_env_put_str(rec, TERN_EF_BY, by[i]->name);
  for (size_t i = 0; i < n; i++) tern_env_put_str(rec, TERN_EF_MSG_IDS, ids[i]);
  tern_op_append *op = tern_op_append_new(on_receipt_done, a);
  size_t vi = tern_op_append_value(op, rec->data, rec->len);
  if (to_sender && !sender->devices && read) {
    /* A read waits in a sender's user-level inbox for their next device; a delivered receipt
     * for a sender with no device has nobody to tell (docs/protocol.md). */
    char inbox[TERN_USER_INBOX_LEN];
    tern_user_inbox(inbox, sender->name);
    tern_op_append_target(op, inbox, vi, TERN_CAP_NONE, NULL);
  } else if (to_sender) {
    devices_of(op, sender, sender == reader ? reader_dev : NULL, vi);
  }
  if (reader && reader != sender) devices_of(op, reader, reader_dev, vi);
  if (!op->ntargets) {
    tern_store_op_free(&op->op);
    return;
  }
  op->now = ts;
  if (read) a->metrics.receipts_read++;
  else a->metrics.receipts_delivered++;
  tern_app_submit(a, &op->op);
}

/* ---- merging group receipts ----
 * A merged receipt must stay true for every name in it ("every user in by delivered every id
 * in msg_ids"), so parts merge only when they have the same status, group, sender and the
 * same msg_ids. A part waits at most receipts.merge_window. */

typedef struct pending_receipt {
  char *key;                    /* status, group, sender, ids: the map key */
  bool read;
  char group_id[TERN_GROUP_ID_MAX + 1];
  char sender[TERN_USERNAME_MAX + 1];
  char **ids;
  size_t nids;
  char (*by)[TERN_USERNAME_MAX + 1];
  size_t nby, by_cap;
  int64_t due;                  /* ms: when it goes out */
  uint64_t part_min;            /* the lowest seq of its parts in the queue (0: none, a read) */
  struct pending_receipt *next; /* the app's queue, in arrival order */
} pending_receipt;

/* Delivered parts are durable before they wait: the ack that makes them appends them to this
 * worker's queue inbox in its own store step (store.h, parts_inbox), the queue is acked up to
 * what the merged receipts already stored cover, and a start reads what is left. A read
 * receipt's part is not queued: a read is not acked to its client either, and 1:1 reads have
 * the same (shorter) window. */
typedef struct receipt_merge {
  tern_map byk;                 /* key → pending_receipt */
  pending_receipt *head, *tail; /* arrival order */
  uv_timer_t timer;             /* fires at the head's due time */
  bool timer_on;
  char parts[256];              /* the queue: "~rq/<store node>/<worker>" */
  uint64_t parts_max;           /* the highest part seq merged */
  uint64_t parts_acked;         /* the queue is acked (or being acked) up to here */
  int64_t released_at;          /* ms: the last ack of the queue */
  bool recovering;              /* the queue is being read back (tern_receipts_start) */
  int read_fails;               /* reads of it that failed */
} receipt_merge;

static void pending_free(pending_receipt *p) {
  for (size_t i = 0; i < p->nids; i++) tern_free(p->ids[i]);
  tern_free(p->ids);
  tern_free(p->by);
  tern_free(p->key);
  tern_free(p);
}

/* Sends one merged receipt (users who went meanwhile are left out). */
static void emit(tern_app *a, pending_receipt *p) {
  tern_user *sender = tern_dir_user(a->dir, p->sender);
  if (!sender) return;
  tern_user **by = tern_malloc(p->nby * sizeof *by);
  size_t k = 0;
  for (size_t i = 0; i < p->nby; i++) {
    tern_user *u = tern_dir_user(a->dir, p->by[i]);
    if (u) by[k++] = u;
  }
  if (k) make_receipt(a, p->read, sender, p->group_id, by, k, NULL, NULL, (const char *const *)p->ids, p->nids, true);
  tern_free(by);
}

static void arm(tern_app *a);

static void on_parts_acked(tern_store_op *op) {
  if (op->status != TERN_STORE_OK) TERN_ERROR("receipt parts not acked", "err=%s", tern_log_quote(op->err));
}

/* A read of a queue of parts from after `seq` (TERN_OP_DRAIN, done(arg)), or its ack up to
 * `seq` (TERN_OP_ACK): this worker's own queue and an adopted one alike. */
static void queue_op(tern_app *a, tern_store_op_type type, const char *queue, uint64_t seq, tern_store_done_cb done,
                     void *arg) {
  tern_op_inbox *op = tern_op_inbox_new(type, type == TERN_OP_ACK ? on_parts_acked : done, arg);
  tern_store_set_str(&op->inbox, queue);
  op->seq = seq;
  tern_app_submit(a, &op->op);
}

/* Acks the queue up to below the lowest part still waiting: the merged receipts of the parts
 * below it were submitted before this ack, and the store commits a port's operations in
 * order, so the queue never lets go of a part whose receipt is not stored.
 * The lowest is the first delivered receipt in the list: receipts are queued as their first
 * part arrives, and parts arrive in seq order (acks complete in the order they were
 * submitted). Only parts read back at start come out of order, and none is let go while
 * those are read (recovering). At most every PARTS_RELEASE_MS, besides the flush: the timer
 * fires for every receipt that falls due, and one ack per fire cost a store operation each. */
enum { PARTS_RELEASE_MS = 100 };

static void parts_release(tern_app *a, bool now) {
  receipt_merge *m = a->receipt_merge;
  if (m->recovering) return;
  int64_t t = tern_now_ms();
  if (!now && t - m->released_at < PARTS_RELEASE_MS) return;
  uint64_t upto = m->parts_max;
  for (pending_receipt *p = m->head; p; p = p->next) {
    if (!p->part_min) continue; /* a read: not queued */
    if (p->part_min - 1 < upto) upto = p->part_min - 1;
    break;
  }
  if (upto <= m->parts_acked) return;
  m->released_at = t;
  m->parts_acked = upto;
  queue_op(a, TERN_OP_ACK, m->parts, upto, NULL, NULL);
}

static void on_merge_timer(uv_timer_t *t) {
  tern_app *a = t->data;
  receipt_merge *m = a->receipt_merge;
  m->timer_on = false;
  int64_t now = tern_now_ms();
  while (m->head && m->head->due <= now) {
    pending_receipt *p = m->head;
    m->head = p->next;
    if (!m->head) m->tail = NULL;
    tern_map_dels(&m->byk, p->key);
    emit(a, p);
    pending_free(p);
  }
  parts_release(a, false);
  arm(a);
}

static void arm(tern_app *a) {
  receipt_merge *m = a->receipt_merge;
  if (!m->head || m->timer_on) return;
  int64_t wait = m->head->due - tern_now_ms();
  uv_timer_start(&m->timer, on_merge_timer, wait > 0 ? (uint64_t)wait : 0, 0);
  m->timer_on = true;
}

static receipt_merge *merge_of(tern_app *a) {
  if (!a->receipt_merge) {
    receipt_merge *m = TERN_NEW(receipt_merge);
    uv_timer_init(a->loop, &m->timer);
    m->timer.data = a;
    snprintf(m->parts, sizeof m->parts, "~rq/%s/%u", tern_store_node_id(a->store), a->worker);
    a->receipt_merge = m;
  }
  return a->receipt_merge;
}

/* part: the seq of the part in the queue (0: not queued). */
static void merge_part(tern_app *a, bool read, tern_user *sender, const char *group_id, tern_user *by,
                       const char *const *ids, size_t n, uint64_t part) {
  if (a->cfg->receipts_merge_window_ms <= 0) {
    make_receipt(a, read, sender, group_id, &by, 1, NULL, NULL, ids, n, true);
    return;
  }
  receipt_merge *m = merge_of(a);
  tern_buf key = {0};
  tern_buf_puts(&key, read ? "r" : "d");
  tern_buf_putc(&key, '\n');
  tern_buf_puts(&key, group_id);
  tern_buf_putc(&key, '\n');
  tern_buf_puts(&key, sender->name);
  for (size_t i = 0; i < n; i++) {
    tern_buf_putc(&key, '\n');
    tern_buf_puts(&key, ids[i]);
  }
  pending_receipt *p = tern_map_get(&m->byk, key.data, key.len);
  if (!p) {
    p = TERN_NEW(pending_receipt);
    p->key = tern_strndup(key.data, key.len);
    p->read = read;
    snprintf(p->group_id, sizeof p->group_id, "%s", group_id);
    snprintf(p->sender, sizeof p->sender, "%s", sender->name);
    p->ids = tern_malloc(n * sizeof *p->ids);
    for (size_t i = 0; i < n; i++) p->ids[i] = tern_strdup(ids[i]);
    p->nids = n;
    p->due = tern_now_ms() + a->cfg->receipts_merge_window_ms;
    p->part_min = part;
    tern_map_put(&m->byk, p->key, key.len, p);
    if (m->tail) m->tail->next = p;
    else m->head = p;
    m->tail = p;
  }
  tern_buf_free(&key);
  if (part && (!p->part_min || part < p->part_min)) p->part_min = part;
  if (part > m->parts_max) m->parts_max = part;
  for (size_t i = 0; i < p->nby; i++)
    if (!strcmp(p->by[i], by->name)) return; /* already in it */
  if (p->nby == p->by_cap) {
    p->by_cap = p->by_cap ? p->by_cap * 2 : 4;
    p->by = tern_realloc(p->by, p->by_cap * sizeof *p->by);
  }
  snprintf(p->by[p->nby++], sizeof p->by[0], "%s", by->name);
  arm(a);
}

void tern_receipts_flush(tern_app *a) {
  receipt_merge *m = a->receipt_merge;
  if (!m) return;
  while (m->head) {
    pending_receipt *p = m->head;
    m->head = p->next;
    tern_map_dels(&m->byk, p->key);
    emit(a, p);
    pending_free(p);
  }
  m->tail = NULL;
  parts_release(a, true);
}

/* The delivered list sorted by (group, sender, position): each run is one receipt, its ids in
 * seq order, and grouping a large ack costs n log n, not the n² of comparing every pair. */
typedef struct by_sender {
  const char *group;  /* "" for 1:1 */
  const char *from;   /* the message's sender */
  const char *msg_id;
  size_t idx;         /* position in the ack's (seq-ordered) list */
} by_sender;

static int cmp_sender(const void *x, const void *y) {
  const by_sender *a = x, *b = y;
  int c = strcmp(a->group, b->group);
  if (!c) c = strcmp(a->from, b->from);
  return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

/* The receipts of what `by` was delivered, v[0..n) (sorted here): one per sender for 1:1
 * messages, at once; one part per (group, sender) for group messages, merged (part: the seq
 * of the queued part that holds them, 0 for none), or at once too when `now` (an adopted
 * queue's part, whose window passed long ago). */
static void merge_runs(tern_app *a, tern_user *by, by_sender *v, size_t n, uint64_t part, bool now) {
  if (n > 1) qsort(v, n, sizeof *v, cmp_sender);
  const char **ids = tern_malloc(n * sizeof *ids);
  for (size_t i = 0; i < n;) {
    size_t j = i, k = 0;
    while (j < n && !strcmp(v[j].from, v[i].from) && !strcmp(v[j].group, v[i].group)) ids[k++] = v[j++].msg_id;
    tern_user *sender = tern_dir_user(a->dir, v[i].from);
    if (sender && sender != by) {
      if (*v[i].group && !now) merge_part(a, false, sender, v[i].group, by, ids, k, part);
      else make_receipt(a, false, sender, *v[i].group ? v[i].group : NULL, &by, 1, NULL, NULL, ids, k, true);
    }
    i = j;
  }
  tern_free(ids);
}

/* ---- the queue of delivered parts, read again at start ---- */

typedef struct part_ids {
  const char **v;
  size_t n, cap;
} part_ids;

static bool collect_str(tern_str s, void *arg) {
  part_ids *l = arg;
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 8;
    l->v = tern_realloc(l->v, l->cap * sizeof *l->v);
  }
  l->v[l->n++] = tern_strndup(s.p, s.n);
  return true;
}

static void part_ids_free(part_ids *l) {
  for (size_t i = 0; i < l->n; i++) tern_free((char *)l->v[i]);
  tern_free(l->v);
  memset(l, 0, sizeof *l);
}

/* One stored part (one ack's: store.h, parts_inbox) back into the merge, with its own seq. A
 * sender or member gone meanwhile is left out; its seq is still covered by the next ack of
 * the queue. */
static void requeue_part(tern_app *a, const tern_store_item *it, bool now) {
  tern_env_view ev;
  if (tern_env_unpack((const uint8_t *)it->value.data, it->value.len, &ev) != 0 || !ev.f[TERN_EF_BY].p ||
      ev.f[TERN_EF_BY].n > TERN_USERNAME_MAX)
    return;
  char name[TERN_USERNAME_MAX + 1];
  snprintf(name, sizeof name, "%.*s", (int)ev.f[TERN_EF_BY].n, ev.f[TERN_EF_BY].p);
  tern_user *by = tern_dir_user(a->dir, name);
  part_ids e = {0};
  tern_env_each(&ev, TERN_EF_MSG_IDS, collect_str, &e);
  /* each entry is "<group>\n<sender>\n<msg_id>": split in place */
  by_sender *v = tern_malloc((e.n + 1) * sizeof *v);
  size_t n = 0;
  for (size_t i = 0; i < e.n; i++) {
    char *g = (char *)e.v[i], *f = strchr(g, '\n'), *id = f ? strchr(f + 1, '\n') : NULL;
    if (!id || f == g || id == f + 1 || !id[1]) continue;
    *f = *id = '\0';
    v[n] = (by_sender){g, f + 1, id + 1, n};
    n++;
  }
  if (by) merge_runs(a, by, v, n, it->seq, now);
  tern_free(v);
  part_ids_free(&e);
}

static void read_parts(tern_app *a, uint64_t after);

static void on_parts_read(tern_store_op *op) {
  tern_app *a = op->arg;
  tern_op_inbox *d = tern_op_as_inbox(op);
  receipt_merge *m = merge_of(a);
  if (op->status != TERN_STORE_OK) {
    /* read again from where it stopped, a few times: once the queue is acked past them, the
     * parts not read are gone */
    if (++m->read_fails <= 3) {
      TERN_WARN("receipt parts could not be read, reading again", "err=%s", tern_log_quote(op->err));
      read_parts(a, d->seq);
    } else {
      TERN_ERROR("receipt parts could not be read; their receipts are lost", "err=%s", tern_log_quote(op->err));
      m->recovering = false;
    }
    return;
  }
  uint64_t last = 0;
  for (size_t i = 0; i < d->nitems; i++) {
    requeue_part(a, &d->items[i], false);
    last = d->items[i].seq;
    if (last > m->parts_max) m->parts_max = last;
  }
  if (d->nitems) TERN_INFO("group receipts from before the restart queued again", "parts=%zu", d->nitems);
  if ((d->more || d->unsettled) && last) {
    read_parts(a, last);
    return;
  }
  /* They waited their window before the restart: out now (with whatever merged into them
   * since; the queue stays in due order). */
  int64_t now = tern_now_ms();
  for (pending_receipt *p = m->head; p; p = p->next)
    if (p->due > now) p->due = now;
  if (m->timer_on) {
    uv_timer_stop(&m->timer);
    m->timer_on = false;
  }
  m->recovering = false;
  parts_release(a, true); /* what was read but merged into nothing */
  arm(a);
}

static void read_parts(tern_app *a, uint64_t after) {
  queue_op(a, TERN_OP_DRAIN, merge_of(a)->parts, after, on_parts_read, a);
}

/* ---- queues nobody reads any more ----
 * A worker's queue is read back by the same worker at its next start. Two cases leave one
 * unread: a start with fewer workers (the queues of the workers it no longer has), and a node
 * that never comes back (cluster mode). Such a queue is adopted: read to its end, each part
 * sent at once as receipts of its own (not merged: its window passed long ago), then acked up
 * to its last part. The ack is submitted after those receipts, so it commits after them or
 * with them, as parts_release relies on too. A queue that turns out empty costs one read. */
typedef struct adopted {
  tern_app *a;
  char inbox[256];
  int fails;
  size_t parts;
} adopted;

static void adopt_read(adopted *q, uint64_t after);

static void on_adopt_read(tern_store_op *op) {
  adopted *q = op->arg;
  tern_app *a = q->a;
  tern_op_inbox *d = tern_op_as_inbox(op);
  if (op->status != TERN_STORE_OK) {
    if (++q->fails <= 3 && !a->stopping) {
      TERN_WARN("an adopted receipt queue could not be read, reading again", "queue=%s err=%s", q->inbox,
                tern_log_quote(op->err));
      adopt_read(q, d->seq);
    } else {
      TERN_ERROR("an adopted receipt queue could not be read; its receipts wait for its own worker", "queue=%s err=%s",
                 q->inbox, tern_log_quote(op->err));
      tern_free(q);
    }
    return;
  }
  uint64_t last = 0;
  for (size_t i = 0; i < d->nitems; i++) {
    requeue_part(a, &d->items[i], true);
    last = d->items[i].seq;
  }
  if (last) {
    q->parts += d->nitems;
    queue_op(a, TERN_OP_ACK, q->inbox, last, NULL, NULL);
  }
  /* not while stopping: a read submitted as the port closes would be dropped, q with it (the
   * rest waits for the next start, or for the writer itself) */
  if ((d->more || d->unsettled) && last && !a->stopping) {
    adopt_read(q, last);
    return;
  }
  if (q->parts) TERN_INFO("group receipts of a queue no worker reads sent", "queue=%s parts=%zu", q->inbox, q->parts);
  tern_free(q);
}

static void adopt_read(adopted *q, uint64_t after) {
  queue_op(q->a, TERN_OP_DRAIN, q->inbox, after, on_adopt_read, q);
}

void tern_receipts_adopt(tern_app *a, const char *writer) {
  adopted *q = TERN_NEW(adopted);
  q->a = a;
  snprintf(q->inbox, sizeof q->inbox, "~rq/%s", writer);
  adopt_read(q, 0);
}

void tern_receipts_start(tern_app *a) {
  if (a->cfg->receipts_merge_window_ms <= 0) return;
  merge_of(a)->recovering = true;
  read_parts(a, 0);
  /* the queues of the workers an earlier start had and this one has not, taken by worker 0
   * (empty ones cost a read each, once) */
  if (a->worker != 0) return;
  for (unsigned w = a->group ? a->group->napps : 1; w < TERN_WORKERS_MAX; w++) {
    char writer[160];
    snprintf(writer, sizeof writer, "%s/%u", tern_store_node_id(a->store), w);
    tern_receipts_adopt(a, writer);
  }
}

static void on_merge_closed(uv_handle_t *h) { tern_free(TERN_CONTAINER_OF(h, receipt_merge, timer)); }

void tern_receipts_free(tern_app *a) {
  receipt_merge *m = a->receipt_merge;
  if (!m) return;
  while (m->head) {
    pending_receipt *p = m->head;
    m->head = p->next;
    pending_free(p);
  }
  tern_map_free(&m->byk);
  uv_close((uv_handle_t *)&m->timer, on_merge_closed);
  a->receipt_merge = NULL;
}

/* ---- acks ---- */

typedef struct ack_ctx {
  tern_app *app;    /* owner */
  tern_session *s;  /* the acking session (referenced) */
  tern_user *by;    /* who acked */
} ack_ctx;

static void do_read(tern_app *a, tern_session *s, tern_user *reader, tern_frame *f);

/* The queue's high mark moves to the ack's last part; its group runs wait, each keeping the
 * ack's part (parts_first, store.h) as its lowest. */
static void delivered_receipts(tern_app *a, tern_user *by, const tern_op_inbox *op) {
  if (op->parts_last && a->receipt_merge && op->parts_last > a->receipt_merge->parts_max)
    a->receipt_merge->parts_max = op->parts_last;
  size_t n = op->ndelivered;
  by_sender *v = tern_malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) {
    const tern_store_delivered *d = &op->delivered[i];
    v[i] = (by_sender){d->group_id ? d->group_id : "", d->from, d->msg_id, i};
  }
  merge_runs(a, by, v, n, op->parts_first, false);
  tern_free(v);
}

static void on_ack_done(tern_store_op *op) {
  ack_ctx *c = op->arg;
  tern_op_inbox *ack = tern_op_as_inbox(op);
  tern_app *a = c->app;
  tern_session *s = c->s;
  tern_user *by = c->by;
  if (ack->receipts) tern_router_release_targets(ack->receipts);
  if (op->status != TERN_STORE_OK) {
    TERN_ERROR("ack failed", "err=%s", tern_log_quote(op->err));
  } else {
    a->metrics.receipts_delivered += ack->nreceipts;
    if (ack->ndelivered) delivered_receipts(a, by, ack);
  }
  /* reads that arrived behind this ack go out now, so a sender sees delivered before read */
  if (--s->acks_inflight == 0 && s->nreads) {
    size_t n = s->nreads;
    s->nreads = 0;
    for (size_t i = 0; i < n; i++) {
      do_read(a, s, by, &s->reads[i]);
      tern_frame_free(&s->reads[i]);
    }
  }
  tern_session_unref(s);
  tern_free(c);
}

/* The senders this session wrote 1:1 envelopes from, with their devices, for the ack to make
 * their delivered receipts in its own store step (store.h, ACK receipts). A sender with no
 * device is named too: the store then drops their receipt, as make_receipt does. */
static void ack_receipts_of(tern_op_inbox *op, const tern_session *s) {
  if (!s->nsenders) return;
  op->receipts = tern_op_append_new(NULL, NULL);
  op->receipt_from = tern_malloc(s->nsenders * sizeof *op->receipt_from);
  for (uint8_t k = 0; k < s->nsenders; k++) {
    tern_user *u = s->senders[k];
    op->receipt_from[op->nreceipt_from++] = tern_strdup(u->name);
    size_t vi = tern_op_append_value(op->receipts, NULL, 0);
    devices_of(op->receipts, u, NULL, vi);
  }
}

void tern_receipts_ack(tern_app *a, tern_session *s, uint64_t seq) {
  if (seq > s->sent_seq) seq = s->sent_seq; /* clamp to what this connection was sent */
  if (seq <= s->acked_seq) return;
  s->acked_seq = seq;
  ack_ctx *c = TERN_NEW(ack_ctx);
  c->app = a;
  c->s = s;
  c->by = s->dev->user;
  tern_session_ref(s);
  s->acks_inflight++;
  tern_op_inbox *op = tern_op_inbox_new(TERN_OP_ACK, on_ack_done, c);
  tern_store_set_str(&op->inbox, s->dev->id);
  tern_store_set_str(&op->user, c->by->name);
  op->seq = seq;
  ack_receipts_of(op, s);
  if (s->group_receipts && a->cfg->receipts_merge_window_ms > 0) tern_store_set_str(&op->parts_inbox, merge_of(a)->parts);
  /* an ack of everything sent was told every sender; one short of it keeps them for the next */
  if (seq == s->sent_seq) {
    s->nsenders = 0;
    s->group_receipts = false;
  }
  tern_app_submit(a, &op->op);
}

/* ---- reads ---- */

/* Keeps the ids of messages that reader received from peer: 1:1 (grp NULL) or in grp after the
 * reader joined it, strictly (core/msgid.h; groups.h says why). The others are dropped.
 * Returns how many are left. */
static size_t keep_received(tern_app *a, tern_frame *f, const tern_user *peer, const tern_user *reader,
                            const tern_group *grp) {
  int64_t now = tern_now_ms();
  int64_t legacy_until = a->msgid_key.created_ms + a->cfg->inbox_ttl_ms;
  const tern_member *m = grp ? tern_group_member(grp, reader) : NULL;
  size_t n = 0;
  for (size_t i = 0; i < f->nids; i++) {
    int64_t ts = 0;
    bool ok = grp ? tern_msgid_check(&a->msgid_key, f->ids[i], peer->name, TERN_MSGID_TO_GROUP, grp->id, now,
                                     legacy_until, &ts) &&
                        ts > m->since
                  : tern_msgid_check(&a->msgid_key, f->ids[i], peer->name, TERN_MSGID_TO_USER, reader->name, now,
                                     legacy_until, &ts);
    if (ok) f->ids[n++] = f->ids[i];
    else tern_free(f->ids[i]);
  }
  f->nids = n;
  return n;
}

static void do_read(tern_app *a, tern_session *s, tern_user *reader, tern_frame *f) {
  tern_group *grp = NULL;
  if (f->group_id) {
    grp = tern_groups_get(a->groups, f->group_id);
    if (!grp || !tern_group_member(grp, reader)) {
      if (tern_session_catch_up(s, f, 0)) return;
      tern_session_error(s, NULL, "no_such_group", "there is no such group, or you are not a member", NULL);
      return;
    }
  }
  if (f->to_invalid || !f->peer) {
    tern_session_error(s, NULL, "no_such_user", "there is no user by that name", NULL);
    return;
  }
  tern_user *peer = tern_dir_user(a->dir, f->peer);
  if (!peer || peer->pending) {
    if (tern_session_catch_up(s, f, 0)) return;
    tern_session_error(s, NULL, "no_such_user", "there is no user by that name", f->peer);
    return;
  }
  if (!keep_received(a, f, peer, reader, grp)) {
    tern_session_error(s, NULL, "bad_request",
                       grp ? "none of msg_ids is a message you received in this group from peer"
                           : "none of msg_ids is a message you received from peer",
                       NULL);
    return;
  }
  const char *const *ids = (const char *const *)f->ids;
  if (!grp) {
    /* read_receipts off on either side: only the reader's other devices hear of it */
    make_receipt(a, true, peer, NULL, &reader, 1, reader, s->dev, ids, f->nids,
                 tern_privacy_read_receipts(reader, peer));
    return;
  }
  /* The sender's devices get the merged receipt; the reader's other devices, which only clear
   * their unread counters, get theirs at once. */
  if (peer != reader) merge_part(a, true, peer, grp->id, reader, ids, f->nids, 0);
  make_receipt(a, true, peer, grp->id, &reader, 1, reader, s->dev, ids, f->nids, false);
}

void tern_receipts_read(tern_app *a, tern_session *s, tern_frame *f) {
  if (s->acks_inflight) {
    /* keep the frame (moving its strings) until the acks before it have made their receipts */
    if (s->nreads == s->reads_cap) {
      s->reads_cap = s->reads_cap ? s->reads_cap * 2 : 4;
      s->reads = tern_realloc(s->reads, s->reads_cap * sizeof *s->reads);
    }
    s->reads[s->nreads++] = *f;
    memset(f, 0, sizeof *f);
    return;
  }
  do_read(a, s, s->dev->user, f);
}
