/* secure.c: the CLI's end-to-end encryption (PROTOCOL.md 11) on the client's e2e module:
 * the state directory beside the credentials, publishing and topping up keys, the devices
 * a send must reach, building the encrypted send frame, fixing it after devices_changed,
 * decrypting what arrives, encrypted attachments, and `tern safety`. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "cli/cli_int.h"

/* ---- the state directory: DIR/HOST-PORT.e2e beside DIR/HOST-PORT.json ---- */

int tern_cli_e2e_dir(const tern_cli *c, char *out, size_t cap) {
  const char *p = c->creds_path;
  size_t n = strlen(p);
  if (n > 5 && strcmp(p + n - 5, ".json") == 0) n -= 5;
  int w = snprintf(out, cap, "%.*s.e2e", (int)n, p);
  return w < 0 || (size_t)w >= cap ? -ENAMETOOLONG : 0;
}

void tern_cli_e2e_remove(const tern_cli *c) {
  char dir[4200], path[4300];
  if (tern_cli_e2e_dir(c, dir, sizeof dir) < 0) return;
  tern_e2e_state_path(dir, path, sizeof path);
  unlink(path);
  rmdir(dir);
}

/* ---- synchronous key-directory calls ---- */

static void escape_seg(const char *s, tern_buf *out) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
        ch == '_' || ch == '.' || ch == '~') {
      tern_buf_putc(out, (char)ch);
    } else {
      tern_buf_putc(out, '%');
      tern_buf_putc(out, hex[ch >> 4]);
      tern_buf_putc(out, hex[ch & 15]);
    }
  }
}

static void keys_path(const char *user, const char *device, tern_buf *out) {
  tern_buf_puts(out, "/v1/keys");
  if (user) {
    tern_buf_putc(out, '/');
    escape_seg(user, out);
  }
  if (device) {
    tern_buf_putc(out, '/');
    escape_seg(device, out);
  }
}

/* One request on a private loop; *r is always filled (free it). */
static void http_sync(const tern_cli *c, const char *method, const char *path, const char *body, size_t len,
                      const char *ctype, tern_client_response *r) {
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  tern_client_request rq = {.method = method, .path = path, .token = c->creds.token, .body = body,
                            .body_len = len, .content_type = ctype};
  int rc = tern_client_http(s.c, &c->url, &rq, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  *r = s.r;
}

static int put_keys(const tern_cli *c, tern_e2e *e, bool full, size_t n_new) {
  tern_buf body = {0};
  int rc = tern_e2e_keys_body(e, full, n_new, &body);
  if (rc < 0) {
    tern_buf_free(&body);
    return rc;
  }
  tern_client_response r;
  http_sync(c, "PUT", "/v1/keys", body.data, body.len, NULL, &r);
  tern_buf_free(&body);
  if (r.ok) rc = 0;
  else if (r.status == 404) rc = -ENOENT; /* a server without a key directory */
  else if (r.status == 409) rc = -EEXIST; /* identity_exists: this device has other keys */
  else if (r.status == 0) rc = r.err ? r.err : -EIO;
  else rc = -EPROTO;
  if (rc == -EPROTO) tern_cli_complain(c, 1, "publishing keys: %s (%s)", r.message, r.code);
  tern_client_response_free(&r);
  return rc;
}

int tern_cli_e2e_topup(const tern_cli *c, tern_e2e *e) {
  tern_client_response r;
  http_sync(c, "GET", "/v1/keys", NULL, 0, NULL, &r);
  int rc = 0;
  if (r.ok && r.json) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(r.json, "one_time_prekeys");
    const cJSON *ik = cJSON_GetObjectItemCaseSensitive(r.json, "identity_key");
    char mine[64];
    tern_e2e_identity_b64(e, mine, sizeof mine);
    if (cJSON_IsString(ik) && strcmp(ik->valuestring, mine) != 0) rc = -EEXIST;
    else if (cJSON_IsNumber(n) && n->valuedouble < TERN_E2E_PREKEY_LOW) rc = put_keys(c, e, false, TERN_E2E_PREKEY_BATCH);
  } else if (r.status == 404) {
    /* Nothing published for this device yet (or no key directory: the PUT says which). */
    rc = put_keys(c, e, true, 0);
  } else {
    rc = r.status == 0 ? (r.err ? r.err : -EIO) : -EPROTO;
  }
  tern_client_response_free(&r);
  return rc;
}

