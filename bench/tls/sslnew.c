#include <openssl/ssl.h>
#include <malloc.h>
#include <stdio.h>
static size_t inuse(void){ struct mallinfo2 m = mallinfo2(); return m.uordblks; }
int main(void) {
  SSL_CTX *sc = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate_file(sc, "c.pem", SSL_FILETYPE_PEM); SSL_CTX_use_PrivateKey_file(sc, "k.pem", SSL_FILETYPE_PEM);
  SSL *x = SSL_new(sc); SSL_free(x);
  size_t a = inuse(); SSL *s[100]; for (int i = 0; i < 100; i++) s[i] = SSL_new(sc);
  printf("SSL_new alone: %zu bytes each\n", (inuse() - a) / 100);
  return 0;
}
