/* http_trace.c — see http_trace.h. Runs only for traced TCP sockets; every
 * function here is on a traced path (locks and malloc are allowed), and each
 * keeps the application's view of its call exact: same bytes (plus the
 * injected header lines on the wire), same return value, same errno. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "http_trace.h"
#include "proto/http.h"
#include "proto/w3c.h"

TS_REAL(sendmsg, ssize_t, (int, const struct msghdr *, int))
TS_REAL(send, ssize_t, (int, const void *, size_t, int))

#define MAX_INFLIGHT 4 /* requests awaiting a response on one connection */
#define INJECT_MAX (16 + W3C_TRACEPARENT_LEN + 16 + 512 + 16 + W3C_BAGGAGE_MAX_BYTES)
/* Room for the encoded per-connection attributes: a server's five take at
 * most 205 bytes, two of them a 47-character address. */
#define CONN_ATTRS_MAX 224

/* One request/response exchange. */
struct exchange {
	struct ts_span span;
	uint64_t start_ns;
	unsigned resp_flags;
	bool injected, busy;
	uint16_t status;
};

struct ts_http {
	_Atomic int mu; /* conn_lock(): 0 free, 1 held, 2 held with waiters */
	bool server;
	bool req_active, resp_active;
	struct http_msg_state req, resp;
	struct http_fields *fields; /* lent to `req` while a head is parsed */
	struct exchange *cur;       /* request being parsed (before its head is done) */
	struct exchange *q[MAX_INFLIGHT]; /* heads done, awaiting their response, oldest first */
	unsigned nq;
	char *inj;                  /* injected bytes the kernel has not taken yet */
	uint16_t inj_len, inj_off;
	char last_req_byte; /* last request byte that went out: a blank line may span two writes */
	char peer[48];      /* the peer's address, formatted once per connection */
	/* The attributes every span of this connection carries (peer, ports),
	 * encoded once at its first request head; 0 attributes until then. */
	uint8_t conn_attrs_n;
	uint16_t conn_attrs_len;
	uint8_t conn_attrs[CONN_ATTRS_MAX];
	/* Owned for the life of the state (recycled with it), so a request costs
	 * no allocation: the field sink and one exchange per request in flight. */
	struct http_fields *fields_buf;
	struct exchange pool[MAX_INFLIGHT + 1];
	struct ts_http *next_free;
};

_Atomic uint64_t ts_http_unmatched;

/* The per-connection lock, taken two or three times per request: a futex
 * word rather than a pthread mutex, because uncontended it is one atomic
 * instruction each way instead of ~40 instructions of glibc's lock and
 * unlock (threads sharing one connection are rare; they still wait, in the
 * kernel, never spin). The classic three-state futex lock: a waiter marks
 * the word 2 so the unlocker knows to wake it. The slow paths keep errno:
 * a hook holds the lock around the application's own call. */
