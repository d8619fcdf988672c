/* libFuzzer target: the HTTP request parser, whole vs. split (http_driver.h). */
#include "http_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return http_fuzz_one(data, size, false);
}
