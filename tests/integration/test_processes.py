#!/usr/bin/python3
"""Processes (issue 4): one trace across fork/exec, shells, make, Python's
subprocess, system() and popen(); forking servers; threads; long jobs split
into linked traces; code.stacktrace on error spans. See docs/ARCHITECTURE.md §9."""

import os
import re
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import httpfixture  # noqa: E402
import spans as spanlib  # noqa: E402
import tstest  # noqa: E402

attr = spanlib.attr
PY = "/usr/bin/python3"


# ---- helpers over spans -------------------------------------------------------

def is_process_span(s):
    return s["kind"] == 1 and s["name"] == s["resource"].get("process.executable.name")


def process_spans(spans):
    return [s for s in spans if is_process_span(s)]


def pid(s):
    return s["resource"].get("process.pid")


def ancestors(spans, s):
    """Parent, grandparent, ... (within the spans we have)."""
    idx = spanlib.by_id(spans)
    out, seen = [], set()
    while s["parent_span_id"] and (s["trace_id"], s["parent_span_id"]) in idx:
        s = idx[(s["trace_id"], s["parent_span_id"])]
        if s["span_id"] in seen:
            break
        seen.add(s["span_id"])
        out.append(s)
    return out


def own_process_span(spans, s):
    """The nearest process span above s that belongs to the same process."""
    for a in ancestors(spans, s):
        if is_process_span(a) and pid(a) == pid(s):
            return a
    return None


def client_spans(spans):
    return [s for s in spans if s["kind"] == 3 and attr(s, "http.request.method")]


# A small C program for what only C can do exactly: system(), popen(), vfork(),
# a failing exec, signal dispositions. It prints what it saw, so a traced run
# can be compared byte for byte with an untraced one.
PROBE_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_int(int sig) { (void)sig; }

__attribute__((noinline)) static int dial(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	int err = errno;
	close(fd);
	return rc == 0 ? 0 : err;
}

