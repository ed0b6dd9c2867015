"""npm audit JSON reports: npm 6 (`npm-audit-json`) and npm 7 and later (`npm-audit-v7-json`).

- npm 6: {actions, advisories: {<id>: {id, github_advisory_id, title, module_name, severity, cwe
  ("CWE-79", a list, a JSON-encoded list or null), cves, vulnerable_versions, patched_versions,
  overview, recommendation, references (markdown text), url, cvss{score, vectorString},
  findings: [{version, paths}]}}, muted, metadata}.
- npm 7+: {auditReportVersion: 2, vulnerabilities: {<package>: {name, severity, isDirect, via:
  [advisory {source, name, dependency, title, url, severity, cwe, cvss{score, vectorString},
  range} or the name of a vulnerable dependency], effects, range, nodes, fixAvailable}}, metadata}.
- A failed audit, {"error": {"code", "summary", "detail"}} (ENOAUDIT, ENOLOCK, ...), is no report:
  it raises a ParseError naming the npm error code and summary, so secai-parse exits 1.

Mapping (tool "npm-audit", category sca, package ecosystem npm; npm audit names no file, so there
is no location):
- rule_id: the GitHub advisory id (github_advisory_id, or the GHSA-... of the advisory url), else
  npm's advisory number (npm 6 id, npm 7+ `source`); cve/aliases from it and the cves.
- npm 6: one finding per advisory per installed version (findings[].version): an advisory on
  ansi-regex 3.0.0 and 4.1.0 is two findings, as the upgrades differ. title, description
  (overview), fix_hint (recommendation), fixed_versions [patched_versions] unless "<0.0.0" (npm's
  "no fix"), references: url and the URLs in the references text.
- npm 7+: one finding per advisory object in `via`, on the package of its entry (version unknown:
  npm 7+ reports ranges and node paths only). An entry whose `via` names only other packages is
  the transitive effect of a vulnerable dependency, which has its own finding: no finding.
  fix_hint from fixAvailable: true "Run `npm audit fix`.", {name, version, isSemVerMajor}
  "Upgrade <name> to <version>" (with `npm audit fix --force` when it is a semver-major change).
- severity (the advisory's own): critical critical, high high, moderate medium, low low, info
  info; else the CVSS score bands; else medium. tool_severity is npm's word. cwe from cwe;
  cvss {score, vector, version} when npm gives a score or vector.
Dedup: finding.finalize's id (tool, rule, package name and version): one advisory on one
installed version of a package (npm 7+: of a package) is one finding.
"""

from __future__ import annotations

import re

from secai.parsing.finding import (ParseError, as_dict, as_list, cwe_ids, severity_from_score,
    severity_from_word, split_advisory_ids, text, unique)
from secai.parsing.formats import Format

_GHSA = re.compile(r"GHSA(?:-[0-9a-z]{4}){3}")
_URL = re.compile(r"https?://[^\s<>()\[\]\"']+")
_NO_FIX = "<0.0.0"  # npm's patched_versions when no version fixes the advisory


def _failed(doc) -> bool:
    return isinstance(doc, dict) and set(doc) == {"error"} and isinstance(doc["error"], dict) \
        and "code" in doc["error"]


def _raise_failure(doc: dict):
    if _failed(doc):
        error = doc["error"]
        summary = " ".join(text(error.get("summary")).split())
        raise ParseError(f"npm audit failed ({text(error.get('code'))}): {summary or 'no summary'}", "$.error")


def _advisory(adv: dict, where: str, rule_id: str, package: dict) -> dict:
    """The fields npm 6 advisories and npm 7+ via entries share."""
    word = text(adv.get("severity"))
    cvss = as_dict(adv.get("cvss"), f"{where}.cvss")
    score, vector = cvss.get("score"), text(cvss.get("vectorString"))
    # npm writes {"score": 0, "vectorString": null} for an advisory without CVSS
    score = float(score) if severity_from_score(score) and not isinstance(score, bool) and (score or vector) else None
    cwe = adv.get("cwe")
    cves, aliases = split_advisory_ids([rule_id, *as_list(adv.get("cves"), f"{where}.cves")], exclude=rule_id)
    return {
        "tool": "npm-audit", "category": "sca", "rule_id": rule_id,
        "title": text(adv.get("title")) or f"{rule_id} in {package['name']}",
        "severity": severity_from_word(word) or severity_from_score(score) or "medium", "tool_severity": word,
        "cwe": cwe_ids(cwe if isinstance(cwe, list) else [cwe]), "cve": cves, "aliases": aliases,
        "cvss": {"score": score, "vector": vector,
                 "version": vector[5:].split("/")[0] if vector.startswith("CVSS:") else ""},
        "package": {"ecosystem": "npm", **package},
    }


