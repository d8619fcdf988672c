/* spool.c — see spool.h. */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "fsutil.h"
#include "log.h"
#include "stats.h"
#include "traceshim_otlp.pb-c.h"

#define NAME_MAX_LEN 64

uint32_t exp_crc32(const void *data, size_t len)
{
	uLong crc = crc32(0L, Z_NULL, 0);
	const Bytef *p = data;
	while (len) { /* crc32() takes a uInt length */
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
		crc = crc32(crc, p, n);
		p += n;
		len -= n;
	}
	return (uint32_t)crc;
}

/* ---- names -------------------------------------------------------------- */

void exp_spool_name(char *out, size_t cap, const struct exp_spool_entry *e)
{
	snprintf(out, cap, "%020" PRIu64 "-%" PRIu32 "-%08" PRIx32 ".pb", e->seq, e->n_spans, e->crc);
}

static bool digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n > 0;
}

static bool lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* Exactly the form exp_spool_name writes: anything else is not ours. */
bool exp_spool_parse_name(const char *name, struct exp_spool_entry *e)
{
	size_t len = strlen(name);
	if (len < 20 + 1 + 1 + 1 + 8 + 3 || len > NAME_MAX_LEN || strcmp(name + len - 3, ".pb") != 0)
		return false;
	const char *n = name + 21, *crc = name + len - 3 - 8;
	if (!digits(name, 20) || name[20] != '-' || crc[-1] != '-' || !lower_hex(crc, 8) ||
	    !digits(n, (size_t)(crc - 1 - n)) || crc - 1 - n > 10)
		return false;
	uint64_t seq = 0, spans = 0;
	for (int i = 0; i < 20; i++) {
		uint64_t d = (uint64_t)(name[i] - '0');
		if (seq > (UINT64_MAX - d) / 10)
			return false;
		seq = seq * 10 + d;
	}
	for (const char *p = n; p < crc - 1; p++)
		spans = spans * 10 + (uint64_t)(*p - '0');
	if (seq == 0 || spans == 0 || spans > UINT32_MAX)
		return false;
	e->seq = seq;
	e->n_spans = (uint32_t)spans;
	e->crc = (uint32_t)strtoul(crc, NULL, 16);
	e->bytes = 0;
	return true;
}

/* ---- index -------------------------------------------------------------- */

static void publish(const struct exp_spool *sp)
{
	STAT_SET(spooled_spans, sp->spans);
	STAT_SET(spool_files, sp->n);
	STAT_SET(spool_bytes, sp->bytes);
}

static size_t find_pos(const struct exp_spool *sp, uint64_t seq)
{
	size_t lo = 0, hi = sp->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sp->e[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int index_add(struct exp_spool *sp, const struct exp_spool_entry *e)
{
	if (sp->n == sp->cap) {
		size_t cap = sp->cap ? sp->cap * 2 : 64;
		struct exp_spool_entry *p = realloc(sp->e, cap * sizeof *p);
		if (!p)
			return -1;
		sp->e = p;
		sp->cap = cap;
	}
	size_t pos = find_pos(sp, e->seq);
	memmove(&sp->e[pos + 1], &sp->e[pos], (sp->n - pos) * sizeof *sp->e);
	sp->e[pos] = *e;
	sp->n++;
	sp->bytes += e->bytes;
	sp->spans += e->n_spans;
	if (e->seq > sp->max_seq)
		sp->max_seq = e->seq;
	return 0;
}

static void index_del(struct exp_spool *sp, size_t pos)
{
	sp->bytes -= sp->e[pos].bytes;
	sp->spans -= sp->e[pos].n_spans;
	memmove(&sp->e[pos], &sp->e[pos + 1], (sp->n - pos - 1) * sizeof *sp->e);
	sp->n--;
}

static void unlink_entry(const struct exp_spool *sp, const struct exp_spool_entry *e)
{
	char name[NAME_MAX_LEN + 1];
	exp_spool_name(name, sizeof name, e);
	if (unlinkat(sp->dir_fd, name, 0) < 0 && errno != ENOENT)
		log_warn("spool: cannot delete %s/%s: %s", sp->dir, name, strerror(errno));
}

void exp_spool_remove(struct exp_spool *sp, uint64_t seq)
{
	size_t pos = find_pos(sp, seq);
	if (pos >= sp->n || sp->e[pos].seq != seq)
		return;
	unlink_entry(sp, &sp->e[pos]);
	index_del(sp, pos);
	publish(sp);
}

const struct exp_spool_entry *exp_spool_oldest(const struct exp_spool *sp)
{
	return sp->n ? &sp->e[0] : NULL;
}

/* ---- open --------------------------------------------------------------- */

/* Spans in it go to the backend with our credentials: nobody else may be able
 * to put files there. Readable by others only earns a warning. */
static int check_dir(const char *dir, int fd, char *err, size_t errcap)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errcap, "spool %s is not a directory", dir);
		return -1;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errcap, "spool directory %s belongs to uid %u, not to us", dir, (unsigned)st.st_uid);
		return -1;
	}
	if (st.st_mode & 0022) {
		snprintf(err, errcap, "spool directory %s is writable by others (mode %03o)", dir,
			 (unsigned)(st.st_mode & 0777));
		return -1;
	}
	if (st.st_mode & 0077)
		log_warn("spool directory %s is readable by others (mode %03o): spans hold URLs", dir,
			 (unsigned)(st.st_mode & 0777));
	return 0;
}

