"""KICS JSON reports (`kics scan --report-formats json`, results.json).

Shape: {kics_version, files_scanned, ..., queries_total, queries: [{query_name, query_id,
query_url, severity (CRITICAL, HIGH, MEDIUM, LOW, INFO, TRACE), platform, cwe, cloud_provider,
category, experimental, description, description_id, cis_*, files: [{file_name, similarity_id,
line, resource_type, resource_name, issue_type, search_key, search_line, search_value,
expected_value, actual_value, value, remediation, remediation_type}]}], severity_counters,
total_counter}. Older versions lack kics_version, cwe, resource_* and remediation.

Mapping: one finding per entry of a query's files[]. tool kics; rule_id query_id (a UUID: it is
the ruleId of KICS' SARIF, so one scan gives the same ids in both, and it stays the same when a
query is renamed); title query_name; description description; message "Expected: <expected_value>.
Actual: <actual_value>."; cwe cwe; references query_url; tags platform, category, cloud_provider (but "Common");
fix_hint remediation ("Replace '<before>' with '<after>'" for a replacement given as JSON,
"Add: <remediation>" for an addition); location {path: file_name, start_line: line, resource:
resource_name, else search_key}; tool_version kics_version. Category iac, or secret for a
hardcoded-credential query: category "Secret Management" and a name beginning "Passwords And
Secrets" or containing "Hardcoded" (not the Secret Management misconfigurations, such as a
secrets manager without a KMS key).

Severity: CRITICAL -> critical, HIGH -> high, MEDIUM -> medium, LOW -> low, INFO and TRACE -> info;
any other value or none -> info. tool_severity is the word as written.

Secrets: KICS writes fixed sentences for its secret queries, but search_value and actual_value
may hold the matched value. For a secret finding, search_value (when set) is kept only as
secret.sha256; actual_value and search_value are never output, so the message is "Expected:
<expected_value>." alone, and every text kept has search_value replaced by [REDACTED].

Dedup: findings of one query at the same path and line are one finding (`occurrences` counts
them): KICS reports a query once per offending value on a line (the four wildcards of one
Kubernetes RBAC rule are four entries). DefectDojo merges on platform + category + issue_type +
file + expected_value + line, so it keeps such entries apart when their expected values differ.
"""

from __future__ import annotations

import re

import orjson

from secai.parsing.finding import ParseError, as_dict, as_list, cwe_ids, norm_path, positive_int, text, unique
from secai.secrets import redact, secret_digest
from secai.parsing.formats import Format

SEVERITY = {"CRITICAL": "critical", "HIGH": "high", "MEDIUM": "medium", "LOW": "low", "INFO": "info", "TRACE": "info"}
_SECRET_QUERY = re.compile(r"^passwords and secrets|hardcoded", re.IGNORECASE)


def detect(doc) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("queries"), list) \
        and any(k in doc for k in ("kics_version", "queries_total", "severity_counters"))


def _sentence(value: str) -> str:
    return value.rstrip(". ") + "." if value else ""


def _fix(remediation: str, kind: str) -> str:
    if kind == "replacement" and remediation.startswith("{"):
        try:
            change = orjson.loads(remediation)
        except orjson.JSONDecodeError:
            return remediation
        if isinstance(change, dict) and "before" in change and "after" in change:
            return f"Replace '{text(change['before'])}' with '{text(change['after'])}'"
    return f"Add: {remediation}" if kind == "addition" and remediation else remediation


def _finding(query: dict, entry: dict, where: str, version: str) -> dict:
    rule = text(query.get("query_id"))
    if not rule:
        raise ParseError("query has no query_id", where)
    name, severity = text(query.get("query_name")), text(query.get("severity"))
    secret = text(query.get("category")) == "Secret Management" and bool(_SECRET_QUERY.search(name))
    value = text(entry.get("search_value")) if secret else ""
    expected, actual = text(entry.get("expected_value")), "" if secret else text(entry.get("actual_value"))
    message = " ".join(part for part in (f"Expected: {_sentence(expected)}" if expected else "",
                                         f"Actual: {_sentence(actual)}" if actual else "") if part)
    cwe = text(query.get("cwe"))
    path = norm_path(entry.get("file_name"))
    hide = [value]  # a secret query's matched value, kept out of every text
    return {
        "tool": "kics",
        "tool_version": version,
        "rule_id": rule,
        "title": name or rule,
        "description": text(query.get("description")),
        "message": redact(message, hide),
        "severity": SEVERITY.get(severity.upper(), "info"),
        "tool_severity": severity,
        "category": "secret" if secret else "iac",
        "cwe": cwe_ids([int(cwe) if cwe.isdigit() else cwe]),
        "references": unique([query.get("query_url")]),
        "tags": unique(t for t in (query.get("platform"), query.get("category"), query.get("cloud_provider"))
                       if text(t).lower() != "common"),
        "fix_hint": redact(_fix(text(entry.get("remediation")), text(entry.get("remediation_type"))), hide),
        "secret": {"sha256": secret_digest(value)} if value else None,
        "location": {
            "path": path,
            "start_line": positive_int(entry.get("line")),
            "resource": redact(text(entry.get("resource_name")) or text(entry.get("search_key")), hide),
        } if path else None,
    }


def parse(doc: dict):
    version = text(doc.get("kics_version"))
    for i, raw in enumerate(as_list(doc.get("queries"), "$.queries")):
        query = as_dict(raw, f"$.queries[{i}]")
        for j, entry in enumerate(as_list(query.get("files"), f"$.queries[{i}].files")):
            where = f"$.queries[{i}].files[{j}]"
            yield _finding(query, as_dict(entry, where), where, version)


FORMATS = [Format("kics-json", "json", "KICS",
                  "an object with queries[] beside kics_version, queries_total or severity_counters",
                  detect, parse)]
