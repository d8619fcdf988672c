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

#if defined(__SSE2__)
#include <emmintrin.h> /* x86-64 baseline: no build flag, no run-time check */
#endif

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

/* Decimal, two digits per step from the end: printf was a quarter of the
 * encoder's CPU. For v < 10^8: few steps. */
static inline char *put_u64_short(char *o, uint64_t v64)
{
	uint32_t v = (uint32_t)v64; /* 32-bit divisions are cheaper */
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

/* The 8 digits of v < 10^8 (leading zeros too), as the 8 ASCII bytes of
 * a little-endian word: the two 4-digit halves go into the two 32-bit
 * lanes, each splits into 2-digit quarters in 16-bit lanes, those into
 * digits in bytes — each division a multiply and a shift for all lanes at
 * once (x * 10486 >> 20 is x / 100 below 10^4, x * 103 >> 10 is x / 10
 * below 100; the masks drop what a neighbouring lane shifted in). */
static inline char *put_digits8(char *o, uint32_t v)
{
	uint64_t x = v / 10000 | (uint64_t)(v % 10000) << 32;
	uint64_t q = (x * 10486 >> 20) & 0x0000007F0000007Fu;
	x = q | (x - q * 100) << 16;
	q = (x * 103 >> 10) & 0x000F000F000F000Fu;
	x = q | (x - q * 10) << 8;
	x += 0x3030303030303030u;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	x = __builtin_bswap64(x); /* the first digit at the lowest address */
#endif
	memcpy(o, &x, 8);
	return o + 8;
}

/* The 16 digits of hi * 10^8 + lo (both below 10^8), leading zeros too:
 * with SSE2, the same splitting as put_digits8 for all four 4-digit groups
 * in one register (in 16-bit lanes, x / 100 is x * 5243 >> 19 below 10^4,
 * x / 10 is x * 6554 >> 16 below 100). */
static inline char *put_digits16(char *o, uint32_t hi, uint32_t lo)
{
#if defined(__SSE2__)
	__m128i x = _mm_set_epi16(0, 0, 0, 0, (short)(lo % 10000), (short)(lo / 10000), (short)(hi % 10000),
				  (short)(hi / 10000));
	__m128i q = _mm_srli_epi16(_mm_mulhi_epu16(x, _mm_set1_epi16(5243)), 3);
	__m128i y = _mm_unpacklo_epi16(q, _mm_sub_epi16(x, _mm_mullo_epi16(q, _mm_set1_epi16(100))));
	__m128i t = _mm_mulhi_epu16(y, _mm_set1_epi16(6554));
	__m128i u = _mm_sub_epi16(y, _mm_mullo_epi16(t, _mm_set1_epi16(10)));
	__m128i d = _mm_or_si128(t, _mm_slli_epi16(u, 8)); /* tens in the low byte: first */
	_mm_storeu_si128((__m128i *)o, _mm_add_epi8(d, _mm_set1_epi8('0')));
	return o + 16;
#else
	return put_digits8(put_digits8(o, hi), lo);
#endif
}

/* Timestamps have 19 digits: the first 3 or 4, then 16 at once. */
static char *put_u64_long(char *o, uint64_t v)
{
	uint64_t hi = v / 100000000u;
	uint32_t lo = (uint32_t)(v % 100000000u);
	if (hi < 100000000u)
		return put_digits8(put_u64_short(o, hi), lo);
	/* 1..1844 (UINT64_MAX has 20 digits); a timestamp's is 3 or 4 */
	uint32_t top = (uint32_t)(hi / 100000000u);
	if (top >= 100) {
		if (top >= 1000)
			*o++ = (char)('0' + top / 1000);
		*o++ = (char)('0' + top / 100 % 10);
		o = put_mem(o, digit_pairs + 2 * (top % 100), 2);
	} else {
		o = put_u64_short(o, top);
	}
	return put_digits16(o, (uint32_t)(hi % 100000000u), lo);
}

static inline char *put_u64(char *o, uint64_t v)
{
	return v < 100000000u ? put_u64_short(o, v) : put_u64_long(o, v);
}

static inline char *put_i64(char *o, int64_t v)
{
	if (v >= 0)
		return put_u64(o, (uint64_t)v);
	*o++ = '-';
	return put_u64(o, (uint64_t)0 - (uint64_t)v); /* INT64_MIN too */
}

/* "lowercase hex", quoted; n is 16 or 8 (ids). */
static char *put_hex(char *o, const uint8_t *p, size_t n)
{
	*o++ = '"';
#if defined(__SSE2__)
	/* Every nibble to a byte, high nibble first, then '0' + v, plus
	 * 'a' - '0' - 10 where v > 9: sixteen id bytes in a dozen instructions. */
	const __m128i low = _mm_set1_epi8(0x0F), nine = _mm_set1_epi8(9);
	const __m128i zero = _mm_set1_epi8('0'), af = _mm_set1_epi8('a' - '0' - 10);
	__m128i x = n == 16 ? _mm_loadu_si128((const __m128i *)p) : _mm_loadl_epi64((const __m128i *)p);
	__m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), low), lo = _mm_and_si128(x, low);
	__m128i a = _mm_unpacklo_epi8(hi, lo);
	a = _mm_add_epi8(_mm_add_epi8(a, zero), _mm_and_si128(_mm_cmpgt_epi8(a, nine), af));
	_mm_storeu_si128((__m128i *)o, a);
	if (n == 16) {
		__m128i b = _mm_unpackhi_epi8(hi, lo);
		b = _mm_add_epi8(_mm_add_epi8(b, zero), _mm_and_si128(_mm_cmpgt_epi8(b, nine), af));
		_mm_storeu_si128((__m128i *)(o + 16), b);
	}
