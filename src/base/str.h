/* str: a byte-string view, the one every layer passes around (stored records, wire fields).
 * p == NULL means absent; "" is {p, 0} with p non-NULL. Not owned; not NUL-terminated unless
 * said. */
#ifndef TERN_BASE_STR_H
#define TERN_BASE_STR_H

#include <stddef.h>
#include <string.h>

typedef struct tern_str {
  const char *p; /* bytes, or NULL when absent */
  size_t n;      /* length */
} tern_str;

/* A view of a C string (NULL stays absent). */
static inline tern_str tern_str_c(const char *s) {
  tern_str v = {s, s ? strlen(s) : 0};
  return v;
}

#endif
