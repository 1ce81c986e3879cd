/* e2e: the device-list check of encrypted sends (e2e.h). */
#include "core/e2e.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/map.h"
#include "core/groups.h"
#include "store/store.h"

enum { LINEAR_MAX = 8 }; /* lists up to this long are searched, longer ones hashed */

const char *tern_e2e_type_name(tern_e2e_type t) { return t == TERN_E2E_PREKEY ? "prekey" : "message"; }

typedef struct matcher {
  const tern_frame *f;
  tern_map index;      /* device id → entry index + 1 (long lists only) */
  bool *matched;       /* per entry */
  tern_device **devs;  /* per entry: out */
  size_t nmatched;
  tern_device_ref *missing; /* filled on a mismatch only */
  size_t nmissing, missing_cap;
  bool collect;        /* second pass: list what is missing */
} matcher;

static long entry_of(matcher *m, const char *id) {
  if (m->f->ne2e <= LINEAR_MAX) {
    for (size_t i = 0; i < m->f->ne2e; i++)
      if (strcmp(m->f->e2e[i].device_id, id) == 0) return (long)i;
    return -1;
  }
  void *v = tern_map_gets(&m->index, id);
  return v ? (long)(intptr_t)v - 1 : -1;
}

/* One device that must get a ciphertext. */
static void expect(matcher *m, tern_device *d) {
  long i = entry_of(m, d->id);
  if (i >= 0 && !m->matched[i]) {
    m->matched[i] = true;
    m->devs[i] = d;
    m->nmatched++;
    return;
  }
  if (i >= 0 || !m->collect) return;
  if (m->nmissing == m->missing_cap) {
    m->missing_cap = m->missing_cap ? m->missing_cap * 2 : 8;
    m->missing = tern_realloc(m->missing, m->missing_cap * sizeof *m->missing);
  }
  m->missing[m->nmissing++] = (tern_device_ref){tern_str_c(d->user->name), tern_str_c(d->id)};
}

static void expect_user(matcher *m, tern_user *u, const tern_device *skip) {
  for (tern_device *d = u->devices; d; d = d->next_in_user)
    if (d->e2e && d != skip) expect(m, d);
}

static void walk(matcher *m, tern_device *dev, tern_user *to, const tern_group *grp) {
  tern_user *from = dev->user;
  if (grp) {
    for (size_t i = 0; i < grp->nmembers; i++)
      if (grp->members[i].user != from) expect_user(m, grp->members[i].user, NULL);
  } else if (to != from) {
    expect_user(m, to, NULL);
  }
  expect_user(m, from, dev);
}

static bool has_e2e_device(const tern_user *u) {
  for (const tern_device *d = u->devices; d; d = d->next_in_user)
    if (d->e2e) return true;
  return false;
}

/* ---- refusals, after a look at the client id ---- */

/* A refused send may be the repeat of one already stored (its first `sent` was lost, and the
 * devices changed since): PROTOCOL.md 4 answers a repeated id with the first answer whatever
 * the repeat holds. So a refusal first asks the store whether the id is known (an APPEND with
 * dedup_probe, which writes nothing), and answers `sent` if it is. */
typedef struct refusal {
  tern_session *s;                 /* referenced */
  char id[TERN_CLIENT_ID_MAX + 1];
  const char *code, *message;      /* static */
  tern_device_ref *missing, *extra; /* strings owned (strs) */
  size_t nmissing, nextra;
  char **strs;
  size_t nstrs;
  int64_t recipients;              /* a repeat's `sent`: -1 (1:1) or the other members */
} refusal;

static tern_str keep(refusal *r, tern_str v) {
  char *c = tern_strndup(v.p ? v.p : "", v.n);
  r->strs[r->nstrs++] = c;
  return tern_str_c(c);
}

static void on_probed(tern_store_op *op) {
  refusal *r = op->arg;
  tern_op_append *ap = tern_op_as_append(op);
  tern_session *s = r->s;
  if (!s->ep) {
    /* gone meanwhile */
  } else if (op->status == TERN_STORE_DUPLICATE) {
    tern_sent_info si = {.id = r->id, .msg_id = ap->dup_msg_id, .ts = ap->dup_ts, .recipients = r->recipients};
    s->ep_ops->sent(s->ep, &si);
  } else if (op->status == TERN_STORE_UNAVAILABLE) {
    tern_session_error(s, r->id, "unavailable", "the server cannot store messages right now; send again with the same id",
                       NULL);
  } else {
    /* an empty list is still a list on the wire: the client reads both */
    static const tern_device_ref none[1];
    tern_error_info e = {.id = r->id, .code = r->code, .message = r->message};
    if (r->missing) {
      e.missing = r->nmissing ? r->missing : none;
      e.nmissing = r->nmissing;
      e.extra = r->nextra ? r->extra : none;
      e.nextra = r->nextra;
    }
    s->ep_ops->error(s->ep, &e);
  }
  for (size_t i = 0; i < r->nstrs; i++) tern_free(r->strs[i]);
  tern_free(r->strs);
  tern_free(r->missing);
  tern_free(r->extra);
  tern_session_unref(s);
  tern_free(r);
}

