#include "base/map.h"

#include <string.h>

#include "base/alloc.h"
#include "base/util.h"

struct tern_map_entry {
  tern_map_entry *next; /* bucket chain */
  void *value;          /* caller's pointer */
  size_t klen;          /* key length */
  char key[];           /* key bytes, NUL-terminated for convenience */
};

static size_t slot_of(const tern_map *m, const char *key, size_t klen) {
  return (size_t)tern_hash_bytes(key, klen) & (m->nslots - 1);
}

static tern_map_entry **find(const tern_map *m, const char *key, size_t klen) {
  if (!m->nslots) return NULL;
  tern_map_entry **pp = &m->slots[slot_of(m, key, klen)];
  for (; *pp; pp = &(*pp)->next) {
    if ((*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0) return pp;
  }
  return pp;
}

void *tern_map_get(const tern_map *m, const char *key, size_t klen) {
  tern_map_entry **pp = find(m, key, klen);
  return pp && *pp ? (*pp)->value : NULL;
}

static void grow(tern_map *m) {
  size_t n = m->nslots ? m->nslots * 2 : 16;
  tern_map_entry **slots = tern_calloc(n, sizeof *slots);
  for (size_t i = 0; i < m->nslots; i++) {
    tern_map_entry *e = m->slots[i];
    while (e) {
      tern_map_entry *next = e->next;
      size_t s = (size_t)tern_hash_bytes(e->key, e->klen) & (n - 1);
      e->next = slots[s];
      slots[s] = e;
      e = next;
    }
  }
  tern_free(m->slots);
  m->slots = slots;
  m->nslots = n;
}

void *tern_map_put(tern_map *m, const char *key, size_t klen, void *value) {
  tern_map_entry **pp = find(m, key, klen);
  if (pp && *pp) {
    void *old = (*pp)->value;
    (*pp)->value = value;
    return old;
  }
  if (m->count + 1 > m->nslots) {
    grow(m);
  }
  tern_map_entry *e = tern_malloc(sizeof *e + klen + 1);
  memcpy(e->key, key, klen);
  e->key[klen] = '\0';
  e->klen = klen;
  e->value = value;
  size_t s = slot_of(m, key, klen);
  e->next = m->slots[s];
  m->slots[s] = e;
  m->count++;
  return NULL;
}

void *tern_map_del(tern_map *m, const char *key, size_t klen) {
  tern_map_entry **pp = find(m, key, klen);
  if (!pp || !*pp) return NULL;
  tern_map_entry *e = *pp;
  void *v = e->value;
  *pp = e->next;
  tern_free(e);
  m->count--;
  return v;
}

void tern_map_each(const tern_map *m, bool (*fn)(const char *, size_t, void *, void *), void *arg) {
  for (size_t i = 0; i < m->nslots; i++) {
    for (tern_map_entry *e = m->slots[i]; e; e = e->next) {
      if (!fn(e->key, e->klen, e->value, arg)) return;
    }
  }
}

bool tern_map_next(const tern_map *m, tern_map_iter *it, const char **key, size_t *klen, void **value) {
  for (; it->slot < m->nslots; it->slot++, it->pos = 0) {
    tern_map_entry *e = m->slots[it->slot];
    for (size_t i = 0; e && i < it->pos; i++) e = e->next;
    if (e) {
      it->pos++;
      *key = e->key;
      *klen = e->klen;
      *value = e->value;
      return true;
    }
  }
  it->slot = it->pos = 0;
  return false;
}

void tern_map_free(tern_map *m) {
  for (size_t i = 0; i < m->nslots; i++) {
    tern_map_entry *e = m->slots[i];
    while (e) {
      tern_map_entry *next = e->next;
      tern_free(e);
      e = next;
    }
  }
  tern_free(m->slots);
  m->slots = NULL;
  m->nslots = m->count = 0;
}
