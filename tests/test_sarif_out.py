"""secai-sarif: analyses as SARIF 2.1.0, valid against the official OASIS schema (vendored as
schemas/sarif-2.1.0.json from oasis-tcs/sarif-spec, Schemata/sarif-schema-2.1.0.json at commit
0a8091f7d4057e57b6d8d9b56129e5f918747b34), with rules whose help is the remediation, fixes that
replace the right lines, and a log that secai-parse reads back to the same rules and locations."""

from __future__ import annotations

import copy
import hashlib
import random
import subprocess

import orjson
import pytest
from conftest import FIXTURES, ROOT, run_command

from secai import __version__
from secai.commands.analyze import Analyze
from secai.records import SCHEMA_DIR, dumps, schema_error
from secai.commands.parse import Parse
from secai.parsing.finding import severity_from_score
from secai.publishing import sarif as sarif_out
from secai.commands.sarif import Sarif
from secai.publishing.sarif import fix_placement

SCHEMA_FILE = ROOT / "schemas" / "sarif-2.1.0.json"
SCHEMA_SHA256 = "ddddcccbf95c7c50c037b5b07eff4140556278ca574ff374db46786b5fce7949"
DEMO = ROOT / "examples" / "demo-app"


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def analyses(findings):
    """kb analyses of the shipped examples, with code context from the demo app."""
    code, records, err = run_command(Analyze, ["-q", "--no-cache", "--source-root", str(DEMO)],
                                     stdin=b"".join(dumps(f) for f in findings))
    assert code == 0, err
    assert records and all("code_context" in r for r in records)
    return records


@pytest.fixture(scope="module")
def validators():
    """The official schema through two validators: jsonschema (as the command uses it) and
    jsonschema-rs with format checks (uri, uri-reference), which jsonschema skips here."""
    import jsonschema
    import jsonschema_rs

    schema = orjson.loads(SCHEMA_FILE.read_bytes())
    return (jsonschema.validators.validator_for(schema)(schema),
            jsonschema_rs.validator_for(schema, validate_formats=True))


def assert_valid(log, validators):
    py, rs = validators
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in py.iter_errors(log)]
    assert errors == []
    assert [e.message for e in rs.iter_errors(log)] == []


def sarif(records, *argv):
    """(exit code, SARIF log or None, stderr) of secai-sarif on analysis records."""
    code, out, err = run_command(Sarif, ["-q", *argv], stdin=b"".join(dumps(r) for r in records), raw=True)
    return code, (orjson.loads(out) if out.strip() else None), err


def variant(record, n: int, **location):
    """A copy of an analysis/1 record under a new finding id, with its location changed."""
    rec = copy.deepcopy(record)
    fid = hashlib.sha256(f"variant{n}".encode()).hexdigest()[:32]
    rec["id"] = rec["finding"]["id"] = fid
    loc = rec["finding"].setdefault("location", {"path": "x"})
    for key, value in location.items():
        if value is None:
            loc.pop(key, None)
        else:
            loc[key] = value
    rec.pop("code_context", None)
    rec["analysis"].pop("fix", None)
    assert schema_error("analysis/1", rec) is None
    return rec


def run_of(log):
    assert len(log["runs"]) == 1
    return log["runs"][0]


def results_of(log):
    return [result for run in log["runs"] for result in run["results"]]


# ---------------------------------------------------------------- the schema

def test_vendored_schema_is_the_official_oasis_schema_and_not_a_record_schema():
    import jsonschema

    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = orjson.loads(SCHEMA_FILE.read_bytes())
    assert schema["id"] == "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft4Validator
    jsonschema.Draft4Validator.check_schema(schema)
    assert {"run", "result", "reportingDescriptor", "fix", "replacement"} <= set(schema["definitions"])
    assert SCHEMA_FILE not in set(SCHEMA_DIR.glob("*.schema.json"))  # cli.py's record schemas


# ---------------------------------------------------------------- real analyses

