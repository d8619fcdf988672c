#!/usr/bin/python3
"""Shutdown in bounded time whatever the file sink does (docs/EXPORTER.md,
Shutdown): the trace file is a FIFO that nobody reads, so the export
thread's write() blocks for ever. SIGTERM must still end the exporter within
the budget (OTEL_BSP_EXPORT_TIMEOUT) plus a small margin, with the exit
status for "spans abandoned" (3), every span it could not write counted as
dropped in its last log line — never as exported — and the socket file gone
as after any stop. A FIFO that starts being read during the budget is a
healthy sink: everything is written and the exit status is 0."""

import os
import re
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.append(os.path.join(HERE, "..", "exporter"))  # tsframes (after lib: names clash)
import tsframes  # noqa: E402
import tstest  # noqa: E402

BUDGET_MS = 1000
MARGIN_S = 1.0  # the process must be gone by budget + this
EXIT_SPANS_ABANDONED = 3
SPANS = 3000  # six 512-span batches; one batch of OTLP/JSON is more than the pipe's 64 KiB


def read_all(fd):
    """Everything in the FIFO until EOF (the exporter, its only writer, is gone)."""
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            break  # a writer is still there (it should not be): take what came
        if not chunk:
            break
        out += chunk
    return out


class Shutdown(tstest.TestCase):
    def fifo_env(self):
        d = self.make_tmpdir()
        fifo = os.path.join(d, "spans.fifo")
        os.mkfifo(fifo)
        # A reader that never reads: the exporter's open() succeeds, its writes
        # fill the pipe and then block. Non-blocking so the test can drain it later.
        rd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, rd)
        env = self.make_env(env={"TRACESHIM_FILE": fifo, "OTEL_BSP_EXPORT_TIMEOUT": str(BUDGET_MS),
                                 "OTEL_BSP_SCHEDULE_DELAY": "20"})
        return env, rd

    def assertStuck(self, env):
        """Nothing is exported any more and the rest stays queued."""
        time.sleep(0.5)
        st = env.status()
        self.assertGreater(int(st["queue_depth"]), 0, st)
        self.assertLess(int(st["exported_spans"]), SPANS, st)
        time.sleep(0.3)
        self.assertEqual(env.status()["exported_spans"], st["exported_spans"], "the sink is stuck")
        return st

    def fill(self, env):
        with tsframes.Client(env.socket, service="stuck-sink") as c:
            c.send_spans(SPANS, name="stuck")
        tstest.wait_until(lambda: env.status_int("received_spans") == SPANS, 10, "%d spans received" % SPANS)
        return self.assertStuck(env)

    def test_sigterm_with_the_file_sink_stuck_on_an_unread_fifo(self):
        env, rd = self.fifo_env()
        self.fill(env)
        # Let a little through, so that some batches are written whole and
        # the sink gets stuck again in the middle of the queue.
        early = b""
        deadline = time.monotonic() + 5
        while len(early) < 200000 and time.monotonic() < deadline:
            try:
                early += os.read(rd, 200000 - len(early))
            except BlockingIOError:
                time.sleep(0.01)
        before = self.assertStuck(env)
        exported = int(before["exported_spans"])
        self.assertGreater(exported, 0, before)

        p = env.exporter
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(BUDGET_MS / 1000 + 10)
        except Exception:
            p.kill()
            p.wait()
            raise AssertionError("SIGTERM did not stop an exporter whose file sink is stuck:\n%s"
                                 % env.exporter_log()[-3000:])
        elapsed = time.monotonic() - t0
        env.exporter = None
        log = env.exporter_log()
        self.assertLess(elapsed, BUDGET_MS / 1000 + MARGIN_S, "exit within the budget + margin:\n" + log)
        self.assertGreaterEqual(elapsed, BUDGET_MS / 1000 * 0.9, "it waited for the sink during the budget")
        self.assertEqual(rc, EXIT_SPANS_ABANDONED, "exit status for a stop that abandoned spans:\n" + log)

        # The last line says how many were not delivered and why, and counts
        # them as dropped; none of them as exported.
        m = re.search(r"stopped with spans abandoned: (\d+) received, (\d+) exported, (\d+) not delivered "
                      r"because a sink did not finish within the shutdown budget "
                      r"\(OTEL_BSP_EXPORT_TIMEOUT=%d ms\); dropped_export_failed=(\d+); exit status 3$"
                      % BUDGET_MS, log, re.M)
        self.assertIsNotNone(m, "final log line:\n" + log)
        received, exp, lost, dropped = map(int, m.groups())
        self.assertEqual(received, SPANS)
        self.assertEqual(exp, exported, "nothing more was exported after the sink got stuck")
        self.assertEqual(lost, SPANS - exported, "every span not written is accounted for")
        self.assertEqual(dropped, lost)
        self.assertIn("the file sink has not returned", log)

        # What reached the FIFO: whole lines holding exactly the exported
        # spans, then at most the start of the line the write was stuck in.
        data = early + read_all(rd)
        whole, _, partial = data.rpartition(b"\n")
        self.assertEqual(whole.count(b'"name":"stuck"'), exported, "complete lines = exported spans")
        self.assertNotIn(b"\n", partial)
        # Once the test stopped reading, the stuck write could only fill the
        # pipe (the stuck line may also have begun within what was read early).
        self.assertLessEqual(len(data) - len(early), 1 << 16, "at most a pipe's worth after the last read")

        self.assertFalse(os.path.exists(env.socket), "the socket file is removed as on any stop")
        self.assertFalse(env.ping())

    def test_a_fifo_read_during_the_budget_gets_everything(self):
        # Stuck when SIGINT arrives, but a reader turns up 300 ms into the
        # budget: the flush completes, nothing is dropped, exit status 0.
        env, rd = self.fifo_env()
        self.fill(env)
        got = []

        def reader():
            time.sleep(0.3)
            os.set_blocking(rd, True)
            while True:
                chunk = os.read(rd, 1 << 20)
                if not chunk:
                    return
                got.append(chunk)

        t = threading.Thread(target=reader, daemon=True)
        p = env.exporter
        p.send_signal(signal.SIGINT)
        t.start()
        rc = p.wait(BUDGET_MS / 1000 + 10)
        env.exporter = None
        t.join(10)
        log = env.exporter_log()
        self.assertEqual(rc, 0, log)
        data = b"".join(got)
        self.assertTrue(data.endswith(b"\n"), "whole lines only")
        self.assertEqual(data.count(b'"name":"stuck"'), SPANS, "every span written")
        self.assertNotIn("abandoned", log)


if __name__ == "__main__":
    tstest.main()