tern_e2e *tern_cli_e2e_load(const tern_cli *c, bool quiet) {
  char dir[4200], err[256] = "";
  if (tern_cli_e2e_dir(c, dir, sizeof dir) < 0) return NULL;
  tern_e2e *e = NULL;
  if (tern_e2e_open(dir, &e, err, sizeof err) < 0) {
    if (!quiet) tern_cli_complain(c, 1, "end-to-end encryption is off: %s", err);
    return NULL;
  }
  /* A state of another device (an older login) is no use: this device gets its own keys. */
  if (!tern_e2e_has_identity(e) || strcmp(tern_e2e_user(e), c->creds.user) != 0 ||
      strcmp(tern_e2e_device_id(e), c->creds.device_id) != 0) {
    if (tern_e2e_init(e, c->creds.user, c->creds.device_id) < 0) {
      if (!quiet) tern_cli_complain(c, 1, "end-to-end encryption is off: cannot make keys in %s", dir);
      tern_e2e_close(e);
      return NULL;
    }
  }
  int rc = tern_cli_e2e_topup(c, e);
  if (rc == -ENOENT) {
    /* An old server: plaintext as before, and nothing to say unless asked. */
    tern_e2e_close(e);
    return NULL;
  }
  if (rc == -EEXIST) {
    if (!quiet)
      tern_cli_complain(c, 1, "the server holds other keys for this device than %s: run tern login again "
                        "to use end-to-end encryption", dir);
    tern_e2e_close(e);
    return NULL;
  }
  return e; /* a failed top-up (network) still lets us encrypt with what we have */
}

void tern_cli_e2e_publish(const tern_cli *c) {
  char dir[4200], err[256] = "";
  if (tern_cli_e2e_dir(c, dir, sizeof dir) < 0) return;
  tern_e2e *e = NULL;
  if (tern_e2e_open(dir, &e, err, sizeof err) < 0) {
    /* A state we cannot read is replaced: a login is a new device anyway. */
    tern_cli_e2e_remove(c);
    if (tern_e2e_open(dir, &e, err, sizeof err) < 0) {
      tern_cli_complain(c, 1, "no end-to-end encryption on this device: %s", err);
      return;
    }
  }
  int rc = tern_e2e_init(e, c->creds.user, c->creds.device_id);
  if (rc == 0) rc = put_keys(c, e, true, 0);
  if (rc == 0 && isatty(2)) fprintf(stderr, "published end-to-end encryption keys (kept in %s)\n", dir);
  else if (rc == -ENOENT && isatty(2)) fprintf(stderr, "note: %s has no key directory; messages will not be end-to-end encrypted\n", c->server);
  else if (rc < 0 && rc != -EPROTO) tern_cli_complain(c, 1, "could not publish keys: %s", tern_cli_errstr(rc));
  tern_e2e_close(e);
}

/* ---- warnings ---- */

void tern_cli_e2e_warn(const char *user, const char *device_id, tern_e2e_change ch) {
  if (ch == TERN_E2E_NEW_DEVICE)
    fprintf(stderr, "⚠ %s has a new device (%s): the safety number changed (tern safety %s)\n", user, device_id,
            user);
  else if (ch == TERN_E2E_KEY_CHANGED)
    fprintf(stderr, "⚠ the identity key of %s's device %s changed: the safety number changed (tern safety %s)\n",
            user, device_id, user);
}

/* ---- the devices a send must reach ---- */

