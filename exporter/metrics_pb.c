/* metrics_pb.c — the metrics as an OTLP ExportMetricsServiceRequest, built
 * as a protobuf-c message tree (proto/traceshim_otlp_metrics*.proto) and
 * packed. Once per OTEL_METRIC_EXPORT_INTERVAL, so clarity beats the trace
 * encoder's hand-written wire format (pb.c).
 *
 * Layout: one ResourceMetrics per service.name for the per-service families
 * (span metrics, HTTP/DB/RPC durations: their data points carry no
 * service.name, the resource does, as the spanmetrics connector emits them),
 * and one for the exporter itself ({service.name: traceshim-exporter}) with
 * the service graph and the health metrics. All sums are monotonic and
 * cumulative, all histograms cumulative with the bounds of metrics.h. */
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "traceshim_otlp_metrics_service.pb-c.h"

typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope Scope;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Metrics__V1__ResourceMetrics ResourceMetrics;
typedef Opentelemetry__Proto__Metrics__V1__ScopeMetrics ScopeMetrics;
typedef Opentelemetry__Proto__Metrics__V1__Metric Metric;
typedef Opentelemetry__Proto__Metrics__V1__Sum Sum;
typedef Opentelemetry__Proto__Metrics__V1__Gauge Gauge;
typedef Opentelemetry__Proto__Metrics__V1__Histogram Histogram;
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint NumberDataPoint;
typedef Opentelemetry__Proto__Metrics__V1__HistogramDataPoint HistogramDataPoint;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest Request;

#define CUMULATIVE OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_CUMULATIVE

/* Everything of one request comes from one arena, freed at once. */
struct arena {
	struct block {
		struct block *next;
		size_t used, cap;
		max_align_t data[];
	} *head;
	bool oom;
};

static void *arena_alloc(struct arena *a, size_t n)
{
	n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	if (!a->head || a->head->cap - a->head->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		struct block *b = malloc(sizeof *b + cap);
		if (!b) {
			a->oom = true;
			return NULL;
		}
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
	}
	void *p = (char *)a->head->data + a->head->used;
	a->head->used += n;
	memset(p, 0, n);
	return p;
}

static void arena_free(struct arena *a)
{
	for (struct block *b = a->head, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	a->head = NULL;
}

/* protobuf-c strings are NUL-terminated: a copy (an embedded NUL ends it). */
static char *astr(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);
	if (p)
		memcpy(p, s, n);
	return p;
}

static KeyValue *kv_str(struct arena *a, const char *k, size_t klen, const char *v, size_t vlen)
{
	KeyValue *kv = arena_alloc(a, sizeof *kv);
	AnyValue *av = arena_alloc(a, sizeof *av);
	char *ks = astr(a, k, klen), *vs = astr(a, v, vlen);
	if (!kv || !av || !ks || !vs)
		return NULL;
	opentelemetry__proto__common__v1__key_value__init(kv);
	opentelemetry__proto__common__v1__any_value__init(av);
	av->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
	av->string_value = vs;
	kv->key = ks;
	kv->value = av;
	return kv;
}

static bool series_attrs(struct arena *a, const struct exp_series *s, KeyValue ***out, size_t *n)
{
	*n = 0;
	*out = arena_alloc(a, (s->n_labels + 1) * sizeof **out);
	if (!*out)
		return false;
	size_t off = 0;
	struct exp_label l;
	while (exp_series_label(s, &off, &l)) {
		KeyValue *kv = kv_str(a, l.key, l.klen, l.val, l.vlen);
		if (!kv)
			return false;
		if (l.is_int) { /* the decimal text of an int64 we printed */
			kv->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
			kv->value->int_value = strtoll(kv->value->string_value, NULL, 10);
		}
		(*out)[(*n)++] = kv;
	}
	return true;
}

/* A resource's metrics being collected. */
struct rgroup {
	const char *svc;
	size_t svc_len;
	Metric **metrics;
	size_t n_metrics, cap;
};

struct build {
	struct arena a;
	struct rgroup *groups;
	size_t n_groups, cap_groups;
	uint64_t now, start;
	uint32_t points;
};

