/* test_queue.c — the bounded queue: span and byte bounds, batch-size wakeups,
 * the schedule deadline, close, the consumer's held count and abandoning it
 * at shutdown, and resource lifetimes (references per run of spans). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "queue.h"
#include "spanbuild.h"

static struct exp_resource *res;

static void setup(void) { res = exp_resource_unknown(); }
static void teardown(void) { exp_resource_unref(res); }

TestSuite(queue, .init = setup, .fini = teardown);

/* A list of n spans of `size` bytes (the content is irrelevant to the queue). */
static struct exp_span *spans(size_t n, uint16_t size)
{
	static uint8_t rec[TS_SPAN_RECORD_MAX];
	struct exp_span *head = NULL, **tail = &head;
	for (size_t i = 0; i < n; i++) {
		*tail = exp_span_new(res, rec, size);
		tail = &(*tail)->next;
	}
	return head;
}

static size_t count(struct exp_span *l)
{
	size_t n = 0;
	for (; l; l = l->next)
		n++;
	return n;
}

static struct timespec in_ms(long ms)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

Test(queue, span_bound_drops_the_excess)
{
	struct exp_queue q;
	cr_assert_eq(exp_queue_init(&q, 3, 1 << 20, 2), 0);
	cr_assert_eq(exp_queue_push(&q, spans(5, 100), 5), 2);
	cr_assert_eq(exp_queue_depth(&q), 3);
	cr_assert_eq(exp_queue_push(&q, spans(1, 100), 1), 1, "full: everything dropped");
	cr_assert_eq(atomic_load(&res->refs), 4, "dropped spans released the resource");
	exp_queue_destroy(&q);
	cr_assert_eq(atomic_load(&res->refs), 1);
}

Test(queue, byte_bound_drops_the_excess)
{
	struct exp_queue q;
	cr_assert_eq(exp_queue_init(&q, 1000, 1000, 10), 0);
	cr_assert_eq(exp_queue_push(&q, spans(4, 300), 4), 1, "3 x 300 fit in 1000, the 4th does not");
	cr_assert_eq(exp_queue_push(&q, spans(1, 100), 1), 0, "but a small one still fits");
	cr_assert_eq(exp_queue_depth(&q), 4);
	exp_queue_destroy(&q);
}

