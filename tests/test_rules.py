"""secai.analysis.rules: one record of rule knowledge per finding (checkov and bandit from the
harvested data, semgrep from the report's own rule files), and secai-analyze --semgrep-rules."""

from __future__ import annotations

import orjson
import pytest
from conftest import run_command

from secai.analysis import rules
from secai.commands.analyze import Analyze

RULE = """\
rules:
  - id: flask-render-unescaped
    message: Rendering user input without escaping allows an attacker to run script in the page. Use render_template instead.
    languages: [python]
    severity: WARNING
    metadata:
      cwe: ["CWE-79: Improper Neutralization of Input During Web Page Generation ('Cross-site Scripting')"]
      owasp: "A03:2021 - Injection"
      category: security
      technology: [flask]
      references: [https://flask.palletsprojects.com/en/latest/security/, "javascript:alert(1)"]
    pattern: flask.render_template_string($X)
    fix: flask.render_template($X)
  - id: use-timeout
    message: requests without a timeout can hang forever.
    languages: [python]
    severity: INFO
    patterns:
      - pattern: requests.get(...)
      - pattern-not: requests.get(..., timeout=$T, ...)
    fix-regex:
      regex: '(.*)\\)$'
      replacement: '\\1, timeout=30)'
"""


@pytest.fixture
def rule_dir(tmp_path):
    folder = tmp_path / "my-rules" / "python" / "flask"
    folder.mkdir(parents=True)
    (folder / "render.yaml").write_text(RULE)
    (folder / "broken.yaml").write_text("rules: [ {id: x, message: 'unclosed\n")  # never breaks the others
    (folder / "huge.yml").write_text("rules:\n  - id: too-big\n    message: x\n" + "#" * (rules.MAX_RULE_FILE + 1))
    return tmp_path / "my-rules"


def semgrep(rule_id: str) -> dict:
    return {"tool": "semgrep", "rule_id": rule_id}


def test_semgrep_rule_from_its_dotted_id(rule_dir):
    r = rules.rule_knowledge(semgrep("my-rules.python.flask.flask-render-unescaped"), rule_dir)
    assert set(r) == set(rules.RULE_KEYS)
    assert r["tool"] == "semgrep" and r["name"] == "flask-render-unescaped"
    assert r["what"].startswith("Rendering user input without escaping")
    assert r["advice"] == "Use render_template instead."
    assert r["why"] == "Rendering user input without escaping allows an attacker to run script in the page."
    assert r["cwe"] == ["CWE-79"] and r["frameworks"] == ["python", "flask"]
    assert r["references"] == ["https://flask.palletsprojects.com/en/latest/security/"]  # no javascript: link
    assert r["autofix"] == {"fix": "flask.render_template($X)"}
    assert r["matches"] == "pattern: flask.render_template_string($X)\n"
    assert r["source"] == "semgrep rule file python/flask/render.yaml"  # relative: no local path
    # the config folder's own name may be missing, or more leading parts may be in front
    assert rules.rule_knowledge(semgrep("python.flask.flask-render-unescaped"), rule_dir) == {**r, "rule_id":
                                                                                             "python.flask.flask-render-unescaped"}
    assert rules.rule_knowledge(semgrep("ci.configs.my-rules.python.flask.flask-render-unescaped"), rule_dir)["name"] \
        == "flask-render-unescaped"


def test_semgrep_fix_regex_and_patterns(rule_dir):
    r = rules.rule_knowledge(semgrep("my-rules.python.flask.use-timeout"), rule_dir)
    assert r["autofix"] == {"regex": "(.*)\\)$", "replacement": "\\1, timeout=30)"}
    assert "pattern-not: requests.get(..., timeout=$T, ...)" in r["matches"]
    assert r["cwe"] == [] and r["advice"] is None


def test_semgrep_unknown_broken_or_oversized_rules_give_none(rule_dir):
    assert rules.rule_knowledge(semgrep("my-rules.python.flask.x"), rule_dir) is None          # in broken.yaml
    assert rules.rule_knowledge(semgrep("my-rules.python.flask.too-big"), rule_dir) is None    # over the size bound
    assert rules.rule_knowledge(semgrep("my-rules.python.flask.nothing-here"), rule_dir) is None
    assert rules.rule_knowledge(semgrep("my-rules.python.flask.flask-render-unescaped"), None) is None
    assert rules.rule_knowledge(semgrep("my-rules...flask-render-unescaped"), rule_dir) is None
    # the folder is part of the id: the same rule id under another folder is another rule
    assert rules.rule_knowledge(semgrep("my-rules.python.django.flask-render-unescaped"), rule_dir) is None


