#!/usr/bin/python3
"""The Debian package, installed into a fresh Debian 12 root (issue 17).

    scripts/package.sh -> build/traceshim_<version>_<arch>.deb
    debootstrap --variant=minbase --include=systemd,curl bookworm  (cached)
    chroot: apt-get install ./traceshim.deb, then, from /usr/bin:
      traceshim run -- curl            against a python3 http.server on loopback
      TRACESHIM_INCLUDE=curl traceshim run -- sh -c 'curl ...; python3 ...'
      systemd-analyze verify           the units, and a service with the drop-in
                                       `traceshim enable` writes
      /etc/ld.so.preload mode          `traceshim enable --host`, rules from
                                       /etc/traceshim/preload.env, the exporter
                                       socket-activated as its unit would be
      apt-get remove / purge           leaves the root as it was
    systemd-nspawn -b: the units under a real systemd (socket activation,
      dynamic user, a User=nobody service with the drop-in); skipped where
      nspawn cannot boot

Needs root (chroot, mounts) and debootstrap; without them, or when no Debian
mirror answers, the test is skipped (exit 77) and says why. The pristine root
and the downloaded .debs are cached in $TRACESHIM_DEB_CACHE (default
/var/tmp/traceshim-pkgtest): the first run costs one debootstrap and
apt-get update (99 s here, from deb.debian.org; the whole cold run 2 min 18 s),
later runs start from an overlay of the cached root (~50 s, 7 tests, a third
of it booting and stopping systemd in the nspawn test).
"""

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import spans as spanlib  # noqa: E402
import tsenv  # noqa: E402
from tsenv import wait_until  # noqa: E402

SKIP = 77
CACHE = os.environ.get("TRACESHIM_DEB_CACHE") or "/var/tmp/traceshim-pkgtest"
PRISTINE = os.path.join(CACHE, "bookworm")
RUN = os.path.join(CACHE, "run")
ROOT = os.path.join(RUN, "root")
LIB = "/usr/lib/x86_64-linux-gnu/traceshim/libtraceshim.so"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PY_GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).status)"
BODY = "".join("line %03d of the page served in the chroot\n" % i for i in range(60))


def log(msg):
    sys.stderr.write("test_deb: %s\n" % msg)
    sys.stderr.flush()


def skip(why):
    print("SKIP: " + why)
    sys.exit(SKIP)


def mirror():
    """The host's Debian mirror (deb822 or one-line sources), else deb.debian.org."""
    for d in ("/etc/apt/sources.list.d", "/etc/apt"):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names:
            if not (n.endswith(".sources") or n.endswith(".list")):
                continue
            try:
                text = open(os.path.join(d, n)).read()
            except OSError:
                continue
            for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s*)?)(\S+)", text, re.M):
                uri = m.group(1)
                if "security" not in uri and uri.startswith("http"):
                    return uri
    return "http://deb.debian.org/debian"


def sh(*argv, check=True, **kw):
    r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%r failed (%d):\n%s%s" % (argv, r.returncode, r.stdout.decode(errors="replace")[-3000:],
                                                        r.stderr.decode(errors="replace")[-3000:]))
    return r


def chroot_env(extra=None):
    e = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive", "USER": "root"}
    e.update(extra or {})
    return e


def inside(script, env=None, check=True, timeout=300):
    """Runs `sh -c script` in the chroot with a clean environment."""
    e = chroot_env(env)
    # chroot itself runs with e too: once /etc/ld.so.preload is on, the
    # traced `env -i` would pass our variables of the test's own environment
    # on (as it does for any env -i child).
    argv = ["chroot", ROOT, "/usr/bin/env", "-i"] + ["%s=%s" % kv for kv in e.items()] + ["/bin/sh", "-c", script]
    return sh(*argv, check=check, timeout=timeout, env=e)


def spawn_inside(argv, env=None):
    e = chroot_env(env)
    argv = ["chroot", ROOT, "/usr/bin/env", "-i"] + ["%s=%s" % kv for kv in e.items()] + list(argv)
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=e)


