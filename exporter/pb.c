/* pb.c — see pb.h. The protobuf-c message tree of one request lives in an
 * arena freed in one go after packing: thousands of small structs per batch,
 * no per-struct free to get wrong. */
#include "pb.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "traceshim_otlp.pb-c.h"
#include "utf8.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest PbRequest;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans PbResourceSpans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans PbScopeSpans;
typedef Opentelemetry__Proto__Trace__V1__Span PbSpan;
typedef Opentelemetry__Proto__Trace__V1__Span__Link PbLink;
typedef Opentelemetry__Proto__Trace__V1__Status PbStatus;
typedef Opentelemetry__Proto__Resource__V1__Resource PbResource;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope PbScope;
typedef Opentelemetry__Proto__Common__V1__KeyValue PbKeyValue;
typedef Opentelemetry__Proto__Common__V1__AnyValue PbAnyValue;
typedef Opentelemetry__Proto__Common__V1__ArrayValue PbArrayValue;

/* ---- arena -------------------------------------------------------------- */

struct chunk {
	struct chunk *next;
	size_t cap, used;
	alignas(max_align_t) unsigned char data[];
};

struct arena {
	struct chunk *head;
	bool oom;
};

static void *arena_alloc(struct arena *a, size_t n)
{
	n = (n + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
	struct chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		if (!(c = malloc(sizeof *c + cap))) {
			a->oom = true;
			return NULL;
		}
		*c = (struct chunk){.next = a->head, .cap = cap};
		a->head = c;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
}

static void arena_free(struct arena *a)
{
	while (a->head) {
		struct chunk *next = a->head->next;
		free(a->head);
		a->head = next;
	}
}

#define NEW(a, type) ((type *)arena_alloc((a), sizeof(type)))
#define NEW_ARRAY(a, type, n) ((type *)arena_alloc((a), sizeof(type) * ((n) ? (n) : 1)))

/* ---- fields ------------------------------------------------------------- */

/* NUL-terminated, valid UTF-8 copy (see pb.h for NUL). */
static char *str(struct arena *a, const char *p, size_t n)
{
	static char empty[1];
	char *out = arena_alloc(a, 3 * n + 1), *w = out;
	if (!out)
		return empty; /* a.oom is set: the request is never packed */
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t k = exp_utf8_next((const uint8_t *)p + i, n - i, &cp);
		if (cp == EXP_UTF8_BAD || cp == 0) {
			memcpy(w, "\xEF\xBF\xBD", 3);
			w += 3;
		} else {
			memcpy(w, p + i, k);
			w += k;
		}
		i += k;
	}
	*w = '\0';
	return out;
}

static char *tstr(struct arena *a, struct ts_str s) { return str(a, s.ptr, s.len); }

static ProtobufCBinaryData bytes(struct arena *a, const uint8_t *p, size_t n)
{
	uint8_t *copy = arena_alloc(a, n);
	if (!copy)
		return (ProtobufCBinaryData){0, NULL};
	memcpy(copy, p, n);
	return (ProtobufCBinaryData){n, copy};
}

static size_t strarray_count(struct ts_str blob)
{
	struct ts_rbuf r;
	struct ts_str item;
	size_t n = 0;
	ts_rbuf_init(&r, blob.ptr, blob.len);
	while (ts_strarray_next(&r, &item))
		n++;
	return n;
}

/* ArrayValue of string AnyValues; the blob was validated on receipt. */
static PbArrayValue *string_array(struct arena *a, struct ts_str blob)
{
	size_t n = strarray_count(blob);
	PbArrayValue *arr = NEW(a, PbArrayValue);
	PbAnyValue **ptrs = NEW_ARRAY(a, PbAnyValue *, n);
	PbAnyValue *vals = NEW_ARRAY(a, PbAnyValue, n);
	if (!arr || !ptrs || !vals)
		return NULL;
	*arr = (PbArrayValue)OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
	arr->values = ptrs;
	struct ts_rbuf r;
	struct ts_str item;
	ts_rbuf_init(&r, blob.ptr, blob.len);
	while (arr->n_values < n && ts_strarray_next(&r, &item)) {
		PbAnyValue *v = &vals[arr->n_values];
		*v = (PbAnyValue)OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
		v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
		v->string_value = tstr(a, item);
		ptrs[arr->n_values++] = v;
	}
	return arr;
}

static void any_value(struct arena *a, PbAnyValue *v, const struct ts_attr *attr)
{
	*v = (PbAnyValue)OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	switch (attr->type) {
	case TS_ATTR_STR:
		v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
		v->string_value = tstr(a, attr->v.s);
		break;
	case TS_ATTR_STRARRAY:
		v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
		v->array_value = string_array(a, attr->v.s);
		break;
	case TS_ATTR_INT:
		v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
		v->int_value = attr->v.i;
		break;
	case TS_ATTR_BOOL:
		v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
		v->bool_value = attr->v.b;
		break;
	case TS_ATTR_DOUBLE:
		v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
		v->double_value = attr->v.d;
		break;
	default:
		break;
	}
}

static PbKeyValue **attrs(struct arena *a, const struct ts_attr *in, size_t n)
{
	PbKeyValue **out = NEW_ARRAY(a, PbKeyValue *, n);
	PbKeyValue *kv = NEW_ARRAY(a, PbKeyValue, n);
	PbAnyValue *val = NEW_ARRAY(a, PbAnyValue, n);
	if (!out || !kv || !val)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		kv[i] = (PbKeyValue)OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
		kv[i].key = tstr(a, in[i].key);
		any_value(a, &val[i], &in[i]);
		kv[i].value = &val[i];
		out[i] = &kv[i];
	}
	return out;
}

