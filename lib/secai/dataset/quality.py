"""The quality report of a build (`make quality` -> build/quality.json, shown in the summary).

Per tool and language, read from what the pipeline wrote (analyses, both stages' examples, the
verification report):
- findings, and the distinct rules they come from;
- templates: the share of analyses whose remediation is the same text for >= 3 distinct rules once
  the finding's own words (path, resource, rule id, title, message) and then every path, quoted
  string, dotted name and number are normalised away: advice that does not depend on the rule;
- verified fixes: the share of findings with a code fix the reporting scanner confirmed
  (`--verify-fixes`); without a verification report only fixes that parse are known, and the share
  is null;
- private text: local paths in training examples (under a user's home, the project or the working
  directory, or an existing path of this machine outside its system folders) and e-mail addresses
  outside the reserved example domains;
- unsupported severity claims: analyses saying that the scanner rated the finding when the finding
  carries no severity of the scanner's own (`tool_severity`).

    python -m secai.dataset.quality --build build [-o build/quality.json] [-q]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import orjson

from secai import secrets
from secai.analysis.languages import detect_language
from secai.files import write_atomic
from secai.records import strings

TEMPLATE_RULES = 3   # a remediation shared by this many distinct rules is a template

_QUOTED = re.compile(r"“[^”]*”|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|`[^`]*`")
_PATH = re.compile(r"(?<![\w])(?:[\w.~-]*/[\w./~*-]+|[\w-]+\.(?:py|js|ts|go|java|kt|rb|php|tf|ya?ml|json|xml|cfg|ini|toml|sh))\b")
_DOTTED = re.compile(r"\b[\w-]+(?:\.[\w-]+)+\b")
_NUMBER = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/(?:[\w.-]+/)+[\w.-]+")  # two names at least: "/home/" is a web route
# the system's own folders (FHS): a path under them names no user's files, whoever's machine it is
_SYSTEM = ("/etc/", "/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/var/", "/proc/", "/dev/", "/sys/", "/run/",
           "/tmp/", "/opt/", "/srv/", "/boot/", "/root/")
# the personal data secai.secrets redacts (secai.personal): e-mail addresses, home folders' user names
_EMAIL, _HOME = (next(p for p in secrets.PATTERNS if p.name == name) for name in ("email-address", "home-directory"))


def template_key(analysis: dict) -> str:
    """The remediation of an analysis with everything specific to its finding normalised away."""
    f = analysis["finding"]
    text = analysis["analysis"].get("remediation", "")
    loc = f.get("location") or {}
    for own in (loc.get("path"), loc.get("resource"), f.get("rule_id"), f.get("title"), f.get("message")):
        if own and len(own) >= 3:
            text = text.replace(own, " ")
    for pattern, token in ((_QUOTED, "Q"), (_PATH, "P"), (_DOTTED, "D"), (_NUMBER, "N")):
        text = pattern.sub(token, text)
    return _SPACE.sub(" ", text).strip()


def language_of(analysis: dict) -> str:
    context = analysis.get("code_context") or {}
    if context.get("language"):
        return context["language"]
    path = (analysis["finding"].get("location") or {}).get("path")
    return detect_language(path) if path else "-"


@lru_cache(maxsize=65536)
def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except OSError:
        return False


def private_text(text: str, prefixes: tuple[str, ...]) -> dict[str, int]:
    """How many local paths and non-example e-mail addresses `text` holds. A local path: under a user's
    home (/home/USER, /Users/USER, C:\\Users\\USER), under one of `prefixes`, or an absolute path
    outside the system's folders that exists on this machine (an artifact or checkout path); advice
    such as /tmp/x.tgz, and /etc/passwd in scanned code, are none."""
    paths = sum(1 for m in _HOME.regex.finditer(text) if not _HOME.keep(m))
    paths += sum(1 for m in _ABSOLUTE.finditer(text) if not _HOME.regex.match(m[0])
                 and (m[0].startswith(prefixes) or not m[0].startswith(_SYSTEM) and _exists(m[0])))
    emails = sum(1 for m in _EMAIL.regex.finditer(text) if not _EMAIL.keep(m))
    return {"local_paths": paths, "emails": emails}


def severity_claim_unsupported(analysis: dict) -> bool:
    f = analysis["finding"]
    if f.get("tool_severity"):
        return False
    claim = f"{f['tool']} rates it"
    return any(isinstance(v, str) and claim in v for v in strings(analysis["analysis"]))


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def local_prefixes(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Absolute folders of this machine whose names must not reach training text."""
    from secai.config import CHECKOUT

    found = {*((str(CHECKOUT),) if CHECKOUT else ()), str(Path.cwd()), *extra}
    return tuple(sorted(p + "/" for p in found if len(p) > 1))


