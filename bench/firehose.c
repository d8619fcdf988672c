/* firehose.c — a span firehose for the exporter, speaking the frame format
 * (shim/frame.h) directly: no preload, no HTTP, nothing but frames.
 *
 *   firehose SOCKET PROCS SECONDS [SPANS_PER_SECOND [ring|socket]]
 *
 * ring (the default, as the shim): each sender makes a 1 MiB shared ring like
 * the shim's, passes it on HELLO and appends records to it, sending WAKE as
 * the shim does (half the ring unread and the reader moved since the last
 * one). Without a rate cap a full ring makes the sender wait
 * for the exporter (what the exporter can take: its capacity); with a cap the
 * sender drops and counts like the shim (the exporter reports those in
 * dropped_client). socket: SPANS frames on the socket, as below.
 *
 * Forks PROCS senders; each connects to the exporter's SEQPACKET socket,
 * sends a HELLO (a realistic resource), then SPANS frames for SECONDS: each
 * frame as full as the shim fills one under load (TS_FRAME_MAX bytes), of
 * realistic HTTP SERVER spans (the 14 attributes the shim puts on an nginx
 * request span). Sends block, so without SPANS_PER_SECOND the senders go as
 * fast as the exporter reads; with it, the total rate is capped (paced per
 * frame). Every frame gets fresh span ids.
 *
 * Prints "sent_spans N sent_frames F seconds S span_bytes B" (B: bytes of one
 * encoded span record).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

static uint64_t now_ns(clockid_t clk)
{
	struct timespec t;
	clock_gettime(clk, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "firehose[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
	exit(1);
}

#define S(k, val) {.key = {k, sizeof k - 1}, .type = TS_ATTR_STR, .v.s = {val, sizeof val - 1}}
#define I(k, n) {.key = {k, sizeof k - 1}, .type = TS_ATTR_INT, .v.i = n}

static const struct ts_attr span_attrs[] = {
	S("http.request.method", "GET"),
	S("url.scheme", "http"),
	S("url.path", "/index.html"),
	S("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) traceshim-bench/1.0"),
	S("server.address", "127.0.0.1"),
	S("client.address", "127.0.0.1"),
	I("client.port", 54321),
	I("server.port", 8080),
	S("network.peer.address", "127.0.0.1"),
	I("network.peer.port", 54321),
	S("network.protocol.version", "1.1"),
	I("http.response.status_code", 200),
	I("thread.id", 4242),
	S("url.query", "id=REDACTED"),
};

static size_t build_hello(uint8_t *buf, size_t cap)
{
	static const char args[] = "\x05\0nginx\x02\0-c\x15\0/etc/nginx/nginx.conf";
	struct ts_attr res[] = {
		S("service.name", "bench-firehose"),
		I("process.pid", getpid()),
		I("process.parent_pid", getppid()),
		S("process.executable.name", "nginx"),
		S("process.executable.path", "/usr/sbin/nginx"),
		{.key = {"process.command_args", 20}, .type = TS_ATTR_STRARRAY, .v.s = {args, sizeof args - 1}},
		S("host.name", "bench-host"),
		S("telemetry.sdk.name", "traceshim"),
		S("telemetry.sdk.version", "0.1.0"),
	};
	struct ts_wbuf w;
	ts_wbuf_init(&w, buf, cap);
	ts_frame_begin(&w, TS_FRAME_HELLO, 0);
	ts_hello_encode(&w, (uint32_t)getpid(), (uint32_t)getppid(), now_ns(CLOCK_REALTIME), res,
			sizeof res / sizeof *res);
	if (!ts_frame_finish(&w)) {
		fprintf(stderr, "firehose: HELLO overflow\n");
		exit(1);
	}
	return w.len;
}

struct frame {
	uint8_t buf[TS_FRAME_MAX];
	size_t len;
	unsigned count;
	size_t rec_off[1024];
	size_t rec_len;
};

/* As many spans as fit, like the shim's sealed slots under load. */
static void build_spans(struct frame *f)
{
	uint8_t tid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	uint8_t sid[8] = {1}, pid_[8] = {2};
	struct ts_span_view v;
	memset(&v, 0, sizeof v);
	v.trace_id = tid;
	v.span_id = sid;
	v.parent_span_id = pid_;
	v.kind = TS_KIND_SERVER;
	v.flags = TS_SPAN_F_SAMPLED | TS_SPAN_F_PARENT_REMOTE;
	v.name = (struct ts_str){"GET", 3};
	v.n_attrs = sizeof span_attrs / sizeof *span_attrs;
	memcpy(v.attrs, span_attrs, sizeof span_attrs);
	struct ts_wbuf w;
	ts_wbuf_init(&w, f->buf, sizeof f->buf);
	ts_frame_begin(&w, TS_FRAME_SPANS, 0);
	ts_put_u16(&w, 0);
	f->count = 0;
	for (;;) {
		size_t before = w.len;
		v.start_ns = now_ns(CLOCK_REALTIME);
		v.end_ns = v.start_ns + 35000;
		ts_span_encode(&w, &v);
		if (w.overflow || f->count == 1024) {
			w.len = before;
			w.overflow = false;
			break;
		}
		f->rec_len = w.len - before;
		f->rec_off[f->count++] = before;
	}
	uint16_t c = (uint16_t)f->count;
	memcpy(f->buf + TS_FRAME_HEADER_SIZE, &c, 2);
	if (!ts_frame_finish(&w)) {
		fprintf(stderr, "firehose: SPANS overflow\n");
		exit(1);
	}
	f->len = w.len;
}

