#include <criterion/criterion.h>
#include <string.h>

#include "config.h"

static const char *const *fake_env;
static const char *fake_getenv(const char *name)
{
	for (const char *const *p = fake_env; p && *p; p += 2)
		if (!strcmp(p[0], name))
			return p[1];
	return NULL;
}

Test(config, defaults)
{
	static const char *env[] = {"HOME", "/home/u", NULL};
	fake_env = env;
	struct ts_config c;
	ts_config_load(&c, fake_getenv);
	cr_assert_not(c.disabled);
	cr_assert_eq(c.sampler, TS_SAMPLER_PB_ALWAYS_ON);
	cr_assert(c.propagate_tracecontext && c.propagate_baggage);
	cr_assert_eq(c.flush_ms, 100);
	cr_assert_eq(c.log_level, TS_LOG_OFF);
	cr_assert_str_eq(c.service_name, "");
	cr_assert(strstr(c.socket_path, "/tmp/traceshim-") == c.socket_path, "%s", c.socket_path);
}

Test(config, values_and_empty_counts_as_unset)
{
	static const char *env[] = {"OTEL_SDK_DISABLED", "TRUE", "OTEL_SERVICE_NAME", "checkout",
				    "OTEL_TRACES_SAMPLER", "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.25",
				    "TRACESHIM_SOCKET", "/run/x.sock", "XDG_RUNTIME_DIR", "/run/user/1",
				    "OTEL_PROPAGATORS", "baggage", "TRACESHIM_FLUSH_MS", "", "TRACESHIM_LOG", "debug",
				    NULL};
	fake_env = env;
	struct ts_config c;
	ts_config_load(&c, fake_getenv);
	cr_assert(c.disabled);
	cr_assert_str_eq(c.service_name, "checkout");
	cr_assert_eq(c.sampler, TS_SAMPLER_PB_RATIO);
	cr_assert_float_eq(c.ratio, 0.25, 1e-9);
	cr_assert_str_eq(c.socket_path, "/run/x.sock");
	cr_assert_not(c.propagate_tracecontext);
	cr_assert(c.propagate_baggage);
	cr_assert_eq(c.flush_ms, 100);
	cr_assert_eq(c.log_level, TS_LOG_DEBUG);
}

Test(config, socket_under_xdg_runtime_dir)
{
	static const char *env[] = {"XDG_RUNTIME_DIR", "/run/user/1000", NULL};
	fake_env = env;
	struct ts_config c;
	ts_config_load(&c, fake_getenv);
	cr_assert_str_eq(c.socket_path, "/run/user/1000/traceshim/exporter.sock");
}

Test(config, sampler_names_and_bad_args)
{
	double r;
	cr_assert_eq(ts_parse_sampler("always_off", NULL, &r), TS_SAMPLER_ALWAYS_OFF);
	cr_assert_eq(ts_parse_sampler("traceidratio", "1.5", &r), TS_SAMPLER_RATIO);
	cr_assert_float_eq(r, 1.0, 1e-9); /* out of range: default */
	cr_assert_eq(ts_parse_sampler("jaeger_remote", NULL, &r), TS_SAMPLER_PB_ALWAYS_ON);
	cr_assert_eq(ts_parse_ms("12x", 5, 100), 5);
	cr_assert_eq(ts_parse_ms("5000", 5, 1000), 5);
	cr_assert_eq(ts_parse_ms("250", 5, 1000), 250);
	cr_assert(ts_parse_bool("yes", false));
	cr_assert_not(ts_parse_bool("0", true));
	cr_assert(ts_parse_bool("maybe", true));
}

