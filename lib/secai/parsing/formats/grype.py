"""Anchore Grype JSON reports (`grype <image|dir:...|sbom:...> -o json`).

{"matches": [{"vulnerability": {id, dataSource, namespace, severity, urls[], description,
cvss[{version, vector, metrics{baseScore}}], fix{versions[], state}, epss[]}, "relatedVulnerabilities":
[{id, dataSource, description, cvss[], cwes[]}], "matchDetails": [...], "artifact": {name, version,
type, language, locations[{path, layerID}], purl}}], "source": {type, target}, "distro", "descriptor":
{name: "grype", version}}. Identified by `matches` with a Grype descriptor, or matches whose entries
have `vulnerability` and `artifact` (older and trimmed reports have no descriptor).

Mapping, one finding per match: tool grype, tool_version descriptor.version; rule_id vulnerability.id;
title "<id> in <name> <version>" (Grype has no advisory title, and its descriptions are long NVD texts
or absent); description: the vulnerability's, else the first related one's; category container for OS
packages (artifact type apk, deb, rpm, alpm, portage), else sca; package: ecosystem artifact.type
(else language), name, version, fixed_versions fix.versions as listed, purl; cve/aliases: the id and
every related id; cwe: `cwes` of the vulnerability and the related ones; cvss: the vulnerability's
entry of the highest CVSS version (the first of equals), else the same over the related ones;
references: dataSource, urls, then each related dataSource (their urls lists, often dozens of mailing
list posts, are not kept); tags: "fix-state:<state>" (fixed, not-fixed, wont-fix, unknown). Grype
gives no remediation text, so there is no fix_hint. EPSS and matchDetails are not kept.

Severity is vulnerability.severity, kept as tool_severity: Critical→critical, High→high,
Medium→medium, Low→low, Negligible→info, Unknown or none→info.

Location and dedup: the id is the package fingerprint (tool, id, package name and version, path).
An OS package of an image scan has the image as path, its repository as Trivy writes it for OS
packages ("busybox:1.32.1" → "library/busybox"): the files Grype lists for it (dpkg status,
copyright) do not tell installations apart, so one vulnerable package version is one finding per
image, as DefectDojo aggregates matches by vulnerability, name and version. Other packages (language
packages, binaries, and OS packages of directory scans) have the artifact's first location path,
without the leading "/" Grype writes (its paths are relative to the scanned image or directory): two
copies of a library at two places are two findings. In image scans location.resource is the image
reference as given (with its tag), which is not part of the id.
Identical matches (Grype lists a package twice when two matchers find it) are one finding.
"""

from __future__ import annotations

from secai.parsing.finding import (ParseError, as_dict, as_list, cwe_ids, norm_path, severity_from_word,
    split_advisory_ids, text, unique)
from secai.parsing.formats import Format
from secai.parsing.formats.trivy import image_repository

OS_PACKAGE_TYPES = {"apk", "deb", "rpm", "alpm", "portage"}


def detect(doc) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("matches"), list):
        return False
    descriptor = doc.get("descriptor")
    if isinstance(descriptor, dict) and descriptor.get("name") == "grype":
        return True
    first = doc["matches"][0] if doc["matches"] else None
    return isinstance(first, dict) and {"vulnerability", "artifact"} <= first.keys()


def _version_key(entry: dict) -> tuple:
    parts = text(entry.get("version")).split(".")
    return tuple(int(p) if p.isdigit() else 0 for p in parts)


def _cvss(entries: list, where: str) -> dict:
    entries = [as_dict(e, f"{where}[{i}]") for i, e in enumerate(entries)]
    if not entries:
        return {}
    i = max(range(len(entries)), key=lambda i: _version_key(entries[i]))  # the first of equal versions
    best = entries[i]
    score = as_dict(best.get("metrics"), f"{where}[{i}].metrics").get("baseScore")
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 10:
        score = None
    return {"score": score, "vector": text(best.get("vector")), "version": text(best.get("version"))}


