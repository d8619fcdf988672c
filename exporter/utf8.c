/* utf8.c — see utf8.h. Byte ranges from Unicode Table 3-7 (well-formed
 * sequences): no overlongs, no surrogates, nothing above U+10FFFF. */
#include "utf8.h"

#include <stdbool.h>

static bool in(uint8_t b, uint8_t lo, uint8_t hi) { return b >= lo && b <= hi; }

/* Length and allowed range of the second byte for a lead byte; 0 = invalid lead. */
static size_t lead_info(uint8_t b, uint8_t *lo, uint8_t *hi)
{
	*lo = 0x80;
	*hi = 0xBF;
	if (in(b, 0xC2, 0xDF))
		return 2;
	if (b == 0xE0)
		*lo = 0xA0;
	else if (b == 0xED)
		*hi = 0x9F;
	if (in(b, 0xE0, 0xEF))
		return 3;
	if (b == 0xF0)
		*lo = 0x90;
	else if (b == 0xF4)
		*hi = 0x8F;
	if (in(b, 0xF0, 0xF4))
		return 4;
	return 0;
}

size_t exp_utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	uint8_t lo, hi;
	size_t need = lead_info(p[0], &lo, &hi);
	*cp = EXP_UTF8_BAD;
	if (need == 0)
		return 1;
	uint32_t v = p[0] & (0xFFu >> (need + 1));
	for (size_t i = 1; i < need; i++) {
		if (i >= n || !in(p[i], i == 1 ? lo : 0x80, i == 1 ? hi : 0xBF))
			return i; /* the maximal subpart ends before p[i] */
		v = (v << 6) | (p[i] & 0x3Fu);
	}
	*cp = v;
	return need;
}
