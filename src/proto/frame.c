/* frame: client → server frames, both ways. The decoder first reads each field out of the
 * JSON tree with its JSON type checked (and every list counted against its limit before
 * anything is allocated for it), then hands the struct to the same tern_frame_check_*
 * function (frame_rules.c) that the encoder runs before it writes. So each frame's rules are
 * written once, and its keys once (the K_* names of frame_rules.h).
 *
 * The parse itself (one object, NUL escapes turned into 0xFF bytes that every check refuses)
 * is proto/wire.c's.
 */
#include "proto/frame.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "proto/frame_rules.h"
#include "proto/wire.h"

/* How much of an unknown type name goes into the error message. */
#define TYPE_NAME_SHOWN 32

static void error_reset(tern_frame_error *err) {
  err->code = NULL;
  err->message[0] = '\0';
  err->id[0] = '\0';
}

/* ---- decoding: reading fields out of the tree ---- */

/* The root object's members, indexed once per frame: a frame has a handful of members and the
 * decoder asks for twenty-odd keys, most of them absent; comparing lengths first makes an
 * absent key cost a few integer compares instead of a strcmp against every member. */
enum { ROOT_INDEX_MAX = 16 };
typedef struct root_member {
  size_t n;            /* key length */
  const cJSON *item;   /* the member (item->string is its key) */
} root_member;

typedef struct decoder {
  const cJSON *root;     /* the frame's object */
  tern_frame *f;         /* being filled */
  tern_frame_checker c;  /* its error is the caller's */
  root_member idx[ROOT_INDEX_MAX]; /* the root's members, first occurrence of each key */
  size_t nidx;           /* how many; SIZE_MAX when the root has more (then cJSON answers) */
} decoder;

#define DFAIL(d, ...) tern_frame_fail((d)->c.err, TERN_BAD_REQUEST, __VA_ARGS__)

static const cJSON *field(const cJSON *obj, const char *key) { return tern_wire_get(obj, key); }

static void index_root(decoder *d) {
  d->nidx = 0;
  for (const cJSON *it = d->root->child; it; it = it->next) {
    if (d->nidx == ROOT_INDEX_MAX) {
      d->nidx = SIZE_MAX;
      return;
    }
    d->idx[d->nidx++] = (root_member){it->string ? strlen(it->string) : 0, it};
  }
}

/* A member of the root: the same answer as field(d->root, key), with duplicate keys' first
 * occurrence winning as cJSON's lookup does. */
static const cJSON *root_field_n(const decoder *d, const char *key, size_t n) {
  if (d->nidx == SIZE_MAX) return field(d->root, key);
  for (size_t i = 0; i < d->nidx; i++) {
    const root_member *m = &d->idx[i];
    if (m->n == n && m->item->string && memcmp(m->item->string, key, n) == 0) return m->item;
  }
  return NULL;
}

static const cJSON *root_field(const decoder *d, const char *key) { return root_field_n(d, key, strlen(key)); }
/* For the K_ literals: their length is known at compile time. */
#define ROOT(d, k) root_field_n((d), (k), sizeof(k) - 1)

/* Lower-cases ASCII letters only: usernames are ASCII, and anything else must stay as the
 * client sent it so that error messages can quote it. */
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c; }

static char *lower_dup(const char *s, size_t n) {
  char *d = tern_malloc(n + 1);
  for (size_t i = 0; i < n; i++) d[i] = lower(s[i]);
  d[n] = '\0';
  return d;
}

static char *dup_str(const cJSON *it) { return tern_strdup(it->valuestring); }

/* An optional string field: absent or null leaves *out NULL; anything but a string fails. */
static int opt_str(decoder *d, const cJSON *obj, const char *key, const char *what, char **out) {
  const cJSON *it = obj == d->root ? root_field(d, key) : field(obj, key);
  if (!tern_wire_present(it)) return 0;
  if (!cJSON_IsString(it)) return DFAIL(d, "%s must be a string", what);
  *out = dup_str(it);
  return 0;
}

/* An optional object field: *out gets it, or NULL when absent or null. */
static int opt_obj(decoder *d, const char *key, const cJSON **out) {
  const cJSON *it = root_field(d, key);
  *out = NULL;
  if (!tern_wire_present(it)) return 0;
  if (!cJSON_IsObject(it)) return DFAIL(d, "%s must be an object", key);
  *out = it;
  return 0;
}

