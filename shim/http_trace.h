/* http_trace.h — HTTP/1.x spans and W3C propagation on traced TCP sockets.
 *
 * Client side (connect()ed sockets): every request written gets a CLIENT
 * span, ended when its response has been read; a traceparent header (plus
 * tracestate and baggage when the context has them) is injected as the LAST
 * header line of the request head, unless the application sent one itself.
 * Server side (accept()ed sockets): every request read gets a SERVER span
 * continuing the incoming traceparent (or a new trace), ended when the
 * response has been written; meanwhile it is the thread's current context.
 *
 * Parsing is done by shim/proto/http.h; this file decides what the bytes
 * mean for spans and splices the injected header into the byte stream. */
#ifndef TRACESHIM_HTTP_TRACE_H
#define TRACESHIM_HTTP_TRACE_H

#include "io.h"

/* A write-family call on a traced TCP socket whose protocol is HTTP or not
 * yet known. Returns what the application's own call would have returned. */
ssize_t ts_http_out(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, const struct ts_out_call *call);

/* A read-family call returned n (or -1 with err) into iov. */
void ts_http_in(int fd, struct ts_fd *e, const struct iovec *iov, int iovcnt, ssize_t n, int err);

/* sendfile() wrote n bytes of a response body the shim never sees. */
void ts_http_out_opaque(int fd, struct ts_fd *e, ssize_t n);

/* Reads TRACESTATE/BAGGAGE from the environment into the process extras and
 * registers the fd release hook. Called once at init. */
void ts_http_init(void);

#endif
