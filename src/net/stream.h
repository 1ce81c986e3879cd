/* stream: one buffered byte stream over a TCP socket, the only socket buffering in tern. The
 * server's connections (net/server.c), libtern-client's WebSocket connections and HTTP requests,
 * and tern-bench's XMPP connections all read and write through it. It knows no protocol.
 *
 * The per-loop context. A tern_stream_loop belongs to one uv_loop_t and holds what its streams
 * share: one read buffer (64 KiB) that every read lands in, the prepare handle that flushes the
 * streams with work pending once per loop iteration, and the timer that ends lingering closes.
 * A loop may carry several contexts (a test runs a server and a client on one loop); each is
 * used from its loop's thread only.
 *
 * Reading. Bytes are read into the shared buffer and handed to the owner's on_data, which
 * returns how many it consumed. Only the unconsumed tail is copied into the stream (its `in`
 * buffer) and handed back first, followed by the next bytes, on the next call. So a stream
 * that parses whole messages keeps no input buffer at all between messages. Reading can be
 * paused and resumed; resuming also hands a kept tail to on_data again, from the flush pass.
 *
 * Writing. Appends go to the stream's out buffer (tern_stream_out, _write, _write_buf) and cost
 * no system call. Once per loop iteration, the flush pass writes every stream that has output:
 * uv_try_write first, and a uv_write only for what the socket did not take at once, so most
 * flushes need neither a write request nor a callback. Everything appended during one iteration
 * leaves in one write. tern_stream_outbound counts the bytes not yet taken by the kernel, for
 * the owner's back-pressure.
 *
 * Idle memory. A stream with nothing pending holds no in or out allocation, no write request and
 * no timer: the struct (384 bytes on x86-64, 248 of them the uv_tcp_t) is all it costs.
 *
 * Closing, three ways:
 *   - tern_stream_close: at once; queued output is dropped.
 *   - tern_stream_shutdown: once everything queued is written, shut down the write side;
 *     reading goes on (the peer's EOF still reaches on_end).
 *   - tern_stream_linger: the graceful close for a refusal (an early 413) or a close frame:
 *     stop taking input, write what is queued, shut down the write side, then read and discard
 *     what the peer still sends until its EOF or for at most the given time, then close. The
 *     peer thus reads the answer instead of a connection reset.
 *
 * Ownership and lifetime. tern_stream_open allocates a stream; the stream owns its buffers and
 * its TCP handle. The owner gives up the stream by calling tern_stream_close or
 * tern_stream_linger (anywhere, its own callbacks included); the stream then calls on_close
 * once, later, from libuv's close callback, and frees itself right after it returns. So a
 * stream is never freed inside one of its own callbacks, and the pointer stays valid until
 * on_close. After close or linger no callback but on_close is made. Data handed to on_data
 * belongs to the stream and is valid during the call only.
 *
 * Errors: functions that can fail return 0 or a negative errno-style code (libuv's UV_E* are the
 * same numbers) and, where they take one, write a reason into the caller's buffer. A callback is
 * never called when the function that took it returned an error.
 *
 * Threads: everything runs on the context's loop thread.
 *
 * Transports. Bytes cross the socket through a tern_stream_transport, a const table of
 * operations; plain TCP (tern_stream_transport_tcp) is the only one today. The stream above it
 * only ever sees plaintext: owners never know which transport they run on.
 * How TLS plugs in (net/tls.c, OpenSSL with memory BIOs, not written yet), as a second table:
 *   - init: SSL_new on the SSL_CTX passed as the transport's config, a read BIO and a write
 *     BIO (BIO_s_mem), SSL_set_accept_state or _connect_state; SSL_MODE_RELEASE_BUFFERS so
 *     that an idle session keeps no record buffers (the budget is 8 KiB per idle connection).
 *     The SSL lives in tern_stream_set_transport_data.
 *   - read_start / read_stop: uv_read_start / uv_read_stop on tern_stream_handle, with
 *     tern_stream_read_buffer as the buffer. Ciphertext goes into the read BIO; SSL_read then
 *     decrypts into the same shared buffer (the ciphertext was copied out of it into the BIO)
 *     and the plaintext goes up with tern_stream_input; EOF, errors and close_notify with
 *     tern_stream_input_end. Handshake records SSL_read produces are written by the transport
 *     itself from the write BIO.
 *   - try_write: SSL_write the plaintext into the write BIO, then uv_try_write the ciphertext,
 *     keeping what the socket did not take in the transport's own queue (written with
 *     uv_write). It returns the plaintext bytes taken, or UV_EAGAIN while its own queue is
 *     still being written, so the stream's back-pressure keeps working.
 *   - write: the same for a whole buffer, reporting tern_stream_write_done once the ciphertext
 *     is written.
 *   - shutdown: SSL_shutdown (close_notify) written, then uv_shutdown.
 *   - close: SSL_free, then uv_close; tern_stream_closed from its callback.
 * The server, libtern-client and tern-bench then only pass another table to tern_stream_open.
 */
