"""Checkov and Semgrep: one scan gives the same finding ids in the tool's JSON and in its SARIF.

checkov-demo and semgrep-demo are one run each of the real scanners writing both formats
(`checkov -o json -o sarif`, `semgrep --json --sarif-output`); checkov-list is written by Checkov's
own Record/Report/Sarif classes (IaC plus sca_package results, which need a platform key to scan).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES, run_command  # noqa: E402

from secai.commands.parse import Parse  # noqa: E402
from secai.parsing.formats import checkov, semgrep  # noqa: E402
from secai.parsing.finding import ParseError  # noqa: E402

PARSE = FIXTURES / "parse"
PAIRS = {
    "checkov-demo": (PARSE / "checkov-json" / "checkov-demo.json", PARSE / "sarif" / "checkov-demo.sarif"),
    "checkov-list": (PARSE / "checkov-json" / "checkov-list.json", PARSE / "sarif" / "checkov-list.sarif"),
    "semgrep-demo": (PARSE / "semgrep-json" / "semgrep-demo.json", PARSE / "sarif" / "semgrep-demo.sarif"),
}


def findings(*paths: Path) -> list[dict]:
    code, records, err = run_command(Parse, ["-q", *map(str, paths)])
    assert code == 0, err
    return records


def sarif_only(records: list[dict]) -> list[dict]:
    """Semgrep's JSON leaves out `# nosemgrep` results; its SARIF keeps them as suppressed in source."""
    return [f for f in records if f["tool"] == "semgrep" and f.get("suppression") == {"kind": "inSource"}]


@pytest.mark.parametrize("pair", PAIRS, ids=list(PAIRS))
def test_json_and_sarif_give_the_same_ids(pair):
    from_json, from_sarif = (findings(p) for p in PAIRS[pair])
    extra = sarif_only(from_sarif)
    assert len({f["id"] for f in from_json}) == len(from_json)
    assert {f["id"] for f in from_json} == {f["id"] for f in from_sarif} - {f["id"] for f in extra}
    assert len(from_json) + len(extra) == len(from_sarif)
    suppressed = lambda fs: {f["id"] for f in fs if f["suppressed"]}  # noqa: E731
    assert suppressed(from_json) == suppressed(from_sarif) - {f["id"] for f in extra}


@pytest.mark.parametrize("pair", PAIRS, ids=list(PAIRS))
def test_json_plus_sarif_is_one_finding_per_result(pair):
    json_count = len(findings(PAIRS[pair][0]))
    both = findings(*PAIRS[pair])
    extra = sarif_only(both)
    assert len(both) == json_count + len(extra)
    assert all(f["occurrences"] == 2 for f in both if f not in extra)
    assert all(f["occurrences"] == 1 for f in extra)


def test_semgrep_nosemgrep_result_is_only_in_sarif():
    extra = sarif_only(findings(PAIRS["semgrep-demo"][1]))
    assert [(f["rule_id"], f["location"]["start_line"], f["suppressed"]) for f in extra] == [("rules.eval-use", 16, True)]


def test_checkov_sca_rule_ids_and_packages_agree():
    from_json, from_sarif = (findings(p) for p in PAIRS["checkov-list"])
    pick = lambda fs: {(f["rule_id"], f["package"]["name"], f["package"]["version"], f["package"].get("license"))  # noqa: E731
                       for f in fs if "package" in f}
    assert pick(from_json) == pick(from_sarif) == {("CVE-2023-31047", "django", "3.2.0", None),
                                                   ("LGPL-2.1-or-later", "chardet", "4.0.0", "LGPL-2.1-or-later")}


@pytest.mark.parametrize("doc", [
    {"results": [{"source": {"path": "go.mod", "type": "lockfile"}, "packages": []}]},  # OSV-Scanner
    {"results": []},
    {"Results": [], "SchemaVersion": 2},
    {"runs": [], "version": "2.1.0"},
    [],
    [{"check_type": "terraform"}, {"results": []}],
])
def test_detect_leaves_other_formats_alone(doc):
    assert not checkov.detect(doc)
    assert not semgrep.detect(doc)


@pytest.mark.parametrize("module, doc, where", [
    (checkov, {"check_type": "terraform", "results": {"failed_checks": {}}}, "$.results.failed_checks"),
    (checkov, [{"check_type": "terraform", "results": {"failed_checks": [7]}}], "$[0].results.failed_checks[0]"),
    (checkov, {"check_type": "terraform", "results": {"failed_checks": [{"check_name": "x"}]}}, "$.results.failed_checks[0]"),
    (semgrep, {"results": [{"check_id": "a.b", "extra": []}], "errors": []}, "$.results[0].extra"),
    (semgrep, {"results": "none", "errors": []}, "$.results"),
    (semgrep, {"vulns": [{"advisory": "x"}], "cursor": "0"}, "$.vulns[0].advisory"),
])
def test_malformed_structure_is_a_parse_error(module, doc, where):
    with pytest.raises(ParseError) as err:
        list(module.parse(doc))
    assert err.value.where == where


def test_missing_optional_fields_do_not_raise():
    [ck] = checkov.parse({"check_type": "kubernetes", "results": {"failed_checks": [{"check_id": "CKV_K8S_1"}]}})
    assert (ck["rule_id"], ck["title"], ck["severity"], ck["tool_severity"]) == ("CKV_K8S_1", "CKV_K8S_1", "medium", "")
    [sg] = semgrep.parse({"results": [{"check_id": "r"}], "errors": []})
    assert (sg["rule_id"], sg["title"], sg["severity"]) == ("r", "R", "info")
