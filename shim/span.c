/* span.c — recording spans and handing their encoded records to the transport. */
#include <errno.h>

#include "proto/w3c.h"
#include "shim.h"

void ts_span_start_at(struct ts_span *s, const char *name, uint8_t kind, const struct ts_ctx *parent,
		      uint64_t start_ns)
{
	ts_process_tick(start_ns); /* may split a long job's process span first */
	if (!parent)
		parent = ts_ctx_current();
	s->kind = kind;
	s->status = TS_STATUS_UNSET;
	s->n_attrs = 0;
	s->n_links = 0;
	s->attr_len = 0;
	s->link_len = 0;
	s->status_msg[0] = 0;
	s->start_ns = start_ns;
	s->end_ns = 0;
	size_t n = strlen(name);
	if (n > sizeof s->name)
		n = sizeof s->name;
	memcpy(s->name, name, n);
	s->name_len = (uint8_t)n;
	ts_new_span_id(s->span_id);
	if (parent->valid) {
		memcpy(s->trace_id, parent->trace_id, 16);
		memcpy(s->parent_span_id, parent->span_id, 8);
		s->has_parent = true;
		s->flags = ts_sample(s->trace_id, parent) ? TS_SPAN_F_SAMPLED : 0;
		if (parent->remote)
			s->flags |= TS_SPAN_F_PARENT_REMOTE;
	} else {
		ts_new_trace_id(s->trace_id);
		memset(s->parent_span_id, 0, 8);
		s->has_parent = false;
		s->flags = ts_sample(s->trace_id, NULL) ? TS_SPAN_F_SAMPLED : 0;
	}
	s->recording = (s->flags & TS_SPAN_F_SAMPLED) != 0;
}

void ts_span_start(struct ts_span *s, const char *name, uint8_t kind, const struct ts_ctx *parent)
{
	ts_span_start_at(s, name, kind, parent, ts_now_ns());
}

/* Keys given as C strings are cut to TS_KEY_MAX bytes of whole UTF-8, as
 * ts_put_attr does; the ts_span_put_* appenders (shim.h) expect that. */
static size_t key_len(const char *key) { return ts_utf8_cut(key, strlen(key), TS_KEY_MAX); }

void ts_span_attr_strn(struct ts_span *s, const char *key, const char *val, size_t len)
{
	ts_span_put_str(s, key, key_len(key), val, len);
}

void ts_span_attr_str(struct ts_span *s, const char *key, const char *val)
{
	ts_span_attr_strn(s, key, val, val ? strlen(val) : 0);
}

void ts_span_attr_int(struct ts_span *s, const char *key, int64_t v) { ts_span_put_int(s, key, key_len(key), v); }

void ts_span_attr_bool(struct ts_span *s, const char *key, bool v)
{
	struct ts_attr a = {.key = {key, (uint16_t)strlen(key)}, .type = TS_ATTR_BOOL, .v.b = v};
	struct ts_wbuf w;
	if (!ts_span_attrs_open(s, &w))
		return;
	ts_put_attr(&w, &a);
	ts_span_attrs_close(s, &w, 1);
}

void ts_span_error(struct ts_span *s, const char *error_type, const char *message)
{
	s->status = TS_STATUS_ERROR;
	if (error_type)
		ts_span_attr_str(s, "error.type", error_type);
	if (message) {
		size_t n = strlen(message);
		if (n >= sizeof s->status_msg)
			n = sizeof s->status_msg - 1;
		memcpy(s->status_msg, message, n);
		s->status_msg[n] = 0;
	}
}

void ts_span_link(struct ts_span *s, const uint8_t trace_id[16], const uint8_t span_id[8])
{
	if (s->n_links >= 2)
		return;
	uint8_t *p = s->link_bytes + s->link_len;
	memcpy(p, trace_id, 16);
	memcpy(p + 16, span_id, 8);
	p[24] = 1; /* flags: sampled */
	p[25] = 0; /* no link attributes */
	s->link_len = (uint16_t)(s->link_len + 26);
	s->n_links++;
}

void ts_span_ctx(const struct ts_span *s, struct ts_ctx *out)
{
	memcpy(out->trace_id, s->trace_id, 16);
	memcpy(out->span_id, s->span_id, 8);
	out->flags = (s->flags & TS_SPAN_F_SAMPLED) ? 1 : 0;
	out->valid = true;
	out->remote = false;
	out->has_received_parent = false;
}

/* Baggage of the current context, copied onto the span as baggage.<key>
 * attributes (decoded values), as many as fit. */
static void baggage_attrs(struct ts_span *s)
{
	const struct ts_extras *x = ts_extras_current();
	if (!x || !x->baggage_len)
		return;
	struct w3c_baggage_iter it;
	struct w3c_baggage_member m;
	w3c_baggage_iter_init(&it, x->baggage, x->baggage_len);
	while (w3c_baggage_next(&it, &m) && s->n_attrs < TS_MAX_ATTRS - 1) {
		char key[TS_KEY_MAX], val[512];
		if (m.key_len + 8 >= sizeof key)
			continue;
		memcpy(key, "baggage.", 8);
		memcpy(key + 8, m.key, m.key_len);
		key[8 + m.key_len] = 0;
		size_t n = w3c_baggage_decode_value(&m, val, sizeof val);
		ts_span_attr_strn(s, key, val, n < sizeof val ? n : sizeof val - 1);
	}
}

