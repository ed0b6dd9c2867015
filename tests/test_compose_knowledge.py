"""Analyses from the most specific knowledge that applies (issue 14, item 2): precedence of a rule's
hand-written entry, its harvested record, its CWE (hand-written or the catalogue) and the category
fallback; framework variants, never another framework's API; checkov's declared expectation
against the code; a "secret" that is none; a reading of flagged code that makes it a false positive.
Records are made here, so the tests do not depend on the harvested data."""

from __future__ import annotations

import pytest

from secai.analysis import kb, rules
from secai.analysis.compose import compose
from secai.analysis.languages import code_role
from secai.analysis.readings import expectation, frameworks_of, not_a_secret


def record(tool="semgrep", rule_id="r", **fields) -> dict:
    out = dict.fromkeys(rules.RULE_KEYS)
    out.update(tool=tool, rule_id=rule_id, frameworks=[], resources=[], expects=[], categories=[], cwe=[],
               references=[], source=f"{tool} test source")
    return out | fields


def finding(rule_id="semgrep-rules.python.django.security.audit.csrf-exempt-x", tool="semgrep", cwe=("CWE-352",),
            path="app/views.py", category="sast", **extra) -> dict:
    return {"id": f"{tool}-{rule_id}-{path}", "tool": tool, "rule_id": rule_id, "title": "A finding",
            "category": category, "severity": "medium", "cwe": list(cwe), "references": [],
            "location": {"path": path, "start_line": 3}, **extra}


def context(code: str, first: int = 3, last: int | None = None, language="python", start=1) -> dict:
    n = len(code.split("\n"))
    return {"path": "x", "language": language, "start_line": start, "end_line": start + n - 1, "code": code,
            "finding_lines": [first, last or first]}


# ---------------------------------------------------------------- precedence

def test_a_hand_written_cwe_entry_is_merged_over_the_rules_record():
    rule = record(what="Flags views exempted from CSRF checks.", advice="Remove the csrf_exempt decorator.",
                  frameworks=["python", "django"])
    a = compose(finding(), None, None, rule=rule)
    assert kb.load().lookup(finding())[1].id == "cwe-352-csrf"
    assert "CsrfViewMiddleware" in a["remediation"]                           # the entry's Django variant
    assert "“Remove the csrf_exempt decorator.”" in a["remediation"]          # and the rule's own advice
    assert "semgrep test source" in a["remediation"]


def test_the_record_replaces_the_fallbacks_generic_advice():
    f = finding("semgrep-rules.python.custom.no-such-family-rule", cwe=())
    generic = compose(f, None, None)["remediation"]
    assert "apply the fix the rule" in generic
    a = compose(f, None, None, rule=record(advice="Call close() on the handle."))
    assert "apply the fix the rule" not in a["remediation"] and "“Call close() on the handle.”" in a["remediation"]


def test_a_cwe_without_a_hand_written_entry_gets_the_catalogue_not_the_fallback(monkeypatch):
    entry = {"id": "CWE-4242", "name": "Inefficient Regular Expression Complexity",
             "description": "The product uses a regular expression with an inefficient worst-case complexity.",
             "consequences": [{"scope": ["Availability"], "impact": ["DoS: Resource Consumption (CPU)"]}],
             "mitigations": [{"phase": "Implementation", "strategy": None,
                              "description": "Use regular expressions that do not support backtracking."},
                             {"phase": "Implementation", "strategy": None,
                              "description": "Set backtracking limits, such as PHP's pcre.backtrack_limit."},
                             {"phase": "Architecture and Design", "strategy": None,
                              "description": "Do not use regular expressions with untrusted input."}]}
    monkeypatch.setattr(rules, "cwe_entry", lambda c: entry if c == "CWE-4242" else None)
    f = finding("semgrep-rules.python.custom.slow-regex", cwe=("CWE-4242",))  # no hand-written entry has it
    assert kb.load().lookup(f)[0] == "category"
    a = compose(f, None, None)
    assert "CWE-4242, Inefficient Regular Expression Complexity" in a["summary"]
    assert "Availability: DoS: Resource Consumption (CPU)" in a["impact"]
    assert a["remediation"].startswith("Use regular expressions that do not support backtracking.")
    assert "PHP" not in a["remediation"]  # a mitigation naming another language's API is left out
    assert "untrusted input" in a["prevention"]
    assert "https://cwe.mitre.org/data/definitions/4242.html" in a["references"]


# ---------------------------------------------------------------- frameworks

def test_frameworks_come_from_the_rule_the_semgrep_id_and_the_language_most_specific_first():
    f = finding("semgrep-rules.python.django.security.x")
    assert frameworks_of(f, None, None) == ("django", "python")
    assert frameworks_of(finding("custom.rule", path="src/App.kt"), record(frameworks=["kotlin", "ktor"]), None) \
        == ("ktor", "kotlin")
    assert frameworks_of(finding("r", path="web/a.js"), None, context("const app = require('express')", language="javascript")) \
        == ("express", "javascript")


@pytest.mark.parametrize("rule_id, path, wanted, foreign", [
    ("semgrep-rules.python.django.security.injection.raw-html-format", "v.py", "format_html", ("render_template", "DOMPurify")),
    ("semgrep-rules.python.flask.security.xss.audit.template-unescaped-with-safe", "v.py", "render_template", ("format_html",)),
    ("semgrep-rules.javascript.browser.security.insecure-innerhtml", "a.js", "textContent", ("format_html", "render_template")),
])
def test_each_framework_gets_its_own_xss_advice(rule_id, path, wanted, foreign):
    a = compose(finding(rule_id, cwe=("CWE-79",), path=path), None, None)
    assert wanted in a["remediation"] and not any(x in a["remediation"] for x in foreign)


