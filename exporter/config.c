/* config.c — see config.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static ts_getenv_fn env_fn;

static const char *env(const char *name)
{
	const char *v = env_fn ? env_fn(name) : getenv(name);
	return (v && *v) ? v : NULL;
}

/* The signal-specific variable wins over the generic one (OTel spec). */
static const char *env2(const char *specific, const char *generic)
{
	const char *v = env(specific);
	return v ? v : env(generic);
}

bool exp_parse_u64(const char *s, uint64_t *out)
{
	if (!s || !isdigit((unsigned char)*s))
		return false;
	uint64_t v = 0;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s) || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

bool exp_parse_ratio(const char *s, double *out)
{
	if (!s || !*s || isspace((unsigned char)*s))
		return false;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < 0.0 || v > 1.0)
		return false;
	*out = v;
	return true;
}

int exp_parse_uids(const char *s, unsigned *out, size_t cap, size_t *n)
{
	int bad = 0;
	*n = 0;
	while (s && *s) {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		size_t len = strcspn(s, ", \t");
		if (!len)
			break;
		char item[24];
		uint64_t v;
		if (len >= sizeof item) {
			bad++;
		} else {
			memcpy(item, s, len);
			item[len] = '\0';
			if (!exp_parse_u64(item, &v) || v >= UINT32_MAX)
				bad++;
			else if (*n < cap)
				out[(*n)++] = (unsigned)v;
			else
				bad++;
		}
		s += len;
	}
	return bad;
}

static uint64_t num_env(const char *name, uint64_t dflt, uint64_t min, uint64_t max)
{
	const char *s = env(name);
	uint64_t v;
	if (!s)
		return dflt;
	if (!exp_parse_u64(s, &v) || v < min || v > max) {
		log_warn("%s=%s: not an integer in [%llu, %llu], using %llu", name, s,
			 (unsigned long long)min, (unsigned long long)max, (unsigned long long)dflt);
		return dflt;
	}
	return v;
}

/* ---- headers ------------------------------------------------------------ */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* In place; a '%' not followed by two hex digits stays as it is. Returns
 * the decoded length (a decoded %00 makes it differ from strlen). */
static size_t percent_decode(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		int hi, lo;
		if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0) {
			*w++ = (char)(hi * 16 + lo);
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

/* Decoded values may hold any byte: refuse CR/LF/NUL-like controls, which
 * would let a variable smuggle extra headers into the request. */
static bool is_header_value(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return false;
	return true;
}

static int add_header(struct exp_headers *h, const char *k, const char *v)
{
	char **lines = realloc(h->lines, (h->n + 1) * sizeof *lines);
	if (!lines)
		return -1;
	h->lines = lines;
	size_t n = strlen(k) + strlen(v) + 3;
	if (!(lines[h->n] = malloc(n)))
		return -1;
	snprintf(lines[h->n++], n, "%s: %s", k, v);
	return 0;
}

int exp_headers_parse(const char *s, struct exp_headers *out)
{
	*out = (struct exp_headers){0};
	char *copy = strdup(s ? s : "");
	if (!copy)
		return -1;
	int skipped = 0;
	char *save = NULL;
	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		if (!eq) {
			skipped += *trim(item) != '\0';
			continue;
		}
		*eq = '\0';
		char *k = trim(item), *v = eq + 1;
		bool has_nul = percent_decode(v) != strlen(v);
		v = trim(v);
		if (!is_token(k) || has_nul || !is_header_value(v)) {
			skipped++;
			continue;
		}
		if (add_header(out, k, v) < 0) {
			free(copy);
			exp_headers_free(out);
			return -1;
		}
	}
	free(copy);
	return skipped;
}

void exp_headers_free(struct exp_headers *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->lines[i]);
	free(h->lines);
	*h = (struct exp_headers){0};
}

/* ---- endpoint and exporters --------------------------------------------- */

int exp_endpoint_join_path(const char *base, const char *path, char *out, size_t cap)
{
	size_t n = strlen(base);
	while (n && base[n - 1] == '/')
		n--;
	int w = snprintf(out, cap, "%.*s%s", (int)n, base, path);
	return (w < 0 || (size_t)w >= cap) ? -1 : 0;
}

int exp_endpoint_join(const char *base, char *out, size_t cap)
{
	return exp_endpoint_join_path(base, "/v1/traces", out, cap);
}

/* The next item of a comma list, blanks around it trimmed (NULL at the end;
 * *len 0 for an empty item such as ",,"). Advances *p past it. */
