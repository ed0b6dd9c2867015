"""The command base every secai command shares.

A command subclasses `Command`, sets `name`, `description`, `examples`, the record kinds it reads
and writes, and implements `add_arguments` and `process(records)`. The base gives it: common flags,
lazy JSONL input validated line by line, deterministic JSONL output validated record by record and
written atomically, `--rejects`, one-line errors with FILE:LINE, fixed exit codes (0 ok, 1 data or
runtime error, 2 usage), progress on stderr only on a terminal, and quiet SIGPIPE handling.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

import orjson

from secai import __version__
from secai.config import ROOT

SCHEMA_DIR = ROOT / "schemas"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class InputError(Exception):
    """Bad input: reported as `FILE:LINE: reason` (LINE omitted when unknown)."""

    def __init__(self, file: str, line: int | None, reason: str):
        super().__init__(reason)
        self.file, self.line, self.reason = file, line, reason

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}"


# ---------------------------------------------------------------- schemas

@cache
def schema(kind: str) -> dict:
    """The JSON Schema of a record kind ('finding/1' -> schemas/finding.schema.json)."""
    name = kind.split("/")[0]
    return orjson.loads((SCHEMA_DIR / f"{name}.schema.json").read_bytes())


@cache
def validator(kind: str):
    """Compiled validator for a record kind (jsonschema-rs: ~30x faster than jsonschema here).
    Schemas refer to each other by $id; all of schemas/ is registered and nothing is fetched."""
    import jsonschema_rs

    others = [orjson.loads(p.read_bytes()) for p in sorted(SCHEMA_DIR.glob("*.schema.json"))]
    registry = jsonschema_rs.Registry([(s["$id"], s) for s in others])
    return jsonschema_rs.validator_for(schema(kind), registry=registry, offline=True)


def schema_error(kind: str, record) -> str | None:
    """None when `record` is a valid `kind`, else a one-line reason with the JSON path."""
    v = validator(kind)
    if v.is_valid(record):
        return None
    err = next(iter(v.iter_errors(record)))
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.instance_path)
    return f"{path}: {err.message}"


# ---------------------------------------------------------------- JSONL in

def read_jsonl(name: str, kind: str | None) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each non-blank line of a JSONL file ('-' is stdin), lazily.
    Raises InputError for a line that is not JSON, not an object or not a valid `kind`."""
    fh = sys.stdin.buffer if name == "-" else open(name, "rb")
    try:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise InputError(name, lineno, f"invalid JSON: {exc.msg}") from None
            if not isinstance(rec, dict):
                raise InputError(name, lineno, f"expected a JSON object, got {type(rec).__name__}")
            if kind:
                if rec.get("schema") != kind:
                    raise InputError(name, lineno, f"expected a {kind} record, got schema {rec.get('schema')!r}")
                reason = schema_error(kind, rec)
                if reason:
                    raise InputError(name, lineno, reason)
            yield lineno, rec
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


# ---------------------------------------------------------------- output

class AtomicOutput:
    """A binary output that appears all at once: a temporary file renamed into place on success
    and removed on failure. '-' or None is stdout, written directly."""

    def __init__(self, path: str | None):
        self.path = None if path in (None, "-") else Path(path)
        self.tmp = None

    def __enter__(self):
        if self.path is None:
            return sys.stdout.buffer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.tmp = tmp
        self.fh = os.fdopen(fd, "wb")
        return self.fh

    def __exit__(self, exc_type, exc, tb):
        if self.path is None:
            sys.stdout.buffer.flush()
            return False
        self.fh.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)
        return False


