/* libFuzzer target: traceparent parse/format. Whatever parses must format to
 * a v00 value that parses back to the same ids and flags. */
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
	struct w3c_traceparent tp, back;
	char out[W3C_TRACEPARENT_LEN];
	const char *s = (const char *)data;

	if (!w3c_traceparent_parse(s, size, &tp))
		return 0;
	CHECK(tp.version != 0xff);
	CHECK(!w3c_traceparent_ids_zero(&tp));
	CHECK(w3c_traceparent_format(&tp, out) == W3C_TRACEPARENT_LEN);
	CHECK(w3c_traceparent_parse(out, sizeof out, &back));
	CHECK(back.version == 0 && back.flags == tp.flags);
	CHECK(memcmp(back.trace_id, tp.trace_id, 16) == 0);
	CHECK(memcmp(back.span_id, tp.span_id, 8) == 0);
	/* the input (OWS aside) carried the same characters after the version */
	while (*s == ' ' || *s == '\t')
		s++;
	CHECK(memcmp(s + 2, out + 2, W3C_TRACEPARENT_LEN - 2) == 0);
	return 0;
}
