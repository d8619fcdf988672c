/* tracers/http1.c — the HTTP/1.x tracer.
 *
 * Client side (the stream's client end): every request written gets a CLIENT
 * span, ended when its response has been read; a traceparent header (plus
 * tracestate and baggage when the context has them) is injected as the LAST
 * header line of the request head, unless the application sent one itself.
 * A traceparent that is a forwarded copy of the one the thread's current
 * SERVER span received (a proxy passing its caller's header on) gets its
 * parent-id replaced in place by the CLIENT span's id: same length, so no
 * count moves, and the chain nests caller → proxy → upstream.
 * Server side: every request read gets a SERVER span continuing the
 * incoming traceparent (or a new trace), ended when the response has been
 * written; meanwhile it is the thread's current context.
 *
 * Parsing is shim/proto/http.h's; this file decides what the bytes mean for
 * spans and which edits to ask for. It never does I/O: the stream layer
 * (shim/stream.h) hands it the application's bytes that really moved. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto/http.h"
#include "proto/w3c.h"
#include "stream.h"

#define MAX_INFLIGHT 4 /* requests awaiting a response on one connection */
#define INJECT_MAX (16 + W3C_TRACEPARENT_LEN + 16 + 512 + 16 + W3C_BAGGAGE_MAX_BYTES)
/* Room for the encoded per-connection attributes: a server's five take at
 * most 205 bytes, two of them a 47-character address; TLS adds up to three. */
#define CONN_ATTRS_MAX 400

/* One request/response exchange. */
struct exchange {
	struct ts_span span;
	uint64_t start_ns;
	unsigned resp_flags;
	bool injected, rewritten, busy;
	uint16_t status;
};

enum planned { PLANNED_NONE, PLANNED_INJECT, PLANNED_REWRITE };

struct http1 {
	bool server;
	bool req_active, resp_active;
	uint8_t planned;            /* an edit asked for the current request's head */
	struct http_msg_state req, resp;
	struct http_fields *fields; /* lent to `req` while a head is parsed */
	struct exchange *cur;       /* request being parsed (before its head is done) */
	struct exchange *q[MAX_INFLIGHT]; /* heads done, awaiting their response, oldest first */
	unsigned nq;
	char last_req_byte; /* last request byte that went out: a blank line may span two writes */
	char peer[48];      /* the peer's address, formatted once per connection */
	/* The attributes every span of this connection carries (peer, ports,
	 * TLS), encoded once at its first request head; 0 attributes until then. */
	uint8_t conn_attrs_n;
	uint16_t conn_attrs_len;
	uint8_t conn_attrs[CONN_ATTRS_MAX];
	/* Owned for the life of the state (recycled with it), so a request costs
	 * no allocation: the field sink and one exchange per request in flight. */
	struct http_fields *fields_buf;
	struct exchange pool[MAX_INFLIGHT + 1];
	struct http1 *next_free;
};

_Atomic uint64_t ts_http_unmatched;

/* ---- allocation: recycled, never freed ------------------------------------------ */

static struct http1 *free_list;
static pthread_mutex_t free_mu = PTHREAD_MUTEX_INITIALIZER;

static struct http1 *http_alloc(bool server)
{
	pthread_mutex_lock(&free_mu);
	struct http1 *h = free_list;
	if (h)
		free_list = h->next_free;
	pthread_mutex_unlock(&free_mu);
	if (!h && !(h = calloc(1, sizeof *h)))
		return NULL;
	struct http_fields *keep = h->fields_buf;
	h->req_active = h->resp_active = false;
	h->planned = PLANNED_NONE;
	h->cur = NULL;
	h->nq = 0;
	h->last_req_byte = 0;
	h->peer[0] = 0;
	h->conn_attrs_n = 0;
	for (unsigned i = 0; i <= MAX_INFLIGHT; i++)
		h->pool[i].busy = false;
	h->fields = NULL;
	h->fields_buf = keep ? keep : malloc(sizeof *h->fields_buf);
	h->server = server;
	return h;
}

static void http_recycle(struct http1 *h)
{
	pthread_mutex_lock(&free_mu);
	h->next_free = free_list;
	free_list = h;
	pthread_mutex_unlock(&free_mu);
}

/* ---- span attributes ------------------------------------------------------------ */

