/* harness.c — see harness.h. */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"

struct trace *trace_new(void)
{
	struct trace *t = calloc(1, sizeof *t);
	cr_assert(t);
	return t;
}

static void start(struct http_msg_state *st, const struct parse_opts *o, struct trace *t)
{
	struct http_fields *f = o->no_fields ? NULL : &t->work;
	if (o->response)
		http_response_init(st, o->rflags, f);
	else
		http_request_init(st, f);
}

static void record(struct trace *t, enum http_event ev, size_t off)
{
	cr_assert(t->n < TR_MAX_EVENTS, "too many events");
	t->ev[t->n] = ev;
	t->off[t->n++] = off;
}

static void on_event(struct trace *t, struct http_msg_state *st, const struct parse_opts *o,
		     enum http_event ev)
{
	if (ev == HTTP_EV_HEADERS_DONE && t->nmsg < TR_MAX_MSGS) {
		t->msg[t->nmsg].st = *st;
		t->msg[t->nmsg++].f = t->work;
	}
	if (ev == HTTP_EV_ERROR) {
		t->stopped = true;
		t->error = st->error;
	}
	if (ev == HTTP_EV_MESSAGE_DONE) {
		if (t->ndone < TR_MAX_MSGS)
			t->keep_alive[t->ndone++] = http_msg_keep_alive(st);
		start(st, o, t);
	}
}

/* Feeds buf[from..to) (already copied wherever the caller wants) */
static void feed_chunk(struct trace *t, struct http_msg_state *st, const struct parse_opts *o,
		       const char *p, size_t from, size_t to)
{
	size_t off = 0, len = to - from, n;

	while (!t->stopped) {
		enum http_event ev = http_feed(st, p + off, len - off, &n);
		cr_assert(n <= len - off, "consumed more than given");
		off += n;
		if (ev == HTTP_EV_NEED_MORE) {
			cr_assert_eq(off, len, "NEED_MORE before the chunk was used up");
			return;
		}
		record(t, ev, from + off);
		on_event(t, st, o, ev);
	}
}

void parse_cuts(struct trace *t, const struct parse_opts *o, const char *buf, size_t len,
		const size_t *cuts, size_t ncuts)
{
	struct http_msg_state st;
	size_t from = 0;

	start(&st, o, t);
	for (size_t c = 0; c <= ncuts && !t->stopped; c++) {
		size_t to = c < ncuts ? cuts[c] : len;
		if (o->guard) {
			struct guarded g;
			guard_place(&g, buf + from, to - from);
			feed_chunk(t, &st, o, g.p, from, to);
			guard_free(&g);
		} else {
			feed_chunk(t, &st, o, buf + from, from, to);
		}
		from = to;
	}
	if (o->eof && !t->stopped) {
		enum http_event ev = http_feed_eof(&st);
		if (ev != HTTP_EV_NEED_MORE) {
			record(t, ev, len);
			on_event(t, &st, o, ev);
		}
	}
}

void parse_whole(struct trace *t, const struct parse_opts *o, const char *buf, size_t len)
{
	parse_cuts(t, o, buf, len, NULL, 0);
}

static void snap_assert_same(const struct msg_snap *a, const struct msg_snap *b, const char *what)
{
	cr_assert_eq(a->st.flags, b->st.flags, "%s: flags %#x vs %#x", what, a->st.flags, b->st.flags);
	cr_assert_eq(a->st.status, b->st.status, "%s: status", what);
	cr_assert_eq(a->st.version_minor, b->st.version_minor, "%s: version", what);
	cr_assert_eq(a->st.truncated, b->st.truncated, "%s: truncated", what);
	cr_assert_eq(a->st.content_length, b->st.content_length, "%s: content-length", what);
	cr_assert_str_eq(a->st.method, b->st.method, "%s: method", what);
	cr_assert_str_eq(a->st.traceparent, b->st.traceparent, "%s: traceparent", what);
	cr_assert_str_eq(a->f.target, b->f.target, "%s: target", what);
	cr_assert_str_eq(a->f.host, b->f.host, "%s: host", what);
	cr_assert_str_eq(a->f.user_agent, b->f.user_agent, "%s: user-agent", what);
	cr_assert_str_eq(a->f.tracestate, b->f.tracestate, "%s: tracestate", what);
	cr_assert_str_eq(a->f.baggage, b->f.baggage, "%s: baggage", what);
}

void trace_assert_same(const struct trace *a, const struct trace *b, const char *what)
{
	cr_assert_eq(a->n, b->n, "%s: %d events vs %d", what, a->n, b->n);
	for (int i = 0; i < a->n; i++) {
		cr_assert_eq(a->ev[i], b->ev[i], "%s: event %d", what, i);
		cr_assert_eq(a->off[i], b->off[i], "%s: offset of event %d: %zu vs %zu", what, i,
			     a->off[i], b->off[i]);
	}
	cr_assert_eq(a->error, b->error, "%s: error", what);
	cr_assert_eq(a->nmsg, b->nmsg, "%s: messages", what);
	for (int i = 0; i < a->nmsg; i++)
		snap_assert_same(&a->msg[i], &b->msg[i], what);
	cr_assert_eq(a->ndone, b->ndone, "%s: done", what);
	for (int i = 0; i < a->ndone; i++)
		cr_assert_eq(a->keep_alive[i], b->keep_alive[i], "%s: keep-alive", what);
}

struct trace *check_splits(const struct parse_opts *o, const char *buf, size_t len)
{
	struct parse_opts g = *o;
	struct trace *ref = trace_new();
	size_t *cuts = calloc(len ? len : 1, sizeof *cuts);
	char what[64];

	cr_assert(cuts);
	parse_whole(ref, o, buf, len);
	g.guard = true;
	for (size_t i = 1; i < len; i++)
		cuts[i - 1] = i;
	struct trace *t = trace_new();
	parse_cuts(t, &g, buf, len, cuts, len ? len - 1 : 0);
	trace_assert_same(ref, t, "byte by byte");
	for (size_t i = 0; len <= 4096 && i <= len; i++) {
		memset(t, 0, sizeof *t);
		parse_cuts(t, &g, buf, len, &i, 1);
		snprintf(what, sizeof what, "split at %zu", i);
		trace_assert_same(ref, t, what);
	}
	free(t);
	free(cuts);
	return ref;
}