static void conn_lock(struct ts_http *h)
{
	int c = 0;

	if (TS_LIKELY(atomic_compare_exchange_strong_explicit(&h->mu, &c, 1, memory_order_acquire,
							      memory_order_relaxed)))
		return;
	int saved = errno;
	if (c != 2)
		c = atomic_exchange_explicit(&h->mu, 2, memory_order_acquire);
	while (c != 0) {
		syscall(SYS_futex, &h->mu, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
		c = atomic_exchange_explicit(&h->mu, 2, memory_order_acquire);
	}
	errno = saved;
}

static void conn_unlock(struct ts_http *h)
{
	if (TS_LIKELY(atomic_exchange_explicit(&h->mu, 0, memory_order_release) == 1))
		return;
	int saved = errno;
	syscall(SYS_futex, &h->mu, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	errno = saved;
}

/* ---- allocation: states are recycled, never freed, so a racing thread that
 * still holds a pointer after close() can never touch unmapped memory ---- */

static struct ts_http *free_list;
static pthread_mutex_t free_mu = PTHREAD_MUTEX_INITIALIZER;

static struct ts_http *http_alloc(bool server)
{
	pthread_mutex_lock(&free_mu);
	struct ts_http *h = free_list;
	if (h)
		free_list = h->next_free;
	pthread_mutex_unlock(&free_mu);
	if (!h && !(h = calloc(1, sizeof *h)))
		return NULL;
	struct http_fields *keep = h->fields_buf;
	h->req_active = h->resp_active = false;
	h->cur = NULL;
	h->nq = 0;
	h->inj = NULL;
	h->last_req_byte = 0;
	h->peer[0] = 0;
	h->conn_attrs_n = 0;
	for (unsigned i = 0; i <= MAX_INFLIGHT; i++)
		h->pool[i].busy = false;
	h->fields = NULL;
	h->fields_buf = keep ? keep : malloc(sizeof *h->fields_buf);
	atomic_store(&h->mu, 0);
	h->server = server;
	return h;
}

static void http_recycle(struct ts_http *h)
{
	pthread_mutex_lock(&free_mu);
	h->next_free = free_list;
	free_list = h;
	pthread_mutex_unlock(&free_mu);
}

/* ---- byte access across an iovec ---------------------------------------------- */

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static int iov_byte(const struct iovec *iov, int n, size_t off)
{
	for (int i = 0; i < n; i++) {
		if (off < iov[i].iov_len)
			return ((const unsigned char *)iov[i].iov_base)[off];
		off -= iov[i].iov_len;
	}
	return -1;
}

/* Copies up to cap bytes from the start of the iovec. */
static size_t iov_head(const struct iovec *iov, int n, char *out, size_t cap)
{
	size_t got = 0;
	for (int i = 0; i < n && got < cap; i++) {
		size_t take = iov[i].iov_len < cap - got ? iov[i].iov_len : cap - got;
		memcpy(out + got, iov[i].iov_base, take);
		got += take;
	}
	return got;
}

/* ---- span attributes ------------------------------------------------------------ */

/* The connection's attributes, encoded once: one copy per request. */
static void put_conn_attrs(struct ts_span *s, const struct ts_http *h)
{
	struct ts_wbuf w;
	if (!ts_span_attrs_open(s, &w))
		return;
	ts_put_bytes(&w, h->conn_attrs, h->conn_attrs_len);
	ts_span_attrs_close(s, &w, h->conn_attrs_n);
}

/* ---- exchanges --------------------------------------------------------------- */

static const char *errno_name(int err)
{
	const char *n = strerrorname_np(err);
	return n ? n : "io_error";
}

static void exchange_free(struct exchange *x)
{
	if (x)
		x->busy = false;
}

static void finish(struct ts_http *h, struct exchange *x, const char *error_type, const char *msg)
{
	struct ts_span *s = &x->span;
	if (x->status)
		ts_span_put_int(s, TS_KEY("http.response.status_code"), x->status);
	if (error_type) {
		ts_span_error(s, error_type, msg);
		if (!h->server)
			ts_span_stack(s);
	} else if (x->status >= 500 || (!h->server && x->status >= 400)) {
		char code[8];
		snprintf(code, sizeof code, "%u", x->status);
		ts_span_error(s, code, NULL);
		if (!h->server)
			ts_span_stack(s);
	}
	ts_span_end(s);
	if (h->server) {
		/* The request is answered: the thread is no longer working for it. */
		const struct ts_ctx *c = ts_ctx_current();
		if (c != &ts_process_ctx && !memcmp(c->span_id, s->span_id, 8))
			ts_ctx_set(NULL);
	}
	exchange_free(x);
}

static void pop_front(struct ts_http *h)
{
	for (unsigned i = 1; i < h->nq; i++)
		h->q[i - 1] = h->q[i];
	h->nq--;
}

static void fail_all(struct ts_http *h, const char *error_type, const char *msg)
{
	while (h->nq) {
		struct exchange *x = h->q[0];
		pop_front(h);
		finish(h, x, error_type, msg);
	}
	exchange_free(h->cur);
	h->cur = NULL;
	h->fields = NULL;
	h->req_active = h->resp_active = false;
}

/* ---- request heads -------------------------------------------------------------- */

static const char *peer_str(const struct ts_fd *e, struct ts_http *h)
{
	if (!h->peer[0])
		ts_peer_format(&e->peer, h->peer, sizeof h->peer);
	return h->peer;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	struct ts_peer p;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 || !ts_peer_from_sockaddr(&p, &ss, len))
		return 0;
	return p.port;
}

/* The peer's address and port on both sides, plus the server's view of the
 * client and its own port, or the client's transport: the same for every
 * request of the connection, and in the order the spans always had them. */
static void conn_attrs_build(int fd, const struct ts_fd *e, struct ts_http *h)
{
	const char *addr = peer_str(e, h);
	size_t alen = strlen(addr);
	struct ts_wbuf w;
	unsigned n = 2;

	ts_wbuf_init(&w, h->conn_attrs, sizeof h->conn_attrs);
	if (h->server) {
		ts_put_attr_str(&w, TS_KEY("client.address"), addr, alen);
		ts_put_attr_int(&w, TS_KEY("client.port"), e->peer.port);
		ts_put_attr_int(&w, TS_KEY("server.port"), local_port(fd));
		n += 3;
	}
	ts_put_attr_str(&w, TS_KEY("network.peer.address"), addr, alen);
	ts_put_attr_int(&w, TS_KEY("network.peer.port"), e->peer.port);
	if (!h->server) {
		ts_put_attr_str(&w, TS_KEY("network.transport"), "tcp", 3);
		ts_put_attr_str(&w, TS_KEY("network.type"), e->peer.family == AF_INET6 ? "ipv6" : "ipv4", 4);
		n += 2;
	}
	h->conn_attrs_len = w.overflow ? 0 : (uint16_t)w.len;
	h->conn_attrs_n = w.overflow ? 0 : (uint8_t)n;
}

/* The port after a Host header's ':' (s..end): strtol's answer, as it always
 * was, but the usual few plain digits without libc's locale machinery. */
static long host_port(const char *s, const char *end)
{
	const char *p = s;
	long v = 0;

	for (; p < end && p - s < 5 && *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (*p - '0');
	return p == end && p > s ? v : strtol(s, NULL, 10);
}

/* The host name of a Host header value ("name:port", "[v6]:port", "name"),
 * as a slice of it; *port (if asked) is its port, -1 without one. */
static const char *split_host(const char *host, size_t len, size_t *name_len, long *port)
{
	const char *colon = memrchr(host, ':', len);
	if (port)
		*port = -1;
	if (host[0] == '[') { /* [v6]:port */
		const char *rb = memchr(host, ']', len);
		if (rb) {
			if (port && rb[1] == ':')
				*port = host_port(rb + 2, host + len);
			*name_len = (size_t)(rb - host - 1);
			return host + 1;
		}
	}
	if (colon && memchr(host, ':', len) == colon) {
		if (port)
			*port = host_port(colon + 1, host + len);
		len = (size_t)(colon - host);
	}
	*name_len = len;
	return host;
}

static void version_attr(struct ts_span *s, const struct http_msg_state *m)
{
	ts_span_put_str(s, TS_KEY("network.protocol.version"), m->version_minor ? "1.1" : "1.0", 3);
}

/* The application sent its own traceparent: our span joins that trace as a
 * child of the application's span, so the traces still connect. */
static void adopt_app_parent(struct ts_span *s, const struct http_msg_state *m)
{
	struct w3c_traceparent tp;
	if (!(m->flags & HTTP_F_TRACEPARENT) || !w3c_traceparent_parse(m->traceparent, m->traceparent_len, &tp))
		return;
	struct ts_ctx app = {.flags = tp.flags & W3C_FLAG_SAMPLED, .valid = true};
	memcpy(app.trace_id, tp.trace_id, 16);
	memcpy(app.span_id, tp.span_id, 8);
	memcpy(s->trace_id, tp.trace_id, 16);
	memcpy(s->parent_span_id, tp.span_id, 8);
	s->has_parent = true;
	s->flags = (uint8_t)(ts_sample(s->trace_id, &app) ? TS_SPAN_F_SAMPLED : 0);
	s->recording = (s->flags & TS_SPAN_F_SAMPLED) != 0;
}

static void set_name(struct ts_span *s, const char *name, size_t n)
{
	if (n > sizeof s->name)
		n = sizeof s->name;
	memcpy(s->name, name, n);
	s->name_len = (uint8_t)n;
}

static void client_head(int fd, struct ts_fd *e, struct ts_http *h, struct exchange *x)
{
	struct ts_span *s = &x->span;
	const struct http_fields *f = h->fields;
	if (x->injected == false)
		adopt_app_parent(s, &h->req);
	set_name(s, h->req.method, h->req.method_len);
	ts_span_put_str(s, TS_KEY("http.request.method"), h->req.method, h->req.method_len);
	const char *host;
	size_t hlen;
	long port = -1;
	if (f && (h->req.flags & HTTP_F_HOST)) {
		host = split_host(f->host, f->host_len, &hlen, &port);
	} else {
		host = e->server_address;
		hlen = strlen(host);
	}
	if (!hlen) {
		host = peer_str(e, h);
		hlen = strlen(host);
	}
	if (port < 0)
		port = e->peer.port;
	ts_span_put_str(s, TS_KEY("server.address"), host, hlen);
	ts_span_put_int(s, TS_KEY("server.port"), port);
	if (f) {
		char url[HTTP_TARGET_CAP + HTTP_HOST_CAP + 16], clean[sizeof url];
		size_t n = 0;
		if (f->target[0] == '/') { /* origin-form: the URL is ours to make */
			const char *auth = (h->req.flags & HTTP_F_HOST) ? f->host : host;
			size_t alen = (h->req.flags & HTTP_F_HOST) ? f->host_len : hlen;
			memcpy(url, "http://", 7);
			memcpy(url + 7, auth, alen);
			n = 7 + alen;
		} /* else absolute-form (proxy) or '*': as sent */
		memcpy(url + n, f->target, f->target_len);
		n += f->target_len;
		n = http_url_redact_query(clean, sizeof clean, url, n);
		ts_span_put_str(s, TS_KEY("url.full"), clean, n < sizeof clean ? n : sizeof clean - 1);
	}
	if (!h->conn_attrs_n)
		conn_attrs_build(fd, e, h);
	put_conn_attrs(s, h);
	version_attr(s, &h->req);
}

/* An incoming request: its span continues the caller's trace, or starts a new
 * one — never a child of the daemon's process span. */
static void server_head(int fd, struct ts_fd *e, struct ts_http *h, struct exchange *x)
{
	const struct http_fields *f = h->fields;
	struct ts_ctx parent = {0};
	struct w3c_traceparent tp;
	bool have_tp = ts_cfg.propagate_tracecontext && (h->req.flags & HTTP_F_TRACEPARENT) &&
		       w3c_traceparent_parse(h->req.traceparent, h->req.traceparent_len, &tp);
	if (have_tp) {
		memcpy(parent.trace_id, tp.trace_id, 16);
		memcpy(parent.span_id, tp.span_id, 8);
		parent.flags = tp.flags & W3C_FLAG_SAMPLED;
		parent.valid = parent.remote = true;
	}
	char ts_out[W3C_TRACESTATE_PROPAGATE_MAX + 1], bg_out[W3C_BAGGAGE_MAX_BYTES + 1];
	size_t ts_len = 0, bg_len = 0;
	if (have_tp && f && (h->req.flags & HTTP_F_TRACESTATE))
		ts_len = w3c_tracestate_build(ts_out, sizeof ts_out, f->tracestate, f->tracestate_len);
	if (ts_cfg.propagate_baggage && f && (h->req.flags & HTTP_F_BAGGAGE))
		bg_len = w3c_baggage_build(bg_out, sizeof bg_out, f->baggage, f->baggage_len);
	if (ts_len >= sizeof ts_out)
		ts_len = 0;
	if (bg_len >= sizeof bg_out)
		bg_len = 0;

	struct ts_span *s = &x->span;
	ts_span_start_at(s, h->req.method, TS_KIND_SERVER, &parent, x->start_ns); /* invalid parent: new trace */
	struct ts_ctx mine;
	ts_span_ctx(s, &mine);
	ts_ctx_set(&mine);
	ts_extras_set(ts_out, ts_len, bg_out, bg_len);
	if (!s->recording)
		return; /* sampled out: it only propagates its context */

	ts_span_put_str(s, TS_KEY("http.request.method"), h->req.method, h->req.method_len);
	ts_span_put_str(s, TS_KEY("url.scheme"), "http", 4);
	if (f) {
		/* An absolute-form target (a request to a proxy) carries scheme and
		 * authority, maybe with userinfo: url.path is only what follows. */
		const char *path = f->target, *end = f->target + f->target_len;
		const char *scheme_end = path[0] == '/' ? NULL : strstr(path, "://");
		if (scheme_end) {
			const char *slash = memchr(scheme_end + 3, '/', (size_t)(end - scheme_end - 3));
			path = slash ? slash : "/";
			end = slash ? end : path + 1;
		}
		const char *q = memchr(path, '?', (size_t)(end - path));
		ts_span_put_str(s, TS_KEY("url.path"), path, (size_t)((q ? q : end) - path));
		if (q) {
			char clean[HTTP_TARGET_CAP + 1];
			size_t n = http_query_redact(clean, sizeof clean, q + 1, (size_t)(end - q - 1));
			ts_span_put_str(s, TS_KEY("url.query"), clean, n < sizeof clean ? n : sizeof clean - 1);
		}
		if (h->req.flags & HTTP_F_USER_AGENT)
			ts_span_put_str(s, TS_KEY("user_agent.original"), f->user_agent, f->user_agent_len);
		if (h->req.flags & HTTP_F_HOST) {
			size_t hlen;
			const char *host = split_host(f->host, f->host_len, &hlen, NULL);
			ts_span_put_str(s, TS_KEY("server.address"), host, hlen);
		}
	}
	if (!h->conn_attrs_n)
		conn_attrs_build(fd, e, h);
	put_conn_attrs(s, h);
	version_attr(s, &h->req);
}

/* ---- feeding the parsers with bytes that really went over the wire ---------------- */

static struct exchange *begin_exchange(struct ts_http *h)
{
	struct exchange *x = NULL;
	for (unsigned i = 0; i <= MAX_INFLIGHT && !x; i++)
		if (!h->pool[i].busy)
			x = &h->pool[i];
	if (!x)
		return NULL; /* cannot happen: at most MAX_INFLIGHT queued + one being parsed */
	x->busy = true;
	x->injected = false;
	x->status = 0;
	x->resp_flags = 0;
	x->start_ns = ts_now_ns();
	if (!h->server) /* the client span exists from the first byte: its id goes into the header */
		ts_span_start_at(&x->span, "HTTP", TS_KIND_CLIENT, NULL, x->start_ns);
	return x;
}

static void head_done(int fd, struct ts_fd *e, struct ts_http *h)
{
	struct exchange *x = h->cur;
	h->cur = NULL;
	if (!x)
		return;
	if (h->server)
		server_head(fd, e, h, x);
	else
		client_head(fd, e, h, x);
	x->resp_flags = http_response_flags_for(&h->req);
	h->fields = NULL;
	h->req.fields = NULL;
	if (h->nq == MAX_INFLIGHT) { /* a peer pipelining deeper than we follow */
		atomic_fetch_add(&ts_http_unmatched, 1);
		ts_span_attr_bool(&x->span, "traceshim.http.response_not_tracked", true);
		finish(h, x, NULL, NULL);
		return;
	}
	h->q[h->nq++] = x;
}

static void stop_watching(struct ts_fd *e, struct ts_http *h)
{
	fail_all(h, NULL, NULL);
	atomic_store(&e->proto, TS_PROTO_OTHER);
}

/* One parser event from [*p, *p + *n), advancing past what it consumed. */
static enum http_event feed_step(struct http_msg_state *st, const char **p, size_t *n)
{
	size_t used;
	enum http_event ev = http_feed(st, *p, *n, &used);
	*p += used;
	*n -= used;
	return ev;
}

static void feed_requests(int fd, struct ts_fd *e, struct ts_http *h, const char *p, size_t n)
{
	for (;;) {
		if (!h->req_active) {
			if (!n)
				return;
			h->fields = h->fields_buf; /* NULL if it could not be had: framing still works */
			http_request_init(&h->req, h->fields);
			http_feed_quiet_start_line(&h->req);
			if (!h->cur)
				h->cur = begin_exchange(h);
			h->req_active = true;
		}
		switch (feed_step(&h->req, &p, &n)) {
		case HTTP_EV_NEED_MORE:
			return;
		case HTTP_EV_START_LINE_DONE:
			break;
		case HTTP_EV_HEADERS_DONE:
			head_done(fd, e, h);
			break;
		case HTTP_EV_MESSAGE_DONE:
			h->req_active = false;
			break;
		case HTTP_EV_ERROR:
			stop_watching(e, h);
			return;
		}
	}
}

static void response_done(struct ts_http *h)
{
	h->resp_active = false;
	uint16_t st = h->resp.status;
	if (st >= 100 && st < 200 && st != 101)
		return; /* interim response: the final one follows for the same request */
	if (!h->nq)
		return;
	struct exchange *x = h->q[0];
	pop_front(h);
	finish(h, x, NULL, NULL);
}

static void feed_responses(struct ts_fd *e, struct ts_http *h, const char *p, size_t n)
{
	for (;;) {
		if (!h->resp_active) {
			if (!n || !h->nq)
				return; /* bytes nobody asked for: not ours to interpret */
			http_response_init(&h->resp, h->q[0]->resp_flags, NULL);
			http_feed_quiet_start_line(&h->resp);
			h->resp_active = true;
		}
		switch (feed_step(&h->resp, &p, &n)) {
		case HTTP_EV_NEED_MORE:
			return;
		case HTTP_EV_START_LINE_DONE:
			break;
		case HTTP_EV_HEADERS_DONE:
			if (h->nq)
				h->q[0]->status = h->resp.status;
			if (h->resp.flags & HTTP_F_TUNNEL) { /* upgrade/CONNECT: the rest is not HTTP */
				response_done(h);
				stop_watching(e, h);
				return;
			}
			break;
		case HTTP_EV_MESSAGE_DONE:
			response_done(h);
			break;
		case HTTP_EV_ERROR:
			stop_watching(e, h);
			return;
		}
	}
}

static void feed_iov(int fd, struct ts_fd *e, struct ts_http *h, bool requests, const struct iovec *iov, int cnt,
		     size_t n)
{
	for (int i = 0; i < cnt && n > 0 && atomic_load(&e->proto) == TS_PROTO_HTTP; i++) {
		size_t take = iov[i].iov_len < n ? iov[i].iov_len : n;
		if (requests)
			feed_requests(fd, e, h, iov[i].iov_base, take);
		else
			feed_responses(e, h, iov[i].iov_base, take);
		n -= take;
	}
}

/* ---- deciding whether a connection speaks HTTP --------------------------------------- */

/* Sniffs the first bytes of the request direction (client writes, server
 * reads). Returns the state, creating it on YES. `seen` is how many bytes of
 * this call the sniffer may look at. */
static struct ts_http *sniff(struct ts_fd *e, bool server, const struct iovec *iov, int cnt, size_t seen)
{
	char buf[HTTP_SNIFF_MAX];
	size_t have = e->sniff_len;
	memcpy(buf, e->sniff, have);
	size_t room = sizeof buf - have;
	size_t got = iov_head(iov, cnt, buf + have, room < seen ? room : seen);
	switch (http_request_sniff(buf, have + got)) {
	case HTTP_SNIFF_NO:
		atomic_store(&e->proto, TS_PROTO_OTHER);
		return NULL;
	case HTTP_SNIFF_NEED_MORE:
		return NULL;
	case HTTP_SNIFF_YES:
		break;
	}
	struct ts_http *h = http_alloc(server);
	if (!h) {
		atomic_store(&e->proto, TS_PROTO_OTHER);
		return NULL;
	}
	atomic_store(&e->http, h);
	atomic_store(&e->proto, TS_PROTO_HTTP);
	return h;
}

/* Bytes of an undecided connection that went out/in: kept for the sniffer
 * and for the parser, which must see the message from its first byte. */
static void remember_sniffed(struct ts_fd *e, const struct iovec *iov, int cnt, size_t n)
{
	size_t room = sizeof e->sniff - e->sniff_len;
	char tmp[sizeof e->sniff];
	size_t got = iov_head(iov, cnt, tmp, n < room ? n : room);
	memcpy(e->sniff + e->sniff_len, tmp, got);
	e->sniff_len = (uint8_t)(e->sniff_len + got);
	if (e->sniff_len == sizeof e->sniff)
		atomic_store(&e->proto, TS_PROTO_OTHER); /* 16 bytes and still unsure: not a request line */
}

/* ---- injection ------------------------------------------------------------------------ */

static size_t build_headers(const struct exchange *x, char *out, size_t cap)
{
	size_t n = 0;
	if (ts_cfg.propagate_tracecontext) {
		struct w3c_traceparent tp = {.version = 0};
		memcpy(tp.trace_id, x->span.trace_id, 16);
		memcpy(tp.span_id, x->span.span_id, 8);
		tp.flags = (x->span.flags & TS_SPAN_F_SAMPLED) ? W3C_FLAG_SAMPLED : 0;
		memcpy(out, "traceparent: ", 13);
		n = 13 + w3c_traceparent_format(&tp, out + 13);
		out[n++] = '\r';
		out[n++] = '\n';
	}
	const struct ts_extras *xs = ts_extras_current();
	if (xs && ts_cfg.propagate_tracecontext && xs->tracestate_len && n + xs->tracestate_len + 16 < cap)
		n += (size_t)snprintf(out + n, cap - n, "tracestate: %s\r\n", xs->tracestate);
	if (xs && ts_cfg.propagate_baggage && xs->baggage_len && n + xs->baggage_len + 16 < cap)
		n += (size_t)snprintf(out + n, cap - n, "baggage: %s\r\n", xs->baggage);
	return n;
}

/* Where the head of the request being written ends in this call's bytes:
 * the offset of its blank line, or -1 when it does not end here (or the
 * application already sent a traceparent, or the head is broken). Runs on a
 * copy of the parser state that stores nothing. */
static long find_injection_point(const struct ts_http *h, const struct iovec *iov, int cnt)
{
	struct http_msg_state probe;
	if (h->req_active) {
		probe = h->req;
		probe.fields = NULL;
	} else {
		http_request_init(&probe, NULL);
	}
	size_t off = 0;
	for (int i = 0; i < cnt; i++) {
		const char *p = iov[i].iov_base;
		size_t n = iov[i].iov_len;
		while (n) {
			size_t used;
			enum http_event ev = http_feed(&probe, p, n, &used);
			p += used;
			n -= used;
			off += used;
			if (ev == HTTP_EV_ERROR || ev == HTTP_EV_MESSAGE_DONE)
				return -1;
			if (ev == HTTP_EV_HEADERS_DONE) {
				if (probe.flags & HTTP_F_TRACEPARENT || iov_byte(iov, cnt, off - 1) != '\n')
					return -1;
				int before = off >= 2 ? iov_byte(iov, cnt, off - 2) : h->last_req_byte;
				if (before == '\r')
					return off >= 2 ? (long)(off - 2) : -1; /* a CRLF split over two writes: too late */
				return (long)(off - 1); /* LF-only blank line */
			}
			if (ev == HTTP_EV_NEED_MORE)
				break;
		}
	}
	/* The head has not ended, but if this write ends with the CR of the blank
	 * line (a CR right after a line's LF: no header line starts with CR), all
	 * headers are known: inject before that CR. */
	if (off && !(probe.flags & HTTP_F_TRACEPARENT) && iov_byte(iov, cnt, off - 1) == '\r') {
		int before = off >= 2 ? iov_byte(iov, cnt, off - 2) : h->last_req_byte;
		if (before == '\n')
			return (long)(off - 1);
	}
	return -1;
}

static bool nonblocking(int fd, int flags)
{
	if (flags & MSG_DONTWAIT)
		return true;
	int fl = fcntl(fd, F_GETFL);
	return fl >= 0 && (fl & O_NONBLOCK);
}

/* Sends the application's bytes with `hdr` spliced in at offset k, in one
 * call, and maps the kernel's count back to the application's buffer. */
static ssize_t send_spliced(int fd, struct ts_http *h, const struct iovec *iov, int cnt, size_t k, const char *hdr,
			    size_t hlen, const struct ts_out_call *call, bool *header_out)
{
	*header_out = false;
	struct iovec stackv[66], *v = stackv;
	if (cnt + 2 > 66 && !(v = malloc(sizeof *v * (size_t)(cnt + 2))))
		return -2; /* caller falls back to the plain call */
	int m = 0;
	size_t off = 0;
	bool placed = false;
	for (int i = 0; i < cnt; i++) {
		size_t len = iov[i].iov_len;
		if (!placed && k <= off + len) {
			size_t cut = k - off;
			if (cut)
				v[m++] = (struct iovec){iov[i].iov_base, cut};
			v[m++] = (struct iovec){(void *)hdr, hlen};
			if (len - cut)
				v[m++] = (struct iovec){(char *)iov[i].iov_base + cut, len - cut};
			placed = true;
		} else if (len) {
			v[m++] = iov[i];
		}
		off += len;
	}
	struct msghdr msg = {.msg_iov = v, .msg_iovlen = (size_t)m};
	int flags = 0;
	if (call->kind == TS_OUT_SENDMSG && call->msg) {
		msg.msg_name = call->msg->msg_name;
		msg.msg_namelen = call->msg->msg_namelen;
		msg.msg_control = call->msg->msg_control;
		msg.msg_controllen = call->msg->msg_controllen;
	} else if (call->kind == TS_OUT_SENDTO) {
		msg.msg_name = (void *)call->to;
		msg.msg_namelen = call->tolen;
	}
	if (call->kind == TS_OUT_SEND || call->kind == TS_OUT_SENDTO || call->kind == TS_OUT_SENDMSG)
		flags = call->flags;
	ssize_t n = real_sendmsg()(fd, &msg, flags);
	int err = errno;
	if (v != stackv)
		free(v);
	if (n < 0 || (size_t)n <= k) {
		if (n >= 0)
			ts_debug("fd %d: kernel took %zd bytes, before the header at %zu", fd, n, k);
		errno = err;
		return n;
	}
	*header_out = true;
	if ((size_t)n >= k + hlen)
		return n - (ssize_t)hlen;
	/* The kernel took part of the header: keep the rest for the next write. */
	size_t left = k + hlen - (size_t)n;
	ts_debug("fd %d: kernel took %zd of %zu bytes, %zu header bytes owed", fd, n, k + hlen, left);
	h->inj = malloc(left);
	if (h->inj) {
		memcpy(h->inj, hdr + (hlen - left), left);
		h->inj_len = (uint16_t)left;
		h->inj_off = 0;
	}
	if (k > 0)
		return (ssize_t)k;
	errno = nonblocking(fd, flags) ? EAGAIN : EINTR;
	return -1;
}

/* Header bytes owed from an earlier partial write go first. False (with
 * errno) when they could not all go: the application sees EAGAIN/EINTR. */
static bool flush_owed(int fd, struct ts_http *h, int flags)
{
	while (h->inj && h->inj_off < h->inj_len) {
		ssize_t n = real_send()(fd, h->inj + h->inj_off, h->inj_len - h->inj_off,
					MSG_NOSIGNAL | (flags & MSG_DONTWAIT));
		if (n <= 0) {
			if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
				errno = nonblocking(fd, flags) ? EAGAIN : EINTR;
			return false;
		}
		h->inj_off = (uint16_t)(h->inj_off + n);
	}
	free(h->inj);
	h->inj = NULL;
	return true;
}

static ssize_t client_write(int fd, struct ts_fd *e, struct ts_http *h, const struct iovec *iov, int cnt,
			    const struct ts_out_call *call)
{
	if (!flush_owed(fd, h, call->flags))
		return -1;
	long k = -1;
	bool propagate = ts_cfg.propagate_tracecontext || ts_cfg.propagate_baggage;
	if (propagate && (!h->req_active || h->cur) && (!h->cur || !h->cur->injected))
		k = find_injection_point(h, iov, cnt);
	ssize_t n = -2;
	if (k >= 0) {
		if (!h->cur)
			h->cur = begin_exchange(h);
		if (h->cur) {
			char hdr[INJECT_MAX];
			size_t hlen = build_headers(h->cur, hdr, sizeof hdr);
			bool out = false;
			n = hlen ? send_spliced(fd, h, iov, cnt, (size_t)k, hdr, hlen, call, &out) : -2;
			if (out) /* the header is (partly) out: never again for this request */
				h->cur->injected = true;
		}
	}
	if (n == -2)
		n = ts_out_repeat(fd, iov, cnt, call);
	int err = errno;
	if (n > 0) {
		feed_iov(fd, e, h, true, iov, cnt, (size_t)n);
		h->last_req_byte = (char)iov_byte(iov, cnt, (size_t)n - 1);
	}
	errno = err;
	return n;
}

/* ---- entry points ------------------------------------------------------------------------ */

ssize_t ts_http_out(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, const struct ts_out_call *call)
{
	bool server = atomic_load(&e->kind) == TS_FD_ACCEPTED;
	struct ts_http *h = atomic_load(&e->http);
	if (!h) {
		if (server) { /* a server that speaks first is not serving HTTP/1.x */
			atomic_store(&e->proto, TS_PROTO_OTHER);
			return ts_out_repeat(fd, iov, iovcnt, call);
		}
		h = sniff(e, false, iov, iovcnt, iov_total(iov, iovcnt));
		if (!h) {
			ssize_t n = ts_out_repeat(fd, iov, iovcnt, call);
			int err = errno;
			if (n > 0 && atomic_load(&e->proto) == TS_PROTO_UNKNOWN)
				remember_sniffed(e, iov, iovcnt, (size_t)n);
			errno = err;
			return n;
		}
		/* What went out while we were unsure is the start of this request. */
		conn_lock(h);
		feed_requests(fd, e, h, e->sniff, e->sniff_len);
		conn_unlock(h);
	}
	conn_lock(h);
	ssize_t n;
	if (atomic_load(&e->proto) != TS_PROTO_HTTP) {
		n = ts_out_repeat(fd, iov, iovcnt, call);
	} else if (server) {
		n = ts_out_repeat(fd, iov, iovcnt, call);
		int err = errno;
		if (n > 0)
			feed_iov(fd, e, h, false, iov, iovcnt, (size_t)n);
		else if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR)
			fail_all(h, errno_name(err), strerror(err));
		errno = err;
	} else {
		n = client_write(fd, e, h, iov, iovcnt, call);
		int err = errno;
		if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR)
			fail_all(h, errno_name(err), strerror(err));
		errno = err;
	}
	conn_unlock(h);
	return n;
}

