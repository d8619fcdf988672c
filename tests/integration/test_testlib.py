#!/usr/bin/python3
"""The test library itself (tests/lib): the OTLP receiver's scripted behaviours,
decoding with the official schema, and the JSON-lines reader and contract check.
Needs neither the shim nor the exporter, so a broken fixture shows up as such."""

import gzip
import http.client
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import otlp_proto  # noqa: E402
import otlp_receiver as rx  # noqa: E402
import spans as spanlib  # noqa: E402
import tstest  # noqa: E402

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
ROOT = bytes.fromhex("00f067aa0ba902b7")
CHILD = bytes.fromhex("b7ad6b7169203331")


def build_request(pb):
    """An ExportTraceServiceRequest built with the official generated classes."""
    req = pb.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "curl"
    kv = rs.resource.attributes.add()
    kv.key, kv.value.int_value = "process.pid", 4242
    groups = rs.scope_spans if "scope_spans" in rs.DESCRIPTOR.fields_by_name else rs.instrumentation_library_spans
    g = groups.add()
    scope = g.scope if "scope" in g.DESCRIPTOR.fields_by_name else g.instrumentation_library
    scope.name, scope.version = "traceshim", "0.1.0"
    root = g.spans.add()
    root.trace_id, root.span_id, root.name, root.kind = TRACE, ROOT, "curl", 1
    root.start_time_unix_nano, root.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_012_000_000
    child = g.spans.add()
    child.trace_id, child.span_id, child.parent_span_id = TRACE, CHILD, ROOT
    child.name, child.kind = "connect", 1
    child.start_time_unix_nano, child.end_time_unix_nano = 1_700_000_000_001_000_000, 1_700_000_000_002_000_000
    a = child.attributes.add()
    a.key, a.value.int_value = "network.peer.port", 8080
    a = child.attributes.add()
    a.key = "process.command_args"
    for x in ("curl", "-s"):
        a.value.array_value.values.add().string_value = x
    child.status.code, child.status.message = 2, "ECONNREFUSED"
    return req.SerializeToString()


def same_as_json():
    """The request above, as the file sink would write it."""
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "curl"}},
                                    {"key": "process.pid", "value": {"intValue": "4242"}}]},
        "scopeSpans": [{"scope": {"name": "traceshim", "version": "0.1.0"}, "spans": [
            {"traceId": TRACE.hex(), "spanId": ROOT.hex(), "name": "curl", "kind": 1,
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000012000000"},
            {"traceId": TRACE.hex(), "spanId": CHILD.hex(), "parentSpanId": ROOT.hex(), "name": "connect",
             "kind": 1, "startTimeUnixNano": "1700000000001000000", "endTimeUnixNano": "1700000000002000000",
             "attributes": [{"key": "network.peer.port", "value": {"intValue": "8080"}},
                            {"key": "process.command_args",
                             "value": {"arrayValue": {"values": [{"stringValue": "curl"}, {"stringValue": "-s"}]}}}],
             "status": {"code": 2, "message": "ECONNREFUSED"}}]}]}]}


