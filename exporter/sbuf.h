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
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The encoders' fast path: room for `more` bytes is reserved once (for a
 * whole span, from a bound on its encoded size), written through the
 * returned pointer with no check per byte, then committed with
 * sbuf_commit(b, end). NULL when out of memory (oom set). */
static inline char *sbuf_room(struct sbuf *b, size_t more)
{
	if (!b->oom && more <= b->cap - b->len)
		return b->p + b->len;
	return sbuf_reserve(b, more) ? b->p + b->len : NULL;
}

static inline void sbuf_commit(struct sbuf *b, const void *end) { b->len = (size_t)((const char *)end - b->p); }

/* NUL-terminates without counting the NUL in len; false on oom. */
bool sbuf_cstr(struct sbuf *b);

#endif
