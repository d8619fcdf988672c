/* ids.c — xoshiro256** (Blackman & Vigna, public domain algorithm), seeded
 * through splitmix64 so that nearby stream numbers give unrelated states. */
#include "ids.h"

#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void ts_rng_seed(struct ts_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ull);
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
	if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
		r->s[0] = 1; /* the all-zero state is the one fixed point */
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* The generator step, inlined into the id makers (an exported function in
 * PIC code is never inlined: it could be interposed). */
static inline uint64_t next(struct ts_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t ts_rng_next(struct ts_rng *r) { return next(r); }

void ts_rng_trace_id(struct ts_rng *r, uint8_t out[16])
{
	uint64_t a, b;
	do {
		a = next(r);
		b = next(r);
	} while (!(a | b));
	memcpy(out, &a, 8);
	memcpy(out + 8, &b, 8);
}

void ts_rng_span_id(struct ts_rng *r, uint8_t out[8])
{
	uint64_t a;
	do
		a = next(r);
	while (!a);
	memcpy(out, &a, 8);
}

void ts_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
}

static int lowerhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool ts_unhex(const char *in, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		int hi = lowerhex(in[2 * i]), lo = lowerhex(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}
