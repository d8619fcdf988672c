/* record.h — reading queued span records (layout: shim/frame.h) without
 * bounds checks, for the encoders and the tail sampler.
 *
 * Safe only on records that passed ts_span_decode: the receive loop
 * (server.c) decodes every record before exp_span_new copies it, and a queued
 * record never changes, so every length in it has been checked once. Decoding
 * it a second time into a ts_span_view (thousands of bytes, every field
 * bounds-checked) cost the encoders about as much as writing their output;
 * these readers are a few loads each, and the encoders walk a record once,
 * in the order its fields are stored. */
#ifndef TRACESHIM_EXP_RECORD_H
#define TRACESHIM_EXP_RECORD_H

#include <stdint.h>
#include <string.h>

#include "frame.h"

/* The fixed head: u16 len | trace_id[16] | span_id[8] | parent[8] | u64 start |
 * u64 end | u8 kind | u8 status | u8 flags | u8 n_attrs | u8 n_links, then
 * str16 name, status_message, trace_state, the attributes and the links. */
#define EXP_REC_TRACE_ID 2
#define EXP_REC_SPAN_ID 18
#define EXP_REC_PARENT_ID 26
#define EXP_REC_START 34
#define EXP_REC_END 42
#define EXP_REC_KIND 50
#define EXP_REC_STATUS 51
#define EXP_REC_FLAGS 52
#define EXP_REC_N_ATTRS 53
#define EXP_REC_N_LINKS 54
#define EXP_REC_NAME 55

struct exp_rec_head {
	const uint8_t *trace_id, *span_id, *parent_span_id;
	uint64_t start_ns, end_ns;
	uint8_t kind, status, flags, n_attrs, n_links;
	struct ts_str name, status_message, trace_state;
	const uint8_t *attrs; /* n_attrs attributes, then n_links links */
};

struct exp_rec_link {
	const uint8_t *trace_id, *span_id;
	uint8_t flags, n_attrs; /* n_attrs attributes follow the link head */
};

static inline uint16_t exp_rec_u16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline uint64_t exp_rec_u64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

/* A str16 at p; returns what follows it. */
static inline const uint8_t *exp_rec_str16(const uint8_t *p, struct ts_str *s)
{
	s->len = exp_rec_u16(p);
	s->ptr = (const char *)p + 2;
	return p + 2 + s->len;
}

static inline void exp_rec_head(const uint8_t *rec, struct exp_rec_head *h)
{
	h->trace_id = rec + EXP_REC_TRACE_ID;
	h->span_id = rec + EXP_REC_SPAN_ID;
	h->parent_span_id = rec + EXP_REC_PARENT_ID;
	h->start_ns = exp_rec_u64(rec + EXP_REC_START);
	h->end_ns = exp_rec_u64(rec + EXP_REC_END);
	h->kind = rec[EXP_REC_KIND];
	h->status = rec[EXP_REC_STATUS];
	h->flags = rec[EXP_REC_FLAGS];
	h->n_attrs = rec[EXP_REC_N_ATTRS];
	h->n_links = rec[EXP_REC_N_LINKS];
	const uint8_t *p = exp_rec_str16(rec + EXP_REC_NAME, &h->name);
	p = exp_rec_str16(p, &h->status_message);
	h->attrs = exp_rec_str16(p, &h->trace_state);
}

/* One attribute at p into *a (pointing into the record); returns what
 * follows it. A STRARRAY's v.s is its blob: iterate it with exp_rec_str16. */
static inline const uint8_t *exp_rec_attr(const uint8_t *p, struct ts_attr *a)
{
	a->key.len = p[0];
	a->key.ptr = (const char *)p + 1;
	p += 1 + a->key.len;
	a->type = *p++;
	switch (a->type) {
	case TS_ATTR_INT:
		a->v.i = (int64_t)exp_rec_u64(p);
		return p + 8;
	case TS_ATTR_BOOL:
		a->v.b = *p != 0;
		return p + 1;
	case TS_ATTR_DOUBLE:
		memcpy(&a->v.d, p, sizeof a->v.d);
		return p + 8;
	default: /* TS_ATTR_STR, TS_ATTR_STRARRAY: the decoder admits no other type */
		return exp_rec_str16(p, &a->v.s);
	}
}

static inline const uint8_t *exp_rec_link(const uint8_t *p, struct exp_rec_link *l)
{
	l->trace_id = p;
	l->span_id = p + 16;
	l->flags = p[24];
	l->n_attrs = p[25];
	return p + 26;
}

#endif
