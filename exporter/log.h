/* log.h — the exporter's logging: level, pid, [file:line], printf-checked
 * formats, errno preserved. Lines go to stderr (a terminal in the foreground,
 * exporter.log next to the socket with --daemon). */
#ifndef TRACESHIM_EXP_LOG_H
#define TRACESHIM_EXP_LOG_H

#include <stddef.h>

enum exp_log_level { EXP_LOG_OFF, EXP_LOG_ERROR, EXP_LOG_WARN, EXP_LOG_INFO, EXP_LOG_DEBUG };

extern enum exp_log_level exp_log_level;

/* off|error|warn|info|debug (case-insensitive); NULL, empty or unknown → dflt. */
enum exp_log_level exp_log_parse(const char *s, enum exp_log_level dflt);

void exp_log_at(enum exp_log_level lvl, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* snprintf for messages where cutting a long path short is fine (GCC's
 * -Wformat-truncation cannot know that). */
void exp_fmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define EXP_LOG(lvl, ...)                                              \
	do {                                                           \
		if (exp_log_level >= (lvl))                            \
			exp_log_at((lvl), __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)
#define log_error(...) EXP_LOG(EXP_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) EXP_LOG(EXP_LOG_WARN, __VA_ARGS__)
#define log_info(...) EXP_LOG(EXP_LOG_INFO, __VA_ARGS__)
#define log_debug(...) EXP_LOG(EXP_LOG_DEBUG, __VA_ARGS__)

#endif
