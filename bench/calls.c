/* calls.c — the cost of calls the shim must NOT trace.
 *
 *   calls [-n ITER] [-i] [-t] [-s] [TEST...]    TEST: devnull | tcp | file (default: all)
 *
 * Prints one line per test: "<test> <ns per call>". Run it with and without
 * LD_PRELOAD=libtraceshim.so (bench/driver.py alternates the two) and compare.
 *
 * -i (interleaved, in ONE process): alternates blocks of calls made through
 * the symbol (the shim's hook when preloaded) with blocks made through libc's
 * own function (dlsym on the libc handle, bypassing any preload), and prints
 * "<test> <ns via symbol> <ns direct to libc>". Both are indirect calls, so
 * under LD_PRELOAD the difference is exactly the hook's cost, measured with
 * the same caches, frequency and neighbours -- far less noisy than comparing
 * two processes.
 *
 * -t starts one idle thread first: the process is multi-threaded from then on,
 * as a traced process was while the shim's sender thread ran (the socket
 * transport; the default ring transport starts no thread). The kernel gives
 * single-threaded processes a cheaper fd lookup (no reference count, no f_pos
 * lock), so this shows what a second thread costs by itself, without the shim.
 *
 * -s makes one traced event first (a loopback TCP connection, opened and
 * closed): under the shim that ends a span, which connects to the exporter and
 * sets up the ring (socket transport: starts the sender thread). Without -s
 * the tests run before the process has traced anything.
 *
 *   devnull  write(fd, buf, 64) to /dev/null: no fd-table entry, the common case
 *            of files, pipes and ttys.
 *   tcp      send(64 B) + recv(64 B) over a connected 127.0.0.1 TCP pair. Both
 *            ends HAVE fd-table entries (the shim saw connect and accept); the
 *            first bytes are binary, so both are sniffed as "not HTTP" before
 *            the timed loop starts. ns per call = loop time / (2 x iterations).
 *   file     read(fd, buf, 64) from a 1 MiB regular file (lseek back to 0 at EOF,
 *            once every 16384 reads).
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 64
#define FILE_BYTES (1 << 20)
#define BLOCK 4000 /* calls per interleaved block */

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*recv_fn)(int, void *, size_t, int);

/* The functions a test calls: through the symbols, or libc's own. */
struct fns {
	write_fn write;
	read_fn read;
	send_fn send;
	recv_fn recv;
};
static struct fns via_symbol, direct;

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	fprintf(stderr, "calls: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *libc_sym(void *h, const char *name)
{
	void *p = dlsym(h, name);
	if (!p) {
		fprintf(stderr, "calls: dlsym %s: %s\n", name, dlerror());
		exit(1);
	}
	return p;
}

static void init_fns(void)
{
	/* volatile: the compiler must call through the pointers, in both sets. */
	via_symbol = (struct fns){write, read, send, recv};
	void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (!h)
		die("dlopen libc.so.6");
	*(void **)&direct.write = libc_sym(h, "write");
	*(void **)&direct.read = libc_sym(h, "read");
	*(void **)&direct.send = libc_sym(h, "send");
	*(void **)&direct.recv = libc_sym(h, "recv");
}

/* ---- the tests: state set up once, then timed blocks of n calls ----------- */

struct test {
	const char *name;
	int fd, fd2;
	double calls_per_iter;
	void (*setup)(struct test *);
	void (*run)(struct test *, const struct fns *, long n);
};

static void devnull_setup(struct test *t)
{
	if ((t->fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
		die("open /dev/null");
}

static void devnull_run(struct test *t, const struct fns *f, long n)
{
	static const char buf[CHUNK];
	for (long i = 0; i < n; i++)
		if (f->write(t->fd, buf, sizeof buf) != sizeof buf)
			die("write");
}

static void full_recv(const struct fns *f, int fd, char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = f->recv(fd, buf + got, n - got, 0);
		if (r <= 0)
			die("recv");
		got += (size_t)r;
	}
}

static char tcp_buf[CHUNK];

static void tcp_run(struct test *t, const struct fns *f, long n)
{
	char in[CHUNK];
	for (long i = 0; i < n; i++) {
		if (f->send(t->fd, tcp_buf, sizeof tcp_buf, 0) != sizeof tcp_buf)
			die("send");
		full_recv(f, t->fd2, in, sizeof in);
	}
}

static void tcp_setup(struct test *t)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sa, &len))
		die("listen");
	t->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (t->fd < 0 || connect(t->fd, (struct sockaddr *)&sa, sizeof sa))
		die("connect");
	if ((t->fd2 = accept(l, NULL, NULL)) < 0)
		die("accept");
	close(l);
	int one = 1;
	setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	for (int i = 0; i < CHUNK; i++)
		tcp_buf[i] = (char)(i * 7 + 1); /* binary: \x01\x08... is no HTTP request line */
	/* The first exchange (through the hooks) decides "not HTTP" on both ends. */
	tcp_run(t, &via_symbol, 1);
}

