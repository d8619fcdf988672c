/* xport_tls.c — see xport_tls.h. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "xport_tls.h"

__thread struct ts_stream *ts_tls_calling TS_TLS;
__thread int ts_tls_depth TS_TLS;

/* ---- sessions → streams: open addressing over the session pointer ------------------
 * Looked up on every TLS call of a traced process: lock-free (acquire loads);
 * inserts and removals (once per session) take a mutex. Key 0 is empty, 1 a
 * removed entry. A full neighbourhood leaves the session untraced (counted). */

#define MAP_SLOTS 16384u
#define MAP_PROBE 32u

struct map_slot {
	_Atomic uintptr_t key;
	struct ts_stream *_Atomic st;
};

static struct map_slot *_Atomic map;
static pthread_mutex_t map_mu = PTHREAD_MUTEX_INITIALIZER;
_Atomic uint64_t ts_tls_untraced_full;

static inline unsigned slot_of(uintptr_t k)
{
	uint64_t h = (uint64_t)k * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 40) & (MAP_SLOTS - 1);
}

static struct ts_stream *map_get(void *sess)
{
	struct map_slot *m = atomic_load_explicit(&map, memory_order_acquire);
	if (!m)
		return NULL;
	uintptr_t k = (uintptr_t)sess;
	unsigned h = slot_of(k);
	for (unsigned i = 0; i < MAP_PROBE; i++) {
		struct map_slot *s = &m[(h + i) & (MAP_SLOTS - 1)];
		uintptr_t got = atomic_load_explicit(&s->key, memory_order_acquire);
		if (got == k)
			return atomic_load_explicit(&s->st, memory_order_acquire);
		if (got == 0)
			return NULL;
	}
	return NULL;
}

static bool map_put(void *sess, struct ts_stream *st)
{
	pthread_mutex_lock(&map_mu);
	struct map_slot *m = atomic_load(&map);
	if (!m) {
		void *p = mmap(NULL, MAP_SLOTS * sizeof *m, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p != MAP_FAILED)
			atomic_store(&map, m = p);
	}
	bool ok = false;
	if (m) {
		uintptr_t k = (uintptr_t)sess;
		unsigned h = slot_of(k);
		for (unsigned i = 0; i < MAP_PROBE && !ok; i++) {
			struct map_slot *s = &m[(h + i) & (MAP_SLOTS - 1)];
			uintptr_t got = atomic_load(&s->key);
			if (got == 0 || got == 1) {
				atomic_store_explicit(&s->st, st, memory_order_relaxed);
				atomic_store_explicit(&s->key, k, memory_order_release);
				ok = true;
			}
		}
	}
	pthread_mutex_unlock(&map_mu);
	if (!ok)
		atomic_fetch_add(&ts_tls_untraced_full, 1);
	return ok;
}

static struct ts_stream *map_take(void *sess)
{
	struct ts_stream *st = NULL;
	pthread_mutex_lock(&map_mu);
	struct map_slot *m = atomic_load(&map);
	uintptr_t k = (uintptr_t)sess;
	for (unsigned i = 0; m && i < MAP_PROBE; i++) {
		struct map_slot *s = &m[(slot_of(k) + i) & (MAP_SLOTS - 1)];
		uintptr_t got = atomic_load(&s->key);
		if (got == k) {
			st = atomic_exchange(&s->st, NULL);
			atomic_store(&s->key, (uintptr_t)1);
			break;
		}
		if (got == 0)
			break;
	}
	pthread_mutex_unlock(&map_mu);
	return st;
}

/* ---- what the session is connected to ------------------------------------------------ */

/* The socket under a session, once known: its peer for the spans, and the
 * fd marked TLS (ciphertext, counted only). */
static void bind_fd(struct ts_stream *st, int fd, struct ts_fd *e)
{
	st->conn.fd = fd;
	st->conn.peer = e->peer;
	st->conn.server = atomic_load(&e->kind) == TS_FD_ACCEPTED;
	if (!st->conn.server_address[0])
		memcpy(st->conn.server_address, e->server_address, sizeof st->conn.server_address);
	atomic_store(&e->proto, TS_PROTO_TLS);
	memcpy(e->tls_version, st->conn.tls_version, sizeof e->tls_version);
	memcpy(e->tls_alpn, st->conn.alpn, sizeof e->tls_alpn);
}

void ts_tls_bind_socket(int fd, struct ts_fd *e)
{
	struct ts_stream *st = ts_tls_calling;
	if (st->conn.fd < 0 && ts_fd_owned(e))
		bind_fd(st, fd, e);
}

