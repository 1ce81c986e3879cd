/* web: the static web client, served from memory. See web.h for the contract. */
#include "net/webroot.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <sodium.h>
#include <zlib.h>

#include "base/alloc.h"
#include "base/log.h"

/* Bounds on what a web dir may hold: the client is small, and a mistaken --web-dir (say, /)
 * must fail loudly at start-up instead of reading a disk into memory. */
#define WEB_MAX_FILES 1024
#define WEB_MAX_FILE_BYTES (8 * 1024 * 1024)
#define WEB_MAX_TOTAL_BYTES (64 * 1024 * 1024)
#define WEB_MAX_DEPTH 8
#define WEB_MAX_PATH 512

/* The CSP of every HTML page: nothing inline, nothing third-party. blob: images are the
 * thumbnails the client fetches with its token; ws:/wss: the same-origin WebSocket. */
#define WEB_CSP                                                                                       \
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "           \
  "connect-src 'self' ws: wss:; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; "      \
  "form-action 'self'"

typedef struct web_file {
  char *path;               /* URL path, "/index.html" (owned) */
  const char *ctype;        /* static */
  unsigned char *data;      /* the bytes (owned) */
  size_t len;               /* bytes of data */
  unsigned char *gz;        /* gzip copy, or NULL when it would not be smaller (owned) */
  size_t gzlen;             /* bytes of gz */
  char etag[TERN_WEB_ETAG_MAX];    /* of data */
  char gzetag[TERN_WEB_ETAG_MAX + 4]; /* of gz: a strong ETag differs per content-coding */
  bool no_cache_strict;     /* index.html and sw.js: always revalidated, never heuristically cached */
} web_file;

struct tern_web {
  web_file *files; /* sorted by path for bsearch */
  size_t n;        /* files in use */
  size_t cap;      /* files allocated */
  size_t total;    /* bytes loaded, against WEB_MAX_TOTAL_BYTES */
};

/* ------------------------------------------------------------------------------------------ */
/* pure helpers */

static const struct {
  const char *ext;   /* without the dot, lower case */
  const char *ctype; /* what browsers need to run it (module scripts require a JS type) */
} web_mimes[] = {
    {"html", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"ico", "image/x-icon"},
    {"json", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"txt", "text/plain; charset=utf-8"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"webp", "image/webp"},
    {"gif", "image/gif"},
    {"woff2", "font/woff2"},
};

const char *tern_web_mime(const char *name) {
  const char *slash = strrchr(name, '/');
  const char *base = slash ? slash + 1 : name;
  const char *dot = strrchr(base, '.');
  if (!dot || dot == base) return NULL; /* no extension, or a dotfile like ".htaccess" */
  for (size_t i = 0; i < sizeof web_mimes / sizeof web_mimes[0]; i++)
    if (strcasecmp(dot + 1, web_mimes[i].ext) == 0) return web_mimes[i].ctype;
  return NULL;
}

bool tern_web_path_ok(const char *path, size_t len) {
  if (len == 0 || len > WEB_MAX_PATH || path[0] != '/') return false;
  if (memchr(path, '\0', len) || memchr(path, '\\', len)) return false;
  /* Walk the segments after the leading '/'. "/" alone is fine (it means index.html). */
  size_t i = 1;
  if (len == 1) return true;
  while (i <= len) {
    size_t j = i;
    while (j < len && path[j] != '/') j++;
    size_t seg = j - i;
    if (seg == 0) return false;          /* "//" or a trailing '/': no directory listings */
    if (path[i] == '.') return false;    /* ".", "..", ".git", ".env" */
    for (size_t k = i; k + 1 < j; k++)   /* ".." anywhere, e.g. "a..b" is refused too: cheap */
      if (path[k] == '.' && path[k + 1] == '.') return false;
    i = j + 1;
  }
  return true;
}

void tern_web_etag(const void *data, size_t len, char out[TERN_WEB_ETAG_MAX]) {
  unsigned char h[16];
  crypto_generichash(h, sizeof h, data, len, NULL, 0);
  out[0] = '"';
  sodium_bin2hex(out + 1, TERN_WEB_ETAG_MAX - 1, h, sizeof h); /* 32 hex digits + NUL */
  size_t n = strlen(out);
  out[n] = '"';
  out[n + 1] = '\0';
}

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

/* Splits a comma-separated header value: returns the next element's start and length,
 * trimmed, advancing *p; NULL at the end. */
