#!/usr/bin/python3
"""OTLP/HTTP export when the backend misbehaves (design notes, OTLP section):
retry 429/502/503/504 and dropped connections, honouring Retry-After; 400 and a
200 with partial_success are final; a backend that is down and comes back gets
the spans; a backend that hangs is cut off by OTEL_EXPORTER_OTLP_TIMEOUT."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import otlp_proto  # noqa: E402
import otlp_receiver as rx  # noqa: E402
import spans as spanlib  # noqa: E402
import tstest  # noqa: E402


def ids(spans):
    return {(s["trace_id"], s["span_id"]) for s in spans}


def curl_trace_complete(spans):
    """curl's process span and its connect (curl resolves "localhost" itself)."""
    return {"curl", "connect"} <= {s["name"] for s in spans}


class OtlpRetry(tstest.TestCase):
    @classmethod
    def setUpClass(cls):
        otlp_proto.ensure_schema()  # required: fails without npm

    def setUp(self):
        self.srv = self.start_http_server()
        self.url = self.srv.url("/")
        self.rcv = rx.OtlpReceiver().start()
        self.addCleanup(self.rcv.stop)

    def otlp_env(self, **extra):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": self.rcv.url, "OTEL_TRACES_EXPORTER": "otlp"}
        env.update(extra)
        return self.make_env(env=env)

    def traced_curl(self, env):
        r = env.run(["curl", "-s", self.url])
        self.assertOk(r)
        self.assertEqual(r.stdout, tstest.INDEX_BODY, "the program's output does not depend on the backend")

    def assertExporterAlive(self, env):
        self.assertIsNone(env.exporter.poll(), "the exporter died:\n" + env.exporter_log()[-2000:])
        self.assertTrue(env.ping())

    def assertRetriedLater(self, first, min_delay):
        """The spans of the refused `first` request arrive in an accepted one, not before min_delay."""
        want = ids(first.spans())
        self.assertTrue(want, "the first request carried no spans")
        self.rcv.wait_spans(lambda got: want <= ids(got), timeout=12, what="the retried batch")
        retry = next(r for r in self.rcv.requests if r.accepted and ids(r.spans()) & want)
        delay = retry.received_at - first.received_at
        self.assertGreaterEqual(delay, min_delay, "retried after %.2fs" % delay)
        return retry

    def assertNeverResent(self, first, wait_s=3.0):
        want = ids(first.spans())
        self.assertTrue(want)
        time.sleep(wait_s)
        for r in self.rcv.requests[1:]:
            self.assertFalse(ids(r.spans()) & want, "a finally-answered batch was sent again: %r" % (r,))

    def test_retry_after_is_honoured(self):
        for code in (503, 429):
            with self.subTest(status=code):
                self.rcv.stop()
                self.rcv = rx.OtlpReceiver().start()
                self.addCleanup(self.rcv.stop)
                env = self.otlp_env()
                self.rcv.script(rx.status(code, retry_after=1))
                self.traced_curl(env)
                first = self.rcv.wait_requests(1, timeout=15)[0]
                self.assertFalse(first.accepted)
                self.assertRetriedLater(first, min_delay=0.9)
                self.rcv.wait_spans(curl_trace_complete, what="the whole trace")
                self.assertExporterAlive(env)

    def test_retry_after_as_an_http_date(self):
        import email.utils
        env = self.otlp_env()
        when = email.utils.formatdate(time.time() + 3, usegmt=True)  # 2-3 s ahead, at 1 s resolution
        self.rcv.script(rx.status(503, retry_after=when))
        self.traced_curl(env)
        first = self.rcv.wait_requests(1, timeout=15)[0]
        self.assertFalse(first.accepted)
        self.assertRetriedLater(first, min_delay=1.5)
        self.assertExporterAlive(env)

    def test_dropped_connection_is_retried(self):
        env = self.otlp_env()
        self.rcv.script(rx.close_connection())
        self.traced_curl(env)
        first = self.rcv.wait_requests(1)[0]
        self.assertRetriedLater(first, min_delay=0.0)
        self.assertExporterAlive(env)

    def test_400_is_final(self):
        env = self.otlp_env()
        self.rcv.script(rx.status(400))
        self.traced_curl(env)
        first = self.rcv.wait_requests(1)[0]
        self.assertNeverResent(first)
        st = env.status()
        dropped = sum(int(v) for k, v in st.items() if k.startswith("dropped_") and v.strip().isdigit())
        self.assertGreater(dropped, 0, "spans refused with 400 are counted as dropped: %r" % (st,))
        self.assertEqual(int(st["dropped_rejected"]), len(first.spans()), st)
        self.assertIn("HTTP 400", st["last_error"])
        self.assertTrue(st["last_error_at"], "the error has a time")
        self.assertExporterAlive(env)

    def test_partial_success_is_not_retried(self):
        env = self.otlp_env()
        self.rcv.script(rx.partial_success(1, "one span rejected by the test"))
        self.traced_curl(env)
        first = self.rcv.wait_requests(1)[0]
        self.assertTrue(first.accepted)
        self.assertNeverResent(first)
        st = env.status()
        self.assertEqual(int(st["dropped_rejected"]), 1, st)
        self.assertEqual(int(st["exported_spans"]), int(st["received_spans"]) - 1, st)
        self.assertIn("one span rejected by the test", env.exporter_log(), "logged")
        self.assertExporterAlive(env)

    def test_backend_down_then_up(self):
        env = self.otlp_env()
        self.rcv.stop()  # connections to its port are now refused
        self.traced_curl(env)
        deadline = time.monotonic() + 10
        while int(env.status().get("received_spans", "0") or 0) < 3:
            self.assertLess(time.monotonic(), deadline, "exporter status: %r" % (env.status(),))
            time.sleep(0.05)
        time.sleep(1.0)
        self.assertIsNone(env.exporter.poll(), "the exporter died while the backend was down")
        self.rcv.start()  # same port
        spans = self.rcv.wait_spans(curl_trace_complete, timeout=20, what="spans held while the backend was down")
        self.assertEqual(len(spanlib.trace_ids(spans)), 1, spanlib.describe(spans))
        self.assertExporterAlive(env)

    def test_hanging_backend_hits_the_export_timeout(self):
        env = self.otlp_env(OTEL_EXPORTER_OTLP_TIMEOUT="1000")
        self.rcv.script(rx.hang(15))
        self.traced_curl(env)
        first = self.rcv.wait_requests(1)[0]
        self.rcv.wait_spans(lambda got: ids(first.spans()) <= ids(got), timeout=8,
                            what="the batch retried after the 1 s export timeout (the first answer takes 15 s)")
        retry = next(r for r in self.rcv.requests if r.accepted and ids(r.spans()) & ids(first.spans()))
        self.assertLess(retry.received_at - first.received_at, 9)
        self.assertExporterAlive(env)


if __name__ == "__main__":
    tstest.main()
