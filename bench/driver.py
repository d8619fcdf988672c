#!/usr/bin/env python3
"""traceshim benchmark driver (started by bench/run.sh, which builds everything).

Every comparison runs traced and untraced side by side in the same run, in
alternating rounds (the order flips every round), and reports medians and
the ratio traced/untraced. Everything binds to 127.0.0.1 and every step is
bounded in time. CPU placement (2+ cores): servers and the exporter on core 0,
load generators (wrk, the clients, the firehose) on core 1.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
A = None  # parsed arguments
RESULTS = {}
ROWS = []  # (benchmark, measure, untraced, traced, ratio, note)


def log(msg):
    print(msg, flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def cpu_list():
    n = os.cpu_count() or 1
    return ("0", "1") if n >= 2 else ("0", "0")


SERVER_CPU, LOAD_CPU = cpu_list()


def pin(cpu, argv):
    return ["taskset", "-c", cpu] + argv if shutil.which("taskset") else argv


def proc_cpu_s(pid):
    """CPU time of a whole process (its live threads), in seconds: the
    scheduler's own nanosecond count (/proc/PID/task/TID/schedstat), not
    utime+stime, which the kernel samples per tick (4 ms at HZ=250) and can
    charge badly to a process that runs in short bursts, like the exporter.
    Falls back to utime+stime where schedstat is missing."""
    total, seen = 0, False
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
                    seen = True
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    if seen:
        return total / 1e9
    return proc_cpu_all_s(pid)


def proc_cpu_all_s(pid):
    """CPU time of a whole process including the threads that have exited
    (utime+stime of /proc/PID/stat, in 10-ms clock ticks; the kernel scales
    the pair so that their sum is the scheduler's exact runtime). For a
    server whose threads come and go — python's ThreadingHTTPServer runs one
    thread per connection, gone when wrk closes it at the end of a round —
    proc_cpu_s, which can only see live threads, would miss nearly all."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def row(bench, measure, untraced, traced, note="", lower_is_better=True):
    ratio = traced / untraced if untraced else float("nan")
    ROWS.append((bench, measure, untraced, traced, ratio, note))
    log(f"  {measure:<38} untraced {untraced:>12.3f}   traced {traced:>12.3f}   ratio {ratio:6.3f}  {note}")
    return ratio


def traced_env(sock, extra=None):
    env = dict(os.environ)
    env.update({"LD_PRELOAD": A.lib, "TRACESHIM_SOCKET": sock})
    env.pop("TRACESHIM_LOG", None)
    if extra:
        env.update(extra)
    return env


def plain_env():
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "TRACESHIM_SOCKET", "TRACEPARENT", "TRACESTATE", "BAGGAGE"):
        env.pop(k, None)
    return env


def run(argv, env=None, timeout=120, check=True):
    p = subprocess.run(argv, env=env or plain_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()[:500]}")
    return p.stdout


def rounds():
    return A.rounds


def alternate(i):
    """Round i: untraced first on even rounds, traced first on odd ones."""
    return (False, True) if i % 2 == 0 else (True, False)


# ---- the exporter ---------------------------------------------------------------------

class Exporter:
    def __init__(self, name, sink="file", endpoint=None, cpu=None, extra_env=None):
        self.sock = os.path.join(A.work, f"{name}.sock")
        self.file = os.path.join(A.work, f"{name}.jsonl")
        for p in (self.sock, self.file):
            if os.path.exists(p):
                os.unlink(p)
        env = plain_env()
        env["TRACESHIM_SOCKET"] = self.sock
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        if sink == "file":
            env["TRACESHIM_FILE"] = self.file
        else:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
            env.pop("TRACESHIM_FILE", None)
        env.update(extra_env or {})
        self.env = env
        argv = [A.exporter]
        if A.exporter_sched == "batch":  # SCHED_BATCH: its wakeups never preempt the server
            argv = ["chrt", "-b", "0"] + argv
        elif A.exporter_sched == "idle":
            argv = ["chrt", "-i", "0"] + argv
        if A.exporter_cpu == "any":
            cpu = None
        if cpu is not None:
            argv = pin(cpu, argv)
        self.errlog = open(os.path.join(A.work, f"{name}.exporter.log"), "w")
        self.p = subprocess.Popen(argv, env=env, stdout=self.errlog, stderr=self.errlog)
        end = time.time() + 10
        while time.time() < end:
            if os.path.exists(self.sock) and self.status(check=False):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"exporter {name} did not start (see {self.errlog.name})")

    @property
    def pid(self):
        return self.p.pid

    def status(self, check=True):
        p = subprocess.run([A.exporter, "--status"], env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=10)
        if p.returncode != 0:
            if check:
                raise RuntimeError(f"exporter --status failed: {p.stderr.strip()}")
            return None
        st = {}
        for line in p.stdout.splitlines():
            k, _, v = line.partition("=")
            st[k] = int(v) if v.isdigit() else v
        return st

    def settle(self, timeout=15.0):
        """Waits until the queue is empty and the counters stop moving."""
        end = time.time() + timeout
        last = None
        while time.time() < end:
            st = self.status()
            key = (st.get("received_spans"), st.get("exported_spans"))
            if st.get("queue_depth", 0) == 0 and key == last:
                return st
            last = key
            time.sleep(0.4)
        return self.status()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.errlog.close()
        # The rotated .1 too: trace files left in the page cache made later
        # firehose rounds' write()s up to ~4x dearer (docs/PERFORMANCE.md).
        for f in (self.file, self.file + ".1"):
            if os.path.exists(f) and not A.keep:
                os.unlink(f)


