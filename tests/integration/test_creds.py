#!/usr/bin/python3
"""Programs that drop privileges (docs/ARCHITECTURE.md §5, "Processes that
change their credentials"): started by root against root's private exporter
(socket 0600 in a 0700 directory, no TRACESHIM_ALLOWED_UIDS), their
unprivileged processes' spans still arrive — they connected before the
switch — and a process that is another uid from the start is still refused.
Needs root (skipped otherwise). ~10 s."""

import os
import pwd
import shutil
import socket
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.append(os.path.join(HERE, "..", "exporter"))  # tsframes (after lib: names clash)
import httpfixture  # noqa: E402
import tsframes  # noqa: E402
import tstest  # noqa: E402
from tstest import spanlib  # noqa: E402

SERVER, CLIENT = 2, 3

NGINX_SERVER = """
  server {{
    listen 127.0.0.1:{port};
    root {dir}/www;
  }}
"""


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line for pid %d" % pid)


def readable_by_others(path):
    if not os.stat(path).st_mode & 0o004:
        return False
    d = os.path.dirname(os.path.abspath(path))
    while True:
        if not os.stat(d).st_mode & 0o001:
            return False
        if d == "/":
            return True
        d = os.path.dirname(d)


@tstest.unittest.skipUnless(os.geteuid() == 0, "needs root: the programs switch from root to another user")
class PrivilegeDrop(tstest.TestCase):
    def open_tmpdir(self):
        # The unprivileged processes must reach their files (nginx's root,
        # apt's partial/ directory, which apt checks before it drops to _apt).
        d = self.make_tmpdir()
        os.chmod(d, 0o755)
        return d

    def test_nginx_worker_as_nobody_reaches_roots_private_exporter(self):
        env = self.make_env()
        self.assertEqual(os.stat(env.socket).st_mode & 0o777, 0o600, "the default private exporter")
        d = self.open_tmpdir()
        os.makedirs(os.path.join(d, "www"))
        with open(os.path.join(d, "www", "index.html"), "wb") as f:
            f.write(b"as nobody\n")
        os.chmod(os.path.join(d, "www", "index.html"), 0o644)
        port = httpfixture.free_port()
        conf = httpfixture.nginx_conf(d, NGINX_SERVER.format(dir=d, port=port), user="nobody nogroup")
        proc = httpfixture.spawn_nginx(self, env, d, conf, port)
        n = 20
        urls = ["http://127.0.0.1:%d/index.html?n=%d" % (port, i) for i in range(n)]
        r = env.run(["curl", "-s"] + urls, via="plain")
        self.assertOk(r)
        self.assertEqual(r.stdout, b"as nobody\n" * n)
        spans = env.wait_spans(n, where=lambda s: s["kind"] == SERVER, what="%d SERVER spans" % n)
        servers = [s for s in spans if s["kind"] == SERVER]
        self.assertEqual(sorted(s["attrs"].get("url.query") for s in servers),
                         sorted("n=%d" % i for i in range(n)))
        for s in servers:
            self.assertEqual(s["attrs"]["http.response.status_code"], 200)
        pids = {int(s["resource"]["process.pid"]) for s in servers}
        self.assertEqual(len(pids), 1, "one worker")
        worker = pids.pop()
        self.assertNotEqual(worker, proc.pid, "the worker, not the master, served them")
        self.assertEqual(uid_of(worker), pwd.getpwnam("nobody").pw_uid, "the worker runs as nobody")
        self.assertEqual(env.status_int("connections_refused"), 0, env.status())

    def test_apt_get_update_shows_the_requests_of_its_apt_sandbox_method(self):
        try:
            sandbox = pwd.getpwnam("_apt")
        except KeyError:
            self.skipTest("no _apt user: apt does not drop privileges here")
        if not shutil.which("apt-get"):
            self.skipTest("no apt-get")
        env = self.make_env()
        d = self.open_tmpdir()
        mirror = os.path.join(d, "mirror")
        os.makedirs(mirror)  # empty: every file is a 404, which is all we need
        srv, port = httpfixture.spawn_http_server(mirror)
        self.addCleanup(httpfixture.stop_process, srv)
        for sub in ("lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(d, sub))
        sources = os.path.join(d, "sources.list")
        with open(sources, "w") as f:
            f.write("deb [trusted=yes] http://127.0.0.1:%d/debian bookworm main\n" % port)
        argv = ["apt-get", "update",
                "-o", "Dir::Etc::SourceList=" + sources, "-o", "Dir::Etc::SourceParts=-",
                "-o", "Dir::State::Lists=" + os.path.join(d, "lists"),
                "-o", "Dir::Cache=" + os.path.join(d, "cache"),
                "-o", "Acquire::Languages=none", "-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
                "-o", "Debug::NoLocking=1"]
        r = env.run(argv, timeout=60)
        self.assertIn(b"127.0.0.1", r.stdout + r.stderr, r)
        self.assertNotIn(b"unsandboxed", r.stdout + r.stderr, "apt did not drop to _apt: the test tests nothing")
        spans = env.wait_spans(1, where=lambda s: s["kind"] == CLIENT and s["name"] == "GET",
                               what="apt's GET requests")
        gets = [s for s in spans if s["kind"] == CLIENT and s["name"] == "GET"]
        for s in gets:
            self.assertIn("127.0.0.1:%d/debian/" % port, s["attrs"]["url.full"])
            self.assertEqual(s["resource"].get("process.executable.path"), "/usr/lib/apt/methods/http", s)
        del sandbox
        self.assertEqual(env.status_int("connections_refused"), 0, env.status())

    def test_a_child_forked_after_the_switch_gets_a_channel_of_its_own(self):
        # The child of a process that is nobody now could not connect itself:
        # the parent asks the exporter for a connection on its behalf at fork
        # (CHANNEL_REQ). Its spans arrive as its own process's, the parent's too.
        env = self.make_env()
        srv = self.start_http_server()
        code = """if True:
            import os, sys, urllib.request
            get = lambda tag: urllib.request.urlopen(sys.argv[1] + "?" + tag, timeout=10).read()
            get("root")
            os.setgroups([]); os.setgid(65534); os.setuid(65534)
            get("parent-as-nobody")
            pid = os.fork()
            if pid == 0:
                get("child")
                os._exit(0)
            os.waitpid(pid, 0)
            get("parent-after-fork")
            print(pid)
        """
        r = env.run(["/usr/bin/python3", "-c", code, srv.url("/")], via="preload", cwd="/")
        self.assertOk(r)
        child = int(r.stdout)
        spans = env.wait_spans(4, where=lambda s: s["kind"] == CLIENT, what="4 GETs")
        gets = {s["attrs"]["url.full"].rsplit("?", 1)[1]: int(s["resource"]["process.pid"])
                for s in spans if s["kind"] == CLIENT}
        self.assertEqual(sorted(gets), ["child", "parent-after-fork", "parent-as-nobody", "root"])
        self.assertEqual(gets["child"], child, "the child's span carries the child's resource")
        self.assertEqual(len({gets["root"], gets["parent-as-nobody"], gets["parent-after-fork"]}), 1)
        self.assertNotEqual(gets["root"], child)
        st = env.status()
        self.assertEqual(int(st["child_channels"]), 1, st)
        self.assertEqual(int(st["connections_refused"]), 0, st)

    def test_a_process_that_is_another_uid_from_the_start_is_refused(self):
        # No widening: what keeps the channel is having connected before the
        # switch. python started as nobody (setpriv, itself traced, connects
        # as root before it switches; python is a new image and connects as
        # nobody) cannot reach root's 0600 socket, and says so, once.
        if not readable_by_others(tstest.tsenv.LIB):
            self.skipTest("%s is not readable by other users (a checkout in a 0700 home)" % tstest.tsenv.LIB)
        env = self.make_env(env={"TRACESHIM_LOG": "warn"})
        srv = self.start_http_server()
        r = env.run(AS_NOBODY + ["/usr/bin/python3", "-c", QUIET_GET, srv.url("/")], via="preload", cwd="/")
        self.assertOk(r)
        self.assertEqual(refusal_lines(r), ["belongs to another user"], r.stderr)
        env.wait_spans(1, where="setpriv")  # setpriv's own span: it connected while still root
        self.assertFalse([s for s in env.spans() if s["resource"].get("process.executable.name") == "python3"])


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
# A few spans, then a pause (no more spans), then exit.
QUIET_GET = tstest.PYTHON_GET.replace("sys.stdout.buffer.write(", "(") + "import time; time.sleep(0.3)\n"
REASONS = ("belongs to another user", "TRACESHIM_ALLOWED_UIDS", "TRACESHIM_MAX_CONNECTIONS")


def refusal_lines(result):
    """The shim's refusal lines on stderr, each as the reason it names."""
    got = []
    for line in result.stderr.decode(errors="replace").splitlines():
        if "refused this process" in line:
            got.append(next((r for r in REASONS if r in line), line))
    return got


class Refusals(tstest.TestCase):
    """Issue 13 part 6: a refused process says so on stderr (TRACESHIM_LOG=warn),
    once, and the exporter counts refusals by reason (`traceshim status`)."""

    def test_connection_limit(self):
        env = self.make_env(env={"TRACESHIM_MAX_CONNECTIONS": "1"})
        srv = self.start_http_server()
        holder = tsframes.Client(env.socket, service="holder")  # the one connection allowed
        holder.send_spans(1, name="held")
        env.wait_spans(1, where="held", settle=0)  # it was admitted
        r = env.run(tstest.python_get(srv.url("/")), via="preload", env={"TRACESHIM_LOG": "warn"})
        self.assertOk(r)
        self.assertEqual(refusal_lines(r), ["TRACESHIM_MAX_CONNECTIONS"], r.stderr)
        r = env.run(tstest.python_get(srv.url("/")), via="preload")  # TRACESHIM_LOG unset: silent
        self.assertOk(r)
        self.assertEqual(refusal_lines(r), [])
        self.assertEqual(r.stderr, b"")
        holder.close()
        tstest.wait_until(lambda: env.status_int("connections_refused_limit") >= 2, 5,
                          lambda: "two limit refusals counted: %r" % env.status())
        st = env.wrapper("status")
        self.assertOk(st)
        self.assertIn(b"connections_refused_limit=2\n", st.stdout)
        self.assertIn(b"connections_refused_uid=0\n", st.stdout)
        self.assertIn(b"2 connection(s) refused: 0 by uid (TRACESHIM_ALLOWED_UIDS), 2 over the connection limit",
                      st.stderr)

    def test_uid_not_allowed(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to run a process as another user")
        if not readable_by_others(tstest.tsenv.LIB):
            self.skipTest("%s is not readable by other users (a checkout in a 0700 home)" % tstest.tsenv.LIB)
        # A shared exporter (socket 0666) that admits some other uid, not nobody.
        env = self.make_env(start_exporter=False)
        os.chmod(env.dir, 0o711)
        env.start_exporter(env={"TRACESHIM_ALLOWED_UIDS": "4242"})
        srv = self.start_http_server()
        r = env.run(AS_NOBODY + ["/usr/bin/python3", "-c", QUIET_GET, srv.url("/")], via="preload", cwd="/",
                    env={"TRACESHIM_LOG": "warn"})
        self.assertOk(r)
        self.assertEqual(refusal_lines(r), ["TRACESHIM_ALLOWED_UIDS"], r.stderr)
        tstest.wait_until(lambda: env.status_int("connections_refused_uid") >= 1, 5,
                          lambda: "a uid refusal counted: %r" % env.status())
        self.assertEqual(env.status_int("connections_refused_limit"), 0)


CHANNEL_REQ, CHANNEL, REFUSED = 7, 8, 6  # shim/frame.h


class ChildChannel(tstest.TestCase):
    """The exporter's side of CHANNEL_REQ, played by hand: a connection of
    its own for the child (own HELLO, own resource), bounded by
    TRACESHIM_MAX_CONNECTIONS — over it the reply is REFUSED and the
    requester's connection goes on."""

    def request(self, c):
        c.sock.send(tsframes.frame(CHANNEL_REQ, b""))
        msg, fds, _, _ = socket.recv_fds(c.sock, 64, 1)
        return tsframes.HEADER.unpack_from(msg)[2], fds, msg

    def test_child_channel_and_its_bound(self):
        env = self.make_env(env={"TRACESHIM_MAX_CONNECTIONS": "2"})
        parent = tsframes.Client(env.socket, service="parent")
        self.addCleanup(parent.close)
        ftype, fds, _ = self.request(parent)
        self.assertEqual((ftype, len(fds)), (CHANNEL, 1))
        child = socket.socket(fileno=fds[0])
        self.addCleanup(child.close)
        child.sendall(tsframes.frame(tsframes.HELLO, tsframes.hello_payload("child")))
        child.sendall(tsframes.frame(tsframes.SPANS, tsframes.spans_payload(
            [tsframes.span_record(os.urandom(16), os.urandom(8), "from-child")])))
        # two connections now: the next request is refused, the parent goes on
        ftype, fds, msg = self.request(parent)
        self.assertEqual((ftype, fds), (REFUSED, []))
        self.assertEqual(msg[tsframes.HEADER.size:], struct.pack("=I", 2), "reason: the connection limit")
        parent.send_spans(1, name="from-parent")
        spans = env.wait_spans(2, where=lambda s: s["name"].startswith("from-"), settle=0)
        by_name = {s["name"]: s["resource"]["service.name"] for s in spans}
        self.assertEqual(by_name, {"from-child": "child", "from-parent": "parent"})
        child.close()
        parent.close()
        st = env.status()
        self.assertEqual(int(st["child_channels"]), 1, st)
        self.assertEqual(int(st["connections_refused_limit"]), 1, st)


if __name__ == "__main__":
    tstest.main()
