#!/usr/bin/python3
"""Checks an exporter OTLP/JSON lines file and prints one line per span.

Every line must be a complete JSON object (ends in a newline, parses) shaped
like an OTLP ExportTraceServiceRequest as the OTLP/JSON rules say: hex ids of
the right length, 64-bit integers as decimal strings, enums as integers.
Output: "lines=N" then "span <name> <service.name> kind=<k> flags=<f>
parent=<yes|no>" sorted by name, so the C test compares one string.
Exit status 1 with a message on any violation.
"""
import json
import re
import sys

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
DIGITS = re.compile(r"^[0-9]+$")


def fail(msg):
    print("INVALID: " + msg)
    sys.exit(1)


def check_span(sp):
    if not HEX32.match(sp["traceId"]) or not HEX16.match(sp["spanId"]):
        fail("bad ids %r" % sp)
    if "parentSpanId" in sp and not HEX16.match(sp["parentSpanId"]):
        fail("bad parentSpanId %r" % sp)
    for k in ("startTimeUnixNano", "endTimeUnixNano"):
        if not isinstance(sp[k], str) or not DIGITS.match(sp[k]):
            fail("%s must be a decimal string: %r" % (k, sp[k]))
    if not isinstance(sp["kind"], int) or not isinstance(sp["flags"], int):
        fail("kind/flags must be integers: %r" % sp)
    for a in sp.get("attributes", []):
        v = a["value"]
        if "intValue" in v and not isinstance(v["intValue"], str):
            fail("intValue must be a string: %r" % a)


def main(path):
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        fail("last line is not complete")
    lines = data.split(b"\n")[:-1] if data else []
    out = []
    for line in lines:
        req = json.loads(line)
        for rs in req["resourceSpans"]:
            attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
            service = attrs["service.name"]["stringValue"]
            for ss in rs["scopeSpans"]:
                if ss["scope"]["name"] != "traceshim":
                    fail("scope %r" % ss["scope"])
                for sp in ss["spans"]:
                    check_span(sp)
                    out.append("span %s %s kind=%d flags=%d parent=%s" % (
                        sp["name"], service, sp["kind"], sp["flags"],
                        "yes" if "parentSpanId" in sp else "no"))
    print("lines=%d" % len(lines))
    for o in sorted(out):
        print(o)


if __name__ == "__main__":
    main(sys.argv[1])
