#!/usr/bin/python3
"""No loss through backend outages and exporter restarts (issue 5):
every span the exporter received reaches the OTLP backend exactly once —
through 503/429 answers, a backend that is down, an exporter restarted with
spooled data under a traced server that keeps running, a SIGTERM while the
backend hangs — and a full spool drops its oldest batches, counted.

Ground truth for "every span" is the file sink running next to the OTLP one
(OTEL_TRACES_EXPORTER=otlp,file): it holds every span the exporter received.
"No duplicates" counts each span over every request the receiver accepted."""

import collections
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.append(os.path.join(HERE, "..", "exporter"))  # tsframes (after lib: names clash)
import httpfixture  # noqa: E402
import otlp_proto  # noqa: E402
import otlp_receiver as rx  # noqa: E402
import spans as spanlib  # noqa: E402
import tsframes  # noqa: E402
import tstest  # noqa: E402


def key(s):
    return (s["trace_id"], s["span_id"])


def delivered_counts(rcv):
    """How many times each span came in a request the receiver accepted."""
    c = collections.Counter()
    for r in rcv.requests:
        if r.accepted:
            c.update(key(s) for s in r.spans())
    return c


def spool_files(env):
    d = os.path.join(env.dir, "spool")
    try:
        return sorted(n for n in os.listdir(d) if n.endswith(".pb") and not n.startswith("."))
    except FileNotFoundError:
        return []


