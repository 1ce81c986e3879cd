/* ternd: the tern server. Flags, environment and config file are described by one table in
 * src/base/config.c; everything else is src/core/app.c. */
#include <stdio.h>

#include "base/config.h"
#include "core/app.h"
#include "proto/wire.h"

int main(int argc, char **argv) {
  /* cJSON allocates through base/alloc.h from the first parse on, in every thread. */
  tern_proto_init();
  tern_config cfg;
  tern_config_defaults(&cfg);
  bool help = false;
  char err[512];
  if (tern_config_load(&cfg, argc, argv, &help, err, sizeof err) < 0) {
    fprintf(stderr, "ternd: %s\n", err);
    tern_config_free(&cfg);
    return 2;
  }
  if (help) {
    tern_config_help(stdout, "ternd");
    tern_config_free(&cfg);
    return 0;
  }
  int rc = tern_app_run(&cfg);
  tern_config_free(&cfg);
  return rc;
}
