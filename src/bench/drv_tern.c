/* drv_tern.c: the tern protocol driver, on libtern-client.
 *
 * Provisioning: POST /v1/register for each user (a user that exists already is logged in
 * instead, so a --prefix can be reused), then POST /v1/login for each further device, with at
 * most --register-concurrency requests in flight. Transient failures (network, 429, 5xx) are
 * retried with a short backoff.
 *
 * Connections: one tern_client_conn per device. Envelopes already seen (seq ≤ the highest seen
 * on this device) are dropped as a client must; everything fresh is handed to the engine. Acks
 * are cumulative and sent once per loop iteration per device (the engine's check hook calls
 * flush), which is what a real client does and keeps the ack traffic proportional to reads,
 * not to messages. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "bench/bench_int.h"
#include "client/client.h"

#define MAX_ATTEMPTS 6
#define RETRY_BASE_MS 100
#define READ_MAX_IDS 1000 /* PROTOCOL.md 5: 1-1000 ids per read */

typedef struct tern_drv tern_drv;

typedef struct reg_task {
  tern_drv *t;
  uv_timer_t timer;     /* retry backoff */
  uint32_t user;        /* the user being provisioned */
  uint32_t devno;       /* the device being created */
  uint32_t attempts;
  bool busy;
  bool login;           /* the user exists: log in instead of registering */
} reg_task;

typedef struct grp_task {
  tern_drv *t;
  uv_timer_t timer;     /* retry backoff */
  uint32_t group;
  uint32_t attempts;
  bool busy;
} grp_task;

struct tern_drv {
  tern_bench *b;
  grp_task *gtasks;     /* group mode: creations in flight */
  uint32_t n_gtasks;
  uint32_t next_group, groups_done;
  const char **names;   /* scratch: one group's member names */
  tern_client *client;
  tern_client_url url;
  reg_task *tasks;
  uint32_t n_tasks;
  uint32_t next_user;   /* next user to provision */
  uint32_t users_total; /* users to provision */
  uint32_t users_done;
  uint32_t devs_done;
  uv_timer_t progress;  /* the registration progress line */
  bool failed;
  char why[256];
};

static tern_drv *T(tern_bench *b) { return b->drv_ctx; }

static uint64_t msgid_hash(const char *s) {
  if (!s) return 0;
  uint64_t h = tern_hash_bytes(s, strlen(s));
  return h ? h : 1;
}

/* ---- provisioning ---- */

static void task_step(reg_task *k);

static bool user_wanted(const tern_bench *b, uint32_t u) {
  return b->devs[b->users[u].first_dev].mine; /* the first C devices connect: device 0 decides */
}

static void task_next_user(reg_task *k) {
  tern_drv *t = k->t;
  tern_bench *b = t->b;
  while (t->next_user < b->n_users && !user_wanted(b, t->next_user)) t->next_user++;
  if (t->next_user >= b->n_users || t->failed) {
    k->busy = false;
    return;
  }
  k->user = t->next_user++;
  k->devno = 0;
  k->attempts = 0;
  k->login = false;
  k->busy = true;
  task_step(k);
}

static void check_all_done(tern_drv *t) {
  for (uint32_t i = 0; i < t->n_tasks; i++)
    if (t->tasks[i].busy) return;
  uv_timer_stop(&t->progress);
  if (t->failed) {
    tern_bench_provision_done(t->b, -EIO, t->why);
    return;
  }
  tern_bench_provision_done(t->b, 0, NULL);
}

static void on_retry(uv_timer_t *h) { task_step(h->data); }

