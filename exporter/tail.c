/* tail.c — see tail.h. Two tables keyed by trace id: the pending traces
 * (their spans, oldest trace first) and the decisions taken (a ring, oldest
 * forgotten first). Both are open-addressing hash maps with a seeded hash,
 * so ids crafted by a client cannot pile up in one bucket chain. */
#include "tail.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "record.h"
#include "stats.h"

/* ---- a map from trace id to a 64-bit value ------------------------------- */

struct slot {
	uint8_t id[16];
	uint64_t val;
	bool used;
};

struct idmap {
	struct slot *s;
	size_t cap, n; /* cap: a power of two, kept at most half full */
	uint64_t seed;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static size_t slot_of(const struct idmap *m, const uint8_t id[16])
{
	uint64_t lo, hi;
	memcpy(&lo, id, 8);
	memcpy(&hi, id + 8, 8);
	return (size_t)(mix64(lo ^ m->seed) ^ mix64(hi + m->seed)) & (m->cap - 1);
}

static struct slot *map_find(const struct idmap *m, const uint8_t id[16])
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(m, id);; i = (i + 1) & (m->cap - 1)) {
		if (!m->s[i].used)
			return NULL;
		if (memcmp(m->s[i].id, id, 16) == 0)
			return &m->s[i];
	}
}

static bool map_grow(struct idmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 1024;
	struct slot *s = calloc(cap, sizeof *s), *old = m->s;
	if (!s)
		return false;
	size_t old_cap = m->cap;
	m->s = s;
	m->cap = cap;
	for (size_t i = 0; i < old_cap; i++) {
		if (!old[i].used)
			continue;
		size_t j = slot_of(m, old[i].id);
		while (s[j].used)
			j = (j + 1) & (cap - 1);
		s[j] = old[i];
	}
	free(old);
	return true;
}

/* False when out of memory. The id must not be in the map. */
static bool map_put(struct idmap *m, const uint8_t id[16], uint64_t val)
{
	if ((m->n + 1) * 2 > m->cap && !map_grow(m))
		return false;
	size_t i = slot_of(m, id);
	while (m->s[i].used)
		i = (i + 1) & (m->cap - 1);
	memcpy(m->s[i].id, id, 16);
	m->s[i].val = val;
	m->s[i].used = true;
	m->n++;
	return true;
}

/* Backward-shift deletion: no tombstones, probe chains stay short. */
static void map_del(struct idmap *m, struct slot *victim)
{
	size_t mask = m->cap - 1, i = (size_t)(victim - m->s);
	for (size_t j = (i + 1) & mask; m->s[j].used; j = (j + 1) & mask) {
		size_t home = slot_of(m, m->s[j].id);
		/* move j back to i if i lies cyclically in [home, j) */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->s[i] = m->s[j];
			i = j;
		}
	}
	m->s[i].used = false;
	m->n--;
}

/* ---- the sampler --------------------------------------------------------- */

struct trace {
	uint8_t id[16];
	uint64_t first_ms;
	struct exp_span *head, **tail;
	uint32_t n;
	size_t bytes;
	bool interesting; /* an ERROR or slow span */
	struct trace *newer, *older;
};

struct decision {
	uint8_t id[16];
	uint64_t at_ms;
	bool keep;
};

struct exp_tail {
	struct exp_tail_config c;
	uint64_t slow_ns, decided_ttl_ms;
	struct idmap pending; /* id -> struct trace * */
	struct trace *oldest, *newest;
	size_t pending_spans, pending_bytes, pending_traces;
	struct idmap decided; /* id -> index in ring */
	struct decision *ring;
	size_t ring_first, ring_n;
};

bool exp_tail_ratio_keeps(const uint8_t trace_id[16], double ratio)
{
	uint64_t x = 0;
	for (int i = 8; i < 16; i++)
		x = (x << 8) | trace_id[i];
	x >>= 1; /* 63-bit value compared with ratio * 2^63, as the shim does */
	if (ratio >= 1.0) /* (double)(2^63 - 1) rounds up to 2^63: say it outright */
		return true;
	return ratio > 0.0 && x < (uint64_t)(ratio * 9223372036854775808.0);
}

