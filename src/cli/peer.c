/* peer.c: tern-e2e-peer, the C side of E2E interop tests. It reads one JSON command per line
 * on stdin and answers one JSON line on stdout, over one state directory at a time, with the
 * same e2e module the CLI uses; a test under node drives it against the web client's JS E2E
 * module. The line protocol is in docs/e2e.md. Nothing here touches the network. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cli/cli_int.h"

#define LINE_MAX_BYTES (8u << 20) /* longer lines are refused (an 8 MiB blob is plenty) */

typedef struct peer {
  tern_e2e *e; /* the open state, or NULL */
} peer;

static const char *str(const cJSON *o, const char *name) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(s) ? s->valuestring : NULL;
}

static cJSON *fail(const char *fmt, const char *arg) {
  cJSON *a = cJSON_CreateObject();
  cJSON_AddBoolToObject(a, "ok", false);
  char msg[512];
  snprintf(msg, sizeof msg, fmt, arg ? arg : "");
  cJSON_AddStringToObject(a, "error", msg);
  return a;
}

static cJSON *ok(void) {
  cJSON *a = cJSON_CreateObject();
  cJSON_AddBoolToObject(a, "ok", true);
  return a;
}

static void add_b64(cJSON *o, const char *name, const void *p, size_t n) {
  tern_buf b = {0};
  tern_e2e_b64_encode(p, n, &b);
  cJSON_AddStringToObject(o, name, b.len ? tern_buf_cstr(&b) : "");
  tern_buf_free(&b);
}

static int get_b64(const cJSON *o, const char *name, tern_buf *out) {
  const char *s = str(o, name);
  if (!s) return -EINVAL;
  return tern_e2e_b64_decode(s, strlen(s), out);
}

static void add_identity(cJSON *a, tern_e2e *e) {
  char ik[64];
  tern_e2e_identity_b64(e, ik, sizeof ik);
  cJSON_AddStringToObject(a, "user", tern_e2e_user(e));
  cJSON_AddStringToObject(a, "device_id", tern_e2e_device_id(e));
  cJSON_AddStringToObject(a, "identity_key", ik);
  cJSON_AddNumberToObject(a, "registration_id", tern_e2e_registration_id(e));
}

static cJSON *cmd_open(peer *p, const cJSON *q, bool init) {
  const char *dir = str(q, "dir");
  if (!dir) return fail("\"dir\" is required", NULL);
  tern_e2e_close(p->e);
  p->e = NULL;
  char err[256] = "";
  if (tern_e2e_open(dir, &p->e, err, sizeof err) < 0) return fail("%s", err);
  if (init) {
    const char *user = str(q, "user"), *dev = str(q, "device_id");
    if (!user || !dev) return fail("\"user\" and \"device_id\" are required", NULL);
    if (tern_e2e_init(p->e, user, dev) < 0) return fail("cannot make keys in %s", dir);
  } else if (!tern_e2e_has_identity(p->e)) {
    return fail("%s holds no identity (init first)", dir);
  }
  cJSON *a = ok();
  add_identity(a, p->e);
  return a;
}

static cJSON *cmd_publish(peer *p, const cJSON *q) {
  bool full = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(q, "full"));
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(q, "count");
  tern_buf b = {0};
  int rc = tern_e2e_keys_body(p->e, full, cJSON_IsNumber(n) ? (size_t)n->valuedouble : TERN_E2E_PREKEY_BATCH, &b);
  if (rc < 0) {
    tern_buf_free(&b);
    return fail("cannot make the keys body", NULL);
  }
  cJSON *a = ok();
  cJSON_AddItemToObject(a, "keys", cJSON_Parse(tern_buf_cstr(&b)));
  tern_buf_free(&b);
  return a;
}

static const char *change_name(tern_e2e_change c) {
  switch (c) {
    case TERN_E2E_FIRST: return "first";
    case TERN_E2E_NEW_DEVICE: return "new_device";
    case TERN_E2E_KEY_CHANGED: return "key_changed";
    default: return "same";
  }
}

