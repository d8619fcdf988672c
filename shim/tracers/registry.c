/* registry.c — the protocol tracers, offered a connection's first bytes in
 * this order (shim/stream.h). A new protocol: a pure scanner in shim/proto/,
 * one tracer file here, one line below; no hook changes. */
#include "stream.h"

extern const struct ts_tracer ts_tracer_http1;

const struct ts_tracer *const ts_tracers[] = {
	&ts_tracer_http1,
	NULL,
};
