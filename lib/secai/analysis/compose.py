"""The `kb` backend: an analysis composed from the knowledge base and the finding's own texts.

Offline and deterministic. Precedence, most specific first (each layer adds what those above do
not say; a hand-written entry is merged over the harvested facts, never instead of them):
1. rule level: the hand-written kb entry of the rule id or pattern (secai.analysis.kb), with its
   `by_rule` texts and `readings` of the flagged code; the rule's record (`rule`, harvested from
   the scanner, secai.analysis.rules) adds what the rule flags in its authors' words, its advice,
   and for a checkov value check what it expects, what the code sets and what to change;
2. CWE level: the hand-written entry of the finding's CWE, else the MITRE catalogue's entry
   (rules.cwe_entry: description, consequences, mitigations) instead of the fallback;
3. the category's fallback.
Statements are this finding's: the framework variant of an entry's remediation is chosen from the
finding's frameworks and language (secai.analysis.readings.frameworks_of; with none that fits,
the language-neutral text); test, example and generated code are named as such
(secai.analysis.languages.code_role; test code gets its entry's `test_code` reading and a risk one
step lower, with the entry's reason); a "secret" that is evidently none (a placeholder, a class
name, an environment lookup: readings.not_a_secret) says so and is not to be rotated; the risk
is the scanner's severity when it gave one, else secai's default, said to be that.
For a vulnerable dependency whose manifest is under the source root, the remediation names the
file and line to change and the fix shows it. For a finding with code context, a fix rule
(lib/secai/analysis/kb/fixes/*.yaml, secai.analysis.fixrules) rewrites the lines the context shows
into the fix: `original` (lines copied from the file) and `code` (what replaces them), so that
secai.analysis.verify can apply it to a copy and re-run the scanner; the remediation ends with
what that fix does.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

from secai.analysis import kb as knowledge
from secai.analysis.autofix import distrusted
from secai.analysis.fixrules import rule_fix
from secai.analysis.languages import code_role, detect_language
from secai.analysis.readings import (SUPPRESS, expectation, flagged, foreign_frameworks, frameworks_of, not_a_secret,
                                     project_frameworks)
from secai.secrets import REDACTED
from secai.untrusted import http_links, quote

COMPOSER_VERSION = "kb-compose-4"  # 4: rule knowledge, framework variants, readings of the code and value
_STEP_DOWN = {"critical": "high", "high": "medium", "medium": "low", "low": "info", "info": "info"}


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:4])


def upgrade_target(installed: str | None, fixed: list[str]) -> str | None:
    """The fixed version to move to: the lowest above the installed one on its own major line
    (9.0.109 -> 9.0.112 when 11.0.14, 10.1.49 and 9.0.112 fix it), else the lowest above it."""
    if not fixed:
        return None
    if not installed or not _numbers(installed):
        return fixed[0]
    now = _numbers(installed)
    above = [v for v in fixed if _numbers(v) > now]
    same_line = [v for v in above if _numbers(v)[:1] == now[:1]]
    return min(same_line or above or fixed, key=_numbers)


def facts_of(finding: dict) -> dict:
    """The finding facts the knowledge-base templates may use (see secai.analysis.kb.MISSING). The
    title is the scanner's prose, so it is a quotation (the templates attribute it: "{tool} reports
    {title}", "({rule_id}: {title})"), never words of the analysis's own."""
    loc, pkg = finding.get("location") or {}, finding.get("package") or {}
    return {
        "title": quote(finding["title"]) if finding["title"].strip() else None,
        "rule_id": finding["rule_id"], "tool": finding["tool"],
        "path": loc.get("path") or (finding.get("endpoint") or {}).get("url"),
        "line": loc.get("start_line"), "resource": loc.get("resource"),
        "package": pkg.get("name"), "installed": pkg.get("version"),
        "fixed": upgrade_target(pkg.get("version"), pkg.get("fixed_versions", [])),
        "cve": ", ".join(finding.get("cve", [])),
        "severity": finding["severity"],
    }


