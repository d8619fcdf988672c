/* fsutil.h — directory creation and checks shared by the listener, the file
 * sink and --daemon's log file. */
#ifndef TRACESHIM_EXP_FSUTIL_H
#define TRACESHIM_EXP_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p for the directory part of `path` (everything before the last
 * '/'), creating missing components with `mode`. 0, or -1 with errno. */
int exp_mkdir_parents(const char *path, mode_t mode);

/* The directory part of path into out ("." when there is none). */
void exp_dirname(const char *path, char *out, size_t cap);

#endif
