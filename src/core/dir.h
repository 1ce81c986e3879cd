/* dir: the directory of users, devices and token hashes, behind an ops table.
 *
 * The core reads the directory on every frame (who is this token, which devices does bob
 * have), so it is held in memory on each node. Where its contents come from is the
 * implementation's business: the in-memory one (tern_dir_new_memory) is fed at start-up from
 * the store and by this node's own changes; a cluster implementation feeds the same calls
 * from KV watches, so changes made on other nodes appear here too. The core never touches the
 * maps behind it.
 *
 * Ownership. The directory owns users and devices. A device is listed in its user's list
 * while it exists. Removing a device unlinks it at once (no lookup finds it) and marks it
 * `removed`; its memory stays until the last reference (tern_dir_device_ref, taken by store
 * ops that carry the device as a target cookie) is dropped. Sessions point at their device
 * while live and are detached before it is removed.
 *
 * Threads: the loop thread of its worker only.
 */
#ifndef TERN_CORE_DIR_H
#define TERN_CORE_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/util.h"
#include "proto/frame.h"
#include "store/store.h"

#define TERN_DEVICE_ID_LEN 24 /* hex chars of 96 random bits */
#define TERN_DEVICE_LABEL_MAX 64 /* bytes of UTF-8 */

typedef struct tern_user tern_user;
typedef struct tern_device tern_device;
typedef struct tern_session tern_session;
typedef struct tern_group tern_group;
struct tern_push_reg;

struct tern_user {
  char name[TERN_USERNAME_MAX + 1]; /* lower-case username */
  char *pwhash;                     /* Argon2id string; NULL while registration hashes */
  int64_t created;                  /* ms */
  int64_t last_seen;                /* ms; 0 = never connected */
  int64_t persisted_last_seen;      /* what the store holds */
  tern_device *devices;             /* list via next_in_user */
  int ndevices;                     /* length of devices */
  int online;                       /* authenticated sessions right now */
  tern_rate_bucket send_bucket;     /* limits.send_rate */
  tern_rate_bucket fanout_bucket;   /* limits.fanout_rate (group recipient devices) */
  tern_rate_bucket typing_bucket;   /* limits.typing_rate */
  struct tern_privacy *privacy;     /* blocks and settings (privacy.h), owned; NULL: the defaults */
  tern_rate_bucket key_fetch_bucket;/* limits.key_fetch_rate (GET /v1/keys/{user}) */
  tern_session **watchers;          /* sessions watching this user */
  size_t nwatchers, watchers_cap;
  tern_group **groups;              /* groups this user is a member of (groups.c keeps it) */
  size_t ngroups, groups_cap;
  bool pending;                     /* registration still hashing/committing */
  char *display_name;               /* PROTOCOL.md 15 (core/profile.h), owned; NULL: unset */
  char *avatar;                     /* the avatar's media id, owned; NULL: none */
};

struct tern_device {
  char id[TERN_DEVICE_ID_LEN + 1]; /* hex */
  tern_user *user;                 /* owner (NULL once removed) */
  char *label;                     /* from register/login, may be "" */
  uint8_t token_hash[32];          /* BLAKE2b-256 of the bearer token */
  int64_t created;                 /* ms */
  int64_t last_seen;               /* ms of the last activity (connection), 0 = never */
  tern_session *session;           /* the live session, or NULL */
  struct tern_push_reg *push;      /* push registration (owned), or NULL */
  tern_device *next_in_user;       /* user's device list */
  uint32_t refs;                   /* references besides the directory's own */
  bool e2e;                        /* has published E2E keys (keyapi.c keeps it) */
  bool removed;                    /* unlinked: kept only for its references */
};

typedef bool (*tern_dir_user_fn)(tern_user *u, void *arg);
typedef bool (*tern_dir_device_fn)(tern_device *d, void *arg);

