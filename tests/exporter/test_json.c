/* test_json.c — OTLP/JSON encoding: escaping, invalid UTF-8, 64-bit integers
 * as strings, hex ids, flags, and whole requests checked by Python's json. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "json.h"
#include "pyrun.h"
#include "spanbuild.h"

static char out_text[1 << 16];

static const char *json_str(const char *p, size_t n)
{
	static struct sbuf b;
	sbuf_reset(&b);
	exp_json_string(&b, p, n);
	sbuf_cstr(&b);
	return b.p;
}

#define S(lit) json_str(lit, sizeof lit - 1)

Test(json, escapes_quotes_backslash_and_controls)
{
	cr_assert_str_eq(S("plain"), "\"plain\"");
	cr_assert_str_eq(S("a\"b\\c"), "\"a\\\"b\\\\c\"");
	cr_assert_str_eq(S("\n\t\r\b\f"), "\"\\n\\t\\r\\b\\f\"");
	cr_assert_str_eq(S("\x01\x1f\x7f"), "\"\\u0001\\u001f\x7f\"");
	cr_assert_str_eq(S("a\0b"), "\"a\\u0000b\"", "NUL must be escaped, not end the string");
	cr_assert_str_eq(S(""), "\"\"");
}

Test(json, valid_utf8_passes_through)
{
	cr_assert_str_eq(S("é€😀 ÿ"), "\"é€😀 ÿ\"");
	cr_assert_str_eq(S("\xef\xbf\xbf"), "\"\xef\xbf\xbf\""); /* U+FFFF is a valid scalar */
	cr_assert_str_eq(S("\xf4\x8f\xbf\xbf"), "\"\xf4\x8f\xbf\xbf\""); /* U+10FFFF */
}

#define FFFD "\xef\xbf\xbd"

Test(json, invalid_utf8_becomes_replacement_characters)
{
	cr_assert_str_eq(S("a\xff" "b"), "\"a" FFFD "b\"");
	cr_assert_str_eq(S("\xc3"), "\"" FFFD "\"", "truncated 2-byte sequence at the end");
	cr_assert_str_eq(S("\xe2\x82" "x"), "\"" FFFD "x\"", "truncated 3-byte sequence: one U+FFFD");
	cr_assert_str_eq(S("\xc0\xaf"), "\"" FFFD FFFD "\"", "overlong '/'");
	cr_assert_str_eq(S("\xed\xa0\x80"), "\"" FFFD FFFD FFFD "\"", "UTF-16 surrogate");
	cr_assert_str_eq(S("\xf4\x90\x80\x80"), "\"" FFFD FFFD FFFD FFFD "\"", "above U+10FFFF");
	cr_assert_str_eq(S("\x80\x80"), "\"" FFFD FFFD "\"", "lone continuation bytes");
}

Test(json, every_byte_pair_gives_valid_json)
{
	/* All 65536 two-byte strings in one JSON array, judged by Python. */
	struct sbuf b;
	sbuf_init(&b);
	sbuf_putc(&b, '[');
	for (unsigned i = 0; i < 65536; i++) {
		char two[2] = {(char)(i >> 8), (char)(i & 255)};
		if (i)
			sbuf_putc(&b, ',');
		exp_json_string(&b, two, 2);
	}
	sbuf_putc(&b, ']');
	int rc = tb_python("import json,sys; a=json.loads(sys.stdin.buffer.read()); print(len(a))",
			   b.p, b.len, out_text, sizeof out_text);
	cr_assert_eq(rc, 0, "python rejected the JSON");
	cr_assert_str_eq(out_text, "65536\n");
	sbuf_free(&b);
}

static const char *attr_json(struct ts_attr a)
{
	static struct sbuf b;
	sbuf_reset(&b);
	exp_json_attr(&b, &a);
	sbuf_cstr(&b);
	return b.p;
}

#define KEY(k) ((struct ts_str){k, sizeof k - 1})

Test(json, attribute_values)
{
	cr_assert_str_eq(attr_json((struct ts_attr){.key = KEY("i"), .type = TS_ATTR_INT, .v.i = INT64_MIN}),
			 "{\"key\":\"i\",\"value\":{\"intValue\":\"-9223372036854775808\"}}");
	cr_assert_str_eq(attr_json((struct ts_attr){.key = KEY("i"), .type = TS_ATTR_INT, .v.i = INT64_MAX}),
			 "{\"key\":\"i\",\"value\":{\"intValue\":\"9223372036854775807\"}}");
	cr_assert_str_eq(attr_json((struct ts_attr){.key = KEY("b"), .type = TS_ATTR_BOOL, .v.b = false}),
			 "{\"key\":\"b\",\"value\":{\"boolValue\":false}}");
	cr_assert_str_eq(attr_json((struct ts_attr){.key = KEY("d"), .type = TS_ATTR_DOUBLE, .v.d = 1.5}),
			 "{\"key\":\"d\",\"value\":{\"doubleValue\":1.5}}");
	cr_assert_str_eq(attr_json((struct ts_attr){.key = KEY("d"), .type = TS_ATTR_DOUBLE, .v.d = NAN}),
			 "{\"key\":\"d\",\"value\":{\"doubleValue\":\"NaN\"}}");
	cr_assert_str_eq(attr_json((struct ts_attr){.key = KEY("d"), .type = TS_ATTR_DOUBLE, .v.d = -INFINITY}),
			 "{\"key\":\"d\",\"value\":{\"doubleValue\":\"-Infinity\"}}");
	cr_assert_str_eq(attr_json((struct ts_attr){.key = KEY("k\"1"), .type = TS_ATTR_STR,
						     .v.s = KEY("v\n")}),
			 "{\"key\":\"k\\\"1\",\"value\":{\"stringValue\":\"v\\n\"}}");
}

