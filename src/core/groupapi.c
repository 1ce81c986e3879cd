/* groupapi: /v1/groups (groupapi.h). */
#include "core/groupapi.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "core/api.h"
#include "base/log.h"
#include "core/groups.h"
#include "core/router.h"
#include "net/server.h"

/* Every refusal below that depends on the directory (no such group, user or member, not an
 * admin) may come from a change another writer made a moment ago: the request first runs
 * again after a catch-up (tern_api_catch_up), and only a second refusal is answered. */
static void not_found(tern_app *a, tern_http_req *req) {
  if (!tern_api_catch_up(a, req)) tern_http_error(req, 404, "not_found", "no such group");
}
/* The group is the caller's, the user named in the path is not in it. */
static void not_member(tern_app *a, tern_http_req *req) {
  if (!tern_api_catch_up(a, req)) tern_http_error(req, 404, "not_found", "that user is not a member of this group");
}
static void forbidden(tern_app *a, tern_http_req *req, const char *why) {
  if (!tern_api_catch_up(a, req)) tern_http_error(req, 403, "forbidden", why);
}
static void method_not_allowed(tern_http_req *req) {
  tern_http_error(req, 405, "method_not_allowed", "that method is not allowed on this path");
}
static bool is(const tern_http_req *req, const char *m) { return strcmp(req->method, m) == 0; }

/* ---- bodies: their shape, without the directory ---- */

/* A string field of min..max bytes into *out (NULL when absent or null); false with a
 * sentence when it is there but not such a string. */
static bool text_field(cJSON *j, const char *name, size_t min, size_t max, const char **out, char *msg, size_t msglen) {
  *out = NULL;
  cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
  if (!v || cJSON_IsNull(v)) return true;
  size_t n = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
  if (!cJSON_IsString(v) || n < min || n > max) {
    snprintf(msg, msglen, "%s must be a string of %zu to %zu bytes", name, min, max);
    return false;
  }
  *out = v->valuestring;
  return true;
}

/* A list of strings (field name) into r->users; 0, or 400/413 with a sentence. */
static int name_list(cJSON *j, const char *name, bool required, size_t max, tern_group_req *r, char *msg,
                     size_t msglen) {
  cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, name);
  if (!required && (!arr || cJSON_IsNull(arr))) return 0;
  if (!cJSON_IsArray(arr)) {
    snprintf(msg, msglen, "%s must be a list of usernames", name);
    return 400;
  }
  size_t count = (size_t)cJSON_GetArraySize(arr);
  if (count > max + 1 + 1000) { /* far past any limit: refused before looking at each */
    snprintf(msg, msglen, "the group would have more than groups.max_members members");
    return 413;
  }
  r->users = tern_calloc(count ? count : 1, sizeof *r->users);
  const cJSON *it;
  cJSON_ArrayForEach(it, arr) {
    if (!cJSON_IsString(it)) {
      snprintf(msg, msglen, "%s must be a list of usernames", name);
      return 400;
    }
    r->users[r->nusers++] = it->valuestring;
  }
  return 0;
}

int tern_group_req_parse(const char *body, size_t len, tern_group_req_kind kind, size_t max_users, tern_group_req *out,
                         char *msg, size_t msglen) {
  memset(out, 0, sizeof *out);
  const char *why;
  cJSON *j = tern_api_json_parse(body, len, &out->doc, &why);
  if (!j) {
    snprintf(msg, msglen, "%s", why);
    return 400;
  }
  if (kind == TERN_GROUP_REQ_ADD) return name_list(j, "users", true, max_users, out, msg, msglen);
  if (!text_field(j, "name", 1, TERN_GROUP_NAME_MAX, &out->name, msg, msglen) ||
      !text_field(j, "description", 0, TERN_GROUP_DESC_MAX, &out->description, msg, msglen))
    return 400;
  if (kind == TERN_GROUP_REQ_PATCH) {
    if (out->name || out->description) return 0;
    snprintf(msg, msglen, "give a name or a description");
    return 400;
  }
  if (!out->name) {
    snprintf(msg, msglen, "name must be a string of 1 to %d bytes", TERN_GROUP_NAME_MAX);
    return 400;
  }
  return name_list(j, "members", false, max_users, out, msg, msglen);
}

void tern_group_req_free(tern_group_req *r) {
  tern_free(r->users);
  tern_wire_doc_free(&r->doc);
  memset(r, 0, sizeof *r);
}

