/* test_config.c — environment parsing: OTLP headers, endpoint joining,
 * exporter selection, numbers and the whole configuration. */
#include <criterion/criterion.h>
#include <string.h>

#include "config.h"

static struct exp_headers h;

static void parse(const char *s, int want_skipped, size_t want_n)
{
	exp_headers_free(&h);
	int skipped = exp_headers_parse(s, &h);
	cr_assert_eq(skipped, want_skipped, "%s: skipped %d", s, skipped);
	cr_assert_eq(h.n, want_n, "%s: %zu headers", s, h.n);
}

Test(headers, simple_list_trimmed_and_decoded)
{
	parse("api-key=secret, X-Team = a%20b%2Cc ,authorization=Bearer%20t0k%3D", 0, 3);
	cr_assert_str_eq(h.lines[0], "api-key: secret");
	cr_assert_str_eq(h.lines[1], "X-Team: a b,c");
	cr_assert_str_eq(h.lines[2], "authorization: Bearer t0k=");
}

Test(headers, empty_and_unset)
{
	parse(NULL, 0, 0);
	parse("", 0, 0);
	parse(" , ,", 0, 0);
}

Test(headers, value_may_contain_equals_and_bad_percent_stays)
{
	parse("k=a=b,p=100%,q=%zz%4", 0, 3);
	cr_assert_str_eq(h.lines[0], "k: a=b");
	cr_assert_str_eq(h.lines[1], "p: 100%");
	cr_assert_str_eq(h.lines[2], "q: %zz%4");
}

Test(headers, malformed_entries_are_skipped)
{
	/* no '=', empty key, key with a space, CRLF injection, NUL, DEL */
	parse("novalue,=x,bad key=1,ok=1,evil=a%0d%0aX-Injected: 1,nul=a%00b,del=%7f,fine=2", 6, 2);
	cr_assert_str_eq(h.lines[0], "ok: 1");
	cr_assert_str_eq(h.lines[1], "fine: 2");
}

Test(headers, tab_in_value_is_allowed)
{
	parse("t=a%09b", 0, 1);
	cr_assert_str_eq(h.lines[0], "t: a\tb");
	exp_headers_free(&h);
}

static const char *join(const char *base)
{
	static char out[256];
	cr_assert_eq(exp_endpoint_join(base, out, sizeof out), 0);
	return out;
}

Test(endpoint, join_without_double_slash)
{
	cr_assert_str_eq(join("http://collector:4318"), "http://collector:4318/v1/traces");
	cr_assert_str_eq(join("http://collector:4318/"), "http://collector:4318/v1/traces");
	cr_assert_str_eq(join("https://h/prefix//"), "https://h/prefix/v1/traces");
	char small[16];
	cr_assert_eq(exp_endpoint_join("http://a-very-long-host", small, sizeof small), -1);
}

Test(exporters, defaults)
{
	unsigned u;
	cr_assert_eq(exp_parse_exporters(NULL, false, false, &u), EXP_SINK_FILE);
	cr_assert_eq(exp_parse_exporters(NULL, true, false, &u), EXP_SINK_OTLP);
	cr_assert_eq(exp_parse_exporters("", true, true, &u), EXP_SINK_OTLP | EXP_SINK_FILE);
	cr_assert_eq(exp_parse_exporters(NULL, false, true, &u), EXP_SINK_FILE);
}

Test(exporters, explicit_lists)
{
	unsigned u;
	cr_assert_eq(exp_parse_exporters("none", true, true, &u), 0u);
	cr_assert_eq(exp_parse_exporters("otlp", false, false, &u), EXP_SINK_OTLP);
	cr_assert_eq(exp_parse_exporters(" file , otlp ", false, false, &u), EXP_SINK_OTLP | EXP_SINK_FILE);
	cr_assert_eq(exp_parse_exporters("otlp,none", false, false, &u), EXP_SINK_OTLP);
	cr_assert_eq(exp_parse_exporters("otlp,zipkin", false, false, &u), EXP_SINK_OTLP);
	cr_assert_eq(u, 1);
	cr_assert_eq(exp_parse_exporters("jaeger", true, false, &u), EXP_SINK_OTLP, "only typos: default");
	cr_assert_eq(u, 1);
}

Test(numbers, strict_decimal)
{
	uint64_t v;
	cr_assert(exp_parse_u64("0", &v) && v == 0);
	cr_assert(exp_parse_u64("18446744073709551606", &v) && v == 18446744073709551606ull);
	cr_assert_not(exp_parse_u64("18446744073709551616", &v), "overflow");
	cr_assert_not(exp_parse_u64("-1", &v));
	cr_assert_not(exp_parse_u64("10ms", &v));
	cr_assert_not(exp_parse_u64(" 1", &v));
	cr_assert_not(exp_parse_u64("", &v));
}

/* ---- the whole configuration, from a fake environment -------------------- */

static const char *const *fake_env;

