"""The report in fewer words: Markdown for a README or a pull-request comment (GitHub folds each
finding into a <details> block), and plain text for a terminal. Untrusted text in Markdown is
escaped as SARIF's help is (secai.publishing.sarif.md: no HTML, links or images can be made of it)
and code goes in fences nothing in it can close; the terminal's control characters are escaped by
the command, as every command's output is."""

from __future__ import annotations

from secai.publishing.sarif import fence, md
from secai.training.card import num


def _cell(text) -> str:
    return md(str(text)).replace("|", "\\|").replace("\n", " ")


def _md_table(heads: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads),
            *("| " + " | ".join(_cell(c) for c in r) + " |" for r in rows), ""]


def _counts(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _share(v) -> str:
    return "—" if v is None else f"{v:.0%}"


def _verdict(f: dict, verification: bool) -> str:
    v = f["verdict"]
    if not f["fix"]:
        return "no fix"
    if v is None:
        return "fix not checked" if verification else "fix not verified (VERIFY off)"
    if v["verified"]:
        return "fix verified"
    return f"fix not verified ({v['reason']}" + (f": {v['detail']}" if v.get("detail") else "") + ")"


def _diff_lines(rows: list[list]) -> list[str]:
    sign = {"hunk": "", "same": " ", "del": "-", "add": "+"}
    return [sign[kind] + text for kind, _, _, text in rows]


def _eval_rows(models: list[dict]) -> list[list]:
    rows = []
    for m in models:
        ev = m.get("eval")
        if not ev:
            continue
        loss, gen, fg = ev.get("loss") or {}, ev.get("generation") or {}, ev.get("forgetting")
        rows.append([m["stage"], f"{ev.get('split')} ({ev.get('examples')})", num(loss.get("base")), num(loss.get("adapter")),
                     f"{_share(gen.get('base'))} → {_share(gen.get('adapter'))}",
                     f"{num(fg['before'])} → {num(fg['after'])}" if fg else "—"])
    return rows


EVAL_HEADS = ["stage", "held-out split", "loss base", "loss adapter", "good answers", "forgetting (stage-1 loss)"]


def _training_line(m: dict) -> str:
    if "skipped" in m:
        return f"stage {m['stage']}: skipped ({m['skipped']})"
    last = (m.get("curves") or {}).get("train") or []
    return (f"stage {m['stage']}: {m['name']} on {m['base']}{' (TEST MODEL)' if m['test_model'] else ''}, "
            f"{m['steps']} steps, validation loss {num(m['val_loss'][0])} → {num(m['val_loss'][1])}"
            + (f", last training loss {num(last[-1][1])}" if last else ""))


def markdown(facts: dict) -> str:
    out = [f"# secai report: {md(facts['build'])}", ""]
    c = facts["counts"]
    if c is None:
        return "\n".join(out + ["_No analyses in this build (make analyze)._", ""])
    verified = (f", {c['verified']} verified by the scanner that reported them" if facts["verification"]
                else " (not verified: VERIFY off)")
    out += [f"**{c['findings']} findings**, {c['fixes']} with a proposed fix{verified}.", ""]
    out += _md_table(["severity", "findings"], [[k, v] for k, v in c["severity"].items()])
    out += _md_table(["tool", "findings"], [[k, v] for k, v in c["tool"].items()])
    out += _md_table(["category", "findings"], [[k, v] for k, v in c["category"].items()])
    if facts["datasets"]:
        out += ["## Dataset", ""]
        out += _md_table(["dataset", "examples", "splits"],
                         [[name, d.get("examples"), ", ".join(f"{s} {v.get('examples')}" for s, v in d["splits"].items())]
                          for name, d in facts["datasets"].items()])
    if facts["models"]:
        out += ["## Training", "", *(f"- {md(_training_line(m))}" for m in facts["models"]), ""]
        rows = _eval_rows(facts["models"])
        if rows:
            out += _md_table(EVAL_HEADS, rows)
    q = facts["quality"]
    if q:
        t = q["total"]
        out += ["## Quality", "", f"{_share(t['template_share'])} of analyses are templates; verified fixes "
                f"{_share(t['verified_fix_share'])}; {t['local_paths']} local paths and {t['emails']} e-mail addresses "
                f"in training text; {t['unsupported_severity_claims']} unsupported severity claims.", ""]
    out += ["## Findings", ""]
    verification = facts["verification"] is not None
    for f in facts["findings"]:
        out += ["<details>", f"<summary>{md(f['severity'].upper())} · {md(f['tool'])} {md(f['rule_id'])} · {md(f['title'])} · "
                f"{md(f['where'])} · {md(_verdict(f, verification))}</summary>", ""]
        a = f["analysis"]
        for key in ("summary", "impact", "remediation"):
            if a.get(key):
                out += [f"**{key.capitalize()}.** {md(a[key])}", ""]
        if f["fix"]:
            out += [f"**Fix** ({md(_verdict(f, verification))}):", "", fence("\n".join(_diff_lines(f["fix"]["rows"])), "diff"), ""]
        out += ["</details>", ""]
    return "\n".join(out)


def text(facts: dict) -> str:
    out = [f"secai report: {facts['build']}"]
    c = facts["counts"]
    if c is None:
        return "\n".join(out + ["  no analyses in this build (make analyze)", ""])
    out += [f"  findings: {c['findings']} ({_counts(c['severity'])})", f"  tools: {_counts(c['tool'])}",
            f"  categories: {_counts(c['category'])}",
            f"  fixes: {c['fixes']} proposed, " + (f"{c['verified']} verified" if facts["verification"] else "not verified (VERIFY off)")]
    for name, d in (facts["datasets"] or {}).items():
        out.append(f"  dataset {name}: {d.get('examples')} examples ("
                   + ", ".join(f"{s} {v.get('examples')}" for s, v in d["splits"].items()) + ")")
    if not facts["datasets"]:
        out.append("  dataset: not built")
    for m in facts["models"] or []:
        out.append("  " + _training_line(m))
        ev = m.get("eval")
        if ev:
            out.append("    " + "; ".join(f"{h} {v}" for h, v in zip(EVAL_HEADS[1:], _eval_rows([m])[0][1:])))
    if not facts["models"]:
        out.append("  training: none (SKIP_FINETUNE=1 or not run)")
    q = facts["quality"]
    if q:
        t = q["total"]
        out.append(f"  quality: {_share(t['template_share'])} templates, {_share(t['verified_fix_share'])} verified fixes, "
                   f"{t['local_paths']} local paths, {t['emails']} e-mails, {t['unsupported_severity_claims']} unsupported severity claims")
    verification = facts["verification"] is not None
    out.append("")
    for f in facts["findings"]:
        out.append(f"{f['severity'].upper():<8} {f['tool']} {f['rule_id']}: {f['title']}  {f['where']}  [{_verdict(f, verification)}]")
        out.append(f"         {f['id']}")
        if f["analysis"].get("remediation"):
            out.append(f"         remediation: {f['analysis']['remediation']}")
    return "\n".join(out) + "\n"
