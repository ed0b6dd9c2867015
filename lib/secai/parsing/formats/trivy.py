"""Trivy JSON reports (`trivy image|fs|repo|config|k8s --format json`).

Shapes: SchemaVersion 2 {Trivy: {Version}, ArtifactName, Results: [{Target, Class, Type,
Vulnerabilities, Misconfigurations, Secrets, Licenses}]}; the legacy top-level array of results
[{Target, Type, Vulnerabilities}] (no Class: os-pkgs when Target ends in "(<Type> <version>)");
Kubernetes {ClusterName, Resources | Findings | Vulnerabilities + Misconfigurations: [{Namespace,
Kind, Name, Results}]}, whose resource becomes location.resource "Namespace/Kind/Name".

One finding per entry: vulnerability (container for os-pkgs results, else sca), misconfiguration
with Status FAIL or none (iac; PASS and EXCEPTION are skipped), secret (secret), license (sca).
Severity: CRITICAL→critical, HIGH→high, MEDIUM→medium, LOW→low, UNKNOWN or none→info, the word kept
as tool_severity. CVSS: CVSS[SeveritySource], else nvd, else the first source; V40, else V3, else V2.

Fingerprints use what Trivy's SARIF writer (pkg/report/sarif.go) writes, so one scan read as JSON
and as SARIF gives the same ids:
- vulnerability: VulnerabilityID, PkgName, InstalledVersion, path ToPathUri(PkgPath or Target): for
  os-pkgs the " (distro version)" suffix goes and an image reference becomes its repository path
  ("alpine:3.9 (alpine 3.9.4)" → "library/alpine"); no line;
- misconfiguration: ID (DS002, KSV001, AVD-AWS-0143), path clearURI(Target), StartLine (none when
  0); in Kubernetes reports the path is "Namespace/Kind/Name", as Target there lacks the namespace
  (Trivy writes no SARIF for Kubernetes);
- secret: RuleID, path Target, StartLine; Match and Code are never kept, only secret.sha256 of the
  (masked) Match, which the SARIF reader computes from the same text;
- license: the license name, package PkgName (no version), path Target; a loose-file license
  (no PkgName) has path FilePath and no package.
"""

from __future__ import annotations

import re

import orjson

from secai.parsing.finding import (ParseError, Split, as_dict, as_list, cwe_ids, norm_path, positive_int,
    severity_from_word, split_advisory_ids, text, unique)
from secai.secrets import secret_digest
from secai.parsing.formats import Format

_DISTRO = re.compile(r"(?P<path>.+?)(?:\s*\(.*?\).*?)?\Z")  # Trivy's pathRegex
_REPOSITORY = re.compile(r"[a-z0-9_./-]{2,255}\Z")
_TAG = re.compile(r"[A-Za-z0-9_.-]{1,127}\Z")
_DIGEST = re.compile(r"[sh:0-9a-f]{71}\Z")
_REGISTRY = re.compile(r"(?:[\w.-]*|\[[0-9A-Fa-f:.]+\])(?::\d*)?\Z")
_K8S_KEYS = ("Resources", "Findings", "Vulnerabilities", "Misconfigurations")
_CVSS_VERSION = re.compile(r"CVSS:(\d+\.\d+)/")


# ---------------------------------------------------------------- Trivy's SARIF paths

def _repository(name: str) -> str | None:
    """go-containerregistry NewRepository(name).RepositoryStr(), or None when it is no repository."""
    registry, slash, repo = name.partition("/")
    if not slash or not ("." in registry or ":" in registry):
        registry, repo = "", name
    if not _REGISTRY.match(registry) or not _REPOSITORY.match(repo):
        return None
    if "/" not in repo and registry in ("", "docker.io", "index.docker.io"):
        repo = "library/" + repo
    return repo if _REPOSITORY.match(repo) else None


def _tag_repository(name: str) -> str | None:
    """The repository of name.NewTag(name): an optional ":tag" after the last slash is dropped."""
    base, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        base, tag = name, ""
    return None if tag and not _TAG.match(tag) else _repository(base)