/* The connection's attributes, encoded once: one copy per request. */
static void put_conn_attrs(struct ts_span *s, const struct http1 *h)
{
	struct ts_wbuf w;
	if (!ts_span_attrs_open(s, &w))
		return;
	ts_put_bytes(&w, h->conn_attrs, h->conn_attrs_len);
	ts_span_attrs_close(s, &w, h->conn_attrs_n);
}

static unsigned tls_attrs(struct ts_wbuf *w, const struct ts_conn_info *c)
{
	unsigned n = 0;
	if (!c->tls)
		return 0;
	if (c->tls_version[0]) {
		ts_put_attr_str(w, TS_KEY("tls.protocol.version"), c->tls_version, strlen(c->tls_version));
		n++;
	}
	if (c->tls_cipher[0]) {
		ts_put_attr_str(w, TS_KEY("tls.cipher"), c->tls_cipher, strlen(c->tls_cipher));
		n++;
	}
	if (c->alpn[0]) {
		ts_put_attr_str(w, TS_KEY("tls.next_protocol"), c->alpn, strlen(c->alpn));
		n++;
	}
	return n;
}

/* ---- exchanges --------------------------------------------------------------- */

static void exchange_free(struct exchange *x)
{
	if (x)
		x->busy = false;
}

static void finish(struct http1 *h, struct exchange *x, const char *error_type, const char *msg)
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

static void pop_front(struct http1 *h)
{
	for (unsigned i = 1; i < h->nq; i++)
		h->q[i - 1] = h->q[i];
	h->nq--;
}

static void fail_all(struct http1 *h, const char *error_type, const char *msg)
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

static const char *peer_str(struct ts_stream *st, struct http1 *h)
{
	if (!h->peer[0])
		ts_stream_peer_str(st, h->peer, sizeof h->peer);
	return h->peer;
}

/* The peer's address and port on both sides, plus the server's view of the
 * client and its own port, or the client's transport: the same for every
 * request of the connection, and in the order the spans always had them. */
static void conn_attrs_build(struct ts_stream *st, struct http1 *h)
{
	const char *addr = peer_str(st, h);
	size_t alen = strlen(addr);
	struct ts_wbuf w;
	unsigned n = 2;

	ts_wbuf_init(&w, h->conn_attrs, sizeof h->conn_attrs);
	if (!st->conn.peer.family) { /* a TLS session whose socket we never saw */
		n = tls_attrs(&w, &st->conn);
		h->conn_attrs_len = w.overflow ? 0 : (uint16_t)w.len;
		h->conn_attrs_n = w.overflow || !n ? 0 : (uint8_t)n;
		return;
	}
	if (h->server) {
		ts_put_attr_str(&w, TS_KEY("client.address"), addr, alen);
		ts_put_attr_int(&w, TS_KEY("client.port"), st->conn.peer.port);
		ts_put_attr_int(&w, TS_KEY("server.port"), ts_stream_local_port(st));
		n += 3;
	}
	ts_put_attr_str(&w, TS_KEY("network.peer.address"), addr, alen);
	ts_put_attr_int(&w, TS_KEY("network.peer.port"), st->conn.peer.port);
	if (!h->server) {
		ts_put_attr_str(&w, TS_KEY("network.transport"), "tcp", 3);
		ts_put_attr_str(&w, TS_KEY("network.type"), st->conn.peer.family == AF_INET6 ? "ipv6" : "ipv4", 4);
		n += 2;
	}
	n += tls_attrs(&w, &st->conn);
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

static void client_head(struct ts_stream *st, struct http1 *h, struct exchange *x)
{
	struct ts_span *s = &x->span;
	const struct http_fields *f = h->fields;
	if (!x->injected && !x->rewritten)
		adopt_app_parent(s, &h->req);
	set_name(s, h->req.method, h->req.method_len);
	ts_span_put_str(s, TS_KEY("http.request.method"), h->req.method, h->req.method_len);
	const char *host;
	size_t hlen;
	long port = -1;
	if (f && (h->req.flags & HTTP_F_HOST)) {
		host = split_host(f->host, f->host_len, &hlen, &port);
	} else {
		host = st->conn.server_address;
		hlen = strlen(host);
	}
	if (!hlen) {
		host = peer_str(st, h);
		hlen = strlen(host);
	}
	if (port < 0)
		port = st->conn.peer.family ? st->conn.peer.port : (st->conn.tls ? 443 : 80);
	ts_span_put_str(s, TS_KEY("server.address"), host, hlen);
	ts_span_put_int(s, TS_KEY("server.port"), port);
	if (f) {
		char url[HTTP_TARGET_CAP + HTTP_HOST_CAP + 16], clean[sizeof url];
		size_t n = 0;
		if (f->target[0] == '/') { /* origin-form: the URL is ours to make */
			const char *auth = (h->req.flags & HTTP_F_HOST) ? f->host : host;
			size_t alen = (h->req.flags & HTTP_F_HOST) ? f->host_len : hlen;
			size_t sl = st->conn.tls ? 8 : 7;
			memcpy(url, st->conn.tls ? "https://" : "http://", sl);
			memcpy(url + sl, auth, alen);
			n = sl + alen;
		} /* else absolute-form (proxy) or '*': as sent */
		memcpy(url + n, f->target, f->target_len);
		n += f->target_len;
		n = http_url_redact_query(clean, sizeof clean, url, n);
		ts_span_put_str(s, TS_KEY("url.full"), clean, n < sizeof clean ? n : sizeof clean - 1);
	}
	if (!h->conn_attrs_n)
		conn_attrs_build(st, h);
	put_conn_attrs(s, h);
	version_attr(s, &h->req);
}

/* An incoming request: its span continues the caller's trace, or starts a new
 * one — never a child of the daemon's process span. */
static void server_head(struct ts_stream *st, struct http1 *h, struct exchange *x)
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
	if (have_tp) { /* what a proxy forwarding this request's traceparent would send on */
		memcpy(mine.received_parent, tp.span_id, 8);
		mine.has_received_parent = true;
	}
	ts_ctx_set(&mine);
	ts_extras_set(ts_out, ts_len, bg_out, bg_len);
	if (!s->recording)
		return; /* sampled out: it only propagates its context */

	ts_span_put_str(s, TS_KEY("http.request.method"), h->req.method, h->req.method_len);
	if (st->conn.tls)
		ts_span_put_str(s, TS_KEY("url.scheme"), "https", 5);
	else
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
		conn_attrs_build(st, h);
	put_conn_attrs(s, h);
	version_attr(s, &h->req);
}

