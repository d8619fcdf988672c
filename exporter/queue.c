/* queue.c — see queue.h. */
#include "queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frame.h"

/* ---- span memory ----------------------------------------------------------
 *
 * Spans are made on the receive thread and freed on the export thread: for
 * glibc that is the slow path on both sides (the freeing thread's cache fills,
 * the allocating thread's stays empty), about 350 instructions a span, as
 * much as validating it. So freed spans are kept, by size class, and handed
 * out again; one lock per list freed and per frame received, not per span.
 * The pool is bounded: beyond POOL_MAX_BYTES spans go back to malloc. */

#define SPAN_GRAIN 64 /* size classes: a span wastes less than this */
#define SPAN_POOLED_MAX (sizeof(struct exp_span) + TS_SPAN_RECORD_MAX + EXP_SPAN_SLACK)
#define SPAN_CLASSES ((SPAN_POOLED_MAX + SPAN_GRAIN - 1) / SPAN_GRAIN + 1)
#define POOL_MAX_BYTES ((size_t)16 << 20)

static struct {
	pthread_mutex_t lock;
	struct exp_span *free[SPAN_CLASSES];
	size_t bytes;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* 0: not pooled (bigger than any valid record). */
static size_t span_class(uint16_t len)
{
	size_t size = sizeof(struct exp_span) + len + EXP_SPAN_SLACK;
	return size <= SPAN_POOLED_MAX ? (size + SPAN_GRAIN - 1) / SPAN_GRAIN : 0;
}

/* Caller holds pool.lock. */
static struct exp_span *span_alloc(uint16_t len)
{
	size_t c = span_class(len);
	struct exp_span *s = c ? pool.free[c] : NULL;
	if (s) {
		pool.free[c] = s->next;
		pool.bytes -= c * SPAN_GRAIN;
		return s;
	}
	return malloc(c ? c * SPAN_GRAIN : sizeof *s + len + EXP_SPAN_SLACK);
}

static void span_init(struct exp_span *s, struct exp_resource *res, const uint8_t *rec, uint16_t len)
{
	s->next = NULL;
	s->res = res;
	s->len = len;
	memcpy(s->rec, rec, len);
	memset(s->rec + len, 0, EXP_SPAN_SLACK);
}

struct exp_span *exp_span_new(struct exp_resource *res, const uint8_t *rec, uint16_t len)
{
	pthread_mutex_lock(&pool.lock);
	struct exp_span *s = span_alloc(len);
	pthread_mutex_unlock(&pool.lock);
	if (s) {
		span_init(s, res, rec, len);
		exp_resource_ref(res);
	}
	return s;
}

size_t exp_spans_new(struct exp_resource *res, const uint8_t *p, uint16_t count, struct exp_span **head)
{
	struct exp_span **tail = head;
	uint16_t made = 0;
	*head = NULL;
	pthread_mutex_lock(&pool.lock);
	for (; made < count; made++) {
		uint16_t len;
		memcpy(&len, p, 2);
		struct exp_span *s = span_alloc(len);
		if (!s)
			break;
		span_init(s, res, p, len);
		*tail = s;
		tail = &s->next;
		p += len;
	}
	pthread_mutex_unlock(&pool.lock);
	if (made)
		exp_resource_ref_n(res, made);
	return made;
}

void exp_span_free_list(struct exp_span *list)
{
	if (!list)
		return;
	struct exp_resource *run = list->res; /* spans come in runs of one process */
	uint32_t run_len = 0; /* a list is far shorter than 2^32 spans (all in memory) */
	pthread_mutex_lock(&pool.lock);
	while (list) {
		struct exp_span *next = list->next;
		size_t c = span_class(list->len);
		if (list->res != run) {
			exp_resource_unref_n(run, run_len);
			run = list->res;
			run_len = 0;
		}
		run_len++;
		if (c && pool.bytes + c * SPAN_GRAIN <= POOL_MAX_BYTES) {
			list->next = pool.free[c];
			pool.free[c] = list;
			pool.bytes += c * SPAN_GRAIN;
		} else {
			free(list);
		}
		list = next;
	}
	exp_resource_unref_n(run, run_len); /* the list is not empty: run_len >= 1 */
	pthread_mutex_unlock(&pool.lock);
}

int exp_queue_init(struct exp_queue *q, size_t max_spans, size_t max_bytes, size_t batch_size)
{
	memset(q, 0, sizeof *q);
	q->tailp = &q->head;
	q->max_spans = max_spans;
	q->max_bytes = max_bytes;
	q->batch_size = batch_size ? batch_size : 1;
	atomic_init(&q->abandoned, false);
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC))
		return -1;
	int rc = pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (rc || pthread_mutex_init(&q->lock, NULL))
		return -1;
	return 0;
}