static const char *list_next(const char **p, size_t *len)
{
	const char *s = *p;
	while (*s == ' ' || *s == '\t' || *s == ',')
		s++;
	if (!*s) {
		*p = s;
		return NULL;
	}
	size_t n = strcspn(s, ",");
	size_t m = n;
	while (m && (s[m - 1] == ' ' || s[m - 1] == '\t'))
		m--;
	*p = s + n;
	*len = m;
	return s;
}

unsigned exp_parse_metrics_exporters(const char *list, unsigned *unknown)
{
	unsigned mask = 0;
	*unknown = 0;
	const char *p = list ? list : "", *it;
	size_t m;
	while ((it = list_next(&p, &m)) != NULL) {
		if (m == 10 && !strncmp(it, "prometheus", 10))
			mask |= EXP_METRICS_PROMETHEUS;
		else if (m == 4 && !strncmp(it, "otlp", 4))
			mask |= EXP_METRICS_OTLP;
		else if (m && !(m == 4 && !strncmp(it, "none", 4)))
			(*unknown)++;
	}
	return mask;
}

/* The Prometheus label a key becomes (metrics_prom.c's rule: [a-zA-Z0-9_],
 * others '_', a leading digit prefixed), so two keys that would make one
 * label, or one of the span metrics' own labels, are refused. */
static void prom_name(char *out, size_t cap, const char *k, size_t n)
{
	size_t o = 0;
	if (n && isdigit((unsigned char)k[0]))
		out[o++] = '_';
	for (size_t i = 0; i < n && o + 1 < cap; i++)
		out[o++] = (isalnum((unsigned char)k[i]) || k[i] == '_') ? k[i] : '_';
	out[o] = '\0';
}

static bool dim_allowed(const char *key, size_t len, char out[][129], size_t n)
{
	static const char *const taken[] = {"service_name", "span_name", "span_kind", "status_code", "le",
					    "otel_metric_overflow"};
	char a[140], b[140];
	prom_name(a, sizeof a, key, len);
	if (!strncmp(a, "__", 2))
		return false; /* reserved by Prometheus */
	for (size_t i = 0; i < sizeof taken / sizeof taken[0]; i++)
		if (!strcmp(a, taken[i]))
			return false;
	for (size_t i = 0; i < n; i++) {
		prom_name(b, sizeof b, out[i], strlen(out[i]));
		if (!strcmp(a, b))
			return false;
	}
	return true;
}

int exp_parse_dims(const char *s, char out[][129], size_t cap, size_t *n)
{
	int bad = 0;
	*n = 0;
	const char *p = s ? s : "", *it;
	size_t m;
	while ((it = list_next(&p, &m)) != NULL) {
		if (m > 128 || (m && *n >= cap) || (m && !dim_allowed(it, m, out, *n))) {
			bad++;
		} else if (m) {
			memcpy(out[*n], it, m);
			out[(*n)++][m] = '\0';
		}
	}
	return bad;
}

static unsigned exporter_bit(const char *name, size_t n, bool *known)
{
	*known = true;
	if (n == 4 && strncmp(name, "otlp", 4) == 0)
		return EXP_SINK_OTLP;
	if (n == 4 && strncmp(name, "file", 4) == 0)
		return EXP_SINK_FILE;
	if (n == 4 && strncmp(name, "none", 4) == 0)
		return 0;
	*known = n == 0; /* an empty item (",,") is no mistake worth a warning */
	return 0;
}

unsigned exp_parse_exporters(const char *list, bool have_endpoint, bool have_file_env,
			     unsigned *unknown)
{
	unsigned mask = 0, recognised = 0;
	*unknown = 0;
	const char *p = list ? list : "", *it;
	size_t m;
	while ((it = list_next(&p, &m)) != NULL) {
		bool known;
		if (m) {
			mask |= exporter_bit(it, m, &known);
			recognised += known;
			*unknown += !known;
		}
	}
	if (recognised)
		return mask;
	return (have_endpoint ? EXP_SINK_OTLP : 0u) |
	       ((have_file_env || !have_endpoint) ? EXP_SINK_FILE : 0u);
}

/* ---- loading ------------------------------------------------------------ */

