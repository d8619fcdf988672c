#!/usr/bin/python3
"""Writes a large trace file for measuring the viewer (docs/PERFORMANCE.md).

    make_big_file.py OUT [--size 256M] [--template FILE]

The traces are copies of the ones in a real trace file (default:
six_traces.jsonl next to this script: traced curl against a traced python3
server, two fast, two slow, two answered 500, as the exporter wrote them),
each with fresh trace and span ids and moved 50 ms later than the one
before. 100 copies go on one line, one ResourceSpans per resource, as the
exporter batches them. Not a test: nothing here is timed."""

import argparse
import json
import random
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."


def size(text):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)


def template_traces(path):
    """[(trace: [(resource json, scope, span)])] from a real trace file."""
    traces = {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            for rs in json.loads(line).get("resourceSpans", []):
                res = json.dumps(rs.get("resource", {}), sort_keys=True)
                for ss in rs.get("scopeSpans", []):
                    for s in ss.get("spans", []):
                        traces.setdefault(s["traceId"], []).append((res, ss.get("scope", {}), s))
    return list(traces.values())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--size", default="256M", help="stop once the file is this big (default 256M)")
    p.add_argument("--template", default=HERE + "/six_traces.jsonl")
    p.add_argument("--per-line", type=int, default=100, help="trace copies per line")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    templates = template_traces(args.template)
    t_min = min(int(s["startTimeUnixNano"]) for t in templates for _, _, s in t)
    limit, written, copy = size(args.size), 0, 0
    with open(args.out, "w") as out:
        while written < limit:
            groups = {}
            for _ in range(args.per_line):
                trace = templates[copy % len(templates)]
                start = min(int(s["startTimeUnixNano"]) for _, _, s in trace)
                shift = t_min + copy * 50_000_000 - start
                tid = "%032x" % rng.getrandbits(128)
                ids = {}
                for res, scope, s in trace:
                    c = dict(s)
                    c["traceId"] = tid
                    c["spanId"] = ids.setdefault(s["spanId"], "%016x" % rng.getrandbits(64))
                    if "parentSpanId" in s:
                        c["parentSpanId"] = ids.setdefault(s["parentSpanId"], "%016x" % rng.getrandbits(64))
                    c["startTimeUnixNano"] = str(int(s["startTimeUnixNano"]) + shift)
                    c["endTimeUnixNano"] = str(int(s["endTimeUnixNano"]) + shift)
                    groups.setdefault(res, (scope, []))[1].append(c)
                copy += 1
            line = json.dumps({"resourceSpans": [{"resource": json.loads(res), "scopeSpans": [
                {"scope": scope, "spans": spans}]} for res, (scope, spans) in groups.items()]},
                separators=(",", ":")) + "\n"
            out.write(line)
            written += len(line.encode())
    sys.stderr.write("%s: %d bytes, %d traces\n" % (args.out, written, copy))


if __name__ == "__main__":
    main()
