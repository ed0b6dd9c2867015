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
3. the scanner that reported the finding runs again on the copy, with the same rule only; the fix
   is verified when that rule reports nothing in the fixed lines of that file, and the scanner
   demonstrably read the file (Checkov: it has a result, pass or fail, of some check of the run
   there; Bandit and Semgrep: the file was scanned without a parse error).

Copies live in a temporary directory, one folder per candidate (`<n>/<path in the source root>`);
a Terraform file takes the other Terraform files of its directory along, because Checkov's graph
checks connect resources across files. Each scanner runs once over all its candidates (they are
slow to start) — except that a Checkov graph check (CKV2_*) outside Terraform gets a run without
other copies of its kind of file, since its graph spans every file of a run — as an argument list
(no shell), with a timeout, in its own process group, with telemetry and update checks off.
Scanners are found in `verify.scanners_dir` (DIR or DIR/bin), else on PATH. Nothing from a report or a fix is ever executed: scanners read the copies as data.

    verdicts = verify([Candidate("k1", finding, context, fix)], Path("src"), Scanners.find())
    verdicts["k1"].verified, verdicts["k1"].reason
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from secai.analysis import placement, platform

VERIFIERS = ("bandit", "checkov", "semgrep")   # tools whose findings can be re-checked
LANGUAGES = {"bandit": {"python"}, "semgrep": {"python", "javascript", "typescript", "dockerfile"},
             "checkov": {"hcl", "dockerfile", "yaml", "json"}}
TERRAFORM = (".tf", ".tf.json", ".tfvars", ".tfvars.json")
MAX_COPY = 2 * 1024 * 1024       # bytes: a bigger file (or Terraform sibling) is not copied
SUPPRESSIONS = re.compile(r"#\s*nosec\b|nosemgrep|checkov:skip|bridgecrew:skip|kics-scan\s+ignore|tfsec:ignore"
                          r"|trivy:ignore|hadolint\s+ignore|#\s*noqa\b|NOSONAR", re.I)
QUIET_ENV = {"SEMGREP_ENABLE_VERSION_CHECK": "0", "SEMGREP_SEND_METRICS": "off", "CHECKOV_PARALLELIZATION_TYPE": "none",
             "PYTHONHASHSEED": "0", "BANDIT_NO_BANNER": "1"}

# verdict reasons
VERIFIED = "verified"
STILL_REPORTED = "finding still reported"
NOT_CHECKED = "scanner did not check the fixed file"
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


@dataclass
class Scanners:
    """Where the scanners are, what Semgrep rules the reports were made with, and the timeout."""

    paths: dict = field(default_factory=dict)     # name -> executable path (absent: not installed)
    semgrep_configs: tuple = ()
    timeout: float = 600.0

    @classmethod
    def find(cls, scanners_dir: str | os.PathLike | None = None, semgrep_configs=(), timeout: float = 600.0):
        """The scanners in `scanners_dir` (or its bin/); without one, in the project's own scanner
        venv (`make scanners`: .scanners/) when it is there, else on PATH."""
        from secai.config import ROOT

        if not scanners_dir and (ROOT / ".scanners" / "bin").is_dir():
            scanners_dir = ROOT / ".scanners"
        paths = {}
        for name in VERIFIERS:
            if scanners_dir:
                found = next((str(p) for p in (Path(scanners_dir) / name, Path(scanners_dir) / "bin" / name)
                              if p.is_file() and os.access(p, os.X_OK)), None)
            else:
                found = shutil.which(name)
            if found:  # absolute: the scanners run in a temporary directory
                paths[name] = os.path.abspath(found)
        return cls(paths, tuple(os.path.abspath(c) for c in semgrep_configs), float(timeout))


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


def _prepare(c: Candidate, root: Path) -> tuple[str, int, int, Path, str]:
    """(fixed text, first and last fixed line, the real source file, its path under the root) or
    _Reject. The path is the one secai.analysis.context.locate resolves (never one that leaves the root)."""
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
    return fixed, first, last, real, rel


# ---------------------------------------------------------------- running scanners

def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(QUIET_ENV)
    return env


