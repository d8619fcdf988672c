/* socket.c — connect, its completion, accept, close, close_range/closefrom and
 * dup2/dup3: the hooks that create and release per-fd state (shim/fdtable.h). */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdtable.h"
#include "shim.h"

TS_REAL(connect, int, (int, const struct sockaddr *, socklen_t))
TS_REAL(getsockopt, int, (int, int, int, void *, socklen_t *))
TS_REAL(accept, int, (int, struct sockaddr *, socklen_t *))
TS_REAL(accept4, int, (int, struct sockaddr *, socklen_t *, int))
TS_REAL(close, int, (int))
TS_REAL(dup2, int, (int, int))
TS_REAL(dup3, int, (int, int, int))
TS_REAL(close_range, int, (unsigned int, unsigned int, int))
TS_REAL(closefrom, void, (int))

static uint8_t socket_transport(int fd)
{
	int type = 0;
	socklen_t len = sizeof type;
	if (real_getsockopt()(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
		return 0;
	return type == SOCK_STREAM ? IPPROTO_TCP : type == SOCK_DGRAM ? IPPROTO_UDP : 0;
}

/* A connect on a socket that is already connecting: its outcome tells us
 * how the first one ended. */
static void connect_again(int fd, struct ts_fd *e, int rc, int err)
{
	if (rc == 0 || err == EISCONN)
		ts_fd_connect_done(fd, e, 0);
	else if (err != EALREADY && err != EINPROGRESS)
		ts_fd_connect_done(fd, e, err);
}

static int traced_connect(int fd, const struct sockaddr *addr, socklen_t len, const struct ts_peer *peer)
{
	struct ts_fd *e = ts_fd_get(fd);
	if (e && atomic_load(&e->kind) == TS_FD_CONNECTING) {
		int rc = real_connect()(fd, addr, len);
		int err = errno;
		connect_again(fd, e, rc, err);
		errno = err;
		return rc;
	}
	if (e)
		ts_fd_release(fd, e); /* UDP re-connect, or state we missed a close for */
	e = ts_fd_slot(fd);
	uint8_t transport = e ? socket_transport(fd) : 0;
	if (!transport)
		return real_connect()(fd, addr, len);

	e->generation = atomic_load(&ts_generation);
	atomic_store(&e->bytes_sent, 0);
	atomic_store(&e->bytes_received, 0);
	e->peer = *peer;
	e->peer.transport = transport;
	e->parent = *ts_ctx_current();
	ts_new_span_id(e->conn_span_id);
	ts_new_span_id(e->connect_span_id);
	if (!ts_dns_lookup(peer, e->server_address, sizeof e->server_address))
		e->server_address[0] = 0;
	atomic_store(&e->stream, NULL);
	atomic_store(&e->proto, e->peer.transport == IPPROTO_TCP ? TS_PROTO_UNKNOWN : TS_PROTO_OTHER);
	e->sniff_len = 0;
	e->tls_version[0] = e->tls_alpn[0] = 0;
	e->connect_start_ns = ts_now_ns();
	atomic_store_explicit(&e->kind, TS_FD_CONNECTING, memory_order_release);

	int rc = real_connect()(fd, addr, len);
	int err = errno;
	if (rc == 0)
		ts_fd_connect_done(fd, e, 0);
	else if (err != EINPROGRESS && err != EAGAIN && err != EINTR)
		ts_fd_connect_done(fd, e, err);
	errno = err;
	return rc;
}

TS_EXPORT int connect(int fd, __CONST_SOCKADDR_ARG a, socklen_t len)
{
	const struct sockaddr *addr = a.__sockaddr__;
	struct ts_peer peer;
	if (!ts_tracing() || !ts_peer_from_sockaddr(&peer, addr, len))
		return real_connect()(fd, addr, len);
	return traced_connect(fd, addr, len, &peer);
}

/* Event loops learn a non-blocking connect's outcome from SO_ERROR; so do we. */
TS_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	int rc = real_getsockopt()(fd, level, name, val, len);
	if (level != SOL_SOCKET || name != SO_ERROR || rc != 0 || !val)
		return rc;
	struct ts_fd *e = ts_fd_get(fd);
	if (e && atomic_load(&e->kind) == TS_FD_CONNECTING && ts_tracing()) {
		int err = *(int *)val;
		if (err != EINPROGRESS && err != EALREADY) {
			int saved = errno;
			ts_fd_connect_done(fd, e, err);
			errno = saved;
		}
	}
	return rc;
}

static void track_accepted(int fd, const struct sockaddr *addr, const socklen_t *len)
{
	struct ts_fd *e = ts_fd_get(fd);
	if (e)
		ts_fd_release(fd, e);
	e = ts_fd_slot(fd);
	if (!e)
		return;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (!addr || !len) {
		if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
			return;
		addr = (struct sockaddr *)&ss;
		len = &sl;
	}
	struct ts_peer peer;
	if (!ts_peer_from_sockaddr(&peer, addr, *len))
		return; /* AF_UNIX and friends: not traced */
	e->generation = atomic_load(&ts_generation);
	atomic_store(&e->bytes_sent, 0);
	atomic_store(&e->bytes_received, 0);
	e->peer = peer;
	e->peer.transport = IPPROTO_TCP;
	e->parent = *ts_ctx_current();
	e->server_address[0] = 0;
	atomic_store(&e->stream, NULL);
	atomic_store(&e->proto, e->peer.transport == IPPROTO_TCP ? TS_PROTO_UNKNOWN : TS_PROTO_OTHER);
	e->sniff_len = 0;
	e->tls_version[0] = e->tls_alpn[0] = 0;
	e->connect_start_ns = ts_now_ns();
	atomic_store_explicit(&e->kind, TS_FD_ACCEPTED, memory_order_release);
}

/* An application that asks for no address (libuv: node) gets none, but the
 * kernel fills our own buffer: the peer without a getpeername per
 * connection (bench: node row, docs/PERFORMANCE.md). */
struct accept_addr {
	struct sockaddr_storage own;
	socklen_t own_len;
	struct sockaddr *addr;
	socklen_t *len;
};

static void accept_prepare(struct accept_addr *x, struct sockaddr *addr, socklen_t *len)
{
	x->addr = addr;
	x->len = len;
	if (!addr && ts_tracing()) {
		x->own_len = sizeof x->own;
		x->addr = (struct sockaddr *)&x->own;
		x->len = &x->own_len;
	}
}

static int accepted(int rc, const struct accept_addr *x)
{
	if (rc >= 0 && ts_tracing()) {
		int saved = errno;
		track_accepted(rc, x->addr, x->len);
		errno = saved;
	}
	return rc;
}

TS_EXPORT int accept(int fd, __SOCKADDR_ARG a, socklen_t *len)
{
	struct accept_addr x;
	accept_prepare(&x, a.__sockaddr__, len);
	return accepted(real_accept()(fd, x.addr, x.len), &x);
}

TS_EXPORT int accept4(int fd, __SOCKADDR_ARG a, socklen_t *len, int flags)
{
	struct accept_addr x;
	accept_prepare(&x, a.__sockaddr__, len);
	return accepted(real_accept4()(fd, x.addr, x.len, flags), &x);
}

/* Before the fd number is given back to the kernel: once closed, another
 * thread may get the same number and its own entry. */
static void before_fd_gone(int fd)
{
	bool own = TS_UNLIKELY(ts_transport_owns_fd(fd)) && !ts_in_shim;
	struct ts_fd *e = ts_fd_get(fd);
	if (e != NULL && !ts_tracing())
		e = NULL;
	if (TS_LIKELY(!own && e == NULL))
		return;
	/* A vfork child has its own fd table but our memory: its close() must
	 * neither end the parent's spans nor give up (and unmap) the parent's
	 * connection and ring — Python's subprocess closes every fd in its vfork
	 * child (close_range). One getpid(), only for the shim's own socket and
	 * traced fds. */
	int saved = errno;
	if (!ts_foreign_child()) {
		if (own)
			ts_transport_fd_closed_by_app(fd);
		if (e != NULL)
			ts_fd_release(fd, e);
	}
	errno = saved;
}

/* close_range/closefrom: what close() does, for every number in [first, last]
 * the shim knows — its own socket above all, or a frame could go into
 * whatever that number is given to next. Chunks of the fd table never made
 * are skipped whole, so closefrom(3) costs a walk over the chunk pointers.
 * before_fd_gone() tells a vfork child (Python's subprocess) from the
 * process, and only for a number that is the shim's or traced: no getpid()
 * for a range with none. */
static void before_range_gone(unsigned int first, unsigned int last)
{
	int own = ts_transport_conn_fd();
	if (own >= 0 && (unsigned int)own >= first && (unsigned int)own <= last)
		before_fd_gone(own);
	unsigned int end = last < TS_FD_MAX - 1 ? last : TS_FD_MAX - 1;
	for (unsigned int fd = first; fd <= end;) {
		if (!atomic_load_explicit(&ts_fd_chunks[fd / TS_FD_CHUNK], memory_order_acquire)) {
			fd = (fd / TS_FD_CHUNK + 1) * TS_FD_CHUNK;
			continue;
		}
		before_fd_gone((int)fd);
		fd++;
	}
}

TS_EXPORT int close(int fd)
{
	before_fd_gone(fd);
	return real_close()(fd);
}

/* CLOSE_RANGE_CLOEXEC closes nothing. CLOSE_RANGE_UNSHARE closes in a copy
 * of the fd table private to the calling thread: treated as a close, since
 * the shim's state is the process's (at worst spans end early; never a frame
 * into a number that means something else to that thread). */
TS_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	if (!(flags & CLOSE_RANGE_CLOEXEC) && first <= last)
		before_range_gone(first, last);
	return real_close_range()(first, last, flags);
}

TS_EXPORT void closefrom(int lowfd)
{
	if (lowfd >= 0)
		before_range_gone((unsigned int)lowfd, ~0u);
	real_closefrom()(lowfd);
}

TS_EXPORT int dup2(int oldfd, int newfd)
{
	if (oldfd != newfd)
		before_fd_gone(newfd);
	return real_dup2()(oldfd, newfd);
}

TS_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	if (oldfd != newfd)
		before_fd_gone(newfd);
	return real_dup3()(oldfd, newfd, flags);
}
