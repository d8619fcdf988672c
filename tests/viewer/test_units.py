#!/usr/bin/python3
"""The viewer's pure parts on hand-made input: duration and --where parsing,
the waterfall's bars and collapsing, percentiles, linked segments, and the
two-pass reader (rotated file, stdin, duplicates, bad lines)."""

import io
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.environ.get("TRACESHIM_SOURCEDIR") or os.path.join(HERE, "..", ".."), "scripts"))
sys.dont_write_bytecode = True

from tsview import model, page, top, waterfall  # noqa: E402
from tsview.selection import BadArgument, Selection, Where, parse_duration  # noqa: E402

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def raw_span(trace, sid, parent, name, start_ms, end_ms, kind=1, attrs=(), status=None, links=()):
    s = {"traceId": trace, "spanId": sid, "name": name, "kind": kind,
         "startTimeUnixNano": str(T0 + int(start_ms * MS)), "endTimeUnixNano": str(T0 + int(end_ms * MS)),
         "attributes": [{"key": k, "value": ({"intValue": str(v)} if isinstance(v, int) else {"stringValue": v})}
                        for k, v in attrs]}
    if parent:
        s["parentSpanId"] = parent
    if status is not None:
        s["status"] = {"code": status}
    if links:
        s["links"] = [{"traceId": t, "spanId": sp} for t, sp in links]
    return s


def line(service, spans):
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "traceshim"}, "spans": spans}]}]}) + "\n"


class FakeFields:
    def __init__(self, values):
        self.values = values

    def lookup(self, key):
        return (key in self.values), self.values.get(key)


class Durations(unittest.TestCase):
    def test_units_and_sums(self):
        self.assertEqual(parse_duration("500ms"), 500 * MS)
        self.assertEqual(parse_duration("2s"), 2000 * MS)
        self.assertEqual(parse_duration("1.5s"), 1500 * MS)
        self.assertEqual(parse_duration("250us"), 250_000)
        self.assertEqual(parse_duration("250µs"), 250_000)
        self.assertEqual(parse_duration("10ns"), 10)
        self.assertEqual(parse_duration("1m30s"), 90_000 * MS)
        self.assertEqual(parse_duration("1h"), 3_600_000 * MS)
        self.assertEqual(parse_duration(" .5s "), 500 * MS)

    def test_refusals_say_why(self):
        with self.assertRaisesRegex(BadArgument, "needs a unit"):
            parse_duration("500")
        for bad in ("", "fast", "5 ms", "-1s", "1x", "s", "1e3ms"):
            with self.subTest(bad=bad), self.assertRaises(BadArgument):
                parse_duration(bad)