static bool span_interesting(const struct exp_tail *t, const struct exp_span *s)
{
	if (s->len <= EXP_REC_STATUS)
		return false;
	uint64_t start = exp_rec_u64(s->rec + EXP_REC_START), end = exp_rec_u64(s->rec + EXP_REC_END);
	return s->rec[EXP_REC_STATUS] == TS_STATUS_ERROR || (end >= start && end - start >= t->slow_ns);
}

static void publish(const struct exp_tail *t)
{
	STAT_SET(tail_pending_spans, t->pending_spans);
	STAT_SET(tail_pending_traces, t->pending_traces);
}

static void list_append(struct exp_span_list *out, struct exp_span *s)
{
	s->next = NULL;
	*out->tail = s;
	out->tail = &s->next;
	out->n++;
}

/* ---- decisions ------------------------------------------------------------ */

static void forget_oldest_decision(struct exp_tail *t)
{
	struct decision *d = &t->ring[t->ring_first];
	struct slot *s = map_find(&t->decided, d->id);
	if (s && s->val == t->ring_first)
		map_del(&t->decided, s);
	t->ring_first = (t->ring_first + 1) % EXP_TAIL_DECIDED_MAX;
	t->ring_n--;
}

static void prune_decisions(struct exp_tail *t, uint64_t now_ms)
{
	while (t->ring_n && t->ring[t->ring_first].at_ms + t->decided_ttl_ms <= now_ms)
		forget_oldest_decision(t);
}

static void remember(struct exp_tail *t, const uint8_t id[16], bool keep, uint64_t now_ms)
{
	if (!t->ring)
		return;
	if (t->ring_n == EXP_TAIL_DECIDED_MAX)
		forget_oldest_decision(t);
	size_t idx = (t->ring_first + t->ring_n) % EXP_TAIL_DECIDED_MAX;
	struct slot *old = map_find(&t->decided, id);
	if (old) /* decided again (after its pending spans were decided early): newest wins */
		map_del(&t->decided, old);
	if (!map_put(&t->decided, id, idx))
		return; /* out of memory: late spans will simply start a new trace */
	memcpy(t->ring[idx].id, id, 16);
	t->ring[idx].at_ms = now_ms;
	t->ring[idx].keep = keep;
	t->ring_n++;
}

/* true: keep, false: drop; -1 when unknown. */
static int decided(const struct exp_tail *t, const uint8_t id[16])
{
	struct slot *s = map_find(&t->decided, id);
	return s ? t->ring[s->val].keep : -1;
}

/* ---- pending traces ------------------------------------------------------- */

static void unlink_trace(struct exp_tail *t, struct trace *tr)
{
	if (tr->older)
		tr->older->newer = tr->newer;
	else
		t->oldest = tr->newer;
	if (tr->newer)
		tr->newer->older = tr->older;
	else
		t->newest = tr->older;
	struct slot *s = map_find(&t->pending, tr->id);
	if (s)
		map_del(&t->pending, s);
	t->pending_spans -= tr->n;
	t->pending_bytes -= tr->bytes;
	t->pending_traces--;
}

static void decide(struct exp_tail *t, struct trace *tr, uint64_t now_ms, struct exp_span_list *out)
{
	unlink_trace(t, tr);
	bool keep = tr->interesting || exp_tail_ratio_keeps(tr->id, t->c.ratio);
	if (keep) {
		for (struct exp_span *s = tr->head, *next; s; s = next) {
			next = s->next;
			list_append(out, s);
		}
		STAT_ADD(tail_kept_traces, 1);
	} else {
		exp_span_free_list(tr->head);
		STAT_ADD(dropped_sampled_out, tr->n);
		STAT_ADD(tail_dropped_traces, 1);
	}
	remember(t, tr->id, keep, now_ms);
	free(tr);
}

