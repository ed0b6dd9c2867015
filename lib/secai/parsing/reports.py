"""secai-parse: scanner reports in, normalized and deduplicated finding/1 records out."""

from __future__ import annotations

import codecs
import gc
import io
import os
import stat
import sys
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import NamedTuple

import orjson

from secai import config
from secai.parsing import formats as parsers
from secai.cli import Command, InputError, entry, render
from secai.records import ParseError, finalize, merge_duplicate

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class Unit:
    """One report to read: a file, a zip member or stdin. `explicit` is False for files found by
    walking a directory or a zip, whose unknown content is skipped rather than an error."""

    __slots__ = ("name", "data", "explicit")

    def __init__(self, name: str, data: bytes, explicit: bool):
        self.name, self.data, self.explicit = name, data, explicit


class NotAReport(Exception):
    """Content that is no report format secai knows (skipped when found by a walk)."""


def _decode(data: bytes) -> bytes:
    """UTF-8 bytes without a BOM (UTF-16 reports, as PowerShell writes them, are converted)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16").encode("utf-8")
    return data


def _load_json(unit: Unit, data: bytes):
    """(syntax, document) of JSON or JSON Lines bytes."""
    try:
        return "json", orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        first_error = exc
    lines = data.split(b"\n")
    try:
        first = orjson.loads(lines[0])
    except orjson.JSONDecodeError:
        first = None
    if not isinstance(first, dict):  # not JSON Lines either: report the document's own error
        raise InputError(unit.name, first_error.lineno, f"invalid JSON: {first_error.msg} (column {first_error.colno})")
    records = []
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise InputError(unit.name, lineno, f"invalid JSON Lines record: {exc.msg}") from None
    return "jsonl", records


def _load_xml(unit: Unit, data: bytes):
    from xml.etree.ElementTree import ParseError as XMLSyntaxError

    import defusedxml
    import defusedxml.ElementTree as DET

    try:
        return "xml", DET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DTDForbidden:
        raise InputError(unit.name, None, "refused XML: a DTD is not allowed in a report "
                                          "(entity expansion and external entities are attacks)") from None
    except (defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden):
        raise InputError(unit.name, None, "refused XML: entity declarations are not allowed (XML bomb or external entity)") from None
    except XMLSyntaxError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        raise InputError(unit.name, line, f"invalid XML: {exc}") from None


def load(unit: Unit):
    """(syntax, document) of a report's bytes, by content."""
    data = _decode(unit.data)
    head = data[:64].lstrip()
    if not head:
        raise InputError(unit.name, None, "empty file")
    if head[:1] in b"{[\"" or head[:4] in (b"null", b"true") or head[:5] == b"false" or head[:1].isdigit():
        return _load_json(unit, data)
    if head[:1] == b"<":
        return _load_xml(unit, data)
    if b"\x00" in data[:4096]:
        raise NotAReport("binary data, not a report")
    raise NotAReport("text that is neither JSON nor XML")


def _describe(doc) -> str:
    if isinstance(doc, dict):
        keys = ", ".join(sorted(doc)[:8])
        return f"a JSON object with keys {keys or '(none)'}"
    if isinstance(doc, list):
        return f"a JSON array of {len(doc)} items"
    if hasattr(doc, "tag"):
        return f"XML with root <{doc.tag}>"
    return f"JSON {type(doc).__name__}"


def _empty(doc) -> bool:
    """null, [] or {}: an empty report (Trivy writes `null` when it found nothing)."""
    return doc is None or doc == [] or doc == {}


