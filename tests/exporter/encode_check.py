#!/usr/bin/python3
"""Checks the exporter's two encodings of one batch against what its span
records held (test_encode.c writes the manifest), with independent decoders:
Python's json module for OTLP/JSON, python3-protobuf with the proto/ schema
for OTLP protobuf. Invalid UTF-8 must come out as Python's own decoder
repairs it (one U+FFFD per maximal ill-formed subsequence); protobuf strings
carry no NUL either (U+FFFD). The protobuf bytes must also be canonical:
re-serialised, they are the same bytes.

usage: encode_check.py PROTO_DIR MANIFEST BODY_JSON BODY_PB
Prints "ok", or what differs (exit 1).
"""
import json
import math
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from otlp_decode import compile_protos  # noqa: E402

ATTR_STR, ATTR_INT, ATTR_BOOL, ATTR_DOUBLE, ATTR_STRARRAY = 1, 2, 3, 4, 5


def text(h):
    return bytes.fromhex(h).decode("utf-8", "replace")


def pb_text(h):
    return text(h).replace("\0", "\ufffd")


def double(h):
    return struct.unpack("=d", bytes.fromhex(h))[0]


def span_flags(f):
    return (f & 1) | 0x100 | (0x200 if f & 2 else 0)


def fail(what, got, want):
    print("%s:\n  got  %r\n  want %r" % (what, got, want))
    sys.exit(1)


def same(what, got, want):
    if got != want:
        fail(what, got, want)


def groups_of(manifest):
    """Spans grouped by resource, groups in order of first appearance."""
    order, groups = [], {}
    for sp in manifest["spans"]:
        if sp["res"] not in groups:
            order.append(sp["res"])
            groups[sp["res"]] = []
        groups[sp["res"]].append(sp)
    return [(r, groups[r]) for r in order]


# ---- OTLP/JSON -------------------------------------------------------------------------------

def json_value(typ, v):
    if typ == ATTR_STR:
        return {"stringValue": text(v)}
    if typ == ATTR_INT:
        return {"intValue": v}
    if typ == ATTR_BOOL:
        return {"boolValue": bool(v)}
    if typ == ATTR_DOUBLE:
        d = double(v)
        if math.isnan(d):
            return {"doubleValue": "NaN"}
        if math.isinf(d):
            return {"doubleValue": "Infinity" if d > 0 else "-Infinity"}
        return {"doubleValue": d}
    return {"arrayValue": {"values": [{"stringValue": text(i)} for i in v]}}


def json_attrs(attrs):
    return [{"key": text(k), "value": json_value(t, v)} for k, t, v in attrs]


def json_span(sp):
    want = {"traceId": sp["trace_id"], "spanId": sp["span_id"], "flags": span_flags(sp["flags"]),
            "name": text(sp["name"]), "kind": sp["kind"],
            "startTimeUnixNano": sp["start"], "endTimeUnixNano": sp["end"]}
    if sp["trace_state"]:
        want["traceState"] = text(sp["trace_state"])
    if sp["parent"] != "0" * 16:
        want["parentSpanId"] = sp["parent"]
    if sp["attrs"]:
        want["attributes"] = json_attrs(sp["attrs"])
    if sp["links"]:
        links = []
        for ln in sp["links"]:
            link = {"traceId": ln["trace_id"], "spanId": ln["span_id"], "flags": ln["flags"] & 1}
            if ln["attrs"]:
                link["attributes"] = json_attrs(ln["attrs"])
            links.append(link)
        want["links"] = links
    if sp["status"] or sp["message"]:
        want["status"] = {"code": sp["status"]}
        if sp["message"]:
            want["status"]["message"] = text(sp["message"])
    return want


def check_json(manifest, body):
    req = json.loads(body)
    groups = groups_of(manifest)
    same("resourceSpans", len(req["resourceSpans"]), len(groups))
    for rs, (res, spans) in zip(req["resourceSpans"], groups):
        same("resource %d" % res, rs["resource"], {"attributes": json_attrs(manifest["resources"][res]["attrs"])})
        ss, = rs["scopeSpans"]
        same("scope name", ss["scope"]["name"], "traceshim")
        same("scope keys", sorted(ss["scope"]), ["name", "version"])
        same("spans of resource %d" % res, len(ss["spans"]), len(spans))
        for i, (got, sp) in enumerate(zip(ss["spans"], spans)):
            same("JSON span %d of resource %d" % (i, res), got, json_span(sp))


# ---- OTLP protobuf ---------------------------------------------------------------------------

