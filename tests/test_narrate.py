"""secai-narrate: both stages on the shipped examples' analyses, codefix only for fixes that parse,
no empty or "unknown" field, no secret pattern surviving, deterministic output, skip counts on
stderr, and examples that mlx-lm's dataset code reads."""

from __future__ import annotations

import copy
import hashlib
import re
from types import SimpleNamespace

import orjson
import pytest
from conftest import FIXTURES, ROOT, run_command

from secai.commands.analyze import Analyze
from secai.analysis.mlx import messages as mlx_messages
from secai.analysis.mlx import parse_reply
from secai.records import strings
from secai.records import dumps, schema, schema_error
from secai.analysis.languages import parses
from secai.commands.narrate import Narrate
from secai.dataset.examples import PLACEHOLDERS, PLACEHOLDER_TEXT, fence
from secai.commands.parse import Parse
from secai.secrets import PATTERNS, find, scrub

EXAMPLES = ROOT / "examples"
KEYS = ["summary", "impact", "remediation", "prevention", "risk"]


def jsonl(records) -> bytes:
    return b"".join(dumps(r) for r in records)


def narrate(records, *argv):
    return run_command(Narrate, list(argv), stdin=jsonl(records))


@pytest.fixture(scope="module")
def analyses():
    code, findings, err = run_command(Parse, ["-q", str(EXAMPLES / "artifacts")])
    assert code == 0, err
    code, out, err = run_command(Analyze, ["-q", "--source-root", str(EXAMPLES / "demo-app"), "--no-cache"],
                                 stdin=jsonl(findings))
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def sca_analysis(tmp_path_factory):
    """A dependency finding whose manifest is under the source root: code context and a fix."""
    code, findings, err = run_command(Parse, ["-q", str(FIXTURES / "parse" / "trivy-json" / "fs.json")])
    assert code == 0, err
    f = next(r for r in findings if r.get("package", {}).get("fixed_versions"))
    f = {**f, "location": {**f["location"], "start_line": 2}}  # the line Trivy gives with --list-all-pkgs
    pkg, path = f["package"], f["location"]["path"]
    root = tmp_path_factory.mktemp("src")
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(f"requests==2.31.0\n{pkg['name']}=={pkg['version']}\nflask==3.0.0\n")
    code, [rec], err = run_command(Analyze, ["-q", "--source-root", str(root), "--no-cache"], stdin=jsonl([f]))
    assert code == 0, err
    assert rec["code_context"] and rec["analysis"]["fix"]
    return rec


def with_id(record: dict, n) -> dict:
    rec = copy.deepcopy(record)
    rec["id"] = rec["finding"]["id"] = hashlib.sha256(f"t-{n}".encode()).hexdigest()[:32]
    return rec


def data_json(user: str) -> dict:
    """The finding facts of an analysis-stage user turn (its first DATA block)."""
    return orjson.loads(user.split("<<<DATA\n", 1)[1].split("\nDATA>>>", 1)[0])


def assert_no_empty_or_unknown(example: dict):
    values = [example["metadata"], [m["content"] for m in example["messages"]]]
    if example["stage"] == "analysis":
        values += [data_json(example["messages"][1]["content"]), orjson.loads(example["messages"][2]["content"])]
    for s in strings(values):
        assert s.strip() and s.strip().lower() not in PLACEHOLDERS, (example["id"], s)
    for m in example["messages"]:
        assert not PLACEHOLDER_TEXT.search(m["content"]), m["content"]
        for line in re.sub(r"(?ms)^(`{3,})\w*\n.*?^\1$", "", m["content"]).splitlines():  # no "- Label:" line
            assert not re.fullmatch(r"\s*-\s*[\w ]+:\s*", line), line                  # without a value (code aside)


