"""Code context for a finding: the lines it points at, read from a source root, and the function,
class or block around them, found with tree-sitter.

    ctx = code_context(finding, Path("src"))            # analysis/1 `code_context`, or None
    ctx, skip = read_context(finding, Path("src"))      # the same, with why there is none

Paths. A scanner path is read only under the root, never outside it:
- a path with a `..` component is refused; so is one that resolves (through a symlink, anywhere
  along it) to a place outside the root;
- an absolute path (`/main.tf` as Checkov writes it, `/home/runner/work/x/x/app.py` from CI,
  `C:/src/app.py`) is never opened as such: it names a file under the root when the root holds a
  suffix of it. So does a relative path that is not under the root as given (a scan of the parent
  directory). The longest suffix that exists under the root wins, which is deterministic;
- `path` in the result is the path relative to the root that was read;
- `under_root` makes a finding's absolute path under the root relative to it before analysis, so
  no local directory reaches an analysis or the training data.

Why there is no context is a `Skip(code, detail)`: `read_context` returns it beside None.
`Skip.code` is one of SKIP_CODES; `refused` (an escape from the root: worth a warning) is the
only one that says something is wrong rather than absent.

`language` is secai.analysis.languages.detect_language (file name, else shebang), parsed with its
tree-sitter grammar when one is installed. `enclosing` is secai.analysis.units.enclosing_unit: the
innermost unit a person would name around the finding's lines (function, class, Terraform block,
Kubernetes object or container, workflow job or step, Dockerfile stage). Leading and trailing blank
or comment lines of the reported range are not counted, so a range that begins on a comment above
a block still finds the block.

Secrets. `code` never carries a secret the finding hashes: for a finding with `secret.sha256`,
every string in the lines shown whose SHA-256 is that digest is replaced by [REDACTED]; the
strings in `redact` (e.g. secrets collected from other findings) are blanked; for a finding of
category `secret` the finding's own lines are blanked after their key (`password: [REDACTED]`,
`KEY = [REDACTED]`; a line without a key becomes `[REDACTED]`, indentation kept) whether or not
the value was recognised; the body of a PEM private key block is always blanked; and so is every
secret secai.secrets recognises. The policy is secai.secrets.blank_lines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from secai.analysis.languages import detect_language, grammar_key, parser_for, trim_range
from secai import secrets
from secai.analysis.units import enclosing_unit
from secai.parsing.finding import norm_path, positive_int

RADIUS = 5                     # lines shown before and after the finding's lines
MAX_BYTES = 2 * 1024 * 1024    # a larger file gets no context
MAX_LINES = 200                # at most this many lines of code (a huge resource is cut)
BINARY_SNIFF = 8192            # a NUL byte in this many leading bytes makes a file binary

SKIP_CODES = ("no-location", "no-lines", "refused", "missing", "not-a-file", "too-large",
              "binary", "unreadable", "out-of-range")


class Skip(NamedTuple):
    """Why a finding has no code context: `code` (one of SKIP_CODES) and a one-line detail."""

    code: str
    detail: str

    def __str__(self) -> str:
        return self.detail

    @property
    def refused(self) -> bool:
        """True when the path tried to leave the source root."""
        return self.code == "refused"


class NoContext(Exception):
    """Raised inside this module; `read_context` turns it into a Skip."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.skip = Skip(code, detail)


# ---------------------------------------------------------------- paths

_DRIVE = re.compile(r"^[A-Za-z]:/")


def under_root(finding: dict, root: Path | None) -> dict:
    """The finding, or a copy whose absolute location path lying under `root` (as given or as
    resolved) is relative to it: no local directory reaches an analysis (or the training data)."""
    loc = finding.get("location")
    path = norm_path(loc.get("path")) if root is not None and isinstance(loc, dict) else ""
    if not path.startswith("/"):
        return finding
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    for prefix in dict.fromkeys((tuple(root.absolute().parts), tuple(root.resolve().parts))):
        if ("/",) + parts[:len(prefix) - 1] == prefix and len(parts) >= len(prefix) and ".." not in parts:
            return {**finding, "location": {**loc, "path": "/".join(parts[len(prefix) - 1:])}}
    return finding