def test_examples_give_a_valid_log_with_one_run_per_scanner_and_sorted_rules(analyses, validators):
    code, log, err = sarif(analyses)
    assert code == 0, err
    assert_valid(log, validators)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-schema-2.1.0.json")
    assert [run["tool"]["driver"]["name"] for run in log["runs"]] == sorted({a["finding"]["tool"] for a in analyses})
    assert len(results_of(log)) == len(analyses)
    for run in log["runs"]:
        check_run(run, [a for a in analyses if a["finding"]["tool"] == run["tool"]["driver"]["name"]])


def check_run(run, analyses):
    assert run["automationDetails"] == {"id": "secai/"}
    assert run["tool"]["extensions"] == [{"name": "secai", "version": __version__, "semanticVersion": __version__}]
    [version] = {a["finding"]["tool_version"] for a in analyses}
    assert run["tool"]["driver"]["version"] == run["tool"]["driver"]["semanticVersion"] == version
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert ids == sorted(set(ids)) == sorted({a["finding"]["rule_id"] for a in analyses})
    by_id = {a["id"]: a for a in analyses}
    assert len(run["results"]) == len(analyses)
    for result in run["results"]:
        finding = by_id[result["partialFingerprints"]["secaiFindingId/v1"]]["finding"]
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == finding["rule_id"]
        assert result["level"] == {"critical": "error", "high": "error", "medium": "warning",
                                   "low": "note", "info": "note"}[finding["severity"]]
        score = result["properties"]["security-severity"]
        assert severity_from_score(score) == finding["severity"] and score == f"{float(score):.1f}"
        assert result["properties"]["scanner"] == finding["tool"]
        loc = result["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"] == {"uri": finding["location"]["path"], "uriBaseId": "%SRCROOT%"}
        assert loc["region"]["startLine"] == finding["location"]["start_line"] >= 1
    for rule in rules:
        rule_results = [r for r in run["results"] if r["ruleId"] == rule["id"]]
        worst = max(float(r["properties"]["security-severity"]) for r in rule_results)
        assert float(rule["properties"]["security-severity"]) == worst


def test_rules_carry_the_remediation_as_help_and_cwe_tags(analyses):
    code, log, err = sarif(analyses)
    assert code == 0, err
    rules = {(run["tool"]["driver"]["name"], r["id"]): r for run in log["runs"] for r in run["tool"]["driver"]["rules"]}
    for rec in analyses:
        f, a = rec["finding"], rec["analysis"]
        rule = rules[f["tool"], f["rule_id"]]
        assert rule["help"]["text"] == a["remediation"]  # one finding per rule in the examples
        md = rule["help"]["markdown"]
        assert md.startswith("**Remediation**") and "**Impact**" in md and "**Prevention**" in md
        assert rule["shortDescription"]["text"] == f["title"][:1024]
        assert len(rule["fullDescription"]["text"]) <= 1024
        tags = rule["properties"]["tags"]
        assert tags[:2] == ["security", f["category"]] and f["tool"] in tags and len(tags) <= 10
        assert all(f"external/cwe/cwe-{c.split('-')[1]}" in tags for c in f.get("cwe", []))
    assert any(r["properties"]["tags"].count("external/cwe/cwe-94") for r in rules.values())


def test_one_rule_with_different_remediations_lists_each_with_its_locations(analyses):
    base = analyses[0]
    first = variant(base, 1, path="a.py", start_line=3, end_line=3, start_column=None, end_column=None)
    second = variant(base, 2, path="b.py", start_line=9, end_line=10, start_column=None, end_column=None)
    second["analysis"]["remediation"] = "Remove the call in b.py and pass the value explicitly instead."
    code, log, err = sarif([first, second])
    assert code == 0, err
    [rule] = run_of(log)["tool"]["driver"]["rules"]
    assert rule["help"]["text"] == (f"a.py:3: {first['analysis']['remediation']}\n\n"
                                    "b.py:9-10: Remove the call in b.py and pass the value explicitly instead.")
    assert "- b.py:9-10: Remove the call" in rule["help"]["markdown"]
    assert [r["ruleIndex"] for r in run_of(log)["results"]] == [0, 0]


