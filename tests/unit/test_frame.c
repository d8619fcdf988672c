/* The frame codec, alone and over a real SOCK_SEQPACKET socketpair. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"

static const uint8_t TID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t SID[8] = {0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 1, 2};
static const uint8_t PID[8] = {9, 9, 9, 9, 9, 9, 9, 9};

static struct ts_attr str_attr(const char *k, const char *v)
{
	struct ts_attr a = {.key = {k, (uint16_t)strlen(k)}, .type = TS_ATTR_STR};
	a.v.s.ptr = v;
	a.v.s.len = (uint16_t)strlen(v);
	return a;
}

static void sample_span(struct ts_span_view *s)
{
	memset(s, 0, sizeof *s);
	s->trace_id = TID;
	s->span_id = SID;
	s->parent_span_id = PID;
	s->start_ns = 1700000000000000000ull;
	s->end_ns = s->start_ns + 1234;
	s->kind = TS_KIND_CLIENT;
	s->status = TS_STATUS_ERROR;
	s->flags = TS_SPAN_F_SAMPLED | TS_SPAN_F_PARENT_REMOTE;
	s->name = (struct ts_str){"GET", 3};
	s->status_message = (struct ts_str){"boom", 4};
	s->attrs[0] = str_attr("url.full", "http://x/");
	s->attrs[1].key = (struct ts_str){"http.response.status_code", 25};
	s->attrs[1].type = TS_ATTR_INT;
	s->attrs[1].v.i = -404;
	s->attrs[2].key = (struct ts_str){"ok", 2};
	s->attrs[2].type = TS_ATTR_BOOL;
	s->attrs[2].v.b = true;
	s->attrs[3].key = (struct ts_str){"ratio", 5};
	s->attrs[3].type = TS_ATTR_DOUBLE;
	s->attrs[3].v.d = 0.5;
	s->n_attrs = 4;
	s->n_links = 1;
	s->links[0].trace_id = TID;
	s->links[0].span_id = PID;
	s->links[0].flags = 1;
}

/* frame = header + u16 count + n copies of the sample span */
static size_t build_frame(uint8_t *buf, size_t cap, int n)
{
	struct ts_wbuf w;
	struct ts_span_view s;
	sample_span(&s);
	ts_wbuf_init(&w, buf, cap);
	ts_frame_begin(&w, TS_FRAME_SPANS, 7);
	ts_put_u16(&w, (uint16_t)n);
	for (int i = 0; i < n; i++)
		ts_span_encode(&w, &s);
	cr_assert(ts_frame_finish(&w));
	return w.len;
}

/* Returns the number of valid spans, or -1 if the frame is rejected. */
static int decode_frame(const uint8_t *buf, size_t len)
{
	struct ts_frame_header h;
	if (!ts_frame_parse_header(buf, len, &h) || h.type != TS_FRAME_SPANS)
		return -1;
	struct ts_rbuf r;
	ts_rbuf_init(&r, buf + TS_FRAME_HEADER_SIZE, h.length);
	uint16_t n = ts_get_u16(&r);
	struct ts_span_view v;
	for (int i = 0; i < n; i++)
		if (!ts_span_decode(&r, &v))
			return -1;
	return r.off == r.len && !r.bad ? n : -1;
}

Test(frame, span_round_trip)
{
	uint8_t buf[4096];
	size_t len = build_frame(buf, sizeof buf, 1);
	struct ts_frame_header h;
	cr_assert(ts_frame_parse_header(buf, len, &h));
	cr_assert_eq(h.dropped, 7);
	struct ts_rbuf r;
	ts_rbuf_init(&r, buf + TS_FRAME_HEADER_SIZE, h.length);
	cr_assert_eq(ts_get_u16(&r), 1);
	struct ts_span_view v;
	cr_assert(ts_span_decode(&r, &v));
	cr_assert(memcmp(v.trace_id, TID, 16) == 0 && memcmp(v.span_id, SID, 8) == 0);
	cr_assert(memcmp(v.parent_span_id, PID, 8) == 0);
	cr_assert_eq(v.end_ns - v.start_ns, 1234);
	cr_assert_eq(v.kind, TS_KIND_CLIENT);
	cr_assert_eq(v.status, TS_STATUS_ERROR);
	cr_assert_eq(v.n_attrs, 4);
	cr_assert(v.attrs[0].v.s.len == 9 && !memcmp(v.attrs[0].v.s.ptr, "http://x/", 9));
	cr_assert_eq(v.attrs[1].v.i, -404);
	cr_assert(v.attrs[2].v.b);
	cr_assert_float_eq(v.attrs[3].v.d, 0.5, 0);
	cr_assert_eq(v.n_links, 1);
	cr_assert(memcmp(v.links[0].span_id, PID, 8) == 0);
	cr_assert(v.name.len == 3 && !memcmp(v.name.ptr, "GET", 3));
}

