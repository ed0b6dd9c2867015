"""The `kb` backend: an analysis composed from the knowledge base and the finding's own texts.

Offline and deterministic. The knowledge-base entry the finding matches gives the explanation of
its family; the finding gives what makes it specific: tool, rule, place, package and versions,
the scanner's message and fix hint, its references. For a vulnerable dependency whose manifest is
under the source root, the remediation names the file and line to change and the fix shows it.
A finding in test code (secai.analysis.languages.is_test_path) gets its entry's `test_code` reading
and a risk one step lower, with the entry's reason; without such a reading the summary says the
file is test code and the rating stands.
For a finding with code context, a fix rule (lib/secai/analysis/kb/fixes/*.yaml, secai.analysis.fixrules) rewrites
the lines the context shows into the fix: `original` (lines copied from the file) and `code`
(what replaces them), so that secai.analysis.verify can apply it to a copy and re-run the scanner.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from secai.analysis import kb as knowledge
from secai.analysis.fixrules import fixes_version, rule_fix
from secai.analysis.languages import is_test_path
from secai.secrets import REDACTED
from secai.untrusted import http_links, quote

COMPOSER_VERSION = "kb-compose-3"  # 3: scanner prose only as attributed, capped quotations
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


def _risk(finding: dict, entry: dict) -> dict:
    rating, own = finding["severity"], finding.get("tool_severity")
    reasons = [f"{finding['tool']} rates it {own}" if own else
               f"{finding['tool']} gives it no severity of its own ({rating} is the default for that)"]
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
    if finding.get("secret"):
        reasons.append("a committed credential stays usable until it is revoked, whatever the code does later")
    reasons.append("it is worse when " + entry["risk_factors"]["raises"][0])
    if entry.get("test_lowers"):  # the entry's reading of test code applies
        rating = _STEP_DOWN[rating]
        reasons.append(f"it is in test code ({finding['location']['path']}), one step lower because "
                       + entry["test_lowers"])
    else:
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


def compose(finding: dict, context: dict | None, root: Path | None, rule: dict | None = None) -> dict:
    """The `analysis` object of analysis/1 for a finding (and its code context, when read); `rule`
    is the harvested knowledge of the finding's rule (secai.analysis.rules.rule_knowledge), if any. The
    scanner's own prose (title, message, fix hint, a suppression's justification) appears only as a
    quotation attributed to the scanner and capped (secai.untrusted.quote), so that an analysis, and
    the assistant turn trained on it, never says in its own voice what a report told it to; links
    are kept only when http(s)."""
    path = (finding.get("location") or {}).get("path")
    in_tests = is_test_path(path)
    entry = knowledge.load().match(finding).render(facts_of(finding), test_code=in_tests)
    summary = entry["summary"]
    place = _place(finding)
    if (path or place) not in summary:
        summary += f" It is at {place}."
    if in_tests and not entry["test_lowers"]:  # the entry has no reading of its own for test code
        summary += f" {path} is test code, not code the application runs."
    enclosing = (context or {}).get("enclosing")
    if enclosing and enclosing.get("name") and enclosing["name"] not in summary:
        summary += f" The code is in {enclosing['kind']} {enclosing['name']}."
    if finding.get("message") and finding["message"] not in (finding["title"], finding.get("description")):
        summary += f" {finding['tool']} says: {quote(finding['message'])}"
    remediation = entry["remediation"]
    pkg = finding.get("package") or {}
    manifest = manifest_line(root, finding)
    if pkg.get("name") and finding["category"] in ("sca", "container"):
        if pkg["name"] not in remediation:  # the entry's template did not already name the upgrade
            target = upgrade_target(pkg.get("version"), pkg.get("fixed_versions", []))
            remediation = (f"Upgrade {pkg['name']} from {pkg.get('version', 'the installed version')} to "
                           f"{target or 'a version without this vulnerability (none is published yet)'}. {remediation}")
        if manifest:
            remediation = f"It is declared in {manifest[0]} line {manifest[1]} (`{manifest[2].strip()}`). {remediation}"
    if finding.get("fix_hint") and REDACTED not in finding["fix_hint"]:
        remediation += f" {finding['tool']} advises: {quote(finding['fix_hint'])}"
    analysis = {
        "summary": summary,
        "impact": entry["impact"],
        "remediation": remediation,
        "prevention": entry["prevention"],
        "risk": _risk(finding, entry),
        "references": http_links([*finding.get("references", []), *entry["references"]]),
    }
    fix = _fix(finding, manifest)
    if fix is None and (made := rule_fix(finding, context, root)):
        fix = made[0]
    if fix:
        analysis["fix"] = {k: v for k, v in fix.items() if v}
    return analysis


def kb_version() -> str:
    """The knowledge base's version: its entries' and its fix rules' content hashes, together."""
    return hashlib.sha256(f"{knowledge.version()}:{fixes_version()}".encode()).hexdigest()[:16]
