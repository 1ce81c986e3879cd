/* profile: display names and avatars (PROTOCOL.md 15): PATCH /v1/me, the `display_name` and
 * `avatar` of GET /v1/me and /v1/users/{name}, the live {"type":"profile"} frame to the user's
 * presence watchers, and who may read an avatar.
 *
 * Storage: one record per user in the store's RECORDS bucket, "profile/<user>", layout
 *   [1 version = 1][1 n][display name: n bytes, UTF-8, n <= 64][1 m][avatar media id: m bytes]
 * (m is 0 or TERN_MEDIA_ID_LEN), written with a plain KV_PUT (the last PATCH wins) and
 * followed by every loop and node through the change feed (core/sync.c), where a change is
 * applied and told to that loop's watchers. A user without a record has neither. In memory
 * the fields hang off the user (tern_user.display_name and .avatar, owned, NULL when unset;
 * an empty display name is unset).
 *
 * The avatar is a media record marked avatar (media.h: tern_media_mark_avatar at the upload
 * with ?purpose=avatar); setting one marks it on, replacing or clearing it marks the old one
 * off, so that it is deleted media.avatar_grace later.
 *
 * Threads: the loop's. */
#ifndef TERN_CORE_PROFILE_H
#define TERN_CORE_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "core/app.h"
#include "net/httpreq.h"

#define TERN_PROFILE_NAME_MAX 64 /* bytes of UTF-8 in a display name */

struct tern_media_rec;

/* The stored record of a profile (display_name and avatar may be NULL). */
void tern_profile_encode(const char *display_name, const char *avatar, tern_buf *out);
/* Parses a record: 0 with views into v (empty when unset), or -EINVAL for anything else (a
 * version other than 1, a name over 64 bytes or not UTF-8, an avatar that is not a media id,
 * trailing bytes). */
int tern_profile_decode(const uint8_t *v, size_t len, tern_str *display_name, tern_str *avatar);

bool tern_profile_is_kv(const char *key, size_t klen);
/* A stored record, at load or from the feed (v NULL: deleted); a change is told to the
 * user's watchers on this loop. Returns -EINVAL for a bad record. */
int tern_profile_apply_record(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t vlen);
/* Appends ,"display_name":...,"avatar":... as viewer sees u's profile (null when unset, and
 * both null when u blocked viewer, PROTOCOL.md 14). */
void tern_profile_put_json(tern_buf *b, const tern_user *viewer, const tern_user *u);
/* Whether reader may read the avatar r: it is set as its owner's avatar, and the owner has not
 * blocked reader. */
bool tern_profile_avatar_readable(tern_app *a, const struct tern_media_rec *r, const tern_user *reader);
/* PATCH /v1/me. */
void tern_profile_patch(tern_app *a, tern_http_req *req);
/* An account deletion: its record goes and its avatar stops being one (deleted after
 * media.avatar_grace). */
void tern_profile_forget(tern_app *a, tern_user *u);

#endif
