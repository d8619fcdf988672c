/* stack.c — code.stacktrace: the application's call site of an error span
 * (TRACESHIM_STACKTRACES=errors, the default) or of every span (=all).
 *
 * libunwind is dlopen'ed (RTLD_LOCAL) the first time a stack is wanted, never
 * linked: linking would load it and liblzma into every traced process, and
 * would put its _Unwind_RaiseException/_Unwind_Resume/backtrace ahead of
 * libgcc_s and glibc in the global scope, so every C++ exception of the
 * application would unwind through it (docs/ARCHITECTURE.md §9, measurements).
 * Without libunwind, glibc's backtrace() (libgcc's unwinder) gives the frames.
 *
 * Frames inside libtraceshim.so and libunwind are dropped. Symbol names come
 * from dladdr() (the dynamic symbol table, size-checked), else from
 * libunwind's unw_get_proc_name, which also reads .symtab when the file has
 * one — accepted only when it is not a nearest-preceding exported symbol that
 * dladdr already found not to cover the address. One line per frame:
 *   "  at Curl_connect+0x4f (/usr/lib/x86_64-linux-gnu/libcurl.so.4)"
 *   "  at 0x1a2b3 (/usr/lib/x86_64-linux-gnu/libcurl.so.4)"   (offset in the file's mapping)
 * at most MAX_FRAMES frames, cut at a frame boundary to fit the span's
 * attribute space. The cost is bounded: at most RATE_PER_SEC stacks per
 * second per process; spans past that carry none. */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "shim.h"

#if TS_HAVE_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#define STR2(x) #x
#define STR(x) STR2(x)
#endif

#define MAX_FRAMES 32
#define TEXT_MAX 1400
#define RATE_PER_SEC 100
#define ATTR_RESERVE 96 /* left for attributes added after the stack (thread.id, ...) */

static const char KEY[] = "code.stacktrace";

struct range {
	uintptr_t lo, hi;
};

static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int loaded; /* 0: not yet, 1: done (libunwind or not) */
static struct range self_range, unw_range;
static char exe_path[512];

#if TS_HAVE_LIBUNWIND
static struct {
	int (*getcontext)(unw_context_t *);
	int (*init_local)(unw_cursor_t *, unw_context_t *);
	int (*step)(unw_cursor_t *);
	int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
	int (*get_proc_name)(unw_cursor_t *, char *, size_t, unw_word_t *);
} unw;
#endif

/* ---- where objects are --------------------------------------------------------- */

struct find {
	uintptr_t probe;
	struct range r;
};

static int find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct find *f = arg;
	struct range r = {UINTPTR_MAX, 0};
	bool hit = false;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		hit |= f->probe >= lo && f->probe < hi;
		r.lo = lo < r.lo ? lo : r.lo;
		r.hi = hi > r.hi ? hi : r.hi;
	}
	if (!hit)
		return 0;
	f->r = r;
	return 1;
}

/* The address range of the object that contains `probe`. */
static struct range object_range(const void *probe)
{
	struct find f = {.probe = (uintptr_t)probe};
	dl_iterate_phdr(find_cb, &f);
	return f.r;
}

static bool in(const struct range *r, uintptr_t ip) { return ip >= r->lo && ip < r->hi; }

#if TS_HAVE_LIBUNWIND
static bool bind(void *h, const char *name, void *fnptr, size_t size)
{
	void *p = dlsym(h, name);
	if (p)
		memcpy(fnptr, &p, size);
	return p != NULL;
}

static void load_libunwind(void)
{
	void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		ts_debug("no libunwind (%s): stacks from backtrace()", dlerror());
		return;
	}
	/* unw_getcontext is a function-like macro: name its target */
	bool ok = bind(h, STR(unw_tdep_getcontext), &unw.getcontext, sizeof unw.getcontext) &&
		  bind(h, STR(unw_init_local), &unw.init_local, sizeof unw.init_local) &&
		  bind(h, STR(unw_step), &unw.step, sizeof unw.step) &&
		  bind(h, STR(unw_get_reg), &unw.get_reg, sizeof unw.get_reg) &&
		  bind(h, STR(unw_get_proc_name), &unw.get_proc_name, sizeof unw.get_proc_name);
	/* Per-thread caches: the global cache takes a lock (and masks signals,
	 * two syscalls) on every step. */
	int (*set_policy)(unw_addr_space_t, unw_caching_policy_t) = NULL;
	unw_addr_space_t *as = dlsym(h, STR(unw_local_addr_space));
	if (ok && as && bind(h, STR(unw_set_caching_policy), &set_policy, sizeof set_policy))
		set_policy(*as, UNW_CACHE_PER_THREAD);
	if (!ok) {
		ts_debug("libunwind lacks a symbol we need: stacks from backtrace()");
		memset(&unw, 0, sizeof unw);
		return;
	}
	void *probe = dlsym(h, STR(unw_step));
	unw_range = object_range(probe);
}
#endif

