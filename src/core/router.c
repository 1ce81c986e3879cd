/* router: sends, fan-out, receipts and delivery (router.h). */
#include "core/router.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/util.h"
#include "core/cluster.h"
#include "core/mediaglue.h"
#include "core/e2e.h"
#include "core/groups.h"
#include "core/limits.h"
#include "core/msgid.h"
#include "core/privacy.h"
#include "core/pushglue.h"
#include "media/media.h"

/* Context of a send while its APPEND is in the store. */
typedef struct send_ctx {
  tern_app *app;          /* owner */
  tern_session *s;        /* the sender's session (referenced) */
  char id[TERN_CLIENT_ID_MAX + 1]; /* the client's id */
  char msg_id[TERN_MSG_ID_LEN + 1]; /* the id we made */
  tern_user *from;        /* sender (users are never freed while the loop runs) */
  tern_user *to;          /* recipient */
  char *body;             /* a copy for push previews, or NULL */
  size_t body_len;
  int64_t ts;             /* message time */
  bool silent;            /* the send asked for no push */
  bool dropped;           /* the recipient blocked the sender: their devices get nothing */
  uint64_t received_ns;   /* when the request arrived, for tern_send_to_sent_seconds */
} send_ctx;

static void add_device_target(tern_op_append *op, tern_device *d, size_t value, tern_cap_mode cap) {
  tern_dir_device_ref(d);
  tern_op_append_target(op, d->id, value, cap, d);
}

void tern_router_fanout(tern_op_append *op, tern_user *from_user, tern_device *from_dev, tern_user *to,
                        size_t v_recipient, size_t v_copy, tern_cap_mode cap) {
  if (to != from_user) {
    if (to->devices) {
      for (tern_device *d = to->devices; d; d = d->next_in_user) add_device_target(op, d, v_recipient, cap);
    } else {
      char inbox[TERN_USER_INBOX_LEN];
      tern_user_inbox(inbox, to->name);
      tern_op_append_target(op, inbox, v_recipient, cap, NULL);
    }
  }
  for (tern_device *d = from_user->devices; d; d = d->next_in_user) {
    if (d != from_dev) add_device_target(op, d, v_copy, TERN_CAP_NONE);
  }
}

void tern_router_release_targets(tern_op_append *op) {
  for (size_t i = 0; i < op->ntargets; i++) {
    if (op->targets[i].cookie) tern_dir_device_unref(op->targets[i].cookie);
    op->targets[i].cookie = NULL;
  }
}

void tern_router_on_envelope(void *watcher, const tern_store_env *e) {
  tern_session_deliver(watcher, e->seq, e->value, e->len, e->body, e->body_len);
}

static void send_sent(tern_session *s, const char *id, const char *msg_id, int64_t ts) {
  if (!s->ep) return;
  tern_sent_info si = {.id = id, .msg_id = msg_id, .ts = ts, .recipients = -1};
  s->ep_ops->sent(s->ep, &si);
}

bool tern_router_is_action(const tern_frame *f) { return f->reaction_to || f->edit_of || f->delete_of; }

void tern_router_put_actions(tern_buf *rec, const tern_frame *f) {
  if (f->reaction_to) {
    tern_env_put_str(rec, TERN_EF_REACTION_TO, f->reaction_to);
    tern_env_put(rec, TERN_EF_REACTION_EMOJI, f->emoji ? f->emoji : "", f->emoji ? strlen(f->emoji) : 0);
  }
  tern_env_put_str(rec, TERN_EF_EDIT_OF, f->edit_of);
  tern_env_put_str(rec, TERN_EF_DELETE_OF, f->delete_of);
}

