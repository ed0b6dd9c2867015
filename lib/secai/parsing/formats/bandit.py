"""Bandit JSON reports (`bandit -f json`).

Shape: {errors[], generated_at, metrics{}, results[{code, col_offset, end_col_offset, filename,
issue_confidence, issue_cwe{id, link}, issue_severity, issue_text, line_number, line_range[],
more_info, test_id, test_name}]}. Bandit before 1.7.3 writes no columns and no issue_cwe; an empty
scan has `results: []` beside generated_at and metrics. `errors` (files Bandit could not parse)
are not findings.

Mapping: tool bandit, category sast; rule_id test_id (B602); title test_name made readable
("subprocess_popen_with_shell_equals_true" -> "Subprocess popen with shell equals true"; the
blacklist tests, all named "blacklist", take the entry named in their more_info anchor:
"...#b307-eval" -> "Blacklist: eval"); message issue_text; confidence issue_confidence
(UNDEFINED: none); cwe issue_cwe.id; references more_info, issue_cwe.link. Location: filename
(forward slashes, no leading ./); start_line the first line of line_range, which is the flagged
node's first line, where col_offset counts from (line_number when there is no range: Bandit's
line_number may be a later line of a multi-line node, e.g. the `shell=True` keyword of a call);
end_line the last of line_range; start_column col_offset + 1 and end_column end_col_offset + 1
(Bandit counts columns from 0); snippet the quoted `code` without Bandit's "NN " line prefixes.
This is the region Bandit's own SARIF formatter writes (startLine line_range[0], startColumn
col_offset + 1), so one scan gives the same ids in its JSON and its SARIF.

Severity: issue_severity HIGH -> high, MEDIUM -> medium, LOW -> low; UNDEFINED, any other value or
none -> info. tool_severity is the word as written.

Secrets: the hardcoded-password tests (B105, B106, B107) quote the password in issue_text
("Possible hardcoded password: 'hunter2'") and in the code. The value is kept only as
secret.sha256; the message says [REDACTED] instead, and every snippet of the report has each such
password (of 4 characters or more, as written or backslash-escaped) replaced by [REDACTED]: a
snippet's context lines may quote another result's password. The category stays sast, as in
Bandit's SARIF.

Dedup: one finding per result; results of one test at the same path, line and column are one
finding (`occurrences` counts them): Bandit before 1.7.3, without columns, reports two string
concatenations on one line as two identical results.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from secai.parsing.finding import ParseError, as_dict, as_list, cwe_ids, norm_path, positive_int, text, unique
from secai.secrets import forms, quoted_secret, redact, secret_digest
from secai.parsing.formats import Format

LEVELS = {"HIGH": "high", "MEDIUM": "medium", "LOW": "low"}
_LINE_PREFIX = re.compile(r"^\d+ ?", re.MULTILINE)
PASSWORD_MESSAGE = "Possible hardcoded password: "  # B105-B107: the password follows, in quotes
_BLACKLIST_IDS = re.compile(r"^(b\d+-)+", re.IGNORECASE)


def detect(doc) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        return False
    results = doc["results"]
    if not results:
        return "generated_at" in doc and "metrics" in doc
    return isinstance(results[0], dict) and "test_id" in results[0] and "issue_text" in results[0]


def _title(test_name: str, more_info: str, rule: str) -> str:
    if test_name == "blacklist":
        entry = _BLACKLIST_IDS.sub("", urlsplit(more_info).fragment).replace("-", " ").strip()
        return f"Blacklist: {entry}" if entry else "Blacklist"
    return test_name.replace("_", " ").capitalize() or rule


def _column(value) -> int | None:
    """A 0-based Bandit column as a 1-based one."""
    return value + 1 if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def quoted_password(message: str) -> tuple[str, str]:
    """(the password a hardcoded-password message quotes or '', the message with it redacted);
    also used for Bandit's SARIF."""
    return quoted_secret(message, PASSWORD_MESSAGE)


def _password(r: dict) -> str:
    return quoted_password(text(r.get("issue_text")))[0]


def _finding(r: dict, where: str, secrets: set[str]) -> dict:
    rule = text(r.get("test_id"))
    if not rule:
        raise ParseError("result has no test_id", where)
    cwe = as_dict(r.get("issue_cwe"), f"{where}.issue_cwe")
    lines = [n for n in map(positive_int, as_list(r.get("line_range"), f"{where}.line_range")) if n]
    start = lines[0] if lines else positive_int(r.get("line_number"))
    value, message = quoted_password(text(r.get("issue_text")))
    snippet = _LINE_PREFIX.sub("", text(r.get("code")))
    snippet = redact(snippet, [s for s in secrets if s in snippet])  # the context may quote other results' passwords
    severity = text(r.get("issue_severity"))
    path = norm_path(r.get("filename"))
    return {
        "tool": "bandit",
        "rule_id": rule,
        "title": _title(text(r.get("test_name")), text(r.get("more_info")), rule),
        "message": message,
        "severity": LEVELS.get(severity.upper(), "info"),
        "tool_severity": severity,
        "confidence": LEVELS.get(text(r.get("issue_confidence")).upper()),
        "category": "sast",
        "cwe": cwe_ids([cwe.get("id")]),
        "references": unique([r.get("more_info"), cwe.get("link")]),
        "secret": {"sha256": secret_digest(value)} if value else None,
        "location": {
            "path": path,
            "start_line": start,
            "end_line": max(lines) if lines else start,
            "start_column": _column(r.get("col_offset")),
            "end_column": _column(r.get("end_col_offset")),
            "snippet": snippet.strip("\n"),
        } if path else None,
    }


def parse(doc: dict):
    results = [as_dict(raw, f"$.results[{i}]") for i, raw in enumerate(as_list(doc.get("results"), "$.results"))]
    secrets = forms(_password(r) for r in results)
    for i, r in enumerate(results):
        yield _finding(r, f"$.results[{i}]", secrets)


FORMATS = [Format("bandit-json", "json", "Bandit",
                  "an object with results[] of test_id and issue_text (an empty scan: results [] beside "
                  "generated_at and metrics)", detect, parse)]
