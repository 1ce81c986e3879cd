/* e2ee.c: one device's Signal state (the stores libsignal-protocol-c reads and writes, kept in
 * memory and saved to DIR/e2e.json), sessions from key-directory bundles, encryption and
 * decryption per device, and safety numbers. See e2ee.h. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal/curve.h>
#include <signal/fingerprint.h>
#include <signal/key_helper.h>
#include <signal/protocol.h>
#include <signal/ratchet.h>
#include <signal/session_builder.h>
#include <signal/session_cipher.h>
#include <signal/session_pre_key.h>
#include <signal/signal_protocol.h>

#include "base/alloc.h"
#include "base/util.h"
#include "client/client.h"
#include "client/e2ee.h"

#define STATE_FILE "e2e.json"
#define STATE_VERSION 1

/* What the state holds, as one list of items (a CLI's state is small: a linear search is
 * cheaper than the code of an index). */
typedef enum item_kind {
  IT_ADDR = 1,  /* user, str = tern device id, num = local integer */
  IT_SESSION,   /* user, num = local integer, data = session record */
  IT_IDENTITY,  /* user, num = local integer, data = 33-byte identity key */
  IT_PREKEY,    /* num = key id, data = record, flag = published */
  IT_SIGNED,    /* num = key id, data = record */
  IT_MEDIA,     /* user = media id, str = sha256, mime, data = key || iv */
  IT_SENT,      /* user = msg_id, str = peer or group id, flag = a group, data = inner JSON */
} item_kind;

typedef struct item {
  item_kind kind;
  char *user;     /* owned, or NULL */
  char *str;      /* owned, or NULL */
  char *mime;     /* owned, or NULL (media) */
  int64_t num;
  uint8_t *data;  /* owned, or NULL */
  size_t len;
  bool flag;
} item;

struct tern_e2e {
  char dir[4096];                          /* the state directory */
  char user[TERN_CLIENT_USER_MAX + 1];     /* "" before init */
  char device_id[TERN_CLIENT_DEVICE_ID_MAX + 1];
  uint32_t registration_id;
  uint32_t next_prekey_id;                 /* the next one-time prekey id to hand out */
  uint32_t signed_prekey_id;               /* the current signed prekey */
  ratchet_identity_key_pair *identity;     /* NULL before init */
  item *items;
  size_t n, cap;
  signal_context *ctx;                     /* the library's context, our provider */
  signal_protocol_store_context *store;    /* our stores on it */
  tern_e2e_change change;                  /* what save_identity saw since it was reset */
  bool save_failed;                        /* a store callback could not save (reported once) */
  bool no_fsync;                           /* tern_e2e_set_fsync(false): measurements */
  int lock_fd;                             /* DIR/lock, flock'd during each public call */
  int depth;                               /* nesting of public calls (one lock) */
  dev_t seen_dev;                          /* the file as we last read or wrote it: another */
  ino_t seen_ino;                          /* process (listen beside send) may have */
  off_t seen_size;                         /* replaced it since */
  struct timespec seen_mtime;
};

static void note_file(tern_e2e *e) {
  char path[4200];
  tern_e2e_state_path(e->dir, path, sizeof path);
  struct stat sb;
  if (stat(path, &sb) < 0) return;
  e->seen_dev = sb.st_dev;
  e->seen_ino = sb.st_ino;
  e->seen_size = sb.st_size;
  e->seen_mtime = sb.st_mtim;
}

static void seterr(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t cap, const char *fmt, ...) {
  if (!err || !cap) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
}

/* ---- items ---- */

static bool name_is(const char *user, const char *name, size_t len) {
  return user && strlen(user) == len && memcmp(user, name, len) == 0;
}

static item *find_item(tern_e2e *e, item_kind k, const char *user, size_t ulen, int64_t num) {
  for (size_t i = 0; i < e->n; i++) {
    item *it = &e->items[i];
    if (it->kind != k || it->num != num) continue;
    if (user && !name_is(it->user, user, ulen)) continue;
    return it;
  }
  return NULL;
}

static item *add_item(tern_e2e *e, item_kind k) {
  if (e->n == e->cap) {
    e->cap = e->cap ? 2 * e->cap : 64;
    e->items = tern_realloc(e->items, e->cap * sizeof *e->items);
  }
  item *it = &e->items[e->n++];
  memset(it, 0, sizeof *it);
  it->kind = k;
  return it;
}

static void item_clear(item *it) {
  tern_free(it->user);
  tern_free(it->str);
  tern_free(it->mime);
  if (it->data) memset(it->data, 0, it->len); /* private keys live in some */
  tern_free(it->data);
}

static void drop_item(tern_e2e *e, item *it) {
  item_clear(it);
  size_t i = (size_t)(it - e->items);
  memmove(&e->items[i], &e->items[i + 1], (e->n - i - 1) * sizeof *e->items);
  e->n--;
}

static void set_data(item *it, const uint8_t *p, size_t n) {
  if (it->data) memset(it->data, 0, it->len);
  tern_free(it->data);
  it->data = tern_memdup(p, n);
  it->len = n;
}

/* ---- persistence ---- */

void tern_e2e_state_path(const char *dir, char *out, size_t cap) { snprintf(out, cap, "%s/%s", dir, STATE_FILE); }

static const char *kind_name(item_kind k) {
  switch (k) {
    case IT_ADDR: return "addr";
    case IT_SESSION: return "session";
    case IT_IDENTITY: return "identity";
    case IT_PREKEY: return "prekey";
    case IT_SIGNED: return "signed_prekey";
    case IT_MEDIA: return "media";
    case IT_SENT: return "sent";
  }
  return "?";
}

static item_kind kind_of(const char *s) {
  for (item_kind k = IT_ADDR; k <= IT_SENT; k++)
    if (strcmp(kind_name(k), s) == 0) return k;
  return 0;
}

static void add_b64(cJSON *o, const char *name, const uint8_t *p, size_t n) {
  tern_buf b = {0};
  tern_e2e_b64_encode(p, n, &b);
  cJSON_AddStringToObject(o, name, tern_buf_cstr(&b));
  memset(b.data, 0, b.len);
  tern_buf_free(&b);
}

/* Writes the whole state to a temporary file (0600), fsyncs it and renames it into place, so
 * that a crash leaves the old state or the new one, never half of one. */