FOREIGN = ("Django", "django", "Flask", "flask", "Spring", "Express", "express", "csrf_token", "CSRFProtect",
           "format_html", "render_template", "DOMPurify", "PreparedStatement", "pickle")


@pytest.mark.parametrize("cwe", ["CWE-352", "CWE-79", "CWE-89", "CWE-502"])
def test_a_kotlin_ktor_finding_gets_the_neutral_principle_and_no_foreign_framework(cwe):
    f = finding("custom.ktor.missing-check", cwe=(cwe,), path="src/main/kotlin/Routes.kt")
    a = compose(f, None, None, rule=record(frameworks=["kotlin", "ktor"]))
    assert not [w for w in FOREIGN if w in a["remediation"]], a["remediation"]


# ---------------------------------------------------------------- checkov's expectations

CLOUDTRAIL = 'resource "aws_cloudtrail" "main" {\n  name = "trail"\n  enable_log_file_validation = false\n}'


def test_a_value_check_says_what_it_expects_what_the_code_sets_and_what_to_set():
    rule = record("checkov", "CKV_AWS_36", frameworks=["terraform"],
                  expects=[{"key": "enable_log_file_validation", "values": [True], "when_missing": "FAILED"}])
    f = finding("CKV_AWS_36", "checkov", (), "main.tf", "iac")
    f["location"] |= {"start_line": 1, "end_line": 4, "resource": "aws_cloudtrail.main"}
    a = compose(f, context(CLOUDTRAIL, 1, 4, "hcl"), None, rule=rule)
    assert "expects enable_log_file_validation on aws_cloudtrail.main to be true" in a["summary"]
    assert "The flagged code sets enable_log_file_validation to false." in a["summary"]
    assert a["remediation"].startswith("Set enable_log_file_validation to true on aws_cloudtrail.main.")
    f["location"]["end_line"] = 3
    missing = compose(f, context(CLOUDTRAIL.replace("  enable_log_file_validation = false\n", ""), 1, 3, "hcl"),
                      None, rule=rule)
    assert "The flagged code does not set enable_log_file_validation." in missing["summary"]


def test_a_forbidden_value_is_changed_from_what_the_code_sets():
    rule = record("checkov", "CKV_X", expects=[{"key": "metadata_options/[0]/http_tokens", "forbidden": ["optional"]}])
    e = expectation(rule, 'metadata_options {\n  http_tokens = "optional"\n}', "aws_instance.web", "hcl", True)
    assert e.reading == 'The flagged code sets http_tokens to "optional", which the check forbids.'
    assert e.change.startswith('Change http_tokens in the metadata_options block of aws_instance.web from "optional"')


# ---------------------------------------------------------------- secrets that are none

def test_a_class_name_flagged_as_secret_is_not_to_be_rotated():
    f = finding("CKV_SECRET_6", "checkov", (), "config.json", "secret", secret={"sha256": "0" * 64})
    a = compose(f, context('{\n  "model": "gpt2",\n  "tokenizer_class": [REDACTED]\n}', 3, 3, "json"), None)
    assert "tokenizer_class, which holds a name" in a["summary"]
    assert "Nothing needs rotating" in a["remediation"] and "Rotate" not in a["remediation"]
    assert "checkov:skip=CKV_SECRET_6" in a["remediation"]
    assert "stays usable until it is revoked" not in a["risk"]["rationale"]


def test_a_placeholder_is_told_by_its_hash_and_a_real_looking_key_is_not():
    import hashlib
    digest = hashlib.sha256(b"changeme").hexdigest()
    assert not_a_secret({"secret": {"sha256": digest}}, "password = '[REDACTED]'").kind == "placeholder"
    assert not_a_secret({"secret": {"sha256": "1" * 64}}, "api_key = '[REDACTED]'") is None
    assert not_a_secret({"secret": {"sha256": "1" * 64}}, "password = os.environ['DB_PASSWORD']").kind == "lookup"
    assert not_a_secret({"secret": {"sha256": hashlib.sha256(b"admin").hexdigest()}}, "").kind == "default"


# ---------------------------------------------------------------- readings of the flagged code

def test_is_authenticated_without_parentheses_is_a_false_positive():
    rid = "semgrep-rules.python.lang.maintainability.is-function-without-parentheses"
    code = "def view(request):\n    x = 1\n    if request.user.is_authenticated:\n        return 1"
    a = compose(finding(rid, cwe=()), context(code), None)
    assert "false positive" in a["summary"] and "Leave the code" in a["remediation"]
    assert a["risk"]["rating"] == "low"  # one step below medium, with the reason
    other = compose(finding(rid, cwe=()), context(code.replace("request.user.is_authenticated", "self.is_ready")), None)
    assert "false positive" not in other["summary"] and "add the parentheses" in other["remediation"]


@pytest.mark.parametrize("path, role", [("app/migrations/0001_initial.py", "generated"), ("examples/demo.py", "example"),
                                        ("pkg/api_pb2.py", "generated"), ("tests/test_a.py", "test"), ("app/views.py", None)])
def test_code_roles(path, role):
    assert code_role(path) == role


def test_example_and_generated_code_are_named_as_such():
    assert "is example code" in compose(finding(path="examples/demo.py"), None, None)["summary"]
    assert "is generated code" in compose(finding(path="shop/migrations/0002_auto.py"), None, None)["summary"]


def test_severity_is_secais_own_when_the_scanner_gave_none():
    a = compose(finding(), None, None)
    assert "semgrep rates it" not in a["risk"]["rationale"]
    assert "medium is secai's default for that" in a["risk"]["rationale"]