def check(examples, stage):
    for ex in examples:
        assert schema_error("example/1", ex) is None, ex
        assert ex["stage"] == stage
        assert [m["role"] for m in ex["messages"]] == ["system", "user", "assistant"]
        assert all(m["content"].strip() for m in ex["messages"])
        assert_no_empty_or_unknown(ex)
        for m in ex["messages"]:
            assert find(m["content"]) == [], (m["role"], find(m["content"]))


# ---------------------------------------------------------------- schema

def test_example_schema_is_draft_2020_12_and_describes_every_field():
    import jsonschema

    s = schema("example/1")
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$id"] == "example.schema.json"  # relative: resolved against the documents given, never fetched

    def walk(node, path):
        for name, prop in node.get("properties", {}).items():
            assert "description" in prop, f"{path}.{name} has no description"
            walk(prop, f"{path}.{name}")
        for name, sub in node.get("$defs", {}).items():
            walk(sub, f"{path}.$defs.{name}")

    walk(s, "example/1")


def test_schema_rejects_wrong_roles_order_and_empty_content(analyses):
    code, [ex, *_], err = narrate(analyses[:1], "-q")
    assert schema_error("example/1", ex) is None
    swapped = {**ex, "messages": [ex["messages"][1], ex["messages"][0], ex["messages"][2]]}
    empty = {**ex, "messages": [*ex["messages"][:2], {"role": "assistant", "content": ""}]}
    four = {**ex, "messages": [*ex["messages"], {"role": "user", "content": "more"}]}
    assert all(schema_error("example/1", bad) for bad in (swapped, empty, four))


# ---------------------------------------------------------------- stage analysis

def test_analysis_stage_on_the_examples(analyses):
    code, out, err = narrate(analyses)
    assert code == 0, err
    assert len(out) == len(analyses)
    assert f"{len(analyses)} analyses -> {len(analyses)} analysis examples; 0 skipped" in err
    check(out, "analysis")
    for ex, rec in zip(out, analyses):
        meta = ex["metadata"]
        assert meta["finding_id"] == rec["id"] and meta["rule_id"] == rec["finding"]["rule_id"]
        assert meta["provenance"]["prompt_version"] == "analysis-v3"
        assert meta["provenance"]["source_file"] == rec["finding"]["source"]["file"]
        # the prompt is the mlx backend's own: trained and asked alike
        system, user = mlx_messages(rec["finding"], rec.get("code_context"), rec["similar"])
        assert ex["messages"][0] == system
        if not find(user["content"]):
            assert ex["messages"][1] == user
        # the answer is what the backend parses, keys in the prompt's order
        reply = ex["messages"][2]["content"]
        assert list(orjson.loads(reply)) == KEYS + (["fix"] if "fix" in orjson.loads(reply) else [])
        analysis, why = parse_reply(reply)
        assert analysis is not None, why
        assert analysis["summary"] == rec["analysis"]["summary"]
    assert sum("language" in ex["metadata"] for ex in out) == sum("code_context" in r for r in analyses)


def test_analysis_stage_keeps_a_fix_that_parses_and_leaves_out_one_that_does_not(sca_analysis):
    broken = with_id(sca_analysis, "broken")
    broken["analysis"]["fix"]["code"] = "Django ==== 3.2.14 (((\n"
    code, out, err = narrate([sca_analysis, broken])
    assert code == 0, err
    good, bad = (orjson.loads(ex["messages"][2]["content"]) for ex in out)
    assert good["fix"] == {k: sca_analysis["analysis"]["fix"][k] for k in ("language", "code", "explanation")}
    assert "fix" not in bad and "1 fixes left out (code does not parse for its language)" in err


# ---------------------------------------------------------------- stage codefix