def dumps(record: dict) -> bytes:
    """One deterministic JSONL line: sorted keys, UTF-8, newline-terminated."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def render(kind: str | None, record: dict) -> bytes:
    """A record as its JSONL line, once it is checked to be a valid `kind` (a bug if not)."""
    if kind:
        reason = schema_error(kind, record)
        if reason:
            raise RuntimeError(f"output record {record.get('id', '')} is not a valid {kind}: {reason}")
    return dumps(record)


# ---------------------------------------------------------------- the base command

def common_flags(p: argparse.ArgumentParser, quiet: str = "nothing on stderr but errors") -> None:
    """-q, -v and --version, for a command that builds its own parser (sub-commands, no JSONL input)."""
    p.add_argument("-q", "--quiet", action="store_true", help=quiet)
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks on errors")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


class Command:
    name = "secai"
    description = ""
    examples = ""            # shown under --help
    input_kind: str | None = None   # record kind read from FILE... (None: the command reads other input)
    output_kind: str | None = None  # record kind written

    def __init__(self):
        self.args = None
        self.rejects = []        # (file, line, reason) of inputs set aside with --rejects

    # -- to implement
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's own flags."""

    def process(self, records: Iterable[dict]) -> Iterable[dict]:
        """Turn input records into output records."""
        return records

    # -- shared behaviour
    def parser(self) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog=self.name,
            description=self.description,
            epilog=("examples:\n" + self.examples) if self.examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("inputs", nargs="*", default=["-"], metavar="FILE",
                       help="input files ('-' or none: stdin)")
        p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")
        p.add_argument("--rejects", metavar="FILE",
                       help="set bad inputs aside here (JSONL: file, line, reason) and keep going, "
                            "instead of stopping at the first")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
        p.add_argument("-v", "--verbose", action="store_true", help="more detail on stderr; tracebacks on errors")
        p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
        self.add_arguments(p)
        return p

    def log(self, message: str) -> None:
        if not self.args.quiet:
            print(f"{self.name}: {message}", file=sys.stderr)

    def reject(self, err: InputError) -> None:
        """Record a bad input when --rejects is on; otherwise stop with its error."""
        if not self.args.rejects:
            raise err
        self.rejects.append(err)
        print(f"{self.name}: rejected: {err}", file=sys.stderr)

    def progress(self, iterable, unit: str = "record", total: int | None = None):
        """`iterable` with a tqdm bar on stderr, shown only when stderr is a terminal and -q is off."""
        from tqdm import tqdm

        return tqdm(iterable, total=total, unit=unit, file=sys.stderr, leave=False,
                    disable=self.args.quiet or not sys.stderr.isatty())

    def read_inputs(self) -> Iterator[dict]:
        """Records of `input_kind` from every FILE, lazily; bad lines are rejected or raised."""
        for name in self.args.inputs:
            try:
                for _lineno, rec in read_jsonl(name, self.input_kind):
                    yield rec
            except InputError as err:
                self.reject(err)
            except OSError as exc:
                self.reject(InputError(name, None, exc.strerror or str(exc)))

    def write(self, records: Iterable[dict]) -> int:
        kind = self.output_kind
        return self.write_lines(render(kind, rec) for rec in records)

    def write_lines(self, lines: Iterable[bytes]) -> int:
        """Write rendered JSONL lines to the output, atomically; returns how many."""
        count = 0
        with AtomicOutput(self.args.output) as out:
            for line in lines:
                out.write(line)
                count += 1
        return count

    def write_rejects(self) -> None:
        if not self.args.rejects:
            return
        with AtomicOutput(self.args.rejects) as out:
            for err in self.rejects:
                out.write(dumps({"file": err.file, "line": err.line, "reason": err.reason}))

    def run(self) -> int:
        count = self.write(self.process(self.read_inputs()))
        self.write_rejects()
        return count

    def main(self, argv: list[str] | None = None) -> int:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends us quietly
        try:
            self.args = self.parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version (0) and usage errors (2)
            return int(exc.code or 0)
        try:
            self.run()
            return EXIT_OK
        except InputError as err:
            print(f"{self.name}: error: {err}", file=sys.stderr)
        except KeyboardInterrupt:
            print(f"{self.name}: interrupted", file=sys.stderr)
        except Exception as exc:  # one line, traceback only with -v
            if self.args.verbose:
                traceback.print_exc()
            print(f"{self.name}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def entry(command_class) -> None:
    """`main()` of a command module: run it and exit with its code."""
    sys.exit(command_class().main())
