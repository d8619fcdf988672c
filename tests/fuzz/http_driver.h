/* http_driver.h — shared by the request and response fuzz targets.
 *
 * Input layout: byte 0 = options (response targets: HTTP_RESP_TO_* bits),
 * bytes 1-2 = seed of the chunking, the rest = the stream. The stream is
 * parsed twice: whole, and cut into seed-derived pieces, each piece copied
 * into its own exact-size heap block so ASan sees any over-read. Both runs
 * must report the same events at the same offsets with the same fields
 * (split invariance); every stored string must be terminated and within its
 * cap; the W3C parsers and URL redaction are run on what was extracted; and
 * the whole run checks the header flags against an independent, plain
 * reading of each head (which known header names it has). */
#ifndef TRACESHIM_FUZZ_HTTP_DRIVER_H
#define TRACESHIM_FUZZ_HTTP_DRIVER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/http.h"
#include "proto/w3c.h"

#define MAX_EV 512

struct run {
	int n;
	uint8_t ev[MAX_EV];
	size_t off[MAX_EV];
	uint64_t digest[MAX_EV]; /* fields at HEADERS_DONE, else 0 */
	struct http_fields f;
	const char *stream; /* the whole input, when it is fed whole */
	size_t msg_start;   /* where the current message began in it */
};

#define CHECK(c) \
	do { \
		if (!(c)) \
			abort(); \
	} while (0)

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static void check_str(const char *s, size_t len, size_t cap)
{
	CHECK(len <= cap);
	CHECK(s[len] == 0);
	CHECK(strlen(s) == len); /* NUL is rejected, so none inside either */
}

/* Exercise the consumers of the extracted fields. */
static void use_fields(const struct http_msg_state *st)
{
	const struct http_fields *f = st->fields;
	struct w3c_traceparent tp;
	char out[HTTP_BAGGAGE_CAP + 1];

	if (w3c_traceparent_parse(st->traceparent, st->traceparent_len, &tp) && f) {
		size_t n = w3c_tracestate_build(out, sizeof out, f->tracestate, f->tracestate_len);
		CHECK(n <= W3C_TRACESTATE_PROPAGATE_MAX);
	}
	if (!f)
		return;
	CHECK(w3c_baggage_build(out, sizeof out, f->baggage, f->baggage_len) <= W3C_BAGGAGE_MAX_BYTES);
	size_t need = http_url_redact_query(out, 64, f->target, f->target_len);
	CHECK(strlen(out) == (need < 63 ? need : 63));
}

static uint64_t digest(const struct http_msg_state *st)
{
	const struct http_fields *f = st->fields;
	uint64_t h = 0xcbf29ce484222325ull;

	check_str(st->method, st->method_len, HTTP_METHOD_CAP);
	check_str(st->traceparent, st->traceparent_len, HTTP_TRACEPARENT_CAP);
	check_str(f->target, f->target_len, HTTP_TARGET_CAP);
	check_str(f->host, f->host_len, HTTP_HOST_CAP);
	check_str(f->user_agent, f->user_agent_len, HTTP_USER_AGENT_CAP);
	check_str(f->tracestate, f->tracestate_len, HTTP_TRACESTATE_CAP);
	check_str(f->baggage, f->baggage_len, HTTP_BAGGAGE_CAP);
	h = fnv(h, &st->flags, sizeof st->flags);
	h = fnv(h, &st->status, sizeof st->status);
	h = fnv(h, &st->version_minor, 1);
	h = fnv(h, &st->truncated, 1);
	h = fnv(h, &st->content_length, sizeof st->content_length);
	h = fnv(h, st->method, st->method_len + 1u);
	h = fnv(h, st->traceparent, st->traceparent_len + 1u);
	h = fnv(h, f->target, f->target_len + 1u);
	h = fnv(h, f->host, f->host_len + 1u);
	h = fnv(h, f->user_agent, f->user_agent_len + 1u);
	h = fnv(h, f->tracestate, f->tracestate_len + 1u);
	return fnv(h, f->baggage, f->baggage_len + 1u);
}

/* The HTTP_F_* flags a head must get for the header names it has, found the
 * plainest way: every line's text before its first ':', compared without
 * case with the names the parser reads. (The start line never matches: a
 * request-target or reason phrase comes after a SP.) */
#define SEEN_FLAGS (HTTP_F_HOST | HTTP_F_USER_AGENT | HTTP_F_CONTENT_LENGTH | HTTP_F_TE | HTTP_F_UPGRADE | \
		    HTTP_F_TRACEPARENT | HTTP_F_TRACESTATE | HTTP_F_BAGGAGE)

