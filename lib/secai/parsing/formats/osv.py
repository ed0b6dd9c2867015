"""OSV-Scanner JSON (`osv-scanner --format json`, 1.x and 2.x).

{"results": [{"source": {"path", "type"}, "packages": [{"package": {"name", "version", "ecosystem"},
"vulnerabilities": [OSV records: id, aliases, summary, details, severity[{type, score}],
affected[{package, ranges[{type, events}], database_specific}], database_specific, references],
"groups": [{"ids", "aliases", "max_severity"}]}]}], "experimental_config"}; a clean scan has
"results": []. License data (--experimental-licenses) is not read.

- One finding per vulnerability per package per result, as listed: the same vulnerability under
  two ids (GHSA-... and PYSEC-... of one group) stays two findings. The id is the package
  fingerprint (tool, OSV id, package name and version, source path), so nothing in one report
  merges. A git source (a commit, no package name) has no `package`; its path identifies it.
- rule_id: the OSV id; title: summary, else the id; description: details; cve/aliases: the id and
  its aliases; cwe: database_specific.cwe_ids and the matching affected entries' cwes; references:
  every url; location.path: the source (lockfile, manifest, directory) as OSV-Scanner wrote it.
- package: the scanned ecosystem, name, version; fixed_versions: the `fixed` events of the version
  ranges of every affected entry naming the package (ecosystem and name compared case-insensitively,
  `-` `_` `.` alike), in order; purl: the package's, else that affected entry's.
- severity: the first of these that gives one, which is also tool_severity:
  1. database_specific.severity (GitHub: LOW, MODERATE = medium, HIGH, CRITICAL);
  2. the group's max_severity, the CVSS score OSV-Scanner 1.7+ computes per group;
  3. the record's severity[] scores: a number, a word, or a CVSS 3.x vector scored here (2.0 and
     4.0 vectors are not scored);
  4. the same from the other records of its group (the same vulnerability under another id);
  then MAL-... (a malicious package) is critical, and anything else medium without tool_severity:
  a known vulnerability of the installed version is not informational.
- cvss: the record's CVSS_V3 entry, else its first CVSS entry; a 3.x vector's base score is computed.
"""

from __future__ import annotations

import re

from secai.parsing.finding import (ParseError, as_dict, as_list, cwe_ids, norm_path, severity_from_score,
    severity_from_word, split_advisory_ids, text, unique)
from secai.parsing.formats import Format

_AV = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_AC = {"L": 0.77, "H": 0.44}
_UI = {"N": 0.85, "R": 0.62}
_CIA = {"H": 0.56, "L": 0.22, "N": 0.0}
_SEPARATORS = re.compile(r"[-_.]+")


