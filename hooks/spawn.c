/* spawn.c — posix_spawn, posix_spawnp, system, popen/pclose: a child process
 * that does not replace us. It gets the env carrier (TRACEPARENT = the span
 * current on this thread) in a copy of envp built on this stack; our process
 * span goes on.
 *
 * system() and popen() run /bin/sh through glibc's internal __posix_spawn,
 * which the PLT never sees, with __environ as the environment. Changing
 * environ around the real call is not thread-safe (another thread's setenv
 * would be lost, its getenv would see our copy), so both are implemented
 * here on top of posix_spawn, following glibc 2.36 line by line (see the
 * comments), and pclose() with them: glibc's pclose only knows its own
 * streams. A stream we cannot track (table full) comes from the real popen. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "envcarrier.h"
#include "shim.h"

extern char **environ;

TS_REAL(posix_spawn, int,
	(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *, char *const[],
	 char *const[]))
TS_REAL(posix_spawnp, int,
	(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *, char *const[],
	 char *const[]))
TS_REAL(system, int, (const char *))
TS_REAL(popen, FILE *, (const char *, const char *))
TS_REAL(pclose, int, (FILE *))
TS_REAL(close, int, (int))

#define ENV_STACK_MAX (32 * 1024) /* as in exec.c */

static int real_spawn(bool search, pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
		      const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	if (search)
		return real_posix_spawnp()(pid, file, fa, attr, argv, envp);
	return real_posix_spawn()(pid, file, fa, attr, argv, envp);
}

/* The real posix_spawn with the carrier in a copy of envp. The copy lives in
 * this frame until the child has exec'ed (posix_spawn returns only then). */
static int spawn_traced(bool search, pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	int saved = errno;
	struct ts_carrier c;
	ts_process_carrier(&c, false, ts_foreign_child());
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
	errno = saved;
	return real_spawn(search, pid, file, fa, attr, argv, env);
}

TS_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	if (!ts_tracing())
		return real_posix_spawn()(pid, path, fa, attr, argv, envp);
	return spawn_traced(false, pid, path, fa, attr, argv, envp);
}

TS_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	if (!ts_tracing())
		return real_posix_spawnp()(pid, file, fa, attr, argv, envp);
	return spawn_traced(true, pid, file, fa, attr, argv, envp);
}

/* ---- vfork ------------------------------------------------------------------------ *
 * Shells (dash) and Python's subprocess spawn with vfork(); the child only
 * execs, and as a vfork child it may not touch our state — so the parent's
 * process span would never see a spawn, and a long job that only spawns would
 * never split. The look at the deadline has to happen in the parent, before
 * the child exists, and a vfork cannot be wrapped by a C function (it would
 * return into the child on a frame the parent reuses). So vfork is a
 * trampoline: call vfork_prologue() in the parent, then jump to libc's vfork
 * with the caller's return address on top of the stack, as if called
 * directly. x86-64 only; elsewhere vfork is not interposed (and a job spawning
 * only through vfork splits at its next span instead). */
#if defined(__x86_64__)
__attribute__((visibility("hidden"))) void *ts_vfork_real;
static _Atomic(void *) vfork_slot;

__attribute__((visibility("hidden"), used)) void ts_vfork_prologue(void);
void ts_vfork_prologue(void)
{
	int saved = errno;
	if (TS_UNLIKELY(!ts_vfork_real))
		ts_vfork_real = ts_resolve("vfork", &vfork_slot);
	if (ts_tracing())
		ts_process_tick(ts_now_ns()); /* may split; the child will be a child of this segment */
	errno = saved;
}

__asm__(".text\n"
	".globl vfork\n"
	".type vfork, @function\n"
	"vfork:\n"
	"\tsubq $8, %rsp\n" /* 16-byte alignment for the call */
	"\tcall ts_vfork_prologue\n"
	"\taddq $8, %rsp\n"
	"\tjmp *ts_vfork_real(%rip)\n"
	".size vfork, .-vfork\n");
#endif

/* ---- system (glibc 2.36 sysdeps/posix/system.c) ----------------------------------- */