def count_kind(path, kind):
    """Spans of this OTLP kind in an OTLP/JSON lines file ("kind":N only
    occurs as a span field: attribute values are quoted strings)."""
    needle = f'"kind":{kind},'.encode()
    n, tail = 0, b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            buf = tail + chunk  # a needle cut by the chunk boundary is whole here
            n += buf.count(needle)
            tail = buf[-(len(needle) - 1):]  # shorter than the needle: never counted twice
    return n


def delta(a, b, key):
    return b.get(key, 0) - a.get(key, 0)


# ---- 1. calls the shim must not trace ----------------------------------------------------

def parse_calls(out):
    res = {}
    for line in out.splitlines():
        parts = line.split()
        res[parts[0]] = [float(x) for x in parts[1:]]
    return res


def bench_calls():
    log("\n== 1. calls the shim must not trace (ns per call, medians) ==")
    exp = Exporter("calls", cpu=SERVER_CPU)
    calls = os.path.join(A.bin, "calls")
    n = str(A.calls_iter)
    tests = ("devnull", "tcp", "file")
    # configurations: (label, traced?, flags)
    configs = [
        ("plain", False, ["-s"]),
        ("traced", True, ["-s"]),
        ("plain-cold", False, []),
        ("traced-cold", True, []),
        ("plain+idle-thread", False, ["-s", "-t"]),
        ("traced-interleaved", True, ["-s", "-i"]),
    ]
    samples = {c[0]: {t: [] for t in tests} for c in configs}
    inproc = {t: ([], []) for t in tests}
    for i in range(rounds()):
        order = configs if i % 2 == 0 else list(reversed(configs))
        for label, traced, flags in order:
            env = traced_env(exp.sock) if traced else plain_env()
            res = parse_calls(run(pin(LOAD_CPU, [calls, "-n", n] + flags), env=env))
            for t in tests:
                samples[label][t].append(res[t][0])
                if label == "traced-interleaved":
                    inproc[t][0].append(res[t][0])
                    inproc[t][1].append(res[t][1])
    out = {}
    log("  state after one traced connection (spans flowing: ring attached; a sender thread in socket mode):")
    for t in tests:
        u, tr = median(samples["plain"][t]), median(samples["traced"][t])
        out[t] = {"untraced_ns": u, "traced_ns": tr, "ratio": row("calls", f"{t} (after a span)", u, tr)}
    log("  before the process traced anything:")
    for t in tests:
        u, tr = median(samples["plain-cold"][t]), median(samples["traced-cold"][t])
        note = "its own connect is already a traced event" if t == "tcp" else ""
        out[t + "_cold"] = {"untraced_ns": u, "traced_ns": tr, "ratio": row("calls", f"{t} (cold)", u, tr, note)}
    log("  a second thread by itself, no shim (plain vs plain + idle thread):")
    for t in tests:
        u, tr = median(samples["plain"][t]), median(samples["plain+idle-thread"][t])
        out[t + "_thread_only"] = {"untraced_ns": u, "with_thread_ns": tr,
                                   "ratio": row("calls", f"{t} (idle thread, no shim)", u, tr,
                                                "kernel: multi-threaded fd lookup")}
    log("  in one traced process, hook vs libc's own function (interleaved blocks):")
    for t in tests:
        hook, direct = median(inproc[t][0]), median(inproc[t][1])
        out[t + "_hook_only"] = {"direct_ns": direct, "hook_ns": hook,
                                 "ratio": row("calls", f"{t} (hook vs direct, same process)", direct, hook)}
    exp.stop()
    RESULTS["calls"] = out


# ---- 2. HTTP servers under load ---------------------------------------------------------

