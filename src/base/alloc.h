/* alloc: the one allocation wrapper. Every heap allocation in tern goes through here.
 * Out-of-memory is not an error tern tries to survive: these functions abort with a
 * message instead of returning NULL, so callers never check. */
#ifndef TERN_BASE_ALLOC_H
#define TERN_BASE_ALLOC_H

#include <stddef.h>

void *tern_malloc(size_t n);              /* never NULL; n == 0 allocates 1 byte */
void *tern_calloc(size_t count, size_t n); /* zeroed; aborts on overflow */
void *tern_realloc(void *p, size_t n);    /* never NULL */
char *tern_strdup(const char *s);         /* caller frees with tern_free */
char *tern_strndup(const char *s, size_t n); /* copies at most n bytes, NUL-terminates */
void *tern_memdup(const void *p, size_t n);
void tern_free(void *p);                  /* NULL is fine */

#define TERN_NEW(type) ((type *)tern_calloc(1, sizeof(type)))

#endif
