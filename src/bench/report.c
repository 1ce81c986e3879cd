/* report.c: the end-of-run table (stdout) and JSON document (--json). The JSON keys are a
 * contract with bench/run-baseline and the CI smoke test: add keys, don't rename them. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "bench/bench_int.h"

static const char *receipts_name(tern_bench_receipts r) {
  return r == TERN_BENCH_RECEIPTS_OFF ? "off" : r == TERN_BENCH_RECEIPTS_READ ? "read" : "on";
}

static void lat_row(FILE *out, const char *name, const tern_bench_lat_summary *s) {
  if (!s->n) {
    fprintf(out, "  %-15s %10s\n", name, "-");
    return;
  }
  fprintf(out, "  %-15s %10" PRIu64 " %8u %8u %8u %8u %8u %9u %9.1f\n", name, s->n, s->p50, s->p90, s->p99, s->p999,
          s->p99999, s->max, s->mean);
}

void tern_bench_report_table(const tern_bench *b, const tern_bench_results *r, FILE *out) {
  const tern_bench_config *c = &b->cfg;
  fprintf(out, "\ntern-bench %s @ %s: %u users × %u devices, %u connections, %s\n", b->drv->name, c->server,
          c->users, c->devices, c->connections, c->idle ? "idle" : c->groups ? "groups" : c->peers == TERN_BENCH_PEERS_RANDOM ? "random peers" : c->one_way ? "one-way pairs" : "pairs");
  if (c->idle) {
    fprintf(out, "  connected %" PRIu64 " (failed %" PRIu64 ") in %.2f s: %.0f connections/s\n", r->idle_connected,
            r->idle_failed, r->connect_s, r->connect_rate);
    if (r->srv_idle_before.ok && r->srv_idle_after.ok)
      fprintf(out, "  server RSS %" PRIu64 " KiB before, %" PRIu64 " KiB after: %.2f KiB per connection (fds %" PRIu64 ")\n",
              r->srv_idle_before.rss_kib, r->srv_idle_after.rss_kib, r->idle_kib_per_conn, r->srv_idle_after.fds);
    else
      fprintf(out, "  server RSS: not sampled (give --server-pid)\n");
  } else {
    if (r->target_rate > 0) fprintf(out, "  open loop at %.0f messages/s", r->target_rate);
    else fprintf(out, "  closed loop, window %u per device", c->window);
    if (r->target_rate <= 0 && c->inflight) fprintf(out, ", at most %u in flight", c->inflight);
    fprintf(out, ", %u-byte bodies, receipts %s, offline %.0f%%, window %.2f s\n", c->body, receipts_name(c->receipts),
            c->offline * 100, r->window_s);
    if (c->groups)
      fprintf(out, "  groups: %u × %u members (each user in %.1f on average), set up in %.1f s\n", c->groups,
              c->group_size, r->memberships_per_user, r->groups_setup_s);
    fprintf(out, "\nthroughput (measured window)\n");
    if (c->groups)
      fprintf(out, "  group messages/s %.0f   member deliveries/s %.0f   messages at every member %" PRIu64 "\n",
              r->group_msgs_per_s, r->member_deliveries_per_s, r->w_group_complete);
    fprintf(out, "  sent/s %.0f   delivered/s %.0f   receipts/s %.0f", r->sent_per_s, r->delivered_per_s,
            r->receipts_per_s);
    if (c->receipts == TERN_BENCH_RECEIPTS_READ) fprintf(out, "   reads/s %.0f", r->reads_per_s);
    fprintf(out, "   envelopes/s %.0f\n", r->envelopes_per_s);
    if (c->groups) fprintf(out, "  (send→msg: at each member device; send→last: at the last member device)\n");
    fprintf(out, "\nlatency (µs)              n      p50      p90      p99    p99.9  p99.999       max      mean\n");
    lat_row(out, "send→sent", &r->lat_sent);
    lat_row(out, "send→msg", &r->lat_msg);
    lat_row(out, "send→receipt", &r->lat_receipt);
    if (c->groups) lat_row(out, "send→last", &r->lat_last); /* at the last member device */
    if (c->receipts == TERN_BENCH_RECEIPTS_READ) lat_row(out, "send→read", &r->lat_read);
    if (r->lat_drain.n) lat_row(out, "send→drained", &r->lat_drain);
    fprintf(out, "\nmessages %" PRIu64 ", answered %" PRIu64 ", errors %" PRIu64 ", deliveries %" PRIu64
                 ", receipts %" PRIu64,
            r->messages, r->answered, r->errored, r->deliveries, r->receipts);
    if (r->behind) fprintf(out, ", behind schedule (skipped) %" PRIu64, r->behind);
    if (r->reconnects) fprintf(out, ", reconnects %" PRIu64, r->reconnects);
    if (r->reflected) fprintf(out, ", reflected to the sender (not counted) %" PRIu64, r->reflected);
    fputc('\n', out);
    if (r->stored)
      fprintf(out, "offline: %" PRIu64 " messages stored, %" PRIu64 " envelopes drained in %.2f s: %.0f/s\n", r->stored,
              r->drained, r->drain_s, r->drain_per_s);
  }
  fprintf(out, "errors:");
  if (!r->n_errors) fprintf(out, " none");
  for (size_t i = 0; i < r->n_errors; i++) fprintf(out, " %s=%" PRIu64, r->errors[i].code, r->errors[i].n);
  fputc('\n', out);
  if (!c->idle) {
    fprintf(out,
            "verification: %s (expected deliveries %" PRIu64 ": lost %" PRIu64 ", duplicates %" PRIu64
            ", reordered %" PRIu64 ", unanswered %" PRIu64 ", receipts missing %" PRIu64 ", receipt duplicates %" PRIu64,
            r->verified_ok ? "OK" : "FAILED", r->expected_deliveries, r->lost, r->duplicates, r->reordered,
            r->unanswered, r->receipts_missing, r->receipt_duplicates);
    if (c->receipts == TERN_BENCH_RECEIPTS_READ) fprintf(out, ", reads missing %" PRIu64, r->reads_missing);
    if (r->misrouted || r->corrupt || r->msgid_mismatch)
      fprintf(out, ", misrouted %" PRIu64 ", corrupt %" PRIu64 ", id mismatch %" PRIu64, r->misrouted, r->corrupt,
              r->msgid_mismatch);
    fprintf(out, "; redelivered and dropped by id %" PRIu64 ")\n", r->redelivered);
    if (r->settle_timed_out)
      fprintf(out, "  incomplete: the wait for outstanding answers timed out (--settle) with %" PRIu64
                   " messages incomplete; the server was behind the offered load\n",
              r->outstanding_at_end);
  }
  if (r->srv_start.ok && r->srv_end.ok) {
    double util = r->window_s > 0 ? r->srv_cpu_s / r->window_s * 100 : 0;
    fprintf(out, "server pid %d: CPU %.2f s in the window (%.0f%% of a core), RSS %" PRIu64 " KiB, peak %" PRIu64 " KiB",
            c->server_pid, r->srv_cpu_s, util, r->srv_end.rss_kib, r->srv_end.hwm_kib);
    if (r->srv_cpu_us_per_msg > 0)
      fprintf(out, "\n  %.2f µs CPU per delivered message → %.0f messages/s per core", r->srv_cpu_us_per_msg,
              1e6 / r->srv_cpu_us_per_msg);
    fputc('\n', out);
  }
  if (!c->idle && r->window_s > 0)
    fprintf(out, "bench: CPU %.2f s in the window (%.0f%% of a core)\n", r->bench_cpu_s,
            r->bench_cpu_s / r->window_s * 100);
  fflush(out);
}