def _place(finding: dict) -> str:
    loc = finding.get("location") or {}
    if loc.get("path"):
        where = f"{loc['path']}:{loc['start_line']}" if loc.get("start_line") else loc["path"]
        return f"{where} ({loc['resource']})" if loc.get("resource") else where
    endpoint = finding.get("endpoint") or {}
    return " ".join(v for v in (endpoint.get("method"), endpoint.get("url")) if v) or "the scanned target"


def manifest_line(root: Path | None, finding: dict) -> tuple[str, int, str] | None:
    """(path, line number, line) of the dependency's declaration in its manifest under `root`."""
    pkg, loc = finding.get("package") or {}, finding.get("location") or {}
    if root is None or not pkg.get("name") or not loc.get("path"):
        return None
    from secai.analysis.context import NoContext, locate  # imported here: only needed with a source root

    try:
        path, rel = locate(root, loc["path"])
    except NoContext:
        return None
    if path.stat().st_size > 2_000_000:
        return None
    name = re.escape(pkg["name"].split(":")[-1].split("/")[-1])
    pattern = re.compile(rf"(?<![\w.-]){name}(?![\w-])", re.IGNORECASE)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    hits = [(n, text) for n, text in enumerate(lines, 1) if pattern.search(text)]
    exact = [h for h in hits if pkg.get("version") and pkg["version"] in h[1]]
    if not (exact or hits):
        return None
    n, text = (exact or hits)[0]
    return rel, n, text


def _risk(finding: dict, entry: dict, notes: list[tuple[bool, str]] = ()) -> dict:
    """The rating and its reasons: the scanner's own severity when it gave one, else secai's default
    said to be that; then what raises or lowers it. `notes`: (step down?, reason) of this finding's
    readings (test code, a value that is no secret, a false positive)."""
    rating, own = finding["severity"], finding.get("tool_severity")
    reasons = [f"{finding['tool']} rates it {own}" if own else
               f"{finding['tool']} gives it no severity of its own ({rating} is secai's default for that)"]
    if finding.get("suppressed"):
        rating = _STEP_DOWN[rating]
        why = (finding.get("suppression") or {}).get("justification")
        reasons.append("it is suppressed" + (f", justified as {quote(why)}" if why else "")
                       + ", so it was reviewed and accepted")
    if finding.get("confidence") == "low":
        rating = _STEP_DOWN[rating]
        reasons.append("the scanner's confidence is low")
    pkg = finding.get("package")
    if pkg is not None and finding["category"] in ("sca", "container"):
        reasons.append(f"a fixed version exists ({', '.join(pkg['fixed_versions'])})" if pkg.get("fixed_versions")
                       else "no fixed version is known yet")
    if finding.get("secret") and not any(step for step, _ in notes):
        reasons.append("a committed credential stays usable until it is revoked, whatever the code does later")
    if entry.get("verdict") != "false-positive":  # what would make a weakness worse is moot when there is none
        reasons.append("it is worse when " + entry["risk_factors"]["raises"][0])
    if entry.get("test_lowers"):  # the entry's reading of test code applies
        rating = _STEP_DOWN[rating]
        reasons.append(f"it is in test code ({finding['location']['path']}), one step lower because "
                       + entry["test_lowers"])
    for step, why in notes:
        if step:
            rating = _STEP_DOWN[rating]
        reasons.append(why)
    if not entry.get("test_lowers") and not notes:
        reasons.append("less so when " + entry["risk_factors"]["lowers"][0])
    return {"rating": rating, "rationale": "; ".join(reasons) + "."}


def _fix(finding: dict, manifest) -> dict | None:
    pkg = finding.get("package") or {}
    fixed = upgrade_target(pkg.get("version"), pkg.get("fixed_versions", []))
    if manifest and pkg.get("version") and fixed:
        path, n, line = manifest
        if pkg["version"] in line:
            return {"language": "requirements" if path.endswith(".txt") else Path(path).suffix.lstrip(".") or "text",
                    "original": line, "code": line.replace(pkg["version"], fixed, 1),
                    "explanation": f"Raises {pkg['name']} from {pkg['version']} to {fixed} in {path} line {n}.",
                    "verification": f"Reinstall from {path} and re-run {finding['tool']}: {finding['rule_id']} must be gone."}
    return None  # the knowledge base's examples are generic: a fix is given only when it is this finding's


