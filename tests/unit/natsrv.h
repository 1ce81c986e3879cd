/* natsrv.h: starts real nats-server processes (JetStream, loopback, free ports, a temp dir) for
 * the unit tests of the NATS store backend: one server (R1) or a 3-server cluster (R3). The
 * servers are children of the test; natsrv_stop kills them. Header-only: each test program
 * includes it once. */
#ifndef TERN_TESTS_NATSRV_H
#define TERN_TESTS_NATSRV_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct natsrv {
  int n;           /* servers */
  pid_t pid[3];
  int port[3], cport[3];
  char dir[3][256];
  char urls[256];  /* "nats://127.0.0.1:P1,..." */
} natsrv;

/* Binds a loopback TCP socket to port (0: the kernel picks) and releases it: the port, or -1. */
static int natsrv_bind_port(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

/* A free loopback TCP port, from below the kernel's ephemeral range when there is room: a
 * port picked by a bind to 0 is an ephemeral one, which any outgoing connection of a test
 * running meanwhile may take before nats-server binds it (tests/integration/lib/nats.mjs
 * freePort says more). */
static int natsrv_free_port(void) {
  int low = 0;
  FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (f) {
    if (fscanf(f, "%d", &low) != 1) low = 0;
    fclose(f);
  }
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  unsigned seed = (unsigned)getpid() * 2654435761u ^ (unsigned)t.tv_nsec;
  for (int i = 0; low - 1 - 10000 > 1000 && i < 50; i++) {
    int port = 10000 + (int)(rand_r(&seed) % (unsigned)(low - 10000));
    if (natsrv_bind_port(port) == port) return port;
  }
  return natsrv_bind_port(0);
}

static bool natsrv_port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

static void natsrv_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* (Re)starts server i of s. */
static int natsrv_spawn(natsrv *s, int i) {
  char port[16], cport[48], routes[256] = "", name[16];
  snprintf(port, sizeof port, "%d", s->port[i]);
  snprintf(cport, sizeof cport, "nats://127.0.0.1:%d", s->cport[i]);
  snprintf(name, sizeof name, "n%d", i + 1);
  for (int j = 0; j < s->n; j++) {
    if (j == i) continue;
    size_t l = strlen(routes);
    snprintf(routes + l, sizeof routes - l, "%snats://127.0.0.1:%d", l ? "," : "", s->cport[j]);
  }
  pid_t pid = fork();
  if (pid < 0) return -errno;
  if (pid == 0) {
    int devnull = open("/dev/null", 1);
    if (devnull >= 0 && !getenv("TERN_TEST_NATS_LOG")) dup2(devnull, 2), dup2(devnull, 1);
    if (s->n > 1)
      execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd", s->dir[i], "-n", name,
             "--cluster_name", "terntest", "--cluster", cport, "--routes", routes, (char *)NULL);
    else
      execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd", s->dir[i], "-n", name,
             (char *)NULL);
    _exit(127);
  }
  s->pid[i] = pid;
  for (int t = 0; t < 200 && !natsrv_port_open(s->port[i]); t++) natsrv_sleep_ms(25);
  return natsrv_port_open(s->port[i]) ? 0 : -ETIMEDOUT;
}

/* Starts n (1 or 3) servers with their data under base. */
static int natsrv_start(natsrv *s, int n, const char *base) {
  memset(s, 0, sizeof *s);
  s->n = n;
  for (int i = 0; i < n; i++) {
    s->port[i] = natsrv_free_port();
    s->cport[i] = natsrv_free_port();
    snprintf(s->dir[i], sizeof s->dir[i], "%s/nats-%d-%d", base, n, i + 1);
    mkdir(s->dir[i], 0700);
  }
  for (int i = 0; i < n; i++) {
    int r = natsrv_spawn(s, i);
    if (r < 0) return r;
    size_t l = strlen(s->urls);
    snprintf(s->urls + l, sizeof s->urls - l, "%snats://127.0.0.1:%d", l ? "," : "", s->port[i]);
  }
  return 0;
}

static void natsrv_kill(natsrv *s, int i, int sig) {
  if (s->pid[i] <= 0) return;
  kill(s->pid[i], sig);
  waitpid(s->pid[i], NULL, 0);
  s->pid[i] = 0;
}

static void natsrv_stop(natsrv *s) {
  for (int i = 0; i < s->n; i++) natsrv_kill(s, i, SIGTERM);
}

#endif
