/* harness.h — drive the HTTP scanner over a byte stream cut into arbitrary
 * chunks, record what it reports, and compare runs. The property every split
 * test checks: the events, their absolute offsets and the extracted fields do
 * not depend on where the stream was cut. */
#ifndef TRACESHIM_TEST_HARNESS_H
#define TRACESHIM_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/http.h"

#define TR_MAX_EVENTS 64
#define TR_MAX_MSGS 8

struct parse_opts {
	bool response;   /* parse responses instead of requests */
	unsigned rflags; /* HTTP_RESP_TO_* for every response */
	bool no_fields;  /* pass NULL fields */
	bool eof;        /* call http_feed_eof after the last chunk */
	bool guard;      /* copy every chunk so it ends before a PROT_NONE page */
};

struct msg_snap { /* a message's results at HEADERS_DONE */
	struct http_msg_state st;
	struct http_fields f;
};

struct trace {
	int n;
	enum http_event ev[TR_MAX_EVENTS];
	size_t off[TR_MAX_EVENTS]; /* absolute stream offset after each event */
	int nmsg;
	struct msg_snap msg[TR_MAX_MSGS];
	bool stopped;  /* ERROR seen */
	uint8_t error; /* st.error at ERROR */
	bool keep_alive[TR_MAX_MSGS]; /* http_msg_keep_alive at each MESSAGE_DONE */
	int ndone;
	struct http_fields work; /* lent to the parser */
};

struct trace *trace_new(void);

/* Parse buf cut at cuts[0] < cuts[1] < ... (absolute offsets). */
void parse_cuts(struct trace *t, const struct parse_opts *o, const char *buf, size_t len,
		const size_t *cuts, size_t ncuts);
void parse_whole(struct trace *t, const struct parse_opts *o, const char *buf, size_t len);

/* Asserts that two runs reported the same events, offsets and fields. */
void trace_assert_same(const struct trace *a, const struct trace *b, const char *what);

/* Parses whole (the reference, returned), then byte by byte, then every
 * 2-way split (inputs up to 4 KiB), every chunk ending at a guard page;
 * asserts all runs agree. Caller frees the returned trace. */
struct trace *check_splits(const struct parse_opts *o, const char *buf, size_t len);

#endif
