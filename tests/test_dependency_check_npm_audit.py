"""OWASP Dependency-Check (XML/JSON twins, paths, purls, severities) and npm audit (npm 6 and 7+, failed audits)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES, run_command  # noqa: E402

from secai.commands.parse import Parse  # noqa: E402
from secai.parsing.formats import dependency_check as dc  # noqa: E402
from secai.parsing.formats import npm_audit  # noqa: E402
from secai.parsing.finding import ParseError  # noqa: E402

PARSE = FIXTURES / "parse"
MINE = {"dependency-check-xml", "dependency-check-json", "npm-audit-json", "npm-audit-v7-json"}
DETECTORS = {"json": (dc.detect_json, npm_audit.detect, npm_audit.detect_v7), "xml": (dc.detect_xml,)}


def parse(path: Path) -> list[dict]:
    code, records, err = run_command(Parse, ["-q", path.name], cwd=path.parent)
    assert code == 0, err
    return records


def without_source(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "source"} for r in records]


def test_detectors_claim_no_other_formats_fixture():
    from secai.parsing.reports import Unit, load

    others = [p for p in PARSE.glob("*/*") if p.parent.name not in MINE and not p.name.endswith(".expected.jsonl")]
    assert others
    for path in others:
        syntax, doc = load(Unit(path.name, path.read_bytes(), True))
        assert not any(claims(doc) for claims in DETECTORS.get(syntax, ())), path


# ---------------------------------------------------------------- Dependency-Check

def dc_report(*vulns: dict, file_path="/home/runner/work/shop/shop/lib/a-1.0.jar", **dependency) -> dict:
    dep = {"isVirtual": False, "fileName": "a-1.0.jar", "filePath": file_path,
           "packages": [{"id": "pkg:maven/org.example/a@1.0"}], "vulnerabilities": list(vulns), **dependency}
    return {"reportSchema": "1.1", "scanInfo": {"engineVersion": "12.1.0"}, "projectInfo": {"name": "shop"},
            "dependencies": [dep]}


def test_dependency_check_xml_and_json_of_one_scan_give_the_same_findings():
    from_json = parse(PARSE / "dependency-check-json" / "webshop-scan.json")
    from_xml = parse(PARSE / "dependency-check-xml" / "webshop-scan.xml")
    assert len(from_json) == 6
    assert without_source(from_json) == without_source(from_xml)
    assert {r["source"]["format"] for r in from_xml} == {"dependency-check-xml"}


def test_dependency_check_related_dependencies_are_not_multiplied_and_suppressed_are_kept():
    records = parse(PARSE / "dependency-check-json" / "webshop-scan.json")
    assert [r["rule_id"] for r in records if r["package"]["name"] == "org.apache.commons:commons-text"] == ["CVE-2022-42889"]
    (suppressed,) = [r for r in records if r["suppressed"]]
    assert suppressed["rule_id"] == "CVE-2023-6378"
    assert suppressed["suppression"]["justification"].startswith("The logback receiver component")


@pytest.mark.parametrize("vuln, severity, tool_severity", [
    ({"severity": "CRITICAL"}, "critical", "CRITICAL"),
    ({"severity": "HIGH", "cvssv3": {"baseSeverity": "LOW", "baseScore": 3.1}}, "high", "HIGH"),
    ({"severity": "MEDIUM"}, "medium", "MEDIUM"),
    ({"severity": "moderate"}, "medium", "moderate"),
    ({"severity": "low"}, "low", "low"),
    ({"severity": "INFO"}, "info", "INFO"),
    ({"severity": "Unknown"}, "info", "Unknown"),
    ({"cvssv4": {"baseSeverity": "HIGH", "baseScore": 8.7}, "cvssv3": {"baseSeverity": "MEDIUM"}}, "high", "HIGH"),
    ({"cvssv3": {"baseSeverity": "CRITICAL", "baseScore": 9.8}, "cvssv2": {"severity": "HIGH"}}, "critical", "CRITICAL"),
    ({"cvssv2": {"score": 5.0, "severity": "MEDIUM"}}, "medium", "MEDIUM"),
    ({"cvssv3": {"baseScore": 9.1}}, "critical", "9.1"),
    ({"cvssv2": {"score": 2.1}}, "low", "2.1"),
    ({"cvssScore": "7.5"}, "high", "7.5"),
    ({}, "medium", None),
])
def test_dependency_check_severity(vuln, severity, tool_severity):
    (finding,) = dc.parse_json(dc_report({"name": "CVE-2024-0001", **vuln}))
    assert (finding["severity"], finding["tool_severity"] or None) == (severity, tool_severity)


def test_dependency_check_cvss_vector_is_assembled_from_v3_metrics():
    v3 = {"baseScore": 7.5, "attackVector": "NETWORK", "attackComplexity": "LOW", "privilegesRequired": "NONE",
          "userInteraction": "NONE", "scope": "UNCHANGED", "confidentialityImpact": "NONE",
          "integrityImpact": "NONE", "availabilityImpact": "HIGH", "baseSeverity": "HIGH", "version": "3.1"}
    (finding,) = dc.parse_json(dc_report({"name": "CVE-2024-0001", "cvssv3": v3}))
    assert finding["cvss"] == {"score": 7.5, "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", "version": "3.1"}
    (unversioned,) = dc.parse_json(dc_report({"name": "CVE-2024-0001", "cvssv3": {**v3, "version": None}}))
    assert unversioned["cvss"]["vector"] == ""


@pytest.mark.parametrize("file_path, extra, path", [
    ("/home/runner/work/shop/shop/lib/a-1.0.jar", {}, "lib/a-1.0.jar"),
    ("/Users/dev/src/shop/lib/a-1.0.jar", {}, "lib/a-1.0.jar"),
    ("C:\\Jenkins\\workspace\\shop\\lib\\a-1.0.jar", {}, "lib/a-1.0.jar"),
    ("/opt/build/lib/a-1.0.jar", {}, "a-1.0.jar"),
    ("/opt/build/app.war/WEB-INF/lib/a-1.0.jar", {"fileName": "app.war: a-1.0.jar"}, "app.war: a-1.0.jar"),
    ("/opt/build/web/package-lock.json?a", {"fileName": "a:1.0"}, "package-lock.json"),
    ("/opt/build/src/App.csproj", {"fileName": "A:1.0", "isVirtual": True}, "App.csproj"),
])
def test_dependency_check_location_drops_the_scanning_machines_directories(file_path, extra, path):
    (finding,) = dc.parse_json(dc_report({"name": "CVE-2024-0001"}, file_path=file_path, **extra))
    assert finding["location"]["path"] == path


def test_dependency_check_ids_do_not_depend_on_the_checkout_path():
    ci = dc.parse_json(dc_report({"name": "CVE-2024-0001"}, file_path="/home/runner/work/shop/shop/lib/a-1.0.jar"))
    laptop = dc.parse_json(dc_report({"name": "CVE-2024-0001"}, file_path="/Users/dev/src/shop/lib/a-1.0.jar"))
    from secai.parsing.finding import finalize

    assert finalize(next(ci), {})["id"] == finalize(next(laptop), {})["id"]


@pytest.mark.parametrize("purl, package", [
    ("pkg:maven/org.apache.commons/commons-text@1.9", ("maven", "org.apache.commons:commons-text", "1.9")),
    ("pkg:npm/%40babel/traverse@7.22.5", ("npm", "@babel/traverse", "7.22.5")),
    ("pkg:npm/@babel/core", ("npm", "@babel/core", "")),
    ("pkg:golang/github.com/gin-gonic/gin@v1.9.0?type=module", ("golang", "github.com/gin-gonic/gin", "v1.9.0")),
    ("pkg:nuget/Newtonsoft.Json@12.0.1", ("nuget", "Newtonsoft.Json", "12.0.1")),
])
def test_dependency_check_package_from_purl(purl, package):
    (finding,) = dc.parse_json(dc_report({"name": "CVE-2024-0001"}, packages=[{"id": "cpe:2.3:a:x:y:1:*"}, {"id": purl}]))
    got = finding["package"]
    assert (got["ecosystem"], got["name"], got["version"], got["purl"]) == (*package, purl)


@pytest.mark.parametrize("namespace", ["https://jeremylong.github.io/DependencyCheck/dependency-check.2.5.xsd",
                                       "https://jeremylong.github.io/DependencyCheck/dependency-check.4.1.xsd", ""])
def test_dependency_check_xml_any_schema_namespace(tmp_path, namespace):
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    report = tmp_path / "dependency-check-report.xml"
    report.write_text(f"""<?xml version="1.0"?><analysis{xmlns}><scanInfo><engineVersion>9.0.9</engineVersion></scanInfo>
