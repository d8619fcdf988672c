#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "envcarrier.h"

#define LIB "/opt/traceshim/lib/libtraceshim.so"
#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

static void *arena[4096];

static char **build(char *const envp[], const struct ts_envc_spec *spec)
{
	size_t need = ts_envc_size(envp, spec);
	cr_assert(need <= sizeof arena);
	memset(arena, 0xa5, sizeof arena);
	char **out = ts_envc_build(envp, spec, arena, need);
	cr_assert_not_null(out);
	return out;
}

static size_t count(char *const v[])
{
	size_t n = 0;
	while (v[n])
		n++;
	return n;
}

/* How many entries are named `name`; *val gets the value of the last. */
static int find(char *const v[], const char *name, const char **val)
{
	int hits = 0;
	size_t n = strlen(name);
	for (size_t i = 0; v[i]; i++)
		if (!strncmp(v[i], name, n) && v[i][n] == '=') {
			hits++;
			if (val)
				*val = v[i] + n + 1;
		}
	return hits;
}

static struct ts_envc_spec carrier(void)
{
	struct ts_envc_spec s = {0};
	ts_envc_set(&s, "TRACEPARENT", TP, strlen(TP));
	ts_envc_set(&s, "TRACESTATE", NULL, 0);
	ts_envc_set(&s, "BAGGAGE", "k=v", 3);
	s.preload = LIB;
	return s;
}

Test(envcarrier, replaces_existing_carrier_variables)
{
	char *env[] = {"PATH=/bin", "TRACEPARENT=00-old", "TRACESTATE=vendor=1", "HOME=/h",
		       "BAGGAGE=old=1", "LD_PRELOAD=" LIB, NULL};
	struct ts_envc_spec s = carrier();
	char **out = build(env, &s);
	const char *v = NULL;
	cr_assert_eq(find(out, "TRACEPARENT", &v), 1);
	cr_assert_str_eq(v, TP);
	cr_assert_eq(find(out, "TRACESTATE", NULL), 0, "a context without tracestate drops the stale one");
	cr_assert_eq(find(out, "BAGGAGE", &v), 1);
	cr_assert_str_eq(v, "k=v");
	cr_assert_eq(find(out, "PATH", NULL), 1);
	cr_assert_eq(find(out, "HOME", NULL), 1);
	cr_assert_eq(count(out), 5);
	cr_assert_eq(out[0], env[0], "the caller's strings are reused, in order");
	cr_assert_eq(out[1], env[3]);
	cr_assert_str_eq(env[1], "TRACEPARENT=00-old", "the caller's envp is never written");
}

Test(envcarrier, adds_ld_preload_once)
{
	char *env[] = {"PATH=/bin", NULL};
	struct ts_envc_spec s = carrier();
	char **out = build(env, &s);
	const char *v = NULL;
	cr_assert_eq(find(out, "LD_PRELOAD", &v), 1);
	cr_assert_str_eq(v, LIB);

	/* Building again from the result never adds it a second time. */
	static void *arena2[1024];
	char **again = ts_envc_build(out, &s, arena2, sizeof arena2);
	cr_assert_not_null(again);
	cr_assert_eq(find(again, "LD_PRELOAD", &v), 1);
	cr_assert_str_eq(v, LIB);
}

Test(envcarrier, appends_to_a_foreign_ld_preload)
{
	char *env[] = {"LD_PRELOAD=/usr/lib/libfaketime.so.1", "A=1", NULL};
	struct ts_envc_spec s = carrier();
	char **out = build(env, &s);
	const char *v = NULL;
	cr_assert_eq(find(out, "LD_PRELOAD", &v), 1);
	cr_assert_str_eq(v, "/usr/lib/libfaketime.so.1:" LIB);
	cr_assert_eq(out[1], env[1]);
}

Test(envcarrier, same_library_under_another_path_counts)
{
	cr_assert(ts_envc_preload_has("/a.so /build/hooks/libtraceshim.so", LIB));
	cr_assert(ts_envc_preload_has("libtraceshim.so", LIB));
	cr_assert(ts_envc_preload_has("x.so:" LIB ":y.so", LIB));
	cr_assert_not(ts_envc_preload_has("/lib/libtraceshim.so.1", LIB));
	cr_assert_not(ts_envc_preload_has("", LIB));
	cr_assert_not(ts_envc_preload_has(NULL, LIB));
	char *env[] = {"LD_PRELOAD=/elsewhere/libtraceshim.so", NULL};
	struct ts_envc_spec s = carrier();
	char **out = build(env, &s);
	cr_assert_eq(out[0], env[0], "already preloaded: the entry is the caller's own");
}

