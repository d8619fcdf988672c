/* argv_redact.c — see argv_redact.h. */
#include "argv_redact.h"

#include <string.h>
#include <strings.h>

#include "proto/http.h"
#include "proto/outbuf.h"

enum ts_args_mode ts_parse_args_mode(const char *s)
{
	if (s && !strcasecmp(s, "off"))
		return TS_ARGS_OFF;
	if (s && !strcasecmp(s, "raw"))
		return TS_ARGS_RAW;
	return TS_ARGS_REDACTED;
}


#define REDACTED "REDACTED"
#define PUT_LIT(o, lit) out_put((o), (lit), sizeof(lit) - 1)

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_alnum(char c) { return is_alpha(c) || (c >= '0' && c <= '9'); }
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_quote(char c) { return c == '\'' || c == '"' || c == '`'; }
static bool is_key_char(char c) { return is_alnum(c) || c == '_' || c == '-' || c == '.'; }
static bool is_scheme_char(char c) { return is_alnum(c) || c == '+' || c == '-' || c == '.'; }

/* Case-insensitive: does k[0..n) contain w (lower case)? */
static bool contains(const char *k, size_t n, const char *w)
{
	size_t m = strlen(w);
	for (size_t i = 0; i + m <= n; i++)
		if (!strncasecmp(k + i, w, m))
			return true;
	return false;
}

static bool ends_with(const char *k, size_t n, const char *w)
{
	size_t m = strlen(w);
	return n >= m && !strncasecmp(k + n - m, w, m);
}

static bool equals(const char *k, size_t n, const char *w) { return strlen(w) == n && !strncasecmp(k, w, n); }

/* A key (leading dashes and all) that names a credential. */
static bool secret_key(const char *k, size_t n)
{
	static const char *const parts[] = {"password", "passwd", "secret", "token", "apikey", "api_key",
					    "api-key", "access_key", "accesskey", "private_key", "credential"};
	while (n && *k == '-') {
		k++;
		n--;
	}
	for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
		if (contains(k, n, parts[i]))
			return true;
	return ends_with(k, n, "pass") || ends_with(k, n, "pwd") || equals(k, n, "pw") || equals(k, n, "auth") ||
	       equals(k, n, "oauth2-bearer");
}

/* Header lines whose value is a credential whatever their name says. */
static bool secret_header(const char *k, size_t n)
{
	return equals(k, n, "authorization") || equals(k, n, "proxy-authorization") || equals(k, n, "cookie") ||
	       equals(k, n, "set-cookie") || secret_key(k, n);
}

/* Flags whose next argument is the credential (or user:password). */
static int secret_flag(const char *a, size_t n, bool password_p)
{
	static const char *const always[] = {"--password", "--passwd", "--pass",  "--token",
					     "--secret",   "--api-key", "--oauth2-bearer", "--access-token",
					     "--auth-token"};
	for (size_t i = 0; i < sizeof always / sizeof *always; i++)
		if (equals(a, n, always[i]))
			return 1;
	if (equals(a, n, "-u") || equals(a, n, "--user") || equals(a, n, "-U") || equals(a, n, "--proxy-user"))
		return 2; /* redacted when it is user:password */
	if (password_p && n == 2 && !memcmp(a, "-p", 2))
		return 1;
	return 0;
}

/* Length of the URL starting at u[0] (a scheme, "://"), or 0. */
static size_t url_at(const char *u, size_t n)
{
	size_t i = 0;
	if (!n || !is_alpha(u[0]))
		return 0;
	while (i < n && is_scheme_char(u[i]))
		i++;
	if (n - i < 3 || memcmp(u + i, "://", 3))
		return 0;
	for (i += 3; i < n; i++)
		if (is_space(u[i]) || is_quote(u[i]) || u[i] == '<' || u[i] == '>' || u[i] == '|' || u[i] == ';' ||
		    u[i] == '(' || u[i] == ')')
			break;
	return i;
}

static void redact_text(const char *a, size_t n, struct out_buf *o, bool urls);

/* A URL: url.full's redaction (userinfo, signature parameters), then the
 * key=value rule over the result (?token=…). One too long to redact here
 * (an argument is at most TS_STR_MAX, so never in practice) is replaced whole. */
static void put_url(struct out_buf *o, const char *u, size_t n)
{
	char tmp[4096];
	size_t k = http_url_redact_query(tmp, sizeof tmp, u, n);
	if (k >= sizeof tmp) {
		PUT_LIT(o, REDACTED);
		return;
	}
	redact_text(tmp, k, o, false);
}