static void add_lat(cJSON *o, const char *name, const tern_bench_lat_summary *s) {
  cJSON *l = cJSON_AddObjectToObject(o, name);
  cJSON_AddNumberToObject(l, "n", (double)s->n);
  cJSON_AddNumberToObject(l, "p50", s->p50);
  cJSON_AddNumberToObject(l, "p90", s->p90);
  cJSON_AddNumberToObject(l, "p99", s->p99);
  cJSON_AddNumberToObject(l, "p99_9", s->p999);
  cJSON_AddNumberToObject(l, "p99_999", s->p99999);
  cJSON_AddNumberToObject(l, "max", s->max);
  cJSON_AddNumberToObject(l, "mean", s->mean);
}

static void add_proc(cJSON *o, const char *name, const tern_bench_proc *p) {
  if (!p->ok) {
    cJSON_AddNullToObject(o, name);
    return;
  }
  cJSON *x = cJSON_AddObjectToObject(o, name);
  cJSON_AddNumberToObject(x, "cpu_s", p->cpu_s);
  cJSON_AddNumberToObject(x, "utime_s", p->utime_s);
  cJSON_AddNumberToObject(x, "stime_s", p->stime_s);
  cJSON_AddNumberToObject(x, "rss_kib", (double)p->rss_kib);
  cJSON_AddNumberToObject(x, "peak_rss_kib", (double)p->hwm_kib);
  cJSON_AddNumberToObject(x, "threads", (double)p->threads);
  cJSON_AddNumberToObject(x, "fds", (double)p->fds);
}

