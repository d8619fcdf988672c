/* sink.h — where batches go. Each sink encodes and delivers a whole batch and
 * says how it went; the export thread decides what to do about failures.
 * Today a failed batch is counted and dropped; the result already tells
 * retryable from permanent failures (and carries Retry-After) so that retry,
 * backoff and the on-disk spool can be added in the export thread alone. */
#ifndef TRACESHIM_EXP_SINK_H
#define TRACESHIM_EXP_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "config.h"

enum exp_deliver_kind {
	EXP_DELIVER_OK,
	EXP_DELIVER_RETRYABLE, /* the same batch may succeed later */
	EXP_DELIVER_PERMANENT, /* sending it again will not help */
};

struct exp_deliver_result {
	enum exp_deliver_kind kind;
	uint32_t retry_after_ms; /* RETRYABLE: the server's Retry-After, 0 if none */
	char error[240];
};

struct exp_sink {
	const char *name;
	/* Called from the export thread only. */
	struct exp_deliver_result (*deliver)(struct exp_sink *s, const struct exp_batch *b);
	void (*destroy)(struct exp_sink *s);
	bool skip; /* set by the export thread (e.g. dead backend at shutdown) */
};

/* Both return NULL with a reason in err when the sink cannot work at all. */
struct exp_sink *exp_file_sink_open(const char *path, char *err, size_t errcap);
struct exp_sink *exp_otlp_sink_open(const struct exp_config *c, char *err, size_t errcap);

#endif
