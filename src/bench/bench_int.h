/* bench_int.h: the pieces of tern-bench shared between its .c files and its unit tests.
 *
 * Layout of the library:
 *   args.c    scenario flags → tern_bench_config
 *   lat.c     exact latency recording (1 µs buckets + an overflow list)
 *   u64map.c  open-addressing hash map uint64 → uint64 (msg ids, per-pair counters)
 *   proc.c    /proc/PID sampling (CPU seconds, RSS, peak RSS)
 *   engine.c  the protocol-independent run: phases, schedule, records, verification
 *   membership.c  group mode: which users are in which group (arithmetic), group ids
 *   report.c  the table on stdout and the JSON document
 *   drv_tern.c  the tern protocol driver (libtern-client)
 *   xmpp.c    the XMPP client logic: a small XML stream tokenizer and the session state
 *             machine, with no I/O (unit-tested against recorded exchanges)
 *   drv_xmpp.c  the XMPP driver (the logic of xmpp.c on libuv TCP connections)
 *
 * Everything runs on one libuv loop thread. */
#ifndef TERN_BENCH_BENCH_INT_H
#define TERN_BENCH_BENCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "base/buf.h"
#include "bench/bench.h"

/* ---- configuration ---- */

typedef enum { TERN_BENCH_PROTO_TERN = 0, TERN_BENCH_PROTO_XMPP } tern_bench_proto;
typedef enum { TERN_BENCH_PEERS_PAIRS = 0, TERN_BENCH_PEERS_RANDOM } tern_bench_peers;
typedef enum { TERN_BENCH_RECEIPTS_OFF = 0, TERN_BENCH_RECEIPTS_ON, TERN_BENCH_RECEIPTS_READ } tern_bench_receipts;

#define TERN_BENCH_MAX_DEVICES 16          /* per user: the server's default devices.max_per_user */
#define TERN_BENCH_MAX_USERS (1u << 22)    /* fits the per-pair order key (see engine.c) */
#define TERN_BENCH_MAX_DEVS (1u << 21)     /* devices in total, same reason */
#define TERN_BENCH_PREFIX_MAX 20           /* user names are prefix + index, ≤ 32 chars */
#define TERN_BENCH_MAX_GROUPS (1u << 21)   /* group index in the per-pair order key */
#define TERN_BENCH_MAX_GROUP_SIZE 4096     /* the server's cap is lower (1024 by default) */

typedef struct tern_bench_config {
  tern_bench_proto proto;     /* --protocol tern|xmpp */
  char server[256];           /* --server: URL (tern) or HOST:PORT (xmpp) */
  char domain[256];           /* --domain: XMPP domain (default: the server's host) */
  uint32_t users;             /* --users N */
  uint32_t devices;           /* --devices D per user */
  uint32_t connections;       /* --connections C (0: users × devices) */
  tern_bench_peers peers;     /* --peers pairs|random */
  bool one_way;               /* --one-way: in pairs, only user 2i sends (to 2i+1) */
  double rate;                /* --rate R messages/s per sending user (0: not given) */
  double total_rate;          /* --total-rate R messages/s in total (0: not given) */
  uint32_t window;            /* --window W: closed loop, messages in flight per sending device */
  uint32_t inflight;          /* --inflight M: closed loop, messages in flight in all (0: no cap) */
  uint32_t body;              /* --body BYTES */
  double offline;             /* --offline RATIO of users kept disconnected while sending */
  tern_bench_receipts receipts; /* --receipts off|on|read */
  uint64_t duration_ms;       /* --duration: the measured window (idle mode: how long to hold) */
  uint64_t warmup_ms;         /* --warmup: sending, not measured */
  uint64_t settle_ms;         /* --settle: longest wait for outstanding answers after sending */
  uint64_t max_messages;      /* --messages N: stop sending after N messages (0: no cap) */
  char json_path[1024];       /* --json FILE ("" none, "-" stdout) */
  int server_pid;             /* --server-pid PID (0: none) */
  char prefix[TERN_BENCH_PREFIX_MAX + 1]; /* --prefix for user names */
  char password[129];         /* --password */
  bool idle;                  /* --idle: open connections, hold them, measure memory */
  uint32_t register_concurrency; /* --register-concurrency */
  uint32_t xmpp_ack_every;       /* --xmpp-ack-every: stanzas between XEP-0198 <r/>s */
  uint32_t connect_concurrency;  /* --connect-concurrency: connects pending at once */
  uint32_t source_ips;        /* --source-ips N: spread connections over 127.0.0.1..N (0: auto) */
  size_t max_outbound;        /* --max-outbound BYTES queued per connection before we wait */
  bool quiet;                 /* --quiet: no progress lines */
  uint64_t seed;              /* --seed for random peers */
  uint32_t groups;            /* --groups N: group mode, N groups (0: 1:1 messages) */
  uint32_t group_size;        /* --group-size K members per group (the creator included) */
  char muc_domain[256];       /* --muc-domain: xmpp group mode, the MUC service (default
                                 conference.DOMAIN) */
} tern_bench_config;

