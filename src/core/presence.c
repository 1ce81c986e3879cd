/* presence: online state, last seen, watch lists and typing relay. Presence is live only:
 * nothing here is queued or stored, except last seen. */
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "core/core.h"

static void send_buf(tern_session *s, tern_buf *b) {
  if (s->conn) tern_conn_ws_text(s->conn, b->data, b->len);
}

static void presence_frame(tern_app *a, tern_user *u, tern_buf *b) {
  if (u->online > 0) {
    tern_enc_presence(b, u->name, true, 0);
  } else {
    int64_t ls = tern_user_last_seen(a, u);
    tern_enc_presence(b, u->name, false, ls > 0 ? ls : -1);
  }
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
  tern_buf b = {0};
  tern_enc_error(&b, NULL, "no_such_user", "there is no user by that name", name);
  send_buf(s, &b);
  tern_buf_free(&b);
}

void tern_presence_watch(tern_app *a, tern_session *s, tern_frame *f) {
  for (size_t i = 0; i < f->nbad_users; i++) no_such_user(s, f->bad_users[i]);
  for (size_t i = 0; i < f->nusers; i++) {
    tern_user *u = tern_dir_user(a, f->users[i]);
    if (!u || u->pending) {
      no_such_user(s, f->users[i]);
      continue;
    }
    if (!is_watching(s, u)) {
      if ((int64_t)s->nwatching >= a->cfg->limits_watch_max) {
        tern_buf b = {0};
        tern_enc_error(&b, NULL, "too_large", "you are watching too many users", u->name);
        send_buf(s, &b);
        tern_buf_free(&b);
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
    tern_buf b = {0};
    presence_frame(a, u, &b);
    send_buf(s, &b);
    tern_buf_free(&b);
  }
}

void tern_presence_unwatch(tern_app *a, tern_session *s, tern_frame *f) {
  for (size_t i = 0; i < f->nbad_users; i++) no_such_user(s, f->bad_users[i]);
  for (size_t i = 0; i < f->nusers; i++) {
    tern_user *u = tern_dir_user(a, f->users[i]);
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
  if (!u->nwatchers) return;
  tern_buf b = {0};
  presence_frame(a, u, &b);
  for (size_t i = 0; i < u->nwatchers; i++) send_buf(u->watchers[i], &b);
  tern_buf_free(&b);
}

void tern_presence_typing(tern_app *a, tern_session *s, tern_frame *f) {
  tern_user *to = f->to_invalid || !f->to ? NULL : tern_dir_user(a, f->to);
  if (!to || to->pending) {
    no_such_user(s, f->to ? f->to : f->to_raw);
    return;
  }
  tern_buf b = {0};
  tern_enc_typing(&b, s->dev->user->name, f->composing);
  for (tern_device *d = to->devices; d; d = d->next_in_user) {
    if (d->session && d->session != s) send_buf(d->session, &b);
  }
  tern_buf_free(&b);
}
