/* metrics.c — see metrics.h. The aggregation: series table, span metrics,
 * semantic-convention histograms and the service graph's pairing. */
#include "metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "record.h"
#include "stats.h"

const double exp_hist_bounds_s[EXP_HIST_BOUNDS] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
						   0.5,   0.75, 1,     2.5,  5,     7.5, 10};
/* The same bounds in ns, so bucketing compares integers, exactly. */
static const uint64_t bounds_ns[EXP_HIST_BOUNDS] = {
	5000000ull,   10000000ull,  25000000ull,  50000000ull,   75000000ull,   100000000ull,  250000000ull,
	500000000ull, 750000000ull, 1000000000ull, 2500000000ull, 5000000000ull, 7500000000ull, 10000000000ull};

#define S "s"
const struct exp_mfam_info exp_mfam[EXP_MF_COUNT] = {
	[EXP_MF_CALLS] = {"traces.span.metrics.calls", "traces_span_metrics_calls_total", "{call}",
			  "Spans received, per service, span name, kind and status.", false, true},
	[EXP_MF_DURATION] = {"traces.span.metrics.duration", "traces_span_metrics_duration_seconds", S,
			     "Span durations.", true, true},
	[EXP_MF_SG_REQUEST] = {"traces_service_graph_request_total", "traces_service_graph_request_total",
			       "{request}", "Requests between two services (paired client and server spans).",
			       false, false},
	[EXP_MF_SG_FAILED] = {"traces_service_graph_request_failed_total",
			      "traces_service_graph_request_failed_total", "{request}",
			      "Requests between two services where either span has status ERROR.", false, false},
	[EXP_MF_SG_SERVER] = {"traces_service_graph_request_server_seconds",
			      "traces_service_graph_request_server_seconds", S,
			      "Duration of the server span of a paired request.", true, false},
	[EXP_MF_SG_CLIENT] = {"traces_service_graph_request_client_seconds",
			      "traces_service_graph_request_client_seconds", S,
			      "Duration of the client span of a paired request.", true, false},
	[EXP_MF_SG_UNPAIRED] = {"traces_service_graph_unpaired_spans_total",
				"traces_service_graph_unpaired_spans_total", "{span}",
				"Client or server spans whose other half did not arrive in time.", false, false},
	[EXP_MF_HTTP_SERVER] = {"http.server.request.duration", "http_server_request_duration_seconds", S,
				"Duration of HTTP server requests.", true, true},
	[EXP_MF_HTTP_CLIENT] = {"http.client.request.duration", "http_client_request_duration_seconds", S,
				"Duration of HTTP client requests.", true, true},
	[EXP_MF_DB_CLIENT] = {"db.client.operation.duration", "db_client_operation_duration_seconds", S,
			      "Duration of database client operations.", true, true},
	[EXP_MF_RPC_SERVER] = {"rpc.server.call.duration", "rpc_server_call_duration_seconds", S,
			       "Duration of RPC calls served.", true, true},
	[EXP_MF_RPC_CLIENT] = {"rpc.client.call.duration", "rpc_client_call_duration_seconds", S,
			       "Duration of RPC calls made.", true, true},
};
#undef S