/* Both mutexes of this file are only ever tried: a fork child may inherit
 * them locked by a thread that does not exist there. A stack taken meanwhile
 * uses backtrace() or shows offsets instead of names. */
static void load_once(void)
{
	if (pthread_mutex_trylock(&load_mu) != 0)
		return;
	if (!atomic_load(&loaded)) {
		self_range = object_range(&self_range);
		ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
		exe_path[n > 0 ? n : 0] = 0;
#if TS_HAVE_LIBUNWIND
		load_libunwind();
#endif
		atomic_store(&loaded, 1);
	}
	pthread_mutex_unlock(&load_mu);
}

/* ---- one frame as text ------------------------------------------------------------ */

struct text {
	char *buf;
	size_t len, cap;
	unsigned frames;
	bool full;
};

static void put_line(struct text *t, const char *line, int n)
{
	if (t->full || n <= 0)
		return;
	size_t need = (size_t)n + (t->len ? 1 : 0);
	if (t->len + need > t->cap) {
		t->full = true;
		return;
	}
	if (t->len)
		t->buf[t->len++] = '\n';
	memcpy(t->buf + t->len, line, (size_t)n);
	t->len += (size_t)n;
	t->frames++;
}

/* ---- names from .symtab, cached ---------------------------------------------------- *
 * unw_get_proc_name re-reads /proc/self/maps and maps the whole file on every
 * call (~0.3 ms a frame here). So: objects without a .symtab (stripped
 * distribution libraries) are never asked — one look at the section headers
 * per object and process — and answers are kept per return address. */

#define OBJ_SLOTS 64
#define NAME_SLOTS 128

static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uintptr_t base;
	bool symtab;
} objs[OBJ_SLOTS];
static unsigned n_objs;
static struct {
	uintptr_t ip, off;
	bool found;
	char name[160];
} names[NAME_SLOTS];

static bool file_has_symtab(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ElfW(Ehdr) eh;
	bool found = false;
	if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	    eh.e_shentsize == sizeof(ElfW(Shdr))) {
		ElfW(Shdr) sh[64];
		for (unsigned i = 0; i < eh.e_shnum && i < 4096 && !found;) {
			unsigned k = eh.e_shnum - i < 64 ? eh.e_shnum - i : 64;
			ssize_t n = pread(fd, sh, k * sizeof *sh, (off_t)(eh.e_shoff + i * sizeof *sh));
			if (n != (ssize_t)(k * sizeof *sh))
				break;
			for (unsigned j = 0; j < k; j++)
				found |= sh[j].sh_type == SHT_SYMTAB;
			i += k;
		}
	}
	close(fd);
	return found;
}

/* Caller holds names_mu. */
static bool object_has_symtab(uintptr_t base, const char *path)
{
	for (unsigned i = 0; i < n_objs; i++)
		if (objs[i].base == base)
			return objs[i].symtab;
	bool has = file_has_symtab(path);
	if (n_objs < OBJ_SLOTS) {
		objs[n_objs].base = base;
		objs[n_objs++].symtab = has;
	}
	return has;
}

/* libunwind's name for the frame, unless it is merely the closest exported
 * symbol below ip (libunwind does not check symbol sizes; dladdr does). */
static bool unw_lookup(void *cursor, uintptr_t ip, char *name, size_t cap, uintptr_t *off)
{
#if TS_HAVE_LIBUNWIND
	unw_word_t o = 0;
	if (!cursor || !unw.get_proc_name || unw.get_proc_name(cursor, name, cap, &o) != 0 || !name[0])
		return false;
	Dl_info start;
	if (dladdr((void *)(ip - (uintptr_t)o), &start) && start.dli_sname &&
	    (uintptr_t)start.dli_saddr == ip - (uintptr_t)o)
		return false;
	*off = (uintptr_t)o;
	return true;
#else
	(void)cursor, (void)ip, (void)name, (void)cap, (void)off;
	return false;
#endif
}

static bool unw_name(void *cursor, uintptr_t ip, const Dl_info *di, const char *obj, char *name, size_t cap,
		     uintptr_t *off)
{
	if (!cursor)
		return false;
	unsigned slot = (unsigned)((ip >> 2) ^ (ip >> 12)) % NAME_SLOTS;
	bool found;
	if (pthread_mutex_trylock(&names_mu) != 0)
		return false;
	if (names[slot].ip == ip) {
		found = names[slot].found;
		snprintf(name, cap, "%s", names[slot].name);
		*off = names[slot].off;
	} else {
		found = object_has_symtab((uintptr_t)di->dli_fbase, obj) && unw_lookup(cursor, ip, name, cap, off);
		names[slot].ip = ip;
		names[slot].found = found;
		names[slot].off = found ? *off : 0;
		snprintf(names[slot].name, sizeof names[slot].name, "%s", found ? name : "");
	}
	pthread_mutex_unlock(&names_mu);
	return found;
}

/* ip is a return address (the caller's next instruction): look up ip - 1, so
 * a call that ends a function is not named after the next one. */
