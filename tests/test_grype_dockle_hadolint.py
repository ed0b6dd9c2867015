"""Grype, Dockle and Hadolint JSON: severity tables, strict detection, error paths, grouping and secrets."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import CORPUS, FIXTURES, run_command  # noqa: E402

from secai.parsing import formats as parsers  # noqa: E402
from secai.commands.parse import Parse  # noqa: E402
from secai.parsing.formats import dockle, grype, hadolint  # noqa: E402
from secai.parsing.finding import ParseError  # noqa: E402

PARSE = FIXTURES / "parse"
MINE = {"grype-json": grype, "dockle-json": dockle, "hadolint-json": hadolint}
CORPUS_TOOL = {"anchore_grype": "grype-json", "dockle": "dockle-json", "hadolint": "hadolint-json"}


def findings(path: Path, *argv: str) -> list[dict]:
    code, records, err = run_command(Parse, ["-q", *argv, path.name], cwd=path.parent)
    assert code == 0, err
    return records


def _match(severity="High", kind="npm", locations=({"path": "/app/package-lock.json"},), **vuln) -> dict:
    return {"vulnerability": {"id": "CVE-2024-0001", "severity": severity, **vuln},
            "artifact": {"name": "lodash", "version": "4.17.20", "type": kind, "locations": list(locations)}}


# ---------------------------------------------------------------- severity tables

@pytest.mark.parametrize("word, expected", [
    ("Critical", "critical"), ("High", "high"), ("Medium", "medium"), ("Low", "low"),
    ("Negligible", "info"), ("Unknown", "info"), (None, "info"),
])
def test_grype_severity(word, expected):
    [f] = grype.parse({"matches": [_match(severity=word)]})
    assert f["severity"] == expected and f["tool_severity"] == (word or "")


@pytest.mark.parametrize("level, expected", [("FATAL", "high"), ("WARN", "medium"), ("INFO", "low"), ("NEW", "info")])
def test_dockle_severity(level, expected):
    [f] = dockle.parse({"summary": {}, "details": [{"code": "CIS-DI-0001", "level": level, "alerts": ["x"]}]})
    assert (f["severity"], f["tool_severity"]) == (expected, level)


@pytest.mark.parametrize("level", ["PASS", "SKIP", "IGNORE"])
def test_dockle_passed_skipped_and_ignored_checks_are_no_findings(level):
    assert list(dockle.parse({"details": [{"code": "CIS-DI-0006", "level": level, "alerts": ["x"]}]})) == []


@pytest.mark.parametrize("level, expected", [
    ("error", "high"), ("warning", "medium"), ("info", "low"), ("style", "info"), ("", "info"),
])
def test_hadolint_severity(level, expected):
    [f] = hadolint.parse([{"code": "DL3008", "line": 3, "column": 1, "file": "Dockerfile", "level": level, "message": "m"}])
    assert f["severity"] == expected


# ---------------------------------------------------------------- detection

def _json_reports():
    """Every JSON report of the project's fixtures and of the corpus, with the format it belongs to
    (one of mine, or None for any other tool's)."""
    for path in sorted(PARSE.glob("*/*.json")):
        yield path, path.parent.name if path.parent.name in MINE else None
    if CORPUS.is_dir():
        for path in sorted(CORPUS.glob("*/*.json")):
            yield path, CORPUS_TOOL.get(path.parent.name)


REPORTS = list(_json_reports())


@pytest.mark.parametrize("path, owner", REPORTS, ids=[str(p.relative_to(p.parents[1])) for p, _ in REPORTS])
def test_detection_claims_only_its_own_reports(path, owner):
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        pytest.skip("not a JSON document")
    for name, module in MINE.items():
        claimed = module.detect(doc)
        if name == owner and doc not in ([], {}, None):
            assert claimed, f"{name} does not detect {path}"
            assert parsers.detect(doc, "json")[0].name == name  # no format before it in the table claims it
        else:
            assert not claimed, f"{name} claims {path}"


@pytest.mark.parametrize("doc", [
    [{"RuleID": "aws-access-token", "File": "a.py", "StartLine": 3, "Secret": "AKIA0000", "Match": "x"}],
    [{"rule": "AWS Access Key", "offender": "AKIA0000", "file": "a.py", "lineNumber": 3, "line": "x"}],
    [{"code": "B101", "line": 3, "level": "LOW", "message": "assert used"}],               # not a DL/SC code
    [{"code": "DL3008", "line": 3, "level": "warning", "message": "m"}, {"Target": "x"}],  # a mixed array
    [{"code": "DL3008", "line": 3, "message": "m"}],                                       # no level
    [],
])
def test_hadolint_detection_is_strict(doc):
    assert not hadolint.detect(doc)


@pytest.mark.parametrize("doc", [
    {"matches": [{"rule": "x"}]},
    {"matches": []},
    {"matches": {"vulnerability": {}, "artifact": {}}},
    {"summary": {"fatal": 0}, "details": []},
    {"details": []},
])
def test_grype_and_dockle_detection_is_strict(doc):
    assert not grype.detect(doc) and not dockle.detect(doc)


# ---------------------------------------------------------------- malformed input

@pytest.mark.parametrize("module, doc, where", [
    (grype, [], "$"),
    (grype, {"matches": {}}, "$.matches"),
    (grype, {"matches": [[]]}, "$.matches[0]"),
    (grype, {"matches": [{"vulnerability": "CVE-1", "artifact": {}}]}, "$.matches[0].vulnerability"),
    (grype, {"matches": [{"vulnerability": {"severity": "High"}, "artifact": {"name": "a"}}]}, "$.matches[0].vulnerability"),
    (grype, {"matches": [{"vulnerability": {"id": "CVE-1"}, "artifact": {"version": "1"}}]}, "$.matches[0].artifact"),
    (grype, {"matches": [_match(cvss={"version": "3.1"})]}, "$.matches[0].vulnerability.cvss"),
    (grype, {"matches": [_match(cvss=[{"version": "3.1", "metrics": 7.5}])]}, "$.matches[0].vulnerability.cvss[0].metrics"),
    (grype, {"matches": [_match(locations=["/a"])]}, "$.matches[0].artifact.locations[0]"),
    (grype, {"matches": [{**_match(), "relatedVulnerabilities": [{"id": "CVE-1", "cwes": "CWE-79"}]}]},
     "$.matches[0].relatedVulnerabilities[0].cwes"),
    (grype, {"matches": [], "source": {"type": "image", "target": "alpine"}}, "$.source.target"),
    (dockle, {"details": {}}, "$.details"),
    (dockle, {"details": ["CIS-DI-0001"]}, "$.details[0]"),
    (dockle, {"details": [{"level": "WARN"}]}, "$.details[0]"),
    (dockle, {"details": [{"code": "CIS-DI-0001", "level": "WARN", "alerts": "x"}]}, "$.details[0].alerts"),
    (hadolint, {"code": "DL3008"}, "$"),
    (hadolint, ["DL3008"], "$[0]"),
    (hadolint, [{"line": 1, "level": "info", "message": "m"}], "$[0]"),
])
def test_malformed_reports_raise_parse_error_with_path(module, doc, where):
    with pytest.raises(ParseError) as err:
        list(module.parse(doc))
    assert err.value.where == where


def test_malformed_report_is_one_error_line_without_traceback(tmp_path):
    report = tmp_path / "grype.json"
    report.write_text(json.dumps({"matches": [{"vulnerability": {"id": "CVE-1", "cvss": "9.8"}, "artifact": {"name": "a"}}],
                                  "descriptor": {"name": "grype"}}))
    code, records, err = run_command(Parse, [str(report)])
    assert code == 1 and records == []
    assert err.strip().splitlines() == [f"secai-parse: error: {report}: grype-json: $.matches[0].vulnerability.cvss: expected array, got str"]


def test_missing_optional_fields_never_raise():
    assert [f["rule_id"] for f in grype.parse({"matches": [{"vulnerability": {"id": "CVE-1"}, "artifact": {"name": "a"}}]})] == ["CVE-1"]
    assert [f["rule_id"] for f in dockle.parse({"details": [{"code": "CIS-DI-0001"}]})] == ["CIS-DI-0001"]
    assert [f["rule_id"] for f in hadolint.parse([{"code": "DL3008"}])] == ["DL3008"]


# ---------------------------------------------------------------- grype

def test_grype_os_package_is_one_finding_per_image_and_libraries_one_per_path():
    records = findings(PARSE / "grype-json" / "image.json")
    busybox = [f for f in records if f["rule_id"] == "CVE-2023-42363"]
    assert len(busybox) == 1 and busybox[0]["occurrences"] == 2  # two files of one apk package
    assert busybox[0]["location"] == {"path": "shop/api", "resource": "registry.example.com/shop/api:1.4.2"}
    log4j = [f["location"]["path"] for f in records if f["package"]["name"] == "log4j-core"]
    assert log4j == ["app/lib/log4j-core-2.14.1.jar", "opt/tools/lib/log4j-core-2.14.1.jar"]


def test_grype_identifiers_cvss_and_cwe():
    f = next(r for r in findings(PARSE / "grype-json" / "image.json") if r["rule_id"].startswith("GHSA"))
    assert f["cve"] == ["CVE-2021-44228"] and "aliases" not in f
    assert f["cwe"] == ["CWE-502", "CWE-917"]  # from the related NVD record's cwes objects
    assert f["cvss"] == {"score": 10.0, "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", "version": "3.1"}
    assert f["package"]["fixed_versions"] == ["2.15.0"] and f["category"] == "sca"


def test_grype_prefers_the_highest_cvss_version_then_related_ones():
    v2 = {"version": "2.0", "vector": "AV:N/AC:L/Au:N/C:P/I:P/A:P", "metrics": {"baseScore": 7.5}}
    v31 = {"version": "3.1", "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "metrics": {"baseScore": 9.8}}
    [f] = grype.parse({"matches": [_match(cvss=[v2, v31])]})
    assert f["cvss"]["version"] == "3.1" and f["cvss"]["score"] == 9.8
    [f] = grype.parse({"matches": [{**_match(cvss=[]), "relatedVulnerabilities": [{"id": "GHSA-x", "cvss": [v2]}]}]})
    assert f["cvss"]["version"] == "2.0" and f["aliases"] == ["GHSA-x"]


def test_grype_categories_by_package_type():
    kinds = {k: next(grype.parse({"matches": [_match(kind=k)]}))["category"]
             for k in ("apk", "deb", "rpm", "npm", "python", "binary", "java-archive")}
    assert kinds == {"apk": "container", "deb": "container", "rpm": "container", "npm": "sca",
                     "python": "sca", "binary": "sca", "java-archive": "sca"}


def test_grype_same_cve_different_paths_is_one_finding(corpus):
    [f] = findings(corpus / "anchore_grype" / "same_cve_different_paths.json")
    assert f["occurrences"] == 2 and f["location"]["path"] == "library/test-image"


# ---------------------------------------------------------------- dockle

def test_dockle_never_outputs_a_quoted_value():
    out = json.dumps(findings(PARSE / "dockle-json" / "image.json"))
    for value in ("Sup3r-S3cret-Passw0rd", "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "glpat-8xKq2LmN4pRsT6uVwXyZ"):
        assert value not in out
    assert "DB_PASSWORD=[REDACTED]" in out and "DOCKER_CONTENT_TRUST=1" in out  # short values are no secrets


def test_dockle_repeated_code_is_one_finding_with_every_alert():
    doc = {"details": [{"code": "CIS-DI-0010", "title": "Do not store secrets in ENVIRONMENT variables", "level": "WARN",
                        "alerts": ["Suspicious ENV key found : MYSQL_PASSWD"]},
                       {"code": "CIS-DI-0010", "title": "Do not store secret files", "level": "FATAL",
                        "alerts": ["Suspicious filename found : app/credentials.json"]}]}
    [f] = dockle.parse(doc)
    assert f["title"] == "Do not store secrets in ENVIRONMENT variables"
    assert (f["severity"], f["tool_severity"]) == ("high", "FATAL")
    assert f["message"] == "Suspicious ENV key found : MYSQL_PASSWD\nSuspicious filename found : app/credentials.json"
    assert f["location"] is None  # the report names no image


# ---------------------------------------------------------------- hadolint

def test_hadolint_references_locations_and_ids():
    records = findings(PARSE / "hadolint-json" / "dockerfiles.json")
    refs = {f["rule_id"]: f["references"] for f in records}
    assert refs["DL3008"] == ["https://github.com/hadolint/hadolint/wiki/DL3008"]
    assert refs["SC2086"] == ["https://www.shellcheck.net/wiki/SC2086"]
    assert {f["location"]["path"] for f in records} == {"services/api/Dockerfile", "docker/worker.Dockerfile"}
    sc = [f for f in records if f["rule_id"] == "SC2086"]
    assert len(sc) == 2 and sc[0]["id"] != sc[1]["id"]  # one line, two columns: two findings


@pytest.mark.parametrize("tool", sorted(CORPUS_TOOL))
def test_corpus_counts(corpus, tool):
    with open(corpus / "MANIFEST.tsv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["tool"] == tool]
    for row in rows:
        path = corpus / row["file"]
        code, records, err = run_command(Parse, ["-q", str(path)])
        assert code == 0 and "Traceback" not in err, err
        assert {r["source"]["format"] for r in records} <= {CORPUS_TOOL[tool]}
        if row["expected_findings"].isdigit():
            assert len(records) == int(row["expected_findings"]), row["file"]
