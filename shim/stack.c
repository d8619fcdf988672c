/* stack.c — code.stacktrace for error spans. Filled in by the stack-trace
 * work (libunwind); until then error spans carry no stack. */
#include "shim.h"

void ts_span_stack(struct ts_span *s) { (void)s; }
