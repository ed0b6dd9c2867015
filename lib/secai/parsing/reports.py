"""Reading scanner reports: the units of secai.parsing.inputs in, normalized and deduplicated
finding/1 lines out (secai-parse is secai.commands.parse).

Reading a report never costs another one: whatever goes wrong with a report (bad encoding, bad
syntax, a structure its parser does not expect, any exception inside the parser) is a reject of
that report, named by file (zip member) and line where known; a finding that fails its schema is a
reject of that finding alone (its 1-based position among the report's findings), and the report's
other findings are kept. Where the bytes come from is secai.parsing.inputs; how a finding is built
and duplicates merged, secai.parsing.finding.
"""

from __future__ import annotations

import codecs
import mmap
import re
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from secai import secrets
from secai.records import dumps, render, schema_error
from secai.errors import InputError
from secai.parsing import formats as parsers, lazy
from secai.parsing.finding import ParseError, Split, merge_duplicates, relative_paths, text
from secai.parsing.formats import Format
from secai.parsing.inputs import Limits, Reject, Unit, units
from secai.parsing.shared import SplitFinisher

_CONTENT = re.compile(rb"[^ \t\r\n\x0b\x0c]")  # the first byte that is not whitespace


class NotAReport(Exception):
    """Content that is no report format secai knows (skipped when found by a walk)."""


