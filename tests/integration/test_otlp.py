#!/usr/bin/python3
"""OTLP/HTTP export: what the exporter POSTs decodes with the official
opentelemetry-proto schema into the same linked trace the file sink holds."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import otlp_proto  # noqa: E402
import otlp_receiver  # noqa: E402
import spans as spanlib  # noqa: E402
import tstest  # noqa: E402

attr = spanlib.attr


def trace_complete(spans):
    """The process span, its getaddrinfo(localhost) and its successful connect.
    (The client is python: curl answers "localhost" without getaddrinfo.)"""
    return (any(not s["parent_span_id"] for s in spans)
            and any(s["name"] == "getaddrinfo" and attr(s, "dns.question.name") == "localhost" for s in spans)
            and any(s["name"] == "connect" and s["status_code"] != 2 for s in spans))


class Otlp(tstest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A required check: no npm / protoc / python3-protobuf is a failure here.
        otlp_proto.ensure_schema()

    def setUp(self):
        self.srv = self.start_http_server()
        self.url = self.srv.url("/", host="localhost")
        self.client = tstest.python_get(self.url)
        self.rcv = otlp_receiver.OtlpReceiver().start()
        self.addCleanup(self.rcv.stop)

    def otlp_env(self, **extra):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": self.rcv.url, "OTEL_TRACES_EXPORTER": "otlp"}
        env.update(extra)
        return self.make_env(env=env)

    def assertLinkedTrace(self, spans, pid, service_name=None):
        self.assertEqual(len(spanlib.trace_ids(spans)), 1, spanlib.describe(spans))
        roots = spanlib.roots(spans)
        self.assertEqual(len(roots), 1, spanlib.describe(spans))
        proc = roots[0]
        self.assertEqual(attr(proc, "process.pid"), pid)
        if service_name:
            self.assertEqual(attr(proc, "service.name"), service_name)
        gai = [s for s in spanlib.spans_by_name(spans, "getaddrinfo") if attr(s, "dns.question.name") == "localhost"]
        conns = [s for s in spanlib.spans_by_name(spans, "connect") if s["status_code"] != 2]
        self.assertEqual(len(gai), 1, spanlib.describe(spans))
        self.assertEqual(len(conns), 1, spanlib.describe(spans))
        self.assertEqual(attr(conns[0], "network.peer.port"), self.srv.port)
        self.assertEqual(attr(conns[0], "server.address"), "localhost")
        for s in gai + conns:
            self.assertChildOf(spans, s, proc)
            self.assertWithin(s, proc)
        for s in spans:
            self.assertEqual(s["scope_name"], "traceshim")
            self.assertRegex(s["trace_id"], "^[0-9a-f]{32}$")
        return proc

    def test_export_decodes_with_the_official_schema(self):
        env = self.otlp_env(
            OTEL_SERVICE_NAME="otlp-probe",
            OTEL_EXPORTER_OTLP_HEADERS="x-traceshim-test=token-123,authorization=Bearer%20abc")
        r = env.run(self.client)
        self.assertOk(r)
        self.assertEqual(r.stdout, tstest.INDEX_BODY)
        spans = self.rcv.wait_spans(trace_complete, what="the client's trace over OTLP")
        self.assertLinkedTrace(spans, r.pid, "otlp-probe")
        for s in spans:
            self.assertEqual(s["resource"].get("service.name"), "otlp-probe")
        reqs = self.rcv.requests
        self.assertTrue(reqs)
        for req in reqs:
            self.assertEqual(req.method, "POST")
            self.assertEqual(req.path, "/v1/traces")
            self.assertEqual(req.headers.get("content-type"), "application/x-protobuf")
            self.assertEqual(req.headers.get("x-traceshim-test"), "token-123")
            self.assertEqual(req.headers.get("authorization"), "Bearer abc", "header values are percent-decoded")
            self.assertTrue(req.body, "empty export request")

    def test_traces_endpoint_is_used_as_is(self):
        env = self.make_env(env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": self.rcv.url + "/custom/ingest",
                                 "OTEL_TRACES_EXPORTER": "otlp"})
        r = env.run(self.client)
        self.assertOk(r)
        spans = self.rcv.wait_spans(trace_complete)
        self.assertLinkedTrace(spans, r.pid)
        self.assertEqual({r.path for r in self.rcv.requests}, {"/custom/ingest"})

    def test_file_and_otlp_sinks_agree(self):
        env = self.otlp_env(OTEL_TRACES_EXPORTER="otlp,file")
        self.assertOk(env.run(self.client))
        self.rcv.wait_spans(trace_complete)
        env.wait_for(trace_complete, what="the client's trace in the file")
        time.sleep(0.5)  # let stragglers land in both
        from_otlp, from_file = self.rcv.spans(), env.spans()
        key = lambda s: (s["trace_id"], s["span_id"])  # noqa: E731
        self.assertEqual(sorted(map(key, from_otlp)), sorted(map(key, from_file)), "same spans in both sinks")
        by_key = {key(s): s for s in from_file}
        for s in from_otlp:
            a, b = spanlib.comparable(s), spanlib.comparable(by_key[key(s)])
            if "flags" not in a or "flags" not in b:
                a.pop("flags", None)
                b.pop("flags", None)
            self.assertEqual(a, b, "span %s differs between OTLP and the file" % s["name"])

    def test_sigterm_flushes_pending_spans_over_otlp(self):
        env = self.otlp_env(OTEL_BSP_SCHEDULE_DELAY="60000")
        self.assertOk(env.run(self.client))
        deadline = time.monotonic() + 10
        while int(env.status().get("received_spans", "0") or 0) < 3:
            self.assertLess(time.monotonic(), deadline, "exporter status: %r" % (env.status(),))
            time.sleep(0.05)
        self.assertEqual(self.rcv.requests, [], "the batch delay is 60 s: nothing should be sent yet")
        t0 = time.monotonic()
        self.assertEqual(env.stop_exporter(signal.SIGTERM), 0)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertTrue(trace_complete(self.rcv.spans()), spanlib.describe(self.rcv.spans()))


if __name__ == "__main__":
    tstest.main()
