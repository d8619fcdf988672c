/* stream.h — the stream layer: one traced connection, two directions,
 * whatever carries it.
 *
 *        hooks/io.c (socket calls)        hooks/tls_openssl.c, tls_gnutls.c
 *                 │                                   │
 *        shim/xport_socket.c              shim/xport_tls.c        ← transports:
 *        (sendmsg splice, kernel counts)  (staged buffer, retry      carry out edits,
 *                 │                        rule, library counts)     map counts back
 *                 └──────────────┬────────────────────┘
 *                        shim/stream.c                            ← sniff, choose a
 *                 (plan → edits; sent/received → tracer)             tracer, edit maps
 *                                │
 *          shim/tracers/http1.c   (http2.c, postgres.c, ... next)   ← protocol tracers:
 *                                │                                   spans, edits
 *                        shim/proto/ (*.c)                         ← pure scanners
 *
 * A byte's walk goes one way down: a hook calls its transport, the transport
 * asks the stream for a plan (the tracer adds edits to it), does the I/O,
 * and reports the count; the stream maps it to the application's view and
 * hands the application's bytes that really moved to the tracer. Tracers
 * never do I/O and never see a transport; transports never see a protocol.
 *
 * Edits are expressed once, in the application's byte stream: "insert these
 * bytes at offset k of this write", "replace n bytes at k". Each transport
 * carries them out its own way and the same mapping (ts_stream_taken) turns
 * the count of wire bytes the kernel or TLS library took into the count of
 * application bytes the application must be told. An edit whose bytes only
 * partly went out stays pending and goes first on the next write.
 *
 * Locking: one futex word per stream, held around a write's plan, I/O and
 * observation, and around a read's observation (threads sharing one
 * connection are rare; they wait in the kernel, never spin). Streams are
 * recycled, never freed, so a thread racing a close never touches unmapped
 * memory. */
#ifndef TRACESHIM_STREAM_H
#define TRACESHIM_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "fdtable.h"

struct ts_stream;

/* ---- protocol tracers ------------------------------------------------------ */

enum ts_claim { TS_CLAIM_NO = 0, TS_CLAIM_YES, TS_CLAIM_NEED_MORE };

/* Why a stream's bytes stopped. */
enum ts_end { TS_END_EOF, TS_END_ERROR, TS_END_CLOSED };

/* One protocol. Every callback runs with the stream locked, on a traced path
 * (locks and malloc are allowed, errno need not be kept: the stream keeps it). */
struct ts_tracer {
	const char *name;
	/* The first bytes of a connection (at most TS_SNIFF_MAX), in the
	 * direction they moved: from_client is true for what the client sent. */
	enum ts_claim (*claim)(const char *p, size_t n, bool from_client);
	/* Claimed: make the per-stream state (NULL: cannot, the stream is
	 * left untraced). */
	void *(*attach)(struct ts_stream *st);
	/* Optional: the application is about to write these bytes; the tracer
	 * may add edits with ts_stream_edit() (offsets within this write). */
	void (*plan)(void *t, struct ts_stream *st, const struct iovec *iov, int cnt, size_t len);
	/* The first n application bytes of iov went out / came in. */
	void (*sent)(void *t, struct ts_stream *st, const struct iovec *iov, int cnt, size_t n);
	void (*received)(void *t, struct ts_stream *st, const struct iovec *iov, int cnt, size_t n);
	/* Optional: n bytes went out that nobody saw (sendfile). */
	void (*sent_opaque)(void *t, struct ts_stream *st, size_t n);
	/* The peer closed (EOF), the connection failed, or the application
	 * closed it; error_type/msg are set for TS_END_ERROR. */
	void (*ended)(void *t, struct ts_stream *st, enum ts_end why, const char *error_type, const char *msg);
	/* The stream is going away; owned is false in a forked child holding a
	 * copy of its parent's state (the parent ends those spans). */
	void (*detach)(void *t, struct ts_stream *st, bool owned);
};

/* The registry (shim/tracers/registry.c): offered the first bytes in order. */
extern const struct ts_tracer *const ts_tracers[];

/* ---- the stream -------------------------------------------------------------- */

#define TS_SNIFF_MAX 16
#define TS_EDITS_MAX 2 /* one still owed from an earlier write + one new */