static struct trace *new_trace(struct exp_tail *t, const uint8_t id[16], uint64_t now_ms)
{
	struct trace *tr = calloc(1, sizeof *tr);
	if (!tr)
		return NULL;
	memcpy(tr->id, id, 16);
	tr->first_ms = now_ms;
	tr->tail = &tr->head;
	if (!map_put(&t->pending, id, (uint64_t)(uintptr_t)tr)) {
		free(tr);
		return NULL;
	}
	tr->older = t->newest;
	if (t->newest)
		t->newest->newer = tr;
	else
		t->oldest = tr;
	t->newest = tr;
	t->pending_traces++;
	return tr;
}

/* Out of memory for the bookkeeping: the span goes out undecided (kept),
 * rather than being lost. */
static void hold(struct exp_tail *t, struct exp_span *s, uint64_t now_ms, struct exp_span_list *out)
{
	const uint8_t *id = s->rec + EXP_REC_TRACE_ID;
	struct slot *sl = map_find(&t->pending, id);
	struct trace *tr = sl ? (struct trace *)(uintptr_t)sl->val : new_trace(t, id, now_ms);
	if (!tr) {
		list_append(out, s);
		return;
	}
	s->next = NULL;
	*tr->tail = s;
	tr->tail = &s->next;
	tr->n++;
	tr->bytes += s->len;
	tr->interesting = tr->interesting || span_interesting(t, s);
	t->pending_spans++;
	t->pending_bytes += s->len;
}

void exp_tail_add(struct exp_tail *t, struct exp_span *list, uint64_t now_ms, struct exp_span_list *out)
{
	prune_decisions(t, now_ms);
	for (struct exp_span *s = list, *next; s; s = next) {
		next = s->next;
		int d = s->len > EXP_REC_STATUS ? decided(t, s->rec + EXP_REC_TRACE_ID) : 1;
		if (d == 1) {
			list_append(out, s);
		} else if (d == 0) {
			s->next = NULL;
			exp_span_free_list(s);
			STAT_ADD(dropped_sampled_out, 1);
		} else {
			hold(t, s, now_ms, out);
		}
	}
	while (t->oldest && (t->pending_spans > t->c.max_spans || t->pending_bytes > t->c.max_bytes)) {
		STAT_ADD(tail_decided_early, 1);
		decide(t, t->oldest, now_ms, out);
	}
	publish(t);
}

void exp_tail_release(struct exp_tail *t, uint64_t now_ms, bool all, struct exp_span_list *out)
{
	while (t->oldest && (all || t->oldest->first_ms + t->c.wait_ms <= now_ms))
		decide(t, t->oldest, now_ms, out);
	prune_decisions(t, now_ms);
	publish(t);
}

struct exp_tail *exp_tail_new(const struct exp_tail_config *c)
{
	struct exp_tail *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->c = *c;
	t->slow_ns = (uint64_t)c->slow_ms * 1000000u;
	t->decided_ttl_ms = (uint64_t)c->wait_ms * 10;
	if (t->decided_ttl_ms < EXP_TAIL_DECIDED_MIN_MS)
		t->decided_ttl_ms = EXP_TAIL_DECIDED_MIN_MS;
	t->ring = calloc(EXP_TAIL_DECIDED_MAX, sizeof *t->ring);
	if (getrandom(&t->pending.seed, sizeof t->pending.seed, GRND_NONBLOCK) != sizeof t->pending.seed)
		t->pending.seed = (uint64_t)(uintptr_t)t ^ 0x9E3779B97F4A7C15ull;
	t->decided.seed = mix64(t->pending.seed);
	if (!t->ring || !map_grow(&t->pending) || !map_grow(&t->decided)) {
		exp_tail_free(t);
		return NULL;
	}
	return t;
}

void exp_tail_free(struct exp_tail *t)
{
	if (!t)
		return;
	while (t->oldest) {
		struct trace *tr = t->oldest;
		unlink_trace(t, tr);
		exp_span_free_list(tr->head);
		free(tr);
	}
	free(t->pending.s);
	free(t->decided.s);
	free(t->ring);
	free(t);
}
