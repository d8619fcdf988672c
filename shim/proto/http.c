/* http.c — the incremental HTTP/1.x scanner declared in http.h.
 *
 * One byte-level state machine for requests and responses: step() takes one
 * head byte, and is what makes every split point equivalent. Most head bytes
 * never reach it, though: fast paths (below http_feed's per-byte steps) take
 * header names, values, the request-target and the reason phrase in runs,
 * doing what step() would, and leave it only line ends that are events and
 * bytes that are wrong. Body bytes are skipped in bulk. The only memory is
 * struct http_msg_state and the optional struct http_fields: values are
 * copied into fixed slots as they stream past, never buffered whole. */
#include "proto/http.h"
#include "proto/outbuf.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum {
	S_REQ_START, /* skipping empty lines before a request (RFC 9112 §2.2) */
	S_METHOD,
	S_REQ_SP1,
	S_TARGET,
	S_REQ_SP2,
	S_REQ_VERSION,
	S_REQ_EOL,
	S_RESP_VERSION,
	S_RESP_SP1,
	S_RESP_SP,
	S_RESP_STATUS,
	S_RESP_AFTER_STATUS,
	S_RESP_REASON,
	S_LINE_LF, /* CR seen at the end of the start line */
	S_HDR_START,
	S_HDR_NAME,
	S_HDR_OWS,
	S_HDR_VALUE,
	S_HDR_LF,
	S_HEAD_LF,
	/* states above count against HTTP_HEAD_MAX */
	S_CHUNK_SIZE,
	S_CHUNK_SIZE_MORE,
	S_CHUNK_EXT,
	S_CHUNK_SIZE_LF,
	/* states above, from S_CHUNK_SIZE, count against HTTP_CHUNK_LINE_MAX */
	S_CHUNK_DATA_CR,
	S_CHUNK_DATA_LF,
	S_BODY_LEN, /* bulk states from here on */
	S_CHUNK_DATA,
	S_BODY_CLOSE,
	S_DONE_PENDING, /* no body: MESSAGE_DONE on the next call */
	S_FINISHED,
	S_ERROR,
};

enum {
	HDR_OTHER,
	HDR_HOST,
	HDR_USER_AGENT,
	HDR_CONTENT_LENGTH,
	HDR_TE,
	HDR_CONNECTION,
	HDR_UPGRADE,
	HDR_TRACEPARENT,
	HDR_TRACESTATE,
	HDR_BAGGAGE,
	HDR_TARGET, /* not a header: the request-target uses the same slot code */
};

/* Content-Length is kept far below UINT64_MAX so no sum can overflow. */
#define HTTP_CL_MAX ((uint64_t)1 << 62)

/* ---- character classes ------------------------------------------------ */

static bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c | 0x20 : c; }

/* The byte classes of a head, one table lookup each (the fast paths below
 * test every byte):
 * C_TCHAR  RFC 9110 tchar: methods, header names, list tokens;
 * C_TARGET request-target bytes: visible ASCII or obs-text (picohttpparser
 *          accepts the latter too; real clients send raw UTF-8 paths);
 * C_FIELD  field-value / reason-phrase bytes: HTAB, SP, VCHAR, obs-text; so
 *          NUL, a lone CR and the other controls are rejected. */
enum { C_TCHAR = 1, C_TARGET = 2, C_FIELD = 4 };

#define WS C_FIELD                       /* SP, HTAB */
#define VC (C_FIELD | C_TARGET)          /* visible, not a tchar; obs-text */
#define TC (C_FIELD | C_TARGET | C_TCHAR)
#define VC16 VC, VC, VC, VC, VC, VC, VC, VC, VC, VC, VC, VC, VC, VC, VC, VC
static const uint8_t byte_class[256] = {
	0,  0,  0,  0,  0,  0,  0,  0,  0,  WS, 0,  0,  0,  0,  0,  0,  /* HTAB */
	0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
	WS, TC, VC, TC, TC, TC, TC, TC, VC, VC, TC, TC, VC, TC, TC, VC, /*  !"#$%&'()*+,-./ */
	TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, VC, VC, VC, VC, VC, VC, /* 0-9 :;<=>? */
	VC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, /* @A-O */
	TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, VC, VC, VC, TC, TC, /* P-Z [\]^_ */
	TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, /* `a-o */
	TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, TC, VC, TC, VC, TC, 0,  /* p-z {|}~ DEL */
	VC16, VC16, VC16, VC16, VC16, VC16, VC16, VC16,                  /* obs-text */
};
#undef WS
#undef VC
#undef TC
#undef VC16

static bool is_tchar(unsigned char c) { return byte_class[c] & C_TCHAR; }

#define ONES 0x0101010101010101ull /* a byte's value in every byte of a word */
#define HIGHS (ONES * 0x80)
static bool is_target_char(unsigned char c) { return byte_class[c] & C_TARGET; }
static bool is_field_char(unsigned char c) { return byte_class[c] & C_FIELD; }