void tern_cli_targets_free(tern_cli_targets *t) {
  tern_free(t->v);
  memset(t, 0, sizeof *t);
}

static void targets_add(tern_cli_targets *t, const char *user, const char *device_id, bool ours) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].user, user) == 0 && strcmp(t->v[i].device_id, device_id) == 0) return;
  t->v = tern_realloc(t->v, (t->n + 1) * sizeof *t->v);
  tern_cli_target *x = &t->v[t->n++];
  snprintf(x->user, sizeof x->user, "%s", user);
  snprintf(x->device_id, sizeof x->device_id, "%s", device_id);
  if (!ours) t->nrecipient++;
}

static void targets_drop(tern_cli_targets *t, const char *user, const char *device_id, const char *me) {
  for (size_t i = 0; i < t->n; i++) {
    if (strcmp(t->v[i].user, user) != 0 || strcmp(t->v[i].device_id, device_id) != 0) continue;
    if (strcmp(user, me) != 0) t->nrecipient--;
    memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof *t->v);
    t->n--;
    return;
  }
}

/* Makes sessions with every device of the answer we have none with, forgets the devices of
 * user the answer no longer lists, and adds them all to t (but our own device). */
static void learn_directory(const tern_cli *c, tern_e2e *e, const char *user, const cJSON *answer,
                            tern_cli_targets *t) {
  const cJSON *devs = cJSON_GetObjectItemCaseSensitive(answer, "devices"), *d;
  bool ours = strcmp(user, c->creds.user) == 0;
  char **known;
  size_t nknown = tern_e2e_devices(e, user, &known);
  for (size_t i = 0; i < nknown; i++) {
    bool listed = false;
    cJSON_ArrayForEach(d, devs) {
      const cJSON *id = cJSON_GetObjectItemCaseSensitive(d, "device_id");
      if (cJSON_IsString(id) && strcmp(id->valuestring, known[i]) == 0) listed = true;
    }
    if (!listed) tern_e2e_forget(e, user, known[i]);
  }
  tern_e2e_strv_free(known, nknown);
  cJSON_ArrayForEach(d, devs) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(d, "device_id");
    if (!cJSON_IsString(id) || (ours && strcmp(id->valuestring, c->creds.device_id) == 0)) continue;
    char err[256] = "";
    tern_e2e_change ch = TERN_E2E_SAME;
    if (!tern_e2e_has_session(e, user, id->valuestring) &&
        tern_e2e_process_bundle(e, user, d, &ch, err, sizeof err) < 0) {
      tern_cli_complain(c, 1, "skipping a device of %s: %s", user, err);
      continue;
    }
    if (!ours) tern_cli_e2e_warn(user, id->valuestring, ch);
    targets_add(t, user, id->valuestring, ours);
  }
}

int tern_cli_e2e_prepare(const tern_cli *c, tern_e2e *e, const char *const *users, size_t n, tern_cli_targets *t) {
  memset(t, 0, sizeof *t);
  bool unknown = false;
  for (size_t i = 0; i <= n; i++) {
    const char *user = i < n ? users[i] : c->creds.user; /* our other devices last */
    bool ours = i == n;
    if (!ours && strcmp(user, c->creds.user) == 0) continue;
    /* The devices we have sessions with are taken as they are: the server checks the list
     * and answers devices_changed when it is wrong. Fetching anyway would use up one of
     * each device's one-time prekeys per message and run into limits.key_fetch_rate. Only
     * a user we know no device of is looked up (first contact); our own other devices are
     * always learnt through devices_changed. */
    char **known;
    size_t nknown = tern_e2e_devices(e, user, &known);
    for (size_t k = 0; k < nknown; k++)
      if (!ours || strcmp(known[k], c->creds.device_id) != 0) targets_add(t, user, known[k], ours);
    tern_e2e_strv_free(known, nknown);
    if (nknown || ours) continue;
    tern_buf path = {0};
    keys_path(user, NULL, &path);
    tern_client_response r;
    http_sync(c, "GET", tern_buf_cstr(&path), NULL, 0, NULL, &r);
    tern_buf_free(&path);
    int rc = 0;
    if (r.ok && r.json) learn_directory(c, e, user, r.json, t);
    else if (r.status == 404) rc = -ENOENT; /* unknown user: the send will say so */
    else if (r.status == 429) rc = -EAGAIN;
    else rc = r.status ? -EPROTO : (r.err ? r.err : -EIO);
    tern_client_response_free(&r);
    if (rc == -ENOENT) unknown = true;
    else if (rc < 0) {
      tern_cli_targets_free(t);
      return rc;
    }
  }
  if (unknown) {
    tern_cli_targets_free(t);
    return -ENOENT;
  }
  return 0;
}

