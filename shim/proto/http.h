/* http.h — incremental, copy-free HTTP/1.0 and 1.1 scanner for the shim.
 *
 * Bytes reach the shim in arbitrary pieces (a request line over several
 * write() calls, a response over many read()s), so the parser is a byte-level
 * state machine whose whole memory is one fixed-size struct: it never buffers
 * the message, never allocates and never grows. It is modelled on
 * picohttpparser's rules (LF-only line ends tolerated, obs-fold and NUL
 * rejected, token-only header names) but resumable at any byte.
 *
 * Pure functions over caller memory: no globals, no I/O, no locale, so they
 * are usable in an LD_PRELOAD hook and in a signal handler.
 *
 * Memory: struct http_msg_state (~200 bytes) is what the shim keeps per fd.
 * The larger text fields (target, Host, User-Agent, tracestate, baggage) go
 * to an optional struct http_fields (~10 KiB) the caller lends at init; pass
 * NULL to skip them (framing, method, status and traceparent still work).
 * The caller only needs the fields struct while the head is being parsed:
 * everything in it is final at HTTP_EV_HEADERS_DONE.
 *
 * Calling pattern (one message at a time):
 *
 *	size_t off = 0, n;
 *	for (;;) {
 *		enum http_event ev = http_feed(&st, buf + off, len - off, &n);
 *		off += n;
 *		if (ev == HTTP_EV_NEED_MORE || ev == HTTP_EV_ERROR)
 *			break;               // all of buf consumed / stop watching fd
 *		if (ev == HTTP_EV_START_LINE_DONE)
 *			inject_at = off;     // just past the request line's LF
 *		if (ev == HTTP_EV_MESSAGE_DONE)
 *			http_request_init(&st, fields);   // next pipelined message
 *	}
 *
 * Keep calling until HTTP_EV_NEED_MORE: a message without a body reports
 * MESSAGE_DONE on the call after HEADERS_DONE, consuming 0 bytes, even when
 * the chunk is used up.
 *
 * The state is a plain value: a struct copy is a snapshot. To look ahead
 * without committing (e.g. "does the rest of this write already carry a
 * traceparent?" before injecting at START_LINE_DONE), copy it, set the
 * copy's fields to NULL so the shared text sink is not touched, and feed the
 * copy. Never feed MSG_PEEK data to the real state.
 */
#ifndef TRACESHIM_PROTO_HTTP_H
#define TRACESHIM_PROTO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- sniffing --------------------------------------------------------- */

#define HTTP_SNIFF_MAX 16 /* the sniffer never looks further than this */

enum http_sniff {
	HTTP_SNIFF_NO = 0,
	HTTP_SNIFF_YES = 1,
	HTTP_SNIFF_NEED_MORE = 2, /* a prefix of something plausible: retry with more */
};

/* Do the first bytes written on a connection look like an HTTP/1.x request?
 * YES needs a standard method (GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE
 * PATCH, case-sensitive) + SP + a plausible request-target, and, as far as
 * the first 16 bytes reach, " HTTP/1.<digit>" and the line end. "PRI" (the
 * HTTP/2 preface) and "HTTP/2" are NO. */
enum http_sniff http_request_sniff(const char *buf, size_t len);

/* ---- caps ------------------------------------------------------------- */

/* Text caps, in bytes, excluding the NUL every stored string carries. A value
 * longer than its cap is cut and its HTTP_TRUNC_* bit set: plain fields at a
 * UTF-8 boundary, list fields (tracestate, baggage) back to the last complete
 * list-member, so the stored copy never holds a partial member. */
#define HTTP_METHOD_CAP 16       /* longer method: HTTP_ERR_SYNTAX, not cut */
#define HTTP_TRACEPARENT_CAP 63  /* 55 for v00, room to see a future version's '-' */
#define HTTP_TARGET_CAP 1024
#define HTTP_HOST_CAP 256
#define HTTP_USER_AGENT_CAP 256
#define HTTP_TRACESTATE_CAP 512  /* = what we propagate (W3C: at least 512) */
#define HTTP_BAGGAGE_CAP 8192    /* = W3C Baggage propagation limit */

/* Byte limits that turn into HTTP_ERR_TOO_LARGE: nothing grows with them,
 * they just stop the shim scanning a stream that is not sane HTTP. */
#define HTTP_HEAD_MAX 16384      /* start line + header section; again for trailers */
#define HTTP_CHUNK_LINE_MAX 4096 /* chunk-size line with its extensions */

