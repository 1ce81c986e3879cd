/* fields: one walk over a frame's table to write it, one to read it (see fields.h). */
#include "proto/fields.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "proto/wire.h"

/* Enumerations are stored as int: every enum of event.h is int-sized (it has small values and
 * no fixed underlying type, which GCC and clang make int). */
_Static_assert(sizeof(tern_group_event) == sizeof(int), "enums are int-sized");
_Static_assert(sizeof(tern_receipt_status) == sizeof(int), "enums are int-sized");

/* The type of a TERN_F_DEVREFS field (a typedef, so that AT_C can add its const). */
typedef const tern_device_ref *devref_list;

#define AT(base, off, type) ((type *)((char *)(base) + (off)))
#define AT_C(base, off, type) ((const type *)((const char *)(base) + (off)))

tern_str tern_strs_at(const tern_strs *l, size_t i) {
  if (l->v) return l->v[i];
  return tern_str_c(l->c[i]);
}

static bool strs_present(const tern_strs *l) { return l->v || l->c; }

static bool obj_present(const tern_field *f, const void *base);

static inline bool present(const tern_field *f, const void *base) {
  switch ((tern_field_kind)f->kind) {
    case TERN_F_STR: return AT_C(base, f->off, tern_str)->p != NULL;
    case TERN_F_U64:
    case TERN_F_I64:
    case TERN_F_BOOL: return true;
    case TERN_F_I64_OPT: return *AT_C(base, f->off, int64_t) >= 0;
    case TERN_F_U64_HAS: return *AT_C(base, f->off2, bool);
    case TERN_F_ENUM: return *AT_C(base, f->off, int) != 0;
    case TERN_F_STRS: return strs_present(AT_C(base, f->off, tern_strs));
    case TERN_F_DEVREFS: return *AT_C(base, f->off, devref_list) != NULL;
    case TERN_F_OBJ: return obj_present(f, base);
    case TERN_F_STR_OR_STRS:
      return AT_C(base, f->off, tern_str)->p || strs_present(AT_C(base, f->off2, tern_strs));
    case TERN_F_LAST_SEEN: return !*AT_C(base, f->off2, bool);
  }
  return false;
}

/* An object is there when its first field is, or when its pre-encoded form is. */
static bool obj_present(const tern_field *f, const void *base) {
  return present(&f->sub[0], base) || (f->off2 && AT_C(base, f->off2, tern_str)->p);
}

static void put_strv(tern_buf *out, tern_str s) { tern_wire_put_str(out, s.p, s.n); }

static void put_strs(tern_buf *out, const tern_strs *l) {
  tern_buf_putc(out, '[');
  for (size_t i = 0; strs_present(l) && i < l->n; i++) {
    if (i) tern_buf_putc(out, ',');
    put_strv(out, tern_strs_at(l, i));
  }
  tern_buf_putc(out, ']');
}

