"""Semgrep JSON: the CLI report (`semgrep scan --json`) and the Semgrep Supply Chain API's `vulns` list.

CLI: `{version, results: [{check_id, path, start: {line, col, offset}, end, extra: {message,
severity, metadata, lines, fix, fingerprint, is_ignored, sca_info}}], errors, paths}`.
- One finding per result. rule_id `check_id`; title the rule's `metadata.shortDescription` (what
  Semgrep's SARIF uses as well), else (supply-chain rules, whose ids are `ssc-<uuid>`) the
  advisory's first message line, else the last dotted component of check_id made readable
  ("python.lang.security.audit.eval-detected" -> "Eval detected"); message `extra.message`.
- severity: ERROR high, WARNING medium, INFO low (the SARIF levels error/warning/note), and the
  newer CRITICAL/HIGH/MEDIUM/LOW as they read; anything else (INVENTORY, EXPERIMENT) info.
- cwe from `metadata.cwe` (string or list); references `metadata.references`, `source` and
  `source-rule-url`; confidence `metadata.confidence`; tags category, OWASP and vulnerability class;
  fix_hint the autofix `extra.fix`; location path/lines/columns, snippet `extra.lines` unless it is
  Semgrep's "requires login" placeholder; `is_ignored` (nosemgrep) results are kept as suppressed
  in source, as Semgrep's SARIF marks them.
- Supply-chain results (`extra.sca_info`) are category `sca` with the found dependency as package,
  the advisory id (`sca-vuln-database-identifier`) as CVE and `sca-fix-versions` as fixed versions.

Supply Chain API (`{vulns: [{title, advisory, matchedDependency, dependencyFileLocation, triage,
...}], hasMore, cursor}`): one finding per vuln, category `sca`; rule_id `advisory.ruleId`; the
package is `matchedDependency` with its ecosystem from the rule's `depends-on-either` namespace
(`advisory.ecosystem` may name another of the advisory's packages) and
`closestSafeDependency` as fixed version; severity `advisory.severity`; location the dependency
file and line; triage status IGNORED is an accepted external suppression.

No deduplication here: results with one fingerprint (finding.fingerprint: tool, rule, path, line
and start column; for packages tool, rule, package, version and path) collapse centrally.
"""

from __future__ import annotations

import orjson

from secai.parsing.finding import (ParseError, as_dict, as_list, cwe_ids, norm_path, positive_int,
    severity_from_word, split_advisory_ids, text, unique)
from secai.parsing.formats import Format

SEMGREP_SEVERITY = {"ERROR": "high", "WARNING": "medium", "INFO": "low"}
LOGIN_PLACEHOLDER = "requires login"


def detect(doc) -> bool:
    if not isinstance(doc, dict):
        return False
    results, vulns = doc.get("results"), doc.get("vulns")
    if isinstance(results, list):
        first = results[0] if results else None
        # an empty Semgrep report has `errors`; an empty Bandit report too, but also `generated_at`
        return (isinstance(first, dict) and "check_id" in first) or (
            not results and "errors" in doc and "generated_at" not in doc)
    if isinstance(vulns, list):
        first = vulns[0] if vulns else None
        return (isinstance(first, dict) and "advisory" in first) or (not vulns and "cursor" in doc)
    return False


def _severity(word: str) -> str:
    return SEMGREP_SEVERITY.get(word.upper()) or severity_from_word(word) or "info"


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _title(check_id: str, metadata: dict, advisory: str) -> str:
    words = check_id.rsplit(".", 1)[-1].replace("-", " ").replace("_", " ").strip()
    return (text(metadata.get("shortDescription")) or advisory.split("\n", 1)[0][:200]
            or (words[:1].upper() + words[1:]) or check_id)


def _sca_package(extra: dict, metadata: dict, where: str) -> dict:
    match = as_dict(as_dict(extra.get("sca_info"), f"{where}.sca_info").get("dependency_match"),
                    f"{where}.sca_info.dependency_match")
    found = as_dict(match.get("found_dependency"), f"{where}.sca_info.dependency_match.found_dependency")
    name = text(found.get("package"))
    fixes = [x.get(name) for x in _listed(metadata.get("sca-fix-versions")) if isinstance(x, dict)]
    return {"name": name, "version": text(found.get("version")), "ecosystem": text(found.get("ecosystem")),
            "fixed_versions": unique(fixes)} if name else {}


