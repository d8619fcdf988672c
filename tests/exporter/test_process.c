/* test_process.c — the real exporter binary: good and bad frames from
 * several clients, the file it writes, its counters, shutdown, the CLI. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frame.h"
#include "harness.h"
#include "spanbuild.h"

static struct tproc P;
static uint8_t frame[TS_FRAME_MAX * 2];
static char text[4 << 20]; /* jsonl_summary output of thousands of spans */

static void fini(void) { tp_cleanup(&P); }

TestSuite(process, .fini = fini, .timeout = 60);

static void send_hello(int fd, const char *service, uint32_t pid, uint32_t dropped)
{
	tp_send(fd, frame, tb_hello_frame(frame, sizeof frame, service, pid, dropped));
}

static void send_spans(int fd, const char *prefix, size_t n, uint32_t dropped)
{
	size_t len = tb_named_spans_frame(frame, sizeof frame, prefix, n, 1, dropped);
	cr_assert_gt(len, 0);
	tp_send(fd, frame, len);
}

static void set_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void set_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint16_t get_u16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

/* Offsets in a SPANS frame: header, u16 count, then records. */
#define FIRST_REC (TS_FRAME_HEADER_SIZE + 2)

/* Every way a frame can be wrong that the exporter must count and survive. */
static int send_malformed_frames(int fd)
{
	size_t n;
	memset(frame, 0xAB, 100); /* garbage */
	tp_send(fd, frame, 100);

	n = tb_named_spans_frame(frame, sizeof frame, "t", 1, 1, 0); /* truncated */
	tp_send(fd, frame, n - 7);

	n = tb_named_spans_frame(frame, sizeof frame, "l", 2, 1, 0); /* 2nd record_len too big */
	size_t second = FIRST_REC + get_u16(frame + FIRST_REC);
	set_u16(frame + second, (uint16_t)(get_u16(frame + second) + 4));
	memset(frame + n, 0, 4);
	set_u32(frame + 8, (uint32_t)(n + 4 - TS_FRAME_HEADER_SIZE));
	tp_send(fd, frame, n + 4);

	n = tb_named_spans_frame(frame, sizeof frame, "s", 2, 1, 0); /* 1st record_len too small */
	set_u16(frame + FIRST_REC, (uint16_t)(get_u16(frame + FIRST_REC) - 3));
	tp_send(fd, frame, n);

	n = tb_named_spans_frame(frame, sizeof frame, "c", 2, 1, 0); /* count says 1, 2 follow */
	set_u16(frame + TS_FRAME_HEADER_SIZE, 1);
	tp_send(fd, frame, n);

	n = tb_hello_frame(frame, sizeof frame, "evil", 1, 0); /* attribute of unknown type */
	frame[TS_FRAME_HEADER_SIZE + 17 + 1 + 12] = 9;
	tp_send(fd, frame, n);

	struct ts_wbuf w; /* STATUS travels exporter -> client only */
	ts_wbuf_init(&w, frame, sizeof frame);
	ts_frame_begin(&w, TS_FRAME_STATUS, 0);
	ts_frame_finish(&w);
	tp_send(fd, frame, w.len);

	tp_send(fd, frame, 0); /* an empty message: reads like EOF, but the peer is still there */
	return 8;
}

static void send_oversized(int fd)
{
	size_t n = TS_FRAME_MAX + 7232; /* 40000 bytes */
	struct ts_wbuf w;
	memset(frame, 0, n);
	ts_wbuf_init(&w, frame, n);
	ts_frame_begin(&w, TS_FRAME_SPANS, 0);
	set_u32(frame + 8, (uint32_t)(n - TS_FRAME_HEADER_SIZE));
	tp_send(fd, frame, n);
}

/* Runs jsonl_summary.py; returns the span lines (after "lines=N"), sets *lines. */
static const char *summary(const char *path, int *lines)
{
	const char *args[] = {path, NULL};
	int rc = tp_script("jsonl_summary.py", args, text, sizeof text);
	cr_assert_eq(rc, 0, "%s", text);
	cr_assert_eq(sscanf(text, "lines=%d", lines), 1, "%s", text);
	return strchr(text, '\n') + 1;
}

