"""Spans as plain dicts, the same shape whichever sink they came from.

The JSON-lines file sink (OTLP/JSON) is read here; OTLP/HTTP protobuf bodies are
decoded by otlp_proto.py into the same shape, so a test asserts identically on
both. One span:

    {
      "trace_id": "<32 hex>", "span_id": "<16 hex>", "parent_span_id": "<16 hex>" or "",
      "name": str, "kind": int, "start_ns": int, "end_ns": int,
      "attributes": {key: value},        # the span's own
      "resource": {key: value},          # its resource's
      "attrs": {key: value},             # both merged, the span's own winning
      "status_code": int, "status_message": str, "trace_state": str,
      "links": [{"trace_id", "span_id", "trace_state", "attributes"}],
      "flags": int or None,              # None when the sink cannot carry it
      "scope_name": str, "scope_version": str,
      "source": "file" | "otlp",
    }

Values: str, int (from intValue, a decimal string in OTLP/JSON), bool, float,
list (arrayValue), dict (kvlistValue), bytes (bytesValue).
"""

import base64
import re

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
DECIMAL = re.compile(r"^-?[0-9]+$")


class SinkError(AssertionError):
    """The sink holds something that breaks the file format contract."""


# ---- OTLP/JSON -> dicts ------------------------------------------------------

