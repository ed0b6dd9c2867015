"""Semgrep's own autofix (a rule's `fix` or `fix-regex`), made by semgrep itself, as a finding's fix.

    fixes = autofixes([(finding, context)], root, Path(".scanners/bin/semgrep"), Path("rules/"), cache)
    fixes[0]    # analysis/1 analysis.fix, or None

or, a step at a time: autofix_hunks([Request("k1", finding, rule)], ...) and autofix_fix(hunk, context, finding).

When the rule that reported a semgrep finding carries an autofix (secai.analysis.rules.semgrep_rule),
semgrep is run with that rule alone, offline, on a copy of the finding's file in a temporary
directory: `semgrep scan --config RULE --autofix --dryrun --json` (dry run: no file is written,
not even the copy; semgrep reports each match's `fixed_lines`, the match's lines with its own fix
applied and no other). The result whose lines are the finding's gives the hunk: the finding's
lines and what they become. Only those lines change, whatever else the rule matches in the file.
autofix_fix turns a hunk into the fix format of the fix-rule engine (`original` as the code
context shows it, `code`), widened to the enclosing unit when the changed lines alone do not
parse; the fix then passes the same gate as every other (secai.analysis.verify).

The rule file is untrusted data: only its mapping, re-serialised by yaml.safe_dump, is written to
the temporary directory (so nothing of the rule's file but that rule reaches semgrep); semgrep
runs as an argument list, without a shell, with a timeout, in its own process group, with
metrics and version checks off; a rule semgrep cannot use (broken, unknown syntax) or a run that
fails gives no hunk, never an error. Each rule runs once for all the files of a batch. Hunks are
cached (`cache`, keyed by the semgrep executable, the rule, the file's content and the lines), so
a re-run does not start semgrep again. An autofix known to be wrong for the code it matches
(DISTRUSTED) is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from secai.analysis.rescan import run_scanner
from secai.cache import Cache, key

TIMEOUT = 120.0              # seconds for one semgrep run
MAX_FILE = 2 * 1024 * 1024   # bytes: a bigger file is not copied
# a rule's own id -> why its autofix is not a fix (the fix rules of kb/fixes may still make one)
DISTRUSTED = {
    "missing-user": "inserts USER non-root, a user that no image has: the container would not start",
    "missing-user-entrypoint": "inserts USER non-root, a user that no image has: the container would not start",
    "subprocess-shell-true": "sets shell=False whatever the command is: a command string would then name a "
                             "program called like the whole string",
}


@dataclass(frozen=True)
class Request:
    """A finding whose rule has an autofix: `key` names it in the result; `rule` is the rule's
    mapping (rules.semgrep_rule)."""

    key: str
    finding: dict
    rule: dict


def distrusted(finding: dict) -> str | None:
    """Why the autofix of a semgrep finding's rule is no fix (DISTRUSTED, by the rule's own id: the
    last dotted part of the finding's rule id, which carries the config folder in front), or None.
    Such an autofix is also no advice: the finding's fix hint (the rule's fixed text) is not quoted."""
    if finding.get("tool") != "semgrep":
        return None
    return DISTRUSTED.get((finding.get("rule_id") or "").rsplit(".", 1)[-1])


def has_autofix(rule: dict | None) -> bool:
    """Whether a semgrep rule mapping carries an autofix secai may use."""
    if not isinstance(rule, dict) or rule.get("id") in DISTRUSTED:
        return False
    fix, regex = rule.get("fix"), rule.get("fix-regex")
    return isinstance(fix, str) or (isinstance(regex, dict) and isinstance(regex.get("regex"), str))


def _rule_text(rule: dict) -> str | None:
    try:
        return yaml.safe_dump({"rules": [rule]}, sort_keys=True, allow_unicode=True)
    except yaml.YAMLError:  # e.g. a value safe_dump cannot write
        return None


def _identity(semgrep: Path) -> list:
    st = semgrep.stat()
    return [str(semgrep.resolve()), st.st_size, st.st_mtime_ns]


def autofix_hunks(requests: list[Request], root: Path, semgrep: Path, cache: Cache | None = None,
                  timeout: float = TIMEOUT) -> dict[str, dict]:
    """{request key: hunk} for the requests whose rule's autofix changes the finding's lines; a hunk
    is {"path", "start", "end", "original": [lines], "fixed": [lines]} (1-based, inclusive)."""
    from secai.analysis.context import NoContext, locate

    cache = cache or Cache(None)
    try:
        who = _identity(semgrep)
    except OSError:
        return {}
    out: dict[str, dict] = {}
    todo: dict[str, list] = {}   # rule text -> [(request, cache key, file text, real path)]
    for r in requests:
        loc = r.finding.get("location") or {}
        if not (loc.get("path") and loc.get("start_line") and has_autofix(r.rule)):
            continue
        text = _rule_text(r.rule)
        try:
            real, _ = locate(root, loc["path"])
            if real.stat().st_size > MAX_FILE:
                continue
            body = real.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
        except (NoContext, OSError):
            continue
        if text is None:
            continue
        k = key("semgrep-autofix", who, text, hashlib.sha256(body.encode()).hexdigest(), loc["start_line"],
                loc.get("end_line") or loc["start_line"])
        hit = cache.get(k)
        if hit is not None:
            if hit.get("hunk"):
                out[r.key] = hit["hunk"]
            continue
        todo.setdefault(text, []).append((r, k, body, real))
    for text, items in todo.items():
        found = _run(text, items, semgrep, timeout)
        for r, k, _, _ in items:
            hunk = found.get(r.key)
            cache.put(k, {"hunk": hunk})
            if hunk:
                out[r.key] = hunk
    return out


def _run(rule_text: str, items: list, semgrep: Path, timeout: float) -> dict[str, dict]:
    """One semgrep run of one rule over copies of the items' files; their hunks by request key."""
    with tempfile.TemporaryDirectory(prefix="secai-autofix-") as tmp:
        work = Path(tmp)
        (work / "rule.yaml").write_text(rule_text, encoding="utf-8")
        (work / ".semgrepignore").write_text("# nothing is ignored: every copy is a target\n")
        copies = {}
        for n, (r, _, body, real) in enumerate(items):
            rel = f"files/{n}/{real.name}"
            (work / "files" / str(n)).mkdir(parents=True)
            (work / rel).write_text(body, encoding="utf-8")
            copies[r.key] = rel
        argv = [str(semgrep), "scan", "--config", "rule.yaml", "--autofix", "--dryrun", "--json", "--metrics", "off",
                "--quiet", "--disable-version-check", "--no-git-ignore", "--disable-nosem", *sorted(set(copies.values()))]
        try:
            code, stdout, _ = run_scanner(argv, work, timeout)
            report = json.loads(stdout) if code in (0, 1) else None
        except (RuntimeError, OSError, ValueError):
            report = None
    results = report.get("results") if isinstance(report, dict) else None
    if not isinstance(results, list):
        return {}
    hunks = {}
    for r, _, body, _ in items:
        loc = r.finding["location"]
        start, end = loc["start_line"], loc.get("end_line") or loc["start_line"]
        lines = body.split("\n")
        for res in results:
            try:
                here = (PurePosixPath(res["path"]).as_posix().lstrip("./") == copies[r.key]
                        and res["start"]["line"] == start and res["end"]["line"] == end)
                fixed = res["extra"]["fixed_lines"] if here else None
            except (KeyError, TypeError):
                continue
            if isinstance(fixed, list) and all(isinstance(x, str) for x in fixed) and end <= len(lines):
                original = lines[start - 1:end]
                if fixed != original:
                    hunks[r.key] = {"path": loc["path"], "start": start, "end": end, "original": original,
                                    "fixed": fixed}
                break
    return hunks


