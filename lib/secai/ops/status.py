"""`make status` and the summary `make all` ends with: what is built and when, counts per stage,
the latest fine-tuned models with their evaluation, and the daemon's last cycle.

    python -m secai.ops.status --build build [--json] [--write build/summary.json]

Everything is read from the files the pipeline wrote; nothing is computed again.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import orjson

from secai import config
from secai.files import write_atomic
from secai.training import store


def _when(path: Path) -> str | None:
    if not path.exists():
        return None
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(microsecond=0).isoformat()


def _lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _json(path: Path) -> dict | None:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def collect(build: Path) -> dict:
    """The state of a build directory as one JSON-able dict."""
    stages = []

    def stage(name: str, path: Path, count: int | None, unit: str) -> None:
        stages.append({"stage": name, "path": str(path), "built": _when(path), "count": count, "unit": unit})

    stage("parse", build / "findings.jsonl", _lines(build / "findings.jsonl"), "findings")
    rejects = _lines(build / "rejects.jsonl")
    index = _json(build / "index" / "manifest.json") or {}
    stage("index", build / "index", index.get("count"), "findings indexed")
    stage("analyze", build / "analyses.jsonl", _lines(build / "analyses.jsonl"), "analyses")
    sarif = _json(build / "analyses.sarif")
    stage("sarif", build / "analyses.sarif", sum(len(r.get("results", [])) for r in sarif["runs"]) if sarif else None, "results")
    for name in ("analysis", "codefix"):
        stage(f"narrate {name}", build / "training" / f"{name}.jsonl", _lines(build / "training" / f"{name}.jsonl"), "examples")
    for name in ("analysis", "codefix", "combined"):
        m = _json(build / "datasets" / name / "manifest.json")
        if m is None and name == "combined":
            continue
        splits = ", ".join(f"{k} {v['examples']}" for k, v in m["splits"].items()) if m else None
        stages.append({"stage": f"dataset {name}", "path": str(build / "datasets" / name), "built": _when(build / "datasets" / name / "manifest.json"),
                       "count": m["examples"] if m else None, "unit": "examples" + (f" ({splits})" if splits else "")})
    models = []
    for name in ("analysis", "codefix", "combined"):
        meta = _json(build / "finetune" / f"{name}.json")
        if not meta:
            continue
        if "skipped" in meta:
            models.append({"stage": name, "skipped": meta["skipped"]})
            continue
        where = store.local(meta["path"])  # recorded relative to the models dir (store.portable): found here
        report = (_json(where / "eval.json") if where else None) or {}
        models.append({"stage": name, "name": meta["name"], "path": str(where or meta["path"]), "created": meta["created"],
                       "base": meta["base_model"]["name"], "test_model": meta["base_model"]["test_model"],
                       "steps": meta["training"]["steps"], "tokens_per_second": meta["training"]["tokens_per_second"],
                       "val_loss": [meta["eval"]["val_loss_before"], meta["eval"]["val_loss_after"]],
                       "heldout_loss": report.get("loss"), "good_answers": report.get("generation"),
                       "forgetting": report.get("forgetting")})
    daemon_log = Path(config.get("daemon", "log"))
    last = None
    if daemon_log.is_file():
        lines = daemon_log.read_text(encoding="utf-8", errors="replace").splitlines()
        last = lines[-1] if lines else None
    quality = _json(build / "quality.json")
    return {"build": str(build), "stages": stages, "rejects": rejects, "models": models,
            "quality": quality["total"] if quality else None,
            "daemon": {"log": str(daemon_log), "last_cycle": last}}


def _fmt(x, digits=4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def render(state: dict) -> str:
    out = [f"secai: {state['build']}"]
    width = max(len(s["stage"]) for s in state["stages"])
    for s in state["stages"]:
        if s["built"] is None:
            out.append(f"  {s['stage']:<{width}}  not built")
        else:
            count = "" if s["count"] is None else f"{s['count']:,} {s['unit']}"
            out.append(f"  {s['stage']:<{width}}  {count:<34} {s['path']}  ({s['built'][:16].replace('T', ' ')})")
    if state["rejects"]:
        out.append(f"  {state['rejects']} report(s) rejected: {state['build']}/rejects.jsonl")
    for m in state["models"]:
        if "skipped" in m:
            out.append(f"  model {m['stage']}: skipped ({m['skipped']})")
            continue
        line = (f"  model {m['stage']}: {m['name']} on {m['base']}{' (TEST MODEL)' if m['test_model'] else ''}, "
                f"{m['steps']} steps, val loss {_fmt(m['val_loss'][0])} -> {_fmt(m['val_loss'][1])}")
        if m["heldout_loss"]:
            g = m["good_answers"] or {}
            line += (f"; held-out loss {_fmt(m['heldout_loss'].get('base'))} -> {_fmt(m['heldout_loss'].get('adapter'))}, "
                     f"good answers {_fmt(g.get('base'), 2)} -> {_fmt(g.get('adapter'), 2)}")
        if m["forgetting"]:
            line += f"; stage-1 loss {_fmt(m['forgetting']['before'])} -> {_fmt(m['forgetting']['after'])}"
        out.append(line)
        out.append(f"    {m['path']}")
    if not state["models"]:
        out.append("  no fine-tuned model yet (make finetune)")
    q = state.get("quality")
    if q:
        verified = "not verified" if q["verified_fix_share"] is None else f"{q['verified_fix_share']:.0%} verified"
        out.append(f"  quality: {q['template_share']:.0%} of analyses are templates; fixes for {q['fixes']} findings "
                   f"({verified}); {q['local_paths']} local paths and {q['emails']} e-mail addresses in training text; "
                   f"{q['unsupported_severity_claims']} unsupported severity claims (make quality)")
    out.append(f"  daemon: {state['daemon']['last_cycle'] or 'no cycle yet'}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m secai.ops.status", description="What the pipeline has built (make status).")
    p.add_argument("--build", default=config.get("paths", "build"), help="build directory (default: paths.build)")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.add_argument("--write", metavar="FILE", help="also write the JSON here (atomically)")
    p.add_argument("--latest-model", action="store_true", help="print the newest fine-tuned model's directory (or nothing)")
    a = p.parse_args(argv)
    state = collect(Path(a.build))
    if a.latest_model:
        trained = [m for m in state["models"] if "path" in m and Path(m["path"]).is_dir()]
        if trained:
            print(max(trained, key=lambda m: m["created"])["path"])
        return 0
    if a.write:
        write_atomic(a.write, orjson.dumps(state, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write((orjson.dumps(state, option=orjson.OPT_INDENT_2).decode() if a.json else render(state)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
