"""Records: the JSON Schema of each record kind (schemas/, the contract between commands), the
validators compiled once, and JSONL in and out. One reader: every bad line is yielded as its
InputError and the lines after it are still read; one writer: deterministic lines (sorted keys,
UTF-8), each output record checked against its kind first.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from functools import cache, partial

import orjson

from secai.errors import InputError
from secai.files import shipped

SCHEMA_DIR = shipped("schemas")


# ---------------------------------------------------------------- schemas

@cache
def schema(kind: str) -> dict:
    """The JSON Schema of a record kind ('finding/1' -> schemas/finding.schema.json)."""
    name = kind.split("/")[0]
    return orjson.loads((SCHEMA_DIR / f"{name}.schema.json").read_bytes())


@cache
def validator(kind: str):
    """Compiled validator for a record kind (jsonschema-rs: ~30x faster than jsonschema here).
    Schemas refer to each other by their relative $ids (analysis.schema.json's `finding` is
    {"$ref": "finding.schema.json"}), which any validator resolves against the documents it is given
    or against the files beside it: all of schemas/ is registered and nothing is fetched."""
    import jsonschema_rs

    others = [orjson.loads(p.read_bytes()) for p in sorted(SCHEMA_DIR.glob("*.schema.json"))]
    registry = jsonschema_rs.Registry([(s["$id"], s) for s in others])
    return jsonschema_rs.validator_for(schema(kind), registry=registry, offline=True)


# the keywords of a record schema that check each field alone (its own value, whatever the others)
_FIELDWISE = {"$schema", "$id", "title", "description", "type", "additionalProperties", "required", "properties", "$defs"}


@cache
def fields_validator(kind: str):
    """`is_valid` for some of the fields of a `kind` record: each as it is checked in a whole record,
    no field required. A record is valid exactly when it holds the required fields and its fields,
    in parts that together hold each field once, are valid this way: the schema (an object, no
    field beyond its properties, some required) checks each field on its own value alone, which is
    checked here (a schema that checks one field against another fails here, never lets a part
    through). secai.parsing.shared checks a rule's part of many findings once this way."""
    import jsonschema_rs

    s = schema(kind)
    if set(s) - _FIELDWISE or s.get("type") != "object" or s.get("additionalProperties") is not False:
        raise RuntimeError(f"{kind}'s schema checks more than each field alone: {sorted(set(s) - _FIELDWISE)}")
    return jsonschema_rs.validator_for({**s, "required": []}, offline=True).is_valid


def schema_error(kind: str, record) -> str | None:
    """None when `record` is a valid `kind`, else a one-line reason with the JSON path."""
    v = validator(kind)
    if v.is_valid(record):
        return None
    err = next(iter(v.iter_errors(record)))
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.instance_path)
    return f"{path}: {err.message}"


# ---------------------------------------------------------------- JSONL in

Kinds = str | tuple[str, ...] | None


def check_line(name: str, lineno: int, raw: bytes, kind: Kinds) -> dict | InputError:
    """One JSONL line as a record, or the InputError that says why it is not one: not JSON, not an
    object, or not a valid `kind` (one kind, any of several, or None for any object)."""
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return InputError(name, lineno, f"invalid JSON: {exc.msg}")
    if not isinstance(rec, dict):
        return InputError(name, lineno, f"expected a JSON object, got {type(rec).__name__}")
    if kind:
        kinds = (kind,) if isinstance(kind, str) else kind
        got = rec.get("schema")
        if got not in kinds:
            return InputError(name, lineno, f"expected a {' or '.join(kinds)} record, got schema {got!r}")
        reason = schema_error(got, rec)
        if reason:
            return InputError(name, lineno, reason)
    return rec


def parse_lines(name: str, lines: Iterable[bytes], kind: Kinds) -> Iterator[tuple[int, dict | InputError]]:
    """(line number, record or InputError) for each non-blank line: a bad line is yielded as its
    error and the lines after it are still read, so that a caller with --rejects loses nothing."""
    if isinstance(lines, (bytes, bytearray, memoryview)):
        lines = bytes(lines).split(b"\n")
    for lineno, raw in enumerate(lines, 1):
        if raw.strip():
            yield lineno, check_line(name, lineno, raw, kind)


def read_jsonl(name: str, kind: Kinds) -> Iterator[tuple[int, dict | InputError]]:
    """The one JSONL reader: (line number, record or InputError) for each non-blank line of a file
    ('-' is stdin), lazily; a file that cannot be read is one InputError (line None)."""
    try:
        fh = sys.stdin.buffer if name == "-" else open(name, "rb")
    except OSError as exc:
        yield 0, InputError(name, None, exc.strerror or str(exc))
        return
    try:
        yield from parse_lines(name, fh, kind)
    except OSError as exc:  # a read error part-way (a directory, an I/O error)
        yield 0, InputError(name, None, exc.strerror or str(exc))
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def read_jsonl_strict(name: str, kind: Kinds) -> Iterator[tuple[int, dict]]:
    """read_jsonl for inputs that must be whole (a dataset being trained on or published): the first
    bad line is raised."""
    for lineno, rec in read_jsonl(name, kind):
        if isinstance(rec, InputError):
            raise rec
        yield lineno, rec


# ---------------------------------------------------------------- output

def dumps(record: dict) -> bytes:
    """One deterministic JSONL line: sorted keys, UTF-8, newline-terminated."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def field_bytes(key: str, value) -> bytes:
    """`"key":value`, a field as dumps renders it inside a record."""
    return dumps({key: value})[1:-2]


# a value as dumps renders it inside a record (field_bytes without the key)
value_bytes = partial(orjson.dumps, option=orjson.OPT_SORT_KEYS)


def render(kind: str | None, record: dict) -> bytes:
    """A record as its JSONL line, once it is checked to be a valid `kind` (a bug if not)."""
    if kind:
        reason = schema_error(kind, record)
        if reason:
            raise RuntimeError(f"output record {record.get('id', '')} is not a valid {kind}: {reason}")
    return dumps(record)


def strings(value) -> Iterator[str]:
    """Every string of a JSON value (values, not keys), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
