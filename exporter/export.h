/* export.h — the export thread: drains the queue every schedule delay, or
 * as soon as a full batch is waiting, passes the spans through the tail
 * sampler when there is one, and hands each batch to every sink. It is the
 * only thread that calls the sinks (the otlp sink's network work happens in
 * its own delivery thread, delivery.h). */
#ifndef TRACESHIM_EXP_EXPORT_H
#define TRACESHIM_EXP_EXPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"
#include "sink.h"
#include "tail.h"

struct exp_exporter {
	struct exp_queue *queue;
	struct exp_sink **sinks;
	size_t n_sinks;
	uint32_t delay_ms;
	uint32_t shutdown_budget_ms; /* OTEL_BSP_EXPORT_TIMEOUT */
	struct exp_tail *tail;       /* NULL: no tail sampling */
	atomic_bool stopping;
	_Atomic(const char *) in_sink; /* the sink the thread is in now, or NULL (for the shutdown's log) */
	pthread_t thread;
};

int exp_exporter_start(struct exp_exporter *e);

/* Starts the sinks' shutdown budget, closes the queue, lets the thread export
 * everything still queued (deciding every pending trace) and joins it, then
 * waits for the sinks' background delivery (which spools what it could not
 * deliver within the budget). True when everything was handed to the sinks.
 *
 * False when the thread was still inside a sink (a file write that blocks)
 * after the budget plus EXP_STOP_GRACE_MS: it is given up on, the spans it
 * held, those still queued and those pending in the tail sampler are counted
 * in dropped_export_failed (and in *abandoned), and the caller must end the
 * process without freeing or closing anything the thread uses (the queue,
 * the sinks, the tail sampler). */
bool exp_exporter_stop(struct exp_exporter *e, size_t *abandoned);

/* One batch to every sink, with the counting; exposed for tests. */
void exp_export_batch(struct exp_exporter *e, struct exp_span *list, size_t n);

#endif
