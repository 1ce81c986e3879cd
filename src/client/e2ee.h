/* e2ee: end-to-end encryption for libtern-client (PROTOCOL.md 11), on libsignal-protocol-c.
 * Its names take the prefix tern_e2e_.
 *
 * What is ours is glue only: the crypto provider the library asks for (OpenSSL 3 EVP:
 * HMAC-SHA256, SHA-512, AES-CBC/CTR, random bytes), AES-256-GCM for attachments (EVP too),
 * the stores the library reads and writes (kept in memory, saved to one JSON file), the
 * mapping between tern's device ids and the library's integer device ids, the key-directory
 * JSON bodies, the inner plaintext format, and safety numbers through the library's
 * fingerprint code. Nothing here talks to the network: the caller fetches bundles and sends
 * frames (src/cli/secure.c does it for the CLI).
 *
 * State. A tern_e2e is one device's E2E state, kept in DIR/e2e.json (DIR 0700, the file
 * 0600, rewritten atomically after every change): the identity key pair, the registration
 * id, the signed prekey, the one-time prekeys not yet used, the sessions, the identity keys
 * seen per peer device, the address map, and the keys of attachments received. Sender keys
 * are not used (groups are pairwise).
 *
 * Addresses. The library keys sessions by (name, int32 device id). The name is the tern
 * username as given (never parsed: usernames may contain '.'); the integer is local to this
 * state, handed out from 1 the first time a (user, tern device id) pair is seen and kept.
 *
 * Threads: a tern_e2e is used by one thread at a time. Errors: 0 or a negative errno-style
 * code (-EINVAL, -EBADMSG, -ENOENT, -EIO ...); where an err buffer is taken it gets a sentence.
 * Memory: strings given are copied; tern_buf outputs are appended to and belong to the caller.
 */
#ifndef TERN_CLIENT_E2EE_H
#define TERN_CLIENT_E2EE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

struct cJSON;

#define TERN_E2E_PREKEY_BATCH 100   /* one-time prekeys per PUT /v1/keys (PROTOCOL.md 11) */
#define TERN_E2E_PREKEY_LOW 20      /* top up when the server holds fewer than this */
#define TERN_E2E_SAFETY_ITERATIONS 5200
#define TERN_E2E_SAFETY_DIGITS 60
#define TERN_E2E_PAD 160            /* inner plaintexts are padded to a multiple of this */
#define TERN_E2E_KEY_LEN 33         /* a public key: type byte 0x05 and 32 bytes */

typedef struct tern_e2e tern_e2e;

/* ---- the state ---- */

/* Opens (creating DIR 0700 when missing) the state in DIR. A missing e2e.json is an empty
 * state (tern_e2e_has_identity false). Returns 0, or -EBADMSG for a file that is not ours,
 * another negative errno for I/O; err gets why. */
int tern_e2e_open(const char *dir, tern_e2e **out, char *err, size_t errcap);
void tern_e2e_close(tern_e2e *e); /* NULL is fine; saves nothing (every change is saved) */
/* The path of the state file of DIR ("DIR/e2e.json"). */
void tern_e2e_state_path(const char *dir, char *out, size_t cap);

bool tern_e2e_has_identity(const tern_e2e *e);
/* Whether each save fsyncs the file before renaming it (the default, true). Only a
 * measurement turns it off, to tell the protocol's cost from the disk's. */
void tern_e2e_set_fsync(tern_e2e *e, bool on);
/* Makes a new identity for user's device device_id, dropping everything the state held
 * (a login is a new device): identity key pair, registration id (1-16380), signed prekey 1
 * and TERN_E2E_PREKEY_BATCH one-time prekeys. Saves. */
int tern_e2e_init(tern_e2e *e, const char *user, const char *device_id);
const char *tern_e2e_user(const tern_e2e *e);      /* "" before init */
const char *tern_e2e_device_id(const tern_e2e *e); /* "" before init */
uint32_t tern_e2e_registration_id(const tern_e2e *e);
/* Our identity public key, base64 of its 33 bytes, into out (cap >= 64). */
void tern_e2e_identity_b64(const tern_e2e *e, char *out, size_t cap);

