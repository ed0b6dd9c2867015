"""Checkov JSON (`checkov -o json`).

Shape: one report object `{check_type, results: {passed_checks, failed_checks, skipped_checks,
parsing_errors}, summary: {..., checkov_version}}`, or a list of them (one per check type:
terraform, kubernetes, dockerfile, sca_package, ...). A scan with nothing to check is a bare summary
(`{passed, failed, skipped, ..., checkov_version}`): no findings.

- One finding per `failed_checks` entry. `skipped_checks` entries (`#checkov:skip=ID:comment`,
  severity or package filters) are kept with `suppressed: true` and suppression `{kind, justification}`
  exactly as Checkov's own SARIF writes them: kind `inSource` (`external` for SCA results),
  justification the `suppress_comment` or "No comment provided". Passed checks are ignored.
  (`--quiet` leaves skipped checks out of the JSON, not out of the SARIF.)
- rule_id `check_id`; title `short_description`, else `check_name`; description `description`;
  message the `details` lines; references `guideline`; fix_hint `fixed_definition` (the fixed
  resource, when Checkov computed one); tags the check type, `bc_category` and benchmark ids.
- severity: `severity` (CRITICAL/HIGH/MEDIUM/LOW) as a word; Checkov leaves it null unless the
  Prisma Cloud/Bridgecrew metadata was downloaded, and then the finding is `medium` with no
  tool_severity (Checkov's own SARIF says `error` for these).
- location: `repo_file_path` (else `file_path`) without its leading "/", the path Checkov's SARIF
  writes as artifact URI, so one scan in both formats gives the same ids; lines from
  `file_line_range`, where Checkov's whole-file line 0 becomes 1 as in its SARIF; resource
  `resource`; snippet the `code_block` lines joined.
- category `iac`; `secrets` results are `secret` (Checkov masks the secret in `code_block` itself;
  its SARIF cannot tell them apart and says iac); `sca_package` results are `sca` and `sca_image`
  results `container`, with the package from `vulnerability_details`: rule_id is the advisory id
  (CVE-..., GHSA-...) or, for license results, the license, as Checkov's SARIF rule ids begin;
  fixed versions, CVSS and link.
No deduplication here: identical results collapse centrally by fingerprint.
"""

from __future__ import annotations

from secai.parsing.finding import (ParseError, as_dict, as_list, norm_path, positive_int, severity_from_word,
    split_advisory_ids, text, unique)
from secai.parsing.formats import Format

CATEGORY = {"secrets": "secret", "sca_package": "sca", "sca_image": "container"}


def _report(doc) -> bool:
    if not isinstance(doc, dict):
        return False
    if "check_type" in doc:
        return isinstance(doc.get("results"), dict) or isinstance(doc.get("summary"), dict)
    return {"passed", "failed", "checkov_version"} <= doc.keys()


def detect(doc) -> bool:
    docs = doc if isinstance(doc, list) else [doc]
    return bool(docs) and all(_report(d) for d in docs)


def _line(value) -> int | None:
    """A file_line_range bound: Checkov's 0 (a check of the whole file) is line 1, as in its SARIF."""
    return 1 if value == 0 and not isinstance(value, bool) else positive_int(value)


def _snippet(code_block, where: str) -> str:
    lines = [pair[1] for pair in as_list(code_block, where)
             if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)]
    return "".join(lines).rstrip()


def _tags(check: dict, check_type: str, where: str) -> list[str]:
    marks = []
    for name, ids in as_dict(check.get("benchmarks"), f"{where}.benchmarks").items():
        for mark in ids if isinstance(ids, list) else []:
            mark = text(mark.get("name")) if isinstance(mark, dict) else text(mark)
            marks.append(f"{name} {mark}".strip())
    return unique([check_type, check.get("bc_category"), *marks])


def _sca(f: dict, details: dict, where: str) -> None:
    """Package, advisory and fix of an sca_package/sca_image result (vulnerability or license)."""
    license_name = text(details.get("license"))
    advisory = text(details.get("id"))
    cvss = details.get("cvss")
    fixed = as_list(details.get("fixed_versions"), f"{where}.fixed_versions")
    f["rule_id"] = license_name or advisory or f["rule_id"]
    f["cve"] = split_advisory_ids([advisory])[0]
    f["package"] = {"name": text(details.get("package_name")), "version": text(details.get("package_version")),
                    "ecosystem": text(details.get("package_type")), "fixed_versions": unique(fixed),
                    "license": license_name}
    if isinstance(cvss, (int, float)) and not isinstance(cvss, bool) and 0 <= cvss <= 10:
        f["cvss"] = {"score": cvss, "vector": text(details.get("vector"))}
    f["references"] = unique([*f["references"], details.get("link")])


def _finding(check: dict, check_type: str, version: str, skipped: bool, where: str) -> dict:
    rule_id = text(check.get("check_id"))
    if not rule_id:
        raise ParseError("check has no check_id", where)
    result = as_dict(check.get("check_result"), f"{where}.check_result")
    details = as_dict(check.get("vulnerability_details"), f"{where}.vulnerability_details")
    word = text(check.get("severity"))
    severity = severity_from_word(word)
    lines = as_list(check.get("file_line_range"), f"{where}.file_line_range")
    start = _line(lines[0]) if lines else None
    path = text(check.get("repo_file_path")) or text(check.get("file_path"))
    fixed = check.get("fixed_definition")
    f = {
        "tool": "checkov",
        "tool_version": version,
        "rule_id": rule_id,
        "title": text(check.get("short_description")) or text(check.get("check_name")) or rule_id,
        "description": text(check.get("description")),
        "message": "\n".join(unique(as_list(check.get("details"), f"{where}.details"))),
        "severity": severity or "medium",
        "tool_severity": word if severity else "",
        "category": CATEGORY.get(check_type, "iac"),
        "location": {
            "path": norm_path(path).lstrip("/"),
            "start_line": start,
            "end_line": (_line(lines[1]) if len(lines) > 1 else None) or start,
            "resource": text(check.get("resource")),
            "snippet": _snippet(check.get("code_block"), f"{where}.code_block"),
        },
        "references": unique([check.get("guideline")]),
        "fix_hint": text(fixed) if isinstance(fixed, str) else "",
        "tags": _tags(check, check_type, where),
    }
    if check_type in ("sca_package", "sca_image") and details.get("package_name"):
        _sca(f, details, f"{where}.vulnerability_details")
    if skipped:
        f["suppressed"] = True
        f["suppression"] = {"kind": "external" if details else "inSource",
                            "justification": text(result.get("suppress_comment")) or "No comment provided"}
    return f


def parse(doc):
    docs = doc if isinstance(doc, list) else [doc]
    for i, report in enumerate(docs):
        where = f"$[{i}]" if isinstance(doc, list) else "$"
        report = as_dict(report, where)
        results = as_dict(report.get("results"), f"{where}.results")
        version = text(as_dict(report.get("summary"), f"{where}.summary").get("checkov_version"))
        check_type = text(report.get("check_type"))
        for key, skipped in (("failed_checks", False), ("skipped_checks", True)):
            for j, check in enumerate(as_list(results.get(key), f"{where}.results.{key}")):
                cwhere = f"{where}.results.{key}[{j}]"
                if not isinstance(check, dict):
                    raise ParseError("expected object", cwhere)
                yield _finding(check, check_type, version, skipped, cwhere)


FORMATS = [Format("checkov-json", "json", "Checkov",
                  "an object (or array of objects) with `check_type` and a `results` object of "
                  "failed/passed/skipped checks, or a bare summary with `checkov_version`", detect, parse)]
