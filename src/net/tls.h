/* tls: TLS as a transport of the byte stream (net/stream.h), on OpenSSL 3. The stream above
 * sees plaintext only, so the server, libtern-client and tern-bench speak TLS by passing
 * tern_stream_transport_tls and a tern_tls_config to tern_stream_open instead of the TCP table.
 *
 * A tern_tls is a context: the server's (certificate and key, reloadable while connections
 * stay up) or a client's (the CAs it trusts). PROTOCOL.md 13 fixes what the server offers:
 * TLS 1.2 and 1.3 only, ALPN http/1.1, Mozilla's "intermediate" cipher list. No session
 * resumption (no tickets, no cache): nothing is kept per client between connections.
 *
 * How bytes move. Ciphertext is read into the context's shared read buffer and handed to
 * OpenSSL through a BIO of ours that reads from that buffer and writes into the connection's
 * own queue, so an idle connection holds no buffer of ours; SSL_MODE_RELEASE_BUFFERS makes
 * OpenSSL release its record buffers between records too. Plaintext goes up with
 * tern_stream_input, or, while the owner has paused reading, is kept by the stream
 * (tern_stream_input_keep) until it resumes. Handshake records are written by the transport
 * itself. A plain HTTP request on a TLS port is answered with a plaintext 400 saying so, then
 * closed; any other handshake failure closes the connection (logged at debug).
 *
 * Ownership: the caller owns a tern_tls and frees it after every stream using it has closed.
 * A reload swaps the context used by new connections; connections already open keep the one
 * they started with (OpenSSL counts its references).
 *
 * Threads: a tern_tls may be shared by loops on several threads (reload and new connections
 * take its lock); each stream is used on its loop's thread only.
 *
 * Errors: negative errno and a reason in err (OpenSSL's error queue, rendered). */
#ifndef TERN_NET_TLS_H
#define TERN_NET_TLS_H

#include <errno.h>
#include <stddef.h>

#include "net/stream.h"

typedef struct tern_tls tern_tls;

/* How a client stream's reading ends when the server's certificate does not verify (against
 * the CAs or the host name): on_end gets this code; any other handshake failure is UV_EPROTO. */
#define TERN_TLS_ERR_UNTRUSTED (-EKEYREJECTED)

/* What a TLS stream is opened with (tern_stream_open's config); read during open only. */
typedef struct tern_tls_config {
  tern_tls *tls;    /* the context */
  const char *host; /* client: the server's name, for SNI and the certificate check (a name
                       or an IP address); NULL for a server stream */
} tern_tls_config;

extern const tern_stream_transport tern_stream_transport_tls;

/* A server context from PEM files: the certificate (chain) and its private key. */
int tern_tls_server_new(const char *cert_file, const char *key_file, tern_tls **out, char *err, size_t errlen);
/* Loads a new certificate and key; on success new connections use them. On failure the old
 * pair stays and err says why. */
int tern_tls_reload(tern_tls *t, const char *cert_file, const char *key_file, char *err, size_t errlen);
/* A client context that verifies servers against ca_file (PEM), or the system's CAs when
 * ca_file is NULL or empty. */
int tern_tls_client_new(const char *ca_file, tern_tls **out, char *err, size_t errlen);
void tern_tls_free(tern_tls *t);

/* The negotiated protocol version of a TLS stream ("TLSv1.3"), or NULL for another transport
 * or before the handshake. */
const char *tern_tls_version(tern_stream *s);

#endif
