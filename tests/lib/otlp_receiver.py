"""A local OTLP/HTTP receiver for tests, on 127.0.0.1.

Records every request (method, path, headers, body) and answers each from a
script of behaviours, then with the default (200):

    rcv = OtlpReceiver()
    rcv.start()
    rcv.script(status(503, retry_after=1), ok())
    ... rcv.wait_requests(2) ... rcv.spans() ...
    rcv.stop(); rcv.start()      # down, then up again on the same port
    rcv.stop()

Behaviours: ok(), partial_success(rejected, message), status(code, retry_after=None),
hang(seconds, then=ok()), close_connection(). stop() also cuts the connections
that are open, so a client with a kept-alive connection sees the receiver go down.
"""

import gzip
import http.server
import queue
import socket
import threading
import time

import otlp_proto
import spans as spanlib


class Behaviour:
    def __init__(self, kind, code=200, retry_after=None, body=b"", seconds=0.0, then=None):
        self.kind, self.code, self.retry_after = kind, code, retry_after
        self.body, self.seconds, self.then = body, seconds, then

    def __repr__(self):
        if self.kind == "hang":
            return "hang(%gs, then %r)" % (self.seconds, self.then)
        if self.kind == "close":
            return "close_connection()"
        extra = ", retry_after=%r" % (self.retry_after,) if self.retry_after is not None else ""
        return "%s(%d%s)" % (self.kind, self.code, extra)


def ok():
    return Behaviour("status", 200)


def partial_success(rejected=1, message="rejected by the test receiver"):
    return Behaviour("status", 200, body=otlp_proto.partial_success_body(rejected, message))


def status(code, retry_after=None, body=b""):
    """Any status; retry_after (seconds, or an HTTP date string) adds Retry-After."""
    return Behaviour("status", code, retry_after=retry_after, body=body)


def hang(seconds, then=None):
    """Read the request, answer nothing for `seconds`, then behave as `then` (default ok())."""
    return Behaviour("hang", seconds=seconds, then=then or ok())


def close_connection():
    """Read the request, then close the connection without an answer."""
    return Behaviour("close")


class Request:
    def __init__(self, method, path, headers, raw_body, behaviour, received_at):
        self.method, self.path, self.behaviour, self.received_at = method, path, behaviour, received_at
        self.header_list = list(headers.items())
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.raw_body = raw_body
        enc = self.headers.get("content-encoding", "").lower()
        self.body = gzip.decompress(raw_body) if enc == "gzip" else raw_body
        self._spans = None

    def spans(self):
        """Decoded with the official schema (fails if it cannot be had)."""
        if self._spans is None:
            self._spans = otlp_proto.decode_request(self.body)
        return self._spans

    @property
    def accepted(self):
        """Answered 2xx at once. A hang() counts as not accepted even if its
        late answer is 2xx: it stands for a backend the client gives up on."""
        b = self.behaviour
        return b.kind == "status" and 200 <= b.code < 300

    def __repr__(self):
        return "<%s %s %d bytes -> %r>" % (self.method, self.path, len(self.body), self.behaviour)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def handle_error(self, request, client_address):
        # A client that goes away, or stop() cutting a connection: expected.
        import sys
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OTLP exporters use it
    server_version = "traceshim-test-otlp/1"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        owner = self.server.owner
        body = self._read_body()
        behaviour = owner._next_behaviour()
        owner._record(Request(self.command, self.path, self.headers, body, behaviour, time.monotonic()))
        self._apply(behaviour)

    def _apply(self, b):
        if b.kind == "hang":
            if self.server.owner._stopping.wait(b.seconds):
                self.close_connection = True
                return
            return self._apply(b.then)
        if b.kind == "close":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(b.code)
        self.send_header("Content-Type", "application/x-protobuf")
        if b.retry_after is not None:
            self.send_header("Retry-After", str(b.retry_after))
        self.send_header("Content-Length", str(len(b.body)))
        self.end_headers()
        self.wfile.write(b.body)

    do_POST = do_PUT = do_GET = _handle


class OtlpReceiver:
    def __init__(self, port=0, default=None):
        self.port = port
        self.default = default or ok()
        self._script = queue.Queue()
        self._requests = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._conns = set()
        self._server = None
        self._thread = None
        self._stopping = threading.Event()

    # -- lifecycle --
    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def running(self):
        return self._server is not None

    def start(self):
        """Start (again) on self.port; the first start picks a free port."""
        if self._server is not None:
            return self
        self._stopping.clear()
        deadline = time.monotonic() + 5
        while True:
            try:
                self._server = _Server(("127.0.0.1", self.port), _Handler)
                break
            except OSError:
                if self.port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # the old socket is still closing
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="otlp-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and cut open connections (the port refuses connections after)."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._server = self._thread = None

    def restart(self):
        self.stop()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- scripting --
    def script(self, *behaviours):
        for b in behaviours:
            self._script.put(b)

    def _next_behaviour(self):
        try:
            return self._script.get_nowait()
        except queue.Empty:
            return self.default

    def _track(self, conn, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _record(self, req):
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()

    # -- what arrived --
    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def wait_requests(self, n, timeout=15):
        """The first >= n requests; AssertionError if fewer arrive in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("OTLP receiver got %d request(s) in %gs, expected %d: %r"
                                         % (len(self._requests), timeout, n, self._requests))
                self._cond.wait(left)
            return list(self._requests)

    def spans(self, accepted_only=True):
        """Spans of every (accepted) request, each once (a retried batch repeats them)."""
        out, seen = [], set()
        for r in self.requests:
            if accepted_only and not r.accepted:
                continue
            for s in r.spans():
                key = (s["trace_id"], s["span_id"])
                if key not in seen:
                    seen.add(key)
                    out.append(s)
        return out

    def wait_spans(self, done, timeout=20, what="the expected spans", accepted_only=True):
        """Polls until done(spans) is true; returns the spans. done may also be an int (a count)."""
        if isinstance(done, int):
            count = done
            done = lambda spans: len(spans) >= count  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            got = self.spans(accepted_only)
            if done(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError("OTLP receiver: %s did not arrive within %gs; %d request(s) %r, spans:\n%s"
                                     % (what, timeout, len(self.requests), self.requests, spanlib.describe(got)))
            with self._cond:
                self._cond.wait(0.1)