def locate(root: Path, scanner_path: str) -> tuple[Path, str]:
    """(real path of the file, path relative to the root) for a scanner's path; NoContext when it
    is refused (`..`, a symlink out of the root), missing or not a regular file. A path found
    before is answered from memory while the root, the path under it and the file it reaches are
    the same files as then (one run's findings name the same files again and again)."""
    k = (str(root), scanner_path)
    hit = _located.get(k)
    if hit is not None and hit[2] == _identity(root, hit[3], hit[0]):
        return hit[0], hit[1]
    real, rel, base = _locate(root, scanner_path)
    full = base.joinpath(*rel.split("/"))
    if (now := _identity(root, full, real)) is not None:
        if len(_located) >= 4096:
            _located.clear()
        _located[k] = (real, rel, now, full)
    return real, rel


_located: dict[tuple[str, str], tuple] = {}


def _identity(root: Path, full: Path, real: Path) -> tuple | None:
    """What the root, the path as found under it (a link or not) and the real file are: devices and inodes."""
    try:
        r, f, t = os.stat(root), os.lstat(full), os.stat(real)
    except (OSError, ValueError):
        return None
    return r.st_dev, r.st_ino, f.st_dev, f.st_ino, f.st_mode, t.st_dev, t.st_ino, t.st_mode