/* Relative paths are made absolute: --daemon changes to "/". */
static int abs_path(const char *in, char *out, size_t cap)
{
	char cwd[EXP_PATH_MAX];
	int n;
	if (in[0] == '/')
		n = snprintf(out, cap, "%s", in);
	else if (getcwd(cwd, sizeof cwd))
		n = snprintf(out, cap, "%s/%s", cwd, in);
	else
		return -1;
	return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

int exp_config_socket_path(char *out, size_t cap, ts_getenv_fn getenv_fn)
{
	char tmp[EXP_PATH_MAX];
	if (ts_default_socket_path(tmp, sizeof tmp, getenv_fn) < 0)
		return -1;
	return abs_path(tmp, out, cap);
}

static int load_paths(struct exp_config *c, char *err, size_t errcap)
{
	char tmp[EXP_PATH_MAX];
	if (ts_default_socket_path(tmp, sizeof tmp, env_fn) < 0 ||
	    abs_path(tmp, c->socket_path, sizeof c->socket_path) < 0) {
		snprintf(err, errcap, "socket path too long (max %d bytes): %s",
			 EXP_SUN_PATH_MAX - 1, tmp);
		return -1;
	}
	if (!(c->sinks & EXP_SINK_FILE))
		return 0;
	c->file_max_bytes = num_env("TRACESHIM_FILE_MAX_BYTES", EXP_DEFAULT_FILE_MAX_BYTES, 0, UINT64_MAX);
	if (ts_default_file_path(tmp, sizeof tmp, env_fn) < 0 ||
	    abs_path(tmp, c->file_path, sizeof c->file_path) < 0) {
		snprintf(err, errcap, "trace file path too long");
		return -1;
	}
	return 0;
}

static int load_endpoint(struct exp_config *c, char *err, size_t errcap)
{
	const char *full = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	const char *base = env("OTEL_EXPORTER_OTLP_ENDPOINT");
	int rc = 0;
	if (!(c->sinks & EXP_SINK_OTLP))
		return 0;
	if (full)
		rc = snprintf(c->endpoint, sizeof c->endpoint, "%s", full) >= (int)sizeof c->endpoint;
	else if (base)
		rc = exp_endpoint_join(base, c->endpoint, sizeof c->endpoint) < 0;
	else
		snprintf(c->endpoint, sizeof c->endpoint, "%s", EXP_DEFAULT_ENDPOINT);
	if (rc)
		snprintf(err, errcap, "OTLP endpoint too long");
	return rc ? -1 : 0;
}

static void copy_env2(char *out, size_t cap, const char *specific, const char *generic)
{
	const char *v = env2(specific, generic);
	snprintf(out, cap, "%s", v ? v : "");
}

static int load_otlp_options(struct exp_config *c)
{
	const char *h = env2("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS");
	int skipped = exp_headers_parse(h, &c->headers);
	if (skipped < 0)
		return -1;
	if (skipped)
		log_warn("OTEL_EXPORTER_OTLP_*HEADERS: ignored %d malformed entries", skipped);
	const char *t = env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") ? "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
								  : "OTEL_EXPORTER_OTLP_TIMEOUT";
	c->timeout_ms = (uint32_t)num_env(t, EXP_DEFAULT_TIMEOUT_MS, 1, 3600000);
	copy_env2(c->ca_file, sizeof c->ca_file, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
		  "OTEL_EXPORTER_OTLP_CERTIFICATE");
	copy_env2(c->client_cert, sizeof c->client_cert,
		  "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE");
	copy_env2(c->client_key, sizeof c->client_key, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
		  "OTEL_EXPORTER_OTLP_CLIENT_KEY");
	const char *proto = env2("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL");
	if (proto && strcmp(proto, "http/protobuf") != 0)
		log_warn("OTLP protocol %s not supported: using http/protobuf", proto);
	const char *comp = env2("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION");
	c->gzip = comp && strcmp(comp, "gzip") == 0;
	if (comp && !c->gzip && strcmp(comp, "none") != 0)
		log_warn("OTLP compression %s not supported (gzip, none): sending uncompressed", comp);
	return 0;
}

/* The spool only serves the otlp sink; a path that does not fit is an error. */
static int load_spool(struct exp_config *c, char *err, size_t errcap)
{
	char tmp[EXP_PATH_MAX];
	c->spool_max_bytes = num_env("TRACESHIM_SPOOL_MAX_BYTES", EXP_DEFAULT_SPOOL_MAX_BYTES, 0,
				     (uint64_t)1 << 50);
	if (!(c->sinks & EXP_SINK_OTLP) || c->spool_max_bytes == 0)
		return 0;
	if (ts_default_spool_dir(tmp, sizeof tmp, env_fn) < 0 ||
	    abs_path(tmp, c->spool_dir, sizeof c->spool_dir) < 0 ||
	    strlen(c->spool_dir) + 64 >= sizeof c->spool_dir) {
		snprintf(err, errcap, "spool directory path too long");
		return -1;
	}
	return 0;
}

static void load_security(struct exp_config *c)
{
	const char *uids = env("TRACESHIM_ALLOWED_UIDS");
	int bad = exp_parse_uids(uids, c->allowed_uids, EXP_MAX_ALLOWED_UIDS, &c->n_allowed_uids);
	if (bad)
		log_warn("TRACESHIM_ALLOWED_UIDS=%s: ignored %d entries (decimal uids, at most %d)", uids,
			 bad, EXP_MAX_ALLOWED_UIDS);
	c->max_connections = (uint32_t)num_env("TRACESHIM_MAX_CONNECTIONS", EXP_DEFAULT_MAX_CONNECTIONS,
					       1, 1u << 20);
	const char *sched = env("TRACESHIM_EXPORTER_SCHED");
	c->sched_batch = sched && !strcasecmp(sched, "batch");
	if (sched && strcasecmp(sched, "normal") && strcasecmp(sched, "batch"))
		log_warn("TRACESHIM_EXPORTER_SCHED=%s: not batch or normal; using normal", sched);
}

static void load_tail(struct exp_config *c)
{
	const char *on = env("TRACESHIM_TAIL_SAMPLING");
	c->tail_sampling = on && strcmp(on, "0") != 0 && strcasecmp(on, "false") != 0;
	c->tail_wait_ms = (uint32_t)num_env("TRACESHIM_TAIL_WAIT_MS", EXP_DEFAULT_TAIL_WAIT_MS, 0, 3600000);
	c->tail_slow_ms = (uint32_t)num_env("TRACESHIM_TAIL_SLOW_MS", EXP_DEFAULT_TAIL_SLOW_MS, 0,
					    UINT32_MAX - 1);
	c->tail_max_spans = (uint32_t)num_env("TRACESHIM_TAIL_MAX_SPANS", EXP_DEFAULT_TAIL_MAX_SPANS, 1,
					      1u << 24);
	c->tail_max_bytes = (size_t)num_env("TRACESHIM_TAIL_MAX_BYTES", EXP_DEFAULT_TAIL_MAX_BYTES, 65536,
					    (uint64_t)1 << 34);
	const char *r = env("TRACESHIM_TAIL_RATIO");
	c->tail_ratio = EXP_DEFAULT_TAIL_RATIO;
	if (r && !exp_parse_ratio(r, &c->tail_ratio))
		log_warn("TRACESHIM_TAIL_RATIO=%s: not a number in [0, 1], using %g", r, EXP_DEFAULT_TAIL_RATIO);
}

static void load_bsp(struct exp_config *c)
{
	c->schedule_delay_ms = (uint32_t)num_env("OTEL_BSP_SCHEDULE_DELAY",
						 EXP_DEFAULT_SCHEDULE_DELAY_MS, 1, 3600000);
	c->max_queue = (uint32_t)num_env("OTEL_BSP_MAX_QUEUE_SIZE", EXP_DEFAULT_MAX_QUEUE, 1,
					 1u << 24);
	c->max_batch = (uint32_t)num_env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", EXP_DEFAULT_MAX_BATCH, 1,
					 1u << 24);
	if (c->max_batch > c->max_queue) /* the spec requires batch <= queue */
		c->max_batch = c->max_queue;
	c->queue_max_bytes = (size_t)num_env("TRACESHIM_QUEUE_MAX_BYTES",
					     EXP_DEFAULT_QUEUE_MAX_BYTES, 65536, (uint64_t)1 << 34);
	c->export_timeout_ms = (uint32_t)num_env("OTEL_BSP_EXPORT_TIMEOUT",
						 EXP_DEFAULT_EXPORT_TIMEOUT_MS, 1, 3600000);
}