/* Fills cfg from argv. Returns 0, 1 when --help was printed, or -1 with a message in err. */
int tern_bench_parse_args(int argc, char **argv, tern_bench_config *cfg, char *err, size_t errlen);
/* "10s", "500ms", "2m", "1h", a bare number is seconds. Returns 0 or -1. */
int tern_bench_parse_duration(const char *s, uint64_t *ms);
/* "1000", "1000/s", "2.5k". Returns 0 or -1. */
int tern_bench_parse_rate(const char *s, double *out);
/* "100", "4KiB", "1MiB". Returns 0 or -1. */
int tern_bench_parse_size(const char *s, uint64_t *out);

/* ---- exact latency recording ----
 * Every sample is counted: 1 µs buckets below 2^21 µs (about 2.1 s), and every larger value is
 * kept in a list. Percentiles are nearest-rank on the exact data, so p99.999 of a million
 * samples is the 999,990th smallest value, not an estimate. */

#define TERN_BENCH_LAT_FINE_BITS 21
#define TERN_BENCH_LAT_BLOCK_BITS 10 /* coarse blocks of 1024 µs, to find a rank quickly */

typedef struct tern_bench_lat {
  uint32_t *fine;      /* count per µs, allocated on first use */
  uint32_t *block;     /* count per 1024 µs block */
  uint32_t *over;      /* values ≥ 2^21 µs */
  size_t n_over;
  size_t cap_over;
  bool over_sorted;    /* over is sorted (cleared on add) */
  uint64_t n;          /* samples */
  uint64_t sum;        /* µs, for the mean */
  uint32_t max;        /* µs */
} tern_bench_lat;

void tern_bench_lat_add(tern_bench_lat *l, uint32_t us);
/* The nearest-rank percentile p (0 < p ≤ 100) in µs; 0 when empty. */
uint32_t tern_bench_lat_pct(tern_bench_lat *l, double p);
double tern_bench_lat_mean(const tern_bench_lat *l);
void tern_bench_lat_free(tern_bench_lat *l);

/* ---- uint64 → uint64 hash map (open addressing, linear probing) ---- */

typedef struct tern_bench_u64map {
  uint64_t *keys;  /* 0 marks an empty slot; key 0 lives in zero_val */
  uint64_t *vals;
  size_t cap;      /* power of two, or 0 */
  size_t n;        /* entries, key 0 included */
  bool has_zero;
  uint64_t zero_val;
} tern_bench_u64map;

bool tern_bench_u64map_get(const tern_bench_u64map *m, uint64_t key, uint64_t *val);
/* Returns a pointer to key's value, inserting it as 0 (and setting *created) when absent.
 * The pointer is valid until the next insert. */
uint64_t *tern_bench_u64map_slot(tern_bench_u64map *m, uint64_t key, bool *created);
void tern_bench_u64map_free(tern_bench_u64map *m);

