"""The report as one static HTML page: everything inline (style, script, the loss curves as SVG), no
reference to anything it would load, a Content-Security-Policy that forbids loading anything at all,
and every text from the build (scanner messages, code, fixes, model output) escaped with
html.escape, so that it shows as text and never acts as markup.

Each finding is a <details class="finding" id="FINDING-ID"> carrying data-severity, data-tool and
data-category: the script filters on them and on the text, and `report.html#FINDING-ID` opens and
highlights that finding."""

from __future__ import annotations

from html import escape

from secai.parsing.finding import SEVERITIES
from secai.publishing.report.assets import CSS, JS
from secai.publishing.report.chart import loss_svg
from secai.training.card import num
from secai.untrusted import http_url

# nothing may be fetched; inline style and script only (the page holds no other)
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
SECTIONS = (("overview", "Overview"), ("findings", "Findings"), ("verification", "Verification"),
            ("dataset", "Dataset"), ("training", "Training"), ("quality", "Quality"))


def e(value) -> str:
    """Any value as HTML text (quotes too: safe inside an attribute)."""
    return escape("" if value is None else str(value), quote=True)


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return num(value, digits)
    return f"{value:,}" if isinstance(value, int) else str(value)


def share(value) -> str:
    return "—" if value is None else f"{value:.0%}"


def absent(what: str) -> str:
    return f'<p class="absent">{e(what)}</p>'


def table(heads: list[str], rows: list[list], numeric: set[int] = frozenset(), cls: str = "") -> str:
    """A table of already formatted cells (escaped here); columns in `numeric` right-aligned."""
    def cell(tag, i, v):
        return f'<{tag}{" class=num" if i in numeric else ""}>{e(v)}</{tag}>'

    head = "".join(cell("th", i, h) for i, h in enumerate(heads))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<table{f" class={cls}" if cls else ""}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ---------------------------------------------------------------- overview

def _count_table(title: str, counts: dict, badge: bool = False) -> str:
    top = max(counts.values(), default=1)
    rows = []
    for name, n in counts.items():
        label = f'<span class="sev sev-{e(name)}">{e(name)}</span>' if badge else e(name)
        bar = f'<span class="bar{f" sev-{e(name)}" if badge else ""}" style="width:{round(120 * n / top)}px"></span>'
        rows.append(f"<tr><td>{label}</td><td class=num>{n}</td><td>{bar}</td></tr>")
    return f"<div><h3>{e(title)}</h3><table><tbody>{''.join(rows)}</tbody></table></div>"


def overview(facts: dict) -> str:
    c = facts["counts"]
    if c is None:
        return absent("No analyses in this build (make analyze).")
    parts = [f"<p>{c['findings']} findings; {c['fixes']} with a proposed fix"
             + (f", {c['verified']} of them verified by the scanner that reported them" if facts["verification"] else
                " (fixes not verified: VERIFY was off)") + ".</p>",
             '<div class="cards">', _count_table("By severity", c["severity"], badge=True),
             _count_table("By tool", c["tool"]), _count_table("By category", c["category"]), "</div>"]
    if facts["stages"]:
        rows = [[s["stage"], "not built" if s["built"] is None else fmt(s["count"]), s["unit"] or ""] for s in facts["stages"]]
        parts += ["<h3>Pipeline</h3>", table(["stage", "count", "of"], rows, {1})]
    return "".join(parts)


# ---------------------------------------------------------------- findings

def code_table(code: dict) -> str:
    lines = code["code"].replace("\r\n", "\n").split("\n")
    first, last = code.get("finding_lines") or (0, -1)
    rows = []
    for i, line in enumerate(lines):
        n = code["start_line"] + i
        rows.append(f'<tr{" class=hit" if first <= n <= last else ""}><td class=n>{n}</td><td>{e(line)}</td></tr>')
    return f'<table class="code" data-language="{e(code["language"])}"><tbody>{"".join(rows)}</tbody></table>'


def diff_table(rows: list[list]) -> str:
    sign = {"same": " ", "del": "-", "add": "+"}
    out = []
    for kind, old, new, text in rows:
        if kind == "hunk":
            out.append(f'<tr class=hunk><td class=n></td><td class=n></td><td>{e(text)}</td></tr>')
        else:
            out.append(f'<tr class={kind}><td class=n>{fmt(old) if old else ""}</td><td class=n>{fmt(new) if new else ""}</td>'
                       f"<td>{sign[kind]} {e(text)}</td></tr>")
    return f'<table class="code diff"><tbody>{"".join(out)}</tbody></table>'


def verdict_badge(f: dict, verification: bool) -> str:
    if not f["fix"]:
        return ""
    v = f["verdict"]
    if v is None:
        return f'<span class="verdict none">{"fix not checked" if verification else "fix not verified (VERIFY off)"}</span>'
    if v["verified"]:
        return '<span class="verdict ok">fix verified</span>'
    detail = f": {v['detail']}" if v.get("detail") else ""
    return f'<span class="verdict no">fix not verified ({e(v["reason"])}{e(detail)})</span>'