/* A required array field, counted against max (too_large) before anything is allocated. */
static int array_field(decoder *d, const cJSON *obj, const char *key, size_t max, const cJSON **arr, size_t *n) {
  const cJSON *it = obj == d->root ? root_field(d, key) : field(obj, key);
  if (!cJSON_IsArray(it)) return DFAIL(d, "%s must be an array", key);
  size_t k = 0;
  for (const cJSON *e = it->child; e; e = e->next) {
    if (++k > max) return tern_frame_check_count(&d->c, key, k, max);
  }
  *arr = it;
  *n = k;
  return 0;
}

/* Reads the username field `key` (to or peer): a string is required; it is lower-cased into
 * f->to_raw and, when it is a valid username, copied into *valid, else f->to_invalid is set. */
static int username_field(decoder *d, const char *key, char **valid) {
  const cJSON *it = root_field(d, key);
  if (!cJSON_IsString(it)) return DFAIL(d, "%s must be a string", key);
  const char *s = it->valuestring;
  size_t n = strlen(s);
  int rc = tern_frame_check_text(&d->c, key, s, n);
  if (rc) return rc;
  char norm[TERN_USERNAME_MAX + 1];
  d->f->to_raw = lower_dup(s, n);
  if (tern_username_normalize(s, n, norm)) {
    *valid = tern_memdup(norm, n + 1);
  } else {
    d->f->to_invalid = true;
  }
  return 0;
}

/* to or group_id (send, typing): a group_id that is there means the frame names a group; a
 * `to` beside it is the checks' business. */
static int target_fields(decoder *d) {
  tern_frame *f = d->f;
  int rc = d->c.v11 ? opt_str(d, d->root, K_GROUP_ID, K_GROUP_ID, &f->group_id) : 0;
  if (rc) return rc;
  if (!f->group_id) return username_field(d, K_TO, &f->to);
  if (tern_wire_present(ROOT(d, K_TO)))
    return DFAIL(d, "%s needs exactly one of to and group_id", f->type == TERN_FRAME_SEND ? "send" : "typing");
  return 0;
}

static int dec_auth(decoder *d) {
  const cJSON *tok = ROOT(d, K_TOKEN);
  if (!cJSON_IsString(tok)) return DFAIL(d, "token must be a string");
  d->f->token = dup_str(tok);
  return tern_frame_check_auth(&d->c, d->f);
}

static int dec_e2e(decoder *d) {
  tern_frame *f = d->f;
  const cJSON *arr = ROOT(d, K_E2E);
  if (!tern_wire_present(arr)) return 0;
  size_t n;
  int rc = array_field(d, d->root, K_E2E, d->c.max_devices, &arr, &n);
  if (rc) return rc;
  f->e2e = tern_calloc(n ? n : 1, sizeof *f->e2e); /* non-NULL even when empty: e2e was given */
  for (const cJSON *e = arr->child; e; e = e->next) {
    if (!cJSON_IsObject(e)) return DFAIL(d, "e2e entries must be objects");
    tern_frame_e2e *x = &f->e2e[f->ne2e++];
    const cJSON *dev = field(e, K_DEVICE_ID), *type = field(e, K_TYPE), *body = field(e, K_BODY);
    if (!cJSON_IsString(dev)) return DFAIL(d, "e2e device_id must be a string");
    x->device_id = dup_str(dev);
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    for (int k = TERN_E2E_PREKEY; k <= TERN_E2E_MESSAGE; k++) {
      if (strcmp(t, tern_frame_e2e_names[k]) == 0) x->type = (tern_e2e_type)k;
    }
    if (!x->type) return DFAIL(d, "e2e type must be \"prekey\" or \"message\"");
    if (!cJSON_IsString(body)) return DFAIL(d, "e2e body must be a string");
    x->body = dup_str(body);
    x->body_len = strlen(x->body);
  }
  return 0;
}

/* A {"of":"<msg_id>"} object (edit, delete). */
static int dec_of(decoder *d, const char *key, char **out) {
  const cJSON *o;
  int rc = opt_obj(d, key, &o);
  if (rc || !o) return rc;
  const cJSON *of = field(o, K_OF);
  if (!cJSON_IsString(of)) return DFAIL(d, "%s.of must be a string", key);
  *out = dup_str(of);
  return 0;
}

