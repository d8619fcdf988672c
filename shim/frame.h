/* frame.h — the one definition of the shim <-> exporter wire format.
 *
 * Transport: a Unix SOCK_SEQPACKET connection per traced process. SEQPACKET keeps
 * message boundaries (one send = one frame, delivered whole or not at all), so a
 * non-blocking sender never leaves half a frame behind and the exporter never has
 * to resynchronise a byte stream. Both ends live on the same host, so integers are
 * in host byte order; the magic doubles as an endianness/garbage check.
 *
 * Frame  = header (16 bytes) + payload (header.length bytes), at most TS_FRAME_MAX.
 * Header = u32 magic "TSH1" | u16 version | u16 type | u32 length | u32 dropped
 *          (dropped: spans the sender had to drop since its previous frame).
 *
 * HELLO payload (first frame on every connection; again after reconnect):
 *   u32 pid | u32 ppid | u64 start_unix_ns | u8 n_attrs | attrs...   (the resource)
 * SPANS payload:
 *   u16 count | count x span record
 * Span record:
 *   u16 record_len (whole record, this field included)
 *   u8[16] trace_id | u8[8] span_id | u8[8] parent_span_id (zeros: root)
 *   u64 start_unix_ns | u64 end_unix_ns
 *   u8 kind (OTLP enum 1..5) | u8 status (0 unset, 1 ok, 2 error) | u8 flags (TS_SPAN_F_*)
 *   u8 n_attrs | u8 n_links
 *   str16 name | str16 status_message | str16 trace_state
 *   attrs:  n_attrs x { u8 key_len, key bytes, u8 type (TS_ATTR_*), value }
 *           value: STR str16 | INT i64 | BOOL u8 | DOUBLE f64 | STRARRAY str16 of str16s
 *   links:  n_links x { u8[16] trace_id, u8[8] span_id, u8 flags, u8 n_attrs, attrs... }
 *   where str16 = u16 length + bytes (no terminator).
 * STATUS_REQ payload: empty. STATUS payload: text "key=value\n" lines.
 *
 * Every decoder function validates bounds and returns false on any violation;
 * the exporter counts and drops such frames (docs/ARCHITECTURE.md).
 */
#ifndef TRACESHIM_FRAME_H
#define TRACESHIM_FRAME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TS_FRAME_MAGIC 0x31485354u /* "TSH1" read as little-endian u32 */
#define TS_FRAME_VERSION 1
#define TS_FRAME_HEADER_SIZE 16
#define TS_FRAME_MAX 32768 /* whole frame; fits any SEQPACKET socket buffer */
#define TS_SPAN_RECORD_MAX 8192
#define TS_STR_MAX 2048 /* longest string value kept; longer ones are cut */
#define TS_KEY_MAX 128
#define TS_MAX_ATTRS 48
#define TS_MAX_LINKS 4

enum ts_frame_type {
	TS_FRAME_HELLO = 1,
	TS_FRAME_SPANS = 2,
	TS_FRAME_STATUS_REQ = 3,
	TS_FRAME_STATUS = 4,
	TS_FRAME_WAKE = 5, /* empty: the shim's ring (below) is half unread, read it now */
	/* exporter -> shim, then the exporter closes: u32 reason (ts_refusal).
	 * The only frame the exporter sends unasked. */
	TS_FRAME_REFUSED = 6,
	/* shim -> exporter, empty: a connection for the child this process is
	 * about to fork (it changed its credentials and could not connect itself;
	 * docs/ARCHITECTURE.md §5). The reply is CHANNEL, or REFUSED (and then
	 * this connection stays open). */
	TS_FRAME_CHANNEL_REQ = 7,
	/* exporter -> shim, empty, with one fd (SCM_RIGHTS): a SEQPACKET socket
	 * the exporter serves as a new connection, admitted on the requester's
	 * credentials; the child says HELLO on it. */
	TS_FRAME_CHANNEL = 8,
};

/* Why the exporter refused a connection (TS_FRAME_REFUSED's payload). */
enum ts_refusal {
	TS_REFUSED_UID = 1,       /* SO_PEERCRED uid not the exporter's, root or TRACESHIM_ALLOWED_UIDS */
	TS_REFUSED_LIMIT = 2,     /* TRACESHIM_MAX_CONNECTIONS connections open */
	TS_REFUSED_RESOURCES = 3, /* the exporter is out of memory or file descriptors */
	/* never sent: the shim's own name for connect() failing with EACCES
	 * (another user's private socket: the exporter never sees us) */
	TS_REFUSED_SOCKET_MODE = 100,
};