def test_codefix_example_from_a_parsing_fix(sca_analysis):
    code, [ex], err = narrate([sca_analysis], "--stage", "codefix")
    assert code == 0, err
    assert "1 analyses -> 1 codefix examples; 0 skipped" in err
    check([ex], "codefix")
    f, fix = sca_analysis["finding"], sca_analysis["analysis"]["fix"]
    system, user, assistant = (m["content"] for m in ex["messages"])
    assert f"- Rule: {f['rule_id']}" in user and f"- Severity: {f['severity']}" in user
    assert f"- Location: {f['location']['path']}:2" in user
    assert f"- Package: {f['package']['name']} {f['package']['version']} → " in user
    assert fence(sca_analysis["code_context"]["code"], "requirements") in user
    block = re.search(r"```requirements\n(.*?)\n```", assistant, re.S).group(1)
    assert block == fix["code"] and parses(block, "requirements")
    assert fix["explanation"] in assistant and f"1. {fix['verification']}" in assistant
    assert "2. Run the project's tests" in assistant
    meta = ex["metadata"]
    assert meta["language"] == "requirements" and meta["provenance"]["prompt_version"] == "codefix-v2"


def test_codefix_skips_are_counted_by_reason(analyses, sca_analysis):
    broken = with_id(sca_analysis, "broken")
    broken["analysis"]["fix"]["code"] = "Django ==== 3.2.14 (((\n"
    same = with_id(sca_analysis, "same")
    same["analysis"]["fix"]["code"] = same["analysis"]["fix"]["original"]
    records = [*analyses, sca_analysis, broken, same]
    code, out, err = narrate(records, "--stage", "codefix")
    assert code == 0, err
    fixed = [r["id"] for r in analyses if "code_context" in r and "fix" in r["analysis"]]  # the kb's fix rules
    assert [ex["metadata"]["finding_id"] for ex in out] == [*fixed, sca_analysis["id"]]
    no_context = sum("code_context" not in r for r in analyses)
    no_fix = sum("code_context" in r and "fix" not in r["analysis"] for r in analyses)
    reasons = {"no code context": no_context, "no fix": no_fix, "fix changes nothing": 1, "fix does not parse": 1}
    why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])) if n)
    made = len(fixed) + 1
    assert no_fix > 0 and f"{len(records)} analyses -> {made} codefix examples; {len(records) - made} skipped ({why})" in err
    code, out, err = narrate(records, "--stage", "codefix", "-q")
    assert code == 0 and err == "" and len(out) == made


def test_every_codefix_code_block_parses(sca_analysis):
    records = [with_id(sca_analysis, i) for i in range(5)]
    records[1]["analysis"]["fix"]["code"] = "Django>=3.2.14,<4\n"
    records[2]["analysis"]["fix"]["code"] = "requests ==\n"  # does not parse
    code, out, err = narrate(records, "--stage", "codefix")
    assert code == 0 and len(out) == 4 and "1 fix does not parse" in err
    for ex in out:
        lang = ex["metadata"]["language"]
        block = re.search(rf"```{lang}\n(.*?)\n```", ex["messages"][2]["content"], re.S).group(1)
        assert parses(block, lang)


def test_fences_cannot_be_closed_by_the_code():
    assert fence("x = 1", "python") == "```python\nx = 1\n```"
    assert fence('s = """\n```\n"""', "python").startswith("````python\n")


# ---------------------------------------------------------------- nothing empty or unknown

def test_no_field_is_empty_or_unknown(analyses, sca_analysis):
    rec = with_id(sca_analysis, "placeholders")
    f = rec["finding"]
    f.update(tool_severity="UNKNOWN", message="unknown", description="N/A")
    f["location"]["resource"] = "unknown"
    f["package"]["ecosystem"] = "Unknown"
    f["cvss"] = {"vector": "n/a"}
    rec["analysis"]["summary"] += " It is in requirements.txt (line unknown)."
    rec["analysis"]["remediation"] = "At requirements.txt, line unknown, raise the version to the fixed one."
    rec["analysis"]["fix"]["explanation"] = "unknown"
    for stage in ("analysis", "codefix"):
        code, out, err = narrate([*analyses, rec], "--stage", stage)
        assert code == 0, err
        check(out, stage)
        mine = next(ex for ex in out if ex["metadata"]["finding_id"] == rec["id"])
        text = "\n".join(m["content"] for m in mine["messages"])
        assert not re.search(r"(?i)\bunknown\b|\bn/a\b", text), text
    user = mine["messages"][1]["content"]
    assert "Scanner says" not in user and f"- Package: {f['package']['name']} {f['package']['version']} → " in user


