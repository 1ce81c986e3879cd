/* proc.c: reading another process's CPU time and memory from /proc. CPU comes from
 * /proc/PID/stat, whose utime and stime cover every thread of the process (the store thread
 * and the threadpool count, as they must for "server CPU per message"); memory from
 * /proc/PID/status (VmRSS now, VmHWM the peak). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench/bench_int.h"

static int read_file(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f) return -errno;
  size_t n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = '\0';
  return (int)n;
}

static uint64_t status_kib(const char *status, const char *key) {
  const char *p = strstr(status, key);
  if (!p) return 0;
  p += strlen(key);
  while (*p == ' ' || *p == '\t' || *p == ':') p++;
  return strtoull(p, NULL, 10);
}

int tern_bench_proc_sample(int pid, tern_bench_proc *out) {
  memset(out, 0, sizeof *out);
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int rc = read_file(path, buf, sizeof buf);
  if (rc < 0) return rc;
  /* The command name (field 2) may hold spaces and parentheses: fields are counted from the
   * last ')'. After it come state (3), ..., utime (14), stime (15). */
  char *p = strrchr(buf, ')');
  if (!p) return -EINVAL;
  p++;
  unsigned long long ut = 0, st = 0;
  for (int field = 3; field <= 15; field++) {
    while (*p == ' ') p++;
    if (!*p) return -EINVAL;
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (field == 14) ut = v;
    if (field == 15) st = v;
    while (*end && *end != ' ') end++;
    p = end;
  }
  double hz = (double)sysconf(_SC_CLK_TCK);
  out->utime_s = (double)ut / hz;
  out->stime_s = (double)st / hz;
  out->cpu_s = out->utime_s + out->stime_s;
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  rc = read_file(path, buf, sizeof buf);
  if (rc < 0) return rc;
  out->rss_kib = status_kib(buf, "\nVmRSS");
  out->hwm_kib = status_kib(buf, "\nVmHWM");
  out->threads = status_kib(buf, "\nThreads");
  snprintf(path, sizeof path, "/proc/%d/fd", pid);
  DIR *d = opendir(path);
  if (d) {
    struct dirent *de;
    while ((de = readdir(d)))
      if (de->d_name[0] != '.') out->fds++;
    closedir(d);
  }
  out->ok = true;
  return 0;
}

double tern_bench_self_cpu(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}
