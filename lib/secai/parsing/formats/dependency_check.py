"""OWASP Dependency-Check reports, XML (`dependency-check-xml`) and JSON (`dependency-check-json`).

Both become one dict per dependency (JSON field names) that one function turns into findings, so
the XML and the JSON of a scan give the same records:
- XML: <analysis xmlns=".../dependency-check.X.Y.xsd"> (matched by local name: the namespace
  changes with the schema version), the JSON tree as elements: dependency[@isVirtual] with
  identifiers/package/id, vulnerabilities/{vulnerability, suppressedVulnerability}[@source],
  cvssV2/V3/V4, cwes/cwe, references/reference/url. Before schema 2.0:
  identifier[@type=maven]/name "group:artifact:version", cvssScore and one <cwe>.
- JSON: {reportSchema, scanInfo, projectInfo, dependencies: [{isVirtual, fileName, filePath,
  packages: [{id}], vulnerabilities: [{source, name, severity, cvssv2, cvssv3, cvssv4, cwes,
  description, notes, references: [{url}]}], suppressedVulnerabilities: [...]}]}.

Mapping (tool "dependency-check", category sca): one finding per vulnerability of a dependency
(relatedDependencies, copies found elsewhere, are not multiplied); suppressed ones are kept with
`suppressed: true`, suppression {external, accepted, the notes}. Dedup: finding.finalize's id (tool,
rule, package name and version, location.path): one vulnerability of one package at one path.
- rule_id: the vulnerability name (CVE-..., GHSA-..., an NPM advisory number, an OSS Index title);
  cve/aliases from it; title "<name> in <package> <version>"; cwe from cwes (NVD-CWE-Other and
  NVD-CWE-noinfo carry no number); references: the urls; tags: the source (NVD, OSSINDEX, NPM,
  RETIREJS) and "known-exploited" when the report carries CISA KEV data.
- package: the dependency's first purl: ecosystem the purl type, name "group:artifact" for maven
  and "namespace/name" otherwise (npm scopes, Go modules), version, purl; else name = fileName.
- location.path: filePath is absolute (the scanning machine's): the path below the last directory
  named like projectInfo name or artifactID; else the fileName ("outer.ear: inner.jar" in nested
  archives), for a virtual dependency (filePath "manifest?package") the manifest's file name.
- severity: the severity word, else cvssV4, cvssV3 baseSeverity, cvssV2 severity, else the first
  of their scores (CVSS bands): CRITICAL critical, HIGH high, MEDIUM/MODERATE medium, LOW low,
  INFO and Unknown (unscored 0.0) info; none at all is medium (a known vulnerability is not
  informational); tool_severity: the word or score used. cvss: cvssV4, else cvssV3 (vector built
  from its metrics when it has a version), else cvssV2 or the old cvssScore (version 2.0).
"""

from __future__ import annotations

from urllib.parse import unquote

from secai.parsing.finding import (ParseError, as_dict, as_list, cwe_ids, norm_path, severity_from_score,
    severity_from_word, split_advisory_ids, text, unique)
from secai.parsing.formats import Format

_V3_METRICS = {"AV": "attackVector", "AC": "attackComplexity", "PR": "privilegesRequired", "UI": "userInteraction",
               "S": "scope", "C": "confidentialityImpact", "I": "integrityImpact", "A": "availabilityImpact"}


def _purl(purl: str) -> dict | None:
    """package fields of a purl pkg:type/namespace/name@version?qualifiers#subpath, else None."""
    if not purl.startswith("pkg:"):
        return None
    rest = purl[4:].split("#")[0].split("?")[0]
    path, at, version = rest.rpartition("@")
    if not at or "/" in version:
        path, version = rest, ""
    kind, _, names = path.partition("/")
    name = (":" if kind.lower() == "maven" else "/").join(unquote(p) for p in names.split("/") if p)
    return {"ecosystem": kind.lower(), "name": name, "version": unquote(version), "purl": purl} if name else None