void ts_http_in(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, ssize_t n, int err)
{
	if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR))
		return; /* nothing arrived, nothing went wrong: an event loop's every other read */
	bool server = atomic_load(&e->kind) == TS_FD_ACCEPTED;
	struct ts_http *h = atomic_load(&e->http);
	if (!h) {
		if (!server || n <= 0) {
			if (!server && n > 0) /* the server spoke first: not an HTTP/1.x client */
				atomic_store(&e->proto, TS_PROTO_OTHER);
			return;
		}
		h = sniff(e, true, iov, iovcnt, (size_t)n);
		if (!h) {
			if (atomic_load(&e->proto) == TS_PROTO_UNKNOWN)
				remember_sniffed(e, iov, iovcnt, (size_t)n);
			return;
		}
		conn_lock(h);
		feed_requests(fd, e, h, e->sniff, e->sniff_len);
		conn_unlock(h);
	}
	conn_lock(h);
	if (atomic_load(&e->proto) == TS_PROTO_HTTP) {
		if (n > 0) {
			feed_iov(fd, e, h, server, iov, iovcnt, (size_t)n);
		} else if (n == 0) {
			if (!server && h->resp_active && http_feed_eof(&h->resp) == HTTP_EV_MESSAGE_DONE)
				response_done(h);
			fail_all(h, "connection_closed", "the peer closed the connection before the response ended");
		} else {
			fail_all(h, errno_name(err), strerror(err));
		}
	}
	conn_unlock(h);
}

