"""Snyk Open Source and Snyk Container JSON (`snyk test --json`, `snyk container test --json`).

Shape: a project {ok, vulnerabilities[], dependencyCount, org, policy, packageManager,
displayTargetFile, targetFile, path, projectName, summary, uniqueCount, filtered {ignore[],
patch[]}, remediation, ...}, or an array of projects (--all-projects, several images). Snyk
Container adds platform, docker {baseImage, ...} and `applications`: the language-package projects
found in the image, each shaped like a project. A vulnerability is {id, title, severity,
severityWithCritical, packageName, name, version, from[], upgradePath[], isUpgradable, fixedIn[],
identifiers {CVE, CWE, GHSA, ...}, cvssScore, CVSSv3, description (markdown), references
[{title, url}], packageManager, type ("license" for license issues: license, licenseTemplateUrl)}.

Mapping: tool snyk; category container for a project of OS packages (packageManager deb, apk, rpm
or linux), else sca (applications in an image included); rule_id id (SNYK-JS-..., snyk:lic:...);
title; description as written (markdown); cwe, cve from identifiers, every other identifier
(GHSA, ALTERNATIVE, WS, NSP numbers as NSP-<n>) an alias; cvss {score cvssScore, vector CVSSv3};
package {ecosystem: the vulnerability's packageManager (npm, debian:11) else the project's,
name packageName (the source package for OS packages), version, fixed_versions fixedIn, license};
references: references[].url and licenseTemplateUrl; fix_hint "Upgrade <from[i]> to
<upgradePath[i]>" at the first step of the path that changes when isUpgradable, else the
description's "## Remediation" section. location.path: displayTargetFile (else targetFile; a path
in an image loses its leading slash), else for a container the repository of the image (`path`,
the image as given, without registry host and tag, as Trivy names it: ids stay stable when only
the tag changes); location.resource: the image as given, for every finding of a container
report. Entries of filtered.ignore (ignored in the .snyk policy or in Snyk) are kept as
suppressed findings with the ignore reason; filtered.patch entries (patched) are left out. Snyk
Code writes SARIF (driver SnykCode), which the sarif parser reads as tool snyk.

Severity: severityWithCritical (older reports cap `severity` at high), else severity: critical,
high, medium, low map to themselves and are kept as tool_severity; a missing or unknown word
falls back to cvssScore (≥9 critical, ≥7 high, ≥4 medium, >0 low), else info.

Dedup: Snyk lists a vulnerability once per dependency path (`from`), and container reports once
per binary package of a source package. The shared package fingerprint (tool, id, package name,
version, location path) makes one finding of one vulnerability of one package version in one
manifest or image; the other paths are counted in `occurrences`, the first path's fix_hint kept.
"""

from __future__ import annotations

import re

from secai.parsing.finding import (ParseError, as_dict, as_list, cwe_ids, norm_path, severity_from_score,
    severity_from_word, split_advisory_ids, text, unique)
from secai.parsing.formats import Format
from secai.parsing.formats.trivy import image_repository

OS_MANAGERS = {"deb", "apk", "rpm", "linux"}
_REMEDIATION = re.compile(r"^## Remediation\s*\n(.*?)(?=^#|\Z)", re.MULTILINE | re.DOTALL)
_CVSS_VERSION = re.compile(r"CVSS:(\d+\.\d+)/")


def _project(doc) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("vulnerabilities"), list) and "ok" in doc
            and ("packageManager" in doc or "dependencyCount" in doc))


def detect(doc) -> bool:
    if isinstance(doc, list):
        return bool(doc) and all(_project(p) for p in doc)
    return _project(doc)


def _severity(v: dict) -> dict:
    word = text(v.get("severityWithCritical")) or text(v.get("severity"))
    severity = severity_from_word(word) or severity_from_score(v.get("cvssScore")) or "info"
    return {"severity": severity, "tool_severity": word}


def _identifiers(v: dict, rid: str, where: str) -> dict:
    ids = as_dict(v.get("identifiers"), f"{where}.identifiers")
    cwes = cwe_ids(as_list(ids.get("CWE"), f"{where}.identifiers.CWE"))
    others = [x if isinstance(x, str) else f"{key}-{text(x)}"
              for key, values in ids.items() if key != "CWE"
              for x in as_list(values, f"{where}.identifiers.{key}") if text(x)]
    cves, aliases = split_advisory_ids(others, exclude=rid)
    return {"cwe": cwes, "cve": cves, "aliases": aliases}


