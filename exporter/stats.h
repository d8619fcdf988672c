/* stats.h — the exporter's counters, shared by the receive loop and the
 * export thread (relaxed atomics: they are statistics, not synchronisation),
 * and the STATUS reply built from them. */
#ifndef TRACESHIM_EXP_STATS_H
#define TRACESHIM_EXP_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sbuf.h"

/* X(name): each becomes a counter and a `name=value` STATUS line, in this
 * order (the first ten are the original keys; the wrapper and tests read them). */
#define EXP_COUNTERS(X)                \
	X(connections_total)           \
	X(connections_refused)         \
	X(received_spans)              \
	X(exported_spans)              \
	X(dropped_malformed_frames)    \
	X(dropped_oversized_frames)    \
	X(dropped_queue_full)          \
	X(dropped_client)              \
	X(dropped_export_failed)       \
	X(export_errors)               \
	X(dropped_sampled_out)         \
	X(dropped_rejected)            \
	X(dropped_spool_full)          \
	X(export_attempts)             \
	X(export_retries)              \
	X(spooled_spans_total)         \
	X(spool_replayed_spans)        \
	X(spool_corrupt_files)         \
	X(tail_kept_traces)            \
	X(tail_dropped_traces)         \
	X(tail_decided_early)          \
	X(refused_hellos)              \
	X(file_rotations)              \
	X(connections_refused_uid)     \
	X(connections_refused_limit)   \
	X(connections_refused_resources) \
	X(child_channels)

/* Levels rather than totals, set by their owner, printed after queue_depth. */
#define EXP_GAUGES(X)                  \
	X(outbox_spans)                \
	X(spooled_spans)               \
	X(spool_files)                 \
	X(spool_bytes)                 \
	X(tail_pending_spans)          \
	X(tail_pending_traces)         \
	X(ring_connections)

/* The metrics (metrics.h), printed last, after last_error_at, so the keys
 * above keep their places. Counters and gauges alike; the series and graph
 * figures are set by metrics.c after each payload it observes. */
#define EXP_METRICS_STATS(X)           \
	X(metrics_series)              \
	X(metrics_overflow_points)     \
	X(metrics_only_records)        \
	X(metrics_graph_pending)       \
	X(metrics_graph_paired)        \
	X(metrics_graph_unpaired)      \
	X(metrics_scrapes)             \
	X(metrics_export_attempts)     \
	X(metrics_export_retries)      \
	X(metrics_export_errors)       \
	X(metrics_exported_points)     \
	X(metrics_dropped_points)      \
	X(metrics_outbox_points)

struct exp_stats {
#define X(name) _Atomic uint64_t name;
	EXP_COUNTERS(X)
	EXP_GAUGES(X)
	EXP_METRICS_STATS(X)
#undef X
};

extern struct exp_stats exp_stats;

#define STAT_ADD(name, n) atomic_fetch_add_explicit(&exp_stats.name, (uint64_t)(n), memory_order_relaxed)
#define STAT_GET(name) atomic_load_explicit(&exp_stats.name, memory_order_relaxed)
#define STAT_SET(name, v) atomic_store_explicit(&exp_stats.name, (uint64_t)(v), memory_order_relaxed)

/* Starts the uptime clock. */
void exp_stats_start(void);

/* Remembers the latest error for STATUS (last_error, last_error_at) and logs
 * it as a warning (at most one line per 10 s, with a count of the ones not logged).
 * Newlines and other control characters become spaces so the line stays one
 * key=value line. */
void exp_stats_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Remembers the error for STATUS like exp_stats_error, but logs it only the
 * first time this exact `reason` is seen (a backend rejecting every batch for
 * the same reason says so once, not once per batch). */
void exp_stats_error_once(const char *reason, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The STATUS frame text: "key=value\n" lines, keys as in docs/EXPORTER.md. */
void exp_status_text(struct sbuf *out, const struct exp_config *cfg, size_t queue_depth);

#endif