static int save(tern_e2e *e) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddNumberToObject(root, "v", STATE_VERSION);
  cJSON_AddStringToObject(root, "user", e->user);
  cJSON_AddStringToObject(root, "device_id", e->device_id);
  cJSON_AddNumberToObject(root, "registration_id", e->registration_id);
  cJSON_AddNumberToObject(root, "next_prekey_id", e->next_prekey_id);
  cJSON_AddNumberToObject(root, "signed_prekey_id", e->signed_prekey_id);
  if (e->identity) {
    signal_buffer *b = NULL;
    if (ratchet_identity_key_pair_serialize(&b, e->identity) == 0) {
      add_b64(root, "identity", signal_buffer_data(b), signal_buffer_len(b));
      signal_buffer_bzero_free(b);
    }
  }
  cJSON *arr = cJSON_AddArrayToObject(root, "items");
  for (size_t i = 0; i < e->n; i++) {
    const item *it = &e->items[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "k", kind_name(it->kind));
    if (it->user) cJSON_AddStringToObject(o, "u", it->user);
    if (it->str) cJSON_AddStringToObject(o, "s", it->str);
    if (it->mime) cJSON_AddStringToObject(o, "m", it->mime);
    cJSON_AddNumberToObject(o, "n", (double)it->num);
    if (it->data) add_b64(o, "d", it->data, it->len);
    if (it->flag) cJSON_AddBoolToObject(o, "f", true);
    cJSON_AddItemToArray(arr, o);
  }
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  size_t len = strlen(text);

  char path[4200], tmp[4300];
  tern_e2e_state_path(e->dir, path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  unlink(tmp);
  int rc = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) rc = -errno;
  for (size_t off = 0; rc == 0 && off < len;) {
    ssize_t w = write(fd, text + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) rc = -errno;
    else off += (size_t)w;
  }
  if (fd >= 0) {
    if (rc == 0 && !e->no_fsync && fsync(fd) < 0) rc = -errno;
    if (close(fd) < 0 && rc == 0) rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0) rc = -errno;
    if (rc < 0) unlink(tmp);
  }
  memset(text, 0, len);
  cJSON_free(text);
  if (rc < 0) e->save_failed = true;
  else note_file(e);
  return rc;
}

static int decode_b64_field(const cJSON *o, const char *name, uint8_t **p, size_t *n) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!cJSON_IsString(s)) return -EBADMSG;
  tern_buf b = {0};
  if (tern_e2e_b64_decode(s->valuestring, strlen(s->valuestring), &b) < 0) {
    tern_buf_free(&b);
    return -EBADMSG;
  }
  *n = b.len;
  *p = (uint8_t *)tern_buf_steal(&b, NULL);
  return 0;
}

static const char *jstr(const cJSON *o, const char *name) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(s) ? s->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *name, double dflt) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsNumber(s) ? s->valuedouble : dflt;
}

/* An integer field in [min, max] (dflt when absent). False for anything else: a number read
 * from a peer or a file is converted only once it is known to fit (a cast of 1e93 or -3.5 to
 * an integer type is undefined behaviour; the fuzzer sent both). */
static bool jint(const cJSON *o, const char *name, int64_t min, int64_t max, int64_t dflt, int64_t *out) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!s) {
    *out = dflt;
    return true;
  }
  if (!cJSON_IsNumber(s)) return false;
  double v = s->valuedouble;
  if (!(v >= (double)min && v <= (double)max) || v != (double)(int64_t)v) return false;
  *out = (int64_t)v;
  return true;
}

#define JINT_MAX ((int64_t)1 << 53) /* every integer up to 2^53 is exact in a double */

static int load(tern_e2e *e, char *err, size_t errcap) {
  char path[4200];
  tern_e2e_state_path(e->dir, path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return 0;
    int rc = -errno;
    seterr(err, errcap, "cannot open %s: %s", path, strerror(errno));
    return rc;
  }
  tern_buf b = {0};
  char chunk[65536];
  for (;;) {
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    tern_buf_append(&b, chunk, (size_t)r);
  }
  close(fd);
  cJSON *root = cJSON_ParseWithLength(b.data ? b.data : "", b.len);
  memset(b.data, 0, b.len);
  tern_buf_free(&b);
  int rc = -EBADMSG;
  if (!cJSON_IsObject(root) || jnum(root, "v", 0) != STATE_VERSION) goto bad;
  snprintf(e->user, sizeof e->user, "%s", jstr(root, "user") ? jstr(root, "user") : "");
  snprintf(e->device_id, sizeof e->device_id, "%s", jstr(root, "device_id") ? jstr(root, "device_id") : "");
  int64_t reg_id, next_id, spk_id;
  if (!jint(root, "registration_id", 0, UINT32_MAX, 0, &reg_id) || !jint(root, "next_prekey_id", 0, UINT32_MAX, 1, &next_id) ||
      !jint(root, "signed_prekey_id", 0, UINT32_MAX, 0, &spk_id))
    goto bad;
  e->registration_id = (uint32_t)reg_id;
  e->next_prekey_id = (uint32_t)next_id;
  e->signed_prekey_id = (uint32_t)spk_id;
  if (cJSON_GetObjectItemCaseSensitive(root, "identity")) {
    uint8_t *p;
    size_t n;
    if (decode_b64_field(root, "identity", &p, &n) < 0) goto bad;
    int r = ratchet_identity_key_pair_deserialize(&e->identity, p, n, e->ctx);
    memset(p, 0, n);
    tern_free(p);
    if (r < 0) goto bad;
  }
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "items"), *o;
  cJSON_ArrayForEach(o, arr) {
    item_kind k = jstr(o, "k") ? kind_of(jstr(o, "k")) : 0;
    if (!k) goto bad;
    item *it = add_item(e, k);
    if (jstr(o, "u")) it->user = tern_strdup(jstr(o, "u"));
    if (jstr(o, "s")) it->str = tern_strdup(jstr(o, "s"));
    if (jstr(o, "m")) it->mime = tern_strdup(jstr(o, "m"));
    if (!jint(o, "n", -JINT_MAX, JINT_MAX, 0, &it->num)) goto bad;
    it->flag = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "f"));
    if (cJSON_GetObjectItemCaseSensitive(o, "d") && decode_b64_field(o, "d", &it->data, &it->len) < 0) goto bad;
  }
  cJSON_Delete(root);
  note_file(e);
  return 0;
bad:
  cJSON_Delete(root);
  seterr(err, errcap, "%s is not a tern E2E state file", path);
  return rc;
}

/* ---- the library's stores, on our items ---- */

/* The local integer of (user, device_id), made when create is set: 0 when unknown. */
static int32_t addr_num(tern_e2e *e, const char *user, const char *device_id, bool create) {
  int32_t max = 0;
  for (size_t i = 0; i < e->n; i++) {
    item *it = &e->items[i];
    if (it->kind != IT_ADDR) continue;
    if (strcmp(it->user, user) == 0 && strcmp(it->str, device_id) == 0) return (int32_t)it->num;
    if (it->num > max) max = (int32_t)it->num;
  }
  if (!create) return 0;
  item *it = add_item(e, IT_ADDR);
  it->user = tern_strdup(user);
  it->str = tern_strdup(device_id);
  it->num = max + 1;
  return (int32_t)it->num;
}

static int st_load_session(signal_buffer **record, signal_buffer **user_record, const signal_protocol_address *a,
                           void *ud) {
  item *it = find_item(ud, IT_SESSION, a->name, a->name_len, a->device_id);
  if (!it) return 0;
  *record = signal_buffer_create(it->data, it->len);
  *user_record = NULL;
  return *record ? 1 : SG_ERR_NOMEM;
}

static int st_sub_devices(signal_int_list **sessions, const char *name, size_t len, void *ud) {
  tern_e2e *e = ud;
  signal_int_list *l = signal_int_list_alloc();
  if (!l) return SG_ERR_NOMEM;
  int n = 0;
  for (size_t i = 0; i < e->n; i++)
    if (e->items[i].kind == IT_SESSION && name_is(e->items[i].user, name, len)) {
      signal_int_list_push_back(l, (int)e->items[i].num);
      n++;
    }
  *sessions = l;
  return n;
}