/* After the handshake, once: version, cipher, ALPN, SNI, and the socket if
 * the library knows it. ALPN h2 is for an HTTP/2 tracer: until there is one,
 * the stream stays untraced, never broken. */
static void learn(struct ts_stream *st, void *sess, const struct ts_tls_lib *lib)
{
	if (st->info_done)
		return;
	struct ts_conn_info c = st->conn;
	c.fd = -1;
	if (!lib->info(sess, &c))
		return;
	st->info_done = true;
	memcpy(st->conn.tls_version, c.tls_version, sizeof c.tls_version);
	memcpy(st->conn.tls_cipher, c.tls_cipher, sizeof c.tls_cipher);
	memcpy(st->conn.alpn, c.alpn, sizeof c.alpn);
	if (c.server_address[0])
		memcpy(st->conn.server_address, c.server_address, sizeof c.server_address);
	st->conn.server = c.server;
	struct ts_fd *e = c.fd >= 0 ? ts_fd_get(c.fd) : NULL;
	if (e && ts_fd_owned(e))
		bind_fd(st, c.fd, e);
	else if (st->conn.fd >= 0 && (e = ts_fd_get(st->conn.fd)) != NULL) {
		memcpy(e->tls_version, st->conn.tls_version, sizeof e->tls_version);
		memcpy(e->tls_alpn, st->conn.alpn, sizeof e->tls_alpn);
	}
	if (!strcmp(st->conn.alpn, "h2"))
		st->given_up = true;
}

struct ts_stream *ts_tls_stream(void *sess, const struct ts_tls_lib *lib)
{
	if (!sess)
		return NULL;
	struct ts_stream *st = map_get(sess);
	if (st && st->generation != atomic_load_explicit(&ts_generation, memory_order_relaxed)) {
		/* A forked child's copy of its parent's session: start afresh. */
		map_take(sess);
		ts_stream_free(st, false);
		st = NULL;
	}
	if (st)
		return st;
	st = ts_stream_new(TS_CARRIER_TLS);
	if (!st)
		return NULL;
	st->conn.tls = true;
	st->session = sess;
	learn(st, sess, lib);
	if (!map_put(sess, st)) {
		ts_stream_free(st, true);
		return NULL;
	}
	return st;
}

/* ---- undecided streams -------------------------------------------------------------- */

/* The first bytes (to be written, or read) of a stream nobody claimed yet. */
static void sniff(struct ts_stream *st, const void *buf, size_t n, bool from_client, bool moved)
{
	struct iovec v = {(void *)buf, n};
	const struct ts_tracer *t = ts_stream_sniff(st, &v, 1, n, from_client);
	if (t) {
		ts_stream_attach(st, t, st->sniff, st->sniff_len, from_client);
		return;
	}
	if (!st->given_up && moved)
		ts_sniff_remember(st->sniff, &st->sniff_len, &v, 1, n);
}

/* ---- writes ------------------------------------------------------------------------ */

/* Copies the plan's wire bytes and the application's bytes into the stage;
 * new edits' inserted bytes now live there (the plan's scratch is gone when
 * the application retries). */
static bool stage(struct ts_stream *st, struct ts_plan *pl)
{
	size_t need = pl->wire_len + pl->app_len;
	if (need > st->stage_cap) {
		char *p = realloc(st->stage, need);
		if (!p)
			return false;
		st->stage = p;
		st->stage_cap = need;
	}
	size_t off = 0;
	for (int s = 0; s < pl->nseg; s++) {
		memcpy(st->stage + off, pl->seg[s].iov_base, pl->seg[s].iov_len);
		if (pl->kind[s]) {
			struct ts_edit *e = &st->edits[pl->kind[s] - 1];
			if (!e->owned)
				e->ins = st->stage + off - e->ins_off;
		}
		off += pl->seg[s].iov_len;
	}
	ts_iov_copy(pl->app_iov, pl->app_cnt, 0, st->stage + off, pl->app_len);
	st->stage_len = pl->wire_len;
	st->stage_app_len = pl->app_len;
	st->stage_owed = pl->owed;
	return true;
}

static void write_failed(struct ts_stream *st, void *sess, const struct ts_tls_lib *lib, long r)
{
	char et[64];
	if (lib->classify(sess, r, et, sizeof et) == TS_TLS_AGAIN)
		return;
	ts_stream_ended(st, TS_END_ERROR, et, "TLS write failed");
}

