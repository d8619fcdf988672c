/* xport_socket.c — the socket transport (see io.h, stream.h): plaintext
 * TCP streams hang on their fd entry. A write with edits goes out in one
 * sendmsg with the edit bytes spliced in; the kernel's count is mapped back
 * to the application's buffer by the stream (ts_stream_taken):
 *
 *   kernel took            the application sees
 *   up to the edit         n, the edit is planned again on the re-send
 *   into the edit's bytes  the bytes before it (or -1 EAGAIN/EINTR when
 *                          none): the rest of the edit goes first next time
 *   past the edit          n minus the inserted bytes (plus replaced ones)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "stream.h"
#include "xport_tls.h"

TS_REAL(send, ssize_t, (int, const void *, size_t, int))
TS_REAL(write, ssize_t, (int, const void *, size_t))
TS_REAL(writev, ssize_t, (int, const struct iovec *, int))
TS_REAL(sendto, ssize_t, (int, const void *, size_t, int, const struct sockaddr *, socklen_t))
TS_REAL(sendmsg, ssize_t, (int, const struct msghdr *, int))

ssize_t ts_out_repeat(int fd, const struct iovec *iov, int iovcnt, const struct ts_out_call *c)
{
	switch (c->kind) {
	case TS_OUT_SEND:
		return real_send()(fd, iov[0].iov_base, iov[0].iov_len, c->flags);
	case TS_OUT_WRITE:
		return real_write()(fd, iov[0].iov_base, iov[0].iov_len);
	case TS_OUT_WRITEV:
		return real_writev()(fd, iov, iovcnt);
	case TS_OUT_SENDTO:
		return real_sendto()(fd, iov[0].iov_base, iov[0].iov_len, c->flags, c->to, c->tolen);
	case TS_OUT_SENDMSG:
		return real_sendmsg()(fd, c->msg, c->flags);
	}
	errno = EINVAL;
	return -1;
}

/* The first bytes moving on a non-blocking connect's socket mean it connected. */
static void settle_connect(int fd, struct ts_fd *e, ssize_t n, int err)
{
	if (TS_LIKELY(atomic_load_explicit(&e->kind, memory_order_relaxed) != TS_FD_CONNECTING))
		return;
	if (n >= 0)
		ts_fd_connect_done(fd, e, 0);
	else if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR)
		ts_fd_connect_done(fd, e, err == ENOTCONN ? ECONNREFUSED : err);
}

/* Undecided or claimed: the bytes are looked at. OTHER and TLS (ciphertext,
 * counted only) cost this one load per call. */
static inline bool watched(const struct ts_fd *e)
{
	uint8_t p = atomic_load_explicit(&e->proto, memory_order_relaxed);
	return p == TS_PROTO_UNKNOWN || p == TS_PROTO_TRACED;
}

