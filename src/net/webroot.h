/* web: serves the static web client (the files under web/) from memory.
 *
 * The client is small (tens of files, well under a megabyte), so every file is read once at
 * start-up, before the loop runs, and kept in memory with a strong ETag and, when it is
 * smaller, a gzip copy compressed once at level 9. Serving is then a table lookup and one
 * tern_http_respond on the loop thread: no file I/O, no compression, no blocking.
 *
 * Only files whose extension has a known Content-Type are loaded, and never a file or folder
 * whose name starts with a dot, so editor droppings and .git never become reachable.
 *
 * Threads: tern_web_load runs before the loop; tern_web_handle on the loop thread; the loaded
 * table is read-only after load.
 */
#ifndef TERN_NET_WEBROOT_H
#define TERN_NET_WEBROOT_H

#include <stdbool.h>
#include <stddef.h>

#include "net/server.h"

typedef struct tern_web tern_web;

/* Loads every file under dir into memory at start-up (the client is small), with a strong
 * ETag (hash of the bytes) and a gzip-compressed copy (zlib, level 9, once at load) when that
 * is smaller. Returns 0, or -errno with a reason in err. A missing dir is not an error: the
 * web client is then simply not served (a warning is logged) and *out is an empty table.
 * The caller owns *out and frees it with tern_web_free. */
int tern_web_load(const char *dir, tern_web **out, char *err, size_t errlen);

/* Handles GET/HEAD of "/" (index.html) and of files under dir, answering req (which
 * tern_http_respond then frees) and returning true. Returns false without answering for any
 * other method or path, so the API router goes on (/v1/..., /healthz, /metrics). w may be
 * NULL (nothing is served). */
bool tern_web_handle(tern_web *w, tern_http_req *req);

/* Frees everything tern_web_load allocated. NULL is fine. */
void tern_web_free(tern_web *w);

/* ---- the pure parts, exposed for tests/unit/test_web.c ---- */

/* Number of files loaded. */
size_t tern_web_count(const tern_web *w);

/* True when path (a raw request path, without the query, already percent-decoded) may name
 * a served file: it starts with '/', and has no "..", NUL, backslash, empty segment or
 * segment starting with a dot. len is the length of path (it may hold NULs). */
bool tern_web_path_ok(const char *path, size_t len);

/* The Content-Type for a file name by its extension (case-insensitive), or NULL when the
 * extension is not one tern serves. Static strings. */
const char *tern_web_mime(const char *name);

/* A strong ETag for the bytes: a quoted hex BLAKE2b-128 digest. out receives at most
 * TERN_WEB_ETAG_MAX bytes including the NUL. */
#define TERN_WEB_ETAG_MAX 40
void tern_web_etag(const void *data, size_t len, char out[TERN_WEB_ETAG_MAX]);

/* True when an Accept-Encoding header value accepts gzip (gzip or x-gzip or *, with q > 0,
 * and gzip not refused with q=0). NULL accepts nothing. */
bool tern_web_accepts_gzip(const char *accept_encoding);

/* True when an If-None-Match header value ("*", or a comma-separated list of entity tags,
 * weak ones compared weakly as RFC 9110 asks for If-None-Match) matches etag. */
bool tern_web_etag_matches(const char *if_none_match, const char *etag);

/* What tern_web_handle would answer, without a connection. */
typedef struct tern_web_reply {
  int status;                /* 200 or 304; 0 when the request is not the web client's */
  const char *content_type;  /* static */
  const void *body;          /* owned by the tern_web; NULL for 304. Also set for HEAD: the
                                net layer sends its Content-Length but not its bytes */
  size_t len;                /* bytes of body */
  bool gzip;                 /* body is the gzip copy */
  char headers[768];         /* extra header lines, "Name: value\r\n"... */
} tern_web_reply;

/* Fills r for method and path (raw, without the query) and the two request headers (NULL
 * when absent). Returns r->status (0: not handled). */
int tern_web_prepare(const tern_web *w, const char *method, const char *path, const char *if_none_match,
                     const char *accept_encoding, tern_web_reply *r);

#endif
