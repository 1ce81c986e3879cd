/* mediaglue: PROTOCOL.md section 7 on top of src/media: the persistence hooks (media records as
 * store KV records "media/<id>"), POST /v1/media as a streamed body sink, GET
 * /v1/media/{id}[/thumb] streamed from the file in chunks, and the bookkeeping that ties
 * uploads to connections. Threads: the worker's loop; a worker other than the media worker
 * (worker 0) reaches the media store through the media worker's mailbox (mediaglue.c). */
#ifndef TERN_CORE_MEDIAGLUE_H
#define TERN_CORE_MEDIAGLUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/app.h"
#include "media/media.h"
#include "net/httpreq.h"

/* The persistence hooks for tern_media_options. */
tern_media_persist tern_mediaglue_persist(tern_app *a);
/* True for a KV key that holds a media record (start-up feeds those to tern_media_load_record). */
bool tern_mediaglue_is_kv(const char *key, size_t klen);
/* Deletes a stored KV record (one tern_media_load_record refused). */
void tern_mediaglue_drop_kv(tern_app *a, const char *key, size_t klen);
/* Cluster mode (store backend nats), the media worker, after tern_media_open: media bytes
 * are also stored in JetStream (store/natsmedia.h through media/blobs.h), an upload is
 * answered 201 once its chunks are stored, a read of a media whose files are not on this node
 * fetches them first, and a delete purges them. 0 or a negative errno with a reason. */
int tern_mediaglue_open_blobs(tern_app *a, char *err, size_t errlen);
/* The limit callback for POST /v1/media: authenticates, starts the upload from the head (or
 * sets the request's refuse_* fields) and installs the body sink; returns media.max_bytes. */
int64_t tern_mediaglue_body_limit(tern_app *a, tern_http_req *req);
/* Answers /v1/media (a completed upload) and /v1/media/{id}[/thumb]; false for other paths. */
bool tern_mediaglue_route(tern_app *a, tern_http_req *req);
/* Shutdown: answers uploads still waiting (503), forgets the others and closes the media store. */
void tern_mediaglue_close(tern_app *a);
/* Frees the replica (tern_app_free). */
void tern_mediaglue_free(tern_app *a);

/* ---- for every worker: the media store lives on the media worker (app.h) ---- */
/* A media record by id: the media store's on the media worker, else the replica's (the records
 * as the change feed last brought them). Valid until the next return to the loop. */
const tern_media_rec *tern_mediaglue_get(tern_app *a, const char *id);
/* A "media/<id>" record from the load or the feed (v NULL: deleted): the replica's. A no-op
 * on the media worker. */
void tern_mediaglue_apply_record(tern_app *a, const char *key, size_t klen, const uint8_t *v, size_t vlen);
/* tern_media_grant and tern_media_delete_unsent, on the media worker's loop: at once there,
 * else through its mailbox, ahead of anything this worker asks of it later. */
void tern_mediaglue_grant(tern_app *a, const char *id, const char *to_user, uint32_t recipient_devices);
void tern_mediaglue_delete_unsent(tern_app *a, const char *owner);
/* A deleted message's media: the conversation's users' grants end (PROTOCOL.md 15). */
void tern_mediaglue_revoke(tern_app *a, const char *id, const char *const *users, size_t nusers);
/* The same, then done(arg, true) on this worker's loop once the record's change is durable (a
 * SYNC after it on the media worker's store), whether or not it could be written; done(arg,
 * false), on any thread, when this worker's loop closed first (free arg, touch nothing else). */
void tern_mediaglue_revoke_durable(tern_app *a, const char *id, const char *const *users, size_t nusers,
                                   tern_store_call_fn done, void *arg);
/* id became its owner's avatar (on) or stopped being it. */
void tern_mediaglue_set_avatar(tern_app *a, const char *id, bool on);

#endif