static int st_store_session(const signal_protocol_address *a, uint8_t *record, size_t len, uint8_t *user_record,
                            size_t user_len, void *ud) {
  tern_e2e *e = ud;
  item *it = find_item(e, IT_SESSION, a->name, a->name_len, a->device_id);
  if (!it) {
    it = add_item(e, IT_SESSION);
    it->user = tern_strndup(a->name, a->name_len);
    it->num = a->device_id;
  }
  set_data(it, record, len);
  return 0;
}

static int st_contains_session(const signal_protocol_address *a, void *ud) {
  return find_item(ud, IT_SESSION, a->name, a->name_len, a->device_id) != NULL;
}

static int st_delete_session(const signal_protocol_address *a, void *ud) {
  item *it = find_item(ud, IT_SESSION, a->name, a->name_len, a->device_id);
  if (!it) return 0;
  drop_item(ud, it);
  return 1;
}

static int st_delete_all_sessions(const char *name, size_t len, void *ud) {
  tern_e2e *e = ud;
  int n = 0;
  for (size_t i = e->n; i-- > 0;)
    if (e->items[i].kind == IT_SESSION && name_is(e->items[i].user, name, len)) {
      drop_item(e, &e->items[i]);
      n++;
    }
  return n;
}

/* Prekeys and signed prekeys are both records numbered by key id; libsignal wants a table of
 * four callbacks for each kind, which are these four with the kind filled in. */
static int load_numbered(item_kind kind, signal_buffer **record, uint32_t id, void *ud) {
  item *it = find_item(ud, kind, NULL, 0, id);
  if (!it) return SG_ERR_INVALID_KEY_ID;
  *record = signal_buffer_create(it->data, it->len);
  return *record ? SG_SUCCESS : SG_ERR_NOMEM;
}

static int store_numbered(item_kind kind, uint32_t id, uint8_t *record, size_t len, void *ud) {
  item *it = find_item(ud, kind, NULL, 0, id);
  if (!it) {
    it = add_item(ud, kind);
    it->num = id;
  }
  set_data(it, record, len);
  return 0;
}

static int remove_numbered(item_kind kind, uint32_t id, void *ud) {
  item *it = find_item(ud, kind, NULL, 0, id);
  if (it) drop_item(ud, it);
  return 0;
}

static int st_load_prekey(signal_buffer **record, uint32_t id, void *ud) { return load_numbered(IT_PREKEY, record, id, ud); }
static int st_store_prekey(uint32_t id, uint8_t *record, size_t len, void *ud) {
  return store_numbered(IT_PREKEY, id, record, len, ud);
}
static int st_contains_prekey(uint32_t id, void *ud) { return find_item(ud, IT_PREKEY, NULL, 0, id) != NULL; }
static int st_remove_prekey(uint32_t id, void *ud) { return remove_numbered(IT_PREKEY, id, ud); }

static int st_load_signed(signal_buffer **record, uint32_t id, void *ud) { return load_numbered(IT_SIGNED, record, id, ud); }
static int st_store_signed(uint32_t id, uint8_t *record, size_t len, void *ud) {
  return store_numbered(IT_SIGNED, id, record, len, ud);
}
static int st_contains_signed(uint32_t id, void *ud) { return find_item(ud, IT_SIGNED, NULL, 0, id) != NULL; }
static int st_remove_signed(uint32_t id, void *ud) { return remove_numbered(IT_SIGNED, id, ud); }

static int st_identity_pair(signal_buffer **pub, signal_buffer **priv, void *ud) {
  tern_e2e *e = ud;
  if (!e->identity) return SG_ERR_INVALID_KEY;
  int rc = ec_public_key_serialize(pub, ratchet_identity_key_pair_get_public(e->identity));
  if (rc < 0) return rc;
  rc = ec_private_key_serialize(priv, ratchet_identity_key_pair_get_private(e->identity));
  if (rc < 0) {
    signal_buffer_free(*pub);
    *pub = NULL;
  }
  return rc;
}

static int st_registration_id(void *ud, uint32_t *id) {
  *id = ((tern_e2e *)ud)->registration_id;
  return 0;
}

static void note_change(tern_e2e *e, tern_e2e_change c) {
  if (c > e->change) e->change = c;
}

/* Records a peer device's identity, and what it changes: the warning line comes from here. */
static int st_save_identity(const signal_protocol_address *a, uint8_t *key, size_t len, void *ud) {
  tern_e2e *e = ud;
  item *it = find_item(e, IT_IDENTITY, a->name, a->name_len, a->device_id);
  if (!key) {
    if (it) drop_item(e, it);
    return 0;
  }
  if (it) {
    if (it->len != len || memcmp(it->data, key, len) != 0) note_change(e, TERN_E2E_KEY_CHANGED);
  } else {
    bool known = false;
    for (size_t i = 0; i < e->n && !known; i++)
      known = e->items[i].kind == IT_IDENTITY && name_is(e->items[i].user, a->name, a->name_len);
    note_change(e, known ? TERN_E2E_NEW_DEVICE : TERN_E2E_FIRST);
    it = add_item(e, IT_IDENTITY);
    it->user = tern_strndup(a->name, a->name_len);
    it->num = a->device_id;
  }
  set_data(it, key, len);
  return 0;
}

/* Trust on first use, as Signal's clients do: a new or changed key is accepted and shown to
 * the user (the warning line, the safety number), not refused. */
static int st_is_trusted(const signal_protocol_address *a, uint8_t *key, size_t len, void *ud) { return 1; }

/* ---- open, close, init ---- */

static signal_context *new_context(void *ud) {
  signal_context *ctx = NULL;
  if (signal_context_create(&ctx, ud) < 0) return NULL;
  signal_crypto_provider p;
  tern_e2e_provider(&p);
  signal_context_set_crypto_provider(ctx, &p);
  return ctx;
}

static int mkdir_p(const char *dir) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST) return -errno;
    *p = '/';
  }
  if (mkdir(tmp, 0700) < 0 && errno != EEXIST) return -errno;
  /* An existing directory keeps its mode unless it is ours to tighten. */
  struct stat sb;
  if (stat(tmp, &sb) == 0 && (sb.st_mode & 077)) chmod(tmp, 0700);
  return 0;
}

