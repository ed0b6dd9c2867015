"""Files and folders written whole: content hashes, and folders built aside then swapped in.

A command that writes a folder (a model, a dataset, an index) builds it in `fresh_dir(out, "tmp")`
and moves it into place with `swap_in`, so a failed or killed run never leaves a half folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fresh_dir(out: Path, kind: str) -> Path:
    """A new empty folder next to out, named .NAME.KIND-PID-RANDOM (mode from the umask, as
    any folder the user makes)."""
    while True:
        d = out.parent / f".{out.name}.{kind}-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue


def swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished folder tmp to out. A folder cannot replace a non-empty one in one
    rename, so an existing out is first renamed aside, then removed: at every moment out is
    either absent, the old folder or the new one — never a mixture. (A kill between the two
    renames leaves the old one in .NAME.old-*.)"""
    for _ in range(10):
        try:
            os.rename(tmp, out)
            return
        except OSError:
            if not out.exists():
                raise
        old = fresh_dir(out, "old")
        try:
            os.replace(out, old)  # old is an empty directory, which a rename may replace
        except FileNotFoundError:  # another run moved it first
            old.rmdir()
            continue
        shutil.rmtree(old, ignore_errors=True)
    raise OSError(f"could not move the new folder into {out}")
