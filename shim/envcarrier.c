/* envcarrier.c — see envcarrier.h. Two passes over envp (measure, build), no
 * allocation, no globals: safe in a vfork child and a signal handler. */
#include "envcarrier.h"

#include <stdint.h>
#include <string.h>

#include "config.h" /* ts_parse_bool */

#define PRELOAD "LD_PRELOAD="
#define PRELOAD_LEN (sizeof PRELOAD - 1)

void ts_envc_set(struct ts_envc_spec *spec, const char *name, const char *value, size_t len)
{
	if (spec->n_set >= TS_ENVC_MAX_SET)
		return;
	spec->set[spec->n_set++] = (struct ts_envc_var){.name = name, .value = value, .len = len};
}

/* "NAME=..." names `name` (of length n)? */
static bool named(const char *entry, const char *name, size_t n)
{
	return !strncmp(entry, name, n) && entry[n] == '=';
}

static size_t name_len(const char *entry)
{
	const char *eq = strchr(entry, '=');
	return eq ? (size_t)(eq - entry) : strlen(entry);
}

static bool replaced(const char *entry, const struct ts_envc_spec *spec)
{
	for (unsigned i = 0; i < spec->n_set; i++)
		if (named(entry, spec->set[i].name, strlen(spec->set[i].name)))
			return true;
	return false;
}

static bool envp_has(char *const envp[], const char *name, size_t n)
{
	for (size_t i = 0; envp && envp[i]; i++)
		if (named(envp[i], name, n))
			return true;
	return false;
}

/* A keep entry is added when neither envp nor `set` has its name. */
static bool keep_wanted(char *const envp[], const struct ts_envc_spec *spec, const char *entry)
{
	size_t n = name_len(entry);
	if (!entry[n] || envp_has(envp, entry, n))
		return false;
	for (unsigned i = 0; i < spec->n_set; i++)
		if (strlen(spec->set[i].name) == n && !strncmp(spec->set[i].name, entry, n))
			return false;
	return true;
}

static const char *base_name(const char *p, size_t n, size_t *blen)
{
	const char *b = p;
	for (size_t i = 0; i < n; i++)
		if (p[i] == '/')
			b = p + i + 1;
	*blen = n - (size_t)(b - p);
	return b;
}

bool ts_envc_preload_has(const char *list, const char *lib)
{
	if (!list || !lib || !*lib)
		return false;
	size_t lib_n = strlen(lib), lib_bn;
	const char *lib_b = base_name(lib, lib_n, &lib_bn);
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ": \t");
		if (n) {
			size_t bn;
			const char *b = base_name(p, n, &bn);
			if ((n == lib_n && !memcmp(p, lib, n)) || (bn == lib_bn && !memcmp(b, lib_b, bn)))
				return true;
		}
		p += n;
		if (*p)
			p++;
	}
	return false;
}

bool ts_envc_opted_out(char *const envp[])
{
	static const char key[] = "OTEL_SDK_DISABLED";
	for (size_t i = 0; envp && envp[i]; i++)
		if (named(envp[i], key, sizeof key - 1))
			return ts_parse_bool(envp[i] + sizeof key, false);
	return false;
}

/* What the copy does about LD_PRELOAD. */
struct preload_plan {
	size_t index;      /* of the first LD_PRELOAD entry, or SIZE_MAX */
	size_t bytes;      /* of the new entry with its NUL, 0: nothing to write */
};

static struct preload_plan plan_preload(char *const envp[], const struct ts_envc_spec *spec)
{
	struct preload_plan p = {.index = SIZE_MAX};
	if (!spec->preload || !*spec->preload)
		return p;
	for (size_t i = 0; envp && envp[i]; i++) {
		if (!named(envp[i], PRELOAD, PRELOAD_LEN - 1))
			continue;
		p.index = i;
		const char *v = envp[i] + PRELOAD_LEN;
		if (!ts_envc_preload_has(v, spec->preload))
			p.bytes = PRELOAD_LEN + strlen(v) + (*v ? 1 : 0) + strlen(spec->preload) + 1;
		return p;
	}
	p.bytes = PRELOAD_LEN + strlen(spec->preload) + 1;
	return p;
}

