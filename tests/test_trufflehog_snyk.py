"""TruffleHog / trufflehog3 and Snyk parsers: severities, detection, errors, secrets never output."""

from __future__ import annotations

import base64
import hashlib
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import CORPUS, FIXTURES, run_command  # noqa: E402

from secai.parsing import formats as parsers  # noqa: E402
from secai.errors import InputError  # noqa: E402
from secai.commands.parse import Parse  # noqa: E402
from secai.parsing.reports import NotAReport, Unit, load  # noqa: E402
from secai.parsing.formats import snyk, trufflehog  # noqa: E402
from secai.parsing.finding import ParseError  # noqa: E402

PARSE = FIXTURES / "parse"
OURS = {f.name for f in trufflehog.FORMATS + snyk.FORMATS}
TRUFFLE_FIXTURES = sorted(p for d in ("trufflehog-v2-jsonl", "trufflehog-v3-jsonl", "trufflehog3-json")
                          for p in (PARSE / d).glob("*") if ".expected." not in p.name)
TRUFFLE_CORPUS = sorted(CORPUS.glob("trufflehog/*")) + sorted(CORPUS.glob("trufflehog3/*"))


def _parse(path: Path) -> list[dict]:
    code, records, err = run_command(Parse, ["-q", path.name], cwd=path.parent)
    assert code == 0, err
    return records


def _doc(path: Path):
    return load(Unit(str(path), path.read_bytes(), True))


def _one(path: Path, **where) -> dict:
    return next(r for r in _parse(path) if all(r.get(k) == v for k, v in where.items()))


# ---------------------------------------------------------------- severities

def test_trufflehog_v3_severity_is_verification():
    records = {r["rule_id"]: r for r in _parse(PARSE / "trufflehog-v3-jsonl" / "git-fs-docker.jsonl")}
    assert (records["AWS"]["severity"], records["AWS"]["confidence"], records["AWS"]["tags"]) == ("critical", "high", ["verified"])
    assert (records["Postgres"]["severity"], records["Postgres"]["tags"]) == ("high", ["unverified"])
    assert "confidence" not in records["Postgres"] and "tool_severity" not in records["Postgres"]


@pytest.mark.parametrize("word,severity", [("HIGH", "high"), ("MEDIUM", "medium"), ("LOW", "low"), (None, "high"),
                                           ("bogus", "high")])
def test_trufflehog3_rule_severity(word, severity):
    [f] = trufflehog.parse_trufflehog3([{"rule": {"id": "r", "message": "R", "severity": word}, "path": "a", "line": "2"}])
    assert f["severity"] == severity and f["tool_severity"] == (word or "")
    [f] = trufflehog.parse_v2({"reason": "AWS API Key", "stringsFound": ["AKIAXXXXXXXXXXXXXXXX"], "path": "a"})
    assert f["severity"] == "high"


@pytest.mark.parametrize("vuln,severity,word", [
    ({"severity": "high", "severityWithCritical": "critical"}, "critical", "critical"),  # older reports cap severity
    ({"severity": "medium"}, "medium", "medium"),
    ({"severity": "low", "cvssScore": 9.8}, "low", "low"),  # Snyk's own rating wins over the score
    ({"cvssScore": 7.5}, "high", ""),
    ({}, "info", ""),
])
def test_snyk_severity(vuln, severity, word):
    doc = {"ok": False, "packageManager": "npm", "vulnerabilities": [{"id": "SNYK-JS-X-1", "packageName": "x", **vuln}]}
    [f] = snyk.parse(doc)
    assert (f["severity"], f["tool_severity"]) == (severity, word)


# ---------------------------------------------------------------- detection

def _fixture_docs():
    for path in sorted(PARSE.glob("*/*")):
        if ".expected." not in path.name:
            yield path, *_doc(path)


