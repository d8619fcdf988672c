/* sink_file.c — OTLP/JSON lines, one ExportTraceServiceRequest per line.
 * Each line goes out in a single write() on an O_APPEND descriptor, so two
 * writers never interleave and a reader only ever sees whole lines (a
 * failed, partial write is cut back off). The file is reopened when it has
 * been moved or deleted (log rotation, `rm`), as most log writers do. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "sink.h"

struct file_sink {
	struct exp_sink base;
	char path[EXP_PATH_MAX];
	int fd;
	dev_t dev;
	ino_t ino;
	struct sbuf line;
};

static int file_open(struct file_sink *f, char *err, size_t errcap)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (exp_mkdir_parents(f->path, 0700) < 0) {
		snprintf(err, errcap, "cannot create the directory of %s: %s", f->path, strerror(errno));
		return -1;
	}
	f->fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	struct stat st;
	if (f->fd < 0 || fstat(f->fd, &st) < 0) {
		snprintf(err, errcap, "cannot open %s: %s", f->path, strerror(errno));
		return -1;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	return 0;
}

static bool still_same_file(const struct file_sink *f)
{
	struct stat st;
	return f->fd >= 0 && stat(f->path, &st) == 0 && st.st_dev == f->dev && st.st_ino == f->ino;
}

/* One write() in the normal case; loops only if the kernel writes less. */
static int write_line(struct file_sink *f, char *err, size_t errcap)
{
	struct stat st;
	off_t before = fstat(f->fd, &st) == 0 ? st.st_size : -1;
	size_t off = 0;
	while (off < f->line.len) {
		ssize_t n = write(f->fd, f->line.p + off, f->line.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			const char *why = n < 0 ? strerror(errno) : "short write";
			exp_fmt(err, errcap, "write %s: %s", f->path, why);
			/* Cut our half line back off, unless someone else appended meanwhile. */
			if (before >= 0 && fstat(f->fd, &st) == 0 && st.st_size == before + (off_t)off)
				(void)!ftruncate(f->fd, before);
			return -1;
		}
		off += (size_t)n;
	}
	return 0;
}

static struct exp_deliver_result file_deliver(struct exp_sink *s, const struct exp_batch *b)
{
	struct file_sink *f = (struct file_sink *)s;
	struct exp_deliver_result r = {.kind = EXP_DELIVER_PERMANENT};
	sbuf_reset(&f->line);
	if (!exp_json_encode(&f->line, b)) {
		snprintf(r.error, sizeof r.error, "out of memory encoding OTLP/JSON");
		return r;
	}
	sbuf_putc(&f->line, '\n');
	if (f->line.oom) {
		snprintf(r.error, sizeof r.error, "out of memory encoding OTLP/JSON");
		return r;
	}
	if (!still_same_file(f) && file_open(f, r.error, sizeof r.error) < 0)
		return r;
	if (write_line(f, r.error, sizeof r.error) < 0)
		return r;
	r.kind = EXP_DELIVER_OK;
	return r;
}

static void file_destroy(struct exp_sink *s)
{
	struct file_sink *f = (struct file_sink *)s;
	if (f->fd >= 0)
		close(f->fd);
	sbuf_free(&f->line);
	free(f);
}

struct exp_sink *exp_file_sink_open(const char *path, char *err, size_t errcap)
{
	struct file_sink *f = calloc(1, sizeof *f);
	if (!f) {
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	f->base = (struct exp_sink){.name = "file", .deliver = file_deliver, .destroy = file_destroy};
	f->fd = -1;
	snprintf(f->path, sizeof f->path, "%s", path);
	sbuf_init(&f->line);
	if (file_open(f, err, errcap) < 0) {
		file_destroy(&f->base);
		return NULL;
	}
	return &f->base;
}