#ifndef TERN_NET_STREAM_H
#define TERN_NET_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"

typedef struct tern_stream_loop tern_stream_loop;
typedef struct tern_stream tern_stream;
typedef struct tern_stream_transport tern_stream_transport;

/* The owner's callbacks. The table is not copied: it must outlive the stream (make it static). */
typedef struct tern_stream_cbs {
  /* Bytes arrived: data[0..len) is the tail kept from earlier calls followed by the new bytes.
   * Returns how many it consumed (from the front); the rest is kept and handed back first next
   * time. data is writable (a WebSocket reader unmasks in place) and valid during the call
   * only. Required. */
  size_t (*on_data)(tern_stream *s, char *data, size_t len, void *owner);
  /* The stream cannot go on: reading ended (write false; err is UV_EOF when the peer closed
   * its side, else the read error) or a write failed (write true; queued output is dropped).
   * At most once per direction. After a read end, writing still works (the owner decides);
   * nothing more is read. Required: the owner normally closes here. */
  void (*on_end)(tern_stream *s, int err, bool write, void *owner);
  /* The stream's turn in this iteration's flush pass, after its output was handed to the
   * transport: outbound may have dropped. Owners pace producers here, or finish work they
   * deferred with tern_stream_kick (never inside another callback of theirs). Called for every
   * started stream that had a turn, except lingering ones. May be NULL. */
  void (*on_flush)(tern_stream *s, void *owner);
  /* The stream is closed and is freed when this returns: the last call. May be NULL. */
  void (*on_close)(tern_stream *s, void *owner);
} tern_stream_cbs;

/* ---- the per-loop context ---- */

/* Counters of a context since it was made, for metrics and tests: flushes against frames sent
 * show the coalescing (DESIGN.md: one write per connection per loop iteration). */
typedef struct tern_stream_stats {
  uint64_t flushes;   /* turns in which a stream handed output to its transport */
  uint64_t writes;    /* of those, the ones that needed a transport write (try_write fell short) */
  uint64_t bytes_in;  /* bytes handed to owners' on_data for the first time */
  uint64_t bytes_out; /* bytes handed to transports */
} tern_stream_stats;

/* Creates a context on loop. Never fails (aborts on out-of-memory). */
tern_stream_loop *tern_stream_loop_new(uv_loop_t *loop);
/* Closes the context's handles; its memory goes once they are closed and every stream of it has
 * called on_close (run the loop afterwards). Close or linger every stream first. */
void tern_stream_loop_free(tern_stream_loop *L);
uv_loop_t *tern_stream_loop_uv(const tern_stream_loop *L);
void tern_stream_loop_stats(const tern_stream_loop *L, tern_stream_stats *out);

/* ---- streams ---- */

/* The plain TCP transport. */
extern const tern_stream_transport tern_stream_transport_tcp;

/* Makes a stream on a fresh, unconnected TCP handle: accept into it (uv_accept) or connect it
 * (uv_tcp_connect) through tern_stream_handle, then call tern_stream_start. tp is a
 * transport and config its settings (NULL for TCP); cbs and owner as above. Returns 0 and *out,
 * or a negative code and a reason in err (nothing to close then). */
int tern_stream_open(tern_stream_loop *L, const tern_stream_transport *tp, const void *config,
                     const tern_stream_cbs *cbs, void *owner, tern_stream **out, char *err, size_t errlen);
/* The TCP handle, for accept, connect, bind, nodelay and peer names. Its data pointer is the
 * stream's: do not change it. */
uv_tcp_t *tern_stream_handle(tern_stream *s);
void *tern_stream_owner(const tern_stream *s);
/* The socket is connected: starts reading, and flushing what was queued before. Returns 0, or a
 * negative code and a reason (the owner then closes the stream). */
int tern_stream_start(tern_stream *s, char *err, size_t errlen);

/* ---- reading ---- */

/* Stops reading until tern_stream_resume (a consumer that is behind: a body sink writing to
 * disk, a handler answering the previous request). Idempotent; safe inside on_data. */
void tern_stream_pause(tern_stream *s);
/* Reads again, and, when a tail is kept, hands it to on_data again in this iteration's flush
 * pass (never from inside this call). Returns 0 or the code of a failed read start. */
