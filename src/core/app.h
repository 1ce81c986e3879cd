/* app: the tern server as one object: it opens the store, loads the directory, serves HTTP and
 * WebSocket through src/net, and runs until SIGTERM/SIGINT. ternd's main() is a thin wrapper. */
#ifndef TERN_CORE_APP_H
#define TERN_CORE_APP_H

#include "base/config.h"

/* Runs the server with cfg until a signal stops it. Returns the process exit status: 0 after
 * a clean shutdown, 2 when the configuration or the data directory is unusable (with a
 * one-line reason on stderr). */
int tern_app_run(const tern_config *cfg);

#endif