/* ---- the encrypted send frame ---- */

void tern_cli_e2e_frame_free(tern_frame *f) {
  for (size_t i = 0; i < f->ne2e; i++) {
    tern_free(f->e2e[i].body);
  }
  tern_free(f->e2e);
  memset(f, 0, sizeof *f);
}

int tern_cli_e2e_frame(tern_e2e *e, const tern_cli_targets *t, const char *id, const char *to, const char *group_id,
                       const tern_e2e_inner *in, const char *media_ref, tern_frame *f) {
  memset(f, 0, sizeof *f);
  f->type = TERN_FRAME_SEND;
  f->id = (char *)id;
  f->to = (char *)to;
  f->to_raw = (char *)to;
  f->group_id = (char *)group_id;
  f->media_ref = (char *)media_ref;
  f->silent = in->reaction_to || in->edit_of;
  tern_buf pt = {0};
  tern_e2e_inner_encode(in, &pt);
  f->e2e = tern_calloc(t->n ? t->n : 1, sizeof *f->e2e);
  int rc = 0;
  for (size_t i = 0; i < t->n && rc == 0; i++) {
    tern_buf b64 = {0};
    int type = 0;
    rc = tern_e2e_encrypt(e, t->v[i].user, t->v[i].device_id, pt.data, pt.len, &type, &b64);
    if (rc < 0) {
      tern_buf_free(&b64);
      break;
    }
    tern_frame_e2e *x = &f->e2e[f->ne2e++];
    x->device_id = (char *)t->v[i].device_id;
    x->type = type == TERN_E2E_CT_PREKEY ? TERN_E2E_PREKEY : TERN_E2E_MESSAGE;
    x->body = tern_buf_steal(&b64, &x->body_len);
  }
  memset(pt.data, 0, pt.len);
  tern_buf_free(&pt);
  if (rc < 0) tern_cli_e2e_frame_free(f);
  return rc;
}

/* ---- devices_changed: fetch the missing, drop the extra, then call back ---- */

typedef struct fix_job fix_job;
typedef struct fix_req {
  fix_job *job;
  char user[TERN_CLIENT_USER_MAX + 1];
} fix_req;

struct fix_job {
  const tern_cli *c;
  tern_e2e *e;
  tern_cli_targets *t;
  size_t pending;
  int err;
  tern_cli_e2e_fixed_cb cb;
  void *arg;
  fix_req *reqs;
};

static void fix_done(fix_job *j) {
  j->cb(j->arg, j->err);
  tern_free(j->reqs);
  tern_free(j);
}