/* From i, the end of a value: the end of the argument or the first byte
 * that is in stops (or white space, if space_ends). */
static size_t value_end(const char *a, size_t n, size_t i, bool space_ends, const char *stops)
{
	for (; i < n; i++)
		if ((space_ends && is_space(a[i])) || is_quote(a[i]) || (stops && a[i] && strchr(stops, a[i])))
			break;
	return i;
}

static void redact_text(const char *a, size_t n, struct out_buf *o, bool urls)
{
	size_t i = 0;
	while (i < n) {
		bool word_start = i == 0 || !is_key_char(a[i - 1]);
		size_t k;
		if (urls && word_start && is_alpha(a[i]) && (k = url_at(a + i, n - i)) != 0) {
			put_url(o, a + i, k);
			i += k;
			continue;
		}
		if (word_start && (is_key_char(a[i]))) {
			size_t j = i;
			while (j < n && is_key_char(a[j]))
				j++;
			const char *key = a + i;
			size_t klen = j - i;
			if (j < n && a[j] == '=' && secret_key(key, klen)) {
				out_put(o, a + i, klen + 1);
				PUT_LIT(o, REDACTED);
				i = value_end(a, n, j + 1, true, "&;,");
				continue;
			}
			if (j < n && a[j] == ':' && (j + 1 >= n || a[j + 1] != '/') && secret_header(key, klen)) {
				out_put(o, a + i, klen + 1);
				size_t v = j + 1;
				while (v < n && is_space(a[v]))
					out_put(o, a + v++, 1);
				PUT_LIT(o, REDACTED);
				i = value_end(a, n, v, false, NULL); /* a header value runs to the end */
				continue;
			}
			if ((equals(key, klen, "bearer") || equals(key, klen, "basic")) && j < n && is_space(a[j])) {
				size_t v = j;
				while (v < n && is_space(a[v]))
					v++;
				if (v < n && !is_quote(a[v])) {
					out_put(o, a + i, v - i);
					PUT_LIT(o, REDACTED);
					i = value_end(a, n, v, true, NULL);
					continue;
				}
			}
			out_put(o, a + i, klen); /* an ordinary word: copied as a whole */
			i = j;
			continue;
		}
		out_put(o, a + i, 1);
		i++;
	}
}

void ts_argv_redact_init(struct ts_argv_redact *st, const char *argv0, size_t len)
{
	memset(st, 0, sizeof *st);
	const char *base = argv0;
	for (size_t i = 0; argv0 && i < len; i++)
		if (argv0[i] == '/')
			base = argv0 + i + 1;
	size_t blen = argv0 ? len - (size_t)(base - argv0) : 0;
	st->password_p = (blen >= 5 && !strncmp(base, "mysql", 5)) || (blen >= 7 && !strncmp(base, "mariadb", 7)) ||
			 equals(base, blen, "sshpass");
}

size_t ts_argv_redact_next(struct ts_argv_redact *st, const char *arg, size_t len, char *out, size_t cap)
{
	struct out_buf o = {out, cap, 0};
	int was = st->next_secret;
	st->next_secret = 0;
	if (was == 1 || (was == 2 && memchr(arg, ':', len))) {
		if (was == 2)
			PUT_LIT(&o, REDACTED ":" REDACTED);
		else
			PUT_LIT(&o, REDACTED);
		return out_finish(&o);
	}
	int flag = secret_flag(arg, len, st->password_p);
	if (flag) {
		st->next_secret = (uint8_t)flag;
		out_put(&o, arg, len);
		return out_finish(&o);
	}
	const char *eq = memchr(arg, '=', len);
	if (eq && secret_flag(arg, (size_t)(eq - arg), false) == 2) { /* --user=user:pw */
		out_put(&o, arg, (size_t)(eq - arg) + 1);
		if (memchr(eq, ':', len - (size_t)(eq - arg)))
			PUT_LIT(&o, REDACTED ":" REDACTED);
		else
			out_put(&o, eq + 1, len - (size_t)(eq - arg) - 1);
		return out_finish(&o);
	}
	if (st->password_p && len > 2 && !memcmp(arg, "-p", 2)) { /* mysql -pSECRET */
		PUT_LIT(&o, "-p" REDACTED);
		return out_finish(&o);
	}
	redact_text(arg, len, &o, true);
	return out_finish(&o);
}
