/* transport.c — hands span records to the exporter without ever making the
 * application wait. Two modes (docs/ARCHITECTURE.md §7):
 *
 *   ring (default)  records go into a shared-memory ring (frame.h) the exporter
 *                   reads on its own: no thread, no system call per span; one
 *                   WAKE send when half the ring is unread (ring_commit).
 *   socket          records are batched into SPANS frames in process memory and a
 *                   sender thread ships them (TRACESHIM_TRANSPORT=socket, or when
 *                   no memfd can be made).
 *
 * Locks (never nested except send_mu -> conn_mu and ring_mu -> conn_mu):
 *   ring_mu  the shared ring or the frame slots: held for a memcpy by
 *            span-ending threads (and while attaching a ring).
 *   send_mu  who is flushing (sender thread, or the exit path): held across
 *            waits for a busy exporter, never by an application call.
 *   conn_mu  the connection fd: held around one non-blocking send/connect, and
 *            by the close() hook when the application closes our fd.
 * Application threads only ever take ring_mu. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim.h"

TS_REAL(pthread_create, int, (pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))
TS_REAL(close, int, (int))
TS_REAL(connect, int, (int, const struct sockaddr *, socklen_t))
TS_REAL(send, ssize_t, (int, const void *, size_t, int))
TS_REAL(sendmsg, ssize_t, (int, const struct msghdr *, int))

#define RING 8
#define SLICE_MS 50
#define SEND_PATIENCE_MS 1000 /* sender thread: how long one frame may wait for a busy exporter */
#define RECONNECT_MS 500
/* An idle sender thread exits: a multi-threaded process pays for it on every
 * fd lookup in the kernel (+35 ns per write to /dev/null, bench/calls.c). */
#define SENDER_IDLE_MS 1000

struct slot {
	uint32_t len;
	uint16_t count;
	uint8_t buf[TS_FRAME_MAX];
};

static struct slot slots[RING];
static unsigned head, tail; /* sealed: [head, tail); open: tail */
static uint64_t open_since;  /* CLOCK_MONOTONIC ns of the open slot's first record */
static pthread_mutex_t ring_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ring_cv;
static pthread_mutex_t send_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t conn_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int conn_fd = -1;
static uint64_t last_connect_try;
static _Atomic int sender_started;
static _Atomic uint32_t dropped_unreported;
/* Ring mode: the attached ring (ring.h NULL: none), under ring_mu. */
static struct ts_ring ring;
static bool socket_mode;       /* decided at the first connect, kept for the process's life */
static uint64_t ring_checked;  /* CLOCK_MONOTONIC_COARSE ns of the last liveness check */
static uint64_t ring_since;    /* CLOCK_MONOTONIC ns the ring was attached */
/* The ring is mapped but its reader is gone (the exporter exited, or it
 * refused us): spans still go into it, and the next connection takes over
 * what is unread (ts_ring_move) — an exporter restart loses nothing the ring
 * could hold. */
static bool ring_orphan;
/* The exporter's heartbeat: it stores reader_ns at every look at the ring,
 * every min(TRACESHIM_FLUSH_MS, 1000) ms. A span that finds it older than
 * this (a compare against the coarse clock, no system call) asks the socket
 * whether the exporter is still there — at most once per LIVENESS_EVERY_MS,
 * and a stopped exporter is not a dead one: only a hang-up detaches. */
static uint64_t reader_stale_ns;
#define LIVENESS_EVERY_MS 1000
/* After a refusal (TS_FRAME_REFUSED): no connect before this (mono ns). */
#define REFUSED_RETRY_MS 10000
static uint64_t refused_until;
/* Fork after a credential change (docs/ARCHITECTURE.md §7): the child's
 * connection, made by the exporter at the parent's request in the prepare
 * handler; in the child it is conn_fd, not yet introduced by a HELLO. */
static _Atomic bool creds_changed;
static int child_channel = -1;
static bool conn_needs_hello;
static uid_t conn_euid = (uid_t)-1; /* who we were when we connected */
#define CHANNEL_WAIT_MS 200
static _Atomic uint32_t refusals; /* times the exporter refused us (or its socket was not ours) */
static _Atomic bool refusal_logged;
_Atomic uint64_t ts_dropped_spans;
__thread int ts_sync_flush TS_TLS;

static uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void drop(unsigned spans)
{
	atomic_fetch_add(&ts_dropped_spans, spans);
	atomic_fetch_add(&dropped_unreported, spans);
}