static struct rgroup *group_for(struct build *b, const char *svc, size_t len)
{
	for (size_t i = 0; i < b->n_groups; i++)
		if (b->groups[i].svc_len == len && !memcmp(b->groups[i].svc, svc, len))
			return &b->groups[i];
	if (b->n_groups == b->cap_groups) {
		size_t cap = b->cap_groups ? 2 * b->cap_groups : 8;
		struct rgroup *g = arena_alloc(&b->a, cap * sizeof *g);
		if (!g)
			return NULL;
		if (b->n_groups)
			memcpy(g, b->groups, b->n_groups * sizeof *g);
		b->groups = g;
		b->cap_groups = cap;
	}
	struct rgroup *g = &b->groups[b->n_groups++];
	*g = (struct rgroup){.svc = svc, .svc_len = len};
	return g;
}

static bool group_add(struct build *b, struct rgroup *g, Metric *m)
{
	if (g->n_metrics == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 16;
		Metric **v = arena_alloc(&b->a, cap * sizeof *v);
		if (!v)
			return false;
		if (g->n_metrics)
			memcpy(v, g->metrics, g->n_metrics * sizeof *v);
		g->metrics = v;
		g->cap = cap;
	}
	g->metrics[g->n_metrics++] = m;
	return true;
}

static Metric *new_metric(struct build *b, const char *name, const char *unit, const char *help)
{
	Metric *m = arena_alloc(&b->a, sizeof *m);
	if (!m)
		return NULL;
	opentelemetry__proto__metrics__v1__metric__init(m);
	m->name = (char *)name;
	m->unit = (char *)unit;
	m->description = (char *)help;
	return m;
}

static NumberDataPoint *number_point(struct build *b, uint64_t start, int64_t v)
{
	NumberDataPoint *p = arena_alloc(&b->a, sizeof *p);
	if (!p)
		return NULL;
	opentelemetry__proto__metrics__v1__number_data_point__init(p);
	p->start_time_unix_nano = start;
	p->time_unix_nano = b->now;
	p->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
	p->as_int = v;
	b->points++;
	return p;
}

static HistogramDataPoint *hist_point(struct build *b, const struct exp_series *s, uint64_t count, uint64_t sum_ns,
				      const uint64_t *buckets)
{
	HistogramDataPoint *p = arena_alloc(&b->a, sizeof *p);
	uint64_t *counts = arena_alloc(&b->a, EXP_HIST_BUCKETS * sizeof *counts);
	if (!p || !counts)
		return NULL;
	opentelemetry__proto__metrics__v1__histogram_data_point__init(p);
	p->start_time_unix_nano = s->start_unix_ns;
	p->time_unix_nano = b->now;
	p->count = count;
	p->sum = (double)sum_ns / 1e9;
	memcpy(counts, buckets, EXP_HIST_BUCKETS * sizeof *counts);
	p->n_bucket_counts = EXP_HIST_BUCKETS;
	p->bucket_counts = counts;
	p->n_explicit_bounds = EXP_HIST_BOUNDS;
	p->explicit_bounds = (double *)exp_hist_bounds_s;
	b->points++;
	return p;
}

/* The series of family f for one resource group (svc, or all of them for a
 * family that is not per service): one Metric. */