static int hex_val(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	c = lower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* ---- sniffing --------------------------------------------------------- */

static const char *const sniff_methods[] = {
	"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
};

/* YES sets *used to the length of "METHOD ". */
static enum http_sniff sniff_method(const char *b, size_t n, size_t *used)
{
	enum http_sniff r = HTTP_SNIFF_NO;

	for (size_t i = 0; i < sizeof sniff_methods / sizeof sniff_methods[0]; i++) {
		size_t ml = strlen(sniff_methods[i]);
		if (memcmp(b, sniff_methods[i], n < ml ? n : ml) != 0)
			continue;
		if (n <= ml) {
			r = HTTP_SNIFF_NEED_MORE;
		} else if (b[ml] == ' ') {
			*used = ml + 1;
			return HTTP_SNIFF_YES;
		}
	}
	return r;
}

/* Past "METHOD ": target, " HTTP/1.<d>", CR? LF, as far as the window goes.
 * Running out of a full window is a YES; of a short one, NEED_MORE. */
static enum http_sniff sniff_line(const unsigned char *p, size_t n, bool window_full)
{
	static const char tail[] = "HTTP/1.";
	enum http_sniff out = window_full ? HTTP_SNIFF_YES : HTTP_SNIFF_NEED_MORE;
	size_t i = 0;

	if (n == 0)
		return out;
	if (p[0] != '/' && p[0] != '*' && p[0] != '[' && !is_alpha(p[0]) && !is_digit(p[0]))
		return HTTP_SNIFF_NO;
	while (i < n && p[i] != ' ')
		if (!is_target_char(p[i++]))
			return HTTP_SNIFF_NO;
	for (size_t k = 0; k <= 7; k++) {
		if (++i >= n) /* k = 0 steps over the SP */
			return out;
		if (k < 7 && p[i] != (unsigned char)tail[k])
			return HTTP_SNIFF_NO;
	}
	if (!is_digit(p[i]))
		return HTTP_SNIFF_NO;
	if (++i >= n)
		return out;
	if (p[i] == '\r' && ++i >= n)
		return out;
	return p[i] == '\n' ? HTTP_SNIFF_YES : HTTP_SNIFF_NO;
}

enum http_sniff http_request_sniff(const char *buf, size_t len)
{
	size_t n = len < HTTP_SNIFF_MAX ? len : HTTP_SNIFF_MAX, used = 0;

	if (n == 0) /* (NULL, 0) is a valid empty input */
		return HTTP_SNIFF_NEED_MORE;
	enum http_sniff r = sniff_method(buf, n, &used);

	if (r != HTTP_SNIFF_YES)
		return r;
	return sniff_line((const unsigned char *)buf + used, n - used, len >= HTTP_SNIFF_MAX);
}

/* ---- init ------------------------------------------------------------- */

static void clear_fields(struct http_fields *f)
{
	f->target_len = f->host_len = f->user_agent_len = 0;
	f->tracestate_len = f->baggage_len = 0;
	f->target[0] = f->host[0] = f->user_agent[0] = 0;
	f->tracestate[0] = f->baggage[0] = 0;
}

static void init_common(struct http_msg_state *st, struct http_fields *fields)
{
	memset(st, 0, sizeof *st);
	st->fields = fields;
	if (fields)
		clear_fields(fields);
}

void http_request_init(struct http_msg_state *st, struct http_fields *fields)
{
	init_common(st, fields);
	st->p.state = S_REQ_START;
}

void http_response_init(struct http_msg_state *st, unsigned flags, struct http_fields *fields)
{
	init_common(st, fields);
	st->is_response = 1;
	st->p.resp_flags = (uint8_t)flags;
	st->p.state = S_RESP_VERSION;
}

void http_feed_quiet_start_line(struct http_msg_state *st) { st->p.quiet = 1; }

unsigned http_response_flags_for(const struct http_msg_state *req)
{
	if (req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0)
		return HTTP_RESP_TO_HEAD;
	if (req->method_len == 7 && memcmp(req->method, "CONNECT", 7) == 0)
		return HTTP_RESP_TO_CONNECT;
	return 0;
}

static enum http_event fail(struct http_msg_state *st, enum http_error e)
{
	st->p.state = S_ERROR;
	st->error = (uint8_t)e;
	return HTTP_EV_ERROR;
}

/* ---- text slots: where a value is copied, and how it is cut ---------- */

struct slot {
	char *buf;
	uint16_t *len;
	uint16_t cap;
	uint8_t bit;  /* HTTP_TRUNC_* */
	bool list;    /* comma-separated: combine repeats, cut at a member boundary */
};

static bool slot_for(struct http_msg_state *st, unsigned hdr, struct slot *s)
{
	struct http_fields *f = st->fields;

	if (hdr == HDR_TRACEPARENT) {
		*s = (struct slot){st->traceparent, &st->traceparent_len, HTTP_TRACEPARENT_CAP,
				   HTTP_TRUNC_TRACEPARENT, false};
		return true;
	}
	if (!f)
		return false;
	switch (hdr) {
	case HDR_TARGET:
		*s = (struct slot){f->target, &f->target_len, HTTP_TARGET_CAP, HTTP_TRUNC_TARGET, false};
		return true;
	case HDR_HOST:
		*s = (struct slot){f->host, &f->host_len, HTTP_HOST_CAP, HTTP_TRUNC_HOST, false};
		return true;
	case HDR_USER_AGENT:
		*s = (struct slot){f->user_agent, &f->user_agent_len, HTTP_USER_AGENT_CAP,
				   HTTP_TRUNC_USER_AGENT, false};
		return true;
	case HDR_TRACESTATE:
		*s = (struct slot){f->tracestate, &f->tracestate_len, HTTP_TRACESTATE_CAP,
				   HTTP_TRUNC_TRACESTATE, true};
		return true;
	case HDR_BAGGAGE:
		*s = (struct slot){f->baggage, &f->baggage_len, HTTP_BAGGAGE_CAP, HTTP_TRUNC_BAGGAGE, true};
		return true;
	default:
		return false;
	}
}

/* Length of buf[0..n) without a trailing incomplete UTF-8 sequence. */
static size_t utf8_cut(const char *buf, size_t n)
{
	size_t i = n, k = 0;

	while (i > 0 && k < 3 && ((unsigned char)buf[i - 1] & 0xc0) == 0x80) {
		i--;
		k++;
	}
	if (i == 0 || (unsigned char)buf[i - 1] < 0xc0)
		return n;
	unsigned char lead = (unsigned char)buf[i - 1];
	size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
	return k + 1 < need ? i - 1 : n;
}

static void slot_set_len(struct slot *s, size_t n)
{
	while (n > 0 && is_ows((unsigned char)s->buf[n - 1]))
		n--;
	*s->len = (uint16_t)n;
	s->buf[n] = 0;
}

/* The value does not fit: keep what is whole. A list keeps its complete
 * members (at_boundary: the overflowing byte was a ','), so a cut tracestate
 * or baggage is still a valid, shorter list. */
static void slot_cut(struct http_msg_state *st, struct slot *s, bool at_boundary)
{
	size_t n = *s->len;

	st->truncated |= s->bit;
	if (s->list && !at_boundary) {
		while (n > 0 && s->buf[n - 1] != ',')
			n--;
		if (n > 0)
			n--; /* drop the comma itself */
	} else if (!s->list) {
		n = utf8_cut(s->buf, n);
	}
	slot_set_len(s, n);
}

static void slot_put(struct http_msg_state *st, struct slot *s, unsigned char c)
{
	if (*s->len < s->cap) {
		s->buf[(*s->len)++] = (char)c;
		s->buf[*s->len] = 0;
		return;
	}
	/* Full: OWS may still turn out to be trailing, so only a later visible
	 * byte proves the value is longer than the cap. */
	if (!is_ows(c))
		slot_cut(st, s, c == ',');
}

static void text_byte(struct http_msg_state *st, unsigned char c)
{
	struct slot s;

	if (!slot_for(st, st->p.hdr, &s) || (st->truncated & s.bit))
		return;
	if (s.list && !st->p.aux) { /* first byte of a repeated list header */
		st->p.aux = 1;
		if (*s.len > 0)
			slot_put(st, &s, ',');
		if (st->truncated & s.bit)
			return;
	}
	slot_put(st, &s, c);
}

static void text_end(struct http_msg_state *st)
{
	struct slot s;

	if (slot_for(st, st->p.hdr, &s))
		slot_set_len(&s, *s.len);
}

/* ---- Content-Length: digits, and the "N, N" list form RFC 9110 allows - */

enum { CL_WANT, CL_DIGITS, CL_AFTER };

static bool cl_commit(struct http_msg_state *st)
{
	if ((st->flags & HTTP_F_CONTENT_LENGTH) && st->content_length != st->p.cl_acc)
		return false; /* conflicting lengths: a smuggling vector, never guess */
	st->content_length = st->p.cl_acc;
	st->flags |= HTTP_F_CONTENT_LENGTH;
	return true;
}

static bool cl_byte(struct http_msg_state *st, unsigned char c)
{
	if (st->p.aux == CL_DIGITS && is_digit(c)) {
		if (st->p.cl_acc > HTTP_CL_MAX / 10)
			return false;
		st->p.cl_acc = st->p.cl_acc * 10 + (c - '0');
		return true;
	}
	if (st->p.aux == CL_DIGITS)
		st->p.aux = CL_AFTER;
	if (is_ows(c))
		return true;
	if (st->p.aux == CL_WANT) {
		if (!is_digit(c))
			return false;
		st->p.cl_acc = c - '0';
		st->p.aux = CL_DIGITS;
		return true;
	}
	if (c != ',' || !cl_commit(st))
		return false;
	st->p.aux = CL_WANT;
	return true;
}

static bool cl_end(struct http_msg_state *st)
{
	return st->p.aux != CL_WANT && cl_commit(st);
}

/* ---- list tokens: Transfer-Encoding, Connection, Upgrade -------------- */

static bool name_is(const unsigned char *name, const char *lower_name, size_t n);

/* The token against a lowercase word, without case: tokens are stored as
 * they came (tok_run copies them whole), and for tchars c | 0x20 is the
 * lowercase of a letter and never makes a letter or '-' of anything else. */
static inline bool tok_is(const struct http_msg_state *st, const char *s)
{
	size_t n = strlen(s);

	if (st->p.tok_len != n)
		return false;
	if (n >= 4)
		return name_is((const unsigned char *)st->p.tok, s, n);
	for (size_t j = 0; j < n; j++)
		if ((st->p.tok[j] | 0x20) != s[j])
			return false;
	return true;
}

static inline void tok_apply(struct http_msg_state *st)
{
	switch (st->p.hdr) {
	case HDR_TE: /* only the LAST coding decides the framing */
		if (tok_is(st, "chunked"))
			st->flags |= HTTP_F_CHUNKED;
		else
			st->flags &= ~HTTP_F_CHUNKED;
		break;
	case HDR_CONNECTION:
		if (tok_is(st, "close"))
			st->flags |= HTTP_F_CONN_CLOSE;
		else if (tok_is(st, "keep-alive"))
			st->flags |= HTTP_F_CONN_KEEPALIVE;
		else if (tok_is(st, "upgrade"))
			st->flags |= HTTP_F_CONN_UPGRADE;
		break;
	case HDR_UPGRADE:
		if (tok_is(st, "h2c"))
			st->flags |= HTTP_F_UPGRADE_H2C;
		break;
	default:
		break;
	}
}

static void tok_commit(struct http_msg_state *st)
{
	if (st->p.tok_len)
		tok_apply(st); /* an over-long token matches nothing, as it should */
	st->p.tok_len = 0;
	st->p.aux = 0;
}

/* aux = 1: the token is over (";params" or OWS seen); skip to the next ','. */
static void tok_byte(struct http_msg_state *st, unsigned char c)
{
	if (c == ',') {
		tok_commit(st);
		return;
	}
	if (st->p.aux)
		return;
	if (c == ';' || (is_ows(c) && st->p.tok_len)) {
		st->p.aux = 1;
		return;
	}
	if (is_ows(c))
		return;
	if (st->p.tok_len < sizeof st->p.tok)
		st->p.tok[st->p.tok_len] = (char)lower(c);
	if (st->p.tok_len <= sizeof st->p.tok)
		st->p.tok_len++;
}

/* ---- header lines ----------------------------------------------------- */

/* Header names against the lowercase spelling of one we read, a word at a
 * time. name is the stored (lowercased) name or the raw input: either way
 * all tchars, and for a tchar, c | 0x20 is its lowercase when it is a letter
 * and never turns anything else into a letter or '-'. */
static bool word4_is(const unsigned char *name, const char *lower_name)
{
	uint32_t a, b;
	memcpy(&a, name, 4);
	memcpy(&b, lower_name, 4);
	return (a | 0x20202020u) == b;
}

static bool word8_is(const unsigned char *name, const char *lower_name)
{
	uint64_t a, b;
	memcpy(&a, name, 8);
	memcpy(&b, lower_name, 8);
	return (a | ONES * 0x20) == b;
}

/* n is 4 to 17: words from both ends (overlapping) cover the name, plus the
 * middle one of "transfer-encoding". */
static bool name_is(const unsigned char *name, const char *lower_name, size_t n)
{
	if (n < 8)
		return word4_is(name, lower_name) && word4_is(name + n - 4, lower_name + n - 4);
	return word8_is(name, lower_name) && (n <= 16 || word8_is(name + 8, lower_name + 8)) &&
	       word8_is(name + n - 8, lower_name + n - 8);
}

/* The headers we read, told apart by length first: every other name costs
 * one switch. (len is 25 for stored names longer than their 24 bytes.) */
static inline unsigned classify(const struct http_msg_state *st, const unsigned char *name, size_t len)
{
	if (st->p.in_trailer)
		return HDR_OTHER; /* trailers never change framing or context */
	switch (len) {
	case 4:
		return name_is(name, "host", 4) ? HDR_HOST : HDR_OTHER;
	case 7:
		if (name_is(name, "upgrade", 7))
			return HDR_UPGRADE;
		return name_is(name, "baggage", 7) ? HDR_BAGGAGE : HDR_OTHER;
	case 10:
		if (name_is(name, "user-agent", 10))
			return HDR_USER_AGENT;
		if (name_is(name, "connection", 10))
			return HDR_CONNECTION;
		return name_is(name, "tracestate", 10) ? HDR_TRACESTATE : HDR_OTHER;
	case 11:
		return name_is(name, "traceparent", 11) ? HDR_TRACEPARENT : HDR_OTHER;
	case 14:
		return name_is(name, "content-length", 14) ? HDR_CONTENT_LENGTH : HDR_OTHER;
	case 17:
		return name_is(name, "transfer-encoding", 17) ? HDR_TE : HDR_OTHER;
	default:
		return HDR_OTHER;
	}
}

/* claim(), header_begin() and header_end() run once per header line on the
 * fast path: inline. */

/* Record that a header appeared; returns the id its value is routed to. */
static inline unsigned claim(struct http_msg_state *st, unsigned hdr)
{
	static const uint32_t once[] = {
		[HDR_HOST] = HTTP_F_HOST, [HDR_USER_AGENT] = HTTP_F_USER_AGENT,
		[HDR_TRACEPARENT] = HTTP_F_TRACEPARENT,
	};
	static const uint32_t seen[] = {
		[HDR_TE] = HTTP_F_TE, [HDR_UPGRADE] = HTTP_F_UPGRADE,
		[HDR_TRACESTATE] = HTTP_F_TRACESTATE, [HDR_BAGGAGE] = HTTP_F_BAGGAGE,
	};

	if (hdr < sizeof seen / sizeof seen[0])
		st->flags |= seen[hdr];
	if (hdr >= sizeof once / sizeof once[0] || !once[hdr])
		return hdr;
	if (!(st->flags & once[hdr])) {
		st->flags |= once[hdr];
		return hdr;
	}
	if (hdr == HDR_TRACEPARENT) { /* two traceparents: trust neither */
		st->flags |= HTTP_F_TRACEPARENT_DUP;
		st->traceparent_len = 0;
		st->traceparent[0] = 0;
	}
	return HDR_OTHER; /* Host, User-Agent: the first one wins */
}

/* The ':' after a header name (name: the whole name, stored or in the input). */
static inline enum http_event header_begin(struct http_msg_state *st, const unsigned char *name, size_t len)
{
	st->p.hdr = (uint8_t)claim(st, classify(st, name, len));
	st->p.aux = 0;
	st->p.tok_len = 0;
	st->p.state = S_HDR_OWS;
	return HTTP_EV_NEED_MORE;
}

static bool value_byte(struct http_msg_state *st, unsigned char c)
{
	switch (st->p.hdr) {
	case HDR_OTHER:
		return true;
	case HDR_CONTENT_LENGTH:
		return cl_byte(st, c);
	case HDR_TE:
	case HDR_CONNECTION:
	case HDR_UPGRADE:
		tok_byte(st, c);
		return true;
	default:
		text_byte(st, c);
		return true;
	}
}

static inline enum http_event header_end(struct http_msg_state *st)
{
	switch (st->p.hdr) {
	case HDR_OTHER:
		break;
	case HDR_CONTENT_LENGTH:
		if (!cl_end(st))
			return fail(st, HTTP_ERR_FRAMING);
		break;
	case HDR_TE:
	case HDR_CONNECTION:
	case HDR_UPGRADE:
		tok_commit(st);
		break;
	default:
		text_end(st);
	}
	st->p.state = S_HDR_START;
	return HTTP_EV_NEED_MORE;
}

/* ---- framing (RFC 9112 §6.3) ------------------------------------------ */

static void start_chunked(struct http_msg_state *st)
{
	st->p.state = S_CHUNK_SIZE;
	st->p.line_bytes = 0;
}

static void start_length(struct http_msg_state *st)
{
	st->p.remaining = st->content_length;
	st->p.state = st->content_length ? S_BODY_LEN : S_DONE_PENDING;
}

static enum http_event request_body(struct http_msg_state *st)
{
	if (st->flags & HTTP_F_TE) {
		/* chunked must be last, else the length is unknowable: RFC 9112 §6.3 p4.
		 * With Content-Length too, chunked wins (§6.1). */
		if (!(st->flags & HTTP_F_CHUNKED))
			return fail(st, HTTP_ERR_FRAMING);
		start_chunked(st);
	} else if (st->flags & HTTP_F_CONTENT_LENGTH) {
		start_length(st);
	} else {
		st->p.state = S_DONE_PENDING; /* requests without framing have no body */
	}
	return HTTP_EV_HEADERS_DONE;
}

static enum http_event response_body(struct http_msg_state *st)
{
	unsigned s = st->status;

	if (s == 101 || ((st->p.resp_flags & HTTP_RESP_TO_CONNECT) && s / 100 == 2)) {
		st->flags |= HTTP_F_TUNNEL;
		st->p.state = S_DONE_PENDING;
	} else if (s < 200 || s == 204 || s == 304 || (st->p.resp_flags & HTTP_RESP_TO_HEAD)) {
		st->p.state = S_DONE_PENDING;
	} else if (st->flags & HTTP_F_CHUNKED) {
		start_chunked(st);
	} else if (st->flags & HTTP_F_TE) {
		st->flags |= HTTP_F_UNTIL_CLOSE; /* a coding we cannot delimit */
		st->p.state = S_BODY_CLOSE;
	} else if (st->flags & HTTP_F_CONTENT_LENGTH) {
		start_length(st);
	} else {
		st->flags |= HTTP_F_UNTIL_CLOSE;
		st->p.state = S_BODY_CLOSE;
	}
	return HTTP_EV_HEADERS_DONE;
}

static enum http_event head_done(struct http_msg_state *st)
{
	if (st->p.in_trailer) {
		st->p.state = S_FINISHED;
		return HTTP_EV_MESSAGE_DONE;
	}
	return st->is_response ? response_body(st) : request_body(st);
}

/* ---- per-byte steps --------------------------------------------------- */

static enum http_event step(struct http_msg_state *st, unsigned char c);

static enum http_event version_byte(struct http_msg_state *st, unsigned char c, uint8_t next)
{
	static const char http1[] = "HTTP/1.";

	if (st->p.pos < 7) {
		if (st->p.pos == 5 && c == '2')
			return fail(st, HTTP_ERR_HTTP2);
		if (c != (unsigned char)http1[st->p.pos])
			return fail(st, HTTP_ERR_SYNTAX);
		st->p.pos++;
		return HTTP_EV_NEED_MORE;
	}
	if (!is_digit(c))
		return fail(st, HTTP_ERR_SYNTAX);
	st->version_minor = (uint8_t)(c - '0');
	st->p.state = next;
	return HTTP_EV_NEED_MORE;
}

static enum http_event line_end(struct http_msg_state *st, unsigned char c)
{
	if (c == '\r') {
		st->p.state = S_LINE_LF;
		return HTTP_EV_NEED_MORE;
	}
	if (c != '\n')
		return fail(st, HTTP_ERR_SYNTAX);
	st->p.state = S_HDR_START;
	return st->p.quiet ? HTTP_EV_NEED_MORE : HTTP_EV_START_LINE_DONE;
}

static enum http_event goto_state(struct http_msg_state *st, uint8_t s, unsigned char c)
{
	st->p.state = s;
	return step(st, c);
}

static enum http_event method_byte(struct http_msg_state *st, unsigned char c)
{
	if (c == ' ' && st->method_len > 0) {
		st->p.state = S_REQ_SP1;
		return HTTP_EV_NEED_MORE;
	}
	if (!is_tchar(c) || st->method_len == HTTP_METHOD_CAP)
		return fail(st, HTTP_ERR_SYNTAX);
	st->method[st->method_len++] = (char)c;
	st->method[st->method_len] = 0;
	return HTTP_EV_NEED_MORE;
}

static enum http_event step_request_line(struct http_msg_state *st, unsigned char c)
{
	switch (st->p.state) {
	case S_REQ_START:
		return c == '\r' || c == '\n' ? HTTP_EV_NEED_MORE : goto_state(st, S_METHOD, c);
	case S_METHOD:
		return method_byte(st, c);
	case S_REQ_SP1:
		if (c == ' ')
			return HTTP_EV_NEED_MORE;
		st->p.hdr = HDR_TARGET;
		return goto_state(st, S_TARGET, c);
	case S_TARGET:
		if (c == ' ') {
			st->p.state = S_REQ_SP2;
			return HTTP_EV_NEED_MORE;
		}
		if (!is_target_char(c)) /* includes CR/LF: HTTP/0.9 is not supported */
			return fail(st, HTTP_ERR_SYNTAX);
		text_byte(st, c);
		return HTTP_EV_NEED_MORE;
	case S_REQ_SP2:
		return c == ' ' ? HTTP_EV_NEED_MORE : goto_state(st, S_REQ_VERSION, c);
	case S_REQ_VERSION:
		return version_byte(st, c, S_REQ_EOL);
	default: /* S_REQ_EOL */
		return line_end(st, c);
	}
}

static enum http_event step_status_line(struct http_msg_state *st, unsigned char c)
{
	switch (st->p.state) {
	case S_RESP_VERSION:
		return version_byte(st, c, S_RESP_SP1);
	case S_RESP_SP1:
		if (c != ' ')
			return fail(st, HTTP_ERR_SYNTAX);
		st->p.state = S_RESP_SP;
		return HTTP_EV_NEED_MORE;
	case S_RESP_SP:
		return c == ' ' ? HTTP_EV_NEED_MORE : goto_state(st, S_RESP_STATUS, c);
	case S_RESP_STATUS:
		if (!is_digit(c) || (st->status == 0 && c == '0'))
			return fail(st, HTTP_ERR_SYNTAX); /* 3 digits, 100..999 */
		st->status = (uint16_t)(st->status * 10 + (c - '0'));
		if (st->status >= 100)
			st->p.state = S_RESP_AFTER_STATUS;
		return HTTP_EV_NEED_MORE;
	case S_RESP_AFTER_STATUS:
		if (c == ' ') {
			st->p.state = S_RESP_REASON;
			return HTTP_EV_NEED_MORE;
		}
		return line_end(st, c); /* "HTTP/1.1 200" with no reason is fine */
	default: /* S_RESP_REASON */
		if (c == '\r' || c == '\n')
			return line_end(st, c);
		return is_field_char(c) ? HTTP_EV_NEED_MORE : fail(st, HTTP_ERR_SYNTAX);
	}
}

static enum http_event step_header(struct http_msg_state *st, unsigned char c)
{
	switch (st->p.state) {
	case S_HDR_START:
		if (c == '\r') {
			st->p.state = S_HEAD_LF;
			return HTTP_EV_NEED_MORE;
		}
		if (c == '\n')
			return head_done(st);
		/* SP/HTAB here is obs-fold (RFC 9112 §5.2): rejected, as is NUL */
		if (!is_tchar(c))
			return fail(st, HTTP_ERR_SYNTAX);
		st->p.name_len = 0;
		return goto_state(st, S_HDR_NAME, c);
	case S_HDR_NAME:
		if (c == ':')
			return header_begin(st, (const unsigned char *)st->p.name, st->p.name_len);
		if (!is_tchar(c)) /* incl. SP before ':', which RFC 9112 §5.1 forbids */
			return fail(st, HTTP_ERR_SYNTAX);
		if (st->p.name_len < sizeof st->p.name)
			st->p.name[st->p.name_len] = (char)lower(c);
		if (st->p.name_len <= sizeof st->p.name)
			st->p.name_len++;
		return HTTP_EV_NEED_MORE;
	case S_HDR_OWS:
		return is_ows(c) ? HTTP_EV_NEED_MORE : goto_state(st, S_HDR_VALUE, c);
	case S_HDR_VALUE:
		if (c == '\r') {
			st->p.state = S_HDR_LF;
			return HTTP_EV_NEED_MORE;
		}
		if (c == '\n')
			return header_end(st);
		if (!is_field_char(c))
			return fail(st, HTTP_ERR_SYNTAX);
		return value_byte(st, c) ? HTTP_EV_NEED_MORE : fail(st, HTTP_ERR_FRAMING);
	case S_HDR_LF:
		return c == '\n' ? header_end(st) : fail(st, HTTP_ERR_SYNTAX);
	default: /* S_HEAD_LF */
		return c == '\n' ? head_done(st) : fail(st, HTTP_ERR_SYNTAX);
	}
}

static enum http_event chunk_size_done(struct http_msg_state *st)
{
	if (st->p.remaining) {
		st->p.state = S_CHUNK_DATA;
	} else { /* last-chunk: a trailer section follows, parsed like headers */
		st->p.in_trailer = 1;
		st->p.head_bytes = 0;
		st->p.state = S_HDR_START;
	}
	return HTTP_EV_NEED_MORE;
}

static enum http_event step_chunk(struct http_msg_state *st, unsigned char c)
{
	int h = hex_val(c);

	switch (st->p.state) {
	case S_CHUNK_SIZE:
		if (h < 0)
			return fail(st, HTTP_ERR_SYNTAX);
		st->p.remaining = (uint64_t)h;
		st->p.state = S_CHUNK_SIZE_MORE;
		return HTTP_EV_NEED_MORE;
	case S_CHUNK_SIZE_MORE:
		if (h >= 0) {
			if (st->p.remaining >> 56)
				return fail(st, HTTP_ERR_FRAMING);
			st->p.remaining = st->p.remaining << 4 | (uint64_t)h;
			return HTTP_EV_NEED_MORE;
		}
		/* S_CHUNK_EXT also ends the line, so hand it CR/LF too */
		if (c == ';' || is_ows(c) || c == '\r' || c == '\n')
			return goto_state(st, S_CHUNK_EXT, c);
		return fail(st, HTTP_ERR_SYNTAX);
	case S_CHUNK_EXT: /* chunk extensions are skipped, not interpreted */
		if (c == '\r') {
			st->p.state = S_CHUNK_SIZE_LF;
			return HTTP_EV_NEED_MORE;
		}
		if (c == '\n')
			return chunk_size_done(st);
		return is_field_char(c) ? HTTP_EV_NEED_MORE : fail(st, HTTP_ERR_SYNTAX);
	case S_CHUNK_SIZE_LF:
		return c == '\n' ? chunk_size_done(st) : fail(st, HTTP_ERR_SYNTAX);
	case S_CHUNK_DATA_CR:
		if (c == '\r') {
			st->p.state = S_CHUNK_DATA_LF;
			return HTTP_EV_NEED_MORE;
		}
		return goto_state(st, S_CHUNK_DATA_LF, c); /* bare LF tolerated */
	default: /* S_CHUNK_DATA_LF */
		if (c != '\n')
			return fail(st, HTTP_ERR_SYNTAX);
		start_chunked(st);
		return HTTP_EV_NEED_MORE;
	}
}

/* Dispatch one head/chunk-line byte, enforcing the byte caps first. */
static enum http_event step(struct http_msg_state *st, unsigned char c)
{
	uint8_t s = st->p.state;

	if (s <= S_REQ_EOL)
		return step_request_line(st, c);
	if (s < S_LINE_LF)
		return step_status_line(st, c);
	if (s == S_LINE_LF)
		return c == '\n' ? line_end(st, c) : fail(st, HTTP_ERR_SYNTAX);
	if (s <= S_HEAD_LF)
		return step_header(st, c);
	return step_chunk(st, c);
}

static enum http_event step_counted(struct http_msg_state *st, unsigned char c)
{
	uint8_t s = st->p.state;

	if (s <= S_HEAD_LF && ++st->p.head_bytes > HTTP_HEAD_MAX)
		return fail(st, HTTP_ERR_TOO_LARGE);
	if (s >= S_CHUNK_SIZE && s <= S_CHUNK_SIZE_LF && ++st->p.line_bytes > HTTP_CHUNK_LINE_MAX)
		return fail(st, HTTP_ERR_TOO_LARGE);
	return step(st, c);
}

/* ---- bodies: skipped in bulk ------------------------------------------ */

static enum http_event skip_body(struct http_msg_state *st, size_t len, size_t *n)
{
	if (st->p.state == S_BODY_CLOSE) {
		*n = len;
		return HTTP_EV_NEED_MORE;
	}
	*n = st->p.remaining < len ? (size_t)st->p.remaining : len;
	st->p.remaining -= *n;
	if (st->p.remaining)
		return HTTP_EV_NEED_MORE;
	if (st->p.state == S_CHUNK_DATA) {
		st->p.state = S_CHUNK_DATA_CR;
		return HTTP_EV_NEED_MORE;
	}
	st->p.state = S_FINISHED;
	return HTTP_EV_MESSAGE_DONE;
}

/* Events that need no input: a finished, failed or body-less message. */
static enum http_event pending_event(struct http_msg_state *st)
{
	switch (st->p.state) {
	case S_ERROR:
		return HTTP_EV_ERROR;
	case S_FINISHED:
		return fail(st, HTTP_ERR_MISUSE);
	case S_DONE_PENDING:
		st->p.state = S_FINISHED;
		return HTTP_EV_MESSAGE_DONE;
	default:
		return HTTP_EV_NEED_MORE;
	}
}

/* ---- fast paths: runs of head bytes ------------------------------------ */

/* The bulk of a head — header names and values, the request-target, the
 * reason phrase — is taken in runs instead of one step() per byte. Each fast
 * path does exactly what step() would do with the bytes it consumes and
 * stops before any byte that needs one of step()'s other decisions (the line
 * end that completes the start line or the head, a byte it does not accept,
 * a state it does not handle); step() takes that byte. So the per-byte
 * machine stays the definition, and every split point still gives the same
 * events at the same offsets. */

static uint64_t load_le64(const unsigned char *p)
{
	uint64_t x;
	memcpy(&x, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	x = __builtin_bswap64(x); /* the first byte in memory must be the lowest */
#endif
	return x;
}

/* Word-at-a-time search ("Bit Twiddling Hacks"): flags (high bit) the bytes
 * of x below `below` (at most 0x80) and those equal to DEL. Only the lowest
 * flag is exact — a borrow moves upwards, out of a byte that is flagged
 * itself — and the lowest is all the caller uses. */
static uint64_t word_stops(uint64_t x, unsigned below)
{
	uint64_t y = x ^ ONES * 0x7f;
	return ((x - ONES * below) & ~x & HIGHS) | ((y - ONES) & ~y & HIGHS);
}

/* Length of the run of `cls` bytes (C_FIELD or C_TARGET) at p. Both classes
 * are "no control, no DEL" (C_TARGET no SP either), so 16 (SSE2) or 8 bytes
 * without one are taken at once. A flagged byte is looked up: HTAB, the one
 * control in C_FIELD, and obs-text, which SSE2's signed compare flags too,
 * are stepped over. */
static inline size_t class_run(const unsigned char *p, size_t n, unsigned cls)
{
	unsigned below = cls == C_FIELD ? 0x20 : 0x21;
	size_t i = 0;

#ifdef __SSE2__
	const __m128i lim = _mm_set1_epi8((char)below), del = _mm_set1_epi8(0x7f);
	while (n - i >= 16) {
		__m128i x = _mm_loadu_si128((const void *)(p + i));
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmplt_epi8(x, lim), _mm_cmpeq_epi8(x, del)));
		if (!m) {
			i += 16;
			continue;
		}
		i += (unsigned)__builtin_ctz(m);
		if (!(byte_class[p[i]] & cls))
			return i;
		i++;
	}
#endif
	while (n - i >= 8) {
		uint64_t m = word_stops(load_le64(p + i), below);
		if (!m) {
			i += 8;
			continue;
		}
		i += (unsigned)__builtin_ctzll(m) / 8;
		if (!(byte_class[p[i]] & cls))
			return i;
		i++;
	}
	while (i < n && (byte_class[p[i]] & cls))
		i++;
	return i;
}