def cvss3_score(vector) -> float | None:
    """Base score of a CVSS 3.0/3.1 vector (FIRST CVSS v3.1 specification, section 7.1), else None."""
    metrics = dict(part.split(":", 1) for part in text(vector).split("/") if ":" in part)
    if not metrics.get("CVSS", "").startswith("3."):
        return None
    try:
        changed = {"U": False, "C": True}[metrics["S"]]
        pr = {"N": 0.85, "L": 0.68 if changed else 0.62, "H": 0.5 if changed else 0.27}[metrics["PR"]]
        iss = 1 - (1 - _CIA[metrics["C"]]) * (1 - _CIA[metrics["I"]]) * (1 - _CIA[metrics["A"]])
        exploitability = 8.22 * _AV[metrics["AV"]] * _AC[metrics["AC"]] * pr * _UI[metrics["UI"]]
    except KeyError:
        return None
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    if impact <= 0:
        return 0.0
    raw = min((1.08 if changed else 1.0) * (impact + exploitability), 10.0)
    scaled = round(raw * 100000)  # the specification's Roundup, free of float artefacts
    return scaled / 100000 if scaled % 10000 == 0 else (scaled // 10000 + 1) / 10


def detect(doc) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        return False
    if not doc["results"]:
        return "experimental_config" in doc
    first = doc["results"][0]
    return isinstance(first, dict) and "packages" in first and "source" in first


def _level(value) -> str | None:
    """Severity of a word, a 0-10 score or a CVSS 3.x vector."""
    return severity_from_word(value) or severity_from_score(value) or severity_from_score(cvss3_score(value))


def _scores(vuln: dict, where: str) -> list:
    """A record's own severity values: its advisory's word, then its severity[] scores."""
    own = as_dict(vuln.get("database_specific"), f"{where}.database_specific").get("severity")
    entries = as_list(vuln.get("severity"), f"{where}.severity")
    return [own, *(as_dict(s, f"{where}.severity[{i}]").get("score") for i, s in enumerate(entries))]


def _severity(vid: str, own: list, group: dict, siblings: list) -> tuple[str, str]:
    for value in [own[0], group.get("max_severity"), *own[1:], *siblings]:
        level = _level(value)
        if level:
            return level, text(value)
    return ("critical" if vid.upper().startswith("MAL-") else "medium"), ""


def _cvss(vuln: dict, where: str) -> dict | None:
    entries = [as_dict(s, f"{where}.severity") for s in as_list(vuln.get("severity"), f"{where}.severity")]
    entries = [e for e in entries if text(e.get("type")).upper().startswith("CVSS")]
    if not entries:
        return None
    entry = next((e for e in entries if text(e.get("type")).upper() == "CVSS_V3"), entries[0])
    vector = text(entry.get("score"))
    if severity_from_score(vector):
        return {"score": float(vector)}
    version = vector[5:].split("/")[0] if vector.startswith("CVSS:") else "2.0" if entry.get("type") == "CVSS_V2" else ""
    return {"vector": vector, "version": version, "score": cvss3_score(vector)}


def _key(value) -> str:
    return _SEPARATORS.sub("-", text(value).casefold())


def _affected(vuln: dict, pkg: dict, where: str) -> list[dict]:
    """The affected entries of a record that name the scanned package."""
    name, ecosystem = _key(pkg.get("name")), _key(text(pkg.get("ecosystem")).split(":")[0])
    out = []
    for i, entry in enumerate(as_list(vuln.get("affected"), f"{where}.affected")):
        apkg = as_dict(as_dict(entry, f"{where}.affected[{i}]").get("package"), f"{where}.affected[{i}].package")
        eco = _key(text(apkg.get("ecosystem")).split(":")[0])
        if name and _key(apkg.get("name")) == name and (not ecosystem or not eco or eco == ecosystem):
            out.append(entry)
    return out


def _fixed(affected: list[dict], where: str) -> list[str]:
    """`fixed` events of version ranges (GIT ranges fix commits, not versions)."""
    ranges = [as_dict(r, f"{where}.affected.ranges") for a in affected for r in as_list(a.get("ranges"), f"{where}.affected.ranges")]
    return unique(as_dict(e, f"{where}.affected.ranges.events").get("fixed") for r in ranges
                  if text(r.get("type")).upper() != "GIT" for e in as_list(r.get("events"), f"{where}.affected.ranges.events"))


def _finding(vuln: dict, pkg: dict, path: str, groups: list[dict], records: list[tuple], where: str) -> dict:
    vid = text(vuln.get("id"))
    if not vid:
        raise ParseError("vulnerability has no id", where)
    group = next((g for g in groups if vid in map(text, as_list(g.get("ids"), f"{where}.groups.ids"))), {})
    ids = set(map(text, as_list(group.get("ids"), f"{where}.groups.ids"))) - {vid}
    siblings = [value for w, r in records if text(r.get("id")) in ids for value in _scores(r, w)]
    severity, tool_severity = _severity(vid, _scores(vuln, where), group, siblings)
    affected = _affected(vuln, pkg, where)
    apkgs = [as_dict(a.get("package"), f"{where}.affected.package") for a in affected]
    adbs = [as_dict(a.get("database_specific"), f"{where}.affected.database_specific") for a in affected]
    cwes = [as_dict(c, f"{where}.affected.database_specific.cwes").get("cweId")
            for d in adbs for c in as_list(d.get("cwes"), f"{where}.affected.database_specific.cwes")]
    db = as_dict(vuln.get("database_specific"), f"{where}.database_specific")
    cves, aliases = split_advisory_ids([vid, *as_list(vuln.get("aliases"), f"{where}.aliases")], exclude=vid)
    name = text(pkg.get("name"))
    return {
        "tool": "osv-scanner", "rule_id": vid, "title": text(vuln.get("summary")) or vid,
        "description": text(vuln.get("details")), "category": "sca",
        "severity": severity, "tool_severity": tool_severity, "cvss": _cvss(vuln, where),
        "cwe": cwe_ids([*as_list(db.get("cwe_ids"), f"{where}.database_specific.cwe_ids"), *cwes]),
        "cve": cves, "aliases": aliases, "location": {"path": path},
        "package": {
            "ecosystem": text(pkg.get("ecosystem")), "name": name, "version": text(pkg.get("version")),
            "fixed_versions": _fixed(affected, where),
            "purl": text(pkg.get("purl")) or next((text(p["purl"]) for p in apkgs if text(p.get("purl"))), ""),
        } if name else None,
        "references": unique(as_dict(r, f"{where}.references").get("url")
                             for r in as_list(vuln.get("references"), f"{where}.references")),
    }


def parse(doc: dict):
    for ri, result in enumerate(as_list(doc.get("results"), "$.results")):
        rwhere = f"$.results[{ri}]"
        result = as_dict(result, rwhere)
        path = norm_path(as_dict(result.get("source"), f"{rwhere}.source").get("path"))
        for pi, entry in enumerate(as_list(result.get("packages"), f"{rwhere}.packages")):
            pwhere = f"{rwhere}.packages[{pi}]"
            entry = as_dict(entry, pwhere)
            pkg = as_dict(entry.get("package"), f"{pwhere}.package")
            groups = [as_dict(g, f"{pwhere}.groups[{i}]") for i, g in enumerate(as_list(entry.get("groups"), f"{pwhere}.groups"))]
            records = [(f"{pwhere}.vulnerabilities[{i}]", as_dict(v, f"{pwhere}.vulnerabilities[{i}]"))
                       for i, v in enumerate(as_list(entry.get("vulnerabilities"), f"{pwhere}.vulnerabilities"))]
            for where, vuln in records:
                yield _finding(vuln, pkg, path, groups, records, where)


FORMATS = [Format("osv-scanner-json", "json", "OSV-Scanner",
                  "an object whose `results` entries have `source` and `packages`", detect, parse)]
