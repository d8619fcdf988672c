#!/usr/bin/python3
"""Who may talk to the exporter, and what a hostile client can do to it
(issue 5, security): the socket directory is 0700 and the socket 0600; a
process of another uid is refused even when the socket's mode lets it in
(SO_PEERCRED) and counted; TRACESHIM_ALLOWED_UIDS admits it; garbage,
truncated and oversized frames from one client are counted while every span
of a well-behaved client, sent at the same time, arrives; the number of
connections is bounded."""

import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.append(os.path.join(HERE, "..", "exporter"))  # tsframes (after lib: names clash)
import tsframes  # noqa: E402
import tstest  # noqa: E402

NOBODY = 65534

# Run as `nobody`: connect, HELLO, send N spans named "from-nobody", then
# report on stdout whether the exporter hung up on us.
NOBODY_CLIENT = r"""
import socket, sys
sys.path.insert(0, sys.argv[1])
import tsframes
path, n = sys.argv[2], int(sys.argv[3])
try:
    c = tsframes.Client(path, service="nobody-client")
except (BrokenPipeError, ConnectionResetError):
    print("hung-up"); sys.exit(0)  # refused before our HELLO went out
except OSError as e:
    print("connect-failed", e.errno); sys.exit(0)
try:
    c.send_spans(n, name="from-nobody")
    c.sock.settimeout(3)
    got = c.sock.recv(1)
    print("hung-up" if got == b"" else "data")
except ConnectionResetError:
    print("hung-up")
except (BrokenPipeError, ConnectionError):
    print("hung-up")
except socket.timeout:
    print("still-open")
"""


def as_nobody(argv):
    return ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups", "--"] + argv


