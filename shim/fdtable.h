/* fdtable.h — per-fd state, indexed by the fd number.
 *
 * Two-level table: a static array of chunk pointers, each chunk (256 entries)
 * mmap'ed the first time a socket in its range is traced and never freed, so
 * a stale pointer can never fault. The untraced path (write to a file, a pipe,
 * a socket we know nothing about) costs two loads and a compare.
 *
 * Ownership: an entry belongs to the process generation that created it. A
 * forked child sees its parent's entries but never ends their spans (the
 * parent does), so nothing is reported twice. */
#ifndef TRACESHIM_FDTABLE_H
#define TRACESHIM_FDTABLE_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shim.h"

#define TS_FD_MAX (1 << 20)
#define TS_FD_CHUNK 256

enum ts_fd_kind {
	TS_FD_NONE = 0,
	TS_FD_CONNECTING, /* non-blocking connect in flight */
	TS_FD_CLIENT,     /* connect()ed socket */
	TS_FD_ACCEPTED,   /* accept()ed socket */
};

struct ts_peer {
	uint8_t family; /* AF_INET / AF_INET6 */
	uint8_t transport; /* IPPROTO_TCP / IPPROTO_UDP */
	uint16_t port;  /* host order */
	uint8_t addr[16];
};

struct ts_stream; /* a claimed connection's stream (shim/stream.h) */

/* What the bytes of a TCP socket are to us. */
enum ts_proto {
	TS_PROTO_UNKNOWN = 0, /* undecided: its first bytes are offered to the tracers */
	TS_PROTO_TRACED,      /* a tracer owns its stream */
	TS_PROTO_OTHER,       /* nobody's protocol (or given up): passed through */
	TS_PROTO_TLS,         /* carries a TLS session we trace above it: ciphertext, counted only */
};

struct ts_fd {
	_Atomic uint8_t kind;
	uint32_t generation;
	_Atomic uint64_t bytes_sent, bytes_received;
	struct ts_peer peer;
	struct ts_ctx parent;            /* context the connection was opened in */
	uint8_t conn_span_id[8];         /* the `connection` span, ended at close */
	uint8_t connect_span_id[8];      /* the `connect` span while connecting */
	uint64_t connect_start_ns;
	char server_address[64];         /* host name the address came from, if known */
	_Atomic uint8_t proto;           /* TS_PROTO_* */
	uint8_t sniff_len;
	char sniff[16];                  /* first bytes, while still undecided */
	struct ts_stream *_Atomic stream;
	/* A TLS session on this socket (for its `connection` span) */
	char tls_version[16], tls_alpn[16];
};

extern struct ts_fd *_Atomic ts_fd_chunks[TS_FD_MAX / TS_FD_CHUNK];

/* The entry of a tracked fd, or NULL — the hot-path check. */
static inline struct ts_fd *ts_fd_get(int fd)
{
	if (TS_UNLIKELY((unsigned)fd >= TS_FD_MAX))
		return NULL;
	struct ts_fd *chunk = atomic_load_explicit(&ts_fd_chunks[fd / TS_FD_CHUNK], memory_order_acquire);
	if (TS_LIKELY(!chunk))
		return NULL;
	struct ts_fd *e = &chunk[fd % TS_FD_CHUNK];
	return atomic_load_explicit(&e->kind, memory_order_relaxed) ? e : NULL;
}

/* The entry slot for fd, creating its chunk if needed (NULL if out of range
 * or out of memory). The caller fills it and sets kind last. */
struct ts_fd *ts_fd_slot(int fd);

/* Ends whatever spans the entry holds (if this generation owns it) and clears it. */
void ts_fd_release(int fd, struct ts_fd *e);
/* At process exit: release every owned entry so open connections are reported. */
void ts_fd_release_all(void);

static inline bool ts_fd_owned(const struct ts_fd *e)
{
	return e->generation == atomic_load_explicit(&ts_generation, memory_order_relaxed);
}

/* Peer address helpers */
bool ts_peer_from_sockaddr(struct ts_peer *p, const void *sa, unsigned salen);
void ts_peer_format(const struct ts_peer *p, char *out, unsigned cap);

/* Recent getaddrinfo answers, process-wide (curl resolves on a helper
 * thread, then connects from another): the host name an address came from. */
void ts_dns_remember(const char *host, const struct ts_peer *addrs, unsigned n);
bool ts_dns_lookup(const struct ts_peer *addr, char *host, unsigned cap);

/* Span helpers shared by the hooks */
void ts_span_peer_attrs(struct ts_span *s, const struct ts_peer *p);

/* Called by the io hooks for every traced socket byte count. */
static inline void ts_fd_count(struct ts_fd *e, bool sent, long n)
{
	if (n > 0)
		atomic_fetch_add_explicit(sent ? &e->bytes_sent : &e->bytes_received, (uint64_t)n,
					  memory_order_relaxed);
}

/* Set by the stream layer: called when an fd's entry is released (close,
 * dup2 over it, process exit) so it can end the spans its stream holds. */
extern void (*ts_fd_release_hook)(int fd, struct ts_fd *e, bool owned);

/* A non-blocking connect has finished (err 0 = connected). */
void ts_fd_connect_done(int fd, struct ts_fd *e, int err);

#endif