/* ---- /proc sampling ---- */

typedef struct tern_bench_proc {
  bool ok;               /* the sample was read */
  double cpu_s;          /* utime + stime of every thread, seconds */
  double utime_s, stime_s;
  uint64_t rss_kib;      /* VmRSS */
  uint64_t hwm_kib;      /* VmHWM: peak RSS */
  uint64_t threads;      /* Threads */
  uint64_t fds;          /* open file descriptors (entries of /proc/PID/fd) */
} tern_bench_proc;

/* Reads /proc/PID/stat and /proc/PID/status. Returns 0 or a negative errno (out->ok false). */
int tern_bench_proc_sample(int pid, tern_bench_proc *out);
/* This process's own CPU seconds (getrusage). */
double tern_bench_self_cpu(void);

/* ---- the run ---- */

typedef struct tern_bench tern_bench;
typedef struct tern_bench_dev tern_bench_dev;

typedef struct tern_bench_user {
  char name[33];        /* prefix + index */
  uint32_t first_dev;   /* its devices are first_dev .. first_dev + devices - 1 */
  uint32_t peer;        /* pairs mode: the other user of the pair (UINT32_MAX: none) */
  uint32_t live_mask;   /* devices connected while sending (bit per device number) */
  uint32_t late_mask;   /* devices connected only for the drain (offline users) */
  bool offline;         /* kept disconnected while sending */
  bool sender;          /* sends messages */
} tern_bench_user;

typedef enum {
  TERN_BENCH_DEV_NEW = 0,     /* not provisioned yet */
  TERN_BENCH_DEV_IDLE,        /* provisioned, not connected */
  TERN_BENCH_DEV_CONNECTING,  /* connect started */
  TERN_BENCH_DEV_READY,       /* authenticated */
  TERN_BENCH_DEV_SYNCED,      /* stored envelopes drained, live from here */
  TERN_BENCH_DEV_FAILED,      /* gave up connecting */
} tern_bench_dev_state;

struct tern_bench_dev {
  tern_bench *b;             /* the run it belongs to (for driver callbacks) */
  uint32_t idx;              /* index in b->devs */
  uint32_t user;             /* owner */
  uint8_t devno;             /* 0 .. devices-1 */
  uint8_t state;             /* tern_bench_dev_state */
  bool mine;                 /* gets a connection (the first --connections devices) */
  bool late;                 /* connected only for the drain */
  bool ack_dirty;            /* the driver's flush has work (acks, reads, XEP-0198 requests) */
  bool refill_queued;        /* in the closed-loop refill list */
  bool closing;              /* we closed it on purpose */
  uint8_t attempts;          /* connect attempts so far */
  char *token;               /* tern: the device's token */
  char *device_id;           /* tern: the server's id for it */
  void *conn;                /* the driver's connection, or NULL */
  uint64_t last_seq;         /* tern: highest envelope seq seen (client de-dup) */
  uint64_t acked_seq;        /* tern: highest seq acked */
  uint32_t inflight;         /* closed loop: its messages not yet complete */
  uint32_t next_dirty;       /* link in b's dirty list (UINT32_MAX: end) */
  uint32_t next_refill;      /* link in b's refill list */
  tern_buf reads;            /* tern --receipts read: pending "msg_id\0" runs for one peer */
  uint32_t read_peer;        /* the peer of reads (UINT32_MAX: none) */
  uint32_t n_reads;          /* ids in reads */
  uint64_t connect_ns;       /* when the last connect started */
};

