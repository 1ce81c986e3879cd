/* Fuzz target for push registrations: the PUT /v1/push body parser (JSON, provider rules, the
 * Web Push endpoint allow-list and key checks) and the stored form's parser, with a round trip
 * of whatever parses. Providers are configured once with a key made at start-up. */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/config.h"
#include "push/push.h"

static tern_push *g_push;
static uv_loop_t g_loop;

static void set(char **field, const char *v) {
  tern_free(*field);
  *field = tern_strdup(v);
}

static void init(void) {
  /* a P-256 key serves as the VAPID key and as the APNs .p8 key */
  char path[] = "/tmp/tern-fuzz-push-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) abort();
  FILE *f = fdopen(fd, "w");
  EVP_PKEY *k = EVP_EC_gen("P-256");
  if (!k || !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL)) abort();
  fclose(f);
  EVP_PKEY_free(k);
  static tern_config cfg;
  tern_config_defaults(&cfg);
  set(&cfg.push_webhook_url, "http://127.0.0.1:9/hook");
  set(&cfg.push_webhook_secret, "a secret that is long enough");
  set(&cfg.push_webpush_vapid_key_file, path);
  set(&cfg.push_webpush_subject, "mailto:ops@example.org");
  set(&cfg.push_webpush_allowed_hosts, "push.example.org,*.push.example.net,127.0.0.1");
  set(&cfg.push_apns_key_file, path);
  set(&cfg.push_apns_key_id, "ABCDEFGHIJ");
  set(&cfg.push_apns_team_id, "TEAMID1234");
  set(&cfg.push_apns_topic, "org.example.tern");
  uv_loop_init(&g_loop);
  char err[256];
  if (tern_push_open(&g_loop, &cfg, &g_push, err, sizeof err) < 0) {
    fprintf(stderr, "fuzz_push_reg: %s\n", err);
    abort();
  }
  unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_push) init();
  char err[256];
  tern_push_reg reg;
  if (tern_push_reg_parse(g_push, (const char *)data, size, &reg, err, sizeof err) == 0) {
    size_t n;
    char *s = tern_push_reg_serialize(&reg, &n);
    tern_push_reg back;
    if (tern_push_reg_deserialize(s, n, &back) != 0 || !tern_push_reg_equal(&reg, &back)) abort();
    tern_push_reg_free(&back);
    tern_free(s);
    tern_push_reg_free(&reg);
  } else if (!err[0]) {
    abort(); /* every refusal carries a sentence for the 400 */
  }
  if (tern_push_reg_deserialize((const char *)data, size, &reg) == 0) {
    size_t n;
    char *s = tern_push_reg_serialize(&reg, &n);
    tern_push_reg again;
    if (tern_push_reg_deserialize(s, n, &again) != 0 || !tern_push_reg_equal(&reg, &again)) abort();
    tern_push_reg_free(&again);
    tern_free(s);
    tern_push_reg_free(&reg);
  }
  return 0;
}
