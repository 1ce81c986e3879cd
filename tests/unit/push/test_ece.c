/* test_push_ece: the Web Push encryption (src/push/ece.c) against the worked example of
 * RFC 8291 Appendix A, byte for byte, and the JWT signatures (src/push/jwt.c) verified
 * independently with OpenSSL and the public key. */
#include <errno.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "push/ece.h"
#include "push/jwt.h"
#include "t.h"

/* RFC 8291 Appendix A ("Intermediate Values for Encryption"), base64url as printed there. */
#define RFC_PLAINTEXT "When I grow up, I want to be a watermelon"
#define RFC_AS_PRIVATE "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
#define RFC_AS_PUBLIC "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
#define RFC_UA_PUBLIC "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
#define RFC_SALT "DGv6ra1nlYgDCS1FRnbzlw"
#define RFC_AUTH "BTBZMqHH6r4Tts7J_aSIgg"
#define RFC_MESSAGE                                                                                      \
  "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqK" \
  "K6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"

static size_t dec(const char *s, uint8_t *out, size_t cap) {
  ssize_t n = tern_push_b64url_decode(s, strlen(s), out, cap);
  CHECK(n >= 0);
  return n < 0 ? 0 : (size_t)n;
}

TEST(b64url_round_trip) {
  for (size_t n = 0; n < 40; n++) {
    uint8_t in[40], back[40];
    for (size_t i = 0; i < n; i++) in[i] = (uint8_t)(i * 37 + 250);
    tern_buf b = {0};
    tern_push_b64url_encode(&b, in, n);
    CHECK(memchr(b.data ? b.data : "", '=', b.len) == NULL);
    CHECK_EQ_INT(tern_push_b64url_decode(b.data, b.len, back, sizeof back), n);
    CHECK_MEM(in, back, n);
    tern_buf_free(&b);
  }
  uint8_t out[8];
  CHECK_EQ_INT(tern_push_b64url_decode("AAAA", 4, out, 2), -ENOSPC);
  CHECK_EQ_INT(tern_push_b64url_decode("A", 1, out, sizeof out), -EINVAL);
  CHECK_EQ_INT(tern_push_b64url_decode("AA+/", 4, out, sizeof out), -EINVAL); /* standard alphabet */
  CHECK_EQ_INT(tern_push_b64url_decode("AB", 2, out, sizeof out), -EINVAL);   /* non-zero spare bits */
  CHECK_EQ_INT(tern_push_b64url_decode("AA==", 4, out, sizeof out), 1);       /* padding tolerated */
}

TEST(rfc8291_appendix_a) {
  uint8_t as_priv[32], as_pub[65], ua_pub[65], salt[16], auth[16], want[512];
  CHECK_EQ_INT(dec(RFC_AS_PRIVATE, as_priv, sizeof as_priv), 32);
  CHECK_EQ_INT(dec(RFC_AS_PUBLIC, as_pub, sizeof as_pub), 65);
  CHECK_EQ_INT(dec(RFC_UA_PUBLIC, ua_pub, sizeof ua_pub), 65);
  CHECK_EQ_INT(dec(RFC_SALT, salt, sizeof salt), 16);
  CHECK_EQ_INT(dec(RFC_AUTH, auth, sizeof auth), 16);
  size_t wantlen = dec(RFC_MESSAGE, want, sizeof want);

  EVP_PKEY *as = tern_push_p256_from_private(as_priv);
  CHECK(as != NULL);
  if (!as) return;
  uint8_t derived[65];
  CHECK_EQ_INT(tern_push_p256_public(as, derived), 0);
  CHECK_MEM(derived, as_pub, 65); /* the RFC's key pair is consistent with our point arithmetic */

  tern_buf out = {0};
  CHECK_EQ_INT(tern_push_ece_encrypt(ua_pub, auth, RFC_PLAINTEXT, strlen(RFC_PLAINTEXT), 0, salt, as, &out), 0);
  CHECK_EQ_INT(out.len, wantlen);
  CHECK(out.len == wantlen && memcmp(out.data, want, wantlen) == 0);
  tern_buf enc = {0};
  tern_push_b64url_encode(&enc, out.data, out.len);
  CHECK_EQ_STR(tern_buf_cstr(&enc), RFC_MESSAGE);
  tern_buf_free(&enc);
  tern_buf_free(&out);
  EVP_PKEY_free(as);
}

TEST(ece_fresh_keys_and_limits) {
  uint8_t ua_pub[65], auth[16];
  dec(RFC_UA_PUBLIC, ua_pub, sizeof ua_pub);
  dec(RFC_AUTH, auth, sizeof auth);
  tern_buf a = {0}, b = {0};
  CHECK_EQ_INT(tern_push_ece_encrypt(ua_pub, auth, "hi", 2, 30, NULL, NULL, &a), 0);
  CHECK_EQ_INT(tern_push_ece_encrypt(ua_pub, auth, "hi", 2, 30, NULL, NULL, &b), 0);
  CHECK_EQ_INT(a.len, TERN_PUSH_ECE_HEADER + 2 + 1 + 30 + 16);
  CHECK(a.len == b.len && memcmp(a.data, b.data, 16) != 0);            /* fresh salt */
  CHECK(memcmp(a.data + 21, b.data + 21, 65) != 0);                    /* fresh server key */
  tern_buf_reset(&a);
  static char big[4096];
  CHECK_EQ_INT(tern_push_ece_encrypt(ua_pub, auth, big, 3993, 0, NULL, NULL, &a), 0); /* the RFC's maximum */
  tern_buf_reset(&a);
  CHECK_EQ_INT(tern_push_ece_encrypt(ua_pub, auth, big, 3994, 0, NULL, NULL, &a), -EMSGSIZE);
  uint8_t off_curve[65];
  memcpy(off_curve, ua_pub, 65);
  off_curve[64] ^= 1;
  CHECK_EQ_INT(tern_push_ece_encrypt(off_curve, auth, "x", 1, 0, NULL, NULL, &a), -EINVAL);
  tern_buf_free(&a);
  tern_buf_free(&b);
}

