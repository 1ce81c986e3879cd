/* wire: the strict JSON parse both directions use, the value rules, and the writers.
 *
 * Two cJSON quirks shape the parse:
 * - cJSON strings are NUL-terminated, so an escaped "\u0000" would silently cut a string
 *   short ("bob\u0000x" would read as "bob"), and so would a malformed \u escape, which cJSON
 *   reads as U+0000 ("bob\u00G0x" too reads as "bob"). A cheap pre-scan refuses malformed
 *   escapes (the frame is not valid JSON) and finds the "\u0000" ones; only then
 *   (rarely) the input is copied with each "\u0000" replaced by a raw 0xFF byte, which can
 *   never appear in valid UTF-8 and so fails every per-field check that matters (printable
 *   ASCII ids, UTF-8 text, usernames, group ids, base64, enumerated values) while fields
 *   nobody reads stay ignored. Raw NUL bytes are never valid JSON and are refused outright.
 * - cJSON skips any byte <= 0x20 as whitespace and a leading UTF-8 BOM. We require the first
 *   non-whitespace byte to be '{' and only JSON whitespace after the object, so the accepted
 *   language is JSON objects, not "whatever cJSON tolerates".
 * cJSON itself refuses lone or mismatched UTF-16 surrogate escapes (the whole frame is then
 * "not valid JSON"); text fields still go through tern_utf8_valid as a second line.
 */
#include "proto/wire.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"

static void *hook_malloc(size_t n) { return tern_malloc(n); }
static void hook_free(void *p) { tern_free(p); }

static void install_hooks(void) {
  cJSON_Hooks h = {hook_malloc, hook_free};
  cJSON_InitHooks(&h);
}

void tern_proto_init(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, install_hooks);
}

static bool json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static size_t skip_ws(const char *s, size_t i, size_t n) {
  while (i < n && json_ws(s[i])) i++;
  return i;
}

static bool hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* Checks every \u escape of s: it must have four hex digits, because cJSON reads a malformed
 * one ("\u12G4", "\u12") as U+0000 and so cuts the string short there, like "\u0000" itself.
 * Returns false for a malformed one; sets *nul when some escape is "\u0000". Escapes come in
 * pairs (backslash + one char), so stepping over the escaped char keeps "\\u0000" (an escaped
 * backslash, then text) from matching. Backslashes outside strings make the parse fail anyway. */