#define SPAN(name, svc) "span " name " " svc " kind=3 flags=257 parent=yes\n"

Test(process, good_and_bad_frames_from_many_clients)
{
	tp_init(&P, true);
	tp_start(&P, NULL);
	int a = tp_connect(P.sock);
	cr_assert_geq(a, 0);
	send_hello(a, "svc-a", 4242, 0);
	send_spans(a, "a", 3, 5);
	int bad = send_malformed_frames(a);
	send_oversized(a);
	send_spans(a, "b", 2, 0); /* the connection still works after all that */

	int u = tp_connect(P.sock); /* SPANS before any HELLO */
	send_spans(u, "u", 1, 0);
	/* a stays open until all is read: the empty message must not end it */
	cr_assert(tp_wait_stat(P.sock, "received_spans", 6, 5000), "a's and u's spans not received");
	close(a);
	close(u);
	int c = tp_connect(P.sock); /* a client after the others left */
	send_hello(c, "svc-c", 99, 2);
	send_spans(c, "c", 1, 0);

	cr_assert(tp_wait_stat(P.sock, "exported_spans", 7, 5000), "spans not exported");
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0);
	cr_assert_eq(tp_stat(text, "received_spans"), 7);
	cr_assert_eq(tp_stat(text, "dropped_malformed_frames"), (uint64_t)bad, "%s", text);
	cr_assert_eq(tp_stat(text, "dropped_oversized_frames"), 1);
	cr_assert_eq(tp_stat(text, "dropped_client"), 7, "5 on a SPANS frame + 2 on a HELLO");
	cr_assert_eq(tp_stat(text, "dropped_queue_full"), 0);
	cr_assert_eq(tp_stat(text, "export_errors"), 0);
	cr_assert_eq(tp_stat(text, "queue_depth"), 0);
	cr_assert_eq(tp_stat(text, "connections_refused"), 0);
	cr_assert_geq(tp_stat(text, "connections_total"), 3);
	close(c);

	cr_assert_eq(tp_stop(&P, SIGTERM, NULL), 0);
	int lines;
	const char *spans = summary(P.file, &lines);
	cr_assert_str_eq(spans, SPAN("a0", "svc-a") SPAN("a1", "svc-a") SPAN("a2", "svc-a")
				SPAN("b0", "svc-a") SPAN("b1", "svc-a") SPAN("c0", "svc-c")
				SPAN("u0", "unknown_service"));
	cr_assert(lines >= 1 && lines <= 4, "%d lines", lines);
	struct stat st;
	cr_assert_eq(stat(P.file, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "trace file mode %o", st.st_mode & 0777);
	cr_assert_eq(access(P.sock, F_OK), -1, "socket file removed on exit");
}

/* A client that asked for STATUS and hung up without reading the reply: the
 * kernel reports ECONNRESET to the exporter ahead of the frames still queued,
 * which must be read all the same. The exporter is stopped meanwhile so that
 * all of them are still queued when the error arrives. */
Test(process, frames_after_an_unread_status_reply_are_read)
{
	tp_init(&P, true);
	tp_start(&P, NULL);
	int fd = tp_connect(P.sock);
	cr_assert_geq(fd, 0);
	tp_send(fd, frame, tb_status_req_frame(frame, sizeof frame));
	char reply[64];
	cr_assert_gt(recv(fd, reply, sizeof reply, MSG_PEEK), 0, "no status reply"); /* queued, left unread */
	cr_assert_eq(kill(P.pid, SIGSTOP), 0);
	send_hello(fd, "reset", 1, 0);
	for (int i = 0; i < 10; i++)
		send_spans(fd, "r", 5, 0);
	close(fd);
	cr_assert_eq(kill(P.pid, SIGCONT), 0);
	cr_assert(tp_wait_stat(P.sock, "received_spans", 50, 5000), "spans lost after ECONNRESET");
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0);
	cr_assert_eq(tp_stat(text, "dropped_malformed_frames"), 0, "%s", text);
}

