/* http.c — the incremental HTTP/1.x scanner declared in http.h.
 *
 * One byte-level state machine for requests and responses. Head bytes go
 * through step() one at a time (heads are small and this is what makes every
 * split point equivalent); body bytes are skipped in bulk. The only memory is
 * struct http_msg_state and the optional struct http_fields: values are
 * copied into fixed slots as they stream past, never buffered whole. */
#include "proto/http.h"

#include <string.h>

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

/* RFC 9110 tchar */
static bool is_tchar(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

/* request-target bytes: visible ASCII or obs-text (picohttpparser accepts
 * the latter too; real clients send raw UTF-8 paths) */
static bool is_target_char(unsigned char c) { return c > 0x20 && c != 0x7f; }

/* field-value / reason-phrase bytes: HTAB, SP, VCHAR, obs-text; so NUL, CR
 * alone and other controls are rejected */
static bool is_field_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

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

unsigned http_response_flags_for(const struct http_msg_state *req)
{
	if (strcmp(req->method, "HEAD") == 0)
		return HTTP_RESP_TO_HEAD;
	if (strcmp(req->method, "CONNECT") == 0)
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

static bool tok_is(const struct http_msg_state *st, const char *s)
{
	size_t n = strlen(s);
	return st->p.tok_len == n && memcmp(st->p.tok, s, n) == 0;
}

static void tok_apply(struct http_msg_state *st)
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

static const struct {
	const char *name;
	uint8_t id;
} known_headers[] = {
	{"host", HDR_HOST},
	{"user-agent", HDR_USER_AGENT},
	{"content-length", HDR_CONTENT_LENGTH},
	{"transfer-encoding", HDR_TE},
	{"connection", HDR_CONNECTION},
	{"upgrade", HDR_UPGRADE},
	{"traceparent", HDR_TRACEPARENT},
	{"tracestate", HDR_TRACESTATE},
	{"baggage", HDR_BAGGAGE},
};

static unsigned classify(const struct http_msg_state *st)
{
	size_t n = st->p.name_len;

	if (st->p.in_trailer || n > sizeof st->p.name)
		return HDR_OTHER; /* trailers never change framing or context */
	for (size_t i = 0; i < sizeof known_headers / sizeof known_headers[0]; i++)
		if (strlen(known_headers[i].name) == n && memcmp(known_headers[i].name, st->p.name, n) == 0)
			return known_headers[i].id;
	return HDR_OTHER;
}

/* Record that a header appeared; returns the id its value is routed to. */
static unsigned claim(struct http_msg_state *st, unsigned hdr)
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

static enum http_event header_begin(struct http_msg_state *st)
{
	st->p.hdr = (uint8_t)claim(st, classify(st));
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

static enum http_event header_end(struct http_msg_state *st)
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
	return HTTP_EV_START_LINE_DONE;
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
			return header_begin(st);
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

enum http_event http_feed(struct http_msg_state *st, const char *buf, size_t len,
			  size_t *consumed)
{
	enum http_event ev = pending_event(st);
	size_t i = 0, n;

	while (ev == HTTP_EV_NEED_MORE && i < len) {
		if (st->p.state >= S_BODY_LEN && st->p.state <= S_BODY_CLOSE) {
			ev = skip_body(st, len - i, &n);
			i += n;
		} else if (st->p.state == S_HDR_VALUE && st->p.hdr == HDR_OTHER) {
			/* A value nobody reads (most of a response head): one tight
			 * loop with the same checks; the line end and any bad byte go
			 * through step_counted() as usual. */
			size_t j = i;
			while (j < len && buf[j] != '\r' && buf[j] != '\n' && is_field_char((unsigned char)buf[j]))
				j++;
			if (j == i) {
				ev = step_counted(st, (unsigned char)buf[i++]);
				continue;
			}
			if (st->p.head_bytes + (j - i) > HTTP_HEAD_MAX)
				ev = fail(st, HTTP_ERR_TOO_LARGE);
			st->p.head_bytes += (uint32_t)(j - i);
			i = j;
		} else {
			ev = step_counted(st, (unsigned char)buf[i++]);
		}
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

struct out {
	char *p;
	size_t cap, n; /* n: length the full result needs */
};

static void put(struct out *o, const char *s, size_t k)
{
	if (k > 0 && o->cap > 0 && o->n < o->cap - 1) {
		size_t room = o->cap - 1 - o->n;
		memcpy(o->p + o->n, s, k < room ? k : room);
	}
	o->n += k;
}

static size_t finish(struct out *o)
{
	if (o->cap > 0)
		o->p[o->n < o->cap - 1 ? o->n : o->cap - 1] = 0;
	return o->n;
}

/* Query keys whose values the OTel semantic conventions redact. */
static bool secret_key(const char *k, size_t n)
{
	static const char *const keys[] = {"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"};

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strlen(keys[i]) == n && memcmp(keys[i], k, n) == 0)
			return true;
	return false;
}

static void put_param(struct out *o, const char *p, size_t n)
{
	const char *eq = n ? memchr(p, '=', n) : NULL;

	if (eq && secret_key(p, (size_t)(eq - p))) {
		put(o, p, (size_t)(eq - p) + 1);
		put(o, "REDACTED", 8);
	} else {
		put(o, p, n);
	}
}

static void put_query(struct out *o, const char *q, size_t n)
{
	for (;;) {
		const char *amp = n ? memchr(q, '&', n) : NULL;
		size_t k = amp ? (size_t)(amp - q) : n;
		put_param(o, q, k);
		if (!amp)
			return;
		put(o, "&", 1);
		q += k + 1;
		n -= k + 1;
	}
}

size_t http_query_redact(char *out, size_t cap, const char *query, size_t len)
{
	struct out o = {out, cap, 0};
	put_query(&o, query ? query : "", len);
	return finish(&o);
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

static size_t span_until(const char *u, size_t n, size_t i, const char *stops)
{
	while (i < n && (u[i] == 0 || !strchr(stops, u[i])))
		i++;
	return i;
}

/* Copy the authority starting at i, userinfo replaced; returns its end. */
static size_t put_authority(struct out *o, const char *u, size_t n, size_t i)
{
	size_t end = span_until(u, n, i, "/?#"), at = end;

	while (at > i && u[at - 1] != '@')
		at--;
	if (at > i) { /* userinfo is everything before the last '@' */
		put(o, "REDACTED:REDACTED@", 18);
		i = at;
	}
	put(o, u + i, end - i);
	return end;
}

size_t http_url_redact_query(char *out, size_t cap, const char *url, size_t len)
{
	struct out o = {out, cap, 0};
	size_t i, q;

	if (!url)
		url = ""; /* (NULL, 0): no arithmetic on a null pointer */
	i = scheme_len(url, len);

	put(&o, url, i);
	if (i)
		i = put_authority(&o, url, len, i);
	q = span_until(url, len, i, "?#");
	put(&o, url + i, q - i);
	if (q < len && url[q] == '?') {
		size_t h = span_until(url, len, q + 1, "#");
		put(&o, "?", 1);
		put_query(&o, url + q + 1, h - q - 1);
		q = h;
	}
	put(&o, url + q, len - q);
	return finish(&o);
}
