"""Finding paths as paths of the repository: what GitHub code scanning matches a SARIF location
against. A scanner reports paths relative to where it ran (the source root: `bandit -r .` in
examples/demo-app says `app.py`); GitHub reads a relative URI as relative to the root of the
repository, where that file is `examples/demo-app/app.py`.

- The repository root is given, or else the git root of the source root
  (`git rev-parse --show-toplevel`), or else, outside a git work tree or without git, the source
  root itself.
- A relative path gets the source root's place in the repository in front of it and is
  normalized (`./a/../b` is `b`); one that climbs out of the repository (`../x`) stays relative
  (no local directory is ever written) but names no file of the repository.
- An absolute path inside the repository becomes relative to it; one outside stays absolute.
- A source root outside the repository root is an error: none of its paths could map. One that
  does not exist (a checkout without that folder) still maps its paths, by name, onto the git
  root of its nearest existing parent; they name no file there to hash.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
from pathlib import Path

from secai.errors import UsageError


def git_root(directory: Path) -> Path | None:
    """The top of the git work tree holding `directory`, or None (not one, or no git)."""
    try:
        proc = subprocess.run(["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    top = proc.stdout.strip()
    return Path(top) if proc.returncode == 0 and top else None


class RepoPaths:
    """Maps the paths of findings (relative to a source root) onto the repository root."""

    def __init__(self, source_root: Path | str = ".", repo_root: Path | str | None = None):
        source = Path(source_root).resolve()
        if repo_root is not None and not Path(repo_root).is_dir():
            raise UsageError(f"{repo_root}: the repository root is not a directory")
        existing = next(p for p in (source, *source.parents) if p.is_dir())
        self.root = Path(repo_root).resolve() if repo_root is not None else (git_root(existing) or source)
        place = Path(os.path.relpath(source, self.root)).as_posix()
        if place == ".." or place.startswith("../"):
            raise UsageError(f"{source_root}: the source root is not inside the repository root {repo_root or self.root}")
        self.prefix = "" if place == "." else place

    def path(self, path: str) -> str:
        """A finding's path as the log writes it: relative to the repository root where it can be."""
        if path.startswith("/"):
            norm = posixpath.normpath(path)
            root = self.root.as_posix()
            if norm.startswith(root.rstrip("/") + "/"):
                return norm[len(root.rstrip("/")) + 1:]
            return path
        return posixpath.normpath(posixpath.join(self.prefix, path)) if self.prefix else posixpath.normpath(path)

    def file(self, repo_path: str) -> Path | None:
        """The file of a repository path from `path`, or None for one outside the repository."""
        if repo_path.startswith("/") or repo_path == ".." or repo_path.startswith("../"):
            return None
        return self.root / repo_path