static void ring_init(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&ring_cv, &a);
	pthread_condattr_destroy(&a);
	head = tail = 0;
	for (unsigned i = 0; i < RING; i++)
		slots[i].count = 0;
}

void ts_transport_init(void)
{
	ring_init();
	socket_mode = ts_cfg.socket_transport;
	uint64_t look_ms = ts_cfg.flush_ms < 5 ? 5 : ts_cfg.flush_ms > 1000 ? 1000 : ts_cfg.flush_ms;
	reader_stale_ns = (2 * look_ms + 250) * 1000000ull;
}

static uint64_t coarse_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &t); /* vDSO: no system call */
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* ---- the ring (caller holds ring_mu) ----------------------------------------------- */

static struct slot *open_slot(void) { return &slots[tail % RING]; }

static void slot_begin(struct slot *s)
{
	struct ts_wbuf w;
	ts_wbuf_init(&w, s->buf, sizeof s->buf);
	ts_frame_begin(&w, TS_FRAME_SPANS, 0);
	ts_put_u16(&w, 0); /* span count, patched when sealed */
	s->len = (uint32_t)w.len;
	s->count = 0;
}

/* Closes the open slot so it can be sent; false if the ring has no room for
 * a new open slot. */
static bool seal_open(void)
{
	struct slot *s = open_slot();
	if (!s->count)
		return true;
	if (tail + 1 - head >= RING)
		return false;
	uint32_t plen = s->len - TS_FRAME_HEADER_SIZE;
	memcpy(s->buf + 8, &plen, 4);
	memcpy(s->buf + TS_FRAME_HEADER_SIZE, &s->count, 2);
	tail++;
	open_slot()->count = 0;
	return true;
}

static void start_sender(void);

/* ---- the connection (caller holds conn_mu) ---------------------------------------- */

static void conn_close(void)
{
	conn_needs_hello = false;
	int fd = atomic_exchange(&conn_fd, -1);
	if (fd >= 0)
		real_close()(fd);
}

/* Away from the low fds applications assume are theirs, but below 64: an fd
 * past the initial 64-slot table makes the kernel grow it, and growing the
 * table of a multi-threaded process waits in synchronize_rcu() — measured
 * 30+ ms per process. (The close/dup2 hooks protect the fd wherever it is.) */
static int move_high(int fd)
{
	if (fd >= 48)
		return fd;
	int hi = fcntl(fd, F_DUPFD_CLOEXEC, 48);
	if (hi < 0)
		return fd;
	real_close()(fd);
	return hi;
}

/* The reader's tail when the last WAKE went out. A WAKE goes out when half
 * the ring is unread and the reader has moved since the last one: once per
 * fill when it reads everything, once more per partial read (it stopped at a
 * full queue, or a WAKE was lost) so a ring that stays above half is not left
 * to the timer, and never again for a reader that does not move. */
static uint64_t woke_at_tail = UINT64_MAX;

/* A sealed memfd holding a fresh ring, mapped into r; the fd to pass to the
 * exporter, or -1 if this system cannot make one. */
static int ring_create(struct ts_ring *r)
{
	size_t total = TS_RING_HDR_SIZE + (size_t)ts_cfg.ring_bytes;
	int fd = memfd_create("traceshim-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -1;
	void *m = MAP_FAILED;
	if (ftruncate(fd, (off_t)total) == 0 &&
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
		m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		real_close()(fd);
		return -1;
	}
	madvise(m, total, MADV_DONTFORK); /* a forked child makes its own */
	struct ts_ring_hdr *h = m;
	h->magic = TS_RING_MAGIC;
	h->version = TS_RING_VERSION;
	h->data_size = ts_cfg.ring_bytes;
	h->flush_ms = ts_cfg.flush_ms;
	*r = (struct ts_ring){.h = h, .data = (uint8_t *)m + TS_RING_HDR_SIZE, .size = ts_cfg.ring_bytes};
	woke_at_tail = UINT64_MAX;
	return fd;
}

static void ring_unmap(struct ts_ring *r)
{
	if (r->h) {
		/* Whoever reads this ring after the hang-up must not ship our
		 * process span as unended: we go on (reconnect, or we are ending). */
		ts_ring_set_process(r->h, NULL, 0);
		munmap(r->h, TS_RING_HDR_SIZE + (size_t)r->size);
	}
	r->h = NULL;
}

/* HELLO (the resource), with the ring's memfd attached when there is one. */
static bool send_hello(int fd, int ring_fd)
{
	static uint8_t hello[TS_FRAME_MAX / 2]; /* conn_mu held: no 16 KiB stack to fault in */
	struct ts_wbuf w;
	ts_wbuf_init(&w, hello, sizeof hello);
	ts_frame_begin(&w, TS_FRAME_HELLO, 0);
	w.len += ts_resource_hello(hello + w.len, sizeof hello - w.len);
	if (!ts_frame_finish(&w))
		return false;
	struct iovec iov = {.iov_base = hello, .iov_len = w.len};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	if (ring_fd >= 0) {
		m.msg_control = ctl.buf;
		m.msg_controllen = sizeof ctl.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &ring_fd, sizeof(int));
	}
	return real_sendmsg()(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)w.len;
}

