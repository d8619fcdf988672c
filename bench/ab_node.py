#!/usr/bin/python3
"""ab_node.py — node and nginx under the same tracing configurations, in one run.

Made for issue 14's question (why did node seem to lose more than nginx?):
two figures taken in different runs, configurations and moments on a shared
machine cannot answer it. This starts, all at once and all pinned to the
server core (0), one server of each kind (node: bench/nodeserver.js; nginx:
the benchmark's nginx.conf) per mode:

  plain  untraced
  file   traced, exporter writing OTLP/JSON to a file (the default sink)
  fileX  the same with its own exporter on the load generator's core (1),
         whatever --exporter-cpu says: co-located vs not, in one run
  otlp   traced, exporter sending OTLP/HTTP to bench/sink_http (on core 1)
  noexp  traced, no exporter (spans built, then dropped in the shim)

and visits every server each round with wrk (-t1, core 1), in an order that
flips every round. It prints, per server: median req/s, p99, the server's
CPU per request (schedstat, driver.proc_cpu_s) and the exporters' CPU per
request, and the per-round ratio to the same round's untraced server of the
same kind (median and interquartile range: the noise, stated).

  bench/ab_node.py [--rounds 30] [--seconds 1] [--modes plain,file,noexp]
                   [--kinds nginx,node] [--exporter-cpu 0|1|any]

Build first (bench/run.sh builds build-bench/ and the bench programs; this
compiles sink_http itself if the otlp mode is asked for). Needs node, nginx,
wrk, taskset. Not part of the test command.
"""
import argparse
import os
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
from driver import INDEX, NGINX_CONF, free_port, parse_wrk, proc_cpu_s, wait_port  # noqa: E402


