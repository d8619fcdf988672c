/* delivery.h — getting encoded OTLP batches to the backend, whatever it does.
 *
 * The export thread hands over each encoded batch (exp_delivery_push, which
 * never waits on the network); the delivery thread sends them one at a time,
 * oldest first, over one kept-alive connection:
 *
 *   2xx                  → done (exported_spans; partial_success's rejected
 *                           spans counted in dropped_rejected and logged)
 *   429/502/503/504,     → the same batch again after Retry-After (capped at
 *   connection failures     EXP_RETRY_AFTER_MAX_MS) or an exponential backoff
 *                           with jitter (exp_backoff_ms); later batches wait
 *                           behind it, so order is kept
 *   other statuses       → dropped, counted (dropped_rejected), logged once per reason
 *
 * A batch that has waited in memory for OTEL_BSP_EXPORT_TIMEOUT (or that
 * does not fit in EXP_OUTBOX_MAX_BYTES) is written to the spool and sent
 * from there later; batches spooled by an earlier exporter are sent first.
 * A spooled batch is deleted only after a 2xx for it. At shutdown, delivery
 * goes on for at most the budget; then everything left is spooled.
 *
 * Threads: push/begin_close/finish from the export thread (or main), the
 * rest in the delivery thread; one mutex guards the memory list and the
 * spool, never held across a network call. */
#ifndef TRACESHIM_EXP_DELIVERY_H
#define TRACESHIM_EXP_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sbuf.h"

struct exp_delivery;

/* Opens the OTLP client and the spool (a spool that cannot be used is logged
 * and delivery goes on without one), starts the delivery thread. NULL with a
 * reason in err when the client cannot be created. */
struct exp_delivery *exp_delivery_open(const struct exp_config *c, char *err, size_t errcap);
/* The same for OTLP metrics (metrics_serve.c): to c->metrics_endpoint, no
 * spool, outcomes counted in the metrics_* counters (bodies are
 * ExportMetricsServiceRequests, counts are data points). */
struct exp_delivery *exp_delivery_open_metrics(const struct exp_config *c, char *err, size_t errcap);

/* Takes the bytes of body (an encoded ExportTraceServiceRequest of n_spans
 * spans; body is left empty). False when out of memory (counted). */
bool exp_delivery_push(struct exp_delivery *d, struct sbuf *body, uint32_t n_spans);

/* Shutdown, step 1: from now on, deliver for at most budget_ms more, and
 * give up (spool) at the first failure. */
void exp_delivery_begin_close(struct exp_delivery *d, uint32_t budget_ms);

/* Step 2: no more pushes. Waits for the thread; what is left is spooled. */
void exp_delivery_finish(struct exp_delivery *d);

void exp_delivery_free(struct exp_delivery *d);

/* The wait before the next attempt after `failures` consecutive failures
 * (>= 1): Retry-After when the server sent one (capped, plus up to 10 %
 * jitter), else min(EXP_BACKOFF_MAX_MS, EXP_BACKOFF_BASE_MS * 2^(failures-1))
 * scaled by a random factor in [0.5, 1] ("equal jitter"). rnd: any random value. */
uint32_t exp_backoff_ms(unsigned failures, uint32_t retry_after_ms, uint64_t rnd);

#endif
