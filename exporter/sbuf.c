/* sbuf.c — see sbuf.h. */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbuf_init(struct sbuf *b) { *b = (struct sbuf){0}; }

void sbuf_free(struct sbuf *b)
{
	free(b->p);
	sbuf_init(b);
}

void sbuf_reset(struct sbuf *b)
{
	b->len = 0;
	b->oom = false;
}

bool sbuf_reserve(struct sbuf *b, size_t more)
{
	if (b->oom)
		return false;
	if (more <= b->cap - b->len)
		return true;
	if (more > EXP_SBUF_MAX - b->len) {
		b->oom = true;
		return false;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < more)
		cap = cap > EXP_SBUF_MAX / 2 ? EXP_SBUF_MAX : cap * 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void sbuf_put(struct sbuf *b, const void *p, size_t n)
{
	if (!n || !sbuf_reserve(b, n))
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void sbuf_putc(struct sbuf *b, char c) { sbuf_put(b, &c, 1); }

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	/* Format once into the room there is; only a text that does not fit is
	 * formatted a second time, after growing. */
	va_list ap;
	va_start(ap, fmt);
	size_t room = b->oom ? 0 : b->cap - b->len;
	int n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if ((size_t)n < room) {
		b->len += (size_t)n;
		return;
	}
	if (!sbuf_reserve(b, (size_t)n + 1)) {
		b->oom = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

bool sbuf_cstr(struct sbuf *b)
{
	if (!sbuf_reserve(b, 1))
		return false;
	b->p[b->len] = '\0';
	return true;
}
