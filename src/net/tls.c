/* tls: the TLS transport of the byte stream, and TLS contexts (see tls.h). */
#define _GNU_SOURCE
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"

/* Mozilla's "intermediate" configuration (ssl-config.mozilla.org, version 5.7): TLS 1.2 suites
 * here, TLS 1.3 suites are OpenSSL's defaults, which are the same three. */
static const char MOZ_INTERMEDIATE_12[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
static const char MOZ_GROUPS[] = "X25519:prime256v1:secp384r1";

/* The read buffer is split: ciphertext is read into the first half and decrypted into the
 * second, so the two never overlap (OpenSSL reads a record out of our BIO before it decrypts). */
enum { PLAIN_OFF = 32 * 1024 };

struct tern_tls {
  pthread_mutex_t mu; /* guards ctx: a reload may race new connections on other loops */
  SSL_CTX *ctx;       /* the current context; each SSL holds its own reference */
  BIO_METHOD *bio_m;  /* our BIO (reads the read window, writes the connection's queue) */
  bool server;
};

/* One connection's TLS state (the stream's transport data). */
typedef struct tls_conn {
  tern_stream *s;
  SSL *ssl;
  tern_tls *tls;
  const char *rin; /* ciphertext being fed to OpenSSL: a window on the shared read buffer */
  size_t rlen;
  tern_buf cout;    /* ciphertext made, not yet handed to the socket */
  tern_buf plain;   /* a stream write's plaintext not yet encrypted (handshake not done) */
  uv_write_t *wreq; /* the ciphertext write in flight, if any */
  tern_buf wbuf;    /* its bytes */
  bool stream_write;/* a stream-level write is outstanding: write_done once it is all out */
  bool paused;      /* the owner paused reading: plaintext is kept, not delivered */
  bool handshaken;
  bool shut_wanted; /* the stream asked for shutdown: close_notify, then shut the socket */
  bool shut_sent;
  bool first_read_done;
  bool dead;        /* the transport's close was called: callbacks only free */
} tls_conn;

static void tls_err(char *err, size_t errlen, const char *what) {
  char e[256] = "";
  unsigned long code = ERR_get_error();
  if (code) ERR_error_string_n(code, e, sizeof e);
  ERR_clear_error();
  snprintf(err, errlen, "%s%s%s", what, *e ? ": " : "", e);
}

/* ---- our BIO ------------------------------------------------------------------------------- */

static int bio_write(BIO *b, const char *in, int len) {
  tls_conn *t = BIO_get_data(b);
  if (len <= 0) return 0;
  tern_buf_append(&t->cout, in, (size_t)len);
  return len;
}

static int bio_read(BIO *b, char *out, int len) {
  tls_conn *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (!t->rlen) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = (size_t)len < t->rlen ? (size_t)len : t->rlen;
  memcpy(out, t->rin, n);
  t->rin += n;
  t->rlen -= n;
  return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  tls_conn *t = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH: return 1;
  case BIO_CTRL_PENDING: return t ? (long)t->rlen : 0;
  case BIO_CTRL_WPENDING: return 0;
  default: return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static int bio_destroy(BIO *b) {
  BIO_set_data(b, NULL);
  return 1;
}

/* ---- contexts ------------------------------------------------------------------------------ */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  static const unsigned char http11[] = "\x08http/1.1";
  unsigned char *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, http11, sizeof http11 - 1, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
  }
  /* a client that offers only other protocols (h2 alone) gets no ALPN answer and may go on
   * with HTTP/1.1 or give up: the same as a server without ALPN */
  return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *make_ctx(bool server, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) {
    tls_err(err, errlen, "cannot make a TLS context");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (!SSL_CTX_set_cipher_list(ctx, MOZ_INTERMEDIATE_12) || !SSL_CTX_set1_groups_list(ctx, MOZ_GROUPS)) {
    tls_err(err, errlen, "cannot set the cipher list");
    SSL_CTX_free(ctx);
    return NULL;
  }
  /* idle connections keep no record buffers; partial writes are never needed (our BIO takes
   * everything), but the plaintext may move between retries */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (server) {
    SSL_CTX_set_dh_auto(ctx, 1);
    /* no resumption: no per-client state in the server and no ticket keys to rotate */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  }
  return ctx;
}

static SSL_CTX *server_ctx(const char *cert_file, const char *key_file, char *err, size_t errlen) {
  if (!cert_file || !*cert_file || !key_file || !*key_file) {
    snprintf(err, errlen, "TLS needs both tls.cert and tls.key");
    return NULL;
  }
  SSL_CTX *ctx = make_ctx(true, err, errlen);
  if (!ctx) return NULL;
  char what[4200];
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
    snprintf(what, sizeof what, "cannot load the certificate %s", cert_file);
    tls_err(err, errlen, what);
  } else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
    snprintf(what, sizeof what, "cannot load the key %s", key_file);
    tls_err(err, errlen, what);
  } else if (SSL_CTX_check_private_key(ctx) != 1) {
    tls_err(err, errlen, "the key does not match the certificate");
  } else {
    return ctx;
  }
  SSL_CTX_free(ctx);
  return NULL;
}

