/* httpc.c — a minimal HTTP/1.1 keep-alive client, for the client-side cost
 * of a traced request and for the RSS a traced process carries.
 *
 *   httpc PORT N [PATH]        N GETs of PATH (default /) on one keep-alive
 *                              connection to 127.0.0.1:PORT; prints
 *                              "requests N us_per_request X cpu_us_per_request C"
 *                              (C: this process's user+system CPU, all threads,
 *                              so the shim's sender thread is included)
 *   httpc --rss PORT N [PATH]  same, then waits 300 ms (the shim's flush
 *                              interval is 100 ms) and prints VmRSS, RssAnon,
 *                              RssFile, VmHWM in KiB from /proc/self/status.
 *                              N = 0: no request at all (the shim only loaded).
 *
 * Uses send()/recv() like curl does. Responses must carry Content-Length.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "httpc: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static char rbuf[1 << 16];
static size_t rlen;

/* Reads one whole response (head + Content-Length body) off fd. */
static void read_response(int fd)
{
	for (;;) {
		char *end = memmem(rbuf, rlen, "\r\n\r\n", 4);
		if (end) {
			size_t head = (size_t)(end - rbuf) + 4;
			long clen = 0;
			for (char *p = rbuf; p < end; p++) {
				if ((p == rbuf || p[-1] == '\n') && !strncasecmp(p, "content-length:", 15)) {
					clen = strtol(p + 15, NULL, 10);
					break;
				}
			}
			if (strncmp(rbuf, "HTTP/1.1 200", 12) != 0) {
				fprintf(stderr, "httpc: unexpected response: %.40s\n", rbuf);
				exit(1);
			}
			size_t total = head + (size_t)clen;
			if (rlen >= total) {
				memmove(rbuf, rbuf + total, rlen - total);
				rlen -= total;
				return;
			}
		}
		if (rlen == sizeof rbuf) {
			fprintf(stderr, "httpc: response too large\n");
			exit(1);
		}
		ssize_t n = recv(fd, rbuf + rlen, sizeof rbuf - rlen, 0);
		if (n <= 0)
			die(n == 0 ? "server closed" : "recv");
		rlen += (size_t)n;
	}
}

static void print_rss(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		die("/proc/self/status");
	char line[256];
	while (fgets(line, sizeof line, f)) {
		static const char *keys[] = {"VmRSS:", "RssAnon:", "RssFile:", "VmHWM:", "Threads:"};
		for (unsigned i = 0; i < sizeof keys / sizeof *keys; i++)
			if (!strncmp(line, keys[i], strlen(keys[i]))) {
				long v = strtol(line + strlen(keys[i]), NULL, 10);
				printf("%.*s %ld\n", (int)strlen(keys[i]) - 1, keys[i], v);
			}
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	int rss = argc > 1 && !strcmp(argv[1], "--rss");
	if (argc < 3 + rss) {
		fprintf(stderr, "usage: httpc [--rss] PORT N [PATH]\n");
		return 2;
	}
	int port = atoi(argv[1 + rss]);
	long n = atol(argv[2 + rss]);
	const char *path = argc > 3 + rss ? argv[3 + rss] : "/";
	char req[512];
	int qlen = snprintf(req, sizeof req,
			    "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: traceshim-bench\r\nAccept: */*\r\n\r\n",
			    path, port);
	double t = 0, cpu = 0;
	if (n > 0) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
			die("connect");
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		double t0 = now_s(), c0 = cpu_s();
		for (long i = 0; i < n; i++) {
			if (send(fd, req, (size_t)qlen, MSG_NOSIGNAL) != qlen)
				die("send");
			read_response(fd);
		}
		t = now_s() - t0;
		cpu = cpu_s() - c0;
		close(fd);
	}
	if (rss) {
		struct timespec w = {0, 300 * 1000000};
		nanosleep(&w, NULL);
		print_rss();
	} else {
		printf("requests %ld us_per_request %.3f cpu_us_per_request %.3f\n", n, n ? t * 1e6 / (double)n : 0.0,
		       n ? cpu * 1e6 / (double)n : 0.0);
	}
	return 0;
}
