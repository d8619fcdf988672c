/* io.c — see io.h. */
#include <errno.h>
#include <unistd.h>

#include "io.h"

TS_REAL(send, ssize_t, (int, const void *, size_t, int))
TS_REAL(write, ssize_t, (int, const void *, size_t))
TS_REAL(writev, ssize_t, (int, const struct iovec *, int))
TS_REAL(sendto, ssize_t, (int, const void *, size_t, int, const struct sockaddr *, socklen_t))
TS_REAL(sendmsg, ssize_t, (int, const struct msghdr *, int))

static ssize_t repeat(int fd, const struct iovec *iov, int iovcnt, const struct ts_out_call *c)
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

ssize_t ts_out(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, const struct ts_out_call *call)
{
	ssize_t n = repeat(fd, iov, iovcnt, call);
	int err = errno;
	settle_connect(fd, e, n, err);
	ts_fd_count(e, true, n);
	errno = err;
	return n;
}

void ts_in(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, ssize_t n, int err, int flags)
{
	(void)iov;
	(void)iovcnt;
	settle_connect(fd, e, n, err);
	if (!(flags & MSG_PEEK))
		ts_fd_count(e, false, n);
	errno = err;
}
