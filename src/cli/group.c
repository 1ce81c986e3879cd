/* group.c: `tern group ...` (create, add, remove, leave, admin, rename, info, list), how a
 * GROUP argument becomes a group id (its id, or a name unique among the user's groups), and
 * the pieces of group display that send, listen and chat share (cli_int.h). Every command
 * here is one or two synchronous HTTP requests. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/util.h"
#include "cli/cli_int.h"

#define SHOWN_MAX 4 /* ids listed when a name is ambiguous */

/* ---- text ---- */

/* Bytes in the UTF-8 sequence at p (1-4), or 0 when it is not a valid one. */
static size_t utf8_seq(const unsigned char *p) {
  size_t n = 0;
  if (p[0] < 0x80) n = 1;
  else if (p[0] >= 0xc2 && p[0] <= 0xdf) n = 2;
  else if (p[0] >= 0xe0 && p[0] <= 0xef) n = 3;
  else if (p[0] >= 0xf0 && p[0] <= 0xf4) n = 4;
  for (size_t i = 1; i < n; i++)
    if (!p[i]) return 0;
  return n && tern_utf8_valid(p, n) ? n : 0;
}

void tern_cli_printable(const char *s, char *out, size_t cap) {
  if (!cap) return;
  size_t o = 0;
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  while (*p) {
    size_t n = utf8_seq(p);
    /* C0, DEL and the C1 range (U+0080-U+009F: some terminals act on them too). */
    bool control = n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f)) || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0);
    size_t take = control ? 1 : n;
    if (o + take >= cap) break;
    if (control) {
      out[o] = '?';
    } else {
      memcpy(out + o, p, n);
    }
    o += take;
    p += take;
  }
  out[o] = '\0';
}

static void put_printable(tern_buf *b, const char *s) {
  char tmp[1100];
  tern_cli_printable(s, tmp, sizeof tmp);
  tern_buf_puts(b, tmp);
}

static void put_users(tern_buf *b, const tern_strs *l) {
  for (size_t i = 0; i < l->n; i++) {
    tern_str u = tern_strs_at(l, i);
    tern_buf_printf(b, "%s%.*s", i ? ", " : "", (int)u.n, u.p ? u.p : "?");
  }
}

void tern_cli_group_event_text(const tern_envelope *e, const char *group, tern_buf *out) {
  const char *by = e->by.p ? e->by.p : "someone";
  switch (e->event) {
    case TERN_GROUP_CREATED:
      tern_buf_printf(out, "%s created the group \"", by);
      put_printable(out, e->name.p ? e->name.p : group);
      tern_buf_puts(out, "\" with ");
      put_users(out, &e->users);
      break;
    case TERN_GROUP_ADDED:
      tern_buf_printf(out, "%s added ", by);
      put_users(out, &e->users);
      break;
    case TERN_GROUP_REMOVED:
      tern_buf_printf(out, "%s removed ", by);
      put_users(out, &e->users);
      break;
    case TERN_GROUP_LEFT:
      put_users(out, &e->users);
      tern_buf_puts(out, " left");
      break;
    case TERN_GROUP_RENAMED:
      tern_buf_printf(out, "%s renamed the group \"", by);
      put_printable(out, e->name.p ? e->name.p : group);
      tern_buf_putc(out, '"');
      if (e->description.n) {
        tern_buf_puts(out, " (");
        put_printable(out, e->description.p);
        tern_buf_putc(out, ')');
      }
      break;
    case TERN_GROUP_PROMOTED:
      tern_buf_printf(out, "%s made ", by);
      put_users(out, &e->users);
      tern_buf_puts(out, e->users.n > 1 ? " admins" : " an admin");
      break;
    case TERN_GROUP_DEMOTED:
      tern_buf_printf(out, "%s removed ", by);
      put_users(out, &e->users);
      tern_buf_puts(out, e->users.n > 1 ? " as admins" : " as an admin");
      break;
    default: tern_buf_printf(out, "%s changed the group", by); break;
  }
}

/* ---- receipts per member ---- */

static bool tally_has(char *const *v, size_t n, tern_str u) {
  for (size_t i = 0; i < n; i++)
    if (strlen(v[i]) == u.n && memcmp(v[i], u.p, u.n) == 0) return true;
  return false;
}