static int dec_mentions(decoder *d) {
  tern_frame *f = d->f;
  if (!tern_wire_present(ROOT(d, K_MENTIONS))) return 0;
  const cJSON *arr;
  size_t n;
  int rc = array_field(d, d->root, K_MENTIONS, TERN_MENTIONS_MAX, &arr, &n);
  if (rc || n == 0) return rc; /* an empty list mentions nobody: absent */
  f->mentions = tern_calloc(n, sizeof *f->mentions);
  tern_nameset seen;
  tern_nameset_init(&seen, n);
  for (const cJSON *e = arr->child; e && !rc; e = e->next) {
    if (!cJSON_IsString(e)) {
      rc = DFAIL(d, "mentions entries must be strings");
      break;
    }
    size_t len = strlen(e->valuestring);
    char norm[TERN_USERNAME_MAX + 1];
    if ((rc = tern_frame_check_text(&d->c, "mentions entries", e->valuestring, len))) break;
    if (!tern_username_normalize(e->valuestring, len, norm)) {
      rc = DFAIL(d, "mentions entries must be usernames");
      break;
    }
    char *name = tern_memdup(norm, len + 1);
    if (tern_nameset_add(&seen, name, len)) {
      f->mentions[f->nmentions++] = name;
    } else {
      tern_free(name);
    }
  }
  tern_free(seen.slots);
  return rc;
}

static int dec_send(decoder *d) {
  tern_frame *f = d->f;
  const cJSON *id = ROOT(d, K_ID);
  if (!cJSON_IsString(id) || tern_frame_check_id(&d->c, K_ID, id->valuestring, TERN_CLIENT_ID_MAX)) {
    return DFAIL(d, "id must be a string of 1 to %d printable ASCII characters", TERN_CLIENT_ID_MAX);
  }
  /* From here on every error names the id, so the client can match the answer to its send. */
  size_t n = strlen(id->valuestring);
  memcpy(d->c.err->id, id->valuestring, n + 1);
  f->id = tern_memdup(id->valuestring, n + 1);

  int rc = target_fields(d);
  if (rc) return rc;

  const cJSON *body = ROOT(d, K_BODY);
  if (tern_wire_present(body)) {
    if (!cJSON_IsString(body)) return DFAIL(d, "body must be a string");
    /* An empty body carries nothing: it is treated as absent (so a media-only message never
     * has "body":"" on the wire). */
    size_t blen = strlen(body->valuestring);
    if (blen > 0) {
      f->body = tern_memdup(body->valuestring, blen + 1);
      f->body_len = blen;
    }
  }

  const cJSON *o;
  if ((rc = opt_obj(d, K_MEDIA, &o))) return rc;
  if (o) {
    const cJSON *mid = field(o, K_MEDIA_ID);
    if (!cJSON_IsString(mid)) {
      return DFAIL(d, "media.media_id must be a string of 1 to %d printable ASCII characters", TERN_MSG_ID_MAX);
    }
    f->media_id = dup_str(mid);
  }
  if (!d->c.v11) return tern_frame_check_send(&d->c, f); /* v1: the rest are unknown fields */
  if ((rc = dec_e2e(d))) return rc;
  if ((rc = opt_str(d, d->root, K_MEDIA_REF, K_MEDIA_REF, &f->media_ref))) return rc;
  const cJSON *silent = ROOT(d, K_SILENT);
  if (tern_wire_present(silent)) {
    if (!cJSON_IsBool(silent)) return DFAIL(d, "silent must be true or false");
    f->silent = cJSON_IsTrue(silent);
  }
  if ((rc = opt_str(d, d->root, K_REPLY_TO, K_REPLY_TO, &f->reply_to))) return rc;
  if ((rc = opt_obj(d, K_REACTION, &o))) return rc;
  if (o) {
    const cJSON *to = field(o, K_TO), *emoji = field(o, K_EMOJI);
    if (!cJSON_IsString(to)) return DFAIL(d, "reaction.to must be a string");
    if (!cJSON_IsString(emoji)) return DFAIL(d, "reaction.emoji must be a string of 0 to %d bytes", TERN_EMOJI_MAX);
    f->reaction_to = dup_str(to);
    f->emoji = dup_str(emoji);
  }
  if ((rc = dec_of(d, K_EDIT, &f->edit_of))) return rc;
  if ((rc = dec_of(d, K_DELETE, &f->delete_of))) return rc;
  if ((rc = dec_mentions(d))) return rc;
  return tern_frame_check_send(&d->c, f);
}