int tern_e2e_open(const char *dir, tern_e2e **out, char *err, size_t errcap) {
  tern_client_json_hooks();
  if (strlen(dir) >= sizeof ((tern_e2e *)0)->dir - 32) {
    seterr(err, errcap, "state directory name too long");
    return -ENAMETOOLONG;
  }
  int rc = mkdir_p(dir);
  if (rc < 0) {
    seterr(err, errcap, "cannot create %s: %s", dir, strerror(-rc));
    return rc;
  }
  tern_e2e *e = tern_calloc(1, sizeof *e);
  snprintf(e->dir, sizeof e->dir, "%s", dir);
  char lock[4200];
  snprintf(lock, sizeof lock, "%s/lock", dir);
  e->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  e->next_prekey_id = 1;
  e->ctx = new_context(e);
  if (!e->ctx) {
    tern_free(e);
    seterr(err, errcap, "cannot start libsignal-protocol-c");
    return -ENOMEM;
  }
  signal_protocol_store_context_create(&e->store, e->ctx);
  signal_protocol_session_store ss = {.load_session_func = st_load_session,
                                      .get_sub_device_sessions_func = st_sub_devices,
                                      .store_session_func = st_store_session,
                                      .contains_session_func = st_contains_session,
                                      .delete_session_func = st_delete_session,
                                      .delete_all_sessions_func = st_delete_all_sessions,
                                      .user_data = e};
  signal_protocol_pre_key_store ps = {.load_pre_key = st_load_prekey,
                                      .store_pre_key = st_store_prekey,
                                      .contains_pre_key = st_contains_prekey,
                                      .remove_pre_key = st_remove_prekey,
                                      .user_data = e};
  signal_protocol_signed_pre_key_store sps = {.load_signed_pre_key = st_load_signed,
                                              .store_signed_pre_key = st_store_signed,
                                              .contains_signed_pre_key = st_contains_signed,
                                              .remove_signed_pre_key = st_remove_signed,
                                              .user_data = e};
  signal_protocol_identity_key_store is = {.get_identity_key_pair = st_identity_pair,
                                           .get_local_registration_id = st_registration_id,
                                           .save_identity = st_save_identity,
                                           .is_trusted_identity = st_is_trusted,
                                           .user_data = e};
  signal_protocol_store_context_set_session_store(e->store, &ss);
  signal_protocol_store_context_set_pre_key_store(e->store, &ps);
  signal_protocol_store_context_set_signed_pre_key_store(e->store, &sps);
  signal_protocol_store_context_set_identity_key_store(e->store, &is);
  if ((rc = load(e, err, errcap)) < 0) {
    tern_e2e_close(e);
    return rc;
  }
  *out = e;
  return 0;
}

static void clear_items(tern_e2e *e) {
  for (size_t i = 0; i < e->n; i++) item_clear(&e->items[i]);
  e->n = 0;
}

void tern_e2e_close(tern_e2e *e) {
  if (!e) return;
  clear_items(e);
  tern_free(e->items);
  SIGNAL_UNREF(e->identity);
  if (e->lock_fd >= 0) close(e->lock_fd);
  if (e->store) signal_protocol_store_context_destroy(e->store);
  if (e->ctx) signal_context_destroy(e->ctx);
  memset(e, 0, sizeof *e);
  tern_free(e);
}

bool tern_e2e_has_identity(const tern_e2e *e) { return e->identity != NULL; }
void tern_e2e_set_fsync(tern_e2e *e, bool on) { e->no_fsync = !on; }
const char *tern_e2e_user(const tern_e2e *e) { return e->user; }
const char *tern_e2e_device_id(const tern_e2e *e) { return e->device_id; }
uint32_t tern_e2e_registration_id(const tern_e2e *e) { return e->registration_id; }

static void pub_b64(const ec_public_key *k, tern_buf *out) {
  signal_buffer *b = NULL;
  if (ec_public_key_serialize(&b, k) < 0) return;
  tern_e2e_b64_encode(signal_buffer_data(b), signal_buffer_len(b), out);
  signal_buffer_free(b);
}

void tern_e2e_identity_b64(const tern_e2e *e, char *out, size_t cap) {
  tern_buf b = {0};
  if (e->identity) pub_b64(ratchet_identity_key_pair_get_public(e->identity), &b);
  snprintf(out, cap, "%s", b.len ? tern_buf_cstr(&b) : "");
  tern_buf_free(&b);
}

/* Makes n one-time prekeys from next_prekey_id on, stored unpublished. Key ids wrap within
 * 1..16777215 (PROTOCOL.md 11). */
static int make_prekeys(tern_e2e *e, size_t n) {
  for (size_t i = 0; i < n; i++) {
    signal_protocol_key_helper_pre_key_list_node *head = NULL;
    uint32_t id = e->next_prekey_id;
    if (id < 1 || id > 16777215) id = 1;
    int rc = signal_protocol_key_helper_generate_pre_keys(&head, id, 1, e->ctx);
    if (rc < 0) return -EIO;
    session_pre_key *pk = signal_protocol_key_helper_key_list_element(head);
    signal_buffer *b = NULL;
    rc = session_pre_key_serialize(&b, pk);
    if (rc == 0) {
      item *it = find_item(e, IT_PREKEY, NULL, 0, id);
      if (!it) it = add_item(e, IT_PREKEY);
      it->num = id;
      it->flag = false;
      set_data(it, signal_buffer_data(b), signal_buffer_len(b));
      signal_buffer_bzero_free(b);
    }
    signal_protocol_key_helper_key_list_free(head);
    if (rc < 0) return -EIO;
    e->next_prekey_id = id + 1;
  }
  return 0;
}

static int init_impl(tern_e2e *e, const char *user, const char *device_id) {
  clear_items(e);
  SIGNAL_UNREF(e->identity);
  snprintf(e->user, sizeof e->user, "%s", user);
  snprintf(e->device_id, sizeof e->device_id, "%s", device_id);
  if (signal_protocol_key_helper_generate_identity_key_pair(&e->identity, e->ctx) < 0) return -EIO;
  /* 1-16380: the library's range without the extended one is 1..16380. */
  if (signal_protocol_key_helper_generate_registration_id(&e->registration_id, 0, e->ctx) < 0) return -EIO;
  if (e->registration_id < 1 || e->registration_id > 16380) e->registration_id = 1 + e->registration_id % 16380;
  session_signed_pre_key *spk = NULL;
  e->signed_prekey_id = 1;
  if (signal_protocol_key_helper_generate_signed_pre_key(&spk, e->identity, e->signed_prekey_id,
                                                         (uint64_t)tern_now_ms(), e->ctx) < 0)
    return -EIO;
  signal_buffer *b = NULL;
  int rc = session_signed_pre_key_serialize(&b, spk);
  SIGNAL_UNREF(spk);
  if (rc < 0) return -EIO;
  item *it = add_item(e, IT_SIGNED);
  it->num = e->signed_prekey_id;
  set_data(it, signal_buffer_data(b), signal_buffer_len(b));
  signal_buffer_bzero_free(b);
  /* Random start: ids of an earlier device of the same user never collide in a peer's view. */
  uint32_t start = 0;
  tern_random(&start, sizeof start);
  e->next_prekey_id = 1 + start % 16000000;
  if ((rc = make_prekeys(e, TERN_E2E_PREKEY_BATCH)) < 0) return rc;
  return save(e);
}

static void add_pub_of_pair(cJSON *o, const char *name, const ec_key_pair *kp) {
  tern_buf b = {0};
  pub_b64(ec_key_pair_get_public(kp), &b);
  cJSON_AddStringToObject(o, name, b.len ? tern_buf_cstr(&b) : "");
  tern_buf_free(&b);
}

