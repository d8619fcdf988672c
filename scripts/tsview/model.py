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

import gc
import json
import os
import re
import stat
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
        av = v["arrayValue"]
        return [any_value(x) for x in _list(av.get("values") if isinstance(av, dict) else None)]
    if "kvlistValue" in v:
        kv = v["kvlistValue"]
        return attributes(kv.get("values") if isinstance(kv, dict) else None)
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def attributes(lst):
    out = {}
    if lst.__class__ is not list:
        return out
    for kv in lst:
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


def _list(v):
    return v if v.__class__ is list else ()


def _hex_id(v):
    v = str(v or "").lower()
    return "" if v.strip("0") == "" else v


def service_of(resource):
    s = resource.get("service.name")
    return fmt_value(s) if s is not None else "unknown_service"


class Span:
    __slots__ = ("trace_id", "span_id", "parent_id", "name", "kind", "start", "end", "_raw_attrs", "_attrs",
                 "resource", "status_code", "status_message", "children", "orphan", "order",
                 "events", "links", "trace_state", "scope", "service")

    def __init__(self, raw, resource, scope, order):
        tid = raw.get("traceId")
        self.trace_id = tid if tid.__class__ is str else _hex_id(tid)  # the index's key, as written
        self.span_id = str(raw.get("spanId", "") or "").lower()
        self.parent_id = _hex_id(raw.get("parentSpanId"))
        self.name = str(raw.get("name", "") or "") or "(unnamed)"
        self.kind = _int(raw.get("kind"), 0)
        self.start = _int(raw.get("startTimeUnixNano"), None)
        self.end = _int(raw.get("endTimeUnixNano"), None)
        self._raw_attrs = raw.get("attributes")
        self._attrs = None
        self.resource = resource
        self.service = service_of(resource)
        status = raw.get("status")
        if not isinstance(status, dict):
            status = {}
        self.status_code = _int(status.get("code"), 0)
        self.status_message = str(status.get("message", "") or "")
        self.trace_state = str(raw.get("traceState", "") or "")
        self.scope = scope
        self.events = []
        for e in _list(raw.get("events")):
            if isinstance(e, dict):
                self.events.append({"name": str(e.get("name", "") or ""),
                                    "time": _int(e.get("timeUnixNano"), None),
                                    "attrs": attributes(e.get("attributes"))})
        self.links = []
        for link in _list(raw.get("links")):
            if isinstance(link, dict):
                self.links.append({"trace_id": _hex_id(link.get("traceId")),
                                   "span_id": str(link.get("spanId", "") or "").lower(),
                                   "attrs": attributes(link.get("attributes"))})
        self.children = []
        self.orphan = False
        self.order = order

    def sort_key(self):
        return (self.start if self.start is not None else 1 << 64, self.order)

    @property
    def attrs(self):
        """All attributes, converted when first asked for (a waterfall row
        needs only a few: see some_attrs)."""
        if self._attrs is None:
            self._attrs = attributes(self._raw_attrs)
            self._raw_attrs = None
        return self._attrs

    def some_attrs(self, keys):
        """{key: value} of the attributes whose key is in the set `keys`."""
        if self._attrs is not None:
            return {k: v for k, v in self._attrs.items() if k in keys}
        out = {}
        if self._raw_attrs.__class__ is list:
            for kv in self._raw_attrs:
                if kv.__class__ is dict:
                    k = kv.get("key")
                    if k in keys:
                        out[str(k)] = any_value(kv.get("value"))
        return out

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
    __slots__ = ("trace_id", "start", "end", "count", "error_ids", "services", "lines", "span_ids",
                 "matched", "links", "root_name", "root_start", "number")

    def __init__(self, trace_id, number):
        self.trace_id = trace_id
        self.start = None
        self.end = None
        self.count = 0
        self.error_ids = set()  # span ids with status ERROR
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

    @property
    def errors(self):
        return len(self.error_ids)

    def merge(self, other):
        """Adds a later part of the same trace (another stretch of the file).
        Returns the span ids both had (sent twice), normally none."""
        dup = self.span_ids & other.span_ids
        self.span_ids |= other.span_ids
        self.count = len(self.span_ids)
        self.error_ids |= other.error_ids
        if other.start is not None and (self.start is None or other.start < self.start):
            self.start = other.start
        if other.end is not None and (self.end is None or other.end > self.end):
            self.end = other.end
        self.services |= other.services
        for ref in other.lines:
            if self.lines[-1:] != [ref]:
                self.lines.append(ref)
        self.matched |= other.matched
        self.links |= other.links
        if other.root_name is not None and (self.root_name is None or (
                other.root_start is not None and (self.root_start is None or other.root_start < self.root_start))):
            self.root_name, self.root_start = other.root_name, other.root_start
        return dup


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
        self.samples = []         # top: (TraceInfo, group number, duration ns, is error, span id)
        self.workers = 1          # processes that read the file


