#include <criterion/criterion.h>
#include <string.h>

#include "argv_redact.h"

/* Redacts argv (NULL-terminated) and joins the results with '|'. */
static const char *run(const char *const argv[])
{
	static char joined[4096];
	char one[1024];
	struct ts_argv_redact st;
	ts_argv_redact_init(&st, argv[0], strlen(argv[0]));
	joined[0] = 0;
	for (size_t i = 0; argv[i]; i++) {
		size_t n = ts_argv_redact_next(&st, argv[i], strlen(argv[i]), one, sizeof one);
		cr_assert_lt(n, sizeof one);
		cr_assert_eq(strlen(one), n);
		if (i)
			strcat(joined, "|");
		strcat(joined, one);
	}
	return joined;
}

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define EXPECT(want, ...) cr_expect_str_eq(run(ARGV(__VA_ARGS__)), want)

Test(argv_redact, url_userinfo_anywhere)
{
	EXPECT("curl|-s|http://REDACTED:REDACTED@127.0.0.1:8080/", "curl", "-s", "http://alice:PASSWORD@127.0.0.1:8080/");
	EXPECT("sh|-c|curl -s http://REDACTED:REDACTED@h:1/x?a=1 >/dev/null", "sh", "-c",
	       "curl -s http://alice:PASSWORD@h:1/x?a=1 >/dev/null");
	EXPECT("git|clone|--url=https://REDACTED:REDACTED@example.com/r.git", "git", "clone",
	       "--url=https://tok:x-oauth@example.com/r.git");
	EXPECT("x|'postgres://REDACTED:REDACTED@db/app' 'redis://REDACTED:REDACTED@r:6379'", "x",
	       "'postgres://u:p@db/app' 'redis://:p@r:6379'");
	/* url.full's query rule comes along */
	EXPECT("curl|https://s3/b?AWSAccessKeyId=REDACTED&Signature=REDACTED&x=1", "curl",
	       "https://s3/b?AWSAccessKeyId=AK&Signature=S&x=1");
	/* what is not userinfo stays */
	EXPECT("curl|http://127.0.0.1:8080/a@b|ftp://host/", "curl", "http://127.0.0.1:8080/a@b", "ftp://host/");
}

Test(argv_redact, curl_user_flags)
{
	EXPECT("curl|-u|REDACTED:REDACTED|http://h/", "curl", "-u", "alice:PW", "http://h/");
	EXPECT("curl|--user|REDACTED:REDACTED", "curl", "--user", "alice:PW");
	EXPECT("curl|--proxy-user|REDACTED:REDACTED|-U|REDACTED:REDACTED", "curl", "--proxy-user", "a:b", "-U", "c:d");
	EXPECT("curl|--user=REDACTED:REDACTED", "curl", "--user=alice:PW");
	/* a user name alone is not a secret: sudo -u stays readable */
	EXPECT("sudo|-u|www-data|id", "sudo", "-u", "www-data", "id");
	EXPECT("curl|--oauth2-bearer|REDACTED", "curl", "--oauth2-bearer", "TOKEN");
}

Test(argv_redact, password_flags)
{
	EXPECT("tool|--password=REDACTED|--passwd|REDACTED|--token|REDACTED", "tool", "--password=PW", "--passwd", "PW",
	       "--token", "T");
	EXPECT("tool|--secret|REDACTED|--api-key=REDACTED|--x", "tool", "--secret", "S", "--api-key=K", "--x");
	EXPECT("tool|--client-secret=REDACTED|--db-password=REDACTED", "tool", "--client-secret=S", "--db-password=P");
}

Test(argv_redact, key_value_forms)
{
	EXPECT("env|PGPASSWORD=REDACTED|psql", "env", "PGPASSWORD=PW", "psql");
	EXPECT("x|password=REDACTED|passwd=REDACTED|token=REDACTED|secret=REDACTED", "x", "password=a", "passwd=b",
	       "token=c", "secret=d");
	EXPECT("sh|-c|AWS_SECRET_ACCESS_KEY=REDACTED aws s3 ls; DB_PASS=REDACTED run", "sh", "-c",
	       "AWS_SECRET_ACCESS_KEY=abc aws s3 ls; DB_PASS=p run");
	EXPECT("x|http://h/?token=REDACTED&page=2", "x", "http://h/?token=T&page=2");
	EXPECT("x|a=1,api_key=REDACTED,b=2", "x", "a=1,api_key=K,b=2");
	/* keys that only look alike stay */
	EXPECT("x|passive=1|author=bob|keyfile=k.pem|bypass_cache=1", "x", "passive=1", "author=bob", "keyfile=k.pem",
	       "bypass_cache=1");
}

Test(argv_redact, headers_and_bearer)
{
	EXPECT("curl|-H|Authorization: REDACTED|http://h/", "curl", "-H", "Authorization: Bearer abc.def", "http://h/");
	EXPECT("curl|--header|proxy-authorization:REDACTED", "curl", "--header", "proxy-authorization:Basic Zm9v");
	EXPECT("curl|-H|Cookie: REDACTED|-H|X-Api-Key: REDACTED|-H|Accept: text/html", "curl", "-H", "Cookie: s=1; t=2",
	       "-H", "X-Api-Key: K", "-H", "Accept: text/html");
	EXPECT("sh|-c|curl -H \"Authorization: REDACTED\" http://h/", "sh", "-c",
	       "curl -H \"Authorization: Bearer xyz\" http://h/");
	EXPECT("x|Bearer REDACTED|bearer", "x", "Bearer abc", "bearer");
}

Test(argv_redact, dash_p_only_where_it_is_the_password)
{
	EXPECT("mysql|-uroot|-pREDACTED|db", "mysql", "-uroot", "-pSECRET", "db");
	EXPECT("/usr/bin/mariadb-dump|-p|REDACTED|db", "/usr/bin/mariadb-dump", "-p", "SECRET", "db");
}

Test(argv_redact, ssh_port_stays)
{
	EXPECT("ssh|-p|2222|-p2222|host", "ssh", "-p", "2222", "-p2222", "host");
	EXPECT("sshpass|-pREDACTED|ssh|host", "sshpass", "-pPW", "ssh", "host");
}

Test(argv_redact, truncation_never_leaks)
{
	char out[24];
	struct ts_argv_redact st;
	ts_argv_redact_init(&st, "curl", 4);
	const char *a = "http://alice:PASSWORD@127.0.0.1:8080/path";
	size_t n = ts_argv_redact_next(&st, a, strlen(a), out, sizeof out);
	cr_assert_eq(n, strlen("http://REDACTED:REDACTED@127.0.0.1:8080/path"));
	cr_assert_eq(strlen(out), sizeof out - 1);
	cr_assert_null(strstr(out, "PASS"));
	cr_assert_null(strstr(out, "alice"));
	/* cap 0: only the length */
	ts_argv_redact_init(&st, "x", 1);
	cr_assert_eq(ts_argv_redact_next(&st, "password=abc", 12, NULL, 0), strlen("password=REDACTED"));
}

Test(argv_redact, modes)
{
	cr_assert_eq(ts_parse_args_mode(NULL), TS_ARGS_REDACTED);
	cr_assert_eq(ts_parse_args_mode("redacted"), TS_ARGS_REDACTED);
	cr_assert_eq(ts_parse_args_mode("bogus"), TS_ARGS_REDACTED);
	cr_assert_eq(ts_parse_args_mode("off"), TS_ARGS_OFF);
	cr_assert_eq(ts_parse_args_mode("RAW"), TS_ARGS_RAW);
}
