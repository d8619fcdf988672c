/* fsutil.c — see fsutil.h. */
#include "fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"

void exp_dirname(const char *path, char *out, size_t cap)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(out, cap, ".");
	else if (slash == path)
		snprintf(out, cap, "/");
	else
		snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

int exp_mkdir_parents(const char *path, mode_t mode)
{
	char dir[EXP_PATH_MAX];
	exp_dirname(path, dir, sizeof dir);
	size_t n = strlen(dir);
	/* Walk down component by component; existing ones are left as they are. */
	for (size_t i = 1; i <= n; i++) {
		if (dir[i] != '/' && dir[i] != '\0')
			continue;
		char saved = dir[i];
		dir[i] = '\0';
		if (mkdir(dir, mode) < 0 && errno != EEXIST)
			return -1;
		dir[i] = saved;
	}
	struct stat st;
	if (stat(dir, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}
