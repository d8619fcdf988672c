/* metrics_serve.h — the metrics thread: serves the Prometheus text format on
 * OTEL_EXPORTER_PROMETHEUS_HOST:PORT/metrics and, every
 * OTEL_METRIC_EXPORT_INTERVAL ms, hands an OTLP ExportMetricsServiceRequest
 * to its own delivery (delivery.c: the traces' retry and backoff rules, no
 * spool: a cumulative export that could not be sent is superseded by the next
 * one). It also gives up on service-graph halves that waited too long. It
 * never blocks the receive loop: it only takes the metrics lock to read. */
#ifndef TRACESHIM_EXP_METRICS_SERVE_H
#define TRACESHIM_EXP_METRICS_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "queue.h"

struct exp_metrics_server;

/* NULL with a reason in err when it cannot start (the Prometheus port cannot
 * be bound, the OTLP endpoint is no URL, no thread). */
struct exp_metrics_server *exp_metrics_server_start(const struct exp_config *c, struct exp_metrics *m,
						    struct exp_queue *q, char *err, size_t errcap);

/* Shutdown, step 1: stops serving; with OTLP on, one last export is made,
 * to be delivered within budget_ms from now (in the background, so it
 * shares the window with the traces' flush). */
void exp_metrics_server_begin_stop(struct exp_metrics_server *s, uint32_t budget_ms);
/* Step 2 (step 1 first if it was not made): waits for that delivery to end,
 * frees everything. NULL: nothing. */
void exp_metrics_server_stop(struct exp_metrics_server *s, uint32_t budget_ms);

/* Pure helper, unit-tested: what to answer to an HTTP request head (up to the
 * blank line): 200 for GET (or HEAD) of /metrics (any query string), 404 for
 * another path, 405 for another method, 400 for what is no request line. */
int exp_metrics_http_status(const char *req, size_t len, bool *head);

#endif
