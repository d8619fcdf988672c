/* tls_openssl.c — OpenSSL 3 (libssl.so.3): the decrypted bytes of a session
 * go through the TLS transport (shim/xport_tls.h). No OpenSSL header or
 * library is needed to build: the types are opaque here and every function
 * is resolved at run time, from libssl itself when it was loaded with local
 * scope (Python's _ssl). A process that never loads libssl never calls any
 * of these. Each hook: the real function, the work in xport_tls.c, errno as
 * the library left it. A TLS hook reached from inside another (SSL_connect
 * calling SSL_do_handshake through the PLT) passes straight through. */
#include <errno.h>
#include <stdio.h>

#include "xport_tls.h"

typedef struct ssl_st SSL;
typedef struct ssl_cipher_st SSL_CIPHER;

#define LIBSSL "libssl.so.3"
#define LIBCRYPTO "libcrypto.so.3"

enum { ERR_NONE, ERR_SSL, ERR_WANT_READ, ERR_WANT_WRITE, ERR_WANT_X509, ERR_SYSCALL, ERR_ZERO_RETURN };

TS_REAL_LIB(SSL_write, int, (SSL *, const void *, int), LIBSSL)
TS_REAL_LIB(SSL_write_ex, int, (SSL *, const void *, size_t, size_t *), LIBSSL)
TS_REAL_LIB(SSL_read, int, (SSL *, void *, int), LIBSSL)
TS_REAL_LIB(SSL_read_ex, int, (SSL *, void *, size_t, size_t *), LIBSSL)
TS_REAL_LIB(SSL_peek, int, (SSL *, void *, int), LIBSSL)
TS_REAL_LIB(SSL_peek_ex, int, (SSL *, void *, size_t, size_t *), LIBSSL)
TS_REAL_LIB(SSL_shutdown, int, (SSL *), LIBSSL)
TS_REAL_LIB(SSL_free, void, (SSL *), LIBSSL)
TS_REAL_LIB(SSL_clear, int, (SSL *), LIBSSL)
TS_REAL_LIB(SSL_do_handshake, int, (SSL *), LIBSSL)
TS_REAL_LIB(SSL_connect, int, (SSL *), LIBSSL)
TS_REAL_LIB(SSL_accept, int, (SSL *), LIBSSL)
/* asked, never interposed */
TS_REAL_LIB(SSL_get_error, int, (const SSL *, int), LIBSSL)
TS_REAL_LIB(SSL_get_fd, int, (const SSL *), LIBSSL)
TS_REAL_LIB(SSL_is_server, int, (const SSL *), LIBSSL)
TS_REAL_LIB(SSL_is_init_finished, int, (const SSL *), LIBSSL)
TS_REAL_LIB(SSL_get_servername, const char *, (const SSL *, int), LIBSSL)
TS_REAL_LIB(SSL_get0_alpn_selected, void, (const SSL *, const unsigned char **, unsigned *), LIBSSL)
TS_REAL_LIB(SSL_get_version, const char *, (const SSL *), LIBSSL)
TS_REAL_LIB(SSL_get_current_cipher, const SSL_CIPHER *, (const SSL *), LIBSSL)
TS_REAL_LIB(SSL_CIPHER_standard_name, const char *, (const SSL_CIPHER *), LIBSSL)
TS_REAL_LIB(ERR_peek_error, unsigned long, (void), LIBCRYPTO)
TS_REAL_LIB(ERR_reason_error_string, const char *, (unsigned long), LIBCRYPTO)

/* ---- what the transport asks ------------------------------------------------------ */

/* "TLSv1.3" → "1.3" (semantic conventions' tls.protocol.version). */
static void version_of(const char *v, char *out, size_t cap)
{
	if (!strncmp(v, "TLSv", 4)) {
		v += 4;
		if (!strcmp(v, "1"))
			v = "1.0";
	}
	ts_tls_copy(out, cap, v, strlen(v));
}

