/* export.c — see export.h. */
#include "export.h"

#include <time.h>

#include "batch.h"
#include "log.h"
#include "stats.h"

static void deliver_to(struct exp_exporter *e, struct exp_sink *s, const struct exp_batch *b, bool *all_ok)
{
	if (s->skip) {
		*all_ok = false;
		STAT_ADD(export_errors, 1);
		STAT_ADD(dropped_export_failed, b->n);
		return;
	}
	struct exp_deliver_result r = s->deliver(s, b);
	if (r.kind == EXP_DELIVER_OK)
		return;
	*all_ok = false;
	STAT_ADD(export_errors, 1);
	STAT_ADD(dropped_export_failed, b->n);
	/* The otlp sink retries and spools in its own thread (delivery.c) and
	 * only fails here when out of memory; the file sink writes locally, a
	 * failure there (disk full) is final for the batch. */
	exp_stats_error("%s: %s (%zu spans dropped%s)", s->name, r.error, b->n,
			r.kind == EXP_DELIVER_RETRYABLE ? ", retryable" : "");
	/* While stopping, one more timeout per batch would only delay the exit. */
	if (r.kind == EXP_DELIVER_RETRYABLE && atomic_load(&e->stopping)) {
		s->skip = true;
		log_warn("%s: giving up on this sink for the rest of the shutdown flush", s->name);
	}
}

void exp_export_batch(struct exp_exporter *e, struct exp_span *list, size_t n)
{
	struct exp_batch b;
	if (exp_batch_build(&b, list, n) < 0) {
		STAT_ADD(export_errors, 1);
		STAT_ADD(dropped_export_failed, n);
		exp_stats_error("out of memory grouping %zu spans; dropped", n);
		exp_batch_free(&b);
		return;
	}
	bool all_ok = true, any_async = false;
	for (size_t i = 0; i < e->n_sinks; i++) {
		deliver_to(e, e->sinks[i], &b, &all_ok);
		any_async = any_async || e->sinks[i]->async;
	}
	/* Exported means every configured sink took it; with no sink ("none")
	 * spans are discarded, not exported. A background sink (otlp) counts
	 * its spans itself, once the backend has them. */
	if (all_ok && e->n_sinks && !any_async)
		STAT_ADD(exported_spans, b.n);
	exp_batch_free(&b);
}

/* Released spans may be more than one batch: cut them into batches. */
static void export_list(struct exp_exporter *e, struct exp_span_list *l)
{
	struct exp_span *s = l->head;
	size_t left = l->n, max = e->queue->batch_size;
	while (left) {
		size_t k = left < max ? left : max;
		struct exp_span *first = s, *last = s;
		for (size_t i = 1; i < k; i++)
			last = last->next;
		s = last->next;
		last->next = NULL;
		exp_export_batch(e, first, k);
		left -= k;
	}
	exp_span_list_init(l);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void deadline_in(struct timespec *d, uint32_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, d);
	d->tv_sec += ms / 1000;
	d->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (d->tv_nsec >= 1000000000L) {
		d->tv_sec++;
		d->tv_nsec -= 1000000000L;
	}
}

/* A span waits at most one schedule delay (plus export time, plus the tail
 * sampling wait when it is on): the timer is restarted after each timed
 * export, not after a batch-size one. */
static void *export_main(void *arg)
{
	struct exp_exporter *e = arg;
	struct timespec deadline;
	deadline_in(&deadline, e->delay_ms);
	for (;;) {
		struct exp_span *list;
		bool done;
		size_t n = exp_queue_take(e->queue, &deadline, &list, &done);
		if (e->tail) {
			struct exp_span_list out;
			exp_span_list_init(&out);
			uint64_t now = now_ms();
			exp_tail_add(e->tail, list, now, &out);
			exp_tail_release(e->tail, now, done, &out); /* at shutdown: decide them all */
			export_list(e, &out);
		} else if (n) {
			exp_export_batch(e, list, n);
		}
		if (done)
			break;
		if (n < e->queue->batch_size)
			deadline_in(&deadline, e->delay_ms);
	}
	return NULL;
}

int exp_exporter_start(struct exp_exporter *e)
{
	atomic_init(&e->stopping, false);
	return pthread_create(&e->thread, NULL, export_main, e) == 0 ? 0 : -1;
}

void exp_exporter_stop(struct exp_exporter *e)
{
	atomic_store(&e->stopping, true);
	/* The shutdown budget counts from here: background delivery gives up at
	 * its end, and meanwhile the queue is flushed into it. */
	for (size_t i = 0; i < e->n_sinks; i++)
		if (e->sinks[i]->begin_close)
			e->sinks[i]->begin_close(e->sinks[i], e->shutdown_budget_ms);
	exp_queue_close(e->queue);
	pthread_join(e->thread, NULL);
	for (size_t i = 0; i < e->n_sinks; i++)
		if (e->sinks[i]->end_input)
			e->sinks[i]->end_input(e->sinks[i]);
}
