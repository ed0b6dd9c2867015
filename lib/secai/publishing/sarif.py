"""The SARIF 2.1.0 log of a set of analyses, for GitHub code scanning and SARIF viewers (what
secai-sarif writes; the command: secai.commands.sarif).

The mapping, and why (GitHub's documented SARIF support, "SARIF support for code scanning"):
- One run per original scanner (GitHub: "each run can only have results for one analysis tool";
  it shows and filters alerts by the run's tool.driver.name): tool.driver is the scanner (its
  name as secai-parse names it, with the version most of its findings record: `version`, and
  `semanticVersion` when it is one) with the rules of its findings; secai, which explained them
  and proposed the fixes, is the run's tool extension (tool.extensions: name, version), and its
  analysis is what the rules' help, the results' messages and properties and the fixes say.
  secai-parse reads such a log back with the scanner as each finding's tool. Runs are sorted by
  scanner; all share the category (automationDetails.id, default `secai/`). GitHub replaces an
  analysis as a whole per tool and category, so a scanner that now reports nothing must still
  have its (empty) run to close its old alerts: `scanners` names the scanners that ran. A log
  with no run at all (no finding, no scanner named) has one empty run whose driver is secai.
- Paths: relative to the repository root (secai.publishing.repopaths), as GitHub matches them.
- Rules: one per rule_id of a run, sorted by id. `name` (GitHub shows it and filters by it; at
  most 255 characters) is a PascalCase identifier of the title, e.g. HardcodedSqlExpressions
  (of the rule id when the title has no ASCII word). shortDescription and fullDescription are
  the scanner's title and description (at most 1024 characters, GitHub's limit); help.text is
  the remediation and help.markdown adds impact, prevention, the suggested fix and references.
  An analysis is written for one finding, so when a rule's findings have different
  remediations, each distinct text is listed with the locations it is for. Links (helpUri, the
  first of the finding's references; the references listed) are only absolute http(s) URLs
  (secai.untrusted.http_links): a `javascript:` or `data:` reference is left out.
- Tags: `security`, the category, `external/cwe/cwe-N` for each CWE (as GitHub's own queries tag
  them), the scanner, then the scanner's tags: at most 10, the number GitHub keeps.
- Severity: level error for critical and high, warning for medium, note for low and info.
  `security-severity` (GitHub's 0.0-10.0 score: ≥9.0 critical, ≥7.0 high, ≥4.0 medium, >0 low) is
  the finding's CVSS score when it falls in the band of the finding's severity, else the middle of
  that band (9.5, 8.0, 5.5, 2.0; 0.0 for info): the severity GitHub shows is always secai's. The
  result carries its own score; its rule the highest score among its results.
- Locations: a relative path is a URI relative to `%SRCROOT%`, the repository root
  (percent-encoded, ':' included, so that an image name is never read as a URI scheme), an
  absolute path outside the repository a file:// URI; the region
  has the lines and columns the scanner gave, and is left out when the line is unknown (never
  line 0). A finding without a file location (a DAST endpoint, an image without a file) is left
  out, with a count on stderr, unless --keep-unlocated: GitHub rejects a whole log when any result
  has no location.
- Fixes: when the analysis has fixed code and code context and the finding has lines, one `fix`
  replaces whole lines (a deletedRegion of startLine..endLine without columns, i.e. up to but not
  including the last line's newline) with the fixed code. Where it lands is
  secai.analysis.placement's decision over the code context's lines — the same one
  --verify-fixes applies to the file and checks: the fix's `original` where the context was read
  (nearest the finding), or, without `original`, the enclosing unit the code starts like; the
  inserted code is indented as placed. Otherwise (no code context, no place), or when the code
  holds a redaction, no fix is given (the markdown help still shows the code).
- partialFingerprints: "secaiFindingId/v1" is the finding id; "primaryLocationLineHash", the only
  one GitHub uses, is computed from the file in the repository exactly as upload-sarif would
  (secai.publishing.linehash) for a result with a start line. Without a readable file (a path
  outside the repository, a file not checked out) it is left out, and the action computes it.
- Every text is passed through the secret patterns of secai.secrets (and the secret hashes of
  the input) before it is written: a SARIF log is published.

The log is checked against the official OASIS SARIF 2.1.0 schema before it is written. The schema
is vendored verbatim as schemas/sarif-2.1.0.json: oasis-tcs/sarif-spec, Schemata/sarif-schema-2.1.0.json
at commit 0a8091f7d4057e57b6d8d9b56129e5f918747b34 (SARIF 2.1.0 Errata 01; JSON Schema draft-04).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from urllib.parse import quote

import orjson

from secai import __version__
from secai.analysis import placement
from secai.records import SCHEMA_DIR
from secai.parsing.finding import severity_from_score
from secai.parsing.formats.sarif import tool_name
from secai.publishing.linehash import file_line_hashes
from secai.publishing.repopaths import RepoPaths
from secai.secrets import REDACTED, scrub
from secai.untrusted import http_links

SARIF_SCHEMA = SCHEMA_DIR / "sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
SRCROOT = "%SRCROOT%"
FINGERPRINT = "secaiFindingId/v1"
LINE_HASH = "primaryLocationLineHash"
DEFAULT_CATEGORY = "secai"
SECAI = "secai"

LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
BAND_SCORE = {"critical": 9.5, "high": 8.0, "medium": 5.5, "low": 2.0, "info": 0.0}
PRECISION = {"high": "high", "medium": "medium", "low": "low"}
SUPPRESSION_KINDS = ("inSource", "external")
SUPPRESSION_STATUS = ("accepted", "underReview", "rejected")

# GitHub code scanning's limits (docs: "SARIF support for code scanning"): over them a log is rejected
DESCRIPTION_CHARS = 1024
MAX_TAGS = 10  # 20 are accepted, 10 are kept
MAX_RESULTS = 25_000
MAX_RULES = 25_000
MAX_REFERENCES = 10
NAME_CHARS = 255

_LANGUAGE = re.compile(r"[^A-Za-z0-9_+#.-]")
_WORD = re.compile(r"[A-Za-z0-9]+")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_MD_SPECIAL = re.compile(r"([\\\[\]<>])")


# ---------------------------------------------------------------- schema

@cache
def sarif_schema() -> dict:
    return orjson.loads(SARIF_SCHEMA.read_bytes())


@cache
def sarif_validator():
    """The jsonschema validator of the vendored SARIF schema, for the draft the schema declares."""
    import jsonschema

    schema = sarif_schema()
    return jsonschema.validators.validator_for(schema)(schema)


def sarif_errors(log: dict, limit: int = 5) -> list[str]:
    """Why `log` is not valid SARIF 2.1.0 (at most `limit` reasons, each with its JSON path)."""
    out = []
    for err in sarif_validator().iter_errors(log):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(f"{path}: {err.message}")
        if len(out) >= limit:
            break
    return sorted(out)


# ---------------------------------------------------------------- small pieces

def security_severity(finding: dict) -> str:
    """GitHub's security-severity score of a finding, always in the band of its severity."""
    severity = finding["severity"]
    score = (finding.get("cvss") or {}).get("score")
    if score is not None:
        text = f"{float(score):.1f}"
        if severity_from_score(text) == severity:
            return text
    return f"{BAND_SCORE[severity]:.1f}"