void exp_queue_destroy(struct exp_queue *q)
{
	exp_span_free_list(q->head);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
}

static bool fits(const struct exp_queue *q, const struct exp_span *s)
{
	return !q->closed && q->n < q->max_spans && s->len <= q->max_bytes - q->bytes;
}

size_t exp_queue_push(struct exp_queue *q, struct exp_span *list, size_t n)
{
	pthread_mutex_lock(&q->lock);
	size_t taken = 0;
	for (; list && fits(q, list); taken++) {
		*q->tailp = list;
		q->tailp = &list->next;
		q->n++;
		q->bytes += list->len;
		list = list->next;
	}
	*q->tailp = NULL;
	if (q->n >= q->batch_size)
		pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	/* Free outside the lock: the consumer should not wait on free(). */
	exp_span_free_list(list);
	return n - taken;
}

static bool deadline_passed(const struct timespec *d)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

/* Detaches the first k spans; caller holds the lock. */
static struct exp_span *detach(struct exp_queue *q, size_t k)
{
	struct exp_span *head = q->head, **pp = &q->head;
	for (size_t i = 0; i < k; i++) {
		q->bytes -= (*pp)->len;
		pp = &(*pp)->next;
	}
	q->head = *pp;
	*pp = NULL;
	if (!q->head)
		q->tailp = &q->head;
	q->n -= k;
	return head;
}

size_t exp_queue_take(struct exp_queue *q, const struct timespec *deadline,
		      struct exp_span **out, bool *done)
{
	pthread_mutex_lock(&q->lock);
	while (!q->closed && q->n < q->batch_size) {
		int rc = pthread_cond_timedwait(&q->cond, &q->lock, deadline);
		if (rc == ETIMEDOUT || (rc == 0 && deadline_passed(deadline)))
			break;
	}
	bool abandoned = atomic_load_explicit(&q->abandoned, memory_order_relaxed);
	size_t k = abandoned ? 0 : q->n < q->batch_size ? q->n : q->batch_size;
	*out = k ? detach(q, k) : NULL;
	q->held += k;
	*done = abandoned || (q->closed && q->n == 0);
	pthread_mutex_unlock(&q->lock);
	return k;
}

void exp_queue_close(struct exp_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

size_t exp_queue_depth(struct exp_queue *q)
{
	pthread_mutex_lock(&q->lock);
	size_t n = q->n;
	pthread_mutex_unlock(&q->lock);
	return n;
}

bool exp_queue_account(struct exp_queue *q, size_t add, size_t done)
{
	pthread_mutex_lock(&q->lock);
	q->held += add;
	q->held -= done < q->held ? done : q->held;
	bool counting = !atomic_load_explicit(&q->abandoned, memory_order_relaxed);
	pthread_mutex_unlock(&q->lock);
	return counting;
}

size_t exp_queue_abandon(struct exp_queue *q)
{
	pthread_mutex_lock(&q->lock);
	size_t n = q->n + q->held;
	q->held = 0;
	atomic_store_explicit(&q->abandoned, true, memory_order_relaxed);
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	return n;
}
