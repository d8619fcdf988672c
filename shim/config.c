/* config.c — parsing of the variables in config.h. */
#include "config.h"
#include "frame.h"
#include "paths.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *env(ts_getenv_fn fn, const char *name)
{
	const char *v = fn ? fn(name) : getenv(name);
	return (v && *v) ? v : NULL;
}

bool ts_parse_bool(const char *s, bool dflt)
{
	if (!s || !*s)
		return dflt;
	if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") || !strcasecmp(s, "on"))
		return true;
	if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") || !strcasecmp(s, "off"))
		return false;
	return dflt;
}

uint32_t ts_parse_ms(const char *s, uint32_t dflt, uint32_t max)
{
	if (!s || !*s)
		return dflt;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || end == s || v > max)
		return dflt;
	return (uint32_t)v;
}

enum ts_log_level ts_parse_log_level(const char *s)
{
	static const char *names[] = {"off", "error", "warn", "info", "debug"};
	if (!s)
		return TS_LOG_OFF;
	for (unsigned i = 0; i < sizeof names / sizeof *names; i++)
		if (!strcasecmp(s, names[i]))
			return (enum ts_log_level)i;
	return ts_parse_bool(s, false) ? TS_LOG_INFO : TS_LOG_OFF;
}

enum ts_stacktraces ts_parse_stacktraces(const char *s)
{
	if (!s || !*s || !strcasecmp(s, "errors"))
		return TS_STACK_ERRORS;
	if (!strcasecmp(s, "all"))
		return TS_STACK_ALL;
	if (!strcasecmp(s, "off") || !ts_parse_bool(s, true))
		return TS_STACK_OFF;
	return TS_STACK_ERRORS;
}

