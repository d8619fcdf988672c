/* tls_gnutls.c — GnuTLS (libgnutls.so.30: wget, libcurl-gnutls for git and
 * apt): the decrypted bytes of a session go through the TLS transport
 * (shim/xport_tls.h), like tls_openssl.c. Its retry rule after E_AGAIN /
 * E_INTERRUPTED is OpenSSL's (same data again, or NULL, 0), and a send may
 * take fewer bytes than asked: the transport keeps both. gnutls_record_send
 * calls gnutls_record_send2 through the PLT: a hook reached from inside
 * another passes straight through. */
#include <errno.h>
#include <stdio.h>
#include <sys/types.h>

#include "xport_tls.h"

typedef struct gnutls_session_int *gnutls_session_t;
typedef struct {
	unsigned char *data;
	unsigned int size;
} gnutls_datum_t;

#define LIBGNUTLS "libgnutls.so.30"
#define E_AGAIN (-28)
#define E_INTERRUPTED (-52)

TS_REAL_LIB(gnutls_record_send, ssize_t, (gnutls_session_t, const void *, size_t), LIBGNUTLS)
TS_REAL_LIB(gnutls_record_send2, ssize_t, (gnutls_session_t, const void *, size_t, size_t, unsigned), LIBGNUTLS)
TS_REAL_LIB(gnutls_record_send_range, ssize_t, (gnutls_session_t, const void *, size_t, const void *), LIBGNUTLS)
TS_REAL_LIB(gnutls_record_recv, ssize_t, (gnutls_session_t, void *, size_t), LIBGNUTLS)
TS_REAL_LIB(gnutls_record_recv_seq, ssize_t, (gnutls_session_t, void *, size_t, unsigned char *), LIBGNUTLS)
TS_REAL_LIB(gnutls_bye, int, (gnutls_session_t, int), LIBGNUTLS)
TS_REAL_LIB(gnutls_deinit, void, (gnutls_session_t), LIBGNUTLS)
TS_REAL_LIB(gnutls_handshake, int, (gnutls_session_t), LIBGNUTLS)
/* asked, never interposed */
TS_REAL_LIB(gnutls_transport_get_int, int, (gnutls_session_t), LIBGNUTLS)
TS_REAL_LIB(gnutls_protocol_get_version, int, (gnutls_session_t), LIBGNUTLS)
TS_REAL_LIB(gnutls_protocol_get_name, const char *, (int), LIBGNUTLS)
TS_REAL_LIB(gnutls_ciphersuite_get, const char *, (gnutls_session_t), LIBGNUTLS)
TS_REAL_LIB(gnutls_alpn_get_selected_protocol, int, (gnutls_session_t, gnutls_datum_t *), LIBGNUTLS)
TS_REAL_LIB(gnutls_server_name_get, int, (gnutls_session_t, void *, size_t *, unsigned *, unsigned), LIBGNUTLS)
TS_REAL_LIB(gnutls_error_is_fatal, int, (int), LIBGNUTLS)
TS_REAL_LIB(gnutls_strerror_name, const char *, (int), LIBGNUTLS)

/* GnuTLS says neither whether a session is a server's nor when it has none
 * of the names below: the role comes from the socket (accepted or not). */
static bool gtls_info(void *sess, struct ts_conn_info *c)
{
	if (real_gnutls_transport_get_int()) {
		int fd = real_gnutls_transport_get_int()(sess);
		/* a transport pointer (push/pull functions) is no fd of ours */
		c->fd = fd >= 0 && ts_fd_get(fd) ? fd : -1;
	}
	char name[256];
	size_t nlen = sizeof name;
	unsigned type = 0;
	if (real_gnutls_server_name_get() && real_gnutls_server_name_get()(sess, name, &nlen, &type, 0) == 0 &&
	    type == 1 /* GNUTLS_NAME_DNS */)
		ts_tls_copy(c->server_address, sizeof c->server_address, name, nlen);
	if (real_gnutls_protocol_get_version() && real_gnutls_protocol_get_name()) {
		const char *v = real_gnutls_protocol_get_name()(real_gnutls_protocol_get_version()(sess));
		if (v && !strncmp(v, "TLS", 3)) /* "TLS1.3" → "1.3" */
			ts_tls_copy(c->tls_version, sizeof c->tls_version, v + 3, strlen(v + 3));
	}
	const char *cs = real_gnutls_ciphersuite_get() ? real_gnutls_ciphersuite_get()(sess) : NULL;
	if (cs)
		ts_tls_copy(c->tls_cipher, sizeof c->tls_cipher, cs, strlen(cs));
	gnutls_datum_t d = {0};
	if (real_gnutls_alpn_get_selected_protocol() && real_gnutls_alpn_get_selected_protocol()(sess, &d) == 0 &&
	    d.data)
		ts_tls_copy(c->alpn, sizeof c->alpn, (const char *)d.data, d.size);
	return true;
}

