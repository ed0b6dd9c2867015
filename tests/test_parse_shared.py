"""Findings that share a part (secai.parsing.shared): a Split's record, and the reason it is
rejected for, are the ones finding.Finisher gives the merged finding; the schema checks each field
alone, so checking a record in parts checks it whole; secai-parse leaves the cyclic collector as
it found it."""

from __future__ import annotations

import copy
import dataclasses
import gc
import random
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES, run_command  # noqa: E402

from secai.commands.parse import Parse  # noqa: E402
from secai.parsing import finding, reports, shared  # noqa: E402
from secai.parsing.finding import IDENTITY, Split, fingerprint  # noqa: E402
from secai.parsing import formats  # noqa: E402
from secai.parsing.formats import Format  # noqa: E402
from secai.parsing.inputs import Unit  # noqa: E402
from secai.records import fields_validator, schema, validator  # noqa: E402

SARIFS = sorted((FIXTURES / "parse" / "sarif").glob("*.sarif"))
RULE = {"tool": "semgrep", "tool_version": "1.2", "rule_id": "r1", "title": "Eval of input", "category": "sast",
        "severity": "high", "tool_severity": "error", "tags": ["security"], "cwe": ["CWE-95"],
        "references": ["https://example.org/r1"], "description": "A longer text about the rule r1."}
GOOD = {"location": {"path": "app.py", "start_line": 3, "end_line": 3}, "message": "eval(x) here"}
BAD_OWN = [  # fields a result gives wrong
    {"location": {"path": "app.py", "start_line": 0}},
    {"location": {"start_line": 2}},
    {"location": {"path": "app.py", "line": 2}},
    {"location": {"path": ""}},
    {**GOOD, "message": ""},
    {**GOOD, "severity": "urgent"},
    {**GOOD, "bogus": 1},
    {**GOOD, "cwe": ["CWE-95", "CWE-95"]},
    {**GOOD, "suppression": {"kind": ""}},
    {**GOOD, "tool": "Not A Slug"},
    {**GOOD, "title": ""},
    {**GOOD, "secret": {"sha256": "abc"}},
    {**GOOD, "package": {"version": "1"}},
]
BAD_SHARED = [{**RULE, "severity": "urgent"}, {**RULE, "category": "web"}, {**RULE, "title": ""},
              {k: v for k, v in RULE.items() if k != "title"}, {k: v for k, v in RULE.items() if k != "tool"},
              {**RULE, "references": ["ftp://x", "https://example.org"]}, {**RULE, "extra": True}]


def _report(partials: list, clean: bool = True) -> tuple[list[bytes], list[str]]:
    """(lines, one-line rejects) of render_report over findings yielded as given."""
    rejects: list[str] = []
    fmt = Format("sarif", "json", "t", "t", lambda d: True, lambda d: iter(copy.deepcopy(partials)), clean=clean)
    unit = Unit("r.sarif", b"", True)
    out = reports.render_report(unit, fmt, None, {"run_id": None, "commit": None, "branch": None}, 50,
                                lambda e: rejects.append(str(e)))
    return [bytes(line) for _, line in out.lines()], rejects


def _merged(partials: list) -> list:
    return [finding.merged(p) if type(p) is Split else p for p in partials]


@pytest.mark.parametrize("clean", [True, False])
def test_split_findings_are_the_merged_findings(clean):
    """Lines and rejects of Splits, bad ones among them, are those of the same findings as dicts."""
    partials = [Split(RULE, dict(GOOD)), *(Split(RULE, dict(own)) for own in BAD_OWN),
                *(Split(rule, dict(GOOD)) for rule in BAD_SHARED),
                Split(RULE, {**GOOD, "message": RULE["title"]}),           # the message repeats the title: dropped
                Split(RULE, {**GOOD, "description": RULE["title"]}),       # so does the description
                Split({**RULE, "message": RULE["description"]}, {"location": GOOD["location"]}),
                Split({**RULE, "description": RULE["title"]}, dict(GOOD)),
                Split(RULE, {**GOOD, "references": ["javascript:x"]}),     # no web link: no references
                Split(RULE, {**GOOD, "location": {"path": "a.py", "snippet": "x" * 80}, "fix_hint": "y" * 90}),
                Split(RULE, {**GOOD, "suppressed": True, "suppression": {"justification": "z" * 70}}),
                Split(RULE, {**GOOD, "id": "f" * 32, "occurrences": 9}),   # fields the finisher sets
                Split({**RULE, "source": {"commit": "abc"}}, dict(GOOD)),
                Split(RULE, {**GOOD, "source": {"branch": "b"}})]
    if not clean:
        partials.append(Split(RULE, {**GOOD, "tags": [], "cwe": None}))   # empty own fields hide the rule's
    lines, rejects = _report(partials, clean)
    assert (lines, rejects) == _report(_merged(partials), clean)
    if clean:  # (else the empty fields are dropped, and findings with them may be valid)
        assert len(rejects) == len(BAD_OWN) + len(BAD_SHARED) - 1  # an ftp link is dropped, not wrong
    assert all("\n" not in r and r.startswith("r.sarif: sarif: finding ") for r in rejects)
    assert any("$.location.start_line: 0 is less than the minimum of 1" in r for r in rejects)
    assert lines and all(validator("finding/1").is_valid(orjson.loads(line)) for line in lines)


