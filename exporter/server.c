/* server.c — see server.h. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "otlp_http.h" /* exp_mono_ms */
#include "record.h"
#include "stats.h"

#define FRAMES_PER_WAKEUP 64 /* then let other connections have a turn */
#define DRAIN_MAX_FRAMES 4096 /* per connection at shutdown: a bound, not a target */
#define ACCEPT_PAUSE_MS 100  /* out of file descriptors: retry accepting after this */
#define RING_TAKES_PER_LOOK 64 /* 32 KiB each: then let other connections have a turn */
#define RING_POLL_MIN_MS 5

static uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void ring_read(struct exp_server *s, struct exp_conn *c, bool to_the_end);

/* ---- connections -------------------------------------------------------- */

static void ring_detach(struct exp_server *s, struct exp_conn *c)
{
	munmap(c->ring, TS_RING_HDR_SIZE + (size_t)c->ring_size);
	c->ring = NULL;
	s->n_rings--;
	STAT_SET(ring_connections, s->n_rings);
}

/* The process hung up (exited, exec'd, or closed our socket): whatever it
 * committed to its ring is read out first — now, or on later ticks while the
 * queue is full. */
static void conn_close(struct exp_server *s, struct exp_conn *c)
{
	if (c->paused) {
		c->paused = false;
		s->n_paused--;
	}
	if (c->fd >= 0) {
		close(c->fd); /* also removes it from the epoll set */
		c->fd = -1;
	}
	if (c->ring) {
		if (!c->closing) /* nothing written after the hang-up is read */
			c->ring_end = atomic_load_explicit(&c->ring->head, memory_order_acquire);
		c->closing = true;
		ring_read(s, c, s->stopping);
		if (c->ring_tail != c->ring_end && !s->stopping)
			return; /* the next ticks read on */
		ring_detach(s, c);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	exp_resource_unref(c->res);
	s->n_conns--;
	free(c);
}

/* Same uid as the exporter, root (which could read our memory anyway), or a
 * uid in TRACESHIM_ALLOWED_UIDS: spans can carry URLs and headers of other
 * users' programs, so another uid's process must not inject or read. */
static bool peer_allowed(const struct exp_server *s, int fd, pid_t *pid, uid_t *uid)
{
	struct ucred cr;
	socklen_t len = sizeof cr;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	*pid = cr.pid;
	*uid = cr.uid;
	if (cr.uid == geteuid() || cr.uid == 0)
		return true;
	for (size_t i = 0; i < s->cfg->n_allowed_uids; i++)
		if (s->cfg->allowed_uids[i] == cr.uid)
			return true;
	return false;
}

/* Tells the process why before closing (frame.h TS_FRAME_REFUSED), so it can
 * say so itself: it has sent its HELLO already and would otherwise learn only
 * of a hang-up. Counted by reason. Best effort: a send that would block is
 * skipped (the socket is new and empty, so it does not). */
static void say_refused(int fd, enum ts_refusal why)
{
	uint8_t f[TS_FRAME_HEADER_SIZE + 4];
	struct ts_wbuf w;
	ts_wbuf_init(&w, f, sizeof f);
	ts_frame_begin(&w, TS_FRAME_REFUSED, 0);
	ts_put_u32(&w, (uint32_t)why);
	if (ts_frame_finish(&w) && send(fd, f, w.len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("refusal frame: %s", strerror(errno));
	STAT_ADD(connections_refused, 1);
	if (why == TS_REFUSED_UID)
		STAT_ADD(connections_refused_uid, 1);
	else if (why == TS_REFUSED_LIMIT)
		STAT_ADD(connections_refused_limit, 1);
	else
		STAT_ADD(connections_refused_resources, 1);
}

static void refuse(int fd, enum ts_refusal why)
{
	say_refused(fd, why);
	close(fd);
}

/* Serves fd as a new connection; false (fd left open) if it cannot. */
static bool conn_add(struct exp_server *s, int fd, pid_t pid)
{
	struct exp_conn *c = calloc(1, sizeof *c);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	if (!c || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_error("cannot take a new connection: %s", c ? strerror(errno) : "out of memory");
		free(c);
		return false;
	}
	*c = (struct exp_conn){.kind = EXP_EP_CONN, .fd = fd, .pid = pid, .next = s->conns};
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	STAT_ADD(connections_total, 1);
	return true;
}

static void admit(struct exp_server *s, int fd)
{
	pid_t pid = 0;
	uid_t uid = (uid_t)-1;
	if (!peer_allowed(s, fd, &pid, &uid)) {
		/* Worth a warning (someone loosened the socket's mode, or probes it),
		 * but at most one per 10 s: a loop of connects must not flood the log. */
		static time_t last_warned;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!last_warned || now.tv_sec - last_warned >= 10) {
			last_warned = now.tv_sec ? now.tv_sec : 1;
			log_warn("refused a connection from pid %ld: uid %ld is not allowed "
				 "(TRACESHIM_ALLOWED_UIDS)", (long)pid, (long)uid);
		} else {
			log_debug("refused a connection from pid %ld: uid %ld", (long)pid, (long)uid);
		}
		refuse(fd, TS_REFUSED_UID);
		return;
	}
	if (s->n_conns >= s->cfg->max_connections) { /* each costs memory: bounded */
		log_warn("refused a connection from pid %ld: %zu connections open (TRACESHIM_MAX_CONNECTIONS)",
			 (long)pid, s->n_conns);
		refuse(fd, TS_REFUSED_LIMIT);
		return;
	}
	if (!conn_add(s, fd, pid)) {
		refuse(fd, TS_REFUSED_RESOURCES);
		return;
	}
	log_debug("connection from pid %ld (%zu open)", (long)pid, s->n_conns);
}

/* CHANNEL_REQ: a process that changed its credentials is about to fork; its
 * child cannot connect itself (SO_PEERCRED would show the new uid), so the
 * entitlement of this connection is handed on: one end of a socketpair is
 * served as a new connection (its own HELLO, ring, resource and hang-up: one
 * process per connection still), the other goes back to the requester, who
 * can only give it to whom it could have given its own connection anyway —
 * no widening (docs/ARCHITECTURE.md §5). Bounded by TRACESHIM_MAX_CONNECTIONS. */
static void on_channel_req(struct exp_server *s, struct exp_conn *c)
{
	int sv[2];
	if (s->n_conns >= s->cfg->max_connections) {
		log_warn("refused a child connection for pid %ld: %zu connections open (TRACESHIM_MAX_CONNECTIONS)",
			 (long)c->pid, s->n_conns);
		say_refused(c->fd, TS_REFUSED_LIMIT);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		log_warn("cannot make a child connection for pid %ld: %s", (long)c->pid, strerror(errno));
		say_refused(c->fd, TS_REFUSED_RESOURCES);
		return;
	}
	if (!conn_add(s, sv[0], 0)) {
		close(sv[0]);
		close(sv[1]);
		say_refused(c->fd, TS_REFUSED_RESOURCES);
		return;
	}
	uint8_t f[TS_FRAME_HEADER_SIZE];
	struct ts_wbuf w;
	ts_wbuf_init(&w, f, sizeof f);
	ts_frame_begin(&w, TS_FRAME_CHANNEL, 0);
	ts_frame_finish(&w);
	struct iovec iov = {.iov_base = f, .iov_len = w.len};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &sv[1], sizeof(int));
	/* If this fails the new connection hangs up at once and is freed. */
	if (sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("child connection for pid %ld: %s", (long)c->pid, strerror(errno));
	else
		STAT_ADD(child_channels, 1);
	close(sv[1]);
	log_debug("child connection for pid %ld (%zu open)", (long)c->pid, s->n_conns);
}

static void pause_accepting(struct exp_server *s)
{
	struct epoll_event ev = {.events = 0, .data.ptr = &s->listener_tag};
	epoll_ctl(s->epfd, EPOLL_CTL_MOD, s->listener->fd, &ev);
	clock_gettime(CLOCK_MONOTONIC, &s->resume_at);
	s->resume_at.tv_nsec += ACCEPT_PAUSE_MS * 1000000L;
	if (s->resume_at.tv_nsec >= 1000000000L) {
		s->resume_at.tv_sec++;
		s->resume_at.tv_nsec -= 1000000000L;
	}
	s->accept_paused = true;
	log_warn("out of file descriptors with %zu connections: pausing accept", s->n_conns);
}

/* Returns after `max` connections, or when none is pending. */
static void accept_pending(struct exp_server *s, int max)
{
	for (int i = 0; i < max; i++) {
		int fd = accept4(s->listener->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			admit(s, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		/* A level-triggered listener would spin on EMFILE: back off instead;
		 * waiting clients stay in the backlog. */
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			pause_accepting(s);
		return;
	}
}

static void maybe_resume_accepting(struct exp_server *s)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!s->accept_paused || now.tv_sec < s->resume_at.tv_sec ||
	    (now.tv_sec == s->resume_at.tv_sec && now.tv_nsec < s->resume_at.tv_nsec))
		return;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->listener_tag};
	epoll_ctl(s->epfd, EPOLL_CTL_MOD, s->listener->fd, &ev);
	s->accept_paused = false;
}

static int epoll_timeout(const struct exp_server *s)
{
	int ms = s->accept_paused ? ACCEPT_PAUSE_MS : -1;
	if ((s->n_paused || s->rings_behind) && (ms < 0 || ms > RING_POLL_MIN_MS))
		ms = RING_POLL_MIN_MS; /* look for room in the queue again soon */
	if (s->n_rings) {
		uint64_t now = mono_ns();
		int r = now >= s->next_ring_poll ? 0 : (int)((s->next_ring_poll - now + 999999) / 1000000);
		if (ms < 0 || r < ms)
			ms = r;
	}
	return ms;
}

/* ---- shared rings ------------------------------------------------------- */

/* Takes the process's memfd (HELLO's SCM_RIGHTS) if it is what the shim makes:
 * sealed against shrinking (or a hostile process could SIGBUS us by cutting
 * the file under the mapping), of a sane size, with a matching header. */
static bool ring_attach(struct exp_server *s, struct exp_conn *c, int fd)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK) || fstat(fd, &st) < 0 ||
	    st.st_size < (off_t)(TS_RING_HDR_SIZE + TS_RING_MIN) || st.st_size > (off_t)(TS_RING_HDR_SIZE + TS_RING_MAX))
		return false;
	uint32_t size = (uint32_t)(st.st_size - TS_RING_HDR_SIZE);
	if (size & (size - 1))
		return false;
	struct ts_ring_hdr *h = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED)
		return false;
	if (h->magic != TS_RING_MAGIC || h->version != TS_RING_VERSION || h->data_size != size) {
		munmap(h, (size_t)st.st_size);
		return false;
	}
	c->ring = h;
	c->ring_data = (const uint8_t *)h + TS_RING_HDR_SIZE;
	c->ring_size = size;
	c->ring_tail = c->ring_read = c->ring_dropped = 0;
	uint32_t ms = h->flush_ms < RING_POLL_MIN_MS ? RING_POLL_MIN_MS : h->flush_ms > 1000 ? 1000 : h->flush_ms;
	if (!s->n_rings || ms < s->ring_poll_ms) {
		s->ring_poll_ms = ms;
		s->next_ring_poll = mono_ns() + (uint64_t)ms * 1000000ull;
	}
	s->n_rings++;
	STAT_SET(ring_connections, s->n_rings);
	return true;
}

