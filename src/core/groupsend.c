/* groupsend: a send to a group (PROTOCOL.md section 10): one APPEND for every device of every
 * other member and the sender's other devices, taken from the membership at acceptance.
 *
 * Storage that scales with group size: the body is stored once, as the op's shared body
 * (keyed by the msg_id), and each device's envelope record carries only the message's small
 * fields and a reference to it. Members' inboxes that are full are skipped alone (TERN_CAP_SKIP);
 * a member all of whose devices were skipped is named in `sent`'s skipped. Each member's first
 * acking device makes that member delivered: members with one inbox get a SOLE copy, members
 * with several a token "<msg_id>/<member>". */
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/map.h"
#include "base/util.h"
#include "core/cluster.h"
#include "core/mediaglue.h"
#include "core/e2e.h"
#include "core/groups.h"
#include "core/limits.h"
#include "core/msgid.h"
#include "core/privacy.h"
#include "core/pushglue.h"
#include "core/router.h"
#include "media/media.h"

typedef struct group_send {
  tern_app *app;          /* owner */
  tern_session *s;        /* the sender's session (referenced) */
  char id[TERN_CLIENT_ID_MAX + 1];
  char msg_id[TERN_MSG_ID_LEN + 1];
  char group_id[TERN_GROUP_ID_MAX + 1];     /* for push payloads */
  char group_name[TERN_GROUP_NAME_MAX + 1];
  tern_user *from;
  int64_t ts;
  uint64_t received_ns;
  bool silent;            /* no push */
  tern_user **members;    /* the other members at acceptance */
  size_t nmembers;
  int32_t *member_of;     /* per target: index into members, -1 for the sender's own devices */
  char *body;             /* a copy for push previews, or NULL */
  size_t body_len;
  uint8_t *mentioned;     /* per member: named in mentions (pushed even when muted) */
} group_send;

static void group_send_free(group_send *g) {
  tern_free(g->mentioned);
  tern_free(g->members);
  tern_free(g->member_of);
  tern_free(g->body);
  tern_free(g);
}

static void answer_sent(group_send *g, tern_op_append *op) {
  tern_session *s = g->s;
  if (!s->ep) return;
  /* A member is reached when any of their targets was appended. */
  bool *reached = tern_calloc(g->nmembers ? g->nmembers : 1, sizeof *reached);
  for (size_t i = 0; i < op->ntargets; i++) {
    int32_t m = g->member_of[i];
    if (m >= 0 && !op->targets[i].skipped) reached[m] = true;
  }
  const char **skipped = tern_malloc((g->nmembers ? g->nmembers : 1) * sizeof *skipped);
  size_t nsk = 0, nreached = 0;
  for (size_t m = 0; m < g->nmembers; m++) {
    if (reached[m]) nreached++;
    else skipped[nsk++] = g->members[m]->name;
  }
  tern_sent_info si = {.id = g->id, .msg_id = g->msg_id, .ts = g->ts, .recipients = (int64_t)nreached,
                       .skipped = skipped, .nskipped = nsk};
  s->ep_ops->sent(s->ep, &si);
  tern_free(skipped);
  tern_free(reached);
}

