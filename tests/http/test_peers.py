"""Issue 3 with real peers: unmodified clients and servers under the shim
produce one connected trace, and so do they talking to a service instrumented
with the OpenTelemetry JS SDK, in both directions."""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import httpfixture  # noqa: E402
import tstest  # noqa: E402
from tstest import spanlib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER, CLIENT = 2, 3
ERROR = 2
NODE_DIR = os.path.join(tstest.tsenv.SOURCE_DIR, "tests", ".cache", "node-interop")


by_kind, one = tstest.by_kind, tstest.one


class PythonServer(tstest.TestCase):
    def serve(self, env):
        www = self.make_tmpdir()
        with open(os.path.join(www, "index.html"), "wb") as f:
            f.write(tstest.INDEX_BODY)
        proc, port = httpfixture.spawn_http_server(www, env=env.environ("preload"))
        self.addCleanup(httpfixture.stop_process, proc)
        return port

    def test_curl_to_python_http_server(self):
        """The issue's acceptance check: two CLIENT spans (200; 404 as ERROR),
        two SERVER spans, each the child of its CLIENT span."""
        env = self.make_env()
        port = self.serve(env)
        for path in ("/", "/nope"):
            r = env.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d%s" % (port, path)])
            self.assertOk(r)
        spans = env.wait_spans(4, where=lambda s: s["kind"] in (SERVER, CLIENT), what="2 client + 2 server spans")
        for path, code in (("/", 200), ("/nope", 404)):
            client = one(self, spans, CLIENT, **{"url.full": "http://127.0.0.1:%d%s" % (port, path)})
            server = one(self, spans, SERVER, **{"url.path": path})
            self.assertChildOf(spans, server, client)
            self.assertEqual(client["attrs"]["http.response.status_code"], code)
            self.assertEqual(server["attrs"]["http.response.status_code"], code)
            self.assertEqual(client["name"], "GET")
            self.assertEqual(client["status_code"], ERROR if code >= 400 else 0)
            self.assertEqual(server["status_code"], 0, "a 404 is not a server error")
            self.assertEqual(server["attrs"]["url.scheme"], "http")
            self.assertEqual(server["attrs"]["client.address"], "127.0.0.1")
            self.assertTrue(server["attrs"]["user_agent.original"].startswith("curl/"))
            # across processes only the start order is certain: the client may
            # read the last byte before the server's write() call returns
            self.assertLessEqual(client["start_ns"], server["start_ns"])
        self.assertEqual(one(self, spans, CLIENT, **{"http.response.status_code": 404})["attrs"]["error.type"], "404")

    def test_baggage_and_tracestate_flow_through(self):
        env = self.make_env()
        port = self.serve(env)
        tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        r = env.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/" % port],
                    env={"TRACEPARENT": tp, "TRACESTATE": "vendor=abc", "BAGGAGE": "tenant=acme,user%20id=a%2Cb"})
        self.assertOk(r)
        spans = env.wait_spans(2, where=lambda s: s["kind"] in (SERVER, CLIENT))
        client, server = one(self, spans, CLIENT), one(self, spans, SERVER)
        self.assertEqual(client["trace_id"], "0af7651916cd43dd8448eb211c80319c")
        self.assertChildOf(spans, server, client)
        self.assertEqual(server["trace_state"], "vendor=abc")
        for s in (client, server):
            self.assertEqual(s["attrs"].get("baggage.tenant"), "acme", s)
            self.assertEqual(s["attrs"].get("baggage.user%20id"), "a,b", s)

    def test_daemon_requests_are_their_own_traces(self):
        env = self.make_env()
        port = self.serve(env)
        for _ in range(2):  # untraced clients: no traceparent arrives
            self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/" % port], via="plain"))
        spans = env.wait_spans(2, where=lambda s: s["kind"] == SERVER)
        servers = by_kind(spans, SERVER)
        self.assertEqual(len({s["trace_id"] for s in servers}), 2)
        for s in servers:
            self.assertEqual(s["parent_span_id"], "", "a daemon's request is never a child of its process span")

    def test_invalid_incoming_traceparent_starts_a_new_trace(self):
        env = self.make_env()
        port = self.serve(env)
        bad = "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"  # uppercase: invalid
        self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", "-H", "traceparent: " + bad, "-H", "tracestate: a=b",
                               "http://127.0.0.1:%d/" % port], via="plain"))
        server = one(self, env.wait_spans(1, where=lambda s: s["kind"] == SERVER), SERVER)
        self.assertNotEqual(server["trace_id"], "0af7651916cd43dd8448eb211c80319c")
        self.assertEqual(server["parent_span_id"], "")
        self.assertEqual(server["trace_state"], "")