static tern_tls *tls_new(SSL_CTX *ctx, bool server) {
  tern_tls *t = TERN_NEW(tern_tls);
  pthread_mutex_init(&t->mu, NULL);
  t->ctx = ctx;
  t->server = server;
  t->bio_m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tern stream");
  BIO_meth_set_write(t->bio_m, bio_write);
  BIO_meth_set_read(t->bio_m, bio_read);
  BIO_meth_set_ctrl(t->bio_m, bio_ctrl);
  BIO_meth_set_create(t->bio_m, bio_create);
  BIO_meth_set_destroy(t->bio_m, bio_destroy);
  return t;
}

int tern_tls_server_new(const char *cert_file, const char *key_file, tern_tls **out, char *err, size_t errlen) {
  *out = NULL;
  SSL_CTX *ctx = server_ctx(cert_file, key_file, err, errlen);
  if (!ctx) return -EINVAL;
  *out = tls_new(ctx, true);
  return 0;
}

int tern_tls_reload(tern_tls *t, const char *cert_file, const char *key_file, char *err, size_t errlen) {
  SSL_CTX *ctx = server_ctx(cert_file, key_file, err, errlen);
  if (!ctx) return -EINVAL;
  pthread_mutex_lock(&t->mu);
  SSL_CTX *old = t->ctx;
  t->ctx = ctx;
  pthread_mutex_unlock(&t->mu);
  SSL_CTX_free(old); /* open connections hold their own references */
  return 0;
}

int tern_tls_client_new(const char *ca_file, tern_tls **out, char *err, size_t errlen) {
  *out = NULL;
  SSL_CTX *ctx = make_ctx(false, err, errlen);
  if (!ctx) return -EINVAL;
  int ok = ca_file && *ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(ctx);
  if (ok != 1) {
    char what[4200];
    snprintf(what, sizeof what, "cannot load the CA file %s", ca_file && *ca_file ? ca_file : "(system)");
    tls_err(err, errlen, what);
    SSL_CTX_free(ctx);
    return -EINVAL;
  }
  static const unsigned char http11[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ctx, http11, sizeof http11 - 1);
  *out = tls_new(ctx, false);
  return 0;
}

void tern_tls_free(tern_tls *t) {
  if (!t) return;
  SSL_CTX_free(t->ctx);
  BIO_meth_free(t->bio_m);
  pthread_mutex_destroy(&t->mu);
  tern_free(t);
}

/* ---- the transport ------------------------------------------------------------------------- */

static void start_cwrite(tls_conn *t);
static void on_shutdown(uv_shutdown_t *req, int status);

static void on_cwrite(uv_write_t *req, int status) {
  tls_conn *t = req->data;
  tern_free(req);
  tern_buf_free(&t->wbuf);
  t->wreq = NULL;
  if (t->dead) {
    tern_free(t);
    return;
  }
  if (status < 0) {
    t->stream_write = false;
    tern_buf_free(&t->plain);
    tern_buf_free(&t->cout);
    tern_stream_write_done(t->s, status);
    return;
  }
  start_cwrite(t);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  tern_free(req);
}

/* Encrypts the stream's pending plaintext (after the handshake). Our BIO takes every byte, so
 * SSL_write finishes the whole buffer at once. Returns false after a TLS error. */
static bool encrypt_plain(tls_conn *t) {
  if (!t->handshaken || !t->plain.len) return true;
  size_t done = 0;
  while (done < t->plain.len) {
    size_t n = 0;
    if (SSL_write_ex(t->ssl, t->plain.data + done, t->plain.len - done, &n) != 1) {
      ERR_clear_error();
      return false;
    }
    done += n;
  }
  tern_buf_free(&t->plain);
  return true;
}

