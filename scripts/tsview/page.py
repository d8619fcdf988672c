"""`traceshim show --html OUT`: one self-contained HTML file.

Everything is inline (CSS, JavaScript, the traces as JSON in a
<script type="application/json">), nothing is fetched: the file can be mailed,
attached to a ticket or opened offline. The script builds the page with
textContent only, never innerHTML, so span names and attribute values from a
traced program cannot inject markup.
"""

import json

from tsview.model import KINDS, fmt_value, walk
from tsview.waterfall import More, plan_children, timestamp

# Distinct hues for services, in order of first appearance.
PALETTE = ("#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948",
           "#9c755f", "#ff9da7", "#6b8e23", "#bab0ac", "#1f77b4", "#8c564b")


def _ms(ns):
    return None if ns is None else round(ns / 1e6, 6)


def _pairs(d):
    return [[k, fmt_value(v)] for k, v in sorted(d.items())]


class _Tables:
    def __init__(self):
        self.services, self.service_index = [], {}
        self.resources, self.resource_index = [], {}

    def service(self, name):
        i = self.service_index.get(name)
        if i is None:
            i = self.service_index[name] = len(self.services)
            self.services.append({"name": name, "colour": PALETTE[i % len(PALETTE)]})
        return i

    def resource(self, res):
        key = json.dumps(_pairs(res))
        i = self.resource_index.get(key)
        if i is None:
            i = self.resource_index[key] = len(self.resources)
            self.resources.append(_pairs(res))
        return i


def _trace_data(info, top, tables, followed_by, collapse):
    t0 = info.start
    rows, groups = [], []

    def off(ns):
        return None if ns is None or t0 is None else _ms(ns - t0)

    def add(span, depth, group):
        rows.append({
            "n": span.name, "k": KINDS.get(span.kind, "kind%d" % span.kind), "d": depth,
            "s": tables.service(span.service), "o": off(span.start), "u": _ms(span.duration),
            "e": 1 if span.is_error else 0, "m": span.status_message, "st": span.status_code,
            "id": span.span_id, "p": span.parent_id, "orphan": 1 if span.orphan else 0,
            "a": _pairs(span.attrs), "r": tables.resource(span.resource), "g": group,
            "ev": [{"n": e["name"], "o": off(e["time"]), "a": _pairs(e["attrs"])} for e in span.events],
            "ln": [{"t": l["trace_id"], "s": l["span_id"], "a": _pairs(l["attrs"])} for l in span.links],
        })

    stack = [(span, 0) for span in reversed(top)]  # a stack: deep traces, no recursion limit
    while stack:
        item, depth = stack.pop()
        if isinstance(item, More):
            g = len(groups)
            groups.append({"n": item.name, "c": len(item.spans), "d": depth, "o": off(item.start),
                           "u": _ms(None if item.start is None or item.end is None else item.end - item.start),
                           "total": _ms(item.total), "below": item.below, "at": len(rows)})
            for hidden in item.spans:
                for x, below in _subtree(hidden):
                    add(x, depth + below, g)
            continue
        add(item, depth, -1)
        for kid in reversed(plan_children(item.children, collapse)):
            stack.append((kid, depth + 1))
    search = " ".join({s.name for s in walk(top)} | set(info.services) | {info.trace_id}).lower()
    return {
        "id": info.trace_id, "started": timestamp(info.start), "dur": _ms(info.duration),
        "count": info.count, "errors": info.errors, "root": info.root_name or (top[0].name if top else ""),
        "services": sorted(tables.service(s) for s in info.services),
        "follows": sorted(info.links), "followedBy": list(followed_by),
        "rows": rows, "groups": groups, "search": search,
    }


def _subtree(span):
    """(span, depth below it) for span and everything under it, tree order."""
    out, stack = [], [(span, 0)]
    while stack:
        s, d = stack.pop()
        out.append((s, d))
        stack.extend((c, d + 1) for c in reversed(s.children))
    return out


def _json_for_script(obj):
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    # Inside <script>, "</script>" or "<!--" would end or change the element.
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render(traces, chosen, followed_by, title, note, collapse=True):
    """The whole page. traces: {id: top spans}; chosen: TraceInfos in order."""
    tables = _Tables()
    data = [_trace_data(t, traces.get(t.trace_id, []), tables, followed_by.get(t.trace_id, ()), collapse)
            for t in chosen]
    payload = {"title": title, "note": note, "services": tables.services, "resources": tables.resources,
               "traces": data}
    return (_HEAD.replace("@TITLE@", _escape(title))
            + "<script id=\"traces\" type=\"application/json\">" + _json_for_script(payload) + "</script>\n"
            + "<script>" + _SCRIPT + "</script>\n</body>\n</html>\n")


