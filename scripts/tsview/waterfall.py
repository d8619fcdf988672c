"""The terminal waterfall: one row per span, its tree position on the left, a
bar placed and sized on the trace's time axis, then status, process and key
attributes.

    trace 3f…  (6 spans, 212.416 ms, started 2026-12-08 03:04:47.123 UTC)  1 error
      curl  internal  212.416 ms    │████████████████████████████████████████│  [curl pid 7]
      ├─ connect  internal  0.092 ms│▏                                       │  network.peer…
      └─ GET  client  211.020 ms    │ ███████████████████████████████████████│  ERROR …

The bar column is the whole trace, from its first span's start to its last
span's end, so overlap, gaps and the longest chain are visible at a glance.
Siblings repeated many times (same name, kind and service: an N+1 query loop)
are collapsed into one row, "… 48 more `SELECT items`", whose bar covers them.
"""

import datetime
import math

from tsview.model import KINDS, fmt_value

# Shown on every span row when present; --all-attributes shows the rest too.
KEY_ATTRIBUTES = (
    "url.full",
    "url.path",  # a SERVER span has no url.full
    "http.response.status_code",
    "dns.question.name",
    "network.peer.address",  # joined with network.peer.port
    "server.address",
    "error.type",
)

COLLAPSE_MIN = 6   # siblings of one name, kind and service: this many or more are collapsed
COLLAPSE_KEEP = 3  # the first ones shown before the "… N more" row (error spans are always shown)
LEFT_MAX = 72      # widest tree column; longer span names are cut

EIGHTHS = " ▏▎▍▌▋▊▉█"


class Art:
    def __init__(self, unicode):
        self.unicode = unicode
        if unicode:
            self.tee, self.last, self.bar, self.blank = "├─ ", "└─ ", "│  ", "   "
            self.full, self.error, self.more = "█", "▓", "░"
            self.frame_l = self.frame_r = "│"
            self.ellipsis = "…"
        else:
            self.tee, self.last, self.bar, self.blank = "|- ", "`- ", "|  ", "   "
            self.full, self.error, self.more = "=", "#", "-"
            self.frame_l = self.frame_r = "|"
            self.ellipsis = "..."


class Colour:
    """ANSI SGR sequences, or nothing."""
    PALETTE = ("36", "32", "33", "35", "34", "96", "92", "93", "95", "94")

    def __init__(self, enabled):
        self.enabled = enabled
        self.services = {}

    def wrap(self, text, code):
        if not self.enabled or not code or not text:
            return text
        return "\x1b[%sm%s\x1b[0m" % (code, text)

    def service(self, name):
        c = self.services.get(name)
        if c is None:
            c = self.services[name] = self.PALETTE[len(self.services) % len(self.PALETTE)]
        return c

    ERROR = "1;31"
    DIM = "2"
    BOLD = "1"


def duration_text(ns):
    if ns is None:
        return "? ms"
    if ns >= 10_000_000_000:
        return "%.3f s" % (ns / 1e9)
    return "%.3f ms" % (ns / 1e6)


def span_duration(start, end):
    if start is None or end is None or end < start:
        return None
    return end - start


