/* presence: online state, last seen, watch lists and the typing relay. Presence is live
 * only: nothing here is queued or stored, except last seen (app.c persists it).
 * Threads: the worker's loop. */
#ifndef TERN_CORE_PRESENCE_H
#define TERN_CORE_PRESENCE_H

#include "core/app.h"
#include "core/session.h"
#include "proto/frame.h"

void tern_presence_watch(tern_app *a, tern_session *s, tern_frame *f);
void tern_presence_unwatch(tern_app *a, tern_session *s, tern_frame *f);
void tern_presence_drop_session(tern_app *a, tern_session *s); /* unwatch everything */
/* u's devices connected right now, on this loop and elsewhere (0: offline). */
int tern_presence_online(tern_app *a, const tern_user *u);
/* Tells u's watchers about a change of u's online state. */
void tern_presence_changed(tern_app *a, tern_user *u);
/* Sends what s's user may see of u's presence (privacy.h) to s. */
void tern_presence_send(tern_app *a, tern_session *s, tern_user *u);
void tern_presence_typing(tern_app *a, tern_session *s, tern_frame *f);

#endif