static enum ts_tls_rc gtls_classify(void *sess, long ret, char *et, size_t cap)
{
	(void)sess;
	if (ret == 0)
		return TS_TLS_EOF;
	if (ret == E_AGAIN || ret == E_INTERRUPTED ||
	    (real_gnutls_error_is_fatal() && !real_gnutls_error_is_fatal()((int)ret)))
		return TS_TLS_AGAIN;
	const char *n = real_gnutls_strerror_name() ? real_gnutls_strerror_name()((int)ret) : NULL;
	ts_tls_copy(et, cap, n ? n : "tls_error", strlen(n ? n : "tls_error"));
	return TS_TLS_ERROR;
}

static const struct ts_tls_lib gnutls = {
	.name = "gnutls",
	.classify = gtls_classify,
	.info = gtls_info,
};

/* Cannot happen while libgnutls is loaded: said, and the call fails. */
static ssize_t unresolved(void)
{
	ts_warn("cannot resolve a function of %s", LIBGNUTLS);
	return -50; /* GNUTLS_E_INVALID_REQUEST */
}

struct wr_arg {
	bool two;
	size_t pad;
	unsigned flags;
	int err;
};

static long gtls_wr(void *sess, const void *buf, size_t len, void *argp)
{
	struct wr_arg *a = argp;
	ts_in_shim--;
	ssize_t r = a->two ? real_gnutls_record_send2()(sess, buf, len, a->pad, a->flags)
			   : real_gnutls_record_send()(sess, buf, len);
	a->err = errno;
	ts_in_shim++;
	return (long)r;
}

TS_EXPORT ssize_t gnutls_record_send(gnutls_session_t s, const void *data, size_t size)
{
	if (!real_gnutls_record_send())
		return unresolved();
	struct ts_stream *st = ts_tls_enter(s, &gnutls);
	if (!st)
		return real_gnutls_record_send()(s, data, size);
	struct wr_arg a = {.two = false};
	return (ssize_t)ts_tls_traced_write(st, s, &gnutls, data, size, gtls_wr, &a, &a.err);
}

TS_EXPORT ssize_t gnutls_record_send2(gnutls_session_t s, const void *data, size_t size, size_t pad, unsigned flags)
{
	if (!real_gnutls_record_send2())
		return unresolved();
	struct ts_stream *st = ts_tls_enter(s, &gnutls);
	if (!st)
		return real_gnutls_record_send2()(s, data, size, pad, flags);
	struct wr_arg a = {.two = true, .pad = pad, .flags = flags};
	return (ssize_t)ts_tls_traced_write(st, s, &gnutls, data, size, gtls_wr, &a, &a.err);
}

/* Length-hiding sends fix the record's size: nothing may be added to them.
 * The stream stops being traced (its parser would miss these bytes). */
TS_EXPORT ssize_t gnutls_record_send_range(gnutls_session_t s, const void *data, size_t size, const void *range)
{
	if (!real_gnutls_record_send_range())
		return unresolved();
	struct ts_stream *st = ts_tls_enter(s, &gnutls);
	if (st) {
		ts_stream_give_up(st);
		ts_tls_depth--;
	}
	return real_gnutls_record_send_range()(s, data, size, range);
}

static ssize_t traced_recv(gnutls_session_t s, void *data, size_t size, unsigned char *seq)
{
	struct ts_stream *st = ts_tls_enter(s, &gnutls);
	if (!st)
		return seq ? real_gnutls_record_recv_seq()(s, data, size, seq) : real_gnutls_record_recv()(s, data, size);
	struct ts_stream *outer = ts_tls_calling;
	ts_tls_calling = st;
	ssize_t r = seq ? real_gnutls_record_recv_seq()(s, data, size, seq) : real_gnutls_record_recv()(s, data, size);
	ts_tls_calling = outer;
	ts_tls_after_read(st, s, &gnutls, data, (long)r);
	return r;
}

TS_EXPORT ssize_t gnutls_record_recv(gnutls_session_t s, void *data, size_t size)
{
	if (!real_gnutls_record_recv())
		return unresolved();
	return traced_recv(s, data, size, NULL);
}

TS_EXPORT ssize_t gnutls_record_recv_seq(gnutls_session_t s, void *data, size_t size, unsigned char *seq)
{
	if (!real_gnutls_record_recv_seq())
		return unresolved();
	if (!seq)
		return real_gnutls_record_recv_seq()(s, data, size, seq);
	return traced_recv(s, data, size, seq);
}

TS_EXPORT int gnutls_bye(gnutls_session_t s, int how)
{
	if (!real_gnutls_bye())
		return (int)unresolved();
	int r = real_gnutls_bye()(s, how);
	ts_tls_hook_shutdown(s);
	return r;
}

TS_EXPORT void gnutls_deinit(gnutls_session_t s)
{
	if (!real_gnutls_deinit()) {
		unresolved();
		return;
	}
	ts_tls_hook_forget(s);
	real_gnutls_deinit()(s);
}

TS_EXPORT int gnutls_handshake(gnutls_session_t s)
{
	if (!real_gnutls_handshake())
		return (int)unresolved();
	uint64_t start = ts_tls_handshake_begin();
	int r = real_gnutls_handshake()(s);
	ts_tls_handshake_end(s, &gnutls, r, r < 0, start);
	return r;
}