static bool ossl_info(void *sess, struct ts_conn_info *c)
{
	SSL *ssl = sess;
	if (real_SSL_get_fd())
		c->fd = real_SSL_get_fd()(ssl);
	if (real_SSL_is_server())
		c->server = real_SSL_is_server()(ssl) == 1;
	const char *sni = real_SSL_get_servername() ? real_SSL_get_servername()(ssl, 0) : NULL;
	if (sni)
		ts_tls_copy(c->server_address, sizeof c->server_address, sni, strlen(sni));
	if (!real_SSL_is_init_finished() || !real_SSL_is_init_finished()(ssl))
		return false;
	const char *v = real_SSL_get_version() ? real_SSL_get_version()(ssl) : NULL;
	if (v)
		version_of(v, c->tls_version, sizeof c->tls_version);
	const SSL_CIPHER *ci = real_SSL_get_current_cipher() ? real_SSL_get_current_cipher()(ssl) : NULL;
	const char *cn = ci && real_SSL_CIPHER_standard_name() ? real_SSL_CIPHER_standard_name()(ci) : NULL;
	if (cn)
		ts_tls_copy(c->tls_cipher, sizeof c->tls_cipher, cn, strlen(cn));
	const unsigned char *alpn = NULL;
	unsigned alen = 0;
	if (real_SSL_get0_alpn_selected())
		real_SSL_get0_alpn_selected()(ssl, &alpn, &alen);
	if (alpn)
		ts_tls_copy(c->alpn, sizeof c->alpn, (const char *)alpn, alen);
	return true;
}

/* SSL_get_error only peeks at the error queue: the application's own call
 * afterwards sees the same. */
static enum ts_tls_rc ossl_classify(void *sess, long ret, char *et, size_t cap)
{
	int saved = errno;
	int e = real_SSL_get_error() ? real_SSL_get_error()(sess, (int)ret) : ERR_SSL;
	enum ts_tls_rc rc = TS_TLS_ERROR;
	const char *name = "tls_error";
	switch (e) {
	case ERR_ZERO_RETURN:
		rc = TS_TLS_EOF;
		break;
	case ERR_SYSCALL: {
		const char *n = saved ? strerrorname_np(saved) : NULL;
		name = n ? n : "unexpected_eof";
		break;
	}
	case ERR_SSL: {
		unsigned long code = real_ERR_peek_error() ? real_ERR_peek_error()() : 0;
		const char *r = code && real_ERR_reason_error_string() ? real_ERR_reason_error_string()(code) : NULL;
		if (r)
			name = r;
		break;
	}
	default: /* WANT_READ, WANT_WRITE, WANT_X509_LOOKUP, WANT_CONNECT, …: try again */
		rc = TS_TLS_AGAIN;
	}
	ts_tls_copy(et, cap, name, strlen(name));
	errno = saved;
	return rc;
}

static const struct ts_tls_lib openssl = {
	.name = "openssl",
	.classify = ossl_classify,
	.info = ossl_info,
};

/* ---- the hooks ------------------------------------------------------------------- */

/* Cannot happen while libssl is loaded (the application called into it):
 * said out loud, and the call fails rather than crash. */
static int unresolved(const char *name)
{
	ts_warn("cannot resolve %s in %s", name, LIBSSL);
	errno = ENOSYS;
	return -1;
}

struct wr_arg {
	int ex;
	size_t *written;
	int err; /* errno right after the library call */
};

/* The library call is the application's: the shim's guard is down for it,
 * so the socket hooks under it count (and bind) the ciphertext. */
static long ossl_wr(void *sess, const void *buf, size_t len, void *argp)
{
	struct wr_arg *a = argp;
	long r;
	ts_in_shim--;
	if (a->ex) {
		size_t w = 0;
		int ok = real_SSL_write_ex()(sess, buf, len, &w);
		r = ok == 1 ? (long)w : 0;
		if (a->written && ok != 1)
			*a->written = w;
	} else {
		r = real_SSL_write()(sess, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	}
	a->err = errno;
	ts_in_shim++;
	return r;
}

TS_EXPORT int SSL_write(SSL *ssl, const void *buf, int num)
{
	if (!real_SSL_write())
		return unresolved("SSL_write");
	struct ts_stream *st = num > 0 ? ts_tls_enter(ssl, &openssl) : NULL;
	if (!st)
		return real_SSL_write()(ssl, buf, num);
	struct wr_arg a = {.ex = 0};
	return (int)ts_tls_traced_write(st, ssl, &openssl, buf, (size_t)num, ossl_wr, &a, &a.err);
}

TS_EXPORT int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)
{
	if (!real_SSL_write_ex())
		return unresolved("SSL_write_ex");
	struct ts_stream *st = num > 0 ? ts_tls_enter(ssl, &openssl) : NULL;
	if (!st)
		return real_SSL_write_ex()(ssl, buf, num, written);
	struct wr_arg a = {.ex = 1, .written = written};
	long r = ts_tls_traced_write(st, ssl, &openssl, buf, num, ossl_wr, &a, &a.err);
	if (r > 0) {
		if (written)
			*written = (size_t)r;
		return 1;
	}
	return (int)r;
}