def pb_value(v, typ, want, what):
    kind = v.WhichOneof("value")
    if typ == ATTR_STR:
        same(what, (kind, v.string_value), ("string_value", pb_text(want)))
    elif typ == ATTR_INT:
        same(what, (kind, v.int_value), ("int_value", int(want)))
    elif typ == ATTR_BOOL:
        same(what, (kind, v.bool_value), ("bool_value", bool(want)))
    elif typ == ATTR_DOUBLE:
        d = double(want)
        same(what, kind, "double_value")
        if not (math.isnan(d) and math.isnan(v.double_value)):
            same(what, struct.pack("=d", v.double_value), struct.pack("=d", d))
    else:
        same(what, kind, "array_value")
        same(what, [(x.WhichOneof("value"), x.string_value) for x in v.array_value.values],
             [("string_value", pb_text(i)) for i in want])


def pb_attrs(got, want, what):
    same(what + " count", len(got), len(want))
    for i, (a, (k, t, v)) in enumerate(zip(got, want)):
        same("%s %d key" % (what, i), a.key, pb_text(k))
        pb_value(a.value, t, v, "%s %d (%s) value" % (what, i, a.key))


def pb_span(got, sp, what):
    same(what + " ids", (got.trace_id.hex(), got.span_id.hex()), (sp["trace_id"], sp["span_id"]))
    same(what + " parent", got.parent_span_id.hex(), "" if sp["parent"] == "0" * 16 else sp["parent"])
    same(what + " trace_state", got.trace_state, pb_text(sp["trace_state"]))
    same(what + " name", got.name, pb_text(sp["name"]))
    same(what + " kind", got.kind, sp["kind"])
    same(what + " times", (got.start_time_unix_nano, got.end_time_unix_nano), (int(sp["start"]), int(sp["end"])))
    same(what + " flags", got.flags, span_flags(sp["flags"]))
    pb_attrs(got.attributes, sp["attrs"], what + " attribute")
    same(what + " links", len(got.links), len(sp["links"]))
    for i, (gl, ln) in enumerate(zip(got.links, sp["links"])):
        same("%s link %d" % (what, i), (gl.trace_id.hex(), gl.span_id.hex(), gl.flags, gl.trace_state),
             (ln["trace_id"], ln["span_id"], ln["flags"] & 1, ""))
        pb_attrs(gl.attributes, ln["attrs"], "%s link %d attribute" % (what, i))
    has_status = bool(sp["status"] or sp["message"])
    same(what + " has status", got.HasField("status"), has_status)
    same(what + " status", (got.status.code, got.status.message), (sp["status"], pb_text(sp["message"])))
    same(what + " unused fields", (got.dropped_attributes_count, len(got.events), got.dropped_events_count,
                                   got.dropped_links_count), (0, 0, 0, 0))


def check_pb(pb2, manifest, body):
    req = pb2.ExportTraceServiceRequest()
    req.ParseFromString(body)
    groups = groups_of(manifest)
    same("resource_spans", len(req.resource_spans), len(groups))
    for rs, (res, spans) in zip(req.resource_spans, groups):
        pb_attrs(rs.resource.attributes, manifest["resources"][res]["attrs"], "resource %d attribute" % res)
        same("scope_spans", len(rs.scope_spans), 1)
        ss = rs.scope_spans[0]
        same("scope name", ss.scope.name, "traceshim")
        same("spans of resource %d" % res, len(ss.spans), len(spans))
        for i, (got, sp) in enumerate(zip(ss.spans, spans)):
            pb_span(got, sp, "protobuf span %d of resource %d" % (i, res))
    again = req.SerializeToString()
    if again != body:
        at = next((i for i, (a, b) in enumerate(zip(again, body)) if a != b), min(len(again), len(body)))
        fail("protobuf bytes not canonical (first difference at byte %d)" % at, len(body), len(again))


def main():
    proto_dir, manifest_path, json_path, pb_path = sys.argv[1:5]
    with open(manifest_path) as f:
        manifest = json.load(f)
    with open(json_path, "rb") as f:
        check_json(manifest, f.read())
    with tempfile.TemporaryDirectory(prefix="tsexp-enc-") as tmp:
        compile_protos(proto_dir, tmp)
        import traceshim_otlp_pb2  # noqa: E402 (generated just now)
        with open(pb_path, "rb") as f:
            check_pb(traceshim_otlp_pb2, manifest, f.read())
    print("ok")


if __name__ == "__main__":
    main()
