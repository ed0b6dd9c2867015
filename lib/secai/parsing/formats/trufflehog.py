"""TruffleHog 2 and 3 JSON Lines (`trufflehog --json`) and trufflehog3 JSON (`trufflehog3 -f json`).

Shapes:
- trufflehog-v2-jsonl: one object a line {branch, commit (the commit message), commitHash, date,
  diff, path, printDiff, reason, stringsFound[]}.
- trufflehog-v3-jsonl: one object a line {SourceMetadata: {Data: {<Source>: {file, line, commit,
  link, timestamp, ...}}}, SourceName, DetectorType, DetectorName, DetectorDescription, DecoderName,
  Verified, Raw, RawV2, Redacted, ExtraData, StructuredData}; log lines ({level, msg}, stderr
  captured too) are skipped. Releases without DecoderName wrote Raw and RawV2 base64-encoded.
- trufflehog-v2-json, trufflehog-v3-json: a one-line report is plain JSON: one such record.
- trufflehog3-json: an array of legacy items (trufflehog3 2.x: the TruffleHog 2 fields) or current
  items {rule: {id, message, severity}, path, line, secret, context, branch, commit, message,
  author, date}.

Mapping: category secret; tool trufflehog (v2, v3) or trufflehog3. rule_id: reason (v2, legacy),
DetectorName (v3), rule.id (current); title: reason, "<DetectorName> secret", rule.message;
description: DetectorDescription; location: path (v3: the source's file, else filename or path,
else its link; a file in an image loses its leading slash, the image is location.resource) and
line where the report has one (v3 Git/Filesystem/..., trufflehog3 current; v2 reports diffs, not
lines); references: the v3 link; secret.commit: commitHash / commit.
Severity: v3 Verified → critical (confidence high, tag verified), unverified → high (tag
unverified); v2 and legacy → high; current rule.severity HIGH/MEDIUM/LOW → high/medium/low, kept
as tool_severity, missing or unknown → high.

Secrets: only secret.sha256 is kept, of v3 Raw (else RawV2), current `secret`, v2/legacy the first
of stringsFound as written (TruffleHog 2 lists matched strings, trufflehog3 legacy whole diff
lines); a value that is only a PEM armor line ("-----BEGIN RSA PRIVATE KEY-----", all that key
rules match) identifies no key and gives no `secret`. diff, printDiff, stringsFound, Redacted,
ExtraData, StructuredData and context quote secrets and are never output; author and email are
not kept. message: "Found in commit <hash> (<date>): <subject>", for v3 "Verified|Unverified
secret found in commit <hash> (<timestamp>)"; the subject is cleared of every string found in the
report and every base64/hex-like run of 20+ characters in them (TruffleHog 2's entropy
threshold), as a subject may quote any secret.

Dedup (the shared fingerprint): tool, rule, path (v2, legacy: one finding per file and reason, as
DefectDojo counts), and line (v3, current); one place found in several commits is one finding,
the first commit kept, `occurrences` counting the others.
"""

from __future__ import annotations

import base64
import binascii
import re

from secai.parsing.finding import (ParseError, as_dict, as_list, norm_path, positive_int, severity_from_word,
    text, unique)
from secai.secrets import redact, secret_digest
from secai.parsing.formats import Format

_V2 = {"reason", "stringsFound"}
_V3 = {"SourceMetadata", "DetectorName"}
_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{20,}")
_ARMOR = re.compile(r"[+-]?\s*-----(BEGIN|END) [A-Z0-9 ()]+-----\s*")


def _is(rec, keys: set) -> bool:
    return isinstance(rec, dict) and keys <= rec.keys()


def _log(rec) -> bool:
    return _is(rec, {"level", "msg"}) and "SourceMetadata" not in rec


def detect_v3(doc) -> bool:
    return isinstance(doc, list) and any(_is(r, _V3) for r in doc) and all(_is(r, _V3) or _log(r) for r in doc)


def detect_trufflehog3(doc) -> bool:
    first = doc[0] if isinstance(doc, list) and doc else None
    return _is(first, _V2) or (_is(first, {"rule", "path"}) and isinstance(first["rule"], dict))


def _cleaner(values: list[str]):
    """A function clearing text of the report's secrets (and their long tokens), cached per text."""
    secrets = {s for v in values for s in (v, v.strip(), v.lstrip("+- \t").strip(), *_TOKEN.findall(v))}
    cleaned: dict[str, str] = {}

    def clean(value: str) -> str:
        if value not in cleaned:
            cleaned[value] = redact(value, [s for s in secrets if s in value])
        return cleaned[value]
    return clean


def _secret(value: str, commit: str) -> dict | None:
    return {"sha256": secret_digest(value), "commit": commit} if value and not _ARMOR.fullmatch(value) else None


def _found_in(commit: str, date: str, message, clean) -> str:
    subject = text(message).split("\n", 1)[0].strip()
    return "" if not commit else (f"Found in commit {commit}" + (f" ({date})" if date else "")
                                  + (f": {clean(subject)}" if subject else ""))


