"""Where reports come from: paths named on the command line, directories walked, artifact zips and
stdin, each turned into `Unit`s (a name and its bytes). What is refused is rejected alone, through
the `reject` callback, and the other units are still read.

The policy:
- Inputs are read in sorted order (a directory's entries sorted too), so the output does not depend
  on the order the paths are given in.
- A path named on the command line is the user's choice: a symlink is followed, and a FIFO or a
  character device (a shell's `<(scanner ...)`, /dev/stdin) is read like a file, up to the size
  limit. A socket or block device is refused.
- Inside a walked directory only regular files are read. A FIFO, socket or device is refused
  without being opened (a FIFO would block the run). A symlink is followed only when its target
  lies inside the walked tree: a file symlink pointing inside is read; a directory symlink pointing
  inside is not descended (its target is walked where it is, so nothing is read twice and no loop
  is possible); either kind pointing outside the tree is refused. Hidden names are skipped.
- A zip (by content, not name) is read member by member, under secai.files' zip policy (names that
  leave the archive, symlinks, special files, encryption, zip bombs); a refused member, a nested
  zip or a member that fails to extract is rejected alone.
- A file or member larger than the size limit is refused.
- A unit's `source` (what findings record as source.file, and so the training data's provenance)
  names no local directory: a path given relative, and inside the working directory, as given
  (examples/artifacts/semgrep.json); otherwise relative to the argument it was found under (a
  directory's `checkov/results_json.json`, a file's own name `semgrep.json`). Messages name `name`,
  the path as the user can open it.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from secai.errors import InputError
from secai.files import ZipRefused, zip_member_blocks, zip_member_problem

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
Reject = Callable[[InputError], None]


class Unit:
    """One report to read: a file, a zip member or stdin. `explicit` is False for files found by
    walking a directory or a zip, whose unknown content is skipped rather than an error."""

    __slots__ = ("data", "explicit", "name", "source")

    def __init__(self, name: str, data: bytes, explicit: bool, source: str | None = None):
        self.name, self.data, self.explicit = name, data, explicit
        self.source = name if source is None else source


def provenance(path: str, given: str) -> str:
    """The name a report found at `path` under the argument `given` is recorded by (see above)."""
    if path == "-" or not (os.path.isabs(given) or ".." in given.replace("\\", "/").split("/")):
        return path
    if os.path.normpath(path) == os.path.normpath(given):
        return os.path.basename(os.path.normpath(given))
    return os.path.relpath(path, given).replace(os.sep, "/")


@dataclass(frozen=True)
class Limits:
    max_bytes: int        # a report or zip member larger than this is refused
    zip_ratio: float      # a member over 10 MB expanding more than this is refused as a zip bomb

    def refuse(self, name: str, size: int, read: bool = False) -> None:
        """Refuse `size` bytes when over the limit (`read`: size is what was read, limit + 1 at most)."""
        if size > self.max_bytes:
            mb = f"{self.max_bytes / 1048576:.0f} MB limit (--max-file-mb)"
            raise InputError(name, None, f"over the {mb}" if read else f"{size / 1048576:.1f} MB is over the {mb}")


def units(paths: Iterable[str], limits: Limits, reject: Reject, log: Callable[[str], None]) -> Iterator[Unit]:
    """The units of every path, in sorted order: files, walked directories, zips, '-' (stdin)."""
    for path in sorted(paths):
        if path != "-" and os.path.isdir(path):
            yield from _walk(path, limits, reject, log)
        else:
            yield from _guarded(_file(path, limits, reject, None, provenance(path, path)), reject)


def _guarded(found: Iterator[Unit], reject: Reject) -> Iterator[Unit]:
    try:
        yield from found
    except InputError as err:
        reject(err)


def _inside(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _walk(top: str, limits: Limits, reject: Reject, log: Callable[[str], None]) -> Iterator[Unit]:
    root = os.path.realpath(top)

    def unreadable(exc: OSError) -> None:
        reject(InputError(exc.filename or top, None, exc.strerror or str(exc)))

    for where, dirs, files in os.walk(top, onerror=unreadable):  # symlinked directories are not descended
        kept = []
        for name in sorted(d for d in dirs if not d.startswith(".")):
            path = os.path.join(where, name)
            if not os.path.islink(path):
                kept.append(name)
            elif _inside(os.path.realpath(path), root):
                log(f"skipped {path}: a symlink to a directory inside the walked tree (walked where it is)")
            else:
                reject(InputError(path, None, "symlink to a directory outside the walked tree (refused)"))
        dirs[:] = kept
        for name in sorted(f for f in files if not f.startswith(".")):
            path = os.path.join(where, name)
            yield from _guarded(_file(path, limits, reject, root, provenance(path, top)), reject)


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return kind
    return "not a regular file"


def _file(path: str, limits: Limits, reject: Reject, root: str | None, source: str) -> Iterator[Unit]:
    """The unit(s) of one file: itself, or its members when it is a zip. `root` is the walked
    directory's real path (None for a path named on the command line); `source` its provenance."""
    try:
        data = sys.stdin.buffer.read(limits.max_bytes + 1) if path == "-" else _read(path, limits, root)
    except OSError as exc:
        raise InputError(path, None, exc.strerror or str(exc)) from None
    limits.refuse(path, len(data), read=True)
    if path == "-" and not data.strip():  # an empty pipe holds no report: no findings, as in every filter
        return
    if data.startswith(ZIP_MAGIC):
        yield from _zip_members(path, data, limits, reject, source)
    else:
        yield Unit(path, data, root is None, source)