def _decode(name: str, data: bytes) -> bytes:
    """UTF-8 bytes without a BOM (UTF-16 reports, as PowerShell writes them, are converted)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeError as exc:
            where = f" at byte {exc.start}" if isinstance(exc, UnicodeDecodeError) else ""
            raise InputError(name, None, f"invalid UTF-16 after a UTF-16 byte-order mark: {exc.reason}{where}") from None
    return data


def _load_json(unit: Unit, data: bytes, whole: bool = False):
    """(syntax, document) of JSON or JSON Lines bytes; a large JSON object, unless `whole`, with its
    large arrays read lazily (secai.parsing.lazy)."""
    if not whole and len(data) >= lazy.LAZY_BYTES and data.lstrip()[:1] == b"{":
        doc = lazy.lazy_object(data)
        if doc is not None:
            return "json", doc
    try:
        return "json", orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        first_error = exc
    lines = data.split(b"\n")
    try:
        first = orjson.loads(next((line for line in lines if line.strip()), b""))
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


def _load_xml(unit: Unit, data: bytes, skipped_lines: int = 0):
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
        line = exc.position[0] + skipped_lines if getattr(exc, "position", None) else None
        raise InputError(unit.name, line, f"invalid XML: {exc}") from None


def load(unit: Unit, whole: bool = False):
    """(syntax, document) of a report's bytes, by content (leading whitespace, however much, is
    skipped: only a file of nothing else is empty); `whole`: never lazily."""
    data = _decode(unit.name, unit.data)
    content = _CONTENT.search(data)
    if content is None:
        raise InputError(unit.name, None, "empty file")
    start = content.start()
    head = data[start:start + 64]
    if head[:1] in b"{[\"" or head[:4] in (b"null", b"true") or head[:5] == b"false" or head[:1].isdigit():
        return _load_json(unit, data, whole)
    if head[:1] == b"<":  # an XML declaration must come first: the whitespace before it is dropped
        return _load_xml(unit, data[start:] if start else data, data.count(b"\n", 0, start))
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


class Rendered(NamedTuple):
    """The findings of one report as JSONL in one buffer: a large report's lines stay compact
    this way (each bytes object orjson returns holds several KB of memory while it lives), and
    past lazy.SPOOL_BYTES they wait in a temporary file, mapped (lazy.Spool)."""

    ids: list[str]
    ends: list[int]
    blob: bytes | mmap.mmap

    def lines(self) -> Iterator[tuple[str, memoryview]]:
        view, start = memoryview(self.blob), 0
        for fid, end in zip(self.ids, self.ends):
            yield fid, view[start:end]
            start = end


@dataclass
class Tally:
    reports: int = 0      # reports read (empty and skipped ones not counted)
    findings: int = 0     # findings written by them, before dedup


def detect(unit: Unit, forced: Format | None, log: Callable[[str], None]) -> tuple[Format, object] | None:
    """(format, document) of a report, or None for content to skip (an empty report, or content
    that is no report in a walked directory or zip)."""
    try:
        syntax, doc = load(unit)
    except NotAReport as exc:
        if unit.explicit:
            raise InputError(unit.name, None, f"{exc}") from None
        log(f"skipped {unit.name}: {exc}")
        return None
    if forced:
        fmt = forced
    elif syntax == "json" and _empty(doc):
        log(f"{unit.name}: empty report (no findings)")
        return None
    else:
        fmt, doc = parsers.detect(doc, syntax)
    if fmt is None:
        reason = f"not a known report format: {_describe(doc)} (see --list-formats)"
        if unit.explicit:
            raise InputError(unit.name, None, reason)
        log(f"skipped {unit.name}: {reason}")
        return None
    if lazy.is_lazy(doc) and not fmt.lazy:  # a format that may read an array twice or change it
        doc = load(unit, whole=True)[1]
    return fmt, doc


def render_report(unit: Unit, fmt: Format, doc, base: dict, max_text: int, reject: Reject) -> Rendered:
    """Parse one report into finished JSONL lines, each checked against finding/1. A finding that
    is not valid is rejected alone (by its position among the report's findings); a ParseError, or
    any other exception out of the parser, is an InputError for the whole report."""
    ids, ends, buf = [], [], lazy.Spool()
    pending, size = [], 0  # lines not yet in buf, and the size of all
    finishers: dict[tuple, SplitFinisher] = {}  # a report's findings share a few sources: one finisher each
    source = {"file": unit.source, "format": fmt.name}
    n = 0
    try:
        for partial in relative_paths(fmt.parse(doc)):  # no local directory in any path
            n += 1
            try:
                split = type(partial) is Split
                if not split:
                    found = partial.pop("source", None) or {}
                elif "source" in partial.own:
                    found = partial.own.pop("source") or {}
                else:
                    found = partial.shared.get("source") or {}
                key = (found.get("run_id"), found.get("commit"), found.get("branch")) if found else ()
                finish = finishers.get(key)
                if finish is None:
                    src = dict(source)
                    for name in ("run_id", "commit", "branch"):
                        if value := base[name] or found.get(name):
                            src[name] = str(value)
                    finish = finishers[key] = SplitFinisher(src, fmt.clean, max_text)
                if split and type(done := finish.render(partial)) is tuple:  # finished, checked, rendered
                    reason, (fid, line) = None, done
                else:
                    rec = done if split else finish(partial)
                    reason = schema_error("finding/1", rec)
                    if reason is None:
                        fid, line = rec["id"], dumps(rec)
            except Exception as exc:  # a partial that finalize cannot complete: this finding alone
                reason = f"cannot be completed ({type(exc).__name__}: {exc})"
            if reason:
                rule = text(partial.get("rule_id"))[:100] if isinstance(partial, (dict, Split)) else ""
                reject(InputError(unit.name, None, f"{fmt.name}: finding {n}{f' ({rule})' if rule else ''} "
                                                   f"is not a valid finding/1: {reason}"))
                continue
            pending.append(line)
            ids.append(fid)
            size += len(line)
            ends.append(size)
            if len(pending) >= 4096:
                buf.write(b"".join(pending))
                pending.clear()
        buf.write(b"".join(pending))
    except InputError:  # a finding rejected without --rejects
        raise
    except lazy.ItemRefused:  # an item of a lazily read array orjson refuses: read whole, orjson says where
        return render_report(unit, fmt, load(unit, whole=True)[1], base, max_text, reject)
    except ParseError as exc:
        where = f"{exc.where}: " if exc.where else ""
        raise InputError(unit.name, exc.line, f"{fmt.name}: {where}{exc.reason}") from None
    except RecursionError:
        raise InputError(unit.name, None, f"{fmt.name}: nested too deeply to read") from None
    except Exception as exc:  # noqa: BLE001 (a parser bug or a shape it does not expect: this report alone)
        raise InputError(unit.name, None, f"{fmt.name}: unexpected structure ({type(exc).__name__}: {exc})") from exc
    return Rendered(ids, ends, buf.value())


def read_reports(found: Iterable[Unit], *, forced: Format | None, base: dict, max_text: int, reject: Reject,
                 log: Callable[[str], None], verbose: bool = False, tally: Tally | None = None
                 ) -> Iterator[tuple[str, memoryview]]:
    """(id, JSONL line) of every finding of every report, in order; each bad report is rejected
    (with -v, an unexpected exception's traceback is logged) and the next one read."""
    tally = tally if tally is not None else Tally()
    for unit in found:
        try:
            detected = detect(unit, forced, log)
            report = render_report(unit, *detected, base, max_text, reject) if detected else None
        except InputError as err:
            if verbose and err.__cause__ is not None:
                log("".join(traceback.format_exception(err.__cause__)).rstrip())
            reject(err)
            continue
        except Exception as exc:  # noqa: BLE001 (detection or loading failing in a way nobody foresaw)
            if verbose:
                log(traceback.format_exc().rstrip())
            reject(InputError(unit.name, None, f"cannot be read ({type(exc).__name__}: {exc})"))
            continue
        if report is not None:
            tally.reports += 1
            tally.findings += len(report.ids)
            if verbose:
                log(f"{unit.name}: {len(report.ids)} findings")
            yield from report.lines()


def deduplicate(rendered: Iterable[tuple[str, memoryview]], max_instances: int) -> list[memoryview | bytes]:
    """One line per finding id, in the order ids first appear; findings that share an id are
    merged by finding.merge_duplicates, whose result does not depend on their order. Only those
    are decoded again (rare): the others pass through as the bytes they were rendered to."""
    kept: dict[str, memoryview | list[memoryview]] = {}
    for fid, line in rendered:
        first = kept.get(fid)
        if first is None:
            kept[fid] = line
        elif type(first) is list:
            first.append(line)
        else:
            kept[fid] = [first, line]
    return [render("finding/1", merge_duplicates([orjson.loads(x) for x in v], max_instances))
            if type(v) is list else v for v in kept.values()]


def findings(paths: Iterable[str], *, forced: Format | None, base: dict, max_mb: float, zip_ratio: float,
             max_text: int, max_instances: int, reject: Reject, log: Callable[[str], None], verbose: bool = False,
             progress: Callable[[Iterator[Unit]], Iterable[Unit]] | None = None) -> tuple[list, Tally]:
    """The deduplicated finding/1 lines of every report under `paths` (files, walked directories,
    zips, '-'), and the tally of what was read. Every report or record that cannot be read goes to
    `reject` (see secai.parsing.inputs and read_reports); `progress` may wrap the reports found."""
    found = units(paths, Limits(int(max_mb * 1024 * 1024), zip_ratio), reject, log)
    tally = Tally()
    rendered = read_reports(progress(found) if progress else found, forced=forced, base=base, max_text=max_text,
                            reject=reject, log=log, verbose=verbose, tally=tally)
    lines = deduplicate(rendered, max_instances)
    for i, rec in secrets.hashed_lines(lines):  # a secret one report hashes, quoted by another
        lines[i] = render("finding/1", rec)
    return lines, tally


def base_source(run_id: str | None, commit: str | None, branch: str | None, env=os.environ) -> dict:
    """The source fields every finding records: as given, else (in GitHub Actions only) the run's."""
    ci = env if env.get("GITHUB_ACTIONS") == "true" else {}
    return {"run_id": run_id or ci.get("GITHUB_RUN_ID"), "commit": commit or ci.get("GITHUB_SHA"),
            "branch": branch or ci.get("GITHUB_REF_NAME")}


def format_listing(verbose: bool = False) -> str:
    """The formats read and what identifies each, one per line; `verbose`: with each format
    module's docstring (its mapping, severities and dedup rule) after its first format."""
    out, documented = [], set()
    for fmt in parsers.FORMATS:
        out.append(f"{fmt.name:<22} {fmt.syntax:<6} {fmt.tool:<22} {fmt.identifies}\n")
        module = sys.modules[fmt.parse.__module__]
        if verbose and module not in documented:
            documented.add(module)
            out.append("\n" + (module.__doc__ or "").strip() + "\n\n")
    return "".join(out)
