/* main.c — traceshim-exporter: command line, startup, --daemon, shutdown.
 *
 *   traceshim-exporter            serve in the foreground until SIGTERM/SIGINT
 *   traceshim-exporter --daemon   detach; exit 0 once the socket answers
 *   traceshim-exporter --ping     exit 0 if an exporter answers, else 1 (silent)
 *   traceshim-exporter --status   print the exporter's STATUS lines
 *   traceshim-exporter --paths    print socket=, file=, spool= defaults
 *
 * Threads: this one runs the receive loop (server.c); one export thread
 * (export.c) owns the sinks. Signals are blocked in both and read from a
 * signalfd by the loop, so no code runs in signal context. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "export.h"
#include "fsutil.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "metrics_serve.h"
#include "paths.h"
#include "server.h"
#include "sink.h"
#include "stats.h"
#include "tail.h"

#define ERR_MAX 512
#define READY_TIMEOUT_MS 10000
#define CLIENT_TIMEOUT_MS 2000
/* Stopped, but a sink was still stuck when the shutdown budget ran out: spans
 * were abandoned (docs/EXPORTER.md, Shutdown). Not 0, so that a supervisor
 * (systemd marks the unit failed) and a script see that data was lost; not
 * 1 (cannot start) or 2 (usage). */
#define EXIT_SPANS_ABANDONED 3

static void usage(FILE *out)
{
	fprintf(out,
		"usage: traceshim-exporter [--daemon | --ping | --status | --paths | --help | --version]\n"
		"Receives spans from processes traced by libtraceshim and writes them to\n"
		"OTLP/JSON lines (TRACESHIM_FILE) and/or an OTLP/HTTP endpoint\n"
		"(OTEL_EXPORTER_OTLP_ENDPOINT). Configured by environment only: see\n"
		"docs/EXPORTER.md.\n"
		"  (none)     run in the foreground until SIGTERM or SIGINT\n"
		"  --daemon   run in the background; exit 0 once it accepts connections\n"
		"  --ping     exit 0 if an exporter answers on the socket, else 1\n"
		"  --status   print the running exporter's counters\n"
		"  --paths    print the default socket, file and spool paths\n");
}

/* ---- startup ------------------------------------------------------------ */

/* Startup failures go to the terminal (foreground) or through the pipe to
 * the waiting --daemon parent, and to the log either way. */
static void report(int ready_fd, const char *msg)
{
	if (ready_fd >= 0) {
		(void)!write(ready_fd, msg, strlen(msg));
		close(ready_fd);
	}
	fprintf(stderr, "traceshim-exporter: %s\n", msg);
}

static int block_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	signal(SIGPIPE, SIG_IGN);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -1;
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* After the first signal, a second one should end the flush at once; one
 * that merely arrived during the drain (a duplicate) is discarded first. */
static void unblock_signals(int sigfd)
{
	struct signalfd_siginfo si;
	while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si)
		;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* Each connection costs a descriptor: use all the hard limit allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

struct sinks {
	struct exp_sink *list[2];
	size_t n;
};

static int open_sinks(const struct exp_config *c, struct sinks *s, char *err, size_t errcap)
{
	s->n = 0;
	if ((c->sinks & EXP_SINK_FILE) && !(s->list[s->n++] = exp_file_sink_open(c->file_path, c->file_max_bytes, err, errcap)))
		return -1;
	if ((c->sinks & EXP_SINK_OTLP) && !(s->list[s->n++] = exp_otlp_sink_open(c, err, errcap)))
		return -1;
	return 0;
}

static void close_sinks(struct sinks *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->list[i])
			s->list[i]->destroy(s->list[i]);
	s->n = 0;
}

/* ---- running ------------------------------------------------------------ */

struct exporter_state {
	struct exp_listener listener;
	struct sinks sinks;
	struct exp_queue queue;
	struct exp_exporter exporter;
	struct exp_server server; /* large (frame buffers): lives in static storage */
	struct exp_metrics *metrics;           /* NULL: OTEL_METRICS_EXPORTER=none */
	struct exp_metrics_server *metrics_srv;
};

static struct exporter_state st;

