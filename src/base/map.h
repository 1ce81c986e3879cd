/* map: a hash table from byte-string keys to pointers. The map copies keys it stores and
 * owns those copies; values are the caller's (the map never frees them). Not thread-safe:
 * each map belongs to one thread. Iteration order is unspecified. */
#ifndef TERN_BASE_MAP_H
#define TERN_BASE_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct tern_map_entry tern_map_entry;
typedef struct tern_map {
  tern_map_entry **slots; /* bucket heads; NULL until the first insert */
  size_t nslots;          /* power of two, or 0 */
  size_t count;           /* entries stored */
} tern_map;

/* Returns the value for key, or NULL. */
void *tern_map_get(const tern_map *m, const char *key, size_t klen);
/* Sets key to value; returns the previous value or NULL. */
void *tern_map_put(tern_map *m, const char *key, size_t klen, void *value);
/* Removes key; returns its value or NULL. */
void *tern_map_del(tern_map *m, const char *key, size_t klen);
/* Calls fn for every entry; fn must not modify the map. Stops early when fn returns false. */
void tern_map_each(const tern_map *m, bool (*fn)(const char *key, size_t klen, void *value, void *arg),
                   void *arg);
/* A resumable walk over every entry, for work spread over many calls (expiry sweeps). The map
 * may change between calls: entries added or removed meanwhile may be missed or seen twice,
 * but the walk never touches freed memory. A zeroed iterator starts at the beginning. */
typedef struct tern_map_iter {
  size_t slot; /* bucket being walked */
  size_t pos;  /* entries of that bucket already returned */
} tern_map_iter;
/* The next entry (true, with its key and value), or false at the end (the iterator then
 * starts over). */
bool tern_map_next(const tern_map *m, tern_map_iter *it, const char **key, size_t *klen, void **value);
/* Frees the map's own memory (not the values). */
void tern_map_free(tern_map *m);

/* Convenience wrappers for NUL-terminated keys. */
#define tern_map_gets(m, k) tern_map_get((m), (k), strlen(k))
#define tern_map_puts(m, k, v) tern_map_put((m), (k), strlen(k), (v))
#define tern_map_dels(m, k) tern_map_del((m), (k), strlen(k))

#endif
