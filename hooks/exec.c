/* exec.c — the exec family. The new image gets the env carrier (TRACEPARENT
 * of the span current on this thread, TRACESTATE, BAGGAGE, TRACESHIM_RUN_ID,
 * LD_PRELOAD) in a copy of its envp built on this stack; then this process
 * span ends (traceshim.process.end=exec) and the transport is flushed, since
 * nothing of this image survives a successful exec. If exec returns, the
 * image goes on in a new segment of its process span.
 *
 * glibc's exec* call its internal __execve, never the PLT: each one is hooked
 * and mapped onto execve, execvpe or fexecve with an explicit envp, which is
 * what they do themselves (execl* build argv on the stack, as here).
 *
 * A vfork child (Python's subprocess, many shells' `exec` after vfork) runs on
 * its parent's memory: it only reads the context and builds the copy on the
 * stack — no malloc, no lock, no span (see docs/ARCHITECTURE.md §9). */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#include "envcarrier.h"
#include "shim.h"

extern char **environ;

TS_REAL(execve, int, (const char *, char *const[], char *const[]))
TS_REAL(execvpe, int, (const char *, char *const[], char *const[]))
TS_REAL(fexecve, int, (int, char *const[], char *const[]))

/* Largest environment copy built on the stack; beyond it the child gets the
 * caller's envp untouched (still traced through an inherited LD_PRELOAD, in
 * a trace of its own). */
#define ENV_STACK_MAX (32 * 1024)

enum how { BY_PATH, BY_SEARCH, BY_FD };

static int real_exec(enum how how, const char *file, int fd, char *const argv[], char *const envp[])
{
	switch (how) {
	case BY_SEARCH:
		return real_execvpe()(file, argv, envp);
	case BY_FD:
		return real_fexecve()(fd, argv, envp);
	case BY_PATH:
	default:
		return real_execve()(file, argv, envp);
	}
}

static int traced_exec(enum how how, const char *file, int fd, char *const argv[], char *const envp[])
{
	int saved = errno;
	bool foreign = ts_foreign_child();
	struct ts_carrier c;
	ts_process_carrier(&c, true, foreign);
	size_t need = ts_envc_opted_out(envp) ? 0 : ts_envc_size(envp, &c.spec);
	if (need > ENV_STACK_MAX)
		need = 0;
	max_align_t mem[need ? need / sizeof(max_align_t) + 1 : 1];
	char *const *env = envp;
	if (need) {
		char **copy = ts_envc_build(envp, &c.spec, mem, sizeof mem);
		if (copy)
			env = copy;
	}
	if (!foreign)
		ts_process_exec_begin(&c);
	errno = saved;
	int rc = real_exec(how, file, fd, argv, env);
	int err = errno;
	if (!foreign)
		ts_process_exec_failed(&c);
	errno = err;
	return rc;
}

static int exec_hook(enum how how, const char *file, int fd, char *const argv[], char *const envp[])
{
	if (!ts_tracing())
		return real_exec(how, file, fd, argv, envp);
	return traced_exec(how, file, fd, argv, envp);
}

TS_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	return exec_hook(BY_PATH, path, -1, argv, envp);
}

TS_EXPORT int execv(const char *path, char *const argv[])
{
	return exec_hook(BY_PATH, path, -1, argv, environ);
}

TS_EXPORT int execvp(const char *file, char *const argv[])
{
	return exec_hook(BY_SEARCH, file, -1, argv, environ);
}

TS_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	return exec_hook(BY_SEARCH, file, -1, argv, envp);
}

TS_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	return exec_hook(BY_FD, NULL, fd, argv, envp);
}

/* execl*: argv (and execle's envp) from the variadic list, on the stack. */
static size_t count_args(va_list ap)
{
	size_t n = 1;
	while (va_arg(ap, char *))
		n++;
	return n;
}

/* Fills argv[1..argc] (the last is the NULL); returns execle's envp after it. */
static char *const *fill_args(char **argv, size_t argc, va_list ap, bool with_envp)
{
	for (size_t i = 1; i <= argc; i++)
		argv[i] = va_arg(ap, char *);
	return with_envp ? va_arg(ap, char *const *) : NULL;
}

#define VA_EXEC(how, file, arg, with_envp)                               \
	do {                                                                 \
		va_list ap;                                                      \
		va_start(ap, arg);                                               \
		size_t argc = count_args(ap);                                    \
		va_end(ap);                                                      \
		char *argv[argc + 1];                                            \
		argv[0] = (char *)(arg);                                         \
		va_start(ap, arg);                                               \
		char *const *envp = fill_args(argv, argc, ap, with_envp);        \
		va_end(ap);                                                      \
		return exec_hook(how, file, -1, argv, with_envp ? envp : environ); \
	} while (0)

TS_EXPORT int execl(const char *path, const char *arg, ...) { VA_EXEC(BY_PATH, path, arg, false); }

TS_EXPORT int execlp(const char *file, const char *arg, ...) { VA_EXEC(BY_SEARCH, file, arg, false); }

TS_EXPORT int execle(const char *path, const char *arg, ...) { VA_EXEC(BY_PATH, path, arg, true); }
