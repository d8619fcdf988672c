/* tail.h — tail sampling (TRACESHIM_TAIL_SAMPLING=1): spans are held per
 * trace id until TRACESHIM_TAIL_WAIT_MS after the trace's first span came in,
 * then the whole trace is kept if any of its spans has status ERROR or lasted
 * at least TRACESHIM_TAIL_SLOW_MS, and otherwise kept only if its trace id
 * falls in TRACESHIM_TAIL_RATIO (the same test on the trace id's low 8 bytes
 * as the shim's traceidratio sampler, so the choice is deterministic and
 * agrees with head sampling at the same ratio).
 *
 * Decisions are remembered (at most EXP_TAIL_DECIDED_MAX, for at least
 * EXP_TAIL_DECIDED_MIN_MS or 10 waits): a span of a decided trace that comes
 * late follows its trace's decision. Spans held for undecided traces are
 * bounded (TRACESHIM_TAIL_MAX_SPANS, TRACESHIM_TAIL_MAX_BYTES): over either
 * bound the oldest pending traces are decided early (tail_decided_early).
 * Dropped spans are counted in dropped_sampled_out.
 *
 * Used by the export thread only: no locking. Time is passed in (ms,
 * CLOCK_MONOTONIC) so tests can drive it. */
#ifndef TRACESHIM_EXP_TAIL_H
#define TRACESHIM_EXP_TAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"

#define EXP_TAIL_DECIDED_MAX 65536u
#define EXP_TAIL_DECIDED_MIN_MS 60000u

struct exp_tail_config {
	uint32_t wait_ms, slow_ms;
	double ratio;
	uint32_t max_spans;
	size_t max_bytes;
};

/* A list of spans being collected for export. */
struct exp_span_list {
	struct exp_span *head, **tail;
	size_t n;
};

static inline void exp_span_list_init(struct exp_span_list *l)
{
	l->head = NULL;
	l->tail = &l->head;
	l->n = 0;
}

struct exp_tail;

struct exp_tail *exp_tail_new(const struct exp_tail_config *c);
/* Frees the spans still pending too. */
void exp_tail_free(struct exp_tail *t);

/* Takes ownership of `list`. Spans of decided traces go to `out` (kept) or
 * are freed (dropped); the others are held. Then enforces the bounds. */
void exp_tail_add(struct exp_tail *t, struct exp_span *list, uint64_t now_ms, struct exp_span_list *out);

/* Decides the pending traces whose wait is over (every one when `all`, at
 * shutdown) and appends the kept spans to `out`, trace by trace. */
void exp_tail_release(struct exp_tail *t, uint64_t now_ms, bool all, struct exp_span_list *out);

/* The decision rule on a trace id alone (exposed for tests). */
bool exp_tail_ratio_keeps(const uint8_t trace_id[16], double ratio);

#endif
