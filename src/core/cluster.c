/* cluster: presence, typing and liveness of the other writers, over the store's bus
 * (cluster.h). */
#include "core/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/map.h"
#include "base/util.h"
#include "core/groups.h"
#include "core/presence.h"
#include "core/pushglue.h"
#include "core/receipts.h"
#include "core/session.h"

enum {
  TICK_MS = 500,          /* liveness checks */
  RELINK_AGAIN_MS = 2000, /* after a relink, live sessions read once more this much later */
  SNAPSHOT_CHUNK = 400,   /* entries per snapshot message (about 30 KB) */
  STR_MAX = 255,
};

/* Another writer, as heard on the bus. */
typedef struct peer {
  char *writer;           /* "<node>/<worker>" */
  uint64_t boot;          /* its start; a new one means it restarted and forgot */
  int64_t heard;          /* ms: last message from it */
  tern_map devices;       /* device id → remote_dev* it announced */
} peer;

/* A device connected on another writer. */
typedef struct remote_dev {
  peer *at;
  char user[TERN_USERNAME_MAX + 1];
  char id[TERN_DEVICE_ID_LEN + 1];
  int64_t since;          /* ms: when it connected there */
} remote_dev;

struct tern_cluster {
  tern_app *a;
  char writer[96];        /* this loop's name on the bus */
  uint64_t boot;
  bool shared;            /* the store has other writers: otherwise nothing here runs */
  tern_map peers;         /* writer → peer* */
  tern_map devices;       /* device id → remote_dev* (the newest connection of each) */
  tern_map users;         /* user → (intptr_t) devices connected elsewhere */
  uv_timer_t timer;
  bool timer_open;
  int64_t last_beat;      /* ms */
  int64_t recheck_at;     /* ms: live sessions read their inboxes again then (0: not due) */
  tern_buf out;           /* message being built */
};

/* ---- the codec ------------------------------------------------------------------------------ */

static void put_str(tern_buf *b, const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n > STR_MAX) n = STR_MAX;
  tern_buf_putc(b, (char)n);
  tern_buf_append(b, s, n);
  tern_buf_putc(b, '\0');
}

void tern_bus_encode(const tern_bus_msg *m, tern_buf *b) {
  tern_buf_reset(b);
  tern_buf_putc(b, (char)m->type);
  put_str(b, m->writer);
  tern_buf_put_be64(b, m->boot);
  tern_buf_putc(b, (char)m->flags);
  switch (m->type) {
    case TERN_BUS_ONLINE:
    case TERN_BUS_OFFLINE:
      put_str(b, m->user);
      put_str(b, m->device);
      tern_buf_put_be64(b, (uint64_t)m->ms);
      break;
    case TERN_BUS_TYPING:
      put_str(b, m->user);
      put_str(b, m->to);
      break;
    case TERN_BUS_SNAPSHOT:
      tern_buf_put_be16(b, m->nentries);
      for (size_t i = 0; i < m->nentries; i++) {
        put_str(b, m->entries[i].user);
        put_str(b, m->entries[i].device);
        tern_buf_put_be64(b, (uint64_t)m->entries[i].ms);
      }
      break;
    default: break;
  }
}

/* A message of this loop's, of type t. */
static tern_bus_msg mine(tern_cluster *c, uint8_t type, uint8_t flags) {
  return (tern_bus_msg){.type = type, .writer = c->writer, .boot = c->boot, .flags = flags};
}

typedef struct rd {
  const uint8_t *p, *end;
  bool bad;
} rd;

static const char *get_str(rd *r) {
  if (r->bad || r->end - r->p < 2) goto bad;
  size_t n = r->p[0];
  if ((size_t)(r->end - r->p) < n + 2 || r->p[1 + n] != 0 || memchr(r->p + 1, 0, n)) goto bad;
  const char *s = (const char *)r->p + 1;
  r->p += n + 2;
  return s;
bad:
  r->bad = true;
  return "";
}

