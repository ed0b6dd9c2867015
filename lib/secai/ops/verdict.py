"""What one check of secai-doctor (secai.ops.checks) finds: its Check record and the Result a check
raises or returns (ok, warn or fail, a detail, what to do), and the helpers the checks share."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from secai import config

OK, WARN, FAIL = "ok", "warn", "fail"
GIB = 1024 ** 3


@dataclass(frozen=True)
class Options:
    """What every check may look at: `hash` the base models' weights, print tracebacks (`verbose`)."""
    hash: bool = False
    verbose: bool = False


@dataclass
class Check:
    name: str
    group: str
    status: str                 # ok | warn | fail
    detail: str
    fix: str | None = None      # what to do (warn and fail)
    data: dict = field(default_factory=dict)


class Result(Exception):
    """A check's outcome, raised from anywhere inside it: Result(WARN, detail, fix, **data)."""

    def __init__(self, status: str, detail: str, fix: str | None = None, **data):
        super().__init__(detail)
        self.status, self.detail, self.fix, self.data = status, detail, fix, data


def norm_dist(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def version_of(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def fmt_gib(n: float) -> str:
    """Bytes as GiB, one decimal."""
    return f"{n / GIB:.1f} GiB"


def fmt_size(n: int) -> str:
    """Bytes in the largest unit that fits."""
    for unit, scale in (("GiB", GIB), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def tilde(path: Path) -> str:
    """A path with the home directory as ~ (shorter lines, nothing else hidden)."""
    text, home = str(path), str(Path.home())
    return "~" + text[len(home):] if text == home or text.startswith(home + os.sep) else text


def setting(section: str, key: str):
    """A setting that tolerates a broken config (the config check reports that): then its shipped default."""
    try:
        return config.get(section, key)
    except config.ConfigError:
        try:
            return config.default(section, key)
        except KeyError:  # the shipped file itself is broken
            return None


def secai_home() -> Path:
    """Where this secai runs from: its checkout, else the installed package's folder."""
    return config.CHECKOUT or Path(__file__).resolve().parents[1]


def project_path(value) -> Path:
    """A configured path: ~ expanded, a relative one under the checkout (installed: the current folder)."""
    p = Path(os.path.expanduser(str(value)))
    return p if p.is_absolute() else (config.CHECKOUT or Path.cwd()) / p
