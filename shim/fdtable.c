/* fdtable.c — per-fd state, connection spans, recent DNS answers. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "fdtable.h"

struct ts_fd *_Atomic ts_fd_chunks[TS_FD_MAX / TS_FD_CHUNK];

void (*ts_fd_release_hook)(int fd, struct ts_fd *e, bool owned);

struct ts_fd *ts_fd_slot(int fd)
{
	if ((unsigned)fd >= TS_FD_MAX)
		return NULL;
	struct ts_fd *_Atomic *cp = &ts_fd_chunks[fd / TS_FD_CHUNK];
	struct ts_fd *chunk = atomic_load_explicit(cp, memory_order_acquire);
	if (!chunk) {
		void *m = mmap(NULL, TS_FD_CHUNK * sizeof(struct ts_fd), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		struct ts_fd *expected = NULL;
		if (atomic_compare_exchange_strong(cp, &expected, (struct ts_fd *)m)) {
			chunk = m;
		} else {
			munmap(m, TS_FD_CHUNK * sizeof(struct ts_fd));
			chunk = expected;
		}
	}
	return &chunk[fd % TS_FD_CHUNK];
}

/* ---- peers ---------------------------------------------------------------- */

bool ts_peer_from_sockaddr(struct ts_peer *p, const void *sa, unsigned salen)
{
	const struct sockaddr *s = sa;
	memset(p, 0, sizeof *p);
	if (!sa)
		return false;
	if (s->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = sa;
		p->family = AF_INET;
		p->port = ntohs(in->sin_port);
		memcpy(p->addr, &in->sin_addr, 4);
		return true;
	}
	if (s->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = sa;
		p->family = AF_INET6;
		p->port = ntohs(in6->sin6_port);
		memcpy(p->addr, &in6->sin6_addr, 16);
		return true;
	}
	return false;
}

void ts_peer_format(const struct ts_peer *p, char *out, unsigned cap)
{
	if (!inet_ntop(p->family, p->addr, out, cap))
		snprintf(out, cap, "?");
}

void ts_span_peer_attrs(struct ts_span *s, const struct ts_peer *p)
{
	char addr[INET6_ADDRSTRLEN];
	ts_peer_format(p, addr, sizeof addr);
	ts_span_attr_str(s, "network.peer.address", addr);
	ts_span_attr_int(s, "network.peer.port", p->port);
	ts_span_attr_str(s, "network.transport", p->transport == IPPROTO_UDP ? "udp" : "tcp");
	ts_span_attr_str(s, "network.type", p->family == AF_INET6 ? "ipv6" : "ipv4");
}

/* ---- recent DNS answers ------------------------------------------------------ */

#define DNS_SLOTS 32
#define DNS_TTL_NS (120ull * 1000000000ull)

static struct {
	uint8_t family;
	uint8_t addr[16];
	uint64_t at;
	char host[64];
} dns[DNS_SLOTS];
static unsigned dns_next;
static pthread_mutex_t dns_mu = PTHREAD_MUTEX_INITIALIZER;

void ts_dns_remember(const char *host, const struct ts_peer *addrs, unsigned n)
{
	uint64_t now = ts_now_ns();
	pthread_mutex_lock(&dns_mu);
	for (unsigned i = 0; i < n && i < 8; i++) {
		unsigned k = dns_next++ % DNS_SLOTS;
		dns[k].family = addrs[i].family;
		memcpy(dns[k].addr, addrs[i].addr, 16);
		dns[k].at = now;
		snprintf(dns[k].host, sizeof dns[k].host, "%s", host);
	}
	pthread_mutex_unlock(&dns_mu);
}