def _rule_id(adv: dict, number) -> str:
    found = _GHSA.search(text(adv.get("github_advisory_id")) or text(adv.get("url")))
    return found.group(0) if found else text(number)


# ---------------------------------------------------------------- npm 6

def detect(doc) -> bool:
    return _failed(doc) or (isinstance(doc, dict) and isinstance(doc.get("advisories"), dict)
                            and ("actions" in doc or "muted" in doc))


def parse(doc: dict):
    _raise_failure(doc)
    for key, raw in as_dict(doc.get("advisories"), "$.advisories").items():
        where = f"$.advisories.{key}"
        adv = as_dict(raw, where)
        rule_id, name = _rule_id(adv, text(adv.get("id")) or key), text(adv.get("module_name"))
        if not (rule_id and name):
            raise ParseError("advisory has no id or no module_name", where)
        findings = as_list(adv.get("findings"), f"{where}.findings")
        versions = unique(as_dict(f, f"{where}.findings[{i}]").get("version") for i, f in enumerate(findings))
        patched = text(adv.get("patched_versions"))
        urls = [u.rstrip(".,;") for u in _URL.findall(text(adv.get("references")))]
        for version in versions or [""]:
            package = {"name": name, "version": version, "fixed_versions": [patched] if patched != _NO_FIX else []}
            yield {
                **_advisory(adv, where, rule_id, package),
                "description": text(adv.get("overview")), "fix_hint": text(adv.get("recommendation")),
                "references": unique([adv.get("url"), *urls]),
            }


# ---------------------------------------------------------------- npm 7+

def detect_v7(doc) -> bool:
    return isinstance(doc, dict) and type(doc.get("auditReportVersion")) is int \
        and isinstance(doc.get("vulnerabilities"), dict)


def _fix_hint(fix) -> str:
    if fix is True:
        return "Run `npm audit fix`."
    if isinstance(fix, dict) and text(fix.get("name")):
        major = " (a semver-major change: `npm audit fix --force`)" if fix.get("isSemVerMajor") is True else ""
        return f"Upgrade {text(fix.get('name'))} to {text(fix.get('version'))}{major}."
    return ""


def parse_v7(doc: dict):
    _raise_failure(doc)
    for key, raw in as_dict(doc.get("vulnerabilities"), "$.vulnerabilities").items():
        where = f"$.vulnerabilities.{key}"
        entry = as_dict(raw, where)
        name = text(entry.get("name")) or key
        for i, via in enumerate(as_list(entry.get("via"), f"{where}.via")):
            if isinstance(via, str):  # a vulnerable dependency: its own entry has the advisory
                continue
            vwhere = f"{where}.via[{i}]"
            via = as_dict(via, vwhere)
            rule_id = _rule_id(via, via.get("source"))
            if not rule_id:
                raise ParseError("advisory has neither a GHSA url nor a source", vwhere)
            yield {
                **_advisory(via, vwhere, rule_id, {"name": name}),
                "references": unique([via.get("url")]), "fix_hint": _fix_hint(entry.get("fixAvailable")),
            }


FORMATS = [
    Format("npm-audit-json", "json", "npm audit",
           'npm 6 report: object with "advisories" and "actions"/"muted"; or npm\'s {"error": {...}} of a failed audit',
           detect, parse),
    Format("npm-audit-v7-json", "json", "npm audit",
           'npm 7+ report: object with "auditReportVersion" and a "vulnerabilities" object', detect_v7, parse_v7),
]
