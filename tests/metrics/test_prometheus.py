"""RED metrics and the service graph, as a real Prometheus sees them.

One private Prometheus (scrape interval 1 s) scrapes three exporters, one
per scenario; each exporter serves a traced python http.server ("shop-server",
500 on /fail/…) called by 30 traced curl runs ("shop-client"), 10 of them
answered 500:

  plain   every span exported
  tail    TRACESHIM_TAIL_SAMPLING keeps only error traces
  head    the client samples traceidratio 0.5 (the server follows its parent)

In every scenario Prometheus's query API must answer 30 calls and 10 errors
for the server, the client→server edge with 30 requests and 10 failed, and
(plain) the p95 that the server spans' real durations give in the exporter's
buckets. Takes ~15-25 s, most of it Prometheus starting and scraping.
"""

import os
import subprocess
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import tstest  # noqa: E402

import metricslib as ml  # noqa: E402

TOTAL, FAILING = 30, 10

SERVER_CALLS = 'sum(traces_span_metrics_calls_total{job="%s",service_name="shop-server",span_kind="SPAN_KIND_SERVER"})'
SERVER_ERRORS = ('sum(traces_span_metrics_calls_total{job="%s",service_name="shop-server",'
                 'span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR"})')
EDGE = 'sum(traces_service_graph_request_total{job="%s",client="shop-client",server="shop-server"})'
EDGE_FAILED = 'sum(traces_service_graph_request_failed_total{job="%s",client="shop-client",server="shop-server"})'
HTTP_SERVER = 'sum(http_server_request_duration_seconds_count{job="%s",service_name="shop-server"})'
HTTP_SERVER_500 = ('sum(http_server_request_duration_seconds_count{job="%s",service_name="shop-server",'
                   'http_response_status_code="500"})')
P95 = ('histogram_quantile(0.95, sum by (le) (traces_span_metrics_duration_seconds_bucket{job="%s",'
       'service_name="shop-server",span_kind="SPAN_KIND_SERVER"}))')


class PrometheusTest(tstest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.envs, cls.ports, cls.servers = {}, {}, {}
        scenarios = {
            "plain": ({}, {}),
            "tail": ({"TRACESHIM_TAIL_SAMPLING": "1", "TRACESHIM_TAIL_RATIO": "0", "TRACESHIM_TAIL_WAIT_MS": "300",
                      "TRACESHIM_TAIL_SLOW_MS": "600000"}, {}),
            "head": ({}, {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}),
        }
        cls.client_env = {}
        try:
            for name, (exporter_env, client_env) in scenarios.items():
                port = ml.free_port()
                e = {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
                     "OTEL_EXPORTER_PROMETHEUS_PORT": str(port)}
                e.update(exporter_env)
                cls.envs[name] = tstest.tsenv.Env(env=e)
                cls.ports[name] = port
                cls.client_env[name] = client_env
                cls.servers[name] = ml.start_server(cls.envs[name])
            cls.tmp = tstest.tsenv.short_tmpdir("traceshim-prom-")
            cls.prom = ml.Prometheus(cls.ports, cls.tmp)
            cls.codes = {name: ml.run_requests(cls.envs[name], cls.servers[name].port, TOTAL, FAILING,
                                               extra_env=cls.client_env[name]) for name in scenarios}
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "prom", None):
            cls.prom.close()
        for env in cls.envs.values():
            env.close()
        if getattr(cls, "tmp", None) and not tstest.tsenv.KEEP:
            import shutil
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def check_red(self, job):
        self.assertEqual(self.codes[job], {200: TOTAL - FAILING, 500: FAILING}, "the services answered otherwise")
        p = self.prom
        p.wait_value(SERVER_CALLS % job, TOTAL)
        p.wait_value(SERVER_ERRORS % job, FAILING)
        p.wait_value(EDGE % job, TOTAL)
        p.wait_value(EDGE_FAILED % job, FAILING)
        self.assertEqual(p.value('up{job="%s"}' % job), 1)

    def test_plain_counts_p95_and_edge(self):
        self.check_red("plain")
        p = self.prom
        p.wait_value(HTTP_SERVER % "plain", TOTAL)
        self.assertEqual(p.value(HTTP_SERVER_500 % "plain"), FAILING)
        # The p95 Prometheus computes from our buckets is the one the server
        # spans' own durations (from the trace file) give.
        spans = self.envs["plain"].wait_spans(TOTAL, where=lambda s: s in ml.server_spans([s]))
        durations = [(s["end_ns"] - s["start_ns"]) / 1e9 for s in ml.server_spans(spans)]
        self.assertEqual(len(durations), TOTAL)
        want = ml.prom_quantile(0.95, durations)
        got = p.value(P95 % "plain")
        self.assertIsNotNone(got, "no p95")
        self.assertAlmostEqual(got, want, places=9)
        # Every client span found its server span: nothing is left waiting.
        # The page itself passes Prometheus' own linter (text format 0.0.4:
        # HELP/TYPE per family, names, label syntax, histogram series).
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.ports["plain"], timeout=10) as r:
            self.assertEqual(r.headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
            page = r.read()
        lint = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=page, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(lint.returncode, 0, lint.stdout.decode(errors="replace")[-2000:])
        # `traceshim status` (the wrapper) shows the metrics figures.
        r = self.envs["plain"].wrapper("status")
        self.assertOk(r)
        st = dict(line.split("=", 1) for line in r.stdout.decode().splitlines() if "=" in line)
        self.assertEqual(int(st["metrics_graph_paired"]), TOTAL)
        self.assertEqual(st["metrics"], "prometheus")
        self.assertGreater(int(st["metrics_series"]), 0)
        self.assertGreaterEqual(int(st["metrics_scrapes"]), 1)

    def test_tail_sampling_keeps_errors_only_counts_all(self):
        self.check_red("tail")
        self.prom.wait_value(HTTP_SERVER % "tail", TOTAL)
        env = self.envs["tail"]
        env.wait_status("tail_dropped_traces", TOTAL - FAILING)
        spans = env.wait_spans(FAILING, where=lambda s: s in ml.server_spans([s]))
        kept = ml.server_spans(spans)
        self.assertEqual(len(kept), FAILING, "tail sampling should keep the error traces only")
        self.assertTrue(all(s["attributes"].get("http.response.status_code") == 500 for s in kept))

    def test_head_sampling_counts_sampled_out_requests(self):
        self.check_red("head")
        env = self.envs["head"]
        # Settled: every request's two spans are either exported or were
        # counted as metrics-only records.
        tstest.wait_until(
            lambda: len(ml.server_spans(env.spans())) * 2 + env.status_int("metrics_only_records") == 2 * TOTAL,
            15, lambda: "spans + metrics-only records of %d requests (status %r)" % (TOTAL, env.status()))
        exported = len(ml.server_spans(env.spans()))
        self.assertGreater(exported, 0, "ratio 0.5 sampled no request in")
        self.assertLess(exported, TOTAL, "ratio 0.5 sampled every request in")
        self.assertEqual(env.status_int("metrics_graph_paired"), TOTAL)
        # The HTTP histogram is made from attributes, which a sampled-out span
        # has none of: it covers the sampled-in requests (docs/EXPORTER.md).
        self.prom.wait_value(HTTP_SERVER % "head", exported)


if __name__ == "__main__":
    tstest.main()
