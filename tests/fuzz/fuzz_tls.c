/* libFuzzer target for the server side of the TLS transport (src/net/tls.c), driven the way
 * ternd drives it: a tern_stream with tern_stream_transport_tls on one end of a socketpair, on
 * a real libuv loop, with a server context made at start-up from a throwaway P-256 key and
 * self-signed certificate (generated in-process with OpenSSL, written to a temp dir for
 * tern_tls_server_new, then deleted). The fuzz input is what the client sends. OpenSSL does
 * all the TLS, on both sides.
 *
 * Input layout: byte 0 and byte 1 are settings, the rest is the payload.
 *   byte 0, bits 0-2: how the bytes are cut into socket writes (each one read by the server
 *                     before the next is written): whole, by TLS record header, 1, 2, 3, 7,
 *                     64 or 517 bytes;
 *   byte 0, bit 7:    0 = raw mode: the payload is client-to-server records as they are (a
 *                     ClientHello, garbage, alerts, a plain HTTP request). No handshake can
 *                     complete (the client's Finished needs the server's fresh secrets), so
 *                     nothing may come up as plaintext, and the connection must end with an
 *                     error or wait for more; 1 = session mode: an in-process OpenSSL client
 *                     (memory BIOs, no verification) completes a real handshake through the
 *                     socket first, then sends the payload as application data, cut into
 *                     SSL_write calls of (bits 3-5) 1, 5, 100, 1000, 16384 bytes or whole;
 *   byte 0, bit 6:    session mode: the client offers TLS 1.2 only (else 1.3);
 *   byte 1, bit 0:    the owner pauses reading after every delivery (tern_stream_input_keep
 *                     then keeps what a read decrypted), and the driver resumes it;
 *   byte 1, bits 1-7: session mode, when not 0: one byte of the application-data ciphertext
 *                     is flipped (bit (byte1>>1)&7 of the byte at offset byte2*256+byte3
 *                     modulo its length); bytes 2 and 3 are then settings too.
 *
 * Invariants (abort on violation, so libFuzzer reports a crash):
 *   - raw mode: no plaintext is ever handed up;
 *   - session mode: the plaintext handed up is a prefix of what the client sent, and all of it
 *     when nothing was flipped; a flipped byte ends the connection (never a silent accept of
 *     altered data);
 *   - every connection ends once the client's side closes (on_end is called), and closes
 *     (on_close), so nothing is left on the loop; ASan/LSan report any bad access or leak.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "net/stream.h"
#include "net/tls.h"
#include "fuzz.h"

/* ---- start-up: the loop, the stream context and the server context ----------------------- */

static uv_loop_t g_loop;
static tern_stream_loop *g_sl;
static tern_tls *g_tls;
static SSL_CTX *g_client12, *g_client13;

static void write_pem_files(const char *dir, char *cert, char *key, size_t n) {
  EVP_PKEY *pk = EVP_EC_gen("P-256");
  REQUIRE(pk);
  X509 *x = X509_new();
  REQUIRE(x);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, pk);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz.tern.invalid", -1, -1, 0);
  X509_set_issuer_name(x, name);
  REQUIRE(X509_sign(x, pk, EVP_sha256()) > 0);
  snprintf(cert, n, "%s/cert.pem", dir);
  snprintf(key, n, "%s/key.pem", dir);
  FILE *f = fopen(cert, "w");
  REQUIRE(f && PEM_write_X509(f, x) == 1);
  fclose(f);
  f = fopen(key, "w");
  REQUIRE(f && PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) == 1);
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(pk);
}

static SSL_CTX *client_ctx(int version) {
  SSL_CTX *c = SSL_CTX_new(TLS_client_method());
  REQUIRE(c);
  SSL_CTX_set_min_proto_version(c, version);
  SSL_CTX_set_max_proto_version(c, version);
  SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL); /* the certificate is a throwaway */
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  return c;
}

static void setup(void) {
  char dir[] = "/tmp/fuzz_tls.XXXXXX";
  REQUIRE(mkdtemp(dir));
  char cert[128], key[128], err[512];
  write_pem_files(dir, cert, key, sizeof cert);
  int rc = tern_tls_server_new(cert, key, &g_tls, err, sizeof err);
  if (rc < 0) fprintf(stderr, "fuzz_tls: %s\n", err);
  REQUIRE(rc == 0);
  unlink(cert);
  unlink(key);
  rmdir(dir);
  REQUIRE(uv_loop_init(&g_loop) == 0);
  g_sl = tern_stream_loop_new(&g_loop);
  g_client12 = client_ctx(TLS1_2_VERSION);
  g_client13 = client_ctx(TLS1_3_VERSION);
}

