"""Signals and the shim: the shim installs no handler, so every disposition a
program can see (signal.getsignal, sigaction, what a child inherits) is what
it is untraced, Ctrl-C raises KeyboardInterrupt in a traced python (with
`finally` run), and a traced process killed by a signal dies of that same
signal (same wait status). Its process span is then shipped by the exporter,
from the record the process announced in its ring, when the process hangs up
(docs/ARCHITECTURE.md §9)."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tstest  # noqa: E402

PY = "/usr/bin/python3"

# Prints every disposition as python and as the C library see it: the handler
# python reports, and sigaction's sa_handler (as an address class: DFL, IGN or
# a function) and sa_flags. Then checks the save/restore idiom and
# _thread.interrupt_main, which a foreign handler at start-up breaks.
DISPOSITIONS = r"""
import ctypes, signal, sys, _thread
libc = ctypes.CDLL(None, use_errno=True)
class SA(ctypes.Structure):
    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16),
                ("flags", ctypes.c_int), ("restorer", ctypes.c_void_p)]
names = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGPIPE", "SIGSEGV", "SIGBUS", "SIGFPE",
         "SIGILL", "SIGABRT", "SIGCHLD", "SIGUSR1", "SIGALRM", "SIGXFSZ"]
for n in names:
    s = getattr(signal, n)
    sa = SA()
    assert libc.sigaction(s, None, ctypes.byref(sa)) == 0
    h = {None: "DFL", 0: "DFL", 1: "IGN"}.get(sa.handler, "FUNC")
    print(n, signal.getsignal(s), h, sa.flags & ~0x04000000)  # SA_RESTORER is libc's own
    old = signal.signal(s, signal.SIG_IGN) if n not in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL") else None
    if old is not None:
        signal.signal(s, old)  # TypeError when python found a foreign handler
try:
    _thread.interrupt_main()
    for _ in range(1000):
        pass
    print("interrupt_main: nothing raised")
except KeyboardInterrupt:
    print("interrupt_main: KeyboardInterrupt")
"""

# Ctrl-C: a KeyboardInterrupt the program handles, with its finally block.
CTRL_C = r"""
import os, signal, time
try:
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        print("no interrupt")
    finally:
        print("finally ran")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""

# The reproduction in issue 13.
REPRO = "import os,signal;print(signal.getsignal(2));os.kill(os.getpid(),2)"

# Makes one span (so the process has a ring), then dies of the signal argv[1]
# names; argv[2] == "stop" first stops itself so the test can look at it.
SUICIDE = ("import os, signal, socket, sys\n"
           "socket.getaddrinfo('localhost', 80)\n"
           "os.kill(os.getpid(), getattr(signal, sys.argv[1]))\n")


class Dispositions(tstest.TestCase):
    def compare(self, env, argv, pre=()):
        traced = env.run(list(pre) + argv, via="preload")
        plain = env.run(list(pre) + argv, via="plain")
        self.assertEqual(traced.returncode, plain.returncode, (traced, plain))
        self.assertEqual(traced.stdout, plain.stdout, (traced, plain))
        return traced, plain

    def test_dispositions_as_untraced(self):
        env = self.make_env()
        for pre in (["env", "--default-signal"], ["env", "--ignore-signal=INT,PIPE,TERM,HUP"], []):
            traced, plain = self.compare(env, [PY, "-c", DISPOSITIONS], pre)
            self.assertEqual(traced.returncode, 0, traced)
            if pre and pre[1] == "--default-signal":
                self.assertIn(b"SIGINT <built-in function default_int_handler> FUNC", traced.stdout)
                self.assertIn(b"SIGTERM 0 DFL 0", traced.stdout)
                self.assertIn(b"interrupt_main: KeyboardInterrupt", traced.stdout)
            elif pre:
                self.assertIn(b"SIGINT 1 IGN", traced.stdout)

    def test_a_child_inherits_what_it_would_untraced(self):
        env = self.make_env()
        # The shim runs in sh and in the python it starts (fork + exec): both
        # see, and pass on, the dispositions they were given.
        sh = 'trap "" HUP; exec %s -c "$0"' % PY
        traced, _ = self.compare(env, ["sh", "-c", sh, DISPOSITIONS], ["env", "--default-signal"])
        self.assertIn(b"SIGHUP 1 IGN 0", traced.stdout)
        self.assertIn(b"SIGTERM 0 DFL 0", traced.stdout)

    def test_ctrl_c_raises_keyboard_interrupt_and_runs_finally(self):
        env = self.make_env()
        traced, _ = self.compare(env, [PY, "-c", CTRL_C], ["env", "--default-signal"])
        self.assertEqual(traced.stdout, b"finally ran\nKeyboardInterrupt\n")
        self.assertEqual(traced.returncode, 0)

    def test_issue_reproduction(self):
        env = self.make_env()
        traced = env.run(["env", "--default-signal", tstest.tsenv.WRAPPER, "run", "--", PY, "-c", REPRO],
                         via="plain")
        plain = env.run(["env", "--default-signal", PY, "-c", REPRO], via="plain")
        self.assertEqual(traced.stdout, b"<built-in function default_int_handler>\n", traced)
        self.assertIn(b"KeyboardInterrupt", traced.stderr)
        self.assertEqual(traced.returncode, plain.returncode)
        self.assertEqual(traced.returncode, -signal.SIGINT)  # python re-raises it to die of it


