/* metrics_prom.c — the Prometheus text exposition format (version 0.0.4) of
 * the metrics (metrics.h): counters as <family>, histograms as
 * <family>_bucket{le=…} (cumulative), _sum (seconds) and _count. Attribute
 * keys become label names with every character outside [a-zA-Z0-9_] turned
 * into '_' (service.name → service_name), as the OpenTelemetry Prometheus
 * exporters do. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "utf8.h"

size_t exp_prom_label_name(char *out, size_t cap, const char *key, size_t klen)
{
	size_t n = 0;
	if (cap < 2)
		return 0;
	if (klen && key[0] >= '0' && key[0] <= '9')
		out[n++] = '_';
	for (size_t i = 0; i < klen && n + 1 < cap; i++) {
		char c = key[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
		out[n++] = ok ? c : '_';
	}
	out[n] = '\0';
	return n;
}

void exp_prom_escape(struct sbuf *out, const char *v, size_t n)
{
	const uint8_t *p = (const uint8_t *)v;
	size_t i = 0;
	while (i < n) {
		uint32_t cp;
		size_t k = exp_utf8_next(p + i, n - i, &cp);
		if (cp == EXP_UTF8_BAD)
			sbuf_put(out, "\xEF\xBF\xBD", 3);
		else if (p[i] == '\\')
			sbuf_put(out, "\\\\", 2);
		else if (p[i] == '"')
			sbuf_put(out, "\\\"", 2);
		else if (p[i] == '\n')
			sbuf_put(out, "\\n", 2);
		else
			sbuf_put(out, p + i, k);
		i += k;
	}
}

static void put_label(struct sbuf *out, bool *first, const char *key, size_t klen, const char *val, size_t vlen)
{
	char name[TS_KEY_MAX + 2];
	exp_prom_label_name(name, sizeof name, key, klen);
	sbuf_printf(out, "%s%s=\"", *first ? "" : ",", name);
	exp_prom_escape(out, val, vlen);
	sbuf_putc(out, '"');
	*first = false;
}

/* {service_name="…",label="…"[,le="…"]} — braces only when something is in them. */
static void put_labels(struct sbuf *out, const struct exp_series *s, const char *le)
{
	bool first = true;
	size_t off = 0;
	struct exp_label l;
	bool any = s->service_len || s->labels_len || le;
	if (!any)
		return;
	sbuf_putc(out, '{');
	if (s->service_len)
		put_label(out, &first, "service.name", 12, s->data, s->service_len);
	while (exp_series_label(s, &off, &l))
		put_label(out, &first, l.key, l.klen, l.val, l.vlen);
	if (le)
		put_label(out, &first, "le", 2, le, strlen(le));
	sbuf_putc(out, '}');
}

static void put_family(struct sbuf *out, enum exp_mfam f, const struct exp_series *first)
{
	const struct exp_mfam_info *fi = &exp_mfam[f];
	uint64_t count, sum_ns;
	const uint64_t *buckets;
	const struct exp_series *s = first;
	while (s && !exp_series_value(f, s, &count, &sum_ns, &buckets))
		s = s->fam_next;
	if (!s)
		return; /* nothing to show: no header either */
	/* The TYPE line names the family without the counter's _total suffix
	 * (OpenMetrics does; the 0.0.4 parser accepts either). */
	size_t n = strlen(fi->prom_name);
	if (!fi->histogram && n > 6 && !strcmp(fi->prom_name + n - 6, "_total"))
		n -= 6;
	sbuf_printf(out, "# HELP %.*s %s\n# TYPE %.*s %s\n", (int)n, fi->prom_name, fi->help, (int)n,
		    fi->prom_name, fi->histogram ? "histogram" : "counter");
	for (; s; s = s->fam_next) {
		if (!exp_series_value(f, s, &count, &sum_ns, &buckets))
			continue;
		if (!fi->histogram) {
			sbuf_printf(out, "%s", fi->prom_name);
			put_labels(out, s, NULL);
			sbuf_printf(out, " %" PRIu64 "\n", count);
			continue;
		}
		uint64_t cum = 0;
		for (unsigned b = 0; b < EXP_HIST_BUCKETS; b++) {
			char le[32];
			cum += buckets[b];
			if (b < EXP_HIST_BOUNDS)
				snprintf(le, sizeof le, "%g", exp_hist_bounds_s[b]);
			else
				snprintf(le, sizeof le, "+Inf");
			sbuf_printf(out, "%s_bucket", fi->prom_name);
			put_labels(out, s, le);
			sbuf_printf(out, " %" PRIu64 "\n", cum);
		}
		sbuf_printf(out, "%s_sum", fi->prom_name);
		put_labels(out, s, NULL);
		sbuf_printf(out, " %" PRIu64 ".%09" PRIu64 "\n", sum_ns / 1000000000u, sum_ns % 1000000000u);
		sbuf_printf(out, "%s_count", fi->prom_name);
		put_labels(out, s, NULL);
		sbuf_printf(out, " %" PRIu64 "\n", count);
	}
}

