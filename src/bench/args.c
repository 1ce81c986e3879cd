/* args.c: the scenario flags. Every knob of a run is a flag, so that a run is reproduced by
 * its command line alone (docs/benchmarks.md quotes them). */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"
#include "bench/bench_int.h"

static const char usage[] =
    "Usage: tern-bench [--protocol tern|xmpp] --server URL [scenario flags]\n"
    "\n"
    "Load generator and measuring instrument for tern (and, for comparison, XMPP servers).\n"
    "Registers the users, opens the connections, sends, and verifies every message: no loss,\n"
    "no duplicates after de-dup by id, per-pair order. Exit status 1 on any violation, 2 on\n"
    "bad flags or a failed setup, else 0. Speed never fails a run.\n"
    "\n"
    "Server\n"
    "  --protocol P           tern (default) or xmpp\n"
    "  --server S             tern: http://HOST:PORT (default http://127.0.0.1:8080);\n"
    "                         xmpp: HOST:PORT (c2s, no TLS)\n"
    "  --domain D             xmpp: the XMPP domain (default: localhost)\n"
    "  --server-pid PID       sample /proc/PID: CPU seconds, RSS and peak RSS of the server\n"
    "Users and connections\n"
    "  --users N              users (default 100)\n"
    "  --devices D            devices per user, 1-16 (default 1)\n"
    "  --connections C        connections, ≤ users × devices (default: all); the first C\n"
    "                         devices connect, the others never do\n"
    "  --source-ips N         spread connections over source addresses 127.0.0.1..N\n"
    "                         (default: one per 8,000 connections)\n"
    "  --prefix P             user name prefix, so runs do not collide (default: random)\n"
    "  --password P           password of every user (default: bench-password)\n"
    "  --register-concurrency K  registrations in flight (default 32)\n"
    "  --xmpp-ack-every N     xmpp: ask for a XEP-0198 ack after N stanzas, or 50 ms after the\n"
    "                         last ask, as real clients do (default 10; 1 asks after every\n"
    "                         batch and lets the ack gate the window: the old, harsher regime)\n"
    "  --connect-concurrency K   connects in flight (default 256)\n"
    "Traffic\n"
    "  --peers pairs|random   who talks to whom (default pairs: users 2i and 2i+1)\n"
    "  --one-way              pairs: only user 2i sends, 2i+1 receives\n"
    "  --rate R               messages/s per sending user, open loop\n"
    "  --total-rate R         messages/s in total, open loop\n"
    "                         (neither: closed loop at saturation, --window per device)\n"
    "  --window W             closed loop: messages in flight per sending device (default 16)\n"
  "  --inflight M           closed loop: at most M messages in flight in all, each free slot\n"
  "                         going to the next sending user in turn (a group message to K\n"
  "                         members is K-1 deliveries: this bounds the server's queue)\n"
    "  --messages N           stop sending after N messages\n"
    "  --body BYTES           message body size (default 100)\n"
    "  --offline RATIO        fraction of users kept disconnected while sending; they connect\n"
    "                         afterwards and the drain of their stored messages is measured\n"
    "  --receipts on|off|read recipients ack (delivered receipts back to the senders); read\n"
    "                         also sends read receipts (default on)\n"
    "  --duration D           measured window (default 10s); --idle: how long to hold\n"
    "  --warmup D             sending before the window, not measured (default 1s)\n"
    "  --settle D             longest wait for outstanding answers after sending (default 30s)\n"
    "  --max-outbound BYTES   queued bytes per connection before sending waits (default 256KiB)\n"
    "  --seed N               random peers seed (default 1)\n"
  "Groups (PROTOCOL.md 10; XMPP: XEP-0045 MUC rooms)\n"
  "  --groups N             group mode: N groups instead of pairs; every user sends to its\n"
  "                         groups in turn, at --rate / --total-rate or with --window\n"
  "  --group-size K         members per group, 2 to --users (default 8); group g holds users\n"
  "                         (g*K + j) mod users, so each user is in about N*K/users groups.\n"
  "                         tern: created over REST by their first member, after connecting;\n"
  "                         xmpp: instant rooms the members join (no history on join).\n"
  "                         Measured: messages/s, member deliveries/s, send→delivered at the\n"
  "                         last member; verified: every member device gets every message\n"
  "                         once, in per-sender order (exit 1 otherwise). --receipts off:\n"
  "                         devices never ack (tern: envelopes stay stored)\n"
  "  --muc-domain D         xmpp: the MUC service (default conference.DOMAIN)\n"
    "Modes and output\n"
    "  --idle                 open the connections, hold them, report connect rate and the\n"
    "                         server's RSS per connection\n"
    "  --json FILE            write the results as JSON (- for stdout)\n"
    "  --quiet                no progress line\n"
    "  --help\n"
    "\n"
    "Durations: 10s, 500ms, 2m. Rates: 1000, 2.5k. Sizes: 100, 4KiB.\n";