enum ts_span_kind {
	TS_KIND_INTERNAL = 1,
	TS_KIND_SERVER = 2,
	TS_KIND_CLIENT = 3,
	TS_KIND_PRODUCER = 4,
	TS_KIND_CONSUMER = 5,
};

enum ts_status { TS_STATUS_UNSET = 0, TS_STATUS_OK = 1, TS_STATUS_ERROR = 2 };

enum ts_span_flags {
	TS_SPAN_F_SAMPLED = 1u << 0,       /* W3C sampled flag of the span's context */
	TS_SPAN_F_PARENT_REMOTE = 1u << 1, /* parent came from another process */
	/* A span sampled out at the head, shipped only so the exporter's metrics
	 * count it (docs/EXPORTER.md, Metrics): no attributes, never exported. */
	TS_SPAN_F_METRICS_ONLY = 1u << 2,
};

/* STRARRAY: value is a str16 blob holding a sequence of str16 items
 * (v.s points at the blob); iterate it with ts_strarray_next(). */
enum ts_attr_type { TS_ATTR_STR = 1, TS_ATTR_INT = 2, TS_ATTR_BOOL = 3, TS_ATTR_DOUBLE = 4, TS_ATTR_STRARRAY = 5 };

struct ts_frame_header {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t length;
	uint32_t dropped;
};

/* A string that points into someone else's memory (a frame, a span's arena). */
struct ts_str {
	const char *ptr;
	uint16_t len;
};

struct ts_attr {
	struct ts_str key;
	uint8_t type;
	union {
		struct ts_str s;
		int64_t i;
		bool b;
		double d;
	} v;
};

/* ---- writing ---------------------------------------------------------- */

/* A bounded output buffer. Writes past cap set `overflow` and are ignored, so
 * a caller checks once at the end instead of after every field. */
struct ts_wbuf {
	uint8_t *p;
	size_t len, cap;
	bool overflow;
};

/* The field writers are inline: the shim encodes every span it ends with
 * them, and with constant sizes each one is a bounds check and a store. */
static inline void ts_wbuf_init(struct ts_wbuf *w, void *mem, size_t cap)
{
	w->p = mem;
	w->len = 0;
	w->cap = cap;
	w->overflow = false;
}

static inline void ts_put_bytes(struct ts_wbuf *w, const void *p, size_t n)
{
	if (w->overflow || n > w->cap - w->len) {
		w->overflow = true;
		return;
	}
	if (n)
		memcpy(w->p + w->len, p, n);
	w->len += n;
}

static inline void ts_put_u8(struct ts_wbuf *w, uint8_t v) { ts_put_bytes(w, &v, 1); }
static inline void ts_put_u16(struct ts_wbuf *w, uint16_t v) { ts_put_bytes(w, &v, 2); }
static inline void ts_put_u32(struct ts_wbuf *w, uint32_t v) { ts_put_bytes(w, &v, 4); }
static inline void ts_put_u64(struct ts_wbuf *w, uint64_t v) { ts_put_bytes(w, &v, 8); }

/* Length of p[0..n) cut to at most max bytes on a UTF-8 boundary, so a
 * truncated value is still valid text. */