/* ---- one connection's owner ---------------------------------------------------------------- */

typedef struct conn {
  tern_stream *s;
  tern_buf got;  /* plaintext handed up */
  bool pause;    /* pause after every delivery */
  bool paused;
  bool ended;
  int end_err;
  bool closed;
} conn;

static size_t c_data(tern_stream *s, char *data, size_t len, void *owner) {
  conn *c = owner;
  tern_buf_append(&c->got, data, len);
  if (c->pause) {
    tern_stream_pause(s);
    c->paused = true;
  }
  return len;
}

static void c_end(tern_stream *s, int err, bool write, void *owner) {
  (void)write;
  conn *c = owner;
  if (!c->ended) c->end_err = err;
  c->ended = true;
  tern_stream_close(s); /* what the server does */
}

static void c_close(tern_stream *s, void *owner) {
  (void)s;
  conn *c = owner;
  c->closed = true;
}

static const tern_stream_cbs CBS = {.on_data = c_data, .on_end = c_end, .on_close = c_close};

/* ---- the driver ---------------------------------------------------------------------------- */

typedef struct driver {
  conn c;
  int peer;        /* the client's end of the socketpair (nonblocking) */
  int server_fd;   /* the server's end, for FIONREAD (owned by the stream's handle) */
  tern_buf from_server; /* what the server wrote, not yet taken by the client */
  size_t back;          /* bytes the server wrote in all */
} driver;

static void drain_peer(driver *d) {
  char buf[16384];
  for (;;) {
    ssize_t n = read(d->peer, buf, sizeof buf);
    if (n > 0) {
      tern_buf_append(&d->from_server, buf, (size_t)n);
      d->back += (size_t)n;
      continue;
    }
    return; /* EAGAIN, EOF or an error: nothing more now */
  }
}

/* Runs the loop until the server has read what is in the socket (or is done), then a few
 * turns more for its writes and closes. Resumes a paused owner. */
static void pump(driver *d) {
  int idle = 0;
  for (int i = 0; i < 10000 && idle < 3; i++) {
    if (d->c.paused && !d->c.closed && !tern_stream_is_closing(d->c.s)) {
      d->c.paused = false;
      tern_stream_resume(d->c.s);
    }
    uv_run(&g_loop, UV_RUN_NOWAIT);
    drain_peer(d);
    int pending = 0;
    if (!d->c.closed) ioctl(d->server_fd, FIONREAD, &pending);
    if ((pending == 0 || d->c.closed || d->c.ended) && !d->c.paused) idle++;
    else idle = 0;
  }
}

/* Writes p[0..n) to the server, then lets it read all of it. */
static void send_chunk(driver *d, const uint8_t *p, size_t n) {
  while (n && !d->c.closed) {
    ssize_t w = write(d->peer, p, n);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pump(d);
        continue;
      }
      return; /* the server closed: EPIPE */
    }
    p += w;
    n -= (size_t)w;
  }
  pump(d);
}

/* Cuts p[0..n) into socket writes as byte 0's low bits say. */
static void send_cut(driver *d, const uint8_t *p, size_t n, unsigned mode) {
  static const size_t fixed[] = {0, 0, 1, 2, 3, 7, 64, 517};
  size_t off = 0;
  while (off < n && !d->c.closed) {
    size_t k = n - off;
    if (mode == 1) {
      /* one TLS record (5-byte header + its length), or what is left */
      if (k >= 5) {
        size_t rec = 5 + ((size_t)p[off + 3] << 8 | p[off + 4]);
        if (rec < k) k = rec;
      }
    } else if (mode >= 2 && fixed[mode] < k) {
      k = fixed[mode];
    }
    send_chunk(d, p + off, k);
    off += k;
  }
}

/* An in-process client completes a handshake through the socket; returns it, or NULL when the
 * server ended the connection first (it never should: then the caller aborts). */