@pytest.mark.parametrize("path,syntax,doc", list(_fixture_docs()), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_detection_does_not_overlap(path, syntax, doc):
    claims = [f.name for f in parsers.FORMATS if f.syntax == syntax and f.detect(doc)]
    if not claims and (found := parsers.detect(doc, syntax)[0]):  # a JSON Lines report of one record
        claims = [found.name]
    if path.parent.name in OURS:
        assert claims == [path.parent.name]
    else:
        assert not OURS & set(claims)


def test_no_other_corpus_report_is_claimed(corpus):
    mine = ("snyk/", "trufflehog/", "trufflehog3/")
    for path in sorted(corpus.glob("*/*")):
        if path.name in ("MANIFEST.tsv", "README.md", "DEFECTDOJO_LICENSE.md"):
            continue
        try:
            syntax, doc = _doc(path)
        except (InputError, NotAReport):  # unreadable reports are another test's business
            continue
        claims = {f.name for f in parsers.FORMATS if f.syntax == syntax and f.detect(doc)} & OURS
        assert bool(claims) == (str(path.relative_to(corpus)).startswith(mine) and doc != []), path


def test_one_line_reports_are_read_as_their_record(tmp_path):
    lines = (PARSE / "trufflehog-v3-jsonl" / "git-fs-docker.jsonl").read_bytes().splitlines()
    (tmp_path / "one.json").write_bytes(lines[3] + b"\n")  # the Postgres record alone
    [alone] = _parse(tmp_path / "one.json")
    postgres = _one(PARSE / "trufflehog-v3-jsonl" / "git-fs-docker.jsonl", rule_id="Postgres")
    assert alone["source"]["format"] == "trufflehog-v3-jsonl"
    assert {k: v for k, v in alone.items() if k != "source"} == {k: v for k, v in postgres.items() if k != "source"}
    v2 = (PARSE / "trufflehog-v2-jsonl" / "history.jsonl").read_bytes().splitlines()
    (tmp_path / "v2.json").write_bytes(v2[2])
    assert _parse(tmp_path / "v2.json")[0]["source"]["format"] == "trufflehog-v2-jsonl"


def test_trufflehog_log_lines_are_skipped():
    records = _parse(PARSE / "trufflehog-v3-jsonl" / "git-fs-docker.jsonl")
    assert [r["rule_id"] for r in records] == ["AWS", "Postgres", "NpmToken"]
    assert records[0]["occurrences"] == 2  # one place, two commits
    docker = records[2]["location"]
    assert docker == {"path": "app/.npmrc", "resource": "example/webshop:1.4.2"}


# ---------------------------------------------------------------- malformed input

@pytest.mark.parametrize("parse,doc,where", [
    (trufflehog.parse_v2, [{"reason": "x", "stringsFound": "abc"}], "$[0].stringsFound"),
    (trufflehog.parse_v2, [{"reason": "x", "stringsFound": []}, {"stringsFound": ["a"]}], "$[1]"),
    (trufflehog.parse_v2, [{"reason": "x", "stringsFound": []}, "junk"], "$[1]"),
    (trufflehog.parse_v3, {"SourceMetadata": "x", "DetectorName": "AWS"}, "$[0].SourceMetadata"),
    (trufflehog.parse_v3, [{"SourceMetadata": {"Data": {"Git": []}}, "DetectorName": "AWS"}], "$[0].SourceMetadata.Data.Git"),
    (trufflehog.parse_v3, [{"SourceMetadata": {}, "DetectorName": ""}], "$[0]"),
    (trufflehog.parse_trufflehog3, [{"rule": {"message": "no id"}, "path": "a"}], "$[0].rule"),
    (trufflehog.parse_trufflehog3, [{"rule": {"id": "a"}, "path": "a"}, {"rule": "b", "path": "a"}], "$[1].rule"),
    (snyk.parse, {"ok": True, "vulnerabilities": ["x"]}, "$.vulnerabilities[0]"),
    (snyk.parse, {"ok": True, "vulnerabilities": [{"title": "no id"}]}, "$.vulnerabilities[0]"),
    (snyk.parse, {"vulnerabilities": [{"id": "a", "identifiers": {"CVE": "CVE-2020-1"}}]}, "$.vulnerabilities[0].identifiers.CVE"),
    (snyk.parse, {"vulnerabilities": [{"id": "a", "references": {"url": "x"}}]}, "$.vulnerabilities[0].references"),
    (snyk.parse, [{"vulnerabilities": []}, 3], "$[1]"),
    (snyk.parse, {"vulnerabilities": [], "applications": [{"vulnerabilities": {}}]}, "$.applications[0].vulnerabilities"),
    (snyk.parse, {"vulnerabilities": [], "filtered": {"ignore": [{"id": "a", "filtered": {"ignored": "x"}}]}},
     "$.filtered.ignore[0].filtered.ignored"),
])
def test_malformed_structure_raises_parse_error(parse, doc, where):
    with pytest.raises(ParseError) as err:
        list(parse(doc))
    assert err.value.where == where


def test_malformed_report_is_one_error_line(tmp_path):
    (tmp_path / "bad.json").write_bytes(orjson.dumps({"ok": True, "packageManager": "npm", "vulnerabilities": [7]}))
    code, records, err = run_command(Parse, ["-q", str(tmp_path / "bad.json")])
    assert code == 1 and not records and len(err.strip().splitlines()) == 1
    assert "snyk-json: $.vulnerabilities[0]: expected object" in err and "Traceback" not in err


def test_missing_optional_fields_never_raise():
    assert list(snyk.parse({"ok": True, "dependencyCount": 0, "vulnerabilities": [{"id": "SNYK-1"}]}))[0]["title"] == "SNYK-1"
    assert list(trufflehog.parse_v3({"SourceMetadata": None, "DetectorName": "X"}))[0]["location"] is None
    assert list(trufflehog.parse_v2({"reason": "R", "stringsFound": None}))[0]["secret"] is None


# ---------------------------------------------------------------- secrets

def _secret_values(doc) -> set[str]:
    """Every value in a TruffleHog / trufflehog3 report that is or quotes a secret."""
    values = set()
    for rec in doc if isinstance(doc, list) else [doc]:
        values.update(s for s in rec.get("stringsFound") or [])
        values.update(str(rec.get(k) or "") for k in ("Raw", "RawV2", "Redacted", "secret", "printDiff"))
        values.update((rec.get("context") or {}).values())
        if rec.get("Raw") and "DecoderName" not in rec:
            values.add(base64.b64decode(rec["Raw"]).decode())
        values.update(part for part in str(rec.get("RawV2") or "").split(":") if len(part) >= 20)
    lines = {line.strip() for v in values for line in v.splitlines()}
    return {v for v in values | lines if len(v) >= 8}


@pytest.mark.parametrize("report", TRUFFLE_FIXTURES + TRUFFLE_CORPUS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_secret_value_in_any_output_field(report: Path):
    syntax, doc = _doc(report)
    secrets = _secret_values(doc)
    assert secrets or doc == []
    output = "\n".join(orjson.dumps(r).decode() for r in _parse(report))
    for secret in secrets:
        assert secret not in output
        assert orjson.dumps(secret).decode()[1:-1] not in output


def test_commit_subject_quoting_a_secret_is_redacted():
    entropy = _one(PARSE / "trufflehog-v2-jsonl" / "history.jsonl", rule_id="High Entropy")
    assert entropy["message"].endswith("Cache token [REDACTED] for the CDN")
    aws = _one(PARSE / "trufflehog3-json" / "current.json", rule_id="aws")
    assert aws["message"].endswith("Terraform vars for [REDACTED]")


def test_secret_hashes():
    old = _one(PARSE / "trufflehog-v3-jsonl" / "github-2022.jsonl", rule_id="Github")  # Raw was base64 then
    raw = _doc(PARSE / "trufflehog-v3-jsonl" / "github-2022.jsonl")[1][0]["Raw"]
    assert old["secret"]["sha256"] == hashlib.sha256(base64.b64decode(raw)).hexdigest()
    new = _one(PARSE / "trufflehog-v3-jsonl" / "git-fs-docker.jsonl", rule_id="AWS")
    assert new["secret"]["sha256"] == hashlib.sha256(b"AKIAT4QX7RZ2MV8NLC5P").hexdigest()
    assert new["secret"]["commit"].startswith("8e1d4c7b")  # the first commit of the two
    [armor] = _parse(PARSE / "trufflehog-v2-jsonl" / "one-record.json")  # only "-----BEGIN RSA PRIVATE KEY-----"
    assert "secret" not in armor and armor["rule_id"] == "RSA private key"


# ---------------------------------------------------------------- Snyk facts

def test_snyk_dependency_paths_collapse_into_one_finding():
    records = {r["rule_id"]: r for r in _parse(PARSE / "snyk-json" / "npm-project.json")}
    lodash = records["SNYK-JS-LODASH-1040724"]
    assert lodash["occurrences"] == 2 and lodash["fix_hint"] == "Upgrade lodash@4.17.15 to lodash@4.17.21"
    assert lodash["package"] == {"ecosystem": "npm", "name": "lodash", "version": "4.17.15", "fixed_versions": ["4.17.21"]}
    assert (lodash["cve"], lodash["cwe"], lodash["aliases"]) == (["CVE-2021-23337"], ["CWE-78"], ["GHSA-35jh-r3h4-6jhm"])
    assert lodash["cvss"] == {"score": 7.2, "vector": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H/E:P/RL:U/RC:C", "version": "3.1"}
    minimist = records["SNYK-JS-MINIMIST-2429795"]
    assert minimist["fix_hint"] == "Upgrade mkdirp@0.5.1 to mkdirp@0.5.6" and "NSP-1179" in minimist["aliases"]
    assert records["snyk:lic:npm:pdf-toolkit:AGPL-3.0"]["package"]["license"] == "AGPL-3.0"
    ignored = records["SNYK-JS-SEMVER-3247795"]
    assert ignored["suppressed"] and ignored["suppression"]["justification"].startswith("Only reached by the dev server")
    assert all(r["location"] == {"path": "package-lock.json"} and r["category"] == "sca" for r in records.values())


def test_snyk_container_and_its_applications():
    records = _parse(PARSE / "snyk-json" / "container.json")
    openssl, glibc, express = records
    assert openssl["occurrences"] == 3 and openssl["package"]["name"] == "openssl"  # three binary packages, one source
    assert {openssl["category"], glibc["category"], express["category"]} == {"container", "sca"}
    image = "registry.example.com/shop/api:1.8.0"
    assert openssl["location"] == {"path": "shop/api", "resource": image}  # the repository: ids survive a new tag
    assert express["location"] == {"path": "srv/app/package.json", "resource": image}
    assert glibc["fix_hint"] == "There is no fixed version for `Debian:12` `glibc`." and "fixed_versions" not in glibc["package"]
    windows = _parse(PARSE / "snyk-json" / "all-projects.json")
    assert [r["location"]["path"] for r in windows] == ["services/billing/pom.xml"]


def test_snyk_container_corpus_counts_applications(corpus):
    records = _parse(corpus / "snyk" / "snykcontainer_issue_epss.json")
    assert sorted(r["category"] for r in records) == ["container"] + ["sca"] * 12


def test_snyk_code_sarif():
    records = {r["rule_id"]: r for r in _parse(PARSE / "sarif" / "snyk-code-shop.sarif")}
    sqli = records["javascript/Sqli"]
    assert (sqli["tool"], sqli["category"], sqli["severity"], sqli["tool_severity"]) == ("snyk", "sast", "high", "error")
    assert (sqli["title"], sqli["cwe"], sqli["confidence"]) == ("SQL Injection", ["CWE-89"], "high")
    assert sqli["message"].startswith("Unsanitized input from the HTTP request body flows into query")
    assert sqli["description"].startswith("## Details")
    assert records["javascript/HardcodedNonCryptoSecret"]["severity"] == "low"
    assert records["javascript/DOMXSS"]["cwe"] == ["CWE-79"]


def test_items_without_a_path_have_no_location(tmp_path):
    doc = [{"rule": {"id": "aws", "message": "AWS API Key"}, "path": "a.tf", "line": "3", "secret": "AKIAW2RT9YH4KD7ZPX3M"},
           {"rule": {"id": "aws", "message": "AWS API Key"}, "path": None, "secret": "AKIAW2RT9YH4KD7ZPX3N"},
           {"reason": "High entropy", "stringsFound": ["c2VjcmV0LXZhbHVlLWZvci10ZXN0cw=="]}]
    (tmp_path / "r.json").write_bytes(orjson.dumps(doc))
    records = _parse(tmp_path / "r.json")
    assert [("location" in r) for r in records] == [True, False, False]