static int lock_dir(struct exp_spool *sp, char *err, size_t errcap)
{
	sp->lock_fd = openat(sp->dir_fd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (sp->lock_fd < 0) {
		snprintf(err, errcap, "cannot open %s/.lock: %s", sp->dir, strerror(errno));
		return -1;
	}
	if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errcap, "spool %s is in use by another exporter", sp->dir);
		return -1;
	}
	return 0;
}

static bool is_leftover_tmp(const char *name)
{
	size_t len = strlen(name);
	return len > 8 && len <= NAME_MAX_LEN && strncmp(name, ".tmp-", 5) == 0 &&
	       strcmp(name + len - 3, ".pb") == 0 && digits(name + 5, len - 8);
}

static int scan(struct exp_spool *sp, char *err, size_t errcap)
{
	int fd = dup(sp->dir_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		snprintf(err, errcap, "cannot read spool %s: %s", sp->dir, strerror(errno));
		return -1;
	}
	rewinddir(d);
	struct dirent *de;
	size_t foreign = 0;
	while ((de = readdir(d))) {
		struct exp_spool_entry e;
		struct stat st;
		if (is_leftover_tmp(de->d_name)) { /* a write cut short by a crash */
			unlinkat(sp->dir_fd, de->d_name, 0);
			continue;
		}
		if (!exp_spool_parse_name(de->d_name, &e)) {
			foreign += de->d_name[0] != '.';
			continue;
		}
		if (fstatat(sp->dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) {
			foreign++;
			continue;
		}
		e.bytes = (uint64_t)st.st_size;
		if (index_add(sp, &e) < 0) {
			closedir(d);
			snprintf(err, errcap, "out of memory indexing spool %s", sp->dir);
			return -1;
		}
	}
	closedir(d);
	if (foreign)
		log_info("spool %s: %zu entries that are not spool files were left alone", sp->dir, foreign);
	return 0;
}

int exp_spool_open(struct exp_spool *sp, const char *dir, uint64_t max_bytes, char *err, size_t errcap)
{
	*sp = (struct exp_spool){.dir_fd = -1, .lock_fd = -1, .max_bytes = max_bytes};
	snprintf(sp->dir, sizeof sp->dir, "%s", dir);
	char probe[EXP_PATH_MAX + 4];
	snprintf(probe, sizeof probe, "%s/x", dir); /* exp_mkdir_parents makes the parent of its argument */
	if (exp_mkdir_parents(probe, 0700) < 0) {
		snprintf(err, errcap, "cannot create spool %s: %s", dir, strerror(errno));
		return -1;
	}
	sp->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (sp->dir_fd < 0) {
		snprintf(err, errcap, "cannot open spool %s: %s", dir, strerror(errno));
		return -1;
	}
	if (check_dir(dir, sp->dir_fd, err, errcap) < 0 || lock_dir(sp, err, errcap) < 0 ||
	    scan(sp, err, errcap) < 0) {
		exp_spool_close(sp);
		return -1;
	}
	publish(sp);
	if (sp->n)
		log_info("spool %s: %zu batches (%" PRIu64 " spans, %" PRIu64 " bytes) from before", dir, sp->n,
			 sp->spans, sp->bytes);
	return 0;
}

void exp_spool_close(struct exp_spool *sp)
{
	if (sp->lock_fd >= 0)
		close(sp->lock_fd);
	if (sp->dir_fd >= 0)
		close(sp->dir_fd);
	free(sp->e);
	*sp = (struct exp_spool){.dir_fd = -1, .lock_fd = -1};
}

/* ---- write -------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_file(struct exp_spool *sp, const struct exp_spool_entry *e, const void *data, char *err,
		      size_t errcap)
{
	char tmp[NAME_MAX_LEN + 1], name[NAME_MAX_LEN + 1];
	snprintf(tmp, sizeof tmp, ".tmp-%" PRIu64 ".pb", e->seq);
	exp_spool_name(name, sizeof name, e);
	int fd = openat(sp->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		exp_fmt(err, errcap, "spool: cannot create %s/%s: %s", sp->dir, tmp, strerror(errno));
		return -1;
	}
	if (write_all(fd, data, e->bytes) < 0 || fsync(fd) < 0) {
		exp_fmt(err, errcap, "spool: cannot write %s/%s: %s", sp->dir, tmp, strerror(errno));
		close(fd);
		unlinkat(sp->dir_fd, tmp, 0);
		return -1;
	}
	close(fd);
	if (renameat(sp->dir_fd, tmp, sp->dir_fd, name) < 0) {
		exp_fmt(err, errcap, "spool: cannot rename %s/%s: %s", sp->dir, tmp, strerror(errno));
		unlinkat(sp->dir_fd, tmp, 0);
		return -1;
	}
	fsync(sp->dir_fd); /* the new name survives a power cut too */
	return 0;
}

