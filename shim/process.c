/* process.c — the process span, the resource, and every exit path we can see:
 * exit() (on_exit handler, which also gives the status), return from main,
 * _exit/_Exit (hooked), and exec (the image is replaced: hooks/exec.c).
 * No signal handler is ever installed: the program's dispositions are its
 * own. A process killed by a signal ends nothing itself; its open process span
 * is announced in the ring's header, and the exporter ships it when the
 * process hangs up without having ended it (docs/ARCHITECTURE.md §9).
 *
 * The process span may come in segments (docs/ARCHITECTURE.md §11):
 *   - a long job is split every TRACESHIM_MAX_TRACE_SECONDS into a new trace,
 *     each segment linked to the previous one (ts_process_split);
 *   - an exec that fails leaves the image running: a new segment, linked;
 *   - a forked child that execs before doing anything traced is never
 *     reported: the exec'd image stands for it (fork+exec = one process).
 * proc_mu serialises everyone who ends or replaces proc_span; span starts
 * only ever trylock it, so a split never makes a span start wait. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "argv_redact.h"
#include "envcarrier.h"
#include "fdtable.h"
#include "ids.h"
#include "proto/w3c.h"
#include "shim.h"
#include "xport_tls.h"

extern char **environ;

TS_REAL(read, ssize_t, (int, void *, size_t))
TS_REAL(close, int, (int))

static struct ts_span proc_span;
static _Atomic int proc_ended;
static pthread_mutex_t proc_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ts_ctx proc_parent;   /* parent of the current segment (invalid: a root) */
static bool proc_from_fork;         /* the current segment began in a forked child */
static unsigned proc_segment = 1;
static bool on_exit_registered;
_Atomic uint64_t ts_segment_deadline_ns = UINT64_MAX;
_Atomic bool ts_process_used;
static char run_id[65];
static uint8_t resource[TS_FRAME_MAX / 2 - 64];
static size_t resource_len;
static char exe_path[512];
static const char *exe_name = "unknown";
static char service_name[300];

size_t ts_resource_hello(uint8_t *out, size_t cap)
{
	if (resource_len > cap)
		return 0;
	memcpy(out, resource, resource_len);
	return resource_len;
}

static void read_exe(void)
{
	ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
	exe_path[n > 0 ? n : 0] = 0;
	const char *slash = strrchr(exe_path, '/');
	exe_name = slash ? slash + 1 : (exe_path[0] ? exe_path : program_invocation_short_name);
}

/* /proc/self/cmdline (NUL-separated) as a STRARRAY blob of str16 items,
 * each argument through argv_redact.c unless TRACESHIM_COMMAND_ARGS=raw.
 * Init and fork child only (single-threaded then): static buffers. */
static size_t command_args(uint8_t *blob, size_t cap)
{
	static char raw[TS_STR_MAX], red[TS_STR_MAX + 1];
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = real_read()(fd, raw, sizeof raw);
	real_close()(fd);
	struct ts_wbuf w;
	ts_wbuf_init(&w, blob, cap);
	struct ts_argv_redact st;
	ts_argv_redact_init(&st, raw, n > 0 ? strnlen(raw, (size_t)n) : 0);
	for (ssize_t i = 0; i < n;) {
		size_t len = strnlen(raw + i, (size_t)(n - i));
		size_t before = w.len;
		if (ts_cfg.command_args == TS_ARGS_RAW) {
			ts_put_str16(&w, raw + i, len);
		} else {
			size_t need = ts_argv_redact_next(&st, raw + i, len, red, sizeof red);
			ts_put_str16(&w, red, need < sizeof red ? need : sizeof red - 1);
		}
		if (w.overflow) { /* keep whole arguments only */
			w.len = before;
			break;
		}
		i += (ssize_t)len + 1;
	}
	return w.len;
}

static void attr_str(struct ts_wbuf *w, uint8_t *n, const char *k, const char *v)
{
	struct ts_attr a = {.key = {k, (uint16_t)strlen(k)}, .type = TS_ATTR_STR};
	a.v.s.ptr = v;
	a.v.s.len = (uint16_t)strnlen(v, TS_STR_MAX);
	ts_put_attr(w, &a);
	(*n)++;
}

static void attr_int(struct ts_wbuf *w, uint8_t *n, const char *k, int64_t v)
{
	struct ts_attr a = {.key = {k, (uint16_t)strlen(k)}, .type = TS_ATTR_INT};
	a.v.i = v;
	ts_put_attr(w, &a);
	(*n)++;
}

