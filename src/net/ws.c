/* ws: RFC 6455 framing. See ws.h for the contract; the notes here are about how.
 *
 * The reader never keeps a partial frame: it looks at the caller's bytes, and only when a
 * whole frame is there does it unmask the payload in place and consume it. That keeps the
 * per-connection state down to a few fields (no header buffer, no "bytes left" counters),
 * and makes feeding one byte at a time give exactly the events that one big read gives,
 * because every check runs on the same bytes in the same order whatever the split. The
 * checks that need only the first two bytes run before those that need the extended length,
 * so a bad frame is refused as early as possible (and an oversized one before its payload).
 */
#include "net/ws.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"

void tern_ws_reader_init(tern_ws_reader *r, bool server, uint64_t max_message) {
  memset(r, 0, sizeof *r);
  r->server = server;
  r->max_message = max_message;
}

void tern_ws_reader_free(tern_ws_reader *r) {
  tern_buf_free(&r->msg);
  r->msg_opcode = 0;
}

/* Records the error so later calls repeat it, and drops any partial message at once: the
 * connection is going away and should not hold its memory until then. */
static size_t fail(tern_ws_reader *r, tern_ws_event *ev, uint16_t code, const char *reason, size_t consumed) {
  r->failed = true;
  r->err_code = code;
  r->err_reason = reason;
  tern_buf_free(&r->msg);
  r->msg_opcode = 0;
  ev->type = TERN_WS_EV_ERROR;
  ev->close_code = code;
  ev->reason = reason;
  return consumed;
}

/* Codes a peer may put on the wire (RFC 6455 7.4.1 and the IANA registry): 1004-1006 and 1015
 * are reserved or "never sent", 1016-2999 are reserved for future RFCs, 3000-4999 belong to
 * libraries and applications (tern's 4xxx among them). */
