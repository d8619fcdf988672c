/* json.c — see json.h.
 *
 * Spans are written straight from their queued records (record.h), through
 * a raw pointer into room reserved once per span: JSON_PER_REC_BYTE bytes for
 * every byte of the record. Why that is enough: a string byte becomes at
 * most 6 bytes (`\u00XX`; an invalid byte becomes a 3-byte U+FFFD), and the
 * fixed text around each field is covered by the record bytes of that field
 * — a bool attribute with a 1-byte key is 4 record bytes and at most 45 JSON
 * bytes, an int one 10 + key and 55 + 6 x key, a string array item 2 +
 * length and 19 + 6 x length, a link head 26 and ~100, the span head 61 and
 * ~330, plus 6 x its three strings. Each writer below returns the new end. */
#include "json.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "record.h"
#include "utf8.h"

#define JSON_PER_REC_BYTE 12

static char *put_mem(char *o, const void *p, size_t n)
{
	memcpy(o, p, n);
	return o + n;
}

/* A literal: its length is known at compile time, so the copy is a few moves. */
#define put_lit(o, s) put_mem((o), (s), sizeof(s) - 1)

/* ---- numbers and ids ---------------------------------------------------- */

static const char digit_pairs[] = "0001020304050607080910111213141516171819"
				  "2021222324252627282930313233343536373839"
				  "4041424344454647484950515253545556575859"
				  "6061626364656667686970717273747576777879"
				  "8081828384858687888990919293949596979899";

static unsigned decimal_digits(uint64_t v)
{
	static const uint64_t pow10[20] = {
		1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
		1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
		100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
		1000000000000000000ull, 10000000000000000000ull};
	if (v < 10)
		return 1;
	unsigned t = ((64u - (unsigned)__builtin_clzll(v)) * 1233u) >> 12; /* ~ bits x log10(2) */
	return t + (v >= pow10[t]);
}

/* Decimal, two digits per step from the end: timestamps have 19 digits, and
 * printf was a quarter of the encoder's CPU. */
static char *put_u64(char *o, uint64_t v)
{
	char *end = o + decimal_digits(v), *w = end;
	while (v >= 100) {
		w -= 2;
		memcpy(w, digit_pairs + 2 * (v % 100), 2);
		v /= 100;
	}
	if (v >= 10)
		memcpy(w - 2, digit_pairs + 2 * v, 2);
	else
		w[-1] = (char)('0' + v);
	return end;
}

static char *put_i64(char *o, int64_t v)
{
	if (v >= 0)
		return put_u64(o, (uint64_t)v);
	*o++ = '-';
	return put_u64(o, (uint64_t)0 - (uint64_t)v); /* INT64_MIN too */
}

