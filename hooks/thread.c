/* thread.c — a new thread starts in the context of the thread that created it. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "shim.h"

TS_REAL(pthread_create, int, (pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))

struct start {
	void *(*fn)(void *);
	void *arg;
	struct ts_ctx ctx;
};

static void *start_in_context(void *p)
{
	struct start s = *(struct start *)p;
	free(p);
	ts_ctx_set(&s.ctx);
	return s.fn(s.arg);
}

TS_EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (!ts_tracing())
		return real_pthread_create()(t, attr, fn, arg);
	const struct ts_ctx *c = ts_ctx_current();
	if (c == &ts_process_ctx) /* threads fall back to the process context anyway */
		return real_pthread_create()(t, attr, fn, arg);
	struct start *s = malloc(sizeof *s);
	if (!s)
		return real_pthread_create()(t, attr, fn, arg);
	s->fn = fn;
	s->arg = arg;
	s->ctx = *c;
	int rc = real_pthread_create()(t, attr, start_in_context, s);
	if (rc != 0)
		free(s);
	return rc;
}
