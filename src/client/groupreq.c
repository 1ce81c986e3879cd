/* groupreq.c: libtern-client's side of the group API (PROTOCOL.md 10, client.h "groups"): the
 * requests, the readers of their answers, and the list that follows "next" page after page.
 * The readers are strict about what is there (a field of the wrong type, a group id that is
 * none, a user name too long for the struct: -EBADMSG) and lenient about what is not (a
 * missing description or created_by reads as ""), as the WebSocket reader is. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "client/client_int.h"
#include "proto/wire.h"

/* A page size for the full list: the server caps it at groups.page_max (500 by default)
 * anyway, and fewer round trips matter more to a client than a smaller answer. */
#define LIST_PAGE 500
/* Far more pages than any user can fill (groups.max_per_user is 10000): a server whose
 * "next" keeps moving forward for ever still ends the list. */
#define LIST_MAX_PAGES 100000

bool tern_client_group_id_valid(const char *s) { return s && tern_wire_group_id(s, strnlen(s, TERN_CLIENT_GROUP_ID_MAX + 1)); }

/* ---- requests ---- */

/* "/v1/groups/ID" then the escaped pieces after it (NULL ends them). */
static void group_path(tern_buf *b, const char *group_id, const char *sub, const char *user) {
  tern_buf_puts(b, "/v1/groups/");
  tern_buf_puts(b, group_id); /* checked: nothing to escape */
  if (sub) tern_buf_puts(b, sub);
  if (user) tern_client_path_escape(b, user);
}

static int group_request(tern_client *c, const tern_client_url *url, const char *method, const char *token,
                         tern_buf *path, tern_buf *body, tern_client_http_cb cb, void *arg) {
  tern_client_request req = {.method = method, .path = tern_buf_cstr(path), .token = token,
                             .body = body && body->len ? body->data : NULL, .body_len = body ? body->len : 0};
  int rc = tern_client_http(c, url, &req, cb, arg);
  tern_buf_free(path);
  if (body) tern_buf_free(body);
  return rc;
}

/* Appends ,"key":["a","b"] (the first comma only when the object has a field already). */
static int put_user_list(tern_buf *b, const char *key, const char *const *users, size_t n) {
  if (n && !users) return -EINVAL;
  tern_buf_printf(b, "%s\"%s\":[", b->len > 1 ? "," : "", key);
  for (size_t i = 0; i < n; i++) {
    if (!users[i]) return -EINVAL;
    if (i) tern_buf_putc(b, ',');
    tern_buf_put_json_str(b, users[i], strlen(users[i]));
  }
  tern_buf_putc(b, ']');
  return 0;
}

/* Appends ,"key":"value" when value is there. */
static void put_text(tern_buf *b, const char *key, const char *value) {
  if (!value) return;
  tern_buf_printf(b, "%s\"%s\":", b->len > 1 ? "," : "", key);
  tern_buf_put_json_str(b, value, strlen(value));
}

int tern_client_group_create(tern_client *c, const tern_client_url *url, const char *token, const char *name,
                             const char *description, const char *const *members, size_t n, tern_client_http_cb cb,
                             void *arg) {
  if (!token || !name) return -EINVAL;
  tern_buf body = {0}, path = {0};
  tern_buf_putc(&body, '{');
  put_text(&body, "name", name);
  put_text(&body, "description", description);
  if (put_user_list(&body, "members", members, n) < 0) {
    tern_buf_free(&body);
    return -EINVAL;
  }
  tern_buf_putc(&body, '}');
  tern_buf_puts(&path, "/v1/groups");
  return group_request(c, url, "POST", token, &path, &body, cb, arg);
}

int tern_client_group_list_page(tern_client *c, const tern_client_url *url, const char *token, const char *after,
                                int limit, tern_client_http_cb cb, void *arg) {
  if (!token || limit < 0 || (after && !tern_client_group_id_valid(after))) return -EINVAL;
  tern_buf path = {0};
  tern_buf_puts(&path, "/v1/groups");
  char sep = '?';
  if (after) {
    tern_buf_printf(&path, "%cafter=%s", sep, after);
    sep = '&';
  }
  if (limit) tern_buf_printf(&path, "%climit=%d", sep, limit);
  return group_request(c, url, "GET", token, &path, NULL, cb, arg);
}

