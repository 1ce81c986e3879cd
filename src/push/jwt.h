/* jwt: base64url, P-256 / RSA key handling and the two JWT signatures the push providers
 * need, with OpenSSL 3:
 *   ES256 (ECDSA P-256 + SHA-256) for APNs provider tokens and Web Push VAPID (RFC 8292);
 *   RS256 (RSASSA-PKCS1-v1_5 + SHA-256) for the FCM OAuth2 service-account assertion.
 * Internal to src/push (tests include it too). Keys are EVP_PKEY values the caller owns and
 * frees with EVP_PKEY_free. */
#ifndef TERN_PUSH_JWT_H
#define TERN_PUSH_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>

#include "base/buf.h"

typedef enum { TERN_PUSH_ES256, TERN_PUSH_RS256 } tern_push_jwt_alg;

/* Appends the unpadded base64url encoding (RFC 4648 section 5) of p[0..n) to out. */
void tern_push_b64url_encode(tern_buf *out, const void *p, size_t n);
/* Decodes base64url of s[0..n). Trailing '=' padding is tolerated; any other byte outside the
 * URL-safe alphabet, impossible lengths and non-zero trailing bits are refused. Returns the
 * decoded length, or -EINVAL (bad input) / -ENOSPC (more than cap bytes). */
ssize_t tern_push_b64url_decode(const char *s, size_t n, uint8_t *out, size_t cap);

/* Parses a PEM private key (PKCS#8 "PRIVATE KEY", SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE
 * KEY"). Returns NULL when the text is not one. */
EVP_PKEY *tern_push_key_from_pem(const char *pem, size_t len);
/* Reads a whole small file (at most max bytes) into a NUL-terminated tern_malloc'd string.
 * Returns NULL with a reason naming the file in err. Used at start-up only (blocking I/O). */
char *tern_push_read_file(const char *what, const char *path, size_t max, size_t *len, char *err, size_t errlen);
/* Reads a PEM private key file. On failure returns NULL with a reason that names the setting
 * (what) and the file in err: missing, unreadable, or not a PEM private key. */
EVP_PKEY *tern_push_key_load_file(const char *what, const char *path, char *err, size_t errlen);

bool tern_push_key_is_p256(EVP_PKEY *k);
bool tern_push_key_is_rsa(EVP_PKEY *k);
/* Writes the uncompressed public point (0x04 || X || Y) of a P-256 key. Returns 0 or -EINVAL. */
int tern_push_p256_public(EVP_PKEY *k, uint8_t out[65]);
/* A public-only P-256 key from an uncompressed point; NULL when the bytes are not a point on
 * the curve. */
EVP_PKEY *tern_push_p256_from_public(const uint8_t pub[65]);
/* A P-256 key pair from the private scalar d (big-endian); NULL when d is out of range. */
EVP_PKEY *tern_push_p256_from_private(const uint8_t d[32]);
/* A fresh random P-256 key pair. */
EVP_PKEY *tern_push_p256_generate(void);

/* Appends the compact JWT base64url(header) "." base64url(claims) "." base64url(signature) to
 * out. header_json and claims_json are the exact JSON texts to sign. For ES256 the signature is
 * the raw 64-byte r || s that JWS requires (RFC 7518 section 3.4), not OpenSSL's DER. The key
 * must fit alg (P-256 for ES256, RSA for RS256). Returns 0 or -EINVAL / -EIO. */
int tern_push_jwt_sign(EVP_PKEY *key, tern_push_jwt_alg alg, const char *header_json, const char *claims_json,
                       tern_buf *out);

/* HMAC-SHA-256 of data[0..n) under key; out gets 32 bytes. */
void tern_push_hmac_sha256(const void *key, size_t klen, const void *data, size_t n, uint8_t out[32]);

#endif