static void file_setup(struct test *t)
{
	char path[] = "/tmp/traceshim-bench-XXXXXX";
	if ((t->fd = mkstemp(path)) < 0)
		die("mkstemp");
	unlink(path);
	static char block[FILE_BYTES];
	memset(block, 'x', sizeof block);
	if (write(t->fd, block, sizeof block) != (ssize_t)sizeof block)
		die("write file");
	lseek(t->fd, 0, SEEK_SET);
}

static void file_run(struct test *t, const struct fns *f, long n)
{
	char buf[CHUNK];
	for (long i = 0; i < n; i++)
		if (f->read(t->fd, buf, sizeof buf) == 0)
			lseek(t->fd, 0, SEEK_SET); /* once per 16384 reads */
}

static struct test tests[] = {
	/* tcp last: its connect is a traced event (see -s) */
	{"devnull", -1, -1, 1, devnull_setup, devnull_run},
	{"file", -1, -1, 1, file_setup, file_run},
	{"tcp", -1, -1, 2, tcp_setup, tcp_run},
};

static void *idle_thread(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static void one_connection(void)
{
	struct test t = {.fd = -1, .fd2 = -1};
	tcp_setup(&t);
	close(t.fd);
	close(t.fd2);
	struct timespec pause_ = {0, 20 * 1000000}; /* let a socket-mode sender thread start */
	nanosleep(&pause_, NULL);
}

static double timed(struct test *t, const struct fns *f, long n)
{
	double t0 = now_s();
	t->run(t, f, n);
	return now_s() - t0;
}

int main(int argc, char **argv)
{
	long iter = 1000000;
	int interleaved = 0, first = 1;
	init_fns();
	for (; first < argc && argv[first][0] == '-'; first++) {
		if (!strcmp(argv[first], "-n") && first + 1 < argc)
			iter = atol(argv[++first]);
		else if (!strcmp(argv[first], "-i"))
			interleaved = 1;
		else if (!strcmp(argv[first], "-s"))
			one_connection();
		else if (!strcmp(argv[first], "-t")) {
			pthread_t th;
			if (pthread_create(&th, NULL, idle_thread, NULL) != 0)
				die("pthread_create");
		}
		else
			iter = 0;
	}
	if (iter < BLOCK) {
		fprintf(stderr, "usage: calls [-n ITER (>= %d)] [-i] [-t] [-s] [devnull|tcp|file]...\n", BLOCK);
		return 2;
	}
	for (size_t k = 0; k < sizeof tests / sizeof *tests; k++) {
		struct test *t = &tests[k];
		int wanted = first == argc;
		for (int a = first; a < argc; a++)
			wanted |= !strcmp(argv[a], t->name);
		if (!wanted)
			continue;
		/* A loopback round trip costs ~10x a /dev/null write: fewer of them. */
		long n = t->calls_per_iter > 1 ? iter / 5 : iter;
		t->setup(t);
		timed(t, &via_symbol, n / 20); /* warm up */
		timed(t, &direct, n / 20);
		double per_call = 1e9 / t->calls_per_iter;
		if (!interleaved) {
			printf("%s %.2f\n", t->name, timed(t, &via_symbol, n) * per_call / (double)n);
		} else {
			double ts = 0, td = 0;
			for (long done = 0; done < n; done += BLOCK) {
				ts += timed(t, &via_symbol, BLOCK);
				td += timed(t, &direct, BLOCK);
			}
			long total = (n + BLOCK - 1) / BLOCK * BLOCK;
			printf("%s %.2f %.2f\n", t->name, ts * per_call / (double)total, td * per_call / (double)total);
		}
		fflush(stdout);
		if (t->fd >= 0)
			close(t->fd);
		if (t->fd2 >= 0)
			close(t->fd2);
	}
	return 0;
}