/* Newest answer first: the name most recently resolved to this address. */
bool ts_dns_lookup(const struct ts_peer *addr, char *host, unsigned cap)
{
	bool found = false;
	uint64_t now = ts_now_ns();
	pthread_mutex_lock(&dns_mu);
	for (unsigned i = 1; i <= DNS_SLOTS && !found; i++) {
		unsigned k = (dns_next - i) % DNS_SLOTS;
		if (dns[k].at && now - dns[k].at < DNS_TTL_NS && dns[k].family == addr->family &&
		    !memcmp(dns[k].addr, addr->addr, addr->family == AF_INET ? 4 : 16)) {
			snprintf(host, cap, "%s", dns[k].host);
			found = true;
		}
	}
	pthread_mutex_unlock(&dns_mu);
	return found;
}

/* ---- spans held by an fd ---------------------------------------------------- */

static void end_connect_span(struct ts_fd *e, int err, uint64_t end)
{
	struct ts_span s;
	ts_span_start_at(&s, "connect", TS_KIND_INTERNAL, &e->parent, e->connect_start_ns);
	memcpy(s.span_id, e->connect_span_id, 8);
	ts_span_peer_attrs(&s, &e->peer);
	if (e->server_address[0])
		ts_span_attr_str(&s, "server.address", e->server_address);
	if (err) {
		ts_span_error(&s, strerrorname_np(err) ? strerrorname_np(err) : "connect_error", strerror(err));
		ts_span_stack(&s);
	}
	ts_span_end_at(&s, end);
}

void ts_fd_connect_done(int fd, struct ts_fd *e, int err)
{
	(void)fd;
	uint8_t expected = TS_FD_CONNECTING;
	if (!atomic_compare_exchange_strong(&e->kind, &expected, err ? TS_FD_NONE : TS_FD_CLIENT))
		return; /* another thread reported it first */
	if (ts_fd_owned(e))
		end_connect_span(e, err, ts_now_ns());
}

static void end_connection_span(struct ts_fd *e, uint64_t end, const char *why)
{
	struct ts_span s;
	ts_span_start_at(&s, "connection", TS_KIND_INTERNAL, &e->parent, e->connect_start_ns);
	memcpy(s.span_id, e->conn_span_id, 8);
	ts_span_peer_attrs(&s, &e->peer);
	if (e->server_address[0])
		ts_span_attr_str(&s, "server.address", e->server_address);
	ts_span_attr_int(&s, "traceshim.bytes_sent", (int64_t)atomic_load(&e->bytes_sent));
	ts_span_attr_int(&s, "traceshim.bytes_received", (int64_t)atomic_load(&e->bytes_received));
	if (why)
		ts_span_attr_str(&s, "traceshim.connection.end", why);
	if (e->tls_version[0])
		ts_span_attr_str(&s, "tls.protocol.version", e->tls_version);
	if (e->tls_alpn[0])
		ts_span_attr_str(&s, "tls.next_protocol", e->tls_alpn);
	ts_span_end_at(&s, end);
}

static void release(int fd, struct ts_fd *e, const char *why)
{
	uint8_t kind = atomic_exchange(&e->kind, TS_FD_NONE);
	if (kind == TS_FD_NONE)
		return; /* someone else released it */
	bool owned = ts_fd_owned(e);
	if (ts_fd_release_hook)
		ts_fd_release_hook(fd, e, owned);
	if (!owned)
		return;
	uint64_t now = ts_now_ns();
	if (kind == TS_FD_CONNECTING) {
		end_connect_span(e, ECANCELED, now);
		return;
	}
	if (kind == TS_FD_CLIENT)
		end_connection_span(e, now, why);
}

void ts_fd_release(int fd, struct ts_fd *e) { release(fd, e, NULL); }

void ts_fd_release_all(void)
{
	for (unsigned c = 0; c < TS_FD_MAX / TS_FD_CHUNK; c++) {
		struct ts_fd *chunk = atomic_load(&ts_fd_chunks[c]);
		if (!chunk)
			continue;
		for (unsigned i = 0; i < TS_FD_CHUNK; i++)
			if (atomic_load_explicit(&chunk[i].kind, memory_order_relaxed))
				release((int)(c * TS_FD_CHUNK + i), &chunk[i], "process_exit");
	}
}