NGINX_SERVER = """
  sendfile on;
  server {{
    listen 127.0.0.1:{port};
    root {dir}/www;
    location /proxy/ {{
      proxy_pass http://127.0.0.1:{upstream}/;
      {proxy_extra}
    }}
  }}
"""


class Nginx(tstest.TestCase):
    def start_nginx(self, env, upstream=9, proxy_extra=""):
        d = self.make_tmpdir()
        os.makedirs(os.path.join(d, "www"))
        with open(os.path.join(d, "www", "index.html"), "wb") as f:
            f.write(tstest.INDEX_BODY * 20)  # big enough for sendfile to matter
        port = httpfixture.free_port()
        servers = NGINX_SERVER.format(dir=d, port=port, upstream=upstream, proxy_extra=proxy_extra)
        httpfixture.spawn_nginx(self, env, d, httpfixture.nginx_conf(d, servers), port)
        return port

    def test_nginx_serves_a_static_file(self):
        env = self.make_env()
        port = self.start_nginx(env)
        r = env.run(["curl", "-s", "http://127.0.0.1:%d/index.html" % port])
        self.assertOk(r)
        self.assertEqual(r.stdout, tstest.INDEX_BODY * 20)
        spans = env.wait_spans(2, where=lambda s: s["kind"] in (SERVER, CLIENT))
        client, server = one(self, spans, CLIENT), one(self, spans, SERVER)
        self.assertChildOf(spans, server, client)
        self.assertEqual(server["attrs"]["http.response.status_code"], 200)
        self.assertEqual(server["attrs"]["url.path"], "/index.html")
        self.assertEqual(server["attrs"]["service.name"], "unknown_service:nginx")

    def test_keep_alive_requests_each_get_their_span(self):
        env = self.make_env()
        port = self.start_nginx(env)
        urls = ["http://127.0.0.1:%d/index.html?n=%d" % (port, i) for i in range(3)]
        r = env.run(["curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null"] + urls)
        self.assertOk(r)
        spans = env.wait_spans(6, where=lambda s: s["kind"] in (SERVER, CLIENT))
        conns = [c for c in spanlib.spans_by_name(spans, "connection") if c["attrs"].get("network.peer.port") == port]
        self.assertEqual(len(conns), 1, "curl reuses one connection")
        for i in range(3):
            client = one(self, spans, CLIENT, **{"url.full": urls[i]})
            server = one(self, spans, SERVER, **{"url.query": "n=%d" % i})
            self.assertChildOf(spans, server, client)
            self.assertEqual(server["attrs"]["http.response.status_code"], 200)

    def test_nginx_reverse_proxy_nests_when_it_drops_the_incoming_header(self):
        """curl -> nginx -> python: with `proxy_set_header traceparent ""` nginx
        does not forward the caller's header, so the shim injects its own and
        the chain nests: curl CLIENT > nginx SERVER > nginx CLIENT > python SERVER."""
        env = self.make_env()
        upstream = PythonServer.serve(self, env)
        port = self.start_nginx(env, upstream, 'proxy_set_header traceparent "";')
        r = env.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:%d/proxy/" % port])
        self.assertEqual(r.stdout, b"200")
        spans = env.wait_spans(4, where=lambda s: s["kind"] in (SERVER, CLIENT))
        curl = one(self, spans, CLIENT, **{"service.name": "unknown_service:curl"})
        ngx_server = one(self, spans, SERVER, **{"service.name": "unknown_service:nginx"})
        ngx_client = one(self, spans, CLIENT, **{"service.name": "unknown_service:nginx"})
        py = one(self, spans, SERVER, **{"service.name": "unknown_service:python3.11"})
        self.assertChildOf(spans, ngx_server, curl)
        self.assertChildOf(spans, ngx_client, ngx_server)
        self.assertChildOf(spans, py, ngx_client)
        self.assertEqual(ngx_client["attrs"]["server.port"], upstream)

    def test_nginx_reverse_proxy_default_config_nests(self):
        """By default nginx forwards the caller's traceparent itself. The shim
        recognises the forwarded copy (same trace id and parent id as nginx's
        SERVER span received) and replaces its parent-id in place with nginx's
        CLIENT span id: curl CLIENT > nginx SERVER > nginx CLIENT > python SERVER."""
        env = self.make_env()
        upstream = PythonServer.serve(self, env)
        port = self.start_nginx(env, upstream)
        self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/proxy/" % port]))
        spans = env.wait_spans(4, where=lambda s: s["kind"] in (SERVER, CLIENT))
        curl = one(self, spans, CLIENT, **{"service.name": "unknown_service:curl"})
        ngx_server = one(self, spans, SERVER, **{"service.name": "unknown_service:nginx"})
        ngx_client = one(self, spans, CLIENT, **{"service.name": "unknown_service:nginx"})
        py = one(self, spans, SERVER, **{"service.name": "unknown_service:python3.11"})
        self.assertChildOf(spans, ngx_server, curl)
        self.assertChildOf(spans, ngx_client, ngx_server)
        self.assertChildOf(spans, py, ngx_client)

    def test_forwarded_traceparent_rewritten_in_place_app_made_one_kept(self):
        """What the upstream receives: exactly one traceparent, the caller's
        trace id and flags with nginx's CLIENT span as parent, tracestate as
        the caller sent it. A traceparent nginx did not receive (set in its
        config: the application's own) goes out untouched."""
        env = self.make_env()
        with httpfixture.HttpServer(self.make_tmpdir()) as up:
            port = self.start_nginx(env, up.port)
            tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            r = env.run(["curl", "-s", "-o", "/dev/null", "-H", "traceparent: " + tp, "-H", "tracestate: v=1,w=2",
                         "http://127.0.0.1:%d/proxy/x" % port])
            self.assertOk(r)
            spans = env.wait_spans(2, where=lambda s: s["kind"] in (SERVER, CLIENT)
                                   and s["attrs"].get("service.name") == "unknown_service:nginx")
            ngx_server = one(self, spans, SERVER, **{"service.name": "unknown_service:nginx"})
            ngx_client = one(self, spans, CLIENT, **{"service.name": "unknown_service:nginx"})
            self.assertEqual(ngx_server["parent_span_id"], "b7ad6b7169203331")
            self.assertChildOf(spans, ngx_client, ngx_server)
            got = [r["headers"] for r in up.requests if r["path"] == "/x"]
            self.assertEqual(len(got), 1)
            self.assertEqual(got[0]["traceparent"],
                             "00-0af7651916cd43dd8448eb211c80319c-%s-01" % ngx_client["span_id"])
            self.assertEqual(got[0]["tracestate"], "v=1,w=2")
        with httpfixture.HttpServer(self.make_tmpdir()) as up:
            mine = "00-11111111111111111111111111111111-2222222222222222-01"
            port = self.start_nginx(env, up.port, 'proxy_set_header traceparent "%s";' % mine)
            self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", "-H", "traceparent: " + tp,
                                   "http://127.0.0.1:%d/proxy/y" % port]))
            tstest.wait_until(lambda: [r for r in up.requests if r["path"] == "/y"], 10, "upstream request")
            got = [r["headers"] for r in up.requests if r["path"] == "/y"]
            self.assertEqual(got[0]["traceparent"], mine)