static bool close_code_ok(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

static bool opcode_known(unsigned op) {
  return op == TERN_WS_OP_CONT || op == TERN_WS_OP_TEXT || op == TERN_WS_OP_BINARY || op == TERN_WS_OP_CLOSE ||
         op == TERN_WS_OP_PING || op == TERN_WS_OP_PONG;
}

/* Extended length bytes announced by the 7-bit length field. */
static size_t ext_len_size(uint8_t len7) { return len7 == 126 ? 2 : len7 == 127 ? 8 : 0; }

static uint64_t read_ext_len(const uint8_t *p, uint8_t len7) {
  if (len7 < 126) return len7;
  size_t n = ext_len_size(len7);
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

size_t tern_ws_frame_need(const uint8_t *data, size_t len) {
  if (len < 2) return 0;
  uint8_t len7 = data[1] & 0x7F;
  size_t hlen = 2 + ext_len_size(len7) + ((data[1] & 0x80) ? 4 : 0);
  if (len < hlen) return 0;
  uint64_t plen = read_ext_len(data + 2, len7);
  if (plen > (uint64_t)(SIZE_MAX - hlen)) return SIZE_MAX;
  return hlen + (size_t)plen;
}

/* Handles a complete control frame (payload already unmasked). */
static size_t control_frame(tern_ws_reader *r, uint8_t op, uint8_t *payload, size_t plen, size_t start, size_t end,
                            tern_ws_event *ev) {
  ev->data = payload;
  ev->len = plen;
  if (op == TERN_WS_OP_PING) {
    ev->type = TERN_WS_EV_PING;
    return end;
  }
  if (op == TERN_WS_OP_PONG) {
    ev->type = TERN_WS_EV_PONG;
    return end;
  }
  /* close: empty, or a 2-byte code then an optional UTF-8 reason */
  if (plen == 0) {
    ev->type = TERN_WS_EV_CLOSE;
    ev->close_code = TERN_WS_CLOSE_NO_STATUS;
    return end;
  }
  if (plen == 1) return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload", start);
  unsigned code = (unsigned)payload[0] << 8 | payload[1];
  if (!close_code_ok(code)) return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "invalid close code", start);
  if (!tern_utf8_valid(payload + 2, plen - 2))
    return fail(r, ev, TERN_WS_CLOSE_BAD_DATA, "close reason is not valid UTF-8", start);
  ev->type = TERN_WS_EV_CLOSE;
  ev->close_code = (uint16_t)code;
  ev->data = payload + 2;
  ev->len = plen - 2;
  return end;
}

size_t tern_ws_read(tern_ws_reader *r, uint8_t *data, size_t len, tern_ws_event *ev) {
  memset(ev, 0, sizeof *ev);
  if (r->failed) {
    ev->type = TERN_WS_EV_ERROR;
    ev->close_code = r->err_code;
    ev->reason = r->err_reason;
    return 0;
  }
  /* The previous call delivered a reassembled message from msg; its data was valid until now. */
  if (!r->msg_opcode && r->msg.data) tern_buf_free(&r->msg);

  size_t off = 0; /* start of the frame being looked at; everything before it is consumed */
  for (;;) {
    size_t avail = len - off;
    if (avail < 2) return off;
    const uint8_t *h = data + off;
    bool fin = h[0] & 0x80;
    uint8_t op = h[0] & 0x0F;
    bool masked = h[1] & 0x80;
    uint8_t len7 = h[1] & 0x7F;
    bool control = op & 0x08;

    /* checks on the first two bytes */
    if (h[0] & 0x70) return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "RSV bits set without an extension", off);
    if (!opcode_known(op)) return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "unknown opcode", off);
    if (r->server && !masked) return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "client frame is not masked", off);
    if (!r->server && masked) return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "server frame is masked", off);
    if (control && !fin) return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "fragmented control frame", off);
    if (op == TERN_WS_OP_CONT && !r->msg_opcode)
      return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "continuation frame without a message in progress", off);
    if ((op == TERN_WS_OP_TEXT || op == TERN_WS_OP_BINARY) && r->msg_opcode)
      return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "new message while a fragmented message is in progress", off);

    /* checks on the length; non-minimal encodings are accepted, as RFC 6455 5.2 allows */
    size_t ext = ext_len_size(len7);
    if (avail < 2 + ext) return off;
    uint64_t plen = read_ext_len(h + 2, len7);
    if (plen >> 63) return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "64-bit length with the top bit set", off);
    if (control && plen > 125) return fail(r, ev, TERN_WS_CLOSE_PROTOCOL, "control frame payload over 125 bytes", off);
    if (!control) {
      /* msg.len <= max_message always holds, so the subtraction cannot wrap */
      uint64_t so_far = op == TERN_WS_OP_CONT ? r->msg.len : 0;
      if (plen > r->max_message - so_far) return fail(r, ev, TERN_WS_CLOSE_TOO_BIG, "message too big", off);
    }

    /* the whole frame must be here before anything is consumed or modified */
    size_t hlen = 2 + ext + (masked ? 4 : 0);
    if (avail < hlen || avail - hlen < plen) return off;
    uint8_t *payload = data + off + hlen;
    size_t n = (size_t)plen; /* fits: it is <= avail */
    if (masked) tern_ws_mask(payload, n, h + 2 + ext, 0);
    size_t end = off + hlen + n;

    if (control) return control_frame(r, op, payload, n, off, end, ev);

    if (op != TERN_WS_OP_CONT && fin) { /* a whole message in one frame: zero-copy */
      if (op == TERN_WS_OP_TEXT && !tern_utf8_valid(payload, n))
        return fail(r, ev, TERN_WS_CLOSE_BAD_DATA, "text message is not valid UTF-8", off);
      ev->type = TERN_WS_EV_MESSAGE;
      ev->opcode = op;
      ev->data = payload;
      ev->len = n;
      return end;
    }

    /* a fragment: copy it aside; the size check above already bounded msg */
    if (op != TERN_WS_OP_CONT) r->msg_opcode = op;
    tern_buf_append(&r->msg, payload, n);
    if (!fin) { /* no event yet: go on with the next frame, so NONE keeps meaning "need bytes" */
      off = end;
      continue;
    }
    uint8_t mop = r->msg_opcode;
    /* all fragments empty leaves msg.data NULL; hand out "" rather than NULL */
    const uint8_t *whole = r->msg.data ? (const uint8_t *)r->msg.data : (const uint8_t *)"";
    /* UTF-8 is checked on the whole message, since a character may straddle fragments */
    if (mop == TERN_WS_OP_TEXT && !tern_utf8_valid(whole, r->msg.len))
      return fail(r, ev, TERN_WS_CLOSE_BAD_DATA, "text message is not valid UTF-8", off);
    r->msg_opcode = 0; /* msg stays allocated until the next call, which frees it */
    ev->type = TERN_WS_EV_MESSAGE;
    ev->opcode = mop;
    ev->data = whole;
    ev->len = r->msg.len;
    return end;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* writing */