static int keys_body_impl(tern_e2e *e, bool full, size_t n_new, tern_buf *out) {
  if (!e->identity) return -ENOENT;
  if (!full) {
    if (n_new > TERN_E2E_PREKEY_BATCH) n_new = TERN_E2E_PREKEY_BATCH;
    int rc = make_prekeys(e, n_new);
    if (rc < 0) return rc;
  }
  cJSON *root = cJSON_CreateObject();
  if (full) {
    char ik[64];
    tern_e2e_identity_b64(e, ik, sizeof ik);
    cJSON_AddStringToObject(root, "identity_key", ik);
    cJSON_AddNumberToObject(root, "registration_id", e->registration_id);
    item *it = find_item(e, IT_SIGNED, NULL, 0, e->signed_prekey_id);
    session_signed_pre_key *spk = NULL;
    if (!it || session_signed_pre_key_deserialize(&spk, it->data, it->len, e->ctx) < 0) {
      cJSON_Delete(root);
      return -EIO;
    }
    cJSON *s = cJSON_AddObjectToObject(root, "signed_prekey");
    cJSON_AddNumberToObject(s, "key_id", e->signed_prekey_id);
    add_pub_of_pair(s, "public_key", session_signed_pre_key_get_key_pair(spk));
    add_b64(s, "signature", session_signed_pre_key_get_signature(spk), session_signed_pre_key_get_signature_len(spk));
    SIGNAL_UNREF(spk);
  }
  cJSON *arr = cJSON_AddArrayToObject(root, "one_time_prekeys");
  size_t listed = 0;
  for (size_t i = 0; i < e->n && listed < TERN_E2E_PREKEY_BATCH; i++) {
    item *it = &e->items[i];
    if (it->kind != IT_PREKEY || it->flag) continue;
    session_pre_key *pk = NULL;
    if (session_pre_key_deserialize(&pk, it->data, it->len, e->ctx) < 0) continue;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "key_id", (double)it->num);
    add_pub_of_pair(o, "public_key", session_pre_key_get_key_pair(pk));
    SIGNAL_UNREF(pk);
    cJSON_AddItemToArray(arr, o);
    /* Marked as published when the body is made: a failed PUT republishes nothing, and the
     * next top-up makes fresh ones; the unpublished keys cost a few bytes. */
    it->flag = true;
    listed++;
  }
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  tern_buf_puts(out, text);
  cJSON_free(text);
  return save(e);
}

/* ---- peers ---- */

static int decode_key(tern_e2e *e, const char *b64, ec_public_key **out) {
  if (!b64) return -EBADMSG;
  tern_buf b = {0};
  int rc = tern_e2e_b64_decode(b64, strlen(b64), &b);
  if (rc == 0 && b.len != TERN_E2E_KEY_LEN) rc = -EBADMSG;
  if (rc == 0 && curve_decode_point(out, (uint8_t *)b.data, b.len, e->ctx) < 0) rc = -EBADMSG;
  tern_buf_free(&b);
  return rc;
}

static signal_protocol_address make_addr(const char *user, int32_t num) {
  signal_protocol_address a = {.name = user, .name_len = strlen(user), .device_id = num};
  return a;
}

static int process_bundle_impl(tern_e2e *e, const char *user, const cJSON *dev, tern_e2e_change *change, char *err,
                            size_t errcap) {
  if (change) *change = TERN_E2E_SAME;
  const char *device_id = jstr(dev, "device_id");
  const cJSON *spk = cJSON_GetObjectItemCaseSensitive(dev, "signed_prekey");
  const cJSON *otk = cJSON_GetObjectItemCaseSensitive(dev, "one_time_prekey");
  double reg = jnum(dev, "registration_id", -1);
  if (!device_id || !*device_id || !cJSON_IsObject(spk) || reg < 0 || reg > 0xffffffffu) {
    seterr(err, errcap, "a key bundle of %s lacks device_id, registration_id or signed_prekey", user);
    return -EBADMSG;
  }
  ec_public_key *ik = NULL, *spub = NULL, *opub = NULL;
  tern_buf sig = {0};
  session_pre_key_bundle *bundle = NULL;
  session_builder *builder = NULL;
  int rc = -EBADMSG;
  const char *sig_b64 = jstr(spk, "signature");
  if (decode_key(e, jstr(dev, "identity_key"), &ik) < 0 || decode_key(e, jstr(spk, "public_key"), &spub) < 0 ||
      !sig_b64 || tern_e2e_b64_decode(sig_b64, strlen(sig_b64), &sig) < 0 || sig.len != 64) {
    seterr(err, errcap, "a key bundle of %s (device %s) has a malformed key or signature", user, device_id);
    goto out;
  }
  uint32_t otk_id = 0;
  if (cJSON_IsObject(otk)) {
    if (decode_key(e, jstr(otk, "public_key"), &opub) < 0) {
      seterr(err, errcap, "a one-time prekey of %s (device %s) is malformed", user, device_id);
      goto out;
    }
    int64_t id;
    if (!jint(otk, "key_id", 0, UINT32_MAX, 0, &id)) {
      seterr(err, errcap, "a one-time prekey of %s (device %s) has a key_id that is not a 32-bit id", user, device_id);
      goto out;
    }
    otk_id = (uint32_t)id;
  }
  int64_t spk_id;
  if (!jint(spk, "key_id", 0, UINT32_MAX, 0, &spk_id)) {
    seterr(err, errcap, "the signed prekey of %s (device %s) has a key_id that is not a 32-bit id", user, device_id);
    goto out;
  }
  int32_t num = addr_num(e, user, device_id, true);
  if (session_pre_key_bundle_create(&bundle, (uint32_t)reg, num, otk_id, opub, (uint32_t)spk_id, spub,
                                    (uint8_t *)sig.data, sig.len, ik) < 0) {
    seterr(err, errcap, "cannot read the key bundle of %s (device %s)", user, device_id);
    goto out;
  }
  signal_protocol_address a = make_addr(user, num);
  session_builder_create(&builder, e->store, &a, e->ctx);
  e->change = TERN_E2E_SAME;
  int r = session_builder_process_pre_key_bundle(builder, bundle);
  if (r < 0) {
    seterr(err, errcap, "the key bundle of %s (device %s) does not verify (%d)", user, device_id, r);
    goto out;
  }
  if (change) *change = e->change;
  rc = save(e);
  if (rc < 0) seterr(err, errcap, "cannot save the E2E state in %s: %s", e->dir, strerror(-rc));
out:
  if (builder) session_builder_free(builder);
  SIGNAL_UNREF(bundle);
  SIGNAL_UNREF(ik);
  SIGNAL_UNREF(spub);
  SIGNAL_UNREF(opub);
  tern_buf_free(&sig);
  return rc;
}

static bool has_session_impl(tern_e2e *e, const char *user, const char *device_id) {
  int32_t num = addr_num(e, user, device_id, false);
  return num && find_item(e, IT_SESSION, user, strlen(user), num);
}

static void forget_impl(tern_e2e *e, const char *user, const char *device_id) {
  int32_t num = addr_num(e, user, device_id, false);
  if (!num) return;
  item *it;
  while ((it = find_item(e, IT_SESSION, user, strlen(user), num))) drop_item(e, it);
  while ((it = find_item(e, IT_IDENTITY, user, strlen(user), num))) drop_item(e, it);
  save(e);
}