static size_t align_up(size_t n) { return (n + sizeof(void *) - 1) & ~(sizeof(void *) - 1); }

size_t ts_envc_size(char *const envp[], const struct ts_envc_spec *spec)
{
	size_t slots = 1, bytes = 0; /* the terminating NULL */
	for (size_t i = 0; envp && envp[i]; i++)
		slots += !replaced(envp[i], spec);
	for (unsigned i = 0; i < spec->n_set; i++)
		if (spec->set[i].value) {
			slots++;
			bytes += strlen(spec->set[i].name) + 1 + spec->set[i].len + 1;
		}
	for (unsigned i = 0; i < spec->n_keep; i++)
		slots += keep_wanted(envp, spec, spec->keep[i]);
	struct preload_plan pp = plan_preload(envp, spec);
	if (pp.bytes) {
		bytes += pp.bytes;
		slots += pp.index == SIZE_MAX;
	}
	return slots * sizeof(char *) + align_up(bytes);
}

/* Appends "name=value\0" at *w; returns the entry. */
static char *put_var(char **w, const char *name, const char *value, size_t len)
{
	char *entry = *w;
	size_t n = strlen(name);
	memcpy(*w, name, n);
	(*w)[n] = '=';
	memcpy(*w + n + 1, value, len);
	(*w)[n + 1 + len] = 0;
	*w += n + len + 2;
	return entry;
}

static char *put_preload(char **w, const char *old, const char *lib)
{
	const char *v = old ? old + PRELOAD_LEN : "";
	size_t vn = strlen(v), ln = strlen(lib);
	char *entry = *w;
	memcpy(*w, PRELOAD, PRELOAD_LEN);
	char *p = *w + PRELOAD_LEN;
	memcpy(p, v, vn);
	p += vn;
	if (vn)
		*p++ = ':';
	memcpy(p, lib, ln);
	p[ln] = 0;
	*w = p + ln + 1;
	return entry;
}

char **ts_envc_build(char *const envp[], const struct ts_envc_spec *spec, void *buf, size_t cap)
{
	size_t need = ts_envc_size(envp, spec);
	if (!buf || need > cap || ((uintptr_t)buf & (sizeof(void *) - 1)))
		return NULL;
	struct preload_plan pp = plan_preload(envp, spec);
	size_t slots = 1;
	for (size_t i = 0; envp && envp[i]; i++)
		slots += !replaced(envp[i], spec);
	for (unsigned i = 0; i < spec->n_set; i++)
		slots += spec->set[i].value != NULL;
	for (unsigned i = 0; i < spec->n_keep; i++)
		slots += keep_wanted(envp, spec, spec->keep[i]);
	slots += pp.bytes && pp.index == SIZE_MAX;

	char **vec = buf;
	char *w = (char *)(vec + slots);
	size_t k = 0;
	for (size_t i = 0; envp && envp[i]; i++) {
		if (replaced(envp[i], spec))
			continue;
		vec[k++] = (i == pp.index && pp.bytes) ? put_preload(&w, envp[i], spec->preload) : envp[i];
	}
	for (unsigned i = 0; i < spec->n_set; i++)
		if (spec->set[i].value)
			vec[k++] = put_var(&w, spec->set[i].name, spec->set[i].value, spec->set[i].len);
	for (unsigned i = 0; i < spec->n_keep; i++)
		if (keep_wanted(envp, spec, spec->keep[i]))
			vec[k++] = (char *)spec->keep[i];
	if (pp.bytes && pp.index == SIZE_MAX)
		vec[k++] = put_preload(&w, NULL, spec->preload);
	vec[k] = NULL;
	return vec;
}