int tern_client_group_get(tern_client *c, const tern_client_url *url, const char *token, const char *group_id,
                          tern_client_http_cb cb, void *arg) {
  if (!token || !tern_client_group_id_valid(group_id)) return -EINVAL;
  tern_buf path = {0};
  group_path(&path, group_id, NULL, NULL);
  return group_request(c, url, "GET", token, &path, NULL, cb, arg);
}

int tern_client_group_update(tern_client *c, const tern_client_url *url, const char *token, const char *group_id,
                             const char *name, const char *description, tern_client_http_cb cb, void *arg) {
  if (!token || !tern_client_group_id_valid(group_id) || (!name && !description)) return -EINVAL;
  tern_buf body = {0}, path = {0};
  tern_buf_putc(&body, '{');
  put_text(&body, "name", name);
  put_text(&body, "description", description);
  tern_buf_putc(&body, '}');
  group_path(&path, group_id, NULL, NULL);
  return group_request(c, url, "PATCH", token, &path, &body, cb, arg);
}

int tern_client_group_add(tern_client *c, const tern_client_url *url, const char *token, const char *group_id,
                          const char *const *users, size_t n, tern_client_http_cb cb, void *arg) {
  if (!token || !tern_client_group_id_valid(group_id) || n == 0) return -EINVAL;
  tern_buf body = {0}, path = {0};
  tern_buf_putc(&body, '{');
  if (put_user_list(&body, "users", users, n) < 0) {
    tern_buf_free(&body);
    return -EINVAL;
  }
  tern_buf_putc(&body, '}');
  group_path(&path, group_id, "/members", NULL);
  return group_request(c, url, "POST", token, &path, &body, cb, arg);
}

/* The calls that name one user in the URL. */
static int user_call(tern_client *c, const tern_client_url *url, const char *method, const char *token,
                     const char *group_id, const char *sub, const char *user, tern_client_http_cb cb, void *arg) {
  if (!token || !tern_client_group_id_valid(group_id) || !user || !*user || strlen(user) > 256) return -EINVAL;
  tern_buf path = {0};
  group_path(&path, group_id, sub, user);
  return group_request(c, url, method, token, &path, NULL, cb, arg);
}

int tern_client_group_remove(tern_client *c, const tern_client_url *url, const char *token, const char *group_id,
                             const char *user, tern_client_http_cb cb, void *arg) {
  return user_call(c, url, "DELETE", token, group_id, "/members/", user, cb, arg);
}

int tern_client_group_set_admin(tern_client *c, const tern_client_url *url, const char *token,
                                const char *group_id, const char *user, bool admin, tern_client_http_cb cb,
                                void *arg) {
  return user_call(c, url, admin ? "PUT" : "DELETE", token, group_id, "/admins/", user, cb, arg);
}

/* ---- reading the answers ---- */

/* A string field copied into dst (cap bytes). Absent: "" when optional, else -EBADMSG; there
 * but not a string, or too long: -EBADMSG. */
static int fixed_str(char *dst, size_t cap, const cJSON *o, const char *key, bool required) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  dst[0] = '\0';
  if (!v || cJSON_IsNull(v)) return required ? -EBADMSG : 0;
  if (!cJSON_IsString(v)) return -EBADMSG;
  size_t n = strlen(v->valuestring);
  if (n >= cap || (required && n == 0)) return -EBADMSG;
  memcpy(dst, v->valuestring, n + 1);
  return 0;
}

/* A string field copied to the heap ("" when absent and optional). */
static int heap_str(char **dst, const cJSON *o, const char *key, bool required) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  *dst = NULL;
  if (!v || cJSON_IsNull(v)) {
    if (required) return -EBADMSG;
    *dst = tern_strdup("");
    return 0;
  }
  if (!cJSON_IsString(v)) return -EBADMSG;
  *dst = tern_strdup(v->valuestring);
  return 0;
}

/* An integral number field (absent: 0 unless required). */
static int int_field(int64_t *dst, const cJSON *o, const char *key, bool required) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  *dst = 0;
  if (!v || cJSON_IsNull(v)) return required ? -EBADMSG : 0;
  if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble || v->valuedouble < 0 ||
      v->valuedouble > 9007199254740992.0)
    return -EBADMSG;
  *dst = (int64_t)v->valuedouble;
  return 0;
}

