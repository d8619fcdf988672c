/* frame.c — encoder and validating decoder for the format in frame.h.
 * Pure functions over caller-provided memory: no allocation, no I/O, so the
 * same code runs inside hooks, in the exporter and under the fuzzer. */
#include "frame.h"

#include <string.h>

void ts_put_attr(struct ts_wbuf *w, const struct ts_attr *a)
{
	ts_put_attr_key(w, a->key.ptr, ts_utf8_cut(a->key.ptr, a->key.len, TS_KEY_MAX), a->type);
	switch (a->type) {
	case TS_ATTR_STR:
		ts_put_str16(w, a->v.s.ptr, a->v.s.len);
		break;
	case TS_ATTR_STRARRAY: /* never cut: a cut blob would not parse */
		if (a->v.s.len > TS_STR_MAX)
			w->overflow = true;
		ts_put_u16(w, a->v.s.len);
		ts_put_bytes(w, a->v.s.ptr, a->v.s.len);
		break;
	case TS_ATTR_INT:
		ts_put_u64(w, (uint64_t)a->v.i);
		break;
	case TS_ATTR_BOOL:
		ts_put_u8(w, a->v.b ? 1 : 0);
		break;
	case TS_ATTR_DOUBLE:
		ts_put_bytes(w, &a->v.d, 8);
		break;
	default:
		w->overflow = true; /* unknown type: refuse to write a bad frame */
	}
}

void ts_frame_begin(struct ts_wbuf *w, enum ts_frame_type type, uint32_t dropped)
{
	ts_put_u32(w, TS_FRAME_MAGIC);
	ts_put_u16(w, TS_FRAME_VERSION);
	ts_put_u16(w, (uint16_t)type);
	ts_put_u32(w, 0);
	ts_put_u32(w, dropped);
}

bool ts_frame_finish(struct ts_wbuf *w)
{
	if (w->overflow || w->len < TS_FRAME_HEADER_SIZE || w->len > TS_FRAME_MAX)
		return false;
	uint32_t len = (uint32_t)(w->len - TS_FRAME_HEADER_SIZE);
	memcpy(w->p + 8, &len, 4);
	return true;
}

static void put_attrs(struct ts_wbuf *w, const struct ts_attr *attrs, uint8_t n)
{
	for (uint8_t i = 0; i < n; i++)
		ts_put_attr(w, &attrs[i]);
}

void ts_span_encode(struct ts_wbuf *w, const struct ts_span_view *s)
{
	static const uint8_t zero[16];
	size_t start = w->len;
	ts_put_u16(w, 0); /* record_len, patched below */
	ts_put_bytes(w, s->trace_id ? s->trace_id : zero, 16);
	ts_put_bytes(w, s->span_id ? s->span_id : zero, 8);
	ts_put_bytes(w, s->parent_span_id ? s->parent_span_id : zero, 8);
	ts_put_u64(w, s->start_ns);
	ts_put_u64(w, s->end_ns);
	ts_put_u8(w, s->kind);
	ts_put_u8(w, s->status);
	ts_put_u8(w, s->flags);
	uint8_t n_attrs = s->n_attrs > TS_MAX_ATTRS ? TS_MAX_ATTRS : s->n_attrs;
	uint8_t n_links = s->n_links > TS_MAX_LINKS ? TS_MAX_LINKS : s->n_links;
	ts_put_u8(w, n_attrs);
	ts_put_u8(w, n_links);
	ts_put_str16(w, s->name.ptr, s->name.len);
	ts_put_str16(w, s->status_message.ptr, s->status_message.len);
	ts_put_str16(w, s->trace_state.ptr, s->trace_state.len);
	put_attrs(w, s->attrs, n_attrs);
	for (uint8_t i = 0; i < n_links; i++) {
		uint8_t nla = s->links[i].n_attrs > 8 ? 8 : s->links[i].n_attrs;
		ts_put_bytes(w, s->links[i].trace_id ? s->links[i].trace_id : zero, 16);
		ts_put_bytes(w, s->links[i].span_id ? s->links[i].span_id : zero, 8);
		ts_put_u8(w, s->links[i].flags);
		ts_put_u8(w, nla);
		put_attrs(w, s->links[i].attrs, nla);
	}
	size_t rlen = w->len - start;
	if (w->overflow || rlen > TS_SPAN_RECORD_MAX) {
		w->overflow = true;
		return;
	}
	uint16_t r16 = (uint16_t)rlen;
	memcpy(w->p + start, &r16, 2);
}