unsigned exp_hist_bucket(uint64_t d)
{
	unsigned lo = 0, hi = EXP_HIST_BOUNDS; /* first bound >= d */
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (bounds_ns[mid] >= d)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* ---- the graph's halves ------------------------------------------------- */

enum { ROLE_CLIENT = 1, ROLE_SERVER = 2 };

struct half {
	struct half *hnext;
	struct half *older, *newer; /* FIFO by arrival: expiry from the oldest */
	uint8_t key[24];            /* trace id + the client span's id */
	uint64_t born_ms;
	uint64_t client_ns, server_ns;
	uint8_t roles; /* the one half that waits */
	bool failed, messaging;
	uint8_t svc_len;
	char svc[EXP_METRICS_SERVICE_MAX]; /* its service: the client's or the server's */
};

struct exp_metrics {
	pthread_mutex_t lock;
	struct exp_metrics_config cfg;
	uint64_t seed; /* random: labels and ids crafted by a client cannot collide on purpose */
	/* series */
	struct exp_series **table;
	size_t table_mask, n_series;
	struct exp_series *fam_head[EXP_MF_COUNT], **fam_tail[EXP_MF_COUNT];
	struct exp_series *overflow[EXP_MF_COUNT];
	uint64_t overflow_points, metrics_only;
	/* graph */
	struct half **htable;
	size_t hmask, n_pending;
	struct half *oldest, *newest;
	uint64_t paired, unpaired, evicted;
	struct half *spare; /* freed halves, reused (chained through hnext) */
};

static struct half *half_new(struct exp_metrics *m)
{
	struct half *x = m->spare;
	if (x) {
		m->spare = x->hnext;
		memset(x, 0, offsetof(struct half, svc));
		return x;
	}
	return calloc(1, sizeof *x);
}

static void half_free(struct exp_metrics *m, struct half *x)
{
	x->hnext = m->spare;
	m->spare = x;
}

/* ---- labels being built ------------------------------------------------- */

struct labels {
	char buf[4096];
	size_t len;
	uint8_t n;
	bool full;
};

/* Values are text; an integer attribute's keeps its type for OTLP in the
 * length's top bit (EXP_LABEL_INT). */
#define EXP_LABEL_INT 0x8000u

static void lab_put_typed(struct labels *l, const char *k, size_t klen, const char *v, size_t vlen, bool is_int)
{
	vlen = ts_utf8_cut(v, vlen, EXP_METRICS_LABEL_VALUE_MAX);
	if (l->full || l->len + 4 + klen + vlen > sizeof l->buf || l->n == 255) {
		l->full = true;
		return;
	}
	uint16_t a = (uint16_t)klen, b = (uint16_t)(vlen | (is_int ? EXP_LABEL_INT : 0));
	memcpy(l->buf + l->len, &a, 2);
	memcpy(l->buf + l->len + 2, k, klen);
	l->len += 2 + klen;
	memcpy(l->buf + l->len, &b, 2);
	memcpy(l->buf + l->len + 2, v, vlen);
	l->len += 2 + vlen;
	l->n++;
}

static void lab_put(struct labels *l, const char *k, size_t klen, const char *v, size_t vlen)
{
	lab_put_typed(l, k, klen, v, vlen, false);
}

static void lab_cstr(struct labels *l, const char *k, const char *v) { lab_put(l, k, strlen(k), v, strlen(v)); }

/* An attribute's value as label text. */
static void lab_attr(struct labels *l, const char *k, const struct ts_attr *a)
{
	char num[32];
	int n;
	switch (a->type) {
	case TS_ATTR_STR:
		lab_put(l, k, strlen(k), a->v.s.ptr, a->v.s.len);
		return;
	case TS_ATTR_INT: { /* by hand: snprintf was a visible share per span */
		uint64_t v = a->v.i < 0 ? (uint64_t)0 - (uint64_t)a->v.i : (uint64_t)a->v.i;
		char *e = num + sizeof num, *q = e;
		do
			*--q = (char)('0' + v % 10);
		while (v /= 10);
		if (a->v.i < 0)
			*--q = '-';
		lab_put_typed(l, k, strlen(k), q, (size_t)(e - q), true);
		return;
	}
	case TS_ATTR_BOOL:
		n = snprintf(num, sizeof num, "%s", a->v.b ? "true" : "false");
		break;
	case TS_ATTR_DOUBLE:
		n = snprintf(num, sizeof num, "%.17g", a->v.d);
		break;
	default: /* arrays are no dimension */
		return;
	}
	lab_put(l, k, strlen(k), num, (size_t)n);
}

bool exp_series_label(const struct exp_series *s, size_t *off, struct exp_label *out)
{
	if (*off >= s->labels_len)
		return false;
	const char *p = s->data + s->service_len + *off;
	memcpy(&out->klen, p, 2);
	out->key = p + 2;
	p += 2 + out->klen;
	memcpy(&out->vlen, p, 2);
	out->is_int = (out->vlen & EXP_LABEL_INT) != 0;
	out->vlen &= (uint16_t)~EXP_LABEL_INT;
	out->val = p + 2;
	*off += 4u + out->klen + out->vlen;
	return true;
}

/* ---- series ------------------------------------------------------------- */

/* Eight bytes a step: label sets are ~100 bytes and hashed several times
 * per span (byte-wise FNV-1a was an eighth of the exporter's CPU). */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t w;
	for (; n >= 8; b += 8, n -= 8) {
		memcpy(&w, b, 8);
		h = (h ^ w) * 0x9E3779B97F4A7C15ull;
		h ^= h >> 29;
	}
	w = (uint64_t)n << 56;
	if (n)
		memcpy(&w, b, n); /* n < 8: the top byte keeps the length */
	h = (h ^ w ^ ((uint64_t)n << 56)) * 0x9E3779B97F4A7C15ull;
	return h ^ (h >> 32);
}

