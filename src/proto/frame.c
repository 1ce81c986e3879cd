/* frame: decoding of client frames (cJSON for the parse, then strict checks of our own) and
 * hand-written encoders for server frames (no cJSON on the way out: they run once per
 * delivered envelope, so they append bytes straight into the caller's buffer).
 *
 * Two cJSON quirks shape the decoder:
 * - cJSON strings are NUL-terminated, so an escaped "\u0000" would silently cut a string
 *   short ("bob\u0000x" would read as "bob"). A cheap pre-scan finds such escapes; only then
 *   (rarely) the input is copied with each "\u0000" replaced by a raw 0xFF byte, which can
 *   never appear in valid UTF-8 and so fails every per-field check that matters (printable
 *   ASCII ids, UTF-8 text, usernames) while fields we ignore stay ignored. Raw NUL bytes are
 *   never valid JSON and are refused outright.
 * - cJSON skips any byte <= 0x20 as whitespace and a leading UTF-8 BOM. We require the first
 *   non-whitespace byte to be '{' and only JSON whitespace after the object, so the accepted
 *   language is JSON objects, not "whatever cJSON tolerates".
 * cJSON itself refuses lone or mismatched UTF-16 surrogate escapes (the whole frame is then
 * "not valid JSON"); we still run tern_utf8_valid on text fields as a second line.
 */
#include "proto/frame.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"

/* Far above ws.max_message (1 MiB); only a guard should the WebSocket layer's limit be raised. */
#define FRAME_MAX ((size_t)2 << 20)
/* Largest integer a double (and a JavaScript client) represents exactly. */
#define SEQ_MAX 9007199254740992.0
/* How much of an unknown type name goes into the error message. */
#define TYPE_NAME_SHOWN 32

static const char BAD_REQUEST[] = "bad_request";
static const char UNKNOWN_TYPE[] = "unknown_type";
static const char TOO_LARGE[] = "too_large";

#define LIT(b, s) tern_buf_append((b), (s), sizeof(s) - 1)

typedef struct decoder {
  const cJSON *root;     /* the frame's object */
  tern_frame *f;         /* being filled */
  tern_frame_error *err; /* filled on failure */
  bool nul_escapes;      /* the input had "\u0000" escapes, now 0xFF bytes in the strings */
} decoder;