Test(queue, full_batch_is_taken_without_waiting)
{
	struct exp_queue q;
	cr_assert_eq(exp_queue_init(&q, 100, 1 << 20, 4), 0);
	exp_queue_push(&q, spans(10, 50), 10);
	struct timespec t0, deadline = in_ms(5000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct exp_span *out;
	bool done;
	cr_assert_eq(exp_queue_take(&q, &deadline, &out, &done), 4);
	cr_assert_eq(count(out), 4);
	cr_assert_not(done);
	cr_assert_lt(ms_since(&t0), 1000);
	exp_span_free_list(out);
	cr_assert_eq(exp_queue_take(&q, &deadline, &out, &done), 4);
	exp_span_free_list(out);
	cr_assert_eq(exp_queue_depth(&q), 2);
	exp_queue_destroy(&q);
}

Test(queue, partial_batch_waits_for_the_deadline)
{
	struct exp_queue q;
	cr_assert_eq(exp_queue_init(&q, 100, 1 << 20, 4), 0);
	exp_queue_push(&q, spans(1, 50), 1);
	struct timespec t0, deadline = in_ms(150);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct exp_span *out;
	bool done;
	cr_assert_eq(exp_queue_take(&q, &deadline, &out, &done), 1);
	long waited = ms_since(&t0);
	cr_assert(waited >= 140 && waited < 2000, "waited %ld ms", waited);
	exp_span_free_list(out);
	deadline = in_ms(50);
	cr_assert_eq(exp_queue_take(&q, &deadline, &out, &done), 0, "empty: nothing after the deadline");
	cr_assert_null(out);
	exp_queue_destroy(&q);
}

struct pusher {
	struct exp_queue *q;
	size_t n;
};

static void *push_later(void *arg)
{
	struct pusher *p = arg;
	struct timespec d = {0, 100 * 1000000L};
	nanosleep(&d, NULL);
	exp_queue_push(p->q, spans(p->n, 10), p->n);
	return NULL;
}

Test(queue, reaching_batch_size_wakes_the_consumer)
{
	struct exp_queue q;
	cr_assert_eq(exp_queue_init(&q, 100, 1 << 20, 5), 0);
	struct pusher p = {&q, 5};
	pthread_t t;
	pthread_create(&t, NULL, push_later, &p);
	struct timespec t0, deadline = in_ms(10000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct exp_span *out;
	bool done;
	cr_assert_eq(exp_queue_take(&q, &deadline, &out, &done), 5);
	cr_assert_lt(ms_since(&t0), 5000, "woken by the push, not by the deadline");
	pthread_join(t, NULL);
	exp_span_free_list(out);
	exp_queue_destroy(&q);
}

Test(queue, close_hands_out_the_rest_then_done)
{
	struct exp_queue q;
	cr_assert_eq(exp_queue_init(&q, 100, 1 << 20, 4), 0);
	exp_queue_push(&q, spans(6, 10), 6);
	exp_queue_close(&q);
	cr_assert_eq(exp_queue_push(&q, spans(2, 10), 2), 2, "no pushes after close");
	struct timespec deadline = in_ms(10000);
	struct exp_span *out;
	bool done;
	cr_assert_eq(exp_queue_take(&q, &deadline, &out, &done), 4);
	cr_assert_not(done);
	exp_span_free_list(out);
	cr_assert_eq(exp_queue_take(&q, &deadline, &out, &done), 2);
	cr_assert(done);
	exp_span_free_list(out);
	exp_queue_destroy(&q);
}

Test(queue, abandon_counts_queued_and_held_spans_once)
{
	struct exp_queue q;
	cr_assert_eq(exp_queue_init(&q, 100, 1 << 20, 4), 0);
	exp_queue_push(&q, spans(10, 10), 10);
	exp_queue_close(&q);
	struct timespec deadline = in_ms(10000);
	struct exp_span *a, *b;
	bool done;
	cr_assert_eq(exp_queue_take(&q, &deadline, &a, &done), 4);
	cr_assert(exp_queue_account(&q, 0, 4), "the first batch is counted by the consumer");
	cr_assert_eq(exp_queue_take(&q, &deadline, &b, &done), 4);
	/* the tail sampler parks 3 of them and releases 5 older ones */
	cr_assert(exp_queue_account(&q, 5, 3));
	/* the consumer is stuck in a sink with 6 in its hands, 2 still queued */
	cr_assert_eq(exp_queue_abandon(&q), 2 + 6);
	cr_assert_not(exp_queue_account(&q, 0, 4), "abandoned: the consumer must not count them again");
	cr_assert(exp_queue_abandoned(&q));
	struct exp_span *c;
	cr_assert_eq(exp_queue_take(&q, &deadline, &c, &done), 0, "nothing more for an abandoned consumer");
	cr_assert(done);
	cr_assert_null(c);
	exp_span_free_list(a);
	exp_span_free_list(b);
	exp_queue_destroy(&q);
}

Test(queue, resource_outlives_its_connection)
{
	uint8_t frame[512];
	size_t n = tb_hello_frame(frame, sizeof frame, "gone", 9, 0);
	bool oom;
	struct exp_resource *r = exp_resource_from_hello(frame + 16, n - 16, &oom);
	cr_assert_not_null(r);
	uint8_t rec[64] = {0};
	struct exp_span *s = exp_span_new(r, rec, sizeof rec);
	exp_resource_unref(r); /* the connection closes */
	cr_assert_eq(atomic_load(&s->res->refs), 1, "the span keeps it alive");
	cr_assert_eq(s->res->attrs[0].v.s.len, 4);
	exp_span_free_list(s);
}

/* References are taken per frame and dropped per run of one process's spans
 * (queue.c): a list that mixes processes must still give back exactly what
 * each span took. */
Test(queue, references_per_run_of_spans)
{
	struct exp_resource *other = exp_resource_unknown();
	uint8_t frame[2 + 3 * 64] = {0};
	for (int i = 0; i < 3; i++) {
		uint16_t len = 64;
		memcpy(frame + 2 + 64 * i, &len, 2); /* records of 64 bytes, length first */
	}
	struct exp_span *head;
	cr_assert_eq(exp_spans_new(res, frame + 2, 3, &head), 3);
	cr_assert_eq(atomic_load(&res->refs), 4, "one reference per span, taken at once");
	/* res, res, res, other, res, other */
	struct exp_span *tail = head->next->next;
	tail->next = exp_span_new(other, frame + 2, 64);
	tail->next->next = exp_span_new(res, frame + 2, 64);
	tail->next->next->next = exp_span_new(other, frame + 2, 64);
	cr_assert_eq(atomic_load(&res->refs), 5);
	cr_assert_eq(atomic_load(&other->refs), 3);
	exp_span_free_list(head);
	cr_assert_eq(atomic_load(&res->refs), 1, "every run gave its references back");
	cr_assert_eq(atomic_load(&other->refs), 1);
	exp_resource_unref(other);
}
