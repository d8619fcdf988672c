/* config.h — every environment variable the shim reads, in one table.
 * docs/CONFIGURATION.md documents the same table for users (and the
 * exporter's own variables). An empty value counts as unset, as in the
 * OpenTelemetry SDK specification. */
#ifndef TRACESHIM_CONFIG_H
#define TRACESHIM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paths.h" /* ts_getenv_fn */

/*        variable                      default                    meaning */
#define TS_ENV_TABLE(X)                                                                               \
	X(OTEL_SDK_DISABLED, "false", "true: the shim does nothing at all")                           \
	X(OTEL_SERVICE_NAME, "", "service.name; default unknown_service:<executable>")               \
	X(OTEL_RESOURCE_ATTRIBUTES, "", "k=v,... extra resource attributes (percent-encoded)")       \
	X(OTEL_TRACES_SAMPLER, "parentbased_always_on", "head sampler")                              \
	X(OTEL_TRACES_SAMPLER_ARG, "1.0", "ratio for *traceidratio")                                 \
	X(OTEL_PROPAGATORS, "tracecontext,baggage", "which headers to read and write")               \
	X(TRACESHIM_SOCKET, "$XDG_RUNTIME_DIR/traceshim/exporter.sock", "exporter socket")           \
	X(TRACESHIM_LOG, "off", "shim log level: off|error|warn|info|debug (stderr)")               \
	X(TRACESHIM_FLUSH_MS, "100", "longest a finished span waits in the process before sending") \
	X(TRACESHIM_EXIT_FLUSH_MS, "200", "longest the exit path waits for a busy exporter")         \
	X(TRACESHIM_TRANSPORT, "ring", "ring: shared-memory ring; socket: frames + sender thread")    \
	X(TRACESHIM_RING_KB, "512", "size of the shared span ring (64..65536, power of two)")       \
	X(TRACEPARENT, "", "W3C traceparent of the parent process (env carrier)")                   \
	X(TRACESTATE, "", "W3C tracestate of the parent process (env carrier)")                     \
	X(BAGGAGE, "", "W3C baggage carried into the process (env carrier)")                         \
	X(TRACESHIM_RUN_ID, "", "traceshim.run.id of the process tree; set by its first process")    \
	X(TRACESHIM_MAX_TRACE_SECONDS, "3600", "process span age that starts a new trace; 0: never") \
	X(TRACESHIM_STACKTRACES, "errors", "code.stacktrace on: off|errors|all spans")                \
	X(TRACESHIM_INCLUDE, "", "comma list of executable names/globs traced; unset: all")          \
	X(TRACESHIM_EXCLUDE, "", "comma list of executable names/globs never traced")

#define TS_RULES_MAX 1024 /* bytes of one TRACESHIM_INCLUDE/EXCLUDE list */
#define TS_RULE_MAX 255   /* bytes of one name or glob in it; longer ones never match */

enum ts_sampler {
	TS_SAMPLER_ALWAYS_ON,
	TS_SAMPLER_ALWAYS_OFF,
	TS_SAMPLER_RATIO,
	TS_SAMPLER_PB_ALWAYS_ON,
	TS_SAMPLER_PB_ALWAYS_OFF,
	TS_SAMPLER_PB_RATIO,
};

enum ts_log_level { TS_LOG_OFF, TS_LOG_ERROR, TS_LOG_WARN, TS_LOG_INFO, TS_LOG_DEBUG };

enum ts_stacktraces { TS_STACK_ERRORS = 0, TS_STACK_OFF, TS_STACK_ALL };