def _cwes(vulns: list[tuple[dict, str]]) -> list[str]:
    found = [c.get("cwe") if isinstance(c, dict) else c
             for v, where in vulns for c in as_list(v.get("cwes"), f"{where}.cwes")]
    return cwe_ids(found)


def _image(doc: dict) -> str:
    """The image reference an image scan was asked for (its userInput), else ''."""
    source = as_dict(doc.get("source"), "$.source")
    if text(source.get("type")) != "image":
        return ""
    return text(as_dict(source.get("target"), "$.source.target").get("userInput"))


def _match(m: dict, where: str, image: str) -> dict:
    v = as_dict(m.get("vulnerability"), f"{where}.vulnerability")
    a = as_dict(m.get("artifact"), f"{where}.artifact")
    vid, name, version = text(v.get("id")), text(a.get("name")), text(a.get("version"))
    if not vid:
        raise ParseError("missing id", f"{where}.vulnerability")
    if not name:
        raise ParseError("missing name", f"{where}.artifact")
    rwhere = f"{where}.relatedVulnerabilities"
    related = [(as_dict(r, f"{rwhere}[{j}]"), f"{rwhere}[{j}]")
               for j, r in enumerate(as_list(m.get("relatedVulnerabilities"), rwhere))]
    cves, aliases = split_advisory_ids([vid, *(r.get("id") for r, _ in related)], exclude=vid)
    cvss = _cvss(as_list(v.get("cvss"), f"{where}.vulnerability.cvss"), f"{where}.vulnerability.cvss")
    for r, rw in related:
        cvss = cvss or _cvss(as_list(r.get("cvss"), f"{rw}.cvss"), f"{rw}.cvss")
    fix = as_dict(v.get("fix"), f"{where}.vulnerability.fix")
    kind = text(a.get("type"))
    locations = as_list(a.get("locations"), f"{where}.artifact.locations")
    first = as_dict(locations[0], f"{where}.artifact.locations[0]") if locations else {}
    path = norm_path(first.get("path")).lstrip("/")
    if image and kind in OS_PACKAGE_TYPES:
        path = image_repository(image) or image
    word = text(v.get("severity"))
    descriptions = [text(x.get("description")) for x in (v, *(r for r, _ in related))]
    return {
        "rule_id": vid,
        "title": f"{vid} in {name} {version}".rstrip(),
        "description": next((d for d in descriptions if d), ""),
        "severity": severity_from_word(word) or "info",
        "tool_severity": word,
        "category": "container" if kind in OS_PACKAGE_TYPES else "sca",
        "cwe": _cwes([(v, f"{where}.vulnerability"), *related]),
        "cve": cves,
        "aliases": aliases,
        "cvss": cvss,
        "package": {
            "ecosystem": kind or text(a.get("language")), "name": name, "version": version,
            "fixed_versions": unique(as_list(fix.get("versions"), f"{where}.vulnerability.fix.versions")),
            "purl": text(a.get("purl")),
        },
        "references": unique([v.get("dataSource"), *as_list(v.get("urls"), f"{where}.vulnerability.urls"),
                              *(r.get("dataSource") for r, _ in related)]),
        "tags": [f"fix-state:{state}"] if (state := text(fix.get("state"))) else [],
        "location": {"path": path, "resource": image} if path else None,
    }


def parse(doc: dict):
    doc = as_dict(doc, "$")
    version = text(as_dict(doc.get("descriptor"), "$.descriptor").get("version"))
    image = _image(doc)
    for i, m in enumerate(as_list(doc.get("matches"), "$.matches")):
        yield {"tool": "grype", "tool_version": version, **_match(as_dict(m, f"$.matches[{i}]"), f"$.matches[{i}]", image)}


FORMATS = [Format("grype-json", "json", "Grype",
                  "an object with `matches` and a descriptor named grype, or matches of vulnerability and artifact",
                  detect, parse)]
