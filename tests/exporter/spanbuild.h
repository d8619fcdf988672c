/* spanbuild.h — spans, HELLO and SPANS frames for the exporter tests, built
 * with the real encoder from shim/frame.h (never hand-rolled bytes, except
 * where a test corrupts them on purpose). */
#ifndef TRACESHIM_TEST_SPANBUILD_H
#define TRACESHIM_TEST_SPANBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* A span with fixed, recognisable contents: trace id 0x11 * 16 bytes with the
 * last byte = seed, span id 0x22.. with last byte = seed, parent 0x33.. (or
 * zeros when root), start 1700000000000000000 + seed, end = start + 1000,
 * kind CLIENT, flags SAMPLED, and three attributes (str, int, bool). */
struct tb_span {
	struct ts_span_view v;
	uint8_t trace_id[16], span_id[8], parent[8];
};
void tb_span_init(struct tb_span *s, const char *name, uint8_t seed, int root);

/* Frames into buf (cap bytes); return the frame length (0 on overflow). */
size_t tb_hello_frame(uint8_t *buf, size_t cap, const char *service, uint32_t pid, uint32_t dropped);
size_t tb_spans_frame(uint8_t *buf, size_t cap, struct tb_span *spans, size_t n, uint32_t dropped);
/* Convenience: n spans named "<prefix><i>", seeds first_seed + i. */
size_t tb_named_spans_frame(uint8_t *buf, size_t cap, const char *prefix, size_t n,
			    uint8_t first_seed, uint32_t dropped);
size_t tb_status_req_frame(uint8_t *buf, size_t cap);

/* A TS_ATTR_STRARRAY value: the NULL-terminated items as a str16 blob in
 * out; returns the attribute (pointing into out). */
struct ts_attr tb_strarray(uint8_t *out, size_t cap, const char *key, const char *const *items);

/* A lone span record (what the exporter queues). */
size_t tb_span_record(uint8_t *buf, size_t cap, struct tb_span *s);

#endif