const char *tern_bench_usage(void) { return usage; }

int tern_bench_parse_duration(const char *s, uint64_t *ms) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || v < 0 || !isfinite(v)) return -1;
  double mult = 1000;
  if (*end == '\0' || strcmp(end, "s") == 0) mult = 1000;
  else if (strcmp(end, "ms") == 0) mult = 1;
  else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0) mult = 60000;
  else if (strcmp(end, "h") == 0) mult = 3600000;
  else return -1;
  *ms = (uint64_t)llround(v * mult);
  return 0;
}

int tern_bench_parse_rate(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || v < 0 || !isfinite(v)) return -1;
  if (*end == 'k' || *end == 'K') {
    v *= 1e3;
    end++;
  } else if (*end == 'M') {
    v *= 1e6;
    end++;
  }
  if (strcmp(end, "/s") == 0) end += 2;
  if (*end) return -1;
  *out = v;
  return 0;
}

int tern_bench_parse_size(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || s[0] == '-') return -1;
  uint64_t mult = 1;
  if (*end == '\0' || strcmp(end, "B") == 0) mult = 1;
  else if (strcasecmp(end, "KiB") == 0 || strcasecmp(end, "K") == 0) mult = 1024;
  else if (strcasecmp(end, "MiB") == 0 || strcasecmp(end, "M") == 0) mult = 1024 * 1024;
  else return -1;
  *out = (uint64_t)v * mult;
  return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) return -1;
  *out = (uint32_t)v;
  return 0;
}

static bool name_chars_ok(const char *s) {
  for (; *s; s++)
    if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-'))
      return false;
  return true;
}

enum {
  O_PROTOCOL = 256, O_SERVER, O_DOMAIN, O_SERVER_PID, O_USERS, O_DEVICES, O_CONNECTIONS, O_SOURCE_IPS,
  O_PREFIX, O_PASSWORD, O_XMPP_ACK_EVERY, O_REG_CONC, O_CONN_CONC, O_PEERS, O_RATE, O_TOTAL_RATE, O_WINDOW, O_MESSAGES,
  O_BODY, O_OFFLINE, O_RECEIPTS, O_DURATION, O_WARMUP, O_SETTLE, O_MAX_OUTBOUND, O_SEED, O_IDLE, O_JSON,
  O_QUIET, O_HELP, O_ONE_WAY, O_GROUPS, O_GROUP_SIZE, O_MUC_DOMAIN, O_INFLIGHT,
};

