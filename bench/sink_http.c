/* sink_http.c — an OTLP/HTTP receiver that takes bodies and throws them away,
 * as fast as loopback allows, so the exporter's own cost is what a firehose
 * measures. HTTP/1.1 keep-alive, Content-Length bodies only, one thread per
 * connection (the exporter keeps one).
 *
 *   sink_http PORTFILE      listens on 127.0.0.1 (a free port), writes the port
 *                           to PORTFILE; on SIGTERM/SIGINT prints
 *                           "requests N body_bytes B" and exits.
 * Answers every request 200 with an empty body.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static _Atomic unsigned long long requests, body_bytes;

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	static __thread char buf[1 << 18];
	size_t have = 0;
	for (;;) {
		char *end = memmem(buf, have, "\r\n\r\n", 4);
		if (!end) {
			if (have == sizeof buf)
				break;
			ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
			if (n <= 0)
				break;
			have += (size_t)n;
			continue;
		}
		size_t head = (size_t)(end - buf) + 4;
		unsigned long long clen = 0;
		for (char *p = buf; p < end; p++)
			if ((p == buf || p[-1] == '\n') && !strncasecmp(p, "content-length:", 15)) {
				clen = strtoull(p + 15, NULL, 10);
				break;
			}
		/* Discard the body: what is buffered, then straight from the socket. */
		unsigned long long left = clen;
		size_t inbuf = have - head;
		size_t take = inbuf < left ? inbuf : (size_t)left;
		left -= take;
		memmove(buf, buf + head + take, inbuf - take);
		have = inbuf - take;
		while (left) {
			ssize_t n = recv(fd, buf, left < sizeof buf ? (size_t)left : sizeof buf, 0);
			if (n <= 0)
				goto out;
			left -= (unsigned long long)n;
		}
		if (send(fd, reply, sizeof reply - 1, MSG_NOSIGNAL) != (ssize_t)sizeof reply - 1)
			break;
		atomic_fetch_add(&requests, 1);
		atomic_fetch_add(&body_bytes, clen);
	}
out:
	close(fd);
	return NULL;
}

static void *acceptor(void *arg)
{
	int l = (int)(long)arg;
	for (;;) {
		int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("sink_http: accept");
			return NULL;
		}
		pthread_t t;
		if (pthread_create(&t, NULL, serve, (void *)(long)fd) != 0)
			close(fd);
		else
			pthread_detach(t);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: sink_http PORTFILE\n");
		return 2;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits this */
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 64) ||
	    getsockname(l, (struct sockaddr *)&sa, &len)) {
		perror("sink_http: listen");
		return 1;
	}
	FILE *f = fopen(argv[1], "w");
	if (!f || fprintf(f, "%d\n", ntohs(sa.sin_port)) < 0 || fclose(f) != 0) {
		perror("sink_http: port file");
		return 1;
	}
	pthread_t t;
	if (pthread_create(&t, NULL, acceptor, (void *)(long)l) != 0)
		return 1;
	int sig;
	sigwait(&set, &sig);
	printf("requests %llu body_bytes %llu\n", atomic_load(&requests), atomic_load(&body_bytes));
	fflush(stdout);
	return 0;
}
