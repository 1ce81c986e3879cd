/* natsconn: how this process opens a connection to NATS. The store backend (nats.c) and the
 * media chunks (natsmedia.c) each have a connection of their own, opened the same way, so a
 * change to reconnects or timeouts applies to both.
 *
 * nats.c's library state (its timer, GC and callback threads, the global delivery pool) is
 * process-wide by the library's design: the first open starts it, once, and it stays for the
 * process (nats_Close would tear it down under the other connections).
 *
 * Errors: negative errno (-EIO: the library did not start; -ENOTCONN: no server answered)
 * with a one-line reason in err. */
#ifndef TERN_STORE_NATSCONN_H
#define TERN_STORE_NATSCONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <nats/nats.h>

/* What a connection tells its owner about its link to the servers. The owner sets what, back
 * and arg, keeps the struct alive until tern_natsconn_close, and leaves the rest to this
 * module. A lost link and its reconnect are logged (warn, info) with what and the server. */
typedef struct tern_natsconn_link {
  const char *what;        /* "store", "media": who the log lines speak for */
  void (*back)(void *arg); /* after a reconnect (may be NULL); nats.c's callback thread */
  void *arg;
  /* the close handshake: nats.c runs its connection callbacks on one thread, in order, so
   * once the closed callback has run no earlier callback can still reach the owner */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool closed, inited;
} tern_natsconn_link;

/* Connects to the comma-separated urls (NULL or "": nats://127.0.0.1:4222): reconnects
 * forever every 200 ms, timeout_ms per connect and flush, subscriptions on the library's
 * delivery pool (no thread each). *nservers (if not NULL) is the number of URLs, which picks
 * the default replica count. The caller owns *out and closes it with tern_natsconn_close. */
int tern_natsconn_open(const char *urls, int timeout_ms, tern_natsconn_link *link, natsConnection **out,
                       int *nservers, char *err, size_t errlen);

/* Closes *nc (NULL: nothing to close, but link is still released), waits (up to 2 s) for its
 * callbacks to be over, destroys it and sets *nc to NULL. */
void tern_natsconn_close(natsConnection **nc, tern_natsconn_link *link);

/* The replica count of a stream: asked when > 0, else 3 on a list of 3 or more servers, else 1. */
int tern_natsconn_replicas(int asked, int nservers);

/* A namespace as a stream-name prefix: bytes outside [A-Za-z0-9_-] become '_'. The caller
 * frees it (tern_free). */
char *tern_natsconn_stream_prefix(const char *ns);

#endif
