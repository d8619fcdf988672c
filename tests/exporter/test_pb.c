/* test_pb.c — protobuf encoding: encode a batch, unpack it again with the
 * protobuf-c code generated from proto/, and compare field by field. */
#include <criterion/criterion.h>
#include <string.h>

#include "batch.h"
#include "pb.h"
#include "spanbuild.h"
#include "traceshim_otlp.pb-c.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Req;
typedef Opentelemetry__Proto__Trace__V1__Span PbSpan;
typedef Opentelemetry__Proto__Common__V1__KeyValue PbKv;

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

static struct exp_span *span_of(struct exp_resource *r, struct tb_span *s)
{
	uint8_t rec[TS_SPAN_RECORD_MAX];
	size_t n = tb_span_record(rec, sizeof rec, s);
	cr_assert_gt(n, 0);
	return exp_span_new(r, rec, (uint16_t)n);
}

static Req *roundtrip(struct exp_span *list, size_t n)
{
	struct exp_batch b;
	struct sbuf out;
	sbuf_init(&out);
	cr_assert_eq(exp_batch_build(&b, list, n), 0);
	cr_assert(exp_pb_encode(&out, &b));
	exp_batch_free(&b);
	Req *req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, out.len, (const uint8_t *)out.p);
	cr_assert_not_null(req, "protobuf-c cannot unpack what we packed");
	sbuf_free(&out);
	return req;
}

static void free_req(Req *r)
{
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(r, NULL);
}

static const PbKv *find_attr(PbKv **kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(kv[i]->key, key) == 0)
			return kv[i];
	cr_assert_fail("attribute %s missing", key);
	return NULL;
}

#define KEY(k) ((struct ts_str){k, sizeof k - 1})

Test(pb, span_fields_roundtrip)
{
	struct exp_resource *r = resource("svc-pb", 4242);
	struct tb_span s;
	tb_span_init(&s, "GET", 7, 0);
	s.v.flags = TS_SPAN_F_SAMPLED | TS_SPAN_F_PARENT_REMOTE;
	s.v.status = TS_STATUS_ERROR;
	s.v.status_message = KEY("bad\0gateway");
	s.v.trace_state = KEY("k=v");
	s.v.attrs[s.v.n_attrs++] = (struct ts_attr){.key = KEY("d"), .type = TS_ATTR_DOUBLE, .v.d = -2.25};
	s.v.attrs[s.v.n_attrs++] = (struct ts_attr){.key = KEY("neg"), .type = TS_ATTR_INT, .v.i = -5};
	s.v.attrs[s.v.n_attrs++] = (struct ts_attr){.key = KEY("u"), .type = TS_ATTR_STR, .v.s = KEY("a\xff" "b")};
	uint8_t blob[128];
	const char *items[] = {"curl", "x\xff", NULL};
	s.v.attrs[s.v.n_attrs++] = tb_strarray(blob, sizeof blob, "argv", items);
	uint8_t lt[16], ls[8];
	memset(lt, 0xaa, 16);
	memset(ls, 0xbb, 8);
	s.v.n_links = 1;
	s.v.links[0].trace_id = lt;
	s.v.links[0].span_id = ls;
	s.v.links[0].flags = 1;
	s.v.links[0].n_attrs = 1;
	s.v.links[0].attrs[0] = (struct ts_attr){.key = KEY("lk"), .type = TS_ATTR_BOOL, .v.b = true};
	Req *req = roundtrip(span_of(r, &s), 1);
	exp_resource_unref(r);

	cr_assert_eq(req->n_resource_spans, 1);
	const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[0];
	cr_assert_str_eq(find_attr(rs->resource->attributes, rs->resource->n_attributes, "service.name")
				 ->value->string_value, "svc-pb");
	cr_assert_eq(find_attr(rs->resource->attributes, rs->resource->n_attributes, "process.pid")
			     ->value->int_value, 4242);
	cr_assert_eq(rs->n_scope_spans, 1);
	cr_assert_str_eq(rs->scope_spans[0]->scope->name, "traceshim");
	cr_assert_str_eq(rs->scope_spans[0]->scope->version, TRACESHIM_VERSION);
	cr_assert_eq(rs->scope_spans[0]->n_spans, 1);
	const PbSpan *p = rs->scope_spans[0]->spans[0];
	cr_assert_eq(p->trace_id.len, 16);
	cr_assert_arr_eq(p->trace_id.data, s.trace_id, 16);
	cr_assert_eq(p->span_id.len, 8);
	cr_assert_arr_eq(p->span_id.data, s.span_id, 8);
	cr_assert_eq(p->parent_span_id.len, 8);
	cr_assert_arr_eq(p->parent_span_id.data, s.parent, 8);
	cr_assert_str_eq(p->name, "GET");
	cr_assert_str_eq(p->trace_state, "k=v");
	cr_assert_eq(p->kind, 3);
	cr_assert_eq(p->flags, 0x301u);
	cr_assert_eq(p->start_time_unix_nano, 1700000000000000007ull);
	cr_assert_eq(p->end_time_unix_nano, 1700000000000001007ull);
	cr_assert_eq(p->n_attributes, 7);
	cr_assert_str_eq(find_attr(p->attributes, 7, "http.request.method")->value->string_value, "GET");
	cr_assert_eq(find_attr(p->attributes, 7, "server.port")->value->int_value, 8080);
	cr_assert_eq(find_attr(p->attributes, 7, "tb.ok")->value->bool_value, 1);
	cr_assert_float_eq(find_attr(p->attributes, 7, "d")->value->double_value, -2.25, 0);
	cr_assert_eq(find_attr(p->attributes, 7, "neg")->value->int_value, -5);
	cr_assert_str_eq(find_attr(p->attributes, 7, "u")->value->string_value, "a\xef\xbf\xbd" "b",
			 "invalid UTF-8 must become U+FFFD");
	const Opentelemetry__Proto__Common__V1__AnyValue *argv = find_attr(p->attributes, 7, "argv")->value;
	cr_assert_eq(argv->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE);
	cr_assert_eq(argv->array_value->n_values, 2);
	cr_assert_str_eq(argv->array_value->values[0]->string_value, "curl");
	cr_assert_str_eq(argv->array_value->values[1]->string_value, "x\xef\xbf\xbd");
	cr_assert_eq(p->status->code, 2);
	cr_assert_str_eq(p->status->message, "bad\xef\xbf\xbdgateway", "NUL becomes U+FFFD");
	cr_assert_eq(p->n_links, 1);
	cr_assert_arr_eq(p->links[0]->trace_id.data, lt, 16);
	cr_assert_arr_eq(p->links[0]->span_id.data, ls, 8);
	cr_assert_eq(p->links[0]->flags, 1u);
	cr_assert_eq(p->links[0]->n_attributes, 1);
	cr_assert_str_eq(p->links[0]->attributes[0]->key, "lk");
	free_req(req);
}

