"""Fix verification: a code fix counts only when the scanner that reported the finding agrees.

For each candidate (a finding, its code context and a fix with `original` and `code`):
1. the fix is placed in a copy of its file where secai.analysis.placement puts it (and where SARIF
   offers it): `original` must still be the file's lines where the context was read (`[REDACTED]`
   in it stands for the secret the file holds there), and those lines are replaced by `code`
   (re-indented when the code comes dedented);
2. the whole fixed file must parse for its language (secai.analysis.languages.parses), and the fix must
   not add a suppression comment (nosec, nosemgrep, checkov:skip, ...);
   a YAML or JSON file must not gain a Kubernetes platform problem (secai.analysis.platform: an
   object the API server or the kubelet refuses, or a setting a privileged container ignores) that
   the original did not have: PLATFORM_REJECTED or NO_EFFECT, with the problem as the detail;
3. the scanner that reported the finding runs again (secai.analysis.rescan) with its whole rule set
   for that file (bandit: every test; checkov: every check of the check's framework; semgrep: the
   whole config the report was made with) over the fixed copies and one unmodified copy of each
   source file, its baseline, in the same run. The fix is verified when
   - the scanner demonstrably read the fixed file and its baseline (Checkov: it has a result, pass
     or fail, of some check of the run there; Bandit and Semgrep: scanned without a parse error);
   - the finding's rule reports nothing in the fixed lines of that file (Checkov: nor on its resource);
   - and the fixed file has no finding the baseline does not have: per rule id, counted (lines move,
     so counts are compared, not places). Else NEW_FINDING, with the added rule ids as the detail.
   A run that fails (the scanner exits badly, times out, prints no report) is FAILED for its fixes.

Copies live in a temporary directory, one folder per tool and run, in it one folder per candidate
(`<n>/<path in the source root>`) and one per baseline (`b<m>/<path>`); a Terraform file takes the
other Terraform files of its directory along, because Checkov's graph checks connect resources
across files. Each scanner runs once over all its candidates (they are slow to start) — except that
a Checkov graph check (CKV2_*) outside Terraform gets a run without other copies of its kind of file
(but with its baseline), since its graph spans every file of a run. In the shared run, graph checks
see every copy too; a fixed file and its baseline see the same graph, so their counts still compare.
How scanners are found and run (no shell, a timeout, telemetry off) is secai.analysis.rescan's;
nothing from a report or a fix is ever executed: scanners read the copies as data.

    verdicts = verify([Candidate("k1", finding, context, fix)], Path("src"), Scanners.find())
    verdicts["k1"].verified, verdicts["k1"].reason
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from secai.analysis import placement, platform, rescan
from secai.analysis.rescan import MAX_COPY, TERRAFORM, VERIFIERS, Scanners, own_id, semgrep_rule_ids

LANGUAGES = {"bandit": {"python"}, "semgrep": {"python", "javascript", "typescript", "dockerfile", "html"},
             "checkov": {"hcl", "dockerfile", "yaml", "json"}}
SUPPRESSIONS = re.compile(r"#\s*nosec\b|nosemgrep|checkov:skip|bridgecrew:skip|kics-scan\s+ignore|tfsec:ignore"
                          r"|trivy:ignore|hadolint\s+ignore|#\s*noqa\b|NOSONAR", re.I)

# verdict reasons
VERIFIED = "verified"
STILL_REPORTED = "finding still reported"
NOT_CHECKED = "scanner did not check the fixed file"
NEW_FINDING = "fix adds a new finding"                  # the detail names the rule ids, with how many more
NO_BASELINE = "scanner did not check the unmodified file"  # so nothing tells what the fix added
NO_PARSE = "fixed file does not parse"
WAS_BROKEN = "file does not parse before the fix"
NOT_PLACED = placement.NOT_PLACED
SUPPRESSED = "fix adds a suppression comment"
NO_SCANNER = "scanner not installed"
NO_VERIFIER = "no verifier for this tool"
NO_LANGUAGE = "language not verifiable"
NO_RULE = "rule unknown to the scanner"
NO_SOURCE = "source file not readable"
FAILED = "scanner failed"
PLATFORM_REJECTED = "platform rejects the fixed file"    # the API server or the kubelet refuses it
NO_EFFECT = "fix has no effect on the platform"          # it relies on a setting the platform ignores


@dataclass
class Candidate:
    """A fix to verify: `key` names it in the result; `context` is analysis/1 code_context and
    `fix` analysis/1 analysis.fix (language, code, original)."""

    key: str
    finding: dict
    context: dict
    fix: dict


@dataclass(frozen=True)
class Verdict:
    verified: bool
    reason: str                 # VERIFIED or why not (one of the reasons above, maybe with detail)
    scanner: str | None = None  # the scanner that re-checked (None when none could)
    detail: str | None = None   # what exactly (the platform problems of PLATFORM_REJECTED, NO_EFFECT)


# ---------------------------------------------------------------- placing a fix

class _Reject(Exception):
    """A candidate rejected before any scanner runs; the message is the reason, `detail` what exactly."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.detail = detail


