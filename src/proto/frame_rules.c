/* frame_rules: the checks of client frames (see frame_rules.h), and which fields of send go
 * together (the comment of tern_frame in frame.h says it in words). */
#include "proto/frame_rules.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "proto/wire.h"

const char *const tern_frame_e2e_names[3] = {[TERN_E2E_PREKEY] = "prekey", [TERN_E2E_MESSAGE] = "message"};

int tern_frame_fail(tern_frame_error *err, const char *code, const char *fmt, ...) {
  va_list ap;
  err->code = code;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

void tern_frame_checker_init(tern_frame_checker *c, tern_frame_error *err, const tern_frame_limits *lim,
                             bool nul_escapes) {
  c->err = err;
  c->nul_escapes = nul_escapes;
  c->max_ciphertext = lim && lim->e2e_max_ciphertext ? lim->e2e_max_ciphertext : TERN_E2E_MAX_CIPHERTEXT_DEFAULT;
  c->max_devices = lim && lim->e2e_max_devices ? lim->e2e_max_devices : TERN_E2E_MAX_DEVICES_DEFAULT;
  c->v11 = lim && lim->v1_1;
  c->utf8_known = false;
}

/* Text we can store and echo back: valid UTF-8 without NUL. A NUL is a raw 0 byte in what an
 * encoder is given, or a 0xFF byte where the decoder's input had "\u0000". */
int tern_frame_check_text(tern_frame_checker *c, const char *what, const char *s, size_t n) {
  if (memchr(s, '\0', n) || (c->nul_escapes && memchr(s, 0xFF, n)))
    return tern_frame_fail(c->err, TERN_BAD_REQUEST, "%s must not contain \\u0000", what);
  if (!c->utf8_known && !tern_wire_text(s, n))
    return tern_frame_fail(c->err, TERN_BAD_REQUEST, "%s is not valid UTF-8", what);
  return 0;
}

int tern_frame_check_id(tern_frame_checker *c, const char *what, const char *s, size_t max) {
  if (!s || !tern_wire_ascii_id(s, strlen(s), max))
    return tern_frame_fail(c->err, TERN_BAD_REQUEST, "%s must be a string of 1 to %zu printable ASCII characters", what,
                           max);
  return 0;
}

/* A name the server looks up (to, peer): any UTF-8 string; one that is not a valid username
 * is answered no_such_user, not bad_request. */
static int check_name(tern_frame_checker *c, const char *what, const char *s) {
  if (!s) return tern_frame_fail(c->err, TERN_BAD_REQUEST, "%s must be a string", what);
  return tern_frame_check_text(c, what, s, strlen(s));
}

static int check_group(tern_frame_checker *c, const char *s) {
  if (!tern_wire_group_id(s, strlen(s)))
    return tern_frame_fail(c->err, TERN_BAD_REQUEST, "group_id must be 1 to %d characters of A-Z, a-z, 0-9, _ and -",
                           TERN_GROUP_ID_MAX);
  return 0;
}

int tern_frame_check_count(tern_frame_checker *c, const char *what, size_t n, size_t max) {
  if (n > max) return tern_frame_fail(c->err, TERN_TOO_LARGE, "%s has more than %zu entries", what, max);
  return 0;
}

/* Exactly one of to (or a to_raw standing for it) and group_id. */
static int check_target(tern_frame_checker *c, const char *frame, const char *to, const char *group_id) {
  if (!to == !group_id)
    return tern_frame_fail(c->err, TERN_BAD_REQUEST, "%s needs exactly one of to and group_id", frame);
  return to ? check_name(c, K_TO, to) : check_group(c, group_id);
}

int tern_frame_check_auth(tern_frame_checker *c, const tern_frame *f) {
  size_t n = f->token ? strlen(f->token) : 0;
  if (n == 0 || n > TERN_TOKEN_MAX)
    return tern_frame_fail(c->err, TERN_BAD_REQUEST, "token must be 1 to %d bytes long", TERN_TOKEN_MAX);
  return tern_frame_check_text(c, K_TOKEN, f->token, n);
}

void tern_nameset_init(tern_nameset *s, size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  s->slots = tern_calloc(cap, sizeof *s->slots);
  s->mask = cap - 1;
}

/* Adds name (kept by pointer) and returns true, or returns false when it is already there. */
bool tern_nameset_add(tern_nameset *s, const char *name, size_t n) {
  size_t i = (size_t)tern_hash_bytes(name, n) & s->mask;
  while (s->slots[i]) {
    if (strcmp(s->slots[i], name) == 0) return false;
    i = (i + 1) & s->mask;
  }
  s->slots[i] = name;
  return true;
}

static int check_e2e(tern_frame_checker *c, const tern_frame *f) {
  if (f->ne2e == 0) return tern_frame_fail(c->err, TERN_BAD_REQUEST, "e2e must not be empty");
  int rc = tern_frame_check_count(c, K_E2E, f->ne2e, c->max_devices);
  if (rc) return rc;
  tern_nameset seen;
  tern_nameset_init(&seen, f->ne2e);
  for (size_t i = 0; i < f->ne2e && !rc; i++) {
    const tern_frame_e2e *e = &f->e2e[i];
    if ((rc = tern_frame_check_id(c, "e2e device_id", e->device_id, TERN_DEVICE_ID_MAX))) break;
    if (e->type != TERN_E2E_PREKEY && e->type != TERN_E2E_MESSAGE) {
      rc = tern_frame_fail(c->err, TERN_BAD_REQUEST, "e2e type must be \"prekey\" or \"message\"");
    } else if (!e->body) {
      rc = tern_frame_fail(c->err, TERN_BAD_REQUEST, "e2e body must be a string");
    } else if (e->body_len > c->max_ciphertext) {
      rc = tern_frame_fail(c->err, TERN_TOO_LARGE, "e2e body is longer than %zu bytes", c->max_ciphertext);
    } else if (!tern_wire_base64(e->body, e->body_len) || memchr(e->body, '\0', e->body_len)) {
      rc = tern_frame_fail(c->err, TERN_BAD_REQUEST, "e2e body must be standard base64");
    } else if (!tern_nameset_add(&seen, e->device_id, strlen(e->device_id))) {
      rc = tern_frame_fail(c->err, TERN_BAD_REQUEST, "e2e names device %s twice", e->device_id);
    }
  }
  tern_free(seen.slots);
  return rc;
}

static int check_mentions(tern_frame_checker *c, const tern_frame *f) {
  int rc = tern_frame_check_count(c, K_MENTIONS, f->nmentions, TERN_MENTIONS_MAX);
  for (size_t i = 0; i < f->nmentions && !rc; i++) {
    char norm[TERN_USERNAME_MAX + 1];
    const char *s = f->mentions[i];
    if (!s) return tern_frame_fail(c->err, TERN_BAD_REQUEST, "mentions entries must be strings");
    if ((rc = tern_frame_check_text(c, "mentions entries", s, strlen(s)))) break;
    if (!tern_username_normalize(s, strlen(s), norm))
      rc = tern_frame_fail(c->err, TERN_BAD_REQUEST, "mentions entries must be usernames");
  }
  return rc;
}

/* Which fields go together: see the comment of tern_frame in frame.h. */
static int check_send_shape(tern_frame_checker *c, const tern_frame *f) {
  bool plain = tern_frame_has_body(f) || f->media_id, e2e = f->e2e != NULL, reaction = f->reaction_to || f->emoji;
  bool del = f->delete_of != NULL;
  if (!plain && !e2e && !reaction && !del)
    return tern_frame_fail(c->err, TERN_BAD_REQUEST,
                           "send needs a non-empty body or media (or e2e, a reaction or a delete)");
  if (e2e && plain)
    return tern_frame_fail(c->err, TERN_BAD_REQUEST, "e2e replaces body and media: send one or the other");
  if (e2e && (f->reply_to || f->edit_of))
    return tern_frame_fail(c->err, TERN_BAD_REQUEST, "with e2e, reply_to and edit go inside the ciphertext");
  if (reaction && (plain || e2e || f->reply_to || f->edit_of || f->mentions || del))
    return tern_frame_fail(c->err, TERN_BAD_REQUEST,
                           "a reaction goes alone: no body, media, e2e, reply_to, edit, mentions or delete");
  if (del && (plain || e2e || f->media_ref || f->reply_to || f->edit_of || f->mentions))
    return tern_frame_fail(c->err, TERN_BAD_REQUEST,
                           "a delete goes alone: no body, media, e2e, media_ref, reply_to, edit or mentions");
  if (f->media_ref && !e2e)
    return tern_frame_fail(c->err, TERN_BAD_REQUEST, "media_ref goes only with e2e (plaintext sends use media)");
  if (f->edit_of && (!tern_frame_has_body(f) || f->media_id))
    return tern_frame_fail(c->err, TERN_BAD_REQUEST, "an edit carries a new body and no media");
  if (f->mentions && !f->group_id) return tern_frame_fail(c->err, TERN_BAD_REQUEST, "mentions go only with group_id");
  return 0;
}

int tern_frame_check_send(tern_frame_checker *c, const tern_frame *f) {
  int rc = tern_frame_check_id(c, K_ID, f->id, TERN_CLIENT_ID_MAX);
  if (!rc) rc = check_target(c, "send", tern_frame_wire_to(f), f->group_id);
  if (rc) return rc;
  if (tern_frame_has_body(f)) {
    if (f->body_len > TERN_BODY_MAX)
      return tern_frame_fail(c->err, TERN_TOO_LARGE, "body is longer than %d bytes", TERN_BODY_MAX);
    if ((rc = tern_frame_check_text(c, K_BODY, f->body, f->body_len))) return rc;
  }
  if (f->media_id && (rc = tern_frame_check_id(c, "media.media_id", f->media_id, TERN_MSG_ID_MAX))) return rc;
  if (f->e2e && (rc = check_e2e(c, f))) return rc;
  if (f->media_ref && (rc = tern_frame_check_id(c, K_MEDIA_REF, f->media_ref, TERN_MSG_ID_MAX))) return rc;
  if (f->reply_to && (rc = tern_frame_check_id(c, K_REPLY_TO, f->reply_to, TERN_MSG_ID_MAX))) return rc;
  if (f->reaction_to || f->emoji) {
    if ((rc = tern_frame_check_id(c, "reaction.to", f->reaction_to, TERN_MSG_ID_MAX))) return rc;
    size_t n = f->emoji ? strlen(f->emoji) : 0;
    if (!f->emoji || n > TERN_EMOJI_MAX)
      return tern_frame_fail(c->err, TERN_BAD_REQUEST, "reaction.emoji must be a string of 0 to %d bytes",
                             TERN_EMOJI_MAX);
    if ((rc = tern_frame_check_text(c, "reaction.emoji", f->emoji, n))) return rc;
  }
  if (f->edit_of && (rc = tern_frame_check_id(c, "edit.of", f->edit_of, TERN_MSG_ID_MAX))) return rc;
  if (f->delete_of && (rc = tern_frame_check_id(c, "delete.of", f->delete_of, TERN_MSG_ID_MAX))) return rc;
  if (f->mentions && (rc = check_mentions(c, f))) return rc;
  return check_send_shape(c, f);
}

int tern_frame_check_read(tern_frame_checker *c, const tern_frame *f) {
  int rc = check_name(c, K_PEER, tern_frame_wire_peer(f));
  if (!rc && f->group_id) rc = check_group(c, f->group_id);
  if (!rc) rc = tern_frame_check_count(c, K_MSG_IDS, f->nids, TERN_READ_IDS_MAX);
  if (rc) return rc;
  if (f->nids == 0) return tern_frame_fail(c->err, TERN_BAD_REQUEST, "msg_ids must not be empty");
  for (size_t i = 0; i < f->nids; i++) {
    if (!f->ids[i] || !tern_wire_ascii_id(f->ids[i], strlen(f->ids[i]), TERN_MSG_ID_MAX))
      return tern_frame_fail(c->err, TERN_BAD_REQUEST,
                             "msg_ids entries must be strings of 1 to %d printable ASCII characters", TERN_MSG_ID_MAX);
  }
  return 0;
}

int tern_frame_check_watch(tern_frame_checker *c, const tern_frame *f) {
  int rc = tern_frame_check_count(c, K_USERS, f->nusers + f->nbad_users, TERN_WATCH_MAX);
  for (size_t i = 0; i < f->nusers + f->nbad_users && !rc; i++) {
    const char *s = i < f->nusers ? f->users[i] : f->bad_users[i - f->nusers];
    rc = s ? tern_frame_check_text(c, "users entries", s, strlen(s))
           : tern_frame_fail(c->err, TERN_BAD_REQUEST, "users entries must be strings");
  }
  return rc;
}

int tern_frame_check_typing(tern_frame_checker *c, const tern_frame *f) {
  return check_target(c, "typing", tern_frame_wire_to(f), f->group_id);
}

int tern_frame_check_decrypt_error(tern_frame_checker *c, const tern_frame *f) {
  int rc = check_name(c, K_PEER, tern_frame_wire_peer(f));
  if (!rc) rc = tern_frame_check_id(c, K_DEVICE_ID, f->device_id, TERN_DEVICE_ID_MAX);
  if (!rc) rc = tern_frame_check_id(c, K_MSG_ID, f->msg_id, TERN_MSG_ID_MAX);
  return rc;
}