class WhereParsing(unittest.TestCase):
    def test_operators(self):
        cases = [("a=b", "a", "=", "b"), ("a!=b", "a", "!=", "b"), ("a>=5", "a", ">=", "5"),
                 ("a<=5", "a", "<=", "5"), ("a>5", "a", ">", "5"), ("a<5", "a", "<", "5"),
                 ("a~^x.*", "a", "~", "^x.*"), ("a!~y", "a", "!~", "y"),
                 ("url.full=http://h/?q=1", "url.full", "=", "http://h/?q=1"), ("k=", "k", "=", "")]
        for text, key, op, value in cases:
            with self.subTest(text=text):
                w = Where(text)
                self.assertEqual((w.key, w.op, w.value), (key, op, value))

    def test_refusals(self):
        for bad, why in (("nokey", "no operator"), ("=v", "no attribute name"), ("a>=x", "needs a number"),
                         ("a~(", "bad regular expression"), ("duration>=fast", "duration")):
            with self.subTest(bad=bad), self.assertRaisesRegex(BadArgument, why):
                Where(bad)

    def test_matching(self):
        f = FakeFields({"code": 500, "path": "/slow/1", "ok": True, "ratio": 0.25, "port": "8080"})
        self.assertTrue(Where("code=500").matches(f))
        self.assertTrue(Where("code=500.0").matches(f), "numbers compare as numbers")
        self.assertFalse(Where("code!=500").matches(f))
        self.assertTrue(Where("code!=200").matches(f))
        self.assertTrue(Where("code>=500").matches(f))
        self.assertFalse(Where("code>500").matches(f))
        self.assertTrue(Where("code<501").matches(f))
        self.assertTrue(Where("port>=8000").matches(f), "a string that reads as a number")
        self.assertTrue(Where("path~^/slow").matches(f))
        self.assertFalse(Where("path~^/fast").matches(f))
        self.assertTrue(Where("path!~fast").matches(f))
        self.assertTrue(Where("ok=true").matches(f))
        self.assertTrue(Where("ratio<0.5").matches(f))
        self.assertFalse(Where("path>=1").matches(f), "not a number: no match")
        self.assertFalse(Where("missing!=x").matches(f), "a span without the key matches nothing")

    def test_pseudo_fields_on_a_raw_span(self):
        raw = raw_span("a" * 32, "1" * 16, None, "SELECT items", 0, 750, kind=3, status=2,
                       attrs=[("db.system.name", "postgresql")])
        f = model.SpanFields(raw, {"service.name": "db", "host.name": "h1"}, "db", T0, T0 + 750 * MS, True)
        self.assertTrue(Where("name~^SELECT").matches(f))
        self.assertTrue(Where("kind=client").matches(f))
        self.assertTrue(Where("status=error").matches(f))
        self.assertTrue(Where("service=db").matches(f))
        self.assertTrue(Where("host.name=h1").matches(f), "resource attributes")
        self.assertTrue(Where("duration>=500ms").matches(f))
        self.assertTrue(Where("duration<1s").matches(f))
        self.assertTrue(Where("duration>700").matches(f), "a bare number is ms")
        self.assertFalse(Where("duration>=1s").matches(f))


def span(name, start, end, children=(), service="svc", status=0):
    s = model.Span(raw_span("a" * 32, "%016x" % id(object()), None, name, start, end, status=status),
                   {"service.name": service}, "", 0)
    s.start, s.end = T0 + int(start * MS), T0 + int(end * MS)
    s.children = list(children)
    return s


class WaterfallLayout(unittest.TestCase):
    def setUp(self):
        self.uni, self.ascii = waterfall.Art(True), waterfall.Art(False)

    def test_bars_on_the_time_axis(self):
        t0, t1 = 0, 100
        full = waterfall.bar(0, 100, t0, t1, 20, self.ascii)
        self.assertEqual(full, "=" * 20)
        half = waterfall.bar(50, 100, t0, t1, 20, self.ascii)
        self.assertEqual(half, " " * 10 + "=" * 10)
        first = waterfall.bar(0, 25, t0, t1, 20, self.ascii)
        self.assertEqual(first, "=" * 5 + " " * 15)
        self.assertEqual(waterfall.bar(40, 40, t0, t1, 20, self.ascii).count("="), 1, "zero length: one cell")
        self.assertEqual(waterfall.bar(100, 100, t0, t1, 20, self.ascii), " " * 19 + "=", "at the very end")
        for a, b in ((0, 3), (7, 93), (99, 100), (-5, 200), (30, 10)):
            cells = waterfall.bar(a, b, t0, t1, 17, self.uni)
            self.assertEqual(len(cells), 17, (a, b))
            self.assertTrue(cells.strip(), "always visible: %r" % ((a, b),))

    def test_unicode_eighths_at_the_end(self):
        cells = waterfall.bar(0, 55, 0, 100, 10, self.uni)
        self.assertEqual(cells, "█████▌    ")
        self.assertEqual(waterfall.bar(0, 1, 0, 100, 10, self.uni), "▏         ")

    def test_rows_follow_the_tree(self):
        a = span("a", 0, 10)
        b = span("b", 2, 4)
        c = span("c", 5, 9, [span("d", 6, 7)])
        root = span("root", 0, 10, [a, b, c])
        rows = waterfall.layout([root], self.ascii)
        self.assertEqual([(r.prefix, r.item.name) for r in rows],
                         [("", "root"), ("|- ", "a"), ("|- ", "b"), ("`- ", "c"), ("   `- ", "d")])

    def test_repeated_siblings_collapse(self):
        queries = [span("SELECT items", i, i + 0.5) for i in range(1, 51)]
        queries[20] = span("SELECT items", 21, 21.5, status=2)  # an error stays visible
        other = span("render", 60, 70)
        root = span("GET /cart", 0, 80, queries + [other])
        rows = waterfall.layout([root], self.ascii)
        names = [r.item.name for r in rows]
        self.assertEqual(names.count("SELECT items"), 5, "three shown, one error, one More")
        more = [r.item for r in rows if isinstance(r.item, waterfall.More)]
        self.assertEqual(len(more), 1)
        self.assertEqual(len(more[0].spans), 46)
        self.assertEqual(more[0].start, T0 + 4 * MS)
        self.assertEqual(more[0].end, T0 + int(50.5 * MS))
        self.assertEqual(rows[-1].item.name, "render")
        out = io.StringIO()
        info = model.TraceInfo("a" * 32, 0)
        info.start, info.end, info.count = root.start, root.end, 52
        waterfall.render_trace(info, [root], waterfall.Options(unicode=False), out)
        self.assertIn("... 46 more `SELECT items`", out.getvalue())
        self.assertNotIn("more", waterfall_text([root], collapse=False))

    def test_few_repeats_do_not_collapse(self):
        root = span("r", 0, 10, [span("q", i, i + 1) for i in range(5)])
        self.assertEqual(len(waterfall.layout([root], self.ascii)), 6)

    def test_colour_only_when_asked(self):
        root = span("r", 0, 10, [span("q", 1, 2, status=2)])
        self.assertNotIn("\x1b[", waterfall_text([root]))
        coloured = waterfall_text([root], colour=True)
        self.assertIn("\x1b[1;31m", coloured, "errors in red")


