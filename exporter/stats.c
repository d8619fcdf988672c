/* stats.c — see stats.h. */
#include "stats.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct exp_stats exp_stats;

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_error[256];
static time_t last_error_at; /* CLOCK_REALTIME seconds, 0: never */
static struct timespec started;
static time_t last_logged; /* CLOCK_MONOTONIC seconds of the last logged error */
static unsigned long unlogged;

#define ERROR_LOG_INTERVAL_S 10 /* a dead backend fails every batch: don't flood the log */
#define REASONS_MAX 64          /* distinct reasons remembered by exp_stats_error_once */

void exp_stats_start(void) { clock_gettime(CLOCK_MONOTONIC, &started); }

static void one_line(char *msg)
{
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

/* Keeps msg for STATUS; true when the rate limit lets it be logged, with
 * *skipped the number of errors not logged since the last logged one. */
static bool remember(const char *msg, unsigned long *skipped)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&err_lock);
	snprintf(last_error, sizeof last_error, "%s", msg);
	last_error_at = time(NULL);
	bool log_it = last_logged == 0 || now.tv_sec - last_logged >= ERROR_LOG_INTERVAL_S;
	*skipped = unlogged;
	if (log_it) {
		last_logged = now.tv_sec ? now.tv_sec : 1;
		unlogged = 0;
	} else {
		unlogged++;
	}
	pthread_mutex_unlock(&err_lock);
	return log_it;
}

void exp_stats_error(const char *fmt, ...)
{
	char msg[sizeof last_error];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	one_line(msg);
	unsigned long skipped;
	if (!remember(msg, &skipped))
		return;
	if (skipped)
		log_warn("%s (and %lu more errors in the last %d s)", msg, skipped, ERROR_LOG_INTERVAL_S);
	else
		log_warn("%s", msg);
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* True the first time `reason` is seen (among the first REASONS_MAX ones). */
static bool first_time(const char *reason)
{
	static uint64_t seen[REASONS_MAX];
	static size_t n_seen;
	uint64_t h = fnv1a(reason);
	bool first = true;
	pthread_mutex_lock(&err_lock);
	for (size_t i = 0; i < n_seen && first; i++)
		first = seen[i] != h;
	if (first && n_seen < REASONS_MAX)
		seen[n_seen++] = h;
	pthread_mutex_unlock(&err_lock);
	return first;
}

void exp_stats_error_once(const char *reason, const char *fmt, ...)
{
	char msg[sizeof last_error];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	one_line(msg);
	unsigned long skipped;
	remember(msg, &skipped);
	/* Past REASONS_MAX distinct reasons every new one "is seen first" again:
	 * then the plain rate limit (remember) is what keeps the log short. */
	if (first_time(reason))
		log_warn("%s (further ones for this reason at debug level)", msg);
	else
		log_debug("%s", msg);
}

static const char *or_none(const char *s) { return *s ? s : "none"; }

void exp_status_text(struct sbuf *out, const struct exp_config *cfg, size_t queue_depth)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	sbuf_printf(out, "pid=%ld\nversion=%s\nsocket=%s\nfile=%s\nendpoint=%s\nspool=%s\nuptime_s=%lld\n",
		    (long)getpid(), TRACESHIM_VERSION, cfg->socket_path, or_none(cfg->file_path),
		    or_none(cfg->endpoint), or_none(cfg->spool_dir), (long long)(now.tv_sec - started.tv_sec));
#define X(name) sbuf_printf(out, #name "=%llu\n", (unsigned long long)STAT_GET(name));
	EXP_COUNTERS(X)
	sbuf_printf(out, "queue_depth=%zu\n", queue_depth);
	EXP_GAUGES(X)
#undef X
	sbuf_printf(out, "tail_sampling=%s\n", cfg->tail_sampling ? "on" : "off");
	pthread_mutex_lock(&err_lock);
	char when[32] = "";
	struct tm tm;
	if (last_error_at && gmtime_r(&last_error_at, &tm))
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	sbuf_printf(out, "last_error=%s\nlast_error_at=%s\n", last_error, when);
	pthread_mutex_unlock(&err_lock);
	sbuf_printf(out, "metrics=%s%s%s\n", cfg->metrics_exporters ? "" : "none",
		    (cfg->metrics_exporters & EXP_METRICS_PROMETHEUS) ? "prometheus" : "",
		    (cfg->metrics_exporters & EXP_METRICS_OTLP)
			    ? ((cfg->metrics_exporters & EXP_METRICS_PROMETHEUS) ? ",otlp" : "otlp")
			    : "");
#define X(name) sbuf_printf(out, #name "=%llu\n", (unsigned long long)STAT_GET(name));
	EXP_METRICS_STATS(X)
#undef X
}