static void on_group_send_done(tern_store_op *op) {
  group_send *g = op->arg;
  tern_op_append *ap = tern_op_as_append(op);
  tern_app *a = g->app;
  tern_session *s = g->s;
  switch (op->status) {
    case TERN_STORE_OK:
      a->metrics.messages_sent++;
      a->metrics.group_messages++;
      a->metrics.fanout_group += ap->ntargets - ap->nskipped;
      answer_sent(g, ap);
      tern_hist_observe(&a->metrics.send_to_sent, (double)(tern_mono_ns() - g->received_ns) / 1e9);
      if (ap->replaced_media) {
        const char **names = tern_malloc((g->nmembers ? g->nmembers : 1) * sizeof *names);
        for (size_t m = 0; m < g->nmembers; m++) names[m] = g->members[m]->name;
        tern_router_deleted_media(a, ap, names, g->nmembers);
        tern_free(names);
      }
      break;
    case TERN_STORE_DUPLICATE:
      /* The first answer's recipients are not remembered with the client id (only the msg_id
       * is); a repeat counts the other members as they are now (docs/protocol.md). */
      if (s->ep) {
        tern_sent_info si = {.id = g->id, .msg_id = ap->dup_msg_id, .ts = ap->dup_ts, .recipients = (int64_t)g->nmembers};
        s->ep_ops->sent(s->ep, &si);
      }
      break;
    case TERN_STORE_NOT_FOUND:
      tern_session_error(s, g->id, "not_found", "that message was already deleted", NULL);
      break;
    case TERN_STORE_UNAVAILABLE:
      tern_router_unavailable(s, g->id);
      break;
    default:
      tern_session_error(s, g->id, "internal", "the message could not be stored", NULL);
      break;
  }
  if (op->status == TERN_STORE_OK && !g->silent) {
    for (size_t i = 0; i < ap->ntargets; i++) {
      tern_device *d = ap->targets[i].cookie;
      if (g->member_of[i] < 0 || ap->targets[i].skipped || !d || d->removed || d->session ||
          tern_cluster_device_elsewhere(a, d))
        continue;
      /* a muted group makes no push, except to a member it mentions (PROTOCOL.md 15) */
      if (tern_privacy_muted(d->user, 'g', g->group_id) && !(g->mentioned && g->mentioned[g->member_of[i]])) continue;
      tern_pushglue_offline(a, d, g->from->name, g->group_id, g->group_name, g->body, g->body_len);
    }
  }
  tern_router_release_targets(ap);
  tern_session_unref(s);
  group_send_free(g);
}

/* Recipient devices a send to grp reaches (a member with no device counts once: the message
 * waits in their user-level inbox). */
static size_t recipient_devices(const tern_group *grp, const tern_user *from) {
  size_t n = 0;
  for (size_t i = 0; i < grp->nmembers; i++) {
    const tern_user *u = grp->members[i].user;
    if (u != from) n += u->ndevices ? (size_t)u->ndevices : 1;
  }
  return n;
}

static void add_target(tern_op_append *op, group_send *g, size_t *cap, tern_device *d, const char *inbox, size_t value,
                       tern_cap_mode mode, int32_t member) {
  if (op->ntargets == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    g->member_of = tern_realloc(g->member_of, *cap * sizeof *g->member_of);
  }
  g->member_of[op->ntargets] = member;
  if (d) tern_dir_device_ref(d);
  tern_op_append_target(op, d ? d->id : inbox, value, mode, d);
}

/* The fan-out rate (reach recipient devices) and what every send passes; false after answering. */
static bool devs_admit(tern_app *a, tern_session *s, tern_frame *f, tern_user *from, size_t reach,
                       uint64_t received_ns) {
  if (!f->prepared && !tern_limits_user_take(a->limits, TERN_UL_FANOUT, from->name, a->cfg->limits_fanout_rate,
                             (double)a->cfg->limits_fanout_burst, (double)reach, NULL)) {
    tern_limits_count(a->limits, TERN_LIMIT_FANOUT_RATE);
    tern_session_error(s, f->id, "rate_limited", "your group messages reach too many devices too fast; slow down", NULL);
    return false;
  }
  return tern_router_admit(a, s, f, received_ns);
}

/* The send's context. Its members are the other members at acceptance; for an encrypted send
 * only those with a device in the list (devs), since a member without keys gets nothing and
 * is neither reached nor skipped. */