static int fail(tern_frame_error *err, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(tern_frame_error *err, const char *code, const char *fmt, ...) {
  va_list ap;
  err->code = code;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

static bool json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static size_t skip_ws(const char *s, size_t i, size_t n) {
  while (i < n && json_ws(s[i])) i++;
  return i;
}

/* True when s holds a "\u0000" escape. Escapes come in pairs (backslash + one char), so
 * stepping over the escaped char keeps "\\u0000" (an escaped backslash, then text) from
 * matching. Backslashes outside strings make the parse fail anyway. */
static bool has_nul_escape(const char *s, size_t n) {
  const char *p = s, *end = s + n;
  while ((p = memchr(p, '\\', (size_t)(end - p)))) {
    if (end - p < 6) return false; /* no room for one after this backslash either */
    if (memcmp(p + 1, "u0000", 5) == 0) return true;
    p += 2;
  }
  return false;
}

/* Copy of s with every "\u0000" escape replaced by a raw 0xFF byte (see the top comment). */
static char *replace_nul_escapes(const char *s, size_t n, size_t *out_len) {
  char *d = tern_malloc(n);
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    if (s[i] != '\\' || i + 1 >= n) {
      d[o++] = s[i++];
    } else if (n - i >= 6 && memcmp(s + i + 1, "u0000", 5) == 0) {
      d[o++] = (char)0xFF;
      i += 6;
    } else {
      d[o++] = s[i++];
      d[o++] = s[i++];
    }
  }
  *out_len = o;
  return d;
}

static const cJSON *field(const cJSON *obj, const char *key) {
  /* Keys are case-sensitive in JSON; with duplicate keys the first one counts. */
  return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* JSON null for an optional field means "absent", as most JSON encoders write it. */
static bool present(const cJSON *item) { return item && !cJSON_IsNull(item); }

/* True when item is a string of 1..max bytes of printable ASCII (0x20-0x7E); *len gets its
 * length. Reads at most max + 1 bytes, whatever the string's size. */
static bool ascii_id(const cJSON *item, size_t max, size_t *len) {
  if (!cJSON_IsString(item)) return false;
  const unsigned char *s = (const unsigned char *)item->valuestring;
  size_t i = 0;
  for (; s[i]; i++) {
    if (i == max || s[i] < 0x20 || s[i] > 0x7E) return false;
  }
  *len = i;
  return i > 0;
}

/* Lower-cases ASCII letters only: usernames are ASCII, and anything else must stay as the
 * client sent it so that error messages can quote it. */
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c; }

static char *lower_dup(const char *s, size_t n) {
  char *d = tern_malloc(n + 1);
  for (size_t i = 0; i < n; i++) d[i] = lower(s[i]);
  d[n] = '\0';
  return d;
}

/* Checks that s[0..n) is text we can store and echo back: valid UTF-8 and, in effect, free of
 * "\u0000" (which became 0xFF, invalid UTF-8). */
static int check_text(decoder *d, const char *what, const char *s, size_t n) {
  if (tern_utf8_valid(s, n)) return 0;
  if (d->nul_escapes && memchr(s, 0xFF, n)) return fail(d->err, BAD_REQUEST, "%s must not contain \\u0000", what);
  return fail(d->err, BAD_REQUEST, "%s is not valid UTF-8", what);
}

/* Reads the username field `key` (to or peer): a string is required; it is lower-cased into
 * f->to_raw and, when it is a valid username, copied into *valid, else f->to_invalid is set. */
static int username_field(decoder *d, const char *key, char **valid) {
  const cJSON *it = field(d->root, key);
  if (!cJSON_IsString(it)) return fail(d->err, BAD_REQUEST, "%s must be a string", key);
  const char *s = it->valuestring;
  size_t n = strlen(s);
  int rc = check_text(d, key, s, n);
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

static int dec_auth(decoder *d) {
  const cJSON *tok = field(d->root, "token");
  if (!cJSON_IsString(tok)) return fail(d->err, BAD_REQUEST, "token must be a string");
  const char *s = tok->valuestring;
  size_t n = strnlen(s, TERN_TOKEN_MAX + 1);
  if (n == 0 || n > TERN_TOKEN_MAX) {
    return fail(d->err, BAD_REQUEST, "token must be 1 to %d bytes long", TERN_TOKEN_MAX);
  }
  int rc = check_text(d, "token", s, n);
  if (rc) return rc;
  d->f->token = tern_memdup(s, n + 1);
  return 0;
}

static int dec_send(decoder *d) {
  tern_frame *f = d->f;
  size_t n;
  const cJSON *id = field(d->root, "id");
  if (!ascii_id(id, TERN_CLIENT_ID_MAX, &n)) {
    return fail(d->err, BAD_REQUEST, "id must be a string of 1 to %d printable ASCII characters", TERN_CLIENT_ID_MAX);
  }
  /* From here on every error names the id, so the client can match the answer to its send. */
  memcpy(d->err->id, id->valuestring, n + 1);
  f->id = tern_memdup(id->valuestring, n + 1);

  int rc = username_field(d, "to", &f->to);
  if (rc) return rc;

  const cJSON *body = field(d->root, "body");
  if (present(body)) {
    if (!cJSON_IsString(body)) return fail(d->err, BAD_REQUEST, "body must be a string");
    size_t blen = strlen(body->valuestring);
    if (blen > TERN_BODY_MAX) return fail(d->err, TOO_LARGE, "body is longer than %d bytes", TERN_BODY_MAX);
    if ((rc = check_text(d, "body", body->valuestring, blen))) return rc;
    /* An empty body carries nothing: it is treated as absent (so a media-only message never
     * has "body":"" on the wire). */
    if (blen > 0) {
      f->body = tern_memdup(body->valuestring, blen + 1);
      f->body_len = blen;
    }
  }

  const cJSON *media = field(d->root, "media");
  if (present(media)) {
    if (!cJSON_IsObject(media)) return fail(d->err, BAD_REQUEST, "media must be an object");
    const cJSON *mid = field(media, "media_id");
    if (!ascii_id(mid, TERN_MSG_ID_MAX, &n)) {
      return fail(d->err, BAD_REQUEST, "media.media_id must be a string of 1 to %d printable ASCII characters",
                  TERN_MSG_ID_MAX);
    }
    f->media_id = tern_memdup(mid->valuestring, n + 1);
  }

  if (!f->body && !f->media_id) return fail(d->err, BAD_REQUEST, "send needs a non-empty body or media");
  return 0;
}

static int dec_ack(decoder *d) {
  const cJSON *seq = field(d->root, "seq");
  if (!cJSON_IsNumber(seq)) return fail(d->err, BAD_REQUEST, "seq must be a number");
  double v = seq->valuedouble;
  /* The comparisons are false for NaN; 1e400 parses to infinity and fails the upper bound.
   * The range check comes first so the cast below is defined. */
  if (!(v >= 0 && v <= SEQ_MAX) || (double)(uint64_t)v != v) {
    return fail(d->err, BAD_REQUEST, "seq must be an integer from 0 to 2^53");
  }
  d->f->seq = (uint64_t)v;
  return 0;
}

static int dec_read(decoder *d) {
  tern_frame *f = d->f;
  int rc = username_field(d, "peer", &f->peer);
  if (rc) return rc;
  const cJSON *ids = field(d->root, "msg_ids");
  if (!cJSON_IsArray(ids)) return fail(d->err, BAD_REQUEST, "msg_ids must be an array");
  /* Count before allocating anything: the array may be huge. */
  size_t n = 0;
  for (const cJSON *e = ids->child; e; e = e->next) {
    if (++n > TERN_READ_IDS_MAX) return fail(d->err, TOO_LARGE, "msg_ids has more than %d entries", TERN_READ_IDS_MAX);
  }
  if (n == 0) return fail(d->err, BAD_REQUEST, "msg_ids must not be empty");
  f->ids = tern_calloc(n, sizeof *f->ids);
  for (const cJSON *e = ids->child; e; e = e->next) {
    size_t len;
    if (!ascii_id(e, TERN_MSG_ID_MAX, &len)) {
      return fail(d->err, BAD_REQUEST, "msg_ids entries must be strings of 1 to %d printable ASCII characters",
                  TERN_MSG_ID_MAX);
    }
    f->ids[f->nids++] = tern_memdup(e->valuestring, len + 1);
  }
  return 0;
}

/* A set of strings for de-duplicating watch lists: open addressing over pointers to strings
 * owned elsewhere. Linear in the list's length, where pairwise comparison would be quadratic
 * (a watch frame may list TERN_WATCH_MAX names). */
typedef struct nameset {
  const char **slots; /* NULL = empty */
  size_t mask;        /* slots - 1, slots a power of two at least twice the names */
} nameset;

static void nameset_init(nameset *s, size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  s->slots = tern_calloc(cap, sizeof *s->slots);
  s->mask = cap - 1;
}

/* Adds name (kept by pointer) and returns true, or returns false when it is already there. */
static bool nameset_add(nameset *s, const char *name, size_t n) {
  size_t i = (size_t)tern_hash_bytes(name, n) & s->mask;
  while (s->slots[i]) {
    if (strcmp(s->slots[i], name) == 0) return false;
    i = (i + 1) & s->mask;
  }
  s->slots[i] = name;
  return true;
}

static int dec_watch(decoder *d) {
  tern_frame *f = d->f;
  const cJSON *users = field(d->root, "users");
  if (!cJSON_IsArray(users)) return fail(d->err, BAD_REQUEST, "users must be an array");
  size_t n = 0;
  for (const cJSON *e = users->child; e; e = e->next) {
    if (++n > TERN_WATCH_MAX) return fail(d->err, TOO_LARGE, "users has more than %d entries", TERN_WATCH_MAX);
    if (!cJSON_IsString(e)) return fail(d->err, BAD_REQUEST, "users entries must be strings");
  }
  if (n == 0) return 0;
  f->users = tern_calloc(n, sizeof *f->users);
  f->bad_users = tern_calloc(n, sizeof *f->bad_users);
  /* Valid and invalid names never collide, so one set serves both lists. */
  nameset seen;
  nameset_init(&seen, n);
  int rc = 0;
  for (const cJSON *e = users->child; e; e = e->next) {
    const char *s = e->valuestring;
    size_t len = strlen(s);
    if ((rc = check_text(d, "users entries", s, len))) break;
    char norm[TERN_USERNAME_MAX + 1];
    bool ok = tern_username_normalize(s, len, norm);
    char *name = ok ? tern_memdup(norm, len + 1) : lower_dup(s, len);
    if (!nameset_add(&seen, name, len)) {
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
  int rc = username_field(d, "to", &d->f->to);
  if (rc) return rc;
  const cJSON *st = field(d->root, "state");
  const char *s = cJSON_IsString(st) ? st->valuestring : "";
  if (strcmp(s, "composing") == 0) {
    d->f->composing = true;
  } else if (strcmp(s, "paused") != 0) {
    return fail(d->err, BAD_REQUEST, "state must be \"composing\" or \"paused\"");
  }
  return 0;
}

static int dec_ping(decoder *d) { return 0; }

static const struct {
  const char *name;        /* the "type" value */
  tern_frame_type type;    /* what it decodes to */
  int (*decode)(decoder *); /* reads the type's fields */
} frame_types[] = {
    /* Most frequent first: the lookup is a linear scan. */
    {"send", TERN_FRAME_SEND, dec_send},     {"ack", TERN_FRAME_ACK, dec_ack},
    {"read", TERN_FRAME_READ, dec_read},     {"typing", TERN_FRAME_TYPING, dec_typing},
    {"ping", TERN_FRAME_PING, dec_ping},     {"watch", TERN_FRAME_WATCH, dec_watch},
    {"unwatch", TERN_FRAME_UNWATCH, dec_watch}, {"auth", TERN_FRAME_AUTH, dec_auth},
};

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
  const cJSON *t = field(d->root, "type");
  if (!cJSON_IsString(t)) return fail(d->err, BAD_REQUEST, "frame has no \"type\" string");
  for (size_t i = 0; i < TERN_ARRAY_LEN(frame_types); i++) {
    if (strcmp(t->valuestring, frame_types[i].name) == 0) {
      d->f->type = frame_types[i].type;
      return frame_types[i].decode(d);
    }
  }
  char shown[TYPE_NAME_SHOWN + 4];
  shown_name(shown, t->valuestring);
  return fail(d->err, UNKNOWN_TYPE, "unknown frame type \"%s\"", shown);
}

int tern_frame_decode(const char *json, size_t len, tern_frame *out, tern_frame_error *err) {
  memset(out, 0, sizeof *out);
  err->code = NULL;
  err->message[0] = '\0';
  err->id[0] = '\0';
  if (len > FRAME_MAX) return fail(err, TOO_LARGE, "frame is larger than %zu bytes", FRAME_MAX);
  size_t start = skip_ws(json, 0, len);
  if (start == len || json[start] != '{') return fail(err, BAD_REQUEST, "frame must be a JSON object");
  if (memchr(json, '\0', len)) return fail(err, BAD_REQUEST, "frame is not valid JSON (NUL byte)");

  decoder d = {.f = out, .err = err, .nul_escapes = has_nul_escape(json, len)};
  char *copy = NULL;
  const char *src = json;
  size_t srclen = len;
  if (d.nul_escapes) src = copy = replace_nul_escapes(json, len, &srclen);

  /* Not require_null_terminated: with an explicit length cJSON would then demand a NUL inside
   * it. We check for trailing bytes ourselves, which is the same rule. */
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(src, srclen, &end, 0);
  int rc;
  if (!root) {
    rc = fail(err, BAD_REQUEST, "frame is not valid JSON");
  } else if (!cJSON_IsObject(root)) {
    rc = fail(err, BAD_REQUEST, "frame must be a JSON object");
  } else if (skip_ws(src, (size_t)(end - src), srclen) != srclen) {
    rc = fail(err, BAD_REQUEST, "frame has data after the JSON object");
  } else {
    d.root = root;
    rc = decode_object(&d);
  }
  cJSON_Delete(root);
  tern_free(copy);
  if (rc) tern_frame_free(out);
  return rc;
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
  tern_free(f->body);
  tern_free(f->media_id);
  tern_free(f->peer);
  free_list(f->ids, f->nids);
  free_list(f->users, f->nusers);
  free_list(f->bad_users, f->nbad_users);
  memset(f, 0, sizeof *f);
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

/* ---- encoders ---- */

/* A JSON string, or null for a NULL pointer: a caller's bug then shows on the wire instead of
 * crashing the server. */
static void put_str(tern_buf *b, const char *s) {
  if (s) {
    tern_buf_put_json_str(b, s, strlen(s));
  } else {
    LIT(b, "null");
  }
}

void tern_enc_ready(tern_buf *out, const char *user, const char *device_id, int64_t server_time) {
  LIT(out, "{\"type\":\"ready\",\"user\":");
  put_str(out, user);
  LIT(out, ",\"device_id\":");
  put_str(out, device_id);
  LIT(out, ",\"server_time\":");
  tern_buf_put_i64(out, server_time);
  tern_buf_putc(out, '}');
}

void tern_enc_synced(tern_buf *out, uint64_t seq) {
  LIT(out, "{\"type\":\"synced\",\"seq\":");
  tern_buf_put_u64(out, seq);
  tern_buf_putc(out, '}');
}

void tern_enc_pong(tern_buf *out, int64_t server_time) {
  LIT(out, "{\"type\":\"pong\",\"server_time\":");
  tern_buf_put_i64(out, server_time);
  tern_buf_putc(out, '}');
}

void tern_enc_sent(tern_buf *out, const char *id, const char *msg_id, int64_t ts) {
  LIT(out, "{\"type\":\"sent\",\"id\":");
  put_str(out, id);
  LIT(out, ",\"msg_id\":");
  put_str(out, msg_id);
  LIT(out, ",\"ts\":");
  tern_buf_put_i64(out, ts);
  tern_buf_putc(out, '}');
}

void tern_enc_error(tern_buf *out, const char *id, const char *code, const char *message, const char *user) {
  LIT(out, "{\"type\":\"error\"");
  if (id) {
    LIT(out, ",\"id\":");
    put_str(out, id);
  }
  LIT(out, ",\"code\":");
  put_str(out, code);
  if (message) {
    LIT(out, ",\"message\":");
    put_str(out, message);
  }
  if (user) {
    LIT(out, ",\"user\":");
    put_str(out, user);
  }
  tern_buf_putc(out, '}');
}

void tern_enc_presence(tern_buf *out, const char *user, bool online, int64_t last_seen) {
  LIT(out, "{\"type\":\"presence\",\"user\":");
  put_str(out, user);
  if (online) {
    LIT(out, ",\"online\":true}");
    return;
  }
  LIT(out, ",\"online\":false,\"last_seen\":");
  if (last_seen < 0) {
    LIT(out, "null");
  } else {
    tern_buf_put_i64(out, last_seen);
  }
  tern_buf_putc(out, '}');
}

void tern_enc_typing(tern_buf *out, const char *from, bool composing) {
  LIT(out, "{\"type\":\"typing\",\"from\":");
  put_str(out, from);
  if (composing) {
    LIT(out, ",\"state\":\"composing\"}");
  } else {
    LIT(out, ",\"state\":\"paused\"}");
  }
}

void tern_enc_msg_tail(tern_buf *out, const char *msg_id, const char *from, const char *from_device, const char *to,
                       int64_t ts, const char *body, size_t body_len, const char *media_json) {
  /* One reservation for the fixed part and the body, so the common case grows the buffer once. */
  tern_buf_reserve(out, 128 + body_len + (media_json ? strlen(media_json) : 0));
  LIT(out, "\"msg_id\":");
  put_str(out, msg_id);
  LIT(out, ",\"from\":");
  put_str(out, from);
  LIT(out, ",\"from_device\":");
  put_str(out, from_device);
  LIT(out, ",\"to\":");
  put_str(out, to);
  LIT(out, ",\"ts\":");
  tern_buf_put_i64(out, ts);
  if (body) {
    LIT(out, ",\"body\":");
    tern_buf_put_json_str(out, body, body_len);
  }
  if (media_json) {
    LIT(out, ",\"media\":");
    tern_buf_puts(out, media_json);
  }
  tern_buf_putc(out, '}');
}

void tern_enc_receipt_tail(tern_buf *out, bool read, const char *from, const char *by, const char *const *msg_ids,
                           size_t n, int64_t ts) {
  if (read) {
    LIT(out, "\"status\":\"read\",\"from\":");
  } else {
    LIT(out, "\"status\":\"delivered\",\"from\":");
  }
  put_str(out, from);
  LIT(out, ",\"by\":");
  put_str(out, by);
  LIT(out, ",\"msg_ids\":[");
  for (size_t i = 0; i < n; i++) {
    if (i) tern_buf_putc(out, ',');
    put_str(out, msg_ids[i]);
  }
  LIT(out, "],\"ts\":");
  tern_buf_put_i64(out, ts);
  tern_buf_putc(out, '}');
}

void tern_enc_envelope_head(tern_buf *out, bool receipt, uint64_t seq) {
  if (receipt) {
    LIT(out, "{\"type\":\"receipt\",\"seq\":");
  } else {
    LIT(out, "{\"type\":\"msg\",\"seq\":");
  }
  tern_buf_put_u64(out, seq);
  tern_buf_putc(out, ',');
}
