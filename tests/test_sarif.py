"""SARIF semantics that the spec fixes (OASIS SARIF 2.1.0), asserted one by one."""

from __future__ import annotations

import orjson
import pytest
from conftest import FIXTURES, run_command

from secai.commands.parse import Parse

SPEC = FIXTURES / "parse" / "sarif" / "spec-features.sarif"


@pytest.fixture(scope="module")
def by_message():
    code, records, err = run_command(Parse, ["-q", str(SPEC)])
    assert code == 0, err
    return {r["message"]: r for r in records}


def sarif(results, rules=None, **run):
    return orjson.dumps({"version": "2.1.0", "runs": [
        {"tool": {"driver": {"name": "Demo", "rules": rules or []}}, "results": results, **run}]})


def test_kinds_other_than_fail_are_skipped(by_message):
    assert "Checked." not in by_message and "Needs review." not in by_message
    code, records, _ = run_command(Parse, ["-q", str(SPEC)])
    assert len(records) == 6  # 5 fail results, one of them with two locations


def test_level_resolution_order(by_message):
    # rule default 'note', overridden to 'warning' by the invocation; an explicit result level wins
    assert by_message["Import of 'os' is not used."]["tool_severity"] == "warning"
    assert by_message["Import of 'sys' is not used."]["tool_severity"] == "note"
    assert by_message["Import of 'sys' is not used."]["severity"] == "low"


def test_security_severity_wins_over_level(by_message):
    f = by_message["This SQL query depends on a [user-provided value](1)."]
    assert (f["severity"], f["tool_severity"]) == ("high", "8.8")
    assert f["cwe"] == ["CWE-89"] and f["confidence"] == "high"


def test_one_finding_per_location_and_message_templates():
    code, records, _ = run_command(Parse, ["-q", str(SPEC)])
    logged = [r for r in records if r["rule_id"] == "py/clear-text-logging-sensitive-data"]
    assert [r["location"]["path"] for r in logged] == ["app/views.py", "app/auth.py"]
    assert all(r["message"] == "This expression logs the password as clear text." for r in logged)


def test_paths_resolve_through_base_ids_but_never_keep_the_runner_checkout(by_message):
    assert by_message["This SQL query depends on a [user-provided value](1)."]["location"]["path"] == "app/db.py"
    assert by_message["Import of 'os' is not used."]["location"]["path"] == "app/util s.py"


def test_suppressions(by_message):
    accepted = by_message["Import of 'sys' is not used."]
    assert accepted["suppressed"] is True and accepted["suppression"]["justification"] == "kept for plugins"
    under_review = by_message["Import of 're' is not used."]
    assert under_review["suppressed"] is False and under_review["suppression"]["status"] == "underReview"


def test_version_control_provenance_goes_to_source(by_message):
    src = by_message["Import of 'os' is not used."]["source"]
    assert (src["commit"], src["branch"]) == ("4f1c2a9e0b7d", "main")


def test_rule_found_by_index_when_ruleid_missing():
    rules = [{"id": "R1", "shortDescription": {"text": "First"}}, {"id": "R2", "shortDescription": {"text": "Second"},
             "defaultConfiguration": {"level": "error"}}]
    code, recs, err = run_command(Parse, ["-q"], stdin=sarif([{"ruleIndex": 1, "message": {"text": "m"}}], rules))
    assert code == 0, err
    assert (recs[0]["rule_id"], recs[0]["title"], recs[0]["severity"]) == ("R2", "Second", "high")


def test_hierarchical_rule_id_falls_back_to_its_first_component():
    rules = [{"id": "CA2101", "shortDescription": {"text": "Marshal strings"}}]
    code, recs, _ = run_command(Parse, ["-q"], stdin=sarif([{"ruleId": "CA2101/sub", "message": {"text": "m"}}], rules))
    assert recs[0]["title"] == "Marshal strings" and recs[0]["rule_id"] == "CA2101/sub"


def test_default_level_is_warning_and_no_location_is_allowed():
    code, recs, _ = run_command(Parse, ["-q"], stdin=sarif([{"ruleId": "X", "message": {"text": "no place"}}]))
    assert recs[0]["severity"] == "medium" and "location" not in recs[0]