typedef struct tern_dir_ops {
  tern_user *(*user)(void *d, const char *name);
  tern_device *(*device)(void *d, const char *id);
  tern_device *(*by_token_hash)(void *d, const uint8_t hash[32]);
  /* Adds a user (name unique; the caller checked). */
  tern_user *(*add_user)(void *d, const char *name);
  void (*remove_user)(void *d, tern_user *u); /* a user with no devices */
  /* A deleted account (no devices): no longer found by name or counted, but the struct stays
   * valid (groups and sessions may still point at it) until the directory is freed. */
  void (*retire_user)(void *d, tern_user *u);
  /* Links a device (id, token hash, times and label set by the caller) into u. */
  void (*add_device)(void *d, tern_user *u, tern_device *dev);
  /* Unlinks a device (its session already detached); frees it once unreferenced. */
  void (*remove_device)(void *d, tern_device *dev);
  void (*each_user)(void *d, tern_dir_user_fn fn, void *arg);
  void (*each_device)(void *d, tern_dir_device_fn fn, void *arg);
  size_t (*nusers)(void *d);
  size_t (*ndevices)(void *d);
  void (*free)(void *d);
} tern_dir_ops;

typedef struct tern_dir {
  const tern_dir_ops *ops; /* the implementation */
  void *self;              /* its state */
} tern_dir;

/* The in-memory directory. */
tern_dir *tern_dir_new_memory(void);
void tern_dir_free(tern_dir *d);

static inline tern_user *tern_dir_user(tern_dir *d, const char *name) { return d->ops->user(d->self, name); }
static inline tern_device *tern_dir_device(tern_dir *d, const char *id) { return d->ops->device(d->self, id); }
static inline size_t tern_dir_nusers(tern_dir *d) { return d->ops->nusers(d->self); }
static inline size_t tern_dir_ndevices(tern_dir *d) { return d->ops->ndevices(d->self); }
static inline void tern_dir_each_user(tern_dir *d, tern_dir_user_fn fn, void *arg) { d->ops->each_user(d->self, fn, arg); }
static inline void tern_dir_each_device(tern_dir *d, tern_dir_device_fn fn, void *arg) {
  d->ops->each_device(d->self, fn, arg);
}

/* The inbox where messages to a user wait while it has no device (PROTOCOL.md 5): "@" and
 * the username (a device id is hex, so the two never meet). The one place the name is made:
 * buf holds TERN_USER_INBOX_LEN bytes; returns buf. */
#define TERN_USER_INBOX_LEN (TERN_USERNAME_MAX + 2)
static inline const char *tern_user_inbox(char *buf, const char *username) {
  snprintf(buf, TERN_USER_INBOX_LEN, "@%s", username);
  return buf;
}

tern_user *tern_dir_add_user(tern_dir *d, const char *name);
void tern_dir_remove_user(tern_dir *d, tern_user *u); /* only for a failed registration */
void tern_dir_retire_user(tern_dir *d, tern_user *u);  /* a deleted account */
/* The device of a bearer token, compared in constant time (NULL: none). */
tern_device *tern_dir_by_token(tern_dir *d, const char *token, size_t len);
/* The device of an "Authorization: Bearer TOKEN" header value (NULL header → NULL). */
tern_device *tern_dir_by_bearer(tern_dir *d, const char *authorization);
/* Creates a device with a fresh id and token for u; token_out gets the bearer token (43 chars). */
tern_device *tern_dir_add_device(tern_dir *d, tern_user *u, const char *label, char token_out[48]);
/* Adds a device loaded from the store. */
tern_device *tern_dir_load_device(tern_dir *d, tern_user *u, const char *id, const char *label,
                                  const uint8_t token_hash[32], int64_t created, int64_t last_seen);
void tern_dir_remove_device(tern_dir *d, tern_device *dev);
void tern_dir_device_ref(tern_device *dev);
void tern_dir_device_unref(tern_device *dev);
void tern_token_hash(const char *token, size_t len, uint8_t out[32]);
/* A user or device record from the store (the load, or another writer through the feed) that
 * this server could have written: a valid lower-cased username, a password hash of printable
 * ASCII (empty for a held name), a device id of TERN_DEVICE_ID_LEN lower-case hex digits and
 * a label of at most TERN_DEVICE_LABEL_MAX bytes of UTF-8. Anything else came from a corrupted
 * disk or a foreign writer, and is left out (false). */
bool tern_dir_user_rec_ok(const tern_user_rec *r);
bool tern_dir_device_rec_ok(const tern_device_rec *r);

#endif
