/* runtime.c — init, reentrancy guard, real-symbol resolution, logging,
 * per-thread ids and context. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "envcarrier.h"
#include "ids.h"
#include "shim.h"
#include "stream.h"

#ifndef TS_PRELOAD_ENV_FILE
#define TS_PRELOAD_ENV_FILE "/etc/traceshim/preload.env"
#endif

__thread int ts_in_shim TS_TLS;
_Atomic int ts_init_state;
bool ts_enabled;
struct ts_config ts_cfg;
_Atomic uint32_t ts_generation;
int ts_pid;

/* ---- real symbols ------------------------------------------------------ */

void *ts_resolve(const char *name, _Atomic(void *) *slot)
{
	int saved = errno;
	ts_in_shim++; /* dlsym may allocate, and allocation may call hooks */
	void *p = dlsym(RTLD_NEXT, name);
	ts_in_shim--;
	if (!p) {
		/* Never returns NULL to a hook: libc always has these symbols, and
		 * a missing one is a broken install we say out loud. */
		static const char msg[] = "traceshim: cannot resolve a libc symbol; tracing is unsafe\n";
		(void)!write(2, msg, sizeof msg - 1);
		p = dlsym(RTLD_DEFAULT, name);
	}
	atomic_store_explicit(slot, p, memory_order_relaxed);
	errno = saved;
	return p;
}

/* A library function, for hooks of libraries other than libc (TLS): from
 * the next object in the global scope, else from the library itself if it
 * is loaded at all — Python's _ssl loads libssl with local scope, where
 * RTLD_NEXT cannot see it. NULL when neither has it (the hook then passes
 * the call on as best it can; it never crashes). */
void *ts_resolve_lib(const char *name, const char *lib, _Atomic(void *) *slot)
{
	int saved = errno;
	ts_in_shim++;
	void *p = dlsym(RTLD_NEXT, name);
	if (!p) {
		void *h = dlopen(lib, RTLD_NOLOAD | RTLD_LAZY);
		if (h) {
			p = dlsym(h, name);
			dlclose(h); /* NOLOAD took a reference: give it back */
		}
	}
	ts_in_shim--;
	if (p)
		atomic_store_explicit(slot, p, memory_order_relaxed);
	errno = saved;
	return p;
}

/* ---- logging ----------------------------------------------------------- */

void ts_log_at(enum ts_log_level lvl, const char *file, int line, const char *fmt, ...)
{
	static const char *names[] = {"", "error", "warn", "info", "debug"};
	int saved = errno;
	char buf[512];
	int n = snprintf(buf, sizeof buf, "traceshim[%d] %s [%s:%d] ", (int)getpid(), names[lvl], file, line);
	if (n < 0 || (size_t)n >= sizeof buf)
		n = 0;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m > 0)
		n += ((size_t)m < sizeof buf - (size_t)n - 1) ? m : (int)(sizeof buf - (size_t)n - 2);
	buf[n++] = '\n';
	ts_in_shim++;
	(void)!write(2, buf, (size_t)n);
	ts_in_shim--;
	errno = saved;
}

/* ---- ids ----------------------------------------------------------------- */

static uint64_t process_seed;
static _Atomic uint64_t rng_streams;
static __thread struct ts_rng tls_rng TS_TLS;
static __thread uint32_t tls_rng_gen TS_TLS; /* generation+1 the state was seeded in */
static __thread uint32_t tls_tid TS_TLS;

static void seed_process(void)
{
	uint64_t s = 0;
	if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t); /* early boot: weaker but unique enough */
		s = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 32) ^ ((uint64_t)getpid() << 16);
	}
	process_seed = s;
}

static struct ts_rng *rng(void)
{
	uint32_t gen = atomic_load_explicit(&ts_generation, memory_order_relaxed) + 1;
	if (TS_UNLIKELY(tls_rng_gen != gen)) {
		ts_rng_seed(&tls_rng, process_seed, atomic_fetch_add(&rng_streams, 1) + 1);
		tls_rng_gen = gen;
	}
	return &tls_rng;
}

void ts_new_trace_id(uint8_t out[16]) { ts_rng_trace_id(rng(), out); }
void ts_new_span_id(uint8_t out[8]) { ts_rng_span_id(rng(), out); }

uint32_t ts_thread_id(void)
{
	if (TS_UNLIKELY(!tls_tid)) /* reset in a forked child */
		tls_tid = (uint32_t)syscall(SYS_gettid);
	return tls_tid;
}

/* ---- context ---------------------------------------------------------------- */

struct ts_ctx ts_process_ctx;
struct ts_extras ts_process_extras;
static __thread struct ts_ctx tls_ctx TS_TLS;
static __thread struct ts_extras *tls_extras TS_TLS; /* owned by the thread, lazily */
static __thread bool tls_extras_set TS_TLS;

