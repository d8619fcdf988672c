/* metrics_serve.c — see metrics_serve.h.
 *
 * The Prometheus endpoint is a deliberately small HTTP/1.1 server: one
 * connection at a time, the request head read within EXP_PROM_READ_MS, the
 * answer written within EXP_PROM_WRITE_MS, with Connection: close. A scraper
 * makes one request per scrape; a client that stalls costs the others at
 * most that long. */
#include "metrics_serve.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "delivery.h"
#include "log.h"
#include "otlp_http.h"
#include "stats.h"

#define EXP_PROM_MAX_LISTENERS 4
#define EXP_PROM_READ_MS 2000
#define EXP_PROM_WRITE_MS 10000 /* a 28 MB page at the series cap, to a slow but honest reader */
#define EXP_PROM_REQ_MAX 8192

struct exp_metrics_server {
	const struct exp_config *cfg;
	struct exp_metrics *metrics;
	struct exp_queue *queue;
	int listen_fd[EXP_PROM_MAX_LISTENERS];
	size_t n_listen;
	int wake_fd; /* eventfd: stop */
	atomic_bool stopping;
	struct exp_delivery *delivery; /* OTLP on */
	uint64_t start_unix_ns, next_export_ms;
	struct sbuf page, body;
	pthread_t thread;
	bool started, stop_begun;
};

static uint64_t unix_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int exp_metrics_http_status(const char *req, size_t len, bool *head)
{
	*head = false;
	const char *sp = memchr(req, ' ', len);
	if (!sp || sp == req)
		return 400;
	size_t mlen = (size_t)(sp - req);
	const char *target = sp + 1, *end = req + len;
	const char *sp2 = memchr(target, ' ', (size_t)(end - target));
	if (!sp2 || (size_t)(end - sp2) < 9 || memcmp(sp2 + 1, "HTTP/1.", 7))
		return 400;
	bool get = mlen == 3 && !memcmp(req, "GET", 3);
	*head = mlen == 4 && !memcmp(req, "HEAD", 4);
	size_t tlen = (size_t)(sp2 - target);
	const char *q = memchr(target, '?', tlen);
	size_t plen = q ? (size_t)(q - target) : tlen;
	if (!(plen == 8 && !memcmp(target, "/metrics", 8)))
		return 404;
	return (get || *head) ? 200 : 405;
}

/* ---- Prometheus --------------------------------------------------------- */

static int open_listeners(struct exp_metrics_server *s, char *err, size_t errcap)
{
	char port[8];
	snprintf(port, sizeof port, "%u", s->cfg->prom_port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res, *ai;
	const char *host = s->cfg->prom_host;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		snprintf(err, errcap, "OTEL_EXPORTER_PROMETHEUS_HOST=%s: %s", host, gai_strerror(rc));
		return -1;
	}
	int last_errno = 0;
	for (ai = res; ai && s->n_listen < EXP_PROM_MAX_LISTENERS; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
			last_errno = errno;
			close(fd);
			continue;
		}
		s->listen_fd[s->n_listen++] = fd;
	}
	freeaddrinfo(res);
	if (!s->n_listen) {
		snprintf(err, errcap, "cannot listen on %s:%s for Prometheus: %s", host, port,
			 last_errno ? strerror(last_errno) : "no address");
		return -1;
	}
	return 0;
}

/* Within the answer's deadline (CLOCK_MONOTONIC ms): a scraper that reads
 * slowly is cut off, it does not hold the thread. */
static void write_all(int fd, const char *p, size_t n, uint64_t deadline_ms)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			uint64_t now = exp_mono_ms();
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			if (now < deadline_ms && poll(&pf, 1, (int)(deadline_ms - now)) > 0)
				continue;
		}
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Reads the request head (until the blank line), within EXP_PROM_READ_MS. */
static size_t read_head(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (len < cap) {
		ssize_t r = recv(fd, buf + len, cap - len, 0);
		if (r > 0) {
			len += (size_t)r;
			if (memmem(buf, len, "\r\n\r\n", 4) || memmem(buf, len, "\n\n", 2))
				return len;
			continue;
		}
		if (r == 0 || (errno != EAGAIN && errno != EINTR))
			return 0;
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		long spent = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (spent >= EXP_PROM_READ_MS || poll(&pf, 1, (int)(EXP_PROM_READ_MS - spent)) <= 0)
			return 0;
	}
	return 0; /* too long */
}