/* A span sampled out at the head still counts in the exporter's RED
 * metrics (docs/EXPORTER.md, Metrics): for the kinds those metrics are made
 * of, a record with the head only — ids, times, kind, status, name; no
 * attributes (a sampled-out span records none), flagged METRICS_ONLY so the
 * exporter never exports it. INTERNAL spans (process, connect, DNS) are not
 * shipped. The flag also marks it ended: a second end sends nothing. */
static void metrics_only_record(struct ts_span *s, uint64_t end_ns)
{
	if (s->kind < TS_KIND_SERVER || s->kind > TS_KIND_CONSUMER ||
	    (s->flags & (TS_SPAN_F_SAMPLED | TS_SPAN_F_METRICS_ONLY)))
		return;
	s->flags |= TS_SPAN_F_METRICS_ONLY;
	int saved = errno;
	size_t name_n = ts_utf8_cut(s->name, s->name_len, TS_STR_MAX);
	size_t len = 2 + 16 + 8 + 8 + 8 + 8 + 5 + 2 + name_n + 2 + 2;
	uint8_t *rec = ts_transport_reserve(len);
	if (rec) {
		struct ts_wbuf w;
		ts_wbuf_init(&w, rec, len);
		ts_put_u16(&w, (uint16_t)len);
		ts_put_bytes(&w, s->trace_id, 16);
		ts_put_bytes(&w, s->span_id, 8);
		ts_put_bytes(&w, s->parent_span_id, 8);
		ts_put_u64(&w, s->start_ns);
		ts_put_u64(&w, end_ns < s->start_ns ? s->start_ns : end_ns);
		ts_put_bytes(&w, (uint8_t[5]){s->kind, s->status, s->flags, 0, 0}, 5);
		ts_put_u16(&w, (uint16_t)name_n);
		ts_put_bytes(&w, s->name, name_n);
		ts_put_u16(&w, 0); /* status message */
		ts_put_u16(&w, 0); /* trace state */
		ts_transport_commit(len);
	}
	errno = saved;
}

void ts_span_end_at(struct ts_span *s, uint64_t end_ns)
{
	if (!s->recording) { /* sampled out: it still propagated its context */
		metrics_only_record(s, end_ns);
		return;
	}
	int saved = errno;
	if (TS_UNLIKELY(ts_cfg.stacktraces == TS_STACK_ALL))
		ts_span_stack(s); /* no-op when the span has one already */
	s->end_ns = end_ns < s->start_ns ? s->start_ns : end_ns;
	ts_span_put_int(s, TS_KEY("thread.id"), ts_thread_id());
	baggage_attrs(s);
	const struct ts_extras *x = ts_extras_current(); /* the context's tracestate */
	const char *tstate = x ? x->tracestate : NULL;
	size_t name_n = ts_utf8_cut(s->name, s->name_len, TS_STR_MAX);
	size_t msg_n = ts_utf8_cut(s->status_msg, strlen(s->status_msg), TS_STR_MAX);
	size_t ts_n = tstate ? ts_utf8_cut(tstate, x->tracestate_len, TS_STR_MAX) : 0;
	size_t len = 2 + 16 + 8 + 8 + 8 + 8 + 5 + 2 + name_n + 2 + msg_n + 2 + ts_n + s->attr_len + s->link_len;
	uint8_t *rec;
	/* Sized first, then written where it goes (frame.h's record format): no
	 * buffer to copy from. The strings are cut already: put as they are. */
	if ((rec = ts_transport_reserve(len)) != NULL) { /* NULL: dropped, and counted */
		struct ts_wbuf w;
		ts_wbuf_init(&w, rec, len);
		ts_put_u16(&w, (uint16_t)len);
		ts_put_bytes(&w, s->trace_id, 16);
		ts_put_bytes(&w, s->span_id, 8);
		ts_put_bytes(&w, s->parent_span_id, 8);
		ts_put_u64(&w, s->start_ns);
		ts_put_u64(&w, s->end_ns);
		ts_put_bytes(&w, (uint8_t[5]){s->kind, s->status, s->flags, s->n_attrs, s->n_links}, 5);
		ts_put_u16(&w, (uint16_t)name_n);
		ts_put_bytes(&w, s->name, name_n);
		ts_put_u16(&w, (uint16_t)msg_n);
		ts_put_bytes(&w, s->status_msg, msg_n);
		ts_put_u16(&w, (uint16_t)ts_n);
		ts_put_bytes(&w, tstate, ts_n);
		ts_put_bytes(&w, s->attrs, s->attr_len);
		ts_put_bytes(&w, s->link_bytes, s->link_len);
		ts_transport_commit(len);
	}
	s->recording = false; /* ending twice is a no-op */
	errno = saved;
}

void ts_span_end(struct ts_span *s) { ts_span_end_at(s, ts_now_ns()); }
