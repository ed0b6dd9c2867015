"""Trivy JSON: ids shared with Trivy's SARIF, no secret in the output, skipped checks, image paths."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES, run_command  # noqa: E402

from secai.commands.parse import Parse  # noqa: E402
from secai.parsing import formats  # noqa: E402
from secai.parsing.formats.trivy import clear_uri, image_repository, parse, to_path_uri  # noqa: E402
from secai.parsing.finding import ParseError, Split, merged  # noqa: E402

PARSE = FIXTURES / "parse"


def findings(path: Path) -> list[dict]:
    code, records, err = run_command(Parse, ["-q", path.name], cwd=path.parent)
    assert code == 0, err
    return records


# The SARIF twins are the same scans written by `trivy --format sarif` (without
# --include-non-failures, so they hold no PASS or EXCEPTION misconfigurations).
@pytest.mark.parametrize("case", ["image", "fs"])
def test_json_and_sarif_give_the_same_ids(case):
    from_json = findings(PARSE / "trivy-json" / f"{case}.json")
    from_sarif = findings(PARSE / "sarif" / f"trivy-{case}.sarif")
    assert {f["id"] for f in from_json} == {f["id"] for f in from_sarif}
    assert len(from_json) == len(from_sarif)
    secrets = lambda fs: {f["id"]: f.get("secret") for f in fs}  # noqa: E731
    assert secrets(from_json) == secrets(from_sarif)


@pytest.mark.parametrize("report", [PARSE / "trivy-json" / "fs.json", PARSE / "sarif" / "trivy-fs.sarif"])
def test_no_secret_text_in_output(report):
    doc = json.loads((PARSE / "trivy-json" / "fs.json").read_text())
    secrets = [s for r in doc["Results"] for s in r.get("Secrets") or []]
    texts = {s["Match"] for s in secrets} | {line["Content"] for s in secrets for line in s["Code"]["Lines"]}
    texts |= {t.split("=", 1)[1] for t in texts if "=" in t}  # the values alone, masked or not
    out = json.dumps(findings(report))
    assert len(secrets) == 3 and texts
    for t in texts:
        assert t not in out
    assert out.count('"sha256"') == 3


def test_pass_and_exception_misconfigurations_are_skipped():
    fs_rules = {f["rule_id"] for f in findings(PARSE / "trivy-json" / "fs.json") if f["category"] == "iac"}
    assert fs_rules == {"DS001", "DS029"}  # DS005 PASS and DS026 EXCEPTION are not findings
    k8s_rules = [f["rule_id"] for f in findings(PARSE / "trivy-json" / "k8s.json") if f["category"] == "iac"]
    assert "KSV021" not in k8s_rules and k8s_rules.count("KSV001") == 2  # two namespaces, two findings


@pytest.mark.parametrize("target, cls, path", [
    ("teamdojo:latest (alpine 3.9.4)", "os-pkgs", "library/teamdojo"),
    ("noppaknopsta/example-app:main-159 (debian 10.13)", "os-pkgs", "noppaknopsta/example-app"),
    ("gcr.io/google_samples/gb-redis-follower:v2 (debian 10.4)", "os-pkgs", "google_samples/gb-redis-follower"),
    ("docker.io/redis:6.0.5 (debian 10.4)", "os-pkgs", "library/redis"),
    ("localhost:5000/team/app:1.0 (alpine 3.19.1)", "os-pkgs", "team/app"),
    ("alpine@sha256:" + "a" * 64 + " (alpine 3.19.1)", "os-pkgs", "library/alpine"),
    ("library/teamdojo", "os-pkgs", "library/teamdojo"),
    ("/tmp/Image.tar (alpine 3.9.4)", "os-pkgs", "/tmp/Image.tar"),  # not a reference: path kept
    ("Java", "lang-pkgs", "Java"),
    ("app/requirements.txt (prod)", "lang-pkgs", "app/requirements.txt (prod)"),
])
def test_to_path_uri(target, cls, path):
    assert to_path_uri(target, cls) == path
    assert to_path_uri(path, cls) == path  # idempotent


@pytest.mark.parametrize("ref, repo", [
    ("nginx", "library/nginx"),
    ("index.docker.io/nginx:1.25", "library/nginx"),
    ("ghcr.io/acme/tools/scanner:v1", "acme/tools/scanner"),
    ("registry.example.com:8443/shop/api", "shop/api"),
    ("Upper/Case", None),
    ("x", None),
    ("repo:bad tag", None),
])
def test_image_repository(ref, repo):
    assert image_repository(ref) == repo


@pytest.mark.parametrize("target, path", [
    ("git@github.com:acme/tf-s3.git?ref=v4.2.0/main.tf", "github.com/acme/tf-s3/tree/v4.2.0/main.tf"),
    ("git::https:/github.com/acme/vpc.git/main.tf", "github.com/acme/vpc/main.tf"),
    ("git::ssh://ci@example.com/storage.git/s3.tf", "example.com/storage/s3.tf"),
    ("s3::https://s3.amazonaws.com/modules/vpc.zip/main.tf", "https://s3.amazonaws.com/modules/vpc.zip/main.tf"),
    ("infra\\modules\\main.tf", "infra/modules/main.tf"),
])
def test_clear_uri(target, path):
    assert clear_uri(target) == path


@pytest.mark.parametrize("doc, where", [
    ({"SchemaVersion": 2, "Results": {"Target": "x"}}, "$.Results"),
    ({"SchemaVersion": 2, "Results": [{"Target": "x", "Vulnerabilities": {}}]}, "$.Results[0].Vulnerabilities"),
    ({"SchemaVersion": 2, "Results": [{"Target": "x", "Vulnerabilities": [{"PkgName": "a"}]}]},
     "$.Results[0].Vulnerabilities[0]"),
    ({"SchemaVersion": 2, "Results": [{"Target": "x", "Vulnerabilities": [{"VulnerabilityID": "CVE-2024-1", "CVSS": []}]}]},
     "$.Results[0].Vulnerabilities[0].CVSS"),
    ({"SchemaVersion": 2, "Results": [{"Target": "x", "Vulnerabilities": [  # an advisory's second entry
        {"VulnerabilityID": "CVE-2024-1", "Title": "t", "PkgName": "a"},
        {"VulnerabilityID": "CVE-2024-1", "Title": "t", "PkgName": "b", "PkgIdentifier": []}]}]},
     "$.Results[0].Vulnerabilities[1].PkgIdentifier"),
    ({"SchemaVersion": 2, "Results": [{"Target": "x", "Vulnerabilities": [
        {"VulnerabilityID": "CVE-2024-1", "Title": "t", "PkgName": "a"},
        {"VulnerabilityID": "CVE-2024-1", "Title": "t", "PkgName": "b", "CVSS": [], "PkgIdentifier": []}]}]},
     "$.Results[0].Vulnerabilities[1].CVSS"),
    ({"ClusterName": "c", "Resources": [{"Kind": "Pod", "Results": [{"Target": "x", "Misconfigurations": [1]}]}]},
     "$.Resources[0].Results[0].Misconfigurations[0]"),
    ([{"Target": "x", "Secrets": "no"}], "$[0].Secrets"),
])
def test_malformed_structure_is_a_parse_error(doc, where):
    with pytest.raises(ParseError) as err:
        list(parse(doc))
    assert err.value.where == where


def test_missing_optional_fields_never_raise():
    doc = {"SchemaVersion": 2, "Results": [{"Target": "t", "Vulnerabilities": [{"VulnerabilityID": "CVE-2024-1"}],
                                            "Misconfigurations": [{"ID": "DS001"}], "Secrets": [{"RuleID": "r"}],
                                            "Licenses": [{"Name": "MIT"}]}]}
    assert [f.get("rule_id") for f in parse(doc)] == ["CVE-2024-1", "DS001", "r", "MIT"]


def _advisories(bad: bool = False) -> dict:
    """A report whose advisories repeat across packages and targets (image.json's, three times a
    target), with what the shared lane hands back or must keep: no package, no Title, absolute
    package paths (made relative at the report's end), no Target, an os-pkgs target; `bad`: an
    advisory's later entry with a PkgIdentifier that is no object."""
    seed = [v for r in json.loads((PARSE / "trivy-json" / "image.json").read_text())["Results"]
            for v in r.get("Vulnerabilities") or []]
    results = []
    for target, cls in (("app/a.jar", "lang-pkgs"), ("img:1 (alpine 3.19.1)", "os-pkgs"), ("", "lang-pkgs"),
                        ("app/b.jar", "lang-pkgs")):
        vulns = []
        for j, v in enumerate(seed * 3):
            v = {**v, "PkgName": f"{v['PkgName']}-{j}"}
            if j % 7 == 3:
                v.pop("Title", None)
            if j % 5 == 4:
                v["PkgPath"] = f"/srv/app/lib/{j}.jar"
            vulns.append(v)
        vulns.append({"VulnerabilityID": "CVE-2024-9", "Title": "no package"})
        results.append({"Target": target, "Class": cls, "Type": "jar", "Vulnerabilities": vulns})
    if bad:
        results[3]["Vulnerabilities"][7]["PkgIdentifier"] = "pkg:x"
    return {"SchemaVersion": 2, "Trivy": {"Version": "0.50.0"}, "Results": results}


def test_an_advisory_is_shared_by_its_entries():
    """Every entry with a package and a Title is a Split whose shared part is its advisory's, one
    object for all the entries of one advisory (image.json's entry, repeated) and class, another
    for each other; the others are dicts."""
    found = list(parse(_advisories()))
    splits = [f for f in found if type(f) is Split]
    assert len(splits) == 4 * 3 * 6 - len([f for f in found if type(f) is dict and f.get("package")])
    by_advisory: dict[tuple, set] = {}
    for f in splits:
        assert set(f.own) <= {"package", "location"} and f.own["package"]["name"]
        seed = int(f.own["package"]["name"].rpartition("-")[2]) % 6  # image.json's entry it repeats
        by_advisory.setdefault((f.shared["category"], seed), set()).add(id(f.shared))
    assert len(by_advisory) == 2 * 5 and all(len(ids) == 1 for ids in by_advisory.values())
    assert len(set.union(*by_advisory.values())) == 2 * 5
    assert all(type(f) is dict for f in found if f.get("rule_id") == "CVE-2024-9")


@pytest.mark.parametrize("case", ["advisories", "bad", "lazy", "image", "fs", "k8s", "legacy", "licenses"])
def test_shared_advisories_give_the_bytes_of_whole_findings(monkeypatch, tmp_path, case):
    """secai-parse writes the same lines, and the same one-line reject, when the parser's Splits are
    given as the whole findings they stand for; read lazily too."""
    if case in ("advisories", "bad", "lazy"):
        (tmp_path / "r.json").write_text(json.dumps(_advisories(case == "bad")))
    else:
        (tmp_path / "r.json").write_bytes((PARSE / "trivy-json" / f"{case}.json").read_bytes())
    if case == "lazy":
        from secai.parsing import lazy
        monkeypatch.setattr(lazy, "LAZY_BYTES", 0)
        monkeypatch.setattr(lazy, "BIG_ARRAY", 0)
    lane = run_command(Parse, ["-q", "r.json"], cwd=tmp_path, raw=True)
    fmt = next(f for f in formats.FORMATS if f.name == "trivy-json")
    whole = dataclasses.replace(fmt, parse=lambda doc: (merged(f) for f in fmt.parse(doc)))
    monkeypatch.setattr(formats, "FORMATS", [whole if f is fmt else f for f in formats.FORMATS])
    assert run_command(Parse, ["-q", "r.json"], cwd=tmp_path, raw=True) == lane
    if case == "bad":
        assert lane[0] != 0 and lane[2].count("\n") == 1
        assert "r.json: trivy-json: $.Results[3].Vulnerabilities[7].PkgIdentifier: expected object, got str" in lane[2]
    else:
        assert lane[0] == 0 and lane[1]