<projectInfo><name>shop</name></projectInfo><dependencies><dependency isVirtual="false"><fileName>a-1.0.jar</fileName>
<filePath>/w/shop/lib/a-1.0.jar</filePath><identifiers><package><id>pkg:maven/org.example/a@1.0</id></package></identifiers>
<vulnerabilities><vulnerability source="NVD"><name>CVE-2024-0001</name><severity>HIGH</severity><cwes><cwe>CWE-79</cwe>
<cwe>NVD-CWE-Other</cwe></cwes></vulnerability></vulnerabilities></dependency></dependencies></analysis>""")
    (finding,) = parse(report)
    assert finding["source"]["format"] == "dependency-check-xml"
    assert (finding["location"]["path"], finding["cwe"], finding["tool_version"]) == ("lib/a-1.0.jar", ["CWE-79"], "9.0.9")


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d["dependencies"].__setitem__(0, "a-1.0.jar"), "$.dependencies[0]"),
    (lambda d: d["dependencies"][0].__setitem__("vulnerabilities", {"name": "x"}), "$.dependencies[0].vulnerabilities"),
    (lambda d: d["dependencies"][0].__setitem__("packages", [7]), "$.dependencies[0].packages[0]"),
    (lambda d: d["dependencies"][0]["vulnerabilities"][0].__setitem__("cvssv3", 9.8),
     "$.dependencies[0].vulnerabilities[0].cvssv3"),
    (lambda d: d["dependencies"][0]["vulnerabilities"][0].pop("name"), "$.dependencies[0].vulnerabilities[0]"),
])
def test_dependency_check_malformed_json_raises_parse_error(mutate, where):
    doc = dc_report({"name": "CVE-2024-0001", "references": [{"url": "https://nvd.nist.gov/"}]})
    mutate(doc)
    with pytest.raises(ParseError) as err:
        list(dc.parse_json(doc))
    assert err.value.where == where


# ---------------------------------------------------------------- npm audit

def npm6(**advisory) -> dict:
    adv = {"id": 1067342, "title": "qs vulnerable to Prototype Pollution", "module_name": "qs", "severity": "high",
           "url": "https://github.com/advisories/GHSA-hrpp-h998-j3pp", "patched_versions": ">=6.7.3",
           "findings": [{"version": "6.7.0", "paths": ["express>qs"]}], **advisory}
    return {"actions": [], "advisories": {"1067342": adv}, "muted": [], "metadata": {}}


def npm7(*via, fix=True) -> dict:
    vulns = {"qs": {"name": "qs", "severity": "high", "isDirect": False, "via": list(via), "effects": ["express"],
                    "range": "6.7.0 - 6.7.2", "nodes": ["node_modules/qs"], "fixAvailable": fix},
             "express": {"name": "express", "severity": "high", "isDirect": True, "via": ["qs"], "effects": [],
                         "range": "<=4.17.2", "nodes": ["node_modules/express"], "fixAvailable": fix}}
    return {"auditReportVersion": 2, "vulnerabilities": vulns, "metadata": {}}


VIA = {"source": 1067342, "name": "qs", "dependency": "qs", "title": "qs vulnerable to Prototype Pollution",
       "url": "https://github.com/advisories/GHSA-hrpp-h998-j3pp", "severity": "high", "cwe": ["CWE-1321"],
       "cvss": {"score": 7.5, "vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}, "range": ">=6.7.0 <6.7.3"}


@pytest.mark.parametrize("word, cvss, severity", [
    ("critical", None, "critical"), ("high", None, "high"), ("moderate", None, "medium"), ("low", None, "low"),
    ("info", None, "info"), (None, {"score": 9.8, "vectorString": None}, "critical"),
    ("", {"score": 5.3, "vectorString": None}, "medium"), (None, {"score": 0, "vectorString": None}, "medium"),
    (None, None, "medium"),
])
def test_npm_audit_severity(word, cvss, severity):
    (v6,) = npm_audit.parse(npm6(severity=word, cvss=cvss))
    (v7,) = npm_audit.parse_v7(npm7({**VIA, "severity": word, "cvss": cvss}))
    assert v6["severity"] == v7["severity"] == severity
    assert v6["tool_severity"] == v7["tool_severity"] == (word or "")


@pytest.mark.parametrize("cwe, expected", [
    ("CWE-79", ["CWE-79"]), (["CWE-400", "CWE-1333"], ["CWE-400", "CWE-1333"]),
    ('["CWE-918","CWE-1333"]', ["CWE-918", "CWE-1333"]), (None, []), ("CWE-", []), ([], []),
])
def test_npm_audit_cwe_shapes(cwe, expected):
    (finding,) = npm_audit.parse(npm6(cwe=cwe))
    assert finding["cwe"] == expected


def test_npm6_one_finding_per_installed_version():
    findings = [{"version": "0.0.8", "paths": ["optimist>minimist"]}, {"version": "1.2.5", "paths": ["mkdirp>minimist"]},
                {"version": "1.2.5", "paths": ["rc>minimist"]}]
    records = list(npm_audit.parse(npm6(module_name="minimist", findings=findings, patched_versions="<0.0.0")))
    assert [r["package"]["version"] for r in records] == ["0.0.8", "1.2.5"]
    assert {r["rule_id"] for r in records} == {"GHSA-hrpp-h998-j3pp"}
    assert all(r["package"]["fixed_versions"] == [] for r in records)  # "<0.0.0" is npm's "no fix"


def test_npm6_rule_id_is_the_ghsa_else_the_npm_advisory_number():
    (ghsa,) = npm_audit.parse(npm6(github_advisory_id="GHSA-hrpp-h998-j3pp", url="https://npmjs.com/advisories/1"))
    (number,) = npm_audit.parse(npm6(id=18, url="https://npmjs.com/advisories/18"))
    assert (ghsa["rule_id"], number["rule_id"]) == ("GHSA-hrpp-h998-j3pp", "18")


def test_npm7_one_finding_per_advisory_and_none_for_transitive_effects():
    other = {**VIA, "source": 1096366, "url": "https://github.com/advisories/GHSA-6rw7-vpxm-498p", "severity": "low"}
    records = list(npm_audit.parse_v7(npm7(VIA, other, "side-channel")))
    assert [(r["rule_id"], r["package"]["name"]) for r in records] == \
        [("GHSA-hrpp-h998-j3pp", "qs"), ("GHSA-6rw7-vpxm-498p", "qs")]


@pytest.mark.parametrize("fix, hint", [
    (True, "Run `npm audit fix`."),
    ({"name": "express", "version": "4.18.2", "isSemVerMajor": False}, "Upgrade express to 4.18.2."),
    ({"name": "react-scripts", "version": "2.1.3", "isSemVerMajor": True},
     "Upgrade react-scripts to 2.1.3 (a semver-major change: `npm audit fix --force`)."),
    (False, ""),
])
def test_npm7_fix_hint_from_fix_available(fix, hint):
    (finding,) = npm_audit.parse_v7(npm7(VIA, fix=fix))
    assert finding["fix_hint"] == hint


@pytest.mark.parametrize("code, summary", [
    ("ENOAUDIT", "Your configured registry (https://registry.npmjs.org/) may not support audit requests."),
    ("ENOLOCK", "This command requires an existing lockfile.\nTry creating one first with: npm i --package-lock-only"),
])
def test_npm_failed_audit_is_one_clear_error_line(tmp_path, code, summary):
    report = tmp_path / "npm-audit.json"
    report.write_bytes(orjson.dumps({"error": {"code": code, "summary": summary, "detail": ""}}))
    exit_code, records, err = run_command(Parse, [str(report)])
    assert (exit_code, records) == (1, [])
    (line,) = err.strip().splitlines()
    assert str(report) in line and code in line and " ".join(summary.split()) in line


@pytest.mark.parametrize("doc, where", [
    ({"actions": [], "advisories": {"1": []}}, "$.advisories.1"),
    ({"actions": [], "advisories": {"1": {"id": 1, "findings": {}, "module_name": "qs"}}}, "$.advisories.1.findings"),
    ({"actions": [], "advisories": {"1": {"id": 1, "title": "x"}}}, "$.advisories.1"),
    (npm6(cvss=7.5), "$.advisories.1067342.cvss"),
])
def test_npm6_malformed_raises_parse_error(doc, where):
    with pytest.raises(ParseError) as err:
        list(npm_audit.parse(doc))
    assert err.value.where == where


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d["vulnerabilities"].__setitem__("qs", ["qs"]), "$.vulnerabilities.qs"),
    (lambda d: d["vulnerabilities"]["qs"].__setitem__("via", "express"), "$.vulnerabilities.qs.via"),
    (lambda d: d["vulnerabilities"]["qs"]["via"].append(7), "$.vulnerabilities.qs.via[1]"),
    (lambda d: d["vulnerabilities"]["qs"]["via"][0].update(url=None, source=None), "$.vulnerabilities.qs.via[0]"),
])
def test_npm7_malformed_raises_parse_error(mutate, where):
    doc = npm7(copy.deepcopy(VIA))
    mutate(doc)
    with pytest.raises(ParseError) as err:
        list(npm_audit.parse_v7(doc))
    assert err.value.where == where