def _records(doc, where: str) -> list[dict]:
    return [as_dict(r, f"{where}[{i}]") for i, r in enumerate([doc] if isinstance(doc, dict) else as_list(doc, where))]


def _required(item: dict, key: str, where: str) -> str:
    if not (value := text(item.get(key))):
        raise ParseError(f"missing {key}", where)
    return value


def _strings(item: dict, where: str) -> list[str]:
    return [s for s in as_list(item.get("stringsFound"), f"{where}.stringsFound") if isinstance(s, str)]


def _legacy(item: dict, where: str, tool: str, clean) -> dict:
    """A TruffleHog 2 record (trufflehog3 legacy items have the same fields)."""
    reason, strings, commit = _required(item, "reason", where), _strings(item, where), text(item.get("commitHash"))
    value = next((s for s in strings if s.strip()), "")
    return {
        "tool": tool, "rule_id": reason, "title": reason, "severity": "high", "category": "secret",
        "message": _found_in(commit, text(item.get("date")), item.get("commit"), clean),
        "location": {"path": norm_path(item.get("path"))},
        "secret": _secret(value, commit),
    }


def _current(item: dict, where: str, clean) -> dict:
    """A trufflehog3 3.x item."""
    rule = as_dict(item.get("rule"), f"{where}.rule")
    rid, word, commit = _required(rule, "id", f"{where}.rule"), text(rule.get("severity")), text(item.get("commit"))
    path = norm_path(item.get("path"))
    return {
        "tool": "trufflehog3", "rule_id": rid, "title": text(rule.get("message")) or rid,
        "severity": severity_from_word(word) or "high", "tool_severity": word, "category": "secret",
        "message": _found_in(commit, text(item.get("date")), item.get("message"), clean),
        "location": {"path": path, "start_line": positive_int(item.get("line"))} if path else None,
        "secret": _secret(text(item.get("secret")), commit),
    }


def _raw(rec: dict) -> str:
    """A v3 record's secret: Raw, else RawV2, base64-decoded for releases without DecoderName."""
    value = text(rec.get("Raw")) or text(rec.get("RawV2"))
    try:
        return value if "DecoderName" in rec else base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


def _v3_finding(rec: dict, where: str) -> dict:
    name = text(rec.get("DetectorName")) or _required(rec, "DetectorType", where)
    at = f"{where}.SourceMetadata.Data"
    data = as_dict(as_dict(rec.get("SourceMetadata"), f"{where}.SourceMetadata").get("Data"), at)
    meta = next((as_dict(v, f"{at}.{k}") for k, v in data.items()), {})
    path = norm_path(meta.get("file") or meta.get("filename") or meta.get("path") or meta.get("link"))
    path = path.lstrip("/") if meta.get("image") else path  # a file in an image (Docker, ECR)
    verified, commit, timestamp = rec.get("Verified") is True, text(meta.get("commit")), text(meta.get("timestamp"))
    return {
        "tool": "trufflehog", "rule_id": name, "title": f"{name} secret",
        "description": text(rec.get("DetectorDescription")),
        "message": f"{'Verified' if verified else 'Unverified'} secret found"
                   + (f" in commit {commit}" if commit else "") + (f" ({timestamp})" if timestamp else ""),
        "severity": "critical" if verified else "high", "confidence": "high" if verified else None,
        "category": "secret", "tags": ["verified" if verified else "unverified"],
        "location": {"path": path, "start_line": positive_int(meta.get("line")),
                     "resource": text(meta.get("image"))} if path else None,
        "secret": _secret(_raw(rec), commit),
        "references": unique([meta.get("link")]),
    }


def parse_v2(doc):
    items = _records(doc, "$")
    clean = _cleaner([s for i, item in enumerate(items) for s in _strings(item, f"$[{i}]")])
    for i, item in enumerate(items):
        yield _legacy(item, f"$[{i}]", "trufflehog", clean)


def parse_v3(doc):
    for i, rec in enumerate(_records(doc, "$")):
        if not _log(rec):
            yield _v3_finding(rec, f"$[{i}]")


def parse_trufflehog3(doc):
    items = _records(doc, "$")
    clean = _cleaner([s for i, item in enumerate(items)
                      for s in (_strings(item, f"$[{i}]") if "rule" not in item else [text(item.get("secret"))])])
    for i, item in enumerate(items):
        where = f"$[{i}]"
        yield _current(item, where, clean) if "rule" in item else _legacy(item, where, "trufflehog3", clean)


FORMATS = [
    Format("trufflehog-v2-jsonl", "jsonl", "TruffleHog 2", "JSON Lines records with `reason` and `stringsFound`",
           lambda doc: isinstance(doc, list) and bool(doc) and _is(doc[0], _V2), parse_v2),
    Format("trufflehog-v3-jsonl", "jsonl", "TruffleHog 3", "JSON Lines records with `SourceMetadata` and "
           "`DetectorName`", detect_v3, parse_v3),
    Format("trufflehog3-json", "json", "trufflehog3", "an array of items with `rule` and `path` (3.x) or "
           "`reason` and `stringsFound` (2.x)", detect_trufflehog3, parse_trufflehog3),
]
