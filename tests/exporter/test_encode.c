/* test_encode.c — both encoders on random spans, judged by independent
 * decoders: Python's json module and python3-protobuf with the proto/ schema
 * (encode_check.py) compare every field with what the records held, with
 * strings repaired by Python's own UTF-8 decoder. Also the size bounds the
 * encoders reserve room from (json.c, pb.c), on random and on worst-case
 * records. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "json.h"
#include "pb.h"
#include "pyrun.h"
#include "traceshim_otlp.pb-c.h"

/* ---- random spans -------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state; /* xorshift64 */
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static unsigned below(unsigned n) { return (unsigned)(rnd() % n); }

/* Every string and blob of one batch lives here. */
static char pool[1 << 21];
static size_t pool_used;

/* Bytes that exercise the encoders: plain ASCII, what JSON escapes, NUL,
 * valid multi-byte sequences, and bytes that are invalid UTF-8 alone or in
 * these combinations (overlong, surrogate, above U+10FFFF, truncated). */
static const char tricky[] = "aZ09 ./-_\"\\\n\t\r\b\f\x01\x1f\x7f\0\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
			     "\xff\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82";

static struct ts_str random_str(size_t max)
{
	size_t n = below(6) ? below(20) : below((unsigned)max + 1);
	char *p = pool + pool_used;
	unsigned mode = below(4); /* plain, tricky, any byte, plain with one tricky byte */
	for (size_t i = 0; i < n; i++) {
		if (mode == 0 || mode == 3)
			p[i] = (char)('a' + below(26));
		else if (mode == 1)
			p[i] = tricky[below(sizeof tricky - 1)];
		else
			p[i] = (char)below(256);
	}
	if (mode == 3 && n)
		p[below((unsigned)n)] = tricky[below(sizeof tricky - 1)];
	cr_assert_lt(pool_used + n, sizeof pool);
	pool_used += n;
	return (struct ts_str){p, (uint16_t)n};
}

static void random_attr(struct ts_attr *a)
{
	a->key = random_str(TS_KEY_MAX);
	if (a->key.len == 0) /* keys are never empty */
		a->key = (struct ts_str){"k", 1};
	a->type = (uint8_t)(1 + below(5));
	switch (a->type) {
	case TS_ATTR_STR:
		a->v.s = random_str(below(10) ? 300 : TS_STR_MAX);
		break;
	case TS_ATTR_INT: {
		const int64_t special[] = {0, -1, 1, 127, 128, INT64_MIN, INT64_MAX};
		a->v.i = below(3) ? (int64_t)(rnd() >> below(64)) * (below(2) ? 1 : -1) : special[below(7)];
		break;
	}
	case TS_ATTR_BOOL:
		a->v.b = below(2);
		break;
	case TS_ATTR_DOUBLE: {
		const double special[] = {0.0, -0.0, 1.5, -2.25, 5e-324, 1.7976931348623157e308,
					  0.1, INFINITY, -INFINITY, NAN};
		uint64_t bits = rnd();
		if (below(2))
			a->v.d = special[below(10)];
		else
			memcpy(&a->v.d, &bits, sizeof bits); /* any bit pattern, NaNs included */
		break;
	}
	default: { /* TS_ATTR_STRARRAY: a blob of str16 items */
		uint8_t blob[512];
		size_t len = 0;
		for (unsigned i = below(6); i; i--) {
			struct ts_str item = random_str(60);
			memcpy(blob + len, &item.len, 2);
			memcpy(blob + len + 2, item.ptr, item.len);
			len += 2 + (size_t)item.len;
		}
		cr_assert_lt(pool_used + len, sizeof pool);
		a->v.s = (struct ts_str){memcpy(pool + pool_used, blob, len), (uint16_t)len};
		pool_used += len;
		break;
	}
	}
}

struct rspan {
	struct ts_span_view v;
	uint8_t ids[32], link_ids[TS_MAX_LINKS][24];
};

