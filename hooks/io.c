/* io.c — the read and write families. Each hook: one table lookup; sockets
 * without an fd-table entry (and every file, pipe, tty) go straight to libc. */
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "io.h"
#include "shim.h"

TS_REAL(send, ssize_t, (int, const void *, size_t, int))
TS_REAL(write, ssize_t, (int, const void *, size_t))
TS_REAL(writev, ssize_t, (int, const struct iovec *, int))
TS_REAL(sendto, ssize_t, (int, const void *, size_t, int, const struct sockaddr *, socklen_t))
TS_REAL(sendmsg, ssize_t, (int, const struct msghdr *, int))
TS_REAL(recv, ssize_t, (int, void *, size_t, int))
TS_REAL(read, ssize_t, (int, void *, size_t))
TS_REAL(readv, ssize_t, (int, const struct iovec *, int))
TS_REAL(recvfrom, ssize_t, (int, void *, size_t, int, struct sockaddr *, socklen_t *))
TS_REAL(recvmsg, ssize_t, (int, struct msghdr *, int))
TS_REAL(__recv_chk, ssize_t, (int, void *, size_t, size_t, int))
TS_REAL(__read_chk, ssize_t, (int, void *, size_t, size_t))
TS_REAL(__recvfrom_chk, ssize_t, (int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *))

/* The entry of a traced socket, or NULL: the whole cost of an untraced call. */
static inline struct ts_fd *traced(int fd)
{
	struct ts_fd *e = ts_fd_get(fd);
	return (TS_UNLIKELY(e != NULL) && ts_tracing()) ? e : NULL;
}

/* ---- writes ------------------------------------------------------------------ */

TS_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct ts_fd *e = traced(fd);
	if (TS_LIKELY(!e))
		return real_send()(fd, buf, len, flags);
	struct iovec v = {(void *)buf, len};
	struct ts_out_call c = {.kind = TS_OUT_SEND, .flags = flags};
	return ts_out(fd, e, &v, 1, &c);
}

TS_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	struct ts_fd *e = traced(fd);
	if (TS_LIKELY(!e))
		return real_write()(fd, buf, len);
	struct iovec v = {(void *)buf, len};
	struct ts_out_call c = {.kind = TS_OUT_WRITE};
	return ts_out(fd, e, &v, 1, &c);
}

TS_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct ts_fd *e = traced(fd);
	if (TS_LIKELY(!e))
		return real_writev()(fd, iov, iovcnt);
	struct ts_out_call c = {.kind = TS_OUT_WRITEV};
	return ts_out(fd, e, iov, iovcnt, &c);
}

TS_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, __CONST_SOCKADDR_ARG a, socklen_t tolen)
{
	const struct sockaddr *to = a.__sockaddr__;
	struct ts_fd *e = traced(fd);
	if (TS_LIKELY(!e))
		return real_sendto()(fd, buf, len, flags, to, tolen);
	struct iovec v = {(void *)buf, len};
	struct ts_out_call c = {.kind = TS_OUT_SENDTO, .flags = flags, .to = to, .tolen = tolen};
	return ts_out(fd, e, &v, 1, &c);
}

TS_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct ts_fd *e = traced(fd);
	if (TS_LIKELY(!e) || !msg)
		return real_sendmsg()(fd, msg, flags);
	struct ts_out_call c = {.kind = TS_OUT_SENDMSG, .flags = flags, .msg = msg};
	return ts_out(fd, e, msg->msg_iov, (int)msg->msg_iovlen, &c);
}

/* Declared here, not from <sys/sendfile.h>: with _FILE_OFFSET_BITS=64 that
 * header renames sendfile to sendfile64, and we interpose both names. */
ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count);
TS_REAL(sendfile, ssize_t, (int, int, off_t *, size_t))
TS_REAL(sendfile64, ssize_t, (int, int, off_t *, size_t))

TS_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	struct ts_fd *e = traced(out_fd);
	ssize_t n = real_sendfile()(out_fd, in_fd, offset, count);
	if (TS_UNLIKELY(e != NULL))
		ts_out_opaque(out_fd, e, n, errno);
	return n;
}

TS_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
{
	struct ts_fd *e = traced(out_fd);
	ssize_t n = real_sendfile64()(out_fd, in_fd, offset, count);
	if (TS_UNLIKELY(e != NULL))
		ts_out_opaque(out_fd, e, n, errno);
	return n;
}

/* ---- reads ---------------------------------------------------------------------- */

static ssize_t observed(int fd, struct ts_fd *e, void *buf, ssize_t n, int flags)
{
	struct iovec v = {buf, n > 0 ? (size_t)n : 0};
	ts_in(fd, e, &v, 1, n, errno, flags);
	return n;
}

TS_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct ts_fd *e = traced(fd);
	ssize_t n = real_recv()(fd, buf, len, flags);
	return TS_LIKELY(!e) ? n : observed(fd, e, buf, n, flags);
}

TS_EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	struct ts_fd *e = traced(fd);
	ssize_t n = real_read()(fd, buf, len);
	return TS_LIKELY(!e) ? n : observed(fd, e, buf, n, 0);
}

TS_EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, __SOCKADDR_ARG a, socklen_t *fromlen)
{
	struct sockaddr *from = a.__sockaddr__;
	struct ts_fd *e = traced(fd);
	ssize_t n = real_recvfrom()(fd, buf, len, flags, from, fromlen);
	return TS_LIKELY(!e) ? n : observed(fd, e, buf, n, flags);
}

TS_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	struct ts_fd *e = traced(fd);
	ssize_t n = real___recv_chk()(fd, buf, len, buflen, flags);
	return TS_LIKELY(!e) ? n : observed(fd, e, buf, n, flags);
}

TS_EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	struct ts_fd *e = traced(fd);
	ssize_t n = real___read_chk()(fd, buf, len, buflen);
	return TS_LIKELY(!e) ? n : observed(fd, e, buf, n, 0);
}

TS_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *from,
		       socklen_t *fromlen)
{
	struct ts_fd *e = traced(fd);
	ssize_t n = real___recvfrom_chk()(fd, buf, len, buflen, flags, from, fromlen);
	return TS_LIKELY(!e) ? n : observed(fd, e, buf, n, flags);
}

TS_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	struct ts_fd *e = traced(fd);
	ssize_t n = real_readv()(fd, iov, iovcnt);
	if (TS_LIKELY(!e))
		return n;
	ts_in(fd, e, iov, iovcnt, n, errno, 0);
	return n;
}

TS_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct ts_fd *e = traced(fd);
	ssize_t n = real_recvmsg()(fd, msg, flags);
	if (TS_LIKELY(!e) || !msg)
		return n;
	ts_in(fd, e, msg->msg_iov, (int)msg->msg_iovlen, n, errno, flags);
	return n;
}