/* Backpressure: while the queue is (nearly) full, records stay in the rings —
 * the processes drop (and count) only when theirs fill up. */
static bool queue_has_room(struct exp_server *s)
{
	/* room for a full frame of small records, or for half of a tiny queue */
	size_t max = s->queue->max_spans, margin = max / 2 < 512 ? max / 2 : 512;
	return exp_queue_depth(s->queue) + margin < max;
}

static bool on_spans(struct exp_server *s, struct exp_conn *c, const uint8_t *p, size_t len);
static void malformed(struct exp_server *s, struct exp_conn *c, const char *why);

/* Reads what the process committed, through the same validation as SPANS
 * frames. to_the_end: regardless of the queue (shutdown). */
static void ring_read(struct exp_server *s, struct exp_conn *c, bool to_the_end)
{
	struct ts_ring_hdr *h = c->ring;
	atomic_store_explicit(&h->reader_ns, mono_ns(), memory_order_relaxed);
	uint64_t d = atomic_load_explicit(&h->dropped, memory_order_relaxed);
	if (d > c->ring_dropped && d - c->ring_dropped <= UINT32_MAX)
		STAT_ADD(dropped_client, d - c->ring_dropped);
	c->ring_dropped = d;
	uint64_t head = c->closing ? c->ring_end : atomic_load_explicit(&h->head, memory_order_acquire);
	for (int i = 0; c->ring_tail != head && (to_the_end || i < RING_TAKES_PER_LOOK); i++) {
		if (!to_the_end && !queue_has_room(s)) {
			s->rings_behind = true;
			break;
		}
		uint16_t count;
		bool bad;
		size_t n = ts_ring_take(c->ring_data, c->ring_size, &c->ring_tail, head, s->in, sizeof s->in, &count, &bad);
		if (n && !on_spans(s, c, s->in, n))
			malformed(s, c, "bad span record in the ring");
		if (bad) {
			malformed(s, c, "ring contents out of order");
			c->ring_tail = head;
		}
		c->ring_read += count;
		atomic_store_explicit(&h->read_spans, c->ring_read, memory_order_relaxed);
		atomic_store_explicit(&h->tail, c->ring_tail, memory_order_release);
		if (!n && !bad)
			break;
	}
}