def artifact_location(path: str) -> dict:
    """A finding path as a SARIF artifactLocation: relative to %SRCROOT%, or a file:// URI."""
    if path.startswith("/"):
        return {"uri": "file://" + quote(path, safe="/@+")}
    return {"uri": quote(path, safe="/@+"), "uriBaseId": SRCROOT}


def region(location: dict) -> dict | None:
    """The SARIF region of a finding location, or None when its line is unknown."""
    start = location.get("start_line")
    if not start:
        return None
    end = max(location.get("end_line") or start, start)
    out = {"startLine": start, "endLine": end}
    first, last = location.get("start_column"), location.get("end_column")
    if first:
        out["startColumn"] = first
        if last and (end > start or last >= first):
            out["endColumn"] = last
    return out


def rule_name(rule_id: str, title: str) -> str:
    """A rule's `name`: a PascalCase identifier of its title (of its id when the title has no
    ASCII word), at most 255 characters: "Hardcoded sql expressions" -> HardcodedSqlExpressions."""
    words = _WORD.findall(title) or _WORD.findall(rule_id) or ["Rule"]
    return "".join(w[:1].upper() + w[1:] for w in words)[:NAME_CHARS]


def where(finding: dict) -> str:
    """Where a finding is, in a few characters: path:line, path, URL or package."""
    loc = finding.get("location") or {}
    if loc.get("path"):
        if loc.get("start_line"):
            end = loc.get("end_line") or loc["start_line"]
            lines = f"{loc['start_line']}" + (f"-{end}" if end > loc["start_line"] else "")
            return f"{loc['path']}:{lines}"
        return loc["path"]
    if (finding.get("endpoint") or {}).get("url"):
        return finding["endpoint"]["url"]
    pkg = finding.get("package") or {}
    if pkg.get("name"):
        return pkg["name"] + (f" {pkg['version']}" if pkg.get("version") else "")
    return finding["id"]