class Security(tstest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to act as another uid")

    def run_nobody_client(self, env, n=5):
        r = subprocess.run(as_nobody(["/usr/bin/python3", "-c", NOBODY_CLIENT, os.path.join(HERE, "..", "exporter"),
                                      env.socket, str(n)]),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout.decode().strip()

    def open_to_others(self, env, socket_mode=None):
        """What an operator (or a mistake) does: make the path reachable by other uids."""
        os.chmod(env.dir, 0o711)
        if socket_mode is not None:
            os.chmod(env.socket, socket_mode)

    def test_default_paths_are_private(self):
        # No TRACESHIM_SOCKET: $XDG_RUNTIME_DIR/traceshim/exporter.sock, directory created by the exporter.
        env = self.make_env(start_exporter=False)
        run = os.path.join(env.dir, "run", "traceshim")
        env.socket = os.path.join(run, "exporter.sock")
        del env.env["TRACESHIM_SOCKET"]
        env.start_exporter()
        self.assertEqual(env.status().get("socket"), env.socket)
        self.assertEqual(stat.S_IMODE(os.stat(run).st_mode), 0o700)
        st = os.stat(env.socket)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_uid, os.geteuid())
        # even with the directory opened up, the 0600 socket keeps nobody out
        os.chmod(env.dir, 0o711)
        os.chmod(os.path.join(env.dir, "run"), 0o711)
        os.chmod(run, 0o711)
        self.assertEqual(self.run_nobody_client(env), "connect-failed 13")  # EACCES
        self.assertEqual(env.status_int("received_spans"), 0)

    def test_another_uid_is_refused_even_through_an_open_socket(self):
        env = self.make_env()
        self.open_to_others(env, socket_mode=0o666)
        self.assertEqual(self.run_nobody_client(env, 5), "hung-up")
        env.wait_status("connections_refused", 1)
        st = env.status()
        self.assertEqual(int(st["received_spans"]), 0, st)
        self.assertIn("uid 65534 is not allowed", env.exporter_log())
        # our own uid still gets in
        with tsframes.Client(env.socket, service="owner") as c:
            c.send_spans(3, name="from-owner")
        spans = env.wait_spans(3, where="from-owner")
        self.assertEqual([s for s in spans if s["name"] == "from-nobody"], [])

    def test_allow_list_admits_another_uid(self):
        env = self.make_env(env={"TRACESHIM_ALLOWED_UIDS": "1234, %d" % NOBODY})
        self.assertEqual(stat.S_IMODE(os.stat(env.socket).st_mode), 0o666,
                         "with an allow-list the socket must be connectable by the allowed uids")
        self.open_to_others(env)  # the operator makes the directory searchable
        self.assertEqual(self.run_nobody_client(env, 7), "still-open")
        spans = env.wait_spans(7, where="from-nobody")
        got = [s for s in spans if s["name"] == "from-nobody"]
        self.assertEqual(len(got), 7)
        self.assertEqual({s["resource"]["service.name"] for s in got}, {"nobody-client"})
        self.assertEqual(env.status_int("connections_refused"), 0)

    def test_garbage_from_one_client_while_another_is_served(self):
        env = self.make_env()
        good_ids = []
        counts = {"malformed": 0, "oversized": 0}
        stop = threading.Event()
        errors = []

        def good():
            try:
                with tsframes.Client(env.socket, service="good-client") as c:
                    for _ in range(40):
                        good_ids.extend(c.send_spans(50, name="good"))
                        time.sleep(0.02)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        def evil():
            rnd = __import__("random").Random(5)
            valid = tsframes.frame(tsframes.SPANS, tsframes.spans_payload(
                [tsframes.span_record(os.urandom(16), os.urandom(8), "evil")]))
            try:
                while not stop.is_set():
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                    s.connect(env.socket)
                    s.send(tsframes.frame(tsframes.HELLO, b"\xff" * 40))  # bad HELLO
                    counts["malformed"] += 1
                    for _ in range(50):
                        kind = rnd.randrange(5)
                        if kind == 0:
                            s.send(os.urandom(rnd.randrange(1, 2000)))  # garbage
                        elif kind == 1:
                            s.send(valid[:rnd.randrange(1, len(valid))])  # truncated
                        elif kind == 2:
                            s.send(b"\0" * (tsframes.FRAME_MAX + rnd.randrange(1, 60000)))  # oversized
                            counts["oversized"] += 1
                            continue
                        elif kind == 3:  # a header that lies about the count
                            s.send(tsframes.frame(tsframes.SPANS, struct.pack("=H", 60000) + valid[18:]))
                        else:  # a huge record_len
                            p = bytearray(valid)
                            p[18:20] = struct.pack("=H", 65535)
                            s.send(bytes(p))
                        counts["malformed"] += 1
                    s.close()
            except Exception as e:  # pragma: no cover
                errors.append(e)

        rss0 = self.rss_kb(env)
        t_evil = threading.Thread(target=evil)
        t_good = threading.Thread(target=good)
        t_evil.start()
        t_good.start()
        t_good.join(60)
        stop.set()
        t_evil.join(30)
        # join() does not say whether the thread ended: one still sending would
        # keep raising counts while they are compared with the exporter's.
        self.assertFalse(t_good.is_alive() or t_evil.is_alive(), "a client thread is still sending")
        self.assertEqual(errors, [])
        sent = dict(counts)
        self.assertEqual(len(good_ids), 2000)
        wanted = set(good_ids)
        spans = env.wait_for(lambda got: wanted <= {(s["trace_id"], s["span_id"]) for s in got
                                                    if s["name"] == "good"},
                             timeout=20, what="every span of the good client")
        good = [(s["trace_id"], s["span_id"]) for s in spans if s["name"] == "good"]
        self.assertEqual(len(good), 2000, "each good span exactly once")
        self.assertEqual([s for s in spans if s["name"] == "evil"], [], "no frame of the evil client got through")
        # Frames the evil client sent last may still wait in its connections'
        # socket buffers: the counts must reach the totals, then stay there.
        env.wait_status("dropped_malformed_frames", sent["malformed"], timeout=30)
        env.wait_status("dropped_oversized_frames", sent["oversized"], timeout=30)
        time.sleep(0.3)
        st = env.status()
        self.assertIsNone(env.exporter.poll(), "the exporter died")
        self.assertEqual(int(st["dropped_malformed_frames"]), sent["malformed"], st)
        self.assertEqual(int(st["dropped_oversized_frames"]), sent["oversized"], st)
        self.assertEqual(int(st["received_spans"]), 2000, st)
        self.assertLess(self.rss_kb(env) - rss0, 64 * 1024, "memory grew with the garbage")

    def test_connections_are_bounded(self):
        env = self.make_env(env={"TRACESHIM_MAX_CONNECTIONS": "3"})
        held = [tsframes.Client(env.socket, service="held-%d" % i) for i in range(3)]
        time.sleep(0.3)
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        extra.settimeout(5)
        extra.connect(env.socket)  # succeeds: the backlog takes it
        try:
            extra.send(tsframes.frame(tsframes.HELLO, tsframes.hello_payload("extra")))
            got = extra.recv(64)
            if got:  # told why first: a REFUSED frame (type 6), reason 2, the limit
                self.assertEqual(got[tsframes.HEADER.size:], struct.pack("=I", 2))
                self.assertEqual(tsframes.HEADER.unpack_from(got)[2], 6)
                got = extra.recv(64)
            self.assertEqual(got, b"", "the exporter hangs up on the 4th connection")
        except (BrokenPipeError, ConnectionResetError):
            pass  # it hung up before our HELLO went out
        extra.close()
        for c in held:
            c.close()
        time.sleep(0.3)
        st = env.status()  # a slot is free again
        self.assertEqual(int(st["connections_refused"]), 1, st)
        self.assertIn("TRACESHIM_MAX_CONNECTIONS", env.exporter_log())

    @staticmethod
    def rss_kb(env):
        with open("/proc/%d/status" % env.exporter.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


if __name__ == "__main__":
    tstest.main()
