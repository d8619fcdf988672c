/* sink.h — where batches go. Each sink takes a whole batch and says how it
 * went. The file sink writes it at once; the otlp sink encodes it and hands
 * it to its delivery thread (delivery.h), which retries, backs off and
 * spools on its own, so a failing backend never holds up the export thread
 * (and never the receive loop). */
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
	bool answered;           /* an HTTP status came back (PERMANENT: the backend refused the data) */
	uint64_t rejected;       /* OK: partial_success.rejected_spans */
	char reason[160];        /* short and stable (for "logged once per reason"); "" if OK */
	char error[240];         /* the full message; partial_success's message when OK */
};

struct exp_sink {
	const char *name;
	/* Called from the export thread only. */
	struct exp_deliver_result (*deliver)(struct exp_sink *s, const struct exp_batch *b);
	/* Optional, for sinks that deliver in the background: shutdown has begun,
	 * finish within budget_ms (called before the last deliver() calls)... */
	void (*begin_close)(struct exp_sink *s, uint32_t budget_ms);
	/* ...and no deliver() will follow: wait for the background work to end. */
	void (*end_input)(struct exp_sink *s);
	void (*destroy)(struct exp_sink *s);
	bool async; /* OK only means "accepted": the sink counts exported_spans itself */
	bool skip;  /* set by the export thread (e.g. dead backend at shutdown) */
};

/* Both return NULL with a reason in err when the sink cannot work at all. */
struct exp_sink *exp_file_sink_open(const char *path, uint64_t max_bytes, char *err, size_t errcap);
struct exp_sink *exp_otlp_sink_open(const struct exp_config *c, char *err, size_t errcap);

#endif
