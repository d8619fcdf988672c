/* queue.c — see queue.h. */
#include "queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


struct exp_span *exp_span_new(struct exp_resource *res, const uint8_t *rec, uint16_t len)
{
	struct exp_span *s = malloc(sizeof *s + len);
	if (!s)
		return NULL;
	s->next = NULL;
	s->res = res;
	s->len = len;
	memcpy(s->rec, rec, len);
	exp_resource_ref(res);
	return s;
}

void exp_span_free_list(struct exp_span *list)
{
	while (list) {
		struct exp_span *next = list->next;
		exp_resource_unref(list->res);
		free(list);
		list = next;
	}
}

int exp_queue_init(struct exp_queue *q, size_t max_spans, size_t max_bytes, size_t batch_size)
{
	memset(q, 0, sizeof *q);
	q->tailp = &q->head;
	q->max_spans = max_spans;
	q->max_bytes = max_bytes;
	q->batch_size = batch_size ? batch_size : 1;
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
	size_t k = q->n < q->batch_size ? q->n : q->batch_size;
	*out = k ? detach(q, k) : NULL;
	*done = q->closed && q->n == 0;
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
