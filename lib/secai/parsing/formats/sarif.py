"""SARIF 2.1.0, from any producer.

Meaning follows the OASIS SARIF 2.1.0 specification:
- one finding per result location (a result without locations is one finding without a location);
- results whose `kind` is not `fail` (pass, open, review, informational, notApplicable) are skipped;
- level: the result's `level`, else the rule configuration override of the invocation, else the
  rule's `defaultConfiguration.level`, else `warning` (§3.27.10); severity error→high,
  warning→medium, note→low, none→info; a `security-severity` property (result, then rule) is a
  CVSS-style score and wins: ≥9 critical, ≥7 high, ≥4 medium, >0 low, 0 info; a level that a
  producer writes on every result it has no severity for (Checkov's `error`) rates nothing: the
  finding is medium with no tool_severity, as from that producer's JSON;
- rules are found by `ruleIndex`, by `rule.index`/`rule.toolComponent`, or by `ruleId`
  (hierarchical ids fall back to their first component); message templates use the rule's
  `messageStrings` and the result's `arguments`;
- artifact paths are resolved through `originalUriBaseIds` up to the first absolute base, so paths
  stay relative to the scanned tree and fingerprints do not depend on the runner's checkout path;
- suppressed results are kept with `suppressed: true` when every suppression is accepted (a
  suppression under review or rejected leaves the result active, §3.35.3).

A log secai-sarif wrote (secai is its driver or an extension) keeps each result's `category`
property, and in secai 0.1's one-run logs (driver secai) the `scanner` property is the tool.

Producers whose JSON format secai also reads (Trivy, Checkov, Semgrep, Gitleaks) are normalized
to the same rule id, path, line and package as their JSON parser, so one scan reported in both
formats gives one finding per result, not two. Secret snippets never leave this module: a secret
scanner's snippet is replaced by its SHA-256.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from secai.parsing.finding import (prune, ParseError, Split, as_dict, as_list, cwe_ids, norm_path, positive_int,
    severity_from_score, severity_from_word, split_advisory_ids, text, unique)
from secai.records import schema
from secai.secrets import forms, redact, secret_digest
from secai.parsing.formats import Format
from secai.parsing.formats.bandit import quoted_password

LEVEL_SEVERITY = {"error": "high", "warning": "medium", "note": "low", "none": "info"}
PRECISION = {"very-high": "high", "high": "high", "medium": "medium", "low": "low"}

# driver names -> canonical tool names (anything else is slugified)
TOOL_NAMES = {
    "trivy": "trivy", "checkov": "checkov", "semgrep": "semgrep", "semgrep oss": "semgrep",
    "semgrep pro": "semgrep", "gitleaks": "gitleaks", "codeql": "codeql", "bandit": "bandit",
    "osv-scanner": "osv-scanner", "flawfinder": "flawfinder", "dockle": "dockle", "kics": "kics",
    "tfsec": "tfsec", "defsec": "tfsec", "hadolint": "hadolint", "snyk open source": "snyk",
    "snykcode": "snyk", "snyk code": "snyk", "snyk container": "snyk", "owasp zap": "zap",
    "zap": "zap", "spotbugs": "spotbugs", "nodejsscan": "nodejsscan", "trufflehog": "trufflehog",
}
TOOL_CATEGORY = {
    "checkov": "iac", "kics": "iac", "tfsec": "iac", "hadolint": "iac", "terrascan": "iac",
    "gitleaks": "secret", "trufflehog": "secret", "detect-secrets": "secret",
    "dockle": "container", "zap": "dast", "osv-scanner": "sca", "grype": "sca",
    "dependency-check": "sca",
}
TRIVY_CLASS_CATEGORY = {
    "OsPackageVulnerability": "container", "LanguageSpecificPackageVulnerability": "sca",
    "Misconfiguration": "iac", "Secret": "secret", "License": "sca",
}
# the spec's default level is warning; tools that never set one get their JSON parser's severity
DEFAULT_LEVEL = {"gitleaks": "error"}
# tools that write this level on every failed result that has no severity (Checkov: "error", unless the
# platform's severity was downloaded, which also adds `security-severity`): the level then rates
# nothing, so the finding gets its JSON parser's unrated default, medium, and no tool_severity
UNRATED_LEVEL = {"checkov": "error"}
FINDING_CATEGORIES = frozenset(schema("finding/1")["properties"]["category"]["enum"])
_SLUG = re.compile(r"[^a-z0-9._-]+")
_TRIVY_MSG = re.compile(r"^(Package|Installed Version|Fixed Version): ?(.*)$", re.MULTILINE)


def _trivy_field(name: str, message: str) -> str:
    """The value of a `Name: value` line of a Trivy SARIF message."""
    found = re.search(rf"^ *{name}: ?(.*)$", message, re.MULTILINE)
    return found.group(1).strip() if found else ""
_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def tool_name(driver_name: str) -> str:
    key = driver_name.strip().lower()
    if key in TOOL_NAMES:
        return TOOL_NAMES[key]
    return _SLUG.sub("-", key).strip("-._") or "sarif"


def detect(doc) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        return False
    return text(doc.get("version")).startswith("2.") or "sarif" in text(doc.get("$schema")).lower()


def _msg(value) -> str:
    """Text of a SARIF message or multiformatMessageString (text, else markdown)."""
    if isinstance(value, dict):
        return text(value.get("text")) or text(value.get("markdown"))
    return text(value)


class Run:
    """Lookups of one run: rules, overrides, artifacts and base URIs."""

    def __init__(self, run: dict, where: str):
        tool = as_dict(run.get("tool"), f"{where}.tool")
        driver = as_dict(tool.get("driver"), f"{where}.tool.driver")
        self.where = where
        self.driver_name = text(driver.get("name"))
        self.tool = tool_name(self.driver_name)
        self.version = text(driver.get("semanticVersion")) or text(driver.get("version"))
        self.components = [driver] + [as_dict(e, f"{where}.tool.extensions")
                                      for e in as_list(tool.get("extensions"), f"{where}.tool.extensions")]
        self.rules = [[r if isinstance(r, dict) else {} for r in as_list(c.get("rules"), f"{where}.tool.driver.rules")]
                      for c in self.components]
        self.by_secai = any(text(c.get("name")) == "secai" for c in self.components)  # secai-sarif wrote it
        self.by_id = {}
        for ci, rules in enumerate(self.rules):
            for r in rules:
                rid = text(r.get("id"))
                if rid:
                    self.by_id.setdefault(rid, (ci, r))
        self.overrides = {}
        for inv in as_list(run.get("invocations"), f"{where}.invocations"):
            for ov in as_list(as_dict(inv, f"{where}.invocations").get("ruleConfigurationOverrides"), f"{where}.invocations"):
                ov = as_dict(ov, f"{where}.invocations.ruleConfigurationOverrides")
                desc = as_dict(ov.get("descriptor"), "descriptor")
                level = text(as_dict(ov.get("configuration"), "configuration").get("level"))
                if level:
                    if desc.get("id"):
                        self.overrides[text(desc["id"])] = level
                    elif isinstance(desc.get("index"), int):
                        self.overrides[desc["index"]] = level
        self.paths: dict[tuple, str] = {}
        self.passwords: set[str] = set()  # hardcoded passwords Bandit quotes anywhere in the run
        self.bases = as_dict(run.get("originalUriBaseIds"), f"{where}.originalUriBaseIds")
        self.artifacts = as_list(run.get("artifacts"), f"{where}.artifacts")
        vcp = as_list(run.get("versionControlProvenance"), f"{where}.versionControlProvenance")
        vc = vcp[0] if vcp and isinstance(vcp[0], dict) else {}
        self.source = {"commit": text(vc.get("revisionId")), "branch": text(vc.get("branch"))}

    def rule_of(self, result: dict) -> tuple[str, dict, object]:
        """(rule id, rule descriptor or {}, override key) of a result."""
        rid, index = result.get("ruleId"), result.get("ruleIndex")
        if type(rid) is str and rid and "rule" not in result:  # the common cases: a driver rule by index or id
            if type(index) is int and 0 <= index < len(self.rules[0]):
                rule = self.rules[0][index]
                if rule.get("id", rid) == rid:
                    return rid, rule, (rid if rid in self.overrides else index)
            elif index is None and (hit := self.by_id.get(rid)) is not None:  # its ids are stripped: so is rid
                return rid, hit[1], (rid if rid in self.overrides else -1)
        ref = result.get("rule") if isinstance(result.get("rule"), dict) else {}
        comp = ref.get("toolComponent") if isinstance(ref.get("toolComponent"), dict) else {}
        ci = comp.get("index") if isinstance(comp.get("index"), int) else 0
        index = result.get("ruleIndex")
        if not isinstance(index, int) or index < 0:
            index = ref.get("index") if isinstance(ref.get("index"), int) else -1
        rule = {}
        if 0 <= ci < len(self.rules) and 0 <= index < len(self.rules[ci]):
            rule = self.rules[ci][index]
        rid = text(result.get("ruleId")) or text(ref.get("id")) or text(rule.get("id"))
        if not rule and rid:
            hit = self.by_id.get(rid) or self.by_id.get(rid.split("/")[0])
            if hit:
                rule = hit[1]
        if not rid:  # not valid SARIF, but Gitleaks 7 writes it: the rule only begins the message
            message = _msg(result.get("message"))
            names = [r for rules in self.rules for r in rules if message.startswith(text(r.get("id")) or "\0")]
            if names:
                rule = max(names, key=lambda r: len(text(r.get("id"))))
                rid = text(rule.get("id"))
        return rid, rule, (rid if rid in self.overrides else index)

    def path_of(self, artifact: dict) -> str:
        """Path of an artifactLocation, relative to the first absolute base URI in its chain."""
        key = (artifact.get("uri"), artifact.get("uriBaseId"), artifact.get("index"))
        try:
            return self.paths[key]
        except KeyError:
            path = self.paths[key] = self._resolve(artifact)
            return path
        except TypeError:  # unhashable junk where strings belong
            return self._resolve(artifact)

    def _resolve(self, artifact: dict) -> str:
        uri = text(artifact.get("uri"))
        index = artifact.get("index")
        if not uri and isinstance(index, int) and 0 <= index < len(self.artifacts):
            loc = as_dict(as_dict(self.artifacts[index], "artifacts").get("location"), "artifacts.location")
            uri, artifact = text(loc.get("uri")), {**loc, **{k: v for k, v in artifact.items() if k != "index"}}
        base_id = text(artifact.get("uriBaseId"))
        seen = set()
        while base_id and base_id not in seen and not re.match(r"^[a-z][a-z0-9+.-]*:", uri, re.I):
            seen.add(base_id)
            base = as_dict(self.bases.get(base_id), f"{self.where}.originalUriBaseIds.{base_id}")
            base_uri = text(base.get("uri"))
            if not base_uri or re.match(r"^[a-z][a-z0-9+.-]*:", base_uri, re.I) or base_uri.startswith("/"):
                break  # an absolute base: the runner's checkout, kept out of the path
            uri = base_uri.rstrip("/") + "/" + uri
            base_id = text(base.get("uriBaseId"))
        for base in self.bases.values():  # an absolute file URI under a declared base: make it relative
            base_uri = text(base.get("uri")) if isinstance(base, dict) else ""
            if base_uri.startswith("file:") and uri.startswith(base_uri):
                uri = uri[len(base_uri):]
                break
        return norm_path(unquote(uri))


def _message(result: dict, rule: dict) -> str:
    msg = result.get("message")
    if type(msg) is dict and type(msg.get("text")) is str and "arguments" not in msg:
        return msg["text"].strip()  # the common case
    msg = as_dict(msg, "message")
    body = _msg(msg)
    if not body and msg.get("id"):
        strings = rule.get("messageStrings") if isinstance(rule.get("messageStrings"), dict) else {}
        body = _msg(strings.get(text(msg["id"])))
    args = msg.get("arguments") if isinstance(msg.get("arguments"), list) else []
    if args and body:
        body = _PLACEHOLDER.sub(lambda m: text(args[int(m.group(1))]) if int(m.group(1)) < len(args) else m.group(0), body)
    return body


def _suppression(result: dict) -> tuple[bool, dict]:
    sups = [s for s in as_list(result.get("suppressions"), "suppressions") if isinstance(s, dict)]
    if not sups:
        return False, {}
    suppressed = all(text(s.get("status")) in ("", "accepted") for s in sups)
    s = sups[0]
    details = {"kind": text(s.get("kind")), "status": text(s.get("status")), "justification": text(s.get("justification"))}
    return suppressed, {k: v for k, v in details.items() if v}


def _int(value) -> int | None:
    return value if type(value) is int and value > 0 else positive_int(value)


def _locations(run: Run, result: dict, where: str) -> list[dict]:
    """The finding locations of a result: only the fields present (this runs once per result)."""
    out = []
    locations = result.get("locations")
    for i, loc in enumerate(as_list(locations, f"{where}.locations") if type(locations) is not list else locations):
        phys = loc.get("physicalLocation") if type(loc) is dict else None
        phys = phys or {}
        art = phys.get("artifactLocation") or {} if type(phys) is dict else None
        region = phys.get("region") or {} if type(phys) is dict else None
        if type(art) is not dict or type(region) is not dict:
            raise ParseError("expected objects for location, physicalLocation, artifactLocation and region",
                             f"{where}.locations[{i}]")
        out_loc = {}
        logical = loc.get("logicalLocations")
        if logical and type(logical) is list and type(logical[0]) is dict:
            if resource := text(logical[0].get("fullyQualifiedName")) or text(logical[0].get("name")):
                out_loc["resource"] = resource
        path = run.path_of(art) if art else ""
        if not path:
            if "resource" not in out_loc:
                continue
            path = out_loc["resource"]
        out_loc["path"] = path
        if region:
            v = region.get("startLine")
            if start := v if type(v) is int and v > 0 else positive_int(v):
                v = region.get("endLine")
                out_loc["start_line"] = start
                out_loc["end_line"] = (v if type(v) is int and v > 0 else positive_int(v)) or start
            for key, name in (("startColumn", "start_column"), ("endColumn", "end_column")):
                if key in region and (value := _int(region[key])):
                    out_loc[name] = value
            if (snippet := region.get("snippet")) and (snippet := _msg(snippet)):
                out_loc["snippet"] = snippet
        out.append(out_loc)
    return out


def _adapt_trivy(f: dict, rule: dict, locs: list[dict], run: Run) -> None:
    """Trivy's SARIF carries the package in the message and the class in the rule name."""
    cls = text(rule.get("name"))
    f["category"] = TRIVY_CLASS_CATEGORY.get(cls, f["category"])
    tags = as_dict(rule.get("properties"), "properties").get("tags") or []
    for tag in tags if isinstance(tags, list) else []:
        if severity_from_word(tag) and text(tag).isupper():  # trivy tags the vendor severity word
            f["severity"], f["tool_severity"] = severity_from_word(tag), text(tag)
    if cls in ("OsPackageVulnerability", "LanguageSpecificPackageVulnerability"):
        fields = dict(_TRIVY_MSG.findall(f.get("message", "")))
        if fields.get("Package"):
            f["package"] = {
                "name": fields["Package"], "version": fields.get("Installed Version", ""),
                "fixed_versions": [v.strip() for v in fields.get("Fixed Version", "").split(",") if v.strip()],
            }
            f["message"] = ""
            for loc in locs:  # package findings are identified by package and path, not by line
                loc["start_line"] = loc["end_line"] = loc["start_column"] = loc["end_column"] = None
    elif cls == "License":
        pkg, _, lic = f["rule_id"].rpartition(":")
        f["rule_id"] = lic or f["rule_id"]
        file = _trivy_field("Path", f.get("message", ""))
        if pkg:
            f["package"] = {"name": pkg, "license": lic}
        for loc in locs:
            loc["start_line"] = loc["end_line"] = loc["start_column"] = loc["end_column"] = None
            if file and not pkg:  # a loose file's license: the file, as Trivy's JSON has it
                loc["path"] = file
    elif cls == "Secret":
        match = _trivy_field("Match", f.get("message", ""))  # the (masked) match of this result
        f["secret"] = {"sha256": secret_digest(match)} if match else None
        f["description"] = f["message"] = ""