static int dec_ack(decoder *d) {
  int64_t v;
  const cJSON *seq = ROOT(d, K_SEQ);
  if (!cJSON_IsNumber(seq)) return DFAIL(d, "seq must be a number");
  if (!tern_wire_int(seq, 0, TERN_WIRE_INT_MAX, &v)) return DFAIL(d, "seq must be an integer from 0 to 2^53");
  d->f->seq = (uint64_t)v;
  return 0;
}

static int dec_read(decoder *d) {
  tern_frame *f = d->f;
  int rc = d->c.v11 ? opt_str(d, d->root, K_GROUP_ID, K_GROUP_ID, &f->group_id) : 0;
  if (!rc) rc = username_field(d, K_PEER, &f->peer);
  const cJSON *ids;
  size_t n;
  if (!rc) rc = array_field(d, d->root, K_MSG_IDS, TERN_READ_IDS_MAX, &ids, &n);
  if (rc) return rc;
  f->ids = tern_calloc(n ? n : 1, sizeof *f->ids);
  for (const cJSON *e = ids->child; e; e = e->next) {
    /* A non-string entry stays NULL, which the check refuses. */
    f->ids[f->nids++] = cJSON_IsString(e) ? dup_str(e) : NULL;
  }
  return tern_frame_check_read(&d->c, f);
}

static int dec_watch(decoder *d) {
  tern_frame *f = d->f;
  const cJSON *users;
  size_t n;
  int rc = array_field(d, d->root, K_USERS, TERN_WATCH_MAX, &users, &n);
  if (rc) return rc;
  for (const cJSON *e = users->child; e; e = e->next) {
    if (!cJSON_IsString(e)) return DFAIL(d, "users entries must be strings");
  }
  if (n == 0) return 0;
  f->users = tern_calloc(n, sizeof *f->users);
  f->bad_users = tern_calloc(n, sizeof *f->bad_users);
  /* Valid and invalid names never collide, so one set serves both lists. */
  tern_nameset seen;
  tern_nameset_init(&seen, n);
  for (const cJSON *e = users->child; e; e = e->next) {
    const char *s = e->valuestring;
    size_t len = strlen(s);
    if ((rc = tern_frame_check_text(&d->c, "users entries", s, len))) break;
    char norm[TERN_USERNAME_MAX + 1];
    bool ok = tern_username_normalize(s, len, norm);
    char *name = ok ? tern_memdup(norm, len + 1) : lower_dup(s, len);
    if (!tern_nameset_add(&seen, name, len)) {
      tern_free(name);
    } else if (ok) {
      f->users[f->nusers++] = name;
    } else {
      f->bad_users[f->nbad_users++] = name;
    }
  }
  tern_free(seen.slots);
  return rc;
}

static int dec_typing(decoder *d) {
  int rc = target_fields(d);
  if (rc) return rc;
  const cJSON *st = ROOT(d, K_STATE);
  const char *s = cJSON_IsString(st) ? st->valuestring : "";
  if (strcmp(s, "composing") == 0) {
    d->f->composing = true;
  } else if (strcmp(s, "paused") != 0) {
    return DFAIL(d, "state must be \"composing\" or \"paused\"");
  }
  return tern_frame_check_typing(&d->c, d->f);
}

static int dec_decrypt_error(decoder *d) {
  tern_frame *f = d->f;
  if (!d->c.v11) return tern_frame_fail(d->c.err, TERN_UNKNOWN_TYPE, "unknown frame type \"decrypt_error\"");
  int rc = username_field(d, K_PEER, &f->peer);
  if (!rc) rc = opt_str(d, d->root, K_DEVICE_ID, K_DEVICE_ID, &f->device_id);
  if (!rc) rc = opt_str(d, d->root, K_MSG_ID, K_MSG_ID, &f->msg_id);
  return rc ? rc : tern_frame_check_decrypt_error(&d->c, f);
}

static int dec_ping(decoder *d) { return 0; }

static const struct {
  const char *name;         /* the "type" value */
  tern_frame_type type;     /* what it decodes to */
  int (*decode)(decoder *); /* reads the type's fields */
} frame_types[] = {
    /* Most frequent first: the lookup is a linear scan. */
    {"send", TERN_FRAME_SEND, dec_send},
    {"ack", TERN_FRAME_ACK, dec_ack},
    {"read", TERN_FRAME_READ, dec_read},
    {"typing", TERN_FRAME_TYPING, dec_typing},
    {"ping", TERN_FRAME_PING, dec_ping},
    {"watch", TERN_FRAME_WATCH, dec_watch},
    {"unwatch", TERN_FRAME_UNWATCH, dec_watch},
    {"auth", TERN_FRAME_AUTH, dec_auth},
    {"decrypt_error", TERN_FRAME_DECRYPT_ERROR, dec_decrypt_error},
};

