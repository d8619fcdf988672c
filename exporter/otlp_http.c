/* otlp_http.c — see otlp_http.h. */
#define ZLIB_CONST
#include "otlp_http.h"

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "log.h"
#include "traceshim_otlp.pb-c.h"

#define RESPONSE_MAX 65536 /* a response body is a small protobuf: cap what we keep */

struct exp_otlp_client {
	CURL *curl;
	struct curl_slist *headers;
	struct sbuf gz, resp;
	char endpoint[EXP_PATH_MAX];
	bool gzip;
	uint32_t timeout_ms;
	_Atomic uint64_t abort_at_ms;
	char errbuf[CURL_ERROR_SIZE];
};

uint64_t exp_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t on_response(char *p, size_t size, size_t n, void *userdata)
{
	struct sbuf *resp = userdata;
	size_t len = size * n;
	if (resp->len < RESPONSE_MAX)
		sbuf_put(resp, p, len < RESPONSE_MAX - resp->len ? len : RESPONSE_MAX - resp->len);
	return len;
}

/* libcurl calls this about once a second (and on progress): returning
 * non-zero aborts the transfer with CURLE_ABORTED_BY_CALLBACK. */
static int on_progress(void *userdata, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	struct exp_otlp_client *o = userdata;
	uint64_t at = atomic_load_explicit(&o->abort_at_ms, memory_order_relaxed);
	return at && exp_mono_ms() >= at;
}

void exp_otlp_abort_at(struct exp_otlp_client *o, uint64_t mono_ms)
{
	atomic_store_explicit(&o->abort_at_ms, mono_ms, memory_order_relaxed);
}

const char *exp_otlp_endpoint(const struct exp_otlp_client *o) { return o->endpoint; }

/* ---- classification ----------------------------------------------------- */

/* The OTLP spec retries when the server could not be reached or dropped the
 * connection; a transfer we aborted at shutdown is retried from the spool. */
static bool retryable_curl_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_ABORTED_BY_CALLBACK:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

static bool retryable_status(long code)
{
	return code == 429 || code == 502 || code == 503 || code == 504;
}

