"""The table of checks secai-doctor runs (can this machine run secai, and what is missing?), running
them and the report (the command: secai.commands.doctor; the checks: ops.machine, ops.installation).

Each check gives a status — ok, warn or fail — a detail line and, when not ok, one line saying
what to do. `fail` is kept for what blocks the default pipeline (`make all`, offline, with the
tiny test model): Python packages, MLX running an operation, the MiniLM embedder, the tree-sitter
grammars, the configuration, make, disk under the build directory, memory. `warn` is for what
only limits secai: no real base model (the tiny test model is used), scanners missing (no fix
verification), no Hugging Face or GitHub token (no push, no fetch), the daemon not installed.
Exit status: 0 when nothing fails, 1 when something blocks the pipeline, 2 on a usage error.
Token values are never read into the report: only whether one is present, and where.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

from secai import __version__
from secai.errors import UserError
from secai.ops.installation import (check_base_models, check_config, check_daemon, check_github_token,
                                    check_hf_token, check_scanners)
from secai.ops.machine import (check_disk, check_embedder, check_grammars, check_memory, check_mlx,
                               check_packages, check_platform)
from secai.ops.verdict import FAIL, OK, WARN, Check, Options, Result, secai_home, tilde


# ---------------------------------------------------------------- the checks

# (name, group, blocking: whether its failure blocks `make all`, function)
CHECKS = [
    ("platform", "system", True, check_platform),
    ("memory", "system", True, check_memory),
    ("disk", "system", True, check_disk),
    ("packages", "python", True, check_packages),
    ("mlx", "python", True, check_mlx),
    ("embedder", "python", True, check_embedder),
    ("tree-sitter", "python", True, check_grammars),
    ("config", "config", True, check_config),
    ("base-models", "models", True, check_base_models),    # fails only for a real base model without weights
    ("scanners", "optional", False, check_scanners),
    ("hf-token", "optional", False, check_hf_token),
    ("github-token", "optional", False, check_github_token),
    ("daemon", "optional", False, check_daemon),
]
NAMES = [c[0] for c in CHECKS]


def run_check(name: str, group: str, blocking: bool, func, opts: Options) -> Check:
    """One check; an unexpected error in it becomes its result (fail where it guards the pipeline)."""
    try:
        r = func(opts)
    except Result as res:
        r = res
    except UserError as exc:  # a bad setting or input it reads (secai.errors): its message, no type name
        r = Result(FAIL if blocking else WARN, f"could not check: {exc}", "fix what it names, then run secai-doctor again")
    except Exception as exc:
        if opts.verbose:
            import traceback

            traceback.print_exc()
        r = Result(FAIL if blocking else WARN, f"could not check: {type(exc).__name__}: {exc}",
                   "run `secai-doctor -v` for the traceback")
    if r.status == FAIL and not blocking:
        r.status = WARN
    return Check(name, group, r.status, r.detail, None if r.status == OK else r.fix, r.data)


def diagnose(only: list[str] | None = None, *, hash_models: bool = False, verbose: bool = False) -> dict:
    """Every check (or those named): {"checks": [...], "ok": bool, "blocking": [...], "warnings": [...]}."""
    opts = Options(hash=hash_models, verbose=verbose)
    checks = [run_check(n, g, b, f, opts) for n, g, b, f in CHECKS if not only or n in only]
    return {"checks": [asdict(c) for c in checks],
            "ok": not any(c.status == FAIL for c in checks),
            "blocking": [c.name for c in checks if c.status == FAIL],
            "warnings": [c.name for c in checks if c.status == WARN]}


def _marks() -> dict:
    enc = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    if enc in ("utf8", "utf8sig"):
        return {OK: "✓", WARN: "!", FAIL: "✗", "arrow": "→"}
    return {OK: "ok", WARN: "warn", FAIL: "FAIL", "arrow": "->"}


def render_human(report: dict, quiet: bool = False) -> str:
    marks = _marks()
    width = max(len(n) for n in NAMES)
    out = [] if quiet else [f"secai-doctor {__version__}: {tilde(secai_home())}"]
    group = None
    for c in report["checks"]:
        if quiet and c["status"] == OK:
            continue
        if c["group"] != group and not quiet:
            group = c["group"]
            out.append(f"\n{group}")
        out.append(f"  {marks[c['status']]:<2} {c['name']:<{width}}  {c['detail']}")
        if c["fix"]:
            out.append(f"     {'':<{width}}  {marks['arrow']} {c['fix']}")
    if not quiet:
        out.append("")
    warns = report["warnings"]
    w = f"{len(warns)} warning{'s' if len(warns) != 1 else ''}" + (f" ({', '.join(warns)})" if warns else "")
    if report["ok"]:
        out.append(f"verdict: ready: nothing blocks the default pipeline (`make all`); {w}")
    else:
        out.append(f"verdict: BLOCKED by {', '.join(report['blocking'])}; {w}")
        out.append("what to do first:")
        for c in report["checks"]:
            if c["status"] == FAIL:
                out.append(f"  {c['name']}: {c['fix']}")
    return "\n".join(out) + "\n"
