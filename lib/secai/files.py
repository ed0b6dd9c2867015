"""The plumbing every command shares, each piece written once: files and folders that appear whole,
the leftovers of killed runs, state files and their locks, safe unzipping, content hashes and the
YAML metadata a Hugging Face card (README.md) starts with, and where the files secai ships are.

- A file is written to a hidden temporary beside it, `.NAME.RANDOM.tmp`, and renamed into place
  (`AtomicOutput`, `write_atomic`): readers see the old file or the new one, never a part. A
  failure removes the temporary; the final file's mode follows the umask, as any file the user
  makes (0644 under umask 022).
- A folder (a model, a dataset, an index) is built in a hidden `.NAME.tmp-PID-RANDOM` beside it and
  swapped in whole (`building`, which uses `fresh_dir` and `swap_in`).
- A writer holds an flock on its temporary file or folder until it is renamed into place. A kill
  releases the lock, so the next run that writes the same target finds the leftovers no live
  process holds and removes them first (`remove_stale`): a killed parse no longer leaves hundreds
  of MB of hidden temporaries behind, and a run still writing is never touched.
- A state file is one JSON object (`read_state`, `write_state`); a corrupt one is an error naming
  the file, never a silent reset. `try_lock` keeps a second fetch or daemon cycle from starting.
- Zip members are judged by one policy (`zip_member_problem`): names that leave the archive,
  symlinks, special files, encryption, sizes, compression ratio and the archive's total.
- The data secai ships (schemas, the default config, the knowledge base) is package data, found
  only through `shipped`: the same in a checkout and in an installed wheel.
"""

from __future__ import annotations

import copy
import datetime as dt
import fcntl
import hashlib
import importlib.resources
import os
import re
import shutil
import stat
import sys
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import orjson

from secai.errors import InputError

# what follows ".NAME." in the hidden leftovers of a write of NAME: a temporary file (this module's,
# tempfile.mkstemp's or the fixed ".NAME.tmp" earlier versions made) and a folder built or moved aside
_TEMP_FILE = re.compile(r"(?:[A-Za-z0-9_]{8,32}\.)?tmp")
_TEMP_DIR = re.compile(r"(tmp|old)-\d+-[0-9a-f]{8}")


# ---------------------------------------------------------------- files secai ships

def shipped(*parts: str) -> Path:
    """A file or folder shipped inside the package, by its path there: `schemas/` (the record
    schemas), `defaults/secai.yaml` (every default), `analysis/kb/` (the knowledge base). The one
    way to find them, read through importlib.resources, so an installed wheel finds its own copies.
    In a checkout lib/secai/schemas and lib/secai/defaults are symlinks to the top-level schemas/
    and config/ (resolved: config/secai.yaml is the file shown and edited); a wheel carries their
    files as package data under those names."""
    return Path(str(importlib.resources.files("secai").joinpath(*parts))).resolve()


# ---------------------------------------------------------------- files written whole

