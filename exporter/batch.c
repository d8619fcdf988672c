/* batch.c — see batch.h. */
#include "batch.h"

#include <stdlib.h>

/* Linear search with a one-entry cache: a batch has few resources and spans
 * of one process tend to arrive together. Equal resources from different
 * connections (a process that reconnected) share a group. */
static size_t group_of(struct exp_batch *b, struct exp_resource *res, size_t *last)
{
	if (*last < b->n_groups && b->groups[*last].res == res)
		return *last;
	for (size_t g = 0; g < b->n_groups; g++)
		if (exp_resource_equal(b->groups[g].res, res))
			return *last = g;
	b->groups[b->n_groups] = (struct exp_group){res, 0, 0};
	return *last = b->n_groups++;
}

int exp_batch_build(struct exp_batch *b, struct exp_span *list, size_t n)
{
	*b = (struct exp_batch){.list = list, .n = n};
	size_t *gidx = malloc((n ? n : 1) * sizeof *gidx);
	b->spans = malloc((n ? n : 1) * sizeof *b->spans);
	b->groups = malloc((n ? n : 1) * sizeof *b->groups);
	if (!gidx || !b->spans || !b->groups) {
		free(gidx);
		return -1;
	}
	size_t i = 0, last = 0;
	for (struct exp_span *s = list; s && i < n; s = s->next, i++) {
		gidx[i] = group_of(b, s->res, &last);
		b->groups[gidx[i]].n++;
	}
	b->n = i;
	for (size_t g = 1; g < b->n_groups; g++)
		b->groups[g].first = b->groups[g - 1].first + b->groups[g - 1].n;
	/* Counting sort by group, stable: a second pass fills each group in order. */
	size_t *fill = calloc(b->n_groups ? b->n_groups : 1, sizeof *fill);
	if (!fill) {
		free(gidx);
		return -1;
	}
	i = 0;
	for (struct exp_span *s = list; i < b->n; s = s->next, i++)
		b->spans[b->groups[gidx[i]].first + fill[gidx[i]]++] = s;
	free(fill);
	free(gidx);
	return 0;
}

void exp_batch_free(struct exp_batch *b)
{
	exp_span_free_list(b->list);
	free(b->spans);
	free(b->groups);
	*b = (struct exp_batch){0};
}
