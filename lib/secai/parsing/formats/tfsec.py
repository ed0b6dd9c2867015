"""tfsec JSON reports (`tfsec --format json`), in the three shapes tfsec has written.

- tfsec 1.x: {results: [{rule_id (AVD-AWS-0086), long_id (aws-s3-block-public-acls),
  rule_description, rule_provider, rule_service, impact, resolution, links[], description,
  severity (CRITICAL, HIGH, MEDIUM, LOW), warning, status (0 failed, 1 passed, 2 ignored),
  resource, location{filename, start_line, end_line}}]};
- tfsec 0.4x-0.6x: the same without long_id, rule_service and resource; rule_id is already the
  long id and legacy_rule_id the old one (AWS050); status "failed", "passed" or "ignored";
- legacy (before 0.40): rule_id (AWS017), rule_description, rule_provider, link ("See <url> for
  more information."), location, description, impact, resolution, severity (ERROR, WARNING, INFO),
  passed (true with --include-passed).
`results` is null (or []) when tfsec found nothing: an object with only `results` is then claimed.

Mapping: tool tfsec, category iac; rule_id the long id (long_id, else rule_id), which is the
ruleId of tfsec's SARIF, so one scan gives the same ids in both; the other ids (AVD-..., the
legacy AWS050) are aliases; title rule_description (else description); description impact;
message description (the result's own sentence, naming the resource); fix_hint resolution;
references links[], or the URL in the legacy link sentence; tags rule_provider, rule_service;
location {path: filename, start_line, end_line, resource}. Passed results are not findings;
ignored ones are kept with suppressed: true.

Severity: CRITICAL -> critical, HIGH and ERROR -> high, MEDIUM and WARNING -> medium, LOW and INFO
-> low; NONE, any other value or none -> info. tool_severity is the word as written.

Dedup: results of one rule at the same path and start line are one finding (`occurrences`
counts them): tfsec reports a rule once per module instance that uses the same code. DefectDojo
merges on rule_provider + rule_id + file + start_line + end_line, which gives the same counts.
"""

from __future__ import annotations

import re

from secai.parsing.finding import (ParseError, as_dict, as_list, norm_path, positive_int, split_advisory_ids,
    text, unique)
from secai.parsing.formats import Format

SEVERITY = {"CRITICAL": "critical", "HIGH": "high", "ERROR": "high", "MEDIUM": "medium", "WARNING": "medium",
            "LOW": "low", "INFO": "low"}
PASSED, IGNORED = (1, "passed"), (2, "ignored")
_URL = re.compile(r"https?://[^\s\"'<>]+")


def detect(doc) -> bool:
    if not isinstance(doc, dict) or "results" not in doc:
        return False
    results = doc["results"]
    if results is None or results == []:
        return doc.keys() == {"results"}
    first = results[0] if isinstance(results, list) else None
    return isinstance(first, dict) and "rule_id" in first and isinstance(first.get("location"), dict) \
        and "filename" in first["location"]


def _status(result: dict):
    """0/1/2 (tfsec 1.x) or failed/passed/ignored (0.4x-0.6x); None when absent."""
    status = result.get("status")
    if isinstance(status, str):
        return status.strip().lower()
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def _finding(r: dict, where: str) -> dict | None:
    status = _status(r)
    if r.get("passed") is True or status in PASSED:
        return None
    short_id, long_id = text(r.get("rule_id")), text(r.get("long_id"))
    rule = long_id or short_id
    if not rule:
        raise ParseError("result has no rule_id", where)
    loc = as_dict(r.get("location"), f"{where}.location")
    severity = text(r.get("severity"))
    link = r.get("link")
    path = norm_path(loc.get("filename"))
    return {
        "tool": "tfsec",
        "rule_id": rule,
        "title": text(r.get("rule_description")) or text(r.get("description")) or rule,
        "description": text(r.get("impact")),
        "message": text(r.get("description")),
        "severity": SEVERITY.get(severity.upper(), "info"),
        "tool_severity": severity,
        "category": "iac",
        "aliases": split_advisory_ids([short_id, r.get("legacy_rule_id")], exclude=rule)[1],
        "references": unique([*as_list(r.get("links"), f"{where}.links"),
                              *(_URL.findall(link) if isinstance(link, str) else [])]),
        "fix_hint": text(r.get("resolution")),
        "tags": unique([r.get("rule_provider"), r.get("rule_service")]),
        "suppressed": status in IGNORED,
        "location": {
            "path": path,
            "start_line": positive_int(loc.get("start_line")),
            "end_line": positive_int(loc.get("end_line")),
            "resource": text(r.get("resource")),
        } if path else None,
    }


def parse(doc: dict):
    for i, raw in enumerate(as_list(doc.get("results"), "$.results")):
        finding = _finding(as_dict(raw, f"$.results[{i}]"), f"$.results[{i}]")
        if finding:
            yield finding


FORMATS = [Format("tfsec-json", "json", "tfsec",
                  "an object with results[] of rule_id and location.filename, or with only `results` "
                  "null or [] (no findings)", detect, parse)]
