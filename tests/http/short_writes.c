/* short_writes.so — test-only fault injection, preloaded AFTER libtraceshim:
 * every send/sendmsg/write/writev on a TCP socket passes at most a random
 * number of bytes to the kernel, so the shim's splice sees every possible
 * partial count, including ones that end inside the injected header. Short
 * writes are legal on any socket; the application must cope, and so must we. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static unsigned state = 1;

static size_t cap(size_t len)
{
	if (state == 1 && getenv("SHORT_WRITES_SEED"))
		state = (unsigned)atoi(getenv("SHORT_WRITES_SEED")) * 2654435761u + 1;
	state = state * 1103515245u + 12345u;
	size_t c = 1 + (state >> 8) % 120; /* header-sized pieces */
	return len < c ? len : c;
}

static int is_tcp(int fd)
{
	int type = 0;
	socklen_t l = sizeof type;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_STREAM &&
	       getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_INET;
}

static void *next(const char *name) { return dlsym(RTLD_NEXT, name); }

ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	ssize_t (*real)(int, const struct msghdr *, int) = (ssize_t (*)(int, const struct msghdr *, int))next("sendmsg");
	if (!is_tcp(fd))
		return real(fd, m, flags);
	size_t total = 0;
	for (size_t i = 0; i < m->msg_iovlen; i++)
		total += m->msg_iov[i].iov_len;
	size_t want = cap(total);
	struct iovec v[128];
	struct msghdr mm = *m;
	size_t n = 0;
	for (size_t i = 0; i < m->msg_iovlen && want && n < 128; i++) {
		size_t take = m->msg_iov[i].iov_len < want ? m->msg_iov[i].iov_len : want;
		v[n++] = (struct iovec){m->msg_iov[i].iov_base, take};
		want -= take;
	}
	mm.msg_iov = v;
	mm.msg_iovlen = n;
	return real(fd, &mm, flags);
}

ssize_t send(int fd, const void *b, size_t len, int flags)
{
	ssize_t (*real)(int, const void *, size_t, int) = (ssize_t (*)(int, const void *, size_t, int))next("send");
	return real(fd, b, is_tcp(fd) ? cap(len) : len, flags);
}

ssize_t write(int fd, const void *b, size_t len)
{
	ssize_t (*real)(int, const void *, size_t) = (ssize_t (*)(int, const void *, size_t))next("write");
	return real(fd, b, is_tcp(fd) ? cap(len) : len);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
	return sendmsg(fd, &m, 0);
}