static const char *next_element(const char **p, size_t *n) {
  const char *s = *p;
  while (*s == ',' || is_ows(*s)) s++;
  if (!*s) return NULL;
  const char *e = s;
  bool quoted = false;
  while (*e && (quoted || *e != ',')) {
    if (*e == '"') quoted = !quoted;
    e++;
  }
  *p = e;
  const char *end = e;
  while (end > s && is_ows(end[-1])) end--;
  *n = (size_t)(end - s);
  return s;
}

/* The q value of one Accept-Encoding element ("gzip;q=0.5"), 1 when absent. */
static double element_q(const char *s, size_t n) {
  const char *semi = memchr(s, ';', n);
  if (!semi) return 1.0;
  const char *p = semi + 1;
  const char *end = s + n;
  while (p < end && is_ows(*p)) p++;
  if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
    char tmp[16];
    size_t m = (size_t)(end - p - 2);
    if (m >= sizeof tmp) m = sizeof tmp - 1;
    memcpy(tmp, p + 2, m);
    tmp[m] = '\0';
    return strtod(tmp, NULL);
  }
  return 1.0;
}

bool tern_web_accepts_gzip(const char *ae) {
  if (!ae) return false;
  double gzip_q = -1, star_q = -1;
  const char *p = ae, *s;
  size_t n;
  while ((s = next_element(&p, &n))) {
    size_t name = 0;
    while (name < n && s[name] != ';' && !is_ows(s[name])) name++;
    double q = element_q(s, n);
    if ((name == 4 && strncasecmp(s, "gzip", 4) == 0) || (name == 6 && strncasecmp(s, "x-gzip", 6) == 0))
      gzip_q = q;
    else if (name == 1 && s[0] == '*')
      star_q = q;
  }
  if (gzip_q >= 0) return gzip_q > 0;
  return star_q > 0;
}

bool tern_web_etag_matches(const char *inm, const char *etag) {
  if (!inm || !etag) return false;
  const char *p = inm, *s;
  size_t n;
  size_t elen = strlen(etag);
  while ((s = next_element(&p, &n))) {
    if (n == 1 && s[0] == '*') return true;
    if (n >= 2 && s[0] == 'W' && s[1] == '/') { /* weak comparison: ignore the W/ */
      s += 2;
      n -= 2;
    }
    if (n == elen && memcmp(s, etag, n) == 0) return true;
  }
  return false;
}

/* ------------------------------------------------------------------------------------------ */
/* loading */

static int web_file_cmp(const void *a, const void *b) {
  return strcmp(((const web_file *)a)->path, ((const web_file *)b)->path);
}

/* The gzip copy of data, or NULL when it is not smaller (images, tiny files). */
static unsigned char *gzip_copy(const unsigned char *data, size_t len, size_t *outlen) {
  z_stream z;
  memset(&z, 0, sizeof z);
  /* windowBits 15 + 16: a gzip wrapper, which is what Content-Encoding: gzip means. */
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
  size_t cap = deflateBound(&z, (uLong)len) + 32;
  unsigned char *out = tern_malloc(cap);
  z.next_in = (Bytef *)data;
  z.avail_in = (uInt)len;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  int rc = deflate(&z, Z_FINISH);
  size_t n = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END || n >= len) {
    tern_free(out);
    return NULL;
  }
  *outlen = n;
  return out;
}

static int read_file(const char *fs, size_t size, unsigned char **out, char *err, size_t errlen) {
  FILE *f = fopen(fs, "rb");
  if (!f) {
    int e = errno;
    snprintf(err, errlen, "web: cannot open %s: %s", fs, strerror(e));
    return -e;
  }
  unsigned char *buf = tern_malloc(size ? size : 1);
  size_t got = size ? fread(buf, 1, size, f) : 0;
  int bad = ferror(f);
  fclose(f);
  if (bad || got != size) { /* changed under us or unreadable: refuse rather than serve a torn file */
    tern_free(buf);
    snprintf(err, errlen, "web: cannot read %s", fs);
    return -EIO;
  }
  *out = buf;
  return 0;
}

