"""Building finding/1 records: fingerprints, severities, identifiers, paths, secrets.

Parsers produce plain dicts with the fields of schemas/finding.schema.json (no id, schema or
source); `finalize` fills those in, drops empty values and computes the id, so that every format
fingerprints findings the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

SCHEMA = "finding/1"
_sha256 = hashlib.sha256
SEVERITIES = ("critical", "high", "medium", "low", "info")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

_CWE_RE = re.compile(r"CWE[-_ :]?(\d+)", re.IGNORECASE)
_CVE_RE = re.compile(r"^CVE-\d{4}-\d+$", re.IGNORECASE)
_WORD_SEVERITY = {
    "critical": "critical", "blocker": "critical",
    "high": "high", "error": "high", "major": "high", "severe": "high",
    "medium": "medium", "moderate": "medium", "warning": "medium", "warn": "medium",
    "low": "low", "minor": "low", "note": "low",
    "info": "info", "informational": "info", "information": "info", "none": "info",
    "unknown": "info", "negligible": "info", "style": "info",
}


class ParseError(Exception):
    """A report that cannot be read as its format: `where` is a JSON path or element path."""

    def __init__(self, reason: str, where: str = "", line: int | None = None):
        super().__init__(reason, where, line)
        self.reason = reason
        self.where = where
        self.line = line


# ---------------------------------------------------------------- typed access to untrusted data

def as_dict(value, where: str) -> dict:
    """`value` when it is an object, {} when it is absent/null, else a ParseError."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise ParseError(f"expected object, got {type(value).__name__}", where)


def as_list(value, where: str) -> list:
    """`value` when it is an array, [] when it is absent/null, else a ParseError."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise ParseError(f"expected array, got {type(value).__name__}", where)


def text(value) -> str:
    """A scanner string field as clean text ('' for absent, numbers as their decimal form)."""
    if type(value) is str:
        return value.strip()
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def positive_int(value) -> int | None:
    """A 1-based line/column number, or None when absent, zero, negative or not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


# ---------------------------------------------------------------- severities

def severity_from_word(word) -> str | None:
    """Map a tool's severity word (HIGH, error, Moderate, ...) to the normalized scale."""
    return _WORD_SEVERITY.get(text(word).lower())


def severity_from_score(score) -> str | None:
    """CVSS-style 0-10 score to severity (the bands GitHub code scanning uses for security-severity)."""
    try:
        value = float(score)
    except (TypeError, ValueError):
        return None
    if value != value or value < 0 or value > 10:  # NaN or out of range
        return None
    if value >= 9.0:
        return "critical"
    if value >= 7.0:
        return "high"
    if value >= 4.0:
        return "medium"
    if value > 0.0:
        return "low"
    return "info"


def max_severity(a: str, b: str) -> str:
    return a if _RANK[a] <= _RANK[b] else b


# ---------------------------------------------------------------- identifiers

def cwe_ids(values: Iterable) -> list[str]:
    """Every CWE number found in the values (strings like 'CWE-79: ...', 'external/cwe/cwe-079', ints)."""
    out: list[str] = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            found = [str(value)] if value > 0 else []
        else:
            found = _CWE_RE.findall(str(value))
        for number in found:
            cwe = f"CWE-{int(number)}"
            if int(number) > 0 and cwe not in out:
                out.append(cwe)
    return out


def split_advisory_ids(ids: Iterable, exclude: str = "") -> tuple[list[str], list[str]]:
    """Split advisory ids into (CVEs, other aliases), unique, order kept; `exclude` (the rule id) is
    kept out of the aliases but still counted as a CVE when it is one."""
    cves: list[str] = []
    aliases: list[str] = []
    for raw in ids:
        ident = text(raw)
        if not ident:
            continue
        if _CVE_RE.match(ident):
            ident = ident.upper()
            if ident not in cves:
                cves.append(ident)
        elif ident != exclude and ident not in aliases:
            aliases.append(ident)
    return cves, aliases


def unique(values: Iterable) -> list[str]:
    """The non-empty texts of `values`, first occurrence of each, in order."""
    return list(dict.fromkeys(t for v in values if (t := text(v))))


# ---------------------------------------------------------------- paths and endpoints

