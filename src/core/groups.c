/* groups: the group model, its records and its events (groups.h). */
#include "core/groups.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/map.h"
#include "base/util.h"
#include "core/router.h"
#include "proto/wire.h"

#define KV_PREFIX "group/"
enum { REC_V1 = 1, REC_VERSION = 2 };

struct tern_groups {
  tern_map byid; /* id → tern_group */
};

tern_groups *tern_groups_new(void) { return TERN_NEW(tern_groups); }

static void group_free(tern_group *g) {
  tern_free(g->name);
  tern_free(g->description);
  tern_free(g->members);
  tern_free(g);
}

static bool free_cb(const char *k, size_t kl, void *v, void *arg) {
  group_free(v);
  return true;
}

void tern_groups_free(tern_groups *g) {
  if (!g) return;
  tern_map_each(&g->byid, free_cb, NULL);
  tern_map_free(&g->byid);
  tern_free(g);
}

tern_group *tern_groups_get(tern_groups *g, const char *id) { return tern_map_gets(&g->byid, id); }
size_t tern_groups_count(const tern_groups *g) { return g->byid.count; }

tern_member *tern_group_member(const tern_group *grp, const tern_user *u) {
  for (size_t i = 0; i < grp->nmembers; i++)
    if (grp->members[i].user == u) return &grp->members[i];
  return NULL;
}

tern_group *const *tern_groups_of(tern_app *a, const tern_user *u, size_t *n) {
  *n = u->ngroups;
  return u->groups;
}

/* ---- membership in memory ---- */

static void user_join(tern_user *u, tern_group *g) {
  if (u->ngroups == u->groups_cap) {
    u->groups_cap = u->groups_cap ? u->groups_cap * 2 : 4;
    u->groups = tern_realloc(u->groups, u->groups_cap * sizeof *u->groups);
  }
  u->groups[u->ngroups++] = g;
}

static void user_leave(tern_user *u, tern_group *g) {
  for (size_t i = 0; i < u->ngroups; i++) {
    if (u->groups[i] == g) {
      u->groups[i] = u->groups[--u->ngroups];
      return;
    }
  }
}

static void add_member(tern_group *g, tern_user *u, bool admin, int64_t since) {
  if (g->nmembers == g->members_cap) {
    g->members_cap = g->members_cap ? g->members_cap * 2 : 8;
    g->members = tern_realloc(g->members, g->members_cap * sizeof *g->members);
  }
  g->members[g->nmembers++] = (tern_member){.user = u, .admin = admin, .since = since};
  /* a join stored by another worker or node (whose clock may run ahead) still precedes what
   * this one accepts next */
  if (g->join_clock < since) g->join_clock = since;
  user_join(u, g);
}

static void remove_member(tern_group *g, tern_user *u) {
  for (size_t i = 0; i < g->nmembers; i++) {
    if (g->members[i].user == u) {
      memmove(&g->members[i], &g->members[i + 1], (g->nmembers - i - 1) * sizeof *g->members);
      g->nmembers--;
      break;
    }
  }
  user_leave(u, g);
}

/* ---- records: [1 ver][8 rev][8 created_at][2 n][created_by][2 n][name][2 n][description]
 *               [4 count]([2 n][user][1 admin][8 since])*   (version 1 had no rev)
 *
 * Every change is a compare-and-set on the record: the op is stored only while the record is
 * still the one this loop based the change on (its hash), and it carries rev + 1. So the
 * records of one group form one line of revisions, whichever writers made them, and of two
 * changes made at once on two nodes one wins and the other answers CONFLICT (groupapi.c then
 * catches up and runs the request again on the winner's state). A record arriving from
 * another writer replaces the group here when its rev is past the last one known stored. */


static void put_s16(tern_buf *b, const char *s) {
  size_t n = s ? strlen(s) : 0;
  tern_buf_put_be(b, n, 2);
  tern_buf_append(b, s, n);
}