static struct exp_series *series_alloc(enum exp_mfam f, const char *svc, size_t svc_len, const struct labels *l,
				       uint64_t now_unix_ns)
{
	struct exp_series *s = calloc(1, sizeof *s + svc_len + l->len);
	if (!s)
		return NULL;
	if (f == EXP_MF_SG_REQUEST && !(s->edge = calloc(1, sizeof *s->edge))) {
		free(s);
		return NULL;
	}
	s->fam = (uint8_t)f;
	s->start_unix_ns = now_unix_ns;
	s->service_len = (uint16_t)svc_len;
	s->labels_len = (uint16_t)l->len;
	s->n_labels = l->n;
	memcpy(s->data, svc, svc_len);
	memcpy(s->data + svc_len, l->buf, l->len);
	return s;
}

static void family_append(struct exp_metrics *m, struct exp_series *s)
{
	*m->fam_tail[s->fam] = s;
	m->fam_tail[s->fam] = &s->fam_next;
}

/* The series for these labels; the family's overflow series when the table
 * is full; NULL only when out of memory (the observation is then lost,
 * counted as overflow). */
static struct exp_series *series_get(struct exp_metrics *m, enum exp_mfam f, const char *svc, size_t svc_len,
				     const struct labels *l, uint64_t now_unix_ns)
{
	if (!exp_mfam[f].per_service)
		svc_len = 0;
	uint64_t h = hash_bytes(m->seed ^ f, svc, svc_len);
	h = hash_bytes(h ^ 0xff, l->buf, l->len);
	struct exp_series **slot = &m->table[h & m->table_mask];
	for (struct exp_series *s = *slot; s; s = s->hnext)
		if (s->hash == h && s->fam == f && s->service_len == svc_len && s->labels_len == l->len &&
		    !memcmp(s->data, svc, svc_len) && !memcmp(s->data + svc_len, l->buf, l->len))
			return s;
	if (m->n_series < m->cfg.max_series && !l->full) {
		struct exp_series *s = series_alloc(f, svc, svc_len, l, now_unix_ns);
		if (s) {
			s->hash = h;
			s->hnext = *slot;
			*slot = s;
			m->n_series++;
			family_append(m, s);
			return s;
		}
	}
	m->overflow_points++;
	if (!m->overflow[f]) {
		struct labels o = {.len = 0};
		lab_cstr(&o, "otel.metric.overflow", "true");
		struct exp_series *s = series_alloc(f, "", 0, &o, now_unix_ns);
		if (!s)
			return NULL;
		s->overflow = true;
		m->overflow[f] = s;
		family_append(m, s);
	}
	return m->overflow[f];
}

static void count(struct exp_metrics *m, enum exp_mfam f, const char *svc, size_t svc_len, const struct labels *l,
		  uint64_t now_unix_ns)
{
	struct exp_series *s = series_get(m, f, svc, svc_len, l, now_unix_ns);
	if (s)
		s->count++;
}

static void observe_duration(struct exp_metrics *m, enum exp_mfam f, const char *svc, size_t svc_len,
			     const struct labels *l, uint64_t d_ns, uint64_t now_unix_ns)
{
	struct exp_series *s = series_get(m, f, svc, svc_len, l, now_unix_ns);
	if (!s)
		return;
	s->count++;
	s->sum_ns += d_ns;
	s->buckets[exp_hist_bucket(d_ns)]++;
}

/* ---- the attributes a span offers --------------------------------------- */