#else
	static const char pairs[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
				    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
				    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
				    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
				    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
				    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
				    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
				    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
	for (size_t i = 0; i < n; i++)
		memcpy(o + 2 * i, pairs + 2 * p[i], 2);
#endif
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

/* Are the 8 bytes of x all plain? Each test sets the high bit of a byte
 * that needs work: below 0x20, '"', '\\' (the "has a zero byte" trick) or
 * above 0x7F. */
static inline bool plain64(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
	uint64_t quote = x ^ (ones * '"'), bslash = x ^ (ones * '\\');
	uint64_t hit = ((x - ones * 0x20) & ~x) | ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash) | x;
	return (hit & high) == 0;
}

/* Loads 8 bytes into *w: are they all plain? */
static inline bool plain_word(const uint8_t *p, uint64_t *w)
{
	memcpy(w, p, 8);
	return plain64(*w);
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

/* A quoted JSON string with something to escape, or non-ASCII to check as
 * UTF-8 (invalid UTF-8 becomes U+FFFD): at most 6 x n + 2 bytes. Out of
 * line: the common case, plain ASCII, is put_string's. */
static __attribute__((noinline)) char *put_string_slow(char *o, const char *p, size_t n)
{
	*o++ = '"';
	o = put_string_rest(o, (const uint8_t *)p, 0, n);
	*o++ = '"';
	return o;
}

/* Copies u[0..n) to o if every byte is plain (plain_ascii); false, with o
 * partly written, if any is not. Loads stay inside u: a string is read as
 * its first and last 16, 8 or 4 bytes (which overlap: the bytes in both are
 * written twice, the same both times), or 1..3 bytes as its first, middle
 * and last; over 32 bytes, 16 at a time before the last 16. */
static inline bool plain_copy(char *o, const uint8_t *u, size_t n)
{
	uint64_t x;
	uint32_t a, b;
#if defined(__SSE2__)
	/* Signed bytes: "below 0x20" also catches 0x80..0xFF. */
	const __m128i ctl = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
#define SPECIAL16(v)                                                                          \
	_mm_movemask_epi8(_mm_or_si128(_mm_cmpgt_epi8(ctl, (v)),                           \
				       _mm_or_si128(_mm_cmpeq_epi8((v), quote), _mm_cmpeq_epi8((v), bslash))))
	if (n >= 16) {
		size_t i = 0;
		for (; n - i > 32; i += 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)(u + i));
			if (SPECIAL16(v))
				return false;
			_mm_storeu_si128((__m128i *)(o + i), v);
		}
		__m128i v = _mm_loadu_si128((const __m128i *)(u + i)), w = _mm_loadu_si128((const __m128i *)(u + n - 16));
		if (SPECIAL16(v) | SPECIAL16(w))
			return false;
		_mm_storeu_si128((__m128i *)(o + i), v);
		_mm_storeu_si128((__m128i *)(o + n - 16), w);
		return true;
	}
	if (n >= 8) {
		__m128i v = _mm_loadl_epi64((const __m128i *)u), w = _mm_loadl_epi64((const __m128i *)(u + n - 8));
		if (SPECIAL16(_mm_unpacklo_epi64(v, w)))
			return false;
		_mm_storel_epi64((__m128i *)o, v);
		_mm_storel_epi64((__m128i *)(o + n - 8), w);
		return true;
	}