/* ---- feeding the parsers with bytes that really went over the wire ---------------- */

static struct exchange *begin_exchange(struct http1 *h)
{
	struct exchange *x = NULL;
	for (unsigned i = 0; i <= MAX_INFLIGHT && !x; i++)
		if (!h->pool[i].busy)
			x = &h->pool[i];
	if (!x)
		return NULL; /* cannot happen: at most MAX_INFLIGHT queued + one being parsed */
	x->busy = true;
	x->injected = x->rewritten = false;
	x->status = 0;
	x->resp_flags = 0;
	x->start_ns = ts_now_ns();
	if (!h->server) /* the client span exists from the first byte: its id goes into the header */
		ts_span_start_at(&x->span, "HTTP", TS_KIND_CLIENT, NULL, x->start_ns);
	return x;
}

static void head_done(struct ts_stream *st, struct http1 *h)
{
	struct exchange *x = h->cur;
	h->cur = NULL;
	if (!x)
		return;
	if (h->server)
		server_head(st, h, x);
	else
		client_head(st, h, x);
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

static void stop_watching(struct ts_stream *st, struct http1 *h)
{
	fail_all(h, NULL, NULL);
	ts_stream_give_up(st);
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

static void feed_requests(struct ts_stream *st, struct http1 *h, const char *p, size_t n)
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
			head_done(st, h);
			break;
		case HTTP_EV_MESSAGE_DONE:
			h->req_active = false;
			break;
		case HTTP_EV_ERROR:
			stop_watching(st, h);
			return;
		}
	}
}

static void response_done(struct http1 *h)
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

static void feed_responses(struct ts_stream *st, struct http1 *h, const char *p, size_t n)
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
				stop_watching(st, h);
				return;
			}
			break;
		case HTTP_EV_MESSAGE_DONE:
			response_done(h);
			break;
		case HTTP_EV_ERROR:
			stop_watching(st, h);
			return;
		}
	}
}

static void feed_iov(struct ts_stream *st, struct http1 *h, bool requests, const struct iovec *iov, int cnt,
		     size_t n)
{
	for (int i = 0; i < cnt && n > 0 && !st->given_up; i++) {
		size_t take = iov[i].iov_len < n ? iov[i].iov_len : n;
		if (requests)
			feed_requests(st, h, iov[i].iov_base, take);
		else
			feed_responses(st, h, iov[i].iov_base, take);
		n -= take;
	}
}


