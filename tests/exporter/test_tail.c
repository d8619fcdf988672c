/* test_tail.c — the tail sampler, driven with a fake clock: error and slow
 * traces kept, the ratio decided by the trace id alone, the wait, late spans
 * following their trace's decision, the bounds deciding early, counters. */
#include <criterion/criterion.h>
#include <string.h>

#include "spanbuild.h"
#include "stats.h"
#include "tail.h"

static struct exp_resource *res;
static struct exp_tail *t;
static struct exp_span_list out;

static void setup(void)
{
	res = exp_resource_unknown();
	memset(&exp_stats, 0, sizeof exp_stats);
	exp_span_list_init(&out);
}

static void teardown(void)
{
	exp_span_free_list(out.head);
	exp_tail_free(t);
	t = NULL;
	exp_resource_unref(res);
}

TestSuite(tail, .init = setup, .fini = teardown);

static struct exp_tail *make(uint32_t wait, uint32_t slow, double ratio, uint32_t max_spans)
{
	struct exp_tail_config c = {.wait_ms = wait, .slow_ms = slow, .ratio = ratio, .max_spans = max_spans,
				    .max_bytes = 1 << 30};
	struct exp_tail *x = exp_tail_new(&c);
	cr_assert_not_null(x);
	return x;
}

/* A span of trace `tid` (all 16 bytes = tid, except byte 8 = hi so the ratio
 * test can be steered), lasting dur_ms, with a status. */
static struct exp_span *span(uint8_t tid, uint8_t hi, uint8_t status, uint64_t dur_ms)
{
	static uint8_t rec[TS_SPAN_RECORD_MAX];
	static uint8_t seq;
	struct tb_span s;
	tb_span_init(&s, "op", ++seq, 0);
	memset(s.trace_id, tid, 16);
	s.trace_id[8] = hi;
	s.v.status = status;
	s.v.end_ns = s.v.start_ns + dur_ms * 1000000u;
	size_t len = tb_span_record(rec, sizeof rec, &s);
	return exp_span_new(res, rec, (uint16_t)len);
}

static void add(struct exp_span *s, uint64_t now) { exp_tail_add(t, s, now, &out); }

static size_t taken(void)
{
	size_t n = out.n;
	exp_span_free_list(out.head);
	exp_span_list_init(&out);
	return n;
}

Test(tail, ratio_zero_keeps_exactly_error_and_slow_traces)
{
	t = make(1000, 500, 0.0, 1000);
	add(span(1, 0, TS_STATUS_UNSET, 1), 0);
	add(span(1, 0, TS_STATUS_ERROR, 1), 10); /* trace 1: an error */
	add(span(2, 0, TS_STATUS_OK, 1), 0);
	add(span(2, 0, TS_STATUS_UNSET, 2), 20); /* trace 2: ordinary */
	add(span(3, 0, TS_STATUS_UNSET, 600), 0); /* trace 3: slow */
	cr_assert_eq(taken(), 0, "nothing before the wait");
	exp_tail_release(t, 999, false, &out);
	cr_assert_eq(taken(), 0, "still waiting at 999 ms");
	exp_tail_release(t, 1000, false, &out);
	cr_assert_eq(taken(), 3, "traces 1 (2 spans) and 3 (1 span)");
	cr_assert_eq(STAT_GET(dropped_sampled_out), 2);
	cr_assert_eq(STAT_GET(tail_kept_traces), 2);
	cr_assert_eq(STAT_GET(tail_dropped_traces), 1);
	cr_assert_eq(STAT_GET(tail_pending_spans), 0);
}