static int start_metrics(const struct exp_config *c, char *err, size_t errcap)
{
	struct exp_metrics_config mc = {.n_dims = c->n_metrics_dims, .max_series = c->metrics_max_series,
					.graph_wait_ms = c->graph_wait_ms, .graph_max_pending = c->graph_max_pending};
	for (size_t i = 0; i < c->n_metrics_dims; i++)
		snprintf(mc.dims[i], sizeof mc.dims[i], "%s", c->metrics_dims[i]);
	if (!(st.metrics = exp_metrics_new(&mc))) {
		snprintf(err, errcap, "out of memory for the metrics");
		return -1;
	}
	if (!(st.metrics_srv = exp_metrics_server_start(c, st.metrics, &st.queue, err, errcap)))
		return -1;
	st.server.metrics = st.metrics;
	return 0;
}

static int start(const struct exp_config *c, int sigfd, char *err, size_t errcap)
{
	if (exp_listener_open(&st.listener, c->socket_path, c->n_allowed_uids > 0, err, errcap) < 0)
		return -1;
	if (open_sinks(c, &st.sinks, err, errcap) < 0 ||
	    exp_queue_init(&st.queue, c->max_queue, c->queue_max_bytes, c->max_batch) < 0)
		goto fail_sinks;
	st.exporter = (struct exp_exporter){.queue = &st.queue, .sinks = st.sinks.list,
					     .n_sinks = st.sinks.n, .delay_ms = c->schedule_delay_ms,
					     .shutdown_budget_ms = c->export_timeout_ms};
	if (exp_server_init(&st.server, c, &st.listener, &st.queue, sigfd, err, errcap) < 0)
		goto fail_server;
	if (c->tail_sampling && !(st.exporter.tail = exp_tail_new(&(struct exp_tail_config){
					  .wait_ms = c->tail_wait_ms, .slow_ms = c->tail_slow_ms,
					  .ratio = c->tail_ratio, .max_spans = c->tail_max_spans,
					  .max_bytes = c->tail_max_bytes}))) {
		snprintf(err, errcap, "out of memory for tail sampling");
		goto fail_server;
	}
	if (c->metrics_exporters && start_metrics(c, err, errcap) < 0)
		goto fail_server;
	if (exp_exporter_start(&st.exporter) < 0) {
		snprintf(err, errcap, "cannot start the export thread");
		goto fail_server;
	}
	return 0;
fail_server:
	exp_metrics_server_stop(st.metrics_srv, 0);
	exp_metrics_free(st.metrics);
	st.server.metrics = NULL;
	exp_tail_free(st.exporter.tail);
	exp_server_destroy(&st.server);
	exp_queue_destroy(&st.queue);
fail_sinks:
	close_sinks(&st.sinks);
	exp_listener_stop(&st.listener);
	exp_listener_release(&st.listener);
	return -1;
}

/* False when the export thread had to be given up on (see exit_abandoned):
 * then nothing it may still use is freed or closed. */
static bool stop(size_t *abandoned)
{
	if (!exp_exporter_stop(&st.exporter, abandoned)) /* flushes everything queued to every sink */
		return false;
	exp_tail_free(st.exporter.tail);
	close_sinks(&st.sinks);
	exp_server_destroy(&st.server);
	exp_queue_destroy(&st.queue);
	exp_listener_release(&st.listener);
	return true;
}

/* The shutdown gave up on the export thread, stuck in a sink's write (a FIFO
 * nobody reads, a hung NFS mount): end the process with the thread in it.
 * _exit, not exit: exit would run atexit handlers and library destructors
 * (libcurl's, OpenSSL's) and stdio's cleanup beside a thread that is still
 * running, none of which we need: everything a normal stop cleans up is done
 * already — the socket file was unlinked
 * when the loop stopped (exp_listener_stop), background delivery has ended
 * and spooled what it held (exp_exporter_stop), the lock files are released
 * with their descriptors. The stuck descriptor is never closed here: a
 * close() on a hung NFS file flushes and would block again. */
static _Noreturn void exit_abandoned(const struct exp_config *c, size_t abandoned)
{
	log_error("stopped with spans abandoned: %llu received, %llu exported, %zu not delivered because a sink "
		  "did not finish within the shutdown budget (OTEL_BSP_EXPORT_TIMEOUT=%u ms); "
		  "dropped_export_failed=%llu; exit status %d",
		  (unsigned long long)STAT_GET(received_spans), (unsigned long long)STAT_GET(exported_spans),
		  abandoned, c->export_timeout_ms, (unsigned long long)STAT_GET(dropped_export_failed),
		  EXIT_SPANS_ABANDONED);
	fflush(stderr);
	_exit(EXIT_SPANS_ABANDONED);
}

