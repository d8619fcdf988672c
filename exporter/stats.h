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

/* X(name): each becomes a counter and a `name=value` STATUS line, in this order. */
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
	X(export_errors)

struct exp_stats {
#define X(name) _Atomic uint64_t name;
	EXP_COUNTERS(X)
#undef X
};

extern struct exp_stats exp_stats;

#define STAT_ADD(name, n) atomic_fetch_add_explicit(&exp_stats.name, (uint64_t)(n), memory_order_relaxed)
#define STAT_GET(name) atomic_load_explicit(&exp_stats.name, memory_order_relaxed)

/* Starts the uptime clock. */
void exp_stats_start(void);

/* Remembers the latest error for STATUS (last_error) and logs it as a warning
 * (at most one line per 10 s, with a count of the ones not logged).
 * Newlines and other control characters become spaces so the line stays one
 * key=value line. */
void exp_stats_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The STATUS frame text: "key=value\n" lines, keys as in docs/EXPORTER.md. */
void exp_status_text(struct sbuf *out, const struct exp_config *cfg, size_t queue_depth);

#endif