/* The body of PUT /v1/keys. full: the first PUT (identity_key, registration_id,
 * signed_prekey and the one-time prekeys not yet published). Otherwise n_new fresh one-time
 * prekeys are made (at most TERN_E2E_PREKEY_BATCH), saved, and only they are in the body.
 * Appends JSON to out. */
int tern_e2e_keys_body(tern_e2e *e, bool full, size_t n_new, tern_buf *out);

/* ---- peers ---- */

/* What processing a peer's keys changed (for the warning line PROTOCOL.md 11 asks for). */
typedef enum tern_e2e_change {
  TERN_E2E_SAME = 0,       /* nothing new */
  TERN_E2E_FIRST,          /* the first key we see for this user */
  TERN_E2E_NEW_DEVICE,     /* a device of a user we already knew keys of */
  TERN_E2E_KEY_CHANGED,    /* a known device came with another identity key */
} tern_e2e_change;

/* Builds a session from one device entry of GET /v1/keys/{user} ({"device_id",
 * "registration_id","identity_key","signed_prekey":{...},"one_time_prekey":...|null}),
 * replacing any session with that device (a fresh bundle starts a new session). *change
 * (may be NULL) says what it changed. -EBADMSG for an entry that is not a valid bundle
 * (a bad signature included). */
int tern_e2e_process_bundle(tern_e2e *e, const char *user, const struct cJSON *device, tern_e2e_change *change,
                            char *err, size_t errcap);
/* True when we have a session with (user, device_id). */
bool tern_e2e_has_session(tern_e2e *e, const char *user, const char *device_id);
/* Forgets (user, device_id): session and identity (a device the server says is gone). */
void tern_e2e_forget(tern_e2e *e, const char *user, const char *device_id);
/* The tern device ids of user we have sessions with, in the order they were first seen.
 * *ids is tern_calloc'd, each string too: free with tern_e2e_strv_free. */
size_t tern_e2e_devices(tern_e2e *e, const char *user, char ***ids);
void tern_e2e_strv_free(char **v, size_t n);

/* The ciphertext kinds (the same values as proto's tern_e2e_type). */
enum { TERN_E2E_CT_PREKEY = 1, TERN_E2E_CT_MESSAGE = 2 };

/* Encrypts pt for (user, device_id), which must have a session (-ENOENT otherwise). Appends
 * the base64 ciphertext to out; *type is TERN_E2E_CT_PREKEY until the peer has answered. */
int tern_e2e_encrypt(tern_e2e *e, const char *user, const char *device_id, const void *pt, size_t len, int *type,
                     tern_buf *out);
/* Decrypts a base64 ciphertext of the given type from (user, device_id); appends the
 * plaintext to out. A prekey message builds the session (and uses up our one-time prekey);
 * *change (may be NULL) says whether it brought a new or changed identity. -EBADMSG when it
 * cannot be decrypted (err says why: no session, a bad MAC, ...), -EALREADY for a message
 * decrypted before (a redelivery after a crash: nothing to show, nothing to report). */
int tern_e2e_decrypt(tern_e2e *e, const char *user, const char *device_id, int type, const char *b64, size_t b64_len,
                     tern_buf *out, tern_e2e_change *change, char *err, size_t errcap);

/* ---- safety numbers ---- */

/* Signal's numeric fingerprint (version 2 of the scannable form; 5200 iterations of SHA-512)
 * over each user's identity keys (33 bytes each, any order: the library sorts them by byte
 * value), with the usernames as stable identifiers. out gets 60 digits and a NUL. Both sides
 * get the same number. -EINVAL when a list is empty. */
int tern_e2e_safety_number(const char *local_user, const uint8_t (*local_keys)[TERN_E2E_KEY_LEN], size_t nlocal,
                           const char *remote_user, const uint8_t (*remote_keys)[TERN_E2E_KEY_LEN], size_t nremote,
                           char out[TERN_E2E_SAFETY_DIGITS + 1]);
/* "12345 67890 ..." (12 groups of 5, one space between): out needs 72 bytes. */
void tern_e2e_safety_format(const char *digits, char *out, size_t cap);
/* The identity keys of a GET /v1/keys/{user} answer ({"devices":[{"identity_key"}...]}):
 * *keys is tern_malloc'd; returns how many (0 when none or malformed). */