Test(process, status_keys_in_order)
{
	tp_init(&P, true);
	tp_start(&P, NULL);
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0);
	char want[1024];
	snprintf(want, sizeof want,
		 "pid=%d\nversion=" TRACESHIM_VERSION "\nsocket=%s\nfile=%s\nendpoint=none\nspool=none\n",
		 (int)P.pid, P.sock, P.file);
	cr_assert_eq(strncmp(text, want, strlen(want)), 0, "%s", text);
	/* The first keys are the original ones, in their original order. */
	const char *keys[] = {"uptime_s", "connections_total", "connections_refused", "received_spans",
			      "exported_spans", "dropped_malformed_frames", "dropped_oversized_frames",
			      "dropped_queue_full", "dropped_client", "dropped_export_failed",
			      "export_errors", "dropped_sampled_out", "dropped_rejected", "dropped_spool_full",
			      "export_attempts", "export_retries", "spooled_spans_total",
			      "spool_replayed_spans", "spool_corrupt_files", "tail_kept_traces",
			      "tail_dropped_traces", "tail_decided_early", "refused_hellos", "file_rotations",
			      "connections_refused_uid", "connections_refused_limit", "connections_refused_resources",
			      "child_channels", "queue_depth",
			      "outbox_spans", "spooled_spans", "spool_files", "spool_bytes",
			      "tail_pending_spans", "tail_pending_traces", "ring_connections", "tail_sampling", "last_error",
			      "last_error_at", "metrics", "metrics_series", "metrics_overflow_points",
			      "metrics_only_records", "metrics_graph_pending", "metrics_graph_paired",
			      "metrics_graph_unpaired", "metrics_scrapes", "metrics_export_attempts",
			      "metrics_export_retries", "metrics_export_errors", "metrics_exported_points",
			      "metrics_dropped_points", "metrics_outbox_points"};
	const char *p = text + strlen(want);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		cr_assert_eq(strncmp(p, keys[i], strlen(keys[i])), 0, "expected %s at: %s", keys[i], p);
		cr_assert_eq(p[strlen(keys[i])], '=');
		p = strchr(p, '\n') + 1;
	}
	cr_assert_eq(*p, '\0', "no other keys: %s", p);
	struct stat st;
	cr_assert_eq(stat(P.sock, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "socket mode %o", st.st_mode & 0777);
	char dir[256];
	snprintf(dir, sizeof dir, "%s/run", P.dir);
	cr_assert_eq(stat(dir, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700, "socket dir mode %o", st.st_mode & 0777);
}

/* SIGTERM long before the schedule delay: whatever clients already sent
 * (still in their socket buffers) must reach the file. */
Test(process, sigterm_drains_and_flushes_everything)
{
	tp_init(&P, true);
	const char *env[] = {"OTEL_BSP_SCHEDULE_DELAY=600000", NULL};
	tp_start(&P, env);
	int fds[4];
	for (int i = 0; i < 4; i++) {
		fds[i] = tp_connect(P.sock);
		char svc[16];
		snprintf(svc, sizeof svc, "svc-%d", i);
		send_hello(fds[i], svc, (uint32_t)(100 + i), 0);
		for (int j = 0; j < 5; j++)
			send_spans(fds[i], "x", 50, 0);
	}
	long ms;
	cr_assert_eq(tp_stop(&P, SIGTERM, &ms), 0);
	cr_assert_lt(ms, 5000, "shutdown took %ld ms", ms);
	int lines;
	const char *spans = summary(P.file, &lines);
	int n = 0;
	for (const char *p = spans; (p = strstr(p, "span ")); p++)
		n++;
	cr_assert_eq(n, 4 * 5 * 50, "%d spans in the file", n);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
}

Test(process, queue_bound_counts_drops)
{
	tp_init(&P, true);
	const char *env[] = {"OTEL_BSP_MAX_QUEUE_SIZE=10", "OTEL_BSP_SCHEDULE_DELAY=600000", NULL};
	tp_start(&P, env);
	int fd = tp_connect(P.sock);
	send_hello(fd, "q", 1, 0);
	send_spans(fd, "q", 30, 0); /* one frame: 10 fit, 20 do not */
	cr_assert(tp_wait_stat(P.sock, "received_spans", 30, 5000));
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0);
	cr_assert_eq(tp_stat(text, "dropped_queue_full"), 20, "%s", text);
	cr_assert_eq(tp_stop(&P, SIGTERM, NULL), 0);
	int lines;
	const char *spans = summary(P.file, &lines);
	cr_assert_str_eq(spans, SPAN("q0", "q") SPAN("q1", "q") SPAN("q2", "q") SPAN("q3", "q")
				SPAN("q4", "q") SPAN("q5", "q") SPAN("q6", "q") SPAN("q7", "q")
				SPAN("q8", "q") SPAN("q9", "q"));
	close(fd);
}