def norm_path(path) -> str:
    """A scanner path in one spelling: forward slashes, no file:// scheme, no leading ./"""
    p = text(path).replace("\\", "/")
    if p.startswith("file://"):
        p = p[7:]
    while p.startswith("./"):
        p = p[2:]
    return p


def site_of(url: str) -> str:
    """scheme://host[:port] of a URL (the ZAP 'site'), or the URL itself when it has no host."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


# ---------------------------------------------------------------- secrets

REDACTED = "[REDACTED]"


def secret_digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def redact(text_value: str, secrets: Iterable[str]) -> str:
    """`text_value` with every occurrence of each secret (4+ characters) replaced by [REDACTED]."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text_value = text_value.replace(secret, REDACTED)
    return text_value


# ---------------------------------------------------------------- fingerprint and finalize

def fingerprint(f: dict) -> str:
    """The id of a finding: SHA-256 (first 32 hex digits) over the parts that identify it; see the
    `id` description in the schema. Parts are joined by the unit separator, which no field holds."""
    loc = f.get("location") or {}
    pkg = f.get("package")
    if pkg:
        key = f"{f['tool']}\x1f{f['rule_id']}\x1fpkg\x1f{pkg.get('name', '')}\x1f{pkg.get('version', '')}\x1f{loc.get('path', '')}"
    elif f.get("category") == "dast" and f.get("endpoint"):
        key = f"{f['tool']}\x1f{f['rule_id']}\x1fsite\x1f{site_of(f['endpoint']['url'])}"
    elif loc:
        # column 1 is what many SARIF writers put when they have no column: it counts as none
        column = loc.get("start_column") or 0
        key = (f"{f['tool']}\x1f{f['rule_id']}\x1floc\x1f{loc.get('path', '')}\x1f{loc.get('start_line') or 0}"
               f"\x1f{column if column > 1 else 0}")
    else:
        key = f"{f['tool']}\x1f{f['rule_id']}"
    return _sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


_EMPTYABLE = (str, list, dict)


def prune(d: dict) -> None:
    """Drop None, '' and empty containers from a finding in place, recursively (the schema has no
    empty fields). In place and cheap: a large report makes hundreds of thousands of findings."""
    drop = []
    for key, v in d.items():
        t = type(v)
        if t is dict:
            prune(v)
        elif t is list and v:
            for x in v:
                if type(x) is dict:
                    prune(x)
            if None in v or "" in v or {} in v:
                v[:] = [x for x in v if x is not None and x != "" and x != {}]
        if v is None or (not v and t in _EMPTYABLE):
            drop.append(key)
    for key in drop:
        del d[key]


def finalize(f: dict, source: dict, clean: bool = False) -> dict:
    """Complete a parser's finding (in place): prune empties (unless the parser gives none: clean),
    add schema, id, occurrences and source."""
    if not clean:
        prune(f)
    if "description" in f and f["description"] == f.get("title"):
        del f["description"]
    if "message" in f and (f["message"] == f.get("title") or f["message"] == f.get("description")):
        del f["message"]
    f.setdefault("suppressed", False)
    f["schema"] = SCHEMA
    f["id"] = fingerprint(f)
    f["occurrences"] = 1
    f["source"] = source
    return f


def merge_duplicate(kept: dict, dup: dict, max_instances: int) -> None:
    """Fold a duplicate (same id) into the finding kept first: count it, fill fields the first
    lacked, and join DAST instances (ZAP lists one alert twice for a site when its instances differ
    in confidence)."""
    kept["occurrences"] += dup["occurrences"]
    if "instances" in kept and "instances" in dup:
        total = kept.get("instance_count", len(kept["instances"])) + dup.get("instance_count", len(dup["instances"]))
        seen = {(i["url"], i.get("method"), i.get("param")) for i in kept["instances"]}
        kept["instances"] += [i for i in dup["instances"] if (i["url"], i.get("method"), i.get("param")) not in seen]
        del kept["instances"][max_instances:]
        kept.pop("instance_count", None)
        if total > len(kept["instances"]):
            kept["instance_count"] = total
    for key, value in dup.items():
        if key not in kept:
            kept[key] = value
