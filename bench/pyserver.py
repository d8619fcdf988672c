"""A threaded python HTTP server (one thread per connection, HTTP/1.1
keep-alive) serving the files of a directory, for bench/driver.py.

    python3 pyserver.py PORT DIR
"""
import functools
import http.server
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus
    # the client's delayed ACK would cap every connection at ~25 requests/s.
    disable_nagle_algorithm = True

    def log_message(self, *args):  # no per-request stderr line
        pass


def main():
    port, root = int(sys.argv[1]), sys.argv[2]
    handler = functools.partial(Handler, directory=root)
    http.server.ThreadingHTTPServer.daemon_threads = True
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.serve_forever()


if __name__ == "__main__":
    main()
