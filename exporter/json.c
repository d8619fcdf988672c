/* json.c — see json.h. */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "utf8.h"

static bool plain_ascii(uint8_t c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

static void put_escape(struct sbuf *out, uint8_t c)
{
	static const char short_esc[] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
					 ['"'] = '"', ['\\'] = '\\'};
	if (c < sizeof short_esc && short_esc[c]) {
		char e[2] = {'\\', short_esc[c]};
		sbuf_put(out, e, 2);
	} else {
		sbuf_printf(out, "\\u%04x", c);
	}
}

void exp_json_string(struct sbuf *out, const char *p, size_t n)
{
	const uint8_t *u = (const uint8_t *)p;
	sbuf_putc(out, '"');
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && plain_ascii(u[j]))
			j++;
		sbuf_put(out, p + i, j - i); /* the common case: one copy per run */
		if ((i = j) == n)
			break;
		if (u[i] < 0x80) {
			put_escape(out, u[i++]);
			continue;
		}
		uint32_t cp;
		size_t k = exp_utf8_next(u + i, n - i, &cp);
		if (cp == EXP_UTF8_BAD)
			sbuf_put(out, "\xEF\xBF\xBD", 3);
		else
			sbuf_put(out, p + i, k);
		i += k;
	}
	sbuf_putc(out, '"');
}

static void put_tstr(struct sbuf *out, struct ts_str s) { exp_json_string(out, s.ptr, s.len); }

void exp_json_hex(struct sbuf *out, const uint8_t *p, size_t n)
{
	sbuf_putc(out, '"');
	sbuf_hex(out, p, n);
	sbuf_putc(out, '"');
}