# ---------------------------------------------------------------- fixes

@pytest.fixture(scope="module")
def django_fix(tmp_path_factory):
    """A real fix: semgrep's vulnerable Django pin analysed (kb) against a source tree holding it."""
    root = tmp_path_factory.mktemp("src")
    lines = ["flask==2.0.0", "requests==2.31.0", "# pinned", "urllib3==2.0.7", "Jinja2==3.1.2",
             "six==1.16.0", "Django==3.2.0", "gunicorn==21.2.0"]
    (root / "requirements.txt").write_text("\n".join(lines) + "\n")
    code, found, err = run_command(Parse, ["-q", str(FIXTURES / "parse" / "semgrep-json" / "semgrep-handmade.json")])
    assert code == 0, err
    [django] = [f for f in found if f.get("package", {}).get("name") == "django"]
    code, [record], err = run_command(Analyze, ["-q", "--no-cache", "--source-root", str(root)], stdin=dumps(django))
    assert code == 0, err
    assert record["analysis"]["fix"]["original"] == "Django==3.2.0" and "code_context" in record
    return root, lines, record


def apply(text: str, replacement: dict) -> str:
    """A SARIF replacement of whole lines (no columns: up to the last line's newline) applied."""
    lines = text.split("\n")
    region = replacement["deletedRegion"]
    assert set(region) == {"startLine", "endLine"} and 1 <= region["startLine"] <= region["endLine"] <= len(lines)
    new = replacement["insertedContent"]["text"].split("\n")
    return "\n".join(lines[:region["startLine"] - 1] + new + lines[region["endLine"]:])


def test_a_fix_replaces_exactly_the_finding_lines(django_fix, validators):
    root, lines, record = django_fix
    code, log, err = sarif([record])
    assert code == 0, err
    assert_valid(log, validators)
    [result] = run_of(log)["results"]
    [fix] = result["fixes"]
    [change] = fix["artifactChanges"]
    assert change["artifactLocation"] == result["locations"][0]["physicalLocation"]["artifactLocation"]
    [replacement] = change["replacements"]
    assert replacement["deletedRegion"] == {"startLine": 7, "endLine": 7}
    assert fix["description"]["text"] == record["analysis"]["fix"]["explanation"]
    fixed = apply((root / "requirements.txt").read_text(), replacement)
    assert fixed.split("\n") == lines[:6] + ["Django==3.2.19"] + lines[7:] + [""]
    rule = run_of(log)["tool"]["driver"]["rules"][0]
    assert "```requirements\nDjango==3.2.19\n```" in rule["help"]["markdown"]


def test_no_fix_without_lines_and_none_with_redacted_code(django_fix):
    _, _, record = django_fix
    no_lines = copy.deepcopy(record)
    for key in ("start_line", "end_line", "start_column", "end_column"):
        no_lines["finding"]["location"].pop(key)
    redacted = copy.deepcopy(record)
    redacted["analysis"]["fix"]["code"] = "Django==3.2.19  # token: [REDACTED]"
    code, log, err = sarif([no_lines])
    assert code == 0, err
    assert "fixes" not in run_of(log)["results"][0]
    code, log, err = sarif([redacted])
    assert code == 0, err
    assert "fixes" not in run_of(log)["results"][0]
    assert "Suggested fix" in run_of(log)["tool"]["driver"]["rules"][0]["help"]["markdown"]


CONTEXT = {"path": "app.py", "language": "python", "start_line": 10, "end_line": 17, "code": "\n".join([
    "import subprocess",            # 10
    "",                             # 11
    "def run(cmd):",                # 12
    "    out = subprocess.run(cmd, shell=True)",  # 13 <- finding
    "    return out.returncode",    # 14
    "",                             # 15
    "def other():",                 # 16
    "    return 1",                 # 17
]), "finding_lines": [13, 13], "enclosing": {"kind": "function", "name": "run", "start_line": 12, "end_line": 14}}


