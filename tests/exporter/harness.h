/* harness.h — run the real traceshim-exporter binary in a private temp
 * directory and talk to it over SEQPACKET, as a traced process would. */
#ifndef TRACESHIM_TEST_HARNESS_H
#define TRACESHIM_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct tproc {
	pid_t pid;
	char dir[128];  /* private temp dir; HOME points here */
	char sock[192]; /* dir/run/exporter.sock */
	char file[192]; /* dir/out/traces.jsonl, or "" when TRACESHIM_FILE is unset */
	char log[192];  /* the exporter's stderr */
};

/* Creates the temp dir and paths. */
void tp_init(struct tproc *p, bool with_file);
/* Starts the exporter in the foreground with TRACESHIM_LOG=debug plus the
 * NULL-terminated "K=V" list `extra`; returns once it answers STATUS_REQ. */
void tp_start(struct tproc *p, const char *const *extra);
/* Sends sig and waits (at most 10 s); returns the exit status, or -1. */
int tp_stop(struct tproc *p, int sig, long *elapsed_ms);
/* Runs the exporter binary with one argument (or none) in p's environment;
 * stdout+stderr into out. Returns the exit status. */
int tp_run(struct tproc *p, const char *arg, const char *const *extra, char *out, size_t cap);
/* Removes the temp dir. */
void tp_cleanup(struct tproc *p);

struct sockaddr_un;
void tp_sockaddr(struct sockaddr_un *sa, const char *path);
int tp_connect(const char *sock);
void tp_send(int fd, const void *buf, size_t n);
/* STATUS_REQ on a new connection; the reply text into out (NUL-ended). */
int tp_status(const char *sock, char *out, size_t cap);
/* The value of `key` in STATUS text (asserts that it is there). */
uint64_t tp_stat(const char *text, const char *key);
/* Polls STATUS until key == want; false after timeout_ms. */
bool tp_wait_stat(const char *sock, const char *key, uint64_t want, int timeout_ms);

/* tests/exporter/<script> run with /usr/bin/python3 and args; stdout into out. */
int tp_script(const char *script, const char *const *args, char *out, size_t cap);

void tp_sleep_ms(long ms);
char *tp_read_file(const char *path, size_t *len); /* malloc'ed, NULL if missing */

#endif