const struct ts_ctx *ts_ctx_current(void)
{
	return tls_ctx.valid ? &tls_ctx : &ts_process_ctx;
}

/* Setting a context drops the thread's extras: a caller that has some sets
 * them right after (ts_extras_set). */
void ts_ctx_set(const struct ts_ctx *c)
{
	if (c)
		tls_ctx = *c;
	else
		tls_ctx.valid = false;
	tls_extras_set = false;
}

const struct ts_extras *ts_extras_current(void)
{
	if (!tls_ctx.valid)
		return &ts_process_extras;
	return tls_extras_set ? tls_extras : NULL;
}

void ts_extras_set(const char *tracestate, size_t ts_len, const char *baggage, size_t bg_len)
{
	tls_extras_set = false;
	if (!ts_len && !bg_len)
		return;
	if (!tls_extras && !(tls_extras = malloc(sizeof *tls_extras)))
		return;
	if (ts_len >= sizeof tls_extras->tracestate || bg_len >= sizeof tls_extras->baggage)
		return;
	memcpy(tls_extras->tracestate, tracestate, ts_len);
	tls_extras->tracestate[ts_len] = 0;
	tls_extras->tracestate_len = (uint16_t)ts_len;
	memcpy(tls_extras->baggage, baggage, bg_len);
	tls_extras->baggage[bg_len] = 0;
	tls_extras->baggage_len = (uint16_t)bg_len;
	tls_extras_set = true;
}

/* traceidratio: the decision is a function of the trace id alone, so every
 * process of a trace (and every SDK that follows the same rule on the low
 * 8 bytes, as OpenTelemetry's TraceIdRatioBased does) agrees. */
static bool ratio_keeps(const uint8_t trace_id[16])
{
	if (ts_cfg.ratio >= 1.0) /* 2^63 - 1 rounds up to 2^63 as a double: keep it exact */
		return true;
	uint64_t x = 0;
	for (int i = 8; i < 16; i++)
		x = (x << 8) | trace_id[i];
	x >>= 1; /* 63-bit value compared with ratio * 2^63 */
	return (double)x < ts_cfg.ratio * 9223372036854775808.0;
}

/* The OpenTelemetry samplers: the parentbased_* ones follow a valid parent's
 * sampled flag (and use their root sampler only for new traces); the others
 * decide the same way whether or not there is a parent. */
bool ts_sample(const uint8_t trace_id[16], const struct ts_ctx *parent)
{
	switch (ts_cfg.sampler) {
	case TS_SAMPLER_ALWAYS_ON:
		return true;
	case TS_SAMPLER_ALWAYS_OFF:
		return false;
	case TS_SAMPLER_RATIO:
		return ratio_keeps(trace_id);
	case TS_SAMPLER_PB_ALWAYS_ON:
	case TS_SAMPLER_PB_ALWAYS_OFF:
	case TS_SAMPLER_PB_RATIO:
		if (parent && parent->valid)
			return parent->flags & 1;
		return ts_cfg.sampler == TS_SAMPLER_PB_ALWAYS_ON ||
		       (ts_cfg.sampler == TS_SAMPLER_PB_RATIO && ratio_keeps(trace_id));
	}
	return true;
}

/* ---- init ---------------------------------------------------------------- */

/* fork() itself runs with the guard up; the child handler lowers it. The
 * transport needs nothing before fork — the child rebuilds its state —
 * except in a process that changed its credentials: its child's connection
 * is asked for now (ts_transport_atfork_prepare). */
static void atfork_prepare(void)
{
	ts_in_shim++;
	ts_transport_atfork_prepare();
}

static void atfork_parent(void)
{
	ts_transport_atfork_parent();
	ts_in_shim--;
}

static void atfork_child(void)
{
	/* The forking thread's TLS survives into the child: the span current at
	 * fork() parents the child's process span. */
	struct ts_ctx at_fork = *ts_ctx_current();
	atomic_fetch_add(&ts_generation, 1);
	ts_pid = getpid();
	tls_tid = 0;
	seed_process();
	ts_transport_atfork_child();
	ts_in_shim--;
	ts_process_atfork_child(&at_fork);
}

/* ---- who is traced: TRACESHIM_INCLUDE / TRACESHIM_EXCLUDE ------------------ */

TS_REAL(read, ssize_t, (int, void *, size_t))
TS_REAL(close, int, (int))

/* preload.env (config.h), read only by a process that did not get the shim
 * through LD_PRELOAD: with /etc/ld.so.preload every process of the host
 * loads it, and nothing sets our variables for a daemon systemd starts. */
char ts_envfile[4096];
size_t ts_envfile_len;
static bool from_ld_so_preload; /* not from LD_PRELOAD: from /etc/ld.so.preload (or linked in) */
static bool envfile_too_big;