static const struct option options[] = {
    {"protocol", required_argument, NULL, O_PROTOCOL},
    {"server", required_argument, NULL, O_SERVER},
    {"domain", required_argument, NULL, O_DOMAIN},
    {"server-pid", required_argument, NULL, O_SERVER_PID},
    {"users", required_argument, NULL, O_USERS},
    {"devices", required_argument, NULL, O_DEVICES},
    {"connections", required_argument, NULL, O_CONNECTIONS},
    {"source-ips", required_argument, NULL, O_SOURCE_IPS},
    {"prefix", required_argument, NULL, O_PREFIX},
    {"password", required_argument, NULL, O_PASSWORD},
    {"register-concurrency", required_argument, NULL, O_REG_CONC},
    {"xmpp-ack-every", required_argument, NULL, O_XMPP_ACK_EVERY},
    {"connect-concurrency", required_argument, NULL, O_CONN_CONC},
    {"peers", required_argument, NULL, O_PEERS},
    {"one-way", no_argument, NULL, O_ONE_WAY},
    {"rate", required_argument, NULL, O_RATE},
    {"total-rate", required_argument, NULL, O_TOTAL_RATE},
    {"window", required_argument, NULL, O_WINDOW},
    {"messages", required_argument, NULL, O_MESSAGES},
    {"body", required_argument, NULL, O_BODY},
    {"offline", required_argument, NULL, O_OFFLINE},
    {"receipts", required_argument, NULL, O_RECEIPTS},
    {"duration", required_argument, NULL, O_DURATION},
    {"warmup", required_argument, NULL, O_WARMUP},
    {"settle", required_argument, NULL, O_SETTLE},
    {"max-outbound", required_argument, NULL, O_MAX_OUTBOUND},
    {"seed", required_argument, NULL, O_SEED},
    {"idle", no_argument, NULL, O_IDLE},
    {"json", required_argument, NULL, O_JSON},
    {"quiet", no_argument, NULL, O_QUIET},
    {"help", no_argument, NULL, O_HELP},
    {"groups", required_argument, NULL, O_GROUPS},
    {"inflight", required_argument, NULL, O_INFLIGHT},
    {"group-size", required_argument, NULL, O_GROUP_SIZE},
    {"muc-domain", required_argument, NULL, O_MUC_DOMAIN},
    {NULL, 0, NULL, 0},
};

static void copy(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src); }