void tern_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset) {
  size_t phase = (size_t)(offset & 3);
  size_t i = 0;
  /* bytes up to an 8-byte boundary, so the word loop below does aligned loads and stores */
  while (i < len && ((uintptr_t)(data + i) & 7)) {
    data[i] ^= mask[(phase + i) & 3];
    i++;
  }
  if (len - i >= 8) {
    /* the key repeated over a word, starting at the phase of byte i; i then advances by
     * multiples of 8, which keeps the phase, so one word serves the whole loop */
    uint8_t k8[8];
    for (size_t k = 0; k < 8; k++) k8[k] = mask[(phase + i + k) & 3];
    uint64_t k;
    memcpy(&k, k8, 8);
    for (; len - i >= 32; i += 32) {
      uint64_t w[4];
      memcpy(w, data + i, 32);
      w[0] ^= k;
      w[1] ^= k;
      w[2] ^= k;
      w[3] ^= k;
      memcpy(data + i, w, 32);
    }
    for (; len - i >= 8; i += 8) {
      uint64_t w;
      memcpy(&w, data + i, 8);
      w ^= k;
      memcpy(data + i, &w, 8);
    }
  }
  for (; i < len; i++) data[i] ^= mask[(phase + i) & 3];
}

size_t tern_ws_frame_header(uint8_t out[14], uint8_t opcode, bool fin, uint64_t len, const uint8_t *mask) {
  size_t n = 0;
  out[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
  uint8_t mbit = mask ? 0x80 : 0;
  if (len <= 125) {
    out[n++] = (uint8_t)(mbit | len);
  } else if (len <= 0xFFFF) {
    out[n++] = mbit | 126;
    out[n++] = (uint8_t)(len >> 8);
    out[n++] = (uint8_t)len;
  } else {
    out[n++] = mbit | 127;
    for (int shift = 56; shift >= 0; shift -= 8) out[n++] = (uint8_t)(len >> shift);
  }
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

void tern_ws_append_frame(tern_buf *out, uint8_t opcode, bool fin, const void *payload, size_t len,
                          const uint8_t *mask) {
  uint8_t hdr[14];
  size_t hl = tern_ws_frame_header(hdr, opcode, fin, len, mask);
  tern_buf_reserve(out, hl + len); /* one allocation for both */
  tern_buf_append(out, hdr, hl);
  size_t start = out->len;
  tern_buf_append(out, payload, len);
  if (mask) tern_ws_mask((uint8_t *)out->data + start, len, mask, 0);
}

void tern_ws_append_close(tern_buf *out, uint16_t code, const char *reason, const uint8_t *mask) {
  uint8_t p[125];
  size_t n = 0;
  if (code) {
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123) {
      rl = 123;
      /* reason[rl] is the first byte dropped; if it continues a character, drop that whole
       * character too, so the peer does not fail the close with 1007 */
      while (rl > 0 && ((uint8_t)reason[rl] & 0xC0) == 0x80) rl--;
    }
    if (rl) memcpy(p + 2, reason, rl);
    n = 2 + rl;
  }
  tern_ws_append_frame(out, TERN_WS_OP_CLOSE, true, p, n, mask);
}

void tern_ws_accept_key(const char *key, size_t key_len, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  size_t glen = sizeof guid - 1;
  /* real keys are 24 characters; a longer one (the caller's validation is not ours to
   * assume) goes to the heap rather than being truncated */
  uint8_t small[128];
  uint8_t *buf = key_len <= sizeof small - glen ? small : tern_malloc(key_len + glen);
  memcpy(buf, key, key_len);
  memcpy(buf + key_len, guid, glen);
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(buf, key_len + glen, md);
  if (buf != small) tern_free(buf);
  EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH); /* 28 chars and a NUL */
}