/* Every ring_poll_ms: the partly filled rings of quiet processes, and the
 * rings of processes that hung up while the queue was full. At once, too,
 * once the queue has room again after a ring read stopped at it full: the
 * writer sends a WAKE only with a span, and only one per move of ours, so
 * the rest of the ring could wait for the timer (100 ms; a busy nginx fills
 * 512 KiB in ~13 ms). */
static void poll_rings(struct exp_server *s)
{
	if (!s->n_rings)
		return;
	if (s->rings_behind && queue_has_room(s)) {
		s->rings_behind = false;
		s->next_ring_poll = 0;
	}
	uint64_t now = mono_ns();
	if (now < s->next_ring_poll)
		return;
	s->next_ring_poll = now + (uint64_t)s->ring_poll_ms * 1000000ull;
	for (struct exp_conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		if (!c->ring)
			continue;
		if (c->closing)
			conn_close(s, c); /* reads on; frees it once read out */
		else
			ring_read(s, c, false);
	}
}

/* ---- frames ------------------------------------------------------------- */

static void malformed(struct exp_server *s, struct exp_conn *c, const char *why)
{
	(void)s;
	STAT_ADD(dropped_malformed_frames, 1);
	if (!c->warned)
		log_info("pid %ld sent a malformed frame (%s); dropped, further ones logged at debug",
			 (long)c->pid, why);
	else
		log_debug("pid %ld: malformed frame (%s)", (long)c->pid, why);
	c->warned = true;
}