static cJSON *cmd_bundle(peer *p, const cJSON *q) {
  const char *user = str(q, "user");
  const cJSON *dev = cJSON_GetObjectItemCaseSensitive(q, "device");
  if (!user || !cJSON_IsObject(dev)) return fail("\"user\" and \"device\" are required", NULL);
  char err[256] = "";
  tern_e2e_change ch;
  if (tern_e2e_process_bundle(p->e, user, dev, &ch, err, sizeof err) < 0) return fail("%s", err);
  cJSON *a = ok();
  cJSON_AddStringToObject(a, "change", change_name(ch));
  return a;
}

/* The plaintext to encrypt: "inner" (an object, written in the inner format with padding)
 * or "plaintext" (a string, sent byte for byte). */
static int plaintext_of(const cJSON *q, tern_buf *pt) {
  const cJSON *inner = cJSON_GetObjectItemCaseSensitive(q, "inner");
  if (cJSON_IsObject(inner)) {
    cJSON *copy = cJSON_Duplicate(inner, 1);
    if (!cJSON_GetObjectItemCaseSensitive(copy, "v")) cJSON_AddNumberToObject(copy, "v", 1);
    char *text = cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    tern_e2e_inner in;
    int rc = tern_e2e_inner_decode(text, strlen(text), &in);
    cJSON_free(text);
    if (rc < 0) return rc;
    tern_e2e_inner_encode(&in, pt);
    tern_e2e_inner_free(&in);
    return 0;
  }
  const char *s = str(q, "plaintext");
  if (!s) return -EINVAL;
  tern_buf_puts(pt, s);
  return 0;
}

static cJSON *cmd_encrypt(peer *p, const cJSON *q) {
  const char *user = str(q, "user"), *dev = str(q, "device_id");
  if (!user || !dev) return fail("\"user\" and \"device_id\" are required", NULL);
  tern_buf pt = {0}, ct = {0};
  if (plaintext_of(q, &pt) < 0) {
    tern_buf_free(&pt);
    return fail("\"inner\" (a v1 inner object) or \"plaintext\" is required", NULL);
  }
  int type = 0, rc = tern_e2e_encrypt(p->e, user, dev, pt.data ? pt.data : "", pt.len, &type, &ct);
  tern_buf_free(&pt);
  if (rc < 0) {
    tern_buf_free(&ct);
    return fail(rc == -ENOENT ? "no session with %s (send a bundle first)" : "cannot encrypt for %s", user);
  }
  cJSON *a = ok();
  cJSON_AddStringToObject(a, "type", type == TERN_E2E_CT_PREKEY ? "prekey" : "message");
  cJSON_AddStringToObject(a, "body", tern_buf_cstr(&ct));
  tern_buf_free(&ct);
  return a;
}

static cJSON *cmd_decrypt(peer *p, const cJSON *q) {
  const char *user = str(q, "user"), *dev = str(q, "device_id"), *type = str(q, "type"), *body = str(q, "body");
  if (!user || !dev || !type || !body) return fail("\"user\", \"device_id\", \"type\" and \"body\" are required", NULL);
  int t = strcmp(type, "prekey") == 0 ? TERN_E2E_CT_PREKEY : TERN_E2E_CT_MESSAGE;
  tern_buf pt = {0};
  char err[256] = "";
  tern_e2e_change ch;
  if (tern_e2e_decrypt(p->e, user, dev, t, body, strlen(body), &pt, &ch, err, sizeof err) < 0) {
    tern_buf_free(&pt);
    return fail("%s", err);
  }
  cJSON *a = ok();
  cJSON_AddStringToObject(a, "change", change_name(ch));
  cJSON *inner = cJSON_ParseWithLength(pt.data ? pt.data : "", pt.len);
  if (inner) cJSON_AddItemToObject(a, "inner", inner);
  /* The raw plaintext too, as base64: it may be anything the other side chose. */
  add_b64(a, "plaintext_b64", pt.data ? pt.data : "", pt.len);
  tern_buf_free(&pt);
  return a;
}