/* Length of the run of tchars at p. Header names are letters, digits and '-'
 * nearly always: with SSE2, 16 of those are taken at once (the compares are
 * signed, so obs-text is never a letter or digit), and any other byte is
 * looked up (a tchar such as '_' is stepped over). */
static inline size_t tchar_run(const unsigned char *p, size_t n)
{
	size_t i = 0;

#ifdef __SSE2__
	const __m128i a = _mm_set1_epi8('a' - 1), z = _mm_set1_epi8('z' + 1), d0 = _mm_set1_epi8('0' - 1),
		      d9 = _mm_set1_epi8('9' + 1), dash = _mm_set1_epi8('-'), low = _mm_set1_epi8(0x20);
	while (n - i >= 16) {
		__m128i x = _mm_loadu_si128((const void *)(p + i)), y = _mm_or_si128(x, low);
		__m128i letter = _mm_and_si128(_mm_cmpgt_epi8(y, a), _mm_cmplt_epi8(y, z));
		__m128i digit = _mm_and_si128(_mm_cmpgt_epi8(x, d0), _mm_cmplt_epi8(x, d9));
		__m128i ok = _mm_or_si128(_mm_or_si128(letter, digit), _mm_cmpeq_epi8(x, dash));
		unsigned m = ~(unsigned)_mm_movemask_epi8(ok) & 0xffff;
		if (!m) {
			i += 16;
			continue;
		}
		i += (unsigned)__builtin_ctz(m);
		if (!is_tchar(p[i]))
			return i;
		i++;
	}
#endif
	while (i < n && is_tchar(p[i]))
		i++;
	return i;
}