/* What a protocol driver provides. Every function runs on the loop thread. */
typedef struct tern_bench_driver {
  const char *name;
  /* Registers every user (and logs in their extra devices) that this process provisions,
   * then calls tern_bench_provision_done. */
  void (*provision)(tern_bench *b);
  /* Starts connecting d: tern_bench_on_ready (then _on_synced) or tern_bench_on_closed follow.
   * Returns 0 or a negative code (no callback then). */
  int (*connect)(tern_bench *b, tern_bench_dev *d, const char *bind_ip);
  /* Sends message gidx from d to user `to`. Returns 0 or a negative code. */
  int (*send)(tern_bench *b, tern_bench_dev *d, uint64_t gidx, const tern_bench_user *to, const char *body,
              size_t len);
  /* Group mode: sends message gidx from d to group g (b->group_ids[g]). 0 or a negative code. */
  int (*send_group)(tern_bench *b, tern_bench_dev *d, uint64_t gidx, uint32_t g, const char *body, size_t len);
  /* Group mode, once every device is connected: creates the groups (tern: REST; XMPP: the
   * members join MUC rooms), then calls tern_bench_groups_done. */
  void (*setup_groups)(tern_bench *b);
  /* Once per loop iteration for each device marked dirty: acks, read receipts, ack requests. */
  void (*flush)(tern_bench *b, tern_bench_dev *d);
  /* Bytes queued on d's connection and not yet written. */
  size_t (*outbound)(const tern_bench_dev *d);
  /* Closes d's connection (tern_bench_on_closed follows, with expected = true). */
  void (*disconnect)(tern_bench *b, tern_bench_dev *d);
  /* Drops every connection still open (no callbacks) and closes the driver's handles; the
   * engine then runs the loop until they are closed, and calls release. */
  void (*free)(tern_bench *b);
  /* Frees the driver's memory. */
  void (*release)(tern_bench *b);
} tern_bench_driver;

extern const tern_bench_driver tern_bench_driver_tern;
extern const tern_bench_driver tern_bench_driver_xmpp;

/* The engine's state, visible to drivers for the configuration, users and devices. */
struct tern_bench {
  tern_bench_config cfg;
  uv_loop_t *loop;
  const tern_bench_driver *drv;
  void *drv_ctx;                /* the driver's own state */
  tern_bench_user *users;
  uint32_t n_users;
  tern_bench_dev *devs;
  uint32_t n_devs;
  struct tern_bench_engine *e;  /* the engine's private state (engine.c) */
  /* Group mode (cfg.groups > 0): group g's members are users (g·K + j) mod users, j < K, so
   * each user is in about groups·K/users of them, and member 0 creates it. */
  uint32_t n_groups;
  uint32_t group_size;
  char (*group_ids)[72];        /* tern: the server's group_id; XMPP: the room's local part */
  uint32_t *user_groups_off;    /* user u's groups: user_groups[off[u] .. off[u+1]) */
  uint32_t *user_groups;
  tern_bench_u64map group_by_id; /* hash of a group id → group index */
};

/* Group membership (membership.c). */
/* The user at position j (0 .. K-1) of group g; position 0 is the creator. */
uint32_t tern_bench_group_member(const tern_bench *b, uint32_t g, uint32_t j);
/* The position of user u in group g, or UINT32_MAX when u is not a member. */
uint32_t tern_bench_group_pos(const tern_bench *b, uint32_t g, uint32_t u);
/* Builds user_groups (b->users, n_users, n_groups, group_size set). */
void tern_bench_groups_build(tern_bench *b);
/* Records group g's id (the driver learnt it from the server, or made it). */
void tern_bench_group_set_id(tern_bench *b, uint32_t g, const char *id, size_t len);
/* The group whose id is id, or UINT32_MAX. */
uint32_t tern_bench_group_of_id(const tern_bench *b, const char *id, size_t len);
void tern_bench_groups_free(tern_bench *b);

/* Called by drivers. */
void tern_bench_provision_progress(tern_bench *b, uint32_t done, uint32_t total);
void tern_bench_provision_done(tern_bench *b, int err, const char *why);
void tern_bench_on_ready(tern_bench *b, tern_bench_dev *d);
void tern_bench_on_synced(tern_bench *b, tern_bench_dev *d);
/* The server answered message gidx as durable; msgid is a hash of the server's message id
 * (the id a client de-duplicates by), 0 when the protocol has none. */