void tern_router_prepare_delete(tern_app *a, tern_op_append *op, const tern_frame *f, const char *media_id,
                                const char *group_id, const char *sender) {
  if (f->delete_of) {
    tern_store_set_str(&op->replace_of, f->delete_of);
    int64_t ts;
    if (group_id && !tern_msgid_check(&a->msgid_key, f->delete_of, sender, TERN_MSGID_TO_GROUP, group_id,
                                      tern_now_ms(), 0, &ts))
      tern_store_set_str(&op->replace_group, group_id); /* an admin's: action_ok let it through */
    for (size_t i = 0; i < op->ntargets; i++) {
      tern_device *d = op->targets[i].cookie;
      op->targets[i].live = d && !d->removed && (d->session || tern_cluster_device_elsewhere(a, d));
    }
  } else if (f->edit_of) {
    tern_store_set_str(&op->check_of, f->edit_of); /* an edit of a deleted message: not_found */
  } else if (!f->reaction_to) {
    op->index_msg = true;
    tern_store_set_str(&op->index_media, media_id);
    tern_store_set_str(&op->index_group, group_id);
  }
}

void tern_router_deleted_media(tern_app *a, const tern_op_append *op, const char *const *users, size_t nusers) {
  if (op->replaced_media) tern_mediaglue_revoke(a, op->replaced_media, users, nusers);
}

/* A refusal with `forbidden` waits for the store: "already deleted" (not_found) comes first in
 * PROTOCOL.md 15's order, and only the store knows it. */
typedef struct probe_ctx {
  tern_session *s;                 /* referenced */
  char id[TERN_CLIENT_ID_MAX + 1]; /* the send's id */
  const char *why;                 /* static: the forbidden message */
} probe_ctx;

static void on_probe_done(tern_store_op *op) {
  probe_ctx *p = op->arg;
  switch (op->status) {
    case TERN_STORE_OK: tern_session_error(p->s, p->id, "forbidden", p->why, NULL); break;
    case TERN_STORE_NOT_FOUND:
      tern_session_error(p->s, p->id, "not_found", "that message was already deleted", NULL);
      break;
    case TERN_STORE_UNAVAILABLE: tern_router_unavailable(p->s, p->id); break;
    default: tern_session_error(p->s, p->id, "internal", "the message could not be checked", NULL); break;
  }
  tern_session_unref(p->s);
  tern_free(p);
}

static void refuse_forbidden(tern_app *a, tern_session *s, const tern_frame *f, const char *of, const char *why) {
  probe_ctx *p = TERN_NEW(probe_ctx);
  p->s = s;
  snprintf(p->id, sizeof p->id, "%s", f->id);
  p->why = why;
  tern_op_append *op = tern_op_append_new(on_probe_done, p);
  tern_store_set_str(&op->check_of, of);
  op->of_probe = true;
  tern_session_ref(s);
  tern_app_submit(a, &op->op);
}

/* An edit or a delete (PROTOCOL.md 15) names its message by msg_id, whose tag (core/msgid.h)
 * says who sent it in which conversation and when: no index is needed. The refusals, in the
 * order §15 gives: not_found for an id that is not of this conversation or past the delete
 * window; forbidden for another user's message (a group admin's delete aside) or an edit past
 * its window. In a group the server can tell only the caller's own messages apart (the tag
 * needs the sender): another member's message is not_found, except for an admin's delete. */