def clip(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def md(text: str) -> str:
    """Untrusted text for Markdown: no HTML, links or images can be made of it."""
    return _MD_SPECIAL.sub(r"\\\1", text.strip())


def fence(code: str, language: str = "") -> str:
    """`code` as a fenced block that nothing in the code can close."""
    longest = max((len(m) for m in re.findall(r"`{3,}", code)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{_LANGUAGE.sub('', language)}\n{code.rstrip()}\n{ticks}"


def grouped(pairs) -> list[tuple[str, list[str]]]:
    """[(text, [where, ...])] for (where, text) pairs: one entry per distinct text, first seen first."""
    groups: dict[str, list[str]] = {}
    for place, text in pairs:
        if text:
            groups.setdefault(text, [])
            if place not in groups[text]:
                groups[text].append(place)
    return list(groups.items())


def grouped_text(groups) -> str:
    if len(groups) == 1:
        return groups[0][0]
    return "\n\n".join(f"{', '.join(places)}: {text}" for text, places in groups)


def grouped_markdown(groups) -> str:
    if len(groups) == 1:
        return md(groups[0][0])
    return "\n".join(f"- {md(', '.join(places))}: {md(text)}" for text, places in groups)


# ---------------------------------------------------------------- fixes

def fix_placement(finding: dict, analysis: dict, context: dict | None) -> placement.Placement | None:
    """Where the analysis's fixed code lands: secai.analysis.placement's decision over the code
    context's lines, the replacement verification applies and checks. None without code context
    (no line was read to place it by), for a context that does not hold the lines it says it
    has, or when the fix cannot be placed."""
    fix, loc = analysis.get("fix") or {}, finding.get("location") or {}
    if not fix.get("code", "").strip() or not loc.get("path") or not loc.get("start_line") or not context:
        return None
    lines = context["code"].replace("\r\n", "\n").split("\n")
    if len(lines) != context["end_line"] - context["start_line"] + 1:
        return None
    try:
        return placement.place(lines, context, fix, first_line=context["start_line"])
    except placement.NotPlaced:
        return None


def sarif_fix(finding: dict, analysis: dict, context: dict | None, location: dict, digests) -> dict | None:
    """The SARIF `fix` object of an analysis, or None when its code cannot be placed exactly."""
    placed = fix_placement(finding, analysis, context)
    if placed is None:
        return None
    fix = analysis["fix"]
    code = "\n".join(placed.code)
    if REDACTED in code or scrub(code, digests) != code:
        return None  # a redacted line is no code to apply
    out = {"artifactChanges": [{
        "artifactLocation": location,
        "replacements": [{"deletedRegion": {"startLine": placed.start, "endLine": placed.end},
                          "insertedContent": {"text": code}}],
    }]}
    if fix.get("explanation"):
        out["description"] = {"text": scrub(fix["explanation"], digests)}
    return out


# ---------------------------------------------------------------- the log

def _order(record: dict):
    f = record["finding"]
    loc = f.get("location") or {}
    return (loc.get("path", "\uffff"), loc.get("start_line", 0), loc.get("start_column", 0), f["rule_id"], f["tool"], f["id"])


def build_result(record: dict, rule_index: int, digests, keep_unlocated: bool, path: str = "",
                 line_hash: str | None = None) -> tuple[dict, bool] | None:
    """(SARIF result, whether it has a fix) of one analysis/1 record; None when it has no file
    location and `keep_unlocated` is off. `path`: its location's path as written (default: the
    finding's); `line_hash`: GitHub's primaryLocationLineHash of its start line, when known."""
    f, a = record["finding"], record["analysis"]
    loc = f.get("location") or {}
    if not loc.get("path") and not keep_unlocated:
        return None
    text = f"{scrub(a['summary'], digests)}\n\nImpact: {scrub(a['impact'], digests)}"
    result = {
        "ruleId": f["rule_id"],
        "ruleIndex": rule_index,
        "level": LEVEL[f["severity"]],
        "message": {"text": text},
        "partialFingerprints": {FINGERPRINT: f["id"], **({LINE_HASH: line_hash} if line_hash else {})},
        "occurrenceCount": f["occurrences"],
        "properties": {
            "security-severity": security_severity(f),
            "scanner": f["tool"],
            "category": f["category"],
            "severity": f["severity"],
            "risk": a["risk"]["rating"],
        },
    }
    has_fix = False
    if loc.get("path"):
        artifact = artifact_location(path or loc["path"])
        physical = {"artifactLocation": artifact}
        reg = region(loc)
        if reg:
            if loc.get("snippet") and f["category"] != "secret":
                reg["snippet"] = {"text": scrub(loc["snippet"], digests)}
            physical["region"] = reg
        location = {"physicalLocation": physical}
        if loc.get("resource"):
            location["logicalLocations"] = [{"fullyQualifiedName": scrub(loc["resource"], digests)}]
        result["locations"] = [location]
        fix = sarif_fix(f, a, record.get("code_context"), artifact, digests)
        if fix:
            result["fixes"] = [fix]
            has_fix = True
    if f.get("suppressed"):
        s = f.get("suppression") or {}
        sup = {"kind": s["kind"] if s.get("kind") in SUPPRESSION_KINDS else "external",
               "status": s["status"] if s.get("status") in SUPPRESSION_STATUS else "accepted"}
        if s.get("justification"):
            sup["justification"] = scrub(s["justification"], digests)
        result["suppressions"] = [sup]
    return result, has_fix


def _tags(records: list[dict]) -> list[str]:
    tags = ["security"]
    cwes = sorted({int(c.split("-")[1]) for r in records for c in r["finding"].get("cwe", [])})
    for value in ([r["finding"]["category"] for r in records] + [f"external/cwe/cwe-{n}" for n in cwes]
                  + [r["finding"]["tool"] for r in records]
                  + [t for r in records for t in r["finding"].get("tags", [])]):
        if value not in tags:
            tags.append(value)
    return tags[:MAX_TAGS]


def build_rule(rule_id: str, records: list[dict], digests) -> dict:
    """The reportingDescriptor of one rule from the analyses of its findings (in output order)."""
    first = records[0]["finding"]
    title = scrub(first["title"], digests)
    pairs = [(scrub(where(r["finding"]), digests), r) for r in records]

    def texts(key):
        return grouped((place, scrub(r["analysis"][key], digests)) for place, r in pairs)

    remediation, impact, prevention = texts("remediation"), texts("impact"), texts("prevention")
    parts = ["**Remediation**", grouped_markdown(remediation), "**Impact**", grouped_markdown(impact),
             "**Prevention**", grouped_markdown(prevention)]
    for place, r in pairs:
        fix = r["analysis"].get("fix")
        if fix and fix.get("code", "").strip():
            parts += [f"**Suggested fix** ({md(place)})", fence(scrub(fix["code"], digests), fix.get("language", ""))]
            if fix.get("explanation"):
                parts.append(md(scrub(fix["explanation"], digests)))
            if fix.get("verification"):
                parts.append("Verify: " + md(scrub(fix["verification"], digests)))
    references = http_links(u for r in records for u in [*r["analysis"].get("references", []),  # links: http(s) only
                                                         *r["finding"].get("references", [])])
    if references:
        parts += ["**References**", "\n".join(f"- {md(u)}" for u in references[:MAX_REFERENCES])]
    worst = max(records, key=lambda r: float(security_severity(r["finding"])))["finding"]
    rule = {
        "id": rule_id,
        "name": rule_name(rule_id, title),
        "shortDescription": {"text": clip(title)},
        "fullDescription": {"text": clip(scrub(first.get("description") or first.get("message") or first["title"], digests))},
        "defaultConfiguration": {"level": LEVEL[worst["severity"]]},
        "help": {"text": grouped_text(remediation), "markdown": "\n\n".join(parts)},
        "properties": {"tags": _tags(records), "security-severity": security_severity(worst)},
    }
    if first.get("confidence") in PRECISION:
        rule["properties"]["precision"] = PRECISION[first["confidence"]]
    uri = next(iter(http_links(first.get("references"))), None)
    if uri:
        rule["helpUri"] = uri
    return rule


def _digests(records) -> frozenset[str]:
    return frozenset(r["finding"]["secret"]["sha256"] for r in records if "secret" in r["finding"])


def _driver(tool: str, records: list[dict], rules: list[dict]) -> dict:
    """The toolComponent of a scanner: its name, the version most of its results came from."""
    driver = {"name": tool, "rules": rules}
    versions = Counter(r["finding"].get("tool_version") for r in records if r["finding"].get("tool_version"))
    if versions:
        version = max((n, v) for v, n in versions.items())[1]
        driver["version"] = version
        if _SEMVER.match(version):
            driver["semanticVersion"] = version
    return driver


def build_run(tool: str, records: list[dict], category: str, digests, keep_unlocated: bool,
              paths: RepoPaths | None) -> tuple[dict, int]:
    """(run, fixes) of one scanner's records (in output order): its rules sorted by id, secai as
    the extension that explained them."""
    by_rule: dict[str, list[dict]] = {}
    for r in records:
        by_rule.setdefault(r["finding"]["rule_id"], []).append(r)
    rule_ids = sorted(by_rule)
    index = {rid: i for i, rid in enumerate(rule_ids)}
    located = {r["id"]: paths.path(r["finding"]["location"]["path"]) if paths else r["finding"]["location"]["path"]
               for r in records if (r["finding"].get("location") or {}).get("path")}
    wanted: dict[str, set[int]] = {}
    for r in records:
        if r["id"] in located and r["finding"]["location"].get("start_line"):
            wanted.setdefault(located[r["id"]], set()).add(r["finding"]["location"]["start_line"])
    hashes = {}
    for path, lines in wanted.items():
        file = paths.file(path) if paths else None
        hashes[path] = file_line_hashes(file, lines) if file else {}
    results, fixes = [], 0
    for r in records:
        path = located.get(r["id"], "")
        line_hash = hashes.get(path, {}).get((r["finding"].get("location") or {}).get("start_line"))
        result, has_fix = build_result(r, index[r["finding"]["rule_id"]], digests, keep_unlocated, path, line_hash)
        results.append(result)
        fixes += has_fix
    secai = {"name": SECAI, "version": __version__, "semanticVersion": __version__}
    driver = (_driver(tool, records, [build_rule(rid, by_rule[rid], digests) for rid in rule_ids])
              if tool != SECAI else {**secai, "rules": []})
    run = {
        "tool": {"driver": driver, **({"extensions": [secai]} if tool != SECAI else {})},
        "automationDetails": {"id": category.rstrip("/") + "/"},
        "originalUriBaseIds": {SRCROOT: {"description": {"text": "The root of the repository."}}},
        "results": results,
    }
    return run, fixes


def build_log(records: list[dict], category: str = DEFAULT_CATEGORY, keep_unlocated: bool = False,
              paths: RepoPaths | None = None, scanners=()) -> tuple[dict, dict]:
    """(SARIF log, counts) of analysis/1 records: one run per scanner (sorted; an empty one for
    each of `scanners` that found nothing), rules sorted by id, results in path/line order.
    `paths` maps finding paths onto the repository (None: as they are, with no line hashes).
    Records with the same id after the first are ignored."""
    seen, unique = set(), []
    for r in records:
        if r["id"] not in seen:
            seen.add(r["id"])
            unique.append(r)
    unique.sort(key=_order)
    digests = _digests(unique)
    kept = [r for r in unique if keep_unlocated or (r["finding"].get("location") or {}).get("path")]
    by_tool: dict[str, list[dict]] = {tool_name(s): [] for s in scanners}
    for r in kept:
        by_tool.setdefault(r["finding"]["tool"], []).append(r)
    runs, fixes = [], 0
    for tool in sorted(by_tool) or [SECAI]:
        run, n = build_run(tool, by_tool.get(tool, []), category, digests, keep_unlocated, paths)
        runs.append(run)
        fixes += n
    log = {"$schema": sarif_schema()["id"], "version": SARIF_VERSION, "runs": runs}
    results = sum(len(run["results"]) for run in runs)
    hashed = sum(LINE_HASH in res["partialFingerprints"] for run in runs for res in run["results"])
    counts = {"analyses": len(unique), "results": results, "runs": len(runs), "fixes": fixes,
              "hashed": hashed, "rules": sum(len(run["tool"]["driver"]["rules"]) for run in runs),
              "max_results": max(len(run["results"]) for run in runs),
              "max_rules": max(len(run["tool"]["driver"]["rules"]) for run in runs),
              "unlocated": len(unique) - len(kept), "duplicates": len(records) - len(unique)}
    return log, counts


def dumps_log(log: dict) -> bytes:
    """The log as deterministic, indented JSON (sorted keys, UTF-8, a final newline)."""
    return orjson.dumps(log, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
