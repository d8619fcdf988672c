/* test_spool.c — the on-disk spool: names, atomic files, order, the size
 * bound (oldest dropped, the batch in flight never), a restart reading what
 * the previous run left, leftovers and corrupt files, foreign files left
 * alone, directory checks and the lock. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "pb.h"
#include "spanbuild.h"
#include "spool.h"
#include "stats.h"

static char dir[128], sdir[192];
static struct exp_spool sp;
static struct sbuf body;
static char err[512];

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/tsspool-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sdir, sizeof sdir, "%s/a/spool", dir);
	sbuf_init(&body);
	memset(&exp_stats, 0, sizeof exp_stats);
	sp = (struct exp_spool){.dir_fd = -1, .lock_fd = -1};
}

static void teardown(void)
{
	exp_spool_close(&sp);
	sbuf_free(&body);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	(void)!system(cmd);
}

TestSuite(spool, .init = setup, .fini = teardown);

/* A real encoded request of n spans (the spool checks that it decodes). */
static void encode(size_t n, uint8_t seed)
{
	struct exp_resource *res = exp_resource_unknown();
	struct exp_span *head = NULL, **tail = &head;
	static uint8_t rec[TS_SPAN_RECORD_MAX];
	for (size_t i = 0; i < n; i++) {
		struct tb_span s;
		tb_span_init(&s, "spooled", (uint8_t)(seed + i), 0);
		size_t len = tb_span_record(rec, sizeof rec, &s);
		*tail = exp_span_new(res, rec, (uint16_t)len);
		tail = &(*tail)->next;
	}
	struct exp_batch b;
	cr_assert_eq(exp_batch_build(&b, head, n), 0);
	sbuf_reset(&body);
	cr_assert(exp_pb_encode(&body, &b));
	exp_batch_free(&b);
	exp_resource_unref(res);
}

static void put(uint64_t seq, size_t n, uint64_t *evicted)
{
	encode(n, (uint8_t)seq);
	cr_assert_eq(exp_spool_put(&sp, seq, (uint32_t)n, body.p, body.len, evicted, err, sizeof err), 0, "%s",
		     err);
}

static int count_files(const char *d, const char *prefix)
{
	DIR *dd = opendir(d);
	int n = 0;
	for (struct dirent *de; dd && (de = readdir(dd));)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	if (dd)
		closedir(dd);
	return n;
}