def _finding(start, end):
    return {"location": {"path": "app.py", "start_line": start, "end_line": end}}


@pytest.mark.parametrize("fix,expected", [
    # `original` located in the code read (whitespace around lines aside); the code keeps its indentation
    ({"code": "    out = subprocess.run(shlex.split(cmd))", "original": "out = subprocess.run(cmd, shell=True)"},
     (13, 13, ("    out = subprocess.run(shlex.split(cmd))",))),
    # dedented code takes the indentation of the lines it replaces
    ({"code": "out = run(shlex.split(cmd))\nreturn out", "original": "    out = subprocess.run(cmd, shell=True)\n"
                                                                  "    return out.returncode"},
     (13, 14, ("    out = run(shlex.split(cmd))", "    return out"))),
    # no original: the whole enclosing function the code starts like
    ({"code": "def run(cmd):\n    out = subprocess.run(shlex.split(cmd))\n    return out.returncode"},
     (12, 14, ("def run(cmd):", "    out = subprocess.run(shlex.split(cmd))", "    return out.returncode"))),
    # no original and not the enclosing unit: verification could not place it, so neither does SARIF
    ({"code": "    out = subprocess.run(shlex.split(cmd))"}, None),
    ({"code": "def other():\n    return 2"}, None),
    # `original` that is not in the code: nothing can be placed
    ({"code": "x = 1", "original": "y = 2"}, None),
])
def test_fixes_are_placed_from_the_code_context(fix, expected):
    placed = fix_placement(_finding(13, 13), {"fix": {"language": "python", **fix}}, CONTEXT)
    assert (placed and (placed.start, placed.end, placed.code)) == expected


def test_no_fix_is_placed_without_code_context_or_finding_lines():
    one = {"fix": {"language": "python", "code": "a = 2", "original": "a = 1"}}
    assert fix_placement(_finding(5, 5), one, None) is None  # no line was read to place it by
    assert fix_placement({"location": {"path": "app.py"}}, one, CONTEXT) is None
    short = {**CONTEXT, "end_line": 30}  # a context that does not hold the lines it says
    fix = {"fix": {"language": "python", "code": "x", "original": "    return 1"}}
    assert fix_placement(_finding(13, 13), fix, short) is None


def test_sarif_offers_each_fix_exactly_where_verification_applies_and_checks_it(analyses):
    """The deletedRegion and inserted code of every SARIF fix of the shipped examples are the lines
    verification replaces in the file (and re-scans) and the code it puts there."""
    from secai.analysis.verify import place

    code, log, err = sarif(analyses)
    assert code == 0, err
    by_id = {r["id"]: r for r in analyses}
    offered = 0
    for result in results_of(log):
        record = by_id[result["partialFingerprints"][sarif_out.FINGERPRINT]]
        fix, ctx = record["analysis"].get("fix"), record.get("code_context")
        if not result.get("fixes"):
            continue
        offered += 1
        [replacement] = result["fixes"][0]["artifactChanges"][0]["replacements"]
        text = (DEMO / ctx["path"]).read_text().replace("\r\n", "\n")
        fixed, first, last = place(text, ctx, fix)
        region = replacement["deletedRegion"]
        assert apply(text, replacement) == fixed, record["finding"]["rule_id"]
        assert region["startLine"] == first
        assert region["endLine"] - region["startLine"] == len(text.split("\n")) - len(fixed.split("\n")) + last - first
    assert offered >= 40


# ---------------------------------------------------------------- locations

