"""Helpers of the metrics tests: the two traced services, a private
Prometheus, and the histogram arithmetic Prometheus does.

    srv = start_server(env)                  # traced python http.server, "shop-server"
    codes = run_requests(env, srv.port, 30, 10)   # 30 traced curl runs, 10 answered 500
    prom = Prometheus({"plain": 19464}, tmpdir)   # scrapes every 1 s
    prom.wait_value('sum(...)', 30)
"""

import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import tsenv

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "red_server.py")
PROMETHEUS = "/usr/bin/prometheus"

# The exporter's histogram bounds (exporter/metrics.c), seconds.
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc, port):
        self.proc, self.port = proc, port


def start_server(env, service="shop-server", extra_env=None):
    """The traced server service (LD_PRELOAD), its port read from its stdout."""
    e = {"OTEL_SERVICE_NAME": service}
    e.update(extra_env or {})
    p = env.spawn(["/usr/bin/python3", SERVER], via="preload", env=e, stderr=subprocess.STDOUT)
    line = p.stdout.readline().decode().strip()
    if not line.isdigit():
        raise AssertionError("the test server did not start: %r %r" % (line, p.stdout.read()[-2000:]))
    p.stdout.close()  # it prints nothing more (log_message is silenced)
    return Server(p, int(line))


def request_paths(total, failing):
    """total paths, `failing` of them /fail/…, spread over the run."""
    fail_at = {round(i * total / failing) for i in range(failing)} if failing else set()
    return ["/fail/%d" % i if i in fail_at else "/ok/%d" % i for i in range(total)]


def run_requests(env, port, total, failing, service="shop-client", extra_env=None):
    """One traced curl process per request (each its own trace, so samplers
    decide per request); returns {status: count}."""
    e = {"OTEL_SERVICE_NAME": service}
    e.update(extra_env or {})
    codes = {}
    for path in request_paths(total, failing):
        r = env.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:%d%s" % (port, path)],
                    via="preload", env=e)
        code = int(r.stdout.decode() or 0)
        codes[code] = codes.get(code, 0) + 1
    return codes


def prom_quantile(q, durations_s):
    """histogram_quantile(q, …) of these durations in the exporter's buckets,
    as Prometheus computes it (linear within the bucket, lower bound 0)."""
    cum, n = [], 0
    for b in BOUNDS:
        n = sum(1 for d in durations_s if d <= b)
        cum.append(n)
    total = len(durations_s)
    rank = q * total
    for i, c in enumerate(cum):
        if c >= rank:
            lower = BOUNDS[i - 1] if i else 0.0
            below = cum[i - 1] if i else 0
            return lower + (BOUNDS[i] - lower) * (rank - below) / (c - below)
    return BOUNDS[-1]  # in +Inf: the highest finite bound


class Prometheus:
    """A private Prometheus: its own config and storage, a free loopback port,
    scraping each job's target every second."""

    def __init__(self, targets, workdir):
        self.port = free_port()
        self.dir = workdir
        cfg = os.path.join(workdir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n")
            for job, port in targets.items():
                f.write("  - job_name: %s\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % (job, port))
        self.log = open(os.path.join(workdir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(workdir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        tsenv.wait_until(self._ready, 60, lambda: "Prometheus ready on port %d:\n%s" % (self.port, self.log_text()))

    def log_text(self):
        with open(os.path.join(self.dir, "prometheus.log"), errors="replace") as f:
            return f.read()[-3000:]

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited with %s:\n%s" % (self.proc.returncode, self.log_text()))
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, expr):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (self.port, urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.load(r)
        if doc.get("status") != "success":
            raise AssertionError("query %s: %r" % (expr, doc))
        return doc["data"]["result"]

    def value(self, expr):
        """The value of a one-element instant vector, None when empty."""
        res = self.query(expr)
        if not res:
            return None
        if len(res) != 1:
            raise AssertionError("%s: %d series, expected one: %r" % (expr, len(res), res))
        return float(res[0]["value"][1])

    def wait_value(self, expr, want, timeout=30):
        """Polls until expr equals want (the scrape is every second); returns it."""
        seen = []

        def done():
            v = self.value(expr)
            seen.append(v)
            return v == want
        tsenv.wait_until(done, timeout, lambda: "%s == %r (last values %r)" % (expr, want, seen[-5:]), interval=0.25)
        return want

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def server_spans(spans, service="shop-server"):
    return [s for s in spans if s["kind"] == 2 and s["resource"].get("service.name") == service]