/* SIGINT and SIGQUIT are ignored while any thread waits in system(); the
 * first one in saves the dispositions, the last one out restores them. */
static pthread_mutex_t sys_mu = PTHREAD_MUTEX_INITIALIZER;
static int sys_refs;
static struct sigaction sys_intr, sys_quit;

struct sys_cancel {
	pid_t pid;
};

static void sys_release(void)
{
	pthread_mutex_lock(&sys_mu);
	if (--sys_refs == 0) {
		sigaction(SIGINT, &sys_intr, NULL);
		sigaction(SIGQUIT, &sys_quit, NULL);
	}
	pthread_mutex_unlock(&sys_mu);
}

/* Cancelled while waiting: kill the shell, reap it, restore the signals. */
static void sys_cancelled(void *arg)
{
	const struct sys_cancel *c = arg;
	kill(c->pid, SIGKILL);
	int state;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
	while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
		;
	pthread_setcancelstate(state, NULL);
	sys_release();
}

static int do_system(const char *line)
{
	struct sigaction ign = {.sa_handler = SIG_IGN};
	sigemptyset(&ign.sa_mask);
	pthread_mutex_lock(&sys_mu);
	if (sys_refs++ == 0) {
		sigaction(SIGINT, &ign, &sys_intr);
		sigaction(SIGQUIT, &ign, &sys_quit);
	}
	pthread_mutex_unlock(&sys_mu);

	sigset_t chld, omask, reset;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &omask);
	sigemptyset(&reset);
	if (sys_intr.sa_handler != SIG_IGN)
		sigaddset(&reset, SIGINT);
	if (sys_quit.sa_handler != SIG_IGN)
		sigaddset(&reset, SIGQUIT);

	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &omask);
	posix_spawnattr_setsigdefault(&attr, &reset);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
	pid_t pid;
	char *argv[] = {"sh", "-c", (char *)line, NULL};
	int ret = spawn_traced(false, &pid, "/bin/sh", NULL, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);

	int status = -1;
	if (ret == 0) {
		struct sys_cancel cancel = {.pid = pid};
		pthread_cleanup_push(sys_cancelled, &cancel);
		pid_t w;
		while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
			;
		if (w != pid)
			status = -1;
		pthread_cleanup_pop(0);
	} else {
		/* POSIX: as if the shell had terminated with _exit(127). */
		status = W_EXITCODE(127, 0);
	}
	sys_release();
	sigprocmask(SIG_SETMASK, &omask, NULL);
	if (ret != 0)
		errno = ret;
	return status;
}

TS_EXPORT int system(const char *line)
{
	if (!ts_tracing() || ts_foreign_child())
		return real_system()(line);
	if (!line) /* is a shell available (after a chroot, maybe not)? */
		return do_system("exit 0") == 0;
	return do_system(line);
}

/* ---- popen / pclose (glibc 2.36 libio/iopopen.c) ------------------------------------ */

#define POPEN_MAX 128

static struct {
	FILE *fp;
	int fd;
	pid_t pid;
} streams[POPEN_MAX];
static pthread_mutex_t popen_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int popen_count; /* pclose skips the lock while it is 0 */
static _Atomic int popen_atfork_done;

static void popen_atfork_child(void) { pthread_mutex_init(&popen_mu, NULL); }

static int slot_free(void)
{
	for (int i = 0; i < POPEN_MAX; i++)
		if (!streams[i].fp)
			return i;
	return -1;
}

/* Caller holds popen_mu. The child must not inherit the other popen streams
 * (POSIX); glibc closes those of its own chain the same way. */