static bool is_ours(const char *k)
{
	static const char *ours[] = {"service.name", "process.pid", "process.parent_pid", "traceshim.run.id",
				     "process.executable.name", "process.executable.path",
				     "process.command_args", "host.name", "telemetry.sdk.name",
				     "telemetry.sdk.version", "telemetry.sdk.language"};
	for (unsigned i = 0; i < sizeof ours / sizeof *ours; i++)
		if (!strcmp(k, ours[i]))
			return true;
	return false;
}

/* HELLO payload: pid, ppid, start, then the resource attributes. Rebuilt in a
 * forked child (new pid). OTEL_SERVICE_NAME wins over a service.name given in
 * OTEL_RESOURCE_ATTRIBUTES, as the SDK specification says. */
void ts_resource_rebuild(void)
{
	static uint8_t attrs[sizeof resource - 32]; /* init and fork child only: single-threaded */
	struct ts_wbuf w;
	ts_wbuf_init(&w, attrs, sizeof attrs);
	uint8_t n = 0;
	char key[TS_KEY_MAX + 1], val[512];

	const char *svc = ts_cfg.service_name;
	const char *cur = ts_cfg.resource_attrs;
	char from_attrs[300] = "";
	while (ts_kv_next(&cur, key, sizeof key, val, sizeof val))
		if (!strcmp(key, "service.name"))
			snprintf(from_attrs, sizeof from_attrs, "%.299s", val);
	if (!*svc)
		svc = from_attrs;
	if (*svc)
		snprintf(service_name, sizeof service_name, "%.299s", svc);
	else
		snprintf(service_name, sizeof service_name, "unknown_service:%.200s", exe_name);

	attr_str(&w, &n, "service.name", service_name);
	attr_int(&w, &n, "process.pid", getpid());
	attr_int(&w, &n, "process.parent_pid", getppid());
	attr_str(&w, &n, "process.executable.name", exe_name);
	attr_str(&w, &n, "process.executable.path", exe_path);
	if (ts_cfg.command_args != TS_ARGS_OFF) {
		static uint8_t args[TS_STR_MAX];
		size_t alen = command_args(args, sizeof args);
		struct ts_attr a = {.key = {"process.command_args", 20}, .type = TS_ATTR_STRARRAY};
		a.v.s.ptr = (const char *)args;
		a.v.s.len = (uint16_t)alen;
		ts_put_attr(&w, &a);
		n++;
	}
	struct utsname u;
	if (uname(&u) == 0)
		attr_str(&w, &n, "host.name", u.nodename);
	attr_str(&w, &n, "telemetry.sdk.name", "traceshim");
	attr_str(&w, &n, "telemetry.sdk.version", TRACESHIM_VERSION);
	attr_str(&w, &n, "traceshim.run.id", run_id);
	cur = ts_cfg.resource_attrs;
	while (n < TS_MAX_ATTRS && ts_kv_next(&cur, key, sizeof key, val, sizeof val))
		if (!is_ours(key))
			attr_str(&w, &n, key, val);

	struct ts_wbuf out;
	ts_wbuf_init(&out, resource, sizeof resource);
	ts_put_u32(&out, (uint32_t)getpid());
	ts_put_u32(&out, (uint32_t)getppid());
	ts_put_u64(&out, proc_span.start_ns);
	ts_put_u8(&out, n);
	ts_put_bytes(&out, attrs, w.len);
	resource_len = (w.overflow || out.overflow) ? 0 : out.len;
}

/* TRACEPARENT from the environment (env-carrier convention). TRACESTATE and
 * BAGGAGE are read into ts_process_extras by ts_stream_init. */
static bool env_parent(struct ts_ctx *c)
{
	const char *tp = getenv("TRACEPARENT");
	struct w3c_traceparent p;
	if (!ts_cfg.propagate_tracecontext || !tp || !w3c_traceparent_parse(tp, strlen(tp), &p))
		return false;
	memcpy(c->trace_id, p.trace_id, 16);
	memcpy(c->span_id, p.span_id, 8);
	c->flags = p.flags;
	c->valid = true;
	c->remote = true;
	return true;
}

/* traceshim.run.id: inherited through TRACESHIM_RUN_ID, else this process is
 * the first of its tree and makes one up. */