def place(text: str, context: dict, fix: dict) -> tuple[str, int, int]:
    """(fixed text, first line, last line of the fix in it) for a fix in a file's text, placed where
    secai.analysis.placement puts it (as SARIF offers it); _Reject when it finds no place."""
    lines = text.split("\n")
    try:
        placed = placement.place(lines, context, fix)
    except placement.NotPlaced as exc:
        raise _Reject(str(exc)) from None
    return "\n".join(placed.apply(lines)), placed.start, placed.fixed_end


def _prepare(c: Candidate, root: Path) -> tuple[str, str, int, int, Path, str]:
    """(source text, fixed text, first and last fixed line, the real source file, its path under
    the root) or _Reject. The path is the one secai.analysis.context.locate resolves (never one that leaves the root)."""
    from secai.analysis.context import NoContext, locate
    from secai.analysis.languages import can_check, parses

    language = c.context.get("language", "")
    if not can_check(language):
        raise _Reject(NO_LANGUAGE)
    try:
        real, rel = locate(root, c.context["path"])
        if real.stat().st_size > MAX_COPY:
            raise _Reject(NO_SOURCE + " (too large)")
        text = real.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
    except (NoContext, OSError) as exc:
        raise _Reject(f"{NO_SOURCE}: {exc}") from None
    if len(SUPPRESSIONS.findall(c.fix["code"])) > len(SUPPRESSIONS.findall(c.fix.get("original", ""))):
        raise _Reject(SUPPRESSED)
    fixed, first, last = place(text, c.context, c.fix)
    if not parses(fixed, language):
        raise _Reject(NO_PARSE if parses(text, language) else WAS_BROKEN)
    if language in platform.LANGUAGES:
        problems = platform.introduced(text, fixed)
        if problems:
            raise _Reject(PLATFORM_REJECTED if problems[0].kind == platform.REJECTED else NO_EFFECT,
                          "; ".join(map(str, problems)))
    return text, fixed, first, last, real, rel


# ---------------------------------------------------------------- re-scanning the copies

def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


@dataclass
class _Job:
    """A prepared candidate: its number, its source file (text, real path, path under the root),
    the fixed text and lines, the rule to check, the finding's resource and (Checkov) the
    framework of its check; `copy` is its fixed copy's path in its run folder once written."""

    key: str
    n: int
    source: str
    real: Path
    rel: str
    fixed: str
    span: tuple[int, int]
    rule_id: str
    resource: str | None
    framework: str | None = None
    copy: str = ""


def _framework(finding: dict, language: str) -> str | None:
    """The Checkov framework (check type) the finding was reported under: its tag (Checkov's JSON
    report names it), else the check's framework when it is the language's own (a Terraform file,
    a Dockerfile); None when unknown (then every framework runs)."""
    from secai.analysis.rules import harvested, rule_knowledge

    names = {r["framework"] for r in harvested("checkov")["records"]} | {"terraform_json"}
    tag = next((t for t in finding.get("tags") or () if t in names), None)
    if tag:
        return tag
    known = rule_knowledge(finding)
    framework = known["frameworks"][0] if known and known.get("frameworks") else None
    return framework if (framework, language) in (("terraform", "hcl"), ("dockerfile", "dockerfile")) else None