static bool on_hello(struct exp_server *s, struct exp_conn *c, const uint8_t *p, size_t len, int ring_fd)
{
	if (ring_fd >= 0 && !c->ring && !ring_attach(s, c, ring_fd))
		log_info("pid %ld passed a ring that is not one (size, seals or header); "
			 "only its SPANS frames are read", (long)c->pid);
	bool oom;
	struct exp_resource *r = exp_resource_from_hello(p, len, &oom);
	if (!r) {
		if (oom) { /* not the client's fault: keep its previous resource */
			STAT_ADD(refused_hellos, 1);
			if (!c->warned)
				log_warn("no memory (or over the %zu-byte budget) for the resource of pid %ld: "
					 "its spans keep the previous one", (size_t)EXP_RESOURCE_BUDGET_BYTES,
					 (long)c->pid);
			c->warned = true;
		}
		return oom;
	}
	exp_resource_unref(c->res); /* a second HELLO replaces the resource */
	c->res = r;
	if (!c->pid && len >= 4) { /* a child connection (CHANNEL_REQ): no SO_PEERCRED pid, for the logs */
		uint32_t pid;
		memcpy(&pid, p, 4);
		c->pid = (pid_t)pid;
	}
	return true;
}

/* Every record must decode, and nothing may follow the last one: a SPANS
 * frame is accepted whole or not at all. */
