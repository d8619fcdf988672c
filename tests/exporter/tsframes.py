"""The shim -> exporter frame format (shim/frame.h) in Python, for tests that
play a traced process: well-behaved clients sending exact numbers of spans,
and misbehaving ones sending garbage, truncated and oversized frames.

    c = Client(socket_path)            # SOCK_SEQPACKET, HELLO sent
    ids = c.send_spans(100)            # [(trace_id_hex, span_id_hex)], 100 spans in frames of <= 32 KiB
    c.close()

Host byte order, as frame.h says (both ends are on one host).
"""

import os
import socket
import struct
import time

MAGIC = 0x31485354
VERSION = 1
HELLO, SPANS, STATUS_REQ, STATUS = 1, 2, 3, 4
FRAME_MAX = 32768
HEADER = struct.Struct("=IHHII")

ATTR_STR, ATTR_INT, ATTR_BOOL = 1, 2, 3
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


def frame(ftype, payload, dropped=0):
    return HEADER.pack(MAGIC, VERSION, ftype, len(payload), dropped) + payload


def str16(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("=H", len(b)) + b


def attr(key, value):
    k = key.encode()
    out = struct.pack("=B", len(k)) + k
    if isinstance(value, bool):
        return out + struct.pack("=BB", ATTR_BOOL, int(value))
    if isinstance(value, int):
        return out + struct.pack("=Bq", ATTR_INT, value)
    return out + struct.pack("=B", ATTR_STR) + str16(value)


def hello_payload(service="tsframes", pid=None, attrs=None):
    attrs = dict(attrs or {})
    attrs.setdefault("service.name", service)
    pid = pid or os.getpid()
    body = b"".join(attr(k, v) for k, v in attrs.items())
    return struct.pack("=IIQB", pid, os.getppid(), time.time_ns(), len(attrs)) + body


def span_record(trace_id, span_id, name="op", parent=b"\0" * 8, start_ns=None, duration_ns=1000,
                status=STATUS_UNSET, kind=KIND_INTERNAL, attrs=None):
    start_ns = start_ns or time.time_ns()
    attrs = attrs or {}
    body = (trace_id + span_id + parent + struct.pack("=QQBBBBB", start_ns, start_ns + duration_ns, kind, status,
                                                        1, len(attrs), 0)
            + str16(name) + str16(b"") + str16(b"") + b"".join(attr(k, v) for k, v in attrs.items()))
    return struct.pack("=H", len(body) + 2) + body


def spans_payload(records):
    return struct.pack("=H", len(records)) + b"".join(records)


class Client:
    """A well-behaved client: HELLO, then SPANS frames (blocking sends)."""

    def __init__(self, path, service="tsframes", pid=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.sock.sendall(frame(HELLO, hello_payload(service, pid)))

    def send_records(self, records):
        """One SPANS frame (the records must fit in a frame)."""
        self.sock.send(frame(SPANS, spans_payload(records)))

    def send_spans(self, n, name="op", trace_id=None, per_frame=50, **kw):
        """n spans, each its own trace unless trace_id is given; returns their (trace hex, span hex) ids."""
        ids, batch = [], []
        for _ in range(n):
            t = trace_id or os.urandom(16)
            s = os.urandom(8)
            batch.append(span_record(t, s, name, **kw))
            ids.append((t.hex(), s.hex()))
            if len(batch) == per_frame:
                self.send_records(batch)
                batch = []
        if batch:
            self.send_records(batch)
        return ids

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
