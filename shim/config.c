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
}