static bool spans_valid(const uint8_t *p, size_t len, uint16_t *count)
{
	struct ts_rbuf r;
	ts_rbuf_init(&r, p, len);
	*count = ts_get_u16(&r);
	for (uint16_t i = 0; !r.bad && i < *count; i++)
		ts_span_decode(&r, NULL); /* validation only: the records are copied whole */
	return !r.bad && r.off == len;
}

/* With metrics off, metrics-only records are still not spans. */
static size_t metrics_only_count(const uint8_t *recs, uint16_t count)
{
	size_t n = 0;
	for (uint16_t i = 0; i < count; i++) {
		n += (recs[EXP_REC_FLAGS] & TS_SPAN_F_METRICS_ONLY) != 0;
		recs += exp_rec_u16(recs);
	}
	STAT_ADD(metrics_only_records, n);
	return n;
}

/* Metrics-only records (TS_SPAN_F_METRICS_ONLY: spans the shim sampled
 * out, shipped for the metrics) leave the list: they are never exported. */
static size_t drop_metrics_only(struct exp_span **head, size_t made)
{
	struct exp_span *gone = NULL;
	for (struct exp_span **pp = head; *pp;) {
		struct exp_span *sp = *pp;
		if (sp->rec[EXP_REC_FLAGS] & TS_SPAN_F_METRICS_ONLY) {
			*pp = sp->next;
			sp->next = gone;
			gone = sp;
			made--;
		} else {
			pp = &sp->next;
		}
	}
	exp_span_free_list(gone);
	return made;
}

static uint64_t unix_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Copies the (validated) records out and queues them — after the metrics
 * have seen every one of them, before any bound or sampler. */
static void queue_spans(struct exp_server *s, struct exp_conn *c, const uint8_t *p, uint16_t count)
{
	struct exp_resource *res = c->res ? c->res : s->unknown;
	struct exp_span *head;
	size_t only = s->metrics ? exp_metrics_observe(s->metrics, res, p + 2, count, exp_mono_ms(), unix_now_ns())
				 : metrics_only_count(p + 2, count);
	size_t made = exp_spans_new(res, p + 2, count, &head);
	if (only) {
		count = (uint16_t)(count - only);
		made = drop_metrics_only(&head, made);
	}
	size_t dropped = (count - made) + exp_queue_push(s->queue, head, made);
	STAT_ADD(received_spans, count);
	if (dropped) {
		STAT_ADD(dropped_queue_full, dropped);
		log_debug("queue full: dropped %zu spans from pid %ld", dropped, (long)c->pid);
	}
}

static bool on_spans(struct exp_server *s, struct exp_conn *c, const uint8_t *p, size_t len)
{
	uint16_t count;
	if (!spans_valid(p, len, &count))
		return false;
	queue_spans(s, c, p, count);
	return true;
}

