/* creds.c — the uid/gid/supplementary-group family. The exporter checks a
 * process's credentials when it connects (SO_PEERCRED records them then); a
 * process that changes them later (nginx's worker: root -> nobody; apt's
 * methods: root -> _apt) could never connect again. So before the change it
 * connects, and says HELLO with its ring, while it still has the credentials
 * it started with: it keeps the channel it was entitled to, and nothing more
 * (docs/ARCHITECTURE.md §7, "Processes that change their credentials").
 * glibc's initgroups calls its internal setgroups, not the PLT one: both
 * are hooked. setfsuid/setfsgid change no SO_PEERCRED field, but connect()
 * checks the socket file's permissions with the filesystem ids. */
#include <grp.h>
#include <sys/fsuid.h>
#include <unistd.h>

#include "shim.h"

TS_REAL(setuid, int, (uid_t))
TS_REAL(seteuid, int, (uid_t))
TS_REAL(setreuid, int, (uid_t, uid_t))
TS_REAL(setresuid, int, (uid_t, uid_t, uid_t))
TS_REAL(setgid, int, (gid_t))
TS_REAL(setegid, int, (gid_t))
TS_REAL(setregid, int, (gid_t, gid_t))
TS_REAL(setresgid, int, (gid_t, gid_t, gid_t))
TS_REAL(setgroups, int, (size_t, const gid_t *))
TS_REAL(initgroups, int, (const char *, gid_t))
TS_REAL(setfsuid, int, (uid_t))
TS_REAL(setfsgid, int, (gid_t))

/* A vfork child (python's subprocess with user=) shares our memory: it
 * leaves the parent's connection alone, and the image it execs connects with
 * its own credentials. */
static void before_cred_change(void)
{
	if (ts_tracing() && !ts_foreign_child())
		ts_transport_keep_channel();
}

TS_EXPORT int setuid(uid_t uid)
{
	before_cred_change();
	return real_setuid()(uid);
}

TS_EXPORT int seteuid(uid_t euid)
{
	before_cred_change();
	return real_seteuid()(euid);
}

TS_EXPORT int setreuid(uid_t ruid, uid_t euid)
{
	before_cred_change();
	return real_setreuid()(ruid, euid);
}

TS_EXPORT int setresuid(uid_t ruid, uid_t euid, uid_t suid)
{
	before_cred_change();
	return real_setresuid()(ruid, euid, suid);
}

TS_EXPORT int setgid(gid_t gid)
{
	before_cred_change();
	return real_setgid()(gid);
}

TS_EXPORT int setegid(gid_t egid)
{
	before_cred_change();
	return real_setegid()(egid);
}

TS_EXPORT int setregid(gid_t rgid, gid_t egid)
{
	before_cred_change();
	return real_setregid()(rgid, egid);
}

TS_EXPORT int setresgid(gid_t rgid, gid_t egid, gid_t sgid)
{
	before_cred_change();
	return real_setresgid()(rgid, egid, sgid);
}

TS_EXPORT int setgroups(size_t n, const gid_t *groups)
{
	before_cred_change();
	return real_setgroups()(n, groups);
}

TS_EXPORT int initgroups(const char *user, gid_t group)
{
	before_cred_change();
	return real_initgroups()(user, group);
}

TS_EXPORT int setfsuid(uid_t fsuid)
{
	before_cred_change();
	return real_setfsuid()(fsuid);
}

TS_EXPORT int setfsgid(gid_t fsgid)
{
	before_cred_change();
	return real_setfsgid()(fsgid);
}