/* Adds u unless it is there; true when added. */
static bool tally_put(char ***v, size_t *n, tern_str u) {
  if (!u.p || tally_has(*v, *n, u)) return false;
  *v = tern_realloc(*v, (*n + 1) * sizeof **v);
  (*v)[(*n)++] = tern_strndup(u.p, u.n);
  return true;
}

bool tern_cli_tally_add(tern_cli_tally *t, const tern_strs *by, bool read) {
  bool changed = false;
  for (size_t i = 0; i < by->n; i++) {
    tern_str u = tern_strs_at(by, i);
    /* A member who read it has it: read implies delivered (PROTOCOL.md 5). */
    changed |= tally_put(&t->delivered, &t->ndelivered, u);
    if (read) changed |= tally_put(&t->read, &t->nread, u);
  }
  return changed;
}

void tern_cli_tally_free(tern_cli_tally *t) {
  for (size_t i = 0; i < t->ndelivered; i++) tern_free(t->delivered[i]);
  for (size_t i = 0; i < t->nread; i++) tern_free(t->read[i]);
  tern_free(t->delivered);
  tern_free(t->read);
  memset(t, 0, sizeof *t);
}

bool tern_cli_tally_all(const tern_cli_tally *t, bool read) {
  if (t->of < 0) return false;
  return (int64_t)(read ? t->nread : t->ndelivered) >= t->of;
}

static void tally_count(const tern_cli_tally *t, size_t n, tern_buf *out) {
  if (t->of >= 0) tern_buf_printf(out, "%zu of %lld", n, (long long)t->of);
  else tern_buf_printf(out, "%zu", n);
}

void tern_cli_tally_text(const tern_cli_tally *t, tern_cli_tally_view view, tern_buf *out) {
  bool all = t->of > 0 && tern_cli_tally_all(t, false);
  switch (view) {
    case TERN_CLI_TALLY_READ:
      tern_buf_puts(out, "read by ");
      tally_count(t, t->nread, out);
      break;
    case TERN_CLI_TALLY_DELIVERED:
      tern_buf_puts(out, all ? "✓✓ delivered to " : "delivered to ");
      tally_count(t, t->ndelivered, out);
      break;
    case TERN_CLI_TALLY_TICKS:
      tern_buf_puts(out, all ? "✓✓" : "✓");
      if (t->ndelivered == 0) break;
      tern_buf_puts(out, " delivered to ");
      tally_count(t, t->ndelivered, out);
      if (t->nread) tern_buf_printf(out, ", read by %zu", t->nread);
      break;
  }
}

/* ---- refusals ---- */

int tern_cli_group_refused(const tern_cli *c, const tern_client_response *r) {
  if (r->status == 0 || strcmp(r->code, "bad_response") == 0) return tern_cli_http_failed(c, r);
  char msg[sizeof r->message], user[sizeof r->user];
  tern_cli_printable(r->message, msg, sizeof msg);
  tern_cli_printable(r->user, user, sizeof user);
  if (r->status == 401 && strcmp(r->code, "unauthorized") == 0)
    return tern_cli_complain(c, 1, "%s: %s; run tern login again", r->code, msg);
  if (r->status == 429 && r->retry_after[0])
    return tern_cli_complain(c, 1, "%s: %s; retry after %s s", r->code, msg, r->retry_after);
  if (user[0]) return tern_cli_complain(c, 1, "%s: %s: %s", r->code, msg, user);
  return tern_cli_complain(c, 1, "%s: %s", r->code, msg);
}

/* ---- finding a group ---- */

typedef struct list_wait {
  tern_cli_sync *s;            /* the answer goes here */
  tern_client_group_list *out; /* and the groups here */
} list_wait;

static void on_list(tern_client_response *r, tern_client_group_list *all, void *arg) {
  list_wait *w = arg;
  tern_cli_sync_cb(r, w->s);
  if (all) {
    *w->out = *all;
    memset(all, 0, sizeof *all);
  }
}