def test_semgrep_one_rule_file_as_the_config(rule_dir):
    file = rule_dir / "python" / "flask" / "render.yaml"
    assert rules.rule_knowledge(semgrep("flask-render-unescaped"), file)["autofix"] == {"fix": "flask.render_template($X)"}
    assert rules.rule_knowledge(semgrep("render.flask-render-unescaped"), file)["name"] == "flask-render-unescaped"


def test_checkov_record_for_the_findings_framework():
    tf = rules.rule_knowledge({"tool": "checkov", "rule_id": "CKV_AWS_36", "tags": ["terraform"],
                               "location": {"path": "main.tf"}})
    assert tf["frameworks"] == ["terraform"] and tf["resources"] == ["aws_cloudtrail"]
    assert tf["expects"] == [{"key": "enable_log_file_validation", "values": [True], "when_missing": "FAILED"}]
    assert tf["what"] == tf["name"] == "Ensure CloudTrail log file validation is enabled"
    assert tf["source"] == f"checkov {rules.harvested('checkov')['source']['version']}, Apache-2.0"
    cfn = rules.rule_knowledge({"tool": "checkov", "rule_id": "CKV_AWS_36", "tags": ["cloudformation"]})
    assert cfn["expects"][0]["key"] == "Properties/EnableLogFileValidation"
    by_path = rules.rule_knowledge({"tool": "checkov", "rule_id": "CKV_AWS_36", "location": {"path": "infra/trail.tf"}})
    assert by_path["frameworks"] == ["terraform"]
    k8s = rules.rule_knowledge({"tool": "checkov", "rule_id": "CKV_K8S_16", "tags": ["kubernetes"]})
    assert k8s["frameworks"] == ["kubernetes"] and "Pod" in k8s["resources"] and k8s["expects"] == []
    graph = rules.rule_knowledge({"tool": "checkov", "rule_id": "CKV2_AWS_6", "tags": ["terraform"]})
    assert {"key": "block_public_acls", "operator": "equals", "values": [True],
            "resource_types": ["aws_s3_bucket_public_access_block"]} in graph["expects"]


def test_bandit_record():
    r = rules.rule_knowledge({"tool": "bandit", "rule_id": "B602"})
    assert r["name"] == "Test for use of popen with shell equals true" and r["cwe"] == ["CWE-78"]
    assert "shell=True" in r["what"] and r["frameworks"] == ["python"] and r["autofix"] is None
    assert r["source"].startswith("bandit ") and r["source"].endswith(", Apache-2.0")
    assert rules.rule_knowledge({"tool": "bandit", "rule_id": "B404"})["categories"] == ["blacklist imports"]


@pytest.mark.parametrize("finding", [{"tool": "trivy", "rule_id": "CVE-2024-0001"}, {"tool": "bandit", "rule_id": "B999"},
                                     {"tool": "checkov", "rule_id": "CKV_NOPE_1"}, {"tool": "bandit"},
                                     {"tool": "checkov", "rule_id": None}])
def test_unknown_tool_or_rule_gives_none(finding, rule_dir):
    assert rules.rule_knowledge(finding, rule_dir) is None


def test_advice_and_why_sentences():
    assert rules.advice_of("Found X. Instead, use Y.") == "Instead, use Y."
    assert rules.advice_of("Found X.") is None and rules.why_of(None) is None
    assert rules.why_of("This is vulnerable to injection. Use Z.") == "This is vulnerable to injection."


def test_analyze_semgrep_rules_reach_the_analysis_and_its_cache_key(rule_dir, tmp_path):
    finding = {"schema": "finding/1", "id": "0" * 32, "tool": "semgrep", "occurrences": 1, "suppressed": False,
               "rule_id": "my-rules.python.flask.flask-render-unescaped", "title": "flask-render-unescaped",
               "severity": "medium", "category": "sast", "cwe": [], "location": {"path": "app.py", "start_line": 3},
               "source": {"file": "semgrep.json", "format": "semgrep-json"}}
    cache = tmp_path / "cache"
    stdin = orjson.dumps(finding) + b"\n"
    code, without, err = run_command(Analyze, ["-q", "--cache", str(cache)], stdin)
    assert code == 0, err
    code, with_rules, err = run_command(Analyze, ["-q", "--cache", str(cache), "--semgrep-rules", str(rule_dir)], stdin)
    assert code == 0, err
    entries = [p for p in cache.rglob("*") if p.is_file()]
    assert len(entries) == 2  # the rule's knowledge is part of the key: no stale analysis is served
    assert without[0]["analysis"] != with_rules[0]["analysis"]
    assert "Use render_template instead." in orjson.dumps(with_rules[0]["analysis"]).decode()  # the rule's own advice
