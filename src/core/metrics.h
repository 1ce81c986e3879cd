/* metrics: the Prometheus text exposition of PROTOCOL.md section 9, from this worker's
 * counters, the store's and the providers'. */
#ifndef TERN_CORE_METRICS_H
#define TERN_CORE_METRICS_H

#include "base/buf.h"
#include "core/app.h"

void tern_metrics_render(tern_app *a, tern_buf *out);

#endif
