/* pb.c — see pb.h.
 *
 * The protobuf wire format is written directly from the queued records
 * (record.h): no message tree, no descriptors, one walk over each record. A
 * nested message needs its length before its content. Leaves — strings,
 * attributes, the status — are measured first and written with their exact
 * length. A span, a link and the envelope of a group, whose length is only
 * known once written, get room for their length from a bound on it and have
 * it patched in afterwards (struct nest).
 *
 * Room is reserved once per span: PB_PER_REC_BYTE bytes for every byte of its
 * record. Why that is enough: a string byte becomes at most 3 (an invalid
 * byte becomes U+FFFD), and the tags, lengths and fixed-size values of each
 * field are covered by the record bytes of that field — an attribute with a
 * k-byte key and an n-byte string is 4 + k + n record bytes and at most
 * 12 + 3k + 3n protobuf bytes (with its tag and length), an int attribute
 * 10 + k and 19 + 3k, a bool one 3 + k and 10 + 3k, an array item 2 + n and
 * 6 + 3n, a link head 26 and 37, the span head 61 and ~80 plus 3 x its three
 * strings, including the span's own tag and length.
 *
 * Fields are written in field-number order and proto3 defaults are left out,
 * as protobuf-c does, so the bytes are the ones the earlier protobuf-c encoder
 * produced; test_encode.c has python3-protobuf re-serialise them to the same
 * bytes, test_pb.c decodes them with protobuf-c. */
#include "pb.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

#include "record.h"
#include "utf8.h"

#if defined(__SSE2__)
#include <emmintrin.h> /* x86-64 baseline: no build flag, no run-time check */
#endif

#define PB_PER_REC_BYTE 4

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

/* A one-byte tag: fields 1..15. */
#define TAG(field, wire) ((uint8_t)((field) << 3 | (wire)))
/* Span.flags is field 16: its tag, 16 << 3 | WIRE_I32 = 133, is a two-byte varint. */
static const uint8_t span_flags_tag[2] = {0x85, 0x01};

/* ---- wire primitives ---------------------------------------------------- */

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	for (; v >= 0x80; v >>= 7)
		n++;
	return n;
}

static uint8_t *put_varint(uint8_t *o, uint64_t v)
{
	for (; v >= 0x80; v >>= 7)
		*o++ = (uint8_t)(v | 0x80);
	*o++ = (uint8_t)v;
	return o;
}

/* Little-endian, whatever the host's byte order. */
static uint8_t *put_fixed(uint8_t *o, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		o[i] = (uint8_t)(v >> (8 * i));
	return o + n;
}

/* A trace or span id: a bytes field of 16 or 8 bytes. */
static uint8_t *put_id(uint8_t *o, uint8_t tag, const uint8_t *id, uint8_t n)
{
	*o++ = tag;
	*o++ = n;
	memcpy(o, id, n);
	return o + n;
}

/* A length-delimited field whose length is known only once its content is
 * written: the length gets the varint bytes that `bound` would need, and is
 * patched in by nest_close. Offsets from the buffer's start, not pointers,
 * since the buffer moves when a group outgrows it. */
struct nest {
	size_t len_at, room;
};

static uint8_t *nest_open(uint8_t *base, uint8_t *o, uint8_t tag, size_t bound, struct nest *n)
{
	*o++ = tag;
	n->len_at = (size_t)(o - base);
	n->room = varint_len(bound);
	return o + n->room;
}

/* Returns the new end: if the length needs fewer bytes than were left for it
 * (a message much shorter than its bound), the content moves back. */
static uint8_t *nest_close(uint8_t *base, uint8_t *o, const struct nest *n)
{
	uint8_t *at = base + n->len_at, *content = at + n->room;
	size_t len = (size_t)(o - content), need = varint_len(len);
	assert(need <= n->room);
	if (need < n->room) {
		memmove(at + need, content, len);
		o -= n->room - need;
	}
	put_varint(at, len);
	return o;
}

/* ---- strings ------------------------------------------------------------ */

/* A string measured for the wire: `len` bytes once made valid UTF-8 without
 * NUL (pb.h); `clean` when it is that already and goes out as it is; `vec`
 * when it may be copied as 16 bytes (measure_rec). */
