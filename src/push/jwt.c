/* jwt: base64url, keys and JWT signing for the push providers (see jwt.h).
 *
 * Only OpenSSL 3 APIs that are not deprecated are used (EVP_PKEY, OSSL_PARAM, EC_GROUP/EC_POINT
 * arithmetic), so the build stays -Werror clean without OPENSSL_API_COMPAT tricks. */
#include "push/jwt.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "base/alloc.h"

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void tern_push_b64url_encode(tern_buf *out, const void *p, size_t n) {
  const uint8_t *s = p;
  tern_buf_reserve(out, (n + 2) / 3 * 4);
  char *d = out->data + out->len;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    *d++ = B64URL[v >> 18];
    *d++ = B64URL[(v >> 12) & 63];
    *d++ = B64URL[(v >> 6) & 63];
    *d++ = B64URL[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)s[i] << 16;
    *d++ = B64URL[v >> 18];
    *d++ = B64URL[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
    *d++ = B64URL[v >> 18];
    *d++ = B64URL[(v >> 12) & 63];
    *d++ = B64URL[(v >> 6) & 63];
  }
  out->len = (size_t)(d - out->data);
}

static int b64url_val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

ssize_t tern_push_b64url_decode(const char *s, size_t n, uint8_t *out, size_t cap) {
  while (n > 0 && s[n - 1] == '=') n--;
  if (n % 4 == 1) return -EINVAL; /* no byte count encodes to 4k+1 characters */
  size_t outlen = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
  if (outlen > cap) return -ENOSPC;
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64url_val((unsigned char)s[i]);
    if (v < 0) return -EINVAL;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) return -EINVAL; /* non-canonical: leftover bits must be zero */
  return (ssize_t)o;
}

EVP_PKEY *tern_push_key_from_pem(const char *pem, size_t len) {
  if (len > INT32_MAX) return NULL;
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio) return NULL;
  EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  BIO_free(bio);
  return k;
}

char *tern_push_read_file(const char *what, const char *path, size_t max, size_t *len, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot read %s: %s", what, path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
    snprintf(err, errlen, "%s: %s is not a regular file of at most %zu bytes", what, path, max);
    close(fd);
    return NULL;
  }
  size_t n = (size_t)st.st_size, got = 0;
  char *buf = tern_malloc(n + 1);
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      snprintf(err, errlen, "%s: cannot read %s: %s", what, path, r < 0 ? strerror(errno) : "short read");
      tern_free(buf);
      close(fd);
      return NULL;
    }
    got += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

EVP_PKEY *tern_push_key_load_file(const char *what, const char *path, char *err, size_t errlen) {
  size_t n;
  char *pem = tern_push_read_file(what, path, 64 * 1024, &n, err, errlen);
  if (!pem) return NULL;
  EVP_PKEY *k = tern_push_key_from_pem(pem, n);
  OPENSSL_cleanse(pem, n); /* private key material: do not leave it in freed heap */
  tern_free(pem);
  if (!k) snprintf(err, errlen, "%s: %s does not hold a PEM private key", what, path);
  return k;
}

bool tern_push_key_is_p256(EVP_PKEY *k) {
  if (!k || !EVP_PKEY_is_a(k, "EC")) return false;
  char name[64];
  size_t nl = 0;
  if (!EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &nl)) return false;
  return !strcmp(name, "prime256v1") || !strcmp(name, "P-256") || !strcmp(name, "secp256r1");
}

bool tern_push_key_is_rsa(EVP_PKEY *k) { return k && EVP_PKEY_is_a(k, "RSA"); }

int tern_push_p256_public(EVP_PKEY *k, uint8_t out[65]) {
  size_t n = 0;
  if (!EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out, 65, &n) || n != 65 ||
      out[0] != 0x04)
    return -EINVAL;
  return 0;
}