NGINX_CONF = """
worker_processes 1;
{user}
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type text/html;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""

INDEX = ("<!DOCTYPE html>\n<html><head><title>traceshim bench</title></head>\n<body>\n"
         + "<p>A small static page for the benchmark, about as large as nginx's default index page.</p>\n" * 5
         + "</body></html>\n")


def nginx_tls_conf(cert, key):
    """The benchmark's nginx.conf with its one server on TLS: same page,
    same keep-alive, sendfile off there anyway (nginx cannot sendfile into
    a TLS session without kTLS), a self-signed certificate."""
    listen = "listen 127.0.0.1:{port};"
    assert listen in NGINX_CONF
    return NGINX_CONF.replace(listen, "listen 127.0.0.1:{port} ssl;\n"
                              f"        ssl_certificate {cert};\n"
                              f"        ssl_certificate_key {key};")


class Nginx:
    def __init__(self, name, env, conf=NGINX_CONF):
        self.dir = os.path.join(A.work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            # As root, nginx's worker would switch to "nobody", which can neither
            # open the exporter's 0600 socket nor pass its same-uid check: the
            # worker's spans would be lost. Keep it the exporter's uid.
            user = "user root;" if os.geteuid() == 0 else ""
            f.write(conf.format(dir=self.dir, port=self.port, root=A.www, user=user))
        self.p = subprocess.Popen(pin(SERVER_CPU, [A.nginx, "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf")]),
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        self.master = self.p.pid  # taskset exec()s nginx: same pid
        self.worker = None
        end = time.time() + 5
        while time.time() < end and not self.worker:
            kids = run(["ps", "-o", "pid=", "--ppid", str(self.master)], check=False).split()
            self.worker = int(kids[0]) if kids else None
            time.sleep(0.05)

    def stop(self):
        self.p.send_signal(signal.SIGQUIT)  # graceful: the worker exits and ends its process span
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


UNIT = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def parse_wrk(out):
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    r["requests"] = int(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        r[f"p{pct}_us"] = float(m.group(1)) * UNIT[m.group(2)]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    r["socket_errors"] = m.group(1) if m else ""
    return r


def wrk(port, path, seconds, conns, scheme="http"):
    out = run(pin(LOAD_CPU, [A.wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
                             f"{scheme}://127.0.0.1:{port}{path}"]), timeout=seconds + 60)
    return parse_wrk(out)


def server_rounds(name, servers, path, seconds, conns, exp, pids=None, cpu_of=proc_cpu_s, scheme="http"):
    """Alternates wrk rounds between the untraced and traced servers.
    Returns per-mode lists of wrk results, plus the span accounting of the
    traced rounds and the CPU each server process used per request."""
    res = {False: [], True: []}
    cpu = {False: [], True: []}
    spans = {"requests": 0, "received": 0, "exported": 0, "dropped_client": 0, "dropped_queue_full": 0,
             "all_traced_requests": 0}
    for traced in (False, True):  # warm-up, not recorded (its spans are counted below)
        w = wrk(servers[traced].port, path, 1, conns, scheme)
        if traced:
            spans["all_traced_requests"] += w["requests"]
    exp.settle()
    for i in range(rounds()):
        for traced in alternate(i):
            before = exp.settle() if traced else None
            pid = (pids or {}).get(traced)
            c0 = cpu_of(pid) if pid else None
            r = wrk(servers[traced].port, path, seconds, conns, scheme)
            if pid:
                cpu[traced].append((cpu_of(pid) - c0) * 1e6 / max(r["requests"], 1))
            res[traced].append(r)
            if traced:
                after = exp.settle()
                spans["requests"] += r["requests"]
                spans["all_traced_requests"] += r["requests"]
                spans["received"] += delta(before, after, "received_spans")
                spans["exported"] += delta(before, after, "exported_spans")
                spans["dropped_client"] += delta(before, after, "dropped_client")
                spans["dropped_queue_full"] += delta(before, after, "dropped_queue_full")
            log(f"    round {i + 1} {'traced  ' if traced else 'untraced'}: {r['rps']:>10.0f} req/s  "
                f"p50 {r['p50_us']:>8.1f} us  p99 {r['p99_us']:>8.1f} us")
    return res, spans, cpu


def report_server(bench, res, spans, cpu, exp=None):
    out = {}
    for key, label in (("rps", "requests/s"), ("p50_us", "p50 latency (us)"), ("p99_us", "p99 latency (us)")):
        u = median([r[key] for r in res[False]])
        t = median([r[key] for r in res[True]])
        out[key] = {"untraced": u, "traced": t, "ratio": row(bench, label, u, t)}
    if cpu[False] and cpu[True]:
        u, t = median(cpu[False]), median(cpu[True])
        out["server_cpu_us_per_request"] = {"untraced": u, "traced": t, "ratio": row(
            bench, "server CPU us/request", u, t, f"+{t - u:.2f} us")}
    loss = 1 - spans["received"] / spans["requests"] if spans["requests"] else float("nan")
    out["spans"] = dict(spans, loss_received=loss)
    log(f"  spans: {spans['requests']} requests in traced rounds -> {spans['received']} spans received "
        f"(all kinds; {spans['exported']} exported), dropped in the shim {spans['dropped_client']}, "
        f"exporter queue full {spans['dropped_queue_full']}")
    rotations = exp.status().get("file_rotations", 0) if exp else 0
    if rotations:
        log(f"  the trace file rotated {rotations} times (TRACESHIM_FILE_MAX_BYTES): span accounting "
            f"from the exporter's counters above only")
        out["spans"]["file_rotations"] = rotations
    elif exp and os.path.exists(exp.file):
        exp_file = exp.file
        server_spans = count_kind(exp_file, 2)
        want = spans["all_traced_requests"]
        out["spans"]["server_spans_in_file"] = server_spans
        out["spans"]["loss_exported"] = 1 - server_spans / want if want else float("nan")
        log(f"  SERVER spans in the exporter's file: {server_spans} for {want} traced requests "
            f"(warm-up included): {(1 - server_spans / want) * 100:.3f}% lost")
    return out


def bench_nginx():
    log(f"\n== 2a. nginx (1 worker, keep-alive, {len(INDEX)} B static file) under wrk "
        f"-c{A.conns} {A.seconds}s x {rounds()} rounds per mode ==")
    exp = Exporter("nginx", cpu=SERVER_CPU)
    servers = {False: Nginx("nginx-plain", plain_env()), True: Nginx("nginx-traced", traced_env(exp.sock))}
    pids = {t: servers[t].worker for t in servers}
    e0 = proc_cpu_s(exp.pid)
    try:
        res, spans, cpu = server_rounds("nginx", servers, "/index.html", A.seconds, A.conns, exp, pids)
        exp_cpu = proc_cpu_s(exp.pid) - e0
        time.sleep(0.5)
        out = report_server("nginx", res, spans, cpu, exp)
        out["exporter_cpu_us_per_span"] = exp_cpu * 1e6 / max(spans["exported"], 1)
        out["exporter_rss_kib"] = proc_status(exp.pid, "VmRSS")
        out["exporter_hwm_kib"] = proc_status(exp.pid, "VmHWM")
        out["worker_rss_kib"] = {t: proc_status(servers[t].worker, "VmRSS") for t in (False, True)}
        out["worker_rss_kib"] = {"untraced": out["worker_rss_kib"][False], "traced": out["worker_rss_kib"][True]}
        log(f"  exporter: {out['exporter_cpu_us_per_span']:.2f} us CPU per span (incl. idle time between rounds), "
            f"RSS {out['exporter_rss_kib']} KiB (peak {out['exporter_hwm_kib']} KiB)")
        log(f"  nginx worker RSS after the rounds: untraced {out['worker_rss_kib']['untraced']} KiB, "
            f"traced {out['worker_rss_kib']['traced']} KiB")
        RESULTS["nginx"] = out
        # The same, with the exporter moved (all its threads) to the load
        # generator's core: what the traced server's own core pays for the shim.
        run(["taskset", "-a", "-p", "-c", LOAD_CPU, str(exp.pid)])
        log(f"  -- again with the exporter on core {LOAD_CPU} (wrk's), so nginx's core carries only the shim:")
        res2, spans2, cpu2 = server_rounds("nginx", servers, "/index.html", A.seconds, A.conns, exp, pids)
        RESULTS["nginx_exporter_elsewhere"] = report_server("nginx (exporter on the other core)", res2, spans2, cpu2)
        run(["taskset", "-a", "-p", "-c", SERVER_CPU, str(exp.pid)])
        # The floor: a traced nginx whose exporter socket does not exist. The
        # shim still parses, builds and queues every span, then drops it (no
        # send, no exporter CPU anywhere): the in-process cost alone.
        log("  -- again with a traced nginx whose exporter is absent (spans built, then dropped in the shim):")
        lonely = Nginx("nginx-traced-noexporter", traced_env(os.path.join(A.work, "absent.sock")))
        try:
            res3, spans3, cpu3 = server_rounds("nginx", {False: servers[False], True: lonely}, "/index.html",
                                               A.seconds, A.conns, exp,
                                               {False: servers[False].worker, True: lonely.worker})
            RESULTS["nginx_no_exporter"] = report_server("nginx (no exporter)", res3, spans3, cpu3)
        finally:
            lonely.stop()
        A.nginx_plain_port = servers[False].port
        # the untraced nginx stays up for the client benchmark
        bench_client(exp, servers[False].port)
        bench_memory(exp, servers[False].port)
    finally:
        for s in servers.values():
            s.stop()
        exp.stop()


def bench_python():
    log(f"\n== 2b. python ThreadingHTTPServer under wrk -c4 {A.py_seconds}s x {rounds()} rounds per mode ==")
    exp = Exporter("python", cpu=SERVER_CPU)
    script = os.path.join(A.src, "bench", "pyserver.py")
    procs, servers = [], {}

    class S:
        pass
    try:
        for traced in (False, True):
            s = S()
            s.port = free_port()
            env = traced_env(exp.sock) if traced else plain_env()
            s.p = subprocess.Popen(pin(SERVER_CPU, [A.python, script, str(s.port), A.www]), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(s.p)
            wait_port(s.port)
            servers[traced] = s
        pids = {t: servers[t].p.pid for t in servers}
        res, spans, cpu = server_rounds("python", servers, "/index.html", A.py_seconds, 4, exp, pids,
                                        cpu_of=proc_cpu_all_s)
        time.sleep(0.5)
        RESULTS["python"] = report_server("python", res, spans, cpu, exp)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        exp.stop()


class NodeServer:
    """bench/nodeserver.js (node's http module, keep-alive, a 58-byte body)
    pinned to the server core; node's own helper threads go with it."""

    def __init__(self, name, env):
        self.port = free_port()
        self.errlog = open(os.path.join(A.work, f"{name}.log"), "w")
        script = os.path.join(A.src, "bench", "nodeserver.js")
        self.p = subprocess.Popen(pin(SERVER_CPU, [A.node, script, str(self.port)]), env=env,
                                  stdout=self.errlog, stderr=self.errlog)
        wait_port(self.port)
        self.pid = self.p.pid  # taskset exec()s node: same pid

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.errlog.close()


def bench_node():
    """node's http server, as nginx: exporter on the server's core, on wrk's
    core, absent (the shim alone), and (full runs) exporting OTLP/HTTP to
    bench/sink_http instead of writing the file. docs/PERFORMANCE.md, "Why
    node paid more", says what the rows mean."""
    log(f"\n== 2d. node {A.node_version} http server (keep-alive, 58-byte body) under wrk -c{A.node_conns} "
        f"{A.seconds}s x {rounds()} rounds per mode ==")
    path = "/"
    exp = Exporter("node", cpu=SERVER_CPU)
    servers = {False: NodeServer("node-plain", plain_env()), True: NodeServer("node-traced", traced_env(exp.sock))}
    others = []
    pids = {t: servers[t].pid for t in servers}
    e0 = proc_cpu_s(exp.pid)
    try:
        res, spans, cpu = server_rounds("node", servers, path, A.seconds, A.node_conns, exp, pids)
        exp_cpu = proc_cpu_s(exp.pid) - e0
        time.sleep(0.5)
        out = report_server("node", res, spans, cpu, exp)
        out["exporter_cpu_us_per_span"] = exp_cpu * 1e6 / max(spans["exported"], 1)
        log(f"  exporter: {out['exporter_cpu_us_per_span']:.2f} us CPU per span (incl. idle time between rounds)")
        RESULTS["node"] = out
        if not A.quick:
            run(["taskset", "-a", "-p", "-c", LOAD_CPU, str(exp.pid)])
            log(f"  -- again with the exporter on core {LOAD_CPU} (wrk's):")
            res2, spans2, cpu2 = server_rounds("node", servers, path, A.seconds, A.node_conns, exp, pids)
            RESULTS["node_exporter_elsewhere"] = report_server("node (exporter on the other core)", res2, spans2, cpu2)
            run(["taskset", "-a", "-p", "-c", SERVER_CPU, str(exp.pid)])
        log("  -- again with a traced node whose exporter is absent (spans built, then dropped in the shim):")
        lonely = NodeServer("node-traced-noexporter", traced_env(os.path.join(A.work, "absent.sock")))
        others.append(lonely)
        res3, spans3, cpu3 = server_rounds("node", {False: servers[False], True: lonely}, path, A.seconds,
                                           A.node_conns, exp, {False: servers[False].pid, True: lonely.pid})
        RESULTS["node_no_exporter"] = report_server("node (no exporter)", res3, spans3, cpu3)
        if not A.quick:
            sink, sport = start_sink_http()
            try:
                oexp = Exporter("node-otlp", sink="otlp", endpoint=f"http://127.0.0.1:{sport}", cpu=SERVER_CPU)
                try:
                    onode = NodeServer("node-traced-otlp", traced_env(oexp.sock))
                    others.append(onode)
                    log(f"  -- again with an exporter sending OTLP/HTTP to bench/sink_http (exporter on core "
                        f"{SERVER_CPU}, the receiver on core {LOAD_CPU}):")
                    o0, s0 = proc_cpu_s(oexp.pid), proc_cpu_s(sink.pid)
                    res4, spans4, cpu4 = server_rounds("node", {False: servers[False], True: onode}, path,
                                                       A.seconds, A.node_conns, oexp,
                                                       {False: servers[False].pid, True: onode.pid})
                    ocpu, scpu = proc_cpu_s(oexp.pid) - o0, proc_cpu_s(sink.pid) - s0
                    r4 = report_server("node (OTLP exporter)", res4, spans4, cpu4)
                    r4["exporter_cpu_us_per_span"] = ocpu * 1e6 / max(spans4["exported"], 1)
                    r4["receiver_cpu_us_per_span"] = scpu * 1e6 / max(spans4["exported"], 1)
                    log(f"  OTLP exporter: {r4['exporter_cpu_us_per_span']:.2f} us CPU per span; the receiver "
                        f"(bench/sink_http, which only reads and discards): {r4['receiver_cpu_us_per_span']:.2f} us")
                    RESULTS["node_otlp"] = r4
                finally:
                    oexp.stop()
            finally:
                sink.send_signal(signal.SIGTERM)
                log(f"  sink_http: {sink.communicate(timeout=10)[0].strip()}")
    finally:
        for s in list(servers.values()) + others:
            s.stop()
        exp.stop()


def make_cert(d):
    """A self-signed P-256 certificate for 127.0.0.1, made now (nothing kept in the tree)."""
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
    return cert, key


def bench_https():
    """nginx with `listen ssl` under wrk https://: what a traced TLS server
    pays, every request a SERVER span made from the decrypted bytes (the TLS
    hooks, libssl's SSL_read/SSL_write). Without them (before 3646e36) the
    shim saw only the connection, and this row counted every span lost."""
    log(f"\n== 2e. nginx HTTPS (listen ssl, TLS keep-alive, {len(INDEX)} B static file) under wrk -c{A.conns} "
        f"{A.seconds}s x {rounds()} rounds per mode ==")
    cert, key = make_cert(os.path.join(A.work, "tls"))
    conf = nginx_tls_conf(cert, key)
    exp = Exporter("https", cpu=SERVER_CPU)
    servers = {False: Nginx("https-plain", plain_env(), conf), True: Nginx("https-traced", traced_env(exp.sock), conf)}
    others = []
    pids = {t: servers[t].worker for t in servers}
    try:
        res, spans, cpu = server_rounds("https", servers, "/index.html", A.seconds, A.conns, exp, pids,
                                        scheme="https")
        time.sleep(0.5)
        RESULTS["https"] = report_server("nginx https", res, spans, cpu, exp)
        if not A.quick:
            log("  -- again with a traced nginx whose exporter is absent:")
            lonely = Nginx("https-traced-noexporter", traced_env(os.path.join(A.work, "absent.sock")), conf)
            others.append(lonely)
            res2, spans2, cpu2 = server_rounds("https", {False: servers[False], True: lonely}, "/index.html",
                                               A.seconds, A.conns, exp,
                                               {False: servers[False].worker, True: lonely.worker}, scheme="https")
            RESULTS["https_no_exporter"] = report_server("nginx https (no exporter)", res2, spans2, cpu2)
    finally:
        for s in list(servers.values()) + others:
            s.stop()
        exp.stop()


def bench_client(exp, port):
    n = A.client_requests
    log(f"\n== 2c. traced HTTP client: {n} keep-alive GETs (C client, send/recv) to the untraced nginx ==")
    httpc = os.path.join(A.bin, "httpc")
    us = {False: [], True: []}
    cpu = {False: [], True: []}
    before = exp.settle()
    for i in range(rounds()):
        for traced in alternate(i):
            env = traced_env(exp.sock) if traced else plain_env()
            out = run(pin(LOAD_CPU, [httpc, str(port), str(n), "/index.html"]), env=env).split()
            us[traced].append(float(out[3]))
            cpu[traced].append(float(out[5]))
    after = exp.settle()
    u, t = median(us[False]), median(us[True])
    r = row("client", "us per request (wall)", u, t, f"+{t - u:.2f} us per request")
    cu, ct = median(cpu[False]), median(cpu[True])
    row("client", "client CPU us per request", cu, ct, f"+{ct - cu:.2f} us CPU per request")
    got = delta(before, after, "received_spans")
    want = rounds() * n
    log(f"  spans: {want} client requests traced -> {got} spans received "
        f"(expected {want} CLIENT + {rounds() * 3} connect/connection/process)")
    RESULTS["client"] = {"untraced_us": u, "traced_us": t, "ratio": r, "added_us": t - u,
                         "untraced_cpu_us": cu, "traced_cpu_us": ct, "added_cpu_us": ct - cu,
                         "spans_received": got, "requests": want}


# ---- 3. exporter throughput ---------------------------------------------------------------

def firehose(exp, procs, seconds, rate=0):
    """Runs the firehose against exp, waits for the exporter to drain, and
    returns sent/received/exported, loss, exporter CPU per span and RSS."""
    before = exp.settle()
    c0 = proc_cpu_s(exp.pid)
    argv = [os.path.join(A.bin, "firehose"), exp.sock, str(procs), str(seconds), str(rate or 0), A.fh_transport]
    p = subprocess.Popen(pin(LOAD_CPU, argv), stdout=subprocess.PIPE, text=True)
    rss_max = 0
    t0 = time.time()
    while p.poll() is None:
        rss_max = max(rss_max, proc_status(exp.pid, "VmRSS") or 0)
        time.sleep(0.1)
        if time.time() - t0 > seconds + 60:
            p.kill()
    out = p.communicate()[0].split()
    fh = dict(zip(out[::2], (float(x) for x in out[1::2])))
    drain0 = time.time()
    after = exp.settle(timeout=60)
    drain = time.time() - drain0
    cpu = proc_cpu_s(exp.pid) - c0
    sent = int(fh["sent_spans"])
    exported = delta(before, after, "exported_spans")
    r = {
        "procs": procs, "seconds": seconds, "rate_asked": rate,
        "sent": sent, "received": delta(before, after, "received_spans"), "exported": exported,
        "dropped_queue_full": delta(before, after, "dropped_queue_full"),
        "dropped_client": delta(before, after, "dropped_client"), "transport": A.fh_transport,
        "export_errors": delta(before, after, "export_errors"),
        "loss": 1 - exported / sent if sent else float("nan"),
        "sent_per_s": sent / fh["seconds"],
        "exported_per_s_wall": exported / (fh["seconds"] + drain),
        "cpu_s": cpu,
        "cpu_us_per_exported_span": cpu * 1e6 / exported if exported else float("nan"),
        "cpu_us_per_received_span": cpu * 1e6 / delta(before, after, "received_spans")
        if delta(before, after, "received_spans") else float("nan"),
        "exported_per_cpu_s": exported / cpu if cpu else float("nan"),
        "rss_max_kib": rss_max, "span_bytes": int(fh["span_bytes"]), "spans_per_frame": int(fh["spans_per_frame"]),
    }
    return r


def print_firehose(label, r):
    log(f"  {label:<26} sent {r['sent']:>9} ({r['sent_per_s']:>9.0f}/s)  exported {r['exported']:>9}  "
        f"loss {r['loss'] * 100:6.2f}%  CPU {r['cpu_us_per_exported_span']:6.2f} us/exported span "
        f"({r['cpu_us_per_received_span']:5.2f}/received) "
        f"= {r['exported_per_cpu_s']:>9.0f} spans/s/core  RSS max {r['rss_max_kib'] / 1024:6.1f} MiB")


def start_sink_http():
    """bench/sink_http, the OTLP/HTTP receiver that discards, on the load
    generator's core: (process, port). Stop it with SIGTERM; it prints its counts."""
    portfile = os.path.join(A.work, "sink_http.port")
    if os.path.exists(portfile):
        os.unlink(portfile)
    proc = subprocess.Popen(pin(LOAD_CPU, [os.path.join(A.bin, "sink_http"), portfile]),
                            stdout=subprocess.PIPE, text=True)
    end = time.time() + 5
    while not (os.path.exists(portfile) and open(portfile).read().strip()) and time.time() < end:
        time.sleep(0.05)
    return proc, int(open(portfile).read())


def bench_exporter():
    log(f"\n== 3. exporter throughput: span firehose ({A.fh_procs} processes, {A.fh_transport} transport; exporter pinned to core "
        f"{SERVER_CPU}, senders to core {LOAD_CPU}) ==")
    out = {}
    sink_proc = None
    try:
        sink_proc, sport = start_sink_http()
        for sink in ("file", "otlp"):
            log(f"  -- {sink} sink" + (f" (OTLP/HTTP protobuf to bench/sink_http on 127.0.0.1:{sport})"
                                       if sink == "otlp" else " (OTLP/JSON lines to a temp file)"))
            res = {"ladder": []}
            for rate in A.fh_rates:
                exp = Exporter(f"fh-{sink}-{rate}", sink=sink, endpoint=f"http://127.0.0.1:{sport}",
                               cpu=SERVER_CPU)
                try:
                    r = firehose(exp, A.fh_procs, A.fh_seconds, rate)
                finally:
                    exp.stop()
                print_firehose(f"{rate} spans/s offered" if rate else "full firehose", r)
                if rate:
                    res["ladder"].append(r)
                else:
                    res["full"] = r
            out[sink] = res
    finally:
        if sink_proc:
            sink_proc.send_signal(signal.SIGTERM)
            so = sink_proc.communicate(timeout=10)[0]
            out["sink_http"] = so.strip()
            log(f"  sink_http: {so.strip()}")
    RESULTS["exporter"] = out


def bench_exporter_metrics():
    """3b. The full firehose into the file sink, with the exporter's metrics
    off and on (OTEL_METRICS_EXPORTER=prometheus, nobody scraping): the
    exporter's CPU per received span, alternating rounds. The firehose's
    spans are SERVER spans with a parent, so each one also waits as a
    service-graph half until the pending bound gives it up: the dear case."""
    log(f"\n== 3b. exporter CPU per span with metrics on: full firehose, file sink, {rounds()} rounds ==")
    res = {False: [], True: []}
    for i in range(rounds()):
        for metrics in alternate(i):
            extra = ({"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
                      "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port())} if metrics else None)
            exp = Exporter(f"fh-metrics-{int(metrics)}-{i}", sink="file", cpu=SERVER_CPU, extra_env=extra)
            try:
                r = firehose(exp, A.fh_procs, A.fh_seconds, 0)
                if metrics:
                    st = exp.status()
                    r["metrics_series"] = st.get("metrics_series")
            finally:
                exp.stop()
            print_firehose("metrics " + ("on" if metrics else "off"), r)
            res[metrics].append(r)
    off = median([r["cpu_us_per_received_span"] for r in res[False]])
    on = median([r["cpu_us_per_received_span"] for r in res[True]])
    RESULTS["exporter_metrics"] = {"off": res[False], "on": res[True], "cpu_us_per_received_span_off": off,
                                   "cpu_us_per_received_span_on": on}
    row("exporter", "CPU us/span, metrics off -> on", off, on, f"+{on - off:.2f} us per received span (file sink)")


# ---- 4. short-lived processes --------------------------------------------------------------

def bench_processes():
    n = A.procs_n
    log(f"\n== 4. short-lived processes: {n} x /bin/true from a shell loop, {rounds()} rounds per mode ==")
    exp = Exporter("procs", cpu=SERVER_CPU)
    loop = f'i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done'
    argv = pin(LOAD_CPU, ["/bin/sh", "-c", loop])
    nosock = os.path.join(A.work, "no-exporter.sock")
    modes = {"plain": plain_env(), "traced": traced_env(exp.sock), "traced-no-exporter": traced_env(nosock)}
    times = {m: [] for m in modes}
    before = exp.settle()
    for i in range(rounds()):
        order = list(modes) if i % 2 == 0 else list(reversed(list(modes)))
        for m in order:
            # No timeout on the wait: with one, Popen polls waitpid with sleeps
            # that grow to 50 ms, which quantised this figure to 50 ms steps.
            t0 = time.perf_counter()
            p = subprocess.Popen(argv, env=modes[m])
            watchdog = threading.Timer(300, p.kill)
            watchdog.start()
            rc = p.wait()
            times[m].append(time.perf_counter() - t0)
            watchdog.cancel()
            if rc != 0:
                raise RuntimeError(f"{m} shell loop failed ({rc})")
            log(f"    round {i + 1} {m:<20} {times[m][-1] * 1e3 / n:7.3f} ms per process")
    after = exp.settle()
    u = median(times["plain"]) * 1e3 / n
    t = median(times["traced"]) * 1e3 / n
    t2 = median(times["traced-no-exporter"]) * 1e3 / n
    row("processes", "ms per /bin/true (exporter up)", u, t, f"+{t - u:.3f} ms per process")
    row("processes", "ms per /bin/true (no exporter)", u, t2, f"+{t2 - u:.3f} ms per process")
    got = delta(before, after, "received_spans")
    launcher = 1 if argv[0] == "taskset" else 0  # taskset is traced too, then execs the shell
    want = rounds() * (n + 1 + launcher)
    log(f"  spans: {got} process spans received, expected {want} ({n} x true + the shell"
        f"{' + taskset' if launcher else ''}, per round)")
    exp.stop()
    RESULTS["processes"] = {"untraced_ms": u, "traced_ms": t, "added_ms": t - u,
                            "traced_no_exporter_ms": t2, "added_no_exporter_ms": t2 - u,
                            "spans_received": got, "spans_expected": want}


# ---- 5. memory --------------------------------------------------------------------------------

def bench_memory(exp, port):
    log("\n== 5. memory: RSS of a traced process (C client, /proc/self/status after 300 ms) ==")
    httpc = os.path.join(A.bin, "httpc")
    out = {}
    for n in (0, 1, 1000):
        vals = {False: [], True: []}
        for i in range(3):
            for traced in alternate(i):
                env = traced_env(exp.sock) if traced else plain_env()
                o = run([httpc, "--rss", str(port), str(n), "/index.html"], env=env).split()
                vals[traced].append(dict(zip(o[::2], (int(x) for x in o[1::2]))))
        u = median([v["VmRSS"] for v in vals[False]])
        t = median([v["VmRSS"] for v in vals[True]])
        ua = median([v["RssAnon"] for v in vals[False]])
        ta = median([v["RssAnon"] for v in vals[True]])
        row("memory", f"VmRSS KiB after {n} requests", u, t, f"+{(t - u) / 1024:.2f} MiB (anon +{(ta - ua) / 1024:.2f} MiB)")
        out[str(n)] = {"untraced_kib": u, "traced_kib": t, "added_kib": t - u, "added_anon_kib": ta - ua,
                       "threads_traced": vals[True][0].get("Threads")}
    RESULTS["memory"] = out


# ---- the summary ---------------------------------------------------------------------------------

def targets():
    t = []
    c = RESULTS.get("calls")
    if c:
        worst = max(c[k]["ratio"] for k in ("devnull", "tcp", "file"))
        t.append(("untraced-path calls, traced/untraced", "<= 1.02", f"{worst:.3f} (worst of 3, after a span)",
                  worst <= 1.02))
        worst_hook = max(c[k + "_hook_only"]["ratio"] for k in ("devnull", "tcp", "file"))
        t.append(("  ... the hook alone, same process", "<= 1.02", f"{worst_hook:.3f}", worst_hook <= 1.02))
    n = RESULTS.get("nginx")
    if n:
        t.append(("nginx requests/s traced/untraced", ">= 0.97", f"{n['rps']['ratio']:.3f}", n["rps"]["ratio"] >= 0.97))
        t.append(("nginx p99 latency traced/untraced", "<= 1.05", f"{n['p99_us']['ratio']:.3f}",
                  n["p99_us"]["ratio"] <= 1.05))
        n2 = RESULTS.get("nginx_exporter_elsewhere")
        if n2:
            t.append(("  ... exporter on the other core: req/s", ">= 0.97", f"{n2['rps']['ratio']:.3f}",
                      n2["rps"]["ratio"] >= 0.97))
            t.append(("  ... exporter on the other core: p99", "<= 1.05", f"{n2['p99_us']['ratio']:.3f}",
                      n2["p99_us"]["ratio"] <= 1.05))
        n3 = RESULTS.get("nginx_no_exporter")
        if n3:
            t.append(("  ... no exporter (shim alone): req/s", ">= 0.97", f"{n3['rps']['ratio']:.3f}",
                      n3["rps"]["ratio"] >= 0.97))
            t.append(("  ... no exporter (shim alone): p99", "<= 1.05", f"{n3['p99_us']['ratio']:.3f}",
                      n3["p99_us"]["ratio"] <= 1.05))
        sp = n["spans"]
        if "loss_exported" in sp:  # counted in the trace file
            lost, how = sp["loss_exported"], "SERVER spans in the file"
        else:  # the file rotated: the exporter's counters (spans of all kinds vs requests)
            lost = (sp["dropped_client"] + sp["dropped_queue_full"]) / max(sp["requests"], 1)
            how = "dropped/requests"
        t.append(("nginx: every request a SERVER span (loss)", "~0", f"{lost * 100:.3f}% lost ({how})",
                  abs(lost) <= 0.001))
    e = RESULTS.get("exporter")
    if e and "file" in e:
        for sink in ("file", "otlp"):
            if sink not in e or "full" not in e[sink]:
                continue
            f = e[sink]["full"]
            t.append((f"exporter CPU per span ({sink}, full firehose)", "<= 2 us",
                      f"{f['cpu_us_per_exported_span']:.2f} us", f["cpu_us_per_exported_span"] <= 2))
            t.append((f"exporter loss at full firehose ({sink})", "<= 1%", f"{f['loss'] * 100:.1f}%",
                      f["loss"] <= 0.01))
    p = RESULTS.get("processes")
    if p:
        t.append(("per-process start+exit cost", "<= 0.5 ms", f"{p['added_ms']:.3f} ms", p["added_ms"] <= 0.5))
    m = RESULTS.get("memory")
    if m:
        worst = max(v["added_kib"] for v in m.values()) / 1024
        t.append(("RSS added to a traced process", "<= 2 MiB", f"{worst:.2f} MiB", worst <= 2))
    return t


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": os.uname().release,
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--exporter", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the exporters' output files")
    ap.add_argument("--only", default="calls,nginx,python,node,https,exporter,metrics,processes",
                    help="comma-separated: calls,nginx,python,node,https,exporter,metrics,processes")
    ap.add_argument("--exporter-sched", default="normal", choices=["normal", "batch", "idle"],
                    help="scheduling policy of the exporters the benchmark starts")
    ap.add_argument("--exporter-cpu", default="server", choices=["server", "any"],
                    help="where the exporters run: the server's core, or wherever the kernel puts them")
    ap.add_argument("--fh-transport", default="ring", choices=["ring", "socket"],
                    help="how the firehose hands spans over (ring: as the shim does by default)")
    A = ap.parse_args()
    A.nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    A.wrk = shutil.which("wrk")
    A.python = sys.executable
    A.node = shutil.which("node") or shutil.which("nodejs")
    q = A.quick
    A.rounds = 3 if q else 7
    A.seconds = 3 if q else 5
    A.py_seconds = 2 if q else 4
    A.conns = 32
    A.node_conns = 16
    A.calls_iter = 300000 if q else 1000000
    A.client_requests = 5000 if q else 20000
    A.procs_n = 100 if q else 300
    A.fh_procs = 4
    A.fh_seconds = 3 if q else 5
    A.fh_rates = [0, 50000] if q else [0, 25000, 50000, 100000, 200000]
    A.www = os.path.join(A.work, "www")
    os.makedirs(A.www, exist_ok=True)
    with open(os.path.join(A.www, "index.html"), "w") as f:
        f.write(INDEX)
    RESULTS["machine"] = machine()
    git = subprocess.run(["git", "-C", A.src, "log", "-1", "--format=%h %s"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", A.src, "status", "--short", "--", "shim", "hooks", "exporter"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split("\n")
    RESULTS["source"] = {"commit": git, "uncommitted_in_shim_hooks_exporter": [d for d in dirty if d]}
    with open("/proc/loadavg") as f:
        RESULTS["loadavg_at_start"] = f.read().split()[:3]
    log(f"source: {git}; {len(RESULTS['source']['uncommitted_in_shim_hooks_exporter'])} uncommitted files "
        f"in shim/ hooks/ exporter/; load average at start {RESULTS['loadavg_at_start']}")
    RESULTS["mode"] = "quick" if q else "full"
    log(f"machine: {RESULTS['machine']}; {'quick' if q else 'full'} run; work dir {A.work}")
    only = set(A.only.split(","))
    t_start = time.time()
    if "calls" in only:
        bench_calls()
    if "nginx" in only:
        bench_nginx()  # also 2c (client) and 5 (memory), which use its untraced nginx
    if "python" in only:
        bench_python()
    if "node" in only:
        if A.node:
            A.node_version = run([A.node, "--version"]).strip()
            bench_node()
        else:
            log("\n== 2d. node: skipped, no node on PATH ==")
    if "https" in only:
        bench_https()
    if "exporter" in only:
        bench_exporter()
    if "metrics" in only:
        bench_exporter_metrics()
    if "processes" in only:
        bench_processes()
    RESULTS["targets"] = [{"measure": a, "target": b, "result": c, "met": d} for a, b, c, d in targets()]
    RESULTS["rows"] = ROWS
    RESULTS["elapsed_s"] = round(time.time() - t_start, 1)
    log("\n== targets ==")
    for a, b, c, d in targets():
        log(f"  {a:<46} {b:<10} {c:<34} {'met' if d else 'NOT MET'}")
    path = os.path.join(A.work, "results.json")
    with open(path, "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)
    log(f"\nresults: {path} ({RESULTS['elapsed_s']} s)")


if __name__ == "__main__":
    main()
