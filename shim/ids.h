/* ids.h — trace and span ids from a per-thread xoshiro256** generator.
 * getrandom() runs once per process (and again in a forked child); every
 * thread derives its own stream from that seed, so an id costs a few ns and
 * never a syscall, and parent and child never mint the same ids. */
#ifndef TRACESHIM_IDS_H
#define TRACESHIM_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ts_rng {
	uint64_t s[4];
};

/* Deterministic seeding from (process seed, stream number): pure, testable. */
void ts_rng_seed(struct ts_rng *r, uint64_t seed, uint64_t stream);
uint64_t ts_rng_next(struct ts_rng *r);

/* Valid W3C ids: never all zero. */
void ts_rng_trace_id(struct ts_rng *r, uint8_t out[16]);
void ts_rng_span_id(struct ts_rng *r, uint8_t out[8]);

/* Lowercase hex of n bytes into out (2n chars + NUL). */
void ts_hex(const uint8_t *in, size_t n, char *out);
/* Parses exactly 2n lowercase hex chars; false on anything else. */
bool ts_unhex(const char *in, size_t n, uint8_t *out);

#endif