def image_repository(ref: str) -> str | None:
    """Repository path of an image reference as name.ParseReference reads it (registry host, tag
    and digest dropped, "library/" added for Docker Hub single names), or None when `ref` is none.
    Idempotent on its results: image_repository("library/alpine") == "library/alpine"."""
    repo = _tag_repository(ref)
    if repo is None and ref.count("@") == 1:
        base, _, digest = ref.partition("@")
        repo = _tag_repository(base) if _DIGEST.match(digest) else None
    return repo


def clear_uri(uri: str) -> str:
    """Trivy's clearURI: backslashes to slashes, Terraform module sources to plain URLs."""
    uri = uri.replace("\\", "/")
    if uri.startswith("git@github.com:"):
        return uri.replace("git@github.com:", "github.com/").replace(".git", "").replace("?ref=", "/tree/")
    if uri.startswith("git::https:/") and not uri.startswith("git::https://"):
        return uri[len("git::https:/"):].replace(".git", "")
    if uri.startswith("git::ssh://"):
        return (uri.partition("@")[2] if "@" in uri else uri).replace(".git", "")
    if uri.startswith(("git::", "hg::")):
        kind, _, rest = uri.partition("::")
        return rest.replace("." + kind, "")
    return uri.partition("::")[2] if uri.startswith(("s3::", "gcs::")) else uri


def to_path_uri(target: str, result_class: str) -> str:
    """Trivy's ToPathUri: an os-pkgs target "image:tag (distro version)" becomes the image's
    repository path; other targets are kept as they are."""
    if result_class != "os-pkgs":
        return target
    match = _DISTRO.search(target)
    path = match.group("path") if match else target
    return clear_uri(image_repository(path) or path)


# ---------------------------------------------------------------- report shapes

def detect(doc) -> bool:
    if isinstance(doc, list):  # legacy: an array of results
        return bool(doc) and all(isinstance(r, dict) and "Target" in r for r in doc)
    if not isinstance(doc, dict):
        return False
    if "SchemaVersion" in doc and ("Results" in doc or "ArtifactName" in doc):
        return True
    return "ClusterName" in doc and any(k in doc for k in _K8S_KEYS)


def _required(item: dict, key: str, where: str) -> str:
    value = text(item.get(key))
    if not value:
        raise ParseError(f"missing {key}", where)
    return value


def _severity(item: dict) -> dict:
    word = text(item.get("Severity"))
    return {"severity": severity_from_word(word) or "info", "tool_severity": word}


def _cvss(vuln: dict, where: str) -> dict:
    sources = as_dict(vuln.get("CVSS"), f"{where}.CVSS")
    key = next((k for k in (text(vuln.get("SeveritySource")), "nvd") if k in sources), next(iter(sources), ""))
    entry = as_dict(sources.get(key), f"{where}.CVSS.{key}")
    for version, default in (("V40", "4.0"), ("V3", "3.0"), ("V2", "2.0")):
        vector, score = text(entry.get(f"{version}Vector")), entry.get(f"{version}Score")
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 10:
            score = None
        if vector or score:
            found = _CVSS_VERSION.match(vector)
            return {"score": score, "vector": vector, "version": found.group(1) if found else default}
    return {}


def _package(v: dict, where: str, result: dict, pkg: str) -> dict:
    return {
        "ecosystem": result["type"], "name": pkg, "version": text(v.get("InstalledVersion")),
        "fixed_versions": unique(text(v.get("FixedVersion")).split(",")),
        "purl": text(as_dict(v.get("PkgIdentifier"), f"{where}.PkgIdentifier").get("PURL")),
    }