# ---- Checkov SCA adapter: same rule id and package as the checkov-json parser ----
_CHECKOV_SCA = re.compile(r"^(License )?(.+?) - (.+): (\S+)$")


def _adapt_checkov(f: dict, rule: dict, locs: list[dict], run: Run) -> None:
    """Checkov's SARIF names an SCA rule `<advisory or license>_<package>@<version>` (spaces as _) and
    its rule name is `[License ]<id> - <package>: <version>`; its JSON has check_id plus
    vulnerability_details, read as rule id = advisory or license, with the package."""
    m = _CHECKOV_SCA.match(text(rule.get("name")))
    if m and f["rule_id"] == f"{m[2]}_{m[3]}@{m[4]}".replace(" ", "_"):
        f["rule_id"], f["category"], f["cve"] = m[2], "sca", split_advisory_ids([m[2]])[0]
        f["package"] = {"name": m[3], "version": m[4], "license": m[2] if m[1] else ""}
# ---- end of Checkov SCA adapter ----


def _adapt_bandit(f: dict, rule: dict, locs: list[dict], run: Run) -> None:
    """Bandit's hardcoded-password results quote the password in the message, and snippets may
    quote any result's: as its JSON parser does, keep only the hash."""
    value, message = quoted_password(f.get("message", ""))
    if value:
        f["secret"] = {"sha256": secret_digest(value)}
        f["message"] = message
    for loc in locs:
        if "snippet" in loc:
            loc["snippet"] = redact(loc["snippet"], run.passwords)


