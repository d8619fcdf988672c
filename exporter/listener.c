/* listener.c — see listener.h. */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "fsutil.h"
#include "log.h"

/* Somebody else's directory, or one anyone may write to, could be used to
 * swap our socket for theirs: refuse it (/tmp itself is fine: sticky). */
static int check_dir(const char *path, bool shared, char *err, size_t errcap)
{
	char dir[EXP_PATH_MAX];
	struct stat st;
	exp_dirname(path, dir, sizeof dir);
	if (stat(dir, &st) < 0) {
		snprintf(err, errcap, "cannot use directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(err, errcap, "directory %s belongs to uid %u, not to us", dir, (unsigned)st.st_uid);
		return -1;
	}
	if ((st.st_mode & 0022) && !(st.st_mode & S_ISVTX)) {
		snprintf(err, errcap, "directory %s is writable by others", dir);
		return -1;
	}
	if (shared && (st.st_mode & 0001) == 0)
		log_warn("TRACESHIM_ALLOWED_UIDS is set but %s is not searchable by others (mode %03o): "
			 "other users cannot reach the socket (chmod o+x it)", dir, (unsigned)(st.st_mode & 0777));
	else if (!shared && (st.st_mode & 0077) && !(st.st_mode & S_ISVTX))
		log_info("socket directory %s is open to others (mode %03o); the socket is 0600 and peers "
			 "are checked", dir, (unsigned)(st.st_mode & 0777));
	return 0;
}

static int take_lock(struct exp_listener *l, char *err, size_t errcap)
{
	char lock[EXP_SUN_PATH_MAX + 8];
	snprintf(lock, sizeof lock, "%s.lock", l->path);
	l->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (l->lock_fd < 0) {
		snprintf(err, errcap, "cannot open %s: %s", lock, strerror(errno));
		return -1;
	}
	if (flock(l->lock_fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	int fd = exp_unix_connect(l->path, 1000);
	if (fd >= 0) {
		close(fd);
		snprintf(err, errcap, "an exporter is already running on %s", l->path);
	} else {
		snprintf(err, errcap, "another exporter is starting on %s (%s is locked)", l->path, lock);
	}
	return -1;
}

/* We hold the lock, so whatever is at the path is not a running exporter of
 * ours — unless an exporter that predates the lock answers there. */
static int remove_stale(struct exp_listener *l, char *err, size_t errcap)
{
	struct stat st;
	if (lstat(l->path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errcap, "%s: %s", l->path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errcap, "%s exists and is not a socket: not touching it", l->path);
		return -1;
	}
	int fd = exp_unix_connect(l->path, 1000);
	if (fd >= 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
		if (fd >= 0)
			close(fd);
		snprintf(err, errcap, "an exporter is already running on %s", l->path);
		return -1;
	}
	if (errno != ECONNREFUSED) {
		snprintf(err, errcap, "cannot probe %s: %s", l->path, strerror(errno));
		return -1;
	}
	log_info("removing stale socket %s", l->path);
	if (unlink(l->path) < 0 && errno != ENOENT) {
		snprintf(err, errcap, "cannot remove stale socket %s: %s", l->path, strerror(errno));
		return -1;
	}
	return 0;
}

/* 0600: only our uid (and root) can connect. With an allow-list the socket
 * must be connectable by those uids too: 0666, and SO_PEERCRED decides. */
static int bind_listen(struct exp_listener *l, bool shared, char *err, size_t errcap)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, l->path, strlen(l->path) + 1);
	l->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		snprintf(err, errcap, "socket: %s", strerror(errno));
		return -1;
	}
	mode_t want = shared ? 0666 : 0600;
	mode_t old = umask(0777 & ~want); /* born with its final mode: no window where others can connect */
	int rc = bind(l->fd, (struct sockaddr *)&sa, sizeof sa);
	int e = errno;
	umask(old);
	struct stat st;
	if (rc < 0 || listen(l->fd, SOMAXCONN) < 0 || lstat(l->path, &st) < 0) {
		snprintf(err, errcap, "cannot listen on %s: %s", l->path, strerror(rc < 0 ? e : errno));
		return -1;
	}
	if ((st.st_mode & 0777) != want || st.st_uid != geteuid()) { /* e.g. a filesystem that ignores modes */
		snprintf(err, errcap, "socket %s has mode %03o owner %u, expected %03o owner %u", l->path,
			 (unsigned)(st.st_mode & 0777), (unsigned)st.st_uid, (unsigned)want, (unsigned)geteuid());
		return -1;
	}
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return 0;
}

