/* The shared span ring (frame.h): both ends in one address space, through
 * wrap-around, padding, a full ring and a writer that breaks the rules. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define SIZE TS_RING_MIN

static struct ts_ring_hdr hdr;
static uint8_t *data;
static struct ts_ring w;
static uint8_t out[TS_FRAME_MAX];

static void setup(void)
{
	memset(&hdr, 0, sizeof hdr);
	data = calloc(1, SIZE);
	w = (struct ts_ring){.h = &hdr, .data = data, .size = SIZE};
}
static void teardown(void) { free(data); }

/* A record of len bytes: its u16 length, then a byte pattern made of seq. */
static void record(uint8_t *r, uint16_t len, uint32_t seq)
{
	memcpy(r, &len, 2);
	for (uint16_t i = 2; i < len; i++)
		r[i] = (uint8_t)(seq * 31 + i);
}

/* The reader's loop, as the exporter runs it: returns the records taken and
 * checks each against the pattern of the next expected seq. */
static unsigned drain(uint64_t *tail, uint32_t *seq, const uint16_t *lens)
{
	unsigned n = 0;
	uint64_t head = atomic_load(&hdr.head);
	for (;;) {
		uint16_t count;
		bool bad;
		size_t len = ts_ring_take(data, SIZE, tail, head, out, sizeof out, &count, &bad);
		cr_assert(!bad);
		if (!len)
			break;
		uint16_t c;
		memcpy(&c, out, 2);
		cr_assert_eq(c, count);
		size_t off = 2;
		for (uint16_t i = 0; i < count; i++, (*seq)++, n++) {
			uint8_t want[TS_SPAN_RECORD_MAX];
			record(want, lens[*seq], *seq);
			cr_assert_eq(memcmp(out + off, want, lens[*seq]), 0, "record %u", *seq);
			off += lens[*seq];
		}
		cr_assert_eq(off, len);
		atomic_store(&hdr.tail, *tail);
	}
	return n;
}

Test(ring, wraps_pads_and_keeps_every_record_in_order, .init = setup, .fini = teardown)
{
	enum { N = 5000 };
	static uint16_t lens[N];
	srand(7);
	for (unsigned i = 0; i < N; i++)
		lens[i] = (uint16_t)(4 + rand() % 3000); /* odd sizes: pads of every width, 0 and 1 included */
	uint64_t tail = 0;
	uint32_t wseq = 0, rseq = 0;
	unsigned full = 0;
	while (rseq < N) {
		/* write until full (or done), then read a random part of it */
		while (wseq < N) {
			uint8_t r[TS_SPAN_RECORD_MAX];
			record(r, lens[wseq], wseq);
			uint64_t used;
			if (!ts_ring_put(&w, r, lens[wseq], &used)) {
				full++;
				break;
			}
			cr_assert_leq(used, SIZE);
			wseq++;
		}
		drain(&tail, &rseq, lens);
		cr_assert_eq(rseq, wseq);
	}
	cr_assert_gt(full, 10, "the ring filled up and refused records");
	cr_assert_eq(atomic_load(&hdr.spans), N);
	cr_assert_gt(atomic_load(&hdr.head), 20 * SIZE, "wrapped many times");
}

Test(ring, a_full_ring_refuses_without_writing, .init = setup, .fini = teardown)
{
	uint8_t r[1000];
	record(r, sizeof r, 1);
	uint64_t used;
	unsigned n = 0;
	while (ts_ring_put(&w, r, sizeof r, &used))
		n++;
	cr_assert_eq(n, SIZE / sizeof r);
	uint64_t head = atomic_load(&hdr.head);
	cr_assert(!ts_ring_put(&w, r, sizeof r, &used));
	cr_assert_eq(atomic_load(&hdr.head), head);
	cr_assert_eq(atomic_load(&hdr.spans), n);
}

Test(ring, a_rule_breaking_writer_is_detected_not_followed, .init = setup, .fini = teardown)
{
	uint8_t r[100];
	record(r, sizeof r, 1);
	uint64_t used, tail = 0;
	uint16_t count;
	bool bad;
	ts_ring_put(&w, r, sizeof r, &used);
	/* head beyond one ring's worth */
	cr_assert_eq(ts_ring_take(data, SIZE, &tail, SIZE + 1, out, sizeof out, &count, &bad), 0);
	cr_assert(bad);
	/* a length past head */
	tail = 0;
	uint16_t big = 5000;
	memcpy(data, &big, 2);
	cr_assert_eq(ts_ring_take(data, SIZE, &tail, 100, out, sizeof out, &count, &bad), 0);
	cr_assert(bad);
	/* a length too short to be a record */
	uint16_t tiny = 3;
	memcpy(data, &tiny, 2);
	ts_ring_take(data, SIZE, &tail, 100, out, sizeof out, &count, &bad);
	cr_assert(bad);
	/* padding that claims more than was committed */
	tail = SIZE - 10;
	memset(data + SIZE - 10, 0, 2);
	ts_ring_take(data, SIZE, &tail, SIZE - 4, out, sizeof out, &count, &bad);
	cr_assert(bad);
	/* the length copied out is the one checked, even if the writer changes it */
	tail = 0;
	memcpy(data, r, sizeof r);
	size_t n = ts_ring_take(data, SIZE, &tail, sizeof r, out, sizeof out, &count, &bad);
	cr_assert(!bad);
	cr_assert_eq(n, 2 + sizeof r);
	cr_assert_eq(count, 1);
	cr_assert_eq(tail, sizeof r);
}