struct pb_str {
	struct ts_str s;
	size_t len;
	bool clean, vec;
};

/* None of the 8 bytes at p is NUL or above 0x7F (the "has a zero byte"
 * trick, and the high bits). */
static bool clean_word(const uint8_t *p)
{
	const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
	uint64_t x;
	memcpy(&x, p, 8);
	return ((((x - ones) & ~x) | x) & high) == 0;
}

/* The repaired length of u[0..n), whose first i bytes need no repair. */
static size_t repaired_len(const uint8_t *u, size_t i, size_t n)
{
	size_t len = i;
	while (i < n) {
		uint32_t cp;
		size_t k = exp_utf8_next(u + i, n - i, &cp);
		len += cp == EXP_UTF8_BAD || cp == 0 ? 3 : k;
		i += k;
	}
	return len;
}

/* Plain ASCII, the common case, is checked 8 bytes at a time, the last 1..7
 * bytes of a string of 8 or more as the 8-byte word that ends it. */
static struct pb_str measure(struct ts_str s)
{
	struct pb_str m = {s, s.len, true, false};
	const uint8_t *u = (const uint8_t *)s.ptr;
	size_t i = 0;
	while (s.len - i >= 8 && clean_word(u + i))
		i += 8;
	if (i < s.len && s.len - i < 8 && s.len >= 8 && clean_word(u + s.len - 8))
		i = s.len;
	while (i < s.len && u[i] && u[i] < 0x80)
		i++;
	if (i < s.len) {
		m.clean = false;
		m.len = repaired_len(u, i, s.len);
	}
	return m;
}

/* measure() for a string inside a queued span record, which is followed by
 * EXP_SPAN_SLACK readable bytes (queue.h): one of up to 32 bytes is checked
 * as one or two 16-byte vectors, with what follows it masked off, and later
 * copied as 16 or 32 bytes (room for a span has EXP_SPAN_SLACK bytes to
 * spare too) — no loop and no memcpy call for the short keys and values
 * most attributes have. */
static inline struct pb_str measure_rec(struct ts_str s)
{
#if defined(__SSE2__)
	_Static_assert(EXP_SPAN_SLACK >= 16, "a 16-byte load from a record's last string");
	if (s.len <= 32) {
		/* NUL bytes, and bytes above 0x7F (their high bits, as they are) */
		const __m128i zero = _mm_setzero_si128();
		__m128i v = _mm_loadu_si128((const __m128i *)s.ptr);
		uint32_t bad = (uint32_t)(_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero)) | _mm_movemask_epi8(v));
		if (s.len > 16) {
			v = _mm_loadu_si128((const __m128i *)(s.ptr + 16));
			bad |= (uint32_t)(_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero)) | _mm_movemask_epi8(v)) << 16;
		}
		if (!(bad & (uint32_t)((1ull << s.len) - 1)))
			return (struct pb_str){s, s.len, true, true};
	}
#endif
	return measure(s);
}

static size_t str_field_len(const struct pb_str *m) { return 1 + varint_len(m->len) + m->len; }

static inline uint8_t *put_str_field(uint8_t *o, uint8_t tag, const struct pb_str *m)
{
	*o++ = tag;
	o = put_varint(o, m->len);
	if (m->clean) {
#if defined(__SSE2__)
		if (m->vec) {
			_mm_storeu_si128((__m128i *)o, _mm_loadu_si128((const __m128i *)m->s.ptr));
			if (m->s.len > 16)
				_mm_storeu_si128((__m128i *)(o + 16), _mm_loadu_si128((const __m128i *)(m->s.ptr + 16)));
			return o + m->s.len;
		}
#endif
		memcpy(o, m->s.ptr, m->s.len);
		return o + m->s.len;
	}
	const uint8_t *u = (const uint8_t *)m->s.ptr;
	for (size_t i = 0; i < m->s.len;) {
		uint32_t cp;
		size_t k = exp_utf8_next(u + i, m->s.len - i, &cp);
		if (cp == EXP_UTF8_BAD || cp == 0) {
			memcpy(o, "\xEF\xBF\xBD", 3);
			o += 3;
		} else {
			memcpy(o, u + i, k);
			o += k;
		}
		i += k;
	}
	return o;
}

