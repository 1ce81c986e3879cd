/* ws: our RFC 6455 codec, shared by the server (src/net) and the client library.
 *
 * Reading. A tern_ws_reader turns bytes into events, one event per call. It reads straight
 * from the caller's buffer (normally the loop's shared read buffer) and unmasks payloads in
 * place, so it needs a writable buffer. It never buffers a frame itself: tern_ws_read returns
 * how many bytes it consumed, and the caller keeps the unconsumed tail for the next call.
 * Only a fragmented message being reassembled is copied into reader->msg (owned by the
 * reader, freed by tern_ws_reader_free). A message larger than max_message is refused as
 * soon as a frame header announces it (event ERROR with close code 1009), before its payload
 * arrives. Text messages (and close reasons) are checked for valid UTF-8 once complete (1007).
 * Control frames may arrive between the fragments of a message and are reported at once.
 * After an ERROR the reader is dead: every later call reports the same ERROR and consumes
 * nothing. The reader does not track the close handshake: what to do with frames after a
 * CLOSE is the caller's business.
 *
 * Writing. tern_ws_append_frame appends one whole frame (header + payload) to a buffer; the
 * client side passes a 4-byte mask, the server passes NULL.
 */
#ifndef TERN_NET_WS_H
#define TERN_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

enum {
  TERN_WS_OP_CONT = 0x0,
  TERN_WS_OP_TEXT = 0x1,
  TERN_WS_OP_BINARY = 0x2,
  TERN_WS_OP_CLOSE = 0x8,
  TERN_WS_OP_PING = 0x9,
  TERN_WS_OP_PONG = 0xA,
};

/* Close codes used by tern (RFC 6455 section 7.4 plus the protocol's 4xxx). */
enum {
  TERN_WS_CLOSE_NORMAL = 1000,
  TERN_WS_CLOSE_GOING_AWAY = 1001,
  TERN_WS_CLOSE_PROTOCOL = 1002,
  TERN_WS_CLOSE_UNSUPPORTED = 1003,
  TERN_WS_CLOSE_NO_STATUS = 1005, /* never sent; reported when a close frame has no code */
  TERN_WS_CLOSE_BAD_DATA = 1007,
  TERN_WS_CLOSE_POLICY = 1008,
  TERN_WS_CLOSE_TOO_BIG = 1009,
  TERN_WS_CLOSE_INTERNAL = 1011,
};

typedef enum {
  TERN_WS_EV_NONE = 0, /* need more bytes */
  TERN_WS_EV_MESSAGE,  /* a complete text or binary message: opcode, data, len */
  TERN_WS_EV_PING,     /* data, len: the payload to echo in a pong */
  TERN_WS_EV_PONG,
  TERN_WS_EV_CLOSE,    /* close_code (1005 if none), data/len: the reason (valid UTF-8) */
  TERN_WS_EV_ERROR,    /* protocol violation: close with close_code; reason is static text */
} tern_ws_event_type;

typedef struct tern_ws_event {
  tern_ws_event_type type; /* what happened */
  uint8_t opcode;          /* MESSAGE: TERN_WS_OP_TEXT or TERN_WS_OP_BINARY */
  const uint8_t *data;     /* payload; points into the caller's buffer or reader->msg; valid
                              until the next tern_ws_read or until the caller drops its buffer */
  size_t len;              /* payload length */
  uint16_t close_code;     /* CLOSE: peer's code; ERROR: the code to close with */
  const char *reason;      /* ERROR: why, for logs */
} tern_ws_event;

/* About 48 bytes while idle: msg owns memory only while a fragmented message is in progress
 * (or until the next call after it was delivered). Treat the fields as private except failed. */
typedef struct tern_ws_reader {
  tern_buf msg;           /* reassembly of a fragmented message; freed at the next call after
                             it is delivered, so it costs nothing between messages */
  uint64_t max_message;   /* largest message (all fragments together) accepted; 0 allows only
                             empty messages, UINT64_MAX means no limit */
  const char *err_reason; /* the ERROR's static reason, repeated by later calls */
  uint16_t err_code;      /* the ERROR's close code, repeated by later calls */
  uint8_t msg_opcode;     /* opcode of the fragmented message in progress, 0 if none */
  bool server;            /* true: frames must be masked (client → server); false: must not be */
  bool failed;            /* an ERROR was reported; every later call reports it again */
} tern_ws_reader;

void tern_ws_reader_init(tern_ws_reader *r, bool server, uint64_t max_message);
void tern_ws_reader_free(tern_ws_reader *r);

/* Consumes bytes from data[0..len) and fills *ev with at most one event. Returns the number of
 * bytes consumed, which the caller drops from its buffer. A frame is consumed whole or not at
 * all: a frame whose header or payload is incomplete is left for the next call, with the
 * bytes before it. Non-final fragments produce no event, so one call consumes every complete
 * fragment it finds until it has an event or runs out of whole frames; ev->type NONE therefore
 * always means "nothing more can be done with these bytes, call again when more arrive" (the
 * count may still be > 0: fragments went into reader->msg). Call again while it returns an
 * event, since a buffer may hold several frames. On ERROR the count is the bytes consumed
 * before the offending frame; the caller should send a close with ev->close_code and stop.
 * The payload of a consumed masked frame is unmasked in place (data is modified); bytes left
 * unconsumed are never modified, so the caller may keep them as they are. */
size_t tern_ws_read(tern_ws_reader *r, uint8_t *data, size_t len, tern_ws_event *ev);

/* How many bytes the frame starting at data needs in total (header + payload), or 0 when
 * not even the header (mask key included) is complete yet. Lets the caller size its tail
 * buffer. Does not validate the frame; a length that does not fit a size_t gives SIZE_MAX. */
size_t tern_ws_frame_need(const uint8_t *data, size_t len);

/* Appends one frame. mask is NULL for server frames, else 4 bytes (client frames); the
 * payload is copied, then masked inside out, so the caller's payload is left untouched. */
void tern_ws_append_frame(tern_buf *out, uint8_t opcode, bool fin, const void *payload, size_t len,
                          const uint8_t *mask);
/* Writes the frame header for a payload of len bytes (len < 2^63) into out (at most 14 bytes,
 * mask key included); returns its size. Uses the shortest length encoding. The caller writes
 * the payload after it, masked with the same key when mask is not NULL. */
size_t tern_ws_frame_header(uint8_t out[14], uint8_t opcode, bool fin, uint64_t len, const uint8_t *mask);
/* Appends a close frame with code and a reason (NULL or a NUL-terminated UTF-8 string),
 * truncated to 123 bytes at a character boundary so the payload fits 125 bytes. Code 0 writes
 * a close frame with no payload at all (the peer sees 1005); reason is ignored then. */
void tern_ws_append_close(tern_buf *out, uint16_t code, const char *reason, const uint8_t *mask);
/* XORs data with mask, where data starts at byte offset `offset` of the payload (so a payload
 * may be masked in pieces). Its own inverse. Works a machine word at a time. */
void tern_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)). out gets 28 chars + NUL. */
void tern_ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