/* The exporter refused us (frame.h TS_FRAME_REFUSED): one line, once per
 * process, if TRACESHIM_LOG allows; counted every time. */
static void refused(uint32_t reason)
{
	atomic_fetch_add(&refusals, 1);
	refused_until = mono_ns() + REFUSED_RETRY_MS * 1000000ull;
	if (atomic_exchange(&refusal_logged, true))
		return;
	const char *why = reason == TS_REFUSED_UID ? "this uid may not send spans to it (TRACESHIM_ALLOWED_UIDS)"
			  : reason == TS_REFUSED_LIMIT ? "it has TRACESHIM_MAX_CONNECTIONS connections open"
			  : reason == TS_REFUSED_RESOURCES ? "it is out of memory or file descriptors"
			  : reason == TS_REFUSED_SOCKET_MODE
			      ? "its socket belongs to another user (a private exporter; see TRACESHIM_ALLOWED_UIDS)"
			      : "unknown reason";
	ts_warn("the exporter at %s refused this process (uid %ld): %s; its spans are dropped", ts_cfg.socket_path,
		(long)geteuid(), why);
}

/* Reads what the exporter sent us (caller holds conn_mu): only ever a
 * REFUSED frame, just before it closes. */
static void conn_read_pending(int fd)
{
	for (int i = 0; i < 4; i++) {
		uint8_t f[64];
		ssize_t n = recv(fd, f, sizeof f, MSG_DONTWAIT);
		if (n < 0 && errno == ECONNRESET)
			continue; /* reported once, ahead of what is queued (server.c read_frame) */
		if (n <= 0)
			return;
		struct ts_frame_header h;
		uint32_t reason;
		if (ts_frame_parse_header(f, (size_t)n, &h) && h.type == TS_FRAME_REFUSED && h.length == 4 &&
		    (size_t)n == TS_FRAME_HEADER_SIZE + 4) {
			memcpy(&reason, f + TS_FRAME_HEADER_SIZE, 4);
			refused(reason);
		}
	}
}

static int conn_connect(void);

/* Connects and says HELLO. want_ring (caller holds ring_mu): also set up the
 * shared ring, or fall back to socket mode for good if it cannot be made. */
static bool conn_open(bool want_ring)
{
	int fd = atomic_load(&conn_fd);
	bool inherited = fd >= 0 && conn_needs_hello; /* a child channel (fork after a credential change) */
	if (fd >= 0 && !inherited)
		return true;
	if (!inherited && (fd = conn_connect()) < 0)
		return false;
	struct ts_ring r = {0};
	int ring_fd = -1;
	if (want_ring) {
		ring_fd = ring_create(&r);
		if (ring_fd < 0) {
			socket_mode = true;
			ts_warn("no shared ring (memfd: %s): using the socket transport", strerror(errno));
		}
	}
	unsigned moved = 0;
	if (r.h && ring_orphan && ring.h)
		moved = ts_ring_move(&r, &ring); /* before the HELLO: nobody reads r yet */
	bool ok = send_hello(fd, ring_fd);
	if (ring_fd >= 0)
		real_close()(ring_fd); /* the mappings keep the memory */
	conn_needs_hello = false;
	if (!ok) {
		conn_read_pending(fd); /* EPIPE: refused before our HELLO went out? */
		ring_unmap(&r);
		atomic_store(&conn_fd, -1);
		real_close()(fd);
		return false;
	}
	if (r.h) {
		if (ring_orphan && ring.h) {
			uint64_t unread = atomic_load(&ring.h->spans) - atomic_load(&ring.h->read_spans);
			if (unread > moved && unread - moved <= UINT32_MAX)
				drop((unsigned)(unread - moved));
			ring_unmap(&ring);
			ts_debug("new exporter connection: %u unread spans handed over", moved);
		}
		ring_orphan = false;
		r.h->dropped = atomic_exchange(&dropped_unreported, 0);
		ring = r;
		ring_checked = ring_since = mono_ns();
		ts_process_announce(ring.h);
	}
	last_connect_try = 0;
	atomic_store(&conn_fd, fd);
	ts_debug("connected to exporter at %s (fd %d, %s%s)", ts_cfg.socket_path, fd, r.h ? "ring" : "socket",
		 inherited ? ", a child channel" : "");
	return true;
}

