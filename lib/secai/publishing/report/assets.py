"""The report page's style sheet and script, inlined into every page (nothing is loaded from
anywhere). The script only filters and opens what the page already holds: it reads the filter
controls and each finding's data-severity, data-tool and text, and never inserts markup."""

CSS = """
:root { --fg: #1d2329; --muted: #5b6670; --bg: #fff; --panel: #f5f7f9; --line: #d8dee4; --link: #0b5cad;
  --critical: #7a0019; --high: #c62828; --medium: #d97706; --low: #2e7d32; --info: #546e7a;
  --add-bg: #e6ffec; --add-fg: #116329; --del-bg: #ffebe9; --del-fg: #82071e; --hit: #fff8c5;
  --train: #1f77b4; --valid: #d62728; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9aa7b2; --bg: #0d1117; --panel: #161b22; --line: #30363d; --link: #58a6ff;
    --add-bg: #12361f; --add-fg: #7ee2a8; --del-bg: #3d1418; --del-fg: #ffa198; --hit: #3b3418; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header, main { max-width: 1100px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 20px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 32px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; } h4 { font-size: 14px; margin: 12px 0 4px; }
a { color: var(--link); }
nav a { margin-right: 14px; }
.muted { color: var(--muted); } .prose { white-space: pre-line; } .absent { color: var(--muted); font-style: italic; }
.notice { background: var(--hit); border: 1px solid var(--line); padding: 6px 10px; border-radius: 6px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: 16px; } .cards > div { flex: 1 1 240px; }
.bar { display: inline-block; height: 10px; background: var(--muted); border-radius: 2px; vertical-align: middle; }
.sev { display: inline-block; min-width: 64px; text-align: center; padding: 0 6px; border-radius: 10px;
  color: #fff; font-size: 12px; font-weight: 600; text-transform: uppercase; }
.sev-critical { background: var(--critical); } .sev-high { background: var(--high); } .sev-medium { background: var(--medium); }
.sev-low { background: var(--low); } .sev-info { background: var(--info); }
.bar.sev-critical, .bar.sev-high, .bar.sev-medium, .bar.sev-low, .bar.sev-info { min-width: 0; padding: 0; }
#filters { position: sticky; top: 0; z-index: 2; background: var(--bg); padding: 8px 0; border-bottom: 1px solid var(--line);
  display: flex; flex-wrap: wrap; gap: 10px; align-items: center; }
#filters input[type=search] { flex: 1 1 260px; padding: 4px 8px; }
#filters select, #filters input { font: inherit; }
details.finding { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; background: var(--bg); scroll-margin-top: 60px; }
details.finding > summary { cursor: pointer; padding: 6px 10px; display: flex; flex-wrap: wrap; gap: 8px; align-items: baseline; }
details.finding[open] > summary { border-bottom: 1px solid var(--line); background: var(--panel); }
details.finding.targeted, details.finding:target { outline: 3px solid var(--link); }
.body { padding: 6px 14px 12px; }
.rule { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
.where { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; color: var(--muted); }
.anchor { margin-left: auto; font-size: 12px; text-decoration: none; }
dl.analysis dt { font-weight: 600; margin-top: 6px; } dl.analysis dd { margin: 0 0 0 0; }
table.code { width: 100%; border: 1px solid var(--line); font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, monospace; }
table.code td { border: 0; padding: 0 8px; white-space: pre-wrap; word-break: break-all; }
table.code td.n { width: 1%; color: var(--muted); text-align: right; user-select: none; white-space: nowrap; }
table.code tr.hit td { background: var(--hit); }
table.code tr.add td { background: var(--add-bg); color: var(--add-fg); }
table.code tr.del td { background: var(--del-bg); color: var(--del-fg); }
table.code tr.hunk td { background: var(--panel); color: var(--muted); }
.verdict { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; border: 1px solid var(--line); }
.verdict.ok { background: var(--add-bg); color: var(--add-fg); } .verdict.no { background: var(--del-bg); color: var(--del-fg); }
.verdict.none { color: var(--muted); }
svg.loss-curve { max-width: 100%; height: auto; background: var(--bg); }
svg.loss-curve .plot { fill: none; stroke: var(--line); } svg.loss-curve .grid { stroke: var(--line); stroke-width: 0.5; }
svg.loss-curve text { fill: var(--muted); font-size: 11px; } svg.loss-curve .legend { fill: var(--fg); font-size: 12px; }
svg.loss-curve polyline { fill: none; stroke-width: 2; } svg.loss-curve line.key { stroke-width: 2; }
svg.loss-curve .train { stroke: var(--train); fill: var(--train); } svg.loss-curve polyline.train { fill: none; }
svg.loss-curve .valid { stroke: var(--valid); fill: var(--valid); } svg.loss-curve polyline.valid { fill: none; }
"""

JS = """
(function () {
  "use strict";
  var severity = document.getElementById("f-severity"), tool = document.getElementById("f-tool");
  var text = document.getElementById("f-text"), shown = document.getElementById("f-shown");
  var items = Array.prototype.slice.call(document.querySelectorAll("details.finding"));
  if (!severity || !items.length) return;
  var words = items.map(function (e) { return e.textContent.toLowerCase(); });
  function apply() {
    var s = severity.value, t = tool.value, q = text.value.trim().toLowerCase(), n = 0;
    items.forEach(function (e, i) {
      var show = (!s || e.dataset.severity === s) && (!t || e.dataset.tool === t) && (!q || words[i].indexOf(q) >= 0);
      e.hidden = !show;
      if (show) n++;
    });
    shown.textContent = n + " of " + items.length + " findings shown";
  }
  function target() {
    var id = decodeURIComponent(location.hash.slice(1)), e = id && document.getElementById(id);
    if (!e || !e.classList.contains("finding")) return;
    if (e.hidden) { severity.value = ""; tool.value = ""; text.value = ""; apply(); }
    items.forEach(function (x) { x.classList.remove("targeted"); });
    e.open = true;
    e.classList.add("targeted");
    e.scrollIntoView({block: "start"});
  }
  [severity, tool].forEach(function (c) { c.addEventListener("change", apply); });
  text.addEventListener("input", apply);
  document.getElementById("f-clear").addEventListener("click", function () {
    severity.value = ""; tool.value = ""; text.value = ""; apply();
  });
  window.addEventListener("hashchange", target);
  apply();
  target();
})();
"""