static void load_run_id(void)
{
	const char *r = getenv("TRACESHIM_RUN_ID");
	size_t n = r ? strlen(r) : 0;
	bool ok = n > 0 && n < sizeof run_id;
	for (size_t i = 0; ok && i < n; i++)
		ok = (r[i] >= '0' && r[i] <= '9') || (r[i] >= 'a' && r[i] <= 'z') || (r[i] >= 'A' && r[i] <= 'Z') ||
		     r[i] == '-' || r[i] == '_' || r[i] == '.';
	if (ok) {
		memcpy(run_id, r, n + 1);
		return;
	}
	uint8_t id[16];
	ts_new_trace_id(id);
	ts_hex(id, 16, run_id);
}

/* ---- what a child process inherits (hooks/exec.c, hooks/spawn.c) -------------- */

#define KEEP_MAX 32
static char keep_buf[4096];
static const char *keep_vec[KEEP_MAX];
static unsigned keep_n;
static char preload_path[PATH_MAX];

static void keep_add(const char *name, size_t name_len, const char *val, size_t *used)
{
	size_t n = name_len + 1 + strlen(val) + 1;
	if (keep_n >= KEEP_MAX || *used + n > sizeof keep_buf)
		return;
	char *p = keep_buf + *used;
	memcpy(p, name, name_len);
	p[name_len] = '=';
	memcpy(p + name_len + 1, val, n - name_len - 1);
	keep_vec[keep_n++] = p;
	*used += n;
}

/* The tracing configuration of the tree (TRACESHIM_*, OTEL_*) as it was when
 * this image started, copied: the application may rewrite its environment
 * block (setproctitle) or unsetenv. A child whose envp lacks one of them gets
 * it back, so `env -i`-style callers still reach the same exporter with the
 * same settings. TRACESHIM_SOCKET is always in: the path this process uses. */
static void snapshot_env(void)
{
	size_t used = 0;
	bool have_socket = false;
	for (char **e = environ; e && *e; e++) {
		if (strncmp(*e, "TRACESHIM_", 10) && strncmp(*e, "OTEL_", 5))
			continue;
		const char *eq = strchr(*e, '=');
		if (!eq || !strncmp(*e, "TRACESHIM_RUN_ID=", 17))
			continue;
		have_socket |= !strncmp(*e, "TRACESHIM_SOCKET=", 17);
		keep_add(*e, (size_t)(eq - *e), eq + 1, &used);
	}
	/* preload.env's variables, where the environment has none of that name. */
	for (size_t i = 0; i < ts_envfile_len; i += strlen(ts_envfile + i) + 1) {
		const char *kv = ts_envfile + i, *eq = strchr(kv, '=');
		size_t n = (size_t)(eq - kv);
		bool in_env = false;
		for (char **e = environ; e && *e && !in_env; e++)
			in_env = !strncmp(*e, kv, n + 1);
		if (in_env || !strncmp(kv, "TRACESHIM_RUN_ID=", 17))
			continue;
		have_socket |= !strncmp(kv, "TRACESHIM_SOCKET=", 17);
		keep_add(kv, n, eq + 1, &used);
	}
	if (!have_socket && ts_cfg.socket_path[0])
		keep_add("TRACESHIM_SOCKET", 16, ts_cfg.socket_path, &used);
}

/* Our own file, absolute, for LD_PRELOAD in children whose caller dropped it. */
static void find_preload_path(void)
{
	Dl_info di;
	preload_path[0] = 0;
	if (!dladdr(&proc_span, &di) || !di.dli_fname || !*di.dli_fname)
		return;
	if (!realpath(di.dli_fname, preload_path))
		snprintf(preload_path, sizeof preload_path, "%s", di.dli_fname);
}

bool ts_foreign_child(void) { return getpid() != ts_pid; }

/* Fills c with what a child gets. exec: this image is being replaced.
 * foreign: the caller is a vfork/clone child — read state, write none but
 * the one flag that keeps our segment from being elided. */