class Parse(Command):
    name = "secai-parse"
    description = ("Read scanner reports (files, directories, GitHub Actions artifact zips, or stdin), "
                   "detect each format from its content, and write one normalized, deduplicated "
                   "finding/1 record per line.")
    examples = """\
  secai-parse trivy.json checkov.sarif > findings.jsonl
  secai-parse artifacts/ security-reports.zip -o build/findings.jsonl --rejects build/rejects.jsonl
  trivy image -f json alpine:3.10 | secai-parse | jq -r .title
  secai-parse --list-formats

Files found by walking a directory or a zip that are not a known report are skipped with a note;
a file named explicitly must be one. With --rejects, unreadable reports are listed there and the
rest are still parsed (exit 0); without it, the first one stops the run (exit 1)."""
    output_kind = "finding/1"

    def add_arguments(self, p):
        p.add_argument("--list-formats", action="store_true", help="list the formats read and what identifies each (with -v: how each is mapped)")
        p.add_argument("--format", choices=sorted(parsers.BY_NAME), help="read every input as this format (no detection)")
        p.add_argument("--run-id", help="CI run id to record in source.run_id")
        p.add_argument("--commit", help="scanned commit to record in source.commit")
        p.add_argument("--branch", help="scanned branch to record in source.branch")
        p.add_argument("--max-file-mb", type=float, default=None,
                       help="refuse a report or zip member larger than this (default: parse.max_file_mb)")

    # ------------------------------------------------------------ inputs

    def _limit(self) -> int:
        mb = self.args.max_file_mb if self.args.max_file_mb is not None else config.get("parse", "max_file_mb")
        return int(mb * 1024 * 1024)

    def _read_file(self, path: str, explicit: bool) -> Iterator[Unit]:
        limit = self._limit()
        try:
            if path == "-":
                data = sys.stdin.buffer.read(limit + 1)
            else:
                st = os.stat(path)
                if not stat.S_ISREG(st.st_mode):
                    raise InputError(path, None, "not a regular file")
                if st.st_size > limit:
                    raise InputError(path, None, f"{st.st_size / 1048576:.1f} MB is over the {limit / 1048576:.0f} MB limit (--max-file-mb)")
                with open(path, "rb") as fh:
                    data = fh.read(limit + 1)
        except OSError as exc:
            raise InputError(path, None, exc.strerror or str(exc)) from None
        if len(data) > limit:
            raise InputError(path, None, f"over the {limit / 1048576:.0f} MB limit (--max-file-mb)")
        if data.startswith(ZIP_MAGIC):
            yield from self._zip_members(path, data)
        else:
            yield Unit(path, data, explicit)

    def _zip_members(self, name: str, data: bytes) -> Iterator[Unit]:
        """The members of an artifact zip; a refused member is rejected alone, the others still read."""
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            infos = sorted(zf.infolist(), key=lambda i: i.filename)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise InputError(name, None, f"bad zip archive: {exc}") from None
        for info in infos:
            if info.is_dir() or PurePosixPath(info.filename.replace("\\", "/")).name.startswith("."):
                continue
            try:
                yield Unit(f"{name}!{info.filename}", self._zip_member(zf, info, f"{name}!{info.filename}"), False)
            except InputError as err:
                self.reject(err)

    def _zip_member(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, member: str) -> bytes:
        """A member's bytes, refusing path traversal and zip bombs (declared and actual sizes)."""
        limit = self._limit()
        ratio = config.get("parse", "max_zip_ratio")
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise InputError(member, None, "zip member path escapes the archive (refused)")
        if info.file_size > limit:
            raise InputError(member, None, f"zip member expands to {info.file_size / 1048576:.0f} MB, over the limit (zip bomb?)")
        if info.file_size > 10 * 1048576 and info.file_size > ratio * max(info.compress_size, 1):
            raise InputError(member, None, f"zip member compression ratio over {ratio}:1 (zip bomb?)")
        try:
            with zf.open(info) as fh:
                content = fh.read(limit + 1)
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
            raise InputError(member, None, f"cannot extract zip member: {exc}") from None
        if len(content) > limit:
            raise InputError(member, None, "zip member expands past the size limit (zip bomb?)")
        if content.startswith(ZIP_MAGIC):
            raise InputError(member, None, "nested zip archives are not read")
        return content

    def units(self) -> Iterator[Unit]:
        for path in self.args.inputs:
            if path != "-" and os.path.isdir(path):
                for root, dirs, files in os.walk(path):
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                    for fname in sorted(files):
                        if not fname.startswith("."):
                            yield from self._guarded(self._read_file(os.path.join(root, fname), False))
            else:
                yield from self._guarded(self._read_file(path, True))

    def _guarded(self, units: Iterator[Unit]) -> Iterator[Unit]:
        try:
            yield from units
        except InputError as err:
            self.reject(err)

    # ------------------------------------------------------------ parsing

    def base_source(self) -> dict:
        a = self.args
        env = os.environ if os.environ.get("GITHUB_ACTIONS") == "true" else {}
        return {
            "run_id": a.run_id or env.get("GITHUB_RUN_ID"),
            "commit": a.commit or env.get("GITHUB_SHA"),
            "branch": a.branch or env.get("GITHUB_REF_NAME"),
        }

    def detect(self, unit: Unit):
        """(format, document) of a report, or None for content to skip."""
        try:
            syntax, doc = load(unit)
        except NotAReport as exc:
            if unit.explicit:
                raise InputError(unit.name, None, f"{exc}") from None
            self.log(f"skipped {unit.name}: {exc}")
            return None
        if self.args.format:
            return parsers.BY_NAME[self.args.format], doc
        if syntax == "json" and _empty(doc):
            self.log(f"{unit.name}: empty report (no findings)")
            return None
        fmt, doc = parsers.detect(doc, syntax)
        if fmt is None:
            reason = f"not a known report format: {_describe(doc)} (see --list-formats)"
            if unit.explicit:
                raise InputError(unit.name, None, reason)
            self.log(f"skipped {unit.name}: {reason}")
            return None
        return fmt, doc

    def rendered(self, unit: Unit, base: dict) -> Rendered | None:
        """Every finding of one report as checked JSONL lines, in document order."""
        found = self.detect(unit)
        if found is None:
            return None
        fmt, doc = found
        try:
            return _render(fmt, doc, {"file": unit.name, "format": fmt.name}, base)
        except ParseError as exc:
            where = f"{exc.where}: " if exc.where else ""
            raise InputError(unit.name, exc.line, f"{fmt.name}: {where}{exc.reason}") from None
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(unit.name, None, f"{fmt.name}: unexpected structure ({type(exc).__name__}: {exc})") from None

    def read_inputs(self) -> Iterator[tuple[str, memoryview]]:
        base = self.base_source()
        self.stats = {"reports": 0}
        for unit in self.progress(self.units(), unit="report"):
            try:
                found = self.rendered(unit, base)
            except InputError as err:
                self.reject(err)
                continue
            if found is not None:
                self.stats["reports"] += 1
                if self.args.verbose:
                    self.log(f"{unit.name}: {len(found.ids)} findings")
                yield from found.lines()

    def process(self, rendered):
        """Deduplicate by fingerprint: the first finding of an id is kept, later ones are folded in."""
        kept: dict[str, memoryview | dict] = {}
        raw = 0
        max_instances = config.get("parse", "max_instances")
        for fid, line in rendered:
            raw += 1
            first = kept.get(fid)
            if first is None:
                kept[fid] = line
            else:  # rare: merge as records, render again at the end
                first = first if type(first) is dict else orjson.loads(first)
                merge_duplicate(first, orjson.loads(line), max_instances)
                kept[fid] = first
        self.log(f"{len(kept)} findings from {self.stats['reports']} reports"
                 f" ({raw - len(kept)} duplicates merged, {len(self.rejects)} rejected)")
        return (render(self.output_kind, v) if type(v) is dict else v for v in kept.values())

    def run(self):
        # Reports become millions of small objects and hold no reference cycles: the cyclic
        # collector only rescans them (it doubles orjson's load time on a 40 MB SARIF).
        gc.disable()
        if self.args.list_formats:
            documented = set()
            for fmt in parsers.FORMATS:
                sys.stdout.write(f"{fmt.name:<22} {fmt.syntax:<6} {fmt.tool:<22} {fmt.identifies}\n")
                module = sys.modules[fmt.parse.__module__]
                if self.args.verbose and module not in documented:  # the mapping, severities and dedup rule
                    documented.add(module)
                    sys.stdout.write("\n" + (module.__doc__ or "").strip() + "\n\n")
            return 0
        count = self.write_lines(self.process(self.read_inputs()))
        self.write_rejects()
        return count


