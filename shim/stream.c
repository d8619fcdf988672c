/* stream.c — see stream.h: streams, sniffing, edits and their count mapping. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proto/w3c.h"
#include "stream.h"

/* ---- iovec helpers ---------------------------------------------------------------- */

size_t ts_iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

int ts_iov_byte(const struct iovec *iov, int n, size_t off)
{
	for (int i = 0; i < n; i++) {
		if (off < iov[i].iov_len)
			return ((const unsigned char *)iov[i].iov_base)[off];
		off -= iov[i].iov_len;
	}
	return -1;
}

size_t ts_iov_copy(const struct iovec *iov, int n, size_t off, char *out, size_t cap)
{
	size_t got = 0;
	for (int i = 0; i < n && got < cap; i++) {
		size_t l = iov[i].iov_len;
		if (off >= l) {
			off -= l;
			continue;
		}
		size_t take = l - off < cap - got ? l - off : cap - got;
		memcpy(out + got, (const char *)iov[i].iov_base + off, take);
		got += take;
		off = 0;
	}
	return got;
}

/* ---- the lock: the classic three-state futex word (one atomic instruction
 * each way uncontended; ~165 instructions per request cheaper than a
 * pthread mutex, measured for the HTTP layer). The slow paths keep errno:
 * a transport holds the lock around the application's own call. ---------- */

