#!/usr/bin/python3
"""A tiny OTLP/HTTP receiver for the exporter tests (http.server, stdlib only).

usage: otlp_receiver.py OUT_DIR [STATUS]

Listens on 127.0.0.1 on a free port and writes the port to OUT_DIR/port.
Each POST body goes to OUT_DIR/req-N.bin; its path and headers to
OUT_DIR/req-N.txt ("path=/v1/traces", "peer_port=N" (the client's TCP port),
then "name: value", names lowercased),
written after the body, so a .txt means the request is complete. Answers
STATUS (default 200) with an empty ExportTraceServiceResponse; a 503 carries
"Retry-After: 3". HTTP/1.1 keep-alive, like a collector.
"""
import http.server
import os
import sys
import threading

OUT = sys.argv[1]
STATUS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
lock = threading.Lock()
count = [0]


def write_atomic(path, data):
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.rename(path + ".tmp", path)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            n = count[0]
            count[0] += 1
        base = os.path.join(OUT, "req-%03d" % n)
        write_atomic(base + ".bin", body)
        meta = ["path=" + self.path, "peer_port=%d" % self.client_address[1]]
        meta += ["%s: %s" % (k.lower(), v) for k, v in self.headers.items()]
        write_atomic(base + ".txt", ("\n".join(meta) + "\n").encode())
        self.send_response(STATUS)
        if STATUS == 503:
            self.send_header("Retry-After", "3")
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
write_atomic(os.path.join(OUT, "port"), str(server.server_address[1]).encode())
server.serve_forever()