def prose(title: str, text) -> str:
    return f"<dt>{e(title)}</dt><dd class=prose>{e(text)}</dd>" if text else ""


def link(ref: str) -> str:
    url = http_url(ref)
    return f'<a href="{e(url)}" rel="noreferrer noopener" target="_blank">{e(ref)}</a>' if url else e(ref)


def finding(f: dict, verification: bool) -> str:
    fid = e(f["id"])
    meta = [f"category {f['category']}"]
    if f["cwe"] or f["cve"]:
        meta.append(", ".join(f["cwe"] + f["cve"]))
    if f["tool_severity"]:
        meta.append(f"{f['tool']} severity {f['tool_severity']}")
    if f["occurrences"] > 1:
        meta.append(f"reported {f['occurrences']} times")
    if f["suppressed"]:
        meta.append("suppressed by the scanner")
    meta.append(f"analysis: {f['producer']}")
    a, risk = f["analysis"], f["risk"]
    body = [f'<p class="muted">{e(" · ".join(meta))} · id <code>{fid}</code></p>']
    if f["message"]:
        body.append(f'<h4>{e(f["tool"])} says</h4><p class="message prose">{e(f["message"])}</p>')
    body.append('<dl class="analysis">' + prose("Summary", a.get("summary")) + prose("Impact", a.get("impact"))
                + prose("Risk here", f"{risk['rating']}: {risk['rationale']}") + prose("Remediation", a.get("remediation"))
                + prose("Prevention", a.get("prevention")) + "</dl>")
    if f["code"]:
        c = f["code"]
        body.append(f'<h4>Code <span class="where">{e(c["path"])}, lines {c["start_line"]}–{c["end_line"]}</span></h4>'
                    + code_table(c))
    if f["fix"]:
        fix = f["fix"]
        where = "placed in the code above" if fix["placed"] else "the lines it replaces, not placed in the file"
        body.append(f'<h4>Fix <span class="muted">({e(fix["language"])}; {where})</span> {verdict_badge(f, verification)}</h4>')
        if fix["explanation"]:
            body.append(f'<p class="prose">{e(fix["explanation"])}</p>')
        body.append(diff_table(fix["rows"]))
        if fix["verification"]:
            body.append(f'<p class="prose"><b>How to check it:</b> {e(fix["verification"])}</p>')
    if f["references"]:
        body.append("<h4>References</h4><ul>" + "".join(f"<li>{link(r)}</li>" for r in f["references"]) + "</ul>")
    return (f'<details class="finding" id="{fid}" data-severity="{e(f["severity"])}" data-tool="{e(f["tool"])}" '
            f'data-category="{e(f["category"])}"><summary><span class="sev sev-{e(f["severity"])}">{e(f["severity"])}</span> '
            f'<span class="tool">{e(f["tool"])}</span> <span class="rule">{e(f["rule_id"])}</span> '
            f'<span class="title">{e(f["title"])}</span> <span class="where">{e(f["where"])}</span> '
            f'{verdict_badge(f, verification)}<a class="anchor" href="#{fid}" title="link to this finding">#</a></summary>'
            f'<div class="body">{"".join(body)}</div></details>')


def findings_section(facts: dict) -> str:
    items = facts["findings"]
    if items is None:
        return absent("No analyses in this build (make analyze).")
    if not items:
        return absent("The scanners reported nothing.")
    sev = [s for s in SEVERITIES if s in facts["counts"]["severity"]]
    options = "".join(f'<option value="{e(s)}">{e(s)}</option>' for s in sev)
    tools = "".join(f'<option value="{e(t)}">{e(t)}</option>' for t in facts["counts"]["tool"])
    controls = (f'<div id="filters"><label>severity <select id="f-severity"><option value="">all</option>{options}</select></label>'
                f'<label>tool <select id="f-tool"><option value="">all</option>{tools}</select></label>'
                '<input id="f-text" type="search" placeholder="filter by text: rule, file, CWE, words…" aria-label="filter by text">'
                '<button id="f-clear" type="button">clear</button><span id="f-shown" class="muted"></span></div>')
    verification = facts["verification"] is not None
    return controls + '<div id="finding-list">' + "".join(finding(f, verification) for f in items) + "</div>"


# ---------------------------------------------------------------- verification, dataset, training, quality

def verification_section(facts: dict) -> str:
    v = facts["verification"]
    if v is None:
        return absent("Fixes were not verified in this build (VERIFY=1 needs checkov, semgrep and bandit: make scanners).")
    parts = [f"<p>{v['verified']} of {v['total']} code fixes verified: the scanner that reported the finding no longer "
             "reports it on a fixed copy of the file, and reports nothing new there.</p>"]
    for key, title in (("by_tool", "scanner"), ("by_language", "language")):
        rows = [[name, c["verified"], c["total"]] for name, c in (v.get(key) or {}).items()]
        if rows:
            parts.append(table([title, "verified", "fixes"], rows, {1, 2}))
    if v.get("not_verified"):
        parts.append("<h3>Not verified</h3>" + table(["reason", "fixes"], list(map(list, v["not_verified"].items())), {1}))
    return "".join(parts)


