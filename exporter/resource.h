/* resource.h — the OTel resource of one traced process, from its HELLO frame.
 * Reference-counted: the connection holds one reference and every queued span
 * holds one, so a resource outlives its disconnected client until the last of
 * its spans has been written. */
#ifndef TRACESHIM_EXP_RESOURCE_H
#define TRACESHIM_EXP_RESOURCE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct exp_resource {
	atomic_uint refs;
	uint32_t pid;
	uint8_t n_attrs;
	struct ts_attr attrs[TS_MAX_ATTRS + 2]; /* + service.name, process.pid if missing */
	size_t payload_len;
	uint8_t payload[]; /* copy of the HELLO payload; attrs point into it */
};

/* From a HELLO payload; NULL if it does not decode (or out of memory, or
 * over EXP_RESOURCE_BUDGET_BYTES for all live resources, with *oom set). Adds service.name=unknown_service and process.pid when the
 * shim did not send them. One reference, owned by the caller. */
struct exp_resource *exp_resource_from_hello(const void *payload, size_t len, bool *oom);

/* service.name=unknown_service, for SPANS that arrive before any HELLO. */
struct exp_resource *exp_resource_unknown(void);

void exp_resource_ref(struct exp_resource *r);
/* Bytes held by live resources (the budget's measure). */
size_t exp_resource_live_bytes(void);
void exp_resource_unref(struct exp_resource *r);
/* n references at once (n > 0): the span queue takes and drops them per run
 * of spans of one process, not per span — one atomic instruction each way
 * instead of two per span, on a line the receive and export threads share. */
void exp_resource_ref_n(struct exp_resource *r, uint32_t n);
void exp_resource_unref_n(struct exp_resource *r, uint32_t n);

/* Same attributes in the same order: spans of both go into one ResourceSpans. */
bool exp_resource_equal(const struct exp_resource *a, const struct exp_resource *b);

#endif
