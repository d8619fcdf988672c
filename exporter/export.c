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
	/* Retry and spooling plug in here (a later issue): for now the batch is
	 * dropped for this sink, whatever kind of failure it was. */
	exp_stats_error("%s: %s (%zu spans dropped%s)", s->name, r.error, b->n,
			r.kind == EXP_DELIVER_RETRYABLE ? ", retryable" : "");
	/* While stopping, one more timeout per batch would only delay the exit
	 * (the rest of the queue would meet the same dead backend). */
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
	bool all_ok = true;
	for (size_t i = 0; i < e->n_sinks; i++)
		deliver_to(e, e->sinks[i], &b, &all_ok);
	/* Exported means every configured sink took it; with no sink ("none")
	 * spans are discarded, not exported. */
	if (all_ok && e->n_sinks)
		STAT_ADD(exported_spans, b.n);
	exp_batch_free(&b);
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

/* A span waits at most one schedule delay (plus export time): the timer is
 * restarted after each timed export, not after a batch-size one. */
static void *export_main(void *arg)
{
	struct exp_exporter *e = arg;
	struct timespec deadline;
	deadline_in(&deadline, e->delay_ms);
	for (;;) {
		struct exp_span *list;
		bool done;
		size_t n = exp_queue_take(e->queue, &deadline, &list, &done);
		if (n)
			exp_export_batch(e, list, n);
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
	exp_queue_close(e->queue);
	pthread_join(e->thread, NULL);
}