static int load_metrics(struct exp_config *c, char *err, size_t errcap)
{
	unsigned unknown;
	c->metrics_exporters = exp_parse_metrics_exporters(env("OTEL_METRICS_EXPORTER"), &unknown);
	if (unknown)
		log_warn("OTEL_METRICS_EXPORTER=%s: ignored %u unknown exporter names (known: prometheus, otlp, none)",
			 env("OTEL_METRICS_EXPORTER"), unknown);
	const char *host = env("OTEL_EXPORTER_PROMETHEUS_HOST");
	if (host && strlen(host) >= sizeof c->prom_host) {
		log_warn("OTEL_EXPORTER_PROMETHEUS_HOST too long: using %s", EXP_DEFAULT_PROM_HOST);
		host = NULL;
	}
	snprintf(c->prom_host, sizeof c->prom_host, "%s", host ? host : EXP_DEFAULT_PROM_HOST);
	c->prom_port = (uint16_t)num_env("OTEL_EXPORTER_PROMETHEUS_PORT", EXP_DEFAULT_PROM_PORT, 1, 65535);
	c->metric_interval_ms = (uint32_t)num_env("OTEL_METRIC_EXPORT_INTERVAL", EXP_DEFAULT_METRIC_INTERVAL_MS, 1,
						  86400000);
	c->metrics_max_series = (uint32_t)num_env("TRACESHIM_METRICS_MAX_SERIES", EXP_DEFAULT_METRICS_MAX_SERIES, 1,
						  1u << 24);
	c->graph_wait_ms = (uint32_t)num_env("TRACESHIM_METRICS_GRAPH_WAIT_MS", EXP_DEFAULT_GRAPH_WAIT_MS, 1,
					     3600000);
	c->graph_max_pending = (uint32_t)num_env("TRACESHIM_METRICS_GRAPH_MAX_PENDING",
						 EXP_DEFAULT_GRAPH_MAX_PENDING, 0, 1u << 24);
	const char *dims = env("TRACESHIM_METRICS_DIMENSIONS");
	int bad = exp_parse_dims(dims, c->metrics_dims, EXP_METRICS_DIMS_MAX, &c->n_metrics_dims);
	if (bad)
		log_warn("TRACESHIM_METRICS_DIMENSIONS=%s: ignored %d entries (at most %d keys of 128 bytes, "
			 "not naming a label the span metrics have already, not twice)",
			 dims, bad, EXP_METRICS_DIMS_MAX);
	if (!(c->metrics_exporters & EXP_METRICS_OTLP))
		return 0;
	const char *full = env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
	const char *base = env("OTEL_EXPORTER_OTLP_ENDPOINT");
	int rc = 0;
	if (full)
		rc = snprintf(c->metrics_endpoint, sizeof c->metrics_endpoint, "%s", full) >=
		     (int)sizeof c->metrics_endpoint;
	else if (base)
		rc = exp_endpoint_join_path(base, "/v1/metrics", c->metrics_endpoint, sizeof c->metrics_endpoint) < 0;
	else
		snprintf(c->metrics_endpoint, sizeof c->metrics_endpoint, "%s", EXP_DEFAULT_METRICS_ENDPOINT);
	if (rc)
		snprintf(err, errcap, "OTLP metrics endpoint too long");
	return rc ? -1 : 0;
}

