/* test_web: the static web client server (src/core/web.c): loading a directory, content
 * types, path refusal, ETag / If-None-Match, gzip negotiation and the security headers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/alloc.h"
#include "net/webroot.h"
#include "t.h"

static char tmpdir[256];

static void put(const char *rel, const char *content) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
  FILE *f = fopen(p, "wb");
  if (!f) {
    perror(p);
    exit(1);
  }
  fputs(content, f);
  fclose(f);
}

/* A page long and repetitive enough that gzip wins. */
static char *big_html(void) {
  size_t cap = 20000;
  char *s = tern_malloc(cap);
  strcpy(s, "<!doctype html><title>tern</title>");
  while (strlen(s) + 40 < cap) strcat(s, "<p>hello hello hello hello</p>\n");
  return s;
}

static tern_web *load_fixture(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/tern-test-web-XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    exit(1);
  }
  char p[512];
  snprintf(p, sizeof p, "%s/js", tmpdir);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/.git", tmpdir);
  mkdir(p, 0755);
  char *html = big_html();
  put("index.html", html);
  tern_free(html);
  put("sw.js", "self.addEventListener('push', () => {});\n");
  put("app.css", "body{color:#111}\n");
  put("js/app.js", "export const x = 1;\n");
  put("manifest.webmanifest", "{\"name\":\"tern\"}");
  put("icon.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>");
  put("notes.md", "not served: unknown type");
  put(".env", "SECRET=1");
  put(".git/config", "[core]");
  tern_web *w = NULL;
  char err[256] = "";
  int rc = tern_web_load(tmpdir, &w, err, sizeof err);
  if (rc != 0) fprintf(stderr, "load: %s\n", err);
  CHECK_EQ_INT(rc, 0);
  return w;
}

static void cleanup(void) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

static bool has_header(const tern_web_reply *r, const char *line) { return strstr(r->headers, line) != NULL; }

TEST(mime_types) {
  CHECK_EQ_STR(tern_web_mime("index.html"), "text/html; charset=utf-8");
  CHECK_EQ_STR(tern_web_mime("/js/app.js"), "text/javascript; charset=utf-8");
  CHECK_EQ_STR(tern_web_mime("x.mjs"), "text/javascript; charset=utf-8");
  CHECK_EQ_STR(tern_web_mime("a.CSS"), "text/css; charset=utf-8");
  CHECK_EQ_STR(tern_web_mime("i.svg"), "image/svg+xml");
  CHECK_EQ_STR(tern_web_mime("i.png"), "image/png");
  CHECK_EQ_STR(tern_web_mime("favicon.ico"), "image/x-icon");
  CHECK_EQ_STR(tern_web_mime("m.json"), "application/json");
  CHECK_EQ_STR(tern_web_mime("m.webmanifest"), "application/manifest+json");
  CHECK_EQ_STR(tern_web_mime("robots.txt"), "text/plain; charset=utf-8");
  CHECK(tern_web_mime("notes.md") == NULL);
  CHECK(tern_web_mime("Makefile") == NULL);
  CHECK(tern_web_mime(".js") == NULL);
  CHECK(tern_web_mime("dir.js/file") == NULL);
}

TEST(path_validation) {
#define OK(s) CHECK(tern_web_path_ok(s, strlen(s)))
#define BAD(s) CHECK(!tern_web_path_ok(s, strlen(s)))
  OK("/");
  OK("/index.html");
  OK("/js/app.js");
  OK("/a-b_c.d.js");
  BAD("");
  BAD("index.html");
  BAD("/../etc/passwd");
  BAD("/js/../../x");
  BAD("/js/..");
  BAD("/..");
  BAD("/.env");
  BAD("/.git/config");
  BAD("/js/.hidden.js");
  BAD("/js\\app.js");
  BAD("//etc/passwd");
  BAD("/js/");
  BAD("/a..b");
  CHECK(!tern_web_path_ok("/a\0b", 4));
#undef OK
#undef BAD
}

