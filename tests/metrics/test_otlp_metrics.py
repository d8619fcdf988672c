"""OTLP/HTTP metrics, decoded with the official schema
(@opentelemetry/otlp-grpc-exporter-base@0.38.0, fetched at test time).

The exporter posts every OTEL_METRIC_EXPORT_INTERVAL (300 ms here) to
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (the receiver answers 503 first: the
export is retried as traces are); after 30 traced requests, 10 answered 500,
a request must carry: traces.span.metrics.calls 30 / 10 errors for the server
(cumulative, monotonic, under a resource with its service.name), the
duration histogram with the exporter's bounds and buckets that add up, the
client→server edge 30 / 10 failed, http.server.request.duration, and the
health metrics. SIGTERM sends a last export. And a Prometheus port that is taken
stops the exporter at start with the reason. Takes ~3 s.
"""

import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import tstest  # noqa: E402

import metricslib as ml  # noqa: E402
import otlp_proto  # noqa: E402
import otlp_receiver  # noqa: E402

TOTAL, FAILING = 30, 10
CUMULATIVE = 2


def attrs(kvs):
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}


def decode(body):
    pb = otlp_proto.ensure_metrics_schema()
    req = pb.ExportMetricsServiceRequest()
    req.ParseFromString(body)
    return req


def metrics_of(req):
    """[(resource attrs, metric)] of one request."""
    out = []
    for rm in req.resource_metrics:
        res = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.append((res, m))
    return out


def sum_points(req, name, service=None, **want):
    """Sum of the Sum data points of `name` (under `service`) whose attributes include `want`."""
    total = 0
    for res, m in metrics_of(req):
        if m.name != name or (service and res.get("service.name") != service):
            continue
        data = m.sum if m.WhichOneof("data") == "sum" else m.histogram
        for p in data.data_points:
            a = attrs(p.attributes)
            if all(a.get(k) == v for k, v in want.items()):
                total += p.as_int if m.WhichOneof("data") == "sum" else p.count
    return total


class OtlpMetricsTest(tstest.TestCase):
    def test_counts_arrive_at_v1_metrics(self):
        otlp_proto.ensure_metrics_schema()  # fetch before timing anything
        recv = otlp_receiver.OtlpReceiver().start()
        self.addCleanup(recv.stop)
        recv.script(otlp_receiver.status(503))
        env = self.make_env(env={"OTEL_METRICS_EXPORTER": "otlp",
                                 "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": recv.url + "/v1/metrics",
                                 "OTEL_METRIC_EXPORT_INTERVAL": "300"})
        srv = ml.start_server(env)
        self.assertEqual(ml.run_requests(env, srv.port, TOTAL, FAILING), {200: TOTAL - FAILING, 500: FAILING})

        def settled(req):
            return (sum_points(req, "traces.span.metrics.calls", "shop-server", **{"span.kind": "SPAN_KIND_SERVER"})
                    == TOTAL and sum_points(req, "traces_service_graph_request_total") == TOTAL)
        last = {}

        def arrived():
            for r in recv.requests[len(last.get("seen", [])):]:
                if r.accepted and settled(decode(r.body)):
                    last["req"] = r
                    return True
            return False
        tstest.wait_until(arrived, 20, lambda: "a metrics request with %d server calls (%d requests)"
                          % (TOTAL, len(recv.requests)))
        r = last["req"]
        self.assertEqual(r.path, "/v1/metrics")
        self.assertEqual(r.headers.get("content-type"), "application/x-protobuf")
        req = decode(r.body)
        self.assertEqual(sum_points(req, "traces.span.metrics.calls", "shop-server",
                                    **{"span.kind": "SPAN_KIND_SERVER", "status.code": "STATUS_CODE_ERROR"}), FAILING)
        self.assertEqual(sum_points(req, "traces_service_graph_request_total", client="shop-client",
                                    server="shop-server"), TOTAL)
        self.assertEqual(sum_points(req, "traces_service_graph_request_failed_total", client="shop-client",
                                    server="shop-server"), FAILING)
        self.assertEqual(sum_points(req, "http.server.request.duration", "shop-server"), TOTAL)
        self.assertEqual(sum_points(req, "http.server.request.duration", "shop-server",
                                    **{"http.response.status_code": 500}), FAILING)
        # Shapes: cumulative, monotonic sums; histograms whose buckets add up.
        seen = set()
        for res, m in metrics_of(req):
            seen.add(m.name)
            kind = m.WhichOneof("data")
            if kind == "sum":
                self.assertEqual(m.sum.aggregation_temporality, CUMULATIVE, m.name)
                self.assertTrue(m.sum.is_monotonic, m.name)
            elif kind == "histogram":
                self.assertEqual(m.histogram.aggregation_temporality, CUMULATIVE, m.name)
                self.assertEqual(m.unit, "s", m.name)
                for p in m.histogram.data_points:
                    self.assertEqual(list(p.explicit_bounds), list(ml.BOUNDS))
                    self.assertEqual(len(p.bucket_counts), len(ml.BOUNDS) + 1)
                    self.assertEqual(sum(p.bucket_counts), p.count)
                    self.assertGreater(p.sum, 0)
                    self.assertGreater(p.time_unix_nano, p.start_time_unix_nano)
        for name in ("traces.span.metrics.duration", "traces_service_graph_request_server_seconds",
                     "traces_service_graph_request_client_seconds", "http.client.request.duration",
                     "traceshim.exporter.spans.received", "traceshim.exporter.queue.depth"):
            self.assertIn(name, seen)
        # Span metrics sit under their service's resource, the graph under the exporter's.
        services = {res.get("service.name") for res, m in metrics_of(req) if m.name == "traces.span.metrics.calls"}
        self.assertEqual(services, {"shop-client", "shop-server"})
        st = env.status()
        self.assertGreaterEqual(int(st["metrics_export_retries"]), 1, "the 503 was not retried: %r" % st)
        self.assertGreater(int(st["metrics_exported_points"]), 0)
        # A last export at SIGTERM.
        before = len(recv.requests)
        self.assertEqual(env.stop_exporter(), 0)
        self.assertGreater(len(recv.requests), before)


class MetricsStartupTest(tstest.TestCase):
    def test_a_busy_prometheus_port_is_a_clear_refusal(self):
        # An explicit setting that cannot be honoured stops the exporter at
        # start, with the reason, rather than running without its metrics.
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        env = self.make_env(start_exporter=False,
                            env={"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
                                 "OTEL_EXPORTER_PROMETHEUS_PORT": str(busy.getsockname()[1])})
        with self.assertRaises(AssertionError) as cm:
            env.start_exporter()
        self.assertIn("status 1", str(cm.exception))
        self.assertIn("cannot listen on 127.0.0.1:%d for Prometheus" % busy.getsockname()[1], env.exporter_log())


if __name__ == "__main__":
    tstest.main()