def test_a_finding_with_a_placeholder_rule_is_skipped(analyses):
    rec = with_id(analyses[0], "rule")
    rec["finding"]["rule_id"] = "unknown"
    code, out, err = narrate([analyses[0], rec])
    assert code == 0 and len(out) == 1 and "1 skipped (1 no rule id)" in err


# ---------------------------------------------------------------- secrets

FAKE = {
    "aws_key_id": "AKIAZ7VQ3XWMPLE4TEST",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzTESTKEY1",
    "github": "ghp_" + "R8b2Qm7Xk1Lp9Vw3Ns6Td4Yh0Jc5Gf2Ze8Ua",
    "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "slack": "xoxb-123456789012-abcdefGHIJKL",
    "google": "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "stripe": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "password": "Tr0ub4dor&3x",
    "url_password": "s3cretPa55",
    "key_body": "MIIEowIBAAKCAQEAx4Zq8bTeStKeYb0dYm1e",
}
KEY_BLOCK = f"-----BEGIN RSA PRIVATE KEY-----\n{FAKE['key_body']}\nq1w2e3r4t5y6u7i8o9p0\n-----END RSA PRIVATE KEY-----"
LEAK = (f"id {FAKE['aws_key_id']} and aws_secret_access_key = {FAKE['aws_secret']}; token {FAKE['github']} "
        f"or {FAKE['github_pat']}; slack {FAKE['slack']}; maps {FAKE['google']}; pay {FAKE['stripe']}; "
        f"auth {FAKE['jwt']}; db_password = \"{FAKE['password']}\"; "
        f"dsn postgres://app:{FAKE['url_password']}@db.internal:5432/app\n{KEY_BLOCK}")


def leaky(record: dict, n) -> dict:
    rec = with_id(record, n)
    f = rec["finding"]
    f["message"] = "The scanner quoted: " + LEAK
    f["description"] = "Details. " + LEAK
    if "location" in f:
        f["location"]["snippet"] = LEAK
    if "code_context" in rec:
        rec["code_context"]["code"] += "\n# " + LEAK.replace("\n", "\n# ")
    rec["analysis"]["summary"] += " Evidence: " + LEAK
    rec["analysis"]["risk"]["rationale"] += " " + FAKE["github"]
    if "fix" in rec["analysis"]:
        rec["analysis"]["fix"]["code"] += f"  # {FAKE['github']} {FAKE['aws_key_id']}\n"
        rec["analysis"]["fix"]["explanation"] += " " + LEAK
    return rec


def test_fake_secrets_are_each_caught_by_a_pattern():
    for name, value in FAKE.items():
        text = {"aws_secret": f"aws_secret_access_key = {value}", "password": f'password = "{value}"',
                "url_password": f"https://u:{value}@h/", "key_body": KEY_BLOCK}.get(name, value)
        assert find(text), name
        assert value not in scrub(text) and find(scrub(text)) == [], name
        assert scrub(scrub(text)) == scrub(text)
        as_json = orjson.dumps({"x": text}).decode()  # found in JSON-escaped text too, and it stays JSON
        assert find(as_json) and orjson.loads(scrub(as_json))["x"] == scrub(text), name
    assert {p.name for p in PATTERNS} >= {"aws-access-key-id", "aws-secret-access-key", "github-token", "slack-token",
                                           "google-api-key", "stripe-key", "private-key", "jwt", "secret-assignment",
                                           "url-credentials"}


@pytest.mark.parametrize("text", ["max_tokens = 512", 'http_tokens = "required"', 'password = os.environ["DB_PASSWORD"]',
                                  'password: "${DB_PASSWORD}"', "https://example.com:8443/a@b", "request.method == 'POST'",
                                  "-----BEGIN RSA PRIVATE KEY-----\n[REDACTED]\n-----END RSA PRIVATE KEY-----"])
