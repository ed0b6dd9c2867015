"""The yardstick of issue 14 on ../shared/realscans/ (real scans of pygoat, nodegoat and
kubernetes-goat with their sources; skipped when absent): parse, analyze and narrate each project
as `make all` does, and hold the quality report (secai.dataset.quality) to the issue's bar —
at most 10% of analyses are templates, no local path, e-mail address or unsupported severity claim
in training text — and hold each project's share of findings with a proposed code fix to the
floor reached so far, so no change loses fixes unnoticed. The issue's targets are for VERIFIED
fixes (30% pygoat and nodegoat, 50% kubernetes-goat); verification re-runs the scanners (minutes),
so `make quality-realscans` measures those."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import ROOT

from secai.dataset import quality

REALSCANS = ROOT.parent / "shared" / "realscans"
FIX_FLOOR = {"pygoat": 0.35, "nodegoat": 0.50, "kubernetes-goat": 0.50}  # proposed fixes, as measured (issue 14)

pytestmark = pytest.mark.skipif(not (REALSCANS / "README.md").is_file(), reason=f"{REALSCANS} is absent")


def secai(command: str, *args) -> None:
    done = subprocess.run([sys.executable, "-m", f"secai.commands.{command}", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize("project", sorted(FIX_FLOOR))
def test_realscans_quality(project, tmp_path):
    src = REALSCANS / project / "src"
    secai("parse", REALSCANS / project / "reports", "-o", tmp_path / "findings.jsonl")
    secai("analyze", tmp_path / "findings.jsonl", "-o", tmp_path / "analyses.jsonl", "--no-cache",
          "--source-root", src, "--semgrep-rules", REALSCANS / "semgrep-rules")
    for stage in ("analysis", "codefix"):
        secai("narrate", "--stage", stage, tmp_path / "analyses.jsonl", "-o", tmp_path / f"{stage}.jsonl")
    analyses = read(tmp_path / "analyses.jsonl")
    examples = read(tmp_path / "analysis.jsonl") + read(tmp_path / "codefix.jsonl")
    total = quality.figures(analyses, examples, None, quality.local_prefixes((str(REALSCANS),)))["total"]
    assert total["findings"] == len(analyses) > 0
    assert total["template_share"] <= 0.10, total
    assert (total["local_paths"], total["emails"], total["unsupported_severity_claims"]) == (0, 0, 0), total
    proposed = sum(1 for a in analyses if a["analysis"].get("fix")) / len(analyses)
    assert proposed >= FIX_FLOOR[project], f"{project}: fixes proposed for {proposed:.0%} of the findings"