def dataset_section(facts: dict) -> str:
    if not facts["datasets"]:
        return absent("No dataset in this build (make dataset).")
    parts = []
    for name, d in facts["datasets"].items():
        parts.append(f"<h3>{e(name)} <span class=muted>({e(d.get('name', ''))})</span></h3>"
                     f"<p>{fmt(d.get('examples'))} examples of {fmt(d.get('groups'))} {e(d.get('group_by', 'group'))}s, "
                     f"split with seed {e(d.get('seed'))}"
                     + (f"; {d['duplicates_dropped']} duplicates dropped" if d.get("duplicates_dropped") else "") + ".</p>")
        rows = [[split, s.get("hf_split", split), fmt(s.get("examples")), fmt(s.get("findings")), fmt(s.get("replayed")),
                 ", ".join(f"{k} {n}" for k, n in (s.get("stages") or {}).items())] for split, s in d["splits"].items()]
        parts.append(table(["split", "Hub split", "examples", "findings", "replayed", "stages"], rows, {2, 3, 4}))
        mix = [[k, ", ".join(f"{n} {c}" for n, c in (d.get(k) or {}).items())]
               for k in ("tools", "severities", "categories", "producers") if d.get(k)]
        if mix:
            parts.append(table(["", "examples"], mix))
    return "".join(parts)


def eval_table(models: list[dict]) -> str:
    rows = []
    for m in models:
        ev = m.get("eval")
        if not ev:
            continue
        loss, ppl, gen, fg = ev.get("loss") or {}, ev.get("perplexity") or {}, ev.get("generation") or {}, ev.get("forgetting")
        rows.append([m["stage"], f"{ev.get('split')} ({fmt(ev.get('examples'))})", fmt(loss.get("base")), fmt(loss.get("adapter")),
                     fmt(ppl.get("base"), 2), fmt(ppl.get("adapter"), 2),
                     f"{share(gen.get('base'))} → {share(gen.get('adapter'))} of {fmt(gen.get('prompts'))}",
                     f"{fmt(fg['before'])} → {fmt(fg['after'])} ({fg['increase']:+.4f})" if fg else "—"])
    if not rows:
        return absent("No evaluation (make eval).")
    return table(["stage", "held-out split", "loss base", "loss adapter", "perplexity base", "perplexity adapter",
                  "good answers base → adapter", "forgetting: stage-1 loss before → after"], rows, {2, 3, 4, 5}, "eval")


def training_section(facts: dict) -> str:
    models = facts["models"]
    if not models:
        return absent("No model was trained in this build (SKIP_FINETUNE=1, or make finetune not run).")
    parts = []
    if any(m.get("test_model") for m in models):
        parts.append('<p class="notice">Trained on the tiny random-weight test model: the numbers prove the machinery '
                     "runs end to end; they say nothing about a useful model.</p>")
    for m in models:
        if "skipped" in m:
            parts.append(f"<h3>Stage {e(m['stage'])}</h3>" + absent(f"skipped: {m['skipped']}"))
            continue
        about = (f"model {m['name']} on {m['base']}" + (f", continuing from {m['from']}" if m["from"] else "")
                 + f"; {fmt(m['steps'])} steps" + (f", best at step {m['best_step']}" if m.get("best_step") is not None else "")
                 + f"; validation loss {fmt(m['val_loss'][0])} → {fmt(m['val_loss'][1])}")
        parts.append(f"<h3>Stage {e(m['stage'])}</h3><p>{e(about)}</p>")
        svg = loss_svg(m["curves"], m["stage"]) if m.get("curves") else ""
        parts.append(svg or absent("No loss curve: the model's training log is not in the model store here."))
    parts.append("<h3>Evaluation: base model vs adapter on held-out data</h3>" + eval_table(models))
    return "".join(parts)


def quality_section(facts: dict) -> str:
    q = facts["quality"]
    if not q:
        return absent("No quality figures (make quality).")
    heads = ["tool", "language", "findings", "rules", "template analyses", "verified fixes", "fixes", "local paths",
             "e-mails", "unsupported severity claims"]
    rows = [[r["tool"], r["language"], fmt(r["findings"]), fmt(r["rules"]), share(r["template_share"]),
             share(r["verified_fix_share"]), fmt(r["fixes"]), fmt(r["local_paths"]), fmt(r["emails"]),
             fmt(r["unsupported_severity_claims"])] for r in [*q["rows"], q["total"]]]
    return table(heads, rows, {2, 3, 4, 5, 6, 7, 8, 9}, "quality")


BODIES = {"overview": overview, "findings": findings_section, "verification": verification_section,
          "dataset": dataset_section, "training": training_section, "quality": quality_section}


def html(facts: dict) -> str:
    """The whole page."""
    nav = "".join(f'<a href="#{key}">{title}</a>' for key, title in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{title}</h2>{BODIES[key](facts)}</section>' for key, title in SECTIONS)
    title = f"secai report: {facts['build']}"
    return ("<!doctype html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>secai report</h1>"
            f'<p class="muted">build <b>{e(facts["build"])}</b></p><nav>{nav}</nav></header>'
            f"<main>{sections}</main><script>{JS}</script></body></html>\n")
