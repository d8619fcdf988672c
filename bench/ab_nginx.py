#!/usr/bin/python3
"""ab_nginx.py — two traceshim variants against each other, in one run.

Run-to-run noise on a small shared machine is as large as most changes worth
making (±3-4 % in nginx's req/s), so comparing two full bench/run.sh runs says
little. This starts three nginx servers at once, all pinned to the server core
(0): one untraced, one traced with variant A, one with variant B, each variant
with an exporter of its own (pinned to --exporter-cpu; started with its own
command prefix and environment, so the exporter can be varied too), and
drives them with wrk in alternating order, round after round. It prints the
medians: req/s, p99 and their ratios to the untraced server, the worker's CPU
per request (schedstat, driver.proc_cpu_s), the exporter's CPU per request, and the spans the
shim dropped (dropped_client) — a variant that loses spans is not faster.

  bench/ab_nginx.py --lib-a OLD.so --lib-b NEW.so [--rounds 9]
  bench/ab_nginx.py --lib-a L.so --lib-b L.so --exporter-b-prefix "nice -n 10"

Needs nginx, wrk, taskset; a quiet machine. Not part of the test command.
"""
import argparse
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_CPU, LOAD_CPU = "0", "1"
sys.path.insert(0, HERE)
# The benchmark's page, nginx.conf, wrk parsing and CPU accounting (importing runs nothing).
from driver import INDEX, NGINX_CONF, parse_wrk, proc_cpu_s  # noqa: E402


def nginx_conf(work, name, port):
    """The benchmark's own configuration (driver.py: sendfile, tcp_nopush, ...)."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(NGINX_CONF.format(dir=d, port=port, root=os.path.join(work, "www"),
                                  user="user root;" if os.geteuid() == 0 else ""))
    return path


def worker_of(master):
    for _ in range(100):
        out = subprocess.run(["pgrep", "-P", str(master)], stdout=subprocess.PIPE, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.05)
    raise RuntimeError("nginx worker did not start")


def status(exporter, sock):
    out = subprocess.run([exporter, "--status"], env=dict(os.environ, TRACESHIM_SOCKET=sock),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    return {k: int(v) for k, _, v in (ln.partition("=") for ln in out.splitlines()) if v.isdigit()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib-a", required=True)
    ap.add_argument("--lib-b", required=True)
    ap.add_argument("--exporter", default=os.path.join(HERE, "..", "build-bench", "exporter", "traceshim-exporter"))
    ap.add_argument("--exporter-a-prefix", default="", help="command prefix for A's exporter, e.g. 'nice -n 10'")
    ap.add_argument("--exporter-b-prefix", default="")
    ap.add_argument("--exporter-cpu", default=SERVER_CPU, help="core for the exporters (default: nginx's)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=32)
    A = ap.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    work = tempfile.mkdtemp(prefix="traceshim-ab.")
    os.makedirs(os.path.join(work, "www"))
    with open(os.path.join(work, "www", "index.html"), "w") as f:
        f.write(INDEX)
    procs, servers = [], {}
    try:
        for name, port, lib, prefix in (("untraced", 18180, None, None), ("A", 18181, A.lib_a, A.exporter_a_prefix),
                                        ("B", 18182, A.lib_b, A.exporter_b_prefix)):
            env = dict(os.environ)
            sock = exp = None
            if lib:
                sock = os.path.join(work, f"{name}.sock")
                xenv = dict(env, TRACESHIM_SOCKET=sock, TRACESHIM_FILE=os.path.join(work, f"{name}.jsonl"))
                argv = shlex.split(prefix) + ["taskset", "-c", A.exporter_cpu, A.exporter]
                exp = subprocess.Popen(argv, env=xenv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
                procs.append(exp)
                for _ in range(100):
                    if os.path.exists(sock):
                        break
                    time.sleep(0.05)
                env.update(LD_PRELOAD=os.path.abspath(lib), TRACESHIM_SOCKET=sock)
            conf = nginx_conf(work, name, port)
            m = subprocess.Popen(["taskset", "-c", SERVER_CPU, nginx, "-p", os.path.dirname(conf), "-c", conf], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(m)
            servers[name] = {"port": port, "worker": worker_of(m.pid), "exp": exp, "sock": sock, "res": [],
                             "dropped": 0}
        time.sleep(1)
        for s in servers.values():  # one request each: HELLO, ring, lazy setup
            subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{s['port']}/index.html"])
        time.sleep(1.2)
        names = list(servers)
        for i in range(A.rounds):
            for name in names[i % 3:] + names[:i % 3]:
                s = servers[name]
                d0 = status(A.exporter, s["sock"]).get("dropped_client", 0) if s["sock"] else 0
                c0 = proc_cpu_s(s["worker"])
                e0 = proc_cpu_s(s["exp"].pid) if s["exp"] else 0
                out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{A.conns}", f"-d{A.seconds}s",
                                      "--latency", f"http://127.0.0.1:{s['port']}/index.html"],
                                     stdout=subprocess.PIPE, text=True).stdout
                w = parse_wrk(out)
                n, rps, p99 = w["requests"], w["rps"], w["p99_us"]
                cpu = (proc_cpu_s(s["worker"]) - c0) * 1e6 / n
                ecpu = ((proc_cpu_s(s["exp"].pid) - e0) * 1e6 / n) if s["exp"] else 0.0
                time.sleep(0.5)
                if s["sock"]:
                    s["dropped"] += status(A.exporter, s["sock"]).get("dropped_client", 0) - d0
                s["res"].append((rps, p99, cpu, ecpu))
                print(f"  round {i + 1} {name:>8}: {rps:9.0f} req/s  p99 {p99:7.0f} us", flush=True)
        base = servers["untraced"]
        med = lambda s, k: statistics.median(r[k] for r in s["res"])  # noqa: E731
        print(f"medians of {A.rounds} rounds (exporters on core {A.exporter_cpu}):")
        for name, s in servers.items():
            print(f"  {name:>8}: {med(s, 0):9.0f} req/s ratio {med(s, 0) / med(base, 0):.3f}  "
                  f"p99 {med(s, 1):6.0f} us ratio {med(s, 1) / med(base, 1):.2f}  "
                  f"worker {med(s, 2):.2f} us/req (+{med(s, 2) - med(base, 2):.2f})  "
                  f"exporter {med(s, 3):.2f} us/req  spans dropped {s['dropped']}")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
