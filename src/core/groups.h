/* groups: server-side groups (PROTOCOL.md section 10): the membership model and its rules,
 * the durable group records, and the group events.
 *
 * Model. A group has an id (22 chars of base64url from 128 random bits), a name, a description,
 * its creator and creation time, and members in the order they joined, each with a role and a
 * `since`. Every group lives in memory (a map by id, and each user's list of groups) and as one
 * store record ("group/<id>" in the RECORDS bucket) loaded at start-up.
 *
 * Order. Everything about a group happens on the loop, in the order the server accepts it:
 * a change updates the in-memory group at once, so a send accepted after it fans out to the
 * new membership, and the change's record and its event envelopes are one store op (one
 * durable step) submitted before any later send's APPEND, so every device sees changes and
 * messages in acceptance order. The HTTP answer is written when that op is durable.
 *
 * Events are envelopes (kind TERN_ENV_GROUP) to every device of every member after the
 * change and of the users it took out; never refused by inbox.max_envelopes.
 *
 * Ownership: the app's group table owns its groups; users point at their groups while they
 * are members. Threads: the worker's loop.
 */
#ifndef TERN_CORE_GROUPS_H
#define TERN_CORE_GROUPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/app.h"
#include "store/store.h"

#define TERN_GROUP_ID_MAX 64
#define TERN_GROUP_NAME_MAX 100
#define TERN_GROUP_DESC_MAX 512

typedef struct tern_member {
  tern_user *user;  /* the member */
  bool admin;       /* role */
  int64_t since;    /* ms: when they joined */
} tern_member;

typedef struct tern_group {
  char id[TERN_GROUP_ID_MAX + 1]; /* opaque: [A-Za-z0-9_-] */
  char *name;                     /* 1-100 bytes of UTF-8 */
  char *description;              /* 0-512 bytes of UTF-8 */
  char created_by[TERN_USERNAME_MAX + 1];
  int64_t created_at;             /* ms */
  tern_member *members;           /* in the order they joined */
  size_t nmembers, members_cap;
  /* the record (groups.c: every change is a compare-and-set on it) */
  uint64_t rev;                   /* of the state in memory (changes not yet stored included) */
  uint64_t confirmed_rev;         /* the newest known stored */
  uint8_t stored_hash[32];        /* BLAKE2b of the record the next change is based on */
  bool stored;                    /* there is such a record */
  /* ms: the newest message time given out on this worker, and the newest join time it knows
   * of (its own and those stored by other workers and nodes). A member received a message when
   * the message's time is after their `since` (strictly): a message is stamped after every
   * join it knows, and a join is never before a message given out here. So a send and an add
   * in one ms are told apart on one worker, and on two workers the send at T that the add at
   * T did not see counts as not received (when it was ">=", it counted as received, and the
   * new member could mark it read). In memory only. */
  int64_t msg_clock, join_clock;
} tern_group;

/* The time for a message accepted to g now: after every join time it knows (so every member
 * at acceptance may mark it read), and remembered so a later join is not before it. */
int64_t tern_group_stamp(tern_group *g);

/* The table of groups (app->groups). */
typedef struct tern_groups tern_groups;
tern_groups *tern_groups_new(void);
void tern_groups_free(tern_groups *g);
tern_group *tern_groups_get(tern_groups *g, const char *id);
size_t tern_groups_count(const tern_groups *g);
/* Start-up: true for a KV key that holds a group record ("group/<id>"); loads one (members
 * whose accounts are gone are left out). 0, or -EINVAL for a record that does not read. */
bool tern_groups_is_kv(const char *key, size_t klen);
int tern_groups_load_record(tern_app *a, const uint8_t *v, size_t len, const char *key, size_t klen);
/* The group's stored record (what load_record reads back; its key is "group/<id>"). A record
 * is refused whole when anything in it is off: an id outside [A-Za-z0-9_-]{1,64}, a name,
 * description or creator that is not UTF-8 without NUL or too long, an empty name, or bytes
 * after the last member. */
void tern_group_encode(const tern_group *g, tern_buf *b);

/* A group record another writer stored (v NULL: deleted): replaces the group here when it is
 * newer than what this loop knows stored. */
void tern_groups_apply_record(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t len);
/* The rev a change op stores (0 for anything else), and: a change op of group id completed
 * OK, so that rev is stored. */
uint64_t tern_group_op_rev(const tern_store_op *op);
void tern_group_confirm(tern_app *a, const char *id, uint64_t rev);

/* The member entry of u, or NULL when u is not a member. */
tern_member *tern_group_member(const tern_group *grp, const tern_user *u);
/* Groups u is in (a list owned by the table), and how many. */
tern_group *const *tern_groups_of(tern_app *a, const tern_user *u, size_t *n);

/* ---- changes: each updates memory now and returns the one op that stores the record and
 * appends the events; the caller submits it (with its own done). NULL when nothing changed. */
typedef struct tern_group_change {
  const char *event;        /* "created", "added", "removed", "left", "renamed", "promoted", "demoted" */
  tern_user *by;            /* who made it */
  tern_user **users;        /* the users the event names */
  size_t nusers;
  tern_user **out;          /* users taken out (removed, left): they get the event too */
  size_t nout;
} tern_group_change;

/* Creates a group of creator + members (no duplicates, no creator among them: the caller
 * cleaned the list). */
tern_group *tern_group_create(tern_app *a, tern_user *creator, const char *name, const char *description,
                              tern_user **members, size_t n, tern_store_op **op);
tern_store_op *tern_group_rename(tern_app *a, tern_group *grp, tern_user *by, const char *name, const char *description);
tern_store_op *tern_group_add(tern_app *a, tern_group *grp, tern_user *by, tern_user **users, size_t n);
/* Removes a member (by an admin, or themselves: a leave). When the last admin goes, the oldest
 * member is promoted (a second event). When the last member goes, the group is deleted:
 * *deleted is set, grp is freed once the returned op has been made. */
tern_store_op *tern_group_remove(tern_app *a, tern_group *grp, tern_user *by, tern_user *who, bool *deleted);
tern_store_op *tern_group_set_admin(tern_app *a, tern_group *grp, tern_user *by, tern_user *who, bool admin);

/* Appends the group's event envelopes for change to op (every device of every member, and of
 * the users taken out). */
void tern_group_event_targets(tern_app *a, tern_op_append *op, const tern_group *grp, const tern_group_change *c);

/* Writes the group object {"group_id",...,"members":[...]} as JSON. */
void tern_group_json(const tern_group *grp, tern_buf *out);

#endif