size_t tern_e2e_directory_keys(const struct cJSON *answer, uint8_t (**keys)[TERN_E2E_KEY_LEN]);

/* ---- the inner plaintext (PROTOCOL.md 11, "What is inside") ---- */

typedef struct tern_e2e_media {
  char media_id[72];
  uint8_t key[32];       /* AES-256-GCM key of the blob */
  uint8_t iv[12];        /* its nonce */
  char sha256[65];       /* hex SHA-256 of the ciphertext blob (what the server reports) */
  char mime[64];
  int64_t size;          /* bytes of the plaintext file */
  int64_t width, height; /* px, -1 when unknown */
  char *thumb;           /* base64 JPEG (at most 8 KiB decoded), or NULL; owned */
} tern_e2e_media;

typedef struct tern_e2e_inner {
  char *body;            /* UTF-8 text, or NULL; owned */
  bool has_media;
  tern_e2e_media media;
  char *reply_to;        /* msg ids, or NULL; owned */
  char *reaction_to;     /* reaction.to */
  char *reaction_emoji;  /* reaction.emoji ("" removes) */
  char *edit_of;         /* edit.of */
  char *group_id;
  char *resend_of;
} tern_e2e_inner;

/* Writes in as {"v":1,...} with only the fields in use, then spaces up to a multiple of
 * TERN_E2E_PAD bytes (JSON allows trailing whitespace, so any parser reads it as it is). */
void tern_e2e_inner_encode(const tern_e2e_inner *in, tern_buf *out);
/* Reads a decrypted plaintext: 0, or -EBADMSG when it is not a v1 inner object. */
int tern_e2e_inner_decode(const void *p, size_t n, tern_e2e_inner *out);
void tern_e2e_inner_free(tern_e2e_inner *in);

/* Media keys received, so that a later `tern fetch` can decrypt the blob. */
void tern_e2e_remember_media(tern_e2e *e, const tern_e2e_media *m);
/* 0 and *out filled (thumb NULL), or -ENOENT. */
int tern_e2e_find_media(tern_e2e *e, const char *media_id, tern_e2e_media *out);

/* The inner plaintext of a message we sent (msg_id as the server named it) to peer (a user,
 * or a group id when group), kept for SENT_KEEP (100) messages so that a decrypt_error can
 * be answered with a resend. The state file is 0600 like everything else in it. */
void tern_e2e_remember_sent(tern_e2e *e, const char *msg_id, const char *peer, bool group, const void *inner,
                            size_t n);
/* 0 with peer, *group and the inner plaintext appended to inner, or -ENOENT. */
int tern_e2e_find_sent(tern_e2e *e, const char *msg_id, char *peer, size_t cap, bool *group, tern_buf *inner);

/* ---- attachments: AES-256-GCM ---- */

/* Encrypts pt under a fresh random key and nonce (written to key and iv): out gets the
 * ciphertext followed by the 16-byte tag. */
int tern_e2e_blob_seal(const void *pt, size_t n, uint8_t key[32], uint8_t iv[12], tern_buf *out);
/* Decrypts and checks the tag: 0, or -EBADMSG when the blob was changed (out unchanged). */
int tern_e2e_blob_open(const void *ct, size_t n, const uint8_t key[32], const uint8_t iv[12], tern_buf *out);
/* Hex SHA-256 of p (out needs 65 bytes). */
void tern_e2e_sha256_hex(const void *p, size_t n, char out[65]);

/* ---- base64 (standard, padded), as PROTOCOL.md 11 writes keys and ciphertexts ---- */
void tern_e2e_b64_encode(const void *p, size_t n, tern_buf *out);
/* Appends the decoded bytes: 0, or -EBADMSG for anything but canonical padded base64. */
int tern_e2e_b64_decode(const char *s, size_t n, tern_buf *out);

/* ---- the crypto provider (e2ee_crypto.c), exposed for the self-checks ---- */
struct signal_crypto_provider;
void tern_e2e_provider(struct signal_crypto_provider *out);

#endif
