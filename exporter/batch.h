/* batch.h — spans taken from the queue, grouped by resource: the shape of
 * one ExportTraceServiceRequest (one ResourceSpans per group, each with one
 * ScopeSpans "traceshim"). Both encoders read it; neither changes it. */
#ifndef TRACESHIM_EXP_BATCH_H
#define TRACESHIM_EXP_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "queue.h"

#define EXP_SCOPE_NAME "traceshim"

struct exp_group {
	struct exp_resource *res;
	size_t first, n; /* spans[first .. first+n) */
};

struct exp_batch {
	struct exp_span *list; /* owned */
	struct exp_span **spans; /* grouped order, arrival order within a group */
	size_t n;
	struct exp_group *groups;
	size_t n_groups;
};

/* Takes ownership of the n spans of `list`. -1 when out of memory (the list
 * is then still owned by the batch: call exp_batch_free). */
int exp_batch_build(struct exp_batch *b, struct exp_span *list, size_t n);
void exp_batch_free(struct exp_batch *b);

/* OTLP Span.flags (fixed32): low byte = W3C trace flags (bit 0 sampled),
 * 0x100 SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK (we always know), 0x200
 * SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK when the parent came from another process. */
static inline uint32_t exp_otlp_span_flags(uint8_t ts_flags)
{
	return ((ts_flags & TS_SPAN_F_SAMPLED) ? 0x01u : 0u) | 0x100u |
	       ((ts_flags & TS_SPAN_F_PARENT_REMOTE) ? 0x200u : 0u);
}

/* Link flags: only the sampled bit is defined for a link's context in the
 * frame format; whether the linked context was remote is not known, so the
 * HAS_IS_REMOTE bit stays clear. */
static inline uint32_t exp_otlp_link_flags(uint8_t ts_flags)
{
	return (ts_flags & TS_SPAN_F_SAMPLED) ? 0x01u : 0u;
}

static inline bool exp_is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

#endif