/* Fresh ids and times: trace id and span id carry a per-process counter. */
static void refresh(struct frame *f, uint64_t *ctr, uint32_t pid)
{
	uint64_t t = now_ns(CLOCK_REALTIME);
	for (unsigned i = 0; i < f->count; i++) {
		uint8_t *r = f->buf + f->rec_off[i];
		uint64_t id = ++*ctr, end = t + 35000;
		memcpy(r + 2, &pid, 4);      /* trace_id[0..3] */
		memcpy(r + 2 + 8, &id, 8);   /* trace_id[8..15] */
		memcpy(r + 18, &id, 8);      /* span_id */
		memcpy(r + 34, &t, 8);       /* start */
		memcpy(r + 42, &end, 8);     /* end */
	}
}

struct counters {
	unsigned long long spans, frames;
};

/* A ring as the shim makes it (shim/transport.c ring_create); returns the fd. */
static int ring_make(struct ts_ring *r, uint32_t size)
{
	int fd = memfd_create("firehose-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, TS_RING_HDR_SIZE + size) != 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
		die("memfd");
	void *m = mmap(NULL, TS_RING_HDR_SIZE + size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		die("mmap ring");
	struct ts_ring_hdr *h = m;
	h->magic = TS_RING_MAGIC;
	h->version = TS_RING_VERSION;
	h->data_size = size;
	h->flush_ms = 100;
	*r = (struct ts_ring){.h = h, .data = (uint8_t *)m + TS_RING_HDR_SIZE, .size = size};
	return fd;
}

static uint64_t woke_at_tail = UINT64_MAX; /* per sender process */

static void send_wake(int fd)
{
	uint8_t f[TS_FRAME_HEADER_SIZE];
	struct ts_wbuf w;
	ts_wbuf_init(&w, f, sizeof f);
	ts_frame_begin(&w, TS_FRAME_WAKE, 0);
	ts_frame_finish(&w);
	send(fd, f, w.len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void sender(const char *path, double seconds, double rate, bool use_ring, struct counters *out)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		die("connect");
	int sndbuf = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	static uint8_t hello[TS_FRAME_MAX];
	size_t hlen = build_hello(hello, sizeof hello);
	struct ts_ring ring = {0};
	struct iovec iov = {.iov_base = hello, .iov_len = hlen};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	if (use_ring) {
		int rfd = ring_make(&ring, 1u << 20);
		m.msg_control = ctl.buf;
		m.msg_controllen = sizeof ctl.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &rfd, sizeof rfd);
		if (sendmsg(fd, &m, MSG_NOSIGNAL) != (ssize_t)hlen)
			die("send HELLO");
		close(rfd);
	} else if (send(fd, hello, hlen, MSG_NOSIGNAL) != (ssize_t)hlen) {
		die("send HELLO");
	}
	static struct frame f;
	build_spans(&f);
	uint64_t ctr = 0, start = now_ns(CLOCK_MONOTONIC), end = start + (uint64_t)(seconds * 1e9);
	double ns_per_frame = rate > 0 ? 1e9 * f.count / rate : 0;
	for (unsigned long long k = 0;; k++) {
		uint64_t t = now_ns(CLOCK_MONOTONIC);
		if (t >= end)
			break;
		if (ns_per_frame > 0) {
			uint64_t due = start + (uint64_t)(ns_per_frame * (double)k);
			if (due > t) {
				uint64_t d = due - t;
				struct timespec w = {(time_t)(d / 1000000000ull), (long)(d % 1000000000ull)};
				nanosleep(&w, NULL);
			}
		}
		refresh(&f, &ctr, (uint32_t)getpid());
		if (use_ring) {
			/* the shim's rule (transport.c, ring_commit) */
			uint64_t wake_at = ring.size / 2;
			for (unsigned i = 0; i < f.count; i++) {
				uint64_t used;
				while (!ts_ring_put(&ring, f.buf + f.rec_off[i], f.rec_len, &used)) {
					if (rate > 0) { /* as the shim: drop and count */
						atomic_fetch_add(&ring.h->dropped, 1);
						goto next;
					}
					send_wake(fd);
					struct timespec w = {0, 50000};
					nanosleep(&w, NULL);
				}
				if (used >= wake_at && ring.tail_seen != woke_at_tail) {
					woke_at_tail = ring.tail_seen;
					send_wake(fd);
				}
			next:;
			}
			__atomic_fetch_add(&out->spans, f.count, __ATOMIC_RELAXED);
			__atomic_fetch_add(&out->frames, 1, __ATOMIC_RELAXED);
			continue;
		}
		ssize_t n = send(fd, f.buf, f.len, MSG_NOSIGNAL);
		if (n != (ssize_t)f.len) {
			if (n < 0 && errno == EINTR)
				continue;
			die("send SPANS");
		}
		__atomic_fetch_add(&out->spans, f.count, __ATOMIC_RELAXED);
		__atomic_fetch_add(&out->frames, 1, __ATOMIC_RELAXED);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: firehose SOCKET PROCS SECONDS [SPANS_PER_SECOND [ring|socket]]\n");
		return 2;
	}
	int procs = atoi(argv[2]);
	double seconds = atof(argv[3]), rate = argc > 4 ? atof(argv[4]) : 0;
	bool use_ring = !(argc > 5 && !strcmp(argv[5], "socket"));
	if (procs < 1 || seconds <= 0) {
		fprintf(stderr, "firehose: bad PROCS or SECONDS\n");
		return 2;
	}
	struct counters *c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED)
		die("mmap");
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < procs; i++) {
		pid_t p = fork();
		if (p < 0)
			die("fork");
		if (p == 0) {
			sender(argv[1], seconds, rate / procs, use_ring, c);
			_exit(0);
		}
	}
	int failed = 0, st;
	while (wait(&st) > 0)
		failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	double secs = (double)(now_ns(CLOCK_MONOTONIC) - t0) * 1e-9;
	static struct frame probe;
	build_spans(&probe);
	printf("sent_spans %llu sent_frames %llu seconds %.3f span_bytes %zu spans_per_frame %u\n", c->spans,
	       c->frames, secs, probe.rec_len, probe.count);
	return failed;
}