void tern_bench_on_sent(tern_bench *b, tern_bench_dev *d, uint64_t gidx, uint64_t msgid);
/* Group mode: the groups are set up (err 0) or could not be (a negative code and why). */
void tern_bench_groups_done(tern_bench *b, int err, const char *why);
/* Group mode: progress of the setup, for the progress line. */
void tern_bench_groups_progress(tern_bench *b, const char *what, uint32_t done, uint32_t total);
/* A group message arrived at d: as tern_bench_on_msg, with the group's id. */
void tern_bench_on_group_msg(tern_bench *b, tern_bench_dev *d, const char *group, size_t group_len, const char *from,
                             size_t from_len, uint64_t msgid, const char *body, size_t len);
/* A message arrived at d. from is the sender's user name; msgid as above; the body is ours.
 * The driver has already dropped envelopes it had seen (by their seq). */
void tern_bench_on_msg(tern_bench *b, tern_bench_dev *d, const char *from, size_t from_len, uint64_t msgid,
                       const char *body, size_t len);
/* A delivered (read = false) or read receipt for message gidx arrived at d. */
void tern_bench_on_receipt(tern_bench *b, tern_bench_dev *d, uint64_t gidx, bool read);
/* The message whose server id hashes to msgid, or UINT64_MAX when unknown. */
uint64_t tern_bench_gidx_of_msgid(tern_bench *b, uint64_t msgid);
/* An error answer: gidx is the message it answers, or UINT64_MAX for none. */
void tern_bench_on_error(tern_bench *b, tern_bench_dev *d, uint64_t gidx, const char *code);
/* d's connection ended; why is a short reason ("4003", "ECONNREFUSED", ...). */
void tern_bench_on_closed(tern_bench *b, tern_bench_dev *d, const char *why);
/* d has work for the driver's flush at the end of this loop iteration. */
void tern_bench_mark_dirty(tern_bench *b, tern_bench_dev *d);
/* Counts an envelope the driver dropped as already seen (at-least-once redelivery). */
void tern_bench_note_redelivered(tern_bench *b, tern_bench_dev *d);
/* XMPP group mode: the room's reflection of d's own message (not a delivery). */
void tern_bench_note_reflected(tern_bench *b, tern_bench_dev *d);
/* Counts an error not tied to a message (e.g. "register:network"). */
void tern_bench_count_error(tern_bench *b, const char *code);

/* Body format: "<gidx>:<pair_seq>:" padded with 'x' to the body size. Returns the length. */
size_t tern_bench_body_format(char *out, size_t cap, uint64_t gidx, uint32_t pair_seq, uint32_t body);
/* Parses a body; returns 0 or -1. */
int tern_bench_body_parse(const char *body, size_t len, uint64_t *gidx, uint32_t *pair_seq);
/* Client message ids: "g<gidx>" and back (UINT64_MAX when s is not one of ours). */
void tern_bench_client_id(char out[24], uint64_t gidx);
uint64_t tern_bench_client_id_parse(const char *s, size_t len);
/* The user index of a name made with our prefix, or UINT32_MAX. */
uint32_t tern_bench_user_of_name(const tern_bench *b, const char *name, size_t len);

/* ---- the report ---- */

/* What the engine measured, handed to report.c. */
typedef struct tern_bench_lat_summary {
  uint64_t n;
  uint32_t p50, p90, p99, p999, p99999, max;
  double mean;
} tern_bench_lat_summary;

typedef struct tern_bench_error_count {
  char code[48];
  uint64_t n;
} tern_bench_error_count;