static bool family_metric(struct build *b, enum exp_mfam f, const struct exp_series *first, struct rgroup *g,
			  bool per_service)
{
	const struct exp_mfam_info *fi = &exp_mfam[f];
	size_t n = 0;
	uint64_t count, sum_ns;
	const uint64_t *buckets;
	/* The overflow series has no service: it goes with group 0, the exporter's own. */
	for (const struct exp_series *s = first; s; s = s->fam_next)
		n += !per_service || (s->service_len == g->svc_len && !memcmp(s->data, g->svc, g->svc_len));
	if (!n)
		return true;
	Metric *m = new_metric(b, fi->name, fi->unit, fi->help);
	if (!m)
		return false;
	void **points = arena_alloc(&b->a, n * sizeof *points);
	if (!points)
		return false;
	size_t k = 0;
	for (const struct exp_series *s = first; s; s = s->fam_next) {
		if (per_service && (s->service_len != g->svc_len || memcmp(s->data, g->svc, g->svc_len)))
			continue;
		if (!exp_series_value(f, s, &count, &sum_ns, &buckets))
			continue;
		KeyValue **attrs;
		size_t n_attrs;
		if (!series_attrs(&b->a, s, &attrs, &n_attrs))
			return false;
		if (fi->histogram) {
			HistogramDataPoint *p = hist_point(b, s, count, sum_ns, buckets);
			if (!p)
				return false;
			p->attributes = attrs;
			p->n_attributes = n_attrs;
			points[k++] = p;
		} else {
			NumberDataPoint *p = number_point(b, s->start_unix_ns, (int64_t)count);
			if (!p)
				return false;
			p->attributes = attrs;
			p->n_attributes = n_attrs;
			points[k++] = p;
		}
	}
	if (!k)
		return true;
	if (fi->histogram) {
		Histogram *h = arena_alloc(&b->a, sizeof *h);
		if (!h)
			return false;
		opentelemetry__proto__metrics__v1__histogram__init(h);
		h->aggregation_temporality = CUMULATIVE;
		h->data_points = (HistogramDataPoint **)points;
		h->n_data_points = k;
		m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM;
		m->histogram = h;
	} else {
		Sum *sum = arena_alloc(&b->a, sizeof *sum);
		if (!sum)
			return false;
		opentelemetry__proto__metrics__v1__sum__init(sum);
		sum->aggregation_temporality = CUMULATIVE;
		sum->is_monotonic = true;
		sum->data_points = (NumberDataPoint **)points;
		sum->n_data_points = k;
		m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM;
		m->sum = sum;
	}
	return group_add(b, g, m);
}

/* One health number as a Sum (monotonic) or a Gauge, with an optional
 * `reason` attribute. */
static bool health_metric(struct build *b, struct rgroup *g, const char *name, const char *unit,
			  const char *help, bool gauge, const char *const *reasons, const uint64_t *values,
			  size_t n)
{
	Metric *m = new_metric(b, name, unit, help);
	NumberDataPoint **points = arena_alloc(&b->a, n * sizeof *points);
	if (!m || !points)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!(points[i] = number_point(b, gauge ? 0 : b->start, (int64_t)values[i])))
			return false;
		if (reasons) {
			KeyValue **kv = arena_alloc(&b->a, sizeof *kv);
			if (!kv || !(kv[0] = kv_str(&b->a, "reason", 6, reasons[i], strlen(reasons[i]))))
				return false;
			points[i]->attributes = kv;
			points[i]->n_attributes = 1;
		}
	}
	if (gauge) {
		Gauge *ga = arena_alloc(&b->a, sizeof *ga);
		if (!ga)
			return false;
		opentelemetry__proto__metrics__v1__gauge__init(ga);
		ga->data_points = points;
		ga->n_data_points = n;
		m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE;
		m->gauge = ga;
	} else {
		Sum *s = arena_alloc(&b->a, sizeof *s);
		if (!s)
			return false;
		opentelemetry__proto__metrics__v1__sum__init(s);
		s->aggregation_temporality = CUMULATIVE;
		s->is_monotonic = true;
		s->data_points = points;
		s->n_data_points = n;
		m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM;
		m->sum = s;
	}
	return group_add(b, g, m);
}

static bool health(struct build *b, struct rgroup *g, const struct exp_health *h, const struct exp_metrics_counts *c)
{
	static const char *const reasons[] = {"queue_full", "client",   "export_failed",
					      "sampled_out", "rejected", "spool_full"};
	uint64_t dropped[] = {h->dropped_queue_full, h->dropped_client,   h->dropped_export_failed,
			      h->dropped_sampled_out, h->dropped_rejected, h->dropped_spool_full};
	return health_metric(b, g, "traceshim.exporter.spans.received", "{span}", "Spans received.", false, NULL,
			     &h->received, 1) &&
	       health_metric(b, g, "traceshim.exporter.spans.exported", "{span}", "Spans delivered.", false, NULL,
			     &h->exported, 1) &&
	       health_metric(b, g, "traceshim.exporter.spans.dropped", "{span}", "Spans lost, by reason.", false,
			     reasons, dropped, 6) &&
	       health_metric(b, g, "traceshim.exporter.queue.depth", "{span}", "Spans waiting in the queue.", true,
			     NULL, &h->queue_depth, 1) &&
	       health_metric(b, g, "traceshim.exporter.metric.series", "{series}", "Metric series held.", true, NULL,
			     &c->series, 1) &&
	       health_metric(b, g, "traceshim.exporter.metric.overflow_points", "{point}",
			     "Observations counted into an overflow series.", false, NULL, &c->overflow_points, 1);
}