def post(port, body, headers=None, path="/v1/traces", timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Content-Type": "application/x-protobuf"}
        h.update(headers or {})
        c.request("POST", path, body=body, headers=h)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


class Schema(tstest.TestCase):
    def test_official_schema_round_trip_matches_the_json_reader(self):
        pb = otlp_proto.ensure_schema()
        self.assertTrue(os.path.isfile(os.path.join(otlp_proto.schema_dir(),
                                                    "opentelemetry/proto/trace/v1/trace.proto")))
        body = build_request(pb)
        from_pb = otlp_proto.decode_request(body)
        from_json = spanlib.spans_from_json_request(same_as_json())
        self.assertEqual([spanlib.comparable(s) for s in from_pb], [spanlib.comparable(s) for s in from_json])
        child = from_pb[1]
        self.assertEqual(child["parent_span_id"], ROOT.hex())
        self.assertEqual(spanlib.attr(child, "service.name"), "curl", "resource merged in")
        self.assertEqual(spanlib.attr(child, "network.peer.port"), 8080)
        self.assertEqual(spanlib.attr(child, "process.command_args"), ["curl", "-s"])
        self.assertEqual(from_pb[0]["parent_span_id"], "")
        self.assertEqual(spanlib.check_json_request(same_as_json()), [])

    def test_flags_read_from_unknown_field(self):
        pb = otlp_proto.ensure_schema()
        req = pb.ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        groups = rs.scope_spans if "scope_spans" in rs.DESCRIPTOR.fields_by_name else rs.instrumentation_library_spans
        span = groups.add().spans.add()
        span.trace_id, span.span_id, span.name = TRACE, ROOT, "x"
        key = b"\x85\x01"  # field 16, wire type 5 (fixed32), as a varint
        raw = span.SerializeToString() + key + (0x301).to_bytes(4, "little")
        span.Clear()
        span.ParseFromString(raw)
        self.assertEqual(otlp_proto.decode_request(req.SerializeToString())[0]["flags"], 0x301)

    def test_partial_success_body_encoding(self):
        body = otlp_proto.partial_success_body(3, "bad")
        # field 1 (LEN) { field 1 varint 3, field 2 "bad" }
        self.assertEqual(body, b"\x0a\x07\x08\x03\x12\x03bad")


class Receiver(tstest.TestCase):
    def setUp(self):
        otlp_proto.ensure_schema()
        self.rcv = rx.OtlpReceiver().start()
        self.addCleanup(self.rcv.stop)
        self.body = build_request(otlp_proto.ensure_schema())

    def test_records_and_decodes(self):
        status, _, data = post(self.rcv.port, self.body, {"X-Token": "abc"})
        self.assertEqual((status, data), (200, b""))
        gz = gzip.compress(self.body)
        status, _, _ = post(self.rcv.port, gz, {"Content-Encoding": "gzip"})
        self.assertEqual(status, 200)
        reqs = self.rcv.wait_requests(2)
        self.assertEqual(reqs[0].path, "/v1/traces")
        self.assertEqual(reqs[0].headers["x-token"], "abc")
        self.assertEqual(reqs[0].headers["content-type"], "application/x-protobuf")
        self.assertEqual(reqs[1].body, self.body)
        self.assertEqual(reqs[1].raw_body, gz)
        self.assertEqual([s["name"] for s in self.rcv.spans()], ["curl", "connect"], "deduplicated")

    def test_scripted_behaviours(self):
        self.rcv.script(rx.status(503, retry_after=2), rx.status(429), rx.status(400),
                        rx.partial_success(2, "two bad"), rx.close_connection())
        status, headers, _ = post(self.rcv.port, self.body)
        self.assertEqual((status, headers.get("Retry-After")), (503, "2"))
        self.assertEqual(post(self.rcv.port, self.body)[0], 429)
        self.assertEqual(post(self.rcv.port, self.body)[0], 400)
        status, _, data = post(self.rcv.port, self.body)
        self.assertEqual((status, data), (200, otlp_proto.partial_success_body(2, "two bad")))
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            post(self.rcv.port, self.body)
        self.assertEqual(post(self.rcv.port, self.body)[0], 200, "back to the default")
        reqs = self.rcv.requests
        self.assertEqual(len(reqs), 6)
        self.assertEqual([r.accepted for r in reqs], [False, False, False, True, False, True])
        self.assertEqual(len(self.rcv.spans(accepted_only=True)), 2)

    def test_hang_then_answer_and_client_timeout(self):
        self.rcv.script(rx.hang(1.0), rx.hang(5.0))
        t0 = time.monotonic()
        self.assertEqual(post(self.rcv.port, self.body)[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        with self.assertRaises(socket.timeout):
            post(self.rcv.port, self.body, timeout=0.5)
        self.assertFalse(self.rcv.requests[0].accepted, "a hang is a backend the client gives up on")

    def test_down_and_up_on_the_same_port(self):
        port = self.rcv.port
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # kept alive across the outage
        self.addCleanup(c.close)
        c.request("POST", "/v1/traces", body=self.body)
        self.assertEqual(c.getresponse().read(), b"")
        self.rcv.stop()
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
            c.request("POST", "/v1/traces", body=self.body)
            c.getresponse().read()
        self.rcv.start()
        self.assertEqual(self.rcv.port, port)
        self.assertEqual(post(port, self.body)[0], 200)
        self.assertEqual(len(self.rcv.requests), 2)


class JsonLines(tstest.TestCase):
    def test_reader_waits_for_the_end_of_a_line_and_rejects_garbage(self):
        d = self.make_tmpdir()
        path = os.path.join(d, "t.jsonl")
        line = json.dumps(same_as_json())
        with open(path, "w") as f:
            f.write(line + "\n" + line[:50])
        spans, reqs = spanlib.read_jsonl(path)
        self.assertEqual(len(spans), 2)
        self.assertEqual(len(reqs), 1)
        with open(path, "w") as f:
            f.write("{broken\n")
        with self.assertRaises(spanlib.SinkError):
            spanlib.read_jsonl(path)
        self.assertEqual(spanlib.read_jsonl(os.path.join(d, "missing.jsonl")), ([], []))

    def test_contract_check_catches_violations(self):
        def mutate(f):
            obj = same_as_json()
            f(obj["resourceSpans"][0]["scopeSpans"][0]["spans"][1])
            return spanlib.check_json_request(obj)
        self.assertTrue(mutate(lambda s: s.update(traceId=s["traceId"].upper())))
        self.assertTrue(mutate(lambda s: s.update(startTimeUnixNano=int(s["startTimeUnixNano"]))))
        self.assertTrue(mutate(lambda s: s["attributes"][0]["value"].update(intValue=8080)))
        self.assertTrue(mutate(lambda s: s.update(kind="SPAN_KIND_CLIENT")))
        self.assertTrue(mutate(lambda s: s.update(parentSpanId="")))
        self.assertTrue(mutate(lambda s: s.update(trace_id="x")))
        self.assertTrue(mutate(lambda s: s["attributes"].append(dict(s["attributes"][0]))))
        self.assertEqual(mutate(lambda s: None), [])

    def test_helpers(self):
        spans = spanlib.spans_from_json_request(same_as_json())
        root, child = spans
        self.assertEqual(spanlib.roots(spans), [root])
        self.assertEqual(spanlib.children_of(spans, root), [child])
        self.assertEqual(spanlib.parent_of(spans, child), root)
        self.assertEqual(spanlib.trace_ids(spans), [TRACE.hex()])
        self.assertEqual(spanlib.spans_by_name(spans, "connect"), [child])
        self.assertEqual(spanlib.attr(child, "process.pid"), 4242)


if __name__ == "__main__":
    tstest.main()
