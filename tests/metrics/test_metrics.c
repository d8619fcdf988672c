/* test_metrics.c — the pure parts of the exporter's metrics: histogram
 * bucketing, span metrics and the semantic-convention histograms, the service
 * graph's pairing (either order, failures, unpaired, duplicates, the pending
 * bound, database nodes), the series cap and its overflow series,
 * metrics-only records, the Prometheus exposition (names, escaping,
 * cumulative buckets), the OTLP encoding (unpacked with protobuf-c), the
 * /metrics request parser and the metrics configuration. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "metrics.h"
#include "metrics_serve.h"
#include "spanbuild.h"
#include "stats.h"
#include "traceshim_otlp_metrics_service.pb-c.h"

/* The test spans below are positional literals that leave the attribute
 * fields out when a span has none: zero is what they mean. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static struct ts_str str(const char *s) { return (struct ts_str){s, (uint16_t)strlen(s)}; }

static struct exp_resource *resource(const char *service)
{
	uint8_t buf[512];
	size_t n = tb_hello_frame(buf, sizeof buf, service, 42, 0);
	cr_assert_gt(n, 0);
	bool oom;
	struct exp_resource *r = exp_resource_from_hello(buf + TS_FRAME_HEADER_SIZE, n - TS_FRAME_HEADER_SIZE, &oom);
	cr_assert_not_null(r);
	return r;
}

/* Records to observe, back to back. */
struct recs {
	uint8_t buf[16384];
	struct ts_wbuf w;
	uint16_t n;
};

struct sp {
	uint8_t kind, status, flags;
	const char *name;
	uint8_t trace, id, parent; /* id bytes: trace id 0xAA.. + trace, span id 0xBB.. + id, parent likewise (0: root) */
	uint64_t dur_ns;
	const char *k1, *v1; /* string attributes */
	const char *k2;      /* an int attribute */
	int64_t v2;
};

static void add(struct recs *r, struct sp s)
{
	if (!r->w.p)
		ts_wbuf_init(&r->w, r->buf, sizeof r->buf);
	uint8_t tid[16], sid[8], pid[8] = {0};
	memset(tid, 0xAA, 16);
	tid[15] = s.trace;
	memset(sid, 0xBB, 8);
	sid[7] = s.id;
	if (s.parent) {
		memset(pid, 0xBB, 8);
		pid[7] = s.parent;
	}
	struct ts_span_view v = {.trace_id = tid, .span_id = sid, .parent_span_id = pid,
				 .start_ns = 1700000000000000000ull, .kind = s.kind, .status = s.status,
				 .flags = s.flags ? s.flags : TS_SPAN_F_SAMPLED, .name = str(s.name)};
	v.end_ns = v.start_ns + s.dur_ns;
	if (s.k1)
		v.attrs[v.n_attrs++] = (struct ts_attr){.key = str(s.k1), .type = TS_ATTR_STR, .v.s = str(s.v1)};
	if (s.k2)
		v.attrs[v.n_attrs++] = (struct ts_attr){.key = str(s.k2), .type = TS_ATTR_INT, .v.i = s.v2};
	ts_span_encode(&r->w, &v);
	cr_assert(!r->w.overflow);
	r->n++;
}

static struct exp_metrics *M;
static struct exp_resource *client_res, *server_res;
static struct sbuf out;

static struct exp_metrics *make(uint32_t max_series, uint32_t max_pending, const char *dim)
{
	struct exp_metrics_config c = {.max_series = max_series, .graph_wait_ms = 1000, .graph_max_pending = max_pending};
	if (dim)
		snprintf(c.dims[c.n_dims++], sizeof c.dims[0], "%s", dim);
	struct exp_metrics *m = exp_metrics_new(&c);
	cr_assert_not_null(m);
	return m;
}

static void setup(void)
{
	memset(&exp_stats, 0, sizeof exp_stats);
	client_res = resource("shop-client");
	server_res = resource("shop-server");
	sbuf_init(&out);
	M = make(1000, 1000, NULL);
}

static void teardown(void)
{
	exp_metrics_free(M);
	exp_resource_unref(client_res);
	exp_resource_unref(server_res);
	sbuf_free(&out);
}

TestSuite(metrics, .init = setup, .fini = teardown);

static void observe(struct exp_resource *res, struct recs *r, uint64_t now_ms)
{
	exp_metrics_observe(M, res, r->buf, r->n, now_ms, 1700000000000000000ull);
}