static void on_account(tern_client_response *r, void *arg) {
  reg_task *k = arg;
  tern_drv *t = k->t;
  tern_bench *b = t->b;
  if (r->ok) {
    tern_client_account acct;
    if (tern_client_parse_account(r, &acct) < 0) {
      snprintf(t->why, sizeof t->why, "unreadable answer to %s", k->login ? "login" : "register");
      t->failed = true;
      k->busy = false;
      check_all_done(t);
      return;
    }
    tern_bench_dev *d = &b->devs[b->users[k->user].first_dev + k->devno];
    tern_free(d->token);
    tern_free(d->device_id);
    d->token = tern_strdup(acct.token);
    d->device_id = tern_strdup(acct.device_id);
    d->state = TERN_BENCH_DEV_IDLE;
    t->devs_done++;
    k->devno++;
    k->attempts = 0;
    k->login = true; /* further devices of this user are logins */
    const tern_bench_user *u = &b->users[k->user];
    if (k->devno < b->cfg.devices && b->devs[u->first_dev + k->devno].mine) {
      task_step(k);
    } else {
      t->users_done++;
      task_next_user(k);
      if (!k->busy) check_all_done(t);
    }
    return;
  }
  if (r->status == 409 && !k->login) {
    /* The name is taken: a run reusing --prefix. Log in as it instead. */
    k->login = true;
    task_step(k);
    return;
  }
  char code[80];
  snprintf(code, sizeof code, "%s:%.60s", k->login ? "login" : "register", r->code[0] ? r->code : "failed");
  tern_bench_count_error(b, code);
  /* A refused connection before anything worked means no server: say so at once. */
  bool no_server = r->err == UV_ECONNREFUSED && t->devs_done == 0;
  bool transient = !no_server && (r->status == 0 || r->status == 429 || r->status >= 500);
  if (transient && ++k->attempts < MAX_ATTEMPTS) {
    uv_timer_start(&k->timer, on_retry, (uint64_t)RETRY_BASE_MS << k->attempts, 0);
    return;
  }
  snprintf(t->why, sizeof t->why, "%s %s: HTTP %d %.60s %.120s", k->login ? "login" : "register", b->users[k->user].name,
           r->status, r->code, r->message);
  t->failed = true;
  k->busy = false;
  check_all_done(t);
}

static void task_step(reg_task *k) {
  tern_drv *t = k->t;
  tern_bench *b = t->b;
  char label[32];
  snprintf(label, sizeof label, "bench-%u", k->devno);
  const char *name = b->users[k->user].name;
  int rc = k->login ? tern_client_login(t->client, &t->url, name, b->cfg.password, label, on_account, k)
                    : tern_client_register(t->client, &t->url, name, b->cfg.password, label, on_account, k);
  if (rc < 0) {
    snprintf(t->why, sizeof t->why, "cannot start a request: %s", uv_strerror(rc));
    t->failed = true;
    k->busy = false;
    check_all_done(t);
  }
}

static void on_progress(uv_timer_t *h) {
  tern_drv *t = h->data;
  tern_bench_provision_progress(t->b, t->users_done, t->users_total);
}

static void drv_provision(tern_bench *b) {
  tern_drv *t = TERN_NEW(tern_drv);
  b->drv_ctx = t;
  t->b = b;
  int rc = tern_client_url_parse(b->cfg.server, &t->url);
  if (rc < 0) {
    tern_bench_provision_done(b, rc, "--server is not an http://HOST:PORT URL");
    return;
  }
  tern_client_options o;
  memset(&o, 0, sizeof o);
  o.connect_timeout_ms = 60000; /* thousands of connects at once queue in the server's backlog */
  o.http_timeout_ms = 60000;
  o.ca_file = getenv("TERN_CA_FILE"); /* https:// and wss:// servers (as the tern CLI) */
  t->client = tern_client_new(b->loop, &o);
  uv_timer_init(b->loop, &t->progress);
  t->progress.data = t;
  for (uint32_t u = 0; u < b->n_users; u++)
    if (user_wanted(b, u)) t->users_total++;
  t->n_tasks = b->cfg.register_concurrency;
  t->tasks = tern_calloc(t->n_tasks, sizeof *t->tasks);
  for (uint32_t i = 0; i < t->n_tasks; i++) {
    t->tasks[i].t = t;
    uv_timer_init(b->loop, &t->tasks[i].timer);
    t->tasks[i].timer.data = &t->tasks[i];
  }
  uv_timer_start(&t->progress, on_progress, 1000, 1000);
  for (uint32_t i = 0; i < t->n_tasks; i++) task_next_user(&t->tasks[i]);
  check_all_done(t);
}

/* ---- connections ---- */

static void send_ack(tern_bench *b, tern_bench_dev *d) {
  if (b->cfg.receipts == TERN_BENCH_RECEIPTS_OFF || d->last_seq <= d->acked_seq) return;
  if (tern_client_ack(d->conn, d->last_seq) == 0) d->acked_seq = d->last_seq;
}

