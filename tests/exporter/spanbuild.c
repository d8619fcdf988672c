/* spanbuild.c — see spanbuild.h. */
#include "spanbuild.h"

#include <stdio.h>
#include <string.h>

static struct ts_str str(const char *s) { return (struct ts_str){s, (uint16_t)strlen(s)}; }

void tb_span_init(struct tb_span *s, const char *name, uint8_t seed, int root)
{
	memset(s, 0, sizeof *s);
	memset(s->trace_id, 0x11, 16);
	s->trace_id[15] = seed;
	memset(s->span_id, 0x22, 8);
	s->span_id[7] = seed;
	if (!root)
		memset(s->parent, 0x33, 8);
	s->v.trace_id = s->trace_id;
	s->v.span_id = s->span_id;
	s->v.parent_span_id = s->parent;
	s->v.start_ns = 1700000000000000000ull + seed;
	s->v.end_ns = s->v.start_ns + 1000;
	s->v.kind = TS_KIND_CLIENT;
	s->v.status = TS_STATUS_UNSET;
	s->v.flags = TS_SPAN_F_SAMPLED;
	s->v.name = str(name);
	s->v.n_attrs = 3;
	s->v.attrs[0] = (struct ts_attr){.key = str("http.request.method"), .type = TS_ATTR_STR,
					 .v.s = str("GET")};
	s->v.attrs[1] = (struct ts_attr){.key = str("server.port"), .type = TS_ATTR_INT, .v.i = 8080};
	s->v.attrs[2] = (struct ts_attr){.key = str("tb.ok"), .type = TS_ATTR_BOOL, .v.b = true};
}

size_t tb_hello_frame(uint8_t *buf, size_t cap, const char *service, uint32_t pid, uint32_t dropped)
{
	struct ts_attr attrs[2] = {
		{.key = str("service.name"), .type = TS_ATTR_STR, .v.s = str(service)},
		{.key = str("process.pid"), .type = TS_ATTR_INT, .v.i = pid},
	};
	struct ts_wbuf w;
	ts_wbuf_init(&w, buf, cap);
	ts_frame_begin(&w, TS_FRAME_HELLO, dropped);
	ts_hello_encode(&w, pid, 1, 1700000000000000000ull, attrs, 2);
	return ts_frame_finish(&w) ? w.len : 0;
}

size_t tb_spans_frame(uint8_t *buf, size_t cap, struct tb_span *spans, size_t n, uint32_t dropped)
{
	struct ts_wbuf w;
	ts_wbuf_init(&w, buf, cap);
	ts_frame_begin(&w, TS_FRAME_SPANS, dropped);
	ts_put_u16(&w, (uint16_t)n);
	for (size_t i = 0; i < n; i++)
		ts_span_encode(&w, &spans[i].v);
	return ts_frame_finish(&w) ? w.len : 0;
}

size_t tb_named_spans_frame(uint8_t *buf, size_t cap, const char *prefix, size_t n,
			    uint8_t first_seed, uint32_t dropped)
{
	static struct tb_span spans[256];
	static char names[256][32];
	if (n > 256)
		return 0;
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof names[i], "%s%zu", prefix, i);
		tb_span_init(&spans[i], names[i], (uint8_t)(first_seed + i), 0);
	}
	return tb_spans_frame(buf, cap, spans, n, dropped);
}

size_t tb_status_req_frame(uint8_t *buf, size_t cap)
{
	struct ts_wbuf w;
	ts_wbuf_init(&w, buf, cap);
	ts_frame_begin(&w, TS_FRAME_STATUS_REQ, 0);
	return ts_frame_finish(&w) ? w.len : 0;
}

size_t tb_span_record(uint8_t *buf, size_t cap, struct tb_span *s)
{
	struct ts_wbuf w;
	ts_wbuf_init(&w, buf, cap);
	ts_span_encode(&w, &s->v);
	return w.overflow ? 0 : w.len;
}

struct ts_attr tb_strarray(uint8_t *out, size_t cap, const char *key, const char *const *items)
{
	struct ts_wbuf w;
	ts_wbuf_init(&w, out, cap);
	for (; *items; items++)
		ts_put_str16(&w, *items, strlen(*items));
	return (struct ts_attr){.key = str(key), .type = TS_ATTR_STRARRAY,
				.v.s = {(const char *)out, (uint16_t)w.len}};
}