static const char *type_name(tern_frame_type t) {
  for (size_t i = 0; i < TERN_ARRAY_LEN(frame_types); i++) {
    if (frame_types[i].type == t) return frame_types[i].name;
  }
  return NULL;
}

/* Copies at most TYPE_NAME_SHOWN bytes of name into out, with anything but printable ASCII
 * (and the quote, which would look odd inside the message's quotes) shown as '?', so the
 * message stays short, valid UTF-8 and unambiguous. */
static void shown_name(char *out, const char *name) {
  size_t i = 0;
  for (; name[i] && i < TYPE_NAME_SHOWN; i++) {
    unsigned char c = (unsigned char)name[i];
    out[i] = (c >= 0x20 && c <= 0x7E && c != '"') ? (char)c : '?';
  }
  if (name[i]) {
    memcpy(out + i, "...", 3);
    i += 3;
  }
  out[i] = '\0';
}

static int decode_object(decoder *d) {
  const cJSON *t = ROOT(d, K_TYPE);
  if (!cJSON_IsString(t)) return DFAIL(d, "frame has no \"type\" string");
  for (size_t i = 0; i < TERN_ARRAY_LEN(frame_types); i++) {
    if (strcmp(t->valuestring, frame_types[i].name) == 0) {
      d->f->type = frame_types[i].type;
      return frame_types[i].decode(d);
    }
  }
  char shown[TYPE_NAME_SHOWN + 4];
  shown_name(shown, t->valuestring);
  return tern_frame_fail(d->c.err, TERN_UNKNOWN_TYPE, "unknown frame type \"%s\"", shown);
}

int tern_frame_decode_ex(const char *json, size_t len, const tern_frame_limits *lim, tern_frame *out,
                         tern_frame_error *err) {
  memset(out, 0, sizeof *out);
  error_reset(err);
  tern_wire_doc doc;
  int rc = tern_wire_parse_flat(json, len, TERN_WIRE_FRAME_MAX, &doc, err->message, sizeof err->message);
  if (rc) {
    err->code = rc == -E2BIG ? TERN_TOO_LARGE : TERN_BAD_REQUEST;
    return -EINVAL;
  }
  decoder d = {.root = doc.root, .f = out};
  index_root(&d);
  tern_frame_checker_init(&d.c, err, lim, doc.nul_escapes);
  /* A 0xFF from a "\u0000" escape would make a string invalid; those inputs are checked. */
  d.c.utf8_known = lim && lim->input_is_utf8 && !doc.nul_escapes;
  rc = decode_object(&d);
  tern_wire_doc_free(&doc);
  if (rc) tern_frame_free(out);
  return rc;
}

int tern_frame_decode(const char *json, size_t len, tern_frame *out, tern_frame_error *err) {
  return tern_frame_decode_ex(json, len, NULL, out, err);
}

static void free_list(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) tern_free(v[i]);
  tern_free(v);
}

void tern_frame_free(tern_frame *f) {
  if (!f) return;
  tern_free(f->token);
  tern_free(f->id);
  tern_free(f->to);
  tern_free(f->to_raw);
  tern_free(f->group_id);
  tern_free(f->body);
  tern_free(f->media_id);
  for (size_t i = 0; i < f->ne2e; i++) {
    tern_free(f->e2e[i].device_id);
    tern_free(f->e2e[i].body);
  }
  tern_free(f->e2e);
  tern_free(f->media_ref);
  tern_free(f->reply_to);
  tern_free(f->reaction_to);
  tern_free(f->emoji);
  tern_free(f->edit_of);
  tern_free(f->delete_of);
  free_list(f->mentions, f->nmentions);
  tern_free(f->peer);
  free_list(f->ids, f->nids);
  tern_free(f->device_id);
  tern_free(f->msg_id);
  free_list(f->users, f->nusers);
  free_list(f->bad_users, f->nbad_users);
  memset(f, 0, sizeof *f);
}

