/* test_otlp_http.c — the exporter against a real HTTP server
 * (otlp_receiver.py): what it POSTs, with which headers, decoded with the
 * project's .proto; how backend errors are counted; shutdown with a dead
 * backend. (Decoding against the official schema is the integration tests'
 * job.) */
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "pyrun.h"
#include "spanbuild.h"

static struct tproc P;
static pid_t receiver;
static char rdir[256];
static uint8_t frame[TS_FRAME_MAX];
static char text[1 << 16];

static void fini(void)
{
	if (receiver > 0) {
		kill(receiver, SIGKILL);
		waitpid(receiver, NULL, 0);
	}
	tp_cleanup(&P);
}

TestSuite(otlp, .fini = fini, .timeout = 60);

static int start_receiver(const char *status)
{
	snprintf(rdir, sizeof rdir, "%s/recv", P.dir);
	mkdir(rdir, 0700);
	char script[512], port_file[300];
	snprintf(script, sizeof script, "%s/otlp_receiver.py", getenv("TS_TESTS_DIR"));
	snprintf(port_file, sizeof port_file, "%s/port", rdir);
	receiver = fork();
	if (receiver == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(tb_python_path(), "python3", script, rdir, status, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++, tp_sleep_ms(20)) {
		char *port = tp_read_file(port_file, NULL);
		if (port) {
			int p = atoi(port);
			free(port);
			return p;
		}
	}
	cr_assert_fail("receiver did not start");
	return 0;
}

/* Saved requests, in order: req-000, req-001, ... (the .txt marks completion). */
static int requests(char bins[][300], int max)
{
	int n = 0;
	for (; n < max; n++) {
		char txt[300];
		snprintf(txt, sizeof txt, "%s/req-%03d.txt", rdir, n);
		if (access(txt, F_OK) < 0)
			break;
		snprintf(bins[n], 300, "%s/req-%03d.bin", rdir, n);
	}
	return n;
}

static int peer_port(int req)
{
	char meta[300];
	snprintf(meta, sizeof meta, "%s/req-%03d.txt", rdir, req);
	char *m = tp_read_file(meta, NULL);
	cr_assert_not_null(m);
	const char *p = strstr(m, "\npeer_port=");
	cr_assert_not_null(p, "%s", m);
	int port = atoi(p + 11);
	free(m);
	return port;
}

static void send_frame(int fd, size_t n)
{
	cr_assert_gt(n, 0);
	tp_send(fd, frame, n);
}

#define KEY(k) ((struct ts_str){k, sizeof k - 1})

static void send_two_spans(int fd)
{
	static struct tb_span s[2];
	static uint8_t lt[16], ls[8];
	send_frame(fd, tb_hello_frame(frame, sizeof frame, "svc-h", 777, 0));
	tb_span_init(&s[0], "GET", 1, 0);
	s[0].v.flags = TS_SPAN_F_SAMPLED | TS_SPAN_F_PARENT_REMOTE;
	s[0].v.status = TS_STATUS_ERROR;
	s[0].v.status_message = KEY("bad");
	s[0].v.attrs[s[0].v.n_attrs++] = (struct ts_attr){.key = KEY("d"), .type = TS_ATTR_DOUBLE, .v.d = 0.5};
	memset(lt, 0xaa, 16);
	memset(ls, 0xbb, 8);
	s[0].v.n_links = 1;
	s[0].v.links[0].trace_id = lt;
	s[0].v.links[0].span_id = ls;
	tb_span_init(&s[1], "root\xff", 2, 1);
	s[1].v.flags = 0;
	static uint8_t blob[64];
	const char *items[] = {"curl", "-v", NULL};
	s[1].v.n_attrs = 1;
	s[1].v.attrs[0] = tb_strarray(blob, sizeof blob, "argv", items);
	send_frame(fd, tb_spans_frame(frame, sizeof frame, s, 2, 0));
}

Test(otlp, spans_reach_the_backend_with_headers)
{
	tp_init(&P, true); /* TRACESHIM_FILE and an endpoint: both sinks */
	int port = start_receiver("200");
	char endpoint[128];
	snprintf(endpoint, sizeof endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%d/", port);
	const char *env[] = {endpoint, "OTEL_EXPORTER_OTLP_HEADERS=x-test=a%20b,authorization=Bearer%20t0k",
			     NULL};
	tp_start(&P, env);
	int fd = tp_connect(P.sock);
	send_two_spans(fd);
	cr_assert(tp_wait_stat(P.sock, "exported_spans", 2, 10000), "not exported");
	send_frame(fd, tb_named_spans_frame(frame, sizeof frame, "later", 1, 9, 0));
	cr_assert(tp_wait_stat(P.sock, "exported_spans", 3, 10000), "second batch not exported");
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0);
	cr_assert_eq(tp_stat(text, "export_errors"), 0, "%s", text);
	cr_assert_eq(tp_stop(&P, SIGTERM, NULL), 0);

	char bins[8][300];
	int n = requests(bins, 8);
	cr_assert_eq(n, 2, "one request per batch");
	cr_assert_eq(peer_port(0), peer_port(1), "the connection is kept alive between batches");
	char meta[300];
	snprintf(meta, sizeof meta, "%s/req-000.txt", rdir);
	char *m = tp_read_file(meta, NULL);
	cr_assert_not_null(strstr(m, "path=/v1/traces\n"), "no double slash: %s", m);
	cr_assert_not_null(strstr(m, "\ncontent-type: application/x-protobuf\n"), "%s", m);
	cr_assert_not_null(strstr(m, "\nx-test: a b\n"), "%s", m);
	cr_assert_not_null(strstr(m, "\nauthorization: Bearer t0k\n"), "%s", m);
	free(m);

	const char *args[10] = {getenv("TS_PROTO_DIR")};
	for (int i = 0; i < n && i < 8; i++)
		args[i + 1] = bins[i];
	cr_assert_eq(tp_script("otlp_decode.py", args, text, sizeof text), 0, "%s", text);
	const char *spans = strchr(text, '\n') + 1;
	cr_assert_str_eq(spans,
			 "span GET service=svc-h pid=777 kind=3 flags=0x301 parent=3333333333333333 "
			 "status=2:bad attrs=http.request.method=string_value:'GET';server.port=int_value:8080;"
			 "tb.ok=bool_value:True;d=double_value:0.5 links=1\n"
			 "span later0 service=svc-h pid=777 kind=3 flags=0x101 parent=3333333333333333 "
			 "status=0: attrs=http.request.method=string_value:'GET';server.port=int_value:8080;"
			 "tb.ok=bool_value:True links=0\n"
			 "span root\xef\xbf\xbd service=svc-h pid=777 kind=3 flags=0x100 parent=- status=0: "
			 "attrs=argv=array:[string_value:'curl',string_value:'-v'] links=0\n");
	int lines;
	const char *sargs[] = {P.file, NULL};
	cr_assert_eq(tp_script("jsonl_summary.py", sargs, text, sizeof text), 0, "%s", text);
	cr_assert_eq(sscanf(text, "lines=%d", &lines), 1);
	cr_assert_not_null(strstr(text, "span GET svc-h"), "the file sink got them too: %s", text);
	close(fd);
}

/* Spool files of a stopped exporter (names: SEQ-NSPANS-CRC.pb): how many,
 * and the spans they say they hold. */
static int spool_files(const char *dir, int *spans)
{
	DIR *d = opendir(dir);
	int n = 0;
	*spans = 0;
	if (!d)
		return 0;
	for (struct dirent *de; (de = readdir(d));) {
		unsigned long long seq;
		int k;
		if (de->d_name[0] != '.' && sscanf(de->d_name, "%20llu-%d-", &seq, &k) == 2) {
			n++;
			*spans += k;
		}
	}
	closedir(d);
	return n;
}

Test(otlp, retryable_errors_are_retried_then_spooled_and_file_is_off_by_default)
{
	tp_init(&P, false); /* endpoint only: no file sink */
	int port = start_receiver("503"); /* with Retry-After: 3 */
	char endpoint[128];
	snprintf(endpoint, sizeof endpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:%d/custom", port);
	const char *env[] = {endpoint, NULL};
	tp_start(&P, env);
	int fd = tp_connect(P.sock);
	send_two_spans(fd);
	cr_assert(tp_wait_stat(P.sock, "export_errors", 1, 10000), "no export error counted");
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0);
	cr_assert_eq(tp_stat(text, "exported_spans"), 0);
	cr_assert_eq(tp_stat(text, "dropped_export_failed"), 0, "a 503 is retried, not dropped: %s", text);
	cr_assert_eq(tp_stat(text, "dropped_rejected"), 0, "%s", text);
	cr_assert_eq(tp_stat(text, "outbox_spans"), 2, "waiting in memory for the retry: %s", text);
	cr_assert_not_null(strstr(text, "\nfile=none\n"), "%s", text);
	cr_assert_not_null(strstr(text, "/custom\n"), "TRACES_ENDPOINT is used as is: %s", text);
	cr_assert_not_null(strstr(text, "\nlast_error=otlp: HTTP 503 from http://127.0.0.1:"), "%s", text);
	cr_assert_null(strstr(text, "\nlast_error_at=\n"), "the error has a time: %s", text);
	long ms;
	cr_assert_eq(tp_stop(&P, SIGTERM, &ms), 0);
	cr_assert_lt(ms, 3000, "a failing backend does not hold up the exit: %ld ms", ms);
	char meta[300];
	snprintf(meta, sizeof meta, "%s/req-000.txt", rdir);
	char *m = tp_read_file(meta, NULL);
	cr_assert_not_null(m);
	cr_assert_not_null(strstr(m, "path=/custom\n"), "%s", m);
	free(m);
	char deflt[300];
	snprintf(deflt, sizeof deflt, "%s/.local/state/traceshim/traces.jsonl", P.dir);
	cr_assert_eq(access(deflt, F_OK), -1, "file sink must be off when only an endpoint is set");
	char spool[300];
	int spans;
	snprintf(spool, sizeof spool, "%s/.local/state/traceshim/spool", P.dir);
	cr_assert_eq(spool_files(spool, &spans), 1, "the batch is spooled at exit");
	cr_assert_eq(spans, 2);
	struct stat st;
	cr_assert_eq(stat(spool, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700, "spool mode %o", st.st_mode & 0777);
	close(fd);
}

Test(otlp, a_400_is_final_and_counted)
{
	tp_init(&P, false);
	int port = start_receiver("400");
	char endpoint[128];
	snprintf(endpoint, sizeof endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%d", port);
	const char *env[] = {endpoint, NULL};
	tp_start(&P, env);
	int fd = tp_connect(P.sock);
	send_two_spans(fd);
	cr_assert(tp_wait_stat(P.sock, "dropped_rejected", 2, 10000), "400 not counted as rejected");
	tp_sleep_ms(1500);
	cr_assert_eq(tp_status(P.sock, text, sizeof text), 0);
	cr_assert_eq(tp_stat(text, "export_attempts"), 1, "never sent again: %s", text);
	cr_assert_eq(tp_stat(text, "export_errors"), 1, "%s", text);
	cr_assert_eq(tp_stat(text, "outbox_spans"), 0, "%s", text);
	cr_assert_eq(tp_stop(&P, SIGTERM, NULL), 0);
	char bins[4][300];
	cr_assert_eq(requests(bins, 4), 1);
	int spans;
	char spool[300];
	snprintf(spool, sizeof spool, "%s/.local/state/traceshim/spool", P.dir);
	cr_assert_eq(spool_files(spool, &spans), 0, "a rejected batch is not spooled");
	char *log = tp_read_file(P.log, NULL);
	cr_assert_not_null(strstr(log, "HTTP 400"), "%s", log);
	free(log);
	close(fd);
}

static int closed_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	bind(s, (struct sockaddr *)&a, sizeof a);
	getsockname(s, (struct sockaddr *)&a, &len);
	close(s); /* nothing listens there now: connections are refused */
	return ntohs(a.sin_port);
}

Test(otlp, dead_backend_does_not_block_shutdown)
{
	tp_init(&P, true);
	char endpoint[128];
	snprintf(endpoint, sizeof endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%d", closed_port());
	const char *env[] = {endpoint, "OTEL_BSP_SCHEDULE_DELAY=600000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2",
			     NULL};
	tp_start(&P, env);
	int fd = tp_connect(P.sock);
	send_frame(fd, tb_hello_frame(frame, sizeof frame, "dead", 1, 0));
	send_frame(fd, tb_named_spans_frame(frame, sizeof frame, "z", 9, 1, 0));
	cr_assert(tp_wait_stat(P.sock, "received_spans", 9, 5000));
	long ms;
	cr_assert_eq(tp_stop(&P, SIGTERM, &ms), 0);
	cr_assert_lt(ms, 5000, "shutdown took %ld ms", ms);
	char *log = tp_read_file(P.log, NULL);
	cr_assert_not_null(strstr(log, "otlp: POST http://127.0.0.1:"), "%s", log);
	cr_assert_not_null(strstr(log, "retryable"), "%s", log);
	free(log);
	char spool[300];
	int spans;
	snprintf(spool, sizeof spool, "%s/.local/state/traceshim/spool", P.dir);
	spool_files(spool, &spans);
	cr_assert_eq(spans, 9, "what the dead backend did not take is spooled");
	int lines;
	const char *sargs[] = {P.file, NULL};
	cr_assert_eq(tp_script("jsonl_summary.py", sargs, text, sizeof text), 0, "%s", text);
	cr_assert_eq(sscanf(text, "lines=%d", &lines), 1);
	int n = 0;
	for (const char *p = text; (p = strstr(p, "\nspan ")); p++)
		n++;
	cr_assert_eq(n, 9, "the file sink still gets every span: %s", text);
	close(fd);
}
