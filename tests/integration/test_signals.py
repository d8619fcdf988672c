"""A traced process killed by a signal dies of that same signal (same wait
status, fail-open), and its process span says so: ERROR for a crash, not for
the signals that stop services."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tstest  # noqa: E402
from tstest import spanlib  # noqa: E402

SUICIDE = "import os, signal, sys; os.kill(os.getpid(), getattr(signal, sys.argv[1]))"


class Signals(tstest.TestCase):
    def die_of(self, env, name):
        traced = env.run(["/usr/bin/python3", "-c", SUICIDE, name], via="preload")
        plain = env.run(["/usr/bin/python3", "-c", SUICIDE, name], via="plain")
        self.assertEqual(traced.returncode, -getattr(signal, name), traced)
        self.assertEqual(traced.returncode, plain.returncode)
        spans = env.wait_spans(1, where=lambda s: s["attrs"].get("process.exit.signal") == getattr(signal, name))
        return [s for s in spans if s["attrs"].get("process.exit.signal") == getattr(signal, name)][0]

    def test_crash_is_an_error(self):
        env = self.make_env()
        span = self.die_of(env, "SIGSEGV")
        self.assertEqual(span["status_code"], 2)
        self.assertEqual(span["attrs"]["error.type"], "SIGSEGV")

    def test_sigterm_is_recorded_but_not_an_error(self):
        env = self.make_env()
        span = self.die_of(env, "SIGTERM")
        self.assertEqual(span["status_code"], 0)
        self.assertEqual(span["attrs"]["traceshim.process.signal"], "TERM")


if __name__ == "__main__":
    tstest.main()
