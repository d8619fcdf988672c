"""Issue 2 details beyond curl over IPv4: UDP and IPv6 connects, byte counts,
and a thread that starts in its creator's context."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import httpfixture  # noqa: E402
import tstest  # noqa: E402
from tstest import spanlib  # noqa: E402

UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.send(b"x" * 100)
s.send(b"y" * 23)
s.close()
"""

# A threaded HTTP server whose handler starts a thread that calls another
# server: that call must be a child of the request's SERVER span.
FAN_OUT_SERVER = r"""
import http.server, sys, threading, urllib.request
backend = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        out = []
        t = threading.Thread(target=lambda: out.append(urllib.request.urlopen(backend, timeout=10).read()))
        t.start(); t.join()
        body = b"fanned out " + str(len(out[0])).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class Network(tstest.TestCase):
    def test_udp_connect_and_bytes(self):
        env = self.make_env()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        self.addCleanup(rx.close)
        port = rx.getsockname()[1]
        self.assertOk(env.run(["/usr/bin/python3", "-c", UDP_CLIENT, str(port)]))
        self.assertEqual(rx.recv(1000), b"x" * 100)
        spans = env.wait_spans(1, where="connection")
        conn = [s for s in spanlib.spans_by_name(spans, "connection") if s["attrs"].get("network.peer.port") == port]
        self.assertEqual(len(conn), 1, spanlib.describe(spans))
        self.assertEqual(conn[0]["attrs"]["network.transport"], "udp")
        self.assertEqual(conn[0]["attrs"]["traceshim.bytes_sent"], 123)
        connect = [s for s in spanlib.spans_by_name(spans, "connect") if s["attrs"].get("network.peer.port") == port]
        self.assertEqual(connect[0]["attrs"]["network.type"], "ipv4")

    def test_ipv6_connect(self):
        env = self.make_env()
        srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            srv.bind(("::1", 0))
        except OSError as e:
            self.skipTest("no IPv6 loopback here: %s" % e)
        srv.listen(1)
        self.addCleanup(srv.close)
        port = srv.getsockname()[1]
        r = env.run(["curl", "-s", "-m", "2", "-o", "/dev/null", "http://[::1]:%d/" % port])
        self.assertIn(r.returncode, (28, 52, 56), r)  # nobody answers: timeout/empty reply is fine
        spans = env.wait_spans(1, where="connect")
        c = [s for s in spanlib.spans_by_name(spans, "connect") if s["attrs"].get("network.peer.port") == port][0]
        self.assertEqual(c["attrs"]["network.type"], "ipv6")
        self.assertEqual(c["attrs"]["network.peer.address"], "::1")
        self.assertEqual(c["status_code"], 0)

    def test_refused_nonblocking_connect_is_an_error(self):
        env = self.make_env()
        port = httpfixture.closed_port()
        r = env.run(["curl", "-s", "http://127.0.0.1:%d/" % port])
        self.assertEqual(r.returncode, 7)
        spans = env.wait_spans(1, where="connect")
        c = spanlib.spans_by_name(spans, "connect")[0]
        self.assertEqual(c["status_code"], 2)
        self.assertEqual(c["attrs"]["error.type"], "ECONNREFUSED")
        proc = spanlib.spans_by_name(spans, "curl")[0]
        self.assertEqual(proc["attrs"]["process.exit.code"], 7)

    def test_thread_starts_in_its_creators_context(self):
        env = self.make_env()
        backend = self.start_http_server()  # untraced
        port = httpfixture.free_port()
        proc = env.spawn(["/usr/bin/python3", "-c", FAN_OUT_SERVER, str(port), backend.url()], via="preload")
        self.addCleanup(httpfixture.stop_process, proc)
        httpfixture.wait_port(port, proc=proc)
        r = env.run(["curl", "-s", "http://127.0.0.1:%d/" % port])
        self.assertTrue(r.stdout.startswith(b"fanned out "), r)
        spans = env.wait_spans(3, where=lambda s: s["kind"] in (2, 3))
        server = [s for s in spans if s["kind"] == 2][0]
        inner = [s for s in spans if s["kind"] == 3 and s["attrs"].get("server.port") == backend.port]
        self.assertEqual(len(inner), 1, spanlib.describe(spans))
        self.assertChildOf(spans, inner[0], server)
        self.assertNotEqual(inner[0]["attrs"]["thread.id"], server["attrs"]["thread.id"])


if __name__ == "__main__":
    tstest.main()
