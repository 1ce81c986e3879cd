#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n) {
  fprintf(stderr, "level=error msg=\"out of memory\" bytes=%zu\n", n);
  abort();
}

void *tern_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom(n);
  return p;
}

void *tern_calloc(size_t count, size_t n) {
  void *p = calloc(count ? count : 1, n ? n : 1);
  if (!p) oom(count * n);
  return p;
}

void *tern_realloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) oom(n);
  return q;
}

char *tern_strdup(const char *s) { return tern_memdup(s, strlen(s) + 1); }

char *tern_strndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *d = tern_malloc(len + 1);
  memcpy(d, s, len);
  d[len] = '\0';
  return d;
}

void *tern_memdup(const void *p, size_t n) {
  void *d = tern_malloc(n);
  if (n) memcpy(d, p, n);
  return d;
}

void tern_free(void *p) { free(p); }