long ts_tls_write(struct ts_stream *st, void *sess, const struct ts_tls_lib *lib, const void *buf, size_t len,
		  ts_tls_write_fn wr, void *arg)
{
	ts_stream_lock(st);
	struct ts_stream *outer = ts_tls_calling;
	ts_tls_calling = st;
	struct iovec v = {(void *)buf, len};
	struct ts_plan pl;
	char *null_copy = NULL; /* the application's bytes, when it retried with NULL, 0 */
	long r;
	if (st->stage_pending) {
		/* The application retries after WANT_READ/WANT_WRITE (E_AGAIN): the
		 * library must see exactly the staged bytes again; GnuTLS also
		 * takes NULL, 0 for "the same". A shorter write is not a retry of
		 * ours: it goes as it is, and the library judges it as untraced. */
		if (len && len < st->stage_app_len) {
			r = wr(sess, buf, len, arg);
			goto out;
		}
		r = (!buf && !len) ? wr(sess, NULL, 0, arg) : wr(sess, st->stage, st->stage_len, arg);
		goto staged;
	}
	if (!st->tracer && !st->given_up && len)
		sniff(st, buf, len, !st->conn.server, false);
	if (!st->tracer || st->given_up || !len) {
		r = wr(sess, buf, len, arg);
		learn(st, sess, lib);
		if (r > 0 && !st->tracer && !st->given_up)
			ts_sniff_remember(st->sniff, &st->sniff_len, &v, 1, (size_t)r);
		goto out;
	}
	if (ts_stream_needs_plan(st))
		ts_stream_plan(st, &pl, &v, 1);
	else
		pl.edited = false;
	if (!pl.edited) {
		r = wr(sess, buf, len, arg);
		learn(st, sess, lib);
		if (r > 0)
			ts_stream_sent_plain(st, &v, 1, (size_t)r);
		else
			write_failed(st, sess, lib, r);
		goto out;
	}
	for (;;) {
		if (!stage(st, &pl)) {
			ts_stream_not_sent(st, &pl);
			if (pl.owed) /* an edit half out and no memory: the stream cannot go on traced */
				ts_stream_give_up(st);
			r = wr(sess, buf, len, arg);
			goto out;
		}
		/* nothing but replaced bytes whose replacement is out: they count */
		r = st->stage_len ? wr(sess, st->stage, st->stage_len, arg) : 0;
		if (!st->stage_len) {
			struct iovec app = {st->stage, st->stage_app_len};
			ts_stream_layout(st, &pl, &app, 1);
			pl.owed = st->stage_owed;
			r = (long)ts_stream_taken(st, &pl, 0);
			goto out;
		}
	staged:
		learn(st, sess, lib);
		if (r <= 0) {
			char et[64];
			if (lib->classify(sess, r, et, sizeof et) == TS_TLS_AGAIN) {
				st->stage_pending = true;
			} else {
				st->stage_pending = false;
				st->n_edits = st->stage_owed; /* nothing of the new edits is known to be out */
				ts_stream_ended(st, TS_END_ERROR, et, "TLS write failed");
			}
			goto out;
		}
		st->stage_pending = false;
		struct iovec app = {st->stage + st->stage_len, st->stage_app_len};
		ts_stream_layout(st, &pl, &app, 1);
		pl.owed = st->stage_owed;
		size_t n = ts_stream_taken(st, &pl, (size_t)r);
		if (n || st->given_up) {
			r = (long)n;
			goto out;
		}
		/* Only inserted bytes went (a partial write): send on, the
		 * application must never see 0 for a write. After a NULL, 0
		 * retry its bytes are only in the stage, which is staged anew. */
		if (!buf && !null_copy) {
			null_copy = malloc(st->stage_app_len ? st->stage_app_len : 1);
			if (!null_copy) {
				ts_stream_give_up(st);
				r = 0;
				goto out;
			}
			memcpy(null_copy, st->stage + st->stage_len, st->stage_app_len);
			v = (struct iovec){null_copy, st->stage_app_len};
		} else if (buf) {
			v = (struct iovec){(void *)buf, len};
		}
		pl.owed = st->n_edits;
		ts_stream_layout(st, &pl, &v, 1);
	}
out:
	free(null_copy);
	ts_tls_calling = outer;
	ts_stream_unlock(st);
	return r;
}

/* ---- reads and the end ------------------------------------------------------------- */

void ts_tls_read(struct ts_stream *st, void *sess, const struct ts_tls_lib *lib, const void *buf, long ret)
{
	ts_stream_lock(st);
	learn(st, sess, lib);
	if (ret > 0) {
		if (!st->tracer && !st->given_up)
			sniff(st, buf, (size_t)ret, st->conn.server, true);
		struct iovec v = {(void *)buf, (size_t)ret};
		ts_stream_received(st, &v, 1, (size_t)ret);
	} else {
		char et[64];
		switch (lib->classify(sess, ret, et, sizeof et)) {
		case TS_TLS_AGAIN:
			break;
		case TS_TLS_EOF:
			ts_stream_ended(st, TS_END_EOF, NULL, NULL);
			break;
		case TS_TLS_ERROR:
			ts_stream_ended(st, TS_END_ERROR, et, "TLS read failed");
			break;
		}
	}
	ts_stream_unlock(st);
}

