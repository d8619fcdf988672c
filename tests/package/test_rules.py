#!/usr/bin/python3
"""TRACESHIM_INCLUDE / TRACESHIM_EXCLUDE and socket activation, on the build
tree (no root, a few seconds). test_deb.py does the same with the installed
package inside a fresh Debian root.

- a shell pipeline where only the included programs produce spans, every
  program's output and exit status the same as untraced;
- the exporter taking its socket from systemd-socket-activate (the LISTEN_FDS
  protocol of ListenSequentialPacket=), leaving the socket file to it, and
  refusing one bound elsewhere."""

import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import tsenv  # noqa: E402
import tstest  # noqa: E402

PY_GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).status)"


def executables(spans):
    return sorted({s["resource"].get("process.executable.name") for s in spans})


class IncludeExclude(tstest.TestCase):
    def pipeline(self, env, url, rules):
        """sh -c 'curl; python3' traced with `rules`, and the same untraced."""
        script = "curl -s %s; /usr/bin/python3 -c '%s' %s; echo done $?" % (url, PY_GET, url)
        traced = env.run(["sh", "-c", script], env=rules)
        plain = env.run(["sh", "-c", script], via="plain")
        self.assertSameOutput(traced, plain)
        self.assertIn(tstest.INDEX_BODY, traced.stdout)
        self.assertTrue(traced.stdout.endswith(b"200\ndone 0\n"), traced.stdout[-40:])
        return traced

    def test_only_included_programs_make_spans(self):
        srv = self.start_http_server()
        env = self.make_env()
        self.pipeline(env, srv.url(), {"TRACESHIM_INCLUDE": "curl"})
        spans = env.wait_spans(1, where=lambda s: s["name"] == "GET" and s["kind"] == 3)
        self.assertEqual(executables(spans), ["curl"], tstest.spanlib.describe(spans))
        self.assertEqual(len([s for s in spans if s["name"] == "GET"]), 1)

    def test_excluded_programs_make_none_and_children_are_judged_anew(self):
        srv = self.start_http_server()
        env = self.make_env()
        # python3 is excluded by a glob on its real name (python3.11), sh by
        # argv[0]; curl, the child of an excluded sh, is traced.
        self.pipeline(env, srv.url(), {"TRACESHIM_EXCLUDE": "python3.*, sh"})
        spans = env.wait_spans(1, where=lambda s: s["name"] == "GET" and s["kind"] == 3)
        self.assertEqual(executables(spans), ["curl"], tstest.spanlib.describe(spans))
        # sh made no span, so curl is a root: its process span has no parent.
        curl = [s for s in spans if s["name"] == "curl"]
        self.assertEqual(len(curl), 1)
        self.assertEqual(curl[0]["parent_span_id"], "")

    def test_excluded_process_does_not_connect(self):
        env = self.make_env()
        r = env.run(["/usr/bin/python3", "-c", PY_GET, "http://127.0.0.1:%d/" % tstest.httpfixture.closed_port()],
                    env={"TRACESHIM_INCLUDE": "nothing-like-this"})
        self.assertNotEqual(r.returncode, 0)  # connection refused, as untraced
        # Traced, python3 would have connected (ring) by the time it exits.
        self.assertEqual(env.status_int("ring_connections"), 0, env.status())


class SocketActivation(tstest.TestCase):
    def setUp(self):
        self.activate = shutil.which("systemd-socket-activate")
        if not self.activate:
            self.skipTest("systemd-socket-activate (package systemd) is not installed")
        tsenv.require_built()

    def start(self, bound, configured, trace_file):
        p = subprocess.Popen([self.activate, "--seqpacket", "-l", bound,
                              "-E", "TRACESHIM_SOCKET=" + configured, "-E", "TRACESHIM_FILE=" + trace_file,
                              "-E", "TRACESHIM_LOG=info", "-E", "OTEL_BSP_SCHEDULE_DELAY=100", tsenv.EXPORTER],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.addCleanup(lambda: p.poll() is None and (os.killpg(p.pid, signal.SIGKILL), p.wait()))
        tstest.wait_until(lambda: os.path.exists(bound), 10, "systemd-socket-activate listening")
        return p

    def test_passed_socket_is_served_and_left_in_place(self):
        d = self.make_tmpdir()
        sock, tf = os.path.join(d, "exporter.sock"), os.path.join(d, "traces.jsonl")
        p = self.start(sock, sock, tf)
        env = tsenv.clean_environ(TRACESHIM_SOCKET=sock, LD_PRELOAD=tsenv.LIB)
        # The first connection makes the activator exec the exporter on fd 3.
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/" % tstest.httpfixture.closed_port()],
                           env=env, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        tstest.wait_until(lambda: os.path.exists(tf) and os.path.getsize(tf) > 0, 15, "spans in the file")
        st = subprocess.run([tsenv.EXPORTER, "--status"], env=tsenv.clean_environ(TRACESHIM_SOCKET=sock),
                            stdout=subprocess.PIPE, timeout=10)
        self.assertEqual(st.returncode, 0)
        self.assertIn(b"pid=%d\n" % p.pid, st.stdout, "the exporter runs as the activator's pid (exec)")
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=20)[0].decode(errors="replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertIn("passed by the service manager", out)
        self.assertTrue(os.path.exists(sock), "the exporter unlinked the service manager's socket")
        self.assertFalse(os.path.exists(sock + ".lock"), "no lock file beside a passed socket")
        spans = tstest.spanlib.read_jsonl(tf)[0]
        self.assertIn("connect", [s["name"] for s in spans])

    def test_listen_variables_for_another_pid_are_ignored(self):
        # Inherited from a socket-activated parent: not ours. The exporter
        # makes and owns its socket as usual (and removes it at exit).
        env = self.make_env(start_exporter=False)
        env.start_exporter(env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
        self.assertTrue(os.path.exists(env.socket + ".lock"))
        self.assertEqual(env.stop_exporter(), 0)
        self.assertFalse(os.path.exists(env.socket), "an exporter's own socket is removed at exit")

    def test_socket_bound_elsewhere_is_refused(self):
        d = self.make_tmpdir()
        p = self.start(os.path.join(d, "a.sock"), os.path.join(d, "b.sock"), os.path.join(d, "t.jsonl"))
        subprocess.run([tsenv.EXPORTER, "--ping"], env=tsenv.clean_environ(TRACESHIM_SOCKET=os.path.join(d, "a.sock")),
                       timeout=10)
        out = p.communicate(timeout=20)[0].decode(errors="replace")
        self.assertEqual(p.returncode, 1, out)
        self.assertIn("not to %s" % os.path.join(d, "b.sock"), out)


if __name__ == "__main__":
    tstest.main()