void ts_hello_encode(struct ts_wbuf *w, uint32_t pid, uint32_t ppid, uint64_t start_ns,
		     const struct ts_attr *attrs, uint8_t n_attrs)
{
	if (n_attrs > TS_MAX_ATTRS)
		n_attrs = TS_MAX_ATTRS;
	ts_put_u32(w, pid);
	ts_put_u32(w, ppid);
	ts_put_u64(w, start_ns);
	ts_put_u8(w, n_attrs);
	put_attrs(w, attrs, n_attrs);
}

/* ---- reading ---------------------------------------------------------- */

/* The decoders below walk a record with a cursor and its end instead of a
 * ts_rbuf: the exporter validates every record it receives, and with the
 * cursor in a register each field costs one comparison, where going through
 * ts_rbuf re-read and re-tested `bad` and `off` at every field (a sixth of
 * the exporter's CPU). They accept exactly what the ts_rbuf readers accept:
 * every check below is one the field layout in frame.h implies. Each returns
 * the cursor past what it read, NULL when the bytes are malformed; p <= end
 * always holds on entry. */

static inline const uint8_t *get_str16(const uint8_t *p, const uint8_t *end, struct ts_str *s)
{
	uint16_t n;
	if (end - p < 2)
		return NULL;
	memcpy(&n, p, 2);
	p += 2;
	if (n > TS_STR_MAX || (size_t)(end - p) < n)
		return NULL;
	s->ptr = (const char *)p;
	s->len = n;
	return p + n;
}

/* A STRARRAY blob: str16 items back to back, filling it exactly. */
static bool strarray_ok(const uint8_t *p, const uint8_t *end)
{
	struct ts_str item;
	while (p < end)
		if (!(p = get_str16(p, end, &item)))
			return false;
	return true;
}

static inline const uint8_t *get_attr(const uint8_t *p, const uint8_t *end, struct ts_attr *a)
{
	/* the key's length byte, the key (1..TS_KEY_MAX bytes) and the type */
	if (p == end)
		return NULL;
	size_t klen = p[0];
	if (klen == 0 || klen > TS_KEY_MAX || (size_t)(end - p) < klen + 2)
		return NULL;
	a->key.ptr = (const char *)p + 1;
	a->key.len = (uint16_t)klen;
	p += 1 + klen;
	a->type = *p++;
	switch (a->type) {
	case TS_ATTR_STR:
		return get_str16(p, end, &a->v.s);
	case TS_ATTR_STRARRAY:
		p = get_str16(p, end, &a->v.s);
		if (p && !strarray_ok((const uint8_t *)a->v.s.ptr, p))
			return NULL;
		return p;
	case TS_ATTR_INT:
	case TS_ATTR_DOUBLE: /* 8 bytes either way: v.i and v.d share them */
		if (end - p < 8)
			return NULL;
		memcpy(&a->v, p, 8);
		return p + 8;
	case TS_ATTR_BOOL:
		if (p == end || *p > 1)
			return NULL;
		a->v.b = *p;
		return p + 1;
	default:
		return NULL;
	}
}

/* attrs NULL: check only (each one is decoded into a scratch copy). */
static inline const uint8_t *get_attrs(const uint8_t *p, const uint8_t *end, struct ts_attr *attrs, uint8_t n)
{
	struct ts_attr scratch;
	for (uint8_t i = 0; i < n && p; i++)
		p = get_attr(p, end, attrs ? &attrs[i] : &scratch);
	return p;
}

bool ts_get_attr(struct ts_rbuf *r, struct ts_attr *a)
{
	const uint8_t *p = r->bad ? NULL : get_attr(r->p + r->off, r->p + r->len, a);
	if (!p) {
		r->bad = true;
		return false;
	}
	r->off = (size_t)(p - r->p);
	return true;
}

bool ts_strarray_next(struct ts_rbuf *blob, struct ts_str *item)
{
	if (blob->bad || blob->off >= blob->len)
		return false;
	*item = ts_get_str16(blob);
	return !blob->bad;
}

bool ts_frame_parse_header(const void *msg, size_t len, struct ts_frame_header *h)
{
	if (len < TS_FRAME_HEADER_SIZE || len > TS_FRAME_MAX)
		return false;
	struct ts_rbuf r;
	ts_rbuf_init(&r, msg, len);
	h->magic = ts_get_u32(&r);
	h->version = ts_get_u16(&r);
	h->type = ts_get_u16(&r);
	h->length = ts_get_u32(&r);
	h->dropped = ts_get_u32(&r);
	if (h->magic != TS_FRAME_MAGIC || h->version != TS_FRAME_VERSION)
		return false;
	if (h->type < TS_FRAME_HELLO || h->type > TS_FRAME_CHANNEL)
		return false;
	return h->length == len - TS_FRAME_HEADER_SIZE;
}