int main(int argc, char **argv)
{
	const char *mode = argv[1], *url = argc > 2 ? argv[2] : "";
	char cmd[512];
	if (!strcmp(mode, "system")) {
		signal(SIGINT, on_int);
		snprintf(cmd, sizeof cmd, "curl -s -o /dev/null %s", url);
		int ok = system(cmd);
		int fail = system("exit 3");
		int null = system(NULL);
		struct sigaction sa;
		sigaction(SIGINT, NULL, &sa);
		sigset_t m;
		sigprocmask(SIG_BLOCK, NULL, &m);
		printf("system=%d fail=%d null=%d sigint_kept=%d chld_blocked=%d\n", ok, fail, null,
		       sa.sa_handler == on_int, sigismember(&m, SIGCHLD));
	} else if (!strcmp(mode, "popen")) {
		snprintf(cmd, sizeof cmd, "curl -s %s", url);
		FILE *f = popen(cmd, "r");
		char buf[65536];
		size_t n = fread(buf, 1, sizeof buf, f);
		int st = pclose(f);
		FILE *w = popen("wc -c", "w");
		fputs("twelve bytes", w);
		int wst = pclose(w);
		errno = 0;
		FILE *bad = popen("true", "rw");
		int bad_errno = errno;
		FILE *e = popen("exit 5", "re");
		int est = pclose(e);
		printf("read=%zu status=%d wstatus=%d bad=%d/%s estatus=%d\n", n, st, wst, bad == NULL,
		       strerrorname_np(bad_errno), est);
	} else if (!strcmp(mode, "vfork")) {
		pid_t p = vfork();
		if (p == 0) {
			execl("/usr/bin/curl", "curl", "-s", "-o", "/dev/null", url, (char *)NULL);
			_exit(127);
		}
		int st;
		waitpid(p, &st, 0);
		printf("vfork child status=%d\n", st);
	} else if (!strcmp(mode, "execfail")) {
		errno = 0;
		int rc = execl("/nonexistent/program", "program", (char *)NULL);
		int err = errno;
		int c = dial(atoi(url));
		printf("exec=%d errno=%s then connect=%s\n", rc, strerrorname_np(err), strerrorname_np(c));
	} else if (!strcmp(mode, "fork")) {
		pid_t p = fork();
		if (p == 0) {
			dial(atoi(url));
			_exit(0);
		}
		int st;
		waitpid(p, &st, 0);
		dial(atoi(url));
		printf("fork child status=%d\n", st);
	}
	return 0;
}
"""


class Processes(tstest.TestCase):
    def setUp(self):
        self.srv = self.start_http_server()
        self.url = self.srv.url("/")

    def probe(self):
        """The C probe, compiled once per test into a temp dir."""
        d = self.make_tmpdir()
        src, exe = os.path.join(d, "probe.c"), os.path.join(d, "probe")
        with open(src, "w") as f:
            f.write(PROBE_C)
        subprocess.run(["cc", "-O1", "-g", "-o", exe, src], check=True)
        return exe

    def assertDescends(self, spans, child, ancestor):
        self.assertIn(ancestor["span_id"], [a["span_id"] for a in ancestors(spans, child)],
                      "%s (pid %s) does not descend from %s (pid %s):\n%s"
                      % (child["name"], pid(child), ancestor["name"], pid(ancestor), spanlib.describe(spans, 80)))

    def assertOneRun(self, spans):
        ids = {attr(s, "traceshim.run.id") for s in spans}
        self.assertEqual(len(ids), 1, "one traceshim.run.id on every span: %r" % ids)
        self.assertRegex(ids.pop() or "", r"^[0-9A-Za-z._-]{1,64}$")

    # -- exec propagation ----------------------------------------------------
    def test_shell_curl_and_python_make_one_trace(self):
        env = self.make_env()
        script = "curl -s -o /dev/null %s; %s -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()' %s" % (
            self.url, PY, self.url)
        r = env.run(["sh", "-c", script])
        self.assertOk(r)
        spans = env.wait_spans(3, where=is_process_span, what="sh, curl and python process spans")
        spans = env.wait_spans(2, where=lambda s: s["kind"] == 3, what="two HTTP client spans")
        self.assertEqual(len(spanlib.trace_ids(spans)), 1, "one trace:\n" + spanlib.describe(spans, 80))
        roots = spanlib.roots(spans)
        self.assertEqual(len(roots), 1, "a single root:\n" + spanlib.describe(spans, 80))
        shell = roots[0]
        self.assertTrue(is_process_span(shell), "the root is the shell's process span")
        self.assertEqual(pid(shell), r.pid, "the wrapper execs the shell")
        procs = process_spans(spans)
        curl = [s for s in procs if s["name"] == "curl"]
        python = [s for s in procs if s["name"].startswith("python3")]
        self.assertEqual((len(curl), len(python)), (1, 1), spanlib.describe(procs))
        for p in curl + python:
            self.assertDescends(spans, p, shell)
            self.assertWithin(p, shell)
        self.assertEqual(len({pid(shell), pid(curl[0]), pid(python[0])}), 3, "three distinct pids")
        self.assertEqual(len(procs), 3, "fork+exec is one process, not two:\n" + spanlib.describe(procs))
        # Each HTTP client span sits under its own process span.
        for proc in curl + python:
            mine = [c for c in client_spans(spans) if pid(c) == pid(proc)]
            self.assertEqual(len(mine), 1, "one GET from %s:\n%s" % (proc["name"], spanlib.describe(spans, 80)))
            self.assertIs(own_process_span(spans, mine[0]), proc)
            conns = [c for c in spanlib.spans_by_name(spans, "connect") if pid(c) == pid(proc)]
            self.assertTrue(conns)
            for c in conns:
                self.assertDescends(spans, c, proc)
        self.assertOneRun(spans)

    def test_bash_and_xargs(self):
        env = self.make_env()
        r = env.run(["bash", "-c", "printf '%%s\\n' %s %s | xargs -n1 curl -s -o /dev/null" % (
            self.srv.url("/x1"), self.srv.url("/x2"))])
        self.assertOk(r)
        spans = env.wait_spans(2, where=lambda s: is_process_span(s) and s["name"] == "curl")
        spans = env.wait_spans(3, where=is_process_span)
        self.assertEqual(len(spanlib.trace_ids(spans)), 1, spanlib.describe(spans, 80))
        root = spanlib.roots(spans)
        self.assertEqual(len(root), 1)
        xargs = [s for s in process_spans(spans) if s["name"] == "xargs"]
        self.assertEqual(len(xargs), 1, spanlib.describe(process_spans(spans)))
        for c in [s for s in process_spans(spans) if s["name"] == "curl"]:
            self.assertEqual(c["parent_span_id"], xargs[0]["span_id"])
            self.assertEqual(len([g for g in client_spans(spans) if pid(g) == pid(c)]), 1)
        self.assertDescends(spans, xargs[0], root[0])

    def test_child_environment_carries_the_context(self):
        env = self.make_env(env={
            "TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "TRACESTATE": "vendor=opaque",
            "BAGGAGE": "tenant=acme",
        })
        show = "import os; print(*[os.environ.get(k, '-') for k in ('TRACEPARENT', 'TRACESTATE', 'BAGGAGE', 'TRACESHIM_RUN_ID', 'LD_PRELOAD')])"
        # env -i: a caller that passes its own, empty, environment.
        r = env.run(["sh", "-c", "%s -c \"%s\"; env -i %s -c \"%s\"" % (PY, show, PY, show)])
        self.assertOk(r)
        spans = env.wait_spans(3, where=is_process_span)
        shell = [s for s in process_spans(spans) if pid(s) == r.pid]
        self.assertEqual(len(shell), 1, spanlib.describe(spans))
        shell = shell[0]
        self.assertEqual(shell["trace_id"], "0af7651916cd43dd8448eb211c80319c", "continues TRACEPARENT")
        self.assertEqual(shell["parent_span_id"], "b7ad6b7169203331")
        run_id = attr(shell, "traceshim.run.id")
        # `env` is a traced process too: the second python is its child.
        env_proc = [s for s in process_spans(spans) if s["name"] == "env"]
        self.assertEqual(len(env_proc), 1, spanlib.describe(spans))
        self.assertEqual(env_proc[0]["parent_span_id"], shell["span_id"])
        self.assertEqual(attr(env_proc[0], "traceshim.process.end"), "exec")
        lines = r.stdout.decode().splitlines()
        self.assertEqual(len(lines), 2, r)
        for line, parent in zip(lines, (shell, env_proc[0])):
            tp, ts, bg, rid, preload = line.split(" ")
            self.assertEqual(tp, "00-%s-%s-01" % (parent["trace_id"], parent["span_id"]),
                             "TRACEPARENT is the process span of %s" % parent["name"])
            self.assertEqual(ts, "vendor=opaque")
            self.assertEqual(bg, "tenant=acme")
            self.assertEqual(rid, run_id)
            self.assertEqual(preload.count("libtraceshim.so"), 1, preload)
        pythons = [s for s in process_spans(spans) if s["name"].startswith("python3")]
        self.assertEqual(len(pythons), 2, "the env -i child is traced too:\n" + spanlib.describe(spans))

    def test_opting_a_child_out(self):
        env = self.make_env()
        r = env.run(["sh", "-c", "OTEL_SDK_DISABLED=true curl -s -o /dev/null %s; curl -s -o /dev/null %s" % (self.url, self.url)])
        self.assertOk(r)
        spans = env.wait_spans(2, where=is_process_span)
        self.assertEqual(len([s for s in process_spans(spans) if s["name"] == "curl"]), 1,
                         "the child with OTEL_SDK_DISABLED=true is not traced:\n" + spanlib.describe(spans))

    def test_make_j2(self):
        env = self.make_env()
        d = self.make_tmpdir()
        with open(os.path.join(d, "Makefile"), "w") as f:
            f.write("all: a b\na:\n\tcurl -s -o /dev/null %s\nb:\n\tcurl -s -o /dev/null %s && true\n" % (
                self.srv.url("/a"), self.srv.url("/b")))
        r = env.run(["make", "-s", "-j2", "-C", d])
        self.assertOk(r)
        spans = env.wait_spans(2, where=lambda s: is_process_span(s) and s["name"] == "curl")
        spans = env.wait_spans(3, where=is_process_span)
        self.assertEqual(len(spanlib.trace_ids(spans)), 1, spanlib.describe(spans, 80))
        make = [s for s in process_spans(spans) if s["name"] == "make"]
        self.assertEqual(len(make), 1)
        self.assertFalse(make[0]["parent_span_id"], "make is the root")
        curls = [s for s in process_spans(spans) if s["name"] == "curl"]
        self.assertEqual(len(curls), 2)
        for c in curls:
            self.assertDescends(spans, c, make[0])
            self.assertEqual(len([g for g in client_spans(spans) if pid(g) == pid(c)]), 1)
        self.assertOneRun(spans)

    def test_python_subprocess_every_way(self):
        env = self.make_env()
        script = textwrap.dedent("""
            import os, subprocess, sys
            u = sys.argv[1]
            c = ["curl", "-s", "-o", "/dev/null"]
            subprocess.run(c + [u + "vfork"], check=True)                       # vfork + execve
            subprocess.run(c + [u + "spawn"], check=True, close_fds=False)      # posix_spawn
            subprocess.run(c + [u + "env"], check=True, env={"PATH": "/usr/bin:/bin"})  # no LD_PRELOAD
            assert os.system(" ".join(c + [u + "system"])) == 0                 # system()
            print("done")
        """)
        r = env.run([PY, "-c", script, self.srv.url("/")])
        self.assertOk(r)
        self.assertEqual(r.stdout, b"done\n")
        spans = env.wait_spans(4, where=lambda s: is_process_span(s) and s["name"] == "curl")
        py = [s for s in process_spans(spans) if s["name"].startswith("python3")]
        self.assertEqual(len(py), 1)
        py = py[0]
        curls = [s for s in process_spans(spans) if s["name"] == "curl"]
        paths = set()
        for c in curls:
            self.assertDescends(spans, c, py)
            gets = [g for g in client_spans(spans) if pid(g) == pid(c)]
            self.assertEqual(len(gets), 1, spanlib.describe(spans, 80))
            paths.add(attr(gets[0], "url.full").rsplit("/", 1)[1])
        self.assertEqual(paths, {"vfork", "spawn", "env", "system"})
        direct = [c for c in curls if c["parent_span_id"] == py["span_id"]]
        self.assertGreaterEqual(len(direct), 3, "vfork, posix_spawn and env= children hang right under python")
        self.assertEqual(len(spanlib.trace_ids(spans)), 1)
        self.assertOneRun(spans)

    # -- system, popen, vfork, exec failure: same behaviour, traced --------------
    def _same(self, env, argv):
        plain = env.run(argv, via="plain")
        traced = env.run(argv)
        self.assertSameOutput(traced, plain)
        return traced

    def test_system_keeps_its_contract(self):
        env = self.make_env()
        probe = self.probe()
        r = self._same(env, [probe, "system", self.url])
        self.assertEqual(r.stdout, b"system=0 fail=768 null=1 sigint_kept=1 chld_blocked=0\n")
        spans = env.wait_spans(1, where=lambda s: is_process_span(s) and s["name"] == "curl")
        spans = env.wait_spans(4, where=is_process_span)
        top = [s for s in process_spans(spans) if pid(s) == r.pid]
        self.assertEqual(len(top), 1)
        shells = [s for s in process_spans(spans) if s["name"] in ("dash", "sh")]
        self.assertGreaterEqual(len(shells), 3, "three system() shells:\n" + spanlib.describe(spans))
        for s in shells:
            self.assertEqual(s["parent_span_id"], top[0]["span_id"])
        curl = [s for s in process_spans(spans) if s["name"] == "curl"][0]
        self.assertDescends(spans, curl, top[0])

    def test_popen_and_pclose_keep_their_contract(self):
        env = self.make_env()
        probe = self.probe()
        r = self._same(env, [probe, "popen", self.url])
        self.assertEqual(r.stdout, b"12\nread=%d status=0 wstatus=0 bad=1/EINVAL estatus=1280\n" % len(tstest.INDEX_BODY))
        spans = env.wait_spans(1, where=lambda s: is_process_span(s) and s["name"] == "curl")
        top = [s for s in process_spans(spans) if pid(s) == r.pid][0]
        curl = [s for s in process_spans(spans) if s["name"] == "curl"][0]
        self.assertDescends(spans, curl, top)
        self.assertEqual(len(client_spans([s for s in spans if pid(s) == pid(curl)])), 1)

    def test_vfork_child_touches_nothing(self):
        env = self.make_env()
        probe = self.probe()
        r = self._same(env, [probe, "vfork", self.url])
        self.assertEqual(r.stdout, b"vfork child status=0\n")
        spans = env.wait_spans(2, where=is_process_span)
        procs = process_spans(spans)
        top = [s for s in procs if pid(s) == r.pid]
        self.assertEqual(len(top), 1, "the vfork child never ends its parent's span:\n" + spanlib.describe(procs))
        self.assertEqual(attr(top[0], "process.exit.code"), 0)
        curl = [s for s in procs if s["name"] == "curl"]
        self.assertEqual(len(curl), 1)
        self.assertEqual(curl[0]["parent_span_id"], top[0]["span_id"])
        ids = [s["span_id"] for s in spans]
        self.assertEqual(len(ids), len(set(ids)), "nothing reported twice")

    def test_failed_exec_keeps_the_process_traced(self):
        env = self.make_env()
        probe = self.probe()
        port = httpfixture.closed_port()
        r = self._same(env, [probe, "execfail", str(port)])
        self.assertEqual(r.stdout, b"exec=-1 errno=ENOENT then connect=ECONNREFUSED\n")
        spans = env.wait_spans(2, where=lambda s: is_process_span(s) and pid(s) == r.pid)
        segs = sorted([s for s in process_spans(spans) if pid(s) == r.pid], key=lambda s: s["start_ns"])
        self.assertEqual(len(segs), 2, spanlib.describe(spans))
        first, second = segs
        self.assertEqual(attr(first, "traceshim.process.end"), "exec")
        self.assertEqual(attr(second, "traceshim.process.origin"), "exec_failed")
        self.assertEqual(second["parent_span_id"], first["parent_span_id"], "same parent")
        self.assertIn((first["trace_id"], first["span_id"]), [(l["trace_id"], l["span_id"]) for l in second["links"]])
        conn = [s for s in spanlib.spans_by_name(spans, "connect") if attr(s, "network.peer.port") == port]
        self.assertEqual(len(conn), 1)
        self.assertEqual(conn[0]["parent_span_id"], second["span_id"], "spans after the failed exec are in the new segment")

    # -- fork without exec ------------------------------------------------------
    def test_forking_server(self):
        env = self.make_env()
        port = httpfixture.closed_port()
        script = textwrap.dedent("""
            import os, socket, sys, threading, urllib.request
            srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8)
            port, closed = srv.getsockname()[1], int(sys.argv[1])
            def client():
                for i in range(3):
                    urllib.request.urlopen("http://127.0.0.1:%d/r%d" % (port, i), timeout=10).read()
            t = threading.Thread(target=client); t.start()
            kids = []
            for i in range(3):
                conn, _ = srv.accept()
                pid = os.fork()
                if pid == 0:
                    srv.close()
                    conn.recv(65536)
                    try: socket.create_connection(("127.0.0.1", closed), timeout=2)
                    except OSError: pass
                    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
                    conn.close()
                    os._exit(0)
                conn.close()
                kids.append(pid)
            for k in kids: os.waitpid(k, 0)
            t.join()
            print("served", len(kids))
        """)
        r = env.run([PY, "-c", script, str(port)])
        self.assertOk(r)
        self.assertEqual(r.stdout, b"served 3\n")
        spans = env.wait_spans(4, where=is_process_span)
        procs = process_spans(spans)
        server = [s for s in procs if pid(s) == r.pid]
        self.assertEqual(len(server), 1, spanlib.describe(procs))
        server = server[0]
        kids = [s for s in procs if s is not server]
        self.assertEqual(len(kids), 3, spanlib.describe(procs))
        self.assertEqual(len({pid(k) for k in kids} | {pid(server)}), 4, "each child is a new process identity")
        for k in kids:
            self.assertEqual(attr(k, "traceshim.process.origin"), "fork")
            self.assertEqual(k["parent_span_id"], server["span_id"])
            self.assertEqual(attr(k, "process.parent_pid"), pid(server))
            self.assertEqual(attr(k, "traceshim.run.id"), attr(server, "traceshim.run.id"))
            conns = [s for s in spanlib.spans_by_name(spans, "connect") if pid(s) == pid(k)]
            self.assertEqual(len(conns), 1, "the child's own connect, once:\n" + spanlib.describe(spans, 80))
            self.assertEqual(conns[0]["trace_id"], server["trace_id"])
        ids = [(s["trace_id"], s["span_id"]) for s in spans]
        self.assertEqual(len(ids), len(set(ids)), "nothing in flight in the parent is reported twice")
        # The parent's own connections (the client thread) are reported by the parent only.
        parent_conns = [s for s in spanlib.spans_by_name(spans, "connection") if pid(s) == pid(server)]
        self.assertEqual(len(parent_conns), 3, spanlib.describe(spans, 80))

    def test_fork_child_of_a_c_program(self):
        env = self.make_env()
        probe = self.probe()
        port = httpfixture.closed_port()
        r = self._same(env, [probe, "fork", str(port)])
        self.assertEqual(r.stdout, b"fork child status=0\n")
        spans = env.wait_spans(2, where=is_process_span)
        top = [s for s in process_spans(spans) if pid(s) == r.pid][0]
        kid = [s for s in process_spans(spans) if s is not top]
        self.assertEqual(len(kid), 1)
        self.assertEqual(kid[0]["parent_span_id"], top["span_id"])
        for s in spanlib.spans_by_name(spans, "connect"):
            self.assertIs(own_process_span(spans, s), kid[0] if pid(s) == pid(kid[0]) else top)
            self.assertEqual(s["parent_span_id"], own_process_span(spans, s)["span_id"])

    def test_a_thousand_short_processes(self):
        env = self.make_env()
        r = env.run(["sh", "-c", "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done"], timeout=120)
        self.assertOk(r)
        spans = env.wait_spans(1001, where=is_process_span, timeout=60, settle=1.0)
        procs = process_spans(spans)
        self.assertEqual(len(procs), 1001, "exactly one process span per process")
        self.assertEqual(len([s for s in procs if s["name"] == "true"]), 1000)
        self.assertEqual(len({pid(s) for s in procs}), 1001)
        self.assertEqual(len(spanlib.trace_ids(spans)), 1)
        st = env.status()
        self.assertEqual(st.get("dropped_queue_full"), "0", st)
        self.assertEqual(st.get("dropped_client"), "0", st)

    # -- threads ---------------------------------------------------------------
    def test_threads_keep_their_own_context(self):
        env = self.make_env()
        handler_port, background_port = httpfixture.closed_port(), httpfixture.closed_port()
        script = textwrap.dedent("""
            import http.server, socket, sys, threading, time, urllib.request
            hp, bp = int(sys.argv[1]), int(sys.argv[2])
            def dial(port):
                try: socket.create_connection(("127.0.0.1", port), timeout=2)
                except OSError: pass
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    dial(hp); time.sleep(0.05); dial(hp)
                    self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
                    self.wfile.write(b"ok")
                def log_message(self, *a): pass
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            stop = False
            def background():
                while not stop:
                    dial(bp); time.sleep(0.01)
            bg = threading.Thread(target=background); bg.start()
            url = "http://127.0.0.1:%d/" % srv.server_address[1]
            cs = [threading.Thread(target=lambda: urllib.request.urlopen(url, timeout=10).read()) for _ in range(4)]
            for c in cs: c.start()
            for c in cs: c.join()
            stop = True; bg.join(); srv.shutdown()
            print("ok")
        """)
        r = env.run([PY, "-c", script, str(handler_port), str(background_port)])
        self.assertOk(r)
        spans = env.wait_spans(4, where=lambda s: s["kind"] == 2, what="four SERVER spans")
        proc = [s for s in process_spans(spans) if pid(s) == r.pid]
        self.assertEqual(len(proc), 1)
        proc = proc[0]
        servers = {s["span_id"]: s for s in spans if s["kind"] == 2}
        conns = spanlib.spans_by_name(spans, "connect")
        bg = [s for s in conns if attr(s, "network.peer.port") == background_port]
        hd = [s for s in conns if attr(s, "network.peer.port") == handler_port]
        self.assertGreater(len(bg), 3)
        self.assertEqual(len(hd), 8)
        for s in bg:
            self.assertEqual(s["parent_span_id"], proc["span_id"],
                             "a thread's spans never hang under another thread's request")
        for s in hd:
            self.assertIn(s["parent_span_id"], servers, "a handler's spans hang under its own request")
            self.assertEqual(attr(s, "thread.id"), attr(servers[s["parent_span_id"]], "thread.id"))
        self.assertEqual(len({attr(s, "thread.id") for s in servers.values()} - {attr(proc, "thread.id")}) >= 1, True)

    # -- long jobs ---------------------------------------------------------------
    def test_long_job_splits_into_linked_traces(self):
        env = self.make_env(env={"TRACESHIM_MAX_TRACE_SECONDS": "1"})
        r = env.run(["sh", "-c", "for i in 1 2 3 4 5 6; do curl -s -o /dev/null %s; sleep 0.5; done" % self.url])
        self.assertOk(r)
        spans = env.wait_spans(6, where=lambda s: is_process_span(s) and s["name"] == "curl")
        spans = env.wait_for(lambda got: any(pid(s) == r.pid and attr(s, "process.exit.code") is not None
                                             for s in process_spans(got)), what="the shell's last segment")
        segs = sorted([s for s in process_spans(spans) if pid(s) == r.pid], key=lambda s: s["start_ns"])
        self.assertGreaterEqual(len(segs), 2, spanlib.describe(spans, 80))
        self.assertGreaterEqual(len({s["trace_id"] for s in segs}), 2, "at least two traces")
        for n, (prev, seg) in enumerate(zip(segs, segs[1:]), 2):
            self.assertEqual(attr(seg, "traceshim.segment"), n)
            self.assertNotEqual(seg["trace_id"], prev["trace_id"])
            self.assertFalse(seg["parent_span_id"], "a segment starts a new trace")
            self.assertEqual([(l["trace_id"], l["span_id"]) for l in seg["links"]], [(prev["trace_id"], prev["span_id"])],
                             "each later segment is linked to the previous one")
            self.assertEqual(attr(prev, "traceshim.process.end"), "split")
            self.assertEqual(seg["name"], prev["name"])
            self.assertLessEqual(prev["end_ns"], seg["start_ns"])
        self.assertEqual(attr(segs[0], "traceshim.segment"), 1)
        # Every curl belongs to the segment that was current when it started.
        curls = [s for s in process_spans(spans) if s["name"] == "curl"]
        for c in curls:
            parent = [s for s in segs if s["span_id"] == c["parent_span_id"]]
            self.assertEqual(len(parent), 1, spanlib.describe(spans, 80))
            self.assertEqual(c["trace_id"], parent[0]["trace_id"])
            self.assertLessEqual(parent[0]["start_ns"], c["start_ns"])
        self.assertGreaterEqual(len({c["trace_id"] for c in curls}), 2)
        self.assertOneRun(spans)

    # -- stack traces --------------------------------------------------------------
    def test_refused_connect_has_a_stacktrace(self):
        env = self.make_env()
        port = httpfixture.closed_port()
        r = env.run(["curl", "-s", "http://127.0.0.1:%d/" % port])
        self.assertEqual(r.returncode, 7)
        spans = env.wait_spans(1, where="connect")
        c = spanlib.spans_by_name(spans, "connect")[0]
        self.assertEqual(c["status_code"], 2)
        self.assertEqual(attr(c, "error.type"), "ECONNREFUSED")
        st = attr(c, "code.stacktrace")
        self.assertIsInstance(st, str, c["attributes"])
        lines = st.split("\n")
        self.assertLessEqual(len(lines), 32)
        for line in lines:
            self.assertRegex(line, r"^  at \S+ \(\S+\)$")
        self.assertIn("libcurl.so", lines[0], "the first frame is libcurl's call of connect():\n" + st)
        self.assertIn("curl_easy_perform", st)
        self.assertIn("(/usr/bin/curl)", st)
        self.assertNotIn("libtraceshim", st, "shim frames removed")
        self.assertNotIn("libunwind", st)

    def test_stacktrace_names_symtab_functions_and_modes(self):
        probe = self.probe()
        port = str(httpfixture.closed_port())
        env = self.make_env()
        env.run([probe, "execfail", port], env={"TRACESHIM_STACKTRACES": "errors"})
        spans = env.wait_spans(1, where="connect")
        st = attr(spanlib.spans_by_name(spans, "connect")[0], "code.stacktrace")
        self.assertRegex(st.split("\n")[0], r"^  at dial\+0x[0-9a-f]+ \(.*/probe\)$", st)
        self.assertIn("  at main+0x", st)
        for s in spans:
            if s["name"] != "connect":
                self.assertIsNone(attr(s, "code.stacktrace"), "errors: only error spans")

        env = self.make_env()
        env.run([probe, "execfail", port], env={"TRACESHIM_STACKTRACES": "off"})
        spans = env.wait_spans(2, where=is_process_span)
        self.assertEqual([s["name"] for s in spans if attr(s, "code.stacktrace")], [])

        env = self.make_env()
        env.run([probe, "execfail", port], env={"TRACESHIM_STACKTRACES": "all"})
        spans = env.wait_spans(2, where=is_process_span)
        for s in spans:
            self.assertTrue(attr(s, "code.stacktrace"), "all: %s has one" % s["name"])


if __name__ == "__main__":
    tstest.main()
