/* harness.c — see harness.h. */
#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "pyrun.h"
#include "spanbuild.h"

static const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);
	return (v && *v) ? v : dflt;
}

static const char *exporter_path(void) { return env_or("TS_EXPORTER", "traceshim-exporter"); }

void tp_sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void tp_init(struct tproc *p, bool with_file)
{
	memset(p, 0, sizeof *p);
	snprintf(p->dir, sizeof p->dir, "/tmp/tsexp-XXXXXX");
	cr_assert_not_null(mkdtemp(p->dir));
	snprintf(p->sock, sizeof p->sock, "%s/run/exporter.sock", p->dir);
	if (with_file)
		snprintf(p->file, sizeof p->file, "%s/out/traces.jsonl", p->dir);
	snprintf(p->log, sizeof p->log, "%s/exporter.stderr", p->dir);
}

/* In the child: a clean, predictable environment. */
static void child_env(const struct tproc *p, const char *const *extra)
{
	clearenv();
	setenv("PATH", "/usr/bin:/bin", 1);
	setenv("HOME", p->dir, 1);
	setenv("TRACESHIM_SOCKET", p->sock, 1);
	setenv("TRACESHIM_LOG", "debug", 1);
	if (*p->file)
		setenv("TRACESHIM_FILE", p->file, 1);
	for (; extra && *extra; extra++)
		putenv((char *)*extra);
}

void tp_start(struct tproc *p, const char *const *extra)
{
	const char *exe = exporter_path(); /* read before the child clears the environment */
	p->pid = fork();
	cr_assert_geq(p->pid, 0);
	if (p->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave it behind */
		child_env(p, extra);
		int log = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(log, 2);
		execl(exe, "traceshim-exporter", (char *)NULL);
		_exit(127);
	}
	char text[4096];
	for (long t0 = now_ms(); now_ms() - t0 < 10000; tp_sleep_ms(20)) {
		if (tp_status(p->sock, text, sizeof text) == 0)
			return;
		int st;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			char *log = tp_read_file(p->log, NULL);
			cr_assert_fail("exporter exited during startup: %s", log ? log : "");
		}
	}
	cr_assert_fail("exporter does not answer on %s", p->sock);
}

int tp_stop(struct tproc *p, int sig, long *elapsed_ms)
{
	long t0 = now_ms();
	kill(p->pid, sig);
	for (; now_ms() - t0 < 10000; tp_sleep_ms(5)) {
		int st;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			if (elapsed_ms)
				*elapsed_ms = now_ms() - t0;
			p->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
	}
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	p->pid = 0;
	return -1;
}

int tp_run(struct tproc *p, const char *arg, const char *const *extra, char *out, size_t cap)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	const char *exe = exporter_path();
	pid_t pid = fork();
	if (pid == 0) {
		child_env(p, extra);
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		execl(exe, "traceshim-exporter", arg, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	size_t len = 0;
	ssize_t n;
	while ((n = read(fds[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fds[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tp_cleanup(struct tproc *p)
{
	if (p->pid > 0)
		tp_stop(p, SIGKILL, NULL);
	nftw(p->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- talking to it ------------------------------------------------------ */

void tp_sockaddr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	cr_assert_lt(strlen(path), sizeof sa->sun_path);
	memcpy(sa->sun_path, path, strlen(path) + 1);
}

int tp_connect(const char *sock)
{
	struct sockaddr_un sa;
	tp_sockaddr(&sa, sock);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void tp_send(int fd, const void *buf, size_t n)
{
	ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
	cr_assert_eq(w, (ssize_t)n, "send %zu bytes: %zd (%s)", n, w, strerror(errno));
}

int tp_status(const char *sock, char *out, size_t cap)
{
	int fd = tp_connect(sock);
	if (fd < 0)
		return -1;
	uint8_t req[TS_FRAME_HEADER_SIZE], reply[TS_FRAME_MAX];
	size_t n = tb_status_req_frame(req, sizeof req);
	ssize_t r = send(fd, req, n, MSG_NOSIGNAL) == (ssize_t)n ? recv(fd, reply, sizeof reply, 0) : -1;
	close(fd);
	struct ts_frame_header h;
	if (r <= 0 || !ts_frame_parse_header(reply, (size_t)r, &h) || h.type != TS_FRAME_STATUS ||
	    h.length >= cap)
		return -1;
	memcpy(out, reply + TS_FRAME_HEADER_SIZE, h.length);
	out[h.length] = '\0';
	return 0;
}

uint64_t tp_stat(const char *text, const char *key)
{
	size_t klen = strlen(key);
	for (const char *line = text; line && *line;) {
		if (strncmp(line, key, klen) == 0 && line[klen] == '=')
			return strtoull(line + klen + 1, NULL, 10);
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
	cr_assert_fail("no %s in status:\n%s", key, text);
	return 0;
}

bool tp_wait_stat(const char *sock, const char *key, uint64_t want, int timeout_ms)
{
	char text[4096];
	for (long t0 = now_ms(); now_ms() - t0 < timeout_ms; tp_sleep_ms(20))
		if (tp_status(sock, text, sizeof text) == 0 && tp_stat(text, key) == want)
			return true;
	return false;
}

int tp_script(const char *script, const char *const *args, char *out, size_t cap)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", env_or("TS_TESTS_DIR", "."), script);
	const char *argv[16] = {tb_python_path(), path};
	size_t n = 2;
	for (; args && *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	return tb_run(argv, NULL, 0, out, cap);
}

char *tp_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *buf = malloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, f);
	buf[got] = '\0';
	fclose(f);
	if (len)
		*len = got;
	return buf;
}
