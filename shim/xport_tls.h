/* xport_tls.h — the TLS transport: a TLS session's decrypted bytes as a
 * stream (shim/stream.h), for any library whose hooks (hooks/tls_*.c) say
 * how to write and what a return code means.
 *
 * A write with edits is staged: the wire bytes (the application's with the
 * edit applied) are copied into a buffer kept per session, and that buffer
 * is what the library gets — again, unchanged, when the application retries
 * after WANT_READ/WANT_WRITE (OpenSSL) or E_AGAIN/E_INTERRUPTED (GnuTLS),
 * since both libraries fail a retry whose pointer or length moved. The
 * library's count is mapped back to the application's with the stream's
 * mapping; a partial write (SSL_MODE_ENABLE_PARTIAL_WRITE, GnuTLS short
 * sends) that ends inside the inserted bytes is continued before returning,
 * so the application never sees 0. Writes without edits go to the library
 * as they are. The session's socket is marked TLS: its ciphertext is
 * counted, never parsed. */
#ifndef TRACESHIM_XPORT_TLS_H
#define TRACESHIM_XPORT_TLS_H

#include "stream.h"

enum ts_tls_rc { TS_TLS_AGAIN, TS_TLS_EOF, TS_TLS_ERROR };

/* One TLS library, as the transport needs it. */
struct ts_tls_lib {
	const char *name;
	/* What a return code <= 0 of a read/write means; error_type gets a
	 * short name for error.type. */
	enum ts_tls_rc (*classify)(void *sess, long ret, char *error_type, size_t cap);
	/* After the handshake: fills fd (or -1), server, version, cipher, ALPN,
	 * SNI. False while the handshake is not done. */
	bool (*info)(void *sess, struct ts_conn_info *c);
};

/* Writes len bytes (normalised: > 0 bytes written, else the library's
 * return code). */
typedef long (*ts_tls_write_fn)(void *sess, const void *buf, size_t len, void *arg);

/* The stream of a session (made on first use), or NULL: not traced. */
struct ts_stream *ts_tls_stream(void *sess, const struct ts_tls_lib *lib);
long ts_tls_write(struct ts_stream *st, void *sess, const struct ts_tls_lib *lib, const void *buf, size_t len,
		  ts_tls_write_fn wr, void *arg);
/* After a read that returned ret (> 0: bytes in buf). */
void ts_tls_read(struct ts_stream *st, void *sess, const struct ts_tls_lib *lib, const void *buf, long ret);
/* The application shuts the session down or frees it. */
void ts_tls_shutdown(void *sess);
void ts_tls_forget(void *sess);
/* A handshake that failed for good: an ERROR span. */
void ts_tls_handshake_failed(void *sess, const struct ts_tls_lib *lib, long ret, uint64_t start_ns);

/* ---- for the hooks: the glue every TLS hook shares ---- */

/* Non-zero while this thread is inside a TLS hook: a hook reached from
 * inside another (SSL_connect → SSL_do_handshake through the PLT) passes
 * straight through. */
extern __thread int ts_tls_depth TS_TLS;
/* The session's stream if this call is traced (depth raised: the hook ends
 * with one of the calls below), or NULL: make the real call only. */
struct ts_stream *ts_tls_enter(void *sess, const struct ts_tls_lib *lib);
/* A traced write: ts_tls_write with the guard raised, errno as the library
 * left it (*err, set by wr), depth lowered. */
long ts_tls_traced_write(struct ts_stream *st, void *sess, const struct ts_tls_lib *lib, const void *buf,
			 size_t len, ts_tls_write_fn wr, void *arg, int *err);
/* After a traced read: ts_tls_read with errno kept, depth lowered. */
void ts_tls_after_read(struct ts_stream *st, void *sess, const struct ts_tls_lib *lib, const void *buf, long r);
/* Around a handshake call: the start time (0: not traced); after it, a
 * failure becomes an ERROR span. */
uint64_t ts_tls_handshake_begin(void);
void ts_tls_handshake_end(void *sess, const struct ts_tls_lib *lib, long r, bool failed, uint64_t start);
/* SSL_shutdown / gnutls_bye, SSL_free / SSL_clear / gnutls_deinit: after
 * (shutdown) or before (free) the real call. */
void ts_tls_hook_shutdown(void *sess);
void ts_tls_hook_forget(void *sess);
/* Copies at most cap-1 bytes and a NUL. */
void ts_tls_copy(char *dst, size_t cap, const char *src, size_t n);

/* Set while this thread is inside a TLS library call for a traced session:
 * a socket the library writes or reads then is that session's (curl's own
 * BIO, GnuTLS push/pull functions give no fd). */
extern __thread struct ts_stream *ts_tls_calling TS_TLS;
void ts_tls_bind_socket(int fd, struct ts_fd *e);
/* At exit: every session's spans end. */
void ts_tls_release_all(void);

#endif