void ts_tls_shutdown(void *sess)
{
	struct ts_stream *st = map_get(sess);
	if (!st)
		return;
	ts_stream_lock(st);
	ts_stream_ended(st, TS_END_CLOSED, NULL, NULL);
	ts_stream_unlock(st);
}

void ts_tls_forget(void *sess)
{
	if (!atomic_load_explicit(&map, memory_order_relaxed))
		return;
	struct ts_stream *st = map_take(sess);
	if (st)
		ts_stream_free(st, st->generation == atomic_load(&ts_generation));
}

void ts_tls_release_all(void)
{
	struct map_slot *m = atomic_load(&map);
	for (unsigned i = 0; m && i < MAP_SLOTS; i++) {
		uintptr_t k = atomic_load(&m[i].key);
		if (k > 1)
			ts_tls_forget((void *)k);
	}
}

void ts_tls_handshake_failed(void *sess, const struct ts_tls_lib *lib, long ret, uint64_t start_ns)
{
	char et[64];
	if (lib->classify(sess, ret, et, sizeof et) == TS_TLS_AGAIN)
		return;
	struct ts_span s;
	ts_span_start_at(&s, "TLS handshake", TS_KIND_INTERNAL, NULL, start_ns);
	struct ts_conn_info c = {.fd = -1};
	lib->info(sess, &c); /* the socket and SNI, as far as known */
	struct ts_fd *e = c.fd >= 0 ? ts_fd_get(c.fd) : NULL;
	if (e)
		ts_span_peer_attrs(&s, &e->peer);
	if (c.server_address[0])
		ts_span_attr_str(&s, "server.address", c.server_address);
	ts_span_attr_str(&s, "tls.library", lib->name);
	ts_span_error(&s, et, "TLS handshake failed");
	ts_span_end(&s);
}

/* ---- the hooks' shared glue --------------------------------------------------------- */

void ts_tls_copy(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = 0;
}

struct ts_stream *ts_tls_enter(void *sess, const struct ts_tls_lib *lib)
{
	if (ts_tls_depth || !ts_tracing())
		return NULL;
	int saved = errno;
	ts_in_shim++;
	struct ts_stream *st = ts_tls_stream(sess, lib);
	ts_in_shim--;
	errno = saved;
	if (st)
		ts_tls_depth++;
	return st;
}

long ts_tls_traced_write(struct ts_stream *st, void *sess, const struct ts_tls_lib *lib, const void *buf,
			 size_t len, ts_tls_write_fn wr, void *arg, int *err)
{
	*err = errno;
	ts_in_shim++;
	long r = ts_tls_write(st, sess, lib, buf, len, wr, arg);
	ts_in_shim--;
	ts_tls_depth--;
	errno = *err;
	return r;
}

void ts_tls_after_read(struct ts_stream *st, void *sess, const struct ts_tls_lib *lib, const void *buf, long r)
{
	int saved = errno;
	ts_in_shim++;
	ts_tls_read(st, sess, lib, buf, r);
	ts_in_shim--;
	ts_tls_depth--;
	errno = saved;
}

uint64_t ts_tls_handshake_begin(void)
{
	if (ts_tls_depth || !ts_tracing())
		return 0;
	ts_tls_depth++;
	return ts_now_ns();
}

void ts_tls_handshake_end(void *sess, const struct ts_tls_lib *lib, long r, bool failed, uint64_t start)
{
	if (!start)
		return;
	ts_tls_depth--;
	if (!failed)
		return;
	int saved = errno;
	ts_in_shim++;
	ts_tls_handshake_failed(sess, lib, r, start);
	ts_in_shim--;
	errno = saved;
}

void ts_tls_hook_shutdown(void *sess)
{
	if (ts_tls_depth || !ts_tracing())
		return;
	int saved = errno;
	ts_in_shim++;
	ts_tls_shutdown(sess);
	ts_in_shim--;
	errno = saved;
}

void ts_tls_hook_forget(void *sess)
{
	if (!sess || ts_tls_depth || !ts_tracing())
		return;
	int saved = errno;
	ts_in_shim++;
	ts_tls_forget(sess);
	ts_in_shim--;
	errno = saved;
}