static uint64_t get_u(rd *r, int bytes) {
  if (r->bad || r->end - r->p < bytes) {
    r->bad = true;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v = (v << 8) | *r->p++;
  return v;
}

void tern_bus_msg_free(tern_bus_msg *m) {
  tern_free(m->entries);
  memset(m, 0, sizeof *m);
}

int tern_bus_decode(const uint8_t *p, size_t n, tern_bus_msg *m) {
  memset(m, 0, sizeof *m);
  rd r = {.p = p, .end = p + n};
  m->type = (uint8_t)get_u(&r, 1);
  m->writer = get_str(&r);
  m->boot = get_u(&r, 8);
  m->flags = (uint8_t)get_u(&r, 1);
  switch (m->type) {
    case TERN_BUS_HEARTBEAT:
    case TERN_BUS_BYE: break;
    case TERN_BUS_ONLINE:
    case TERN_BUS_OFFLINE:
      m->user = get_str(&r);
      m->device = get_str(&r);
      m->ms = (int64_t)get_u(&r, 8);
      break;
    case TERN_BUS_TYPING:
      m->user = get_str(&r);
      m->to = get_str(&r);
      break;
    case TERN_BUS_SNAPSHOT: {
      size_t count = (size_t)get_u(&r, 2);
      if (r.bad || count > (size_t)(r.end - r.p) / 12) { /* an entry takes at least 12 bytes */
        r.bad = true;
        break;
      }
      m->entries = tern_calloc(count + 1, sizeof *m->entries);
      for (size_t i = 0; i < count && !r.bad; i++) {
        m->entries[i].user = get_str(&r);
        m->entries[i].device = get_str(&r);
        m->entries[i].ms = (int64_t)get_u(&r, 8);
      }
      m->nentries = count;
      break;
    }
    default: r.bad = true; break;
  }
  if (r.bad || r.p != r.end || !*m->writer) {
    tern_bus_msg_free(m);
    return -EINVAL;
  }
  return 0;
}

/* ---- state ------------------------------------------------------------------------------------ */

static void publish(tern_cluster *c) { tern_store_bus_publish(c->a->port, c->out.data, c->out.len); }

int tern_cluster_user_elsewhere(tern_app *a, const tern_user *u) {
  tern_cluster *c = a->cluster;
  return c && c->users.count ? (int)(intptr_t)tern_map_gets(&c->users, u->name) : 0;
}

bool tern_cluster_device_elsewhere(tern_app *a, const tern_device *d) {
  tern_cluster *c = a->cluster;
  return c && c->devices.count && tern_map_gets(&c->devices, d->id) != NULL;
}

/* u's count of devices connected elsewhere moves by delta; its watchers hear when the user's
 * overall state flips. */
static void user_count(tern_cluster *c, const char *name, int delta, int64_t last_seen) {
  intptr_t n = (intptr_t)tern_map_gets(&c->users, name) + delta;
  if (n > 0) tern_map_puts(&c->users, name, (void *)n);
  else tern_map_dels(&c->users, name);
  tern_user *u = tern_dir_user(c->a->dir, name);
  if (!u) return;
  if (last_seen > u->last_seen) u->last_seen = last_seen;
  if (u->online > 0) return; /* connected here: no change anyone sees */
  if ((delta > 0 && n == delta) || (delta < 0 && n <= 0)) tern_presence_changed(c->a, u);
}

static void drop_remote(tern_cluster *c, remote_dev *r, int64_t last_seen) {
  tern_map_dels(&r->at->devices, r->id);
  if (tern_map_gets(&c->devices, r->id) == r) tern_map_dels(&c->devices, r->id);
  user_count(c, r->user, -1, last_seen);
  tern_free(r);
}

static void peer_forget(tern_cluster *c, peer *p, int64_t last_seen) {
  const char *k;
  size_t kl;
  void *v;
  tern_map_iter it = {0};
  /* collect first: drop_remote edits the map being walked */
  remote_dev **all = tern_malloc((p->devices.count + 1) * sizeof *all);
  size_t n = 0;
  while (tern_map_next(&p->devices, &it, &k, &kl, &v)) all[n++] = v;
  for (size_t i = 0; i < n; i++) drop_remote(c, all[i], last_seen);
  tern_free(all);
}

static void peer_free(tern_cluster *c, peer *p, int64_t last_seen) {
  peer_forget(c, p, last_seen);
  tern_map_dels(&c->peers, p->writer);
  tern_map_free(&p->devices);
  tern_free(p->writer);
  tern_free(p);
}

/* The peer that sent m, made or reset (a new boot: it restarted and forgot its devices). */
static peer *peer_of(tern_cluster *c, const tern_bus_msg *m, int64_t now) {
  peer *p = tern_map_gets(&c->peers, m->writer);
  if (p && p->boot != m->boot) {
    TERN_INFO("cluster peer restarted", "writer=%s", p->writer);
    peer_forget(c, p, now);
    p->boot = m->boot;
  }
  if (!p) {
    p = TERN_NEW(peer);
    p->writer = tern_strdup(m->writer);
    p->boot = m->boot;
    tern_map_puts(&c->peers, p->writer, p);
    TERN_INFO("cluster peer joined", "writer=%s", p->writer);
  }
  p->heard = now;
  return p;
}

/* d connected on peer p at since. replace: the announcement is live (not a snapshot), so a
 * connection of the same device here that is older goes (close 4003). */
static void remote_online(tern_cluster *c, peer *p, const char *user, const char *id, int64_t since, bool replace) {
  if (strlen(id) > TERN_DEVICE_ID_LEN || strlen(user) > TERN_USERNAME_MAX) return;
  remote_dev *old = tern_map_gets(&c->devices, id);
  if (old && old->since > since) return; /* a newer connection is known */
  if (old) drop_remote(c, old, 0);
  remote_dev *r = TERN_NEW(remote_dev);
  r->at = p;
  snprintf(r->user, sizeof r->user, "%s", user);
  snprintf(r->id, sizeof r->id, "%s", id);
  r->since = since;
  tern_map_puts(&c->devices, r->id, r);
  tern_map_puts(&p->devices, r->id, r);
  user_count(c, r->user, +1, 0);
  tern_device *d = tern_dir_device(c->a->dir, id);
  if (!d) return;
  tern_pushglue_online(c->a, d); /* it is connected: no notification window for it */
  tern_session *s = d->session;
  if (replace && s && s->ep &&
      (since > s->authed_at || (since == s->authed_at && strcmp(p->writer, c->writer) > 0))) {
    TERN_INFO("connection replaced elsewhere", "device=%s by=%s", id, p->writer);
    tern_session_close(s, TERN_CLOSE_REPLACED);
  }
}

static void remote_offline(tern_cluster *c, peer *p, const char *id, int64_t last_seen) {
  remote_dev *r = tern_map_gets(&p->devices, id);
  if (r) drop_remote(c, r, last_seen);
}

static void deliver_typing(tern_cluster *c, const tern_bus_msg *m) {
  tern_app *a = c->a;
  tern_user *from = tern_dir_user(a->dir, m->user);
  if (!from) return;
  bool composing = m->flags & 1;
  if (m->flags & 2) {
    tern_group *g = tern_groups_get(a->groups, m->to);
    if (!g || !tern_group_member(g, from)) return;
    for (size_t i = 0; i < g->nmembers; i++) {
      tern_user *u = g->members[i].user;
      if (u == from) continue;
      for (tern_device *d = u->devices; d; d = d->next_in_user)
        if (d->session && d->session->ep) d->session->ep_ops->typing(d->session->ep, from->name, g->id, composing);
    }
    return;
  }
  tern_user *to = tern_dir_user(a->dir, m->to);
  if (!to) return;
  for (tern_device *d = to->devices; d; d = d->next_in_user)
    if (d->session && d->session->ep) d->session->ep_ops->typing(d->session->ep, from->name, NULL, composing);
}

static void send_snapshot(tern_cluster *c);

/* Every live session reads its inbox now, and once more a moment later: after a reconnect the
 * servers spread this node's interest over their routes, and an event published elsewhere in
 * between is lost too. A read finds what the session has not been sent, or nothing. */
static void read_again(tern_cluster *c) {
  tern_session_recheck_all(c->a);
  c->recheck_at = tern_now_ms() + RELINK_AGAIN_MS;
}

static void on_bus(void *arg, const uint8_t *msg, size_t len) {
  tern_cluster *c = arg;
  tern_bus_msg m;
  if (tern_bus_decode(msg, len, &m) < 0) {
    TERN_WARN("cluster: malformed bus message ignored", "bytes=%zu", len);
    return;
  }
  if (!strcmp(m.writer, c->writer)) { /* our own, through a shared backend */
    tern_bus_msg_free(&m);
    return;
  }
  int64_t now = tern_now_ms();
  if (m.type == TERN_BUS_BYE) {
    peer *p = tern_map_gets(&c->peers, m.writer);
    if (p && p->boot == m.boot) {
      TERN_INFO("cluster peer left", "writer=%s", p->writer);
      peer_free(c, p, now);
    }
    tern_bus_msg_free(&m);
    return;
  }
  peer *p = peer_of(c, &m, now);
  switch (m.type) {
    case TERN_BUS_HEARTBEAT:
      if (m.flags & TERN_BUS_HELLO) send_snapshot(c); /* a newcomer asks who is connected */
      if (m.flags & TERN_BUS_RELINKED) read_again(c);
      break;
    case TERN_BUS_ONLINE: remote_online(c, p, m.user, m.device, m.ms, true); break;
    case TERN_BUS_OFFLINE: remote_offline(c, p, m.device, m.ms); break;
    case TERN_BUS_SNAPSHOT:
      for (size_t i = 0; i < m.nentries; i++)
        remote_online(c, p, m.entries[i].user, m.entries[i].device, m.entries[i].ms, false);
      break;
    case TERN_BUS_TYPING: deliver_typing(c, &m); break;
    default: break;
  }
  tern_bus_msg_free(&m);
}

/* ---- what this loop tells the others ------------------------------------------------------------ */

typedef struct snap {
  tern_cluster *c;
  tern_bus_entry e[SNAPSHOT_CHUNK];
  size_t n;
} snap;

static void snap_flush(snap *s) {
  tern_bus_msg m = mine(s->c, TERN_BUS_SNAPSHOT, 0);
  m.entries = s->e;
  m.nentries = s->n;
  tern_bus_encode(&m, &s->c->out);
  publish(s->c);
  s->n = 0;
}

static bool snap_device(tern_device *d, void *arg) {
  snap *s = arg;
  if (!d->session || !d->session->ep || d->session->state == SESS_AUTH) return true;
  s->e[s->n++] = (tern_bus_entry){.user = d->user->name, .device = d->id, .ms = d->session->authed_at};
  if (s->n == SNAPSHOT_CHUNK) snap_flush(s);
  return true;
}

static void send_snapshot(tern_cluster *c) {
  snap *s = tern_malloc(sizeof *s);
  s->c = c;
  s->n = 0;
  tern_dir_each_device(c->a->dir, snap_device, s);
  if (s->n) snap_flush(s);
  tern_free(s);
}

static void heartbeat(tern_cluster *c, uint8_t flags) {
  tern_bus_msg m = mine(c, TERN_BUS_HEARTBEAT, flags);
  tern_bus_encode(&m, &c->out);
  publish(c);
  c->last_beat = tern_now_ms();
}

void tern_cluster_connected(tern_app *a, tern_device *d, int64_t since) {
  tern_cluster *c = a->cluster;
  if (!c || !c->shared) return;
  tern_bus_msg m = mine(c, TERN_BUS_ONLINE, 0);
  m.user = d->user->name;
  m.device = d->id;
  m.ms = since;
  tern_bus_encode(&m, &c->out);
  publish(c);
}

void tern_cluster_disconnected(tern_app *a, tern_device *d, int64_t last_seen) {
  tern_cluster *c = a->cluster;
  if (!c || !c->shared || !d->user) return;
  tern_bus_msg m = mine(c, TERN_BUS_OFFLINE, 0);
  m.user = d->user->name;
  m.device = d->id;
  m.ms = last_seen;
  tern_bus_encode(&m, &c->out);
  publish(c);
}

void tern_cluster_typing(tern_app *a, const tern_user *from, const char *to, const char *group_id, bool composing) {
  tern_cluster *c = a->cluster;
  if (!c || !c->shared) return;
  tern_bus_msg m = mine(c, TERN_BUS_TYPING, (uint8_t)((composing ? 1 : 0) | (group_id ? 2 : 0)));
  m.user = from->name;
  m.to = group_id ? group_id : to;
  tern_bus_encode(&m, &c->out);
  publish(c);
}

/* ---- liveness ------------------------------------------------------------------------------------ */

/* True when no live peer's writer name sorts before this loop's. */
static bool lowest_live(tern_cluster *c) {
  const char *k;
  size_t kl;
  void *v;
  tern_map_iter it = {0};
  while (tern_map_next(&c->peers, &it, &k, &kl, &v))
    if (strcmp(((peer *)v)->writer, c->writer) < 0) return false;
  return true;
}

static void on_tick(uv_timer_t *t) {
  tern_cluster *c = t->data;
  int64_t now = tern_now_ms(), timeout = c->a->cfg->cluster_node_timeout_ms;
  if (now - c->last_beat >= timeout / 3) heartbeat(c, 0);
  const char *k;
  size_t kl;
  void *v;
  tern_map_iter it = {0};
  peer *dead[16];
  size_t n = 0;
  while (n < TERN_ARRAY_LEN(dead) && tern_map_next(&c->peers, &it, &k, &kl, &v)) {
    peer *p = v;
    if (now - p->heard > timeout) dead[n++] = p;
  }
  char gone[TERN_ARRAY_LEN(dead)][sizeof c->writer];
  for (size_t i = 0; i < n; i++) {
    TERN_WARN("cluster peer timed out: its users go offline", "writer=%s silent_ms=%lld devices=%zu", dead[i]->writer,
              (long long)(now - dead[i]->heard), dead[i]->devices.count);
    snprintf(gone[i], sizeof gone[i], "%s", dead[i]->writer);
    peer_free(c, dead[i], dead[i]->heard);
  }
  /* Its queue of delivered group receipt parts (receipts.c) may never be read by it again:
   * the live writer first by name sends them. Two writers that disagree on who is live both
   * do, which sends a receipt twice, never none; a writer that comes back reads what is left. */
  if (n && lowest_live(c))
    for (size_t i = 0; i < n; i++) tern_receipts_adopt(c->a, gone[i]);
  /* A node killed between a commit and its envelope events leaves entries that no live
   * session here was told of, and a sender's resend of them is answered from de-dup without
   * a new event: every live session reads its inbox once more (one walk of the directory per
   * death, rare). */
  if (n) tern_session_recheck_all(c->a);
  if (c->recheck_at && now >= c->recheck_at) {
    c->recheck_at = 0;
    tern_session_recheck_all(c->a);
  }
}

/* This node's link to the store's servers was cut and is back: envelope events and bus
 * messages of that moment are gone, both those sent to this node and those it had handed to
 * a server that died. Its live sessions read their inboxes, and the others are told to do the
 * same (RELINKED) and to say again who is connected to them (HELLO: an OFFLINE or ONLINE may
 * be among what was lost). */
static void on_relink(void *arg) {
  tern_cluster *c = arg;
  TERN_INFO("cluster: the store's link is back; live sessions read their inboxes again", "writer=%s", c->writer);
  read_again(c);
  heartbeat(c, TERN_BUS_HELLO | TERN_BUS_RELINKED);
}

tern_cluster *tern_cluster_new(tern_app *a) {
  tern_cluster *c = TERN_NEW(tern_cluster);
  c->a = a;
  snprintf(c->writer, sizeof c->writer, "%s/%u", tern_store_node_id(a->store), a->worker);
  tern_random(&c->boot, sizeof c->boot);
  uv_timer_init(a->loop, &c->timer);
  c->timer.data = c;
  c->timer_open = true;
  return c;
}

void tern_cluster_start(tern_cluster *c) {
  c->shared = tern_store_port_shared(c->a->port);
  if (!c->shared) return;
  tern_store_bus_follow(c->a->port, on_bus, c);
  tern_store_relink_follow(c->a->port, on_relink, c);
  heartbeat(c, TERN_BUS_HELLO); /* the others answer with who is connected to them */
  uv_timer_start(&c->timer, on_tick, TICK_MS, TICK_MS);
}

void tern_cluster_stop(tern_cluster *c) {
  if (!c || !c->timer_open) return;
  if (c->shared) {
    tern_bus_msg m = mine(c, TERN_BUS_BYE, 0);
    tern_bus_encode(&m, &c->out);
    publish(c);
  }
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, NULL);
  c->timer_open = false;
}

static bool free_peer_cb(const char *k, size_t kl, void *v, void *arg) {
  peer *p = v;
  tern_map_free(&p->devices);
  tern_free(p->writer);
  tern_free(p);
  return true;
}

static bool free_dev_cb(const char *k, size_t kl, void *v, void *arg) {
  tern_free(v);
  return true;
}

void tern_cluster_free(tern_cluster *c) {
  if (!c) return;
  tern_map_each(&c->devices, free_dev_cb, NULL);
  tern_map_free(&c->devices);
  tern_map_each(&c->peers, free_peer_cb, NULL);
  tern_map_free(&c->peers);
  tern_map_free(&c->users);
  tern_buf_free(&c->out);
  tern_free(c);
}
