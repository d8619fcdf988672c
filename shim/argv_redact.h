/* argv_redact.h — secrets out of process.command_args (docs/ARCHITECTURE.md §3).
 *
 * Pure: no allocation, no system call; unit-tested (tests/unit/test_argv_redact.c).
 * Runs once per process image (init, fork child) over its argv. What is
 * replaced by REDACTED, anywhere in an argument (so inside `sh -c '…'` too):
 *   - URL userinfo: `scheme://user:pw@host` → `scheme://REDACTED:REDACTED@host`,
 *     and the signature query values url.full drops (http_url_redact_query);
 *   - `key=value` forms whose key names a credential
 *     (contains password, passwd, secret, token, apikey, api_key, api-key,
 *     access_key, private_key, credential; or ends in pass or pwd; or is pw
 *     or auth), so `--password=x`, `password=x`, `PGPASSWORD=x`, `?token=x`;
 *   - the value of the header lines Authorization, Proxy-Authorization,
 *     Cookie, Set-Cookie and any header whose name is a credential key as
 *     above (X-Api-Key, X-Auth-Token…) (`-H 'Authorization: …'`),
 *     and the word after `Bearer` or `Basic` anywhere;
 *   - the whole argument that follows a flag taking a credential as its next
 *     argument: --password, --passwd, --pass, --token, --secret, --api-key,
 *     --access-token, --auth-token, --oauth2-bearer (and their --flag=value
 *     forms); after -u, --user, -U, --proxy-user (curl) only a user:password
 *     value, as REDACTED:REDACTED (so `sudo -u www-data` stays readable);
 *   - `-pVALUE` / `-p VALUE` only for the programs where -p is the password
 *     (mysql and mariadb clients, sshpass).
 * Not recognised: secrets in positional arguments of no known form, in files
 * an argument names, in other flags of a program's own making. */
#ifndef TRACESHIM_ARGV_REDACT_H
#define TRACESHIM_ARGV_REDACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ts_args_mode { TS_ARGS_REDACTED = 0, TS_ARGS_OFF, TS_ARGS_RAW };

/* TRACESHIM_COMMAND_ARGS: redacted (default, also for anything unknown), off, raw. */
enum ts_args_mode ts_parse_args_mode(const char *s);

/* Per-argv state: what the previous argument asked of this one. */
struct ts_argv_redact {
	bool password_p;     /* the program takes -pVALUE as a password */
	uint8_t next_secret; /* the previous argument was a flag whose value is a credential:
			      * 1 always redacted, 2 redacted when it is user:password */
};

/* argv0: the program (its base name decides the -p rule); may be NULL. */
void ts_argv_redact_init(struct ts_argv_redact *st, const char *argv0, size_t len);

/* One argument (argv[i], i ≥ 0, in order) into out: like snprintf, writes at
 * most cap-1 bytes and a NUL (cap > 0), returns the length the whole result
 * needs. A secret is replaced before anything is written, so a cut result
 * never holds part of one. */
size_t ts_argv_redact_next(struct ts_argv_redact *st, const char *arg, size_t len, char *out, size_t cap);

#endif
