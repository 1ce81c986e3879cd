/* metrics: Prometheus text exposition of PROTOCOL.md section 9. */
#include "core/metrics.h"

#include "core/groups.h"
#include "core/limits.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"

#include "media/media.h"
#include "net/server.h"
#include "push/push.h"

const double tern_hist_bounds[TERN_HIST_NBUCKETS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                     0.005,   0.01,   0.025,   0.05,   0.1,   0.25};

void tern_hist_observe(tern_hist *h, double seconds) {
  size_t i = 0;
  while (i < TERN_HIST_NBUCKETS && seconds > tern_hist_bounds[i]) i++;
  h->buckets[i]++;
  h->count++;
  h->sum += seconds;
}

static void counter(tern_buf *b, const char *name, const char *help, uint64_t v) {
  tern_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s ", name, help, name, name);
  tern_buf_put_u64(b, v);
  tern_buf_putc(b, '\n');
}

static void gauge(tern_buf *b, const char *name, const char *help, int64_t v) {
  tern_buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s ", name, help, name, name);
  tern_buf_put_i64(b, v);
  tern_buf_putc(b, '\n');
}

/* The process's resident set from /proc/self/statm (procfs: answered from memory, never
 * from a disk), or -1. */
static int64_t resident_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long long size = 0, res = -1;
  if (fscanf(f, "%lld %lld", &size, &res) != 2) res = -1;
  fclose(f);
  long page = sysconf(_SC_PAGESIZE);
  return res < 0 || page <= 0 ? -1 : (int64_t)res * page;
}

static void histogram(tern_buf *b, const char *name, const char *help, const double *bounds, size_t nb,
                      const uint64_t *buckets, uint64_t count, double sum) {
  tern_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < nb; i++) {
    cum += buckets[i];
    tern_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
  }
  cum += buckets[nb];
  tern_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
  tern_buf_printf(b, "%s_sum %.9f\n%s_count %llu\n", name, sum, name, (unsigned long long)count);
}

/* Another worker's counters, read with relaxed atomic loads: each worker's have one writer,
 * its own loop, and a scrape needs only a recent value of each. */
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static void hist_add(tern_hist *to, const tern_hist *h) {
  for (size_t i = 0; i <= TERN_HIST_NBUCKETS; i++) to->buckets[i] += LOAD(h->buckets[i]);
  to->count += LOAD(h->count);
  double sum;
  __atomic_load(&h->sum, &sum, __ATOMIC_RELAXED);
  to->sum += sum;
}

static void metrics_add(tern_metrics *to, const tern_metrics *m) {
  to->messages_sent += LOAD(m->messages_sent);
  to->envelopes_delivered += LOAD(m->envelopes_delivered);
  to->receipts_delivered += LOAD(m->receipts_delivered);
  to->receipts_read += LOAD(m->receipts_read);
  to->group_messages += LOAD(m->group_messages);
  to->fanout_direct += LOAD(m->fanout_direct);
  to->fanout_group += LOAD(m->fanout_group);
  hist_add(&to->send_to_sent, &m->send_to_sent);
}

/* The process's figures, whichever worker's connection the scrape came on: the counters of
 * every worker added up (a lone app's own), plus per-worker gauges of the connections, which
 * show how the listeners spread them. The directory, groups and limits are the same on every
 * worker (copies, or shared), so those come from this one. */