static int group_id_field(char *dst, const cJSON *o) {
  if (fixed_str(dst, TERN_CLIENT_GROUP_ID_MAX + 1, o, "group_id", true) < 0) return -EBADMSG;
  return tern_client_group_id_valid(dst) ? 0 : -EBADMSG;
}

/* "admin" or anything else (a later role reads as a plain member); not a string: -EBADMSG. */
static int role_field(bool *admin, const cJSON *o) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "role");
  *admin = false;
  if (!v || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsString(v)) return -EBADMSG;
  *admin = strcmp(v->valuestring, "admin") == 0;
  return 0;
}

void tern_client_group_free(tern_client_group *g) {
  tern_free(g->name);
  tern_free(g->description);
  tern_free(g->members);
  memset(g, 0, sizeof *g);
}

static int read_group(const cJSON *o, tern_client_group *out) {
  if (!cJSON_IsObject(o) || group_id_field(out->group_id, o) < 0 || heap_str(&out->name, o, "name", true) < 0 ||
      heap_str(&out->description, o, "description", false) < 0 ||
      fixed_str(out->created_by, sizeof out->created_by, o, "created_by", false) < 0 ||
      int_field(&out->created_at, o, "created_at", false) < 0)
    return -EBADMSG;
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "members");
  if (!cJSON_IsArray(ms)) return -EBADMSG;
  size_t n = (size_t)cJSON_GetArraySize(ms);
  out->members = tern_calloc(n ? n : 1, sizeof *out->members);
  const cJSON *m;
  cJSON_ArrayForEach(m, ms) {
    tern_client_group_member *gm = &out->members[out->nmembers];
    if (!cJSON_IsObject(m) || fixed_str(gm->user, sizeof gm->user, m, "user", true) < 0 ||
        role_field(&gm->admin, m) < 0 || int_field(&gm->since, m, "since", false) < 0)
      return -EBADMSG;
    out->nmembers++;
  }
  return 0;
}

int tern_client_parse_group(const tern_client_response *r, tern_client_group *out) {
  memset(out, 0, sizeof *out);
  if (!r->ok) return -EBADMSG;
  if (r->body_len == 0) return -ENODATA;
  int rc = read_group(r->json, out);
  if (rc < 0) tern_client_group_free(out);
  return rc;
}

const tern_client_group_member *tern_client_group_find(const tern_client_group *g, const char *user) {
  for (size_t i = 0; i < g->nmembers; i++)
    if (strcmp(g->members[i].user, user) == 0) return &g->members[i];
  return NULL;
}

void tern_client_group_list_free(tern_client_group_list *l) {
  for (size_t i = 0; i < l->n; i++) tern_free(l->groups[i].name);
  tern_free(l->groups);
  memset(l, 0, sizeof *l);
}

static int read_list(const cJSON *o, tern_client_group_list *out) {
  const cJSON *gs = cJSON_GetObjectItemCaseSensitive(o, "groups");
  if (!cJSON_IsObject(o) || !cJSON_IsArray(gs)) return -EBADMSG;
  const cJSON *next = cJSON_GetObjectItemCaseSensitive(o, "next");
  if (next && !cJSON_IsNull(next)) {
    if (fixed_str(out->next, sizeof out->next, o, "next", true) < 0 || !tern_client_group_id_valid(out->next))
      return -EBADMSG;
  }
  size_t n = (size_t)cJSON_GetArraySize(gs);
  out->groups = tern_calloc(n ? n : 1, sizeof *out->groups);
  const cJSON *g;
  cJSON_ArrayForEach(g, gs) {
    tern_client_group_summary *s = &out->groups[out->n];
    if (!cJSON_IsObject(g) || group_id_field(s->group_id, g) < 0 || heap_str(&s->name, g, "name", true) < 0) {
      tern_free(s->name);
      return -EBADMSG;
    }
    out->n++; /* from here on the list owns s->name */
    if (role_field(&s->admin, g) < 0 || int_field(&s->members, g, "members", false) < 0) return -EBADMSG;
  }
  return 0;
}

