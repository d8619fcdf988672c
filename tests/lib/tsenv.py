"""The integration-test fixture: one private exporter, socket and trace file.

    env = Env()                        # temp dir, unique TRACESHIM_SOCKET/FILE, exporter running
    r = env.run(["curl", "-s", url])   # through scripts/traceshim run --
    r = env.run([...], via="preload")  # plain LD_PRELOAD=libtraceshim.so
    r = env.run([...], via="plain")    # untraced, same environment
    spans = env.wait_spans(3, where=lambda s: ...)
    env.close()

Where the build is comes from the environment meson test sets (see
tests/integration/meson.build), else build/ next to the source tree:
TRACESHIM_SOURCEDIR, TRACESHIM_BUILDDIR, TRACESHIM_LIB, TRACESHIM_EXPORTER.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import spans as spanlib

HERE = os.path.dirname(os.path.abspath(__file__))


def _env_path(name, default):
    return os.path.abspath(os.environ.get(name) or default)


SOURCE_DIR = _env_path("TRACESHIM_SOURCEDIR", os.path.join(HERE, "..", ".."))
BUILD_DIR = _env_path("TRACESHIM_BUILDDIR", os.path.join(SOURCE_DIR, "build"))
LIB = _env_path("TRACESHIM_LIB", os.path.join(BUILD_DIR, "hooks", "libtraceshim.so"))
EXPORTER = _env_path("TRACESHIM_EXPORTER", os.path.join(BUILD_DIR, "exporter", "traceshim-exporter"))
WRAPPER = os.path.join(SOURCE_DIR, "scripts", "traceshim")
SHOW = os.path.join(SOURCE_DIR, "scripts", "traceshim-show")

# Variables of the outer environment that would change what is being tested.
_SCRUB_PREFIXES = ("OTEL_", "TRACESHIM_")
_SCRUB = {"LD_PRELOAD", "LD_AUDIT", "TRACEPARENT", "TRACESTATE", "BAGGAGE", "http_proxy", "https_proxy",
          "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "no_proxy", "NO_PROXY", "CURL_HOME"}

KEEP = os.environ.get("TRACESHIM_TEST_KEEP") == "1"  # keep temp dirs for a post-mortem


def require_built(*paths):
    missing = [p for p in (paths or (LIB, EXPORTER)) if not os.path.exists(p)]
    if missing:
        raise AssertionError("not built: %s (meson setup build && ninja -C build; or set TRACESHIM_BUILDDIR)"
                             % ", ".join(missing))


def clean_environ(**extra):
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith(_SCRUB_PREFIXES)}
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


def short_tmpdir(prefix):
    # A Unix socket path must fit in 108 bytes: stay out of a long $TMPDIR.
    base = "/tmp" if os.path.isdir("/tmp") else None
    return tempfile.mkdtemp(prefix=prefix, dir=base)


class Result:
    def __init__(self, argv, returncode, stdout, stderr, elapsed, pid):
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr
        self.elapsed, self.pid = elapsed, pid

    def __repr__(self):
        return "<Result %r rc=%s %.3fs stdout=%r stderr=%r>" % (
            self.argv, self.returncode, self.elapsed, self.stdout[:200], self.stderr[:500])


_live = set()  # Envs not closed yet, and processes they spawned: see emergency_cleanup()


def emergency_cleanup():
    """Kill what the open Envs started. For a test process that is itself being
    killed (meson's timeout sends SIGTERM), so no exporter outlives it."""
    for obj in list(_live):
        try:
            if isinstance(obj, Env):
                if obj.exporter is not None and obj.exporter.poll() is None:
                    obj.exporter.kill()
                pid = int(obj.status().get("pid", "0") or 0)
                if pid > 0:
                    os.kill(pid, signal.SIGKILL)
                if not KEEP:
                    shutil.rmtree(obj.dir, ignore_errors=True)
            elif obj.poll() is None:
                kill_group(obj)
        except Exception:
            pass
    _live.clear()


class Env:
    def __init__(self, start_exporter=True, env=None, prefix="traceshim-it-"):
        require_built()
        _live.add(self)
        self.dir = short_tmpdir(prefix)
        self.socket = os.path.join(self.dir, "exporter.sock")
        self.file = os.path.join(self.dir, "traces.jsonl")
        self.log = os.path.join(self.dir, "exporter.log")
        self.env = clean_environ(
            TRACESHIM_SOCKET=self.socket,
            TRACESHIM_FILE=self.file,
            TRACESHIM_SPOOL_DIR=os.path.join(self.dir, "spool"),
            XDG_STATE_HOME=os.path.join(self.dir, "state"),
            XDG_RUNTIME_DIR=os.path.join(self.dir, "run"),
            TRACESHIM_BUILDDIR=BUILD_DIR,
            TRACESHIM_LIB=LIB,
            TRACESHIM_EXPORTER=EXPORTER,
            # Export batches quickly: tests wait for spans.
            OTEL_BSP_SCHEDULE_DELAY="200",
        )
        self.env.update(env or {})
        self.exporter = None
        self._log_file = None
        if start_exporter:
            self.start_exporter()

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        _live.discard(self)
        for p in [x for x in _live if isinstance(x, subprocess.Popen) and getattr(x, "_ts_env", None) is self]:
            if p.poll() is None:
                kill_group(p)
                p.wait()
            _live.discard(p)
        try:
            self.stop_exporter()
        finally:
            try:
                self.stop_daemon()
            except (subprocess.TimeoutExpired, OSError) as e:
                sys.stderr.write("could not stop a daemon exporter on %s: %r\n" % (self.socket, e))
        log = self.exporter_log()
        if log.strip():
            sys.stderr.write("---- exporter log (%s) ----\n%s\n---- end of exporter log ----\n"
                             % (self.log, log[-6000:]))
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        if KEEP:
            sys.stderr.write("kept %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- the exporter --------------------------------------------------------
    def exporter_cmd(self, *args, timeout=10, env=None):
        """Runs `traceshim-exporter ARGS` in this environment (untraced)."""
        e = dict(self.env)
        e.update(env or {})
        return subprocess.run([EXPORTER] + list(args), env=e, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)

    def ping(self):
        try:
            return self.exporter_cmd("--ping", timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def status(self):
        """--status as a dict (empty when no exporter answers)."""
        r = self.exporter_cmd("--status")
        if r.returncode != 0:
            return {}
        return dict(line.split("=", 1) for line in r.stdout.decode().splitlines() if "=" in line)

    def status_int(self, key):
        """One --status counter (0 when absent or no exporter answers)."""
        return int(self.status().get(key, "0") or 0)

    def wait_status(self, key, want, timeout=10):
        """Until the counter reaches want; returns its value."""
        wait_until(lambda: self.status_int(key) >= want, timeout,
                   lambda: "%s >= %d (status %r)" % (key, want, self.status()))
        return self.status_int(key)

    def start_exporter(self, env=None, timeout=10):
        """Foreground exporter (our child); returns once --ping answers."""
        assert self.exporter is None or self.exporter.poll() is not None, "exporter already running"
        e = dict(self.env)
        e.update(env or {})
        if self._log_file is None:
            self._log_file = open(self.log, "ab")
        self.exporter = subprocess.Popen([EXPORTER], env=e, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.exporter.poll() is not None:
                raise AssertionError("the exporter exited with status %s before answering --ping:\n%s"
                                     % (self.exporter.returncode, self.exporter_log()[-3000:]))
            if time.monotonic() > deadline:
                raise AssertionError("the exporter did not answer --ping within %gs:\n%s"
                                     % (timeout, self.exporter_log()[-3000:]))
            time.sleep(0.05)
        return self.exporter

    def stop_exporter(self, sig=signal.SIGTERM, timeout=15):
        """Signals our exporter and waits; returns its exit status (None if none ran)."""
        p = self.exporter
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise AssertionError("the exporter did not exit within %gs of signal %d" % (timeout, sig))
        self.exporter = None
        return p.returncode

    def kill_exporter(self):
        return self.stop_exporter(signal.SIGKILL)

    def stop_daemon(self, timeout=15):
        """Stops an exporter that `traceshim run` started (--daemon) on our socket."""
        st = self.status()
        pid = int(st.get("pid", "0") or 0)
        if pid <= 0:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def exporter_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # -- running commands ----------------------------------------------------
    def command(self, argv, via="wrapper"):
        if via == "wrapper":
            return [WRAPPER, "run", "--"] + list(argv)
        if via in ("preload", "plain"):
            return list(argv)
        raise ValueError(via)

    def environ(self, via="wrapper", env=None):
        e = dict(self.env)
        if via == "preload":
            e["LD_PRELOAD"] = LIB
        e.update(env or {})
        return {k: v for k, v in e.items() if v is not None}  # env={"X": None} unsets X

    def spawn(self, argv, via="wrapper", env=None, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
              stderr=subprocess.PIPE, cwd=None):
        """Popen of argv run `via` wrapper | preload | plain (in its own process
        group; killed, if still running, when the Env closes)."""
        p = subprocess.Popen(self.command(argv, via), env=self.environ(via, env), stdin=stdin,
                             stdout=stdout, stderr=stderr, cwd=cwd, start_new_session=True)
        p._ts_env = self
        _live.add(p)
        return p

    def run(self, argv, via="wrapper", env=None, input=None, timeout=30, cwd=None):
        """Result of argv run `via` wrapper | preload | plain. A run that outlives
        `timeout` is killed (with its process group) and fails the test: a hang."""
        t0 = time.monotonic()
        p = self.spawn(argv, via, env, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, cwd=cwd)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            out, err = p.communicate()
            raise AssertionError("%r (via %s) hung: still running after %gs; stdout=%r stderr=%r"
                                 % (argv, via, timeout, out[-500:], err[-500:]))
        return Result(argv, p.returncode, out, err, time.monotonic() - t0, p.pid)

    def wrapper(self, *args, env=None, input=None, timeout=30, cwd=None):
        """Result of `scripts/traceshim ARGS` in this environment."""
        t0 = time.monotonic()
        p = subprocess.Popen([WRAPPER] + list(args), env=self.environ("plain", env), cwd=cwd,
                             stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            out, err = p.communicate()
            raise AssertionError("traceshim %r hung; stdout=%r stderr=%r" % (args, out[-500:], err[-500:]))
        return Result(["traceshim"] + list(args), p.returncode, out, err, time.monotonic() - t0, p.pid)

    # -- the file sink -------------------------------------------------------
    def spans(self):
        return spanlib.read_jsonl(self.file)[0]

    def requests(self):
        """The parsed lines of the trace file."""
        return spanlib.read_jsonl(self.file)[1]

    def wait_spans(self, count=1, where=None, timeout=15, settle=0.5, what=None):
        """All spans in the file once at least `count` of them match `where`
        (a predicate on one span, or a span name), waiting up to `timeout`;
        then waits `settle` seconds more and reads again, so spans that would
        make an exact count wrong have a chance to show up."""
        if isinstance(where, str):
            name = where
            where = lambda s: s["name"] == name  # noqa: E731
        match = where or (lambda s: True)
        deadline = time.monotonic() + timeout
        while True:
            got = self.spans()
            n = sum(1 for s in got if match(s))
            if n >= count:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    "%s: %d of %d expected span(s) in %s after %gs.\nspans:\n%s\nexporter status: %r\nexporter log:\n%s"
                    % (what or "waiting for spans", n, count, self.file, timeout, spanlib.describe(got),
                       self.status() if self.exporter is not None else "(not running)", self.exporter_log()[-2000:]))
            time.sleep(0.05)
        if settle:
            time.sleep(settle)
            got = self.spans()
        return got

    def wait_for(self, done, timeout=15, what="condition"):
        """Polls done(spans) until true; returns the spans."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.spans()
            if done(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError("%s not met within %gs; spans:\n%s" % (what, timeout, spanlib.describe(got)))
            time.sleep(0.05)


def wait_until(cond, timeout, what, interval=0.05):
    """Polls cond() until true; AssertionError naming `what` (a string, or a
    function giving one, called only on failure) after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %gs" % (what() if callable(what) else what, timeout))
        time.sleep(interval)


def pid_alive(pid):
    """True while pid exists and is not a zombie (a daemon's zombie waits for a
    pid 1 that may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        p.kill()