static int add_file(tern_web *w, const char *fs, const char *url, size_t size, const char *ctype, char *err,
                    size_t errlen) {
  if (w->n == WEB_MAX_FILES) {
    snprintf(err, errlen, "web: more than %d files in the web dir", WEB_MAX_FILES);
    return -EFBIG;
  }
  if (size > WEB_MAX_FILE_BYTES || w->total + size > WEB_MAX_TOTAL_BYTES) {
    snprintf(err, errlen, "web: %s makes the web dir too large (limits: %d bytes a file, %d in all)", fs,
             WEB_MAX_FILE_BYTES, WEB_MAX_TOTAL_BYTES);
    return -EFBIG;
  }
  unsigned char *data = NULL;
  int rc = read_file(fs, size, &data, err, errlen);
  if (rc < 0) return rc;
  if (w->n == w->cap) {
    w->cap = w->cap ? w->cap * 2 : 32;
    w->files = tern_realloc(w->files, w->cap * sizeof *w->files);
  }
  web_file *f = &w->files[w->n++];
  memset(f, 0, sizeof *f);
  f->path = tern_strdup(url);
  f->ctype = ctype;
  f->data = data;
  f->len = size;
  w->total += size;
  tern_web_etag(data, size, f->etag);
  f->gz = gzip_copy(data, size, &f->gzlen);
  if (f->gz) {
    /* "abc" -> "abc-gz": the same file, another representation. */
    size_t n = strlen(f->etag);
    memcpy(f->gzetag, f->etag, n - 1);
    memcpy(f->gzetag + n - 1, "-gz\"", 5);
  }
  f->no_cache_strict = strcmp(url, "/index.html") == 0 || strcmp(url, "/sw.js") == 0;
  return 0;
}

/* Walks fsdir (whose URL prefix is url, "" for the root) depth-first. */
static int walk(tern_web *w, const char *fsdir, const char *url, int depth, char *err, size_t errlen) {
  if (depth > WEB_MAX_DEPTH) {
    snprintf(err, errlen, "web: %s is nested too deeply", fsdir);
    return -ELOOP;
  }
  DIR *d = opendir(fsdir);
  if (!d) {
    int e = errno;
    snprintf(err, errlen, "web: cannot open %s: %s", fsdir, strerror(e));
    return -e;
  }
  int rc = 0;
  struct dirent *de;
  while (rc == 0 && (de = readdir(d))) {
    if (de->d_name[0] == '.') continue; /* ., .., and every hidden file or folder */
    char fs[4096], u[WEB_MAX_PATH + 1];
    if ((size_t)snprintf(fs, sizeof fs, "%s/%s", fsdir, de->d_name) >= sizeof fs ||
        (size_t)snprintf(u, sizeof u, "%s/%s", url, de->d_name) >= sizeof u) {
      TERN_WARN("web file skipped", "path=%s reason=\"path too long\"", tern_log_quote(fs));
      continue;
    }
    struct stat st;
    if (stat(fs, &st) != 0) { /* e.g. a dangling symlink: skip it, it cannot be served anyway */
      TERN_WARN("web file skipped", "path=%s reason=%s", tern_log_quote(fs), tern_log_quote(strerror(errno)));
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      rc = walk(w, fs, u, depth + 1, err, errlen);
    } else if (S_ISREG(st.st_mode)) {
      const char *ctype = tern_web_mime(de->d_name);
      if (!ctype || !tern_web_path_ok(u, strlen(u))) {
        TERN_DEBUG("web file skipped", "path=%s reason=\"not a served type or name\"", tern_log_quote(fs));
        continue;
      }
      rc = add_file(w, fs, u, (size_t)st.st_size, ctype, err, errlen);
    }
  }
  closedir(d);
  return rc;
}

int tern_web_load(const char *dir, tern_web **out, char *err, size_t errlen) {
  *out = NULL;
  if (sodium_init() < 0) {
    snprintf(err, errlen, "web: libsodium failed to initialise");
    return -EIO;
  }
  tern_web *w = TERN_NEW(tern_web);
  struct stat st;
  if (!dir || !*dir || stat(dir, &st) != 0) {
    TERN_WARN("web client not served", "dir=%s reason=\"missing\"", tern_log_quote(dir ? dir : ""));
    *out = w;
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "web: %s is not a directory", dir);
    tern_free(w);
    return -ENOTDIR;
  }
  int rc = walk(w, dir, "", 0, err, errlen);
  if (rc < 0) {
    tern_web_free(w);
    return rc;
  }
  qsort(w->files, w->n, sizeof *w->files, web_file_cmp);
  size_t gz = 0;
  for (size_t i = 0; i < w->n; i++) gz += w->files[i].gz ? w->files[i].gzlen : w->files[i].len;
  const web_file key = {.path = "/index.html"};
  if (!bsearch(&key, w->files, w->n, sizeof *w->files, web_file_cmp))
    TERN_WARN("web client has no index.html", "dir=%s", tern_log_quote(dir));
  TERN_INFO("web client loaded", "dir=%s files=%zu bytes=%zu gzip_bytes=%zu", tern_log_quote(dir), w->n, w->total,
            gz);
  *out = w;
  return 0;
}