def _locate(root: Path, scanner_path: str) -> tuple[Path, str, Path]:
    p = norm_path(scanner_path)
    if not p or "\x00" in p or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", p):
        raise NoContext("not-a-file", f"not a file path: {scanner_path!r}")
    absolute = p.startswith("/") or bool(_DRIVE.match(p))
    if _DRIVE.match(p):
        p = p[2:]
    parts = [part for part in p.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise NoContext("refused", f"refused {scanner_path!r}: a '..' component leaves the source root")
    if not parts:
        raise NoContext("not-a-file", f"not a file path: {scanner_path!r}")
    try:
        base = root.resolve(strict=True)
    except OSError as exc:
        raise NoContext("missing", f"source root {str(root)!r}: {exc.strerror or exc}") from None
    if not base.is_dir():
        raise NoContext("missing", f"source root {str(root)!r} is not a directory")
    candidates = [parts[i:] for i in range(len(parts))]
    if absolute:  # the absolute path itself, when it lies under the root as given or as resolved
        for prefix in dict.fromkeys((tuple(root.absolute().parts), tuple(base.parts))):
            whole = ("/",) + tuple(parts)
            if whole[:len(prefix)] == prefix and len(whole) > len(prefix):
                candidates.insert(0, list(whole[len(prefix):]))
    for candidate in candidates:
        full = base.joinpath(*candidate)
        try:
            if not os.path.lexists(full):
                continue
            real = full.resolve(strict=False)
        except (OSError, RuntimeError, ValueError) as exc:
            raise NoContext("unreadable", f"{'/'.join(candidate)}: {exc}") from None
        rel = "/".join(candidate)
        if not real.is_relative_to(base):
            raise NoContext("refused", f"refused {scanner_path!r}: {rel} resolves outside the source root")
        if not real.is_file():
            raise NoContext("not-a-file", f"{rel}: not a regular file")
        return real, rel, base
    where = "no suffix of it exists under" if len(parts) > 1 or absolute else "not found under"
    raise NoContext("missing", f"{scanner_path}: {where} the source root")


# ---------------------------------------------------------------- reading and parsing files

class _Source(NamedTuple):
    lines: list[str]
    data: bytes        # the text as parsed: UTF-8, \n line ends
    head: bytes        # the file's first bytes, for the shebang


@lru_cache(maxsize=32)
def _read(real: Path, mtime_ns: int, size: int, max_bytes: int) -> _Source:
    if size > max_bytes:
        raise NoContext("too-large", f"{real.name}: {size} bytes, more than {max_bytes}")
    try:
        raw = real.read_bytes()
    except OSError as exc:
        raise NoContext("unreadable", f"{real.name}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise NoContext("too-large", f"{real.name}: more than {max_bytes} bytes")
    if b"\x00" in raw[:BINARY_SNIFF]:
        raise NoContext("binary", f"{real.name}: binary file")
    text = raw.decode("utf-8", "replace").removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return _Source(lines, text.encode("utf-8"), raw[:256])


@lru_cache(maxsize=32)
def _tree(real: Path, mtime_ns: int, size: int, max_bytes: int, grammar: str):
    parser = parser_for(grammar)
    return parser.parse(_read(real, mtime_ns, size, max_bytes).data) if parser else None


# ---------------------------------------------------------------- secrets

def _secure(source: _Source, start: int, end: int, finding: dict, first: int, last: int,
            extra: Iterable[str], hashes: Iterable[str]) -> list[str]:
    """The lines start..end with their secrets blanked (secai.secrets.blank_lines): the strings in
    `extra`, those hashed in `hashes` or in the finding's secret.sha256, a secret finding's own
    lines after their key, the rows inside private key blocks, and every secret pattern."""
    digest = (finding.get("secret") or {}).get("sha256")
    own = range(first, last + 1) if finding.get("category") == "secret" else range(0)
    key_rows = secrets.pem_rows(source.lines) if b"PRIVATE KEY-----" in source.data else set()
    return secrets.blank_lines(source.lines[start - 1:end], start, values=extra,
                               digests=[*hashes, *([digest] if isinstance(digest, str) else [])],
                               own=own, key_rows=key_rows)


# ---------------------------------------------------------------- the code context

def read_context(finding: dict, root: Path, radius: int = RADIUS, redact: Iterable[str] = (), *,
                 hashes: Iterable[str] = (), max_bytes: int = MAX_BYTES,
                 max_lines: int = MAX_LINES) -> tuple[dict | None, Skip | None]:
    """(code_context, None) for a finding whose file is under `root`, else (None, Skip).

    `radius` lines are shown before and after the finding's lines (clipped to the file, at most
    `max_lines` in all); `redact`: strings to blank; `hashes`: more SHA-256 digests of secrets
    to blank wherever they appear (e.g. every `secret.sha256` of the run, so that a scanner that
    does not hash the secret it reports still gets it blanked)."""
    try:
        return _context(finding, Path(root), radius, tuple(redact), tuple(hashes), max_bytes, max_lines), None
    except NoContext as exc:
        return None, exc.skip


def code_context(finding: dict, root: Path, radius: int = RADIUS, redact: Iterable[str] = (), *,
                 hashes: Iterable[str] = (), max_bytes: int = MAX_BYTES, max_lines: int = MAX_LINES) -> dict | None:
    """The analysis/1 `code_context` of a finding read under `root`, or None (see read_context)."""
    return read_context(finding, root, radius, redact, hashes=hashes, max_bytes=max_bytes, max_lines=max_lines)[0]


def _context(finding: dict, root: Path, radius: int, redact: tuple, hashes: tuple, max_bytes: int,
             max_lines: int) -> dict:
    loc = finding.get("location") or {}
    if not isinstance(loc, dict) or not loc.get("path"):
        raise NoContext("no-location", "the finding has no file location")
    first = positive_int(loc.get("start_line"))
    if first is None:
        raise NoContext("no-lines", f"{loc['path']}: the finding has no line")
    last = max(positive_int(loc.get("end_line")) or first, first)
    real, rel = locate(root, str(loc["path"]))
    try:
        st = real.stat()
    except OSError as exc:
        raise NoContext("unreadable", f"{rel}: {exc.strerror or exc}") from None
    source = _read(real, st.st_mtime_ns, st.st_size, max_bytes)
    n = len(source.lines)
    if first > n:
        raise NoContext("out-of-range", f"{rel}: line {first} is past the end of the file ({n} lines)")
    radius = max(0, int(radius))
    start, end = max(1, first - radius), min(n, last + radius)
    end = min(end, start + max(1, max_lines) - 1)
    code = _secure(source, start, end, finding, first, min(last, n), redact, hashes)
    language = detect_language(rel, source.head)
    grammar = grammar_key(language, rel)
    ctx = {
        "path": rel, "language": language, "start_line": start, "end_line": end,
        "code": "\n".join(code), "finding_lines": [first, last],
    }
    a, b = trim_range(source.lines, language, first, min(last, n))
    enclosing = enclosing_unit(_tree(real, st.st_mtime_ns, st.st_size, max_bytes, grammar), grammar, rel, a, b)
    if enclosing:
        if "name" in enclosing and redact:
            enclosing["name"] = secrets.redact(enclosing["name"], redact) or enclosing["name"]
        ctx["enclosing"] = enclosing
    return ctx