/* proto3 JSON writes non-finite doubles as the strings NaN/Infinity/-Infinity. */
static void put_double(struct sbuf *out, double d)
{
	if (isnan(d))
		sbuf_puts(out, "\"NaN\"");
	else if (isinf(d))
		sbuf_puts(out, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else
		sbuf_printf(out, "%.17g", d);
}

/* {"values":[{"stringValue":...},...]}; the blob was validated on receipt. */
static void put_string_array(struct sbuf *out, struct ts_str blob)
{
	struct ts_rbuf r;
	struct ts_str item;
	ts_rbuf_init(&r, blob.ptr, blob.len);
	sbuf_puts(out, "{\"values\":[");
	for (bool first = true; ts_strarray_next(&r, &item); first = false) {
		sbuf_puts(out, first ? "{\"stringValue\":" : ",{\"stringValue\":");
		put_tstr(out, item);
		sbuf_putc(out, '}');
	}
	sbuf_puts(out, "]}");
}

void exp_json_attr(struct sbuf *out, const struct ts_attr *a)
{
	sbuf_puts(out, "{\"key\":");
	put_tstr(out, a->key);
	sbuf_puts(out, ",\"value\":{");
	switch (a->type) {
	case TS_ATTR_STR:
		sbuf_puts(out, "\"stringValue\":");
		put_tstr(out, a->v.s);
		break;
	case TS_ATTR_STRARRAY:
		sbuf_puts(out, "\"arrayValue\":");
		put_string_array(out, a->v.s);
		break;
	case TS_ATTR_INT:
		sbuf_puts(out, "\"intValue\":\"");
		sbuf_i64(out, a->v.i);
		sbuf_putc(out, '"');
		break;
	case TS_ATTR_BOOL:
		sbuf_puts(out, a->v.b ? "\"boolValue\":true" : "\"boolValue\":false");
		break;
	case TS_ATTR_DOUBLE:
		sbuf_puts(out, "\"doubleValue\":");
		put_double(out, a->v.d);
		break;
	default: /* the decoder admits no other type; an empty AnyValue is still valid */
		break;
	}
	sbuf_puts(out, "}}");
}

/* "attributes":[...] after a comma, or first in its object when !comma.
 * Omitted when empty, like protobuf's own JSON printer does. */
static void put_attrs(struct sbuf *out, const struct ts_attr *attrs, size_t n, bool comma)
{
	if (!n)
		return;
	sbuf_puts(out, comma ? ",\"attributes\":[" : "\"attributes\":[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			sbuf_putc(out, ',');
		exp_json_attr(out, &attrs[i]);
	}
	sbuf_putc(out, ']');
}

static void put_links(struct sbuf *out, const struct ts_span_view *s)
{
	if (!s->n_links)
		return;
	sbuf_puts(out, ",\"links\":[");
	for (uint8_t i = 0; i < s->n_links; i++) {
		sbuf_puts(out, i ? ",{\"traceId\":" : "{\"traceId\":");
		exp_json_hex(out, s->links[i].trace_id, 16);
		sbuf_puts(out, ",\"spanId\":");
		exp_json_hex(out, s->links[i].span_id, 8);
		put_attrs(out, s->links[i].attrs, s->links[i].n_attrs, true);
		sbuf_puts(out, ",\"flags\":");
		sbuf_u64(out, exp_otlp_link_flags(s->links[i].flags));
		sbuf_putc(out, '}');
	}
	sbuf_putc(out, ']');
}

static void put_status(struct sbuf *out, const struct ts_span_view *s)
{
	if (s->status == TS_STATUS_UNSET && s->status_message.len == 0)
		return;
	sbuf_puts(out, ",\"status\":{");
	if (s->status_message.len) {
		sbuf_puts(out, "\"message\":");
		put_tstr(out, s->status_message);
		sbuf_putc(out, ',');
	}
	sbuf_puts(out, "\"code\":");
	sbuf_u64(out, s->status);
	sbuf_putc(out, '}');
}

void exp_json_span(struct sbuf *out, const struct ts_span_view *s)
{
	sbuf_puts(out, "{\"traceId\":");
	exp_json_hex(out, s->trace_id, 16);
	sbuf_puts(out, ",\"spanId\":");
	exp_json_hex(out, s->span_id, 8);
	if (s->trace_state.len) {
		sbuf_puts(out, ",\"traceState\":");
		put_tstr(out, s->trace_state);
	}
	if (!exp_is_zero(s->parent_span_id, 8)) { /* roots: omitted, not "" */
		sbuf_puts(out, ",\"parentSpanId\":");
		exp_json_hex(out, s->parent_span_id, 8);
	}
	sbuf_puts(out, ",\"flags\":");
	sbuf_u64(out, exp_otlp_span_flags(s->flags));
	sbuf_puts(out, ",\"name\":");
	put_tstr(out, s->name);
	sbuf_puts(out, ",\"kind\":");
	sbuf_u64(out, s->kind);
	sbuf_puts(out, ",\"startTimeUnixNano\":\"");
	sbuf_u64(out, s->start_ns);
	sbuf_puts(out, "\",\"endTimeUnixNano\":\"");
	sbuf_u64(out, s->end_ns);
	sbuf_putc(out, '"');
	put_attrs(out, s->attrs, s->n_attrs, true);
	put_links(out, s);
	put_status(out, s);
	sbuf_putc(out, '}');
}

static void put_group_spans(struct sbuf *out, const struct exp_batch *b, const struct exp_group *g)
{
	struct ts_span_view v;
	bool first = true;
	for (size_t i = g->first; i < g->first + g->n; i++) {
		struct ts_rbuf r;
		ts_rbuf_init(&r, b->spans[i]->rec, b->spans[i]->len);
		if (!ts_span_decode(&r, &v)) { /* validated on receipt: cannot happen */
			log_error("queued span record no longer decodes; skipped");
			continue;
		}
		if (!first)
			sbuf_putc(out, ',');
		first = false;
		exp_json_span(out, &v);
	}
}

static void put_resource_spans(struct sbuf *out, const struct exp_batch *b, const struct exp_group *g)
{
	sbuf_puts(out, "{\"resource\":{");
	put_attrs(out, g->res->attrs, g->res->n_attrs, false);
	sbuf_puts(out, "},\"scopeSpans\":[{\"scope\":{\"name\":\"" EXP_SCOPE_NAME
		       "\",\"version\":");
	exp_json_string(out, TRACESHIM_VERSION, strlen(TRACESHIM_VERSION));
	sbuf_puts(out, "},\"spans\":[");
	put_group_spans(out, b, g);
	sbuf_puts(out, "]}]}");
}

bool exp_json_encode(struct sbuf *out, const struct exp_batch *b)
{
	sbuf_puts(out, "{\"resourceSpans\":[");
	for (size_t g = 0; g < b->n_groups; g++) {
		if (g)
			sbuf_putc(out, ',');
		put_resource_spans(out, b, &b->groups[g]);
	}
	sbuf_puts(out, "]}");
	return !out->oom;
}