void tern_web_free(tern_web *w) {
  if (!w) return;
  for (size_t i = 0; i < w->n; i++) {
    tern_free(w->files[i].path);
    tern_free(w->files[i].data);
    tern_free(w->files[i].gz);
  }
  tern_free(w->files);
  tern_free(w);
}

size_t tern_web_count(const tern_web *w) { return w ? w->n : 0; }

/* ------------------------------------------------------------------------------------------ */
/* serving */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes src into dst (at most cap-1 bytes). Returns the length, or -1 when the
 * escape is malformed or the result too long. A decoded NUL stays in dst and is refused by
 * tern_web_path_ok, which is given the length. */
static long decode_path(const char *src, char *dst, size_t cap) {
  size_t n = 0;
  for (const char *p = src; *p; p++) {
    if (n + 1 >= cap) return -1;
    if (*p == '%') {
      int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
      if (hi < 0 || lo < 0) return -1;
      dst[n++] = (char)(hi * 16 + lo);
      p += 2;
    } else {
      dst[n++] = *p;
    }
  }
  dst[n] = '\0';
  return (long)n;
}

int tern_web_prepare(const tern_web *w, const char *method, const char *path, const char *inm, const char *ae,
                     tern_web_reply *r) {
  memset(r, 0, sizeof *r);
  if (!w || !w->n || !method || !path) return 0;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) return 0;
  char dec[WEB_MAX_PATH + 1];
  long n = decode_path(path, dec, sizeof dec);
  if (n < 0 || !tern_web_path_ok(dec, (size_t)n)) return 0;
  const web_file key = {.path = strcmp(dec, "/") == 0 ? "/index.html" : dec};
  const web_file *f = bsearch(&key, w->files, w->n, sizeof *w->files, web_file_cmp);
  if (!f) return 0;

  bool gz = f->gz && tern_web_accepts_gzip(ae);
  const char *etag = gz ? f->gzetag : f->etag;
  /* A cached copy of either representation of these bytes is still current. */
  const char *matched = NULL;
  if (tern_web_etag_matches(inm, f->etag)) matched = f->etag;
  else if (f->gz && tern_web_etag_matches(inm, f->gzetag)) matched = f->gzetag;

  bool html = strncmp(f->ctype, "text/html", 9) == 0;
  /* Every file is revalidated (no build step, so names carry no content hash and a stale
   * module next to a fresh index.html would break the app); index.html and sw.js also must
   * never be stored by intermediaries past their lifetime. */
  const char *cc = f->no_cache_strict ? "no-cache, must-revalidate" : "no-cache";
  snprintf(r->headers, sizeof r->headers,
           "ETag: %s\r\n"
           "Cache-Control: %s\r\n"
           "%s"
           "%s"
           "%s%s%s"
           "X-Content-Type-Options: nosniff\r\n"
           "Referrer-Policy: no-referrer\r\n",
           matched ? matched : etag, cc, f->gz ? "Vary: Accept-Encoding\r\n" : "",
           gz && !matched ? "Content-Encoding: gzip\r\n" : "", html ? "Content-Security-Policy: " : "",
           html ? WEB_CSP : "", html ? "\r\n" : "");
  r->content_type = f->ctype;
  if (matched) {
    r->status = 304;
    return r->status;
  }
  r->status = 200;
  r->gzip = gz;
  r->body = gz ? f->gz : f->data;
  r->len = gz ? f->gzlen : f->len;
  return r->status;
}

bool tern_web_handle(tern_web *w, tern_http_req *req) {
  tern_web_reply r;
  if (!tern_web_prepare(w, req->method, req->path, req->if_none_match, req->accept_encoding, &r)) return false;
  /* HEAD gets the GET's body too: tern_http_respond writes its Content-Length and, for HEAD,
   * not its bytes. */
  tern_http_respond(req, r.status, r.headers, r.content_type, r.body, r.len);
  return true;
}