static size_t devices_impl(tern_e2e *e, const char *user, char ***ids) {
  size_t n = 0;
  char **v = tern_calloc(e->n + 1, sizeof *v);
  for (size_t i = 0; i < e->n; i++) {
    item *it = &e->items[i];
    if (it->kind != IT_ADDR || strcmp(it->user, user) != 0) continue;
    if (find_item(e, IT_SESSION, user, strlen(user), it->num)) v[n++] = tern_strdup(it->str);
  }
  *ids = v;
  return n;
}

void tern_e2e_strv_free(char **v, size_t n) {
  if (!v) return;
  for (size_t i = 0; i < n; i++) tern_free(v[i]);
  tern_free(v);
}

static int encrypt_impl(tern_e2e *e, const char *user, const char *device_id, const void *pt, size_t len, int *type,
                     tern_buf *out) {
  int32_t num = addr_num(e, user, device_id, false);
  if (!num || !find_item(e, IT_SESSION, user, strlen(user), num)) return -ENOENT;
  signal_protocol_address a = make_addr(user, num);
  session_cipher *cipher = NULL;
  if (session_cipher_create(&cipher, e->store, &a, e->ctx) < 0) return -EIO;
  ciphertext_message *m = NULL;
  int rc = session_cipher_encrypt(cipher, pt, len, &m);
  session_cipher_free(cipher);
  if (rc < 0) return rc == SG_ERR_NO_SESSION ? -ENOENT : -EIO;
  signal_buffer *ser = ciphertext_message_get_serialized(m);
  *type = ciphertext_message_get_type(m) == CIPHERTEXT_PREKEY_TYPE ? TERN_E2E_CT_PREKEY : TERN_E2E_CT_MESSAGE;
  tern_e2e_b64_encode(signal_buffer_data(ser), signal_buffer_len(ser), out);
  SIGNAL_UNREF(m);
  return save(e);
}

static const char *sg_reason(int rc) {
  switch (rc) {
    case SG_ERR_DUPLICATE_MESSAGE: return "a message already decrypted";
    case SG_ERR_INVALID_MAC: return "bad MAC";
    case SG_ERR_NO_SESSION: return "no session with that device";
    case SG_ERR_INVALID_KEY_ID: return "a prekey we no longer have";
    case SG_ERR_INVALID_MESSAGE: return "not a valid message";
    case SG_ERR_INVALID_VERSION: return "an unknown message version";
    case SG_ERR_LEGACY_MESSAGE: return "a legacy message";
    case SG_ERR_INVALID_PROTO_BUF: return "not a Signal message";
    case SG_ERR_INVALID_KEY: return "an invalid key";
    case SG_ERR_UNTRUSTED_IDENTITY: return "an untrusted identity";
    default: return "cannot decrypt";
  }
}

static int decrypt_impl(tern_e2e *e, const char *user, const char *device_id, int type, const char *b64, size_t b64_len,
                     tern_buf *out, tern_e2e_change *change, char *err, size_t errcap) {
  if (change) *change = TERN_E2E_SAME;
  tern_buf raw = {0};
  if (tern_e2e_b64_decode(b64, b64_len, &raw) < 0 || raw.len == 0) {
    tern_buf_free(&raw);
    seterr(err, errcap, "the ciphertext is not base64");
    return -EBADMSG;
  }
  /* A message from a device we have no session with and that is no prekey message cannot be
   * read: do not hand out an address for it. */
  int32_t num = addr_num(e, user, device_id, type == TERN_E2E_CT_PREKEY);
  if (!num) {
    tern_buf_free(&raw);
    seterr(err, errcap, "no session with that device");
    return -EBADMSG;
  }
  signal_protocol_address a = make_addr(user, num);
  session_cipher *cipher = NULL;
  if (session_cipher_create(&cipher, e->store, &a, e->ctx) < 0) {
    tern_buf_free(&raw);
    return -EIO;
  }
  signal_buffer *pt = NULL;
  int rc;
  e->change = TERN_E2E_SAME;
  if (type == TERN_E2E_CT_PREKEY) {
    pre_key_signal_message *m = NULL;
    rc = pre_key_signal_message_deserialize(&m, (uint8_t *)raw.data, raw.len, e->ctx);
    if (rc == 0) rc = session_cipher_decrypt_pre_key_signal_message(cipher, m, NULL, &pt);
    SIGNAL_UNREF(m);
  } else {
    signal_message *m = NULL;
    rc = signal_message_deserialize(&m, (uint8_t *)raw.data, raw.len, e->ctx);
    if (rc == 0) rc = session_cipher_decrypt_signal_message(cipher, m, NULL, &pt);
    SIGNAL_UNREF(m);
  }
  session_cipher_free(cipher);
  tern_buf_free(&raw);
  if (rc < 0) {
    seterr(err, errcap, "%s (%d)", sg_reason(rc), rc);
    save(e); /* a failed prekey message may still have stored nothing; saving is harmless */
    return rc == SG_ERR_DUPLICATE_MESSAGE ? -EALREADY : -EBADMSG;
  }
  if (change) *change = e->change;
  tern_buf_append(out, signal_buffer_data(pt), signal_buffer_len(pt));
  signal_buffer_bzero_free(pt);
  rc = save(e);
  if (rc < 0) seterr(err, errcap, "cannot save the E2E state in %s: %s", e->dir, strerror(-rc));
  return rc;
}

/* ---- media keys ---- */

static void remember_media_impl(tern_e2e *e, const tern_e2e_media *m) {
  item *it = NULL;
  for (size_t i = 0; i < e->n && !it; i++)
    if (e->items[i].kind == IT_MEDIA && strcmp(e->items[i].user, m->media_id) == 0) it = &e->items[i];
  if (!it) {
    it = add_item(e, IT_MEDIA);
    it->user = tern_strdup(m->media_id);
  }
  tern_free(it->str);
  tern_free(it->mime);
  it->str = tern_strdup(m->sha256);
  it->mime = tern_strdup(m->mime);
  it->num = m->size;
  uint8_t kiv[44];
  memcpy(kiv, m->key, 32);
  memcpy(kiv + 32, m->iv, 12);
  set_data(it, kiv, sizeof kiv);
  memset(kiv, 0, sizeof kiv);
  save(e);
}

static int find_media_impl(tern_e2e *e, const char *media_id, tern_e2e_media *out) {
  for (size_t i = 0; i < e->n; i++) {
    item *it = &e->items[i];
    if (it->kind != IT_MEDIA || strcmp(it->user, media_id) != 0 || it->len != 44) continue;
    memset(out, 0, sizeof *out);
    snprintf(out->media_id, sizeof out->media_id, "%s", it->user);
    snprintf(out->sha256, sizeof out->sha256, "%s", it->str ? it->str : "");
    snprintf(out->mime, sizeof out->mime, "%s", it->mime ? it->mime : "");
    out->size = it->num;
    out->width = out->height = -1;
    memcpy(out->key, it->data, 32);
    memcpy(out->iv, it->data + 32, 12);
    return 0;
  }
  return -ENOENT;
}

/* ---- messages sent, for a resend after decrypt_error ---- */

#define SENT_KEEP 100 /* the newest messages kept; a decrypt_error comes soon after a send */