static void log_start(const struct exp_config *c)
{
	log_info("traceshim-exporter %s listening on %s; file=%s endpoint=%s spool=%s delay=%ums batch=%u "
		 "queue=%u export_timeout=%ums gzip=%s tail_sampling=%s",
		 TRACESHIM_VERSION, c->socket_path, *c->file_path ? c->file_path : "none",
		 *c->endpoint ? c->endpoint : "none", *c->spool_dir ? c->spool_dir : "none",
		 c->schedule_delay_ms, c->max_batch, c->max_queue, c->export_timeout_ms,
		 c->gzip ? "yes" : "no", c->tail_sampling ? "on" : "off");
}

/* Serves until signalled; ready_fd (or -1) receives "ok\n" once listening. */
static int serve(const struct exp_config *c, int ready_fd)
{
	char err[ERR_MAX];
	raise_fd_limit();
	int sigfd = block_signals();
	bool curl = (c->sinks & EXP_SINK_OTLP) || (c->metrics_exporters & EXP_METRICS_OTLP);
	if (sigfd < 0 || (curl && curl_global_init(CURL_GLOBAL_DEFAULT) != 0)) {
		report(ready_fd, "cannot set up signals or libcurl");
		return 1;
	}
	exp_stats_start();
	if (start(c, sigfd, err, sizeof err) < 0) {
		report(ready_fd, err);
		return 1;
	}
	log_start(c);
	if (ready_fd >= 0) {
		(void)!write(ready_fd, "ok\n", 3);
		close(ready_fd);
	}
	exp_server_run(&st.server);
	unblock_signals(sigfd);
	/* Every span received has been observed: the last metrics export is
	 * made now and delivered in the same budget as the traces' flush. */
	exp_metrics_server_begin_stop(st.metrics_srv, c->export_timeout_ms);
	size_t abandoned;
	if (!stop(&abandoned))
		exit_abandoned(c, abandoned);
	exp_metrics_server_stop(st.metrics_srv, c->export_timeout_ms);
	exp_metrics_free(st.metrics);
	close(sigfd);
	if (curl)
		curl_global_cleanup();
	log_info("stopped: %llu spans received, %llu exported",
		 (unsigned long long)STAT_GET(received_spans), (unsigned long long)STAT_GET(exported_spans));
	return 0;
}

/* ---- --daemon ----------------------------------------------------------- */