Test(config, resource_attributes_are_decoded_and_trimmed)
{
	const char *cur = " deployment.environment = prod ,bad,team=a%2Cb%3Dc,=novalue,k=";
	char k[64], v[64];
	cr_assert(ts_kv_next(&cur, k, sizeof k, v, sizeof v));
	cr_assert_str_eq(k, "deployment.environment");
	cr_assert_str_eq(v, "prod");
	cr_assert(ts_kv_next(&cur, k, sizeof k, v, sizeof v));
	cr_assert_str_eq(k, "team");
	cr_assert_str_eq(v, "a,b=c");
	cr_assert_not(ts_kv_next(&cur, k, sizeof k, v, sizeof v));
}

Test(config, long_jobs_and_stack_traces)
{
	static const char *dflt[] = {NULL};
	fake_env = dflt;
	struct ts_config c;
	ts_config_load(&c, fake_getenv);
	cr_assert_eq(c.max_trace_seconds, 3600);
	cr_assert_eq(c.stacktraces, TS_STACK_ERRORS);
	static const char *env[] = {"TRACESHIM_MAX_TRACE_SECONDS", "0", "TRACESHIM_STACKTRACES", "ALL", NULL};
	fake_env = env;
	ts_config_load(&c, fake_getenv);
	cr_assert_eq(c.max_trace_seconds, 0, "0 means a trace never splits");
	cr_assert_eq(c.stacktraces, TS_STACK_ALL);
	cr_assert_eq(ts_parse_stacktraces("off"), TS_STACK_OFF);
	cr_assert_eq(ts_parse_stacktraces("sometimes"), TS_STACK_ERRORS, "unknown: the default");
}

Test(config, transport_and_ring_size)
{
	static const char *dflt[] = {NULL};
	fake_env = dflt;
	struct ts_config c;
	ts_config_load(&c, fake_getenv);
	cr_assert_not(c.socket_transport);
	cr_assert_eq(c.ring_bytes, 512u << 10);
	static const char *set[] = {"TRACESHIM_TRANSPORT", "Socket", "TRACESHIM_RING_KB", "64", NULL};
	fake_env = set;
	ts_config_load(&c, fake_getenv);
	cr_assert(c.socket_transport);
	cr_assert_eq(c.ring_bytes, 64u << 10);
	/* not a power of two, too small, too big: the default */
	const char *bad[] = {"1000", "32", "131072", "x"};
	for (unsigned i = 0; i < 4; i++) {
		const char *e[] = {"TRACESHIM_RING_KB", bad[i], NULL};
		fake_env = e;
		ts_config_load(&c, fake_getenv);
		cr_assert_eq(c.ring_bytes, 512u << 10, "%s", bad[i]);
	}
}

Test(config, globs)
{
#define M(p, s) ts_glob_match(p, strlen(p), s)
	cr_assert(M("curl", "curl"));
	cr_assert_not(M("curl", "curl2"));
	cr_assert(M("python3*", "python3.11"));
	cr_assert(M("*", ""));
	cr_assert(M("py*on*", "python3"));
	cr_assert_not(M("py*on*x", "python3"));
	cr_assert(M("ngin?", "nginx"));
	cr_assert(M("[a-c]url", "curl"));
	cr_assert_not(M("[!a-c]url", "curl"));
	cr_assert(M("[^x]url", "curl"));
	cr_assert(M("[]]x", "]x"), "a ']' first in a class is a member");
	cr_assert(M("a[b", "a[b"), "an unterminated class is a literal '['");
	cr_assert(M("a\\*", "a*"));
	cr_assert_not(M("a\\*", "ab"));
	cr_assert(M("/usr/bin/*", "/usr/bin/x/y"), "'*' crosses '/'");
	cr_assert(M("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaab"));
	cr_assert_not(M("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaa"));
#undef M
}