static ResourceMetrics *resource_metrics(struct build *b, const struct rgroup *g, const char *svc, size_t svc_len)
{
	ResourceMetrics *rm = arena_alloc(&b->a, sizeof *rm);
	Resource *r = arena_alloc(&b->a, sizeof *r);
	ScopeMetrics *sm = arena_alloc(&b->a, sizeof *sm);
	ScopeMetrics **sms = arena_alloc(&b->a, sizeof *sms);
	Scope *scope = arena_alloc(&b->a, sizeof *scope);
	KeyValue **kv = arena_alloc(&b->a, sizeof *kv);
	if (!rm || !r || !sm || !sms || !scope || !kv || !(kv[0] = kv_str(&b->a, "service.name", 12, svc, svc_len)))
		return NULL;
	opentelemetry__proto__metrics__v1__resource_metrics__init(rm);
	opentelemetry__proto__resource__v1__resource__init(r);
	opentelemetry__proto__metrics__v1__scope_metrics__init(sm);
	opentelemetry__proto__common__v1__instrumentation_scope__init(scope);
	scope->name = "traceshim";
	scope->version = TRACESHIM_VERSION;
	r->attributes = kv;
	r->n_attributes = 1;
	sm->scope = scope;
	sm->metrics = g->metrics;
	sm->n_metrics = g->n_metrics;
	sms[0] = sm;
	rm->resource = r;
	rm->scope_metrics = sms;
	rm->n_scope_metrics = 1;
	return rm;
}

static bool build_all(struct build *b, const struct exp_metrics_snap *m, const struct exp_health *h,
		      const struct exp_metrics_counts *c)
{
	/* Group 0 is the exporter's own resource (service graph, health,
	 * overflow series); one more per service seen. */
	if (!group_for(b, "", 0))
		return false;
	for (int f = 0; f < EXP_MF_COUNT; f++)
		for (const struct exp_series *s = exp_snap_family(m, (enum exp_mfam)f); s; s = s->fam_next)
			if (exp_mfam[f].per_service && !s->overflow && !group_for(b, s->data, s->service_len))
				return false;
	for (size_t gi = 0; gi < b->n_groups; gi++)
		for (int f = 0; f < EXP_MF_COUNT; f++) {
			bool per = exp_mfam[f].per_service;
			if (!per && gi != 0)
				continue;
			if (!family_metric(b, (enum exp_mfam)f, exp_snap_family(m, (enum exp_mfam)f),
					   &b->groups[gi], per))
				return false;
		}
	return health(b, &b->groups[0], h, c);
}

bool exp_metrics_otlp(struct exp_metrics *m, const struct exp_health *h, uint64_t now_unix_ns,
		      uint64_t start_unix_ns, struct sbuf *out, uint32_t *points)
{
	struct build b = {.now = now_unix_ns, .start = start_unix_ns};
	struct exp_metrics_counts c;
	struct exp_metrics_snap snap;
	exp_metrics_counts(m, &c);
	if (!exp_metrics_snapshot(m, &snap)) {
		*points = 0;
		return false;
	}
	bool ok = build_all(&b, &snap, h, &c);
	Request req = OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_SERVICE_REQUEST__INIT;
	ResourceMetrics **rms = ok ? arena_alloc(&b.a, b.n_groups * sizeof *rms) : NULL;
	ok = ok && rms;
	for (size_t i = 0; ok && i < b.n_groups; i++) {
		const struct rgroup *g = &b.groups[i];
		rms[req.n_resource_metrics] = g->svc_len || i ? resource_metrics(&b, g, g->svc, g->svc_len)
							      : resource_metrics(&b, g, "traceshim-exporter", 18);
		ok = rms[req.n_resource_metrics++] != NULL;
	}
	req.resource_metrics = rms;
	if (ok) {
		size_t n = opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__get_packed_size(&req);
		if (sbuf_reserve(out, n)) {
			opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__pack(
				&req, (uint8_t *)out->p + out->len);
			out->len += n;
		} else {
			ok = false;
		}
	}
	exp_metrics_snap_free(&snap);
	*points = b.points;
	ok = ok && !b.a.oom;
	arena_free(&b.a);
	return ok;
}