/* Reads: ts_tls_calling lets the socket hooks under the library bind the
 * session's socket. */
TS_EXPORT int SSL_read(SSL *ssl, void *buf, int num)
{
	if (!real_SSL_read())
		return unresolved("SSL_read");
	struct ts_stream *st = ts_tls_enter(ssl, &openssl);
	if (!st)
		return real_SSL_read()(ssl, buf, num);
	struct ts_stream *outer = ts_tls_calling;
	ts_tls_calling = st;
	int r = real_SSL_read()(ssl, buf, num);
	ts_tls_calling = outer;
	ts_tls_after_read(st, ssl, &openssl, buf, r);
	return r;
}

TS_EXPORT int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)
{
	if (!real_SSL_read_ex())
		return unresolved("SSL_read_ex");
	struct ts_stream *st = ts_tls_enter(ssl, &openssl);
	if (!st)
		return real_SSL_read_ex()(ssl, buf, num, readbytes);
	struct ts_stream *outer = ts_tls_calling;
	ts_tls_calling = st;
	size_t got = 0;
	int ok = real_SSL_read_ex()(ssl, buf, num, &got);
	ts_tls_calling = outer;
	if (readbytes)
		*readbytes = got;
	ts_tls_after_read(st, ssl, &openssl, buf, ok == 1 ? (long)got : 0);
	return ok;
}

/* Peeks never advance a parser: they are passed on untouched. */
TS_EXPORT int SSL_peek(SSL *ssl, void *buf, int num)
{
	if (!real_SSL_peek())
		return unresolved("SSL_peek");
	return real_SSL_peek()(ssl, buf, num);
}

TS_EXPORT int SSL_peek_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)
{
	if (!real_SSL_peek_ex())
		return unresolved("SSL_peek_ex");
	return real_SSL_peek_ex()(ssl, buf, num, readbytes);
}

TS_EXPORT int SSL_shutdown(SSL *ssl)
{
	if (!real_SSL_shutdown())
		return unresolved("SSL_shutdown");
	int r = real_SSL_shutdown()(ssl);
	ts_tls_hook_shutdown(ssl);
	return r;
}

/* The end of a session (SSL_clear also runs inside SSL_new, on a session
 * we never saw: a lookup that finds nothing). */
TS_EXPORT void SSL_free(SSL *ssl)
{
	if (!real_SSL_free()) {
		unresolved("SSL_free");
		return;
	}
	ts_tls_hook_forget(ssl);
	real_SSL_free()(ssl);
}

TS_EXPORT int SSL_clear(SSL *ssl)
{
	if (!real_SSL_clear())
		return unresolved("SSL_clear");
	ts_tls_hook_forget(ssl);
	return real_SSL_clear()(ssl);
}

static int handshake(SSL_do_handshake_fn f, SSL *ssl)
{
	uint64_t start = ts_tls_handshake_begin();
	int r = f(ssl);
	ts_tls_handshake_end(ssl, &openssl, r, r <= 0, start);
	return r;
}

TS_EXPORT int SSL_do_handshake(SSL *ssl)
{
	if (!real_SSL_do_handshake())
		return unresolved("SSL_do_handshake");
	return handshake(real_SSL_do_handshake(), ssl);
}

TS_EXPORT int SSL_connect(SSL *ssl)
{
	if (!real_SSL_connect())
		return unresolved("SSL_connect");
	return handshake(real_SSL_connect(), ssl);
}

TS_EXPORT int SSL_accept(SSL *ssl)
{
	if (!real_SSL_accept())
		return unresolved("SSL_accept");
	return handshake(real_SSL_accept(), ssl);
}
