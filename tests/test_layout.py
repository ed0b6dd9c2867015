"""The tree shows the architecture (issue 13): one thin module per command under commands/, the
pipeline's stage packages beside the shared base, commands importing domain code and never each
other, domain code never importing a command, no argparse outside the command layer, and no module
doing two jobs in more than 500 lines. Checked on the imports themselves (ops/makedeps.py reads them)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "lib"))
from secai.ops import makedeps  # noqa: E402

PACKAGE = ROOT / "lib" / "secai"
STAGES = ("parsing", "analysis", "dataset", "training", "publishing", "ops")
BASE = ("cli", "errors", "records", "config", "files", "secrets", "personal", "cache", "untrusted", "cpublas")
# the package data that lives at the top of the repository: symlinks, so a checkout and a wheel find
# it the same way (secai.files.shipped)
SHIPPED = {"schemas": "schemas", "defaults": "config"}
COMMANDS = ("parse", "analyze", "narrate", "split", "index", "sarif", "lora", "push", "fetch", "daemon", "doctor", "kb",
            "report")
# make's own helpers (not user commands): they keep a small argparse main of their own
INTERNAL_TOOLS = {"secai.ops.status", "secai.dataset.quality", "secai.training.store", "secai.training.tinymodel"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def secai_imports(name: str, path: Path) -> set[str]:
    return makedeps.imports(path, name)


def test_the_rooms_are_there():
    top = {p.name for p in PACKAGE.iterdir() if not p.name.startswith(("_", "."))}
    assert {*STAGES, "commands"} <= top
    assert {f"{b}.py" for b in BASE} <= top
    # nothing else at the top: every module lives in its room or is part of the shared base
    assert top == {*STAGES, "commands", *(f"{b}.py" for b in BASE), *SHIPPED}, sorted(top)
    for name, folder in SHIPPED.items():
        assert (PACKAGE / name).is_symlink() and (PACKAGE / name).resolve() == ROOT / folder
    assert {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__"} == set(COMMANDS)
    assert sorted(p.name for p in (ROOT / "bin").iterdir()) == sorted(f"secai-{c}" for c in COMMANDS)


def test_every_bin_script_and_entry_point_runs_its_command_module():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for command in COMMANDS:
        assert scripts[f"secai-{command}"] == f"secai.commands.{command}:main"
        assert f"-m secai.commands.{command} " in (ROOT / "bin" / f"secai-{command}").read_text()


@pytest.mark.parametrize("name,path", sorted(modules().items()), ids=lambda x: x if isinstance(x, str) else "")
def test_imports_follow_the_layers(name, path):
    imported = secai_imports(name, path)
    commands = {m for m in imported if m.startswith("secai.commands.") and m != name}
    if name.startswith("secai.commands"):
        assert not commands, f"{name} imports another command: {sorted(commands)}"
    else:
        assert not commands and "secai.commands" not in imported, f"domain module {name} imports a command"
    tree = ast.parse(path.read_bytes())
    uses_argparse = any(isinstance(n, ast.Import) and any(a.name == "argparse" for a in n.names) for n in ast.walk(tree))
    if uses_argparse:
        assert name.startswith("secai.commands") or name in {"secai.cli", *INTERNAL_TOOLS}, \
            f"{name} parses arguments: domain code takes typed parameters"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_over_500_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 500


def test_domain_functions_take_no_namespace():
    """No function outside the command layer has a parameter called args/opts fed an argparse Namespace:
    the command unpacks its flags and passes typed values."""
    offenders = []
    for name, path in modules().items():
        if name.startswith("secai.commands") or name == "secai.cli" or name in INTERNAL_TOOLS:
            continue
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for a in node.args.args + node.args.kwonlyargs:
                    ann = ast.unparse(a.annotation) if a.annotation else ""
                    if "Namespace" in ann or (a.arg in ("args", "opts") and not ann):
                        offenders.append(f"{name}.{node.name}({a.arg})")
    assert not offenders, offenders