def test_unknown_lines_give_no_region_and_never_line_zero(analyses, validators):
    no_line = variant(analyses[0], 3, path="requirements.txt", start_line=None, end_line=None,
                      start_column=None, end_column=None)
    code, log, err = sarif([*analyses, no_line])
    assert code == 0, err
    assert_valid(log, validators)
    results = results_of(log)
    [bare] = [r for r in results if r["partialFingerprints"]["secaiFindingId/v1"] == no_line["id"]]
    assert bare["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "requirements.txt", "uriBaseId": "%SRCROOT%"}}
    regions = [r["locations"][0]["physicalLocation"].get("region") for r in results]
    assert all(reg is None or (reg["startLine"] >= 1 and reg["endLine"] >= reg["startLine"]) for reg in regions)


def test_findings_without_a_file_location_are_left_out_unless_kept(analyses, validators):
    dast = variant(analyses[0], 4)
    del dast["finding"]["location"]
    dast["finding"]["endpoint"] = {"url": "https://shop.example/login", "method": "POST"}
    code, out, err = run_command(Sarif, [], stdin=dumps(dast) + dumps(analyses[1]), raw=True)
    assert code == 0
    log = orjson.loads(out)
    assert len(results_of(log)) == 1 and "1 without a file location left out" in err
    code, log, err = sarif([dast, analyses[1]], "--keep-unlocated")
    assert code == 0, err
    assert_valid(log, validators)
    assert sorted("locations" in r for r in results_of(log)) == [False, True]


def test_paths_become_uris_that_read_back_as_the_same_paths(analyses, validators):
    odd = variant(analyses[0], 5, path="app/util s.py", start_line=2, end_line=2)
    image = variant(analyses[0], 6, path="alpine:3.10 (alpine 3.10.9)", start_line=None, end_line=None,
                    start_column=None, end_column=None)
    absolute = variant(analyses[0], 7, path="/home/runner/work/shop/shop/infra/s3.tf", start_line=4, end_line=4)
    code, log, err = sarif([odd, image, absolute])
    assert code == 0, err
    assert_valid(log, validators)
    uris = {r["partialFingerprints"]["secaiFindingId/v1"]: r["locations"][0]["physicalLocation"]["artifactLocation"]
            for r in run_of(log)["results"]}
    assert uris[odd["id"]] == {"uri": "app/util%20s.py", "uriBaseId": "%SRCROOT%"}
    assert uris[image["id"]] == {"uri": "alpine%3A3.10%20%28alpine%203.10.9%29", "uriBaseId": "%SRCROOT%"}
    assert uris[absolute["id"]] == {"uri": "file:///home/runner/work/shop/shop/infra/s3.tf"}
    code, back, err = run_command(Parse, ["-q", "--format", "sarif"], stdin=orjson.dumps(log))
    assert code == 0, err
    # an absolute path reads back relative to the log's scan root (secai-parse writes no local directory)
    assert sorted(f["location"]["path"] for f in back) == sorted(
        [odd["finding"]["location"]["path"], image["finding"]["location"]["path"], "s3.tf"])


# ---------------------------------------------------------------- round trip

def test_secai_parse_reads_the_log_back_to_the_same_rules_and_locations(analyses):
    code, out, err = run_command(Sarif, ["-q"], stdin=b"".join(dumps(r) for r in analyses), raw=True)
    assert code == 0, err
    code, back, err = run_command(Parse, ["-q"], stdin=out.encode())
    assert code == 0, err

    def key(f):
        loc = f["location"]
        return (f["rule_id"], loc["path"], loc["start_line"], loc.get("end_line", loc["start_line"]),
                loc.get("start_column"), loc.get("end_column"))

    assert sorted(key(f) for f in back) == sorted(key(r["finding"]) for r in analyses)
    severities = sorted((f["rule_id"], f["severity"]) for f in back)
    assert severities == sorted((r["finding"]["rule_id"], r["finding"]["severity"]) for r in analyses)


# ---------------------------------------------------------------- the command

def test_output_is_deterministic_and_written_atomically(analyses, tmp_path):
    code, first, err = run_command(Sarif, ["-q"], stdin=b"".join(dumps(r) for r in analyses), raw=True)
    assert code == 0, err
    shuffled = analyses[:]
    random.Random(7).shuffle(shuffled)
    src = tmp_path / "analyses.jsonl"
    src.write_bytes(b"".join(dumps(r) for r in shuffled) + dumps(shuffled[0]))  # and a duplicate
    target = tmp_path / "out" / "analyses.sarif"
    code, out, err = run_command(Sarif, [str(src), "-o", str(target)], raw=True)
    assert code == 0 and out == "" and "1 duplicate ids ignored" in err
    assert target.read_text() == first
    assert [p.name for p in target.parent.iterdir()] == ["analyses.sarif"]  # no temporary left


def test_empty_input_gives_a_valid_log_with_no_results(validators):
    code, out, err = run_command(Sarif, [], stdin=b"", raw=True)
    assert code == 0, err
    log = orjson.loads(out)
    assert_valid(log, validators)
    run = run_of(log)
    assert run["results"] == [] and run["tool"]["driver"]["rules"] == [] and "extensions" not in run["tool"]


@pytest.mark.parametrize("line,reason", [
    (b'{"schema": "analysis/1", ', "invalid JSON"),
    (b'{"schema": "finding/1", "id": "x"}\n', "expected a analysis/1 record, got schema 'finding/1'"),
    (b'{"schema": "analysis/1", "id": "0"}\n', "$: "),
])
def test_bad_input_is_one_line_with_file_and_line(analyses, tmp_path, line, reason):
    src = tmp_path / "in.jsonl"
    src.write_bytes(dumps(analyses[0]) + line)
    target = tmp_path / "out.sarif"
    code, out, err = run_command(Sarif, [str(src), "-o", str(target)], raw=True)
    assert code == 1 and out == "" and not target.exists()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"secai-sarif: error: {src}:2: ") and reason in err


