/* io.h — the socket transport's entry points (shim/xport_socket.c), shared
 * by every read and write hook. Write-side hooks hand over the application's
 * bytes as an iovec plus how to send them; read-side hooks make the real call
 * themselves and report what arrived. Only fds with an fd-table entry
 * (sockets we saw connect or accept) ever get here. */
#ifndef TRACESHIM_IO_H
#define TRACESHIM_IO_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "fdtable.h"

enum ts_out_kind { TS_OUT_SEND, TS_OUT_WRITE, TS_OUT_WRITEV, TS_OUT_SENDTO, TS_OUT_SENDMSG };

/* The application's call, to be repeated exactly when nothing is injected. */
struct ts_out_call {
	enum ts_out_kind kind;
	int flags;
	const struct sockaddr *to;
	socklen_t tolen;
	const struct msghdr *msg;
};

/* Makes exactly the application's call (no tracing): the bytes as given. */
ssize_t ts_out_repeat(int fd, const struct iovec *iov, int iovcnt, const struct ts_out_call *call);

ssize_t ts_out(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, const struct ts_out_call *call);

/* A sendfile() that moved n bytes the shim never sees. */
void ts_out_opaque(int fd, struct ts_fd *e, ssize_t n, int err);

/* After a read-side call returned n (or -1 with err): count, observe. */
void ts_in(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, ssize_t n, int err, int flags);

#endif