static group_send *group_send_new(tern_app *a, tern_session *s, const tern_frame *f, tern_group *grp,
                                  uint64_t received_ns, tern_device *const *devs) {
  tern_user *from = s->dev->user;
  group_send *g = TERN_NEW(group_send);
  g->app = a;
  g->s = s;
  snprintf(g->id, sizeof g->id, "%s", f->id);
  snprintf(g->group_id, sizeof g->group_id, "%s", grp->id);
  snprintf(g->group_name, sizeof g->group_name, "%s", grp->name);
  g->from = from;
  g->ts = tern_group_stamp(grp);
  g->received_ns = received_ns;
  g->silent = f->silent || tern_router_is_action(f); /* §15: actions make no push */
  tern_msgid_make(&a->msgid_key, &a->ids, g->ts, from->name, TERN_MSGID_TO_GROUP, grp->id, g->msg_id);
  g->members = tern_malloc((grp->nmembers ? grp->nmembers : 1) * sizeof *g->members);
  tern_map listed = {0}; /* encrypted: the users that have a device in the list */
  for (size_t k = 0; devs && k < f->ne2e; k++) tern_map_puts(&listed, devs[k]->user->name, (void *)1);
  for (size_t i = 0; i < grp->nmembers; i++) {
    tern_user *u = grp->members[i].user;
    if (u != from && (!devs || tern_map_gets(&listed, u->name))) g->members[g->nmembers++] = u;
  }
  tern_map_free(&listed);
  if (f->nmentions) {
    g->mentioned = tern_calloc(g->nmembers ? g->nmembers : 1, 1);
    for (size_t m = 0; m < g->nmembers; m++)
      for (size_t k = 0; k < f->nmentions; k++)
        if (!strcmp(g->members[m]->name, f->mentions[k])) g->mentioned[m] = 1;
  }
  if (a->cfg->push_previews && f->body) {
    g->body = tern_memdup(f->body, f->body_len);
    g->body_len = f->body_len;
  }
  return g;
}

/* An encrypted group send: pairwise ciphertexts (PROTOCOL.md 11), one record per listed
 * device holding its ciphertext alone, so no shared body. Receipts per member as for a
 * plaintext group message: a member with one listed device gets a SOLE copy, with several a
 * token "<msg_id>/<member>". */