static const char *fake_getenv(const char *name)
{
	size_t n = strlen(name);
	for (const char *const *e = fake_env; *e; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

static struct exp_config cfg;

static void load(const char *const *env)
{
	char err[256];
	fake_env = env;
	exp_config_free(&cfg);
	cr_assert_eq(exp_config_load(&cfg, fake_getenv, err, sizeof err), 0, "%s", err);
}

Test(config, defaults_write_the_file_only)
{
	load((const char *const[]){"HOME=/home/u", "XDG_RUNTIME_DIR=/run/user/1", NULL});
	cr_assert_eq(cfg.sinks, EXP_SINK_FILE);
	cr_assert_str_eq(cfg.socket_path, "/run/user/1/traceshim/exporter.sock");
	cr_assert_str_eq(cfg.file_path, "/home/u/.local/state/traceshim/traces.jsonl");
	cr_assert_str_eq(cfg.endpoint, "");
	cr_assert_eq(cfg.schedule_delay_ms, 200);
	cr_assert_eq(cfg.max_queue, 8192);
	cr_assert_eq(cfg.max_batch, 512);
	cr_assert_eq(cfg.log_level, EXP_LOG_WARN);
}

Test(config, endpoint_selects_otlp_and_appends_path)
{
	load((const char *const[]){"HOME=/h", "OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318/",
				   "OTEL_EXPORTER_OTLP_HEADERS=a=1", "OTEL_EXPORTER_OTLP_TIMEOUT=2500", NULL});
	cr_assert_eq(cfg.sinks, EXP_SINK_OTLP);
	cr_assert_str_eq(cfg.endpoint, "http://c:4318/v1/traces");
	cr_assert_str_eq(cfg.file_path, "", "no file unless TRACESHIM_FILE or OTEL_TRACES_EXPORTER says so");
	cr_assert_eq(cfg.timeout_ms, 2500);
	cr_assert_eq(cfg.headers.n, 1);
	cr_assert_str_eq(cfg.headers.lines[0], "a: 1");
}

Test(config, signal_specific_variables_win)
{
	load((const char *const[]){"HOME=/h", "OTEL_EXPORTER_OTLP_ENDPOINT=http://generic",
				   "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://t/custom/path",
				   "OTEL_EXPORTER_OTLP_HEADERS=g=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS=t=2",
				   "OTEL_EXPORTER_OTLP_TIMEOUT=1", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=7",
				   "TRACESHIM_FILE=rel/out.jsonl", NULL});
	cr_assert_eq(cfg.sinks, EXP_SINK_OTLP | EXP_SINK_FILE);
	cr_assert_str_eq(cfg.endpoint, "http://t/custom/path", "TRACES_ENDPOINT is used as is");
	cr_assert_eq(cfg.headers.n, 1);
	cr_assert_str_eq(cfg.headers.lines[0], "t: 2");
	cr_assert_eq(cfg.timeout_ms, 7);
	cr_assert_eq(cfg.file_path[0], '/', "relative paths are made absolute: %s", cfg.file_path);
	cr_assert_not_null(strstr(cfg.file_path, "/rel/out.jsonl"));
}

Test(config, otlp_without_endpoint_uses_the_spec_default)
{
	load((const char *const[]){"HOME=/h", "OTEL_TRACES_EXPORTER=otlp", NULL});
	cr_assert_eq(cfg.sinks, EXP_SINK_OTLP);
	cr_assert_str_eq(cfg.endpoint, "http://localhost:4318/v1/traces");
}

Test(config, bsp_values_checked_and_batch_clamped)
{
	load((const char *const[]){"HOME=/h", "OTEL_BSP_SCHEDULE_DELAY=abc", "OTEL_BSP_MAX_QUEUE_SIZE=100",
				   "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=1000", "TRACESHIM_LOG=debug",
				   "OTEL_TRACES_EXPORTER=none", NULL});
	cr_assert_eq(cfg.schedule_delay_ms, 200, "bad value: default");
	cr_assert_eq(cfg.max_queue, 100);
	cr_assert_eq(cfg.max_batch, 100, "batch may not exceed the queue");
	cr_assert_eq(cfg.sinks, 0u);
	cr_assert_eq(cfg.log_level, EXP_LOG_DEBUG);
}

Test(config, socket_path_too_long_is_an_error)
{
	static char longenv[300] = "TRACESHIM_SOCKET=/";
	memset(longenv + 18, 'x', 200);
	fake_env = (const char *const[]){"HOME=/h", longenv, NULL};
	char err[256] = "";
	cr_assert_eq(exp_config_load(&cfg, fake_getenv, err, sizeof err), -1);
	cr_assert_not_null(strstr(err, "socket path too long"), "%s", err);
}

/* ---- issue 5: delivery, spool, security, tail sampling ------------------- */

Test(config, delivery_defaults)
{
	load((const char *const[]){"HOME=/h", "OTEL_EXPORTER_OTLP_ENDPOINT=http://c", NULL});
	cr_assert_eq(cfg.export_timeout_ms, 5000);
	cr_assert_not(cfg.gzip);
	cr_assert_str_eq(cfg.spool_dir, "/h/.local/state/traceshim/spool");
	cr_assert_eq(cfg.spool_max_bytes, (uint64_t)256 << 20);
	cr_assert_eq(cfg.n_allowed_uids, 0);
	cr_assert_eq(cfg.max_connections, 4096);
	cr_assert_not(cfg.tail_sampling);
	cr_assert_eq(cfg.tail_wait_ms, 5000);
	cr_assert_eq(cfg.tail_slow_ms, 1000);
	cr_assert_float_eq(cfg.tail_ratio, 0.1, 1e-12);
	cr_assert_eq(cfg.tail_max_spans, 100000);
}

Test(config, delivery_variables)
{
	load((const char *const[]){"HOME=/h", "OTEL_EXPORTER_OTLP_ENDPOINT=http://c",
				   "OTEL_EXPORTER_OTLP_COMPRESSION=none", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=gzip",
				   "OTEL_BSP_EXPORT_TIMEOUT=30000", "TRACESHIM_SPOOL_DIR=sp",
				   "TRACESHIM_SPOOL_MAX_BYTES=1000", "TRACESHIM_ALLOWED_UIDS=1000, 33,x,-1",
				   "TRACESHIM_MAX_CONNECTIONS=9", "TRACESHIM_TAIL_SAMPLING=1",
				   "TRACESHIM_TAIL_WAIT_MS=0", "TRACESHIM_TAIL_SLOW_MS=20", "TRACESHIM_TAIL_RATIO=0",
				   "TRACESHIM_TAIL_MAX_SPANS=7", NULL});
	cr_assert(cfg.gzip, "the signal-specific variable wins");
	cr_assert_eq(cfg.export_timeout_ms, 30000);
	cr_assert_eq(cfg.spool_dir[0], '/', "made absolute: %s", cfg.spool_dir);
	cr_assert_not_null(strstr(cfg.spool_dir, "/sp"));
	cr_assert_eq(cfg.spool_max_bytes, 1000);
	cr_assert_eq(cfg.n_allowed_uids, 2);
	cr_assert_eq(cfg.allowed_uids[0], 1000);
	cr_assert_eq(cfg.allowed_uids[1], 33);
	cr_assert_eq(cfg.max_connections, 9);
	cr_assert(cfg.tail_sampling);
	cr_assert_eq(cfg.tail_wait_ms, 0);
	cr_assert_eq(cfg.tail_slow_ms, 20);
	cr_assert_float_eq(cfg.tail_ratio, 0.0, 1e-12);
	cr_assert_eq(cfg.tail_max_spans, 7);
}

Test(config, no_spool_without_otlp_or_with_a_zero_bound)
{
	load((const char *const[]){"HOME=/h", NULL});
	cr_assert_str_eq(cfg.spool_dir, "", "the file sink never spools");
	load((const char *const[]){"HOME=/h", "OTEL_TRACES_EXPORTER=otlp", "TRACESHIM_SPOOL_MAX_BYTES=0", NULL});
	cr_assert_str_eq(cfg.spool_dir, "");
}

Test(config, bad_ratio_and_uids)
{
	double r = -1;
	cr_assert(exp_parse_ratio("0.25", &r));
	cr_assert_float_eq(r, 0.25, 1e-12);
	cr_assert(exp_parse_ratio("1", &r));
	cr_assert(exp_parse_ratio("1e-3", &r));
	const char *bad[] = {"", " 0.5", "0.5x", "-0.1", "1.5", "nan", "inf", NULL};
	for (const char **b = bad; *b; b++)
		cr_assert_not(exp_parse_ratio(*b, &r), "%s", *b);
	load((const char *const[]){"HOME=/h", "TRACESHIM_TAIL_RATIO=2", "TRACESHIM_TAIL_SAMPLING=0", NULL});
	cr_assert_float_eq(cfg.tail_ratio, 0.1, 1e-12, "bad value: default");
	cr_assert_not(cfg.tail_sampling);
	unsigned uids[2];
	size_t n;
	cr_assert_eq(exp_parse_uids("1,2,3", uids, 2, &n), 1, "over capacity counts as skipped");
	cr_assert_eq(n, 2);
	cr_assert_eq(exp_parse_uids("4294967295,99999999999999999999", uids, 2, &n), 2);
	cr_assert_eq(n, 0);
}

Test(config, file_bound)
{
	load((const char *const[]){"HOME=/h", NULL});
	cr_assert_eq(cfg.file_max_bytes, 256ull << 20, "bounded by default");
	load((const char *const[]){"HOME=/h", "TRACESHIM_FILE_MAX_BYTES=0", NULL});
	cr_assert_eq(cfg.file_max_bytes, 0, "0: unbounded");
	load((const char *const[]){"HOME=/h", "TRACESHIM_FILE_MAX_BYTES=1M", NULL});
	cr_assert_eq(cfg.file_max_bytes, 256ull << 20, "not a number: default");
}