static bool action_ok(tern_app *a, tern_session *s, const tern_frame *f) {
  const char *of = f->edit_of ? f->edit_of : f->delete_of;
  if (!of) return true; /* a reaction is relayed as given */
  tern_user *me = s->dev->user;
  int64_t now = tern_now_ms(), ts = 0, ts2 = 0;
  bool mine, theirs = false, admin = false;
  if (f->group_id) {
    tern_group *grp = tern_groups_get(a->groups, f->group_id);
    tern_member *m = grp ? tern_group_member(grp, me) : NULL;
    if (!m) return true; /* the group send answers no_such_group */
    mine = tern_msgid_check(&a->msgid_key, of, me->name, TERN_MSGID_TO_GROUP, grp->id, now, 0, &ts);
    admin = m->admin && f->delete_of && !mine && strlen(of) == TERN_MSG_ID_LEN;
  } else {
    tern_user *to = f->to_invalid || !f->to ? NULL : tern_dir_user(a->dir, f->to);
    if (!to) return true; /* the send answers no_such_user */
    mine = tern_msgid_check(&a->msgid_key, of, me->name, TERN_MSGID_TO_USER, to->name, now, 0, &ts);
    theirs = !mine && tern_msgid_check(&a->msgid_key, of, to->name, TERN_MSGID_TO_USER, me->name, now, 0, &ts2);
  }
  if (admin) (void)tern_msgid_check(&a->msgid_key, of, "", TERN_MSGID_TO_GROUP, "", now, 0, &ts); /* its time */
  int64_t when = mine || admin ? ts : ts2;
  if ((!mine && !theirs && !admin) || now - when > a->cfg->limits_delete_window_ms) {
    tern_session_error(s, f->id, "not_found", "no such message in this conversation (or it is too old)", NULL);
    return false;
  }
  if (theirs || (f->edit_of && !mine)) {
    refuse_forbidden(a, s, f, of, "only its sender may edit or delete a message");
    return false;
  }
  if (f->edit_of && now - ts > a->cfg->limits_edit_window_ms) {
    refuse_forbidden(a, s, f, of, "the edit window of that message is over");
    return false;
  }
  return true;
}


static void on_send_done(tern_store_op *op) {
  send_ctx *c = op->arg;
  tern_op_append *ap = tern_op_as_append(op);
  tern_app *a = c->app;
  tern_session *s = c->s;
  switch (op->status) {
    case TERN_STORE_OK:
      a->metrics.messages_sent++;
      a->metrics.fanout_direct += ap->ntargets;
      send_sent(s, c->id, c->msg_id, c->ts);
      tern_hist_observe(&a->metrics.send_to_sent, (double)(tern_mono_ns() - c->received_ns) / 1e9);
      {
        const char *to_name = c->to->name;
        tern_router_deleted_media(a, ap, &to_name, 1);
      }
      break;
    case TERN_STORE_DUPLICATE:
      send_sent(s, c->id, ap->dup_msg_id, ap->dup_ts);
      break;
    case TERN_STORE_NOT_FOUND:
      tern_session_error(s, c->id, "not_found", "that message was already deleted", NULL);
      break;
    case TERN_STORE_FULL:
      tern_session_error(s, c->id, "rate_limited", "the recipient's inbox is full; try again later", NULL);
      break;
    case TERN_STORE_UNAVAILABLE:
      tern_router_unavailable(s, c->id);
      break;
    default:
      tern_session_error(s, c->id, "internal", "the message could not be stored", NULL);
      break;
  }
  if (op->status == TERN_STORE_OK && c->from != c->to && !c->silent) {
    /* only a message from another user wakes a device that has no connection */
    for (size_t i = 0; i < ap->ntargets; i++) {
      tern_device *d = ap->targets[i].cookie;
      if (d && !d->removed && !d->session && d->user == c->to && !tern_cluster_device_elsewhere(a, d) &&
          !tern_privacy_muted(d->user, 'u', c->from->name))
        tern_pushglue_offline(a, d, c->from->name, NULL, NULL, c->body, c->body_len);
    }
  }
  tern_router_release_targets(ap);
  tern_session_unref(s);
  tern_free(c->body);
  tern_free(c);
}

/* Sends per user: limits.send_burst deep, refilled at limits.send_rate per second. */
static bool rate_ok(tern_app *a, tern_user *u) {
  return tern_limits_user_take(a->limits, TERN_UL_SEND, u->name, a->cfg->limits_send_rate,
                               (double)a->cfg->limits_send_burst, 1, NULL);
}

void tern_router_unavailable(tern_session *s, const char *id) {
  /* PROTOCOL.md 12: nothing was stored; the same id again is answered the same on every node */
  tern_session_error(s, id, "unavailable", "the server cannot store messages right now; send again with the same id",
                     NULL);
}