static size_t sp_run(const unsigned char *p, size_t n)
{
	size_t i = 0;
	while (i < n && p[i] == ' ')
		i++;
	return i;
}

/* text_byte() for each of p[0..n), in bulk: the first byte of a repeated
 * list header still goes through text_byte() (which puts the ',' first), what
 * fits is copied at once, and only a value longer than its cap goes byte by
 * byte again, to be cut by the same rules. */
static void text_run(struct http_msg_state *st, const unsigned char *p, size_t n)
{
	struct slot s;
	size_t i = 0;

	if (!n || !slot_for(st, st->p.hdr, &s))
		return;
	if (s.list && !st->p.aux)
		text_byte(st, p[i++]);
	if (!(st->truncated & s.bit)) {
		size_t room = (size_t)(s.cap - *s.len), k = n - i < room ? n - i : room;
		memcpy(s.buf + *s.len, p + i, k);
		*s.len = (uint16_t)(*s.len + k);
		s.buf[*s.len] = 0;
		i += k;
	}
	for (; i < n && !(st->truncated & s.bit); i++)
		text_byte(st, p[i]);
}

static size_t method_run(struct http_msg_state *st, const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n && is_tchar(p[i]) && st->method_len < HTTP_METHOD_CAP)
		st->method[st->method_len++] = (char)p[i++];
	st->method[st->method_len] = 0;
	if (i < n && p[i] == ' ' && st->method_len > 0) {
		st->p.state = S_REQ_SP1;
		i++;
	}
	return i;
}