static void random_span(struct rspan *s)
{
	memset(&s->v, 0, sizeof s->v);
	for (size_t i = 0; i < sizeof s->ids; i++)
		s->ids[i] = (uint8_t)rnd();
	s->ids[0] |= 1; /* ids are never all zero */
	s->ids[16] |= 1;
	if (below(3) == 0)
		memset(s->ids + 24, 0, 8); /* a root */
	s->v.trace_id = s->ids;
	s->v.span_id = s->ids + 16;
	s->v.parent_span_id = s->ids + 24;
	s->v.start_ns = below(8) ? rnd() >> 2 : 0;
	s->v.end_ns = s->v.start_ns + (below(4) ? rnd() >> 34 : 0);
	s->v.kind = (uint8_t)(1 + below(5));
	s->v.status = (uint8_t)below(3);
	s->v.flags = (uint8_t)rnd();
	s->v.name = random_str(200);
	if (s->v.name.len == 0)
		s->v.name = (struct ts_str){"n", 1};
	if (below(2))
		s->v.status_message = random_str(100);
	if (below(3) == 0)
		s->v.trace_state = random_str(100);
	s->v.n_attrs = (uint8_t)below(18);
	for (uint8_t i = 0; i < s->v.n_attrs; i++)
		random_attr(&s->v.attrs[i]);
	s->v.n_links = below(3) ? 0 : (uint8_t)(1 + below(TS_MAX_LINKS));
	for (uint8_t l = 0; l < s->v.n_links; l++) {
		for (int i = 0; i < 24; i++)
			s->link_ids[l][i] = (uint8_t)rnd();
		s->v.links[l].trace_id = s->link_ids[l];
		s->v.links[l].span_id = s->link_ids[l] + 16;
		s->v.links[l].flags = (uint8_t)rnd();
		s->v.links[l].n_attrs = (uint8_t)below(4);
		for (uint8_t i = 0; i < s->v.links[l].n_attrs; i++)
			random_attr(&s->v.links[l].attrs[i]);
	}
}

/* The record of s, as the shim sends it; 0 when over TS_SPAN_RECORD_MAX. */
static size_t record_of(const struct rspan *s, uint8_t *rec, size_t cap)
{
	struct ts_wbuf w;
	ts_wbuf_init(&w, rec, cap);
	ts_span_encode(&w, &s->v);
	return w.overflow ? 0 : w.len;
}

/* ---- the manifest: what the records held, for encode_check.py ------------ */

static void put_hex(FILE *f, const void *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", ((const uint8_t *)p)[i]);
	fputc('"', f);
}

/* [key, type, value]: strings and doubles as hex bytes, ints as decimal
 * strings, arrays as lists of hex strings. */
static void put_attr_json(FILE *f, const struct ts_attr *a)
{
	fputc('[', f);
	put_hex(f, a->key.ptr, a->key.len);
	fprintf(f, ",%u,", a->type);
	switch (a->type) {
	case TS_ATTR_STR:
		put_hex(f, a->v.s.ptr, a->v.s.len);
		break;
	case TS_ATTR_INT:
		fprintf(f, "\"%lld\"", (long long)a->v.i);
		break;
	case TS_ATTR_BOOL:
		fprintf(f, "%d", a->v.b ? 1 : 0);
		break;
	case TS_ATTR_DOUBLE:
		put_hex(f, &a->v.d, sizeof a->v.d);
		break;
	default: {
		struct ts_rbuf r;
		struct ts_str item;
		ts_rbuf_init(&r, a->v.s.ptr, a->v.s.len);
		fputc('[', f);
		for (bool first = true; ts_strarray_next(&r, &item); first = false) {
			if (!first)
				fputc(',', f);
			put_hex(f, item.ptr, item.len);
		}
		fputc(']', f);
	}
	}
	fputc(']', f);
}

static void put_attrs_json(FILE *f, const struct ts_attr *a, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		put_attr_json(f, &a[i]);
	}
	fputc(']', f);
}

/* The record as it was queued, decoded back: what the encoders were given. */
static void put_span_json(FILE *f, const struct exp_span *es, size_t res)
{
	static struct ts_span_view v;
	struct ts_rbuf r;
	ts_rbuf_init(&r, es->rec, es->len);
	cr_assert(ts_span_decode(&r, &v));
	fprintf(f, "{\"res\":%zu,\"trace_id\":", res);
	put_hex(f, v.trace_id, 16);
	fprintf(f, ",\"span_id\":");
	put_hex(f, v.span_id, 8);
	fprintf(f, ",\"parent\":");
	put_hex(f, v.parent_span_id, 8);
	fprintf(f, ",\"start\":\"%llu\",\"end\":\"%llu\",\"kind\":%u,\"status\":%u,\"flags\":%u,\"name\":",
		(unsigned long long)v.start_ns, (unsigned long long)v.end_ns, v.kind, v.status, v.flags);
	put_hex(f, v.name.ptr, v.name.len);
	fprintf(f, ",\"message\":");
	put_hex(f, v.status_message.ptr, v.status_message.len);
	fprintf(f, ",\"trace_state\":");
	put_hex(f, v.trace_state.ptr, v.trace_state.len);
	fprintf(f, ",\"attrs\":");
	put_attrs_json(f, v.attrs, v.n_attrs);
	fprintf(f, ",\"links\":[");
	for (uint8_t l = 0; l < v.n_links; l++) {
		fprintf(f, "%s{\"trace_id\":", l ? "," : "");
		put_hex(f, v.links[l].trace_id, 16);
		fprintf(f, ",\"span_id\":");
		put_hex(f, v.links[l].span_id, 8);
		fprintf(f, ",\"flags\":%u,\"attrs\":", v.links[l].flags);
		put_attrs_json(f, v.links[l].attrs, v.links[l].n_attrs);
		fputc('}', f);
	}
	fprintf(f, "]}");
}

