#define _GNU_SOURCE
/* libFuzzer target for the encrypted send's path through the server (PROTOCOL.md 11): a client
 * frame decoded with the server's v1.1 limits, and for a send with an `e2e` list, each device's
 * stored record (core/router.c's tern_router_put_e2e into the neutral envelope record) and the
 * `msg` envelope written from it. Each device's envelope must carry exactly its own ciphertext
 * (type and body as sent, and no plaintext body) and the media_ref, and be one JSON object. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "core/router.h"
#include "proto/event.h"
#include "proto/frame.h"
#include "store/envelope.h"
#include "fuzz.h"

static bool str_is(const cJSON *v, const char *s, size_t n) {
  return cJSON_IsString(v) && strlen(v->valuestring) == n && memcmp(v->valuestring, s, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* small limits, so that the fuzzer reaches them */
  static const tern_frame_limits lim = {.v1_1 = true, .e2e_max_ciphertext = 96, .e2e_max_devices = 8};
  tern_frame f;
  tern_frame_error err;
  if (tern_frame_decode_ex((const char *)data, size, &lim, &f, &err) < 0) return 0;
  if (f.type != TERN_FRAME_SEND || !f.e2e) {
    tern_frame_free(&f);
    return 0;
  }
  REQUIRE(f.ne2e >= 1 && f.ne2e <= 8);
  REQUIRE(!f.body && !f.media_id);
  tern_buf rec = {0}, out = {0};
  for (size_t i = 0; i < f.ne2e; i++) {
    const tern_frame_e2e *e = &f.e2e[i];
    REQUIRE(e->body_len <= 96 && e->body_len == strlen(e->body));
    tern_env_begin(&rec, TERN_ENV_MSG, TERN_ENV_F_RECEIPT, 1);
    tern_env_put_str(&rec, TERN_EF_MSG_ID, "m1");
    tern_env_put_str(&rec, TERN_EF_FROM, "alice");
    tern_env_put_str(&rec, TERN_EF_FROM_DEVICE, "d0");
    tern_env_put_str(&rec, f.group_id ? TERN_EF_GROUP_ID : TERN_EF_TO, f.group_id ? f.group_id : "bob");
    tern_router_put_e2e(&rec, e, f.media_ref);
    tern_env_view v;
    REQUIRE(tern_env_unpack((const uint8_t *)rec.data, rec.len, &v) == 0);
    REQUIRE(v.f[TERN_EF_E2E_BODY].n == e->body_len && memcmp(v.f[TERN_EF_E2E_BODY].p, e->body, e->body_len) == 0);
    /* as core/wsjson.c writes it */
    tern_envelope env = {.type = TERN_EV_MSG, .seq = i + 1, .ts = v.ts, .msg_id = v.f[TERN_EF_MSG_ID],
                         .from = v.f[TERN_EF_FROM], .from_device = v.f[TERN_EF_FROM_DEVICE], .to = v.f[TERN_EF_TO],
                         .group_id = v.f[TERN_EF_GROUP_ID], .media_ref = v.f[TERN_EF_MEDIA_REF]};
    env.e2e_type = v.f[TERN_EF_E2E_TYPE].n == 6 && memcmp(v.f[TERN_EF_E2E_TYPE].p, "prekey", 6) == 0
                       ? TERN_CIPHER_PREKEY : TERN_CIPHER_MESSAGE;
    env.e2e_body = v.f[TERN_EF_E2E_BODY];
    tern_buf_reset(&out);
    tern_envelope_encode(&out, &env);
    cJSON *j = cJSON_ParseWithLength(out.data, out.len);
    REQUIRE(j && cJSON_IsObject(j));
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, "e2e");
    REQUIRE(cJSON_IsObject(x));
    REQUIRE(str_is(cJSON_GetObjectItemCaseSensitive(x, "body"), e->body, e->body_len));
    const char *type = e->type == TERN_E2E_PREKEY ? "prekey" : "message";
    REQUIRE(str_is(cJSON_GetObjectItemCaseSensitive(x, "type"), type, strlen(type)));
    REQUIRE(!cJSON_GetObjectItemCaseSensitive(j, "body"));
    if (f.media_ref) REQUIRE(str_is(cJSON_GetObjectItemCaseSensitive(j, "media_ref"), f.media_ref, strlen(f.media_ref)));
    else REQUIRE(!cJSON_GetObjectItemCaseSensitive(j, "media_ref"));
    cJSON_Delete(j);
  }
  tern_buf_free(&rec);
  tern_buf_free(&out);
  tern_frame_free(&f);
  return 0;
}
