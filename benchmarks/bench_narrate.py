"""Benchmark secai-narrate: examples/s for both stages on --analyses analyses (default 5,000).
Writes build/bench/narrate.json.

The analyses are the shipped examples' (parsed and analysed here with the demo app as source root)
plus dependency findings whose manifest lines are under a generated source root, so that some
analyses carry code context and a fix that parses (codefix examples); they are repeated, every
other one with a fix, with
distinct ids up to --analyses, each with a title, summary and code of its own (knowledge-base
paragraphs and advisory texts stay shared across copies, as they are across real findings). Each
stage is one `python -m secai.commands.narrate` run, timed end to end
(start-up, reading and validating input, redaction, parse checks, validating and writing output).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _run(*argv: str, stdin: bytes = b"") -> bytes:
    return subprocess.run([PY, "-m", *argv], input=stdin, capture_output=True, check=True).stdout


def seed(work: Path) -> list[dict]:
    """Analyses of the shipped examples, and of dependency findings with a manifest line (fixes)."""
    examples = _run("secai.commands.parse", "-q", str(ROOT / "examples" / "artifacts"))
    out = _run("secai.commands.analyze", "-q", "--no-cache", "--source-root", str(ROOT / "examples" / "demo-app"), stdin=examples)
    deps = []
    for line in _run("secai.commands.parse", "-q", str(ROOT / "tests" / "fixtures" / "parse" / "trivy-json" / "fs.json")).splitlines():
        f = orjson.loads(line)
        if f.get("package", {}).get("fixed_versions") and f["package"].get("version"):
            deps.append(f)
    src = work / "src"
    manifest = src / "requirements.txt"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for f in deps:
        lines.append(f"{f['package']['name']}=={f['package']['version']}")
        f["location"] = {"path": "requirements.txt", "start_line": len(lines)}
    manifest.write_text("\n".join(lines) + "\n")
    stdin = b"".join(orjson.dumps(f, option=orjson.OPT_APPEND_NEWLINE) for f in deps)
    out += _run("secai.commands.analyze", "-q", "--no-cache", "--source-root", str(src), stdin=stdin)
    return [orjson.loads(line) for line in out.splitlines()]


def analyses(work: Path, n: int) -> list[dict]:
    """`n` analyses, every other one with a fix (so half of them make codefix examples)."""
    base = seed(work)
    pools = [[r for r in base if "fix" not in r["analysis"]], [r for r in base if "fix" in r["analysis"]]]
    out = []
    for i in range(n):
        pool = pools[i % 2]
        rec = orjson.loads(orjson.dumps(pool[(i // 2) % len(pool)]))
        rec["id"] = rec["finding"]["id"] = hashlib.sha256(f"bench-{i}".encode()).hexdigest()[:32]
        # texts of its own, as every real finding has (redaction results are cached per text)
        rec["finding"]["title"] += f" #{i}"
        rec["analysis"]["summary"] += f" Copy {i}."
        if "code_context" in rec:
            rec["code_context"]["code"] += f"\n# copy {i}"
        out.append(rec)
    return out


def run_narrate(src: Path, out: Path, stage: str) -> tuple[float, int, str]:
    t = time.perf_counter()
    proc = subprocess.run([PY, "-m", "secai.commands.narrate", str(src), "-o", str(out), "--stage", stage],
                          capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t
    return seconds, len(out.read_bytes().splitlines()), proc.stderr.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "build" / "bench" / "narrate.json"))
    ap.add_argument("--analyses", type=int, default=5000)
    args = ap.parse_args()
    bench = Path(args.out).parent
    bench.mkdir(parents=True, exist_ok=True)
    work = bench / "narrate-work"
    src = bench / "narrate-analyses.jsonl"
    records = analyses(work, args.analyses)
    src.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
    stages = {}
    for stage in ("analysis", "codefix"):
        seconds, made, log = run_narrate(src, bench / f"narrate-{stage}.jsonl", stage)
        stages[stage] = {"analyses": args.analyses, "examples": made, "seconds": round(seconds, 2),
                         "examples_per_s": round(made / seconds, 1), "analyses_per_s": round(args.analyses / seconds, 1),
                         "log": log}
    report = {"machine": {"cpus": os.cpu_count()}, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "input_mb": round(src.stat().st_size / 1e6, 1),
              "with_code_context": sum("code_context" in r for r in records),
              "with_fix": sum("fix" in r["analysis"] for r in records), **stages}
    Path(args.out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
