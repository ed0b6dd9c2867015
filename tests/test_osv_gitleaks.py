"""OSV-Scanner and Gitleaks parsers: cross-format ids, secrets never output, OSV package facts."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import CORPUS, FIXTURES, run_command  # noqa: E402

from secai.commands.parse import Parse  # noqa: E402
from secai.parsing.formats import checkov, gitleaks, osv, sarif, semgrep, trivy  # noqa: E402
from secai.parsing.finding import ParseError  # noqa: E402

PARSE = FIXTURES / "parse"
GITLEAKS_REPORTS = sorted((PARSE / "gitleaks-json").glob("*.json")) + sorted((PARSE / "sarif").glob("gitleaks-*.sarif"))
CORPUS_REPORTS = sorted(CORPUS.glob("gitleaks/*.json")) + sorted(CORPUS.glob("sarif/gitleaks*.sarif"))


def _parse(path: Path) -> list[dict]:
    code, records, err = run_command(Parse, ["-q", path.name], cwd=path.parent)
    assert code == 0, err
    return records


def _by_place(records):
    return {(r["rule_id"], r["location"]["path"], r["location"]["start_line"]): r for r in records}


def test_gitleaks_json_and_its_sarif_twin_have_the_same_findings():
    from_json = _by_place(_parse(PARSE / "gitleaks-json" / "v8-history.json"))
    from_sarif = _by_place(_parse(PARSE / "sarif" / "gitleaks-v8-history.sarif"))
    assert from_json.keys() == from_sarif.keys()
    for place, finding in from_json.items():
        twin = from_sarif[place]
        assert finding["id"] == twin["id"]
        assert finding["secret"]["sha256"] == twin["secret"]["sha256"]
        assert finding["occurrences"] == twin["occurrences"]
        assert (finding["tool"], finding["category"], finding["severity"]) == (twin["tool"], twin["category"], twin["severity"])


def test_gitleaks_7_json_and_its_sarif_twin_have_the_same_findings(corpus):
    from_json = _by_place(_parse(corpus / "gitleaks" / "version_7.5.0.json"))
    from_sarif = _by_place(_parse(corpus / "sarif" / "gitleaks_7.5.0.sarif"))
    assert {p: (f["id"], f["secret"]["sha256"], f["occurrences"]) for p, f in from_json.items()} == \
           {p: (f["id"], f["secret"]["sha256"], f["occurrences"]) for p, f in from_sarif.items()}


def _secret_values(doc) -> set[str]:
    """Every value in a Gitleaks report that is or quotes a secret (JSON v7/v8, SARIF snippets)."""
    values = set()
    if isinstance(doc, dict) and "runs" in doc:
        for run in doc["runs"]:
            for result in run.get("results", []):
                values.add(result.get("properties", {}).get("offender", ""))
                for loc in result.get("locations", []):
                    values.add(loc["physicalLocation"].get("region", {}).get("snippet", {}).get("text", ""))
    else:
        for leak in doc:
            values.update(leak.get(k) or "" for k in ("Secret", "Match", "offender", "line"))
    lines = {line.strip() for v in values for line in v.splitlines()}
    return {v for v in values | lines if len(v) >= 8 and v != "REDACTED"}


@pytest.mark.parametrize("report", GITLEAKS_REPORTS + CORPUS_REPORTS, ids=lambda p: p.name)
def test_no_secret_value_in_any_output_field(report: Path):
    secrets = _secret_values(orjson.loads(report.read_bytes()))
    assert secrets
    output = "\n".join(orjson.dumps(r).decode() for r in _parse(report))
    for secret in secrets:
        assert secret not in output
        assert orjson.dumps(secret).decode()[1:-1] not in output  # nor its JSON-escaped form


def test_commit_message_quoting_another_findings_secret_is_redacted():
    records = _parse(PARSE / "gitleaks-json" / "v7-history.json")
    generic = next(r for r in records if r["rule_id"] == "Generic Credential")
    assert "[REDACTED]" in generic["message"] and "ghp_" not in generic["message"]


def test_gitleaks_redacted_report_keeps_no_hash():
    [finding] = _parse(PARSE / "gitleaks-json" / "v8-redacted.json")
    assert "secret" not in finding and finding["severity"] == "high"


def test_osv_fixed_versions_aliases_and_severity_sources():
    records = {r["rule_id"]: r for r in _parse(PARSE / "osv-scanner-json" / "lockfiles-v1.json")}
    ghsa, pysec = records["GHSA-xxj9-f6rv-m3x4"], records["PYSEC-2024-28"]
    assert ghsa["package"]["fixed_versions"] == ["3.2.24", "4.2.10", "5.0.2"]  # three affected entries, "Django"
    assert pysec["package"]["fixed_versions"] == ["3.2.24", "4.2.10", "5.0.2"]  # the GIT range's commit left out
    assert ghsa["cve"] == pysec["cve"] == ["CVE-2024-24680"]
    assert "aliases" not in ghsa and pysec["aliases"] == ["GHSA-xxj9-f6rv-m3x4"]
    assert ghsa["id"] != pysec["id"]  # one finding per OSV record
    assert (pysec["severity"], pysec["tool_severity"]) == ("medium", "MODERATE")  # from its group
    ip = records["GHSA-2p57-rm9w-gvfp"]
    assert "fixed_versions" not in ip["package"] and ip["cwe"] == ["CWE-918"]
    zlib = records["CVE-2022-37434"]  # a git source: no package, severity from the CVSS vector
    assert "package" not in zlib and zlib["cvss"]["score"] == 9.8 and zlib["severity"] == "critical"
    go = {r["rule_id"]: r for r in _parse(PARSE / "osv-scanner-json" / "go-module-v2.json")}
    assert (go["GO-2024-2687"]["severity"], go["GO-2024-2687"]["tool_severity"]) == ("medium", "5.3")


@pytest.mark.parametrize("vector,score", [
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
    ("CVSS:3.0/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:N/A:N", 7.7),
    ("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N", 0.0),
    ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", None),
    ("AV:N/AC:L/Au:N/C:P/I:P/A:P", None),
    ("CVSS:3.1/AV:N", None),
])
def test_cvss3_base_score(vector, score):
    assert osv.cvss3_score(vector) == score


def test_osv_severity_fallbacks():
    doc = {"results": [{"source": {"path": "package-lock.json"}, "packages": [{
        "package": {"name": "flot-axis", "version": "0.0.0", "ecosystem": "npm"},
        "vulnerabilities": [{"id": "MAL-2023-1035"}, {"id": "GHSA-aaaa-bbbb-cccc", "severity": [{"type": "Ubuntu", "score": "Low"}]},
                            {"id": "OSV-2024-1"}]}]}]}
    got = {f["rule_id"]: (f["severity"], f["tool_severity"]) for f in osv.parse(doc)}
    assert got == {"MAL-2023-1035": ("critical", ""), "GHSA-aaaa-bbbb-cccc": ("low", "Low"), "OSV-2024-1": ("medium", "")}


def test_detection_does_not_overlap():
    osv_doc = {"results": [{"source": {"path": "go.mod"}, "packages": []}]}
    v8 = [{"RuleID": "x", "File": "a"}]
    v7 = [{"rule": "AWS Access Key", "offender": "AKIA", "file": "a"}]
    others = [{"results": [{"check_id": "x", "path": "a"}], "errors": []}, {"results": [], "errors": []},
              {"check_type": "terraform", "results": {"failed_checks": []}}, {"Results": [], "SchemaVersion": 2},
              {"version": "2.1.0", "runs": []}, [{"check_type": "terraform", "results": {}}]]
    assert osv.detect(osv_doc) and osv.detect({"results": [], "experimental_config": {}})
    assert gitleaks.detect(v8) and gitleaks.detect(v7)
    for doc in [*others, v8, v7]:
        assert not osv.detect(doc)
    for doc in [*others, osv_doc]:
        assert not gitleaks.detect(doc)
    for module in (sarif, trivy, checkov, semgrep):
        for doc in (osv_doc, v8, v7):
            assert not any(fmt.detect(doc) for fmt in module.FORMATS)


@pytest.mark.parametrize("parse,doc,where", [
    (osv.parse, {"results": [{"source": {}, "packages": "x"}]}, "$.results[0].packages"),
    (osv.parse, {"results": [{"packages": [{"package": {}, "vulnerabilities": [{"summary": "no id"}]}]}]},
     "$.results[0].packages[0].vulnerabilities[0]"),
    (gitleaks.parse, [{"RuleID": "x", "Tags": 3}], "$[0].Tags"),
    (gitleaks.parse, ["not an object"], "$[0]"),
])
def test_malformed_structure_is_a_parse_error(parse, doc, where):
    with pytest.raises(ParseError) as err:
        list(parse(doc))
    assert err.value.where == where
