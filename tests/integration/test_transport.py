#!/usr/bin/python3
"""The shared span ring (shim/frame.h, docs/ARCHITECTURE.md §3): spans reach
the exporter with no thread in the traced process, from quiet long-running
processes, from processes killed with SIGKILL, through bursts larger than the
ring; the socket transport still works; and the exporter refuses rings that
break the rules without being hurt by them."""

import mmap
import os
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.append(os.path.join(HERE, "..", "exporter"))  # tsframes (after lib: names clash)
import httpfixture  # noqa: E402
import tsframes  # noqa: E402
import tstest  # noqa: E402
from tstest import spanlib  # noqa: E402

RING_MAGIC, RING_VERSION, RING_HDR = 0x31525354, 1, 4096
HEAD, SPANS, DROPPED, TAIL, READ_SPANS = 64, 72, 80, 128, 136
WAKE = 5  # frame type (shim/frame.h)


class RingClient:
    """Plays the shim's side of the ring by hand: a memfd, sealed or not,
    passed on HELLO; records appended with head published after them."""

    def __init__(self, path, size=64 * 1024, seal=True, magic=RING_MAGIC, flush_ms=20):
        self.size = size
        fd = os.memfd_create("test-ring", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, RING_HDR + size)
        if seal:
            import fcntl
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        self.m = mmap.mmap(fd, RING_HDR + size)
        struct.pack_into("=IIII", self.m, 0, magic, RING_VERSION, size, flush_ms)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(path)
        self.sock.sendmsg([tsframes.frame(tsframes.HELLO, tsframes.hello_payload("ring-client"))],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=i", fd))])
        os.close(fd)
        self.head = 0

    def raw(self, data, head):
        """Writes data at the current head and publishes `head` (whatever it is)."""
        off = self.head % self.size
        self.m[RING_HDR + off:RING_HDR + off + len(data)] = data
        struct.pack_into("=Q", self.m, HEAD, head)
        self.head = head

    def put(self, record):
        self.raw(record, self.head + len(record))

    def u64(self, off):
        return struct.unpack_from("=Q", self.m, off)[0]

    def close(self):
        self.sock.close()


class Transport(tstest.TestCase):
    def setUp(self):
        self.srv = self.start_http_server()
        self.url = self.srv.url("/")

    def test_no_thread_in_a_traced_process(self):
        # bash connects (a span) and then counts its own threads.
        env = self.make_env()
        script = "exec 3<>/dev/tcp/127.0.0.1/%d; ls /proc/$$/task | wc -l" % self.srv.port
        r = env.run(["bash", "-c", script], via="preload")
        self.assertOk(r)
        self.assertEqual(r.stdout.strip(), b"1", "the shim started a thread")
        env.wait_spans(1, where="connect")
        # The socket transport needs its sender thread: the same script sees 2.
        r = env.run(["bash", "-c", script], via="preload", env={"TRACESHIM_TRANSPORT": "socket"})
        self.assertEqual(r.stdout.strip(), b"2")

    def test_socket_transport_still_delivers(self):
        env = self.make_env()
        r = env.run(["curl", "-s", self.url], env={"TRACESHIM_TRANSPORT": "socket"})
        self.assertOk(r)
        spans = env.wait_spans(3, where=lambda s: s["name"] in ("curl", "connect", "GET"))
        self.assertEqual(len(spanlib.trace_ids(spans)), 1)
        self.assertEqual(env.status_int("ring_connections"), 0)

    def test_quiet_process_spans_arrive_while_it_runs(self):
        env = self.make_env()
        code = tstest.PYTHON_GET.replace("sys.stdout.buffer.write(", "(") + "import time; time.sleep(60)\n"
        p = env.spawn(["/usr/bin/python3", "-c", code, self.url], via="preload")
        t0 = time.monotonic()
        env.wait_spans(1, where="GET", timeout=10)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIsNone(p.poll(), "the process is still running: nothing was flushed by an exit")
        env.wait_status("ring_connections", 1)
        p.kill()
        p.wait()
        env.wait_status("connections_total", 1)
        env.wait_for(lambda _: env.status_int("ring_connections") == 0, what="the ring let go after the exit")

    def test_sigkill_loses_nothing_committed(self):
        env = self.make_env()
        code = tstest.PYTHON_GET.replace("sys.stdout.buffer.write(", "(") + \
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n"
        r = env.run(["/usr/bin/python3", "-c", code, self.url], via="preload")
        self.assertEqual(r.returncode, -9)
        spans = env.wait_spans(2, where=lambda s: s["name"] in ("GET", "getaddrinfo", "connect"))
        self.assertIn("GET", [s["name"] for s in spans])
        self.assertFalse([s for s in spans if s["name"] == "python3"], "no process span: it never ended")

    def test_burst_larger_than_the_ring(self):
        # 64 KiB holds ~150 spans: 600 keep-alive requests pass through it
        # four times, so the WAKE path (not the timer) must keep up.
        env = self.make_env()
        n = 600
        r = env.run(["curl", "-s", "-o", "/dev/null"] + [self.url + "?i=%d" % i for i in range(n)],
                    env={"TRACESHIM_RING_KB": "64", "TRACESHIM_FLUSH_MS": "1000"}, timeout=120)
        self.assertOk(r)
        env.wait_spans(1, where="curl")
        got = len([s for s in env.spans() if s["name"] == "GET"])
        dropped = env.status_int("dropped_client")
        self.assertEqual(got + dropped, n, env.status())
        self.assertLess(dropped, n // 10, "the reader did not keep up: %r" % env.status())

    def test_wake_again_once_the_reader_moved(self):
        # The WAKE rule (shim/transport.c ring_commit, docs/ARCHITECTURE.md §5),
        # against a peer that plays the exporter and reads only when the test
        # says: one WAKE once half the ring is unread; none more while the
        # reader does not move (the ring fills, spans are dropped, the process
        # goes on); one more after a partial read that leaves half or more
        # unread — the case a WAKE sent only when crossing the threshold left
        # to the timer (ARCHITECTURE.md).
        env = self.make_env(start_exporter=False)
        path = os.path.join(self.make_tmpdir(), "peer.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(lsock.close)
        lsock.bind(path)
        lsock.listen(8)
        lsock.settimeout(20)
        # `python3 -m http.server` (HTTP/1.0, a connection per request): the
        # in-process fixture answers curl's keep-alive requests at ~23/s here
        # (40 ms each, Nagle against delayed ACK), too slow to fill a ring.
        srv, port = httpfixture.spawn_http_server(self.make_tmpdir())
        self.addCleanup(httpfixture.stop_process, srv)
        url = "http://127.0.0.1:%d/" % port
        # ~3 spans per request, ~270 B each: the 256 KiB ring is full after ~320
        # requests; curl is still far from done (and from its exit, which sends
        # WAKEs of its own) when the test has seen what it wants, and is killed.
        p = env.spawn(["curl", "-s", "-o", "/dev/null", url + "?i=[1-1000000]"], via="preload",
                      env={"TRACESHIM_SOCKET": path, "TRACESHIM_RING_KB": "256", "TRACESHIM_FLUSH_MS": "1000"},
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # -o is for the first URL only
        self.addCleanup(lambda: p.poll() is None and p.kill())
        conn, _ = lsock.accept()
        self.addCleanup(conn.close)
        conn.settimeout(20)
        msg, fds, _, _ = socket.recv_fds(conn, tsframes.FRAME_MAX, 1)
        self.assertEqual(tsframes.HEADER.unpack_from(msg)[2], tsframes.HELLO)
        self.assertEqual(len(fds), 1, "HELLO without a ring")
        size = os.fstat(fds[0]).st_size - RING_HDR
        m = mmap.mmap(fds[0], RING_HDR + size)
        os.close(fds[0])
        u64 = lambda off: struct.unpack_from("=Q", m, off)[0]  # noqa: E731
        wakes = []

        def read_wakes(wait):
            conn.settimeout(wait)
            try:
                while True:
                    f = conn.recv(tsframes.FRAME_MAX)
                    if not f:
                        return
                    if tsframes.HEADER.unpack_from(f)[2] == WAKE:
                        wakes.append(u64(HEAD) - u64(TAIL))
                    conn.settimeout(0.05)
            except socket.timeout:
                pass

        read_wakes(20)
        half = size // 2
        self.assertEqual(len(wakes), 1, "no WAKE once half the ring was unread (head %d, tail %d, spans %d, "
                         "curl %r)" % (u64(HEAD), u64(TAIL), u64(SPANS), p.poll()))
        self.assertGreaterEqual(wakes[0], half)
        self.assertLess(wakes[0], half + half // 2, "the WAKE came late: %d bytes unread" % wakes[0])
        # The reader does not move: the ring fills, and no further WAKE comes.
        deadline = time.monotonic() + 20
        while u64(HEAD) - u64(TAIL) < size - 4096 and time.monotonic() < deadline:
            read_wakes(0.1)
        self.assertIsNone(p.poll(), "curl ended before the ring filled: make n larger")
        read_wakes(0.5)
        self.assertEqual(len(wakes), 1, "WAKEs to a reader that did not move: %r" % wakes)
        # A partial read: a quarter of the ring, record by record (half or
        # more stays unread).
        tail, head = u64(TAIL), u64(HEAD)
        while tail < head and tail - u64(TAIL) < size // 4:
            off = tail % size
            ln = struct.unpack_from("=H", m, RING_HDR + off)[0] if size - off >= 2 else 0
            tail += ln if ln else size - off  # 0: padding to the end of the area
        struct.pack_into("=Q", m, TAIL, tail)
        read_wakes(5)
        self.assertIsNone(p.poll(), "curl ended: its exit, not the rule, may have sent the WAKE")
        self.assertGreaterEqual(head - tail, half)
        self.assertEqual(len(wakes), 2, "no WAKE after a partial read that left %d bytes unread"
                         % (head - tail))
        # Spans that found the ring full were dropped, not waited for; the
        # count is published with the first record that fits again.
        self.assertGreater(u64(DROPPED), 0, "a full ring drops (and counts) instead of waiting")
        p.kill()
        p.wait()
        m.close()

    def test_close_range_takes_the_shims_socket_too(self):
        # A program that closes every fd from 3 on (os.closerange, which is
        # close_range(2)) closes the shim's socket to the exporter too. The shim
        # must let go of the number, or its next frame goes into whatever the
        # number is given to next: here the program's own connections, whose
        # bytes a server checks (64 of them: the shim keeps its socket at fd 48
        # or above). Socket transport: its sender thread writes frames every
        # 10 ms.
        env = self.make_env()
        lsock = socket.socket()
        self.addCleanup(lsock.close)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(128)
        lsock.settimeout(30)
        got = []

        def serve():
            try:
                conns = [lsock.accept()[0] for _ in range(64)]
            except OSError:
                return
            for c in conns:
                data = b""
                c.settimeout(30)
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    data += b
                got.append(data)
                c.close()

        t = threading.Thread(target=serve)
        t.start()
        code = """if True:
            import os, socket, sys, time, urllib.request
            url, port = sys.argv[1], int(sys.argv[2])
            urllib.request.urlopen(url + "?before").read()  # the shim connects to the exporter
            time.sleep(0.1)
            os.closerange(3, 1 << 16)
            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]  # the numbers again
            for i in range(20):
                urllib.request.urlopen(url + "?after=%d" % i).read()  # spans, sent on the shim's new socket
                for s in socks:
                    s.sendall(b"app%02d;" % i)
                time.sleep(0.02)
            for s in socks:
                s.close()
        """
        r = env.run(["/usr/bin/python3", "-c", code, self.url, str(lsock.getsockname()[1])], via="preload",
                    env={"TRACESHIM_TRANSPORT": "socket", "TRACESHIM_FLUSH_MS": "10"})
        t.join(30)
        self.assertOk(r)
        want = b"".join(b"app%02d;" % i for i in range(20))
        self.assertEqual(len(got), 64)
        for data in got:
            self.assertEqual(data, want, "a frame went into the program's connection")
        # The shim reconnected: spans made after the close_range arrive.
        env.wait_spans(1, where=lambda s: s["name"] == "GET" and "after" in str(s["attributes"].get("url.full", "")))

    def test_subprocess_close_range_leaves_the_parents_socket_alone(self):
        # Python's subprocess calls close_range in its vfork child, which shares
        # the parent's memory: the hook must not give up the parent's exporter
        # socket and ring there (the parent would reconnect for every spawn and
        # leak the old socket, still open in its own fd table).
        env = self.make_env()
        code = """if True:
            import os, subprocess, sys, urllib.request
            def unix_sockets():
                n = 0
                for fd in os.listdir("/proc/self/fd"):
                    try:
                        n += os.readlink("/proc/self/fd/" + fd).startswith("socket:")
                    except OSError:
                        pass
                return n
            urllib.request.urlopen(sys.argv[1]).read()  # the shim connects
            before = unix_sockets()
            for _ in range(5):
                subprocess.run(["/bin/true"], check=True)
                urllib.request.urlopen(sys.argv[1]).read()
            print(before, unix_sockets())
        """
        r = env.run(["/usr/bin/python3", "-c", code, self.url], via="preload")
        self.assertOk(r)
        before, after = r.stdout.split()
        self.assertEqual(before, after, "sockets leaked across spawns")
        env.wait_spans(6, where="GET")

    def test_a_quiet_server_keeps_delivering_across_exporter_restarts(self):
        # A traced `python3 -m http.server` answers one request every 2 s (far
        # too few spans for a WAKE) while its exporter is stopped and started
        # twice: the shim notices by itself (the exporter's heartbeat in the
        # ring header is stale, then the socket shows the hang-up), connects to
        # the new exporter and hands it what the old one had not read — so the
        # request answered while no exporter ran arrives too. Each request's
        # span must arrive before the next request is made. The first restart
        # is a SIGTERM, the second a SIGKILL. (~16 s)
        env = self.make_env()
        www = self.make_tmpdir()
        with open(os.path.join(www, "index.html"), "wb") as f:
            f.write(b"quiet\n")
        proc, port = httpfixture.spawn_http_server(www, env=env.environ("preload"))
        self.addCleanup(httpfixture.stop_process, proc)
        seen = set()

        def request(tag, wait=True):
            time.sleep(2)
            r = env.run(["curl", "-s", "http://127.0.0.1:%d/?%s" % (port, tag)], via="plain")
            self.assertOk(r)
            self.assertEqual(r.stdout, b"quiet\n")
            seen.add(tag)
            if wait:
                env.wait_for(lambda sp: tag in server_queries(sp), timeout=10,
                             what="the SERVER span of ?%s (status %r)" % (tag, env.status()))

        def server_queries(spans):
            return {s["attributes"].get("url.query") for s in spans if s["kind"] == 2}

        request("first-0")
        request("first-1")
        self.assertEqual(env.stop_exporter(), 0)
        request("while-down", wait=False)  # into a ring nobody reads
        env.start_exporter()
        request("second-0")
        request("second-1")
        env.kill_exporter()  # the second time without a goodbye: SIGKILL
        env.start_exporter()
        request("third-0")
        request("third-1")
        got = env.wait_for(lambda sp: seen <= server_queries(sp), timeout=10, what="every SERVER span")
        self.assertIsNone(proc.poll(), "the traced server kept running")
        self.assertEqual(sorted(q for q in server_queries(got) if q), sorted(seen), "each exactly once")
        self.assertEqual(len([s for s in got if s["kind"] == 2]), len(seen), "no span twice")
        self.assertEqual(env.status_int("dropped_client"), 0, env.status())

    def test_no_system_call_per_span(self):
        # The liveness check reads the exporter's heartbeat against the coarse
        # clock (vDSO); only a stale heartbeat costs a poll, at most one a
        # second. curl fetching 300 URLs keep-alive (~900 spans) under strace:
        # the shim's socket sees its HELLO and, on a loaded machine, a poll
        # or two — never one per span. (~3 s)
        env = self.make_env()
        trace = os.path.join(self.make_tmpdir(), "strace.txt")
        n = 300
        r = env.run(["strace", "-f", "-o", trace, "-e", "trace=%network,%desc,poll,ppoll",
                     "curl", "-s", "-o", "/dev/null"] + ["%s?i=%d" % (self.url, i) for i in range(n)],
                    via="preload", timeout=120)
        self.assertOk(r)
        env.wait_spans(n, where="GET")
        with open(trace) as f:
            lines = f.read().splitlines()
        hello = [ln for ln in lines if "SCM_RIGHTS" in ln and "sendmsg(" in ln]
        self.assertEqual(len(hello), 1, "one HELLO with the ring")
        fd = hello[0].split("sendmsg(", 1)[1].split(",", 1)[0]
        own = [ln for ln in lines if "(%s," % fd in ln or "fd=%s," % fd in ln or "(%s)" % fd in ln]
        self.assertLess(len(own), 1 + 5, "system calls on the shim's socket (fd %s):\n%s" % (fd, "\n".join(own)))

    def test_rings_that_break_the_rules(self):
        env = self.make_env()
        rec = tsframes.span_record(os.urandom(16), os.urandom(8), "ring-ok")
        # Not sealed: it could be cut under the exporter's mapping (SIGBUS).
        c = RingClient(env.socket, seal=False)
        c.put(rec)
        time.sleep(0.3)
        self.assertEqual(env.status_int("ring_connections"), 0)
        c.close()
        # Wrong magic.
        c = RingClient(env.socket, magic=0x12345678)
        time.sleep(0.3)
        self.assertEqual(env.status_int("ring_connections"), 0)
        c.close()
        # A good ring: records arrive, tail and read_spans come back.
        good = RingClient(env.socket)
        ids = []
        for i in range(300):  # wraps a 64 KiB ring
            t, s = os.urandom(16), os.urandom(8)
            ids.append((t.hex(), s.hex()))
            good.put(tsframes.span_record(t, s, "ring-ok"))
            while good.head - good.u64(TAIL) > good.size - 2 * len(rec):
                time.sleep(0.005)
            if (good.head % good.size) + len(rec) > good.size:  # pad to the end, as the shim does
                pad = good.size - good.head % good.size
                good.raw(b"\0" * pad, good.head + pad)
        env.wait_for(lambda sp: len([x for x in sp if x["name"] == "ring-ok"]) == 300, what="300 ring spans")
        self.assertEqual(good.u64(READ_SPANS), 300, "the reader counts what it consumed")
        self.assertEqual(good.u64(TAIL), good.head)
        # Garbage: a record length past head, then a head a whole ring ahead.
        before = env.status_int("dropped_malformed_frames")
        bad = RingClient(env.socket)
        bad.raw(struct.pack("=H", 5000) + b"x" * 98, 100)
        env.wait_status("dropped_malformed_frames", before + 1)
        bad.raw(b"", bad.head + 10 * bad.size)
        env.wait_status("dropped_malformed_frames", before + 2)
        bad.close()
        good.close()
        # Still serving.
        with tsframes.Client(env.socket, service="after") as cl:
            cl.send_spans(5, name="after")
        env.wait_spans(5, where="after")
        self.assertIsNone(env.exporter.poll(), "the exporter died")


if __name__ == "__main__":
    tstest.main()
