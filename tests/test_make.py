"""Pipeline test: `make` on a small copy of the project, checked for incremental rebuilds.

The copy holds the Makefile, bin/, lib/, schemas/, config/ and pyproject.toml, and a few reports
from examples/artifacts/. It borrows the real `.venv` through a symlink; its pyproject.toml is
dated before the venv's `.installed` stamp, so the copy's `install` step is up to date and never
runs (a guard checks this before any other make call, so the real venv is never reinstalled).
`PYTHONPATH` points at the copy's lib/, so the copy's code and config are what run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from conftest import ROOT, run_command
from secai.commands.parse import Parse

STAMP = ROOT / ".venv" / ".installed"
REPORTS = ["semgrep.json", "semgrep.sarif", "checkov.sarif"]  # a JSON + SARIF pair, and a second tool

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("bash") is None or not STAMP.is_file(),
    reason="needs make, bash and an installed .venv (make install)",
)


def _env(tree: Path) -> dict:
    """The environment for the nested make: nothing inherited from an outer make (`make test`
    passes MAKEFLAGS, and with it its command-line variables) and no variable the Makefile reads."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS",
                        "ARTIFACTS", "BUILD", "VENV", "PYTHON", "TORCH", "SCANNERS", "GITHUB_ACTIONS", "BASE_MODEL",
                        "MODELS_DIR", "NAME", "SKIP_FINETUNE", "FT_ARGS", "BACKEND", "SOURCE_ROOT", "HF_HUB_OFFLINE"}
           and not k.startswith("SECAI_")}
    env["PYTHONPATH"] = str(tree / "lib")
    return env


