/* gnutls_client — a GnuTLS HTTPS client that keeps GnuTLS's send retry rule,
 * for the TLS transport's tests (tls_client.c is its OpenSSL twin).
 *
 *   gnutls_client PORT MODE BODY_BYTES
 *
 * MODE: block; nonblock (a non-blocking socket with a 4 KiB send buffer:
 * gnutls_record_send returns GNUTLS_E_AGAIN and is called again with the
 * same data, advancing by what each call sent, as GnuTLS allows short sends);
 * null (the same, but retrying with NULL, 0 as the manual also allows).
 * Prints the bytes sent and the status line; exit 0, or 2 with GnuTLS's
 * error name. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what, int r)
{
	fprintf(stderr, "gnutls_client: %s: %s\n", what, gnutls_strerror_name(r));
	return 2;
}

static void wait_for(int fd, gnutls_session_t s)
{
	struct pollfd p = {fd, gnutls_record_get_direction(s) ? POLLOUT : POLLIN, 0};
	poll(&p, 1, 5000);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: gnutls_client PORT block|nonblock|null BODY_BYTES\n");
		return 64;
	}
	int port = atoi(argv[1]);
	const char *mode = argv[2];
	size_t body = strtoul(argv[3], NULL, 10);
	int nonblock = strcmp(mode, "block") != 0, null_retry = !strcmp(mode, "null");

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
	gnutls_global_init();
	gnutls_certificate_credentials_t cred;
	gnutls_certificate_allocate_credentials(&cred);
	gnutls_session_t s;
	gnutls_init(&s, GNUTLS_CLIENT);
	gnutls_set_default_priority(s);
	gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
	gnutls_server_name_set(s, GNUTLS_NAME_DNS, "localhost", 9);
	gnutls_transport_set_int(s, fd);
	int r;
	do
		r = gnutls_handshake(s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0)
		return fail("handshake", r);
	if (nonblock)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

	char head[256];
	int hl = snprintf(head, sizeof head, "POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\n\r\n", body);
	size_t len = (size_t)hl + body;
	char *req = malloc(len);
	memcpy(req, head, (size_t)hl);
	unsigned st = 7;
	for (size_t i = 0; i < body; i++) {
		st = st * 1103515245u + 12345u;
		req[hl + (long)i] = (char)('A' + (st >> 16) % 26);
	}
	size_t off = 0, retries = 0;
	int again = 0;
	while (off < len) {
		ssize_t n = (again && null_retry) ? gnutls_record_send(s, NULL, 0)
						  : gnutls_record_send(s, req + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			again = 0;
			continue;
		}
		if (n != GNUTLS_E_AGAIN && n != GNUTLS_E_INTERRUPTED)
			return fail("send", (int)n);
		again = 1;
		retries++;
		wait_for(fd, s);
	}
	char resp[4096];
	size_t got = 0;
	for (;;) {
		ssize_t n = gnutls_record_recv(s, resp + got, sizeof resp - 1 - got);
		if (n > 0) {
			got += (size_t)n;
			if (got == sizeof resp - 1)
				break;
			continue;
		}
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
			wait_for(fd, s);
			continue;
		}
		break;
	}
	resp[got] = 0;
	char *eol = strstr(resp, "\r\n");
	if (eol)
		*eol = 0;
	printf("sent %zu retries %zu\n%s\n", off, retries, resp);
	gnutls_deinit(s);
	gnutls_certificate_free_credentials(cred);
	close(fd);
	free(req);
	return 0;
}
