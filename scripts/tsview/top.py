"""`traceshim top`: calls, errors and latency per service and span name/kind.

Computed from the index (no second pass): each span left a (trace, group,
duration, error) sample. Percentiles are nearest-rank over the spans' own
durations (the value below which p % of the calls fall, always one that was
observed); the rows are sorted by total time, the sum of the durations, since
that is where the time goes.
"""

import json
import math


def percentile(sorted_values, p):
    """Nearest-rank percentile of a sorted, non-empty list."""
    if not sorted_values:
        return None
    rank = max(1, int(math.ceil(p / 100.0 * len(sorted_values))))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Row:
    __slots__ = ("service", "name", "kind", "count", "errors", "durations", "total")

    def __init__(self, service, name, kind):
        self.service, self.name, self.kind = service, name, kind
        self.count = 0
        self.errors = 0
        self.durations = []
        self.total = 0

    def ms(self, p):
        v = percentile(self.durations, p)
        return None if v is None else round(v / 1e6, 6)


def summarise(ix, chosen):
    """Rows for the spans of the chosen traces, by total time, largest first."""
    keep = {id(t) for t in chosen}
    rows = {}
    for t, g, dur, error, _sid in ix.samples:
        if id(t) not in keep:
            continue
        row = rows.get(g)
        if row is None:
            row = rows[g] = Row(*ix.group_keys[g])
        row.count += 1
        if error:
            row.errors += 1
        if dur is not None:
            row.durations.append(dur)
            row.total += dur
    for row in rows.values():
        row.durations.sort()
    return sorted(rows.values(), key=lambda r: (-r.total, -r.count, r.service, r.name, r.kind))


def as_json(rows):
    return json.dumps([{"service": r.service, "name": r.name, "kind": r.kind, "count": r.count,
                        "errors": r.errors, "p50_ms": r.ms(50), "p95_ms": r.ms(95), "p99_ms": r.ms(99)}
                       for r in rows], indent=1) + "\n"


def _ms(v):
    return "-" if v is None else "%.3f" % v


def as_table(rows, ntraces):
    head = ("SERVICE", "NAME", "KIND", "CALLS", "ERRORS", "ERR%", "P50 ms", "P95 ms", "P99 ms", "TOTAL ms")
    body = []
    for r in rows:
        body.append((r.service, r.name, r.kind, str(r.count), str(r.errors),
                     "%.1f" % (100.0 * r.errors / r.count) if r.count else "-",
                     _ms(r.ms(50)), _ms(r.ms(95)), _ms(r.ms(99)), "%.3f" % (r.total / 1e6)))
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i]) for i in range(len(head))]
    widths[1] = min(widths[1], 60)
    lines = []
    for cells in [head] + body:
        out = []
        for i, cell in enumerate(cells):
            if i == 1 and len(cell) > widths[1]:
                cell = cell[:widths[1] - 1] + "…"
            out.append(cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]))
        lines.append("  ".join(out).rstrip())
    calls = sum(r.count for r in rows)
    lines.append("%d span%s in %d trace%s" % (calls, "" if calls == 1 else "s", ntraces, "" if ntraces == 1 else "s"))
    return "\n".join(lines) + "\n"
