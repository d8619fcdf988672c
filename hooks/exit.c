/* exit.c — _exit and _Exit skip atexit handlers and destructors, so the
 * process span is ended here. A vfork child calling _exit shares our memory:
 * ts_process_end recognises it by its pid and leaves everything alone. */
#include <stdlib.h>
#include <unistd.h>

#include "shim.h"

TS_REAL(_exit, void, (int))
TS_REAL(_Exit, void, (int))

TS_EXPORT void _exit(int status)
{
	if (ts_tracing())
		ts_process_end(status & 0xff);
	real__exit()(status);
	__builtin_unreachable();
}

TS_EXPORT void _Exit(int status)
{
	if (ts_tracing())
		ts_process_end(status & 0xff);
	real__Exit()(status);
	__builtin_unreachable();
}