static void fix_on_bundle(tern_client_response *r, void *arg) {
  fix_req *q = arg;
  fix_job *j = q->job;
  if (r->ok && r->json) {
    /* /v1/keys/{user}/{device} answers the directory shape with that one device. */
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(r->json, "devices"), *d;
    const cJSON *one = devs ? NULL : r->json;
    bool ours = strcmp(q->user, j->c->creds.user) == 0;
    for (d = devs ? devs->child : one; d; d = devs ? d->next : NULL) {
      const cJSON *id = cJSON_GetObjectItemCaseSensitive(d, "device_id");
      char err[256] = "";
      tern_e2e_change ch = TERN_E2E_SAME;
      if (!cJSON_IsString(id) || tern_e2e_process_bundle(j->e, q->user, d, &ch, err, sizeof err) < 0) {
        j->err = -EBADMSG;
        continue;
      }
      if (!ours) tern_cli_e2e_warn(q->user, id->valuestring, ch);
      targets_add(j->t, q->user, id->valuestring, ours);
      if (!devs) break;
    }
  } else if (r->status != 404) {
    /* A device gone again by now is no error (the next answer says so); anything else is. */
    j->err = r->status ? -EPROTO : (r->err ? r->err : -EIO);
  }
  if (--j->pending == 0) fix_done(j);
}

int tern_cli_e2e_fix(const tern_cli *c, tern_client *client, tern_e2e *e, tern_cli_targets *t, const tern_event *f,
                     tern_cli_e2e_fixed_cb cb, void *arg) {
  for (size_t i = 0; i < f->n_extra; i++) {
    const tern_device_ref *x = &f->extra[i];
    if (!x->user.p || !x->device_id.p) continue;
    tern_e2e_forget(e, x->user.p, x->device_id.p);
    targets_drop(t, x->user.p, x->device_id.p, c->creds.user);
  }
  fix_job *j = tern_calloc(1, sizeof *j);
  *j = (fix_job){.c = c, .e = e, .t = t, .cb = cb, .arg = arg};
  j->reqs = tern_calloc(f->n_missing ? f->n_missing : 1, sizeof *j->reqs);
  j->pending = 1; /* held until every request is started */
  for (size_t i = 0; i < f->n_missing; i++) {
    const tern_device_ref *x = &f->missing[i];
    if (!x->user.p || !x->device_id.p) continue;
    fix_req *q = &j->reqs[i];
    q->job = j;
    snprintf(q->user, sizeof q->user, "%s", x->user.p);
    tern_buf path = {0};
    keys_path(x->user.p, x->device_id.p, &path);
    tern_client_request rq = {.method = "GET", .path = tern_buf_cstr(&path), .token = c->creds.token};
    int rc = tern_client_http(client, &c->url, &rq, fix_on_bundle, q);
    tern_buf_free(&path);
    if (rc < 0) j->err = rc;
    else j->pending++;
  }
  if (--j->pending == 0) fix_done(j);
  return 0;
}

/* ---- receiving ---- */

int tern_cli_e2e_decrypt(tern_e2e *e, const tern_envelope *env, tern_e2e_inner *in, char *err, size_t cap) {
  memset(in, 0, sizeof *in);
  if (!e) {
    snprintf(err, cap, "this device has no end-to-end keys");
    return -ENOENT;
  }
  if (!env->from.p || !env->from_device.p || !env->e2e_body.p) {
    snprintf(err, cap, "the message names no sender device");
    return -EBADMSG;
  }
  tern_buf pt = {0};
  tern_e2e_change ch = TERN_E2E_SAME;
  int rc = tern_e2e_decrypt(e, env->from.p, env->from_device.p, env->e2e_type == TERN_CIPHER_PREKEY ? TERN_E2E_CT_PREKEY
                                                                                                : TERN_E2E_CT_MESSAGE,
                            env->e2e_body.p, env->e2e_body.n, &pt, &ch, err, cap);
  if (rc == 0) {
    rc = tern_e2e_inner_decode(pt.data, pt.len, in);
    if (rc < 0) snprintf(err, cap, "the plaintext is not tern's inner format");
    if (rc == 0 && in->has_media) tern_e2e_remember_media(e, &in->media);
    if (ch == TERN_E2E_NEW_DEVICE || ch == TERN_E2E_KEY_CHANGED) tern_cli_e2e_warn(env->from.p, env->from_device.p, ch);
  }
  if (pt.data) memset(pt.data, 0, pt.len);
  tern_buf_free(&pt);
  return rc;
}

