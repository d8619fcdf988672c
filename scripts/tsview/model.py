"""Reading the exporter's trace file: OTLP/JSON, one ExportTraceServiceRequest
per line (docs/EXPORTER.md).

A file can be hundreds of MiB (the file sink rotates at 256 MiB by default and
`show` reads `<file>.1` too), so it is read in two passes:

1. index(): every line is parsed once and each span leaves only a few numbers
   in a per-trace summary (TraceInfo: times, counts, errors, services, the
   lines it is on, what it links to, which --where expressions it satisfied),
   plus, for `top`, one (group, duration, error) triple.
2. load(): only the lines holding the traces that were selected are read again
   (by offset), and only their spans become Span objects with trees.

Memory is proportional to the number of traces and to what is shown, not to
the file. The files stay open between the passes, so a rotation in between
does not move the bytes away.
"""

import json
import os
import sys
import tempfile

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS_ERROR = 2


def _int(v, default):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def any_value(v):
    if not isinstance(v, dict):
        return None
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return _int(v["intValue"], v["intValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        try:
            return float(v["doubleValue"])
        except (TypeError, ValueError):
            return v["doubleValue"]
    if "arrayValue" in v:
        return [any_value(x) for x in ((v["arrayValue"] or {}).get("values") or [])]
    if "kvlistValue" in v:
        return attributes((v["kvlistValue"] or {}).get("values"))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def attributes(lst):
    out = {}
    for kv in lst or []:
        if isinstance(kv, dict) and "key" in kv:
            out[str(kv["key"])] = any_value(kv.get("value"))
    return out


def fmt_value(v):
    if isinstance(v, list):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join("%s=%s" % (k, fmt_value(x)) for k, x in v.items()) + "}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)


def _hex_id(v):
    v = str(v or "").lower()
    return "" if v.strip("0") == "" else v


def service_of(resource):
    s = resource.get("service.name")
    return fmt_value(s) if s is not None else "unknown_service"


class Span:
    __slots__ = ("trace_id", "span_id", "parent_id", "name", "kind", "start", "end", "attrs",
                 "resource", "status_code", "status_message", "children", "orphan", "order",
                 "events", "links", "trace_state", "scope", "service")

    def __init__(self, raw, resource, scope, order):
        self.trace_id = _hex_id(raw.get("traceId"))
        self.span_id = str(raw.get("spanId", "") or "").lower()
        self.parent_id = _hex_id(raw.get("parentSpanId"))
        self.name = str(raw.get("name", "") or "") or "(unnamed)"
        self.kind = _int(raw.get("kind"), 0)
        self.start = _int(raw.get("startTimeUnixNano"), None)
        self.end = _int(raw.get("endTimeUnixNano"), None)
        self.attrs = attributes(raw.get("attributes"))
        self.resource = resource
        self.service = service_of(resource)
        status = raw.get("status") or {}
        if not isinstance(status, dict):
            status = {}
        self.status_code = _int(status.get("code"), 0)
        self.status_message = str(status.get("message", "") or "")
        self.trace_state = str(raw.get("traceState", "") or "")
        self.scope = scope
        self.events = []
        for e in raw.get("events") or []:
            if isinstance(e, dict):
                self.events.append({"name": str(e.get("name", "") or ""),
                                    "time": _int(e.get("timeUnixNano"), None),
                                    "attrs": attributes(e.get("attributes"))})
        self.links = []
        for link in raw.get("links") or []:
            if isinstance(link, dict):
                self.links.append({"trace_id": _hex_id(link.get("traceId")),
                                   "span_id": str(link.get("spanId", "") or "").lower(),
                                   "attrs": attributes(link.get("attributes"))})
        self.children = []
        self.orphan = False
        self.order = order

    def sort_key(self):
        return (self.start if self.start is not None else 1 << 64, self.order)

    def process(self):
        return (self.resource.get("service.name"), self.resource.get("process.pid"))

    @property
    def duration(self):
        if self.start is None or self.end is None or self.end < self.start:
            return None
        return self.end - self.start

    @property
    def is_error(self):
        return self.status_code == STATUS_ERROR


class TraceInfo:
    """What the index keeps of one trace."""
    __slots__ = ("trace_id", "start", "end", "count", "errors", "services", "lines", "span_ids",
                 "matched", "links", "root_name", "root_start", "number")

    def __init__(self, trace_id, number):
        self.trace_id = trace_id
        self.start = None
        self.end = None
        self.count = 0
        self.errors = 0
        self.services = set()
        self.lines = []        # (source index, offset, length), in file order, no repeats
        self.span_ids = set()  # to show a span sent twice (a retried batch) once
        self.matched = 0       # bit i: some span satisfied --where expression i
        self.links = set()     # trace ids its spans link to
        self.root_name = None
        self.root_start = None
        self.number = number   # order of first appearance

    @property
    def duration(self):
        if self.start is None or self.end is None or self.end < self.start:
            return None
        return self.end - self.start


class Source:
    """One file being read, kept open between the passes."""

    def __init__(self, label, f):
        self.label = label
        self.f = f

    def read_at(self, offset, length):
        self.f.seek(offset)
        return self.f.read(length)


class Index:
    def __init__(self):
        self.traces = {}          # trace id -> TraceInfo
        self.bad_lines = 0
        self.groups = {}          # (service, name, kind) -> group number (top only)
        self.group_keys = []
        self.samples = []         # top: (TraceInfo, group number, duration ns, is error)


def open_sources(path, stdin=None):
    """[Source] for path: '<path>.1' (if present: the exporter rotates a full
    file there, docs/EXPORTER.md) then path; '-' is stdin, copied to an
    unnamed temporary file as it is read so the second pass can seek in it."""
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        tmp = tempfile.TemporaryFile(prefix="traceshim-show-")
        while True:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            tmp.write(chunk)
        tmp.seek(0)
        return [Source("stdin", tmp)]
    sources = []
    rotated = path + ".1"
    try:
        sources.append(Source(rotated, open(rotated, "rb")))
    except FileNotFoundError:
        pass
    sources.append(Source(path, open(path, "rb")))  # FileNotFoundError goes to the caller
    return sources


def close_sources(sources):
    for s in sources:
        try:
            s.f.close()
        except OSError:
            pass


def parse_line(line):
    """The request of one line, or None if it cannot be read."""
    try:
        request = json.loads(line)
    except UnicodeDecodeError:
        try:
            request = json.loads(line.decode("utf-8", errors="replace"))
        except ValueError:
            return None
    except ValueError:
        return None
    return request if isinstance(request, dict) else None


def _resource_groups(request):
    """(resource dict, scope name, raw span list) for each scope of a request."""
    for rs in request.get("resourceSpans") or []:
        if not isinstance(rs, dict):
            continue
        res = rs.get("resource") or {}
        resource = attributes(res.get("attributes") if isinstance(res, dict) else None)
        for group in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            if not isinstance(group, dict):
                continue
            scope = group.get("scope") or group.get("instrumentationLibrary") or {}
            scope_name = str(scope.get("name", "") or "") if isinstance(scope, dict) else ""
            spans = group.get("spans") or []
            if isinstance(spans, list):
                yield resource, scope_name, spans


def lines_of(source):
    """(offset, line bytes) of every line of a source, the last one even
    without its newline."""
    f = source.f
    f.seek(0)
    offset = 0
    for line in f:
        yield offset, line
        offset += len(line)


def index(sources, where=(), top=False):
    """One pass over every line: the Index. `where` is a list of compiled
    expressions (select.Where), tested against every span."""
    ix = Index()
    traces = ix.traces
    wants_attrs = bool(where)
    for si, source in enumerate(sources):
        for offset, line in lines_of(source):
            if not line.strip():
                continue
            request = parse_line(line)
            if request is None:
                # A last line without its newline is being written right now.
                if line.endswith(b"\n"):
                    ix.bad_lines += 1
                continue
            ref = (si, offset, len(line))
            for resource, _scope, raw_spans in _resource_groups(request):
                service = service_of(resource)
                for raw in raw_spans:
                    if not isinstance(raw, dict):
                        continue
                    _index_span(ix, traces, raw, resource, service, ref, where, wants_attrs, top)
    return ix


def _index_span(ix, traces, raw, resource, service, ref, where, wants_attrs, top):
    tid = _hex_id(raw.get("traceId"))
    sid = str(raw.get("spanId", "") or "").lower()
    t = traces.get(tid)
    if t is None:
        t = traces[tid] = TraceInfo(tid, len(traces))
    if sid in t.span_ids:
        return
    t.span_ids.add(sid)
    if not t.lines or t.lines[-1] != ref:
        t.lines.append(ref)
    t.count += 1
    start = _int(raw.get("startTimeUnixNano"), None)
    end = _int(raw.get("endTimeUnixNano"), None)
    if start is not None and (t.start is None or start < t.start):
        t.start = start
    if end is not None and (t.end is None or end > t.end):
        t.end = end
    status = raw.get("status")
    error = isinstance(status, dict) and _int(status.get("code"), 0) == STATUS_ERROR
    if error:
        t.errors += 1
    t.services.add(service)
    if not _hex_id(raw.get("parentSpanId")):
        if t.root_start is None or (start is not None and start < t.root_start):
            t.root_name = str(raw.get("name", "") or "") or "(unnamed)"
            t.root_start = start if start is not None else t.root_start
    links = raw.get("links")
    if links:
        for link in links:
            if isinstance(link, dict):
                lt = _hex_id(link.get("traceId"))
                if lt and lt != tid:
                    t.links.add(lt)
    if wants_attrs:
        all_bits = (1 << len(where)) - 1
        if t.matched != all_bits:
            fields = SpanFields(raw, resource, service, start, end, error)
            for i, w in enumerate(where):
                bit = 1 << i
                if not t.matched & bit and w.matches(fields):
                    t.matched |= bit
    if top:
        kind = _int(raw.get("kind"), 0)
        key = (service, str(raw.get("name", "") or "") or "(unnamed)", KINDS.get(kind, "kind%d" % kind))
        g = ix.groups.get(key)
        if g is None:
            g = ix.groups[key] = len(ix.group_keys)
            ix.group_keys.append(key)
        dur = end - start if start is not None and end is not None and end >= start else None
        ix.samples.append((t, g, dur, error))


class SpanFields:
    """What a --where expression can look at, for one raw span: its own
    attributes, then its resource's, then the pseudo-fields name, kind,
    status, service and duration (docs/VIEWER.md)."""
    __slots__ = ("raw", "resource", "service", "start", "end", "error", "_attrs")

    def __init__(self, raw, resource, service, start, end, error):
        self.raw, self.resource, self.service = raw, resource, service
        self.start, self.end, self.error = start, end, error
        self._attrs = None

    def lookup(self, key):
        """(found, value)."""
        if self._attrs is None:
            self._attrs = attributes(self.raw.get("attributes"))
        if key in self._attrs:
            return True, self._attrs[key]
        if key in self.resource:
            return True, self.resource[key]
        if key == "name":
            return True, str(self.raw.get("name", "") or "")
        if key == "kind":
            k = _int(self.raw.get("kind"), 0)
            return True, KINDS.get(k, "kind%d" % k)
        if key == "status":
            status = self.raw.get("status")
            code = _int(status.get("code"), 0) if isinstance(status, dict) else 0
            return True, {0: "unset", 1: "ok", 2: "error"}.get(code, str(code))
        if key == "service":
            return True, self.service
        if key == "duration":
            if self.start is None or self.end is None or self.end < self.start:
                return False, None
            return True, DurationValue(self.end - self.start)
        return False, None


class DurationValue(int):
    """A span's duration in ns, compared with a duration literal (`500ms`)."""


def load(sources, infos):
    """{trace_id: [top-level spans]} for the TraceInfos given, children
    linked and sorted. Reads only the lines those traces are on."""
    wanted = {t.trace_id for t in infos}
    refs = sorted({ref for t in infos for ref in t.lines})
    spans = {}
    seen = set()
    order = 0
    for si, offset, length in refs:
        request = parse_line(sources[si].read_at(offset, length))
        if request is None:
            continue
        for resource, scope, raw_spans in _resource_groups(request):
            for raw in raw_spans:
                if not isinstance(raw, dict) or _hex_id(raw.get("traceId")) not in wanted:
                    continue
                span = Span(raw, resource, scope, order)
                order += 1
                if (span.trace_id, span.span_id) in seen:
                    continue
                seen.add((span.trace_id, span.span_id))
                spans.setdefault(span.trace_id, []).append(span)
    return {tid: build_tree(members) for tid, members in spans.items()}


def build_tree(members):
    """The top-level spans of one trace, with children linked and sorted. A
    span whose parent is missing is on top, marked orphan; a parent cycle (a
    corrupt file) is cut where it closes."""
    by_id = {s.span_id: s for s in members}
    top = []
    for s in members:
        parent = by_id.get(s.parent_id) if s.parent_id else None
        if parent is not None and parent is not s:
            parent.children.append(s)
        else:
            s.orphan = bool(s.parent_id)
            top.append(s)
    reached = set()

    def mark(root):
        stack = [root]
        while stack:
            x = stack.pop()
            if id(x) in reached:
                continue
            reached.add(id(x))
            x.children = [c for c in x.children if id(c) not in reached]
            stack.extend(x.children)

    for s in top:
        mark(s)
    for s in members:
        if id(s) not in reached:
            s.orphan = True
            top.append(s)
            mark(s)
    for s in members:
        s.children.sort(key=Span.sort_key)
    top.sort(key=Span.sort_key)
    return top


def walk(top):
    """Every span of a tree, depth first."""
    stack = list(reversed(top))
    while stack:
        s = stack.pop()
        yield s
        stack.extend(reversed(s.children))


def default_file():
    """The exporter's default (shim/paths.h), for when the wrapper could not ask it."""
    env = lambda k: os.environ.get(k) or None  # noqa: E731 — empty means unset
    for key in ("TRACESHIM_SHOW_DEFAULT_FILE", "TRACESHIM_FILE"):
        if env(key):
            return env(key)
    if env("XDG_STATE_HOME"):
        return os.path.join(env("XDG_STATE_HOME"), "traceshim", "traces.jsonl")
    if env("HOME"):
        return os.path.join(env("HOME"), ".local", "state", "traceshim", "traces.jsonl")
    return "/tmp/traceshim-%d/traces.jsonl" % os.getuid()