/* ---- the test ------------------------------------------------------------- */

#define N_RES 3

static struct exp_resource *random_resource(unsigned i)
{
	struct ts_attr attrs[12];
	char service[16];
	snprintf(service, sizeof service, "svc-%u", i);
	attrs[0] = (struct ts_attr){.key = {"service.name", 12}, .type = TS_ATTR_STR,
				    .v.s = {service, (uint16_t)strlen(service)}};
	attrs[1] = (struct ts_attr){.key = {"process.pid", 11}, .type = TS_ATTR_INT, .v.i = 100 + i};
	uint8_t n = (uint8_t)(2 + below(10));
	for (uint8_t k = 2; k < n; k++)
		random_attr(&attrs[k]);
	static uint8_t hello[TS_FRAME_MAX];
	struct ts_wbuf w;
	ts_wbuf_init(&w, hello, sizeof hello);
	ts_hello_encode(&w, 100 + i, 1, 1, attrs, n);
	cr_assert(!w.overflow);
	bool oom;
	struct exp_resource *r = exp_resource_from_hello(hello, w.len, &oom);
	cr_assert_not_null(r);
	return r;
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(p, 1, n, f), n);
	fclose(f);
}

/* One random batch of n spans over N_RES resources, both encodings checked
 * by encode_check.py. */
static void check_random_batch(uint64_t seed, size_t n)
{
	rng_state = seed;
	pool_used = 0;
	char dir[] = "/tmp/tsexp-encode-XXXXXX", path[3][64];
	cr_assert_not_null(mkdtemp(dir));
	const char *names[3] = {"manifest.json", "body.json", "body.pb"};
	for (int i = 0; i < 3; i++)
		snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);

	struct exp_resource *res[N_RES];
	for (unsigned i = 0; i < N_RES; i++)
		res[i] = random_resource(i);
	FILE *m = fopen(path[0], "w");
	cr_assert_not_null(m);
	fprintf(m, "{\"resources\":[");
	for (unsigned i = 0; i < N_RES; i++) {
		fprintf(m, "%s{\"attrs\":", i ? "," : "");
		put_attrs_json(m, res[i]->attrs, res[i]->n_attrs);
		fputc('}', m);
	}
	fprintf(m, "],\"spans\":[");
	struct exp_span *head = NULL, **tail = &head;
	size_t made = 0;
	static struct rspan s;
	static struct sbuf one;
	while (made < n) {
		uint8_t rec[TS_SPAN_RECORD_MAX];
		random_span(&s);
		size_t len = record_of(&s, rec, sizeof rec);
		if (!len) /* over TS_SPAN_RECORD_MAX: draw again */
			continue;
		size_t r = below(N_RES);
		struct exp_span *es = exp_span_new(res[r], rec, (uint16_t)len);
		cr_assert_not_null(es);
		sbuf_reset(&one);
		exp_json_span(&one, es);
		cr_assert_leq(one.len, 12 * len, "JSON of a %zu-byte record: %zu bytes, over the bound", len,
			      one.len);
		if (made)
			fputc(',', m);
		put_span_json(m, es, r);
		*tail = es;
		tail = &es->next;
		made++;
	}
	fprintf(m, "]}");
	fclose(m);
	sbuf_free(&one);
	for (unsigned i = 0; i < N_RES; i++)
		exp_resource_unref(res[i]);

	struct exp_batch b;
	cr_assert_eq(exp_batch_build(&b, head, made), 0);
	struct sbuf json, pb;
	sbuf_init(&json);
	sbuf_init(&pb);
	cr_assert(exp_json_encode(&json, &b));
	cr_assert(exp_pb_encode(&pb, &b));
	exp_batch_free(&b);
	write_file(path[1], json.p, json.len);
	write_file(path[2], pb.p, pb.len);
	sbuf_free(&json);
	sbuf_free(&pb);

	char script[512], out[4096];
	snprintf(script, sizeof script, "%s/encode_check.py", getenv("TS_TESTS_DIR"));
	const char *argv[] = {tb_python_path(), script, getenv("TS_PROTO_DIR"), path[0], path[1], path[2], NULL};
	int rc = tb_run(argv, NULL, 0, out, sizeof out);
	cr_assert_eq(rc, 0, "seed %llu: encode_check.py: %s", (unsigned long long)seed, out);
	cr_assert_str_eq(out, "ok\n");
	for (int i = 0; i < 3; i++)
		unlink(path[i]);
	rmdir(dir);
}

