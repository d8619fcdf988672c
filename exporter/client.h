/* client.h — the exporter's own client side: --ping and --status, the
 * liveness probe before listening, and --daemon's readiness check. */
#ifndef TRACESHIM_EXP_CLIENT_H
#define TRACESHIM_EXP_CLIENT_H

#include "sbuf.h"

/* Blocking SEQPACKET connect with a timeout (a full backlog would otherwise
 * block). The fd, or -1 with errno (ECONNREFUSED: nobody listens). */
int exp_unix_connect(const char *path, int timeout_ms);

/* Sends STATUS_REQ and appends the STATUS text to out. 0, or -1. */
int exp_query_status(const char *path, int timeout_ms, struct sbuf *out);

#endif
