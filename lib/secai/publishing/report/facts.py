"""The facts of one build folder, read from the files `make all` writes there:

- `analyses.jsonl`: each finding with its analysis, code context and fix. The fix is shown as a
  diff of the code context before and after the fix is placed where verification and SARIF place
  it (secai.analysis.placement); where it cannot be placed, of its `original` and its code.
- `training/codefix-verify.json` (VERIFY=1): each fix's verdict (the analyses carry none); a fix
  that is not in it never became a code-fix example, for the reason secai.dataset.examples gives.
- `datasets/*/manifest.json`: counts and splits.
- `finetune/<stage>.json` (the model's metadata) and `finetune/eval-<stage>.json` (eval/1), with the
  model's `training_log.jsonl` from the model store for the loss curves.
- `quality.json` and `summary.json`.

Every text from the analyses goes through secai.secrets once more (the policy SARIF applies too),
and no path is added: the facts name files as the build recorded them relative to the project,
models by name, and nothing of summary.json's paths.
"""

from __future__ import annotations

import difflib
from collections import Counter
from pathlib import Path

import orjson

from secai.errors import InputError
from secai.parsing.finding import SEVERITIES
from secai.publishing.sarif import where
from secai.records import read_jsonl_strict
from secai.secrets import scrub_tree

STAGES = ("analysis", "codefix", "combined")
DIFF_CONTEXT = 3  # unchanged lines shown around each change