static void send_reads(tern_bench *b, tern_bench_dev *d) {
  if (!d->n_reads) return;
  const char *ids[READ_MAX_IDS];
  size_t n = 0;
  const char *p = d->reads.data, *end = d->reads.data + d->reads.len;
  while (p < end) {
    ids[n++] = p;
    p += strlen(p) + 1;
    if (n == READ_MAX_IDS || p >= end) {
      tern_client_read(d->conn, b->users[d->read_peer].name, ids, n);
      n = 0;
    }
  }
  tern_buf_reset(&d->reads);
  if (d->reads.cap > 64 * 1024) tern_buf_free(&d->reads);
  d->n_reads = 0;
  d->read_peer = UINT32_MAX;
}

/* The device of a user that sends its read receipts: the lowest connected one, so that each
 * message is read exactly once. */
static bool is_reader(const tern_bench *b, const tern_bench_dev *d) {
  const tern_bench_user *u = &b->users[d->user];
  uint32_t m = u->live_mask | u->late_mask;
  return m && (uint32_t)__builtin_ctz(m) == d->devno;
}

static void queue_read(tern_bench *b, tern_bench_dev *d, uint32_t peer, const char *msg_id) {
  if (d->n_reads && d->read_peer != peer) {
    /* Another peer: what is queued goes now, after the ack that covers it. */
    send_ack(b, d);
    send_reads(b, d);
  }
  d->read_peer = peer;
  tern_buf_append(&d->reads, msg_id, strlen(msg_id) + 1);
  d->n_reads++;
}

static void on_event(tern_client_conn *conn, const tern_client_event *ev, void *arg) {
  tern_bench_dev *d = arg;
  tern_bench *b = d->b;
  switch (ev->type) {
    case TERN_CLIENT_EV_READY:
      if (ev->device_id && !d->device_id) d->device_id = tern_strdup(ev->device_id);
      tern_bench_on_ready(b, d);
      break;
    case TERN_CLIENT_EV_SYNCED:
      if (ev->seq > d->last_seq) d->last_seq = ev->seq;
      tern_bench_on_synced(b, d);
      break;
    case TERN_CLIENT_EV_GROUP:
      /* Membership events of the setup: acked like any envelope, nothing to check. */
      tern_bench_mark_dirty(b, d);
      if (ev->seq > d->last_seq) d->last_seq = ev->seq;
      break;
    case TERN_CLIENT_EV_MSG: {
      tern_bench_mark_dirty(b, d);
      if (ev->seq && ev->seq <= d->last_seq) {
        tern_bench_note_redelivered(b, d);
        break;
      }
      if (ev->seq) d->last_seq = ev->seq;
      if (ev->group_id) {
        tern_bench_on_group_msg(b, d, ev->group_id, strlen(ev->group_id), ev->from, ev->from ? strlen(ev->from) : 0,
                                msgid_hash(ev->msg_id), ev->body, ev->body_len);
        break;
      }
      tern_bench_on_msg(b, d, ev->from, ev->from ? strlen(ev->from) : 0, msgid_hash(ev->msg_id), ev->body,
                        ev->body_len);
      if (b->cfg.receipts == TERN_BENCH_RECEIPTS_READ && ev->msg_id && ev->from && is_reader(b, d)) {
        uint32_t peer = tern_bench_user_of_name(b, ev->from, strlen(ev->from));
        if (peer != UINT32_MAX && peer != d->user) queue_read(b, d, peer, ev->msg_id);
      }
      break;
    }
    case TERN_CLIENT_EV_RECEIPT:
      tern_bench_mark_dirty(b, d);
      if (ev->seq && ev->seq <= d->last_seq) {
        tern_bench_note_redelivered(b, d);
        break;
      }
      if (ev->seq) d->last_seq = ev->seq;
      /* Group receipts (merged per receipts.merge_window) are not what group mode measures:
       * the figure is delivery to the last member, seen at the members themselves. */
      if (ev->group_id) break;
      if (!ev->from || tern_bench_user_of_name(b, ev->from, strlen(ev->from)) != d->user) break; /* reader's copies */
      for (size_t i = 0; i < ev->n_msg_ids; i++) {
        uint64_t g = tern_bench_gidx_of_msgid(b, msgid_hash(ev->msg_ids[i]));
        if (g == UINT64_MAX) tern_bench_count_error(b, "receipt_for_unknown_msg_id");
        else tern_bench_on_receipt(b, d, g, ev->read);
      }
      break;
    case TERN_CLIENT_EV_SENT:
      tern_bench_on_sent(b, d, tern_bench_client_id_parse(ev->id, ev->id ? strlen(ev->id) : 0), msgid_hash(ev->msg_id));
      break;
    case TERN_CLIENT_EV_ERROR:
      tern_bench_on_error(b, d, tern_bench_client_id_parse(ev->id, ev->id ? strlen(ev->id) : 0), ev->code);
      break;
    case TERN_CLIENT_EV_CLOSED: {
      char why[48];
      if (ev->err) snprintf(why, sizeof why, "%s", uv_err_name(ev->err));
      else snprintf(why, sizeof why, "%u", (unsigned)ev->close_code);
      if (ev->http_status) snprintf(why, sizeof why, "http_%d", ev->http_status);
      tern_buf_free(&d->reads);
      d->n_reads = 0;
      d->read_peer = UINT32_MAX;
      tern_bench_on_closed(b, d, why);
      break;
    }
    default:
      break;
  }
}