/* n a multiple of 8: whole words, not bytes (ids are 16 and 8 bytes). */
static inline bool all_zero(const uint8_t *p, size_t n)
{
	uint64_t acc = 0, w;
	for (size_t i = 0; i < n; i += 8) {
		memcpy(&w, p + i, 8);
		acc |= w;
	}
	return acc == 0;
}

/* The fixed part of a record: u16 record_len, the ids, the times, five u8s. */
#define REC_FIXED (2 + 16 + 8 + 8 + 8 + 8 + 5)
/* A link's fixed part: ids, flags, n_attrs. */
#define LINK_FIXED (16 + 8 + 1 + 1)

/* s NULL: validation only, the view is not written. Inlined into both
 * cases of ts_span_decode, so that neither tests for NULL at every field. */
static inline __attribute__((always_inline)) bool span_decode(struct ts_rbuf *r, struct ts_span_view *s)
{
	size_t start = r->off;
	uint16_t rlen;
	/* The record length, and the fixed part with the three string lengths,
	 * which no record can be without, in one check. Decoding stays inside
	 * the record's own bounds, so a lying inner length cannot read into the
	 * next record. */
	if (r->bad || r->len - start < 2)
		return false;
	memcpy(&rlen, r->p + start, 2);
	if (rlen < REC_FIXED + 6 || rlen > TS_SPAN_RECORD_MAX || rlen > r->len - start)
		return false;
	const uint8_t *rec = r->p + start, *end = rec + rlen, *p;
	uint64_t start_ns, end_ns;
	memcpy(&start_ns, rec + 34, 8);
	memcpy(&end_ns, rec + 42, 8);
	uint8_t kind = rec[50], status = rec[51], n_attrs = rec[53], n_links = rec[54];
	struct ts_str name, status_message, trace_state;
	p = get_str16(rec + REC_FIXED, end, &name);
	if (p)
		p = get_str16(p, end, &status_message);
	if (p)
		p = get_str16(p, end, &trace_state);
	if (!p || n_attrs > TS_MAX_ATTRS || n_links > TS_MAX_LINKS)
		return false;
	if (kind < TS_KIND_INTERNAL || kind > TS_KIND_CONSUMER || status > TS_STATUS_ERROR)
		return false;
	if (all_zero(rec + 2, 16) || all_zero(rec + 18, 8) || name.len == 0)
		return false;
	if (end_ns < start_ns)
		return false;
	if (s) {
		s->record = rec;
		s->record_len = rlen;
		s->trace_id = rec + 2;
		s->span_id = rec + 18;
		s->parent_span_id = rec + 26;
		s->start_ns = start_ns;
		s->end_ns = end_ns;
		s->kind = kind;
		s->status = status;
		s->flags = rec[52];
		s->n_attrs = n_attrs;
		s->n_links = n_links;
		s->name = name;
		s->status_message = status_message;
		s->trace_state = trace_state;
	}
	if (!(p = get_attrs(p, end, s ? s->attrs : NULL, n_attrs)))
		return false;
	for (uint8_t i = 0; i < n_links; i++) {
		if (end - p < LINK_FIXED)
			return false;
		uint8_t n = p[25];
		if (n > 8)
			return false;
		if (s) {
			s->links[i].trace_id = p;
			s->links[i].span_id = p + 16;
			s->links[i].flags = p[24];
			s->links[i].n_attrs = n;
		}
		if (!(p = get_attrs(p + LINK_FIXED, end, s ? s->links[i].attrs : NULL, n)))
			return false;
	}
	if (p != end) /* trailing bytes inside a record: not ours */
		return false;
	r->off = start + rlen;
	return true;
}

bool ts_span_decode(struct ts_rbuf *r, struct ts_span_view *s)
{
	if (s ? span_decode(r, s) : span_decode(r, NULL))
		return true;
	r->bad = true;
	return false;
}

bool ts_hello_decode(const void *payload, size_t len, struct ts_hello_view *h)
{
	struct ts_rbuf r;
	ts_rbuf_init(&r, payload, len);
	h->pid = ts_get_u32(&r);
	h->ppid = ts_get_u32(&r);
	h->start_ns = ts_get_u64(&r);
	h->n_attrs = ts_get_u8(&r);
	if (r.bad || h->n_attrs > TS_MAX_ATTRS)
		return false;
	const uint8_t *end = r.p + len;
	return get_attrs(r.p + r.off, end, h->attrs, h->n_attrs) == end;
}