static void frame_line(struct text *t, uintptr_t ip, void *cursor)
{
	char line[400], name[160];
	int n;
	Dl_info di;
	if (!dladdr((void *)(ip - 1), &di) || !di.dli_fbase) {
		n = snprintf(line, sizeof line, "  at 0x%lx (?)", (unsigned long)ip);
		put_line(t, line, n < (int)sizeof line ? n : (int)sizeof line - 1);
		return;
	}
	const char *obj = (di.dli_fname && di.dli_fname[0] == '/') ? di.dli_fname : exe_path;
	uintptr_t off;
	if (di.dli_sname && di.dli_saddr)
		n = snprintf(line, sizeof line, "  at %.160s+0x%lx (%.200s)", di.dli_sname,
			     (unsigned long)(ip - (uintptr_t)di.dli_saddr), obj);
	else if (unw_name(cursor, ip, &di, obj, name, sizeof name, &off))
		n = snprintf(line, sizeof line, "  at %s+0x%lx (%.200s)", name, (unsigned long)off, obj);
	else
		n = snprintf(line, sizeof line, "  at 0x%lx (%.200s)", (unsigned long)(ip - (uintptr_t)di.dli_fbase),
			     obj);
	put_line(t, line, n < (int)sizeof line ? n : (int)sizeof line - 1);
}

static bool ours(uintptr_t ip) { return in(&self_range, ip) || in(&unw_range, ip); }

/* ---- walking ---------------------------------------------------------------------- */

#if TS_HAVE_LIBUNWIND
static bool walk_libunwind(struct text *t)
{
	if (!unw.getcontext)
		return false;
	unw_context_t uc;
	unw_cursor_t cur;
	if (unw.getcontext(&uc) != 0 || unw.init_local(&cur, &uc) != 0)
		return false;
	for (unsigned seen = 0; seen < 128 && t->frames < MAX_FRAMES && !t->full; seen++) {
		unw_word_t ip = 0;
		if (unw.get_reg(&cur, UNW_REG_IP, &ip) != 0 || !ip)
			break;
		if (!ours((uintptr_t)ip))
			frame_line(t, (uintptr_t)ip, &cur);
		if (unw.step(&cur) <= 0)
			break;
	}
	return true;
}
#endif

static void walk_backtrace(struct text *t)
{
	void *ips[MAX_FRAMES + 16];
	int n = backtrace(ips, (int)(sizeof ips / sizeof *ips));
	for (int i = 0; i < n && t->frames < MAX_FRAMES && !t->full; i++)
		if (!ours((uintptr_t)ips[i]))
			frame_line(t, (uintptr_t)ips[i], NULL);
}

/* ---- the attribute ------------------------------------------------------------------- */

static bool has_stack(const struct ts_span *s)
{
	struct ts_rbuf r;
	ts_rbuf_init(&r, s->attrs, s->attr_len);
	for (unsigned i = 0; i < s->n_attrs; i++) {
		struct ts_attr a;
		if (!ts_get_attr(&r, &a))
			return false;
		if (a.key.len == sizeof KEY - 1 && !memcmp(a.key.ptr, KEY, sizeof KEY - 1))
			return true;
	}
	return false;
}

/* At most RATE_PER_SEC stacks in any one-second window, by the span's start
 * time (no clock read). */
static bool rate_ok(uint64_t now)
{
	static _Atomic uint64_t window;
	static _Atomic uint32_t used;
	uint64_t w = now / 1000000000ull;
	uint64_t cur = atomic_load_explicit(&window, memory_order_relaxed);
	if (w != cur && atomic_compare_exchange_strong(&window, &cur, w))
		atomic_store(&used, 0);
	return atomic_fetch_add_explicit(&used, 1, memory_order_relaxed) < RATE_PER_SEC;
}

void ts_span_stack(struct ts_span *s)
{
	if (ts_cfg.stacktraces == TS_STACK_OFF || !s->recording)
		return;
	/* room in the span: key, type, str16 length, and some attributes after */
	size_t room = sizeof s->attrs - s->attr_len;
	size_t overhead = 1 + (sizeof KEY - 1) + 1 + 2 + ATTR_RESERVE;
	if (room <= overhead + 32 || s->n_attrs + 2 >= TS_MAX_ATTRS || has_stack(s) || !rate_ok(s->start_ns))
		return;
	int saved = errno;
	ts_in_shim++;
	if (TS_UNLIKELY(!atomic_load_explicit(&loaded, memory_order_acquire)))
		load_once();
	char buf[TEXT_MAX];
	struct text t = {.buf = buf, .cap = room - overhead < sizeof buf ? room - overhead : sizeof buf};
	bool done = false;
#if TS_HAVE_LIBUNWIND
	if (atomic_load_explicit(&loaded, memory_order_acquire))
		done = walk_libunwind(&t);
#endif
	if (!done)
		walk_backtrace(&t);
	if (t.len)
		ts_span_attr_strn(s, KEY, buf, t.len);
	ts_in_shim--;
	errno = saved;
}
