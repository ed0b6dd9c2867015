"""Building finding/1 records: typed access to report data, severities, identifiers, paths, the
fingerprint, and the rules every finding passes whatever its format.

Parsers produce plain dicts with the fields of schemas/finding.schema.json (no id, schema or
source); `finalize` fills those in, drops empty values, keeps only http(s) links, caps free text and
computes the id, so that every format fingerprints and bounds findings the same way.
`merge_duplicates` folds the findings that share an id into one, whatever order they came in.
"""

from __future__ import annotations

import copy
import hashlib
import posixpath
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple
from urllib.parse import urlsplit

from secai.errors import UserError
from secai.secrets import scrub, scrub_tree
from secai.untrusted import http_links, http_url

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


class ParseError(UserError):
    """A report that cannot be read as its format: `where` is a JSON path or element path (bad
    input: secai.parsing.reports reports it as `FILE:LINE: format: where: reason`)."""

    def __init__(self, reason: str, where: str = "", line: int | None = None):
        super().__init__(reason, where, line)
        self.reason = reason
        self.where = where
        self.line = line

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else self.reason


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


# ---------------------------------------------------------------- paths, endpoints and links

def norm_path(path) -> str:
    """A scanner path in one spelling: forward slashes, no file:// scheme, no leading ./"""
    p = text(path).replace("\\", "/")
    if p.startswith("file://"):
        p = p[7:]
    while p.startswith("./"):
        p = p[2:]
    return p


_ABSOLUTE = re.compile(r"/|[A-Za-z]:/")


class Split(NamedTuple):
    """A finding a parser yields as two parts: the fields it shares with other findings of its
    report (a rule's), which nothing changes once yielded, and its own, which win. It stands for
    {**shared, **own}; secai.parsing.shared finishes the shared part once."""

    shared: dict
    own: dict

    def get(self, key: str, default=None):
        return self.own[key] if key in self.own else self.shared.get(key, default)


def merged(f: dict | Split) -> dict:
    """The finding a parser's dict or Split stands for (a Split's parts copied, nested values too)."""
    return copy.deepcopy({**f.shared, **f.own}) if type(f) is Split else f


def _local_path(f: dict | Split) -> str | None:
    """A finding's location path when it is absolute on the scanning machine (a container's paths
    are inside its image: they name no local directory and stay as they are)."""
    loc = f.get("location")
    path = loc.get("path") if type(loc) is dict else None
    if type(path) is not str or (path[:1] != "/" and path[1:3] != ":/"):  # most are relative: quickly so
        return None
    return path if _ABSOLUTE.match(path) and f.get("category") != "container" else None


def scan_root(paths: Iterable[str]) -> dict[str, str]:
    """The scan root of absolute paths: the deepest directory their directories share, per drive
    ('/' or 'C:'): '/home/runner/work/app/app/src' for a bandit run with `-r` on it."""
    groups: dict[str, list[str]] = {}
    for p in paths:
        groups.setdefault("/" if p.startswith("/") else p[:2], []).append(posixpath.dirname(p))
    return {drive: posixpath.commonpath(dirs) for drive, dirs in groups.items()}


def relative_paths(partials: Iterable[dict | Split]) -> Iterator[dict | Split]:
    """A parser's findings in their order, each absolute location path made relative to the scan
    root of the report's absolute paths (secai-parse: a report names no local directory). The
    findings from the first with an absolute path on are held until the report's end, to know it;
    ids of findings whose paths were relative are unchanged."""
    held: list[dict] = []
    for f in partials:
        if held or _local_path(f) is not None:
            held.append(f)
        else:
            yield f
    roots = scan_root(p for f in held if (p := _local_path(f)) is not None)
    for f in held:
        path = _local_path(f)
        if path is not None:
            root = roots["/" if path.startswith("/") else path[:2]]
            if type(f) is Split and "location" not in f.own:  # the shared part stays as it is
                f.own["location"] = dict(f.shared["location"])
            loc = f.own["location"] if type(f) is Split else f["location"]
            loc["path"] = posixpath.relpath(path, root) if root != path[:2] else path[3:]
        yield f


