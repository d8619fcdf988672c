/* envcarrier.h — the environment a traced process hands to a child it execs
 * or spawns (OpenTelemetry env carrier: TRACEPARENT, TRACESTATE, BAGGAGE).
 *
 * Pure and allocation-free: the caller measures, provides the memory (its own
 * stack — the caller may be a vfork child, where malloc is forbidden), and
 * gets back a vector that points partly into the caller's envp, partly into
 * that memory. Nothing here reads globals or the process environment, so it
 * is unit-tested without preloading (tests/unit/test_envcarrier.c).
 *
 * The copy is envp with:
 *   - every variable named in `set` removed, and those with a value added
 *     (so TRACEPARENT/TRACESTATE/BAGGAGE are replaced, or dropped when the
 *     current context has none);
 *   - every `keep` entry ("NAME=value") added when envp has no NAME at all
 *     (the tracing configuration of the tree survives `env -i`-style callers);
 *   - `preload` present in LD_PRELOAD exactly once: added as LD_PRELOAD when
 *     envp has none, appended to the first LD_PRELOAD when it lacks it.
 * Order of the caller's variables is kept; new ones go at the end. */
#ifndef TRACESHIM_ENVCARRIER_H
#define TRACESHIM_ENVCARRIER_H

#include <stdbool.h>
#include <stddef.h>

#define TS_ENVC_MAX_SET 8

struct ts_envc_var {
	const char *name;
	const char *value; /* NULL: only remove NAME */
	size_t len;        /* of value */
};

struct ts_envc_spec {
	struct ts_envc_var set[TS_ENVC_MAX_SET];
	unsigned n_set;
	const char *const *keep; /* "NAME=value" entries */
	unsigned n_keep;
	const char *preload; /* NULL: leave LD_PRELOAD alone */
};

/* What the shim puts into one child's environment (ts_process_carrier). */
struct ts_carrier {
	struct ts_envc_spec spec;
	char traceparent[56];
	bool active; /* filled in */
	bool elide;  /* exec of a fork segment that did nothing: it is never reported */
};

/* Adds NAME=value (value NULL: removal) to spec; ignored past TS_ENVC_MAX_SET. */
void ts_envc_set(struct ts_envc_spec *spec, const char *name, const char *value, size_t len);

/* True when envp itself asks for no tracing (OTEL_SDK_DISABLED=true): the
 * caller then passes envp untouched. */
bool ts_envc_opted_out(char *const envp[]);

/* Bytes ts_envc_build needs for this envp (vector and new strings, rounded up
 * to pointer alignment). envp NULL counts as empty, as the kernel treats it. */
size_t ts_envc_size(char *const envp[], const struct ts_envc_spec *spec);

/* Builds the copy into buf (aligned for pointers). Returns the new vector,
 * or NULL when it does not fit in cap — then pass the caller's envp as is. */
char **ts_envc_build(char *const envp[], const struct ts_envc_spec *spec, void *buf, size_t cap);

/* True when `list` (an LD_PRELOAD value: names separated by ':' or ' ')
 * already names `lib`: the same path, or the same file name elsewhere. */
bool ts_envc_preload_has(const char *list, const char *lib);

#endif