def _result(r: dict, version: str, where: str) -> dict:
    check_id = text(r.get("check_id"))
    if not check_id:
        raise ParseError("result has no check_id", where)
    extra = as_dict(r.get("extra"), f"{where}.extra")
    metadata = as_dict(extra.get("metadata"), f"{where}.extra.metadata")
    start = as_dict(r.get("start"), f"{where}.start")
    end = as_dict(r.get("end"), f"{where}.end")
    word = text(extra.get("severity"))
    lines = extra.get("lines") if isinstance(extra.get("lines"), str) else ""
    package = _sca_package(extra, metadata, where)
    confidence = text(metadata.get("confidence")).lower()
    ignored = extra.get("is_ignored") is True
    return {
        "tool": "semgrep",
        "tool_version": version,
        "rule_id": check_id,
        "title": _title(check_id, metadata, text(extra.get("message")) if package else ""),
        "message": text(extra.get("message")),
        "severity": _severity(word),
        "tool_severity": word,
        "category": "sca" if package else "sast",
        "confidence": confidence if confidence in ("high", "medium", "low") else None,
        "cwe": cwe_ids(_listed(metadata.get("cwe"))),
        "cve": split_advisory_ids([metadata.get("sca-vuln-database-identifier")])[0] if package else [],
        "package": package,
        "location": {
            "path": norm_path(r.get("path")),
            "start_line": positive_int(start.get("line")),
            "end_line": positive_int(end.get("line")),
            "start_column": positive_int(start.get("col")),
            "end_column": positive_int(end.get("col")),
            "snippet": "" if lines.strip() == LOGIN_PLACEHOLDER else lines.rstrip(),
        },
        "references": unique([*_listed(metadata.get("references")), metadata.get("source"),
                              metadata.get("source-rule-url")]),
        "fix_hint": text(extra.get("fix")),
        "tags": unique([metadata.get("category"), *_listed(metadata.get("owasp")),
                        *_listed(metadata.get("vulnerability_class"))]),
        "suppressed": ignored,
        "suppression": {"kind": "inSource"} if ignored else {},
    }


def _ecosystem(advisory: dict, name: str) -> str:
    """The namespace the advisory's rule gives the matched package, else the advisory's ecosystem."""
    try:
        rule = orjson.loads(text(advisory.get("ruleText")) or "{}")
    except ValueError:
        rule = None
    depends = rule.get("r2c-internal-project-depends-on") if isinstance(rule, dict) else None
    either = depends.get("depends-on-either") if isinstance(depends, dict) else None
    for dep in either if isinstance(either, list) else []:
        if isinstance(dep, dict) and text(dep.get("package")) == name:
            return text(dep.get("namespace"))
    return text(advisory.get("ecosystem"))


def _vuln(v: dict, where: str) -> dict:
    advisory = as_dict(v.get("advisory"), f"{where}.advisory")
    rule_id = text(advisory.get("ruleId"))
    if not rule_id:
        raise ParseError("vuln has no advisory.ruleId", where)
    refs = as_dict(advisory.get("references"), f"{where}.advisory.references")
    dep = as_dict(v.get("matchedDependency"), f"{where}.matchedDependency")
    safe = as_dict(v.get("closestSafeDependency"), f"{where}.closestSafeDependency")
    loc = as_dict(v.get("dependencyFileLocation"), f"{where}.dependencyFileLocation")
    triage = as_dict(v.get("triage"), f"{where}.triage")
    name = text(dep.get("name"))
    word = text(advisory.get("severity"))
    ignored = text(triage.get("status")).upper() == "IGNORED"
    reason = text(triage.get("dismissReason")).replace("UNKNOWN_REASON", "")
    return {
        "tool": "semgrep",
        "rule_id": rule_id,
        "title": text(v.get("title")) or text(advisory.get("title")) or rule_id,
        "description": text(advisory.get("description")),
        "severity": _severity(word),
        "tool_severity": word,
        "category": "sca",
        "cwe": cwe_ids(as_list(refs.get("cweIds"), f"{where}.advisory.references.cweIds")),
        "cve": split_advisory_ids(as_list(refs.get("cveIds"), f"{where}.advisory.references.cveIds"))[0],
        "package": {
            "name": name, "version": text(dep.get("versionSpecifier")), "ecosystem": _ecosystem(advisory, name),
            "fixed_versions": [text(safe.get("versionSpecifier"))] if text(safe.get("name")) == name else [],
        },
        "location": {"path": norm_path(loc.get("path")), "start_line": positive_int(loc.get("startLine"))},
        "references": unique(as_list(refs.get("urls"), f"{where}.advisory.references.urls")),
        "tags": unique([*as_list(refs.get("owaspIds"), f"{where}.advisory.references.owaspIds"),
                        v.get("exposureType"), v.get("transitivity")]),
        "suppressed": ignored,
        "suppression": {"kind": "external", "status": "accepted", "justification": reason} if ignored else {},
    }


def parse(doc: dict):
    doc = as_dict(doc, "$")
    key = "vulns" if "vulns" in doc and "results" not in doc else "results"
    version = text(doc.get("version"))
    for i, item in enumerate(as_list(doc.get(key), f"$.{key}")):
        where = f"$.{key}[{i}]"
        if not isinstance(item, dict):
            raise ParseError("expected object", where)
        yield _vuln(item, where) if key == "vulns" else _result(item, version, where)


FORMATS = [Format("semgrep-json", "json", "Semgrep",
                  "an object with a `results` array of objects with `check_id` (CLI), or a `vulns` "
                  "array of objects with `advisory` (Supply Chain API)", detect, parse)]