def site_of(url: str) -> str:
    """scheme://host[:port] of a URL (the ZAP 'site'), or the URL itself when it has no host."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


# ---------------------------------------------------------------- free text

# The fields that carry the scanner's prose or quoted code, capped by finalize (max_text).
# Identity fields (rule id, path, package, URL) are not: they are bounded by parse.max_file_mb.
FREE_TEXT = ("title", "description", "message", "fix_hint")
NESTED_FREE_TEXT = {"location": ("snippet",), "suppression": ("justification",), "endpoint": ("attack", "evidence")}
TRUNCATED = " … [truncated {} chars]"


def capped(value: str, limit: int) -> str:
    """`value` when it has at most `limit` characters, else its first `limit` characters marked
    with how many were cut."""
    if len(value) <= limit:
        return value
    return value[:limit] + TRUNCATED.format(len(value) - limit)


# ---------------------------------------------------------------- fingerprint and finalize

IDENTITY = ("tool", "rule_id", "category", "location", "package", "endpoint")  # the fields fingerprint reads


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


def finalize(f: dict, source: dict, clean: bool = False, max_text: int | None = None) -> dict:
    """Complete a parser's finding (in place): prune empties (unless the parser gives none: clean),
    keep only web links in references, cap each free-text field at `max_text` characters (None: no
    cap), add schema, id, occurrences and source, and blank every secret in every field (secai.secrets)."""
    return Finisher(source, clean, max_text)(f)


class Finisher:
    """finalize for the findings of one report, doing once what they share: the source is scrubbed
    once, and each text or list of texts that repeats (a rule's title, description, links and
    tags, a file's path) is checked, capped and scrubbed once. The records it completes share
    those finished values, so they are to be rendered, not changed."""

    MEMO = 200_000  # texts and lists remembered per report, at most (then forgotten and begun again)

    def __init__(self, source: dict, clean: bool = False, max_text: int | None = None):
        self.source = scrub_tree(source)
        self.clean = clean
        self.max_text = max_text
        self.texts: dict[str, str] = {}
        self.free_texts: dict[str, str] = {}
        self.lists: dict[tuple, list] = {}

    def _text(self, value: str, free: bool) -> str:
        memo = self.free_texts if free else self.texts
        done = memo.get(value)
        if done is None:
            if len(memo) >= self.MEMO:
                memo.clear()
            limit = self.max_text
            done = memo[value] = scrub(capped(value, limit) if free and limit is not None else value)
        return done

    def _list(self, key: str, value: list) -> list:
        links = key == "references"
        if not all(type(v) is str for v in value):  # links: absolute http(s) URLs only, so never these
            return [scrub(v) for v in http_links(value)] if links else scrub_tree(value)
        memo_key = (key, *value)
        done = self.lists.get(memo_key)
        if done is None:
            if len(self.lists) >= self.MEMO:
                self.lists.clear()
            if links and not all(http_url(u) == u for u in value):  # javascript:, data:, file: are dropped
                value = http_links(value)
            done = self.lists[memo_key] = [scrub(v) for v in value]
        return done

    def finish_fields(self, f: dict) -> None:
        """Cap every free text and blank every secret in every field of `f` (a finding or part of
        one), in place; web links only in references (a list of none goes)."""
        refs = f.get("references")
        for key, value in f.items():
            t = type(value)
            if t is str:
                if key in FREE_TEXT or len(value) >= 8:
                    f[key] = self._text(value, key in FREE_TEXT)
            elif t is list:
                f[key] = ([self._tree("endpoint", v) if type(v) is dict else scrub_tree(v) for v in value]
                          if key == "instances" else self._list(key, value))
            elif t is dict:
                f[key] = self._tree(key, value)
        if f.get("references") == [] and refs:  # none of them a web link
            del f["references"]

    def _tree(self, key: str, value: dict) -> dict:
        """scrub_tree of an object with its free texts capped (NESTED_FREE_TEXT); one of plain
        values (a location, a package: texts, numbers, lists of texts) with its texts memoized."""
        free = NESTED_FREE_TEXT.get(key, ())
        done = {}
        for k, v in value.items():
            t = type(v)
            if t is str:
                done[k] = self._text(v, True) if k in free else v if len(v) < 8 else self._text(v, False)
            elif t is int:
                done[k] = v
            elif t is list and all(type(x) is str for x in v):  # a package's fixed versions: never capped
                done[k] = [x if len(x) < 8 else self._text(x, False) for x in v]
            else:
                limit = self.max_text
                if free and limit is not None:
                    value = {k: capped(v, limit) if k in free and type(v) is str else v for k, v in value.items()}
                return scrub_tree(value)
        return done

    def __call__(self, f: dict) -> dict:
        if not self.clean:
            prune(f)
        if "description" in f and f["description"] == f.get("title"):
            del f["description"]
        if "message" in f and (f["message"] == f.get("title") or f["message"] == f.get("description")):
            del f["message"]
        fid = fingerprint(f)  # of the texts as found: a URL's credentials are part of its site
        self.finish_fields(f)
        f.setdefault("suppressed", False)
        f["schema"] = SCHEMA
        f["id"] = fid
        f["occurrences"] = 1
        f["source"] = self.source
        return f


# ---------------------------------------------------------------- duplicates

_UNION = ("cwe", "cve", "aliases", "references", "tags")   # lists of facts: every duplicate's count
_FILLED = ("location", "package")                          # objects: a duplicate fills what is missing


def _precedence(f: dict) -> tuple:
    """The order duplicates are folded in: the most severe first, an unsuppressed one before a
    suppressed one, then by report file and format. Only the findings of one report can tie, and
    they keep the order given (their order in the report), so no order of reports changes it."""
    src = f["source"]
    return _RANK[f["severity"]], f["suppressed"], src["file"], src["format"]


def _instance_key(i: dict) -> tuple:
    return i["url"], i.get("method"), i.get("param")


def merge_duplicates(found: list[dict], max_instances: int) -> dict:
    """One finding from several with the same id (in the order read), the same whatever order the
    reports they come from are read in.

    The first in precedence (most severe, unsuppressed, then by report) gives the
    severity and every single-valued field it has; the others fill the fields it lacks (in
    location and package too). Lists of facts (cwe, cve, aliases, references, tags, fixed versions) are the union of all, and DAST
    instances are joined (at most `max_instances`, instance_count keeping the total). occurrences
    is the sum, and the finding is suppressed only when every duplicate is: a suppression in one
    report cannot hide what another reports as open."""
    ranked = sorted(found, key=_precedence)
    merged = ranked[0]
    skip = {"occurrences", "suppressed", "suppression", "instances", "instance_count"}
    for other in ranked[1:]:
        for key, value in other.items():
            mine = merged.get(key)
            if key in skip:
                continue
            if mine is None:
                merged[key] = value
            elif key in _UNION:
                merged[key] = list(dict.fromkeys([*mine, *value]))
            elif key in _FILLED:
                for name, part in value.items():
                    if name not in mine:
                        mine[name] = part
                    elif name == "fixed_versions":
                        mine[name] = list(dict.fromkeys([*mine[name], *part]))
    merged["occurrences"] = sum(f["occurrences"] for f in ranked)
    merged["suppressed"] = all(f["suppressed"] for f in ranked)
    why = next((f["suppression"] for f in ranked if "suppression" in f), None)
    merged.pop("suppression", None)
    if merged["suppressed"] and why:
        merged["suppression"] = why
    listed = [f for f in ranked if "instances" in f]
    if listed:
        total = sum(f.get("instance_count", len(f["instances"])) for f in listed)
        seen: dict[tuple, dict] = {}
        for f in listed:
            for i in f["instances"]:
                seen.setdefault(_instance_key(i), i)
        instances = list(seen.values())
        del instances[max_instances:]
        merged["instances"] = instances
        merged.pop("instance_count", None)
        if total > len(instances):
            merged["instance_count"] = total
    return merged