Test(pb, root_has_empty_parent_and_unset_status_is_absent)
{
	struct exp_resource *r = resource("svc", 1);
	struct tb_span s;
	tb_span_init(&s, "root", 1, 1);
	s.v.flags = 0;
	Req *req = roundtrip(span_of(r, &s), 1);
	exp_resource_unref(r);
	const PbSpan *p = req->resource_spans[0]->scope_spans[0]->spans[0];
	cr_assert_eq(p->parent_span_id.len, 0);
	cr_assert_null(p->status);
	cr_assert_eq(p->flags, 0x100u);
	free_req(req);
}

Test(pb, groups_and_order)
{
	struct exp_resource *a = resource("a", 1), *b = resource("b", 2);
	struct tb_span s;
	struct exp_span *head = NULL, **tail = &head;
	const char *names[] = {"a0", "b0", "a1", "b1", "a2"};
	for (int i = 0; i < 5; i++) {
		tb_span_init(&s, names[i], (uint8_t)i, 0);
		*tail = span_of(names[i][0] == 'a' ? a : b, &s);
		tail = &(*tail)->next;
	}
	exp_resource_unref(a);
	exp_resource_unref(b);
	Req *req = roundtrip(head, 5);
	cr_assert_eq(req->n_resource_spans, 2);
	const char *want[2][3] = {{"a0", "a1", "a2"}, {"b0", "b1", NULL}};
	for (int g = 0; g < 2; g++) {
		Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = req->resource_spans[g]->scope_spans[0];
		cr_assert_eq(ss->n_spans, g == 0 ? 3u : 2u);
		for (size_t i = 0; i < ss->n_spans; i++)
			cr_assert_str_eq(ss->spans[i]->name, want[g][i]);
	}
	free_req(req);
}

/* The largest records the format allows, a full batch of them: exercises the
 * arena's chunking and the 3x worst case of UTF-8 repair. */
Test(pb, big_batch_of_max_records)
{
	static char junk[TS_STR_MAX];
	memset(junk, 0xff, sizeof junk); /* every byte invalid: 3x growth */
	struct exp_resource *r = resource("big", 3);
	struct tb_span s;
	tb_span_init(&s, "big", 1, 0);
	s.v.n_attrs = 2; /* name + 2 values of TS_STR_MAX: just under TS_SPAN_RECORD_MAX */
	for (int i = 0; i < 2; i++)
		s.v.attrs[i] = (struct ts_attr){.key = KEY("k"), .type = TS_ATTR_STR,
						.v.s = {junk, TS_STR_MAX}};
	s.v.name = (struct ts_str){junk, TS_STR_MAX};
	struct exp_span *head = NULL, **tail = &head;
	for (int i = 0; i < 512; i++) {
		*tail = span_of(r, &s);
		tail = &(*tail)->next;
	}
	exp_resource_unref(r);
	Req *req = roundtrip(head, 512);
	Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = req->resource_spans[0]->scope_spans[0];
	cr_assert_eq(ss->n_spans, 512);
	cr_assert_eq(strlen(ss->spans[511]->name), 3u * TS_STR_MAX);
	cr_assert_eq(strlen(ss->spans[511]->attributes[1]->value->string_value), 3u * TS_STR_MAX);
	free_req(req);
}
