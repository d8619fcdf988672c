/* paths.c — see paths.h. An empty variable counts as unset (OTel convention). */
#include "paths.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *env(ts_getenv_fn fn, const char *name)
{
	const char *v = fn ? fn(name) : getenv(name);
	return (v && *v) ? v : NULL;
}

static int fit(int n, size_t cap) { return (n < 0 || (size_t)n >= cap) ? -1 : 0; }

int ts_default_socket_path(char *out, size_t cap, ts_getenv_fn fn)
{
	const char *v = env(fn, "TRACESHIM_SOCKET");
	if (v)
		return fit(snprintf(out, cap, "%s", v), cap);
	v = env(fn, "XDG_RUNTIME_DIR");
	if (v)
		return fit(snprintf(out, cap, "%s/traceshim/exporter.sock", v), cap);
	return fit(snprintf(out, cap, "/tmp/traceshim-%u/exporter.sock", (unsigned)getuid()), cap);
}

static int state_path(char *out, size_t cap, ts_getenv_fn fn, const char *leaf)
{
	const char *v = env(fn, "XDG_STATE_HOME");
	if (v)
		return fit(snprintf(out, cap, "%s/traceshim/%s", v, leaf), cap);
	v = env(fn, "HOME");
	if (v)
		return fit(snprintf(out, cap, "%s/.local/state/traceshim/%s", v, leaf), cap);
	return fit(snprintf(out, cap, "/tmp/traceshim-%u/%s", (unsigned)getuid(), leaf), cap);
}

int ts_default_file_path(char *out, size_t cap, ts_getenv_fn fn)
{
	const char *v = env(fn, "TRACESHIM_FILE");
	if (v)
		return fit(snprintf(out, cap, "%s", v), cap);
	return state_path(out, cap, fn, "traces.jsonl");
}

int ts_default_spool_dir(char *out, size_t cap, ts_getenv_fn fn)
{
	const char *v = env(fn, "TRACESHIM_SPOOL_DIR");
	if (v)
		return fit(snprintf(out, cap, "%s", v), cap);
	return state_path(out, cap, fn, "spool");
}