static void put_value(tern_buf *out, const tern_field *f, const void *base) {
  switch ((tern_field_kind)f->kind) {
    case TERN_F_STR: put_strv(out, *AT_C(base, f->off, tern_str)); break;
    case TERN_F_U64:
    case TERN_F_U64_HAS: tern_buf_put_u64(out, *AT_C(base, f->off, uint64_t)); break;
    case TERN_F_I64:
    case TERN_F_I64_OPT: tern_buf_put_i64(out, *AT_C(base, f->off, int64_t)); break;
    case TERN_F_BOOL:
      if (*AT_C(base, f->off, bool)) {
        TERN_WIRE_LIT(out, "true");
      } else {
        TERN_WIRE_LIT(out, "false");
      }
      break;
    case TERN_F_ENUM: {
      int v = *AT_C(base, f->off, int);
      tern_wire_put_cstr(out, v > 0 && v < f->nnames ? f->names[v] : NULL);
      break;
    }
    case TERN_F_STRS: put_strs(out, AT_C(base, f->off, tern_strs)); break;
    case TERN_F_DEVREFS: {
      const tern_device_ref *v = *AT_C(base, f->off, devref_list);
      size_t n = *AT_C(base, f->off2, size_t);
      tern_buf_putc(out, '[');
      for (size_t i = 0; v && i < n; i++) {
        if (i) tern_buf_putc(out, ',');
        TERN_WIRE_LIT(out, "{\"user\":");
        put_strv(out, v[i].user);
        TERN_WIRE_LIT(out, ",\"device_id\":");
        put_strv(out, v[i].device_id);
        tern_buf_putc(out, '}');
      }
      tern_buf_putc(out, ']');
      break;
    }
    case TERN_F_OBJ:
      if (present(&f->sub[0], base)) {
        tern_buf_putc(out, '{');
        tern_fields_encode(out, f->sub, base, true);
        tern_buf_putc(out, '}');
      } else if (f->off2 && AT_C(base, f->off2, tern_str)->p) {
        const tern_str *raw = AT_C(base, f->off2, tern_str);
        tern_buf_append(out, raw->p, raw->n);
      } else {
        TERN_WIRE_LIT(out, "null");
      }
      break;
    case TERN_F_STR_OR_STRS:
      if (strs_present(AT_C(base, f->off2, tern_strs))) {
        put_strs(out, AT_C(base, f->off2, tern_strs));
      } else {
        put_strv(out, *AT_C(base, f->off, tern_str));
      }
      break;
    case TERN_F_LAST_SEEN: {
      int64_t v = *AT_C(base, f->off, int64_t);
      if (v < 0) {
        TERN_WIRE_LIT(out, "null");
      } else {
        tern_buf_put_i64(out, v);
      }
      break;
    }
  }
}

bool tern_fields_encode_one(tern_buf *out, const tern_field *f, const void *base, bool first) {
  /* A required list that is absent is written empty; a required value, null. */
  if (!present(f, base) && !(f->flags & TERN_F_REQ)) return false;
  tern_buf_append(out, f->lit + first, f->lit_n - first);
  put_value(out, f, base);
  return true;
}

void tern_fields_encode(tern_buf *out, const tern_field *table, const void *base, bool first) {
  /* Strings and numbers, most of every frame, are written here without the general path's
   * calls: this runs once per delivered envelope. */
  for (const tern_field *f = table; f->key; f++) {
    switch ((tern_field_kind)f->kind) {
      case TERN_F_STR: {
        const tern_str *s = AT_C(base, f->off, tern_str);
        if (!s->p && !(f->flags & TERN_F_REQ)) continue;
        tern_buf_append(out, f->lit + first, f->lit_n - first);
        put_strv(out, *s);
        break;
      }
      case TERN_F_U64:
        tern_buf_append(out, f->lit + first, f->lit_n - first);
        tern_buf_put_u64(out, *AT_C(base, f->off, uint64_t));
        break;
      case TERN_F_I64:
        tern_buf_append(out, f->lit + first, f->lit_n - first);
        tern_buf_put_i64(out, *AT_C(base, f->off, int64_t));
        break;
      case TERN_F_OBJ:
      case TERN_F_STRS:
      case TERN_F_ENUM:
        /* Most of a msg's optional objects and lists are absent: skip them cheaply. */
        if (!(f->flags & TERN_F_REQ) && !present(f, base)) continue;
        /* fall through */
      default:
        if (!tern_fields_encode_one(out, f, base, first)) continue;
    }
    first = false;
  }
}

void tern_fields_defaults(const tern_field *table, void *base) {
  for (const tern_field *f = table; f->key; f++) {
    if (f->kind == TERN_F_I64_OPT || f->kind == TERN_F_LAST_SEEN) *AT(base, f->off, int64_t) = -1;
    if (f->kind == TERN_F_OBJ) tern_fields_defaults(f->sub, base);
  }
}

