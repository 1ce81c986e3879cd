/* bench: tern-bench, the load generator and measuring instrument (issue 6).
 *
 * The library holds everything; src/cmd/tern-bench.c is only main(). A run is a scenario given
 * as flags (see tern_bench_usage): users and devices are provisioned in bulk, connections are
 * opened, messages flow open-loop (a rate) or closed-loop (a window per sending device), and at
 * the end a table and a JSON document report throughput, exact latency percentiles, errors,
 * the server's CPU and memory, and the verification of every message (no loss, no duplicates
 * after de-dup, per-pair order). The same scenario runs over tern's WebSocket protocol or over
 * XMPP (ejabberd, Prosody) for comparison.
 *
 * Exit status: 0 when every check passed, 1 when verification found a violation, 2 for bad
 * flags or a run that could not be set up (server unreachable, registration failed).
 * A benchmark prints numbers; it never fails because something was slow.
 */
#ifndef TERN_BENCH_BENCH_H
#define TERN_BENCH_BENCH_H

/* Runs tern-bench with main()'s arguments and returns the process exit status. */
int tern_bench_main(int argc, char **argv);

/* The --help text. */
const char *tern_bench_usage(void);

#endif