# producers whose JSON secai also reads: their SARIF is normalized to what that parser gives
ADAPTERS = {"trivy": _adapt_trivy, "checkov": _adapt_checkov, "bandit": _adapt_bandit}


def _rule_facts(run: Run, rid: str, rule: dict, category: str) -> tuple[dict, str, object]:
    """(fields, default level, security-severity) a finding takes from its rule: once per rule."""
    rprops = as_dict(rule.get("properties"), f"{run.where}.rules[{rid}].properties")
    tags = rprops.get("tags") if isinstance(rprops.get("tags"), list) else []
    relations = [text(as_dict(as_dict(r, "relationships").get("target"), "target").get("id"))
                 for r in as_list(rule.get("relationships"), f"{run.where}.rules[{rid}].relationships")]
    cves, aliases = split_advisory_ids([rid], exclude=rid)
    refs = [rule.get("helpUri"), *(rprops.get("references") if isinstance(rprops.get("references"), list) else [])]
    facts = {
        "tool": run.tool,
        "tool_version": run.version,
        "rule_id": rid,
        "title": _msg(rule.get("shortDescription")) or text(rule.get("name")),
        "description": _msg(rule.get("fullDescription")) or _msg(rule.get("help")),
        "category": category,
        "confidence": PRECISION.get(text(rprops.get("precision")).lower()),
        "cwe": cwe_ids([*tags, *relations, *(v if isinstance(v := rprops.get("cwe"), list) else [v])]),
        "cve": cves,
        "aliases": [a for a in aliases if a.upper().startswith(("GHSA-", "PYSEC-", "RUSTSEC-", "GO-", "OSV-"))],
        "references": unique(refs),
        "tags": unique(tags),
        "source": run.source,
    }
    prune(facts)
    level = text(as_dict(rule.get("defaultConfiguration"), "defaultConfiguration").get("level"))
    return facts, level, rprops.get("security-severity")


