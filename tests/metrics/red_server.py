"""A small HTTP service for the metrics tests: answers 200 on every path
except /fail..., which gets 500. Threaded (one request per thread: the shim's
server spans are exact there). Prints its port on stdout once listening."""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        status = 500 if self.path.startswith("/fail") else 200
        body = b"boom\n" if status == 500 else b"ok\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
print(srv.server_address[1], flush=True)
srv.serve_forever()