def open_sources(path, stdin=None):
    """[Source] for path: '<path>.1' (if present: the exporter rotates a full
    file there, docs/EXPORTER.md) then path. '-' is stdin; stdin, a pipe or
    anything else that is not a regular file (`show <(zcat old.jsonl.gz)`) is
    copied to an unnamed temporary file as it is read, so that the second pass
    can read it again by offset."""
    if path == "-":
        return [Source("stdin", _spooled(stdin if stdin is not None else sys.stdin.buffer))]
    sources = []
    for p in (path + ".1", path):
        try:
            f = open(p, "rb")
        except FileNotFoundError:
            if p == path:
                close_sources(sources)
                raise
            continue
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            with f:
                f = _spooled(f)
        sources.append(Source(p, f))
    return sources


def _spooled(stream):
    tmp = tempfile.TemporaryFile(prefix="traceshim-show-")
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        tmp.write(chunk)
    tmp.flush()
    tmp.seek(0)
    return tmp


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
    """(resource dict, scope name, raw span list) for each scope of a request.
    Anything of the wrong type is passed over, never trusted."""
    for rs in _list(request.get("resourceSpans")):
        if rs.__class__ is not dict:
            continue
        res = rs.get("resource")
        resource = attributes(res.get("attributes") if res.__class__ is dict else None)
        for group in _list(rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans")):
            if group.__class__ is not dict:
                continue
            scope = group.get("scope") or group.get("instrumentationLibrary")
            scope_name = str(scope.get("name", "") or "") if scope.__class__ is dict else ""
            spans = group.get("spans")
            if spans.__class__ is list:
                yield resource, scope_name, spans


PARALLEL_MIN_BYTES = 16 << 20  # below this, forking costs more than it saves
PARALLEL_MAX = 8
STRETCH_MIN = 1 << 20  # no stretch smaller than this


def index(sources, where=(), top=False, workers=None):
    """One pass over every line: the Index. `where` is a list of compiled
    expressions (selection.Where), tested against every span.

    A big file is cut at line boundaries into one stretch per CPU, each read
    by a forked child that sends its partial index back through a pipe
    (json.loads is most of the cost and holds the GIL, so threads would not
    help); the parts are merged in file order. Without fork, or if a child
    fails, the stretch is read here instead: same result, only slower.

    The per-span work is the viewer's hot loop (a 256 MiB file holds ~360k
    spans): dict lookups and integer compares only. The cyclic garbage
    collector is paused meanwhile: json.loads allocates millions of
    containers, and each collection would walk the whole growing index (it
    made the pass five times slower)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        tasks = _stretches(sources, _workers(workers))
        if len(tasks) <= 1:
            ix = Index()
            for task in tasks:
                _index_range(ix, sources, task, where, top)
            return ix
        return _index_parallel(sources, tasks, where, top)
    finally:
        if paused:
            gc.enable()


def _workers(asked):
    if asked is not None:
        return max(1, asked)
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, PARALLEL_MAX))


def _size(source):
    try:
        return os.fstat(source.f.fileno()).st_size
    except (OSError, ValueError):
        return 0


def _stretches(sources, workers):
    """[(source index, start, end)] covering every source, cut after a newline."""
    sizes = [_size(s) for s in sources]
    total = sum(sizes)
    if workers <= 1 or total < PARALLEL_MIN_BYTES:
        return [(si, 0, size) for si, size in enumerate(sizes) if size]
    step = max(total // workers, STRETCH_MIN)
    tasks = []
    for si, size in enumerate(sizes):
        fd = sources[si].f.fileno()
        start = 0
        while start < size:
            cut = _line_start_after(fd, start + step, size)
            tasks.append((si, start, cut))
            start = cut
    return tasks


def _line_start_after(fd, pos, size):
    """The offset just after the first newline at or after pos (or size)."""
    while pos < size:
        chunk = os.pread(fd, 1 << 20, pos)
        if not chunk:
            break
        i = chunk.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(chunk)
    return size


def _lines(fd, start, end):
    """(offset, line) for the lines in [start, end) of fd, read with pread
    (the file position is shared with forked readers; pread ignores it)."""
    pos, buf, buf_at = start, b"", start
    while pos < end:
        chunk = os.pread(fd, min(4 << 20, end - pos), pos)
        if not chunk:
            break
        pos += len(chunk)
        buf += chunk
        i = 0
        while True:
            j = buf.find(b"\n", i)
            if j < 0:
                break
            yield buf_at + i, buf[i:j + 1]
            i = j + 1
        buf, buf_at = buf[i:], buf_at + i
    if buf:
        yield buf_at, buf


def _index_parallel(sources, tasks, where, top):
    import pickle
    children = []
    for task in tasks:
        try:
            r, w = os.pipe()
            pid = os.fork()
        except OSError:
            children.append((None, None, task))
            continue
        if pid == 0:  # the child: index its stretch, send it, leave without cleanup
            status = 0
            try:
                os.close(r)
                part = Index()
                _index_range(part, sources, task, where, top)
                data = pickle.dumps(_portable(part), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(w, "wb") as out:
                    out.write(data)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(w)
        children.append((pid, r, task))
    ix = Index()
    ix.workers = len(tasks)
    for pid, r, task in children:
        part = None
        if pid is not None:
            with os.fdopen(r, "rb") as f:
                data = f.read()
            _, status = os.waitpid(pid, 0)
            if status == 0 and data:
                try:
                    part = pickle.loads(data)
                except Exception:
                    part = None
        if part is None:  # no fork, or the child failed: read it here
            part = Index()
            _index_range(part, sources, task, where, top)
            part = _portable(part)
        _merge(ix, part)
    return ix


def _portable(part):
    """What a child sends back: samples refer to traces by id, not object."""
    samples = [(t.trace_id, part.group_keys[g], dur, err, sid) for t, g, dur, err, sid in part.samples]
    return part.traces, part.bad_lines, samples


def _merge(ix, part):
    traces, bad, samples = part
    ix.bad_lines += bad
    dups = set()
    for tid, t in traces.items():
        have = ix.traces.get(tid)
        if have is None:
            t.number = len(ix.traces)
            ix.traces[tid] = t
        else:
            for sid in have.merge(t):
                dups.add((tid, sid))
    for tid, key, dur, err, sid in samples:
        if dups and (tid, sid) in dups:
            continue
        g = ix.groups.get(key)
        if g is None:
            g = ix.groups[key] = len(ix.group_keys)
            ix.group_keys.append(key)
        ix.samples.append((ix.traces[tid], g, dur, err, sid))


def _index_range(ix, sources, task, where, top):
    si, start, end = task
    traces = ix.traces
    all_bits = (1 << len(where)) - 1
    for offset, line in _lines(sources[si].f.fileno(), start, end):
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
                if raw.__class__ is not dict:
                    continue
                tid = raw.get("traceId")
                if tid.__class__ is not str:
                    tid = _hex_id(tid)
                t = traces.get(tid)
                if t is None:
                    t = traces[tid] = TraceInfo(tid, len(traces))
                ids = t.span_ids
                sid = raw.get("spanId")
                if sid.__class__ is not str:
                    sid = str(sid or "")
                if sid in ids:
                    continue  # sent twice (a retried batch): counted once
                ids.add(sid)
                lines = t.lines
                if not lines or lines[-1] is not ref:
                    lines.append(ref)
                t.count += 1
                try:
                    start_ns = int(raw["startTimeUnixNano"])
                    end_ns = int(raw["endTimeUnixNano"])
                except (KeyError, TypeError, ValueError):
                    start_ns = _int(raw.get("startTimeUnixNano"), None)
                    end_ns = _int(raw.get("endTimeUnixNano"), None)
                if start_ns is not None and (t.start is None or start_ns < t.start):
                    t.start = start_ns
                if end_ns is not None and (t.end is None or end_ns > t.end):
                    t.end = end_ns
                status = raw.get("status")
                error = False
                if status:
                    error = status.__class__ is dict and _int(status.get("code"), 0) == STATUS_ERROR
                    if error:
                        t.error_ids.add(sid)
                if service not in t.services:
                    t.services.add(service)
                parent = raw.get("parentSpanId")
                if not parent or parent.__class__ is not str or not parent.strip("0"):
                    if t.root_start is None or (start_ns is not None and start_ns < t.root_start):
                        t.root_name = str(raw.get("name", "") or "") or "(unnamed)"
                        t.root_start = start_ns if start_ns is not None else t.root_start
                links = raw.get("links")
                if links:
                    _index_links(t, tid, links)
                if all_bits and t.matched != all_bits:
                    fields = SpanFields(raw, resource, service, start_ns, end_ns, error)
                    for i, w in enumerate(where):
                        bit = 1 << i
                        if not t.matched & bit and w.matches(fields):
                            t.matched |= bit
                if top:
                    _index_sample(ix, t, raw, service, start_ns, end_ns, error, sid)


def _index_links(t, tid, links):
    if links.__class__ is not list:
        return
    for link in links:
        if link.__class__ is dict:
            lt = _hex_id(link.get("traceId"))
            if lt and lt != tid:
                t.links.add(lt)


def _index_sample(ix, t, raw, service, start, end, error, sid):
    kind = _int(raw.get("kind"), 0)
    key = (service, str(raw.get("name", "") or "") or "(unnamed)", KINDS.get(kind, "kind%d" % kind))
    g = ix.groups.get(key)
    if g is None:
        g = ix.groups[key] = len(ix.group_keys)
        ix.group_keys.append(key)
    dur = end - start if start is not None and end is not None and end >= start else None
    ix.samples.append((t, g, dur, error, sid))


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
            # Most spans are looked at for one or two keys: index the raw
            # list by key, convert only the value asked for.
            self._attrs = {}
            lst = self.raw.get("attributes")
            if lst.__class__ is list:
                for kv in lst:
                    if kv.__class__ is dict and "key" in kv:
                        self._attrs[str(kv["key"])] = kv.get("value")
        if key in self._attrs:
            return True, any_value(self._attrs[key])
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
                if not isinstance(raw, dict):
                    continue
                tid = raw.get("traceId")
                if (tid if tid.__class__ is str else _hex_id(tid)) not in wanted:
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

    for root in top + members:  # tops first; then whatever a cycle kept from them
        if id(root) in reached:
            continue
        if root not in top:
            root.orphan = True
            top.append(root)
        stack = [root]
        while stack:
            x = stack.pop()
            if id(x) in reached:
                continue
            reached.add(id(x))
            x.children = [c for c in x.children if id(c) not in reached]
            stack.extend(x.children)
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
