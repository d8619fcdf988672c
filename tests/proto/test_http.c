/* The HTTP/1.x scanner: sniffing, requests, responses, bodies, limits, URL
 * redaction. Every message test also runs through check_splits(), so each
 * result below holds for the message cut anywhere and for every chunk
 * ending right before a PROT_NONE page. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "harness.h"
#include "proto/http.h"

#define S(lit) lit, sizeof(lit) - 1

static const struct parse_opts REQ = {0};
static const struct parse_opts RESP = {.response = true, .eof = true};

static struct trace *req(const char *buf, size_t len) { return check_splits(&REQ, buf, len); }

static struct trace *resp(unsigned rflags, const char *buf, size_t len)
{
	struct parse_opts o = RESP;
	o.rflags = rflags;
	return check_splits(&o, buf, len);
}

static void expect_events(const struct trace *t, const enum http_event *ev, const size_t *off, int n)
{
	cr_assert_eq(t->n, n, "%d events, expected %d", t->n, n);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(t->ev[i], ev[i], "event %d is %d, expected %d", i, t->ev[i], ev[i]);
		cr_assert_eq(t->off[i], off[i], "event %d at %zu, expected %zu", i, t->off[i], off[i]);
	}
}

#define L HTTP_EV_START_LINE_DONE
#define H HTTP_EV_HEADERS_DONE
#define M HTTP_EV_MESSAGE_DONE
#define E HTTP_EV_ERROR

/* Feed until something other than a start-line/headers event happens. */
static enum http_event feed_all(struct http_msg_state *st, const char *buf, size_t len, size_t *used)
{
	enum http_event ev;
	size_t n;

	*used = 0;
	do {
		ev = http_feed(st, buf + *used, len - *used, &n);
		*used += n;
	} while (ev == HTTP_EV_START_LINE_DONE || ev == HTTP_EV_HEADERS_DONE);
	return ev;
}

/* ---- sniffing --------------------------------------------------------- */

static enum http_sniff sniff_guarded(const char *s, size_t n)
{
	struct guarded g;
	guard_place(&g, s, n);
	enum http_sniff r = http_request_sniff(g.p, n);
	guard_free(&g);
	return r;
}

static void sniff_is(const char *s, enum http_sniff want)
{
	cr_assert_eq(sniff_guarded(s, strlen(s)), want, "sniff(\"%s\")", s);
}