int exp_config_load(struct exp_config *c, ts_getenv_fn getenv_fn, char *err, size_t errcap)
{
	*c = (struct exp_config){0};
	env_fn = getenv_fn;
	c->log_level = exp_log_parse(env("TRACESHIM_LOG"), EXP_LOG_WARN);
	exp_log_level = c->log_level;
	bool have_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ||
			     env("OTEL_EXPORTER_OTLP_ENDPOINT");
	unsigned unknown;
	c->sinks = exp_parse_exporters(env("OTEL_TRACES_EXPORTER"), have_endpoint,
				       env("TRACESHIM_FILE") != NULL, &unknown);
	if (unknown)
		log_warn("OTEL_TRACES_EXPORTER=%s: ignored %u unknown exporter names "
			 "(known: otlp, file, none)", env("OTEL_TRACES_EXPORTER"), unknown);
	load_bsp(c);
	load_security(c);
	load_tail(c);
	if (load_paths(c, err, errcap) < 0 || load_endpoint(c, err, errcap) < 0 ||
	    load_spool(c, err, errcap) < 0 || load_metrics(c, err, errcap) < 0)
		return -1;
	if (((c->sinks & EXP_SINK_OTLP) || (c->metrics_exporters & EXP_METRICS_OTLP)) && load_otlp_options(c) < 0) {
		snprintf(err, errcap, "out of memory");
		return -1;
	}
	return 0;
}

void exp_config_free(struct exp_config *c) { exp_headers_free(&c->headers); }