def _held(fd: int, path: Path) -> bool:
    """Lock the new temporary `path` (open as fd) for as long as it is written, and make sure it is
    still the one made: a cleaner may have taken it, unlocked, in the instant before the lock."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _temp_file(path: Path) -> tuple[int, Path]:
    """A new, locked, empty temporary file beside path (mode 0666 less the umask)."""
    while True:
        tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        if _held(fd, tmp):
            return fd, tmp
        os.close(fd)


class AtomicOutput:
    """A binary output that appears all at once: a temporary file renamed into place on success
    and removed on failure. '-' or None is stdout, written directly. `durable` flushes the data
    to disk before the rename (state files: a crash must not leave an empty one)."""

    def __init__(self, path: str | os.PathLike | None, *, durable: bool = False):
        self.path = None if path is None or path == "-" else Path(path)
        self.durable = durable
        self.tmp = self.fh = None

    def __enter__(self):
        if self.path is None:
            return sys.stdout.buffer
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(self.path)
            fd, self.tmp = _temp_file(self.path)
        except OSError as exc:  # an output the user named where nothing can be written: a user error
            raise InputError(str(self.path), None, f"cannot be written: {exc.strerror or exc}") from exc
        self.fh = os.fdopen(fd, "wb")
        return self.fh

    def __exit__(self, exc_type, exc, tb):
        if self.path is None:
            sys.stdout.buffer.flush()
            return False
        try:
            if exc_type is None:
                self.fh.flush()
                if self.durable:
                    os.fsync(self.fh.fileno())
                os.replace(self.tmp, self.path)  # still locked: no cleaner can take it first
                self.tmp = None
        finally:
            if self.tmp is not None:
                try:
                    os.unlink(self.tmp)
                except FileNotFoundError:
                    pass
            self.fh.close()  # releases the lock
        return False


def write_atomic(path: str | os.PathLike, data: bytes | str, *, durable: bool = False) -> None:
    """Write a whole file atomically (see AtomicOutput); str is written as UTF-8."""
    with AtomicOutput(Path(path), durable=durable) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def remove_stale(target: str | os.PathLike) -> list[Path]:
    """Remove what killed runs left beside `target`: hidden temporary files (.NAME.*.tmp) and folders
    (.NAME.tmp-*, .NAME.old-*) that no live process holds locked. Folders moved aside (.old-) are
    only ever waiting to be deleted. Symlinks are never followed. Returns what was removed."""
    target = Path(target)
    prefix = f".{target.name}."
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        rest = entry.name[len(prefix):]
        if _TEMP_FILE.fullmatch(rest):
            flags = os.O_RDONLY | os.O_NOFOLLOW
        elif _TEMP_DIR.fullmatch(rest):
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY
        else:
            continue
        try:
            fd = os.open(entry.path, flags)
        except OSError:  # gone already, a symlink, or not the kind its name says
            continue
        try:
            if not rest.startswith("old-"):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if flags & os.O_DIRECTORY:
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:  # held by a live writer (BlockingIOError), or taken by another cleaner
            pass
        finally:
            os.close(fd)
    return removed


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- folders built aside

@contextmanager
def building(out: str | os.PathLike) -> Iterator[Path]:
    """A new empty folder to build `out` in, swapped in whole when the block ends without an
    error, removed when it fails; leftovers of killed builds of `out` are removed first.

        with building(out) as tmp:
            (tmp / "manifest.json").write_bytes(...)
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    while True:
        tmp = fresh_dir(out, "tmp")
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        if _held(fd, tmp):
            break
        os.close(fd)
    try:
        yield tmp
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(fd)  # releases the lock


def fresh_dir(out: Path, kind: str) -> Path:
    """A new empty folder next to out, named .NAME.KIND-PID-RANDOM (mode from the umask, as
    any folder the user makes). Unlocked: a folder to build in comes from `building`."""
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


# ---------------------------------------------------------------- state files and locks

def read_state(path: str | os.PathLike, empty: dict, shape: dict[str, type] | None = None) -> dict:
    """The JSON object a state file holds; a copy of `empty` when there is none yet. A file that
    is not JSON, not an object, or lacks a key of `shape` (key -> type) is an InputError naming it:
    never a silent reset, which would forget what was done (fetch every run again, push again)."""
    path = Path(path)
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return copy.deepcopy(empty)
    except orjson.JSONDecodeError as exc:
        raise InputError(str(path), None, f"corrupt state file, not JSON ({exc}); move it aside to start over") from None
    except OSError as exc:
        raise InputError(str(path), None, f"cannot read the state file: {exc.strerror or exc}") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), t) for k, t in (shape or {}).items()):
        raise InputError(str(path), None, "corrupt state file, not the JSON object secai writes there; "
                                          "move it aside to start over")
    return data