/* The reply is best effort: a client that does not read it loses it. */
static bool on_status_req(struct exp_server *s, struct exp_conn *c, size_t len)
{
	if (len != 0)
		return false;
	sbuf_reset(&s->status);
	exp_status_text(&s->status, s->cfg, exp_queue_depth(s->queue));
	struct ts_wbuf w;
	ts_wbuf_init(&w, s->out, sizeof s->out);
	ts_frame_begin(&w, TS_FRAME_STATUS, 0);
	size_t room = sizeof s->out - TS_FRAME_HEADER_SIZE;
	ts_put_bytes(&w, s->status.p, s->status.len < room ? s->status.len : room);
	if (!s->status.oom && ts_frame_finish(&w) &&
	    send(c->fd, s->out, w.len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("status reply to pid %ld: %s", (long)c->pid, strerror(errno));
	return true;
}

static void handle_frame(struct exp_server *s, struct exp_conn *c, size_t n, int passed_fd)
{
	struct ts_frame_header h;
	if (!ts_frame_parse_header(s->in, n, &h)) {
		malformed(s, c, "bad header");
		return;
	}
	const uint8_t *payload = s->in + TS_FRAME_HEADER_SIZE;
	bool ok = false;
	switch (h.type) {
	case TS_FRAME_HELLO:
		ok = on_hello(s, c, payload, h.length, passed_fd);
		break;
	case TS_FRAME_WAKE:
		ok = h.length == 0;
		if (ok && c->ring)
			ring_read(s, c, false);
		break;
	case TS_FRAME_SPANS:
		ok = on_spans(s, c, payload, h.length);
		break;
	case TS_FRAME_STATUS_REQ:
		ok = on_status_req(s, c, h.length);
		break;
	case TS_FRAME_CHANNEL_REQ: /* only a process (it said HELLO) forks */
		ok = h.length == 0 && c->res;
		if (ok)
			on_channel_req(s, c);
		break;
	default: /* STATUS travels the other way */
		break;
	}
	if (!ok) {
		malformed(s, c, "bad payload");
		return;
	}
	STAT_ADD(dropped_client, h.dropped);
}

/* One message into s->in; *passed is the first fd it carried (a HELLO may
 * carry the ring's memfd), any other is closed unused. */
static ssize_t recv_one(struct exp_server *s, int fd, int *passed, int *msg_flags)
{
	struct iovec iov = {.iov_base = s->in, .iov_len = sizeof s->in};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
	/* MSG_TRUNC: the return value is the real size even if it did not fit. */
	ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
	*passed = -1;
	*msg_flags = m.msg_flags;
	if (n >= 0)
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int got;
				memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof got);
				if (*passed < 0)
					*passed = got;
				else
					close(got);
			}
		}
	return n;
}

/* 1: a frame was read (and handled), 0: none pending, -1: connection gone. */
static int read_frame(struct exp_server *s, struct exp_conn *c)
{
	int passed, flags;
	ssize_t n = recv_one(s, c->fd, &passed, &flags);
	/* Neither a 0 nor ECONNRESET proves that nothing is left to read.
	 * Linux's non-blocking SEQPACKET recvmsg looks at the queue, finds it
	 * empty, and only then at the peer's shutdown flag: frames the peer sent
	 * and hung up after, between those two looks, are still queued when it
	 * reports EOF (seen: ~1 connection in 10^5 under a fast sender, its last
	 * frames lost uncounted). ECONNRESET (the peer closed with unread data of
	 * its own) is reported once, ahead of the queue. So look once more: the
	 * flag is known set now, and everything the peer sent precedes it.
	 * An empty message also reads as 0: while the peer is still there
	 * (no RDHUP) that is what it was, a malformed frame. */
	if (n == 0) {
		if (passed >= 0)
			close(passed);
		struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
		if (poll(&p, 1, 0) >= 0 && !(p.revents & (POLLRDHUP | POLLHUP))) {
			malformed(s, c, "empty message");
			return 1;
		}
		n = recv_one(s, c->fd, &passed, &flags);
	} else if (n < 0 && errno == ECONNRESET) {
		n = recv_one(s, c->fd, &passed, &flags);
	}
	if (n < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
	if (n == 0) {
		if (passed >= 0)
			close(passed);
		return -1;
	}
	if ((size_t)n > sizeof s->in || (flags & MSG_TRUNC)) {
		STAT_ADD(dropped_oversized_frames, 1);
		log_debug("pid %ld: %zd-byte frame over the %d limit", (long)c->pid, n, TS_FRAME_MAX);
	} else {
		handle_frame(s, c, (size_t)n, passed);
	}
	if (passed >= 0)
		close(passed); /* a ring keeps its mapping */
	return 1;
}

/* Backpressure for socket-mode clients, as for rings: while the queue is
 * (nearly) full, a connection's frames stay in its socket (the client's
 * non-blocking sends then wait or drop and count in the client) instead of
 * being read only to be dropped here. It leaves the epoll set until the loop
 * finds room again (resume_paused) — removed, not just muted: a hang-up is
 * reported even with no events asked for, and a client that exits with frames
 * in its socket buffer must not have them read into a full queue. */
static void pause_conn(struct exp_server *s, struct exp_conn *c)
{
	if (epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL) == 0) {
		c->paused = true;
		s->n_paused++;
	}
}

