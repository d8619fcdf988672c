/* paths.h — default locations, computed the same way by shim, exporter and
 * wrapper (the wrapper asks the exporter binary: `traceshim-exporter --paths`). */
#ifndef TRACESHIM_PATHS_H
#define TRACESHIM_PATHS_H

#include <stddef.h>

/* Each fills `out` (cap bytes, NUL-terminated) and returns 0, or -1 if the
 * path does not fit. `getenv_fn` lets the shim pass its own environment reader
 * (it must not call getenv from some contexts); NULL means getenv. */
typedef const char *(*ts_getenv_fn)(const char *);

/* TRACESHIM_SOCKET, else $XDG_RUNTIME_DIR/traceshim/exporter.sock,
 * else /tmp/traceshim-<uid>/exporter.sock */
int ts_default_socket_path(char *out, size_t cap, ts_getenv_fn getenv_fn);
/* TRACESHIM_FILE, else ${XDG_STATE_HOME:-$HOME/.local/state}/traceshim/traces.jsonl */
int ts_default_file_path(char *out, size_t cap, ts_getenv_fn getenv_fn);
/* TRACESHIM_SPOOL_DIR, else ${XDG_STATE_HOME:-$HOME/.local/state}/traceshim/spool */
int ts_default_spool_dir(char *out, size_t cap, ts_getenv_fn getenv_fn);

#endif