Test(json, string_array_attribute)
{
	uint8_t blob[256];
	const char *items[] = {"curl", "-s", "a\"b\xff", "", NULL};
	cr_assert_str_eq(attr_json(tb_strarray(blob, sizeof blob, "process.command_args", items)),
			 "{\"key\":\"process.command_args\",\"value\":{\"arrayValue\":{\"values\":["
			 "{\"stringValue\":\"curl\"},{\"stringValue\":\"-s\"},"
			 "{\"stringValue\":\"a\\\"b\xef\xbf\xbd\"},{\"stringValue\":\"\"}]}}}");
	const char *none[] = {NULL};
	cr_assert_str_eq(attr_json(tb_strarray(blob, sizeof blob, "e", none)),
			 "{\"key\":\"e\",\"value\":{\"arrayValue\":{\"values\":[]}}}");
}

/* The span as the file sink writes it: from its queued record. */
static const char *span_json(struct tb_span *s)
{
	static struct sbuf b;
	uint8_t rec[TS_SPAN_RECORD_MAX];
	size_t n = tb_span_record(rec, sizeof rec, s);
	cr_assert_gt(n, 0);
	struct exp_resource *r = exp_resource_unknown();
	struct exp_span *es = exp_span_new(r, rec, (uint16_t)n);
	cr_assert_not_null(es);
	exp_resource_unref(r);
	sbuf_reset(&b);
	exp_json_span(&b, es);
	sbuf_cstr(&b);
	exp_span_free_list(es);
	return b.p;
}

Test(json, span_golden)
{
	struct tb_span s;
	tb_span_init(&s, "GET", 1, 0);
	cr_assert_str_eq(span_json(&s),
			 "{\"traceId\":\"11111111111111111111111111111101\",\"spanId\":\"2222222222222201\","
			 "\"parentSpanId\":\"3333333333333333\",\"flags\":257,\"name\":\"GET\",\"kind\":3,"
			 "\"startTimeUnixNano\":\"1700000000000000001\",\"endTimeUnixNano\":\"1700000000000001001\","
			 "\"attributes\":[{\"key\":\"http.request.method\",\"value\":{\"stringValue\":\"GET\"}},"
			 "{\"key\":\"server.port\",\"value\":{\"intValue\":\"8080\"}},"
			 "{\"key\":\"tb.ok\",\"value\":{\"boolValue\":true}}]}");
}

Test(json, root_span_has_no_parent_and_hex_is_lowercase)
{
	struct tb_span s;
	tb_span_init(&s, "x", 0xAB, 1);
	const char *j = span_json(&s);
	cr_assert_null(strstr(j, "parentSpanId"), "%s", j);
	cr_assert_not_null(strstr(j, "\"traceId\":\"111111111111111111111111111111ab\""), "%s", j);
	cr_assert_not_null(strstr(j, "\"spanId\":\"22222222222222ab\""), "%s", j);
}

Test(json, span_flags)
{
	struct tb_span s;
	tb_span_init(&s, "x", 1, 0);
	s.v.flags = 0;
	cr_assert_not_null(strstr(span_json(&s), "\"flags\":256,"), "not sampled, local parent: 0x100");
	s.v.flags = TS_SPAN_F_SAMPLED | TS_SPAN_F_PARENT_REMOTE;
	cr_assert_not_null(strstr(span_json(&s), "\"flags\":769,"), "sampled, remote parent: 0x301");
	s.v.flags = TS_SPAN_F_PARENT_REMOTE;
	cr_assert_not_null(strstr(span_json(&s), "\"flags\":768,"), "remote parent: 0x300");
	cr_assert_eq(exp_otlp_link_flags(TS_SPAN_F_SAMPLED | TS_SPAN_F_PARENT_REMOTE), 1u);
}