def clean_env(extra):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "TRACESHIM_SOCKET", "TRACESHIM_FILE", "OTEL_EXPORTER_OTLP_ENDPOINT",
              "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "TRACEPARENT", "TRACESTATE", "BAGGAGE"):
        env.pop(k, None)
    env.update(extra)
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", default=os.path.join(HERE, "..", "build-bench", "hooks", "libtraceshim.so"))
    ap.add_argument("--exporter", default=os.path.join(HERE, "..", "build-bench", "exporter", "traceshim-exporter"))
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=1)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--modes", default="plain,file,noexp", help="of plain,file,fileX,otlp,noexp (plain is always run)")
    ap.add_argument("--kinds", default="nginx,node")
    ap.add_argument("--exporter-cpu", default=SERVER_CPU, help="core for the exporters, or 'any'")
    A = ap.parse_args()
    lib, exporter = os.path.abspath(A.lib), os.path.abspath(A.exporter)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    modes = ["plain"] + [m for m in A.modes.split(",") if m and m != "plain"]
    kinds = A.kinds.split(",")
    work = tempfile.mkdtemp(prefix="traceshim-abnode.")
    os.makedirs(os.path.join(work, "www"))
    with open(os.path.join(work, "www", "index.html"), "w") as f:
        f.write(INDEX)
    print(f"work dir {work}; load average {open('/proc/loadavg').read().split()[:3]}", flush=True)

    procs, exporters, sink = [], {}, None

    def start_exporter(name, extra, cpu=A.exporter_cpu):
        sock = os.path.join(work, f"{name}.sock")
        pre = [] if cpu == "any" else ["taskset", "-c", cpu]
        log = open(os.path.join(work, f"{name}.log"), "w")
        p = subprocess.Popen(pre + [exporter], env=clean_env(dict(extra, TRACESHIM_SOCKET=sock)),
                             stdout=log, stderr=log)
        procs.append(p)
        exporters[name] = p
        return sock

    def wrk(port, path, seconds):
        out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{A.conns}", f"-d{seconds}s",
                              "--latency", f"http://127.0.0.1:{port}{path}"], stdout=subprocess.PIPE,
                             text=True, timeout=seconds + 60).stdout
        return parse_wrk(out)

    try:
        env_of = {"plain": {}}
        if "file" in modes:
            sock = start_exporter("file", {"TRACESHIM_FILE": os.path.join(work, "file.jsonl")})
            env_of["file"] = {"LD_PRELOAD": lib, "TRACESHIM_SOCKET": sock}
        if "fileX" in modes:
            sock = start_exporter("fileX", {"TRACESHIM_FILE": os.path.join(work, "fileX.jsonl")}, cpu=LOAD_CPU)
            env_of["fileX"] = {"LD_PRELOAD": lib, "TRACESHIM_SOCKET": sock}
        if "otlp" in modes:
            binary = os.path.join(work, "sink_http")
            subprocess.run(["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-o", binary,
                            os.path.join(HERE, "sink_http.c"), "-lpthread"], check=True)
            portfile = os.path.join(work, "sink.port")
            sink = subprocess.Popen(["taskset", "-c", LOAD_CPU, binary, portfile], stdout=subprocess.PIPE, text=True)
            end = time.time() + 5
            while not (os.path.exists(portfile) and open(portfile).read().strip()) and time.time() < end:
                time.sleep(0.05)
            sock = start_exporter("otlp", {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{int(open(portfile).read())}"})
            env_of["otlp"] = {"LD_PRELOAD": lib, "TRACESHIM_SOCKET": sock}
        if "noexp" in modes:
            env_of["noexp"] = {"LD_PRELOAD": lib, "TRACESHIM_SOCKET": os.path.join(work, "absent.sock")}
        time.sleep(0.7)

        servers = {}  # (kind, mode) -> (port, pid whose CPU counts, path)
        for kind in kinds:
            for m in modes:
                s = free_port()
                if kind == "node":
                    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, A.node, os.path.join(HERE, "nodeserver.js"),
                                          str(s)], env=clean_env(env_of[m]))
                    procs.append(p)
                    servers[(kind, m)] = (s, p.pid, "/")
                else:
                    d = os.path.join(work, f"nginx-{m}")
                    os.makedirs(d)
                    conf = os.path.join(d, "nginx.conf")
                    with open(conf, "w") as f:
                        f.write(NGINX_CONF.format(dir=d, port=s, root=os.path.join(work, "www"),
                                                  user="user root;" if os.geteuid() == 0 else ""))
                    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, nginx, "-p", d, "-c", conf],
                                         env=clean_env(env_of[m]))
                    procs.append(p)
                    wait_port(s)
                    servers[(kind, m)] = (s, worker_of(p.pid), "/index.html")
                wait_port(s)
        for k, (s, _, path) in servers.items():
            wrk(s, path, 1)  # warm-up
        res = {k: [] for k in servers}
        keys = list(servers)
        for r in range(A.rounds):
            for k in (keys if r % 2 == 0 else keys[::-1]):
                s, pid, path = servers[k]
                c0 = proc_cpu_s(pid)
                e0 = sum(proc_cpu_s(e.pid) for e in exporters.values())
                w = wrk(s, path, A.seconds)
                n = max(w["requests"], 1)
                res[k].append((w["rps"], w["p99_us"], (proc_cpu_s(pid) - c0) * 1e6 / n,
                               (sum(proc_cpu_s(e.pid) for e in exporters.values()) - e0) * 1e6 / n))
            print(f"  round {r + 1}/{A.rounds}", flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGQUIT if nginx in p.args else signal.SIGTERM)  # nginx: graceful
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if sink:
            sink.send_signal(signal.SIGTERM)
            print(f"sink_http: {sink.communicate(timeout=10)[0].strip()}")

    med = statistics.median
    print(f"\n{'server':<14} {'req/s':>8} {'p99 us':>8} {'CPU us/req':>10} {'exp us/req':>10}  "
          f"{'req/s ratio per round: median [IQR]':<36} CPU added")
    for k in servers:
        base = res[(k[0], "plain")]
        ratios = sorted(a[0] / b[0] for a, b in zip(res[k], base))
        q = len(ratios)
        cpu, base_cpu = med([x[2] for x in res[k]]), med([x[2] for x in base])
        print(f"{k[0] + ' ' + k[1]:<14} {med([x[0] for x in res[k]]):>8.0f} {med([x[1] for x in res[k]]):>8.0f} "
              f"{cpu:>10.2f} {med([x[3] for x in res[k]]):>10.2f}  "
              f"{med(ratios):.3f} [{ratios[q // 4]:.3f}..{ratios[(3 * q) // 4]:.3f}]{'':<15} {cpu - base_cpu:+.2f}")


def worker_of(master):
    for _ in range(100):
        out = subprocess.run(["pgrep", "-P", str(master)], stdout=subprocess.PIPE, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.05)
    raise RuntimeError("nginx worker did not start")


if __name__ == "__main__":
    main()