static int spawn_shell(const char *command, int child_fd, int child_std, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	int rc = posix_spawn_file_actions_adddup2(&fa, child_fd, child_std);
	for (int i = 0; rc == 0 && i < POPEN_MAX; i++)
		if (streams[i].fp && streams[i].fd != child_std)
			rc = posix_spawn_file_actions_addclose(&fa, streams[i].fd);
	char *argv[] = {"sh", "-c", (char *)command, NULL};
	if (rc == 0)
		rc = spawn_traced(false, pid, "/bin/sh", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

static FILE *traced_popen(const char *command, const char *mode)
{
	bool rd = false, wr = false, cloexec = false;
	for (const char *m = mode; *m; m++) {
		if (*m == 'r')
			rd = true;
		else if (*m == 'w')
			wr = true;
		else if (*m == 'e')
			cloexec = true;
		else
			goto einval;
	}
	if (rd == wr)
		goto einval;

	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return NULL;
	int parent_end = rd ? 0 : 1, child_end = rd ? 1 : 0, child_std = rd ? 1 : 0;
	if (fds[child_end] == child_std) {
		/* already the child's number: dup2 onto itself would keep CLOEXEC */
		int tmp = fcntl(child_std, F_DUPFD_CLOEXEC, 0);
		if (tmp < 0)
			goto fail;
		real_close()(fds[child_end]);
		fds[child_end] = tmp;
	}
	pthread_mutex_lock(&popen_mu);
	int slot = slot_free();
	pid_t pid;
	if (slot < 0 || spawn_shell(command, fds[child_end], child_std, &pid) != 0) {
		pthread_mutex_unlock(&popen_mu);
		goto fail;
	}
	real_close()(fds[child_end]);
	if (!cloexec)
		fcntl(fds[parent_end], F_SETFD, 0);
	FILE *fp = fdopen(fds[parent_end], rd ? "r" : "w");
	if (!fp) {
		/* the child runs; like glibc when it cannot make the stream */
		pthread_mutex_unlock(&popen_mu);
		real_close()(fds[parent_end]);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		errno = ENOMEM;
		return NULL;
	}
	for (int i = 0; i < POPEN_MAX; i++) /* a stale entry of a stream fclose()d by mistake */
		if (streams[i].fp == fp)
			streams[i].fp = NULL;
	streams[slot].fp = fp;
	streams[slot].fd = fds[parent_end];
	streams[slot].pid = pid;
	atomic_fetch_add(&popen_count, 1);
	pthread_mutex_unlock(&popen_mu);
	return fp;

fail:
	real_close()(fds[0]);
	real_close()(fds[1]);
	errno = ENOMEM; /* what glibc reports for any spawn failure */
	return NULL;
einval:
	errno = EINVAL;
	return NULL;
}

TS_EXPORT FILE *popen(const char *command, const char *mode)
{
	if (!ts_tracing() || ts_foreign_child())
		return real_popen()(command, mode);
	if (!atomic_load(&popen_atfork_done) && !atomic_exchange(&popen_atfork_done, 1))
		pthread_atfork(NULL, NULL, popen_atfork_child);
	int saved = errno;
	pthread_mutex_lock(&popen_mu);
	bool room = slot_free() >= 0;
	pthread_mutex_unlock(&popen_mu);
	errno = saved;
	if (!room)
		return real_popen()(command, mode);
	return traced_popen(command, mode);
}

/* glibc's _IO_new_proc_close: unlink, close the stream, wait (not a
 * cancellation point), return the wait status. Like glibc's fclose of a popen
 * stream, a failed flush is reported only when the status is 0. */
TS_EXPORT int pclose(FILE *fp)
{
	if (!atomic_load_explicit(&popen_count, memory_order_relaxed))
		return real_pclose()(fp);
	pid_t pid = -1;
	pthread_mutex_lock(&popen_mu);
	for (int i = 0; i < POPEN_MAX; i++)
		if (streams[i].fp == fp && fp) {
			pid = streams[i].pid;
			streams[i].fp = NULL;
			atomic_fetch_sub(&popen_count, 1);
			break;
		}
	pthread_mutex_unlock(&popen_mu);
	if (pid < 0)
		return real_pclose()(fp);
	int closed = fclose(fp);
	int wstatus, state;
	pid_t w;
	do {
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
		w = waitpid(pid, &wstatus, 0);
		pthread_setcancelstate(state, NULL);
	} while (w < 0 && errno == EINTR);
	if (w < 0)
		return -1;
	return (wstatus == 0 && closed != 0) ? -1 : wstatus;
}
