"""The offline knowledge base (lib/secai/analysis/kb): every entry valid, renderable and sourced; the CWE Top 25
and the shipped example findings covered by specific entries; match precedence; load errors."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

sys.path.insert(0, str(Path(__file__).parent))
from conftest import ROOT, run_command  # noqa: E402

from secai.analysis import kb  # noqa: E402
from secai.commands.parse import Parse  # noqa: E402

KB = kb.load()
SCHEMA = yaml.safe_load(kb.SCHEMA_FILE.read_text(encoding="utf-8"))
RAW = [(path.name, entry) for path in sorted(kb.KB_DIR.glob("*.yaml"))
       for entry in yaml.safe_load(path.read_text(encoding="utf-8"))]
CATEGORIES = ["sast", "sca", "iac", "secret", "dast", "container"]
TOP25_2024 = ["CWE-79", "CWE-787", "CWE-89", "CWE-352", "CWE-22", "CWE-125", "CWE-78", "CWE-416",
              "CWE-862", "CWE-434", "CWE-94", "CWE-20", "CWE-77", "CWE-287", "CWE-269", "CWE-502",
              "CWE-200", "CWE-863", "CWE-918", "CWE-119", "CWE-476", "CWE-798", "CWE-190", "CWE-400",
              "CWE-306"]
FULL_FACTS = {"title": "SQL query built from user input", "rule_id": "B608", "tool": "bandit",
              "path": "app/db.py", "line": 42, "resource": "aws_s3_bucket.reports",
              "package": "requests", "installed": "2.25.1", "fixed": ["2.31.0", "2.32.3"],
              "cve": ["CVE-2023-32681"], "severity": "high"}
LEFTOVER = re.compile(r"\{[a-z_]+\}")  # a placeholder left unfilled (literal {} is fine)


def entry_id(item):
    return item[1].get("id", "?") if isinstance(item, tuple) else getattr(item, "id", str(item))


# ---------------------------------------------------------------- schema and entries

def test_schema_is_draft_2020_12_and_every_field_described():
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def walk(node, where):
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{where}.{name} has no description"
            walk(prop, f"{where}.{name}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{where}.*")
    walk(SCHEMA, "$")


@pytest.mark.parametrize("item", RAW, ids=entry_id)
def test_every_entry_validates(item):
    Draft202012Validator(SCHEMA).validate(item[1])


def test_load_gives_every_entry_once_in_file_order():
    assert [e.id for e in KB.entries] == [entry["id"] for _, entry in RAW]
    assert len(KB.by_id) == len(KB.entries)
    assert re.fullmatch(r"[0-9a-f]{16}", KB.version)
    assert kb.load() is KB  # cached


def test_one_fallback_per_category():
    fallbacks = [e for e in KB.entries if e.fallback]
    for category in CATEGORIES:
        owners = [e.id for e in fallbacks if category in e.categories]
        assert len(owners) == 1, (category, owners)
        level, entry = KB.lookup({"category": category, "tool": "nobody", "rule_id": "no-such-rule"})
        assert (level, entry.id) == ("category", owners[0])


def test_every_source_is_an_https_url():
    for entry in KB.entries:
        for url in entry.data["sources"]:
            assert re.fullmatch(r"https://[^\s/]+\.[a-z]{2,}(/\S*)?", url), (entry.id, url)


# ---------------------------------------------------------------- coverage

@pytest.mark.parametrize("cwe", TOP25_2024)
@pytest.mark.parametrize("category", ["sast", "dast"])
def test_cwe_top25_matched_by_a_specific_entry(cwe, category):
    level, entry = KB.lookup({"category": category, "tool": "any", "rule_id": "unknown-rule", "cwe": [cwe]})
    assert level == "cwe" and not entry.fallback and cwe in entry.cwe, (cwe, entry.id)


@pytest.mark.parametrize("entry", KB.entries, ids=entry_id)
def test_every_listed_rule_id_selects_its_entry(entry):
    finding = {"category": sorted(entry.categories)[0] if entry.categories else "iac",
               "tool": sorted(entry.tools)[0] if entry.tools else "any"}
    for rid in entry.rule_ids:
        assert KB.lookup({**finding, "rule_id": rid}) == ("rule_id", entry), rid


def parse(*paths: Path) -> list[dict]:
    code, records, stderr = run_command(Parse, ["-q", *map(str, paths)], cwd=ROOT)
    assert code == 0, stderr
    return records


def test_every_example_finding_has_a_specific_entry():
    findings = parse(ROOT / "examples" / "artifacts")
    assert findings
    generic = {(f["tool"], f["rule_id"]) for f in findings if KB.lookup(f)[0] == "category"}
    assert not generic


def test_the_risk_names_the_scanners_own_rating_only_when_it_gave_one():
    """Checkov's JSON has no severity without its platform: its findings are medium by default, and
    the analysis must not say that checkov rated them."""
    from secai.analysis.compose import compose

    findings = [f for f in parse(ROOT / "examples" / "artifacts") if f["tool"] in ("checkov", "semgrep")]
    for f in findings:
        rationale = compose(f, None, None)["risk"]["rationale"]
        if f.get("tool_severity"):
            assert rationale.startswith(f"{f['tool']} rates it {f['tool_severity']};"), rationale
        else:
            assert "rates it" not in rationale and "no severity of its own" in rationale, rationale
    assert {bool(f.get("tool_severity")) for f in findings} == {True, False}  # both cases are seen


def test_dependency_findings_get_the_dependency_explanation_not_the_cwe_one():
    finding = {"category": "sca", "tool": "osv-scanner", "rule_id": "GHSA-xpfp-f569-q3p2", "cwe": ["CWE-89"]}
    assert KB.match(finding).id == "vulnerable-dependency"
    assert KB.match({**finding, "category": "container", "rule_id": "CVE-2024-1234"}).id == "vulnerable-os-package"


# ---------------------------------------------------------------- rendering

@pytest.mark.parametrize("entry", KB.entries, ids=entry_id)
@pytest.mark.parametrize("facts", [FULL_FACTS, {}], ids=["full-facts", "no-facts"])
def test_templates_render_without_leftovers(entry, facts):
    out = entry.render(facts)
    for key in ("summary", "impact", "remediation", "prevention", "verification"):
        text = out[key]
        assert len(text) >= 20, (key, text)
        assert not LEFTOVER.search(text), (key, LEFTOVER.search(text))
    assert "remediation_no_fix" not in out
    assert out["references"] == entry.data["sources"] and out["id"] == entry.id
    if "test_code" in entry.data:  # the reading for test code renders too, and says why the risk is lower
        tests = entry.render(facts, test_code=True)
        assert tests["summary"] != out["summary"] and not LEFTOVER.search(" ".join(map(str, tests.values())))
        assert len(tests["test_lowers"]) >= 10
    assert out["test_lowers"] is None


def test_missing_facts_read_as_words():
    facts = kb.Facts({"package": "requests", "fixed": None, "cve": [], "line": ""})
    assert "{package} {installed} -> {fixed} ({cve}, line {line})".format_map(facts) == (
        "requests the installed version -> a fixed version (the published advisory, line unknown)")
    assert "{fixed}".format_map(kb.Facts({"fixed": ["1.2.3", "2.0.1"]})) == "1.2.3, 2.0.1"
    assert "{not_a_fact}".format_map(kb.Facts({})) == "not a fact"


def test_no_fix_remediation_is_used_exactly_when_no_fixed_version_is_known():
    entry = KB.by_id["vulnerable-dependency"]
    with_fix = entry.render({"package": "requests", "installed": "2.25.1", "fixed": "2.32.3"})
    assert "Upgrade requests from 2.25.1 to 2.32.3" in with_fix["remediation"]
    without = entry.render({"package": "requests", "installed": "2.25.1"})
    assert without["remediation"].startswith("No fixed release of requests")


@pytest.mark.parametrize("case", [(e, lang) for e in KB.entries for lang in e.data.get("fix", {})],
                         ids=lambda c: f"{c[0].id}-{c[1]}")
def test_fix_examples_parse(case):
    entry, lang = case
    fix = entry.data["fix"][lang]
    if lang == "python":
        ast.parse(fix["code"])
    elif lang == "yaml":
        for text in (fix["code"], fix.get("original", "")):
            assert all(doc is not None for doc in yaml.safe_load_all(text)) or not text
    assert fix["code"].strip() != fix.get("original", "").strip()


# ---------------------------------------------------------------- precedence and errors

def make_entry(ident: str, **match) -> dict:
    text = "A template of at least forty characters for {title} at {path}."
    return {"id": ident, "title": f"Entry {ident}", "match": match, "summary": text, "impact": text,
            "remediation": text, "prevention": text, "verification": text,
            "risk_factors": {"raises": ["something that raises"], "lowers": ["something that lowers"]},
            "sources": ["https://cwe.mitre.org/data/definitions/89.html"]}


def write_kb(directory: Path, files: dict[str, list]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, entries in files.items():
        (directory / name).write_text(yaml.safe_dump(entries, sort_keys=False), encoding="utf-8")
    return directory


def test_match_precedence(tmp_path):
    base = write_kb(tmp_path / "kb", {
        "a.yaml": [make_entry("cwe-89", cwe=["CWE-89"]),
                   make_entry("cwe-79", cwe=["CWE-79"]),
                   make_entry("pattern", rule_patterns=["^X-"]),
                   make_entry("exact-first", rule_ids=["X-1"]),
                   make_entry("iac-only", rule_ids=["X-3"], categories=["iac"]),
                   make_entry("fallback", categories=["sast"])],
        "b.yaml": [make_entry("exact-second", rule_ids=["X-1"]),
                   make_entry("cwe-89-second", cwe=["CWE-89"])],
    })
    k = kb.load(base)

    def how(rule_id, cwe=(), category="sast"):
        level, entry = k.lookup({"rule_id": rule_id, "cwe": list(cwe), "category": category, "tool": "t"})
        return level, entry.id

    assert how("X-1", ["CWE-89"]) == ("rule_id", "exact-first")      # exact beats pattern and CWE; file order
    assert how("X-2", ["CWE-89"]) == ("rule_pattern", "pattern")      # pattern beats CWE
    assert how("X-3") == ("rule_pattern", "pattern")                  # filtered out exact id falls through
    assert how("X-3", category="iac") == ("rule_id", "iac-only")
    assert how("Y", ["CWE-79", "CWE-89"]) == ("cwe", "cwe-79")        # the finding's CWE order decides
    assert how("Y", ["CWE-89", "CWE-79"]) == ("cwe", "cwe-89")        # ... and ties go to the first file
    assert how("Y", ["CWE-1"]) == ("category", "fallback")
    with pytest.raises(LookupError):
        how("Y", category="dast")


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": [{**make_entry("bad"), "summary": 3}]}, "a.yaml: entry bad: $.summary"),
    ({"a.yaml": [make_entry("one", cwe=["CWE89"])]}, "a.yaml: entry one: $.match.cwe[0]"),
    ({"a.yaml": [make_entry("dup", cwe=["CWE-1"])], "b.yaml": [make_entry("dup", cwe=["CWE-2"])]},
     "b.yaml: entry dup: duplicate id (first defined in a.yaml)"),
    ({"a.yaml": [make_entry("rx", rule_patterns=["(unclosed"])]}, "a.yaml: entry rx: rule_patterns"),
    ({"a.yaml": [{**make_entry("ph", cwe=["CWE-1"]), "impact": "Forty characters or more, with {nope} inside."}]},
     "a.yaml: entry ph: impact: unknown placeholder {nope}"),
    ({"a.yaml": [{**make_entry("br", cwe=["CWE-1"]), "impact": "Forty characters or more, with an { unmatched."}]},
     "a.yaml: entry br: impact:"),
    ({"a.yaml": [make_entry("nomatch")]}, "a.yaml: entry nomatch: $.match"),
    ({"a.yaml": [{**make_entry("tc", cwe=["CWE-1"]), "test_code": {
        "summary": "Forty characters or more, in test code, with {nope}.", "lowers": "it is only a test"}}]},
     "a.yaml: entry tc: test_code.summary: unknown placeholder {nope}"),
    ({"a.yaml": [{**make_entry("tl", cwe=["CWE-1"]), "test_code": {
        "summary": "Forty characters or more, said of test code."}}]}, "a.yaml: entry tl: $.test_code"),
    ({"a.yaml": {"id": "x"}}, "a.yaml: expected a list of entries"),
])
def test_bad_entries_are_rejected_with_file_and_entry(tmp_path, files, message):
    with pytest.raises(kb.KBError) as info:
        kb.load(write_kb(tmp_path / "kb", files))
    assert message in str(info.value)


def test_version_is_a_content_hash(tmp_path):
    one = write_kb(tmp_path / "one", {"a.yaml": [make_entry("e", cwe=["CWE-1"])]})
    same = write_kb(tmp_path / "same", {"a.yaml": [make_entry("e", cwe=["CWE-1"])]})
    other = write_kb(tmp_path / "other", {"a.yaml": [make_entry("e", cwe=["CWE-2"])]})
    assert kb.load(one).version == kb.load(same).version != kb.load(other).version
