/* tls_client — an OpenSSL HTTPS client that keeps OpenSSL's write retry rule
 * to the letter, for the TLS transport's tests.
 *
 *   tls_client PORT MODE BODY_BYTES [TRACEPARENT]
 *
 * MODE: block (blocking socket), nonblock (non-blocking, small send buffer:
 * SSL_write hits WANT_WRITE and is retried with the same pointer and length,
 * no SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), partial (the same with
 * SSL_MODE_ENABLE_PARTIAL_WRITE: each return is a count to advance by).
 * The request (head and body) is one buffer written by SSL_write; the
 * response is read to EOF. Prints the bytes written and the status line;
 * exit 0, or 2 with OpenSSL's error (a "bad write retry" among them). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what)
{
	fprintf(stderr, "tls_client: %s: ", what);
	ERR_print_errors_fp(stderr);
	fprintf(stderr, "\n");
	return 2;
}

static void wait_for(int fd, int err)
{
	struct pollfd p = {fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, 0};
	poll(&p, 1, 5000);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: tls_client PORT block|nonblock|partial BODY_BYTES [TRACEPARENT]\n");
		return 64;
	}
	int port = atoi(argv[1]);
	const char *mode = argv[2];
	size_t body = strtoul(argv[3], NULL, 10);
	bool nonblock = strcmp(mode, "block") != 0;

	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (nonblock) {
		int sz = 4096;
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	}
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		perror("connect");
		return 2;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = SSL_new(ctx);
	SSL_set_tlsext_host_name(ssl, "localhost");
	SSL_set_fd(ssl, fd);
	if (!strcmp(mode, "partial"))
		SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (SSL_connect(ssl) != 1)
		return fail("handshake");
	if (nonblock)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

	char head[512];
	int hl = snprintf(head, sizeof head, "POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\n%s%s%s\r\n", body,
			  argc > 4 ? "traceparent: " : "", argc > 4 ? argv[4] : "", argc > 4 ? "\r\n" : "");
	size_t len = (size_t)hl + body;
	char *req = malloc(len);
	memcpy(req, head, (size_t)hl);
	unsigned s = 7;
	for (size_t i = 0; i < body; i++) {
		s = s * 1103515245u + 12345u;
		req[hl + (long)i] = (char)('A' + (s >> 16) % 26);
	}
	size_t off = 0, retries = 0;
	while (off < len) {
		int n = SSL_write(ssl, req + off, (int)(len - off));
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		int e = SSL_get_error(ssl, n);
		if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
			return fail("write");
		retries++;
		wait_for(fd, e); /* then the same pointer and length again */
	}
	char resp[4096];
	size_t got = 0;
	for (;;) {
		int n = SSL_read(ssl, resp + got, (int)(sizeof resp - 1 - got));
		if (n > 0) {
			got += (size_t)n;
			if (got == sizeof resp - 1)
				break;
			continue;
		}
		int e = SSL_get_error(ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			wait_for(fd, e);
			continue;
		}
		break; /* EOF (close_notify or not) */
	}
	resp[got] = 0;
	char *eol = strstr(resp, "\r\n");
	if (eol)
		*eol = 0;
	printf("sent %zu retries %zu\n%s\n", off, retries, resp);
	SSL_shutdown(ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	free(req);
	return 0;
}
