/* guard.h — place test input so its last byte sits right before a PROT_NONE
 * page: a parser that reads even one byte too far faults (picohttpparser's
 * test.c trick). Works under ASan too, where it complements redzones. */
#ifndef TRACESHIM_TEST_GUARD_H
#define TRACESHIM_TEST_GUARD_H

#include <stddef.h>

struct guarded {
	void *map;
	size_t map_len;
	char *p; /* p[0..len) readable, p[len] is the first byte of the guard page */
};

/* Copies data[0..len) to the end of fresh pages followed by a guard page.
 * Aborts the test on mmap failure. */
void guard_place(struct guarded *g, const void *data, size_t len);
void guard_free(struct guarded *g);

#endif
