/* otlp_http.h — the OTLP/HTTP client: POSTs encoded ExportTraceServiceRequest
 * bodies to the endpoint with one CURL easy handle, reused so the connection
 * stays alive between requests, gzip-compressed when configured. It only
 * reports what happened (sink.h's exp_deliver_result); what to do about it
 * (retry, spool, drop) is delivery.c's business. Used by one thread at a time. */
#ifndef TRACESHIM_EXP_OTLP_HTTP_H
#define TRACESHIM_EXP_OTLP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sbuf.h"
#include "sink.h"

struct exp_otlp_client;

/* NULL with a reason in err (bad URL, libcurl unusable). */
struct exp_otlp_client *exp_otlp_client_open(const struct exp_config *c, char *err, size_t errcap);
void exp_otlp_client_close(struct exp_otlp_client *o);

/* One POST, blocking for at most timeout_ms. Classification (OTLP spec):
 * 2xx → OK (rejected = partial_success.rejected_spans); 429, 502, 503, 504 and
 * connection-level failures (refused, reset, timeout, DNS, aborted) →
 * RETRYABLE with the server's Retry-After; any other status → PERMANENT with
 * answered = true; other local errors → PERMANENT. */
struct exp_deliver_result exp_otlp_post(struct exp_otlp_client *o, const void *body, size_t len,
					uint32_t timeout_ms);

/* Any thread: makes a running or later POST give up once CLOCK_MONOTONIC
 * passes mono_ms (0: never). Checked about once a second by libcurl. */
void exp_otlp_abort_at(struct exp_otlp_client *o, uint64_t mono_ms);

const char *exp_otlp_endpoint(const struct exp_otlp_client *o);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t exp_mono_ms(void);

/* Pure helpers, unit-tested. */
/* google.rpc.Status.message (field 2) of an error response body, or a
 * printable prefix of a text body; "" when neither. */
void exp_otlp_error_message(const void *body, size_t len, char *out, size_t cap);
/* gzip (RFC 1952) of in into out (replacing its contents); false on failure. */
bool exp_gzip(struct sbuf *out, const void *in, size_t len);

#endif