def _vulnerability(v: dict, where: str, result: dict) -> dict:
    vid, pkg = _required(v, "VulnerabilityID", where), text(v.get("PkgName"))
    cves, aliases = split_advisory_ids([vid, *as_list(v.get("VendorIDs"), f"{where}.VendorIDs")], exclude=vid)
    path = to_path_uri(text(v.get("PkgPath")) or result["target"], result["class"])
    return {
        "rule_id": vid,
        "title": text(v.get("Title")) or (f"{vid} in {pkg}" if pkg else vid),
        "description": text(v.get("Description")),
        **_severity(v),
        "category": "container" if result["class"] == "os-pkgs" else "sca",
        "cwe": cwe_ids(as_list(v.get("CweIDs"), f"{where}.CweIDs")),
        "cve": cves,
        "aliases": aliases,
        "cvss": _cvss(v, where),
        "package": _package(v, where, result, pkg) if pkg else None,
        "references": unique([v.get("PrimaryURL"), *as_list(v.get("References"), f"{where}.References")]),
        "location": {"path": norm_path(path), "resource": result["resource"]},
    }


# what the fields of a vulnerability that name its advisory, not its package, are read from: the
# entries of one advisory (one CVE in many packages and targets) share them (finding.Split)
_ADVISORY = ("VulnerabilityID", "Title", "Description", "Severity", "VendorIDs", "CweIDs", "CVSS",
             "SeveritySource", "PrimaryURL", "References")
_OWN = ("package", "location")  # a vulnerability's own fields: the rest are its advisory's
PARTS = 10_000  # advisories remembered per report, at most (then forgotten and begun again)


def _shared_vulnerability(v: dict, where: str, result: dict, version: str, parts: dict) -> dict | Split:
    """A vulnerability as a Split: its advisory's fields, made once per advisory of the report (the
    same raw values of _ADVISORY, as JSON, and the same class), and its package and location. A
    vulnerability without a package or a Title of its own (whose title names the package) is a
    dict, as _vulnerability makes it. The advisory's first entry is read whole by _vulnerability,
    so a malformed entry fails as it always did; the others are the same values, read before."""
    pkg = text(v.get("PkgName"))
    try:
        key = orjson.dumps((result["class"], *map(v.get, _ADVISORY))) if pkg and text(v.get("Title")) else None
    except (TypeError, orjson.JSONEncodeError):
        key = None
    if key is None or key not in parts:
        whole = {"tool": "trivy", "tool_version": version, **_vulnerability(v, where, result)}
        if key is None:
            if not whole["location"]["path"]:  # a result without Target: no location
                del whole["location"]
            return whole
        if len(parts) >= PARTS:
            parts.clear()
        parts[key] = {k: None if k in _OWN else value for k, value in whole.items()}  # same key order
        own = {k: whole[k] for k in _OWN}
    else:
        path = to_path_uri(text(v.get("PkgPath")) or result["target"], result["class"])
        own = {"package": _package(v, where, result, pkg),
               "location": {"path": norm_path(path), "resource": result["resource"]}}
    if not own["location"]["path"]:  # a result without Target: no location
        del own["location"]
    return Split(parts[key], own)


def _misconfiguration(m: dict, where: str, result: dict) -> dict | None:
    if text(m.get("Status")) not in ("", "FAIL"):
        return None
    rid, cause = _required(m, "ID", where), as_dict(m.get("CauseMetadata"), f"{where}.CauseMetadata")
    lines_at = f"{where}.CauseMetadata.Code.Lines"
    code = as_dict(cause.get("Code"), f"{where}.CauseMetadata.Code")
    lines = [as_dict(x, lines_at) for x in as_list(code.get("Lines"), lines_at)]
    snippet = "\n".join(str(x.get("Content") or "") for x in [x for x in lines if x.get("IsCause")] or lines)
    return {
        "rule_id": rid,
        "title": text(m.get("Title")) or rid,
        "description": text(m.get("Description")),
        "message": text(m.get("Message")),
        **_severity(m),
        "category": "iac",
        "references": unique([m.get("PrimaryURL"), *as_list(m.get("References"), f"{where}.References")]),
        "fix_hint": text(m.get("Resolution")),
        "tags": unique([m.get("Type")]),
        "location": {
            "path": result["resource"] or norm_path(clear_uri(result["target"])),
            "start_line": positive_int(cause.get("StartLine")),
            "end_line": positive_int(cause.get("EndLine")),
            "resource": result["resource"] or text(cause.get("Resource")),
            "snippet": snippet.strip("\n"),
        },
    }


