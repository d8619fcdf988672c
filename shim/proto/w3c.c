/* w3c.c — traceparent, tracestate and baggage; see w3c.h for the contract.
 * Everything works on (pointer, length) slices of the input: the only writes
 * are into caller buffers, so a hook or a signal handler can call any of it. */
#include "proto/w3c.h"

#include <string.h>

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static void trim_ows(const char **s, size_t *len)
{
	while (*len > 0 && is_ows((*s)[0])) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && is_ows((*s)[*len - 1]))
		(*len)--;
}

/* Split the next ','-separated element off s[*pos..len), OWS-trimmed.
 * Both list headers forbid ',' inside values, so a plain split is exact. */
static bool next_element(const char *s, size_t len, size_t *pos,
			 const char **el, size_t *el_len)
{
	if (*pos > len)
		return false;
	const char *start = s + *pos;
	const char *comma = len > *pos ? memchr(start, ',', len - *pos) : NULL;
	size_t n = comma ? (size_t)(comma - start) : len - *pos;
	*pos += n + 1; /* past the comma; past len+1 marks the end */
	*el = start;
	*el_len = n;
	trim_ows(el, el_len);
	return true;
}

/* ---- traceparent ------------------------------------------------------ */

/* Lowercase only: the spec makes uppercase hex an invalid traceparent. */
static int hex_lc(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool parse_hex_lc(const char *s, size_t nbytes, uint8_t *out)
{
	for (size_t i = 0; i < nbytes; i++) {
		int hi = hex_lc(s[2 * i]), lo = hex_lc(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

bool w3c_traceparent_ids_zero(const struct w3c_traceparent *tp)
{
	return all_zero(tp->trace_id, 16) || all_zero(tp->span_id, 8);
}

bool w3c_traceparent_parse(const char *s, size_t len, struct w3c_traceparent *out)
{
	struct w3c_traceparent tp;

	trim_ows(&s, &len);
	if (len < W3C_TRACEPARENT_LEN)
		return false;
	if (!parse_hex_lc(s, 1, &tp.version) || tp.version == 0xff)
		return false;
	/* v00 is exactly 55 chars; later versions may only append "-..." */
	if (tp.version == 0 && len != W3C_TRACEPARENT_LEN)
		return false;
	if (len > W3C_TRACEPARENT_LEN && s[W3C_TRACEPARENT_LEN] != '-')
		return false;
	if (s[2] != '-' || s[35] != '-' || s[52] != '-')
		return false;
	if (!parse_hex_lc(s + 3, 16, tp.trace_id) || !parse_hex_lc(s + 36, 8, tp.span_id) ||
	    !parse_hex_lc(s + 53, 1, &tp.flags))
		return false;
	if (w3c_traceparent_ids_zero(&tp))
		return false;
	*out = tp;
	return true;
}

static char *put_hex(char *p, const uint8_t *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		*p++ = digits[b[i] >> 4];
		*p++ = digits[b[i] & 15];
	}
	return p;
}

size_t w3c_traceparent_format(const struct w3c_traceparent *tp,
			      char out[W3C_TRACEPARENT_LEN])
{
	char *p = out;
	*p++ = '0';
	*p++ = '0';
	*p++ = '-';
	p = put_hex(p, tp->trace_id, 16);
	*p++ = '-';
	p = put_hex(p, tp->span_id, 8);
	*p++ = '-';
	put_hex(p, &tp->flags, 1);
	return W3C_TRACEPARENT_LEN;
}

/* ---- tracestate ------------------------------------------------------- */

static bool ts_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-' || c == '*' || c == '/' || c == '@';
}

static bool ts_key_valid(const char *k, size_t n)
{
	if (n == 0 || n > 256)
		return false;
	if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= '0' && k[0] <= '9')))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!ts_key_char(k[i]))
			return false;
	return true;
}