Test(tail, late_spans_follow_the_decision)
{
	t = make(100, 500, 0.0, 1000);
	add(span(1, 0, TS_STATUS_ERROR, 1), 0);
	add(span(2, 0, TS_STATUS_UNSET, 1), 0);
	exp_tail_release(t, 100, false, &out);
	cr_assert_eq(taken(), 1);
	add(span(1, 0, TS_STATUS_UNSET, 1), 200); /* late span of the kept trace */
	cr_assert_eq(taken(), 1, "goes out at once");
	add(span(2, 0, TS_STATUS_ERROR, 1), 200); /* late error of a dropped trace */
	cr_assert_eq(taken(), 0, "follows the drop decision");
	exp_tail_release(t, 10000, false, &out);
	cr_assert_eq(taken(), 0);
	cr_assert_eq(STAT_GET(dropped_sampled_out), 2);
	cr_assert_eq(STAT_GET(tail_pending_traces), 0, "late spans are never held");
}

Test(tail, the_ratio_is_a_function_of_the_trace_id)
{
	uint8_t id[16] = {0};
	cr_assert_not(exp_tail_ratio_keeps(id, 0.0));
	cr_assert(exp_tail_ratio_keeps(id, 0.0001));
	memset(id, 0xff, 16);
	cr_assert(exp_tail_ratio_keeps(id, 1.0));
	cr_assert_not(exp_tail_ratio_keeps(id, 0.9999));
	id[8] = 0x7f; /* low 8 bytes 7fff..ff: just under one half */
	cr_assert(exp_tail_ratio_keeps(id, 0.5));
	id[8] = 0x80;
	cr_assert_not(exp_tail_ratio_keeps(id, 0.5));

	t = make(10, 100000, 0.5, 1000);
	for (int i = 0; i < 200; i++)
		add(span((uint8_t)(i + 1), (uint8_t)(i * 13), TS_STATUS_UNSET, 1), 0);
	exp_tail_release(t, 10, false, &out);
	size_t want = 0;
	for (int i = 0; i < 200; i++)
		want += ((uint8_t)(i * 13)) < 0x80;
	cr_assert_eq(out.n, want, "kept %zu, the rule says %zu", out.n, want);
	for (struct exp_span *s = out.head; s; s = s->next)
		cr_assert_lt(s->rec[2 + 8], 0x80);
	taken();
}

Test(tail, over_the_bound_the_oldest_traces_are_decided_early)
{
	t = make(60000, 100000, 1.0, 10);
	for (int i = 0; i < 25; i++)
		add(span((uint8_t)(i + 1), 0, TS_STATUS_UNSET, 1), (uint64_t)i);
	cr_assert_eq(STAT_GET(tail_decided_early), 15);
	cr_assert_eq(STAT_GET(tail_pending_spans), 10);
	cr_assert_eq(out.n, 15);
	/* oldest first: traces 1..15 went out */
	uint8_t want = 1;
	for (struct exp_span *s = out.head; s; s = s->next, want++)
		cr_assert_eq(s->rec[2], want);
	taken();
	exp_tail_release(t, 0, true, &out); /* shutdown: everything decided */
	cr_assert_eq(taken(), 10);
	cr_assert_eq(STAT_GET(tail_pending_spans), 0);
	cr_assert_eq(STAT_GET(tail_decided_early), 15, "shutdown decisions are not early ones");
}

Test(tail, many_traces_and_forgotten_decisions)
{
	t = make(1, 100000, 0.0, 1000000);
	for (unsigned round = 0; round < 3; round++) {
		for (unsigned i = 0; i < 40000; i++) {
			static uint8_t rec[TS_SPAN_RECORD_MAX];
			struct tb_span s;
			tb_span_init(&s, "op", 1, 0);
			memcpy(s.trace_id, &i, sizeof i);
			memcpy(s.trace_id + 4, &round, sizeof round);
			size_t len = tb_span_record(rec, sizeof rec, &s);
			add(exp_span_new(res, rec, (uint16_t)len), round * 100000u);
		}
		exp_tail_release(t, round * 100000u + 10, false, &out);
	}
	cr_assert_eq(taken(), 0);
	cr_assert_eq(STAT_GET(tail_dropped_traces), 120000);
	cr_assert_eq(STAT_GET(tail_pending_traces), 0);
}