static void remember_sent_impl(tern_e2e *e, const char *msg_id, const char *peer, bool group, const void *inner,
                            size_t n) {
  size_t count = 0;
  item *oldest = NULL;
  for (size_t i = 0; i < e->n; i++)
    if (e->items[i].kind == IT_SENT) {
      if (!oldest) oldest = &e->items[i];
      count++;
    }
  if (count >= SENT_KEEP && oldest) drop_item(e, oldest);
  item *it = add_item(e, IT_SENT);
  it->user = tern_strdup(msg_id);
  it->str = tern_strdup(peer);
  it->flag = group;
  set_data(it, inner, n);
  save(e);
}

static int find_sent_impl(tern_e2e *e, const char *msg_id, char *peer, size_t cap, bool *group, tern_buf *inner) {
  for (size_t i = 0; i < e->n; i++) {
    item *it = &e->items[i];
    if (it->kind != IT_SENT || strcmp(it->user, msg_id) != 0) continue;
    snprintf(peer, cap, "%s", it->str ? it->str : "");
    *group = it->flag;
    tern_buf_append(inner, it->data, it->len);
    return 0;
  }
  return -ENOENT;
}

/* ---- safety numbers ---- */

static ec_public_key_list *key_list(signal_context *ctx, const uint8_t (*keys)[TERN_E2E_KEY_LEN], size_t n) {
  ec_public_key_list *l = ec_public_key_list_alloc();
  for (size_t i = 0; l && i < n; i++) {
    ec_public_key *k = NULL;
    if (curve_decode_point(&k, keys[i], TERN_E2E_KEY_LEN, ctx) < 0) {
      ec_public_key_list_free(l);
      return NULL;
    }
    ec_public_key_list_push_back(l, k);
    SIGNAL_UNREF(k); /* the list holds its own reference */
  }
  return l;
}

int tern_e2e_safety_number(const char *local_user, const uint8_t (*local_keys)[TERN_E2E_KEY_LEN], size_t nlocal,
                           const char *remote_user, const uint8_t (*remote_keys)[TERN_E2E_KEY_LEN], size_t nremote,
                           char out[TERN_E2E_SAFETY_DIGITS + 1]) {
  out[0] = 0;
  if (!nlocal || !nremote) return -EINVAL;
  signal_context *ctx = new_context(NULL);
  if (!ctx) return -ENOMEM;
  ec_public_key_list *l = key_list(ctx, local_keys, nlocal), *r = key_list(ctx, remote_keys, nremote);
  fingerprint_generator *g = NULL;
  fingerprint *fp = NULL;
  int rc = -EINVAL;
  /* The 60 digits do not depend on the scannable version (only the QR form does); 1 is the
   * newest this library writes. */
  if (l && r && fingerprint_generator_create(&g, TERN_E2E_SAFETY_ITERATIONS, 1, ctx) == 0 &&
      fingerprint_generator_create_for_list(g, local_user, l, remote_user, r, &fp) == 0) {
    const char *text = displayable_fingerprint_text(fingerprint_get_displayable(fp));
    if (text && strlen(text) == TERN_E2E_SAFETY_DIGITS) {
      memcpy(out, text, TERN_E2E_SAFETY_DIGITS + 1);
      rc = 0;
    }
  }
  SIGNAL_UNREF(fp);
  if (g) fingerprint_generator_free(g);
  if (l) ec_public_key_list_free(l);
  if (r) ec_public_key_list_free(r);
  signal_context_destroy(ctx);
  return rc;
}

void tern_e2e_safety_format(const char *digits, char *out, size_t cap) {
  tern_buf b = {0};
  size_t n = strlen(digits);
  for (size_t i = 0; i < n; i += 5) tern_buf_printf(&b, "%s%.5s", i ? " " : "", digits + i);
  snprintf(out, cap, "%s", b.len ? tern_buf_cstr(&b) : "");
  tern_buf_free(&b);
}

size_t tern_e2e_directory_keys(const cJSON *answer, uint8_t (**keys)[TERN_E2E_KEY_LEN]) {
  const cJSON *devs = cJSON_GetObjectItemCaseSensitive(answer, "devices"), *d;
  size_t n = 0, cap = (size_t)cJSON_GetArraySize(devs);
  *keys = tern_calloc(cap ? cap : 1, TERN_E2E_KEY_LEN);
  cJSON_ArrayForEach(d, devs) {
    const char *ik = jstr(d, "identity_key");
    tern_buf b = {0};
    if (ik && tern_e2e_b64_decode(ik, strlen(ik), &b) == 0 && b.len == TERN_E2E_KEY_LEN && n < cap)
      memcpy((*keys)[n++], b.data, TERN_E2E_KEY_LEN);
    tern_buf_free(&b);
  }
  return n;
}

/* ---- the inner plaintext ---- */

void tern_e2e_inner_encode(const tern_e2e_inner *in, tern_buf *out) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "v", 1);
  if (in->body) cJSON_AddStringToObject(o, "body", in->body);
  if (in->has_media) {
    const tern_e2e_media *m = &in->media;
    cJSON *mo = cJSON_AddObjectToObject(o, "media");
    cJSON_AddStringToObject(mo, "media_id", m->media_id);
    add_b64(mo, "key", m->key, sizeof m->key);
    add_b64(mo, "iv", m->iv, sizeof m->iv);
    cJSON_AddStringToObject(mo, "sha256", m->sha256);
    cJSON_AddStringToObject(mo, "mime", m->mime);
    cJSON_AddNumberToObject(mo, "size", (double)m->size);
    if (m->width >= 0) cJSON_AddNumberToObject(mo, "width", (double)m->width);
    if (m->height >= 0) cJSON_AddNumberToObject(mo, "height", (double)m->height);
    if (m->thumb) cJSON_AddStringToObject(mo, "thumb", m->thumb);
  }
  if (in->reply_to) cJSON_AddStringToObject(o, "reply_to", in->reply_to);
  if (in->reaction_to) {
    cJSON *r = cJSON_AddObjectToObject(o, "reaction");
    cJSON_AddStringToObject(r, "to", in->reaction_to);
    cJSON_AddStringToObject(r, "emoji", in->reaction_emoji ? in->reaction_emoji : "");
  }
  if (in->edit_of) {
    cJSON *ed = cJSON_AddObjectToObject(o, "edit");
    cJSON_AddStringToObject(ed, "of", in->edit_of);
  }
  if (in->group_id) cJSON_AddStringToObject(o, "group_id", in->group_id);
  if (in->resend_of) cJSON_AddStringToObject(o, "resend_of", in->resend_of);
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  size_t n = strlen(text);
  tern_buf_append(out, text, n);
  /* Padding hides the exact length; spaces keep it one valid JSON text. */
  size_t padded = (n / TERN_E2E_PAD + 1) * TERN_E2E_PAD;
  for (size_t i = n; i < padded; i++) tern_buf_putc(out, ' ');
  cJSON_free(text);
}

static char *dup_str(const cJSON *o, const char *name) {
  const char *s = jstr(o, name);
  return s ? tern_strdup(s) : NULL;
}