int tern_bench_parse_args(int argc, char **argv, tern_bench_config *cfg, char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  cfg->users = 100;
  cfg->devices = 1;
  cfg->window = 16;
  cfg->body = 100;
  cfg->receipts = TERN_BENCH_RECEIPTS_ON;
  cfg->duration_ms = 10000;
  cfg->warmup_ms = 1000;
  cfg->settle_ms = 30000;
  cfg->register_concurrency = 32;
  cfg->xmpp_ack_every = 10;
  cfg->connect_concurrency = 256;
  cfg->max_outbound = 256 * 1024;
  cfg->seed = 1;
  copy(cfg->password, sizeof cfg->password, "bench-password");
  bool server_set = false, duration_set = false, warmup_set = false;

  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
    const char *v = optarg;
    uint64_t u64;
    switch (c) {
      case O_PROTOCOL:
        if (strcmp(v, "tern") == 0) cfg->proto = TERN_BENCH_PROTO_TERN;
        else if (strcmp(v, "xmpp") == 0) cfg->proto = TERN_BENCH_PROTO_XMPP;
        else return fail(err, errlen, "--protocol: tern or xmpp, not '%s'", v);
        break;
      case O_SERVER:
        if (strlen(v) >= sizeof cfg->server) return fail(err, errlen, "--server: too long");
        copy(cfg->server, sizeof cfg->server, v);
        server_set = true;
        break;
      case O_DOMAIN:
        if (strlen(v) >= sizeof cfg->domain) return fail(err, errlen, "--domain: too long");
        copy(cfg->domain, sizeof cfg->domain, v);
        break;
      case O_SERVER_PID: {
        uint32_t pid;
        if (parse_u32(v, 1, 1u << 30, &pid) < 0) return fail(err, errlen, "--server-pid: a process id");
        cfg->server_pid = (int)pid;
        break;
      }
      case O_USERS:
        if (parse_u32(v, 1, TERN_BENCH_MAX_USERS, &cfg->users) < 0)
          return fail(err, errlen, "--users: 1 to %u", TERN_BENCH_MAX_USERS);
        break;
      case O_DEVICES:
        if (parse_u32(v, 1, TERN_BENCH_MAX_DEVICES, &cfg->devices) < 0)
          return fail(err, errlen, "--devices: 1 to %d", TERN_BENCH_MAX_DEVICES);
        break;
      case O_CONNECTIONS:
        if (parse_u32(v, 1, TERN_BENCH_MAX_DEVS, &cfg->connections) < 0)
          return fail(err, errlen, "--connections: 1 to %u", TERN_BENCH_MAX_DEVS);
        break;
      case O_SOURCE_IPS:
        if (parse_u32(v, 1, 255, &cfg->source_ips) < 0) return fail(err, errlen, "--source-ips: 1 to 255");
        break;
      case O_PREFIX:
        if (strlen(v) < 1 || strlen(v) > TERN_BENCH_PREFIX_MAX || !name_chars_ok(v))
          return fail(err, errlen, "--prefix: 1-%d characters of [a-z0-9_.-]", TERN_BENCH_PREFIX_MAX);
        copy(cfg->prefix, sizeof cfg->prefix, v);
        break;
      case O_PASSWORD:
        if (strlen(v) < 8 || strlen(v) >= sizeof cfg->password)
          return fail(err, errlen, "--password: 8 to %zu bytes", sizeof cfg->password - 1);
        copy(cfg->password, sizeof cfg->password, v);
        break;
      case O_XMPP_ACK_EVERY:
        if (parse_u32(v, 1, 1000000, &cfg->xmpp_ack_every) < 0)
          return fail(err, errlen, "--xmpp-ack-every: 1 to 1000000");
        break;
      case O_REG_CONC:
        if (parse_u32(v, 1, 4096, &cfg->register_concurrency) < 0)
          return fail(err, errlen, "--register-concurrency: 1 to 4096");
        break;
      case O_CONN_CONC:
        if (parse_u32(v, 1, 16384, &cfg->connect_concurrency) < 0)
          return fail(err, errlen, "--connect-concurrency: 1 to 16384");
        break;
      case O_PEERS:
        if (strcmp(v, "pairs") == 0) cfg->peers = TERN_BENCH_PEERS_PAIRS;
        else if (strcmp(v, "random") == 0) cfg->peers = TERN_BENCH_PEERS_RANDOM;
        else return fail(err, errlen, "--peers: pairs or random, not '%s'", v);
        break;
      case O_ONE_WAY:
        cfg->one_way = true;
        break;
      case O_RATE:
        if (tern_bench_parse_rate(v, &cfg->rate) < 0 || cfg->rate <= 0)
          return fail(err, errlen, "--rate: a positive number of messages/s per user");
        break;
      case O_TOTAL_RATE:
        if (tern_bench_parse_rate(v, &cfg->total_rate) < 0 || cfg->total_rate <= 0)
          return fail(err, errlen, "--total-rate: a positive number of messages/s");
        break;
      case O_WINDOW:
        if (parse_u32(v, 1, 1u << 20, &cfg->window) < 0) return fail(err, errlen, "--window: 1 to 1048576");
        break;
      case O_MESSAGES:
        if (tern_bench_parse_size(v, &u64) < 0 || u64 == 0 || u64 > (1ull << 40))
          return fail(err, errlen, "--messages: a positive count");
        cfg->max_messages = u64;
        break;
      case O_BODY:
        if (tern_bench_parse_size(v, &u64) < 0 || u64 < 16 || u64 > 65536)
          return fail(err, errlen, "--body: 16 to 65536 bytes (the body carries the message's number)");
        cfg->body = (uint32_t)u64;
        break;
      case O_OFFLINE: {
        char *end;
        double r = strtod(v, &end);
        if (end == v || *end || !(r >= 0 && r < 1)) return fail(err, errlen, "--offline: a ratio in [0, 1)");
        cfg->offline = r;
        break;
      }
      case O_RECEIPTS:
        if (strcmp(v, "on") == 0) cfg->receipts = TERN_BENCH_RECEIPTS_ON;
        else if (strcmp(v, "off") == 0) cfg->receipts = TERN_BENCH_RECEIPTS_OFF;
        else if (strcmp(v, "read") == 0) cfg->receipts = TERN_BENCH_RECEIPTS_READ;
        else return fail(err, errlen, "--receipts: on, off or read, not '%s'", v);
        break;
      case O_DURATION:
        if (tern_bench_parse_duration(v, &cfg->duration_ms) < 0) return fail(err, errlen, "--duration: like 10s");
        duration_set = true;
        break;
      case O_WARMUP:
        if (tern_bench_parse_duration(v, &cfg->warmup_ms) < 0) return fail(err, errlen, "--warmup: like 1s");
        warmup_set = true;
        break;
      case O_SETTLE:
        if (tern_bench_parse_duration(v, &cfg->settle_ms) < 0) return fail(err, errlen, "--settle: like 30s");
        break;
      case O_MAX_OUTBOUND:
        if (tern_bench_parse_size(v, &u64) < 0 || u64 < 1024) return fail(err, errlen, "--max-outbound: ≥ 1KiB");
        cfg->max_outbound = (size_t)u64;
        break;
      case O_SEED:
        if (tern_bench_parse_size(v, &u64) < 0) return fail(err, errlen, "--seed: a number");
        cfg->seed = u64 ? u64 : 1;
        break;
      case O_IDLE:
        cfg->idle = true;
        break;
      case O_JSON:
        if (strlen(v) >= sizeof cfg->json_path) return fail(err, errlen, "--json: path too long");
        copy(cfg->json_path, sizeof cfg->json_path, v);
        break;
      case O_QUIET:
        cfg->quiet = true;
        break;
      case O_INFLIGHT:
        if (parse_u32(v, 1, 1u << 24, &cfg->inflight) < 0) return fail(err, errlen, "--inflight: 1 to 16777216");
        break;
      case O_GROUPS:
        if (parse_u32(v, 1, TERN_BENCH_MAX_GROUPS, &cfg->groups) < 0)
          return fail(err, errlen, "--groups: 1 to %u", TERN_BENCH_MAX_GROUPS);
        break;
      case O_GROUP_SIZE:
        if (parse_u32(v, 2, TERN_BENCH_MAX_GROUP_SIZE, &cfg->group_size) < 0)
          return fail(err, errlen, "--group-size: 2 to %u", TERN_BENCH_MAX_GROUP_SIZE);
        break;
      case O_MUC_DOMAIN:
        if (strlen(v) < 1 || strlen(v) >= sizeof cfg->muc_domain) return fail(err, errlen, "--muc-domain: 1-255 bytes");
        copy(cfg->muc_domain, sizeof cfg->muc_domain, v);
        break;
      case O_HELP:
        return 1;
      case '?':
      default:
        if (optopt) return fail(err, errlen, "unknown flag or missing value: -%c", optopt);
        return fail(err, errlen, "unknown flag or missing value: %s", argv[optind - 1]);
    }
  }
  if (optind < argc) return fail(err, errlen, "unexpected argument '%s'", argv[optind]);

  if (!server_set)
    copy(cfg->server, sizeof cfg->server, cfg->proto == TERN_BENCH_PROTO_XMPP ? "127.0.0.1:5222" : "http://127.0.0.1:8080");
  if (cfg->proto == TERN_BENCH_PROTO_XMPP) {
    if (!cfg->domain[0]) copy(cfg->domain, sizeof cfg->domain, "localhost");
    if (cfg->devices != 1) return fail(err, errlen, "--protocol xmpp: one device per user (--devices 1)");
    if (cfg->receipts == TERN_BENCH_RECEIPTS_READ)
      return fail(err, errlen, "--protocol xmpp: --receipts read has no XMPP equivalent here (XEP-0333 is not measured)");
  }
  if (cfg->group_size && !cfg->groups) return fail(err, errlen, "--group-size: only with --groups N");
  if (cfg->groups) {
    if (!cfg->group_size) cfg->group_size = 8;
    if (cfg->group_size > cfg->users)
      return fail(err, errlen, "--group-size: at most --users (%u): a group's members are distinct users", cfg->users);
    if (cfg->offline > 0) return fail(err, errlen, "--groups: not with --offline (every member is online)");
    if (cfg->idle) return fail(err, errlen, "--groups: not with --idle");
    if (cfg->one_way || cfg->peers != TERN_BENCH_PEERS_PAIRS)
      return fail(err, errlen, "--groups: every member sends to its groups (no --peers, no --one-way)");
    if (cfg->receipts == TERN_BENCH_RECEIPTS_READ) return fail(err, errlen, "--groups: --receipts on or off");
    if ((uint64_t)cfg->groups * cfg->group_size > (1u << 26))
      return fail(err, errlen, "--groups × --group-size: at most %u memberships", 1u << 26);
  }
  if (cfg->proto == TERN_BENCH_PROTO_XMPP && cfg->groups && !cfg->muc_domain[0])
    snprintf(cfg->muc_domain, sizeof cfg->muc_domain, "conference.%.240s", cfg->domain);
  uint64_t all = (uint64_t)cfg->users * cfg->devices;
  if (all > TERN_BENCH_MAX_DEVS) return fail(err, errlen, "users × devices: at most %u", TERN_BENCH_MAX_DEVS);
  if (cfg->connections == 0) cfg->connections = (uint32_t)all;
  if (cfg->connections > all) return fail(err, errlen, "--connections: at most users × devices (%llu)", (unsigned long long)all);
  if (cfg->one_way && cfg->peers != TERN_BENCH_PEERS_PAIRS) return fail(err, errlen, "--one-way: only with --peers pairs");
  if (cfg->rate > 0 && cfg->total_rate > 0) return fail(err, errlen, "--rate and --total-rate: one or the other");
  if (!cfg->idle && cfg->users < 2) return fail(err, errlen, "--users: at least 2 to send messages");
  if (cfg->max_messages && !duration_set) cfg->duration_ms = 0; /* the window ends with the last message */
  if (cfg->max_messages && !warmup_set) cfg->warmup_ms = 0;
  if (!cfg->idle && !cfg->duration_ms && !cfg->max_messages)
    return fail(err, errlen, "--duration 0 needs --messages N (the window must end somewhere)");
  if (cfg->idle && !duration_set) cfg->duration_ms = 0;
  if (cfg->idle && !warmup_set) cfg->warmup_ms = 0;
  if (!cfg->prefix[0]) {
    /* A random prefix keeps repeated runs against one server apart. */
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    uint8_t r[5];
    tern_random(r, sizeof r);
    cfg->prefix[0] = 'b';
    for (int i = 0; i < 5; i++) cfg->prefix[1 + i] = alphabet[r[i] % 36];
    cfg->prefix[6] = '_';
    cfg->prefix[7] = '\0';
  }
  /* The longest name must still be a valid user name (≤ 32 characters). */
  char longest[64];
  snprintf(longest, sizeof longest, "%s%u", cfg->prefix, cfg->users - 1);
  if (strlen(longest) > 32) return fail(err, errlen, "--prefix: too long for %u users (names ≤ 32 chars)", cfg->users);
  if (strlen(longest) < 3) return fail(err, errlen, "--prefix: names must be ≥ 3 characters; use a longer prefix");
  return 0;
}
