"""The offline knowledge base: YAML entries (lib/secai/analysis/kb/*.yaml) that explain findings.

`load()` reads the YAML files in name order, validates every entry (schemas/kb.schema.json, unique
ids, regexes, placeholders) and caches the `KB`. `KB.match(finding)` precedence: exact rule id >
rule pattern > CWE (in the finding's order) > category fallback, ties to the entry read first; an
entry only applies to findings passing its `categories`/`tools` filters. `Entry.render(facts)`
fills the templates; a missing or empty fact reads as plain words (MISSING), never an error. The
texts an entry gives a finding, each replacing the one before where it has the text:
1. its own templates (its `remediation` is language-neutral when it has `remediation_by`);
2. `remediation_by[key]` for the first of the finding's `frameworks` (most specific first:
   django before python) that the entry has a variant for; none fits: the neutral text stays,
   so a finding never gets another framework's API;
3. `by_rule[rule id]`: what the entry says of one of the rules it covers (keyed by the id or its
   last dotted parts, as semgrep ids carry their config folder in front), its `risk_factors`
   included;
4. `test_code` (the finding is in test code, `test_code=True`);
5. the first of `readings` whose `code` regex matches the finding's flagged `code` (and whose
   `frameworks` and `rules`, when given, include the finding's): the reading of that construct, with
   its `verdict` (e.g. false-positive).
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable
from functools import cache
from itertools import chain
from pathlib import Path

import yaml

from secai.errors import UserError
from secai.files import shipped

KB_DIR = shipped("analysis", "kb")
SCHEMA_FILE = shipped("schemas", "kb.schema.json")
TEXTS = ("summary", "impact", "remediation", "remediation_no_fix", "prevention", "verification")
ALIASES = {"typescript": "javascript"}  # a framework key whose variants also serve another's findings
LEVELS = ("rule_id", "rule_pattern", "cwe", "category")
MISSING = {  # how each finding fact reads when the composer has no value for it
    "title": "this finding", "rule_id": "the scanner rule", "tool": "the scanner",
    "path": "the affected location", "line": "unknown", "resource": "the affected resource",
    "package": "the affected package", "installed": "the installed version",
    "fixed": "a fixed version", "cve": "the published advisory", "severity": "unknown",
}


class KBError(UserError, ValueError):
    """A knowledge-base file or entry that cannot be used (a user error); the message names file and entry."""


class Facts(dict):
    """Template facts (lists joined with ', ', empty values dropped); a missing key reads as words."""

    def __init__(self, facts: dict):
        super().__init__((k, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
                         for k, v in facts.items() if v not in (None, "", [], ()))

    def __missing__(self, key: str) -> str:
        return MISSING.get(key, key.replace("_", " "))


class Entry:
    """One entry: its YAML data, the file it came from, and its compiled selectors and filters."""

    def __init__(self, data: dict, file: str):
        self.data, self.file, self.id = data, file, data["id"]
        m = data["match"]
        self.rule_ids, self.cwe = tuple(m.get("rule_ids", ())), tuple(m.get("cwe", ()))
        self.patterns = tuple(re.compile(p) for p in m.get("rule_patterns", ()))
        self.categories, self.tools = frozenset(m.get("categories", ())), frozenset(m.get("tools", ()))
        self.fallback = not (self.rule_ids or self.patterns or self.cwe)
        self.readings = tuple(re.compile(r["code"]) for r in data.get("readings", ()))

    def applies(self, finding: dict) -> bool:
        return ((not self.categories or finding.get("category") in self.categories)
                and (not self.tools or finding.get("tool") in self.tools))

    def variant(self, frameworks: Iterable[str]) -> str | None:
        """The key of `remediation_by` for the first of `frameworks` the entry has a variant for."""
        by = self.data.get("remediation_by") or {}
        return next((k for f in frameworks for k in (f, ALIASES.get(f)) if k in by), None)

    def for_rule(self, rule_id: str | None) -> dict | None:
        """`by_rule`'s texts for `rule_id`: the key is the rule id, or its last dotted parts (a semgrep
        id carries its config folder in front: semgrep-rules.python.lang.x matches python.lang.x)."""
        by = self.data.get("by_rule") or {}
        parts = (rule_id or "").split(".")
        return next((by[k] for k in (".".join(parts[i:]) for i in range(len(parts))) if k in by), None)

    def reading(self, code: str | None, frameworks: Iterable[str], rule_id: str | None = None) -> dict | None:
        """The first of `readings` that `code` (the finding's flagged lines) matches, for one of the
        reading's `frameworks` and `rules` (each matched like by_rule's keys) when it names them."""
        if not code:
            return None
        names, rule = set(frameworks), (rule_id or "")
        return next((r for r, regex in zip(self.data.get("readings", ()), self.readings) if regex.search(code)
                     and (not r.get("frameworks") or names.intersection(r["frameworks"]))
                     and (not r.get("rules") or any(rule == k or rule.endswith("." + k) for k in r["rules"]))), None)

    def render(self, facts: dict, test_code: bool = False, frameworks: Iterable[str] = (),
               rule_id: str | None = None, code: str | None = None) -> dict:
        """The texts filled from `facts` (remediation_no_fix replaces remediation without {fixed}),
        then the variant, rule, test-code and reading texts over them (see the module's docstring).
        `variant`: the remediation_by key used; `by_rule`: whether the entry speaks of this rule;
        `test_lowers`: why the risk is lower in test code (None without a test reading);
        `verdict`: the reading's (None without one)."""
        f, frameworks = Facts(facts), tuple(frameworks)
        out = {k: self.data[k].format_map(f) for k in TEXTS if k in self.data}
        no_fix = out.pop("remediation_no_fix", None)
        if no_fix and "fixed" not in f:
            out["remediation"] = no_fix
        variant = self.variant(frameworks)
        if variant:
            out["remediation"] = self.data["remediation_by"][variant].format_map(f)
        rule = self.for_rule(rule_id)
        tests = self.data.get("test_code") if test_code else None
        reading = self.reading(code, frameworks, rule_id)
        for over in (rule, tests, reading):
            out |= {k: over[k].format_map(f) for k in TEXTS if over and k in over}
        return {"id": self.id, "title": self.data["title"], **out,
                "risk_factors": (rule or {}).get("risk_factors") or self.data["risk_factors"],
                "fix": self.data.get("fix", {}),
                "references": list(self.data["sources"]), "variant": variant, "by_rule": rule is not None,
                "test_lowers": tests["lowers"].format_map(f) if tests else None,
                "verdict": reading["verdict"] if reading else None}


class KB:
    """All entries in precedence order, indexed by rule id and CWE."""

    def __init__(self, entries: list[Entry], version: str):
        self.entries, self.version = entries, version
        self.by_id = {e.id: e for e in entries}
        self._exact, self._cwe = {}, {}  # rule id / CWE -> entries, in precedence order
        for e in entries:
            for key, index in [(r, self._exact) for r in e.rule_ids] + [(c, self._cwe) for c in e.cwe]:
                index.setdefault(key, []).append(e)
        self._patterns = [(p, e) for e in entries for p in e.patterns]
        self._fallbacks = [e for e in entries if e.fallback]

    def lookup(self, finding: dict) -> tuple[str, Entry]:
        """(level, entry): the level of LEVELS that matched, and the entry chosen."""
        rid = finding.get("rule_id", "")
        candidates = chain(  # lazily, in precedence order
            (("rule_id", e) for e in self._exact.get(rid, ())),
            (("rule_pattern", e) for p, e in self._patterns if p.search(rid)),
            (("cwe", e) for c in finding.get("cwe", ()) for e in self._cwe.get(c, ())),
            (("category", e) for e in self._fallbacks))
        for level, entry in candidates:
            if entry.applies(finding):
                return level, entry
        raise LookupError(f"no knowledge-base entry for category {finding.get('category')!r}")

    def match(self, finding: dict) -> Entry:
        return self.lookup(finding)[1]


def _check(data, name: str, index: int, errors, seen: dict) -> Entry:
    ident = data.get("id") if isinstance(data, dict) else None
    label = f"{name}: entry {ident if isinstance(ident, str) else f'#{index + 1}'}"
    if error := errors(data):
        raise KBError(f"{label}: {error.json_path}: {error.message}")
    if ident in seen:
        raise KBError(f"{label}: duplicate id (first defined in {seen[ident]})")
    variant = data.get("test_code") or {}
    texts = [(k, data[k]) for k in TEXTS if k in data] + [(f"test_code.{k}", variant[k])
                                                           for k in (*TEXTS, "lowers") if k in variant]
    texts += [(f"remediation_by.{k}", v) for k, v in (data.get("remediation_by") or {}).items()]
    texts += [(f"by_rule.{r}.{k}", v[k]) for r, v in (data.get("by_rule") or {}).items() for k in TEXTS if k in v]
    texts += [(f"readings[{i}].{k}", v[k]) for i, v in enumerate(data.get("readings") or ()) for k in TEXTS if k in v]
    for key, text in texts:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text)]
            unknown = [f for f in fields if f not in (None, *MISSING)]
        except ValueError as exc:
            raise KBError(f"{label}: {key}: {exc}") from None
        if unknown:
            raise KBError(f"{label}: {key}: unknown placeholder {{{unknown[0]}}}, known: {list(MISSING)}")
    try:
        entry = Entry(data, name)
    except re.error as exc:
        where = "readings" if exc.pattern in [r["code"] for r in data.get("readings", ())] else "rule_patterns"
        raise KBError(f"{label}: {where}: {exc.pattern!r}: {exc}") from None
    seen[ident] = name
    return entry


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster


@cache
def version(directory: Path | str = KB_DIR) -> str:
    """The knowledge base's version: a hash of its YAML files' names and contents (no parsing, so a
    fully cached run can key on it without loading the knowledge base)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.yaml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@cache
def load(directory: Path | str = KB_DIR) -> KB:
    """The knowledge base in `directory`, validated and cached."""
    from jsonschema import Draft202012Validator  # validation runs once per process (load is cached)
    from jsonschema.exceptions import best_match

    validator = Draft202012Validator(yaml.safe_load(SCHEMA_FILE.read_text(encoding="utf-8")))
    errors = lambda data: best_match(validator.iter_errors(data))  # noqa: E731
    entries, seen = [], {}
    for path in sorted(Path(directory).glob("*.yaml")):
        raw = path.read_bytes()
        try:
            doc = yaml.load(raw, Loader=_LOADER)
        except yaml.YAMLError as exc:
            raise KBError(f"{path.name}: invalid YAML: {exc}") from None
        if not isinstance(doc, list):
            raise KBError(f"{path.name}: expected a list of entries")
        entries += [_check(d, path.name, i, errors, seen) for i, d in enumerate(doc)]
    return KB(entries, version(directory))