/* The file sink reopens a trace file that was moved away (rotation, rm). */
Test(process, file_reopened_after_rotation)
{
	tp_init(&P, true);
	tp_start(&P, NULL);
	int fd = tp_connect(P.sock);
	send_hello(fd, "rot", 1, 0);
	send_spans(fd, "r", 1, 0);
	cr_assert(tp_wait_stat(P.sock, "exported_spans", 1, 5000));
	char old[256];
	snprintf(old, sizeof old, "%s.1", P.file);
	cr_assert_eq(rename(P.file, old), 0);
	send_spans(fd, "s", 1, 0);
	cr_assert(tp_wait_stat(P.sock, "exported_spans", 2, 5000));
	cr_assert_eq(tp_stop(&P, SIGTERM, NULL), 0);
	int lines;
	cr_assert_str_eq(summary(old, &lines), SPAN("r0", "rot"));
	cr_assert_str_eq(summary(P.file, &lines), SPAN("s0", "rot"));
	close(fd);
}

/* xorshift: reproducible "random" input, so a failure can be replayed. */
static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Valid frames with random bytes flipped, and valid headers over random
 * payloads, from several clients at once: the exporter must stay up, keep
 * counting, and still write only valid JSON. */
Test(process, random_and_mutated_frames_never_hurt)
{
	tp_init(&P, true);
	tp_start(&P, NULL);
	uint32_t seed = 12345;
	int fds[4];
	for (int i = 0; i < 4; i++) {
		fds[i] = tp_connect(P.sock);
		send_hello(fds[i], "fuzz", (uint32_t)i, 0);
	}
	static uint8_t good[TS_FRAME_MAX];
	size_t good_len = tb_named_spans_frame(good, sizeof good, "m", 5, 1, 0);
	int sent = 0;
	for (int i = 0; i < 3000; i++) {
		int fd = fds[i % 4];
		size_t n;
		if (i % 2) { /* mutate a valid SPANS frame, header left intact */
			memcpy(frame, good, good_len);
			n = good_len;
			for (int k = 0; k < 1 + (int)(rnd(&seed) % 4); k++)
				frame[TS_FRAME_HEADER_SIZE + rnd(&seed) % (n - TS_FRAME_HEADER_SIZE)] ^=
					(uint8_t)(1u << (rnd(&seed) % 8));
		} else { /* a valid header of a random type over random bytes */
			n = TS_FRAME_HEADER_SIZE + rnd(&seed) % 2000;
			for (size_t k = 0; k < n; k++)
				frame[k] = (uint8_t)rnd(&seed);
			struct ts_wbuf w;
			ts_wbuf_init(&w, frame, n);
			ts_frame_begin(&w, (enum ts_frame_type)(1 + rnd(&seed) % 2), 0);
			set_u32(frame + 8, (uint32_t)(n - TS_FRAME_HEADER_SIZE));
		}
		tp_send(fd, frame, n);
		sent++;
	}
	/* Many mutants stay valid (a flipped bit in a name): every span received
	 * must end up exported or counted as dropped. */
	bool settled = false;
	for (int i = 0; i < 500 && !settled; i++, tp_sleep_ms(20)) {
		cr_assert_eq(tp_status(P.sock, text, sizeof text), 0, "exporter no longer answers");
		settled = tp_stat(text, "received_spans") ==
			  tp_stat(text, "exported_spans") + tp_stat(text, "dropped_queue_full");
	}
	cr_assert(settled, "received != exported + dropped_queue_full:\n%s", text);
	cr_assert_gt(tp_stat(text, "dropped_malformed_frames"), (uint64_t)sent / 2, "%s", text);
	send_spans(fds[0], "last", 1, 0);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	cr_assert_eq(tp_stop(&P, SIGTERM, NULL), 0);
	int lines;
	const char *spans = summary(P.file, &lines); /* asserts every line is valid */
	cr_assert_not_null(strstr(spans, "span last0 fuzz"), "%s", spans);
}