/* ---- reading ---- */

/* Back to "absent" (the kinds sub-objects use). */
static void clear_fields(const tern_field *table, void *base) {
  for (const tern_field *f = table; f->key; f++) {
    switch ((tern_field_kind)f->kind) {
      case TERN_F_STR: *AT(base, f->off, tern_str) = (tern_str){0}; break;
      case TERN_F_I64_OPT: *AT(base, f->off, int64_t) = -1; break;
      case TERN_F_ENUM: *AT(base, f->off, int) = 0; break;
      case TERN_F_OBJ: clear_fields(f->sub, base); break;
      default: break; /* not used inside objects */
    }
  }
}

static int rd_fail(tern_fields_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rd_fail(tern_fields_reader *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg, r->cap, fmt, ap);
  va_end(ap);
  return -EBADMSG;
}

static void *rd_alloc(tern_fields_reader *r, size_t n, size_t size) {
  tern_event_doc *d = r->doc;
  if (d->nallocs == d->cap) {
    d->cap = d->cap ? 2 * d->cap : 4;
    d->allocs = tern_realloc(d->allocs, d->cap * sizeof *d->allocs);
  }
  void *p = tern_calloc(n ? n : 1, size); /* non-NULL even when empty: the list is there */
  d->allocs[d->nallocs++] = p;
  return p;
}

static int rd_str(tern_fields_reader *r, const char *key, const cJSON *it, tern_str *out) {
  if (!cJSON_IsString(it)) return rd_fail(r, "%s must be a string", key);
  const char *s = it->valuestring;
  size_t n = strlen(s);
  if (r->nul_escapes && memchr(s, 0xFF, n)) return rd_fail(r, "%s must not contain \\u0000", key);
  if (!tern_wire_text(s, n)) return rd_fail(r, "%s is not valid UTF-8", key);
  out->p = s;
  out->n = n;
  return 0;
}

/* An array's entries, size bytes each, allocated in the doc (zeroed); NULL when it is no array. */
static void *rd_array(tern_fields_reader *r, const cJSON *it, size_t size, size_t *n) {
  if (!cJSON_IsArray(it)) return NULL;
  *n = 0;
  for (const cJSON *e = it->child; e; e = e->next) ++*n;
  return rd_alloc(r, *n, size);
}

static int rd_strs(tern_fields_reader *r, const char *key, const cJSON *it, tern_strs *out) {
  size_t n;
  tern_str *v = rd_array(r, it, sizeof *v, &n);
  if (!v) return rd_fail(r, "%s must be an array", key);
  size_t i = 0;
  for (const cJSON *e = it->child; e; e = e->next, i++) {
    int rc = rd_str(r, key, e, &v[i]);
    if (rc) return rc;
  }
  out->v = v;
  out->c = NULL;
  out->n = n;
  return 0;
}

static int rd_devrefs(tern_fields_reader *r, const char *key, const cJSON *it, const tern_device_ref **out,
                      size_t *count) {
  size_t n;
  tern_device_ref *v = rd_array(r, it, sizeof *v, &n);
  if (!v) return rd_fail(r, "%s must be an array", key);
  size_t i = 0;
  for (const cJSON *e = it->child; e; e = e->next, i++) {
    if (!cJSON_IsObject(e)) return rd_fail(r, "%s entries must be objects", key);
    const cJSON *u = tern_wire_get(e, "user"), *d = tern_wire_get(e, "device_id");
    int rc = 0;
    if (tern_wire_present(u)) rc = rd_str(r, "user", u, &v[i].user);
    if (!rc && tern_wire_present(d)) rc = rd_str(r, "device_id", d, &v[i].device_id);
    if (rc) return rc;
  }
  *out = v;
  *count = n;
  return 0;
}