/* Answers f with code (devices_changed with both lists when missing is not NULL) unless its
 * id was stored before. */
static void refuse(tern_app *a, tern_session *s, const tern_frame *f, const struct tern_group *grp, const char *code,
                   const char *message, const tern_device_ref *missing, size_t nmissing, const tern_device_ref *extra,
                   size_t nextra, bool lists) {
  refusal *r = TERN_NEW(refusal);
  r->s = s;
  snprintf(r->id, sizeof r->id, "%s", f->id);
  r->code = code;
  r->message = message;
  r->recipients = grp ? (int64_t)(grp->nmembers ? grp->nmembers - 1 : 0) : -1;
  r->strs = tern_malloc((2 * (nmissing + nextra) + 1) * sizeof *r->strs);
  if (lists) {
    r->missing = tern_malloc((nmissing + 1) * sizeof *r->missing);
    r->extra = tern_malloc((nextra + 1) * sizeof *r->extra);
    for (size_t i = 0; i < nmissing; i++)
      r->missing[r->nmissing++] = (tern_device_ref){keep(r, missing[i].user), keep(r, missing[i].device_id)};
    for (size_t i = 0; i < nextra; i++)
      r->extra[r->nextra++] = (tern_device_ref){keep(r, extra[i].user), keep(r, extra[i].device_id)};
  }
  tern_op_append *op = tern_op_append_new(on_probed, r);
  char key[TERN_DEVICE_ID_LEN + TERN_CLIENT_ID_MAX + 2];
  snprintf(key, sizeof key, "%s/%s", s->dev->id, f->id);
  tern_store_set_str(&op->dedup_key, key);
  op->dedup_probe = true;
  tern_session_ref(s);
  tern_app_submit(a, &op->op);
}

bool tern_e2e_match(tern_app *a, tern_session *s, tern_frame *f, tern_user *to, const tern_group *grp,
                    uint64_t received_ns, tern_device **devs) {
  tern_device *dev = s->dev;
  if (!grp && to != dev->user && !has_e2e_device(to)) {
    if (tern_session_catch_up(s, f, received_ns)) return false; /* published elsewhere a moment ago? */
    refuse(a, s, f, NULL, "no_keys", "the recipient has no device with published keys", NULL, 0, NULL, 0, false);
    return false;
  }
  matcher m = {.f = f, .devs = devs};
  m.matched = tern_calloc(f->ne2e ? f->ne2e : 1, sizeof *m.matched);
  if (f->ne2e > LINEAR_MAX)
    for (size_t i = 0; i < f->ne2e; i++) tern_map_puts(&m.index, f->e2e[i].device_id, (void *)(intptr_t)(i + 1));
  walk(&m, dev, to, grp);
  bool ok = m.nmatched == f->ne2e;
  if (ok) {
    /* every entry matched one expected device; were all expected ones listed? (a second walk
     * only on a mismatch, so the common case costs one) */
    m.collect = true;
    size_t before = m.nmatched;
    walk(&m, dev, to, grp);
    ok = m.nmissing == 0 && m.nmatched == before;
  }
  if (!ok && tern_session_catch_up(s, f, received_ns)) { /* the feed may lag a publish elsewhere */
    ok = false;
  } else if (!ok) {
    if (!m.collect) {
      m.collect = true;
      walk(&m, dev, to, grp);
    }
    tern_device_ref *extra = tern_malloc((f->ne2e ? f->ne2e : 1) * sizeof *extra);
    size_t nextra = 0;
    for (size_t i = 0; i < f->ne2e; i++) {
      if (m.matched[i]) continue;
      /* the owner when the device is known, else the user the send is addressed to (an unknown
       * id in a group send names nobody we could tell: "") */
      tern_device *d = tern_dir_device(a->dir, f->e2e[i].device_id);
      const char *owner = d && d->user ? d->user->name : to ? to->name : "";
      extra[nextra++] = (tern_device_ref){tern_str_c(owner), tern_str_c(f->e2e[i].device_id)};
    }
    refuse(a, s, f, grp, "devices_changed",
           "the e2e list does not match the devices with keys; fetch keys for missing, drop extra, and send again "
           "with the same id",
           m.missing, m.nmissing, extra, nextra, true);
    tern_free(extra);
  }
  tern_free(m.matched);
  tern_free(m.missing);
  tern_map_free(&m.index);
  return ok;
}
