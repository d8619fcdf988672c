"""Shared unittest scaffolding for tests/integration/*.py.

Each test file starts with:

    import os, sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    import tstest

and ends with `tstest.main()`.
"""

import atexit
import os
import signal
import tempfile
import unittest

import httpfixture
import spans as spanlib
import tsenv
from tsenv import wait_until  # noqa: F401 (for the tests: tstest.wait_until)

# A few kilobytes over several lines (and TCP segments), so that "byte-identical"
# means something.
INDEX_BODY = ("<!doctype html>\n<title>traceshim</title>\n<p>hello from the traceshim test server</p>\n"
              + "".join("line %03d: %s\n" % (i, "x" * (i % 60)) for i in range(80))).encode()


# A client that resolves names with getaddrinfo (curl answers "localhost" itself).
PYTHON_GET = ("import sys, urllib.request\n"
              "sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=10).read())\n")


def by_kind(spans, kind, **attrs):
    """The spans of this kind whose attributes (resource included) have these values."""
    return [s for s in spans if s["kind"] == kind and all(s["attrs"].get(k) == v for k, v in attrs.items())]


def one(test, spans, kind, **attrs):
    """The one span of this kind with these attributes (fails otherwise)."""
    got = by_kind(spans, kind, **attrs)
    test.assertEqual(len(got), 1, "want one kind=%d span with %r:\n%s" % (kind, attrs, spanlib.describe(spans)))
    return got[0]


def python_get(url):
    """argv that GETs url with Debian's python3 and writes the body to stdout."""
    return ["/usr/bin/python3", "-c", PYTHON_GET, url]


class TestCase(unittest.TestCase):
    maxDiff = 4000

    def make_env(self, **kw):
        env = tsenv.Env(**kw)
        self.addCleanup(env.close)
        return env

    def make_tmpdir(self):
        d = tsenv.short_tmpdir("traceshim-it-t-")
        if not tsenv.KEEP:
            import shutil
            self.addCleanup(shutil.rmtree, d, True)
        return d

    def start_http_server(self, body=INDEX_BODY):
        """An in-process http.server on 127.0.0.1 serving `body` at /."""
        www = self.make_tmpdir()
        with open(os.path.join(www, "index.html"), "wb") as f:
            f.write(body)
        srv = httpfixture.HttpServer(www).start()
        self.addCleanup(srv.stop)
        return srv

    # -- assertions ------------------------------------------------------------
    def assertOk(self, result, msg=None):
        self.assertEqual(result.returncode, 0, msg or "command failed: %r" % (result,))

    def assertSameOutput(self, traced, plain, normalize=None):
        """stdout byte-identical, stderr identical (after normalize), same exit status."""
        self.assertEqual(traced.stdout, plain.stdout, "stdout differs under the shim")
        te, pe = traced.stderr, plain.stderr
        if normalize:
            te, pe = normalize(te), normalize(pe)
        self.assertEqual(te, pe, "stderr differs under the shim")
        self.assertEqual(traced.returncode, plain.returncode, "exit status differs under the shim")

    def assertChildOf(self, spans, child, parent):
        self.assertEqual(child["trace_id"], parent["trace_id"],
                         "%s is not in its parent's trace:\n%s" % (child["name"], spanlib.describe(spans)))
        self.assertEqual(child["parent_span_id"], parent["span_id"],
                         "%s is not a child of %s:\n%s" % (child["name"], parent["name"], spanlib.describe(spans)))

    def assertWithin(self, child, parent):
        self.assertLessEqual(parent["start_ns"], child["start_ns"], "%s starts before its parent" % child["name"])
        self.assertLessEqual(child["end_ns"], parent["end_ns"], "%s ends after its parent" % child["name"])
        self.assertLessEqual(child["start_ns"], child["end_ns"], "%s ends before it starts" % child["name"])


def _terminated(signum, frame):
    # meson's timeout: leave no exporter or traced program behind.
    tsenv.emergency_cleanup()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def main():
    # Temp files of the tests go to /tmp (short Unix socket paths).
    tempfile.tempdir = "/tmp" if os.path.isdir("/tmp") else None
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, _terminated)
    atexit.register(tsenv.emergency_cleanup)
    unittest.main(verbosity=2, buffer=False)
