/* drv_xmpp.c: the XMPP driver. Not written yet: --protocol xmpp fails at provisioning. */
#include <errno.h>

#include "bench/bench_int.h"

static void drv_provision(tern_bench *b) { tern_bench_provision_done(b, -ENOSYS, "--protocol xmpp is not built yet"); }
static int drv_connect(tern_bench *b, tern_bench_dev *d, const char *bind_ip) { return -ENOSYS; }
static int drv_send(tern_bench *b, tern_bench_dev *d, uint64_t gidx, const tern_bench_user *to, const char *body,
                    size_t len) {
  return -ENOSYS;
}
static void drv_flush(tern_bench *b, tern_bench_dev *d) {}
static size_t drv_outbound(const tern_bench_dev *d) { return 0; }
static void drv_disconnect(tern_bench *b, tern_bench_dev *d) {}
static void drv_nop(tern_bench *b) {}

const tern_bench_driver tern_bench_driver_xmpp = {
    .name = "xmpp",
    .provision = drv_provision,
    .connect = drv_connect,
    .send = drv_send,
    .flush = drv_flush,
    .outbound = drv_outbound,
    .disconnect = drv_disconnect,
    .free = drv_nop,
    .release = drv_nop,
};