/* A new connected socket (high, CLOEXEC, non-blocking), or -1: at most one
 * try per RECONNECT_MS, none while a refusal holds. */
static int conn_connect(void)
{
	uint64_t now = mono_ns();
	if (last_connect_try && now - last_connect_try < RECONNECT_MS * 1000000ull)
		return -1;
	if (now < refused_until)
		return -1;
	last_connect_try = now;
	if (!ts_cfg.socket_path[0])
		return -1;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, ts_cfg.socket_path, strlen(ts_cfg.socket_path) + 1);
	if (real_connect()(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		int e = errno;
		real_close()(fd);
		if (e == EACCES || e == EPERM)
			refused(TS_REFUSED_SOCKET_MODE); /* another user's private exporter */
		return -1;
	}
	conn_euid = geteuid();
	return move_high(fd);
}

/* ---- ring mode (caller holds ring_mu) ---------------------------------------------- */

/* Caller holds conn_mu. True when the exporter's end is closed (it exited,
 * or refused us), reading a REFUSED frame if one came first. */
static bool conn_hung_up(void)
{
	struct pollfd p = {.fd = atomic_load(&conn_fd), .events = POLLIN};
	if (p.fd < 0)
		return true;
	if (poll(&p, 1, 0) != 1)
		return false;
	if (p.revents & POLLIN)
		conn_read_pending(p.fd);
	return p.revents & (POLLHUP | POLLERR | POLLNVAL);
}

/* Caller holds ring_mu. Connects again, handing what is unread over. */
static void ring_reconnect(void)
{
	pthread_mutex_lock(&conn_mu);
	conn_open(true);
	pthread_mutex_unlock(&conn_mu);
}

/* The exporter is gone: keep the ring (orphaned) and connect again at once —
 * a restarted exporter gets what the old one had not read. */
static void ring_lost_connection(void)
{
	pthread_mutex_lock(&conn_mu);
	conn_close();
	last_connect_try = 0;
	pthread_mutex_unlock(&conn_mu);
	ring_orphan = true;
	ts_debug("exporter connection lost; connecting again");
	ring_reconnect();
}