static uint32_t expected_flags(const char *p, size_t len)
{
	static const struct {
		const char *name;
		uint32_t flag;
	} known[] = {
		{"host", HTTP_F_HOST}, {"user-agent", HTTP_F_USER_AGENT},
		{"content-length", HTTP_F_CONTENT_LENGTH}, {"transfer-encoding", HTTP_F_TE},
		{"upgrade", HTTP_F_UPGRADE}, {"traceparent", HTTP_F_TRACEPARENT},
		{"tracestate", HTTP_F_TRACESTATE}, {"baggage", HTTP_F_BAGGAGE},
	};
	const char *end = p + len;
	uint32_t flags = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl ? nl : end;
		const char *colon = memchr(p, ':', (size_t)(line_end - p));
		for (size_t i = 0; colon && i < sizeof known / sizeof known[0]; i++)
			if (strlen(known[i].name) == (size_t)(colon - p) && strncasecmp(p, known[i].name, (size_t)(colon - p)) == 0)
				flags |= known[i].flag;
		p = nl ? nl + 1 : end;
	}
	return flags;
}

static void start(struct http_msg_state *st, struct run *r, bool response, unsigned rflags)
{
	if (response)
		http_response_init(st, rflags, &r->f);
	else
		http_request_init(st, &r->f);
}

/* Returns false once the parser reported ERROR. */
static bool feed(struct http_msg_state *st, struct run *r, bool response, unsigned rflags,
		 const char *p, size_t len, size_t base)
{
	size_t off = 0, n;

	for (;;) {
		enum http_event ev = http_feed(st, p + off, len - off, &n);
		CHECK(n <= len - off);
		off += n;
		if (ev == HTTP_EV_NEED_MORE) {
			CHECK(off == len);
			return true;
		}
		CHECK(r->n < MAX_EV);
		r->ev[r->n] = (uint8_t)ev;
		r->off[r->n] = base + off;
		r->digest[r->n++] = ev == HTTP_EV_HEADERS_DONE ? digest(st) : 0;
		if (ev == HTTP_EV_HEADERS_DONE) {
			use_fields(st);
			if (r->stream)
				CHECK((st->flags & SEEN_FLAGS) ==
				      expected_flags(r->stream + r->msg_start, base + off - r->msg_start));
		}
		if (ev == HTTP_EV_ERROR)
			return false;
		if (ev == HTTP_EV_MESSAGE_DONE) {
			if (r->n >= MAX_EV - 4)
				return false; /* enough for one input */
			r->msg_start = base + off;
			start(st, r, response, rflags);
		}
	}
}

static void finish(struct http_msg_state *st, struct run *r, size_t len)
{
	enum http_event ev = http_feed_eof(st);
	if (ev != HTTP_EV_NEED_MORE && r->n < MAX_EV) {
		r->ev[r->n] = (uint8_t)ev;
		r->off[r->n] = len;
		r->digest[r->n++] = 0;
	}
}

static size_t next_piece(uint32_t *s, size_t left)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	/* mostly tiny pieces (where the state machine is resumed), some big */
	size_t n = (*s & 7) == 0 ? (*s >> 8) % 4096 : ((*s >> 8) % 16) + 1;
	return n < left ? n : left;
}

static void run_split(struct run *r, bool response, unsigned rflags, const char *s, size_t len,
		      uint32_t seed)
{
	struct http_msg_state st;
	size_t off = 0;

	start(&st, r, response, rflags);
	while (off < len) {
		size_t n = next_piece(&seed, len - off);
		char *piece = malloc(n ? n : 1);
		CHECK(piece);
		memcpy(piece, s + off, n);
		bool go_on = feed(&st, r, response, rflags, piece, n, off);
		free(piece);
		off += n;
		if (!go_on)
			return;
	}
	finish(&st, r, len);
}

static void run_whole(struct run *r, bool response, unsigned rflags, const char *s, size_t len)
{
	struct http_msg_state st;

	start(&st, r, response, rflags);
	if (feed(&st, r, response, rflags, s, len, 0))
		finish(&st, r, len);
}

static int http_fuzz_one(const uint8_t *data, size_t size, bool response)
{
	static struct run a, b;

	if (size < 3)
		return 0;
	unsigned rflags = response ? data[0] & 3u : 0;
	uint32_t seed = (uint32_t)data[1] << 8 | data[2] | 1u;
	const char *s = (const char *)data + 3;
	size_t len = size - 3;

	a.n = b.n = 0;
	a.stream = s;
	a.msg_start = 0;
	b.stream = NULL;
	run_whole(&a, response, rflags, s, len);
	run_split(&b, response, rflags, s, len, seed);
	CHECK(a.n == b.n);
	for (int i = 0; i < a.n; i++) {
		CHECK(a.ev[i] == b.ev[i]);
		CHECK(a.off[i] == b.off[i]);
		CHECK(a.digest[i] == b.digest[i]);
	}
	if (!response)
		(void)http_request_sniff(s, len);
	return 0;
}

#endif