class NodeSdk(tstest.TestCase):
    """Interop with @opentelemetry/sdk-trace-node + instrumentation-http."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(NODE_DIR, exist_ok=True)
        for f in ("package.json", "app.js"):
            shutil.copy(os.path.join(HERE, "node", f), NODE_DIR)
        if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@opentelemetry", "sdk-trace-node")):
            p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                               capture_output=True, timeout=600)
            if p.returncode != 0:
                raise AssertionError("npm install of the OpenTelemetry JS SDK failed: %s" % p.stderr.decode()[-2000:])

    def node_spans(self, path, count):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    got = [json.loads(line) for line in f if line.strip()]
                if len(got) >= count:
                    return got
            time.sleep(0.05)
        self.fail("the Node SDK exported fewer than %d spans to %s" % (count, path))

    def test_sdk_server_span_is_child_of_our_client_span(self):
        env = self.make_env()
        out = os.path.join(self.make_tmpdir(), "node-spans.jsonl")
        port = httpfixture.free_port()
        node = subprocess.Popen(["node", "app.js", "server", str(port), out], cwd=NODE_DIR,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(httpfixture.stop_process, node)
        httpfixture.wait_port(port, proc=node)
        r = env.run(["curl", "-s", "http://127.0.0.1:%d/hello" % port])
        self.assertEqual(r.stdout, b"node says hello\n")
        client = one(self, env.wait_spans(1, where=lambda s: s["kind"] == CLIENT), CLIENT)
        sdk_server = [s for s in self.node_spans(out, 1) if s["kind"] == 1]  # JS SpanKind.SERVER
        self.assertEqual(len(sdk_server), 1)
        self.assertEqual(sdk_server[0]["traceId"], client["trace_id"])
        self.assertEqual(sdk_server[0]["parentSpanId"], client["span_id"])

    def test_our_server_span_is_child_of_the_sdk_client_span(self):
        env = self.make_env()
        port = PythonServer.serve(self, env)
        out = os.path.join(self.make_tmpdir(), "node-spans.jsonl")
        p = subprocess.run(["node", "app.js", "client", "http://127.0.0.1:%d/" % port, out], cwd=NODE_DIR,
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        sdk_client = [s for s in self.node_spans(out, 1) if s["kind"] == 2]  # JS SpanKind.CLIENT
        self.assertEqual(len(sdk_client), 1)
        server = one(self, env.wait_spans(1, where=lambda s: s["kind"] == SERVER), SERVER)
        self.assertEqual(server["trace_id"], sdk_client[0]["traceId"])
        self.assertEqual(server["parent_span_id"], sdk_client[0]["spanId"])
        self.assertEqual(server["flags"] & 0x300, 0x300, "the parent is remote")

    def test_node_under_the_shim_joins_the_sdk_trace(self):
        """Node itself preloaded: its SDK already wrote a traceparent, so the
        shim injects nothing and parents its CLIENT span on the SDK's span."""
        env = self.make_env()
        port = PythonServer.serve(self, env)
        out = os.path.join(self.make_tmpdir(), "node-spans.jsonl")
        p = env.run(["node", "app.js", "client", "http://127.0.0.1:%d/" % port, out], via="preload", cwd=NODE_DIR,
                    timeout=60)
        self.assertOk(p)
        sdk_client = [s for s in self.node_spans(out, 1) if s["kind"] == 2][0]
        spans = env.wait_spans(2, where=lambda s: s["kind"] in (SERVER, CLIENT))
        ours = one(self, spans, CLIENT, **{"service.name": "unknown_service:node"})
        server = one(self, spans, SERVER)
        self.assertEqual(ours["parent_span_id"], sdk_client["spanId"])
        self.assertEqual(server["parent_span_id"], sdk_client["spanId"], "the SDK's header went out untouched")


if __name__ == "__main__":
    tstest.main()