static void send_e2e(tern_app *a, tern_session *s, const tern_frame *f, group_send *g, tern_device **devs,
                     const tern_media_rec *mrec) {
  tern_device *dev = s->dev;
  tern_op_append *op = tern_op_append_new(on_group_send_done, g);
  tern_buf *rec = &a->record;
  size_t cap = 0;
  char key[TERN_MSG_ID_LEN + TERN_USERNAME_MAX + 2];
  /* entries by member, in one pass: member index and listed devices per member */
  tern_map index = {0};
  for (size_t m = 0; m < g->nmembers; m++) tern_map_puts(&index, g->members[m]->name, (void *)(intptr_t)(m + 1));
  uint32_t *count = tern_calloc(g->nmembers ? g->nmembers : 1, sizeof *count);
  int32_t *member = tern_malloc((f->ne2e ? f->ne2e : 1) * sizeof *member);
  for (size_t i = 0; i < f->ne2e; i++) {
    member[i] = devs[i]->user == g->from ? -1 : (int32_t)(intptr_t)tern_map_gets(&index, devs[i]->user->name) - 1;
    if (member[i] >= 0) count[member[i]]++;
  }
  for (size_t i = 0; i < f->ne2e; i++) {
    int32_t m = member[i];
    if (m < 0) continue;
    uint32_t n = count[m];
    tern_env_begin(rec, TERN_ENV_MSG, n == 1 ? TERN_ENV_F_RECEIPT | TERN_ENV_F_SOLE : TERN_ENV_F_RECEIPT, g->ts);
    tern_env_put_str(rec, TERN_EF_MSG_ID, g->msg_id);
    tern_env_put_str(rec, TERN_EF_FROM, g->from->name);
    tern_env_put_str(rec, TERN_EF_FROM_DEVICE, dev->id);
    tern_env_put_str(rec, TERN_EF_GROUP_ID, g->group_id);
    tern_router_put_e2e(rec, &f->e2e[i], f->media_ref);
    for (size_t k = 0; k < f->nmentions; k++) tern_env_put_str(rec, TERN_EF_MENTION, f->mentions[k]);
    if (f->silent) tern_env_put(rec, TERN_EF_SILENT, NULL, 0);
    add_target(op, g, &cap, devs[i], NULL, tern_op_append_value(op, rec->data, rec->len), TERN_CAP_SKIP, m);
  }
  for (size_t m = 0; m < g->nmembers; m++) {
    tern_user *u = g->members[m];
    if (count[m] > 1) {
      snprintf(key, sizeof key, "%s/%s", g->msg_id, u->name);
      tern_op_append_token(op, key);
    }
    if (mrec) tern_mediaglue_grant(a, f->media_ref, u->name, count[m]);
  }
  tern_free(count);
  tern_free(member);
  tern_map_free(&index);
  for (size_t i = 0; i < f->ne2e; i++) {
    if (devs[i]->user != g->from) continue;
    tern_env_begin(rec, TERN_ENV_MSG, 0, g->ts);
    tern_env_put_str(rec, TERN_EF_MSG_ID, g->msg_id);
    tern_env_put_str(rec, TERN_EF_FROM, g->from->name);
    tern_env_put_str(rec, TERN_EF_FROM_DEVICE, dev->id);
    tern_env_put_str(rec, TERN_EF_GROUP_ID, g->group_id);
    tern_router_put_e2e(rec, &f->e2e[i], f->media_ref);
    for (size_t k = 0; k < f->nmentions; k++) tern_env_put_str(rec, TERN_EF_MENTION, f->mentions[k]);
    if (f->silent) tern_env_put(rec, TERN_EF_SILENT, NULL, 0);
    add_target(op, g, &cap, devs[i], NULL, tern_op_append_value(op, rec->data, rec->len), TERN_CAP_NONE, -1);
  }
  if (op->ntokens) tern_store_set_str(&op->token_from, g->from->name);
  tern_router_prepare_delete(a, op, f, mrec ? f->media_ref : NULL, g->group_id, g->from->name);
  char dkey[TERN_DEVICE_ID_LEN + TERN_CLIENT_ID_MAX + 2];
  snprintf(dkey, sizeof dkey, "%s/%s", dev->id, f->id);
  tern_store_set_str(&op->dedup_key, dkey);
  tern_store_set_str(&op->msg_id, g->msg_id);
  op->now = g->ts;
  tern_session_ref(s);
  tern_app_submit(a, &op->op);
}

