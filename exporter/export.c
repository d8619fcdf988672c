/* export.c — see export.h. */
#include "export.h"

#include <errno.h>
#include <time.h>

#include "batch.h"
#include "config.h"
#include "log.h"
#include "stats.h"

/* False when the sink did not take the batch (logged here; counted by the caller). */
static bool deliver_to(struct exp_exporter *e, struct exp_sink *s, const struct exp_batch *b)
{
	if (s->skip)
		return false;
	atomic_store_explicit(&e->in_sink, s->name, memory_order_relaxed);
	struct exp_deliver_result r = s->deliver(s, b);
	atomic_store_explicit(&e->in_sink, NULL, memory_order_relaxed);
	if (r.kind == EXP_DELIVER_OK)
		return true;
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
	return false;
}

/* The spans are counted here, after every sink, and only if the shutdown
 * has not given up on this thread meanwhile (exp_exporter_stop): then they
 * are among the ones it counted as dropped. */
void exp_export_batch(struct exp_exporter *e, struct exp_span *list, size_t n)
{
	struct exp_batch b;
	if (exp_batch_build(&b, list, n) < 0) {
		if (exp_queue_account(e->queue, 0, n)) {
			STAT_ADD(export_errors, 1);
			STAT_ADD(dropped_export_failed, n);
		}
		exp_stats_error("out of memory grouping %zu spans; dropped", n);
		exp_batch_free(&b);
		return;
	}
	size_t failed = 0;
	bool any_async = false;
	for (size_t i = 0; i < e->n_sinks && !exp_queue_abandoned(e->queue); i++) {
		failed += !deliver_to(e, e->sinks[i], &b);
		any_async = any_async || e->sinks[i]->async;
	}
	if (exp_queue_account(e->queue, 0, n)) {
		/* A failed sink counts the batch once per sink. Exported means
		 * every configured sink took it; with no sink ("none") spans are
		 * discarded, not exported. A background sink (otlp) counts its
		 * spans itself, once the backend has them. */
		STAT_ADD(export_errors, failed);
		STAT_ADD(dropped_export_failed, failed * b.n);
		if (!failed && e->n_sinks && !any_async)
			STAT_ADD(exported_spans, b.n);
	}
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
			/* The n taken are in the tail sampler now (or were dropped by it,
			 * counted there); the released ones are in our hands. */
			exp_queue_account(e->queue, out.n, n);
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
	atomic_init(&e->in_sink, NULL);
	return pthread_create(&e->thread, NULL, export_main, e) == 0 ? 0 : -1;
}

/* Why a deadline on the export thread, and why the caller then ends the
 * process: the file sink's write() can block for ever (a FIFO nobody reads,
 * a hung NFS mount) and nothing can take a thread out of it — a signal does
 * not (SIGTERM is blocked in every thread and read from a signalfd), closing
 * the descriptor does not, pthread_cancel would unwind through a sink holding
 * locks and half-built buffers. So past the budget the thread is left where
 * it is, what it holds and what is still queued is counted as dropped, and
 * the process ends (_exit) with the thread in it. The grace keeps a healthy
 * sink from being cut short by a very small budget (1 ms is valid; the same
 * variable is the outbox's spooling window). */
bool exp_exporter_stop(struct exp_exporter *e, size_t *abandoned)
{
	*abandoned = 0;
	atomic_store(&e->stopping, true);
	/* The shutdown budget counts from here: background delivery gives up at
	 * its end, and meanwhile the queue is flushed into it. */
	for (size_t i = 0; i < e->n_sinks; i++)
		if (e->sinks[i]->begin_close)
			e->sinks[i]->begin_close(e->sinks[i], e->shutdown_budget_ms);
	exp_queue_close(e->queue);
	struct timespec deadline;
	deadline_in(&deadline, e->shutdown_budget_ms + EXP_STOP_GRACE_MS);
	int rc = pthread_clockjoin_np(e->thread, NULL, CLOCK_MONOTONIC, &deadline);
	if (rc != 0 && rc != ETIMEDOUT)
		rc = pthread_join(e->thread, NULL);
	size_t lost = 0;
	if (rc == ETIMEDOUT) {
		/* Queued, in the thread's hands (the batch in the sink, the rest of
		 * what the tail sampler released), and pending in the tail sampler
		 * (a gauge: exact for a thread stuck in a sink, which is the case
		 * here). The file sink comes first (main.c), so the batch it is
		 * stuck on has reached no other sink. */
		lost = exp_queue_abandon(e->queue) + (size_t)STAT_GET(tail_pending_spans);
		/* Nothing held: it finished just at the deadline and is on its way out. */
		if (!lost) {
			deadline_in(&deadline, 100);
			rc = pthread_clockjoin_np(e->thread, NULL, CLOCK_MONOTONIC, &deadline);
		}
	}
	if (rc == ETIMEDOUT) {
		*abandoned = lost;
		const char *sink = atomic_load_explicit(&e->in_sink, memory_order_relaxed);
		STAT_ADD(export_errors, 1);
		STAT_ADD(dropped_export_failed, *abandoned);
		/* Not exp_stats_error: its rate limit could swallow this line. */
		log_error("shutdown: the %s%s has not returned %u ms after the shutdown began "
			  "(OTEL_BSP_EXPORT_TIMEOUT=%u ms + %u ms): a write that never ends (a FIFO nobody reads, "
			  "a hung mount?); giving up on it: %zu spans not delivered, counted in dropped_export_failed",
			  sink ? sink : "export thread", sink ? " sink" : "", e->shutdown_budget_ms + EXP_STOP_GRACE_MS,
			  e->shutdown_budget_ms, EXP_STOP_GRACE_MS, *abandoned);
	}
	/* Background delivery has its own deadline (the budget) and ends there,
	 * spooling what is left. */
	for (size_t i = 0; i < e->n_sinks; i++)
		if (e->sinks[i]->end_input)
			e->sinks[i]->end_input(e->sinks[i]);
	return rc != ETIMEDOUT;
}