def autofixes(pairs: list[tuple[dict, dict | None]], root: Path | None, semgrep: Path | None,
              semgrep_rules: Path | None, cache: Cache | None = None) -> list[dict | None]:
    """For each (finding, code context): the fix its semgrep rule's own autofix makes (autofix_fix),
    or None; semgrep runs once per rule for all of them (what secai.analysis.explain asks per batch)."""
    out: list[dict | None] = [None] * len(pairs)
    if semgrep is None or semgrep_rules is None or root is None:
        return out
    from secai.analysis.rules import semgrep_rule

    requests = []
    for n, (finding, context) in enumerate(pairs):
        if finding.get("tool") == "semgrep" and context:
            found = semgrep_rule(semgrep_rules, finding.get("rule_id") or "")
            if found and has_autofix(found[0]):
                requests.append(Request(str(n), finding, found[0]))
    hunks = autofix_hunks(requests, root, semgrep, cache) if requests else {}
    for r in requests:
        out[int(r.key)] = autofix_fix(hunks.get(r.key), pairs[int(r.key)][1], r.finding)
    return out


def autofix_fix(hunk: dict | None, context: dict | None, finding: dict) -> dict | None:
    """The fix (language, original, code, explanation, verification) a hunk makes of the finding's
    code context, or None: the hunk's lines must be the context's (a file changed since, or a secret
    blanked in the context, gives none), and the changed lines must parse on their own, else with
    the rest of the enclosing unit the context shows."""
    from secai.analysis.languages import parses
    from secai.secrets import REDACTED

    if not hunk or not context or not context.get("code"):
        return None
    rule_id = finding.get("rule_id", "")
    base, texts = context["start_line"], context["code"].split("\n")
    a, b = hunk["start"] - base, hunk["end"] - base
    if a < 0 or b >= len(texts) or texts[a:b + 1] != hunk["original"]:
        return None
    language = context.get("language", "")
    spans = [(a, b)]
    enclosing = context.get("enclosing") or {}
    if enclosing:
        ea, eb = enclosing["start_line"] - base, enclosing["end_line"] - base
        if 0 <= ea <= a and b <= eb < len(texts):
            spans.append((ea, eb))
    for lo, hi in spans:
        original = texts[lo:hi + 1]
        code = texts[lo:a] + hunk["fixed"] + texts[b + 1:hi + 1]
        if any(REDACTED in line for line in original + code):
            return None
        if parses("\n".join(code), language):
            return {"language": context["language"], "original": "\n".join(original), "code": "\n".join(code),
                    "explanation": f"Applies the autofix that the Semgrep rule {rule_id.rsplit('.', 1)[-1]} itself "
                                   f"defines, as semgrep makes it for these lines (other matches of the rule in the "
                                   f"file are left alone).",
                    "verification": f"Re-run semgrep on {context['path']}: {rule_id} must no longer be reported "
                                    f"there, and the file must still parse."}
    return None


def semgrep_executable(scanners_dir: str | os.PathLike | None) -> Path | None:
    """semgrep in `scanners_dir` (or its bin/), when it is there and executable."""
    if not scanners_dir:
        return None
    for p in (Path(scanners_dir) / "semgrep", Path(scanners_dir) / "bin" / "semgrep"):
        if p.is_file() and os.access(p, os.X_OK):
            return p.resolve()
    return None
