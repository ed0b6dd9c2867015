"""Analyses that are true for the finding: Bandit's subprocess reviews (B603, B607, B404) are not
shell injection, and a finding in test code is read as test code (secai.analysis.languages.is_test_path,
an entry's `test_code` reading)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT, run_command  # noqa: E402

from secai.analysis import kb  # noqa: E402
from secai.analysis.compose import compose  # noqa: E402
from secai.analysis.languages import is_test_path  # noqa: E402
from secai.commands.parse import Parse  # noqa: E402


def bandit(rule_id: str, path: str = "app.py", cwe: str = "CWE-78", title: str = "subprocess call") -> dict:
    return {"id": f"{rule_id}-{path}", "tool": "bandit", "rule_id": rule_id, "title": title, "category": "sast",
            "severity": "low", "tool_severity": "low", "confidence": "high", "cwe": [cwe], "references": [],
            "location": {"path": path, "start_line": 3}}


def text(analysis: dict) -> str:
    return " ".join([analysis["summary"], analysis["impact"], analysis["remediation"], analysis["prevention"]])


@pytest.mark.parametrize("rule_id, entry", [("B603", "bandit-subprocess-without-shell"),
                                            ("B607", "bandit-partial-executable-path"),
                                            ("B404", "bandit-import-subprocess")])
def test_bandit_subprocess_reviews_have_their_own_entries_and_claim_no_shell(rule_id, entry):
    finding = bandit(rule_id)
    assert kb.load().lookup(finding) == ("rule_id", kb.load().by_id[entry])
    analysis = compose(finding, None, None)
    words = text(analysis)
    assert "a command line is run through a shell" not in words and "shell=False (the default), e.g." not in words
    assert "Bandit B404/B603 are then informational" not in analysis["risk"]["rationale"]
    assert analysis["risk"]["rating"] == "low" and analysis["risk"]["rationale"].startswith("bandit rates it low;")
    assert any(r.startswith("https://bandit.readthedocs.io/") for r in analysis["references"])


def test_each_review_says_what_its_plugin_flags():
    b603, b607, b404 = (text(compose(bandit(r), None, None)) for r in ("B603", "B607", "B404"))
    assert "without a command shell" in b603 and "allow-list" in b603 and "never build the argv" in b603
    assert "PATH" in b607 and "absolute path" in b607 and "shutil.which" in b607
    assert "an import is not a vulnerability" in b404 and "informational, low-severity" in b404


def test_shell_injection_rules_of_bandit_and_semgrep_keep_the_command_injection_entry():
    k = kb.load()
    for finding in (bandit("B602"), bandit("B605"),
                    {**bandit("python.lang.security.audit.subprocess-shell-true.subprocess-shell-true"), "tool": "semgrep"},
                    {**bandit("B603"), "tool": "semgrep"}):  # another tool's B603 is not bandit's
        assert k.match(finding).id == "cwe-78-os-command-injection", finding["rule_id"]


@pytest.mark.parametrize("path", ["tests/test_x.py", "./tests/helpers.py", "pkg/test_models.py", "pkg/models_test.py",
                                  "conftest.py", "cmd/server_test.go", "src/app.spec.ts", "web/login.test.js",
                                  "web/__tests__/login.js", "spec/user_spec.rb", "src/test/java/a/UserTest.java",
                                  "internal/testdata/in.go", "C:\\src\\tests\\x.py"])
def test_test_paths(path):
    assert is_test_path(path)


@pytest.mark.parametrize("path", ["app.py", "latest.py", "contest.py", "attestation/sign.py", "src/testing_utils.py",
                                  "lib/spectrum.js", "", None])
def test_not_test_paths(path):
    assert not is_test_path(path)


def test_b101_in_a_test_reads_as_test_code_with_a_lower_risk():
    analysis = compose(bandit("B101", "tests/test_x.py", "CWE-703", "Use of assert detected."), None, None)
    assert "which is test code" in analysis["summary"] and "is used in application code" not in analysis["summary"]
    assert "python -O" in analysis["summary"] and "Leave the assert" in analysis["remediation"]
    assert analysis["risk"]["rating"] == "info"  # bandit's low, one step down
    assert "it is in test code (tests/test_x.py), one step lower because an assert in a test" in analysis["risk"]["rationale"]
    assert "less so when" not in analysis["risk"]["rationale"]


def test_b101_in_application_code_is_not_called_test_code():
    analysis = compose(bandit("B101", "app.py", "CWE-703", "Use of assert detected."), None, None)
    assert "application code" in analysis["summary"] and "test code" not in analysis["summary"]
    assert analysis["risk"]["rating"] == "low" and "test code" not in analysis["risk"]["rationale"]


def test_an_entry_without_a_test_reading_still_names_test_code_and_keeps_its_rating():
    analysis = compose(bandit("B602", "tests/test_x.py", title="subprocess call with shell=True"), None, None)
    assert analysis["summary"].endswith("tests/test_x.py is test code, not code the application runs.")
    assert analysis["risk"]["rating"] == "low" and "less so when" in analysis["risk"]["rationale"]
    assert "test code" not in compose(bandit("B602"), None, None)["summary"]


def test_the_shipped_examples_hold_no_test_code_so_only_the_new_entries_change_them():
    code, findings, stderr = run_command(Parse, ["-q", str(ROOT / "examples" / "artifacts")], cwd=ROOT)
    assert code == 0, stderr
    paths = {(f.get("location") or {}).get("path") for f in findings}
    assert paths and not any(is_test_path(p) for p in paths)