/* ---- events, errors, flags ------------------------------------------- */

enum http_event {
	HTTP_EV_NEED_MORE = 0,   /* every byte given was consumed; feed more */
	HTTP_EV_START_LINE_DONE, /* request/status line complete; *consumed ends just past its LF */
	HTTP_EV_HEADERS_DONE,    /* header section complete: all fields final */
	HTTP_EV_MESSAGE_DONE,    /* body complete; re-init before feeding more */
	HTTP_EV_ERROR,           /* not (or no longer) HTTP/1.x: stop watching the fd */
};
#define HTTP_EV_REQUEST_LINE_DONE HTTP_EV_START_LINE_DONE

enum http_error {
	HTTP_ERR_NONE = 0,
	HTTP_ERR_SYNTAX,    /* malformed start line, header, chunk line; NUL; obs-fold */
	HTTP_ERR_HTTP2,     /* "HTTP/2" version: the h2 preface or similar */
	HTTP_ERR_TOO_LARGE, /* HTTP_HEAD_MAX or HTTP_CHUNK_LINE_MAX exceeded */
	HTTP_ERR_FRAMING,   /* bad/conflicting Content-Length, request TE without chunked */
	HTTP_ERR_TRUNCATED, /* EOF inside a message whose end is not EOF */
	HTTP_ERR_MISUSE,    /* fed again after MESSAGE_DONE without re-init */
};

/* st->flags, final at HEADERS_DONE */
#define HTTP_F_CONTENT_LENGTH  0x0001u /* st->content_length is valid */
#define HTTP_F_TE              0x0002u /* a Transfer-Encoding header was present */
#define HTTP_F_CHUNKED         0x0004u /* ... and its last coding is chunked */
#define HTTP_F_CONN_CLOSE      0x0008u
#define HTTP_F_CONN_KEEPALIVE  0x0010u
#define HTTP_F_CONN_UPGRADE    0x0020u /* "Connection: upgrade" */
#define HTTP_F_UPGRADE         0x0040u /* an Upgrade header was present */
#define HTTP_F_UPGRADE_H2C     0x0080u /* ... offering h2c */
#define HTTP_F_HOST            0x0100u
#define HTTP_F_USER_AGENT      0x0200u
#define HTTP_F_TRACEPARENT     0x0400u /* header present (do not inject another) */
#define HTTP_F_TRACEPARENT_DUP 0x0800u /* present more than once: value cleared */
#define HTTP_F_TRACESTATE      0x1000u
#define HTTP_F_BAGGAGE         0x2000u
#define HTTP_F_UNTIL_CLOSE     0x4000u /* response body ends at EOF: call http_feed_eof */
#define HTTP_F_TUNNEL          0x8000u /* 101, or 2xx to CONNECT: what follows is not HTTP */

/* st->truncated */
#define HTTP_TRUNC_TARGET      0x01u
#define HTTP_TRUNC_HOST        0x02u
#define HTTP_TRUNC_USER_AGENT  0x04u
#define HTTP_TRUNC_TRACEPARENT 0x08u
#define HTTP_TRUNC_TRACESTATE  0x10u
#define HTTP_TRUNC_BAGGAGE     0x20u

/* http_response_init flags: what the response answers */
#define HTTP_RESP_TO_HEAD    0x1u /* no body whatever the headers say */
#define HTTP_RESP_TO_CONNECT 0x2u /* a 2xx opens a tunnel */

/* ---- state ------------------------------------------------------------ */

/* Optional text sink; every string is NUL-terminated, *_len excludes it.
 * Repeated tracestate/baggage headers are combined with ',' (RFC 9110
 * §5.3); for Host and User-Agent the first header wins. */
struct http_fields {
	uint16_t target_len, host_len, user_agent_len, tracestate_len, baggage_len;
	char target[HTTP_TARGET_CAP + 1];
	char host[HTTP_HOST_CAP + 1];
	char user_agent[HTTP_USER_AGENT_CAP + 1];
	char tracestate[HTTP_TRACESTATE_CAP + 1];
	char baggage[HTTP_BAGGAGE_CAP + 1];
};

/* Parser internals: opaque to callers, public only so the struct has a size. */
struct http_msg_private {
	uint64_t remaining;  /* body or chunk bytes still to skip */
	uint64_t cl_acc;     /* Content-Length element being parsed */
	uint32_t head_bytes; /* bytes of the current head/trailer section */
	uint16_t line_bytes; /* bytes of the current chunk-size line */
	uint8_t state, hdr, resp_flags, pos, aux, name_len, tok_len, in_trailer;
	uint8_t quiet; /* no START_LINE_DONE (http_feed_quiet_start_line) */
	char name[24]; /* lowercased header name; longer names are never ours */
	char tok[16];  /* current list token (Connection, TE, Upgrade) */
};