/* Once everything is written: close_notify (after a handshake), then the socket's write side.
 * The peer's own close_notify is not awaited. */
static void maybe_shutdown(tls_conn *t) {
  if (!t->shut_wanted || t->wreq || t->cout.len || t->plain.len) return;
  if (!t->shut_sent) {
    t->shut_sent = true;
    if (t->handshaken) {
      SSL_shutdown(t->ssl); /* close_notify into cout */
      ERR_clear_error();
    }
    if (t->cout.len) {
      start_cwrite(t); /* comes back here when it is written */
      return;
    }
  }
  t->shut_wanted = false; /* once */
  uv_shutdown_t *req = tern_malloc(sizeof *req);
  if (uv_shutdown(req, (uv_stream_t *)tern_stream_handle(t->s), on_shutdown) < 0) tern_free(req);
}

/* Hands all of cout to one uv_write of ours (on_cwrite follows). Returns 0 or the error of a
 * write that could not start (nothing is then in flight, and the stream's write is over). */
static int write_cout(tls_conn *t) {
  t->wbuf = t->cout;
  t->cout = (tern_buf){0};
  t->wreq = tern_malloc(sizeof *t->wreq);
  t->wreq->data = t;
  uv_buf_t wb = uv_buf_init(t->wbuf.data, (unsigned)t->wbuf.len);
  int rc = uv_write(t->wreq, (uv_stream_t *)tern_stream_handle(t->s), &wb, 1, on_cwrite);
  if (rc < 0) {
    tern_free(t->wreq);
    t->wreq = NULL;
    tern_buf_free(&t->wbuf);
    t->stream_write = false;
  }
  return rc;
}

/* Writes what is queued: what the socket takes at once, and one write of ours for the rest.
 * When nothing is left, the stream's write is done and a wanted shutdown goes ahead. The
 * callers return at once after this: a failure reported to the stream may close it (and free
 * t). */
static void start_cwrite(tls_conn *t) {
  if (t->wreq || t->dead) return;
  tern_stream *s = t->s;
  if (!encrypt_plain(t)) {
    t->stream_write = false;
    tern_stream_write_done(s, UV_EPROTO);
    return;
  }
  if (t->cout.len) {
    uv_stream_t *h = (uv_stream_t *)tern_stream_handle(s);
    uv_buf_t b = uv_buf_init(t->cout.data, (unsigned)t->cout.len);
    int n = uv_try_write(h, &b, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
      tern_buf_free(&t->cout);
      t->stream_write = false;
      tern_stream_write_done(s, n);
      return;
    }
    tern_buf_consume(&t->cout, (size_t)n);
    if (t->cout.len) {
      int rc = write_cout(t);
      if (rc < 0) tern_stream_write_done(s, rc);
      return;
    }
    tern_buf_free(&t->cout);
  }
  if (t->plain.len) return; /* waiting for the handshake */
  if (t->stream_write) {
    t->stream_write = false;
    tern_stream_write_done(s, 0); /* marks the stream for its next turn; calls nobody now */
    if (tern_stream_is_closing(s)) return;
  }
  maybe_shutdown(t);
}

/* A plain HTTP request where a ClientHello belongs: the client used http:// or ws:// on a TLS
 * port. Tell it in its own language rather than with a bare reset. The first byte decides: a
 * TLS record starts with its content type (20-24), an HTTP request with a method's capital
 * letter, so a request that arrives a byte at a time is told too. */
static bool looks_like_http(const char *p, size_t n) { return n >= 1 && p[0] >= 'A' && p[0] <= 'Z'; }

static void refuse_plaintext(tls_conn *t) {
  static const char body[] =
      "{\"error\":{\"code\":\"bad_request\",\"message\":\"this port speaks TLS: use https:// or wss://\"}}";
  char head[256];
  int hn = snprintf(head, sizeof head,
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n",
                    sizeof body - 1);
  uv_buf_t b[2] = {uv_buf_init(head, (unsigned)hn), uv_buf_init((char *)body, sizeof body - 1)};
  (void)uv_try_write((uv_stream_t *)tern_stream_handle(t->s), b, 2); /* best effort: it fits */
}