/* WAKE: enough is unread (ring_commit), the exporter should not wait for its timer. */
static void ring_wake(void)
{
	uint8_t f[TS_FRAME_HEADER_SIZE];
	struct ts_wbuf w;
	ts_wbuf_init(&w, f, sizeof f);
	ts_frame_begin(&w, TS_FRAME_WAKE, 0);
	ts_frame_finish(&w);
	pthread_mutex_lock(&conn_mu);
	int fd = atomic_load(&conn_fd);
	bool gone = fd < 0 || (real_send()(fd, f, w.len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN &&
			       errno != EWOULDBLOCK && errno != ENOBUFS);
	if (gone && fd >= 0)
		conn_read_pending(fd); /* a refusal says why */
	pthread_mutex_unlock(&conn_mu);
	if (gone)
		ring_lost_connection();
}

/* The heartbeat (caller holds ring_mu, ring.h set): has the reader not
 * looked for reader_stale_ns? Loads and a compare, no system call. */
static inline bool reader_quiet(uint64_t now)
{
	uint64_t seen = atomic_load_explicit(&ring.h->reader_ns, memory_order_relaxed);
	if (seen < ring_since)
		seen = ring_since; /* not looked at yet: count from the attach */
	return now > seen && now - seen >= reader_stale_ns;
}

/* A quiet reader (or an orphaned ring), before a span goes in: is the
 * exporter still there? At most once per LIVENESS_EVERY_MS unless `now_too`
 * (the exit path). A hang-up orphans the ring and connects again, so the
 * span about to be written goes to the new exporter. */
static void ring_check_reader(uint64_t now, bool now_too)
{
	if (ring_orphan) {
		ring_reconnect(); /* rate-limited by RECONNECT_MS, and after a refusal */
		return;
	}
	if (!now_too && ring_checked && now - ring_checked < LIVENESS_EVERY_MS * 1000000ull)
		return;
	ring_checked = now;
	pthread_mutex_lock(&conn_mu);
	bool gone = conn_hung_up();
	pthread_mutex_unlock(&conn_mu);
	if (gone)
		ring_lost_connection();
}

/* On the exit/exec path only: a full ring gets up to TRACESHIM_EXIT_FLUSH_MS
 * for the exporter to make room. */
static uint8_t *ring_reserve_patiently(size_t len)
{
	uint64_t deadline = mono_ns() + (uint64_t)ts_cfg.exit_flush_ms * 1000000ull;
	uint8_t *dst;
	ring_wake();
	while (ring.h && !ring_orphan && mono_ns() < deadline) {
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
		if (ring.h && (dst = ts_ring_reserve(&ring, len)))
			return dst;
	}
	return NULL;
}

/* Between a reserve and its commit (under ring_mu), in socket mode: whether
 * the sender thread must be woken. */
static bool slot_wake;

static uint8_t *ring_reserve(size_t len)
{
	if (TS_UNLIKELY(atomic_load_explicit(&dropped_unreported, memory_order_relaxed)))
		atomic_fetch_add(&ring.h->dropped, atomic_exchange(&dropped_unreported, 0));
	uint8_t *dst = ts_ring_reserve(&ring, len);
	if (!dst && ts_sync_flush)
		dst = ring_reserve_patiently(len);
	return dst;
}

static void ring_commit(size_t len)
{
	uint64_t used = ts_ring_commit(&ring, len);
	if (!ring_orphan && used >= ring.size / 2 && ring.tail_seen != woke_at_tail) {
		woke_at_tail = ring.tail_seen;
		ring_wake();
	}
}

/* ---- submitting ------------------------------------------------------------------- */

/* Socket mode: room in the open frame slot, for the sender thread. */
static uint8_t *slot_reserve(size_t len)
{
	struct slot *s = open_slot();
	slot_wake = false;
	if (s->count && s->len + len > TS_FRAME_MAX) {
		if (!seal_open())
			return NULL;
		slot_wake = true;
		s = open_slot();
	}
	if (!s->count) {
		slot_begin(s);
		open_since = mono_ns();
		slot_wake = true;
	}
	return s->buf + s->len;
}

/* Releases ring_mu. */
static void slot_commit(size_t len)
{
	struct slot *s = open_slot();
	s->len += (uint32_t)len;
	s->count++;
	if (slot_wake)
		pthread_cond_signal(&ring_cv);
	pthread_mutex_unlock(&ring_mu);
	if (TS_UNLIKELY(!atomic_load_explicit(&sender_started, memory_order_relaxed)) && !ts_sync_flush)
		start_sender();
}

/* Ring mode without a ring yet: connect and make one (caller holds ring_mu).
 * May switch the process to socket mode for good (no memfd). */
static void ring_attach(void)
{
	pthread_mutex_lock(&conn_mu);
	conn_open(true);
	pthread_mutex_unlock(&conn_mu);
}

uint8_t *ts_transport_reserve(size_t len)
{
	if (TS_UNLIKELY(len > TS_SPAN_RECORD_MAX)) {
		/* The exporter would reject it. A span's fixed buffers bound a
		 * record to ~2.2 KiB, so this is a guard, counted like any drop. */
		drop(1);
		return NULL;
	}
	ts_in_shim++;
	int saved = errno; /* WAKE, a reconnect, a liveness poll: system calls */
	uint8_t *dst = NULL;
	pthread_mutex_lock(&ring_mu);
	if (!socket_mode && !ring.h)
		ring_attach();
	if (socket_mode) {
		dst = slot_reserve(len);
	} else if (ring.h) {
		uint64_t now = coarse_ns();
		if (TS_UNLIKELY(ring_orphan || reader_quiet(now)))
			ring_check_reader(now, false);
		dst = ring.h ? ring_reserve(len) : NULL;
	}
	if (!dst) {
		pthread_mutex_unlock(&ring_mu);
		drop(1); /* no room, or no exporter to take it */
	}
	errno = saved;
	if (!dst)
		ts_in_shim--;
	return dst;
}

void ts_transport_commit(size_t len)
{
	int saved = errno;
	if (socket_mode) {
		slot_commit(len);
	} else {
		ring_commit(len);
		pthread_mutex_unlock(&ring_mu);
	}
	errno = saved;
	ts_in_shim--;
}

enum send_result { SENT, BUSY, GONE };

static enum send_result send_once(struct slot *s)
{
	pthread_mutex_lock(&conn_mu);
	enum send_result r = GONE;
	for (int attempt = 0; attempt < 2 && r == GONE; attempt++) {
		if (!conn_open(false))
			break;
		uint32_t dropped = atomic_exchange(&dropped_unreported, 0);
		memcpy(s->buf + 12, &dropped, 4);
		ssize_t n = real_send()(atomic_load(&conn_fd), s->buf, s->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n == (ssize_t)s->len) {
			r = SENT;
			break;
		}
		atomic_fetch_add(&dropped_unreported, dropped);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
			r = BUSY;
			break;
		}
		/* EPIPE, ECONNRESET, EBADF...: the exporter restarted or our fd was
		 * taken from us; reconnect at once and try again (with a new HELLO). */
		conn_close();
		last_connect_try = 0;
	}
	pthread_mutex_unlock(&conn_mu);
	return r;
}