/* Splits a compact JWT and verifies its signature with OpenSSL's verify API and the public
 * half of key; for ES256 the raw r || s is turned back into DER first. */
static int verify_jwt(const char *jwt, EVP_PKEY *key, int es256, char *claims_out, size_t cap) {
  const char *d1 = strchr(jwt, '.');
  const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  if (!d2 || strchr(d2 + 1, '.')) return -1;
  uint8_t sig[1024];
  ssize_t sl = tern_push_b64url_decode(d2 + 1, strlen(d2 + 1), sig, sizeof sig);
  if (sl < 0) return -1;
  uint8_t der[128];
  const uint8_t *vsig = sig;
  size_t vlen = (size_t)sl;
  if (es256) {
    if (sl != 64) return -2; /* JWS ES256: exactly 64 raw bytes */
    ECDSA_SIG *s = ECDSA_SIG_new();
    ECDSA_SIG_set0(s, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
    uint8_t *p = der;
    vlen = (size_t)i2d_ECDSA_SIG(s, &p);
    ECDSA_SIG_free(s);
    vsig = der;
  }
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) > 0 &&
           EVP_DigestVerify(md, vsig, vlen, (const uint8_t *)jwt, (size_t)(d2 - jwt)) == 1;
  EVP_MD_CTX_free(md);
  if (!ok) return -3;
  ssize_t cl = tern_push_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), (uint8_t *)claims_out, cap - 1);
  if (cl < 0) return -1;
  claims_out[cl] = '\0';
  return 0;
}

TEST(jwt_es256) {
  EVP_PKEY *k = tern_push_p256_generate();
  tern_buf b = {0};
  const char *claims = "{\"aud\":\"https://push.example.net\",\"exp\":1700000000,\"sub\":\"mailto:ops@example.org\"}";
  CHECK_EQ_INT(tern_push_jwt_sign(k, TERN_PUSH_ES256, "{\"typ\":\"JWT\",\"alg\":\"ES256\"}", claims, &b), 0);
  char got[256];
  CHECK_EQ_INT(verify_jwt(tern_buf_cstr(&b), k, 1, got, sizeof got), 0);
  CHECK_EQ_STR(got, claims);
  /* verify with a key holding only the public point, as a push service would */
  uint8_t pub[65];
  CHECK_EQ_INT(tern_push_p256_public(k, pub), 0);
  EVP_PKEY *pk = tern_push_p256_from_public(pub);
  CHECK(pk != NULL);
  CHECK_EQ_INT(verify_jwt(tern_buf_cstr(&b), pk, 1, got, sizeof got), 0);
  /* a changed claim no longer verifies */
  b.data[strchr(b.data, '.') - b.data + 3] ^= 1;
  CHECK(verify_jwt(tern_buf_cstr(&b), pk, 1, got, sizeof got) != 0);
  EVP_PKEY_free(pk);
  tern_buf_free(&b);
  EVP_PKEY_free(k);
}

TEST(jwt_rs256) {
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  CHECK(k != NULL);
  tern_buf b = {0};
  const char *claims = "{\"iss\":\"svc@p.iam.gserviceaccount.com\",\"aud\":\"https://oauth2.googleapis.com/token\"}";
  CHECK_EQ_INT(tern_push_jwt_sign(k, TERN_PUSH_RS256, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, &b), 0);
  char got[256];
  CHECK_EQ_INT(verify_jwt(tern_buf_cstr(&b), k, 0, got, sizeof got), 0);
  CHECK_EQ_STR(got, claims);
  /* the wrong key type for the algorithm is refused, not signed */
  tern_buf c = {0};
  CHECK_EQ_INT(tern_push_jwt_sign(k, TERN_PUSH_ES256, "{}", "{}", &c), -EINVAL);
  CHECK_EQ_INT(c.len, 0);
  tern_buf_free(&c);
  tern_buf_free(&b);
  EVP_PKEY_free(k);
}

TEST(pem_keys) {
  EVP_PKEY *k = tern_push_p256_generate();
  CHECK(tern_push_key_is_p256(k) && !tern_push_key_is_rsa(k));
  EVP_PKEY_free(k);
  CHECK(tern_push_key_from_pem("not a key", 9) == NULL);
  char err[256];
  CHECK(tern_push_key_load_file("push.apns.key_file", "/nonexistent/AuthKey.p8", err, sizeof err) == NULL);
  CHECK(strstr(err, "/nonexistent/AuthKey.p8") != NULL && strstr(err, "push.apns.key_file") != NULL);
}

int main(void) {
  RUN(b64url_round_trip);
  RUN(rfc8291_appendix_a);
  RUN(ece_fresh_keys_and_limits);
  RUN(jwt_es256);
  RUN(jwt_rs256);
  RUN(pem_keys);
  DONE();
}