static bool transient(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

static const char *errno_name(int err)
{
	const char *n = strerrorname_np(err);
	return n ? n : "io_error";
}

static bool nonblocking(int fd, int flags)
{
	if (flags & MSG_DONTWAIT)
		return true;
	int fl = fcntl(fd, F_GETFL);
	return fl >= 0 && (fl & O_NONBLOCK);
}

/* Offers the first bytes of an undecided socket to the tracers; on a claim,
 * makes the socket's stream (the bytes that moved earlier are replayed to
 * the tracer) and publishes it on the entry. */
static struct ts_stream *sniff(int fd, struct ts_fd *e, const struct iovec *iov, int cnt, size_t n, bool from_client,
			       bool moved)
{
	enum ts_claim v;
	const struct ts_tracer *t = ts_sniff_bytes(e->sniff, e->sniff_len, iov, cnt, n, from_client, &v);
	if (v == TS_CLAIM_NO) {
		atomic_store(&e->proto, TS_PROTO_OTHER);
		return NULL;
	}
	if (!t) {
		if (moved)
			ts_sniff_remember(e->sniff, &e->sniff_len, iov, cnt, n);
		return NULL;
	}
	struct ts_stream *st = ts_stream_new(TS_CARRIER_SOCKET);
	if (!st) {
		atomic_store(&e->proto, TS_PROTO_OTHER);
		return NULL;
	}
	st->conn.fd = fd;
	st->conn.peer = e->peer;
	st->conn.server = atomic_load(&e->kind) == TS_FD_ACCEPTED;
	memcpy(st->conn.server_address, e->server_address, sizeof st->conn.server_address);
	ts_stream_lock(st);
	bool ok = ts_stream_attach(st, t, e->sniff, e->sniff_len, from_client);
	ts_stream_unlock(st);
	struct ts_stream *expected = NULL;
	if (!ok || !atomic_compare_exchange_strong(&e->stream, &expected, st)) {
		ts_stream_free(st, true);
		if (!ok) {
			atomic_store(&e->proto, TS_PROTO_OTHER);
			return NULL;
		}
		return expected; /* another thread claimed it first */
	}
	atomic_store(&e->proto, TS_PROTO_TRACED);
	return st;
}

/* Sends the plan's wire bytes in one sendmsg with the application's flags
 * and address/control data. */
static ssize_t send_plan(int fd, const struct ts_plan *pl, const struct ts_out_call *call)
{
	struct msghdr msg = {.msg_iov = (struct iovec *)pl->seg, .msg_iovlen = (size_t)pl->nseg};
	int flags = 0;
	if (call->kind == TS_OUT_SENDMSG && call->msg) {
		msg.msg_name = call->msg->msg_name;
		msg.msg_namelen = call->msg->msg_namelen;
		msg.msg_control = call->msg->msg_control;
		msg.msg_controllen = call->msg->msg_controllen;
	} else if (call->kind == TS_OUT_SENDTO) {
		msg.msg_name = (void *)call->to;
		msg.msg_namelen = call->tolen;
	}
	if (call->kind == TS_OUT_SEND || call->kind == TS_OUT_SENDTO || call->kind == TS_OUT_SENDMSG)
		flags = call->flags;
	return real_sendmsg()(fd, &msg, flags);
}

static ssize_t stream_write(int fd, struct ts_stream *st, const struct iovec *iov, int cnt,
			    const struct ts_out_call *call)
{
	ts_stream_lock(st);
	if (st->given_up) {
		ts_stream_unlock(st);
		return ts_out_repeat(fd, iov, cnt, call);
	}
	ssize_t n;
	int err;
	if (!ts_stream_needs_plan(st)) { /* nothing to edit: the application's call as it is */
		n = ts_out_repeat(fd, iov, cnt, call);
		err = errno;
		if (n > 0)
			ts_stream_sent_plain(st, iov, cnt, (size_t)n);
		else if (n < 0 && !transient(err))
			ts_stream_ended(st, TS_END_ERROR, errno_name(err), strerror(err));
		ts_stream_unlock(st);
		errno = err;
		return n;
	}
	struct ts_plan pl;
	ts_stream_plan(st, &pl, iov, cnt);
	if (!pl.edited) {
		n = ts_out_repeat(fd, iov, cnt, call);
		err = errno;
		if (n > 0)
			ts_stream_sent_plain(st, iov, cnt, (size_t)n);
	} else if (!pl.wire_len) {
		/* All this write holds is bytes an edit replaced, its own bytes
		 * already out: nothing to send, they count as sent. */
		n = (ssize_t)ts_stream_taken(st, &pl, 0);
		err = 0;
	} else {
		n = send_plan(fd, &pl, call);
		err = errno;
		if (n > 0) {
			size_t app = ts_stream_taken(st, &pl, (size_t)n);
			ts_debug("fd %d: kernel took %zd of %zu bytes: %zu of the application's", fd, n, pl.wire_len, app);
			if (app) {
				n = (ssize_t)app;
			} else { /* only edit bytes went: the rest of them go first next time */
				n = -1;
				err = nonblocking(fd, call->flags) ? EAGAIN : EINTR;
			}
		} else {
			ts_stream_not_sent(st, &pl);
		}
	}
	if (n < 0 && !transient(err))
		ts_stream_ended(st, TS_END_ERROR, errno_name(err), strerror(err));
	ts_stream_unlock(st);
	errno = err;
	return n;
}

static ssize_t socket_write(int fd, struct ts_fd *e, const struct iovec *iov, int cnt, const struct ts_out_call *call)
{
	struct ts_stream *st = ts_fd_stream(e);
	if (!st) {
		bool from_client = atomic_load(&e->kind) != TS_FD_ACCEPTED;
		st = sniff(fd, e, iov, cnt, ts_iov_total(iov, cnt), from_client, false);
		if (!st) {
			ssize_t n = ts_out_repeat(fd, iov, cnt, call);
			int err = errno;
			if (n > 0 && atomic_load(&e->proto) == TS_PROTO_UNKNOWN)
				ts_sniff_remember(e->sniff, &e->sniff_len, iov, cnt, (size_t)n);
			errno = err;
			return n;
		}
	}
	return stream_write(fd, st, iov, cnt, call);
}

ssize_t ts_out(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, const struct ts_out_call *call)
{
	if (TS_UNLIKELY(ts_tls_calling != NULL)) /* a TLS library writing its session's ciphertext */
		ts_tls_bind_socket(fd, e);
	ts_in_shim++;
	ssize_t n = watched(e) ? socket_write(fd, e, iov, iovcnt, call) : ts_out_repeat(fd, iov, iovcnt, call);
	ts_in_shim--;
	int err = errno;
	settle_connect(fd, e, n, err);
	ts_fd_count(e, true, n);
	errno = err;
	return n;
}

void ts_out_opaque(int fd, struct ts_fd *e, ssize_t n, int err)
{
	settle_connect(fd, e, n, err);
	ts_fd_count(e, true, n);
	struct ts_stream *st = watched(e) ? ts_fd_stream(e) : NULL;
	if (st && n > 0) {
		ts_in_shim++;
		ts_stream_lock(st);
		ts_stream_sent_opaque(st, (size_t)n);
		ts_stream_unlock(st);
		ts_in_shim--;
	}
	errno = err;
}

static void socket_read(int fd, struct ts_fd *e, const struct iovec *iov, int cnt, ssize_t n, int err)
{
	if (n < 0 && transient(err))
		return; /* nothing arrived, nothing went wrong: an event loop's every other read */
	struct ts_stream *st = ts_fd_stream(e);
	if (!st) {
		if (n <= 0)
			return;
		bool from_client = atomic_load(&e->kind) == TS_FD_ACCEPTED;
		st = sniff(fd, e, iov, cnt, (size_t)n, from_client, true);
		if (!st)
			return;
	}
	ts_stream_lock(st);
	if (n > 0)
		ts_stream_received(st, iov, cnt, (size_t)n);
	else if (n == 0)
		ts_stream_ended(st, TS_END_EOF, NULL, NULL);
	else
		ts_stream_ended(st, TS_END_ERROR, errno_name(err), strerror(err));
	ts_stream_unlock(st);
}

void ts_in(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, ssize_t n, int err, int flags)
{
	if (TS_UNLIKELY(ts_tls_calling != NULL))
		ts_tls_bind_socket(fd, e);
	settle_connect(fd, e, n, err);
	if (!(flags & MSG_PEEK)) {
		ts_fd_count(e, false, n);
		if (watched(e)) {
			ts_in_shim++;
			socket_read(fd, e, iov, iovcnt, n, err);
			ts_in_shim--;
		}
	}
	errno = err;
}