char *tern_bench_report_json_string(const tern_bench *b, const tern_bench_results *r) {
  const tern_bench_config *c = &b->cfg;
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "tool", "tern-bench");
  cJSON_AddNumberToObject(root, "format", 1);
  cJSON_AddStringToObject(root, "mode", c->idle ? "idle" : "messaging");

  cJSON *sc = cJSON_AddObjectToObject(root, "scenario");
  cJSON_AddStringToObject(sc, "protocol", b->drv->name);
  cJSON_AddStringToObject(sc, "server", c->server);
  if (c->proto == TERN_BENCH_PROTO_XMPP) cJSON_AddStringToObject(sc, "domain", c->domain);
  cJSON_AddNumberToObject(sc, "users", c->users);
  cJSON_AddNumberToObject(sc, "devices", c->devices);
  cJSON_AddNumberToObject(sc, "connections", c->connections);
  cJSON_AddStringToObject(sc, "peers", c->peers == TERN_BENCH_PEERS_PAIRS ? "pairs" : "random");
  cJSON_AddBoolToObject(sc, "one_way", c->one_way);
  cJSON_AddStringToObject(sc, "loop", r->target_rate > 0 ? "open" : "closed");
  cJSON_AddNumberToObject(sc, "target_rate", r->target_rate);
  cJSON_AddNumberToObject(sc, "window", c->window);
  cJSON_AddNumberToObject(sc, "inflight", c->inflight);
  cJSON_AddNumberToObject(sc, "max_messages", (double)c->max_messages);
  cJSON_AddNumberToObject(sc, "body", c->body);
  cJSON_AddNumberToObject(sc, "offline", c->offline);
  cJSON_AddStringToObject(sc, "receipts", receipts_name(c->receipts));
  cJSON_AddNumberToObject(sc, "duration_s", (double)c->duration_ms / 1000);
  cJSON_AddNumberToObject(sc, "warmup_s", (double)c->warmup_ms / 1000);
  cJSON_AddStringToObject(sc, "prefix", c->prefix);
  cJSON_AddNumberToObject(sc, "groups", c->groups);
  cJSON_AddNumberToObject(sc, "group_size", c->groups ? c->group_size : 0);

  cJSON *ph = cJSON_AddObjectToObject(root, "phases");
  cJSON_AddNumberToObject(ph, "register_s", r->register_s);
  cJSON_AddNumberToObject(ph, "connect_s", r->connect_s);
  cJSON_AddNumberToObject(ph, "connect_per_s", r->connect_rate);
  cJSON_AddNumberToObject(ph, "window_s", r->window_s);

  cJSON *tp = cJSON_AddObjectToObject(root, "throughput");
  cJSON_AddNumberToObject(tp, "sent_per_s", r->sent_per_s);
  cJSON_AddNumberToObject(tp, "delivered_per_s", r->delivered_per_s);
  cJSON_AddNumberToObject(tp, "receipts_per_s", r->receipts_per_s);
  cJSON_AddNumberToObject(tp, "reads_per_s", r->reads_per_s);
  cJSON_AddNumberToObject(tp, "envelopes_per_s", r->envelopes_per_s);
  cJSON_AddNumberToObject(tp, "window_sent", (double)r->w_sent);
  cJSON_AddNumberToObject(tp, "window_delivered", (double)r->w_msgs);
  cJSON_AddNumberToObject(tp, "window_receipts", (double)r->w_receipts);

  cJSON *ct = cJSON_AddObjectToObject(root, "counts");
  cJSON_AddNumberToObject(ct, "messages", (double)r->messages);
  cJSON_AddNumberToObject(ct, "answered", (double)r->answered);
  cJSON_AddNumberToObject(ct, "errored", (double)r->errored);
  cJSON_AddNumberToObject(ct, "deliveries", (double)r->deliveries);
  cJSON_AddNumberToObject(ct, "receipts", (double)r->receipts);
  cJSON_AddNumberToObject(ct, "reads", (double)r->reads);
  cJSON_AddNumberToObject(ct, "behind", (double)r->behind);
  cJSON_AddNumberToObject(ct, "throttled", (double)r->throttled);
  cJSON_AddNumberToObject(ct, "reconnects", (double)r->reconnects);

  cJSON *lat = cJSON_AddObjectToObject(root, "latency_us");
  add_lat(lat, "send_to_sent", &r->lat_sent);
  add_lat(lat, "send_to_msg", &r->lat_msg);
  add_lat(lat, "send_to_receipt", &r->lat_receipt);
  add_lat(lat, "send_to_read", &r->lat_read);
  add_lat(lat, "send_to_drained", &r->lat_drain);
  add_lat(lat, "send_to_last_member", &r->lat_last);

  if (c->groups) {
    cJSON *g = cJSON_AddObjectToObject(root, "groups");
    cJSON_AddNumberToObject(g, "groups", c->groups);
    cJSON_AddNumberToObject(g, "group_size", c->group_size);
    cJSON_AddNumberToObject(g, "memberships_per_user", r->memberships_per_user);
    cJSON_AddNumberToObject(g, "setup_s", r->groups_setup_s);
    cJSON_AddNumberToObject(g, "messages_per_s", r->group_msgs_per_s);
    cJSON_AddNumberToObject(g, "member_deliveries_per_s", r->member_deliveries_per_s);
    cJSON_AddNumberToObject(g, "window_complete", (double)r->w_group_complete);
    cJSON_AddNumberToObject(g, "reflected", (double)r->reflected);
    add_lat(g, "send_to_last_member_us", &r->lat_last);
  }

  cJSON *er = cJSON_AddObjectToObject(root, "errors");
  for (size_t i = 0; i < r->n_errors; i++) cJSON_AddNumberToObject(er, r->errors[i].code, (double)r->errors[i].n);

  cJSON *v = cJSON_AddObjectToObject(root, "verification");
  cJSON_AddBoolToObject(v, "ok", r->verified_ok);
  cJSON_AddNumberToObject(v, "expected_deliveries", (double)r->expected_deliveries);
  cJSON_AddNumberToObject(v, "lost", (double)r->lost);
  cJSON_AddNumberToObject(v, "duplicates", (double)r->duplicates);
  cJSON_AddNumberToObject(v, "reordered", (double)r->reordered);
  cJSON_AddNumberToObject(v, "unanswered", (double)r->unanswered);
  cJSON_AddNumberToObject(v, "receipts_missing", (double)r->receipts_missing);
  cJSON_AddNumberToObject(v, "receipt_duplicates", (double)r->receipt_duplicates);
  cJSON_AddNumberToObject(v, "reads_missing", (double)r->reads_missing);
  cJSON_AddNumberToObject(v, "misrouted", (double)r->misrouted);
  cJSON_AddNumberToObject(v, "corrupt", (double)r->corrupt);
  cJSON_AddNumberToObject(v, "msgid_mismatch", (double)r->msgid_mismatch);
  cJSON_AddNumberToObject(v, "redelivered", (double)r->redelivered);
  cJSON_AddBoolToObject(v, "settle_timed_out", r->settle_timed_out);
  cJSON_AddNumberToObject(v, "outstanding_at_end", (double)r->outstanding_at_end);

  cJSON *off = cJSON_AddObjectToObject(root, "offline");
  cJSON_AddNumberToObject(off, "stored", (double)r->stored);
  cJSON_AddNumberToObject(off, "drained", (double)r->drained);
  cJSON_AddNumberToObject(off, "drain_s", r->drain_s);
  cJSON_AddNumberToObject(off, "drain_per_s", r->drain_per_s);

  cJSON *srv = cJSON_AddObjectToObject(root, "server");
  if (c->server_pid) cJSON_AddNumberToObject(srv, "pid", c->server_pid);
  else cJSON_AddNullToObject(srv, "pid");
  add_proc(srv, "start", &r->srv_start);
  add_proc(srv, "end", &r->srv_end);
  if (r->srv_start.ok && r->srv_end.ok) {
    cJSON_AddNumberToObject(srv, "cpu_s", r->srv_cpu_s);
    cJSON_AddNumberToObject(srv, "cpu_util", r->window_s > 0 ? r->srv_cpu_s / r->window_s : 0);
    cJSON_AddNumberToObject(srv, "peak_rss_kib", (double)r->srv_end.hwm_kib);
    cJSON_AddNumberToObject(srv, "cpu_us_per_msg", r->srv_cpu_us_per_msg);
    cJSON_AddNumberToObject(srv, "msgs_per_core_s", r->srv_cpu_us_per_msg > 0 ? 1e6 / r->srv_cpu_us_per_msg : 0);
  } else {
    cJSON_AddNullToObject(srv, "cpu_s");
    cJSON_AddNullToObject(srv, "cpu_util");
    cJSON_AddNullToObject(srv, "peak_rss_kib");
    cJSON_AddNullToObject(srv, "cpu_us_per_msg");
    cJSON_AddNullToObject(srv, "msgs_per_core_s");
  }

  cJSON *bn = cJSON_AddObjectToObject(root, "bench");
  cJSON_AddNumberToObject(bn, "cpu_s", r->bench_cpu_s);
  cJSON_AddNumberToObject(bn, "cpu_util", r->window_s > 0 ? r->bench_cpu_s / r->window_s : 0);

  if (c->idle) {
    cJSON *id = cJSON_AddObjectToObject(root, "idle");
    cJSON_AddNumberToObject(id, "connected", (double)r->idle_connected);
    cJSON_AddNumberToObject(id, "failed", (double)r->idle_failed);
    cJSON_AddNumberToObject(id, "connect_s", r->connect_s);
    cJSON_AddNumberToObject(id, "connect_per_s", r->connect_rate);
    add_proc(id, "server_before", &r->srv_idle_before);
    add_proc(id, "server_after", &r->srv_idle_after);
    if (r->srv_idle_before.ok && r->srv_idle_after.ok) cJSON_AddNumberToObject(id, "kib_per_conn", r->idle_kib_per_conn);
    else cJSON_AddNullToObject(id, "kib_per_conn");
  }

  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  return text;
}

int tern_bench_report_json(const tern_bench *b, const tern_bench_results *r, const char *path) {
  char *text = tern_bench_report_json_string(b, r);
  if (!text) return -1;
  FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
  int rc = -1;
  if (f) {
    rc = fputs(text, f) >= 0 && fputc('\n', f) != EOF ? 0 : -1;
    if (f != stdout && fclose(f) != 0) rc = -1;
    else if (f == stdout) fflush(f);
  }
  cJSON_free(text);
  return rc;
}
