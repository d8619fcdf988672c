/* libFuzzer target: the HTTP response parser, whole vs. split; byte 0 picks
 * HEAD/CONNECT (http_driver.h). */
#include "http_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return http_fuzz_one(data, size, true);
}
