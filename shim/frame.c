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

bool ts_get_attr(struct ts_rbuf *r, struct ts_attr *a)
{
	uint8_t klen = ts_get_u8(r);
	const uint8_t *k = ts_get_bytes(r, klen);
	if (!k || klen == 0 || klen > TS_KEY_MAX) {
		r->bad = true;
		return false;
	}
	a->key.ptr = (const char *)k;
	a->key.len = klen;
	a->type = ts_get_u8(r);
	switch (a->type) {
	case TS_ATTR_STR:
		a->v.s = ts_get_str16(r);
		break;
	case TS_ATTR_STRARRAY: {
		a->v.s = ts_get_str16(r);
		struct ts_rbuf blob;
		struct ts_str item;
		ts_rbuf_init(&blob, a->v.s.ptr, a->v.s.len);
		while (ts_strarray_next(&blob, &item))
			;
		if (blob.bad)
			r->bad = true;
		break;
	}
	case TS_ATTR_INT:
		a->v.i = (int64_t)ts_get_u64(r);
		break;
	case TS_ATTR_BOOL: {
		uint8_t b = ts_get_u8(r);
		if (b > 1)
			r->bad = true;
		a->v.b = b;
		break;
	}
	case TS_ATTR_DOUBLE: {
		const uint8_t *p = ts_get_bytes(r, 8);
		if (p)
			memcpy(&a->v.d, p, 8);
		break;
	}
	default:
		r->bad = true;
	}
	return !r->bad;
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
	if (h->type < TS_FRAME_HELLO || h->type > TS_FRAME_WAKE)
		return false;
	return h->length == len - TS_FRAME_HEADER_SIZE;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static bool get_attrs(struct ts_rbuf *r, struct ts_attr *attrs, uint8_t n)
{
	for (uint8_t i = 0; i < n; i++)
		if (!ts_get_attr(r, &attrs[i]))
			return false;
	return true;
}

bool ts_span_decode(struct ts_rbuf *r, struct ts_span_view *s)
{
	size_t start = r->off;
	uint16_t rlen = ts_get_u16(r);
	if (r->bad || rlen < 2 || rlen > TS_SPAN_RECORD_MAX || rlen > r->len - start) {
		r->bad = true;
		return false;
	}
	/* Decode inside the record's own bounds, so a lying inner length cannot
	 * read into the next record. */
	struct ts_rbuf in;
	ts_rbuf_init(&in, r->p + start, rlen);
	in.off = 2;
	s->record = r->p + start;
	s->record_len = rlen;
	s->trace_id = ts_get_bytes(&in, 16);
	s->span_id = ts_get_bytes(&in, 8);
	s->parent_span_id = ts_get_bytes(&in, 8);
	s->start_ns = ts_get_u64(&in);
	s->end_ns = ts_get_u64(&in);
	s->kind = ts_get_u8(&in);
	s->status = ts_get_u8(&in);
	s->flags = ts_get_u8(&in);
	s->n_attrs = ts_get_u8(&in);
	s->n_links = ts_get_u8(&in);
	s->name = ts_get_str16(&in);
	s->status_message = ts_get_str16(&in);
	s->trace_state = ts_get_str16(&in);
	if (in.bad || s->n_attrs > TS_MAX_ATTRS || s->n_links > TS_MAX_LINKS)
		goto bad;
	if (s->kind < TS_KIND_INTERNAL || s->kind > TS_KIND_CONSUMER || s->status > TS_STATUS_ERROR)
		goto bad;
	if (all_zero(s->trace_id, 16) || all_zero(s->span_id, 8) || s->name.len == 0)
		goto bad;
	if (s->end_ns < s->start_ns)
		goto bad;
	if (!get_attrs(&in, s->attrs, s->n_attrs))
		goto bad;
	for (uint8_t i = 0; i < s->n_links; i++) {
		s->links[i].trace_id = ts_get_bytes(&in, 16);
		s->links[i].span_id = ts_get_bytes(&in, 8);
		s->links[i].flags = ts_get_u8(&in);
		s->links[i].n_attrs = ts_get_u8(&in);
		if (in.bad || s->links[i].n_attrs > 8)
			goto bad;
		if (!get_attrs(&in, s->links[i].attrs, s->links[i].n_attrs))
			goto bad;
	}
	if (in.off != rlen) /* trailing bytes inside a record: not ours */
		goto bad;
	r->off = start + rlen;
	return true;
bad:
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
	if (!get_attrs(&r, h->attrs, h->n_attrs))
		return false;
	return r.off == len;
}