def compose(finding: dict, context: dict | None, root: Path | None, rule: dict | None = None,
            autofix: dict | None = None) -> dict:
    """The `analysis` object of analysis/1 for a finding (and its code context, when read); `rule`
    is the harvested knowledge of the finding's rule (secai.analysis.rules.rule_knowledge), if any;
    `autofix` the fix its Semgrep rule's own autofix makes (secai.analysis.autofix), used when no
    fix rule applies.
    The knowledge used, most specific first (see the module's docstring): the hand-written entry
    of the rule, else the rule's record, then the hand-written entry of its CWE, else the CWE
    catalogue's, then the category's fallback; each adds what the ones above it do not say. The
    scanner's own prose (title, message, fix hint, a suppression's justification, the rule's own
    words) appears only as a quotation attributed to the scanner and capped (secai.untrusted.quote),
    so that an analysis, and the assistant turn trained on it, never says in its own voice what a
    report told it to; links are kept only when http(s)."""
    path = (finding.get("location") or {}).get("path")
    project = project_frameworks(root, path)
    own_code, frameworks = flagged(context), frameworks_of(finding, rule, context, project)
    foreign = foreign_frameworks(finding, rule, context, project)
    head = (context or {}).get("code", "") if (context or {}).get("start_line") == 1 else ""
    role = code_role(path, head)
    level, hand = knowledge.load().lookup(finding)
    entry = hand.render(facts_of(finding), test_code=role == "test", frameworks=frameworks,
                        rule_id=finding["rule_id"], code=own_code)
    catalogue = _catalogue(finding, frameworks) if level == "category" else None
    rule_level = level in ("rule_id", "rule_pattern") or entry["by_rule"] or entry["verdict"]
    secretless = (not_a_secret(finding, own_code) if finding.get("secret") or finding["category"] == "secret"
                  else None)
    expected = _expected(finding, rule, context, own_code)
    place, notes = _place(finding), []

    summary = catalogue["summary"] if catalogue else entry["summary"]
    if (path or place) not in summary:
        summary += f" It is at {place}."
    if role == "test" and not entry["test_lowers"]:  # the entry has no reading of its own for test code
        summary += f" {path} is test code, not code the application runs."
    elif role in _ROLES:
        summary += f" {path} is {_ROLES[role]}"
    enclosing = (context or {}).get("enclosing")
    if enclosing and enclosing.get("name") and enclosing["name"] not in summary:
        summary += f" The code is in {enclosing['kind']} {enclosing['name']}."
    if finding.get("message") and finding["message"] not in (finding["title"], finding.get("description")):
        summary += f" {finding['tool']} says: {quote(finding['message'])}"
    if foreign:
        summary += (f" The rule is written for {_names(foreign)}, but {path} is part of a project built on "
                    f"{_names(sorted(project or ()))} (its manifests and imports name no {_names(foreign)}), so "
                    f"{_names(foreign)}'s own mechanisms do not apply here: the advice below is for "
                    f"{_names(sorted(project or ()))}.")
    what = (rule or {}).get("what")
    if what and not rule_level and finding["tool"] != "semgrep" and what.strip() not in (finding["title"], finding.get("message")):
        summary += f" What the rule flags, in its authors' words ({rule.get('source') or finding['tool']}): {quote(what)}"
    if expected:
        summary += " " + " ".join(x for x in expected[:2] if x)
    if secretless:
        summary += " " + secretless.reason
        notes.append((secretless.kind != "default", "the flagged value is no secret (see the summary)"
                      if secretless.kind != "default" else "the value is a guessable default, not a leaked secret"))
    if entry["verdict"] == "false-positive":
        notes.append((True, "the flagged code is right as it is (see the summary), so it is no weakness here"))

    analysis = {"summary": summary, "impact": catalogue["impact"] if catalogue else entry["impact"],
                "prevention": catalogue["prevention"] if catalogue else entry["prevention"]}
    manifest = manifest_line(root, finding)
    fix = _fix(finding, manifest)
    if fix is None and (made := rule_fix(finding, context, root)):
        fix = made[0]
    if fix is None and autofix:  # the rule's own autofix, made by semgrep (secai.analysis.autofix)
        fix = autofix
    analysis["remediation"] = _remediation(finding, entry, level, rule, catalogue, expected, secretless,
                                           manifest, fix, foreign)
    analysis["risk"] = _risk(finding, entry, notes)
    analysis["references"] = http_links([*finding.get("references", []), *(rule or {}).get("references", ()),
                                         *entry["references"], *(catalogue or {}).get("references", ())])
    if fix:
        analysis["fix"] = {k: v for k, v in fix.items() if v}
    return analysis


