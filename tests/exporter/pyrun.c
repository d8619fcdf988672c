/* pyrun.c — see pyrun.h. */
#include "pyrun.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *tb_python_path(void)
{
	const char *p = getenv("TS_PYTHON");
	return (p && *p) ? p : "/usr/bin/python3";
}

static void child(const char *const argv[], int in_fd, int out_fd)
{
	dup2(in_fd, 0);
	dup2(out_fd, 1);
	execv(argv[0], (char *const *)argv);
	_exit(127);
}

/* Feeds stdin and drains stdout together, so a big output cannot deadlock. */
static void pump(int to, const char *in, size_t in_len, int from, char *out, size_t cap)
{
	size_t off = 0, len = 0;
	if (!in_len) {
		close(to);
		to = -1;
	}
	while (from >= 0) {
		struct pollfd p[2] = {{.fd = from, .events = POLLIN}, {.fd = to, .events = POLLOUT}};
		if (poll(p, to >= 0 ? 2 : 1, 30000) <= 0)
			break;
		if (to >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t n = write(to, in + off, in_len - off);
			off += n > 0 ? (size_t)n : 0;
			if (n <= 0 || off == in_len) {
				close(to);
				to = -1;
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP)) {
			char tmp[4096];
			ssize_t n = read(from, tmp, sizeof tmp);
			if (n <= 0)
				break;
			size_t k = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
			memcpy(out + len, tmp, k);
			len += k;
		}
	}
	if (to >= 0)
		close(to);
	out[len] = '\0';
}

int tb_run(const char *const argv[], const char *in, size_t in_len, char *out, size_t cap)
{
	int pin[2], pout[2];
	if (pipe(pin) < 0 || pipe(pout) < 0)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	pid_t pid = fork();
	if (pid == 0) {
		close(pin[1]);
		close(pout[0]);
		child(argv, pin[0], pout[1]);
	}
	close(pin[0]);
	close(pout[1]);
	if (pid < 0)
		return -1;
	pump(pin[1], in, in_len, pout[0], out, cap);
	close(pout[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int tb_python(const char *program, const char *in, size_t in_len, char *out, size_t cap)
{
	const char *argv[] = {tb_python_path(), "-c", program, NULL};
	return tb_run(argv, in, in_len, out, cap);
}