struct ts_config {
	bool disabled;
	enum ts_sampler sampler;
	double ratio;
	bool propagate_tracecontext, propagate_baggage;
	enum ts_log_level log_level;
	uint32_t flush_ms, exit_flush_ms;
	bool socket_transport; /* TRACESHIM_TRANSPORT=socket */
	uint32_t ring_bytes;   /* TRACESHIM_RING_KB, in bytes */
	uint32_t max_trace_seconds; /* 0: a trace never splits */
	enum ts_stacktraces stacktraces;
	char service_name[256];
	char resource_attrs[2048]; /* raw OTEL_RESOURCE_ATTRIBUTES, parsed by ts_kv_next */
	char socket_path[108];     /* sizeof(sun_path) */
	/* TRACESHIM_INCLUDE / TRACESHIM_EXCLUDE, raw; judged by ts_rules_select. A
	 * list too long for its buffer sets rules_unreadable: the process is then
	 * left alone (host-wide, tracing what the operator did not ask for costs
	 * every process of the host). */
	char include[TS_RULES_MAX];
	char exclude[TS_RULES_MAX];
	bool rules_unreadable;
};

/* Pure parsing, unit-tested without preloading. */
void ts_config_load(struct ts_config *c, ts_getenv_fn getenv_fn);
bool ts_parse_bool(const char *s, bool dflt);
uint32_t ts_parse_ms(const char *s, uint32_t dflt, uint32_t max);
enum ts_log_level ts_parse_log_level(const char *s);
enum ts_stacktraces ts_parse_stacktraces(const char *s);
/* OTEL_TRACES_SAMPLER (+ _ARG); unknown names fall back to the default, as the spec says. */
enum ts_sampler ts_parse_sampler(const char *name, const char *arg, double *ratio);

/* Iterates "k=v,k2=v2" (OTEL_RESOURCE_ATTRIBUTES): percent-decodes and trims key and value into
 * the caller's buffers; skips malformed members. Returns false when done. */
bool ts_kv_next(const char **cursor, char *key, size_t kcap, char *val, size_t vcap);

/* ---- which processes are traced (TRACESHIM_INCLUDE / TRACESHIM_EXCLUDE) ------ *
 * A rule is an executable name or a glob (`*`, `?`, `[a-z]`, `[!x]`, `\` quotes
 * the next character); one with a `/` is matched against the executable's
 * absolute path, the others against its file name and argv[0]'s (so both
 * `python3` and `python3.11`, both `sh` and `dash` work). `*` matches `/` too. */

/* Does `str` match the glob pat[0..plen)? An unterminated `[` is an ordinary
 * character, as in fnmatch(3). Iterative, no recursion, no allocation. */
bool ts_glob_match(const char *pat, size_t plen, const char *str);

/* Does any rule of the comma list match? `name` and `argv0` are file names,
 * `path` the absolute executable path; each may be NULL or empty. Blank
 * entries are skipped; entries longer than TS_RULE_MAX never match. */
bool ts_rules_match(const char *list, const char *name, const char *argv0, const char *path);

/* Whether a process with this executable is traced under c's rules: included
 * (no TRACESHIM_INCLUDE, or one of its rules matches) and not excluded. */
bool ts_rules_select(const struct ts_config *c, const char *name, const char *argv0, const char *path);

/* True when c has rules at all (then the caller must find the names). */
static inline bool ts_rules_present(const struct ts_config *c)
{
	return c->include[0] || c->exclude[0] || c->rules_unreadable;
}

/* ---- the ld.so.preload mode's configuration file --------------------------- *
 * A process that has the shim from /etc/ld.so.preload (not from LD_PRELOAD)
 * usually has none of our variables in its environment: they come from
 * <sysconfdir>/traceshim/preload.env instead ("NAME=value" lines, `#`
 * comments, blank lines; surrounding single or double quotes are removed; only
 * TRACESHIM_* and OTEL_* names count). The environment wins over the file. */

/* Turns buf[0..len) (a copy of the file) into NUL-terminated "NAME=value"
 * strings in place, dropping everything else; buf must have room for
 * len + 1 bytes. Returns the bytes used. */
size_t ts_envfile_prepare(char *buf, size_t len);
/* The value of NAME in a prepared buffer, or NULL. */
const char *ts_envfile_lookup(const char *buf, size_t len, const char *name);

#endif