Test(encode, random_spans_decode_as_they_were, .timeout = 120)
{
	check_random_batch(0x9E3779B97F4A7C15ull, 400);
	check_random_batch(0x2545F4914F6CDD1Dull, 400);
	check_random_batch(12345, 30);
}

/* ---- size bounds ----------------------------------------------------------- */

/* Records that come closest to the per-byte bounds: a name of control
 * characters (6 bytes each in JSON) and many bool attributes with 1-byte
 * keys (JSON's worst attribute); strings of invalid bytes (3 bytes each in
 * protobuf); arrays of empty items and keys of one invalid byte. */
static size_t worst_record(uint8_t *rec, size_t cap, int kind)
{
	static char junk[TS_STR_MAX];
	static uint8_t blob[TS_STR_MAX];
	static struct rspan s;
	rng_state = 77;
	random_span(&s);
	s.v.n_links = 0;
	s.v.status_message = s.v.trace_state = (struct ts_str){NULL, 0};
	memset(junk, kind == 0 ? 0x01 : 0xff, sizeof junk);
	memset(blob, 0, sizeof blob); /* str16 items of length 0 */
	s.v.name = (struct ts_str){junk, kind == 0 ? TS_STR_MAX : 1};
	s.v.n_attrs = TS_MAX_ATTRS;
	for (int i = 0; i < TS_MAX_ATTRS; i++) {
		struct ts_attr *a = &s.v.attrs[i];
		*a = (struct ts_attr){.key = {kind == 2 ? junk : "k", 1}, .type = TS_ATTR_BOOL, .v.b = false};
		if (kind == 1 && i < 3)
			*a = (struct ts_attr){.key = {"s", 1}, .type = TS_ATTR_STR, .v.s = {junk, TS_STR_MAX}};
		if (kind == 2 && i < 2)
			*a = (struct ts_attr){.key = {"a", 1}, .type = TS_ATTR_STRARRAY,
					      .v.s = {(const char *)blob, TS_STR_MAX}};
	}
	size_t len = record_of(&s, rec, cap);
	cr_assert_gt(len, 0);
	return len;
}

Test(encode, worst_case_records_stay_within_the_bounds)
{
	for (int kind = 0; kind < 3; kind++) {
		uint8_t rec[TS_SPAN_RECORD_MAX];
		size_t len = worst_record(rec, sizeof rec, kind);
		struct exp_resource *r = exp_resource_unknown();
		struct exp_span *es = exp_span_new(r, rec, (uint16_t)len);
		exp_resource_unref(r);
		struct sbuf out;
		sbuf_init(&out);
		exp_json_span(&out, es);
		cr_assert_leq(out.len, 12 * len, "kind %d: JSON %zu bytes for a %zu-byte record", kind, out.len, len);

		/* protobuf: the span's own bytes, tag and length included */
		struct exp_batch b;
		cr_assert_eq(exp_batch_build(&b, es, 1), 0);
		sbuf_reset(&out);
		cr_assert(exp_pb_encode(&out, &b));
		exp_batch_free(&b);
		Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req =
			opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
				NULL, out.len, (const uint8_t *)out.p);
		cr_assert_not_null(req);
		const Opentelemetry__Proto__Trace__V1__Span *sp = req->resource_spans[0]->scope_spans[0]->spans[0];
		size_t content = opentelemetry__proto__trace__v1__span__get_packed_size(sp);
		cr_assert_leq(1 + 3 + content, 4 * len, "kind %d: protobuf %zu bytes for a %zu-byte record", kind,
			      content, len);
		opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req, NULL);
		sbuf_free(&out);
	}
}