static const char *render(void)
{
	struct exp_health h = {.received = 7, .queue_depth = 3, .dropped_queue_full = 2};
	sbuf_reset(&out);
	exp_metrics_prometheus(M, &h, &out);
	cr_assert(sbuf_cstr(&out));
	return out.p;
}

/* The value on the exposition line that starts with `prefix` and a space. */
static long long line_value(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, prefix, n) && p[n] == ' ')
			return atoll(p + n + 1);
	return -1;
}

Test(metrics, bucket_bounds_are_inclusive)
{
	cr_assert_eq(exp_hist_bucket(0), 0);
	cr_assert_eq(exp_hist_bucket(5000000), 0);
	cr_assert_eq(exp_hist_bucket(5000001), 1);
	cr_assert_eq(exp_hist_bucket(10000000), 1);
	cr_assert_eq(exp_hist_bucket(999999999), 9);
	cr_assert_eq(exp_hist_bucket(1000000000), 9);
	cr_assert_eq(exp_hist_bucket(10000000000ull), 13);
	cr_assert_eq(exp_hist_bucket(10000000001ull), 14);
	cr_assert_eq(exp_hist_bucket(UINT64_MAX), 14);
	for (unsigned i = 0; i < EXP_HIST_BOUNDS; i++) {
		uint64_t ns = (uint64_t)(exp_hist_bounds_s[i] * 1e9 + 0.5);
		cr_assert_eq(exp_hist_bucket(ns), i, "bound %g", exp_hist_bounds_s[i]);
		cr_assert_eq(exp_hist_bucket(ns + 1), i + 1);
	}
}