static size_t target_run(struct http_msg_state *st, const unsigned char *p, size_t n)
{
	size_t i = class_run(p, n, C_TARGET);

	text_run(st, p, i);
	if (i < n && p[i] == ' ') {
		st->p.state = S_REQ_SP2;
		i++;
	}
	return i;
}

/* p[0..8) is "HTTP/1." and a digit (8 bytes must be there). */
static bool is_http1(const unsigned char *p)
{
	uint64_t w = load_le64(p), want;

	memcpy(&want, "HTTP/1.\0", 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	want = __builtin_bswap64(want);
#endif
	return (w & 0x00ffffffffffffffull) == want && is_digit(p[7]);
}

/* "HTTP/1.<digit>" whole; anything else (or a version cut short) goes
 * through version_byte(), which also tells HTTP/2 from garbage. */
static size_t version_run(struct http_msg_state *st, const unsigned char *p, size_t n, uint8_t next)
{
	if (st->p.pos || n < 8 || !is_http1(p))
		return 0;
	st->version_minor = (uint8_t)(p[7] - '0');
	st->p.pos = 7;
	st->p.state = next;
	return 8;
}

static size_t status_digit(struct http_msg_state *st, unsigned char c)
{
	if (!is_digit(c) || (st->status == 0 && c == '0'))
		return 0;
	st->status = (uint16_t)(st->status * 10 + (c - '0'));
	if (st->status >= 100)
		st->p.state = S_RESP_AFTER_STATUS;
	return 1;
}

/* A CR ending the start line (its LF is an event: step() takes it). */
static size_t line_cr(struct http_msg_state *st, unsigned char c)
{
	if (c != '\r')
		return 0;
	st->p.state = S_LINE_LF;
	return 1;
}

/* What step() keeps of n more bytes of a name: the first 24, lowercased, and
 * a length that stops one past that. */
static void name_store(struct http_msg_state *st, const unsigned char *p, size_t n)
{
	size_t len = st->p.name_len;

	for (size_t j = 0; j < n && len < sizeof st->p.name; j++)
		st->p.name[len++] = (char)lower(p[j]);
	len = st->p.name_len + n;
	st->p.name_len = (uint8_t)(len <= sizeof st->p.name ? len : sizeof st->p.name + 1);
}

/* A header name and its ':'. A name that starts and ends in this piece is
 * classified where it is, uncopied; only one the piece cuts (or that began
 * in the previous piece) is stored, as step() stores it. */
static size_t name_run(struct http_msg_state *st, const unsigned char *p, size_t n)
{
	size_t i = tchar_run(p, n);

	if (i < n && p[i] == ':' && st->p.name_len == 0) {
		header_begin(st, p, i);
		return i + 1;
	}
	name_store(st, p, i);
	if (i < n && p[i] == ':') {
		header_begin(st, (const unsigned char *)st->p.name, st->p.name_len);
		i++;
	}
	return i;
}

static size_t ows_run(struct http_msg_state *st, const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n && is_ows(p[i]))
		i++;
	if (i < n)
		st->p.state = S_HDR_VALUE;
	return i;
}

