"""secai-parse stays byte-identical as it is made faster (issue 16): on large reports generated from
the fixtures by the bench's own generators (benchmarks/bench_parse.py: each result replicated at
distinct files and lines, each vulnerability under distinct package names) and on the shipped
examples, the output's SHA-256 and line count are the ones secai-parse gave at commit 5dbfd85,
before the speed work. The golden fixtures (test_parse_golden.py) check the records themselves.

A change that means to change the output (a parser fix) changes these digests too: say so in its
commit, and take the new ones from `secai-parse` on the same inputs once its golden diffs are reviewed.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_parse import make_sarif, make_trivy  # noqa: E402
from conftest import FIXTURES, run_command  # noqa: E402

from secai.commands.parse import Parse  # noqa: E402

N = 1500
# (fixture replicated, findings, SHA-256 of the output) as secai-parse wrote them at 5dbfd85
GENERATED = [
    ("sarif/semgrep-demo.sarif", 1500, "608782e3d705e1a78adaf696b7b9c8ee55c5470d825f71c8338eb86ce4182805"),
    ("sarif/spec-features.sarif", 1500, "9c12c7d359b400fe5bd68760a703c26d332987c5dc66bdc7ba5fc5439b15b0cb"),
    ("sarif/trivy-image.sarif", 1500, "03051f7461ecf56a336c49a9a47038ab4050b581c94abbb6fc7d7369d0a09ba7"),
    ("sarif/trivy-fs.sarif", 1500, "27d15a7de2e748b9c48f6de3bebfa577fe0dd50a4c4c969451ec7ac4c48ddfaf"),
    ("sarif/bandit-views.sarif", 1500, "d676b3aee07e267d22fdb02133f325c03f578300f4555b7f0f923afe3bc8d642"),
    ("sarif/checkov-demo.sarif", 1500, "6b8afac4904a709d2cfc15128016f8213a958309f94dac4b4282a23733e08e87"),
    ("sarif/gitleaks-v8-history.sarif", 1500, "213411ef65c73e5b850b2f26494a32d9d95ce195519d1c05bd32ccb99140085a"),
    ("sarif/snyk-code-shop.sarif", 1500, "971e515762d02b07e3b48949bfacdda867de98940b3bf6acba7e0c53a0f07d85"),
    ("trivy-json/image.json", 1500, "f918f81282168b1e0c198d2b67c1adc48559e48334c1987e96c2bb72576e3c2d"),
    ("trivy-json/fs.json", 1500, "a5e716ccadf08c55bb71c549eaafa9431c7e2ae87e9338298d0aedd9e0a51719"),
]
EXAMPLES = (59, "c145d8964d93595cdf51c3e72c03dd8b44ed05c23043a72397e91d5eb7bc5ea1")


def _output(cwd: Path, report: str, out: Path) -> bytes:
    code, _, err = run_command(Parse, ["-q", report, "-o", str(out)], cwd=cwd)
    assert code == 0, err
    return out.read_bytes()


@pytest.mark.parametrize("fixture,findings,digest", GENERATED, ids=[g[0] for g in GENERATED])
def test_generated_report_parses_as_before(tmp_path, fixture, findings, digest):
    src = FIXTURES / "parse" / fixture
    report = tmp_path / src.name  # source.file is the name given
    (make_sarif if src.suffix == ".sarif" else make_trivy)(report, N, src)
    data = _output(tmp_path, report.name, tmp_path / "out.jsonl")
    assert (data.count(b"\n"), hashlib.sha256(data).hexdigest()) == (findings, digest)


def test_shipped_examples_parse_as_before(tmp_path):
    data = _output(ROOT, "examples/artifacts", tmp_path / "out.jsonl")
    assert (data.count(b"\n"), hashlib.sha256(data).hexdigest()) == EXAMPLES


@pytest.fixture
def lazy_everything(monkeypatch):
    """Every JSON object report read lazily, every array lazy, every report's lines spooled."""
    from secai.parsing import lazy

    monkeypatch.setattr(lazy, "LAZY_BYTES", 0)
    monkeypatch.setattr(lazy, "BIG_ARRAY", 0)
    monkeypatch.setattr(lazy, "SPOOL_BYTES", 0)
    return lazy


@pytest.mark.parametrize("fixture", [g[0] for g in GENERATED])
def test_lazy_reading_gives_the_same_lines(tmp_path, lazy_everything, fixture):
    """A large report read lazily (its arrays item by item, its lines through a temporary file)
    gives what the report read whole gives: the same digest as above."""
    src = FIXTURES / "parse" / fixture
    report = tmp_path / src.name
    (make_sarif if src.suffix == ".sarif" else make_trivy)(report, N, src)
    data = _output(tmp_path, report.name, tmp_path / "out.jsonl")
    expected = {g[0]: g[1:] for g in GENERATED}[fixture]
    assert (data.count(b"\n"), hashlib.sha256(data).hexdigest()) == expected


def test_lazy_document_is_loaded_whole_for_other_formats(lazy_everything):
    from secai.parsing.inputs import Unit
    from secai.parsing.reports import detect

    sarif = (FIXTURES / "parse" / "sarif" / "semgrep-demo.sarif").read_bytes()
    trivy = (FIXTURES / "parse" / "trivy-json" / "image.json").read_bytes()
    fmt, doc = detect(Unit("a.sarif", sarif, True), None, print)
    assert fmt.name == "sarif" and not lazy_everything.is_lazy(doc) and type(doc["runs"]) is list
    fmt, doc = detect(Unit("t.json", trivy, True), None, print)
    assert fmt.name == "trivy-json" and lazy_everything.is_lazy(doc)


def test_an_item_orjson_refuses_is_the_error_of_the_whole_file(tmp_path, lazy_everything):
    """msgspec passes a lone surrogate's bytes inside a string that orjson refuses: the report is
    then read whole and the error is orjson's, with its line, as for any report."""
    doc = (FIXTURES / "parse" / "trivy-json" / "image.json").read_bytes()
    bad = doc.replace(b'"Target": "', b'"Target": "\xed\xa0\x80', 1) if b'"Target": "' in doc else \
        doc.replace(b'"Target":"', b'"Target":"\xed\xa0\x80', 1)
    assert bad != doc
    (tmp_path / "bad.json").write_bytes(bad)
    lazy_code, _, lazy_err = run_command(Parse, ["-q", "bad.json"], cwd=tmp_path)
    lazy_everything.LAZY_BYTES = 1 << 60
    whole_code, _, whole_err = run_command(Parse, ["-q", "bad.json"], cwd=tmp_path)
    assert lazy_code == whole_code == 1 and lazy_err == whole_err and "invalid JSON" in whole_err