static void load_envfile(void)
{
	if (ts_envc_preload_has(getenv("LD_PRELOAD"), "libtraceshim.so"))
		return;
	from_ld_so_preload = true;
	int fd = open(TS_PRELOAD_ENV_FILE, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return;
	size_t n = 0;
	ssize_t r;
	while (n < sizeof ts_envfile - 1 && (r = real_read()(fd, ts_envfile + n, sizeof ts_envfile - 1 - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		n += (size_t)r;
	}
	char more;
	if (n == sizeof ts_envfile - 1 && real_read()(fd, &more, 1) > 0) {
		/* Cut short, a rule list could lose its end: EXCLUDE would exclude
		 * less. A file we cannot read whole traces nothing. */
		envfile_too_big = true;
		n = 0;
	}
	real_close()(fd);
	ts_envfile_len = ts_envfile_prepare(ts_envfile, n);
}

/* The environment first (an empty value counts as unset), then the file. */
static const char *env_then_file(const char *name)
{
	const char *v = getenv(name);
	if (v && *v)
		return v;
	return ts_envfile_lookup(ts_envfile, ts_envfile_len, name);
}

/* Only when rules exist (or host-wide): one readlink for the executable's own
 * name, since argv[0] may be a symlink's name (python3 → python3.11) or made
 * up. Host-wide, the exporter loads the shim too (nothing can take
 * /etc/ld.so.preload away from it, as the wrapper takes LD_PRELOAD): it is
 * never traced, or it would trace its own exports. */
static bool selected_by_rules(void)
{
	/* Even with LD_PRELOAD: a traced parent (systemd-socket-activate under
	 * TRACESHIM_INCLUDE=*) hands its children LD_PRELOAD. */
	if (!strcmp(program_invocation_short_name, "traceshim-exporter"))
		return false;
	if (!ts_rules_present(&ts_cfg) && !from_ld_so_preload)
		return true;
	char exe[512];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[n > 0 ? n : 0] = 0;
	const char *slash = strrchr(exe, '/');
	const char *name = slash ? slash + 1 : exe;
	if (from_ld_so_preload && !strcmp(name, "traceshim-exporter"))
		return false;
	bool yes = ts_rules_select(&ts_cfg, name, program_invocation_short_name, exe);
	if (envfile_too_big)
		ts_warn("%s is larger than %zu bytes: not tracing this process", TS_PRELOAD_ENV_FILE,
			sizeof ts_envfile - 1);
	else if (ts_cfg.rules_unreadable)
		ts_warn("TRACESHIM_INCLUDE or TRACESHIM_EXCLUDE is longer than %d bytes: not tracing this process",
			TS_RULES_MAX - 1);
	else
		ts_debug("%s (%s): %s by TRACESHIM_INCLUDE/EXCLUDE", exe, program_invocation_short_name,
			 yes ? "traced" : "not traced");
	return yes;
}

void ts_init_slow(void)
{
	int expected = TS_INIT_NONE;
	if (!atomic_compare_exchange_strong(&ts_init_state, &expected, TS_INIT_RUNNING))
		return; /* someone (maybe this very thread, recursing) is at it: pass through */
	int saved = errno;
	ts_in_shim++;
	/* Secure execution (setuid, setgid, file capabilities): LD_PRELOAD never
	 * gets the shim there, but /etc/ld.so.preload does, and the environment
	 * belongs to the less privileged caller (TRACESHIM_SOCKET could name any
	 * socket). Such a process is never traced. */
	bool secure = getauxval(AT_SECURE) != 0;
	if (!secure)
		load_envfile();
	ts_config_load(&ts_cfg, ts_envfile_len ? env_then_file : NULL);
	if (envfile_too_big)
		ts_cfg.rules_unreadable = true;
	/* A process that is not selected is left exactly as if untraced: every
	 * hook passes straight through, no span, no connection. Its children
	 * inherit the environment (LD_PRELOAD, TRACEPARENT) as the process passes
	 * it on, and are judged by their own names. */
	ts_enabled = !secure && !ts_cfg.disabled && selected_by_rules();
	if (ts_enabled) {
		ts_pid = getpid();
		seed_process();
		ts_transport_init();
		pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
		ts_stream_init();
		ts_process_start();
	}
	ts_in_shim--;
	atomic_store_explicit(&ts_init_state, TS_INIT_DONE, memory_order_release);
	errno = saved;
	ts_debug("init done: enabled=%d socket=%s", ts_enabled, ts_cfg.socket_path);
}

__attribute__((constructor)) static void ts_constructor(void)
{
	if (atomic_load(&ts_init_state) == TS_INIT_NONE)
		ts_init_slow();
}