static bool same_str(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static bool same_list(char *const *a, size_t na, char *const *b, size_t nb) {
  if (na != nb || !a != !b) return false;
  for (size_t i = 0; i < na; i++) {
    if (!same_str(a[i], b[i])) return false;
  }
  return true;
}

bool tern_frame_same(const tern_frame *a, const tern_frame *b) {
  if (a->type != b->type || a->to_invalid != b->to_invalid || a->body_len != b->body_len || a->silent != b->silent ||
      a->seq != b->seq || a->composing != b->composing || a->ne2e != b->ne2e || !a->e2e != !b->e2e)
    return false;
  const char *const sa[] = {a->token,       a->id,      a->to,      a->to_raw,   a->group_id, a->body,
                            a->media_id,    a->media_ref, a->reply_to, a->reaction_to, a->emoji, a->edit_of,
                            a->delete_of,   a->peer,    a->device_id, a->msg_id};
  const char *const sb[] = {b->token,       b->id,      b->to,      b->to_raw,   b->group_id, b->body,
                            b->media_id,    b->media_ref, b->reply_to, b->reaction_to, b->emoji, b->edit_of,
                            b->delete_of,   b->peer,    b->device_id, b->msg_id};
  for (size_t i = 0; i < TERN_ARRAY_LEN(sa); i++) {
    if (!same_str(sa[i], sb[i])) return false;
  }
  for (size_t i = 0; i < a->ne2e; i++) {
    const tern_frame_e2e *x = &a->e2e[i], *y = &b->e2e[i];
    if (x->type != y->type || x->body_len != y->body_len || !same_str(x->device_id, y->device_id) ||
        !same_str(x->body, y->body))
      return false;
  }
  return same_list(a->mentions, a->nmentions, b->mentions, b->nmentions) &&
         same_list(a->ids, a->nids, b->ids, b->nids) && same_list(a->users, a->nusers, b->users, b->nusers) &&
         same_list(a->bad_users, a->nbad_users, b->bad_users, b->nbad_users);
}

bool tern_username_normalize(const char *name, size_t len, char *out) {
  if (len > TERN_USERNAME_MAX) {
    out[0] = '\0';
    return false;
  }
  bool ok = len >= TERN_USERNAME_MIN;
  for (size_t i = 0; i < len; i++) {
    char c = lower(name[i]);
    out[i] = c;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) ok = false;
  }
  out[len] = '\0';
  return ok;
}

/* ---- encoding (the client side) ---- */

static void put_field(tern_buf *b, const char *key, const char *s) {
  tern_wire_put_key(b, key, false);
  tern_wire_put_cstr(b, s);
}

static void put_list(tern_buf *b, const char *key, char *const *v, size_t n, char *const *v2, size_t n2) {
  tern_wire_put_key(b, key, false);
  tern_buf_putc(b, '[');
  for (size_t i = 0; i < n + n2; i++) {
    if (i) tern_buf_putc(b, ',');
    tern_wire_put_cstr(b, i < n ? v[i] : v2[i - n]);
  }
  tern_buf_putc(b, ']');
}

/* {"of":"..."} under key. */
static void put_of(tern_buf *b, const char *key, const char *of) {
  tern_wire_put_key(b, key, false);
  tern_buf_putc(b, '{');
  tern_wire_put_key(b, K_OF, true);
  tern_wire_put_cstr(b, of);
  tern_buf_putc(b, '}');
}

static void put_target(tern_buf *b, const tern_frame *f) {
  if (f->group_id) {
    put_field(b, K_GROUP_ID, f->group_id);
  } else {
    put_field(b, K_TO, tern_frame_wire_to(f));
  }
}