static inline size_t ts_utf8_cut(const char *p, size_t n, size_t max)
{
	if (n <= max)
		return n;
	n = max;
	while (n > 0 && ((unsigned char)p[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* str16; cuts at TS_STR_MAX */
static inline void ts_put_str16(struct ts_wbuf *w, const char *p, size_t n)
{
	n = p ? ts_utf8_cut(p, n, TS_STR_MAX) : 0;
	ts_put_u16(w, (uint16_t)n);
	ts_put_bytes(w, p, n);
}

void ts_put_attr(struct ts_wbuf *w, const struct ts_attr *a);

/* A string or int attribute: ts_put_attr without the struct, for a key the
 * caller has already cut to TS_KEY_MAX bytes of whole UTF-8 (ts_utf8_cut), as
 * ts_put_attr does. With TS_KEY("literal") the key's length is a compile-time
 * constant. */
#define TS_KEY(literal) (literal), (sizeof(literal) - 1)

/* What every attribute starts with: u8 key_len, the key, u8 type. */
static inline void ts_put_attr_key(struct ts_wbuf *w, const char *key, size_t klen, uint8_t type)
{
	ts_put_u8(w, (uint8_t)klen);
	ts_put_bytes(w, key, klen);
	ts_put_u8(w, type);
}

static inline void ts_put_attr_str(struct ts_wbuf *w, const char *key, size_t klen, const char *val, size_t n)
{
	ts_put_attr_key(w, key, klen, TS_ATTR_STR);
	ts_put_str16(w, val, n);
}

static inline void ts_put_attr_int(struct ts_wbuf *w, const char *key, size_t klen, int64_t v)
{
	ts_put_attr_key(w, key, klen, TS_ATTR_INT);
	ts_put_u64(w, (uint64_t)v);
}

/* Header with length 0; ts_frame_finish() patches the length in. */
void ts_frame_begin(struct ts_wbuf *w, enum ts_frame_type type, uint32_t dropped);
bool ts_frame_finish(struct ts_wbuf *w); /* false if the frame overflowed */

/* ---- reading ---------------------------------------------------------- */

struct ts_rbuf {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

/* The field readers are inline: the exporter decodes every record it
 * receives, and out-of-line calls per field were a third of its CPU. */
static inline void ts_rbuf_init(struct ts_rbuf *r, const void *mem, size_t len)
{
	r->p = mem;
	r->len = len;
	r->off = 0;
	r->bad = false;
}

static inline const uint8_t *ts_get_bytes(struct ts_rbuf *r, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p + r->off;
	r->off += n;
	return p;
}

#define TS_GETTER(name, type)                                   \
	static inline type name(struct ts_rbuf *r)                  \
	{                                                           \
		type v = 0;                                             \
		const uint8_t *p = ts_get_bytes(r, sizeof v);           \
		if (p)                                                  \
			memcpy(&v, p, sizeof v);                            \
		return v;                                               \
	}
TS_GETTER(ts_get_u8, uint8_t)
TS_GETTER(ts_get_u16, uint16_t)
TS_GETTER(ts_get_u32, uint32_t)
TS_GETTER(ts_get_u64, uint64_t)
#undef TS_GETTER

static inline struct ts_str ts_get_str16(struct ts_rbuf *r)
{
	struct ts_str s = {0};
	uint16_t n = ts_get_u16(r);
	if (n > TS_STR_MAX) {
		r->bad = true;
		return s;
	}
	const uint8_t *p = ts_get_bytes(r, n);
	if (p) {
		s.ptr = (const char *)p;
		s.len = n;
	}
	return s;
}
bool ts_get_attr(struct ts_rbuf *r, struct ts_attr *a);
/* Next item of a TS_ATTR_STRARRAY blob; false at the end (or on a bad blob). */
bool ts_strarray_next(struct ts_rbuf *blob, struct ts_str *item);

/* Validates the header of a received message of `len` bytes: magic, version,
 * known type, length == len - header. */
bool ts_frame_parse_header(const void *msg, size_t len, struct ts_frame_header *h);

/* A decoded span record: every pointer points into the frame. */
struct ts_span_view {
	const uint8_t *trace_id, *span_id, *parent_span_id;
	uint64_t start_ns, end_ns;
	uint8_t kind, status, flags, n_attrs, n_links;
	struct ts_str name, status_message, trace_state;
	struct ts_attr attrs[TS_MAX_ATTRS];
	struct {
		const uint8_t *trace_id, *span_id;
		uint8_t flags, n_attrs;
		struct ts_attr attrs[8];
	} links[TS_MAX_LINKS];
	const uint8_t *record; /* the raw record, for copying it whole */
	uint16_t record_len;
};

/* Decodes one span record at r's offset and advances past it. Checks every
 * length, enum and count; false (and r->bad) on anything malformed. out
 * NULL: the same checks, nothing written (the exporter's receive loop). */
bool ts_span_decode(struct ts_rbuf *r, struct ts_span_view *out);

struct ts_hello_view {
	uint32_t pid, ppid;
	uint64_t start_ns;
	uint8_t n_attrs;
	struct ts_attr attrs[TS_MAX_ATTRS];
};
bool ts_hello_decode(const void *payload, size_t len, struct ts_hello_view *out);

/* Encoding is the exact inverse of decoding: the same view struct describes a
 * span on both sides (record/record_len are ignored when encoding). */
void ts_span_encode(struct ts_wbuf *w, const struct ts_span_view *s);
void ts_hello_encode(struct ts_wbuf *w, uint32_t pid, uint32_t ppid, uint64_t start_ns,
		     const struct ts_attr *attrs, uint8_t n_attrs);

/* ---- the shared span ring --------------------------------------------------
 *
 * The normal way spans leave a process (docs/ARCHITECTURE.md §5). The shim
 * creates a sealed memfd (F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL) of
 * TS_RING_HDR_SIZE + data_size bytes, data_size a power of two in
 * [TS_RING_MIN, TS_RING_MAX], and passes it with SCM_RIGHTS on its HELLO frame.
 * From then on it appends span records (the record format above) to the ring
 * with no system call; the exporter reads them on its own timer, on a WAKE
 * frame, and when the connection closes — so a process that exits, execs or is
 * killed loses none of what it committed, and never needs a thread of its own.
 *
 * One writer (the shim serialises its threads), one reader (the exporter).
 * head/tail are byte counts that only grow; the byte at count c is
 * data[c & (data_size-1)]. A record never wraps: when the next one does not fit
 * before the end of the data area, the writer pads to the end, writing a u16 0
 * there if at least 2 bytes remain. So the reader, at offset o with
 * room = data_size - o: room < 2 or a u16 0 means "skip room bytes"; anything
 * else is a record's u16 length. head is published (release) after the bytes;
 * tail is published after the reader has copied them out.
 *
 * The exporter treats all of it as hostile: it trusts only its own copy of tail,
 * bounds head - tail by data_size, copies records out before validating them
 * (with the same decoder as SPANS frames), and needs the shrink seal so the
 * mapping cannot be cut under it (SIGBUS).
 */
#define TS_RING_MAGIC 0x31525354u /* "TSR1" */
#define TS_RING_VERSION 1
#define TS_RING_HDR_SIZE 4096
#define TS_RING_MIN (64u << 10)
#define TS_RING_MAX (64u << 20)

struct ts_ring_hdr {
	uint32_t magic, version, data_size;
	uint32_t flush_ms; /* the shim's TRACESHIM_FLUSH_MS: how often the reader should look */
	uint8_t pad0[48];
	/* written by the shim */
	_Atomic uint64_t head;    /* bytes committed */
	_Atomic uint64_t spans;   /* records committed */
	_Atomic uint64_t dropped; /* spans the process dropped, cumulative */
	uint8_t pad1[40];
	/* written by the exporter */
	_Atomic uint64_t tail;       /* bytes consumed */
	_Atomic uint64_t read_spans; /* records consumed */
	_Atomic uint64_t reader_ns;  /* CLOCK_MONOTONIC of the reader's last look */
	uint8_t pad2[40];
};
/* Fixed offsets: tests and other-language readers rely on them. */
_Static_assert(offsetof(struct ts_ring_hdr, head) == 64, "ring header layout");
_Static_assert(offsetof(struct ts_ring_hdr, tail) == 128, "ring header layout");
_Static_assert(sizeof(struct ts_ring_hdr) <= TS_RING_HDR_SIZE, "ring header layout");

/* The writer's side. `head` is the writer's own copy (the shared one is only
 * ever stored). */
struct ts_ring {
	struct ts_ring_hdr *h;
	uint8_t *data;
	uint32_t size;
	uint64_t head;
	uint64_t tail_seen; /* the reader's tail as of the last reserve */
};

/* Appends one record; false (nothing written) when the ring lacks room.
 * *used: bytes unread after the append (for deciding to send WAKE). */
bool ts_ring_put(struct ts_ring *r, const void *rec, size_t len, uint64_t *used);

/* ts_ring_put in two steps, so a record is encoded straight into the ring:
 * reserve returns where len bytes go (padding to the end of the area first
 * if they would wrap), or NULL when the ring lacks room; the writer fills
 * them, record length first, and commit publishes them and returns the bytes
 * unread. Nothing is visible to the reader before the commit. */
uint8_t *ts_ring_reserve(struct ts_ring *r, size_t len);
uint64_t ts_ring_commit(struct ts_ring *r, size_t len);

/* The writer's side after its reader went away (docs/ARCHITECTURE.md §5): moves
 * the records of src its reader had not consumed, [src tail, src head), in
 * order, into dst (a fresh ring for the next reader); stops at the first one
 * that does not fit or breaks the rules. Returns the number moved; src is
 * left as it was. */
unsigned ts_ring_move(struct ts_ring *dst, const struct ts_ring *src);

/* The reader's side: copies whole records from [*tail, head) into out as a
 * SPANS payload (u16 count, records), stopping when the next record would not
 * fit in cap. Advances *tail past what it copied (and past padding). Returns
 * the payload length (0: nothing copied). *bad: the ring's contents broke the
 * rules (a length that does not fit); the caller skips to head. */
size_t ts_ring_take(const uint8_t *data, uint32_t size, uint64_t *tail, uint64_t head, uint8_t *out,
		    size_t cap, uint16_t *count, bool *bad);

#endif