def host_path(p):
    return os.path.join(ROOT, p.lstrip("/"))


# ---- the cached root ---------------------------------------------------------

def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def unmount_all(top):
    top = os.path.realpath(top)
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for p in sorted((p for p in points if p == top or p.startswith(top + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)


def make_pristine():
    if os.path.exists(PRISTINE + ".ok"):
        return
    url = mirror()
    new = PRISTINE + ".new"
    unmount_all(new)
    shutil.rmtree(new, ignore_errors=True)
    log("no cached root: debootstrap --variant=minbase bookworm from %s (once; ~1 minute)" % url)
    t0 = time.monotonic()
    r = sh("debootstrap", "--variant=minbase", "--include=systemd,curl", "bookworm", new, url,
           check=False, timeout=1500)
    if r.returncode != 0:
        shutil.rmtree(new, ignore_errors=True)
        skip("debootstrap could not make a Debian 12 root from %s:\n%s" % (url, r.stderr.decode(errors="replace")[-1500:]))
    sh("mount", "-t", "proc", "proc", os.path.join(new, "proc"))
    try:
        r = sh("chroot", new, "apt-get", "update", "-qq", check=False, env=chroot_env(), timeout=600)
    finally:
        unmount_all(new)
    if r.returncode != 0:
        skip("apt-get update in the new root failed:\n" + r.stderr.decode(errors="replace")[-1500:])
    os.rename(new, PRISTINE)
    open(PRISTINE + ".ok", "w").close()
    log("cached root made in %.0f s: %s" % (time.monotonic() - t0, PRISTINE))


def setup_run_root():
    unmount_all(RUN)
    shutil.rmtree(RUN, ignore_errors=True)
    for d in ("upper", "work", "root"):
        os.makedirs(os.path.join(RUN, d))
    r = sh("mount", "-t", "overlay", "overlay", "-o",
           "lowerdir=%s,upperdir=%s/upper,workdir=%s/work" % (PRISTINE, RUN, RUN), ROOT, check=False)
    if r.returncode != 0:
        log("no overlayfs here (%s): copying the cached root" % r.stderr.decode().strip())
        os.rmdir(ROOT)
        sh("cp", "-a", PRISTINE, ROOT)
    sh("mount", "--make-private", ROOT, check=False)
    sh("mount", "-t", "proc", "proc", host_path("/proc"))
    # /dev from the host; made a slave first so that what is mounted below it
    # (/dev/shm) never propagates back to the host's /dev.
    sh("mount", "--bind", "/dev", host_path("/dev"))
    sh("mount", "--make-rslave", host_path("/dev"))
    sh("mount", "-t", "tmpfs", "-o", "mode=1777", "shm", host_path("/dev/shm"))
    archives = os.path.join(CACHE, "apt-archives")
    os.makedirs(os.path.join(archives, "partial"), exist_ok=True)
    sh("mount", "--bind", archives, host_path("/var/cache/apt/archives"))
    shutil.copy("/etc/resolv.conf", host_path("/etc/resolv.conf"))


# ---- what "as it was" means --------------------------------------------------

# Bookkeeping of dpkg/apt and logs changes with any install; the rest must not.
NOISE = re.compile(r"^(var/lib/(dpkg|apt)|var/cache|var/log|tmp|run|proc|dev|root/\.cache)(/|$)|__pycache__")


def snapshot():
    out = {}
    for top, dirs, files in os.walk(ROOT):
        rel_top = os.path.relpath(top, ROOT)
        rel_top = "" if rel_top == "." else rel_top
        dirs[:] = [d for d in dirs if not NOISE.search(os.path.join(rel_top, d))]
        for n in dirs + files:
            rel = os.path.join(rel_top, n)
            if NOISE.search(rel):
                continue
            st = os.lstat(os.path.join(top, n))
            size = st.st_size if not os.path.isdir(os.path.join(top, n)) else 0
            out[rel] = (st.st_mode, size)
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def executables(spans):
    return sorted({s["resource"].get("process.executable.name") for s in spans})


class Deb(unittest.TestCase):
    maxDiff = 6000
    procs = []

    @classmethod
    def setUpClass(cls):
        t0 = time.monotonic()
        r = sh("bash", os.path.join(tsenv.SOURCE_DIR, "scripts", "package.sh"),
               env=dict(os.environ, BUILD_DIR=tsenv.BUILD_DIR), timeout=600)
        cls.deb = r.stdout.decode().strip().splitlines()[-1]
        log("package: %s (%.0f s)" % (cls.deb, time.monotonic() - t0))
        setup_run_root()
        shutil.copy(cls.deb, host_path("/tmp/traceshim.deb"))
        os.makedirs(host_path("/srv/www"))
        with open(host_path("/srv/www/index.html"), "w") as f:
            f.write(BODY)
        cls.before = snapshot()

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        inside("traceshim stop >/dev/null 2>&1 || true", check=False)
        unmount_all(RUN)
        if not tsenv.KEEP:
            shutil.rmtree(RUN, ignore_errors=True)

    def background(self, argv, env=None):
        p = spawn_inside(argv, env)
        type(self).procs.append(p)
        return p

    def server(self):
        if not hasattr(type(self), "url"):
            port = free_port()
            p = self.background(["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                 "--directory", "/srv/www"])
            def up():
                with socket.socket() as s:
                    return s.connect_ex(("127.0.0.1", port)) == 0 or p.poll() is not None
            wait_until(up, 20, "the chroot's http.server")
            self.assertIsNone(p.poll(), p.stdout.read() if p.poll() is not None else "")
            type(self).url = "http://127.0.0.1:%d/index.html" % port
        return self.url

    def pipeline(self):
        return "curl -s %s; python3 -c '%s' %s; echo done $?" % (self.url, PY_GET, self.url)

    def wait_file_spans(self, path, where, what, seen=()):
        found = []

        def look():
            try:
                spans = spanlib.read_jsonl(host_path(path))[0]
            except FileNotFoundError:
                return False
            found[:] = [s for s in spans if s["span_id"] not in seen]
            return any(where(s) for s in found)
        wait_until(look, 20, what)
        time.sleep(0.5)  # what else the same processes sent
        look()
        return found

    # -- the tests, in order ---------------------------------------------------
    def test_1_install_pulls_its_dependencies(self):
        cmd = "apt-get install -y -qq --no-install-recommends /tmp/traceshim.deb"
        r = inside(cmd, check=False)
        if r.returncode != 0:  # lists of the cached root gone stale on the mirror
            inside("apt-get update -qq")
            inside(cmd)
        for pkg in ("traceshim", "python3", "libprotobuf-c1", "libunwind8", "libcurl4"):
            st = inside("dpkg-query -W -f '${Status}' %s" % pkg, check=False).stdout.decode()
            self.assertEqual(st, "install ok installed", pkg)
        self.assertEqual(inside("traceshim --version").stdout.decode().strip(), "traceshim 0.1.0")
        self.assertEqual(inside("command -v traceshim").stdout.decode().strip(), "/usr/bin/traceshim")
        leaks = inside("grep -rlaF -e %s -e %s /usr/bin/traceshim /usr/libexec/traceshim "
                       "/usr/lib/x86_64-linux-gnu/traceshim /usr/lib/systemd /etc/traceshim /usr/share/man/man1 "
                       "/usr/share/man/man8 || true" % (tsenv.SOURCE_DIR, tsenv.BUILD_DIR)).stdout
        self.assertEqual(leaks, b"", "build-tree paths in installed files")

    def test_2_run_curl_from_usr_bin(self):
        url = self.server()
        # The shared configuration file reaches what `traceshim run` starts.
        with open(host_path("/etc/traceshim/traceshim.env"), "a") as f:
            f.write("OTEL_RESOURCE_ATTRIBUTES='deployment.environment.name=chroot'\n")
        r = inside("traceshim run -- curl -s %s" % url)
        self.assertEqual(r.stdout.decode(), BODY)
        self.assertEqual(r.stderr, b"")
        spans = self.wait_file_spans("/root/.local/state/traceshim/traces.jsonl",
                                     lambda s: s["name"] == "GET" and s["kind"] == 3, "curl's GET span")
        get = [s for s in spans if s["name"] == "GET" and s["kind"] == 3][0]
        self.assertEqual(get["attributes"].get("http.response.status_code"), 200)
        self.assertEqual(get["resource"].get("process.executable.name"), "curl")
        self.assertEqual(get["resource"].get("deployment.environment.name"), "chroot")
        show = inside("traceshim show --last 1").stdout.decode()
        self.assertIn("GET", show)
        inside("traceshim stop")

    def test_3_include_rules_in_a_pipeline(self):
        self.server()
        plain = inside(self.pipeline())
        traced = inside("traceshim run -- sh -c \"$PIPE\"",
                        env={"PIPE": self.pipeline(), "TRACESHIM_INCLUDE": "curl",
                             "TRACESHIM_FILE": "/tmp/include.jsonl"})
        self.assertEqual((traced.stdout, traced.stderr), (plain.stdout, plain.stderr))
        self.assertTrue(plain.stdout.endswith(b"200\ndone 0\n"), plain.stdout[-50:])
        spans = self.wait_file_spans("/tmp/include.jsonl", lambda s: s["name"] == "GET", "curl's spans")
        self.assertEqual(executables(spans), ["curl"], spanlib.describe(spans))
        inside("TRACESHIM_FILE=/tmp/include.jsonl traceshim stop")

    def test_4_units_verify_and_enable_disable(self):
        inside("mkdir -p /run/user/0")
        for args in ("", "--user"):
            d = "/usr/lib/systemd/%s" % ("user" if args else "system")
            r = inside("XDG_RUNTIME_DIR=/run/user/0 systemd-analyze verify %s --man=no %s/traceshim-exporter.socket "
                       "%s/traceshim-exporter.service" % (args, d, d), check=False)
            self.assertEqual((r.returncode, r.stdout + r.stderr), (0, b""), "systemd-analyze verify %s" % args)
        with open(host_path("/etc/systemd/system/demo.service"), "w") as f:
            f.write("[Unit]\nDescription=demo\n[Service]\nExecStart=/usr/bin/python3 -m http.server 8\n"
                    "[Install]\nWantedBy=multi-user.target\n")
        r = inside("traceshim enable demo")
        self.assertIn(b"enabled demo.service", r.stdout)
        with open(host_path("/etc/systemd/system/demo.service.d/traceshim.conf")) as f:
            dropin = f.read()
        for line in ('Environment="LD_PRELOAD=%s"' % LIB, 'Environment="OTEL_SERVICE_NAME=demo"',
                     'Environment="TRACESHIM_SOCKET=/run/traceshim/exporter.sock"',
                     "EnvironmentFile=-/etc/traceshim/traceshim.env", "After=traceshim-exporter.socket"):
            self.assertIn(line + "\n", dropin)
        r = inside("systemd-analyze verify --man=no /etc/systemd/system/demo.service", check=False)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, b""), "verify with the drop-in")
        st = inside("traceshim status", check=False).stdout.decode()
        self.assertIn("enabled_unit=demo.service\n", st)
        # A drop-in of the same name that we did not write is left alone.
        os.makedirs(host_path("/etc/systemd/system/other.service.d"))
        with open(host_path("/etc/systemd/system/other.service.d/traceshim.conf"), "w") as f:
            f.write("[Service]\nEnvironment=X=1\n")
        r = inside("traceshim disable other", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"not written by", r.stderr)
        shutil.rmtree(host_path("/etc/systemd/system/other.service.d"))
        self.assertEqual(inside("traceshim enable nginx.socket", check=False).returncode, 2)
        type(self).dropin = dropin

    def start_system_exporter(self):
        """As traceshim-exporter.socket + .service would (no systemd runs in
        the chroot): the socket made by systemd-socket-activate, the unit's
        environment."""
        inside("mkdir -p /run/traceshim /var/lib/traceshim; rm -f /run/traceshim/exporter.sock")
        p = self.background(["systemd-socket-activate", "--seqpacket", "-l", "/run/traceshim/exporter.sock",
                             "-E", "TRACESHIM_SOCKET=/run/traceshim/exporter.sock",
                             "-E", "TRACESHIM_FILE=/var/lib/traceshim/traces.jsonl",
                             "-E", "OTEL_BSP_SCHEDULE_DELAY=100",
                             "/usr/libexec/traceshim/traceshim-exporter"])
        wait_until(lambda: os.path.exists(host_path("/run/traceshim/exporter.sock")), 10, "the system socket")
        return p

    def stop_system_exporter(self, p):
        os.killpg(p.pid, signal.SIGTERM)
        out = p.communicate(timeout=30)[0].decode(errors="replace")
        self.assertEqual(p.returncode, 0, out)
        return out

    def set_include(self, rules):
        """Edited from outside: a command in the chroot would be traced itself."""
        path = host_path("/etc/traceshim/preload.env")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(re.sub(r"^TRACESHIM_INCLUDE=.*$", "TRACESHIM_INCLUDE=" + rules, text, flags=re.M))

    def test_5_dropin_environment_and_ld_so_preload(self):
        url = self.server()
        sysfile = "/var/lib/traceshim/traces.jsonl"
        exporter = self.start_system_exporter()
        # What the service gets from the drop-in, reaching the system exporter.
        env = dict(re.findall(r'^Environment="([A-Z_]+)=([^"]*)"$', self.dropin, re.M))
        self.assertEqual(set(env), {"LD_PRELOAD", "OTEL_SERVICE_NAME", "TRACESHIM_SOCKET"})
        inside("python3 -c '%s' %s" % (PY_GET, url), env=env)
        spans = self.wait_file_spans(sysfile, lambda s: s["name"] == "GET", "the demo service's spans")
        self.assertEqual({s["resource"]["service.name"] for s in spans}, {"demo"})
        seen = {s["span_id"] for s in spans}

        baseline = inside(self.pipeline())
        # No rules in preload.env: refused, nothing written.
        r = inside("traceshim enable --host", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"refusing", r.stderr)
        self.assertFalse(os.path.exists(host_path("/etc/ld.so.preload")))

        # Everything included: even so the exporter never traces itself.
        self.set_include("*")
        inside("traceshim enable --host")
        with open(host_path("/etc/ld.so.preload")) as f:
            self.assertEqual(f.read(), LIB + "\n")
        st = inside("traceshim status", check=False)
        self.assertIn(b"host_wide=/etc/ld.so.preload\n", st.stdout, st)
        self.stop_system_exporter(exporter)
        exporter = self.start_system_exporter()  # now it loads the shim too
        r = inside(self.pipeline())
        self.assertEqual((r.stdout, r.stderr), (baseline.stdout, baseline.stderr))
        # A setuid program run by an ordinary user (secure execution) loads
        # the library from /etc/ld.so.preload, but is never traced.
        su = inside("setpriv --reuid=65534 --regid=65534 --clear-groups su --help; echo rc=$?")
        self.assertIn(b"rc=0", su.stdout)
        spans = self.wait_file_spans(sysfile, lambda s: s["name"] == "python3.11", "spans of every process", seen)
        names = executables(spans)
        self.assertIn("curl", names)
        self.assertIn("python3.11", names)
        self.assertIn("dash", names)
        self.assertNotIn("su", names)
        self.assertNotIn("traceshim-exporter", names)
        seen |= {s["span_id"] for s in spans}

        # Only curl: python and sh pass straight through, output unchanged.
        self.set_include("curl")
        r = inside(self.pipeline())
        self.assertEqual((r.stdout, r.stderr), (baseline.stdout, baseline.stderr))
        self.assertEqual(inside("/bin/true; ls -d /").stderr, b"")
        spans = self.wait_file_spans(sysfile, lambda s: s["name"] == "GET", "curl's spans", seen)
        self.assertEqual(executables(spans), ["curl"], spanlib.describe(spans))
        seen |= {s["span_id"] for s in spans}

        # A preload.env too big to read whole: nothing is traced, even with *.
        self.set_include("*")
        with open(host_path("/etc/traceshim/preload.env"), "a") as f:
            f.write("# padding\n" * 500)
        r = inside(self.pipeline())
        self.assertEqual((r.stdout, r.stderr), (baseline.stdout, baseline.stderr))
        time.sleep(1)
        late = [s for s in spanlib.read_jsonl(host_path(sysfile))[0] if s["span_id"] not in seen]
        self.assertEqual(late, [], spanlib.describe(late))
        self.stop_system_exporter(exporter)

        inside("traceshim disable --host")
        self.assertFalse(os.path.exists(host_path("/etc/ld.so.preload")))

    def test_6_remove_and_purge_leave_the_root_as_it_was(self):
        inside("traceshim enable --host --quiet && traceshim enable --quiet demo")
        inside("apt-get remove -y -qq traceshim")
        self.assertFalse(os.path.exists(host_path("/etc/ld.so.preload")), "prerm left /etc/ld.so.preload")
        self.assertFalse(os.path.exists(host_path("/etc/systemd/system/demo.service.d")), "prerm left the drop-in")
        self.assertFalse(os.path.exists(host_path("/usr/bin/traceshim")))
        self.assertTrue(os.path.exists(host_path("/etc/traceshim/preload.env")), "conffiles stay on remove")
        # After the library is gone, processes start without a word.
        self.assertEqual(inside("/bin/true").stderr, b"")
        inside("apt-get purge -y -qq traceshim && apt-get autoremove --purge -y -qq")
        self.assertFalse(os.path.exists(host_path("/var/lib/traceshim")), "purge keeps the system exporter's state")
        # What the test itself made.
        os.remove(host_path("/etc/systemd/system/demo.service"))
        shutil.rmtree(host_path("/root/.local"))
        after = snapshot()
        added = sorted(set(after) - set(self.before))
        removed = sorted(set(self.before) - set(after))
        changed = sorted(k for k in set(after) & set(self.before) if after[k] != self.before[k]
                         and not os.path.isdir(os.path.join(ROOT, k)) and k != "etc/ld.so.cache")
        self.assertEqual((added, removed, changed), ([], [], []))

    def test_7_units_under_systemd(self):
        """The real thing: the root booted by systemd-nspawn, the exporter
        socket-activated as its dynamic user, a User=nobody service enabled
        with `traceshim enable`, its spans in the system exporter's file."""
        if not shutil.which("systemd-nspawn"):
            self.skipTest("systemd-nspawn (package systemd-container) is not installed")
        inside("apt-get install -y -qq --no-install-recommends /tmp/traceshim.deb")
        port = free_port()
        check = host_path("/root/check.sh")
        with open(check, "w") as f:
            f.write(NSPAWN_CHECK % {"port": port})
        os.chmod(check, 0o755)
        with open(host_path("/etc/systemd/system/ts-check.service"), "w") as f:
            f.write("[Unit]\nAfter=multi-user.target\nSuccessAction=poweroff-force\nFailureAction=poweroff-force\n"
                    "[Service]\nType=oneshot\nExecStart=/root/check.sh\n[Install]\nWantedBy=multi-user.target\n")
        os.symlink("/etc/systemd/system/ts-check.service",
                   host_path("/etc/systemd/system/multi-user.target.wants/ts-check.service"))
        for m in ("/dev/shm", "/dev", "/proc"):  # nspawn mounts its own
            sh("umount", host_path(m))
        r = sh("systemd-nspawn", "-q", "-D", ROOT, "-b", "--register=no", "--keep-unit", check=False, timeout=180)
        out = {}
        for name in ("log", "body", "uid", "state", "removed"):
            try:
                with open(host_path("/root/check." + name), errors="replace") as f:
                    out[name] = f.read()
            except FileNotFoundError:
                out[name] = None
        if out["log"] is None:
            self.skipTest("systemd-nspawn did not boot the root here (%d): %s"
                          % (r.returncode, (r.stdout + r.stderr).decode(errors="replace")[-800:]))
        self.assertEqual(out["body"], BODY, out["log"])
        self.assertEqual(out["state"], "ActiveState=active\n", out["log"])
        uid = int(out["uid"].split()[1])
        self.assertNotEqual(uid, 0, "the exporter runs as its own user")
        self.assertGreaterEqual(uid, 61184, "a dynamic uid (61184-65519)")
        spans = spanlib.read_jsonl(host_path("/root/check.jsonl"))[0]
        get = [s for s in spans if s["name"] == "GET" and s["kind"] == 2]
        self.assertEqual(len(get), 1, spanlib.describe(spans))
        self.assertEqual(get[0]["resource"]["service.name"], "demo")
        self.assertEqual(get[0]["attributes"].get("http.response.status_code"), 200)
        removed = out["removed"].splitlines()
        self.assertEqual(removed[:2], ["inactive", "inactive"], out["removed"])
        self.assertEqual(len([x for x in removed[2:] if "No such file or directory" in x]), 2,
                         "the socket is still enabled, or the drop-in is left:\n" + out["removed"])
        self.assertIn("connections_refused=0\n", out["log"])
        self.assertNotIn("is not allowed", out["log"])


# Runs as a oneshot unit inside the booted root, which then powers off
# (SuccessAction=/FailureAction=poweroff-force: a plain `systemctl poweroff`
# after the package's removal once ended in a halt that nspawn waited on).
NSPAWN_CHECK = """#!/bin/sh
exec > /root/check.log 2>&1
set -x
sed -i 's/^TRACESHIM_ALLOWED_UIDS=.*/TRACESHIM_ALLOWED_UIDS=65534/' /etc/traceshim/exporter.env
systemctl enable --now traceshim-exporter.socket
printf '[Service]\\nUser=nobody\\nExecStart=/usr/bin/python3 -m http.server %(port)d --bind 127.0.0.1 --directory /srv/www\\n' \\
    > /etc/systemd/system/demo.service
traceshim enable demo
systemctl start demo
for i in $(seq 50); do curl -sf http://127.0.0.1:%(port)d/index.html > /root/check.body && break; sleep 0.2; done
systemctl stop demo
sleep 1
pid=$(systemctl show -p MainPID --value traceshim-exporter.service)
grep '^Uid:' /proc/$pid/status > /root/check.uid
systemctl show -p ActiveState traceshim-exporter.service > /root/check.state
cp /var/lib/traceshim/traces.jsonl /root/check.jsonl
TRACESHIM_SOCKET=/run/traceshim/exporter.sock traceshim status
journalctl -u traceshim-exporter --no-pager
# Removal with systemd running: prerm stops and disables the units and takes
# the drop-in away.
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq traceshim
set +x
{ systemctl is-active traceshim-exporter.socket traceshim-exporter.service
  ls /etc/systemd/system/sockets.target.wants/traceshim-exporter.socket
  ls /etc/systemd/system/demo.service.d; } > /root/check.removed 2>&1
"""


def main():
    if os.geteuid() != 0:
        skip("needs root (chroot, mount)")
    for tool in ("debootstrap", "dpkg-deb", "chroot", "mount"):
        if not shutil.which(tool):
            skip("%s is not installed (scripts/bootstrap.sh installs debootstrap)" % tool)
    tsenv.require_built()
    os.makedirs(CACHE, exist_ok=True)
    lock = open(os.path.join(CACHE, "lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # one run at a time uses the cache
    make_pristine()
    t0 = time.monotonic()
    prog = unittest.main(verbosity=2, exit=False, failfast=True)
    log("tests took %.0f s" % (time.monotonic() - t0))
    sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
