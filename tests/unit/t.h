/* t.h: the in-tree unit test harness. A test file defines test functions with TEST(name),
 * lists them in main with RUN(name), and ends with DONE(). Each failed CHECK prints the file,
 * line and expression and marks the test failed; the run ends with "N passed, N failed". */
#ifndef TERN_TESTS_T_H
#define TERN_TESTS_T_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failed_checks, t_tests_passed, t_tests_failed;

#define TEST(name) static void name(void)
#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
      t_failed_checks++;                                                     \
    }                                                                        \
  } while (0)
#define CHECK_EQ_INT(a, b)                                                                         \
  do {                                                                                             \
    long long t_a = (long long)(a), t_b = (long long)(b);                                          \
    if (t_a != t_b) {                                                                              \
      fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, t_a, t_b); \
      t_failed_checks++;                                                                           \
    }                                                                                              \
  } while (0)
#define CHECK_EQ_STR(a, b)                                                                             \
  do {                                                                                                 \
    const char *t_a = (a), *t_b = (b);                                                                 \
    if (!t_a || !t_b || strcmp(t_a, t_b) != 0) {                                                       \
      fprintf(stderr, "  FAIL %s:%d: %s == %s (\"%s\" != \"%s\")\n", __FILE__, __LINE__, #a, #b,       \
              t_a ? t_a : "(null)", t_b ? t_b : "(null)");                                             \
      t_failed_checks++;                                                                               \
    }                                                                                                  \
  } while (0)
#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

/* TERN_TEST_ONLY=<substring> runs only the tests whose names contain it (a quick loop over
 * one flaky test without the rest of the file). */
#define RUN(name)                                   \
  do {                                              \
    const char *t_only = getenv("TERN_TEST_ONLY");  \
    if (t_only && *t_only && !strstr(#name, t_only)) break; \
    int t_before = t_failed_checks;                 \
    name();                                         \
    if (t_failed_checks == t_before) {              \
      t_tests_passed++;                             \
      fprintf(stderr, "ok   %s\n", #name);          \
    } else {                                        \
      t_tests_failed++;                             \
      fprintf(stderr, "FAIL %s\n", #name);          \
    }                                                \
  } while (0)
#define DONE()                                                           \
  do {                                                                   \
    fprintf(stderr, "%d passed, %d failed\n", t_tests_passed, t_tests_failed); \
    return t_tests_failed ? 1 : 0;                                       \
  } while (0)

#endif