/* tok_byte() for each field byte, a token's own bytes (tchars: never a
 * separator, ';' or OWS) in one loop. */
static size_t tok_run(struct http_msg_state *st, const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n && is_field_char(p[i])) {
		if (st->p.aux || !is_tchar(p[i])) {
			tok_byte(st, p[i++]);
			continue;
		}
		/* what tok_byte() keeps of them: the first 16, and a length
		 * that stops one past that */
		size_t k = tchar_run(p + i, n - i), len = st->p.tok_len;
		if (len < sizeof st->p.tok)
			memcpy(st->p.tok + len, p + i, k < sizeof st->p.tok - len ? k : sizeof st->p.tok - len);
		len += k;
		st->p.tok_len = (uint8_t)(len <= sizeof st->p.tok ? len : sizeof st->p.tok + 1);
		i += k;
	}
	return i;
}

/* A header value and its line end. Values nobody reads are only checked,
 * kept ones copied in one go, list tokens (Connection, ...) lowercased in a
 * loop; a Content-Length (a few digits) still goes byte by byte. */
static enum http_event value_run(struct http_msg_state *st, const unsigned char *p, size_t n, size_t *used)
{
	size_t i = 0;

	switch (st->p.hdr) {
	case HDR_CONTENT_LENGTH:
		for (; i < n && is_field_char(p[i]); i++) {
			if (st->p.aux == CL_DIGITS && is_digit(p[i]) && st->p.cl_acc <= HTTP_CL_MAX / 10) {
				st->p.cl_acc = st->p.cl_acc * 10 + (p[i] - '0'); /* cl_byte()'s common case */
				continue;
			}
			if (!cl_byte(st, p[i])) {
				*used = i + 1;
				return fail(st, HTTP_ERR_FRAMING);
			}
		}
		break;
	case HDR_TE:
	case HDR_CONNECTION:
	case HDR_UPGRADE:
		i = tok_run(st, p, n);
		break;
	default:
		i = class_run(p, n, C_FIELD);
		if (st->p.hdr != HDR_OTHER)
			text_run(st, p, i);
	}
	*used = i;
	if (i < n && p[i] == '\r') {
		st->p.state = S_HDR_LF;
		*used = ++i;
	}
	if (i < n && p[i] == '\n') {
		*used = i + 1;
		return header_end(st);
	}
	return HTTP_EV_NEED_MORE;
}

