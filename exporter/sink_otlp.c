/* sink_otlp.c — OTLP/HTTP with protobuf bodies: POST ExportTraceServiceRequest
 * to the endpoint with one CURL easy handle, reused so the connection stays
 * alive between batches. Classification follows the OTLP spec: 429, 502,
 * 503, 504 and dropped connections are retryable (with Retry-After), other
 * statuses are permanent; a 200 may carry partial_success, which is logged. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pb.h"
#include "sink.h"
#include "traceshim_otlp.pb-c.h"

#define RESPONSE_MAX 65536 /* a response body is a small protobuf: cap what we keep */

struct otlp_sink {
	struct exp_sink base;
	CURL *curl;
	struct curl_slist *headers;
	struct sbuf body, resp;
	const char *endpoint;
	char errbuf[CURL_ERROR_SIZE];
};

static size_t on_response(char *p, size_t size, size_t n, void *userdata)
{
	struct sbuf *resp = userdata;
	size_t len = size * n;
	if (resp->len < RESPONSE_MAX)
		sbuf_put(resp, p, len < RESPONSE_MAX - resp->len ? len : RESPONSE_MAX - resp->len);
	return len;
}

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
		return true;
	default:
		return false;
	}
}

static bool retryable_status(long code)
{
	return code == 429 || code == 502 || code == 503 || code == 504;
}

/* A 2xx may still say some spans were rejected: worth a warning, not a retry. */
static void check_partial_success(struct otlp_sink *o)
{
	if (!o->resp.len)
		return;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *resp =
		opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
			NULL, o->resp.len, (const uint8_t *)o->resp.p);
	if (!resp)
		return; /* not protobuf (some proxies answer text): the status said OK */
	if (resp->partial_success &&
	    (resp->partial_success->rejected_spans || *resp->partial_success->error_message))
		log_warn("%s: backend rejected %lld spans: %s", o->endpoint,
			 (long long)resp->partial_success->rejected_spans,
			 resp->partial_success->error_message);
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(resp, NULL);
}

static void classify_http(struct otlp_sink *o, long code, struct exp_deliver_result *r)
{
	if (code >= 200 && code < 300) {
		check_partial_success(o);
		r->kind = EXP_DELIVER_OK;
		return;
	}
	snprintf(r->error, sizeof r->error, "HTTP %ld from %s", code, o->endpoint);
	r->kind = retryable_status(code) ? EXP_DELIVER_RETRYABLE : EXP_DELIVER_PERMANENT;
	curl_off_t after = 0; /* curl parses both forms of Retry-After (seconds, HTTP date) */
	if (r->kind == EXP_DELIVER_RETRYABLE &&
	    curl_easy_getinfo(o->curl, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0)
		r->retry_after_ms = after > 86400 ? 86400000u : (uint32_t)after * 1000u;
}

static struct exp_deliver_result otlp_deliver(struct exp_sink *s, const struct exp_batch *b)
{
	struct otlp_sink *o = (struct otlp_sink *)s;
	struct exp_deliver_result r = {.kind = EXP_DELIVER_PERMANENT};
	sbuf_reset(&o->body);
	sbuf_reset(&o->resp);
	if (!exp_pb_encode(&o->body, b)) {
		snprintf(r.error, sizeof r.error, "out of memory encoding protobuf");
		return r;
	}
	curl_easy_setopt(o->curl, CURLOPT_POSTFIELDS, o->body.p);
	curl_easy_setopt(o->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body.len);
	o->errbuf[0] = '\0';
	CURLcode rc = curl_easy_perform(o->curl);
	if (rc != CURLE_OK) {
		r.kind = retryable_curl_error(rc) ? EXP_DELIVER_RETRYABLE : EXP_DELIVER_PERMANENT;
		exp_fmt(r.error, sizeof r.error, "POST %s: %s", o->endpoint,
			 o->errbuf[0] ? o->errbuf : curl_easy_strerror(rc));
		return r;
	}
	long code = 0;
	curl_easy_getinfo(o->curl, CURLINFO_RESPONSE_CODE, &code);
	classify_http(o, code, &r);
	return r;
}

static void otlp_destroy(struct exp_sink *s)
{
	struct otlp_sink *o = (struct otlp_sink *)s;
	if (o->curl)
		curl_easy_cleanup(o->curl);
	curl_slist_free_all(o->headers);
	sbuf_free(&o->body);
	sbuf_free(&o->resp);
	free(o);
}

static bool add_header(struct otlp_sink *o, const char *line)
{
	struct curl_slist *l = curl_slist_append(o->headers, line);
	if (l)
		o->headers = l;
	return l != NULL;
}

/* Our own headers first; user headers (e.g. authorization) come after. */
static bool build_headers(struct otlp_sink *o, const struct exp_config *c)
{
	bool ok = add_header(o, "Content-Type: application/x-protobuf") &&
		  add_header(o, "Expect:"); /* no 100-continue round trip on big bodies */
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

static bool setup_curl(struct otlp_sink *o, const struct exp_config *c)
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
	set_tls_files(h, c);
	return ok;
}

struct exp_sink *exp_otlp_sink_open(const struct exp_config *c, char *err, size_t errcap)
{
	struct otlp_sink *o = calloc(1, sizeof *o);
	if (!o) {
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	o->base = (struct exp_sink){.name = "otlp", .deliver = otlp_deliver, .destroy = otlp_destroy};
	o->endpoint = c->endpoint;
	sbuf_init(&o->body);
	sbuf_init(&o->resp);
	if (!(o->curl = curl_easy_init()) || !build_headers(o, c)) {
		snprintf(err, errcap, "cannot initialise libcurl");
		otlp_destroy(&o->base);
		return NULL;
	}
	if (!setup_curl(o, c)) {
		snprintf(err, errcap, "OTLP endpoint is not an http:// or https:// URL: %s", c->endpoint);
		otlp_destroy(&o->base);
		return NULL;
	}
	return &o->base;
}