/* ---- attributes (KeyValue) ---------------------------------------------- */

/* The length of the ArrayValue of string AnyValues a blob holds (validated
 * on receipt). */
static size_t array_len(struct ts_str blob)
{
	const uint8_t *p = (const uint8_t *)blob.ptr, *end = p + blob.len;
	size_t len = 0;
	while (p < end) {
		struct ts_str item;
		p = exp_rec_str16(p, &item);
		struct pb_str m = measure(item);
		size_t any = str_field_len(&m); /* AnyValue{string_value} */
		len += 1 + varint_len(any) + any;
	}
	return len;
}

/* An attribute's value measured: the length of its AnyValue, and for a
 * string the string, for an array the ArrayValue's length. */
struct pb_any {
	size_t len, array;
	struct pb_str str;
};

static inline struct pb_any measure_value(const struct ts_attr *a, bool in_rec)
{
	struct pb_any v = {0};
	switch (a->type) {
	case TS_ATTR_STR:
		v.str = in_rec ? measure_rec(a->v.s) : measure(a->v.s);
		v.len = str_field_len(&v.str);
		break;
	case TS_ATTR_STRARRAY:
		v.array = array_len(a->v.s);
		v.len = 1 + varint_len(v.array) + v.array;
		break;
	case TS_ATTR_INT:
		v.len = 1 + varint_len((uint64_t)a->v.i);
		break;
	case TS_ATTR_BOOL:
		v.len = 2;
		break;
	case TS_ATTR_DOUBLE:
		v.len = 9;
		break;
	default: /* the decoder admits no other type; an empty AnyValue is still valid */
		break;
	}
	return v;
}

/* AnyValue fields: string_value 1, bool_value 2, int_value 3, double_value 4,
 * array_value 5; ArrayValue.values 1. A oneof member is written even when
 * it holds its type's default (false, 0, ""). */
static uint8_t *put_value(uint8_t *o, const struct ts_attr *a, const struct pb_any *v)
{
	switch (a->type) {
	case TS_ATTR_STR:
		return put_str_field(o, TAG(1, WIRE_LEN), &v->str);
	case TS_ATTR_STRARRAY: {
		const uint8_t *p = (const uint8_t *)a->v.s.ptr, *end = p + a->v.s.len;
		*o++ = TAG(5, WIRE_LEN);
		o = put_varint(o, v->array);
		while (p < end) {
			struct ts_str item;
			p = exp_rec_str16(p, &item);
			struct pb_str m = measure(item);
			*o++ = TAG(1, WIRE_LEN);
			o = put_varint(o, str_field_len(&m));
			o = put_str_field(o, TAG(1, WIRE_LEN), &m);
		}
		return o;
	}
	case TS_ATTR_INT:
		*o++ = TAG(3, WIRE_VARINT);
		return put_varint(o, (uint64_t)a->v.i); /* negative: 10 bytes, as int64 wants */
	case TS_ATTR_BOOL:
		*o++ = TAG(2, WIRE_VARINT);
		*o++ = a->v.b ? 1 : 0;
		return o;
	case TS_ATTR_DOUBLE: {
		uint64_t bits;
		memcpy(&bits, &a->v.d, sizeof bits);
		*o++ = TAG(4, WIRE_I64);
		return put_fixed(o, bits, 8);
	}
	default:
		return o;
	}
}

/* A KeyValue field (key 1, value 2) with the given tag. */
static inline uint8_t *put_kv(uint8_t *o, uint8_t tag, const struct ts_attr *a, bool in_rec)
{
	struct pb_str key = in_rec ? measure_rec(a->key) : measure(a->key);
	struct pb_any v = measure_value(a, in_rec);
	*o++ = tag;
	o = put_varint(o, str_field_len(&key) + 1 + varint_len(v.len) + v.len);
	o = put_str_field(o, TAG(1, WIRE_LEN), &key);
	*o++ = TAG(2, WIRE_LEN);
	o = put_varint(o, v.len);
	return put_value(o, a, &v);
}

/* The most put_kv writes for a: tags and lengths under 32 bytes, a key byte
 * at most 3, a value byte at most 6 (an array item's text is 6 + 3 x length
 * for 2 + length blob bytes). */
