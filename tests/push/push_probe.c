/* push_probe: drives the push library (src/push) for the node tests in tests/push and for
 * measuring throughput. It opens the library with ternd's own settings, registers devices from
 * PUT /v1/push bodies, sends notifications (or coalesced offline messages) and prints one JSON
 * object per line on stdout.
 *
 *   push_probe [probe options] -- [ternd settings, e.g. --push-webhook-url URL ...]
 *
 *   --reg JSON        a PUT /v1/push body; repeatable. "{i}" becomes the device index, as 8
 *                     decimal digits (so it also fits an APNs hex token)
 *   --repeat N        use every --reg N times (devices d0, d1, ...); default 1
 *   --sender NAME     default "alice"
 *   --count N         the count a notification carries; default 1
 *   --preview TEXT    message text (carried only with --push-previews)
 *   --times N         notify every device N times (default 1)
 *   --parse-only      only parse the registrations, send nothing
 *   --offline N       coalescing mode: N offline messages per device instead of one notify
 *   --every MS        ... spaced MS apart (default 100)
 *   --online-at MS    ... and the device connects MS after the first message
 *   --timeout MS      give up after MS (default 60000)
 *
 * Lines: {"event":"open",...}, {"event":"reg",...} per registration, {"event":"result",...} per
 * final result, then {"event":"done",...} with the totals, the rate, the most requests seen in
 * flight per provider and the tern_push_total lines. Exit 0, or 2 when the library refuses to
 * open (the reason is in the open line). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "push/push.h"

typedef struct dev {
  char id[32];       /* d<N> */
  tern_push_reg reg; /* parsed registration */
  bool ok;           /* the registration parsed */
  int idx;           /* its index */
} dev;

static tern_push *g_push;
static dev *g_devs;
static int g_ndevs, g_valid, g_results;
static uint64_t g_counts[TERN_PUSH_NRESULTS];
static uint64_t g_start_ns, g_last_ns;
static double g_start_cpu; /* process CPU seconds when sending began */
static int g_offline, g_every_ms = 100, g_online_at = -1, g_sent_offline;
static const char *g_sender = "alice", *g_preview;
static uint32_t g_count = 1;
static int g_times = 1;
static bool g_parse_only;
static uv_timer_t g_tick, g_deadline, g_offline_timer, g_online_timer;
static bool g_finished;

static void out_line(tern_buf *b) {
  tern_buf_putc(b, '\n');
  fwrite(b->data, 1, b->len, stdout);
  fflush(stdout);
  tern_buf_free(b);
}

static void put_kv_str(tern_buf *b, const char *k, const char *v) {
  tern_buf_printf(b, ",\"%s\":", k);
  tern_buf_put_json_str(b, v, strlen(v));
}

static void on_result(void *arg, const char *device_id, const tern_push_reg *reg, tern_push_result res) {
  g_results++;
  g_counts[res]++;
  g_last_ns = tern_mono_ns();
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"event\":\"result\"");
  put_kv_str(&b, "device", device_id);
  put_kv_str(&b, "provider", tern_push_provider_name(reg->provider));
  put_kv_str(&b, "result", tern_push_result_name(res));
  tern_buf_printf(&b, ",\"ms\":%.3f}", (double)(g_last_ns - g_start_ns) / 1e6);
  out_line(&b);
}

static double cpu_seconds(void) {
  uv_rusage_t ru;
  if (uv_getrusage(&ru) < 0) return 0;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void close_all(void) {
  if (g_finished) return;
  g_finished = true;
  tern_push_stats st;
  tern_push_get_stats(g_push, &st);
  double secs = (double)((g_last_ns > g_start_ns ? g_last_ns : tern_mono_ns()) - g_start_ns) / 1e9;
  tern_buf b = {0};
  tern_buf_printf(&b, "{\"event\":\"done\",\"devices\":%d,\"results\":%d", g_valid, g_results);
  for (int r = 0; r < TERN_PUSH_NRESULTS; r++)
    tern_buf_printf(&b, ",\"%s\":%llu", tern_push_result_name((tern_push_result)r), (unsigned long long)g_counts[r]);
  tern_buf_printf(&b, ",\"elapsed_ms\":%.3f,\"per_sec\":%.1f,\"pending\":%llu,\"max_inflight\":{", secs * 1e3,
                  secs > 0 ? (double)g_results / secs : 0.0, (unsigned long long)st.pending);
  for (int i = 0; i < TERN_PUSH_NPROVIDERS; i++)
    tern_buf_printf(&b, "%s\"%s\":%llu", i ? "," : "", tern_push_provider_name((tern_push_provider)i),
                    (unsigned long long)st.max_inflight[i]);
  tern_buf_puts(&b, "}");
  { /* the probe's own CPU while sending: what pushing costs the server (one loop thread, plus
     * curl's resolver threads) */
    double cpu = cpu_seconds() - g_start_cpu;
    tern_buf_printf(&b, ",\"cpu_ms\":%.1f,\"cpu_us_per_result\":%.1f", cpu * 1e3,
                    g_results ? cpu * 1e6 / g_results : 0.0);
  }
  tern_buf m = {0};
  tern_push_metrics_render(g_push, &m);
  put_kv_str(&b, "metrics", tern_buf_cstr(&m));
  tern_buf_free(&m);
  tern_buf_putc(&b, '}');
  out_line(&b);
  uv_close((uv_handle_t *)&g_tick, NULL);
  uv_close((uv_handle_t *)&g_deadline, NULL);
  uv_close((uv_handle_t *)&g_offline_timer, NULL);
  uv_close((uv_handle_t *)&g_online_timer, NULL);
  tern_push_close(g_push);
}

static void tick(uv_timer_t *t) {
  tern_push_stats st;
  tern_push_get_stats(g_push, &st);
  bool all_given = g_offline ? g_sent_offline >= g_offline : true;
  if (all_given && st.pending == 0 && st.windows == 0) close_all();
}

static void deadline(uv_timer_t *t) {
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"event\":\"timeout\"}");
  out_line(&b);
  close_all();
}

