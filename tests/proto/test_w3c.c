/* W3C traceparent, tracestate and baggage. Every parse also runs on a copy
 * that ends right before a PROT_NONE page (guarded()), so an over-read of a
 * single byte crashes the test. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "proto/w3c.h"

#define TP_SAMPLED "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TP_UNSAMPLED "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"

/* ---- traceparent ------------------------------------------------------ */

static bool tp_parse(const char *s, struct w3c_traceparent *out)
{
	struct guarded g;
	guard_place(&g, s, strlen(s));
	bool ok = w3c_traceparent_parse(g.p, strlen(s), out);
	guard_free(&g);
	return ok;
}

static void tp_valid(const char *s)
{
	struct w3c_traceparent tp;
	cr_assert(tp_parse(s, &tp), "should accept \"%s\"", s);
}

static void tp_invalid(const char *s)
{
	struct w3c_traceparent tp;
	memset(&tp, 0x77, sizeof tp);
	cr_assert_not(tp_parse(s, &tp), "should reject \"%s\"", s);
	for (size_t i = 0; i < sizeof tp; i++)
		cr_assert_eq(((unsigned char *)&tp)[i], 0x77, "output touched on failure");
}

Test(traceparent, spec_examples)
{
	struct w3c_traceparent tp;
	static const uint8_t tid[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
					0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
	static const uint8_t sid[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};

	cr_assert(tp_parse(TP_SAMPLED, &tp));
	cr_assert_eq(tp.version, 0);
	cr_assert_arr_eq(tp.trace_id, tid, 16);
	cr_assert_arr_eq(tp.span_id, sid, 8);
	cr_assert_eq(tp.flags & W3C_FLAG_SAMPLED, W3C_FLAG_SAMPLED);
	cr_assert(tp_parse(TP_UNSAMPLED, &tp));
	cr_assert_eq(tp.flags & W3C_FLAG_SAMPLED, 0);
	tp_valid("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
	tp_valid("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00");
	tp_valid("00-b9c7c989f97918e1b9c7c989f97918e1-b9c7c989f97918e1-01");
}

Test(traceparent, flags_are_a_bit_field)
{
	struct w3c_traceparent tp;
	cr_assert(tp_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", &tp));
	cr_assert_eq(tp.flags, 0x09);
	cr_assert(tp.flags & W3C_FLAG_SAMPLED);
	cr_assert(tp_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", &tp));
	cr_assert(tp.flags & W3C_FLAG_RANDOM);
	tp_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff");
}

Test(traceparent, ows_around_value)
{
	tp_valid(" " TP_SAMPLED);
	tp_valid("\t " TP_SAMPLED " \t");
	tp_invalid(TP_SAMPLED "\n");
	tp_invalid("\v" TP_SAMPLED);
}

Test(traceparent, invalid)
{
	static const char *const bad[] = {
		"",
		"00",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",      /* 54 chars */
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",     /* uppercase id */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",     /* uppercase flags */
		"0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     /* uppercase version */
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",     /* zero trace-id */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",     /* zero parent-id */
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     /* forbidden version */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",    /* v00 + trailing */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-010",
		"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",     /* misplaced dash */
		"00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01",
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",     /* non-hex */
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
		"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-.1",
		"00- bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",     /* higher: no dash */
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",        /* higher: too short */
		"cc-00000000000000000000000000000000-00f067aa0ba902b7-01-x",    /* higher: zero id */
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0G-x",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		tp_invalid(bad[i]);
}

Test(traceparent, higher_versions)
{
	struct w3c_traceparent tp;
	cr_assert(tp_parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future", &tp));
	cr_assert_eq(tp.version, 0xcc);
	cr_assert_eq(tp.flags, 1);
	tp_valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
	tp_valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-");
	tp_valid("fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-UPPER-ok-here");
}

Test(traceparent, format_round_trip_and_downgrade)
{
	struct w3c_traceparent tp;
	char out[W3C_TRACEPARENT_LEN + 1] = {0};

	cr_assert(tp_parse(TP_SAMPLED, &tp));
	cr_assert_eq(w3c_traceparent_format(&tp, out), 55);
	cr_assert_str_eq(out, TP_SAMPLED);
	cr_assert(tp_parse("ab-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-zz", &tp));
	w3c_traceparent_format(&tp, out);
	cr_assert_str_eq(out, TP_SAMPLED, "a higher version goes out as 00");
	memset(&tp, 0, sizeof tp);
	for (int i = 0; i < 16; i++)
		tp.trace_id[i] = (uint8_t)(0xf0 + i);
	tp.span_id[7] = 0xab;
	tp.flags = 0x03;
	w3c_traceparent_format(&tp, out);
	cr_assert_str_eq(out, "00-f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff-00000000000000ab-03");
	cr_assert_not(w3c_traceparent_ids_zero(&tp));
	memset(tp.span_id, 0, 8);
	cr_assert(w3c_traceparent_ids_zero(&tp));
}

Test(traceparent, every_prefix_at_guard)
{
	const char *s = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x";
	struct w3c_traceparent tp;
	for (size_t n = 0; n <= strlen(s); n++) {
		struct guarded g;
		guard_place(&g, s, n);
		bool ok = w3c_traceparent_parse(g.p, n, &tp);
		guard_free(&g);
		cr_assert_eq(ok, n >= 55, "prefix %zu", n);
	}
}

/* ---- tracestate ------------------------------------------------------- */

static bool ts_valid(const char *s, struct w3c_tracestate_info *info)
{
	struct guarded g;
	guard_place(&g, s, strlen(s));
	bool ok = w3c_tracestate_validate(g.p, strlen(s), info);
	guard_free(&g);
	return ok;
}

Test(tracestate, valid)
{
	struct w3c_tracestate_info info;
	cr_assert(ts_valid("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", &info));
	cr_assert_eq(info.members, 2);
	cr_assert(ts_valid("congo=t61rcWkgMzE", &info));
	cr_assert(ts_valid("", &info), "empty header is accepted");
	cr_assert_eq(info.members, 0);
	cr_assert(ts_valid(" \t ", &info));
	cr_assert(ts_valid(",,, ,", &info));
	cr_assert_eq(info.members, 0);
	cr_assert(ts_valid(" rojo=1 ,\tcongo=2\t, ,", &info));
	cr_assert_eq(info.members, 2);
	cr_assert_eq(info.len, strlen("rojo=1 ,\tcongo=2\t, ,"));
	cr_assert(ts_valid("foo@bar=1", NULL), "multi-tenant key");
	cr_assert(ts_valid("1tenant@sys=1", NULL), "key may start with a digit");
	cr_assert(ts_valid("a_-*/@z=1", NULL));
	cr_assert(ts_valid("a= leading space kept", NULL));
	cr_assert(ts_valid("a=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~", NULL));
}

Test(tracestate, invalid)
{
	static const char *const bad[] = {
		"Foo=1", "foo bar=1", "=1", "@foo=1", "_foo=1", "foo", "foo=", "foo= ",
		"foo=a=b", "foo=\tx", "foo=x\x7f", "foo=\xc3\xa9", "foo=1,foo=2", "a=1,b=2,a=3",
		"foo=1;bar=2", "f\x01=1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_not(ts_valid(bad[i], NULL), "should reject \"%s\"", bad[i]);
}

Test(tracestate, limits)
{
	char s[4096], k[300];
	int n = 0;
	for (int i = 0; i < 32; i++)
		n += sprintf(s + n, "%sk%d=v", i ? "," : "", i);
	cr_assert(ts_valid(s, NULL), "32 members");
	sprintf(s + n, ",k32=v");
	cr_assert_not(ts_valid(s, NULL), "33 members");
	/* key up to 256 chars, value up to 256 chars */
	memset(k, 'k', 256);
	k[256] = 0;
	snprintf(s, sizeof s, "%s=v", k);
	cr_assert(ts_valid(s, NULL));
	snprintf(s, sizeof s, "%sk=v", k);
	cr_assert_not(ts_valid(s, NULL));
	memset(k, 'v', 256);
	snprintf(s, sizeof s, "a=%s", k);
	cr_assert(ts_valid(s, NULL));
	snprintf(s, sizeof s, "a=%sv", k);
	cr_assert_not(ts_valid(s, NULL));
}

Test(tracestate, may_propagate_512)
{
	char s[600];
	cr_assert(w3c_tracestate_may_propagate("rojo=1", 6));
	/* "a=" + 254 x + ",b=" + 253 y: exactly 512 bytes */
	int n = sprintf(s, "a=");
	memset(s + n, 'x', 254);
	n += 254;
	n += sprintf(s + n, ",b=");
	memset(s + n, 'y', 253);
	n += 253;
	cr_assert_eq(n, 512);
	cr_assert(w3c_tracestate_may_propagate(s, (size_t)n));
	s[n] = 'y';
	cr_assert_not(w3c_tracestate_may_propagate(s, (size_t)n + 1));
	cr_assert_not(w3c_tracestate_may_propagate("A=1", 3));
}

static size_t ts_build(char *out, size_t cap, const char *s)
{
	struct guarded g;
	guard_place(&g, s, strlen(s));
	size_t n = w3c_tracestate_build(out, cap, g.p, strlen(s));
	guard_free(&g);
	out[n] = 0;
	return n;
}

Test(tracestate, build_normalises_and_truncates_whole_entries)
{
	char out[1024], in[2048], big[200];
	ts_build(out, 600, " rojo=1 , ,congo=2\t");
	cr_assert_str_eq(out, "rojo=1,congo=2");
	cr_assert_eq(ts_build(out, 600, "Bad=1,rojo=1"), 0, "invalid input: nothing goes out");
	/* a 150-byte entry among small ones: over the limit, it goes first */
	memset(big, 'b', 148);
	big[148] = 0;
	int n = sprintf(in, "a=1,big=%s", big);
	for (int i = 0; i < 25; i++)
		n += sprintf(in + n, ",k%02d=0123456789", i);
	cr_assert_gt(n, 512);
	size_t w = ts_build(out, 600, in);
	cr_assert_lt(w, 513);
	cr_assert_null(strstr(out, "big="));
	cr_assert(strncmp(out, "a=1,k00=", 8) == 0);
	cr_assert(strstr(out, "k24=0123456789"), "everything else fits once the big one is gone");
	/* a small cap: entries dropped from the end, whole */
	w = ts_build(out, 20, "aa=1,bb=22,cc=333,dd=4444");
	cr_assert_str_eq(out, "aa=1,bb=22,cc=333");
	w = ts_build(out, 3, "aa=1");
	cr_assert_eq(w, 0);
	/* the output is always a valid tracestate */
	cr_assert(w3c_tracestate_validate(out, w, NULL));
}

/* ---- baggage ---------------------------------------------------------- */

struct bg_got {
	int n;
	char key[80][64];
	char val[80][256];
	char props[80][128];
};

static void bg_collect(const char *s, struct bg_got *got)
{
	struct guarded g;
	struct w3c_baggage_iter it;
	struct w3c_baggage_member m;

	memset(got, 0, sizeof *got);
	guard_place(&g, s, strlen(s));
	w3c_baggage_iter_init(&it, g.p, strlen(s));
	while (w3c_baggage_next(&it, &m) && got->n < 80) {
		size_t vn = w3c_baggage_decode_value(&m, got->val[got->n], 255);
		cr_assert_neq(vn, SIZE_MAX, "iterator returned an undecodable member");
		got->val[got->n][vn] = 0;
		snprintf(got->key[got->n], 64, "%.*s", (int)m.key_len, m.key);
		snprintf(got->props[got->n], 128, "%.*s", (int)m.props_len, m.props);
		got->n++;
	}
	guard_free(&g);
}

Test(baggage, spec_example_iterates_with_properties)
{
	struct bg_got got;
	bg_collect("key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
		   &got);
	cr_assert_eq(got.n, 3);
	cr_assert_str_eq(got.key[0], "key1");
	cr_assert_str_eq(got.val[0], "value1");
	cr_assert_str_eq(got.props[0], "property1;property2");
	cr_assert_str_eq(got.key[1], "key2");
	cr_assert_str_eq(got.val[1], "value2");
	cr_assert_str_eq(got.props[1], "");
	cr_assert_str_eq(got.props[2], "propertyKey=propertyValue");
}

Test(baggage, percent_decoding)
{
	struct bg_got got;
	bg_collect("userId=alice,serverNode=DF%2028,isProduction=false,s=%20hello%2Cworld%3B,"
		   "utf=caf%C3%a9,empty=,raw=a%25b",
		   &got);
	cr_assert_eq(got.n, 7);
	cr_assert_str_eq(got.val[1], "DF 28");
	cr_assert_str_eq(got.val[3], " hello,world;");
	cr_assert_str_eq(got.val[4], "caf\xc3\xa9");
	cr_assert_str_eq(got.val[5], "");
	cr_assert_str_eq(got.val[6], "a%b");
}

Test(baggage, invalid_members_are_skipped_whole)
{
	struct bg_got got;
	bg_collect("ok1=1,=v,k,k=v v,k=\"q\",k=a\\b,bad=%zz,bad=%4,bad=%,bad=%C3,bad=%C0%AF,"
		   "bad=%ED%A0%80,bad=%F4%90%80%80,k=v;,k=v;;p,k=v;p=\"x\",k=v;=x,"
		   "k(=v,,ok2=2;p;q = r",
		   &got);
	cr_assert_eq(got.n, 2);
	cr_assert_str_eq(got.key[0], "ok1");
	cr_assert_str_eq(got.key[1], "ok2");
	cr_assert_str_eq(got.props[1], "p;q = r");
}

Test(baggage, decode_needs_room)
{
	struct w3c_baggage_iter it;
	struct w3c_baggage_member m;
	char out[4];
	w3c_baggage_iter_init(&it, "k=ab%20cd", 9);
	cr_assert(w3c_baggage_next(&it, &m));
	cr_assert_eq(w3c_baggage_decode_value(&m, NULL, 0), 5);
	cr_assert_eq(w3c_baggage_decode_value(&m, out, sizeof out), SIZE_MAX);
	cr_assert_not(w3c_baggage_next(&it, &m));
}

static size_t bg_build(char *out, size_t cap, const char *s, size_t len)
{
	struct guarded g;
	guard_place(&g, s, len);
	size_t n = w3c_baggage_build(out, cap, g.p, len);
	guard_free(&g);
	return n;
}

Test(baggage, build_normalises)
{
	char out[256];
	const char *in = " k1 = v1 ; p1 ; p2 = x , bad=%zz,, k2=%20 ";
	size_t n = bg_build(out, sizeof out, in, strlen(in));
	out[n] = 0;
	cr_assert_str_eq(out, "k1=v1;p1;p2=x,k2=%20");
	cr_assert_eq(bg_build(out, sizeof out, "", 0), 0);
	cr_assert_eq(bg_build(out, sizeof out, "junk", 4), 0);
}

Test(baggage, build_limits_drop_whole_members)
{
	char *in = malloc(64 * 1024), *out = malloc(16 * 1024);
	cr_assert(in && out);
	/* 100 members: only the first 64 go out */
	int n = 0;
	for (int i = 0; i < 100; i++)
		n += sprintf(in + n, "%sm%d=%d", i ? "," : "", i, i);
	size_t w = bg_build(out, 16384, in, (size_t)n);
	out[w] = 0;
	int commas = 0;
	for (size_t i = 0; i < w; i++)
		commas += out[i] == ',';
	cr_assert_eq(commas, 63);
	cr_assert(strstr(out, ",m63=63") && !strstr(out, "m64="));
	/* 8192-byte cap: 3 members of 3000 bytes, then a small one */
	n = 0;
	for (int i = 0; i < 3; i++) {
		n += sprintf(in + n, "%sbig%d=", i ? "," : "", i);
		memset(in + n, 'v', 2995);
		n += 2995;
	}
	n += sprintf(in + n, ",small=1");
	w = bg_build(out, 16384, in, (size_t)n);
	cr_assert_leq(w, W3C_BAGGAGE_MAX_BYTES);
	out[w] = 0;
	cr_assert(strncmp(out, "big0=", 5) == 0);
	cr_assert(strstr(out, ",big1=") && !strstr(out, "big2="), "the third does not fit whole");
	cr_assert(strstr(out, ",small=1"), "a later, shorter member still fits");
	cr_assert(out[w - 1] == '1');
	/* exactly 8192 bytes goes through untouched */
	n = sprintf(in, "k=");
	memset(in + n, 'x', 8190);
	n += 8190;
	w = bg_build(out, 16384, in, (size_t)n);
	cr_assert_eq(w, 8192);
	in[n++] = 'x';
	cr_assert_eq(bg_build(out, 16384, in, (size_t)n), 0, "8193 bytes: dropped whole");
	/* the caller's cap is honoured too */
	cr_assert_eq(bg_build(out, 5, "ab=1,cd=2", 9), 4);
	free(in);
	free(out);
}

Test(baggage, env_carrier_uses_same_parsers)
{
	/* TRACEPARENT/TRACESTATE/BAGGAGE env values are plain header values */
	const char *env_tp = TP_SAMPLED;
	struct w3c_traceparent tp;
	cr_assert(w3c_traceparent_parse(env_tp, strlen(env_tp), &tp));
	char out[64];
	size_t n = w3c_baggage_build(out, sizeof out, "a=1", 3);
	cr_assert_eq(n, 3);
}

Test(edge, null_empty_inputs_are_fine)
{
	/* (NULL, 0) is a valid empty input everywhere (UBSan checks the
	 * nonnull contracts of memchr/memcpy in the -asan build) */
	struct w3c_traceparent tp;
	struct w3c_tracestate_info info;
	struct w3c_baggage_iter it;
	struct w3c_baggage_member m;
	char out[8];
	cr_assert_not(w3c_traceparent_parse(NULL, 0, &tp));
	cr_assert(w3c_tracestate_validate(NULL, 0, &info));
	cr_assert_eq(info.members, 0);
	cr_assert_eq(w3c_tracestate_build(out, sizeof out, NULL, 0), 0);
	cr_assert_eq(w3c_tracestate_build(NULL, 0, "a=1", 3), 0);
	w3c_baggage_iter_init(&it, NULL, 0);
	cr_assert_not(w3c_baggage_next(&it, &m));
	cr_assert_eq(w3c_baggage_build(out, sizeof out, NULL, 0), 0);
	cr_assert_eq(w3c_baggage_build(NULL, 0, "a=1", 3), 0);
}
