/* metrics.h — RED metrics and a service graph from every span the exporter
 * receives (docs/EXPORTER.md, Metrics).
 *
 * The receive loop hands every validated SPANS payload to exp_metrics_observe
 * before the spans are queued, so the metrics see each span once, before tail
 * sampling and before any queue bound, and also the metrics-only records
 * (TS_SPAN_F_METRICS_ONLY, frame.h) that the shim ships for spans sampled
 * out at the head. Aggregated here:
 *
 *   traces.span.metrics.calls / .duration   per service.name, span.name,
 *                                           span.kind, status.code + the
 *                                           configured attribute dimensions
 *   traces_service_graph_*                  CLIENT↔SERVER and
 *                                           PRODUCER↔CONSUMER pairs (trace id
 *                                           + span id = trace id + parent id),
 *                                           database CLIENT spans as edges to
 *                                           a node named after db.system.name
 *   http.server.request.duration, http.client.request.duration,
 *   db.client.operation.duration, rpc.{server,client}.call.duration
 *
 * Every series is cumulative from its first observation. At most max_series
 * series exist; an observation that would need another one goes into its
 * family's single overflow series (label otel_metric_overflow="true", as the
 * OpenTelemetry SDKs' cardinality limit does) and is counted.
 *
 * Threads: one mutex, taken once per observed payload by the receive loop and
 * once per scrape or export by the metrics thread (metrics_serve.c). */
#ifndef TRACESHIM_EXP_METRICS_H
#define TRACESHIM_EXP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "resource.h"
#include "sbuf.h"

#define EXP_METRICS_MAX_DIMS 16
#define EXP_METRICS_LABEL_VALUE_MAX 256 /* longer label values are cut (whole UTF-8) */
#define EXP_METRICS_SERVICE_MAX 128     /* service names kept for a pending graph edge */

/* Histogram bounds in seconds: the semantic conventions' advice for
 * http.server.request.duration, used for every duration histogram here. */
#define EXP_HIST_BOUNDS 14
#define EXP_HIST_BUCKETS (EXP_HIST_BOUNDS + 1)
extern const double exp_hist_bounds_s[EXP_HIST_BOUNDS];

/* Index of the bucket a duration falls in: the first bound >= the duration
 * (upper bounds are inclusive, as Prometheus' `le` and OTLP's explicit
 * bounds both say), EXP_HIST_BOUNDS past the last one. */
unsigned exp_hist_bucket(uint64_t duration_ns);

enum exp_mfam {
	EXP_MF_CALLS,
	EXP_MF_DURATION,
	EXP_MF_SG_REQUEST,
	EXP_MF_SG_FAILED,
	EXP_MF_SG_SERVER,
	EXP_MF_SG_CLIENT,
	EXP_MF_SG_UNPAIRED,
	EXP_MF_HTTP_SERVER,
	EXP_MF_HTTP_CLIENT,
	EXP_MF_DB_CLIENT,
	EXP_MF_RPC_SERVER,
	EXP_MF_RPC_CLIENT,
	EXP_MF_COUNT
};

struct exp_mfam_info {
	const char *name;      /* OpenTelemetry metric name */
	const char *prom_name; /* Prometheus family name (with _total / _seconds) */
	const char *unit, *help;
	bool histogram;   /* else a monotonic counter */
	bool per_service; /* OTLP: grouped under a resource {service.name}; Prometheus: a service_name label */
};
extern const struct exp_mfam_info exp_mfam[EXP_MF_COUNT];

/* One series. Labels are stored as pairs of (u16 length, bytes) key then
 * value; the service, for per_service families, is kept apart. */
struct exp_series {
	struct exp_series *hnext;    /* hash chain */
	struct exp_series *fam_next; /* the family's list, in creation order */
	uint64_t hash;
	uint64_t start_unix_ns; /* first observation: the cumulative start time */
	uint64_t count;         /* counter value, or the histogram's count */
	uint64_t sum_ns;        /* histograms: sum of durations */
	uint64_t buckets[EXP_HIST_BUCKETS];
	struct exp_edge_extra *edge; /* graph edges only: what the edge's other families count */
	uint8_t fam;
	bool overflow;
	uint8_t n_labels;
	uint16_t service_len, labels_len;
	char data[]; /* service bytes, then the label pairs */
};

/* One label set serves several families (one lookup per observation):
 * traces.span.metrics.calls and .duration share the calls series; an edge's
 * request counter, failed counter and client histogram are one series, its
 * server histogram this extra part. */
