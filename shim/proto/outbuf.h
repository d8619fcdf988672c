/* outbuf.h — a snprintf-like writer for the redactors (URL and query in
 * http.c, command lines in argv_redact.c): writes at most cap-1 bytes plus a
 * NUL, and counts the full length the result needs, so a caller can tell it
 * was cut. Pure, no allocation. */
#ifndef TRACESHIM_PROTO_OUTBUF_H
#define TRACESHIM_PROTO_OUTBUF_H

#include <stddef.h>
#include <string.h>

struct out_buf {
	char *p;
	size_t cap, n; /* n: length the whole result needs */
};

static inline void out_put(struct out_buf *o, const char *s, size_t k)
{
	if (k > 0 && o->cap > 0 && o->n < o->cap - 1) {
		size_t room = o->cap - 1 - o->n;
		memcpy(o->p + o->n, s, k < room ? k : room);
	}
	o->n += k;
}

static inline size_t out_finish(struct out_buf *o)
{
	if (o->cap > 0)
		o->p[o->n < o->cap - 1 ? o->n : o->cap - 1] = 0;
	return o->n;
}

#endif