/* ---- span --------------------------------------------------------------- */

static PbLink **links(struct arena *a, const struct ts_span_view *s)
{
	PbLink **out = NEW_ARRAY(a, PbLink *, s->n_links);
	PbLink *l = NEW_ARRAY(a, PbLink, s->n_links);
	if (!out || !l)
		return NULL;
	for (uint8_t i = 0; i < s->n_links; i++) {
		l[i] = (PbLink)OPENTELEMETRY__PROTO__TRACE__V1__SPAN__LINK__INIT;
		l[i].trace_id = bytes(a, s->links[i].trace_id, 16);
		l[i].span_id = bytes(a, s->links[i].span_id, 8);
		l[i].n_attributes = s->links[i].n_attrs;
		l[i].attributes = attrs(a, s->links[i].attrs, s->links[i].n_attrs);
		l[i].flags = exp_otlp_link_flags(s->links[i].flags);
		out[i] = &l[i];
	}
	return out;
}

static PbStatus *status(struct arena *a, const struct ts_span_view *s)
{
	if (s->status == TS_STATUS_UNSET && s->status_message.len == 0)
		return NULL; /* absent status means UNSET */
	PbStatus *st = NEW(a, PbStatus);
	if (!st)
		return NULL;
	*st = (PbStatus)OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
	st->code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)s->status;
	st->message = tstr(a, s->status_message);
	return st;
}

static void span(struct arena *a, PbSpan *p, const struct ts_span_view *s)
{
	*p = (PbSpan)OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
	p->trace_id = bytes(a, s->trace_id, 16);
	p->span_id = bytes(a, s->span_id, 8);
	if (!exp_is_zero(s->parent_span_id, 8)) /* roots: empty, as OTLP requires */
		p->parent_span_id = bytes(a, s->parent_span_id, 8);
	p->trace_state = tstr(a, s->trace_state);
	p->flags = exp_otlp_span_flags(s->flags);
	p->name = tstr(a, s->name);
	p->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)s->kind;
	p->start_time_unix_nano = s->start_ns;
	p->end_time_unix_nano = s->end_ns;
	p->n_attributes = s->n_attrs;
	p->attributes = attrs(a, s->attrs, s->n_attrs);
	p->n_links = s->n_links;
	p->links = links(a, s);
	p->status = status(a, s);
}

/* ---- envelope ----------------------------------------------------------- */

static PbScopeSpans *scope_spans(struct arena *a, const struct exp_batch *b, const struct exp_group *g)
{
	PbScopeSpans *ss = NEW(a, PbScopeSpans);
	PbScope *scope = NEW(a, PbScope);
	PbSpan **ptrs = NEW_ARRAY(a, PbSpan *, g->n);
	PbSpan *spans = NEW_ARRAY(a, PbSpan, g->n);
	struct ts_span_view *v = NEW(a, struct ts_span_view);
	if (!ss || !scope || !ptrs || !spans || !v)
		return NULL;
	*scope = (PbScope)OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
	scope->name = str(a, EXP_SCOPE_NAME, strlen(EXP_SCOPE_NAME));
	scope->version = str(a, TRACESHIM_VERSION, strlen(TRACESHIM_VERSION));
	*ss = (PbScopeSpans)OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
	ss->scope = scope;
	ss->spans = ptrs;
	for (size_t i = 0; i < g->n; i++) {
		const struct exp_span *es = b->spans[g->first + i];
		struct ts_rbuf r;
		ts_rbuf_init(&r, es->rec, es->len);
		if (!ts_span_decode(&r, v)) { /* validated on receipt: cannot happen */
			log_error("queued span record no longer decodes; skipped");
			continue;
		}
		span(a, &spans[ss->n_spans], v);
		ptrs[ss->n_spans] = &spans[ss->n_spans];
		ss->n_spans++;
	}
	return ss;
}

static PbResourceSpans *resource_spans(struct arena *a, const struct exp_batch *b,
				       const struct exp_group *g)
{
	PbResourceSpans *rs = NEW(a, PbResourceSpans);
	PbResource *res = NEW(a, PbResource);
	PbScopeSpans **ssp = NEW(a, PbScopeSpans *);
	if (!rs || !res || !ssp)
		return NULL;
	*res = (PbResource)OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
	res->n_attributes = g->res->n_attrs;
	res->attributes = attrs(a, g->res->attrs, g->res->n_attrs);
	*rs = (PbResourceSpans)OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
	rs->resource = res;
	rs->n_scope_spans = 1;
	rs->scope_spans = ssp;
	ssp[0] = scope_spans(a, b, g);
	return rs;
}

bool exp_pb_encode(struct sbuf *out, const struct exp_batch *b)
{
	struct arena a = {0};
	PbRequest req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	req.resource_spans = NEW_ARRAY(&a, PbResourceSpans *, b->n_groups);
	if (req.resource_spans) {
		req.n_resource_spans = b->n_groups;
		for (size_t g = 0; g < b->n_groups; g++)
			req.resource_spans[g] = resource_spans(&a, b, &b->groups[g]);
	}
	/* Any failed allocation left a NULL in the tree: never pack that. */
	bool ok = !a.oom;
	if (ok) {
		size_t n = protobuf_c_message_get_packed_size(&req.base);
		ok = sbuf_reserve(out, n);
		if (ok)
			out->len += protobuf_c_message_pack(&req.base, (uint8_t *)out->p + out->len);
	}
	arena_free(&a);
	return ok;
}
