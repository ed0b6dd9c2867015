"""Files and folders written whole: content hashes, folders built aside then swapped in, and the
YAML metadata a Hugging Face card (README.md) starts with.

A command that writes a folder (a model, a dataset, an index) builds it in `fresh_dir(out, "tmp")`
and moves it into place with `swap_in`, so a failed or killed run never leaves a half folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import yaml

from secai.cli import InputError


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


def front_matter(path: Path) -> dict:
    """The YAML metadata block a Hub card starts with; InputError when it is missing or not a mapping."""
    if not path.is_file():
        raise InputError(str(path), None, "missing: a folder is published only with its card (README.md)")
    text = path.read_text(encoding="utf-8", errors="replace")
    m = re.match(r"---\r?\n(.*?)\r?\n---\r?\n", text, re.S)
    if not m:
        raise InputError(str(path), 1, "the card has no YAML front matter (--- ... ---) for the Hub")
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise InputError(str(path), None, f"the card's YAML front matter does not parse: {exc}".splitlines()[0]) from None
    if not isinstance(meta, dict):
        raise InputError(str(path), 2, "the card's YAML front matter is not a mapping")
    return meta