def _checkov_runs(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs in runs that cannot see each other's fixes. Checkov's graph checks (CKV2_*) connect
    resources across all the files of a run (a NetworkPolicy in one copy would cover the pods of
    every other copy), except in Terraform, whose graph stops at the directory. So: one run for the
    plain checks and Terraform; each further run has at most one graph job per kind of file."""
    def kind(j: _Job) -> str:
        return "workflow" if "/.github/workflows/" in f"/{j.rel}" else PurePosixPath(j.rel).suffix or j.rel

    isolated = [j for j in jobs if j.rule_id.startswith("CKV2_") and not j.rel.endswith(TERRAFORM)]
    first = [j for j in jobs if j not in isolated]
    rounds: list[dict[str, _Job]] = []
    for j in isolated:
        slot = next((r for r in rounds if kind(j) not in r), None)
        if slot is None:
            rounds.append(slot := {})
        slot[kind(j)] = j
    return [run for run in [first, *(list(r.values()) for r in rounds)] if run]


def _judge(tool: str, j: _Job, scan: rescan.Scan, baseline: str) -> Verdict:
    """The verdict on one fixed copy, from its run's scan and its source file's baseline copy there."""
    if j.copy not in scan.read:
        return Verdict(False, NOT_CHECKED, tool)
    hits = scan.hits.get(j.copy, [])
    same = (lambda rule: own_id(rule) == own_id(j.rule_id)) if tool == "semgrep" else (lambda rule: rule == j.rule_id)
    if any(same(h.rule) and ((j.resource and h.resource == j.resource) or _overlaps(h.lines, j.span)) for h in hits):
        return Verdict(False, STILL_REPORTED, tool)
    if baseline not in scan.read:
        return Verdict(False, NO_BASELINE, tool)
    added = Counter(h.rule for h in hits) - Counter(h.rule for h in scan.hits.get(baseline, []))
    if added:
        return Verdict(False, NEW_FINDING, tool, ", ".join(f"{rule} (+{n})" for rule, n in sorted(added.items())))
    return Verdict(True, VERIFIED, tool)


def _scan_run(tool: str, jobs: list[_Job], run: Path, scanners: Scanners, root: Path) -> dict[str, Verdict]:
    """Write one run's copies (each job's fixed file as <n>/<rel>, one unmodified copy of each of
    their source files as b<m>/<rel>), scan them once and judge every job; FAILED when the run fails."""
    baselines: dict[str, str] = {}
    try:
        for j in jobs:
            j.copy = rescan.write_copy(run, str(j.n), j.rel, j.fixed, j.real, root, tool)
            if j.rel not in baselines:
                baselines[j.rel] = rescan.write_copy(run, f"b{len(baselines)}", j.rel, j.source, j.real, root, tool)
        if tool == "checkov":
            frameworks = {j.framework for j in jobs}
            scan = rescan.checkov(run, scanners, None if None in frameworks else frameworks)
        else:
            scan = rescan.bandit(run, scanners) if tool == "bandit" else rescan.semgrep(run, scanners)
    except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
        return {j.key: Verdict(False, f"{FAILED}: {exc}", tool) for j in jobs}
    return {j.key: _judge(tool, j, scan, baselines[j.rel]) for j in jobs}


def _unknown_rules(tool: str, jobs: list[_Job], work: Path, scanners: Scanners) -> dict[str, Verdict]:
    """NO_RULE for the jobs whose rule the installed scanner (Bandit) or the Semgrep config lacks."""
    if tool == "bandit":
        known = rescan.bandit_tests(scanners, work)
        return {j.key: Verdict(False, f"{NO_RULE}: {j.rule_id}", tool)
                for j in jobs if known and j.rule_id not in known}
    if tool == "semgrep":
        defined = semgrep_rule_ids(c for c in scanners.semgrep_configs if Path(c).exists())
        where = ", ".join(scanners.semgrep_configs) or "none given"
        return {j.key: Verdict(False, f"{NO_RULE}: {j.rule_id} is not in the Semgrep config ({where})", tool)
                for j in jobs if j.rule_id not in defined and own_id(j.rule_id) not in defined}
    return {}


def _check(tool: str, jobs: list[_Job], work: Path, scanners: Scanners, root: Path) -> dict[str, Verdict]:
    """Every job of one tool: its runs (Checkov: _checkov_runs, two at a time; else one run) in
    folders run<k> under `work`."""
    work.mkdir(parents=True, exist_ok=True)
    try:
        verdicts = _unknown_rules(tool, jobs, work, scanners)
    except (RuntimeError, OSError) as exc:
        return {j.key: Verdict(False, f"{FAILED}: {exc}", tool) for j in jobs}
    jobs = [j for j in jobs if j.key not in verdicts]
    runs = _checkov_runs(jobs) if tool == "checkov" else [jobs] if jobs else []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for result in pool.map(lambda k: _scan_run(tool, runs[k], work / f"run{k}", scanners, root), range(len(runs))):
            verdicts.update(result)
    return verdicts


def verify(candidates: list[Candidate], root: Path | str, scanners: Scanners) -> dict[str, Verdict]:
    """A Verdict for every candidate, keyed by Candidate.key (see the module's description)."""
    root = Path(root)
    verdicts: dict[str, Verdict] = {}
    groups: dict[str, list[_Job]] = {}
    for n, c in enumerate(candidates):
        tool = c.finding.get("tool", "")
        if tool not in VERIFIERS:
            verdicts[c.key] = Verdict(False, NO_VERIFIER)
            continue
        if c.context.get("language") not in LANGUAGES[tool]:
            verdicts[c.key] = Verdict(False, NO_LANGUAGE, tool)
            continue
        try:
            source, fixed, first, last, real, rel = _prepare(c, root)
        except _Reject as why:
            verdicts[c.key] = Verdict(False, str(why), tool, why.detail)
            continue
        if tool not in scanners.paths:
            verdicts[c.key] = Verdict(False, NO_SCANNER, tool)
            continue
        resource = (c.finding.get("location") or {}).get("resource")
        framework = _framework(c.finding, c.context["language"]) if tool == "checkov" else None
        groups.setdefault(tool, []).append(_Job(c.key, n, source, real, rel, fixed, (first, last), c.finding["rule_id"],
                                                resource, framework))
    with tempfile.TemporaryDirectory(prefix="secai-verify-") as tmp:
        with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
            for result in pool.map(lambda tool: _check(tool, groups[tool], Path(tmp) / tool, scanners, root),
                                   sorted(groups)):
                verdicts.update(result)
    return verdicts


def _language(c: Candidate) -> str:
    return c.context.get("language") or c.fix.get("language") or "?"


def summary(candidates: list[Candidate], verdicts: dict[str, Verdict]) -> dict:
    """Counts: verified and total, per scanner (the finding's tool), per language (the code
    context's) and per reason not verified, overall, per scanner and per language."""
    groups: dict[str, dict[str, Counter]] = {"by_tool": {}, "by_language": {}}
    reasons = Counter()
    why: dict[str, dict[str, Counter]] = {"not_verified_by_tool": {}, "not_verified_by_language": {}}
    for c in candidates:
        v = verdicts[c.key]
        for group, name in (("by_tool", c.finding.get("tool", "?")), ("by_language", _language(c))):
            counts = groups[group].setdefault(name, Counter())
            counts["total"] += 1
            counts["verified"] += v.verified
            if not v.verified:
                why["not_verified_" + group].setdefault(name, Counter())[v.reason] += 1
        if not v.verified:
            reasons[v.reason] += 1
    verified = sum(v.verified for v in verdicts.values())
    return {"verified": verified, "total": len(candidates),
            "ratio": round(verified / len(candidates), 4) if candidates else None,
            **{group: {n: {"verified": c["verified"], "total": c["total"]} for n, c in sorted(per.items())}
               for group, per in groups.items()},
            "not_verified": _by_count(reasons),
            **{group: {n: _by_count(c) for n, c in sorted(per.items())} for group, per in why.items()}}


def _by_count(counts: Counter) -> dict:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def report(candidates: list[Candidate], verdicts: dict[str, Verdict], counts: dict, scanners: Scanners) -> dict:
    """The verification report (--verify-report): the counts, the scanners used, each fix's verdict."""
    return {**counts,
            "scanners": {name: scanners.paths.get(name) for name in sorted(("bandit", "checkov", "semgrep"))},
            "fixes": [{"example_id": c.key, "finding_id": c.finding["id"], "tool": c.finding["tool"],
                       "rule_id": c.finding["rule_id"], "path": c.context["path"], "language": _language(c),
                       "verified": verdicts[c.key].verified, "reason": verdicts[c.key].reason,
                       **({"detail": verdicts[c.key].detail} if verdicts[c.key].detail else {})}
                      for c in candidates]}


def describe(counts: dict) -> str:
    """`verified N/M fixes (bandit a/b, ...); not verified: k reason, ...` for stderr."""
    tools = ", ".join(f"{t} {c['verified']}/{c['total']}" for t, c in counts["by_tool"].items())
    text = f"verified {counts['verified']}/{counts['total']} fixes" + (f" ({tools})" if tools else "")
    if counts["not_verified"]:
        text += "; not verified: " + ", ".join(f"{n} {r}" for r, n in counts["not_verified"].items())
    return text