/* ---- injection and the forwarded-traceparent rewrite ------------------------------ */

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
 * the offset of its blank line (where our header lines go), or -1 when it
 * does not end here or the head is broken. *app_tp is set when the
 * application sent its own traceparent (then *probe holds its value). Runs
 * on a copy of the parser state that stores nothing. */
static long find_head_end(const struct http1 *h, const struct iovec *iov, int cnt, struct http_msg_state *probe,
			  bool *app_tp)
{
	*app_tp = false;
	if (h->req_active) {
		*probe = h->req;
		probe->fields = NULL;
	} else {
		http_request_init(probe, NULL);
	}
	size_t off = 0;
	for (int i = 0; i < cnt; i++) {
		const char *p = iov[i].iov_base;
		size_t n = iov[i].iov_len;
		while (n) {
			size_t used;
			enum http_event ev = http_feed(probe, p, n, &used);
			p += used;
			n -= used;
			off += used;
			if (ev == HTTP_EV_ERROR || ev == HTTP_EV_MESSAGE_DONE)
				return -1;
			if (ev == HTTP_EV_HEADERS_DONE) {
				if (ts_iov_byte(iov, cnt, off - 1) != '\n')
					return -1;
				*app_tp = (probe->flags & HTTP_F_TRACEPARENT) != 0;
				int before = off >= 2 ? ts_iov_byte(iov, cnt, off - 2) : h->last_req_byte;
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
	if (off && ts_iov_byte(iov, cnt, off - 1) == '\r') {
		int before = off >= 2 ? ts_iov_byte(iov, cnt, off - 2) : h->last_req_byte;
		if (before == '\n') {
			*app_tp = (probe->flags & HTTP_F_TRACEPARENT) != 0;
			return (long)(off - 1);
		}
	}
	return -1;
}

/* The offset (in this write, before `end`) of the traceparent header's value
 * `val`, found within one iovec element; -1 when it is not in this write
 * (the head started in an earlier one). */
static long find_traceparent_value(const struct iovec *iov, int cnt, size_t end, const char *val, size_t vlen)
{
	size_t base = 0;
	for (int i = 0; i < cnt && base < end; base += iov[i].iov_len, i++) {
		size_t l = iov[i].iov_len < end - base ? iov[i].iov_len : end - base;
		long at = http_header_value_at(iov[i].iov_base, l, "traceparent", 11, val, vlen);
		if (at >= 0)
			return (long)base + at;
	}
	return -1;
}

/* A request whose own traceparent is a copy of the one the current SERVER
 * span received (same trace id and parent id) is a proxy forwarding its
 * caller's header: its parent-id becomes our CLIENT span's id. Any other
 * traceparent the application made itself is left alone. */
static void plan_rewrite(struct ts_stream *st, struct http1 *h, const struct iovec *iov, int cnt, size_t head_end,
			 const struct http_msg_state *probe)
{
	const struct ts_ctx *c = ts_ctx_current();
	struct w3c_traceparent tp;
	if (!ts_cfg.propagate_tracecontext || !c->has_received_parent || (probe->flags & HTTP_F_TRACEPARENT_DUP) ||
	    !w3c_traceparent_parse(probe->traceparent, probe->traceparent_len, &tp) ||
	    memcmp(tp.trace_id, c->trace_id, 16) || memcmp(tp.span_id, c->received_parent, 8))
		return;
	long at = find_traceparent_value(iov, cnt, head_end, probe->traceparent, probe->traceparent_len);
	if (at < 0)
		return;
	static const char hex[] = "0123456789abcdef";
	char id[16];
	for (unsigned i = 0; i < 8; i++) {
		id[2 * i] = hex[h->cur->span.span_id[i] >> 4];
		id[2 * i + 1] = hex[h->cur->span.span_id[i] & 15];
	}
	/* "00-" + 32 hex trace id + "-": the parent id's 16 digits follow. */
	if (ts_stream_edit(st, (size_t)at + 36, 16, id, 16))
		h->planned = PLANNED_REWRITE;
}

static void h1_plan(void *t, struct ts_stream *st, const struct iovec *iov, int cnt, size_t len)
{
	struct http1 *h = t;
	(void)len;
	h->planned = PLANNED_NONE; /* anything planned for a write that did not go is void */
	if (h->server || st->n_edits)
		return; /* an edit still owed is this head's */
	if (!ts_cfg.propagate_tracecontext && !ts_cfg.propagate_baggage)
		return;
	if ((h->req_active && !h->cur) || (h->cur && (h->cur->injected || h->cur->rewritten)))
		return;
	struct http_msg_state probe;
	bool app_tp;
	long k = find_head_end(h, iov, cnt, &probe, &app_tp);
	if (k < 0)
		return;
	if (!h->cur)
		h->cur = begin_exchange(h);
	if (!h->cur)
		return;
	if (app_tp) {
		plan_rewrite(st, h, iov, cnt, (size_t)k, &probe);
		return;
	}
	char hdr[INJECT_MAX];
	size_t hlen = build_headers(h->cur, hdr, sizeof hdr);
	if (hlen && ts_stream_edit(st, (size_t)k, 0, hdr, hlen))
		h->planned = PLANNED_INJECT;
}

/* ---- the tracer ------------------------------------------------------------------ */

static enum ts_claim h1_claim(const char *p, size_t n, bool from_client)
{
	if (!from_client)
		return TS_CLAIM_NO; /* the server spoke first: not HTTP/1.x */
	switch (http_request_sniff(p, n)) {
	case HTTP_SNIFF_YES:
		return TS_CLAIM_YES;
	case HTTP_SNIFF_NEED_MORE:
		return TS_CLAIM_NEED_MORE;
	default:
		return TS_CLAIM_NO;
	}
}

static void *h1_attach(struct ts_stream *st)
{
	if (st->conn.server)
		ts_stream_no_edits(st); /* a server's responses are never edited */
	return http_alloc(st->conn.server);
}

static void h1_sent(void *t, struct ts_stream *st, const struct iovec *iov, int cnt, size_t n)
{
	struct http1 *h = t;
	if (h->planned) {
		/* Did the edit asked for this head go out (even in part)? If not,
		 * the application sends the bytes again and it is asked again. */
		if (st->new_edits_out && h->cur) {
			if (h->planned == PLANNED_INJECT)
				h->cur->injected = true;
			else
				h->cur->rewritten = true;
		}
		h->planned = PLANNED_NONE;
	}
	if (!n)
		return;
	feed_iov(st, h, !h->server, iov, cnt, n);
	if (!h->server)
		h->last_req_byte = (char)ts_iov_byte(iov, cnt, n - 1);
}

static void h1_received(void *t, struct ts_stream *st, const struct iovec *iov, int cnt, size_t n)
{
	struct http1 *h = t;
	feed_iov(st, h, h->server, iov, cnt, n);
}

static void h1_sent_opaque(void *t, struct ts_stream *st, size_t n)
{
	struct http1 *h = t;
	(void)st;
	if (!h->server)
		return;
	size_t left = n;
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

static void h1_ended(void *t, struct ts_stream *st, enum ts_end why, const char *error_type, const char *msg)
{
	struct http1 *h = t;
	(void)st;
	if (why == TS_END_ERROR) {
		fail_all(h, error_type, msg);
		return;
	}
	if (!h->server && h->resp_active && http_feed_eof(&h->resp) == HTTP_EV_MESSAGE_DONE)
		response_done(h);
	if (why == TS_END_EOF)
		fail_all(h, "connection_closed", "the peer closed the connection before the response ended");
	else
		fail_all(h, h->server ? NULL : "connection_closed", h->server ? NULL : "closed before the response ended");
}

static void h1_detach(void *t, struct ts_stream *st, bool owned)
{
	struct http1 *h = t;
	if (owned) {
		h1_ended(h, st, TS_END_CLOSED, NULL, NULL);
	} else {
		/* A forked child's copy of its parent's state: the parent ends these. */
		for (unsigned i = 0; i < h->nq; i++)
			exchange_free(h->q[i]);
		h->nq = 0;
		exchange_free(h->cur);
		h->cur = NULL;
		h->fields = NULL;
	}
	http_recycle(h);
}

const struct ts_tracer ts_tracer_http1 = {
	.name = "http/1",
	.claim = h1_claim,
	.attach = h1_attach,
	.plan = h1_plan,
	.sent = h1_sent,
	.received = h1_received,
	.sent_opaque = h1_sent_opaque,
	.ended = h1_ended,
	.detach = h1_detach,
};