/* Builds an EC P-256 EVP_PKEY from OSSL params; selection says public or key pair. */
static EVP_PKEY *p256_fromdata(OSSL_PARAM_BLD *bld, int selection) {
  EVP_PKEY *k = NULL;
  OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
  if (params && ctx && EVP_PKEY_fromdata_init(ctx) > 0) {
    if (EVP_PKEY_fromdata(ctx, &k, selection, params) <= 0) k = NULL;
  }
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  if (k) {
    /* fromdata decodes the point, but check explicitly: a client-supplied key that is not on
     * the curve must never reach ECDH (invalid-curve attacks). The quick check (on the curve,
     * not infinity) is the whole check for P-256: its cofactor is 1, so the full check's extra
     * order multiplication (~45 us, a third of a Web Push send) proves nothing more. */
    EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
    int ok = chk && EVP_PKEY_public_check_quick(chk) > 0;
    EVP_PKEY_CTX_free(chk);
    if (!ok) {
      EVP_PKEY_free(k);
      k = NULL;
    }
  }
  return k;
}

EVP_PKEY *tern_push_p256_from_public(const uint8_t pub[65]) {
  if (pub[0] != 0x04) return NULL;
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  if (!bld) return NULL;
  EVP_PKEY *k = NULL;
  if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
      OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 65))
    k = p256_fromdata(bld, EVP_PKEY_PUBLIC_KEY);
  OSSL_PARAM_BLD_free(bld);
  return k;
}

EVP_PKEY *tern_push_p256_from_private(const uint8_t d[32]) {
  EVP_PKEY *k = NULL;
  EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  EC_POINT *pt = g ? EC_POINT_new(g) : NULL;
  BIGNUM *bn = BN_bin2bn(d, 32, NULL);
  BN_CTX *bctx = BN_CTX_new();
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  uint8_t pub[65];
  if (g && pt && bn && bctx && bld && !BN_is_zero(bn) && BN_cmp(bn, EC_GROUP_get0_order(g)) < 0 &&
      EC_POINT_mul(g, pt, bn, NULL, NULL, bctx) &&
      EC_POINT_point2oct(g, pt, POINT_CONVERSION_UNCOMPRESSED, pub, sizeof pub, bctx) == sizeof pub &&
      OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn) &&
      OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub))
    k = p256_fromdata(bld, EVP_PKEY_KEYPAIR);
  OSSL_PARAM_BLD_free(bld);
  BN_CTX_free(bctx);
  BN_clear_free(bn);
  EC_POINT_free(pt);
  EC_GROUP_free(g);
  return k;
}

EVP_PKEY *tern_push_p256_generate(void) { return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); }

/* OpenSSL's ECDSA output is DER SEQUENCE { r INTEGER, s INTEGER }; JWS wants r || s, each
 * left-padded to 32 bytes. */
static int der_to_raw_p256(const uint8_t *der, size_t len, uint8_t out[64]) {
  const unsigned char *p = der;
  ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
  if (!sig) return -EIO;
  const BIGNUM *r, *s;
  ECDSA_SIG_get0(sig, &r, &s);
  int ok = BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
  ECDSA_SIG_free(sig);
  return ok ? 0 : -EIO;
}

int tern_push_jwt_sign(EVP_PKEY *key, tern_push_jwt_alg alg, const char *header_json, const char *claims_json,
                       tern_buf *out) {
  if (alg == TERN_PUSH_ES256 ? !tern_push_key_is_p256(key) : !tern_push_key_is_rsa(key)) return -EINVAL;
  size_t start = out->len;
  tern_push_b64url_encode(out, header_json, strlen(header_json));
  tern_buf_putc(out, '.');
  tern_push_b64url_encode(out, claims_json, strlen(claims_json));
  size_t signing_len = out->len - start;

  uint8_t sigbuf[1024]; /* RSA up to 8192 bits, or a DER ECDSA signature */
  size_t siglen = sizeof sigbuf;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md && EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) > 0 &&
           EVP_DigestSign(md, sigbuf, &siglen, (const unsigned char *)out->data + start, signing_len) > 0;
  EVP_MD_CTX_free(md);
  if (!ok) {
    out->len = start;
    return -EIO;
  }
  tern_buf_putc(out, '.');
  if (alg == TERN_PUSH_ES256) {
    uint8_t raw[64];
    if (der_to_raw_p256(sigbuf, siglen, raw) < 0) {
      out->len = start;
      return -EIO;
    }
    tern_push_b64url_encode(out, raw, sizeof raw);
  } else {
    tern_push_b64url_encode(out, sigbuf, siglen);
  }
  return 0;
}

void tern_push_hmac_sha256(const void *key, size_t klen, const void *data, size_t n, uint8_t out[32]) {
  unsigned int olen = 32;
  HMAC(EVP_sha256(), key, (int)klen, data, n, out, &olen);
}
