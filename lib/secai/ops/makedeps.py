"""The code a command runs, as Make prerequisites: `python3 lib/secai/ops/makedeps.py secai.commands.parse`
prints every file of the package that module imports, directly or not (imports inside functions
included), with the data files (YAML, and JSON such as the harvested rule knowledge) of every package
it reaches. The Makefile's `*_CODE` lists are
these, so they cannot drift from the imports. Only the standard library is used: it runs before the
virtual environment exists.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parents[2]   # lib/
PACKAGE = "secai"
# the package's folders that are the top-level schemas/ and config/ (symlinks in a checkout, package
# data in a wheel): no module's data, and the Makefile names those files itself
TOP_DATA = ("schemas", "defaults")


def module_file(name: str) -> Path | None:
    """The file of a dotted module name under lib/ (a package's __init__.py), or None."""
    base = LIB.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports(path: Path, name: str) -> set[str]:
    """Dotted names of the secai modules `path` (module `name`) imports, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)   # `from pkg import module`
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def closure(root: str) -> set[Path]:
    """Files of `root` and of everything it imports, with their parent packages' __init__.py."""
    seen: set[str] = set()
    todo = [root]
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        files.add(path)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(imports(path, name))
    for path in list(files):
        if path.name == "__init__.py":
            files.update(data_files(path.parent))
    return files


def data_files(folder: Path) -> set[Path]:
    """The YAML and JSON files of a package: in its folder and in sub-folders that are not packages."""
    found = set(folder.glob("*.yaml")) | set(folder.glob("*.json"))
    for sub in folder.iterdir():
        if folder == LIB / PACKAGE and sub.name in TOP_DATA:
            continue
        if sub.is_dir() and not (sub / "__init__.py").exists():
            found |= data_files(sub)
    return found


def main(argv: list[str]) -> int:
    files = set().union(*(closure(name) for name in argv))
    cwd = Path.cwd()
    print(" ".join(sorted(str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(p) for p in files)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