@pytest.mark.parametrize("score,severity", [("9.8", "critical"), ("7.0", "high"), ("5.5", "medium"),
                                            ("0.1", "low"), ("0.0", "info"), ("n/a", "high")])
def test_security_severity_bands(score, severity):
    rules = [{"id": "R", "defaultConfiguration": {"level": "error"}, "properties": {"security-severity": score}}]
    code, recs, _ = run_command(Parse, ["-q"], stdin=sarif([{"ruleId": "R", "message": {"text": "m"}}], rules))
    assert recs[0]["severity"] == severity


def test_secret_scanner_snippets_are_hashed_not_kept():
    results = [{"ruleId": "aws-access-token", "message": {"text": "aws-access-token has detected secret for file a.env."},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "a.env"},
                                                    "region": {"startLine": 2, "snippet": {"text": "AKIAZZZZZZZZZZZZZZZZ"}}}}]}]
    doc = orjson.loads(sarif(results))
    doc["runs"][0]["tool"]["driver"]["name"] = "gitleaks"
    code, recs, _ = run_command(Parse, ["-q"], stdin=orjson.dumps(doc))
    assert b"AKIAZZZZ" not in orjson.dumps(recs)
    assert recs[0]["category"] == "secret" and len(recs[0]["secret"]["sha256"]) == 64


def test_same_rule_same_line_different_columns_stay_apart():
    def loc(col):
        return [{"physicalLocation": {"artifactLocation": {"uri": "a.py"}, "region": {"startLine": 3, "startColumn": col}}}]

    results = [{"ruleId": "R", "message": {"text": "m"}, "locations": loc(c)} for c in (5, 30, 30)]
    code, recs, _ = run_command(Parse, ["-q"], stdin=sarif(results))
    assert [r["occurrences"] for r in recs] == [1, 2]


def test_bandit_hardcoded_passwords_never_leave_as_text():
    snippet = "PASSWORD = 's3cr3t-Hunter2!'\nTOKEN = 'abcd-other-pass'"
    results = [{"ruleId": "B105", "message": {"text": f"Possible hardcoded password: '{pw}'"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": "app.py"},
                                                    "region": {"startLine": line, "snippet": {"text": snippet}}}}]}
               for line, pw in ((3, "s3cr3t-Hunter2!"), (4, "abcd-other-pass"))]
    doc = orjson.loads(sarif(results))
    doc["runs"][0]["tool"]["driver"]["name"] = "Bandit"
    code, recs, _ = run_command(Parse, ["-q"], stdin=orjson.dumps(doc))
    out = orjson.dumps(recs)
    assert code == 0 and b"Hunter2" not in out and b"other-pass" not in out
    assert all(len(r["secret"]["sha256"]) == 64 for r in recs)


def test_checkovs_constant_error_level_rates_nothing():
    """Checkov's SARIF says `error` on every failed check it has no severity for: that is no rating, so
    the finding is medium without a tool_severity (as from Checkov's JSON), and the SARIF copy of a scan
    does not outrank the JSON copy in dedup. A real severity (security-severity) still counts."""
    def doc(props):
        rule = {"id": "CKV_AWS_23", "defaultConfiguration": {"level": "error"}, **props}
        loc = [{"physicalLocation": {"artifactLocation": {"uri": "main.tf"}, "region": {"startLine": 3}}}]
        return orjson.dumps({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "Checkov", "rules": [rule]}},
                                                           "results": [{"ruleId": "CKV_AWS_23", "level": "error",
                                                                        "message": {"text": "m"}, "locations": loc}]}]})
    code, (f,), _ = run_command(Parse, ["-q"], stdin=doc({}))
    assert code == 0 and f["severity"] == "medium" and "tool_severity" not in f
    code, (f,), _ = run_command(Parse, ["-q"], stdin=doc({"properties": {"security-severity": "7.5"}}))
    assert code == 0 and f["severity"] == "high" and f["tool_severity"] == "7.5"
    # another producer's error is a rating
    code, records, _ = run_command(Parse, ["-q"], stdin=sarif([{"ruleId": "R", "level": "error", "message": {"text": "m"}}]))
    assert records[0]["severity"] == "high" and records[0]["tool_severity"] == "error"