/* ---- one exporter per socket -------------------------------------------- */

Test(process, second_exporter_refuses_to_start)
{
	tp_init(&P, true);
	tp_start(&P, NULL);
	int rc = tp_run(&P, NULL, NULL, text, sizeof text);
	cr_assert_eq(rc, 1);
	cr_assert_not_null(strstr(text, "already running"), "%s", text);
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0, "the first one still answers");
}

Test(process, stale_socket_is_replaced)
{
	tp_init(&P, true);
	char dir[256];
	snprintf(dir, sizeof dir, "%s/run", P.dir);
	mkdir(dir, 0700);
	int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct sockaddr_un sa;
	tp_sockaddr(&sa, P.sock);
	cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
	close(s); /* the file stays, nobody listens: a crashed exporter's leftover */
	tp_start(&P, NULL);
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0);
}

Test(process, refuses_to_replace_a_non_socket)
{
	tp_init(&P, true);
	char dir[256];
	snprintf(dir, sizeof dir, "%s/run", P.dir);
	mkdir(dir, 0700);
	FILE *f = fopen(P.sock, "w");
	fputs("precious", f);
	fclose(f);
	cr_assert_eq(tp_run(&P, NULL, NULL, text, sizeof text), 1);
	cr_assert_not_null(strstr(text, "not a socket"), "%s", text);
	char *kept = tp_read_file(P.sock, NULL);
	cr_assert_str_eq(kept, "precious");
	free(kept);
}

/* ---- CLI ---------------------------------------------------------------- */

Test(process, cli_without_exporter)
{
	tp_init(&P, true);
	cr_assert_eq(tp_run(&P, "--ping", NULL, text, sizeof text), 1);
	cr_assert_str_eq(text, "", "--ping is silent");
	cr_assert_eq(tp_run(&P, "--status", NULL, text, sizeof text), 1);
	char want[256];
	snprintf(want, sizeof want, "no exporter answering on %s\n", P.sock);
	cr_assert_str_eq(text, want);
	cr_assert_eq(tp_run(&P, "--bogus", NULL, text, sizeof text), 2);
	cr_assert_eq(tp_run(&P, "--help", NULL, text, sizeof text), 0);
	cr_assert_not_null(strstr(text, "--daemon"));
}

Test(process, cli_paths)
{
	tp_init(&P, true);
	const char *env[] = {"TRACESHIM_SPOOL_DIR=/x/spool", NULL};
	cr_assert_eq(tp_run(&P, "--paths", env, text, sizeof text), 0);
	char want[1024];
	snprintf(want, sizeof want, "socket=%s\nfile=%s\nspool=/x/spool\n", P.sock, P.file);
	cr_assert_str_eq(text, want);
}

Test(process, cli_ping_and_status_with_exporter)
{
	tp_init(&P, true);
	tp_start(&P, NULL);
	cr_assert_eq(tp_run(&P, "--ping", NULL, text, sizeof text), 0);
	cr_assert_str_eq(text, "");
	cr_assert_eq(tp_run(&P, "--status", NULL, text, sizeof text), 0);
	cr_assert_eq(tp_stat(text, "pid"), (uint64_t)P.pid, "%s", text);
}

static pid_t daemon_pid;