/* Hands decrypted bytes up: delivered while the owner reads, kept while it has paused. */
static void hand_up(tls_conn *t, char *p, size_t n) {
  if (!n) return;
  if (t->paused) tern_stream_input_keep(t->s, p, n);
  else tern_stream_input(t->s, p, n);
}

/* Feeds the read window to OpenSSL: the handshake, then every whole record, decrypted into the
 * second half of the read buffer and handed up in pieces of at most that size. */
static void feed(tls_conn *t, char *plain, size_t cap) {
  tern_stream *s = t->s;
  if (!t->handshaken) {
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
      int e = SSL_get_error(t->ssl, r);
      start_cwrite(t); /* our handshake records, or the alert */
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
      char why[256];
      tls_err(why, sizeof why, "handshake failed");
      long vr = SSL_is_server(t->ssl) ? X509_V_OK : SSL_get_verify_result(t->ssl);
      TERN_DEBUG("tls handshake failed", "err=%s verify=%s", tern_log_quote(why),
                 vr == X509_V_OK ? "ok" : X509_verify_cert_error_string(vr));
      tern_stream_input_end(s, vr != X509_V_OK ? TERN_TLS_ERR_UNTRUSTED : UV_EPROTO);
      return;
    }
    t->handshaken = true;
    start_cwrite(t); /* the handshake's last flight, then a client's first request */
    if (tern_stream_is_closing(s)) return;
  }
  for (;;) {
    size_t have = 0;
    int e = SSL_ERROR_NONE;
    while (have < cap) {
      /* Not one call more than there is input for: an SSL_read that finds nothing to read
       * first allocates its 16 KiB record buffer, and would keep it while the connection
       * idles (RELEASE_BUFFERS frees it only after a record is consumed). */
      if (!t->rlen && !SSL_has_pending(t->ssl)) {
        e = SSL_ERROR_WANT_READ;
        break;
      }
      size_t n = 0;
      if (SSL_read_ex(t->ssl, plain + have, cap - have, &n) == 1) {
        have += n;
        continue;
      }
      e = SSL_get_error(t->ssl, 0);
      break;
    }
    hand_up(t, plain, have);
    if (tern_stream_is_closing(s)) return;
    if (have == cap) continue; /* the piece was full: there may be more */
    start_cwrite(t);           /* post-handshake messages (key updates) answered */
    if (tern_stream_is_closing(s)) return;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_NONE) return;
    if (e == SSL_ERROR_ZERO_RETURN) {
      tern_stream_input_end(s, UV_EOF); /* close_notify */
    } else {
      char why[256];
      tls_err(why, sizeof why, "TLS error");
      TERN_DEBUG("tls read failed", "err=%s", tern_log_quote(why));
      tern_stream_input_end(s, UV_EPROTO);
    }
    return;
  }
}

static void tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  tern_stream *s = h->data;
  size_t len = 0;
  char *rb = tern_stream_read_buffer(s, &len);
  buf->base = rb;
  buf->len = PLAIN_OFF < len ? PLAIN_OFF : len;
}

static void tls_on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  tern_stream *s = h->data;
  tls_conn *t = tern_stream_transport_data(s);
  if (nread < 0) {
    tern_stream_input_end(s, (int)nread);
    return;
  }
  if (nread == 0 || !t) return;
  if (!t->first_read_done) {
    t->first_read_done = true;
    if (SSL_is_server(t->ssl) && looks_like_http(buf->base, (size_t)nread)) {
      refuse_plaintext(t);
      tern_stream_input_end(s, UV_EPROTO);
      return;
    }
  }
  size_t len = 0;
  char *rb = tern_stream_read_buffer(s, &len);
  t->rin = buf->base;
  t->rlen = (size_t)nread;
  feed(t, rb + PLAIN_OFF, len - PLAIN_OFF);
  /* t is gone if the stream closed meanwhile; else OpenSSL has taken every byte it needs */
  if (!tern_stream_is_closing(s)) t->rlen = 0;
}