static void wait_writable(int ms)
{
	int fd = atomic_load(&conn_fd);
	if (fd < 0 || ms <= 0)
		return;
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	poll(&p, 1, ms);
}

/* Sends sealed slots in order until none is left or the deadline passes.
 * Caller holds send_mu. A slot that cannot be delivered by then is dropped. */
static void send_sealed(uint64_t deadline)
{
	for (;;) {
		pthread_mutex_lock(&ring_mu);
		if (head == tail) {
			pthread_mutex_unlock(&ring_mu);
			return;
		}
		struct slot *s = &slots[head % RING];
		pthread_mutex_unlock(&ring_mu);

		enum send_result r;
		while ((r = send_once(s)) == BUSY) {
			uint64_t now = mono_ns();
			if (now >= deadline)
				break;
			uint64_t left = (deadline - now) / 1000000;
			wait_writable(left < SLICE_MS ? (int)left + 1 : SLICE_MS);
		}
		if (r != SENT)
			drop(s->count);
		pthread_mutex_lock(&ring_mu);
		head++;
		pthread_mutex_unlock(&ring_mu);
	}
}

/* ---- the sender thread ------------------------------------------------------------ */

static void *sender_main(void *arg)
{
	(void)arg;
	ts_in_shim = 1; /* nothing this thread does is ever traced */
	uint64_t flush_ns = (uint64_t)ts_cfg.flush_ms * 1000000ull;
	for (;;) {
		pthread_mutex_lock(&ring_mu);
		for (;;) {
			if (head != tail)
				break;
			if (!open_slot()->count) {
				uint64_t idle_until = mono_ns() + SENDER_IDLE_MS * 1000000ull;
				struct timespec ts = {.tv_sec = (time_t)(idle_until / 1000000000ull),
						      .tv_nsec = (long)(idle_until % 1000000000ull)};
				if (pthread_cond_timedwait(&ring_cv, &ring_mu, &ts) == ETIMEDOUT && head == tail &&
				    !open_slot()->count) {
					/* Nothing for a second: leave; the next span starts a
					 * new sender (it checks after adding, under ring_mu). */
					atomic_store(&sender_started, 0);
					pthread_mutex_unlock(&ring_mu);
					return NULL;
				}
				continue;
			}
			uint64_t due = open_since + flush_ns, now = mono_ns();
			if (now >= due) {
				seal_open();
				break;
			}
			struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ull),
					      .tv_nsec = (long)(due % 1000000000ull)};
			pthread_cond_timedwait(&ring_cv, &ring_mu, &ts);
		}
		pthread_mutex_unlock(&ring_mu);
		pthread_mutex_lock(&send_mu);
		send_sealed(mono_ns() + SEND_PATIENCE_MS * 1000000ull);
		pthread_mutex_unlock(&send_mu);
	}
	return NULL;
}

