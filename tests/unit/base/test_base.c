/* test_base: the base layer: buffers and JSON string escaping, the hash map, UTF-8 validation,
 * and the config table (units, bounds, precedence flag > env > file > default), address lists. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/cidr.h"
#include "base/config.h"
#include "base/map.h"
#include "base/util.h"
#include "t.h"

TEST(buf_basics) {
  tern_buf b = {0};
  tern_buf_puts(&b, "ab");
  tern_buf_printf(&b, "%d-%s", 42, "x");
  tern_buf_put_u64(&b, 18446744073709551615ull);
  tern_buf_put_i64(&b, -9223372036854775807ll - 1);
  CHECK_EQ_STR(tern_buf_cstr(&b), "ab42-x18446744073709551615-9223372036854775808");
  tern_buf_consume(&b, 2);
  CHECK(strncmp(b.data, "42-x", 4) == 0);
  tern_buf_reset(&b);
  char big[1000];
  memset(big, 'q', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  tern_buf_printf(&b, "%s", big); /* longer than the printf fast path */
  CHECK_EQ_INT(b.len, 999);
  size_t n;
  char *stolen = tern_buf_steal(&b, &n);
  CHECK_EQ_INT(n, 999);
  CHECK(b.data == NULL && b.len == 0);
  tern_free(stolen);
}

TEST(json_escaping) {
  tern_buf b = {0};
  const char s[] = "q\"b\\n\n\t\x01\x1f é";
  tern_buf_put_json_str(&b, s, sizeof s - 1);
  CHECK_EQ_STR(tern_buf_cstr(&b), "\"q\\\"b\\\\n\\n\\t\\u0001\\u001f é\"");
  tern_buf_free(&b);
}

/* The writer against a byte-at-a-time one, for strings of every length up to 40 around each
 * byte that needs escaping and bytes that do not (0x7F, 0x80, 0xFF), at every offset. */
static void json_ref(tern_buf *b, const unsigned char *s, size_t n) {
  tern_buf_putc(b, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (c == '"') tern_buf_puts(b, "\\\"");
    else if (c == '\\') tern_buf_puts(b, "\\\\");
    else if (c == '\n') tern_buf_puts(b, "\\n");
    else if (c == '\r') tern_buf_puts(b, "\\r");
    else if (c == '\t') tern_buf_puts(b, "\\t");
    else if (c == '\b') tern_buf_puts(b, "\\b");
    else if (c == '\f') tern_buf_puts(b, "\\f");
    else if (c < 0x20) tern_buf_printf(b, "\\u%04x", c);
    else tern_buf_putc(b, (char)c);
  }
  tern_buf_putc(b, '"');
}

TEST(json_escaping_words) {
  static const unsigned char special[] = {0x00, 0x01, 0x1f, 0x20, '"', '\\', '\n', 0x7f, 0x80, 0xa2, 0xff, 'a'};
  tern_buf got = {0}, want = {0};
  unsigned char s[40];
  for (size_t n = 0; n <= sizeof s; n++) {
    for (size_t k = 0; k < sizeof special; k++) {
      for (size_t at = 0; at < (n ? n : 1); at++) {
        for (size_t i = 0; i < n; i++) s[i] = (unsigned char)('a' + i % 26);
        if (n) s[at] = special[k];
        if (n > 9 && at + 7 < n) s[at + 7] = special[(k + 5) % sizeof special]; /* a second one in the word after */
        tern_buf_reset(&got);
        tern_buf_reset(&want);
        tern_buf_put_json_str(&got, (const char *)s, n);
        json_ref(&want, s, n);
        if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0) {
          fprintf(stderr, "  FAIL: n=%zu at=%zu byte=%02x\n", n, at, special[k]);
          t_failed_checks++;
        }
      }
    }
  }
  tern_buf_free(&got);
  tern_buf_free(&want);
}

TEST(map_put_get_del) {
  tern_map m = {0};
  char key[16];
  for (int i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    CHECK(tern_map_puts(&m, key, (void *)(intptr_t)(i + 1)) == NULL);
  }
  CHECK_EQ_INT(m.count, 1000);
  CHECK((intptr_t)tern_map_gets(&m, "k500") == 501);
  CHECK((intptr_t)tern_map_puts(&m, "k500", (void *)7) == 501); /* replace returns the old value */
  CHECK((intptr_t)tern_map_dels(&m, "k500") == 7);
  CHECK(tern_map_gets(&m, "k500") == NULL);
  CHECK_EQ_INT(m.count, 999);
  /* binary keys with NULs */
  CHECK(tern_map_put(&m, "a\0b", 3, (void *)1) == NULL);
  CHECK(tern_map_get(&m, "a\0c", 3) == NULL);
  CHECK(tern_map_get(&m, "a\0b", 3) == (void *)1);
  tern_map_free(&m);
}

