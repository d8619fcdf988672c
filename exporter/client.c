/* client.c — see client.h. */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"

int exp_unix_connect(const char *path, int timeout_ms)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sa.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int exp_query_status(const char *path, int timeout_ms, struct sbuf *out)
{
	int fd = exp_unix_connect(path, timeout_ms);
	if (fd < 0)
		return -1;
	uint8_t req[TS_FRAME_HEADER_SIZE], reply[TS_FRAME_MAX];
	struct ts_wbuf w;
	ts_wbuf_init(&w, req, sizeof req);
	ts_frame_begin(&w, TS_FRAME_STATUS_REQ, 0);
	ts_frame_finish(&w);
	ssize_t n = send(fd, req, w.len, MSG_NOSIGNAL);
	if (n == (ssize_t)w.len)
		n = recv(fd, reply, sizeof reply, 0);
	close(fd);
	struct ts_frame_header h;
	if (n <= 0 || !ts_frame_parse_header(reply, (size_t)n, &h) || h.type != TS_FRAME_STATUS)
		return -1;
	sbuf_put(out, reply + TS_FRAME_HEADER_SIZE, h.length);
	return out->oom ? -1 : 0;
}
