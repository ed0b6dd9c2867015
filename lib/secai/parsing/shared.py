"""Finishing findings that share a part (finding.Split: the fields a finding shares with others of
its report, a SARIF rule's title, description, tags and severity, and its own, its location and
message), doing once per shared part what depends on it alone.

A Split's record is the one finding.Finisher makes of {**shared, **own}, byte for byte:
- finishing: every field is finished on its own value (pruned, capped, scrubbed: Finisher.finish_fields),
  so the shared part is finished once; what looks across fields (a description or message that
  repeats the title, the fingerprint over finding.IDENTITY) reads the raw parts merged, own winning;
- checking: the schema checks each field on its own value (records.fields_validator), so the
  shared part is checked once and the own part per finding, and the record's keys once per layout
  for the required ones: together, the whole record against schemas/finding.schema.json;
- rendering: a record's JSON line, keys sorted, is its fields' `"key":value` in key order, so the
  shared fields are rendered once and the own values per finding, joined into the line.
A finding that fails its check is given back whole (`render` returns the record), for
records.schema_error to say why exactly as for any other finding. A part this does not handle (own
fields a parser left empty, own fields the finisher sets, a shared part that cannot be finished)
goes through Finisher on the merged finding.
"""

from __future__ import annotations

import copy

from secai.parsing.finding import (IDENTITY, SCHEMA, Finisher, Split, fingerprint, merged,
    prune)
from secai.records import dumps, field_bytes, fields_validator, schema, validator, value_bytes

_FIXED = frozenset(("schema", "id", "occurrences", "source"))  # the finisher sets these, whatever a part holds
REQUIRED = frozenset(schema(SCHEMA)["required"])


class _Part:
    """What a shared part gives each finding that holds it: raw fields (pruned, for the checks
    across fields), finished fields with the finisher's own (schema, occurrences, source, the
    default of suppressed), each rendered, whether they are valid, and the layouts of its records."""

    __slots__ = ("obj", "raw", "identity", "fields", "frags", "valid", "layouts", "generic")

    def __init__(self, shared: dict, fin: SplitFinisher):
        self.obj = shared  # held, so its id names no other part while this lives
        self.layouts: dict[tuple, tuple] = {}
        raw = copy.deepcopy({k: v for k, v in shared.items() if k != "source"})
        if not fin.clean:
            prune(raw)
        self.raw = raw
        self.identity = {k: raw[k] for k in IDENTITY if k in raw}
        done = copy.deepcopy(raw)
        fin.finish_fields(done)
        done.setdefault("suppressed", False)
        done.update(schema=SCHEMA, occurrences=1, source=fin.source)
        self.fields = done
        self.frags = {k: field_bytes(k, v) for k, v in done.items()}
        self.valid = fields_validator(SCHEMA)(done)


class SplitFinisher(Finisher):
    """finding.Finisher that also renders Splits (`render`): finished, checked and rendered, each
    shared part once."""

    PARTS = 10_000  # shared parts remembered per report, at most

    def __init__(self, source: dict, clean: bool = False, max_text: int | None = None):
        super().__init__(source, clean, max_text)
        self.parts: dict[int, tuple[dict, _Part | None]] = {}  # id -> (the shared part, held: no other has its id)
        self.valid = fields_validator(SCHEMA)

    def _part(self, shared: dict) -> _Part | None:
        held = self.parts.get(id(shared))
        if held is not None and held[0] is shared:
            return held[1]
        if len(self.parts) >= self.PARTS:
            self.parts.clear()
        try:
            part = _Part(shared, self)
        except Exception:  # noqa: BLE001 (Finisher on the merged findings says what is wrong, as for any)
            part = None
        self.parts[id(shared)] = shared, part
        return part

    def render(self, f: Split) -> tuple[str, bytes] | dict:
        """(id, JSON line) of a Split's record, or the record when it is not valid."""
        held, own = self.parts.get(id(f.shared)), f.own
        part = held[1] if held is not None and held[0] is f.shared else self._part(f.shared)
        if part is None or not _FIXED.isdisjoint(own):
            return _whole(self(merged(f)))
        if not self.clean:
            keys = tuple(own)
            prune(own)
            if len(own) != len(keys):  # an own field left empty hides the shared one: the merged finding's
                return _whole(self(merged(Split(f.shared, {**own, **{k: None for k in keys if k not in own}}))))
        raw = part.raw
        hidden = ()  # fields of the shared part the record has not (gone from the merged finding)
        title = own["title"] if "title" in own else raw.get("title")
        description = own["description"] if "description" in own else raw.get("description")
        if description is not None and description == title:
            own.pop("description", None)
            hidden, description = ("description",), None
        message = own["message"] if "message" in own else raw.get("message")
        if message is not None and (message == title or message == description):
            own.pop("message", None)
            hidden = (*hidden, "message")
        fid = fingerprint({**part.identity, **own})  # of the texts as found, as Finisher's (it reads IDENTITY)
        keys = len(own)
        self.finish_fields(own)
        if len(own) != keys:  # references with no web link among them: none
            hidden = (*hidden, "references")
        own["id"] = fid
        layout = part.layouts.get((*own, hidden))
        if layout is None:
            layout = part.layouts[(*own, hidden)] = _layout(part, own, hidden)
        segments, names, complete = layout
        if not (complete and part.valid and self.valid(own)):
            return _record(f, part, own, hidden)
        out = [segments[0]]
        for name, segment in zip(names, segments[1:]):
            out += value_bytes(own[name]), segment
        return fid, b"".join(out)


def _whole(rec: dict) -> tuple[str, bytes] | dict:
    return (rec["id"], dumps(rec)) if validator(SCHEMA).is_valid(rec) else rec


def _record(f: Split, part: _Part, own: dict, hidden: tuple) -> dict:
    """The record of a Split as Finisher gives it, its fields in the same order (the order a
    validator may meet its errors in)."""
    rec = {}
    for k in (*f.shared, *own):
        if k in own:
            rec[k] = own[k]
        elif k in part.fields and k not in hidden:
            rec[k] = part.fields[k]
    for k in _FIXED:
        rec.pop(k, None)
    rec.setdefault("suppressed", False)
    rec.update(schema=SCHEMA, id=own["id"], occurrences=1, source=part.fields["source"])
    return rec


def _layout(part: _Part, own: dict, hidden: tuple) -> tuple[list[bytes], list[str], bool]:
    """(literal segments, own field names between them, whether every required field is there) of
    the records of `part` with these own fields."""
    keys = sorted({*(k for k in part.fields if k not in hidden), *own})
    segments, names, current = [], [], b"{"
    for i, k in enumerate(keys):
        current += b"," if i else b""
        if k in own:
            segments.append(current + field_bytes(k, 0)[:-1])
            names.append(k)
            current = b""
        else:
            current += part.frags[k]
    segments.append(current + b"}\n")
    return segments, names, REQUIRED <= set(keys)
