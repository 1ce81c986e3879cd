/* msgid_bench: what a tagged msg_id costs (core/msgid.h): making one and checking one, per
 * call, in ns. Prints figures; asserts nothing.
 *   cc -O2 -Isrc bench/msgid/msgid_bench.c src/core/msgid.c build/libtern_base.a -lsodium -o /tmp/msgid_bench && /tmp/msgid_bench */
#include <stdio.h>
#include <time.h>

#include <sodium.h>

#include "core/msgid.h"

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(void) {
  if (sodium_init() < 0) return 1;
  tern_msgid_key k;
  tern_buf rec = {0};
  tern_msgid_key_new(&k, 1, &rec);
  tern_idgen g;
  tern_idgen_init(&g, 0);
  enum { N = 1000000 };
  char id[TERN_MSG_ID_LEN + 1];
  double t0 = now_ns();
  for (int i = 0; i < N; i++) tern_msgid_make(&k, &g, 1700000000000 + i / 16, "alice.smith", TERN_MSGID_TO_USER, "bob", id);
  double t1 = now_ns();
  int ok = 0;
  int64_t ts;
  for (int i = 0; i < N; i++) ok += tern_msgid_check(&k, id, "alice.smith", TERN_MSGID_TO_USER, "bob", 0, 0, &ts);
  double t2 = now_ns();
  printf("make %.0f ns, check %.0f ns per id (%d of %d checked ok)\n", (t1 - t0) / N, (t2 - t1) / N, ok, N);
  return 0;
}