Test(sniff, methods_yes)
{
	static const char *const ok[] = {
		"GET / HTTP/1.1\r\n", "HEAD /x HTTP/1.0\r\n", "POST /a/b/c/d/e/f/g", "PUT /abcdefghijkl",
		"DELETE /item/42 HTTP/1.1", "CONNECT example.com:443 HTTP/1.1", "OPTIONS * HTTP/1.1\r\n",
		"TRACE / HTTP/1.1\r\n", "PATCH /p HTTP/1.1\r\n", "GET http://h/ HTTP/1.1",
		"GET / HTTP/1.1\n", "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		sniff_is(ok[i], HTTP_SNIFF_YES);
}

Test(sniff, need_more_on_plausible_prefixes)
{
	static const char *const more[] = {
		"", "G", "GE", "GET", "P", "PO", "OPTIONS", "GET /", "POST /api", "GET / HTTP/1.1\r",
		"GET / HTTP/1.", "GET / H", "DELETE /x HTTP",
	};
	for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
		sniff_is(more[i], HTTP_SNIFF_NEED_MORE);
}

Test(sniff, no)
{
	static const char *const no[] = {
		"get / HTTP/1.1\r\n",           /* methods are case-sensitive */
		"PRI * HTTP/2.0\r\n\r\nSM\r\n", /* the HTTP/2 preface */
		"GET / HTTP/2.0\r\n", "GET / HTTP/1.1\rX", "GET / HTTP/1.x\r\n", "GET  / HTTP/1.1",
		"GETX / HTTP/1.1", "GET\t/", "\x16\x03\x01\x02\x00", "\r\nGET / HTTP/1.1",
		"GET /\x01 HTTP/1.1", "SSH-2.0-OpenSSH", "PROPFIND / HTTP/1.1", "HTTP/1.1 200 OK\r\n",
		"GET / XTTP/1.1\r\n",
	};
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		sniff_is(no[i], HTTP_SNIFF_NO);
}

Test(sniff, decides_within_16_bytes_and_never_reads_past_len)
{
	const char *s = "GET /0123456789abcdef/ghij HTTP/1.1\r\n";
	cr_assert_eq(http_request_sniff(s, 15), HTTP_SNIFF_NEED_MORE);
	cr_assert_eq(http_request_sniff(s, 16), HTTP_SNIFF_YES);
	/* a byte past the window cannot change the answer */
	char buf[40];
	memcpy(buf, s, 16);
	memset(buf + 16, 0, sizeof buf - 16);
	cr_assert_eq(http_request_sniff(buf, sizeof buf), HTTP_SNIFF_YES);
	for (size_t n = 0; n <= strlen(s); n++)
		sniff_guarded(s, n);
}

/* ---- requests --------------------------------------------------------- */

static const char GET_FULL[] =
	"GET /search?q=1&sig=abc HTTP/1.1\r\n"
	"Host: example.com:8080\r\n"
	"User-Agent: curl/8.0 (x86_64)  \r\n"
	"TraceParent:  00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t\r\n"
	"tracestate: rojo=00f067aa0ba902b7\r\n"
	"TRACESTATE: congo=t61rcWkgMzE\r\n"
	"baggage: userId=alice, serverNode=DF%2028\r\n"
	"Accept: */*\r\n"
	"\r\n";

Test(request, get_with_all_fields)
{
	struct trace *t = req(S(GET_FULL));
	size_t line = strlen("GET /search?q=1&sig=abc HTTP/1.1\r\n"), len = strlen(GET_FULL);
	expect_events(t, (enum http_event[]){L, H, M}, (size_t[]){line, len, len}, 3);
	const struct msg_snap *m = &t->msg[0];
	cr_assert_str_eq(m->st.method, "GET");
	cr_assert_eq(m->st.method_len, 3);
	cr_assert_eq(m->st.version_minor, 1);
	cr_assert_str_eq(m->f.target, "/search?q=1&sig=abc");
	cr_assert_str_eq(m->f.host, "example.com:8080");
	cr_assert_eq(m->f.host_len, 16);
	cr_assert_str_eq(m->f.user_agent, "curl/8.0 (x86_64)"); /* trailing OWS trimmed */
	cr_assert_str_eq(m->st.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
	cr_assert_eq(m->st.traceparent_len, 55);
	cr_assert_str_eq(m->f.tracestate, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
	cr_assert_str_eq(m->f.baggage, "userId=alice, serverNode=DF%2028");
	cr_assert_eq(m->st.flags, HTTP_F_HOST | HTTP_F_USER_AGENT | HTTP_F_TRACEPARENT |
					  HTTP_F_TRACESTATE | HTTP_F_BAGGAGE);
	cr_assert_eq(m->st.truncated, 0);
	cr_assert(t->keep_alive[0]);
	free(t);
}

Test(request, without_fields_storage)
{
	struct parse_opts o = REQ;
	o.no_fields = true;
	struct trace *t = check_splits(&o, S(GET_FULL));
	cr_assert_eq(t->n, 3);
	cr_assert_str_eq(t->msg[0].st.method, "GET");
	cr_assert_eq(t->msg[0].st.traceparent_len, 55, "traceparent lives in the state itself");
	cr_assert_eq(t->msg[0].f.host_len, 0);
	free(t);
}

Test(request, request_line_end_is_the_injection_point)
{
	/* the offset reported with START_LINE_DONE is where the shim splices
	 * "traceparent: ...\r\n" in, whatever the write() boundaries were */
	const char r[] = "POST /upload HTTP/1.1\nHost: a\n\n";
	struct trace *t = req(S(r));
	cr_assert_eq(t->ev[0], L);
	cr_assert_eq(t->off[0], strlen("POST /upload HTTP/1.1\n"));
	free(t);
}

static const char PIPELINE[] =
	"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
	"GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
	"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	"5;name=val;x=\"q\"\r\nabcde\r\n"
	"A\r\n0123456789\r\n"
	"0;last\r\nX-Checksum: 1234\r\nX-Other: y\r\n\r\n"
	"\r\n" /* a stray CRLF between requests is tolerated (RFC 9112 §2.2) */
	"DELETE /d HTTP/1.0\nConnection: keep-alive\n\n"
	"GET /e HTTP/1.1\r\nConnection: close\r\n\r\n";

Test(request, pipelined_keep_alive)
{
	struct trace *t = req(S(PIPELINE));
	cr_assert_eq(t->nmsg, 5);
	cr_assert_eq(t->ndone, 5);
	cr_assert_not(t->stopped);
	static const char *const methods[] = {"POST", "GET", "PUT", "DELETE", "GET"};
	static const char *const targets[] = {"/a", "/b", "/c", "/d", "/e"};
	for (int i = 0; i < 5; i++) {
		cr_assert_str_eq(t->msg[i].st.method, methods[i]);
		cr_assert_str_eq(t->msg[i].f.target, targets[i]);
	}
	cr_assert_eq(t->msg[0].st.content_length, 5);
	cr_assert(t->msg[0].st.flags & HTTP_F_CONTENT_LENGTH);
	cr_assert(t->msg[2].st.flags & HTTP_F_CHUNKED);
	cr_assert_eq(t->msg[3].st.version_minor, 0);
	cr_assert(t->keep_alive[3], "1.0 with keep-alive");
	cr_assert_not(t->keep_alive[4], "Connection: close");
	/* message boundaries: each MESSAGE_DONE sits where the next request starts */
	const char *p = PIPELINE;
	size_t done[5], k = 0;
	for (int i = 0; i < t->n; i++)
		if (t->ev[i] == M)
			done[k++] = t->off[i];
	cr_assert_eq(done[0], (size_t)(strstr(p, "GET /b") - p));
	cr_assert_eq(done[1], (size_t)(strstr(p, "PUT /c") - p));
	cr_assert_eq(done[2], (size_t)(strstr(p, "\r\nDELETE") - p));
	cr_assert_eq(done[3], (size_t)(strstr(p, "GET /e") - p));
	cr_assert_eq(done[4], strlen(p));
	free(t);
}

Test(request, chunked_trailers_do_not_touch_fields)
{
	const char r[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "0\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
			 "Content-Length: 99\r\n\r\n";
	struct trace *t = req(S(r));
	expect_events(t, (enum http_event[]){L, H, M},
		      (size_t[]){17, strlen("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), strlen(r)},
		      3);
	cr_assert_eq(t->msg[0].st.traceparent_len, 0);
	free(t);
}

Test(request, chunk_sizes_upper_lower_and_leading_zeros)
{
	const char r[] = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
			 "0000000000000000000a\r\n0123456789\r\nF \r\n0123456789abcde\r\n0\r\n\r\n";
	struct trace *t = req(S(r));
	cr_assert_eq(t->n, 3);
	cr_assert_eq(t->ev[2], M);
	cr_assert_eq(t->off[2], strlen(r));
	free(t);
}

Test(request, lf_only_and_mixed_line_ends)
{
	const char r[] = "GET /lf HTTP/1.1\nHost: lf.example\r\nUser-Agent: x\n\r\n";
	struct trace *t = req(S(r));
	cr_assert_eq(t->n, 3);
	cr_assert_str_eq(t->msg[0].f.host, "lf.example");
	cr_assert_str_eq(t->msg[0].f.user_agent, "x");
	free(t);
}

Test(request, header_names_case_insensitive_values_kept)
{
	const char r[] = "GET / HTTP/1.1\r\nhOsT: MixedCase.Example\r\nCONTENT-LENGTH: 0\r\n"
			 "cOnNeCtIoN: Keep-Alive, Upgrade\r\nUpgrade: h2c\r\n\r\n";
	struct trace *t = req(S(r));
	cr_assert_str_eq(t->msg[0].f.host, "MixedCase.Example");
	uint32_t f = t->msg[0].st.flags;
	cr_assert(f & HTTP_F_CONN_KEEPALIVE);
	cr_assert(f & HTTP_F_CONN_UPGRADE);
	cr_assert(f & HTTP_F_UPGRADE);
	cr_assert(f & HTTP_F_UPGRADE_H2C);
	cr_assert(f & HTTP_F_CONTENT_LENGTH);
	cr_assert_eq(t->msg[0].st.content_length, 0);
	free(t);
}

/* Every name the scanner knows, with one byte changed anywhere (to a letter or
 * to a token character like '%'), must read as an unknown header: a fast path
 * that compares names in words once skipped a byte (found by differential
 * fuzzing, not by these suites — hence this test). */
Test(request, header_names_one_byte_off_are_unknown)
{
	static const struct {
		const char *name, *value;
	} known[] = {
		{"Host", "h"},           {"User-Agent", "ua"},         {"traceparent", "00-x"},
		{"tracestate", "a=b"},   {"baggage", "k=v"},           {"Content-Length", "5"},
		{"Transfer-Encoding", "chunked"}, {"Connection", "upgrade, keep-alive"},
		{"Upgrade", "h2c"},
	};
	for (size_t k = 0; k < sizeof known / sizeof *known; k++) {
		size_t n = strlen(known[k].name);
		for (size_t i = 0; i < n; i++) {
			for (int sub = 0; sub < 2; sub++) {
				char name[32];
				memcpy(name, known[k].name, n + 1);
				name[i] = sub ? '%' : (name[i] == 'x' ? 'y' : 'x');
				char r[160];
				snprintf(r, sizeof r, "GET / HTTP/1.1\r\n%s: %s\r\n\r\n", name, known[k].value);
				struct trace *t = req(r, strlen(r));
				cr_assert_eq(t->msg[0].st.flags, 0, "%s read as a known header", name);
				cr_assert_str_eq(t->msg[0].f.host, "", "%s", name);
				cr_assert_str_eq(t->msg[0].f.user_agent, "", "%s", name);
				free(t);
			}
		}
	}
}

Test(request, first_host_wins_empty_values_ok)
{
	const char r[] = "GET / HTTP/1.1\r\nHost: first\r\nHost: second\r\nX-Empty:\r\nX-Ows:   \r\n\r\n";
	struct trace *t = req(S(r));
	cr_assert_str_eq(t->msg[0].f.host, "first");
	cr_assert_eq(t->n, 3);
	free(t);
}

Test(request, duplicate_traceparent_is_flagged_and_cleared)
{
	const char r[] = "GET / HTTP/1.1\r\n"
			 "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
			 "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01\r\n\r\n";
	struct trace *t = req(S(r));
	uint32_t f = t->msg[0].st.flags;
	cr_assert(f & HTTP_F_TRACEPARENT, "present: the shim must not inject another");
	cr_assert(f & HTTP_F_TRACEPARENT_DUP);
	cr_assert_eq(t->msg[0].st.traceparent_len, 0);
	free(t);
}

Test(request, absolute_and_authority_targets)
{
	const char r[] = "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n"
			 "OPTIONS * HTTP/1.1\r\n\r\n"
			 "GET http://user:pw@h/p?x=1 HTTP/1.1\r\n\r\n";
	struct trace *t = req(S(r));
	cr_assert_eq(t->nmsg, 3);
	cr_assert_str_eq(t->msg[0].f.target, "db.internal:5432");
	cr_assert_str_eq(t->msg[1].f.target, "*");
	cr_assert_str_eq(t->msg[2].f.target, "http://user:pw@h/p?x=1");
	cr_assert_eq(http_response_flags_for(&t->msg[0].st), HTTP_RESP_TO_CONNECT);
	cr_assert_eq(http_response_flags_for(&t->msg[1].st), 0);
	free(t);
}

Test(request, content_length_list_forms)
{
	const char ok[] = "POST / HTTP/1.1\r\nContent-Length: 3 , 3\r\nContent-Length: 3\r\n\r\nabc";
	struct trace *t = req(S(ok));
	cr_assert_eq(t->n, 3);
	cr_assert_eq(t->msg[0].st.content_length, 3);
	free(t);
	const char zeros[] = "POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n1234567";
	t = req(S(zeros));
	cr_assert_eq(t->msg[0].st.content_length, 7);
	cr_assert_eq(t->off[2], strlen(zeros));
	free(t);
}

Test(request, te_and_cl_chunked_wins)
{
	const char r[] = "POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "1\r\nx\r\n0\r\n\r\n";
	struct trace *t = req(S(r));
	cr_assert_eq(t->n, 3);
	cr_assert_eq(t->off[2], strlen(r));
	free(t);
}

/* ---- rejected input ----------------------------------------------------- */

static void expect_error(const struct parse_opts *o, const char *buf, size_t len, enum http_error e)
{
	struct trace *t = check_splits(o, buf, len);
	cr_assert(t->stopped, "no error for: %.*s", (int)len, buf);
	cr_assert_eq(t->error, e, "error %d, expected %d for: %.*s", t->error, e, (int)len, buf);
	free(t);
}

static void req_error(const char *buf, size_t len, enum http_error e) { expect_error(&REQ, buf, len, e); }

Test(reject, syntax)
{
	req_error(S("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"), HTTP_ERR_SYNTAX);   /* obs-fold */
	req_error(S("GET / HTTP/1.1\r\n\tX: a\r\n\r\n"), HTTP_ERR_SYNTAX);               /* leading WS */
	req_error(S("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), HTTP_ERR_SYNTAX);             /* SP before ':' */
	req_error(S("GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n"), HTTP_ERR_SYNTAX);            /* NUL in name */
	req_error(S("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"), HTTP_ERR_SYNTAX);           /* NUL in value */
	req_error(S("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), HTTP_ERR_SYNTAX);           /* bare CR */
	req_error(S("GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n"), HTTP_ERR_SYNTAX);          /* DEL */
	req_error(S("GET / HTTP/1.1\r\n: empty-name\r\n\r\n"), HTTP_ERR_SYNTAX);
	req_error(S("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), HTTP_ERR_SYNTAX);
	req_error(S("GET / HTTP/1.1\r\n\rX"), HTTP_ERR_SYNTAX);
	req_error(S("GET /\r\n"), HTTP_ERR_SYNTAX);                                      /* HTTP/0.9 */
	req_error(S("GET / HTTP/1.1 \r\n\r\n"), HTTP_ERR_SYNTAX);
	req_error(S("GET / HTTP/1.a\r\n\r\n"), HTTP_ERR_SYNTAX);
	req_error(S("GET / http/1.1\r\n\r\n"), HTTP_ERR_SYNTAX);
	req_error(S("GET /a\0b HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX);
	req_error(S(" GET / HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX);
	req_error(S("G(T / HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX);
	req_error(S("ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX);  /* 17-byte method */
	req_error(S("\x16\x03\x01\x00\xa5\x01\x00\x00"), HTTP_ERR_SYNTAX);      /* TLS ClientHello */
}

Test(reject, chunked_syntax)
{
	static const struct {
		const char *s;
		size_t n;
	} bad[] = {
		{S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n")},
		{S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n")},
		{S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\rX")},
		{S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;\0\r\n")},
		{S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1x\r\n")},
		{S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n folded\r\n\r\n")},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		req_error(bad[i].s, bad[i].n, HTTP_ERR_SYNTAX);
}

Test(reject, http2)
{
	req_error(S("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), HTTP_ERR_HTTP2);
	expect_error(&RESP, S("HTTP/2 200\r\n\r\n"), HTTP_ERR_HTTP2);
}

Test(reject, framing)
{
	req_error(S("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), HTTP_ERR_FRAMING);
	req_error(S("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"), HTTP_ERR_FRAMING);
	req_error(S("POST / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n"), HTTP_ERR_FRAMING);
	req_error(S("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"), HTTP_ERR_FRAMING);
	req_error(S("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), HTTP_ERR_FRAMING);
	req_error(S("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n"), HTTP_ERR_FRAMING);
	req_error(S("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"), HTTP_ERR_FRAMING);
	req_error(S("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"), HTTP_ERR_FRAMING);
	req_error(S("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), HTTP_ERR_FRAMING);
	req_error(S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), HTTP_ERR_FRAMING);
	req_error(S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n"),
		  HTTP_ERR_FRAMING); /* 2^60: absurd chunk */
}

/* A header that never ends: the parser gives up after HTTP_HEAD_MAX bytes,
 * and nothing it writes grows — a canary right after the fields stays. */
Test(reject, endless_header_block_without_growth)
{
	struct {
		struct http_fields f;
		char canary[64];
	} box;
	struct http_msg_state st;
	size_t big = 1 << 20, n, total = 0;
	char *buf = malloc(big);
	cr_assert(buf);
	memset(box.canary, 0x5a, sizeof box.canary);
	for (int variant = 0; variant < 3; variant++) {
		size_t k = 0;
		k += (size_t)sprintf(buf, "GET / HTTP/1.1\r\n%s", variant == 0 ? "" : "Baggage: ");
		memset(buf + k, variant == 2 ? ',' : 'a', big - k);
		for (size_t i = k; variant == 0 && i + 8 < big; i += 8)
			memcpy(buf + i, "X-A: b\r\n", 8); /* endless list of small headers */
		http_request_init(&st, &box.f);
		total = 0;
		enum http_event ev = HTTP_EV_NEED_MORE;
		while ((ev == HTTP_EV_NEED_MORE || ev == HTTP_EV_START_LINE_DONE) && total < big) {
			size_t chunk = big - total < 1000 ? big - total : 1000;
			ev = http_feed(&st, buf + total, chunk, &n);
			total += n;
		}
		cr_assert_eq(ev, HTTP_EV_ERROR, "variant %d", variant);
		cr_assert_eq(st.error, HTTP_ERR_TOO_LARGE);
		cr_assert_leq(total, HTTP_HEAD_MAX + 1, "stopped at %zu", total);
		cr_assert_leq(box.f.baggage_len, HTTP_BAGGAGE_CAP);
		for (size_t i = 0; i < sizeof box.canary; i++)
			cr_assert_eq(box.canary[i], 0x5a);
	}
	cr_assert_leq(sizeof(struct http_msg_state), 256, "per-fd state is %zu bytes",
		      sizeof(struct http_msg_state));
	free(buf);
}

Test(reject, endless_trailers_and_chunk_extensions)
{
	struct http_msg_state st;
	size_t n, h, big = 64 * 1024;
	const char head[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
	char *buf = malloc(big);
	cr_assert(buf);
	h = sizeof head - 1;
	memcpy(buf, head, h);
	/* a chunk extension that never ends */
	memcpy(buf + h, "1;", 2);
	memset(buf + h + 2, 'e', big - h - 2);
	http_request_init(&st, NULL);
	cr_assert_eq(feed_all(&st, buf, big, &n), HTTP_EV_ERROR);
	cr_assert_eq(st.error, HTTP_ERR_TOO_LARGE);
	cr_assert_leq(n, h + HTTP_CHUNK_LINE_MAX + 1);
	/* a trailer section that never ends */
	memcpy(buf + h, "0\r\n", 3);
	for (size_t i = h + 3; i + 8 < big; i += 8)
		memcpy(buf + i, "X-T: t\r\n", 8);
	http_request_init(&st, NULL);
	cr_assert_eq(feed_all(&st, buf, big, &n), HTTP_EV_ERROR);
	cr_assert_eq(st.error, HTTP_ERR_TOO_LARGE);
	cr_assert_leq(n, h + 3 + HTTP_HEAD_MAX + 1);
	free(buf);
}

Test(reject, feeding_a_finished_message_is_misuse)
{
	struct http_msg_state st;
	size_t n;
	http_request_init(&st, NULL);
	cr_assert_eq(http_feed(&st, S("GET / HTTP/1.1\r\n\r\n"), &n), HTTP_EV_START_LINE_DONE);
	cr_assert_eq(http_feed(&st, S("\r\n"), &n), HTTP_EV_HEADERS_DONE);
	cr_assert_eq(http_feed(&st, "", 0, &n), HTTP_EV_MESSAGE_DONE);
	cr_assert_eq(n, 0);
	cr_assert_eq(http_feed(&st, S("GET"), &n), HTTP_EV_ERROR);
	cr_assert_eq(st.error, HTTP_ERR_MISUSE);
	cr_assert_eq(n, 0);
	cr_assert_eq(http_feed(&st, S("GET"), &n), HTTP_EV_ERROR, "errors are sticky");
}

/* ---- truncation of stored fields -------------------------------------- */

Test(truncate, target_and_user_agent)
{
	char r[4096];
	int k = sprintf(r, "GET /");
	memset(r + k, 'p', 2000);
	k += 2000;
	k += sprintf(r + k, " HTTP/1.1\r\nUser-Agent: ");
	memset(r + k, 'u', HTTP_USER_AGENT_CAP - 1);
	k += HTTP_USER_AGENT_CAP - 1;
	k += sprintf(r + k, "\xc3\xa9 tail\r\nHost: h\r\n\r\n"); /* é straddles the cap */
	struct trace *t = req(r, (size_t)k);
	const struct msg_snap *m = &t->msg[0];
	cr_assert_eq(m->f.target_len, HTTP_TARGET_CAP);
	cr_assert_eq(strlen(m->f.target), HTTP_TARGET_CAP);
	cr_assert_eq(m->f.user_agent_len, HTTP_USER_AGENT_CAP - 1, "cut before the split é");
	cr_assert_eq(m->st.truncated, HTTP_TRUNC_TARGET | HTTP_TRUNC_USER_AGENT);
	cr_assert_str_eq(m->f.host, "h", "parsing goes on after a cut");
	free(t);
}

Test(truncate, value_filling_cap_exactly_is_not_truncated)
{
	char r[1024];
	int k = sprintf(r, "GET / HTTP/1.1\r\nHost: ");
	memset(r + k, 'h', HTTP_HOST_CAP);
	k += HTTP_HOST_CAP;
	k += sprintf(r + k, "   \r\n\r\n"); /* trailing OWS past the cap is not content */
	struct trace *t = req(r, (size_t)k);
	cr_assert_eq(t->msg[0].f.host_len, HTTP_HOST_CAP);
	cr_assert_eq(t->msg[0].st.truncated, 0);
	free(t);
}

Test(truncate, lists_keep_whole_members)
{
	/* tracestate: 30 members of 17 bytes "kNN=0123456789abc" = 539 bytes > 512 */
	char r[16384];
	int k = sprintf(r, "GET / HTTP/1.1\r\ntracestate: ");
	for (int i = 0; i < 30; i++)
		k += sprintf(r + k, "%sk%02d=0123456789abc", i ? "," : "", i);
	k += sprintf(r + k, "\r\nbaggage: a=1\r\nbaggage: ");
	for (int i = 0; i < 700; i++)
		k += sprintf(r + k, "%skey%03d=value", i ? " , " : "", i);
	k += sprintf(r + k, "\r\n\r\n");
	struct trace *t = req(r, (size_t)k);
	const struct msg_snap *m = &t->msg[0];
	cr_assert_eq(m->st.truncated, HTTP_TRUNC_TRACESTATE | HTTP_TRUNC_BAGGAGE);
	/* 28 members: 28*17 + 27 commas = 503 <= 512 < 503 + 18 */
	cr_assert_eq(m->f.tracestate_len, 503);
	cr_assert(strncmp(m->f.tracestate + 486, "k27=0123456789abc", 17) == 0);
	cr_assert_leq(m->f.baggage_len, HTTP_BAGGAGE_CAP);
	size_t bl = m->f.baggage_len;
	cr_assert(strncmp(m->f.baggage, "a=1,key000=value , key001", 25) == 0);
	cr_assert(strcmp(m->f.baggage + bl - 6, "=value") == 0, "ends on a whole member: %s",
		  m->f.baggage + bl - 20);
	free(t);
}

Test(truncate, list_cut_exactly_at_a_comma)
{
	/* "a=" + 510 x's fill the 512-byte cap exactly; the ',' that overflows
	 * proves the member before it was complete, so all 512 bytes stay */
	char r[2048];
	int k = sprintf(r, "GET / HTTP/1.1\r\ntracestate: a=");
	memset(r + k, 'x', 510);
	k += 510;
	k += sprintf(r + k, ",b=1\r\n\r\n"); /* 512 bytes, then ',' overflows */
	struct trace *t = req(r, (size_t)k);
	cr_assert_eq(t->msg[0].f.tracestate_len, 512);
	cr_assert(t->msg[0].st.truncated & HTTP_TRUNC_TRACESTATE);
	free(t);
}

/* ---- responses -------------------------------------------------------- */

Test(response, content_length_and_status_line_forms)
{
	const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody"
			 "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"
			 "HTTP/1.0 503 Service  Unavailable\t(x)\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nz"
			 "HTTP/1.1   999 Whatever\xc3\xa9\nContent-Length: 0\n\n";
	struct trace *t = resp(0, S(r));
	cr_assert_not(t->stopped);
	cr_assert_eq(t->nmsg, 4);
	cr_assert_eq(t->msg[0].st.status, 200);
	cr_assert_eq(t->msg[1].st.status, 404);
	cr_assert_eq(t->msg[2].st.status, 503);
	cr_assert_eq(t->msg[2].st.version_minor, 0);
	cr_assert(t->keep_alive[2]);
	cr_assert_eq(t->msg[3].st.status, 999);
	cr_assert_eq(t->off[2], strlen("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody"));
	free(t);
}

Test(response, no_body_cases)
{
	const char r204[] = "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"
			    "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n"
			    "HTTP/1.1 100 Continue\r\n\r\n"
			    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	struct trace *t = resp(0, S(r204));
	cr_assert_not(t->stopped);
	cr_assert_eq(t->ndone, 4);
	cr_assert_eq(t->msg[2].st.status, 100);
	cr_assert_eq(t->off[t->n - 1], strlen(r204));
	free(t);
	const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
			    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	t = resp(HTTP_RESP_TO_HEAD, S(head));
	cr_assert_eq(t->ndone, 2, "HEAD responses end with their headers");
	cr_assert_eq(t->msg[0].st.content_length, 1234);
	free(t);
}

Test(response, chunked_with_trailers)
{
	const char r[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n"
			 "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
	struct trace *t = resp(0, S(r));
	cr_assert_eq(t->ndone, 2);
	cr_assert_eq(t->off[t->n - 1], strlen(r));
	free(t);
}

Test(response, until_close)
{
	const char r[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nanything \r\n\r\n HTTP/1.1 goes";
	struct trace *t = resp(0, S(r));
	expect_events(t, (enum http_event[]){L, H, M},
		      (size_t[]){17, strlen("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"), strlen(r)},
		      3);
	cr_assert(t->msg[0].st.flags & HTTP_F_UNTIL_CLOSE);
	cr_assert_not(t->keep_alive[0]);
	free(t);
	const char te[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n";
	t = resp(0, S(te));
	cr_assert(t->msg[0].st.flags & HTTP_F_UNTIL_CLOSE, "chunked not last: read until close");
	cr_assert_eq(t->off[t->n - 1], strlen(te));
	free(t);
}

Test(response, tunnels)
{
	const char up[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
			  "\x00\x00\x12\x04\x00\x00\x00\x00\x00";
	struct parse_opts o = RESP;
	o.eof = false;
	struct trace *t = check_splits(&o, up, sizeof up - 1 - 9);
	cr_assert_eq(t->ndone, 1);
	cr_assert(t->msg[0].st.flags & HTTP_F_TUNNEL);
	cr_assert_not(t->keep_alive[0]);
	free(t);
	const char conn[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	o.rflags = HTTP_RESP_TO_CONNECT;
	t = check_splits(&o, S(conn));
	cr_assert_eq(t->ndone, 1);
	cr_assert(t->msg[0].st.flags & HTTP_F_TUNNEL);
	free(t);
	const char denied[] = "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno";
	t = check_splits(&o, S(denied));
	cr_assert_not(t->msg[0].st.flags & HTTP_F_TUNNEL);
	cr_assert_eq(t->off[t->n - 1], strlen(denied));
	free(t);
}

Test(response, bad_status_lines)
{
	static const char *const bad[] = {
		"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 099 x\r\n\r\n",
		"HTTP/1.1200 OK\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/1.1 200 O\x01K\r\n\r\n",
		"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "http/1.1 200 OK\r\n\r\n", "\r\nHTTP/1.1 200 OK\r\n\r\n",
		"ICY 200 OK\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_error(&RESP, bad[i], strlen(bad[i]), HTTP_ERR_SYNTAX);
}

Test(response, eof_handling)
{
	struct http_msg_state st;
	size_t n;
	http_response_init(&st, 0, NULL);
	cr_assert_eq(http_feed_eof(&st), HTTP_EV_NEED_MORE, "clean close before a response");
	http_response_init(&st, 0, NULL);
	cr_assert_eq(feed_all(&st, S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), &n),
		     HTTP_EV_NEED_MORE);
	cr_assert_eq(feed_all(&st, S("abc"), &n), HTTP_EV_NEED_MORE);
	cr_assert_eq(http_feed_eof(&st), HTTP_EV_ERROR);
	cr_assert_eq(st.error, HTTP_ERR_TRUNCATED);
	http_response_init(&st, 0, NULL);
	feed_all(&st, S("HTTP/1.1 2"), &n);
	cr_assert_eq(http_feed_eof(&st), HTTP_EV_ERROR);
	http_response_init(&st, 0, NULL);
	cr_assert_eq(feed_all(&st, S("HTTP/1.1 200 OK\r\n\r\nstream"), &n), HTTP_EV_NEED_MORE);
	cr_assert_eq(http_feed_eof(&st), HTTP_EV_MESSAGE_DONE, "until-close body ends at EOF");
	http_request_init(&st, NULL);
	feed_all(&st, S("\r\n\r\n"), &n);
	cr_assert_eq(http_feed_eof(&st), HTTP_EV_NEED_MORE, "only blank lines: clean");
	http_request_init(&st, NULL);
	feed_all(&st, S("GET / HTTP/1.1\r\nHost: x\r\n"), &n);
	cr_assert_eq(http_feed_eof(&st), HTTP_EV_ERROR, "EOF inside a head");
}

/* ---- URL redaction ---------------------------------------------------- */

static void redact_is(const char *in, const char *want)
{
	char out[512];
	struct guarded g;
	guard_place(&g, in, strlen(in));
	size_t n = http_url_redact_query(out, sizeof out, g.p, strlen(in));
	guard_free(&g);
	cr_assert_str_eq(out, want);
	cr_assert_eq(n, strlen(want));
}

Test(redact, userinfo_and_query_keys)
{
	redact_is("https://user:pass@www.example.com/p?x=1",
		  "https://REDACTED:REDACTED@www.example.com/p?x=1");
	redact_is("http://onlyuser@h:8080", "http://REDACTED:REDACTED@h:8080");
	redact_is("http://a@b@h/x@y?z@w", "http://REDACTED:REDACTED@h/x@y?z@w");
	redact_is("https://s3.amazonaws.com/b/k?AWSAccessKeyId=AKIA&Signature=abc%2F&Expires=1",
		  "https://s3.amazonaws.com/b/k?AWSAccessKeyId=REDACTED&Signature=REDACTED&Expires=1");
	redact_is("/blob?sv=2020&sig=s3cr3t&se=x", "/blob?sv=2020&sig=REDACTED&se=x");
	redact_is("/o?X-Goog-Signature=ff&X-Goog-Date=1#sig=frag",
		  "/o?X-Goog-Signature=REDACTED&X-Goog-Date=1#sig=frag");
	redact_is("/q?sig&signature=1&Sig=2&sigx=3&=4&&sig=", "/q?sig&signature=1&Sig=2&sigx=3&=4&&sig=REDACTED");
	redact_is("/no/query", "/no/query");
	redact_is("*", "*");
	redact_is("host:443", "host:443");
	redact_is("", "");
	redact_is("http://h?sig=1", "http://h?sig=REDACTED");
	redact_is("http://h#frag?sig=1", "http://h#frag?sig=1");
	redact_is("mailto:a@b", "mailto:a@b");
}

Test(redact, bare_query_and_truncation)
{
	char out[32];
	size_t n = http_query_redact(out, sizeof out, S("a=1&Signature=xyz&b=2"));
	cr_assert_str_eq(out, "a=1&Signature=REDACTED&b=2");
	cr_assert_eq(n, strlen(out));
	/* snprintf-like: the full length comes back, the output is cut and terminated */
	char small[12];
	n = http_url_redact_query(small, sizeof small, S("http://u:p@h/?sig=secret"));
	cr_assert_eq(n, strlen("http://REDACTED:REDACTED@h/?sig=REDACTED"));
	cr_assert_str_eq(small, "http://REDA");
	cr_assert_eq(http_url_redact_query(NULL, 0, S("/?sig=1")), strlen("/?sig=REDACTED"));
	char one[1] = {'x'};
	http_url_redact_query(one, 1, S("/abc"));
	cr_assert_eq(one[0], 0);
	/* a cut in the middle of a secret value shows the placeholder, never the secret */
	char mid[10];
	http_url_redact_query(mid, sizeof mid, S("/?sig=topsecretvalue"));
	cr_assert_str_eq(mid, "/?sig=RED");
}

Test(edge, null_empty_inputs_are_fine)
{
	struct http_msg_state st;
	size_t n = 99;
	char out[8];
	cr_assert_eq(http_request_sniff(NULL, 0), HTTP_SNIFF_NEED_MORE);
	http_request_init(&st, NULL);
	cr_assert_eq(http_feed(&st, NULL, 0, &n), HTTP_EV_NEED_MORE);
	cr_assert_eq(n, 0);
	cr_assert_eq(http_url_redact_query(out, sizeof out, NULL, 0), 0);
	cr_assert_str_eq(out, "");
	cr_assert_eq(http_query_redact(out, sizeof out, NULL, 0), 0);
	cr_assert_eq(http_query_redact(NULL, 0, NULL, 0), 0);
}

/* http_feed_opaque: body bytes the shim never saw (sendfile) */
Test(opaque, skips_only_what_needs_no_parsing)
{
	struct http_msg_state st;
	size_t n;

	http_response_init(&st, 0, NULL);
	cr_assert_eq(http_feed_opaque(&st, 10, &n), HTTP_EV_NEED_MORE);
	cr_assert_eq(n, 0, "a head must be seen");
	cr_assert_eq(feed_all(&st, S("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), &n), HTTP_EV_NEED_MORE);
	cr_assert_eq(http_feed_opaque(&st, 60, &n), HTTP_EV_NEED_MORE);
	cr_assert_eq(n, 60);
	cr_assert_eq(http_feed_opaque(&st, 60, &n), HTTP_EV_MESSAGE_DONE);
	cr_assert_eq(n, 40, "stops at the end of the body");

	http_response_init(&st, 0, NULL);
	feed_all(&st, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"), &n);
	cr_assert_eq(http_feed_opaque(&st, 8, &n), HTTP_EV_NEED_MORE);
	cr_assert_eq(n, 5, "chunk data only; the CRLF after it must be parsed");
	cr_assert_eq(http_feed_opaque(&st, 3, &n), HTTP_EV_NEED_MORE);
	cr_assert_eq(n, 0);
	cr_assert_eq(feed_all(&st, S("\r\n0\r\n\r\n"), &n), HTTP_EV_MESSAGE_DONE);

	http_response_init(&st, 0, NULL);
	feed_all(&st, S("HTTP/1.0 200 OK\r\n\r\n"), &n);
	cr_assert_eq(http_feed_opaque(&st, 1 << 20, &n), HTTP_EV_NEED_MORE);
	cr_assert_eq(n, 1 << 20);
	cr_assert_eq(http_feed_eof(&st), HTTP_EV_MESSAGE_DONE);
}

/* ---- http_header_value_at ---------------------------------------------- */

static long value_at_guarded(const char *s, const char *val)
{
	struct guarded g;
	guard_place(&g, s, strlen(s));
	long r = http_header_value_at(g.p, strlen(s), "traceparent", 11, val, strlen(val));
	guard_free(&g);
	return r;
}

Test(value_at, finds_only_a_header_value_of_that_name)
{
	const char *tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	char buf[400];
	snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: a\r\nTraceParent:  %s\r\n\r\n", tp);
	cr_assert_eq(value_at_guarded(buf, tp), (long)(strstr(buf, tp) - buf));
	/* the same value under another name, or in the request line, is not it */
	snprintf(buf, sizeof buf, "GET /%s HTTP/1.1\r\nx-traceparent: %s\r\n\r\n", tp, tp);
	cr_assert_eq(value_at_guarded(buf, tp), -1);
	snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nx-old: %s\r\ntraceparent:%s\r\n", tp, tp);
	cr_assert_eq(value_at_guarded(buf, tp), (long)(strrchr(buf, ':') + 1 - buf));
	/* cut short before the value ends: not found, and nothing read past */
	snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\ntraceparent: %s", tp);
	buf[strlen(buf) - 1] = 0;
	cr_assert_eq(value_at_guarded(buf, tp), -1);
	cr_assert_eq(value_at_guarded(tp, tp), -1); /* no header line around it */
	cr_assert_eq(http_header_value_at(NULL, 0, "traceparent", 11, tp, strlen(tp)), -1);
}