def _cvss(v: dict) -> dict:
    score, vector = v.get("cvssScore"), text(v.get("CVSSv3"))
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 10:
        score = None
    found = _CVSS_VERSION.match(vector)
    return {"score": score, "vector": vector, "version": found.group(1) if found else None}


def _fix_hint(v: dict, where: str) -> str:
    paths, upgrades = as_list(v.get("from"), f"{where}.from"), as_list(v.get("upgradePath"), f"{where}.upgradePath")
    if v.get("isUpgradable") is True:
        for step, target in zip(paths, upgrades):
            if isinstance(target, str) and target.strip() and target != step:
                return f"Upgrade {text(step)} to {target.strip()}"
    found = _REMEDIATION.search(text(v.get("description")))
    return found.group(1).strip() if found else ""


def _finding(v: dict, where: str, place: dict) -> dict:
    rid = text(v.get("id"))
    if not rid:
        raise ParseError("missing id", where)
    name = text(v.get("packageName")) or text(v.get("name"))
    refs = [r.get("url") if isinstance(r, dict) else r for r in as_list(v.get("references"), f"{where}.references")]
    return {
        "tool": "snyk", "rule_id": rid, "title": text(v.get("title")) or rid,
        "description": text(v.get("description")), **_severity(v), "category": place["category"],
        **_identifiers(v, rid, where), "cvss": _cvss(v),
        "package": {
            "ecosystem": text(v.get("packageManager")) or place["ecosystem"], "name": name,
            "version": text(v.get("version")), "license": text(v.get("license")),
            "fixed_versions": unique(as_list(v.get("fixedIn"), f"{where}.fixedIn")),
        } if name else None,
        "references": unique([*refs, v.get("licenseTemplateUrl")]),
        "fix_hint": _fix_hint(v, where),
        "location": {"path": place["path"], "resource": place["image"]} if place["path"] else None,
    }


def _suppression(v: dict, where: str) -> dict:
    ignored = as_list(as_dict(v.get("filtered"), f"{where}.filtered").get("ignored"), f"{where}.filtered.ignored")
    reason = text(as_dict(ignored[0], f"{where}.filtered.ignored[0]").get("reason")) if ignored else ""
    return {"suppressed": True, "suppression": {"kind": "external", "status": "accepted", "justification": reason}}


def _findings(project: dict, where: str, image: str = ""):
    manager = text(project.get("packageManager"))
    image = image or (text(project.get("path")) if manager in OS_MANAGERS or "docker" in project else "")
    target = norm_path(project.get("displayTargetFile")) or norm_path(project.get("targetFile"))
    place = {"category": "container" if manager in OS_MANAGERS else "sca", "ecosystem": manager, "image": image,
             "path": (target.lstrip("/") if image else target) or image_repository(image) or image}
    for i, raw in enumerate(as_list(project.get("vulnerabilities"), f"{where}.vulnerabilities")):
        yield _finding(as_dict(raw, f"{where}.vulnerabilities[{i}]"), f"{where}.vulnerabilities[{i}]", place)
    ignored_at = f"{where}.filtered.ignore"
    for i, raw in enumerate(as_list(as_dict(project.get("filtered"), f"{where}.filtered").get("ignore"), ignored_at)):
        v = as_dict(raw, f"{ignored_at}[{i}]")
        yield {**_finding(v, f"{ignored_at}[{i}]", place), **_suppression(v, f"{ignored_at}[{i}]")}
    for i, app in enumerate(as_list(project.get("applications"), f"{where}.applications")):
        yield from _findings(as_dict(app, f"{where}.applications[{i}]"), f"{where}.applications[{i}]", image)


def parse(doc):
    if isinstance(doc, list):
        for i, project in enumerate(doc):
            yield from _findings(as_dict(project, f"$[{i}]"), f"$[{i}]")
    else:
        yield from _findings(as_dict(doc, "$"), "$")


FORMATS = [Format("snyk-json", "json", "Snyk Open Source / Snyk Container",
                  "an object (or an array of them) with a `vulnerabilities` array, `ok`, and `packageManager` "
                  "or `dependencyCount`", detect, parse)]