TEST(utf8) {
  CHECK(tern_utf8_valid("", 0));
  CHECK(tern_utf8_valid("héllo €𝄞", strlen("héllo €𝄞")));
  CHECK(!tern_utf8_valid("\xc0\xaf", 2));         /* overlong */
  CHECK(!tern_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
  CHECK(!tern_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
  CHECK(!tern_utf8_valid("\xe2\x82", 2));         /* truncated */
  CHECK(!tern_utf8_valid("\x80", 1));             /* stray continuation */
  CHECK(!tern_utf8_valid("\xff", 1));
}

TEST(units) {
  int64_t v;
  CHECK(tern_parse_duration_ms("500ms", &v) == 0 && v == 500);
  CHECK(tern_parse_duration_ms("90s", &v) == 0 && v == 90000);
  CHECK(tern_parse_duration_ms("30d", &v) == 0 && v == 30LL * 86400000);
  CHECK(tern_parse_duration_ms("1.5h", &v) == 0 && v == 5400000);
  CHECK(tern_parse_duration_ms("90", &v) < 0); /* a duration needs its unit */
  CHECK(tern_parse_duration_ms("-1s", &v) < 0);
  CHECK(tern_parse_size("64KiB", &v) == 0 && v == 65536);
  CHECK(tern_parse_size("16MiB", &v) == 0 && v == 16 << 20);
  CHECK(tern_parse_size("1000", &v) == 0 && v == 1000);
  CHECK(tern_parse_size("3 furlongs", &v) < 0);
}

TEST(config_precedence) {
  char path[] = "/tmp/tern-cfg-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  const char *text = "# a comment\ninbox.max_envelopes = 7\nws.ping_interval = 5s # trailing\n"
                     "listen = \"127.0.0.1:9\"\nauth.hash_cost = test\n";
  CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  close(fd);
  setenv("TERN_WS_PING_INTERVAL", "6s", 1);
  setenv("TERN_LIMITS_SEND_RATE", "3/s", 1);
  char *argv[] = {"ternd", "--config", path, "--limits-send-rate", "4/s", "--allow-insecure-test-settings", NULL};
  tern_config c;
  tern_config_defaults(&c);
  bool help;
  char err[256];
  CHECK_EQ_INT(tern_config_load(&c, 6, argv, &help, err, sizeof err), 0);
  CHECK(!help);
  CHECK_EQ_INT(c.inbox_max_envelopes, 7);      /* file */
  CHECK_EQ_INT(c.ws_ping_interval_ms, 6000);   /* env beats file */
  CHECK(c.limits_send_rate == 4.0);            /* flag beats env */
  CHECK_EQ_STR(c.listen, "127.0.0.1:9");       /* quotes stripped */
  CHECK(c.allow_insecure_test);                /* bare boolean flag */
  CHECK_EQ_INT(c.ws_idle_timeout_ms, 90000);   /* default */
  tern_config_free(&c);
  unsetenv("TERN_WS_PING_INTERVAL");
  unsetenv("TERN_LIMITS_SEND_RATE");

  char *bad1[] = {"ternd", "--no-such-flag", "1", NULL};
  tern_config_defaults(&c);
  CHECK(tern_config_load(&c, 3, bad1, &help, err, sizeof err) < 0);
  CHECK(strstr(err, "no-such-flag") != NULL);
  tern_config_free(&c);
  char *bad2[] = {"ternd", "--inbox-max-envelopes", "0", NULL}; /* below its bound */
  tern_config_defaults(&c);
  CHECK(tern_config_load(&c, 3, bad2, &help, err, sizeof err) < 0);
  tern_config_free(&c);
  char *bad3[] = {"ternd", "--ws-idle-timeout", "90", NULL}; /* no unit */
  tern_config_defaults(&c);
  CHECK(tern_config_load(&c, 3, bad3, &help, err, sizeof err) < 0);
  CHECK(strstr(err, "ws.idle_timeout") != NULL);
  tern_config_free(&c);
  unlink(path);
}

/* Writes text (len bytes) to a new temp file, loads it as --config and returns the rc. */
static int load_text(const char *text, size_t len, tern_config *c, char *err, size_t errlen) {
  char path[] = "/tmp/tern-cfg-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK(write(fd, text, len) == (ssize_t)len);
  close(fd);
  char *argv[] = {"ternd", "--config", path, NULL};
  bool help;
  tern_config_defaults(c);
  int rc = tern_config_load(c, 3, argv, &help, err, errlen);
  unlink(path);
  return rc;
}

TEST(config_file_lines) {
  tern_config c;
  char err[256];
  /* a value longer than any fixed line buffer stays one value (it was cut at 4,095 bytes and
   * its rest read as a line of its own) */
  size_t n = 6000;
  char *text = malloc(n + 64);
  int k = snprintf(text, n + 64, "data_dir = /tmp/");
  memset(text + k, 'd', n);
  memcpy(text + k + n, "\ninbox.max_envelopes = 9\n", 25);
  int rc = load_text(text, (size_t)k + n + 25, &c, err, sizeof err);
  if (rc) fprintf(stderr, "  %s\n", err);
  CHECK_EQ_INT(rc, 0);
  CHECK_EQ_INT(strlen(c.data_dir), 5 + n);
  CHECK_EQ_INT(c.inbox_max_envelopes, 9);
  tern_config_free(&c);
  free(text);
  /* a NUL byte is an error naming the line, not the end of the line */
  const char nul[] = "inbox.max_envelopes = 9\nlisten = 127.0.0.1:9\0junk\n";
  CHECK(load_text(nul, sizeof nul - 1, &c, err, sizeof err) < 0);
  CHECK(strstr(err, ":2: a NUL byte") != NULL);
  tern_config_free(&c);
}

static void cidr_lists(void) {
  tern_cidr_list l;
  char err[160];
  CHECK(tern_cidr_parse("127.0.0.0/8, ::1/128,10.1.2.3", &l, err, sizeof err) == 0);
  CHECK(l.n == 3);
  tern_ip ip;
  CHECK(tern_ip_parse("127.9.8.7", 9, &ip) && tern_cidr_match(&l, &ip));
  CHECK(tern_ip_parse("::ffff:127.0.0.1", 16, &ip) && tern_cidr_match(&l, &ip)); /* mapped v4 */
  CHECK(tern_ip_parse("::1", 3, &ip) && tern_cidr_match(&l, &ip));
  CHECK(tern_ip_parse("::2", 3, &ip) && !tern_cidr_match(&l, &ip));
  CHECK(tern_ip_parse("10.1.2.3", 8, &ip) && tern_cidr_match(&l, &ip));
  CHECK(tern_ip_parse("10.1.2.4", 8, &ip) && !tern_cidr_match(&l, &ip));
  CHECK(tern_ip_parse("128.0.0.1", 9, &ip) && !tern_cidr_match(&l, &ip));
  tern_cidr_free(&l);
  CHECK(tern_cidr_parse("10.0.0.0/33", &l, err, sizeof err) == -EINVAL && strstr(err, "10.0.0.0/33"));
  CHECK(tern_cidr_parse("fe80::/129", &l, err, sizeof err) == -EINVAL);
  CHECK(tern_cidr_parse("nope", &l, err, sizeof err) == -EINVAL);
  CHECK(tern_cidr_parse("", &l, err, sizeof err) == 0 && l.n == 0);
  CHECK(tern_cidr_parse("192.168.1.77/20", &l, err, sizeof err) == 0);
  CHECK(tern_ip_parse("192.168.15.255", 14, &ip) && tern_cidr_match(&l, &ip));
  CHECK(tern_ip_parse("192.168.16.0", 12, &ip) && !tern_cidr_match(&l, &ip));
  tern_cidr_free(&l);
  CHECK(tern_cidr_parse("0.0.0.0/0", &l, err, sizeof err) == 0);
  CHECK(tern_ip_parse("8.8.8.8", 7, &ip) && tern_cidr_match(&l, &ip));
  CHECK(tern_ip_parse("2001:db8::1", 11, &ip) && !tern_cidr_match(&l, &ip)); /* v4 /0 is not v6 */
  tern_cidr_free(&l);
  CHECK(tern_ip_of_peer("[::1]:8080", &ip) && !ip.v4 && ip.b[15] == 1);
  CHECK(tern_ip_of_peer("1.2.3.4:5", &ip) && ip.v4 && ip.b[15] == 4);
  CHECK(!tern_ip_parse("1.2.3.4\0x", 9, &ip)); /* a NUL never passes */
}

int main(void) {
  RUN(buf_basics);
  RUN(json_escaping);
  RUN(json_escaping_words);
  RUN(map_put_get_del);
  RUN(utf8);
  RUN(units);
  RUN(config_precedence);
  RUN(config_file_lines);
  RUN(cidr_lists);
  DONE();
}