static int rd_value(tern_fields_reader *r, const tern_field *f, const cJSON *it, void *base) {
  int64_t v;
  switch ((tern_field_kind)f->kind) {
    case TERN_F_STR: return rd_str(r, f->key, it, AT(base, f->off, tern_str));
    case TERN_F_U64:
    case TERN_F_U64_HAS:
      if (!tern_wire_int(it, 0, TERN_WIRE_INT_MAX, &v))
        return rd_fail(r, "%s must be an integer from 0 to 2^53", f->key);
      *AT(base, f->off, uint64_t) = (uint64_t)v;
      if (f->kind == TERN_F_U64_HAS) *AT(base, f->off2, bool) = true;
      return 0;
    case TERN_F_I64:
      if (!tern_wire_int(it, -TERN_WIRE_INT_MAX, TERN_WIRE_INT_MAX, &v))
        return rd_fail(r, "%s must be an integer within 2^53", f->key);
      *AT(base, f->off, int64_t) = v;
      return 0;
    case TERN_F_I64_OPT:
    case TERN_F_LAST_SEEN:
      /* Sizes and times: a negative one would stand for "absent" in the struct. */
      if (!tern_wire_int(it, 0, TERN_WIRE_INT_MAX, &v))
        return rd_fail(r, "%s must be an integer from 0 to 2^53", f->key);
      *AT(base, f->off, int64_t) = v;
      return 0;
    case TERN_F_BOOL:
      if (!cJSON_IsBool(it)) return rd_fail(r, "%s must be true or false", f->key);
      *AT(base, f->off, bool) = cJSON_IsTrue(it);
      return 0;
    case TERN_F_ENUM: {
      tern_str s;
      int rc = rd_str(r, f->key, it, &s);
      if (rc) return rc;
      /* An unknown value reads as 0: a later version may add one (PROTOCOL.md: add, don't rename). */
      *AT(base, f->off, int) = 0;
      for (int k = 1; k < f->nnames; k++) {
        if (strcmp(s.p, f->names[k]) == 0) *AT(base, f->off, int) = k;
      }
      return 0;
    }
    case TERN_F_STRS: return rd_strs(r, f->key, it, AT(base, f->off, tern_strs));
    case TERN_F_DEVREFS:
      return rd_devrefs(r, f->key, it, AT(base, f->off, const tern_device_ref *), AT(base, f->off2, size_t));
    case TERN_F_OBJ: {
      if (!cJSON_IsObject(it)) return rd_fail(r, "%s must be an object", f->key);
      int rc = tern_fields_decode(r, it, f->sub, base);
      /* As written: an object is there when its first field is. Without it the rest is
       * dropped, so that what is read is what would be written. */
      if (!rc && !present(&f->sub[0], base)) clear_fields(f->sub, base);
      return rc;
    }
    case TERN_F_STR_OR_STRS:
      if (cJSON_IsArray(it)) return rd_strs(r, f->key, it, AT(base, f->off2, tern_strs));
      return rd_str(r, f->key, it, AT(base, f->off, tern_str));
  }
  return rd_fail(r, "%s: unknown field kind", f->key);
}

int tern_fields_decode(tern_fields_reader *r, const cJSON *obj, const tern_field *table, void *base) {
  /* One pass over the object's members, each matched to the table by length first, rather
   * than one lookup per field (each a scan of the members with strcmp): a client reads every
   * envelope of a load test this way. With duplicate keys the first counts, as everywhere in
   * proto (cJSON_GetObjectItemCaseSensitive's rule). */
  uint64_t seen = 0; /* bit i: table[i] already met */
  for (const cJSON *it = obj->child; it; it = it->next) {
    if (!it->string) continue;
    size_t n = strlen(it->string);
    for (size_t i = 0; table[i].key; i++) {
      const tern_field *f = &table[i];
      if ((size_t)f->lit_n - 4 != n || memcmp(f->key, it->string, n) != 0) continue;
      uint64_t bit = i < 64 ? (uint64_t)1 << i : 0;
      if (seen & bit) break;
      seen |= bit;
      if (!tern_wire_present(it)) break; /* null: the default stays */
      int rc = rd_value(r, f, it, base);
      if (rc) return rc;
      break;
    }
  }
  /* As written: no last_seen while online. */
  for (const tern_field *f = table; f->key; f++) {
    if (f->kind == TERN_F_LAST_SEEN && *AT(base, f->off2, bool)) *AT(base, f->off, int64_t) = -1;
  }
  return 0;
}

