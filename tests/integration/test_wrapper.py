#!/usr/bin/python3
"""scripts/traceshim (the user-facing wrapper) and scripts/traceshim-show.

WrapperLogic runs the wrapper against a fake build tree (a do-nothing library
and a scripted fake exporter that logs how it is called), so it checks the
wrapper's own decisions; WrapperWithBuild uses the real library and exporter."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import spans as spanlib  # noqa: E402
import tsenv  # noqa: E402
import tstest  # noqa: E402

WRAPPER = tsenv.WRAPPER
SUBCOMMANDS = ("run", "exporter", "status", "show", "stop")

FAKE_EXPORTER = r"""#!/bin/sh
# A stand-in for traceshim-exporter: answers like the real one, from a state file.
dir=$(dirname "$0")
printf '%s\n' "$*" >> "$dir/calls.log"
case ${1:-} in
--ping) [ -f "$dir/running" ] ;;
--daemon)
	if [ -f "$dir/daemon-fails" ]; then echo "cannot listen on $dir/x.sock: Permission denied" >&2; exit 1; fi
	touch "$dir/running" ;;
--status)
	if [ -f "$dir/running" ]; then printf 'pid=%s\nsocket=%s\nfile=%s\n' 999999 "$dir/x.sock" "$dir/traces.jsonl"; exit 0; fi
	echo "no exporter answering on $dir/x.sock" >&2; exit 1 ;;