def _score(value) -> float | None:
    return float(text(value)) if severity_from_score(text(value)) else None


def _severity(v: dict) -> tuple[str, str]:
    v2, v3, v4 = v["cvssv2"], v["cvssv3"], v["cvssv4"]
    words = (v.get("severity"), v4.get("baseSeverity"), v3.get("baseSeverity"), v2.get("severity"))
    scores = (v4.get("baseScore"), v3.get("baseScore"), v2.get("score"), v.get("cvssScore"))
    found = [(severity_from_word(w), text(w)) for w in words]
    found += [(severity_from_score(text(s)), text(s)) for s in scores]
    return next((f for f in found if f[0]), ("medium", ""))


def _cvss(v: dict) -> dict | None:
    v2, v3, v4 = v["cvssv2"], v["cvssv3"], v["cvssv4"]
    if v4:
        cvss = {"score": _score(v4.get("baseScore")), "vector": text(v4.get("vectorString")),
                "version": text(v4.get("version")) or "4.0"}
    elif v3:
        version, metrics = text(v3.get("version")), {m: text(v3.get(k))[:1].upper() for m, k in _V3_METRICS.items()}
        vector = "/".join([f"CVSS:{version}", *(f"{m}:{x}" for m, x in metrics.items())])
        cvss = {"score": _score(v3.get("baseScore")), "vector": vector if version and all(metrics.values()) else "",
                "version": version}
    else:  # CVSS v2, or the v2 cvssScore of reports before 2.0
        cvss = {"score": _score(v2.get("score") if v2 else v.get("cvssScore")),
                "version": text(v2.get("version")) or "2.0"}
    return cvss if cvss["score"] is not None or cvss.get("vector") else None


def _location(dep: dict, roots: list[str]) -> str:
    path = norm_path(dep.get("filePath"))
    parts = [p for p in path.split("?")[0].split("/") if p]
    for root in roots:
        if root in parts[:-1]:
            return "/".join(parts[len(parts) - parts[::-1].index(root):])
    manifest = parts[-1] if parts else ""
    virtual = dep.get("isVirtual") in (True, "true") or "?" in path
    return manifest if virtual else text(dep.get("fileName")) or manifest


def _findings(deps: list[dict], roots: list[str], version: str):
    for dep in deps:
        package = next(filter(None, map(_purl, map(text, dep["packages"]))), None) \
            or {"name": text(dep.get("fileName"))}
        label = " ".join(filter(None, (package["name"], package.get("version"))))
        for where, v in dep["vulnerabilities"]:
            name = text(v.get("name"))
            if not name:
                raise ParseError("vulnerability has no name", where)
            severity, tool_severity = _severity(v)
            cves, aliases = split_advisory_ids([name], exclude=name)
            yield {
                "tool": "dependency-check", "tool_version": version, "category": "sca", "rule_id": name,
                "title": f"{name} in {label}" if label else name, "description": text(v.get("description")),
                "severity": severity, "tool_severity": tool_severity, "cvss": _cvss(v),
                "cwe": cwe_ids([*v["cwes"], v.get("cwe")]), "cve": cves, "aliases": aliases,
                "package": package if package["name"] else None, "location": {"path": _location(dep, roots)},
                "references": unique(v["references"]),
                "tags": unique([v.get("source"), "known-exploited" if "knownExploitedVulnerability" in v else ""]),
                "suppressed": v["suppressed"],
                "suppression": {"kind": "external", "status": "accepted", "justification": text(v.get("notes"))}
                if v["suppressed"] else None,
            }


def detect_json(doc) -> bool:
    return isinstance(doc, dict) and "reportSchema" in doc and isinstance(doc.get("dependencies"), list)