static void put_simple(struct sbuf *out, const char *name, const char *type, const char *help, uint64_t v)
{
	size_t n = strlen(name);
	if (!strcmp(type, "counter") && n > 6 && !strcmp(name + n - 6, "_total"))
		n -= 6;
	sbuf_printf(out, "# HELP %.*s %s\n# TYPE %.*s %s\n%s %" PRIu64 "\n", (int)n, name, help, (int)n, name, type,
		    name, v);
}

static void put_health(struct sbuf *out, const struct exp_health *h, const struct exp_metrics_counts *c)
{
	put_simple(out, "traceshim_exporter_spans_received_total", "counter",
		   "Spans received from traced processes (received_spans).", h->received);
	put_simple(out, "traceshim_exporter_spans_exported_total", "counter",
		   "Spans delivered to every trace sink (exported_spans).", h->exported);
	sbuf_printf(out, "# HELP traceshim_exporter_spans_dropped Spans lost, by reason (dropped_* in STATUS).\n"
			 "# TYPE traceshim_exporter_spans_dropped counter\n");
	const struct {
		const char *reason;
		uint64_t v;
	} d[] = {{"queue_full", h->dropped_queue_full},   {"client", h->dropped_client},
		 {"export_failed", h->dropped_export_failed}, {"sampled_out", h->dropped_sampled_out},
		 {"rejected", h->dropped_rejected},        {"spool_full", h->dropped_spool_full}};
	for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
		sbuf_printf(out, "traceshim_exporter_spans_dropped_total{reason=\"%s\"} %" PRIu64 "\n", d[i].reason,
			    d[i].v);
	sbuf_printf(out, "# HELP traceshim_exporter_frames_dropped Frames refused, by reason.\n"
			 "# TYPE traceshim_exporter_frames_dropped counter\n"
			 "traceshim_exporter_frames_dropped_total{reason=\"malformed\"} %" PRIu64 "\n"
			 "traceshim_exporter_frames_dropped_total{reason=\"oversized\"} %" PRIu64 "\n",
		    h->malformed_frames, h->oversized_frames);
	put_simple(out, "traceshim_exporter_queue_depth", "gauge", "Spans waiting in the export queue.",
		   h->queue_depth);
	put_simple(out, "traceshim_exporter_metric_series", "gauge",
		   "Metric series held (TRACESHIM_METRICS_MAX_SERIES bounds it).", c->series);
	put_simple(out, "traceshim_exporter_metric_overflow_points_total", "counter",
		   "Observations counted into an overflow series because the series limit was reached.",
		   c->overflow_points);
	put_simple(out, "traceshim_exporter_metrics_only_records_total", "counter",
		   "Records of spans sampled out in the shim, counted in metrics only.", c->metrics_only_records);
	put_simple(out, "traceshim_exporter_service_graph_pending", "gauge",
		   "Client or server halves waiting for their other half.", c->graph_pending);
}

void exp_metrics_prometheus(struct exp_metrics *m, const struct exp_health *h, struct sbuf *out)
{
	struct exp_metrics_counts c;
	exp_metrics_counts(m, &c);
	exp_metrics_lock(m);
	for (int f = 0; f < EXP_MF_COUNT; f++) {
		const struct exp_series *s = exp_metrics_family(m, (enum exp_mfam)f);
		if (s)
			put_family(out, (enum exp_mfam)f, s);
	}
	exp_metrics_unlock(m);
	put_health(out, h, &c);
}