def timestamp(ns):
    if ns is None:
        return "?"
    t = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + "%03d UTC" % (t.microsecond // 1000)


class More:
    """Collapsed siblings: one row standing for them all."""

    def __init__(self, spans):
        self.spans = spans
        self.name = spans[0].name
        starts = [s.start for s in spans if s.start is not None]
        ends = [s.end for s in spans if s.end is not None]
        self.start = min(starts) if starts else None
        self.end = max(ends) if ends else None
        self.total = sum(s.duration or 0 for s in spans)
        below = 0
        stack = [c for s in spans for c in s.children]
        while stack:
            x = stack.pop()
            below += 1
            stack.extend(x.children)
        self.below = below


def plan_children(children, collapse=True):
    """children (sorted by start) with each large group of same-named siblings
    cut to its first COLLAPSE_KEEP members, its errors, and one More in the
    place of the first span it hides."""
    if not collapse or len(children) < COLLAPSE_MIN:
        return list(children)
    groups = {}
    for c in children:
        groups.setdefault((c.name, c.kind, c.service), []).append(c)
    hidden = {}
    for members in groups.values():
        if len(members) < COLLAPSE_MIN:
            continue
        rest = [m for m in members[COLLAPSE_KEEP:] if not m.is_error]
        if len(rest) < 2:  # one span hidden behind one row saves nothing
            continue
        more = More(rest)
        for m in rest:
            hidden[id(m)] = more
    out, placed = [], set()
    for c in children:
        more = hidden.get(id(c))
        if more is None:
            out.append(c)
        elif id(more) not in placed:
            placed.add(id(more))
            out.append(more)
    return out


class Row:
    __slots__ = ("prefix", "item", "parent")

    def __init__(self, prefix, item, parent):
        self.prefix, self.item, self.parent = prefix, item, parent


def layout(top, art, collapse=True):
    """Rows in tree order: (tree prefix, Span or More, parent span)."""
    rows = []
    # (item, parent, prefix, connector), depth first; a stack, not recursion:
    # a deep trace must not hit the recursion limit.
    stack = [(span, None, "", "") for span in reversed(top)]
    while stack:
        item, parent, prefix, connector = stack.pop()
        rows.append(Row(prefix + connector, item, parent))
        if isinstance(item, More):
            continue
        if connector == art.tee:
            prefix += art.bar
        elif connector == art.last:
            prefix += art.blank
        kids = plan_children(item.children, collapse)
        for i in range(len(kids) - 1, -1, -1):
            stack.append((kids[i], item, prefix, art.last if i == len(kids) - 1 else art.tee))
    return rows


def bar(start, end, t0, t1, width, art, glyph=None):
    """A string of `width` cells with the span [start, end] drawn on the axis
    [t0, t1]: whole cells, the last one partly filled (eighths) on a Unicode
    terminal, and at least one cell for a span too short to see."""
    glyph = glyph or art.full
    cells = [" "] * width
    if start is None or t0 is None or t1 is None or width <= 0:
        return "".join(cells)
    if end is None or end < start:
        end = start
    total = max(t1 - t0, 1)
    a = min(max((start - t0) / total * width, 0.0), float(width))
    b = min(max((end - t0) / total * width, a), float(width))
    lo = min(int(math.floor(a)), width - 1)
    hi = min(max(int(math.ceil(b)), lo + 1), width)
    for i in range(lo, hi):
        cells[i] = glyph
    if art.unicode and glyph == art.full:
        cover = b - (hi - 1) if hi - 1 > lo else b - a
        if 0 < cover < 1 - 1e-9:
            cells[hi - 1] = EIGHTHS[max(1, int(cover * 8 + 0.5))] if cover * 8 + 0.5 < 8 else art.full
        elif cover <= 0:
            cells[hi - 1] = EIGHTHS[1]
    return "".join(cells)


_KEY_SET = frozenset(KEY_ATTRIBUTES) | {"network.peer.port"}


def key_attributes(span, everything):
    a = span.attrs if everything else span.some_attrs(_KEY_SET)
    parts = []
    for key in KEY_ATTRIBUTES:
        if key not in a:
            continue
        value = fmt_value(a[key])
        if key == "network.peer.address" and "network.peer.port" in a:
            value = "%s:%s" % (value, fmt_value(a["network.peer.port"]))
        parts.append("%s=%s" % (key, value))
    if everything:
        shown = set(KEY_ATTRIBUTES) | ({"network.peer.port"} if "network.peer.address" in a else set())
        parts.extend("%s=%s" % (k, fmt_value(v)) for k, v in sorted(a.items()) if k not in shown)
    return parts


class Options:
    def __init__(self, unicode=True, colour=False, everything=False, collapse=True, bar_width=40,
                 term_cols=None):
        self.art = Art(unicode)
        self.colour = Colour(colour)
        self.everything = everything
        self.collapse = collapse
        self.bar_width = bar_width
        self.term_cols = term_cols  # on a terminal: fit the bar to it

    def width_for(self, left):
        """Bar columns for a trace whose tree column is `left` wide."""
        if not self.term_cols:
            return self.bar_width
        # Room for the frame and the start of the attributes; attributes wrap.
        return max(20, min(100, self.term_cols - left - 40))


def _left(row, art):
    item = row.item
    if isinstance(item, More):
        return row.prefix + "%s %d more `%s`" % (art.ellipsis, len(item.spans), item.name)
    return row.prefix + "%s  %s  %s" % (item.name, KINDS.get(item.kind, "kind%d" % item.kind),
                                        duration_text(item.duration))


def _fit(text, row, art, limit):
    """The left column cut to `limit` characters by shortening the span name."""
    if len(text) <= limit or isinstance(row.item, More):
        return text
    name = row.item.name
    cut = len(text) - limit + len(art.ellipsis)
    if cut >= len(name):
        return text
    short = name[:len(name) - cut] + art.ellipsis
    return row.prefix + text[len(row.prefix):].replace(name, short, 1)


def _rest(row, opts):
    """Status, process, attributes, notes (with colour)."""
    c, item = opts.colour, row.item
    if isinstance(item, More):
        note = "total %s" % duration_text(item.total)
        if item.below:
            note += ", %d span%s below them" % (item.below, "" if item.below == 1 else "s")
        return [c.wrap(note, c.DIM)]
    fields = []
    if item.status_code == 2:
        fields.append(c.wrap("ERROR" + (": " + item.status_message if item.status_message else ""), c.ERROR))
    elif item.status_code == 1:
        fields.append("OK")
    parent = row.parent
    if parent is None or parent.process() != item.process():
        service, pid = item.process()
        who = " ".join(x for x in (fmt_value(service) if service is not None else "",
                                   "pid %s" % pid if pid is not None else "") if x)
        if who:
            fields.append(c.wrap("[%s]" % who, c.service(item.service)))
    fields.extend(c.wrap(p, c.DIM) for p in key_attributes(item, opts.everything))
    if item.orphan:
        fields.append("(orphan: parent %s not in file)" % item.parent_id)
    for link in item.links:
        if link["trace_id"] and link["trace_id"] != item.trace_id:
            fields.append("(links to trace %s)" % link["trace_id"])
    return fields


def render_trace(info, top, opts, out, followed_by=()):
    """Writes one trace: its header line and its rows."""
    art, c = opts.art, opts.colour
    t0, t1 = info.start, info.end
    header = "trace %s  (%d span%s, %s, started %s)" % (
        info.trace_id, info.count, "" if info.count == 1 else "s",
        duration_text(span_duration(t0, t1)), timestamp(t0))
    extra = []
    if info.errors:
        extra.append(c.wrap("%d error%s" % (info.errors, "" if info.errors == 1 else "s"), c.ERROR))
    for other in sorted(info.links):
        extra.append("follows trace %s" % other)
    for other in followed_by:
        extra.append("followed by trace %s" % other)
    out.write("  ".join([c.wrap(header, c.BOLD)] + extra) + "\n")

    rows = layout(top, art, opts.collapse)
    lefts = [_fit("  " + _left(r, art), r, art, LEFT_MAX) for r in rows]
    width = max(len(x) for x in lefts) if lefts else 0
    bar_width = opts.width_for(width)
    for row, left in zip(rows, lefts):
        item = row.item
        if isinstance(item, More):
            glyph, code = art.more, c.DIM
        elif item.is_error:
            glyph, code = art.error if not c.enabled else art.full, c.ERROR
        else:
            glyph, code = art.full, c.service(item.service)
        cells = bar(item.start, item.end, t0, t1, bar_width, art, glyph)
        cut = 2 + len(row.prefix)  # the tree lines, dimmed: the names stand out
        shown_left = c.wrap(left[:cut], c.DIM) + left[cut:]
        line = shown_left + " " * (width - len(left)) + "  " + art.frame_l + c.wrap(cells, code) + art.frame_r
        rest = _rest(row, opts)
        if rest:
            line += "  " + "  ".join(rest)
        out.write(line + "\n")
