/* e2e: the check every encrypted send passes (PROTOCOL.md 11): its `e2e` list names exactly
 * the E2E-capable devices that must get a ciphertext: every such device of the recipient (or
 * of every other member of the group), and every other such device of the sender. Anything
 * else is answered `devices_changed` with the `missing` and `extra` devices, and nothing is
 * stored; a 1:1 recipient without any such device is `no_keys`.
 *
 * Ownership: devs (caller's array of f->ne2e) gets borrowed device pointers, valid during the
 * call that made them (the caller references those it keeps). Threads: the worker's loop. */
#ifndef TERN_CORE_E2E_H
#define TERN_CORE_E2E_H

#include <stdbool.h>
#include <stdint.h>

#include "core/app.h"
#include "core/session.h"
#include "proto/frame.h"

struct tern_group;

/* Exactly one of to (1:1) and grp. True with devs[i] = the device of f->e2e[i]. False after
 * answering (no_keys, devices_changed; or `sent` when the id is a repeat of one stored before,
 * which a store look-up tells, so the answer may come a moment later), or after holding f
 * for a catch-up (the directory may not know a device another node published a moment ago;
 * f then runs again). */
bool tern_e2e_match(tern_app *a, tern_session *s, tern_frame *f, tern_user *to, const struct tern_group *grp,
                    uint64_t received_ns, tern_device **devs);

/* The wire name of a ciphertext type ("prekey", "message"). */
const char *tern_e2e_type_name(tern_e2e_type t);

#endif
