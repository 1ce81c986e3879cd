/* metrics: the Prometheus text exposition of PROTOCOL.md section 9: the whole process's figures
 * whichever worker answers (every worker's counters added up, the store's and the providers'),
 * plus per-worker series with a worker label (tern_worker_*). Runs on the scraping worker's
 * loop and reads the other workers' counters with relaxed atomic loads. */
#ifndef TERN_CORE_METRICS_H
#define TERN_CORE_METRICS_H

#include "base/buf.h"
#include "core/app.h"

void tern_metrics_render(tern_app *a, tern_buf *out);

#endif