def json_any_value(v):
    if not isinstance(v, dict):
        raise SinkError("attribute value is not an object: %r" % (v,))
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [json_any_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return json_attributes((v["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in v:
        return base64.b64decode(v["bytesValue"])
    if not v:
        return None
    raise SinkError("unknown attribute value %r" % (v,))


def json_attributes(lst):
    return {kv["key"]: json_any_value(kv.get("value", {})) for kv in (lst or [])}


def _id(v):
    v = (v or "").lower()
    return "" if v.strip("0") == "" else v


def make_span(**kw):
    """Fills in the merged view and defaults (used by both decoders)."""
    span = {
        "trace_id": "", "span_id": "", "parent_span_id": "", "name": "", "kind": 0,
        "start_ns": 0, "end_ns": 0, "attributes": {}, "resource": {}, "status_code": 0,
        "status_message": "", "trace_state": "", "links": [], "flags": None,
        "scope_name": "", "scope_version": "", "source": "",
    }
    span.update(kw)
    merged = dict(span["resource"])
    merged.update(span["attributes"])
    span["attrs"] = merged
    return span


def spans_from_json_request(obj, source="file"):
    """The spans of one OTLP/JSON ExportTraceServiceRequest (a parsed line)."""
    out = []
    for rs in obj.get("resourceSpans", []):
        resource = json_attributes((rs.get("resource") or {}).get("attributes"))
        groups = rs.get("scopeSpans")
        if groups is None:
            groups = rs.get("instrumentationLibrarySpans", [])
        for group in groups:
            scope = group.get("scope") or group.get("instrumentationLibrary") or {}
            for s in group.get("spans", []):
                status = s.get("status") or {}
                out.append(make_span(
                    trace_id=_id(s.get("traceId")),
                    span_id=_id(s.get("spanId")),
                    parent_span_id=_id(s.get("parentSpanId")),
                    name=s.get("name", ""),
                    kind=int(s.get("kind", 0)),
                    start_ns=int(s.get("startTimeUnixNano", 0)),
                    end_ns=int(s.get("endTimeUnixNano", 0)),
                    attributes=json_attributes(s.get("attributes")),
                    resource=resource,
                    status_code=int(status.get("code", 0)),
                    status_message=status.get("message", ""),
                    trace_state=s.get("traceState", ""),
                    links=[{
                        "trace_id": _id(link.get("traceId")),
                        "span_id": _id(link.get("spanId")),
                        "trace_state": link.get("traceState", ""),
                        "attributes": json_attributes(link.get("attributes")),
                    } for link in s.get("links", [])],
                    flags=int(s["flags"]) if "flags" in s else None,
                    scope_name=scope.get("name", ""),
                    scope_version=scope.get("version", ""),
                    source=source,
                ))
    return out


def read_jsonl(path):
    """(spans, requests) of a JSON-lines file. A last line without its newline
    is still being written and is left for the next read; any other line that
    is not JSON breaks the contract and raises SinkError."""
    import json
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], []
    lines = data.split(b"\n")
    lines.pop()  # "" after the last newline, or an unfinished line
    spans, requests = [], []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as e:
            raise SinkError("%s line %d is not JSON (%s): %r" % (path, n, e, raw[:300]))
        if not isinstance(obj, dict):
            raise SinkError("%s line %d is not a JSON object: %r" % (path, n, raw[:300]))
        requests.append(obj)
        try:
            spans.extend(spans_from_json_request(obj))
        except (KeyError, TypeError, ValueError) as e:
            raise SinkError("%s line %d does not follow OTLP/JSON (%r): %r" % (path, n, e, raw[:300]))
    return spans, requests


# ---- the strict contract of a file-sink line ---------------------------------

SPAN_KEYS = {"traceId", "spanId", "traceState", "parentSpanId", "flags", "name", "kind",
             "startTimeUnixNano", "endTimeUnixNano", "attributes", "droppedAttributesCount",
             "events", "droppedEventsCount", "links", "droppedLinksCount", "status"}
VALUE_KEYS = {"stringValue", "boolValue", "intValue", "doubleValue", "arrayValue",
              "kvlistValue", "bytesValue"}


def _check_value(v, where, problems):
    if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in VALUE_KEYS:
        problems.append("%s: value must be one of %s: %r" % (where, sorted(VALUE_KEYS), v))
        return
    (k, x), = v.items()
    if k == "intValue" and not (isinstance(x, str) and DECIMAL.match(x)):
        problems.append("%s: intValue must be a decimal string: %r" % (where, x))
    if k == "stringValue" and not isinstance(x, str):
        problems.append("%s: stringValue must be a string: %r" % (where, x))
    if k == "boolValue" and not isinstance(x, bool):
        problems.append("%s: boolValue must be true/false: %r" % (where, x))
    if k == "arrayValue":
        for i, item in enumerate((x or {}).get("values", [])):
            _check_value(item, "%s[%d]" % (where, i), problems)


def _check_attributes(lst, where, problems):
    if not isinstance(lst, list):
        problems.append("%s: attributes must be a list" % where)
        return
    keys = [kv.get("key") for kv in lst if isinstance(kv, dict)]
    if len(keys) != len(lst) or not all(isinstance(k, str) and k for k in keys):
        problems.append("%s: every attribute needs a non-empty key: %r" % (where, lst))
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        problems.append("%s: duplicate attribute keys %s" % (where, dup))
    for kv in lst:
        if isinstance(kv, dict):
            _check_value(kv.get("value"), "%s.%s" % (where, kv.get("key")), problems)


def check_json_request(obj):
    """Problems (strings) with one file-sink line against the OTLP/JSON contract:
    camelCase names, lowercase hex ids, decimal-string 64-bit numbers, integer
    enums, parentSpanId absent for roots. Empty list = conforming."""
    problems = []
    rss = obj.get("resourceSpans")
    if not isinstance(rss, list) or not rss:
        return ["no resourceSpans list: %r" % (list(obj),)]
    for i, rs in enumerate(rss):
        where = "resourceSpans[%d]" % i
        _check_attributes((rs.get("resource") or {}).get("attributes", []), where + ".resource", problems)
        groups = rs.get("scopeSpans")
        if not isinstance(groups, list) or not groups:
            problems.append("%s: no scopeSpans list" % where)
            continue
        for j, group in enumerate(groups):
            gw = "%s.scopeSpans[%d]" % (where, j)
            scope = group.get("scope") or {}
            if scope.get("name") != "traceshim":
                problems.append("%s: scope.name %r, want 'traceshim'" % (gw, scope.get("name")))
            if not isinstance(scope.get("version"), str) or not scope.get("version"):
                problems.append("%s: scope.version missing" % gw)
            for k, s in enumerate(group.get("spans", [])):
                sw = "%s.spans[%d](%s)" % (gw, k, s.get("name"))
                extra = set(s) - SPAN_KEYS
                if extra:
                    problems.append("%s: unknown keys %s" % (sw, sorted(extra)))
                if not HEX32.match(s.get("traceId", "")) or not s["traceId"].strip("0"):
                    problems.append("%s: traceId must be 32 lowercase hex, not all zero: %r" % (sw, s.get("traceId")))
                if not HEX16.match(s.get("spanId", "")) or not s["spanId"].strip("0"):
                    problems.append("%s: spanId must be 16 lowercase hex, not all zero: %r" % (sw, s.get("spanId")))
                if "parentSpanId" in s and (not HEX16.match(str(s["parentSpanId"])) or not s["parentSpanId"].strip("0")):
                    problems.append("%s: parentSpanId must be 16 lowercase hex, or absent for a root: %r" % (sw, s["parentSpanId"]))
                if not isinstance(s.get("name"), str) or not s.get("name"):
                    problems.append("%s: name missing" % sw)
                if type(s.get("kind")) is not int or not 1 <= s["kind"] <= 5:
                    problems.append("%s: kind must be an integer 1..5: %r" % (sw, s.get("kind")))
                t0, t1 = s.get("startTimeUnixNano"), s.get("endTimeUnixNano")
                for name, t in (("startTimeUnixNano", t0), ("endTimeUnixNano", t1)):
                    if not (isinstance(t, str) and DECIMAL.match(t)):
                        problems.append("%s: %s must be a decimal string: %r" % (sw, name, t))
                if isinstance(t0, str) and isinstance(t1, str) and DECIMAL.match(t0) and DECIMAL.match(t1):
                    if int(t1) < int(t0):
                        problems.append("%s: ends before it starts" % sw)
                    if int(t0) < 10 ** 18:
                        problems.append("%s: start %s is not unix nanoseconds" % (sw, t0))
                _check_attributes(s.get("attributes", []), sw, problems)
                status = s.get("status", {})
                if status and type(status.get("code", 0)) is not int:
                    problems.append("%s: status.code must be an integer: %r" % (sw, status))
                if "flags" in s and type(s["flags"]) is not int:
                    problems.append("%s: flags must be an integer: %r" % (sw, s["flags"]))
    return problems


# ---- helpers over a list of spans --------------------------------------------

def attr(span, key, default=None):
    """A span attribute, else its resource's."""
    return span["attrs"].get(key, default)


def spans_by_name(spans, name):
    return [s for s in spans if s["name"] == name]


def by_id(spans):
    return {(s["trace_id"], s["span_id"]): s for s in spans}


def children_of(spans, parent):
    return [s for s in spans
            if s["trace_id"] == parent["trace_id"] and s["parent_span_id"] == parent["span_id"]]


def parent_of(spans, span):
    return by_id(spans).get((span["trace_id"], span["parent_span_id"]))


def trace_ids(spans):
    """Distinct trace ids, in order of first appearance."""
    return list(dict.fromkeys(s["trace_id"] for s in spans))


def roots(spans):
    return [s for s in spans if not s["parent_span_id"]]


def in_trace(spans, trace_id):
    return [s for s in spans if s["trace_id"] == trace_id]


def comparable(span):
    """What both sinks must agree on (drops the sink name, and flags when a sink
    cannot carry them)."""
    keep = dict(span)
    keep.pop("source", None)
    keep.pop("attrs", None)
    if keep.get("flags") is None:
        keep.pop("flags", None)
    return keep


def describe(spans, limit=40):
    """A short listing for assertion messages."""
    lines = []
    for s in spans[:limit]:
        lines.append("  %s %s parent=%s %s %r" % (s["trace_id"][:8], s["span_id"], s["parent_span_id"] or "-",
                                                  s["name"], {k: v for k, v in s["attributes"].items()}))
    if len(spans) > limit:
        lines.append("  ... %d more" % (len(spans) - limit))
    return "\n".join(lines) or "  (no spans)"