def _run(argv: list[str], cwd: Path, timeout: float) -> tuple[int, str, str]:
    """Run a scanner (no shell) in its own process group; the whole group is killed on timeout."""
    proc = subprocess.Popen(argv, cwd=cwd, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"timed out after {timeout:g} s") from None
    return proc.returncode, out, err


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def _json_out(out: str):
    """The JSON document a scanner printed (Checkov may print lines before it)."""
    start = min((i for i in (out.find("{"), out.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON in the scanner's output")
    return json.loads(out[start:])


def _rel(path: str) -> str:
    p = path.replace("\\", "/")
    while p.startswith(("./", "/")):
        p = p[2:] if p.startswith("./") else p[1:]
    return p


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


@dataclass
class _Job:
    """A prepared candidate: its folder number, the copy's path (relative to the work dir), the
    fixed lines' range and the rule to check."""

    key: str
    n: int
    copy: str
    span: tuple[int, int]
    rule_id: str
    resource: str | None


def _bandit(jobs: list[_Job], work: Path, scanners: Scanners) -> dict[str, Verdict]:
    exe = scanners.paths["bandit"]
    code, out, err = _run([exe, "--help"], work, scanners.timeout)
    known = set(re.findall(r"^\s+(B\d{3})\s", out, re.M))
    verdicts = {j.key: Verdict(False, f"{NO_RULE}: {j.rule_id}", "bandit")
                for j in jobs if known and j.rule_id not in known}
    jobs = [j for j in jobs if j.key not in verdicts]
    if not jobs:
        return verdicts
    tests = ",".join(sorted({j.rule_id for j in jobs}))
    code, out, err = _run([exe, "-q", "-f", "json", "--exit-zero", "--ignore-nosec", "-t", tests, "-r", "."],
                          work, scanners.timeout)
    report = _json_out(out)
    scanned = {_rel(p) for p in report.get("metrics", {}) if p != "_totals"}
    broken = {_rel(e.get("filename", "")) for e in report.get("errors", [])}
    hits = [(_rel(r["filename"]), r["test_id"], tuple(r.get("line_range") or [r["line_number"]] * 2))
            for r in report.get("results", [])]
    for j in jobs:
        if j.copy not in scanned or j.copy in broken:
            verdicts[j.key] = Verdict(False, NOT_CHECKED, "bandit")
        elif any(f == j.copy and t == j.rule_id and _overlaps((min(r), max(r)), j.span) for f, t, r in hits):
            verdicts[j.key] = Verdict(False, STILL_REPORTED, "bandit")
        else:
            verdicts[j.key] = Verdict(True, VERIFIED, "bandit")
    return verdicts


def _checkov_runs(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs in runs that cannot see each other's fixes. Checkov's graph checks (CKV2_*) connect
    resources across all the files of a run (a NetworkPolicy in one copy would cover the pods of
    every other copy), except in Terraform, whose graph stops at the directory. So: one run for the
    plain checks and Terraform; each further run has at most one graph job per kind of file."""
    def kind(j: _Job) -> str:
        return "workflow" if "/.github/workflows/" in f"/{j.copy}" else PurePosixPath(j.copy).suffix or j.copy

    isolated = [j for j in jobs if j.rule_id.startswith("CKV2_") and not j.copy.endswith(TERRAFORM)]
    first = [j for j in jobs if j not in isolated]
    rounds: list[dict[str, _Job]] = []
    for j in isolated:
        slot = next((r for r in rounds if kind(j) not in r), None)
        if slot is None:
            rounds.append(slot := {})
        slot[kind(j)] = j
    return [run for run in [first, *(list(r.values()) for r in rounds)] if run]


def _checkov(jobs: list[_Job], work: Path, scanners: Scanners) -> dict[str, Verdict]:
    runs = _checkov_runs(jobs)
    places = []
    for k, run in enumerate(runs):
        place_k = work.parent / f"checkov-run{k}"
        place_k.mkdir()
        for j in run:
            shutil.move(str(work / str(j.n)), str(place_k / str(j.n)))
        places.append(place_k)
    verdicts: dict[str, Verdict] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for result in pool.map(lambda rp: _checkov_run(rp[0], rp[1], scanners), zip(runs, places)):
            verdicts.update(result)
    return verdicts


def _checkov_run(jobs: list[_Job], work: Path, scanners: Scanners) -> dict[str, Verdict]:
    checks = ",".join(sorted({j.rule_id for j in jobs}))
    code, out, err = _run([scanners.paths["checkov"], "--skip-download", "--soft-fail", "--compact", "-d", ".",
                           "--check", checks, "-o", "json"], work, scanners.timeout)
    if code != 0:
        raise RuntimeError(f"exit {code}: {_last_line(err or out)}")
    report = _json_out(out)
    seen, failed = set(), []  # files Checkov read (it has a result for them); the failures
    for part in report if isinstance(report, list) else [report]:
        results = part.get("results") if isinstance(part, dict) else None
        for r in (results or {}).get("passed_checks", []):
            seen.add(_rel(r["file_path"]))
        for r in (results or {}).get("failed_checks", []):
            seen.add(_rel(r["file_path"]))
            failed.append((_rel(r["file_path"]), r["check_id"], tuple(r.get("file_line_range") or (0, 0)),
                           r.get("resource")))
    verdicts = {}
    for j in jobs:
        if any(f == j.copy and c == j.rule_id and ((j.resource and res == j.resource) or _overlaps(lines, j.span))
               for f, c, lines, res in failed):
            verdicts[j.key] = Verdict(False, STILL_REPORTED, "checkov")
        elif j.copy in seen:  # the check passed there, or what it checks is gone (an ADD made a RUN)
            verdicts[j.key] = Verdict(True, VERIFIED, "checkov")
        else:
            verdicts[j.key] = Verdict(False, NOT_CHECKED, "checkov")
    return verdicts


def semgrep_rule_ids(configs) -> set[str]:
    """The ids of the rules in Semgrep config files or directories (read as YAML data)."""
    ids = set()
    for config in configs:
        p = Path(config)
        files = sorted(x for x in p.rglob("*") if x.suffix in (".yml", ".yaml")) if p.is_dir() else [p]
        for f in files:
            try:
                doc = yaml.safe_load(f.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
            for rule in (doc or {}).get("rules", []) if isinstance(doc, dict) else []:
                if isinstance(rule, dict) and isinstance(rule.get("id"), str):
                    ids.add(rule["id"])
    return ids


def _own_id(rule_id: str) -> str:
    """A Semgrep rule's own id: the check id less the config path Semgrep prefixes it with."""
    return rule_id.rsplit(".", 1)[-1]


def _semgrep(jobs: list[_Job], work: Path, scanners: Scanners) -> dict[str, Verdict]:
    configs = [c for c in scanners.semgrep_configs if Path(c).exists()]
    defined = semgrep_rule_ids(configs)
    verdicts = {j.key: Verdict(False, f"{NO_RULE}: {j.rule_id} is not in the Semgrep config "
                                      f"({', '.join(scanners.semgrep_configs) or 'none given'})", "semgrep")
                for j in jobs if j.rule_id not in defined and _own_id(j.rule_id) not in defined}
    jobs = [j for j in jobs if j.key not in verdicts]
    if not jobs:
        return verdicts
    (work / ".semgrepignore").write_text("# nothing is ignored: every copy is a target\n")
    argv = [scanners.paths["semgrep"], "scan", "--json", "--metrics", "off", "--disable-nosem", "--no-git-ignore",
            "--quiet", "--disable-version-check"]
    for c in configs:
        argv += ["--config", str(Path(c).resolve())]
    code, out, err = _run(argv + ["."], work, scanners.timeout)
    if code not in (0, 1):
        raise RuntimeError(f"exit {code}: {_last_line(err or out)}")
    report = _json_out(out)
    scanned = {_rel(p) for p in report.get("paths", {}).get("scanned", [])}
    broken = {_rel(e.get("path", "")) for e in report.get("errors", []) if e.get("path")}
    hits = [(_rel(r["path"]), _own_id(r["check_id"]), (r["start"]["line"], r["end"]["line"]))
            for r in report.get("results", [])]
    for j in jobs:
        if j.copy not in scanned or j.copy in broken:
            verdicts[j.key] = Verdict(False, NOT_CHECKED, "semgrep")
        elif any(f == j.copy and rid == _own_id(j.rule_id) and _overlaps(lines, j.span) for f, rid, lines in hits):
            verdicts[j.key] = Verdict(False, STILL_REPORTED, "semgrep")
        else:
            verdicts[j.key] = Verdict(True, VERIFIED, "semgrep")
    return verdicts


_RUNNERS = {"bandit": _bandit, "checkov": _checkov, "semgrep": _semgrep}


def _copy(work: Path, n: int, rel: str, fixed: str, real: Path, root: Path, tool: str) -> str:
    """Write the fixed file as <n>/<rel> under `work` (with its Terraform siblings); its path there."""
    target = work / str(n) / PurePosixPath(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(fixed if fixed.endswith("\n") else fixed + "\n", encoding="utf-8")
    if tool == "checkov" and real.name.endswith(TERRAFORM):
        base = root.resolve()
        for sibling in sorted(real.parent.iterdir()):
            if (sibling.name != real.name and sibling.name.endswith(TERRAFORM) and not sibling.is_symlink()
                    and sibling.is_file() and sibling.resolve().is_relative_to(base)
                    and sibling.stat().st_size <= MAX_COPY):
                shutil.copyfile(sibling, target.parent / sibling.name)
    return f"{n}/{rel}"


def verify(candidates: list[Candidate], root: Path | str, scanners: Scanners) -> dict[str, Verdict]:
    """A Verdict for every candidate, keyed by Candidate.key (see the module's description)."""
    root = Path(root)
    verdicts: dict[str, Verdict] = {}
    groups: dict[str, list[_Job]] = {}
    with tempfile.TemporaryDirectory(prefix="secai-verify-") as tmp:
        for n, c in enumerate(candidates):
            tool = c.finding.get("tool", "")
            if tool not in VERIFIERS:
                verdicts[c.key] = Verdict(False, NO_VERIFIER)
                continue
            if c.context.get("language") not in LANGUAGES[tool]:
                verdicts[c.key] = Verdict(False, NO_LANGUAGE, tool)
                continue
            try:
                fixed, first, last, real, rel = _prepare(c, root)
            except _Reject as why:
                verdicts[c.key] = Verdict(False, str(why), tool, why.detail)
                continue
            if tool not in scanners.paths:
                verdicts[c.key] = Verdict(False, NO_SCANNER, tool)
                continue
            work = Path(tmp) / tool
            copy = _copy(work, n, rel, fixed, real, root, tool)
            loc = c.finding.get("location") or {}
            groups.setdefault(tool, []).append(_Job(c.key, n, copy, (first, last), c.finding["rule_id"],
                                                    loc.get("resource")))

        def run(tool: str) -> dict[str, Verdict]:
            jobs = groups[tool]
            try:
                return _RUNNERS[tool](jobs, Path(tmp) / tool, scanners)
            except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
                return {j.key: Verdict(False, f"{FAILED}: {exc}", tool) for j in jobs}

        with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
            for result in pool.map(run, sorted(groups)):
                verdicts.update(result)
    return verdicts


def _language(c: Candidate) -> str:
    return c.context.get("language") or c.fix.get("language") or "?"


def summary(candidates: list[Candidate], verdicts: dict[str, Verdict]) -> dict:
    """Counts: verified and total, per scanner (the finding's tool), per language (the code
    context's) and per reason not verified."""
    groups: dict[str, dict[str, Counter]] = {"by_tool": {}, "by_language": {}}
    reasons = Counter()
    for c in candidates:
        v = verdicts[c.key]
        for group, name in (("by_tool", c.finding.get("tool", "?")), ("by_language", _language(c))):
            counts = groups[group].setdefault(name, Counter())
            counts["total"] += 1
            counts["verified"] += v.verified
        if not v.verified:
            reasons[v.reason] += 1
    verified = sum(v.verified for v in verdicts.values())
    return {"verified": verified, "total": len(candidates),
            "ratio": round(verified / len(candidates), 4) if candidates else None,
            **{group: {n: {"verified": c["verified"], "total": c["total"]} for n, c in sorted(per.items())}
               for group, per in groups.items()},
            "not_verified": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))}


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