/* Keys the semantic-convention metrics read. */
enum {
	K_HTTP_METHOD,
	K_HTTP_STATUS,
	K_URL_SCHEME,
	K_ERROR_TYPE,
	K_PROTO_VERSION,
	K_SERVER_ADDRESS,
	K_SERVER_PORT,
	K_DB_SYSTEM_NAME,
	K_DB_SYSTEM, /* the pre-1.26 name */
	K_DB_OPERATION,
	K_DB_COLLECTION,
	K_DB_NAMESPACE,
	K_RPC_SYSTEM,
	K_RPC_SERVICE,
	K_RPC_METHOD,
	K_MESSAGING_SYSTEM,
	K_COUNT
};
static const char *const known_keys[K_COUNT] = {
	"http.request.method", "http.response.status_code", "url.scheme",     "error.type",
	"network.protocol.version", "server.address",     "server.port",    "db.system.name",
	"db.system",           "db.operation.name",       "db.collection.name", "db.namespace",
	"rpc.system",          "rpc.service",             "rpc.method",     "messaging.system",
};

static size_t known_len[K_COUNT];

struct span_attrs {
	const struct ts_attr *known[K_COUNT];
	const struct ts_attr *dims[EXP_METRICS_MAX_DIMS];
	struct ts_attr store[TS_MAX_ATTRS];
};

static bool key_is(const struct ts_str *k, const char *s)
{
	size_t n = strlen(s);
	return k->len == n && !memcmp(k->ptr, s, n);
}

static void read_attrs(const struct exp_metrics *m, const struct exp_rec_head *h, struct span_attrs *a)
{
	memset(a->known, 0, sizeof a->known);
	memset(a->dims, 0, sizeof a->dims);
	const uint8_t *p = h->attrs;
	for (uint8_t i = 0; i < h->n_attrs && i < TS_MAX_ATTRS; i++) {
		struct ts_attr *at = &a->store[i];
		p = exp_rec_attr(p, at);
		for (unsigned k = 0; k < K_COUNT; k++)
			if (at->key.len == known_len[k] && !a->known[k] && !memcmp(at->key.ptr, known_keys[k], known_len[k])) {
				a->known[k] = at;
				break;
			}
		for (size_t d = 0; d < m->cfg.n_dims; d++)
			if (!a->dims[d] && key_is(&at->key, m->cfg.dims[d]))
				a->dims[d] = at;
	}
}

static void lab_known(struct labels *l, const struct span_attrs *a, unsigned k)
{
	if (a->known[k])
		lab_attr(l, known_keys[k], a->known[k]);
}

static const char *const kind_names[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
					 "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"};