/* Parses req's body; false after answering its refusal. */
static bool parse_body(tern_app *a, tern_http_req *req, tern_group_req_kind kind, tern_group_req *r) {
  char msg[128];
  int st = tern_group_req_parse(req->body.data, req->body.len, kind, (size_t)a->cfg->groups_max_members, r, msg,
                                sizeof msg);
  if (!st) return true;
  tern_http_error(req, st, st == 413 ? "too_large" : "bad_request", msg);
  tern_group_req_free(r);
  return false;
}

/* The users r names, duplicates and skip dropped. Answers and returns false when one is
 * unknown (404 no_such_user with user), after a catch-up first when the store is shared. */
static bool resolve_users(tern_app *a, tern_http_req *req, const tern_group_req *r, tern_user *skip,
                          tern_user ***out, size_t *n) {
  tern_user **list = tern_calloc(r->nusers ? r->nusers : 1, sizeof *list);
  size_t k = 0;
  for (size_t i = 0; i < r->nusers; i++) {
    char norm[TERN_USERNAME_MAX + 1];
    const char *raw = r->users[i];
    tern_user *u = NULL;
    if (tern_username_normalize(raw, strlen(raw), norm)) u = tern_dir_user(a->dir, norm);
    if (!u || u->pending) {
      tern_free(list);
      if (norm[0] && tern_api_catch_up(a, req)) return false; /* registered elsewhere a moment ago? */
      char shown[TERN_USERNAME_MAX + 1];
      snprintf(shown, sizeof shown, "%.*s", TERN_USERNAME_MAX, norm[0] ? norm : raw);
      if (!tern_utf8_valid(shown, strlen(shown))) snprintf(shown, sizeof shown, "%s", "?");
      tern_api_error_user(req, 404, "no_such_user", "there is no user by that name", shown);
      return false;
    }
    if (u == skip) continue;
    bool dup = false;
    for (size_t m = 0; m < k && !dup; m++) dup = list[m] == u;
    if (!dup) list[k++] = u;
  }
  *out = list;
  *n = k;
  return true;
}

/* Answers 403 naming the first user already in groups.max_per_user groups. */
static bool under_group_cap(tern_app *a, tern_http_req *req, tern_user **users, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if ((int64_t)users[i]->ngroups >= a->cfg->groups_max_per_user) {
      tern_api_error_user(req, 403, "forbidden", "that user is in groups.max_per_user groups already", users[i]->name);
      return false;
    }
  }
  return true;
}

/* A change waiting for its op. */
typedef struct change_ctx {
  tern_app *app;
  tern_http_req *req;
  tern_conn *conn;     /* referenced meanwhile */
  int status;          /* the answer once stored */
  tern_buf body;       /* the group object (empty: none) */
  char id[TERN_GROUP_ID_MAX + 1];
} change_ctx;

static void on_change_stored(tern_store_op *op) {
  change_ctx *c = op->arg;
  tern_app *a = c->app;
  tern_router_release_targets(tern_op_as_append(op));
  if (tern_api_cas_stored(a, c->req, c->conn, op, "the group")) {
    tern_group_confirm(a, c->id, tern_group_op_rev(op));
    if (c->body.len) tern_http_json(c->req, c->status, &c->body);
    else tern_http_respond(c->req, c->status, NULL, NULL, NULL, 0);
  }
  tern_conn_unref(c->conn);
  tern_buf_free(&c->body);
  tern_free(c);
}

/* Submits a change's op and answers with the group object as it is now (or status alone). */
static void answer_change(tern_app *a, tern_http_req *req, tern_store_op *op, int status, const tern_group *grp) {
  tern_buf b = {0};
  if (grp) tern_group_json(grp, &b);
  if (!op) {
    if (grp) tern_http_json(req, status, &b);
    else tern_http_respond(req, status, NULL, NULL, NULL, 0);
    tern_buf_free(&b);
    return;
  }
  change_ctx *c = TERN_NEW(change_ctx);
  c->app = a;
  c->req = req;
  c->conn = req->conn;
  tern_conn_ref(c->conn);
  c->status = status;
  c->body = b;
  const char *key = tern_op_as_append(op)->record_key;
  snprintf(c->id, sizeof c->id, "%s", key ? key + strlen("group/") : "");
  op->done = on_change_stored;
  op->arg = c;
  tern_app_submit(a, op);
}

