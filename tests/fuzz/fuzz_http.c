/* Fuzz target for the HTTP request path: the server's request parser (src/net/http.c on
 * llhttp), fed the input in chunks whose size comes from the first byte, the way requests
 * arrive over TCP. Pipelined requests are taken and resumed as the server does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "net/httpreq.h"

static int64_t limit_cb(tern_http_req *req, void *arg) {
  /* vary the body limit by path so both the 413 and the accept paths run */
  return req->path && strncmp(req->path, "/big", 4) == 0 ? 1 << 20 : 256;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t chunk = (size_t)(data[0] % 64) + 1;
  data++;
  size--;
  tern_http_parser *p = tern_http_parser_new(2048, 256, limit_cb, NULL, NULL);
  /* the server keeps unparsed bytes in a buffer and retries after each answer */
  char *pending = tern_malloc(size + 1);
  size_t plen = 0, off = 0;
  int requests = 0;
  bool done = false;
  while (!done && (off < size || plen)) {
    size_t n = (chunk < size - off ? chunk : size - off);
    memcpy(pending + plen, data + off, n);
    plen += n;
    off += n;
    for (;;) {
      size_t used = 0;
      int status = 0;
      tern_http_status st = tern_http_parser_execute(p, pending, plen, &used, &status);
      if (used > plen) abort();
      memmove(pending, pending + used, plen - used);
      plen -= used;
      if (st == TERN_HTTP_REQUEST) {
        tern_http_req *r = tern_http_parser_take(p);
        if (!r || !r->method || !r->path) abort();
        if ((int64_t)r->body.len > 1 << 20) abort();
        tern_http_req_free(r);
        tern_http_parser_resume(p);
        if (++requests > 10000) abort(); /* progress: each request consumes bytes */
        continue;
      }
      if (st == TERN_HTTP_UPGRADE) {
        tern_http_req *r = tern_http_parser_take(p);
        (void)tern_http_parser_ws_key(p);
        (void)tern_http_parser_ws_ok(p);
        tern_http_req_free(r);
        done = true;
      } else if (st == TERN_HTTP_BAD) {
        if (status != 400 && status != 413 && status != 431) abort();
        done = true;
      }
      break;
    }
    if (off >= size) break;
  }
  tern_free(pending);
  tern_http_parser_free(p);
  return 0;
}