Test(json, status_links_and_trace_state)
{
	struct tb_span s;
	tb_span_init(&s, "x", 1, 0);
	s.v.status = TS_STATUS_ERROR;
	s.v.status_message = KEY("boom \"x\"");
	s.v.trace_state = KEY("congo=t61rcWkgMzE");
	uint8_t lt[16], ls[8];
	memset(lt, 0xaa, 16);
	memset(ls, 0xbb, 8);
	s.v.n_links = 1;
	s.v.links[0].trace_id = lt;
	s.v.links[0].span_id = ls;
	s.v.links[0].flags = TS_SPAN_F_SAMPLED;
	const char *j = span_json(&s);
	cr_assert_not_null(strstr(j, ",\"traceState\":\"congo=t61rcWkgMzE\","), "%s", j);
	cr_assert_not_null(strstr(j, ",\"status\":{\"message\":\"boom \\\"x\\\"\",\"code\":2}}"), "%s", j);
	cr_assert_not_null(strstr(j, ",\"links\":[{\"traceId\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
				     "\"spanId\":\"bbbbbbbbbbbbbbbb\",\"flags\":1}]"), "%s", j);
	s.v.status = TS_STATUS_UNSET;
	s.v.status_message.len = 0;
	cr_assert_null(strstr(span_json(&s), "status"), "an unset status is omitted");
}

/* ---- whole requests ----------------------------------------------------- */

static struct exp_resource *resource(const char *service, uint32_t pid)
{
	uint8_t frame[1024];
	size_t n = tb_hello_frame(frame, sizeof frame, service, pid, 0);
	bool oom;
	struct exp_resource *r = exp_resource_from_hello(frame + TS_FRAME_HEADER_SIZE,
							 n - TS_FRAME_HEADER_SIZE, &oom);
	cr_assert_not_null(r);
	return r;
}

static struct exp_span *span_for(struct exp_resource *r, const char *name, uint8_t seed)
{
	struct tb_span s;
	uint8_t rec[TS_SPAN_RECORD_MAX];
	tb_span_init(&s, name, seed, seed % 2);
	size_t n = tb_span_record(rec, sizeof rec, &s);
	cr_assert_gt(n, 0);
	return exp_span_new(r, rec, (uint16_t)n);
}

Test(json, request_groups_by_resource)
{
	struct exp_resource *a = resource("svc-a", 10), *b = resource("svc-b", 20), *a2 = resource("svc-a", 10);
	/* a2 is a second, equal resource (a process that reconnected): same group as a. */
	struct exp_span *list = span_for(a, "a1", 1);
	list->next = span_for(b, "b1", 2);
	list->next->next = span_for(a2, "a2\xff", 3);
	exp_resource_unref(a);
	exp_resource_unref(b);
	exp_resource_unref(a2);
	struct exp_batch batch;
	cr_assert_eq(exp_batch_build(&batch, list, 3), 0);
	cr_assert_eq(batch.n_groups, 2);
	struct sbuf out;
	sbuf_init(&out);
	cr_assert(exp_json_encode(&out, &batch));
	exp_batch_free(&batch);
	const char *check =
		"import json,sys\n"
		"d = json.loads(sys.stdin.buffer.read())\n"
		"for rs in d['resourceSpans']:\n"
		"    attrs = {a['key']: a['value'] for a in rs['resource']['attributes']}\n"
		"    ss, = rs['scopeSpans']\n"
		"    assert ss['scope'] == {'name': 'traceshim', 'version': '" TRACESHIM_VERSION "'}, ss['scope']\n"
		"    for sp in ss['spans']:\n"
		"        assert isinstance(sp['startTimeUnixNano'], str) and isinstance(sp['kind'], int)\n"
		"    print(attrs['service.name']['stringValue'], attrs['process.pid']['intValue'],\n"
		"          ' '.join(ascii(s['name']) for s in ss['spans']))\n";
	int rc = tb_python(check, out.p, out.len, out_text, sizeof out_text);
	cr_assert_eq(rc, 0, "python: %s", out_text);
	cr_assert_str_eq(out_text, "svc-a 10 'a1' 'a2\\ufffd'\nsvc-b 20 'b1'\n");
	sbuf_free(&out);
}

Test(json, hello_without_service_name_gets_unknown_service)
{
	uint8_t frame[256];
	struct ts_wbuf w;
	ts_wbuf_init(&w, frame, sizeof frame);
	ts_hello_encode(&w, 77, 1, 5, NULL, 0);
	bool oom;
	struct exp_resource *r = exp_resource_from_hello(frame, w.len, &oom);
	cr_assert_not_null(r);
	struct sbuf out;
	sbuf_init(&out);
	struct exp_span *s = span_for(r, "x", 1);
	struct exp_batch batch;
	cr_assert_eq(exp_batch_build(&batch, s, 1), 0);
	cr_assert(exp_json_encode(&out, &batch));
	sbuf_cstr(&out);
	cr_assert_not_null(strstr(out.p, "{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"
					 "{\"stringValue\":\"unknown_service\"}},{\"key\":\"process.pid\","
					 "\"value\":{\"intValue\":\"77\"}}]}"), "%s", out.p);
	exp_batch_free(&batch);
	exp_resource_unref(r);
	sbuf_free(&out);
}