int tern_cli_groups_fetch(const tern_cli *c, tern_client_group_list *out, bool quiet) {
  memset(out, 0, sizeof *out);
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  list_wait w = {.s = &s, .out = out};
  int rc = tern_client_group_list_all(s.c, &c->url, c->creds.token, on_list, &w);
  tern_cli_sync_end(&s, rc);
  int st = 0;
  if (!s.r.ok) {
    st = quiet ? 1 : tern_cli_group_refused(c, &s.r);
    tern_client_group_list_free(out);
  }
  tern_client_response_free(&s.r);
  return st;
}

static bool name_is(const char *name, const char *arg, bool nocase) {
  return nocase ? strcasecmp(name, arg) == 0 : strcmp(name, arg) == 0;
}

/* How many of l's groups are called arg; the first one's index in *first. */
static size_t count_named(const tern_client_group_list *l, const char *arg, bool nocase, size_t *first) {
  size_t n = 0;
  for (size_t i = l->n; i-- > 0;) {
    if (!name_is(l->groups[i].name, arg, nocase)) continue;
    n++;
    *first = i;
  }
  return n;
}

long tern_cli_group_match(const tern_client_group_list *l, const char *arg, size_t *nmatch) {
  *nmatch = 0;
  for (size_t i = 0; i < l->n; i++) {
    if (strcmp(l->groups[i].group_id, arg) == 0) {
      *nmatch = 1;
      return (long)i;
    }
  }
  /* An exact name first: "Trip" and "trip" may both exist, and "Trip" then means the one. */
  for (int nocase = 0; nocase < 2; nocase++) {
    size_t first = 0, n = count_named(l, arg, nocase, &first);
    *nmatch = n;
    if (n == 1) return (long)first;
    if (n > 1) return -2;
  }
  return -1;
}

int tern_cli_group_resolve(const tern_cli *c, const char *arg, tern_cli_group_ref *out) {
  memset(out, 0, sizeof *out);
  out->members = -1;
  char shown[sizeof out->name];
  tern_cli_printable(arg, shown, sizeof shown);
  tern_client_group_list l;
  int rc = tern_cli_groups_fetch(c, &l, false);
  if (rc) return rc;
  size_t nmatch;
  long i = tern_cli_group_match(&l, arg, &nmatch);
  int st = 0;
  if (i >= 0) {
    const tern_client_group_summary *g = &l.groups[i];
    memcpy(out->group_id, g->group_id, sizeof out->group_id);
    tern_cli_printable(g->name, out->name, sizeof out->name);
    out->members = g->members;
    out->admin = g->admin;
    out->listed = true;
  } else if (i == -2) {
    tern_buf ids = {0};
    size_t first = 0;
    bool nocase = count_named(&l, arg, false, &first) == 0;
    size_t listed = 0;
    for (size_t k = 0; k < l.n; k++) {
      if (!name_is(l.groups[k].name, arg, nocase)) continue;
      if (listed++ < SHOWN_MAX) tern_buf_printf(&ids, "%s%s", listed > 1 ? ", " : "", l.groups[k].group_id);
    }
    if (listed > SHOWN_MAX) tern_buf_puts(&ids, ", ...");
    st = tern_cli_complain(c, 1, "'%s' is ambiguous: %zu of your groups have that name (%s); give the group id", shown,
                           nmatch, tern_buf_cstr(&ids));
    tern_buf_free(&ids);
  } else if (tern_client_group_id_valid(arg)) {
    /* Not one of ours by id or name: the server has the last word on an id. */
    snprintf(out->group_id, sizeof out->group_id, "%s", arg);
    snprintf(out->name, sizeof out->name, "%s", arg);
  } else {
    st = tern_cli_complain(c, 1, "not_found: you are in no group called '%s'", shown);
  }
  tern_client_group_list_free(&l);
  return st;
}

/* ---- the commands ---- */

/* After a request whose answer is a group object: 0 and *g filled, or the exit status. A
 * 204 (a leave) is 0 with *g empty. */
static int group_answer(const tern_cli *c, tern_cli_sync *s, tern_client_group *g) {
  memset(g, 0, sizeof *g);
  if (!s->r.ok) {
    int st = tern_cli_group_refused(c, &s->r);
    tern_client_response_free(&s->r);
    return st;
  }
  int rc = tern_client_parse_group(&s->r, g);
  tern_client_response_free(&s->r);
  if (rc == -ENODATA) return 0;
  if (rc < 0) return tern_cli_complain(c, 1, "%s answered without a group object", c->server);
  return 0;
}

