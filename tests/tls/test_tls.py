"""HTTPS traced inside TLS (issue 14), with real programs: curl and python's
ssl (OpenSSL), wget (GnuTLS), nginx `listen ssl` and nginx as a TLS client,
asyncio's memory-BIO client, and a C client that keeps OpenSSL's write retry
rule to the letter on a non-blocking socket with a tiny send buffer. What a
server received is compared byte for byte with an untraced run, the
injected line aside."""
import asyncio
import hashlib
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import httpfixture  # noqa: E402
import tstest  # noqa: E402
from tstest import spanlib  # noqa: E402

SERVER, CLIENT, INTERNAL = 2, 3, 1
ERROR = 2
TP_LINE = re.compile(rb"traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\r\n")
TLS_CLIENT = os.path.join(tstest.tsenv.BUILD_DIR, "tests", "tls", "tls_client")
GNUTLS_CLIENT = os.path.join(tstest.tsenv.BUILD_DIR, "tests", "tls", "gnutls_client")


by_kind, one = tstest.by_kind, tstest.one


def make_cert(d):
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


class RecordingTlsServer:
    """An untraced HTTPS server in this process: it keeps every request's raw
    bytes (head and body), reads slowly if asked, and answers 200 "ok" or,
    with drop=True, closes without answering."""

    def __init__(self, cert, key, slow=False, drop=False):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if slow:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.slow, self.drop = slow, drop
        self.requests = []
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, raw):
        try:
            c = self.ctx.wrap_socket(raw, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            want = int(m.group(1)) if m else 0
            while len(rest) < want:
                if self.slow:
                    time.sleep(0.002)
                chunk = c.recv(1024 if self.slow else 65536)
                if not chunk:
                    break
                rest += chunk
            with self.lock:
                self.requests.append(head + b"\r\n\r\n" + rest)
            if self.drop:
                c.close()
                return
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            c.close()
        except (OSError, ssl.SSLError):
            pass

    def wait(self, n=1, timeout=15):
        tstest.wait_until(lambda: len(self.requests) >= n, timeout, "%d request(s) at the TLS server" % n)
        return self.requests

    def close(self):
        self.sock.close()


NGINX_SERVERS = """
  server {{
    listen 127.0.0.1:{port} ssl;
    listen 127.0.0.1:{plain};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {dir}/www;
    location /up/ {{
      proxy_pass https://127.0.0.1:{upstream}/;
      proxy_ssl_server_name on;
      proxy_ssl_name localhost;
    }}
  }}
  server {{
    listen 127.0.0.1:{h2port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {dir}/www;
  }}
"""


class Tls(tstest.TestCase):
    def setUp(self):
        super().setUp()
        self.d = self.make_tmpdir()
        self.cert, self.key = make_cert(self.d)

    def start_nginx(self, env, upstream=9):
        d = self.make_tmpdir()
        os.makedirs(os.path.join(d, "www"))
        with open(os.path.join(d, "www", "index.html"), "wb") as f:
            f.write(tstest.INDEX_BODY)
        with open(os.path.join(d, "www", "big.bin"), "wb") as f:
            f.write(os.urandom(3 << 20))
        port, plain, self.h2port = httpfixture.free_port(), httpfixture.free_port(), httpfixture.free_port()
        servers = NGINX_SERVERS.format(dir=d, port=port, plain=plain, h2port=self.h2port, cert=self.cert,
                                       key=self.key, upstream=upstream)
        httpfixture.spawn_nginx(self, env, d, httpfixture.nginx_conf(d, servers), port)
        return port, plain, os.path.join(d, "www")

    def recording(self, **kw):
        srv = RecordingTlsServer(self.cert, self.key, **kw)
        self.addCleanup(srv.close)
        return srv

    def assertTlsAttrs(self, span):
        self.assertIn(span["attrs"].get("tls.protocol.version"), ("1.2", "1.3"))
        self.assertTrue(span["attrs"].get("tls.cipher", "").startswith("TLS_"), span["attrs"])

    # ---- real clients and servers ---------------------------------------------------

    def test_curl_to_nginx_ssl(self):
        """The issue's acceptance check: curl's CLIENT span has an https
        url.full, nginx's SERVER span (TLS inside) is its child, the page is
        the page."""
        env = self.make_env()
        port, _, _ = self.start_nginx(env)
        url = "https://localhost:%d/index.html" % port
        r = env.run(["curl", "-s", "--cacert", self.cert, url])
        self.assertOk(r)
        self.assertEqual(r.stdout, tstest.INDEX_BODY)
        spans = env.wait_spans(2, where=lambda s: s["kind"] in (SERVER, CLIENT))
        client, server = one(self, spans, CLIENT), one(self, spans, SERVER)
        self.assertChildOf(spans, server, client)
        self.assertEqual(client["attrs"]["url.full"], url)
        self.assertEqual(client["attrs"]["server.address"], "localhost")
        self.assertEqual(client["attrs"]["http.response.status_code"], 200)
        self.assertEqual(server["attrs"]["url.scheme"], "https")
        self.assertEqual(server["attrs"]["url.path"], "/index.html")
        self.assertTlsAttrs(client)
        self.assertTlsAttrs(server)
        # curl's socket is found through its own BIO: the connection span
        # counts ciphertext and says it was TLS
        conn = [s for s in env.spans() if s["name"] == "connection"
                and s["attrs"].get("service.name") == "unknown_service:curl"]
        self.assertEqual(len(conn), 1)
        self.assertIn(conn[0]["attrs"].get("tls.protocol.version"), ("1.2", "1.3"))
        self.assertEqual(client["attrs"]["network.peer.port"], port)

    def test_alpn_h2_is_left_untraced_and_unbroken(self):
        """curl --http2 negotiates h2 with nginx: until an HTTP/2 tracer exists
        the session is passed through untouched (the page is the page, no
        HTTP spans), and the connection span says h2."""
        env = self.make_env()
        self.start_nginx(env)
        r = env.run(["curl", "-s", "--http2", "--cacert", self.cert, "-w", "%{http_version}",
                     "https://localhost:%d/index.html" % self.h2port])
        self.assertOk(r)
        self.assertEqual(r.stdout, tstest.INDEX_BODY + b"2")
        spans = env.wait_spans(1, where=lambda s: s["name"] == "connection"
                               and s["attrs"].get("service.name") == "unknown_service:curl")
        conn = [s for s in spans if s["name"] == "connection" and s["attrs"].get("service.name") ==
                "unknown_service:curl"]
        self.assertEqual(conn[0]["attrs"].get("tls.next_protocol"), "h2")
        self.assertEqual([s for s in env.spans() if s["kind"] in (SERVER, CLIENT)], [])

    def test_wget_gnutls_to_nginx_ssl(self):
        env = self.make_env()
        port, _, _ = self.start_nginx(env)
        url = "https://localhost:%d/index.html" % port
        r = env.run(["wget", "-q", "-O", "-", "--ca-certificate=" + self.cert, url])
        self.assertOk(r)
        self.assertEqual(r.stdout, tstest.INDEX_BODY)
        spans = env.wait_spans(2, where=lambda s: s["kind"] in (SERVER, CLIENT))
        client, server = one(self, spans, CLIENT), one(self, spans, SERVER)
        self.assertChildOf(spans, server, client)
        self.assertEqual(client["attrs"]["url.full"], url)
        self.assertEqual(client["attrs"]["service.name"], "unknown_service:wget")
        self.assertTlsAttrs(client)

    def test_python_ssl_both_ways(self):
        """python's ssl module as client (urllib) and as server (http.server
        wrapped in an SSLContext): SERVER child of CLIENT across the two."""
        env = self.make_env()
        port = httpfixture.free_port()
        www = self.make_tmpdir()
        with open(os.path.join(www, "index.html"), "wb") as f:
            f.write(tstest.INDEX_BODY)
        server_py = ("import http.server, ssl, sys, os\n"
                     "os.chdir(sys.argv[2])\n"
                     "s = http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])),"
                     " http.server.SimpleHTTPRequestHandler)\n"
                     "c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[3], sys.argv[4])\n"
                     "s.socket = c.wrap_socket(s.socket, server_side=True)\n"
                     "s.serve_forever()\n")
        proc = env.spawn(["/usr/bin/python3", "-c", server_py, str(port), www, self.cert, self.key], via="preload",
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(httpfixture.stop_process, proc)
        httpfixture.wait_port(port, proc=proc)
        client_py = ("import ssl, sys, urllib.request\n"
                     "c = ssl.create_default_context(cafile=sys.argv[2])\n"
                     "sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], context=c).read())\n")
        url = "https://localhost:%d/index.html" % port
        r = env.run(["/usr/bin/python3", "-c", client_py, url, self.cert])
        self.assertOk(r)
        self.assertEqual(r.stdout, tstest.INDEX_BODY)
        spans = env.wait_spans(2, where=lambda s: s["kind"] in (SERVER, CLIENT))
        client, server = one(self, spans, CLIENT), one(self, spans, SERVER)
        self.assertChildOf(spans, server, client)
        self.assertEqual(client["attrs"]["url.full"], url)
        self.assertEqual(server["attrs"]["url.scheme"], "https")

    def test_nginx_as_tls_client_nests(self):
        """curl (plain HTTP) → nginx → proxy_pass https:// → a traced python
        TLS server: nginx's non-blocking TLS client writes carry the
        context, and the chain nests."""
        env = self.make_env()
        up = httpfixture.free_port()
        server_py = ("import http.server, ssl, sys\n"
                     "s = http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])),"
                     " http.server.SimpleHTTPRequestHandler)\n"
                     "c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[2], sys.argv[3])\n"
                     "s.socket = c.wrap_socket(s.socket, server_side=True)\n"
                     "s.serve_forever()\n")
        proc = env.spawn(["/usr/bin/python3", "-c", server_py, str(up), self.cert, self.key], via="preload",
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.make_tmpdir())
        self.addCleanup(httpfixture.stop_process, proc)
        httpfixture.wait_port(up, proc=proc)
        _, plain, _ = self.start_nginx(env, upstream=up)
        r = env.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:%d/up/" % plain])
        self.assertEqual(r.stdout, b"200")
        spans = env.wait_spans(4, where=lambda s: s["kind"] in (SERVER, CLIENT))
        curl = one(self, spans, CLIENT, **{"service.name": "unknown_service:curl"})
        ngx_server = one(self, spans, SERVER, **{"service.name": "unknown_service:nginx"})
        ngx_client = one(self, spans, CLIENT, **{"service.name": "unknown_service:nginx"})
        py = one(self, spans, SERVER, **{"service.name": "unknown_service:python3.11"})
        self.assertChildOf(spans, ngx_server, curl)
        self.assertChildOf(spans, ngx_client, ngx_server)
        self.assertChildOf(spans, py, ngx_client)
        self.assertTrue(ngx_client["attrs"]["url.full"].startswith("https://"), ngx_client["attrs"])

    def test_applications_own_traceparent_inside_tls_is_untouched(self):
        env = self.make_env()
        srv = self.recording()
        tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        r = env.run(["curl", "-s", "--cacert", self.cert, "-H", "traceparent: " + tp,
                     "https://localhost:%d/mine" % srv.port])
        self.assertOk(r)
        req = srv.wait()[0]
        self.assertEqual(req.count(b"traceparent:"), 1)
        self.assertIn(("traceparent: " + tp + "\r\n").encode(), req)
        client = one(self, env.wait_spans(1, where=lambda s: s["kind"] == CLIENT), CLIENT)
        self.assertEqual(client["parent_span_id"], "b7ad6b7169203331")

    def test_asyncio_memory_bio_client(self):
        """asyncio's TLS has no fd under OpenSSL (memory BIO): the request is
        still traced and carries the context."""
        env = self.make_env()
        srv = self.recording()
        client_py = ("import asyncio, ssl, sys\n"
                     "async def main():\n"
                     "    c = ssl.create_default_context(cafile=sys.argv[2])\n"
                     "    r, w = await asyncio.open_connection('127.0.0.1', int(sys.argv[1]), ssl=c,"
                     " server_hostname='localhost')\n"
                     "    w.write(b'GET /aio HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n')\n"
                     "    await w.drain()\n"
                     "    sys.stdout.buffer.write(await r.read())\n"
                     "    w.close()\n"
                     "asyncio.run(main())\n")
        r = env.run(["/usr/bin/python3", "-c", client_py, str(srv.port), self.cert])
        self.assertOk(r)
        self.assertTrue(r.stdout.endswith(b"ok"), r.stdout)
        req = srv.wait()[0]
        self.assertEqual(len(TP_LINE.findall(req)), 1, req)
        client = one(self, env.wait_spans(1, where=lambda s: s["kind"] == CLIENT), CLIENT)
        self.assertEqual(client["attrs"]["url.full"], "https://localhost/aio")
        self.assertIn(client["span_id"].encode(), req)
        self.assertEqual(client["attrs"]["http.response.status_code"], 200)

    # ---- byte-exactness and the retry rule -------------------------------------------

    def strict_client(self, env, mode, body, traced, client=TLS_CLIENT):
        srv = self.recording(slow=True)
        argv = [client, str(srv.port), mode, str(body)]
        r = env.run(argv, via="preload", timeout=120) if traced else \
            subprocess.run(argv, capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r, srv.wait()[0]

    def test_nonblocking_writes_keep_the_retry_rule_byte_exact(self):
        """A 1 MiB request in one SSL_write on a non-blocking socket with a 4 KiB
        send buffer and a slow reader: WANT_WRITE many times, the same
        pointer and length each retry (no moving-buffer mode). Traced, OpenSSL
        never says "bad write retry", the application is told it wrote its own
        length, and the server receives the untraced bytes plus one line."""
        env = self.make_env()
        for mode in ("block", "nonblock", "partial"):
            with self.subTest(mode=mode):
                plain, want = self.strict_client(env, mode, 1 << 20, traced=False)
                traced, got = self.strict_client(env, mode, 1 << 20, traced=True)
                self.assertEqual(plain.stdout.split(b"\n")[0].split()[:2], traced.stdout.split(b"\n")[0].split()[:2])
                self.assertIn(b"HTTP/1.1 200 OK", traced.stdout)
                lines = TP_LINE.findall(got)
                self.assertEqual(len(lines), 1, got[:300])
                self.assertEqual(got.replace(lines[0], b""), want)
                head_end = got.index(b"\r\n\r\n")
                self.assertEqual(got.index(lines[0]) + len(lines[0]), head_end + 2,
                                 "the header is the head's last line")
                if mode != "block":
                    self.assertNotIn(b"retries 0", traced.stdout, "the test must hit WANT_WRITE")

    def test_gnutls_short_sends_and_again_keep_the_retry_rule(self):
        """GnuTLS's twin of the test above: E_AGAIN retried with the same data,
        or with NULL, 0; short sends advanced by their count."""
        env = self.make_env()
        for mode in ("block", "nonblock", "null"):
            with self.subTest(mode=mode):
                _, want = self.strict_client(env, mode, 1 << 20, traced=False, client=GNUTLS_CLIENT)
                traced, got = self.strict_client(env, mode, 1 << 20, traced=True, client=GNUTLS_CLIENT)
                self.assertIn(b"HTTP/1.1 200 OK", traced.stdout)
                self.assertIn(("sent %d " % len(want)).encode(), traced.stdout)
                lines = TP_LINE.findall(got)
                self.assertEqual(len(lines), 1, got[:300])
                self.assertEqual(got.replace(lines[0], b""), want)
                if mode != "block":
                    self.assertNotIn(b"retries 0", traced.stdout, "the test must hit E_AGAIN")

    def test_large_bodies_both_ways(self):
        env = self.make_env()
        port, _, www = self.start_nginx(env)
        with open(os.path.join(www, "big.bin"), "rb") as f:
            big = f.read()
        r = env.run(["curl", "-s", "--cacert", self.cert, "https://localhost:%d/big.bin" % port], timeout=60)
        self.assertOk(r)
        self.assertEqual(hashlib.sha256(r.stdout).digest(), hashlib.sha256(big).digest())
        srv = self.recording()
        up = os.path.join(self.make_tmpdir(), "up.bin")
        with open(up, "wb") as f:
            f.write(big)
        r = env.run(["curl", "-s", "--cacert", self.cert, "--data-binary", "@" + up,
                     "https://localhost:%d/post" % srv.port], timeout=60)
        self.assertOk(r)
        req = srv.wait()[0]
        self.assertTrue(req.endswith(big))
        self.assertEqual(len(TP_LINE.findall(req[:req.index(b"\r\n\r\n") + 4])), 1)

    def test_session_torn_down_mid_request(self):
        """The server reads the request and closes without an answer: curl
        fails exactly as untraced, and its CLIENT span is an error."""
        env = self.make_env()
        srv = self.recording(drop=True)
        argv = ["curl", "-s", "--cacert", self.cert, "https://localhost:%d/drop" % srv.port]
        plain = subprocess.run(argv, capture_output=True, timeout=30)
        traced = env.run(argv)
        self.assertEqual(traced.returncode, plain.returncode)
        self.assertNotEqual(traced.returncode, 0)
        client = one(self, env.wait_spans(1, where=lambda s: s["kind"] == CLIENT), CLIENT)
        self.assertEqual(client["status_code"], ERROR)
        self.assertIn("error.type", client["attrs"])

    def test_failed_handshake_is_an_error_span(self):
        env = self.make_env()
        srv = self.recording()
        r = env.run(["curl", "-s", "https://localhost:%d/" % srv.port])  # no CA: verify fails
        self.assertEqual(r.returncode, 60)
        hs = [s for s in env.wait_spans(1, where=lambda s: s["name"] == "TLS handshake")
              if s["name"] == "TLS handshake"]
        self.assertEqual(len(hs), 1)
        self.assertEqual(hs[0]["status_code"], ERROR)
        self.assertEqual(hs[0]["attrs"]["server.address"], "localhost")
        self.assertIn("certificate", hs[0]["attrs"]["error.type"])


if __name__ == "__main__":
    tstest.main()