void ts_http_out_opaque(int fd, struct ts_fd *e, ssize_t n)
{
	(void)fd;
	struct ts_http *h = atomic_load(&e->http);
	if (!h || n <= 0 || atomic_load(&e->kind) != TS_FD_ACCEPTED)
		return;
	conn_lock(h);
	if (atomic_load(&e->proto) == TS_PROTO_HTTP && h->resp_active) {
		size_t left = (size_t)n;
		while (left && h->resp_active) {
			size_t used;
			enum http_event ev = http_feed_opaque(&h->resp, left, &used);
			left -= used;
			if (ev == HTTP_EV_MESSAGE_DONE)
				response_done(h);
			else if (ev != HTTP_EV_NEED_MORE || !used)
				break;
		}
	}
	conn_unlock(h);
}

static void release(int fd, struct ts_fd *e, bool owned)
{
	(void)fd;
	struct ts_http *h = atomic_exchange(&e->http, NULL);
	if (!h)
		return;
	conn_lock(h);
	if (owned) {
		if (!h->server && h->resp_active && http_feed_eof(&h->resp) == HTTP_EV_MESSAGE_DONE)
			response_done(h);
		fail_all(h, h->server ? NULL : "connection_closed", h->server ? NULL : "closed before the response ended");
	} else {
		/* A forked child's copy of its parent's state: the parent ends these. */
		for (unsigned i = 0; i < h->nq; i++)
			exchange_free(h->q[i]);
		h->nq = 0;
		exchange_free(h->cur);
		h->cur = NULL;
		h->fields = NULL;
	}
	free(h->inj);
	h->inj = NULL;
	conn_unlock(h);
	http_recycle(h);
}

/* TRACESTATE and BAGGAGE from the environment (env-carrier convention) are
 * the process context's extras; tracestate only with a valid TRACEPARENT. */
void ts_http_init(void)
{
	ts_http_release_hook = release;
	const char *tp = getenv("TRACEPARENT"), *tsv = getenv("TRACESTATE"), *bg = getenv("BAGGAGE");
	struct ts_extras *x = &ts_process_extras;
	struct w3c_traceparent t;
	if (ts_cfg.propagate_tracecontext && tp && tsv && w3c_traceparent_parse(tp, strlen(tp), &t)) {
		size_t n = w3c_tracestate_build(x->tracestate, sizeof x->tracestate, tsv, strlen(tsv));
		x->tracestate_len = (uint16_t)(n < sizeof x->tracestate ? n : 0);
	}
	if (ts_cfg.propagate_baggage && bg) {
		size_t n = w3c_baggage_build(x->baggage, sizeof x->baggage, bg, strlen(bg));
		x->baggage_len = (uint16_t)(n < sizeof x->baggage ? n : 0);
	}
	x->tracestate[x->tracestate_len] = 0;
	x->baggage[x->baggage_len] = 0;
}