--paths) printf 'socket=%s\nfile=%s\nspool=%s\n' "$dir/x.sock" "$dir/traces.jsonl" "$dir/spool" ;;
*) echo "fake exporter: $*"; exit 0 ;;
esac
"""


class FakeTree:
    """<root>/scripts/{traceshim,traceshim-show} (copies) + <root>/build/{hooks,exporter}."""

    def __init__(self, root):
        self.root = root
        self.scripts = os.path.join(root, "scripts")
        self.build = os.path.join(root, "build")
        self.lib = os.path.join(self.build, "hooks", "libtraceshim.so")
        self.exporter = os.path.join(self.build, "exporter", "traceshim-exporter")
        self.wrapper = os.path.join(self.scripts, "traceshim")
        for d in (self.scripts, os.path.dirname(self.lib), os.path.dirname(self.exporter)):
            os.makedirs(d, exist_ok=True)
        shutil.copy2(tsenv.WRAPPER, self.wrapper)
        shutil.copy2(tsenv.SHOW, os.path.join(self.scripts, "traceshim-show"))
        # A real, empty shared object: the loader preloads it silently.
        subprocess.run(["cc", "-shared", "-fPIC", "-o", self.lib, "-x", "c", "-"], input=b"", check=True)
        with open(self.exporter, "w") as f:
            f.write(FAKE_EXPORTER)
        os.chmod(self.exporter, 0o755)

    def exporter_calls(self):
        try:
            with open(os.path.join(os.path.dirname(self.exporter), "calls.log")) as f:
                return [line.rstrip("\n") for line in f]
        except FileNotFoundError:
            return []

    def set_running(self, running):
        path = os.path.join(os.path.dirname(self.exporter), "running")
        if running:
            open(path, "w").close()
        elif os.path.exists(path):
            os.unlink(path)

    def set_daemon_fails(self):
        open(os.path.join(os.path.dirname(self.exporter), "daemon-fails"), "w").close()


def run(argv, env, input=None, cwd=None, timeout=30):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(input, timeout=timeout)
    return tsenv.Result(argv, p.returncode, out, err, time.monotonic() - t0, p.pid)


class WrapperLogic(tstest.TestCase):
    def setUp(self):
        self.tmp = self.make_tmpdir()
        self.tree = FakeTree(os.path.join(self.tmp, "tree"))
        self.env = tsenv.clean_environ()  # no TRACESHIM_* : the wrapper finds build/ itself

    def traceshim(self, *args, env=None, **kw):
        e = dict(self.env)
        e.update(env or {})
        return run([self.tree.wrapper] + list(args), {k: v for k, v in e.items() if v is not None}, **kw)

    # -- help and usage ----------------------------------------------------------
    def test_help_for_each_subcommand(self):
        for args in (["--help"], ["-h"], ["help"]):
            r = self.traceshim(*args)
            self.assertEqual(r.returncode, 0, r)
            self.assertIn(b"usage: traceshim COMMAND", r.stdout)
            for sub in SUBCOMMANDS:
                self.assertRegex(r.stdout, rb"\n  %s\b" % sub.encode(), "main help lists %s" % sub)
        for sub in SUBCOMMANDS:
            for args in ([sub, "--help"], [sub, "-h"], ["help", sub]):
                with self.subTest(args=args):
                    r = self.traceshim(*args)
                    self.assertEqual(r.returncode, 0, r)
                    self.assertIn(("usage: traceshim %s" % sub).encode(), r.stdout)
                    self.assertEqual(r.stderr, b"")
        self.assertEqual(self.tree.exporter_calls(), [], "help does not touch the exporter")

    def test_usage_errors_are_plain_and_nonzero(self):
        cases = [
            (["frobnicate"], rb"unknown command 'frobnicate'"),
            ([], rb"usage: traceshim"),
            (["run"], rb"run: no command given"),
            (["run", "--"], rb"run: no command given"),
            (["run", "--bogus", "true"], rb"unknown option '--bogus'"),
            (["--bogus"], rb"unknown option '--bogus'"),
            (["help", "frobnicate"], rb"unknown command 'frobnicate'"),
            (["status", "extra"], rb"unexpected argument 'extra'"),
            (["stop", "extra"], rb"unexpected argument 'extra'"),
            (["show", "--last", "zero"], rb"invalid int value"),
            (["show", "--last", "0"], rb"--last"),
            (["show", "--last", "1", "--trace", "ab"], rb"not allowed with"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                r = self.traceshim(*args)
                self.assertNotEqual(r.returncode, 0, r)
                self.assertRegex(r.stderr, message)
                self.assertEqual(r.stdout, b"")

    def test_version(self):
        r = run([WRAPPER, "--version"], self.env)
        self.assertEqual(r.returncode, 0, r)
        self.assertRegex(r.stdout, rb"^traceshim [0-9]+\.[0-9]+\.[0-9]+\n$")
        r = self.traceshim("--version")  # a copy with no meson.build beside it
        self.assertEqual(r.stdout, b"traceshim unknown\n")

    # -- finding the build -------------------------------------------------------
    def test_finds_build_next_to_itself_through_a_symlink(self):
        self.tree.set_running(True)
        link = os.path.join(self.tmp, "bin", "traceshim")
        os.makedirs(os.path.dirname(link))
        os.symlink(self.tree.wrapper, link)
        r = run([link, "run", "--", "sh", "-c", 'echo "$LD_PRELOAD"'], self.env, cwd="/")
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.stdout.decode().strip(), os.path.realpath(self.tree.lib))
        self.assertEqual(r.stderr, b"")

    def test_relative_builddir_gives_an_absolute_library_path(self):
        self.tree.set_running(True)
        r = self.traceshim("run", "--", "sh", "-c", 'echo "$LD_PRELOAD"', cwd=self.tree.root,
                           env={"TRACESHIM_BUILDDIR": "build"})
        self.assertEqual(r.returncode, 0, r)
        out = r.stdout.decode().strip()
        self.assertTrue(out.startswith("/"), out)
        self.assertEqual(os.path.realpath(out), os.path.realpath(self.tree.lib))

    def test_lib_and_exporter_overrides(self):
        other = os.path.join(self.tmp, "other")
        os.makedirs(other)
        lib = os.path.join(other, "libtraceshim.so")
        shutil.copy2(self.tree.lib, lib)
        exporter = os.path.join(other, "traceshim-exporter")
        shutil.copy2(self.tree.exporter, exporter)
        open(os.path.join(other, "running"), "w").close()
        r = self.traceshim("run", "--", "sh", "-c", 'echo "$LD_PRELOAD"',
                           env={"TRACESHIM_LIB": lib, "TRACESHIM_EXPORTER": exporter})
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.stdout.decode().strip(), lib)
        self.assertEqual(self.tree.exporter_calls(), [], "the override exporter was used, not build/'s")

    # -- run ---------------------------------------------------------------------
    def test_exporter_started_only_when_ping_fails(self):
        self.tree.set_running(True)
        self.assertOk(self.traceshim("run", "--", "true"))
        self.assertEqual(self.tree.exporter_calls(), ["--ping"])
        self.tree.set_running(False)
        self.assertOk(self.traceshim("run", "--", "true"))
        self.assertEqual(self.tree.exporter_calls(), ["--ping", "--ping", "--daemon"])

    def test_exporter_that_cannot_start_warns_once_and_runs_the_command(self):
        self.tree.set_daemon_fails()
        r = self.traceshim("run", "--", "sh", "-c", "echo out; echo err >&2; exit 5")
        self.assertEqual(r.returncode, 5, r)
        self.assertEqual(r.stdout, b"out\n")
        lines = r.stderr.decode().splitlines()
        self.assertEqual(len(lines), 2, r.stderr)
        self.assertRegex(lines[0], r"^traceshim: warning: could not start the exporter \(cannot listen on .*\)")
        self.assertEqual(lines[1], "err")

        missing = self.traceshim("run", "--", "sh", "-c", "echo out; exit 4",
                                 env={"TRACESHIM_EXPORTER": "/nonexistent/traceshim-exporter"})
        self.assertEqual(missing.returncode, 4, missing)
        self.assertEqual(missing.stdout, b"out\n")
        self.assertEqual(len(missing.stderr.decode().splitlines()), 1, missing.stderr)
        self.assertIn(b"warning", missing.stderr)

    def test_missing_library_runs_untraced_with_a_warning(self):
        self.tree.set_running(True)
        r = self.traceshim("run", "--", "sh", "-c", 'echo "[$LD_PRELOAD]"',
                           env={"TRACESHIM_LIB": "/nonexistent/libtraceshim.so"})
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.stdout, b"[]\n")
        self.assertIn(b"/nonexistent/libtraceshim.so not found", r.stderr)

    def test_sdk_disabled_runs_the_command_untouched(self):
        for value in ("true", "TRUE", "True"):
            r = self.traceshim("run", "--", "sh", "-c", 'echo "[$LD_PRELOAD]"; exit 3',
                               env={"OTEL_SDK_DISABLED": value})
            self.assertEqual(r.returncode, 3, r)
            self.assertEqual(r.stdout, b"[]\n")
            self.assertEqual(r.stderr, b"")
        self.assertEqual(self.tree.exporter_calls(), [], "nothing started when disabled")
        r = self.traceshim("run", "--", "sh", "-c", 'echo "[$LD_PRELOAD]"', env={"OTEL_SDK_DISABLED": "false"})
        self.assertEqual(r.stdout.decode().strip(), "[%s]" % os.path.realpath(self.tree.lib))

    def test_preload_entries_of_the_user_are_kept_and_ours_never_doubled(self):
        self.tree.set_running(True)
        lib = os.path.realpath(self.tree.lib)
        user = os.path.join(self.tmp, "libuser.so")
        shutil.copy2(self.tree.lib, user)  # any loadable object
        elsewhere = os.path.join(self.tmp, "elsewhere")
        os.makedirs(elsewhere)
        other_copy = os.path.join(elsewhere, "libtraceshim.so")
        shutil.copy2(self.tree.lib, other_copy)
        cases = [
            (None, lib),
            ("", lib),
            (user, "%s:%s" % (user, lib)),
            (lib, lib),
            ("%s:%s" % (user, lib), "%s:%s" % (user, lib)),
            ("%s %s" % (lib, user), "%s %s" % (lib, user)),
            (other_copy, other_copy),  # another build of the shim is still the shim
        ]
        for before, after in cases:
            with self.subTest(LD_PRELOAD=before):
                r = self.traceshim("run", "--", "sh", "-c", 'echo "$LD_PRELOAD"', env={"LD_PRELOAD": before})
                self.assertEqual(r.returncode, 0, r)
                self.assertEqual(r.stdout.decode().rstrip("\n"), after)

    def test_setuid_and_setgid_targets_are_refused(self):
        self.tree.set_running(False)
        bindir = os.path.join(self.tmp, "sbin")
        os.makedirs(bindir)
        true = shutil.which("true")
        plain = os.path.join(bindir, "plain-true")
        shutil.copy(true, plain)
        os.chmod(plain, 0o755)
        self.assertOk(self.traceshim("run", "--", plain))
        for name, mode in (("suid-true", 0o4755), ("sgid-true", 0o2755)):
            path = os.path.join(bindir, name)
            shutil.copy(true, path)
            os.chmod(path, mode)
            self.assertTrue(os.stat(path).st_mode & (stat.S_ISUID | stat.S_ISGID))
            for cmd, env in ((path, None), (name, {"PATH": bindir + ":" + self.env["PATH"]})):
                with self.subTest(cmd=cmd):
                    calls = len(self.tree.exporter_calls())
                    r = self.traceshim("run", "--", cmd, env=env)
                    self.assertNotEqual(r.returncode, 0, r)
                    self.assertEqual(r.stdout, b"")
                    self.assertEqual(
                        r.stderr.decode(),
                        "traceshim: %s is setuid/setgid: the dynamic loader ignores LD_PRELOAD for it, "
                        "so it cannot be traced\n" % cmd)
                    self.assertEqual(len(self.tree.exporter_calls()), calls, "refused before starting anything")

    def test_command_not_found(self):
        self.tree.set_running(True)
        r = self.traceshim("run", "--", "no-such-command-traceshim")
        self.assertEqual(r.returncode, 127, r)
        self.assertIn(b"no-such-command-traceshim", r.stderr)

    # -- status / stop / exporter with the fake -------------------------------------
    def test_status_without_exporter(self):
        r = self.traceshim("status")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(b"no exporter answering on", r.stderr)
        self.assertIn(("socket=%s" % os.path.join(os.path.dirname(self.tree.exporter), "x.sock")).encode(), r.stdout)

    def test_status_adds_the_paths_status_lacks(self):
        self.tree.set_running(True)
        r = self.traceshim("status")
        self.assertEqual(r.returncode, 0, r)
        keys = [line.split("=", 1)[0] for line in r.stdout.decode().splitlines()]
        self.assertEqual(keys, ["pid", "socket", "file", "spool"], "no key twice")

    def test_stop_without_exporter_is_not_an_error(self):
        r = self.traceshim("stop")
        self.assertEqual(r.returncode, 0, r)
        self.assertIn(b"no exporter is running", r.stderr)

    def test_exporter_passes_arguments_through(self):
        r = self.traceshim("exporter", "--frob", "x y")
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.stdout, b"fake exporter: --frob x y\n")


# ---- show ------------------------------------------------------------------------

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
TRACE_A = "a1" * 16
TRACE_B = "b2" * 16


def _v(x):
    if isinstance(x, bool):
        return {"boolValue": x}
    if isinstance(x, int):
        return {"intValue": str(x)}
    return {"stringValue": x}


def _span(trace, sid, parent, name, kind, start_ms, end_ms, attrs=(), status=None):
    s = {"traceId": trace, "spanId": sid, "name": name, "kind": kind,
         "startTimeUnixNano": str(T0 + int(start_ms * MS)), "endTimeUnixNano": str(T0 + int(end_ms * MS)),
         "attributes": [{"key": k, "value": _v(v)} for k, v in attrs]}
    if parent:
        s["parentSpanId"] = parent
    if status:
        s["status"] = status
    return s


def _line(service, pid, spans):
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": _v(service)},
                                    {"key": "process.pid", "value": _v(pid)}]},
        "scopeSpans": [{"scope": {"name": "traceshim", "version": "0.1.0"}, "spans": spans}]}]})


def handcrafted_jsonl():
    """Two traces. A: app -> {getaddrinfo, GET -> {connect, GET /x (another process)}};
    B (later): worker, and an orphan. Written out of order on purpose."""
    server = _line("srv", 200, [
        _span(TRACE_A, "5555555555555555", "3333333333333333", "GET /x", 2, 3, 9,
              [("url.path", "/x"), ("http.response.status_code", 500)], {"code": 2})])
    client = _line("app-svc", 100, [
        _span(TRACE_A, "4444444444444444", "3333333333333333", "connect", 1, 2, 2.2,
              [("network.peer.address", "127.0.0.1"), ("network.peer.port", 8080), ("server.address", "localhost")]),
        _span(TRACE_A, "3333333333333333", "1111111111111111", "GET", 3, 2, 10,
              [("url.full", "http://localhost:8080/x"), ("http.response.status_code", 500), ("error.type", "500")],
              {"code": 2, "message": "HTTP 500"}),
        _span(TRACE_A, "2222222222222222", "1111111111111111", "getaddrinfo", 1, 1, 1.5,
              [("dns.question.name", "localhost")]),
        _span(TRACE_A, "1111111111111111", None, "app", 1, 0, 12.5),
    ])
    later = _line("worker-svc", 300, [
        _span(TRACE_B, "7777777777777777", "deaddeaddeaddead", "late-child", 1, 1005, 1006),
        _span(TRACE_B, "6666666666666666", None, "worker", 1, 1000, 1020),
    ])
    return "\n".join([server, client, "{not json", later]) + "\n"


TREE_LINE = re.compile(r"^  ((?:\|  |   )*(?:\|- |`- )?)(.+?)  (internal|server|client|producer|consumer|unspecified)  (.*)$")


def parse_show(text):
    """{trace_id: [(depth, name, rest-of-line)]} from `show --ascii` output."""
    traces, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^trace ([0-9a-f]{32})  \((\d+) spans?, ", line)
        if m:
            current = traces.setdefault(m.group(1), [])
            continue
        m = TREE_LINE.match(line)
        if m:
            assert current is not None, line
            current.append((len(m.group(1)) // 3, m.group(2), m.group(4)))
        elif line.strip():
            raise AssertionError("unexpected line in show output: %r" % line)
    return traces


class Show(tstest.TestCase):
    def setUp(self):
        self.tmp = self.make_tmpdir()
        self.file = os.path.join(self.tmp, "traces.jsonl")
        with open(self.file, "w") as f:
            f.write(handcrafted_jsonl())
        self.env = tsenv.clean_environ(TRACESHIM_EXPORTER="/nonexistent", PYTHONIOENCODING="utf-8")

    def show(self, *args, env=None):
        e = dict(self.env)
        e.update(env or {})
        return run([WRAPPER, "show"] + list(args), e)

    def test_tree(self):
        r = self.show(self.file, "--ascii")
        self.assertEqual(r.returncode, 0, r)
        self.assertIn(b"skipped 1 unreadable line", r.stderr)
        text = r.stdout.decode()
        traces = parse_show(text)
        self.assertEqual(list(traces), [TRACE_A, TRACE_B], "traces oldest first:\n" + text)
        a = traces[TRACE_A]
        self.assertEqual([(d, n) for d, n, _ in a],
                         [(0, "app"), (1, "getaddrinfo"), (1, "GET"), (2, "connect"), (2, "GET /x")], text)
        rest = {n: r for _, n, r in a}
        self.assertTrue(rest["app"].startswith("12.500 ms"), rest["app"])
        self.assertIn("[app-svc pid 100]", rest["app"])
        self.assertIn("dns.question.name=localhost", rest["getaddrinfo"])
        self.assertIn("ERROR: HTTP 500", rest["GET"])
        self.assertIn("url.full=http://localhost:8080/x", rest["GET"])
        self.assertIn("http.response.status_code=500", rest["GET"])
        self.assertIn("error.type=500", rest["GET"])
        self.assertIn("network.peer.address=127.0.0.1:8080", rest["connect"])
        self.assertIn("server.address=localhost", rest["connect"])
        self.assertNotIn("[", rest["connect"], "same process as its parent: not repeated")
        self.assertIn("[srv pid 200]", rest["GET /x"], "another process is named")
        self.assertIn("ERROR", rest["GET /x"])
        self.assertTrue(rest["GET /x"].startswith("6.000 ms"))
        self.assertIn("|- getaddrinfo", text)
        self.assertIn("`- GET  client", text)
        self.assertIn("   `- GET /x", text)

        b = traces[TRACE_B]
        self.assertEqual([(d, n) for d, n, _ in b], [(0, "worker"), (0, "late-child")], text)
        self.assertIn("orphan", b[1][2])
        self.assertIn("deaddeaddeaddead", b[1][2])
        self.assertNotIn("orphan", b[0][2])

    def test_unicode_tree_by_default(self):
        r = self.show(self.file)
        self.assertEqual(r.returncode, 0, r)
        self.assertIn("├─ getaddrinfo", r.stdout.decode())
        self.assertIn("└─ GET  client", r.stdout.decode())

    def test_last_and_trace(self):
        r = self.show(self.file, "--last", "1", "--ascii")
        self.assertEqual(list(parse_show(r.stdout.decode())), [TRACE_B], r)
        r = self.show(self.file, "--last", "5", "--ascii")
        self.assertEqual(list(parse_show(r.stdout.decode())), [TRACE_A, TRACE_B], r)
        r = self.show(self.file, "--trace", TRACE_A[:8], "--ascii")
        self.assertEqual(list(parse_show(r.stdout.decode())), [TRACE_A], r)
        r = self.show(self.file, "--trace", TRACE_B, "--ascii")
        self.assertEqual(list(parse_show(r.stdout.decode())), [TRACE_B], r)
        r = self.show(self.file, "--trace", "ffff")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"no trace ffff", r.stderr)

    def test_all_attributes(self):
        r = self.show(self.file, "--ascii", "-a", "--trace", TRACE_A)
        self.assertIn("url.path=/x", r.stdout.decode())

    def test_default_file_and_missing_file(self):
        r = self.show("--ascii", env={"TRACESHIM_FILE": self.file})
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(list(parse_show(r.stdout.decode())), [TRACE_A, TRACE_B])
        missing = os.path.join(self.tmp, "none.jsonl")
        r = self.show(missing)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(("no trace file at %s" % missing).encode(), r.stderr)

    def test_stdin(self):
        with open(self.file, "rb") as f:
            data = f.read()
        r = run([WRAPPER, "show", "-", "--ascii"], self.env, input=data)
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(list(parse_show(r.stdout.decode())), [TRACE_A, TRACE_B])


# ---- with the real library and exporter ----------------------------------------------

class WrapperWithBuild(tstest.TestCase):
    def test_ld_preload_never_doubled(self):
        env = self.make_env()
        for before in (tsenv.LIB, tsenv.LIB + ":" + tsenv.LIB.replace("/hooks/", "/hooks/../hooks/")):
            r = env.run(["sh", "-c", 'echo "$LD_PRELOAD"'], env={"LD_PRELOAD": before})
            self.assertOk(r)
            self.assertEqual(r.stdout.decode().rstrip("\n"), before, "LD_PRELOAD changed")
        r = env.run(["sh", "-c", 'echo "$LD_PRELOAD"'])
        self.assertEqual(r.stdout.decode().rstrip("\n"), tsenv.LIB)
        self.assertEqual(r.stdout.decode().count("libtraceshim.so"), 1)

    def test_stdio_exit_status_and_pid_are_the_commands(self):
        env = self.make_env()
        data = bytes(range(256)) * 64
        r = env.run(["sh", "-c", 'cat; echo "pid=$$" >&2; exit 42'], input=data)
        self.assertEqual(r.returncode, 42)
        self.assertEqual(r.stdout, data)
        self.assertEqual(r.stderr, ("pid=%d\n" % r.pid).encode(), "exec'd: same pid, nothing else on stderr")

    def test_status_with_and_without_exporter(self):
        env = self.make_env(start_exporter=False)
        r = env.wrapper("status")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(("no exporter answering on %s" % env.socket).encode(), r.stdout + r.stderr)
        self.assertIn(("socket=%s\n" % env.socket).encode(), r.stdout)

        env.start_exporter()
        r = env.wrapper("status")
        self.assertEqual(r.returncode, 0, r)
        st = dict(line.split("=", 1) for line in r.stdout.decode().splitlines() if "=" in line)
        self.assertEqual(st.get("pid"), str(env.exporter.pid))
        self.assertEqual(st.get("socket"), env.socket)
        self.assertEqual(st.get("file"), env.file)
        for key in ("version", "uptime_s", "received_spans", "exported_spans", "queue_depth", "spool"):
            self.assertIn(key, st)

    def test_run_starts_a_daemon_and_stop_stops_it(self):
        env = self.make_env(start_exporter=False)
        self.assertFalse(env.ping())
        r = env.run(["sh", "-c", "echo hello"])
        self.assertOk(r)
        self.assertEqual(r.stdout, b"hello\n")
        self.assertEqual(r.stderr, b"")
        self.assertTrue(env.ping(), "traceshim run left an exporter running")
        pid = int(env.status()["pid"])
        self.assertTrue(tsenv.pid_alive(pid))
        env.wait_spans(1, where=lambda s: spanlib.attr(s, "process.pid") == r.pid and not s["parent_span_id"],
                       what="the traced sh's process span, through the daemon")

        r = env.wrapper("stop")
        self.assertEqual(r.returncode, 0, r)
        self.assertFalse(tsenv.pid_alive(pid), "stop returned before the exporter was gone")
        self.assertFalse(env.ping())
        r = env.wrapper("stop")
        self.assertEqual(r.returncode, 0, r)
        self.assertIn(b"no exporter is running", r.stderr)

    def test_two_runs_at_once_share_one_exporter(self):
        env = self.make_env(start_exporter=False)
        procs = [env.spawn(["sh", "-c", "echo ok"]) for _ in range(4)]
        outs = [p.communicate(timeout=30) for p in procs]
        for p, (out, err) in zip(procs, outs):
            self.assertEqual(p.returncode, 0)
            self.assertEqual(out, b"ok\n")
            self.assertEqual(err, b"", "a lost race for the socket is not worth a warning")
        self.assertTrue(env.ping())

    def test_show_reads_the_exporters_file(self):
        env = self.make_env(start_exporter=False)
        with open(env.file, "w") as f:
            f.write(handcrafted_jsonl())
        r = env.wrapper("show", "--ascii", "--last", "1")
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(list(parse_show(r.stdout.decode())), [TRACE_B])

    def test_show_renders_a_real_trace(self):
        env = self.make_env()
        srv = self.start_http_server()
        self.assertOk(env.run(["curl", "-s", srv.url("/")]))
        env.wait_spans(1, where="curl")
        r = env.wrapper("show", "--ascii", "--last", "1")
        self.assertEqual(r.returncode, 0, r)
        traces = parse_show(r.stdout.decode())
        self.assertEqual(len(traces), 1, r.stdout.decode())
        rows = next(iter(traces.values()))
        self.assertEqual(rows[0][:2], (0, "curl"))
        self.assertIn((1, "connect"), [(d, n) for d, n, _ in rows])
        connect = next(rest for d, n, rest in rows if n == "connect")
        self.assertIn("network.peer.address=127.0.0.1:%d" % srv.port, connect)

    def test_installed_copy_points_at_install_locations(self):
        path = os.path.join(tsenv.BUILD_DIR, "scripts", "traceshim")
        self.assertTrue(os.path.isfile(path), "meson did not generate %s" % path)
        self.assertTrue(os.access(path, os.X_OK))
        with open(path) as f:
            text = f.read()
        self.assertNotRegex(text, r"@TRACESHIM_[A-Z_]+@", "unsubstituted placeholders")
        with open(os.path.join(tsenv.BUILD_DIR, "meson-info", "intro-buildoptions.json")) as f:
            opts = {o["name"]: o["value"] for o in json.load(f)}
        lib = os.path.join(opts["prefix"], opts["libdir"], "traceshim", "libtraceshim.so")
        exporter = os.path.join(opts["prefix"], opts["libexecdir"], "traceshim", "traceshim-exporter")
        self.assertIn("installed_lib='%s'" % lib, text)
        self.assertIn("installed_exporter='%s'" % exporter, text)
        with open(os.path.join(tsenv.BUILD_DIR, "meson-info", "intro-projectinfo.json")) as f:
            version = json.load(f)["version"]
        tmp = self.make_tmpdir()
        sock = os.path.join(tmp, "exporter.sock")
        env = tsenv.clean_environ(TRACESHIM_SOCKET=sock, TRACESHIM_FILE=os.path.join(tmp, "t.jsonl"))
        if os.path.exists(exporter):  # an installed traceshim on this machine: stop what we start
            self.addCleanup(self._stop_installed_daemon, exporter, env)
        r = run([path, "run", "--", "sh", "-c", 'echo "[$LD_PRELOAD]"'], env)
        self.assertEqual(r.returncode, 0, r)
        self.assertIn(lib.encode(), r.stdout + r.stderr, "the installed copy uses the installed library")
        r = run([path, "--version"], env)
        self.assertEqual(r.stdout.decode().strip(), "traceshim " + version)
        r = run([WRAPPER, "--version"], env)
        self.assertEqual(r.stdout.decode().strip(), "traceshim " + version, "source copy reads meson.build")

    @staticmethod
    def _stop_installed_daemon(exporter, env):
        r = run([exporter, "--status"], env)
        for line in r.stdout.decode().splitlines():
            if line.startswith("pid="):
                try:
                    os.kill(int(line[4:]), 15)
                except (ValueError, OSError):
                    pass

if __name__ == "__main__":
    tstest.main()
