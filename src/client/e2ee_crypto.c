/* e2ee_crypto.c: the primitives libsignal-protocol-c asks its caller for, and AES-256-GCM for
 * attachments, all on OpenSSL 3's EVP interface. Glue only: every primitive is OpenSSL's. */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/core_names.h>
#include <signal/signal_protocol.h>

#include "base/alloc.h"
#include "client/e2ee.h"

/* ---- random ---- */

static int prov_random(uint8_t *data, size_t len, void *user_data) {
  return RAND_bytes(data, (int)len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

/* ---- HMAC-SHA256 (EVP_MAC), one context per call sequence ---- */

static int prov_hmac_init(void **ctx, const uint8_t *key, size_t key_len, void *user_data) {
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  if (!mac) return SG_ERR_UNKNOWN;
  EVP_MAC_CTX *c = EVP_MAC_CTX_new(mac);
  EVP_MAC_free(mac); /* the context keeps its own reference */
  if (!c) return SG_ERR_NOMEM;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                         OSSL_PARAM_construct_end()};
  /* An empty key is legal for HMAC but EVP wants a non-NULL pointer. */
  static const uint8_t none = 0;
  if (EVP_MAC_init(c, key_len ? key : &none, key_len, params) != 1) {
    EVP_MAC_CTX_free(c);
    return SG_ERR_UNKNOWN;
  }
  *ctx = c;
  return 0;
}

static int prov_hmac_update(void *ctx, const uint8_t *data, size_t len, void *user_data) {
  return EVP_MAC_update(ctx, data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

static int prov_hmac_final(void *ctx, signal_buffer **output, void *user_data) {
  uint8_t md[EVP_MAX_MD_SIZE];
  size_t n = 0;
  if (EVP_MAC_final(ctx, md, &n, sizeof md) != 1) return SG_ERR_UNKNOWN;
  signal_buffer *b = signal_buffer_create(md, n);
  if (!b) return SG_ERR_NOMEM;
  *output = b;
  return 0;
}

static void prov_hmac_cleanup(void *ctx, void *user_data) { EVP_MAC_CTX_free(ctx); }

/* ---- SHA-512 ---- */

static int prov_sha512_init(void **ctx, void *user_data) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  if (!c) return SG_ERR_NOMEM;
  if (EVP_DigestInit_ex(c, EVP_sha512(), NULL) != 1) {
    EVP_MD_CTX_free(c);
    return SG_ERR_UNKNOWN;
  }
  *ctx = c;
  return 0;
}

static int prov_sha512_update(void *ctx, const uint8_t *data, size_t len, void *user_data) {
  return EVP_DigestUpdate(ctx, data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

/* The library calls final more than once on one context (the fingerprint iterations): the
 * context must be ready for new input afterwards, as the reference providers leave it. */
static int prov_sha512_final(void *ctx, signal_buffer **output, void *user_data) {
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (EVP_DigestFinal_ex(ctx, md, &n) != 1) return SG_ERR_UNKNOWN;
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) != 1) return SG_ERR_UNKNOWN;
  signal_buffer *b = signal_buffer_create(md, n);
  if (!b) return SG_ERR_NOMEM;
  *output = b;
  return 0;
}

static void prov_sha512_cleanup(void *ctx, void *user_data) { EVP_MD_CTX_free(ctx); }

/* ---- AES-CBC (PKCS#5) and AES-CTR, 128/192/256-bit keys ---- */

static const EVP_CIPHER *pick_cipher(int cipher, size_t key_len) {
  if (cipher == SG_CIPHER_AES_CBC_PKCS5) {
    if (key_len == 16) return EVP_aes_128_cbc();
    if (key_len == 24) return EVP_aes_192_cbc();
    if (key_len == 32) return EVP_aes_256_cbc();
  } else if (cipher == SG_CIPHER_AES_CTR_NOPADDING) {
    if (key_len == 16) return EVP_aes_128_ctr();
    if (key_len == 24) return EVP_aes_192_ctr();
    if (key_len == 32) return EVP_aes_256_ctr();
  }
  return NULL;
}

static int run_cipher(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len, const uint8_t *iv,
                      size_t iv_len, const uint8_t *in, size_t in_len, int enc) {
  const EVP_CIPHER *evp = pick_cipher(cipher, key_len);
  if (!evp || iv_len != 16 || in_len > (size_t)INT32_MAX - 64) return SG_ERR_INVAL;
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (!c) return SG_ERR_NOMEM;
  uint8_t *out = tern_malloc(in_len + (size_t)EVP_CIPHER_get_block_size(evp) + 16);
  int n1 = 0, n2 = 0, rc = SG_ERR_UNKNOWN;
  if (EVP_CipherInit_ex(c, evp, NULL, key, iv, enc) == 1 &&
      EVP_CIPHER_CTX_set_padding(c, cipher == SG_CIPHER_AES_CBC_PKCS5) == 1 &&
      EVP_CipherUpdate(c, out, &n1, in, (int)in_len) == 1 && EVP_CipherFinal_ex(c, out + n1, &n2) == 1) {
    signal_buffer *b = signal_buffer_create(out, (size_t)n1 + (size_t)n2);
    if (b) {
      *output = b;
      rc = 0;
    } else {
      rc = SG_ERR_NOMEM;
    }
  }
  EVP_CIPHER_CTX_free(c);
  tern_free(out);
  return rc;
}

static int prov_encrypt(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len, const uint8_t *iv,
                        size_t iv_len, const uint8_t *pt, size_t pt_len, void *user_data) {
  return run_cipher(output, cipher, key, key_len, iv, iv_len, pt, pt_len, 1);
}

static int prov_decrypt(signal_buffer **output, int cipher, const uint8_t *key, size_t key_len, const uint8_t *iv,
                        size_t iv_len, const uint8_t *ct, size_t ct_len, void *user_data) {
  return run_cipher(output, cipher, key, key_len, iv, iv_len, ct, ct_len, 0);
}

void tern_e2e_provider(signal_crypto_provider *out) {
  memset(out, 0, sizeof *out);
  out->random_func = prov_random;
  out->hmac_sha256_init_func = prov_hmac_init;
  out->hmac_sha256_update_func = prov_hmac_update;
  out->hmac_sha256_final_func = prov_hmac_final;
  out->hmac_sha256_cleanup_func = prov_hmac_cleanup;
  out->sha512_digest_init_func = prov_sha512_init;
  out->sha512_digest_update_func = prov_sha512_update;
  out->sha512_digest_final_func = prov_sha512_final;
  out->sha512_digest_cleanup_func = prov_sha512_cleanup;
  out->encrypt_func = prov_encrypt;
  out->decrypt_func = prov_decrypt;
}

/* ---- AES-256-GCM blobs: ciphertext || 16-byte tag ---- */

#define GCM_TAG 16

int tern_e2e_blob_seal(const void *pt, size_t n, uint8_t key[32], uint8_t iv[12], tern_buf *out) {
  if (n > (size_t)INT32_MAX - 64) return -EFBIG;
  if (RAND_bytes(key, 32) != 1 || RAND_bytes(iv, 12) != 1) return -EIO;
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (!c) return -ENOMEM;
  tern_buf_reserve(out, n + GCM_TAG);
  uint8_t *dst = (uint8_t *)out->data + out->len;
  int n1 = 0, n2 = 0, rc = -EIO;
  if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1 &&
      EVP_EncryptInit_ex(c, NULL, NULL, key, iv) == 1 && EVP_EncryptUpdate(c, dst, &n1, pt, (int)n) == 1 &&
      EVP_EncryptFinal_ex(c, dst + n1, &n2) == 1 &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, GCM_TAG, dst + n1 + n2) == 1) {
    out->len += (size_t)n1 + (size_t)n2 + GCM_TAG;
    rc = 0;
  }
  EVP_CIPHER_CTX_free(c);
  return rc;
}