void tern_groupsend(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns) {
  tern_device *dev = s->dev;
  tern_user *from = dev->user;
  tern_group *grp = tern_groups_get(a->groups, f->group_id);
  if (!grp || !tern_group_member(grp, from)) {
    if (tern_session_catch_up(s, f, received_ns)) return; /* made or joined on another node a moment ago? */
    tern_session_error(s, f->id, "no_such_group", "there is no such group, or you are not a member", NULL);
    return;
  }
  const tern_media_rec *mrec = NULL;
  if ((f->media_id || f->media_ref) && !(mrec = tern_router_media(a, s, f, received_ns))) return;
  tern_device **devs = NULL;
  size_t reach = recipient_devices(grp, from);
  if (f->e2e) {
    devs = tern_malloc(f->ne2e * sizeof *devs);
    if (!tern_e2e_match(a, s, f, NULL, grp, received_ns, devs)) {
      tern_free(devs);
      return;
    }
    reach = 0;
    for (size_t i = 0; i < f->ne2e; i++) reach += devs[i]->user != from;
  }
  if (!devs_admit(a, s, f, from, reach, received_ns)) {
    tern_free(devs);
    return;
  }
  group_send *g = group_send_new(a, s, f, grp, received_ns, devs);
  if (devs) {
    send_e2e(a, s, f, g, devs, mrec);
    tern_free(devs);
    return;
  }

  tern_buf *rec = &a->record;

  /* One record, three flag bytes: a member's only inbox (SOLE), a member with several (token),
   * the sender's other devices (no receipt). */
  tern_env_begin(rec, TERN_ENV_MSG, TERN_ENV_F_RECEIPT | TERN_ENV_F_SOLE, g->ts);
  tern_env_put_str(rec, TERN_EF_MSG_ID, g->msg_id);
  tern_env_put_str(rec, TERN_EF_FROM, from->name);
  tern_env_put_str(rec, TERN_EF_FROM_DEVICE, dev->id);
  tern_env_put_str(rec, TERN_EF_GROUP_ID, grp->id);
  if (f->body) tern_env_put_str(rec, TERN_EF_BODY_REF, g->msg_id);
  if (mrec) tern_router_put_media(rec, mrec);
  tern_env_put_str(rec, TERN_EF_REPLY_TO, f->reply_to);
  tern_router_put_actions(rec, f);
  for (size_t k = 0; k < f->nmentions; k++) tern_env_put_str(rec, TERN_EF_MENTION, f->mentions[k]);
  if (f->silent) tern_env_put(rec, TERN_EF_SILENT, NULL, 0);
  bool action = tern_router_is_action(f); /* no delivered receipt (§15) */
  if (action) tern_env_set_flags(rec, 0);
  tern_op_append *op = tern_op_append_new(on_group_send_done, g);
  size_t v_sole = tern_op_append_value(op, rec->data, rec->len);
  tern_env_set_flags(rec, action ? 0 : TERN_ENV_F_RECEIPT);
  size_t v_token = tern_op_append_value(op, rec->data, rec->len);
  tern_env_set_flags(rec, 0);
  size_t v_copy = tern_op_append_value(op, rec->data, rec->len);
  if (f->body) tern_op_append_body(op, g->msg_id, f->body, f->body_len);

  size_t cap = 0;
  char key[TERN_MSG_ID_LEN + TERN_USERNAME_MAX + 2];
  /* A delete is never skipped for a full inbox: it mostly takes its original's place. */
  tern_cap_mode mode = f->delete_of ? TERN_CAP_NONE : TERN_CAP_SKIP;
  for (size_t m = 0; m < g->nmembers; m++) {
    tern_user *u = g->members[m];
    if (!u->devices) {
      char inbox[TERN_USER_INBOX_LEN];
      tern_user_inbox(inbox, u->name);
      add_target(op, g, &cap, NULL, inbox, v_sole, mode, (int32_t)m);
      continue;
    }
    bool sole = u->ndevices == 1;
    for (tern_device *d = u->devices; d; d = d->next_in_user)
      add_target(op, g, &cap, d, NULL, sole ? v_sole : v_token, mode, (int32_t)m);
    if (!sole && !action) {
      snprintf(key, sizeof key, "%s/%s", g->msg_id, u->name);
      tern_op_append_token(op, key);
    }
    if (mrec) tern_mediaglue_grant(a, f->media_id, u->name, (uint32_t)u->ndevices);
  }
  for (size_t m = 0; m < g->nmembers && mrec; m++)
    if (!g->members[m]->devices) tern_mediaglue_grant(a, f->media_id, g->members[m]->name, 1);
  for (tern_device *d = from->devices; d; d = d->next_in_user)
    if (d != dev) add_target(op, g, &cap, d, NULL, v_copy, TERN_CAP_NONE, -1);
  if (op->ntokens) tern_store_set_str(&op->token_from, from->name);
  tern_router_prepare_delete(a, op, f, mrec ? f->media_id : NULL, grp->id, from->name);

  char dkey[TERN_DEVICE_ID_LEN + TERN_CLIENT_ID_MAX + 2];
  snprintf(dkey, sizeof dkey, "%s/%s", dev->id, f->id);
  tern_store_set_str(&op->dedup_key, dkey);
  tern_store_set_str(&op->msg_id, g->msg_id);
  op->now = g->ts;
  tern_session_ref(s);
  tern_app_submit(a, &op->op);
}