def write_state(path: str | os.PathLike, data: dict) -> None:
    """Write a state file: sorted, indented JSON, on disk before it is renamed into place."""
    write_atomic(path, orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n", durable=True)


def now_iso() -> str:
    """Now, in UTC, to the second, as state files and the daemon's log record it (2026-01-31T12:00:00Z)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def try_lock(path: str | os.PathLike) -> int | None:
    """An exclusive flock on `path` (created if needed), without waiting: the open descriptor, or
    None when another process holds it. The lock lasts until the descriptor is closed (or the
    process, and any child given the descriptor, ends)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# ---------------------------------------------------------------- safe unzip

RATIO_FLOOR = 10 * 2**20  # members this small may compress as well as they like (logs, JSON of zeros)


class ZipRefused(Exception):
    """A zip member refused by the policy; the message is the reason."""


def _size(n: float) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB" if n >= 2**10 else f"{n:.0f} bytes"


def member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """A member's path as parts ('\\' taken as '/', as Windows tools write it)."""
    return PurePosixPath(info.filename.replace("\\", "/")).parts


def zip_member_problem(info: zipfile.ZipInfo, *, max_member: int, max_ratio: float, total: int = 0,
                       max_total: int | None = None) -> str | None:
    """Why a member must not be read or extracted, or None: a name that leaves the archive
    (absolute, a drive, '..'), a symlink, a special file, encryption; for a file, an expanded size
    over max_member, a compression ratio over max_ratio (members over RATIO_FLOOR), or the
    archive's expanded total (`total` read so far) going past max_total."""
    name = info.filename.replace("\\", "/")
    parts = member_parts(info)
    if name.startswith("/") or not parts or ":" in parts[0] or ".." in parts:
        return "path escapes the archive"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "not a regular file"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.is_dir():
        return None
    if info.file_size > max_member:
        return f"expands to {_size(info.file_size)}, over the {_size(max_member)} limit (zip bomb?)"
    if info.file_size > RATIO_FLOOR and info.file_size > max_ratio * max(info.compress_size, 1):
        return f"compression ratio over {max_ratio:g}:1 (zip bomb?)"
    if max_total is not None and total + info.file_size > max_total:
        return f"the archive expands past {_size(max_total)}"
    return None


def zip_member_blocks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, *, max_member: int) -> Iterator[bytes]:
    """A member's bytes in blocks, once zip_member_problem found none; ZipRefused when it expands
    past its declared size (a lying header) or cannot be read."""
    limit, written = min(info.file_size, max_member), 0
    try:
        with zf.open(info) as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                written += len(block)
                if written > limit:
                    raise ZipRefused("expands past its declared size (zip bomb?)")
                yield block
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError) as exc:
        raise ZipRefused(f"cannot be read: {exc}") from None


def extract_zip(zip_path: Path, out: Path, *, max_member: int, max_ratio: float, max_total: int) -> dict:
    """Unzip `zip_path` into the (new) folder `out`, skipping every member the policy refuses (and a
    second member of the same name); {"files": n, "bytes": n, "skipped": [{"name", "reason"}]}.
    An archive that cannot be opened raises zipfile.BadZipFile."""
    out.mkdir(parents=True, exist_ok=True)
    root = out.resolve()
    files, total, skipped = 0, 0, []
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            problem = zip_member_problem(info, max_member=max_member, max_ratio=max_ratio, total=total,
                                         max_total=max_total)
            target = out.joinpath(*member_parts(info)) if problem is None else None
            if target is not None and not target.resolve().is_relative_to(root):
                problem = "path escapes the archive"
            if problem:
                skipped.append({"name": info.filename, "reason": problem})
                continue
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            except FileExistsError:
                skipped.append({"name": info.filename, "reason": "a second member with the same name"})
                continue
            written = 0
            try:
                with os.fdopen(fd, "wb") as dst:
                    for block in zip_member_blocks(zf, info, max_member=max_member):
                        dst.write(block)
                        written += len(block)
            except ZipRefused as exc:
                os.unlink(target)
                skipped.append({"name": info.filename, "reason": str(exc)})
                continue
            files += 1
            total += written
    return {"files": files, "bytes": total, "skipped": skipped}


# ---------------------------------------------------------------- cards

def front_matter(path: Path) -> dict:
    """The YAML metadata block a Hub card starts with; InputError when it is missing or not a mapping."""
    import yaml  # only push and lora read cards: every other command starts without yaml

    if not path.is_file():
        raise InputError(str(path), None, "missing: a folder is published only with its card (README.md)")
    text = path.read_text(encoding="utf-8", errors="replace")
    m = re.match(r"---\r?\n(.*?)\r?\n---\r?\n", text, re.DOTALL)
    if not m:
        raise InputError(str(path), 1, "the card has no YAML front matter (--- ... ---) for the Hub")
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise InputError(str(path), None, f"the card's YAML front matter does not parse: {exc}".splitlines()[0]) from None
    if not isinstance(meta, dict):
        raise InputError(str(path), 2, "the card's YAML front matter is not a mapping")
    return meta
