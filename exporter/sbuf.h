/* sbuf.h — a growable byte buffer for encoders. Like ts_wbuf, a failed
 * allocation sets `oom` and later writes are ignored, so an encoder checks
 * once at the end. A hard cap keeps a hostile input from eating memory. */
#ifndef TRACESHIM_EXP_SBUF_H
#define TRACESHIM_EXP_SBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXP_SBUF_MAX ((size_t)256 << 20) /* far above any real batch */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_reset(struct sbuf *b); /* len = 0, oom cleared, memory kept */
bool sbuf_reserve(struct sbuf *b, size_t more);
void sbuf_put(struct sbuf *b, const void *p, size_t n);
void sbuf_putc(struct sbuf *b, char c);
void sbuf_puts(struct sbuf *b, const char *s);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Decimal and lowercase hex without printf: the JSON encoder writes ~8
 * integers and 3 ids per span, and vsnprintf was a quarter of its CPU. */
void sbuf_u64(struct sbuf *b, uint64_t v);
void sbuf_i64(struct sbuf *b, int64_t v);
void sbuf_hex(struct sbuf *b, const uint8_t *p, size_t n);
/* NUL-terminates without counting the NUL in len; false on oom. */
bool sbuf_cstr(struct sbuf *b);

#endif
