"""Semgrep's own autofix as a finding's fix (secai.analysis.autofix): made by semgrep on a copy, only
the finding's lines, nothing from a broken rule, never a distrusted autofix; cached; used by the
analysis when no fix rule applies. Skipped cleanly without semgrep (except the pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_verify import SCANNERS

from secai.analysis import autofix
from secai.analysis.autofix import Request, autofix_fix, autofix_hunks, autofixes, has_autofix
from secai.analysis.context import code_context
from secai.cache import Cache

CODE = """\
import requests


def fetch(url, other):
    first = requests.get(url)
    second = requests.get(other)
    return first, second
"""
TIMEOUT_RULE = {"id": "use-timeout-test", "languages": ["python"], "severity": "INFO", "message": "no timeout",
                "pattern": "requests.get($URL)", "fix": "requests.get($URL, timeout=10)"}
REGEX_RULE = {"id": "use-timeout-regex", "languages": ["python"], "severity": "INFO", "message": "no timeout",
              "pattern": "requests.get(...)", "fix-regex": {"regex": r"\)$", "replacement": ", timeout=10)"}}


def semgrep() -> Path:
    path = SCANNERS.paths.get("semgrep")
    if not path:
        pytest.skip("semgrep not installed (run `make scanners`, or put it on PATH)")
    return Path(path)


def setup(tmp_path: Path, rule: dict, line: int):
    """(finding on `line` of app.py, its code context, the rules folder) for `rule`."""
    src, rules = tmp_path / "src", tmp_path / "rules"
    src.mkdir()
    rules.mkdir()
    (src / "app.py").write_text(CODE)
    (rules / "r.yaml").write_text(yaml.safe_dump({"rules": [rule]}))
    finding = {"id": f"f{line}", "tool": "semgrep", "rule_id": f"rules.{rule['id']}", "cwe": [],
               "location": {"path": "app.py", "start_line": line, "end_line": line}}
    return finding, code_context(finding, src), src, rules


def test_the_fix_is_semgreps_own_for_this_finding_only(tmp_path):
    finding, context, src, rules = setup(tmp_path, TIMEOUT_RULE, 6)  # the second of two matches
    [fix] = autofixes([(finding, context)], src, semgrep(), rules)
    assert fix["original"] == "    second = requests.get(other)"
    assert fix["code"] == "    second = requests.get(other, timeout=10)"  # line 5 matches too: left alone
    assert fix["language"] == "python" and "use-timeout-test" in fix["explanation"]
    assert (src / "app.py").read_text() == CODE  # semgrep worked on a copy


def test_fix_regex_rules_too(tmp_path):
    finding, context, src, rules = setup(tmp_path, REGEX_RULE, 5)
    [fix] = autofixes([(finding, context)], src, semgrep(), rules)
    assert fix["code"] == "    first = requests.get(url, timeout=10)"


def test_a_broken_rule_gives_no_fix_and_no_error(tmp_path):
    broken = {**TIMEOUT_RULE, "pattern": "requests.get($URL"}  # semgrep cannot parse the pattern
    finding, context, src, rules = setup(tmp_path, broken, 5)
    assert autofixes([(finding, context)], src, semgrep(), rules) == [None]


def test_a_distrusted_autofix_is_never_asked_for(tmp_path, monkeypatch):
    rule = {**TIMEOUT_RULE, "id": "missing-user"}
    assert not has_autofix(rule) and "missing-user" in autofix.DISTRUSTED
    finding, context, src, rules = setup(tmp_path, rule, 5)
    monkeypatch.setattr(autofix, "run_scanner", lambda *a: pytest.fail("semgrep ran"))
    assert autofixes([(finding, context)], src, Path(__file__), rules) == [None]


def test_hunks_are_cached(tmp_path, monkeypatch):
    finding, context, src, rules = setup(tmp_path, TIMEOUT_RULE, 5)
    cache, exe = Cache(tmp_path / "cache"), semgrep()
    first = autofix_hunks([Request("k", finding, TIMEOUT_RULE)], src, exe, cache)
    monkeypatch.setattr(autofix, "run_scanner", lambda *a: pytest.fail("semgrep ran again"))
    assert autofix_hunks([Request("k", finding, TIMEOUT_RULE)], src, exe, cache) == first
    assert first["k"]["fixed"] == ["    first = requests.get(url, timeout=10)"]


def test_a_hunk_that_is_not_the_contexts_lines_makes_no_fix(tmp_path):
    finding, context, _, _ = setup(tmp_path, TIMEOUT_RULE, 5)
    hunk = {"path": "app.py", "start": 5, "end": 5, "original": ["    first = requests.get(elsewhere)"],
            "fixed": ["    first = requests.get(elsewhere, timeout=10)"]}
    assert autofix_fix(hunk, context, finding) is None
    hunk["original"] = ["    first = requests.get(url)"]
    hunk["fixed"] = ["    first = requests.get(url"]  # does not parse, nor does the enclosing function
    assert autofix_fix(hunk, context, finding) is None


def test_no_semgrep_or_rules_means_no_autofix(tmp_path):
    finding, context, src, rules = setup(tmp_path, TIMEOUT_RULE, 5)
    assert autofixes([(finding, context)], src, None, rules) == [None]
    assert autofixes([(finding, context)], src, Path("/nonexistent/semgrep"), rules) == [None]
    assert autofix.semgrep_executable(tmp_path) is None


def test_the_analysis_carries_the_autofix_when_no_fix_rule_applies(tmp_path):
    from secai.analysis.explain import Stats, analyses

    finding, _, src, rules = setup(tmp_path, TIMEOUT_RULE, 6)
    finding.update(title="no timeout", description="no timeout", severity="low", category="sast")
    [record] = analyses([finding], backend="kb", cache=Cache(None), stats=Stats(), log=print, root=src,
                        context_lines=3, semgrep_rules=rules, semgrep=semgrep())
    assert record["analysis"]["fix"]["code"] == "    second = requests.get(other, timeout=10)"
    [plain] = analyses([finding], backend="kb", cache=Cache(None), stats=Stats(), log=print, root=src,
                       context_lines=3, semgrep_rules=rules)
    assert "fix" not in plain["analysis"]
