"""Bandit, tfsec and KICS JSON: ids shared with Bandit's SARIF, severity tables, detection, secrets,
skipped and suppressed results, malformed structure."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES, run_command  # noqa: E402

from secai.parsing import formats as parsers  # noqa: E402
from secai.commands.parse import Parse  # noqa: E402
from secai.parsing.reports import Unit, load  # noqa: E402
from secai.parsing.formats import bandit, kics, tfsec  # noqa: E402
from secai.parsing.finding import ParseError  # noqa: E402
from secai.secrets import secret_digest  # noqa: E402

PARSE = FIXTURES / "parse"
MINE = {"bandit-json": bandit, "tfsec-json": tfsec, "kics-json": kics}


def _parse(path: Path) -> list[dict]:
    code, records, err = run_command(Parse, ["-q", path.name], cwd=path.parent)
    assert code == 0, err
    return records


# ---------------------------------------------------------------- Bandit

# views.json and bandit-views.sarif are one scan by Bandit 1.9.4 (`-f json`, `-f sarif`)
def test_bandit_json_and_sarif_give_the_same_ids():
    from_json = _parse(PARSE / "bandit-json" / "views.json")
    from_sarif = _parse(PARSE / "sarif" / "bandit-views.sarif")
    facts = lambda fs: sorted((f["id"], f["rule_id"], f["severity"], f["confidence"], f["cwe"][0],  # noqa: E731
                               f["location"]["path"], f["location"]["start_line"]) for f in fs)
    assert facts(from_json) == facts(from_sarif) and len(from_json) == 10


def test_bandit_location_is_the_flagged_node():
    records = _parse(PARSE / "bandit-json" / "views.json")
    doc = orjson.loads((PARSE / "bandit-json" / "views.json").read_bytes())
    multi = next(r for r in doc["results"] if len(r["line_range"]) > 1)  # subprocess.call( ... shell=True, ...)
    assert multi["line_number"] == 12 and multi["line_range"] == [10, 11, 12, 13]
    loc = next(f["location"] for f in records if f["location"]["start_line"] == 10)
    assert (loc["start_line"], loc["end_line"], loc["start_column"]) == (10, 13, multi["col_offset"] + 1)
    assert loc["snippet"].splitlines()[0] == '        "ls " + user_input,'  # "11 " prefix gone, indentation kept
    evals = [f for f in records if f["rule_id"] == "B307"]  # x = eval(a); y = eval(b)
    assert [f["location"]["start_column"] for f in evals] == [9, 22] and evals[0]["id"] != evals[1]["id"]
    titles = {f["rule_id"]: f["title"] for f in records}
    assert titles["B602"] == "Subprocess popen with shell equals true"
    assert (titles["B404"], titles["B307"]) == ("Blacklist: import subprocess", "Blacklist: eval")


def test_bandit_passwords_never_appear_and_are_hashed():
    report = PARSE / "bandit-json" / "passwords.json"
    doc = orjson.loads(report.read_bytes())
    values = [r["issue_text"].split(": ", 1)[1][1:-1] for r in doc["results"]]
    assert len(values) == 5 and "tok\tA9f3kLq" in values
    records = _parse(report)
    out = orjson.dumps(records).decode()
    for value in values:
        assert value not in out and value.encode("unicode_escape").decode() not in out
    assert [f["secret"]["sha256"] for f in records] == [secret_digest(v) for v in values]
    assert {f["category"] for f in records} == {"sast"}
    assert records[0]["location"]["snippet"] == 'DB_PASSWORD = "[REDACTED]"\nAPI_TOKEN = "[REDACTED]"'


def test_bandit_before_columns_repeats_are_one_finding():
    # Bandit 1.7.0 reports the two concatenations of one SQL string as two identical results
    records = _parse(PARSE / "bandit-json" / "legacy.json")
    assert [(f["rule_id"], f["occurrences"]) for f in records] == [("B608", 2), ("B101", 1)]
    assert "start_column" not in records[0]["location"]


@pytest.mark.parametrize("word, severity", [("HIGH", "high"), ("MEDIUM", "medium"), ("LOW", "low"),
                                            ("UNDEFINED", "info"), ("", "info"), (None, "info"), ("bogus", "info")])
def test_bandit_severity(word, severity):
    [f] = bandit.parse({"results": [{"test_id": "B101", "issue_severity": word, "issue_confidence": word}]})
    assert f["severity"] == severity and f["confidence"] == (None if severity == "info" else severity)


# ---------------------------------------------------------------- tfsec

@pytest.mark.parametrize("word, severity", [
    ("CRITICAL", "critical"), ("HIGH", "high"), ("MEDIUM", "medium"), ("LOW", "low"),
    ("ERROR", "high"), ("WARNING", "medium"), ("INFO", "low"), ("NONE", "info"), ("", "info"), (None, "info")])
def test_tfsec_severity(word, severity):
    [f] = tfsec.parse({"results": [{"rule_id": "AWS017", "severity": word}]})
    assert f["severity"] == severity


def test_tfsec_rule_ids_skipped_and_ignored_results():
    v1 = {f["rule_id"]: f for f in _parse(PARSE / "tfsec-json" / "v1.json")}
    assert "aws-s3-enable-versioning" not in v1  # status 1: passed
    assert v1["aws-cloudwatch-log-group-customer-key"]["suppressed"] is True  # status 2: ignored
    s3 = v1["aws-s3-block-public-acls"]
    assert s3["aliases"] == ["AVD-AWS-0086"] and s3["location"]["resource"] == "aws_s3_bucket.reports"
    assert s3["description"].startswith("PUT calls") and s3["fix_hint"].startswith("Enable blocking")
    legacy = {f["rule_id"]: f for f in _parse(PARSE / "tfsec-json" / "legacy.json")}
    assert "AWS017" not in legacy  # "passed": true
    assert legacy["AWS002"]["references"] == ["https://tfsec.dev/docs/aws/AWS002/"]
    middle = list(tfsec.parse({"results": [
        {"rule_id": "aws-vpc-no-public-egress-sgr", "legacy_rule_id": "AWS007", "status": "failed"},
        {"rule_id": "aws-vpc-no-public-ingress-sgr", "legacy_rule_id": "AWS006", "status": "passed"}]}))
    assert [(f["rule_id"], f["aliases"]) for f in middle] == [("aws-vpc-no-public-egress-sgr", ["AWS007"])]


def test_tfsec_without_findings():
    assert _parse(PARSE / "tfsec-json" / "empty.json") == []
    assert tfsec.detect({"results": None}) and tfsec.detect({"results": []})
    assert not tfsec.detect({"results": None, "errors": []})


# ---------------------------------------------------------------- KICS

@pytest.mark.parametrize("word, severity", [
    ("CRITICAL", "critical"), ("HIGH", "high"), ("MEDIUM", "medium"), ("LOW", "low"),
    ("INFO", "info"), ("TRACE", "info"), ("", "info"), (None, "info")])
def test_kics_severity(word, severity):
    [f] = kics.parse({"queries": [{"query_id": "q", "severity": word, "files": [{"file_name": "a.tf", "line": 1}]}]})
    assert f["severity"] == severity


def test_kics_mapping():
    records = {f["title"]: f for f in _parse(PARSE / "kics-json" / "mixed.json")}
    rds = records["DB Instance Storage Not Encrypted"]
    assert rds["message"] == ("Expected: 'storage_encrypted' should be set to true. "
                              "Actual: 'storage_encrypted' is set to false.")
    assert rds["fix_hint"] == "Replace 'false' with 'true'" and rds["cwe"] == ["CWE-311"]
    assert rds["location"] == {"path": "infra/rds.tf", "start_line": 6, "resource": "orders"}
    kms = records["Secretsmanager Secret Without KMS"]
    assert kms["category"] == "iac" and kms["fix_hint"] == "Add: kms_key_id = aws_kms_key.secrets.arn"
    assert records["Passwords And Secrets - Generic Password"]["category"] == "secret"
    assert records["RBAC Wildcard In Rule"]["occurrences"] == 2  # two wildcards of one rule, one line


def test_kics_secret_value_is_hashed_never_output():
    value = "hunter2-Plaintext"
    doc = {"kics_version": "v1.5.1", "queries": [{
        "query_name": "Passwords And Secrets In Infrastructure Code",
        "query_id": "f996f3cb-00fc-480c-8973-8ab04d44a8cc",
        "severity": "HIGH", "category": "Secret Management", "files": [{
            "file_name": "infra/rds.tf", "line": 9, "search_key": f"aws_db_instance[db].password={value}",
            "search_value": value, "expected_value": "Hardcoded secret key should not appear in source",
            "actual_value": f"'password' is '{value}'", "remediation": value}]}]}
    [f] = kics.parse(doc)
    assert f["category"] == "secret" and f["secret"] == {"sha256": secret_digest(value)}
    assert value not in orjson.dumps(f).decode()
    assert f["message"] == "Expected: Hardcoded secret key should not appear in source."


# ---------------------------------------------------------------- all three

def _doc(path: Path):
    return load(Unit(str(path), path.read_bytes(), True))


FIXTURE_FILES = sorted(p for p in PARSE.glob("*/*") if not p.name.endswith(".expected.jsonl"))


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_detection_claims_only_its_own_reports(path: Path):
    syntax, doc = _doc(path)
    claimed = {name for name, module in MINE.items() if any(f.detect(doc) for f in module.FORMATS)}
    assert claimed == ({path.parent.name} & MINE.keys())
    if claimed:
        assert parsers.detect(doc, syntax)[0].name in claimed


def test_empty_bandit_report_is_bandit():
    doc = {"errors": [], "generated_at": "2024-05-14T09:12:40Z", "metrics": {"_totals": {}}, "results": []}
    assert bandit.detect(doc) and not tfsec.detect(doc) and not kics.detect(doc)


@pytest.mark.parametrize("parse, doc, where", [
    (bandit.parse, {"results": {}}, "$.results"),
    (bandit.parse, {"results": [{"test_id": "B101"}, "x"]}, "$.results[1]"),
    (bandit.parse, {"results": [{"test_id": "B101", "issue_cwe": 78}]}, "$.results[0].issue_cwe"),
    (bandit.parse, {"results": [{"test_id": "B101", "line_range": 3}]}, "$.results[0].line_range"),
    (bandit.parse, {"results": [{"issue_text": "no test id"}]}, "$.results[0]"),
    (tfsec.parse, {"results": "x"}, "$.results"),
    (tfsec.parse, {"results": [{"rule_id": "AWS017", "location": []}]}, "$.results[0].location"),
    (tfsec.parse, {"results": [{"rule_id": "AWS017", "links": "https://x"}]}, "$.results[0].links"),
    (tfsec.parse, {"results": [{"description": "no rule"}]}, "$.results[0]"),
    (kics.parse, {"queries": {}}, "$.queries"),
    (kics.parse, {"queries": [{"query_id": "q", "files": {}}]}, "$.queries[0].files"),
    (kics.parse, {"queries": [{"query_id": "q", "files": [None, 3]}]}, "$.queries[0].files[1]"),
    (kics.parse, {"queries": [{"query_name": "no id", "files": [{}]}]}, "$.queries[0].files[0]"),
])
def test_malformed_structure_is_a_parse_error(parse, doc, where):
    with pytest.raises(ParseError) as err:
        list(parse(doc))
    assert err.value.where == where


@pytest.mark.parametrize("parse, doc", [
    (bandit.parse, {"results": [{"test_id": "B101"}]}),
    (tfsec.parse, {"results": [{"rule_id": "AWS017"}]}),
    (kics.parse, {"queries": [{"query_id": "q", "files": [{}]}]}),
])
def test_missing_optional_fields_never_raise(parse, doc):
    [f] = parse(doc)
    assert f["rule_id"] and f["title"] and f["severity"] == "info" and f.get("location") is None
