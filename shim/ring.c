/* ring.c — both ends of the shared span ring (layout and rules: frame.h).
 * Pure: no system calls, no allocation; the shim serialises writers, the
 * exporter is the only reader. */
#include "frame.h"

uint8_t *ts_ring_reserve(struct ts_ring *r, size_t len)
{
	uint64_t tail = atomic_load_explicit(&r->h->tail, memory_order_acquire);
	uint64_t head = r->head;
	uint32_t off = (uint32_t)(head & (r->size - 1)), room = r->size - off;
	uint64_t pad = len > room ? room : 0;
	if (len < 2 || head - tail > r->size || head - tail + pad + len > r->size)
		return NULL;
	if (pad) { /* unpublished until the commit, like the record */
		if (room >= 2)
			memset(r->data + off, 0, 2);
		r->head = head + pad;
		off = 0;
	}
	r->tail_seen = tail;
	return r->data + off;
}

uint64_t ts_ring_commit(struct ts_ring *r, size_t len)
{
	uint64_t head = r->head + len;
	r->head = head;
	atomic_store_explicit(&r->h->spans, atomic_load_explicit(&r->h->spans, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_store_explicit(&r->h->head, head, memory_order_release);
	return head - r->tail_seen;
}

bool ts_ring_put(struct ts_ring *r, const void *rec, size_t len, uint64_t *used)
{
	uint8_t *dst = ts_ring_reserve(r, len);
	if (!dst)
		return false;
	memcpy(dst, rec, len);
	*used = ts_ring_commit(r, len);
	return true;
}

unsigned ts_ring_move(struct ts_ring *dst, const struct ts_ring *src)
{
	uint64_t tail = atomic_load_explicit(&src->h->tail, memory_order_acquire), head = src->head;
	unsigned moved = 0;
	if (head - tail > src->size) /* a reader that published nonsense */
		return 0;
	while (tail != head) {
		uint32_t off = (uint32_t)(tail & (src->size - 1)), room = src->size - off;
		uint16_t len = 0;
		if (room >= 2)
			memcpy(&len, src->data + off, 2);
		if (len == 0) { /* padding to the end of the area */
			if (room > head - tail)
				break;
			tail += room;
			continue;
		}
		if (len < 4 || len > room || len > head - tail)
			break;
		uint8_t *to = ts_ring_reserve(dst, len);
		if (!to)
			break;
		memcpy(to, src->data + off, len);
		ts_ring_commit(dst, len);
		tail += len;
		moved++;
	}
	return moved;
}

size_t ts_ring_take(const uint8_t *data, uint32_t size, uint64_t *tailp, uint64_t head, uint8_t *out,
		    size_t cap, uint16_t *count, bool *bad)
{
	uint64_t tail = *tailp;
	size_t n = 2;
	uint16_t c = 0;
	*bad = head - tail > size;
	while (!*bad && tail != head && c < UINT16_MAX) {
		uint32_t off = (uint32_t)(tail & (size - 1)), room = size - off;
		uint16_t len = 0;
		if (room >= 2)
			memcpy(&len, data + off, 2); /* read once: the writer may be hostile */
		if (len == 0) {                      /* padding to the end of the area */
			if (room > head - tail)
				*bad = true;
			else
				tail += room;
			continue;
		}
		if (len < 4 || len > room || len > head - tail || len > TS_SPAN_RECORD_MAX) {
			*bad = true;
			break;
		}
		if (n + len > cap)
			break;
		memcpy(out + n, data + off, len);
		memcpy(out + n, &len, 2); /* the length we checked, whatever is there now */
		n += len;
		tail += len;
		c++;
	}
	*tailp = tail;
	*count = c;
	if (!c)
		return 0;
	memcpy(out, &c, 2);
	return n;
}