static int drv_connect(tern_bench *b, tern_bench_dev *d, const char *bind_ip) {
  tern_drv *t = T(b);
  if (!d->token) return -EINVAL;
  tern_client_conn_options o;
  memset(&o, 0, sizeof o);
  o.url = &t->url;
  o.token = d->token;
  o.bind_ip = bind_ip;
  o.on_event = on_event;
  o.arg = d;
  tern_client_conn *conn;
  int rc = tern_client_connect(t->client, &o, &conn);
  if (rc < 0) return rc;
  d->conn = conn;
  return 0;
}

static int drv_send(tern_bench *b, tern_bench_dev *d, uint64_t gidx, const tern_bench_user *to, const char *body,
                    size_t len) {
  char id[24];
  tern_bench_client_id(id, gidx);
  return tern_client_send(d->conn, id, to->name, body, len, NULL);
}

static int drv_send_group(tern_bench *b, tern_bench_dev *d, uint64_t gidx, uint32_t g, const char *body, size_t len) {
  char id[24];
  tern_bench_client_id(id, gidx);
  return tern_client_send_group(d->conn, id, b->group_ids[g], body, len, NULL);
}

/* ---- group mode: POST /v1/groups, by each group's first member ---- */

static void gtask_step(grp_task *k);

static void gtask_next(grp_task *k) {
  tern_drv *t = k->t;
  if (t->next_group >= t->b->n_groups || t->failed) {
    k->busy = false;
    return;
  }
  k->group = t->next_group++;
  k->attempts = 0;
  k->busy = true;
  gtask_step(k);
}

static void groups_check_done(tern_drv *t) {
  for (uint32_t i = 0; i < t->n_gtasks; i++)
    if (t->gtasks[i].busy) return;
  uv_timer_stop(&t->progress);
  tern_bench_groups_done(t->b, t->failed ? -EIO : 0, t->failed ? t->why : NULL);
}

static void on_gretry(uv_timer_t *h) { gtask_step(h->data); }

static void on_group_created(tern_client_response *r, void *arg) {
  grp_task *k = arg;
  tern_drv *t = k->t;
  tern_bench *b = t->b;
  if (r->ok) {
    tern_client_group grp;
    if (tern_client_parse_group(r, &grp) < 0 || grp.nmembers != b->group_size) {
      snprintf(t->why, sizeof t->why, "group %u: unreadable answer, or not %u members", k->group, b->group_size);
      tern_client_group_free(&grp);
      t->failed = true;
      k->busy = false;
      groups_check_done(t);
      return;
    }
    tern_bench_group_set_id(b, k->group, grp.group_id, strlen(grp.group_id));
    tern_client_group_free(&grp);
    t->groups_done++;
    gtask_next(k);
    if (!k->busy) groups_check_done(t);
    return;
  }
  char code[80];
  snprintf(code, sizeof code, "group_create:%.60s", r->code[0] ? r->code : "failed");
  tern_bench_count_error(b, code);
  bool transient = r->status == 0 || r->status == 429 || r->status >= 500;
  if (transient && ++k->attempts < MAX_ATTEMPTS) {
    uv_timer_start(&k->timer, on_gretry, (uint64_t)RETRY_BASE_MS << k->attempts, 0);
    return;
  }
  snprintf(t->why, sizeof t->why, "create group %u: HTTP %d %.60s %.120s", k->group, r->status, r->code, r->message);
  t->failed = true;
  k->busy = false;
  groups_check_done(t);
}