/* value = 0*255(chr) nblk-chr; chr = SP / nblk-chr; nblk-chr excludes ',' '=' */
static bool ts_value_valid(const char *v, size_t n)
{
	if (n == 0 || n > 256 || v[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
			return false;
	}
	return true;
}

/* m is a trimmed non-empty member; on success *key_len is the key length. */
static bool ts_member_valid(const char *m, size_t n, size_t *key_len)
{
	const char *eq = memchr(m, '=', n);
	if (!eq)
		return false;
	*key_len = (size_t)(eq - m);
	return ts_key_valid(m, *key_len) && ts_value_valid(eq + 1, n - *key_len - 1);
}

bool w3c_tracestate_validate(const char *s, size_t len, struct w3c_tracestate_info *info)
{
	/* Keys seen so far, to reject duplicates; 32 slices on the stack. */
	const char *keys[W3C_TRACESTATE_MAX_MEMBERS];
	size_t key_lens[W3C_TRACESTATE_MAX_MEMBERS];
	unsigned count = 0;
	size_t pos = 0, n, kl;
	const char *m;

	if (!s)
		s = ""; /* (NULL, 0): no arithmetic on a null pointer */
	trim_ows(&s, &len);
	while (next_element(s, len, &pos, &m, &n)) {
		if (n == 0)
			continue;
		if (count == W3C_TRACESTATE_MAX_MEMBERS || !ts_member_valid(m, n, &kl))
			return false;
		for (unsigned i = 0; i < count; i++)
			if (key_lens[i] == kl && memcmp(keys[i], m, kl) == 0)
				return false;
		keys[count] = m;
		key_lens[count++] = kl;
	}
	if (info) {
		info->members = count;
		info->len = len;
	}
	return true;
}

bool w3c_tracestate_may_propagate(const char *s, size_t len)
{
	struct w3c_tracestate_info info;
	return w3c_tracestate_validate(s, len, &info) &&
	       info.len <= W3C_TRACESTATE_PROPAGATE_MAX;
}

/* Length of the members joined with single commas; with skip_big, members
 * over W3C_TRACESTATE_BIG_MEMBER are left out. */
static size_t ts_joined_len(const char *s, size_t len, bool skip_big)
{
	size_t pos = 0, n, total = 0;
	const char *m;
	bool first = true;

	while (next_element(s, len, &pos, &m, &n)) {
		if (n == 0 || (skip_big && n > W3C_TRACESTATE_BIG_MEMBER))
			continue;
		total += n + (first ? 0 : 1);
		first = false;
	}
	return total;
}

size_t w3c_tracestate_build(char *out, size_t cap, const char *s, size_t len)
{
	size_t limit = cap < W3C_TRACESTATE_PROPAGATE_MAX ? cap : W3C_TRACESTATE_PROPAGATE_MAX;
	size_t pos = 0, n, w = 0;
	const char *m;

	if (!s || !w3c_tracestate_validate(s, len, NULL))
		return 0;
	bool skip_big = ts_joined_len(s, len, false) > limit;
	while (next_element(s, len, &pos, &m, &n)) {
		if (n == 0 || (skip_big && n > W3C_TRACESTATE_BIG_MEMBER))
			continue;
		size_t need = n + (w ? 1 : 0);
		if (need > limit - w)
			break; /* spec: drop from the end, so keep the prefix */
		if (w)
			out[w++] = ',';
		memcpy(out + w, m, n);
		w += n;
	}
	return w;
}

/* ---- baggage ---------------------------------------------------------- */

/* RFC 9110 tchar */
static bool is_tchar(char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* baggage-octet: printable ASCII except SP DQUOTE , ; \ */
static bool is_bg_octet(char c)
{
	unsigned char u = (unsigned char)c;
	return u >= 0x21 && u <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
}

static size_t span_of(const char *p, size_t n, bool (*ok)(char))
{
	size_t i = 0;
	while (i < n && ok(p[i]))
		i++;
	return i;
}

static size_t skip_ows(const char *p, size_t n, size_t i)
{
	while (i < n && is_ows(p[i]))
		i++;
	return i;
}

/* One property, already split at ';' and trimmed: key [OWS "=" OWS value].
 * Reports key and value slices so the builder can drop the OWS. */
static bool bg_prop_parse(const char *p, size_t n, size_t *klen, const char **v,
			  size_t *vlen, bool *has_eq)
{
	size_t i = span_of(p, n, is_tchar);
	*klen = i;
	*has_eq = false;
	*vlen = 0;
	*v = p + n;
	if (i == 0)
		return false;
	i = skip_ows(p, n, i);
	if (i == n)
		return true;
	if (p[i] != '=')
		return false;
	*has_eq = true;
	i = skip_ows(p, n, i + 1);
	*v = p + i;
	*vlen = span_of(p + i, n - i, is_bg_octet);
	return i + *vlen == n;
}

/* Next ';'-separated property of props[*pos..n), trimmed. */
static bool bg_prop_next(const char *props, size_t n, size_t *pos, const char **pp,
			 size_t *pn)
{
	if (n == 0 || *pos > n)
		return false;
	const char *start = props + *pos;
	const char *semi = memchr(start, ';', n - *pos);
	size_t len = semi ? (size_t)(semi - start) : n - *pos;
	*pos += len + 1;
	*pp = start;
	*pn = len;
	trim_ows(pp, pn);
	return true;
}

/* Validates all properties; returns their serialised length ("a;b=c"),
 * or SIZE_MAX if one is malformed. */
static size_t bg_props_len(const char *props, size_t n)
{
	size_t pos = 0, pn, klen, vlen, total = 0;
	const char *pp, *v;
	bool has_eq;

	while (bg_prop_next(props, n, &pos, &pp, &pn)) {
		if (!bg_prop_parse(pp, pn, &klen, &v, &vlen, &has_eq))
			return SIZE_MAX;
		total += (total ? 1 : 0) + klen + (has_eq ? 1 + vlen : 0);
	}
	return total;
}

/* m is a trimmed, non-empty member text. */
static bool bg_member_parse(const char *p, size_t n, struct w3c_baggage_member *m)
{
	size_t i = span_of(p, n, is_tchar);
	if (i == 0)
		return false;
	m->key = p;
	m->key_len = i;
	i = skip_ows(p, n, i);
	if (i == n || p[i] != '=')
		return false;
	i = skip_ows(p, n, i + 1);
	m->value = p + i;
	m->value_len = span_of(p + i, n - i, is_bg_octet);
	i = skip_ows(p, n, i + m->value_len);
	m->props = p + n;
	m->props_len = 0;
	if (i == n)
		return true;
	if (p[i] != ';')
		return false;
	m->props = p + i + 1;
	m->props_len = n - i - 1;
	trim_ows(&m->props, &m->props_len);
	/* "k=v;" has a ';' but no property: the grammar wants a key after it */
	return m->props_len > 0 && bg_props_len(m->props, m->props_len) != SIZE_MAX;
}

void w3c_baggage_iter_init(struct w3c_baggage_iter *it, const char *s, size_t len)
{
	it->s = s ? s : ""; /* (NULL, 0): no arithmetic on a null pointer */
	it->len = len;
	it->pos = 0;
}

bool w3c_baggage_next(struct w3c_baggage_iter *it, struct w3c_baggage_member *m)
{
	const char *el;
	size_t n;

	while (next_element(it->s, it->len, &it->pos, &el, &n)) {
		if (n == 0 || !bg_member_parse(el, n, m))
			continue;
		if (w3c_baggage_decode_value(m, NULL, 0) != SIZE_MAX)
			return true;
	}
	return false;
}

/* Incremental UTF-8 check (RFC 3629: no overlongs, surrogates, > U+10FFFF). */
struct utf8_check {
	uint8_t need, lo, hi;
};

static bool utf8_step(struct utf8_check *u, uint8_t b)
{
	if (u->need) {
		if (b < u->lo || b > u->hi)
			return false;
		u->lo = 0x80;
		u->hi = 0xbf;
		u->need--;
		return true;
	}
	u->lo = 0x80;
	u->hi = 0xbf;
	if (b < 0x80)
		return true;
	if (b < 0xc2 || b > 0xf4)
		return false;
	if (b < 0xe0) {
		u->need = 1;
	} else if (b < 0xf0) {
		u->need = 2;
		u->lo = b == 0xe0 ? 0xa0 : 0x80;
		u->hi = b == 0xed ? 0x9f : 0xbf;
	} else {
		u->need = 3;
		u->lo = b == 0xf0 ? 0x90 : 0x80;
		u->hi = b == 0xf4 ? 0x8f : 0xbf;
	}
	return true;
}

static int hex_any(char c)
{
	int v = hex_lc(c);
	if (v < 0 && c >= 'A' && c <= 'F')
		v = c - 'A' + 10;
	return v;
}

size_t w3c_baggage_decode_value(const struct w3c_baggage_member *m, char *out, size_t cap)
{
	struct utf8_check u = {0, 0x80, 0xbf};
	const char *v = m->value;
	size_t n = m->value_len, w = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t b = (uint8_t)v[i];
		if (v[i] == '%') {
			int hi = i + 2 < n ? hex_any(v[i + 1]) : -1;
			int lo = hi >= 0 ? hex_any(v[i + 2]) : -1;
			if (lo < 0)
				return SIZE_MAX;
			b = (uint8_t)(hi << 4 | lo);
			i += 2;
		}
		if (!utf8_step(&u, b))
			return SIZE_MAX;
		if (out) {
			if (w == cap)
				return SIZE_MAX;
			out[w] = (char)b;
		}
		w++;
	}
	return u.need ? SIZE_MAX : w;
}

/* Write the normalised properties (no OWS) at out; returns bytes written. */
static size_t bg_props_write(char *out, const char *props, size_t n)
{
	size_t pos = 0, pn, klen, vlen, w = 0;
	const char *pp, *v;
	bool has_eq;

	while (bg_prop_next(props, n, &pos, &pp, &pn)) {
		bg_prop_parse(pp, pn, &klen, &v, &vlen, &has_eq);
		if (w)
			out[w++] = ';';
		memcpy(out + w, pp, klen);
		w += klen;
		if (has_eq) {
			out[w++] = '=';
			memcpy(out + w, v, vlen);
			w += vlen;
		}
	}
	return w;
}

static size_t bg_member_len(const struct w3c_baggage_member *m)
{
	size_t pl = bg_props_len(m->props, m->props_len);
	return m->key_len + 1 + m->value_len + (pl ? 1 + pl : 0);
}

static size_t bg_member_write(char *out, const struct w3c_baggage_member *m)
{
	size_t w = m->key_len;
	memcpy(out, m->key, w);
	out[w++] = '=';
	memcpy(out + w, m->value, m->value_len);
	w += m->value_len;
	if (m->props_len) {
		out[w++] = ';';
		w += bg_props_write(out + w, m->props, m->props_len);
	}
	return w;
}

size_t w3c_baggage_build(char *out, size_t cap, const char *s, size_t len)
{
	size_t limit = cap < W3C_BAGGAGE_MAX_BYTES ? cap : W3C_BAGGAGE_MAX_BYTES;
	struct w3c_baggage_iter it;
	struct w3c_baggage_member m;
	unsigned count = 0;
	size_t w = 0;

	w3c_baggage_iter_init(&it, s, len);
	while (count < W3C_BAGGAGE_MAX_MEMBERS && w3c_baggage_next(&it, &m)) {
		size_t need = bg_member_len(&m) + (w ? 1 : 0);
		if (need > limit - w)
			continue; /* never a partial member; a shorter one may fit */
		if (w)
			out[w++] = ',';
		w += bg_member_write(out + w, &m);
		count++;
	}
	return w;
}