int tern_e2e_inner_decode(const void *p, size_t n, tern_e2e_inner *out) {
  memset(out, 0, sizeof *out);
  if (!tern_utf8_valid(p, n)) return -EBADMSG;
  cJSON *o = cJSON_ParseWithLength(p, n);
  if (!cJSON_IsObject(o) || jnum(o, "v", 0) != 1) {
    cJSON_Delete(o);
    return -EBADMSG;
  }
  out->body = dup_str(o, "body");
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "media");
  int rc = 0;
  if (cJSON_IsObject(m)) {
    tern_e2e_media *md = &out->media;
    tern_buf k = {0}, iv = {0};
    const char *ks = jstr(m, "key"), *ivs = jstr(m, "iv"), *id = jstr(m, "media_id");
    const char *sha = jstr(m, "sha256"), *mime = jstr(m, "mime");
    int64_t size, width, height;
    /* A field longer than its place is refused, not cut: a cut could end inside a UTF-8
     * character, and the media would not be what the sender described. */
    bool fits = id && strlen(id) < sizeof md->media_id && (!sha || strlen(sha) < sizeof md->sha256) &&
                (!mime || strlen(mime) < sizeof md->mime);
    if (!fits || !ks || !ivs || tern_e2e_b64_decode(ks, strlen(ks), &k) < 0 || k.len != 32 ||
        tern_e2e_b64_decode(ivs, strlen(ivs), &iv) < 0 || iv.len != 12 || !jint(m, "size", -1, JINT_MAX, -1, &size) ||
        !jint(m, "width", -1, JINT_MAX, -1, &width) || !jint(m, "height", -1, JINT_MAX, -1, &height)) {
      rc = -EBADMSG;
    } else {
      out->has_media = true;
      snprintf(md->media_id, sizeof md->media_id, "%s", id);
      memcpy(md->key, k.data, 32);
      memcpy(md->iv, iv.data, 12);
      snprintf(md->sha256, sizeof md->sha256, "%s", sha ? sha : "");
      snprintf(md->mime, sizeof md->mime, "%s", mime ? mime : "application/octet-stream");
      md->size = size;
      md->width = width;
      md->height = height;
      md->thumb = dup_str(m, "thumb");
    }
    tern_buf_free(&k);
    tern_buf_free(&iv);
  }
  out->reply_to = dup_str(o, "reply_to");
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "reaction");
  if (cJSON_IsObject(r) && jstr(r, "to")) {
    out->reaction_to = dup_str(r, "to");
    out->reaction_emoji = tern_strdup(jstr(r, "emoji") ? jstr(r, "emoji") : "");
  }
  const cJSON *ed = cJSON_GetObjectItemCaseSensitive(o, "edit");
  if (cJSON_IsObject(ed)) out->edit_of = dup_str(ed, "of");
  out->group_id = dup_str(o, "group_id");
  out->resend_of = dup_str(o, "resend_of");
  cJSON_Delete(o);
  if (rc < 0) tern_e2e_inner_free(out);
  return rc;
}

void tern_e2e_inner_free(tern_e2e_inner *in) {
  tern_free(in->body);
  tern_free(in->media.thumb);
  tern_free(in->reply_to);
  tern_free(in->reaction_to);
  tern_free(in->reaction_emoji);
  tern_free(in->edit_of);
  tern_free(in->group_id);
  tern_free(in->resend_of);
  memset(in, 0, sizeof *in);
}

/* ---- the public calls: each one under the state lock, on a fresh view of the file ---- */

/* Several tern processes share a device's state (listen running while send sends): each
 * call takes the directory's lock and rereads the file when someone else replaced it, so
 * that no ratchet step is lost to a stale copy written back. */
static void enter(tern_e2e *e) {
  if (e->depth++) return;
  if (e->lock_fd >= 0) flock(e->lock_fd, LOCK_EX);
  char path[4200];
  tern_e2e_state_path(e->dir, path, sizeof path);
  struct stat sb;
  if (stat(path, &sb) < 0) return;
  if (sb.st_dev == e->seen_dev && sb.st_ino == e->seen_ino && sb.st_size == e->seen_size &&
      sb.st_mtim.tv_sec == e->seen_mtime.tv_sec && sb.st_mtim.tv_nsec == e->seen_mtime.tv_nsec)
    return;
  clear_items(e);
  SIGNAL_UNREF(e->identity);
  e->user[0] = e->device_id[0] = 0;
  load(e, NULL, 0);
}

static void leave(tern_e2e *e) {
  if (--e->depth == 0 && e->lock_fd >= 0) flock(e->lock_fd, LOCK_UN);
}

int tern_e2e_init(tern_e2e *e, const char *user, const char *device_id) {
  enter(e);
  int rc = init_impl(e, user, device_id);
  leave(e);
  return rc;
}

int tern_e2e_keys_body(tern_e2e *e, bool full, size_t n_new, tern_buf *out) {
  enter(e);
  int rc = keys_body_impl(e, full, n_new, out);
  leave(e);
  return rc;
}

int tern_e2e_process_bundle(tern_e2e *e, const char *user, const cJSON *dev, tern_e2e_change *change, char *err,
                            size_t errcap) {
  enter(e);
  int rc = process_bundle_impl(e, user, dev, change, err, errcap);
  leave(e);
  return rc;
}

bool tern_e2e_has_session(tern_e2e *e, const char *user, const char *device_id) {
  enter(e);
  bool rc = has_session_impl(e, user, device_id);
  leave(e);
  return rc;
}

void tern_e2e_forget(tern_e2e *e, const char *user, const char *device_id) {
  enter(e);
  forget_impl(e, user, device_id);
  leave(e);
}

size_t tern_e2e_devices(tern_e2e *e, const char *user, char ***ids) {
  enter(e);
  size_t rc = devices_impl(e, user, ids);
  leave(e);
  return rc;
}

int tern_e2e_encrypt(tern_e2e *e, const char *user, const char *device_id, const void *pt, size_t len, int *type,
                     tern_buf *out) {
  enter(e);
  int rc = encrypt_impl(e, user, device_id, pt, len, type, out);
  leave(e);
  return rc;
}

int tern_e2e_decrypt(tern_e2e *e, const char *user, const char *device_id, int type, const char *b64, size_t b64_len,
                     tern_buf *out, tern_e2e_change *change, char *err, size_t errcap) {
  enter(e);
  int rc = decrypt_impl(e, user, device_id, type, b64, b64_len, out, change, err, errcap);
  leave(e);
  return rc;
}

void tern_e2e_remember_media(tern_e2e *e, const tern_e2e_media *m) {
  enter(e);
  remember_media_impl(e, m);
  leave(e);
}

int tern_e2e_find_media(tern_e2e *e, const char *media_id, tern_e2e_media *out) {
  enter(e);
  int rc = find_media_impl(e, media_id, out);
  leave(e);
  return rc;
}

void tern_e2e_remember_sent(tern_e2e *e, const char *msg_id, const char *peer, bool group, const void *inner,
                            size_t n) {
  enter(e);
  remember_sent_impl(e, msg_id, peer, group, inner, n);
  leave(e);
}

int tern_e2e_find_sent(tern_e2e *e, const char *msg_id, char *peer, size_t cap, bool *group, tern_buf *inner) {
  enter(e);
  int rc = find_sent_impl(e, msg_id, peer, cap, group, inner);
  leave(e);
  return rc;
}