void ts_process_carrier(struct ts_carrier *c, bool exec, bool foreign)
{
	memset(c, 0, sizeof *c);
	struct ts_ctx parent;
	const struct ts_extras *x;
	if (foreign) {
		parent = *ts_ctx_current();
		x = ts_extras_current();
		atomic_store_explicit(&ts_process_used, true, memory_order_relaxed);
	} else {
		uint64_t now = ts_now_ns();
		if (TS_UNLIKELY(now >= atomic_load_explicit(&ts_segment_deadline_ns, memory_order_relaxed)))
			ts_process_split(now);
		const struct ts_ctx *cur = ts_ctx_current();
		parent = *cur;
		x = ts_extras_current();
		if (exec && cur == &ts_process_ctx && proc_from_fork && proc_parent.valid &&
		    !atomic_load(&ts_process_used)) {
			/* fork + exec with nothing traced in between: the new image is
			 * the child of whatever our fork segment's parent was. */
			parent = proc_parent;
			c->elide = true;
		} else {
			atomic_store_explicit(&ts_process_used, true, memory_order_relaxed);
		}
	}
	if (ts_cfg.propagate_tracecontext) {
		if (parent.valid) {
			struct w3c_traceparent tp = {.version = 0, .flags = parent.flags};
			memcpy(tp.trace_id, parent.trace_id, 16);
			memcpy(tp.span_id, parent.span_id, 8);
			w3c_traceparent_format(&tp, c->traceparent);
			ts_envc_set(&c->spec, "TRACEPARENT", c->traceparent, W3C_TRACEPARENT_LEN);
		} else {
			ts_envc_set(&c->spec, "TRACEPARENT", NULL, 0);
		}
		bool has = parent.valid && x && x->tracestate_len;
		ts_envc_set(&c->spec, "TRACESTATE", has ? x->tracestate : NULL, has ? x->tracestate_len : 0);
	}
	if (ts_cfg.propagate_baggage) {
		bool has = x && x->baggage_len;
		ts_envc_set(&c->spec, "BAGGAGE", has ? x->baggage : NULL, has ? x->baggage_len : 0);
	}
	ts_envc_set(&c->spec, "TRACESHIM_RUN_ID", run_id, strlen(run_id));
	c->spec.keep = keep_vec;
	c->spec.n_keep = keep_n;
	c->spec.preload = preload_path[0] ? preload_path : NULL;
	c->active = true;
}

/* ---- the announced process span ---------------------------------------------
 *
 * A process that dies of a signal (or exits with a raw exit_group) runs none
 * of our code. What it can do beforehand is leave its open process span in
 * the ring's header (frame.h proc_rec): the record it would ship, ended at its
 * start, with traceshim.process.end=hangup. The exporter reads the header only
 * after the hang-up and ships it with the hang-up time as the end (and the
 * signal, when it can still see the process's wait status). It is withdrawn
 * before the process span really ends and whenever the ring is let go. */

static struct ts_span proc_copy;            /* under proc_mu */
static uint8_t proc_rec[TS_RING_PROC_MAX];  /* under proc_mu */

/* Caller holds proc_mu. 0: nothing to announce. */
static size_t provisional_record(void)
{
	if (atomic_load(&proc_ended) || !proc_span.recording)
		return 0;
	memcpy(&proc_copy, &proc_span, sizeof proc_copy);
	proc_copy.end_ns = proc_copy.start_ns;
	if (proc_segment > 1)
		ts_span_attr_int(&proc_copy, "traceshim.segment", proc_segment);
	ts_span_attr_str(&proc_copy, "traceshim.process.end", "hangup");
	return ts_span_record(&proc_copy, proc_rec, sizeof proc_rec);
}

/* A new segment began (caller holds proc_mu): the attached ring, if any, gets it. */
static void announce_segment(void)
{
	size_t n = provisional_record();
	ts_transport_announce_process(n ? proc_rec : NULL, n);
}

/* From the transport, ring_mu held, right after a ring was attached. proc_mu
 * is only tried (order proc_mu -> ring_mu): when it is taken, the process span
 * is ending (its own record made the connection), a split is under way (and
 * announces its segment itself), or a fork is being made — the one case left
 * unannounced until the next segment. */
void ts_process_announce(struct ts_ring_hdr *h)
{
	if (pthread_mutex_trylock(&proc_mu) != 0)
		return;
	ts_in_shim++;
	size_t n = provisional_record();
	ts_ring_set_process(h, n ? proc_rec : NULL, n);
	ts_in_shim--;
	pthread_mutex_unlock(&proc_mu);
}

/* ---- segments ---------------------------------------------------------------- */

static uint64_t deadline_after(uint64_t start)
{
	if (!ts_cfg.max_trace_seconds)
		return UINT64_MAX;
	return start + (uint64_t)ts_cfg.max_trace_seconds * 1000000000ull;
}