TEST(etag_helpers) {
  char a[TERN_WEB_ETAG_MAX], b[TERN_WEB_ETAG_MAX], c[TERN_WEB_ETAG_MAX];
  tern_web_etag("hello", 5, a);
  tern_web_etag("hello", 5, b);
  tern_web_etag("hellp", 5, c);
  CHECK_EQ_STR(a, b);
  CHECK(strcmp(a, c) != 0);
  CHECK_EQ_INT(strlen(a), 34);
  CHECK(a[0] == '"' && a[33] == '"');
  CHECK(tern_web_etag_matches(a, a));
  CHECK(tern_web_etag_matches("*", a));
  char list[200];
  snprintf(list, sizeof list, "\"zzz\", %s", a);
  CHECK(tern_web_etag_matches(list, a));
  snprintf(list, sizeof list, "W/%s", a);
  CHECK(tern_web_etag_matches(list, a));
  CHECK(!tern_web_etag_matches(c, a));
  CHECK(!tern_web_etag_matches(NULL, a));
  CHECK(!tern_web_etag_matches("", a));
}

TEST(accept_encoding) {
  CHECK(tern_web_accepts_gzip("gzip"));
  CHECK(tern_web_accepts_gzip("gzip, deflate, br"));
  CHECK(tern_web_accepts_gzip("br;q=1.0, GZIP;q=0.5"));
  CHECK(tern_web_accepts_gzip("x-gzip"));
  CHECK(tern_web_accepts_gzip("*"));
  CHECK(!tern_web_accepts_gzip(NULL));
  CHECK(!tern_web_accepts_gzip(""));
  CHECK(!tern_web_accepts_gzip("identity"));
  CHECK(!tern_web_accepts_gzip("br, deflate"));
  CHECK(!tern_web_accepts_gzip("gzip;q=0"));
  CHECK(!tern_web_accepts_gzip("*, gzip;q=0"));
  CHECK(!tern_web_accepts_gzip("*;q=0"));
  CHECK(!tern_web_accepts_gzip("gzipx"));
}