static const char *const status_names[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"};

static void semconv_metrics(struct exp_metrics *m, const struct exp_rec_head *h, const struct span_attrs *a,
			    const char *svc, size_t svc_len, uint64_t d, uint64_t now)
{
	/* Which convention a span follows, its attributes say. A metrics-only
	 * record has none: it counts in the span metrics and the graph only (its
	 * name, "GET", could be an HTTP method as well as a Redis command). */
	struct labels l = {.len = 0};
	bool http = a->known[K_HTTP_METHOD] != NULL;
	bool rpc = a->known[K_RPC_SYSTEM] != NULL;
	const struct ts_attr *db = a->known[K_DB_SYSTEM_NAME] ? a->known[K_DB_SYSTEM_NAME] : a->known[K_DB_SYSTEM];
	if (h->kind == TS_KIND_SERVER && http) {
		lab_known(&l, a, K_HTTP_METHOD);
		lab_known(&l, a, K_HTTP_STATUS);
		lab_known(&l, a, K_URL_SCHEME);
		lab_known(&l, a, K_ERROR_TYPE);
		lab_known(&l, a, K_PROTO_VERSION);
		observe_duration(m, EXP_MF_HTTP_SERVER, svc, svc_len, &l, d, now);
	} else if (h->kind == TS_KIND_CLIENT && http) {
		lab_known(&l, a, K_HTTP_METHOD);
		lab_known(&l, a, K_HTTP_STATUS);
		lab_known(&l, a, K_SERVER_ADDRESS);
		lab_known(&l, a, K_SERVER_PORT);
		lab_known(&l, a, K_ERROR_TYPE);
		lab_known(&l, a, K_PROTO_VERSION);
		observe_duration(m, EXP_MF_HTTP_CLIENT, svc, svc_len, &l, d, now);
	} else if (h->kind == TS_KIND_CLIENT && db) {
		lab_attr(&l, "db.system.name", db);
		lab_known(&l, a, K_DB_OPERATION);
		lab_known(&l, a, K_DB_COLLECTION);
		lab_known(&l, a, K_DB_NAMESPACE);
		lab_known(&l, a, K_SERVER_ADDRESS);
		lab_known(&l, a, K_SERVER_PORT);
		lab_known(&l, a, K_ERROR_TYPE);
		observe_duration(m, EXP_MF_DB_CLIENT, svc, svc_len, &l, d, now);
	} else if ((h->kind == TS_KIND_SERVER || h->kind == TS_KIND_CLIENT) && rpc) {
		lab_known(&l, a, K_RPC_SYSTEM);
		lab_known(&l, a, K_RPC_SERVICE);
		lab_known(&l, a, K_RPC_METHOD);
		lab_known(&l, a, K_ERROR_TYPE);
		observe_duration(m, h->kind == TS_KIND_SERVER ? EXP_MF_RPC_SERVER : EXP_MF_RPC_CLIENT, svc, svc_len,
				 &l, d, now);
	}
}

/* ---- the service graph -------------------------------------------------- */

static void graph_edge(struct exp_metrics *m, const char *client, size_t clen, const char *server, size_t slen,
		       const char *conn_type, bool failed, uint64_t client_ns, bool have_server, uint64_t server_ns,
		       uint64_t now)
{
	struct labels l = {.len = 0};
	lab_put(&l, "client", 6, client, clen);
	lab_put(&l, "server", 6, server, slen);
	if (conn_type)
		lab_cstr(&l, "connection_type", conn_type);
	/* one series: requests = the client histogram's count (exp_series_value) */
	struct exp_series *s = series_get(m, EXP_MF_SG_REQUEST, "", 0, &l, now);
	if (!s)
		return;
	s->count++;
	s->sum_ns += client_ns;
	s->buckets[exp_hist_bucket(client_ns)]++;
	s->edge->failed += failed;
	if (have_server) {
		s->edge->server_count++;
		s->edge->server_sum_ns += server_ns;
		s->edge->server_buckets[exp_hist_bucket(server_ns)]++;
	}
}

static size_t half_slot(const struct exp_metrics *m, const uint8_t key[24])
{
	return (size_t)hash_bytes(m->seed, key, 24) & m->hmask;
}

static void half_unlink(struct exp_metrics *m, struct half *x)
{
	struct half **pp = &m->htable[half_slot(m, x->key)];
	while (*pp != x)
		pp = &(*pp)->hnext;
	*pp = x->hnext;
	if (x->older)
		x->older->newer = x->newer;
	else
		m->oldest = x->newer;
	if (x->newer)
		x->newer->older = x->older;
	else
		m->newest = x->older;
	m->n_pending--;
}

/* A half whose other half never came: counted per the service it names. */
static void half_unpaired(struct exp_metrics *m, struct half *x, uint64_t now_unix_ns)
{
	struct labels l = {.len = 0};
	if (x->roles & ROLE_CLIENT)
		lab_put(&l, "client", 6, x->svc, x->svc_len);
	else
		lab_put(&l, "server", 6, x->svc, x->svc_len);
	count(m, EXP_MF_SG_UNPAIRED, "", 0, &l, now_unix_ns);
	m->unpaired++;
	half_unlink(m, x);
	half_free(m, x);
}

static void graph_half(struct exp_metrics *m, const struct exp_rec_head *h, uint8_t role, const char *svc,
		       size_t svc_len, uint64_t d, uint64_t now_ms, uint64_t now_unix_ns)
{
	uint8_t key[24];
	memcpy(key, h->trace_id, 16);
	memcpy(key + 16, role == ROLE_CLIENT ? h->span_id : h->parent_span_id, 8);
	size_t slot = half_slot(m, key);
	struct half *x = m->htable[slot];
	while (x && memcmp(x->key, key, 24))
		x = x->hnext;
	bool failed = h->status == TS_STATUS_ERROR;
	bool messaging = h->kind == TS_KIND_PRODUCER || h->kind == TS_KIND_CONSUMER;
	svc_len = ts_utf8_cut(svc, svc_len, EXP_METRICS_SERVICE_MAX);
	if (x && !(x->roles & role)) { /* the other half: an edge */
		if (role == ROLE_CLIENT)
			graph_edge(m, svc, svc_len, x->svc, x->svc_len, messaging ? "messaging_system" : NULL,
				   failed || x->failed, d, true, x->server_ns, now_unix_ns);
		else
			graph_edge(m, x->svc, x->svc_len, svc, svc_len, x->messaging ? "messaging_system" : NULL,
				   failed || x->failed, x->client_ns, true, d, now_unix_ns);
		m->paired++;
		half_unlink(m, x);
		half_free(m, x);
		return;
	}
	if (x) /* the same half again (a second server span under one client span) */
		half_unpaired(m, x, now_unix_ns);
	if (m->n_pending >= m->cfg.graph_max_pending && m->oldest) {
		m->evicted++;
		half_unpaired(m, m->oldest, now_unix_ns);
	}
	if (!m->cfg.graph_max_pending || !(x = half_new(m)))
		return;
	memcpy(x->key, key, 24);
	x->born_ms = now_ms;
	x->roles = role;
	x->failed = failed;
	x->messaging = messaging;
	if (role == ROLE_CLIENT)
		x->client_ns = d;
	else
		x->server_ns = d;
	x->svc_len = (uint8_t)svc_len;
	memcpy(x->svc, svc, svc_len);
	x->hnext = m->htable[slot];
	m->htable[slot] = x;
	x->older = m->newest;
	if (m->newest)
		m->newest->newer = x;
	else
		m->oldest = x;
	m->newest = x;
	m->n_pending++;
}

static void graph(struct exp_metrics *m, const struct exp_rec_head *h, const struct span_attrs *a,
		  const char *svc, size_t svc_len, uint64_t d, uint64_t now_ms, uint64_t now_unix_ns)
{
	static const uint8_t zero[8];
	const struct ts_attr *db = a->known[K_DB_SYSTEM_NAME] ? a->known[K_DB_SYSTEM_NAME] : a->known[K_DB_SYSTEM];
	if (h->kind == TS_KIND_CLIENT && db && db->type == TS_ATTR_STR) {
		/* A database has no server span of its own: the edge ends at a
		 * node named after the system (Tempo's virtual database node). */
		graph_edge(m, svc, ts_utf8_cut(svc, svc_len, EXP_METRICS_SERVICE_MAX), db->v.s.ptr,
			   ts_utf8_cut(db->v.s.ptr, db->v.s.len, EXP_METRICS_SERVICE_MAX), "database",
			   h->status == TS_STATUS_ERROR, d, false, 0, now_unix_ns);
		return;
	}
	if (h->kind == TS_KIND_CLIENT || h->kind == TS_KIND_PRODUCER)
		graph_half(m, h, ROLE_CLIENT, svc, svc_len, d, now_ms, now_unix_ns);
	else if ((h->kind == TS_KIND_SERVER || h->kind == TS_KIND_CONSUMER) && memcmp(h->parent_span_id, zero, 8))
		graph_half(m, h, ROLE_SERVER, svc, svc_len, d, now_ms, now_unix_ns);
}

/* ---- one span ----------------------------------------------------------- */

static void observe_one(struct exp_metrics *m, const uint8_t *rec, const char *svc, size_t svc_len,
			uint64_t now_ms, uint64_t now_unix_ns, struct span_attrs *a)
{
	struct exp_rec_head h;
	exp_rec_head(rec, &h);
	uint64_t d = h.end_ns > h.start_ns ? h.end_ns - h.start_ns : 0;
	read_attrs(m, &h, a);
	struct labels l = {.len = 0};
	lab_put(&l, "span.name", 9, h.name.ptr, h.name.len);
	lab_cstr(&l, "span.kind", kind_names[h.kind <= TS_KIND_CONSUMER ? h.kind : 0]);
	lab_cstr(&l, "status.code", status_names[h.status <= TS_STATUS_ERROR ? h.status : 0]);
	for (size_t i = 0; i < m->cfg.n_dims; i++)
		if (a->dims[i])
			lab_attr(&l, m->cfg.dims[i], a->dims[i]);
	/* calls and duration share their series: one lookup (exp_snap_family) */
	observe_duration(m, EXP_MF_CALLS, svc, svc_len, &l, d, now_unix_ns);
	semconv_metrics(m, &h, a, svc, svc_len, d, now_unix_ns);
	graph(m, &h, a, svc, svc_len, d, now_ms, now_unix_ns);
}

static void expire_locked(struct exp_metrics *m, uint64_t now_ms, uint64_t now_unix_ns)
{
	while (m->oldest && now_ms - m->oldest->born_ms >= m->cfg.graph_wait_ms)
		half_unpaired(m, m->oldest, now_unix_ns);
}

/* For STATUS (stats.h): relaxed stores, after each payload. */
static void publish(const struct exp_metrics *m)
{
	STAT_SET(metrics_series, m->n_series);
	STAT_SET(metrics_overflow_points, m->overflow_points);
	STAT_SET(metrics_only_records, m->metrics_only);
	STAT_SET(metrics_graph_pending, m->n_pending);
	STAT_SET(metrics_graph_paired, m->paired);
	STAT_SET(metrics_graph_unpaired, m->unpaired);
}

size_t exp_metrics_observe(struct exp_metrics *m, const struct exp_resource *res, const uint8_t *recs,
			   uint16_t n, uint64_t now_ms, uint64_t now_unix_ns)
{
	const char *svc = "unknown_service";
	size_t svc_len = 15;
	for (uint8_t i = 0; i < res->n_attrs; i++)
		if (res->attrs[i].type == TS_ATTR_STR && key_is(&res->attrs[i].key, "service.name")) {
			svc = res->attrs[i].v.s.ptr;
			svc_len = res->attrs[i].v.s.len;
			break;
		}
	struct span_attrs a; /* ~2.5 KB: on the stack, not per span */
	size_t only = 0;
	pthread_mutex_lock(&m->lock);
	expire_locked(m, now_ms, now_unix_ns);
	for (uint16_t i = 0; i < n; i++) {
		observe_one(m, recs, svc, svc_len, now_ms, now_unix_ns, &a);
		only += (recs[EXP_REC_FLAGS] & TS_SPAN_F_METRICS_ONLY) != 0;
		recs += exp_rec_u16(recs);
	}
	m->metrics_only += only;
	publish(m);
	pthread_mutex_unlock(&m->lock);
	return only;
}

void exp_metrics_expire(struct exp_metrics *m, uint64_t now_ms)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	pthread_mutex_lock(&m->lock);
	expire_locked(m, now_ms, (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec);
	publish(m);
	pthread_mutex_unlock(&m->lock);
}

void exp_metrics_counts(struct exp_metrics *m, struct exp_metrics_counts *o)
{
	pthread_mutex_lock(&m->lock);
	*o = (struct exp_metrics_counts){.series = m->n_series, .overflow_points = m->overflow_points,
					 .metrics_only_records = m->metrics_only, .graph_pending = m->n_pending,
					 .graph_paired = m->paired, .graph_unpaired = m->unpaired,
					 .graph_evicted = m->evicted};
	pthread_mutex_unlock(&m->lock);
}

static enum exp_mfam family_of(enum exp_mfam f)
{
	if (f == EXP_MF_DURATION)
		return EXP_MF_CALLS;
	if (f == EXP_MF_SG_FAILED || f == EXP_MF_SG_SERVER || f == EXP_MF_SG_CLIENT)
		return EXP_MF_SG_REQUEST;
	return f;
}

static size_t series_size(const struct exp_series *s)
{
	size_t n = sizeof *s + s->service_len + s->labels_len;
	return (n + 15) & ~(size_t)15;
}

bool exp_metrics_snapshot(struct exp_metrics *m, struct exp_metrics_snap *out)
{
	*out = (struct exp_metrics_snap){.mem = NULL};
	pthread_mutex_lock(&m->lock);
	size_t total = 0;
	for (int f = 0; f < EXP_MF_COUNT; f++)
		for (const struct exp_series *s = m->fam_head[f]; s; s = s->fam_next)
			total += series_size(s) + (s->edge ? sizeof *s->edge : 0);
	char *p = total ? malloc(total) : NULL;
	if (total && !p) {
		pthread_mutex_unlock(&m->lock);
		return false;
	}
	out->mem = p;
	for (int f = 0; f < EXP_MF_COUNT; f++) {
		struct exp_series **tail = &out->fam_head[f];
		for (const struct exp_series *s = m->fam_head[f]; s; s = s->fam_next) {
			struct exp_series *c = (struct exp_series *)(void *)p;
			size_t n = series_size(s);
			memcpy(c, s, sizeof *s + s->service_len + s->labels_len);
			p += n;
			if (s->edge) {
				c->edge = (struct exp_edge_extra *)(void *)p;
				memcpy(c->edge, s->edge, sizeof *s->edge);
				p += sizeof *s->edge;
			}
			c->hnext = NULL;
			c->fam_next = NULL;
			*tail = c;
			tail = &c->fam_next;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return true;
}

void exp_metrics_snap_free(struct exp_metrics_snap *s)
{
	free(s->mem);
	s->mem = NULL;
}

const struct exp_series *exp_snap_family(const struct exp_metrics_snap *s, enum exp_mfam f)
{
	return s->fam_head[family_of(f)];
}

bool exp_series_value(enum exp_mfam f, const struct exp_series *s, uint64_t *count, uint64_t *sum_ns,
		      const uint64_t **buckets)
{
	*count = s->count;
	*sum_ns = s->sum_ns;
	*buckets = s->buckets;
	if (f == EXP_MF_SG_FAILED) {
		*count = s->edge->failed;
	} else if (f == EXP_MF_SG_SERVER) {
		*count = s->edge->server_count;
		*sum_ns = s->edge->server_sum_ns;
		*buckets = s->edge->server_buckets;
		return *count != 0;
	}
	return true;
}

void exp_health_read(struct exp_health *h, size_t queue_depth)
{
	*h = (struct exp_health){
		.received = STAT_GET(received_spans),
		.exported = STAT_GET(exported_spans),
		.queue_depth = queue_depth,
		.dropped_queue_full = STAT_GET(dropped_queue_full),
		.dropped_client = STAT_GET(dropped_client),
		.dropped_export_failed = STAT_GET(dropped_export_failed),
		.dropped_sampled_out = STAT_GET(dropped_sampled_out),
		.dropped_rejected = STAT_GET(dropped_rejected),
		.dropped_spool_full = STAT_GET(dropped_spool_full),
		.malformed_frames = STAT_GET(dropped_malformed_frames),
		.oversized_frames = STAT_GET(dropped_oversized_frames),
	};
}

/* ---- lifetime ----------------------------------------------------------- */

static size_t pow2_at_least(size_t n)
{
	size_t p = 64;
	while (p < n && p < ((size_t)1 << 30))
		p <<= 1;
	return p;
}

struct exp_metrics *exp_metrics_new(const struct exp_metrics_config *c)
{
	struct exp_metrics *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->cfg = *c;
	for (unsigned k = 0; k < K_COUNT; k++)
		known_len[k] = strlen(known_keys[k]);
	if (getrandom(&m->seed, sizeof m->seed, GRND_NONBLOCK) != (ssize_t)sizeof m->seed)
		m->seed = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull;
	m->seed ^= 1469598103934665603ull;
	size_t ts = pow2_at_least((size_t)c->max_series * 2), hs = pow2_at_least((size_t)c->graph_max_pending * 2);
	m->table = calloc(ts, sizeof *m->table);
	m->htable = calloc(hs, sizeof *m->htable);
	if (!m->table || !m->htable || pthread_mutex_init(&m->lock, NULL)) {
		free(m->table);
		free(m->htable);
		free(m);
		return NULL;
	}
	m->table_mask = ts - 1;
	m->hmask = hs - 1;
	for (int f = 0; f < EXP_MF_COUNT; f++)
		m->fam_tail[f] = &m->fam_head[f];
	return m;
}

void exp_metrics_free(struct exp_metrics *m)
{
	if (!m)
		return;
	for (int f = 0; f < EXP_MF_COUNT; f++)
		for (struct exp_series *s = m->fam_head[f], *next; s; s = next) {
			next = s->fam_next;
			free(s->edge);
			free(s);
		}
	for (struct half *x = m->oldest, *next; x; x = next) {
		next = x->newer;
		free(x);
	}
	for (struct half *x = m->spare, *next; x; x = next) {
		next = x->hnext;
		free(x);
	}
	free(m->table);
	free(m->htable);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