static void enc_send(tern_buf *b, const tern_frame *f) {
  tern_buf_reserve(b, 96 + (tern_frame_has_body(f) ? f->body_len : 0));
  put_field(b, K_ID, f->id);
  put_target(b, f);
  if (tern_frame_has_body(f)) {
    tern_wire_put_key(b, K_BODY, false);
    tern_buf_put_json_str(b, f->body, f->body_len);
  }
  if (f->media_id) {
    tern_wire_put_key(b, K_MEDIA, false);
    tern_buf_putc(b, '{');
    tern_wire_put_key(b, K_MEDIA_ID, true);
    tern_wire_put_cstr(b, f->media_id);
    tern_buf_putc(b, '}');
  }
  if (f->e2e) {
    tern_wire_put_key(b, K_E2E, false);
    tern_buf_putc(b, '[');
    for (size_t i = 0; i < f->ne2e; i++) {
      const tern_frame_e2e *e = &f->e2e[i];
      if (i) tern_buf_putc(b, ',');
      tern_buf_putc(b, '{');
      tern_wire_put_key(b, K_DEVICE_ID, true);
      tern_wire_put_cstr(b, e->device_id);
      put_field(b, K_TYPE, tern_frame_e2e_names[e->type]);
      tern_wire_put_key(b, K_BODY, false);
      tern_wire_put_str(b, e->body, e->body_len);
      tern_buf_putc(b, '}');
    }
    tern_buf_putc(b, ']');
  }
  if (f->media_ref) put_field(b, K_MEDIA_REF, f->media_ref);
  if (f->silent) TERN_WIRE_LIT(b, ",\"" K_SILENT "\":true");
  if (f->reply_to) put_field(b, K_REPLY_TO, f->reply_to);
  if (f->reaction_to) {
    tern_wire_put_key(b, K_REACTION, false);
    tern_buf_putc(b, '{');
    tern_wire_put_key(b, K_TO, true);
    tern_wire_put_cstr(b, f->reaction_to);
    put_field(b, K_EMOJI, f->emoji);
    tern_buf_putc(b, '}');
  }
  if (f->edit_of) put_of(b, K_EDIT, f->edit_of);
  if (f->delete_of) put_of(b, K_DELETE, f->delete_of);
  if (f->mentions) put_list(b, K_MENTIONS, f->mentions, f->nmentions, NULL, 0);
}

int tern_frame_encode(tern_buf *out, const tern_frame *f, const tern_frame_limits *lim, tern_frame_error *err) {
  error_reset(err);
  tern_frame_checker c;
  tern_frame_checker_init(&c, err, lim, false);
  const char *name = type_name(f->type);
  if (!name) return tern_frame_fail(err, TERN_UNKNOWN_TYPE, "unknown frame type %d", (int)f->type);
  int rc = 0;
  switch (f->type) {
    case TERN_FRAME_AUTH: rc = tern_frame_check_auth(&c, f); break;
    case TERN_FRAME_SEND: rc = tern_frame_check_send(&c, f); break;
    case TERN_FRAME_READ: rc = tern_frame_check_read(&c, f); break;
    case TERN_FRAME_WATCH:
    case TERN_FRAME_UNWATCH: rc = tern_frame_check_watch(&c, f); break;
    case TERN_FRAME_TYPING: rc = tern_frame_check_typing(&c, f); break;
    case TERN_FRAME_DECRYPT_ERROR: rc = tern_frame_check_decrypt_error(&c, f); break;
    case TERN_FRAME_ACK: /* written as given: the server clamps an ack above what it sent */
    case TERN_FRAME_PING: break;
  }
  if (rc) {
    if (f->type == TERN_FRAME_SEND && f->id && tern_wire_ascii_id(f->id, strlen(f->id), TERN_CLIENT_ID_MAX))
      memcpy(err->id, f->id, strlen(f->id) + 1);
    return rc;
  }
  TERN_WIRE_LIT(out, "{\"" K_TYPE "\":");
  tern_wire_put_cstr(out, name);
  switch (f->type) {
    case TERN_FRAME_AUTH: put_field(out, K_TOKEN, f->token); break;
    case TERN_FRAME_SEND: enc_send(out, f); break;
    case TERN_FRAME_ACK:
      tern_wire_put_key(out, K_SEQ, false);
      tern_buf_put_u64(out, f->seq);
      break;
    case TERN_FRAME_READ:
      if (f->group_id) put_field(out, K_GROUP_ID, f->group_id);
      put_field(out, K_PEER, tern_frame_wire_peer(f));
      put_list(out, K_MSG_IDS, f->ids, f->nids, NULL, 0);
      break;
    case TERN_FRAME_WATCH:
    case TERN_FRAME_UNWATCH: put_list(out, K_USERS, f->users, f->nusers, f->bad_users, f->nbad_users); break;
    case TERN_FRAME_TYPING:
      put_target(out, f);
      put_field(out, K_STATE, f->composing ? "composing" : "paused");
      break;
    case TERN_FRAME_DECRYPT_ERROR:
      put_field(out, K_PEER, tern_frame_wire_peer(f));
      put_field(out, K_DEVICE_ID, f->device_id);
      put_field(out, K_MSG_ID, f->msg_id);
      break;
    case TERN_FRAME_PING: break;
  }
  tern_buf_putc(out, '}');
  return 0;
}