#define PLAIN8(x) ((SPECIAL16(_mm_cvtsi64_si128((long long)(x))) & 0xFF) == 0)
#else
	if (n >= 8) {
		for (size_t i = 0; n - i > 8; i += 8) {
			if (!plain_word(u + i, &x))
				return false;
			memcpy(o + i, &x, 8);
		}
		if (!plain_word(u + n - 8, &x))
			return false;
		memcpy(o + n - 8, &x, 8);
		return true;
	}
#define PLAIN8(x) plain64(x)
#endif
	if (n >= 4) {
		memcpy(&a, u, 4);
		memcpy(&b, u + n - 4, 4);
		if (!PLAIN8(a | (uint64_t)b << 32))
			return false;
		memcpy(o, &a, 4);
		memcpy(o + n - 4, &b, 4);
		return true;
	}
	if (!n)
		return true;
	x = u[0] | (uint64_t)u[n / 2] << 8 | (uint64_t)u[n - 1] << 16 | 0x6161616161000000u; /* 'a': plain */
	if (!PLAIN8(x))
		return false;
	o[0] = (char)u[0];
	o[n / 2] = (char)u[n / 2];
	o[n - 1] = (char)u[n - 1];
	return true;
#undef PLAIN8
#undef SPECIAL16
}

/* A quoted JSON string: at most 6 x n + 2 bytes. Inline: a span has two
 * dozen strings, mostly short plain keys and values, and the call cost
 * more than copying them. */
static inline char *put_string(char *o, const char *p, size_t n)
{
	if (!plain_copy(o + 1, (const uint8_t *)p, n))
		return put_string_slow(o, p, n);
	o[0] = '"';
	o[n + 1] = '"';
	return o + n + 2;
}

static char *put_tstr(char *o, struct ts_str s) { return put_string(o, s.ptr, s.len); }

/* put_tstr for a string inside a queued span record, which is followed by
 * EXP_SPAN_SLACK readable bytes (queue.h): one of up to 32 bytes is read as
 * one or two 16-byte vectors, with what follows it masked off, and written
 * as 16 or 32 bytes (room for a span's text has EXP_SPAN_SLACK bytes to
 * spare too). Most keys and values are that short, and this takes no loop
 * and hardly a branch on their length. */
static inline char *put_rec_tstr(char *o, struct ts_str s)
{
#if defined(__SSE2__)
	_Static_assert(EXP_SPAN_SLACK >= 16, "a 16-byte load from a record's last string");
	if (s.len <= 32) {
		const __m128i ctl = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
#define SPECIAL16(v)                                                                          \
	(uint32_t) _mm_movemask_epi8(_mm_or_si128(                                                \
		_mm_cmpgt_epi8(ctl, (v)), _mm_or_si128(_mm_cmpeq_epi8((v), quote), _mm_cmpeq_epi8((v), bslash))))
		__m128i v = _mm_loadu_si128((const __m128i *)s.ptr), w = v;
		uint32_t m = SPECIAL16(v);
		if (s.len > 16) {
			w = _mm_loadu_si128((const __m128i *)(s.ptr + 16));
			m |= SPECIAL16(w) << 16;
		}
#undef SPECIAL16
		if (m & (uint32_t)((1ull << s.len) - 1))
			return put_string_slow(o, s.ptr, s.len);
		o[0] = '"';
		_mm_storeu_si128((__m128i *)(o + 1), v);
		if (s.len > 16)
			_mm_storeu_si128((__m128i *)(o + 17), w);
		o[s.len + 1] = '"';
		return o + s.len + 2;
	}
#endif
	return put_tstr(o, s);
}

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

/* The value parts of an attribute: `,"value":{...` up to the closing "}}".
 * Inline, like the rest of the attribute writers: the literals become a few
 * stores each, and a span's attributes are written by one loop with no call
 * per attribute. */
