/* http_writer — a traced HTTP/1.1 client that writes requests in every awkward
 * way an application may: split request lines, writev pieces, MSG_MORE,
 * non-blocking sockets with a tiny send buffer, large bodies, pipelining,
 * its own traceparent, non-HTTP bytes, the HTTP/2 preface.
 *
 * usage: http_writer PORT SCENARIO SEED
 * Writes the bytes it meant to send (the application's view) to stdout, after
 * checking that every call's return value was consistent with its buffer. The
 * test compares them with what the receiver got. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static char sent[4 << 20];
static size_t sent_len;
static unsigned seed;

static unsigned rnd(unsigned n)
{
	seed = seed * 1103515245u + 12345u;
	return (seed >> 16) % n;
}

static void wait_out(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	poll(&p, 1, 5000);
}

/* Writes all of buf in pieces of random size with random calls; every return
 * value must be within [0, piece] (or -1 EAGAIN on the non-blocking socket). */
static void put(int fd, const char *buf, size_t len, int extra_flags)
{
	size_t off = 0;
	while (off < len) {
		size_t piece = 1 + rnd(len - off < 4096 ? (unsigned)(len - off) : 4096);
		if (rnd(4) == 0)
			piece = len - off;
		ssize_t n;
		struct iovec v[3];
		switch (rnd(4)) {
		case 0:
			n = send(fd, buf + off, piece, MSG_NOSIGNAL | extra_flags);
			break;
		case 1:
			n = write(fd, buf + off, piece);
			break;
		case 2: {
			size_t a = piece / 3, b = piece / 3;
			v[0] = (struct iovec){(char *)buf + off, a};
			v[1] = (struct iovec){(char *)buf + off + a, b};
			v[2] = (struct iovec){(char *)buf + off + a + b, piece - a - b};
			n = writev(fd, v, 3);
			break;
		}
		default: {
			v[0] = (struct iovec){(char *)buf + off, piece};
			struct msghdr m = {.msg_iov = v, .msg_iovlen = 1};
			n = sendmsg(fd, &m, MSG_NOSIGNAL | extra_flags);
		}
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
				wait_out(fd);
				continue;
			}
			perror("write");
			exit(3);
		}
		if ((size_t)n > piece) {
			fprintf(stderr, "return value %zd larger than the buffer %zu\n", n, piece);
			exit(4);
		}
		memcpy(sent + sent_len, buf + off, (size_t)n);
		sent_len += (size_t)n;
		off += (size_t)n;
	}
}

static size_t request(char *out, const char *method, const char *extra, size_t body)
{
	size_t n = (size_t)sprintf(out, "%s /path/%u?q=%u HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: %.*s\r\n%s", method,
				   rnd(1000), rnd(1000), (int)rnd(200), "................................................................................................................................................................................................................", extra);
	if (body)
		n += (size_t)sprintf(out + n, "Content-Length: %zu\r\n", body);
	n += (size_t)sprintf(out + n, "\r\n");
	for (size_t i = 0; i < body; i++)
		out[n++] = (char)('a' + (i % 26));
	return n;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int port = atoi(argv[1]);
	const char *scenario = argv[2];
	seed = (unsigned)atoi(argv[3]);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (!strcmp(scenario, "nonblocking") || !strcmp(scenario, "bigbody")) {
		int small = 4608;
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		perror("connect");
		return 5;
	}
	static char buf[2 << 20];
	size_t n;
	if (!strcmp(scenario, "simple")) {
		n = request(buf, "GET", "", 0);
		put(fd, buf, n, 0);
	} else if (!strcmp(scenario, "split")) { /* one byte at a time for the head */
		n = request(buf, "POST", "", 10);
		for (size_t i = 0; i < n; i++)
			put(fd, buf + i, 1, 0);
	} else if (!strcmp(scenario, "more")) {
		n = request(buf, "PUT", "", 5000);
		put(fd, buf, n, MSG_MORE);
		put(fd, "", 0, 0);
	} else if (!strcmp(scenario, "nonblocking") || !strcmp(scenario, "bigbody")) {
		fcntl(fd, F_SETFL, O_NONBLOCK);
		size_t body = !strcmp(scenario, "bigbody") ? (1 << 20) + rnd(5000) : 3000 + rnd(3000);
		for (int i = 0; i < 3; i++) {
			n = request(buf, "POST", "", body);
			put(fd, buf, n, MSG_DONTWAIT);
		}
	} else if (!strcmp(scenario, "pipelined")) {
		n = request(buf, "GET", "", 0);
		n += request(buf + n, "GET", "", 0);
		put(fd, buf, n, 0);
	} else if (!strcmp(scenario, "own_traceparent")) {
		n = request(buf, "GET", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n", 0);
		put(fd, buf, n, 0);
	} else if (!strcmp(scenario, "binary")) {
		for (n = 0; n < 3000; n++)
			buf[n] = (char)rnd(256);
		buf[0] = 'G'; /* starts like GET but is not HTTP */
		buf[1] = 0;
		put(fd, buf, n, 0);
	} else if (!strcmp(scenario, "endless_head")) { /* 200 KiB of headers, never a blank line */
		n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: x\r\n");
		while (n < 200 * 1024)
			n += (size_t)sprintf(buf + n, "X-Filler-%zu: %s\r\n", n, "0123456789abcdef0123456789abcdef");
		put(fd, buf, n, 0);
	} else if (!strcmp(scenario, "reuse")) {
		/* half a request head on one connection, then close: the next
		 * connection gets the same fd number and must start from scratch */
		n = (size_t)sprintf(buf, "GET /first HTTP/1.1\r\nHost: x\r\n");
		put(fd, buf, n, 0);
		close(fd);
		sent_len = 0;
		int fd2 = socket(AF_INET, SOCK_STREAM, 0);
		if (fd2 != fd || connect(fd2, (struct sockaddr *)&sa, sizeof sa) != 0) {
			fprintf(stderr, "fd %d not reused (%d)\n", fd, fd2);
			return 6;
		}
		memcpy(buf, "\r\n\r\nX", 5); /* would end the old head if state leaked */
		for (n = 5; n < 2000; n++)
			buf[n] = (char)rnd(256);
		put(fd, buf, n, 0);
	} else if (!strcmp(scenario, "h2")) {
		n = (size_t)sprintf(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
		put(fd, buf, n, 0);
	} else {
		return 2;
	}
	shutdown(fd, SHUT_WR);
	fcntl(fd, F_SETFL, 0); /* wait for the receiver's EOF: it has everything then */
	char drain[4096];
	while (read(fd, drain, sizeof drain) > 0)
		;
	close(fd);
	fwrite(sent, 1, sent_len, stdout);
	return 0;
}
