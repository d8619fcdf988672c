/* delivery.c — see delivery.h. */
#include "delivery.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "otlp_http.h"
#include "spool.h"
#include "stats.h"

/* One encoded batch waiting in memory. */
struct item {
	struct item *next;
	uint64_t seq;
	uint32_t n_spans;
	unsigned tries;
	uint64_t born_ms; /* CLOCK_MONOTONIC, when it was handed over */
	size_t len;
	char *data;
};

/* What to send next: the oldest batch, in memory or in the spool. */
struct pick {
	bool from_spool;
	uint64_t seq;
	uint32_t n_spans;
	struct exp_spool_entry entry; /* from_spool */
};

/* Where a delivery counts what becomes of its batches: the traces' counts
 * spans in the span counters, the metrics' (exp_delivery_open_metrics) data
 * points in the metrics_* ones. NULL: not counted (the metrics have no spool). */
struct counters {
	const char *name, *unit; /* for messages: "otlp" "spans", "otlp metrics" "data points" */
	_Atomic uint64_t *exported, *rejected, *failed, *errors, *attempts, *retries, *spool_full, *spooled,
		*replayed, *outbox;
};

static void cadd(_Atomic uint64_t *c, uint64_t n)
{
	if (c)
		atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

struct exp_delivery {
	struct counters ctr;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC: new batch, shutdown steps */
	struct item *head, **tailp;
	size_t mem_bytes, mem_spans; /* of the list (not the batch in flight) */
	uint32_t inflight_mem_spans;
	struct exp_spool spool;
	bool have_spool;
	uint64_t next_seq;
	uint32_t window_ms, timeout_ms;
	/* retry state */
	unsigned failures; /* consecutive retryable failures */
	uint64_t next_try_ms;
	uint64_t last_failed_seq;
	uint64_t rng;
	/* shutdown */
	bool closing, input_closed, give_up, thread_done;
	uint64_t close_deadline_ms;
	struct exp_otlp_client *client;
	struct sbuf body; /* the delivery thread's buffer for spooled batches */
	/* The memory of a delivered batch, handed back to the export thread by
	 * the next push to encode into: a new buffer per batch cost a chain of
	 * reallocs and a page fault per 4 KiB of fresh memory (glibc gives a
	 * thread arena's freed top back to the kernel), an eighth of the export
	 * thread's time. */
	char *spare;
	size_t spare_cap;
	pthread_t thread;
	bool started;
};

/* ---- backoff ------------------------------------------------------------ */

uint32_t exp_backoff_ms(unsigned failures, uint32_t retry_after_ms, uint64_t rnd)
{
	if (retry_after_ms) {
		uint32_t ra = retry_after_ms < EXP_RETRY_AFTER_MAX_MS ? retry_after_ms : EXP_RETRY_AFTER_MAX_MS;
		return ra + (uint32_t)(rnd % (ra / 10 + 1));
	}
	uint32_t d = EXP_BACKOFF_BASE_MS;
	for (unsigned i = 1; i < failures && d < EXP_BACKOFF_MAX_MS; i++)
		d *= 2;
	if (d > EXP_BACKOFF_MAX_MS)
		d = EXP_BACKOFF_MAX_MS;
	return d / 2 + (uint32_t)(rnd % (d / 2 + 1));
}

static uint64_t next_random(struct exp_delivery *d)
{
	uint64_t x = d->rng; /* xorshift64* */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	d->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static void seed_random(struct exp_delivery *d)
{
	if (getrandom(&d->rng, sizeof d->rng, GRND_NONBLOCK) != (ssize_t)sizeof d->rng)
		d->rng = exp_mono_ms() ^ ((uint64_t)getpid() << 32);
	if (!d->rng)
		d->rng = 0x9E3779B97F4A7C15ull;
}

/* ---- memory list and spool (lock held) ---------------------------------- */

static void publish(const struct exp_delivery *d)
{
	atomic_store_explicit(d->ctr.outbox, d->mem_spans + d->inflight_mem_spans, memory_order_relaxed);
}

static struct item *detach_head(struct exp_delivery *d)
{
	struct item *it = d->head;
	d->head = it->next;
	if (!d->head)
		d->tailp = &d->head;
	it->next = NULL;
	d->mem_bytes -= it->len;
	d->mem_spans -= it->n_spans;
	return it;
}

static void put_back_head(struct exp_delivery *d, struct item *it)
{
	it->next = d->head;
	d->head = it;
	if (!it->next)
		d->tailp = &it->next;
	d->mem_bytes += it->len;
	d->mem_spans += it->n_spans;
}

static void free_item(struct item *it)
{
	free(it->data);
	free(it);
}

/* The head batch leaves memory for the spool — or is lost, counted, when
 * there is no spool or it cannot be written. */
static void spill_head(struct exp_delivery *d)
{
	struct item *it = detach_head(d);
	uint64_t evicted = 0;
	char err[300];
	if (!d->have_spool) {
		cadd(d->ctr.spool_full, it->n_spans);
		exp_stats_error("%s: %" PRIu32 " undelivered %s dropped: no spool", d->ctr.name, it->n_spans,
				d->ctr.unit);
	} else if (exp_spool_put(&d->spool, it->seq, it->n_spans, it->data, it->len, &evicted, err,
				 sizeof err) < 0) {
		cadd(d->ctr.spool_full, it->n_spans);
		exp_stats_error("%s (%" PRIu32 " spans dropped)", err, it->n_spans);
	} else {
		cadd(d->ctr.spooled, it->n_spans);
		log_debug("spooled batch %" PRIu64 " (%" PRIu32 " spans)", it->seq, it->n_spans);
	}
	if (evicted) {
		cadd(d->ctr.spool_full, evicted);
		exp_stats_error("spool %s over %" PRIu64 " bytes: dropped its oldest %" PRIu64 " spans",
				d->spool.dir, d->spool.max_bytes, evicted);
	}
	free_item(it);
}

/* Batches that waited too long, or do not fit in memory, go to the spool
 * (all of them when `all`). The batch in flight is not in the list. */
static void spill(struct exp_delivery *d, uint64_t now, bool all)
{
	while (d->head && (all || d->mem_bytes > EXP_OUTBOX_MAX_BYTES ||
			   now >= d->head->born_ms + d->window_ms))
		spill_head(d);
	publish(d);
}

static bool pick_oldest(struct exp_delivery *d, struct pick *p)
{
	const struct exp_spool_entry *se = d->have_spool ? exp_spool_oldest(&d->spool) : NULL;
	if (se && (!d->head || se->seq < d->head->seq)) {
		*p = (struct pick){.from_spool = true, .seq = se->seq, .n_spans = se->n_spans, .entry = *se};
		return true;
	}
	if (!d->head)
		return false;
	*p = (struct pick){.seq = d->head->seq, .n_spans = d->head->n_spans};
	return true;
}

static uint64_t earliest(uint64_t a, uint64_t b) { return !a ? b : (!b ? a : (a < b ? a : b)); }

/* Waits for a signal or until CLOCK_MONOTONIC `until_ms` (0: no timeout),
 * also waking for the next batch that ages into the spool and the shutdown
 * deadline. */
static void wait_locked(struct exp_delivery *d, uint64_t until_ms)
{
	if (d->head)
		until_ms = earliest(until_ms, d->head->born_ms + d->window_ms);
	if (d->closing)
		until_ms = earliest(until_ms, d->close_deadline_ms);
	if (!until_ms) {
		pthread_cond_wait(&d->cond, &d->lock);
		return;
	}
	struct timespec ts = {.tv_sec = (time_t)(until_ms / 1000), .tv_nsec = (long)(until_ms % 1000) * 1000000L};
	pthread_cond_timedwait(&d->cond, &d->lock, &ts);
}

/* ---- outcomes (lock held) ----------------------------------------------- */

static void forget(struct exp_delivery *d, const struct pick *p, struct item *it)
{
	if (p->from_spool) {
		exp_spool_remove(&d->spool, p->seq);
	} else if (!d->spare) {
		d->spare = it->data;
		d->spare_cap = it->len;
		free(it);
	} else {
		free_item(it);
	}
}

static void on_ok(struct exp_delivery *d, const struct pick *p, struct item *it,
		  const struct exp_deliver_result *r)
{
	uint64_t rejected = r->rejected < p->n_spans ? r->rejected : p->n_spans;
	cadd(d->ctr.exported, p->n_spans - rejected);
	cadd(d->ctr.rejected, rejected);
	if (*r->reason)
		exp_stats_error_once(r->reason, "%s: %s", d->ctr.name, r->error);
	if (p->from_spool)
		cadd(d->ctr.replayed, p->n_spans);
	if (d->failures)
		log_info("%s: backend accepts batches again after %u failed attempts", d->ctr.name, d->failures);
	forget(d, p, it);
	d->failures = 0;
	d->next_try_ms = 0;
	d->last_failed_seq = 0;
}

static void on_permanent(struct exp_delivery *d, const struct pick *p, struct item *it,
			 const struct exp_deliver_result *r)
{
	cadd(d->ctr.errors, 1);
	if (r->answered)
		cadd(d->ctr.rejected, p->n_spans);
	else
		cadd(d->ctr.failed, p->n_spans);
	exp_stats_error_once(r->reason, "%s: %s (%" PRIu32 " %s dropped, not retryable)", d->ctr.name, r->error,
			     p->n_spans, d->ctr.unit);
	forget(d, p, it);
	d->failures = 0;
	d->next_try_ms = 0;
	d->last_failed_seq = 0;
}

static void on_retryable(struct exp_delivery *d, const struct pick *p, struct item *it,
			 const struct exp_deliver_result *r)
{
	cadd(d->ctr.errors, 1);
	d->failures++;
	uint32_t wait = exp_backoff_ms(d->failures, r->retry_after_ms, next_random(d));
	d->next_try_ms = exp_mono_ms() + wait;
	d->last_failed_seq = p->seq;
	exp_stats_error("%s: %s (%" PRIu32 " %s, retryable: next attempt in %.1f s)", d->ctr.name, r->error,
			p->n_spans, d->ctr.unit, wait / 1000.0);
	if (it) {
		it->tries++;
		put_back_head(d, it); /* still the oldest: nothing overtakes it */
	}
	if (d->closing)
		d->give_up = true; /* the next exporter retries it from the spool */
}

/* One POST of the oldest batch; the lock is dropped around the network. */
static void attempt(struct exp_delivery *d, const struct pick *p)
{
	struct item *it = NULL;
	const void *body;
	size_t len;
	if (d->have_spool)
		d->spool.protected_seq = p->seq; /* not evicted while we send it */
	if (p->from_spool) {
		char why[300];
		pthread_mutex_unlock(&d->lock);
		int rc = exp_spool_read(&d->spool, p->entry, &d->body, why, sizeof why);
		pthread_mutex_lock(&d->lock);
		if (rc < 0) {
			d->spool.protected_seq = 0;
			STAT_ADD(spool_corrupt_files, 1);
			exp_stats_error("spool %s: %s: deleted", d->spool.dir, why);
			exp_spool_remove(&d->spool, p->seq);
			return;
		}
		body = d->body.p;
		len = d->body.len;
	} else {
		it = detach_head(d);
		d->inflight_mem_spans = it->n_spans;
		body = it->data;
		len = it->len;
	}
	publish(d);
	bool retry = p->seq == d->last_failed_seq;
	uint32_t timeout = d->timeout_ms;
	if (d->closing) {
		uint64_t now = exp_mono_ms();
		uint64_t left = d->close_deadline_ms > now ? d->close_deadline_ms - now : 1;
		timeout = left < timeout ? (uint32_t)left : timeout;
	}
	pthread_mutex_unlock(&d->lock);
	struct exp_deliver_result r = exp_otlp_post(d->client, body, len, timeout);
	pthread_mutex_lock(&d->lock);
	if (d->have_spool)
		d->spool.protected_seq = 0;
	d->inflight_mem_spans = 0;
	cadd(d->ctr.attempts, 1);
	if (retry)
		cadd(d->ctr.retries, 1);
	if (r.kind == EXP_DELIVER_OK)
		on_ok(d, p, it, &r);
	else if (r.kind == EXP_DELIVER_PERMANENT)
		on_permanent(d, p, it, &r);
	else
		on_retryable(d, p, it, &r);
	publish(d);
}

/* ---- the delivery thread ------------------------------------------------ */

static void *delivery_main(void *arg)
{
	struct exp_delivery *d = arg;
	pthread_mutex_lock(&d->lock);
	for (;;) {
		uint64_t now = exp_mono_ms();
		spill(d, now, false);
		if (d->closing && (d->give_up || now >= d->close_deadline_ms))
			break;
		struct pick p;
		if (!pick_oldest(d, &p)) {
			if (d->closing && d->input_closed)
				break;
			wait_locked(d, 0);
			continue;
		}
		if (d->next_try_ms > now) {
			if (d->closing) { /* the backend is failing: spool, don't wait */
				d->give_up = true;
				continue;
			}
			wait_locked(d, d->next_try_ms);
			continue;
		}
		attempt(d, &p);
	}
	spill(d, 0, true);
	d->thread_done = true;
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* ---- API ---------------------------------------------------------------- */

bool exp_delivery_push(struct exp_delivery *d, struct sbuf *body, uint32_t n_spans)
{
	struct item *it = malloc(sizeof *it);
	if (!it) {
		cadd(d->ctr.failed, n_spans);
		exp_stats_error("%s: out of memory queueing %" PRIu32 " %s", d->ctr.name, n_spans, d->ctr.unit);
		return false;
	}
	/* The encoder's buffer grew by doubling: give the spare room back before
	 * the batch waits, maybe for seconds, in memory whose bound
	 * (EXP_OUTBOX_MAX_BYTES) counts lengths. glibc shrinks in place. */
	char *data = body->len ? realloc(body->p, body->len) : NULL;
	*it = (struct item){.n_spans = n_spans, .born_ms = exp_mono_ms(), .len = body->len,
			    .data = data ? data : body->p};
	sbuf_init(body); /* the bytes are ours now */
	pthread_mutex_lock(&d->lock);
	if (d->spare) { /* empty, but with room to encode the next batch into */
		body->p = d->spare;
		body->cap = d->spare_cap;
		d->spare = NULL;
	}
	it->seq = d->next_seq++;
	*d->tailp = it;
	d->tailp = &it->next;
	d->mem_bytes += it->len;
	d->mem_spans += it->n_spans;
	/* Over the memory bound, or after the delivery thread is gone, this
	 * thread writes to the spool itself. */
	spill(d, it->born_ms, d->thread_done);
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return true;
}

void exp_delivery_begin_close(struct exp_delivery *d, uint32_t budget_ms)
{
	pthread_mutex_lock(&d->lock);
	if (!d->closing) {
		d->closing = true;
		d->close_deadline_ms = exp_mono_ms() + budget_ms;
		exp_otlp_abort_at(d->client, d->close_deadline_ms); /* cuts a POST in flight */
	}
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

void exp_delivery_finish(struct exp_delivery *d)
{
	exp_delivery_begin_close(d, 0); /* no-op if begun already */
	pthread_mutex_lock(&d->lock);
	d->input_closed = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (d->started)
		pthread_join(d->thread, NULL);
	d->started = false;
	pthread_mutex_lock(&d->lock);
	spill(d, 0, true);
	d->thread_done = true;
	pthread_mutex_unlock(&d->lock);
	if (d->have_spool && d->spool.n)
		log_info("spool %s holds %zu batches (%" PRIu64 " spans) for the next exporter", d->spool.dir,
			 d->spool.n, d->spool.spans);
}

static int init_sync(struct exp_delivery *d)
{
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC))
		return -1;
	int rc = pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	return (rc || pthread_mutex_init(&d->lock, NULL)) ? -1 : 0;
}

static struct exp_delivery *delivery_open(const struct exp_config *c, const struct counters *ctr, char *err,
					  size_t errcap)
{
	struct exp_delivery *d = calloc(1, sizeof *d);
	if (!d || init_sync(d) < 0) {
		free(d);
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	d->ctr = *ctr;
	d->tailp = &d->head;
	d->window_ms = c->export_timeout_ms;
	d->timeout_ms = c->timeout_ms;
	d->spool = (struct exp_spool){.dir_fd = -1, .lock_fd = -1};
	sbuf_init(&d->body);
	seed_random(d);
	if (!(d->client = exp_otlp_client_open(c, err, errcap))) {
		exp_delivery_free(d);
		return NULL;
	}
	char why[EXP_PATH_MAX + 128];
	if (!*c->spool_dir) {
		log_info("no spool (TRACESHIM_SPOOL_MAX_BYTES=0): undeliverable batches are dropped");
	} else if (exp_spool_open(&d->spool, c->spool_dir, c->spool_max_bytes, why, sizeof why) < 0) {
		exp_stats_error("%s; going on without a spool (undeliverable batches are dropped)", why);
	} else {
		d->have_spool = true;
	}
	d->next_seq = (d->have_spool ? d->spool.max_seq : 0) + 1;
	if (pthread_create(&d->thread, NULL, delivery_main, d) != 0) {
		snprintf(err, errcap, "cannot start the delivery thread");
		exp_delivery_free(d);
		return NULL;
	}
	d->started = true;
	return d;
}

struct exp_delivery *exp_delivery_open(const struct exp_config *c, char *err, size_t errcap)
{
	static const struct counters spans = {
		.name = "otlp", .unit = "spans", .exported = &exp_stats.exported_spans,
		.rejected = &exp_stats.dropped_rejected, .failed = &exp_stats.dropped_export_failed,
		.errors = &exp_stats.export_errors, .attempts = &exp_stats.export_attempts,
		.retries = &exp_stats.export_retries, .spool_full = &exp_stats.dropped_spool_full,
		.spooled = &exp_stats.spooled_spans_total, .replayed = &exp_stats.spool_replayed_spans,
		.outbox = &exp_stats.outbox_spans};
	return delivery_open(c, &spans, err, errcap);
}

/* The same client and rules, to the metrics endpoint, without a spool: a
 * cumulative export that waited OTEL_BSP_EXPORT_TIMEOUT is dropped (counted),
 * the next one carries the same totals. */
struct exp_delivery *exp_delivery_open_metrics(const struct exp_config *c, char *err, size_t errcap)
{
	static const struct counters points = {
		.name = "otlp metrics", .unit = "data points", .exported = &exp_stats.metrics_exported_points,
		.rejected = &exp_stats.metrics_dropped_points, .failed = &exp_stats.metrics_dropped_points,
		.errors = &exp_stats.metrics_export_errors, .attempts = &exp_stats.metrics_export_attempts,
		.retries = &exp_stats.metrics_export_retries, .spool_full = &exp_stats.metrics_dropped_points,
		.outbox = &exp_stats.metrics_outbox_points};
	struct exp_config *mc = malloc(sizeof *mc);
	if (!mc) {
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	*mc = *c; /* the headers are shared, not copied: c outlives the delivery */
	snprintf(mc->endpoint, sizeof mc->endpoint, "%s", c->metrics_endpoint);
	mc->spool_dir[0] = '\0';
	struct exp_delivery *d = delivery_open(mc, &points, err, errcap);
	free(mc);
	return d;
}

void exp_delivery_free(struct exp_delivery *d)
{
	if (!d)
		return;
	if (d->started)
		exp_delivery_finish(d);
	while (d->head)
		free_item(detach_head(d));
	if (d->have_spool)
		exp_spool_close(&d->spool);
	exp_otlp_client_close(d->client);
	sbuf_free(&d->body);
	free(d->spare);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d);
}
