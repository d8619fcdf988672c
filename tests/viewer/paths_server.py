#!/usr/bin/python3
"""A small HTTP/1.1 server for the viewer's tests: it answers by path.

    /fast...  200 at once
    /slow...  200 after SLOW_SECONDS
    /fail...  500 at once
    other     404

Run traced (under scripts/traceshim run), it gives real SERVER spans: fast,
slow and failing ones. Usage: paths_server.py PORT [SLOW_SECONDS]."""

import http.server
import sys
import time

SLOW = float(sys.argv[2]) if len(sys.argv) > 2 else 1.2


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one curl can send many requests
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(SLOW)
            code = 200
        elif self.path.startswith("/fast"):
            code = 200
        elif self.path.startswith("/fail"):
            code = 500
        else:
            code = 404
        body = ("%d %s\n" % (code, self.path)).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
