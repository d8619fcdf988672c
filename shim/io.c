/* io.c — see io.h. */
#include <errno.h>
#include <unistd.h>

#include "http_trace.h"
#include "io.h"

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

/* TCP connections are watched for HTTP/1.x until they prove to be something else. */
static inline bool maybe_http(const struct ts_fd *e)
{
	return atomic_load_explicit(&e->proto, memory_order_relaxed) != TS_PROTO_OTHER;
}

ssize_t ts_out(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, const struct ts_out_call *call)
{
	ts_in_shim++;
	ssize_t n = maybe_http(e) ? ts_http_out(fd, e, iov, iovcnt, call) : ts_out_repeat(fd, iov, iovcnt, call);
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
	if (maybe_http(e)) {
		ts_in_shim++;
		ts_http_out_opaque(fd, e, n);
		ts_in_shim--;
	}
	errno = err;
}

void ts_in(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, ssize_t n, int err, int flags)
{
	settle_connect(fd, e, n, err);
	if (!(flags & MSG_PEEK)) {
		ts_fd_count(e, false, n);
		if (maybe_http(e)) {
			ts_in_shim++;
			ts_http_in(fd, e, iov, iovcnt, n, err);
			ts_in_shim--;
		}
	}
	errno = err;
}
