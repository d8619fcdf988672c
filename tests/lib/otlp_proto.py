"""Decode OTLP/HTTP protobuf bodies with the OFFICIAL opentelemetry-proto schema.

The project writes its own encoder from field numbers; checking it against its
own .proto would prove nothing. So the schema comes from the npm package
@opentelemetry/exporter-collector-proto@0.25.0, which ships the upstream .proto
files under build/protos/. It is fetched at test time (`npm pack`), its checksum
verified, compiled with Debian's protoc into tests/.cache/ (git-ignored, never
committed), and imported with Debian's python3-protobuf (/usr/bin/python3).

There is deliberately no fallback: if npm, protoc or python3-protobuf is
missing, ensure_schema() raises SchemaUnavailable and the test fails.

That schema is opentelemetry-proto 0.9 era: `instrumentation_library_spans`
(field 2 of ResourceSpans) where 1.x says `scope_spans`, the same wire format;
Span has no `flags` field yet (16, fixed32): it is read from the unknown fields.
"""

import contextlib
import fcntl
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import spans as spanlib

NPM_PACKAGE = "@opentelemetry/exporter-collector-proto@0.25.0"
# sha1 of the tarball the registry serves (npm's "shasum"); a different file is
# not the schema this check was written against.
NPM_TARBALL_SHA1 = "e70befb223f41de61ecd8287847635038a0daf5a"
PROTO_FILES = (
    "opentelemetry/proto/common/v1/common.proto",
    "opentelemetry/proto/resource/v1/resource.proto",
    "opentelemetry/proto/trace/v1/trace.proto",
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
)
SCHEMA_DIRNAME = "otlp-proto-0.25.0"
GENERATED = "opentelemetry/proto/collector/trace/v1/trace_service_pb2.py"

# The metrics schema (tests/metrics): that trace package predates OTLP
# metrics as they are now; @opentelemetry/otlp-grpc-exporter-base@0.38.0
# ships opentelemetry-proto 0.19's metrics .proto files under build/protos/.
METRICS_NPM_PACKAGE = "@opentelemetry/otlp-grpc-exporter-base@0.38.0"
METRICS_NPM_TARBALL_SHA1 = "b0ce7db44ee36ef9ff1cb298bd6087139e12877f"
METRICS_PROTO_FILES = (
    "opentelemetry/proto/common/v1/common.proto",
    "opentelemetry/proto/resource/v1/resource.proto",
    "opentelemetry/proto/metrics/v1/metrics.proto",
    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
)
METRICS_SCHEMA_DIRNAME = "otlp-proto-metrics-0.38.0"
METRICS_GENERATED = "opentelemetry/proto/collector/metrics/v1/metrics_service_pb2.py"


class SchemaUnavailable(RuntimeError):
    pass