static inline char *put_str_value(char *o, struct ts_str v, bool in_rec)
{
	o = put_lit(o, ",\"value\":{\"stringValue\":");
	return in_rec ? put_rec_tstr(o, v) : put_tstr(o, v);
}

static inline char *put_int_value(char *o, int64_t v)
{
	o = put_lit(o, ",\"value\":{\"intValue\":\"");
	o = put_i64(o, v);
	*o++ = '"';
	return o;
}

static inline char *put_bool_value(char *o, bool v)
{
	return v ? put_lit(o, ",\"value\":{\"boolValue\":true") : put_lit(o, ",\"value\":{\"boolValue\":false");
}

static inline char *put_double_value(char *o, double v)
{
	o = put_lit(o, ",\"value\":{\"doubleValue\":");
	return put_double(o, v);
}

static inline char *put_array_value(char *o, struct ts_str blob)
{
	o = put_lit(o, ",\"value\":{\"arrayValue\":");
	return put_string_array(o, blob);
}

static char *put_attr(char *o, const struct ts_attr *a)
{
	o = put_lit(o, "{\"key\":");
	o = put_tstr(o, a->key);
	switch (a->type) {
	case TS_ATTR_STR:
		o = put_str_value(o, a->v.s, false);
		break;
	case TS_ATTR_STRARRAY:
		o = put_array_value(o, a->v.s);
		break;
	case TS_ATTR_INT:
		o = put_int_value(o, a->v.i);
		break;
	case TS_ATTR_BOOL:
		o = put_bool_value(o, a->v.b);
		break;
	case TS_ATTR_DOUBLE:
		o = put_double_value(o, a->v.d);
		break;
	default: /* the decoder admits no other type; an empty AnyValue is still valid */
		o = put_lit(o, ",\"value\":{");
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

/* ,"attributes":[...] from the n attributes at *pp, which it moves past
 * them. Omitted when empty, like protobuf's own JSON printer does. The
 * record is read here rather than through exp_rec_attr, so that the type is
 * looked at once, not once to read the value and again to write it. */
static char *put_rec_attrs(char *o, const uint8_t **pp, uint8_t n)
{
	if (!n)
		return o;
	/* The cursor is a local: stores through o (a char pointer) could alias
	 * *pp, which would then be reloaded after every one of them. */
	const uint8_t *p = *pp;
	/* Every attribute starts with `,{"key":`, one 8-byte store; the first
	 * comma becomes the array's '['. */
	o = put_lit(o, ",\"attributes\":");
	char *open = o;
	for (uint8_t i = 0; i < n; i++) {
		struct ts_str key = {(const char *)p + 1, p[0]}, v;
		uint8_t type = p[1 + key.len];
		p += 2 + key.len;
		o = put_lit(o, ",{\"key\":");
		o = put_rec_tstr(o, key);
		switch (type) {
		case TS_ATTR_INT:
			o = put_int_value(o, (int64_t)exp_rec_u64(p));
			p += 8;
			break;
		case TS_ATTR_BOOL:
			o = put_bool_value(o, *p++ != 0);
			break;
		case TS_ATTR_DOUBLE: {
			double d;
			memcpy(&d, p, sizeof d);
			o = put_double_value(o, d);
			p += 8;
			break;
		}
		case TS_ATTR_STRARRAY:
			p = exp_rec_str16(p, &v);
			o = put_array_value(o, v);
			break;
		default: /* TS_ATTR_STR: the decoder admits no other type */
			p = exp_rec_str16(p, &v);
			o = put_str_value(o, v, true);
			break;
		}
		o = put_lit(o, "}}");
	}
	*open = '[';
	*o++ = ']';
	*pp = p;
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
		o = put_rec_tstr(o, h->status_message);
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
		o = put_rec_tstr(o, h.trace_state);
	}
	if (!exp_is_zero(h.parent_span_id, 8)) { /* roots: omitted, not "" */
		o = put_lit(o, ",\"parentSpanId\":");
		o = put_hex(o, h.parent_span_id, 8);
	}
	o = put_lit(o, ",\"flags\":");
	o = put_u64(o, exp_otlp_span_flags(h.flags));
	o = put_lit(o, ",\"name\":");
	o = put_rec_tstr(o, h.name);
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
	char *o = sbuf_room(out, 1 + JSON_PER_REC_BYTE * (size_t)s->len + EXP_SPAN_SLACK);
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