static bool read_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
	*v = 0;
	for (unsigned shift = 0; shift < 64 && *off < len; shift += 7) {
		uint8_t b = p[(*off)++];
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* google.rpc.Status { int32 code = 1; string message = 2; repeated Any details = 3; } */
static bool rpc_status_message(const uint8_t *p, size_t len, char *out, size_t cap)
{
	size_t off = 0;
	bool found = false;
	while (off < len) {
		uint64_t key, v;
		if (!read_varint(p, len, &off, &key))
			return false;
		switch (key & 7) {
		case 0:
			if (!read_varint(p, len, &off, &v))
				return false;
			break;
		case 1:
			if (len - off < 8)
				return false;
			off += 8;
			break;
		case 5:
			if (len - off < 4)
				return false;
			off += 4;
			break;
		case 2:
			if (!read_varint(p, len, &off, &v) || v > len - off)
				return false;
			if ((key >> 3) == 2) {
				snprintf(out, cap, "%.*s", (int)(v < cap ? v : cap - 1), (const char *)p + off);
				found = true;
			}
			off += (size_t)v;
			break;
		default:
			return false;
		}
	}
	return found;
}

void exp_otlp_error_message(const void *body, size_t len, char *out, size_t cap)
{
	const uint8_t *p = body;
	out[0] = '\0';
	if (!len || !cap)
		return;
	if (rpc_status_message(p, len, out, cap)) {
		for (char *c = out; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = ' ';
		return;
	}
	out[0] = '\0';
	size_t n = 0; /* a text body (proxies, load balancers): its printable start */
	for (size_t i = 0; i < len && n + 1 < cap && n < 120; i++) {
		if (p[i] == '\n' || p[i] == '\r' || p[i] == '\t')
			out[n++] = ' ';
		else if (p[i] >= 0x20 && p[i] < 0x7f)
			out[n++] = (char)p[i];
		else
			break;
	}
	while (n && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

/* A 2xx may still say some spans were rejected: counted and logged, not retried. */
static void partial_success(struct exp_otlp_client *o, struct exp_deliver_result *r)
{
	if (!o->resp.len)
		return;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *resp =
		opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
			NULL, o->resp.len, (const uint8_t *)o->resp.p);
	if (!resp)
		return; /* not protobuf (some proxies answer text): the status said OK */
	const Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess *ps = resp->partial_success;
	if (ps && (ps->rejected_spans > 0 || (ps->error_message && *ps->error_message))) {
		r->rejected = ps->rejected_spans > 0 ? (uint64_t)ps->rejected_spans : 0;
		exp_fmt(r->reason, sizeof r->reason, "partial success: %s", ps->error_message);
		exp_fmt(r->error, sizeof r->error, "%s accepted the batch but rejected %llu spans: %s",
			o->endpoint, (unsigned long long)r->rejected, ps->error_message);
	}
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(resp, NULL);
}

static void classify_http(struct exp_otlp_client *o, long code, struct exp_deliver_result *r)
{
	if (code >= 200 && code < 300) {
		r->kind = EXP_DELIVER_OK;
		partial_success(o, r);
		return;
	}
	r->answered = true;
	r->kind = retryable_status(code) ? EXP_DELIVER_RETRYABLE : EXP_DELIVER_PERMANENT;
	char msg[128];
	exp_otlp_error_message(o->resp.p, o->resp.len, msg, sizeof msg);
	exp_fmt(r->reason, sizeof r->reason, "HTTP %ld%s%s", code, *msg ? ": " : "", msg);
	exp_fmt(r->error, sizeof r->error, "HTTP %ld from %s%s%s", code, o->endpoint, *msg ? ": " : "", msg);
	curl_off_t after = 0; /* curl parses both forms of Retry-After (seconds, HTTP date) */
	if (r->kind == EXP_DELIVER_RETRYABLE &&
	    curl_easy_getinfo(o->curl, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0)
		r->retry_after_ms = after > 86400 ? 86400000u : (uint32_t)after * 1000u;
}

/* ---- gzip --------------------------------------------------------------- */

/* Level 1 (Z_BEST_SPEED), not zlib's default 6: on a batch of 512 of the
 * benchmark's HTTP spans, 0.66 us of CPU per span instead of 1.5 us (the
 * exporter's whole budget is 2 us), for a body 27 % larger. CPU next to the
 * traced programs is scarcer than bandwidth to a collector. */
#define EXP_GZIP_LEVEL Z_BEST_SPEED

bool exp_gzip(struct sbuf *out, const void *in, size_t len)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	sbuf_reset(out);
	if (len > UINT32_MAX / 2 ||
	    deflateInit2(&z, EXP_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return false;
	size_t bound = deflateBound(&z, (uLong)len);
	bool ok = sbuf_reserve(out, bound);
	if (ok) {
		z.next_in = in;
		z.avail_in = (uInt)len;
		z.next_out = (Bytef *)out->p;
		z.avail_out = (uInt)bound;
		ok = deflate(&z, Z_FINISH) == Z_STREAM_END;
		out->len = z.total_out;
	}
	deflateEnd(&z);
	return ok;
}

/* ---- POST --------------------------------------------------------------- */

struct exp_deliver_result exp_otlp_post(struct exp_otlp_client *o, const void *body, size_t len,
					uint32_t timeout_ms)
{
	struct exp_deliver_result r = {.kind = EXP_DELIVER_PERMANENT};
	sbuf_reset(&o->resp);
	if (o->gzip) {
		if (!exp_gzip(&o->gz, body, len)) {
			snprintf(r.reason, sizeof r.reason, "gzip failed");
			snprintf(r.error, sizeof r.error, "cannot gzip a %zu-byte request", len);
			return r;
		}
		body = o->gz.p;
		len = o->gz.len;
	}
	curl_easy_setopt(o->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(o->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(o->curl, CURLOPT_TIMEOUT_MS, (long)(timeout_ms ? timeout_ms : 1));
	o->errbuf[0] = '\0';
	CURLcode rc = curl_easy_perform(o->curl);
	if (rc != CURLE_OK) {
		r.kind = retryable_curl_error(rc) ? EXP_DELIVER_RETRYABLE : EXP_DELIVER_PERMANENT;
		exp_fmt(r.reason, sizeof r.reason, "%s", curl_easy_strerror(rc));
		exp_fmt(r.error, sizeof r.error, "POST %s: %s", o->endpoint,
			o->errbuf[0] ? o->errbuf : curl_easy_strerror(rc));
		return r;
	}
	long code = 0;
	curl_easy_getinfo(o->curl, CURLINFO_RESPONSE_CODE, &code);
	classify_http(o, code, &r);
	return r;
}

/* ---- setup -------------------------------------------------------------- */

static bool add_header(struct exp_otlp_client *o, const char *line)
{
	struct curl_slist *l = curl_slist_append(o->headers, line);
	if (l)
		o->headers = l;
	return l != NULL;
}

/* Our own headers first; user headers (e.g. authorization) come after. */
static bool build_headers(struct exp_otlp_client *o, const struct exp_config *c)
{
	bool ok = add_header(o, "Content-Type: application/x-protobuf") &&
		  add_header(o, "Expect:"); /* no 100-continue round trip on big bodies */
	if (ok && o->gzip)
		ok = add_header(o, "Content-Encoding: gzip");
	for (size_t i = 0; ok && i < c->headers.n; i++)
		ok = add_header(o, c->headers.lines[i]);
	return ok;
}

static void set_tls_files(CURL *curl, const struct exp_config *c)
{
	if (*c->ca_file)
		curl_easy_setopt(curl, CURLOPT_CAINFO, c->ca_file);
	if (*c->client_cert)
		curl_easy_setopt(curl, CURLOPT_SSLCERT, c->client_cert);
	if (*c->client_key)
		curl_easy_setopt(curl, CURLOPT_SSLKEY, c->client_key);
}

/* Checked at startup, so a typo is an error message and not a dropped batch
 * every 200 ms. */
static bool http_url(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL;
	bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
		  (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
	curl_free(scheme);
	curl_url_cleanup(u);
	return ok;
}

static bool setup_curl(struct exp_otlp_client *o, const struct exp_config *c)
{
	CURL *h = o->curl;
	bool ok = http_url(c->endpoint) &&
		  curl_easy_setopt(h, CURLOPT_URL, c->endpoint) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* we run in a thread: no SIGALRM */
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, o->headers);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "traceshim-exporter/" TRACESHIM_VERSION);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_response);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &o->resp);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, o->errbuf);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, o);
	set_tls_files(h, c);
	return ok;
}

struct exp_otlp_client *exp_otlp_client_open(const struct exp_config *c, char *err, size_t errcap)
{
	struct exp_otlp_client *o = calloc(1, sizeof *o);
	if (!o) {
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	snprintf(o->endpoint, sizeof o->endpoint, "%s", c->endpoint);
	o->gzip = c->gzip;
	o->timeout_ms = c->timeout_ms;
	atomic_init(&o->abort_at_ms, 0);
	sbuf_init(&o->gz);
	sbuf_init(&o->resp);
	if (!(o->curl = curl_easy_init()) || !build_headers(o, c)) {
		snprintf(err, errcap, "cannot initialise libcurl");
		exp_otlp_client_close(o);
		return NULL;
	}
	if (!setup_curl(o, c)) {
		snprintf(err, errcap, "OTLP endpoint is not an http:// or https:// URL: %s", c->endpoint);
		exp_otlp_client_close(o);
		return NULL;
	}
	return o;
}

void exp_otlp_client_close(struct exp_otlp_client *o)
{
	if (!o)
		return;
	if (o->curl)
		curl_easy_cleanup(o->curl);
	curl_slist_free_all(o->headers);
	sbuf_free(&o->gz);
	sbuf_free(&o->resp);
	free(o);
}