static void do_create(tern_app *a, tern_http_req *req, tern_device *me) {
  tern_group_req r;
  if (!parse_body(a, req, TERN_GROUP_REQ_CREATE, &r)) return;
  tern_user **users = NULL;
  size_t n = 0;
  tern_user *creator = me->user;
  size_t max = (size_t)a->cfg->groups_max_members;
  if (resolve_users(a, req, &r, creator, &users, &n)) {
    if (n + 1 > max) {
      tern_http_error(req, 413, "too_large", "the group would have more than groups.max_members members");
    } else if (under_group_cap(a, req, &creator, 1) && under_group_cap(a, req, users, n)) {
      tern_store_op *op;
      tern_group *grp = tern_group_create(a, creator, r.name, r.description, users, n, &op);
      answer_change(a, req, op, 201, grp);
    }
  }
  tern_free(users);
  tern_group_req_free(&r);
}

static int cmp_id(const void *x, const void *y) {
  const tern_group *a = *(tern_group *const *)x, *b = *(tern_group *const *)y;
  return strcmp(a->id, b->id);
}

/* The value of key in a query string ("after=x&limit=5"), copied into out; false when absent.
 * Group ids and numbers need no percent-decoding; an encoded value simply matches nothing. */
static bool query_param(const char *q, const char *key, char *out, size_t cap) {
  size_t kl = strlen(key);
  for (const char *p = q; p && *p;) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    if (len > kl && p[kl] == '=' && memcmp(p, key, kl) == 0) {
      snprintf(out, cap, "%.*s", (int)(len - kl - 1), p + kl + 1);
      return true;
    }
    p = amp ? amp + 1 : NULL;
  }
  return false;
}

static void do_list(tern_app *a, tern_http_req *req, tern_device *me) {
  char after[TERN_GROUP_ID_MAX + 2] = "", lim[24] = "";
  long limit = 100;
  if (req->query) {
    query_param(req->query, "after", after, sizeof after);
    if (query_param(req->query, "limit", lim, sizeof lim)) {
      char *end;
      limit = strtol(lim, &end, 10);
      if (!*lim || *end || limit < 1) {
        tern_http_error(req, 400, "bad_request", "limit must be a positive integer");
        return;
      }
    }
  }
  if (limit > a->cfg->groups_page_max) limit = (long)a->cfg->groups_page_max;
  size_t n;
  tern_group *const *mine = tern_groups_of(a, me->user, &n);
  tern_group **sorted = tern_malloc((n ? n : 1) * sizeof *sorted);
  if (n) { /* a user in no group has no array: memcpy and qsort may not be given NULL */
    memcpy(sorted, mine, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_id);
  }
  size_t start = 0;
  if (after[0])
    while (start < n && strcmp(sorted[start]->id, after) <= 0) start++;
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"groups\":[");
  size_t end = TERN_MIN(n, start + (size_t)limit);
  for (size_t i = start; i < end; i++) {
    const tern_group *g = sorted[i];
    if (i > start) tern_buf_putc(&b, ',');
    tern_buf_puts(&b, "{\"group_id\":");
    tern_buf_put_json_str(&b, g->id, strlen(g->id));
    tern_buf_puts(&b, ",\"name\":");
    tern_buf_put_json_str(&b, g->name, strlen(g->name));
    tern_buf_puts(&b, tern_group_member(g, me->user)->admin ? ",\"role\":\"admin\",\"members\":"
                                                            : ",\"role\":\"member\",\"members\":");
    tern_buf_put_u64(&b, g->nmembers);
    tern_buf_putc(&b, '}');
  }
  tern_buf_puts(&b, "],\"next\":");
  if (end < n) tern_buf_put_json_str(&b, sorted[end - 1]->id, strlen(sorted[end - 1]->id));
  else tern_buf_puts(&b, "null");
  tern_buf_putc(&b, '}');
  tern_http_json(req, 200, &b);
  tern_buf_free(&b);
  tern_free(sorted);
}

static void do_patch(tern_app *a, tern_http_req *req, tern_group *grp, tern_user *me) {
  tern_group_req r;
  if (!parse_body(a, req, TERN_GROUP_REQ_PATCH, &r)) return;
  answer_change(a, req, tern_group_rename(a, grp, me, r.name, r.description), 200, grp);
  tern_group_req_free(&r);
}

static void do_add(tern_app *a, tern_http_req *req, tern_group *grp, tern_user *me) {
  tern_group_req r;
  if (!parse_body(a, req, TERN_GROUP_REQ_ADD, &r)) return;
  tern_user **users = NULL;
  size_t n = 0;
  size_t max = (size_t)a->cfg->groups_max_members;
  if (resolve_users(a, req, &r, NULL, &users, &n)) {
    /* users already in the group are ignored */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
      if (!tern_group_member(grp, users[i])) users[k++] = users[i];
    if (grp->nmembers + k > max) {
      tern_http_error(req, 413, "too_large", "the group would have more than groups.max_members members");
    } else if (under_group_cap(a, req, users, k)) {
      answer_change(a, req, tern_group_add(a, grp, me, users, k), 200, grp);
    }
  }
  tern_free(users);
  tern_group_req_free(&r);
}