Test(frame, string_arrays_round_trip_and_bad_blobs_are_rejected)
{
	uint8_t blob[64], rec[256];
	struct ts_wbuf b, w;
	ts_wbuf_init(&b, blob, sizeof blob);
	ts_put_str16(&b, "curl", 4);
	ts_put_str16(&b, "-s", 2);
	struct ts_attr a = {.key = {"process.command_args", 20}, .type = TS_ATTR_STRARRAY};
	a.v.s.ptr = (const char *)blob;
	a.v.s.len = (uint16_t)b.len;
	ts_wbuf_init(&w, rec, sizeof rec);
	ts_put_attr(&w, &a);
	struct ts_rbuf r;
	struct ts_attr got;
	ts_rbuf_init(&r, rec, w.len);
	cr_assert(ts_get_attr(&r, &got));
	struct ts_rbuf items;
	struct ts_str it;
	ts_rbuf_init(&items, got.v.s.ptr, got.v.s.len);
	cr_assert(ts_strarray_next(&items, &it) && it.len == 4);
	cr_assert(ts_strarray_next(&items, &it) && it.len == 2 && !memcmp(it.ptr, "-s", 2));
	cr_assert_not(ts_strarray_next(&items, &it));
	rec[1 + 20 + 1 + 2] = 200; /* first item (after key and blob length) claims more than the blob has */
	ts_rbuf_init(&r, rec, w.len);
	cr_assert_not(ts_get_attr(&r, &got));
}

Test(frame, bad_headers_are_rejected)
{
	uint8_t buf[4096];
	size_t len = build_frame(buf, sizeof buf, 2);
	struct ts_frame_header h;
	cr_assert_not(ts_frame_parse_header(buf, len - 1, &h), "length mismatch");
	cr_assert_not(ts_frame_parse_header(buf, 8, &h), "short header");
	buf[0] ^= 1;
	cr_assert_not(ts_frame_parse_header(buf, len, &h), "magic");
	buf[0] ^= 1;
	buf[4] = 2;
	cr_assert_not(ts_frame_parse_header(buf, len, &h), "version");
	buf[4] = 1;
	buf[6] = 99;
	cr_assert_not(ts_frame_parse_header(buf, len, &h), "type");
}

Test(frame, every_single_byte_corruption_is_caught_or_harmless)
{
	uint8_t good[4096], bad[4096];
	size_t len = build_frame(good, sizeof good, 3);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(bad, good, len);
			bad[i] ^= (uint8_t)(1u << bit);
			int n = decode_frame(bad, len); /* must not crash; ASan-clean */
			cr_assert(n == -1 || n == 3);
		}
	}
}

Test(frame, lying_record_length_cannot_reach_the_next_record)
{
	uint8_t buf[4096];
	size_t len = build_frame(buf, sizeof buf, 2);
	/* first record's length: claim 10 bytes more; its inner fields then end
	 * early and the trailing-bytes check rejects it */
	uint16_t rl;
	memcpy(&rl, buf + 18, 2);
	rl = (uint16_t)(rl + 10);
	memcpy(buf + 18, &rl, 2);
	cr_assert_eq(decode_frame(buf, len), -1);
}

Test(frame, random_garbage_never_decodes)
{
	uint8_t buf[TS_FRAME_MAX];
	srand(1);
	for (int round = 0; round < 2000; round++) {
		size_t len = (size_t)(rand() % 512);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand();
		cr_assert_eq(decode_frame(buf, len), -1);
	}
}

Test(frame, encoder_refuses_to_overflow)
{
	uint8_t buf[64];
	struct ts_wbuf w;
	struct ts_span_view s;
	sample_span(&s);
	ts_wbuf_init(&w, buf, sizeof buf);
	ts_frame_begin(&w, TS_FRAME_SPANS, 0);
	ts_put_u16(&w, 1);
	ts_span_encode(&w, &s);
	cr_assert(w.overflow);
	cr_assert_not(ts_frame_finish(&w));
}

