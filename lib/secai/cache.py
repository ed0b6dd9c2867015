"""A content-addressed cache of records: one file per key, written atomically.

Two processes writing the same key write the same content, and each write is a rename of a
complete temporary file, so readers never see a partial entry, even after a kill mid-run.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import orjson


def key(*parts) -> str:
    """A cache key: SHA-256 over the parts' canonical JSON."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Cache:
    def __init__(self, directory: Path | str | None):
        self.dir = Path(directory) if directory else None
        self.hits = self.misses = 0

    def _path(self, k: str) -> Path:
        return self.dir / k[:2] / f"{k}.json"

    def get(self, k: str) -> dict | None:
        if self.dir is None:
            return None
        try:
            value = orjson.loads(self._path(k).read_bytes())
        except (OSError, orjson.JSONDecodeError):  # absent, or unreadable: recompute
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, k: str, value: dict) -> None:
        if self.dir is None:
            return
        path = self._path(k)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{k}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(value))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
