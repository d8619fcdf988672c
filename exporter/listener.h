/* listener.h — the exporter's listening socket and its single-instance lock.
 * One exporter per socket path: `<socket>.lock` (flock, held for the life of
 * the process) serialises starts, so two exporters racing to replace a stale
 * socket cannot both win. */
#ifndef TRACESHIM_EXP_LISTENER_H
#define TRACESHIM_EXP_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

struct exp_listener {
	int fd, lock_fd;
	bool inherited; /* handed over by the service manager: not ours to lock or unlink */
	char path[EXP_SUN_PATH_MAX];
	dev_t dev;
	ino_t ino;
};

/* Socket activation (systemd's LISTEN_PID/LISTEN_FDS protocol, sd_listen_fds(3)):
 * when the service manager passes a listening socket for this process, that
 * socket is used instead — after checking it is a listening AF_UNIX
 * SOCK_SEQPACKET socket bound to `path` (clients and --status look there).
 * Its file, mode and owner are then the manager's (ListenSequentialPacket=,
 * SocketMode=): no directory, lock or unlink of ours. LISTEN_* are removed
 * from the environment either way, so no child inherits them.
 *
 * Otherwise: creates the parent directory (0700), takes the lock, removes a stale
 * socket, binds (mode 0600, checked) and listens (SOMAXCONN, non-blocking).
 * `shared` (TRACESHIM_ALLOWED_UIDS set): directories made 0711, socket 0666,
 * so that the allowed uids can connect; SO_PEERCRED still decides who is
 * served. On error returns -1 with a one-line reason in err — e.g. a live
 * exporter answers. */
int exp_listener_open(struct exp_listener *l, const char *path, bool shared, char *err, size_t errcap);

/* Stops listening and removes the socket file if it is still ours. */
void exp_listener_stop(struct exp_listener *l);

/* Releases the lock (after everything is flushed). */
void exp_listener_release(struct exp_listener *l);

#endif