class Rendered(NamedTuple):
    """The findings of one report as JSONL in one buffer: a large report's lines stay compact
    this way (each bytes object orjson returns holds several KB of memory while it lives)."""

    ids: list[str]
    ends: list[int]
    blob: bytes

    def lines(self) -> Iterator[tuple[str, memoryview]]:
        view, start = memoryview(self.blob), 0
        for fid, end in zip(self.ids, self.ends):
            yield fid, view[start:end]
            start = end


def _render(fmt, doc, source: dict, base: dict) -> Rendered:
    """Parse a report into finished JSONL lines, each checked against finding/1."""
    ids, ends, buf = [], [], io.BytesIO()
    sources: dict[tuple, dict] = {}  # a report's findings share a few sources: build each once
    for partial in fmt.parse(doc):
        found = partial.pop("source", None) or {}
        key = (found.get("run_id"), found.get("commit"), found.get("branch")) if found else ()
        src = sources.get(key)
        if src is None:
            src = sources[key] = dict(source)
            for name in ("run_id", "commit", "branch"):
                if value := base[name] or found.get(name):
                    src[name] = str(value)
        rec = finalize(partial, src, fmt.clean)
        buf.write(render("finding/1", rec))
        ids.append(rec["id"])
        ends.append(buf.tell())
    return Rendered(ids, ends, buf.getvalue())


def main():
    entry(Parse)


if __name__ == "__main__":
    main()