/* Starts proc_span as a new segment; the caller holds proc_mu (or is alone). */
static void begin_segment(const struct ts_ctx *parent, uint64_t start)
{
	struct ts_ctx none = {0};
	atomic_store(&ts_segment_deadline_ns, UINT64_MAX); /* no split from our own span start */
	proc_parent = parent ? *parent : none;
	ts_span_start_at(&proc_span, exe_name, TS_KIND_INTERNAL, &proc_parent, start);
	ts_span_ctx(&proc_span, &ts_process_ctx);
	atomic_store(&proc_ended, 0);
	atomic_store(&ts_process_used, false);
	atomic_store(&ts_segment_deadline_ns, deadline_after(start));
}

/* A segment that follows a reported one: numbered and linked to it. */
static void begin_next_segment(const struct ts_ctx *parent, uint64_t start, const uint8_t prev_trace[16],
			       const uint8_t prev_span[8])
{
	proc_segment++;
	begin_segment(parent, start);
	ts_span_attr_int(&proc_span, "traceshim.segment", proc_segment);
	ts_span_link(&proc_span, prev_trace, prev_span);
	atomic_store(&ts_process_used, true); /* never elided: its predecessor was reported */
}

/* Ends the current segment; caller holds proc_mu. False if it had ended. */
static bool end_segment(uint64_t end, const char *why, uint8_t trace[16], uint8_t span[8])
{
	int expected = 0;
	if (!atomic_compare_exchange_strong(&proc_ended, &expected, 1))
		return false;
	memcpy(trace, proc_span.trace_id, 16);
	memcpy(span, proc_span.span_id, 8);
	ts_transport_announce_process(NULL, 0); /* withdrawn before the real record goes in */
	if (proc_segment > 1 || !strcmp(why, "split"))
		ts_span_attr_int(&proc_span, "traceshim.segment", proc_segment);
	ts_span_attr_str(&proc_span, "traceshim.process.end", why);
	ts_span_end_at(&proc_span, end);
	return true;
}

/* Called from a span start (ts_process_tick) or a spawn once the segment is
 * older than TRACESHIM_MAX_TRACE_SECONDS. One thread does the split; the
 * others go on in the old segment meanwhile, and a thread whose own context
 * is a span of the old trace keeps it until that span ends. */
void ts_process_split(uint64_t now)
{
	uint64_t due = atomic_load(&ts_segment_deadline_ns);
	if (now < due || !atomic_compare_exchange_strong(&ts_segment_deadline_ns, &due, UINT64_MAX))
		return;
	if (ts_foreign_child() || pthread_mutex_trylock(&proc_mu) != 0) {
		atomic_store(&ts_segment_deadline_ns, due); /* not now; the next span tries again */
		return;
	}
	int saved = errno;
	ts_in_shim++;
	uint8_t trace[16], span[8];
	if (end_segment(now, "split", trace, span)) {
		struct ts_ctx none = {0};
		begin_next_segment(&none, now, trace, span);
		/* tracestate belongs to the old trace; baggage is the application's and stays */
		ts_process_extras.tracestate_len = 0;
		announce_segment();
		ts_debug("process span split: segment %u", proc_segment);
	} /* else the process has ended (exec, exit): the deadline stays off */
	ts_in_shim--;
	pthread_mutex_unlock(&proc_mu);
	errno = saved;
}

/* ---- exec -------------------------------------------------------------------- */

/* The image is about to be replaced: end this segment and send everything,
 * since nothing of this image survives a successful exec. */
void ts_process_exec_begin(const struct ts_carrier *c)
{
	if (c->elide) {
		ts_transport_announce_process(NULL, 0); /* the exec'd image stands for us */
		return; /* nothing to report, nothing queued (the ring was empty at fork) */
	}
	uint8_t trace[16], span[8];
	pthread_mutex_lock(&proc_mu);
	ts_in_shim++;
	ts_sync_flush++;
	end_segment(ts_now_ns(), "exec", trace, span);
	ts_in_shim--;
	pthread_mutex_unlock(&proc_mu);
	ts_transport_flush(ts_cfg.exit_flush_ms);
	ts_sync_flush--;
}

/* exec returned: the image goes on. A new segment, child of the same parent
 * and linked to the one exec ended, keeps it traced. */
void ts_process_exec_failed(const struct ts_carrier *c)
{
	if (c->elide)
		return; /* the fork segment was never ended: it simply goes on */
	pthread_mutex_lock(&proc_mu);
	ts_in_shim++;
	if (atomic_load(&proc_ended)) {
		uint8_t trace[16], span[8];
		memcpy(trace, proc_span.trace_id, 16);
		memcpy(span, proc_span.span_id, 8);
		struct ts_ctx parent = proc_parent;
		begin_next_segment(&parent, ts_now_ns(), trace, span);
		ts_span_attr_str(&proc_span, "traceshim.process.origin", "exec_failed");
		announce_segment();
	}
	ts_in_shim--;
	pthread_mutex_unlock(&proc_mu);
}

