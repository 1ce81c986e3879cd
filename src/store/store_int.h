/* store_int: what backends share with store.c, not part of the interface the core sees.
 * A backend wraps its state into a tern_store with tern_store_wrap (which also carries the
 * commit histogram) and records each group commit's duration with tern_store_commit_record. */
#ifndef TERN_STORE_STORE_INT_H
#define TERN_STORE_STORE_INT_H

#include <stdint.h>

#include "store/store.h"

/* Allocates the public handle for a backend; tern_store_close frees it after vt->close. */
tern_store *tern_store_wrap(const tern_store_vtable *vt, void *self);
/* Adds one group commit of ns nanoseconds to s's histogram; any thread. */
void tern_store_commit_record(tern_store *s, uint64_t ns);

#endif