int tern_client_parse_group_list(const tern_client_response *r, tern_client_group_list *out) {
  memset(out, 0, sizeof *out);
  if (!r->ok) return -EBADMSG;
  int rc = read_list(r->json, out);
  if (rc < 0) tern_client_group_list_free(out);
  return rc;
}

/* ---- every page ---- */

typedef struct list_all {
  tern_client *c;                 /* the context the pages run on */
  tern_client_url url;            /* copied */
  char *token;                    /* copied */
  tern_client_group_list all;     /* the groups of the pages so far */
  size_t cap;                     /* entries allocated in all.groups */
  int pages;                      /* pages read */
  char after[TERN_CLIENT_GROUP_ID_MAX + 1]; /* the "next" that asked for the latest page */
  tern_client_group_list_cb cb;
  void *arg;
} list_all;

static void list_all_free(void *arg) {
  list_all *la = arg;
  tern_client_group_list_free(&la->all);
  tern_free(la->token);
  tern_free(la);
}

static void list_all_fail(list_all *la, tern_client_response *r) {
  la->cb(r, NULL, la->arg);
  list_all_free(la);
}

/* Fails the list with an answer of our own: err (-EBADMSG: "bad_response"), and why when
 * given. */
static void list_all_fail_with(list_all *la, int err, const char *why) {
  tern_client_response bad;
  tern_client_response_fail(&bad, err, "GET /v1/groups");
  if (why) snprintf(bad.message, sizeof bad.message, "GET /v1/groups: %s", why);
  list_all_fail(la, &bad);
  tern_client_response_free(&bad);
}

static void list_all_page(tern_client_response *r, void *arg);

static int list_all_next(list_all *la, const char *after) {
  tern_buf path = {0};
  tern_buf_printf(&path, "/v1/groups?%s%s%slimit=%d", after ? "after=" : "", after ? after : "", after ? "&" : "",
                  LIST_PAGE);
  tern_client_request req = {.method = "GET", .path = tern_buf_cstr(&path), .token = la->token};
  int rc = tern_client_http_ex(la->c, &la->url, &req, list_all_page, list_all_free, la);
  tern_buf_free(&path);
  return rc;
}

static void list_all_page(tern_client_response *r, void *arg) {
  list_all *la = arg;
  if (!r->ok) return list_all_fail(la, r);
  tern_client_group_list page;
  if (tern_client_parse_group_list(r, &page) < 0)
    return list_all_fail_with(la, -EBADMSG, "the server's answer is not a list of groups");
  la->pages++;
  if (la->all.n + page.n > la->cap) {
    la->cap = (la->all.n + page.n) * 2;
    la->all.groups = tern_realloc(la->all.groups, la->cap * sizeof *la->all.groups);
  }
  if (page.n) memcpy(la->all.groups + la->all.n, page.groups, page.n * sizeof *page.groups);
  la->all.n += page.n;
  tern_free(page.groups); /* the names now belong to la->all */
  char next[TERN_CLIENT_GROUP_ID_MAX + 1];
  memcpy(next, page.next, sizeof next);
  if (!next[0]) {
    la->cb(r, &la->all, la->arg);
    list_all_free(la);
    return;
  }
  /* The pages come in group id order and "next" is the last id of this page: one that does
   * not move past the page before would ask for the same page again, for ever. */
  if (strcmp(next, la->after) <= 0 || la->pages >= LIST_MAX_PAGES)
    return list_all_fail_with(la, -EBADMSG, "the server's \"next\" does not move forward");
  memcpy(la->after, next, sizeof la->after);
  int rc = list_all_next(la, next);
  if (rc < 0) list_all_fail_with(la, rc, NULL);
}

int tern_client_group_list_all(tern_client *c, const tern_client_url *url, const char *token,
                               tern_client_group_list_cb cb, void *arg) {
  if (!c || !url || !token || !cb) return -EINVAL;
  list_all *la = TERN_NEW(list_all);
  la->c = c;
  la->url = *url;
  la->token = tern_strdup(token);
  la->cb = cb;
  la->arg = arg;
  int rc = list_all_next(la, NULL);
  if (rc < 0) list_all_free(la);
  return rc;
}
