/* libFuzzer target: tracestate validation and the truncating builder. Byte 0
 * picks the output cap. The built value must itself be valid, within the
 * cap and 512 bytes, and building it again must change nothing. */
#include <stdlib.h>
#include <string.h>

#include "proto/w3c.h"

#define CHECK(c) \
	do { \
		if (!(c)) \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[600], again[600];
	struct w3c_tracestate_info info;

	if (size < 1)
		return 0;
	size_t cap = data[0] == 255 ? sizeof out : (size_t)data[0] * 2;
	const char *s = (const char *)data + 1;
	size--;
	bool valid = w3c_tracestate_validate(s, size, &info);
	bool prop = w3c_tracestate_may_propagate(s, size);
	CHECK(!prop || valid);
	CHECK(!valid || info.members <= W3C_TRACESTATE_MAX_MEMBERS);
	size_t n = w3c_tracestate_build(out, cap, s, size);
	CHECK(valid || n == 0);
	CHECK(n <= cap && n <= W3C_TRACESTATE_PROPAGATE_MAX);
	CHECK(w3c_tracestate_validate(out, n, NULL));
	CHECK(w3c_tracestate_build(again, cap, out, n) == n);
	CHECK(memcmp(again, out, n) == 0);
	return 0;
}