def parse(doc: dict):
    for ri, run_doc in enumerate(as_list(doc.get("runs"), "$.runs")):
        where = f"$.runs[{ri}]"
        run = Run(as_dict(run_doc, where), where)
        category = TOOL_CATEGORY.get(run.tool, "sast")
        default_level = DEFAULT_LEVEL.get(run.tool, "warning")
        adapter = ADAPTERS.get(run.tool)
        results = as_list(run_doc.get("results"), f"{where}.results")
        if run.tool == "bandit":
            run.passwords = forms(quoted_password(_msg(r.get("message")))[0] for r in results if isinstance(r, dict))
        rule_facts: dict[tuple, tuple] = {}
        # a finding's fields that depend only on its rule and severity, built once per combination
        base_by_key: dict[tuple, dict] = {}
        for i, result in enumerate(results):
            if type(result) is not dict:
                raise ParseError("expected object", f"{where}.results[{i}]")
            kind = result.get("kind")
            if kind and kind != "fail":
                continue
            rid, rule, override_key = run.rule_of(result)
            if not rid:
                raise ParseError("result has no ruleId and no rule", f"{where}.results[{i}]")
            props = result.get("properties") or {}
            if type(props) is not dict:
                raise ParseError("expected object", f"{where}.results[{i}].properties")
            level, sec = result.get("level"), props.get("security-severity")
            level = level if type(level) is str else text(level)
            sec = sec if sec is None or type(sec) in (str, int, float) else text(sec)
            key = (rid, id(rule), level, sec, override_key)
            base = base_by_key.get(key)
            if base is None:
                rkey = (rid, id(rule))
                if rkey not in rule_facts:
                    rule_facts[rkey] = _rule_facts(run, rid, rule, category)
                facts, rule_level, rule_sec = rule_facts[rkey]
                level = level.strip() or run.overrides.get(override_key) or rule_level or default_level
                sec = rule_sec if sec is None else sec
                severity = severity_from_score(sec) if sec is not None else None
                unrated = severity is None and UNRATED_LEVEL.get(run.tool) == level
                base = base_by_key[key] = {**facts, "severity": severity or LEVEL_SEVERITY.get(level, "medium"),
                                           "tool_severity": text(sec) if severity else level}
                if unrated:
                    base.update(severity="medium", tool_severity="")
            own = {}  # the result's fields: the rule's are `base`, shared by its results (finding.Split)
            if run.by_secai:  # secai's own log: the category it kept; the scanner, in a one-run log of secai 0.1
                if props.get("category") in FINDING_CATEGORIES:
                    own["category"] = props["category"]
                if run.tool == "secai" and text(props.get("scanner")):
                    own["tool"] = tool_name(text(props["scanner"]))
            msg = result.get("message")
            if type(msg) is dict and type(message := msg.get("text")) is str and "arguments" not in msg:
                message = message.strip()  # the common case of _message
            else:
                message = _message(result, rule)
            if message:
                own["message"] = message
            if result.get("taxa") or props.get("cwe"):
                taxa = [text(as_dict(t, "taxa").get("id")) for t in as_list(result.get("taxa"), f"{where}.results[{i}].taxa")]
                extra = props.get("cwe") if isinstance(props.get("cwe"), list) else [props.get("cwe")]
                if cwes := cwe_ids([*base.get("cwe", []), *taxa, *extra]):
                    own["cwe"] = cwes
            if result.get("fixes"):
                fixes = unique(_msg(as_dict(x, "fixes").get("description"))
                               for x in as_list(result["fixes"], f"{where}.results[{i}].fixes"))
                if fixes:
                    own["fix_hint"] = "\n".join(fixes)
            if result.get("suppressions"):
                own["suppressed"], own["suppression"] = _suppression(result)
            locs = _locations(run, result, f"{where}.results[{i}]")
            if adapter:  # it may change any field: the finding is one dict
                f = {**base, **own}
                adapter(f, rule, locs, run)
                prune(f)
                for loc in locs:
                    prune(loc)
                base, own = {}, f
            if "title" not in base and "title" not in own:  # after the adapters: the message may have been redacted
                own["title"] = own.get("message", "").split("\n", 1)[0][:200] or rid
            category = own["category"] if "category" in own else base["category"]
            if len(locs) == 1 and category != "secret":  # the common case of the loop below
                own["location"] = locs[0]
                yield Split(base, own) if base else own
                continue
            if not locs:
                yield Split(base, own) if base else own
                continue
            for n, loc in enumerate(locs):
                g = own if n == len(locs) - 1 else own.copy()
                if category == "secret" and "snippet" in loc:  # the secret itself: keep only its hash
                    snippet = loc.pop("snippet")
                    value = text(props.get("offender")) or text(props.get("secret")) or snippet
                    g["secret"] = {"sha256": secret_digest(value)}
                    for key in ("message", "title"):
                        if key in g or key in base:
                            g[key] = redact(g[key] if key in g else base[key], [value, snippet.strip()])
                g["location"] = loc
                yield Split(base, g) if base else g


FORMATS = [Format("sarif", "json", "SARIF 2.1.0 (any tool)",
                  "an object with a `runs` array and `version` 2.x or a SARIF `$schema`", detect, parse, clean=True)]
