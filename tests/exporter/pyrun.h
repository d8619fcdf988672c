/* pyrun.h — run a small /usr/bin/python3 program over a string (stdin) and
 * capture its stdout: tests use Python's own json module as the independent
 * judge of "valid JSON" and to inspect structure. */
#ifndef TRACESHIM_TEST_PYRUN_H
#define TRACESHIM_TEST_PYRUN_H

#include <stddef.h>

/* Runs argv[0] (a path) with argv. Writes `in` (may be NULL) to the
 * child's stdin, captures up to cap-1 bytes of stdout into out (NUL-ended).
 * Returns the exit status (0..255), or -1 if it could not run. */
int tb_run(const char *const argv[], const char *in, size_t in_len, char *out, size_t cap);

/* Python program text, run with `python3 -c PROGRAM`. */
int tb_python(const char *program, const char *in, size_t in_len, char *out, size_t cap);

const char *tb_python_path(void);

#endif
