/* The stream layer's edit mapping (shim/stream.c), as a property: whatever
 * the application writes in whatever pieces, whatever edits a tracer asks
 * for, and whatever counts the transport's library or kernel takes, the wire
 * carries exactly the application's bytes with the edits applied, and the
 * application is told exactly how many of its bytes went. Run against a
 * simulated transport (the same calls xport_socket.c makes) with random
 * writes, edits and counts. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

/* ---- what stream.c needs from the rest of the shim ---------------------------- */
struct ts_config ts_cfg;
_Atomic uint32_t ts_generation;
struct ts_extras ts_process_extras;
void (*ts_fd_release_hook)(int, struct ts_fd *, bool);
void ts_peer_format(const struct ts_peer *p, char *out, unsigned cap)
{
	(void)p;
	snprintf(out, cap, "peer");
}
bool ts_peer_from_sockaddr(struct ts_peer *p, const void *sa, unsigned len)
{
	(void)p, (void)sa, (void)len;
	return false;
}

/* ---- a tracer that asks for given edits at absolute offsets ------------------ */
#define MAX_E 8
struct want {
	size_t at, del, len;
	char ins[64];
	bool done, planned;
};
static struct want wants[MAX_E];
static int nwants;
static int planned_list[MAX_E], nplanned;
static size_t seen; /* application bytes the tracer was told about */
static size_t stream_pos;

static enum ts_claim t_claim(const char *p, size_t n, bool c)
{
	(void)p, (void)n, (void)c;
	return TS_CLAIM_YES;
}
static void *t_attach(struct ts_stream *st)
{
	(void)st;
	return &wants;
}
static void t_plan(void *t, struct ts_stream *st, const struct iovec *iov, int cnt, size_t len)
{
	(void)t, (void)iov, (void)cnt;
	for (int k = 0; k < nplanned; k++) /* a write that did not go: planned anew */
		wants[planned_list[k]].planned = false;
	nplanned = 0;
	/* "done" means its bytes started going out: an owed edit is done, and
	 * the next ones may be planned beside it, as many as the stream holds;
	 * the write is cut before the first that does not fit. */
	for (int i = 0; i < nwants; i++) {
		struct want *w = &wants[i];
		if (w->done)
			continue;
		if (w->at < stream_pos || w->at > stream_pos + len)
			return;
		if (w->at + w->del > stream_pos + len)
			return; /* the simulated application never splits a replaced range */
		if (!ts_stream_edit(st, w->at - stream_pos, w->del, w->ins, w->len)) {
			ts_stream_cut(st, w->at - stream_pos);
			return;
		}
		w->planned = true;
		planned_list[nplanned++] = i;
	}
}

static void t_sent(void *t, struct ts_stream *st, const struct iovec *iov, int cnt, size_t n)
{
	(void)t, (void)iov, (void)cnt;
	/* the first new_edits_out of those planned for this write started */
	for (int k = 0; k < nplanned; k++) {
		wants[planned_list[k]].planned = false;
		if (k < st->new_edits_out)
			wants[planned_list[k]].done = true;
	}
	nplanned = 0;
	seen += n;
	stream_pos += n;
}

static void t_received(void *t, struct ts_stream *st, const struct iovec *iov, int cnt, size_t n)
{
	(void)t, (void)st, (void)iov, (void)cnt, (void)n;
}
static void t_ended(void *t, struct ts_stream *st, enum ts_end w, const char *a, const char *b)
{
	(void)t, (void)st, (void)w, (void)a, (void)b;
}
static void t_detach(void *t, struct ts_stream *st, bool o)
{
	(void)t, (void)st, (void)o;
}
static const struct ts_tracer edits_tracer = {"edits", t_claim, t_attach, t_plan, t_sent, t_received, NULL,
					      t_ended, t_detach};
const struct ts_tracer *const ts_tracers[] = {&edits_tracer, NULL};

static unsigned rnd_state;
static unsigned rnd(unsigned n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 8) % n;
}

/* One run: an application stream of `total` bytes written in random pieces
 * (split over up to 3 iovecs), random edits, random counts taken. */