/* Whole header lines whose name we do not read (most of a response head:
 * Server, Date, ETag...), starting at a line start: for those step() does
 * nothing but check every byte, so this checks the same bytes — a name of
 * tchars, ':', field bytes, CR LF or LF — and skips the line without
 * touching the state. It stops at the first line that is anything else (a
 * known name, the blank line, a line the piece cuts, a byte to reject) and
 * leaves that to the general path, at the same line start. */
static size_t other_lines(const struct http_msg_state *st, const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n && is_tchar(p[i])) {
		size_t j = i + tchar_run(p + i, n - i);
		if (j >= n || p[j] != ':' || classify(st, p + i, j - i) != HDR_OTHER)
			break;
		j++;
		j += class_run(p + j, n - j, C_FIELD);
		if (j < n && p[j] == '\r')
			j++;
		if (j >= n || p[j] != '\n')
			break;
		i = j + 1;
	}
	return i;
}

/* Header lines, resumed in whichever of their states the parser is, one
 * after the other without a dispatch per line, up to the blank line's CR
 * (its LF, which ends the head, is step()'s) or a byte for step(). */
static size_t header_lines(struct http_msg_state *st, const unsigned char *p, size_t n, enum http_event *ev)
{
	size_t i = 0, k;

	for (;;) {
		switch (st->p.state) {
		case S_HDR_START:
			i += other_lines(st, p + i, n - i);
			if (i == n)
				return i;
			if (p[i] == '\r') { /* the blank line: the head is done at its LF */
				if (i + 1 < n && p[i + 1] == '\n') {
					*ev = head_done(st);
					return i + 2;
				}
				st->p.state = S_HEAD_LF;
				return i + 1;
			}
			if (!is_tchar(p[i]))
				return i;
			st->p.name_len = 0;
			st->p.state = S_HDR_NAME;
			/* fall through */
		case S_HDR_NAME:
			i += name_run(st, p + i, n - i);
			if (st->p.state != S_HDR_OWS)
				return i;
			/* fall through */
		case S_HDR_OWS:
			i += ows_run(st, p + i, n - i);
			if (st->p.state != S_HDR_VALUE)
				return i;
			/* fall through */
		case S_HDR_VALUE:
			*ev = value_run(st, p + i, n - i, &k);
			i += k;
			if (*ev != HTTP_EV_NEED_MORE || st->p.state != S_HDR_START)
				return i;
			break; /* the next line */
		default: /* S_HDR_LF: the piece ended between CR and LF */
			return i;
		}
	}
}

/* A whole status line in the usual form — "HTTP/1.<d> <ddd> reason" and its
 * line end — at the start of a response, taken at once: checked first, then
 * the state set as step() would leave it past the LF. Anything else (more
 * than one SP, a line the piece cuts, a byte to reject) is 0: the per-state
 * paths take it from the first byte, as before. */