def _escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>@TITLE@</title>
<style>
:root { --fg:#1d1d1f; --muted:#6b6b70; --line:#e3e3e8; --bg:#fff; --panel:#f7f7f9; --err:#d62728; }
* { box-sizing: border-box; }
body { margin:0; font:13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { position:sticky; top:0; z-index:2; background:var(--bg); border-bottom:1px solid var(--line); padding:8px 16px; display:flex; gap:16px; align-items:center; flex-wrap:wrap; }
header h1 { font-size:15px; margin:0; }
header .note { color:var(--muted); }
#search { flex:1; min-width:220px; max-width:480px; padding:5px 8px; border:1px solid #c8c8d0; border-radius:4px; font:inherit; }
#count { color:var(--muted); }
main { padding:8px 16px 40px; margin-right:var(--detail-width, 0); }
table.list { border-collapse:collapse; width:100%; margin-bottom:14px; }
table.list th, table.list td { text-align:left; padding:3px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
table.list th { color:var(--muted); font-weight:600; }
table.list td.num { text-align:right; font-variant-numeric:tabular-nums; }
table.list tr.t { cursor:pointer; }
table.list tr.t:hover { background:var(--panel); }
.chip { display:inline-block; padding:0 6px; margin-right:4px; border-radius:8px; color:#fff; font-size:11px; }
.errmark { color:var(--err); font-weight:700; }
section.trace { border:1px solid var(--line); border-radius:6px; margin:10px 0; }
section.trace > h2 { font-size:13px; margin:0; padding:6px 10px; background:var(--panel); cursor:pointer; display:flex; gap:12px; flex-wrap:wrap; border-radius:6px 6px 0 0; }
section.trace > h2 .id { font-family:ui-monospace, monospace; }
section.trace.closed > .rows { display:none; }
.rows { padding:4px 0; }
.row { display:grid; grid-template-columns:minmax(260px, 38%) 1fr; align-items:center; min-height:20px; cursor:pointer; }
.row:hover, .row.sel { background:#eef3fb; }
.row.hit { background:#fff5cc; }
.row .name { overflow:hidden; text-overflow:ellipsis; white-space:nowrap; padding-right:8px; }
.row .name .dot { display:inline-block; width:9px; height:9px; border-radius:50%; margin-right:5px; vertical-align:middle; }
.row .name .kind { color:var(--muted); margin-left:6px; font-size:11px; }
.row .lane { position:relative; height:16px; margin-right:10px; border-left:1px solid var(--line); border-right:1px solid var(--line); }
.row .bar { position:absolute; top:2px; height:12px; min-width:2px; border-radius:2px; }
.row.err .bar { background-image:repeating-linear-gradient(45deg, transparent 0 4px, rgba(255,255,255,.45) 4px 8px); outline:2px solid var(--err); }
.row.err .name { color:var(--err); font-weight:600; }
.row .dur { position:absolute; top:0; font-size:11px; color:var(--muted); white-space:nowrap; }
.row.more .name { color:var(--muted); font-style:italic; }
.row.more .bar { background:repeating-linear-gradient(90deg, #b0b0b8 0 3px, transparent 3px 5px) !important; }
.row.gone { display:none; }
.axis { display:grid; grid-template-columns:minmax(260px, 38%) 1fr; color:var(--muted); font-size:11px; }
.axis .ticks { position:relative; height:14px; margin-right:10px; border-bottom:1px solid var(--line); }
.axis .tick { position:absolute; top:0; transform:translateX(-50%); white-space:nowrap; }
.axis .tick:first-child { transform:none; }
.axis .tick:last-child { transform:translateX(-100%); }
.links { color:var(--muted); padding:2px 10px; }
.links a { color:#2a5db0; }
aside#detail { position:fixed; z-index:3; top:0; right:0; bottom:0; width:var(--detail-width, 0); overflow:auto; background:var(--panel); border-left:1px solid var(--line); padding:10px 14px; display:none; }
body.detail { --detail-width:380px; }
body.detail aside#detail { display:block; }
aside h3 { margin:14px 0 4px; font-size:12px; text-transform:uppercase; color:var(--muted); }
aside h2 { margin:0 0 4px; font-size:15px; word-break:break-all; }
aside table { border-collapse:collapse; width:100%; }
aside td { vertical-align:top; padding:2px 4px; border-bottom:1px solid var(--line); word-break:break-all; font-family:ui-monospace, monospace; font-size:12px; }
aside td:first-child { color:var(--muted); width:40%; }
aside .close { float:right; cursor:pointer; border:none; background:none; font-size:16px; }
.empty { color:var(--muted); font-style:italic; }
</style>
</head>
<body>
<header><h1 id="title"></h1><input id="search" type="search" placeholder="search: span name, service, trace id, attribute value…" autocomplete="off"><span id="count"></span><span class="note" id="note"></span></header>
<main>
<table class="list" id="list"><thead><tr><th>started</th><th>trace</th><th>root span</th><th class="num">duration</th><th class="num">spans</th><th>services</th><th>errors</th></tr></thead><tbody></tbody></table>
<div id="traces-view"></div>
</main>
<aside id="detail"></aside>
"""

_SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("traces").textContent);
const $ = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
};
const fmt = (ms) => ms === null || ms === undefined ? "?" : (ms >= 10000 ? (ms / 1000).toFixed(3) + " s" : ms.toFixed(3) + " ms");
const service = (i) => DATA.services[i];
const chip = (i) => $("span", {class: "chip", style: "background:" + service(i).colour}, service(i).name);

document.getElementById("title").textContent = DATA.title;
document.getElementById("note").textContent = DATA.note;
document.title = DATA.title;

const list = document.querySelector("#list tbody");
const view = document.getElementById("traces-view");
const sections = [];
const spanRows = {};
const listRows = [];

function table(pairs) {
  if (!pairs.length) return $("div", {class: "empty"}, "none");
  const t = $("table");
  for (const [k, v] of pairs) t.append($("tr", null, $("td", null, k), $("td", null, v)));
  return t;
}

function showDetail(trace, row, el) {
  document.querySelectorAll(".row.sel").forEach((x) => x.classList.remove("sel"));
  el.classList.add("sel");
  const d = document.getElementById("detail");
  d.replaceChildren();
  const close = $("button", {class: "close", title: "close"}, "×");
  close.onclick = () => { document.body.classList.remove("detail"); el.classList.remove("sel"); };
  const status = row.st === 2 ? "ERROR" + (row.m ? ": " + row.m : "") : row.st === 1 ? "OK" : "unset";
  d.append(close, $("h2", null, row.n),
    table([["service", service(row.s).name], ["kind", row.k], ["status", status], ["duration", fmt(row.u)],
           ["start", "+" + fmt(row.o) + " into the trace"], ["trace id", trace.id], ["span id", row.id],
           ["parent span id", row.p || "(root)"]].concat(row.orphan ? [["note", "parent not in the file"]] : [])),
    $("h3", null, "attributes"), table(row.a),
    $("h3", null, "resource"), table(DATA.resources[row.r]),
    $("h3", null, "events"));
  if (!row.ev.length) d.append($("div", {class: "empty"}, "none"));
  for (const ev of row.ev) d.append($("div", null, $("b", null, ev.n), " at +" + fmt(ev.o)), table(ev.a));
  d.append($("h3", null, "links"));
  if (!row.ln.length) d.append($("div", {class: "empty"}, "none"));
  for (const l of row.ln) {
    const target = document.getElementById("trace-" + l.t);
    const label = "trace " + l.t + " span " + l.s;
    d.append($("div", null, target ? $("a", {href: "#trace-" + l.t}, label) : label + " (not in this page)"), table(l.a));
  }
  document.body.classList.add("detail");
}

function bar(trace, off, dur, colour) {
  const total = trace.dur || 0;
  const lane = $("div", {class: "lane"});
  if (off === null || off === undefined) return lane;
  const left = total > 0 ? Math.min(100, Math.max(0, off / total * 100)) : 0;
  const width = total > 0 ? Math.min(100 - left, Math.max(0, (dur || 0) / total * 100)) : 100;
  lane.append($("div", {class: "bar", style: "left:" + left + "%;width:" + width + "%;background:" + colour}));
  const label = $("span", {class: "dur"}, fmt(dur));
  if (left + width < 78) label.style.left = "calc(" + (left + width) + "% + 4px)";
  else label.style.right = "calc(" + (100 - left) + "% + 4px)";
  lane.append(label);
  return lane;
}

function spanRow(trace, row) {
  const s = service(row.s);
  const name = $("div", {class: "name", style: "padding-left:" + (6 + row.d * 16) + "px", title: row.n + " (" + s.name + ")"},
    $("span", {class: "dot", style: "background:" + s.colour}), row.n, $("span", {class: "kind"}, row.k + " · " + s.name));
  const el = $("div", {class: "row" + (row.e ? " err" : "") + (row.g >= 0 ? " gone" : "")}, name,
    bar(trace, row.o, row.u, s.colour));
  el.dataset.group = row.g;
  el.dataset.search = (row.n + " " + s.name + " " + row.a.map((p) => p.join("=")).join(" ")).toLowerCase();
  el.id = "span-" + trace.id + "-" + row.id;
  el.onclick = () => showDetail(trace, row, el);
  spanRows[el.id] = [trace, row, el];
  return el;
}

function moreRow(trace, g, index, rowsEl) {
  const el = $("div", {class: "row more"},
    $("div", {class: "name", style: "padding-left:" + (6 + g.d * 16) + "px"},
      "… " + g.c + " more `" + g.n + "` (total " + fmt(g.total) + (g.below ? ", " + g.below + " below" : "") + ") — click to show"),
    bar(trace, g.o, g.u, "#b0b0b8"));
  el.onclick = () => {
    rowsEl.querySelectorAll('.row[data-group="' + index + '"]').forEach((x) => x.classList.remove("gone"));
    el.remove();
  };
  return el;
}

DATA.traces.forEach((trace, ti) => {
  const tr = $("tr", {class: "t"},
    $("td", null, trace.started), $("td", null, $("code", null, trace.id.slice(0, 16) + "…")),
    $("td", null, trace.root), $("td", {class: "num"}, fmt(trace.dur)), $("td", {class: "num"}, trace.count),
    $("td", null, ...trace.services.map(chip)),
    $("td", null, trace.errors ? $("span", {class: "errmark"}, "✖ " + trace.errors + " error" + (trace.errors > 1 ? "s" : "")) : ""));
  list.append(tr);
  listRows.push(tr);

  const head = $("h2", null, $("span", {class: "id"}, "trace " + trace.id), $("span", null, trace.root),
    $("span", null, fmt(trace.dur)), $("span", null, trace.count + " span" + (trace.count === 1 ? "" : "s")),
    $("span", null, trace.started),
    trace.errors ? $("span", {class: "errmark"}, "✖ " + trace.errors + " error" + (trace.errors > 1 ? "s" : "")) : null,
    $("span", null, ...trace.services.map(chip)));
  const rowsEl = $("div", {class: "rows"});
  const sec = $("section", {class: "trace" + (ti < 10 ? "" : " closed"), id: "trace-" + trace.id}, head);
  if (trace.follows.length || trace.followedBy.length) {
    const links = $("div", {class: "links"});
    for (const id of trace.follows) links.append("follows ", $("a", {href: "#trace-" + id}, id), " ");
    for (const id of trace.followedBy) links.append("followed by ", $("a", {href: "#trace-" + id}, id), " ");
    sec.append(links);
  }
  // The time axis the bars are drawn on: the trace from its first start to its last end.
  const ticks = $("div", {class: "ticks"});
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    ticks.append($("span", {class: "tick", style: "left:" + f * 100 + "%"}, fmt((trace.dur || 0) * f)));
  }
  rowsEl.append($("div", {class: "axis"}, $("div"), ticks));
  sec.append(rowsEl);
  const groupsAt = {};
  trace.groups.forEach((g, gi) => { (groupsAt[g.at] = groupsAt[g.at] || []).push([g, gi]); });
  trace.rows.forEach((row, ri) => {
    for (const [g, gi] of groupsAt[ri] || []) rowsEl.append(moreRow(trace, g, gi, rowsEl));
    rowsEl.append(spanRow(trace, row));
  });
  head.onclick = () => sec.classList.toggle("closed");
  tr.onclick = () => { sec.classList.remove("closed"); sec.scrollIntoView({block: "start"}); };
  view.append(sec);
  sections.push({trace, sec, tr, text: trace.search + " " + trace.rows.map((r) => r.a.map((p) => p[1]).join(" ")).join(" ").toLowerCase()});
});
if (!DATA.traces.length) view.append($("p", {class: "empty"}, "No traces matched."));

const count = document.getElementById("count");
function applySearch() {
  const words = document.getElementById("search").value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const s of sections) {
    const ok = words.every((w) => s.text.includes(w));
    s.sec.style.display = ok ? "" : "none";
    s.tr.style.display = ok ? "" : "none";
    if (ok) shown++;
    s.sec.querySelectorAll(".row").forEach((r) => {
      const hit = ok && words.length > 0 && r.dataset.search !== undefined && words.every((w) => r.dataset.search.includes(w));
      r.classList.toggle("hit", hit);
    });
  }
  count.textContent = shown + " of " + sections.length + " trace" + (sections.length === 1 ? "" : "s");
}
document.getElementById("search").addEventListener("input", applySearch);
// #q=WORDS starts with those words in the search box (a link to a search).
const hash = decodeURIComponent(location.hash.slice(1));
if (hash.startsWith("q=")) document.getElementById("search").value = hash.slice(2);
applySearch();
// #span-TRACEID-SPANID opens that span (a link to share, or to look at in a screenshot).
const wanted = spanRows[hash];
if (wanted) {
  const [trace, row, el] = wanted;
  el.closest("section").classList.remove("closed");
  el.classList.remove("gone");
  showDetail(trace, row, el);
  el.scrollIntoView({block: "nearest"});
}
document.body.dataset.rendered = "1";
"""