/* ---- socket activation ---------------------------------------------------- */

#define LISTEN_FDS_START 3 /* SD_LISTEN_FDS_START */

/* How many sockets the service manager passed to this very process (0: none;
 * LISTEN_PID guards against a variable inherited from a parent). */
static int listen_fds(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int n = 0;
	if (pid && fds) {
		char *end;
		long p = strtol(pid, &end, 10);
		if (!*end && p == (long)getpid()) {
			long v = strtol(fds, &end, 10);
			if (!*end && v > 0 && v < 1024)
				n = (int)v;
		}
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return n;
}

static int sockopt_int(int fd, int opt)
{
	int v = -1;
	socklen_t len = sizeof v;
	return getsockopt(fd, SOL_SOCKET, opt, &v, &len) < 0 ? -1 : v;
}

/* 1: l->fd is the passed socket; 0: none passed; -1: one was passed but is
 * not what the exporter serves (err says why). */
static int adopt_inherited(struct exp_listener *l, char *err, size_t errcap)
{
	int n = listen_fds();
	if (n == 0)
		return 0;
	int fd = LISTEN_FDS_START;
	if (n > 1)
		log_warn("the service manager passed %d sockets; using fd %d only", n, fd);
	struct sockaddr_un sa;
	socklen_t len = sizeof sa;
	memset(&sa, 0, sizeof sa);
	if (sockopt_int(fd, SO_DOMAIN) != AF_UNIX || sockopt_int(fd, SO_TYPE) != SOCK_SEQPACKET ||
	    sockopt_int(fd, SO_ACCEPTCONN) != 1) {
		snprintf(err, errcap, "the socket passed by the service manager (fd %d) is not a listening AF_UNIX "
			 "SOCK_SEQPACKET socket (use ListenSequentialPacket=)", fd);
		return -1;
	}
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 || len <= offsetof(struct sockaddr_un, sun_path) ||
	    strncmp(sa.sun_path, l->path, sizeof sa.sun_path) != 0) {
		snprintf(err, errcap, "the socket passed by the service manager is bound to '%.*s', not to %s "
			 "(TRACESHIM_SOCKET): traced processes would not find it", (int)sizeof sa.sun_path,
			 len > offsetof(struct sockaddr_un, sun_path) ? sa.sun_path : "", l->path);
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		snprintf(err, errcap, "cannot set up the passed socket: %s", strerror(errno));
		return -1;
	}
	l->fd = fd;
	l->inherited = true;
	log_info("listening on %s, passed by the service manager", l->path);
	return 1;
}

int exp_listener_open(struct exp_listener *l, const char *path, bool shared, char *err, size_t errcap)
{
	*l = (struct exp_listener){.fd = -1, .lock_fd = -1};
	if (strlen(path) >= sizeof l->path) {
		snprintf(err, errcap, "socket path too long (max %zu bytes): %s", sizeof l->path - 1, path);
		return -1;
	}
	snprintf(l->path, sizeof l->path, "%s", path);
	int adopted = adopt_inherited(l, err, errcap);
	if (adopted != 0)
		return adopted > 0 ? 0 : -1;
	/* Directories we create: 0700, or 0711 (search only) when other uids
	 * are allowed to connect. Existing ones are left as they are. */
	if (exp_mkdir_parents(path, shared ? 0711 : 0700) < 0) {
		snprintf(err, errcap, "cannot create the directory of %s: %s", path, strerror(errno));
		return -1;
	}
	if (check_dir(path, shared, err, errcap) < 0 || take_lock(l, err, errcap) < 0 ||
	    remove_stale(l, err, errcap) < 0 || bind_listen(l, shared, err, errcap) < 0) {
		exp_listener_stop(l);
		exp_listener_release(l);
		return -1;
	}
	return 0;
}

void exp_listener_stop(struct exp_listener *l)
{
	if (l->fd < 0)
		return;
	close(l->fd);
	l->fd = -1;
	if (l->inherited)
		return; /* the service manager's file: it keeps listening while we are gone */
	struct stat st;
	if (lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
		unlink(l->path);
}

void exp_listener_release(struct exp_listener *l)
{
	if (l->lock_fd >= 0)
		close(l->lock_fd);
	l->lock_fd = -1;
}