/* Deletes the oldest unprotected batches until `need` more bytes fit. */
static void make_room(struct exp_spool *sp, uint64_t need, uint64_t *evicted)
{
	size_t pos = 0;
	while (sp->bytes + need > sp->max_bytes && pos < sp->n) {
		if (sp->e[pos].seq == sp->protected_seq) {
			pos++;
			continue;
		}
		*evicted += sp->e[pos].n_spans;
		log_debug("spool full: dropping batch %" PRIu64 " (%" PRIu32 " spans)", sp->e[pos].seq,
			  sp->e[pos].n_spans);
		unlink_entry(sp, &sp->e[pos]);
		index_del(sp, pos);
	}
}

int exp_spool_put(struct exp_spool *sp, uint64_t seq, uint32_t n_spans, const void *data, size_t len,
		  uint64_t *evicted_spans, char *err, size_t errcap)
{
	struct exp_spool_entry e = {.seq = seq, .n_spans = n_spans, .crc = exp_crc32(data, len), .bytes = len};
	if (len > sp->max_bytes) {
		*evicted_spans += n_spans;
		publish(sp);
		return 0;
	}
	make_room(sp, len, evicted_spans);
	int rc = write_file(sp, &e, data, err, errcap);
	if (rc == 0 && index_add(sp, &e) < 0) {
		exp_spool_remove(sp, seq);
		exp_fmt(err, errcap, "spool: out of memory");
		rc = -1;
	}
	publish(sp);
	return rc;
}

/* ---- read --------------------------------------------------------------- */

static bool decodes(const struct sbuf *b, uint32_t n_spans)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req =
		opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
			NULL, b->len, (const uint8_t *)b->p);
	if (!req)
		return false;
	uint64_t n = 0;
	for (size_t i = 0; i < req->n_resource_spans; i++)
		for (size_t j = 0; j < req->resource_spans[i]->n_scope_spans; j++)
			n += req->resource_spans[i]->scope_spans[j]->n_spans;
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req, NULL);
	return n == n_spans;
}

int exp_spool_read(const struct exp_spool *sp, struct exp_spool_entry e, struct sbuf *out, char *why,
		   size_t cap)
{
	char name[NAME_MAX_LEN + 1];
	exp_spool_name(name, sizeof name, &e);
	sbuf_reset(out);
	int fd = openat(sp->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		exp_fmt(why, cap, "%s: %s", name, fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size > EXP_SBUF_MAX / 2 || !sbuf_reserve(out, (size_t)st.st_size)) {
		exp_fmt(why, cap, "%s: %lld bytes, too big", name, (long long)st.st_size);
		close(fd);
		return -1;
	}
	size_t want = (size_t)st.st_size;
	while (out->len < want) {
		ssize_t n = read(fd, out->p + out->len, want - out->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		out->len += (size_t)n;
	}
	close(fd);
	if (out->len != want || want == 0) {
		exp_fmt(why, cap, "%s: short read (%zu of %zu bytes)", name, out->len, want);
		return -1;
	}
	if (exp_crc32(out->p, out->len) != e.crc) {
		exp_fmt(why, cap, "%s: CRC mismatch", name);
		return -1;
	}
	if (!decodes(out, e.n_spans)) {
		exp_fmt(why, cap, "%s: not an ExportTraceServiceRequest of %" PRIu32 " spans", name, e.n_spans);
		return -1;
	}
	return 0;
}