def make(tree: Path, *args: str, check: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
    # fine-tuning has its own tests (test_make_finetune.py); these are about the data pipeline
    proc = subprocess.run(["make", "--no-print-directory", "ARTIFACTS=artifacts", "SKIP_FINETUNE=1",
                           f"MODELS_DIR={tree / 'models'}", *args], cwd=tree,
                          env=_env(tree), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"make {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small copy of the project with a three-report artifacts tree."""
    return project_copy(tmp_path, REPORTS)


def project_copy(tmp_path: Path, reports: list[str]) -> Path:
    """Copy the project's code into tmp_path with `reports` from examples/artifacts (checkov.sarif
    a level down) under artifacts/."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("bin", "lib", "schemas", "config"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=ignore, symlinks=True)
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    # the copy's install step is up to date: its pyproject.toml is older than the venv's stamp
    stamp = STAMP.stat().st_mtime_ns
    os.utime(tmp_path / "pyproject.toml", ns=(stamp - 10**9, stamp - 10**9))
    (tmp_path / "artifacts" / "scans").mkdir(parents=True)
    for name in reports:  # one report a level down: ARTIFACTS is read recursively
        dest = tmp_path / "artifacts" / ("scans" if name == "checkov.sarif" else "") / name
        shutil.copy2(ROOT / "examples" / "artifacts" / name, dest)
    assert make(tmp_path, "-q", "install", check=False).returncode == 0, "the copy would reinstall .venv"
    return tmp_path


def expected_ids(tree: Path) -> set[str]:
    """The finding ids secai-parse itself gives for the tree (in-process, no make)."""
    code, records, err = run_command(Parse, ["-q", str(tree / "artifacts")])
    assert code == 0, err
    return {r["id"] for r in records}


def findings(tree: Path) -> list[dict]:
    return [orjson.loads(line) for line in (tree / "build" / "findings.jsonl").read_bytes().splitlines()]


def mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def test_all_builds_findings_then_nothing_to_do(tree):
    make(tree, "all")
    records = findings(tree)
    assert len(records) == len({r["id"] for r in records}) > 0  # one line per finding
    assert {r["id"] for r in records} == expected_ids(tree)
    # the same Semgrep scan as JSON and as SARIF counts once
    semgrep = [r for r in records if r["tool"] == "semgrep"]
    assert semgrep and all(r["occurrences"] == 2 for r in semgrep)
    assert {r["tool"] for r in records} == {"semgrep", "checkov"}
    assert (tree / "build" / "rejects.jsonl").read_bytes() == b""
    assert make(tree, "-q", "all", check=False).returncode == 0
    assert "Nothing to be done" in make(tree, "all").stdout


def test_touching_an_artifact_rebuilds_findings(tree):
    make(tree, "all")
    out = tree / "build" / "findings.jsonl"
    before = mtime(out)
    os.utime(tree / "artifacts" / "scans" / "checkov.sarif")  # a report one directory down
    assert make(tree, "-q", "all", check=False).returncode == 1
    make(tree, "all")
    assert mtime(out) != before
    assert make(tree, "-q", "all", check=False).returncode == 0


def test_adding_or_removing_a_report_rebuilds_findings(tree):
    make(tree, "all")
    count = len(findings(tree))
    # an old file moved in (cp -p, unzip) is newer only through its directory's mtime
    moved = tree / "artifacts" / "scans" / "semgrep-copy.json"
    shutil.copy2(tree / "artifacts" / "semgrep.json", moved)
    assert mtime(moved) < mtime(tree / "build" / "findings.jsonl")
    assert make(tree, "-q", "all", check=False).returncode == 1
    make(tree, "all")
    assert len(findings(tree)) == count  # same findings, folded in
    (tree / "artifacts" / "semgrep.sarif").unlink()
    assert make(tree, "-q", "all", check=False).returncode == 1
    make(tree, "all")
    assert all(r["occurrences"] == 2 for r in findings(tree) if r["tool"] == "semgrep")  # json + copy


def test_code_is_a_prerequisite_and_unrelated_files_are_not(tree):
    make(tree, "all")
    (tree / "README.md").write_text("not an input\n")
    os.utime(tree / "bin" / "secai-parse")
    assert make(tree, "-q", "all", check=False).returncode == 0
    os.utime(tree / "lib" / "secai" / "parsing" / "formats" / "sarif.py")
    assert make(tree, "-q", "all", check=False).returncode == 1


def test_prerequisites_follow_the_imports(tree):
    """narrate imports the code context and the kb composer: editing either remakes the examples
    (the hand-written lists missed them); editing training code remakes no findings."""
    make(tree, "all")
    for module in ("analysis/context.py", "analysis/compose.py"):
        os.utime(tree / "lib" / "secai" / module)
        dry = make(tree, "-n", "all").stdout
        assert "--stage analysis" in dry and "--stage codefix" in dry, module
        make(tree, "all")
    os.utime(tree / "lib" / "secai" / "training" / "engine.py")
    dry = make(tree, "-n", "all").stdout
    assert "secai.commands.parse" not in dry and "parsing.reports" not in dry and "--stage analysis" not in dry


def test_semgrep_rules_and_harvested_knowledge_are_prerequisites_of_the_analyses(tree):
    """The analyses quote the rules the reports were made with (SEMGREP_RULES, passed to
    secai-analyze) and the harvested rule knowledge: editing, adding or removing a rule file, or a
    new harvest, remakes them."""
    rules = tree / "rules" / "python"
    rules.mkdir(parents=True)
    (rules / "a.yaml").write_text("rules: []\n")
    make(tree, "analyze", "SEMGREP_RULES=rules")
    assert make(tree, "-q", "analyze", "SEMGREP_RULES=rules", check=False).returncode == 0
    for change in (lambda: os.utime(rules / "a.yaml"), lambda: (rules / "b.yml").write_text("rules: []\n"),
                   lambda: (rules / "b.yml").unlink(),
                   lambda: os.utime(tree / "lib" / "secai" / "analysis" / "kb" / "harvested" / "checkov.json")):
        change()
        dry = make(tree, "-n", "analyze", "SEMGREP_RULES=rules").stdout
        assert "secai.commands.analyze" in dry and "--semgrep-rules rules" in dry
        make(tree, "analyze", "SEMGREP_RULES=rules")


def test_parallel_make(tree):
    make(tree, "-j2", "all")
    assert len(findings(tree)) == len(expected_ids(tree))
    assert make(tree, "-j2", "-q", "all", check=False).returncode == 0


def test_bad_report_goes_to_rejects_and_findings_are_still_written(tree):
    good = expected_ids(tree)
    (tree / "artifacts" / "truncated.json").write_text('{"version": "2.1.0", "runs": [{"results": [\n')
    proc = make(tree, "all")
    rejects = [orjson.loads(line) for line in (tree / "build" / "rejects.jsonl").read_bytes().splitlines()]
    assert [r["file"] for r in rejects] == ["artifacts/truncated.json"]
    assert "invalid JSON" in rejects[0]["reason"]
    assert "1 rejected" in proc.stderr
    assert {r["id"] for r in findings(tree)} == good


def test_help_lists_every_variable():
    """`make help` names every variable the Makefile lets a user set (VAR ?= default)."""
    makefile = (ROOT / "Makefile").read_text()
    settable = set(re.findall(r"(?m)^([A-Z][A-Z0-9_]*)\s*\?=", makefile))
    shown = subprocess.run(["make", "-s", "-C", str(ROOT), "help"], capture_output=True, text=True, timeout=60).stdout
    assert settable and not {v for v in settable if f"{v}=" not in shown}
