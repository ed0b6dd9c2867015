"""Large reports in little memory: a JSON object report of LAZY_BYTES or more is read lazily, and
a report's finished lines past SPOOL_BYTES wait in a temporary file, not in memory.

Lazily: msgspec checks the whole document once and finds its top-level values without building
them; each small value is decoded by orjson as usual, and each large array becomes `LazyItems`,
whose items orjson decodes one at a time as the parser reads them (and forgets them after). What a
parser sees is what orjson would give for the whole document, item by item, so a format that reads
each array in order without changing it (`Format.lazy`) gives the same findings; any other format
gets the document loaded whole. A document msgspec refuses, or an item orjson refuses, is read
again whole, so that the error is the one orjson reports for the file.
"""

from __future__ import annotations

import io
import mmap
import tempfile

import msgspec
import orjson

LAZY_BYTES = 64 << 20   # a JSON object report at least this large is read lazily
BIG_ARRAY = 1 << 20     # its top-level arrays of at least this many bytes are read item by item
SPOOL_BYTES = 32 << 20  # a report's lines past this many bytes go to a temporary file


class ItemRefused(Exception):
    """An item of a lazily read array that orjson refuses: the report is to be read again whole."""


def _item(raw: msgspec.Raw):
    try:
        return orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError as exc:
        raise ItemRefused(str(exc)) from None


class LazyItems(list):
    """A top-level JSON array of a large report whose items are decoded as they are read: a list to
    `isinstance` and `as_list`, with a length, indexing and iteration; read-only."""

    __slots__ = ("_raws",)

    def __init__(self, raws: list[msgspec.Raw]):
        super().__init__()
        self._raws = raws

    def __len__(self) -> int:
        return len(self._raws)

    def __iter__(self):
        return map(_item, self._raws)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [_item(raw) for raw in self._raws[index]]
        return _item(self._raws[index])


def lazy_object(data: bytes) -> dict | None:
    """The JSON object `data` with its large top-level arrays as LazyItems, or None when it has none
    or is not a well-formed JSON object (read it whole: orjson then says what is wrong)."""
    try:
        top = msgspec.json.decode(data, type=dict[str, msgspec.Raw])
        doc, lazy = {}, False
        for key, raw in top.items():
            view = memoryview(raw)
            if len(view) >= BIG_ARRAY and view[:1] == b"[":
                doc[key], lazy = LazyItems(msgspec.json.decode(raw, type=list[msgspec.Raw])), True
            else:
                doc[key] = orjson.loads(view)
    except (msgspec.DecodeError, orjson.JSONDecodeError):
        return None
    return doc if lazy else None


def is_lazy(doc) -> bool:
    return type(doc) is dict and any(type(v) is LazyItems for v in doc.values())


class Spool:
    """A report's JSONL lines as they are written: in memory, then, past SPOOL_BYTES, in a temporary
    file (unlinked at once); `value()` is the bytes, or a read-only map of the file."""

    def __init__(self):
        self.mem: io.BytesIO | None = io.BytesIO()
        self.file = None
        self.size = 0

    def write(self, data: bytes) -> None:
        (self.file or self.mem).write(data)
        self.size += len(data)
        if self.file is None and self.size > SPOOL_BYTES:
            self.file = tempfile.TemporaryFile()
            self.file.write(self.mem.getbuffer())
            self.mem = None

    def tell(self) -> int:
        return self.size

    def value(self) -> bytes | mmap.mmap:
        if self.file is None:
            return self.mem.getvalue()
        self.file.flush()
        with self.file:
            return mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ)