void tern_metrics_render(tern_app *a, tern_buf *b) {
  tern_app *lone[1] = {a};
  tern_app **apps = a->group ? a->group->apps : lone;
  unsigned n = a->group ? a->group->napps : 1;
  tern_metrics sum = {0};
  int64_t ws = 0, tcp = 0;
  const struct tern_push *push[64];
  size_t npush = 0;
  for (unsigned i = 0; i < n; i++) {
    metrics_add(&sum, &apps[i]->metrics);
    if (apps[i]->net) {
      ws += (int64_t)tern_net_ws_connections(apps[i]->net);
      tcp += (int64_t)tern_net_connections(apps[i]->net);
    }
    /* a stopping worker closes its push instance */
    if (npush < TERN_ARRAY_LEN(push) && !LOAD(apps[i]->stopping)) push[npush++] = LOAD(apps[i]->push);
  }
  const tern_metrics *m = &sum;
  gauge(b, "tern_connections", "Open WebSocket connections.", ws);
  gauge(b, "tern_http_connections", "Open TCP connections (HTTP and WebSocket).", tcp);
  if (a->group) {
    tern_buf_puts(b, "# HELP tern_worker_connections Open WebSocket connections, by worker (event loop).\n"
                     "# TYPE tern_worker_connections gauge\n");
    for (unsigned i = 0; i < n; i++)
      tern_buf_printf(b, "tern_worker_connections{worker=\"%u\"} %lld\n", i,
                      apps[i]->net ? (long long)tern_net_ws_connections(apps[i]->net) : 0LL);
    tern_buf_puts(b, "# HELP tern_worker_messages_sent_total Messages made durable and answered with sent, by "
                     "the sender's worker.\n# TYPE tern_worker_messages_sent_total counter\n");
    for (unsigned i = 0; i < n; i++)
      tern_buf_printf(b, "tern_worker_messages_sent_total{worker=\"%u\"} %llu\n", i,
                      (unsigned long long)LOAD(apps[i]->metrics.messages_sent));
    tern_buf_puts(b, "# HELP tern_worker_envelopes_delivered_total Envelopes written to a device's connection, "
                     "by the device's worker.\n# TYPE tern_worker_envelopes_delivered_total counter\n");
    for (unsigned i = 0; i < n; i++)
      tern_buf_printf(b, "tern_worker_envelopes_delivered_total{worker=\"%u\"} %llu\n", i,
                      (unsigned long long)LOAD(apps[i]->metrics.envelopes_delivered));
  }
  counter(b, "tern_messages_sent_total", "Messages made durable and answered with sent.", m->messages_sent);
  tern_limits_render(a->limits, a->net, b);
  counter(b, "tern_envelopes_delivered_total", "Envelopes written to a device's connection.",
          m->envelopes_delivered);
  gauge(b, "tern_inbox_envelopes", "Envelopes stored right now, waiting for an ack.",
        tern_store_inbox_total(a->store));
  tern_store_memory sm;
  if (tern_store_memory_read(a->store, &sm)) {
    tern_buf_puts(b, "# HELP tern_store_memory_bytes Memory the store holds, by part (sampled about once a second "
                     "while it commits).\n# TYPE tern_store_memory_bytes gauge\n");
    tern_buf_printf(b, "tern_store_memory_bytes{part=\"memtables\"} %lld\n", (long long)sm.memtables);
    tern_buf_printf(b, "tern_store_memory_bytes{part=\"block_cache\"} %lld\n", (long long)sm.block_cache);
    tern_buf_printf(b, "tern_store_memory_bytes{part=\"table_readers\"} %lld\n", (long long)sm.table_readers);
    tern_buf_printf(b, "tern_store_memory_bytes{part=\"envelope_cache\"} %lld\n", (long long)sm.envelope_cache);
  }
  int64_t rss = resident_bytes();
  if (rss >= 0) gauge(b, "process_resident_memory_bytes", "Resident memory of the ternd process.", rss);
  tern_buf_puts(b, "# HELP tern_receipts_total Receipts made, by status.\n# TYPE tern_receipts_total counter\n");
  tern_buf_printf(b, "tern_receipts_total{status=\"delivered\"} %llu\n", (unsigned long long)m->receipts_delivered);
  tern_buf_printf(b, "tern_receipts_total{status=\"read\"} %llu\n", (unsigned long long)m->receipts_read);
  /* the media store lives on the media worker (app.h) */
  const tern_app *ma = apps[0];
  gauge(b, "tern_media_bytes", "Bytes of media stored (originals and thumbnails, each content once).",
        LOAD(ma->media) ? tern_media_bytes(LOAD(ma->media)) : 0);
  tern_buf_puts(b, "# HELP tern_push_total Push notifications by provider and result.\n# TYPE tern_push_total counter\n");
  tern_push_metrics_render_sum(push, npush, b);
  gauge(b, "tern_groups", "Groups that exist.", (int64_t)tern_groups_count(a->groups));
  counter(b, "tern_group_messages_total", "Group messages made durable and answered with sent.", m->group_messages);
  tern_buf_puts(b, "# HELP tern_fanout_envelopes_total Envelopes appended for messages, by kind of send.\n"
                   "# TYPE tern_fanout_envelopes_total counter\n");
  tern_buf_printf(b, "tern_fanout_envelopes_total{kind=\"direct\"} %llu\n", (unsigned long long)m->fanout_direct);
  tern_buf_printf(b, "tern_fanout_envelopes_total{kind=\"group\"} %llu\n", (unsigned long long)m->fanout_group);
  gauge(b, "tern_shared_bodies", "Group message bodies stored right now (each once).", tern_store_shared_bodies(a->store));
  gauge(b, "tern_users", "Registered users.", (int64_t)tern_dir_nusers(a->dir));
  gauge(b, "tern_devices", "Devices (logins) that exist.", (int64_t)tern_dir_ndevices(a->dir));
  tern_store_commit_hist ch;
  tern_store_commit_hist_read(a->store, &ch);
  histogram(b, "tern_store_commit_seconds", "Duration of one synced group commit.", tern_store_commit_buckets,
            TERN_STORE_COMMIT_NBUCKETS, ch.buckets, ch.count, ch.sum);
  histogram(b, "tern_send_to_sent_seconds", "From a send frame's arrival to its sent answer.", tern_hist_bounds,
            TERN_HIST_NBUCKETS, m->send_to_sent.buckets, m->send_to_sent.count, m->send_to_sent.sum);
}
