/* bench/tls/sslheap.c: where an idle server-side TLS connection's heap goes in OpenSSL, by
 * allocation site (OpenSSL passes its file and line to the allocator). It makes 200 server
 * SSLs with ternd's settings (src/net/tls.c: RELEASE_BUFFERS, no session cache, no tickets,
 * no compression or renegotiation), completes a handshake for each with a client over memory
 * BIO pairs, lets the server read one record of application data (as an authenticated
 * WebSocket has), frees the client, and prints what each server SSL still holds. Prints
 * figures; asserts nothing.
 *
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
 *     -subj /CN=x -keyout k.pem -out c.pem
 *   gcc -O1 -g bench/tls/sslheap.c -o sslheap -lssl -lcrypto && ./sslheap 13 && ./sslheap 12
 */
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SLOTS = 1 << 20, N = 200, SITES = 4096 };

typedef struct live { void *p; size_t n; const char *file; int line; } live;
static live tab[SLOTS]; /* open addressing by pointer; a freed slot keeps p == TOMB */
static int tracking;     /* only the server side's allocations are counted */
#define TOMB ((void *)1)

static unsigned slot(void *p) { return (unsigned)(((unsigned long)p >> 4) * 2654435761u) & (SLOTS - 1); }
static void add(void *p, size_t n, const char *file, int line) {
  if (!tracking || !p) return;
  unsigned i = slot(p);
  while (tab[i].p && tab[i].p != TOMB) i = (i + 1) & (SLOTS - 1);
  tab[i] = (live){p, n, file, line};
}
static void del(void *p) {
  if (!p) return;
  for (unsigned i = slot(p); tab[i].p; i = (i + 1) & (SLOTS - 1))
    if (tab[i].p == p) { tab[i] = (live){TOMB, 0, NULL, 0}; return; }
}
static void *m_malloc(size_t n, const char *file, int line) { void *p = malloc(n); add(p, n, file, line); return p; }
static void *m_realloc(void *o, size_t n, const char *file, int line) {
  del(o);
  void *p = realloc(o, n);
  add(p, n, file, line);
  return p;
}
static void m_free(void *p, const char *file, int line) { (void)file; (void)line; del(p); free(p); }

/* Moves what each side wrote to the other (untracked: the client's side is not the server's). */
static void pump(BIO *s_ext, BIO *c_ext) {
  int was = tracking;
  tracking = 0;
  char b[65536];
  int n;
  while ((n = BIO_read(s_ext, b, sizeof b)) > 0) BIO_write(c_ext, b, n);
  while ((n = BIO_read(c_ext, b, sizeof b)) > 0) BIO_write(s_ext, b, n);
  tracking = was;
}

int main(int argc, char **argv) {
  CRYPTO_set_mem_functions(m_malloc, m_realloc, m_free);
  int v13 = argc < 2 || strcmp(argv[1], "12") != 0;
  SSL_CTX *sc = SSL_CTX_new(TLS_server_method()), *cc = SSL_CTX_new(TLS_client_method());
  if (SSL_CTX_use_certificate_file(sc, "c.pem", SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_use_PrivateKey_file(sc, "k.pem", SSL_FILETYPE_PEM) != 1) {
    fprintf(stderr, "needs c.pem and k.pem in the current directory (see the comment on top)\n");
    return 1;
  }
  SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
  SSL_CTX_set1_groups_list(sc, "X25519:prime256v1:secp384r1");
  SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(sc, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(sc, 0);
  SSL_CTX_set_session_cache_mode(cc, SSL_SESS_CACHE_OFF);
  if (!v13) SSL_CTX_set_max_proto_version(cc, TLS1_2_VERSION);
  static SSL *keep[N];
  for (int k = -1; k < N; k++) { /* k == -1 warms up the context's lazily made state */
    tracking = k >= 0;
    SSL *s = SSL_new(sc);
    int was = tracking;
    tracking = 0;
    SSL *c = SSL_new(cc);
    BIO *s_int, *s_ext, *c_int, *c_ext;
    BIO_new_bio_pair(&s_int, 0, &s_ext, 0);
    BIO_new_bio_pair(&c_int, 0, &c_ext, 0);
    SSL_set_bio(c, c_int, c_int);
    tracking = was;
    SSL_set_bio(s, s_int, s_int); /* the pairs stand for ternd's BIO, whose idle cost is 0: not counted */
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    for (int i = 0; i < 50 && !(SSL_is_init_finished(s) && SSL_is_init_finished(c)); i++) {
      tracking = 0;
      SSL_do_handshake(c);
      tracking = was;
      SSL_do_handshake(s);
      pump(s_ext, c_ext);
    }
    tracking = 0;
    SSL_write(c, "hello", 5);
    tracking = was;
    pump(s_ext, c_ext);
    char b[64];
    if (SSL_read(s, b, sizeof b) != 5) { fprintf(stderr, "no handshake\n"); return 1; }
    tracking = 0;
    SSL_free(c);
    BIO_free(c_ext);
    if (k >= 0) keep[k] = s;
    else SSL_free(s);
  }
  tracking = 0;
  typedef struct site { const char *file; int line; size_t bytes, count; } site;
  static site g[SITES];
  int ng = 0;
  size_t total = 0, count = 0;
  for (unsigned i = 0; i < SLOTS; i++) {
    if (!tab[i].p || tab[i].p == TOMB) continue;
    int j = 0;
    while (j < ng && !(g[j].line == tab[i].line && !strcmp(g[j].file, tab[i].file))) j++;
    if (j == ng && ng < SITES) g[ng++] = (site){tab[i].file, tab[i].line, 0, 0};
    if (j == SITES) continue;
    g[j].bytes += tab[i].n;
    g[j].count++;
    total += tab[i].n;
    count++;
  }
  for (int a = 0; a < ng; a++)
    for (int b = a + 1; b < ng; b++)
      if (g[b].bytes > g[a].bytes) { site t = g[a]; g[a] = g[b]; g[b] = t; }
  printf("%s (%s, %s): %zu bytes in %.1f allocations held per idle server SSL\n",
         SSL_get_version(keep[0]), SSL_CIPHER_get_name(SSL_get_current_cipher(keep[0])), OpenSSL_version(OPENSSL_VERSION),
         total / N, (double)count / N);
  for (int j = 0; j < ng && j < 25; j++)
    printf("%7zu B %5.1f allocs  %s:%d\n", g[j].bytes / N, (double)g[j].count / N, g[j].file, g[j].line);
  return 0;
}