Test(config, include_exclude_rules)
{
	static const char *env[] = {"TRACESHIM_INCLUDE", " curl, python3* ,,/opt/app/bin/*", "TRACESHIM_EXCLUDE",
				    "python3.9", NULL};
	fake_env = env;
	struct ts_config c;
	ts_config_load(&c, fake_getenv);
	cr_assert(ts_rules_present(&c));
	cr_assert(ts_rules_select(&c, "curl", "curl", "/usr/bin/curl"));
	cr_assert(ts_rules_select(&c, "python3.11", "python3", "/usr/bin/python3.11"));
	cr_assert_not(ts_rules_select(&c, "python3.9", "python3", "/usr/bin/python3.9"), "exclude wins");
	cr_assert_not(ts_rules_select(&c, "dash", "sh", "/usr/bin/dash"));
	cr_assert(ts_rules_select(&c, "srv", "srv", "/opt/app/bin/srv"), "a rule with '/' is a path");
	cr_assert_not(ts_rules_select(&c, "srv", "srv", "/opt/other/srv"));
	cr_assert(ts_rules_select(&c, "dash", "curl", "/usr/bin/dash"), "argv[0]'s name counts too");

	static const char *exc_only[] = {"TRACESHIM_EXCLUDE", "sh,dash,bash", NULL};
	fake_env = exc_only;
	ts_config_load(&c, fake_getenv);
	cr_assert(ts_rules_select(&c, "curl", "curl", "/usr/bin/curl"));
	cr_assert_not(ts_rules_select(&c, "dash", "sh", "/usr/bin/dash"));

	static const char *none[] = {"TRACESHIM_INCLUDE", "", NULL};
	fake_env = none;
	ts_config_load(&c, fake_getenv);
	cr_assert_not(ts_rules_present(&c), "empty counts as unset");
	cr_assert(ts_rules_select(&c, "x", "x", "/x"));
}

Test(config, rules_too_long_trace_nothing)
{
	static char big[TS_RULES_MAX + 10];
	memset(big, 'a', sizeof big - 1);
	big[1] = ',';
	static const char *env[] = {"TRACESHIM_EXCLUDE", big, NULL};
	fake_env = env;
	struct ts_config c;
	ts_config_load(&c, fake_getenv);
	cr_assert(c.rules_unreadable);
	cr_assert_not(ts_rules_select(&c, "curl", "curl", "/usr/bin/curl"));
	char rule[TS_RULE_MAX + 2];
	memset(rule, 'b', sizeof rule - 1);
	rule[sizeof rule - 1] = 0;
	cr_assert_not(ts_rules_match(rule, rule, rule, rule), "a rule longer than TS_RULE_MAX never matches");
}

Test(config, preload_env_file)
{
	char buf[512];
	const char *text = "# rules\n"
			   "TRACESHIM_INCLUDE=nginx,curl\n"
			   "  export TRACESHIM_SOCKET=\"/run/traceshim/exporter.sock\"  \n"
			   "PATH=/evil\n"
			   "OTEL_SERVICE_NAME='a b'\n"
			   "OTEL_BAD-NAME=x\n"
			   "novalue\n"
			   "\n"
			   "TRACESHIM_INCLUDE=nginx"; /* no final newline; the last one wins */
	size_t n = strlen(text);
	memcpy(buf, text, n);
	size_t len = ts_envfile_prepare(buf, n);
	cr_assert_str_eq(ts_envfile_lookup(buf, len, "TRACESHIM_INCLUDE"), "nginx");
	cr_assert_str_eq(ts_envfile_lookup(buf, len, "TRACESHIM_SOCKET"), "/run/traceshim/exporter.sock");
	cr_assert_str_eq(ts_envfile_lookup(buf, len, "OTEL_SERVICE_NAME"), "a b");
	cr_assert_null(ts_envfile_lookup(buf, len, "PATH"), "only our variables");
	cr_assert_null(ts_envfile_lookup(buf, len, "OTEL_BAD-NAME"));
	cr_assert_null(ts_envfile_lookup(buf, len, "TRACESHIM"));
	cr_assert_eq(ts_envfile_prepare(buf, 0), 0);
	cr_assert_null(ts_envfile_lookup(buf, 0, "TRACESHIM_INCLUDE"));
}