class Delivery(tstest.TestCase):
    @classmethod
    def setUpClass(cls):
        otlp_proto.ensure_schema()

    def setUp(self):
        self.rcv = rx.OtlpReceiver().start()
        self.addCleanup(self.rcv.stop)

    def otlp_env(self, sinks="otlp,file", **extra):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": self.rcv.url, "OTEL_TRACES_EXPORTER": sinks}
        env.update({k: str(v) for k, v in extra.items()})
        return self.make_env(env=env)

    def assertExactlyOnce(self, truth, timeout=60, what="every span"):
        """Every span of `truth` (keys) arrives, none twice, nothing else."""
        truth = set(truth)
        tstest.wait_until(lambda: truth <= set(delivered_counts(self.rcv)), timeout,
                          "%s over OTLP (%d expected, %d arrived; requests %r)"
                          % (what, len(truth), len(set(delivered_counts(self.rcv)) & truth), self.rcv.requests[-8:]))
        time.sleep(0.5)
        counts = delivered_counts(self.rcv)
        dups = {k: n for k, n in counts.items() if n > 1}
        self.assertEqual(dups, {}, "spans delivered more than once")
        self.assertEqual(set(counts), truth, "spans delivered that the exporter never received?")
        return counts

    def wait_behaviour(self, kind_code, timeout=30):
        """Until the receiver has answered at least one request with (kind, code)."""
        tstest.wait_until(lambda: any((r.behaviour.kind, r.behaviour.code) == kind_code for r in self.rcv.requests),
                          timeout, "a request answered %r" % (kind_code,))

    # ---- 1: the acceptance test --------------------------------------
    def test_twenty_runs_through_503_429_503_and_an_outage(self):
        srv = self.start_http_server()
        env = self.otlp_env()
        pids = []

        def runs(n):
            for _ in range(n):
                r = env.run(["curl", "-s", srv.url("/")])
                self.assertOk(r)
                self.assertEqual(r.stdout, tstest.INDEX_BODY)
                pids.append(r.pid)

        self.rcv.default = rx.status(503, retry_after=1)
        runs(5)
        self.wait_behaviour(("status", 503))
        self.rcv.default = rx.status(429)
        runs(5)
        self.wait_behaviour(("status", 429))
        self.rcv.default = rx.status(503)
        runs(5)
        n = len(self.rcv.requests)
        tstest.wait_until(lambda: any(r.behaviour.code == 503 for r in self.rcv.requests[n:]), 30, "the second 503")
        self.rcv.stop()  # down: the port refuses connections
        down_at = time.monotonic()
        runs(5)
        time.sleep(max(0.0, 3.0 - (time.monotonic() - down_at)))
        # down for 3 s, and (backoff permitting) until an attempt has met the closed port
        tstest.wait_until(lambda: "connect" in env.status().get("last_error", ""), 40, "an attempt while down")
        self.rcv.default = rx.ok()
        self.rcv.start()
        self.assertEqual(len(pids), 20)
        truth = {key(s) for s in env.spans()}
        self.assertEqual(len(truth), env.status_int("received_spans"), "the file holds what was received")
        self.assertEqual({s["attrs"].get("process.pid") for s in env.spans() if not s["parent_span_id"]},
                         set(pids), "every run's trace")
        self.assertExactlyOnce(truth)
        st = env.status()
        self.assertEqual(int(st["exported_spans"]), len(truth), st)
        self.assertGreaterEqual(int(st["export_retries"]), 3, st)
        for k in ("dropped_rejected", "dropped_spool_full", "dropped_export_failed", "dropped_queue_full"):
            self.assertEqual(int(st[k]), 0, "%s: %r" % (k, st))
        self.assertEqual(env.stop_exporter(signal.SIGTERM), 0)
        self.assertEqual(spool_files(env), [], "nothing left for later")

    # ---- 2: exporter restart with spooled data, traced server keeps running ----
    def test_restart_with_spooled_data_and_a_long_running_traced_server(self):
        self.rcv.stop()  # backend down from the start
        env = self.otlp_env(OTEL_BSP_EXPORT_TIMEOUT=1000)
        www = self.make_tmpdir()
        with open(os.path.join(www, "index.html"), "wb") as f:
            f.write(tstest.INDEX_BODY)
        proc, port = httpfixture.spawn_http_server(www, env=env.environ("preload"))
        self.addCleanup(httpfixture.stop_process, proc)

        def get(q):
            r = env.run(["curl", "-s", "http://127.0.0.1:%d/?%s" % (port, q)], via="plain")
            self.assertOk(r)

        def server_spans(phase):
            return [s for s in env.spans() if s["kind"] == 2 and (s["attrs"].get("url.query") or "").startswith(phase)]

        for i in range(10):
            get("before=%d" % i)
        env.wait_for(lambda sp: len(server_spans("before")) == 10, what="the first 10 server spans")
        time.sleep(1.5)  # older than OTEL_BSP_EXPORT_TIMEOUT: spooled while running
        self.assertGreater(env.status_int("spooled_spans"), 0, env.status())
        t0 = time.monotonic()
        self.assertEqual(env.stop_exporter(signal.SIGTERM), 0)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertTrue(spool_files(env), "the undelivered batches are in the spool")
        self.assertIsNone(proc.poll(), "the traced server keeps running without its exporter")

        env.start_exporter()
        # The server notices the new exporter on its own (reconnect): requests
        # until one of its spans reaches the new exporter, then 10 more.
        deadline = time.monotonic() + 15
        i = 0
        while not server_spans("probe"):
            self.assertLess(time.monotonic(), deadline, "the server never reconnected: %r" % (env.status(),))
            get("probe=%d" % i)
            i += 1
            time.sleep(0.2)
        for i in range(10):
            get("after=%d" % i)
        env.wait_for(lambda sp: len(server_spans("after")) == 10, what="10 server spans after the restart")
        self.assertIsNone(proc.poll(), "the traced server was not restarted")
        self.assertEqual(self.rcv.requests, [])
        self.rcv.start()  # the backend appears
        truth = {key(s) for s in env.spans()}
        counts = self.assertExactlyOnce(truth)
        got = [s for s in self.rcv.spans() if s["kind"] == 2]
        queries = {s["attrs"].get("url.query") for s in got}
        for i in range(10):
            self.assertIn("before=%d" % i, queries)
            self.assertIn("after=%d" % i, queries)
        self.assertEqual(sum(counts.values()), len(truth))
        tstest.wait_until(lambda: spool_files(env) == [], 10, "the spool emptied")
        st = env.status()
        self.assertGreater(int(st["spool_replayed_spans"]), 0, st)
        self.assertEqual(int(st["spooled_spans"]), 0, st)

    # ---- 3: SIGTERM with a full queue and a backend that hangs ----------------
    def test_sigterm_with_a_full_queue_and_a_hanging_backend(self):
        self.rcv.default = rx.hang(60)
        env = self.otlp_env(sinks="otlp", OTEL_BSP_EXPORT_TIMEOUT=2000, OTEL_EXPORTER_OTLP_TIMEOUT=30000,
                            OTEL_BSP_SCHEDULE_DELAY=60000, OTEL_BSP_MAX_EXPORT_BATCH_SIZE=4000,
                            OTEL_BSP_MAX_QUEUE_SIZE=8192)
        ids = []
        with tsframes.Client(env.socket, service="burst") as c:
            ids += c.send_spans(4000, name="first-batch")  # a full batch: sent at once, and hangs
            self.rcv.wait_requests(1)
            ids += c.send_spans(3000, name="queued")  # waits in the queue (60 s schedule delay)
        tstest.wait_until(lambda: env.status_int("received_spans") == 7000, 10, "7000 spans received")
        st = env.status()
        self.assertEqual(int(st["queue_depth"]), 3000, st)
        t0 = time.monotonic()
        self.assertEqual(env.stop_exporter(signal.SIGTERM), 0)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 2.0 + 2.5, "exit within the 2 s budget (+ libcurl's 1 s abort check)")
        self.assertGreaterEqual(elapsed, 1.5, "it did try to deliver during the budget")
        files = spool_files(env)
        self.assertEqual(sum(int(f.split("-")[1]) for f in files), 7000, files)

        self.rcv.default = rx.ok()
        env.start_exporter()
        self.assertExactlyOnce({(t, s) for t, s in ids})
        tstest.wait_until(lambda: spool_files(env) == [], 10, "the spool emptied")

    # ---- 4: the spool's bound -------------------------------------------------
    def test_a_full_spool_drops_its_oldest_batches(self):
        self.rcv.stop()
        env = self.otlp_env(sinks="otlp", TRACESHIM_SPOOL_MAX_BYTES=30000, OTEL_BSP_EXPORT_TIMEOUT=100,
                            OTEL_BSP_MAX_EXPORT_BATCH_SIZE=50, OTEL_BSP_SCHEDULE_DELAY=50)
        batches = []
        with tsframes.Client(env.socket, service="spool-bound") as c:
            for b in range(20):
                batches.append(c.send_spans(50, name="b%02d" % b))
                tstest.wait_until(lambda: env.status_int("spooled_spans") + env.status_int("dropped_spool_full")
                                  == 50 * (b + 1), 10, "batch %d in the spool" % b)
        st = env.status()
        kept = int(st["spooled_spans"])
        dropped = int(st["dropped_spool_full"])
        self.assertEqual(kept + dropped, 1000, st)
        self.assertGreater(dropped, 0, st)
        self.assertGreater(kept, 0, st)
        self.assertLessEqual(int(st["spool_bytes"]), 30000, st)
        self.assertEqual(kept % 50, 0, "whole batches")
        newest = [k for b in batches[20 - kept // 50:] for k in b]
        self.rcv.start()
        self.assertExactlyOnce(newest, what="the newest %d batches" % (kept // 50))
        names = sorted({s["name"] for s in self.rcv.spans()})
        self.assertEqual(names, ["b%02d" % b for b in range(20 - kept // 50, 20)], "the oldest were dropped")
        st = env.status()
        self.assertEqual(int(st["exported_spans"]), kept, st)
        self.assertEqual(int(st["dropped_spool_full"]), dropped, st)

    # ---- corrupt spool files -------------------------------------------------
    def test_corrupt_spool_files_are_counted_and_skipped(self):
        env = self.otlp_env(sinks="otlp")
        env.stop_exporter()
        spool = os.path.join(env.dir, "spool")
        with open(os.path.join(spool, "00000000000000000001-5-00000000.pb"), "wb") as f:
            f.write(os.urandom(300))  # our name, not our content
        with open(os.path.join(spool, "00000000000000000002-1-00000000.pb"), "wb") as f:
            pass  # empty
        with open(os.path.join(spool, "notes.txt"), "w") as f:
            f.write("not ours")
        env.start_exporter()
        with tsframes.Client(env.socket, service="after-corruption") as c:
            ids = c.send_spans(10, name="fine")
        self.assertExactlyOnce(ids)
        st = env.status()
        self.assertEqual(int(st["spool_corrupt_files"]), 2, st)
        self.assertEqual(spool_files(env), [])
        self.assertTrue(os.path.exists(os.path.join(spool, "notes.txt")), "foreign files are left alone")
        self.assertEqual(env.stop_exporter(), 0)

    # ---- 5: gzip, keep-alive and the receive loop during an outage ----------------
    def test_gzip_and_receiving_goes_on_while_the_backend_hangs(self):
        self.rcv.script(rx.hang(8))
        env = self.otlp_env(sinks="otlp,file", OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
                            OTEL_EXPORTER_OTLP_TIMEOUT=4000)
        with tsframes.Client(env.socket, service="gz") as c:
            first = c.send_spans(10, name="first")
            self.rcv.wait_requests(1)
            # the delivery thread is stuck in a POST: spans keep being received meanwhile
            t0 = time.monotonic()
            later = c.send_spans(500, name="meanwhile")
            tstest.wait_until(lambda: env.status_int("received_spans") == 510, 3, "receiving while delivery hangs")
            self.assertLess(time.monotonic() - t0, 3)
        self.assertExactlyOnce(set(first) | set(later), timeout=30)
        for r in self.rcv.requests:
            self.assertEqual(r.headers.get("content-encoding"), "gzip")
            self.assertEqual(r.raw_body[:2], b"\x1f\x8b")


    # ---- 6: backpressure on socket clients -------------------------------------
    def test_a_stuck_sink_pauses_socket_clients_instead_of_dropping(self):
        # The file sink writes into a FIFO nobody reads yet: the export stalls
        # in write(), the queue (200 spans) fills, and the exporter must stop
        # reading the client's socket — its frames wait in the kernel's
        # buffer — rather than read them only to drop them; once the FIFO is
        # read, everything arrives. Without backpressure the 1000 spans would
        # be read at once and most of them dropped as queue full.
        d = self.make_tmpdir()
        fifo = os.path.join(d, "spans.fifo")
        os.mkfifo(fifo)
        rd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the exporter open it; read later
        self.addCleanup(os.close, rd)
        env = self.make_env(env={"TRACESHIM_FILE": fifo, "OTEL_BSP_MAX_QUEUE_SIZE": "200",
                                 "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100", "OTEL_BSP_SCHEDULE_DELAY": "10"})
        with tsframes.Client(env.socket, service="pressed") as c:
            ids = c.send_spans(1000, name="pressed", per_frame=50)  # ~80 KB: fits the socket's buffer
            time.sleep(1.0)
            st = env.status()
            self.assertLess(int(st["received_spans"]), 1000, "the exporter kept reading a full queue: %r" % st)
            self.assertEqual(int(st["dropped_queue_full"]), 0, st)
            out = b""
            deadline = time.monotonic() + 30
            while out.count(b'"name":"pressed"') < 1000 and time.monotonic() < deadline:
                try:
                    out += os.read(rd, 1 << 20)
                except BlockingIOError:
                    time.sleep(0.05)
        st = env.status()
        self.assertEqual(int(st["received_spans"]), 1000, st)
        self.assertEqual(int(st["dropped_queue_full"]), 0, st)
        self.assertEqual(out.count(b'"name":"pressed"'), 1000)
        for t, s in ids[:: 97]:
            self.assertIn(('"spanId":"%s"' % s).encode(), out)

    # ---- 7: the file sink's bound -----------------------------------------------
    def test_the_trace_file_rotates_at_its_bound(self):
        # 12 lines of ~15 KB through a 40 KB bound: the file moves to .1 when
        # the next line would not fit; at most ~2 bounds stay on disk; the
        # newest spans are all there and `traceshim show` finds the ones in .1.
        bound = 40000
        env = self.make_env(env={"TRACESHIM_FILE_MAX_BYTES": str(bound), "OTEL_BSP_SCHEDULE_DELAY": "20"})
        frames = []
        with tsframes.Client(env.socket, service="rotating") as c:
            for i in range(12):
                frames.append(c.send_spans(50, name="frame-%02d" % i, per_frame=50))
                tstest.wait_until(lambda: env.status_int("exported_spans") >= 50 * (i + 1), 10, "frame %d exported" % i)
        old = env.file + ".1"
        sizes = [os.path.getsize(env.file), os.path.getsize(old)]
        self.assertTrue(all(0 < n <= bound for n in sizes), sizes)
        self.assertGreaterEqual(env.status_int("file_rotations"), 2, sizes)
        on_disk = spanlib.read_jsonl(env.file)[0] + spanlib.read_jsonl(old)[0]
        ids = {s["span_id"] for s in on_disk}
        for t, sid in frames[-1] + frames[-2]:
            self.assertIn(sid, ids, "the newest spans are kept")
        self.assertNotIn(frames[0][0][1], ids, "the oldest went with the previous .1")
        in_old = sorted({s["name"] for s in spanlib.read_jsonl(old)[0]})
        r = env.wrapper("show", "--ascii")
        self.assertOk(r)
        self.assertIn(in_old[0].encode(), r.stdout, "show reads <file>.1 too")
        self.assertIn(b"frame-11", r.stdout)

if __name__ == "__main__":
    tstest.main()
