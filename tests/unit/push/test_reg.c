/* test_push_reg: push registrations (src/push/reg.c): PUT /v1/push bodies for every provider,
 * the compact stored form and its round trip, the Web Push endpoint allow-list, and the address
 * classification behind the connect-time guard. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "base/alloc.h"
#include "base/config.h"
#include "base/log.h"
#include "push/jwt.h"
#include "push/push.h"
#include "push/push_int.h"
#include "t.h"

static tern_push *g_push;
static uv_loop_t g_loop;
static char g_dir[64];
static char g_p256dh[100], g_auth[40];

/* Replaces a string setting (defaults are allocated too). */
static void set_str(char **field, const char *v) {
  tern_free(*field);
  *field = tern_strdup(v);
}

static void write_p256(const char *path) {
  EVP_PKEY *k = tern_push_p256_generate();
  FILE *f = fopen(path, "w");
  PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
  fclose(f);
  EVP_PKEY_free(k);
}

static void setup(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/tern-test-push-XXXXXX");
  if (!mkdtemp(g_dir)) abort();
  char vapid[128], apns[128];
  snprintf(vapid, sizeof vapid, "%s/vapid.pem", g_dir);
  snprintf(apns, sizeof apns, "%s/AuthKey.p8", g_dir);
  write_p256(vapid);
  write_p256(apns);
  tern_config cfg;
  tern_config_defaults(&cfg);
  set_str(&cfg.push_webpush_vapid_key_file, vapid);
  set_str(&cfg.push_webpush_subject, "mailto:ops@example.org");
  set_str(&cfg.push_webpush_allowed_hosts, " push.example.com, *.push.example.net ,127.0.0.1,[::1]");
  set_str(&cfg.push_apns_key_file, apns);
  set_str(&cfg.push_apns_key_id, "KEY1234567");
  set_str(&cfg.push_apns_team_id, "TEAM123456");
  set_str(&cfg.push_apns_topic, "org.tern.app");
  set_str(&cfg.push_webhook_url, "http://127.0.0.1:9/hook");
  set_str(&cfg.push_webhook_secret, "0123456789abcdef0123");
  uv_loop_init(&g_loop);
  char err[256];
  if (tern_push_open(&g_loop, &cfg, &g_push, err, sizeof err) < 0) {
    fprintf(stderr, "open: %s\n", err);
    abort();
  }
  tern_config_free(&cfg);
  /* a browser's subscription keys */
  EVP_PKEY *ua = tern_push_p256_generate();
  uint8_t pub[65], auth[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  tern_push_p256_public(ua, pub);
  EVP_PKEY_free(ua);
  tern_buf b = {0};
  tern_push_b64url_encode(&b, pub, 65);
  snprintf(g_p256dh, sizeof g_p256dh, "%s", tern_buf_cstr(&b));
  tern_buf_reset(&b);
  tern_push_b64url_encode(&b, auth, 16);
  snprintf(g_auth, sizeof g_auth, "%s", tern_buf_cstr(&b));
  tern_buf_free(&b);
}

static int parse(const char *body, tern_push_reg *r, char *err) {
  return tern_push_reg_parse(g_push, body, strlen(body), r, err, 256);
}

static int webpush(const char *endpoint, char *err) {
  char body[1024];
  snprintf(body, sizeof body, "{\"provider\":\"webpush\",\"endpoint\":\"%s\",\"keys\":{\"p256dh\":\"%s\",\"auth\":\"%s\"}}",
           endpoint, g_p256dh, g_auth);
  tern_push_reg r;
  int rc = parse(body, &r, err);
  if (rc == 0) tern_push_reg_free(&r);
  return rc;
}

static void round_trip(const tern_push_reg *r, const char *want) {
  size_t n;
  char *s = tern_push_reg_serialize(r, &n);
  if (want) CHECK_EQ_STR(s, want);
  CHECK_EQ_INT(n, strlen(s));
  tern_push_reg back;
  CHECK_EQ_INT(tern_push_reg_deserialize(s, n, &back), 0);
  CHECK(tern_push_reg_equal(&back, r));
  tern_push_reg_free(&back);
  tern_free(s);
}

TEST(providers_parse_and_round_trip) {
  char err[256];
  tern_push_reg r;
  CHECK_EQ_INT(parse("{\"provider\":\"apns\",\"token\":\"ABCDEF0123456789ABCDEF0123456789\"}", &r, err), 0);
  CHECK_EQ_INT(r.provider, TERN_PUSH_APNS);
  CHECK_EQ_STR(r.token, "abcdef0123456789abcdef0123456789");
  round_trip(&r, "apns:abcdef0123456789abcdef0123456789");
  tern_push_reg_free(&r);

  CHECK_EQ_INT(parse("{\"provider\":\"webhook\",\"token\":\"gw:device:7\"}", &r, err), 0);
  round_trip(&r, "webhook:gw:device:7");
  tern_push_reg_free(&r);

  char body[1024], want[1024];
  snprintf(body, sizeof body,
           "{\"provider\":\"webpush\",\"endpoint\":\"https://a.push.example.net/s/x:y?z=1\",\"expirationTime\":null,"
           "\"keys\":{\"p256dh\":\"%s\",\"auth\":\"%s\"}}",
           g_p256dh, g_auth);
  CHECK_EQ_INT(parse(body, &r, err), 0);
  CHECK_EQ_INT(r.provider, TERN_PUSH_WEBPUSH);
  snprintf(want, sizeof want, "webpush:%s:%s:https://a.push.example.net/s/x:y?z=1", g_p256dh, g_auth);
  round_trip(&r, want);
  tern_push_reg other;
  tern_push_reg_copy(&other, &r);
  CHECK(tern_push_reg_equal(&other, &r));
  other.auth[0] ^= 1;
  CHECK(!tern_push_reg_equal(&other, &r)); /* new keys for the same endpoint is a new registration */
  tern_push_reg_free(&other);
  tern_push_reg_free(&r);
}

TEST(bad_bodies) {
  char err[256];
  tern_push_reg r;
  CHECK_EQ_INT(parse("[]", &r, err), -EINVAL);
  CHECK(strstr(err, "JSON object") != NULL);
  CHECK_EQ_INT(parse("{\"provider\":\"fcm\",\"token\":\"x\"}", &r, err), -EINVAL); /* not configured */
  CHECK_EQ_STR(err, "push provider fcm is not configured on this server");
  CHECK_EQ_INT(parse("{\"provider\":\"webhook\",\"token\":\"has space\"}", &r, err), -EINVAL);
  CHECK_EQ_INT(parse("{\"provider\":\"webhook\",\"token\":\"\"}", &r, err), -EINVAL);
  CHECK_EQ_INT(parse("{\"provider\":\"webhook\",\"token\":7}", &r, err), -EINVAL);
  CHECK_EQ_INT(parse("{\"provider\":\"apns\",\"token\":\"abcdef0123456789a\"}", &r, err), -EINVAL); /* odd */
  CHECK_EQ_INT(parse("{\"provider\":\"apns\",\"token\":\"abcd\"}", &r, err), -EINVAL);                /* short */
  CHECK(r.token == NULL);
}

TEST(endpoint_allow_list) {
  char err[256];
  CHECK_EQ_INT(webpush("https://push.example.com/a", err), 0);
  CHECK_EQ_INT(webpush("https://PUSH.Example.COM:8443/a", err), 0);
  CHECK_EQ_INT(webpush("https://x.y.push.example.net/a", err), 0);
  CHECK_EQ_INT(webpush("http://127.0.0.1:8080/a", err), 0);  /* listed exactly: a local stand-in */
  CHECK_EQ_INT(webpush("http://[::1]:8080/a", err), 0);      /* listed as [::1] */
  CHECK_EQ_INT(webpush("https://push.example.net/a", err), -EINVAL); /* "*.x" is subdomains only */
  CHECK_EQ_INT(webpush("http://push.example.com/a", err), -EINVAL);  /* public: https only */
  CHECK(strstr(err, "https") != NULL);
  CHECK_EQ_INT(webpush("https://127.0.0.2/a", err), -EINVAL);
  CHECK_EQ_INT(webpush("https://evilpush.example.com/a", err), -EINVAL);
  CHECK_EQ_INT(webpush("https://push.example.com@evil.example/a", err), -EINVAL);
  CHECK_EQ_INT(webpush("https://push.example.com:99999/a", err), -EINVAL);
  CHECK_EQ_INT(webpush("https:///a", err), -EINVAL);
  CHECK_EQ_INT(webpush("https://push.example.com/a b", err), -EINVAL);
}

TEST(url_and_addresses) {
  tern_push_url u;
  char err[128];
  tern_buf b = {0};
  CHECK_EQ_INT(tern_push_url_parse("https://Push.Example.com:443/x", &u, err, sizeof err), 0);
  tern_push_url_origin(&u, &b);
  CHECK_EQ_STR(tern_buf_cstr(&b), "https://push.example.com"); /* the VAPID aud: default port elided */
  tern_buf_reset(&b);
  CHECK_EQ_INT(tern_push_url_parse("http://[fe80::1]:8080/x", &u, err, sizeof err), 0);
  CHECK(u.ip && u.private_ip);
  tern_push_url_origin(&u, &b);
  CHECK_EQ_STR(tern_buf_cstr(&b), "http://[fe80::1]:8080");
  tern_buf_free(&b);
  const struct {
    const char *host;
    bool priv;
  } cases[] = {{"0x7f000001", true}, {"8.8.8.8", false},    {"100.64.0.1", true}, {"172.15.0.1", false},
               {"172.31.0.1", true}, {"224.0.0.1", true},   {"[2001:db8::1]", false}, {"[fc00::1]", true},
               {"[::]", true},       {"[64:ff9b::a00:1]", true}, {"a.localhost", true}, {"example.org", false}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char url[64];
    snprintf(url, sizeof url, "https://%s/", cases[i].host);
    CHECK_EQ_INT(tern_push_url_parse(url, &u, err, sizeof err), 0);
    if (u.private_ip != cases[i].priv) fprintf(stderr, "  host %s\n", cases[i].host);
    CHECK(u.private_ip == cases[i].priv);
  }
  struct sockaddr_in a4 = {.sin_family = AF_INET};
  inet_pton(AF_INET, "169.254.169.254", &a4.sin_addr);
  CHECK(tern_push_sockaddr_private((struct sockaddr *)&a4));
  inet_pton(AF_INET, "142.250.0.1", &a4.sin_addr);
  CHECK(!tern_push_sockaddr_private((struct sockaddr *)&a4));
  struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
  inet_pton(AF_INET6, "::ffff:10.0.0.1", &a6.sin6_addr);
  CHECK(tern_push_sockaddr_private((struct sockaddr *)&a6));
}

TEST(deserialize_refuses_garbage) {
  tern_push_reg r;
  const char *bad[] = {"", "fcm", "fcm:", "pigeon:x", "apns:xyz", "webpush:abc", "webpush:AAAA:BBBB:https://x/",
                       "webhook:a b"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK_EQ_INT(tern_push_reg_deserialize(bad[i], strlen(bad[i]), &r), -EINVAL);
}

TEST(metrics_lines) {
  tern_buf b = {0};
  tern_push_metrics_render(g_push, &b);
  const char *m = tern_buf_cstr(&b);
  CHECK(strstr(m, "tern_push_total{provider=\"apns\",result=\"ok\"} 0\n") != NULL);
  CHECK(strstr(m, "tern_push_total{provider=\"webpush\",result=\"invalid_token\"} 0\n") != NULL);
  CHECK(strstr(m, "tern_push_total{provider=\"webhook\",result=\"retry\"} 0\n") != NULL);
  CHECK(strstr(m, "provider=\"fcm\"") == NULL); /* not configured: no series */
  CHECK(strstr(m, "# ") == NULL);               /* HELP/TYPE are the caller's */
  tern_buf_free(&b);
  CHECK(tern_push_vapid_public_key(g_push) != NULL && strlen(tern_push_vapid_public_key(g_push)) == 87);
}

int main(void) {
  tern_log_set_level(TERN_LOG_WARN);
  setup();
  RUN(providers_parse_and_round_trip);
  RUN(bad_bodies);
  RUN(endpoint_allow_list);
  RUN(url_and_addresses);
  RUN(deserialize_refuses_garbage);
  RUN(metrics_lines);
  tern_push_close(g_push);
  uv_run(&g_loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&g_loop), 0);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
  DONE();
}
