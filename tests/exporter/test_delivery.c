/* test_delivery.c — the pure parts of delivery: backoff with jitter and
 * Retry-After, gzip bodies (checked with zlib's own inflate), the error
 * message of a rejected request (google.rpc.Status or text). */
#include <criterion/criterion.h>
#include <string.h>
#include <zlib.h>

#include "config.h"
#include "delivery.h"
#include "otlp_http.h"

Test(backoff, exponential_with_equal_jitter_and_a_cap)
{
	uint32_t want_max[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
	for (unsigned f = 1; f <= 8; f++) {
		uint32_t lo = UINT32_MAX, hi = 0;
		for (uint64_t r = 0; r < 5000; r++) {
			uint32_t d = exp_backoff_ms(f, 0, r * 2654435761u);
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
		cr_assert_geq(lo, want_max[f - 1] / 2, "failure %u: %u", f, lo);
		cr_assert_leq(hi, want_max[f - 1], "failure %u: %u", f, hi);
		cr_assert_gt(hi - lo, want_max[f - 1] / 4, "failure %u: no jitter", f);
	}
	cr_assert_leq(exp_backoff_ms(1000000, 0, 123), EXP_BACKOFF_MAX_MS, "no overflow");
}

Test(backoff, retry_after_is_honoured_and_capped)
{
	for (uint64_t r = 0; r < 1000; r++) {
		uint32_t d = exp_backoff_ms(1, 1000, r);
		cr_assert(d >= 1000 && d <= 1100, "%u", d);
		d = exp_backoff_ms(7, 3000, r);
		cr_assert(d >= 3000 && d <= 3300, "Retry-After wins over the exponential: %u", d);
	}
	uint32_t d = exp_backoff_ms(1, 86400000, 0);
	cr_assert_eq(d, EXP_RETRY_AFTER_MAX_MS);
}

Test(gzip, round_trips_through_inflate)
{
	static char in[200000];
	for (size_t i = 0; i < sizeof in; i++)
		in[i] = (char)("traceshim "[i % 10] ^ (i / 1000));
	struct sbuf out;
	sbuf_init(&out);
	cr_assert(exp_gzip(&out, in, sizeof in));
	cr_assert_lt(out.len, sizeof in / 4);
	cr_assert_eq((unsigned char)out.p[0], 0x1f);
	cr_assert_eq((unsigned char)out.p[1], 0x8b, "a gzip member, not raw deflate");
	static char back[sizeof in];
	z_stream z;
	memset(&z, 0, sizeof z);
	cr_assert_eq(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)out.p;
	z.avail_in = (uInt)out.len;
	z.next_out = (Bytef *)back;
	z.avail_out = sizeof back;
	cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
	cr_assert_eq(z.total_out, sizeof in);
	inflateEnd(&z);
	cr_assert_eq(memcmp(in, back, sizeof in), 0);
	cr_assert(exp_gzip(&out, "", 0), "empty body");
	sbuf_free(&out);
}

Test(errors, rpc_status_message_text_body_or_nothing)
{
	char msg[64];
	/* google.rpc.Status{code: 3, message: "bad span"} */
	const uint8_t st[] = {0x08, 0x03, 0x12, 0x08, 'b', 'a', 'd', ' ', 's', 'p', 'a', 'n'};
	exp_otlp_error_message(st, sizeof st, msg, sizeof msg);
	cr_assert_str_eq(msg, "bad span");
	const char *text = "invalid request\r\nmore\x01 here";
	exp_otlp_error_message(text, strlen(text), msg, sizeof msg);
	cr_assert_str_eq(msg, "invalid request  more");
	const uint8_t only_code[] = {0x08, 0x03};
	exp_otlp_error_message(only_code, sizeof only_code, msg, sizeof msg);
	cr_assert_str_eq(msg, "");
	exp_otlp_error_message(NULL, 0, msg, sizeof msg);
	cr_assert_str_eq(msg, "");
	const uint8_t lying[] = {0x12, 0x7f, 'x'}; /* length past the end */
	exp_otlp_error_message(lying, sizeof lying, msg, sizeof msg);
	cr_assert_str_eq(msg, "");
	char small[4];
	exp_otlp_error_message(st, sizeof st, small, sizeof small);
	cr_assert_str_eq(small, "bad");
}