static void kill_daemon(void)
{
	if (daemon_pid > 0)
		kill(daemon_pid, SIGKILL);
	tp_cleanup(&P);
}

/* tp_run's child keeps an extra copy of the output pipe: the daemon must
 * close inherited descriptors or this test hangs (like `$(... --daemon)`). */
Test(process, cli_daemon, .fini = kill_daemon)
{
	tp_init(&P, true);
	cr_assert_eq(tp_run(&P, "--daemon", NULL, text, sizeof text), 0, "%s", text);
	cr_assert_str_eq(text, "", "--daemon prints nothing on success");
	/* It answers the moment the parent returns: no polling needed. */
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0);
	daemon_pid = (pid_t)tp_stat(text, "pid");
	cr_assert_eq(tp_run(&P, "--daemon", NULL, text, sizeof text), 1, "a second daemon must fail");
	cr_assert_not_null(strstr(text, "already running"), "%s", text);
	int fd = tp_connect(P.sock);
	send_hello(fd, "d", 1, 0);
	send_spans(fd, "d", 2, 0);
	close(fd);
	cr_assert(tp_wait_stat(P.sock, "exported_spans", 2, 5000));
	cr_assert_eq(kill(daemon_pid, SIGTERM), 0);
	for (int i = 0; i < 500 && kill(daemon_pid, 0) == 0; i++)
		tp_sleep_ms(10);
	cr_assert_neq(kill(daemon_pid, 0), 0, "daemon did not exit on SIGTERM");
	daemon_pid = 0;
	char log[256];
	snprintf(log, sizeof log, "%s/run/exporter.log", P.dir);
	char *content = tp_read_file(log, NULL);
	cr_assert_not_null(content, "no exporter.log next to the socket");
	cr_assert_not_null(strstr(content, "stopping"), "%s", content);
	free(content);
}

Test(process, unknown_exporter_endpoint_scheme_fails_startup)
{
	tp_init(&P, false);
	const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=ftp://example", NULL};
	cr_assert_eq(tp_run(&P, NULL, env, text, sizeof text), 1);
	cr_assert_not_null(strstr(text, "not an http:// or https:// URL"), "%s", text);
	cr_assert_eq(access(P.sock, F_OK), -1, "no socket left behind");
}

/* SO_PEERCRED: even if someone loosens the socket's permissions, another
 * uid's process is turned away (and counted). Needs root to play that uid. */
static int connect_as_nobody(const char *sock)
{
	if (setgid(65534) < 0 || setuid(65534) < 0)
		return 2;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sock) >= sizeof sa.sun_path)
		return 5;
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		return 3;
	size_t n = tb_named_spans_frame(frame, sizeof frame, "n", 1, 1, 0);
	send(fd, frame, n, MSG_NOSIGNAL);
	/* The exporter says why (a REFUSED frame, reason uid) and hangs up: EOF,
	 * or ECONNRESET if our frame was unread. */
	uint8_t msg[256];
	ssize_t r = recv(fd, msg, sizeof msg, 0);
	struct ts_frame_header h;
	if (r > 0) {
		if (!ts_frame_parse_header(msg, (size_t)r, &h) || h.type != TS_FRAME_REFUSED)
			return 6;
		r = recv(fd, msg, sizeof msg, 0);
	}
	return (r == 0 || (r < 0 && errno == ECONNRESET)) ? 0 : 4;
}

Test(process, other_uid_is_refused)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to connect as another uid");
	tp_init(&P, true);
	tp_start(&P, NULL);
	char dir[256];
	snprintf(dir, sizeof dir, "%s/run", P.dir);
	chmod(P.dir, 0755);
	chmod(dir, 0755);
	chmod(P.sock, 0666);
	pid_t pid = fork();
	if (pid == 0)
		_exit(connect_as_nobody(P.sock));
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", WEXITSTATUS(st));
	cr_assert(tp_wait_stat(P.sock, "connections_refused", 1, 5000));
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0);
	cr_assert_eq(tp_stat(text, "received_spans"), 0);
}
