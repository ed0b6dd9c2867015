"""A content-addressed cache of records: one file per key, written atomically.

Two processes writing the same key write the same content, and each write is a rename of a
complete temporary file (secai.files.AtomicOutput), so readers never see a partial entry, even
after a kill mid-run; the temporary a killed run left is removed when the key is written again.
An entry that is not what was stored (not JSON, truncated, not a valid record of the cache's
kind) counts as a miss: the caller recomputes it and `put` rewrites it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from secai.records import schema_error
from secai.files import write_atomic


def key(*parts) -> str:
    """A cache key: SHA-256 over the parts' canonical JSON."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def content_hash(record: dict, volatile: tuple[str, ...] = ("source",)) -> str:
    """SHA-256 of a record's canonical JSON without its `volatile` fields: what a result computed
    from the record depends on. For a finding that is everything but `source` (the artifact file,
    run id, commit and branch it was read from), which changes on every CI run while the finding,
    and so its analysis, stays the same."""
    return key({k: v for k, v in record.items() if k not in volatile})


class Cache:
    """Records by key under `directory` (None: a cache that holds nothing). With `kind`, an entry
    is served only when it is a valid record of that kind."""

    def __init__(self, directory: Path | str | None, kind: str | None = None):
        self.dir = Path(directory) if directory else None
        self.kind = kind
        self.hits = self.misses = self.corrupt = 0

    def _path(self, k: str) -> Path:
        return self.dir / k[:2] / f"{k}.json"

    def get(self, k: str) -> dict | None:
        if self.dir is None:
            return None
        try:
            value = orjson.loads(self._path(k).read_bytes())
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, orjson.JSONDecodeError):  # unreadable or not JSON: recompute
            value = None
        if not self._valid(value):
            self.misses += 1
            self.corrupt += 1
            return None
        self.hits += 1
        return value

    def _valid(self, value) -> bool:
        if not isinstance(value, dict):
            return False
        if self.kind is None:
            return True
        return value.get("schema") == self.kind and schema_error(self.kind, value) is None

    def put(self, k: str, value: dict) -> None:
        if self.dir is None:
            return
        write_atomic(self._path(k), orjson.dumps(value))