static size_t kv_bound(const struct ts_attr *a)
{
	size_t values = a->type == TS_ATTR_STR || a->type == TS_ATTR_STRARRAY ? a->v.s.len : 0;
	return 32 + 3 * (size_t)a->key.len + 6 * values;
}

/* The n attributes at *p as KeyValue fields with the given tag; moves *p
 * past them. */
static uint8_t *put_rec_attrs(uint8_t *o, uint8_t tag, const uint8_t **pp, uint8_t n)
{
	const uint8_t *p = *pp; /* a local: stores through o could alias *pp */
	for (uint8_t i = 0; i < n; i++) {
		struct ts_attr a;
		p = exp_rec_attr(p, &a);
		o = put_kv(o, tag, &a, true);
	}
	*pp = p;
	return o;
}

/* ---- spans -------------------------------------------------------------- */

/* Span.Link: trace_id 1, span_id 2, attributes 4, flags 6. `bound`: what
 * is left of the record from the link on, times PB_PER_REC_BYTE. */
static uint8_t *put_link(uint8_t *base, uint8_t *o, const uint8_t **p, size_t bound)
{
	struct exp_rec_link l;
	struct nest n;
	*p = exp_rec_link(*p, &l);
	o = nest_open(base, o, TAG(13, WIRE_LEN), bound, &n);
	o = put_id(o, TAG(1, WIRE_LEN), l.trace_id, 16);
	o = put_id(o, TAG(2, WIRE_LEN), l.span_id, 8);
	o = put_rec_attrs(o, TAG(4, WIRE_LEN), p, l.n_attrs);
	uint32_t flags = exp_otlp_link_flags(l.flags);
	if (flags) {
		*o++ = TAG(6, WIRE_I32);
		o = put_fixed(o, flags, 4);
	}
	return nest_close(base, o, &n);
}

/* Status (message 2, code 3): absent when unset without a message. */
static uint8_t *put_status(uint8_t *o, const struct exp_rec_head *h)
{
	if (h->status == TS_STATUS_UNSET && h->status_message.len == 0)
		return o;
	struct pb_str msg = measure_rec(h->status_message);
	size_t len = (msg.len ? str_field_len(&msg) : 0) + (h->status ? 2 : 0);
	*o++ = TAG(15, WIRE_LEN);
	o = put_varint(o, len);
	if (msg.len)
		o = put_str_field(o, TAG(2, WIRE_LEN), &msg);
	if (h->status) {
		*o++ = TAG(3, WIRE_VARINT);
		*o++ = h->status;
	}
	return o;
}

/* ScopeSpans.spans (2): one Span from a validated record. Fields: trace_id 1,
 * span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6, start 7,
 * end 8, attributes 9, links 13, status 15, flags 16. */
static uint8_t *put_span(uint8_t *base, uint8_t *o, const uint8_t *rec, uint16_t len)
{
	struct exp_rec_head h;
	struct nest span;
	exp_rec_head(rec, &h);
	o = nest_open(base, o, TAG(2, WIRE_LEN), PB_PER_REC_BYTE * (size_t)len, &span);
	o = put_id(o, TAG(1, WIRE_LEN), h.trace_id, 16);
	o = put_id(o, TAG(2, WIRE_LEN), h.span_id, 8);
	if (h.trace_state.len) {
		struct pb_str ts = measure_rec(h.trace_state);
		o = put_str_field(o, TAG(3, WIRE_LEN), &ts);
	}
	if (!exp_is_zero(h.parent_span_id, 8)) /* roots: empty, as OTLP requires */
		o = put_id(o, TAG(4, WIRE_LEN), h.parent_span_id, 8);
	struct pb_str name = measure_rec(h.name); /* never empty */
	o = put_str_field(o, TAG(5, WIRE_LEN), &name);
	*o++ = TAG(6, WIRE_VARINT);
	*o++ = h.kind; /* 1..5, never the default 0 */
	if (h.start_ns) {
		*o++ = TAG(7, WIRE_I64);
		o = put_fixed(o, h.start_ns, 8);
	}
	if (h.end_ns) {
		*o++ = TAG(8, WIRE_I64);
		o = put_fixed(o, h.end_ns, 8);
	}
	const uint8_t *p = h.attrs;
	o = put_rec_attrs(o, TAG(9, WIRE_LEN), &p, h.n_attrs);
	for (uint8_t i = 0; i < h.n_links; i++)
		o = put_link(base, o, &p, PB_PER_REC_BYTE * (size_t)(rec + len - p));
	o = put_status(o, &h);
	memcpy(o, span_flags_tag, 2);
	o = put_fixed(o + 2, exp_otlp_span_flags(h.flags), 4); /* never 0: 0x100 is always set */
	return nest_close(base, o, &span);
}