const tern_media_rec *tern_router_media(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns) {
  /* The sender must own the media or have been sent it (forwarding); anything else is the
   * same answer as an unknown id, so existence is never revealed. */
  const char *id = f->media_id ? f->media_id : f->media_ref; /* plaintext media, or an encrypted attachment */
  const tern_media_rec *mrec = tern_mediaglue_get(a, id);
  if (!mrec || !tern_media_can_read(mrec, s->dev->user->name)) {
    /* another worker's replica may lag the media worker's record by a moment, and in
     * cluster mode the media worker's may lag another node's upload or grant */
    if ((!tern_app_media_worker(a) || a->media_blobs) && tern_session_catch_up(s, f, received_ns)) return NULL;
    tern_session_error(s, f->id, "no_such_media", "no media with that id is available to you", NULL);
    return NULL;
  }
  return mrec;
}

/* A delete runs in two steps (PROTOCOL.md 15: the grants of its media end). A probe reads the
 * message's locator for its media, whose grants for the conversation's other users end, and
 * only once that change is durable is the delete stored: whoever sees the delete, on any
 * worker or node, can no longer read the media (revoked after the delete's commit, a reader on
 * another node could still be let in by the record's old copy there). The frame, and the
 * session's frames after it, wait meanwhile. */
typedef struct revoke_ctx {
  tern_session *s; /* referenced */
  char **users;    /* the grants that end (owned) */
  size_t nusers;
} revoke_ctx;

static void on_revoked(void *arg, bool run) {
  revoke_ctx *c = arg;
  /* not run: the asking worker's loop has closed (shutdown); its frames stay held, and go
   * with the session */
  if (run) tern_session_release(c->s); /* the delete runs now */
  tern_session_unref(c->s);
  for (size_t i = 0; i < c->nusers; i++) tern_free(c->users[i]);
  tern_free(c->users);
  tern_free(c);
}

static void on_media_probed(tern_store_op *op) {
  revoke_ctx *c = op->arg;
  const char *media = tern_op_as_append(op)->replaced_media;
  /* anything else (no media, already deleted, the store unavailable) the delete answers */
  if (op->status == TERN_STORE_OK && media)
    tern_mediaglue_revoke_durable(c->s->app, media, (const char *const *)c->users, c->nusers, on_revoked, c);
  else on_revoked(c, true);
}

static void revoke_first(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns) {
  revoke_ctx *c = TERN_NEW(revoke_ctx);
  c->s = s;
  tern_user *me = s->dev->user;
  tern_group *grp = f->group_id ? tern_groups_get(a->groups, f->group_id) : NULL;
  tern_user *to = f->group_id || !f->to ? NULL : tern_dir_user(a->dir, f->to);
  c->users = tern_calloc((grp ? grp->nmembers : 1) + 1, sizeof *c->users);
  for (size_t i = 0; grp && i < grp->nmembers; i++)
    if (grp->members[i].user != me) c->users[c->nusers++] = tern_strdup(grp->members[i].user->name);
  if (to) c->users[c->nusers++] = tern_strdup(to->name);
  tern_op_append *op = tern_op_append_new(on_media_probed, c);
  tern_store_set_str(&op->check_of, f->delete_of);
  op->of_probe = true;
  f->prepared = true;
  tern_session_hold(s, f, received_ns);
  tern_session_ref(s);
  tern_app_submit(a, &op->op);
}

bool tern_router_admit(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns) {
  if (a->cfg->e2e_required && !f->e2e && !f->delete_of) {
    /* PROTOCOL.md 11: only ciphertext is relayed (a delete stays outside, so it passes) */
    tern_session_error(s, f->id, "e2e_required", "this server relays only end-to-end encrypted messages", NULL);
    return false;
  }
  if (!f->prepared && !action_ok(a, s, f)) return false;
  if (f->delete_of && !f->prepared) {
    revoke_first(a, s, f, received_ns);
    return false;
  }
  if (!rate_ok(a, s->dev->user)) {
    tern_limits_count(a->limits, TERN_LIMIT_SEND_RATE);
    tern_session_error(s, f->id, "rate_limited", "you are sending too fast; slow down", NULL);
    return false;
  }
  return true;
}

