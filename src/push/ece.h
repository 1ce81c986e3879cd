/* ece: Web Push message encryption, RFC 8291 ("aes128gcm" content coding of RFC 8188, keyed by
 * ECDH P-256 between a fresh application-server key and the subscription's key, plus the
 * subscription's auth secret). Internal to src/push; tests include it. */
#ifndef TERN_PUSH_ECE_H
#define TERN_PUSH_ECE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "base/buf.h"

#define TERN_PUSH_ECE_RS 4096u           /* record size we declare: one record holds any push */
#define TERN_PUSH_ECE_HEADER (16 + 4 + 1 + 65) /* salt, rs, idlen, keyid (the server's public key) */
#define TERN_PUSH_ECE_MAX_BODY 4096u     /* RFC 8291 section 4: services need not accept more */

/* Encrypts plaintext[0..len) for the subscription (ua_public: its uncompressed P-256 key,
 * auth: its 16-byte auth secret) and appends the whole aes128gcm body (header, then one record)
 * to out. pad extra zero bytes follow the 0x02 delimiter, hiding the exact length.
 * salt (16 bytes) and as_key (a P-256 key pair) are normally NULL: then both are fresh and
 * random, as RFC 8291 requires per message; tests pass fixed ones to reproduce the RFC's
 * example. Returns 0, -EINVAL (bad subscription key) or -EMSGSIZE (body over 4096 bytes). */
int tern_push_ece_encrypt(const uint8_t ua_public[65], const uint8_t auth[16], const void *plaintext, size_t len,
                          size_t pad, const uint8_t *salt, EVP_PKEY *as_key, tern_buf *out);

#endif
