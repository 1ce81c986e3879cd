/* libFuzzer target for the WebSocket reader (src/net/ws.c).
 *
 * Input layout: byte 0 picks how the rest is cut into reads (so split headers, split
 * payloads and split multi-byte characters are covered), byte 1 picks max_message, and the
 * rest is the byte stream. The stream goes through a server-side reader and a client-side
 * reader, each fed like the server feeds it: append a chunk, read until NONE, keep the tail.
 *
 * Invariants checked (abort on violation, so libFuzzer reports a crash):
 * - a call never consumes more than it was given, and NONE with a whole frame available
 *   never happens (no stalls): if tern_ws_frame_need says the first frame is complete, the
 *   call consumes something or reports an ERROR;
 * - events are well formed: text is valid UTF-8, control payloads are <= 125 bytes, close
 *   codes are legal or 1005, messages are <= max_message, ERROR codes are 1002/1007/1009;
 * - after an ERROR, the reader repeats it and consumes nothing;
 * - every message and control payload survives writer → reader for the opposite side;
 * - tern_ws_mask agrees with a byte-at-a-time XOR at an input-chosen alignment and offset.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/util.h"
#include "net/ws.h"
#include "fuzz.h"

static const uint8_t KEY[4] = {0xa5, 0x3c, 0x0f, 0x71};

/* Writes ev's payload as a frame of the opposite direction and checks that a fresh reader of
 * that direction gives it back unchanged. */
static void echo_check(bool server_read, uint64_t max, const tern_ws_event *ev) {
  uint8_t op;
  if (ev->type == TERN_WS_EV_MESSAGE) op = ev->opcode;
  else if (ev->type == TERN_WS_EV_PING) op = TERN_WS_OP_PING;
  else if (ev->type == TERN_WS_EV_PONG) op = TERN_WS_OP_PONG;
  else return;
  /* the original reader got masked frames iff it is a server; the echo flips it */
  bool echo_server = !server_read;
  tern_buf b = {0};
  tern_ws_append_frame(&b, op, true, ev->data, ev->len, echo_server ? KEY : NULL);
  REQUIRE(tern_ws_frame_need((const uint8_t *)b.data, b.len) == b.len);
  tern_ws_reader r;
  tern_ws_reader_init(&r, echo_server, max);
  tern_ws_event back;
  size_t used = tern_ws_read(&r, (uint8_t *)b.data, b.len, &back);
  REQUIRE(used == b.len);
  REQUIRE(back.type == ev->type);
  REQUIRE(back.len == ev->len);
  REQUIRE(back.len == 0 || memcmp(back.data, ev->data, back.len) == 0);
  tern_ws_reader_free(&r);
  tern_buf_free(&b);
}

static void check_event(bool server, uint64_t max, const tern_ws_event *ev) {
  switch (ev->type) {
    case TERN_WS_EV_MESSAGE:
      REQUIRE(ev->opcode == TERN_WS_OP_TEXT || ev->opcode == TERN_WS_OP_BINARY);
      REQUIRE(ev->len <= max);
      REQUIRE(ev->data != NULL);
      if (ev->opcode == TERN_WS_OP_TEXT) REQUIRE(tern_utf8_valid(ev->data, ev->len));
      break;
    case TERN_WS_EV_PING:
    case TERN_WS_EV_PONG:
      REQUIRE(ev->len <= 125);
      break;
    case TERN_WS_EV_CLOSE:
      REQUIRE(ev->len <= 123);
      REQUIRE(ev->close_code == 1005 || (ev->close_code >= 1000 && ev->close_code <= 4999));
      REQUIRE(ev->close_code != 1005 || ev->len == 0);
      REQUIRE(tern_utf8_valid(ev->data, ev->len));
      break;
    case TERN_WS_EV_ERROR:
      REQUIRE(ev->close_code == 1002 || ev->close_code == 1007 || ev->close_code == 1009);
      REQUIRE(ev->reason != NULL);
      break;
    default:
      REQUIRE(0);
  }
  echo_check(server, max, ev);
}

static void run_reader(bool server, uint64_t max, const uint8_t *in, size_t len, size_t chunk) {
  tern_ws_reader r;
  tern_ws_reader_init(&r, server, max);
  tern_buf pending = {0};
  size_t pos = 0;
  bool failed = false;
  while (pos < len && !failed) {
    size_t n = len - pos < chunk ? len - pos : chunk;
    tern_buf_append(&pending, in + pos, n);
    pos += n;
    for (;;) {
      size_t need = tern_ws_frame_need((const uint8_t *)pending.data, pending.len);
      tern_ws_event ev;
      size_t used = tern_ws_read(&r, (uint8_t *)pending.data, pending.len, &ev);
      REQUIRE(used <= pending.len);
      if (ev.type == TERN_WS_EV_NONE) {
        /* a complete first frame must have been consumed; an incomplete one must not be */
        if (need && need <= pending.len) REQUIRE(used > 0);
        if (!need || need > pending.len) REQUIRE(used == 0);
        tern_buf_consume(&pending, used);
        break;
      }
      if (ev.type != TERN_WS_EV_ERROR) REQUIRE(used > 0 && need && need <= pending.len);
      check_event(server, max, &ev);
      if (ev.type == TERN_WS_EV_ERROR) {
        REQUIRE(r.failed);
        tern_ws_event again;
        REQUIRE(tern_ws_read(&r, (uint8_t *)pending.data, pending.len, &again) == 0);
        REQUIRE(again.type == TERN_WS_EV_ERROR && again.close_code == ev.close_code);
        failed = true;
        break;
      }
      tern_buf_consume(&pending, used);
    }
  }
  tern_buf_free(&pending);
  tern_ws_reader_free(&r);
}

static void check_mask(const uint8_t *in, size_t len, uint8_t sel) {
  size_t n = len > 300 ? 300 : len;
  uint8_t a[320], b[320];
  size_t align = sel & 7;
  uint64_t off = (uint64_t)(sel >> 3);
  memcpy(a + align, in, n);
  memcpy(b + align, in, n);
  tern_ws_mask(a + align, n, KEY, off);
  for (size_t i = 0; i < n; i++) b[align + i] ^= KEY[(off + i) & 3];
  REQUIRE(n == 0 || memcmp(a + align, b + align, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  static const size_t chunks[] = {0, 1, 2, 3, 5, 7, 11, 64};
  size_t chunk = chunks[data[0] & 7];
  /* max_message: small values make 1009 reachable; 0xff means "no practical limit" */
  uint64_t max = data[1] == 0xff ? UINT64_MAX : (uint64_t)data[1] * 16;
  const uint8_t *in = data + 2;
  size_t len = size - 2;
  if (!chunk) chunk = len ? len : 1;
  /* the reader unmasks in place, so it must get a writable copy; run_reader makes one */
  run_reader(true, max, in, len, chunk);
  run_reader(false, max, in, len, chunk);
  check_mask(in, len, data[0]);
  return 0;
}
