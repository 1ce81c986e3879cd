/* fuzz.h: what every fuzz target shares. REQUIRE(cond): a property of the target; when it
 * fails, the file, line and condition go to stderr and the run aborts (libFuzzer saves the
 * input as a crash; the replay driver fails). */
#ifndef TERN_TEST_FUZZ_H
#define TERN_TEST_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define REQUIRE(cond)                                                   \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "%s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond); \
      abort();                                                          \
    }                                                                   \
  } while (0)

#endif
