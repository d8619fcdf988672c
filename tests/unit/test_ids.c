#include <criterion/criterion.h>
#include <string.h>

#include "ids.h"

Test(ids, trace_and_span_ids_are_never_zero_and_differ)
{
	struct ts_rng r;
	ts_rng_seed(&r, 42, 1);
	uint8_t a[16], b[16], zero[16] = {0};
	for (int i = 0; i < 10000; i++) {
		ts_rng_trace_id(&r, a);
		ts_rng_trace_id(&r, b);
		cr_assert(memcmp(a, zero, 16) != 0);
		cr_assert(memcmp(a, b, 16) != 0);
	}
	uint8_t s[8];
	ts_rng_span_id(&r, s);
	cr_assert(memcmp(s, zero, 8) != 0);
}

Test(ids, streams_of_one_seed_do_not_overlap)
{
	/* every thread gets its own stream: the first ids must all be distinct */
	uint64_t first[256];
	for (int i = 0; i < 256; i++) {
		struct ts_rng r;
		ts_rng_seed(&r, 7, (uint64_t)i);
		first[i] = ts_rng_next(&r);
		for (int j = 0; j < i; j++)
			cr_assert_neq(first[i], first[j]);
	}
}

Test(ids, different_process_seeds_give_different_ids)
{
	struct ts_rng p, c;
	ts_rng_seed(&p, 1000, 1);
	ts_rng_seed(&c, 1001, 1); /* a forked child reseeds */
	cr_assert_neq(ts_rng_next(&p), ts_rng_next(&c));
}

Test(ids, bits_are_balanced)
{
	struct ts_rng r;
	ts_rng_seed(&r, 99, 3);
	int ones = 0;
	for (int i = 0; i < 4096; i++)
		ones += __builtin_popcountll(ts_rng_next(&r));
	double frac = ones / (4096.0 * 64);
	cr_assert(frac > 0.49 && frac < 0.51, "fraction of one bits %f", frac);
}

Test(ids, hex_round_trip_and_rejects_uppercase)
{
	uint8_t in[8] = {0x00, 0x01, 0xab, 0xcd, 0xef, 0x10, 0x7f, 0xff}, out[8];
	char hex[17];
	ts_hex(in, 8, hex);
	cr_assert_str_eq(hex, "0001abcdef107fff");
	cr_assert(ts_unhex(hex, 8, out));
	cr_assert(memcmp(in, out, 8) == 0);
	cr_assert_not(ts_unhex("0001ABCDEF107FFF", 8, out));
	cr_assert_not(ts_unhex("0001abcdef107fgf", 8, out));
}
