/* export.h — the export thread: drains the queue every schedule delay, or
 * as soon as a full batch is waiting, and hands each batch to every sink.
 * It is the only thread that touches the sinks. */
#ifndef TRACESHIM_EXP_EXPORT_H
#define TRACESHIM_EXP_EXPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"
#include "sink.h"

struct exp_exporter {
	struct exp_queue *queue;
	struct exp_sink **sinks;
	size_t n_sinks;
	uint32_t delay_ms;
	atomic_bool stopping;
	pthread_t thread;
};

int exp_exporter_start(struct exp_exporter *e);

/* Closes the queue, lets the thread export everything still queued, joins it. */
void exp_exporter_stop(struct exp_exporter *e);

/* One batch to every sink, with the counting; exposed for tests. */
void exp_export_batch(struct exp_exporter *e, struct exp_span *list, size_t n);

#endif
