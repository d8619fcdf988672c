/* shim.h — what hooks/ may call. Everything here is safe to call from any
 * hooked function on any thread; see docs/ARCHITECTURE.md for the threading
 * model (per-thread: guard, context, rng; per-fd: fd table entries; shared:
 * the outgoing frame ring, guarded by one mutex only spans ever take). */
#ifndef TRACESHIM_SHIM_H
#define TRACESHIM_SHIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "frame.h"

#define TS_TLS __attribute__((tls_model("initial-exec")))
/* Marks an interposed libc function (also listed in hooks/traceshim.map). */
#define TS_EXPORT __attribute__((visibility("default")))
#define TS_LIKELY(x) __builtin_expect(!!(x), 1)
#define TS_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- init and reentrancy --------------------------------------------- */

/* Non-zero while this thread runs shim code (or a call the shim makes on its
 * own behalf): hooks then pass straight through. */
extern __thread int ts_in_shim TS_TLS;

enum { TS_INIT_NONE, TS_INIT_RUNNING, TS_INIT_DONE };
extern _Atomic int ts_init_state;
extern bool ts_enabled; /* written once, before ts_init_state becomes DONE */
extern struct ts_config ts_cfg;

void ts_init_slow(void);

/* The question every hook asks first. Init is lazy as well as from the
 * constructor: another library's constructor may call a hook before ours. */
static inline bool ts_tracing(void)
{
	if (ts_in_shim)
		return false;
	if (TS_UNLIKELY(atomic_load_explicit(&ts_init_state, memory_order_acquire) != TS_INIT_DONE)) {
		ts_init_slow();
		if (atomic_load_explicit(&ts_init_state, memory_order_acquire) != TS_INIT_DONE)
			return false;
	}
	return ts_enabled;
}

/* ---- real functions -------------------------------------------------- */

void *ts_resolve(const char *name, _Atomic(void *) *slot);

/* TS_REAL(send, ssize_t, (int, const void *, size_t, int)) defines
 * real_send(), returning libc's send. The pointer is resolved lazily with
 * dlsym(RTLD_NEXT) and cached in an atomic slot; memcpy converts it to a
 * function pointer without the cast ISO C forbids. */