/* The shim's shortcut writers: the same bytes as ts_put_attr, a value longer
 * than TS_STR_MAX cut on the same UTF-8 boundary, and the same refusal to
 * overflow. */
Test(frame, keyed_attribute_writers_match_ts_put_attr)
{
	static char big[TS_STR_MAX + 8];
	uint8_t a[4096], b[4096], small[16];
	struct ts_wbuf wa, wb;

	memset(big, 'x', sizeof big - 1);
	memcpy(big + TS_STR_MAX - 1, "\xc3\xa9", 2); /* straddles the cut */
	struct ts_attr s1 = str_attr("url.path", "/index.html"), s2 = str_attr("k", big);
	struct ts_attr i1 = {.key = {"server.port", 11}, .type = TS_ATTR_INT, .v.i = -8080};
	ts_wbuf_init(&wa, a, sizeof a);
	ts_wbuf_init(&wb, b, sizeof b);
	ts_put_attr(&wa, &s1);
	ts_put_attr(&wa, &s2);
	ts_put_attr(&wa, &i1);
	ts_put_attr_str(&wb, TS_KEY("url.path"), "/index.html", 11);
	ts_put_attr_str(&wb, TS_KEY("k"), big, strlen(big));
	ts_put_attr_int(&wb, TS_KEY("server.port"), -8080);
	cr_assert_not(wa.overflow || wb.overflow);
	cr_assert_eq(wa.len, wb.len);
	cr_assert_eq(memcmp(a, b, wa.len), 0);

	ts_wbuf_init(&wb, small, sizeof small);
	ts_put_attr_str(&wb, TS_KEY("url.path"), "/index.html", 11);
	cr_assert(wb.overflow);
}

static void seqpacket_pair(int sv[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	int small = 16384;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
}

Test(frame_socket, frames_arrive_whole_until_eagain_then_all_decode)
{
	int sv[2];
	seqpacket_pair(sv);
	uint8_t buf[TS_FRAME_MAX];
	size_t len = build_frame(buf, sizeof buf, 20);
	int sent = 0;
	for (;;) {
		ssize_t n = send(sv[0], buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "errno %d", errno);
			break;
		}
		cr_assert_eq((size_t)n, len, "a SEQPACKET send is all or nothing");
		sent++;
		cr_assert_lt(sent, 10000);
	}
	cr_assert_gt(sent, 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	uint8_t in[TS_FRAME_MAX];
	int got = 0;
	ssize_t n;
	while ((n = recv(sv[1], in, sizeof in, MSG_TRUNC)) > 0) {
		cr_assert_eq(decode_frame(in, (size_t)n), 20);
		got++;
	}
	cr_assert_eq(got, sent);
	close(sv[0]);
	close(sv[1]);
}

Test(frame_socket, short_read_is_detected_by_truncation)
{
	int sv[2];
	seqpacket_pair(sv);
	uint8_t buf[TS_FRAME_MAX];
	size_t len = build_frame(buf, sizeof buf, 5);
	cr_assert_eq(send(sv[0], buf, len, 0), (ssize_t)len);
	uint8_t in[100];
	ssize_t n = recv(sv[1], in, sizeof in, MSG_TRUNC);
	cr_assert_eq((size_t)n, len, "MSG_TRUNC reports the real size");
	cr_assert_eq(decode_frame(in, sizeof in), -1, "the truncated part never decodes");
	close(sv[0]);
	close(sv[1]);
}

Test(frame_socket, garbage_between_good_frames_does_not_affect_them)
{
	int sv[2];
	seqpacket_pair(sv);
	uint8_t good[TS_FRAME_MAX], junk[300];
	size_t len = build_frame(good, sizeof good, 2);
	memset(junk, 0x5a, sizeof junk);
	cr_assert_eq(send(sv[0], good, len, 0), (ssize_t)len);
	cr_assert_eq(send(sv[0], junk, sizeof junk, 0), (ssize_t)sizeof junk);
	cr_assert_eq(send(sv[0], good, len, 0), (ssize_t)len);
	uint8_t in[TS_FRAME_MAX];
	int results[3];
	for (int i = 0; i < 3; i++) {
		ssize_t n = recv(sv[1], in, sizeof in, 0);
		results[i] = decode_frame(in, (size_t)n);
	}
	cr_assert_eq(results[0], 2);
	cr_assert_eq(results[1], -1);
	cr_assert_eq(results[2], 2);
	close(sv[0]);
	close(sv[1]);
}
