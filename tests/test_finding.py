"""The finding builder (secai.parsing.finding): dedup that no file order can steer, links kept only
when http(s), free text capped."""

from __future__ import annotations

import copy
import itertools

import orjson
import pytest
from conftest import run_command

from secai import config
from secai.records import schema_error
from secai.parsing.finding import TRUNCATED, capped, finalize, merge_duplicates
from secai.commands.parse import Parse


def sarif(level: str, *, cwe: str, refs: list[str], message: str = "SQL built from input",
          suppressed: bool = False) -> bytes:
    """A one-result CodeQL SARIF report: the same finding (rule, path, line) whatever the arguments."""
    result = {"ruleId": "py/sql-injection", "level": level, "message": {"text": message},
              "locations": [{"physicalLocation": {"artifactLocation": {"uri": "app/db.py"},
                                                  "region": {"startLine": 12}}}]}
    if suppressed:
        result["suppressions"] = [{"kind": "external", "justification": "not reachable"}]
    rule = {"id": "py/sql-injection", "shortDescription": {"text": "SQL injection"},
            "helpUri": refs[0] if refs else None,
            "properties": {"tags": ["security", f"external/cwe/{cwe}"]}}
    return orjson.dumps({"version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "CodeQL", "rules": [rule]}}, "results": [result]}]})


REAL = sarif("error", cwe="cwe-089", refs=["https://codeql.github.com/py-sql-injection"])
PLANTED = sarif("note", cwe="cwe-020", refs=["https://evil.example/phish"], message="Harmless style issue",
                suppressed=True)


def _runs(tmp_path, planted_name="100-planted", real_name="200-real"):
    for name, data in ((planted_name, PLANTED), (real_name, REAL)):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "codeql.sarif").write_bytes(data)
    return tmp_path / "runs"


def test_a_planted_duplicate_cannot_downgrade_or_hide_the_real_finding(tmp_path):
    runs = _runs(tmp_path)
    code, records, err = run_command(Parse, ["-q", str(runs)])
    assert code == 0, err
    [f] = records
    assert f["severity"] == "high" and f["suppressed"] is False and "suppression" not in f
    assert f["cwe"] == ["CWE-89", "CWE-20"] and f["occurrences"] == 2
    assert f["source"]["file"].endswith("200-real/codeql.sarif") and f["message"] == "SQL built from input"
    assert schema_error("finding/1", f) is None


def test_the_same_reports_in_either_order_give_byte_identical_output(tmp_path):
    a, b = tmp_path / "a.sarif", tmp_path / "b.sarif"
    a.write_bytes(PLANTED)
    b.write_bytes(REAL)
    outputs = {run_command(Parse, ["-q", *map(str, order)], raw=True)[1] for order in ((a, b), (b, a))}
    assert len(outputs) == 1 and outputs.pop().count("\n") == 1


def test_dedup_does_not_depend_on_which_run_sorts_first(tmp_path):
    """The real report wins on severity whether its run directory sorts before or after the planted one."""
    first = run_command(Parse, ["-q", str(_runs(tmp_path / "x", "100-planted", "200-real"))])[1]
    second = run_command(Parse, ["-q", str(_runs(tmp_path / "y", "300-planted", "200-real"))])[1]
    assert first[0]["severity"] == second[0]["severity"] == "high"
    assert first[0]["cwe"] == second[0]["cwe"] == ["CWE-89", "CWE-20"]


def _finding(file: str = "r.json", **extra) -> dict:
    f = {"tool": "trivy", "rule_id": "CVE-2024-1", "title": "t", "severity": "low", "category": "sca",
         "package": {"name": "lib", "version": "1.0"}, **extra}
    return finalize(f, {"file": file, "format": "trivy-json"})


def test_merge_takes_the_most_severe_and_the_union_of_facts_in_any_order():
    dups = [
        _finding(severity="low", cwe=["CWE-1"], cve=["CVE-2024-1"], aliases=["GHSA-a"],
                 references=["https://a.example/"], tags=["x"]),
        _finding(severity="critical", cwe=["CWE-2"], aliases=["GHSA-b"], tool_severity="CRITICAL",
                 references=["https://b.example/"], package={"name": "lib", "version": "1.0", "fixed_versions": ["1.2"]}),
        _finding(severity="medium", cwe=["CWE-1", "CWE-3"], description="longer text",
                 package={"name": "lib", "version": "1.0", "fixed_versions": ["1.1", "1.2"], "purl": "pkg:x/lib@1.0"}),
    ]
    outputs = set()
    for order in itertools.permutations(dups):
        merged = merge_duplicates(copy.deepcopy(list(order)), 100)
        outputs.add(orjson.dumps(merged, option=orjson.OPT_SORT_KEYS))
        assert schema_error("finding/1", merged) is None
    assert len(outputs) == 1
    merged = orjson.loads(outputs.pop())
    assert merged["severity"] == "critical" and merged["tool_severity"] == "CRITICAL"
    assert merged["cwe"] == ["CWE-2", "CWE-1", "CWE-3"] and merged["aliases"] == ["GHSA-b", "GHSA-a"]
    assert merged["cve"] == ["CVE-2024-1"] and merged["tags"] == ["x"] and merged["description"] == "longer text"
    assert merged["references"] == ["https://b.example/", "https://a.example/"]
    assert merged["package"] == {"name": "lib", "version": "1.0", "fixed_versions": ["1.2", "1.1"], "purl": "pkg:x/lib@1.0"}
    assert merged["occurrences"] == 3 and merged["id"] == dups[0]["id"]


def test_merge_joins_instances_in_any_order():
    def zap(report, urls, count=None):
        f = {"tool": "zap", "rule_id": "10038", "title": "CSP", "severity": "medium", "category": "dast",
             "endpoint": {"url": urls[0]}, "instances": [{"url": u} for u in urls]}
        if count:
            f["instance_count"] = count
        return finalize(f, {"file": report, "format": "zap-json"})

    a, b = zap("a.json", ["http://h/1", "http://h/2"]), zap("b.json", ["http://h/2", "http://h/3"], count=5)
    one, two = merge_duplicates(copy.deepcopy([a, b]), 100), merge_duplicates(copy.deepcopy([b, a]), 100)
    assert one == two
    assert [i["url"] for i in one["instances"]] == ["http://h/1", "http://h/2", "http://h/3"]
    assert one["instance_count"] == 7
    capped_merge = merge_duplicates(copy.deepcopy([a, b]), 2)
    assert len(capped_merge["instances"]) == 2 and capped_merge["instance_count"] == 7
    # one report listing an alert twice: its two copies are joined in the report's order
    c, d = zap("z.json", ["http://h/9"]), zap("z.json", ["http://h/8"])
    assert [i["url"] for i in merge_duplicates([c, d], 100)["instances"]] == ["http://h/9", "http://h/8"]


def test_a_finding_suppressed_in_every_report_stays_suppressed():
    a = _finding(suppressed=True, suppression={"kind": "external", "justification": "accepted risk"})
    b = _finding(suppressed=True, file="s.json")
    merged = merge_duplicates([a, b], 100)
    assert merged["suppressed"] is True and merged["suppression"]["justification"] == "accepted risk"


# ---------------------------------------------------------------- links

@pytest.mark.parametrize("url, kept", [
    ("https://cwe.mitre.org/data/definitions/89.html", True),
    ("http://example.com/x?y=1#z", True),
    ("HTTPS://EXAMPLE.COM/", True),
    ("javascript:alert(document.cookie)", False),
    ("JaVaScRiPt:alert(1)", False),
    ("java\tscript:alert(1)", False),
    ("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", False),
    ("file:///etc/passwd", False),
    ("vbscript:msgbox(1)", False),
    ("//evil.example/x", False),
    ("/relative/path", False),
    ("https://", False),
    ("http://[::1", False),
])
def test_only_http_links_are_kept(url, kept):
    f = finalize({"tool": "x", "rule_id": "r", "title": "t", "severity": "low", "category": "sast",
                  "references": [url]}, {"file": "f", "format": "sarif"})
    assert f.get("references") == ([url] if kept else None)
    assert schema_error("finding/1", f) is None


def test_references_keep_only_web_links(tmp_path):
    doc = orjson.loads(sarif("error", cwe="cwe-089", refs=["javascript:alert(1)"]))
    doc["runs"][0]["tool"]["driver"]["rules"][0]["help"] = {"text": "see data:text/html,x"}
    (tmp_path / "r.sarif").write_bytes(orjson.dumps(doc))
    code, [f], err = run_command(Parse, ["-q", str(tmp_path / "r.sarif")])
    assert code == 0 and "references" not in f
    mixed = finalize({"tool": "x", "rule_id": "r", "title": "t", "severity": "low", "category": "sast",
                      "references": ["data:text/html,<script>", "https://ok.example/", "file:///etc/passwd"]},
                     {"file": "f", "format": "sarif"})
    assert mixed["references"] == ["https://ok.example/"]


# ---------------------------------------------------------------- free text

def test_capped_marks_what_it_cut():
    assert capped("short", 10) == "short"
    assert capped("x" * 25, 10) == "x" * 10 + TRUNCATED.format(15) == "x" * 10 + " … [truncated 15 chars]"


def test_a_30_mb_message_is_capped_everywhere_it_lands(tmp_path):
    limit = config.get("parse", "max_text_chars")
    assert isinstance(limit, int) and 1000 <= limit < 1_000_000
    huge = "A" * (30 * 1024 * 1024)
    doc = orjson.loads(sarif("error", cwe="cwe-089", refs=[], message=huge))
    rule = doc["runs"][0]["tool"]["driver"]["rules"][0]
    rule["shortDescription"]["text"] = "T" * (limit + 5)
    rule["fullDescription"] = {"text": "D" * (limit * 3)}
    region = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]
    region["snippet"] = {"text": "S" * (limit + 1)}
    (tmp_path / "big.sarif").write_bytes(orjson.dumps(doc))
    code, [f], err = run_command(Parse, ["-q", str(tmp_path / "big.sarif")])
    assert code == 0, err
    assert f["message"] == "A" * limit + TRUNCATED.format(len(huge) - limit)
    assert f["title"] == "T" * limit + TRUNCATED.format(5)
    assert f["description"] == "D" * limit + TRUNCATED.format(2 * limit)
    assert f["location"]["snippet"] == "S" * limit + TRUNCATED.format(1)
    assert schema_error("finding/1", f) is None


def test_the_cap_applies_to_dast_instances_and_suppression_text():
    long = "z" * 50
    f = finalize({"tool": "zap", "rule_id": "1", "title": "t", "severity": "low", "category": "dast",
                  "endpoint": {"url": "http://h/", "attack": long}, "instances": [{"url": "http://h/", "evidence": long}],
                  "suppressed": True, "suppression": {"justification": long}, "fix_hint": long},
                 {"file": "f", "format": "zap-json"}, max_text=10)
    marked = "z" * 10 + TRUNCATED.format(40)
    assert f["endpoint"]["attack"] == f["instances"][0]["evidence"] == f["suppression"]["justification"] == marked
    assert f["fix_hint"] == marked
