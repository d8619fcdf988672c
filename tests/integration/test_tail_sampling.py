#!/usr/bin/python3
"""Tail sampling in the exporter (issue 5): with TRACESHIM_TAIL_SAMPLING=1 a
trace is decided TRACESHIM_TAIL_WAIT_MS after its first span arrived: every
trace with an ERROR span or a span of at least TRACESHIM_TAIL_SLOW_MS is
kept, TRACESHIM_TAIL_RATIO of the others (by trace id, deterministically),
spans arriving after the decision follow it, and the spans held for pending
traces are bounded (decided early, counted). Counts show in --status."""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.append(os.path.join(HERE, "..", "exporter"))  # tsframes (after lib: names clash)
import httpfixture  # noqa: E402
import tsframes  # noqa: E402
import tstest  # noqa: E402


def tail_env(**kw):
    env = {"TRACESHIM_TAIL_SAMPLING": "1", "TRACESHIM_TAIL_WAIT_MS": "1000", "TRACESHIM_TAIL_RATIO": "0",
           "TRACESHIM_TAIL_SLOW_MS": "100000"}
    env.update({k: str(v) for k, v in kw.items()})
    return env


def ratio_keeps(trace_hex, ratio):
    """The rule of exporter/tail.c and the shim's traceidratio: low 8 bytes, big-endian, >> 1."""
    return ratio >= 1.0 or (int(trace_hex[16:], 16) >> 1) < int(ratio * 2.0 ** 63)


def traces(spans):
    out = {}
    for s in spans:
        out.setdefault(s["trace_id"], []).append(s)
    return out


class TailSampling(tstest.TestCase):
    def settle(self, env, received, timeout=15):
        """Until the exporter has received `received` spans and decided every pending trace."""
        deadline = time.monotonic() + timeout
        while True:
            st = env.status()
            if (int(st.get("received_spans", 0)) >= received and int(st.get("tail_pending_spans", 1)) == 0
                    and int(st.get("queue_depth", 1)) == 0):
                time.sleep(0.5)  # the export after the last decision
                return env.status()
            if time.monotonic() > deadline:
                raise AssertionError("not settled: %r" % (st,))
            time.sleep(0.1)

    def test_ratio_zero_keeps_exactly_the_error_traces(self):
        env = self.make_env(env=tail_env())
        srv = self.start_http_server()
        closed = httpfixture.closed_port()
        ok_pids, err_pids = set(), set()
        for i in range(6):
            r = env.run(["curl", "-s", "-o", "/dev/null", srv.url("/?ok=%d" % i)], via="preload")
            self.assertOk(r)
            ok_pids.add(r.pid)
            r = env.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/" % closed], via="preload")
            self.assertEqual(r.returncode, 7, r)  # couldn't connect
            err_pids.add(r.pid)
        received = int(env.status()["received_spans"])
        self.assertGreaterEqual(received, 6 * 2 + 6 * 2)
        st = self.settle(env, received)
        kept = traces(env.spans())
        self.assertEqual(len(kept), 6, "exactly the 6 error traces:\n%s" % "\n".join(map(str, kept)))
        pids = set()
        for tid, spans in kept.items():
            self.assertTrue(any(s["status_code"] == 2 for s in spans), "kept trace %s has no error" % tid)
            pids |= {s["resource"].get("process.pid") for s in spans}
            self.assertTrue(any(s["name"] == "connect" for s in spans), "the whole trace is kept")
        self.assertEqual(pids, err_pids)
        n_kept = sum(len(v) for v in kept.values())
        self.assertEqual(int(st["tail_kept_traces"]), 6, st)
        self.assertEqual(int(st["tail_dropped_traces"]), 6, st)
        self.assertEqual(int(st["dropped_sampled_out"]), received - n_kept, st)
        self.assertEqual(int(st["exported_spans"]), n_kept, st)
        self.assertEqual(st["tail_sampling"], "on")

    def test_slow_threshold_keeps_slow_traces(self):
        env = self.make_env(env=tail_env(TRACESHIM_TAIL_SLOW_MS=400))
        slow, fast = set(), set()
        for i in range(2):
            r = env.run(["sleep", "0.6"], via="preload")
            self.assertOk(r)
            slow.add(r.pid)
            r = env.run(["sleep", "0.01"], via="preload")
            self.assertOk(r)
            fast.add(r.pid)
        st = self.settle(env, 4)
        spans = env.spans()
        self.assertEqual({s["resource"].get("process.pid") for s in spans}, slow)
        self.assertEqual(len(traces(spans)), 2)
        self.assertEqual(int(st["tail_kept_traces"]), 2, st)
        self.assertEqual(int(st["tail_dropped_traces"]), 2, st)

    def test_ratio_follows_the_trace_id_and_late_spans_follow_the_decision(self):
        env = self.make_env(env=tail_env(TRACESHIM_TAIL_RATIO="0.3"))
        with tsframes.Client(env.socket, service="ratio") as c:
            ids = c.send_spans(300, name="first")
        st = self.settle(env, 300)
        want = {t for t, _ in ids if ratio_keeps(t, 0.3)}
        got = {s["trace_id"] for s in env.spans()}
        self.assertEqual(got, want, "kept exactly the traces the rule keeps")
        self.assertTrue(60 <= len(want) <= 120, len(want))  # binomial(300, 0.3): mean 90, sd 8
        self.assertEqual(int(st["dropped_sampled_out"]), 300 - len(want))
        # late spans: one more (an ERROR, even) for every trace; each follows its trace's decision
        with tsframes.Client(env.socket, service="ratio") as c:
            for t, _ in ids:
                c.send_records([tsframes.span_record(bytes.fromhex(t), os.urandom(8), "late",
                                                     status=tsframes.STATUS_ERROR)])
        st = self.settle(env, 600)
        late = {s["trace_id"] for s in env.spans() if s["name"] == "late"}
        self.assertEqual(late, want)
        self.assertEqual(int(st["tail_pending_traces"]), 0, "late spans are not held again")
        self.assertEqual(int(st["dropped_sampled_out"]), 2 * (300 - len(want)), st)

    def test_pending_spans_are_bounded(self):
        env = self.make_env(env=tail_env(TRACESHIM_TAIL_WAIT_MS=60000, TRACESHIM_TAIL_RATIO=1,
                                         TRACESHIM_TAIL_MAX_SPANS=100))
        with tsframes.Client(env.socket, service="bound") as c:
            c.send_spans(350, name="many")
        # far before the 60 s wait: the oldest 250 traces were decided early (ratio 1: kept)
        spans = env.wait_spans(250, where="many", timeout=10)
        st = env.status()
        self.assertEqual(len(spans), 250, st)
        self.assertEqual(int(st["tail_decided_early"]), 250, st)
        self.assertEqual(int(st["tail_pending_spans"]), 100, st)
        t0 = time.monotonic()
        self.assertEqual(env.stop_exporter(), 0)  # shutdown decides the rest
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(len(env.spans()), 350)


if __name__ == "__main__":
    tstest.main()