def default_cache_dir():
    src = os.environ.get("TRACESHIM_SOURCEDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    return os.path.join(os.path.abspath(src), "tests", ".cache")


@contextlib.contextmanager
def _locked(path):
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # parallel tests fetch once
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(argv, cwd, what, timeout):
    try:
        r = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except FileNotFoundError:
        raise SchemaUnavailable("%s: %s not found" % (what, argv[0]))
    except subprocess.TimeoutExpired:
        raise SchemaUnavailable("%s: %s took longer than %d s" % (what, " ".join(argv), timeout))
    if r.returncode != 0:
        raise SchemaUnavailable("%s failed (exit %d): %s\n%s" % (what, r.returncode, " ".join(argv),
                                                                 r.stdout.decode(errors="replace")[-2000:]))
    return r.stdout.decode(errors="replace")


def _fetch_and_compile(target, package=NPM_PACKAGE, sha1=NPM_TARBALL_SHA1, proto_files=PROTO_FILES):
    npm = shutil.which("npm")
    if not npm:
        raise SchemaUnavailable(
            "npm is needed to fetch the official OTLP schema (%s) and is not installed; "
            "scripts/bootstrap.sh installs it" % package)
    protoc = shutil.which("protoc", path="/usr/bin:" + os.environ.get("PATH", ""))
    if not protoc:
        raise SchemaUnavailable("protoc (Debian package protobuf-compiler) is needed to compile the OTLP schema")
    parent = os.path.dirname(target)
    work = tempfile.mkdtemp(prefix=".fetch-", dir=parent)
    try:
        # --prefer-offline: a fresh clone on a machine that fetched it before
        # uses npm's own cache instead of the network.
        _run([npm, "pack", "--prefer-offline", "--silent", package], work,
             "fetching %s with npm" % package, timeout=90)
        tarballs = [f for f in os.listdir(work) if f.endswith(".tgz")]
        if len(tarballs) != 1:
            raise SchemaUnavailable("npm pack left %r in %s" % (tarballs, work))
        tgz = os.path.join(work, tarballs[0])
        with open(tgz, "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()
        if digest != sha1:
            raise SchemaUnavailable("%s has sha1 %s, expected %s" % (tarballs[0], digest, sha1))
        protos = os.path.join(work, "protos")
        with tarfile.open(tgz) as tar:
            for m in tar.getmembers():
                rel = m.name.split("package/build/protos/", 1)
                if len(rel) != 2 or not m.isfile() or ".." in rel[1].split("/") or not rel[1].endswith(".proto"):
                    continue
                dest = os.path.join(protos, rel[1])
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with tar.extractfile(m) as src, open(dest, "wb") as out:
                    out.write(src.read())
        missing = [p for p in proto_files if not os.path.isfile(os.path.join(protos, p))]
        if missing:
            raise SchemaUnavailable("%s lacks %s" % (package, missing))
        py = os.path.join(work, "py")
        os.makedirs(py)
        _run([protoc, "-I", protos, "--python_out=" + py] + list(proto_files), work,
             "compiling the OTLP schema with protoc", timeout=60)
        # Regular packages, so an unrelated `opentelemetry` package elsewhere
        # on sys.path cannot shadow these modules.
        for d, _, _ in os.walk(os.path.join(py, "opentelemetry")):
            open(os.path.join(d, "__init__.py"), "a").close()
        os.unlink(tgz)
        os.rename(work, target)
    finally:
        if os.path.isdir(work):
            shutil.rmtree(work, ignore_errors=True)


_modules = None


def ensure_schema(cache_dir=None):
    """Fetch + compile once (per cache), import, and return the trace_service_pb2 module."""
    global _modules
    if _modules is not None:
        return _modules
    cache_dir = cache_dir or default_cache_dir()
    os.makedirs(cache_dir, exist_ok=True)
    target = os.path.join(cache_dir, SCHEMA_DIRNAME)
    with _locked(os.path.join(cache_dir, ".otlp-proto.lock")):
        if not os.path.isfile(os.path.join(target, "py", GENERATED)):
            if os.path.isdir(target):
                shutil.rmtree(target)
            _fetch_and_compile(target)
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        raise SchemaUnavailable(
            "python3-protobuf is not importable by %s: run the integration tests with "
            "/usr/bin/python3 (Debian's python3-protobuf)" % sys.executable)
    py = os.path.join(target, "py")
    if py not in sys.path:
        sys.path.insert(0, py)
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    _modules = trace_service_pb2
    return _modules


_metrics_module = None


def ensure_metrics_schema(cache_dir=None):
    """ensure_schema for the metrics schema: returns metrics_service_pb2.
    Both schemas define the package opentelemetry.proto.common.v1, with
    different contents: a process imports one of them, not both."""
    global _metrics_module
    if _metrics_module is not None:
        return _metrics_module
    cache_dir = cache_dir or default_cache_dir()
    os.makedirs(cache_dir, exist_ok=True)
    target = os.path.join(cache_dir, METRICS_SCHEMA_DIRNAME)
    with _locked(os.path.join(cache_dir, ".otlp-proto.lock")):
        if not os.path.isfile(os.path.join(target, "py", METRICS_GENERATED)):
            if os.path.isdir(target):
                shutil.rmtree(target)
            _fetch_and_compile(target, METRICS_NPM_PACKAGE, METRICS_NPM_TARBALL_SHA1, METRICS_PROTO_FILES)
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        raise SchemaUnavailable("python3-protobuf is not importable by %s: use /usr/bin/python3" % sys.executable)
    py = os.path.join(target, "py")
    if py not in sys.path:
        sys.path.insert(0, py)
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    _metrics_module = metrics_service_pb2
    return _metrics_module


def schema_dir(cache_dir=None):
    return os.path.join(cache_dir or default_cache_dir(), SCHEMA_DIRNAME, "protos")


# ---- decoding ----------------------------------------------------------------

def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def unknown_field(msg, number):
    """Value of a scalar field this schema does not know (last one wins), by
    walking the re-serialised message, which keeps unknown fields."""
    buf, i, found = msg.SerializeToString(), 0, None
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wire == 5:
            value, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            return found  # groups: not in OTLP
        if field == number:
            found = value
    return found


def _any_value(v):
    which = v.WhichOneof("value")
    if which is None:
        return None
    x = getattr(v, which)
    if which == "array_value":
        return [_any_value(i) for i in x.values]
    if which == "kvlist_value":
        return _kv(x.values)
    if which == "bytes_value":
        return bytes(x)
    return x


def _kv(lst):
    return {kv.key: _any_value(kv.value) for kv in lst}


def _field(msg, *names):
    for n in names:
        if n in msg.DESCRIPTOR.fields_by_name:
            return getattr(msg, n)
    raise AttributeError("%s has none of %s" % (msg.DESCRIPTOR.full_name, names))


def decode_request(body, content_encoding=None):
    """Spans of an ExportTraceServiceRequest body, as spans.make_span dicts."""
    pb = ensure_schema()
    if content_encoding and content_encoding.lower() == "gzip":
        body = gzip.decompress(body)
    req = pb.ExportTraceServiceRequest()
    req.ParseFromString(body)
    out = []
    for rs in req.resource_spans:
        resource = _kv(rs.resource.attributes)
        for group in _field(rs, "scope_spans", "instrumentation_library_spans"):
            scope = _field(group, "scope", "instrumentation_library")
            for s in group.spans:
                flags = s.flags if "flags" in s.DESCRIPTOR.fields_by_name else unknown_field(s, 16)
                out.append(spanlib.make_span(
                    trace_id=bytes(s.trace_id).hex(),
                    span_id=bytes(s.span_id).hex(),
                    parent_span_id=bytes(s.parent_span_id).hex() if any(s.parent_span_id) else "",
                    name=s.name,
                    kind=int(s.kind),
                    start_ns=int(s.start_time_unix_nano),
                    end_ns=int(s.end_time_unix_nano),
                    attributes=_kv(s.attributes),
                    resource=resource,
                    status_code=int(s.status.code),
                    status_message=s.status.message,
                    trace_state=s.trace_state,
                    links=[{
                        "trace_id": bytes(link.trace_id).hex(),
                        "span_id": bytes(link.span_id).hex(),
                        "trace_state": link.trace_state,
                        "attributes": _kv(link.attributes),
                    } for link in s.links],
                    flags=flags,
                    scope_name=scope.name,
                    scope_version=scope.version,
                    source="otlp",
                ))
    return out


def partial_success_body(rejected_spans, error_message):
    """ExportTraceServiceResponse{partial_success{rejected_spans, error_message}},
    encoded by hand: the 0.25.0 schema predates partial_success (field 1;
    ExportTracePartialSuccess: rejected_spans = 1 int64, error_message = 2)."""
    def varint(n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)
    msg = error_message.encode()
    inner = b"\x08" + varint(rejected_spans) + b"\x12" + varint(len(msg)) + msg
    return b"\x0a" + varint(len(inner)) + inner