void tern_router_put_media(tern_buf *rec, const tern_media_rec *m) {
  tern_env_put_str(rec, TERN_EF_MEDIA_ID, m->id);
  tern_env_put_str(rec, TERN_EF_MEDIA_MIME, tern_media_type_mime(m->type));
  tern_env_put_uint(rec, TERN_EF_MEDIA_SIZE, (uint64_t)m->size);
  tern_env_put_str(rec, TERN_EF_MEDIA_SHA256, m->sha256_hex);
  tern_env_put_uint(rec, TERN_EF_MEDIA_WIDTH, m->width);
  tern_env_put_uint(rec, TERN_EF_MEDIA_HEIGHT, m->height);
}

void tern_router_put_e2e(tern_buf *rec, const tern_frame_e2e *e, const char *media_ref) {
  tern_env_put_str(rec, TERN_EF_E2E_TYPE, tern_e2e_type_name(e->type));
  tern_env_put(rec, TERN_EF_E2E_BODY, e->body, strlen(e->body));
  tern_env_put_str(rec, TERN_EF_MEDIA_REF, media_ref);
}

/* An encrypted 1:1 send (PROTOCOL.md 11), its list matched (devs[i] is e2e[i]'s device): one
 * APPEND with one record per device, each holding that device's ciphertext alone; devices
 * without keys get nothing. The recipient's copies count for receipts as a plaintext send's
 * do (one copy: SOLE, several: a token); the sender's own devices make none. */
static void send_e2e(tern_app *a, tern_session *s, tern_frame *f, send_ctx *c, tern_device **devs,
                     const tern_media_rec *mrec) {
  tern_device *dev = s->dev;
  tern_user *from = c->from, *to = c->to;
  size_t nrecipient = 0;
  for (size_t i = 0; i < f->ne2e; i++) nrecipient += to != from && devs[i]->user == to && !c->dropped;
  bool sole = nrecipient == 1;
  tern_op_append *op = tern_op_append_new(on_send_done, c);
  tern_buf *rec = &a->record;
  for (size_t i = 0; i < f->ne2e; i++) {
    bool recipient = to != from && devs[i]->user == to;
    if (recipient && c->dropped) continue;
    uint8_t flags = !recipient ? 0 : sole ? TERN_ENV_F_RECEIPT | TERN_ENV_F_SOLE : TERN_ENV_F_RECEIPT;
    tern_env_begin(rec, TERN_ENV_MSG, flags, c->ts);
    tern_env_put_str(rec, TERN_EF_MSG_ID, c->msg_id);
    tern_env_put_str(rec, TERN_EF_FROM, from->name);
    tern_env_put_str(rec, TERN_EF_FROM_DEVICE, dev->id);
    tern_env_put_str(rec, TERN_EF_TO, to->name);
    tern_router_put_e2e(rec, &f->e2e[i], f->media_ref);
    if (f->silent) tern_env_put(rec, TERN_EF_SILENT, NULL, 0);
    size_t v = tern_op_append_value(op, rec->data, rec->len);
    tern_dir_device_ref(devs[i]);
    tern_op_append_target(op, devs[i]->id, v, recipient ? TERN_CAP_REFUSE : TERN_CAP_NONE, devs[i]);
  }
  if (mrec && nrecipient) tern_mediaglue_grant(a, f->media_ref, to->name, (uint32_t)nrecipient);
  tern_router_prepare_delete(a, op, f, mrec ? f->media_ref : NULL, NULL, from->name);
  char key[TERN_DEVICE_ID_LEN + TERN_CLIENT_ID_MAX + 2];
  snprintf(key, sizeof key, "%s/%s", dev->id, f->id);
  tern_store_set_str(&op->dedup_key, key);
  tern_store_set_str(&op->msg_id, c->msg_id);
  if (nrecipient > 1) {
    tern_store_set_str(&op->token_from, from->name);
    tern_op_append_token(op, c->msg_id);
  }
  op->now = c->ts;
  tern_session_ref(s);
  tern_app_submit(a, &op->op);
}

