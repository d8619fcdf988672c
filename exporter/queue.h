/* queue.h — the bounded FIFO between the receive loop (producer) and the
 * export thread (consumer). Bounded twice: by span count
 * (OTEL_BSP_MAX_QUEUE_SIZE) and by record bytes (TRACESHIM_QUEUE_MAX_BYTES),
 * so neither many small nor a few huge spans can grow the daemon without
 * limit. Spans over either bound are freed and counted (dropped_queue_full). */
#ifndef TRACESHIM_EXP_QUEUE_H
#define TRACESHIM_EXP_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resource.h"

/* One validated span record, copied out of its frame. Holds a reference to
 * the resource of the connection it came from. The record must have passed
 * ts_span_decode: the encoders read it without bounds checks (record.h). */
struct exp_span {
	struct exp_span *next;
	struct exp_resource *res;
	uint16_t len;
	uint8_t rec[]; /* len bytes, then EXP_SPAN_SLACK zero bytes */
};

/* Readable bytes after every record, not counted in len: the JSON encoder
 * reads a short string as a whole 16-byte vector, and the record's last
 * string ends where the record does. */
#define EXP_SPAN_SLACK 16

/* NULL when out of memory. Takes a new reference on res. */
struct exp_span *exp_span_new(struct exp_resource *res, const uint8_t *rec, uint16_t len);
/* The spans of the `count` records back to back at p (each starting with its
 * u16 length), linked in order into *head: exp_span_new for a whole frame at
 * once. Returns how many it made (fewer only when out of memory). */
size_t exp_spans_new(struct exp_resource *res, const uint8_t *p, uint16_t count, struct exp_span **head);
/* Frees a whole list, dropping the resource references. */
void exp_span_free_list(struct exp_span *list);

struct exp_queue {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled at batch size and on close */
	struct exp_span *head, **tailp;
	size_t n, bytes;
	size_t max_spans, max_bytes, batch_size;
	size_t held; /* outside the queue in the consumer's hands, not yet counted (exp_queue_account) */
	bool closed;
	atomic_bool abandoned; /* written under the lock; read without it by exp_queue_abandoned */
};

int exp_queue_init(struct exp_queue *q, size_t max_spans, size_t max_bytes, size_t batch_size);
/* Frees whatever is still queued. */
void exp_queue_destroy(struct exp_queue *q);

/* Takes ownership of the n spans of `list`: queues the longest prefix that
 * fits, frees the rest and returns how many it freed. After close, frees all. */
size_t exp_queue_push(struct exp_queue *q, struct exp_span *list, size_t n);

/* Waits until batch_size spans are queued, the queue is closed, or the
 * CLOCK_MONOTONIC `deadline` passes; then detaches up to batch_size spans
 * into *out (NULL when none) and returns their count; they are now `held`.
 * *done is set once the queue is closed and empty (or abandoned): the
 * consumer's signal to stop. */
size_t exp_queue_take(struct exp_queue *q, const struct timespec *deadline,
		      struct exp_span **out, bool *done);

/* No more pushes; the consumer takes the rest without waiting. */
void exp_queue_close(struct exp_queue *q);

size_t exp_queue_depth(struct exp_queue *q);

/* The consumer's bookkeeping of the spans in its hands, so that a shutdown
 * that gives up on it knows how many it had: `add` more are held (the tail
 * sampler released them), `done` are no longer (counted as exported or
 * dropped, or parked in the tail sampler). Returns false once the queue was
 * abandoned: those spans were counted as dropped by exp_queue_abandon's
 * caller, and the consumer must not count them again. */
bool exp_queue_account(struct exp_queue *q, size_t add, size_t done);

/* Shutdown gives up on a consumer stuck in a sink: returns the spans still
 * queued plus those it holds. From then on exp_queue_take returns nothing
 * (*done set) and exp_queue_account false. The queued spans stay allocated
 * (the process is about to end). */
size_t exp_queue_abandon(struct exp_queue *q);

static inline bool exp_queue_abandoned(struct exp_queue *q)
{
	return atomic_load_explicit(&q->abandoned, memory_order_relaxed);
}

#endif