@pytest.mark.parametrize("path", SARIFS, ids=[p.name for p in SARIFS])
def test_sarif_fixtures_through_the_lane_and_as_dicts(monkeypatch, tmp_path, path):
    """Every SARIF fixture gives the same bytes when its parser's Splits are given as dicts."""
    (tmp_path / path.name).write_bytes(path.read_bytes())
    code, lane, err = run_command(Parse, ["-q", path.name], cwd=tmp_path, raw=True)
    fmt = next(f for f in formats.FORMATS if f.name == "sarif")
    as_dicts = dataclasses.replace(fmt, parse=lambda doc: _merged(list(fmt.parse(doc))))
    monkeypatch.setattr(formats, "FORMATS", [as_dicts if f is fmt else f for f in formats.FORMATS])
    assert run_command(Parse, ["-q", path.name], cwd=tmp_path, raw=True) == (code, lane, err)
    assert code == 0 and lane


def _records() -> list[dict]:
    _, recs, _ = run_command(Parse, ["-q", *map(str, SARIFS), str(FIXTURES / "parse" / "trivy-json")])
    return recs


def test_a_record_is_valid_exactly_when_its_parts_are():
    """fields_validator on any two parts, and the required fields there, is the whole schema's
    verdict, on valid records and on records with one field made wrong."""
    check, whole = fields_validator("finding/1"), validator("finding/1").is_valid
    required = set(schema("finding/1")["required"])
    rng = random.Random(16)
    wrong = [0, -1, "", [], {}, None, "x" * 3, ["CWE-1", "CWE-1"], {"path": ""}, True]
    cases = 0
    for rec in _records():
        for _ in range(6):
            r = dict(rec)
            if rng.random() < 0.7:
                r[rng.choice(list(r))] = rng.choice(wrong)
            if rng.random() < 0.2:
                r.pop(rng.choice(list(r)))
            keys = list(r)
            rng.shuffle(keys)
            cut = rng.randrange(len(keys) + 1)
            a, b = {k: r[k] for k in keys[:cut]}, {k: r[k] for k in keys[cut:]}
            assert (check(a) and check(b) and required <= r.keys()) == whole(r), r
            cases += 1
    assert cases > 100


def test_a_schema_that_checks_across_fields_is_refused(monkeypatch):
    from secai import records

    s = {**records.schema("finding/1"), "dependentRequired": {"package": ["cve"]}}
    monkeypatch.setattr(records, "schema", lambda kind: s)
    records.fields_validator.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="dependentRequired"):
            records.fields_validator("finding/1")
    finally:
        records.fields_validator.cache_clear()


def test_fingerprint_reads_only_the_identity_fields():
    class Watched(dict):
        def __getitem__(self, key):
            seen.add(key)
            return super().__getitem__(key)

        def get(self, key, default=None):
            seen.add(key)
            return super().get(key, default)

    seen: set[str] = set()
    for rec in _records():
        fingerprint(Watched({k: v for k, v in rec.items() if k != "id"}))
    assert seen and seen <= set(IDENTITY)


def test_the_shared_part_is_finished_once(monkeypatch):
    made = []
    real = shared._Part.__init__
    monkeypatch.setattr(shared._Part, "__init__", lambda self, *a: made.append(1) or real(self, *a))
    lines, rejects = _report([Split(RULE, {**GOOD, "location": {"path": f"f{i}.py"}}) for i in range(50)])
    assert len(lines) == 50 and not rejects and len(made) == 1


def test_parse_leaves_the_collector_as_it_found_it(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert gc.isenabled()
    for argv in (["-q", str(SARIFS[0])], ["-q", str(bad)]):
        code, _, _ = run_command(Parse, argv)
        assert gc.isenabled() and code == (0 if argv[1] != str(bad) else 1)
    gc.disable()
    try:
        run_command(Parse, ["-q", str(SARIFS[0])])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_finding_the_lane_cannot_finish_is_rejected_alone():
    lines, rejects = _report([Split({"rule_id": "r"}, dict(GOOD)), Split(RULE, dict(GOOD))])
    assert len(lines) == 1 and rejects == ["r.sarif: sarif: finding 1 (r) is not a valid finding/1: "
                                           "cannot be completed (KeyError: 'tool')"]