void tern_router_send(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns) {
  if (f->group_id) {
    tern_groupsend(a, s, f, received_ns);
    return;
  }
  tern_device *dev = s->dev;
  tern_user *from = dev->user;
  tern_user *to = f->to_invalid || !f->to ? NULL : tern_dir_user(a->dir, f->to);
  if (!to || to->pending) {
    if (!f->to_invalid && f->to && tern_session_catch_up(s, f, received_ns)) return; /* registered elsewhere? */
    tern_session_error(s, f->id, "no_such_user", "there is no user by that name", NULL);
    return;
  }
  if (to != from && tern_privacy_blocks(from, to)) {
    tern_session_error(s, f->id, "blocked", "you have blocked this user; unblock them to send", NULL);
    return;
  }
  const tern_media_rec *mrec = NULL;
  if ((f->media_id || f->media_ref) && !(mrec = tern_router_media(a, s, f, received_ns))) return;
  if (!tern_router_admit(a, s, f, received_ns)) return;
  tern_device **devs = NULL;
  if (f->e2e) {
    devs = tern_malloc(f->ne2e * sizeof *devs);
    if (!tern_e2e_match(a, s, f, to, NULL, received_ns, devs)) {
      tern_free(devs);
      return;
    }
  }
  send_ctx *c = TERN_NEW(send_ctx);
  c->app = a;
  c->s = s;
  snprintf(c->id, sizeof c->id, "%s", f->id);
  c->ts = tern_now_ms();
  c->received_ns = received_ns;
  tern_msgid_make(&a->msgid_key, &a->ids, c->ts, from->name, TERN_MSGID_TO_USER, to->name, c->msg_id);
  c->from = from;
  c->to = to;
  c->silent = f->silent || tern_router_is_action(f); /* §15: actions make no push */
  /* The recipient blocked the sender: answered as usual, stored for the sender's own devices
   * only, never delivered, so no receipt ever comes (PROTOCOL.md 14; the sender is not told). */
  c->dropped = to != from && tern_privacy_blocks(to, from);
  if (a->cfg->push_previews && f->body) {
    c->body = tern_memdup(f->body, f->body_len);
    c->body_len = f->body_len;
  }

  if (f->e2e) {
    send_e2e(a, s, f, c, devs, mrec);
    tern_free(devs);
    return;
  }
  /* A recipient with one inbox (one device, or none yet) gets the only copy: its first ack
   * delivers the message, so no delivery token is stored (TERN_ENV_F_SOLE). */
  bool action = tern_router_is_action(f); /* no delivered receipt either (§15) */
  bool sole = to != from && to->ndevices <= 1 && !action;
  uint8_t flags = to == from || action ? 0 : sole ? TERN_ENV_F_RECEIPT | TERN_ENV_F_SOLE : TERN_ENV_F_RECEIPT;
  tern_buf *rec = &a->record;
  tern_env_begin(rec, TERN_ENV_MSG, flags, c->ts);
  tern_env_put_str(rec, TERN_EF_MSG_ID, c->msg_id);
  tern_env_put_str(rec, TERN_EF_FROM, from->name);
  tern_env_put_str(rec, TERN_EF_FROM_DEVICE, dev->id);
  tern_env_put_str(rec, TERN_EF_TO, to->name);
  if (f->body) tern_env_put(rec, TERN_EF_BODY, f->body, f->body_len);
  if (mrec) tern_router_put_media(rec, mrec);
  tern_env_put_str(rec, TERN_EF_REPLY_TO, f->reply_to);
  tern_router_put_actions(rec, f);
  if (f->silent) tern_env_put(rec, TERN_EF_SILENT, NULL, 0);
  tern_op_append *op = tern_op_append_new(on_send_done, c);
  size_t v_recipient = tern_op_append_value(op, rec->data, rec->len);
  tern_env_set_flags(rec, 0); /* the sender's other devices: no receipt */
  size_t v_copy = tern_op_append_value(op, rec->data, rec->len);
  /* A delete is never refused for a full inbox: it mostly takes its original's place. */
  tern_router_fanout(op, from, dev, c->dropped ? from : to, v_recipient, v_copy,
                     f->delete_of ? TERN_CAP_NONE : TERN_CAP_REFUSE);
  tern_router_prepare_delete(a, op, f, mrec ? f->media_id : NULL, NULL, from->name);
  if (mrec && !c->dropped) {
    /* The recipient may read the media from now on. The grant's KV_PUT is submitted before the
     * APPEND, and store ops complete in order, so `sent` implies both are durable. */
    tern_mediaglue_grant(a, f->media_id, to->name, to->ndevices > 0 ? (uint32_t)to->ndevices : 1);
  }

  char key[TERN_DEVICE_ID_LEN + TERN_CLIENT_ID_MAX + 2];
  snprintf(key, sizeof key, "%s/%s", dev->id, f->id);
  tern_store_set_str(&op->dedup_key, key);
  tern_store_set_str(&op->msg_id, c->msg_id);
  if (to != from && !sole && !c->dropped && !action) {
    tern_store_set_str(&op->token_from, from->name);
    tern_op_append_token(op, c->msg_id);
  }
  op->now = c->ts;
  tern_session_ref(s);
  tern_app_submit(a, &op->op);
}


