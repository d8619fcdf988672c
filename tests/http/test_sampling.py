"""Head sampling in the shim (issue 5): a sampled-out trace ships no spans but
still propagates its context with flags 00, and ratio decisions derive from
the trace id, so every process of a trace agrees."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import httpfixture  # noqa: E402
import tstest  # noqa: E402

TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$")


class Sampling(tstest.TestCase):
    def test_always_off_exports_nothing_but_propagates_flags_00(self):
        env = self.make_env()
        srv = self.start_http_server()  # untraced: records what arrives
        for _ in range(3):
            self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", srv.url()],
                                  env={"OTEL_TRACES_SAMPLER": "always_off"}))
        got = [r["headers"].get("traceparent") for r in srv.requests]
        self.assertEqual(len(got), 3)
        for tp in got:
            m = TP.match(tp or "")
            self.assertTrue(m, tp)
            self.assertEqual(m.group(3), "00")
        # a marker run proves the exporter is up and the file is read: only its spans are there
        self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", srv.url()]))
        spans = env.wait_spans(1, where=lambda s: s["kind"] == 3)
        self.assertEqual({s["attrs"]["process.pid"] for s in spans}, {spans[0]["attrs"]["process.pid"]},
                         "the always_off runs exported something")

    def test_parent_based_server_follows_an_unsampled_caller(self):
        env = self.make_env()
        www = self.make_tmpdir()
        proc, port = httpfixture.spawn_http_server(www, env=env.environ("preload"))
        self.addCleanup(httpfixture.stop_process, proc)
        self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/" % port],
                              env={"OTEL_TRACES_SAMPLER": "always_off"}))
        self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/?marker" % port]))
        spans = env.wait_spans(2, where=lambda s: s["kind"] in (2, 3))
        servers = [s for s in spans if s["kind"] == 2]
        self.assertEqual([s["attrs"].get("url.query") for s in servers], ["marker"])

    def test_traceidratio_keeps_about_a_quarter_and_processes_agree(self):
        env = self.make_env()
        www = self.make_tmpdir()
        sampler = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
        proc, port = httpfixture.spawn_http_server(www, env=env.environ("preload", sampler))
        self.addCleanup(httpfixture.stop_process, proc)
        for i in range(80):
            self.assertOk(env.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/?i=%d" % (port, i)],
                                  via="preload", env=sampler))
        # every run has flushed at exit; give the exporter one schedule delay more
        spans = env.wait_spans(0, settle=1.0)
        client_traces = {s["trace_id"] for s in spans if s["kind"] == 3}
        server_traces = {s["trace_id"] for s in spans if s["kind"] == 2}
        roots = [s for s in spans if s["name"] == "curl"]
        self.assertEqual(len(roots), len(client_traces), "a kept trace keeps all its spans")
        # binomial(80, 0.25): mean 20, sd 3.9; 8..32 is +-3 sd
        self.assertTrue(8 <= len(client_traces) <= 32, "kept %d of 80" % len(client_traces))
        self.assertEqual(client_traces, server_traces, "client and server decide alike from the trace id")


if __name__ == "__main__":
    tstest.main()