def test_ordinary_text_is_no_secret(text):
    assert find(text) == [] and scrub(text) == text


def test_no_secret_survives_in_any_example(analyses, sca_analysis):
    records = [leaky(r, i) for i, r in enumerate([*analyses[:20], sca_analysis])]
    # a secret one scanner hashed, quoted verbatim by another report
    hashed = "Zx9-totally-secret-42"
    records[0]["finding"]["secret"] = {"sha256": hashlib.sha256(hashed.encode()).hexdigest()}
    records[1]["finding"]["message"] += f" value: {hashed} (seen)"
    for stage in ("analysis", "codefix"):
        code, out, err = run_command(Narrate, ["--stage", stage], stdin=jsonl(records), raw=True)
        assert code == 0, err
        examples = [orjson.loads(line) for line in out.splitlines()]
        fixes = sum("code_context" in r and "fix" in r["analysis"] for r in records)  # the sca fix and the kb's
        assert examples and len(examples) == (len(records) if stage == "analysis" else fixes)
        check(examples, stage)
        for secret in [*FAKE.values(), hashed]:
            assert secret not in out, (stage, secret)
        assert "[REDACTED]" in out
    # the redacted codefix still holds code that parses
    [requirements] = [ex for ex in examples if ex["metadata"]["language"] == "requirements"]
    block = re.search(r"```requirements\n(.*?)\n```", requirements["messages"][2]["content"], re.S).group(1)
    assert "[REDACTED]" in block and parses(block, "requirements")


# ---------------------------------------------------------------- determinism

def test_output_is_deterministic_and_ids_follow_the_text(analyses, sca_analysis, tmp_path):
    records = [*analyses, sca_analysis]
    for stage in ("analysis", "codefix"):
        first = run_command(Narrate, ["-q", "--stage", stage], stdin=jsonl(records), raw=True)[1]
        again = run_command(Narrate, ["-q", "--stage", stage], stdin=jsonl(records), raw=True)[1]
        assert first and first == again
    src = tmp_path / "a.jsonl"
    src.write_bytes(jsonl(records))
    assert Narrate().main(["-q", str(src), "-o", str(tmp_path / "ex.jsonl")]) == 0
    assert (tmp_path / "ex.jsonl").read_text() == run_command(Narrate, ["-q"], stdin=jsonl(records), raw=True)[1]
    changed = copy.deepcopy(analyses[0])
    changed["analysis"]["impact"] += " And more."
    a = narrate(analyses[:1], "-q")[1][0]
    b = narrate([changed], "-q")[1][0]
    assert a["metadata"]["finding_id"] == b["metadata"]["finding_id"] and a["id"] != b["id"]
    code, out, err = narrate([analyses[0], analyses[0]])
    assert len(out) == 1 and "1 duplicate" in err


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"schema": "analysis/1", "id": "x"}\n')
    code, _, err = run_command(Narrate, [str(tmp_path / "bad.jsonl")])
    assert code == 1 and err.count("\n") == 1 and "bad.jsonl:1:" in err


# ---------------------------------------------------------------- mlx-lm reads them

def test_mlx_lm_chat_dataset_processes_the_examples(analyses, sca_analysis, tiny_model):
    from mlx_lm.tuner.datasets import ChatDataset, create_dataset
    from mlx_lm.utils import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    for stage in ("analysis", "codefix"):
        code, out, err = narrate([*analyses[:5], sca_analysis], "--stage", stage)
        assert code == 0 and out, err
        dataset = create_dataset(out, tokenizer, SimpleNamespace(mask_prompt=True))
        assert isinstance(dataset, ChatDataset) and len(dataset) == len(out)
        for i in range(len(dataset)):
            tokens, offset = dataset.process(dataset[i])
            assert 0 < offset < len(tokens)
