/* log.c — see log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum exp_log_level exp_log_level = EXP_LOG_WARN;

static const char *const level_names[] = {"off", "error", "warn", "info", "debug"};

enum exp_log_level exp_log_parse(const char *s, enum exp_log_level dflt)
{
	if (!s || !*s)
		return dflt;
	for (int i = EXP_LOG_OFF; i <= EXP_LOG_DEBUG; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return (enum exp_log_level)i;
	return dflt;
}

void exp_log_at(enum exp_log_level lvl, const char *file, int line, const char *fmt, ...)
{
	int saved = errno;
	char stamp[32] = "";
	struct timespec ts;
	struct tm tm;
	if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && localtime_r(&ts.tv_sec, &tm))
		strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
	const char *base = strrchr(file, '/');
	/* One locked stdio stream per line, so lines from two threads never mix. */
	flockfile(stderr);
	fprintf(stderr, "traceshim-exporter[%ld] %s %s [%s:%d] ", (long)getpid(), stamp,
		level_names[lvl], base ? base + 1 : file, line);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	funlockfile(stderr);
	errno = saved;
}

void exp_fmt(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, cap, fmt, ap);
	va_end(ap);
}