enum ts_carrier_kind { TS_CARRIER_SOCKET, TS_CARRIER_TLS };

struct ts_edit {
	uint64_t at;        /* offset in the application's outgoing bytes */
	uint32_t del;       /* application bytes it replaces (not sent) */
	uint32_t ins_len, ins_off; /* bytes it sends instead; how many went out */
	char *ins;          /* owned once the edit outlives its write */
	bool owned;
};

/* What the tracers may read about the connection. */
struct ts_conn_info {
	struct ts_peer peer;       /* family 0: unknown (a TLS session without an fd yet) */
	char server_address[64];   /* host name the address came from, or SNI */
	int fd;                    /* -1: unknown */
	bool server;               /* accepted: we serve requests */
	bool tls;
	/* TLS only, each "" when unknown */
	char tls_version[16], tls_cipher[64], alpn[16];
};

struct ts_stream {
	_Atomic int mu;
	enum ts_carrier_kind carrier;
	uint32_t generation;
	const struct ts_tracer *tracer; /* NULL: undecided (or given up) */
	void *tstate;
	bool given_up;
	bool may_edit;                  /* the tracer plans writes (set at attach, see ts_stream_no_edits) */
	bool no_edits;
	struct ts_conn_info conn;
	uint64_t out_pos;               /* application bytes written so far */
	uint8_t new_edits_out;          /* how many of the last write's new edits (in order) started going out */
	uint8_t n_edits;
	struct ts_edit edits[TS_EDITS_MAX]; /* pending, sorted by `at` */
	/* sniffing (TLS streams exist before a tracer claims them) */
	uint8_t sniff_len;
	char sniff[TS_SNIFF_MAX];
	/* TLS: the staged write a library must see again on retry: its wire
	 * bytes, then a copy of the application's (for the count mapping) */
	char *stage;
	size_t stage_cap, stage_len, stage_app_len;
	uint8_t stage_owed;
	bool stage_pending;
	bool info_done;                 /* TLS: version, cipher, ALPN read after the handshake */
	void *session;                  /* TLS: the library's session object (map key) */
	struct ts_stream *next_free;
};

/* A write, planned: the wire bytes as segments, and how they map back. */
#define TS_PLAN_SEGS 72
struct ts_plan {
	struct iovec seg[TS_PLAN_SEGS];
	uint8_t kind[TS_PLAN_SEGS]; /* 0: application bytes; 1 + i: edit i's inserted bytes */
	int nseg;
	size_t wire_len, app_len;
	bool edited;   /* false: the wire bytes are exactly the application's */
	uint8_t owed;  /* edits owed from earlier writes when this one was planned */
	size_t limit;  /* application bytes of this write that may go (ts_stream_cut) */
	/* scratch for a new edit's bytes while the write is in flight */
	char scratch[16 + 64 + 16 + 520 + 16 + 8200];
	size_t scratch_used;
	const struct iovec *app_iov;
	int app_cnt;
};

/* ---- for transports ------------------------------------------------------------ */

struct ts_stream *ts_stream_new(enum ts_carrier_kind carrier);
void ts_stream_lock(struct ts_stream *st);
void ts_stream_unlock(struct ts_stream *st);

/* Is anybody tracing this stream's bytes? (unlocked read: a hint) */
static inline bool ts_stream_active(const struct ts_stream *st)
{
	return !st->given_up;
}

/* Builds the wire bytes for a write of the application's iov (locked). With
 * pl->edited false the transport makes the application's own call and
 * reports it with ts_stream_sent_plain; else it sends pl->seg and reports
 * the count with ts_stream_taken, or, when nothing went, ts_stream_not_sent. */
bool ts_stream_plan(struct ts_stream *st, struct ts_plan *pl, const struct iovec *iov, int cnt);
void ts_stream_not_sent(struct ts_stream *st, const struct ts_plan *pl);
/* Lays out the pending edits over a write without asking the tracer (the
 * second half of ts_stream_plan): a TLS transport recomputes the layout of a
 * staged write when the library reports its count, with pl->owed set. */