static void offline_step(uv_timer_t *t) {
  for (int i = 0; i < g_ndevs; i++) {
    if (g_devs[i].ok) tern_push_offline_message(g_push, g_devs[i].id, &g_devs[i].reg, g_sender, NULL, NULL, g_preview);
  }
  if (++g_sent_offline >= g_offline) uv_timer_stop(t);
}

static void online_now(uv_timer_t *t) {
  for (int i = 0; i < g_ndevs; i++) tern_push_device_online(g_push, g_devs[i].id);
  tern_buf b = {0};
  tern_buf_puts(&b, "{\"event\":\"online\"}");
  out_line(&b);
}

static char *expand(const char *tmpl, int i) {
  tern_buf b = {0};
  char num[16];
  snprintf(num, sizeof num, "%08d", i);
  for (const char *s = tmpl; *s;) {
    if (!strncmp(s, "{i}", 3)) {
      tern_buf_puts(&b, num);
      s += 3;
    } else {
      tern_buf_putc(&b, *s++);
    }
  }
  return tern_buf_steal(&b, NULL);
}

static void usage(void) {
  fprintf(stderr, "usage: push_probe [--reg JSON]... [--repeat N] [--sender S] [--count N] [--preview T] [--times N]\n"
                  "                  [--offline N [--every MS] [--online-at MS]] [--timeout MS] -- [ternd settings]\n");
  exit(64);
}