Test(ring, stops_at_the_output_capacity_and_resumes, .init = setup, .fini = teardown)
{
	uint8_t r[7000];
	record(r, sizeof r, 3);
	uint64_t used, tail = 0;
	for (int i = 0; i < 6; i++)
		cr_assert(ts_ring_put(&w, r, sizeof r, &used));
	uint16_t count;
	bool bad;
	uint64_t head = atomic_load(&hdr.head);
	cr_assert_eq(ts_ring_take(data, SIZE, &tail, head, out, sizeof out, &count, &bad), 2 + 4 * sizeof r);
	cr_assert_eq(count, 4);
	cr_assert_eq(ts_ring_take(data, SIZE, &tail, head, out, sizeof out, &count, &bad), 2 + 2 * sizeof r);
	cr_assert_eq(count, 2);
	cr_assert_eq(tail, head);
}

/* A reader that went away part-way through a wrapped ring: what it had not
 * consumed moves, in order and whole, into a fresh ring a new reader takes
 * from 0 (shim/transport.c, after an exporter restart). */
Test(ring, unread_records_move_to_a_fresh_ring, .init = setup, .fini = teardown)
{
	enum { N = 400 };
	static uint16_t lens[N];
	srand(11);
	for (unsigned i = 0; i < N; i++)
		lens[i] = (uint16_t)(4 + rand() % 1500);
	/* wrap the old ring a few times, reading everything, then leave records
	 * 300.. unread across the end of the area */
	uint64_t tail = 0;
	uint32_t wseq = 0, rseq = 0;
	while (wseq < 300) {
		uint8_t r[TS_SPAN_RECORD_MAX];
		record(r, lens[wseq], wseq);
		uint64_t used;
		if (!ts_ring_put(&w, r, lens[wseq], &used))
			drain(&tail, &rseq, lens);
		else
			wseq++;
	}
	drain(&tail, &rseq, lens);
	cr_assert_eq(rseq, 300);
	unsigned left = 0;
	for (; wseq < N; wseq++, left++) {
		uint8_t r[TS_SPAN_RECORD_MAX];
		record(r, lens[wseq], wseq);
		uint64_t used;
		if (!ts_ring_put(&w, r, lens[wseq], &used))
			break;
	}
	cr_assert_gt(left, 20);
	cr_assert_gt(atomic_load(&hdr.head), 2 * SIZE, "wrapped");
	uint64_t old_head = atomic_load(&hdr.head);
	/* the fresh ring; the test's reader (drain) reads hdr/data: swap them */
	struct ts_ring_hdr *fresh_hdr = calloc(1, sizeof *fresh_hdr);
	uint8_t *fresh = calloc(1, SIZE);
	struct ts_ring nw = {.h = fresh_hdr, .data = fresh, .size = SIZE};
	cr_assert_eq(ts_ring_move(&nw, &w), left);
	cr_assert_eq(atomic_load(&hdr.head), old_head, "the old ring is left as it was");
	cr_assert_eq(atomic_load(&fresh_hdr->spans), left);
	memcpy(&hdr, fresh_hdr, sizeof hdr);
	memcpy(data, fresh, SIZE);
	tail = 0;
	cr_assert_eq(drain(&tail, &rseq, lens), left);
	cr_assert_eq(rseq, 300 + left);
	/* all read: nothing moves; a reader's tail past head: nothing either */
	struct ts_ring_hdr again_hdr = {0};
	struct ts_ring again = {.h = &again_hdr, .data = calloc(1, SIZE), .size = SIZE};
	atomic_store(&fresh_hdr->tail, nw.head);
	cr_assert_eq(ts_ring_move(&again, &nw), 0);
	atomic_store(&fresh_hdr->tail, nw.head + 1);
	cr_assert_eq(ts_ring_move(&again, &nw), 0);
	cr_assert_eq(atomic_load(&again_hdr.spans), 0);
	free(again.data);
	free(fresh_hdr);
	free(fresh);
}
