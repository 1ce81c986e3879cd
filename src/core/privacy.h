/* privacy: blocking and the privacy settings of PROTOCOL.md 14 — who a user has blocked,
 * whether others see their last seen, whether their 1:1 reads make read receipts — and what
 * those mean for what one user sees of another.
 *
 * Storage: one record per user in the store's RECORDS bucket, "privacy/<user>", written with
 * compare-and-set like group records (two devices on two nodes changing it at once: the second
 * runs again on the first's result), followed by every node through the change feed. A user
 * with no record has the defaults: nobody blocked, last seen to everyone, read receipts on.
 * In memory it hangs off the user (tern_user.privacy).
 *
 * The HTTP API (Bearer): PUT/DELETE /v1/blocks/{user}, GET /v1/blocks, GET/PATCH /v1/privacy,
 * and the mutes of PROTOCOL.md 15: PUT/DELETE /v1/mutes/{user} and /v1/mutes/group/{id},
 * GET /v1/mutes (they live in the same record).
 *
 * Threads: the loop's. */
#ifndef TERN_CORE_PRIVACY_H
#define TERN_CORE_PRIVACY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/app.h"
#include "net/httpreq.h"

/* A muted conversation (PROTOCOL.md 15): no push for it, to any of the user's devices. */
typedef struct tern_mute {
  char kind;               /* 'u': a user's 1:1 messages; 'g': a group's */
  char *name;              /* the username or the group id */
  int64_t until;           /* ms; 0: forever */
} tern_mute;

typedef struct tern_privacy {
  bool last_seen_nobody;   /* others see "last_seen": null, and this user sees nobody's */
  bool read_receipts_off;  /* 1:1 reads make no receipt for the sender, and none come back */
  char **blocked;          /* usernames, sorted */
  size_t nblocked;
  tern_mute *mutes;        /* in no order; expired ones stay until the next change */
  size_t nmutes;
  uint8_t stored_hash[32]; /* BLAKE2b of the stored record (the compare-and-set's base) */
} tern_privacy;

#define TERN_PRIVACY_MAX_BLOCKS 10000

/* u has blocked other. */
bool tern_privacy_blocks(const tern_user *u, const tern_user *other);
/* What viewer sees of u: *online and *last_seen (<= 0: null). */
void tern_privacy_view(tern_app *a, const tern_user *viewer, tern_user *u, bool *online, int64_t *last_seen);
/* Whether u muted the conversation (kind 'u' with a user's name, 'g' with a group id) now. */
bool tern_privacy_muted(const tern_user *u, char kind, const char *name);
#define TERN_PRIVACY_MAX_MUTES 10000
/* Whether a 1:1 read by reader of messages from sender makes a read receipt for the sender. */
bool tern_privacy_read_receipts(const tern_user *reader, const tern_user *sender);

/* The stored record: [ver][flags][u32 n][n x (u8 len, name)], and from version 2 on
 * [u32 m][m x (u8 kind, u8 len, name, u64 until)]. decode returns NULL for anything
 * else (a name of 0 or more than 32 bytes, a count past TERN_PRIVACY_MAX_BLOCKS, trailing bytes)
 * and sorts the names. */
void tern_privacy_encode(const tern_privacy *p, tern_buf *out);
tern_privacy *tern_privacy_decode(const uint8_t *v, size_t len);

bool tern_privacy_is_kv(const char *key, size_t klen);
/* A stored record, at load or from the feed (v NULL: deleted). Returns -EINVAL for a bad one. */
int tern_privacy_apply_record(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t vlen);
void tern_privacy_free(tern_privacy *p);

/* /v1/blocks[/{user}] and /v1/privacy. */
void tern_privacy_route(tern_app *a, tern_http_req *req);

#endif