Test(spool, names_round_trip_and_strangers_are_not_ours)
{
	struct exp_spool_entry e = {.seq = 42, .n_spans = 512, .crc = 0xdeadbeef}, f;
	char name[80];
	exp_spool_name(name, sizeof name, &e);
	cr_assert_str_eq(name, "00000000000000000042-512-deadbeef.pb");
	cr_assert(exp_spool_parse_name(name, &f));
	cr_assert_eq(f.seq, 42);
	cr_assert_eq(f.n_spans, 512);
	cr_assert_eq(f.crc, 0xdeadbeef);
	const char *bad[] = {"README", "00000000000000000042-512-deadbeef.pb.corrupt",
			     "0000000000000000042-512-deadbeef.pb", "00000000000000000042-512-DEADBEEF.pb",
			     "00000000000000000042--deadbeef.pb", "00000000000000000042-0-deadbeef.pb",
			     "00000000000000000000-5-deadbeef.pb", "00000000000000000042-5-deadbee.pb",
			     "99999999999999999999-5-deadbeef.pb", ".tmp-42.pb", "00000000000000000042-5x-deadbeef.pb"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_not(exp_spool_parse_name(bad[i], &f), "%s", bad[i]);
}

Test(spool, batches_come_back_in_order_after_a_restart)
{
	uint64_t ev = 0;
	cr_assert_eq(exp_spool_open(&sp, sdir, 1 << 20, err, sizeof err), 0, "%s", err);
	struct stat st;
	cr_assert_eq(stat(sdir, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	put(3, 2, &ev);
	put(1, 5, &ev); /* a batch put back after a failed attempt: older than 3 */
	put(7, 1, &ev);
	cr_assert_eq(ev, 0);
	cr_assert_eq(sp.n, 3);
	cr_assert_eq(STAT_GET(spooled_spans), 8);
	cr_assert_eq(count_files(sdir, ".tmp-"), 0, "no temporary file left");
	exp_spool_close(&sp);

	cr_assert_eq(exp_spool_open(&sp, sdir, 1 << 20, err, sizeof err), 0, "%s", err);
	cr_assert_eq(sp.n, 3);
	cr_assert_eq(sp.max_seq, 7);
	uint64_t want[] = {1, 3, 7};
	uint32_t spans[] = {5, 2, 1};
	for (int i = 0; i < 3; i++) {
		const struct exp_spool_entry *e = exp_spool_oldest(&sp);
		cr_assert_not_null(e);
		cr_assert_eq(e->seq, want[i]);
		char why[256];
		cr_assert_eq(exp_spool_read(&sp, *e, &body, why, sizeof why), 0, "%s", why);
		encode(spans[i], (uint8_t)want[i]);
		struct sbuf again;
		sbuf_init(&again);
		cr_assert_eq(exp_spool_read(&sp, *e, &again, why, sizeof why), 0, "%s", why);
		cr_assert_eq(again.len, body.len);
		cr_assert_eq(memcmp(again.p, body.p, body.len), 0, "the bytes that were written");
		sbuf_free(&again);
		exp_spool_remove(&sp, e->seq);
	}
	cr_assert_null(exp_spool_oldest(&sp));
	cr_assert_eq(count_files(sdir, "0"), 0);
	cr_assert_eq(STAT_GET(spooled_spans), 0);
}

Test(spool, over_the_bound_the_oldest_go_but_never_the_one_in_flight)
{
	uint64_t ev = 0;
	encode(3, 0);
	size_t one = body.len;
	cr_assert_eq(exp_spool_open(&sp, sdir, 3 * one + one / 2, err, sizeof err), 0, "%s", err);
	put(1, 3, &ev);
	put(2, 3, &ev);
	put(3, 3, &ev);
	cr_assert_eq(ev, 0);
	sp.protected_seq = 1; /* being sent */
	put(4, 3, &ev);
	cr_assert_eq(ev, 3, "one batch of 3 spans dropped");
	cr_assert_eq(sp.n, 3);
	cr_assert_eq(sp.e[0].seq, 1, "the batch in flight stays");
	cr_assert_eq(sp.e[1].seq, 3);
	cr_assert_eq(sp.e[2].seq, 4);
	sp.protected_seq = 0;
	put(5, 3, &ev);
	cr_assert_eq(ev, 6);
	cr_assert_eq(sp.e[0].seq, 3);
	cr_assert_leq(sp.bytes, sp.max_bytes);
	cr_assert_eq(count_files(sdir, "0"), 3);
	/* A batch bigger than the whole bound is not written at all. */
	encode(40, 9);
	cr_assert_gt(body.len, sp.max_bytes);
	cr_assert_eq(exp_spool_put(&sp, 9, 40, body.p, body.len, &ev, err, sizeof err), 0);
	cr_assert_eq(ev, 46);
	cr_assert_eq(sp.n, 3);
}

static void write_file(const char *name, const void *p, size_t n)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", sdir, name);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	fwrite(p, 1, n, f);
	fclose(f);
}

Test(spool, leftovers_removed_corrupt_files_detected_foreign_files_untouched)
{
	uint64_t ev = 0;
	cr_assert_eq(exp_spool_open(&sp, sdir, 1 << 20, err, sizeof err), 0, "%s", err);
	put(1, 2, &ev);
	put(2, 2, &ev);
	exp_spool_close(&sp);
	write_file(".tmp-3.pb", "half a batch", 12);
	write_file("notes.txt", "mine", 4);
	write_file("00000000000000000004-2-00000000.pb", "garbage that is not protobuf", 28);
	write_file("00000000000000000005-1-00000000.pb", "", 0);
	/* truncate batch 2: its CRC no longer matches */
	char name[256], path[512];
	struct exp_spool_entry e2 = {0};
	DIR *d = opendir(sdir);
	for (struct dirent *de; (de = readdir(d));)
		if (exp_spool_parse_name(de->d_name, &e2) && e2.seq == 2)
			snprintf(name, sizeof name, "%s", de->d_name);
	closedir(d);
	snprintf(path, sizeof path, "%s/%.80s", sdir, name);
	cr_assert_eq(truncate(path, 10), 0);

	cr_assert_eq(exp_spool_open(&sp, sdir, 1 << 20, err, sizeof err), 0, "%s", err);
	cr_assert_eq(count_files(sdir, ".tmp-"), 0, "a crash's leftover is removed");
	cr_assert_eq(sp.n, 4);
	cr_assert_eq(sp.max_seq, 5);
	char why[256];
	int good = 0, bad = 0;
	while (exp_spool_oldest(&sp)) {
		struct exp_spool_entry e = *exp_spool_oldest(&sp);
		if (exp_spool_read(&sp, e, &body, why, sizeof why) == 0)
			good++;
		else
			bad++;
		exp_spool_remove(&sp, e.seq);
	}
	cr_assert_eq(good, 1);
	cr_assert_eq(bad, 3, "truncated, garbage and empty batches are caught");
	snprintf(path, sizeof path, "%s/notes.txt", sdir);
	cr_assert_eq(access(path, F_OK), 0, "a file that is not a spool file is left alone");
}

Test(spool, refuses_a_directory_others_can_write_and_a_second_user)
{
	cr_assert_eq(exp_spool_open(&sp, sdir, 1 << 20, err, sizeof err), 0, "%s", err);
	struct exp_spool other = {.dir_fd = -1, .lock_fd = -1};
	cr_assert_eq(exp_spool_open(&other, sdir, 1 << 20, err, sizeof err), -1);
	cr_assert_not_null(strstr(err, "in use by another exporter"), "%s", err);
	exp_spool_close(&sp);
	chmod(sdir, 0777);
	cr_assert_eq(exp_spool_open(&sp, sdir, 1 << 20, err, sizeof err), -1);
	cr_assert_not_null(strstr(err, "writable by others"), "%s", err);
	chmod(sdir, 0700);
	if (geteuid() == 0) {
		cr_assert_eq(chown(sdir, 65534, 65534), 0);
		cr_assert_eq(exp_spool_open(&sp, sdir, 1 << 20, err, sizeof err), -1);
		cr_assert_not_null(strstr(err, "belongs to uid 65534"), "%s", err);
	}
}

Test(spool, crc32_is_the_standard_one)
{
	cr_assert_eq(exp_crc32("123456789", 9), 0xCBF43926u);
	cr_assert_eq(exp_crc32("", 0), 0);
}