static bool scan_escapes(const char *s, size_t n, bool *nul) {
  const char *p = s, *end = s + n;
  *nul = false;
  while ((p = memchr(p, '\\', (size_t)(end - p)))) {
    if (end - p < 2) return true; /* a truncated string: the parse refuses it */
    if (p[1] == 'u') {
      if (end - p < 6 || !hex(p[2]) || !hex(p[3]) || !hex(p[4]) || !hex(p[5])) return false;
      if (memcmp(p + 2, "0000", 4) == 0) *nul = true;
      p += 6;
    } else {
      p += 2;
    }
  }
  return true;
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

/* ---- flat objects without cJSON's allocations ------------------------------------------------
 * Most client frames are small flat objects: one level of string, number, true, false and null
 * members (send with a body, ack, typing, ping, auth). cJSON builds such a tree with an
 * allocation for each node and each string, about half of a frame's decode
 * (bench/ab/instructions-per-message). flat_parse builds the same tree in one allocation
 * (the nodes, then a copy of the input whose strings are unescaped in place). It accepts a
 * subset of what cJSON accepts, makes exactly the tree cJSON makes of it, and answers "not
 * mine" for the rest, which then goes through cJSON as before: a nested object or array, a
 * \u escape, a byte between tokens that cJSON skips and JSON does not allow, a number outside
 * JSON's grammar or longer than cJSON reads one, more than FLAT_MEMBERS members. So it never
 * makes an error of its own. fuzz_frame parses every input both ways and requires the same
 * tree. */
enum { FLAT_MEMBERS = 16, FLAT_NUM_MAX = 63 /* cJSON reads a number from at most 63 bytes */ };

/* The string at t[*i] ('"'), unescaped in place and NUL-terminated at *out. */
static bool flat_str(char *t, size_t n, size_t *i, char **out) {
  size_t r = *i + 1, w = r;
  *out = t + w;
  while (r < n) {
    char c = t[r];
    if (c == '"') {
      t[w] = '\0'; /* w <= r: never past what is still to read */
      *i = r + 1;
      return true;
    }
    if (c != '\\') {
      t[w++] = c;
      r++;
      continue;
    }
    if (r + 1 >= n) return false;
    switch (t[r + 1]) {
      case '"': c = '"'; break;
      case '\\': c = '\\'; break;
      case '/': c = '/'; break;
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case 'n': c = '\n'; break;
      case 'r': c = '\r'; break;
      case 't': c = '\t'; break;
      default: return false; /* \u, or an escape cJSON refuses: cJSON's business */
    }
    t[w++] = c;
    r += 2;
  }
  return false;
}

static bool digit(char c) { return c >= '0' && c <= '9'; }

/* A number in JSON's grammar at t[*i], valued as cJSON values it (strtod of the same bytes). */
static bool flat_num(const char *t, size_t n, size_t *i, double *out) {
  size_t s = *i, j = s;
  if (j < n && t[j] == '-') j++;
  if (j < n && t[j] == '0') {
    j++;
  } else if (j < n && t[j] >= '1' && t[j] <= '9') {
    while (j < n && digit(t[j])) j++;
  } else {
    return false;
  }
  if (j < n && t[j] == '.') {
    if (++j >= n || !digit(t[j])) return false;
    while (j < n && digit(t[j])) j++;
  }
  if (j < n && (t[j] == 'e' || t[j] == 'E')) {
    if (++j < n && (t[j] == '+' || t[j] == '-')) j++;
    if (j >= n || !digit(t[j])) return false;
    while (j < n && digit(t[j])) j++;
  }
  if (j - s > FLAT_NUM_MAX) return false;
  char b[FLAT_NUM_MAX + 1], *end = NULL;
  memcpy(b, t + s, j - s);
  b[j - s] = '\0';
  *out = strtod(b, &end);
  if (end != b + (j - s)) return false;
  *i = j;
  return true;
}

/* One member value at t[*i] into it. */
static bool flat_value(char *t, size_t n, size_t *i, cJSON *it) {
  if (*i >= n) return false;
  char c = t[*i];
  if (c == '"') {
    it->type = cJSON_String;
    return flat_str(t, n, i, &it->valuestring);
  }
  if (c == '-' || digit(c)) {
    double v;
    if (!flat_num(t, n, i, &v)) return false;
    it->type = cJSON_Number;
    it->valuedouble = v;
    it->valueint = v >= INT_MAX ? INT_MAX : v <= (double)INT_MIN ? INT_MIN : (int)v; /* as cJSON */
    return true;
  }
  static const struct { const char *lit; size_t n; int type; int valueint; } lits[] = {
      {"true", 4, cJSON_True, 1}, {"false", 5, cJSON_False, 0}, {"null", 4, cJSON_NULL, 0}};
  for (size_t k = 0; k < TERN_ARRAY_LEN(lits); k++) {
    if (n - *i >= lits[k].n && memcmp(t + *i, lits[k].lit, lits[k].n) == 0) {
      it->type = lits[k].type;
      it->valueint = lits[k].valueint;
      *i += lits[k].n;
      return true;
    }
  }
  return false; /* an object, an array, or not JSON */
}

/* The object json[start..len) (json[start] is '{'), or NULL when it is not one of flat_parse's;
 * *end gets the offset after its '}'. The tree and its strings are one allocation, the root's. */
static cJSON *flat_parse(const char *json, size_t start, size_t len, size_t *end) {
  size_t hdr = (1 + FLAT_MEMBERS) * sizeof(cJSON);
  cJSON *nodes = tern_malloc(hdr + len + 1);
  char *t = (char *)nodes + hdr;
  memcpy(t, json, len);
  t[len] = '\0';
  memset(nodes, 0, sizeof *nodes);
  cJSON *root = nodes, *last = NULL;
  root->type = cJSON_Object;
  size_t i = skip_ws(t, start + 1, len), k = 0;
  if (i < len && t[i] == '}') {
    *end = i + 1;
    return root;
  }
  for (;;) {
    if (k == FLAT_MEMBERS || i >= len || t[i] != '"') break;
    cJSON *it = &nodes[1 + k++];
    memset(it, 0, sizeof *it);
    if (!flat_str(t, len, &i, &it->string)) break;
    i = skip_ws(t, i, len);
    if (i >= len || t[i] != ':') break;
    i = skip_ws(t, i + 1, len);
    if (!flat_value(t, len, &i, it)) break;
    if (last) {
      last->next = it;
      it->prev = last;
    } else {
      root->child = it;
    }
    last = it;
    root->child->prev = last; /* cJSON keeps the last member in the first one's prev */
    i = skip_ws(t, i, len);
    if (i < len && t[i] == ',') {
      i = skip_ws(t, i + 1, len);
      continue;
    }
    if (i < len && t[i] == '}') {
      *end = i + 1;
      return root;
    }
    break;
  }
  tern_free(nodes);
  return NULL;
}

static int parse_fail(char *msg, size_t cap, int rc, const char *what) {
  snprintf(msg, cap, "%s", what);
  return rc;
}

static int wire_parse(const char *json, size_t len, size_t max, tern_wire_doc *doc, char *msg, size_t cap, bool flat_ok) {
  memset(doc, 0, sizeof *doc);
  if (len > max) {
    snprintf(msg, cap, "frame is larger than %zu bytes", max);
    return -E2BIG;
  }
  size_t start = skip_ws(json, 0, len);
  if (start == len || json[start] != '{') return parse_fail(msg, cap, -EINVAL, "frame must be a JSON object");
  if (memchr(json, '\0', len)) return parse_fail(msg, cap, -EINVAL, "frame is not valid JSON (NUL byte)");

  const char *src = json;
  size_t srclen = len;
  if (!scan_escapes(json, len, &doc->nul_escapes)) return parse_fail(msg, cap, -EINVAL, "frame is not valid JSON");
  if (doc->nul_escapes) src = doc->copy = replace_nul_escapes(json, len, &srclen);
  if (flat_ok && !doc->nul_escapes) {
    size_t fend = 0;
    cJSON *flat = flat_parse(json, start, len, &fend);
    if (flat && skip_ws(json, fend, len) == len) {
      doc->root = flat;
      doc->flat = true;
      return 0;
    }
    tern_free(flat); /* trailing bytes: cJSON's path says so, as before */
  }

  /* Not require_null_terminated: with an explicit length cJSON would then demand a NUL inside
   * it. We check for trailing bytes ourselves, which is the same rule. The end pointer comes
   * back through our own variable, never through cJSON's global error pointer. */
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(src, srclen, &end, 0);
  int rc = 0;
  if (!root) {
    rc = parse_fail(msg, cap, -EINVAL, "frame is not valid JSON");
  } else if (!cJSON_IsObject(root)) {
    rc = parse_fail(msg, cap, -EINVAL, "frame must be a JSON object");
  } else if (skip_ws(src, (size_t)(end - src), srclen) != srclen) {
    rc = parse_fail(msg, cap, -EINVAL, "frame has data after the JSON object");
  }
  if (rc) {
    cJSON_Delete(root);
    tern_wire_doc_free(doc);
    return rc;
  }
  doc->root = root;
  return 0;
}

int tern_wire_parse(const char *json, size_t len, size_t max, tern_wire_doc *doc, char *msg, size_t cap) {
  return wire_parse(json, len, max, doc, msg, cap, false);
}

int tern_wire_parse_flat(const char *json, size_t len, size_t max, tern_wire_doc *doc, char *msg, size_t cap) {
  return wire_parse(json, len, max, doc, msg, cap, true);
}

void tern_wire_doc_free(tern_wire_doc *doc) {
  if (doc->flat) tern_free(doc->root); /* flat_parse's one allocation */
  else cJSON_Delete(doc->root);
  tern_free(doc->copy);
  memset(doc, 0, sizeof *doc);
}

const cJSON *tern_wire_get(const cJSON *obj, const char *key) { return cJSON_GetObjectItemCaseSensitive(obj, key); }

bool tern_wire_present(const cJSON *item) { return item && !cJSON_IsNull(item); }

bool tern_wire_int(const cJSON *item, double min, double max, int64_t *out) {
  if (!cJSON_IsNumber(item)) return false;
  double v = item->valuedouble;
  /* The comparisons are false for NaN; 1e400 parses to infinity and fails the bound. The range
   * check comes first so that the cast is defined. */
  if (!(v >= min && v <= max) || (double)(int64_t)v != v) return false;
  *out = (int64_t)v;
  return true;
}

bool tern_wire_ascii_id(const char *s, size_t n, size_t max) {
  if (!s || n == 0 || n > max) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

bool tern_wire_group_id(const char *s, size_t n) {
  if (!s || n == 0 || n > TERN_GROUP_ID_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return false;
  }
  return true;
}

static bool b64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

bool tern_wire_base64(const char *s, size_t n) {
  if (!s || n == 0 || n % 4 != 0) return false;
  size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
  for (size_t i = 0; i < n - pad; i++) {
    if (!b64_char(s[i])) return false;
  }
  return true;
}

bool tern_wire_text(const char *s, size_t n) { return tern_utf8_valid(s, n); }

void tern_wire_put_str(tern_buf *b, const char *s, size_t n) {
  if (s) {
    tern_buf_put_json_str(b, s, n);
  } else {
    /* A caller's bug then shows on the wire instead of crashing the server. */
    TERN_WIRE_LIT(b, "null");
  }
}

void tern_wire_put_cstr(tern_buf *b, const char *s) { tern_wire_put_str(b, s, s ? strlen(s) : 0); }

void tern_wire_put_key(tern_buf *b, const char *key, bool first) {
  size_t n = strlen(key);
  tern_buf_reserve(b, n + 4);
  if (!first) tern_buf_putc(b, ',');
  tern_buf_putc(b, '"');
  tern_buf_append(b, key, n);
  TERN_WIRE_LIT(b, "\":");
}