TEST(load_and_serve) {
  tern_web *w = load_fixture();
  if (!w) return;
  /* index.html, sw.js, app.css, js/app.js, manifest.webmanifest, icon.svg; not notes.md,
   * .env or .git/config. */
  CHECK_EQ_INT(tern_web_count(w), 6);
  tern_web_reply r;

  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/", NULL, NULL, &r), 200);
  CHECK_EQ_STR(r.content_type, "text/html; charset=utf-8");
  CHECK(!r.gzip);
  CHECK(r.len > 10000 && strncmp(r.body, "<!doctype html>", 15) == 0);
  CHECK(has_header(&r, "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self';"));
  CHECK(has_header(&r, "frame-ancestors 'none'"));
  CHECK(has_header(&r, "X-Content-Type-Options: nosniff\r\n"));
  CHECK(has_header(&r, "Referrer-Policy: no-referrer\r\n"));
  CHECK(has_header(&r, "Cache-Control: no-cache"));
  CHECK(has_header(&r, "Vary: Accept-Encoding\r\n"));
  CHECK(!has_header(&r, "Content-Encoding"));
  size_t plain_len = r.len;

  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/index.html", NULL, NULL, &r), 200);
  CHECK_EQ_INT(r.len, plain_len);

  /* ETag of the plain bytes, and 304 on If-None-Match. */
  const char *e = strstr(r.headers, "ETag: ");
  CHECK(e != NULL);
  char etag[64] = "";
  if (e) sscanf(e + 6, "%63[^\r]", etag);
  char expect[TERN_WEB_ETAG_MAX];
  tern_web_etag(r.body, r.len, expect);
  CHECK_EQ_STR(etag, expect);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/", etag, NULL, &r), 304);
  CHECK(r.body == NULL && r.len == 0);
  CHECK(has_header(&r, etag));
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/", "\"other\"", NULL, &r), 200);

  /* gzip when accepted: a different strong ETag, smaller, and it inflates to the original. */
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/", NULL, "gzip, deflate, br", &r), 200);
  CHECK(r.gzip);
  CHECK(has_header(&r, "Content-Encoding: gzip\r\n"));
  CHECK(has_header(&r, "Vary: Accept-Encoding\r\n"));
  CHECK(r.len < plain_len);
  char gzetag[64] = "";
  e = strstr(r.headers, "ETag: ");
  if (e) sscanf(e + 6, "%63[^\r]", gzetag);
  CHECK(strcmp(gzetag, etag) != 0);
  {
    unsigned char *out = tern_malloc(plain_len + 16);
    z_stream z;
    memset(&z, 0, sizeof z);
    CHECK(inflateInit2(&z, 15 + 16) == Z_OK);
    z.next_in = (Bytef *)r.body;
    z.avail_in = (uInt)r.len;
    z.next_out = out;
    z.avail_out = (uInt)(plain_len + 16);
    CHECK(inflate(&z, Z_FINISH) == Z_STREAM_END);
    CHECK_EQ_INT(z.total_out, plain_len);
    inflateEnd(&z);
    tern_web_reply p;
    tern_web_prepare(w, "GET", "/", NULL, NULL, &p);
    CHECK_MEM(out, p.body, plain_len);
    tern_free(out);
  }
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/", gzetag, "gzip", &r), 304);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/", NULL, "gzip;q=0", &r), 200);
  CHECK(!r.gzip);

  /* HEAD: the same answer as GET (the net layer sends the Content-Length, not the bytes). */
  CHECK_EQ_INT(tern_web_prepare(w, "HEAD", "/", NULL, NULL, &r), 200);
  CHECK(r.body != NULL && r.len == plain_len);
  CHECK(has_header(&r, "ETag: "));

  /* Content types of the others, and no CSP off HTML. */
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/js/app.js", NULL, "gzip", &r), 200);
  CHECK_EQ_STR(r.content_type, "text/javascript; charset=utf-8");
  CHECK(!r.gzip); /* too small to gain */
  CHECK(!has_header(&r, "Content-Security-Policy"));
  CHECK(!has_header(&r, "Vary"));
  CHECK(has_header(&r, "X-Content-Type-Options: nosniff\r\n"));
  CHECK_EQ_INT(r.len, strlen("export const x = 1;\n"));
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/app.css", NULL, NULL, &r), 200);
  CHECK_EQ_STR(r.content_type, "text/css; charset=utf-8");
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/manifest.webmanifest", NULL, NULL, &r), 200);
  CHECK_EQ_STR(r.content_type, "application/manifest+json");
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/icon.svg", NULL, NULL, &r), 200);
  CHECK_EQ_STR(r.content_type, "image/svg+xml");
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/sw.js", NULL, NULL, &r), 200);
  CHECK(has_header(&r, "Cache-Control: no-cache"));
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/%6As/app.js", NULL, NULL, &r), 200); /* %6A = 'j' */

  /* Not the web client's: the API router goes on. */
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/v1/me", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/healthz", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/metrics", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "POST", "/", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "PUT", "/index.html", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/notes.md", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/.env", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/.git/config", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/js/../index.html", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/js/%2e%2e/index.html", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/%2e%2e/etc/passwd", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/index.html%00.js", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/js%5capp.js", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/js/", NULL, NULL, &r), 0);
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/%zz", NULL, NULL, &r), 0);

  /* tern_web_handle on a request without a connection: answered (and freed) or left alone. */
  tern_http_req *req = TERN_NEW(tern_http_req);
  req->method = "GET";
  req->path = tern_strdup("/index.html");
  req->content_length = -1;
  CHECK(tern_web_handle(w, req)); /* tern_http_respond freed req */
  req = TERN_NEW(tern_http_req);
  req->method = "GET";
  req->path = tern_strdup("/v1/me");
  CHECK(!tern_web_handle(w, req));
  tern_free(req->path);
  tern_free(req);

  tern_web_free(w);
  cleanup();
}

TEST(missing_dir) {
  tern_web *w = NULL;
  char err[256] = "";
  CHECK_EQ_INT(tern_web_load("/nonexistent/tern/web", &w, err, sizeof err), 0);
  CHECK(w != NULL);
  CHECK_EQ_INT(tern_web_count(w), 0);
  tern_web_reply r;
  CHECK_EQ_INT(tern_web_prepare(w, "GET", "/", NULL, NULL, &r), 0);
  tern_web_free(w);
  CHECK_EQ_INT(tern_web_prepare(NULL, "GET", "/", NULL, NULL, &r), 0);
  /* A file where a directory is expected is a configuration error. */
  CHECK(tern_web_load("/etc/hostname", &w, err, sizeof err) < 0);
  CHECK(w == NULL);
  CHECK(strlen(err) > 0);
}

int main(void) {
  RUN(mime_types);
  RUN(path_validation);
  RUN(etag_helpers);
  RUN(accept_encoding);
  RUN(load_and_serve);
  RUN(missing_dir);
  DONE();
}