/* ---- decrypt_error ---- */

static void on_decrypt_error_done(tern_store_op *op) {
  tern_session *s = op->arg;
  if (op->status == TERN_STORE_UNAVAILABLE) tern_router_unavailable(s, NULL);
  else if (op->status != TERN_STORE_OK)
    tern_session_error(s, NULL, "internal", "the decrypt_error could not be stored", NULL);
  tern_router_release_targets(tern_op_as_append(op));
  tern_session_unref(s);
}

void tern_router_decrypt_error(tern_app *a, tern_session *s, tern_frame *f, uint64_t received_ns) {
  tern_user *peer = f->peer ? tern_dir_user(a->dir, f->peer) : NULL;
  tern_device *d = peer && !peer->pending ? tern_dir_device(a->dir, f->device_id) : NULL;
  if (!d || d->user != peer) {
    if (f->peer && tern_session_catch_up(s, f, received_ns)) return; /* logged in elsewhere a moment ago? */
    if (!peer || peer->pending) tern_session_error(s, NULL, "no_such_user", "there is no user by that name", f->peer);
    else tern_session_error(s, NULL, "not_found", "that user has no such device", NULL);
    return;
  }
  /* the same budget as sends: a decrypt_error is an envelope the peer must store */
  if (!rate_ok(a, s->dev->user)) {
    tern_session_error(s, NULL, "rate_limited", "you are sending too fast; slow down", NULL);
    return;
  }
  tern_buf *rec = &a->record;
  tern_env_begin(rec, TERN_ENV_DECRYPT_ERROR, 0, tern_now_ms());
  tern_env_put_str(rec, TERN_EF_MSG_ID, f->msg_id);
  tern_env_put_str(rec, TERN_EF_FROM, s->dev->user->name);
  tern_env_put_str(rec, TERN_EF_FROM_DEVICE, s->dev->id);
  tern_op_append *op = tern_op_append_new(on_decrypt_error_done, s);
  size_t v = tern_op_append_value(op, rec->data, rec->len);
  add_device_target(op, d, v, TERN_CAP_NONE); /* never refused, as receipts are not */
  tern_session_ref(s);
  tern_app_submit(a, &op->op);
}
