/* process.c — the process span, the resource, and every exit path we can see:
 * exit() (on_exit handler, which also gives the status), return from main,
 * _exit/_Exit (hooked), fatal signals whose disposition was the default. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "fdtable.h"
#include "ids.h"
#include "shim.h"

TS_REAL(read, ssize_t, (int, void *, size_t))
TS_REAL(close, int, (int))

static struct ts_span proc_span;
static _Atomic int proc_ended;
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

/* /proc/self/cmdline (NUL-separated) as a STRARRAY blob of str16 items. */
static size_t command_args(uint8_t *blob, size_t cap)
{
	char raw[TS_STR_MAX];
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = real_read()(fd, raw, sizeof raw);
	real_close()(fd);
	struct ts_wbuf w;
	ts_wbuf_init(&w, blob, cap);
	for (ssize_t i = 0; i < n;) {
		size_t len = strnlen(raw + i, (size_t)(n - i));
		size_t before = w.len;
		ts_put_str16(&w, raw + i, len);
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
	static const char *ours[] = {"service.name", "process.pid", "process.parent_pid",
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
	uint8_t attrs[sizeof resource - 32];
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
	uint8_t args[TS_STR_MAX];
	size_t alen = command_args(args, sizeof args);
	struct ts_attr a = {.key = {"process.command_args", 20}, .type = TS_ATTR_STRARRAY};
	a.v.s.ptr = (const char *)args;
	a.v.s.len = (uint16_t)alen;
	ts_put_attr(&w, &a);
	n++;
	struct utsname u;
	if (uname(&u) == 0)
		attr_str(&w, &n, "host.name", u.nodename);
	attr_str(&w, &n, "telemetry.sdk.name", "traceshim");
	attr_str(&w, &n, "telemetry.sdk.version", TRACESHIM_VERSION);
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

/* TRACEPARENT from the environment (env-carrier convention). */
static bool env_parent(struct ts_ctx *c)
{
	const char *tp = getenv("TRACEPARENT");
	if (!tp || strlen(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
		return false;
	if (tp[0] == 'f' && tp[1] == 'f')
		return false;
	if (tp[0] == '0' && tp[1] == '0' && tp[55] != 0)
		return false;
	uint8_t ver, fl;
	static const uint8_t zero[16];
	if (!ts_unhex(tp, 1, &ver) || !ts_unhex(tp + 3, 16, c->trace_id) || !ts_unhex(tp + 36, 8, c->span_id) ||
	    !ts_unhex(tp + 53, 1, &fl))
		return false;
	if (!memcmp(c->trace_id, zero, 16) || !memcmp(c->span_id, zero, 8))
		return false;
	c->flags = fl;
	c->valid = true;
	c->remote = true;
	return true;
}

/* ---- fatal signals ----------------------------------------------------------- */

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT,
				    SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE};

static void on_fatal_signal(int sig)
{
	int saved = errno;
	ts_signal_path = 1;
	ts_process_end(-1, sig);
	ts_signal_path = 0;
	/* SA_RESETHAND restored the default: re-raise so the process dies of the
	 * same signal, with the same status (and core) as without us. */
	signal(sig, SIG_DFL);
	raise(sig);
	errno = saved;
}

/* Only where the application left the default action: a handler it set, or
 * an ignored signal, is never touched. */
static void install_signal_handlers(void)
{
	for (unsigned i = 0; i < sizeof fatal_signals / sizeof *fatal_signals; i++) {
		struct sigaction old;
		if (sigaction(fatal_signals[i], NULL, &old) != 0 || old.sa_handler != SIG_DFL ||
		    (old.sa_flags & SA_SIGINFO))
			continue;
		struct sigaction sa = {.sa_handler = on_fatal_signal, .sa_flags = SA_RESETHAND | SA_RESTART};
		sigfillset(&sa.sa_mask);
		sigaction(fatal_signals[i], &sa, NULL);
	}
}

/* ---- start and end ----------------------------------------------------------- */

static void on_exit_handler(int status, void *arg)
{
	(void)arg;
	ts_process_end(status, 0);
}

__attribute__((destructor)) static void ts_destructor(void)
{
	if (atomic_load(&ts_init_state) == TS_INIT_DONE && ts_enabled)
		ts_process_end(-1, 0);
}

static void begin_process_span(const struct ts_ctx *parent)
{
	struct ts_ctx none = {0};
	ts_span_start(&proc_span, exe_name, TS_KIND_INTERNAL, parent ? parent : &none);
	ts_span_ctx(&proc_span, &ts_process_ctx);
	atomic_store(&proc_ended, 0);
	ts_resource_rebuild();
}

void ts_process_start(const struct ts_ctx *parent)
{
	(void)parent;
	read_exe();
	struct ts_ctx env;
	begin_process_span(env_parent(&env) ? &env : NULL);
	on_exit(on_exit_handler, NULL);
	install_signal_handlers();
}

void ts_process_atfork_child(const struct ts_ctx *at_fork)
{
	begin_process_span(at_fork);
	ts_span_attr_str(&proc_span, "traceshim.process.origin", "fork");
}

void ts_process_end(int exit_code, int sig)
{
	if (getpid() != ts_pid)
		return; /* a vfork/clone/_Fork child: this span is its parent's */
	int expected = 0;
	if (!atomic_compare_exchange_strong(&proc_ended, &expected, 1))
		return;
	ts_in_shim++;
	uint64_t end = ts_now_ns();
	if (!sig)
		ts_fd_release_all();
	if (sig) {
		char msg[64];
		snprintf(msg, sizeof msg, "killed by signal %d (%s)", sig, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
		ts_span_attr_int(&proc_span, "process.exit.signal", sig);
		ts_span_error(&proc_span, "signal", msg);
	} else if (exit_code >= 0) {
		ts_span_attr_int(&proc_span, "process.exit.code", exit_code);
		if (exit_code != 0) {
			char msg[48];
			snprintf(msg, sizeof msg, "exit status %d", exit_code);
			ts_span_error(&proc_span, "exit_status", msg);
		}
	}
	ts_span_end_at(&proc_span, end);
	ts_in_shim--;
	if (sig)
		ts_transport_flush_from_signal();
	else
		ts_transport_flush(ts_cfg.exit_flush_ms);
}