def _read(path: str, limits: Limits, root: str | None) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    target = path
    if root is not None:  # walked: look before opening, then open without following or blocking
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(path)
            if not _inside(target, root):
                raise InputError(path, None, "symlink to a file outside the walked tree (refused)")
            st = os.stat(target)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(path, None, f"{_kind(st.st_mode)}, not a regular file (refused)")
        flags |= os.O_NONBLOCK | os.O_NOFOLLOW
    fd = os.open(target, flags)
    with open(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        allowed = stat.S_ISREG(mode) or (root is None and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)))
        if not allowed:  # also what was swapped in between the look and the open
            raise InputError(path, None, f"{_kind(mode)}, not a regular file (refused)")
        if stat.S_ISREG(mode):
            limits.refuse(path, os.fstat(fd).st_size)
        return fh.read(limits.max_bytes + 1)


# ---------------------------------------------------------------- zip artifacts

def _zip_members(name: str, data: bytes, limits: Limits, reject: Reject, source: str) -> Iterator[Unit]:
    """The members of an artifact zip; a refused member is rejected alone, the others still read."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = sorted(zf.infolist(), key=lambda i: i.filename)
    except Exception as exc:  # noqa: BLE001 (BadZipFile, OSError, ValueError, struct errors of a mangled directory)
        raise InputError(name, None, f"bad zip archive: {exc}") from None
    for info in infos:
        if info.is_dir() or PurePosixPath(info.filename.replace("\\", "/")).name.startswith("."):
            continue
        member = f"{name}!{info.filename}"
        try:
            yield Unit(member, _zip_member(zf, info, member, limits), False, f"{source}!{info.filename}")
        except InputError as err:
            reject(err)


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, member: str, limits: Limits) -> bytes:
    """A member's bytes, once the zip policy (secai.files.zip_member_problem: names, symlinks,
    special files, encryption, declared and actual sizes, ratio) lets it be read."""
    problem = zip_member_problem(info, max_member=limits.max_bytes, max_ratio=limits.zip_ratio)
    try:
        if problem:
            raise ZipRefused(problem)
        content = b"".join(zip_member_blocks(zf, info, max_member=limits.max_bytes))
    except ZipRefused as exc:
        raise InputError(member, None, f"zip member refused: {exc}") from None
    except Exception as exc:  # noqa: BLE001 (whatever else a hostile member raises costs it alone)
        raise InputError(member, None, f"zip member refused: cannot be read: {exc}") from None
    if content.startswith(ZIP_MAGIC):
        raise InputError(member, None, "nested zip archives are not read")
    return content