static size_t keys_of(const cJSON *arr, uint8_t (**out)[TERN_E2E_KEY_LEN]) {
  size_t n = 0, cap = (size_t)cJSON_GetArraySize(arr);
  *out = tern_calloc(cap ? cap : 1, TERN_E2E_KEY_LEN);
  const cJSON *k;
  cJSON_ArrayForEach(k, arr) {
    tern_buf b = {0};
    if (cJSON_IsString(k) && tern_e2e_b64_decode(k->valuestring, strlen(k->valuestring), &b) == 0 &&
        b.len == TERN_E2E_KEY_LEN)
      memcpy((*out)[n++], b.data, TERN_E2E_KEY_LEN);
    tern_buf_free(&b);
  }
  return n == cap ? n : 0; /* one bad key spoils the list */
}

static cJSON *cmd_safety(const cJSON *q) {
  const char *lu = str(q, "local_user"), *ru = str(q, "remote_user");
  if (!lu || !ru) return fail("\"local_user\" and \"remote_user\" are required", NULL);
  uint8_t(*lk)[TERN_E2E_KEY_LEN], (*rk)[TERN_E2E_KEY_LEN];
  size_t nl = keys_of(cJSON_GetObjectItemCaseSensitive(q, "local_keys"), &lk);
  size_t nr = keys_of(cJSON_GetObjectItemCaseSensitive(q, "remote_keys"), &rk);
  char digits[TERN_E2E_SAFETY_DIGITS + 1];
  int rc = tern_e2e_safety_number(lu, (const uint8_t(*)[TERN_E2E_KEY_LEN])lk, nl, ru,
                                  (const uint8_t(*)[TERN_E2E_KEY_LEN])rk, nr, digits);
  tern_free(lk);
  tern_free(rk);
  if (rc < 0) return fail("\"local_keys\" and \"remote_keys\" must be non-empty lists of base64 33-byte keys", NULL);
  cJSON *a = ok();
  cJSON_AddStringToObject(a, "number", digits);
  return a;
}

static cJSON *cmd_seal(const cJSON *q) {
  tern_buf data = {0}, ct = {0};
  if (get_b64(q, "data", &data) < 0) {
    tern_buf_free(&data);
    return fail("\"data\" (base64) is required", NULL);
  }
  uint8_t key[32], iv[12];
  int rc = tern_e2e_blob_seal(data.data ? data.data : "", data.len, key, iv, &ct);
  tern_buf_free(&data);
  if (rc < 0) {
    tern_buf_free(&ct);
    return fail("cannot seal", NULL);
  }
  cJSON *a = ok();
  add_b64(a, "key", key, sizeof key);
  add_b64(a, "iv", iv, sizeof iv);
  char sha[65];
  tern_e2e_sha256_hex(ct.data, ct.len, sha);
  cJSON_AddStringToObject(a, "sha256", sha);
  add_b64(a, "blob", ct.data, ct.len);
  tern_buf_free(&ct);
  return a;
}

static cJSON *cmd_unseal(const cJSON *q) {
  tern_buf blob = {0}, key = {0}, iv = {0}, out = {0};
  cJSON *a = NULL;
  if (get_b64(q, "blob", &blob) < 0 || get_b64(q, "key", &key) < 0 || key.len != 32 || get_b64(q, "iv", &iv) < 0 ||
      iv.len != 12) {
    a = fail("\"blob\", \"key\" (32 bytes) and \"iv\" (12 bytes) are required, base64", NULL);
  } else {
    tern_e2e_media m = {0};
    memcpy(m.key, key.data, 32);
    memcpy(m.iv, iv.data, 12);
    snprintf(m.sha256, sizeof m.sha256, "%s", str(q, "sha256") ? str(q, "sha256") : "");
    char err[160];
    if (tern_cli_e2e_open_blob(&m, blob.data ? blob.data : "", blob.len, &out, err, sizeof err) < 0) {
      a = fail("%s", err);
    } else {
      a = ok();
      add_b64(a, "data", out.data ? out.data : "", out.len);
    }
  }
  tern_buf_free(&blob);
  tern_buf_free(&key);
  tern_buf_free(&iv);
  tern_buf_free(&out);
  return a;
}

