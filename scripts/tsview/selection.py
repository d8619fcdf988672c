"""Choosing traces: durations, --where expressions, and the selection itself.

Every option narrows the set (all must hold); --last and --trace then pick
from what is left, and --follow adds the traces linked to those (the segments
of a long job). docs/VIEWER.md has the rules and why.
"""

import math
import re

from tsview.model import fmt_value

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class BadArgument(ValueError):
    """A value the user gave that cannot be used; the message says why."""


def parse_duration(text):
    """Nanoseconds in `500ms`, `2s`, `1.5s`, `250us`, `1m30s`, `1h`. A number
    without a unit is refused: `500` could mean ms or s, and guessing wrong
    selects the wrong traces silently."""
    s = text.strip()
    if not s:
        raise BadArgument("empty duration (examples: 500ms, 2s, 1m30s)")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            if re.fullmatch(r"\d+(\.\d*)?", s):
                raise BadArgument("duration %r needs a unit: ns, us, ms, s, m or h (e.g. %sms)" % (text, s))
            raise BadArgument("cannot read duration %r (examples: 500ms, 2s, 1m30s)" % text)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not math.isfinite(total):
        raise BadArgument("duration %r is too large" % text)
    return int(round(total))


def _number(v):
    """v as an int or float when it is one (or a string that reads as one), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                return None
            return f if math.isfinite(f) else None
    return None


def _text(v):
    return fmt_value(v)


# Longest first: `>=` before `>`.
_OPERATORS = ("!=", ">=", "<=", "!~", "=", ">", "<", "~")
_NUMERIC = {">=", "<=", ">", "<"}


class Where:
    """One `--where` expression: KEY=VALUE, KEY!=VALUE, KEY>=N, KEY<=N, KEY>N,
    KEY<N, KEY~REGEX, KEY!~REGEX. A span satisfies it when it has KEY (span
    attribute, resource attribute or pseudo-field) and the value compares as
    asked; a span without KEY satisfies none of them, `!=` included."""

    def __init__(self, text):
        self.text = text
        cut = None
        for i, ch in enumerate(text):
            if ch in "=!<>~":
                cut = i
                break
        if cut is None:
            raise BadArgument("--where %r: no operator (use KEY=VALUE, KEY!=VALUE, KEY>=N, KEY<=N, "
                              "KEY>N, KEY<N or KEY~REGEX)" % text)
        self.key = text[:cut].strip()
        if not self.key:
            raise BadArgument("--where %r: no attribute name before the operator" % text)
        rest = text[cut:]
        self.op = next((op for op in _OPERATORS if rest.startswith(op)), None)
        if self.op is None:
            raise BadArgument("--where %r: unknown operator %r" % (text, rest[:2]))
        self.value = rest[len(self.op):]
        self.number = None
        self.regex = None
        if self.op in _NUMERIC:
            if self.key == "duration":
                self.number = _duration_or_ms(self.value, text)
            else:
                self.number = _number(self.value.strip())
                if self.number is None:
                    raise BadArgument("--where %r: %s needs a number, not %r" % (text, self.op, self.value))
        elif self.op in ("~", "!~"):
            try:
                self.regex = re.compile(self.value)
            except re.error as e:
                raise BadArgument("--where %r: bad regular expression: %s" % (text, e)) from None
        elif self.key == "duration":
            self.number = _duration_or_ms(self.value, text)

    def __repr__(self):
        return "Where(%r %s %r)" % (self.key, self.op, self.value)

    def test_value(self, v):
        """Whether an attribute value v satisfies the expression."""
        if v is None:
            return False
        op = self.op
        if op in _NUMERIC:
            n = _number(v)
            if n is None:
                return False
            return ((op == ">=" and n >= self.number) or (op == "<=" and n <= self.number)
                    or (op == ">" and n > self.number) or (op == "<" and n < self.number))
        if op in ("~", "!~"):
            found = self.regex.search(_text(v)) is not None
            return found if op == "~" else not found
        if self.number is not None:  # duration=…
            equal = _number(v) == self.number
        else:
            equal = _equal(v, self.value)
        return equal if op == "=" else not equal

    def matches(self, fields):
        found, v = fields.lookup(self.key)
        return found and self.test_value(v)


def _equal(v, literal):
    """`=`: numbers compare as numbers (status_code=500 and =500.0 agree),
    everything else by its text (booleans as true/false, as shown)."""
    n = _number(v) if not isinstance(v, str) else None
    if n is not None:
        m = _number(literal.strip())
        if m is not None:
            return n == m
    return _text(v) == literal


def _duration_or_ms(value, text):
    v = value.strip()
    n = _number(v)
    if n is not None:
        return int(round(n * 1_000_000))  # a bare number is ms, the unit shown everywhere
    try:
        return parse_duration(v)
    except BadArgument as e:
        raise BadArgument("--where %r: %s" % (text, e)) from None


class Selection:
    def __init__(self, errors=False, min_duration=None, max_duration=None, services=(), where=(),
                 trace=None, last=None, follow=False):
        self.errors = errors
        self.min_duration = min_duration
        self.max_duration = max_duration
        self.services = list(services or ())
        self.where = list(where or ())
        self.trace = trace.strip().lower() if trace else None
        self.last = last
        self.follow = follow

    @property
    def filters(self):
        return bool(self.errors or self.min_duration is not None or self.max_duration is not None
                    or self.services or self.where)

    def keep(self, t):
        if self.errors and not t.errors:
            return False
        d = t.duration
        if self.min_duration is not None and (d is None or d < self.min_duration):
            return False
        if self.max_duration is not None and (d is None or d > self.max_duration):
            return False
        for s in self.services:
            if s not in t.services:
                return False
        if self.where and t.matched != (1 << len(self.where)) - 1:
            return False
        return True

    def apply(self, traces):
        """The chosen TraceInfos of {id: TraceInfo}, oldest first."""
        ordered = sorted(traces.values(), key=trace_order)
        chosen = [t for t in ordered if self.keep(t)]
        if self.trace is not None:
            exact = [t for t in chosen if t.trace_id == self.trace]
            chosen = exact or [t for t in chosen if t.trace_id.startswith(self.trace)]
        elif self.last is not None:
            chosen = chosen[-self.last:] if self.last > 0 else []
        if self.follow and chosen:
            chosen = follow_links(traces, chosen)
        return chosen


def trace_order(t):
    return (t.start if t.start is not None else 1 << 64, t.number)


def follow_links(traces, chosen):
    """chosen plus every trace in the file connected to one of them by span
    links, in either direction, transitively: the segments of a long job
    (each new segment is the root of a new trace linked to the previous one,
    docs/ARCHITECTURE.md "Long jobs")."""
    back = {}
    for t in traces.values():
        for other in t.links:
            back.setdefault(other, set()).add(t.trace_id)
    seen = {t.trace_id for t in chosen}
    todo = list(seen)
    while todo:
        tid = todo.pop()
        t = traces.get(tid)
        neighbours = set(back.get(tid, ()))
        if t is not None:
            neighbours |= t.links
        for n in neighbours:
            if n not in seen and n in traces:
                seen.add(n)
                todo.append(n)
    return sorted((traces[tid] for tid in seen), key=trace_order)
