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
		size_t j = i; /* a run of plain ASCII goes in one copy */
		while (j < n && p[j] >= 0x20 && p[j] < 0x7f && p[j] != '\\' && p[j] != '"')
			j++;
		if (j > i) {
			sbuf_put(out, p + i, j - i);
			i = j;
			continue;
		}
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
	size_t n = exp_prom_label_name(name, sizeof name, key, klen);
	if (!*first)
		sbuf_putc(out, ',');
	sbuf_put(out, name, n);
	sbuf_put(out, "=\"", 2);
	exp_prom_escape(out, val, vlen);
	sbuf_putc(out, '"');
	*first = false;
}

/* service_name="…",label="…" of a series, made once per series (a
 * histogram repeats it on 17 lines). */
static void labels_text(struct sbuf *out, const struct exp_series *s)
{
	bool first = true;
	size_t off = 0;
	struct exp_label l;
	sbuf_reset(out);
	if (s->service_len)
		put_label(out, &first, "service.name", 12, s->data, s->service_len);
	while (exp_series_label(s, &off, &l))
		put_label(out, &first, l.key, l.klen, l.val, l.vlen);
}

static void put_u64(struct sbuf *out, uint64_t v)
{
	char num[24], *e = num + sizeof num, *q = e;
	do
		*--q = (char)('0' + v % 10);
	while (v /= 10);
	sbuf_put(out, q, (size_t)(e - q));
}

/* name{labels[,le="…"]} value — braces only when something is in them. */
static void put_line(struct sbuf *out, const char *name, const char *suffix, const struct sbuf *lab, const char *le,
		     uint64_t v)
{
	sbuf_put(out, name, strlen(name));
	sbuf_put(out, suffix, strlen(suffix));
	if (lab->len || le) {
		sbuf_putc(out, '{');
		sbuf_put(out, lab->p, lab->len);
		if (le) {
			if (lab->len)
				sbuf_putc(out, ',');
			sbuf_put(out, "le=\"", 4);
			sbuf_put(out, le, strlen(le));
			sbuf_putc(out, '"');
		}
		sbuf_putc(out, '}');
	}
	sbuf_putc(out, ' ');
	put_u64(out, v);
	sbuf_putc(out, '\n');
}

/* The bounds as `le` values, "%g" of exp_hist_bounds_s, then +Inf. */
static const char *const le_text[EXP_HIST_BUCKETS] = {"0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25",
							"0.5",   "0.75", "1",     "2.5",  "5",     "7.5", "10", "+Inf"};

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
	/* Text format 0.0.4: HELP and TYPE name a counter with its _total, as
	 * its samples are named (OpenMetrics would drop it; promtool checks). */
	sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fi->prom_name, fi->help, fi->prom_name,
		    fi->histogram ? "histogram" : "counter");
	struct sbuf lab;
	sbuf_init(&lab);
	for (; s; s = s->fam_next) {
		if (!exp_series_value(f, s, &count, &sum_ns, &buckets))
			continue;
		labels_text(&lab, s);
		if (!fi->histogram) {
			put_line(out, fi->prom_name, "", &lab, NULL, count);
			continue;
		}
		uint64_t cum = 0;
		for (unsigned b = 0; b < EXP_HIST_BUCKETS; b++) {
			cum += buckets[b];
			put_line(out, fi->prom_name, "_bucket", &lab, le_text[b], cum);
		}
		/* the sum in seconds, exactly: integer nanoseconds as s.nnnnnnnnn */
		sbuf_put(out, fi->prom_name, strlen(fi->prom_name));
		sbuf_put(out, "_sum", 4);
		if (lab.len) {
			sbuf_putc(out, '{');
			sbuf_put(out, lab.p, lab.len);
			sbuf_putc(out, '}');
		}
		sbuf_printf(out, " %" PRIu64 ".%09" PRIu64 "\n", sum_ns / 1000000000u, sum_ns % 1000000000u);
		put_line(out, fi->prom_name, "_count", &lab, NULL, count);
	}
	if (lab.oom)
		out->oom = true;
	sbuf_free(&lab);
}

static void put_simple(struct sbuf *out, const char *name, const char *type, const char *help, uint64_t v)
{
	sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

static void put_health(struct sbuf *out, const struct exp_health *h, const struct exp_metrics_counts *c)
{
	put_simple(out, "traceshim_exporter_spans_received_total", "counter",
		   "Spans received from traced processes (received_spans).", h->received);
	put_simple(out, "traceshim_exporter_spans_exported_total", "counter",
		   "Spans delivered to every trace sink (exported_spans).", h->exported);
	sbuf_printf(out, "# HELP traceshim_exporter_spans_dropped_total Spans lost, by reason (dropped_* in STATUS).\n"
			 "# TYPE traceshim_exporter_spans_dropped_total counter\n");
	const struct {
		const char *reason;
		uint64_t v;
	} d[] = {{"queue_full", h->dropped_queue_full},   {"client", h->dropped_client},
		 {"export_failed", h->dropped_export_failed}, {"sampled_out", h->dropped_sampled_out},
		 {"rejected", h->dropped_rejected},        {"spool_full", h->dropped_spool_full}};
	for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
		sbuf_printf(out, "traceshim_exporter_spans_dropped_total{reason=\"%s\"} %" PRIu64 "\n", d[i].reason,
			    d[i].v);
	sbuf_printf(out, "# HELP traceshim_exporter_frames_dropped_total Frames refused, by reason.\n"
			 "# TYPE traceshim_exporter_frames_dropped_total counter\n"
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
	struct exp_metrics_snap snap;
	exp_metrics_counts(m, &c);
	if (!exp_metrics_snapshot(m, &snap)) {
		out->oom = true;
		return;
	}
	for (int f = 0; f < EXP_MF_COUNT; f++) {
		const struct exp_series *s = exp_snap_family(&snap, (enum exp_mfam)f);
		if (s)
			put_family(out, (enum exp_mfam)f, s);
	}
	exp_metrics_snap_free(&snap);
	put_health(out, h, &c);
}