static void run(unsigned seed)
{
	rnd_state = seed;
	if (getenv("SEEDS"))
		fprintf(stderr, "seed %u\n", seed);
	size_t total = 200 + rnd(3000);
	char *app = malloc(total);
	for (size_t i = 0; i < total; i++)
		app[i] = (char)('a' + (i % 26));
	nwants = 1 + (int)rnd(MAX_E);
	size_t at = 0;
	for (int i = 0; i < nwants; i++) {
		struct want *w = &wants[i];
		at += rnd((unsigned)(total / (size_t)nwants));
		w->at = at < total ? at : total - 1;
		w->del = rnd(3) == 0 ? rnd(6) : 0;
		if (w->at + w->del > total)
			w->del = total - w->at;
		w->len = 1 + rnd(60);
		for (size_t k = 0; k < w->len; k++)
			w->ins[k] = (char)('0' + (i * 7 + (int)k) % 10);
		w->done = w->planned = false;
		at = w->at + w->del;
	}
	/* expected wire: the edits that lie within the stream, in order */
	char *want = malloc(total + MAX_E * 64), *wire = malloc(total * 2 + MAX_E * 64 + 64);
	size_t wl = 0, pos = 0;
	for (int i = 0; i < nwants; i++) {
		memcpy(want + wl, app + pos, wants[i].at - pos);
		wl += wants[i].at - pos;
		memcpy(want + wl, wants[i].ins, wants[i].len);
		wl += wants[i].len;
		pos = wants[i].at + wants[i].del;
	}
	memcpy(want + wl, app + pos, total - pos);
	wl += total - pos;

	struct ts_stream *st = ts_stream_new(TS_CARRIER_SOCKET);
	cr_assert(st);
	cr_assert(ts_stream_attach(st, &edits_tracer, NULL, 0, true));
	seen = stream_pos = 0;
	nplanned = 0;
	size_t done = 0, got = 0;
	int guard = 0;
	while (done < total && guard++ < 100000) {
		size_t len = 1 + rnd((unsigned)(total - done < 700 ? total - done : 700));
		/* An application never knows where edits are, but a tracer only
		 * replaces bytes it sees whole in one write (HTTP: within a head):
		 * keep a replaced range inside one write. */
		for (int i = 0; i < nwants; i++)
			if (!wants[i].done && wants[i].at < done + len && done + len < wants[i].at + wants[i].del)
				len = wants[i].at + wants[i].del - done;
		struct iovec v[3];
		int cnt = 0;
		size_t left = len, o = done;
		while (left && cnt < 3) {
			size_t piece = cnt == 2 ? left : 1 + rnd((unsigned)left);
			v[cnt++] = (struct iovec){app + o, piece};
			o += piece;
			left -= piece;
		}
		struct ts_plan pl;
		ts_stream_plan(st, &pl, v, cnt);
		if (!pl.edited) {
			size_t took = 1 + rnd((unsigned)len);
			ts_iov_copy(v, cnt, 0, wire + got, took);
			got += took;
			ts_stream_sent_plain(st, v, cnt, took);
			done += took;
			continue;
		}
		if (rnd(8) == 0) { /* EAGAIN: nothing went */
			ts_stream_not_sent(st, &pl);
			for (int k = 0; k < nplanned; k++)
				wants[planned_list[k]].planned = false;
			nplanned = 0;
			continue;
		}
		size_t took = pl.wire_len ? 1 + rnd((unsigned)pl.wire_len) : 0; /* 0: only replaced bytes */
		size_t k = 0;
		for (int s = 0; s < pl.nseg && k < took; s++) {
			size_t c = pl.seg[s].iov_len < took - k ? pl.seg[s].iov_len : took - k;
			memcpy(wire + got + k, pl.seg[s].iov_base, c);
			k += c;
		}
		got += took;
		size_t n = ts_stream_taken(st, &pl, took);
		cr_assert_leq(n, len);
		done += n;
	}
	cr_assert_eq(done, total, "seed %u: all application bytes went", seed);
	cr_assert_eq(seen, total, "seed %u: the tracer saw every byte once", seed);
	/* A trailing edit at the very end is only sent with a later write. */
	size_t expect = wl;
	if (nwants && wants[nwants - 1].at == total && !wants[nwants - 1].done)
		expect -= wants[nwants - 1].len;
	if (got != expect) {
		for (int i = 0; i < nwants; i++)
			fprintf(stderr, "want %d at %zu del %zu len %zu done %d\n", i, wants[i].at, wants[i].del, wants[i].len, wants[i].done);
		size_t d = 0;
		while (d < got && wire[d] == want[d]) d++;
		fprintf(stderr, "total %zu first diff at %zu\n", total, d);
	}
	cr_assert_eq(got, expect, "seed %u: wire length %zu, expected %zu", seed, got, expect);
	cr_assert(!memcmp(wire, want, got), "seed %u: wire bytes differ", seed);
	ts_stream_free(st, true);
	free(app);
	free(want);
	free(wire);
}

Test(stream, random_writes_edits_and_counts_map_exactly)
{
	/* SEED=N runs one seed; SEEDS=1 names each as it runs */
	unsigned one = getenv("SEED") ? (unsigned)atoi(getenv("SEED")) : 0;
	for (unsigned seed = one ? one : 1; seed <= (one ? one : 20000u); seed++)
		run(seed);
}