int main(int argc, char **argv) {
  const char *regs[64];
  int nregs = 0, repeat = 1, timeout_ms = 60000;
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--"); i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--parse-only")) {
      g_parse_only = true;
      continue;
    }
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--reg") && nregs < 64) regs[nregs++] = v;
    else if (!strcmp(a, "--repeat")) repeat = atoi(v);
    else if (!strcmp(a, "--sender")) g_sender = v;
    else if (!strcmp(a, "--count")) g_count = (uint32_t)atoi(v);
    else if (!strcmp(a, "--preview")) g_preview = v;
    else if (!strcmp(a, "--times")) g_times = atoi(v);
    else if (!strcmp(a, "--offline")) g_offline = atoi(v);
    else if (!strcmp(a, "--every")) g_every_ms = atoi(v);
    else if (!strcmp(a, "--online-at")) g_online_at = atoi(v);
    else if (!strcmp(a, "--timeout")) timeout_ms = atoi(v);
    else usage();
    i++;
  }
  /* argv[i] is "--" (or the end): hand the rest to the config loader as ternd's flags */
  int cargc = 1 + (i < argc ? argc - i - 1 : 0);
  char **cargv = tern_calloc((size_t)cargc + 1, sizeof *cargv);
  cargv[0] = argv[0];
  for (int k = 1; k < cargc; k++) cargv[k] = argv[i + k];

  tern_config cfg;
  tern_config_defaults(&cfg);
  bool help;
  char err[512];
  if (tern_config_load(&cfg, cargc, cargv, &help, err, sizeof err) < 0) {
    fprintf(stderr, "push_probe: %s\n", err);
    tern_free(cargv);
    tern_config_free(&cfg);
    return 64;
  }
  tern_log_level lvl;
  if (tern_log_parse_level(cfg.log_level, &lvl) == 0) tern_log_set_level(lvl);

  uv_loop_t *loop = uv_default_loop();
  tern_buf b = {0};
  if (tern_push_open(loop, &cfg, &g_push, err, sizeof err) < 0) {
    tern_buf_puts(&b, "{\"event\":\"open\",\"ok\":false");
    put_kv_str(&b, "error", err);
    tern_buf_putc(&b, '}');
    out_line(&b);
    tern_config_free(&cfg);
    tern_free(cargv);
    return 2;
  }
  tern_push_set_result_cb(g_push, on_result, NULL);
  tern_buf_puts(&b, "{\"event\":\"open\",\"ok\":true");
  const char *vapid = tern_push_vapid_public_key(g_push);
  if (vapid) put_kv_str(&b, "vapid", vapid);
  tern_buf_puts(&b, ",\"configured\":[");
  for (int k = 0, n = 0; k < TERN_PUSH_NPROVIDERS; k++) {
    if (!tern_push_configured(g_push, (tern_push_provider)k)) continue;
    tern_buf_printf(&b, "%s\"%s\"", n++ ? "," : "", tern_push_provider_name((tern_push_provider)k));
  }
  tern_buf_puts(&b, "]}");
  out_line(&b);

  g_ndevs = nregs * repeat;
  g_devs = tern_calloc((size_t)(g_ndevs ? g_ndevs : 1), sizeof *g_devs);
  for (int r = 0; r < nregs; r++) {
    for (int k = 0; k < repeat; k++) {
      int idx = r * repeat + k;
      dev *d = &g_devs[idx];
      d->idx = idx;
      snprintf(d->id, sizeof d->id, "d%d", idx);
      char *body = expand(regs[r], idx);
      char why[256];
      tern_buf_puts(&b, "{\"event\":\"reg\"");
      put_kv_str(&b, "device", d->id);
      if (tern_push_reg_parse(g_push, body, strlen(body), &d->reg, why, sizeof why) < 0) {
        tern_buf_puts(&b, ",\"ok\":false");
        put_kv_str(&b, "error", why);
      } else {
        /* exercise the store format: what is sent is what deserialize gives back */
        size_t sl;
        char *ser = tern_push_reg_serialize(&d->reg, &sl);
        tern_push_reg back;
        bool same = tern_push_reg_deserialize(ser, sl, &back) == 0 && tern_push_reg_equal(&back, &d->reg);
        if (same) {
          tern_push_reg_free(&d->reg);
          d->reg = back;
        } else if (back.token) {
          tern_push_reg_free(&back);
        }
        d->ok = same;
        g_valid += same;
        tern_buf_printf(&b, ",\"ok\":%s", same ? "true" : "false");
        if (!same) put_kv_str(&b, "error", "serialize round trip changed the registration");
        if (repeat == 1 || idx == 0) put_kv_str(&b, "stored", ser);
        tern_free(ser);
      }
      tern_free(body);
      tern_buf_putc(&b, '}');
      if (repeat <= 16 || !d->ok) out_line(&b); /* a burst prints only its failures */
      else tern_buf_free(&b);
    }
  }

  uv_timer_init(loop, &g_tick);
  uv_timer_init(loop, &g_deadline);
  uv_timer_init(loop, &g_offline_timer);
  uv_timer_init(loop, &g_online_timer);
  uv_timer_start(&g_tick, tick, 20, 20);
  uv_timer_start(&g_deadline, deadline, (uint64_t)timeout_ms, 0);
  g_start_ns = tern_mono_ns();
  g_start_cpu = cpu_seconds();
  if (g_parse_only) {
    /* nothing to send: the first tick finds nothing pending and closes */
  } else if (g_offline > 0) {
    uv_timer_start(&g_offline_timer, offline_step, 0, (uint64_t)g_every_ms);
    if (g_online_at >= 0) uv_timer_start(&g_online_timer, online_now, (uint64_t)g_online_at, 0);
  } else {
    tern_push_note note = {.sender = g_sender, .count = g_count, .preview = g_preview};
    for (int n = 0; n < g_times; n++) {
      for (int k = 0; k < g_ndevs; k++) {
        if (!g_devs[k].ok) continue;
        int rc = tern_push_notify(g_push, g_devs[k].id, &g_devs[k].reg, &note, on_result, NULL);
        if (rc < 0) {
          g_counts[TERN_PUSH_DROPPED]++;
          tern_buf_puts(&b, "{\"event\":\"refused\"");
          put_kv_str(&b, "device", g_devs[k].id);
          tern_buf_printf(&b, ",\"error\":%d}", rc);
          out_line(&b);
        }
      }
    }
  }
  uv_run(loop, UV_RUN_DEFAULT); /* ends once close_all has closed every handle */
  for (int k = 0; k < g_ndevs; k++) tern_push_reg_free(&g_devs[k].reg);
  tern_free(g_devs);
  tern_free(cargv);
  tern_config_free(&cfg);
  uv_loop_close(loop);
  return 0;
}