int tern_cli_e2e_send_decrypt_error(tern_client_conn *conn, const tern_envelope *env) {
  if (!env->from.p || !env->from_device.p || !env->msg_id.p) return -EINVAL;
  tern_frame f = {.type = TERN_FRAME_DECRYPT_ERROR,
                  .peer = (char *)env->from.p,
                  .to_raw = (char *)env->from.p,
                  .device_id = (char *)env->from_device.p,
                  .msg_id = (char *)env->msg_id.p};
  return tern_client_send_frame(conn, &f, NULL);
}

/* The members of a group but us: 0 and *users (tern_e2e_strv_free), or a negative code. */
static int group_others(const tern_cli *c, const char *group_id, char ***users, size_t *n) {
  tern_cli_sync s;
  tern_cli_sync_begin(&s);
  int rc = tern_client_group_get(s.c, &c->url, c->creds.token, group_id, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  tern_client_group g = {0};
  rc = s.r.ok && tern_client_parse_group(&s.r, &g) == 0 ? 0 : -EPROTO;
  tern_client_response_free(&s.r);
  *n = 0;
  *users = tern_calloc(g.nmembers + 1, sizeof **users);
  for (size_t i = 0; rc == 0 && i < g.nmembers; i++)
    if (strcmp(g.members[i].user, c->creds.user) != 0) (*users)[(*n)++] = tern_strdup(g.members[i].user);
  tern_client_group_free(&g);
  return rc;
}

int tern_cli_e2e_resend(const tern_cli *c, tern_client_conn *conn, tern_e2e *e, const tern_envelope *env) {
  if (!env->msg_id.p || !env->from.p || !env->from_device.p) return -EINVAL;
  char peer[TERN_CLIENT_GROUP_ID_MAX + 1];
  bool group = false;
  tern_buf inner = {0};
  if (tern_e2e_find_sent(e, env->msg_id.p, peer, sizeof peer, &group, &inner) < 0) {
    tern_buf_free(&inner);
    return -ENOENT;
  }
  tern_e2e_inner in;
  int rc = tern_e2e_inner_decode(inner.data, inner.len, &in);
  tern_buf_free(&inner);
  if (rc < 0) return rc;
  /* A new session with the device that failed, from a fresh bundle. This runs inside the
   * session's callback and blocks its loop for a few requests: a CLI can afford that. */
  tern_buf path = {0};
  keys_path(env->from.p, env->from_device.p, &path);
  tern_client_response r;
  http_sync(c, "GET", tern_buf_cstr(&path), NULL, 0, NULL, &r);
  tern_buf_free(&path);
  if (r.ok && r.json) {
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(r.json, "devices");
    const cJSON *d = devs ? cJSON_GetArrayItem(devs, 0) : r.json;
    char err[256] = "";
    if (d) tern_e2e_process_bundle(e, env->from.p, d, NULL, err, sizeof err);
  }
  tern_client_response_free(&r);
  char **users = NULL;
  size_t n = 0;
  if (group) {
    rc = group_others(c, peer, &users, &n);
  } else {
    users = tern_calloc(1, sizeof *users);
    users[n++] = tern_strdup(peer);
  }
  tern_cli_targets t = {0};
  if (rc == 0) rc = tern_cli_e2e_prepare(c, e, (const char *const *)users, n, &t);
  tern_e2e_strv_free(users, n);
  if (rc == 0) {
    tern_free(in.resend_of);
    in.resend_of = tern_strdup(env->msg_id.p);
    char id[TERN_CLIENT_ID_SIZE];
    tern_client_new_id(id);
    tern_frame f;
    rc = tern_cli_e2e_frame(e, &t, id, group ? NULL : peer, group ? peer : NULL, &in,
                            in.has_media ? in.media.media_id : NULL, &f);
    if (rc == 0) {
      rc = tern_client_send_frame(conn, &f, NULL);
      tern_cli_e2e_frame_free(&f);
    }
  }
  tern_cli_targets_free(&t);
  tern_e2e_inner_free(&in);
  return rc;
}

int tern_cli_e2e_conversation(const tern_cli *c, tern_e2e *e, const char *peer, const char *group_id,
                              tern_cli_targets *t, char *keyless, size_t cap) {
  char **users = NULL;
  size_t n = 0;
  int rc = 0;
  memset(t, 0, sizeof *t);
  if (keyless && cap) keyless[0] = 0;
  if (group_id) {
    rc = group_others(c, group_id, &users, &n);
  } else {
    users = tern_calloc(1, sizeof *users);
    users[n++] = tern_strdup(peer);
  }
  if (rc == 0) rc = tern_cli_e2e_prepare(c, e, (const char *const *)users, n, t);
  int all = rc < 0 ? rc : 1;
  for (size_t i = 0; rc == 0 && i < n && all == 1; i++) {
    bool has = false;
    for (size_t k = 0; k < t->n && !has; k++) has = strcmp(t->v[k].user, users[i]) == 0;
    if (!has) {
      all = 0;
      if (keyless) snprintf(keyless, cap, "%s", users[i]);
    }
  }
  tern_e2e_strv_free(users, n);
  if (all != 1) tern_cli_targets_free(t);
  return all;
}

/* ---- attachments ---- */

int tern_cli_e2e_upload(const tern_cli *c, const void *bytes, size_t len, const char *mime, tern_e2e_media *out) {
  memset(out, 0, sizeof *out);
  tern_buf ct = {0};
  int rc = tern_e2e_blob_seal(bytes, len, out->key, out->iv, &ct);
  if (rc < 0) {
    tern_buf_free(&ct);
    return tern_cli_complain(c, 1, "cannot encrypt the attachment");
  }
  tern_e2e_sha256_hex(ct.data, ct.len, out->sha256);
  snprintf(out->mime, sizeof out->mime, "%s", mime);
  out->size = (int64_t)len;
  out->width = out->height = -1;
  tern_cli_sync s;
  tern_cli_sync_begin_timeout(&s, c->timeout_ms > 120000 ? c->timeout_ms : 120000);
  tern_client_request rq = {.method = "POST", .path = "/v1/media", .token = c->creds.token,
                            .content_type = "application/octet-stream", .body = ct.data, .body_len = ct.len};
  rc = tern_client_http(s.c, &c->url, &rq, tern_cli_sync_cb, &s);
  tern_cli_sync_end(&s, rc);
  tern_buf_free(&ct);
  if (!s.r.ok) {
    int st = tern_cli_http_failed(c, &s.r);
    tern_client_response_free(&s.r);
    return st;
  }
  const cJSON *id = s.r.json ? cJSON_GetObjectItemCaseSensitive(s.r.json, "media_id") : NULL;
  const cJSON *sha = s.r.json ? cJSON_GetObjectItemCaseSensitive(s.r.json, "sha256") : NULL;
  if (!cJSON_IsString(id)) {
    tern_client_response_free(&s.r);
    return tern_cli_complain(c, 1, "%s answered the upload without a media_id", c->server);
  }
  snprintf(out->media_id, sizeof out->media_id, "%s", id->valuestring);
  if (cJSON_IsString(sha) && strcmp(sha->valuestring, out->sha256) != 0) {
    tern_client_response_free(&s.r);
    return tern_cli_complain(c, 1, "%s stored something else than we sent (sha256 differs)", c->server);
  }
  tern_client_response_free(&s.r);
  return 0;
}

int tern_cli_e2e_open_blob(const tern_e2e_media *m, const void *ct, size_t n, tern_buf *out, char *err, size_t cap) {
  char sha[65];
  tern_e2e_sha256_hex(ct, n, sha);
  if (m->sha256[0] && strcmp(sha, m->sha256) != 0) {
    snprintf(err, cap, "the attachment's SHA-256 is not the one in the message");
    return -EBADMSG;
  }
  if (tern_e2e_blob_open(ct, n, m->key, m->iv, out) < 0) {
    snprintf(err, cap, "the attachment does not decrypt (changed on the way?)");
    return -EBADMSG;
  }
  return 0;
}

/* Downloads and decrypts an attachment into out: 0 or an exit status after saying why. */
int tern_cli_e2e_download(const tern_cli *c, const tern_e2e_media *m, tern_buf *out) {
  tern_buf path = {0};
  tern_buf_puts(&path, "/v1/media/");
  escape_seg(m->media_id, &path);
  tern_client_response r;
  http_sync(c, "GET", tern_buf_cstr(&path), NULL, 0, NULL, &r);
  tern_buf_free(&path);
  if (!r.ok) {
    int st = tern_cli_http_failed(c, &r);
    tern_client_response_free(&r);
    return st;
  }
  char err[160];
  int rc = tern_cli_e2e_open_blob(m, r.body, r.body_len, out, err, sizeof err);
  tern_client_response_free(&r);
  if (rc < 0) return tern_cli_complain(c, 1, "%s: %s", m->media_id, err);
  return 0;
}

/* ---- tern safety USER ---- */

int tern_cli_cmd_safety(int argc, char **argv) {
  tern_cli c;
  int rc = tern_cli_parse_args(&c, argc, argv, 0, 1, 1);
  if (rc) return rc < 0 ? 0 : rc;
  if ((rc = tern_cli_need_login(&c))) return rc;
  char peer[TERN_CLIENT_USER_MAX + 1];
  if (!tern_username_normalize(c.pos[0], strlen(c.pos[0]), peer))
    return tern_cli_complain(&c, 2, "'%s' is not a username", c.pos[0]);
  uint8_t(*keys[2])[TERN_E2E_KEY_LEN] = {NULL, NULL};
  size_t nkeys[2] = {0, 0};
  const char *who[2] = {c.creds.user, peer};
  for (int i = 0; i < 2; i++) {
    tern_buf path = {0};
    keys_path(who[i], NULL, &path);
    tern_client_response r;
    http_sync(&c, "GET", tern_buf_cstr(&path), NULL, 0, NULL, &r);
    tern_buf_free(&path);
    if (!r.ok || !r.json) {
      int st = r.status == 404 && i == 1 ? tern_cli_complain(&c, 1, "no such user: %s", peer)
                                         : tern_cli_http_failed(&c, &r);
      tern_client_response_free(&r);
      tern_free(keys[0]);
      return st;
    }
    nkeys[i] = tern_e2e_directory_keys(r.json, &keys[i]);
    tern_client_response_free(&r);
  }
  rc = 0;
  if (!nkeys[0] || !nkeys[1]) {
    rc = tern_cli_complain(&c, 1, "%s has no end-to-end keys yet: no safety number", nkeys[1] ? c.creds.user : peer);
  } else {
    char digits[TERN_E2E_SAFETY_DIGITS + 1], shown[80];
    if (tern_e2e_safety_number(c.creds.user, (const uint8_t(*)[TERN_E2E_KEY_LEN])keys[0], nkeys[0], peer,
                               (const uint8_t(*)[TERN_E2E_KEY_LEN])keys[1], nkeys[1], digits) < 0) {
      rc = tern_cli_complain(&c, 1, "cannot compute the safety number");
    } else {
      tern_e2e_safety_format(digits, shown, sizeof shown);
      printf("%s\n", shown);
      if (isatty(1))
        printf("(%s and %s: compare it with theirs; %zu and %zu device key%s)\n", c.creds.user, peer, nkeys[0],
               nkeys[1], nkeys[0] + nkeys[1] == 2 ? "" : "s");
    }
  }
  tern_free(keys[0]);
  tern_free(keys[1]);
  return rc;
}