def _secret(s: dict, where: str, result: dict) -> dict:
    rid, match = _required(s, "RuleID", where), text(s.get("Match"))
    return {
        "rule_id": rid,
        "title": text(s.get("Title")) or rid,
        **_severity(s),
        "category": "secret",
        "tags": unique([s.get("Category")]),
        "secret": {"sha256": secret_digest(match)} if match else None,
        "location": {
            "path": norm_path(result["target"]),
            "start_line": positive_int(s.get("StartLine")),
            "end_line": positive_int(s.get("EndLine")),
            "resource": result["resource"],
        },
    }


def _license(lic: dict, where: str, result: dict) -> dict:
    name, pkg, file_path = _required(lic, "Name", where), text(lic.get("PkgName")), text(lic.get("FilePath"))
    path = result["target"] if pkg or not file_path else file_path
    return {
        "rule_id": name,
        "title": f"{name} license in {pkg or path}",
        **_severity(lic),
        "category": "sca",
        "tags": unique([lic.get("Category")]),
        "package": {"name": pkg, "license": name} if pkg else None,
        "references": unique([lic.get("Link")]),
        "location": {"path": norm_path(path), "resource": result["resource"]},
    }


_KINDS = (("Vulnerabilities", _vulnerability), ("Misconfigurations", _misconfiguration),
          ("Secrets", _secret), ("Licenses", _license))


def _results(results, where: str, version: str, resource: str = "", parts: dict | None = None):
    parts = {} if parts is None else parts  # advisory -> its shared part (_shared_vulnerability)
    for i, raw in enumerate(as_list(results, where)):
        rwhere = f"{where}[{i}]"
        res = as_dict(raw, rwhere)
        target, rtype = text(res.get("Target")), text(res.get("Type"))
        os_target = bool(rtype) and target.endswith(")") and f"({rtype} " in target  # for legacy, without Class
        cls = text(res.get("Class")) or ("os-pkgs" if os_target else "lang-pkgs")
        result = {"target": target, "class": cls, "type": rtype, "resource": resource}
        vulns = as_list(res.get("Vulnerabilities"), f"{rwhere}.Vulnerabilities")
        for j, item in enumerate(vulns):
            iwhere = f"{rwhere}.Vulnerabilities[{j}]"
            yield _shared_vulnerability(as_dict(item, iwhere), iwhere, result, version, parts)
        for key, read in _KINDS[1:]:
            for j, item in enumerate(as_list(res.get(key), f"{rwhere}.{key}")):
                iwhere = f"{rwhere}.{key}[{j}]"
                finding = read(as_dict(item, iwhere), iwhere, result)
                if finding:
                    if not finding["location"]["path"]:  # a result without Target: no location
                        del finding["location"]
                    yield {"tool": "trivy", "tool_version": version, **finding}


def parse(doc):
    if isinstance(doc, list):
        yield from _results(doc, "$", "")
        return
    version, parts = text(as_dict(doc.get("Trivy"), "$.Trivy").get("Version")), {}
    yield from _results(doc.get("Results"), "$.Results", version, "", parts)
    for key in _K8S_KEYS:
        for i, raw in enumerate(as_list(doc.get(key), f"$.{key}")):
            res = as_dict(raw, f"$.{key}[{i}]")
            resource = "/".join(text(res.get(k)) for k in ("Namespace", "Kind", "Name") if text(res.get(k)))
            yield from _results(res.get("Results"), f"$.{key}[{i}].Results", version, resource, parts)


FORMATS = [Format("trivy-json", "json", "Trivy",
                  "an object with SchemaVersion and Results/ArtifactName, a Kubernetes report with ClusterName, "
                  "or a legacy array of results with Target", detect, parse, lazy=True)]
