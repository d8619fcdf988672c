/* dns.c — getaddrinfo. glibc's own resolver reaches the network through
 * hidden internal calls, and NSS modules through the PLT: the real call runs
 * with the guard up so neither shows up as spans of its own. */
#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>

#include "fdtable.h"
#include "shim.h"

TS_REAL(getaddrinfo, int, (const char *, const char *, const struct addrinfo *, struct addrinfo **))

static const char *eai_name(int rc)
{
	switch (rc) {
	case EAI_AGAIN: return "EAI_AGAIN";
	case EAI_BADFLAGS: return "EAI_BADFLAGS";
	case EAI_FAIL: return "EAI_FAIL";
	case EAI_FAMILY: return "EAI_FAMILY";
	case EAI_MEMORY: return "EAI_MEMORY";
	case EAI_NONAME: return "EAI_NONAME";
	case EAI_SERVICE: return "EAI_SERVICE";
	case EAI_SOCKTYPE: return "EAI_SOCKTYPE";
	case EAI_SYSTEM: return "EAI_SYSTEM";
	case EAI_OVERFLOW: return "EAI_OVERFLOW";
#ifdef EAI_NODATA
	case EAI_NODATA: return "EAI_NODATA";
#endif
#ifdef EAI_ADDRFAMILY
	case EAI_ADDRFAMILY: return "EAI_ADDRFAMILY";
#endif
	default: return "EAI_UNKNOWN";
	}
}

static int traced_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
			      struct addrinfo **res)
{
	struct ts_span s;
	ts_span_start(&s, "getaddrinfo", TS_KIND_INTERNAL, NULL);
	ts_in_shim++;
	int rc = real_getaddrinfo()(node, service, hints, res);
	int saved = errno;
	ts_span_attr_str(&s, "dns.question.name", node);
	if (rc == 0) {
		struct ts_peer peers[8];
		unsigned n = 0, total = 0;
		for (const struct addrinfo *ai = *res; ai; ai = ai->ai_next) {
			total++;
			if (n < 8 && ts_peer_from_sockaddr(&peers[n], ai->ai_addr, ai->ai_addrlen)) {
				bool dup = false;
				for (unsigned i = 0; i < n && !dup; i++)
					dup = !memcmp(&peers[i].addr, &peers[n].addr, 16) && peers[i].family == peers[n].family;
				n += !dup;
			}
		}
		ts_dns_remember(node, peers, n);
		ts_span_attr_int(&s, "traceshim.dns.answer_count", n);
		ts_span_attr_int(&s, "traceshim.dns.addrinfo_count", total);
	} else {
		ts_span_error(&s, eai_name(rc), gai_strerror(rc));
		ts_span_stack(&s);
	}
	ts_span_end(&s);
	ts_in_shim--;
	errno = saved;
	return rc;
}

TS_EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
	if (!node || !ts_tracing())
		return real_getaddrinfo()(node, service, hints, res);
	return traced_getaddrinfo(node, service, hints, res);
}
