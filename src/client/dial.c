/* dial.c: TCP connect for HTTP requests and WebSocket connections. IP literals connect at
 * once; names are resolved in libuv's threadpool first. Only the first address is tried:
 * tern servers are named by the operator, and a load generator names them by address. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "client/client_int.h"

struct tern_client_dial {
  uv_getaddrinfo_t gai;    /* name resolution, while resolving */
  uv_connect_t connect;    /* the connect request, while connecting */
  uv_tcp_t *tcp;           /* the owner's handle */
  tern_client_dial_cb cb;  /* called once with the result */
  void *owner;             /* NULL once cancelled */
  char *bind_ip;           /* local address to bind, or NULL */
  bool resolving;          /* gai is in flight */
};

static void dial_free(tern_client_dial *d) {
  tern_free(d->bind_ip);
  tern_free(d);
}

static int addr_of(const char *ip, uint16_t port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return -EINVAL;
}

static void on_connect(uv_connect_t *req, int status) {
  tern_client_dial *d = req->data;
  if (d->owner) d->cb(d->owner, status);
  dial_free(d);
}

/* Binds (when asked) and starts connecting to addr. */
static int start_connect(tern_client_dial *d, const struct sockaddr *addr) {
  if (d->bind_ip) {
    struct sockaddr_storage local;
    int rc = addr_of(d->bind_ip, 0, &local);
    if (rc < 0) return rc;
    rc = uv_tcp_bind(d->tcp, (const struct sockaddr *)&local, 0);
    if (rc < 0) return rc;
  }
  d->connect.data = d;
  return uv_tcp_connect(&d->connect, d->tcp, addr, on_connect);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  tern_client_dial *d = req->data;
  d->resolving = false;
  if (!d->owner) {
    uv_freeaddrinfo(res);
    dial_free(d);
    return;
  }
  int rc = status;
  if (rc == 0 && !res) rc = UV_EAI_NONAME;
  if (rc == 0) rc = start_connect(d, res->ai_addr);
  uv_freeaddrinfo(res);
  if (rc < 0) {
    d->cb(d->owner, rc);
    dial_free(d);
  }
}

tern_client_dial *tern_client_dial_start(uv_tcp_t *tcp, const char *host, uint16_t port, const char *bind_ip,
                                         tern_client_dial_cb cb, void *owner, int *err) {
  tern_client_dial *d = TERN_NEW(tern_client_dial);
  d->tcp = tcp;
  d->cb = cb;
  d->owner = owner;
  d->bind_ip = bind_ip ? tern_strdup(bind_ip) : NULL;
  struct sockaddr_storage ss;
  int rc;
  if (addr_of(host, port, &ss) == 0) {
    rc = start_connect(d, (const struct sockaddr *)&ss);
  } else {
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    d->gai.data = d;
    d->resolving = true;
    rc = uv_getaddrinfo(tcp->loop, &d->gai, on_resolved, host, service, &hints);
    if (rc < 0) d->resolving = false;
  }
  if (rc < 0) {
    dial_free(d);
    *err = rc;
    return NULL;
  }
  return d;
}

void tern_client_dial_cancel(tern_client_dial *d) {
  d->owner = NULL;
  /* A resolution that already runs cannot be stopped; on_resolved then frees d. A pending
   * connect is cancelled by closing the handle, which calls on_connect (UV_ECANCELED). */
  if (d->resolving) uv_cancel((uv_req_t *)&d->gai);
}
