"""secai-kb harvest: the committed rule knowledge (lib/secai/analysis/kb/harvested/) is valid, covers
what issue 14 names, is written deterministically, and is what the installed scanners give today
(that test runs the probes for real and skips cleanly without .scanners/)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, run_command

from secai.analysis import harvest, rules
from secai.commands.kb import Kb
from secai.records import schema_error

SCANNERS_PYTHON = ROOT / ".scanners" / "bin" / "python"
# every test id bandit 1.9.4 ships (plugins and blacklists), as `bandit -l` lists them
BANDIT_IDS = {f"B{n}" for n in (
    101, 102, 103, 104, 105, 106, 107, 108, 110, 112, 113, 201, 202, 301, 302, 303, 304, 305, 306, 307, 308, 310,
    311, 312, 313, 314, 315, 316, 317, 318, 319, 321, 323, 324, 401, 402, 403, 404, 405, 406, 407, 408, 409, 411,
    412, 413, 415, 501, 502, 503, 504, 505, 506, 507, 508, 509, 601, 602, 603, 604, 605, 606, 607, 608, 609, 610,
    611, 612, 613, 614, 615, 701, 702, 703, 704)}


def records(name: str) -> list[dict]:
    return rules.harvested(name)["records"]


def checks(framework: str | None = None, **where) -> list[dict]:
    return [r for r in records("checkov") if (framework is None or r["framework"] == framework)
            and all(r.get(k) == v for k, v in where.items())]


@pytest.mark.parametrize("name", harvest.SOURCES)
def test_shipped_files_validate_and_name_their_source(name):
    data = rules.harvested(name)
    assert data["schema"] == "harvest/1"
    source = data["source"]
    assert source["version"] and source["licence"] == harvest.LICENCES[name][0]
    assert source["licence_url"].startswith("https://") and source["harvester"] == harvest.HARVESTER_VERSION
    assert source["records"] == len(data["records"]) > 50
    bad = [(r.get("id"), e) for r in data["records"] if (e := schema_error("rule/1", r))]
    assert not bad, bad[:3]


@pytest.mark.parametrize("name", harvest.SOURCES)
def test_shipped_files_are_written_as_the_harvester_writes_them(name):
    """Sorted, one record per line: rewriting a file from its own content gives the same bytes."""
    path = rules.HARVESTED / f"{name}.json"
    data = orjson.loads(path.read_bytes())
    assert harvest.document(data["source"], data["records"]) == path.read_bytes()
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(data["records"]) + 3  # the header, `"records": [`, the records, `]}`
    ids = [r["id"] for r in data["records"]]
    assert ids == sorted(ids, key=lambda i: int(i[4:])) if name == "cwe" else ids == sorted(ids)


def test_checkov_value_checks_carry_their_expectation():
    (trail,) = checks("terraform", id="CKV_AWS_36")
    assert trail["check"] == "value" and trail["inspected_key"] == "enable_log_file_validation"
    assert trail["expected"] == [True] and trail["missing"] == "FAILED" and trail["resources"] == ["aws_cloudtrail"]
    (cfn,) = checks("cloudformation", id="CKV_AWS_36")
    assert cfn["inspected_key"] == "Properties/EnableLogFileValidation"
    negative = checks("terraform", check="negative_value")
    # a key computed per resource (CKV_AWS_40: users or user) is left out, never guessed
    assert len(negative) > 50 and sum(1 for r in negative if r["inspected_key"]) >= len(negative) - 5
    assert any(r["forbidden"] for r in negative)
    assert len(checks("terraform", check="value")) > 400
    assert any(r["any_value"] for r in records("checkov"))  # checkov's ANY_VALUE as a flag, never the sentinel
    assert "CKV_ANY" not in (rules.HARVESTED / "checkov.json").read_text()


def test_checkov_every_framework_and_the_graph_checks():
    frameworks = {r["framework"] for r in records("checkov")}
    assert {"terraform", "cloudformation", "kubernetes", "dockerfile", "github_actions", "serverless", "arm",
            "bicep", "gitlab_ci", "secrets"} <= frameworks
    assert checks("kubernetes", id="CKV_K8S_16") and checks("dockerfile", id="CKV_DOCKER_2")
    graph = checks("terraform", check="graph")
    assert len(graph) > 100 and all(r["id"].startswith("CKV") and r["condition"] for r in graph)
    (s3,) = checks("terraform", id="CKV2_AWS_6")
    assert {"attribute": "block_public_acls", "operator": "equals", "value": True,
            "resource_types": ["aws_s3_bucket_public_access_block"]} in s3["conditions"]
    # no local path of the machine that harvested
    text = b"".join((rules.HARVESTED / f"{n}.json").read_bytes() for n in harvest.SOURCES)
    assert b"site-packages" not in text and str(ROOT).encode() not in text


def test_bandit_every_test_with_its_prose():
    by_id = {r["id"]: r for r in records("bandit")}
    assert set(by_id) == BANDIT_IDS
    assert all(len(r["what"]) >= 20 for r in by_id.values())
    assert by_id["B602"]["cwe"] == ["CWE-78"] and "shell" in by_id["B602"]["what"]
    assert "Config Options" not in by_id["B602"]["what"] and ">> Issue" not in by_id["B602"]["what"]
    assert by_id["B101"]["advice"].startswith("Consider raising")
    assert by_id["B301"]["blacklist"] == "calls" and "pickle.loads" in by_id["B301"]["qualnames"]
    assert by_id["B404"]["blacklist"] == "imports" and by_id["B404"]["severity"] == ["LOW"]


def test_cwe_catalogue():
    xss = rules.cwe_entry("CWE-79")
    assert xss["name"].startswith("Improper Neutralization of Input During Web Page Generation")
    assert xss["abstraction"] == "Base" and xss["mitigations"] and xss["consequences"]
    assert all(m["description"] for m in xss["mitigations"])
    assert {"scope", "impact"} == set(xss["consequences"][0]) and xss["consequences"][0]["scope"]
    assert rules.cwe_entry("79") == xss == rules.cwe_entry("cwe-79")
    assert rules.cwe_entry("CWE-1000") is None  # a view: not harvested
    assert rules.cwe_entry("CWE-999999") is None and rules.cwe_entry("XSS") is None
    assert len(records("cwe")) > 900 and sum(len(orjson.dumps(r)) for r in records("cwe")) < 2_000_000


def test_rst_prose_keeps_the_prose():
    doc = ("**B999: Test for a thing**\n\nIt flags ``eval`` of input.\nThis is dangerous.\n\n"
           "**Config Options:**\n\nnone\n\n:Example:\n\n.. code-block:: none\n\n    >> Issue: x\n")
    assert harvest.rst_prose(doc) == ("Test for a thing", "It flags `eval` of input. This is dangerous.")
    assert harvest.rst_prose("Docs of Flask [1]_ and Werkzeug [2]_ say so [#]_.")[1] == "Docs of Flask and Werkzeug say so."


def test_catalogue_lists_split_only_at_their_keys():
    cell = "::PHASE:Implementation Architecture and Design:STRATEGY:Input Validation:DESCRIPTION:Use this: not that.::"
    entries = harvest.cwe_list(cell, ("PHASE", "STRATEGY", "DESCRIPTION"))
    assert entries == [[("PHASE", "Implementation Architecture and Design"), ("STRATEGY", "Input Validation"),
                        ("DESCRIPTION", "Use this: not that.")]]
    row = {"CWE-ID": "20", "Name": "n", "Weakness Abstraction": "Class", "Status": "Stable", "Description": "d",
           "Extended Description": "", "Applicable Platforms": "::LANGUAGE NAME:Python:LANGUAGE PREVALENCE:Often::",
           "Common Consequences": "::SCOPE:Integrity:IMPACT:Modify Application Data:NOTE:x: y::",
           "Potential Mitigations": cell}
    (r,) = harvest.cwe_records({"rows": [row]})
    assert r["mitigations"] == [{"phase": "Implementation; Architecture and Design", "strategy": "Input Validation",
                                 "description": "Use this: not that."}]
    assert r["consequences"] == [{"scope": ["Integrity"], "impact": ["Modify Application Data"]}]
    assert r["languages"] == ["Python"] and schema_error("rule/1", r) is None


def fake_interpreter(tmp_path: Path, output: str) -> Path:
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\n")
    python.chmod(0o755)
    return python


def test_a_probe_that_fails_writes_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(harvest.HarvestError, match="bandit_tests.py: output is not JSON"):
        harvest.harvest(fake_interpreter(tmp_path, "not json"), out, ("bandit",))
    with pytest.raises(harvest.HarvestError, match="found nothing to harvest"):
        harvest.harvest(fake_interpreter(tmp_path, '{"version": "1", "tests": []}'), out, ("bandit",))
    assert not out.exists()


def test_the_command_says_what_is_missing_in_one_line(tmp_path):
    code, _, err = run_command(Kb, ["harvest", "--scanners-dir", str(tmp_path), "-o", str(tmp_path / "out")])
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("secai-kb: error: no scanner environment") and not (tmp_path / "out").exists()


def _has_scanners() -> bool:
    if not SCANNERS_PYTHON.exists():
        return False
    found = subprocess.run([str(SCANNERS_PYTHON), "-c", "import checkov, bandit, cwe2"], capture_output=True)
    return found.returncode == 0


@pytest.mark.skipif(not _has_scanners(), reason=".scanners/ (make scanners) with checkov, bandit and cwe2 is absent")
def test_harvesting_the_installed_scanners_gives_the_committed_files(tmp_path):
    """The committed files cannot go stale silently: a new scanner pin without `make kb` fails here.
    One run of each probe (checkov's takes ~20 s)."""
    code, _, err = run_command(Kb, ["harvest", "--scanners-dir", str(SCANNERS_PYTHON.parent), "-o", str(tmp_path)])
    assert code == 0, err
    for name in harvest.SOURCES:
        assert (tmp_path / f"{name}.json").read_bytes() == (rules.HARVESTED / f"{name}.json").read_bytes(), \
            f"{name}.json is stale: run `make kb` and commit lib/secai/analysis/kb/harvested/"