def test_an_invalid_log_is_never_written(analyses, tmp_path, monkeypatch):
    real = sarif_out.build_log

    def broken(*args, **kwargs):
        log, counts = real(*args, **kwargs)
        log["runs"][0]["results"][0]["level"] = "fatal"
        return log, counts

    monkeypatch.setattr(sarif_out, "build_log", broken)
    target = tmp_path / "out.sarif"
    code, out, err = run_command(Sarif, ["-o", str(target)], stdin=dumps(analyses[0]), raw=True)
    assert code == 1 and not target.exists()
    assert "not valid SARIF 2.1.0: $.runs[0].results[0].level" in err


def test_texts_are_scrubbed_of_secrets_and_markdown_is_inert(analyses):
    rec = variant(analyses[0], 8, path="app.py", start_line=1, end_line=1)
    key = "AKIA" + "ABCDEFGHIJKLMNOP"
    rec["analysis"]["summary"] = f"The key {key} is committed in app.py and still works."
    rec["analysis"]["remediation"] = "Rotate it: see [docs](https://evil.example/x) and <img src=x onerror=alert(1)>."
    code, out, err = run_command(Sarif, ["-q"], stdin=dumps(rec), raw=True)
    assert code == 0, err
    assert key not in out and "[REDACTED]" in out
    markdown = orjson.loads(out)["runs"][0]["tool"]["driver"]["rules"][0]["help"]["markdown"]
    assert "\\[docs\\](https://evil.example/x)" in markdown and "\\<img src=x" in markdown


def test_category_option_sets_the_automation_id(analyses):
    code, log, err = sarif(analyses[:1], "--category", "secai/backend/")
    assert code == 0, err
    assert run_of(log)["automationDetails"] == {"id": "secai/backend/"}
    code, _, err = run_command(Sarif, ["--category", "/"], raw=True)
    assert code == 2 and "must not be empty" in err


def test_bin_script_runs_the_command(analyses, tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_bytes(b"".join(dumps(r) for r in analyses[:3]))
    proc = subprocess.run([str(ROOT / "bin" / "secai-sarif"), "-q", str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(results_of(orjson.loads(proc.stdout))) == 3