typedef struct tern_bench_results {
  /* timing */
  double register_s;          /* provisioning wall time */
  double connect_s;           /* first connect to the last ready */
  double connect_rate;        /* connections ready per second */
  double window_s;            /* the measured window */
  /* throughput in the window */
  uint64_t w_sent;            /* "sent" answers */
  uint64_t w_msgs;            /* messages delivered (first delivery of each to its recipient) */
  uint64_t w_envelopes;       /* every fresh message envelope, copies and devices included */
  uint64_t w_receipts;        /* messages whose delivered receipt reached the sender */
  uint64_t w_reads;           /* read receipts at the sender */
  double sent_per_s, delivered_per_s, envelopes_per_s, receipts_per_s, reads_per_s;
  /* whole run */
  uint64_t messages;          /* send calls (resends not counted) */
  uint64_t answered;          /* "sent" answers */
  uint64_t errored;           /* error answers */
  uint64_t deliveries;        /* fresh message envelopes delivered */
  uint64_t receipts;          /* delivered receipts at the sender */
  uint64_t reads;             /* read receipts at the sender */
  uint64_t behind;            /* open loop: messages skipped because the schedule ran >1 s late */
  uint64_t throttled;         /* sends postponed by back-pressure */
  uint64_t reconnects;
  tern_bench_lat_summary lat_sent, lat_msg, lat_receipt, lat_read, lat_drain;
  tern_bench_error_count *errors;
  size_t n_errors;
  /* verification */
  uint64_t expected_deliveries;
  uint64_t lost;               /* expected deliveries that never came */
  uint64_t duplicates;         /* the same message twice at a device under different ids */
  uint64_t redelivered;        /* at-least-once repeats a client drops (same id or seq) */
  uint64_t reordered;          /* arrived before an earlier message of the same pair */
  uint64_t unanswered;         /* sends that got neither sent nor error */
  uint64_t receipts_missing;
  uint64_t receipt_duplicates;
  uint64_t reads_missing;
  uint64_t misrouted;          /* wrong sender or recipient for the body */
  uint64_t corrupt;            /* body not ours, or not matching its record */
  uint64_t msgid_mismatch;     /* the sent answer and the delivery disagree on the id */
  bool verified_ok;
  bool settle_timed_out;       /* the wait for outstanding answers ended on --settle: what was
                                  still missing then is counted above (a server far behind the
                                  offered rate shows up here, not as a crash) */
  uint64_t outstanding_at_end; /* messages incomplete when the run ended */
  /* offline recipients */
  uint64_t stored;             /* messages sent to offline users */
  uint64_t drained;            /* envelopes delivered to them after reconnecting */
  double drain_s;
  double drain_per_s;
  /* server and bench resources */
  tern_bench_proc srv_start, srv_end, srv_idle_before, srv_idle_after;
  double srv_cpu_s;            /* CPU in the measured window */
  double srv_cpu_us_per_msg;   /* per delivered message in the window */
  double bench_cpu_s;          /* our own CPU in the window */
  /* idle mode */
  uint64_t idle_connected;
  uint64_t idle_failed;
  double idle_kib_per_conn;
  /* the sending rate asked for */
  double target_rate;          /* messages/s in total, 0 for closed loop */
  /* group mode */
  double groups_setup_s;       /* creating the groups / joining the rooms */
  uint64_t w_group_complete;   /* messages sent in the window that reached every member */
  double group_msgs_per_s;     /* "sent" answers per second in the window */
  double member_deliveries_per_s; /* fresh deliveries at member devices per second */
  tern_bench_lat_summary lat_last; /* send → delivered to the last member device */
  uint64_t reflected;          /* XMPP: the room's copy back to the sender (not counted) */
  double memberships_per_user; /* groups·K / users */
} tern_bench_results;

/* Prints the table on stdout. */
void tern_bench_report_table(const tern_bench *b, const tern_bench_results *r, FILE *out);
/* Writes the JSON document to path ("-" for stdout). Returns 0 or -1. */
int tern_bench_report_json(const tern_bench *b, const tern_bench_results *r, const char *path);
/* The JSON document as a string (caller frees with tern_free). */
char *tern_bench_report_json_string(const tern_bench *b, const tern_bench_results *r);

/* Runs a scenario: the engine. Returns the exit status. */
int tern_bench_run(const tern_bench_config *cfg);

#endif