static int tls_init(tern_stream *s, const void *config, char *err, size_t errlen) {
  const tern_tls_config *c = config;
  if (!c || !c->tls) {
    snprintf(err, errlen, "a TLS stream needs a TLS context");
    return -EINVAL;
  }
  tls_conn *t = TERN_NEW(tls_conn);
  t->s = s;
  t->tls = c->tls;
  pthread_mutex_lock(&c->tls->mu);
  t->ssl = SSL_new(c->tls->ctx);
  pthread_mutex_unlock(&c->tls->mu);
  tern_stream_set_transport_data(s, t);
  if (!t->ssl) {
    tls_err(err, errlen, "cannot make a TLS session");
    return -ENOMEM;
  }
  BIO *bio = BIO_new(c->tls->bio_m);
  if (!bio) {
    tls_err(err, errlen, "cannot make a BIO");
    return -ENOMEM;
  }
  BIO_set_data(bio, t);
  /* one BIO both ways: SSL_set_bio then takes the one reference (SSL_set_bio(3)); an extra
   * reference here would keep every connection's BIO after SSL_free */
  SSL_set_bio(t->ssl, bio, bio);
  if (c->tls->server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (c->host && *c->host) {
      unsigned char ip[16];
      bool is_ip = inet_pton(AF_INET, c->host, ip) == 1 || inet_pton(AF_INET6, c->host, ip) == 1;
      if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), c->host);
      } else {
        SSL_set_tlsext_host_name(t->ssl, c->host);
        SSL_set1_host(t->ssl, c->host);
      }
    }
  }
  return 0;
}

static int tls_read_start(tern_stream *s) {
  tls_conn *t = tern_stream_transport_data(s);
  t->paused = false;
  int rc = uv_read_start((uv_stream_t *)tern_stream_handle(s), tls_alloc, tls_on_read);
  if (rc == 0 && !t->handshaken && !SSL_is_server(t->ssl) && !t->cout.len && !t->wreq) {
    /* a client speaks first: its ClientHello goes out now */
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) ERR_clear_error();
    start_cwrite(t);
  }
  return rc;
}

static void tls_read_stop(tern_stream *s) {
  tls_conn *t = tern_stream_transport_data(s);
  t->paused = true;
  uv_read_stop((uv_stream_t *)tern_stream_handle(s));
}

/* Plaintext the socket takes at once: encrypted and written when nothing is queued, else
 * UV_EAGAIN and the stream hands it over with write. */
static int tls_try_write(tern_stream *s, const char *p, size_t n) {
  tls_conn *t = tern_stream_transport_data(s);
  if (!t->handshaken || t->wreq || t->plain.len || t->cout.len || t->stream_write) return UV_EAGAIN;
  size_t done = 0;
  while (done < n) {
    size_t w = 0;
    if (SSL_write_ex(t->ssl, p + done, n - done, &w) != 1) {
      ERR_clear_error();
      return UV_EPROTO;
    }
    done += w;
  }
  start_cwrite(t); /* what the socket does not take now goes with a write of our own */
  return (int)n;
}

static int tls_write(tern_stream *s, tern_buf *b) {
  tls_conn *t = tern_stream_transport_data(s);
  tern_buf_append(&t->plain, b->data, b->len);
  tern_buf_free(b);
  t->stream_write = true;
  /* never complete inside this call: the stream hears of it from a write callback */
  if (!t->wreq && t->handshaken) {
    if (!encrypt_plain(t)) {
      t->stream_write = false;
      return UV_EPROTO;
    }
    return write_cout(t);
  }
  return 0;
}

static int tls_shutdown(tern_stream *s) {
  tls_conn *t = tern_stream_transport_data(s);
  t->shut_wanted = true;
  maybe_shutdown(t); /* or when the write in flight completes */
  return 0;
}

static void tls_on_close(uv_handle_t *h) { tern_stream_closed(h->data); }

static void tls_close(tern_stream *s) {
  tls_conn *t = tern_stream_transport_data(s);
  if (t) {
    tern_stream_set_transport_data(s, NULL);
    if (t->ssl) SSL_free(t->ssl); /* and our BIO */
    t->ssl = NULL;
    tern_buf_free(&t->cout);
    tern_buf_free(&t->plain);
    t->dead = true;
    if (!t->wreq) tern_free(t); /* else the write's callback (cancelled by the close) frees it */
  }
  uv_close((uv_handle_t *)tern_stream_handle(s), tls_on_close);
}

const char *tern_tls_version(tern_stream *s) {
  if (!s) return NULL;
  tls_conn *t = tern_stream_transport_data(s);
  if (!t || !t->ssl || !t->handshaken) return NULL;
  return SSL_get_version(t->ssl);
}

const tern_stream_transport tern_stream_transport_tls = {
    .name = "tls",
    .init = tls_init,
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .try_write = tls_try_write,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .close = tls_close,
};