/* Reads the child's verdict: "ok\n", an error message, or EOF if it died. */
static int wait_ready(int fd, char *msg, size_t cap)
{
	size_t len = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	while (len + 1 < cap && poll(&p, 1, READY_TIMEOUT_MS) > 0) {
		ssize_t n = read(fd, msg + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	msg[len] = '\0';
	return strcmp(msg, "ok\n") == 0 ? 0 : -1;
}

static int daemon_parent(const struct exp_config *c, int fd, const char *log_path)
{
	char msg[ERR_MAX];
	int rc = wait_ready(fd, msg, sizeof msg);
	close(fd);
	struct sbuf status;
	sbuf_init(&status);
	if (rc == 0 && exp_query_status(c->socket_path, CLIENT_TIMEOUT_MS, &status) == 0) {
		sbuf_free(&status);
		return 0;
	}
	sbuf_free(&status);
	if (rc == 0)
		fprintf(stderr, "traceshim-exporter: started but does not answer on %s (see %s)\n",
			c->socket_path, log_path);
	else if (*msg)
		fprintf(stderr, "traceshim-exporter: %s\n", msg);
	else
		fprintf(stderr, "traceshim-exporter: exited during startup (see %s)\n", log_path);
	return 1;
}

static int redirect_stdio(const char *log_path)
{
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
	if (nul < 0 || log < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(log, 2) < 0)
		return -1;
	close(nul);
	close(log);
	return 0;
}

/* A daemon must not keep its starter's descriptors: a shell reading the
 * starter's output through a pipe would wait for EOF forever. */
static void close_inherited_fds(int keep)
{
	if (keep > 3)
		close_range(3, (unsigned)keep - 1, 0);
	close_range((unsigned)keep + 1, ~0u, 0);
}

static int run_daemon(const struct exp_config *c)
{
	char dir[EXP_PATH_MAX], log_path[EXP_PATH_MAX + 16];
	exp_dirname(c->socket_path, dir, sizeof dir);
	snprintf(log_path, sizeof log_path, "%s/exporter.log", dir);
	int p[2];
	if (exp_mkdir_parents(c->socket_path, 0700) < 0 || pipe2(p, O_CLOEXEC) < 0) {
		fprintf(stderr, "traceshim-exporter: cannot prepare %s: %s\n", dir, strerror(errno));
		return 1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "traceshim-exporter: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid > 0) {
		close(p[1]);
		return daemon_parent(c, p[0], log_path);
	}
	close(p[0]);
	close_inherited_fds(p[1]);
	setsid(); /* no controlling terminal: the shell's hangup does not reach us */
	if (redirect_stdio(log_path) < 0) {
		report(p[1], "cannot open the log file or /dev/null");
		return 1;
	}
	if (chdir("/") < 0) /* paths are absolute already (config.c) */
		log_warn("chdir /: %s", strerror(errno));
	return serve(c, p[1]);
}

/* ---- client modes ------------------------------------------------------- */

static int print_paths(void)
{
	char sock[EXP_PATH_MAX], file[EXP_PATH_MAX], spool[EXP_PATH_MAX];
	if (ts_default_socket_path(sock, sizeof sock, NULL) < 0 ||
	    ts_default_file_path(file, sizeof file, NULL) < 0 ||
	    ts_default_spool_dir(spool, sizeof spool, NULL) < 0) {
		fprintf(stderr, "traceshim-exporter: a default path is too long\n");
		return 1;
	}
	printf("socket=%s\nfile=%s\nspool=%s\n", sock, file, spool);
	return 0;
}

static int query(const char *socket_path, bool print)
{
	struct sbuf text;
	sbuf_init(&text);
	int rc = exp_query_status(socket_path, CLIENT_TIMEOUT_MS, &text);
	if (rc == 0 && print)
		fwrite(text.p, 1, text.len, stdout);
	else if (rc < 0 && print)
		fprintf(stderr, "no exporter answering on %s\n", socket_path);
	sbuf_free(&text);
	return rc == 0 ? 0 : 1;
}

static int load_config(struct exp_config *c)
{
	char err[ERR_MAX];
	if (exp_config_load(c, NULL, err, sizeof err) == 0)
		return 0;
	fprintf(stderr, "traceshim-exporter: %s\n", err);
	return -1;
}

/* --ping and --status need the socket path only: no warnings about the rest. */
static int client_mode(bool print)
{
	char path[EXP_SUN_PATH_MAX];
	if (exp_config_socket_path(path, sizeof path, NULL) < 0) {
		if (print)
			fprintf(stderr, "traceshim-exporter: socket path too long\n");
		return 1;
	}
	return query(path, print);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (argc > 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(mode, "--help") || !strcmp(mode, "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(mode, "--version")) {
		printf("traceshim-exporter %s\n", TRACESHIM_VERSION);
		return 0;
	}
	if (!strcmp(mode, "--paths"))
		return print_paths();
	if (!strcmp(mode, "--ping") || !strcmp(mode, "--status"))
		return client_mode(!strcmp(mode, "--status"));
	if (*mode && strcmp(mode, "--daemon") != 0) {
		usage(stderr);
		return 2;
	}
	static struct exp_config cfg;
	if (load_config(&cfg) < 0)
		return 1;
	/* TRACESHIM_EXPORTER_SCHED=batch: SCHED_BATCH (inherited by every thread
	 * started later), so the exporter's wakeups never preempt the traced
	 * programs it shares cores with. A trade (docs/PERFORMANCE.md): a nginx
	 * worker sharing its core kept its CPU per request (+0.9 instead of
	 * +4.2 us), but the exporter then ran in longer stretches and nginx's p99
	 * got worse — so it is not the default. */
	struct sched_param sp = {0};
	if (cfg.sched_batch && sched_setscheduler(0, SCHED_BATCH, &sp) != 0)
		log_warn("cannot switch to SCHED_BATCH: %s", strerror(errno));
	int rc = *mode ? run_daemon(&cfg) : serve(&cfg, -1);
	exp_config_free(&cfg);
	return rc;
}