_DISPLAY = {"fastapi": "FastAPI", "nestjs": "NestJS", "ktor": "Ktor"}


def _names(frameworks) -> str:
    """Frameworks as prose: 'Django', 'Express and React'."""
    shown = [_DISPLAY.get(f, f.capitalize()) for f in frameworks]
    return " and ".join(shown) if len(shown) < 3 else ", ".join(shown[:-1]) + " and " + shown[-1]


_ROLES = {"example": "example code, shipped to show how to use the project, not code the application runs.",
          "generated": "generated code: a change belongs in its generator or source, since regenerating the "
                       "file undoes edits made to it."}


def _expected(finding: dict, rule: dict | None, context: dict | None, code: str | None) -> tuple | None:
    """checkov's declared expectation for the finding's resource (readings.expectation), if any."""
    if not rule or not rule.get("expects"):
        return None
    loc = finding.get("location") or {}
    whole = bool(context) and context.get("finding_lines", [0])[0] >= context.get("start_line", 1) and \
        (loc.get("end_line") or loc.get("start_line") or 0) <= context.get("end_line", 0)
    language = (context or {}).get("language") or detect_language(loc.get("path") or "")
    return expectation(rule, code, loc.get("resource"), language, whole)


def _remediation(finding, entry, level, rule, catalogue, expected, secretless, manifest, fix, foreign=()) -> str:
    """What to change: the check's expected value first, then the entry's advice (or, where only the
    category fallback applies, the catalogue's and the rule's own), the rule's advice (not when it
    is written for a framework the project does not use), the fix."""
    tool, advice = finding["tool"], None if foreign else (rule or {}).get("advice")
    if secretless:
        remediation = _secret_remediation(finding, secretless)
    else:
        specific = [expected.change] if expected else []
        if catalogue:
            specific.append(catalogue["remediation"])
        generic = level == "category" and (specific or advice)  # the fallback only says "apply the rule's fix"
        remediation = " ".join(specific + ([] if generic else [entry["remediation"]]))
        if advice and advice.strip() != (finding.get("fix_hint") or "").strip():
            remediation += f" The rule's own advice ({rule.get('source') or tool}): {quote(advice)}"
    pkg = finding.get("package") or {}
    if pkg.get("name") and finding["category"] in ("sca", "container"):
        if pkg["name"] not in remediation:  # the entry's template did not already name the upgrade
            target = upgrade_target(pkg.get("version"), pkg.get("fixed_versions", []))
            remediation = (f"Upgrade {pkg['name']} from {pkg.get('version', 'the installed version')} to "
                           f"{target or 'a version without this vulnerability (none is published yet)'}. {remediation}")
        if manifest:
            remediation = f"It is declared in {manifest[0]} line {manifest[1]} (`{manifest[2].strip()}`). {remediation}"
    if finding.get("fix_hint") and REDACTED not in finding["fix_hint"] and not distrusted(finding):
        remediation += f" {tool} advises: {quote(finding['fix_hint'])}"
    if fix and fix.get("explanation") and not secretless:
        remediation += f" The fix below does this here: {fix['explanation']}"
    return remediation