struct exp_edge_extra {
	uint64_t failed;
	uint64_t server_count, server_sum_ns;
	uint64_t server_buckets[EXP_HIST_BUCKETS];
};

/* What series s holds for family f (s from exp_snap_family(snap, f)):
 * false when nothing (a database edge has no server histogram). */
bool exp_series_value(enum exp_mfam f, const struct exp_series *s, uint64_t *count, uint64_t *sum_ns,
		      const uint64_t **buckets);

/* Iterating a series' labels. */
struct exp_label {
	const char *key, *val;
	uint16_t klen, vlen;
	bool is_int; /* from an integer attribute: OTLP gets an int_value */
};
bool exp_series_label(const struct exp_series *s, size_t *off, struct exp_label *out);

struct exp_metrics_config {
	char dims[EXP_METRICS_MAX_DIMS][TS_KEY_MAX + 1]; /* extra span attribute dimensions */
	size_t n_dims;
	uint32_t max_series;
	uint32_t graph_wait_ms;     /* how long a CLIENT/SERVER half waits for its other half */
	uint32_t graph_max_pending; /* halves waiting at once; over it the oldest is given up */
};

struct exp_metrics_counts {
	uint64_t series, overflow_points, metrics_only_records, graph_pending, graph_paired,
		graph_unpaired, graph_evicted;
};

struct exp_metrics;

struct exp_metrics *exp_metrics_new(const struct exp_metrics_config *c);
void exp_metrics_free(struct exp_metrics *m);

/* The `count` validated records back to back at recs (SPANS payload after
 * its u16 count), all of one process (res). now_ms: CLOCK_MONOTONIC ms, for
 * the graph's wait; now_unix_ns: for new series' start times. Returns how
 * many were metrics-only records, which must not be exported as spans. */
size_t exp_metrics_observe(struct exp_metrics *m, const struct exp_resource *res, const uint8_t *recs,
			   uint16_t count, uint64_t now_ms, uint64_t now_unix_ns);

/* Halves of graph edges that have waited graph_wait_ms are counted unpaired. */
void exp_metrics_expire(struct exp_metrics *m, uint64_t now_ms);

void exp_metrics_counts(struct exp_metrics *m, struct exp_metrics_counts *out);

/* The exporter's own health, as metrics (filled by the caller from stats). */
struct exp_health {
	uint64_t received, exported, queue_depth;
	uint64_t dropped_queue_full, dropped_client, dropped_export_failed, dropped_sampled_out,
		dropped_rejected, dropped_spool_full, malformed_frames, oversized_frames;
};
void exp_health_read(struct exp_health *h, size_t queue_depth);

/* Prometheus text exposition format 0.0.4 of every series and the health
 * metrics, appended to out (metrics_prom.c). */
void exp_metrics_prometheus(struct exp_metrics *m, const struct exp_health *h, struct sbuf *out);

/* An OTLP ExportMetricsServiceRequest (protobuf) of every series, cumulative,
 * and the health metrics, appended to out (metrics_pb.c). *points: data
 * points in it. False when out of memory. */
bool exp_metrics_otlp(struct exp_metrics *m, const struct exp_health *h, uint64_t now_unix_ns,
		      uint64_t start_unix_ns, struct sbuf *out, uint32_t *points);

/* For the encoders: a copy of every series, made under the lock in one
 * pass of memcpy, so a page or a request is formatted without holding it —
 * the receive loop waits for a copy (2-11 ms for 10000 series on a loaded
 * 2-core machine), not for 170000 formatted lines (~0.2 s there). */
struct exp_metrics_snap {
	struct exp_series *fam_head[EXP_MF_COUNT];
	char *mem;
};
bool exp_metrics_snapshot(struct exp_metrics *m, struct exp_metrics_snap *out); /* false: out of memory */
void exp_metrics_snap_free(struct exp_metrics_snap *s);
/* The series family f is made of (some families share series: see
 * exp_series_value). */
const struct exp_series *exp_snap_family(const struct exp_metrics_snap *s, enum exp_mfam f);

/* Pure helpers, unit-tested. */
/* A Prometheus label name from an attribute key: [a-zA-Z0-9_], others '_',
 * a leading digit prefixed with '_'. Returns the length (cut to cap - 1). */
size_t exp_prom_label_name(char *out, size_t cap, const char *key, size_t klen);
/* A label value escaped for the text format (\\, \", \n), invalid UTF-8
 * replaced by U+FFFD. */
void exp_prom_escape(struct sbuf *out, const char *v, size_t n);

#endif