static void resume_paused(struct exp_server *s)
{
	if (!s->n_paused || !queue_has_room(s))
		return;
	for (struct exp_conn *c = s->conns; c; c = c->next)
		if (c->paused) {
			struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
			if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
				log_error("cannot resume reading pid %ld: %s", (long)c->pid, strerror(errno));
			c->paused = false;
		}
	s->n_paused = 0;
}

/* Returns false when the connection was closed. */
static bool conn_drain(struct exp_server *s, struct exp_conn *c, int max)
{
	for (int i = 0; i < max; i++) {
		/* Only a process that said HELLO sends spans; a --status or --ping
		 * client must be answered even while the queue is full. */
		if (!s->stopping && !c->paused && c->res && !queue_has_room(s)) {
			pause_conn(s, c);
			return true;
		}
		int r = read_frame(s, c);
		if (r < 0) {
			log_debug("pid %ld disconnected", (long)c->pid);
			conn_close(s, c);
			return false;
		}
		if (r == 0)
			break;
	}
	return true;
}

/* ---- loop --------------------------------------------------------------- */

static void on_signal(struct exp_server *s)
{
	struct signalfd_siginfo si;
	if (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		log_info("signal %u: stopping", si.ssi_signo);
		s->stopping = true;
	}
}

static void dispatch(struct exp_server *s, struct epoll_event *ev)
{
	enum exp_ep_kind *kind = ev->data.ptr;
	if (*kind == EXP_EP_LISTENER)
		accept_pending(s, 64);
	else if (*kind == EXP_EP_SIGNAL)
		on_signal(s);
	else
		conn_drain(s, (struct exp_conn *)kind, FRAMES_PER_WAKEUP);
}

/* Connections already in the backlog count as "already sent": take them and
 * everything they wrote before we stop. */
static void shutdown_drain(struct exp_server *s)
{
	if (!s->accept_paused)
		accept_pending(s, 1 << 16);
	exp_listener_stop(s->listener);
	while (s->conns) {
		struct exp_conn *c = s->conns;
		if (conn_drain(s, c, DRAIN_MAX_FRAMES))
			conn_close(s, c);
	}
}

void exp_server_run(struct exp_server *s)
{
	struct epoll_event ev[64];
	while (!s->stopping) {
		int n = epoll_wait(s->epfd, ev, 64, epoll_timeout(s));
		if (n < 0 && errno != EINTR) {
			log_error("epoll_wait: %s", strerror(errno));
			break;
		}
		maybe_resume_accepting(s);
		for (int i = 0; i < n; i++)
			dispatch(s, &ev[i]);
		poll_rings(s);
		resume_paused(s);
	}
	shutdown_drain(s);
}

static int watch(struct exp_server *s, int fd, enum exp_ep_kind *tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int exp_server_init(struct exp_server *s, const struct exp_config *cfg, struct exp_listener *l,
		    struct exp_queue *q, int sigfd, char *err, size_t errcap)
{
	s->cfg = cfg;
	s->listener = l;
	s->queue = q;
	s->sigfd = sigfd;
	s->conns = NULL;
	s->n_conns = 0;
	s->stopping = s->accept_paused = false;
	s->n_rings = s->n_paused = 0;
	s->ring_poll_ms = 100;
	s->next_ring_poll = 0;
	s->listener_tag = EXP_EP_LISTENER;
	s->signal_tag = EXP_EP_SIGNAL;
	sbuf_init(&s->status);
	s->unknown = exp_resource_unknown();
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!s->unknown || s->epfd < 0 || watch(s, l->fd, &s->listener_tag) < 0 ||
	    watch(s, sigfd, &s->signal_tag) < 0) {
		snprintf(err, errcap, "cannot set up the event loop: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void exp_server_destroy(struct exp_server *s)
{
	s->stopping = true; /* conn_close frees even a ring it could not read out */
	while (s->conns)
		conn_close(s, s->conns);
	if (s->epfd >= 0)
		close(s->epfd);
	exp_resource_unref(s->unknown);
	sbuf_free(&s->status);
}