static cJSON *run(peer *p, const cJSON *q, bool *quit) {
  const char *cmd = str(q, "cmd");
  if (!cmd) return fail("\"cmd\" is required", NULL);
  if (strcmp(cmd, "quit") == 0) {
    *quit = true;
    return ok();
  }
  if (strcmp(cmd, "init") == 0) return cmd_open(p, q, true);
  if (strcmp(cmd, "open") == 0) return cmd_open(p, q, false);
  if (strcmp(cmd, "safety") == 0) return cmd_safety(q);
  if (strcmp(cmd, "seal") == 0) return cmd_seal(q);
  if (strcmp(cmd, "unseal") == 0) return cmd_unseal(q);
  if (!p->e || !tern_e2e_has_identity(p->e)) return fail("no state open (init or open first)", NULL);
  if (strcmp(cmd, "identity") == 0) {
    cJSON *a = ok();
    add_identity(a, p->e);
    return a;
  }
  if (strcmp(cmd, "publish") == 0) return cmd_publish(p, q);
  if (strcmp(cmd, "bundle") == 0) return cmd_bundle(p, q);
  if (strcmp(cmd, "encrypt") == 0) return cmd_encrypt(p, q);
  if (strcmp(cmd, "decrypt") == 0) return cmd_decrypt(p, q);
  if (strcmp(cmd, "has_session") == 0) {
    const char *user = str(q, "user"), *dev = str(q, "device_id");
    if (!user || !dev) return fail("\"user\" and \"device_id\" are required", NULL);
    cJSON *a = ok();
    cJSON_AddBoolToObject(a, "session", tern_e2e_has_session(p->e, user, dev));
    return a;
  }
  if (strcmp(cmd, "forget") == 0) {
    const char *user = str(q, "user"), *dev = str(q, "device_id");
    if (!user || !dev) return fail("\"user\" and \"device_id\" are required", NULL);
    tern_e2e_forget(p->e, user, dev);
    return ok();
  }
  return fail("unknown cmd %s", cmd);
}

int tern_cli_e2e_peer_main(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    printf("usage: tern-e2e-peer\n\nReads JSON commands, one per line, on stdin and answers each with one JSON line\n"
           "on stdout: init, open, identity, publish, bundle, encrypt, decrypt, has_session,\n"
           "forget, safety, seal, unseal, quit. See docs/e2e.md.\n");
    return 0;
  }
  tern_client_json_hooks();
  peer p = {0};
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  bool quit = false;
  while (!quit && (n = getline(&line, &cap, stdin)) >= 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    if (n == 0) continue;
    cJSON *a;
    if ((size_t)n > LINE_MAX_BYTES) {
      a = fail("line too long", NULL);
    } else {
      cJSON *q = cJSON_ParseWithLength(line, (size_t)n);
      a = cJSON_IsObject(q) ? run(&p, q, &quit) : fail("not a JSON object", NULL);
      const cJSON *tag = q ? cJSON_GetObjectItemCaseSensitive(q, "tag") : NULL;
      if (tag) cJSON_AddItemToObject(a, "tag", cJSON_Duplicate(tag, 1)); /* to match answers to commands */
      cJSON_Delete(q);
    }
    char *text = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    fputs(text, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    cJSON_free(text);
  }
  free(line);
  tern_e2e_close(p.e);
  return 0;
}