/* ---- start and end ----------------------------------------------------------- */

static void on_exit_handler(int status, void *arg)
{
	(void)arg;
	ts_process_end(status);
}

/* For a preloaded library the destructor runs BEFORE its on_exit handler:
 * our constructor registers the handler before __libc_start_main registers
 * _dl_fini, and exit handlers run last-in first-out. Ending here would lose
 * the exit status, so the destructor only stands in when there is no handler.
 * Nothing the handler needs is torn down by destructors. */
__attribute__((destructor)) static void ts_destructor(void)
{
	if (atomic_load(&ts_init_state) == TS_INIT_DONE && ts_enabled && !on_exit_registered)
		ts_process_end(-1);
}

static __thread bool fork_locked TS_TLS; /* this thread's fork holds proc_mu */

/* A fork is activity: it may split an old segment first (the child must be
 * born in the new trace), and the segment can no longer be elided. proc_mu
 * is held across fork so the child never copies a half-made segment. */
static void fork_prepare(void)
{
	ts_process_tick(ts_now_ns());
	fork_locked = !ts_foreign_child() && pthread_mutex_lock(&proc_mu) == 0;
}

static void fork_parent(void)
{
	if (fork_locked)
		pthread_mutex_unlock(&proc_mu);
	fork_locked = false;
}

void ts_process_start(void)
{
	read_exe();
	load_run_id();
	snapshot_env();
	find_preload_path();
	struct ts_ctx env;
	begin_segment(env_parent(&env) ? &env : NULL, ts_now_ns());
	ts_resource_rebuild();
	on_exit_registered = on_exit(on_exit_handler, NULL) == 0;
	pthread_atfork(fork_prepare, fork_parent, NULL); /* the child side: ts_process_atfork_child */
}

/* The child of fork(): a new process identity. Its spans belong under its
 * own process span — the forking thread's request context is where that
 * process span hangs, not where the child's spans go — and the request's
 * tracestate/baggage become the child's process extras. */
void ts_process_atfork_child(const struct ts_ctx *at_fork)
{
	pthread_mutex_init(&proc_mu, NULL);
	fork_locked = false;
	const struct ts_extras *x = ts_extras_current();
	if (x != &ts_process_extras) {
		if (x) {
			memcpy(&ts_process_extras, x, sizeof *x);
		} else {
			ts_process_extras.tracestate_len = ts_process_extras.baggage_len = 0;
			ts_process_extras.tracestate[0] = ts_process_extras.baggage[0] = 0;
		}
	}
	ts_ctx_set(NULL);
	proc_segment = 1;
	proc_from_fork = true;
	begin_segment(at_fork, ts_now_ns());
	ts_span_attr_str(&proc_span, "traceshim.process.origin", "fork");
	ts_resource_rebuild();
}

void ts_process_end(int exit_code)
{
	if (ts_foreign_child())
		return; /* a vfork/clone/_Fork child: this span is its parent's */
	pthread_mutex_lock(&proc_mu);
	int expected = 0;
	if (!atomic_compare_exchange_strong(&proc_ended, &expected, 1)) {
		pthread_mutex_unlock(&proc_mu);
		return;
	}
	ts_in_shim++;
	ts_sync_flush++; /* flushed below: no sender thread for these spans */
	uint64_t end = ts_now_ns();
	ts_tls_release_all();
	ts_fd_release_all();
	ts_transport_announce_process(NULL, 0); /* withdrawn before the real record goes in */
	if (proc_segment > 1)
		ts_span_attr_int(&proc_span, "traceshim.segment", proc_segment);
	if (exit_code >= 0) {
		ts_span_attr_int(&proc_span, "process.exit.code", exit_code);
		if (exit_code != 0) {
			char msg[48];
			snprintf(msg, sizeof msg, "exit status %d", exit_code);
			ts_span_error(&proc_span, "exit_status", msg);
		}
	}
	ts_span_end_at(&proc_span, end);
	ts_in_shim--;
	pthread_mutex_unlock(&proc_mu);
	ts_transport_flush(ts_cfg.exit_flush_ms);
}