Test(envcarrier, empty_ld_preload_gets_ours)
{
	char *env[] = {"LD_PRELOAD=", NULL};
	struct ts_envc_spec s = carrier();
	char **out = build(env, &s);
	const char *v = NULL;
	cr_assert_eq(find(out, "LD_PRELOAD", &v), 1);
	cr_assert_str_eq(v, LIB);
}

Test(envcarrier, null_envp_is_an_empty_environment)
{
	struct ts_envc_spec s = carrier();
	char **out = build(NULL, &s);
	cr_assert_eq(count(out), 3); /* TRACEPARENT, BAGGAGE, LD_PRELOAD */
	cr_assert_eq(find(out, "TRACEPARENT", NULL), 1);
	cr_assert_eq(find(out, "LD_PRELOAD", NULL), 1);
	char *empty[] = {NULL};
	struct ts_envc_spec none = {0};
	out = build(empty, &none);
	cr_assert_null(out[0]);
}

Test(envcarrier, keep_only_fills_gaps)
{
	static const char *const keep[] = {"TRACESHIM_SOCKET=/run/ts.sock", "OTEL_SERVICE_NAME=init",
					   "TRACEPARENT=00-never-from-keep"};
	char *env[] = {"OTEL_SERVICE_NAME=child", NULL};
	struct ts_envc_spec s = carrier();
	s.keep = keep;
	s.n_keep = 3;
	char **out = build(env, &s);
	const char *v = NULL;
	cr_assert_eq(find(out, "TRACESHIM_SOCKET", &v), 1);
	cr_assert_str_eq(v, "/run/ts.sock");
	cr_assert_eq(find(out, "OTEL_SERVICE_NAME", &v), 1);
	cr_assert_str_eq(v, "child", "the caller's explicit value wins");
	cr_assert_eq(find(out, "TRACEPARENT", &v), 1);
	cr_assert_str_eq(v, TP);
}

Test(envcarrier, refuses_to_overflow)
{
	char *env[] = {"PATH=/bin", "LD_PRELOAD=/x.so", NULL};
	struct ts_envc_spec s = carrier();
	size_t need = ts_envc_size(env, &s);
	cr_assert_gt(need, 0);
	for (size_t cap = 0; cap < need; cap += 8) {
		memset(arena, 0xa5, sizeof arena);
		cr_assert_null(ts_envc_build(env, &s, arena, cap), "cap %zu < %zu", cap, need);
		cr_assert_eq(((unsigned char *)arena)[0], 0xa5, "nothing written when it does not fit");
	}
	cr_assert_not_null(ts_envc_build(env, &s, arena, need));
	/* The measured size is exact: the last byte is used or padding. */
	cr_assert_null(ts_envc_build(env, &s, NULL, need));
	cr_assert_null(ts_envc_build(env, &s, (char *)arena + 1, need), "misaligned memory is refused");
}

Test(envcarrier, writes_only_inside_the_buffer)
{
	char *env[] = {"A=1", "LD_PRELOAD=/x.so", "BAGGAGE=a", NULL};
	struct ts_envc_spec s = carrier();
	size_t need = ts_envc_size(env, &s);
	memset(arena, 0xa5, sizeof arena);
	char **out = ts_envc_build(env, &s, arena, need);
	cr_assert_not_null(out);
	for (size_t i = need; i < need + 64; i++)
		cr_assert_eq(((unsigned char *)arena)[i], 0xa5, "byte %zu past the end was written", i);
}

Test(envcarrier, too_many_sets_are_ignored)
{
	struct ts_envc_spec s = {0};
	for (int i = 0; i < TS_ENVC_MAX_SET + 3; i++)
		ts_envc_set(&s, "X", "1", 1);
	cr_assert_eq(s.n_set, TS_ENVC_MAX_SET);
}

Test(envcarrier, opt_out)
{
	char *off[] = {"A=1", "OTEL_SDK_DISABLED=true", NULL};
	char *on[] = {"OTEL_SDK_DISABLED=false", NULL};
	char *none[] = {"OTEL_SDK_DISABLED_X=true", NULL};
	cr_assert(ts_envc_opted_out(off));
	cr_assert_not(ts_envc_opted_out(on));
	cr_assert_not(ts_envc_opted_out(none));
	cr_assert_not(ts_envc_opted_out(NULL));
}

Test(envcarrier, entries_without_equals_pass_through)
{
	char *env[] = {"WEIRD", "TRACEPARENT", NULL};
	struct ts_envc_spec s = carrier();
	char **out = build(env, &s);
	cr_assert_eq(out[0], env[0]);
	cr_assert_eq(out[1], env[1], "only NAME=... entries are replaced");
}