def _json_vuln(raw, where: str, suppressed: bool) -> tuple[str, dict]:
    v = dict(as_dict(raw, where), suppressed=suppressed)
    for key in ("cvssv2", "cvssv3", "cvssv4"):
        v[key] = as_dict(v.get(key), f"{where}.{key}")
    v["cwes"] = as_list(v.get("cwes"), f"{where}.cwes")
    refs = enumerate(as_list(v.get("references"), f"{where}.references"))
    v["references"] = [as_dict(r, f"{where}.references[{i}]").get("url") for i, r in refs]
    return where, v


def parse_json(doc: dict):
    deps = []
    for i, raw in enumerate(as_list(doc.get("dependencies"), "$.dependencies")):
        where = f"$.dependencies[{i}]"
        dep = dict(as_dict(raw, where))
        packages = enumerate(as_list(dep.get("packages"), f"{where}.packages"))
        dep["packages"] = [as_dict(p, f"{where}.packages[{j}]").get("id") for j, p in packages]
        dep["vulnerabilities"] = [_json_vuln(v, f"{where}.{key}[{j}]", key != "vulnerabilities")
                                  for key in ("vulnerabilities", "suppressedVulnerabilities")
                                  for j, v in enumerate(as_list(dep.get(key), f"{where}.{key}"))]
        deps.append(dep)
    project = as_dict(doc.get("projectInfo"), "$.projectInfo")
    yield from _findings(deps, unique([project.get("name"), project.get("artifactID")]),
                         text(as_dict(doc.get("scanInfo"), "$.scanInfo").get("engineVersion")))


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def detect_xml(root) -> bool:
    return _local(root.tag) == "analysis" and any(_local(c.tag) in ("dependencies", "scanInfo") for c in root)


def _xml_vuln(element, where: str) -> tuple[str, dict]:
    v: dict = {"source": element.get("source"), "suppressed": _local(element.tag) == "suppressedVulnerability",
               "cvssv2": {}, "cvssv3": {}, "cvssv4": {}, "cwes": [], "references": []}
    for child in element:
        tag = _local(child.tag)
        if tag in ("cvssV2", "cvssV3", "cvssV4"):
            v[tag.lower()] = {_local(c.tag): c.text for c in child}
        elif tag in ("cwes", "references"):
            v[tag] = [c.text if tag == "cwes" else c.findtext("{*}url") for c in child]
        else:
            v.setdefault(tag, child.text)
    return where, v


def _xml_dependency(dep, where: str) -> dict:
    packages = [e.text for e in dep.iterfind("{*}identifiers//{*}package/{*}id")]
    for ident in dep.iterfind("{*}identifiers/{*}identifier[@type='maven']"):  # reports before 2.0
        parts = text(ident.findtext("{*}name")).split(":")
        packages.append(f"pkg:maven/{parts[0]}/{parts[1]}@{parts[2]}" if len(parts) == 3 else "")
    vulns = enumerate(dep.iterfind("{*}vulnerabilities/*"), 1)
    return {"fileName": dep.findtext("{*}fileName"), "filePath": dep.findtext("{*}filePath"),
            "isVirtual": dep.get("isVirtual"), "packages": packages,
            "vulnerabilities": [_xml_vuln(v, f"{where}/vulnerabilities/*[{j}]") for j, v in vulns
                                if _local(v.tag) in ("vulnerability", "suppressedVulnerability")]}


def parse_xml(root):
    deps = [_xml_dependency(d, f"dependencies/dependency[{i}]")
            for i, d in enumerate(root.iterfind("{*}dependencies/{*}dependency"), 1)]
    roots = unique([root.findtext("{*}projectInfo/{*}name"), root.findtext("{*}projectInfo/{*}artifactID")])
    yield from _findings(deps, roots, text(root.findtext("{*}scanInfo/{*}engineVersion")))


FORMATS = [Format("dependency-check-xml", "xml", "OWASP Dependency-Check",
                  "root <analysis> (any dependency-check.X.Y.xsd namespace) with <dependencies>/<scanInfo>",
                  detect_xml, parse_xml),
           Format("dependency-check-json", "json", "OWASP Dependency-Check",
                  'object with "reportSchema" and a "dependencies" array', detect_json, parse_json)]