Test(metrics, span_metrics_calls_and_duration)
{
	struct recs r = {0};
	add(&r, (struct sp){TS_KIND_SERVER, TS_STATUS_UNSET, 0, "GET", 1, 1, 9, 3000000, "http.request.method", "GET",
			    "http.response.status_code", 200});
	add(&r, (struct sp){TS_KIND_SERVER, TS_STATUS_UNSET, 0, "GET", 2, 2, 9, 20000000, "http.request.method", "GET",
			    "http.response.status_code", 200});
	add(&r, (struct sp){TS_KIND_SERVER, TS_STATUS_ERROR, 0, "GET", 3, 3, 9, 2000000000, "http.request.method",
			    "GET", "http.response.status_code", 500});
	observe(server_res, &r, 0);
	const char *t = render();
	cr_assert_eq(line_value(t, "traces_span_metrics_calls_total{service_name=\"shop-server\",span_name=\"GET\","
				   "span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"}"), 2, "%s", t);
	cr_assert_eq(line_value(t, "traces_span_metrics_calls_total{service_name=\"shop-server\",span_name=\"GET\","
				   "span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_ERROR\"}"), 1);
	const char *lab = "service_name=\"shop-server\",span_name=\"GET\",span_kind=\"SPAN_KIND_SERVER\","
			  "status_code=\"STATUS_CODE_UNSET\"";
	char k[512];
	/* cumulative: 3 ms in le=0.005, 20 ms from le=0.025 on */
	snprintf(k, sizeof k, "traces_span_metrics_duration_seconds_bucket{%s,le=\"0.005\"}", lab);
	cr_assert_eq(line_value(t, k), 1);
	snprintf(k, sizeof k, "traces_span_metrics_duration_seconds_bucket{%s,le=\"0.01\"}", lab);
	cr_assert_eq(line_value(t, k), 1);
	snprintf(k, sizeof k, "traces_span_metrics_duration_seconds_bucket{%s,le=\"0.025\"}", lab);
	cr_assert_eq(line_value(t, k), 2);
	snprintf(k, sizeof k, "traces_span_metrics_duration_seconds_bucket{%s,le=\"+Inf\"}", lab);
	cr_assert_eq(line_value(t, k), 2);
	snprintf(k, sizeof k, "traces_span_metrics_duration_seconds_count{%s}", lab);
	cr_assert_eq(line_value(t, k), 2);
	snprintf(k, sizeof k, "traces_span_metrics_duration_seconds_sum{%s} 0.023000000\n", lab);
	cr_assert_not_null(strstr(t, k), "%s", t);
	cr_assert_not_null(strstr(t, "# TYPE traces_span_metrics_calls_total counter\n"));
	cr_assert_not_null(strstr(t, "# TYPE traces_span_metrics_duration_seconds histogram\n"));
	/* the semantic-convention histogram, with its standard attributes */
	cr_assert_eq(line_value(t, "http_server_request_duration_seconds_count{service_name=\"shop-server\","
				   "http_request_method=\"GET\",http_response_status_code=\"500\"}"), 1, "%s", t);
	/* health */
	cr_assert_eq(line_value(t, "traceshim_exporter_spans_received_total"), 7);
	cr_assert_eq(line_value(t, "traceshim_exporter_queue_depth"), 3);
	cr_assert_eq(line_value(t, "traceshim_exporter_spans_dropped_total{reason=\"queue_full\"}"), 2);
}

Test(metrics, extra_dimensions_from_attributes)
{
	exp_metrics_free(M);
	M = make(1000, 1000, "http.response.status_code");
	struct recs r = {0};
	add(&r, (struct sp){TS_KIND_SERVER, 0, 0, "GET", 1, 1, 9, 1000, NULL, NULL, "http.response.status_code", 404});
	add(&r, (struct sp){TS_KIND_SERVER, 0, 0, "GET", 2, 2, 9, 1000, NULL, NULL, NULL, 0});
	observe(server_res, &r, 0);
	const char *t = render();
	cr_assert_eq(line_value(t, "traces_span_metrics_calls_total{service_name=\"shop-server\",span_name=\"GET\","
				   "span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\","
				   "http_response_status_code=\"404\"}"), 1, "%s", t);
	/* a span without the attribute has no such label */
	cr_assert_eq(line_value(t, "traces_span_metrics_calls_total{service_name=\"shop-server\",span_name=\"GET\","
				   "span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"}"), 1);
}

static long long edge(const char *t, const char *family, const char *client, const char *server)
{
	char k[256];
	snprintf(k, sizeof k, "%s{client=\"%s\",server=\"%s\"}", family, client, server);
	return line_value(t, k);
}

Test(metrics, graph_pairs_in_either_order)
{
	struct recs c = {0}, s = {0};
	/* request 1: server first; request 2: client first; request 3 fails */
	add(&s, (struct sp){TS_KIND_SERVER, 0, 0, "GET", 1, 11, 1, 1000000});
	add(&c, (struct sp){TS_KIND_CLIENT, 0, 0, "GET", 1, 1, 0, 3000000});
	add(&c, (struct sp){TS_KIND_CLIENT, 0, 0, "GET", 2, 2, 0, 3000000});
	add(&c, (struct sp){TS_KIND_CLIENT, TS_STATUS_ERROR, 0, "GET", 3, 3, 0, 3000000});
	observe(server_res, &s, 0);
	observe(client_res, &c, 0);
	struct recs s2 = {0};
	add(&s2, (struct sp){TS_KIND_SERVER, 0, 0, "GET", 2, 12, 2, 1000000});
	add(&s2, (struct sp){TS_KIND_SERVER, TS_STATUS_ERROR, 0, "GET", 3, 13, 3, 1000000});
	observe(server_res, &s2, 0);
	const char *t = render();
	cr_assert_eq(edge(t, "traces_service_graph_request_total", "shop-client", "shop-server"), 3, "%s", t);
	cr_assert_eq(edge(t, "traces_service_graph_request_failed_total", "shop-client", "shop-server"), 1);
	cr_assert_eq(edge(t, "traces_service_graph_request_server_seconds_count", "shop-client", "shop-server"), 3);
	cr_assert_eq(edge(t, "traces_service_graph_request_client_seconds_count", "shop-client", "shop-server"), 3);
	struct exp_metrics_counts n;
	exp_metrics_counts(M, &n);
	cr_assert_eq(n.graph_paired, 3);
	cr_assert_eq(n.graph_pending, 0);
	/* a root server span (no parent: nobody called it) waits for no one */
	struct recs root = {0};
	add(&root, (struct sp){TS_KIND_SERVER, 0, 0, "GET", 4, 14, 0, 1000});
	observe(server_res, &root, 0);
	exp_metrics_counts(M, &n);
	cr_assert_eq(n.graph_pending, 0);
}

Test(metrics, graph_unpaired_after_the_wait)
{
	struct recs c = {0};
	add(&c, (struct sp){TS_KIND_CLIENT, 0, 0, "GET", 1, 1, 0, 1000});
	observe(client_res, &c, 100);
	struct recs s = {0};
	add(&s, (struct sp){TS_KIND_SERVER, 0, 0, "GET", 2, 12, 7, 1000});
	observe(server_res, &s, 500);
	exp_metrics_expire(M, 1099); /* the client half waited 999 ms of 1000 */
	struct exp_metrics_counts n;
	exp_metrics_counts(M, &n);
	cr_assert_eq(n.graph_pending, 2);
	exp_metrics_expire(M, 1100);
	exp_metrics_counts(M, &n);
	cr_assert_eq(n.graph_pending, 1);
	cr_assert_eq(n.graph_unpaired, 1);
	exp_metrics_expire(M, 1500);
	const char *t = render();
	cr_assert_eq(line_value(t, "traces_service_graph_unpaired_spans_total{client=\"shop-client\"}"), 1, "%s", t);
	cr_assert_eq(line_value(t, "traces_service_graph_unpaired_spans_total{server=\"shop-server\"}"), 1);
	cr_assert_null(strstr(t, "traces_service_graph_request_total{"));
	/* the late server half of request 1 finds no one either */
	struct recs late = {0};
	add(&late, (struct sp){TS_KIND_SERVER, 0, 0, "GET", 1, 11, 1, 1000});
	observe(server_res, &late, 1600);
	exp_metrics_counts(M, &n);
	cr_assert_eq(n.graph_pending, 1);
}

Test(metrics, graph_duplicate_half_and_pending_bound)
{
	exp_metrics_free(M);
	M = make(1000, 2, NULL);
	struct recs s = {0};
	/* two server spans under one client span: the first is given up */
	add(&s, (struct sp){TS_KIND_SERVER, 0, 0, "GET", 1, 11, 1, 1000});
	add(&s, (struct sp){TS_KIND_SERVER, 0, 0, "GET", 1, 12, 1, 1000});
	observe(server_res, &s, 0);
	struct exp_metrics_counts n;
	exp_metrics_counts(M, &n);
	cr_assert_eq(n.graph_unpaired, 1);
	cr_assert_eq(n.graph_pending, 1);
	struct recs c = {0};
	add(&c, (struct sp){TS_KIND_CLIENT, 0, 0, "GET", 5, 5, 0, 1000});
	add(&c, (struct sp){TS_KIND_CLIENT, 0, 0, "GET", 6, 6, 0, 1000}); /* over the bound of 2: oldest out */
	observe(client_res, &c, 0);
	exp_metrics_counts(M, &n);
	cr_assert_eq(n.graph_pending, 2);
	cr_assert_eq(n.graph_unpaired, 2);
	cr_assert_eq(n.graph_evicted, 1);
	/* the evicted one was the oldest: request 1's server half */
	struct recs c1 = {0};
	add(&c1, (struct sp){TS_KIND_CLIENT, 0, 0, "GET", 1, 1, 0, 1000});
	observe(client_res, &c1, 0);
	exp_metrics_counts(M, &n);
	cr_assert_eq(n.graph_paired, 0);
}

Test(metrics, database_client_is_an_edge_to_the_system)
{
	struct recs c = {0};
	add(&c, (struct sp){TS_KIND_CLIENT, 0, 0, "SELECT", 1, 1, 0, 2000000, "db.system.name", "postgresql",
			    "server.port", 5432});
	add(&c, (struct sp){TS_KIND_CLIENT, TS_STATUS_ERROR, 0, "GET", 2, 2, 0, 2000000, "db.system", "redis"});
	observe(client_res, &c, 0);
	const char *t = render();
	cr_assert_eq(line_value(t, "traces_service_graph_request_total{client=\"shop-client\",server=\"postgresql\","
				   "connection_type=\"database\"}"), 1, "%s", t);
	cr_assert_eq(line_value(t, "traces_service_graph_request_failed_total{client=\"shop-client\",server=\"redis\","
				   "connection_type=\"database\"}"), 1);
	cr_assert_eq(line_value(t, "db_client_operation_duration_seconds_count{service_name=\"shop-client\","
				   "db_system_name=\"postgresql\",server_port=\"5432\"}"), 1);
	cr_assert_null(strstr(t, "request_server_seconds"), "a database has no server span");
	struct exp_metrics_counts n;
	exp_metrics_counts(M, &n);
	cr_assert_eq(n.graph_pending, 0);
}

Test(metrics, messaging_pairs_producer_and_consumer)
{
	struct recs p = {0}, c = {0};
	add(&p, (struct sp){TS_KIND_PRODUCER, 0, 0, "publish", 1, 1, 0, 1000, "messaging.system", "kafka"});
	add(&c, (struct sp){TS_KIND_CONSUMER, 0, 0, "process", 1, 2, 1, 1000, "messaging.system", "kafka"});
	observe(client_res, &p, 0);
	observe(server_res, &c, 0);
	const char *t = render();
	cr_assert_eq(line_value(t, "traces_service_graph_request_total{client=\"shop-client\",server=\"shop-server\","
				   "connection_type=\"messaging_system\"}"), 1, "%s", t);
}

Test(metrics, series_cap_overflows_into_one_series)
{
	exp_metrics_free(M);
	M = make(6, 1000, NULL);
	struct recs r = {0};
	char names[10][8];
	for (int i = 0; i < 10; i++) {
		snprintf(names[i], sizeof names[i], "op%d", i);
		add(&r, (struct sp){TS_KIND_INTERNAL, 0, 0, names[i], 1, (uint8_t)(i + 1), 0, 1000});
	}
	observe(server_res, &r, 0);
	struct exp_metrics_counts n;
	exp_metrics_counts(M, &n);
	cr_assert_eq(n.series, 6, "series %llu", (unsigned long long)n.series);
	/* ops 0-5 got a series each (calls and duration share one); 4 overflowed */
	cr_assert_eq(n.overflow_points, 4);
	const char *t = render();
	cr_assert_eq(line_value(t, "traces_span_metrics_calls_total{otel_metric_overflow=\"true\"}"), 4, "%s", t);
	cr_assert_eq(line_value(t, "traces_span_metrics_duration_seconds_count{otel_metric_overflow=\"true\"}"), 4);
	long long total = 0;
	for (int i = 0; i < 6; i++) {
		char k[256];
		snprintf(k, sizeof k, "traces_span_metrics_calls_total{service_name=\"shop-server\",span_name=\"op%d\","
				      "span_kind=\"SPAN_KIND_INTERNAL\",status_code=\"STATUS_CODE_UNSET\"}", i);
		total += line_value(t, k);
	}
	cr_assert_eq(total + 4, 10, "no observation is lost");
	cr_assert_eq(line_value(t, "traceshim_exporter_metric_overflow_points_total"), 4);
	cr_assert_eq(STAT_GET(metrics_series), 6);
}

Test(metrics, metrics_only_records_count_and_are_reported)
{
	struct recs r = {0};
	add(&r, (struct sp){TS_KIND_SERVER, TS_STATUS_ERROR, TS_SPAN_F_METRICS_ONLY, "POST", 1, 11, 1, 1000});
	add(&r, (struct sp){TS_KIND_SERVER, 0, 0, "GET", 2, 12, 2, 1000});
	size_t only = exp_metrics_observe(M, server_res, r.buf, r.n, 0, 1);
	cr_assert_eq(only, 1);
	const char *t = render();
	cr_assert_eq(line_value(t, "traces_span_metrics_calls_total{service_name=\"shop-server\",span_name=\"POST\","
				   "span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_ERROR\"}"), 1, "%s", t);
	/* no attributes: no semantic-convention histogram (its name alone does not say HTTP) */
	cr_assert_null(strstr(t, "http_server_request_duration"), "%s", t);
	/* but the graph pairs it */
	struct recs c = {0};
	add(&c, (struct sp){TS_KIND_CLIENT, 0, TS_SPAN_F_METRICS_ONLY, "POST", 1, 1, 0, 1000});
	cr_assert_eq(exp_metrics_observe(M, client_res, c.buf, c.n, 0, 1), 1);
	t = render();
	cr_assert_eq(line_value(t, "traces_service_graph_failed_total{client=\"shop-client\",server=\"shop-server\"}"),
		     -1);
	cr_assert_eq(line_value(t, "traces_service_graph_request_failed_total{client=\"shop-client\",server=\"shop-server\"}"),
		     1, "%s", t);
	cr_assert_eq(STAT_GET(metrics_only_records), 2);
}

Test(metrics, prometheus_names_and_escaping)
{
	char n[64];
	cr_assert_eq(exp_prom_label_name(n, sizeof n, "http.request.method", 19), 19);
	cr_assert_str_eq(n, "http_request_method");
	exp_prom_label_name(n, sizeof n, "9lives", 6);
	cr_assert_str_eq(n, "_9lives");
	exp_prom_label_name(n, sizeof n, "a-b/c:d", 7);
	cr_assert_str_eq(n, "a_b_c_d");
	struct sbuf b;
	sbuf_init(&b);
	exp_prom_escape(&b, "a\"b\\c\nd\xff" "e\xc3\xa9", 11);
	cr_assert(sbuf_cstr(&b));
	cr_assert_str_eq(b.p, "a\\\"b\\\\c\\nd\xEF\xBF\xBD" "e\xc3\xa9");
	sbuf_free(&b);
	/* a hostile span name in a label */
	struct recs r = {0};
	add(&r, (struct sp){TS_KIND_SERVER, 0, 0, "x\"}\n# EVIL 1", 1, 1, 0, 1000});
	observe(server_res, &r, 0);
	const char *t = render();
	cr_assert_null(strstr(t, "\n# EVIL"), "%s", t);
	cr_assert_not_null(strstr(t, "span_name=\"x\\\"}\\n# EVIL 1\""));
}

Test(metrics, otlp_request_unpacks)
{
	struct recs r = {0};
	add(&r, (struct sp){TS_KIND_SERVER, TS_STATUS_ERROR, 0, "GET", 1, 11, 1, 30000000, "http.request.method", "GET",
			    "http.response.status_code", 500});
	observe(server_res, &r, 0);
	struct recs c = {0};
	add(&c, (struct sp){TS_KIND_CLIENT, 0, 0, "GET", 1, 1, 0, 40000000});
	observe(client_res, &c, 0);
	struct exp_health h = {.received = 2};
	uint32_t points;
	cr_assert(exp_metrics_otlp(M, &h, 1700000001000000000ull, 1700000000000000000ull, &out, &points));
	Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest *req =
		opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(
			NULL, out.len, (const uint8_t *)out.p);
	cr_assert_not_null(req);
	cr_assert_eq(req->n_resource_metrics, 3, "exporter + two services");
	size_t seen_calls = 0, seen_int_status = 0, n_points = 0;
	for (size_t i = 0; i < req->n_resource_metrics; i++) {
		Opentelemetry__Proto__Metrics__V1__ResourceMetrics *rm = req->resource_metrics[i];
		const char *svc = rm->resource->attributes[0]->value->string_value;
		Opentelemetry__Proto__Metrics__V1__ScopeMetrics *sm = rm->scope_metrics[0];
		cr_assert_str_eq(sm->scope->name, "traceshim");
		for (size_t j = 0; j < sm->n_metrics; j++) {
			Opentelemetry__Proto__Metrics__V1__Metric *m = sm->metrics[j];
			if (m->data_case == OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM)
				n_points += m->sum->n_data_points;
			else if (m->data_case == OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM)
				n_points += m->histogram->n_data_points;
			else
				n_points += m->gauge->n_data_points;
			if (!strcmp(m->name, "traces.span.metrics.calls") && !strcmp(svc, "shop-server")) {
				cr_assert_eq(m->sum->n_data_points, 1);
				cr_assert_eq(m->sum->data_points[0]->as_int, 1);
				cr_assert(m->sum->is_monotonic);
				seen_calls++;
			}
			if (!strcmp(m->name, "http.server.request.duration")) {
				Opentelemetry__Proto__Metrics__V1__HistogramDataPoint *p = m->histogram->data_points[0];
				cr_assert_eq(p->count, 1);
				cr_assert_eq(p->n_bucket_counts, EXP_HIST_BUCKETS);
				cr_assert_eq(p->bucket_counts[3], 1, "30 ms is in (0.025, 0.05]");
				cr_assert_float_eq(p->sum, 0.03, 1e-12);
				for (size_t k = 0; k < p->n_attributes; k++)
					if (!strcmp(p->attributes[k]->key, "http.response.status_code")) {
						cr_assert_eq(p->attributes[k]->value->value_case,
							     OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE);
						cr_assert_eq(p->attributes[k]->value->int_value, 500);
						seen_int_status++;
					}
			}
			if (!strcmp(m->name, "traces_service_graph_request_total"))
				cr_assert_str_eq(svc, "traceshim-exporter");
		}
	}
	cr_assert_eq(seen_calls, 1);
	cr_assert_eq(seen_int_status, 1);
	cr_assert_eq(n_points, points);
	opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(req, NULL);
}

Test(metrics, http_request_line)
{
	bool head;
	cr_assert_eq(exp_metrics_http_status("GET /metrics HTTP/1.1\r\n\r\n", 25, &head), 200);
	cr_assert(!head);
	cr_assert_eq(exp_metrics_http_status("GET /metrics?x=1 HTTP/1.0\r\n\r\n", 29, &head), 200);
	cr_assert_eq(exp_metrics_http_status("HEAD /metrics HTTP/1.1\r\n\r\n", 26, &head), 200);
	cr_assert(head);
	cr_assert_eq(exp_metrics_http_status("GET / HTTP/1.1\r\n\r\n", 18, &head), 404);
	cr_assert_eq(exp_metrics_http_status("GET /metricsx HTTP/1.1\r\n\r\n", 26, &head), 404);
	cr_assert_eq(exp_metrics_http_status("POST /metrics HTTP/1.1\r\n\r\n", 26, &head), 405);
	cr_assert_eq(exp_metrics_http_status("\x16\x03\x01garbage", 10, &head), 400);
	cr_assert_eq(exp_metrics_http_status("GET /metrics\r\n\r\n", 16, &head), 400);
}

static const char *const *fake_env;
static const char *fake_getenv(const char *name)
{
	for (const char *const *e = fake_env; *e; e += 2)
		if (!strcmp(e[0], name))
			return e[1];
	return NULL;
}

Test(metrics, config_from_the_environment)
{
	static const char *const env1[] = {"TRACESHIM_SOCKET", "/tmp/ts-metrics-test.sock",
					   "OTEL_METRICS_EXPORTER", " prometheus , otlp,bogus",
					   "OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/",
					   "OTEL_EXPORTER_PROMETHEUS_PORT", "9999",
					   "OTEL_METRIC_EXPORT_INTERVAL", "1500",
					   "TRACESHIM_METRICS_DIMENSIONS", "http.request.method, ,http.response.status_code",
					   "TRACESHIM_METRICS_MAX_SERIES", "77",
					   NULL};
	fake_env = env1;
	static struct exp_config c;
	char err[256];
	cr_assert_eq(exp_config_load(&c, fake_getenv, err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.metrics_exporters, EXP_METRICS_PROMETHEUS | EXP_METRICS_OTLP);
	cr_assert_str_eq(c.metrics_endpoint, "http://collector:4318/v1/metrics");
	cr_assert_str_eq(c.prom_host, "localhost");
	cr_assert_eq(c.prom_port, 9999);
	cr_assert_eq(c.metric_interval_ms, 1500);
	cr_assert_eq(c.n_metrics_dims, 2);
	cr_assert_str_eq(c.metrics_dims[1], "http.response.status_code");
	cr_assert_eq(c.metrics_max_series, 77);
	exp_config_free(&c);

	static const char *const env2[] = {"TRACESHIM_SOCKET", "/tmp/ts-metrics-test.sock",
					   "OTEL_METRICS_EXPORTER", "otlp",
					   "OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318",
					   "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:1/x",
					   "OTEL_EXPORTER_PROMETHEUS_PORT", "99999",
					   NULL};
	fake_env = env2;
	cr_assert_eq(exp_config_load(&c, fake_getenv, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(c.metrics_endpoint, "http://m:1/x", "the metrics endpoint is used as is");
	cr_assert_eq(c.prom_port, 9464, "a bad port gets the default");
	cr_assert_eq(c.metric_interval_ms, 60000);
	exp_config_free(&c);

	static const char *const env3[] = {"TRACESHIM_SOCKET", "/tmp/ts-metrics-test.sock", NULL};
	fake_env = env3;
	cr_assert_eq(exp_config_load(&c, fake_getenv, err, sizeof err), 0, "%s", err);
	cr_assert_eq(c.metrics_exporters, 0, "metrics are off by default");
	exp_config_free(&c);
	char dims[16][129];
	size_t nd;
	cr_assert_eq(exp_parse_dims("a.b,service.name,le,a_b,__x,9z,span_kind, x ", dims, 16, &nd), 5);
	cr_assert_eq(nd, 3);
	cr_assert_str_eq(dims[0], "a.b");
	cr_assert_str_eq(dims[1], "9z");
	cr_assert_str_eq(dims[2], "x");
	unsigned unknown;
	cr_assert_eq(exp_parse_metrics_exporters("none", &unknown), 0);
	cr_assert_eq(unknown, 0);
	cr_assert_eq(exp_parse_metrics_exporters("prometheus,zipkin", &unknown), EXP_METRICS_PROMETHEUS);
	cr_assert_eq(unknown, 1);
}
