/* w3c.h — W3C Trace Context (traceparent, tracestate) and W3C Baggage.
 *
 * Pure functions over caller buffers: no allocation, no globals, no I/O, no
 * locale, so they are safe inside an LD_PRELOAD hook and a signal handler.
 * Nothing needs a NUL terminator: every input is (pointer, length); every
 * result either points into the input or is written into a caller buffer
 * with an explicit capacity.
 *
 * The same parsers serve the HTTP headers and the environment carriers
 * (TRACEPARENT, TRACESTATE, BAGGAGE, as in the OTel env-carrier spec): pass
 * getenv()'s string and its strlen().
 *
 * Rules the caller must keep (W3C Trace Context §tracestate): if
 * w3c_traceparent_parse() fails, do not even look at tracestate — start a new
 * trace and drop it. A failing tracestate never invalidates traceparent.
 */
#ifndef TRACESHIM_PROTO_W3C_H
#define TRACESHIM_PROTO_W3C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- traceparent ------------------------------------------------------ */

#define W3C_TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */
#define W3C_FLAG_SAMPLED 0x01u
#define W3C_FLAG_RANDOM 0x02u /* Level 2: trace-id right 7 bytes are random */

struct w3c_traceparent {
	uint8_t version; /* as received; w3c_traceparent_format always writes 00 */
	uint8_t flags;   /* all 8 bits as received; test with W3C_FLAG_* masks */
	uint8_t trace_id[16];
	uint8_t span_id[8]; /* the parent-id field */
};

/* Parse a traceparent value. Leading/trailing SP and HTAB are ignored.
 * Rejects: uppercase hex, all-zero trace-id or parent-id, version ff, wrong
 * field lengths or separators, version 00 with anything after the flags.
 * A version above 00 is accepted when its first 55 characters parse as v00
 * and are followed by the end or '-' (the rest is ignored, as the spec says).
 * On failure *out is left untouched. */
bool w3c_traceparent_parse(const char *s, size_t len, struct w3c_traceparent *out);

/* Write the 55-character version-00 form into out[0..54]; no terminator.
 * Returns W3C_TRACEPARENT_LEN. (A received higher version is downgraded to
 * 00 on output, the one mutation the spec allows for it.) */
size_t w3c_traceparent_format(const struct w3c_traceparent *tp,
			      char out[W3C_TRACEPARENT_LEN]);

/* True when trace_id or span_id is all zeroes (never valid on the wire). */
bool w3c_traceparent_ids_zero(const struct w3c_traceparent *tp);

/* ---- tracestate ------------------------------------------------------- */

#define W3C_TRACESTATE_MAX_MEMBERS 32
#define W3C_TRACESTATE_PROPAGATE_MAX 512 /* we forward at most this many bytes */
#define W3C_TRACESTATE_BIG_MEMBER 128    /* dropped first when cutting down */

struct w3c_tracestate_info {
	unsigned members; /* non-empty list-members */
	size_t len;       /* length after trimming OWS at both ends */
};

/* Validate a (combined) tracestate value against the Level 2 grammar:
 * key = (lcalpha / DIGIT) 0*255(lcalpha / DIGIT / _ - * / @),
 * value = 1..256 printable ASCII except ',' and '=', not ending in SP;
 * empty and whitespace-only members are allowed and not counted; at most 32
 * members; keys unique. Returns false when the whole header must be dropped.
 * info may be NULL. */
bool w3c_tracestate_validate(const char *s, size_t len, struct w3c_tracestate_info *info);

/* Valid and at most W3C_TRACESTATE_PROPAGATE_MAX bytes once trimmed: the
 * incoming value can be forwarded as it is. */
bool w3c_tracestate_may_propagate(const char *s, size_t len);

/* Build the tracestate to forward: members trimmed and joined with ',',
 * empty members dropped, cut to min(cap, W3C_TRACESTATE_PROPAGATE_MAX) by
 * removing WHOLE members — those over 128 bytes first, then from the end, as
 * the spec asks. Returns the length written (no terminator); 0 when the
 * input is invalid or nothing fits (then send no tracestate). */
size_t w3c_tracestate_build(char *out, size_t cap, const char *s, size_t len);

/* ---- baggage ---------------------------------------------------------- */

#define W3C_BAGGAGE_MAX_MEMBERS 64
#define W3C_BAGGAGE_MAX_BYTES 8192

/* One list-member; every pointer points into the parsed input. */
struct w3c_baggage_member {
	const char *key;
	size_t key_len;
	const char *value; /* raw, still percent-encoded; may be empty */
	size_t value_len;
	const char *props; /* "p1;p2=v" after the first ';', OWS-trimmed, or empty */
	size_t props_len;
};

/* Iterator over the VALID members of a baggage value (members that break
 * the grammar, or whose value does not percent-decode to UTF-8, are skipped
 * whole). It does not apply the propagation limits: the caller stops when it
 * has enough (e.g. attributes per span). */
struct w3c_baggage_iter {
	const char *s;
	size_t len;
	size_t pos;
};

void w3c_baggage_iter_init(struct w3c_baggage_iter *it, const char *s, size_t len);
bool w3c_baggage_next(struct w3c_baggage_iter *it, struct w3c_baggage_member *m);

/* Percent-decode a member's value into out (no terminator). Returns the
 * decoded length, or SIZE_MAX when the escapes are malformed, the result is
 * not UTF-8, or it does not fit in cap. out may be NULL with cap 0 to only
 * validate and measure. */
size_t w3c_baggage_decode_value(const struct w3c_baggage_member *m, char *out, size_t cap);

/* Re-serialise the incoming baggage for forwarding: only complete valid
 * members, "key=value;prop;k=v" without OWS, joined with ','; at most
 * W3C_BAGGAGE_MAX_MEMBERS members and min(cap, W3C_BAGGAGE_MAX_BYTES) bytes.
 * A member that does not fit is left out whole (later, shorter ones may still
 * go). Returns the length written (no terminator), 0 if nothing is left. */
size_t w3c_baggage_build(char *out, size_t cap, const char *s, size_t len);

#endif
