/* json.h — OTLP/JSON encoding of a batch, for the file sink.
 * Rules (OTLP spec, "JSON Protobuf Encoding"): camelCase field names, trace
 * and span ids as lowercase hex, enums as integers, 64-bit integers as
 * decimal strings. Output is always valid JSON whatever bytes the spans
 * hold: control characters are escaped, invalid UTF-8 becomes U+FFFD. */
#ifndef TRACESHIM_EXP_JSON_H
#define TRACESHIM_EXP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "frame.h"
#include "sbuf.h"

/* Appends one ExportTraceServiceRequest (no newline); false when out of memory. */
bool exp_json_encode(struct sbuf *out, const struct exp_batch *b);

/* The pieces, for unit tests. A span is written from its queued record,
 * which must have passed ts_span_decode (see record.h). */
void exp_json_string(struct sbuf *out, const char *p, size_t n);
void exp_json_attr(struct sbuf *out, const struct ts_attr *a);
void exp_json_span(struct sbuf *out, const struct exp_span *s);

#endif