struct http_msg_state {
	uint32_t flags;          /* HTTP_F_* */
	uint16_t status;         /* responses: from START_LINE_DONE */
	uint8_t version_minor;   /* HTTP/1.x: from START_LINE_DONE */
	uint8_t truncated;       /* HTTP_TRUNC_* */
	uint8_t error;           /* enum http_error after HTTP_EV_ERROR */
	uint8_t is_response;
	uint8_t method_len;
	uint16_t traceparent_len;
	char method[HTTP_METHOD_CAP + 1];           /* requests: from START_LINE_DONE */
	char traceparent[HTTP_TRACEPARENT_CAP + 1]; /* raw value, OWS-trimmed */
	uint64_t content_length; /* valid with HTTP_F_CONTENT_LENGTH */
	struct http_fields *fields;
	struct http_msg_private p;
};

/* Start parsing a request (client writes, server reads). fields may be NULL. */
void http_request_init(struct http_msg_state *st, struct http_fields *fields);

/* Start parsing a response; flags are HTTP_RESP_TO_* for the request it
 * answers (see http_response_flags_for). A 1xx other than 101 is an interim
 * response: it ends with MESSAGE_DONE; re-init with the same flags for the
 * final response to the same request. */
void http_response_init(struct http_msg_state *st, unsigned flags, struct http_fields *fields);

/* After an init: do not stop at START_LINE_DONE, for a caller that has no
 * use for it (the shim's parsers): one http_feed call less per message.
 * Everything else — the other events, their offsets, the state — is the
 * same as without. */
void http_feed_quiet_start_line(struct http_msg_state *st);

/* HTTP_RESP_TO_* matching a parsed request's method. */
unsigned http_response_flags_for(const struct http_msg_state *request);

/* Consume a prefix of buf; stop after at most one event. *consumed is set on
 * every return (0 <= *consumed <= len). */
enum http_event http_feed(struct http_msg_state *st, const char *buf, size_t len,
			  size_t *consumed);

/* n body bytes were sent without the caller seeing them (sendfile). Consumes
 * what a Content-Length, chunk-data or until-close body lets it skip blind;
 * *consumed is 0 where the parser needs the actual bytes (chunk framing). */
enum http_event http_feed_opaque(struct http_msg_state *st, size_t len, size_t *consumed);

/* The peer closed the stream. MESSAGE_DONE ends an until-close body;
 * NEED_MORE means nothing was in flight (a clean close between messages);
 * ERROR (HTTP_ERR_TRUNCATED) means the message was cut short. */
enum http_event http_feed_eof(struct http_msg_state *st);

/* After MESSAGE_DONE: may another message follow on this connection?
 * (HTTP/1.1 unless "close"; HTTP/1.0 only with "keep-alive"; never after a
 * tunnel or an until-close body.) */
bool http_msg_keep_alive(const struct http_msg_state *st);

/* ---- URL redaction (OpenTelemetry semantic conventions) -------------- */

/* Copy a URL or request-target for url.full / url.path+query: userinfo
 * ("user:pass@") becomes "REDACTED:REDACTED@", and the values of the query
 * parameters AWSAccessKeyId, Signature, sig and X-Goog-Signature (exact
 * names) become "REDACTED". Like snprintf: writes at most cap-1 bytes plus a
 * NUL (when cap > 0) and returns the full length the result needs. A secret
 * is replaced before anything is written, so truncation never leaks one. */
size_t http_url_redact_query(char *out, size_t cap, const char *url, size_t len);

/* The same for a bare query string (url.query: the part after '?'). */
size_t http_query_redact(char *out, size_t cap, const char *query, size_t len);

/* ---- where a header's value is ------------------------------------------ */

/* The offset in buf[0..len) of `val` standing as the value of header `name`:
 * preceded by "\n" name ":" and optional SP/HTAB, the name in any case. -1
 * when it is not there (or not whole in buf). Pure and copy-free: the HTTP
 * tracer uses it to find, in the bytes of one write, a forwarded traceparent
 * it is about to rewrite. */
long http_header_value_at(const char *buf, size_t len, const char *name, size_t nlen, const char *val, size_t vlen);

#endif