enum ts_sampler ts_parse_sampler(const char *name, const char *arg, double *ratio)
{
	static const struct {
		const char *name;
		enum ts_sampler s;
	} table[] = {
		{"always_on", TS_SAMPLER_ALWAYS_ON},
		{"always_off", TS_SAMPLER_ALWAYS_OFF},
		{"traceidratio", TS_SAMPLER_RATIO},
		{"parentbased_always_on", TS_SAMPLER_PB_ALWAYS_ON},
		{"parentbased_always_off", TS_SAMPLER_PB_ALWAYS_OFF},
		{"parentbased_traceidratio", TS_SAMPLER_PB_RATIO},
	};
	*ratio = 1.0;
	if (arg && *arg) {
		char *end;
		double r = strtod(arg, &end);
		if (!*end && r >= 0.0 && r <= 1.0)
			*ratio = r;
	}
	if (!name || !*name)
		return TS_SAMPLER_PB_ALWAYS_ON;
	for (unsigned i = 0; i < sizeof table / sizeof *table; i++)
		if (!strcasecmp(name, table[i].name))
			return table[i].s;
	return TS_SAMPLER_PB_ALWAYS_ON;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Percent-decode and trim [p, end) into out; false if it does not fit or is empty. */
static bool decode_trim(const char *p, const char *end, char *out, size_t cap)
{
	while (p < end && isspace((unsigned char)*p))
		p++;
	while (end > p && isspace((unsigned char)end[-1]))
		end--;
	size_t n = 0;
	for (; p < end; p++) {
		int c = (unsigned char)*p;
		if (c == '%' && end - p >= 3 && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
			c = hexval(p[1]) * 16 + hexval(p[2]);
			p += 2;
		}
		if (n + 1 >= cap)
			return false;
		out[n++] = (char)c;
	}
	out[n] = 0;
	return n > 0;
}

bool ts_kv_next(const char **cursor, char *key, size_t kcap, char *val, size_t vcap)
{
	const char *p = *cursor;
	while (p && *p) {
		const char *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		const char *next = *end ? end + 1 : end;
		if (eq && decode_trim(p, eq, key, kcap) && decode_trim(eq + 1, end, val, vcap)) {
			*cursor = next;
			return true;
		}
		p = next;
	}
	*cursor = p;
	return false;
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

void ts_config_load(struct ts_config *c, ts_getenv_fn fn)
{
	memset(c, 0, sizeof *c);
	c->disabled = ts_parse_bool(env(fn, "OTEL_SDK_DISABLED"), false);
	c->sampler = ts_parse_sampler(env(fn, "OTEL_TRACES_SAMPLER"), env(fn, "OTEL_TRACES_SAMPLER_ARG"), &c->ratio);
	const char *props = env(fn, "OTEL_PROPAGATORS");
	if (!props) {
		c->propagate_tracecontext = c->propagate_baggage = true;
	} else {
		c->propagate_tracecontext = strstr(props, "tracecontext") != NULL;
		c->propagate_baggage = strstr(props, "baggage") != NULL;
	}
	c->log_level = ts_parse_log_level(env(fn, "TRACESHIM_LOG"));
	c->flush_ms = ts_parse_ms(env(fn, "TRACESHIM_FLUSH_MS"), 100, 1000);
	c->exit_flush_ms = ts_parse_ms(env(fn, "TRACESHIM_EXIT_FLUSH_MS"), 200, 10000);
	const char *tr = env(fn, "TRACESHIM_TRANSPORT");
	c->socket_transport = tr && !strcasecmp(tr, "socket");
	uint32_t kb = ts_parse_ms(env(fn, "TRACESHIM_RING_KB"), 512, TS_RING_MAX >> 10);
	if (kb < (TS_RING_MIN >> 10) || (kb & (kb - 1)))
		kb = 512; /* not a power of two in range: the default */
	c->ring_bytes = kb << 10;
	c->max_trace_seconds = ts_parse_ms(env(fn, "TRACESHIM_MAX_TRACE_SECONDS"), 3600, 366u * 86400u);
	c->stacktraces = ts_parse_stacktraces(env(fn, "TRACESHIM_STACKTRACES"));
	copy(c->service_name, sizeof c->service_name, env(fn, "OTEL_SERVICE_NAME"));
	copy(c->resource_attrs, sizeof c->resource_attrs, env(fn, "OTEL_RESOURCE_ATTRIBUTES"));
	if (ts_default_socket_path(c->socket_path, sizeof c->socket_path, fn) != 0)
		c->socket_path[0] = 0; /* too long for sun_path: tracing stays off-line */
	const char *inc = env(fn, "TRACESHIM_INCLUDE"), *exc = env(fn, "TRACESHIM_EXCLUDE");
	c->rules_unreadable = (inc && strlen(inc) >= sizeof c->include) || (exc && strlen(exc) >= sizeof c->exclude);
	if (!c->rules_unreadable) {
		copy(c->include, sizeof c->include, inc);
		copy(c->exclude, sizeof c->exclude, exc);
	}
}

/* ---- TRACESHIM_INCLUDE / TRACESHIM_EXCLUDE --------------------------------- */

/* One pattern character (or class) at pat[*i] against c; advances *i past
 * it. An unterminated class is a literal '['. */
static bool glob_one(const char *pat, size_t plen, size_t *i, unsigned char c)
{
	size_t p = *i;
	if (pat[p] == '\\' && p + 1 < plen) {
		*i = p + 2;
		return (unsigned char)pat[p + 1] == c;
	}
	if (pat[p] == '?') {
		*i = p + 1;
		return true;
	}
	if (pat[p] != '[') {
		*i = p + 1;
		return (unsigned char)pat[p] == c;
	}
	size_t q = p + 1;
	bool negate = q < plen && (pat[q] == '!' || pat[q] == '^');
	if (negate)
		q++;
	bool hit = false, first = true;
	for (; q < plen && (first || pat[q] != ']'); first = false) {
		unsigned char lo = (unsigned char)pat[q], hi = lo;
		if (q + 2 < plen && pat[q + 1] == '-' && pat[q + 2] != ']') {
			hi = (unsigned char)pat[q + 2];
			q += 3;
		} else {
			q++;
		}
		hit |= c >= lo && c <= hi;
	}
	if (q >= plen) { /* no closing ']': a literal '[' */
		*i = p + 1;
		return c == '[';
	}
	*i = q + 1;
	return hit != negate;
}

/* Classic star backtracking: remember the last '*' and where the string was
 * when it was seen; on a mismatch let that star eat one more character. */
bool ts_glob_match(const char *pat, size_t plen, const char *str)
{
	size_t p = 0, star_p = SIZE_MAX;
	const char *s = str, *star_s = NULL;
	while (*s) {
		if (p < plen && pat[p] == '*') {
			star_p = ++p;
			star_s = s;
			continue;
		}
		size_t next = p;
		if (p < plen && glob_one(pat, plen, &next, (unsigned char)*s)) {
			p = next;
			s++;
			continue;
		}
		if (star_p == SIZE_MAX)
			return false;
		p = star_p;
		s = ++star_s;
	}
	while (p < plen && pat[p] == '*')
		p++;
	return p == plen;
}

bool ts_rules_match(const char *list, const char *name, const char *argv0, const char *path)
{
	for (const char *p = list; p && *p;) {
		const char *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		const char *a = p, *b = end;
		p = *end ? end + 1 : end;
		while (a < b && isspace((unsigned char)*a))
			a++;
		while (b > a && isspace((unsigned char)b[-1]))
			b--;
		size_t n = (size_t)(b - a);
		if (!n || n > TS_RULE_MAX)
			continue;
		if (memchr(a, '/', n)) {
			if (path && *path && ts_glob_match(a, n, path))
				return true;
			continue;
		}
		if ((name && *name && ts_glob_match(a, n, name)) || (argv0 && *argv0 && ts_glob_match(a, n, argv0)))
			return true;
	}
	return false;
}

bool ts_rules_select(const struct ts_config *c, const char *name, const char *argv0, const char *path)
{
	if (c->rules_unreadable)
		return false;
	if (c->include[0] && !ts_rules_match(c->include, name, argv0, path))
		return false;
	return !ts_rules_match(c->exclude, name, argv0, path);
}

/* ---- preload.env ----------------------------------------------------------- */

/* A TRACESHIM_* or OTEL_* variable name. */
static bool ours(const char *s, size_t n)
{
	if (!((n > 10 && !strncmp(s, "TRACESHIM_", 10)) || (n > 5 && !strncmp(s, "OTEL_", 5))))
		return false;
	for (size_t k = 0; k < n; k++)
		if (!isalnum((unsigned char)s[k]) && s[k] != '_')
			return false;
	return true;
}

size_t ts_envfile_prepare(char *buf, size_t len)
{
	size_t out = 0;
	for (size_t i = 0; i < len;) {
		size_t eol = i;
		while (eol < len && buf[eol] != '\n')
			eol++;
		size_t a = i, b = eol;
		i = eol + 1;
		while (a < b && isspace((unsigned char)buf[a]))
			a++;
		while (b > a && isspace((unsigned char)buf[b - 1]))
			b--;
		if (a < b && !strncmp(buf + a, "export ", 7)) /* sh syntax, so the file can be sourced too */
			a += 7;
		size_t eq = a;
		while (eq < b && buf[eq] != '=')
			eq++;
		if (a == b || buf[a] == '#' || eq == b || !ours(buf + a, eq - a))
			continue;
		size_t v = eq + 1;
		if (b - v >= 2 && (buf[v] == '"' || buf[v] == '\'') && buf[b - 1] == buf[v]) {
			/* "NAME="x y"": drop the quotes by moving the name one to the right */
			memmove(buf + a + 1, buf + a, eq + 1 - a);
			a++;
			b--;
		}
		memmove(buf + out, buf + a, b - a);
		out += b - a;
		buf[out++] = 0;
	}
	buf[out] = 0;
	return out;
}

const char *ts_envfile_lookup(const char *buf, size_t len, const char *name)
{
	size_t n = strlen(name);
	const char *found = NULL;
	for (size_t i = 0; i < len; i += strlen(buf + i) + 1)
		if (!strncmp(buf + i, name, n) && buf[i + n] == '=')
			found = buf + i + n + 1; /* the last one wins, as when sourced */
	return found;
}