static SSL *client_handshake(driver *d, bool tls12) {
  SSL *ssl = SSL_new(tls12 ? g_client12 : g_client13);
  REQUIRE(ssl);
  BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
  REQUIRE(rb && wb);
  SSL_set_bio(ssl, rb, wb);
  SSL_set_connect_state(ssl);
  SSL_set_tlsext_host_name(ssl, "fuzz.tern.invalid");
  for (int round = 0; round < 20; round++) {
    int r = SSL_do_handshake(ssl);
    char *out;
    long n = BIO_get_mem_data(wb, &out);
    if (n > 0) {
      send_chunk(d, (const uint8_t *)out, (size_t)n);
      (void)BIO_reset(wb);
    }
    if (r == 1) {
      ERR_clear_error();
      return ssl;
    }
    REQUIRE(SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ);
    if (d->from_server.len) {
      BIO_write(rb, d->from_server.data, (int)d->from_server.len);
      tern_buf_free(&d->from_server);
    }
    if (d->c.ended) break;
  }
  SSL_free(ssl);
  return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool ready;
  if (!ready) {
    setup();
    ready = true;
  }
  if (size < 2) return 0;
  const unsigned cut = data[0] & 7, wcut = (data[0] >> 3) & 7;
  const bool session = data[0] & 0x80, tls12 = data[0] & 0x40;
  const unsigned flip = data[1] >> 1;
  size_t pos_sel = 0;
  const uint8_t *in = data + 2;
  size_t len = size - 2;
  if (session && flip) {
    if (len < 2) return 0;
    pos_sel = (size_t)in[0] << 8 | in[1];
    in += 2;
    len -= 2;
  }

  driver d = {0};
  d.c.pause = data[1] & 1;
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  d.peer = sv[1];
  d.server_fd = sv[0];
  char err[256];
  tern_tls_config tc = {.tls = g_tls, .host = NULL};
  REQUIRE(tern_stream_open(g_sl, &tern_stream_transport_tls, &tc, &CBS, &d.c, &d.c.s, err, sizeof err) == 0);
  REQUIRE(uv_tcp_open(tern_stream_handle(d.c.s), sv[0]) == 0);
  REQUIRE(tern_stream_start(d.c.s, err, sizeof err) == 0);

  if (!session) {
    send_cut(&d, in, len, cut);
    REQUIRE(d.c.got.len == 0);
  } else {
    SSL *cl = client_handshake(&d, tls12);
    REQUIRE(cl);
    REQUIRE(!d.c.ended);
    /* the payload as application data, in SSL_write pieces */
    static const size_t wsizes[] = {0, 1, 5, 100, 1000, 16384, 0, 0};
    size_t piece = wsizes[wcut] ? wsizes[wcut] : (len ? len : 1);
    for (size_t off = 0; off < len;) {
      size_t k = len - off < piece ? len - off : piece;
      size_t w = 0;
      REQUIRE(SSL_write_ex(cl, in + off, k, &w) == 1 && w == k);
      off += k;
    }
    char *ct;
    long n = BIO_get_mem_data(SSL_get_wbio(cl), &ct);
    uint8_t *copy = tern_malloc(n > 0 ? (size_t)n : 1);
    if (n > 0) memcpy(copy, ct, (size_t)n);
    bool flipped = flip && n > 0;
    if (flipped) copy[pos_sel % (size_t)n] ^= (uint8_t)(1u << (flip & 7));
    send_cut(&d, copy, n > 0 ? (size_t)n : 0, cut);
    tern_free(copy);
    SSL_free(cl);
    REQUIRE(d.c.got.len <= len);
    REQUIRE(d.c.got.len == 0 || memcmp(d.c.got.data, in, d.c.got.len) == 0);
    if (!flipped) {
      REQUIRE(d.c.got.len == len);
      REQUIRE(!d.c.ended);
    } else if (!d.c.ended) {
      /* a flipped length may leave the server waiting for the rest of a record: it must not
       * have delivered that record */
      REQUIRE(d.c.got.len < len || len == 0);
    }
  }

  /* the client goes away: the connection must end and close */
  shutdown(d.peer, SHUT_WR);
  pump(&d);
  if (!d.c.closed) {
    if (!tern_stream_is_closing(d.c.s)) {
      REQUIRE(d.c.ended); /* an EOF reached the owner */
      tern_stream_close(d.c.s);
    }
    pump(&d);
  }
  REQUIRE(d.c.closed);
  REQUIRE(d.c.end_err < 0);
  if (getenv("FUZZ_TLS_VERBOSE")) /* what each input came to, for checking the seeds */
    fprintf(stderr, "fuzz_tls: %s mode, %zu payload bytes, %zu plaintext up, ended %s, %zu bytes back\n",
            session ? "session" : "raw", len, d.c.got.len, uv_err_name(d.c.end_err), d.back);
  close(d.peer);
  tern_buf_free(&d.c.got);
  tern_buf_free(&d.from_server);
  return 0;
}
