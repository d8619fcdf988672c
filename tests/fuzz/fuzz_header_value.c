/* libFuzzer target: http_header_value_at. The input is split at its first
 * NUL into a value and the bytes to search; an answer must point at that
 * value, preceded by "\ntraceparent:" and optional whitespace. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/http.h"

#define CHECK(c) \
	do { \
		if (!(c)) \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	const char *nul = memchr(s, 0, size);
	if (!nul)
		return 0;
	size_t vlen = (size_t)(nul - s), blen = size - vlen - 1;
	/* the buffer on its own allocation, so ASan sees any read past it */
	char *buf = malloc(blen ? blen : 1), *val = malloc(vlen ? vlen : 1);
	memcpy(buf, nul + 1, blen);
	memcpy(val, s, vlen);
	long at = http_header_value_at(buf, blen, "traceparent", 11, val, vlen);
	if (at >= 0) {
		CHECK((size_t)at + vlen <= blen && !memcmp(buf + at, val, vlen));
		long q = at;
		while (q > 0 && (buf[q - 1] == ' ' || buf[q - 1] == '\t'))
			q--;
		CHECK(q >= 13 && buf[q - 1] == ':' && buf[q - 13] == '\n' && !strncasecmp(buf + q - 12, "traceparent", 11));
	}
	free(buf);
	free(val);
	return 0;
}