#define TS_REAL(name, ret, params)                                                    \
	typedef ret(*name##_fn) params;                                                   \
	static _Atomic(void *) real_##name##_slot;                                        \
	static inline name##_fn real_##name(void)                                         \
	{                                                                                 \
		void *p = atomic_load_explicit(&real_##name##_slot, memory_order_relaxed);    \
		if (TS_UNLIKELY(!p))                                                          \
			p = ts_resolve(#name, &real_##name##_slot);                               \
		name##_fn f;                                                                  \
		memcpy(&f, &p, sizeof f);                                                     \
		return f;                                                                     \
	}

void *ts_resolve_lib(const char *name, const char *lib, _Atomic(void *) *slot);

/* TS_REAL_LIB(SSL_write, int, (SSL *, const void *, int), "libssl.so.3"):
 * the same for a function of another library; real_SSL_write() may be NULL. */
#define TS_REAL_LIB(name, ret, params, lib)                                           \
	typedef ret(*name##_fn) params;                                                   \
	static _Atomic(void *) real_##name##_slot;                                        \
	static inline name##_fn real_##name(void)                                         \
	{                                                                                 \
		void *p = atomic_load_explicit(&real_##name##_slot, memory_order_relaxed);    \
		if (TS_UNLIKELY(!p))                                                          \
			p = ts_resolve_lib(#name, lib, &real_##name##_slot);                      \
		name##_fn f;                                                                  \
		memcpy(&f, &p, sizeof f);                                                     \
		return f;                                                                     \
	}

/* ---- clocks ---------------------------------------------------------- */

static inline uint64_t ts_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t); /* vDSO: no syscall */
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* ---- logging (stderr via write(2), silent unless TRACESHIM_LOG) ------ */

void ts_log_at(enum ts_log_level lvl, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
#define ts_log(lvl, ...)                                                   \
	do {                                                                   \
		if (TS_UNLIKELY(ts_cfg.log_level >= (lvl)))                        \
			ts_log_at((lvl), __FILE__, __LINE__, __VA_ARGS__);             \
	} while (0)
#define ts_debug(...) ts_log(TS_LOG_DEBUG, __VA_ARGS__)
#define ts_warn(...) ts_log(TS_LOG_WARN, __VA_ARGS__)

/* ---- ids and context ------------------------------------------------- */

void ts_new_trace_id(uint8_t out[16]);
void ts_new_span_id(uint8_t out[8]);
uint32_t ts_thread_id(void); /* cached gettid() */

struct ts_ctx {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t flags;  /* W3C trace-flags: bit 0 sampled */
	bool valid;
	bool remote;    /* span_id belongs to another process */
	/* A SERVER span's context: the parent id its request's traceparent
	 * carried, so a proxy forwarding that header can be recognised. */
	bool has_received_parent;
	uint8_t received_parent[8];
};

/* The context new spans on this thread are children of: the thread's own if
 * set, else the process span's. */
const struct ts_ctx *ts_ctx_current(void);
void ts_ctx_set(const struct ts_ctx *c); /* NULL: back to the process context */
extern struct ts_ctx ts_process_ctx;

/* What travels with a context besides ids: the W3C tracestate and baggage
 * headers (already validated and within propagation limits). A thread owns
 * its extras buffer (allocated the first time it needs one); the process
 * context's extras come from TRACESTATE/BAGGAGE in the environment. */
struct ts_extras {
	uint16_t tracestate_len, baggage_len;
	char tracestate[513];
	char baggage[8193];
};
const struct ts_extras *ts_extras_current(void);
/* Sets this thread's extras (NULL or empty strings: none). */
void ts_extras_set(const char *tracestate, size_t ts_len, const char *baggage, size_t bg_len);
extern struct ts_extras ts_process_extras;

/* Head sampling decision for a span of this trace with this parent (NULL or
 * invalid: a new trace), per OTEL_TRACES_SAMPLER. */
bool ts_sample(const uint8_t trace_id[16], const struct ts_ctx *parent);

/* ---- spans ----------------------------------------------------------- */

#define TS_SPAN_ATTR_BYTES 1400

/* A span being recorded. Attributes are encoded straight into `attrs` in the
 * frame format, so ending a span is one copy into the outgoing frame. */
struct ts_span {
	uint8_t trace_id[16], span_id[8], parent_span_id[8];
	uint64_t start_ns, end_ns;
	uint8_t kind, status, flags, n_attrs;
	bool has_parent, recording;
	uint8_t n_links;
	uint8_t name_len;
	char name[64];
	char status_msg[128];
	uint16_t attr_len;
	uint8_t attrs[TS_SPAN_ATTR_BYTES];
	uint8_t link_bytes[2 * (16 + 8 + 2)];
	uint16_t link_len;
};

/* Starts a span as a child of `parent` (NULL: the current context). A parent
 * that is not valid makes the span the root of a new trace. */
void ts_span_start(struct ts_span *s, const char *name, uint8_t kind, const struct ts_ctx *parent);
void ts_span_start_at(struct ts_span *s, const char *name, uint8_t kind, const struct ts_ctx *parent,
		      uint64_t start_ns);
/* Appending attributes straight into the span's bytes (frame format). With
 * TS_KEY("literal") the key's length is a compile-time constant, so the hot
 * paths (HTTP spans) copy each key with a few moves. Open, write n attributes
 * with ts_put_attr_*, close: all n are kept, or (if they do not fit) none. */
static inline bool ts_span_attrs_open(struct ts_span *s, struct ts_wbuf *w)
{
	if (!s->recording || s->n_attrs >= TS_MAX_ATTRS)
		return false;
	ts_wbuf_init(w, s->attrs + s->attr_len, sizeof s->attrs - s->attr_len);
	return true;
}

static inline void ts_span_attrs_close(struct ts_span *s, const struct ts_wbuf *w, unsigned n)
{
	if (w->overflow || s->n_attrs + n > TS_MAX_ATTRS)
		return;
	s->attr_len = (uint16_t)(s->attr_len + w->len);
	s->n_attrs = (uint8_t)(s->n_attrs + n);
}

static inline void ts_span_put_str(struct ts_span *s, const char *key, size_t klen, const char *val, size_t n)
{
	struct ts_wbuf w;
	if (!ts_span_attrs_open(s, &w))
		return;
	ts_put_attr_str(&w, key, klen, val, n);
	ts_span_attrs_close(s, &w, 1);
}

static inline void ts_span_put_int(struct ts_span *s, const char *key, size_t klen, int64_t v)
{
	struct ts_wbuf w;
	if (!ts_span_attrs_open(s, &w))
		return;
	ts_put_attr_int(&w, key, klen, v);
	ts_span_attrs_close(s, &w, 1);
}

void ts_span_attr_str(struct ts_span *s, const char *key, const char *val);
void ts_span_attr_strn(struct ts_span *s, const char *key, const char *val, size_t len);
void ts_span_attr_int(struct ts_span *s, const char *key, int64_t v);
void ts_span_attr_bool(struct ts_span *s, const char *key, bool v);
void ts_span_error(struct ts_span *s, const char *error_type, const char *message);
/* Adds code.stacktrace of the application's call site (TRACESHIM_STACKTRACES). */
void ts_span_stack(struct ts_span *s);
void ts_span_link(struct ts_span *s, const uint8_t trace_id[16], const uint8_t span_id[8]);
/* The span as a context (for children and for propagation). */
void ts_span_ctx(const struct ts_span *s, struct ts_ctx *out);
void ts_span_end(struct ts_span *s);
void ts_span_end_at(struct ts_span *s, uint64_t end_ns);
/* The span's record as if it ended now with its end_ns as set (adds what
 * every span gets at its end: thread.id, baggage) into out: its length, 0 if
 * it does not fit. For a copy of a span, not one still to be ended. */
size_t ts_span_record(struct ts_span *s, uint8_t *out, size_t cap);

/* ---- transport ------------------------------------------------------- */

void ts_transport_init(void);
/* Set while this thread ends spans it flushes synchronously right after
 * (exit, exec): submitting them must not start the sender thread. */
extern __thread int ts_sync_flush TS_TLS;
/* Queues one span record, encoded where it will go (the shared ring or the
 * open frame slot); never blocks (drops and counts instead): reserve returns
 * room for len bytes, or NULL when the span is dropped (counted); after a
 * non-NULL reserve, write the whole record there and call commit right away
 * (a transport lock is held in between). */
uint8_t *ts_transport_reserve(size_t len);
void ts_transport_commit(size_t len);
/* Sends everything queued, waiting at most budget_ms for a busy exporter. */
void ts_transport_flush(uint32_t budget_ms);
bool ts_transport_owns_fd(int fd);
/* The fd of the connection to the exporter, or -1. */
int ts_transport_conn_fd(void);
void ts_transport_fd_closed_by_app(int fd);
void ts_transport_atfork_child(void);
/* Before a uid/gid/groups change (hooks/creds.c): connect (and HELLO with
 * the ring) now, with the credentials the exporter will check. */
void ts_transport_keep_channel(void);
/* fork() after such a change: the child's channel (runtime.c's atfork handlers). */
void ts_transport_atfork_prepare(void);
void ts_transport_atfork_parent(void);
/* The open process span's record in the attached ring's header (frame.h
 * proc_rec), for the exporter to ship if the process hangs up without ending
 * it; rec NULL withdraws it. Takes ring_mu (proc_mu -> ring_mu). */
void ts_transport_announce_process(const void *rec, size_t len);
extern _Atomic uint64_t ts_dropped_spans;

/* ---- process ---------------------------------------------------------- */

/* The process span, a child of TRACEPARENT from the environment if valid. */
void ts_process_start(void);
/* The variables a process that has the shim from /etc/ld.so.preload took
 * from preload.env (config.h): "NAME=value" strings, NUL-separated, in
 * ts_envfile[0..ts_envfile_len). Children are given them like the
 * environment's own (process.c), so a child that inherits LD_PRELOAD, and
 * so no longer reads the file, is judged by the same rules. */
extern char ts_envfile[];
extern size_t ts_envfile_len;
/* Ends the process span once (whichever exit path comes first) and flushes. */
void ts_process_end(int exit_code);
void ts_process_atfork_child(const struct ts_ctx *at_fork);
/* A ring was just attached (the transport holds ring_mu): announce the open
 * process span in its header, if it is open and proc_mu is free. */
void ts_process_announce(struct ts_ring_hdr *h);
void ts_resource_rebuild(void);
/* The HELLO payload (resource) of this process, for the transport. */
size_t ts_resource_hello(uint8_t *out, size_t cap);
extern _Atomic uint32_t ts_generation; /* bumped in every forked child */
/* pid as of init/fork: a different getpid() means a vfork/clone/_Fork child
 * that must not touch shim state. */
extern int ts_pid;
/* getpid() != ts_pid (one syscall): the caller is such a child. */
bool ts_foreign_child(void);

/* ---- child processes and long jobs (shim/process.c, docs/ARCHITECTURE.md §9) -- */

/* What a child gets in its environment (shim/envcarrier.h). */
struct ts_carrier;
void ts_process_carrier(struct ts_carrier *c, bool exec, bool foreign);
/* Around a real exec*: end this segment and flush; start a new one if it failed. */
void ts_process_exec_begin(const struct ts_carrier *c);
void ts_process_exec_failed(const struct ts_carrier *c);

/* TRACESHIM_MAX_TRACE_SECONDS: the process span is split into a new trace at
 * the first span start past the deadline, compared against the timestamp the
 * span start already has (no clock read, no syscall). */
extern _Atomic uint64_t ts_segment_deadline_ns;
extern _Atomic bool ts_process_used; /* anything traced since the segment began */
void ts_process_split(uint64_t now_ns);
static inline void ts_process_tick(uint64_t now_ns)
{
	if (TS_UNLIKELY(now_ns >= atomic_load_explicit(&ts_segment_deadline_ns, memory_order_relaxed)))
		ts_process_split(now_ns);
	if (TS_UNLIKELY(!atomic_load_explicit(&ts_process_used, memory_order_relaxed)))
		atomic_store_explicit(&ts_process_used, true, memory_order_relaxed);
}

#endif