static tern_user *path_user(tern_app *a, const char *raw) {
  char norm[TERN_USERNAME_MAX + 1];
  if (!tern_username_normalize(raw, strlen(raw), norm)) return NULL;
  tern_user *u = tern_dir_user(a->dir, norm);
  return u && !u->pending ? u : NULL;
}

static void do_remove(tern_app *a, tern_http_req *req, tern_group *grp, tern_member *me, const char *raw) {
  tern_user *who = path_user(a, raw);
  if (!who || !tern_group_member(grp, who)) return not_member(a, req);
  bool self = who == me->user;
  if (!self && !me->admin) return forbidden(a, req, "only an admin may remove members");
  bool deleted;
  tern_store_op *op = tern_group_remove(a, grp, me->user, who, &deleted);
  if (self) answer_change(a, req, op, 204, NULL);
  else answer_change(a, req, op, 200, grp);
}

static void do_admin(tern_app *a, tern_http_req *req, tern_group *grp, tern_member *me, const char *raw, bool admin) {
  if (!me->admin) return forbidden(a, req, "only an admin may change admins");
  tern_user *who = path_user(a, raw);
  tern_member *m = who ? tern_group_member(grp, who) : NULL;
  if (!m) return not_member(a, req);
  if (!admin && m->admin) {
    size_t admins = 0;
    for (size_t i = 0; i < grp->nmembers; i++) admins += grp->members[i].admin;
    if (admins == 1) return forbidden(a, req, "the only admin cannot be demoted; promote another member first");
  }
  answer_change(a, req, tern_group_set_admin(a, grp, me->user, who, admin), 200, grp);
}

void tern_groupapi_route(tern_app *a, tern_http_req *req) {
  tern_device *dev = tern_api_authenticate(a, req);
  if (!dev) return;
  const char *p = req->path + strlen("/v1/groups");
  if (!*p) {
    if (is(req, "POST")) return do_create(a, req, dev);
    if (is(req, "GET")) return do_list(a, req, dev);
    return method_not_allowed(req);
  }
  /* "/{id}[/members[/{user}]|/admins/{user}]" */
  p++;
  const char *slash = strchr(p, '/');
  size_t idl = slash ? (size_t)(slash - p) : strlen(p);
  char id[TERN_GROUP_ID_MAX + 1];
  if (idl == 0 || idl > TERN_GROUP_ID_MAX) return tern_http_error(req, 404, "not_found", "no such group");
  memcpy(id, p, idl);
  id[idl] = '\0';
  tern_group *grp = tern_groups_get(a->groups, id);
  tern_member *me = grp ? tern_group_member(grp, dev->user) : NULL;
  /* Not a member: the group might as well not exist. */
  if (!me) return not_found(a, req);
  const char *rest = slash ? slash : "";
  if (!*rest) {
    if (is(req, "GET")) {
      tern_buf b = {0};
      tern_group_json(grp, &b);
      tern_http_json(req, 200, &b);
      tern_buf_free(&b);
      return;
    }
    if (is(req, "PATCH")) {
      if (!me->admin) return forbidden(a, req, "only an admin may rename the group");
      return do_patch(a, req, grp, dev->user);
    }
    return method_not_allowed(req);
  }
  if (!strcmp(rest, "/members")) {
    if (!is(req, "POST")) return method_not_allowed(req);
    if (!me->admin) return forbidden(a, req, "only an admin may add members");
    return do_add(a, req, grp, dev->user);
  }
  if (!strncmp(rest, "/members/", 9) && rest[9] && !strchr(rest + 9, '/')) {
    if (!is(req, "DELETE")) return method_not_allowed(req);
    return do_remove(a, req, grp, me, rest + 9);
  }
  if (!strncmp(rest, "/admins/", 8) && rest[8] && !strchr(rest + 8, '/')) {
    if (is(req, "PUT")) return do_admin(a, req, grp, me, rest + 8, true);
    if (is(req, "DELETE")) return do_admin(a, req, grp, me, rest + 8, false);
    return method_not_allowed(req);
  }
  tern_http_error(req, 404, "not_found", "no such endpoint");
}