int tern_e2e_blob_open(const void *ct, size_t n, const uint8_t key[32], const uint8_t iv[12], tern_buf *out) {
  if (n < GCM_TAG) return -EBADMSG;
  if (n > (size_t)INT32_MAX - 64) return -EFBIG;
  size_t body = n - GCM_TAG;
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (!c) return -ENOMEM;
  tern_buf_reserve(out, body + 16);
  uint8_t *dst = (uint8_t *)out->data + out->len;
  uint8_t tag[GCM_TAG];
  memcpy(tag, (const uint8_t *)ct + body, GCM_TAG);
  int n1 = 0, n2 = 0, rc = -EBADMSG;
  if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) == 1 &&
      EVP_DecryptInit_ex(c, NULL, NULL, key, iv) == 1 && EVP_DecryptUpdate(c, dst, &n1, ct, (int)body) == 1 &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, GCM_TAG, tag) == 1 &&
      EVP_DecryptFinal_ex(c, dst + n1, &n2) == 1) {
    out->len += (size_t)n1 + (size_t)n2;
    rc = 0;
  } else {
    memset(dst, 0, body); /* nothing of a forged blob is handed out */
  }
  EVP_CIPHER_CTX_free(c);
  return rc;
}

void tern_e2e_sha256_hex(const void *p, size_t n, char out[65]) {
  uint8_t md[32];
  unsigned len = 0;
  EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = 0;
}

/* ---- base64 ---- */

void tern_e2e_b64_encode(const void *p, size_t n, tern_buf *out) {
  size_t need = 4 * ((n + 2) / 3) + 1;
  tern_buf_reserve(out, need);
  int w = EVP_EncodeBlock((unsigned char *)out->data + out->len, p, (int)n);
  out->len += (size_t)w;
  out->data[out->len] = 0;
}

static bool b64_char(char ch) {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
}

int tern_e2e_b64_decode(const char *s, size_t n, tern_buf *out) {
  /* EVP_DecodeBlock skips whitespace and counts padding as zero bytes: check the shape
   * first so that only canonical padded base64 is accepted, then trim the padding. */
  if (n % 4 != 0 || n > (size_t)INT32_MAX) return -EBADMSG;
  size_t pad = 0;
  if (n && s[n - 1] == '=') pad++;
  if (n > 1 && s[n - 2] == '=') pad++;
  for (size_t i = 0; i < n - pad; i++)
    if (!b64_char(s[i])) return -EBADMSG;
  if (n == 0) return 0;
  tern_buf_reserve(out, n / 4 * 3 + 1);
  int w = EVP_DecodeBlock((unsigned char *)out->data + out->len, (const unsigned char *)s, (int)n);
  if (w < 0 || (size_t)w < pad) return -EBADMSG;
  out->len += (size_t)w - pad;
  return 0;
}