static void start_sender(void)
{
	int expected = 0;
	if (!atomic_compare_exchange_strong(&sender_started, &expected, 1))
		return;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread must never take the app's signals */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_t t;
	if (real_pthread_create()(&t, &attr, sender_main, NULL) != 0)
		ts_warn("cannot start the sender thread; spans go out at exit only");
	else
		pthread_setname_np(t, "traceshim");
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- flushing from the application's exit paths ------------------------------------ */

/* Ring mode, at exit or exec: what was dropped late still gets reported;
 * spans in a ring whose reader may be gone get one more chance (one poll,
 * only when the heartbeat is stale); and a refusal the exporter sent before
 * we had a reason to look is read, so a short-lived refused process says so.
 * Caller holds ring_mu. */
static void ring_before_exit(void)
{
	if (!ring.h)
		return;
	uint64_t now = coarse_ns();
	if (ring_orphan || (ring.head != atomic_load(&ring.h->tail) && reader_quiet(now))) {
		last_connect_try = 0;
		ring_check_reader(now, true);
	} else if (!atomic_load_explicit(&ring.h->reader_ns, memory_order_relaxed) &&
		   pthread_mutex_lock(&conn_mu) == 0) {
		int fd = atomic_load(&conn_fd);
		if (fd >= 0)
			conn_read_pending(fd);
		pthread_mutex_unlock(&conn_mu);
	}
	if (ring.h && atomic_load(&dropped_unreported))
		atomic_fetch_add(&ring.h->dropped, atomic_exchange(&dropped_unreported, 0));
	if (TS_UNLIKELY(atomic_load_explicit(&refusals, memory_order_relaxed)))
		ts_debug("refused by the exporter %u times", atomic_load(&refusals));
}

void ts_transport_flush(uint32_t budget_ms)
{
	ts_in_shim++;
	int saved = errno;
	if (!socket_mode) {
		/* Nothing to send: the exporter reads the ring to its end when our
		 * connection closes (exit, exec), whatever the process does next. */
		pthread_mutex_lock(&ring_mu);
		ring_before_exit();
		pthread_mutex_unlock(&ring_mu);
		errno = saved;
		ts_in_shim--;
		return;
	}
	uint64_t deadline = mono_ns() + (uint64_t)budget_ms * 1000000ull;
	pthread_mutex_lock(&ring_mu);
	seal_open();
	pthread_mutex_unlock(&ring_mu);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)(budget_ms % 1000) * 1000000L;
	ts.tv_sec += (time_t)(budget_ms / 1000) + ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	if (pthread_mutex_timedlock(&send_mu, &ts) == 0) {
		last_connect_try = 0; /* at exit, always try once more */
		send_sealed(deadline);
		pthread_mutex_unlock(&send_mu);
	}
	errno = saved;
	ts_in_shim--;
}

void ts_transport_announce_process(const void *rec, size_t len)
{
	pthread_mutex_lock(&ring_mu);
	if (ring.h)
		ts_ring_set_process(ring.h, rec, len);
	pthread_mutex_unlock(&ring_mu);
}

/* ---- the application touching our fd --------------------------------------------- */

bool ts_transport_owns_fd(int fd) { return fd >= 0 && fd == atomic_load_explicit(&conn_fd, memory_order_relaxed); }

int ts_transport_conn_fd(void) { return atomic_load_explicit(&conn_fd, memory_order_relaxed); }

/* The application is about to close (or dup2 over) the fd number we use:
 * give it up, so we never write a frame into whatever the number means next. */
void ts_transport_fd_closed_by_app(int fd)
{
	pthread_mutex_lock(&ring_mu);
	pthread_mutex_lock(&conn_mu);
	if (atomic_load(&conn_fd) == fd) {
		atomic_store(&conn_fd, -1); /* the application's close() closes it */
		conn_needs_hello = false;
		ring_unmap(&ring);         /* the exporter reads it to the end on the hang-up */
		ring_orphan = false;
	}
	pthread_mutex_unlock(&conn_mu);
	pthread_mutex_unlock(&ring_mu);
}

/* ---- credentials ---------------------------------------------------------------- */