/* "alice (admin), bob, carol" */
static void put_members(tern_buf *b, const tern_client_group *g) {
  for (size_t i = 0; i < g->nmembers; i++)
    tern_buf_printf(b, "%s%s%s", i ? ", " : "", g->members[i].user, g->members[i].admin ? " (admin)" : "");
}

/* Prints one line: what happened, then the members ("added dave to Trip, now 4 members:
 * alice (admin), bob, carol, dave"). what_fmt has one %s, for the group's name. */
static void print_roster(const char *what, const char *what_fmt, const tern_client_group *g) {
  tern_buf b = {0};
  char name[128];
  tern_cli_printable(g->name, name, sizeof name);
  tern_buf_puts(&b, what);
  tern_buf_printf(&b, what_fmt, name);
  tern_buf_printf(&b, " %zu member%s: ", g->nmembers, g->nmembers == 1 ? "" : "s");
  put_members(&b, g);
  printf("%s\n", tern_buf_cstr(&b));
  tern_buf_free(&b);
}

/* Lower-cases an ASCII name as the server does with every username it is given. */
static void lower(const char *s, char *out, size_t cap) {
  size_t i = 0;
  for (; s[i] && i + 1 < cap; i++) out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
  out[i] = '\0';
}

static int cmd_create(tern_cli *c, const tern_cli_group_ref *unused) {
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  int rc = tern_client_group_create(s.c, &c->url, c->creds.token, c->pos[0], c->description,
                                    (const char *const *)c->pos + 1, (size_t)c->npos - 1, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  tern_client_group g;
  if ((rc = group_answer(c, &s, &g))) return rc;
  printf("%s\n", g.group_id);
  print_roster("created", " %s with", &g);
  tern_client_group_free(&g);
  return 0;
}

static int cmd_add(tern_cli *c, const tern_cli_group_ref *ref) {
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  int rc = tern_client_group_add(s.c, &c->url, c->creds.token, ref->group_id, (const char *const *)c->pos + 1,
                                 (size_t)c->npos - 1, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  tern_client_group g;
  if ((rc = group_answer(c, &s, &g))) return rc;
  /* Users already in the group are ignored by the server, and members are listed in the
   * order they joined: the new ones are the last, as many as the group grew by. */
  tern_buf what = {0};
  size_t grew = ref->members >= 0 && (int64_t)g.nmembers > ref->members ? g.nmembers - (size_t)ref->members : 0;
  if (ref->members < 0) {
    tern_buf_puts(&what, "added (or already there): ");
    for (int i = 1; i < c->npos; i++) {
      char u[TERN_CLIENT_USER_MAX * 4 + 1];
      lower(c->pos[i], u, sizeof u);
      tern_buf_printf(&what, "%s%s", i > 1 ? ", " : "", u);
    }
  } else if (grew == 0) {
    tern_buf_puts(&what, "nobody added (they are members already)");
  } else {
    tern_buf_puts(&what, "added ");
    for (size_t i = g.nmembers - grew; i < g.nmembers; i++)
      tern_buf_printf(&what, "%s%s", i > g.nmembers - grew ? ", " : "", g.members[i].user);
  }
  print_roster(tern_buf_cstr(&what), grew ? " to %s, now" : "; %s has", &g);
  tern_buf_free(&what);
  tern_client_group_free(&g);
  return 0;
}

/* The group is one of ours when we found it in the list, so a 404 about a member is about
 * the user: the server words it "no such group" either way. Returns the exit status after
 * saying so, or 0 when the answer is something else. */
static int not_a_member(const tern_cli *c, tern_cli_sync *s, const tern_cli_group_ref *ref, const char *who) {
  if (s->r.ok || s->r.status != 404 || !ref->listed) return 0;
  tern_client_response_free(&s->r);
  return tern_cli_complain(c, 1, "not_found: %s is not a member of %s", who, ref->name);
}

/* DELETE .../members/USER: removing someone, or (USER is the caller) leaving. */
static int remove_member(tern_cli *c, const tern_cli_group_ref *ref, const char *user) {
  char who[TERN_CLIENT_USER_MAX * 4 + 1];
  lower(user, who, sizeof who);
  bool self = strcmp(who, c->creds.user) == 0;
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  int rc = tern_client_group_remove(s.c, &c->url, c->creds.token, ref->group_id, who, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  if (!self && (rc = not_a_member(c, &s, ref, who))) return rc;
  tern_client_group g;
  if ((rc = group_answer(c, &s, &g))) return rc;
  if (self) {
    if (ref->members == 1) printf("left %s; it had no other members, so it is gone\n", ref->name);
    else printf("left %s\n", ref->name);
  } else {
    char what[160];
    snprintf(what, sizeof what, "removed %s", who);
    print_roster(what, " from %s, now", &g);
  }
  tern_client_group_free(&g);
  return 0;
}

static int cmd_remove(tern_cli *c, const tern_cli_group_ref *ref) { return remove_member(c, ref, c->pos[1]); }

static int cmd_leave(tern_cli *c, const tern_cli_group_ref *ref) { return remove_member(c, ref, c->creds.user); }

static int cmd_admin(tern_cli *c, const tern_cli_group_ref *ref) {
  char who[TERN_CLIENT_USER_MAX * 4 + 1];
  lower(c->pos[1], who, sizeof who);
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  int rc = tern_client_group_set_admin(s.c, &c->url, c->creds.token, ref->group_id, who, !c->off, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  if ((rc = not_a_member(c, &s, ref, who))) return rc;
  tern_client_group g;
  if ((rc = group_answer(c, &s, &g))) return rc;
  const tern_client_group_member *m = tern_client_group_find(&g, who);
  char name[128];
  tern_cli_printable(g.name, name, sizeof name);
  printf("%s is %s admin of %s\n", who, m && m->admin ? "an" : "not an", name);
  tern_client_group_free(&g);
  return 0;
}

static int check_rename(const tern_cli *c) {
  if (c->npos < 2 && !c->description) return tern_cli_complain(c, 2, "give a new NAME, --description D, or both");
  if (c->npos > 1 && !c->pos[1][0]) return tern_cli_complain(c, 2, "the group needs a name");
  return 0;
}

static int cmd_rename(tern_cli *c, const tern_cli_group_ref *ref) {
  const char *name = c->npos > 1 ? c->pos[1] : NULL;
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  int rc = tern_client_group_update(s.c, &c->url, c->creds.token, ref->group_id, name, c->description,
                                    tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  tern_client_group g;
  if ((rc = group_answer(c, &s, &g))) return rc;
  char now[128], desc[600];
  tern_cli_printable(g.name, now, sizeof now);
  tern_cli_printable(g.description, desc, sizeof desc);
  if (name) printf("renamed %s to \"%s\"\n", ref->name, now);
  if (c->description) {
    if (desc[0]) printf("description of %s: %s\n", now, desc);
    else printf("description of %s cleared\n", now);
  }
  tern_client_group_free(&g);
  return 0;
}

static int cmd_info(tern_cli *c, const tern_cli_group_ref *ref) {
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  int rc = tern_client_group_get(s.c, &c->url, c->creds.token, ref->group_id, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  tern_client_group g;
  if ((rc = group_answer(c, &s, &g))) return rc;
  char name[128], desc[600], when[32];
  tern_cli_printable(g.name, name, sizeof name);
  tern_cli_printable(g.description, desc, sizeof desc);
  printf("%s (group_id %s)\n", name, g.group_id);
  if (desc[0]) printf("description: %s\n", desc);
  tern_cli_format_time(g.created_at, true, when, sizeof when);
  printf("created by %s on %s\n", g.created_by[0] ? g.created_by : "?", when);
  int width = 0;
  for (size_t i = 0; i < g.nmembers; i++)
    if ((int)strlen(g.members[i].user) > width) width = (int)strlen(g.members[i].user);
  printf("%zu member%s:\n", g.nmembers, g.nmembers == 1 ? "" : "s");
  for (size_t i = 0; i < g.nmembers; i++) {
    const tern_client_group_member *m = &g.members[i];
    tern_cli_format_time(m->since, true, when, sizeof when);
    printf("  %-*s  %-6s  since %s%s\n", width, m->user, m->admin ? "admin" : "member", when,
           strcmp(m->user, c->creds.user) == 0 ? "  (you)" : "");
  }
  tern_client_group_free(&g);
  return 0;
}

static int cmd_list(tern_cli *c, const tern_cli_group_ref *unused) {
  tern_client_group_list l;
  int rc = tern_cli_groups_fetch(c, &l, false);
  if (rc) return rc;
  int width = 0;
  for (size_t i = 0; i < l.n; i++)
    if ((int)strlen(l.groups[i].group_id) > width) width = (int)strlen(l.groups[i].group_id);
  for (size_t i = 0; i < l.n; i++) {
    const tern_client_group_summary *g = &l.groups[i];
    char name[128];
    tern_cli_printable(g->name, name, sizeof name);
    printf("%-*s  %-6s  %3lld member%s  %s\n", width, g->group_id, g->admin ? "admin" : "member",
           (long long)g->members, g->members == 1 ? " " : "s", name);
  }
  if (l.n == 0 && isatty(2)) fprintf(stderr, "you are in no groups on %s\n", c->server);
  tern_client_group_list_free(&l);
  return 0;
}

static int check_create(const tern_cli *c) {
  return c->pos[0][0] ? 0 : tern_cli_complain(c, 2, "the group needs a name");
}

/* Each subcommand: its arguments, then what it does once they are parsed, the user is logged
 * in and (group) the first positional argument is resolved as GROUP. */
static const struct {
  const char *name;  /* "create" */
  const char *full;  /* "group create": the name messages and --help use */
  unsigned opts;     /* the options it takes (TERN_CLI_OPT_*) */
  int min_pos, max_pos;
  bool group;        /* pos[0] is a GROUP */
  int (*check)(const tern_cli *c); /* usage checks beyond the counts (exit 2), or NULL */
  int (*run)(tern_cli *c, const tern_cli_group_ref *ref);
} subcommands[] = {
    {"create", "group create", TERN_CLI_OPT_DESCRIPTION, 1, TERN_CLI_ANY_POS, false, check_create, cmd_create},
    {"add", "group add", 0, 2, TERN_CLI_ANY_POS, true, NULL, cmd_add},
    {"remove", "group remove", 0, 2, 2, true, NULL, cmd_remove},
    {"leave", "group leave", 0, 1, 1, true, NULL, cmd_leave},
    {"admin", "group admin", TERN_CLI_OPT_OFF, 2, 2, true, NULL, cmd_admin},
    {"rename", "group rename", TERN_CLI_OPT_DESCRIPTION, 1, 2, true, check_rename, cmd_rename},
    {"info", "group info", 0, 1, 1, true, NULL, cmd_info},
    {"list", "group list", 0, 0, 0, false, NULL, cmd_list},
};

int tern_cli_cmd_group(int argc, char **argv) {
  const char *sub = argc > 1 ? argv[1] : NULL;
  if (sub && (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0)) {
    fputs(tern_cli_cmd_usage("group"), stdout);
    return 0;
  }
  for (size_t i = 0; sub && i < TERN_ARRAY_LEN(subcommands); i++) {
    if (strcmp(subcommands[i].name, sub) != 0) continue;
    argv[1] = (char *)subcommands[i].full; /* what tern_cli_parse_args shows as the command */
    tern_cli c;
    tern_cli_group_ref ref = {.members = -1};
    int rc = tern_cli_parse_args(&c, argc - 1, argv + 1, subcommands[i].opts, subcommands[i].min_pos,
                                 subcommands[i].max_pos);
    if (rc) return rc < 0 ? 0 : rc;
    if ((subcommands[i].check && (rc = subcommands[i].check(&c))) || (rc = tern_cli_need_login(&c)) ||
        (subcommands[i].group && (rc = tern_cli_group_resolve(&c, c.pos[0], &ref))))
      return rc;
    return subcommands[i].run(&c, &ref);
  }
  if (sub) fprintf(stderr, "tern: group: unknown subcommand '%s'\n", sub);
  fputs(tern_cli_cmd_usage("group"), stderr);
  return 2;
}