def _json(path: Path) -> dict | None:
    """A JSON file the pipeline wrote, or None when it is not there; a damaged one is an error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(str(path), None, exc.strerror or str(exc)) from exc
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(str(path), None, f"invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InputError(str(path), None, "expected a JSON object")
    return value


# ---------------------------------------------------------------- the fix as a diff

def diff_rows(old: list[str], new: list[str], old_first: int = 1, new_first: int = 1) -> list[list]:
    """A unified diff as rows [kind, old line number, new line number, text], kind one of hunk
    (text: the @@ header), same, del, add; line numbers count from old_first and new_first."""
    rows: list[list] = []
    for group in difflib.SequenceMatcher(None, old, new, autojunk=False).get_grouped_opcodes(DIFF_CONTEXT):
        (_, i1, _, j1, _), (_, _, i2, _, j2) = group[0], group[-1]
        rows.append(["hunk", None, None, f"@@ -{i1 + old_first},{i2 - i1} +{j1 + new_first},{j2 - j1} @@"])
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                rows += [["same", old_first + a1 + k, new_first + b1 + k, old[a1 + k]] for k in range(a2 - a1)]
                continue
            rows += [["del", old_first + k, None, old[k]] for k in range(a1, a2)]
            rows += [["add", None, new_first + k, new[k]] for k in range(b1, b2)]
    return rows


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").rstrip("\n").split("\n") if text else []


def fix_diff(context: dict | None, fix: dict) -> dict:
    """The diff of a fix: {"placed": whether it is the fix placed in the code context (line numbers
    are the file's), "rows": diff_rows}."""
    from secai.analysis import placement

    if context and context.get("code"):
        lines = context["code"].replace("\r\n", "\n").split("\n")
        try:
            placed = placement.place(lines, context, fix, first_line=context["start_line"])
        except placement.NotPlaced:
            pass
        else:
            first = context["start_line"]
            return {"placed": True, "rows": diff_rows(lines, placed.apply(lines, first), first, first)}
    return {"placed": False, "rows": diff_rows(_lines(fix.get("original", "")), _lines(fix["code"]))}


# ---------------------------------------------------------------- findings

def _verdict(record: dict, verdicts: dict | None, digests) -> dict | None:
    """The verdict on a finding's fix: the verification report's, or why it was never checked; None
    when the build verified nothing (VERIFY off) or the analysis has no fix."""
    if verdicts is None or not record["analysis"].get("fix"):
        return None
    found = verdicts.get(record["id"])
    if found:
        return {k: found[k] for k in ("verified", "reason", "detail") if k in found}
    from secai.dataset.examples import Skip, codefix_candidate

    try:
        codefix_candidate(record, digests)
    except Skip as why:
        return {"verified": False, "reason": f"not checked: {why}"}
    return {"verified": False, "reason": "not checked"}


def finding_facts(record: dict, verdicts: dict | None, digests) -> dict:
    rec = scrub_tree(record, digests)
    f, a, context = rec["finding"], rec["analysis"], rec.get("code_context")
    out = {"id": rec["id"], "tool": f["tool"], "rule_id": f["rule_id"], "title": f["title"],
           "severity": f["severity"], "tool_severity": f.get("tool_severity"), "category": f["category"],
           "cwe": f.get("cwe", []), "cve": f.get("cve", []), "where": where(f), "message": f.get("message"),
           "suppressed": bool(f.get("suppressed")), "occurrences": f.get("occurrences", 1),
           "analysis": {k: a[k] for k in ("summary", "impact", "remediation", "prevention") if k in a},
           "risk": a["risk"], "references": a.get("references", []),
           "producer": rec["producer"]["backend"], "fix": None, "code": None,
           "verdict": _verdict(record, verdicts, digests)}
    if context:
        out["code"] = {k: context[k] for k in ("path", "language", "start_line", "end_line", "code", "finding_lines")
                       if k in context}
    fix = a.get("fix")
    if fix:
        out["fix"] = {"language": fix["language"], "explanation": fix.get("explanation"),
                      "verification": fix.get("verification"), **fix_diff(context, fix)}
    return out


def counts(findings: list[dict]) -> dict:
    """Findings by severity (in severity order), tool and category (most first)."""
    def ranked(key):
        return dict(sorted(Counter(f[key] for f in findings).items(), key=lambda kv: (-kv[1], kv[0])))

    by_sev = Counter(f["severity"] for f in findings)
    return {"findings": len(findings), "severity": {s: by_sev[s] for s in SEVERITIES if by_sev[s]},
            "tool": ranked("tool"), "category": ranked("category"),
            "fixes": sum(1 for f in findings if f["fix"]),
            "verified": sum(1 for f in findings if f["verdict"] and f["verdict"]["verified"])}


# ---------------------------------------------------------------- datasets, training, quality

def dataset_facts(manifest: dict) -> dict:
    keys = ("name", "examples", "groups", "group_by", "seed", "fractions", "stages", "tools", "severities",
            "categories", "producers", "duplicates_dropped", "license")
    out = {k: manifest[k] for k in keys if k in manifest}
    out["splits"] = {name: {k: s[k] for k in ("examples", "findings", "groups", "replayed", "hf_split", "stages") if k in s}
                     for name, s in manifest.get("splits", {}).items()}
    return out


def curves(log: Path) -> dict | None:
    """Training and validation loss by step from a model's training_log.jsonl (None when absent)."""
    try:
        raw = log.read_bytes()
    except OSError:
        return None
    train, valid = [], []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(str(log), n, f"invalid JSON: {exc}") from exc
        if "train_loss" in entry:
            train.append([entry["step"], entry["train_loss"]])
        if "val_loss" in entry:
            valid.append([entry["step"], entry["val_loss"]])
    return {"train": train, "valid": valid}


def model_facts(build: Path, stage: str) -> dict | None:
    from secai.training import store

    meta = _json(build / "finetune" / f"{stage}.json")
    if meta is None:
        return None
    if "skipped" in meta:
        return {"stage": stage, "skipped": meta["skipped"]}
    report = _json(build / "finetune" / f"eval-{stage}.json")
    model_dir = store.local(meta.get("path"))
    t, base = meta.get("training", {}), meta.get("base_model", {})
    out = {"stage": stage, "name": meta["name"], "base": base.get("name"), "test_model": bool(base.get("test_model")),
           "from": (meta.get("from_adapter") or {}).get("name"), "created": meta.get("created"),
           "steps": t.get("steps"), "epochs": t.get("epochs"), "best_step": t.get("best_step"),
           "tokens_per_second": t.get("tokens_per_second"), "train_seconds": t.get("train_seconds"),
           "dataset_examples": meta.get("dataset", {}).get("examples"),
           "val_loss": [meta.get("eval", {}).get("val_loss_before"), meta.get("eval", {}).get("val_loss_after")],
           "curves": curves(model_dir / "training_log.jsonl") if model_dir else None, "eval": None}
    if report:
        out["eval"] = {k: report.get(k) for k in ("split", "examples", "loss", "perplexity", "generation", "forgetting")}
    return out


def summary_stages(summary: dict | None) -> list[dict] | None:
    """summary.json's counts per stage, without its paths."""
    if not summary:
        return None
    return [{"stage": s["stage"], "count": s.get("count"), "unit": s.get("unit"), "built": s.get("built")}
            for s in summary.get("stages", [])]


def gather(build: str | Path) -> dict:
    """Everything secai-report shows of the build folder `build`."""
    from secai.dataset.examples import secret_digests

    build = Path(build)
    if not build.is_dir():
        raise InputError(str(build), None, "no such build folder (make all BUILD=...)")
    path = build / "analyses.jsonl"
    records = [rec for _, rec in read_jsonl_strict(str(path), "analysis/1")] if path.is_file() else None
    verify = _json(build / "training" / "codefix-verify.json")
    verdicts = {v["finding_id"]: v for v in verify.get("fixes", [])} if verify else None
    digests = secret_digests(records or [])
    findings = [finding_facts(r, verdicts, digests) for r in records] if records is not None else None
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    if findings:
        findings.sort(key=lambda f: (rank[f["severity"]], f["tool"], f["rule_id"], f["where"], f["id"]))
    quality = _json(build / "quality.json")
    datasets = {name: dataset_facts(m) for name in STAGES if (m := _json(build / "datasets" / name / "manifest.json"))}
    models = [m for stage in STAGES if (m := model_facts(build, stage))]
    return {"build": build.name, "findings": findings, "counts": counts(findings) if findings is not None else None,
            "verification": ({k: verify[k] for k in ("verified", "total", "ratio", "by_tool", "by_language", "not_verified")
                              if k in verify} if verify else None),
            "datasets": datasets or None, "models": models or None,
            "quality": ({"total": quality["total"], "rows": quality.get("by_tool_language", []),
                         "verification": quality.get("verification")} if quality else None),
            "stages": summary_stages(_json(build / "summary.json"))}