void ts_transport_keep_channel(void)
{
	ts_in_shim++;
	int saved = errno;
	pthread_mutex_lock(&ring_mu);
	pthread_mutex_lock(&conn_mu);
	if (atomic_load(&conn_fd) < 0 || conn_needs_hello) {
		last_connect_try = 0; /* the last chance with these credentials */
		conn_open(!socket_mode && (!ring.h || ring_orphan));
	}
	atomic_store_explicit(&creds_changed, true, memory_order_relaxed); /* from now on a fork asks the exporter for its child's channel */
	pthread_mutex_unlock(&conn_mu);
	pthread_mutex_unlock(&ring_mu);
	errno = saved;
	ts_in_shim--;
}

/* The exporter's answer to CHANNEL_REQ on fd (caller holds conn_mu): the
 * child's connection, or -1 after CHANNEL_WAIT_MS, a refusal or a hang-up. */
static int channel_request(int fd)
{
	uint8_t f[TS_FRAME_HEADER_SIZE];
	struct ts_wbuf w;
	ts_wbuf_init(&w, f, sizeof f);
	ts_frame_begin(&w, TS_FRAME_CHANNEL_REQ, 0);
	ts_frame_finish(&w);
	if (real_send()(fd, f, w.len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)w.len)
		return -1;
	uint64_t deadline = mono_ns() + CHANNEL_WAIT_MS * 1000000ull;
	for (;;) {
		uint64_t now = mono_ns();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1) <= 0 ||
		    !(p.revents & POLLIN))
			return -1;
		uint8_t in[64];
		struct iovec iov = {.iov_base = in, .iov_len = sizeof in};
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int))];
		} ctl;
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
		ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n <= 0)
			return -1;
		int got = -1;
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&got, CMSG_DATA(c), sizeof got);
		struct ts_frame_header h;
		bool parsed = ts_frame_parse_header(in, (size_t)n, &h);
		if (parsed && h.type == TS_FRAME_CHANNEL && got >= 0) {
			int fl = fcntl(got, F_GETFL);
			if (fl >= 0)
				fcntl(got, F_SETFL, fl | O_NONBLOCK);
			return move_high(got);
		}
		if (got >= 0)
			real_close()(got);
		if (parsed && h.type == TS_FRAME_REFUSED && h.length == 4) {
			uint32_t reason;
			memcpy(&reason, in + TS_FRAME_HEADER_SIZE, 4);
			refused(reason);
			return -1;
		}
	}
}

/* fork() in a process that changed its credentials: its child could not
 * connect (the exporter would see the new uid), so the parent asks the
 * exporter for a connection on the child's behalf, now, on the channel it
 * kept (one round trip, at most CHANNEL_WAIT_MS; only in such processes). */
void ts_transport_atfork_prepare(void)
{
	if (TS_LIKELY(!atomic_load_explicit(&creds_changed, memory_order_relaxed)) || ts_foreign_child())
		return;
	int saved = errno;
	uid_t now = geteuid();
	if (now == 0 || now == conn_euid) { /* the child can connect as well as we did */
		errno = saved;
		return;
	}
	if (conn_needs_hello) /* a child channel of our own not used yet: introduce ourselves first */
		ts_transport_keep_channel();
	pthread_mutex_lock(&conn_mu);
	int fd = atomic_load(&conn_fd);
	child_channel = fd >= 0 && !conn_needs_hello ? channel_request(fd) : -1;
	pthread_mutex_unlock(&conn_mu);
	errno = saved;
}

void ts_transport_atfork_parent(void)
{
	if (TS_UNLIKELY(child_channel >= 0)) {
		real_close()(child_channel);
		child_channel = -1;
	}
}

/* ---- fork ---------------------------------------------------------------------------- */


/* The child is single-threaded: the parent's sender is gone, its queued frames
 * are the parent's to send, and the connection and the ring belong to the
 * parent (the ring is not even mapped here: MADV_DONTFORK). */
void ts_transport_atfork_child(void)
{
	ring.h = NULL;
	ring_orphan = false;
	refused_until = 0;
	pthread_mutex_init(&ring_mu, NULL);
	pthread_mutex_init(&send_mu, NULL);
	pthread_mutex_init(&conn_mu, NULL);
	ring_init();
	int fd = atomic_exchange(&conn_fd, -1);
	if (fd >= 0)
		real_close()(fd);
	conn_needs_hello = child_channel >= 0;
	if (child_channel >= 0) /* the exporter made it for us: HELLO on it at the first span */
		atomic_store(&conn_fd, child_channel);
	child_channel = -1;
	last_connect_try = 0;
	atomic_store(&sender_started, 0);
	atomic_store(&dropped_unreported, 0);
}
