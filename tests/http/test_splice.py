"""Byte-exactness of traceparent injection (issue 3): a traced client writes
requests in awkward ways; an untraced receiver records every byte. What
arrives must be exactly the application's bytes plus well-formed injected
header lines at the end of each request head, and nothing at all for traffic
that is not an HTTP/1.x request."""
import os
import re
import socket
import subprocess
import sys
import threading
import time
import unittest

BUILD = os.environ.get("TRACESHIM_BUILDDIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
LIB = os.path.abspath(os.path.join(BUILD, "hooks", "libtraceshim.so"))
WRITER = os.path.abspath(os.path.join(BUILD, "tests", "http", "http_writer"))
SHORT = os.path.abspath(os.path.join(BUILD, "tests", "http", "libshort_writes.so"))
INJECTED = re.compile(rb"traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\r\n")


class Receiver:
    """Accepts connections on 127.0.0.1 and keeps each one's bytes; `slow`
    makes it read in small sips so the sender sees partial writes and EAGAIN."""

    def __init__(self, slow=False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.slow = slow
        self.conns = []
        self.done = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.slow:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            data = bytearray()
            done = threading.Event()
            self.conns.append(data)
            self.done.append(done)
            threading.Thread(target=self._read, args=(c, data, done), daemon=True).start()

    def _read(self, c, data, done):
        while True:
            chunk = c.recv(1500 if self.slow else 65536)
            if not chunk:
                break
            data += chunk
            if self.slow:
                time.sleep(0.0005)
        c.close()
        done.set()

    def close(self):
        self.sock.close()


def run_writer(port, scenario, seed, short=False):
    env = dict(os.environ, LD_PRELOAD=LIB, TRACESHIM_SOCKET="/nonexistent/traceshim.sock")
    if short:  # after the shim: its calls to "the kernel" come back short
        env.update(LD_PRELOAD=LIB + " " + SHORT, SHORT_WRITES_SEED=str(seed))
    p = subprocess.run([WRITER, str(port), scenario, str(seed)], env=env, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"{scenario}/{seed}: writer exit {p.returncode}: {p.stderr.decode()}")
    return p.stdout


class SpliceTest(unittest.TestCase):
    def exchange(self, scenario, seed, slow=False, short=False, conns=1):
        r = Receiver(slow=slow)
        try:
            sent = run_writer(r.port, scenario, seed, short)
            # the writer half-closes after its last byte: EOF means all arrived
            self.assertEqual(len(r.conns), conns)
            self.assertTrue(r.done[-1].wait(30), "receiver never saw the end of the stream")
            return sent, bytes(r.conns[-1])
        finally:
            r.close()

    def assert_injected(self, sent, got, at_least=1):
        heads = [m for m in INJECTED.finditer(got)]
        self.assertGreaterEqual(len(heads), at_least, got[:300])
        for m in heads:  # each injected line is the last of its head
            self.assertEqual(got[m.end():m.end() + 2], b"\r\n", got[m.start() - 40:m.end() + 10])
        self.assertEqual(INJECTED.sub(b"", got), sent)

    def test_simple(self):
        for seed in range(20):
            sent, got = self.exchange("simple", seed)
            self.assert_injected(sent, got)

    def test_request_written_one_byte_at_a_time(self):
        for seed in range(5):
            sent, got = self.exchange("split", seed)
            self.assert_injected(sent, got)

    def test_msg_more(self):
        for seed in range(10):
            sent, got = self.exchange("more", seed)
            self.assert_injected(sent, got)

    def test_nonblocking_partial_writes(self):
        for seed in range(30):
            sent, got = self.exchange("nonblocking", seed, slow=True)
            self.assert_injected(sent, got, at_least=3)

    def test_every_short_write_count(self):
        """The kernel takes 1..120 bytes per call: the injected header is cut
        at every possible place across the seeds."""
        for scenario in ("simple", "pipelined", "more"):
            for seed in range(40):
                sent, got = self.exchange(scenario, seed, short=True)
                self.assert_injected(sent, got)

    def test_large_bodies(self):
        for seed in range(3):
            sent, got = self.exchange("bigbody", seed)
            self.assert_injected(sent, got, at_least=3)
            self.assertGreater(len(sent), 3 << 20)

    def test_pipelined(self):
        for seed in range(20):
            sent, got = self.exchange("pipelined", seed)
            self.assert_injected(sent, got)

    def test_own_traceparent_is_left_alone(self):
        for seed in range(5):
            sent, got = self.exchange("own_traceparent", seed)
            self.assertEqual(got, sent)
            self.assertEqual(got.count(b"traceparent"), 1)

    def test_header_that_never_ends_is_left_alone(self):
        sent, got = self.exchange("endless_head", 1)
        self.assertGreater(len(sent), 200 * 1024)
        self.assertEqual(got, sent)

    def test_fd_reused_after_close_starts_clean(self):
        for seed in range(5):
            sent, got = self.exchange("reuse", seed, conns=2)
            self.assertEqual(got, sent)

    def test_not_http_is_untouched(self):
        for scenario in ("binary", "h2"):
            for seed in range(5):
                sent, got = self.exchange(scenario, seed)
                self.assertEqual(got, sent, scenario)


if __name__ == "__main__":
    unittest.main(verbosity=2)