void ts_stream_layout(struct ts_stream *st, struct ts_plan *pl, const struct iovec *iov, int cnt);
/* The transport took `wire` bytes of the plan (> 0): the application's
 * count, with pending edits advanced and the tracer told. May be 0 when only
 * edit bytes went out. */
size_t ts_stream_taken(struct ts_stream *st, struct ts_plan *pl, size_t wire);
/* A write that went out unplanned (n > 0 application bytes). */
void ts_stream_sent_plain(struct ts_stream *st, const struct iovec *iov, int cnt, size_t n);
void ts_stream_sent_opaque(struct ts_stream *st, size_t n);
/* The application read n > 0 bytes. */
void ts_stream_received(struct ts_stream *st, const struct iovec *iov, int cnt, size_t n);
void ts_stream_ended(struct ts_stream *st, enum ts_end why, const char *error_type, const char *msg);
/* Offers the first bytes to the tracers (stream not yet claimed, its own
 * sniff buffer): the tracer that claims them, else NULL (given up when
 * nobody ever will). The caller attaches it and remembers moved bytes. */
const struct ts_tracer *ts_stream_sniff(struct ts_stream *st, const struct iovec *iov, int cnt, size_t n,
					bool from_client);
/* Detaches the tracer and puts the stream back on the free list. */
void ts_stream_free(struct ts_stream *st, bool owned);

/* The generic sniffer over a caller-held buffer (the socket transport keeps
 * its undecided bytes in the fd entry, the TLS transport in the stream):
 * the earlier bytes buf[0..len) and this call's n. Returns the tracer that
 * claims them, or NULL; *verdict says NO (nobody will) or NEED_MORE. */
const struct ts_tracer *ts_sniff_bytes(const char *buf, uint8_t len, const struct iovec *iov, int cnt, size_t n,
				       bool from_client, enum ts_claim *verdict);
/* Keeps the first bytes of a call that moved while undecided. */
void ts_sniff_remember(char *buf, uint8_t *len, const struct iovec *iov, int cnt, size_t n);
/* Attaches tracer `t`, replaying the `n` bytes (`first`) that moved before
 * it existed, in the direction from_client says. */
bool ts_stream_attach(struct ts_stream *st, const struct ts_tracer *t, const char *first, size_t n,
		      bool from_client);

/* ---- for tracers ---------------------------------------------------------------- */

/* Adds an edit to the write being planned: at offset `off` of this write,
 * replace `del` application bytes by `ins[0..len)` (copied). False if it
 * cannot be done (then nothing changes). */
bool ts_stream_edit(struct ts_stream *st, size_t off, size_t del, const char *ins, size_t len);
/* Sends at most `off` bytes of this write (a short write, which the
 * application repeats): for a tracer with more edits in one write than the
 * stream holds at once. */
void ts_stream_cut(struct ts_stream *st, size_t off);
/* This tracer will never edit this stream's writes (an HTTP server): they
 * go out without a plan, as the application made them. */
void ts_stream_no_edits(struct ts_stream *st);
/* Does a write of this stream need a plan? (an edit is owed, or the
 * tracer may ask for one) */
static inline bool ts_stream_needs_plan(const struct ts_stream *st)
{
	return st->n_edits || (st->may_edit && !st->given_up);
}
/* The tracer stops: the stream is passed through untraced from now on. */
void ts_stream_give_up(struct ts_stream *st);
/* The local port of the connection (getsockname, once asked), 0 unknown. */
uint16_t ts_stream_local_port(struct ts_stream *st);
/* The peer formatted ("127.0.0.1"), "" when unknown. */
const char *ts_stream_peer_str(struct ts_stream *st, char *buf, size_t cap);

/* Reads an iovec as one string of bytes. */
int ts_iov_byte(const struct iovec *iov, int n, size_t off);
size_t ts_iov_total(const struct iovec *iov, int n);
size_t ts_iov_copy(const struct iovec *iov, int n, size_t off, char *out, size_t cap);

/* Streams of sockets hang on their fd entry; ts_stream_init registers the
 * fd-release hook that frees them, and reads the process context's extras
 * (TRACESTATE, BAGGAGE). */
static inline struct ts_stream *ts_fd_stream(struct ts_fd *e)
{
	return atomic_load_explicit(&e->stream, memory_order_acquire);
}
void ts_stream_init(void);

#endif