static void gtask_step(grp_task *k) {
  tern_drv *t = k->t;
  tern_bench *b = t->b;
  uint32_t K = b->group_size;
  const tern_bench_dev *creator = &b->devs[b->users[tern_bench_group_member(b, k->group, 0)].first_dev];
  for (uint32_t j = 1; j < K; j++) t->names[j - 1] = b->users[tern_bench_group_member(b, k->group, j)].name;
  char name[32];
  snprintf(name, sizeof name, "bench %u", k->group);
  int rc = tern_client_group_create(t->client, &t->url, creator->token, name, NULL, t->names, K - 1, on_group_created, k);
  if (rc < 0) {
    snprintf(t->why, sizeof t->why, "cannot start a group request: %s", uv_strerror(rc));
    t->failed = true;
    k->busy = false;
    groups_check_done(t);
  }
}

static void on_gprogress(uv_timer_t *h) {
  tern_drv *t = h->data;
  tern_bench_groups_progress(t->b, "created", t->groups_done, t->b->n_groups);
}

static void drv_setup_groups(tern_bench *b) {
  tern_drv *t = T(b);
  t->names = tern_calloc(b->group_size, sizeof *t->names);
  /* Each creation writes K membership events: a few in flight keep the store busy enough. */
  t->n_gtasks = TERN_MIN(b->cfg.register_concurrency, b->n_groups);
  t->gtasks = tern_calloc(t->n_gtasks, sizeof *t->gtasks);
  for (uint32_t i = 0; i < t->n_gtasks; i++) {
    t->gtasks[i].t = t;
    uv_timer_init(b->loop, &t->gtasks[i].timer);
    t->gtasks[i].timer.data = &t->gtasks[i];
  }
  uv_timer_stop(&t->progress);
  uv_timer_start(&t->progress, on_gprogress, 1000, 1000);
  for (uint32_t i = 0; i < t->n_gtasks; i++) gtask_next(&t->gtasks[i]);
  groups_check_done(t);
}

static void drv_flush(tern_bench *b, tern_bench_dev *d) {
  if (!tern_client_is_open(d->conn)) return;
  send_ack(b, d);
  send_reads(b, d);
}

static size_t drv_outbound(const tern_bench_dev *d) { return d->conn ? tern_client_outbound(d->conn) : 0; }

static void drv_disconnect(tern_bench *b, tern_bench_dev *d) {
  if (d->conn) tern_client_close(d->conn, 1000);
}

static void drv_free(tern_bench *b) {
  tern_drv *t = T(b);
  if (!t) return;
  /* Connections still open are dropped without callbacks; the loop finishes closing them. */
  if (t->client) tern_client_free(t->client);
  t->client = NULL;
  for (uint32_t i = 0; i < t->n_tasks; i++) uv_close((uv_handle_t *)&t->tasks[i].timer, NULL);
  for (uint32_t i = 0; i < t->n_gtasks; i++) uv_close((uv_handle_t *)&t->gtasks[i].timer, NULL);
  uv_close((uv_handle_t *)&t->progress, NULL);
  for (uint32_t i = 0; i < b->n_devs; i++) b->devs[i].conn = NULL;
}

static void drv_release(tern_bench *b) {
  tern_drv *t = T(b);
  if (!t) return;
  tern_free(t->tasks);
  tern_free(t->gtasks);
  tern_free(t->names);
  tern_free(t);
  b->drv_ctx = NULL;
}

const tern_bench_driver tern_bench_driver_tern = {
    .name = "tern",
    .provision = drv_provision,
    .connect = drv_connect,
    .send = drv_send,
    .send_group = drv_send_group,
    .setup_groups = drv_setup_groups,
    .flush = drv_flush,
    .outbound = drv_outbound,
    .disconnect = drv_disconnect,
    .free = drv_free,
    .release = drv_release,
};
