/* stats.c — see stats.h. */
#include "stats.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct exp_stats exp_stats;

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_error[256];
static struct timespec started;
static time_t last_logged; /* CLOCK_MONOTONIC seconds of the last logged error */
static unsigned long unlogged;

#define ERROR_LOG_INTERVAL_S 10 /* a dead backend fails every batch: don't flood the log */

void exp_stats_start(void) { clock_gettime(CLOCK_MONOTONIC, &started); }

void exp_stats_error(const char *fmt, ...)
{
	char msg[sizeof last_error];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&err_lock);
	memcpy(last_error, msg, sizeof msg);
	bool log_it = last_logged == 0 || now.tv_sec - last_logged >= ERROR_LOG_INTERVAL_S;
	unsigned long skipped = unlogged;
	if (log_it) {
		last_logged = now.tv_sec ? now.tv_sec : 1;
		unlogged = 0;
	} else {
		unlogged++;
	}
	pthread_mutex_unlock(&err_lock);
	if (log_it && skipped)
		log_warn("%s (and %lu more errors in the last %d s)", msg, skipped, ERROR_LOG_INTERVAL_S);
	else if (log_it)
		log_warn("%s", msg);
}

static const char *or_none(const char *s) { return *s ? s : "none"; }

void exp_status_text(struct sbuf *out, const struct exp_config *cfg, size_t queue_depth)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	sbuf_printf(out, "pid=%ld\nversion=%s\nsocket=%s\nfile=%s\nendpoint=%s\nuptime_s=%lld\n",
		    (long)getpid(), TRACESHIM_VERSION, cfg->socket_path, or_none(cfg->file_path),
		    or_none(cfg->endpoint), (long long)(now.tv_sec - started.tv_sec));
#define X(name) sbuf_printf(out, #name "=%llu\n", (unsigned long long)STAT_GET(name));
	EXP_COUNTERS(X)
#undef X
	sbuf_printf(out, "queue_depth=%zu\n", queue_depth);
	pthread_mutex_lock(&err_lock);
	sbuf_printf(out, "last_error=%s\n", last_error);
	pthread_mutex_unlock(&err_lock);
}