void ts_stream_lock(struct ts_stream *st)
{
	int c = 0;

	if (TS_LIKELY(atomic_compare_exchange_strong_explicit(&st->mu, &c, 1, memory_order_acquire,
							      memory_order_relaxed)))
		return;
	int saved = errno;
	if (c != 2)
		c = atomic_exchange_explicit(&st->mu, 2, memory_order_acquire);
	while (c != 0) {
		syscall(SYS_futex, &st->mu, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
		c = atomic_exchange_explicit(&st->mu, 2, memory_order_acquire);
	}
	errno = saved;
}

void ts_stream_unlock(struct ts_stream *st)
{
	if (TS_LIKELY(atomic_exchange_explicit(&st->mu, 0, memory_order_release) == 1))
		return;
	int saved = errno;
	syscall(SYS_futex, &st->mu, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	errno = saved;
}

/* ---- allocation: recycled, never freed ---------------------------------------- */

static struct ts_stream *free_list;
static pthread_mutex_t free_mu = PTHREAD_MUTEX_INITIALIZER;

struct ts_stream *ts_stream_new(enum ts_carrier_kind carrier)
{
	pthread_mutex_lock(&free_mu);
	struct ts_stream *st = free_list;
	if (st)
		free_list = st->next_free;
	pthread_mutex_unlock(&free_mu);
	if (!st && !(st = calloc(1, sizeof *st)))
		return NULL;
	char *stage = st->stage;
	size_t stage_cap = st->stage_cap;
	memset(st, 0, sizeof *st);
	st->stage = stage;
	st->stage_cap = stage_cap;
	st->carrier = carrier;
	st->generation = atomic_load_explicit(&ts_generation, memory_order_relaxed);
	st->conn.fd = -1;
	return st;
}

static void drop_edits(struct ts_stream *st)
{
	for (unsigned i = 0; i < st->n_edits; i++)
		if (st->edits[i].owned)
			free(st->edits[i].ins);
	st->n_edits = 0;
}

void ts_stream_free(struct ts_stream *st, bool owned)
{
	ts_stream_lock(st);
	if (st->tracer && st->tstate)
		st->tracer->detach(st->tstate, st, owned);
	st->tracer = NULL;
	st->tstate = NULL;
	st->given_up = true;
	drop_edits(st);
	st->stage_pending = false;
	ts_stream_unlock(st);
	pthread_mutex_lock(&free_mu);
	st->next_free = free_list;
	free_list = st;
	pthread_mutex_unlock(&free_mu);
}

void ts_stream_no_edits(struct ts_stream *st)
{
	st->no_edits = true;
	st->may_edit = false;
}

void ts_stream_give_up(struct ts_stream *st)
{
	st->given_up = true;
	/* The tracer's state stays attached until the stream is freed: the
	 * tracer may be the caller, deep in its own functions. */
}

/* ---- sniffing -------------------------------------------------------------------- */

const struct ts_tracer *ts_sniff_bytes(const char *buf, uint8_t len, const struct iovec *iov, int cnt, size_t n,
				       bool from_client, enum ts_claim *verdict)
{
	char probe[TS_SNIFF_MAX];
	size_t have = len;
	memcpy(probe, buf, have);
	have += ts_iov_copy(iov, cnt, 0, probe + have, n < TS_SNIFF_MAX - have ? n : TS_SNIFF_MAX - have);
	bool maybe = false;
	for (unsigned i = 0; ts_tracers[i]; i++) {
		enum ts_claim c = ts_tracers[i]->claim(probe, have, from_client);
		if (c == TS_CLAIM_YES) {
			*verdict = TS_CLAIM_YES;
			return ts_tracers[i];
		}
		maybe |= c == TS_CLAIM_NEED_MORE;
	}
	/* 16 bytes and still unsure: nobody's protocol. */
	*verdict = !maybe || have == TS_SNIFF_MAX ? TS_CLAIM_NO : TS_CLAIM_NEED_MORE;
	return NULL;
}

void ts_sniff_remember(char *buf, uint8_t *len, const struct iovec *iov, int cnt, size_t n)
{
	size_t room = TS_SNIFF_MAX - *len;
	*len = (uint8_t)(*len + ts_iov_copy(iov, cnt, 0, buf + *len, n < room ? n : room));
}

bool ts_stream_attach(struct ts_stream *st, const struct ts_tracer *t, const char *first, size_t n,
		      bool from_client)
{
	void *state = t->attach(st);
	if (!state) {
		st->given_up = true;
		return false;
	}
	st->tracer = t;
	st->tstate = state;
	if (t->plan && !st->no_edits)
		st->may_edit = true;
	if (n) {
		/* What moved while we were unsure is the start of the conversation. */
		struct iovec v = {(void *)first, n};
		bool sent = from_client != st->conn.server;
		if (sent)
			t->sent(state, st, &v, 1, n);
		else
			t->received(state, st, &v, 1, n);
	}
	return true;
}

const struct ts_tracer *ts_stream_sniff(struct ts_stream *st, const struct iovec *iov, int cnt, size_t n,
					bool from_client)
{
	enum ts_claim v;
	const struct ts_tracer *t = ts_sniff_bytes(st->sniff, st->sniff_len, iov, cnt, n, from_client, &v);
	if (v == TS_CLAIM_NO)
		st->given_up = true;
	return t;
}

/* ---- edits --------------------------------------------------------------------------- */

/* The plan being built on this thread (set around the tracer's plan callback). */
static __thread struct ts_plan *planning TS_TLS;

bool ts_stream_edit(struct ts_stream *st, size_t off, size_t del, const char *ins, size_t len)
{
	struct ts_plan *pl = planning;
	if (!pl || st->n_edits >= TS_EDITS_MAX || off + del > pl->app_len || len > UINT32_MAX ||
	    len > sizeof pl->scratch - pl->scratch_used)
		return false;
	uint64_t at = st->out_pos + off;
	for (unsigned i = 0; i < st->n_edits; i++)
		if (st->edits[i].at + st->edits[i].del > at)
			return false; /* overlaps (or precedes) one still owed */
	char *copy = pl->scratch + pl->scratch_used;
	memcpy(copy, ins, len);
	pl->scratch_used += len;
	st->edits[st->n_edits++] = (struct ts_edit){
		.at = at, .del = (uint32_t)del, .ins_len = (uint32_t)len, .ins = copy};
	return true;
}

void ts_stream_cut(struct ts_stream *st, size_t off)
{
	(void)st;
	if (planning && off > 0 && off < planning->limit)
		planning->limit = off;
}

static bool seg_add(struct ts_plan *pl, const void *p, size_t len, uint8_t kind)
{
	if (!len && kind == 0)
		return true;
	if (pl->nseg == TS_PLAN_SEGS)
		return false;
	pl->kind[pl->nseg] = kind;
	pl->seg[pl->nseg++] = (struct iovec){(void *)p, len};
	pl->wire_len += len;
	return true;
}

bool ts_stream_plan(struct ts_stream *st, struct ts_plan *pl, const struct iovec *iov, int cnt)
{
	pl->app_iov = iov;
	pl->app_cnt = cnt;
	pl->app_len = ts_iov_total(iov, cnt);
	pl->scratch_used = 0;
	pl->owed = st->n_edits;
	pl->limit = SIZE_MAX;
	st->new_edits_out = 0;
	if (st->tracer && !st->given_up && st->tracer->plan) {
		planning = pl;
		st->tracer->plan(st->tstate, st, iov, cnt, pl->app_len);
		planning = NULL;
	}
	ts_stream_layout(st, pl, iov, cnt);
	return true;
}

void ts_stream_layout(struct ts_stream *st, struct ts_plan *pl, const struct iovec *iov, int cnt)
{
	pl->app_iov = iov;
	pl->app_cnt = cnt;
	pl->app_len = ts_iov_total(iov, cnt);
	pl->nseg = 0;
	pl->wire_len = 0;
	pl->edited = false;
	if (!st->n_edits && pl->limit >= pl->app_len)
		return;
	/* Lay the write out: application bytes, with each edit's remaining
	 * inserted bytes at its offset and its deleted bytes left out. A write
	 * too scattered to lay out whole goes out in part (a short write, which
	 * the application handles as any other); edits past the cut are
	 * planned again when it sends those bytes again. */
	size_t pos = 0;    /* application offset within this write */
	size_t skip = 0;   /* deleted bytes still to leave out */
	unsigned ei = 0;
	pl->edited = true;
	for (int i = 0; i < cnt; i++) {
		const char *b = iov[i].iov_base;
		size_t l = iov[i].iov_len, o = 0;
		for (;;) {
			if (pos >= pl->limit && !skip)
				return; /* the tracer cut the write here */
			if (!skip && ei < st->n_edits && st->edits[ei].at - st->out_pos == pos) {
				struct ts_edit *e = &st->edits[ei];
				if (!seg_add(pl, e->ins + e->ins_off, e->ins_len - e->ins_off, (uint8_t)(1 + ei)))
					return;
				skip = e->del;
				ei++;
				continue;
			}
			if (o == l)
				break;
			if (skip) {
				size_t s = skip < l - o ? skip : l - o;
				o += s;
				pos += s;
				skip -= s;
				continue;
			}
			size_t take = l - o;
			if (ei < st->n_edits && st->edits[ei].at - st->out_pos - pos < take)
				take = (size_t)(st->edits[ei].at - st->out_pos - pos);
			if (pl->limit - pos < take)
				take = pl->limit - pos;
			if (!seg_add(pl, b + o, take, 0))
				return;
			o += take;
			pos += take;
		}
	}
}

void ts_stream_not_sent(struct ts_stream *st, const struct ts_plan *pl)
{
	st->n_edits = pl->owed; /* the new ones pointed into the plan's scratch */
}

static void tell_sent(struct ts_stream *st, const struct iovec *iov, int cnt, size_t n)
{
	st->out_pos += n;
	/* Also with none of the application's bytes out, when only a new
	 * edit's bytes went: the tracer learns that its edit started. */
	if ((n || st->new_edits_out) && st->tracer && !st->given_up)
		st->tracer->sent(st->tstate, st, iov, cnt, n);
}

size_t ts_stream_taken(struct ts_stream *st, struct ts_plan *pl, size_t wire)
{
	size_t app = 0, w = wire;
	unsigned reached = 0; /* edits whose inserted bytes at least started (1 + index) */
	for (int s = 0; s < pl->nseg; s++) {
		size_t len = pl->seg[s].iov_len;
		size_t t = w < len ? w : len;
		if (pl->kind[s] == 0) {
			app += t;
			w -= t;
			if (t < len)
				break;
			continue;
		}
		struct ts_edit *e = &st->edits[pl->kind[s] - 1];
		if (t == 0 && len > 0)
			break; /* not reached: the application sends these bytes again */
		reached = pl->kind[s];
		e->ins_off += (uint32_t)t;
		w -= t;
		if (t < len)
			break;
		/* All its bytes are out: the application bytes it replaces are
		 * as good as sent. */
		size_t room = pl->app_len - app;
		size_t gone = e->del < room ? e->del : room;
		app += gone;
		e->del -= (uint32_t)gone;
		e->at += gone;
	}
	/* Keep what is owed; forget what is done and what never started (the
	 * tracer plans those again when the application repeats the bytes). */
	unsigned k = 0;
	for (unsigned i = 0; i < st->n_edits; i++) {
		struct ts_edit *e = &st->edits[i];
		bool done = e->ins_off == e->ins_len && e->del == 0;
		bool started = (unsigned)(i + 1) <= reached;
		if (done || !started) {
			if (e->owned)
				free(e->ins);
			continue;
		}
		if (!e->owned) { /* it outlives the plan's scratch */
			size_t left = e->ins_len - e->ins_off;
			char *keep = malloc(left ? left : 1);
			if (!keep) {
				/* Cannot keep the rest: the connection's bytes would be
				 * corrupt either way; stop tracing it. */
				ts_stream_give_up(st);
				continue;
			}
			memcpy(keep, e->ins + e->ins_off, left);
			e->ins = keep;
			e->ins_len = (uint32_t)left;
			e->ins_off = 0;
			e->owned = true;
		}
		st->edits[k++] = *e;
	}
	st->new_edits_out = (uint8_t)(reached > pl->owed ? reached - pl->owed : 0);
	st->n_edits = (uint8_t)k;
	tell_sent(st, pl->app_iov, pl->app_cnt, app);
	return app;
}

void ts_stream_sent_plain(struct ts_stream *st, const struct iovec *iov, int cnt, size_t n)
{
	st->new_edits_out = 0;
	tell_sent(st, iov, cnt, n);
}

void ts_stream_sent_opaque(struct ts_stream *st, size_t n)
{
	st->out_pos += n;
	if (st->tracer && !st->given_up && st->tracer->sent_opaque)
		st->tracer->sent_opaque(st->tstate, st, n);
}

void ts_stream_received(struct ts_stream *st, const struct iovec *iov, int cnt, size_t n)
{
	if (st->tracer && !st->given_up)
		st->tracer->received(st->tstate, st, iov, cnt, n);
}

void ts_stream_ended(struct ts_stream *st, enum ts_end why, const char *error_type, const char *msg)
{
	if (st->tracer && !st->given_up)
		st->tracer->ended(st->tstate, st, why, error_type, msg);
}

/* ---- what tracers may ask --------------------------------------------------------- */

uint16_t ts_stream_local_port(struct ts_stream *st)
{
	if (st->conn.fd < 0)
		return 0;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	struct ts_peer p;
	if (getsockname(st->conn.fd, (struct sockaddr *)&ss, &len) != 0 || !ts_peer_from_sockaddr(&p, &ss, len))
		return 0;
	return p.port;
}

const char *ts_stream_peer_str(struct ts_stream *st, char *buf, size_t cap)
{
	if (!st->conn.peer.family) {
		buf[0] = 0;
		return buf;
	}
	ts_peer_format(&st->conn.peer, buf, (unsigned)cap);
	return buf;
}

/* ---- sockets' streams and init ------------------------------------------------------ */

static void release_fd_stream(int fd, struct ts_fd *e, bool owned)
{
	(void)fd;
	struct ts_stream *st = atomic_exchange(&e->stream, NULL);
	if (st)
		ts_stream_free(st, owned);
}

/* TRACESTATE and BAGGAGE from the environment (env-carrier convention) are
 * the process context's extras; tracestate only with a valid TRACEPARENT. */
void ts_stream_init(void)
{
	ts_fd_release_hook = release_fd_stream;
	const char *tp = getenv("TRACEPARENT"), *tsv = getenv("TRACESTATE"), *bg = getenv("BAGGAGE");
	struct ts_extras *x = &ts_process_extras;
	struct w3c_traceparent t;
	if (ts_cfg.propagate_tracecontext && tp && tsv && w3c_traceparent_parse(tp, strlen(tp), &t)) {
		size_t n = w3c_tracestate_build(x->tracestate, sizeof x->tracestate, tsv, strlen(tsv));
		x->tracestate_len = (uint16_t)(n < sizeof x->tracestate ? n : 0);
	}
	if (ts_cfg.propagate_baggage && bg) {
		size_t n = w3c_baggage_build(x->baggage, sizeof x->baggage, bg, strlen(bg));
		x->baggage_len = (uint16_t)(n < sizeof x->baggage ? n : 0);
	}
	x->tracestate[x->tracestate_len] = 0;
	x->baggage[x->baggage_len] = 0;
}