def _secret_remediation(finding: dict, secretless) -> str:
    """For a flagged value that is no secret: nothing to rotate; what to do instead."""
    how = SUPPRESS.get(finding["tool"], "")
    mark = f" ({how.format(rule_id=finding['rule_id'])} on that line)" if how else ""
    if secretless.kind == "default":
        return ("Take the credential out of the code instead of rotating it: let each deployment set its own from "
                "the environment or a secret store, keep only a salted hash (bcrypt, scrypt or Argon2) where the code "
                "checks it, and refuse to start when none is set.")
    if secretless.kind == "placeholder":
        return (f"Nothing needs rotating. Make sure the placeholder is never used as a real value: read the value "
                f"from the environment or a secret store at run time and fail when it is still the placeholder; "
                f"then mark the finding as reviewed{mark}.")
    return f"Nothing needs rotating. Mark the finding as reviewed with the reason{mark}, so the scanner stops reporting it."


def _catalogue(finding: dict, frameworks: tuple[str, ...]) -> dict | None:
    """Summary, impact, remediation and prevention from the MITRE CWE catalogue's entry of the
    finding's first CWE it holds (secai.analysis.rules.cwe_entry), for a finding that only the
    category fallback would explain. Mitigations that name another language's or framework's
    API are left out."""
    from secai.analysis.rules import cwe_entry

    found = next((e for c in finding.get("cwe", ()) if (e := cwe_entry(c))), None)
    if not found or not found.get("description"):
        return None
    cid, name = found["id"], found.get("name") or found["id"]
    title = facts_of(finding)["title"]
    lead = f"{finding['tool']} reports {title} ({finding['rule_id']})" if title else f"{finding['tool']} reports {finding['rule_id']}"
    mitigations = [m for m in found.get("mitigations") or () if m.get("description") and _neutral(m["description"], frameworks)]
    code = [m for m in mitigations if "Implementation" in (m.get("phase") or "")] or mitigations
    design = [m for m in mitigations if m not in code[:2]]
    consequences = "; ".join(f"{', '.join(c.get('scope') or ['?'])}: {', '.join(c.get('impact') or ['?'])}"
                             for c in (found.get("consequences") or ())[:3])
    return {
        "summary": f"{lead} at {_place(finding)}: {cid}, {name}. MITRE's CWE catalogue describes it: "
                   f"{_sentences(found['description'], 400)}",
        "impact": (f"MITRE's CWE catalogue lists the consequences of {cid} as {consequences}."
                   if consequences else f"{cid} ({name}) weakens the code as its catalogue entry describes."),
        "remediation": " ".join(f"{_sentences(m['description'], 300)}" for m in code[:2]) or
                       f"Remove the {name.lower()} at {_place(finding)}.",
        "prevention": " ".join(_sentences(m["description"], 250) for m in design[:2]) or
                      f"Keep {finding['tool']} in CI so that new instances of {cid} block the merge.",
        "references": [f"https://cwe.mitre.org/data/definitions/{cid.split('-')[1]}.html"],
    }


_NAMED = re.compile(r"\b(Java|JavaScript|PHP|Perl|Python|Ruby|C#|\.NET|ASP\.NET|Struts|Spring|Django|Flask|Rails|"
                    r"Node\.js|Express|Kotlin|Go|Swift|Objective-C|C\+\+|ColdFusion)\b")


def _neutral(text: str, frameworks: tuple[str, ...]) -> bool:
    """Whether `text` names no language or framework other than the finding's own."""
    mine = {f.lower() for f in frameworks} | ({"javascript", "node.js"} if "typescript" in frameworks else set())
    return all(m.lower() in mine for m in _NAMED.findall(text))


def _sentences(text: str, limit: int) -> str:
    """`text` on one line, cut after the last whole sentence within `limit` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(". ", 1)[0]
    return cut + "." if not cut.endswith(".") else cut


@cache
def kb_version() -> str:
    """The kb backend's version: a hash of every file it runs or reads, found the way the Makefile's
    prerequisites are (secai.ops.makedeps): its code (this composer and all it imports: fix rules,
    rewrites, readings, ...) and its data (knowledge entries, fix rules, harvested rule knowledge). A
    cached analysis so never outlives a change to any of them."""
    from secai.ops.makedeps import LIB, closure

    digest = hashlib.sha256()
    for path in sorted(closure(__name__)):
        digest.update(path.relative_to(LIB).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