def waterfall_text(top_spans, colour=False, collapse=True):
    out = io.StringIO()
    info = model.TraceInfo("a" * 32, 0)
    info.start, info.end = top_spans[0].start, top_spans[0].end
    info.count = sum(1 for _ in model.walk(top_spans))
    waterfall.render_trace(info, top_spans, waterfall.Options(unicode=False, colour=colour, collapse=collapse), out)
    return out.getvalue()


class Percentiles(unittest.TestCase):
    def test_nearest_rank(self):
        values = list(range(1, 101))
        self.assertEqual(top.percentile(values, 50), 50)
        self.assertEqual(top.percentile(values, 95), 95)
        self.assertEqual(top.percentile(values, 99), 99)
        self.assertEqual(top.percentile([7], 99), 7)
        self.assertEqual(top.percentile([1, 2, 3, 4], 50), 2)
        self.assertIsNone(top.percentile([], 50))


class Reading(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="traceshim-viewer-")
        self.path = os.path.join(self.dir, "traces.jsonl")
        self.addCleanup(lambda: __import__("shutil").rmtree(self.dir, True))

    def write(self, path, text):
        with open(path, "w") as f:
            f.write(text)

    def test_rotated_file_first_duplicates_once_bad_lines_counted(self):
        A, B, C = "a" * 32, "b" * 32, "c" * 32
        self.write(self.path + ".1", line("svc", [raw_span(A, "1" * 16, None, "job", 0, 1000)]))
        self.write(self.path,
                   line("svc", [raw_span(A, "2" * 16, "1" * 16, "step", 10, 20),
                                raw_span(B, "3" * 16, None, "job", 2000, 3000, status=2,
                                         links=[(A, "1" * 16)])])
                   + "{broken\n"
                   + line("svc", [raw_span(A, "2" * 16, "1" * 16, "step", 10, 20)])  # sent twice
                   + line("other", [raw_span(C, "4" * 16, None, "lone", 5000, 5001)])
                   + '{"resourceSpans": [')  # being written: no newline yet
        sources = model.open_sources(self.path)
        self.addCleanup(model.close_sources, sources)
        ix = model.index(sources, top=True)
        self.assertEqual(ix.bad_lines, 1, "the unfinished last line is not counted")
        self.assertEqual(set(ix.traces), {A, B, C})
        self.assertEqual(ix.traces[A].count, 2, "the duplicate counted once")
        self.assertEqual(len(ix.traces[A].lines), 2, "on a line of each file")
        self.assertEqual(ix.traces[B].links, {A})
        trees = model.load(sources, [ix.traces[A]])
        self.assertEqual([s.name for s in model.walk(trees[A])], ["job", "step"])

        chosen = Selection(trace=B, follow=True).apply(ix.traces)
        self.assertEqual([t.trace_id for t in chosen], [A, B], "a linked segment is followed back")
        chosen = Selection(trace=A, follow=True).apply(ix.traces)
        self.assertEqual([t.trace_id for t in chosen], [A, B], "and forward")
        self.assertEqual([t.trace_id for t in Selection(errors=True).apply(ix.traces)], [B])
        self.assertEqual([t.trace_id for t in Selection(services=["other"]).apply(ix.traces)], [C])
        self.assertEqual([t.trace_id for t in Selection(last=2).apply(ix.traces)], [B, C])
        self.assertEqual([t.trace_id for t in Selection(min_duration=1000 * MS).apply(ix.traces)], [A, B])
        rows = top.summarise(ix, list(ix.traces.values()))
        self.assertEqual([(r.name, r.count) for r in rows], [("job", 2), ("step", 1), ("lone", 1)])

    def test_forked_readers_agree_with_one(self):
        """A file cut into stretches read by forked children gives the same
        index as one reader, duplicates across stretches included."""
        lines = []
        for n in range(300):
            tid = "%032x" % (n // 3 + 1)  # each trace spread over three lines
            lines.append(line("svc%d" % (n % 4), [
                raw_span(tid, "%016x" % (n + 1), None if n % 3 == 0 else "%016x" % (n - n % 3 + 1),
                         "op%d" % (n % 5), n, n + 2, status=2 if n % 7 == 0 else None,
                         attrs=[("n", n)], links=[("%032x" % (n // 3), "%016x" % 1)] if n % 3 == 0 else ())]))
        lines.append(lines[10])  # sent twice, far from the first copy
        self.write(self.path, "".join(lines))
        sources = model.open_sources(self.path)
        self.addCleanup(model.close_sources, sources)
        where = [Where("n>=150"), Where("name=op1")]
        for knob in ("PARALLEL_MIN_BYTES", "STRETCH_MIN"):
            self.addCleanup(setattr, model, knob, getattr(model, knob))
            setattr(model, knob, 0)
        one = model.index(sources, where=where, top=True, workers=1)
        many = model.index(sources, where=where, top=True, workers=4)
        self.assertEqual(many.workers, 4)
        self.assertEqual(set(one.traces), set(many.traces))
        for tid, a in one.traces.items():
            b = many.traces[tid]
            self.assertEqual((a.start, a.end, a.count, a.errors, a.services, a.matched, a.links, a.root_name),
                             (b.start, b.end, b.count, b.errors, b.services, b.matched, b.links, b.root_name))
            # A stretch holding only a repeated copy keeps that line too (read
            # again, and deduplicated, when shown): a superset, in file order.
            self.assertLessEqual(set(a.lines), set(b.lines))
            self.assertEqual(b.lines, sorted(b.lines))
        self.assertEqual(sorted((t.trace_id, one.group_keys[g], d, e, sid) for t, g, d, e, sid in one.samples),
                         sorted((t.trace_id, many.group_keys[g], d, e, sid) for t, g, d, e, sid in many.samples))
        self.assertEqual([t.trace_id for t in Selection(where=where).apply(one.traces)],
                         [t.trace_id for t in Selection(where=where).apply(many.traces)])

    def test_hostile_fields_are_survived(self):
        """Every field of a span, resource and request replaced by values of
        the wrong type: nothing raises, from the index to the page."""
        good = raw_span("a" * 32, "1" * 16, "2" * 16, "x", 0, 1, status=2, attrs=[("k", "v")],
                        links=[("b" * 32, "3" * 16)])
        good["events"] = [{"name": "e", "timeUnixNano": "1", "attributes": []}]
        wrong = [None, 5, -1.5, "", "zz", [], [1, None], {}, {"a": 1}, True,
                 {"arrayValue": 3}, {"kvlistValue": []}, [{"key": "k", "value": {"arrayValue": {"values": 7}}}]]
        lines = []
        for field in list(good):
            for w in wrong:
                s = dict(good)
                s["spanId"] = "%016x" % len(lines)
                s[field] = w
                lines.append(line("svc", [s]))
        for w in wrong:
            lines.append(json.dumps({"resourceSpans": [{"resource": {"attributes": w},
                                                         "scopeSpans": [{"scope": w, "spans": [good]}]}]}) + "\n")
            lines.append(json.dumps({"resourceSpans": w}) + "\n")
            lines.append(json.dumps({"resourceSpans": [{"scopeSpans": w}]}) + "\n")
            lines.append(json.dumps(w) + "\n")
        self.write(self.path, "".join(lines) + "\xff\xfe not utf-8\n")
        sources = model.open_sources(self.path)
        self.addCleanup(model.close_sources, sources)
        ix = model.index(sources, where=[Where("k=v"), Where("duration>0")], top=True)
        chosen = Selection().apply(ix.traces)
        trees = model.load(sources, chosen)
        top.as_table(top.summarise(ix, chosen), len(chosen))
        top.as_json(top.summarise(ix, chosen))
        followed = {t.trace_id: [] for t in chosen}
        page.render(trees, chosen, followed, "t", "n")
        for t in chosen:
            waterfall.render_trace(t, trees.get(t.trace_id, []), waterfall.Options(unicode=True, colour=True), io.StringIO())

    def test_a_pipe_as_file_is_read_twice(self):
        A = "a" * 32
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        data = line("svc", [raw_span(A, "1" * 16, None, "job", 0, 1)]).encode()
        writer = __import__("threading").Thread(target=lambda: open(fifo, "wb").write(data))
        writer.start()
        sources = model.open_sources(fifo)
        writer.join()
        self.addCleanup(model.close_sources, sources)
        ix = model.index(sources)
        self.assertEqual(model.load(sources, list(ix.traces.values()))[A][0].name, "job")

    def test_stdin_is_read_twice(self):
        A = "a" * 32
        data = line("svc", [raw_span(A, "1" * 16, None, "job", 0, 1)]).encode()
        sources = model.open_sources("-", stdin=io.BytesIO(data))
        self.addCleanup(model.close_sources, sources)
        ix = model.index(sources)
        trees = model.load(sources, list(ix.traces.values()))
        self.assertEqual(trees[A][0].name, "job")


class Page(unittest.TestCase):
    def test_events_links_resource_reach_the_page(self):
        A, B = "a" * 32, "b" * 32
        raw = raw_span(A, "1" * 16, None, "job", 0, 10, attrs=[("k", "v")], links=[(B, "2" * 16)])
        raw["events"] = [{"name": "retry", "timeUnixNano": str(T0 + 4 * MS),
                          "attributes": [{"key": "n", "value": {"intValue": "2"}}]}]
        s = model.Span(raw, {"service.name": "svc", "host.name": "h"}, "traceshim", 0)
        info = model.TraceInfo(A, 0)
        info.start, info.end, info.count, info.services, info.links = s.start, s.end, 1, {"svc"}, {B}
        text = page.render({A: [s]}, [info], {A: []}, "t", "n")
        data = json.loads(text.split('type="application/json">', 1)[1].split("</script>", 1)[0])
        row = data["traces"][0]["rows"][0]
        self.assertEqual(row["a"], [["k", "v"]])
        self.assertEqual(data["resources"][row["r"]], [["host.name", "h"], ["service.name", "svc"]])
        self.assertEqual(row["ev"], [{"n": "retry", "o": 4.0, "a": [["n", "2"]]}])
        self.assertEqual(row["ln"], [{"t": B, "s": "2" * 16, "a": []}])
        self.assertEqual(data["traces"][0]["follows"], [B])

    def test_markup_in_names_stays_text(self):
        A = "a" * 32
        s = span("</script><img src=x onerror=alert(1)>", 0, 10)
        info = model.TraceInfo(A, 0)
        info.start, info.end, info.count, info.services = s.start, s.end, 1, {"svc"}
        html = page.render({A: [s]}, [info], {}, "t", "n")
        self.assertNotIn("</script><img", html)
        self.assertEqual(html.count("</script>"), 2, "only the page's own two script elements end")
        self.assertNotIn("http://", html.replace("http://www.w3.org", ""), "nothing to fetch")


if __name__ == "__main__":
    unittest.main(verbosity=2)
