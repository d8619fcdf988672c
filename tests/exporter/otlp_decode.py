#!/usr/bin/python3
"""Decodes OTLP/HTTP bodies saved by otlp_receiver.py with the project's own
proto/ files (protoc --python_out + python3-protobuf), after checking each one
parses with `protoc --decode_raw`.

usage: otlp_decode.py PROTO_DIR BODY...

Prints "requests=N" and one line per span, sorted:
  span <name> service=<service.name> pid=<process.pid> kind=<k> flags=<hex>
       parent=<hex|-> status=<code>:<message> attrs=<k=v;...> links=<n>
(on one line). Exit 1 with a message if anything does not decode.
"""
import os
import subprocess
import sys
import tempfile

PROTOC = os.environ.get("TS_PROTOC", "protoc")


def compile_protos(proto_dir, out_dir):
    protos = sorted(f for f in os.listdir(proto_dir) if f.endswith(".proto"))
    subprocess.run([PROTOC, "--proto_path=" + proto_dir, "--python_out=" + out_dir] +
                   [os.path.join(proto_dir, p) for p in protos], check=True)
    sys.path.insert(0, out_dir)


def any_value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return "array:[%s]" % ",".join(any_value(x) for x in v.array_value.values)
    return "%s:%r" % (kind, getattr(v, kind)) if kind else "none"


def span_line(sp, service, pid):
    attrs = ";".join("%s=%s" % (a.key, any_value(a.value)) for a in sp.attributes)
    return ("span %s service=%s pid=%s kind=%d flags=%#x parent=%s status=%d:%s attrs=%s links=%d" % (
        sp.name, service, pid, sp.kind, sp.flags,
        sp.parent_span_id.hex() or "-", sp.status.code, sp.status.message, attrs, len(sp.links)))


def main():
    proto_dir, bodies = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory(prefix="tsexp-pb-") as tmp:
        compile_protos(proto_dir, tmp)
        import traceshim_otlp_pb2  # noqa: E402 (generated just now)
        lines = decode_all(traceshim_otlp_pb2, bodies)
    print("requests=%d" % len(bodies))
    for line in sorted(lines):
        print(line)


def decode_all(pb2, bodies):
    lines = []
    for path in bodies:
        with open(path, "rb") as f:
            data = f.read()
        raw = subprocess.run([PROTOC, "--decode_raw"], input=data, capture_output=True)
        if raw.returncode != 0:
            print("decode_raw failed on %s: %s" % (path, raw.stderr.decode()))
            sys.exit(1)
        req = pb2.ExportTraceServiceRequest()
        req.ParseFromString(data)
        for rs in req.resource_spans:
            attrs = {a.key: a.value for a in rs.resource.attributes}
            service = attrs["service.name"].string_value
            pid = attrs["process.pid"].int_value if "process.pid" in attrs else "-"
            for ss in rs.scope_spans:
                if ss.scope.name != "traceshim":
                    print("scope %r" % ss.scope.name)
                    sys.exit(1)
                for sp in ss.spans:
                    if len(sp.trace_id) != 16 or len(sp.span_id) != 8:
                        print("bad ids in %s" % sp.name)
                        sys.exit(1)
                    lines.append(span_line(sp, service, pid))
    return lines


if __name__ == "__main__":
    main()
