/* guard.c — see guard.h. Each placement gets its own mapping, unmapped after
 * use, so one test's input can never hide another's over-read. */
#include "guard.h"

#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void guard_place(struct guarded *g, const void *data, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t body = (len + page - 1) / page * page;

	if (body == 0)
		body = page;
	g->map_len = body + page;
	g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(g->map != MAP_FAILED, "mmap");
	cr_assert(mprotect((char *)g->map + body, page, PROT_NONE) == 0, "mprotect");
	g->p = (char *)g->map + body - len;
	if (len)
		memcpy(g->p, data, len);
}

void guard_free(struct guarded *g)
{
	munmap(g->map, g->map_len);
	g->map = NULL;
}
