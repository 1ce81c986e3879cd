/* presence: online state, last seen, watch lists and typing relay. Presence is live only:
 * nothing here is queued or stored, except last seen. */
#include <string.h>

#include "core/presence.h"

#include "core/cluster.h"
#include "core/groups.h"
#include "core/limits.h"
#include "core/privacy.h"

#include "base/alloc.h"
#include "base/util.h"

/* Tells s about u's presence now. */
int tern_presence_online(tern_app *a, const tern_user *u) { return u->online + tern_cluster_user_elsewhere(a, u); }

void tern_presence_send(tern_app *a, tern_session *s, tern_user *u) {
  if (!s->ep) return;
  bool online;
  int64_t ls;
  tern_privacy_view(a, s->dev ? s->dev->user : NULL, u, &online, &ls); /* blocks, last seen: nobody */
  if (online) s->ep_ops->presence(s->ep, u->name, true, 0);
  else s->ep_ops->presence(s->ep, u->name, false, ls > 0 ? ls : -1);
}

static bool is_watching(tern_session *s, tern_user *u) {
  for (size_t i = 0; i < s->nwatching; i++)
    if (s->watching[i] == u) return true;
  return false;
}

static void unlink_watch(tern_session *s, tern_user *u) {
  for (size_t i = 0; i < u->nwatchers; i++) {
    if (u->watchers[i] == s) {
      u->watchers[i] = u->watchers[--u->nwatchers];
      break;
    }
  }
  for (size_t i = 0; i < s->nwatching; i++) {
    if (s->watching[i] == u) {
      s->watching[i] = s->watching[--s->nwatching];
      break;
    }
  }
}

static void no_such_user(tern_session *s, const char *name) {
  tern_session_error(s, NULL, "no_such_user", "there is no user by that name", name);
}

/* True when one of f's users is not known here and the session went to catch up (f held). */
static bool unknown_users(tern_app *a, tern_session *s, tern_frame *f) {
  for (size_t i = 0; i < f->nusers; i++) {
    tern_user *u = tern_dir_user(a->dir, f->users[i]);
    if (!u || u->pending) return tern_session_catch_up(s, f, 0);
  }
  return false;
}

void tern_presence_watch(tern_app *a, tern_session *s, tern_frame *f) {
  if (unknown_users(a, s, f)) return;
  for (size_t i = 0; i < f->nbad_users; i++) no_such_user(s, f->bad_users[i]);
  for (size_t i = 0; i < f->nusers; i++) {
    tern_user *u = tern_dir_user(a->dir, f->users[i]);
    if (!u || u->pending) {
      no_such_user(s, f->users[i]);
      continue;
    }
    if (!is_watching(s, u)) {
      if ((int64_t)s->nwatching >= a->cfg->limits_watch_max) {
        tern_session_error(s, NULL, "too_large", "you are watching too many users", u->name);
        continue;
      }
      if (s->nwatching == s->watching_cap) {
        s->watching_cap = s->watching_cap ? s->watching_cap * 2 : 4;
        s->watching = tern_realloc(s->watching, s->watching_cap * sizeof *s->watching);
      }
      s->watching[s->nwatching++] = u;
      if (u->nwatchers == u->watchers_cap) {
        u->watchers_cap = u->watchers_cap ? u->watchers_cap * 2 : 4;
        u->watchers = tern_realloc(u->watchers, u->watchers_cap * sizeof *u->watchers);
      }
      u->watchers[u->nwatchers++] = s;
    }
    tern_presence_send(a, s, u);
  }
}

void tern_presence_unwatch(tern_app *a, tern_session *s, tern_frame *f) {
  for (size_t i = 0; i < f->nbad_users; i++) no_such_user(s, f->bad_users[i]);
  for (size_t i = 0; i < f->nusers; i++) {
    tern_user *u = tern_dir_user(a->dir, f->users[i]);
    if (!u || u->pending) {
      no_such_user(s, f->users[i]);
      continue;
    }
    unlink_watch(s, u);
  }
}

void tern_presence_drop_session(tern_app *a, tern_session *s) {
  while (s->nwatching) unlink_watch(s, s->watching[s->nwatching - 1]);
}

void tern_presence_changed(tern_app *a, tern_user *u) {
  for (size_t i = 0; i < u->nwatchers; i++) tern_presence_send(a, u->watchers[i], u);
}

void tern_presence_typing(tern_app *a, tern_session *s, tern_frame *f) {
  tern_user *me = s->dev->user;
  /* typing is best effort: past limits.typing_rate it is dropped without a word (PROTOCOL.md 14) */
  const tern_limit *tl = &a->cfg->limits_typing_rate;
  if (!tern_limits_user_take(a->limits, TERN_UL_TYPING, me->name, tl->rate, tl->burst, 1, NULL)) {
    tern_limits_count(a->limits, TERN_LIMIT_TYPING_RATE);
    return;
  }
  if (f->group_id) {
    tern_group *grp = tern_groups_get(a->groups, f->group_id);
    if (!grp || !tern_group_member(grp, me)) {
      if (tern_session_catch_up(s, f, 0)) return;
      tern_session_error(s, NULL, "no_such_group", "there is no such group, or you are not a member", NULL);
      return;
    }
    tern_cluster_typing(a, me, NULL, grp->id, f->composing);
    for (size_t i = 0; i < grp->nmembers; i++) {
      tern_user *u = grp->members[i].user;
      if (u == me) continue;
      for (tern_device *d = u->devices; d; d = d->next_in_user) {
        tern_session *t = d->session;
        if (t && t->ep) t->ep_ops->typing(t->ep, me->name, grp->id, f->composing);
      }
    }
    return;
  }
  tern_user *to = f->to_invalid || !f->to ? NULL : tern_dir_user(a->dir, f->to);
  if (!to || to->pending) {
    if (!f->to_invalid && f->to && tern_session_catch_up(s, f, 0)) return;
    no_such_user(s, f->to ? f->to : f->to_raw);
    return;
  }
  if (tern_privacy_blocks(to, me) || tern_privacy_blocks(me, to)) return; /* dropped (PROTOCOL.md 14) */
  tern_cluster_typing(a, me, to->name, NULL, f->composing);
  for (tern_device *d = to->devices; d; d = d->next_in_user) {
    tern_session *t = d->session;
    if (t && t != s && t->ep) t->ep_ops->typing(t->ep, s->dev->user->name, NULL, f->composing);
  }
}
