/* natsmedia: media bytes in NATS JetStream (cluster mode, issue 12). nats.c 3.4.1 has no
 * Object Store, and a NATS message is at most 1 MiB by default, so a file is stored as chunks
 * of TERN_NATSMEDIA_CHUNK bytes, one message per subject, in one stream per namespace:
 *
 *   stream <NS>_MEDIA, subjects <ns>.media.>, file storage, nats.replicas, max 1 msg per subject
 *   <ns>.media.<media id>.o.<n>   chunk n (0-based) of the original
 *   <ns>.media.<media id>.t.<n>   chunk n of the thumbnail
 *
 * A chunk's subject is its address, so storing a chunk again (a retried upload) replaces it,
 * and deleting a media id is one purge of <ns>.media.<id>.>. The number of chunks follows from
 * the sizes in the media record (which lives in the store's KV), so nothing else is kept.
 *
 * Threads. Every function here blocks on the network (sync nats.c calls, up to a few seconds):
 * call them from a thread of your own, never from a libuv loop (media/blobs.h runs them on its
 * worker thread). One tern_natsmedia may be used by one thread at a time.
 *
 * Errors: negative errno (-ENOTCONN: no server or no quorum; -ENOENT: a chunk is missing;
 * -EIO otherwise) with a one-line reason in err. */
#ifndef TERN_STORE_NATSMEDIA_H
#define TERN_STORE_NATSMEDIA_H

#include <stddef.h>
#include <stdint.h>

#define TERN_NATSMEDIA_CHUNK (256 * 1024) /* base64 in a STREAM.MSG.GET answer stays < 1 MiB */

typedef struct tern_natsmedia tern_natsmedia;

/* Connects (own connection) to the comma list urls and creates or opens the MEDIA stream of
 * namespace ns (NULL: "tern") with replicas (<= 0: 3 with >= 3 URLs, else 1). */
int tern_natsmedia_open(const char *urls, const char *ns, int replicas, tern_natsmedia **out, char *err,
                        size_t errlen);
void tern_natsmedia_close(tern_natsmedia *nm);
/* Stores the file at path as part ('o' original, 't' thumbnail) of media id; returns once
 * every chunk is acknowledged by the stream (a quorum on R3). */
int tern_natsmedia_put_file(tern_natsmedia *nm, const char *id, char part, const char *path, char *err,
                            size_t errlen);
/* Writes part of media id, size bytes, to a new file at path (O_EXCL; removed on error). */
int tern_natsmedia_get_file(tern_natsmedia *nm, const char *id, char part, int64_t size, const char *path,
                            char *err, size_t errlen);
/* Removes every chunk of media id (both parts). Purging an id with no chunks is fine. */
int tern_natsmedia_purge(tern_natsmedia *nm, const char *id, char *err, size_t errlen);

#endif