class KilledBySignal(tstest.TestCase):
    def killed(self, env, name):
        """Runs SUICIDE traced, leaving it unreaped (a zombie) until its process
        span arrives, so the exporter can read its wait status."""
        p = env.spawn(["env", "--default-signal", PY, "-c", SUICIDE, name], via="preload")
        spans = env.wait_spans(1, where=lambda s: s["attrs"].get("traceshim.process.end") == "hangup",
                               what="the process span shipped at the hang-up")
        p.communicate(timeout=30)
        self.assertEqual(p.returncode, -getattr(signal, name))
        plain = env.run(["env", "--default-signal", PY, "-c", SUICIDE, name], via="plain")
        self.assertEqual(plain.returncode, p.returncode)
        proc = [s for s in spans if s["attrs"].get("traceshim.process.end") == "hangup"]
        self.assertEqual(len(proc), 1, proc)
        dns = [s for s in spans if s["name"] == "getaddrinfo"]
        self.assertEqual(len(dns), 1, spans)
        self.assertEqual(dns[0]["parent_span_id"], proc[0]["span_id"])
        self.assertGreaterEqual(proc[0]["end_ns"], dns[0]["end_ns"])
        return proc[0]

    def test_crash_is_an_error(self):
        env = self.make_env()
        span = self.killed(env, "SIGSEGV")
        self.assertEqual(span["attrs"]["process.exit.signal"], signal.SIGSEGV)
        self.assertEqual(span["status_code"], 2)
        self.assertEqual(span["attrs"]["error.type"], "SIGSEGV")

    def test_sigterm_is_recorded_but_not_an_error(self):
        env = self.make_env()
        span = self.killed(env, "SIGTERM")
        self.assertEqual(span["status_code"], 0)
        self.assertEqual(span["attrs"]["process.exit.signal"], signal.SIGTERM)
        self.assertEqual(span["attrs"]["traceshim.process.signal"], "TERM")

    def test_sigkill(self):
        env = self.make_env()
        span = self.killed(env, "SIGKILL")
        self.assertEqual(span["attrs"]["process.exit.signal"], signal.SIGKILL)

    def test_reaped_at_once_still_gets_its_process_span(self):
        # subprocess reaps it at once: the wait status may be gone by the time
        # the exporter looks, the span is not.
        env = self.make_env()
        r = env.run([PY, "-c", SUICIDE, "SIGTERM"], via="preload")
        self.assertEqual(r.returncode, -signal.SIGTERM)
        spans = env.wait_spans(1, where=lambda s: s["attrs"].get("traceshim.process.end") == "hangup")
        self.assertEqual(len([s for s in spans if s["name"] == "python3.11"]), 1, spans)

    def test_normal_exit_after_closing_our_fd_is_one_process_span(self):
        # closerange takes the shim's socket: the ring is let go (its
        # announcement withdrawn) and a new one made for the next span. The
        # exporter must not ship the first one as a hang-up.
        env = self.make_env()
        code = ("import os, socket\nsocket.getaddrinfo('localhost', 80)\nos.closerange(3, 1024)\n"
                "socket.getaddrinfo('localhost', 81)\n")
        r = env.run([PY, "-c", code], via="preload")
        self.assertOk(r)
        spans = env.wait_spans(3, where=lambda s: s["name"] in ("getaddrinfo", "python3.11"))
        proc = [s for s in spans if s["name"] == "python3.11"]
        self.assertEqual(len(proc), 1, proc)
        self.assertEqual(proc[0]["attrs"].get("process.exit.code"), 0)
        self.assertNotIn("traceshim.process.end", proc[0]["attrs"])


if __name__ == "__main__":
    tstest.main()
