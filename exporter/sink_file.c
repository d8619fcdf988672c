/* sink_file.c — OTLP/JSON lines, one ExportTraceServiceRequest per line.
 * Each line goes out in a single write() on an O_APPEND descriptor, so two
 * writers never interleave and a reader only ever sees whole lines (a
 * failed, partial write is cut back off). The file is reopened when it has
 * been moved or deleted (log rotation, `rm`), as most log writers do.
 *
 * Bounded (TRACESHIM_FILE_MAX_BYTES, default 256 MiB): a line that would
 * take the file past the bound first renames it to <file>.1 (replacing the
 * previous one) and starts a new file, so the sink never holds more than
 * about twice the bound on disk — a traced busy server must not fill the
 * disk, nor the page cache, with a trace file nobody rotates. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "json.h"
#include "log.h"
#include "sink.h"
#include "stats.h"

struct file_sink {
	struct exp_sink base;
	char path[EXP_PATH_MAX];
	char old_path[EXP_PATH_MAX + 2]; /* <path>.1 */
	uint64_t max_bytes;              /* 0: unbounded */
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

/* Closes the replaced <path>.1 on a thread of its own. Dropping the last
 * reference to a file frees its page cache there and then: 46-76 ms for 256
 * MiB on the benchmark machine, which the export thread must not spend
 * while the processes' rings fill behind it (a 512 KiB ring holds ~13 ms of
 * a busy nginx's spans). */
static void *reap(void *arg)
{
	close((int)(intptr_t)arg);
	return NULL;
}

static void reap_later(int fd)
{
	pthread_attr_t a;
	pthread_t t;
	sigset_t all, old;
	bool started = false;
	if (pthread_attr_init(&a) == 0) {
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		sigfillset(&all); /* signals stay with the threads that handle them */
		pthread_sigmask(SIG_SETMASK, &all, &old);
		started = pthread_create(&t, &a, reap, (void *)(intptr_t)fd) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&a);
	}
	if (!started)
		close(fd);
}

/* The file is full: it becomes <path>.1 and a new one is started. Another
 * exporter appending to the same file notices the rename (still_same_file)
 * and follows. A line bigger than the bound still goes into a fresh file.
 * The previous .1 is held open across its unlink so that freeing it happens
 * in reap_later, not here. */
static int rotate(struct file_sink *f, char *err, size_t errcap)
{
	int old = open(f->old_path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	/* Unlinked first, not replaced by the rename: ext4 (auto_da_alloc)
	 * flushes a file renamed over another one, and the rename then took
	 * 60 ms with the file's dirty pages. */
	if (unlink(f->old_path) < 0 && errno != ENOENT)
		log_debug("unlink %s: %s", f->old_path, strerror(errno));
	if (rename(f->path, f->old_path) < 0 && errno != ENOENT) {
		exp_fmt(err, errcap, "rename %s to %s: %s", f->path, f->old_path, strerror(errno));
		if (old >= 0)
			close(old);
		return -1;
	}
	if (old >= 0)
		reap_later(old);
	STAT_ADD(file_rotations, 1);
	log_info("%s reached %llu bytes: moved to %s", f->path, (unsigned long long)f->max_bytes,
		 f->old_path);
	return file_open(f, err, errcap);
}

/* One write() in the normal case; loops only if the kernel writes less. */
static int write_line(struct file_sink *f, char *err, size_t errcap)
{
	struct stat st;
	off_t before = fstat(f->fd, &st) == 0 ? st.st_size : -1;
	if (f->max_bytes && before > 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)before + f->line.len > f->max_bytes) {
		if (rotate(f, err, errcap) < 0)
			return -1;
		before = fstat(f->fd, &st) == 0 ? st.st_size : -1;
	}
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

struct exp_sink *exp_file_sink_open(const char *path, uint64_t max_bytes, char *err, size_t errcap)
{
	struct file_sink *f = calloc(1, sizeof *f);
	if (!f) {
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	f->base = (struct exp_sink){.name = "file", .deliver = file_deliver, .destroy = file_destroy};
	f->fd = -1;
	snprintf(f->path, sizeof f->path, "%s", path);
	snprintf(f->old_path, sizeof f->old_path, "%s.1", f->path);
	f->max_bytes = max_bytes;
	sbuf_init(&f->line);
	if (file_open(f, err, errcap) < 0) {
		file_destroy(&f->base);
		return NULL;
	}
	return &f->base;
}