void tern_group_encode(const tern_group *g, tern_buf *b) {
  tern_buf_reset(b);
  tern_buf_putc(b, REC_VERSION);
  tern_buf_put_be(b, g->rev, 8);
  tern_buf_put_be(b, (uint64_t)g->created_at, 8);
  put_s16(b, g->created_by);
  put_s16(b, g->name);
  put_s16(b, g->description);
  tern_buf_put_be(b, g->nmembers, 4);
  for (size_t i = 0; i < g->nmembers; i++) {
    put_s16(b, g->members[i].user->name);
    tern_buf_putc(b, g->members[i].admin ? 1 : 0);
    tern_buf_put_be(b, (uint64_t)g->members[i].since, 8);
  }
}

typedef struct rd {
  const uint8_t *p, *end;
  bool bad;
} rd;

static uint64_t get_be(rd *r, int bytes) {
  if (r->end - r->p < bytes) {
    r->bad = true;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v = (v << 8) | *r->p++;
  return v;
}

static char *get_s16(rd *r, size_t max) {
  size_t n = (size_t)get_be(r, 2);
  if (r->bad || n > max || (size_t)(r->end - r->p) < n) {
    r->bad = true;
    return NULL;
  }
  char *s = tern_strndup((const char *)r->p, n);
  r->p += n;
  return s;
}

/* A string the API would have taken: valid UTF-8 without NUL (a record from another node, or
 * one corrupted on disk, must not hand clients bytes a JSON answer cannot carry). */
static char *get_text16(rd *r, size_t max) {
  const uint8_t *start = r->p;
  char *s = get_s16(r, max);
  if (s && (strlen(s) != (size_t)(r->p - start) - 2 || !tern_utf8_valid(s, strlen(s)))) {
    tern_free(s);
    r->bad = true;
    return NULL;
  }
  return s;
}

bool tern_groups_is_kv(const char *key, size_t klen) {
  return klen > sizeof KV_PREFIX - 1 && memcmp(key, KV_PREFIX, sizeof KV_PREFIX - 1) == 0;
}

static void record_key(const tern_group *g, char *out, size_t cap) { snprintf(out, cap, KV_PREFIX "%s", g->id); }

/* ---- ids ---- */

/* Never one that starts with '-': command lines would read it as an option (`tern group
 * info -jX...` did, in CI). */
static void new_id(tern_app *a, char out[TERN_GROUP_ID_MAX + 1]) {
  do {
    uint8_t raw[16];
    tern_random(raw, sizeof raw);
    sodium_bin2base64(out, TERN_GROUP_ID_MAX + 1, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  } while (out[0] == '-' || tern_groups_get(a->groups, out));
}

/* ---- events ---- */

/* Every device of u, or its user-level inbox when it has none, gets value vi. */
static void user_targets(tern_op_append *op, tern_user *u, size_t vi) {
  if (!u->devices) {
    char inbox[TERN_USER_INBOX_LEN];
    tern_user_inbox(inbox, u->name);
    tern_op_append_target(op, inbox, vi, TERN_CAP_NONE, NULL);
    return;
  }
  for (tern_device *d = u->devices; d; d = d->next_in_user) {
    tern_dir_device_ref(d);
    tern_op_append_target(op, d->id, vi, TERN_CAP_NONE, d);
  }
}

static void event_record(tern_app *a, const tern_group *grp, const tern_group_change *c, int64_t ts, tern_buf *rec) {
  tern_env_begin(rec, TERN_ENV_GROUP, 0, ts);
  tern_env_put_str(rec, TERN_EF_GROUP_ID, grp->id);
  tern_env_put_str(rec, TERN_EF_EVENT, c->event);
  tern_env_put_str(rec, TERN_EF_BY, c->by->name);
  if (!strcmp(c->event, "created") || !strcmp(c->event, "renamed")) {
    tern_env_put_str(rec, TERN_EF_NAME, grp->name);
    tern_env_put_str(rec, TERN_EF_DESCRIPTION, grp->description ? grp->description : "");
  }
  for (size_t i = 0; i < c->nusers; i++) tern_env_put_str(rec, TERN_EF_USER, c->users[i]->name);
}

void tern_group_event_targets(tern_app *a, tern_op_append *op, const tern_group *grp, const tern_group_change *c) {
  event_record(a, grp, c, tern_now_ms(), &a->record);
  size_t vi = tern_op_append_value(op, a->record.data, a->record.len);
  for (size_t i = 0; i < grp->nmembers; i++) user_targets(op, grp->members[i].user, vi);
  for (size_t i = 0; i < c->nout; i++) user_targets(op, c->out[i], vi);
}

/* The op of a change: its events, and the group's record written (or deleted) with them,
 * conditional on the record this loop last knew (seal() below, once the record is final). */
static tern_op_append *change_op(tern_app *a, tern_group *grp, bool deleted) {
  tern_op_append *op = tern_op_append_new(NULL, NULL);
  char key[sizeof KV_PREFIX + TERN_GROUP_ID_MAX];
  record_key(grp, key, sizeof key);
  tern_store_set_str(&op->record_key, key);
  op->record_check = true;
  op->record_absent = !grp->stored;
  memcpy(op->record_hash, grp->stored_hash, 32);
  grp->rev++;
  if (deleted) op->record_delete = true;
  else tern_group_encode(grp, &op->record);
  return op;
}

/* The record as op will store it becomes the base of this loop's next change. */
static void seal(tern_group *grp, tern_op_append *op) {
  if (op->record_delete) {
    grp->stored = false;
    return;
  }
  crypto_generichash(grp->stored_hash, 32, (const uint8_t *)op->record.data, op->record.len, NULL, 0);
  grp->stored = true;
}

uint64_t tern_group_op_rev(const tern_store_op *op) {
  const tern_op_append *ap = (const tern_op_append *)(const void *)op;
  if (op->type != TERN_OP_APPEND || !ap->record_key || ap->record.len < 9) return 0;
  uint64_t rev = 0;
  for (int i = 1; i < 9; i++) rev = (rev << 8) | (uint8_t)ap->record.data[i];
  return rev;
}

void tern_group_confirm(tern_app *a, const char *id, uint64_t rev) {
  tern_group *g = tern_groups_get(a->groups, id);
  if (g && rev > g->confirmed_rev) g->confirmed_rev = rev;
}

tern_group *tern_group_create(tern_app *a, tern_user *creator, const char *name, const char *description,
                              tern_user **members, size_t n, tern_store_op **out) {
  tern_group *g = TERN_NEW(tern_group);
  new_id(a, g->id);
  g->name = tern_strdup(name);
  g->description = tern_strdup(description ? description : "");
  snprintf(g->created_by, sizeof g->created_by, "%s", creator->name);
  g->created_at = tern_now_ms();
  add_member(g, creator, true, g->created_at);
  for (size_t i = 0; i < n; i++) add_member(g, members[i], false, g->created_at);
  tern_map_puts(&a->groups->byid, g->id, g);
  tern_user **all = tern_malloc(g->nmembers * sizeof *all);
  for (size_t i = 0; i < g->nmembers; i++) all[i] = g->members[i].user;
  tern_group_change c = {.event = "created", .by = creator, .users = all, .nusers = g->nmembers};
  tern_op_append *op = change_op(a, g, false);
  seal(g, op);
  tern_group_event_targets(a, op, g, &c);
  tern_free(all);
  TERN_INFO("group created", "group=%s by=%s members=%zu", g->id, creator->name, g->nmembers);
  *out = &op->op;
  return g;
}

tern_store_op *tern_group_rename(tern_app *a, tern_group *grp, tern_user *by, const char *name, const char *description) {
  if (name) {
    tern_free(grp->name);
    grp->name = tern_strdup(name);
  }
  if (description) {
    tern_free(grp->description);
    grp->description = tern_strdup(description);
  }
  tern_group_change c = {.event = "renamed", .by = by};
  tern_op_append *op = change_op(a, grp, false);
  seal(grp, op);
  tern_group_event_targets(a, op, grp, &c);
  return &op->op;
}

int64_t tern_group_stamp(tern_group *g) {
  int64_t now = tern_now_ms();
  if (now <= g->join_clock) now = g->join_clock + 1;
  if (now > g->msg_clock) g->msg_clock = now;
  return now;
}

tern_store_op *tern_group_add(tern_app *a, tern_group *grp, tern_user *by, tern_user **users, size_t n) {
  if (!n) return NULL;
  /* not before any message already accepted here: one given out at this very ms was not sent
   * to them, and its time is not after their `since` */
  int64_t now = tern_now_ms();
  if (now < grp->msg_clock) now = grp->msg_clock;
  for (size_t i = 0; i < n; i++) add_member(grp, users[i], false, now);
  tern_group_change c = {.event = "added", .by = by, .users = users, .nusers = n};
  tern_op_append *op = change_op(a, grp, false);
  seal(grp, op);
  tern_group_event_targets(a, op, grp, &c);
  return &op->op;
}

static bool has_admin(const tern_group *g) {
  for (size_t i = 0; i < g->nmembers; i++)
    if (g->members[i].admin) return true;
  return false;
}

tern_store_op *tern_group_remove(tern_app *a, tern_group *grp, tern_user *by, tern_user *who, bool *deleted) {
  *deleted = false;
  remove_member(grp, who);
  bool left = by == who;
  tern_user *one[1] = {who};
  tern_group_change c = {.event = left ? "left" : "removed", .by = by, .users = one, .nusers = 1, .out = one, .nout = 1};
  if (!grp->nmembers) {
    /* The last member left: the group goes, and the leaver hears it. */
    tern_op_append *op = change_op(a, grp, true);
    seal(grp, op);
    tern_group_event_targets(a, op, grp, &c);
    tern_map_dels(&a->groups->byid, grp->id);
    TERN_INFO("group deleted", "group=%s by=%s", grp->id, by->name);
    group_free(grp);
    *deleted = true;
    return &op->op;
  }
  tern_op_append *op = change_op(a, grp, false);
  tern_group_event_targets(a, op, grp, &c);
  if (!has_admin(grp)) {
    /* The oldest member takes over (ties: the one listed first: members are in join order). */
    tern_member *next = &grp->members[0];
    for (size_t i = 1; i < grp->nmembers; i++)
      if (grp->members[i].since < next->since) next = &grp->members[i];
    next->admin = true;
    tern_user *p[1] = {next->user};
    tern_group_change pc = {.event = "promoted", .by = who, .users = p, .nusers = 1};
    tern_group_encode(grp, &op->record);
    tern_group_event_targets(a, op, grp, &pc);
  }
  seal(grp, op);
  return &op->op;
}

tern_store_op *tern_group_set_admin(tern_app *a, tern_group *grp, tern_user *by, tern_user *who, bool admin) {
  tern_member *m = tern_group_member(grp, who);
  if (!m || m->admin == admin) return NULL;
  m->admin = admin;
  tern_user *one[1] = {who};
  tern_group_change c = {.event = admin ? "promoted" : "demoted", .by = by, .users = one, .nusers = 1};
  tern_op_append *op = change_op(a, grp, false);
  seal(grp, op);
  tern_group_event_targets(a, op, grp, &c);
  return &op->op;
}

/* ---- records read: start-up, and records other writers stored ---- */

static void group_unlink(tern_group *g) {
  for (size_t i = 0; i < g->nmembers; i++) user_leave(g->members[i].user, g);
}

/* Decodes a record into a new group (members whose accounts are unknown here left out, and
 * counted in *missing). NULL when it does not read. */
static tern_group *decode(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t len, size_t *missing) {
  const char *id = key + sizeof KV_PREFIX - 1;
  size_t idl = klen - (sizeof KV_PREFIX - 1);
  rd r = {.p = v, .end = v + len};
  uint64_t ver = get_be(&r, 1);
  if (klen < sizeof KV_PREFIX - 1 || !tern_wire_group_id(id, idl) || (ver != REC_VERSION && ver != REC_V1)) return NULL;
  tern_group *g = TERN_NEW(tern_group);
  memcpy(g->id, id, idl);
  g->rev = ver == REC_V1 ? 0 : get_be(&r, 8);
  g->created_at = (int64_t)get_be(&r, 8);
  char *by = get_text16(&r, TERN_USERNAME_MAX);
  g->name = get_text16(&r, TERN_GROUP_NAME_MAX);
  g->description = get_text16(&r, TERN_GROUP_DESC_MAX);
  if (by) snprintf(g->created_by, sizeof g->created_by, "%s", by);
  tern_free(by);
  uint64_t n = get_be(&r, 4);
  for (uint64_t i = 0; i < n && !r.bad; i++) {
    char *name = get_s16(&r, TERN_USERNAME_MAX);
    bool admin = get_be(&r, 1) != 0;
    int64_t since = (int64_t)get_be(&r, 8);
    tern_user *u = name && !r.bad ? tern_dir_user(a->dir, name) : NULL;
    /* A member whose account is gone is left out (accounts are deleted with their memberships;
     * this only guards against a record older than its member's deletion). */
    if (u && !tern_group_member(g, u)) add_member(g, u, admin, since);
    else if (!u && name && !r.bad) (*missing)++;
    tern_free(name);
  }
  if (r.bad || r.p != r.end || !g->name || !*g->name || !g->description) {
    group_unlink(g);
    group_free(g);
    return NULL;
  }
  crypto_generichash(g->stored_hash, 32, v, len, NULL, 0);
  g->stored = true;
  g->confirmed_rev = g->rev;
  return g;
}

int tern_groups_load_record(tern_app *a, const uint8_t *v, size_t len, const char *key, size_t klen) {
  size_t missing = 0;
  tern_group *g = decode(a, key, klen, v, len, &missing);
  if (!g) return -EINVAL;
  if (tern_groups_get(a->groups, g->id)) {
    group_unlink(g);
    group_free(g);
    return -EINVAL;
  }
  tern_map_puts(&a->groups->byid, g->id, g);
  return 0;
}

void tern_groups_apply_record(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t len) {
  char id[TERN_GROUP_ID_MAX + 1];
  size_t idl = klen - (sizeof KV_PREFIX - 1);
  if (idl == 0 || idl > TERN_GROUP_ID_MAX) return;
  memcpy(id, key + sizeof KV_PREFIX - 1, idl);
  id[idl] = 0;
  tern_group *old = tern_groups_get(a->groups, id);
  if (!v) { /* deleted: its last member left, on another writer */
    if (!old) return;
    tern_map_dels(&a->groups->byid, id);
    group_unlink(old);
    group_free(old);
    return;
  }
  size_t missing = 0;
  tern_group *g = decode(a, key, klen, v, len, &missing);
  if (!g) {
    TERN_WARN("group record from another writer refused", "group=%s bytes=%zu", id, len);
    return;
  }
  if (missing)
    TERN_WARN("group record names users unknown here", "group=%s missing=%zu", id, missing);
  if (old && g->rev <= old->confirmed_rev) { /* a record older than one known stored */
    group_unlink(g);
    group_free(g);
    return;
  }
  if (old) {
    /* Changes this loop made and has not seen stored yet were based on an older record:
     * they will answer CONFLICT. */
    if (old->confirmed_rev > g->confirmed_rev) g->confirmed_rev = old->confirmed_rev;
    tern_map_dels(&a->groups->byid, id);
    group_unlink(old);
    group_free(old);
  }
  tern_map_puts(&a->groups->byid, g->id, g);
}

/* ---- JSON ---- */

void tern_group_json(const tern_group *g, tern_buf *b) {
  tern_buf_puts(b, "{\"group_id\":");
  tern_buf_put_json_str(b, g->id, strlen(g->id));
  tern_buf_puts(b, ",\"name\":");
  tern_buf_put_json_str(b, g->name, strlen(g->name));
  tern_buf_puts(b, ",\"description\":");
  tern_buf_put_json_str(b, g->description, strlen(g->description));
  tern_buf_puts(b, ",\"created_by\":");
  tern_buf_put_json_str(b, g->created_by, strlen(g->created_by));
  tern_buf_puts(b, ",\"created_at\":");
  tern_buf_put_i64(b, g->created_at);
  tern_buf_puts(b, ",\"members\":[");
  for (size_t i = 0; i < g->nmembers; i++) {
    const tern_member *m = &g->members[i];
    if (i) tern_buf_putc(b, ',');
    tern_buf_puts(b, "{\"user\":");
    tern_buf_put_json_str(b, m->user->name, strlen(m->user->name));
    tern_buf_puts(b, m->admin ? ",\"role\":\"admin\",\"since\":" : ",\"role\":\"member\",\"since\":");
    tern_buf_put_i64(b, m->since);
    tern_buf_putc(b, '}');
  }
  tern_buf_puts(b, "]}");
}