def figures(analyses: list[dict], examples: list[dict], verify: dict | None,
            prefixes: tuple[str, ...] = ()) -> dict:
    """The quality figures (see the module's docstring), per (tool, language) and in total."""
    rules_of_key = defaultdict(set)
    for a in analyses:
        rules_of_key[template_key(a)].add((a["finding"]["tool"], a["finding"]["rule_id"]))
    verified = None if verify is None else {x["finding_id"] for x in verify.get("fixes", []) if x.get("verified")}
    group_of = {}
    per_analysis = defaultdict(list)
    for a in analyses:
        f = a["finding"]
        key = group_of[f["id"]] = (f["tool"], language_of(a))
        per_analysis[key].append({"rule": (f["tool"], f["rule_id"]),
                                  "template": len(rules_of_key[template_key(a)]) >= TEMPLATE_RULES,
                                  "verified": verified is not None and f["id"] in verified,
                                  "claim": severity_claim_unsupported(a)})
    per_example = defaultdict(list)
    for e in examples:
        meta = e.get("metadata") or {}
        key = group_of.get(meta.get("finding_id")) or (meta.get("tool", "-"), meta.get("language", "-"))
        per_example[key].append({"fix": meta.get("finding_id") if e.get("stage") == "codefix" else None,
                                 **private_text("\n".join(strings(e)), prefixes)})
    rows = [_row(*key, per_analysis[key], per_example[key], verified is not None)
            for key in sorted(set(per_analysis) | set(per_example))]
    everything = [x for v in per_analysis.values() for x in v], [x for v in per_example.values() for x in v]
    return {"verification": verified is not None, "template_rules": TEMPLATE_RULES,
            "total": _row("*", "*", *everything, verified is not None), "by_tool_language": rows}


def _row(tool: str, language: str, analyses: list[dict], examples: list[dict], verification: bool) -> dict:
    n = len(analyses)

    def share(flag: str) -> float | None:
        return round(sum(a[flag] for a in analyses) / n, 3) if n else None

    return {"tool": tool, "language": language, "findings": n, "rules": len({a["rule"] for a in analyses}),
            "template_share": share("template"),
            "verified_fix_share": share("verified") if verification else None,
            "fixes": len({e["fix"] for e in examples if e["fix"]}),
            "local_paths": sum(e["local_paths"] for e in examples), "emails": sum(e["emails"] for e in examples),
            "unsupported_severity_claims": sum(a["claim"] for a in analyses)}


def report(build: Path) -> dict:
    """The figures of a build folder, from the files `make all` writes there."""
    training = build / "training"
    verify_file = training / "codefix-verify.json"
    verify = orjson.loads(verify_file.read_bytes()) if verify_file.is_file() else None
    examples = _read(training / "analysis.jsonl") + _read(training / "codefix.jsonl")
    return {"build": build.name, **figures(_read(build / "analyses.jsonl"), examples, verify, local_prefixes())}


def render(q: dict) -> str:
    cols = ("tool", "language", "findings", "rules", "template_share", "verified_fix_share", "fixes",
            "local_paths", "emails", "unsupported_severity_claims")
    heads = ("tool", "language", "findings", "rules", "templates", "verified", "fixes", "paths", "e-mails", "sev. claims")

    def cell(v):
        return "—" if v is None else f"{v:.0%}" if isinstance(v, float) else str(v)

    rows = [[cell(r[c]) for c in cols] for r in [*q["by_tool_language"], q["total"]]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    line = "  ".join
    out = [f"quality of {q['build']}" + ("" if q["verification"] else " (fixes not verified: VERIFY off)"),
           line(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    out += [line(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m secai.dataset.quality", description="The quality figures of a build.")
    p.add_argument("--build", default="build", help="the build folder (default: build)")
    p.add_argument("-o", "--output", help="write the figures here as JSON (atomically)")
    p.add_argument("-q", "--quiet", action="store_true", help="no table on stderr")
    args = p.parse_args(argv)
    build = Path(args.build)
    if not (build / "analyses.jsonl").is_file():
        print(f"secai.dataset.quality: error: {build}/analyses.jsonl: not built (make analyze)", file=sys.stderr)
        return 1
    q = report(build)
    if args.output:
        write_atomic(Path(args.output), orjson.dumps(q, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    else:
        sys.stdout.buffer.write(orjson.dumps(q, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    if not args.quiet:
        print(render(q), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
