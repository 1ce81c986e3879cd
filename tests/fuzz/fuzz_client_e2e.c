/* Fuzz target for what the E2E layer reads from others (src/client/e2ee.h): the first byte
 * picks the parser, the rest is its input.
 *   'i': a decrypted inner plaintext (tern_e2e_inner_decode), re-encoded and decoded again;
 *   'b': a key-directory device entry (tern_e2e_process_bundle), JSON from the server;
 *   'p' / 'm': a prekey or message ciphertext, base64 (tern_e2e_decrypt).
 * One device state in a temporary directory serves every input. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "client/client.h"
#include "client/e2ee.h"

static tern_e2e *g_e2e;
static char g_dir[] = "/tmp/tern-fuzz-e2e-XXXXXX";

/* Leaves no state behind in /tmp (the directory holds e2e.json and its lock only). */
static void cleanup(void) {
  char path[128];
  tern_e2e_close(g_e2e);
  g_e2e = NULL;
  snprintf(path, sizeof path, "%s/e2e.json", g_dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/lock", g_dir);
  unlink(path);
  rmdir(g_dir);
}

static void init(void) {
  char *dir = mkdtemp(g_dir);
  if (!dir) abort();
  atexit(cleanup);
  char err[256];
  if (tern_e2e_open(dir, &g_e2e, err, sizeof err) < 0) abort();
  tern_e2e_set_fsync(g_e2e, false);
  if (tern_e2e_init(g_e2e, "fuzz", "dev1") < 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_e2e) init();
  if (size < 1 || size > 65536) return 0;
  char mode = (char)data[0];
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  if (mode == 'i') {
    tern_e2e_inner in;
    if (tern_e2e_inner_decode(p, n, &in) == 0) {
      tern_buf b = {0};
      tern_e2e_inner_encode(&in, &b);
      tern_e2e_inner again;
      if (tern_e2e_inner_decode(b.data, b.len, &again) != 0) abort();
      if ((in.body == NULL) != (again.body == NULL) || (in.body && strcmp(in.body, again.body) != 0)) abort();
      if (in.has_media != again.has_media) abort();
      tern_e2e_inner_free(&again);
      tern_buf_free(&b);
      tern_e2e_inner_free(&in);
    }
  } else if (mode == 'b') {
    cJSON *j = cJSON_ParseWithLength(p, n);
    if (j) {
      char err[256];
      tern_e2e_change ch;
      if (tern_e2e_process_bundle(g_e2e, "peer", j, &ch, err, sizeof err) == 0) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "device_id");
        if (!tern_e2e_has_session(g_e2e, "peer", id->valuestring)) abort();
        tern_e2e_forget(g_e2e, "peer", id->valuestring);
      }
      cJSON_Delete(j);
    }
  } else if (mode == 'p' || mode == 'm') {
    tern_buf out = {0};
    char err[256];
    tern_e2e_decrypt(g_e2e, "peer", "d1", mode == 'p' ? TERN_E2E_CT_PREKEY : TERN_E2E_CT_MESSAGE, p, n, &out, NULL,
                     err, sizeof err);
    tern_buf_free(&out);
  }
  return 0;
}