static void serve_one(struct exp_metrics_server *s, int fd)
{
	char req[EXP_PROM_REQ_MAX];
	size_t len = read_head(fd, req, sizeof req);
	bool head = false;
	int status = len ? exp_metrics_http_status(req, len, &head) : 400;
	sbuf_reset(&s->page);
	if (status == 200) {
		struct exp_health h;
		exp_health_read(&h, exp_queue_depth(s->queue));
		exp_metrics_prometheus(s->metrics, &h, &s->page);
	} else {
		sbuf_printf(&s->page, "%s\n", status == 404 ? "not found: the metrics are at /metrics"
					      : status == 405 ? "method not allowed"
							      : "bad request");
	}
	if (s->page.oom) {
		status = 503;
		sbuf_reset(&s->page);
	}
	const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed"
					       : status == 503 ? "Service Unavailable" : "Bad Request";
	char hdr[256];
	int n = snprintf(hdr, sizeof hdr,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, reason,
			 status == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8",
			 s->page.len);
	uint64_t deadline = exp_mono_ms() + EXP_PROM_WRITE_MS;
	write_all(fd, hdr, (size_t)n, deadline);
	if (!head)
		write_all(fd, s->page.p, s->page.len, deadline);
	STAT_ADD(metrics_scrapes, status == 200);
}

static void accept_all(struct exp_metrics_server *s, int lfd)
{
	for (int i = 0; i < 16; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		serve_one(s, fd);
		close(fd);
	}
}

/* ---- OTLP --------------------------------------------------------------- */

static void export_otlp(struct exp_metrics_server *s)
{
	struct exp_health h;
	exp_health_read(&h, exp_queue_depth(s->queue));
	sbuf_reset(&s->body);
	uint32_t points = 0;
	if (!exp_metrics_otlp(s->metrics, &h, unix_ns(), s->start_unix_ns, &s->body, &points)) {
		STAT_ADD(metrics_export_errors, 1);
		exp_stats_error("otlp metrics: out of memory encoding %u data points", points);
		return;
	}
	exp_delivery_push(s->delivery, &s->body, points);
}

static void *metrics_main(void *arg)
{
	struct exp_metrics_server *s = arg;
	while (!atomic_load(&s->stopping)) {
		struct pollfd pf[EXP_PROM_MAX_LISTENERS + 1];
		size_t n = 0;
		pf[n++] = (struct pollfd){.fd = s->wake_fd, .events = POLLIN};
		for (size_t i = 0; i < s->n_listen; i++)
			pf[n++] = (struct pollfd){.fd = s->listen_fd[i], .events = POLLIN};
		uint64_t now = exp_mono_ms();
		int timeout = 1000; /* the graph's expiry tick */
		if (s->delivery) {
			if (now >= s->next_export_ms) {
				export_otlp(s);
				s->next_export_ms = now + s->cfg->metric_interval_ms;
			}
			uint64_t left = s->next_export_ms - now;
			timeout = left < (uint64_t)timeout ? (int)left : timeout;
		}
		int r = poll(pf, n, timeout);
		exp_metrics_expire(s->metrics, exp_mono_ms());
		if (r <= 0)
			continue;
		for (size_t i = 1; i < n; i++)
			if (pf[i].revents & POLLIN)
				accept_all(s, pf[i].fd);
	}
	return NULL;
}

/* ---- lifetime ----------------------------------------------------------- */

static void server_free(struct exp_metrics_server *s)
{
	for (size_t i = 0; i < s->n_listen; i++)
		close(s->listen_fd[i]);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	if (s->delivery)
		exp_delivery_free(s->delivery);
	sbuf_free(&s->page);
	sbuf_free(&s->body);
	free(s);
}

struct exp_metrics_server *exp_metrics_server_start(const struct exp_config *c, struct exp_metrics *m,
						    struct exp_queue *q, char *err, size_t errcap)
{
	struct exp_metrics_server *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	*s = (struct exp_metrics_server){.cfg = c, .metrics = m, .queue = q, .wake_fd = -1,
					 .start_unix_ns = unix_ns()};
	sbuf_init(&s->page);
	sbuf_init(&s->body);
	if ((s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		snprintf(err, errcap, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if ((c->metrics_exporters & EXP_METRICS_PROMETHEUS) && open_listeners(s, err, errcap) < 0)
		goto fail;
	if ((c->metrics_exporters & EXP_METRICS_OTLP) && !(s->delivery = exp_delivery_open_metrics(c, err, errcap)))
		goto fail;
	s->next_export_ms = exp_mono_ms() + c->metric_interval_ms;
	if (pthread_create(&s->thread, NULL, metrics_main, s) != 0) {
		snprintf(err, errcap, "cannot start the metrics thread");
		goto fail;
	}
	s->started = true;
	return s;
fail:
	server_free(s);
	return NULL;
}

void exp_metrics_server_begin_stop(struct exp_metrics_server *s, uint32_t budget_ms)
{
	if (!s || s->stop_begun)
		return;
	s->stop_begun = true;
	atomic_store(&s->stopping, true);
	uint64_t one = 1;
	(void)!write(s->wake_fd, &one, sizeof one);
	if (s->started)
		pthread_join(s->thread, NULL);
	s->started = false;
	if (s->delivery) {
		export_otlp(s); /* the last cumulative values */
		exp_delivery_begin_close(s->delivery, budget_ms);
	}
}

void exp_metrics_server_stop(struct exp_metrics_server *s, uint32_t budget_ms)
{
	if (!s)
		return;
	exp_metrics_server_begin_stop(s, budget_ms);
	if (s->delivery)
		exp_delivery_finish(s->delivery);
	server_free(s);
}
