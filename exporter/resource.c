/* resource.c — see resource.h. */
#include "resource.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"

static bool str_eq(struct ts_str a, const char *b)
{
	return a.len == strlen(b) && memcmp(a.ptr, b, a.len) == 0;
}

static bool has_key(const struct exp_resource *r, const char *key)
{
	for (uint8_t i = 0; i < r->n_attrs; i++)
		if (str_eq(r->attrs[i].key, key))
			return true;
	return false;
}

static void add_str(struct exp_resource *r, const char *key, const char *value)
{
	struct ts_attr *a = &r->attrs[r->n_attrs++];
	a->key = (struct ts_str){key, (uint16_t)strlen(key)};
	a->type = TS_ATTR_STR;
	a->v.s = (struct ts_str){value, (uint16_t)strlen(value)};
}

/* The OTel spec requires service.name on every resource. */
static void add_defaults(struct exp_resource *r)
{
	if (!has_key(r, "service.name"))
		add_str(r, "service.name", "unknown_service");
	if (r->pid && !has_key(r, "process.pid")) {
		struct ts_attr *a = &r->attrs[r->n_attrs++];
		a->key = (struct ts_str){"process.pid", 11};
		a->type = TS_ATTR_INT;
		a->v.i = r->pid;
	}
}

/* Bytes of all live resources: each connection and each queued span holds
 * one, so without a budget a client that connects, says HELLO with 32 KiB,
 * sends one span and goes, again and again, could pin queue-size x 32 KiB. */
static _Atomic size_t live_bytes;

size_t exp_resource_live_bytes(void) { return atomic_load_explicit(&live_bytes, memory_order_relaxed); }

struct exp_resource *exp_resource_from_hello(const void *payload, size_t len, bool *oom)
{
	*oom = false;
	size_t size = sizeof(struct exp_resource) + len;
	if (atomic_fetch_add_explicit(&live_bytes, size, memory_order_relaxed) + size > EXP_RESOURCE_BUDGET_BYTES) {
		atomic_fetch_sub_explicit(&live_bytes, size, memory_order_relaxed);
		*oom = true;
		return NULL;
	}
	struct exp_resource *r = malloc(size);
	if (!r) {
		atomic_fetch_sub_explicit(&live_bytes, size, memory_order_relaxed);
		*oom = true;
		return NULL;
	}
	memcpy(r->payload, payload, len);
	r->payload_len = len;
	/* Decode the copy, so the attribute pointers point into memory we own. */
	struct ts_hello_view *h = malloc(sizeof *h);
	if (!h || !ts_hello_decode(r->payload, len, h)) {
		*oom = !h;
		free(h);
		free(r);
		atomic_fetch_sub_explicit(&live_bytes, size, memory_order_relaxed);
		return NULL;
	}
	atomic_init(&r->refs, 1);
	r->pid = h->pid;
	r->n_attrs = h->n_attrs;
	memcpy(r->attrs, h->attrs, h->n_attrs * sizeof h->attrs[0]);
	free(h);
	add_defaults(r);
	return r;
}

struct exp_resource *exp_resource_unknown(void)
{
	struct exp_resource *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	atomic_fetch_add_explicit(&live_bytes, sizeof *r, memory_order_relaxed);
	atomic_init(&r->refs, 1);
	add_defaults(r);
	return r;
}

void exp_resource_ref_n(struct exp_resource *r, uint32_t n)
{
	atomic_fetch_add_explicit(&r->refs, n, memory_order_relaxed);
}

void exp_resource_unref_n(struct exp_resource *r, uint32_t n)
{
	if (r && atomic_fetch_sub_explicit(&r->refs, n, memory_order_acq_rel) == n) {
		atomic_fetch_sub_explicit(&live_bytes, sizeof *r + r->payload_len, memory_order_relaxed);
		free(r);
	}
}

void exp_resource_ref(struct exp_resource *r) { exp_resource_ref_n(r, 1); }

void exp_resource_unref(struct exp_resource *r) { exp_resource_unref_n(r, 1); }

static bool ts_str_eq(struct ts_str a, struct ts_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool attr_eq(const struct ts_attr *a, const struct ts_attr *b)
{
	if (!ts_str_eq(a->key, b->key) || a->type != b->type)
		return false;
	switch (a->type) {
	case TS_ATTR_STR:
	case TS_ATTR_STRARRAY:
		return ts_str_eq(a->v.s, b->v.s);
	case TS_ATTR_INT:
		return a->v.i == b->v.i;
	case TS_ATTR_BOOL:
		return a->v.b == b->v.b;
	case TS_ATTR_DOUBLE: /* bitwise, so NaN equals itself */
		return memcmp(&a->v.d, &b->v.d, sizeof a->v.d) == 0;
	default: /* unknown to us: never merge */
		return false;
	}
}

bool exp_resource_equal(const struct exp_resource *a, const struct exp_resource *b)
{
	if (a == b)
		return true;
	if (a->n_attrs != b->n_attrs)
		return false;
	for (uint8_t i = 0; i < a->n_attrs; i++)
		if (!attr_eq(&a->attrs[i], &b->attrs[i]))
			return false;
	return true;
}