/* "lowercase hex", quoted: two characters per byte from a table. */
static char *put_hex(char *o, const uint8_t *p, size_t n)
{
	static const char pairs[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
				    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
				    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
				    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
				    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
				    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
				    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
				    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
	*o++ = '"';
	for (size_t i = 0; i < n; i++)
		memcpy(o + 2 * i, pairs + 2 * p[i], 2);
	o[2 * n] = '"';
	return o + 2 * n + 1;
}

/* proto3 JSON writes non-finite doubles as the strings NaN/Infinity/-Infinity.
 * "%.17g" is at most 24 characters (sign, 17 digits, point, e-308). */
static char *put_double(char *o, double d)
{
	if (isnan(d))
		return put_lit(o, "\"NaN\"");
	if (isinf(d))
		return d > 0 ? put_lit(o, "\"Infinity\"") : put_lit(o, "\"-Infinity\"");
	return o + snprintf(o, 25, "%.17g", d);
}

/* ---- strings ------------------------------------------------------------ */

static bool plain_ascii(uint8_t c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

/* Loads 8 bytes into *w: are they all plain? Each test sets the high bit of
 * a byte that needs work: below 0x20, '"', '\\' (the "has a zero byte"
 * trick) or above 0x7F. */
static bool plain_word(const uint8_t *p, uint64_t *w)
{
	const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
	uint64_t x;
	memcpy(&x, p, 8);
	*w = x;
	uint64_t quote = x ^ (ones * '"'), bslash = x ^ (ones * '\\');
	uint64_t hit = ((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash) | x;
	return (hit & high) == 0;
}

static char *put_escape(char *o, uint8_t c)
{
	static const char short_esc[] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
					 ['"'] = '"', ['\\'] = '\\'};
	static const char hex[] = "0123456789abcdef";
	*o++ = '\\';
	if (c < sizeof short_esc && short_esc[c]) {
		*o++ = short_esc[c];
		return o;
	}
	o = put_lit(o, "u00");
	*o++ = hex[c >> 4];
	*o++ = hex[c & 15];
	return o;
}

/* u[i..n) from its first byte that needs work: byte by byte, back to 8
 * bytes at a time after each run of plain ones. */
static char *put_string_rest(char *o, const uint8_t *u, size_t i, size_t n)
{
	while (i < n) {
		uint64_t w;
		while (n - i >= 8 && plain_word(u + i, &w)) {
			memcpy(o, &w, 8);
			o += 8;
			i += 8;
		}
		for (size_t stop = n - i > 8 ? i + 8 : n; i < stop;) {
			if (plain_ascii(u[i])) {
				*o++ = (char)u[i++];
			} else if (u[i] < 0x80) {
				o = put_escape(o, u[i++]);
			} else {
				uint32_t cp;
				size_t k = exp_utf8_next(u + i, n - i, &cp);
				o = cp == EXP_UTF8_BAD ? put_lit(o, "\xEF\xBF\xBD") : put_mem(o, u + i, k);
				i += k;
			}
		}
	}
	return o;
}

/* A quoted JSON string: at most 6 x n + 2 bytes; invalid UTF-8 becomes
 * U+FFFD. The common case, plain ASCII, is copied 8 bytes at a time, and the
 * last 1..7 bytes of a string of 8 or more as the 8-byte word that ends it
 * (its first bytes were plain too: they rewrite what they wrote). */
static char *put_string(char *o, const char *p, size_t n)
{
	const uint8_t *u = (const uint8_t *)p;
	size_t i = 0;
	uint64_t w;
	*o++ = '"';
	for (; n - i >= 8 && plain_word(u + i, &w); i += 8, o += 8)
		memcpy(o, &w, 8);
	if (i < n && n - i < 8 && n >= 8 && plain_word(u + n - 8, &w)) {
		memcpy(o + (n - i) - 8, &w, 8);
		o += n - i;
	} else if (i < n) {
		o = put_string_rest(o, u, i, n);
	}
	*o++ = '"';
	return o;
}

static char *put_tstr(char *o, struct ts_str s) { return put_string(o, s.ptr, s.len); }

void exp_json_string(struct sbuf *out, const char *p, size_t n)
{
	char *o = sbuf_room(out, 6 * n + 2);
	if (o)
		sbuf_commit(out, put_string(o, p, n));
}

/* ---- attributes --------------------------------------------------------- */

/* {"values":[{"stringValue":...},...]}; the blob was validated on receipt. */
static char *put_string_array(char *o, struct ts_str blob)
{
	const uint8_t *p = (const uint8_t *)blob.ptr, *end = p + blob.len;
	o = put_lit(o, "{\"values\":[");
	for (bool first = true; p < end; first = false) {
		struct ts_str item;
		p = exp_rec_str16(p, &item);
		o = first ? put_lit(o, "{\"stringValue\":") : put_lit(o, ",{\"stringValue\":");
		o = put_tstr(o, item);
		*o++ = '}';
	}
	return put_lit(o, "]}");
}

static char *put_attr(char *o, const struct ts_attr *a)
{
	o = put_lit(o, "{\"key\":");
	o = put_tstr(o, a->key);
	o = put_lit(o, ",\"value\":{");
	switch (a->type) {
	case TS_ATTR_STR:
		o = put_lit(o, "\"stringValue\":");
		o = put_tstr(o, a->v.s);
		break;
	case TS_ATTR_STRARRAY:
		o = put_lit(o, "\"arrayValue\":");
		o = put_string_array(o, a->v.s);
		break;
	case TS_ATTR_INT:
		o = put_lit(o, "\"intValue\":\"");
		o = put_i64(o, a->v.i);
		*o++ = '"';
		break;
	case TS_ATTR_BOOL:
		o = a->v.b ? put_lit(o, "\"boolValue\":true") : put_lit(o, "\"boolValue\":false");
		break;
	case TS_ATTR_DOUBLE:
		o = put_lit(o, "\"doubleValue\":");
		o = put_double(o, a->v.d);
		break;
	default: /* the decoder admits no other type; an empty AnyValue is still valid */
		break;
	}
	return put_lit(o, "}}");
}

/* The most put_attr writes for a: the fixed text is under 64 bytes, a string
 * byte takes at most 6, an array item's text 19 + 6 x length with at least 2
 * blob bytes per item. */
static size_t attr_bound(const struct ts_attr *a)
{
	size_t values = a->type == TS_ATTR_STR || a->type == TS_ATTR_STRARRAY ? a->v.s.len : 0;
	return 64 + 6 * (size_t)a->key.len + 10 * values;
}

void exp_json_attr(struct sbuf *out, const struct ts_attr *a)
{
	char *o = sbuf_room(out, attr_bound(a));
	if (o)
		sbuf_commit(out, put_attr(o, a));
}

/* ,"attributes":[...] from the n attributes at *p, which it moves past them.
 * Omitted when empty, like protobuf's own JSON printer does. */
static char *put_rec_attrs(char *o, const uint8_t **p, uint8_t n)
{
	if (!n)
		return o;
	o = put_lit(o, ",\"attributes\":[");
	for (uint8_t i = 0; i < n; i++) {
		struct ts_attr a;
		*p = exp_rec_attr(*p, &a);
		if (i)
			*o++ = ',';
		o = put_attr(o, &a);
	}
	*o++ = ']';
	return o;
}

/* ---- spans -------------------------------------------------------------- */

static char *put_links(char *o, const uint8_t **p, uint8_t n)
{
	if (!n)
		return o;
	o = put_lit(o, ",\"links\":[");
	for (uint8_t i = 0; i < n; i++) {
		struct exp_rec_link l;
		*p = exp_rec_link(*p, &l);
		o = i ? put_lit(o, ",{\"traceId\":") : put_lit(o, "{\"traceId\":");
		o = put_hex(o, l.trace_id, 16);
		o = put_lit(o, ",\"spanId\":");
		o = put_hex(o, l.span_id, 8);
		o = put_rec_attrs(o, p, l.n_attrs);
		o = put_lit(o, ",\"flags\":");
		o = put_u64(o, exp_otlp_link_flags(l.flags));
		*o++ = '}';
	}
	*o++ = ']';
	return o;
}

static char *put_status(char *o, const struct exp_rec_head *h)
{
	if (h->status == TS_STATUS_UNSET && h->status_message.len == 0)
		return o;
	o = put_lit(o, ",\"status\":{");
	if (h->status_message.len) {
		o = put_lit(o, "\"message\":");
		o = put_tstr(o, h->status_message);
		*o++ = ',';
	}
	o = put_lit(o, "\"code\":");
	o = put_u64(o, h->status);
	*o++ = '}';
	return o;
}

/* One Span object from a validated record; at most JSON_PER_REC_BYTE x its
 * length bytes (see the top of the file). */
static char *put_span(char *o, const uint8_t *rec)
{
	struct exp_rec_head h;
	exp_rec_head(rec, &h);
	o = put_lit(o, "{\"traceId\":");
	o = put_hex(o, h.trace_id, 16);
	o = put_lit(o, ",\"spanId\":");
	o = put_hex(o, h.span_id, 8);
	if (h.trace_state.len) {
		o = put_lit(o, ",\"traceState\":");
		o = put_tstr(o, h.trace_state);
	}
	if (!exp_is_zero(h.parent_span_id, 8)) { /* roots: omitted, not "" */
		o = put_lit(o, ",\"parentSpanId\":");
		o = put_hex(o, h.parent_span_id, 8);
	}
	o = put_lit(o, ",\"flags\":");
	o = put_u64(o, exp_otlp_span_flags(h.flags));
	o = put_lit(o, ",\"name\":");
	o = put_tstr(o, h.name);
	o = put_lit(o, ",\"kind\":");
	o = put_u64(o, h.kind);
	o = put_lit(o, ",\"startTimeUnixNano\":\"");
	o = put_u64(o, h.start_ns);
	o = put_lit(o, "\",\"endTimeUnixNano\":\"");
	o = put_u64(o, h.end_ns);
	*o++ = '"';
	const uint8_t *p = h.attrs;
	o = put_rec_attrs(o, &p, h.n_attrs);
	o = put_links(o, &p, h.n_links);
	o = put_status(o, &h);
	*o++ = '}';
	return o;
}

/* One span, after a comma unless it is the first of its array. */
static void append_span(struct sbuf *out, const struct exp_span *s, bool comma)
{
	char *o = sbuf_room(out, 1 + JSON_PER_REC_BYTE * (size_t)s->len);
	if (!o)
		return;
	if (comma)
		*o++ = ',';
	char *end = put_span(o, s->rec);
	assert(end - o <= JSON_PER_REC_BYTE * (ptrdiff_t)s->len);
	sbuf_commit(out, end);
}

void exp_json_span(struct sbuf *out, const struct exp_span *s) { append_span(out, s, false); }

/* ---- the request -------------------------------------------------------- */

static void put_group_spans(struct sbuf *out, const struct exp_batch *b, const struct exp_group *g)
{
	for (size_t i = g->first; i < g->first + g->n; i++)
		append_span(out, b->spans[i], i > g->first);
}

/* sbuf_put of a literal. */
#define put_lit_out(out, s) sbuf_put((out), (s), sizeof(s) - 1)

static void put_resource_spans(struct sbuf *out, const struct exp_batch *b, const struct exp_group *g)
{
	put_lit_out(out, "{\"resource\":{");
	for (uint8_t i = 0; i < g->res->n_attrs; i++) { /* "attributes" omitted when empty */
		if (i)
			sbuf_putc(out, ',');
		else
			put_lit_out(out, "\"attributes\":[");
		exp_json_attr(out, &g->res->attrs[i]);
	}
	if (g->res->n_attrs)
		sbuf_putc(out, ']');
	put_lit_out(out, "},\"scopeSpans\":[{\"scope\":{\"name\":\"" EXP_SCOPE_NAME "\",\"version\":");
	exp_json_string(out, TRACESHIM_VERSION, strlen(TRACESHIM_VERSION));
	put_lit_out(out, "},\"spans\":[");
	put_group_spans(out, b, g);
	put_lit_out(out, "]}]}");
}

bool exp_json_encode(struct sbuf *out, const struct exp_batch *b)
{
	put_lit_out(out, "{\"resourceSpans\":[");
	for (size_t g = 0; g < b->n_groups; g++) {
		if (g)
			sbuf_putc(out, ',');
		put_resource_spans(out, b, &b->groups[g]);
	}
	put_lit_out(out, "]}");
	return !out->oom;
}
