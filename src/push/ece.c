/* ece: RFC 8291 Web Push encryption (see ece.h).
 *
 *   ecdh_secret = ECDH(as_private, ua_public)
 *   PRK_key     = HMAC-SHA-256(auth_secret, ecdh_secret)                 HKDF-Extract
 *   IKM         = HMAC-SHA-256(PRK_key, "WebPush: info" 0x00 ua_public as_public 0x01)
 *   PRK         = HMAC-SHA-256(salt, IKM)                                HKDF-Extract
 *   CEK         = HMAC-SHA-256(PRK, "Content-Encoding: aes128gcm" 0x00 0x01)[0..16]
 *   NONCE       = HMAC-SHA-256(PRK, "Content-Encoding: nonce" 0x00 0x01)[0..12]
 *   body        = salt || rs (u32 BE) || idlen (65) || as_public || AES-128-GCM(CEK, NONCE,
 *                 plaintext || 0x02 || zero padding) || tag
 * Every HKDF-Expand here asks for at most 32 bytes, so one HMAC block (T(1)) is the whole
 * output; writing it out as HMACs keeps the code next to the RFC's notation. */
#include "push/ece.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "base/alloc.h"
#include "push/jwt.h"

static int ecdh(EVP_PKEY *priv, EVP_PKEY *peer, uint8_t out[32]) {
  size_t n = 32;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
  int ok = ctx && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_derive_set_peer(ctx, peer) > 0 &&
           EVP_PKEY_derive(ctx, out, &n) > 0 && n == 32;
  EVP_PKEY_CTX_free(ctx);
  return ok ? 0 : -EINVAL;
}

static int aes128gcm(const uint8_t key[16], const uint8_t nonce[12], const uint8_t *in, size_t n, uint8_t *out,
                     uint8_t tag[16]) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int len = 0, fin = 0;
  int ok = c && EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL) &&
           EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) &&
           EVP_EncryptInit_ex(c, NULL, NULL, key, nonce) && EVP_EncryptUpdate(c, out, &len, in, (int)n) &&
           EVP_EncryptFinal_ex(c, out + len, &fin) && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag);
  EVP_CIPHER_CTX_free(c);
  return ok && (size_t)(len + fin) == n ? 0 : -EIO;
}

int tern_push_ece_encrypt(const uint8_t ua_public[65], const uint8_t auth[16], const void *plaintext, size_t len,
                          size_t pad, const uint8_t *salt, EVP_PKEY *as_key, tern_buf *out) {
  /* One record: it must fit the declared record size and the push service's 4096 bytes. */
  size_t rec = len + 1 + pad + 16;
  if (len > TERN_PUSH_ECE_MAX_BODY || pad > TERN_PUSH_ECE_MAX_BODY || rec > TERN_PUSH_ECE_RS ||
      TERN_PUSH_ECE_HEADER + rec > TERN_PUSH_ECE_MAX_BODY)
    return -EMSGSIZE;
  EVP_PKEY *ua = tern_push_p256_from_public(ua_public);
  if (!ua) return -EINVAL;
  EVP_PKEY *as = as_key ? as_key : tern_push_p256_generate();
  uint8_t salt_buf[16], as_public[65], secret[32], prk_key[32], ikm[32], prk[32], cek[32], nonce[32];
  int rc = -EINVAL;
  uint8_t *pt = NULL;
  if (!as || tern_push_p256_public(as, as_public) < 0 || ecdh(as, ua, secret) < 0) goto done;
  if (salt) memcpy(salt_buf, salt, 16);
  else if (RAND_bytes(salt_buf, 16) != 1) goto done;

  tern_push_hmac_sha256(auth, 16, secret, 32, prk_key);
  uint8_t key_info[14 + 65 + 65 + 1];
  memcpy(key_info, "WebPush: info", 14); /* 13 characters and the 0x00 separator */
  memcpy(key_info + 14, ua_public, 65);
  memcpy(key_info + 79, as_public, 65);
  key_info[144] = 0x01;
  tern_push_hmac_sha256(prk_key, 32, key_info, sizeof key_info, ikm);
  tern_push_hmac_sha256(salt_buf, 16, ikm, 32, prk);
  static const uint8_t cek_info[] = "Content-Encoding: aes128gcm\0\1"; /* info || 0x01 */
  static const uint8_t nonce_info[] = "Content-Encoding: nonce\0\1";
  tern_push_hmac_sha256(prk, 32, cek_info, sizeof cek_info - 1, cek);
  tern_push_hmac_sha256(prk, 32, nonce_info, sizeof nonce_info - 1, nonce);

  size_t ptlen = len + 1 + pad;
  pt = tern_calloc(1, ptlen);
  if (len) memcpy(pt, plaintext, len);
  pt[len] = 0x02; /* the last (and only) record's delimiter; zeros after it are padding */

  tern_buf_reserve(out, TERN_PUSH_ECE_HEADER + ptlen + 16);
  uint8_t *h = (uint8_t *)out->data + out->len;
  memcpy(h, salt_buf, 16);
  h[16] = (uint8_t)(TERN_PUSH_ECE_RS >> 24);
  h[17] = (uint8_t)(TERN_PUSH_ECE_RS >> 16);
  h[18] = (uint8_t)(TERN_PUSH_ECE_RS >> 8);
  h[19] = (uint8_t)TERN_PUSH_ECE_RS;
  h[20] = 65;
  memcpy(h + 21, as_public, 65);
  uint8_t *ct = h + TERN_PUSH_ECE_HEADER;
  /* The record sequence number is 0, so the nonce is used as derived (no XOR needed). */
  if ((rc = aes128gcm(cek, nonce, pt, ptlen, ct, ct + ptlen)) < 0) goto done;
  out->len += TERN_PUSH_ECE_HEADER + ptlen + 16;
  rc = 0;
done:
  OPENSSL_cleanse(secret, sizeof secret);
  OPENSSL_cleanse(prk_key, sizeof prk_key);
  OPENSSL_cleanse(ikm, sizeof ikm);
  OPENSSL_cleanse(prk, sizeof prk);
  OPENSSL_cleanse(cek, sizeof cek);
  if (pt) {
    OPENSSL_cleanse(pt, len + 1 + pad);
    tern_free(pt);
  }
  if (as != as_key) EVP_PKEY_free(as);
  EVP_PKEY_free(ua);
  return rc;
}