/* ---- the request -------------------------------------------------------- */

/* Room for n bytes at the end of out, and the buffer's start. */
static uint8_t *room(struct sbuf *out, size_t n, uint8_t **base)
{
	uint8_t *o = (uint8_t *)sbuf_room(out, n);
	*base = (uint8_t *)out->p;
	return o;
}

/* The tag and the largest length varint of a nest. */
#define NEST_HEAD_MAX 11

/* ResourceSpans (resource 1, scope_spans 2) of one group: Resource
 * (attributes 1), then one ScopeSpans (scope 1, spans 2) whose
 * InstrumentationScope is (name 1, version 2). */
static void put_group(struct sbuf *out, const struct exp_batch *b, const struct exp_group *g)
{
	const struct exp_resource *res = g->res;
	struct pb_str name = measure((struct ts_str){EXP_SCOPE_NAME, sizeof EXP_SCOPE_NAME - 1});
	struct pb_str version = measure((struct ts_str){TRACESHIM_VERSION, sizeof TRACESHIM_VERSION - 1});
	size_t scope_len = str_field_len(&name) + str_field_len(&version);
	size_t res_bound = 0, ss_bound = 1 + varint_len(scope_len) + scope_len;
	for (uint8_t i = 0; i < res->n_attrs; i++)
		res_bound += kv_bound(&res->attrs[i]);
	for (size_t i = g->first; i < g->first + g->n; i++)
		ss_bound += PB_PER_REC_BYTE * (size_t)b->spans[i]->len;

	struct nest rs, resource, ss;
	uint8_t *base, *o = room(out, 2 * NEST_HEAD_MAX, &base);
	if (!o)
		return;
	o = nest_open(base, o, TAG(1, WIRE_LEN), 2 * NEST_HEAD_MAX + res_bound + ss_bound, &rs);
	o = nest_open(base, o, TAG(1, WIRE_LEN), res_bound, &resource);
	sbuf_commit(out, o);
	for (uint8_t i = 0; i < res->n_attrs; i++) {
		if (!(o = room(out, kv_bound(&res->attrs[i]), &base)))
			return;
		sbuf_commit(out, put_kv(o, TAG(1, WIRE_LEN), &res->attrs[i], false));
	}
	if (!(o = room(out, NEST_HEAD_MAX + 1 + varint_len(scope_len) + scope_len, &base)))
		return;
	o = nest_close(base, o, &resource);
	o = nest_open(base, o, TAG(2, WIRE_LEN), ss_bound, &ss);
	*o++ = TAG(1, WIRE_LEN);
	o = put_varint(o, scope_len);
	o = put_str_field(o, TAG(1, WIRE_LEN), &name);
	o = put_str_field(o, TAG(2, WIRE_LEN), &version);
	sbuf_commit(out, o);
	for (size_t i = g->first; i < g->first + g->n; i++) {
		const struct exp_span *s = b->spans[i];
		if (!(o = room(out, PB_PER_REC_BYTE * (size_t)s->len + EXP_SPAN_SLACK, &base)))
			return;
		uint8_t *end = put_span(base, o, s->rec, s->len);
		assert(end - o <= PB_PER_REC_BYTE * (ptrdiff_t)s->len);
		sbuf_commit(out, end);
	}
	base = (uint8_t *)out->p;
	o = nest_close(base, base + out->len, &ss);
	sbuf_commit(out, nest_close(base, o, &rs));
}

bool exp_pb_encode(struct sbuf *out, const struct exp_batch *b)
{
	for (size_t g = 0; g < b->n_groups; g++) /* ExportTraceServiceRequest.resource_spans (1) */
		put_group(out, b, &b->groups[g]);
	return !out->oom;
}