/* ---- comparing ---- */

static bool same_strv(tern_str a, tern_str b) {
  return (!a.p && !b.p) || (a.p && b.p && a.n == b.n && memcmp(a.p, b.p, a.n) == 0);
}

static bool same_strs(const tern_strs *a, const tern_strs *b, bool req) {
  bool ha = strs_present(a) && (a->n || !req), hb = strs_present(b) && (b->n || !req);
  if (ha != hb) return false;
  if (!ha) return true;
  if (a->n != b->n) return false;
  for (size_t i = 0; i < a->n; i++) {
    if (!same_strv(tern_strs_at(a, i), tern_strs_at(b, i))) return false;
  }
  return true;
}

bool tern_fields_same(const tern_field *table, const void *a, const void *b) {
  for (const tern_field *f = table; f->key; f++) {
    bool req = f->flags & TERN_F_REQ;
    switch ((tern_field_kind)f->kind) {
      case TERN_F_STR:
        if (!same_strv(*AT_C(a, f->off, tern_str), *AT_C(b, f->off, tern_str))) return false;
        break;
      case TERN_F_U64:
        if (*AT_C(a, f->off, uint64_t) != *AT_C(b, f->off, uint64_t)) return false;
        break;
      case TERN_F_U64_HAS:
        if (*AT_C(a, f->off2, bool) != *AT_C(b, f->off2, bool)) return false;
        if (*AT_C(a, f->off2, bool) && *AT_C(a, f->off, uint64_t) != *AT_C(b, f->off, uint64_t)) return false;
        break;
      case TERN_F_I64:
        if (*AT_C(a, f->off, int64_t) != *AT_C(b, f->off, int64_t)) return false;
        break;
      case TERN_F_I64_OPT:
      case TERN_F_LAST_SEEN: {
        int64_t x = *AT_C(a, f->off, int64_t), y = *AT_C(b, f->off, int64_t);
        if (x != y && (x >= 0 || y >= 0)) return false; /* every negative is "absent" */
        break;
      }
      case TERN_F_BOOL:
        if (*AT_C(a, f->off, bool) != *AT_C(b, f->off, bool)) return false;
        break;
      case TERN_F_ENUM:
        if (*AT_C(a, f->off, int) != *AT_C(b, f->off, int)) return false;
        break;
      case TERN_F_STRS:
        if (!same_strs(AT_C(a, f->off, tern_strs), AT_C(b, f->off, tern_strs), req)) return false;
        break;
      case TERN_F_DEVREFS: {
        const tern_device_ref *x = *AT_C(a, f->off, devref_list), *y = *AT_C(b, f->off, devref_list);
        size_t n = *AT_C(a, f->off2, size_t);
        if (!x != !y || (x && n != *AT_C(b, f->off2, size_t))) return false;
        for (size_t i = 0; x && i < n; i++) {
          if (!same_strv(x[i].user, y[i].user) || !same_strv(x[i].device_id, y[i].device_id)) return false;
        }
        break;
      }
      case TERN_F_OBJ:
        if (!tern_fields_same(f->sub, a, b)) return false;
        break;
      case TERN_F_STR_OR_STRS:
        if (!same_strv(*AT_C(a, f->off, tern_str), *AT_C(b, f->off, tern_str)) ||
            !same_strs(AT_C(a, f->off2, tern_strs), AT_C(b, f->off2, tern_strs), false))
          return false;
        break;
    }
  }
  return true;
}