int tern_stream_resume(tern_stream *s);
/* Bytes of unconsumed input kept by the stream. */
size_t tern_stream_buffered(const tern_stream *s);
/* Bytes of buffer memory the stream holds (input tail and output, allocated capacity): 0 while
 * idle. */
size_t tern_stream_held(const tern_stream *s);

/* ---- writing ---- */

/* The out buffer, for appending in place (tern_buf_printf, frame headers): the stream is
 * flushed in this iteration's pass. Bytes appended after close, linger, shutdown or a write
 * failure are dropped. Never NULL. */
tern_buf *tern_stream_out(tern_stream *s);
/* Appends a copy of p[0..n). */
void tern_stream_write(tern_stream *s, const void *p, size_t n);
/* Appends b's bytes and leaves b empty; when nothing else is queued, b's memory itself moves
 * into the stream, without a copy (for producers that build output in their own buffer). */
void tern_stream_write_buf(tern_stream *s, tern_buf *b);
/* Drops what was appended and not yet handed to the transport. What the transport has taken
 * is never cut, so the stream stays at a boundary of the owner's messages: every flush hands
 * everything queued to the transport (try_write, then one write for the rest). */
void tern_stream_drop_queued(tern_stream *s);
/* Bytes appended and not yet taken by the kernel (queued plus a write in flight). */
size_t tern_stream_outbound(const tern_stream *s);
/* Asks for on_flush in this iteration's flush pass, even with nothing to write. */
void tern_stream_kick(tern_stream *s);

/* ---- closing ---- */

/* Closes now: nothing more is read or written (queued output is dropped); on_close follows,
 * later. Idempotent; safe anywhere, the stream's own callbacks included. */
void tern_stream_close(tern_stream *s);
/* Shuts the write side down once everything queued is written. Reading goes on. */
void tern_stream_shutdown(tern_stream *s);
/* The lingering close: stop taking input (on_data is not called again; the kept tail is
 * dropped), write what is queued, shut down the write side, then discard what the peer sends
 * until its EOF or for at most ms milliseconds, then close; on_close follows. A stream not
 * started closes at once. Idempotent (the first deadline holds); safe in callbacks. */
void tern_stream_linger(tern_stream *s, int64_t ms);
/* Closed or closing (after tern_stream_close, a linger, or a failed open). */
bool tern_stream_is_closing(const tern_stream *s);

/* ---- the transport side ---- */

/* Operations on the socket below a stream. Every operation gets the stream; the transport's own
 * state hangs off tern_stream_transport_data. Input goes up with tern_stream_input and
 * tern_stream_input_end, write completion with tern_stream_write_done, the end of close with
 * tern_stream_closed; none of them from inside the operation that caused it. */
struct tern_stream_transport {
  const char *name; /* "tcp", for logs */
  /* Sets up a stream whose TCP handle is initialized. config is what the owner passed. */
  int (*init)(tern_stream *s, const void *config, char *err, size_t errlen);
  int (*read_start)(tern_stream *s);
  void (*read_stop)(tern_stream *s);
  /* Writes what can go at once: returns the bytes taken (0..n), UV_EAGAIN, or an error. */
  int (*try_write)(tern_stream *s, const char *p, size_t n);
  /* Takes over *b's bytes (leaving *b empty) and writes all of them; tern_stream_write_done
   * follows. One write at a time. On an error return *b is left as it was. */
  int (*write)(tern_stream *s, tern_buf *b);
  /* Shuts the write side down, after what was written. */
  int (*shutdown)(tern_stream *s);
  /* Releases the transport's state and closes the handle; tern_stream_closed follows. Also
   * called after a failed init, with whatever init left behind. */
  void (*close)(tern_stream *s);
};

void *tern_stream_transport_data(const tern_stream *s);
void tern_stream_set_transport_data(tern_stream *s, void *data);
/* The context's shared read buffer. A transport hands it to one read at a time. */
char *tern_stream_read_buffer(tern_stream *s, size_t *len);
/* Plaintext arrived (n > 0; data may be the shared read buffer). */
void tern_stream_input(tern_stream *s, char *data, size_t n);
/* Plaintext that arrived while the owner has reading paused: a transport that decodes a whole
 * read at once (TLS) cannot leave the rest in the socket. It is kept after the unconsumed
 * tail and handed to on_data when reading resumes. */
void tern_stream_input_keep(tern_stream *s, const char *data, size_t n);
/* Reading ended: UV_EOF or an error. */
void tern_stream_input_end(tern_stream *s, int err);
/* The write started by the transport's write operation completed (status 0 or an error). */
void tern_stream_write_done(tern_stream *s, int status);
/* The handle is closed: calls on_close and frees the stream. */
void tern_stream_closed(tern_stream *s);

#endif
