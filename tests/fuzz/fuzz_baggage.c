/* libFuzzer target: baggage iteration, percent-decoding and the builder.
 * Byte 0 picks the output cap (scaled to reach 8192). Every member the
 * iterator yields must decode; the built header must contain only members
 * that parse again, stay within the limits, and rebuild to itself. */
#include <stdlib.h>
#include <string.h>

#include "proto/w3c.h"

#define CHECK(c) \
	do { \
		if (!(c)) \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned count_members(const char *s, size_t n)
{
	struct w3c_baggage_iter it;
	struct w3c_baggage_member m;
	unsigned k = 0;
	char val[W3C_BAGGAGE_MAX_BYTES];

	w3c_baggage_iter_init(&it, s, n);
	while (w3c_baggage_next(&it, &m)) {
		CHECK(m.key_len > 0 && m.key >= s && m.key + m.key_len <= s + n);
		CHECK(m.value >= s && m.value + m.value_len <= s + n);
		size_t d = w3c_baggage_decode_value(&m, NULL, 0);
		CHECK(d != SIZE_MAX && d <= m.value_len);
		if (m.value_len <= sizeof val)
			CHECK(w3c_baggage_decode_value(&m, val, m.value_len) == d);
		k++;
	}
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[W3C_BAGGAGE_MAX_BYTES], again[W3C_BAGGAGE_MAX_BYTES];

	if (size < 1)
		return 0;
	size_t cap = (size_t)data[0] * 33; /* 0 .. 8415 */
	if (cap > sizeof out)
		cap = sizeof out;
	const char *s = (const char *)data + 1;
	size--;
	count_members(s, size);
	size_t n = w3c_baggage_build(out, cap, s, size);
	CHECK(n <= cap && n <= W3C_BAGGAGE_MAX_BYTES);
	unsigned k = count_members(out, n);
	CHECK(k <= W3C_BAGGAGE_MAX_MEMBERS);
	CHECK(w3c_baggage_build(again, cap, out, n) == n);
	CHECK(memcmp(again, out, n) == 0);
	return 0;
}
