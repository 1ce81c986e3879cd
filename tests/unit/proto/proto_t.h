/* proto_t.h: helpers the proto unit tests share, on top of t.h. */
#ifndef TERN_TESTS_PROTO_T_H
#define TERN_TESTS_PROTO_T_H

#include "base/buf.h"
#include "proto/event.h"
#include "t.h"

/* A view of a string literal. */
#define S(lit) ((tern_str){(lit), sizeof(lit) - 1})

/* Checks that b holds exactly want (and prints both when not). */
static inline void expect_bytes(const tern_buf *b, const char *want, int line) {
  if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0) {
    fprintf(stderr, "  FAIL line %d:\n    got  %.*s\n    want %s\n", line, (int)b->len, b->data, want);
    t_failed_checks++;
  }
}
#define BYTES(b, want) expect_bytes((b), (want), __LINE__)

#endif
