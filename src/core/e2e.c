/* e2e: the device-list check of encrypted sends (e2e.h). */
#include "core/e2e.h"

#include <string.h>

#include "base/alloc.h"
#include "base/map.h"
#include "core/groups.h"

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

bool tern_e2e_match(tern_app *a, tern_session *s, tern_frame *f, tern_user *to, const tern_group *grp,
                    uint64_t received_ns, tern_device **devs) {
  tern_device *dev = s->dev;
  if (!grp && to != dev->user && !has_e2e_device(to)) {
    if (tern_session_catch_up(s, f, received_ns)) return false; /* published elsewhere a moment ago? */
    tern_session_error(s, f->id, "no_keys", "the recipient has no device with published keys", NULL);
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
    if (s->ep) {
      tern_error_info e = {.id = f->id, .code = "devices_changed",
                           .message = "the e2e list does not match the devices with keys; fetch keys for missing, "
                                      "drop extra, and send again with the same id",
                           .missing = m.missing, .nmissing = m.nmissing, .extra = extra, .nextra = nextra};
      /* an empty list is still a list on the wire: the client reads both */
      static const tern_device_ref none[1];
      if (!e.missing) e.missing = none;
      if (!e.extra || !nextra) e.extra = none;
      s->ep_ops->error(s->ep, &e);
    }
    tern_free(extra);
  }
  tern_free(m.matched);
  tern_free(m.missing);
  tern_map_free(&m.index);
  return ok;
}
