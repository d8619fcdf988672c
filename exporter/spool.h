/* spool.h — the on-disk spool of OTLP batches the backend has not taken yet.
 *
 * One file per batch: the serialized ExportTraceServiceRequest exactly as it
 * would be POSTed (uncompressed, so `protoc --decode` reads it), named
 *
 *     SSSSSSSSSSSSSSSSSSSS-N-CCCCCCCC.pb
 *
 * S = sequence number (20 decimal digits, so names sort in delivery order),
 * N = spans in the batch, C = CRC-32 of the content (lowercase hex). A file is
 * written as `.tmp-S.pb`, fsynced, renamed into place, and the directory
 * fsynced: a file with a final name is always complete. Files whose name does
 * not have this form are never touched (the directory may be shared by
 * mistake); a file with this form whose size, CRC or protobuf does not check
 * out is counted (spool_corrupt_files) and deleted.
 *
 * The directory is created 0700 and must belong to us and not be writable by
 * others; `<dir>/.lock` (flock) keeps two exporters from replaying the same
 * files. Not thread-safe: delivery.c serialises every call with its lock. */
#ifndef TRACESHIM_EXP_SPOOL_H
#define TRACESHIM_EXP_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sbuf.h"

struct exp_spool_entry {
	uint64_t seq;
	uint32_t n_spans;
	uint32_t crc;
	uint64_t bytes;
};

struct exp_spool {
	char dir[EXP_PATH_MAX];
	int dir_fd, lock_fd;
	uint64_t max_bytes;
	struct exp_spool_entry *e; /* sorted by seq */
	size_t n, cap;
	uint64_t bytes, spans;
	uint64_t max_seq;       /* highest sequence number ever seen here */
	uint64_t protected_seq; /* being sent: never evicted (0: none) */
};

/* Creates/checks the directory, takes its lock, indexes the batches already
 * there (removing leftover temporary files). -1 with a reason in err. */
int exp_spool_open(struct exp_spool *sp, const char *dir, uint64_t max_bytes, char *err, size_t errcap);
void exp_spool_close(struct exp_spool *sp);

/* Writes one batch. First makes room by deleting the oldest batches (except
 * protected_seq) until it fits under max_bytes; their spans are added to
 * *evicted_spans. A batch bigger than max_bytes on its own is not written and
 * counts as evicted. 0, or -1 with a reason in err (nothing written). */
int exp_spool_put(struct exp_spool *sp, uint64_t seq, uint32_t n_spans, const void *data, size_t len,
		  uint64_t *evicted_spans, char *err, size_t errcap);

/* The oldest batch, or NULL when the spool is empty. */
const struct exp_spool_entry *exp_spool_oldest(const struct exp_spool *sp);

/* Reads a batch (by value: the index may change meanwhile, the file not,
 * as long as it is protected) into out and checks size, CRC and that it
 * decodes as an ExportTraceServiceRequest of n_spans spans. -1 with a reason
 * in why when it does not: the caller removes it as corrupt. */
int exp_spool_read(const struct exp_spool *sp, struct exp_spool_entry e, struct sbuf *out, char *why,
		   size_t cap);

/* Deletes a batch's file and forgets it (no-op if unknown). */
void exp_spool_remove(struct exp_spool *sp, uint64_t seq);

/* Pure helpers, unit-tested. */
void exp_spool_name(char *out, size_t cap, const struct exp_spool_entry *e);
bool exp_spool_parse_name(const char *name, struct exp_spool_entry *e);
uint32_t exp_crc32(const void *data, size_t len);

#endif