static size_t status_line(struct http_msg_state *st, const unsigned char *p, size_t n)
{
	size_t i = 12;

	if (st->p.pos || n < 13 || !is_http1(p) || p[8] != ' ' ||
	    p[9] < '1' || p[9] > '9' || !is_digit(p[10]) || !is_digit(p[11]))
		return 0;
	if (p[i] == ' ') {
		i++;
		i += class_run(p + i, n - i, C_FIELD);
	}
	if (i < n && p[i] == '\r')
		i++;
	if (i >= n || p[i] != '\n')
		return 0;
	st->version_minor = (uint8_t)(p[7] - '0');
	st->status = (uint16_t)((p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0'));
	st->p.pos = 7;
	st->p.state = S_HDR_START;
	return i + 1;
}

/* The same for a request line: "METHOD SP target SP HTTP/1.<d>" and its line
 * end, single spaces, as nearly every client sends it. Checked whole before
 * anything is stored, so a line it does not take is the general path's from
 * its first byte. */
static size_t request_line(struct http_msg_state *st, const unsigned char *p, size_t n)
{
	size_t m = tchar_run(p, n <= HTTP_METHOD_CAP ? n : HTTP_METHOD_CAP + 1), t, v, e;

	if (m == 0 || m > HTTP_METHOD_CAP || m + 1 >= n || p[m] != ' ')
		return 0;
	t = m + 1;
	v = t + class_run(p + t, n - t, C_TARGET);
	if (v == t || v >= n || p[v] != ' ')
		return 0;
	v++;
	if (n - v < 9 || !is_http1(p + v))
		return 0;
	e = v + 8;
	if (p[e] == '\r')
		e++;
	if (e >= n || p[e] != '\n')
		return 0;
	memcpy(st->method, p, m);
	st->method[m] = 0;
	st->method_len = (uint8_t)m;
	st->p.hdr = HDR_TARGET;
	text_run(st, p + t, v - 1 - t);
	st->version_minor = (uint8_t)(p[v + 7] - '0');
	st->p.pos = 7;
	st->p.state = S_HDR_START;
	return e + 1;
}

/* Runs the fast paths over p[0..n) while they make progress; *used is what
 * they consumed. Returns NEED_MORE, or ERROR for a bad framing value. */
static enum http_event scan_head(struct http_msg_state *st, const unsigned char *p, size_t n, size_t *used)
{
	enum http_event ev = HTTP_EV_NEED_MORE;
	size_t i = 0, k;

	while (i < n && ev == HTTP_EV_NEED_MORE) {
		size_t before = i;
		uint8_t s = st->p.state;
		switch (s) {
		case S_HDR_START:
		case S_HDR_NAME:
		case S_HDR_OWS:
		case S_HDR_VALUE:
			i += header_lines(st, p + i, n - i, &ev);
			break;
		case S_HDR_LF:
			if (p[i] == '\n') {
				ev = header_end(st);
				i++;
			}
			break;
		case S_REQ_START:
			if (p[i] == '\r' || p[i] == '\n')
				break;
			k = request_line(st, p + i, n - i);
			if (k) {
				i += k;
				if (!st->p.quiet)
					ev = HTTP_EV_START_LINE_DONE;
				break;
			}
			st->p.state = S_METHOD;
			break;
		case S_METHOD:
			i += method_run(st, p + i, n - i);
			break;
		case S_REQ_SP1:
			i += sp_run(p + i, n - i);
			if (i < n) {
				st->p.hdr = HDR_TARGET;
				st->p.state = S_TARGET;
			}
			break;
		case S_TARGET:
			i += target_run(st, p + i, n - i);
			break;
		case S_REQ_SP2:
			i += sp_run(p + i, n - i);
			if (i < n)
				st->p.state = S_REQ_VERSION;
			break;
		case S_REQ_VERSION:
			i += version_run(st, p + i, n - i, S_REQ_EOL);
			break;
		case S_REQ_EOL:
			i += line_cr(st, p[i]);
			break;
		case S_RESP_VERSION:
			k = status_line(st, p + i, n - i);
			if (k) {
				i += k;
				if (!st->p.quiet)
					ev = HTTP_EV_START_LINE_DONE;
				break;
			}
			i += version_run(st, p + i, n - i, S_RESP_SP1);
			break;
		case S_RESP_SP1:
		case S_RESP_AFTER_STATUS:
			if (p[i] == ' ') {
				st->p.state = s == S_RESP_SP1 ? S_RESP_SP : S_RESP_REASON;
				i++;
			}
			break;
		case S_RESP_SP:
			i += sp_run(p + i, n - i);
			if (i < n)
				st->p.state = S_RESP_STATUS;
			break;
		case S_RESP_STATUS:
			i += status_digit(st, p[i]);
			break;
		case S_RESP_REASON:
			i += class_run(p + i, n - i, C_FIELD);
			if (i < n)
				i += line_cr(st, p[i]);
			break;
		default: /* line ends that are events: step() */
			break;
		}
		if (i == before && st->p.state == s)
			break; /* step() takes this byte */
	}
	*used = i;
	return ev;
}

enum http_event http_feed(struct http_msg_state *st, const char *buf, size_t len,
			  size_t *consumed)
{
	const unsigned char *p = (const unsigned char *)buf;
	enum http_event ev = pending_event(st);
	size_t i = 0, n;

	while (ev == HTTP_EV_NEED_MORE && i < len) {
		uint8_t s = st->p.state;
		if (s >= S_BODY_LEN && s <= S_BODY_CLOSE) {
			ev = skip_body(st, len - i, &n);
			i += n;
			continue;
		}
		if (s <= S_HEAD_LF) {
			/* Never past HTTP_HEAD_MAX: the byte that would cross it is
			 * step_counted()'s, which fails there as it always did. */
			size_t room = HTTP_HEAD_MAX - st->p.head_bytes;
			ev = scan_head(st, p + i, len - i < room ? len - i : room, &n);
			st->p.head_bytes += (uint32_t)n;
			i += n;
			if (ev != HTTP_EV_NEED_MORE || i == len)
				break;
		}
		ev = step_counted(st, p[i++]);
	}
	*consumed = i;
	return ev;
}

/* Body bytes that went out without passing through the caller (sendfile):
 * skippable only where the parser does not need to see them. */
enum http_event http_feed_opaque(struct http_msg_state *st, size_t len, size_t *consumed)
{
	enum http_event ev = pending_event(st);
	*consumed = 0;
	if (ev != HTTP_EV_NEED_MORE || !(st->p.state >= S_BODY_LEN && st->p.state <= S_BODY_CLOSE))
		return ev;
	return skip_body(st, len, consumed);
}

enum http_event http_feed_eof(struct http_msg_state *st)
{
	switch (st->p.state) {
	case S_BODY_CLOSE:
	case S_DONE_PENDING:
		st->p.state = S_FINISHED;
		return HTTP_EV_MESSAGE_DONE;
	case S_REQ_START: /* only empty lines so far */
	case S_FINISHED:
		return HTTP_EV_NEED_MORE;
	case S_RESP_VERSION:
		return st->p.pos == 0 ? HTTP_EV_NEED_MORE : fail(st, HTTP_ERR_TRUNCATED);
	case S_ERROR:
		return HTTP_EV_ERROR;
	default:
		return fail(st, HTTP_ERR_TRUNCATED);
	}
}

bool http_msg_keep_alive(const struct http_msg_state *st)
{
	if (st->flags & (HTTP_F_TUNNEL | HTTP_F_UNTIL_CLOSE | HTTP_F_CONN_CLOSE))
		return false;
	return st->version_minor >= 1 || (st->flags & HTTP_F_CONN_KEEPALIVE);
}

/* ---- URL redaction ---------------------------------------------------- */


/* Query keys whose values the OTel semantic conventions redact. */
static bool secret_key(const char *k, size_t n)
{
	static const char *const keys[] = {"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"};

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strlen(keys[i]) == n && memcmp(keys[i], k, n) == 0)
			return true;
	return false;
}

static void put_param(struct out_buf *o, const char *p, size_t n)
{
	const char *eq = n ? memchr(p, '=', n) : NULL;

	if (eq && secret_key(p, (size_t)(eq - p))) {
		out_put(o, p, (size_t)(eq - p) + 1);
		out_put(o, "REDACTED", 8);
	} else {
		out_put(o, p, n);
	}
}

static void put_query(struct out_buf *o, const char *q, size_t n)
{
	for (;;) {
		const char *amp = n ? memchr(q, '&', n) : NULL;
		size_t k = amp ? (size_t)(amp - q) : n;
		put_param(o, q, k);
		if (!amp)
			return;
		out_put(o, "&", 1);
		q += k + 1;
		n -= k + 1;
	}
}

size_t http_query_redact(char *out, size_t cap, const char *query, size_t len)
{
	struct out_buf o = {out, cap, 0};
	put_query(&o, query ? query : "", len);
	return out_finish(&o);
}

/* Length of "scheme://" at the start of u, or 0 (origin-form, authority-form). */
static size_t scheme_len(const char *u, size_t n)
{
	size_t i = 0;

	if (n == 0 || !is_alpha((unsigned char)u[0]))
		return 0;
	while (i < n && (is_alpha((unsigned char)u[i]) || is_digit((unsigned char)u[i]) ||
			 u[i] == '+' || u[i] == '-' || u[i] == '.'))
		i++;
	return n - i >= 3 && memcmp(u + i, "://", 3) == 0 ? i + 3 : 0;
}

/* The first i at or after `i` whose byte is one of `stops` (a few chars; a
 * NUL in u is never one), or n. */
static size_t span_until(const char *u, size_t n, size_t i, const char *stops)
{
	for (; i < n; i++)
		for (const char *s = stops; *s; s++)
			if (u[i] == *s)
				return i;
	return i;
}

/* Copy the authority starting at i, userinfo replaced; returns its end. */
static size_t put_authority(struct out_buf *o, const char *u, size_t n, size_t i)
{
	size_t end = span_until(u, n, i, "/?#"), at = end;

	while (at > i && u[at - 1] != '@')
		at--;
	if (at > i) { /* userinfo is everything before the last '@' */
		out_put(o, "REDACTED:REDACTED@", 18);
		i = at;
	}
	out_put(o, u + i, end - i);
	return end;
}

size_t http_url_redact_query(char *out, size_t cap, const char *url, size_t len)
{
	struct out_buf o = {out, cap, 0};
	size_t i, q;

	if (!url)
		url = ""; /* (NULL, 0): no arithmetic on a null pointer */
	i = scheme_len(url, len);

	out_put(&o, url, i);
	if (i)
		i = put_authority(&o, url, len, i);
	q = span_until(url, len, i, "?#");
	out_put(&o, url + i, q - i);
	if (q < len && url[q] == '?') {
		size_t h = span_until(url, len, q + 1, "#");
		out_put(&o, "?", 1);
		put_query(&o, url + q + 1, h - q - 1);
		q = h;
	}
	out_put(&o, url + q, len - q);
	return out_finish(&o);
}

/* ---- where a header's value is ------------------------------------------- */

static int lower_ascii(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

long http_header_value_at(const char *buf, size_t len, const char *name, size_t nlen, const char *val, size_t vlen)
{
	if (!buf || !val || !vlen || vlen > len)
		return -1;
	const char *b = buf, *p = buf;
	while ((p = memmem(p, len - (size_t)(p - b), val, vlen)) != NULL) {
		const char *q = p;
		while (q > b && (q[-1] == ' ' || q[-1] == '\t'))
			q--;
		/* "\n" name ":" right before the whitespace, the name in any case */
		size_t need = nlen + 2;
		if ((size_t)(q - b) >= need && q[-1] == ':' && q[-(long)need] == '\n') {
			size_t k = 0;
			const char *n0 = q - 1 - nlen;
			while (k < nlen && lower_ascii((unsigned char)n0[k]) == lower_ascii((unsigned char)name[k]))
				k++;
			if (k == nlen)
				return (long)(p - b);
		}
		p++;
	}
	return -1;
}
