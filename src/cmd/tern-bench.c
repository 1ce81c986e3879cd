/* tern-bench: the load generator. Everything lives in src/bench (see bench.h). */
#include "bench/bench.h"

int main(int argc, char **argv) { return tern_bench_main(argc, argv); }
